"""Embeddings stored as halfvec: 16-bit floats, half the bytes of float32 vector.

`embeddings.embedding` becomes ``halfvec`` (no fixed dimension, as before): the table of 1M x 256
takes 0.64 GB instead of 1.22 GB, and an exact ranking reads half the bytes. halfvec keeps about three
significant digits, which loses nothing measurable on L2-normalised embeddings; its largest value
is 65504, so the migration refuses (one clear error, nothing changed) when a stored value is larger.

ALTER COLUMN TYPE rewrites the table and rebuilds the per-model HNSW indexes from their definitions
(``(embedding::halfvec(D))`` or ``(embedding::vector(D))`` ``WHERE model_id = N``), inside this
migration's transaction: searches wait until it commits. The rebuild runs single-process (parallel
HNSW builds can overflow in pgvector < 0.8.2) with the memory a build of geoloc.retrieval.index gets.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa

from geoloc.errors import MigrationError

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

HALFVEC_MAX = 65504  # the largest finite 16-bit float
# Per model, the embeddings with a value halfvec cannot hold. A value that large makes the vector's
# norm larger still, so the norm (cheap) picks the few rows whose values are looked at.
OUT_OF_RANGE = sa.text("""
SELECT e.model_id, count(*) AS rows
FROM embeddings AS e
WHERE vector_norm(e.embedding) > :max
  AND EXISTS (SELECT 1 FROM unnest(CAST(e.embedding AS real[])) AS v WHERE abs(v) > :max)
GROUP BY e.model_id
ORDER BY e.model_id
""")
SERIAL_BUILD = ("SET LOCAL max_parallel_maintenance_workers = 0",
                "SET LOCAL maintenance_work_mem = '1GB'")


def upgrade() -> None:
    bad = op.get_bind().execute(OUT_OF_RANGE, {"max": HALFVEC_MAX}).all()
    if bad:
        found = ", ".join(f"{r.rows} embedding{'s' if r.rows != 1 else ''} of model {r.model_id}" for r in bad)
        verb = "holds" if sum(r.rows for r in bad) == 1 else "hold"
        raise MigrationError(
            f"cannot store embeddings as halfvec: {found} {verb} values beyond its range (±{HALFVEC_MAX}); "
            "nothing was changed",
            hint="those embeddings are not L2-normalised: delete them (re-embed after migrating) and migrate again")
    for statement in SERIAL_BUILD:
        op.execute(statement)
    op.execute("ALTER TABLE embeddings ALTER COLUMN embedding TYPE halfvec USING CAST(embedding AS halfvec)")


def downgrade() -> None:
    for statement in SERIAL_BUILD:
        op.execute(statement)
    op.execute("ALTER TABLE embeddings ALTER COLUMN embedding TYPE vector USING CAST(embedding AS vector)")
