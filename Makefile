# stampede: a query-result cache that runs each key's query at most once.
EXTENSION    = stampede
EXTVERSION   = 0.1
MODULE_big   = stampede
OBJS         = src/stampede.o src/guc.o src/stats.o src/codec.o src/entry_check.o src/secret.o src/store_local.o \
               src/identity.o src/changes.o src/invalidation.o src/query.o src/flight.o src/cache.o src/scan.o src/valkey.o src/outage.o src/lease.o
DATA         = sql/stampede--$(EXTVERSION).sql
PGFILEDESC   = "stampede - query-result cache with single flight"

REGRESS      = setup basic typed_jsonb scan bad_input types security identity tenants caller_state \
               rights ddl hidden_rights hidden_ddl transactions store stats
REGRESS_OPTS = --inputdir=. --load-extension=stampede
ISOLATION    = leader_waiters leader_fails leader_cancelled invalidate_during_fill \
               invalidate_in_transaction invalidate_in_trigger invalidate_old_snapshot \
               own_writes snapshot_isolation waiter_no_rights scoped_flight_error \
               lock_timeout_wait waiter_error_leak advisory_unlock leader_statement_timeout \
               max_wait_execute
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=stampede

HIREDIS_CFLAGS := $(shell pkg-config --cflags hiredis 2>/dev/null)
HIREDIS_LIBS   := $(shell pkg-config --libs hiredis 2>/dev/null)
PG_CPPFLAGS  = -I$(srcdir)/src $(HIREDIS_CFLAGS)
SHLIB_LINK   = $(HIREDIS_LIBS)

PG_CONFIG   ?= pg_config
PGXS        := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: rebuild everything when a header changes.
$(OBJS): $(wildcard $(srcdir)/src/*.h)
