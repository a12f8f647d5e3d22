/*-------------------------------------------------------------------------
 *
 * store.c
 *	  The one seam through which reads, writes and invalidation reach a
 *	  store, and the mode stampede_status() reports.
 *
 *	  Without stampede.valkey_url, the store is this server's shared memory
 *	  (store_local.c).  With it, entries are read from Valkey (remote.c),
 *	  and from shared memory only while Valkey cannot be asked: what a
 *	  leader keeps there then is a fallback copy, good for the outage its
 *	  flight began in (outage.c).  Writes to Valkey are part of the flight
 *	  across servers (remote.c: the rows go with the lock's release).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "outage.h"
#include "remote.h"
#include "store.h"
#include "store_local.h"

/* Is there a local store (shared_preload_libraries)? */
bool
StampedeStoreAvailable(void)
{
	return StampedeLocalStoreAvailable();
}

/*
 * The bytes stored under skey: from Valkey when it can be used, else (or
 * when it fails now) from the local store.  *trust says how far they are
 * vouched for (see StampedeTrust).
 */
char *
StampedeStoreRead(const StampedeStoreKey *skey, Size *len, bool *from_valkey,
				  StampedeTrust *trust)
{
	*from_valkey = false;
	*trust = TRUST_CHECKED;		/* the local store is this server's own memory */
	if (StampedeRemoteConfigured())
	{
		bool		unanswered;
		char	   *value = StampedeRemoteGet(skey, len, trust, &unanswered);

		if (!unanswered)
		{
			*from_valkey = value != NULL;
			return value;
		}
	}
	return StampedeLocalStoreGet(skey, len, StampedeOutageEpoch());
}

/* Bytes read by StampedeStoreRead answered a call. */
void
StampedeStoreServed(const char *data, Size len, bool from_valkey, StampedeTrust trust)
{
	if (from_valkey)
		StampedeRemoteServed(data, len, trust);
}

/*
 * Keep put in this server's store until expires_at.  With Valkey
 * configured, it is a fallback copy of a flight that began in outage
 * flight_outage: if Valkey answered since, it is already of no use, and
 * not kept.  False only when it does not fit.
 */
bool
StampedeStorePutLocal(const StampedePut *put, TimestampTz expires_at, uint64 flight_outage)
{
	uint64		outage = StampedeRemoteConfigured() ? flight_outage : 0;

	if (outage != 0 && outage != StampedeOutageEpoch())
		return true;
	return StampedeLocalStorePut(&put->key, put->data, put->len, expires_at, outage);
}

/* Remove every entry of a key from this server's store; true if one was live. */
bool
StampedeStoreRemoveLocal(Oid dbid, uint64 hash)
{
	return StampedeLocalStoreDeleteKey(dbid, hash) > 0;
}

/* After an error: let go of the local store's LWLock if this backend holds it. */
void
StampedeStoreReleaseLocks(void)
{
	StampedeLocalStoreReleaseLockIfHeld();
}

/*
 * Where calls go now, as stampede_status() says: Valkey, the local store as
 * the default or as the fallback, or nowhere (not preloaded: without Valkey
 * calls run uncached).
 */
const char *
StampedeStoreMode(bool valkey_answers)
{
	bool		configured = StampedeRemoteConfigured();

	if (valkey_answers)
		return "valkey";
	if (!StampedeLocalStoreAvailable())
		return configured ? "uncached" : "not preloaded";
	return configured ? "fallback" : "local";
}
