/*-------------------------------------------------------------------------
 *
 * query.c
 *	  The cached query: what is accepted, what it reads, who may read its
 *	  rows, and running it through SPI.
 *
 *	  Accepted: one read-only statement that returns rows (SELECT, VALUES,
 *	  TABLE, WITH ... SELECT), without SELECT INTO, FOR UPDATE/SHARE or
 *	  data-modifying WITH.  It runs with the caller's rights and snapshot.
 *
 *	  While planning, we record what the query reads: the relations and
 *	  columns checked with the caller's rights, and the functions it calls.
 *	  A hit repeats exactly those checks for the role asking, so that it
 *	  never hands a role rows it could not have read itself.  Rows that can
 *	  differ by role (row-level security, role-dependent functions) are kept
 *	  per role instead.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/heaptoast.h"
#include "access/tupconvert.h"
#include "access/sysattr.h"
#include "catalog/catalog.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "nodes/nodeFuncs.h"
#include "parser/parsetree.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/rls.h"
#include "utils/syscache.h"

#include "compat.h"
#include "query.h"

/*
 * The last query text that passed StampedeCheckQuery, and the statement in
 * it: a dashboard asks the same text over and over, and a hit should not pay
 * for parsing it each time.
 */
static char *checked_query = NULL;
static int	checked_query_len = -1;
static char *checked_statement = NULL;

static void
reject_query(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("stampede caches only a single read-only query that returns rows"),
			 errdetail_internal("%s", detail),
			 errhint("Pass one SELECT, VALUES, TABLE or WITH ... SELECT statement.")));
}

/*
 * Check that the query text (querylen bytes, not NUL-terminated) is one
 * statement that only reads and returns rows, and return that statement's
 * text alone (no trailing semicolon or comment), so that it can be wrapped.
 * Raises the error that says what is wrong.
 */
char *
StampedeCheckQuery(const char *querytext, int querylen)
{
	List	   *parsetree;
	RawStmt    *raw;
	SelectStmt *select;
	int			len;
	MemoryContext oldcxt;
	char	   *query;

	if (querylen == checked_query_len && memcmp(checked_query, querytext, querylen) == 0)
		return checked_statement;

	query = pnstrdup(querytext, querylen);
	parsetree = pg_parse_query(query);
	if (parsetree == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must not be empty")));
	if (list_length(parsetree) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("query must be a single statement"),
				 errdetail("The text holds %d statements.", list_length(parsetree))));

	raw = linitial_node(RawStmt, parsetree);
	if (!IsA(raw->stmt, SelectStmt))
		reject_query(psprintf(_("The query is a statement of type %s."),
							  GetCommandTagName(CreateCommandTag(raw->stmt))));
	select = (SelectStmt *) raw->stmt;
	if (select->intoClause != NULL)
		reject_query(_("SELECT INTO creates a table."));
	if (select->lockingClause != NIL)
		reject_query(_("SELECT ... FOR UPDATE/SHARE locks rows."));
	if (select->withClause != NULL)
	{
		ListCell   *lc;

		foreach(lc, select->withClause->ctes)
		{
			CommonTableExpr *cte = lfirst_node(CommonTableExpr, lc);

			if (!IsA(cte->ctequery, SelectStmt))
				reject_query(_("A WITH query modifies data."));
		}
	}

	len = raw->stmt_len > 0 ? raw->stmt_len : (int) strlen(query) - raw->stmt_location;

	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	if (checked_query)
	{
		pfree(checked_query);
		pfree(checked_statement);
		checked_query_len = -1;
	}
	checked_statement = pnstrdup(query + raw->stmt_location, len);
	checked_query = pnstrdup(querytext, querylen);
	checked_query_len = querylen;
	MemoryContextSwitchTo(oldcxt);
	return checked_statement;
}

/* ---- what a query reads ---- */

typedef struct ReadCollector
{
	StampedeReadSet *reads;
	List	   *relids;			/* every relation read, views' included */
	bool		locks_rows;
} ReadCollector;

static void
collect_relation(ReadCollector *collector, Oid relid, Bitmapset *selected)
{
	StampedeReadRel *rel = NULL;
	ListCell   *lc;
	int			col = -1;

	foreach(lc, collector->reads->rels)
	{
		if (((StampedeReadRel *) lfirst(lc))->relid == relid)
			rel = lfirst(lc);
	}
	if (rel == NULL)
	{
		rel = palloc0(sizeof(StampedeReadRel));
		rel->relid = relid;
		collector->reads->rels = lappend(collector->reads->rels, rel);
	}
	while ((col = bms_next_member(selected, col)) >= 0)
		rel->cols = list_append_unique_int(rel->cols, col + FirstLowInvalidHeapAttributeNumber);
}

/*
 * A function whose result may depend on who calls it: the roles' own
 * functions, unless SECURITY DEFINER (those run as their owner), and the
 * built-ins that tell who the user is.
 */
static bool
function_depends_on_role(Oid funcid)
{
	HeapTuple	tuple;
	bool		secdef;

	if (funcid == F_CURRENT_USER || funcid == F_SESSION_USER)
		return true;
	if (funcid < FirstNormalObjectId)
		return false;
	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (!HeapTupleIsValid(tuple))
		return true;
	secdef = ((Form_pg_proc) GETSTRUCT(tuple))->prosecdef;
	ReleaseSysCache(tuple);
	return !secdef;
}

static bool
collect_function(Oid funcid, void *context)
{
	ReadCollector *collector = context;

	collector->reads->funcs = list_append_unique_oid(collector->reads->funcs, funcid);
	if (function_depends_on_role(funcid))
		collector->reads->per_role = true;
	return false;
}

static bool
collect_walker(Node *node, void *context)
{
	ReadCollector *collector = context;

	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *query = (Query *) node;
		ListCell   *lc;

		if (query->rowMarks != NIL || query->hasModifyingCTE ||
			query->commandType != CMD_SELECT)
			collector->locks_rows = true;
		foreach(lc, query->rtable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

			if (rte->rtekind != RTE_RELATION)
				continue;
			collector->relids = list_append_unique_oid(collector->relids, rte->relid);
			if (check_enable_rls(rte->relid, InvalidOid, true) != RLS_NONE)
				collector->reads->per_role = true;
			/* Relations read through a view are checked as the view's owner. */
			if (StampedeRteRequiresSelect(query, rte) &&
				!OidIsValid(StampedeRteCheckAsUser(query, rte)))
				collect_relation(collector, rte->relid,
								 StampedeRteSelectedCols(query, rte));
		}
		return query_tree_walker(query, collect_walker, context, 0);
	}
#if PG_VERSION_NUM < 160000
	if (IsA(node, SQLValueFunction))
	{
		SQLValueFunctionOp op = ((SQLValueFunction *) node)->op;

		if (op == SVFOP_CURRENT_ROLE || op == SVFOP_CURRENT_USER ||
			op == SVFOP_USER || op == SVFOP_SESSION_USER)
			collector->reads->per_role = true;
	}
#endif
	check_functions_in_node(node, collect_function, context);
	return expression_tree_walker(node, collect_walker, context);
}

/*
 * Connect to SPI and prepare query: its one statement, which must return
 * rows.  The caller ends with SPI_finish.
 */
static CachedPlanSource *
prepare_query(const char *query, SPIPlanPtr *plan)
{
	CachedPlanSource *plansource;
	int			rc;

	if ((rc = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(rc));
	*plan = SPI_prepare(query, 0, NULL);
	if (*plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (list_length(SPI_plan_get_plan_sources(*plan)) != 1)
		reject_query(_("The query is not a single statement."));
	plansource = linitial(SPI_plan_get_plan_sources(*plan));
	if (plansource->resultDesc == NULL || list_length(plansource->query_list) != 1)
		reject_query(_("The query returns no rows."));
	return plansource;
}

/* What the prepared query reads; rejects one that locks or modifies rows. */
static void
collect_reads(CachedPlanSource *plansource, StampedeReadSet *reads, ReadCollector *collector)
{
	collector->reads = reads;
	collector->relids = NIL;
	collector->locks_rows = false;
	collect_walker((Node *) linitial(plansource->query_list), collector);
	if (collector->locks_rows)
		reject_query(_("The query locks or modifies rows."));
}

/*
 * What the query would read if this backend ran it, found by parse
 * analysis alone (nothing is planned or run).  For entries another cluster
 * wrote, whose recorded OIDs mean nothing here.  A query that does not
 * prepare here raises the error running it would.
 */
void
StampedeQueryReads(const char *query, StampedeReadSet *reads)
{
	MemoryContext callercxt = CurrentMemoryContext;
	SPIPlanPtr	plan;
	CachedPlanSource *plansource;
	ReadCollector collector;

	memset(reads, 0, sizeof(*reads));
	plansource = prepare_query(query, &plan);
	MemoryContextSwitchTo(callercxt);
	collect_reads(plansource, reads, &collector);
	SPI_finish();
	MemoryContextSwitchTo(callercxt);
}

/* The hash an entry records of its query's text, the same on every cluster. */
uint64
StampedeQueryHash(const char *query)
{
	return hash_bytes_extended((const unsigned char *) query, strlen(query), 0);
}

/*
 * Has this transaction written to one of these relations?  Then a query
 * reading them may see uncommitted rows.  A lock at least as strong as the
 * one INSERT, UPDATE and DELETE take, held to the end of the transaction,
 * says so (an explicit LOCK TABLE too, which errs on the safe side).
 */
static bool
wrote_to_any(List *relids)
{
	static const LOCKMODE write_modes[] = {
		RowExclusiveLock, ShareUpdateExclusiveLock, ShareRowExclusiveLock,
		ExclusiveLock, AccessExclusiveLock
	};
	ListCell   *lc;

	foreach(lc, relids)
	{
		Oid			relid = lfirst_oid(lc);
		LOCKTAG		tag;

		SET_LOCKTAG_RELATION(tag, IsSharedRelation(relid) ? InvalidOid : MyDatabaseId, relid);
		for (int i = 0; i < lengthof(write_modes); i++)
		{
			if (StampedeLockHeldByMe(&tag, write_modes[i]))
				return true;
		}
	}
	return false;
}

/*
 * Does the role asking for a hit hold the rights that running the query
 * would check?  Raises the same permission error the query would.  False
 * when something the query read is gone (the entry is stale: a miss).
 */
bool
StampedeCheckReadRights(const StampedeReadSet *reads)
{
	Oid			userid = GetUserId();
	ListCell   *lc;

	foreach(lc, reads->rels)
	{
		StampedeReadRel *rel = lfirst(lc);
		ListCell   *lc2;
		bool		allowed = true;

		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(rel->relid)))
			return false;
		if (pg_class_aclcheck(rel->relid, userid, ACL_SELECT) == ACLCHECK_OK)
			continue;
		/* As ExecCheckRTEPerms: without table rights, every column read. */
		if (rel->cols == NIL)
			allowed = pg_attribute_aclcheck_all(rel->relid, userid, ACL_SELECT,
												ACLMASK_ANY) == ACLCHECK_OK;
		foreach(lc2, rel->cols)
		{
			AttrNumber	attno = (AttrNumber) lfirst_int(lc2);

			if (attno == InvalidAttrNumber)
				allowed &= pg_attribute_aclcheck_all(rel->relid, userid, ACL_SELECT,
													 ACLMASK_ALL) == ACLCHECK_OK;
			else
				allowed &= pg_attribute_aclcheck(rel->relid, attno, userid,
												 ACL_SELECT) == ACLCHECK_OK;
		}
		if (!allowed)
			aclcheck_error(ACLCHECK_NO_PRIV,
						   get_relkind_objtype(get_rel_relkind(rel->relid)),
						   get_rel_name(rel->relid));
	}
	foreach(lc, reads->funcs)
	{
		Oid			funcid = lfirst_oid(lc);

		if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(funcid)))
			return false;
		if (StampedeProcAclCheck(funcid, userid, ACL_EXECUTE) != ACLCHECK_OK)
			aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_FUNCTION, get_func_name(funcid));
	}
	return true;
}

/*
 * How to turn rows of indesc into rows of outdesc: NULL when they are the
 * same, a map when outdesc has dropped columns.  A different column count or
 * type is the caller's error, 42804, on a miss and a hit alike.
 */
TupleConversionMap *
StampedeRowTypeMap(TupleDesc indesc, TupleDesc outdesc)
{
	return convert_tuples_by_position(indesc, outdesc,
									  gettext_noop("query result does not match the requested row type"));
}

/* ---- running it ---- */

typedef struct StampedeReceiver
{
	DestReceiver pub;
	TupleDesc	desc;
	StampedeEncoder *encoder;
	Tuplestorestate *tupstore;
	TupleConversionMap *map;
	MemoryContext rowcxt;
} StampedeReceiver;

/*
 * One row of the query's result: made self-contained (all attributes, no
 * TOAST pointers into tables that may change), then encoded for the store
 * and handed to the caller.
 */
static void
receive_tuple(StampedeReceiver *receiver, HeapTuple tuple, TupleTableSlot *slot)
{
	if (HeapTupleHeaderGetNatts(tuple->t_data) != receiver->desc->natts)
	{
		/* A short on-disk tuple: let the slot fill in the missing columns. */
		Assert(slot != NULL);
		slot_getallattrs(slot);
		tuple = heap_form_tuple(receiver->desc, slot->tts_values, slot->tts_isnull);
	}
	if (HeapTupleHasExternal(tuple))
		tuple = toast_flatten_tuple(tuple, receiver->desc);

	StampedeEncoderAddRow(receiver->encoder, receiver->desc, tuple);
	if (receiver->map)
		tuple = execute_attr_map_tuple(tuple, receiver->map);
	tuplestore_puttuple(receiver->tupstore, tuple);
}

static bool
receiver_receive_slot(TupleTableSlot *slot, DestReceiver *self)
{
	StampedeReceiver *receiver = (StampedeReceiver *) self;
	MemoryContext oldcxt = MemoryContextSwitchTo(receiver->rowcxt);
	bool		should_free;
	HeapTuple	tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);

	receive_tuple(receiver, tuple, slot);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(receiver->rowcxt);
	return true;
}

static void
receiver_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
receiver_shutdown(DestReceiver *self)
{
}

static void
receiver_destroy(DestReceiver *self)
{
}

/*
 * Reject result columns whose values cannot be read back by another
 * session: anonymous records carry a type number private to this backend.
 */
static void
check_result_types(TupleDesc desc)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Oid			typid = getBaseType(TupleDescAttr(desc, i)->atttypid);

		if (typid == RECORDOID || typid == RECORDARRAYOID)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("column \"%s\" has an anonymous record type, which cannot be cached",
							NameStr(TupleDescAttr(desc, i)->attname)),
					 errhint("Cast it to a named composite type, or to jsonb.")));
	}
}

/*
 * Run query (already checked by StampedeCheckQuery) with the caller's
 * rights and snapshot.  Its rows go to tupstore as outdesc, and into an
 * encoded entry up to entry_limit bytes.  Everything in result is allocated
 * in the caller's memory context.
 */
void
StampedeRunQuery(const char *query, const char *key, int keylen,
				 TupleDesc outdesc, Tuplestorestate *tupstore,
				 Size entry_limit, StampedeRunResult *result)
{
	MemoryContext callercxt = CurrentMemoryContext;
	MemoryContext rowcxt;
	MemoryContext spicxt;
	SPIPlanPtr	plan;
	CachedPlanSource *plansource;
	ReadCollector collector;
	StampedeEncoder encoder;
	StampedeReceiver receiver;
	int			rc;

	memset(result, 0, sizeof(*result));
	rowcxt = AllocSetContextCreate(callercxt, "stampede row", ALLOCSET_DEFAULT_SIZES);

	plansource = prepare_query(query, &plan);
	spicxt = CurrentMemoryContext;

	/* What must outlive SPI_finish is made in the caller's context. */
	MemoryContextSwitchTo(callercxt);
	result->resultdesc = CreateTupleDescCopy(plansource->resultDesc);
	check_result_types(result->resultdesc);
	receiver.map = StampedeRowTypeMap(result->resultdesc, outdesc);

	collect_reads(plansource, &result->reads, &collector);

	StampedeEncoderInit(&encoder, entry_limit, key, keylen, 0, StampedeQueryHash(query),
						result->resultdesc, &result->reads);
	receiver.pub.receiveSlot = receiver_receive_slot;
	receiver.pub.rStartup = receiver_startup;
	receiver.pub.rShutdown = receiver_shutdown;
	receiver.pub.rDestroy = receiver_destroy;
	receiver.pub.mydest = DestTuplestore;
	receiver.desc = result->resultdesc;
	receiver.encoder = &encoder;
	receiver.tupstore = tupstore;
	receiver.rowcxt = rowcxt;
	MemoryContextSwitchTo(spicxt);

#ifdef STAMPEDE_HAS_SPI_EXECUTE_EXTENDED
	{
		SPIExecuteOptions options;

		memset(&options, 0, sizeof(options));
		options.read_only = true;	/* the caller's snapshot, no CCI */
		options.dest = &receiver.pub;
		rc = SPI_execute_plan_extended(plan, &options);
	}
#else
	rc = SPI_execute_plan(plan, NULL, NULL, true, 0);
	for (uint64 i = 0; rc == SPI_OK_SELECT && i < SPI_processed; i++)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(rowcxt);

		receive_tuple(&receiver, SPI_tuptable->vals[i], NULL);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(rowcxt);
	}
#endif
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	SPI_finish();

	MemoryContextSwitchTo(callercxt);
	result->saw_own_writes = wrote_to_any(collector.relids);
	result->nrows = encoder.nrows;
	if (!StampedeEncoderFinish(&encoder, &result->entry, &result->entry_len))
		result->entry = NULL;
	MemoryContextDelete(rowcxt);
}
