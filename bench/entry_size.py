#!/usr/bin/python3
"""Memory per entry: what storing one result costs the store, against the
size of the same rows in COPY BINARY form.

The cost of an entry is the growth of stampede_stats.store_bytes_used when
that one entry is stored under a fresh key: it includes the store's chunk
rounding and per-entry slot, i.e. what the entry really takes from
stampede.local_cache_size.  Uses PGHOST/PGPORT/PGDATABASE.
"""
import argparse
import io
import sys
import time

import psycopg2

MAX_RATIO = 1.3
# An entry also holds its key, its row descriptor and what its query read,
# and takes a hash slot and at least one 256-byte chunk: about 320 bytes
# whatever its rows.  Results smaller than this many rows are dominated by
# that fixed cost, so they are reported, not judged.
MIN_ROWS_JUDGED = 100

# name, query, column definition list.  The rows come from generate_series,
# not a table, so that neither side sees compressed values.
SHAPES = [
    ("1 row x (int)",
     "SELECT 1::int AS id",
     "id int"),
    ("10000 rows x (int)",
     "SELECT g AS id FROM generate_series(1, 10000) g",
     "id int"),
    ("100 rows x (int, text, bigint)",
     "SELECT g AS id, 'product ' || g AS name, (g::bigint * 7919) % 1000003 AS total "
     "FROM generate_series(1, 100) g",
     "id int, name text, total bigint"),
    ("10000 rows x (int, text, bigint)",
     "SELECT g AS id, 'product ' || g AS name, (g::bigint * 7919) % 1000003 AS total "
     "FROM generate_series(1, 10000) g",
     "id int, name text, total bigint"),
    ("1000 rows x (int, numeric, timestamptz, text[], jsonb)",
     "SELECT g AS id, (g * 1.37)::numeric(12, 2) AS price, "
     "timestamptz '2024-01-01 00:00+00' + g * interval '1 minute' AS at, "
     "ARRAY['tag' || g % 10, 'tag' || g % 7] AS tags, "
     "jsonb_build_object('id', g, 'ok', g % 2 = 0, 'name', 'item ' || g) AS doc "
     "FROM generate_series(1, 1000) g",
     "id int, price numeric, at timestamptz, tags text[], doc jsonb"),
    ("100 rows x (int, 2 kB text)",
     "SELECT g AS id, (SELECT string_agg(md5(g || ':' || i), '') "
     "FROM generate_series(1, 64) i) AS body FROM generate_series(1, 100) g",
     "id int, body text"),
]


def store_usage(cur):
    cur.execute("SELECT store_bytes_used, entries, not_stored, evictions FROM stampede_stats")
    return cur.fetchone()


def copy_binary_size(cur, query):
    buf = io.BytesIO()
    cur.copy_expert(f"COPY ({query}) TO STDOUT (FORMAT binary)", buf)
    return len(buf.getvalue())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.parse_args()
    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION IF NOT EXISTS stampede")
    run = int(time.time())

    print(f"{'shape':<56} {'stored B':>10} {'COPY BINARY B':>14} {'ratio':>7}  verdict")
    over = []
    broken = []
    for i, (name, query, coldefs) in enumerate(SHAPES):
        key = f"size:{run}:{i}"
        before = store_usage(cur)
        cur.execute(f"SELECT count(*) FROM stampede_cached(%s, %s, '1 hour') AS t({coldefs})",
                    (key, query))
        rows = cur.fetchone()[0]
        after = store_usage(cur)
        stored = after[0] - before[0]
        if after[1] - before[1] != 1 or after[2:] != before[2:]:
            broken.append(f"{name}: entries {before[1]} -> {after[1]}, "
                          f"not_stored/evictions {before[2:]} -> {after[2:]}")
        copy = copy_binary_size(cur, query)
        ratio = stored / copy
        if rows < MIN_ROWS_JUDGED:
            verdict = "INFO, fixed cost"
        elif ratio > MAX_RATIO:
            over.append(name)
            verdict = "FAIL"
        else:
            verdict = "PASS"
        print(f"{name:<56} {stored:>10} {copy:>14} {ratio:>7.2f}  {verdict} ({rows} rows)")

    print()
    for b in broken:
        print(f"FAIL: not stored as one new entry: {b}")
    if over:
        print(f"FAIL: {len(over)} of {len(SHAPES)} shapes over {MAX_RATIO} x their COPY BINARY size: "
              + "; ".join(over))
    elif not broken:
        print(f"PASS: every shape of {MIN_ROWS_JUDGED} rows or more within {MAX_RATIO} x its COPY BINARY size")
    sys.exit(1 if over or broken else 0)


if __name__ == "__main__":
    main()
