/*-------------------------------------------------------------------------
 *
 * identity.c
 *	  What a call is, as digests: which entry may answer it.
 *
 *	  A hit stands in for running the query, so an entry may answer only a
 *	  call that would compute the same rows.  A call's identity is a SHA-256
 *	  of everything that decides them before a single row is read:
 *
 *		- the key, the kind of entry, and the full query text;
 *		- the database;
 *		- what the query's names resolve to: the effective search path, as
 *		  the plan cache compares it (the schemas it searches, which depend
 *		  on the role through "$user" and USAGE, and pg_temp); a search path
 *		  holding this session's temporary schema makes the identity this
 *		  session's alone, since temporary schemas are reused by other
 *		  backends later;
 *		- the settings that change computed values (time zone, date and
 *		  interval styles, float digits, locales, text search configuration,
 *		  bytea and XML output, how literals parse, the client encoding, ...).
 *
 *	  Two digests are kept: "portable" names schemas and the database by
 *	  name, so that independent clusters given one stampede.namespace on
 *	  purpose can share an entry; "local" adds the OIDs, and is what a hit
 *	  on this cluster must match.  The first 64 bits of the portable digest
 *	  address the entry (its variant of the key); a hit compares all 256
 *	  bits, so a collision of the address is a miss, never another's rows.
 *
 *	  Rows that can differ by who asks (see query.c) are kept per scope: the
 *	  scope's digest adds the effective and session user, and, for the
 *	  settings scope, every custom setting (app.tenant, request.jwt.claims;
 *	  an extension's own setting only once something set it).
 *
 *	  Computing this per call would cost a hit more than the rest of it, so
 *	  the last call's identity is kept, and reused while the key, the query
 *	  text, the settings and the search path are the same.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/gin.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "parser/parse_expr.h"
#include "parser/parser.h"
#include "pgtime.h"
#include "storage/large_object.h"
#include "tsearch/ts_cache.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/bytea.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_locale.h"
#include "utils/rls.h"
#include "utils/xml.h"

#include "compat.h"
#include "identity.h"

/* What the last identity was computed from, and what it came to. */
static OverrideSearchPath *path_seen = NULL;
static uint8 context_portable[STAMPEDE_ID_LEN];
static uint8 context_local[STAMPEDE_ID_LEN];
static bool context_session_only = false;
static bool context_valid = false;

static int	last_kind = -1;
static char *last_key = NULL;
static int	last_keylen = -1;
static char *last_query = NULL;
static StampedeIdentity last_identity;

static void
sha256(const char *data, Size len, uint8 *out)
{
	if (!StampedeSha256(data, len, out))
		elog(ERROR, "could not compute a SHA-256 digest");
}

static void
put_string(StringInfo buf, const char *s)
{
	appendStringInfoString(buf, s ? s : "");
	appendStringInfoChar(buf, '\0');
}

#define put_value(buf, v) appendBinaryStringInfo((buf), (const char *) &(v), sizeof(v))

/*
 * The settings that change what a query computes, read from the variables
 * behind them, since this runs on every call: numbers compared as bytes,
 * strings by value (a setting's string is replaced, not edited, when it
 * changes, but a new one may land at the old address).
 */
#define NUM_INT_SETTINGS	10
#define NUM_STR_SETTINGS	6

typedef struct Settings
{
	int			ints[NUM_INT_SETTINGS];
	bool		bools[6];
	const char *strs[NUM_STR_SETTINGS];
} Settings;

static Settings settings_seen;	/* strings copied to TopMemoryContext */
static bool settings_seen_valid = false;

/* timezone_abbreviations has no variable of its own outside guc.c. */
static const char *
timezone_abbreviations(void)
{
	static char **variable = NULL;

	if (variable == NULL)
	{
		int			n;
		struct config_generic **vars = StampedeGucVariables(&n);

		for (int i = 0; i < n && variable == NULL; i++)
		{
			if (vars[i]->vartype == PGC_STRING &&
				pg_strcasecmp(vars[i]->name, "timezone_abbreviations") == 0)
				variable = ((struct config_string *) vars[i])->variable;
		}
		if (variable == NULL)
			return "";
	}
	return *variable ? *variable : "";
}

static void
read_settings(Settings *now)
{
	memset(now, 0, sizeof(*now));
	now->ints[0] = DateStyle;
	now->ints[1] = DateOrder;
	now->ints[2] = IntervalStyle;
	now->ints[3] = extra_float_digits;
	now->ints[4] = bytea_output;
	now->ints[5] = xmloption;
	now->ints[6] = xmlbinary;
	now->ints[7] = backslash_quote;
	now->ints[8] = GinFuzzySearchLimit;
	now->ints[9] = pg_get_client_encoding();	/* pg_client_encoding(), convert_to() */
	now->bools[0] = standard_conforming_strings;
	now->bools[1] = Array_nulls;
	now->bools[2] = Transform_null_equals;
	now->bools[3] = quote_all_identifiers;
	now->bools[4] = row_security;
	now->bools[5] = lo_compat_privileges;
	now->strs[0] = pg_get_timezone_name(session_timezone);
	now->strs[1] = timezone_abbreviations();
	now->strs[2] = locale_monetary;
	now->strs[3] = locale_numeric;
	now->strs[4] = locale_time;
	now->strs[5] = TSCurrentConfig;
}

static bool
settings_unchanged(const Settings *now)
{
	if (!settings_seen_valid ||
		memcmp(now->ints, settings_seen.ints, sizeof(now->ints)) != 0 ||
		memcmp(now->bools, settings_seen.bools, sizeof(now->bools)) != 0)
		return false;
	for (int i = 0; i < NUM_STR_SETTINGS; i++)
	{
		if (strcmp(now->strs[i] ? now->strs[i] : "", settings_seen.strs[i]) != 0)
			return false;
	}
	return true;
}

/* Keep now as the settings seen, and append them to buf as bytes. */
static void
keep_settings(const Settings *now, StringInfo buf)
{
	for (int i = 0; i < NUM_STR_SETTINGS && settings_seen_valid; i++)
		pfree((char *) settings_seen.strs[i]);
	memcpy(settings_seen.ints, now->ints, sizeof(now->ints));
	memcpy(settings_seen.bools, now->bools, sizeof(now->bools));
	for (int i = 0; i < NUM_STR_SETTINGS; i++)
		settings_seen.strs[i] = MemoryContextStrdup(TopMemoryContext,
													now->strs[i] ? now->strs[i] : "");
	settings_seen_valid = true;

	appendBinaryStringInfo(buf, (const char *) now->ints, sizeof(now->ints));
	appendBinaryStringInfo(buf, (const char *) now->bools, sizeof(now->bools));
	for (int i = 0; i < NUM_STR_SETTINGS; i++)
		put_string(buf, settings_seen.strs[i]);
}

/*
 * The digests of what every call of this backend shares now: settings,
 * database, search path.  Recomputed only when one of them changed.
 */
static void
compute_context(void)
{
	Settings	now;
	StringInfoData buf;
	StringInfoData local;
	bool		session_only;
	ListCell   *lc;
	char	   *dbname;

	/* The common case: nothing changed since the last call. */
	read_settings(&now);
	if (context_valid && settings_unchanged(&now) &&
		OverrideSearchPathMatchesCurrent(path_seen))
		return;

	context_valid = false;
	initStringInfo(&buf);
	keep_settings(&now, &buf);
	if (path_seen != NULL)
	{
		list_free(path_seen->schemas);
		pfree(path_seen);
	}
	path_seen = GetOverrideSearchPath(TopMemoryContext);

	/* Portable: names, not OIDs. */
	appendStringInfoString(&buf, "stampede context 1");
	appendStringInfoChar(&buf, '\0');
	dbname = get_database_name(MyDatabaseId);
	put_string(&buf, dbname);
	put_value(&buf, path_seen->addCatalog);
	put_value(&buf, path_seen->addTemp);
	session_only = path_seen->addTemp;
	foreach(lc, path_seen->schemas)
	{
		Oid			nsp = lfirst_oid(lc);

		put_string(&buf, get_namespace_name(nsp));
		session_only |= isTempNamespace(nsp);
	}
	if (session_only)
	{
		/* This backend's temporary schema: this session's alone. */
		appendStringInfoString(&buf, "session");
		put_value(&buf, MyProcPid);
		put_value(&buf, MyStartTime);
	}
	sha256(buf.data, buf.len, context_portable);
	context_session_only = session_only;

	/* Local: the portable digest and the OIDs behind the names. */
	initStringInfo(&local);
	appendBinaryStringInfo(&local, (char *) context_portable, STAMPEDE_ID_LEN);
	{
		uint64		sysid = GetSystemIdentifier();

		put_value(&local, sysid);
	}
	put_value(&local, MyDatabaseId);
	foreach(lc, path_seen->schemas)
	{
		Oid			nsp = lfirst_oid(lc);

		put_value(&local, nsp);
	}
	sha256(local.data, local.len, context_local);
	pfree(buf.data);
	pfree(local.data);
	context_valid = true;
	last_kind = -1;				/* the last call's identity is stale */
}

/* digest = SHA-256(context || kind || key || query) */
static void
call_digest(const uint8 *context, int kind, const char *key, int keylen,
			const char *query, uint8 *out)
{
	StringInfoData buf;
	int			querylen = strlen(query);

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (const char *) context, STAMPEDE_ID_LEN);
	put_value(&buf, kind);
	put_value(&buf, keylen);
	appendBinaryStringInfo(&buf, key, keylen);
	put_value(&buf, querylen);
	appendBinaryStringInfo(&buf, query, querylen);
	sha256(buf.data, buf.len, out);
	pfree(buf.data);
}

/* The first 64 bits of a digest, never 0 (0 means "none" in store keys). */
static uint64
digest_address(const uint8 *digest)
{
	uint64		address;

	memcpy(&address, digest, sizeof(address));
	return address | 1;
}

/* The identity of a call of kind for key and query, as this session makes it now. */
void
StampedeCallIdentity(int kind, const char *key, int keylen, const char *query,
					 StampedeIdentity *out)
{
	compute_context();
	if (kind == last_kind && keylen == last_keylen &&
		memcmp(key, last_key, keylen) == 0 && strcmp(query, last_query) == 0)
	{
		*out = last_identity;
		return;
	}

	call_digest(context_portable, kind, key, keylen, query, out->id.portable);
	call_digest(context_local, kind, key, keylen, query, out->id.local);
	out->variant = digest_address(out->id.portable);
	out->session_only = context_session_only;

	if (last_key)
		pfree(last_key);
	if (last_query)
		pfree(last_query);
	last_key = MemoryContextAlloc(TopMemoryContext, Max(keylen, 1));
	memcpy(last_key, key, keylen);
	last_keylen = keylen;
	last_query = MemoryContextStrdup(TopMemoryContext, query);
	last_kind = kind;
	last_identity = *out;
}

/*
 * Every custom setting (a name with a dot: placeholders such as app.tenant,
 * and other extensions' settings), but stampede's own, as name=value.
 */
static void
read_custom_settings(StringInfo buf)
{
	int			n;
	struct config_generic **vars = StampedeGucVariables(&n);

	for (int i = 0; i < n; i++)
	{
		const char *name = vars[i]->name;

		if (strchr(name, '.') == NULL || pg_strncasecmp(name, "stampede.", 9) == 0)
			continue;
		/* An extension's setting nobody set (plpgsql.* once it is loaded). */
		if (!(vars[i]->flags & GUC_CUSTOM_PLACEHOLDER) && vars[i]->source == PGC_S_DEFAULT)
			continue;
		put_string(buf, name);
		put_string(buf, GetConfigOption(name, true, false));
	}
}

/*
 * The identity of the rows of call kept under scope, and the 64 bits that
 * address them beside the call's own.
 */
uint64
StampedeScopeIdentity(const StampedeEntryId *call, StampedeScope scope,
					  StampedeEntryId *scoped)
{
	StringInfoData buf;
	Oid			userid = GetUserId();
	Oid			sessionid = GetSessionUserId();
	Assert(scope != STAMPEDE_SCOPE_SHARED);
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (const char *) call->local, STAMPEDE_ID_LEN);
	put_value(&buf, scope);
	put_value(&buf, userid);
	put_value(&buf, sessionid);
	if (scope == STAMPEDE_SCOPE_SETTINGS)
		read_custom_settings(&buf);
	sha256(buf.data, buf.len, scoped->local);
	memcpy(buf.data, call->portable, STAMPEDE_ID_LEN);
	sha256(buf.data, buf.len, scoped->portable);
	pfree(buf.data);
	return digest_address(scoped->local);
}

/* Are two digests the same?  (Not secret: no constant time needed.) */
bool
StampedeIdEquals(const uint8 *a, const uint8 *b)
{
	return memcmp(a, b, STAMPEDE_ID_LEN) == 0;
}
