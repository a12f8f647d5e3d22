#!/usr/bin/python3
"""Nothing superseded: rounds of (UPDATE + stampede_invalidate in one
transaction, COMMIT, then at once a call from another session), with, in
every round, a REPEATABLE READ reader of the same key whose snapshot
predates the UPDATE, and a READ COMMITTED session calling the key as fast
as it can, so that fills race each COMMIT.

A round is stale when the call right after the COMMIT returns a value from
before it.  The target is 0 stale rounds.  The REPEATABLE READ reader must
see its own snapshot's value (also counted).  Uses PGHOST/PGPORT/PGDATABASE;
with --valkey-url, every session sets stampede.valkey_url.
"""
import argparse
import sys
import threading
import time

import psycopg2

KEY = "bench:inv"
QUERY = "SELECT v FROM inv_price WHERE id = 1"
CALL = f"SELECT v FROM stampede_cached('{KEY}', '{QUERY}', '5 minutes') AS t(v int)"


def connect(url):
    conn = psycopg2.connect("")
    conn.autocommit = True
    if url:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('stampede.valkey_url', %s, false)", (url,))
    return conn


def one(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--valkey-url", default="")
    args = parser.parse_args()

    setup = connect(args.valkey_url)
    with setup.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS inv_price")
        cur.execute("CREATE TABLE inv_price (id int PRIMARY KEY, v int)")
        cur.execute("INSERT INTO inv_price VALUES (1, 0)")
        cur.execute("SELECT stampede_invalidate(%s)", (KEY,))
    writer, caller, reader = (connect(args.valkey_url) for _ in range(3))
    racer = connect(args.valkey_url)

    stop = threading.Event()
    race_calls = [0]

    def race():
        while not stop.is_set():
            one(racer, CALL)
            race_calls[0] += 1

    thread = threading.Thread(target=race, daemon=True)
    thread.start()
    stale = rr_wrong = 0
    stats = "SELECT hits, executions, not_stored FROM stampede_stats"
    hits0, runs0, not_stored0 = one(setup, stats)
    started = time.monotonic()
    try:
        for i in range(1, args.rounds + 1):
            # The reader's snapshot is taken before the UPDATE.
            with reader.cursor() as cur:
                cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                cur.execute(CALL)
                before = cur.fetchone()[0]
            with writer.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute("UPDATE inv_price SET v = %s WHERE id = 1", (i,))
                cur.execute("SELECT stampede_invalidate(%s)", (KEY,))
                cur.execute("COMMIT")
            got = one(caller, CALL)[0]
            if got != i:
                stale += 1
            with reader.cursor() as cur:
                cur.execute(CALL)
                if cur.fetchone()[0] != before:
                    rr_wrong += 1
                cur.execute("COMMIT")
    finally:
        stop.set()
        thread.join()
    took = time.monotonic() - started
    hits1, runs1, not_stored1 = one(setup, stats)
    mode = "Valkey" if args.valkey_url else "embedded"
    # Hits show that rows were stored between the rounds: a cache that
    # stored nothing would never be stale.
    print(f"{mode}: {args.rounds} rounds in {took:.1f} s, {race_calls[0]} racing calls; "
          f"{hits1 - hits0} hits, {runs1 - runs0} executions, "
          f"{not_stored1 - not_stored0} fills not stored (older than a commit)")
    print(f"{mode}: "
          f"rounds with rows from before the commit: {stale}; "
          f"REPEATABLE READ reads not from their snapshot: {rr_wrong}")
    ok = stale == 0 and rr_wrong == 0 and hits1 > hits0
    print(f"target: 0 and 0: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
