/*-------------------------------------------------------------------------
 *
 * cache.c
 *	  The SQL-callable entry points: check the arguments, say what row type
 *	  the caller wants and where the rows go, and hand over to single flight.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "cache.h"
#include "compat.h"
#include "flight.h"
#include "guc.h"
#include "query.h"
#include "remote.h"
#include "store.h"

#define STAMPEDE_MAX_KEY_BYTES 1024

/*
 * Calls need the shared memory that only shared_preload_libraries gives,
 * unless Valkey is configured: then they work without it, and the first
 * call of a backend says what is missing.
 */
static void
require_shared_memory(void)
{
	static bool told = false;

	if (StampedeStoreAvailable())
		return;
	if (!StampedeRemoteConfigured())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stampede is not loaded through shared_preload_libraries"),
				 errdetail("Its store and single-flight table live in shared memory, which is set up at server start."),
				 errhint("Add stampede to shared_preload_libraries in postgresql.conf and restart the server, or set stampede.valkey_url.")));
	if (!told)
	{
		ereport(NOTICE,
				(errmsg("stampede is not loaded through shared_preload_libraries: it uses Valkey alone"),
				 errdetail("Backends of this server do not coalesce before Valkey's lock, queries run uncached while Valkey is unavailable, locks of long queries are not renewed, and stampede_stats counts nothing."),
				 errhint("Add stampede to shared_preload_libraries in postgresql.conf and restart the server.")));
		told = true;
	}
}

static void
require_arg(bool isnull, const char *name)
{
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stampede %s must not be null", name)));
}

static text *
checked_key(Datum value, bool isnull)
{
	text	   *key;
	int			keylen;

	require_arg(isnull, "key");
	key = DatumGetTextPP(value);
	keylen = VARSIZE_ANY_EXHDR(key);
	if (keylen == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stampede key must not be empty")));
	if (keylen > STAMPEDE_MAX_KEY_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("stampede key is too long"),
				 errdetail("The key is %d bytes; at most %d are allowed.",
						   keylen, STAMPEDE_MAX_KEY_BYTES)));
	return key;
}

/* The ttl in milliseconds, months counted as 30 days as in date arithmetic. */
static int64
checked_ttl_ms(Datum value, bool isnull)
{
	Interval   *ttl;
	double		ms;

	require_arg(isnull, "ttl");
	ttl = DatumGetIntervalP(value);
	ms = (double) ttl->time / 1000.0 +
		((double) ttl->day + (double) ttl->month * DAYS_PER_MONTH) * SECS_PER_DAY * 1000.0;
	if (ms <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stampede ttl must be positive"),
				 errdetail("The ttl given is %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(ttl))))));
	if (ms < stampede_lock_timeout_ms)
		ereport(WARNING,
				(errmsg("stampede ttl is shorter than stampede.lock_timeout (%d ms)",
						stampede_lock_timeout_ms),
				 errhint("Use a ttl longer than stampede.lock_timeout, so that an entry outlives the lock that guards computing it.")));
	return ms >= (double) PG_INT64_MAX ? PG_INT64_MAX : (int64) ms;
}

/*
 * Fill req from the (key, query, ttl) arguments: the SQL functions' and the
 * custom scan's alike.
 */
void
StampedeRequestFromArgs(StampedeRequest *req, const Datum *args, const bool *nulls,
						StampedeKind kind)
{
	text	   *key = checked_key(args[0], nulls[0]);
	text	   *query;

	require_arg(nulls[1], "query");
	query = DatumGetTextPP(args[1]);
	memset(req, 0, sizeof(*req));
	req->key = VARDATA_ANY(key);
	req->keylen = VARSIZE_ANY_EXHDR(key);
	req->query = StampedeCheckQuery(VARDATA_ANY(query), VARSIZE_ANY_EXHDR(query), &req->schemas);
	req->ttl_ms = checked_ttl_ms(args[2], nulls[2]);
	req->kind = kind;
	require_shared_memory();
}

static void
prepare_request(FunctionCallInfo fcinfo, StampedeRequest *req, StampedeKind kind)
{
	Datum		args[3];
	bool		nulls[3];

	for (int i = 0; i < 3; i++)
	{
		args[i] = PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i);
	}
	StampedeRequestFromArgs(req, args, nulls, kind);
}

/*
 * The set-returning forms: rows as the caller's column definition list says
 * (typed = false), or as the row type of the fourth argument (typed = true).
 */
static Datum
cached_rows(FunctionCallInfo fcinfo, bool typed)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StampedeRequest req;
	TupleDesc	outdesc;
	MemoryContext oldcxt;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("stampede_cached must be called in the FROM clause")));

	prepare_request(fcinfo, &req, STAMPEDE_KIND_ROWS);

	if (typed)
	{
		if (get_call_result_type(fcinfo, NULL, &outdesc) != TYPEFUNC_COMPOSITE)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("stampede_cached's fourth argument must be of a row type"),
					 errhint("Pass NULL cast to a table or composite type, as in NULL::my_table.")));
	}
	else
	{
		outdesc = rsinfo->expectedDesc;
		if (outdesc == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_SYNTAX_ERROR),
					 errmsg("a column definition list is required for stampede_cached"),
					 errhint("Write it as: SELECT * FROM stampede_cached(...) AS t(id int, name text).")));
	}

	oldcxt = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	req.outdesc = outdesc;
	req.tupstore = tuplestore_begin_heap(false, false, work_mem);
	MemoryContextSwitchTo(oldcxt);

	StampedeServe(&req);

	/* The rows are of the expected type: no setDesc to check or free. */
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = req.tupstore;
	rsinfo->setDesc = NULL;
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(stampede_cached);
Datum
stampede_cached(PG_FUNCTION_ARGS)
{
	StampedeForgetDeadFrames();
	return cached_rows(fcinfo, false);
}

PG_FUNCTION_INFO_V1(stampede_cached_typed);
Datum
stampede_cached_typed(PG_FUNCTION_ARGS)
{
	StampedeForgetDeadFrames();
	return cached_rows(fcinfo, true);
}

/*
 * The jsonb form caches the jsonb array itself, so that a hit hands back
 * one stored value instead of converting every row again.
 */
PG_FUNCTION_INFO_V1(stampede_cached_jsonb);
Datum
stampede_cached_jsonb(PG_FUNCTION_ARGS)
{
	StampedeRequest req;
	TupleTableSlot *slot;
	bool		isnull;
	Datum		result;

	StampedeForgetDeadFrames();
	prepare_request(fcinfo, &req, STAMPEDE_KIND_JSONB);
	req.query = psprintf("SELECT coalesce(jsonb_agg(q), '[]'::jsonb) FROM (\n%s\n) q",
						 req.query);
	req.outdesc = CreateTemplateTupleDesc(1);
	TupleDescInitEntry(req.outdesc, 1, "rows", JSONBOID, -1, 0);
	req.tupstore = tuplestore_begin_heap(false, false, work_mem);

	StampedeServe(&req);

	slot = MakeSingleTupleTableSlot(req.outdesc, &TTSOpsMinimalTuple);
	if (!tuplestore_gettupleslot(req.tupstore, true, false, slot))
		elog(ERROR, "stampede_cached_jsonb: the query returned no row");
	result = slot_getattr(slot, 1, &isnull);
	result = isnull ? (Datum) 0 : PointerGetDatum(PG_DETOAST_DATUM_COPY(result));
	ExecDropSingleTupleTableSlot(slot);
	tuplestore_end(req.tupstore);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

PG_FUNCTION_INFO_V1(stampede_invalidate);
Datum
stampede_invalidate(PG_FUNCTION_ARGS)
{
	text	   *key = checked_key(PG_GETARG_DATUM(0), PG_ARGISNULL(0));

	StampedeForgetDeadFrames();
	require_shared_memory();
	PG_RETURN_BOOL(StampedeInvalidate(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)));
}
