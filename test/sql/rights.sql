-- Rights on a hit, as they are now: a hit hands a role exactly what running
-- the query would, with that role's rights at the time of the call, and
-- stays a hit wherever that is safe.
--
-- runs counts real executions: "ran" is how many times the query ran since
-- the counter was last read (0 for a hit).
CREATE ROLE regress_stampede_r2;
CREATE ROLE regress_stampede_r3;
CREATE ROLE regress_stampede_owner2;
CREATE ROLE regress_stampede_grp2;
GRANT USAGE ON SCHEMA public TO regress_stampede_r2, regress_stampede_r3, regress_stampede_owner2;
GRANT USAGE, SELECT ON SEQUENCE runs TO regress_stampede_r2, regress_stampede_r3, regress_stampede_owner2;
GRANT EXECUTE ON FUNCTION err(text) TO PUBLIC;

-- PL/pgSQL (err) is loaded before the first call, so that nothing this
-- session loads later changes its settings between a fill and a hit.
SELECT err('SELECT 1');

SELECT ran() >= 0 AS counter_read;

---------------------------------------------------------------------------
-- Schema USAGE of a schema the query names explicitly.
---------------------------------------------------------------------------
CREATE SCHEMA regress_rights_s;
CREATE TABLE regress_rights_s.t (id int, v text);
INSERT INTO regress_rights_s.t VALUES (1, 'one'), (2, 'two');
GRANT USAGE ON SCHEMA regress_rights_s TO regress_stampede_r2;
GRANT SELECT ON regress_rights_s.t TO regress_stampede_r2;

SET ROLE regress_stampede_r2;
SELECT * FROM stampede_cached('rights:schema', 'SELECT id, v, nextval($$runs$$) > 0 AS ran FROM regress_rights_s.t ORDER BY id',
    '5 minutes') AS t(id int, v text, ran bool);
RESET ROLE;
SELECT ran() AS ran;
-- The same call again is a hit.
SET ROLE regress_stampede_r2;
SELECT * FROM stampede_cached('rights:schema', 'SELECT id, v, nextval($$runs$$) > 0 AS ran FROM regress_rights_s.t ORDER BY id',
    '5 minutes') AS t(id int, v text, ran bool);
RESET ROLE;
SELECT ran() AS ran;

REVOKE USAGE ON SCHEMA regress_rights_s FROM regress_stampede_r2;
-- Filled again by a role that may use the schema...
SELECT count(*) FROM stampede_cached('rights:schema', 'SELECT id, v, nextval($$runs$$) > 0 AS ran FROM regress_rights_s.t ORDER BY id',
    '5 minutes') AS t(id int, v text, ran bool);
SELECT ran() IS NOT NULL AS counted;
-- ... it is not handed to one that may not: the error running it gives.
SET ROLE regress_stampede_r2;
SELECT err($e$SELECT v FROM regress_rights_s.t$e$);
SELECT err($e$SELECT * FROM stampede_cached('rights:schema', 'SELECT id, v, nextval($$runs$$) > 0 AS ran FROM regress_rights_s.t ORDER BY id',
    '5 minutes') AS t(id int, v text, ran bool)$e$);
SELECT err($e$SELECT stampede_cached_jsonb('rights:schema', 'SELECT id, v FROM regress_rights_s.t ORDER BY id', '5 minutes')$e$);
RESET ROLE;
SELECT ran() AS ran;
-- A quoted or catalog-qualified name is the same schema.
SELECT count(*) FROM stampede_cached('rights:schema-q', 'SELECT id FROM "regress_rights_s"."t"', '5 minutes') AS t(id int);
SELECT count(*) FROM stampede_cached('rights:schema-c', 'SELECT id FROM contrib_regression.regress_rights_s.t', '5 minutes') AS t(id int);
SET ROLE regress_stampede_r2;
SELECT err($e$SELECT * FROM stampede_cached('rights:schema-q', 'SELECT id FROM "regress_rights_s"."t"', '5 minutes') AS t(id int)$e$);
SELECT err($e$SELECT * FROM stampede_cached('rights:schema-c', 'SELECT id FROM contrib_regression.regress_rights_s.t', '5 minutes') AS t(id int)$e$);
RESET ROLE;
-- A function and a type named by their schema need USAGE of it too.
CREATE FUNCTION regress_rights_s.twice(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2';
CREATE TYPE regress_rights_s.color AS ENUM ('red', 'green');
GRANT EXECUTE ON FUNCTION regress_rights_s.twice(int) TO regress_stampede_r2;
SELECT * FROM stampede_cached('rights:schema-f', 'SELECT regress_rights_s.twice(21) AS v', '5 minutes') AS t(v int);
SELECT * FROM stampede_cached('rights:schema-ty', $$SELECT 'red'::regress_rights_s.color::text AS v$$, '5 minutes') AS t(v text);
SET ROLE regress_stampede_r2;
SELECT err($e$SELECT * FROM stampede_cached('rights:schema-f', 'SELECT regress_rights_s.twice(21) AS v', '5 minutes') AS t(v int)$e$);
SELECT err($e$SELECT * FROM stampede_cached('rights:schema-ty', $q$SELECT 'red'::regress_rights_s.color::text AS v$q$, '5 minutes') AS t(v text)$e$);
RESET ROLE;

-- USAGE granted back: the role gets the rows again, then hits.
GRANT USAGE ON SCHEMA regress_rights_s TO regress_stampede_r2;
SET ROLE regress_stampede_r2;
SELECT id, v FROM stampede_cached('rights:schema', 'SELECT id, v, nextval($$runs$$) > 0 AS ran FROM regress_rights_s.t ORDER BY id',
    '5 minutes') AS t(id int, v text, ran bool);
RESET ROLE;
-- (A schema's change makes every entry a miss: the two rows ran again, or
-- not at all; never once per call.)
SELECT ran() AS ran_after_grant \gset
SELECT :ran_after_grant IN (0, 2) AS ran_at_most_once;
SET ROLE regress_stampede_r2;
SELECT id, v FROM stampede_cached('rights:schema', 'SELECT id, v, nextval($$runs$$) > 0 AS ran FROM regress_rights_s.t ORDER BY id',
    '5 minutes') AS t(id int, v text, ran bool);
SELECT v FROM stampede_cached('rights:schema-f', 'SELECT regress_rights_s.twice(21) AS v', '5 minutes') AS t(v int);
RESET ROLE;
SELECT ran() AS ran;

---------------------------------------------------------------------------
-- A view is checked as the caller; what it reads, as the view's owner.
---------------------------------------------------------------------------
CREATE TABLE rights_base (id int, secret text);
INSERT INTO rights_base VALUES (1, 'alpha'), (2, 'bravo');
GRANT SELECT ON rights_base TO regress_stampede_owner2;
CREATE VIEW rights_v AS SELECT id, secret FROM rights_base;
ALTER VIEW rights_v OWNER TO regress_stampede_owner2;
GRANT SELECT ON rights_v TO regress_stampede_r2, regress_stampede_r3;

-- r3 may not read rights_base itself, only through the view: a hit, shared.
SET ROLE regress_stampede_r2;
SELECT * FROM stampede_cached('rights:view', 'SELECT id, secret, nextval($$runs$$) > 0 AS ran FROM rights_v ORDER BY id',
    '5 minutes') AS t(id int, secret text, ran bool);
RESET ROLE;
SELECT ran() AS ran;
SET ROLE regress_stampede_r3;
SELECT err('SELECT * FROM rights_base');
SELECT * FROM stampede_cached('rights:view', 'SELECT id, secret, nextval($$runs$$) > 0 AS ran FROM rights_v ORDER BY id',
    '5 minutes') AS t(id int, secret text, ran bool);
RESET ROLE;
SELECT ran() AS ran;

-- The view's owner loses SELECT on the table: the error running the view
-- gives, for the view's readers and for a superuser alike.
REVOKE SELECT ON rights_base FROM regress_stampede_owner2;
SELECT err('SELECT * FROM rights_v');
SET ROLE regress_stampede_r3;
SELECT err($e$SELECT * FROM stampede_cached('rights:view', 'SELECT id, secret, nextval($$runs$$) > 0 AS ran FROM rights_v ORDER BY id',
    '5 minutes') AS t(id int, secret text, ran bool)$e$);
RESET ROLE;
SELECT err($e$SELECT * FROM stampede_cached('rights:view', 'SELECT id, secret, nextval($$runs$$) > 0 AS ran FROM rights_v ORDER BY id',
    '5 minutes') AS t(id int, secret text, ran bool)$e$);

-- Granted back: it works again, then hits.
GRANT SELECT ON rights_base TO regress_stampede_owner2;
SET ROLE regress_stampede_r3;
SELECT id, secret FROM stampede_cached('rights:view', 'SELECT id, secret, nextval($$runs$$) > 0 AS ran FROM rights_v ORDER BY id',
    '5 minutes') AS t(id int, secret text, ran bool);
RESET ROLE;
SELECT ran() > 0 AS ran_again;
SET ROLE regress_stampede_r2;
SELECT id, secret FROM stampede_cached('rights:view', 'SELECT id, secret, nextval($$runs$$) > 0 AS ran FROM rights_v ORDER BY id',
    '5 minutes') AS t(id int, secret text, ran bool);
RESET ROLE;
SELECT ran() AS ran;

-- The owner's right through a group: losing the membership changes no
-- table definition, and the hit still checks the owner's rights as they are.
REVOKE SELECT ON rights_base FROM regress_stampede_owner2;
GRANT SELECT ON rights_base TO regress_stampede_grp2;
GRANT regress_stampede_grp2 TO regress_stampede_owner2;
SET ROLE regress_stampede_r3;
SELECT id, secret FROM stampede_cached('rights:view', 'SELECT id, secret, nextval($$runs$$) > 0 AS ran FROM rights_v ORDER BY id',
    '5 minutes') AS t(id int, secret text, ran bool);
SELECT id, secret FROM stampede_cached('rights:view', 'SELECT id, secret, nextval($$runs$$) > 0 AS ran FROM rights_v ORDER BY id',
    '5 minutes') AS t(id int, secret text, ran bool);
RESET ROLE;
SELECT ran() > 0 AS filled;
REVOKE regress_stampede_grp2 FROM regress_stampede_owner2;
SET ROLE regress_stampede_r3;
SELECT err('SELECT * FROM rights_v');
SELECT err($e$SELECT * FROM stampede_cached('rights:view', 'SELECT id, secret, nextval($$runs$$) > 0 AS ran FROM rights_v ORDER BY id',
    '5 minutes') AS t(id int, secret text, ran bool)$e$);
RESET ROLE;
GRANT regress_stampede_grp2 TO regress_stampede_owner2;
SET ROLE regress_stampede_r3;
SELECT id, secret FROM stampede_cached('rights:view', 'SELECT id, secret, nextval($$runs$$) > 0 AS ran FROM rights_v ORDER BY id',
    '5 minutes') AS t(id int, secret text, ran bool);
RESET ROLE;
SELECT ran() IS NOT NULL AS counted;

-- The same for the caller's own right through a group.
CREATE TABLE rights_grp (id int);
INSERT INTO rights_grp VALUES (1);
GRANT SELECT ON rights_grp TO regress_stampede_grp2;
GRANT regress_stampede_grp2 TO regress_stampede_r2;
SELECT * FROM stampede_cached('rights:grp', 'SELECT id, nextval($$runs$$) > 0 AS ran FROM rights_grp', '5 minutes') AS t(id int, ran bool);
SET ROLE regress_stampede_r2;
SELECT * FROM stampede_cached('rights:grp', 'SELECT id, nextval($$runs$$) > 0 AS ran FROM rights_grp', '5 minutes') AS t(id int, ran bool);
RESET ROLE;
SELECT ran() AS ran;
REVOKE regress_stampede_grp2 FROM regress_stampede_r2;
SET ROLE regress_stampede_r2;
SELECT err($e$SELECT * FROM stampede_cached('rights:grp', 'SELECT id, nextval($$runs$$) > 0 AS ran FROM rights_grp', '5 minutes') AS t(id int, ran bool)$e$);
RESET ROLE;
SELECT ran() AS ran;

---------------------------------------------------------------------------
-- A security_invoker view: what it reads is checked as the caller.
---------------------------------------------------------------------------
CREATE TABLE rights_inv_base (id int, body text);
INSERT INTO rights_inv_base VALUES (1, 'x'), (2, 'y');
GRANT SELECT ON rights_inv_base TO regress_stampede_owner2, regress_stampede_r2;
CREATE VIEW rights_inv WITH (security_invoker = true) AS SELECT id, body FROM rights_inv_base;
ALTER VIEW rights_inv OWNER TO regress_stampede_owner2;
GRANT SELECT ON rights_inv TO regress_stampede_r2, regress_stampede_r3;
SET ROLE regress_stampede_r2;
SELECT * FROM stampede_cached('rights:inv', 'SELECT id, body, nextval($$runs$$) > 0 AS ran FROM rights_inv ORDER BY id',
    '5 minutes') AS t(id int, body text, ran bool);
RESET ROLE;
SELECT ran() AS ran;
-- r3 may read the view but not the table: running it fails, so does a hit.
SET ROLE regress_stampede_r3;
SELECT err('SELECT * FROM rights_inv');
SELECT err($e$SELECT * FROM stampede_cached('rights:inv', 'SELECT id, body, nextval($$runs$$) > 0 AS ran FROM rights_inv ORDER BY id',
    '5 minutes') AS t(id int, body text, ran bool)$e$);
-- r2 may: a hit.
SET ROLE regress_stampede_r2;
SELECT * FROM stampede_cached('rights:inv', 'SELECT id, body, nextval($$runs$$) > 0 AS ran FROM rights_inv ORDER BY id',
    '5 minutes') AS t(id int, body text, ran bool);
RESET ROLE;
SELECT ran() AS ran;
-- No longer security_invoker: checked as the owner, so r3 gets the rows.
ALTER VIEW rights_inv SET (security_invoker = false);
SET ROLE regress_stampede_r3;
SELECT id, body FROM stampede_cached('rights:inv', 'SELECT id, body, nextval($$runs$$) > 0 AS ran FROM rights_inv ORDER BY id',
    '5 minutes') AS t(id int, body text, ran bool);
RESET ROLE;
-- And back: r3 is refused again.
ALTER VIEW rights_inv SET (security_invoker = true);
SET ROLE regress_stampede_r3;
SELECT err($e$SELECT * FROM stampede_cached('rights:inv', 'SELECT id, body, nextval($$runs$$) > 0 AS ran FROM rights_inv ORDER BY id',
    '5 minutes') AS t(id int, body text, ran bool)$e$);
RESET ROLE;

---------------------------------------------------------------------------
-- Column privileges.
---------------------------------------------------------------------------
CREATE TABLE rights_cols (id int, pub text, priv text);
INSERT INTO rights_cols VALUES (1, 'p1', 's1'), (2, 'p2', 's2');
GRANT SELECT (id, pub) ON rights_cols TO regress_stampede_r2;
SELECT count(*) FROM stampede_cached('rights:cols-pub', 'SELECT id, pub, nextval($$runs$$) > 0 AS ran FROM rights_cols ORDER BY id',
    '5 minutes') AS t(id int, pub text, ran bool);
SELECT count(*) FROM stampede_cached('rights:cols-priv', 'SELECT id FROM rights_cols WHERE priv IS NOT NULL ORDER BY id',
    '5 minutes') AS t(id int);
SELECT count(*) FROM stampede_cached('rights:cols-count', 'SELECT count(*) AS n FROM rights_cols',
    '5 minutes') AS t(n bigint);
SELECT count(*) FROM stampede_cached('rights:cols-row', 'SELECT r FROM rights_cols r ORDER BY id',
    '5 minutes') AS t(r rights_cols);
SELECT ran() AS ran;
SET ROLE regress_stampede_r2;
-- The columns it may read: a hit.
SELECT * FROM stampede_cached('rights:cols-pub', 'SELECT id, pub, nextval($$runs$$) > 0 AS ran FROM rights_cols ORDER BY id',
    '5 minutes') AS t(id int, pub text, ran bool);
-- A column it may not read, even one only in WHERE: refused.
SELECT err($e$SELECT * FROM stampede_cached('rights:cols-priv', 'SELECT id FROM rights_cols WHERE priv IS NOT NULL ORDER BY id',
    '5 minutes') AS t(id int)$e$);
-- count(*) needs SELECT on some column, which it has.
SELECT * FROM stampede_cached('rights:cols-count', 'SELECT count(*) AS n FROM rights_cols', '5 minutes') AS t(n bigint);
-- The whole row needs every column.
SELECT err($e$SELECT * FROM stampede_cached('rights:cols-row', 'SELECT r FROM rights_cols r ORDER BY id',
    '5 minutes') AS t(r rights_cols)$e$);
SET ROLE regress_stampede_r3;
SELECT err($e$SELECT * FROM stampede_cached('rights:cols-count', 'SELECT count(*) AS n FROM rights_cols', '5 minutes') AS t(n bigint)$e$);
RESET ROLE;
SELECT ran() AS ran;
-- A column privilege revoked after the fill, then granted back.
REVOKE SELECT (pub) ON rights_cols FROM regress_stampede_r2;
SET ROLE regress_stampede_r2;
SELECT err($e$SELECT * FROM stampede_cached('rights:cols-pub', 'SELECT id, pub, nextval($$runs$$) > 0 AS ran FROM rights_cols ORDER BY id',
    '5 minutes') AS t(id int, pub text, ran bool)$e$);
RESET ROLE;
GRANT SELECT (pub) ON rights_cols TO regress_stampede_r2;
SET ROLE regress_stampede_r2;
SELECT id, pub FROM stampede_cached('rights:cols-pub', 'SELECT id, pub, nextval($$runs$$) > 0 AS ran FROM rights_cols ORDER BY id',
    '5 minutes') AS t(id int, pub text, ran bool);
RESET ROLE;
SELECT ran() AS ran;
SET ROLE regress_stampede_r2;
SELECT id, pub FROM stampede_cached('rights:cols-pub', 'SELECT id, pub, nextval($$runs$$) > 0 AS ran FROM rights_cols ORDER BY id',
    '5 minutes') AS t(id int, pub text, ran bool);
RESET ROLE;
SELECT ran() AS ran;

---------------------------------------------------------------------------
-- Row-level security turned on after a shared fill, and policies changed.
---------------------------------------------------------------------------
CREATE TABLE rights_rls (owner name, body text);
INSERT INTO rights_rls VALUES ('regress_stampede_r2', 'r2 note'), ('regress_stampede_r3', 'r3 note'),
                              ('nobody', 'public note');
GRANT SELECT ON rights_rls TO regress_stampede_r2, regress_stampede_r3;
-- No row security yet: shared.
SET ROLE regress_stampede_r2;
SELECT body FROM stampede_cached('rights:rls', 'SELECT body, nextval($$runs$$) > 0 AS ran FROM rights_rls ORDER BY body',
    '5 minutes') AS t(body text, ran bool);
SET ROLE regress_stampede_r3;
SELECT body FROM stampede_cached('rights:rls', 'SELECT body, nextval($$runs$$) > 0 AS ran FROM rights_rls ORDER BY body',
    '5 minutes') AS t(body text, ran bool);
RESET ROLE;
SELECT ran() AS ran;
-- Row security now: each role gets the rows its policies let it see.
ALTER TABLE rights_rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY rights_own ON rights_rls USING (owner = current_user);
SET ROLE regress_stampede_r2;
SELECT body FROM stampede_cached('rights:rls', 'SELECT body, nextval($$runs$$) > 0 AS ran FROM rights_rls ORDER BY body',
    '5 minutes') AS t(body text, ran bool);
SET ROLE regress_stampede_r3;
SELECT body FROM stampede_cached('rights:rls', 'SELECT body, nextval($$runs$$) > 0 AS ran FROM rights_rls ORDER BY body',
    '5 minutes') AS t(body text, ran bool);
SELECT stampede_cached_jsonb('rights:rls', 'SELECT body FROM rights_rls ORDER BY body', '5 minutes');
RESET ROLE;
SELECT ran() AS ran;
-- Each role's own rows are kept for it: hits.
SET ROLE regress_stampede_r2;
SELECT body FROM stampede_cached('rights:rls', 'SELECT body, nextval($$runs$$) > 0 AS ran FROM rights_rls ORDER BY body',
    '5 minutes') AS t(body text, ran bool);
SET ROLE regress_stampede_r3;
SELECT body FROM stampede_cached('rights:rls', 'SELECT body, nextval($$runs$$) > 0 AS ran FROM rights_rls ORDER BY body',
    '5 minutes') AS t(body text, ran bool);
RESET ROLE;
SELECT ran() AS ran;
-- A policy added: its rows too.
CREATE POLICY rights_public ON rights_rls USING (owner = 'nobody');
SET ROLE regress_stampede_r2;
SELECT body FROM stampede_cached('rights:rls', 'SELECT body, nextval($$runs$$) > 0 AS ran FROM rights_rls ORDER BY body',
    '5 minutes') AS t(body text, ran bool);
RESET ROLE;
-- A policy changed: its new rows.
ALTER POLICY rights_public ON rights_rls USING (owner = 'regress_stampede_r3');
SET ROLE regress_stampede_r2;
SELECT body FROM stampede_cached('rights:rls', 'SELECT body, nextval($$runs$$) > 0 AS ran FROM rights_rls ORDER BY body',
    '5 minutes') AS t(body text, ran bool);
RESET ROLE;
-- A policy dropped.
DROP POLICY rights_public ON rights_rls;
SET ROLE regress_stampede_r2;
SELECT body FROM stampede_cached('rights:rls', 'SELECT body, nextval($$runs$$) > 0 AS ran FROM rights_rls ORDER BY body',
    '5 minutes') AS t(body text, ran bool);
RESET ROLE;
-- Row security off again: everything, for each.
ALTER TABLE rights_rls DISABLE ROW LEVEL SECURITY;
SET ROLE regress_stampede_r3;
SELECT body FROM stampede_cached('rights:rls', 'SELECT body, nextval($$runs$$) > 0 AS ran FROM rights_rls ORDER BY body',
    '5 minutes') AS t(body text, ran bool);
RESET ROLE;

-- Row security turned on under a view after a shared fill: the view's
-- readers get the rows the policies give them, as running the view does.
CREATE VIEW rights_rls_v AS SELECT body FROM rights_rls;
GRANT SELECT ON rights_rls_v TO regress_stampede_r2;
SET ROLE regress_stampede_r2;
SELECT body FROM stampede_cached('rights:rls-view', 'SELECT body FROM rights_rls_v ORDER BY body', '5 minutes') AS t(body text);
RESET ROLE;
ALTER TABLE rights_rls ENABLE ROW LEVEL SECURITY;
ALTER VIEW rights_rls_v OWNER TO regress_stampede_owner2;
GRANT SELECT ON rights_rls TO regress_stampede_owner2;
SET ROLE regress_stampede_r2;
SELECT body FROM rights_rls_v ORDER BY body;
SELECT body FROM stampede_cached('rights:rls-view', 'SELECT body FROM rights_rls_v ORDER BY body', '5 minutes') AS t(body text);
RESET ROLE;

---------------------------------------------------------------------------
-- What a role may see changes with no DDL on what the query reads.
---------------------------------------------------------------------------
-- A user's function marked IMMUTABLE that reads a table: nothing checks
-- what it reads, so its rows are not handed to a role that may not run it.
CREATE TABLE rights_fsec (code text);
INSERT INTO rights_fsec VALUES ('topsecret');
CREATE FUNCTION rights_imm() RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT code FROM rights_fsec LIMIT 1';
SELECT * FROM stampede_cached('rights:imm', 'SELECT rights_imm() AS c', '5 minutes') AS t(c text);
SET ROLE regress_stampede_r2;
SELECT err('SELECT rights_imm()');
SELECT err($e$SELECT * FROM stampede_cached('rights:imm', 'SELECT rights_imm() AS c', '5 minutes') AS t(c text)$e$);
RESET ROLE;

-- BYPASSRLS taken away after the role's own fill: its rows as its
-- policies give them now.
CREATE TABLE rights_byp (owner name, body text);
INSERT INTO rights_byp VALUES ('regress_stampede_r2', 'mine'), ('someone', 'theirs');
ALTER TABLE rights_byp ENABLE ROW LEVEL SECURITY;
CREATE POLICY rights_byp_own ON rights_byp USING (owner = current_user);
GRANT SELECT ON rights_byp TO regress_stampede_r2;
ALTER ROLE regress_stampede_r2 BYPASSRLS;
SET ROLE regress_stampede_r2;
SELECT * FROM stampede_cached('rights:bypass', 'SELECT body FROM rights_byp ORDER BY body', '5 minutes') AS t(body text);
RESET ROLE;
ALTER ROLE regress_stampede_r2 NOBYPASSRLS;
SET ROLE regress_stampede_r2;
SELECT body FROM rights_byp ORDER BY body;
SELECT * FROM stampede_cached('rights:bypass', 'SELECT body FROM rights_byp ORDER BY body', '5 minutes') AS t(body text);
RESET ROLE;

-- A policy that depends on role membership; the membership revoked.
CREATE TABLE rights_docs (grp name, body text);
INSERT INTO rights_docs VALUES ('regress_stampede_grp2', 'group doc'), (current_user, 'other');
ALTER TABLE rights_docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY rights_member ON rights_docs USING (pg_has_role(current_user, grp, 'member'));
GRANT SELECT ON rights_docs TO regress_stampede_r3;
GRANT regress_stampede_grp2 TO regress_stampede_r3;
SET ROLE regress_stampede_r3;
SELECT * FROM stampede_cached('rights:member', 'SELECT body FROM rights_docs ORDER BY body', '5 minutes') AS t(body text);
RESET ROLE;
REVOKE regress_stampede_grp2 FROM regress_stampede_r3;
SET ROLE regress_stampede_r3;
SELECT body FROM rights_docs ORDER BY body;
SELECT * FROM stampede_cached('rights:member', 'SELECT body FROM rights_docs ORDER BY body', '5 minutes') AS t(body text);
RESET ROLE;

---------------------------------------------------------------------------
-- Functions and sequences.
---------------------------------------------------------------------------
SELECT ran() IS NOT NULL AS counted;
-- An immutable function in C (here: a built-in's code) is shared.
CREATE FUNCTION rights_fn(int) RETURNS int LANGUAGE internal IMMUTABLE STRICT AS 'int4abs';
SET ROLE regress_stampede_r2;
SELECT v FROM stampede_cached('rights:fn', 'SELECT rights_fn(-42) AS v, nextval($$runs$$) > 0 AS ran', '5 minutes') AS t(v int, ran bool);
SET ROLE regress_stampede_r3;
SELECT v FROM stampede_cached('rights:fn', 'SELECT rights_fn(-42) AS v, nextval($$runs$$) > 0 AS ran', '5 minutes') AS t(v int, ran bool);
RESET ROLE;
SELECT ran() AS ran;
REVOKE EXECUTE ON FUNCTION rights_fn(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rights_fn(int) TO regress_stampede_r2;
SELECT v FROM stampede_cached('rights:fn', 'SELECT rights_fn(-42) AS v, nextval($$runs$$) > 0 AS ran', '5 minutes') AS t(v int, ran bool);
SET ROLE regress_stampede_r3;
SELECT err($e$SELECT * FROM stampede_cached('rights:fn', 'SELECT rights_fn(-42) AS v, nextval($$runs$$) > 0 AS ran', '5 minutes') AS t(v int, ran bool)$e$);
SET ROLE regress_stampede_r2;
SELECT v FROM stampede_cached('rights:fn', 'SELECT rights_fn(-42) AS v, nextval($$runs$$) > 0 AS ran', '5 minutes') AS t(v int, ran bool);
RESET ROLE;
SELECT ran() AS ran;
-- nextval() needs USAGE or UPDATE of its sequence, for whoever gets a hit.
CREATE SEQUENCE rights_seq;
GRANT UPDATE ON SEQUENCE rights_seq TO regress_stampede_r2;
SELECT * FROM stampede_cached('rights:seq', $$SELECT nextval('rights_seq') AS n$$, '5 minutes') AS t(n bigint);
SET ROLE regress_stampede_r2;
SELECT * FROM stampede_cached('rights:seq', $$SELECT nextval('rights_seq') AS n$$, '5 minutes') AS t(n bigint);
SET ROLE regress_stampede_r3;
SELECT err($e$SELECT nextval('rights_seq')$e$);
SELECT err($e$SELECT * FROM stampede_cached('rights:seq', $q$SELECT nextval('rights_seq') AS n$q$, '5 minutes') AS t(n bigint)$e$);
RESET ROLE;
SELECT last_value AS rights_seq_ran_once FROM rights_seq;

-- Clean up.
RESET ROLE;
DROP VIEW rights_v, rights_inv, rights_rls_v;
DROP TABLE rights_base, rights_grp, rights_inv_base, rights_cols, rights_rls, rights_fsec, rights_byp, rights_docs;
DROP FUNCTION rights_fn(int), rights_imm();
DROP SEQUENCE rights_seq;
DROP SCHEMA regress_rights_s CASCADE;
REVOKE EXECUTE ON FUNCTION err(text) FROM PUBLIC;
REVOKE ALL ON SEQUENCE runs FROM regress_stampede_r2, regress_stampede_r3, regress_stampede_owner2;
REVOKE ALL ON SCHEMA public FROM regress_stampede_r2, regress_stampede_r3, regress_stampede_owner2;
DROP ROLE regress_stampede_r2, regress_stampede_r3, regress_stampede_owner2, regress_stampede_grp2;
