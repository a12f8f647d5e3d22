/*-------------------------------------------------------------------------
 *
 * changes.c
 *	  When this server last saw the definition of what an entry read
 *	  change, so that DDL makes the entries that read it misses.
 *
 *	  PostgreSQL tells every backend of a change to a relation (columns,
 *	  policies, rules, triggers, rights, row security), a function or a
 *	  schema by a cache invalidation, after the change commits, on a
 *	  primary and, as WAL replays, on its replicas.  The backend that makes
 *	  a change notes, once it has committed, the WAL position it is at, in a
 *	  small shared table of one slot per hash bucket of objects (a collision
 *	  costs a refill, never a stale hit); a fill that started before that
 *	  commit (a function replaced: no lock keeps readers out) is stale.  On
 *	  a replica, each backend that takes a replayed invalidation in notes
 *	  it (see note_bucket).  An entry records the WAL position its query
 *	  started at; it is stale when anything it read changed after that.
 *
 *	  A change of a schema or a role (membership, BYPASSRLS) counts as a
 *	  change of everything.  Rows that answer privilege inquiries
 *	  (has_table_privilege('t', ...) names t in text) are stale after a
 *	  change of anything; rows of one session's own (pg_temp in its search
 *	  path) after anything that session saw change (a temporary table that
 *	  now shadows a name).
 *
 *	  WAL positions, not counters, so that the comparison holds for entries
 *	  another server of the same WAL stream wrote (a primary and its
 *	  replicas sharing a Valkey).  What happened before this server started
 *	  is unknown: everything counts as changed at its latest checkpoint.  A
 *	  hit first takes in the invalidations pending for its backend, as
 *	  running the query would when it locks what it reads.
 *
 *	  Without shared_preload_libraries the table is the backend's own, and
 *	  it notes what the backend takes in.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#if PG_VERSION_NUM >= 150000
#include "access/xlogrecovery.h"
#endif
#include "common/hashfn.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/shmem.h"
#include "utils/catcache.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "changes.h"
#include "compat.h"

#define CHANGE_BUCKETS 4096

typedef struct ChangeTable
{
	pg_atomic_uint64 everything;	/* a change of every object */
	pg_atomic_uint64 anything;	/* a change of any object */
	pg_atomic_uint64 bucket[CHANGE_BUCKETS];
} ChangeTable;

static ChangeTable *changes = NULL;

/* The last change this backend took in: its temporary objects' too. */
static uint64 seen_here = 0;

/* What this backend noted in its transaction, to note again at commit. */
static bool noted_everything = false;
static int	nnoted = 0;
static uint8 noted[CHANGE_BUCKETS / 8];

Size
StampedeChangesShmemSize(void)
{
	return MAXALIGN(sizeof(ChangeTable));
}

static void
changes_init(ChangeTable *table)
{
	pg_atomic_init_u64(&table->everything, 0);
	pg_atomic_init_u64(&table->anything, 0);
	for (int i = 0; i < CHANGE_BUCKETS; i++)
		pg_atomic_init_u64(&table->bucket[i], 0);
}

void
StampedeChangesShmemInit(void)
{
	bool		found;

	changes = ShmemInitStruct("stampede changes", sizeof(ChangeTable), &found);
	if (!found)
		changes_init(changes);
}

/* Where WAL is now, as this server sees it. */
static uint64
wal_now(void)
{
	return RecoveryInProgress() ? GetXLogReplayRecPtr(NULL) : GetXLogInsertRecPtr();
}

static bool backends_own = false;	/* not preloaded: changes is ours */

static ChangeTable *
change_table(void)
{
	if (changes == NULL)
	{
		/* Not preloaded: a table of this backend's own. */
		changes = MemoryContextAlloc(TopMemoryContext, sizeof(ChangeTable));
		changes_init(changes);
		backends_own = true;
	}
	/*
	 * Nothing is known of before this server (or backend) started: count
	 * everything as changed at the redo point of its latest checkpoint (or
	 * restartpoint), which comes after whatever committed before it started.
	 * Changes since then are noted by the backends that make them, at
	 * commit.  (Not the WAL position of now: a replica's rows, a little
	 * behind, would all look stale to its primary.)  A backend's own table
	 * knows nothing of before the library was loaded here (see
	 * StampedeChangesInit): the WAL position of then.
	 */
	if (pg_atomic_read_u64(&changes->everything) == 0)
	{
		uint64		expected = 0;

		(void) pg_atomic_compare_exchange_u64(&changes->everything, &expected,
											  Max(backends_own ? wal_now() : GetRedoRecPtr(), 1));
	}
	return changes;
}

static void
note_change(pg_atomic_uint64 *slot)
{
	uint64		now = wal_now();
	uint64		seen = pg_atomic_read_u64(slot);

	while (seen < now && !pg_atomic_compare_exchange_u64(slot, &seen, now))
		;
}

static int
relation_bucket(Oid dbid, Oid relid)
{
	return (int) (hash_combine(murmurhash32(dbid), murmurhash32(relid)) % CHANGE_BUCKETS);
}

static int
cache_bucket(int cacheid, uint32 hashvalue)
{
	return (int) (hash_combine(murmurhash32((uint32) cacheid + 0x10000), hashvalue) % CHANGE_BUCKETS);
}

static void
note_now(int bucket)
{
	note_change(&changes->anything);
	if (bucket < 0)
		note_change(&changes->everything);
	else
		note_change(&changes->bucket[bucket]);
}

/*
 * A change of everything (-1) or of the objects of one bucket, as an
 * invalidation tells this backend.  When it came is not when it happened:
 * a backend takes invalidations in at its next transaction or lock, maybe
 * long after, and noting them then would make every entry filled in
 * between look stale.  So on a primary, where every change is made by a
 * backend of this server that notes it at its commit (changes_xact_callback),
 * the others note nothing; only a replica, whose changes come from replay,
 * and a backend without preloading (its table is its own) note what they
 * take in, when they take it in.  A reset (the backend fell behind and lost
 * invalidations) is noted by whoever gets it: nobody knows what it hid.
 */
static void
note_bucket(int bucket, bool reset)
{
	seen_here = wal_now();
	if (reset || backends_own || RecoveryInProgress())
		note_now(bucket);
	if (!IsTransactionState())
		return;
	if (bucket < 0)
		noted_everything = true;
	else if (!(noted[bucket / 8] & (1 << (bucket % 8))))
	{
		noted[bucket / 8] |= 1 << (bucket % 8);
		nnoted++;
	}
}

/* At commit, what the transaction changed, as of now: after its commit. */
static void
changes_xact_callback(XactEvent event, void *arg)
{
	StampedeForgetDeadFrames();
	if (!noted_everything && nnoted == 0)
		return;
	if ((event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT) && changes != NULL)
	{
		if (noted_everything)
			note_now(-1);
		for (int i = 0; i < CHANGE_BUCKETS && nnoted > 0; i++)
		{
			if (noted[i / 8] & (1 << (i % 8)))
				note_now(i);
		}
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		noted_everything = false;
		nnoted = 0;
		memset(noted, 0, sizeof(noted));
	}
}

static void
relcache_changed(Datum arg, Oid relid)
{
	StampedeForgetDeadFrames();
	if (changes == NULL || !IsUnderPostmaster || MyDatabaseId == InvalidOid)
		return;
	note_bucket(OidIsValid(relid) ? relation_bucket(MyDatabaseId, relid) : -1, !OidIsValid(relid));
}

static void
syscache_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	StampedeForgetDeadFrames();
	if (changes == NULL || !IsUnderPostmaster)
		return;
	/*
	 * A schema's change (rename, rights, drop) moves what names resolve to;
	 * a role's (membership, BYPASSRLS, ...) what policies and rights let
	 * through.
	 */
	note_bucket(hashvalue == 0 || cacheid == NAMESPACEOID || cacheid == AUTHOID ||
				cacheid == AUTHMEMROLEMEM ? -1 : cache_bucket(cacheid, hashvalue),
				hashvalue == 0);
}

/* In every process that loads stampede (inherited from the postmaster). */
void
StampedeChangesInit(void)
{
	CacheRegisterRelcacheCallback(relcache_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, syscache_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, syscache_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, syscache_changed, (Datum) 0);
	/* Types and constraints (ALTER TYPE, ALTER DOMAIN): "anything" changed. */
	CacheRegisterSyscacheCallback(TYPEOID, syscache_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(CONSTROID, syscache_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, syscache_changed, (Datum) 0);
	RegisterXactCallback(changes_xact_callback, NULL);

	/*
	 * Not preloaded: loaded in this backend now, and the callbacks above
	 * hear of every change from now on.  The backend's own table starts
	 * here, not at its first check, which for a waiter comes after its
	 * leader's fill began: that fill's rows would look stale to it.
	 */
	if (!process_shared_preload_libraries_in_progress)
		(void) change_table();
}

/* The WAL position a fill starting now records. */
uint64
StampedeChangesNow(void)
{
	(void) change_table();
	return wal_now();
}

/* Say why an entry is stale, for whoever wonders why a key ran again. */
static bool
changed(const char *what, Oid oid, uint64 at, uint64 fill_lsn)
{
	elog(DEBUG1, "stampede: entry filled at %X/%X is stale: %s %u (or one sharing its slot) changed at %X/%X",
		 LSN_FORMAT_ARGS((XLogRecPtr) fill_lsn), what, oid, LSN_FORMAT_ARGS((XLogRecPtr) at));
	return true;
}

/*
 * Did anything reads lists change after fill_lsn, as far as this server
 * knows?  Takes in this backend's pending invalidations first.
 */
bool
StampedeChangedSince(uint64 fill_lsn, const StampedeReadSet *reads, Oid dbid)
{
	ChangeTable *table = change_table();
	ListCell   *lc;

	AcceptInvalidationMessages();
	/* Rows of this session alone: a temporary table may shadow a name now. */
	if (reads->session_only && seen_here > fill_lsn)
		return changed("anything this session saw", InvalidOid, seen_here, fill_lsn);
	if (reads->any_change && pg_atomic_read_u64(&table->anything) > fill_lsn)
		return changed("anything", InvalidOid, pg_atomic_read_u64(&table->anything), fill_lsn);
	if (pg_atomic_read_u64(&table->everything) > fill_lsn)
		return changed("everything", InvalidOid, pg_atomic_read_u64(&table->everything), fill_lsn);
	foreach(lc, reads->rels)
	{
		Oid			relid = ((StampedeReadRel *) lfirst(lc))->relid;
		uint64		at = pg_atomic_read_u64(&table->bucket[relation_bucket(dbid, relid)]);

		if (at > fill_lsn)
			return changed("relation", relid, at, fill_lsn);
	}
	foreach(lc, reads->funcs)
	{
		uint32		h = GetSysCacheHashValue1(PROCOID, ObjectIdGetDatum(lfirst_oid(lc)));
		uint64		at = pg_atomic_read_u64(&table->bucket[cache_bucket(PROCOID, h)]);

		if (at > fill_lsn)
			return changed("function", lfirst_oid(lc), at, fill_lsn);
	}
	return false;
}
