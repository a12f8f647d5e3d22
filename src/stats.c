/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Server-wide counters in shared memory (monitor.c reports them).
 *
 *	  Each backend counts in a slot of its own (indexed by its PGPROC number,
 *	  a cache line apart from the others), written only by that backend, so
 *	  the hit path bumps a counter without an atomic read-modify-write and
 *	  without pulling a cache line from another core.  Readers add up the
 *	  slots.  A reset does not touch the slots (their owners may be writing):
 *	  it records the current sums as a baseline that reads subtract.
 *
 *	  The derived metrics (api_call_reduction_pct and the like) are computed
 *	  by the stampede_stats view in SQL, from these raw counters.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "stats.h"

typedef union StatsSlot
{
	pg_atomic_uint64 counters[STAT_NUM_COUNTERS];
	char		pad[TYPEALIGN(PG_CACHE_LINE_SIZE, sizeof(pg_atomic_uint64) * STAT_NUM_COUNTERS)];
} StatsSlot;

typedef struct StampedeStatsShared
{
	slock_t		mutex;			/* protects baseline and reset_time */
	uint64		baseline[STAT_NUM_COUNTERS];
	TimestampTz reset_time;
	int			nslots;
	StatsSlot	slots[FLEXIBLE_ARRAY_MEMBER];	/* one per backend, and a shared
												 * last one for any other */
} StampedeStatsShared;

static StampedeStatsShared *stats = NULL;

static int
stats_nslots(void)
{
	return StampedeMaxBackends() + 1;
}

Size
StampedeStatsShmemSize(void)
{
	return add_size(CACHELINEALIGN(offsetof(StampedeStatsShared, slots)),
					mul_size(stats_nslots(), sizeof(StatsSlot)));
}

void
StampedeStatsShmemInit(void)
{
	bool		found;

	stats = ShmemInitStruct("stampede stats", StampedeStatsShmemSize(), &found);
	if (!found)
	{
		SpinLockInit(&stats->mutex);
		memset(stats->baseline, 0, sizeof(stats->baseline));
		stats->reset_time = GetCurrentTimestamp();
		stats->nslots = stats_nslots();
		for (int s = 0; s < stats->nslots; s++)
			for (int i = 0; i < STAT_NUM_COUNTERS; i++)
				pg_atomic_init_u64(&stats->slots[s].counters[i], 0);
	}
}

void
StampedeStatsAdd(StampedeCounter counter, uint64 value)
{
	int			slot;

	if (stats == NULL || value == 0)
		return;
	slot = MyProc != NULL ? StampedeMyProcNumber() : -1;
	if (slot >= 0 && slot < stats->nslots - 1)
	{
		pg_atomic_uint64 *c = &stats->slots[slot].counters[counter];

		/* Only this backend writes its slot: no read-modify-write needed. */
		pg_atomic_write_u64(c, pg_atomic_read_u64(c) + value);
	}
	else
		pg_atomic_fetch_add_u64(&stats->slots[stats->nslots - 1].counters[counter], value);
}

/* Every counter summed over the slots. */
static void
stats_sum(uint64 *sums)
{
	memset(sums, 0, sizeof(uint64) * STAT_NUM_COUNTERS);
	for (int s = 0; s < stats->nslots; s++)
		for (int i = 0; i < STAT_NUM_COUNTERS; i++)
			sums[i] += pg_atomic_read_u64(&stats->slots[s].counters[i]);
}

/*
 * Every counter since the last reset, and when that was.  False when there
 * are no counters (not preloaded).
 */
bool
StampedeStatsRead(uint64 *sums, TimestampTz *reset_time)
{
	if (stats == NULL)
		return false;
	stats_sum(sums);
	SpinLockAcquire(&stats->mutex);
	for (int i = 0; i < STAT_NUM_COUNTERS; i++)
		sums[i] -= Min(sums[i], stats->baseline[i]);
	*reset_time = stats->reset_time;
	SpinLockRelease(&stats->mutex);
	return true;
}

/*
 * Start counting from zero.  The slots are not touched (their owners may
 * be writing): the sums now become the baseline that reads subtract.
 */
void
StampedeStatsReset(void)
{
	uint64		sums[STAT_NUM_COUNTERS];

	if (stats == NULL)
		return;
	stats_sum(sums);
	SpinLockAcquire(&stats->mutex);
	memcpy(stats->baseline, sums, sizeof(sums));
	stats->reset_time = GetCurrentTimestamp();
	SpinLockRelease(&stats->mutex);
}
