-- Every column type comes back exactly as stored, NULLs included.
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE TYPE point3 AS (x float8, y float8, z float8);

CREATE TABLE all_types (
    id int,
    i2 smallint, i4 int, i8 bigint,
    num numeric, num_t numeric(10, 3), f4 real, f8 double precision,
    b boolean, t text, vc varchar(20), ch char(5), bin bytea,
    d date, ts timestamp, tstz timestamptz, iv interval, tm time,
    ia int[], ta text[][], js jsonb, j json, u uuid, ip inet,
    comp point3, m mood, dom positive, r int4range, tsr tstzrange,
    pt point, bits bit varying(8), money_ money
);
INSERT INTO all_types VALUES
(1, -32768, -2147483648, -9223372036854775808,
 '-1.5e-20', 1234567.125, 'NaN', 'Infinity',
 true, 'plain ascii', 'short', 'ab', '\x00ff00',
 '4713-01-01 BC', '294276-12-31 23:59:59', '-infinity', '-178000000 years', '24:00:00',
 '{1,NULL,3}', '{{a,b},{c,NULL}}', '{"k": [1, 2.5, null, "x"], "nested": {"t": true}}', '{"dup": 1, "dup": 2}',
 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2001:db8::1/64',
 ROW(1.5, 'NaN', '-Infinity'), 'happy', 7, '[1,10)', '[2020-01-01,2021-01-01)',
 '(1,2)', B'1011', 12.34),
(2, 32767, 2147483647, 9223372036854775807,
 'NaN', -0.001, '-Infinity', '-1.7976931348623157e308',
 false, E'UTF-8: héllo wörld ✓ 日本語 🐘 \t tab \\ backslash ''quote''', '', '     ', '\x',
 'infinity', '-infinity', 'infinity', '1 mon 2 days 03:04:05.678901', '00:00:00',
 '{}', '{}', '[]', 'null', '00000000-0000-0000-0000-000000000000', '0.0.0.0',
 ROW(NULL, NULL, NULL), 'sad', 1, 'empty', '(,)',
 '(-0,0)', B'', -92233720368547758.08),
(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);

-- Compare every column's text form and every value with IS NOT DISTINCT
-- FROM, on the miss and on the hit.
CREATE FUNCTION differences(key text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(*)
    FROM stampede_cached(key, 'SELECT * FROM all_types ORDER BY id', '5 minutes', NULL::all_types) c
    FULL JOIN all_types a USING (id)
    WHERE c::text IS DISTINCT FROM a::text
       OR row(c.i8, c.num, c.f8, c.bin, c.tstz, c.ia, c.js, c.comp, c.m, c.r)
          IS DISTINCT FROM row(a.i8, a.num, a.f8, a.bin, a.tstz, a.ia, a.js, a.comp, a.m, a.r)
$$;
SELECT differences('types:all') AS on_miss, differences('types:all') AS on_hit;
SELECT id, f4, f8, num, t, comp, r FROM stampede_cached('types:all', 'SELECT * FROM all_types ORDER BY id',
    '5 minutes', NULL::all_types) ORDER BY id;

-- A row of nothing but NULLs.
SELECT * FROM stampede_cached('types:nulls', 'SELECT NULL::int AS a, NULL::text AS b, NULL::int[] AS c',
    '5 minutes') AS t(a int, b text, c int[]);
SELECT * FROM stampede_cached('types:nulls', 'SELECT NULL::int AS a, NULL::text AS b, NULL::int[] AS c',
    '5 minutes') AS t(a int, b text, c int[]);

-- Values stored out of line (TOAST) are copied into the entry: changing and
-- vacuuming the table afterwards does not change what a hit returns.
CREATE TABLE big (id int, payload text);
ALTER TABLE big ALTER COLUMN payload SET STORAGE EXTERNAL;
INSERT INTO big SELECT 1, string_agg(md5(g::text), '') FROM generate_series(1, 4000) g;
SELECT md5(payload) AS expected FROM big \gset
SELECT md5(payload) = :'expected' AS same_on_miss
    FROM stampede_cached('types:big', 'SELECT id, payload FROM big', '5 minutes') AS t(id int, payload text);
UPDATE big SET payload = 'changed';
-- (The TOAST table alone: DDL or VACUUM on a table an entry read makes it a miss.)
SELECT reltoastrelid::regclass AS big_toast FROM pg_class WHERE relname = 'big' \gset
VACUUM :big_toast;
SELECT md5(payload) = :'expected' AS same_on_hit, length(payload)
    FROM stampede_cached('types:big', 'SELECT id, payload FROM big', '5 minutes') AS t(id int, payload text);

-- Rows written before a column was added read that column's default.
CREATE TABLE grown (id int);
INSERT INTO grown VALUES (1), (2);
ALTER TABLE grown ADD COLUMN extra text DEFAULT 'default';
SELECT * FROM stampede_cached('types:grown', 'SELECT * FROM grown ORDER BY id', '5 minutes', NULL::grown);
SELECT * FROM stampede_cached('types:grown', 'SELECT * FROM grown ORDER BY id', '5 minutes', NULL::grown);

-- Many rows and many columns.
SELECT count(*), sum(g), sum(length(s))
    FROM stampede_cached('types:many', $$SELECT g, repeat('x', g % 50) AS s FROM generate_series(1, 20000) g$$,
        '5 minutes') AS t(g int, s text);
SELECT count(*), sum(g), sum(length(s))
    FROM stampede_cached('types:many', $$SELECT g, repeat('x', g % 50) AS s FROM generate_series(1, 20000) g$$,
        '5 minutes') AS t(g int, s text);
