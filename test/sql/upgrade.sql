-- Upgrading: a database still on 0.1 is answered by this library, and
-- ALTER EXTENSION stampede UPDATE gives what a fresh install of 0.2 gives,
-- keeping what was granted on stampede_stats and the views built on it.

-- What the extension is made of: each member, its definition, its grants.
CREATE FUNCTION pg_temp.stampede_objects()
RETURNS TABLE (member text, definition text)
LANGUAGE sql AS $$
    SELECT pg_describe_object(d.classid, d.objid, d.objsubid),
           CASE d.classid
               WHEN 'pg_proc'::regclass THEN
                   pg_get_functiondef(d.objid) || ' acl ' ||
                   (SELECT array_agg(a::text ORDER BY a::text)::text
                    FROM pg_proc, unnest(coalesce(proacl, acldefault('f', proowner))) a
                    WHERE oid = d.objid)
               WHEN 'pg_class'::regclass THEN
                   pg_get_viewdef(d.objid) || ' acl ' ||
                   (SELECT array_agg(a::text ORDER BY a::text)::text
                    FROM pg_class, unnest(coalesce(relacl, acldefault('r', relowner))) a
                    WHERE oid = d.objid)
               ELSE ''
           END
    FROM pg_depend d
    WHERE d.refclassid = 'pg_extension'::regclass
      AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'stampede')
      AND d.deptype = 'e'
$$;

-- (The views and functions of earlier tests that call stampede go with it.)
SET client_min_messages = warning;
DROP EXTENSION stampede CASCADE;
RESET client_min_messages;
CREATE EXTENSION stampede VERSION '0.1';
SELECT extversion FROM pg_extension WHERE extname = 'stampede';

-- Every function and view of 0.1 answers.
SELECT stampede_stats_reset();
SELECT * FROM stampede_cached('upgrade:a', 'SELECT 1 AS x', '5 minutes') AS t(x int);
SELECT * FROM stampede_cached('upgrade:a', 'SELECT 1 AS x', '5 minutes') AS t(x int);
SELECT * FROM stampede_cached('upgrade:typed', 'SELECT id, name, total FROM items WHERE id = 1',
                              '5 minutes', NULL::items);
SELECT stampede_cached_jsonb('upgrade:json', 'SELECT 2 AS y', '5 minutes');
SELECT stampede_invalidate('upgrade:a');
SELECT requests, hits, executions, invalidations, valkey_errors >= 0 AS valkey_errors_counted
FROM stampede_stats;
SELECT count(*) AS columns FROM pg_attribute
WHERE attrelid = 'stampede_stats'::regclass AND attnum > 0;
SELECT preloaded FROM stampede_status();

-- What a DBA built on it: a role that may read the view, a view over it,
-- the raw function kept from everyone else.
CREATE ROLE stampede_upgrade_monitor;
GRANT SELECT ON stampede_stats TO stampede_upgrade_monitor;
CREATE VIEW upgrade_dashboard AS SELECT requests, hits, valkey_errors FROM stampede_stats;
REVOKE EXECUTE ON FUNCTION stampede_stats_raw() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION stampede_stats_raw() TO stampede_upgrade_monitor;

-- A view of one's own on the raw function stops the update, by name.
CREATE VIEW upgrade_raw AS SELECT requests FROM stampede_stats_raw();
SELECT err($$ALTER EXTENSION stampede UPDATE$$);
SELECT extversion FROM pg_extension WHERE extname = 'stampede';
DROP VIEW upgrade_raw;

ALTER EXTENSION stampede UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'stampede';

-- Kept across the update, and the new column there, last.
SELECT has_table_privilege('stampede_upgrade_monitor', 'stampede_stats', 'SELECT') AS still_granted;
SELECT has_function_privilege('stampede_upgrade_monitor', 'stampede_stats_raw()', 'EXECUTE')
           AS raw_still_granted,
       has_function_privilege('public', 'stampede_stats_raw()', 'EXECUTE') AS public_may_run;
SELECT attnum, attname FROM pg_attribute
WHERE attrelid = 'stampede_stats'::regclass AND attname IN ('valkey_errors', 'stats_reset', 'valkey_rejected')
ORDER BY attnum;
SELECT proargnames[array_length(proargnames, 1) - 1:] AS raw_last_columns
FROM pg_proc WHERE oid = 'stampede_stats_raw()'::regprocedure;
SELECT requests >= 0 AS dashboard_answers FROM upgrade_dashboard;
SELECT requests, hits, executions, invalidations, valkey_rejected FROM stampede_stats;
SELECT count(*) AS columns FROM pg_attribute
WHERE attrelid = 'stampede_stats'::regclass AND attnum > 0;

-- Every function and view of 0.2 answers.
SELECT * FROM stampede_cached('upgrade:a', 'SELECT 1 AS x', '5 minutes') AS t(x int);
SELECT * FROM stampede_cached('upgrade:a', 'SELECT 1 AS x', '5 minutes') AS t(x int);
SELECT * FROM stampede_cached('upgrade:typed', 'SELECT id, name, total FROM items WHERE id = 1',
                              '5 minutes', NULL::items);
SELECT stampede_cached_jsonb('upgrade:json', 'SELECT 2 AS y', '5 minutes');
SELECT stampede_invalidate('upgrade:a'), stampede_invalidate('upgrade:typed'),
       stampede_invalidate('upgrade:json');
SELECT preloaded FROM stampede_status();
SELECT stampede_stats_reset();
SELECT requests FROM stampede_stats;

-- The same members, definitions and grants as a fresh install of 0.2.
DROP VIEW upgrade_dashboard;
REVOKE SELECT ON stampede_stats FROM stampede_upgrade_monitor;
REVOKE EXECUTE ON FUNCTION stampede_stats_raw() FROM stampede_upgrade_monitor;
GRANT EXECUTE ON FUNCTION stampede_stats_raw() TO PUBLIC;
DROP ROLE stampede_upgrade_monitor;
CREATE TEMP TABLE upgraded AS SELECT * FROM pg_temp.stampede_objects();
DROP EXTENSION stampede;
CREATE EXTENSION stampede;
CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.stampede_objects();
SELECT 'only after the update' AS "where", member FROM (TABLE upgraded EXCEPT TABLE fresh) u
UNION ALL
SELECT 'only in a fresh install', member FROM (TABLE fresh EXCEPT TABLE upgraded) f;
SELECT count(*) AS members FROM fresh;
