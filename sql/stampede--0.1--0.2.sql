-- stampede 0.1 -> 0.2: stampede_stats gains valkey_rejected, the entries
-- read from Valkey and refused (not sealed with this server's secret, or
-- changed), which 0.1 counted in valkey_errors.
\echo Use "ALTER EXTENSION stampede UPDATE TO '0.2'" to load this file. \quit

-- The view is replaced in place, not dropped, so that what was granted on it,
-- and views built on it, stay: first onto a function with the new columns...
CREATE FUNCTION stampede_stats_raw_next(
    OUT requests bigint,
    OUT hits bigint,
    OUT misses bigint,
    OUT executions bigint,
    OUT lock_waits bigint,
    OUT wait_time_us bigint,
    OUT timeouts bigint,
    OUT fallbacks bigint,
    OUT errors bigint,
    OUT not_stored bigint,
    OUT evictions bigint,
    OUT invalidations bigint,
    OUT valkey_hits bigint,
    OUT valkey_errors bigint,
    OUT valkey_rejected bigint,
    OUT entries bigint,
    OUT store_bytes_used bigint,
    OUT store_bytes_total bigint,
    OUT store_max_entries bigint,
    OUT stats_reset timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'stampede_stats_raw_0_2'
LANGUAGE C VOLATILE PARALLEL SAFE;

CREATE OR REPLACE VIEW stampede_stats AS
SELECT requests, hits, misses, executions, lock_waits,
       round(wait_time_us / 1000.0, 3) AS wait_time_ms,
       timeouts, valkey_hits, fallbacks, valkey_errors,
       errors, not_stored, evictions, invalidations,
       round(100.0 * (requests - executions) / nullif(requests, 0), 2) AS api_call_reduction_pct,
       round(100.0 * lock_waits / nullif(requests, 0), 2) AS lock_wait_rate_pct,
       round(wait_time_us / 1000.0 / nullif(lock_waits, 0), 3) AS avg_wait_ms,
       round(100.0 * timeouts / nullif(requests, 0), 2) AS timeout_rate_pct,
       entries, store_bytes_used, store_bytes_total, store_max_entries,
       stats_reset,
       valkey_rejected
FROM stampede_stats_raw_next();

-- ... then stampede_stats_raw() itself gets them, and the view goes back to it.
DROP FUNCTION stampede_stats_raw();

CREATE FUNCTION stampede_stats_raw(
    OUT requests bigint,
    OUT hits bigint,
    OUT misses bigint,
    OUT executions bigint,
    OUT lock_waits bigint,
    OUT wait_time_us bigint,
    OUT timeouts bigint,
    OUT fallbacks bigint,
    OUT errors bigint,
    OUT not_stored bigint,
    OUT evictions bigint,
    OUT invalidations bigint,
    OUT valkey_hits bigint,
    OUT valkey_errors bigint,
    OUT valkey_rejected bigint,
    OUT entries bigint,
    OUT store_bytes_used bigint,
    OUT store_bytes_total bigint,
    OUT store_max_entries bigint,
    OUT stats_reset timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'stampede_stats_raw_0_2'
LANGUAGE C VOLATILE PARALLEL SAFE;

CREATE OR REPLACE VIEW stampede_stats AS
SELECT requests, hits, misses, executions, lock_waits,
       round(wait_time_us / 1000.0, 3) AS wait_time_ms,
       timeouts, valkey_hits, fallbacks, valkey_errors,
       errors, not_stored, evictions, invalidations,
       round(100.0 * (requests - executions) / nullif(requests, 0), 2) AS api_call_reduction_pct,
       round(100.0 * lock_waits / nullif(requests, 0), 2) AS lock_wait_rate_pct,
       round(wait_time_us / 1000.0 / nullif(lock_waits, 0), 3) AS avg_wait_ms,
       round(100.0 * timeouts / nullif(requests, 0), 2) AS timeout_rate_pct,
       entries, store_bytes_used, store_bytes_total, store_max_entries,
       stats_reset,
       valkey_rejected
FROM stampede_stats_raw();

DROP FUNCTION stampede_stats_raw_next();
