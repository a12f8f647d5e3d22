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

/* An entry's identity; hash covers the caller's key and the entry's kind. */
typedef struct StampedeStoreKey
{
	Oid			dbid;
	Oid			roleid;			/* InvalidOid unless rows are kept per role */
	uint64		hash;
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

extern char *StampedeStoreGet(const StampedeStoreKey *key, Size *len);
extern bool StampedeStorePut(const StampedeStoreKey *key, const char *data, Size len,
							 TimestampTz expires_at);
extern bool StampedeStoreDelete(const StampedeStoreKey *key);
extern int	StampedeStoreDeleteAllRoles(Oid dbid, uint64 hash);
extern void StampedeStoreGetUsage(StampedeStoreUsage *usage);
extern void StampedeStoreReleaseLockIfHeld(void);

#endif							/* STAMPEDE_STORE_LOCAL_H */
