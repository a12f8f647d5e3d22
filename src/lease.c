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
 *	  When the backend ends its flight, or exits, the slot is emptied and the
 *	  renewals stop; a crashed server's locks then expire as they should.
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
#include "valkey.h"

#define LEASES_PER_BACKEND	4
#define LEASE_KEY_LEN		256
#define LEASE_URL_LEN		1024
#define LEASE_TICK_MS		50

typedef struct Lease
{
	bool		used;
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

/* The background worker: renew, tick, until the server stops. */
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
	for (;;)
	{
		MemoryContext oldcxt;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LEASE_TICK_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		oldcxt = MemoryContextSwitchTo(tickcxt);
		renew_due_leases(tickcxt);
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
