#!/usr/bin/python3
"""stampede with Valkey: a primary and its streaming replica sharing entries.

Three figures, each measured side by side with its baseline in this run:

  1. cold key across two servers: 100 sessions, half on the primary, half on
     the replica, ask for one cold key at once; the query must run once in
     all, and the waiters must return about as fast as waiters on a plain
     advisory lock (one holder per server, the others waiting in share mode).
  2. hit throughput: a warm 100-row key served from Valkey, against
     SELECT * FROM a materialized view of the same rows (pgbench), with
     redis-server sharing the cores, and with a core of its own (the
     primary and pgbench on the others) as a Valkey of its own would.
  3. Valkey down: once the circuit is open, a call that falls back to the
     local store costs about what it costs with no Valkey configured.

Environment: PRIMARY_HOST/PRIMARY_PORT, REPLICA_HOST/REPLICA_PORT (replica of
the primary), VALKEY_PORT (a redis-server on 127.0.0.1 that this script stops
for figure 3) and VALKEY_SOCKET (its unix socket), PGUSER, PGDATABASE.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cold_key import SETUP_SQL as COLD_KEY_SQL, Herd, Scenario, median, p99, run_trial  # noqa: E402


WAIT_LIMIT_S = 60
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"

PRIMARY = (os.environ["PRIMARY_HOST"], os.environ["PRIMARY_PORT"])
REPLICA = (os.environ["REPLICA_HOST"], os.environ["REPLICA_PORT"])
VALKEY_PORT = int(os.environ["VALKEY_PORT"])
VALKEY_URL = f"redis://127.0.0.1:{VALKEY_PORT}"
VALKEY_SOCKET = os.environ["VALKEY_SOCKET"]

SETUP_SQL = r"""
CREATE EXTENSION IF NOT EXISTS stampede;

-- stampede.last_call tells a caller on either server whether it led.  Not cold_key's
-- bench_stampede: its query counts executions with nextval, which a replica
-- cannot run; stampede_stats counts them here.
CREATE OR REPLACE FUNCTION vk_stampede(gate int, k text, work_ms int,
    OUT led boolean, OUT got_rows boolean, OUT returned_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    one int;
BEGIN
    PERFORM bench_gate(gate);  -- cold_key's, as is its floor
    SELECT t.one INTO one
    FROM stampede_cached(k,
        format('SELECT 1 AS one FROM pg_sleep(%s)', work_ms / 1000.0),
        '5 minutes') AS t(one int);
    returned_at := clock_timestamp();
    led := current_setting('stampede.last_call') = 'led';
    got_rows := one IS NOT NULL;
END $$;

DROP MATERIALIZED VIEW IF EXISTS vk_mv;
DROP TABLE IF EXISTS vk_products;
CREATE TABLE vk_products (id int PRIMARY KEY, name text, total bigint);
INSERT INTO vk_products
SELECT g, 'product ' || g, (g::bigint * 7919) % 1000003 FROM generate_series(1, 10000) g;
ANALYZE vk_products;
CREATE MATERIALIZED VIEW vk_mv AS
    SELECT id, name, total FROM vk_products ORDER BY total DESC LIMIT 100;
"""

HIT_QUERY = "SELECT id, name, total FROM vk_products ORDER BY total DESC LIMIT 100"


def connect(server, valkey=True, extra=()):
    host, port = server
    conn = psycopg2.connect(host=host, port=port)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = %s", (f"{WAIT_LIMIT_S}s",))
        if valkey:
            cur.execute("SELECT set_config('stampede.valkey_url', %s, false)", (VALKEY_URL,))
        for name, value in extra:
            cur.execute("SELECT set_config(%s, %s, false)", (name, value))
    return conn


def one(conn, sql, args=()):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def redis_cli(*args):
    return subprocess.run(["redis-cli", "-p", str(VALKEY_PORT), *args],
                          capture_output=True, text=True, timeout=30).stdout


def redis_stat(name):
    m = re.search(rf"^{name}:(\d+)", redis_cli("INFO", "stats"), re.M)
    return int(m.group(1)) if m else None


def stats_sum(admins):
    """requests, hits, executions, lock_waits, fallbacks summed over the servers."""
    total = [0] * 5
    for a in admins:
        row = one(a, "SELECT requests, hits, executions, lock_waits, fallbacks FROM stampede_stats")
        total = [t + v for t, v in zip(total, row)]
    return total


# ---------------------------------------------------------------- figure 1

def figure1(opts, checks):
    herd = Herd(opts.sessions, [lambda: connect(PRIMARY), lambda: connect(REPLICA)])
    run = f"{os.getpid()}-{int(time.time())}"
    work = opts.work_ms
    stampede = Scenario("stampede via Valkey, 2 servers",
                        "SELECT * FROM vk_stampede(%s, %s, %s)",
                        lambda k: (f"vkcold:{run}:{k}", work))
    # Advisory locks are per server: one holder on each, the others wait in share mode.
    floor = Scenario("floor: advisory lock per server, shared",
                     "SELECT * FROM bench_floor(%s, %s, true, %s)", lambda k: (k, work),
                     runs_query=False)
    for s in (stampede, floor):  # warm plans and connections
        _, errors = herd.run(s.sql, s.args(0))
        if errors:
            sys.exit(f"{s.name} failed while warming up: {errors[0]}")
    print(f"1. cold key on primary + replica: {opts.sessions} sessions "
          f"({len([1 for s, _ in herd.sessions if s == 0])} + "
          f"{len([1 for s, _ in herd.sessions if s == 1])}), {work} ms query, {opts.trials} trials")
    st0 = stats_sum(herd.admins)
    for trial in range(1, opts.trials + 1):
        order = (stampede, floor) if trial % 2 else (floor, stampede)
        for s in order:
            # Executions on both servers, by stampede_stats: a replica has no sequence.
            run_trial(herd, s, trial, lambda: stats_sum(herd.admins)[2])
    st = [a - b for a, b in zip(stats_sum(herd.admins), st0)]

    fm, fp = median(floor.latencies), p99(floor.latencies)
    print(f"{'scenario':<42} {'1 execution':>12} {'median ms':>10} {'p99 ms':>8} {'got nothing':>12}")
    for s in (stampede, floor):
        ones = f"{sum(1 for e in s.executions if e == 1)}/{len(s.executions)}"
        print(f"{s.name:<42} {ones:>12} {median(s.latencies):>10.1f} "
              f"{p99(s.latencies):>8.1f} {s.empty:>12}")
    print("(floor: 1 execution means one holder over both servers; it has one per server, so 2 "
          "is expected)")
    print(f"floor holders per trial: {sorted(set(floor.executions))}")
    print("stampede_stats summed over both servers during the trials (both scenarios): "
          "requests %d, hits %d, executions %d, lock_waits %d, fallbacks %d" % tuple(st))
    bad = [e for e in stampede.executions if e != 1]
    if bad:
        print(f"stampede trials with other than 1 execution: {bad}")
    for s in (stampede, floor):
        for e in s.errors[:5]:
            print(f"error in {s.name}: {e}")
    sm, sp = median(stampede.latencies), p99(stampede.latencies)
    ones = sum(1 for e in stampede.executions if e == 1)
    checks += [
        (f"cold key: 1 execution in {ones} of {opts.trials} trials", ones == opts.trials),
        (f"cold key: median {sm:.1f} ms <= 2 x floor {fm:.1f} + 5 = {2 * fm + 5:.1f} ms",
         sm <= 2 * fm + 5),
        (f"cold key: p99 {sp:.1f} ms <= 2 x floor {fp:.1f} + 5 = {2 * fp + 5:.1f} ms",
         sp <= 2 * fp + 5),
        (f"cold key: no errors, every caller got rows ({len(stampede.errors)} errors, "
         f"{stampede.empty} empty)", not stampede.errors and stampede.empty == 0),
    ]
    for _, c in herd.sessions:
        c.close()


# ---------------------------------------------------------------- figure 2

def cpu_ticks():
    """CPU clock ticks used so far by the postgres processes (user and kernel
    time apart), redis-server and pgbench."""
    totals = {"postgres": 0, "postgres user": 0, "redis-server": 0, "pgbench": 0}
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except (OSError, ValueError):
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        name = next((n for n in ("postgres", "redis-server", "pgbench") if comm.startswith(n)), None)
        if name:
            fields = stat[stat.rindex(")") + 2:].split()
            totals[name] += int(fields[11]) + int(fields[12])  # utime + stime
            if name == "postgres":
                totals["postgres user"] += int(fields[11])
    return totals


def pgbench_tps(script, duration, clients, env, cpus=None):
    """tps, and CPU µs per transaction by process, sampled over the middle of
    the run; with cpus, pgbench runs on those CPUs only."""
    cmd = [PGBENCH, "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
           "-T", str(duration), "-f", script]
    if cpus:
        cmd = ["taskset", "-c", cpus] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(duration * 0.25)
    c0 = cpu_ticks()
    window = duration * 0.5
    time.sleep(window)
    c1 = cpu_ticks()
    out, err = proc.communicate(timeout=duration + 60)
    m = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", out, re.M)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"pgbench failed: {out}{err}")
    tps = float(m.group(1))
    hz = os.sysconf("SC_CLK_TCK")
    cpu = {n: (c1[n] - c0[n]) / hz * 1e6 / (tps * window) for n in c0}
    return tps, cpu


def pin(pid, cpus):
    """Put process pid (all its threads) on cpus; its children to come inherit it."""
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=True,
                   capture_output=True)


class Topology:
    """Where the processes run.  shared: anywhere (redis-server competes with
    the clients and backends for the same cores); own core: redis-server on
    one core, the primary (its postmaster, so its new backends) and pgbench
    on the others, as if Valkey were a machine of its own."""

    def __init__(self, name, conn):
        self.name = name
        self.cpus = None
        if name == "own core":
            n = os.cpu_count()
            self.cpus = "0" if n == 2 else f"0-{n - 2}"
            self.valkey_cpu = str(n - 1)
            data = one(conn, "SHOW data_directory")[0]
            with open(os.path.join(data, "postmaster.pid")) as f:
                self.postmaster = int(f.readline())
            self.redis = int(re.search(r"^process_id:(\d+)", redis_cli("INFO", "server"), re.M).group(1))

    def __enter__(self):
        if self.cpus:
            pin(self.postmaster, self.cpus)
            pin(self.redis, self.valkey_cpu)
        return self

    def __exit__(self, *exc):
        if self.cpus:
            every = f"0-{os.cpu_count() - 1}"
            pin(self.postmaster, every)
            pin(self.redis, every)


def print_ceiling(topology, per):
    """
    What B/A and U/A would be if the hit's own work in the backends' user
    space (stampede, hiredis, the copies) cost no more than the matview's,
    leaving only what the round trip costs the kernel (and redis-server
    where it shares the cores): the ceiling of any hit that makes one round
    trip, on this machine.  Throughput follows the CPU per transaction on the
    busy cores: with Valkey on a core of its own, postgres and pgbench.
    """
    def busy(p):
        return p["postgres"] + p["pgbench"] + (p["redis-server"] if topology.cpus is None else 0)

    a = per["A"]
    for n in ("B", "U"):
        extra_user = per[n]["postgres user"] - a["postgres user"]
        print(f"    {n}: CPU per transaction on the busy cores {busy(per[n]):.1f} µs against "
              f"A's {busy(a):.1f} µs (predicts {n}/A {busy(a) / busy(per[n]):.2f}), of which "
              f"{extra_user:.1f} µs more in the backends' user space; with that at zero, "
              f"{n}/A would be {busy(a) / (busy(per[n]) - extra_user):.2f}")


def figure2(opts, checks):
    """
    A hit from Valkey against a matview, over TCP (B) and over Valkey's unix
    socket (U), with redis-server sharing the cores and with a core of its
    own.  Each run also says where the CPU goes (µs per transaction in the
    server processes, redis-server and pgbench): what the round trip costs.
    """
    key = "vk_top100"
    call = (f"SELECT * FROM stampede_cached('{key}', $${HIT_QUERY}$$, '1 hour') "
            "AS t(id int, name text, total bigint);")
    tmp = tempfile.mkdtemp()
    a_sql, b_sql = os.path.join(tmp, "A.sql"), os.path.join(tmp, "B.sql")
    with open(a_sql, "w") as f:
        f.write("SELECT * FROM vk_mv;\n")
    with open(b_sql, "w") as f:
        f.write(call + "\n")
    env = dict(os.environ, PGHOST=PRIMARY[0], PGPORT=str(PRIMARY[1]))
    scripts = [("A", a_sql, None), ("B", b_sql, VALKEY_URL), ("U", b_sql, f"unix://{VALKEY_SOCKET}")]

    conn = connect(PRIMARY)
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM vk_mv")
        mv_rows = cur.fetchall()
        cur.execute(call)
        b_rows = cur.fetchall()
        cur.execute(call)
        b_rows2 = cur.fetchall()
    same = mv_rows == b_rows == b_rows2 and len(mv_rows) == 100
    keys = [k for k in redis_cli("--scan", "--pattern", "stampede:*").split() if k]
    topologies = [Topology("shared", conn)]
    if (os.cpu_count() or 1) >= 2:
        topologies.append(Topology("own core", conn))
    print(f"\n2. hit from Valkey vs materialized view: pgbench -n -M prepared -c {opts.clients} "
          f"-j 2 -T {opts.duration}, {opts.rounds} rounds of A, B, U in each topology")
    print("  A = SELECT * FROM vk_mv (100 rows)")
    print(f"  B = stampede_cached('{key}', ...) warm, PGOPTIONS='-c stampede.valkey_url={VALKEY_URL}'")
    print(f"  U = the same over Valkey's unix socket, stampede.valkey_url=unix://{VALKEY_SOCKET}")
    for t in topologies:
        print(f"  {t.name}: " + ("redis-server, the servers and pgbench on any CPU" if t.cpus is None
                                 else f"redis-server on CPU {t.valkey_cpu}, the primary and "
                                      f"pgbench on CPU {t.cpus}"))
    print(f"  stampede keys in Valkey: {len(keys)} (e.g. {keys[:1]})")
    print("  CPU µs per transaction (postgres / redis-server / pgbench) after each tps")

    admins = [conn]
    s0 = stats_sum(admins)
    tps = {(t.name, n): [] for t in topologies for n, _, _ in scripts}
    cpu = {(t.name, n): [] for t in topologies for n, _, _ in scripts}
    redis_hits = 0
    for r in range(1, opts.rounds + 1):
        for t in topologies:
            with t:
                for name, script, url in scripts:
                    h0 = redis_stat("keyspace_hits")
                    run_env = dict(env, PGOPTIONS=f"-c stampede.valkey_url={url}") if url else env
                    got, c = pgbench_tps(script, opts.duration, opts.clients, run_env, t.cpus)
                    if url:
                        redis_hits += redis_stat("keyspace_hits") - h0
                    tps[t.name, name].append(got)
                    cpu[t.name, name].append(c)
            last = {n: tps[t.name, n][-1] for n, _, _ in scripts}
            print(f"  round {r}, {t.name:<8}: " + "  ".join(
                f"{n} {last[n]:8.1f} tps ({cpu[t.name, n][-1]['postgres']:.0f}/"
                f"{cpu[t.name, n][-1]['redis-server']:.0f}/{cpu[t.name, n][-1]['pgbench']:.0f})"
                for n, _, _ in scripts)
                + f"  B/A {last['B'] / last['A']:.2f}  U/A {last['U'] / last['A']:.2f}")
    s = [x - y for x, y in zip(stats_sum(admins), s0)]
    ratios = {}
    for t in topologies:
        for n in ("B", "U"):
            ratios[t.name, n] = median([b / a for a, b in zip(tps[t.name, "A"], tps[t.name, n])])
        print(f"  {t.name}: median tps A {median(tps[t.name, 'A']):.1f}, "
              f"B {median(tps[t.name, 'B']):.1f}, U {median(tps[t.name, 'U']):.1f}; "
              f"median B/A {ratios[t.name, 'B']:.2f}, U/A {ratios[t.name, 'U']:.2f}")
        per = {}
        for n, _, _ in scripts:
            per[n] = {p: median([c[p] for c in cpu[t.name, n]]) for p in cpu[t.name, n][0]}
            print(f"    CPU per transaction, {n}: postgres {per[n]['postgres']:.1f} µs "
                  f"({per[n]['postgres user']:.1f} in user space), "
                  f"redis-server {per[n]['redis-server']:.1f} µs, pgbench {per[n]['pgbench']:.1f} µs")
        print_ceiling(t, per)
    print(f"  stampede_stats during the runs: requests {s[0]}, hits {s[1]}, executions {s[2]}, "
          f"fallbacks {s[4]}; Valkey keyspace_hits during B and U: {redis_hits}")
    from_valkey = (len(keys) > 0 and s[2] == 0 and s[0] == s[1] and s[4] == 0
                   and redis_hits >= s[1] > 0)
    # Judged where Valkey has a core of its own, as a Valkey service has a
    # machine of its own; with redis-server on the clients' cores, reported.
    judged = topologies[-1].name
    for (name, n), ratio in ratios.items():
        what = f"hit, {name}: median {n}/A {ratio:.2f} >= 0.7 ({'TCP' if n == 'B' else 'unix socket'})"
        checks.append((what, ratio >= 0.7) if name == judged else ("INFO " + what, None))
    checks += [
        (f"hit: B returns the matview's 100 rows ({len(b_rows)} rows, same: {same})", same),
        ("hit: B and U served from Valkey (key in Valkey, every request a hit, no execution, "
         "no fallback, Valkey keyspace hits >= stampede hits)", from_valkey),
    ]
    conn.close()


# ---------------------------------------------------------------- figure 3

def time_calls(conn, sql, n):
    out = []
    with conn.cursor() as cur:
        for _ in range(n):
            t0 = time.perf_counter()
            cur.execute(sql)
            cur.fetchall()
            out.append((time.perf_counter() - t0) * 1000)
    return out


def figure3(opts, checks):
    key = f"vkdown:{os.getpid()}"
    sql = (f"SELECT * FROM stampede_cached('{key}', $${HIT_QUERY}$$, '1 hour') "
           "AS t(id int, name text, total bigint)")
    local = connect(PRIMARY, valkey=False)
    down = connect(PRIMARY, valkey=True,
                   extra=[("stampede.valkey_retry_interval", "60s")])
    # Fill the key in the local store (no Valkey) and warm both sessions' plans.
    time_calls(local, sql, 5)
    with local.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM ({sql}) q")
    print("\n3. Valkey down: stopping redis-server")
    redis_cli("SHUTDOWN", "NOSAVE")
    deadline = time.monotonic() + 10
    while redis_cli("PING").strip() == "PONG" and time.monotonic() < deadline:
        time.sleep(0.05)
    s0 = stats_sum([local])
    first = time_calls(down, sql, 1)[0]
    status = one(down, "SELECT mode, valkey_configured, valkey_reachable, valkey_circuit, "
                       "valkey_error FROM stampede_status()")
    t_down, t_local = [], []
    per = max(1, opts.down_calls // 4)
    for _ in range(4):  # alternate blocks so drift falls on both alike
        t_down += time_calls(down, sql, per)
        t_local += time_calls(local, sql, per)
    s = [x - y for x, y in zip(stats_sum([local]), s0)]
    md, ml = median(t_down), median(t_local)
    print(f"  first call after Valkey went down: {first:.2f} ms")
    print(f"  stampede_status() after it: mode={status[0]} configured={status[1]} "
          f"reachable={status[2]} circuit={status[3]} error={status[4]!r}")
    print(f"  {len(t_down)} calls each, client-side, 100-row hit:")
    print(f"    Valkey down (circuit open): median {md:.3f} ms, p99 {p99(t_down):.3f} ms")
    print(f"    Valkey not configured     : median {ml:.3f} ms, p99 {p99(t_local):.3f} ms")
    print(f"    extra per call            : {md - ml:+.3f} ms")
    print(f"  stampede_stats during these calls: requests {s[0]}, hits {s[1]}, "
          f"executions {s[2]}, fallbacks {s[4]}")
    all_rows = one(local, f"SELECT count(*) FROM ({sql}) q")[0]
    checks += [
        (f"Valkey down: extra time per call {md - ml:+.3f} ms < 1 ms once the circuit is open",
         md - ml < 1.0),
        (f"Valkey down: calls still answered ({all_rows} rows)", all_rows == 100),
    ]
    local.close()
    down.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--work-ms", type=int, default=200)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--down-calls", type=int, default=200)
    opts = ap.parse_args()

    setup = connect(PRIMARY, valkey=False)
    with setup.cursor() as cur:
        cur.execute("SET client_min_messages = warning")
        cur.execute(COLD_KEY_SQL)
        cur.execute(SETUP_SQL)
        cur.execute("SELECT pg_current_wal_lsn()")
        lsn = cur.fetchone()[0]
    setup.close()
    replica = connect(REPLICA, valkey=False)
    deadline = time.monotonic() + 30
    while not one(replica, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0]:
        if time.monotonic() > deadline:
            sys.exit("replica did not catch up")
        time.sleep(0.05)
    replica.close()
    print(f"primary port {PRIMARY[1]}, replica port {REPLICA[1]}, Valkey {VALKEY_URL} "
          f"({redis_cli('INFO', 'server').split('redis_version:')[1].split()[0]})")

    checks = []
    figure1(opts, checks)
    figure2(opts, checks)
    figure3(opts, checks)
    print()
    for what, passed in checks:
        print(what if passed is None else f"{'PASS' if passed else 'FAIL'}: {what}")
    sys.exit(0 if all(p for _, p in checks if p is not None) else 1)


if __name__ == "__main__":
    main()
