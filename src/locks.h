/*-------------------------------------------------------------------------
 *
 * locks.h
 *	  The LWLocks of stampede's shared memory, by name: one tranche
 *	  ("stampede"), one slot per structure that needs one.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_LOCKS_H
#define STAMPEDE_LOCKS_H

#include "postgres.h"

#include "storage/lwlock.h"

#define STAMPEDE_LWLOCK_TRANCHE "stampede"

typedef enum StampedeLockSlot
{
	STAMPEDE_LOCK_STORE,		/* store_local.c: the entries and their chunks */
	STAMPEDE_LOCK_FLIGHTS,		/* flight.c: the single-flight table */
	STAMPEDE_LOCK_INVALIDATIONS,	/* invalidation.c: invalidating transactions */
	STAMPEDE_LOCK_OUTAGES,		/* outage.c: what outages left owed */
	STAMPEDE_NUM_LOCKS
} StampedeLockSlot;

/* The LWLock of slot; only once the tranche exists (at shared memory startup). */
static inline LWLock *
StampedeLock(StampedeLockSlot slot)
{
	return &(GetNamedLWLockTranche(STAMPEDE_LWLOCK_TRANCHE))[slot].lock;
}

#endif							/* STAMPEDE_LOCKS_H */
