/*-------------------------------------------------------------------------
 *
 * store_local.h
 *	  The server's own result store in shared memory: the embedded default,
 *	  and the fallback when a remote store is unreachable.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_STORE_LOCAL_H
#define STAMPEDE_STORE_LOCAL_H

#include "postgres.h"

#include "datatype/timestamp.h"

/*
 * Where an entry lives: hash covers the caller's key and the entry's kind;
 * variant, the call's identity (the same key with another query, search
 * path or settings is another variant); scope, the users and settings the
 * rows are kept for (0: shared).  The entry itself holds the whole identity,
 * which a hit compares.
 */
typedef struct StampedeStoreKey
{
	Oid			dbid;
	uint32		pad;			/* zero: keys are compared as bytes */
	uint64		hash;
	uint64		variant;
	uint64		scope;
} StampedeStoreKey;

typedef struct StampedeStoreUsage
{
	int64		entries;
	int64		bytes_used;		/* what the entries cost, overhead included */
	int64		bytes_total;
	int64		max_entries;
} StampedeStoreUsage;

extern Size StampedeStoreShmemSize(void);
extern void StampedeStoreShmemInit(void);
extern bool StampedeStoreAvailable(void);

extern char *StampedeStoreGet(const StampedeStoreKey *key, Size *len, uint64 outage);
extern bool StampedeStorePut(const StampedeStoreKey *key, const char *data, Size len,
							 TimestampTz expires_at, uint64 outage);
extern int	StampedeStoreDeleteKey(Oid dbid, uint64 hash);
extern void StampedeStoreGetUsage(StampedeStoreUsage *usage);
extern void StampedeStoreReleaseLockIfHeld(void);

#endif							/* STAMPEDE_STORE_LOCAL_H */
