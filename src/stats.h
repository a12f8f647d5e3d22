/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Server-wide counters behind the stampede_stats view.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_STATS_H
#define STAMPEDE_STATS_H

#include "postgres.h"

#include "datatype/timestamp.h"

typedef enum StampedeCounter
{
	STAT_HITS,					/* answered from the store without waiting */
	STAT_MISSES,				/* not in the store at first look; requests
								 * are hits + misses, so a hit pays one add */
	STAT_EXECUTIONS,			/* the query really ran */
	STAT_LOCK_WAITS,			/* calls that waited for another's execution */
	STAT_WAIT_TIME_US,			/* time spent in those waits */
	STAT_TIMEOUTS,				/* waits that reached stampede.max_wait */
	STAT_FALLBACKS,				/* calls served by the fallback path */
	STAT_ERRORS,				/* calls that ended in an error of the query */
	STAT_NOT_STORED,			/* results too large to store */
	STAT_EVICTIONS,				/* entries dropped to make room */
	STAT_INVALIDATIONS,			/* entries removed by stampede_invalidate */
	STAT_VALKEY_HITS,			/* calls answered with rows read from Valkey */
	STAT_VALKEY_ERRORS,			/* Valkey commands that failed or timed out */
	STAT_VALKEY_REJECTED,		/* calls that refused an entry read from
								 * Valkey: not sealed with our secret, or
								 * changed */
	STAT_NUM_COUNTERS
} StampedeCounter;

extern Size StampedeStatsShmemSize(void);
extern void StampedeStatsShmemInit(void);
extern void StampedeStatsAdd(StampedeCounter counter, uint64 value);
extern bool StampedeStatsRead(uint64 *sums, TimestampTz *reset_time);
extern void StampedeStatsReset(void);

#define StampedeStatsCount(counter) StampedeStatsAdd((counter), 1)

#endif							/* STAMPEDE_STATS_H */
