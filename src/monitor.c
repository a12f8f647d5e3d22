/*-------------------------------------------------------------------------
 *
 * monitor.c
 *	  The SQL functions that report: stampede_stats_raw() (the counters of
 *	  stats.c and the local store's use, behind the stampede_stats view),
 *	  stampede_stats_reset(), and stampede_status() (where calls go now,
 *	  whether Valkey answers, the circuit breaker, the local store).
 *
 *	  Nothing calls into this file: it sits on top of the stores and the
 *	  counters, which know nothing of SQL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "guc.h"
#include "remote.h"
#include "stats.h"
#include "store.h"
#include "store_local.h"
#include "valkey.h"

/*
 * The columns of stampede_stats_raw() as each version of the extension's
 * SQL defines them.  A server runs one library for every database, and a
 * database's extension may be older than the library (ALTER EXTENSION
 * stampede UPDATE not run yet): each version's SQL names its own C entry
 * point, as pg_stat_statements does, and keeps answering.
 */
typedef enum StatsVersion
{
	STATS_V0_1,					/* 19 columns; refused entries in valkey_errors */
	STATS_V0_2					/* 20: valkey_rejected last (see the SQL) */
} StatsVersion;

/* A counter by its name in 0.1: valkey_errors then counted refused entries too. */
static int64
counter_of(const uint64 *sums, StampedeCounter counter, StatsVersion version)
{
	if (version == STATS_V0_1 && counter == STAT_VALKEY_ERRORS)
		return (int64) (sums[STAT_VALKEY_ERRORS] + sums[STAT_VALKEY_REJECTED]);
	return (int64) sums[counter];
}

/*
 * The raw counters and the store's gauges, in the columns of version; the
 * stampede_stats view adds the derived metrics.
 */
static Datum
stats_raw(FunctionCallInfo fcinfo, StatsVersion version)
{
	TupleDesc	tupdesc;
	Datum		values[1 + STAT_NUM_COUNTERS + 5];
	bool		nulls[1 + STAT_NUM_COUNTERS + 5] = {0};
	int			ncolumns = version == STATS_V0_1 ? 19 : 20;
	uint64		sums[STAT_NUM_COUNTERS];
	TimestampTz reset_time;
	StampedeLocalUsage usage;
	int			i;

	StampedeForgetDeadFrames();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != ncolumns)
		elog(ERROR, "stampede_stats_raw: expected %d columns, the SQL definition has %d",
			 ncolumns, tupdesc->natts);

	if (!StampedeStatsRead(sums, &reset_time))
	{
		for (i = 0; i < ncolumns; i++)
			nulls[i] = true;
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
	}

	/*
	 * requests, the counters of 0.1 in the order of StampedeCounter, the
	 * store's gauges, stats_reset; then the counters added since, each
	 * version's after the last, so that a column keeps its place.
	 */
	values[0] = Int64GetDatum((int64) (sums[STAT_HITS] + sums[STAT_MISSES]));
	for (i = 1; i <= STAT_VALKEY_REJECTED; i++)
		values[i] = Int64GetDatum(counter_of(sums, (StampedeCounter) (i - 1), version));

	StampedeLocalStoreUsage(&usage);
	values[i++] = Int64GetDatum(usage.entries);
	values[i++] = Int64GetDatum(usage.bytes_used);
	values[i++] = Int64GetDatum(usage.bytes_total);
	values[i++] = Int64GetDatum(usage.max_entries);
	values[i++] = TimestampTzGetDatum(reset_time);
	if (version >= STATS_V0_2)
		values[i++] = Int64GetDatum((int64) sums[STAT_VALKEY_REJECTED]);
	Assert(i == ncolumns);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* stampede_stats_raw() of a database whose extension is 0.1. */
PG_FUNCTION_INFO_V1(stampede_stats_raw);
Datum
stampede_stats_raw(PG_FUNCTION_ARGS)
{
	return stats_raw(fcinfo, STATS_V0_1);
}

/* stampede_stats_raw() from 0.2 on. */
PG_FUNCTION_INFO_V1(stampede_stats_raw_0_2);
Datum
stampede_stats_raw_0_2(PG_FUNCTION_ARGS)
{
	return stats_raw(fcinfo, STATS_V0_2);
}

PG_FUNCTION_INFO_V1(stampede_stats_reset);
Datum
stampede_stats_reset(PG_FUNCTION_ARGS)
{
	StampedeForgetDeadFrames();
	StampedeStatsReset();
	PG_RETURN_VOID();
}

/*
 * stampede_status(): what stampede uses now, whether Valkey answers, the
 * circuit breaker's state and the local store's use.
 */
PG_FUNCTION_INFO_V1(stampede_status);
Datum
stampede_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[9];
	bool		nulls[9] = {0};
	StampedeLocalUsage usage;
	char	   *error = NULL;
	bool		configured = StampedeRemoteConfigured();
	bool		reachable;

	StampedeForgetDeadFrames();
	StampedeRemoteNewCall();
	reachable = configured && StampedeValkeyPing(stampede_valkey_url, &error);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	values[0] = CStringGetTextDatum(StampedeStoreMode(reachable));
	values[1] = BoolGetDatum(configured);
	values[2] = BoolGetDatum(reachable);
	nulls[2] = !configured;
	values[3] = CStringGetTextDatum(!configured ? "none" :
									StampedeValkeyCircuitOpen(stampede_valkey_url) ?
									"open" : "closed");
	values[4] = error && configured ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[4] = !(error && configured);
	StampedeLocalStoreUsage(&usage);
	values[5] = Int64GetDatum(usage.entries);
	values[6] = Int64GetDatum(usage.bytes_used);
	values[7] = Int64GetDatum(usage.bytes_total);
	values[8] = BoolGetDatum(StampedeStoreAvailable());
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
