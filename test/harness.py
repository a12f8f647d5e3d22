"""What test/sessions.py and test/valkey.py share: connecting, asserting, and
running a list of tests with one 'ok'/'not ok' line each and a closing
'N passed, M failed' line."""

import os
import sys
import threading
import time
import traceback

import psycopg2

DEADLINE_S = 30     # no single wait in a test may take longer


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def connect(dbname="postgres", **settings):
    """A connection (PGHOST, PGPORT, PGUSER from the environment) in autocommit,
    with settings passed as -c options."""
    # options replaces PGOPTIONS in libpq: keep it (test/run.sh sets Valkey there).
    options = " ".join([os.environ.get("PGOPTIONS", "")] +
                       [f"-c {k}={v}" for k, v in settings.items()]).strip()
    conn = psycopg2.connect(dbname=dbname, options=options or None)
    conn.autocommit = True
    return conn


def one(conn, sql, args=None):
    """Run sql; its first row, if it returns rows."""
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone() if cur.description else None


def wait_until(what, condition):
    """Poll a condition that another session makes true; fail after DEADLINE_S."""
    end = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Call(threading.Thread):
    """One session's call in a thread: its rows, or the error it raised, and when."""

    def __init__(self, conn, sql):
        super().__init__(daemon=True)
        self.conn, self.sql = conn, sql
        self.pid = conn.get_backend_pid()
        self.rows = self.error = self.ended = None
        self.start()

    def run(self):
        try:
            with self.conn.cursor() as cur:
                cur.execute(self.sql)
                self.rows = cur.fetchall()
        except psycopg2.Error as e:
            self.error = e
        self.ended = time.monotonic()

    def result(self):
        self.join(DEADLINE_S)
        if self.is_alive():
            raise AssertionError(f"session {self.pid} did not return")
        return self


def run(suite, tests, admin_for, after_failure=None):
    """Run each test with the admin connection admin_for() gives it; returns
    the exit status."""
    passed = failed = 0
    for n, fn in enumerate(tests, 1):
        admin = admin_for()
        try:
            fn(admin)
            print(f"ok {n} - {fn.__name__}")
            passed += 1
        except Exception:
            print(f"not ok {n} - {fn.__name__}")
            traceback.print_exc(file=sys.stdout)
            failed += 1
            if after_failure:
                after_failure(admin)
    print(f"{suite}: {passed} passed, {failed} failed")
    return 1 if failed else 0
