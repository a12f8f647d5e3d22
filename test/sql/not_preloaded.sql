-- Run against a server without shared_preload_libraries = 'stampede':
-- CREATE EXTENSION works; a call says how to fix it.
SELECT extname FROM pg_extension WHERE extname = 'stampede';
SELECT * FROM stampede_cached('k', 'SELECT 1', '5 minutes') AS t(x int);
SELECT stampede_cached_jsonb('k', 'SELECT 1', '5 minutes');
SELECT stampede_invalidate('k');
SELECT requests IS NULL AS no_counters FROM stampede_stats;
SELECT mode, valkey_configured FROM stampede_status();
-- settings are defined all the same
SHOW stampede.max_wait;
