-- Which entry may answer a call: the key, the query text, what its names
-- resolve to and the settings that change its values, and for some rows who
-- asks.  A hit must return what the caller's own call would return now.
--
-- ran() (setup.sql): how many times a cached query really ran since the last ran().
-- Each query counts itself with (SELECT nextval('runs')), once per run.
SELECT nextval('runs') > 0 AS primed, ran() >= 0 AS reset;

CREATE ROLE regress_stampede_m;
CREATE ROLE regress_stampede_t1;
GRANT USAGE ON SCHEMA public TO regress_stampede_m, regress_stampede_t1;
GRANT SELECT ON items TO regress_stampede_m, regress_stampede_t1;
GRANT USAGE, SELECT ON SEQUENCE runs TO regress_stampede_m, regress_stampede_t1;

---------------------------------------------------------------------------
-- 1. The key alone does not pick the entry.
---------------------------------------------------------------------------
-- M fills key 'id:top' with a query of its own ...
SET ROLE regress_stampede_m;
SELECT * FROM stampede_cached('id:top', $$SELECT 1 AS id, 'forged by m' AS name WHERE (SELECT nextval('runs')) > 0$$,
    '5 minutes') AS t(id int, name text);
RESET ROLE;
SELECT ran() AS m_ran;
-- ... a superuser calling 'id:top' with the real query gets the real rows ...
SELECT * FROM stampede_cached('id:top', $$SELECT id, name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id$$,
    '5 minutes') AS t(id int, name text);
SELECT ran() AS real_ran;
-- ... and so does another role; each variant answers its own callers.
SET ROLE regress_stampede_t1;
SELECT * FROM stampede_cached('id:top', $$SELECT id, name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id$$,
    '5 minutes') AS t(id int, name text);
SELECT * FROM stampede_cached('id:top', $$SELECT 1 AS id, 'forged by m' AS name WHERE (SELECT nextval('runs')) > 0$$,
    '5 minutes') AS t(id int, name text);
RESET ROLE;
SELECT ran() AS both_hits;
-- The jsonb form of the same key is an entry of its own.
SELECT stampede_cached_jsonb('id:top', $$SELECT id FROM items WHERE (SELECT nextval('runs')) > 0 AND id < 3 ORDER BY id$$,
    '5 minutes');
SELECT ran() AS jsonb_ran;
-- Invalidating the key removes every variant: each runs again.
SELECT stampede_invalidate('id:top') AS removed;
SELECT count(*) FROM stampede_cached('id:top', $$SELECT id, name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id$$,
    '5 minutes') AS t(id int, name text);
SELECT count(*) FROM stampede_cached('id:top', $$SELECT 1 AS id, 'forged by m' AS name WHERE (SELECT nextval('runs')) > 0$$,
    '5 minutes') AS t(id int, name text);
SELECT stampede_cached_jsonb('id:top', $$SELECT id FROM items WHERE (SELECT nextval('runs')) > 0 AND id < 3 ORDER BY id$$,
    '5 minutes');
SELECT ran() AS all_three_ran;
SELECT stampede_invalidate('id:top') AS removed;
SELECT stampede_invalidate('id:top') AS removed_again;

-- The README's two calls of 'top': both work, side by side.
SELECT stampede_invalidate('top') IS NOT NULL AS clean;
SELECT * FROM stampede_cached('top', $$SELECT id, name FROM items ORDER BY id$$, '5 minutes')
         AS t(id int, name text);
SELECT * FROM stampede_cached('top', $$SELECT id, name, total FROM items$$, '5 minutes', NULL::items)
         ORDER BY id;
SELECT * FROM stampede_cached('top', $$SELECT id, name FROM items ORDER BY id$$, '5 minutes')
         AS t(id int, name text);
SELECT sum(total) FROM stampede_cached('top', $$SELECT id, name, total FROM items$$, '5 minutes', NULL::items);
SELECT stampede_invalidate('top') AS removed;

---------------------------------------------------------------------------
-- 2. Same text, other relations.
---------------------------------------------------------------------------
-- The default search_path, "$user", public: M owns a schema named after
-- itself with a table items of its own.
CREATE SCHEMA regress_stampede_m AUTHORIZATION regress_stampede_m;
CREATE TABLE regress_stampede_m.items (id int, name text);
INSERT INTO regress_stampede_m.items VALUES (1, 'm''s own 1'), (2, 'm''s own 2');
ALTER TABLE regress_stampede_m.items OWNER TO regress_stampede_m;
SHOW search_path;
SELECT * FROM stampede_cached('id:user', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 2$$,
    '5 minutes') AS t(name text);
SET ROLE regress_stampede_m;
SELECT * FROM stampede_cached('id:user', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 2$$,
    '5 minutes') AS t(name text);
SET ROLE regress_stampede_t1;
SELECT * FROM stampede_cached('id:user', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 2$$,
    '5 minutes') AS t(name text);
RESET ROLE;
-- The superuser and t1 resolve items alike and share; M ran its own.
SELECT ran() AS runs_superuser_and_m;
-- SET SESSION AUTHORIZATION changes "$user" too.
SET SESSION AUTHORIZATION regress_stampede_m;
SELECT * FROM stampede_cached('id:user', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 2$$,
    '5 minutes') AS t(name text);
SELECT session_user = current_user AS both_m;
RESET SESSION AUTHORIZATION;
SELECT * FROM stampede_cached('id:user', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 2$$,
    '5 minutes') AS t(name text);
SELECT ran() AS runs_none;
-- The same search_path setting resolves by USAGE: t1 may not use M's schema,
-- so it reads public.items; M reads its own.
SET search_path = regress_stampede_m, public;
SET ROLE regress_stampede_t1;
SELECT * FROM stampede_cached('id:path-usage', $$SELECT name FROM items ORDER BY id LIMIT 2$$, '5 minutes') AS t(name text);
SET ROLE regress_stampede_m;
SELECT * FROM stampede_cached('id:path-usage', $$SELECT name FROM items ORDER BY id LIMIT 2$$, '5 minutes') AS t(name text);
SET ROLE regress_stampede_t1;
SELECT * FROM stampede_cached('id:path-usage', $$SELECT name FROM items ORDER BY id LIMIT 2$$, '5 minutes') AS t(name text);
RESET ROLE;
RESET search_path;
-- A schema renamed: the entry is not used for what the names mean now.
SET ROLE regress_stampede_m;
SELECT * FROM stampede_cached('id:user', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 2$$,
    '5 minutes') AS t(name text);
RESET ROLE;
-- An empty search_path finds no items at all: the error the call raises.
SET search_path = '';
SELECT public.err($$SELECT * FROM public.stampede_cached('id:user', 'SELECT name FROM items WHERE (SELECT nextval(''public.runs'')) > 0 ORDER BY id LIMIT 2', '5 minutes') AS t(name text)$$);
RESET search_path;
ALTER SCHEMA regress_stampede_m RENAME TO regress_stampede_m_old;
SET ROLE regress_stampede_m;
SELECT * FROM stampede_cached('id:user', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 2$$,
    '5 minutes') AS t(name text);
RESET ROLE;
ALTER SCHEMA regress_stampede_m_old RENAME TO regress_stampede_m;
SELECT ran() AS runs_m_then_public;

-- Schema per tenant, chosen with SET search_path, within one session.
CREATE SCHEMA regress_ten_a;
CREATE SCHEMA regress_ten_b;
CREATE TABLE regress_ten_a.items (id int, name text);
CREATE TABLE regress_ten_b.items (id int, name text);
INSERT INTO regress_ten_a.items VALUES (1, 'tenant a');
INSERT INTO regress_ten_b.items VALUES (1, 'tenant b');
SET search_path = regress_ten_a;
SELECT * FROM public.stampede_cached('id:tenant', $$SELECT name FROM items WHERE (SELECT nextval('public.runs')) > 0$$, '5 minutes') AS t(name text);
SET search_path = regress_ten_b;
SELECT * FROM public.stampede_cached('id:tenant', $$SELECT name FROM items WHERE (SELECT nextval('public.runs')) > 0$$, '5 minutes') AS t(name text);
SET search_path = regress_ten_a, public;
SELECT * FROM public.stampede_cached('id:tenant', $$SELECT name FROM items WHERE (SELECT nextval('public.runs')) > 0$$, '5 minutes') AS t(name text);
SELECT public.ran() AS runs_three_paths;
SET search_path = regress_ten_a;
SELECT * FROM public.stampede_cached('id:tenant', $$SELECT name FROM items WHERE (SELECT nextval('public.runs')) > 0$$, '5 minutes') AS t(name text);
SET search_path = regress_ten_b;
SELECT * FROM public.stampede_cached('id:tenant', $$SELECT name FROM items WHERE (SELECT nextval('public.runs')) > 0$$, '5 minutes') AS t(name text);
-- SET LOCAL, and a function's own SET search_path, count as well.
BEGIN;
SET LOCAL search_path = regress_ten_a;
SELECT * FROM public.stampede_cached('id:tenant', $$SELECT name FROM items WHERE (SELECT nextval('public.runs')) > 0$$, '5 minutes') AS t(name text);
COMMIT;
SHOW search_path;
RESET search_path;
CREATE FUNCTION tenant_b_names() RETURNS SETOF text LANGUAGE sql SET search_path = regress_ten_b AS $$
    SELECT name FROM public.stampede_cached('id:tenant', $q$SELECT name FROM items WHERE (SELECT nextval('public.runs')) > 0$q$, '5 minutes') AS t(name text)
$$;
SELECT tenant_b_names();
SELECT ran() AS runs_all_hits;
-- Functions resolve through search_path as well.
CREATE FUNCTION regress_ten_a.label() RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT 'label of a'$$;
CREATE FUNCTION regress_ten_b.label() RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT 'label of b'$$;
SET search_path = regress_ten_a, public;
SELECT * FROM public.stampede_cached('id:func', $$SELECT label()$$, '5 minutes') AS t(l text);
SET search_path = regress_ten_b, public;
SELECT * FROM public.stampede_cached('id:func', $$SELECT label()$$, '5 minutes') AS t(l text);
RESET search_path;

-- Temporary tables.  This session fills the entry of public.items first.
SELECT * FROM stampede_cached('id:temp', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 1$$,
    '5 minutes') AS t(name text);
SELECT ran() AS runs_session_1;
\c
-- A new session whose items is a temporary table: its own rows, not stored.
CREATE TEMP TABLE items (id int, name text);
INSERT INTO items VALUES (1, 'temp of session 2');
SELECT * FROM stampede_cached('id:temp', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 1$$,
    '5 minutes') AS t(name text);
SELECT * FROM stampede_cached('id:temp', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 1$$,
    '5 minutes') AS t(name text);
SELECT ran() AS runs_temp_twice;
-- pg_temp named explicitly, too.
SELECT * FROM stampede_cached('id:temp-explicit', $$SELECT name FROM pg_temp.items$$, '5 minutes') AS t(name text);
SET search_path = pg_temp, public;
SELECT * FROM stampede_cached('id:temp-path', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 1$$,
    '5 minutes') AS t(name text);
RESET search_path;
-- A temporary function is this session's too.
CREATE FUNCTION pg_temp.secret_label() RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT 'temp function'$$;
SELECT * FROM stampede_cached('id:temp-func', $$SELECT pg_temp.secret_label()$$, '5 minutes') AS t(l text);
DROP TABLE items;
-- Without the temporary table, items is public.items again.
SELECT * FROM stampede_cached('id:temp', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 1$$,
    '5 minutes') AS t(name text);
SELECT ran() AS runs_session_2;
\c
\c
-- Another session, given the same temporary schema again (pg_temp_N is
-- reused by the next backend in that slot): the rows of its own temporary
-- items, never session 2's entry of public.items, whose search path named
-- the same schemas.
CREATE TEMP TABLE items (id int, name text);
INSERT INTO items VALUES (1, 'temp of session 3');
SELECT * FROM stampede_cached('id:temp', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 1$$,
    '5 minutes') AS t(name text);
SELECT * FROM stampede_cached('id:temp-path', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 1$$,
    '5 minutes') AS t(name text);
DROP TABLE items;
SELECT ran() AS runs_session_3;
\c
-- Sessions without temporary tables read public.items, and share it.  (This
-- one may run it: creating a temporary schema, if session 2 had to, makes
-- every entry stale.)
SELECT * FROM stampede_cached('id:temp', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 1$$,
    '5 minutes') AS t(name text);
SELECT ran() <= 1 AS runs_session_4;
\c
SELECT * FROM stampede_cached('id:temp', $$SELECT name FROM items WHERE (SELECT nextval('runs')) > 0 ORDER BY id LIMIT 1$$,
    '5 minutes') AS t(name text);
SELECT ran() AS runs_session_5;

---------------------------------------------------------------------------
-- 3. Settings that change the values: each its own rows, each still cached.
---------------------------------------------------------------------------
SET TimeZone = 'UTC';
SELECT * FROM stampede_cached('id:tz', $$SELECT '2020-01-01 00:00+00'::timestamptz::text AS v, nextval('runs') > 0 AS ran$$,
    '5 minutes') AS t(v text, ran bool);
SET TimeZone = 'Asia/Tokyo';
SELECT * FROM stampede_cached('id:tz', $$SELECT '2020-01-01 00:00+00'::timestamptz::text AS v, nextval('runs') > 0 AS ran$$,
    '5 minutes') AS t(v text, ran bool);
SET TIME ZONE INTERVAL '-03:30' HOUR TO MINUTE;
SELECT * FROM stampede_cached('id:tz', $$SELECT '2020-01-01 00:00+00'::timestamptz::text AS v, nextval('runs') > 0 AS ran$$,
    '5 minutes') AS t(v text, ran bool);
SET TimeZone = 'UTC';
SELECT * FROM stampede_cached('id:tz', $$SELECT '2020-01-01 00:00+00'::timestamptz::text AS v, nextval('runs') > 0 AS ran$$,
    '5 minutes') AS t(v text, ran bool);
SELECT ran() AS runs_three_zones;
-- A timestamptz column itself: the rows hold the value, the output follows the session.
SET TimeZone = 'Asia/Tokyo';
SELECT * FROM stampede_cached('id:tz-col', $$SELECT '2020-01-01 00:00+00'::timestamptz AS v$$, '5 minutes') AS t(v timestamptz);
SET TimeZone = 'UTC';
SELECT * FROM stampede_cached('id:tz-col', $$SELECT '2020-01-01 00:00+00'::timestamptz AS v$$, '5 minutes') AS t(v timestamptz);
RESET TimeZone;

SET DateStyle = 'ISO, MDY';
SELECT * FROM stampede_cached('id:datestyle', $$SELECT '01/02/2020'::date::text AS v, nextval('runs') > 0 AS ran$$,
    '5 minutes') AS t(v text, ran bool);
SET DateStyle = 'ISO, DMY';
SELECT * FROM stampede_cached('id:datestyle', $$SELECT '01/02/2020'::date::text AS v, nextval('runs') > 0 AS ran$$,
    '5 minutes') AS t(v text, ran bool);
SET DateStyle = 'SQL, DMY';
SELECT * FROM stampede_cached('id:datestyle', $$SELECT '01/02/2020'::date::text AS v, nextval('runs') > 0 AS ran$$,
    '5 minutes') AS t(v text, ran bool);
SET DateStyle = 'ISO, MDY';
SELECT * FROM stampede_cached('id:datestyle', $$SELECT '01/02/2020'::date::text AS v, nextval('runs') > 0 AS ran$$,
    '5 minutes') AS t(v text, ran bool);
RESET DateStyle;
SELECT ran() AS runs_three_datestyles;

SET IntervalStyle = 'postgres';
SELECT * FROM stampede_cached('id:intervalstyle', $$SELECT '1 day 2 hours'::interval::text AS v$$, '5 minutes') AS t(v text);
SET IntervalStyle = 'iso_8601';
SELECT * FROM stampede_cached('id:intervalstyle', $$SELECT '1 day 2 hours'::interval::text AS v$$, '5 minutes') AS t(v text);
RESET IntervalStyle;

SET extra_float_digits = 1;
SELECT * FROM stampede_cached('id:float', $$SELECT (0.1::float8 + 0.2::float8)::text AS v, 0.1::float8::text AS w, nextval('runs') > 0 AS ran$$,
    '5 minutes') AS t(v text, w text, ran bool);
SET extra_float_digits = 0;
SELECT * FROM stampede_cached('id:float', $$SELECT (0.1::float8 + 0.2::float8)::text AS v, 0.1::float8::text AS w, nextval('runs') > 0 AS ran$$,
    '5 minutes') AS t(v text, w text, ran bool);
SET extra_float_digits = 1;
SELECT * FROM stampede_cached('id:float', $$SELECT (0.1::float8 + 0.2::float8)::text AS v, 0.1::float8::text AS w, nextval('runs') > 0 AS ran$$,
    '5 minutes') AS t(v text, w text, ran bool);
RESET extra_float_digits;
SELECT ran() AS runs_two_float_digits;

SET bytea_output = 'hex';
SELECT * FROM stampede_cached('id:bytea', $$SELECT '\x01ff'::bytea::text AS v$$, '5 minutes') AS t(v text);
SET bytea_output = 'escape';
SELECT * FROM stampede_cached('id:bytea', $$SELECT '\x01ff'::bytea::text AS v$$, '5 minutes') AS t(v text);
RESET bytea_output;
SELECT * FROM stampede_cached('id:bytea', $$SELECT '\x01ff'::bytea::text AS v$$, '5 minutes') AS t(v text);

SET default_text_search_config = 'pg_catalog.simple';
SELECT * FROM stampede_cached('id:tsconfig', $$SELECT to_tsvector('running dogs')::text AS v$$, '5 minutes') AS t(v text);
SET default_text_search_config = 'pg_catalog.english';
SELECT * FROM stampede_cached('id:tsconfig', $$SELECT to_tsvector('running dogs')::text AS v$$, '5 minutes') AS t(v text);
RESET default_text_search_config;

SET array_nulls = on;
SELECT * FROM stampede_cached('id:array-nulls', $$SELECT ('{NULL}'::text[])[1] IS NULL AS is_null$$, '5 minutes') AS t(is_null bool);
SET array_nulls = off;
SELECT * FROM stampede_cached('id:array-nulls', $$SELECT ('{NULL}'::text[])[1] IS NULL AS is_null$$, '5 minutes') AS t(is_null bool);
RESET array_nulls;

SET quote_all_identifiers = off;
SELECT * FROM stampede_cached('id:quote', $$SELECT quote_ident('items') AS q$$, '5 minutes') AS t(q text);
SET quote_all_identifiers = on;
SELECT * FROM stampede_cached('id:quote', $$SELECT quote_ident('items') AS q$$, '5 minutes') AS t(q text);
RESET quote_all_identifiers;

-- How the text itself parses: standard_conforming_strings.
SET escape_string_warning = off;
SET standard_conforming_strings = on;
SELECT * FROM stampede_cached('id:scs', $$SELECT length('a\\b') AS n$$, '5 minutes') AS t(n int);
SET standard_conforming_strings = off;
SELECT * FROM stampede_cached('id:scs', $$SELECT length('a\\b') AS n$$, '5 minutes') AS t(n int);
RESET standard_conforming_strings;
RESET escape_string_warning;

---------------------------------------------------------------------------
-- 5. Built-ins and catalogs that answer by who asks, or by session.
---------------------------------------------------------------------------
CREATE TABLE regress_hidden (id int, secret text);
INSERT INTO regress_hidden VALUES (1, 'only the superuser');
ANALYZE regress_hidden;

-- query_to_xml runs a query of its own: never stored, so t1 gets its own
-- call's answer (an error), not the superuser's rows.
SELECT * FROM stampede_cached('id:xml', $$SELECT query_to_xml('SELECT secret FROM regress_hidden', false, false, '')::text AS x$$,
    '5 minutes') AS t(x text);
SET ROLE regress_stampede_t1;
SELECT err($$SELECT * FROM stampede_cached('id:xml', 'SELECT query_to_xml(''SELECT secret FROM regress_hidden'', false, false, '''')::text AS x', '5 minutes') AS t(x text)$$);
RESET ROLE;

-- A superuser-only setting read from pg_settings or current_setting.
SELECT setting IS NOT NULL AS superuser_sees FROM stampede_cached('id:pg-settings',
    $$SELECT setting FROM pg_settings WHERE name = 'stampede.valkey_url'$$, '5 minutes') AS t(setting text);
SET ROLE regress_stampede_t1;
SELECT count(*) AS t1_sees_rows FROM stampede_cached('id:pg-settings',
    $$SELECT setting FROM pg_settings WHERE name = 'stampede.valkey_url'$$, '5 minutes') AS t(setting text);
SELECT count(*) AS own_call FROM pg_settings WHERE name = 'stampede.valkey_url';
RESET ROLE;
SELECT v IS NOT NULL AS superuser_sees FROM stampede_cached('id:cur-setting',
    $$SELECT current_setting('stampede.valkey_url') AS v$$, '5 minutes') AS t(v text);
SET ROLE regress_stampede_t1;
SELECT err($$SELECT * FROM stampede_cached('id:cur-setting', 'SELECT current_setting(''stampede.valkey_url'') AS v', '5 minutes') AS t(v text)$$);
RESET ROLE;
-- Any other built-in setting: not stored either.
SET work_mem = '1MB';
SELECT * FROM stampede_cached('id:work-mem', $$SELECT current_setting('work_mem') AS v$$, '5 minutes') AS t(v text);
SET work_mem = '2MB';
SELECT * FROM stampede_cached('id:work-mem', $$SELECT current_setting('work_mem') AS v$$, '5 minutes') AS t(v text);
RESET work_mem;

-- has_table_privilege, current_user: per role.
SELECT * FROM stampede_cached('id:priv', $$SELECT has_table_privilege('regress_hidden', 'SELECT') AS p, nextval('runs') > 0 AS ran$$,
    '5 minutes') AS t(p bool, ran bool);
SET ROLE regress_stampede_t1;
SELECT * FROM stampede_cached('id:priv', $$SELECT has_table_privilege('regress_hidden', 'SELECT') AS p, nextval('runs') > 0 AS ran$$,
    '5 minutes') AS t(p bool, ran bool);
SELECT * FROM stampede_cached('id:priv', $$SELECT has_table_privilege('regress_hidden', 'SELECT') AS p, nextval('runs') > 0 AS ran$$,
    '5 minutes') AS t(p bool, ran bool);
RESET ROLE;
SELECT * FROM stampede_cached('id:priv', $$SELECT has_table_privilege('regress_hidden', 'SELECT') AS p, nextval('runs') > 0 AS ran$$,
    '5 minutes') AS t(p bool, ran bool);
SELECT ran() AS runs_one_per_role;
-- initdb's superuser is named after whoever ran initdb: shown as "superuser".
SELECT rolname AS superuser FROM pg_roles WHERE oid = 10 \gset
SELECT CASE cu WHEN :'superuser' THEN 'superuser' ELSE cu END AS cu, CASE su WHEN :'superuser' THEN 'superuser' ELSE su END AS su
    FROM stampede_cached('id:whoami', $$SELECT current_user::text AS cu, session_user::text AS su$$, '5 minutes') AS t(cu text, su text);
SET ROLE regress_stampede_t1;
SELECT CASE cu WHEN :'superuser' THEN 'superuser' ELSE cu END AS cu, CASE su WHEN :'superuser' THEN 'superuser' ELSE su END AS su
    FROM stampede_cached('id:whoami', $$SELECT current_user::text AS cu, session_user::text AS su$$, '5 minutes') AS t(cu text, su text);
SET SESSION AUTHORIZATION regress_stampede_m;
SELECT CASE cu WHEN :'superuser' THEN 'superuser' ELSE cu END AS cu, CASE su WHEN :'superuser' THEN 'superuser' ELSE su END AS su
    FROM stampede_cached('id:whoami', $$SELECT current_user::text AS cu, session_user::text AS su$$, '5 minutes') AS t(cu text, su text);
RESET SESSION AUTHORIZATION;
SELECT CASE cu WHEN :'superuser' THEN 'superuser' ELSE cu END AS cu, CASE su WHEN :'superuser' THEN 'superuser' ELSE su END AS su
    FROM stampede_cached('id:whoami', $$SELECT current_user::text AS cu, session_user::text AS su$$, '5 minutes') AS t(cu text, su text);
SELECT stampede_cached_jsonb('id:pg-has-role', $$SELECT pg_has_role('regress_stampede_m', 'USAGE') AS m$$, '5 minutes');
SET ROLE regress_stampede_m;
SELECT stampede_cached_jsonb('id:pg-has-role', $$SELECT pg_has_role('regress_stampede_m', 'USAGE') AS m$$, '5 minutes');
SET ROLE regress_stampede_t1;
SELECT stampede_cached_jsonb('id:pg-has-role', $$SELECT pg_has_role('regress_stampede_m', 'USAGE') AS m$$, '5 minutes');
RESET ROLE;

-- pg_stats shows only the columns the role may read.
SELECT * FROM stampede_cached('id:pg-stats', $$SELECT attname::text AS col FROM pg_stats WHERE tablename = 'regress_hidden' ORDER BY 1$$,
    '5 minutes') AS t(col text);
SET ROLE regress_stampede_t1;
SELECT * FROM stampede_cached('id:pg-stats', $$SELECT attname::text AS col FROM pg_stats WHERE tablename = 'regress_hidden' ORDER BY 1$$,
    '5 minutes') AS t(col text);
RESET ROLE;

-- Activity, backend, sequences' session state, large objects: not stored.
SELECT count(*) > 0 AS sees_itself FROM stampede_cached('id:activity',
    $$SELECT pid FROM pg_stat_activity WHERE pid = pg_backend_pid()$$, '5 minutes') AS t(pid int);
SELECT pid = pg_backend_pid() AS own_pid FROM stampede_cached('id:pid', $$SELECT pg_backend_pid() AS pid$$, '5 minutes') AS t(pid int);
SELECT pid = pg_backend_pid() AS own_pid FROM stampede_cached('id:pid', $$SELECT pg_backend_pid() AS pid$$, '5 minutes') AS t(pid int);
SELECT setval('runs', last_value + 1) > 0 AS moved FROM runs;
SELECT v = currval('runs') AS own_currval FROM stampede_cached('id:currval', $$SELECT currval('runs') AS v$$, '5 minutes') AS t(v bigint);
SELECT v = lastval() AS own_lastval FROM stampede_cached('id:lastval', $$SELECT lastval() AS v$$, '5 minutes') AS t(v bigint);
SELECT lo_from_bytea(424242, 'large secret') AS lo;
SELECT convert_from(v, 'UTF8') AS v FROM stampede_cached('id:lo', 'SELECT lo_get(424242) AS v', '5 minutes') AS t(v bytea);
SET ROLE regress_stampede_t1;
SELECT err($$SELECT * FROM stampede_cached('id:lo', 'SELECT lo_get(424242) AS v', '5 minutes') AS t(v bytea)$$);
RESET ROLE;
SELECT lo_unlink(424242);
\c
-- In another session: its own backend, its own sequence state.
SELECT pid = pg_backend_pid() AS own_pid FROM stampede_cached('id:pid', $$SELECT pg_backend_pid() AS pid$$, '5 minutes') AS t(pid int);
SELECT err($$SELECT * FROM stampede_cached('id:currval', 'SELECT currval(''runs'') AS v', '5 minutes') AS t(v bigint)$$);

-- Not tested here yet, because stampede gets them wrong (655801b): a hit
-- ignores client_encoding (pg_client_encoding()) and getpgusername() (who
-- asks); per-role answers about rights (has_table_privilege, pg_stats) do
-- not follow a GRANT or REVOKE of the object they name; a user-defined
-- aggregate's support functions, a function's default arguments and a
-- domain's CHECK are not looked at; rows of a role under row-level security
-- do not follow its memberships or BYPASSRLS.

---------------------------------------------------------------------------
-- Clean up.
---------------------------------------------------------------------------
SELECT count(*) FILTER (WHERE stampede_invalidate(k)) >= 0 AS invalidated FROM unnest(ARRAY[
    'id:user', 'id:path-usage', 'id:tenant', 'id:func', 'id:temp', 'id:temp-explicit', 'id:temp-path', 'id:temp-func',
    'id:tz', 'id:tz-col', 'id:datestyle', 'id:intervalstyle', 'id:float', 'id:bytea', 'id:tsconfig', 'id:scs',
    'id:array-nulls', 'id:quote',
    'id:xml', 'id:pg-settings', 'id:cur-setting', 'id:work-mem', 'id:priv', 'id:whoami', 'id:pg-has-role',
    'id:pg-stats', 'id:activity', 'id:pid', 'id:currval', 'id:lastval', 'id:lo']) k;
DROP FUNCTION tenant_b_names();
DROP SCHEMA regress_ten_a, regress_ten_b CASCADE;
DROP TABLE regress_hidden;
DROP SCHEMA regress_stampede_m CASCADE;
REVOKE ALL ON items FROM regress_stampede_m, regress_stampede_t1;
REVOKE ALL ON SEQUENCE runs FROM regress_stampede_m, regress_stampede_t1;
REVOKE ALL ON SCHEMA public FROM regress_stampede_m, regress_stampede_t1;
DROP ROLE regress_stampede_m, regress_stampede_t1;
