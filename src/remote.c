/*-------------------------------------------------------------------------
 *
 * remote.c
 *	  Single flight and entries across servers, in Valkey: the whole wire
 *	  protocol, the names, the markers and the scripts beside the code that
 *	  reads their replies.  valkey.c carries the commands; flight.c decides
 *	  what a call does with what is found here.
 *
 *	  Names (all of one key in one hash tag, so one Valkey Cluster slot):
 *	    stampede:{NS:DB:HASH}:VARIANT:SCOPE:v	an entry (scope 0: the call's)
 *	    stampede:{NS:DB:HASH}:VARIANT:0:l	the flight's lock: SET NX PX token
 *	    stampede:{NS:DB:HASH}:VARIANT:0:e	the leader's marker: token NUL body
 *	    stampede:{NS:DB:HASH}:VARIANT:0:c	the channel its waiters listen on
 *	    stampede:{NS:DB:HASH}:g				the key's generation (invalidations)
 *	    stampede:{NS:DB:HASH}:r				the key's entries (VARIANT:SCOPE)
 *	    stampede:{NS:DB:HASH}:i				the key's last invalidating xids
 *	  NS is stampede.namespace, or this cluster's system identifier; DB
 *	  hashes the database's name.
 *
 *	  A round of the flight (StampedeRemoteTry) is one script: the entry if
 *	  there is one, else the marker its waiters may take, else the lock.  A
 *	  leader stores its rows sealed (codec.c), lets go of the lock and
 *	  publishes in one script, only if the key's generation is still the
 *	  one it began under.  Only the owner of a lock lets it go (its token).
 *
 *	  Anyone who can write to Valkey can write there: an entry is read
 *	  further only if sealed with this server's secret and in date, and its
 *	  rows are checked as they are read (flight.c).  What could not be told
 *	  to Valkey (a lock's release, an invalidation) is owed to it in shared
 *	  memory (outage.c) and paid as soon as it answers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "codec.h"
#include "compat.h"
#include "guc.h"
#include "invalidation.h"
#include "lease.h"
#include "outage.h"
#include "remote.h"
#include "secret.h"
#include "stats.h"
#include "valkey.h"

/* ---- which Valkey ---- */

static bool rejected_this_call = false; /* valkey_rejected counts calls */

bool
StampedeRemoteConfigured(void)
{
	return stampede_valkey_url != NULL && stampede_valkey_url[0] != '\0';
}

/* A new call begins: it pays for one Valkey failure at most (valkey.c). */
void
StampedeRemoteNewCall(void)
{
	StampedeValkeyNewCall();
	rejected_this_call = false;
}

/* Can Valkey be tried now?  (Configured, and its circuit not open.) */
bool
StampedeRemoteUsable(void)
{
	return StampedeRemoteConfigured() && StampedeValkeyUsable(stampede_valkey_url);
}

/* ---- names ---- */

/*
 * What all Valkey names of a stampede key begin with: the namespace, the
 * database and the key's hash, in braces (a hash tag), so that every
 * variant of the key, its lock, error marker and the rest fall in one
 * Valkey Cluster slot.  The database is there whatever the namespace: a
 * namespace shared on purpose still keeps databases apart.
 */
static char *
key_prefix(uint64 hash)
{
	static char *derived = NULL;
	static uint64 dbhash = 0;
	const char *ns = stampede_namespace;

	if (derived == NULL)
	{
		char	   *dbname = get_database_name(MyDatabaseId);

		derived = MemoryContextStrdup(TopMemoryContext,
									  psprintf(UINT64_FORMAT, GetSystemIdentifier()));
		dbhash = hash_bytes_extended((const unsigned char *) (dbname ? dbname : ""),
									 dbname ? strlen(dbname) : 0, 0);
	}
	if (ns == NULL || ns[0] == '\0')
		ns = derived;
	return psprintf("stampede:{%s:%016" INT64_MODIFIER "x:%016" INT64_MODIFIER "x}:",
					ns, dbhash, hash);
}

/* The name of skey's entry among its key's: "variant:scope". */
static char *
entry_member(const StampedeStoreKey *skey)
{
	return psprintf("%016" INT64_MODIFIER "x:%" INT64_MODIFIER "x", skey->variant, skey->scope);
}

/* The Valkey name of skey's entry. */
static char *
entry_name(const StampedeStoreKey *skey)
{
	return psprintf("%s%s:v", key_prefix(skey->hash), entry_member(skey));
}

/*
 * The Valkey names of the flight of one variant of a key whose names begin
 * with prefix: its entry (scope 0), lock, error marker and channel, and the
 * key's generation, list of entries and invalidations.
 */
static void
names_of(const char *prefix, uint64 variant, StampedeRemoteNames *names)
{
	char	   *vprefix = psprintf("%s%016" INT64_MODIFIER "x:", prefix, variant);

	names->prefix = pstrdup(prefix);
	names->value = psprintf("%s0:v", vprefix);
	names->lock = psprintf("%s0:l", vprefix);
	names->error = psprintf("%s0:e", vprefix);
	names->channel = psprintf("%s0:c", vprefix);
	names->generation = psprintf("%sg", prefix);
	names->roles = psprintf("%sr", prefix);
	names->invalidations = psprintf("%si", prefix);
}

/* ---- the scripts ---- */

/*
 * What the scripts begin with: get(k) reads a string key, and treats a key
 * of another type as absent, deleting it (it is garbage under our names);
 * a plain GET would fail the whole script with WRONGTYPE.
 */
#define LUA_GET \
	"local function get(k) " \
	"  local v = redis.pcall('GET', k) " \
	"  if type(v) == 'table' and v.err then redis.call('DEL', k) return false end " \
	"  return v " \
	"end "

/* A script's reply that says nothing: false when Valkey failed. */
static bool
eval_done(const char *url, StampedeValkeyScript *script, int nkeys, int nargs,
		  const char **args, const Size *argslen)
{
	return StampedeValkeyEval(url, script, nkeys, nargs, args, argslen) != NULL;
}

/*
 * One round of single flight, atomically: the key's value if there is one
 * ('v'); else its error marker, if the leader that left it held the lock
 * under holder, the token the caller saw it held with ('e'); else the lock,
 * taken with token for px_ms ('l'); else nothing ('w': another holds the
 * lock).  *kind says which; *value (palloc'd) holds what 'v' and 'e' found,
 * for 'l' the key's generation (for the store to check), and for 'w' the
 * holder's token.  False on failure, or a reply not of this script.
 */
static bool
try_lead(const char *url, const StampedeRemoteNames *names, const char *token, int64 px_ms,
		 const char *holder, char *kind, char **value, Size *len)
{
	static StampedeValkeyScript script = {
		LUA_GET
		"local v = get(KEYS[1]) "
		"if v then return {'v', v} end "
		"local e = get(KEYS[3]) "
		"if e and ARGV[3] ~= '' and string.sub(e, 1, #ARGV[3] + 1) == ARGV[3] .. '\\0' then "
		"  return {'e', e} end "
		/* A lock of another type, or without expiry, is not one of ours: garbage. */
		"get(KEYS[2]) "
		"if redis.call('PTTL', KEYS[2]) == -1 then redis.call('DEL', KEYS[2]) end "
		"if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then "
		"  return {'l', get(KEYS[4]) or '0'} end "
		"return {'w', get(KEYS[2]) or ''}"
	};
	char		px[32];
	const char *args[7] = {names->value, names->lock, names->error, names->generation,
		token, px, holder};
	StampedeValkeyReply *reply;

	snprintf(px, sizeof(px), INT64_FORMAT, Max(px_ms, 1));
	reply = StampedeValkeyEval(url, &script, 4, 7, args, NULL);
	if (reply == NULL)
		return false;
	if (reply->type != VALKEY_REPLY_ARRAY || reply->nelements != 2 ||
		reply->elements[0].type != VALKEY_REPLY_STRING || reply->elements[0].len == 0 ||
		reply->elements[1].type != VALKEY_REPLY_STRING)
		return false;
	*kind = reply->elements[0].str[0];
	*value = reply->elements[1].str;
	*len = reply->elements[1].len;
	return true;
}

/*
 * In one script: store value under vkey for px_ms, unless value is NULL or
 * the key was invalidated since the leader took the lock (its generation is
 * no longer the one given), and list members (the names of the entries
 * stored, space-separated) in the key's list of entries; delete the lock if
 * it still holds token (only its owner lets go); wake the waiters
 * subscribed to the channel.
 */
static bool
store_and_unlock(const char *url, const StampedeRemoteNames *names, const char *vkey,
				 const char *members, const char *value, Size len, int64 px_ms,
				 const char *token, const char *generation)
{
	static StampedeValkeyScript script = {
		LUA_GET
		"if ARGV[1] ~= '' and (get(KEYS[4]) or '0') == ARGV[4] then "
		"  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
		"  for m in string.gmatch(ARGV[5], '%S+') do "
		"    local r = redis.pcall('SADD', KEYS[5], m) "
		"    if type(r) == 'table' and r.err then "
		"      redis.call('DEL', KEYS[5]) redis.call('SADD', KEYS[5], m) end "
		"    if redis.call('PTTL', KEYS[5]) < tonumber(ARGV[2]) then "
		"      redis.call('PEXPIRE', KEYS[5], ARGV[2]) end "
		"  end "
		"end "
		"if get(KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end "
		"redis.call('PUBLISH', KEYS[3], '1') "
		"return 1"
	};
	char		px[32];
	const char *args[10] = {vkey, names->lock, names->channel, names->generation, names->roles,
		value ? value : "", px, token, generation ? generation : "0", members};
	Size		argslen[10];

	snprintf(px, sizeof(px), INT64_FORMAT, Max(px_ms, 1));
	for (int i = 0; i < 10; i++)
		argslen[i] = (i == 5) ? (value ? len : 0) : strlen(args[i]);
	return eval_done(url, &script, 5, 10, args, argslen);
}

/* Let go of the lock held with token, storing nothing. */
static bool
unlock(const char *url, const StampedeRemoteNames *names, const char *token,
	   const char *generation)
{
	return store_and_unlock(url, names, names->value, "", NULL, 0, 1, token, generation);
}

/*
 * Remove every entry of a key (each variant's, each scope's: those its list
 * of entries names), and bump its generation, so that a leader running now
 * does not store rows it computed before; list xid (unless empty) among the
 * key's last eight invalidating transactions, which a fill's snapshot must
 * see before it stores.  *deleted says whether an entry was removed.
 */
static bool
invalidate(const char *url, const StampedeRemoteNames *names, const char *xid, bool *deleted)
{
	static StampedeValkeyScript script = {
		LUA_GET
		"redis.call('SET', KEYS[3], (tonumber(get(KEYS[3])) or 0) + 1, 'PX', 86400000) "
		"if ARGV[2] ~= '' then "
		"  if redis.call('TYPE', KEYS[5]).ok ~= 'list' then redis.call('DEL', KEYS[5]) end "
		"  redis.call('LREM', KEYS[5], 0, ARGV[2]) "
		"  redis.call('LPUSH', KEYS[5], ARGV[2]) "
		"  redis.call('LTRIM', KEYS[5], 0, 7) "
		"  redis.call('PEXPIRE', KEYS[5], 86400000) "
		"end "
		"local n = redis.call('DEL', KEYS[1]) "
		"redis.call('DEL', KEYS[2]) "
		"local members = redis.pcall('SMEMBERS', KEYS[4]) "
		"if members.err then members = {} end "
		"for _, m in ipairs(members) do "
		"  n = n + redis.call('DEL', ARGV[1] .. m .. ':v') "
		"end "
		"redis.call('DEL', KEYS[4]) "
		"return n"
	};
	const char *args[7] = {names->value, names->error, names->generation, names->roles,
		names->invalidations, names->prefix, xid};
	StampedeValkeyReply *reply = StampedeValkeyEval(url, &script, 5, 7, args, NULL);

	if (reply == NULL)
		return false;
	*deleted = reply->type == VALKEY_REPLY_INTEGER && reply->integer > 0;
	return true;
}

/*
 * Extend the lock named lock in the Valkey at url by px_ms, if it still
 * holds token (the lease worker's renewal).  False on failure.
 */
bool
StampedeRemoteRenew(const char *url, const char *lock, const char *token, int64 px_ms)
{
	static StampedeValkeyScript script = {
		LUA_GET
		"if get(KEYS[1]) == ARGV[1] then "
		"return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
	};
	char		px[32];
	const char *args[3] = {lock, token, px};

	snprintf(px, sizeof(px), INT64_FORMAT, Max(px_ms, 1));
	return eval_done(url, &script, 1, 3, args, NULL);
}

/* ---- what Valkey owes us, and we owe it ---- */

static bool rejection_logged = false;

/*
 * Copies of the last entries this backend read from Valkey and found sealed
 * and whole.  Bytes equal to one of them need neither the HMAC nor the
 * checks again: a warm key costs a memcmp per hit, not a hash of every
 * byte.  A few small entries, in TopMemoryContext.
 */
#define CHECKED_COPIES		4
#define CHECKED_COPY_MAX	(64 * 1024)

static struct
{
	char	   *data;
	Size		len;
	uint64		secret;			/* the key it was checked under (secret.c) */
}			checked_copies[CHECKED_COPIES];
static int	checked_next = 0;

static bool
is_checked_copy(const char *data, Size len)
{
	uint64		secret = StampedeSecretGeneration();

	for (int i = 0; i < CHECKED_COPIES; i++)
	{
		if (checked_copies[i].len == len && checked_copies[i].data != NULL &&
			checked_copies[i].secret == secret &&
			memcmp(checked_copies[i].data, data, len) == 0)
			return true;
	}
	return false;
}

/* Bytes read from Valkey were found sealed and whole: remember them. */
static void
remember_checked(const char *data, Size len)
{
	int			i = checked_next;
	char	   *copy;

	if (len > CHECKED_COPY_MAX || is_checked_copy(data, len))
		return;
	/* Allocated before the old copy goes: an error leaves no stale pointer. */
	copy = MemoryContextAlloc(TopMemoryContext, len);
	memcpy(copy, data, len);
	if (checked_copies[i].data != NULL)
		pfree(checked_copies[i].data);
	checked_copies[i].data = copy;
	checked_copies[i].len = len;
	checked_copies[i].secret = StampedeSecretGeneration();
	checked_next = (i + 1) % CHECKED_COPIES;
}

/*
 * May bytes read from Valkey be read further, and how far are they vouched
 * for?  Only an entry sealed by a server that holds our secret, unchanged
 * and in date (codec.c): anyone may write to Valkey.  Refused entries are
 * misses, and get replaced; those not sealed by us, or changed, are counted
 * (valkey_rejected: once per call) and logged once per incident.
 */
static StampedeTrust
entry_trust(const char *data, Size len)
{
	if (is_checked_copy(data, len))
		return StampedeEntryExpired(data, len) ? TRUST_REFUSED : TRUST_CHECKED;
	switch (StampedeEntrySealCheck(data, len))
	{
		case STAMPEDE_SEAL_GOOD:
			rejection_logged = false;
			return TRUST_SEALED;
		case STAMPEDE_SEAL_EXPIRED:
			return TRUST_REFUSED;
		case STAMPEDE_SEAL_BAD:
			break;
	}
	/* A call reads an entry up to three times (look, double-check, lock round). */
	if (!rejected_this_call)
		StampedeStatsCount(STAT_VALKEY_REJECTED);
	rejected_this_call = true;
	if (!rejection_logged)
		ereport(LOG,
				(errmsg("stampede rejected an entry read from Valkey: it is not sealed by a server holding this server's secret, or it changed"),
				 errdetail("It is treated as a miss and replaced. Servers share entries only when they hold the same secret: see stampede.valkey_secret.")));
	rejection_logged = true;
	return TRUST_REFUSED;
}

/*
 * Owe the Valkey at url what it could not be told about the key of skey
 * (the variant's, for a lock), under its names' prefix: the release of the
 * lock held with token arg (lapsing when the lock would have expired), or
 * an invalidation by transaction arg (see outage.c).  False when it cannot
 * be kept.
 */
static bool
owe(const char *url, char kind, const StampedeStoreKey *skey, const char *prefix,
	const char *arg, TimestampTz lapses_at)
{
	StampedeOwed owed;

	memset(&owed, 0, sizeof(owed));
	if (strlen(prefix) >= sizeof(owed.prefix))
		return false;
	owed.kind = kind;
	owed.dbid = skey->dbid;
	owed.hash = skey->hash;
	if (kind == STAMPEDE_OWE_UNLOCK)
		owed.variant = skey->variant;
	strlcpy(owed.prefix, prefix, sizeof(owed.prefix));
	strlcpy(owed.arg, arg, sizeof(owed.arg));
	owed.lapses_at = lapses_at;
	return StampedeOutageOwe(url, &owed);
}

#define OWED_BATCH			64

/*
 * Send the Valkey at url what this server owes it: invalidations that could
 * not be sent, releases of locks whose leaders could not let go.  True when
 * nothing is owed to it any more.
 */
bool
StampedeRemotePayOwed(const char *url)
{
	StampedeOwed *owed;
	int			n;
	bool		all = true;

	if (!StampedeOutageAnyOwed())
		return true;
	owed = palloc(sizeof(StampedeOwed) * OWED_BATCH);
	n = StampedeOutageOwedTo(url, owed, OWED_BATCH);
	for (int i = 0; i < n && all; i++)
	{
		StampedeRemoteNames names;
		bool		deleted;

		names_of(owed[i].prefix, owed[i].variant, &names);
		if (owed[i].kind == STAMPEDE_OWE_INVALIDATION)
			all = invalidate(url, &names, owed[i].arg, &deleted);
		else
			all = unlock(url, &names, owed[i].arg, "0");
		if (all)
			StampedeOutagePaid(url, &owed[i]);
	}
	pfree(owed);
	return all && n < OWED_BATCH;
}

/*
 * May this backend use Valkey for the key of skey now?  Not while its
 * circuit is open, nor while this server owes Valkey an invalidation of
 * the key (its rows there may be the ones invalidated here): that is paid
 * first, if Valkey takes it.
 */
bool
StampedeRemoteReadyFor(const StampedeStoreKey *skey)
{
	const char *url = stampede_valkey_url;

	if (!StampedeRemoteUsable())
		return false;
	if (!StampedeOutageOwes(url, skey->dbid, skey->hash))
		return true;
	(void) StampedeRemotePayOwed(url);
	return StampedeValkeyUsable(url) && !StampedeOutageOwes(url, skey->dbid, skey->hash);
}

/* ---- entries ---- */

/*
 * The entry stored in Valkey under skey, and how far it is vouched for
 * (*trust); NULL when there is none, or it is refused.  *unanswered says
 * Valkey could not be asked now (circuit open, a debt unpaid, or it failed
 * now): the caller reads its local store instead.
 */
char *
StampedeRemoteGet(const StampedeStoreKey *skey, Size *len, StampedeTrust *trust,
				  bool *unanswered)
{
	const char *vkey;
	char	   *value;

	*unanswered = true;
	if (!StampedeRemoteReadyFor(skey))
		return NULL;
	vkey = entry_name(skey);
	if (!StampedeValkeyGet(stampede_valkey_url, 1, &vkey, &value, len))
	{
		StampedeStatsCount(STAT_FALLBACKS);
		return NULL;
	}
	*unanswered = false;
	if (value != NULL && (*trust = entry_trust(value, *len)) == TRUST_REFUSED)
	{
		pfree(value);
		return NULL;
	}
	return value;
}

/* An entry read from Valkey answered a call. */
void
StampedeRemoteServed(const char *data, Size len, StampedeTrust trust)
{
	StampedeStatsCount(STAT_VALKEY_HITS);
	if (trust == TRUST_SEALED)
		remember_checked(data, len);
}

/* ---- the leader's markers ---- */

/*
 * Leave a marker beside the key for the waiters of this leader's flight:
 * its lock token (only those that waited for that lock take the marker:
 * later callers run the query again), a NUL, then body.  Short-lived: the
 * waiters read it within a backoff round.
 */
static void
put_marker(const StampedeRemoteFlight *rf, const char *body, int len)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, rf->token);
	appendStringInfoChar(&buf, '\0');
	appendBinaryStringInfo(&buf, body, len);
	(void) StampedeValkeySet(rf->url, rf->names.error, buf.data, buf.len,
							 Max(2 * stampede_backoff_max_ms, 1000), false, NULL);
}

/*
 * The leader's error, for waiters on other servers, as a marker: SQLSTATE,
 * pid, message, detail, hint, separated by NULs.
 */
static void
put_error(const StampedeRemoteFlight *rf, const ErrorData *edata)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s", unpack_sql_state(edata->sqlerrcode));
	appendStringInfoChar(&buf, '\0');
	appendStringInfo(&buf, "%d", MyProcPid);
	appendStringInfoChar(&buf, '\0');
	appendStringInfoString(&buf, edata->message ? edata->message : "");
	appendStringInfoChar(&buf, '\0');
	appendStringInfoString(&buf, edata->detail ? edata->detail : "");
	appendStringInfoChar(&buf, '\0');
	appendStringInfoString(&buf, edata->hint ? edata->hint : "");
	put_marker(rf, buf.data, buf.len);
}

/*
 * The marker a leader that could not store its rows (too large, or read
 * after its own writes) leaves for the waiters of its flight: they run the
 * query at once, each for itself, as its local waiters do, instead of
 * taking the lock in turn, server after server.  Its token, then this.
 */
#define MARKER_UNCACHEABLE "uncacheable"

static bool
is_uncacheable(const char *data, Size len)
{
	const char *nul = memchr(data, '\0', len);

	return nul != NULL && (Size) (data + len - (nul + 1)) == strlen(MARKER_UNCACHEABLE) &&
		memcmp(nul + 1, MARKER_UNCACHEABLE, strlen(MARKER_UNCACHEABLE)) == 0;
}

static bool
parse_error(char *data, Size len, StampedeLeaderError *error)
{
	char	   *parts[6];
	char	   *p = data;
	char	   *end = data + len;

	/* parts[0], the leader's token, was matched by the script. */
	for (int i = 0; i < 6; i++)
	{
		char	   *nul = i < 5 ? memchr(p, '\0', end - p) : end;

		if (nul == NULL)
			return false;
		parts[i] = pnstrdup(p, nul - p);
		p = nul + 1;
	}
	if (strlen(parts[1]) != 5)
		return false;
	error->sqlerrcode = MAKE_SQLSTATE(parts[1][0], parts[1][1], parts[1][2],
									  parts[1][3], parts[1][4]);
	error->leader_pid = atoi(parts[2]);
	error->message = parts[3];
	error->detail = parts[4][0] ? parts[4] : NULL;
	error->hint = parts[5][0] ? parts[5] : NULL;
	return true;
}

/* ---- a flight across servers ---- */

/* Begin the flight of skey (the call's store key, scope 0) across servers. */
void
StampedeRemoteBegin(StampedeRemoteFlight *rf, const StampedeStoreKey *skey)
{
	uint8		random_bytes[16];

	if (!pg_strong_random(random_bytes, sizeof(random_bytes)))
		elog(ERROR, "could not generate a random lock token");
	for (int i = 0; i < 16; i++)
		snprintf(rf->my_token + 2 * i, 3, "%02x", random_bytes[i]);
	rf->skey = *skey;
	rf->url = pstrdup(stampede_valkey_url);
	names_of(key_prefix(skey->hash), skey->variant, &rf->names);
	rf->token = NULL;
	rf->generation = NULL;
	rf->lease = -1;
	rf->holder = "";
	rf->deadline = StampedeMaxWaitDeadline();
	rf->lock_deadline = LockTimeout > 0 ?
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), LockTimeout) : 0;
	rf->delay_ms = stampede_backoff_base_ms;
	rf->waited = false;
}

/* This backend holds the key's Valkey lock now: remember it, and have it renewed. */
static StampedeRemoteStep
took_lock(StampedeRemoteFlight *rf, char *generation)
{
	rf->token = pstrdup(rf->my_token);
	rf->generation = generation;
	rf->lease = StampedeLeaseAdd(rf->url, rf->names.lock, rf->token, stampede_lock_timeout_ms);
	return REMOTE_LED;
}

/*
 * One round: the rows, the leader's marker, or the lock, looked at and taken
 * atomically.  An invalidation of the key this server could not send
 * meanwhile is sent first (Valkey's rows may be the ones it removed here),
 * or the round fails.
 */
StampedeRemoteStep
StampedeRemoteTry(StampedeRemoteFlight *rf, StampedeRemoteFound *found)
{
	char		kind;
	char	   *value;
	Size		len;

	memset(found, 0, sizeof(*found));
	if (!StampedeRemoteReadyFor(&rf->skey))
		return REMOTE_FAILED;
	if (!try_lead(rf->url, &rf->names, rf->my_token, stampede_lock_timeout_ms, rf->holder,
				  &kind, &value, &len))
		return REMOTE_FAILED;
	switch (kind)
	{
		case 'l':
			return took_lock(rf, value);
		case 'e':
			if (is_uncacheable(value, len))
				return REMOTE_UNCACHEABLE;
			return parse_error(value, len, &found->error) ? REMOTE_ERROR : REMOTE_HELD;
		case 'w':
			rf->holder = value;
			return REMOTE_HELD;
		case 'v':
			found->data = value;
			found->len = len;
			found->trust = entry_trust(value, len);
			return REMOTE_ROWS;
	}
	return REMOTE_HELD;
}

/*
 * The rows found are of no use to anyone here (damaged, another cluster's):
 * take the lock to replace them, if it is free.
 */
StampedeRemoteStep
StampedeRemoteTakeOver(StampedeRemoteFlight *rf)
{
	bool		acquired = false;
	const char *gkey = rf->names.generation;
	char	   *generation;
	Size		glen;

	if (!StampedeValkeySet(rf->url, rf->names.lock, rf->my_token, strlen(rf->my_token),
						   stampede_lock_timeout_ms, true, &acquired))
		return REMOTE_FAILED;
	if (!acquired)
		return REMOTE_HELD;
	/* Unknown if this fails: then the rows are not stored. */
	if (!StampedeValkeyGet(rf->url, 1, &gkey, &generation, &glen))
		generation = pstrdup("?");
	else if (generation == NULL)
		generation = pstrdup("0");
	else
		generation = pnstrdup(generation, glen);
	return took_lock(rf, generation);
}

/*
 * Another server leads: wait for it before the next round, backing off
 * exponentially with jitter (stampede.backoff_base, backoff_max) in a latch
 * wait that a cancel ends at once, or until its wake-up comes.  Raises when
 * lock_timeout ends the wait; false when stampede.max_wait passed and the
 * caller is to run the query itself (key names the key in messages).
 */
bool
StampedeRemoteWait(StampedeRemoteFlight *rf, const char *key)
{
	long		sleep_ms;
	TimestampTz wait_start;
	TimestampTz now = GetCurrentTimestamp();

	/* As a lock wait would: the session's lock_timeout ends it. */
	if (rf->lock_deadline != 0 && now >= rf->lock_deadline &&
		(rf->deadline == 0 || rf->lock_deadline < rf->deadline))
		StampedeRaiseLockTimeout(key, 0);
	if (rf->deadline != 0 && now >= rf->deadline)
	{
		StampedeMaxWaitPassed(key, true);
		return false;
	}

	/*
	 * First subscribe to the leader's wake-up, then look again at once: a
	 * wake-up sent before the subscription is lost.
	 */
	if (!rf->waited)
	{
		StampedeStatsCount(STAT_LOCK_WAITS);
		rf->waited = true;
		if (StampedeValkeySubscribe(rf->url, rf->names.channel))
			return true;
	}
	sleep_ms = rf->delay_ms + (long) (StampedeRandomFraction() * stampede_backoff_base_ms);
	if (rf->deadline != 0)
		sleep_ms = Min(sleep_ms, Max(TimestampDifferenceMilliseconds(now, rf->deadline), 1));
	if (rf->lock_deadline != 0)
		sleep_ms = Min(sleep_ms, Max(TimestampDifferenceMilliseconds(now, rf->lock_deadline), 1));
	/* The backoff stays, as the safety net for a lost wake-up. */
	wait_start = GetCurrentTimestamp();
	if (StampedeValkeySubscribed())
		(void) StampedeValkeyWaitMessage(sleep_ms);
	else
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	StampedeStatsAdd(STAT_WAIT_TIME_US, GetCurrentTimestamp() - wait_start);
	rf->delay_ms = Min(rf->delay_ms * 2, stampede_backoff_max_ms);
	return true;
}

/* The wait is over, however it ended: drop the subscription. */
void
StampedeRemoteEndWait(void)
{
	StampedeValkeyUnsubscribe();
}

/*
 * The leader is done with its Valkey lock: stop renewing it, and when Valkey
 * could not be told (released false), owe Valkey the release, so that the
 * lock goes as soon as Valkey answers rather than when it expires.
 */
static void
let_go(StampedeRemoteFlight *rf, bool released)
{
	StampedeLeaseRemove(rf->lease);
	rf->lease = -1;
	if (!released)
		(void) owe(rf->url, STAMPEDE_OWE_UNLOCK, &rf->skey, rf->names.prefix, rf->token,
				   TimestampTzPlusMilliseconds(GetCurrentTimestamp(), stampede_lock_timeout_ms));
	rf->token = NULL;
}

/*
 * Has snapshot seen every server's invalidations of the key, the last
 * transactions Valkey lists, when this backend holds the key's lock?  When
 * Valkey fails to say, the rows cannot go there either: the lock is let go
 * (owed to Valkey), and what this server knows decides, for a fallback copy.
 */
bool
StampedeRemoteInvalidationsSeen(StampedeRemoteFlight *rf, Snapshot snapshot)
{
	uint64	   *xids;
	int			n;

	if (rf->token == NULL)
		return true;
	if (!StampedeValkeyListNumbers(rf->url, rf->names.invalidations, &xids, &n))
	{
		let_go(rf, false);
		return true;
	}
	for (int i = 0; i < n; i++)
	{
		if (!StampedeXidSeenBy(FullTransactionIdFromU64(xids[i]), snapshot))
			return false;
	}
	return true;
}

/* Before letting go without rows: the other servers' waiters run it themselves. */
void
StampedeRemoteMarkUncacheable(StampedeRemoteFlight *rf)
{
	if (rf->token != NULL)
		put_marker(rf, MARKER_UNCACHEABLE, strlen(MARKER_UNCACHEABLE));
}

/*
 * Store the leader's rows in Valkey for ttl_ms, sealed until expires_at (see
 * codec.c), and let go of the lock, in one script.  False when they could
 * not be stored there (Valkey failed, or there is no secret to seal them
 * with): the rows then go to the local store.  Either way the lock is no
 * longer this backend's.
 */
bool
StampedeRemoteStore(StampedeRemoteFlight *rf, StampedePut *puts, int nputs, int64 ttl_ms,
					TimestampTz expires_at)
{
	int64		px_ms = Min(ttl_ms, INT64CONST(3155760000000));
	bool		sealed = true;
	bool		ok = true;
	char	   *members = "";

	for (int i = 0; i < nputs; i++)
		sealed &= StampedeEntrySeal(puts[i].data, puts[i].len, expires_at);
	if (!sealed)
		nputs = 0;

	/*
	 * With a scope's stub, the stub goes first and the scope's rows last;
	 * the key's list of entries names both, for stampede_invalidate.
	 */
	for (int i = 0; i < nputs - 1 && ok; i++)
	{
		ok = StampedeValkeySet(rf->url, entry_name(&puts[i].key), puts[i].data, puts[i].len,
							   px_ms, false, NULL);
		members = psprintf("%s%s ", members, entry_member(&puts[i].key));
	}
	if (ok && nputs > 0)
		ok = store_and_unlock(rf->url, &rf->names, entry_name(&puts[nputs - 1].key),
							  psprintf("%s%s", members, entry_member(&puts[nputs - 1].key)),
							  puts[nputs - 1].data, puts[nputs - 1].len,
							  px_ms, rf->token, rf->generation);
	else if (ok)
		ok = unlock(rf->url, &rf->names, rf->token, rf->generation);
	let_go(rf, ok);
	return ok && sealed;
}

/*
 * Let go of the Valkey lock, if held, after an error or as a leader going
 * away; with the query's own error (query_error), tell the waiters.
 */
void
StampedeRemoteAbandon(StampedeRemoteFlight *rf, const ErrorData *query_error)
{
	bool		released;

	if (rf->token == NULL)
		return;
	/* Bounded by stampede.valkey_timeout; a cancel is already being handled. */
	HOLD_INTERRUPTS();
	if (query_error != NULL)
		put_error(rf, query_error);
	released = unlock(rf->url, &rf->names, rf->token, rf->generation);
	RESUME_INTERRUPTS();
	let_go(rf, released);
}

/* ---- invalidation ---- */

/*
 * Remove every entry of the key of skey in Valkey (each variant and scope),
 * by transaction xid (invalid: none), for fills on other servers to see.
 * True when Valkey was reached (*deleted: a live entry was removed); else
 * the invalidation is owed to it, sent as soon as Valkey answers and before
 * this server reads the key from it (*kept: that could be recorded).
 */
bool
StampedeRemoteInvalidate(const StampedeStoreKey *skey, FullTransactionId xid,
						 bool *deleted, bool *kept)
{
	char		xidbuf[32] = "";
	char	   *prefix = key_prefix(skey->hash);

	*deleted = false;
	*kept = true;
	if (FullTransactionIdIsValid(xid))
		snprintf(xidbuf, sizeof(xidbuf), UINT64_FORMAT, U64FromFullTransactionId(xid));
	if (StampedeRemoteReadyFor(skey))
	{
		StampedeRemoteNames names;

		Assert(skey->scope == 0);
		names_of(prefix, skey->variant, &names);
		if (invalidate(stampede_valkey_url, &names, xidbuf, deleted))
			return true;
	}
	*kept = owe(stampede_valkey_url, STAMPEDE_OWE_INVALIDATION, skey, prefix, xidbuf, 0);
	return false;
}
