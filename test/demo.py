#!/usr/bin/python3
"""The stampede demo: many sessions ask for a few cities' weather at once.

Phase 1 runs the expensive query in every session, as an application without
protection would; phase 2 asks through stampede_cached, so that one session
per key runs it and the others wait for its rows; phase 3 asks again on the
now-warm keys.  Each city's query counts its real executions with nextval on
a sequence of its own: a sequence bump is not rolled back and is allowed in
the read-only query stampede runs.

Run it through test/demo.sh, which starts a server with stampede preloaded
and sets PGHOST/PGPORT/PGUSER for libpq.

With --valkey (test/demo.sh --valkey), demo.sh also starts a redis-server
(Valkey speaks its protocol) at STAMPEDE_VALKEY_PORT and a streaming replica
of the server at STAMPEDE_REPLICA_HOST/STAMPEDE_REPLICA_PORT.  Every session
points stampede.valkey_url at that Valkey, half of them on the primary and
half on the replica.  A replica cannot bump a sequence: there, phase 1
counts the sessions that ran the query, and phases 2 and 3 count executions
with stampede_stats on both servers.
"""
import argparse
import os
import sys
import threading
import time

import psycopg2

CITIES = ["London", "Paris", "Tokyo", "New York", "Sydney"]
TEMPERATURES = [11, 14, 19, 9, 23]
TTL = "5 minutes"
# pg_locks.objsubid of stampede's single-flight advisory locks
# (STAMPEDE_LOCK_CLASS in src/flight.c); the SQL advisory lock functions use 1 and 2.
STAMPEDE_LOCK_CLASS = 0x5354
POLL_MS = 2
COLUMNS = "t(city text, temperature int, run bigint, pid int)"
METRICS = ["requests", "hits", "misses", "executions", "lock_waits", "avg_wait_ms",
           "api_call_reduction_pct", "lock_wait_rate_pct", "timeout_rate_pct"]


def quote(s):
    return "'" + s.replace("'", "''") + "'"


class Key:
    """One city: its cache key, its expensive query, and its execution counter."""

    def __init__(self, i, work_ms):
        self.i = i
        self.city = CITIES[i] if i < len(CITIES) else f"City {i + 1}"
        self.temperature = TEMPERATURES[i] if i < len(TEMPERATURES) else 10 + i % 15
        self.seq = f"demo_exec_{i + 1}"
        self.cache_key = f"weather:{self.city}"
        # pid says which backend ran the query: the leader, once rows are cached.
        self.query = (f"SELECT city, temperature, nextval({quote(self.seq)}) AS run, "
                      f"pg_backend_pid() AS pid "
                      f"FROM demo_weather, pg_sleep({work_ms} / 1000.0) "
                      f"WHERE city = {quote(self.city)}")
        # The same without nextval, which a replica cannot run (--valkey).
        self.query_ro = (f"SELECT city, temperature, pg_backend_pid() AS pid "
                         f"FROM demo_weather, pg_sleep({work_ms} / 1000.0) "
                         f"WHERE city = {quote(self.city)}")


class Session:
    """One client connection asking for one key; connected before any phase starts."""

    def __init__(self, n, key, statement_timeout_ms, server=None):
        self.n = n
        self.key = key
        # server: None without --valkey, else a Server (primary or replica).
        self.server = server
        # options replaces PGOPTIONS in libpq, so keep the user's settings.
        options = f"{os.environ.get('PGOPTIONS', '')} -c statement_timeout={statement_timeout_ms}"
        self.conn = connect(server, options=options.strip())
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            self.pid = cur.fetchone()[0]
        self.start = self.end = 0.0
        self.rows = None
        self.error = None
        self.role = None

    def ask(self, sql, params, gate):
        try:
            with self.conn.cursor() as cur:
                gate.wait()
                self.start = time.perf_counter()
                cur.execute(sql, params)
                self.rows = cur.fetchall()
                self.end = time.perf_counter()
        except Exception as e:  # reported by the main thread
            self.error = e


class Server:
    """--valkey: one of the two PostgreSQL servers, and the Valkey to use."""

    def __init__(self, name, host, port, valkey_url):
        self.name, self.host, self.port, self.valkey_url = name, host, port, valkey_url


def connect(server=None, **kwargs):
    """An autocommit connection: to PGHOST/PGPORT, or to server pointed at its Valkey."""
    if server is None:
        conn = psycopg2.connect(dbname="postgres", **kwargs)
    else:
        conn = psycopg2.connect(dbname="postgres", host=server.host, port=server.port, **kwargs)
    conn.autocommit = True
    if server is not None:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('stampede.valkey_url', %s, false)", (server.valkey_url,))
    return conn


def stats_executions(cur):
    cur.execute("SELECT executions FROM stampede_stats")
    return cur.fetchone()[0]


def executions(cur, keys):
    """How many times each key's query has run so far (its sequence's count)."""
    counts = {}
    for k in keys:
        cur.execute(f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {k.seq}")
        counts[k] = cur.fetchone()[0]
    return counts


def run_phase(sessions, statement, watch_locks, servers=(None,)):
    """All sessions send statement(session) at once; returns (t0, pids seen waiting).

    With watch_locks, another connection polls pg_locks meanwhile for sessions
    blocked on a stampede lock: that is what makes a session a waiter.
    """
    t0 = [0.0]
    gate = threading.Barrier(len(sessions), action=lambda: t0.__setitem__(0, time.perf_counter()))
    threads = [threading.Thread(target=s.ask, args=(*statement(s), gate), daemon=True)
               for s in sessions]
    waiting, done = set(), threading.Event()

    def watch(server):
        conn = connect(server)
        with conn.cursor() as cur:
            while not done.is_set():
                cur.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' "
                            "AND objsubid = %s AND NOT granted", (STAMPEDE_LOCK_CLASS,))
                waiting.update(pid for (pid,) in cur.fetchall())
                time.sleep(POLL_MS / 1000)
        conn.close()

    # pids are unique across servers on one machine, so one set serves both.
    watchers = [threading.Thread(target=watch, args=(srv,), daemon=True)
                for srv in servers] if watch_locks else []
    for w in watchers:
        w.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    for w in watchers:
        w.join()
    failed = [s for s in sessions if s.error is not None]
    if failed:
        s = failed[0]
        sys.exit(f"FAILED: {len(failed)} session(s) raised an error, e.g. session {s.n} "
                 f"({s.key.city}): {str(s.error).strip()}")
    return t0[0], waiting


def classify(sessions, before, waiting):
    """Label each stampede_cached call from server-side facts.

    leader: the rows it got were computed in its own backend (their pid is its
            pid) by an execution of this phase (their run is a new count), so
            it ran the query itself (as would a waiter whose stampede.max_wait
            ran out);
    waiter: not the leader, and seen in pg_locks blocked on the key's lock;
    hit:    neither: the rows were already stored when it asked.
    """
    for s in sessions:
        row = s.rows[0] if s.rows else (None, None, 0, None)
        if row[3] == s.pid and row[2] > before[s.key]:
            s.role = "leader"
        elif s.pid in waiting:
            s.role = "waiter"
        else:
            s.role = "hit"


def classify_valkey(sessions, waiting, stale):
    """classify for --valkey, whose rows are (city, temperature, pid): no run
    count, so a leader is a session whose own pid is in the rows, unless that
    pid is in stale (the leaders of an earlier phase, whose rows are stored).
    Both servers' backends run on this machine, so a pid names one of them.
    A "hit" here may also have waited in Valkey for the other server's leader."""
    for s in sessions:
        pid = s.rows[0][2] if s.rows else None
        if pid == s.pid and pid not in stale:
            s.role = "leader"
        elif s.pid in waiting:
            s.role = "waiter"
        else:
            s.role = "hit"


def print_timeline(sessions, t0):
    """Offsets are from the moment the gate let all sessions go, as the client
    saw them; the server makes leader whichever call reaches the key's lock
    first, not always the first sent.  Wait is a waiter's call duration: it
    does nothing else but read the stored rows."""
    valkey = sessions[0].server is not None
    server = f"{'server':<9}" if valkey else ""
    print(f"    {'key':<12}{'session':>8}{'pid':>8}  {server}{'role':<7}"
          f"{'start ms':>10}{'wait ms':>10}{'return ms':>11}")
    for s in sorted(sessions, key=lambda s: (s.key.i, s.start)):
        wait = f"{(s.end - s.start) * 1000:.1f}" if s.role == "waiter" else "-"
        server = f"{s.server.name:<9}" if valkey else ""
        print(f"    {s.key.city:<12}{s.n:>8}{s.pid:>8}  {server}{s.role:<7}"
              f"{(s.start - t0) * 1000:>10.1f}{wait:>10}{(s.end - t0) * 1000:>11.1f}")


def pause(args, what):
    if not args.interactive:
        return
    prompt = f"\nPress Enter to {what}... "
    # Never block when nobody can answer: a pipe, a file, /dev/null.
    if not sys.stdin.isatty():
        print(prompt + "(stdin is not a terminal: continuing)")
        return
    try:
        input(prompt)
    except EOFError:
        print()


def plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def main():
    p = argparse.ArgumentParser(description="stampede demo: a cache stampede, with and without stampede_cached")
    p.add_argument("--sessions", type=int, default=10, metavar="N", help="sessions per key (default 10)")
    p.add_argument("--keys", type=int, default=3, metavar="M", help="keys, i.e. cities (default 3)")
    p.add_argument("--work-ms", type=int, default=500, metavar="MS",
                   help="how long the expensive query takes (default 500)")
    p.add_argument("--verbose", action="store_true", help="print each session's timeline")
    p.add_argument("--interactive", action="store_true", help="pause between steps")
    p.add_argument("--valkey", action="store_true",
                   help="share a Valkey between a primary and its replica (set up by test/demo.sh)")
    args = p.parse_args()
    if args.sessions < 1 or args.keys < 1 or args.work_ms < 0:
        p.error("--sessions and --keys must be at least 1, --work-ms at least 0")
    if args.valkey:
        return main_valkey(args)

    keys = [Key(i, args.work_ms) for i in range(args.keys)]
    admin = psycopg2.connect(dbname="postgres")
    admin.autocommit = True
    cur = admin.cursor()
    cur.execute("SHOW max_connections")
    max_connections = int(cur.fetchone()[0])
    if args.sessions * args.keys + 2 > max_connections:
        sys.exit(f"FAILED: {args.sessions} sessions x {args.keys} keys need more connections "
                 f"than max_connections ({max_connections}) allows")

    cur.execute("CREATE EXTENSION IF NOT EXISTS stampede")
    cur.execute("DROP TABLE IF EXISTS demo_weather")
    cur.execute("CREATE TABLE demo_weather (city text PRIMARY KEY, temperature int NOT NULL)")
    for k in keys:
        cur.execute("INSERT INTO demo_weather VALUES (%s, %s)", (k.city, k.temperature))
        cur.execute(f"DROP SEQUENCE IF EXISTS {k.seq}")
        cur.execute(f"CREATE SEQUENCE {k.seq}")

    total = args.sessions * len(keys)
    cities = "1 city" if len(keys) == 1 else f"{len(keys)} cities"
    print(f"\nstampede demo: {args.sessions} sessions per city ask for the weather of {cities} "
          f"at once ({total} sessions); the query takes {args.work_ms} ms.")
    # A generous bound, so that a stuck demo fails instead of hanging.
    timeout_ms = 10 * args.work_ms + 30000
    sessions = [Session(n + 1, k, timeout_ms) for k in keys for n in range(args.sessions)]

    plain = lambda s: (s.key.query, None)
    cached = lambda s: (f"SELECT * FROM stampede_cached(%s, %s, %s) AS {COLUMNS}",
                        (s.key.cache_key, s.key.query, TTL))
    failures = []

    # Phase 1: every session runs the query itself.
    pause(args, "run phase 1 (without protection)")
    print("\nPhase 1: without protection, every session runs the query itself")
    before = executions(cur, keys)
    t0, _ = run_phase(sessions, plain, watch_locks=False)
    after = executions(cur, keys)
    unprotected = sum(after[k] - before[k] for k in keys)
    for k in keys:
        print(f"  {k.city:<12} query ran {after[k] - before[k]:>3}x")
    print(f"  {plural(unprotected, 'execution')} in {max(s.end for s in sessions) - t0:.2f} s")
    if args.verbose:
        for s in sessions:
            s.role = "direct"
        print_timeline(sessions, t0)

    # Phase 2: the same sessions, through stampede_cached on cold keys.
    pause(args, "run phase 2 (with stampede_cached)")
    print("\nPhase 2: with stampede_cached, cold cache")
    cur.execute("SELECT stampede_stats_reset()")
    for k in keys:
        cur.execute("SELECT stampede_invalidate(%s)", (k.cache_key,))
    before = executions(cur, keys)
    t0, waiting = run_phase(sessions, cached, watch_locks=True)
    after = executions(cur, keys)
    classify(sessions, before, waiting)
    protected = sum(after[k] - before[k] for k in keys)
    for k in keys:
        mine = [s for s in sessions if s.key is k]
        ran = after[k] - before[k]
        roles = {r: sum(s.role == r for s in mine) for r in ("leader", "waiter", "hit")}
        same = len({tuple(s.rows) for s in mine}) == 1 and len(mine[0].rows) == 1
        print(f"  {k.city:<12} query ran {ran:>3}x   {plural(roles['leader'], 'leader')}, "
              f"{plural(roles['waiter'], 'waiter')}, {plural(roles['hit'], 'hit')}; "
              + (f"all {len(mine)} got the same row" if same else "sessions got DIFFERENT rows"))
        if ran > 1:
            failures.append(f"phase 2 ran the query of {k.city} {ran} times, not once")
        if not same:
            failures.append(f"phase 2 sessions of {k.city} got different rows")
    print(f"  {plural(protected, 'execution')} in {max(s.end for s in sessions) - t0:.2f} s")
    if args.verbose:
        print_timeline(sessions, t0)

    pause(args, "see stampede_stats")
    cur.execute(f"SELECT {', '.join(METRICS)} FROM stampede_stats")
    stats = dict(zip(METRICS, cur.fetchone()))
    print("\nstampede_stats after phase 2:")
    for name, value in stats.items():
        print(f"  {name:<24}{'-' if value is None else str(value):>10}")
    seen = sum(s.role == "waiter" for s in sessions)
    if seen != stats["lock_waits"]:
        print(f"  (pg_locks polling saw {plural(seen, 'waiter')}: "
              f"waits shorter than its {POLL_MS} ms interval go unseen)")
    fewer = round(100 * (1 - protected / unprotected)) if unprotected else 0
    print(f"\nwithout stampede: {plural(unprotected, 'execution')}; "
          f"with stampede: {plural(protected, 'execution')} ({fewer}% fewer)")

    # Phase 3: the keys are warm now, so every call should be a hit.
    pause(args, "run phase 3 (warm cache)")
    print("\nPhase 3: with stampede_cached, warm cache")
    before = executions(cur, keys)
    t0, waiting = run_phase(sessions, cached, watch_locks=True)
    after = executions(cur, keys)
    classify(sessions, before, waiting)
    ran = sum(after[k] - before[k] for k in keys)
    hits = sum(s.role == "hit" for s in sessions)
    slowest = max(s.end - s.start for s in sessions) * 1000
    print(f"  {hits} of {total} calls were hits, {plural(ran, 'execution')}, "
          f"slowest call {slowest:.1f} ms")
    if args.verbose:
        print_timeline(sessions, t0)
    if ran > 0:
        failures.append(f"phase 3 ran queries {ran} times on warm keys")

    for s in sessions:
        s.conn.close()
    admin.close()
    if failures:
        print("\nFAILED: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)
    print("\nOK")


def print_status(servers):
    print("\nstampede_status() on each server:")
    for srv in servers:
        conn = connect(srv)
        with conn.cursor() as cur:
            cur.execute("SELECT mode, valkey_reachable FROM stampede_status()")
            mode, reachable = cur.fetchone()
        conn.close()
        print(f"  {srv.name:<9} mode {mode}, valkey_reachable {reachable}")


def main_valkey(args):
    """The demo across a primary and its replica sharing one Valkey."""
    valkey_url = f"redis://127.0.0.1:{os.environ['STAMPEDE_VALKEY_PORT']}"
    primary = Server("primary", os.environ["PGHOST"], os.environ["PGPORT"], valkey_url)
    replica = Server("replica", os.environ["STAMPEDE_REPLICA_HOST"],
                     os.environ["STAMPEDE_REPLICA_PORT"], valkey_url)
    servers = (primary, replica)
    keys = [Key(i, args.work_ms) for i in range(args.keys)]
    admin = {srv: connect(srv) for srv in servers}
    cur = {srv: admin[srv].cursor() for srv in servers}
    cur[primary].execute("SHOW max_connections")
    max_connections = int(cur[primary].fetchone()[0])
    if (args.sessions * args.keys + 1) // 2 + 3 > max_connections:
        sys.exit(f"FAILED: {args.sessions} sessions x {args.keys} keys need more connections "
                 f"than max_connections ({max_connections}) allows")

    c = cur[primary]
    c.execute("CREATE EXTENSION IF NOT EXISTS stampede")
    c.execute("DROP TABLE IF EXISTS demo_weather")
    c.execute("CREATE TABLE demo_weather (city text PRIMARY KEY, temperature int NOT NULL)")
    for k in keys:
        c.execute("INSERT INTO demo_weather VALUES (%s, %s)", (k.city, k.temperature))
        c.execute(f"DROP SEQUENCE IF EXISTS {k.seq}")
        c.execute(f"CREATE SEQUENCE {k.seq}")
    # The replica must have replayed all that before its sessions ask.
    c.execute("SELECT pg_current_wal_lsn()")
    lsn = c.fetchone()[0]
    deadline = time.monotonic() + 60
    while True:
        r = cur[replica]
        r.execute("SELECT pg_is_in_recovery(), "
                  "(SELECT count(*) FROM pg_class WHERE relname = 'demo_weather'), "
                  "pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))
        recovering, tables, replayed = r.fetchone()
        if not recovering:
            sys.exit("FAILED: the replica is not in recovery")
        if tables > 0 and replayed:
            break
        if time.monotonic() > deadline:
            sys.exit("FAILED: the replica did not replay demo_weather within 60 s")
        time.sleep(0.05)

    total = args.sessions * len(keys)
    cities = "1 city" if len(keys) == 1 else f"{len(keys)} cities"
    print(f"\nstampede demo with Valkey ({valkey_url}): {args.sessions} sessions per city "
          f"ask for the weather of {cities} at once ({total} sessions), half on the primary, "
          f"half on its streaming replica; the query takes {args.work_ms} ms.")
    print_status(servers)
    timeout_ms = 10 * args.work_ms + 30000
    sessions = [Session(n + 1, k, timeout_ms, servers[n % 2])
                for k in keys for n in range(args.sessions)]
    on = {srv: [s for s in sessions if s.server is srv] for srv in servers}

    def plain(s):
        return (s.key.query if s.server is primary else s.key.query_ro, None)

    cached = lambda s: (f"SELECT * FROM stampede_cached(%s, %s, %s) AS t(city text, temperature int, pid int)",
                        (s.key.cache_key, s.key.query_ro, TTL))
    failures = []

    # Phase 1: every session runs the query itself.  The primary's count
    # with nextval; the replica's sessions each ran it once, as they returned rows.
    pause(args, "run phase 1 (without protection)")
    print("\nPhase 1: without protection, every session runs the query itself")
    before = executions(cur[primary], keys)
    t0, _ = run_phase(sessions, plain, watch_locks=False)
    after = executions(cur[primary], keys)
    unprotected = 0
    for k in keys:
        p_ran = after[k] - before[k]
        r_ran = sum(1 for s in on[replica] if s.key is k and s.rows)
        unprotected += p_ran + r_ran
        print(f"  {k.city:<12} query ran {p_ran + r_ran:>3}x   "
              f"({p_ran} on the primary, {r_ran} on the replica)")
    print(f"  {plural(unprotected, 'execution')} in {max(s.end for s in sessions) - t0:.2f} s")
    if args.verbose:
        for s in sessions:
            s.role = "direct"
        print_timeline(sessions, t0)

    # Phase 2: the same sessions, through stampede_cached on cold keys.
    pause(args, "run phase 2 (with stampede_cached)")
    print("\nPhase 2: with stampede_cached, cold cache, one Valkey shared by both servers")
    for srv in servers:
        cur[srv].execute("SELECT stampede_stats_reset()")
        for k in keys:
            cur[srv].execute("SELECT stampede_invalidate(%s)", (k.cache_key,))
    before = {srv: stats_executions(cur[srv]) for srv in servers}
    t0, waiting = run_phase(sessions, cached, watch_locks=True, servers=servers)
    after = {srv: stats_executions(cur[srv]) for srv in servers}
    classify_valkey(sessions, waiting, set())
    ran = {srv: after[srv] - before[srv] for srv in servers}
    protected = sum(ran.values())
    by_pid = {s.pid: s for s in sessions}
    for k in keys:
        mine = [s for s in sessions if s.key is k]
        roles = {r: sum(s.role == r for s in mine) for r in ("leader", "waiter", "hit")}
        same = len({tuple(s.rows) for s in mine}) == 1 and len(mine[0].rows) == 1
        leader = by_pid.get(mine[0].rows[0][2]) if mine[0].rows else None
        where = f"leader on the {leader.server.name}" if leader else "leader not one of ours"
        print(f"  {k.city:<12} {where}; {plural(roles['leader'], 'leader')}, "
              f"{plural(roles['waiter'], 'waiter')}, {plural(roles['hit'], 'hit')}; "
              + (f"all {len(mine)} got the same row" if same else "sessions got DIFFERENT rows"))
        if roles["leader"] > 1:
            failures.append(f"phase 2 had {roles['leader']} leaders for {k.city}")
        if not same:
            failures.append(f"phase 2 sessions of {k.city} got different rows")
    print(f"  executions (stampede_stats): {ran[primary]} on the primary, "
          f"{ran[replica]} on the replica")
    print(f"  {plural(protected, 'execution')} for {plural(len(keys), 'key')} "
          f"in {max(s.end for s in sessions) - t0:.2f} s")
    if protected > len(keys):
        failures.append(f"phase 2 ran {protected} queries for {len(keys)} keys on the two servers")
    print("  (waiter: seen in pg_locks on its server; a hit may have waited in Valkey "
          "for the other server's leader)")
    if args.verbose:
        print_timeline(sessions, t0)

    pause(args, "see stampede_stats")
    print("\nstampede_stats after phase 2:")
    print(f"  {'':<24}{'primary':>10}{'replica':>10}")
    stats = {}
    for srv in servers:
        cur[srv].execute(f"SELECT {', '.join(METRICS)} FROM stampede_stats")
        stats[srv] = dict(zip(METRICS, cur[srv].fetchone()))
    for name in METRICS:
        vals = ["-" if stats[srv][name] is None else str(stats[srv][name]) for srv in servers]
        print(f"  {name:<24}{vals[0]:>10}{vals[1]:>10}")
    fewer = round(100 * (1 - protected / unprotected)) if unprotected else 0
    print(f"\nwithout stampede: {plural(unprotected, 'execution')}; "
          f"with stampede: {plural(protected, 'execution')} ({fewer}% fewer)")

    # Phase 3: the keys are warm now, so every call should be a hit.
    pause(args, "run phase 3 (warm cache)")
    print("\nPhase 3: with stampede_cached, warm cache")
    stale = {s.pid for s in sessions if s.role == "leader"}
    before = {srv: stats_executions(cur[srv]) for srv in servers}
    t0, waiting = run_phase(sessions, cached, watch_locks=True, servers=servers)
    after = {srv: stats_executions(cur[srv]) for srv in servers}
    classify_valkey(sessions, waiting, stale)
    ran = {srv: after[srv] - before[srv] for srv in servers}
    hits = sum(s.role == "hit" for s in sessions)
    slowest = max(s.end - s.start for s in sessions) * 1000
    print(f"  {hits} of {total} calls were hits, {plural(sum(ran.values()), 'execution')} "
          f"({ran[primary]} on the primary, {ran[replica]} on the replica), "
          f"slowest call {slowest:.1f} ms")
    if args.verbose:
        print_timeline(sessions, t0)
    if sum(ran.values()) > 0:
        failures.append(f"phase 3 ran queries {sum(ran.values())} times on warm keys")

    print_status(servers)
    for s in sessions:
        s.conn.close()
    for conn in admin.values():
        conn.close()
    if failures:
        print("\nFAILED: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)
    print("\nOK")


if __name__ == "__main__":
    main()
