/*-------------------------------------------------------------------------
 *
 * wait.h
 *	  How a waiter's wait ends: stampede.max_wait, lock_timeout, or the
 *	  leader's error.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_WAIT_H
#define STAMPEDE_WAIT_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* The error a leader's query raised, as a waiter re-raises it. */
typedef struct StampedeLeaderError
{
	int			sqlerrcode;
	char	   *message;
	char	   *detail;
	char	   *hint;
	int			leader_pid;
} StampedeLeaderError;

extern TimestampTz StampedeMaxWaitDeadline(void);
extern void StampedeMaxWaitPassed(const char *key, bool across_servers);
extern pg_attribute_noreturn() void StampedeRaiseLockTimeout(const char *key, int leader_pid);
extern pg_attribute_noreturn() void StampedeRaiseLeadersError(const char *key,
															  const StampedeLeaderError *error);

#endif							/* STAMPEDE_WAIT_H */
