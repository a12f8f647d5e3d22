/*-------------------------------------------------------------------------
 *
 * store.h
 *	  The one seam through which reads, writes and invalidation reach a
 *	  store: this server's shared memory, or Valkey.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_STORE_H
#define STAMPEDE_STORE_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "remote.h"
#include "store_key.h"

extern bool StampedeStoreAvailable(void);
extern char *StampedeStoreRead(const StampedeStoreKey *skey, Size *len, bool *from_valkey,
							   StampedeTrust *trust);
extern void StampedeStoreServed(const char *data, Size len, bool from_valkey,
								StampedeTrust trust);
extern bool StampedeStorePutLocal(const StampedePut *put, TimestampTz expires_at,
								  uint64 flight_outage);
extern bool StampedeStoreRemoveLocal(Oid dbid, uint64 hash);
extern void StampedeStoreReleaseLocks(void);
extern const char *StampedeStoreMode(bool valkey_answers);

#endif							/* STAMPEDE_STORE_H */
