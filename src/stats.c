/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Server-wide counters kept in shared memory as atomics, so that the hit
 *	  path pays one uncontended atomic add per counter and never a lock, and
 *	  the SQL functions that read and reset them.
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
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "stats.h"
#include "store_local.h"

typedef struct StampedeStatsShared
{
	pg_atomic_uint64 counters[STAT_NUM_COUNTERS];
	pg_atomic_uint64 reset_time;	/* TimestampTz of the last reset */
} StampedeStatsShared;

static StampedeStatsShared *stats = NULL;

Size
StampedeStatsShmemSize(void)
{
	return MAXALIGN(sizeof(StampedeStatsShared));
}

void
StampedeStatsShmemInit(void)
{
	bool		found;

	stats = ShmemInitStruct("stampede stats", StampedeStatsShmemSize(), &found);
	if (!found)
	{
		for (int i = 0; i < STAT_NUM_COUNTERS; i++)
			pg_atomic_init_u64(&stats->counters[i], 0);
		pg_atomic_init_u64(&stats->reset_time, (uint64) GetCurrentTimestamp());
	}
}

void
StampedeStatsAdd(StampedeCounter counter, uint64 value)
{
	if (stats != NULL)
		pg_atomic_fetch_add_u64(&stats->counters[counter], value);
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
	Datum		values[STAT_NUM_COUNTERS + 5];
	bool		nulls[STAT_NUM_COUNTERS + 5] = {0};
	StampedeStoreUsage usage;
	int			i;

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

	for (i = 0; i < STAT_NUM_COUNTERS; i++)
		values[i] = Int64GetDatum((int64) pg_atomic_read_u64(&stats->counters[i]));

	StampedeStoreGetUsage(&usage);
	values[i++] = Int64GetDatum(usage.entries);
	values[i++] = Int64GetDatum(usage.bytes_used);
	values[i++] = Int64GetDatum(usage.bytes_total);
	values[i++] = Int64GetDatum(usage.max_entries);
	values[i++] = TimestampTzGetDatum((TimestampTz) pg_atomic_read_u64(&stats->reset_time));

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(stampede_stats_reset);
Datum
stampede_stats_reset(PG_FUNCTION_ARGS)
{
	if (stats == NULL)
		PG_RETURN_VOID();
	for (int i = 0; i < STAT_NUM_COUNTERS; i++)
		pg_atomic_write_u64(&stats->counters[i], 0);
	pg_atomic_write_u64(&stats->reset_time, (uint64) GetCurrentTimestamp());
	PG_RETURN_VOID();
}
