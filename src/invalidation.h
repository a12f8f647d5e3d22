/*-------------------------------------------------------------------------
 *
 * invalidation.h
 *	  Which invalidations a fill must have seen before it may store.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_INVALIDATION_H
#define STAMPEDE_INVALIDATION_H

#include "postgres.h"

#include "access/transam.h"
#include "utils/snapshot.h"

extern Size StampedeInvalShmemSize(void);
extern void StampedeInvalShmemInit(void);
extern FullTransactionId StampedeInvalRecord(Oid dbid, uint64 keyhash);
extern bool StampedeInvalSeenBy(Oid dbid, uint64 keyhash, Snapshot snapshot);
extern bool StampedeXidSeenBy(FullTransactionId xid, Snapshot snapshot);

#endif							/* STAMPEDE_INVALIDATION_H */
