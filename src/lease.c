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
 *	  invalidations and lock releases this server owes it.  Backends pay
 *	  the same way before they read a key with an invalidation owed
 *	  (StampedeValkeyPayOwed).
 *
 *	  Locking: each backend's slot has a spinlock, held only to copy a few
 *	  strings in or out.
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
#include "valkey.h"

#define LEASES_PER_BACKEND	4
#define LEASE_KEY_LEN		256
#define LEASE_URL_LEN		STAMPEDE_URL_LEN
#define OWED_BATCH			64
#define PROBE_INTERVAL_MS	"250"	/* how often the worker retries a failed Valkey */
#define LEASE_TICK_MS		50

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

static BackendLeases *backend_leases = NULL;
static int	nbackends = 0;

Size
StampedeLeaseShmemSize(void)
{
	return mul_size(StampedeMaxBackends(), sizeof(BackendLeases));
}

void
StampedeLeaseShmemInit(void)
{
	bool		found;

	nbackends = StampedeMaxBackends();
	backend_leases = ShmemInitStruct("stampede leases", StampedeLeaseShmemSize(), &found);
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
 * Publish a lock this backend now holds, for renewal.  Returns its slot,
 * or -1 when none is free (the lock is then not renewed).
 */
int
StampedeLeaseAdd(const char *key, const char *token, int64 px_ms)
{
	BackendLeases *mine = my_leases();
	int			slot = -1;

	if (mine == NULL || strlen(key) >= LEASE_KEY_LEN ||
		strlen(stampede_valkey_url) >= LEASE_URL_LEN)
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

		strlcpy(mine->url, stampede_valkey_url, LEASE_URL_LEN);
		strlcpy(lease->key, key, LEASE_KEY_LEN);
		strlcpy(lease->token, token, STAMPEDE_LEASE_TOKEN_LEN);
		lease->pid = MyProcPid;
		lease->px_ms = px_ms;
		lease->renewed_at = GetCurrentTimestamp();
		lease->used = true;
	}
	SpinLockRelease(&mine->mutex);
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

/* Renew every lease whose last renewal is a third of its lifetime old. */
static void
renew_due_leases(MemoryContext tickcxt)
{
	for (int b = 0; b < nbackends; b++)
	{
		for (int i = 0; i < LEASES_PER_BACKEND; i++)
		{
			BackendLeases *bl = &backend_leases[b];
			Lease		lease;
			char		url[LEASE_URL_LEN];
			TimestampTz now = GetCurrentTimestamp();

			SpinLockAcquire(&bl->mutex);
			lease = bl->leases[i];
			memcpy(url, bl->url, LEASE_URL_LEN);
			SpinLockRelease(&bl->mutex);
			if (!lease.used ||
				now < TimestampTzPlusMilliseconds(lease.renewed_at, lease.px_ms / 3))
				continue;

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

			SetConfigOption("stampede.valkey_url", url, PGC_SUSET, PGC_S_OVERRIDE);
			(void) StampedeValkeyRenew(lease.key, lease.token, lease.px_ms);
			MemoryContextReset(tickcxt);

			SpinLockAcquire(&bl->mutex);
			if (bl->leases[i].used && strcmp(bl->leases[i].token, lease.token) == 0)
				bl->leases[i].renewed_at = now;
			SpinLockRelease(&bl->mutex);
		}
	}
}

/*
 * Send Valkey (the one stampede.valkey_url names now) what this server owes
 * it: invalidations that could not be sent, releases of locks whose
 * leaders could not let go.  True when nothing is owed to it any more.
 */
bool
StampedeValkeyPayOwed(void)
{
	StampedeOwed *owed;
	int			n;
	bool		all = true;

	if (!StampedeOutageAnyOwed() || !StampedeValkeyConfigured())
		return true;
	owed = palloc(sizeof(StampedeOwed) * OWED_BATCH);
	n = StampedeOutageOwedTo(stampede_valkey_url, owed, OWED_BATCH);
	for (int i = 0; i < n && all; i++)
	{
		StampedeValkeyKeys keys;
		bool		deleted;

		StampedeValkeyKeysOf(owed[i].prefix, owed[i].variant, &keys);
		if (owed[i].kind == STAMPEDE_OWE_INVALIDATION)
			all = StampedeValkeyInvalidate(&keys, owed[i].arg, &deleted);
		else
			all = StampedeValkeyStoreAndUnlock(&keys, keys.value, "", NULL, 0, 1,
											   owed[i].arg, "0");
		if (all)
			StampedeOutagePaid(stampede_valkey_url, &owed[i]);
	}
	pfree(owed);
	return all && n < OWED_BATCH;
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
 */
static void
settle_outages(MemoryContext tickcxt)
{
	char		urls[PROBES][STAMPEDE_URL_LEN];
	int			n = StampedeOutageUrls(urls, PROBES);
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < n; i++)
	{
		Probe	   *probe = probe_of(urls[i]);
		char	   *error;

		if (now < probe->next)
			continue;
		SetConfigOption("stampede.valkey_url", urls[i], PGC_SUSET, PGC_S_OVERRIDE);
		if (StampedeValkeyProbe(&error) && StampedeValkeyPayOwed())
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
		}
		MemoryContextReset(tickcxt);
	}
}

/* The background worker: renew, settle, tick, until the server stops. */
PGDLLEXPORT void StampedeLeaseWorkerMain(Datum arg);

void
StampedeLeaseWorkerMain(Datum arg)
{
	MemoryContext tickcxt;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* Hashing the scripts' names for EVALSHA needs a resource owner. */
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "stampede lease renewer");
	tickcxt = AllocSetContextCreate(TopMemoryContext, "stampede lease tick",
									ALLOCSET_DEFAULT_SIZES);

	/*
	 * Its circuit breaker is its probe: a Valkey back after an outage should
	 * get its locks released and invalidations within a fraction of a second,
	 * not after the backends' retry interval.
	 */
	SetConfigOption("stampede.valkey_retry_interval", PROBE_INTERVAL_MS,
					PGC_SUSET, PGC_S_OVERRIDE);
	for (;;)
	{
		MemoryContext oldcxt;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LEASE_TICK_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		oldcxt = MemoryContextSwitchTo(tickcxt);
		StampedeValkeyNewCall();	/* each tick is a call of its own */
		renew_due_leases(tickcxt);
		settle_outages(tickcxt);
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
