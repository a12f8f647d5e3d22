-- The typed form takes its row type from the fourth argument.
SELECT * FROM stampede_cached('typed:items', 'SELECT * FROM items ORDER BY id', '5 minutes', NULL::items);
SELECT * FROM stampede_cached('typed:items', 'SELECT * FROM items ORDER BY id', '5 minutes', NULL::items)
    WHERE id = 2;

-- A row type with a dropped column still gets its rows, on a miss and a hit.
CREATE TABLE widened (id int, gone text, name text);
ALTER TABLE widened DROP COLUMN gone;
SELECT * FROM stampede_cached('typed:widened', 'SELECT id, name FROM items WHERE id < 3 ORDER BY id',
    '5 minutes', NULL::widened);
SELECT * FROM stampede_cached('typed:widened', 'SELECT id, name FROM items WHERE id < 3 ORDER BY id',
    '5 minutes', NULL::widened);

-- A composite type works as well as a table's; a scalar does not.
CREATE TYPE pair AS (a int, b text);
SELECT * FROM stampede_cached('typed:pair', $$SELECT 1, 'one'$$, '5 minutes', NULL::pair);
SELECT err($$SELECT * FROM stampede_cached('typed:scalar', 'SELECT 1', '5 minutes', NULL::int)$$);
SELECT err($$SELECT * FROM stampede_cached('typed:items', 'SELECT * FROM items', '5 minutes', NULL::pair)$$);

-- The jsonb form: an array of row objects, [] for no rows.
SELECT setval('runs', 1, false);
SELECT stampede_cached_jsonb('json:top',
    $$SELECT id, name, nextval('runs') AS run FROM items WHERE id <= 2 ORDER BY id$$, '5 minutes');
SELECT stampede_cached_jsonb('json:top',
    $$SELECT id, name, nextval('runs') AS run FROM items WHERE id <= 2 ORDER BY id$$, '5 minutes');
SELECT last_value AS runs FROM runs;
SELECT stampede_cached_jsonb('json:none', 'SELECT * FROM items WHERE false', '5 minutes');
SELECT stampede_cached_jsonb('json:nulls', $$SELECT NULL::int AS a, 'x' AS b$$, '5 minutes');
-- A statement with a trailing comment can still be wrapped.
SELECT stampede_cached_jsonb('json:comment', 'SELECT 1 AS one -- the end', '5 minutes');
-- Invalidation removes both forms of a key.
SELECT count(*) FROM stampede_cached('json:top', 'SELECT 1', '5 minutes') AS t(x int);
SELECT stampede_invalidate('json:top');
SELECT stampede_invalidate('json:top');
SELECT stampede_cached_jsonb('json:top',
    $$SELECT id, name, nextval('runs') AS run FROM items WHERE id <= 2 ORDER BY id$$, '5 minutes');
