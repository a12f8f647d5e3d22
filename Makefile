# stampede: a query-result cache that runs each key's query at most once.
EXTENSION    = stampede
EXTVERSION   = 0.2
MODULE_big   = stampede
OBJS         = src/stampede.o src/guc.o src/stats.o src/codec.o src/entry_check.o src/secret.o \
               src/store_local.o src/valkey_url.o src/valkey.o src/outage.o src/remote.o src/store.o \
               src/lease.o src/worker.o src/identity.o src/changes.o src/invalidation.o src/query.o src/wait.o \
               src/flight.o src/cache.o src/scan.o src/monitor.o
DATA         = sql/stampede--0.1.sql sql/stampede--0.1--0.2.sql sql/stampede--$(EXTVERSION).sql
PGFILEDESC   = "stampede - query-result cache with single flight"

# The tests (make installcheck, after make install): pg_regress, the isolation
# tester and TAP, each on a temporary instance of its own that preloads
# stampede (test/stampede.conf), so no server needs to be set up beforehand;
# and test/sql/not_preloaded.sql on one that does not.  initdb refuses to run
# as root: run them as an ordinary user from a tree it may write to.  Each
# instance listens only on a Unix socket in a directory pg_regress makes of
# its own, so two runs at once do not collide even on the same port number
# (EXTRA_REGRESS_OPTS=--port=N picks another).
REGRESS      = setup basic typed_jsonb scan bad_input types security identity tenants caller_state \
               rights ddl hidden_rights hidden_ddl transactions store stats upgrade
REGRESS_OPTS = --inputdir=test --temp-instance=tmp_check --temp-config=test/stampede.conf \
               --load-extension=stampede
ISOLATION    = leader_waiters leader_fails leader_cancelled invalidate_during_fill \
               invalidate_in_transaction invalidate_in_trigger invalidate_old_snapshot \
               own_writes snapshot_isolation waiter_no_rights scoped_flight_error \
               lock_timeout_wait waiter_error_leak advisory_unlock leader_statement_timeout \
               max_wait_execute
ISOLATION_OPTS = --inputdir=test/isolation --temp-instance=tmp_check_iso --temp-config=test/stampede.conf \
               --load-extension=stampede
# UTF8 and the C locale, whatever the caller's locale (the tests print text
# in UTF-8).
ENCODING     = UTF8
NO_LOCALE    = 1
TAP_TESTS    = 1
PROVE_TESTS  = test/t/*.pl
# What the not-preloaded run leaves (PGXS's clean knows the others').
EXTRA_CLEAN  = output_not_preloaded/ tmp_check_not_preloaded/

HIREDIS_CFLAGS := $(shell pkg-config --cflags hiredis 2>/dev/null)
HIREDIS_LIBS   := $(shell pkg-config --libs hiredis 2>/dev/null)
PG_CPPFLAGS  = -I$(srcdir)/src $(HIREDIS_CFLAGS)
SHLIB_LINK   = $(HIREDIS_LIBS)

PG_CONFIG   ?= pg_config
PGXS        := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: rebuild everything when a header changes.
$(OBJS): $(wildcard $(srcdir)/src/*.h)

# After the include: Makefile.global sets PG_PROVE_FLAGS.  test/perl holds
# the Perl modules the TAP tests share (StampedeTest.pm); prove runs in
# $(srcdir).
PG_PROVE_FLAGS += -I test/perl

# Each part of installcheck alone.  installcheck runs pg_regress, the
# isolation tester and prove (PGXS's recipe), after the not-preloaded run,
# a prerequisite, since a recipe cannot be added to.
.PHONY: installcheck-regress installcheck-isolation installcheck-not-preloaded prove_installcheck
installcheck: installcheck-not-preloaded
installcheck-regress:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)
installcheck-isolation:
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION)
prove_installcheck:
	$(prove_installcheck)

# The error and hint a call gives without shared_preload_libraries: on an
# instance of its own, with its own output directory.
installcheck-not-preloaded:
	$(pg_regress_installcheck) --inputdir=test --outputdir=output_not_preloaded \
		--temp-instance=tmp_check_not_preloaded --temp-config=test/not_preloaded.conf \
		--load-extension=stampede --dbname=$(CONTRIB_TESTDB) not_preloaded

# initdb (run by pg_regress and TAP for their instances) refuses root: say so
# before anything starts.
installcheck installcheck-regress installcheck-isolation installcheck-not-preloaded prove_installcheck: | not-root
.PHONY: not-root
not-root:
	@if [ "$$(id -u)" -eq 0 ]; then \
		echo "The tests start their own PostgreSQL instances, which may not run as root."; \
		echo "Run make installcheck as an ordinary user (e.g. postgres) in a copy of this"; \
		echo "tree that user may write to, or run bash test/run.sh, which does that."; \
		exit 1; \
	fi
