-- stampede 0.2: query-result cache that runs each key's query at most once.
\echo Use "CREATE EXTENSION stampede" to load this file. \quit

CREATE FUNCTION stampede_cached(key text, query text, ttl interval)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stampede_cached'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION stampede_cached(text, text, interval) IS
'rows of query, cached under key for ttl; concurrent callers of a cold key wait for one execution';

CREATE FUNCTION stampede_cached(key text, query text, ttl interval, rowtype anyelement)
RETURNS SETOF anyelement
AS 'MODULE_PATHNAME', 'stampede_cached_typed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION stampede_cached(text, text, interval, anyelement) IS
'rows of query as the row type of rowtype (pass NULL::some_table), cached under key for ttl';

CREATE FUNCTION stampede_cached_jsonb(key text, query text, ttl interval)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'stampede_cached_jsonb'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION stampede_cached_jsonb(text, text, interval) IS
'rows of query as a jsonb array of objects, cached under key for ttl';

CREATE FUNCTION stampede_invalidate(key text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'stampede_invalidate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION stampede_invalidate(text) IS
'remove the entries of key; true when one was removed';

-- One C entry point per version of this function's columns: a server's
-- library answers databases not updated yet (see src/monitor.c).
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
    OUT entries bigint,
    OUT store_bytes_used bigint,
    OUT store_bytes_total bigint,
    OUT store_max_entries bigint,
    OUT stats_reset timestamptz,
    OUT valkey_rejected bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'stampede_stats_raw_0_2'
LANGUAGE C VOLATILE PARALLEL SAFE;

-- valkey_rejected comes last, in the function and in the view: 0.1's columns
-- keep their places, so that an update replaces the view in place (its grants
-- and the views built on it stay), and a dump of a 0.1 database, whose views
-- name this function's columns by position, restores onto 0.2 unchanged.
CREATE VIEW stampede_stats AS
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

COMMENT ON VIEW stampede_stats IS
'server-wide stampede counters and the metrics derived from them';

CREATE FUNCTION stampede_stats_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'stampede_stats_reset'
LANGUAGE C VOLATILE PARALLEL SAFE;

-- Resetting server-wide counters is for superusers and whom they grant it.
REVOKE ALL ON FUNCTION stampede_stats_reset() FROM PUBLIC;

CREATE FUNCTION stampede_status(
    OUT mode text,
    OUT valkey_configured boolean,
    OUT valkey_reachable boolean,
    OUT valkey_circuit text,
    OUT valkey_error text,
    OUT entries bigint,
    OUT store_bytes_used bigint,
    OUT store_bytes_total bigint,
    OUT preloaded boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'stampede_status'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION stampede_status() IS
'what stampede uses now, whether Valkey answers, its circuit breaker, the local store''s use';
