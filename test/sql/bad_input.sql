-- Bad input gets a clear error with its SQLSTATE, and nothing is stored.
SELECT stampede_stats_reset();

-- NULLs
SELECT err($$SELECT * FROM stampede_cached(NULL, 'SELECT 1', '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', NULL, '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'SELECT 1', NULL) AS t(x int)$$);
SELECT err($$SELECT stampede_cached_jsonb(NULL, 'SELECT 1', '5 minutes')$$);
SELECT err($$SELECT stampede_invalidate(NULL)$$);

-- keys: empty, too long; 1024 bytes is the limit
SELECT err($$SELECT * FROM stampede_cached('', 'SELECT 1', '5 minutes') AS t(x int)$$);
SELECT err(format($$SELECT * FROM stampede_cached(%L, 'SELECT 1', '5 minutes') AS t(x int)$$, repeat('k', 1025)));
SELECT err(format($$SELECT * FROM stampede_cached(%L, 'SELECT 1', '5 minutes') AS t(x int)$$, repeat('é', 513)));
SELECT err(format($$SELECT * FROM stampede_cached(%L, 'SELECT 1', '5 minutes') AS t(x int)$$, repeat('k', 1024)));
SELECT err($$SELECT stampede_invalidate('')$$);

-- ttl: zero and negative
SELECT err($$SELECT * FROM stampede_cached('bad', 'SELECT 1', '0 seconds') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'SELECT 1', '-5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'SELECT 1', '1 day -25 hours') AS t(x int)$$);

-- queries that are not one read-only statement returning rows
SELECT err($$SELECT * FROM stampede_cached('bad', '', '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', '  ; ', '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', '-- nothing', '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'SELECT 1; SELECT 2', '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'SELEC 1', '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'INSERT INTO items VALUES (99) RETURNING id', '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'UPDATE items SET total = 0 RETURNING id', '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'DELETE FROM items RETURNING id', '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'DROP TABLE items', '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'CREATE TABLE t2 (x int)', '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'EXPLAIN SELECT 1', '5 minutes') AS t(x text)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'SELECT 1 AS x INTO t3', '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'SELECT id FROM items FOR UPDATE', '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'SELECT * FROM (SELECT id FROM items FOR SHARE) s', '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'WITH d AS (DELETE FROM items RETURNING id) SELECT id FROM d', '5 minutes') AS t(x int)$$);
SELECT err($$SELECT * FROM stampede_cached('bad', 'SELECT ROW(1, 2) AS r', '5 minutes') AS t(r record)$$);
SELECT err($$SELECT stampede_cached_jsonb('bad', 'DELETE FROM items RETURNING id', '5 minutes')$$);
-- the rows are all still there, and only the 1024-byte key was run, and
-- stored: asked again, it is a hit (in the local store or in Valkey)
SELECT count(*) FROM items;
SELECT err(format($$SELECT * FROM stampede_cached(%L, 'SELECT 1', '5 minutes') AS t(x int)$$, repeat('k', 1024)));
SELECT hits, executions FROM stampede_stats;

-- a result larger than stampede.max_entry_size is returned, not stored
SET stampede.max_entry_size = '1kB';
SELECT setval('runs', 1, false);
SELECT count(*), max(run) FROM stampede_cached('bad:large',
    $$SELECT g, repeat('x', 100) AS pad, nextval('runs') AS run FROM generate_series(1, 50) g$$,
    '5 minutes') AS t(g int, pad text, run bigint);
SELECT count(*), max(run) FROM stampede_cached('bad:large',
    $$SELECT g, repeat('x', 100) AS pad, nextval('runs') AS run FROM generate_series(1, 50) g$$,
    '5 minutes') AS t(g int, pad text, run bigint);
SELECT not_stored FROM stampede_stats;
RESET stampede.max_entry_size;

-- only superusers change settings that affect other sessions
CREATE ROLE regress_stampede_plain;
SET ROLE regress_stampede_plain;
SELECT err($$SET stampede.max_entry_size = '1GB'$$);
SELECT err($$SET stampede.lock_timeout = '1h'$$);
SELECT err($$SET stampede.max_wait = '1s'$$);
SELECT err($$SET stampede.no_such_setting = 1$$);
SELECT err($$SELECT stampede_stats_reset()$$);
RESET ROLE;
DROP ROLE regress_stampede_plain;
