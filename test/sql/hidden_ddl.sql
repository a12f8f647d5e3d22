-- DDL on what a query reads without naming it (a composite type of a
-- column, a row type it builds, a domain it casts to): a hit must give what
-- running the query gives.
CREATE SEQUENCE gap_runs;

-- 1. The jsonb form of rows with a composite column, after ALTER TYPE.
CREATE TYPE gap_pair AS (a int, b text);
CREATE TABLE gap_pt (id int, p gap_pair);
INSERT INTO gap_pt VALUES (1, (7, 'seven'));
SELECT stampede_cached_jsonb('gap:pairj', 'SELECT id, p FROM gap_pt', '5 minutes');
ALTER TYPE gap_pair RENAME ATTRIBUTE a TO z;
SELECT jsonb_agg(q) FROM (SELECT id, p FROM gap_pt) q;
SELECT stampede_cached_jsonb('gap:pairj', 'SELECT id, p FROM gap_pt', '5 minutes');

-- 2. A composite built in the query, its attribute's type altered.
CREATE TYPE gap_lit AS (a int, b text);
SELECT * FROM stampede_cached('gap:lit', $$SELECT (7, 'seven')::gap_lit AS p$$, '5 minutes') AS t(p gap_lit);
ALTER TYPE gap_lit ALTER ATTRIBUTE b TYPE int;
SELECT err($e$SELECT (7, 'seven')::gap_lit AS p$e$);
SELECT err($e$SELECT p::text FROM stampede_cached('gap:lit', $q$SELECT (7, 'seven')::gap_lit AS p$q$, '5 minutes') AS t(p gap_lit)$e$);

-- 3. The same with an attribute added: the cast no longer works.
CREATE TYPE gap_lit2 AS (a int, b text);
SELECT * FROM stampede_cached('gap:lit2', $$SELECT (7, 'seven')::gap_lit2 AS p$$, '5 minutes') AS t(p gap_lit2);
ALTER TYPE gap_lit2 ADD ATTRIBUTE c int;
SELECT err($e$SELECT (7, 'seven')::gap_lit2 AS p$e$);
SELECT err($e$SELECT * FROM stampede_cached('gap:lit2', $q$SELECT (7, 'seven')::gap_lit2 AS p$q$, '5 minutes') AS t(p gap_lit2)$e$);

-- 4. A domain given a constraint the stored value breaks.
CREATE DOMAIN gap_dom AS int;
SELECT * FROM stampede_cached('gap:dom', 'SELECT 5::gap_dom AS v', '5 minutes') AS t(v gap_dom);
ALTER DOMAIN gap_dom ADD CHECK (VALUE > 10);
SELECT err('SELECT 5::gap_dom');
SELECT err($e$SELECT * FROM stampede_cached('gap:dom', 'SELECT 5::gap_dom AS v', '5 minutes') AS t(v gap_dom)$e$);

-- 5. A function called by the function the query calls, replaced.
CREATE FUNCTION gap_inner() RETURNS int LANGUAGE sql STABLE AS 'SELECT 1';
CREATE FUNCTION gap_outer() RETURNS int LANGUAGE sql STABLE AS 'SELECT gap_inner() + 0 FROM (SELECT 1) s';
SELECT * FROM stampede_cached('gap:inner', 'SELECT gap_outer() AS v', '5 minutes') AS t(v int);
CREATE OR REPLACE FUNCTION gap_inner() RETURNS int LANGUAGE sql STABLE AS 'SELECT 2';
SELECT gap_outer();
SELECT * FROM stampede_cached('gap:inner', 'SELECT gap_outer() AS v', '5 minutes') AS t(v int);

DROP FUNCTION gap_outer(), gap_inner();
DROP DOMAIN gap_dom;
DROP TABLE gap_pt;
DROP TYPE gap_pair, gap_lit, gap_lit2;
DROP SEQUENCE gap_runs;
