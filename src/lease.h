/*-------------------------------------------------------------------------
 *
 * lease.h
 *	  The Valkey locks of live leaders, published for renewal.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_LEASE_H
#define STAMPEDE_LEASE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/latch.h"

#include "outage.h"

#define STAMPEDE_LEASE_TOKEN_LEN 33
#define STAMPEDE_LEASE_KEY_LEN	256

/* A lease due for renewal, copied out of its slot. */
typedef struct StampedeDueLease
{
	int			backend;
	int			slot;
	char		url[STAMPEDE_URL_LEN];
	char		key[STAMPEDE_LEASE_KEY_LEN];
	char		token[STAMPEDE_LEASE_TOKEN_LEN];
	int64		px_ms;
} StampedeDueLease;

extern Size StampedeLeaseShmemSize(void);
extern void StampedeLeaseShmemInit(void);
extern int	StampedeLeaseAdd(const char *url, const char *key, const char *token, int64 px_ms);
extern void StampedeLeaseRemove(int slot);
extern void StampedeLeaseWorkerLatch(Latch *latch);
extern int	StampedeLeasesDue(StampedeDueLease *due, int max, TimestampTz *next);
extern TimestampTz StampedeLeaseRenewed(const StampedeDueLease *due, TimestampTz renewed_at);

#endif							/* STAMPEDE_LEASE_H */
