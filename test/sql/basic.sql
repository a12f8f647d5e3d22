-- A miss runs the query once; hits return the stored rows without running it.
SELECT setval('runs', 1, false);
SELECT * FROM stampede_cached('basic:top',
    $$SELECT id, name, total, nextval('runs') AS run FROM items WHERE id <= 3 ORDER BY id$$,
    '5 minutes') AS t(id int, name text, total bigint, run bigint);
SELECT * FROM stampede_cached('basic:top',
    $$SELECT id, name, total, nextval('runs') AS run FROM items WHERE id <= 3 ORDER BY id$$,
    '5 minutes') AS t(id int, name text, total bigint, run bigint);
SELECT last_value AS runs FROM runs;

-- The key is what identifies an entry: another key runs its query.
SELECT count(*) FROM stampede_cached('basic:other',
    $$SELECT nextval('runs') AS run$$, '5 minutes') AS t(run bigint);
SELECT last_value AS runs FROM runs;

-- An empty result is cached too.
SELECT count(*) FROM stampede_cached('basic:empty',
    $$SELECT id, nextval('runs') AS run FROM items WHERE false$$, '5 minutes') AS t(id int, run bigint);
SELECT count(*) FROM stampede_cached('basic:empty',
    $$SELECT id, nextval('runs') AS run FROM items WHERE false$$, '5 minutes') AS t(id int, run bigint);
SELECT last_value AS runs FROM runs;

-- VALUES, TABLE and WITH ... SELECT are queries too; a trailing semicolon
-- and comment are fine.
SELECT * FROM stampede_cached('basic:values', $$VALUES (1, 'a'), (2, NULL); -- two rows$$,
    '5 minutes') AS t(n int, s text);
SELECT count(*) FROM stampede_cached('basic:table', 'TABLE items', '5 minutes', NULL::items);
SELECT * FROM stampede_cached('basic:with',
    $$WITH x AS (SELECT sum(total) AS s FROM items) SELECT s FROM x$$,
    '5 minutes') AS t(s numeric);

-- In a view: each read of the view is a call.
CREATE VIEW top_items AS
    SELECT * FROM stampede_cached('basic:view',
        $$SELECT id, name, nextval('runs') AS run FROM items ORDER BY total DESC LIMIT 2$$,
        '5 minutes') AS t(id int, name text, run bigint);
SELECT * FROM top_items;
SELECT * FROM top_items;

-- The column definition list must match the query's columns, on a miss...
SELECT err($$SELECT * FROM stampede_cached('basic:mismatch', 'SELECT 1 AS a, 2 AS b', '5 minutes') AS t(a int)$$);
SELECT err($$SELECT * FROM stampede_cached('basic:mismatch', 'SELECT 1 AS a', '5 minutes') AS t(a text)$$);
-- ... nothing was stored, and a right list then works ...
SELECT * FROM stampede_cached('basic:mismatch', 'SELECT 1 AS a', '5 minutes') AS t(a int);
-- ... and on a hit alike.
SELECT err($$SELECT * FROM stampede_cached('basic:mismatch', 'SELECT 1 AS a', '5 minutes') AS t(a bigint)$$);
SELECT err($$SELECT * FROM stampede_cached('basic:mismatch', 'SELECT 1 AS a', '5 minutes') AS t(a int, b int)$$);
-- A typmod the list leaves open is fine; one it gives must match.
SELECT * FROM stampede_cached('basic:typmod', 'SELECT 1.5::numeric(4,2) AS a', '5 minutes') AS t(a numeric);
SELECT err($$SELECT * FROM stampede_cached('basic:typmod', 'SELECT 1.5::numeric(4,2) AS a', '5 minutes') AS t(a numeric(5,1))$$);

-- Invalidation removes the entry: true once, then false; the next call runs
-- the query again.
SELECT stampede_invalidate('basic:top'), stampede_invalidate('basic:top');
SELECT stampede_invalidate('basic:never-stored');
SELECT run FROM stampede_cached('basic:top',
    $$SELECT id, name, total, nextval('runs') AS run FROM items WHERE id <= 3 ORDER BY id$$,
    '5 minutes') AS t(id int, name text, total bigint, run bigint) LIMIT 1;

-- Entries expire after their ttl.  A ttl shorter than stampede.lock_timeout
-- draws a warning.
SELECT count(*) FROM stampede_cached('basic:short', 'SELECT 1', '1 second') AS t(x int);
SET stampede.lock_timeout = '100ms';
SELECT run FROM stampede_cached('basic:expiring', $$SELECT nextval('runs') AS run$$, '200 milliseconds') AS t(run bigint);
SELECT run FROM stampede_cached('basic:expiring', $$SELECT nextval('runs') AS run$$, '200 milliseconds') AS t(run bigint);
SELECT pg_sleep(0.3);	-- let the ttl pass: nothing else to wait for here
SELECT run FROM stampede_cached('basic:expiring', $$SELECT nextval('runs') AS run$$, '200 milliseconds') AS t(run bigint);
RESET stampede.lock_timeout;

-- A query whose text calls stampede_cached for its own key is refused.
SELECT err($$SELECT * FROM stampede_cached('basic:self',
    'SELECT * FROM stampede_cached(''basic:self'', ''SELECT 1'', ''5 minutes'') AS t(x int)',
    '5 minutes') AS t(x int)$$);
-- Nested calls for other keys are fine.
SELECT * FROM stampede_cached('basic:outer',
    $$SELECT x + 1 AS y FROM stampede_cached('basic:inner', 'SELECT 41 AS x', '5 minutes') AS t(x int)$$,
    '5 minutes') AS t(y int);

-- Rows computed by a transaction that has written are not stored: they may
-- show its uncommitted changes.  Its caller gets them all the same.
BEGIN;
INSERT INTO items VALUES (6, 'uncommitted', 60);
SELECT count(*) FROM stampede_cached('basic:dirty', 'SELECT id FROM items', '5 minutes') AS t(id int);
ROLLBACK;
SELECT count(*) FROM stampede_cached('basic:dirty', 'SELECT id FROM items', '5 minutes') AS t(id int);
