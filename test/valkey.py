#!/usr/bin/python3
"""Tests of the Valkey connection against real servers on 127.0.0.1: Debian's
redis-server (Valkey speaks its protocol), started here at free ports, and a
socket that accepts and never answers, for a Valkey that hangs.  Runs
against a server with stampede preloaded (PGHOST, PGPORT, PGUSER), and one
without (STAMPEDE_PLAIN_HOST, STAMPEDE_PLAIN_PORT).

What is checked: reachable, AUTH (right and wrong password, which never
shows), unix sockets, the circuit breaker (a dead Valkey costs calls nothing
until stampede.valkey_retry_interval passes) and recovery without a
restart, a cancel or statement_timeout during a hung command, that only
superusers see or set stampede.valkey_url, that without
shared_preload_libraries Valkey alone runs a cold key once (and calls run
uncached while it is down), and that independent clusters given one
stampede.namespace share entries, rights checked where they are read.  Prints 'ok'/'not ok' lines and 'N passed, M
failed'."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2
import psycopg2.errors

from harness import Call, connect, expect, one, run

TESTS = []
DEADLINE_S = 20


def test(fn):
    TESTS.append(fn)
    return fn


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Valkey:
    """A redis-server of our own, on 127.0.0.1 or a unix socket."""

    def __init__(self, password=None, unix_dir=None, port=None):
        self.port = port or free_port()
        self.socket = os.path.join(unix_dir, "valkey.sock") if unix_dir else None
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no"]
        if password:
            args += ["--requirepass", password]
        if self.socket:
            args += ["--unixsocket", self.socket, "--unixsocketperm", "777"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + DEADLINE_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end:
                    raise AssertionError("redis-server did not start")
                time.sleep(0.02)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(DEADLINE_S)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Silent:
    """Accepts connections and never answers: a Valkey that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                return

    def stop(self):
        self.sock.close()
        for c in self.conns:
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def status(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT valkey_configured, valkey_reachable, valkey_circuit, valkey_error "
                    "FROM stampede_status()")
        return cur.fetchone()


def set_url(conn, url, **settings):
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('stampede.valkey_url', %s, false)", (url,))
        for k, v in settings.items():
            cur.execute("SELECT set_config(%s, %s, false)", (f"stampede.{k}", v))


@test
def not_configured_by_default(admin):
    expect(status(admin)[:3] == (False, None, "none"), f"got {status(admin)}")


@test
def reachable_with_its_password(admin):
    with Valkey(password="s3cret") as valkey:
        set_url(admin, f"redis://:s3cret@127.0.0.1:{valkey.port}/0")
        got = status(admin)
        expect(got[:3] == (True, True, "closed"), f"got {got}")


@test
def wrong_password_is_refused_and_never_shown(admin):
    with Valkey(password="s3cret") as valkey:
        set_url(admin, f"redis://someone:n0tit@127.0.0.1:{valkey.port}")
        got = status(admin)
        expect(got[1] is False and "AUTH refused" in got[3], f"got {got}")
        expect("n0tit" not in got[3] and "s3cret" not in got[3], "the error shows a password")


@test
def host_names_are_refused(admin):
    # Resolving a name would block the backend where no cancel reaches it:
    # refused when set, with why, and without quoting the URL's password.
    try:
        set_url(admin, "redis://:hunter2pw@valkey.example:6379")
        expect(False, "a host name was accepted")
    except psycopg2.errors.InvalidParameterValue as e:
        admin.rollback()
        text = str(e)
        expect("IP address" in text and "hunter2pw" not in text, f"got {text}")
    expect(status(admin)[0] is False, f"got {status(admin)}")


@test
def unix_socket(admin):
    sockdir = tempfile.mkdtemp()
    os.chmod(sockdir, 0o755)
    valkey = Valkey(unix_dir=sockdir)
    try:
        set_url(admin, f"unix://{valkey.socket}?db=1")
        got = status(admin)
        expect(got[:3] == (True, True, "closed"), f"got {got}")
    finally:
        valkey.stop()
        shutil.rmtree(sockdir)


@test
def dead_valkey_costs_nothing_while_the_circuit_is_open(admin):
    with Silent() as silent:
        set_url(admin, f"redis://127.0.0.1:{silent.port}", valkey_timeout="300ms",
                valkey_retry_interval="60s")
        started = time.monotonic()
        got = status(admin)
        first = time.monotonic() - started
        expect(got[1] is False and "timed out" in got[3], f"got {got}")
        expect(0.25 < first < 2.0, f"the first call took {first:.3f} s, not about 300 ms")
        started = time.monotonic()
        got = status(admin)
        second = time.monotonic() - started
        expect(got[2] == "open", f"circuit {got[2]}")
        expect(second < 0.1, f"with the circuit open a call took {second:.3f} s")


@test
def used_again_as_soon_as_it_is_back(admin):
    port = free_port()
    set_url(admin, f"redis://127.0.0.1:{port}", valkey_retry_interval="200ms")
    got = status(admin)
    expect(got[1] is False, f"nothing listens on {port}, yet {got}")
    valkey = Valkey()
    try:
        set_url(admin, f"redis://127.0.0.1:{valkey.port}", valkey_retry_interval="200ms")
        expect(status(admin)[1] is True, "a new server is not tried at once")
        valkey.stop()
        got = status(admin)
        expect(got[1] is False and got[2] == "open", f"a stopped server still answers: {got}")
        # The same server back on the same port: used again, no restart, no new setting.
        valkey = Valkey(port=valkey.port)
        end = time.monotonic() + DEADLINE_S
        while status(admin)[1] is not True:
            expect(time.monotonic() < end, "Valkey was not used again")
            time.sleep(0.05)
    finally:
        valkey.stop()


@test
def statement_timeout_during_a_hung_command_acts_at_once(admin):
    silent = Silent()
    valkey = Valkey()
    conn = connect()
    try:
        set_url(conn, f"redis://127.0.0.1:{silent.port}", valkey_timeout="30s")
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = '200ms'")
        started = time.monotonic()
        try:
            status(conn)
            raise AssertionError("a hung Valkey did not time out")
        except psycopg2.errors.QueryCanceled:
            pass
        elapsed = time.monotonic() - started
        expect(elapsed < 0.3, f"statement_timeout of 200 ms took {elapsed:.3f} s")
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = 0")
        set_url(conn, f"redis://127.0.0.1:{valkey.port}")
        expect(status(conn)[1] is True, "the connection was not made again")
    finally:
        conn.close()
        silent.stop()
        valkey.stop()


@test
def cancel_during_a_hung_command_acts_within_100_ms(admin):
    silent = Silent()
    conn = connect()
    try:
        set_url(conn, f"redis://127.0.0.1:{silent.port}", valkey_timeout="30s")
        call = Call(conn, "SELECT valkey_reachable FROM stampede_status()")
        end = time.monotonic() + DEADLINE_S
        with admin.cursor() as cur:
            while True:
                cur.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (call.pid,))
                if cur.fetchone()[0] == "Extension":
                    break
                expect(time.monotonic() < end, "the call never waited on Valkey")
                time.sleep(0.01)
            cur.execute("SELECT pg_cancel_backend(%s)", (call.pid,))
            cancelled = time.monotonic()
        call.result()
        took = call.ended - cancelled
        expect(isinstance(call.error, psycopg2.errors.QueryCanceled), f"got {call.error!r}")
        expect(took < 0.1, f"the cancel took {took:.3f} s")
    finally:
        conn.close()
        silent.stop()


@test
def only_superusers_see_or_set_the_url(admin):
    with admin.cursor() as cur:
        cur.execute("DROP ROLE IF EXISTS regress_stampede_valkey")
        cur.execute("CREATE ROLE regress_stampede_valkey")
        cur.execute("SET ROLE regress_stampede_valkey")
        try:
            for sql in ("SHOW stampede.valkey_url",
                        "SET stampede.valkey_url = 'redis://127.0.0.1:1'"):
                try:
                    cur.execute(sql)
                    raise AssertionError(f"{sql} worked for a plain role")
                except psycopg2.errors.InsufficientPrivilege:
                    pass
            cur.execute("SELECT count(*) FROM pg_settings WHERE name = 'stampede.valkey_url'")
            expect(cur.fetchone()[0] == 0, "pg_settings shows the URL to a plain role")
        finally:
            cur.execute("RESET ROLE")
            cur.execute("DROP ROLE regress_stampede_valkey")


def plain(valkey_port, **settings):
    """A session on the server without shared_preload_libraries
    (STAMPEDE_PLAIN_HOST/PORT), pointed at a Valkey."""
    conn = psycopg2.connect(dbname="postgres", host=os.environ["STAMPEDE_PLAIN_HOST"],
                            port=os.environ["STAMPEDE_PLAIN_PORT"])
    conn.autocommit = True
    set_url(conn, f"redis://127.0.0.1:{valkey_port}", **settings)
    return conn


def plain_setup(valkey_port):
    conn = plain(valkey_port)
    with conn.cursor() as cur:
        cur.execute("SET client_min_messages = warning")
        cur.execute("CREATE EXTENSION IF NOT EXISTS stampede")
        cur.execute("CREATE SEQUENCE IF NOT EXISTS np_runs")
    return conn


def np_call(key, sleep_s=0):
    return (f"SELECT * FROM stampede_cached('{key}-{os.getpid()}', "
            f"$q$SELECT nextval('np_runs') AS run FROM pg_sleep({sleep_s})$q$, '5 minutes') "
            "AS t(run bigint)")


def next_run(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT nextval('np_runs')")
        return cur.fetchone()[0]


@test
def not_preloaded_valkey_alone_runs_a_cold_key_once(admin):
    with Valkey() as valkey:
        setup = plain_setup(valkey.port)
        before = next_run(setup)
        sessions = [plain(valkey.port, backoff_base="20ms", backoff_max="200ms")
                    for _ in range(20)]
        calls = [Call(c, np_call("np:herd", 0.3)) for c in sessions]
        results = [c.result() for c in calls]
        errors = [r.error for r in results if r.error]
        expect(not errors, f"errors: {errors[:3]}")
        expect(len({tuple(r.rows) for r in results}) == 1, "sessions got different rows")
        ran = next_run(setup) - before - 1
        expect(ran == 1, f"the query ran {ran} times for 20 sessions")
        # A hit now, from Valkey.  (Without preloading, a backend knows of DDL
        # only since its first call: rows stored before that may be refilled
        # once.)  The first call of each backend said once what is missing.
        first = sessions[0]
        with first.cursor() as cur:
            cur.execute(np_call("np:herd"))
            rows = cur.fetchall()
            before = next_run(setup)
            cur.execute(np_call("np:herd"))
            expect(cur.fetchall() == rows and next_run(setup) == before + 1,
                   "a later call did not hit")
        said = [n for n in first.notices if "uses Valkey alone" in n]
        expect(len(said) == 1, f"the notice came {len(said)} times in two calls")
        with setup.cursor() as cur:
            cur.execute("SELECT mode, preloaded FROM stampede_status()")
            expect(cur.fetchone() == ("valkey", False), "status does not say valkey, not preloaded")


@test
def not_preloaded_without_valkey_runs_the_query_uncached(admin):
    setup = plain_setup(free_port())   # nothing listens there
    before = next_run(setup)
    with setup.cursor() as cur:
        for n in (1, 2):
            cur.execute(np_call("np:down"))
            got = cur.fetchone()[0]
            expect(got == before + n, f"call {n} got run {got}, not a fresh run {before + n}")
        cur.execute("SELECT mode, preloaded FROM stampede_status()")
        expect(cur.fetchone() == ("uncached", False), "status does not say uncached")


@test
def independent_clusters_share_on_purpose_with_one_namespace(admin):
    """The preloaded server and the plain one are independent clusters.  With
    the same stampede.namespace, one's rows answer the other's call for the
    same key and query, with rights checked on the reading cluster; types
    whose values differ between clusters (an enum) are not shared."""
    valkey = Valkey()
    ns = f"shared-on-purpose-{os.getpid()}"
    setup_sql = [
        "SET client_min_messages = warning",
        "CREATE EXTENSION IF NOT EXISTS stampede",
        "DROP TABLE IF EXISTS xc_items",
        "DROP TYPE IF EXISTS xc_mood",
        "CREATE TYPE xc_mood AS ENUM ('sad', 'glad')",
        "CREATE TABLE xc_items (id int, name text, mood xc_mood)",
        """DO $$ BEGIN
             IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'xc_nobody') THEN
                 CREATE ROLE xc_nobody;
             END IF;
           END $$""",
    ]
    try:
        one_ = admin
        set_url(one_, f"redis://127.0.0.1:{valkey.port}", namespace=ns)
        other = plain(valkey.port, namespace=ns)
        for conn, cluster in ((one_, "one"), (other, "other")):
            with conn.cursor() as cur:
                for sql in setup_sql:
                    cur.execute(sql)
                cur.execute("INSERT INTO xc_items VALUES (1, %s, 'glad')", (cluster,))
        key = f"xc-{os.getpid()}"

        def call(conn, query, columns="t(id int, name text)"):
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM stampede_cached('{key}', $q${query}$q$, '5 minutes') "
                            f"AS {columns}")
                return cur.fetchall()

        names = "SELECT id, name FROM xc_items"
        # Each cluster seals entries with the secret of its own data directory:
        # a namespace alone does not make them accept each other's.
        expect(call(one_, names) == [(1, "one")], "the first cluster's own rows")
        expect(call(other, names) == [(1, "other")],
               "a cluster accepted entries sealed with another cluster's secret")
        # The same secret, set by a superuser on both, does.
        secret = f"xc-secret-{os.getpid()}"
        for conn in (one_, other):
            set_url(conn, f"redis://127.0.0.1:{valkey.port}", namespace=ns, valkey_secret=secret)
        one(one_, "SELECT stampede_invalidate(%s)", (key,))
        expect(call(one_, names) == [(1, "one")], "the first cluster's own rows")
        expect(call(other, names) == [(1, "one")],
               "the other cluster did not get the first cluster's rows")
        # The reading cluster's rights decide: xc_nobody may not read xc_items there.
        with other.cursor() as cur:
            cur.execute("SET ROLE xc_nobody")
            try:
                cur.execute(f"SELECT * FROM stampede_cached('{key}', $q${names}$q$, '5 minutes') "
                            "AS t(id int, name text)")
                raise AssertionError("a role without rights on the reading cluster got the rows")
            except psycopg2.errors.InsufficientPrivilege:
                pass
            finally:
                cur.execute("RESET ROLE")
        # Another query text under the same key is not the entry's.
        expect(call(other, "SELECT id, name || '!' FROM xc_items") == [(1, "other!")],
               "an entry for another query text was used")
        # An enum's values are OIDs of the cluster that wrote them.
        key = f"xc-mood-{os.getpid()}"
        moods = "SELECT id, mood FROM xc_items"
        call(one_, moods, "t(id int, mood xc_mood)")
        with other.cursor() as cur:
            cur.execute("UPDATE xc_items SET mood = 'sad'")
        expect(call(other, moods, "t(id int, mood xc_mood)") == [(1, "sad")],
               "an enum value written by another cluster was served")
    finally:
        valkey.stop()


def main():
    # Each test sets stampede.* in its own session: a fresh one each.
    return run("valkey", TESTS, connect)


if __name__ == "__main__":
    sys.exit(main())
