#!/usr/bin/python3
"""The thundering herd: many sessions ask for one cold key at the same moment.

Each trial runs, side by side on the same sessions, in rotating order:

  stampede          stampede_cached on a fresh key whose query takes --work-ms
  floor (shared)    one session holds an advisory lock for --work-ms, the
                    others block on it in share mode: the fastest PostgreSQL
                    can wake a crowd, hence the floor stampede is held to
  floor (exclusive) the same, waiters block in exclusive mode: a chain of
                    wakeups, printed for comparison
  design doc        the design document's algorithm in PL/pgSQL: try-lock,
                    the leader fills an unlogged table, the others poll it
                    with exponential backoff

A waiter's latency is its return time minus the trial's first return, both
read from the server's clock, so client scheduling does not enter.  All
sessions start together: each first waits in share mode on a gate lock that
the coordinator holds and lets go once all of them are queued on it.
"""
import argparse
import math
import os
import statistics
import sys
import threading
import time

import psycopg2

GATE_CLASS = 7001    # first key of the two-int advisory locks used as gates
FLOOR_CLASS = 7002   # first key of the locks the floor's holder takes
WAIT_LIMIT_S = 60    # longest any single step may take before we give up

SETUP_SQL = r"""
CREATE EXTENSION IF NOT EXISTS stampede;
-- nextval is not rolled back, so the sequence counts executions of the query.
CREATE SEQUENCE IF NOT EXISTS exec_seq;
CREATE UNLOGGED TABLE IF NOT EXISTS doc_cache (key text PRIMARY KEY, value jsonb);

CREATE OR REPLACE FUNCTION bench_gate(gate int) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_lock_shared(7001, gate);
    PERFORM pg_advisory_unlock_shared(7001, gate);
END $$;

-- stampede.last_call tells each caller whether it led (ran the query) or was
-- served another's rows.
CREATE OR REPLACE FUNCTION bench_stampede(gate int, k text, work_ms int,
    OUT led boolean, OUT got_rows boolean, OUT returned_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM bench_gate(gate);
    SELECT t.n INTO n
    FROM stampede_cached(k,
        format('SELECT nextval(''exec_seq'') AS n FROM pg_sleep(%s)', work_ms / 1000.0),
        '5 minutes') AS t(n bigint);
    returned_at := clock_timestamp();
    led := current_setting('stampede.last_call') = 'led';
    got_rows := n IS NOT NULL;
END $$;

-- Same shape as stampede's single flight (try to lead, else block on the
-- leader's lock), minus everything but the lock.
CREATE OR REPLACE FUNCTION bench_floor(gate int, lock int, shared boolean, work_ms int,
    OUT led boolean, OUT got_rows boolean, OUT returned_at timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bench_gate(gate);
    led := pg_try_advisory_lock(7002, lock);
    IF led THEN
        PERFORM pg_sleep(work_ms / 1000.0);
        PERFORM pg_advisory_unlock(7002, lock);
    ELSIF shared THEN
        PERFORM pg_advisory_lock_shared(7002, lock);
        PERFORM pg_advisory_unlock_shared(7002, lock);
    ELSE
        PERFORM pg_advisory_lock(7002, lock);
        PERFORM pg_advisory_unlock(7002, lock);
    END IF;
    got_rows := true;
    returned_at := clock_timestamp();
END $$;

-- The design document's algorithm.  The leader's lock is transaction-level
-- so that it is held until its row is committed and visible; the others
-- sleep 100 ms * 2^i + 0..100 ms, five times at most, then give up (NULL).
CREATE OR REPLACE FUNCTION doc_fetch(k text, work_ms int) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v jsonb;
BEGIN
    SELECT value INTO v FROM doc_cache WHERE key = k;
    IF FOUND THEN
        RETURN v;
    END IF;
    IF pg_try_advisory_xact_lock(hashtext(k)) THEN
        SELECT jsonb_agg(q) INTO v
        FROM (SELECT nextval('exec_seq') AS n, pg_backend_pid() AS pid
              FROM pg_sleep(work_ms / 1000.0)) q;
        INSERT INTO doc_cache VALUES (k, v)
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
        RETURN v;
    END IF;
    FOR i IN 0..4 LOOP
        PERFORM pg_sleep((100 * 2 ^ i + random() * 100) / 1000.0);
        SELECT value INTO v FROM doc_cache WHERE key = k;
        IF FOUND THEN
            RETURN v;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION bench_doc(gate int, k text, work_ms int,
    OUT led boolean, OUT got_rows boolean, OUT returned_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v jsonb;
BEGIN
    PERFORM bench_gate(gate);
    v := doc_fetch(k, work_ms);
    returned_at := clock_timestamp();
    led := coalesce((v -> 0 ->> 'pid')::int = pg_backend_pid(), false);
    got_rows := v IS NOT NULL;
END $$;
"""


class Scenario:
    """One way of serving the herd, and what its trials measured."""

    def __init__(self, name, sql, args, runs_query=True):
        self.name = name
        self.sql = sql        # statement each session runs; %s: gate, then args(trial)
        self.args = args      # trial key -> the statement's other parameters
        # The floor runs no query: its "executions" are the sessions that held the lock.
        self.runs_query = runs_query
        self.latencies = []   # ms after the trial's first return, every waiter
        self.executions = []  # per trial
        self.empty = 0        # callers that got nothing
        self.errors = []

    def one_execution_trials(self):
        return sum(1 for e in self.executions if e == 1)


class Herd:
    """N sessions, connected once, started together by server-side gates.

    connectors make one connection each to a server; the sessions are spread
    over them in turn, and each server gets a gate of its own (advisory locks
    are per server), all let go once every session is queued."""

    def __init__(self, n, connectors=None):
        connectors = connectors or [connect]
        self.admins = [c() for c in connectors]
        self.admin = self.admins[0]
        self.sessions = [(i % len(connectors), connectors[i % len(connectors)]())
                         for i in range(n)]
        self.next_gate = 1

    def run(self, sql, args):
        """Every session runs sql(gate, *args) at once; returns (rows, errors)."""
        gate = self.next_gate
        self.next_gate += 1
        n = len(self.sessions)
        results = [None] * n
        errors = []

        def call(i, conn):
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, (gate,) + args)
                    results[i] = cur.fetchone()
            except psycopg2.Error as e:
                errors.append(f"session {i}: {e.pgcode} {str(e).strip()}")

        for admin in self.admins:
            with admin.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s, %s)", (GATE_CLASS, gate))
        threads = [threading.Thread(target=call, args=(i, c), daemon=True)
                   for i, (_, c) in enumerate(self.sessions)]
        for t in threads:
            t.start()
        self._await_queue(gate, threads)
        for admin in self.admins:
            with admin.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", (GATE_CLASS, gate))
        deadline = time.monotonic() + WAIT_LIMIT_S
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            raise RuntimeError(f"sessions still running {WAIT_LIMIT_S} s after the gate opened")
        return [r for r in results if r is not None], errors

    def _await_queue(self, gate, threads):
        want = [sum(1 for s, _ in self.sessions if s == k) for k in range(len(self.admins))]
        deadline = time.monotonic() + WAIT_LIMIT_S
        while True:
            queued = []
            for admin in self.admins:
                with admin.cursor() as cur:
                    cur.execute("""SELECT count(*) FROM pg_locks
                                   WHERE locktype = 'advisory' AND NOT granted
                                     AND classid = %s AND objid = %s AND objsubid = 2""",
                                (GATE_CLASS, gate))
                    queued.append(cur.fetchone()[0])
            if queued == want:
                return
            # A session that failed before reaching the gate would never queue.
            if sum(t.is_alive() for t in threads) < len(self.sessions) or time.monotonic() > deadline:
                raise RuntimeError(f"only {queued} of {want} sessions reached the gates")
            time.sleep(0.01)

    def stampede_stats(self):
        with self.admin.cursor() as cur:
            cur.execute("SELECT requests, hits, lock_waits, executions FROM stampede_stats")
            return cur.fetchone()

    def executions(self):
        with self.admin.cursor() as cur:
            cur.execute("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM exec_seq")
            return cur.fetchone()[0]


def connect():
    conn = psycopg2.connect("")  # PGHOST, PGPORT, PGUSER, PGDATABASE
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = %s", (f"{WAIT_LIMIT_S}s",))
    return conn


def run_trial(herd, scenario, key, executions=None):
    """One trial of scenario on key; executions() counts the query's runs so
    far (by default the primary's sequence, which the cached query bumps)."""
    executions = executions or herd.executions
    before = executions()
    rows, errors = herd.run(scenario.sql, scenario.args(key))
    execs = executions() - before
    scenario.errors += errors
    if not rows:
        scenario.executions.append(execs)
        return
    led = sum(1 for r in rows if r[0])
    scenario.executions.append(execs if scenario.runs_query else led)
    scenario.empty += sum(1 for r in rows if not r[1])
    first = min(r[2] for r in rows)
    scenario.latencies += [(r[2] - first).total_seconds() * 1000 for r in rows if not r[0]]


def median(values):
    return statistics.median(values) if values else math.nan


def p99(values):
    """Nearest rank."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--work-ms", type=int, default=200)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--doc-long-ms", type=int, default=4000,
                    help="query time of the single design-doc trial whose waiters run out of retries")
    opts = ap.parse_args()

    setup = connect()
    with setup.cursor() as cur:
        cur.execute(SETUP_SQL)
    setup.close()
    herd = Herd(opts.sessions)
    run = f"{os.getpid()}-{int(time.time())}"  # keys no earlier run has filled
    work = opts.work_ms

    stampede = Scenario("stampede", "SELECT * FROM bench_stampede(%s, %s, %s)",
                        lambda k: (f"cold:{run}:{k}", work))
    floor_shared = Scenario("floor: advisory lock, shared wait",
                            "SELECT * FROM bench_floor(%s, %s, true, %s)",
                            lambda k: (k, work), runs_query=False)
    floor_excl = Scenario("floor: advisory lock, exclusive chain",
                          "SELECT * FROM bench_floor(%s, %s, false, %s)",
                          lambda k: (k, work), runs_query=False)
    doc = Scenario("design doc: try-lock + backoff", "SELECT * FROM bench_doc(%s, %s, %s)",
                   lambda k: (f"doc:{run}:{k}", work))
    doc_long = Scenario(f"design doc, {opts.doc_long_ms} ms query",
                        "SELECT * FROM bench_doc(%s, %s, %s)",
                        lambda k: (f"doclong:{run}:{k}", opts.doc_long_ms))
    scenarios = [stampede, floor_shared, floor_excl, doc]

    # Warm every backend's plan and function caches outside the measurements.
    for s in scenarios:
        _, errors = herd.run(s.sql, s.args(0))
        if errors:
            sys.exit(f"{s.name} failed while warming up: {errors[0]} ({len(errors)} errors)")

    print(f"cold key: {opts.sessions} sessions, {work} ms query, {opts.trials} trials")
    stats_before = herd.stampede_stats()
    for trial in range(1, opts.trials + 1):
        # Rotate the order so no scenario always runs first or last.
        for i in range(len(scenarios)):
            s = scenarios[(trial + i) % len(scenarios)]
            run_trial(herd, s, trial)
    run_trial(herd, doc_long, opts.trials + 1)
    # Only the stampede scenario calls stampede between these two readings.
    stats = [a - b for a, b in zip(herd.stampede_stats(), stats_before)]

    ok = report(opts, scenarios, floor_shared, stampede, doc_long, stats)
    sys.exit(0 if ok else 1)


def report(opts, scenarios, floor, stampede, doc_long, stats):
    fm, fp = median(floor.latencies), p99(floor.latencies)
    print()
    print(f"{'scenario':<40} {'1 execution':>12} {'median ms':>10} {'p99 ms':>8} "
          f"{'vs floor median/p99':>20} {'got nothing':>12}")
    for s in scenarios:
        if not s.latencies:
            print(f"{s.name:<40} no waiter returned")
            continue
        m, p = median(s.latencies), p99(s.latencies)
        ones = f"{s.one_execution_trials()}/{len(s.executions)}"
        print(f"{s.name:<40} {ones:>12} {m:>10.1f} {p:>8.1f} "
              f"{m / fm:>10.2f}x /{p / fp:>6.2f}x {s.empty:>12}")
    print("(1 execution: trials in which the query ran once; for the floors, in which one "
          "session held the lock)")
    callers = opts.sessions - (doc_long.executions[0] if doc_long.executions else 0)
    print(f"\n{doc_long.name}: {doc_long.empty} of {callers} waiting callers got nothing "
          f"(executions: {doc_long.executions})")
    print("stampede_stats over the stampede trials: requests %d, hits %d, lock_waits %d, "
          "executions %d" % tuple(stats))
    executions = [e for e in stampede.executions if e != 1]
    if executions:
        print(f"stampede trials with other than 1 execution: {executions}")

    for s in scenarios + [doc_long]:
        for e in s.errors[:5]:
            print(f"error in {s.name}: {e}")
        if len(s.errors) > 5:
            print(f"... {len(s.errors) - 5} more errors in {s.name}")

    sm, sp = median(stampede.latencies), p99(stampede.latencies)
    checks = [
        (f"stampede median {sm:.1f} ms <= 1.5 x floor {fm:.1f} + 2 = {1.5 * fm + 2:.1f} ms",
         sm <= 1.5 * fm + 2),
        (f"stampede p99 {sp:.1f} ms <= 1.5 x floor {fp:.1f} + 2 = {1.5 * fp + 2:.1f} ms",
         sp <= 1.5 * fp + 2),
        (f"stampede: 1 execution in {stampede.one_execution_trials()} of {opts.trials} trials",
         stampede.one_execution_trials() == opts.trials),
        (f"stampede: no errors, every caller got rows ({len(stampede.errors)} errors, "
         f"{stampede.empty} empty)", not stampede.errors and stampede.empty == 0),
    ]
    print()
    for what, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}: {what}")
    return all(passed for _, passed in checks)


if __name__ == "__main__":
    main()
