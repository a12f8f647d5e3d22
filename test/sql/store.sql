-- The store is bounded by stampede.local_cache_size (8MB in the test
-- cluster): it drops the least recently used entries to make room, never
-- fails a call because it is full, and never grows past its size.
SELECT stampede_stats_reset();
SELECT setval('runs', 1, false);
CREATE FUNCTION fill(key text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT max(run) FROM stampede_cached(key,
        $q$SELECT g, repeat(md5(g::text), 16) AS pad, nextval('runs') AS run FROM generate_series(1, 1000) g$q$,
        '5 minutes') AS t(g int, pad text, run bigint)
$$;
-- each entry takes about 560kB
SELECT fill('store:' || g) FROM generate_series(1, 5) g;
-- touch the first one: it is now more recent than 2..5
SELECT fill('store:1') AS still_first_run;
-- ten more entries do not fit beside the first five
SELECT count(fill('store:' || g)) FROM generate_series(6, 15) g;
SELECT evictions > 0 AS evicted, store_bytes_used <= store_bytes_total AS within_size,
       entries < 15 AS fewer_entries FROM stampede_stats;
-- the recently used ones are still there (their run numbers are old) ...
SELECT fill('store:1') AS run_of_1, fill('store:15') AS run_of_15;
-- ... the least recently used one is gone and runs again
SELECT fill('store:2') > 15 AS store2_ran_again;

-- An entry larger than the store is returned, not stored.
SET stampede.max_entry_size = '64MB';
SELECT count(*) FROM stampede_cached('store:huge',
    $$SELECT g, repeat('y', 1000) AS pad FROM generate_series(1, 10000) g$$, '5 minutes') AS t(g int, pad text);
RESET stampede.max_entry_size;
SELECT not_stored FROM stampede_stats;
SELECT store_bytes_used <= store_bytes_total AS within_size FROM stampede_stats;

-- Many small entries: more than the store has slots for (8MB / 2kB = 4096).
-- Every call is still answered, and the store keeps within its slots.
SELECT stampede_stats_reset();
DO $$
BEGIN
    FOR i IN 1..5000 LOOP
        PERFORM * FROM stampede_cached('store:small:' || i, 'SELECT 1 AS x', '5 minutes') AS t(x int);
    END LOOP;
END
$$;
SELECT executions, evictions > 0 AS evicted, entries <= store_max_entries AS within_slots
FROM stampede_stats;
-- the most recent ones are hits
SELECT stampede_stats_reset();
SELECT count(*) FROM stampede_cached('store:small:5000', 'SELECT 1 AS x', '5 minutes') AS t(x int);
SELECT hits FROM stampede_stats;
