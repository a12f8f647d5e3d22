#!/usr/bin/python3
"""Tests with real concurrent sessions against a running server (PGHOST,
PGPORT, PGUSER from the environment, stampede preloaded): one execution for
fifty callers, waiters that honour cancel and timeouts at once, leaders that
are cancelled, time out or are terminated, stampede.max_wait, and keys kept
apart per database.

Sessions are ordered by locks, never by sleeps: a "gate" advisory lock held
by the test holds a leader's query, and the test watches pg_locks to know
when a session is waiting.  Prints one 'ok'/'not ok' line a test and a
closing 'N passed, M failed' line; exits non-zero on any failure."""

import os
import sys
import time

from harness import Call, connect, expect, one, run, wait_until

STAMPEDE_LOCK_CLASS = 21332  # objsubid of stampede's advisory locks in pg_locks
GATE = 779                   # the test's own advisory lock
RUN = f"{os.getpid()}.{int(time.time())}"  # keys of this run: cold whatever ran before

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def runs(conn):
    return one(conn, "SELECT last_value FROM sess_runs")[0]


def stat(conn, column):
    return one(conn, f"SELECT {column} FROM stampede_stats")[0]


def waiting_on_stampede(conn, pid):
    return one(conn, """SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory'
                        AND objsubid = %s AND NOT granted""", (pid, STAMPEDE_LOCK_CLASS))[0] > 0


def waiting_on_gate(conn, pid):
    return one(conn, """SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory'
                        AND objid = %s AND NOT granted""", (pid, GATE))[0] > 0


def stampede_locks(conn, pid=None):
    return one(conn, """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = %s
                        AND (%s IS NULL OR pid = %s)""", (STAMPEDE_LOCK_CLASS, pid, pid))[0]


def expect_cancelled_without_lock(admin, waiter):
    """The waiter raised 57014 and holds no stampede lock."""
    expect(waiter.error is not None and waiter.error.pgcode == "57014",
           f"expected 57014, got {waiter.error!r}")
    expect(stampede_locks(admin, waiter.pid) == 0, "the waiter left a stampede lock behind")


def gated_query(key):
    """A call whose query waits for the gate, then counts its execution."""
    return (f"SELECT * FROM stampede_cached('{key}-{RUN}', $$SELECT nextval('sess_runs') AS run "
            f"FROM pg_advisory_xact_lock_shared({GATE})$$, '5 minutes') AS t(run bigint)")


def leader_at_gate(admin, key, **settings):
    """Close the gate, start a call for key, and wait until its query waits at the gate."""
    one(admin, "SELECT pg_advisory_lock(%s)", (GATE,))
    leader = Call(connect(**settings), gated_query(key))
    wait_until("leader at the gate", lambda: waiting_on_gate(admin, leader.pid))
    return leader


def open_gate(admin, leader=None):
    """Let the queries at the gate go on; the leader, if given, must then succeed."""
    one(admin, "SELECT pg_advisory_unlock(%s)", (GATE,))
    if leader is not None:
        expect(leader.result().error is None, f"leader failed: {leader.error!r}")


@test
def fifty_sessions_run_a_cold_key_once(admin):
    sessions = [connect() for _ in range(50)]
    before, executions_before = runs(admin), stat(admin, "executions")
    one(admin, "SELECT pg_advisory_lock(%s)", (GATE + 1,))
    # Each session first waits at a start line, then all call at once.
    calls = [Call(c, f"""SELECT pg_advisory_lock_shared({GATE + 1}), pg_advisory_unlock_shared({GATE + 1});
                         SELECT run, g FROM stampede_cached('sess-{RUN}:herd',
                           $$SELECT run, g FROM (SELECT nextval('sess_runs') AS run FROM pg_sleep(0.2)) s, generate_series(1, 3) g$$,
                           '5 minutes') AS t(run bigint, g int) ORDER BY g""") for c in sessions]
    wait_until("50 sessions at the start line", lambda: one(admin, """SELECT count(*) FROM pg_locks
        WHERE locktype = 'advisory' AND objid = %s AND NOT granted""", (GATE + 1,))[0] == 50)
    one(admin, "SELECT pg_advisory_unlock(%s)", (GATE + 1,))
    results = [c.result() for c in calls]
    errors = [r.error for r in results if r.error]
    expect(not errors, f"errors: {errors[:3]}")
    expect(runs(admin) - before == 1, f"query ran {runs(admin) - before} times, not once")
    expect(stat(admin, "executions") - executions_before == 1, "stampede_stats counted another number")
    expect(len({tuple(r.rows) for r in results}) == 1 and len(results[0].rows) == 3,
           "sessions got different rows")
    for c in sessions:
        c.close()


@test
def waiter_honours_statement_timeout_at_once(admin):
    leader = leader_at_gate(admin, "sess:timeout")
    waiter_conn = connect(statement_timeout="300ms")
    started = time.monotonic()
    waiter = Call(waiter_conn, gated_query("sess:timeout")).result()
    elapsed = waiter.ended - started
    expect_cancelled_without_lock(admin, waiter)
    expect(elapsed < 1.0, f"statement_timeout of 300 ms took {elapsed:.3f} s")
    open_gate(admin, leader)


@test
def waiter_honours_cancel_at_once(admin):
    leader = leader_at_gate(admin, "sess:cancel")
    waiter = Call(connect(), gated_query("sess:cancel"))
    wait_until("waiter on the leader's lock", lambda: waiting_on_stampede(admin, waiter.pid))
    cancelled = time.monotonic()
    one(admin, "SELECT pg_cancel_backend(%s)", (waiter.pid,))
    waiter.result()
    expect_cancelled_without_lock(admin, waiter)
    expect(waiter.ended - cancelled < 0.5, f"cancel took {waiter.ended - cancelled:.3f} s")
    open_gate(admin, leader)


@test
def terminated_waiter_leaves_no_lock(admin):
    leader = leader_at_gate(admin, "sess:terminate-waiter")
    waiter = Call(connect(), gated_query("sess:terminate-waiter"))
    wait_until("waiter on the leader's lock", lambda: waiting_on_stampede(admin, waiter.pid))
    one(admin, "SELECT pg_terminate_backend(%s)", (waiter.pid,))
    waiter.result()
    expect(waiter.error is not None, "the terminated waiter returned rows")
    wait_until("the waiter gone", lambda: one(
        admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (waiter.pid,))[0] == 0)
    expect(stampede_locks(admin, waiter.pid) == 0, "the waiter left a stampede lock behind")
    open_gate(admin, leader)


@test
def terminated_leader_is_taken_over(admin):
    before = runs(admin)
    leader = leader_at_gate(admin, "sess:terminate")
    waiter = Call(connect(), gated_query("sess:terminate"))
    wait_until("waiter on the leader's lock", lambda: waiting_on_stampede(admin, waiter.pid))
    one(admin, "SELECT pg_terminate_backend(%s)", (leader.pid,))
    # The waiter leads now: it runs the query, which waits at the gate.
    wait_until("the waiter leading", lambda: waiting_on_gate(admin, waiter.pid))
    open_gate(admin)
    waiter.result()
    expect(waiter.error is None, f"waiter failed: {waiter.error}")
    expect(runs(admin) - before == 1, f"query ran {runs(admin) - before} times")
    expect(stampede_locks(admin) == 0, "a stampede lock was left behind")


@test
def leader_statement_timeout_is_not_handed_on(admin):
    leader = leader_at_gate(admin, "sess:leader-timeout", statement_timeout="400ms")
    waiter = Call(connect(), gated_query("sess:leader-timeout"))
    wait_until("waiter leading after the timeout", lambda: waiting_on_gate(admin, waiter.pid))
    open_gate(admin)
    expect(leader.result().error is not None and leader.error.pgcode == "57014",
           f"leader: expected 57014, got {leader.error!r}")
    expect(waiter.result().error is None, f"waiter got {waiter.error!r}")


@test
def max_wait_with_error_raises_55P03(admin):
    leader = leader_at_gate(admin, "sess:max-wait-error")
    timeouts = stat(admin, "timeouts")
    started = time.monotonic()
    waiter = Call(connect(**{"stampede.max_wait": "200ms", "stampede.wait_timeout_action": "error"}),
                  gated_query("sess:max-wait-error")).result()
    expect(waiter.error is not None and waiter.error.pgcode == "55P03",
           f"expected 55P03, got {waiter.error!r}")
    expect(0.15 < waiter.ended - started < 1.0, f"returned after {waiter.ended - started:.3f} s")
    expect(stat(admin, "timeouts") == timeouts + 1, "timeout not counted")
    open_gate(admin, leader)


@test
def max_wait_with_execute_runs_the_query_itself(admin):
    leader = leader_at_gate(admin, "sess:max-wait-execute")
    waiter = Call(connect(**{"stampede.max_wait": "200ms"}), gated_query("sess:max-wait-execute"))
    # Past max_wait, the waiter runs the query itself and reaches the gate too.
    wait_until("the waiter running the query", lambda: waiting_on_gate(admin, waiter.pid))
    open_gate(admin)
    expect(leader.result().error is None and waiter.result().error is None,
           f"errors: {leader.error!r} {waiter.error!r}")
    expect(leader.rows != waiter.rows, "the waiter did not run the query itself")


@test
def keys_are_kept_apart_per_database(admin):
    one(admin, "DROP DATABASE IF EXISTS sess_other")
    one(admin, "CREATE DATABASE sess_other")
    other = connect("sess_other")
    one(other, "CREATE EXTENSION stampede")
    sql = f"SELECT * FROM stampede_cached('sess-{RUN}:db', 'SELECT current_database()::text AS db', '5 minutes') AS t(db text)"
    here, there = one(admin, sql)[0], one(other, sql)[0]
    other.close()
    one(admin, "DROP DATABASE sess_other")
    expect((here, there) == ("postgres", "sess_other"), f"got {here!r} and {there!r}")


@test
def a_namespace_set_on_purpose_still_keeps_databases_apart(admin):
    """stampede.namespace (say, in postgresql.conf) shares Valkey between
    clusters, never between databases: the database is in every entry's
    identity and Valkey name."""
    one(admin, "DROP DATABASE IF EXISTS sess_other")
    one(admin, "CREATE DATABASE sess_other")
    here, other = connect(), connect("sess_other")
    one(other, "CREATE EXTENSION stampede")
    for conn in (here, other):
        one(conn, "SELECT set_config('stampede.namespace', %s, false)", (f"sess-ns-{RUN}",))
    sql = (f"SELECT * FROM stampede_cached('sess-{RUN}:ns', 'SELECT current_database()::text AS db', "
           "'5 minutes') AS t(db text)")
    got = (one(here, sql)[0], one(other, sql)[0], one(other, sql)[0])
    here.close()
    other.close()
    one(admin, "DROP DATABASE sess_other")
    expect(got == ("postgres", "sess_other", "sess_other"), f"got {got!r}")


@test
def no_stampede_lock_is_left_behind(admin):
    expect(stampede_locks(admin) == 0, f"{stampede_locks(admin)} stampede locks remain")


def main():
    admin = connect()
    one(admin, "CREATE EXTENSION IF NOT EXISTS stampede")
    one(admin, "DROP SEQUENCE IF EXISTS sess_runs")
    one(admin, "CREATE SEQUENCE sess_runs")
    one(admin, "SELECT nextval('sess_runs')")  # so that last_value counts from here
    # After a failure, leave the next test a clean start.
    return run("sessions", TESTS, lambda: admin,
               after_failure=lambda a: one(a, "SELECT pg_advisory_unlock_all()"))


if __name__ == "__main__":
    sys.exit(main())
