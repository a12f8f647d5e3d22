/*-------------------------------------------------------------------------
 *
 * outage.c
 *	  Server-wide bookkeeping of Valkey outages, so that what happened while
 *	  Valkey could not be reached does not outlive the outage:
 *
 *	  - what this server owes Valkey: the invalidations stampede_invalidate
 *		could not send, and the locks whose leaders could not release them.
 *		They are paid as soon as Valkey answers: by the lease worker, which
 *		probes a Valkey that failed, and by any backend before it reads a
 *		key with an invalidation owed from Valkey (flight.c), so that no
 *		read here sees rows that an invalidation here removed;
 *	  - the outage epoch: every time Valkey answers again after a failure it
 *		moves on, and the fallback copies of earlier outages (entries a
 *		leader stored locally because Valkey failed) are no longer served.
 *		Other servers may have invalidated them meanwhile.
 *
 *	  Nothing here talks to Valkey (lease.c and flight.c pay), so that the
 *	  transport (valkey.c) can report failures and recoveries here.
 *
 *	  Locking: one LWLock over the table; the epoch and the counts that let
 *	  the common case (nothing owed, nothing down) skip it are atomics.
 *	  Without shared_preload_libraries there is no table: nothing is kept.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "locks.h"
#include "outage.h"

#define OUTAGE_URLS		4		/* distinct Valkey servers tracked */
#define OWED_MAX		256

typedef struct OwedSlot
{
	bool		used;
	int			url;			/* index in urls */
	StampedeOwed owed;
} OwedSlot;

typedef struct OutageShared
{
	LWLock	   *lock;
	pg_atomic_uint64 epoch;
	pg_atomic_uint32 nowed;
	pg_atomic_uint32 ndown;
	struct
	{
		char		url[STAMPEDE_URL_LEN];
		bool		down;
		TimestampTz since;		/* when it last failed */
	}			urls[OUTAGE_URLS];
	OwedSlot	slots[OWED_MAX];
	Latch	   *settler;		/* the lease worker's: woken when there is more to settle */
} OutageShared;

static OutageShared *outage = NULL;

Size
StampedeOutageShmemSize(void)
{
	return MAXALIGN(sizeof(OutageShared));
}

void
StampedeOutageShmemInit(void)
{
	bool		found;

	outage = ShmemInitStruct("stampede outages", sizeof(OutageShared), &found);
	if (!found)
	{
		memset(outage, 0, sizeof(OutageShared));
		outage->lock = StampedeLock(STAMPEDE_LOCK_OUTAGES);
		pg_atomic_init_u64(&outage->epoch, 1);	/* 0 means "not a fallback copy" */
		pg_atomic_init_u32(&outage->nowed, 0);
		pg_atomic_init_u32(&outage->ndown, 0);
	}
}

/* The current outage epoch: fallback copies of another one are not served. */
uint64
StampedeOutageEpoch(void)
{
	return outage ? pg_atomic_read_u64(&outage->epoch) : 1;
}

static bool
url_owed(int u)
{
	for (int j = 0; j < OWED_MAX; j++)
	{
		if (outage->slots[j].used && outage->slots[j].url == u)
			return true;
	}
	return false;
}

/*
 * url's slot; if missing and make, one is taken: a free one, else that of
 * the server down longest with nothing owed (it may never come back).
 * -1 if there is none.
 */
static int
url_slot(const char *url, bool make)
{
	int			free = -1;
	int			oldest = -1;

	for (int i = 0; i < OUTAGE_URLS; i++)
	{
		if (strcmp(outage->urls[i].url, url) == 0)
			return i;
	}
	if (!make)
		return -1;
	for (int i = 0; i < OUTAGE_URLS; i++)
	{
		if (url_owed(i))
			continue;
		if (!outage->urls[i].down)
		{
			if (free < 0)
				free = i;
		}
		else if (oldest < 0 || outage->urls[i].since < outage->urls[oldest].since)
			oldest = i;
	}
	if (free < 0 && oldest >= 0)
	{
		/* Forgetting its outage: its fallback copies are retired now. */
		outage->urls[oldest].down = false;
		pg_atomic_fetch_sub_u32(&outage->ndown, 1);
		pg_atomic_fetch_add_u64(&outage->epoch, 1);
		free = oldest;
	}
	if (free >= 0)
		strlcpy(outage->urls[free].url, url, STAMPEDE_URL_LEN);
	return free;
}

/*
 * The process that settles outages (the lease worker) waits on latch, to be
 * woken when one begins or a debt is added.
 */
void
StampedeOutageSettledBy(Latch *latch)
{
	if (outage == NULL)
		return;
	LWLockAcquire(outage->lock, LW_EXCLUSIVE);
	outage->settler = latch;
	LWLockRelease(outage->lock);
}

/* Wake the settler, if there is one: latch was read under the lock. */
static void
wake(Latch *latch)
{
	if (latch != NULL)
		SetLatch(latch);
}

/* A command to Valkey at url failed. */
void
StampedeOutageBegan(const char *url)
{
	int			i;
	Latch	   *settler = NULL;

	if (outage == NULL || strlen(url) >= STAMPEDE_URL_LEN)
		return;
	LWLockAcquire(outage->lock, LW_EXCLUSIVE);
	i = url_slot(url, true);
	if (i >= 0)
	{
		/*
		 * A new outage: copies made before it (by a backend whose circuit
		 * was still open after the last one, say) are retired too.
		 */
		if (!outage->urls[i].down)
		{
			pg_atomic_fetch_add_u32(&outage->ndown, 1);
			pg_atomic_fetch_add_u64(&outage->epoch, 1);
			settler = outage->settler;
		}
		outage->urls[i].down = true;
		outage->urls[i].since = GetCurrentTimestamp();
	}
	LWLockRelease(outage->lock);
	wake(settler);
}

/* Valkey at url answered: if it had failed, its outage is over. */
void
StampedeOutageEnded(const char *url)
{
	int			i;

	if (outage == NULL || pg_atomic_read_u32(&outage->ndown) == 0)
		return;

	/*
	 * Every command that succeeds comes here: while some other server is
	 * down, look without the lock (a torn read only costs a look under it,
	 * or the next command's) before taking it.
	 */
	pg_read_barrier();
	for (i = 0; i < OUTAGE_URLS; i++)
	{
		if (outage->urls[i].down &&
			strncmp(outage->urls[i].url, url, STAMPEDE_URL_LEN) == 0)
			break;
	}
	if (i == OUTAGE_URLS)
		return;
	LWLockAcquire(outage->lock, LW_EXCLUSIVE);
	i = url_slot(url, false);
	if (i >= 0 && outage->urls[i].down)
	{
		outage->urls[i].down = false;
		pg_atomic_fetch_sub_u32(&outage->ndown, 1);
		pg_atomic_fetch_add_u64(&outage->epoch, 1);
	}
	LWLockRelease(outage->lock);
}

static bool
same_debt(const StampedeOwed *a, const StampedeOwed *b)
{
	return a->kind == b->kind && a->dbid == b->dbid && a->hash == b->hash &&
		a->variant == b->variant && strcmp(a->prefix, b->prefix) == 0 &&
		strcmp(a->arg, b->arg) == 0;
}

/*
 * Owe Valkey at url what owed says (once: the same debt again is kept as
 * one; two invalidations of a key by two transactions are two).  False
 * when it cannot be kept: no shared memory, a name too long, or the table
 * is full.  An owed lock release lapses when the lock would have expired.
 */
bool
StampedeOutageOwe(const char *url, const StampedeOwed *owed)
{
	int			u;
	int			free = -1;
	bool		kept = false;
	TimestampTz now = GetCurrentTimestamp();
	Latch	   *settler = NULL;

	if (outage == NULL || strlen(url) >= STAMPEDE_URL_LEN)
		return false;
	LWLockAcquire(outage->lock, LW_EXCLUSIVE);
	u = url_slot(url, true);
	for (int i = 0; u >= 0 && i < OWED_MAX && !kept; i++)
	{
		OwedSlot   *slot = &outage->slots[i];

		if (!slot->used)
		{
			if (free < 0)
				free = i;
		}
		else if (slot->url == u && same_debt(&slot->owed, owed))
			kept = true;
		else if (slot->owed.kind == STAMPEDE_OWE_UNLOCK && slot->owed.lapses_at < now)
		{
			/* The lock expired by itself meanwhile: nothing is owed. */
			slot->used = false;
			pg_atomic_fetch_sub_u32(&outage->nowed, 1);
			if (free < 0)
				free = i;
		}
	}
	if (!kept && u >= 0 && free >= 0)
	{
		outage->slots[free].used = true;
		outage->slots[free].url = u;
		outage->slots[free].owed = *owed;
		pg_atomic_fetch_add_u32(&outage->nowed, 1);
		kept = true;
		settler = outage->settler;
	}
	LWLockRelease(outage->lock);
	wake(settler);
	return kept;
}

bool
StampedeOutageAnyOwed(void)
{
	return outage != NULL && pg_atomic_read_u32(&outage->nowed) > 0;
}

/* Is an invalidation of the key (dbid, hash) owed to Valkey at url? */
bool
StampedeOutageOwes(const char *url, Oid dbid, uint64 hash)
{
	bool		owes = false;
	int			u;

	if (!StampedeOutageAnyOwed())
		return false;
	LWLockAcquire(outage->lock, LW_SHARED);
	u = url_slot(url, false);
	for (int i = 0; u >= 0 && i < OWED_MAX && !owes; i++)
	{
		OwedSlot   *slot = &outage->slots[i];

		owes = slot->used && slot->url == u &&
			slot->owed.kind == STAMPEDE_OWE_INVALIDATION &&
			slot->owed.dbid == dbid && slot->owed.hash == hash;
	}
	LWLockRelease(outage->lock);
	return owes;
}

/* Copy up to max debts to Valkey at url into owed; how many. */
int
StampedeOutageOwedTo(const char *url, StampedeOwed *owed, int max)
{
	int			n = 0;
	int			u;

	if (!StampedeOutageAnyOwed())
		return 0;
	LWLockAcquire(outage->lock, LW_SHARED);
	u = url_slot(url, false);
	for (int i = 0; u >= 0 && i < OWED_MAX && n < max; i++)
	{
		if (outage->slots[i].used && outage->slots[i].url == u)
			owed[n++] = outage->slots[i].owed;
	}
	LWLockRelease(outage->lock);
	return n;
}

/* A debt was paid: forget it, unless it was replaced meanwhile. */
void
StampedeOutagePaid(const char *url, const StampedeOwed *owed)
{
	int			u;

	if (outage == NULL)
		return;
	LWLockAcquire(outage->lock, LW_EXCLUSIVE);
	u = url_slot(url, false);
	for (int i = 0; u >= 0 && i < OWED_MAX; i++)
	{
		OwedSlot   *slot = &outage->slots[i];

		if (slot->used && slot->url == u && same_debt(&slot->owed, owed))
		{
			slot->used = false;
			pg_atomic_fetch_sub_u32(&outage->nowed, 1);
			break;
		}
	}
	LWLockRelease(outage->lock);
}

/* The Valkey servers that are down or owed something: at most max, into urls. */
int
StampedeOutageUrls(char (*urls)[STAMPEDE_URL_LEN], int max)
{
	int			n = 0;

	if (outage == NULL ||
		(pg_atomic_read_u32(&outage->ndown) == 0 && pg_atomic_read_u32(&outage->nowed) == 0))
		return 0;
	LWLockAcquire(outage->lock, LW_SHARED);
	for (int i = 0; i < OUTAGE_URLS && n < max; i++)
	{
		if (outage->urls[i].down || url_owed(i))
			strlcpy(urls[n++], outage->urls[i].url, STAMPEDE_URL_LEN);
	}
	LWLockRelease(outage->lock);
	return n;
}
