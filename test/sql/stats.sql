-- stampede_stats counts server-wide; stampede_stats_reset starts again.
SELECT stampede_stats_reset();
SELECT requests, hits, misses, executions, lock_waits, timeouts, errors FROM stampede_stats;
SELECT count(*) FROM stampede_cached('stats:a', 'SELECT 1', '5 minutes') AS t(x int);
SELECT count(*) FROM stampede_cached('stats:a', 'SELECT 1', '5 minutes') AS t(x int);
SELECT count(*) FROM stampede_cached('stats:a', 'SELECT 1', '5 minutes') AS t(x int);
SELECT count(*) FROM stampede_cached('stats:b', 'SELECT 1', '5 minutes') AS t(x int);
SELECT err($$SELECT * FROM stampede_cached('stats:c', 'SELECT 1/0 AS x', '5 minutes') AS t(x int)$$);
SELECT requests, hits, misses, executions, lock_waits, timeouts, errors,
       api_call_reduction_pct, lock_wait_rate_pct, avg_wait_ms, timeout_rate_pct
FROM stampede_stats;
SELECT stats_reset > now() - interval '1 minute' AS reset_recently FROM stampede_stats;
SELECT stampede_invalidate('stats:a');
SELECT invalidations FROM stampede_stats;

-- stampede.last_call says how this session's last call was answered.
SHOW stampede.last_call;
SELECT count(*) FROM stampede_cached('stats:last', 'SELECT 1', '5 minutes') AS t(x int);
SHOW stampede.last_call;
SELECT count(*) FROM stampede_cached('stats:last', 'SELECT 1', '5 minutes') AS t(x int);
SHOW stampede.last_call;
SELECT count(*) FROM stampede_cached('stats:last-ran', 'SELECT pg_backend_pid()', '5 minutes') AS t(x int);
SHOW stampede.last_call;
SELECT err($$SET stampede.last_call = 'hit'$$);
SELECT stampede_invalidate('stats:last'), stampede_invalidate('stats:last-ran');
