/*-------------------------------------------------------------------------
 *
 * lease.h
 *	  Renewal of the Valkey locks of live leaders.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_LEASE_H
#define STAMPEDE_LEASE_H

#define STAMPEDE_LEASE_TOKEN_LEN 33

extern Size StampedeLeaseShmemSize(void);
extern void StampedeLeaseShmemInit(void);
extern void StampedeLeaseWorkerRegister(void);
extern int	StampedeLeaseAdd(const char *url, const char *key, const char *token, int64 px_ms);
extern void StampedeLeaseRemove(int slot);
extern void StampedeLeaseWakeWorker(void);

#endif							/* STAMPEDE_LEASE_H */
