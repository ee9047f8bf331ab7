-- A worker's claims (capture jobs, metadata points) last as long as its database session. Have the
-- server probe this session's TCP connection so that a worker whose machine vanished without
-- closing it (power cut, network gone) loses its session, and with it its claims, within about
-- 2 minutes instead of the operating system's default of hours. No effect over a Unix socket.
SELECT set_config('tcp_keepalives_idle', '60', false),
       set_config('tcp_keepalives_interval', '10', false),
       set_config('tcp_keepalives_count', '6', false);
