/*-------------------------------------------------------------------------
 *
 * invalidation.c
 *	  Which invalidations a fill must have seen before it may store.
 *
 *	  stampede_invalidate is transactional: it names the transaction that
 *	  calls it (giving it an XID), and its key's rows may be stored again
 *	  only by a fill whose snapshot sees that transaction as done.  A fill
 *	  that started before the invalidating transaction committed (a READ
 *	  COMMITTED statement already running, a reader between a trigger's
 *	  invalidation and its COMMIT) read rows from before the change: it
 *	  returns them to its caller and does not store them.  A transaction
 *	  that rolls back is done too, once it has: it costs a refill.
 *
 *	  This server keeps the last few invalidating transactions of each key
 *	  in a small shared table; Valkey keeps them for every server (see
 *	  flight.c).  A transaction every snapshot now running sees as done is
 *	  forgotten.  When the table is full, the oldest key's transactions go
 *	  to a short list that every key's fills must have seen (a miss or two
 *	  more, never stale rows).
 *
 *	  Without shared_preload_libraries there is no table: only Valkey's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "invalidation.h"
#include "locks.h"

#define XIDS_PER_KEY	4
#define OVERFLOW_XIDS	8

typedef struct InvalKey
{
	Oid			dbid;
	uint32		pad;
	uint64		keyhash;
} InvalKey;

typedef struct InvalEntry
{
	InvalKey	key;			/* hash key: must be first */
	TimestampTz at;				/* last recorded */
	int			nxids;
	FullTransactionId xids[XIDS_PER_KEY];
} InvalEntry;

typedef struct InvalShared
{
	LWLock	   *lock;
	int			max_keys;
	int			noverflow;
	FullTransactionId overflow[OVERFLOW_XIDS];
} InvalShared;

static InvalShared *inval_shared = NULL;
static HTAB *inval_keys = NULL;

static int
inval_table_size(void)
{
	return 4 * StampedeMaxBackends() + 64;
}

Size
StampedeInvalShmemSize(void)
{
	return add_size(MAXALIGN(sizeof(InvalShared)),
					hash_estimate_size(inval_table_size(), sizeof(InvalEntry)));
}

void
StampedeInvalShmemInit(void)
{
	bool		found;
	HASHCTL		info;

	inval_shared = ShmemInitStruct("stampede invalidations", sizeof(InvalShared), &found);
	if (!found)
	{
		inval_shared->lock = StampedeLock(STAMPEDE_LOCK_INVALIDATIONS);
		inval_shared->max_keys = inval_table_size();
		inval_shared->noverflow = 0;
	}
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(InvalKey);
	info.entrysize = sizeof(InvalEntry);
	inval_keys = ShmemInitHash("stampede invalidation table",
							   inval_table_size(), inval_table_size(),
							   &info, HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
}

/*
 * Is xid done for every snapshot that exists now (it precedes the oldest
 * xmin of them all)?  Then no fill can have started before it.
 */
static bool
done_for_everyone(FullTransactionId xid, TransactionId horizon)
{
	return TransactionIdPrecedes(XidFromFullTransactionId(xid), horizon);
}

/* Keep xids that a snapshot may still not see; oldest first. */
static int
prune(FullTransactionId *xids, int n, TransactionId horizon)
{
	int			kept = 0;

	for (int i = 0; i < n; i++)
	{
		if (!done_for_everyone(xids[i], horizon))
			xids[kept++] = xids[i];
	}
	return kept;
}

static void
append_xid(FullTransactionId *xids, int *n, int max, FullTransactionId xid)
{
	for (int i = 0; i < *n; i++)
	{
		if (FullTransactionIdEquals(xids[i], xid))
			return;
	}
	if (*n == max)
	{
		memmove(xids, xids + 1, (max - 1) * sizeof(FullTransactionId));
		(*n)--;
	}
	xids[(*n)++] = xid;
}

/*
 * The calling transaction invalidates key: give it an XID, and note it for
 * the key on this server.  Returns the XID (invalid on a replica, which
 * cannot give one: there the invalidation takes effect at once only).
 */
FullTransactionId
StampedeInvalRecord(Oid dbid, uint64 keyhash)
{
	FullTransactionId xid;
	TransactionId horizon;
	InvalKey	key;
	InvalEntry *entry;
	bool		found;

	if (RecoveryInProgress())
		return InvalidFullTransactionId;
	xid = GetTopFullTransactionId();
	if (inval_shared == NULL)
		return xid;

	memset(&key, 0, sizeof(key));
	key.dbid = dbid;
	key.keyhash = keyhash;
	horizon = GetOldestNonRemovableTransactionId(NULL);
	LWLockAcquire(inval_shared->lock, LW_EXCLUSIVE);
	entry = hash_search(inval_keys, &key, HASH_FIND, NULL);
	if (entry == NULL && hash_get_num_entries(inval_keys) >= inval_shared->max_keys)
	{
		HASH_SEQ_STATUS status;
		InvalEntry *e;
		InvalEntry *oldest = NULL;

		/* Forget keys whose invalidations everyone sees; else fold the oldest. */
		hash_seq_init(&status, inval_keys);
		while ((e = hash_seq_search(&status)) != NULL)
		{
			e->nxids = prune(e->xids, e->nxids, horizon);
			if (e->nxids == 0)
				hash_search(inval_keys, &e->key, HASH_REMOVE, NULL);
			else if (oldest == NULL || e->at < oldest->at)
				oldest = e;
		}
		if (hash_get_num_entries(inval_keys) >= inval_shared->max_keys && oldest != NULL)
		{
			for (int i = 0; i < oldest->nxids; i++)
				append_xid(inval_shared->overflow, &inval_shared->noverflow, OVERFLOW_XIDS,
						   oldest->xids[i]);
			hash_search(inval_keys, &oldest->key, HASH_REMOVE, NULL);
		}
	}
	entry = hash_search(inval_keys, &key, HASH_ENTER, &found);
	if (!found)
		entry->nxids = 0;
	entry->nxids = prune(entry->xids, entry->nxids, horizon);
	append_xid(entry->xids, &entry->nxids, XIDS_PER_KEY, xid);
	entry->at = GetCurrentTimestamp();
	LWLockRelease(inval_shared->lock);
	return xid;
}

/*
 * Does snapshot see xid as done (committed or aborted before it was
 * taken)?  An XID from much more than two billion transactions ago is long
 * done; the current transaction's own is not (it has not committed).
 */
bool
StampedeXidSeenBy(FullTransactionId xid, Snapshot snapshot)
{
	FullTransactionId next = ReadNextFullTransactionId();

	if (!FullTransactionIdIsValid(xid))
		return true;
	if (FullTransactionIdFollowsOrEquals(xid, next))
		return false;
	if (U64FromFullTransactionId(next) - U64FromFullTransactionId(xid) > (uint64) (1U << 30))
		return true;
	if (TransactionIdIsCurrentTransactionId(XidFromFullTransactionId(xid)))
		return false;
	return !XidInMVCCSnapshot(XidFromFullTransactionId(xid), snapshot);
}

/* Has snapshot seen every invalidation of key this server knows of? */
bool
StampedeInvalSeenBy(Oid dbid, uint64 keyhash, Snapshot snapshot)
{
	InvalKey	key;
	InvalEntry *entry;
	bool		seen = true;

	if (inval_shared == NULL)
		return true;
	memset(&key, 0, sizeof(key));
	key.dbid = dbid;
	key.keyhash = keyhash;
	LWLockAcquire(inval_shared->lock, LW_SHARED);
	entry = hash_search(inval_keys, &key, HASH_FIND, NULL);
	for (int i = 0; seen && entry != NULL && i < entry->nxids; i++)
		seen = StampedeXidSeenBy(entry->xids[i], snapshot);
	for (int i = 0; seen && i < inval_shared->noverflow; i++)
		seen = StampedeXidSeenBy(inval_shared->overflow[i], snapshot);
	LWLockRelease(inval_shared->lock);
	return seen;
}
