/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The lease worker, a background worker: renews the Valkey locks of live
 *	  leaders (lease.c), and settles what a Valkey outage left (outage.c):
 *	  it probes a Valkey that failed until it answers, then sends the
 *	  invalidations and lock releases this server owes it (remote.c).
 *	  Backends pay the same way before they read a key with an
 *	  invalidation owed.
 *
 *	  It sleeps until the next lease is due or the next probe, and for good
 *	  while there is neither: a backend that adds a lease, and one that sees
 *	  an outage begin or owes Valkey something, sets its latch.  An idle
 *	  server costs nothing.
 *
 *	  Each lease and each debt names the Valkey it is for; the worker talks
 *	  to each by that URL (valkey.c takes it per call).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "lease.h"
#include "outage.h"
#include "remote.h"
#include "valkey.h"
#include "worker.h"

/* How often the worker's commands may retry a Valkey that failed (its circuit). */
#define WORKER_RETRY_INTERVAL_MS	"250"

/* Leases renewed per round, at most. */
#define DUE_BATCH			64

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
 * Renew every lease that is due.  Returns when the next one is (0: there
 * is none).
 */
static TimestampTz
renew_due_leases(MemoryContext roundcxt)
{
	StampedeDueLease *due = palloc(sizeof(StampedeDueLease) * DUE_BATCH);
	TimestampTz next;
	int			n = StampedeLeasesDue(due, DUE_BATCH, &next);

	for (int i = 0; i < n; i++)
	{
		TimestampTz now = GetCurrentTimestamp();

		(void) StampedeRemoteRenew(due[i].url, due[i].key, due[i].token, due[i].px_ms);
		next = earliest(next, StampedeLeaseRenewed(&due[i], now));
	}
	/* More were due than a batch: go on at once. */
	if (n == DUE_BATCH)
		next = GetCurrentTimestamp();
	pfree(due);
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
settle_outages(MemoryContext roundcxt)
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
			/* From when it failed: its circuit opened then, for as long. */
			probe->next = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), probe->interval_ms);
			if (now >= TimestampTzPlusMilliseconds(probe->since, PROBE_STEADY_MS))
				probe->interval_ms = Min(probe->interval_ms * 2, PROBE_MAX_MS);
			next = earliest(next, probe->next);
		}
		MemoryContextReset(roundcxt);
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
	MemoryContext roundcxt;
	TimestampTz next = GetCurrentTimestamp();

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* Hashing the scripts' names for EVALSHA needs a resource owner. */
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "stampede lease renewer");
	roundcxt = AllocSetContextCreate(TopMemoryContext, "stampede lease round",
									 ALLOCSET_DEFAULT_SIZES);

	/*
	 * A Valkey back after an outage should get its locks released and
	 * invalidations within a fraction of a second, not after the backends'
	 * retry interval.
	 */
	SetConfigOption("stampede.valkey_retry_interval", WORKER_RETRY_INTERVAL_MS,
					PGC_SUSET, PGC_S_OVERRIDE);
	StampedeLeaseWorkerLatch(MyLatch);
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
		/* Reset before the round: a wake-up during it is not lost. */
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		oldcxt = MemoryContextSwitchTo(roundcxt);

		/*
		 * An error in a round (out of memory, say) must not end the worker:
		 * while it is restarted, leaders' locks go unrenewed.  Logged, and
		 * the round is tried again in a second.
		 */
		PG_TRY();
		{
			StampedeValkeyNewCall();	/* each round is a call of its own */
			next = renew_due_leases(roundcxt);
			next = earliest(next, settle_outages(roundcxt));
		}
		PG_CATCH();
		{
			StampedeForgetDeadFrames();
			MemoryContextSwitchTo(oldcxt);
			EmitErrorReport();
			FlushErrorState();
			LWLockReleaseAll();
			next = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(roundcxt);
	}
}

void
StampedeWorkerRegister(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS;
	bgw.bgw_start_time = BgWorkerStart_ConsistentState;
	/* Restarted at once: leaders' locks are not renewed while it is away. */
	bgw.bgw_restart_time = 1;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "stampede");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "StampedeLeaseWorkerMain");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "stampede lease renewer");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "stampede lease renewer");
	RegisterBackgroundWorker(&bgw);
}
