-- DDL on what an entry read makes it a miss: a call whose column list (or
-- row type) matches the definitions as they are now gets the rows the query
-- gives now, and one that no longer matches gets 42804 naming the key; a
-- call with no DDL in between is still a hit.
--
-- "ran" is how many times queries ran since the counter was last read.
SELECT ran() >= 0 AS counter_read;

CREATE TABLE ddl_t (id int, name text);
INSERT INTO ddl_t VALUES (1, 'one'), (2, 'two');

---------------------------------------------------------------------------
-- ADD COLUMN, DROP COLUMN, ALTER COLUMN TYPE under SELECT *.
---------------------------------------------------------------------------
SELECT * FROM stampede_cached('ddl:star', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_t ORDER BY id', '5 minutes')
    AS t(id int, name text, ran bool);
SELECT * FROM stampede_cached('ddl:star', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_t ORDER BY id', '5 minutes')
    AS t(id int, name text, ran bool);
SELECT ran() AS ran;

ALTER TABLE ddl_t ADD COLUMN extra int DEFAULT 7;
-- The list as the table is now: its rows now.
SELECT * FROM stampede_cached('ddl:star', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_t ORDER BY id', '5 minutes')
    AS t(id int, name text, extra int, ran bool);
-- The old list: 42804, naming the key.
SELECT err($e$SELECT * FROM stampede_cached('ddl:star', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_t ORDER BY id', '5 minutes')
    AS t(id int, name text, ran bool)$e$);
SELECT ran() AS ran;
-- No DDL since: a hit.
SELECT * FROM stampede_cached('ddl:star', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_t ORDER BY id', '5 minutes')
    AS t(id int, name text, extra int, ran bool);
SELECT ran() AS ran;

ALTER TABLE ddl_t DROP COLUMN name;
SELECT * FROM stampede_cached('ddl:star', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_t ORDER BY id', '5 minutes')
    AS t(id int, extra int, ran bool);
SELECT err($e$SELECT * FROM stampede_cached('ddl:star', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_t ORDER BY id', '5 minutes')
    AS t(id int, name text, extra int, ran bool)$e$);
SELECT ran() AS ran;

ALTER TABLE ddl_t ALTER COLUMN extra TYPE bigint;
UPDATE ddl_t SET extra = extra * 1000000000000;
SELECT * FROM stampede_cached('ddl:star', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_t ORDER BY id', '5 minutes')
    AS t(id int, extra bigint, ran bool);
SELECT err($e$SELECT * FROM stampede_cached('ddl:star', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_t ORDER BY id', '5 minutes')
    AS t(id int, extra int, ran bool)$e$);
SELECT ran() AS ran;
SELECT * FROM stampede_cached('ddl:star', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_t ORDER BY id', '5 minutes')
    AS t(id int, extra bigint, ran bool);
SELECT ran() AS ran;

-- A column named in the query dropped or renamed: the error running it gives.
ALTER TABLE ddl_t ADD COLUMN label text DEFAULT 'l';
SELECT * FROM stampede_cached('ddl:named', 'SELECT id, label FROM ddl_t ORDER BY id', '5 minutes') AS t(id int, label text);
ALTER TABLE ddl_t RENAME COLUMN label TO tag;
SELECT err($e$SELECT * FROM stampede_cached('ddl:named', 'SELECT id, label FROM ddl_t ORDER BY id', '5 minutes') AS t(id int, label text)$e$);
ALTER TABLE ddl_t RENAME COLUMN tag TO label;
SELECT * FROM stampede_cached('ddl:named', 'SELECT id, label FROM ddl_t ORDER BY id', '5 minutes') AS t(id int, label text);
ALTER TABLE ddl_t DROP COLUMN label;
SELECT err($e$SELECT * FROM stampede_cached('ddl:named', 'SELECT id, label FROM ddl_t ORDER BY id', '5 minutes') AS t(id int, label text)$e$);

-- The same through the row type form and the jsonb form.
CREATE TABLE ddl_r (id int, name text);
INSERT INTO ddl_r VALUES (1, 'one');
SELECT * FROM stampede_cached('ddl:typed', 'SELECT * FROM ddl_r', '5 minutes', NULL::ddl_r);
SELECT stampede_cached_jsonb('ddl:json', 'SELECT * FROM ddl_r', '5 minutes');
ALTER TABLE ddl_r ADD COLUMN total bigint DEFAULT 10;
SELECT * FROM stampede_cached('ddl:typed', 'SELECT * FROM ddl_r', '5 minutes', NULL::ddl_r);
SELECT stampede_cached_jsonb('ddl:json', 'SELECT * FROM ddl_r', '5 minutes');
ALTER TABLE ddl_r DROP COLUMN name;
SELECT * FROM stampede_cached('ddl:typed', 'SELECT * FROM ddl_r', '5 minutes', NULL::ddl_r);
SELECT stampede_cached_jsonb('ddl:json', 'SELECT * FROM ddl_r', '5 minutes');
ALTER TABLE ddl_r RENAME COLUMN total TO sum;
SELECT stampede_cached_jsonb('ddl:json', 'SELECT * FROM ddl_r', '5 minutes');
ALTER TABLE ddl_r ALTER COLUMN sum TYPE numeric;
SELECT * FROM stampede_cached('ddl:typed', 'SELECT * FROM ddl_r', '5 minutes', NULL::ddl_r);
SELECT pg_typeof(sum) FROM stampede_cached('ddl:typed', 'SELECT * FROM ddl_r', '5 minutes', NULL::ddl_r);

-- A row type the query does not read changes: the entry's rows no longer
-- fit it (42804 naming the key), or fit it again once the column added is
-- dropped (still a hit: nothing the query read changed).
CREATE TABLE ddl_shape (id int, name text, ran bool);
SELECT * FROM stampede_cached('ddl:shape', 'SELECT id, name, nextval($$runs$$) > 0 AS ran FROM items WHERE id <= 2 ORDER BY id',
    '5 minutes', NULL::ddl_shape);
SELECT ran() IS NOT NULL AS counted;
ALTER TABLE ddl_shape ADD COLUMN junk text;
SELECT err($e$SELECT * FROM stampede_cached('ddl:shape', 'SELECT id, name, nextval($$runs$$) > 0 AS ran FROM items WHERE id <= 2 ORDER BY id',
    '5 minutes', NULL::ddl_shape)$e$);
ALTER TABLE ddl_shape DROP COLUMN junk;
SELECT * FROM stampede_cached('ddl:shape', 'SELECT id, name, nextval($$runs$$) > 0 AS ran FROM items WHERE id <= 2 ORDER BY id',
    '5 minutes', NULL::ddl_shape);
SELECT s FROM stampede_cached('ddl:shape', 'SELECT id, name, nextval($$runs$$) > 0 AS ran FROM items WHERE id <= 2 ORDER BY id',
    '5 minutes', NULL::ddl_shape) s;
SELECT ran() AS ran;
ALTER TABLE ddl_shape ALTER COLUMN ran TYPE text;
SELECT err($e$SELECT * FROM stampede_cached('ddl:shape', 'SELECT id, name, nextval($$runs$$) > 0 AS ran FROM items WHERE id <= 2 ORDER BY id',
    '5 minutes', NULL::ddl_shape)$e$);

-- DDL in another backend than the one that filled and the one that reads.
CREATE TABLE ddl_other (id int);
INSERT INTO ddl_other VALUES (1);
SELECT * FROM stampede_cached('ddl:other', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_other', '5 minutes') AS t(id int, ran bool);
\c
ALTER TABLE ddl_other ADD COLUMN note text DEFAULT 'added';
\c
SELECT ran() IS NOT NULL AS counted;
SELECT * FROM stampede_cached('ddl:other', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_other', '5 minutes') AS t(id int, note text, ran bool);
SELECT ran() AS ran;
\c
SELECT * FROM stampede_cached('ddl:other', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_other', '5 minutes') AS t(id int, note text, ran bool);
SELECT ran() AS ran;

---------------------------------------------------------------------------
-- ALTER TYPE of a composite in the result.
---------------------------------------------------------------------------
CREATE TYPE ddl_pair AS (a int, b text);
CREATE TABLE ddl_pt (id int, p ddl_pair);
INSERT INTO ddl_pt VALUES (1, (7, 'seven'));
SELECT * FROM stampede_cached('ddl:pair', 'SELECT id, p FROM ddl_pt', '5 minutes') AS t(id int, p ddl_pair);
SELECT * FROM stampede_cached('ddl:pair-exp', 'SELECT (p).* FROM ddl_pt', '5 minutes', NULL::ddl_pair);
SELECT * FROM stampede_cached('ddl:pair-lit', 'SELECT 7 AS a, $$seven$$::text AS b', '5 minutes', NULL::ddl_pair);
ALTER TYPE ddl_pair ADD ATTRIBUTE c int;
SELECT id, p FROM ddl_pt;
SELECT * FROM stampede_cached('ddl:pair', 'SELECT id, p FROM ddl_pt', '5 minutes') AS t(id int, p ddl_pair);
SELECT (p).c IS NULL AS c_is_null FROM stampede_cached('ddl:pair', 'SELECT id, p FROM ddl_pt', '5 minutes') AS t(id int, p ddl_pair);
SELECT (p).* FROM ddl_pt;
SELECT * FROM stampede_cached('ddl:pair-exp', 'SELECT (p).* FROM ddl_pt', '5 minutes', NULL::ddl_pair);
SELECT err($e$SELECT * FROM stampede_cached('ddl:pair-lit', 'SELECT 7 AS a, $$seven$$::text AS b', '5 minutes', NULL::ddl_pair)$e$);
ALTER TYPE ddl_pair DROP ATTRIBUTE b;
SELECT id, p FROM ddl_pt;
SELECT * FROM stampede_cached('ddl:pair', 'SELECT id, p FROM ddl_pt', '5 minutes') AS t(id int, p ddl_pair);
SELECT * FROM stampede_cached('ddl:pair-exp', 'SELECT (p).* FROM ddl_pt', '5 minutes', NULL::ddl_pair);

---------------------------------------------------------------------------
-- CREATE OR REPLACE VIEW.
---------------------------------------------------------------------------
CREATE VIEW ddl_v AS SELECT id, 'v1'::text AS version FROM items WHERE id <= 2;
SELECT * FROM stampede_cached('ddl:view', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_v ORDER BY id', '5 minutes')
    AS t(id int, version text, ran bool);
SELECT ran() IS NOT NULL AS counted;
SELECT * FROM stampede_cached('ddl:view', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_v ORDER BY id', '5 minutes')
    AS t(id int, version text, ran bool);
SELECT ran() AS ran;
-- Same columns, new definition: the new rows.
CREATE OR REPLACE VIEW ddl_v AS SELECT id, 'v2'::text AS version FROM items WHERE id <= 3;
SELECT id, version FROM stampede_cached('ddl:view', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_v ORDER BY id', '5 minutes')
    AS t(id int, version text, ran bool);
-- A column added at the end.
CREATE OR REPLACE VIEW ddl_v AS SELECT id, 'v3'::text AS version, id * 10 AS tens FROM items WHERE id <= 1;
SELECT id, version, tens FROM stampede_cached('ddl:view', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_v ORDER BY id', '5 minutes')
    AS t(id int, version text, tens int, ran bool);
SELECT err($e$SELECT * FROM stampede_cached('ddl:view', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_v ORDER BY id', '5 minutes')
    AS t(id int, version text, ran bool)$e$);
SELECT ran() IS NOT NULL AS counted;
SELECT id, version, tens FROM stampede_cached('ddl:view', 'SELECT *, nextval($$runs$$) > 0 AS ran FROM ddl_v ORDER BY id', '5 minutes')
    AS t(id int, version text, tens int, ran bool);
SELECT ran() AS ran;
-- A view over a view: replacing the inner one.
CREATE VIEW ddl_vv AS SELECT id, version FROM ddl_v;
SELECT * FROM stampede_cached('ddl:vv', 'SELECT * FROM ddl_vv ORDER BY id', '5 minutes') AS t(id int, version text);
CREATE OR REPLACE VIEW ddl_v AS SELECT id, 'v4'::text AS version, id * 10 AS tens FROM items WHERE id <= 1;
SELECT * FROM stampede_cached('ddl:vv', 'SELECT * FROM ddl_vv ORDER BY id', '5 minutes') AS t(id int, version text);

---------------------------------------------------------------------------
-- CREATE OR REPLACE FUNCTION.
---------------------------------------------------------------------------
CREATE FUNCTION ddl_f(int) RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT 'f1:' || $1$$;
CREATE FUNCTION ddl_rows() RETURNS TABLE (n int, tag text) LANGUAGE sql IMMUTABLE AS $$VALUES (1, 'r1')$$;
SELECT * FROM stampede_cached('ddl:func', 'SELECT ddl_f(1) AS v, nextval($$runs$$) > 0 AS ran', '5 minutes') AS t(v text, ran bool);
SELECT * FROM stampede_cached('ddl:srf', 'SELECT * FROM ddl_rows()', '5 minutes') AS t(n int, tag text);
SELECT * FROM stampede_cached('ddl:view-func', 'SELECT ddl_f(id) AS v FROM ddl_v', '5 minutes') AS t(v text);
SELECT ran() IS NOT NULL AS counted;
SELECT * FROM stampede_cached('ddl:func', 'SELECT ddl_f(1) AS v, nextval($$runs$$) > 0 AS ran', '5 minutes') AS t(v text, ran bool);
SELECT ran() AS ran;
CREATE OR REPLACE FUNCTION ddl_f(int) RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT 'f2:' || $1$$;
CREATE OR REPLACE FUNCTION ddl_rows() RETURNS TABLE (n int, tag text) LANGUAGE sql IMMUTABLE AS $$VALUES (2, 'r2'), (3, 'r3')$$;
SELECT v FROM stampede_cached('ddl:func', 'SELECT ddl_f(1) AS v, nextval($$runs$$) > 0 AS ran', '5 minutes') AS t(v text, ran bool);
SELECT * FROM stampede_cached('ddl:srf', 'SELECT * FROM ddl_rows()', '5 minutes') AS t(n int, tag text);
SELECT * FROM stampede_cached('ddl:view-func', 'SELECT ddl_f(id) AS v FROM ddl_v', '5 minutes') AS t(v text);
SELECT ran() AS ran;

---------------------------------------------------------------------------
-- DROP and re-create a table (a new relation under the same name).
---------------------------------------------------------------------------
CREATE TABLE ddl_re (id int, name text);
INSERT INTO ddl_re VALUES (1, 'old');
SELECT * FROM stampede_cached('ddl:re', 'SELECT id, name FROM ddl_re', '5 minutes') AS t(id int, name text);
SELECT * FROM stampede_cached('ddl:re-star', 'SELECT * FROM ddl_re', '5 minutes') AS t(id int, name text);
DROP TABLE ddl_re;
SELECT err($e$SELECT * FROM stampede_cached('ddl:re', 'SELECT id, name FROM ddl_re', '5 minutes') AS t(id int, name text)$e$);
CREATE TABLE ddl_re (id int, name text);
INSERT INTO ddl_re VALUES (2, 'new');
SELECT * FROM stampede_cached('ddl:re', 'SELECT id, name FROM ddl_re', '5 minutes') AS t(id int, name text);
DROP TABLE ddl_re;
CREATE TABLE ddl_re (name text, id int, more bool);
INSERT INTO ddl_re VALUES ('newer', 3, true);
SELECT * FROM stampede_cached('ddl:re', 'SELECT id, name FROM ddl_re', '5 minutes') AS t(id int, name text);
SELECT * FROM stampede_cached('ddl:re-star', 'SELECT * FROM ddl_re', '5 minutes') AS t(name text, id int, more bool);
SELECT err($e$SELECT * FROM stampede_cached('ddl:re-star', 'SELECT * FROM ddl_re', '5 minutes') AS t(id int, name text)$e$);
-- Dropped with an entry that read it through a view: the view goes too.
CREATE VIEW ddl_re_v AS SELECT name FROM ddl_re;
SELECT * FROM stampede_cached('ddl:re-view', 'SELECT name FROM ddl_re_v', '5 minutes') AS t(name text);
DROP TABLE ddl_re CASCADE;
SELECT err($e$SELECT * FROM stampede_cached('ddl:re-view', 'SELECT name FROM ddl_re_v', '5 minutes') AS t(name text)$e$);

---------------------------------------------------------------------------
-- Unrelated DDL keeps hits hits.
---------------------------------------------------------------------------
SELECT * FROM stampede_cached('ddl:still', 'SELECT id, nextval($$runs$$) > 0 AS ran FROM items WHERE id = 1', '5 minutes') AS t(id int, ran bool);
SELECT ran() IS NOT NULL AS counted;
CREATE TABLE ddl_unrelated (x int);
ALTER TABLE ddl_unrelated ADD COLUMN y int;
CREATE FUNCTION ddl_unrelated_f() RETURNS int LANGUAGE sql AS 'SELECT 1';
SELECT * FROM stampede_cached('ddl:still', 'SELECT id, nextval($$runs$$) > 0 AS ran FROM items WHERE id = 1', '5 minutes') AS t(id int, ran bool);
SELECT ran() AS ran;

-- Clean up.
DROP FUNCTION ddl_unrelated_f(), ddl_f(int), ddl_rows();
DROP VIEW ddl_vv, ddl_v;
DROP TABLE ddl_unrelated, ddl_t, ddl_r, ddl_shape, ddl_other, ddl_pt;
DROP TYPE ddl_pair;
