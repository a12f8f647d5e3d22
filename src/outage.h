/*-------------------------------------------------------------------------
 *
 * outage.h
 *	  What a Valkey outage leaves behind: what this server owes Valkey, and
 *	  which fallback copies are still good.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_OUTAGE_H
#define STAMPEDE_OUTAGE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/latch.h"

#define STAMPEDE_URL_LEN		1024
#define STAMPEDE_OWED_NAME_LEN	256
#define STAMPEDE_OWED_ARG_LEN	40

/* What is owed: an invalidation of a key, or the release of a lock. */
#define STAMPEDE_OWE_INVALIDATION	'i'
#define STAMPEDE_OWE_UNLOCK			'u'

typedef struct StampedeOwed
{
	char		kind;
	Oid			dbid;
	uint64		hash;			/* the key's (see flight.c) */
	uint64		variant;		/* an unlock's: the flight's variant */
	char		prefix[STAMPEDE_OWED_NAME_LEN]; /* the key's Valkey prefix */
	char		arg[STAMPEDE_OWED_ARG_LEN]; /* the invalidating xid, or the lock token */
	TimestampTz lapses_at;		/* an unlock's: when the lock expires anyway */
} StampedeOwed;

extern Size StampedeOutageShmemSize(void);
extern void StampedeOutageShmemInit(void);

extern uint64 StampedeOutageEpoch(void);
extern void StampedeOutageSettledBy(Latch *latch);
extern void StampedeOutageBegan(const char *url);
extern void StampedeOutageEnded(const char *url);

extern bool StampedeOutageOwe(const char *url, const StampedeOwed *owed);
extern bool StampedeOutageOwes(const char *url, Oid dbid, uint64 hash);
extern bool StampedeOutageAnyOwed(void);
extern int	StampedeOutageOwedTo(const char *url, StampedeOwed *owed, int max);
extern void StampedeOutagePaid(const char *url, const StampedeOwed *owed);
extern int	StampedeOutageUrls(char (*urls)[STAMPEDE_URL_LEN], int max);

#endif							/* STAMPEDE_OUTAGE_H */
