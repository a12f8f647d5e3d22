/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Server-wide counters in shared memory, and the SQL functions that read
 *	  and reset them.
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

#include "access/htup_details.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "stats.h"
#include "store_local.h"

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

/* Every counter since the last reset. */
static void
stats_read(uint64 *sums, TimestampTz *reset_time)
{
	stats_sum(sums);
	SpinLockAcquire(&stats->mutex);
	for (int i = 0; i < STAT_NUM_COUNTERS; i++)
		sums[i] -= Min(sums[i], stats->baseline[i]);
	*reset_time = stats->reset_time;
	SpinLockRelease(&stats->mutex);
}

/*
 * stampede_stats_raw() returns the raw counters and the store's gauges; the
 * stampede_stats view adds the derived metrics.
 */
PG_FUNCTION_INFO_V1(stampede_stats_raw);
Datum
stampede_stats_raw(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[1 + STAT_NUM_COUNTERS + 5];
	bool		nulls[1 + STAT_NUM_COUNTERS + 5] = {0};
	uint64		sums[STAT_NUM_COUNTERS];
	TimestampTz reset_time;
	StampedeStoreUsage usage;
	int			i;

	StampedeForgetDeadFrames();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != lengthof(values))
		elog(ERROR, "stampede_stats_raw: expected %d columns, the SQL definition has %d",
			 (int) lengthof(values), tupdesc->natts);

	if (stats == NULL)
	{
		for (i = 0; i < lengthof(nulls); i++)
			nulls[i] = true;
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
	}

	stats_read(sums, &reset_time);
	values[0] = Int64GetDatum((int64) (sums[STAT_HITS] + sums[STAT_MISSES]));
	for (i = 1; i <= STAT_NUM_COUNTERS; i++)
		values[i] = Int64GetDatum((int64) sums[i - 1]);

	StampedeStoreGetUsage(&usage);
	values[i++] = Int64GetDatum(usage.entries);
	values[i++] = Int64GetDatum(usage.bytes_used);
	values[i++] = Int64GetDatum(usage.bytes_total);
	values[i++] = Int64GetDatum(usage.max_entries);
	values[i++] = TimestampTzGetDatum(reset_time);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(stampede_stats_reset);
Datum
stampede_stats_reset(PG_FUNCTION_ARGS)
{
	uint64		sums[STAT_NUM_COUNTERS];

	StampedeForgetDeadFrames();
	if (stats == NULL)
		PG_RETURN_VOID();
	stats_sum(sums);
	SpinLockAcquire(&stats->mutex);
	memcpy(stats->baseline, sums, sizeof(sums));
	stats->reset_time = GetCurrentTimestamp();
	SpinLockRelease(&stats->mutex);
	PG_RETURN_VOID();
}
