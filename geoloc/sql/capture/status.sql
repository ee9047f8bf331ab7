-- Jobs of a backend per status.
SELECT status, count(*) AS jobs FROM capture_jobs WHERE backend = :backend GROUP BY status;
