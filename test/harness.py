"""What test/sessions.py and test/valkey.py share: connecting, asserting, and
running a list of tests with one 'ok'/'not ok' line each and a closing
'N passed, M failed' line."""

import sys
import traceback

import psycopg2


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def connect(dbname="postgres", **settings):
    """A connection (PGHOST, PGPORT, PGUSER from the environment) in autocommit,
    with settings passed as -c options."""
    options = " ".join(f"-c {k}={v}" for k, v in settings.items())
    conn = psycopg2.connect(dbname=dbname, options=options or None)
    conn.autocommit = True
    return conn


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
