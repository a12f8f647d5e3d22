-- In FROM, with arguments that depend on no other relation, a call is a
-- custom scan that reads a hit's rows straight from the entry.
EXPLAIN (COSTS OFF)
SELECT * FROM stampede_cached('scan:a', 'SELECT 1 AS x', '5 minutes') AS t(x int);
EXPLAIN (COSTS OFF)
SELECT * FROM stampede_cached('scan:items', 'SELECT * FROM items', '5 minutes', NULL::items);

-- A whole-row reference or a lateral argument keeps the function scan.
EXPLAIN (COSTS OFF)
SELECT t FROM stampede_cached('scan:a', 'SELECT 1 AS x', '5 minutes') AS t(x int);
EXPLAIN (COSTS OFF)
SELECT * FROM items i, LATERAL stampede_cached('scan:' || i.id, 'SELECT 1 AS x', '5 minutes') AS t(x int);
SELECT i.id, t.x FROM items i, LATERAL stampede_cached('scan:lateral:' || i.id, format('SELECT %s AS x', i.id * 2),
    '5 minutes') AS t(x int) ORDER BY i.id;

-- Both return the same rows, on a miss and a hit.
SELECT * FROM stampede_cached('scan:both', $$SELECT g AS x, 'row ' || g AS label FROM generate_series(1, 3) g$$,
    '5 minutes') AS t(x int, label text);
SELECT t FROM stampede_cached('scan:both', $$SELECT g AS x, 'row ' || g AS label FROM generate_series(1, 3) g$$,
    '5 minutes') AS t(x int, label text);
SELECT * FROM stampede_cached('scan:both', $$SELECT g AS x, 'row ' || g AS label FROM generate_series(1, 3) g$$,
    '5 minutes') AS t(x int, label text);

-- Quals and projections on the scan.
SELECT x * 10 AS x10, upper(label) FROM stampede_cached('scan:both',
    $$SELECT g AS x, 'row ' || g AS label FROM generate_series(1, 3) g$$, '5 minutes') AS t(x int, label text)
WHERE x >= 2;

-- Read again in a nested loop, the scan does not call again.
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SET enable_material = off;
SELECT stampede_stats_reset();
EXPLAIN (COSTS OFF)
SELECT a, x FROM generate_series(1, 3) a, stampede_cached('scan:both',
    $$SELECT g AS x, 'row ' || g AS label FROM generate_series(1, 3) g$$, '5 minutes') AS t(x int, label text)
WHERE x = a;
SELECT a, x FROM generate_series(1, 3) a, stampede_cached('scan:both',
    $$SELECT g AS x, 'row ' || g AS label FROM generate_series(1, 3) g$$, '5 minutes') AS t(x int, label text)
WHERE x = a;
SELECT requests, hits FROM stampede_stats;
RESET enable_hashjoin;
RESET enable_mergejoin;
RESET enable_material;

-- An argument from an outer query makes a new call for each value.
SELECT k, (SELECT max(x) FROM stampede_cached('scan:outer:' || k, format('SELECT %s AS x', k), '5 minutes') AS t(x int))
FROM generate_series(1, 3) k;

-- EXECUTE on stampede_cached is checked as for a function scan.
CREATE ROLE regress_stampede_scan;
REVOKE EXECUTE ON FUNCTION stampede_cached(text, text, interval) FROM PUBLIC;
SET ROLE regress_stampede_scan;
SELECT err($$SELECT * FROM stampede_cached('scan:a', 'SELECT 1 AS x', '5 minutes') AS t(x int)$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION stampede_cached(text, text, interval) TO PUBLIC;
DROP ROLE regress_stampede_scan;

-- A domain over a row type is not filled by the scan, which would skip its
-- CHECK: the call is refused as the function scan refuses it.
CREATE TYPE scan_pair AS (a int, b int);
CREATE DOMAIN scan_ordered_pair AS scan_pair CHECK ((VALUE).a < (VALUE).b);
SELECT err($$SELECT * FROM stampede_cached('scan:domain', 'SELECT 2 AS a, 1 AS b', '5 minutes', NULL::scan_ordered_pair)$$);
DROP DOMAIN scan_ordered_pair;
DROP TYPE scan_pair;
