/*-------------------------------------------------------------------------
 *
 * store_local.c
 *	  A bounded key/value store in the main shared memory segment.
 *
 *	  Values live in an arena of fixed-size chunks chained by a "next" array,
 *	  so the arena never fragments and an entry wastes less than one chunk.
 *	  A fixed-size shared hash table maps keys to their first chunk.  The
 *	  store never grows past stampede.local_cache_size: to make room it drops
 *	  expired entries first, then the least recently used ones, and it never
 *	  refuses a value that fits in the arena.
 *
 *	  Locking: one LWLock.  Readers take it shared (a hit copies the value
 *	  out and stamps its last use with an atomic write); writers, deleters
 *	  and eviction take it exclusive.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "locks.h"
#include "stats.h"
#include "store_local.h"

#define CHUNK_SIZE			256
#define NO_CHUNK			(-1)
#define BYTES_PER_ENTRY_SLOT 2048	/* one hash slot per this much store */
#define EVICT_SLACK_DIVISOR 64	/* evict 1/64 more than asked, to batch */
#define LAST_USED_GRANULARITY_US 1000	/* LRU order finer than this is noise */

typedef struct StoreEntry
{
	StampedeStoreKey key;		/* hash key: must be first */
	int32		first_chunk;
	int32		nchunks;
	uint32		len;
	TimestampTz expires_at;
	uint64		outage;			/* a fallback copy, of this outage; 0: not one */
	pg_atomic_uint64 last_used;
} StoreEntry;

typedef struct StoreShared
{
	LWLock	   *lock;
	int32		nchunks;
	int32		nfree;
	int32		free_head;
	int64		nentries;
	int64		max_entries;
	int32		next[FLEXIBLE_ARRAY_MEMBER];
} StoreShared;

static StoreShared *store = NULL;
static HTAB *store_hash = NULL;
static char *arena = NULL;

static int64
store_max_entries(void)
{
	return Max(64, ((int64) stampede_local_cache_size_kb * 1024) / BYTES_PER_ENTRY_SLOT);
}

static Size
store_hash_size(void)
{
	return hash_estimate_size(store_max_entries(), sizeof(StoreEntry));
}

/* Chunks that fit in what the hash table and headers leave of the budget. */
static int32
store_nchunks(void)
{
	Size		budget = (Size) stampede_local_cache_size_kb * 1024;
	Size		fixed = store_hash_size() + offsetof(StoreShared, next);

	if (budget <= fixed)
		return 16;
	return (int32) Min((budget - fixed) / (CHUNK_SIZE + sizeof(int32)), PG_INT32_MAX / CHUNK_SIZE);
}

Size
StampedeLocalStoreShmemSize(void)
{
	int32		nchunks = store_nchunks();

	return add_size(add_size(MAXALIGN(offsetof(StoreShared, next) + sizeof(int32) * (Size) nchunks),
							 mul_size(nchunks, CHUNK_SIZE)),
					store_hash_size());
}

void
StampedeLocalStoreShmemInit(void)
{
	bool		found;
	int32		nchunks = store_nchunks();
	HASHCTL		info;

	store = ShmemInitStruct("stampede store",
							MAXALIGN(offsetof(StoreShared, next) + sizeof(int32) * (Size) nchunks),
							&found);
	arena = ShmemInitStruct("stampede store arena", (Size) nchunks * CHUNK_SIZE, &found);
	if (!found)
	{
		store->lock = StampedeLock(STAMPEDE_LOCK_STORE);
		store->nchunks = nchunks;
		store->nfree = nchunks;
		store->free_head = 0;
		store->nentries = 0;
		store->max_entries = store_max_entries();
		for (int32 i = 0; i < nchunks; i++)
			store->next[i] = (i + 1 < nchunks) ? i + 1 : NO_CHUNK;
	}

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(StampedeStoreKey);
	info.entrysize = sizeof(StoreEntry);
	store_hash = ShmemInitHash("stampede store index",
							   store_max_entries(), store_max_entries(),
							   &info, HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
}

bool
StampedeLocalStoreAvailable(void)
{
	return store != NULL;
}

static inline int32
chunks_for(Size len)
{
	return (int32) ((len + CHUNK_SIZE - 1) / CHUNK_SIZE);
}

/* Give an entry's chunks back and forget it.  Caller holds the lock exclusive. */
static void
store_free_entry(StoreEntry *entry)
{
	int32		last = entry->first_chunk;
	StampedeStoreKey key = entry->key;

	if (entry->nchunks > 0)
	{
		for (int32 i = 1; i < entry->nchunks; i++)
			last = store->next[last];
		store->next[last] = store->free_head;
		store->free_head = entry->first_chunk;
		store->nfree += entry->nchunks;
	}
	store->nentries--;
	hash_search(store_hash, &key, HASH_REMOVE, NULL);
}

typedef struct EvictCandidate
{
	uint64		last_used;
	StampedeStoreKey key;
} EvictCandidate;

static int
evict_candidate_cmp(const void *a, const void *b)
{
	uint64		ua = ((const EvictCandidate *) a)->last_used;
	uint64		ub = ((const EvictCandidate *) b)->last_used;

	return (ua > ub) - (ua < ub);
}

static inline bool
store_has_room(int32 chunks_needed, int32 chunks_wanted, int64 slots_wanted)
{
	return store->nfree >= chunks_needed + chunks_wanted &&
		store->nentries + slots_wanted <= store->max_entries;
}

/*
 * Make room for an entry of chunks_needed chunks: drop what expired, then the
 * least recently used, a little more than needed so that the next writes do
 * not each pay for a scan.  Caller holds the lock exclusive.
 */
static void
store_make_room(int32 chunks_needed, TimestampTz now)
{
	HASH_SEQ_STATUS status;
	StoreEntry *entry;
	EvictCandidate *candidates;
	int64		ncandidates = 0;
	int32		chunks_wanted = store->nchunks / EVICT_SLACK_DIVISOR;
	int64		slots_wanted = Max(1, store->max_entries / EVICT_SLACK_DIVISOR);
	int64		evicted = 0;

	chunks_wanted = Min(chunks_wanted, store->nchunks - chunks_needed);

	hash_seq_init(&status, store_hash);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (entry->expires_at <= now)
			store_free_entry(entry);	/* removing the current one is allowed */
	}
	if (store_has_room(chunks_needed, chunks_wanted, slots_wanted))
		return;

	candidates = palloc(sizeof(EvictCandidate) * Max(store->nentries, 1));
	hash_seq_init(&status, store_hash);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		candidates[ncandidates].last_used = pg_atomic_read_u64(&entry->last_used);
		candidates[ncandidates].key = entry->key;
		ncandidates++;
	}
	qsort(candidates, ncandidates, sizeof(EvictCandidate), evict_candidate_cmp);
	for (int64 i = 0; i < ncandidates; i++)
	{
		if (store_has_room(chunks_needed, chunks_wanted, slots_wanted))
			break;
		entry = hash_search(store_hash, &candidates[i].key, HASH_FIND, NULL);
		if (entry)
		{
			store_free_entry(entry);
			evicted++;
		}
	}
	pfree(candidates);
	StampedeStatsAdd(STAT_EVICTIONS, evicted);
}

/*
 * A copy of the value under key, in the current memory context, or NULL when
 * there is none, it expired, or it is a fallback copy of an outage other
 * than the current one (Valkey answered since: see outage.c).
 */
char *
StampedeLocalStoreGet(const StampedeStoreKey *key, Size *len, uint64 outage)
{
	StoreEntry *entry;
	TimestampTz now = GetCurrentTimestamp();
	char	   *copy = NULL;

	if (store == NULL)
		return NULL;

	LWLockAcquire(store->lock, LW_SHARED);
	entry = hash_search(store_hash, key, HASH_FIND, NULL);
	if (entry != NULL && entry->expires_at > now &&
		(entry->outage == 0 || entry->outage == outage))
	{
		Size		remaining = entry->len;
		int32		chunk = entry->first_chunk;
		char	   *dst;

		/* palloc may throw; the LWLock is released on abort. */
		copy = dst = palloc(Max(remaining, 1));
		while (remaining > 0)
		{
			Size		n = Min(remaining, CHUNK_SIZE);

			memcpy(dst, arena + (Size) chunk * CHUNK_SIZE, n);
			dst += n;
			remaining -= n;
			chunk = store->next[chunk];
		}
		*len = entry->len;
		/* Stamp the use only now and then: a write on every hit would
		 * bounce the entry's cache line between the cores reading it. */
		if ((uint64) now - pg_atomic_read_u64(&entry->last_used) > LAST_USED_GRANULARITY_US)
			pg_atomic_write_u64(&entry->last_used, (uint64) now);
	}
	LWLockRelease(store->lock);
	return copy;
}

/*
 * Store a value, replacing any under the same key; outage says it is a
 * fallback copy made during that outage (0: not one).  False only when the
 * value is larger than the whole arena.
 */
bool
StampedeLocalStorePut(const StampedeStoreKey *key, const char *data, Size len,
					  TimestampTz expires_at, uint64 outage)
{
	int32		need = chunks_for(len);
	TimestampTz now = GetCurrentTimestamp();
	StoreEntry *entry;
	bool		found;
	int32		chunk;
	int32		last = NO_CHUNK;
	Size		remaining = len;

	if (store == NULL || need > store->nchunks || len > PG_UINT32_MAX)
		return false;

	LWLockAcquire(store->lock, LW_EXCLUSIVE);
	entry = hash_search(store_hash, key, HASH_FIND, NULL);
	if (entry != NULL)
		store_free_entry(entry);
	if (!store_has_room(need, 0, 1))
		store_make_room(need, now);
	Assert(store_has_room(need, 0, 1));

	chunk = store->free_head;
	for (int32 i = 0; i < need; i++)
	{
		Size		n = Min(remaining, CHUNK_SIZE);

		memcpy(arena + (Size) chunk * CHUNK_SIZE, data + (len - remaining), n);
		remaining -= n;
		last = chunk;
		chunk = store->next[chunk];
	}
	entry = hash_search(store_hash, key, HASH_ENTER, &found);
	Assert(!found);
	entry->first_chunk = need > 0 ? store->free_head : NO_CHUNK;
	entry->nchunks = need;
	entry->len = (uint32) len;
	entry->expires_at = expires_at;
	entry->outage = outage;
	pg_atomic_init_u64(&entry->last_used, (uint64) now);
	if (need > 0)
	{
		store->free_head = chunk;
		store->next[last] = NO_CHUNK;
		store->nfree -= need;
	}
	store->nentries++;
	LWLockRelease(store->lock);
	return true;
}

/*
 * Drop every entry of a key: each variant, each scope.  Scans the table
 * (invalidation is rare; a hit never scans).  Returns how many live ones
 * were dropped.
 */
int
StampedeLocalStoreDeleteKey(Oid dbid, uint64 hash)
{
	HASH_SEQ_STATUS status;
	StoreEntry *entry;
	TimestampTz now = GetCurrentTimestamp();
	int			dropped = 0;

	if (store == NULL)
		return 0;
	LWLockAcquire(store->lock, LW_EXCLUSIVE);
	hash_seq_init(&status, store_hash);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (entry->key.dbid == dbid && entry->key.hash == hash)
		{
			dropped += entry->expires_at > now;
			store_free_entry(entry);
		}
	}
	LWLockRelease(store->lock);
	return dropped;
}

void
StampedeLocalStoreUsage(StampedeLocalUsage *usage)
{
	Size		slot_size = MAXALIGN(sizeof(HASHELEMENT)) + MAXALIGN(sizeof(StoreEntry));

	memset(usage, 0, sizeof(*usage));
	if (store == NULL)
		return;
	LWLockAcquire(store->lock, LW_SHARED);
	usage->entries = store->nentries;
	usage->bytes_used = (int64) (store->nchunks - store->nfree) * (CHUNK_SIZE + sizeof(int32)) +
		store->nentries * slot_size;
	usage->bytes_total = (int64) store->nchunks * (CHUNK_SIZE + sizeof(int32)) +
		store->max_entries * slot_size;
	usage->max_entries = store->max_entries;
	LWLockRelease(store->lock);
}

/* For error cleanup: an error raised inside the store leaves its lock held. */
void
StampedeLocalStoreReleaseLockIfHeld(void)
{
	if (store != NULL && LWLockHeldByMe(store->lock))
		LWLockRelease(store->lock);
}
