-- stampede 0.1 -> 0.2: stampede_stats gains valkey_rejected, the calls that
-- refused an entry read from Valkey (not sealed with this server's secret,
-- or changed), which 0.1 counted in valkey_errors.
\echo Use "ALTER EXTENSION stampede UPDATE TO '0.2'" to load this file. \quit

-- The view is replaced in place, not dropped, so that what was granted on it,
-- and views built on it, stay: first onto a function with the new columns
-- (under a name no one else would choose, until it takes the old one's)...
CREATE FUNCTION stampede_stats_raw_during_update_to_0_2(
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
FROM stampede_stats_raw_during_update_to_0_2();

-- ... which then takes the old one's name, and what was granted or revoked
-- on it (dropping it loses that).  A view of yours that reads stampede_stats_raw()
-- directly stops the update here, by name: drop it, update, create it again.
DO $update$
DECLARE
    acl aclitem[] := (SELECT proacl FROM pg_proc WHERE oid = 'stampede_stats_raw()'::regprocedure);
    item record;
BEGIN
    DROP FUNCTION stampede_stats_raw();
    ALTER FUNCTION stampede_stats_raw_during_update_to_0_2() RENAME TO stampede_stats_raw;
    IF acl IS NOT NULL THEN
        REVOKE ALL ON FUNCTION stampede_stats_raw() FROM PUBLIC;
        FOR item IN SELECT grantee, privilege_type, is_grantable FROM aclexplode(acl) LOOP
            EXECUTE format('GRANT %s ON FUNCTION stampede_stats_raw() TO %s%s',
                           item.privilege_type,
                           CASE WHEN item.grantee = 0 THEN 'PUBLIC'
                                ELSE item.grantee::regrole::text END,
                           CASE WHEN item.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
    END IF;
END
$update$;

-- The view follows the function (by OID), but still calls it by the name it
-- had: made again, it reads as a fresh install's.
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
