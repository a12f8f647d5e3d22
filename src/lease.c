/*-------------------------------------------------------------------------
 *
 * lease.c
 *	  Keeps the Valkey locks of live leaders from expiring.
 *
 *	  A leader's Valkey lock expires after stampede.lock_timeout, so that a
 *	  leader that vanished does not hold other servers' waiters for ever.
 *	  A leader that is alive but whose query runs longer must keep it: each
 *	  backend publishes the locks it holds in a slot of shared memory of its
 *	  own, and a background worker renews every lock a third of its lifetime
 *	  after the last renewal, only while it still holds the leader's token.
 *	  The backend empties the slot when its flight ends, however it ends
 *	  (rows stored or not, error, cancel, exit), and the worker renews a
 *	  lease only while the backend that published it is alive: a lock
 *	  whose leader is gone expires within stampede.lock_timeout, and a
 *	  crashed server's locks expire as they should.
 *
 *	  The worker also settles what a Valkey outage left (outage.c): it
 *	  probes a Valkey that failed until it answers, then sends the
 *	  invalidations and lock releases this server owes it (remote.c).
 *	  Backends pay the same way before they read a key with an
 *	  invalidation owed.
 *
 *	  The worker sleeps until the next lease is due or the next probe, and
 *	  for good while there is neither: a backend that adds a lease, and one
 *	  that sees Valkey fail, sets its latch.  An idle server costs nothing.
 *
 *	  Each lease names the Valkey its lock is in; the worker talks to each
 *	  by that URL (valkey.c takes it per call).
 *
 *	  Locking: each backend's slot has a spinlock, held only to copy a few
 *	  strings in or out; the worker's latch is published under another.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "guc.h"
#include "lease.h"
#include "outage.h"
#include "remote.h"
#include "valkey.h"

#define LEASES_PER_BACKEND	4
#define LEASE_KEY_LEN		256
#define LEASE_URL_LEN		STAMPEDE_URL_LEN
/* The worker's own circuit: its probes are timed below, not by it. */
#define WORKER_RETRY_INTERVAL_MS	"1"

typedef struct Lease
{
	bool		used;
	int			pid;			/* the leader's: renewed only while it lives */
	char		key[LEASE_KEY_LEN];
	char		token[STAMPEDE_LEASE_TOKEN_LEN];
	int64		px_ms;
	TimestampTz renewed_at;
} Lease;

typedef struct BackendLeases
{
	slock_t		mutex;
	char		url[LEASE_URL_LEN]; /* the Valkey the locks are in */
	Lease		leases[LEASES_PER_BACKEND];
} BackendLeases;

/* The worker's latch, for backends to wake it (NULL while it is not running). */
typedef struct LeaseWorker
{
	slock_t		mutex;
	Latch	   *latch;
} LeaseWorker;

static LeaseWorker *worker = NULL;
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
	worker = ShmemInitStruct("stampede lease worker", sizeof(LeaseWorker), &found);
	if (!found)
	{
		SpinLockInit(&worker->mutex);
		worker->latch = NULL;
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
 * Wake the worker: a lease to renew or a Valkey to probe may be due sooner
 * than it planned to wake.
 */
void
StampedeLeaseWakeWorker(void)
{
	Latch	   *latch;

	if (worker == NULL)
		return;
	SpinLockAcquire(&worker->mutex);
	latch = worker->latch;
	SpinLockRelease(&worker->mutex);
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
 * Returns its slot, or -1 when none is free (the lock is then not renewed).
 * A backend's leases are all in one Valkey: its setting, for its call.
 */
int
StampedeLeaseAdd(const char *url, const char *key, const char *token, int64 px_ms)
{
	BackendLeases *mine = my_leases();
	int			slot = -1;

	if (mine == NULL || strlen(key) >= LEASE_KEY_LEN || strlen(url) >= LEASE_URL_LEN)
		return -1;
	SpinLockAcquire(&mine->mutex);
	for (int i = 0; i < LEASES_PER_BACKEND; i++)
	{
		if (!mine->leases[i].used)
		{
			slot = i;
			break;
		}
	}
	if (slot >= 0)
	{
		Lease	   *lease = &mine->leases[slot];

		strlcpy(mine->url, url, LEASE_URL_LEN);
		strlcpy(lease->key, key, LEASE_KEY_LEN);
		strlcpy(lease->token, token, STAMPEDE_LEASE_TOKEN_LEN);
		lease->pid = MyProcPid;
		lease->px_ms = px_ms;
		lease->renewed_at = GetCurrentTimestamp();
		lease->used = true;
	}
	SpinLockRelease(&mine->mutex);
	if (slot >= 0)
		StampedeLeaseWakeWorker();
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

/* The earlier of two times, 0 meaning never. */
static TimestampTz
earliest(TimestampTz a, TimestampTz b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return Min(a, b);
}

/*
 * Renew every lease whose last renewal is a third of its lifetime old.
 * Returns when the next one is due (0: there is none).
 */
static TimestampTz
renew_due_leases(MemoryContext tickcxt)
{
	TimestampTz next = 0;

	for (int b = 0; b < nbackends; b++)
	{
		for (int i = 0; i < LEASES_PER_BACKEND; i++)
		{
			BackendLeases *bl = &backend_leases[b];
			Lease		lease;
			char		url[LEASE_URL_LEN];
			TimestampTz now = GetCurrentTimestamp();
			TimestampTz due;

			SpinLockAcquire(&bl->mutex);
			lease = bl->leases[i];
			memcpy(url, bl->url, LEASE_URL_LEN);
			SpinLockRelease(&bl->mutex);
			if (!lease.used)
				continue;
			due = TimestampTzPlusMilliseconds(lease.renewed_at, lease.px_ms / 3);
			if (now < due)
			{
				next = earliest(next, due);
				continue;
			}

			/*
			 * Its backend is gone (a slot is a PGPROC's; an exited backend
			 * leaves its pid there): let the lock expire.
			 */
			if (BackendPidGetProc(lease.pid) != &ProcGlobal->allProcs[b])
			{
				SpinLockAcquire(&bl->mutex);
				if (bl->leases[i].used && bl->leases[i].pid == lease.pid &&
					strcmp(bl->leases[i].token, lease.token) == 0)
					bl->leases[i].used = false;
				SpinLockRelease(&bl->mutex);
				continue;
			}

			(void) StampedeRemoteRenew(url, lease.key, lease.token, lease.px_ms);
			MemoryContextReset(tickcxt);

			SpinLockAcquire(&bl->mutex);
			if (bl->leases[i].used && strcmp(bl->leases[i].token, lease.token) == 0)
				bl->leases[i].renewed_at = now;
			SpinLockRelease(&bl->mutex);
			next = earliest(next, TimestampTzPlusMilliseconds(now, lease.px_ms / 3));
		}
	}
	return next;
}

/*
 * When the worker next probes each Valkey that failed: every 250 ms for a
 * minute, then backing off to every 30 s for one that stays away (a URL a
 * session tried once, say), so that probing costs nothing worth counting.
 */
typedef struct Probe
{
	char		url[STAMPEDE_URL_LEN];
	TimestampTz next;
	TimestampTz since;			/* its first failed probe */
	int			interval_ms;
} Probe;

#define PROBES				4
#define PROBE_FIRST_MS		250
#define PROBE_MAX_MS		30000
#define PROBE_STEADY_MS		60000	/* probing every 250 ms for the first minute */

static Probe probes[PROBES];

static Probe *
probe_of(const char *url)
{
	Probe	   *oldest = &probes[0];

	for (int i = 0; i < PROBES; i++)
	{
		if (strcmp(probes[i].url, url) == 0)
			return &probes[i];
		if (probes[i].next < oldest->next)
			oldest = &probes[i];
	}
	strlcpy(oldest->url, url, STAMPEDE_URL_LEN);
	oldest->next = 0;
	oldest->since = 0;
	oldest->interval_ms = PROBE_FIRST_MS;
	return oldest;
}

/*
 * For each Valkey that failed or is owed something: is it back?  A PING
 * says (and, answered, ends the outage: see valkey.c); then pay it.
 * Returns when the next probe is due (0: none is).
 */
static TimestampTz
settle_outages(MemoryContext tickcxt)
{
	TimestampTz next = 0;
	char		urls[PROBES][STAMPEDE_URL_LEN];
	int			n = StampedeOutageUrls(urls, PROBES);
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < n; i++)
	{
		Probe	   *probe = probe_of(urls[i]);
		char	   *error;

		if (now < probe->next)
		{
			next = earliest(next, probe->next);
			continue;
		}
		if (StampedeValkeyProbe(urls[i], &error) && StampedeRemotePayOwed(urls[i]))
		{
			probe->url[0] = '\0';
			probe->next = 0;
			probe->since = 0;
		}
		else
		{
			/* Short outages are the common ones: back off only after a while. */
			if (probe->since == 0)
				probe->since = now;
			probe->next = TimestampTzPlusMilliseconds(now, probe->interval_ms);
			if (now >= TimestampTzPlusMilliseconds(probe->since, PROBE_STEADY_MS))
				probe->interval_ms = Min(probe->interval_ms * 2, PROBE_MAX_MS);
			next = earliest(next, probe->next);
		}
		MemoryContextReset(tickcxt);
	}
	return next;
}

/*
 * The background worker: renew, settle, then sleep until the next of them
 * is due or a backend wakes it, until the server stops.
 */
PGDLLEXPORT void StampedeLeaseWorkerMain(Datum arg);

void
StampedeLeaseWorkerMain(Datum arg)
{
	MemoryContext tickcxt;
	TimestampTz next = GetCurrentTimestamp();

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* Hashing the scripts' names for EVALSHA needs a resource owner. */
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "stampede lease renewer");
	tickcxt = AllocSetContextCreate(TopMemoryContext, "stampede lease tick",
									ALLOCSET_DEFAULT_SIZES);

	/*
	 * Its circuit breaker is its probe schedule (probe_of): a Valkey back
	 * after an outage should get its locks released and invalidations within
	 * a fraction of a second, not after the backends' retry interval.
	 */
	SetConfigOption("stampede.valkey_retry_interval", WORKER_RETRY_INTERVAL_MS,
					PGC_SUSET, PGC_S_OVERRIDE);

	/* A stale latch left by an exited worker is harmless: its PGPROC stays. */
	SpinLockAcquire(&worker->mutex);
	worker->latch = MyLatch;
	SpinLockRelease(&worker->mutex);
	StampedeOutageSettledBy(MyLatch);

	for (;;)
	{
		MemoryContext oldcxt;
		long		timeout = -1;
		int			events = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH;

		if (next != 0)
		{
			timeout = Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next), 0);
			events |= WL_TIMEOUT;
		}
		(void) WaitLatch(MyLatch, events, timeout, PG_WAIT_EXTENSION);
		/* Reset before the work: a wake-up during it is not lost. */
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		oldcxt = MemoryContextSwitchTo(tickcxt);
		StampedeValkeyNewCall();	/* each round is a call of its own */
		next = renew_due_leases(tickcxt);
		next = earliest(next, settle_outages(tickcxt));
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(tickcxt);
	}
}

void
StampedeLeaseWorkerRegister(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "stampede");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "StampedeLeaseWorkerMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "stampede lease renewer");
	snprintf(worker.bgw_type, BGW_MAXLEN, "stampede lease renewer");
	RegisterBackgroundWorker(&worker);
}
