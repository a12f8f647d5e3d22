-- Rows that depend on the caller in ways the query text hides: rolled-back
-- writes read through a function, role names and encodings, role membership
-- and BYPASSRLS, privilege inquiries, temporary tables that shadow a name,
-- aggregates, default arguments and domain checks.  Every "right_*" column
-- must print t: the hit gives what the caller's own call gives.
SELECT nextval('runs') > 0 AS primed;
CREATE ROLE regress_stampede_pm;
CREATE ROLE regress_stampede_padm;
GRANT USAGE ON SCHEMA public TO regress_stampede_pm;
GRANT SELECT ON items TO regress_stampede_pm;
GRANT USAGE, SELECT ON SEQUENCE runs TO regress_stampede_pm;

-- B5. Rows a transaction wrote and read through a function must not be stored
-- (first: the next session's custom settings must be the same as this one's).
CREATE FUNCTION pend_names() RETURNS SETOF text STABLE LANGUAGE sql AS 'SELECT name FROM items';
BEGIN;
INSERT INTO items VALUES (99, 'uncommitted', 0);
SELECT count(*) AS in_txn FROM stampede_cached('pend:dirty', 'SELECT n FROM pend_names() n', '5 minutes') AS t(n text);
ROLLBACK;
\c
SELECT (SELECT count(*) FROM stampede_cached('pend:dirty', 'SELECT n FROM pend_names() n', '5 minutes') AS t(n text))
     = (SELECT count(*) FROM items) AS right_no_rolled_back_rows;

-- B1. getpgusername() is current_user under another name: kept per role?
SET ROLE regress_stampede_pm;
SELECT u FROM stampede_cached('pend:getpgusername', 'SELECT getpgusername()::text AS u', '5 minutes') AS t(u text);
RESET ROLE;
SELECT u = current_user AS right_getpgusername
FROM stampede_cached('pend:getpgusername', 'SELECT getpgusername()::text AS u', '5 minutes') AS t(u text);

-- B2. pg_client_encoding() follows client_encoding, which is not in the identity.
SET client_encoding = 'LATIN1';
SELECT e FROM stampede_cached('pend:enc', 'SELECT pg_client_encoding()::text AS e', '5 minutes') AS t(e text);
RESET client_encoding;
SELECT e = pg_client_encoding() AS right_client_encoding
FROM stampede_cached('pend:enc', 'SELECT pg_client_encoding()::text AS e', '5 minutes') AS t(e text);

-- B3. Row-level security by role membership, and BYPASSRLS: a role's rows
-- must follow its memberships and attributes now.
CREATE TABLE pend_docs (tenant text, body text);
INSERT INTO pend_docs VALUES ('a', 'a1'), ('b', 'b1');
ALTER TABLE pend_docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY p_tenant ON pend_docs USING (tenant = current_setting('app.tenant', true));
CREATE POLICY p_admin ON pend_docs TO regress_stampede_padm USING (true);
GRANT SELECT ON pend_docs TO regress_stampede_pm;
GRANT regress_stampede_padm TO regress_stampede_pm;
SET app.tenant = 'a';
SET ROLE regress_stampede_pm;
SELECT count(*) AS admin_rows FROM stampede_cached('pend:rls', 'SELECT body FROM pend_docs', '5 minutes') AS t(body text);
RESET ROLE;
REVOKE regress_stampede_padm FROM regress_stampede_pm;
SET ROLE regress_stampede_pm;
SELECT (SELECT count(*) FROM stampede_cached('pend:rls', 'SELECT body FROM pend_docs', '5 minutes') AS t(body text))
     = (SELECT count(*) FROM pend_docs) AS right_after_revoke_membership;
RESET ROLE;
SELECT stampede_invalidate('pend:rls');
ALTER ROLE regress_stampede_pm BYPASSRLS;
SET ROLE regress_stampede_pm;
SELECT count(*) AS bypass_rows FROM stampede_cached('pend:rls', 'SELECT body FROM pend_docs', '5 minutes') AS t(body text);
RESET ROLE;
ALTER ROLE regress_stampede_pm NOBYPASSRLS;
SET ROLE regress_stampede_pm;
SELECT (SELECT count(*) FROM stampede_cached('pend:rls', 'SELECT body FROM pend_docs', '5 minutes') AS t(body text))
     = (SELECT count(*) FROM pend_docs) AS right_after_nobypassrls;
RESET ROLE;
RESET app.tenant;

-- B4. Per-role answers about rights must follow GRANT/REVOKE.
CREATE TABLE pend_hidden (id int, secret text);
INSERT INTO pend_hidden VALUES (1, 'x');
ANALYZE pend_hidden;
GRANT SELECT ON pend_hidden TO regress_stampede_pm;
SET ROLE regress_stampede_pm;
SELECT p FROM stampede_cached('pend:priv', $$SELECT has_table_privilege('pend_hidden', 'SELECT') AS p$$, '5 minutes') AS t(p bool);
SELECT count(*) AS stats_cols FROM stampede_cached('pend:stats', $$SELECT attname::text AS c FROM pg_stats WHERE tablename = 'pend_hidden'$$, '5 minutes') AS t(c text);
RESET ROLE;
REVOKE SELECT ON pend_hidden FROM regress_stampede_pm;
SET ROLE regress_stampede_pm;
SELECT p = has_table_privilege('pend_hidden', 'SELECT') AS right_priv_after_revoke
FROM stampede_cached('pend:priv', $$SELECT has_table_privilege('pend_hidden', 'SELECT') AS p$$, '5 minutes') AS t(p bool);
SELECT (SELECT count(*) FROM stampede_cached('pend:stats', $$SELECT attname::text AS c FROM pg_stats WHERE tablename = 'pend_hidden'$$, '5 minutes') AS t(c text))
     = (SELECT count(*) FROM pg_stats WHERE tablename = 'pend_hidden') AS right_stats_after_revoke;
RESET ROLE;

-- B6. A temporary table created in a session that already had a temporary
-- schema shadows the name: the session's rows are refilled.  (A table
-- created in a schema earlier in the path is not seen: see the README.)
CREATE SCHEMA pend_sh;
CREATE TEMP TABLE pend_other (x int);
SELECT name FROM stampede_cached('pend:temp-shadow', 'SELECT name FROM items WHERE id = 1', '5 minutes') AS t(name text);
CREATE TEMP TABLE items (id int, name text);
INSERT INTO items VALUES (1, 'temp row');
SELECT name = (SELECT name FROM items WHERE id = 1) AS right_new_temp_table
FROM stampede_cached('pend:temp-shadow', 'SELECT name FROM items WHERE id = 1', '5 minutes') AS t(name text);
DROP TABLE items;
\c

-- B8 (sharing, not safety). Two sessions of one tenant share its rows
-- whether or not one of them has loaded PL/pgSQL.
CREATE TABLE pend_tdocs (tenant text, body text);
INSERT INTO pend_tdocs VALUES ('a', 'a1'), ('b', 'b1');
ALTER TABLE pend_tdocs ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON pend_tdocs USING (tenant = current_setting('app.tenant'));
GRANT SELECT ON pend_tdocs TO regress_stampede_pm;
\c
SET ROLE regress_stampede_pm;
SET app.tenant = 'a';
SELECT body FROM stampede_cached('pend:share', $$SELECT body FROM pend_tdocs WHERE (SELECT nextval('runs')) > 0$$, '5 minutes') AS t(body text);
RESET ROLE;
SELECT last_value AS before_second FROM runs \gset
\c
DO $$BEGIN END$$;
SET ROLE regress_stampede_pm;
SET app.tenant = 'a';
SELECT body FROM stampede_cached('pend:share', $$SELECT body FROM pend_tdocs WHERE (SELECT nextval('runs')) > 0$$, '5 minutes') AS t(body text);
RESET ROLE;
SELECT last_value = :before_second AS right_shared_despite_plpgsql FROM runs;

-- B9. A user-defined aggregate (pg_proc says IMMUTABLE for every aggregate)
-- whose transition function reads a table with the caller's rights, or the
-- tenant, or current_user.
CREATE TABLE pend_secret (v int);
INSERT INTO pend_secret VALUES (42);
CREATE FUNCTION pend_secret_sfunc(acc int, v text) RETURNS int STABLE LANGUAGE sql
    AS 'SELECT (SELECT max(v) FROM pend_secret)';
CREATE AGGREGATE pend_secret_agg(text) (sfunc = pend_secret_sfunc, stype = int);
CREATE FUNCTION pend_tenant_sfunc(acc text, v text) RETURNS text STABLE LANGUAGE sql
    AS $$SELECT current_setting('app.tenant')$$;
CREATE AGGREGATE pend_tenant_agg(text) (sfunc = pend_tenant_sfunc, stype = text);
SELECT s FROM stampede_cached('pend:agg', 'SELECT pend_secret_agg(name) AS s FROM items', '5 minutes') AS t(s int);
SET ROLE regress_stampede_pm;
SELECT err($$SELECT * FROM stampede_cached('pend:agg', 'SELECT pend_secret_agg(name) AS s FROM items', '5 minutes') AS t(s int)$$)
     = err($$SELECT pend_secret_agg(name) AS s FROM items$$) AS right_aggregate_rights;
RESET ROLE;
SET app.tenant = 'a';
SELECT s FROM stampede_cached('pend:agg-tenant', 'SELECT pend_tenant_agg(name) AS s FROM items', '5 minutes') AS t(s text);
SET app.tenant = 'b';
SELECT s = 'b' AS right_aggregate_tenant
FROM stampede_cached('pend:agg-tenant', 'SELECT pend_tenant_agg(name) AS s FROM items', '5 minutes') AS t(s text);
RESET app.tenant;

-- B10. A default argument (the planner inserts it; the parse tree has none)
-- of an honestly IMMUTABLE function.
CREATE FUNCTION pend_secret_max() RETURNS int STABLE LANGUAGE sql AS 'SELECT max(v) FROM pend_secret';
CREATE FUNCTION pend_plus_one(x int DEFAULT pend_secret_max()) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT x + 1';
CREATE FUNCTION pend_label(t text DEFAULT current_setting('app.tenant')) RETURNS text IMMUTABLE LANGUAGE sql
    AS $$SELECT 'label of ' || t$$;
SELECT s FROM stampede_cached('pend:default', 'SELECT pend_plus_one() AS s', '5 minutes') AS t(s int);
SET ROLE regress_stampede_pm;
SELECT err($$SELECT * FROM stampede_cached('pend:default', 'SELECT pend_plus_one() AS s', '5 minutes') AS t(s int)$$)
     = err($$SELECT pend_plus_one()$$) AS right_default_rights;
RESET ROLE;
SET app.tenant = 'a';
SELECT l FROM stampede_cached('pend:default-tenant', 'SELECT pend_label() AS l', '5 minutes') AS t(l text);
SET app.tenant = 'b';
SELECT l = 'label of b' AS right_default_tenant
FROM stampede_cached('pend:default-tenant', 'SELECT pend_label() AS l', '5 minutes') AS t(l text);
RESET app.tenant;

-- B11. A domain's CHECK constraint runs at execution: a hit must raise what
-- the call would.
CREATE DOMAIN pend_only_a AS text CHECK (VALUE = current_setting('app.tenant'));
SET app.tenant = 'a';
SELECT v FROM stampede_cached('pend:domain', $$SELECT 'a'::pend_only_a::text AS v$$, '5 minutes') AS t(v text);
SET app.tenant = 'b';
SELECT err($$SELECT * FROM stampede_cached('pend:domain', 'SELECT ''a''::pend_only_a::text AS v', '5 minutes') AS t(v text)$$)
     = err($$SELECT 'a'::pend_only_a::text$$) AS right_domain_check;
RESET app.tenant;

-- Clean up.
SELECT count(*) FILTER (WHERE stampede_invalidate(k)) >= 0 AS invalidated FROM unnest(ARRAY[
    'pend:getpgusername', 'pend:enc', 'pend:rls', 'pend:priv', 'pend:stats', 'pend:dirty', 'pend:shadow',
    'pend:temp-shadow', 'pend:share', 'pend:agg', 'pend:agg-tenant', 'pend:default',
    'pend:default-tenant', 'pend:domain']) k;
DROP DOMAIN pend_only_a;
DROP AGGREGATE pend_secret_agg(text), pend_tenant_agg(text);
DROP FUNCTION pend_secret_sfunc(int, text), pend_tenant_sfunc(text, text), pend_plus_one(int), pend_secret_max(),
    pend_label(text), pend_names();
DROP TABLE pend_secret, pend_tdocs, pend_hidden, pend_docs;
DROP SCHEMA pend_sh CASCADE;
REVOKE ALL ON items FROM regress_stampede_pm;
REVOKE ALL ON SEQUENCE runs FROM regress_stampede_pm;
REVOKE ALL ON SCHEMA public FROM regress_stampede_pm;
DROP ROLE regress_stampede_pm, regress_stampede_padm;
