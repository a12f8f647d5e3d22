/*-------------------------------------------------------------------------
 *
 * flight.c
 *	  Single flight on one server: of all the callers that miss the same key
 *	  at once, one leads (runs the query, stores the rows) and the others
 *	  wait for it, then read the stored rows.
 *
 *	  Leading is holding a session-level advisory lock on the key in
 *	  ExclusiveLock mode (visible in pg_locks as an advisory lock whose
 *	  objsubid is STAMPEDE_LOCK_CLASS).  Waiters block on the same lock in
 *	  ShareLock mode: PostgreSQL wakes them all at once when the leader lets
 *	  go, a cancel or statement_timeout ends their wait at once, the deadlock
 *	  detector sees them, and a leader that dies lets go by itself.
 *
 *	  Beside the lock, a small shared table of flights says how the last
 *	  flight of a key ended (rows stored, too large to store, the query's own
 *	  error, or abandoned), so that waiters do not each run a failing query
 *	  in turn: they raise the leader's error instead.  The flight is marked
 *	  running together with taking the lock, and ended together with letting
 *	  it go, both under the flight table's LWLock, so a waiter that failed
 *	  to take the lock always finds the flight it waits for.
 *
 *	  A leader always ends its flight: normally, in PG_CATCH on an error, in
 *	  a (sub)transaction abort callback if that failed, and in a
 *	  before_shmem_exit callback if the backend exits (pg_terminate_backend).
 *
 *	  Lock order: flight LWLock, then the store's LWLock.
 *
 *	  Without shared_preload_libraries there is no flight table, no advisory
 *	  lock of ours and no local store: with Valkey configured, each backend
 *	  goes straight to the Valkey lock ("leads" locally without a lock), and
 *	  when Valkey cannot be used it runs the query without storing it.
 *
 *	  With Valkey, the local leader then leads or waits across servers
 *	  (remote.c runs the protocol; this file decides what the call does
 *	  with what it finds).  Entries are read through store.c, whatever the
 *	  store; how a wait ends (max_wait, lock_timeout, the leader's error)
 *	  is wait.c's, the same for both kinds of wait.
 *
 *	  The file reads top-down: the flight table, ending flights, leading and
 *	  waiting on this server, serving an entry, running the query, the
 *	  leader's error, the flight across servers, the leader, and the entry
 *	  points StampedeServe and StampedeInvalidate.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "changes.h"
#include "codec.h"
#include "compat.h"
#include "flight.h"
#include "guc.h"
#include "invalidation.h"
#include "locks.h"
#include "outage.h"
#include "query.h"
#include "remote.h"
#include "stats.h"
#include "store.h"
#include "wait.h"

/* advisory lock field4; the SQL advisory lock functions use 1 and 2 */
#define STAMPEDE_LOCK_CLASS		0x5354
#define MAX_NESTED_FLIGHTS		16
#define FLIGHT_TEXT_LEN			1024

typedef enum FlightState
{
	FLIGHT_IDLE,				/* no flight yet */
	FLIGHT_RUNNING,
	FLIGHT_DONE,				/* rows stored (unless invalidated meanwhile) */
	FLIGHT_UNCACHEABLE,			/* rows too large to store */
	FLIGHT_FAILED,				/* the query's own error, below */
	FLIGHT_ABANDONED			/* leader cancelled, terminated, or lacked rights */
} FlightState;

typedef struct Flight
{
	StampedeStoreKey key;		/* hash key: must be first */
	uint32		gen;			/* bumped by each new leader */
	FlightState state;
	int			leader_pid;
	bool		invalidated;	/* stampede_invalidate ran during the flight */
	TimestampTz finished_at;
	int			sqlerrcode;
	char		message[FLIGHT_TEXT_LEN];
	char		detail[FLIGHT_TEXT_LEN];
	char		hint[FLIGHT_TEXT_LEN / 2];
} Flight;

typedef struct FlightShared
{
	LWLock	   *lock;
	int			max_flights;
} FlightShared;

/* A flight this backend leads. */
typedef struct LedFlight
{
	StampedeStoreKey key;
	LOCKTAG		tag;
	uint32		gen;
	int			nest_level;
	uint64		outage;			/* the outage epoch when it began (outage.c) */
	StampedeRemoteFlight *remote;	/* its Valkey lock, while held */
} LedFlight;

typedef enum ServeResult
{
	SERVE_MISS,
	SERVE_MISS_SCOPED,			/* the call's rows are kept per scope; none for us */
	SERVE_SERVED
} ServeResult;

static FlightShared *flight_shared = NULL;
static HTAB *flights = NULL;

static LedFlight led[MAX_NESTED_FLIGHTS];
static int	nled = 0;
static bool callbacks_registered = false;

static int
flight_table_size(void)
{
	return 4 * StampedeMaxBackends() + 16;
}

Size
StampedeFlightShmemSize(void)
{
	return add_size(MAXALIGN(sizeof(FlightShared)),
					hash_estimate_size(flight_table_size(), sizeof(Flight)));
}

void
StampedeFlightShmemInit(void)
{
	bool		found;
	HASHCTL		info;

	flight_shared = ShmemInitStruct("stampede flights", sizeof(FlightShared), &found);
	if (!found)
	{
		flight_shared->lock = StampedeLock(STAMPEDE_LOCK_FLIGHTS);
		flight_shared->max_flights = flight_table_size();
	}
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(StampedeStoreKey);
	info.entrysize = sizeof(Flight);
	flights = ShmemInitHash("stampede flight table",
							flight_table_size(), flight_table_size(),
							&info, HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
}

static uint64
key_hash(StampedeKind kind, const char *key, int keylen)
{
	return hash_bytes_extended((const unsigned char *) key, keylen, (uint64) kind);
}

static void
flight_locktag(const StampedeStoreKey *key, LOCKTAG *tag)
{
	uint64		h = hash_bytes_extended((const unsigned char *) &key->variant,
										2 * sizeof(uint64), key->hash);

	SET_LOCKTAG_ADVISORY(*tag, key->dbid, (uint32) (h >> 32), (uint32) h,
						 STAMPEDE_LOCK_CLASS);
}

/* The flight of key, made if missing by reusing the longest-finished one. */
static Flight *
flight_slot(const StampedeStoreKey *key)
{
	Flight	   *flight;
	bool		found;

	flight = hash_search(flights, key, HASH_FIND, NULL);
	if (flight != NULL)
		return flight;
	if (hash_get_num_entries(flights) >= flight_shared->max_flights)
	{
		HASH_SEQ_STATUS status;
		Flight	   *oldest = NULL;

		hash_seq_init(&status, flights);
		while ((flight = hash_seq_search(&status)) != NULL)
		{
			if (flight->state != FLIGHT_RUNNING &&
				(oldest == NULL || flight->finished_at < oldest->finished_at))
				oldest = flight;
		}
		if (oldest == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("too many stampede keys are being computed at once")));
		hash_search(flights, &oldest->key, HASH_REMOVE, NULL);
	}
	flight = hash_search(flights, key, HASH_ENTER, &found);
	flight->gen = 0;
	flight->state = FLIGHT_IDLE;
	flight->leader_pid = 0;
	flight->invalidated = false;
	flight->finished_at = 0;
	flight->sqlerrcode = 0;
	flight->message[0] = flight->detail[0] = flight->hint[0] = '\0';
	return flight;
}

/* ---- ending flights whatever happens ---- */

/*
 * End the innermost flight this backend leads: store its values unless the
 * key was invalidated meanwhile, record how it ended, and let the waiters
 * go.  Returns how it ended: FLIGHT_DONE becomes FLIGHT_UNCACHEABLE when a
 * value did not fit in the store.
 */
static FlightState
flight_end(FlightState outcome, ErrorData *edata, StampedePut *puts, int nputs,
		   TimestampTz expires_at)
{
	LedFlight  *mine = &led[nled - 1];
	Flight	   *flight;

	if (flight_shared == NULL)
	{
		/* Not preloaded: nowhere local to store, no lock to let go. */
		nled--;
		return nputs > 0 ? FLIGHT_UNCACHEABLE : outcome;
	}
	LWLockAcquire(flight_shared->lock, LW_EXCLUSIVE);
	flight = hash_search(flights, &mine->key, HASH_FIND, NULL);
	if (flight != NULL && flight->gen == mine->gen)
	{
		for (int i = 0; i < nputs && !flight->invalidated; i++)
		{
			if (!StampedeStorePutLocal(&puts[i], expires_at, mine->outage))
				outcome = FLIGHT_UNCACHEABLE;
		}
		flight->state = outcome;
		flight->finished_at = GetCurrentTimestamp();
		if (edata != NULL)
		{
			flight->sqlerrcode = edata->sqlerrcode;
			strlcpy(flight->message, edata->message ? edata->message : "", FLIGHT_TEXT_LEN);
			strlcpy(flight->detail, edata->detail ? edata->detail : "", FLIGHT_TEXT_LEN);
			strlcpy(flight->hint, edata->hint ? edata->hint : "", FLIGHT_TEXT_LEN / 2);
		}
	}
	if (StampedeLockHeldByMe(&mine->tag, ExclusiveLock))
		LockRelease(&mine->tag, ExclusiveLock, true);
	nled--;
	LWLockRelease(flight_shared->lock);
	return outcome;
}

/*
 * A query may release session advisory locks from inside a function
 * (pg_advisory_unlock_all()), the leader's own among them: its waiters were
 * then let go while it ran.  Its rows are not stored as if it had led.
 */
static void
raise_lock_released(int leader_pid)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("stampede query released the lock of its own single flight"),
			 errdetail("Process %d, which runs it, released session advisory locks (pg_advisory_unlock_all() or the like).",
					   leader_pid),
			 errhint("Do not release session advisory locks inside a cached query.")));
}

static void
flight_check_still_held(void)
{
	LedFlight  *mine = &led[nled - 1];

	if (flight_shared != NULL && !StampedeLockHeldByMe(&mine->tag, ExclusiveLock))
		raise_lock_released(MyProcPid);
}

/* The pid of the backend leading the flight of key now, or 0. */
static int
flight_leader_pid(const StampedeStoreKey *key)
{
	Flight	   *flight;
	int			pid = 0;

	LWLockAcquire(flight_shared->lock, LW_SHARED);
	flight = hash_search(flights, key, HASH_FIND, NULL);
	if (flight != NULL && flight->state == FLIGHT_RUNNING)
		pid = flight->leader_pid;
	LWLockRelease(flight_shared->lock);
	return pid;
}

/* Abandon the flights led at nest_level or deeper: a safety net. */
static void
flight_abandon_from(int nest_level)
{
	if (flight_shared != NULL && LWLockHeldByMe(flight_shared->lock))
		LWLockRelease(flight_shared->lock);
	while (nled > 0 && led[nled - 1].nest_level >= nest_level)
	{
		/* Other servers' waiters must not wait for the lock to expire. */
		if (led[nled - 1].remote != NULL)
			StampedeRemoteAbandon(led[nled - 1].remote, NULL);
		flight_end(FLIGHT_ABANDONED, NULL, NULL, 0, 0);
	}
}

static void
flight_xact_callback(XactEvent event, void *arg)
{
	StampedeForgetDeadFrames();
	if (nled > 0 && (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
					 event == XACT_EVENT_COMMIT))
		flight_abandon_from(0);
}

static void
flight_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	StampedeForgetDeadFrames();
	if (nled > 0 && event == SUBXACT_EVENT_ABORT_SUB)
		flight_abandon_from(GetCurrentTransactionNestLevel());
}

static void
flight_exit_callback(int code, Datum arg)
{
	StampedeForgetDeadFrames();
	flight_abandon_from(0);
}

/* Before a backend first leads, make sure its flights end whatever happens. */
static void
flight_register_callbacks(void)
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(flight_xact_callback, NULL);
	RegisterSubXactCallback(flight_subxact_callback, NULL);
	before_shmem_exit(flight_exit_callback, (Datum) 0);
	callbacks_registered = true;
}

/* ---- leading and waiting ---- */

/*
 * Lead the flight of key, or learn that another backend leads it.  When
 * another leads, *gen is the generation of its flight, to read how it ended.
 */
static bool
flight_try_lead(const StampedeStoreKey *key, uint32 *gen)
{
	LOCKTAG		tag;
	Flight	   *flight;

	/* Per key, whatever the variant: a call inside its own key's query. */
	for (int i = 0; i < nled; i++)
	{
		if (led[i].key.dbid == key->dbid && led[i].key.hash == key->hash)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_RECURSION),
					 errmsg("stampede query calls itself for the key it is computing")));
	}
	if (nled >= MAX_NESTED_FLIGHTS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("stampede calls are nested more than %d deep", MAX_NESTED_FLIGHTS)));
	flight_register_callbacks();

	flight_locktag(key, &tag);
	if (flight_shared == NULL)
	{
		/* Not preloaded: no local coalescing; Valkey's lock decides. */
		memset(&led[nled], 0, sizeof(LedFlight));
		led[nled].key = *key;
		led[nled].nest_level = GetCurrentTransactionNestLevel();
		nled++;
		*gen = 0;
		return true;
	}
	LWLockAcquire(flight_shared->lock, LW_EXCLUSIVE);
	flight = flight_slot(key);
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
	{
		*gen = flight->state == FLIGHT_RUNNING ? flight->gen : 0;
		LWLockRelease(flight_shared->lock);
		return false;
	}
	if (flight->state == FLIGHT_RUNNING)
	{
		int			pid = flight->leader_pid;

		/*
		 * The flight runs, yet its lock was free: its leader released
		 * session advisory locks from inside its query (a function calling
		 * pg_advisory_unlock_all()).  Running it too is what single flight
		 * is there to prevent.
		 */
		LockRelease(&tag, ExclusiveLock, true);
		LWLockRelease(flight_shared->lock);
		raise_lock_released(pid);
	}
	flight->gen++;
	flight->state = FLIGHT_RUNNING;
	flight->leader_pid = MyProcPid;
	flight->invalidated = false;
	led[nled].key = *key;
	led[nled].tag = tag;
	led[nled].gen = flight->gen;
	led[nled].nest_level = GetCurrentTransactionNestLevel();
	led[nled].outage = StampedeOutageEpoch();
	led[nled].remote = NULL;
	nled++;
	*gen = flight->gen;
	LWLockRelease(flight_shared->lock);
	return true;
}

/* Block on the leader's lock until it lets go; no deadline. */
static void
flight_block(const LOCKTAG *tag)
{
	LockAcquire(tag, ShareLock, true, false);
	LockRelease(tag, ShareLock, true);
}

/*
 * Wait for the leader of key to let go, until deadline (0: no deadline).
 * Returns false when the deadline passed first.  Cancel, statement_timeout
 * and termination end the wait at once with their usual error.
 *
 * A lock wait has no deadline of its own but lock_timeout, so a deadline is
 * set as lock_timeout within a subtransaction, which also cleans up the
 * aborted wait when it fires.
 */
static bool
flight_wait(const StampedeStoreKey *key, TimestampTz deadline)
{
	LOCKTAG		tag;
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	long		remaining_ms;
	bool		ours;
	bool		granted = true;
	char		setting[32];

	flight_locktag(key, &tag);
	if (deadline == 0)
	{
		flight_block(&tag);
		return true;
	}

	remaining_ms = (deadline - GetCurrentTimestamp()) / 1000;
	if (remaining_ms <= 0)
		return false;
	remaining_ms = Min(remaining_ms, INT_MAX);
	ours = LockTimeout == 0 || remaining_ms <= LockTimeout;
	snprintf(setting, sizeof(setting), "%ld", ours ? remaining_ms : (long) LockTimeout);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		int			nestlevel = NewGUCNestLevel();

		(void) set_config_option("lock_timeout", setting, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		flight_block(&tag);
		AtEOXact_GUC(true, nestlevel);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		StampedeForgetDeadFrames();
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		if (!(ours && edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE))
			ReThrowError(edata);
		FreeErrorData(edata);
		granted = false;
	}
	PG_END_TRY();
	return granted;
}

/*
 * How the flight a waiter waited for ended, if it is still the flight of
 * that generation; FLIGHT_IDLE when that is no longer known.
 */
static FlightState
flight_outcome(const StampedeStoreKey *key, uint32 gen, StampedeLeaderError *error)
{
	Flight	   *flight;
	FlightState state = FLIGHT_IDLE;

	if (gen == 0)
		return FLIGHT_IDLE;
	LWLockAcquire(flight_shared->lock, LW_SHARED);
	flight = hash_search(flights, key, HASH_FIND, NULL);
	if (flight != NULL && flight->gen == gen)
	{
		state = flight->state;
		if (state == FLIGHT_FAILED)
		{
			error->sqlerrcode = flight->sqlerrcode;
			error->message = pstrdup(flight->message);
			error->detail = flight->detail[0] ? pstrdup(flight->detail) : NULL;
			error->hint = flight->hint[0] ? pstrdup(flight->hint) : NULL;
			error->leader_pid = flight->leader_pid;
		}
	}
	LWLockRelease(flight_shared->lock);
	return state;
}

/* ---- serving ---- */

/* The key is not NUL-terminated: messages get a terminated copy. */
static char *
key_for_message(const StampedeRequest *req)
{
	return pnstrdup(req->key, req->keylen);
}

/* Do rows of indesc fit outdesc, whose dropped columns they do not have? */
static bool
row_types_match(TupleDesc indesc, TupleDesc outdesc)
{
	int			j = 0;

	for (int i = 0; i < outdesc->natts; i++)
	{
		Form_pg_attribute out = TupleDescAttr(outdesc, i);
		Form_pg_attribute in;

		if (out->attisdropped)
			continue;
		if (j >= indesc->natts)
			return false;
		in = TupleDescAttr(indesc, j++);
		if (in->atttypid != out->atttypid ||
			(out->atttypmod >= 0 && out->atttypmod != in->atttypmod))
			return false;
	}
	return j == indesc->natts;
}

/*
 * Hand req the rows of an entry whose identity it matched, if the caller may
 * have them now: the rights running the query would check, and nothing it
 * read changed since (a miss otherwise).  A row type that does not match the
 * caller's is a miss too: running the query says what is wrong (42804), or
 * replaces rows of a definition that changed.
 */
static bool
serve_entry(StampedeRequest *req, const StampedeEntry *entry, bool shared, bool untrusted)
{
	StampedeReadSet reads;
	TupleConversionMap *map = NULL;

	StampedeCheckSchemaUsage(req->schemas);
	/* Another cluster's OIDs mean nothing here: what would the query read here? */
	if (entry->foreign)
	{
		StampedeQueryReads(req->query, &reads);
		if (reads.scope != STAMPEDE_SCOPE_SHARED || reads.unshareable != NULL)
			return false;
	}
	else
	{
		StampedeEntryReadSet(entry, &reads);
		if (StampedeChangedSince(entry->fill_lsn, &reads, entry->dbid))
			return false;
	}
	if (!StampedeCheckReadRights(&reads, shared))
		return false;
	if (!StampedeEntryMatchesDesc(entry, req->outdesc))
	{
		TupleDesc	indesc = StampedeEntryTupleDesc(entry);

		if (indesc == NULL || !row_types_match(indesc, req->outdesc))
			return false;
		/* Rows from Valkey are read only once each value is known whole. */
		if (untrusted && !StampedeEntryRowsValidFor(entry, indesc))
			return false;
		map = StampedeRowTypeMap(indesc, req->outdesc, key_for_message(req));
	}
	else if (untrusted && !StampedeEntryRowsValidFor(entry, req->outdesc))
		return false;
	if (req->take_entry && map == NULL)
	{
		req->entry_data = (char *) entry->data;
		req->entry_len = entry->len;
		return true;
	}
	if (StampedeEntryToTuplestore(entry, req->outdesc, map, req->tupstore))
		return true;
	tuplestore_clear(req->tupstore);
	return false;
}

/* The stub says the rows are kept per scope: answer req from its scope's. */
static ServeResult serve_from_store(StampedeRequest *req, const StampedeStoreKey *skey);

/*
 * Is entry the rows (or stub) of the call req makes, with identity id?
 * Written here: the same database and the whole local identity.  Written by
 * another cluster: only where the namespace was set on purpose (the
 * default one names the cluster), the same portable identity, with types
 * whose values mean the same here, and not kept per scope (role OIDs are
 * that cluster's); rights are then checked on what the query would read
 * here (serve_entry).
 */
static bool
entry_is_for(const StampedeRequest *req, const StampedeEntry *entry,
			 const StampedeEntryId *id, bool shared)
{
	if (!StampedeEntryKeyEquals(entry, req->key, req->keylen))
		return false;
	if (!entry->foreign)
		return entry->dbid == MyDatabaseId && StampedeIdEquals(entry->local_id, id->local);
	return stampede_namespace != NULL && stampede_namespace[0] != '\0' && shared &&
		!(entry->flags & STAMPEDE_ENTRY_STUB) &&
		StampedeIdEquals(entry->portable_id, id->portable) &&
		StampedeEntryTypesPortable(entry);
}

/*
 * Answer req from an entry's bytes, if they hold rows for it.  A stub sends
 * the call on to the rows of its scope, whose address it leaves in req.
 */
static ServeResult
serve_bytes(StampedeRequest *req, const StampedeStoreKey *skey, char *data, Size len,
			bool from_valkey, StampedeTrust trust)
{
	StampedeEntry entry;
	ServeResult result = SERVE_MISS;
	bool		shared = skey->scope == 0;

	if (StampedeEntryParse(data, len, &entry) &&
		entry_is_for(req, &entry, shared ? &req->identity.id : &req->scope_id, shared))
	{
		if ((entry.flags & STAMPEDE_ENTRY_STUB) && shared)
		{
			StampedeStoreKey scopekey = *skey;
			StampedeScope scope = (entry.flags & STAMPEDE_ENTRY_STUB_SETTINGS) ?
				STAMPEDE_SCOPE_SETTINGS : STAMPEDE_SCOPE_ROLE;

			scopekey.scope = StampedeScopeIdentity(&req->identity.id, scope, &req->scope_id);
			req->scope_key = scopekey.scope;
			result = serve_from_store(req, &scopekey);
			if (result == SERVE_MISS)
				result = SERVE_MISS_SCOPED;
		}
		else if (!(entry.flags & STAMPEDE_ENTRY_STUB) &&
				 serve_entry(req, &entry, shared, trust != TRUST_CHECKED))
		{
			result = SERVE_SERVED;
			StampedeStoreServed(data, len, from_valkey, trust);
		}
	}
	if (data != req->entry_data)
		pfree(data);
	return result;
}

/* Answer req from the store, if the store has rows for it. */
static ServeResult
serve_from_store(StampedeRequest *req, const StampedeStoreKey *skey)
{
	Size		len;
	bool		from_valkey;
	StampedeTrust trust;
	char	   *data = StampedeStoreRead(skey, &len, &from_valkey, &trust);

	if (data == NULL)
		return SERVE_MISS;
	return serve_bytes(req, skey, data, len, from_valkey, trust);
}

/* ---- running the query ---- */

static TimestampTz
expiry_time(int64 ttl_ms)
{
	/* Cap at about a century, far inside TimestampTz's range. */
	return GetCurrentTimestamp() + Min(ttl_ms, INT64CONST(3155760000000)) * 1000;
}

/* Why the leader's rows were returned but not stored. */
static void
notice_not_stored(const StampedeRequest *req, const StampedeRunResult *result)
{
	if (result->saw_own_writes)
		ereport(NOTICE,
				(errmsg("result of stampede key \"%s\" is not cached: this transaction has written",
						key_for_message(req)),
				 errdetail("Rows computed after a write may show the transaction's uncommitted changes, which other sessions must not see; the query ran in the transaction's own snapshot."),
				 errhint("Read through stampede before writing, or in another transaction.")));
	else if (result->superseded)
		ereport(NOTICE,
				(errmsg("result of stampede key \"%s\" is not cached: the key was invalidated by a transaction its snapshot does not see",
						key_for_message(req)),
				 errdetail("The rows were computed before a change that invalidated the key; they were returned but not stored.")));
	else if (result->reads.unshareable != NULL)
		ereport(NOTICE,
				(errmsg("result of stampede key \"%s\" is not cached: %s",
						key_for_message(req), _(result->reads.unshareable)),
				 errdetail("Its rows may differ for another session, so they were returned but not stored."),
				 errhint("See \"Who sees what\" in stampede's README for what can be shared.")));
	else
		ereport(NOTICE,
				(errmsg("result of stampede key \"%s\" is too large to cache",
						key_for_message(req)),
				 result->entry == NULL ?
				 errdetail("It exceeds stampede.max_entry_size (%d kB); it was returned but not stored.",
						   stampede_max_entry_size_kb) :
				 errdetail("Its %zu bytes do not fit in stampede.local_cache_size (%d kB); it was returned but not stored.",
						   result->entry_len, stampede_local_cache_size_kb),
				 errhint("Raise stampede.max_entry_size or stampede.local_cache_size, or cache a smaller result.")));
}

/*
 * Run the query for the caller alone, in its transaction: nothing is
 * stored.  Says why when the transaction has written (see StampedeServe).
 */
static void
run_uncached(StampedeRequest *req)
{
	StampedeRunResult result;

	StampedeRunQuery(req->query, req->key, req->keylen, NULL, req->outdesc,
					 req->tupstore, 0, &result);
	StampedeStatsCount(STAT_EXECUTIONS);
	stampede_last_call = STAMPEDE_CALL_RAN;
	if (result.saw_own_writes)
		notice_not_stored(req, &result);
}

/*
 * Has snapshot seen every invalidation of the key of skey: this server's,
 * and, when this backend holds the key's Valkey lock, every server's (see
 * StampedeRemoteInvalidationsSeen)?
 */
static bool
invalidations_seen(const StampedeStoreKey *skey, StampedeRemoteFlight *rf, Snapshot snapshot)
{
	if (snapshot == NULL || !StampedeInvalSeenBy(skey->dbid, skey->hash, snapshot))
		return false;
	return StampedeRemoteInvalidationsSeen(rf, snapshot);
}

/* ---- the leader's error, in a waiter ---- */

/*
 * Errors that say something about the leader rather than the query: its
 * cancel, timeout or termination, its transaction, its rights, its column
 * list.  A waiter takes over instead of raising them.
 */
static bool
error_belongs_to_leader(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_OPERATOR_INTERVENTION:
		case ERRCODE_TRANSACTION_ROLLBACK:
		case ERRCODE_INVALID_TRANSACTION_STATE:
		case ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE:
			return true;
	}
	return sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE ||
		sqlerrcode == ERRCODE_DATATYPE_MISMATCH ||
		sqlerrcode == ERRCODE_QUERY_CANCELED;
}

/*
 * May a waiter raise the error its leader's query raised?  Its text may
 * show values the leader read: only when the query's rows would be the
 * same for the waiter (shared, not per role or settings: row-level
 * security, a function of a user; or the flight was its scope's own,
 * same_scope) and the waiter may read what it reads.
 * Raises the error running the query would give it instead (parse analysis
 * here raises missing objects and schema rights, the check of the read set
 * 42501); false when the waiter must run the query itself.
 */
static bool
leaders_error_is_callers(const StampedeRequest *req, bool same_scope)
{
	StampedeReadSet reads;

	StampedeCheckSchemaUsage(req->schemas);
	StampedeQueryReads(req->query, &reads);
	if (!same_scope && (reads.scope != STAMPEDE_SCOPE_SHARED || reads.unshareable != NULL))
		return false;
	(void) StampedeCheckReadRights(&reads, false);
	return true;
}

/* ---- single flight across servers, through Valkey ---- */

typedef enum RemoteResult
{
	REMOTE_FALLBACK,			/* Valkey failed: go on as the local leader */
	REMOTE_LEAD,				/* this backend holds the Valkey lock */
	REMOTE_SERVED,				/* another server's rows are in req->tupstore */
	REMOTE_RUN_UNCACHED			/* max_wait passed, or the leader could not
								 * store its rows: run, do not store */
} RemoteResult;

/*
 * Take the key's Valkey lock, or wait for the server that holds it, looking
 * each round for its rows or its error (remote.c says what a round found).
 */
static RemoteResult
lead_or_wait_remote(StampedeRequest *req, const StampedeStoreKey *skey, StampedeRemoteFlight *rf)
{
	char	   *key = key_for_message(req);

	StampedeRemoteBegin(rf, skey);
	for (;;)
	{
		StampedeRemoteFound found;
		StampedeRemoteStep step = StampedeRemoteTry(rf, &found);

		if (step == REMOTE_ROWS)
		{
			if (found.trust != TRUST_REFUSED &&
				serve_bytes(req, skey, found.data, found.len, true, found.trust) == SERVE_SERVED)
				return REMOTE_SERVED;
			/* Rows we cannot use (damaged, another cluster's): replace them. */
			step = StampedeRemoteTakeOver(rf);
		}
		switch (step)
		{
			case REMOTE_FAILED:
				return REMOTE_FALLBACK;
			case REMOTE_LED:
				return REMOTE_LEAD;
			case REMOTE_UNCACHEABLE:
				return REMOTE_RUN_UNCACHED;
			case REMOTE_ERROR:
				if (!leaders_error_is_callers(req, false))
					return REMOTE_RUN_UNCACHED;
				StampedeRaiseLeadersError(key, &found.error);
				break;
			case REMOTE_ROWS:
			case REMOTE_HELD:
				break;
		}
		if (!StampedeRemoteWait(rf, key))
			return REMOTE_RUN_UNCACHED;
	}
}

/* ---- the leader ---- */

/*
 * The leader's part: double-check, run, store, end the flight.  skey is the
 * call's own store key (scope 0), fkey the flight's (a scope's, when a stub
 * said the rows are kept per scope).
 */
static void
lead(StampedeRequest *req, const StampedeStoreKey *skey, const StampedeStoreKey *fkey)
{
	MemoryContext callercxt = CurrentMemoryContext;

	/* In memory, not in a local that longjmp may restore stale: see PG_CATCH. */
	StampedeRemoteFlight *rf = palloc0(sizeof(StampedeRemoteFlight));

	rf->lease = -1;

	PG_TRY();
	{
		StampedeRunResult result;
		StampedePut	puts[2];
		int			nputs = 0;
		char	   *stub;
		Size		stub_len;
		RemoteResult remote = REMOTE_FALLBACK;
		bool		stored;

		if (serve_from_store(req, skey) == SERVE_SERVED)
		{
			stampede_last_call = STAMPEDE_CALL_WAITED;
			flight_end(FLIGHT_DONE, NULL, NULL, 0, 0);
			goto done;
		}

		/* Across servers: one leader between all that share the Valkey. */
		if (StampedeRemoteReadyFor(skey))
		{
			remote = lead_or_wait_remote(req, skey, rf);
			StampedeRemoteEndWait();
			if (remote == REMOTE_LEAD)
				led[nled - 1].remote = rf;
			if (remote == REMOTE_FALLBACK)
				StampedeStatsCount(STAT_FALLBACKS);
		}
		if (remote == REMOTE_SERVED)
		{
			stampede_last_call = STAMPEDE_CALL_WAITED;
			flight_end(FLIGHT_DONE, NULL, NULL, 0, 0);
			goto done;
		}
		/* Not preloaded, and Valkey failed: there is no store to fall back to. */
		if (remote == REMOTE_RUN_UNCACHED ||
			(remote == REMOTE_FALLBACK && !StampedeStoreAvailable()))
		{
			run_uncached(req);
			flight_end(FLIGHT_UNCACHEABLE, NULL, NULL, 0, 0);
			goto done;
		}

		StampedeRunQuery(req->query, req->key, req->keylen, &req->identity,
						 req->outdesc, req->tupstore,
						 (Size) stampede_max_entry_size_kb * 1024, &result);
		StampedeStatsCount(STAT_EXECUTIONS);
		flight_check_still_held();

		/*
		 * Rows of a transaction that wrote may show its uncommitted changes;
		 * rows whose snapshot does not see an invalidation of the key are
		 * from before a change: both go to their caller only.
		 */
		if (result.saw_own_writes)
			result.entry = NULL;
		if (result.entry != NULL && !invalidations_seen(skey, rf, GetActiveSnapshot()))
		{
			result.entry = NULL;
			result.superseded = true;
		}

		if (result.entry != NULL && result.reads.scope != STAMPEDE_SCOPE_SHARED)
		{
			StampedeEncoder encoder;

			/* Rows under the scope; a stub under the call says so. */
			StampedeEncoderInit(&encoder, MaxAllocSize, req->key, req->keylen,
								result.reads.scope == STAMPEDE_SCOPE_ROLE ?
								STAMPEDE_ENTRY_STUB_ROLE : STAMPEDE_ENTRY_STUB_SETTINGS,
								&req->identity.id, result.fill_lsn, result.resultdesc, NULL);
			StampedeEncoderFinish(&encoder, &stub, &stub_len);
			puts[nputs++] = (StampedePut) {*skey, stub, stub_len};
			puts[nputs] = (StampedePut) {*skey, result.entry, result.entry_len};
			puts[nputs++].key.scope = result.scope_key;
		}
		else if (result.entry != NULL)
			puts[nputs++] = (StampedePut) {*skey, result.entry, result.entry_len};

		/* Before letting go: the other servers' waiters run it themselves. */
		if (nputs == 0)
			StampedeRemoteMarkUncacheable(rf);

		/* In Valkey if it can take them; else, or when it fails, locally. */
		if (rf->token != NULL &&
			StampedeRemoteStore(rf, puts, nputs, req->ttl_ms, expiry_time(req->ttl_ms)))
		{
			stored = nputs > 0;
			flight_end(stored ? FLIGHT_DONE : FLIGHT_UNCACHEABLE, NULL, NULL, 0, 0);
		}
		else if (nputs > 0 && !StampedeStoreAvailable())
		{
			/* Valkey failed while storing, and there is no local store. */
			stored = false;
			flight_end(FLIGHT_UNCACHEABLE, NULL, NULL, 0, 0);
		}
		else
			stored = flight_end(nputs > 0 ? FLIGHT_DONE : FLIGHT_UNCACHEABLE, NULL,
								puts, nputs, expiry_time(req->ttl_ms)) != FLIGHT_UNCACHEABLE;
		stampede_last_call = stored ? STAMPEDE_CALL_LED : STAMPEDE_CALL_RAN;
		if (!stored)
		{
			StampedeStatsCount(STAT_NOT_STORED);
			if (nputs == 0 || StampedeStoreAvailable())
				notice_not_stored(req, &result);
		}
done:
		;
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		bool		leaders = false;

		StampedeForgetDeadFrames();
		MemoryContextSwitchTo(callercxt);
		edata = CopyErrorData();
		leaders = error_belongs_to_leader(edata->sqlerrcode);
		if (!leaders)
			StampedeStatsCount(STAT_ERRORS);
		StampedeStoreReleaseLocks();
		if (flight_shared != NULL && LWLockHeldByMe(flight_shared->lock))
			LWLockRelease(flight_shared->lock);
		StampedeRemoteEndWait();
		StampedeRemoteAbandon(rf, leaders ? NULL : edata);
		if (nled > 0 && memcmp(&led[nled - 1].key, fkey, sizeof(*fkey)) == 0)
			flight_end(leaders ? FLIGHT_ABANDONED : FLIGHT_FAILED, edata, NULL, 0, 0);
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* ---- answering a call, invalidating a key ---- */

/* flight_wait, with an error that names the key when lock_timeout ends it. */
static bool
flight_wait_saying_why(const StampedeRequest *req, const StampedeStoreKey *fkey,
					   TimestampTz deadline)
{
	MemoryContext cxt = CurrentMemoryContext;
	bool		granted = false;

	PG_TRY();
	{
		granted = flight_wait(fkey, deadline);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		StampedeForgetDeadFrames();
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			PG_RE_THROW();
		FlushErrorState();
		StampedeRaiseLockTimeout(key_for_message(req), flight_leader_pid(fkey));
	}
	PG_END_TRY();
	return granted;
}

/*
 * Answer one call: from the store, else lead or wait for the single flight
 * of its key.
 */
void
StampedeServe(StampedeRequest *req)
{
	StampedeStoreKey skey;
	StampedeStoreKey fkey;
	ServeResult served;
	TimestampTz deadline = 0;
	bool		waited = false;

	StampedeForgetDeadFrames();
	/* A call nested in a leader's query is part of that call. */
	if (nled == 0)
		StampedeRemoteNewCall();
	StampedeCallIdentity(req->kind, req->key, req->keylen, req->query, &req->identity);
	memset(&skey, 0, sizeof(skey));
	skey.dbid = MyDatabaseId;
	skey.hash = key_hash(req->kind, req->key, req->keylen);
	skey.variant = req->identity.variant;

	/*
	 * In a transaction that has written, rows must show its own writes and
	 * may show nothing else's (a hit could be older or newer than what it
	 * sees); under REPEATABLE READ and SERIALIZABLE, rows must be those of
	 * the transaction's snapshot, and a read must take the predicate locks
	 * SERIALIZABLE needs.  The query runs in the transaction itself, and
	 * nothing is stored.
	 */
	if (StampedeTransactionHasWritten() || IsolationUsesXactSnapshot())
	{
		StampedeStatsCount(STAT_MISSES);
		run_uncached(req);
		return;
	}

	/* Valkey configured, but its circuit is open: this call is a fallback. */
	if (StampedeRemoteConfigured() && !StampedeRemoteUsable())
		StampedeStatsCount(STAT_FALLBACKS);
	served = serve_from_store(req, &skey);
	if (served == SERVE_SERVED)
	{
		StampedeStatsCount(STAT_HITS);
		stampede_last_call = STAMPEDE_CALL_HIT;
		return;
	}
	StampedeStatsCount(STAT_MISSES);

	deadline = StampedeMaxWaitDeadline();
	for (;;)
	{
		uint32		gen;
		TimestampTz wait_start;
		bool		granted;
		StampedeLeaderError error;

		CHECK_FOR_INTERRUPTS();
		fkey = skey;
		if (served == SERVE_MISS_SCOPED)
			fkey.scope = req->scope_key;

		if (flight_try_lead(&fkey, &gen))
		{
			lead(req, &skey, &fkey);
			return;
		}

		/* Another session runs the query: wait for it to let go. */
		if (!waited)
			StampedeStatsCount(STAT_LOCK_WAITS);
		waited = true;
		wait_start = GetCurrentTimestamp();
		granted = flight_wait_saying_why(req, &fkey, deadline);
		StampedeStatsAdd(STAT_WAIT_TIME_US, GetCurrentTimestamp() - wait_start);
		if (!granted)
		{
			StampedeMaxWaitPassed(key_for_message(req), false);
			run_uncached(req);
			return;
		}

		served = serve_from_store(req, &skey);
		if (served == SERVE_SERVED)
		{
			stampede_last_call = STAMPEDE_CALL_WAITED;
			return;
		}

		memset(&error, 0, sizeof(error));
		switch (flight_outcome(&fkey, gen, &error))
		{
			case FLIGHT_FAILED:
				if (!leaders_error_is_callers(req, fkey.scope != 0))
				{
					run_uncached(req);
					return;
				}
				StampedeStatsCount(STAT_ERRORS);
				StampedeRaiseLeadersError(key_for_message(req), &error);
				break;
			case FLIGHT_UNCACHEABLE:
				run_uncached(req);
				return;
			default:
				/* Abandoned, invalidated or evicted: lead or wait again. */
				break;
		}
	}
}

/*
 * Remove every entry of the key of skey (each variant and scope), and make
 * the flights of it that run now not store their rows: they were computed
 * before the invalidation.  xid names the invalidating transaction for
 * fills on other servers (invalid: none).  True when a live entry was
 * removed.  *reached says whether every store was: when Valkey was not, the
 * invalidation is owed to it (*kept says whether that could be recorded).
 */
static bool
invalidate_key(const StampedeStoreKey *skey, FullTransactionId xid, bool *reached, bool *kept)
{
	bool		removed = false;
	bool		deleted;

	*reached = true;
	*kept = true;
	if (flight_shared != NULL)
	{
		HASH_SEQ_STATUS status;
		Flight	   *flight;

		LWLockAcquire(flight_shared->lock, LW_EXCLUSIVE);
		hash_seq_init(&status, flights);
		while ((flight = hash_seq_search(&status)) != NULL)
		{
			if (flight->key.dbid == skey->dbid && flight->key.hash == skey->hash &&
				flight->state == FLIGHT_RUNNING)
				flight->invalidated = true;
		}
		removed = StampedeStoreRemoveLocal(skey->dbid, skey->hash);
		LWLockRelease(flight_shared->lock);
	}
	if (!StampedeRemoteConfigured())
		return removed;
	/* Not under the LWLock: network I/O must stay interruptible. */
	*reached = StampedeRemoteInvalidate(skey, xid, &deleted, kept);
	return removed || deleted;
}

/* Keys this transaction invalidated: invalidated again when it commits. */
typedef struct PendingInvalidation
{
	StampedeStoreKey key;
	FullTransactionId xid;
} PendingInvalidation;

static List *pending_invalidations = NIL;	/* in TopTransactionContext */
static bool inval_callback_registered = false;

/*
 * Invalidate again what this transaction invalidated, now that it is
 * committed: a fill that stored in between (its snapshot could not yet see
 * the change, but it saw no invalidation record either: another server's,
 * say) is removed.  After the commit nothing may fail: errors become a
 * WARNING, and a cancel waits (each Valkey command is bounded by
 * stampede.valkey_timeout).
 */
static void
invalidation_xact_callback(XactEvent event, void *arg)
{
	List	   *pending = pending_invalidations;

	StampedeForgetDeadFrames();
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT)
		return;
	pending_invalidations = NIL;
	if (pending == NIL || (event != XACT_EVENT_COMMIT && event != XACT_EVENT_PARALLEL_COMMIT))
		return;
	HOLD_INTERRUPTS();
	PG_TRY();
	{
		ListCell   *lc;

		foreach(lc, pending)
		{
			PendingInvalidation *p = lfirst(lc);
			bool		reached;
			bool		kept;

			(void) invalidate_key(&p->key, p->xid, &reached, &kept);
			if (!kept)
				ereport(WARNING,
						(errmsg("stampede could not reach Valkey to invalidate a key again after commit, nor keep the invalidation for later"),
						 errdetail("Other servers may serve its old rows until their ttl ends.")));
		}
	}
	PG_CATCH();
	{
		StampedeForgetDeadFrames();
		EmitErrorReport();
		FlushErrorState();
		ereport(WARNING,
				(errmsg("stampede could not invalidate its keys again after commit"),
				 errdetail("They were invalidated when stampede_invalidate was called.")));
	}
	PG_END_TRY();
	RESUME_INTERRUPTS();
}

/*
 * Remove every entry of key (each kind, variant and scope) at once, and
 * again when the calling transaction commits; until it has, and for every
 * snapshot taken before that, no fill of key stores its rows (see
 * invalidation.c).  True when a live entry was removed.
 */
bool
StampedeInvalidate(const char *key, int keylen)
{
	bool		removed = false;
	bool		all_reached = true;
	bool		all_kept = true;

	StampedeForgetDeadFrames();
	if (!inval_callback_registered)
	{
		RegisterXactCallback(invalidation_xact_callback, NULL);
		inval_callback_registered = true;
	}
	if (nled == 0)
		StampedeRemoteNewCall();
	for (int kind = 1; kind <= STAMPEDE_NUM_KINDS; kind++)
	{
		StampedeStoreKey skey;
		PendingInvalidation *p;
		MemoryContext oldcxt;
		bool		reached;
		bool		kept;

		memset(&skey, 0, sizeof(skey));
		skey.dbid = MyDatabaseId;
		skey.hash = key_hash((StampedeKind) kind, key, keylen);

		oldcxt = MemoryContextSwitchTo(TopTransactionContext);
		p = palloc(sizeof(PendingInvalidation));
		p->key = skey;
		p->xid = StampedeInvalRecord(skey.dbid, skey.hash);
		pending_invalidations = lappend(pending_invalidations, p);
		MemoryContextSwitchTo(oldcxt);

		removed |= invalidate_key(&skey, p->xid, &reached, &kept);
		all_reached &= reached;
		all_kept &= kept;
	}
	if (removed)
		StampedeStatsCount(STAT_INVALIDATIONS);
	if (all_reached)
		return removed;

	/* Say so: other servers may still serve the old rows from Valkey. */
	if (all_kept)
		ereport(WARNING,
				(errmsg("stampede could not reach Valkey to invalidate key \"%s\"",
						pnstrdup(key, keylen)),
				 errdetail("It was removed from this server's store. Valkey's copy will be invalidated as soon as Valkey answers again, and before this server reads the key from it; until then other servers may serve the old rows."),
				 errhint("See stampede_status() for why Valkey cannot be reached.")));
	else
		ereport(WARNING,
				(errmsg("stampede could not reach Valkey to invalidate key \"%s\", nor keep the invalidation for later",
						pnstrdup(key, keylen)),
				 errdetail("It was removed from this server's store; other servers may serve the old rows from Valkey until their ttl ends."),
				 errhint("Call stampede_invalidate again once Valkey answers (see stampede_status()).")));
	return false;
}
