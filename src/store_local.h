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

#include "store_key.h"

/* What the entries take, for stampede_stats and stampede_status(). */
typedef struct StampedeLocalUsage
{
	int64		entries;
	int64		bytes_used;		/* what the entries cost, overhead included */
	int64		bytes_total;
	int64		max_entries;
} StampedeLocalUsage;

extern Size StampedeLocalStoreShmemSize(void);
extern void StampedeLocalStoreShmemInit(void);
extern bool StampedeLocalStoreAvailable(void);

extern char *StampedeLocalStoreGet(const StampedeStoreKey *key, Size *len, uint64 outage);
extern bool StampedeLocalStorePut(const StampedeStoreKey *key, const char *data, Size len,
								  TimestampTz expires_at, uint64 outage);
extern int	StampedeLocalStoreDeleteKey(Oid dbid, uint64 hash);
extern void StampedeLocalStoreUsage(StampedeLocalUsage *usage);
extern void StampedeLocalStoreReleaseLockIfHeld(void);

#endif							/* STAMPEDE_STORE_LOCAL_H */
