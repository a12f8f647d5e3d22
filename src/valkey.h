/*-------------------------------------------------------------------------
 *
 * valkey.h
 *	  This backend's connection to Valkey.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_VALKEY_H
#define STAMPEDE_VALKEY_H

extern bool StampedeValkeyConfigured(void);
extern bool StampedeValkeyPing(char **error);
extern bool StampedeValkeyCircuitOpen(void);
extern bool StampedeValkeyUsable(void);
extern bool StampedeValkeyGet(int nkeys, const char **keys, char **values, Size *lens);
extern bool StampedeValkeySet(const char *key, const char *value, Size len, int64 px_ms,
							  bool nx, bool *set);
extern bool StampedeValkeyStoreAndUnlock(const char *vkey, const char *value, Size len,
										 int64 px_ms, const char *lkey, const char *token,
										 const char *channel);
extern bool StampedeValkeySubscribe(const char *channel);
extern bool StampedeValkeyWaitMessage(long timeout_ms);
extern bool StampedeValkeySubscribed(void);
extern void StampedeValkeyUnsubscribe(void);
extern bool StampedeValkeyDel(const char *key, bool *deleted);
extern bool StampedeValkeyRenew(const char *key, const char *token, int64 px_ms);
extern bool StampedeValkeyTryLead(const char *vkey, const char *lkey, const char *ekey,
								  const char *token, int64 px_ms, char *kind,
								  char **value, Size *len);

#endif							/* STAMPEDE_VALKEY_H */
