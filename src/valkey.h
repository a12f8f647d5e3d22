/*-------------------------------------------------------------------------
 *
 * valkey.h
 *	  This backend's connection to Valkey.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_VALKEY_H
#define STAMPEDE_VALKEY_H

/*
 * The Valkey names of one stampede key (flight.c makes them).  Their hash
 * tags are the same, so that they all fall in one Valkey Cluster slot.
 */
typedef struct StampedeValkeyKeys
{
	char	   *value;			/* the call's entry (scope 0) */
	char	   *lock;			/* the single-flight lock of the call */
	char	   *error;			/* the leader's error, for a short while */
	char	   *channel;		/* where the leader says it is done */
	char	   *generation;		/* the key's, bumped by stampede_invalidate */
	char	   *roles;			/* the key's list of entries, every variant's */
	char	   *invalidations;	/* the key's last invalidating transactions */
	char	   *prefix;			/* an entry is prefix || member || ":v" */
} StampedeValkeyKeys;

extern void StampedeValkeyKeysOf(const char *prefix, uint64 variant, StampedeValkeyKeys *keys);
extern bool StampedeValkeyConfigured(void);
extern bool StampedeValkeyPing(char **error);
extern bool StampedeValkeyProbe(char **error);
extern bool StampedeValkeyCircuitOpen(void);
extern void StampedeValkeyNewCall(void);
extern bool StampedeValkeyUsable(void);
extern bool StampedeValkeyGet(int nkeys, const char **keys, char **values, Size *lens);
extern bool StampedeValkeySet(const char *key, const char *value, Size len, int64 px_ms,
							  bool nx, bool *set);
extern bool StampedeValkeyStoreAndUnlock(const StampedeValkeyKeys *keys, const char *vkey,
										 const char *members, const char *value, Size len,
										 int64 px_ms, const char *token, const char *generation);
extern bool StampedeValkeyInvalidate(const StampedeValkeyKeys *keys, const char *xid,
									 bool *deleted);
extern bool StampedeValkeyListNumbers(const char *key, uint64 **values, int *n);
extern bool StampedeValkeySubscribe(const char *channel);
extern bool StampedeValkeyWaitMessage(long timeout_ms);
extern bool StampedeValkeySubscribed(void);
extern void StampedeValkeyUnsubscribe(void);
extern bool StampedeValkeyRenew(const char *key, const char *token, int64 px_ms);
extern bool StampedeValkeyTryLead(const StampedeValkeyKeys *keys, const char *token,
								  int64 px_ms, const char *holder, char *kind,
								  char **value, Size *len);

#endif							/* STAMPEDE_VALKEY_H */
