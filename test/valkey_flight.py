#!/usr/bin/python3
"""Single flight across a primary and its streaming replica that share one
Valkey (redis-server on 127.0.0.1 at a free port): the other server gets
the rows from Valkey; a waiting server is woken by the leader's PUBLISH; the
leader's own error reaches the other server's waiters; garbage in Valkey is
a miss; invalidation reaches every role's entry and a leader already
running; stampede.max_wait on the waiting server; an uncacheable result
lets the other server's waiters run at once; scripts go by EVALSHA.  (test/t/001_valkey_two_servers.pl covers
the herd, terminated and slow leaders, cancelled waiters and Valkey
stopped and started.)

Server A (the primary) is PGHOST/PGPORT, server B (its replica)
STAMPEDE_B_HOST/STAMPEDE_B_PORT; both have stampede preloaded.  Executions
are counted by stampede_stats on both (a replica cannot bump a sequence).
Sessions are ordered by a gate advisory lock on A and by the counters,
never by sleeps."""

import os
import random
import subprocess
import time

import psycopg2

from harness import Call, connect, expect, one, run, wait_until
from valkey import Valkey

TESTS = []
RUN = f"{os.getpid()}.{int(time.time())}"
GATE = 881


def test(fn):
    TESTS.append(fn)
    return fn


def server(name, valkey_port, **settings):
    """A session on server A or B, pointed at the Valkey; settings (stampede.*
    without the prefix) after the defaults."""
    if name == "B":
        conn = psycopg2.connect(dbname="postgres", host=os.environ["STAMPEDE_B_HOST"],
                                port=os.environ["STAMPEDE_B_PORT"])
        conn.autocommit = True
    else:
        conn = connect()
    settings = {"valkey_url": f"redis://127.0.0.1:{valkey_port}",
                "namespace": "shared-by-a-and-b",
                "backoff_base": "20ms", "backoff_max": "200ms", **settings}
    for name_, value in settings.items():
        one(conn, "SELECT set_config(%s, %s, false)", (f"stampede.{name_}", value))
    return conn


def gate_waiters(conn):
    return one(conn, """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
                        AND objid = %s AND NOT granted""", (GATE,))[0]


def gated_query():
    """A query that waits at the gate (on A: on B, advisory locks are B's own,
    so B passes), and returns a value of its own run: the time it ran."""
    return (f"SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS run "
            f"FROM pg_advisory_xact_lock_shared({GATE})")


def leader_at_gate(valkey, key):
    """On A: close the gate, start a call for key whose query waits for the
    gate to open (gated_query), and wait until it waits there.  (gate, leader)."""
    gate = server("A", valkey.port)
    one(gate, "SELECT pg_advisory_lock(%s)", (GATE,))
    leader = Call(server("A", valkey.port), call_sql(key, gated_query()))
    wait_until("the leader at the gate", lambda: gate_waiters(gate) > 0)
    return gate, leader


def waiter_on_b(valkey, key, query, **settings):
    """On B: start a call for key, and wait until it waits for A's lock."""
    b = server("B", valkey.port)
    waits = one(b, "SELECT lock_waits FROM stampede_stats")[0]
    waiter = Call(server("B", valkey.port, **settings), call_sql(key, query))
    wait_until("B's call waiting for A's lock",
               lambda: one(b, "SELECT lock_waits FROM stampede_stats")[0] > waits)
    return waiter


def runs(conn):
    return one(conn, "SELECT executions FROM stampede_stats")[0]


def call_sql(key, query="SELECT 1::bigint AS run FROM pg_sleep(0.3)"):
    return (f"SELECT * FROM stampede_cached('{key}-{RUN}', $q${query}$q$, '5 minutes') "
            f"AS t(run bigint)")


def setup_servers():
    a = server("A", 1)
    one(a, "CREATE EXTENSION IF NOT EXISTS stampede")
    one(a, "CREATE SEQUENCE IF NOT EXISTS vf_runs")
    # Rows each role sees differently: their entries are kept per role.
    one(a, """DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vf_reader') THEN
                    CREATE ROLE vf_reader;
                END IF;
              END $$""")
    one(a, "CREATE TABLE IF NOT EXISTS vf_rls (owner name, v int)")
    one(a, "ALTER TABLE vf_rls ENABLE ROW LEVEL SECURITY")
    one(a, "DROP POLICY IF EXISTS own ON vf_rls")
    one(a, "CREATE POLICY own ON vf_rls USING (owner = current_user)")
    one(a, "GRANT SELECT ON vf_rls TO vf_reader")
    b = server("B", 1)
    wait_until("the replica replaying the setup",
               lambda: one(b, "SELECT count(*) FROM pg_class WHERE relname = 'vf_runs'")[0] > 0)
    expect(one(b, "SELECT pg_is_in_recovery()")[0], "server B is not a replica")


@test
def the_other_server_reads_the_rows_from_valkey(valkey):
    a, b = server("A", valkey.port), server("B", valkey.port)
    first = one(a, call_sql("vf:shared"))
    before = runs(b)
    valkey_hits = one(b, "SELECT valkey_hits FROM stampede_stats")[0]
    second = one(b, call_sql("vf:shared"))
    expect(first == second, f"A got {first}, B got {second}")
    expect(runs(b) == before, "B ran the query A had stored")
    expect(one(b, "SELECT valkey_hits FROM stampede_stats")[0] == valkey_hits + 1,
           "B's hit is not counted in valkey_hits")


@test
def the_other_servers_waiter_is_woken_not_left_to_its_backoff(valkey):
    gate, leader = leader_at_gate(valkey, "vf:wake")
    # A backoff of 5 s: only the leader's PUBLISH can bring B back soon.
    waiter = waiter_on_b(valkey, "vf:wake", gated_query(),
                         backoff_base="5s", backoff_max="5s")
    one(gate, "SELECT pg_advisory_unlock(%s)", (GATE,))
    leader.result()
    waiter.result()
    lag = waiter.ended - leader.ended
    expect(waiter.error is None and waiter.rows == leader.rows,
           f"waiter: {waiter.error!r} {waiter.rows}, leader {leader.rows}")
    expect(lag < 1.0, f"B returned {lag:.2f} s after A: it was not woken")


@test
def max_wait_on_the_other_server_errs_or_runs_uncached(valkey):
    gate, leader = leader_at_gate(valkey, "vf:maxwait")
    started = time.monotonic()
    erring = Call(server("B", valkey.port, max_wait="300ms", wait_timeout_action="error"),
                  call_sql("vf:maxwait", gated_query())).result()
    took = erring.ended - started
    expect(erring.error is not None and erring.error.pgcode == "55P03",
           f"with wait_timeout_action = error: {erring.error!r} {erring.rows}")
    expect(took < 1.5, f"max_wait of 300 ms took {took:.2f} s")
    b = server("B", valkey.port)
    before = runs(b)
    running = Call(server("B", valkey.port, max_wait="300ms", wait_timeout_action="execute"),
                   call_sql("vf:maxwait", gated_query())).result()
    expect(running.error is None and len(running.rows) == 1 and runs(b) == before + 1,
           f"with wait_timeout_action = execute: {running.error!r} {running.rows}")
    one(gate, "SELECT pg_advisory_unlock(%s)", (GATE,))
    rows = leader.result().rows
    expect(rows and rows != running.rows, f"the leader got {leader.rows or leader.error}")
    expect(one(b, call_sql("vf:maxwait", gated_query())) == rows[0],
           "the rows of the call that stopped waiting were stored, not the leader's")


@test
def the_leaders_error_reaches_the_other_servers_waiters(valkey):
    gate = server("A", valkey.port)
    one(gate, "SELECT pg_advisory_lock(%s)", (GATE,))
    # Runs on A only (B waits); the sequence keeps r - r from being folded.
    failing = (f"SELECT 1 / (r - r) AS run FROM (SELECT nextval('vf_runs') AS r "
               f"FROM pg_advisory_xact_lock_shared({GATE})) s")
    leader = Call(server("A", valkey.port), call_sql("vf:fails", failing))
    wait_until("the leader at the gate", lambda: gate_waiters(gate) > 0)
    waiter = waiter_on_b(valkey, "vf:fails", failing)
    one(gate, "SELECT pg_advisory_unlock(%s)", (GATE,))
    leader.result()
    waiter.result()
    expect(leader.error is not None and leader.error.pgcode == "22012", f"leader: {leader.error!r}")
    expect(waiter.error is not None and waiter.error.pgcode == "22012", f"waiter: {waiter.error!r}")
    # The error is for that flight's waiters: a call after it runs the query again.
    a = server("A", valkey.port)
    before = one(a, "SELECT last_value FROM vf_runs")[0]
    again = Call(a, call_sql("vf:fails", failing)).result()
    expect(again.error is not None and again.error.pgcode == "22012" and
           one(a, "SELECT last_value FROM vf_runs")[0] == before + 1,
           f"a later call did not run the query again: {again.error!r}")


@test
def garbage_in_valkey_is_a_miss(valkey):
    a = server("A", valkey.port)
    query = "SELECT g, repeat('x', g) AS pad FROM generate_series(1, 50) g"
    sql = (f"SELECT count(*), sum(length(pad)) FROM stampede_cached('vf:garbage-{RUN}', "
           f"$q${query}$q$, '5 minutes') AS t(g int, pad text)")
    expected = one(a, sql)
    cli = ["redis-cli", "-p", str(valkey.port)]
    keys = subprocess.run(cli + ["--scan", "--pattern", "stampede:*:v"],
                          capture_output=True, text=True, check=True).stdout.split()
    expect(len(keys) == 1, f"expected one entry in Valkey, found {keys}")
    good = subprocess.run(cli + ["--raw", "GET", keys[0]], capture_output=True, check=True).stdout
    variants = {
        "random bytes": os.urandom(len(good)),
        "truncated": good[: len(good) // 2],
        "one byte flipped": good[:200] + bytes([good[200] ^ 0x40]) + good[201:],
        "empty": b"",
    }
    # and a fuzz: random bytes flipped, cut or spliced, 100 times
    rng = random.Random(int(RUN.split(".")[1]))
    for n in range(100):
        mutated = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            what = rng.choice(("flip", "cut", "splice"))
            at = rng.randrange(len(mutated)) if mutated else 0
            if what == "flip" and mutated:
                mutated[at] ^= 1 << rng.randrange(8)
            elif what == "cut":
                del mutated[at:at + rng.randint(1, 64)]
            else:
                mutated[at:at] = os.urandom(rng.randint(1, 16))
        variants[f"fuzz {n}"] = bytes(mutated)
    for name, value in variants.items():
        subprocess.run(cli + ["-x", "SET", keys[0]], input=value, capture_output=True, check=True)
        got = one(a, sql)
        expect(got == expected, f"{name}: got {got}, expected {expected}")

    # Keys of the wrong Valkey type where the entry, its lock and its error
    # marker go, and a lock that never expires: a miss that Valkey answers
    # (no fallback, no Valkey error), and the garbage is replaced.
    counters = "SELECT fallbacks, valkey_errors FROM stampede_stats"
    before = one(a, counters)
    lock, error = keys[0][:-1] + "l", keys[0][:-1] + "e"
    for setup in (["DEL", keys[0]], ["RPUSH", keys[0], "x"], ["DEL", lock], ["HSET", lock, "f", "v"],
                  ["RPUSH", error, "x"]):
        subprocess.run(cli + setup, capture_output=True, check=True)
    got = one(a, sql)
    expect(got == expected, f"wrong types: got {got}, expected {expected}")
    subprocess.run(cli + ["DEL", keys[0]], capture_output=True, check=True)
    subprocess.run(cli + ["SET", lock, "forever"], capture_output=True, check=True)
    got = one(a, sql)
    expect(got == expected, f"a lock without expiry: got {got}, expected {expected}")
    expect(one(a, counters) == before, f"garbage made calls fall back: {before} -> {one(a, counters)}")
    kind = subprocess.run(cli + ["TYPE", keys[0]], capture_output=True, text=True, check=True)
    expect(kind.stdout.strip() == "string", f"the entry was not replaced: its type is {kind.stdout}")


def valkey_keys(valkey, pattern):
    out = subprocess.run(["redis-cli", "-p", str(valkey.port), "--scan", "--pattern", pattern],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


@test
def an_uncacheable_result_lets_the_other_servers_waiters_run_at_once(valkey):
    """The leader's rows are too large to store: the other server's waiter
    runs the query at once, without taking the lock in its turn (with more
    servers, they would run one after another)."""
    gate = server("A", valkey.port)
    one(gate, "SELECT pg_advisory_lock(%s)", (GATE,))
    # On B (a replica) the same query sleeps for a second: time to look at
    # its locks while it runs.
    big = (f"SELECT g::bigint AS run FROM generate_series(1, 1000) g, "
           f"pg_advisory_xact_lock_shared({GATE}), "
           f"pg_sleep(CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END)")
    leader = Call(server("A", valkey.port, max_entry_size="1kB"), call_sql("vf:big", big))
    wait_until("the leader at the gate", lambda: gate_waiters(gate) > 0)
    waiter = waiter_on_b(valkey, "vf:big", big)
    one(gate, "SELECT pg_advisory_unlock(%s)", (GATE,))
    expect(len(leader.result().rows or []) == 1000, f"the leader got {leader.error!r}")
    b = server("B", valkey.port)
    wait_until("B running the query itself", lambda: one(
        b, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'")[0] > 0)
    locks = valkey_keys(valkey, "stampede:*:l")
    expect(len(waiter.result().rows or []) == 1000, f"the waiter got {waiter.rows or waiter.error}")
    expect(locks == [], f"B took the Valkey lock to run an uncacheable query: {locks}")


@test
def invalidate_during_a_flight_keeps_its_rows_out_of_valkey(valkey):
    gate, leader = leader_at_gate(valkey, "vf:inval")
    b = server("B", valkey.port)
    one(b, "SELECT stampede_invalidate(%s)", (f"vf:inval-{RUN}",))
    one(gate, "SELECT pg_advisory_unlock(%s)", (GATE,))
    rows = leader.result().rows
    expect(rows and len(rows) == 1, f"the leader got {leader.rows or leader.error}")
    got = one(b, call_sql("vf:inval", gated_query()))
    expect(got != rows[0], f"after invalidation B got {got}: the rows computed before it")


@test
def invalidate_removes_every_roles_entry(valkey):
    a = server("A", valkey.port)
    reader = server("A", valkey.port)
    one(reader, "SET ROLE vf_reader")
    query = "SELECT count(*) AS run FROM vf_rls"
    one(reader, call_sql("vf:roles", query))
    entries = valkey_keys(valkey, "stampede:*:v")
    expect(len(entries) == 2 and any(not k.endswith(":0:v") for k in entries),
           f"not a stub and a role's entry in Valkey: {entries}")
    b = server("B", valkey.port)
    expect(one(b, "SELECT stampede_invalidate(%s)", (f"vf:roles-{RUN}",))[0] is True,
           "stampede_invalidate removed nothing")
    left = valkey_keys(valkey, "stampede:*:v")
    expect(left == [], f"entries left after invalidation: {left}")
    before = runs(a)
    one(reader, call_sql("vf:roles", query))
    expect(runs(a) == before + 1, "the role's call did not run the query again")


def command_calls(valkey, command):
    out = subprocess.run(["redis-cli", "-p", str(valkey.port), "INFO", "commandstats"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


@test
def scripts_go_by_evalsha_and_by_eval_once_valkey_forgot_them(valkey):
    a = server("A", valkey.port)
    errors = one(a, "SELECT valkey_errors FROM stampede_stats")[0]
    # The first use of each script goes by EVAL (Valkey does not know it yet).
    one(a, call_sql("vf:sha0", "SELECT 0::bigint AS run"))
    evals, evalshas = command_calls(valkey, "eval"), command_calls(valkey, "evalsha")
    expect(evals <= 2, f"{evals} EVALs for the first call: more than one per script")
    one(a, call_sql("vf:sha1", "SELECT 1::bigint AS run"))
    expect(command_calls(valkey, "eval") == evals, "a known script went by EVAL")
    expect(command_calls(valkey, "evalsha") >= evalshas + 2,
           "the lock and store scripts did not go by EVALSHA")
    subprocess.run(["redis-cli", "-p", str(valkey.port), "SCRIPT", "FLUSH"], check=True,
                   capture_output=True)
    evals = command_calls(valkey, "eval")
    expect(one(a, call_sql("vf:sha2", "SELECT 2::bigint AS run")) == (2,), "wrong rows after SCRIPT FLUSH")
    expect(command_calls(valkey, "eval") > evals, "NOSCRIPT did not fall back to EVAL")
    expect(one(a, "SELECT valkey_errors FROM stampede_stats")[0] == errors,
           "NOSCRIPT was taken for a Valkey failure")
    b = server("B", valkey.port)
    before = runs(b)
    expect(one(b, call_sql("vf:sha2", "SELECT 2::bigint AS run")) == (2,) and runs(b) == before,
           "B did not read the rows stored after SCRIPT FLUSH")


def main():
    setup_servers()
    state = {}

    def fresh_valkey():
        if "valkey" in state:
            state["valkey"].stop()
        state["valkey"] = Valkey()
        return state["valkey"]

    try:
        return run("valkey flight", TESTS, fresh_valkey)
    finally:
        if "valkey" in state:
            state["valkey"].stop()


if __name__ == "__main__":
    raise SystemExit(main())
