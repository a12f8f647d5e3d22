/*-------------------------------------------------------------------------
 *
 * lease.c
 *	  The Valkey locks of live leaders, published for renewal.
 *
 *	  A leader's Valkey lock expires after stampede.lock_timeout, so that a
 *	  leader that vanished does not hold other servers' waiters for ever.
 *	  A leader that is alive but whose query runs longer must keep it: each
 *	  backend publishes the locks it holds in a slot of shared memory of its
 *	  own, and the lease worker (worker.c) renews every lock a third of its
 *	  lifetime after the last renewal, only while it still holds the
 *	  leader's token.  The backend empties the slot when its flight ends,
 *	  however it ends (rows stored or not, error, cancel, exit), and a lease
 *	  is renewed only while the backend that published it is alive: a lock
 *	  whose leader is gone expires within stampede.lock_timeout, and a
 *	  crashed server's locks expire as they should.
 *
 *	  Adding a lease wakes the worker, which otherwise sleeps until the
 *	  next lease is due.
 *
 *	  Locking: each backend's slot has a spinlock, held only to copy a few
 *	  strings in or out; the worker's latch is published under another.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "lease.h"

#define LEASES_PER_BACKEND	4

/* Renewed no more often than this, whatever stampede.lock_timeout says. */
#define LEASE_MIN_RENEWAL_MS	50

typedef struct Lease
{
	bool		used;
	int			pid;			/* the leader's: renewed only while it lives */
	char		key[STAMPEDE_LEASE_KEY_LEN];
	char		token[STAMPEDE_LEASE_TOKEN_LEN];
	int64		px_ms;
	TimestampTz renewed_at;
} Lease;

typedef struct BackendLeases
{
	slock_t		mutex;
	char		url[STAMPEDE_URL_LEN];	/* the Valkey the locks are in */
	Lease		leases[LEASES_PER_BACKEND];
} BackendLeases;

/* The worker's latch, for backends to wake it (NULL until it runs). */
typedef struct LeaseWorker
{
	slock_t		mutex;
	Latch	   *latch;
} LeaseWorker;

static LeaseWorker *lease_worker = NULL;
static BackendLeases *backend_leases = NULL;
static int	nbackends = 0;

Size
StampedeLeaseShmemSize(void)
{
	/* Two structs: each is aligned to a cache line. */
	return add_size(CACHELINEALIGN(sizeof(LeaseWorker)),
					CACHELINEALIGN(mul_size(StampedeMaxBackends(), sizeof(BackendLeases))));
}

void
StampedeLeaseShmemInit(void)
{
	bool		found;

	nbackends = StampedeMaxBackends();
	lease_worker = ShmemInitStruct("stampede lease worker", sizeof(LeaseWorker), &found);
	if (!found)
	{
		SpinLockInit(&lease_worker->mutex);
		lease_worker->latch = NULL;
	}
	backend_leases = ShmemInitStruct("stampede leases",
									 mul_size(nbackends, sizeof(BackendLeases)), &found);
	if (!found)
	{
		for (int i = 0; i < nbackends; i++)
		{
			SpinLockInit(&backend_leases[i].mutex);
			memset(backend_leases[i].leases, 0, sizeof(backend_leases[i].leases));
			backend_leases[i].url[0] = '\0';
		}
	}
}

/*
 * The worker waits on latch.  A stale one, left by a worker that exited, is
 * harmless: its PGPROC stays, and a new worker replaces it.
 */
void
StampedeLeaseWorkerLatch(Latch *latch)
{
	SpinLockAcquire(&lease_worker->mutex);
	lease_worker->latch = latch;
	SpinLockRelease(&lease_worker->mutex);
}

/* Wake the worker: a new lease may be due before it planned to wake. */
static void
wake_worker(void)
{
	Latch	   *latch;

	SpinLockAcquire(&lease_worker->mutex);
	latch = lease_worker->latch;
	SpinLockRelease(&lease_worker->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

static BackendLeases *
my_leases(void)
{
	int			procno;

	if (backend_leases == NULL || MyProc == NULL)
		return NULL;
	procno = StampedeMyProcNumber();
	return procno < nbackends ? &backend_leases[procno] : NULL;
}

/*
 * Publish a lock this backend now holds in the Valkey at url, for renewal.
 * Returns its slot, or -1 when none is free (the lock is then not renewed),
 * or when the backend's other leases are in another Valkey: a backend's
 * leases share one URL (a nested call under another stampede.valkey_url,
 * set by a function's SET clause, is that rare case).
 */
int
StampedeLeaseAdd(const char *url, const char *key, const char *token, int64 px_ms)
{
	BackendLeases *mine = my_leases();
	int			slot = -1;

	if (mine == NULL || strlen(key) >= STAMPEDE_LEASE_KEY_LEN || strlen(url) >= STAMPEDE_URL_LEN)
		return -1;
	SpinLockAcquire(&mine->mutex);
	for (int i = 0; i < LEASES_PER_BACKEND; i++)
	{
		if (!mine->leases[i].used)
		{
			if (slot < 0)
				slot = i;
		}
		else if (strcmp(mine->url, url) != 0)
		{
			/* A nested flight in another Valkey: its lock is not renewed. */
			slot = -1;
			break;
		}
	}
	if (slot >= 0)
	{
		Lease	   *lease = &mine->leases[slot];

		strlcpy(mine->url, url, STAMPEDE_URL_LEN);
		strlcpy(lease->key, key, STAMPEDE_LEASE_KEY_LEN);
		strlcpy(lease->token, token, STAMPEDE_LEASE_TOKEN_LEN);
		lease->pid = MyProcPid;
		lease->px_ms = px_ms;
		lease->renewed_at = GetCurrentTimestamp();
		lease->used = true;
	}
	SpinLockRelease(&mine->mutex);
	if (slot >= 0)
		wake_worker();
	return slot;
}

void
StampedeLeaseRemove(int slot)
{
	BackendLeases *mine = my_leases();

	if (mine == NULL || slot < 0)
		return;
	SpinLockAcquire(&mine->mutex);
	mine->leases[slot].used = false;
	SpinLockRelease(&mine->mutex);
}

/* When a lease renewed at renewed_at is due again. */
static TimestampTz
due_at(const Lease *lease)
{
	return TimestampTzPlusMilliseconds(lease->renewed_at,
									   Max(lease->px_ms / 3, LEASE_MIN_RENEWAL_MS));
}

/*
 * The leases due for renewal now, at most max of them, into due; *next says
 * when the first of the others is (0: there is none).  A lease whose
 * backend is gone (a slot is a PGPROC's; an exited backend leaves its pid
 * there) is dropped instead: its lock expires.
 */
int
StampedeLeasesDue(StampedeDueLease *due, int max, TimestampTz *next)
{
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;

	*next = 0;
	for (int b = 0; b < nbackends; b++)
	{
		BackendLeases *bl = &backend_leases[b];

		for (int i = 0; i < LEASES_PER_BACKEND; i++)
		{
			Lease		lease;
			TimestampTz at;
			bool		is_due;

			SpinLockAcquire(&bl->mutex);
			lease = bl->leases[i];
			at = lease.used ? due_at(&lease) : 0;
			is_due = lease.used && now >= at && n < max;
			/* Only a due lease needs the slot's URL (1 kB). */
			if (is_due)
				memcpy(due[n].url, bl->url, STAMPEDE_URL_LEN);
			SpinLockRelease(&bl->mutex);
			if (!lease.used)
				continue;
			if (!is_due)
			{
				/* Not due yet, or the batch is full (then: at once). */
				at = Max(at, now);
				if (*next == 0 || at < *next)
					*next = at;
				continue;
			}
			if (BackendPidGetProc(lease.pid) != &ProcGlobal->allProcs[b])
			{
				SpinLockAcquire(&bl->mutex);
				if (bl->leases[i].used && bl->leases[i].pid == lease.pid &&
					strcmp(bl->leases[i].token, lease.token) == 0)
					bl->leases[i].used = false;
				SpinLockRelease(&bl->mutex);
				continue;
			}
			due[n].backend = b;
			due[n].slot = i;
			due[n].px_ms = lease.px_ms;
			memcpy(due[n].key, lease.key, STAMPEDE_LEASE_KEY_LEN);
			memcpy(due[n].token, lease.token, STAMPEDE_LEASE_TOKEN_LEN);
			n++;
		}
	}
	return n;
}

/*
 * A due lease was renewed at renewed_at (or tried: a failure is not retried
 * before its next turn), if it is still the same lease; returns when it is
 * due again (0: it is gone).
 */
TimestampTz
StampedeLeaseRenewed(const StampedeDueLease *due, TimestampTz renewed_at)
{
	BackendLeases *bl = &backend_leases[due->backend];
	Lease	   *lease = &bl->leases[due->slot];
	TimestampTz next = 0;

	SpinLockAcquire(&bl->mutex);
	if (lease->used && strcmp(lease->token, due->token) == 0)
	{
		lease->renewed_at = renewed_at;
		next = due_at(lease);
	}
	SpinLockRelease(&bl->mutex);
	return next;
}
