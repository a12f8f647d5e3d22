/*-------------------------------------------------------------------------
 *
 * wait.c
 *	  How a waiter's wait ends, the same whether it waits for another
 *	  session of this server (flight.c) or for another server (remote.c):
 *	  stampede.max_wait passing, the session's lock_timeout, or the error
 *	  its leader's query raised.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/proc.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "stats.h"
#include "wait.h"

/* When a wait that begins now must end, by stampede.max_wait; 0: never. */
TimestampTz
StampedeMaxWaitDeadline(void)
{
	if (stampede_max_wait_ms <= 0)
		return 0;
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), stampede_max_wait_ms);
}

/*
 * stampede.max_wait passed while waiting for the leader of key, on this
 * server or another: raises, or returns for the caller to run the query
 * itself, storing nothing (stampede.wait_timeout_action).
 */
void
StampedeMaxWaitPassed(const char *key, bool across_servers)
{
	StampedeStatsCount(STAT_TIMEOUTS);
	if (stampede_wait_timeout_action != STAMPEDE_ON_TIMEOUT_ERROR)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
			 across_servers ?
			 errmsg("timed out waiting for another server to compute stampede key \"%s\"", key) :
			 errmsg("timed out waiting for another session to compute stampede key \"%s\"", key),
			 errdetail("stampede.max_wait (%d ms) passed.", stampede_max_wait_ms),
			 errhint("Raise stampede.max_wait, or set stampede.wait_timeout_action to 'execute'.")));
}

/* A wait ended by the session's lock_timeout: which key, and who leads it (0: another server). */
void
StampedeRaiseLockTimeout(const char *key, int leader_pid)
{
	ereport(ERROR,
			(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
			 errmsg("canceling wait for stampede key \"%s\" due to lock timeout", key),
			 leader_pid > 0 ?
			 errdetail("Process %d is computing it; lock_timeout is %d ms.", leader_pid, LockTimeout) :
			 errdetail("Another server is computing it; lock_timeout is %d ms.", LockTimeout),
			 errhint("Raise lock_timeout, or bound the wait with stampede.max_wait instead.")));
	pg_unreachable();
}

/*
 * Raise, in a waiter, the error its leader's query raised, once the waiter
 * was found to be one that may see it (see flight.c, which counts it).
 */
void
StampedeRaiseLeadersError(const char *key, const StampedeLeaderError *error)
{
	ereport(ERROR,
			(errcode(error->sqlerrcode),
			 errmsg_internal("%s", error->message),
			 error->detail ? errdetail_internal("%s", error->detail) : 0,
			 error->hint ? errhint("%s", error->hint) : 0,
			 errcontext("stampede key \"%s\": raised by the query run for it by process %d",
						key, error->leader_pid)));
	pg_unreachable();
}
