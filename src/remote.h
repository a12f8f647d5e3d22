/*-------------------------------------------------------------------------
 *
 * remote.h
 *	  Single flight and entries across servers, in Valkey: the protocol.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_REMOTE_H
#define STAMPEDE_REMOTE_H

#include "postgres.h"

#include "access/transam.h"
#include "datatype/timestamp.h"
#include "utils/snapshot.h"

#include "store_key.h"
#include "wait.h"

/*
 * How far bytes read from Valkey have been vouched for: not at all (refused),
 * sealed by a server holding our secret (its rows still to be checked as
 * they are read), or the very bytes of an entry this backend checked whole
 * before.  The local store's bytes are this server's own: checked.
 */
typedef enum StampedeTrust
{
	TRUST_REFUSED,
	TRUST_SEALED,
	TRUST_CHECKED
} StampedeTrust;

/* The Valkey names of the flight of one variant of a key (see remote.c). */
typedef struct StampedeRemoteNames
{
	char	   *value;			/* the call's entry (scope 0) */
	char	   *lock;			/* the single-flight lock of the call */
	char	   *error;			/* the leader's marker, for a short while */
	char	   *channel;		/* where the leader says it is done */
	char	   *generation;		/* the key's, bumped by stampede_invalidate */
	char	   *roles;			/* the key's list of entries, every variant's */
	char	   *invalidations;	/* the key's last invalidating transactions */
	char	   *prefix;			/* an entry is prefix || member || ":v" */
} StampedeRemoteNames;

/* One call's flight of a key across servers: its lock while held, its wait. */
typedef struct StampedeRemoteFlight
{
	StampedeStoreKey skey;		/* the call's store key (scope 0) */
	const char *url;			/* the Valkey it is in */
	StampedeRemoteNames names;
	char		my_token[33];	/* the token it takes the lock with */
	char	   *token;			/* set while this backend holds the lock */
	char	   *generation;		/* the key's generation when it took the lock */
	int			lease;			/* its slot for renewal, or -1 */
	/* waiting */
	char	   *holder;			/* the token of the lock last seen held */
	TimestampTz deadline;		/* stampede.max_wait's, or 0 */
	TimestampTz lock_deadline;	/* lock_timeout's, or 0 */
	int			delay_ms;
	bool		waited;
} StampedeRemoteFlight;

/* What one round of a remote flight found (StampedeRemoteTry). */
typedef enum StampedeRemoteStep
{
	REMOTE_FAILED,				/* Valkey failed, or may not be used now */
	REMOTE_LED,					/* this backend holds the lock */
	REMOTE_ROWS,				/* an entry: found->data, len, trust */
	REMOTE_ERROR,				/* the leader's error: found->error */
	REMOTE_UNCACHEABLE,			/* the leader could not store its rows */
	REMOTE_HELD					/* another server holds the lock */
} StampedeRemoteStep;

typedef struct StampedeRemoteFound
{
	char	   *data;
	Size		len;
	StampedeTrust trust;
	StampedeLeaderError error;
} StampedeRemoteFound;

extern bool StampedeRemoteConfigured(void);
extern void StampedeRemoteNewCall(void);
extern bool StampedeRemoteUsable(void);
extern bool StampedeRemoteReadyFor(const StampedeStoreKey *skey);
extern char *StampedeRemoteGet(const StampedeStoreKey *skey, Size *len, StampedeTrust *trust,
							   bool *failed);
extern void StampedeRemoteServed(const char *data, Size len, StampedeTrust trust);

extern void StampedeRemoteBegin(StampedeRemoteFlight *rf, const StampedeStoreKey *skey);
extern StampedeRemoteStep StampedeRemoteTry(StampedeRemoteFlight *rf, StampedeRemoteFound *found);
extern StampedeRemoteStep StampedeRemoteTakeOver(StampedeRemoteFlight *rf);
extern bool StampedeRemoteWait(StampedeRemoteFlight *rf, const char *key);
extern void StampedeRemoteEndWait(void);
extern bool StampedeRemoteInvalidationsSeen(StampedeRemoteFlight *rf, Snapshot snapshot);
extern void StampedeRemoteMarkUncacheable(StampedeRemoteFlight *rf);
extern bool StampedeRemoteStore(StampedeRemoteFlight *rf, StampedePut *puts, int nputs,
								int64 ttl_ms, TimestampTz expires_at);
extern void StampedeRemoteAbandon(StampedeRemoteFlight *rf, const ErrorData *edata);

extern bool StampedeRemoteInvalidate(const StampedeStoreKey *skey, FullTransactionId xid,
									 bool *deleted, bool *kept);
extern bool StampedeRemoteRenew(const char *url, const char *lock, const char *token,
								int64 px_ms);
extern bool StampedeRemotePayOwed(const char *url);

#endif							/* STAMPEDE_REMOTE_H */
