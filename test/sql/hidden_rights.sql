-- What a query reads without naming it, and rights it needs that its text
-- hides (a SECURITY DEFINER function's owner, a schema in a literal or a
-- COLLATE): a hit must give what running the query gives.
CREATE ROLE regress_stampede_g1;
CREATE ROLE regress_stampede_gowner;
CREATE ROLE regress_stampede_ggrp;
GRANT USAGE ON SCHEMA public TO regress_stampede_g1, regress_stampede_gowner;
GRANT USAGE, SELECT ON SEQUENCE runs TO regress_stampede_g1;
GRANT EXECUTE ON FUNCTION err(text) TO PUBLIC;
SELECT err('SELECT 1');

CREATE TABLE gap_sec (code text);
INSERT INTO gap_sec VALUES ('topsecret');

-- 4. A SECURITY DEFINER function whose owner loses SELECT on what it reads.
GRANT SELECT ON gap_sec TO regress_stampede_gowner;
CREATE FUNCTION gap_sd() RETURNS text LANGUAGE sql STABLE SECURITY DEFINER AS 'SELECT code FROM gap_sec LIMIT 1';
ALTER FUNCTION gap_sd() OWNER TO regress_stampede_gowner;
SET ROLE regress_stampede_g1;
SELECT * FROM stampede_cached('gap:sd', 'SELECT gap_sd() AS c', '5 minutes') AS t(c text);
RESET ROLE;
REVOKE SELECT ON gap_sec FROM regress_stampede_gowner;
SET ROLE regress_stampede_g1;
SELECT err($e$SELECT * FROM stampede_cached('gap:sd', 'SELECT gap_sd() AS c', '5 minutes') AS t(c text)$e$);
RESET ROLE;

-- 5. Schemas named inside a regclass literal, to_regclass() or COLLATE.
CREATE SCHEMA regress_gap_s;
CREATE SEQUENCE regress_gap_s.seq;
CREATE TABLE regress_gap_s.t (id int);
CREATE COLLATION regress_gap_s.coll FROM "C";
GRANT USAGE ON SEQUENCE regress_gap_s.seq TO regress_stampede_g1;
SELECT * FROM stampede_cached('gap:nextval', $$SELECT nextval('regress_gap_s.seq') AS n$$, '5 minutes') AS t(n bigint);
SELECT * FROM stampede_cached('gap:regclass', $$SELECT 'regress_gap_s.t'::regclass::text AS r$$, '5 minutes') AS t(r text);
SELECT * FROM stampede_cached('gap:to_regclass', $$SELECT to_regclass('regress_gap_s.t')::text AS r$$, '5 minutes') AS t(r text);
SELECT * FROM stampede_cached('gap:collate', $$SELECT 'a' COLLATE regress_gap_s.coll AS v$$, '5 minutes') AS t(v text);
SET ROLE regress_stampede_g1;
SELECT err($e$SELECT * FROM stampede_cached('gap:nextval', $q$SELECT nextval('regress_gap_s.seq') AS n$q$, '5 minutes') AS t(n bigint)$e$);
SELECT err($e$SELECT * FROM stampede_cached('gap:regclass', $q$SELECT 'regress_gap_s.t'::regclass::text AS r$q$, '5 minutes') AS t(r text)$e$);
SELECT err($e$SELECT * FROM stampede_cached('gap:to_regclass', $q$SELECT to_regclass('regress_gap_s.t')::text AS r$q$, '5 minutes') AS t(r text)$e$);
SELECT err($e$SELECT * FROM stampede_cached('gap:collate', $q$SELECT 'a' COLLATE regress_gap_s.coll AS v$q$, '5 minutes') AS t(v text)$e$);
RESET ROLE;

DROP SCHEMA regress_gap_s CASCADE;
DROP FUNCTION gap_sd();
DROP TABLE gap_sec;
REVOKE EXECUTE ON FUNCTION err(text) FROM PUBLIC;
REVOKE ALL ON SEQUENCE runs FROM regress_stampede_g1;
REVOKE ALL ON SCHEMA public FROM regress_stampede_g1, regress_stampede_gowner;
DROP ROLE regress_stampede_g1, regress_stampede_gowner, regress_stampede_ggrp;
