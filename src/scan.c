/*-------------------------------------------------------------------------
 *
 * scan.c
 *	  A custom scan that stands in for stampede_cached in FROM.
 *
 *	  A set-returning function hands its rows over in a tuplestore: each
 *	  row is allocated, copied in, read back and freed, and that costs a
 *	  hit more than a sequential scan of the same rows costs a table.  This
 *	  scan reads a hit's rows straight from the entry instead: one aligned
 *	  block of tuples, deformed into the scan slot one by one (the deforming
 *	  that sending a row needs anyway).  A miss goes through the tuplestore
 *	  as the function does.
 *
 *	  The planner hook offers the scan for stampede_cached (both forms) in
 *	  FROM when its arguments do not depend on other relations (no lateral
 *	  references, no sub-selects) and the query does not ask for the whole
 *	  row, and the row type is a row type; anything else stays a function
 *	  scan, which also raises the errors for a wrong row type argument.  The scan checks EXECUTE on
 *	  the function as the function scan would.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/restrictinfo.h"
#include "parser/parse_relation.h"
#include "parser/parsetree.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "cache.h"
#include "codec.h"
#include "compat.h"
#include "flight.h"
#include "scan.h"

typedef struct StampedeScanState
{
	CustomScanState css;
	List	   *args;			/* ExprStates of key, query, ttl */
	MemoryContext cxt;			/* what one execution of the call keeps */
	bool		started;
	/* a hit: the entry's rows, MinimalTuples one after the other */
	char	   *rows;
	char	   *next;
	uint64		nrows;
	uint64		nread;
	/* a miss: the rows the query returned */
	Tuplestorestate *tupstore;
	TupleTableSlot *tupstore_slot;
} StampedeScanState;

static set_rel_pathlist_hook_type prev_set_rel_pathlist_hook = NULL;

static Plan *plan_stampede_path(PlannerInfo *root, RelOptInfo *rel,
								CustomPath *best_path, List *tlist,
								List *clauses, List *custom_plans);
static Node *create_stampede_scan_state(CustomScan *cscan);
static void begin_stampede_scan(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *exec_stampede_scan(CustomScanState *node);
static void end_stampede_scan(CustomScanState *node);
static void rescan_stampede_scan(CustomScanState *node);

static const CustomPathMethods stampede_path_methods = {
	.CustomName = "stampede",
	.PlanCustomPath = plan_stampede_path,
};

static const CustomScanMethods stampede_scan_methods = {
	.CustomName = "stampede",
	.CreateCustomScanState = create_stampede_scan_state,
};

static const CustomExecMethods stampede_exec_methods = {
	.CustomName = "stampede",
	.BeginCustomScan = begin_stampede_scan,
	.ExecCustomScan = exec_stampede_scan,
	.EndCustomScan = end_stampede_scan,
	.ReScanCustomScan = rescan_stampede_scan,
};

/*
 * The OIDs of the stampede_cached forms, once looked up, so that planning a
 * call does not read pg_proc each time; forgotten when pg_proc changes.
 */
static Oid	known_rows_functions[2];

static void
forget_rows_functions(Datum arg, int cacheid, uint32 hashvalue)
{
	StampedeForgetDeadFrames();
	known_rows_functions[0] = known_rows_functions[1] = InvalidOid;
}

/* Is funcid one of this library's row-returning stampede_cached forms? */
static bool
is_stampede_rows_function(Oid funcid)
{
	HeapTuple	tuple;
	bool		ours = false;

	if (funcid == known_rows_functions[0] || funcid == known_rows_functions[1])
		return true;
	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (!HeapTupleIsValid(tuple))
		return false;
	if (((Form_pg_proc) GETSTRUCT(tuple))->prolang == ClanguageId)
	{
		bool		isnull;
		Datum		src = SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_prosrc, &isnull);
		Datum		bin = SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_probin, &isnull);

		if (!isnull)
		{
			char	   *prosrc = TextDatumGetCString(src);
			char	   *probin = TextDatumGetCString(bin);
			size_t		binlen = strlen(probin);

			ours = (strcmp(prosrc, "stampede_cached") == 0 ||
					strcmp(prosrc, "stampede_cached_typed") == 0) &&
				binlen >= 8 && strcmp(probin + binlen - 8, "stampede") == 0;
		}
	}
	ReleaseSysCache(tuple);
	if (ours)
		known_rows_functions[OidIsValid(known_rows_functions[0]) ? 1 : 0] = funcid;
	return ours;
}

/* Does the scan of rel have to produce whole-row values (t.*, t::text)? */
static bool
needs_whole_row(RelOptInfo *rel)
{
	List	   *exprs = list_copy(rel->reltarget->exprs);
	ListCell   *lc;

	foreach(lc, rel->baserestrictinfo)
		exprs = lappend(exprs, ((RestrictInfo *) lfirst(lc))->clause);
	foreach(lc, pull_var_clause((Node *) exprs, PVC_RECURSE_PLACEHOLDERS))
	{
		if (IsA(lfirst(lc), Var) && ((Var *) lfirst(lc))->varattno == InvalidAttrNumber)
			return true;
	}
	return false;
}

static void
stampede_set_rel_pathlist(PlannerInfo *root, RelOptInfo *rel, Index rti,
						  RangeTblEntry *rte)
{
	RangeTblFunction *rtfunc;
	FuncExpr   *func;
	Path	   *funcpath;
	CustomPath *cpath;

	StampedeForgetDeadFrames();
	if (prev_set_rel_pathlist_hook)
		prev_set_rel_pathlist_hook(root, rel, rti, rte);

	if (rte->rtekind != RTE_FUNCTION || rte->funcordinality ||
		list_length(rte->functions) != 1 || rel->reloptkind != RELOPT_BASEREL ||
		rel->pathlist == NIL || !bms_is_empty(rel->lateral_relids))
		return;
	rtfunc = linitial(rte->functions);
	if (!IsA(rtfunc->funcexpr, FuncExpr))
		return;
	func = (FuncExpr *) rtfunc->funcexpr;
	if (list_length(func->args) < 3 ||
		/* Not a domain over a row type: its CHECK is the function scan's to run. */
		(func->funcresulttype != RECORDOID &&
		 get_typtype(func->funcresulttype) != TYPTYPE_COMPOSITE) ||
		contain_var_clause((Node *) func->args) ||
		contain_subplans((Node *) func->args) ||
		!is_stampede_rows_function(func->funcid) ||
		needs_whole_row(rel))
		return;

	/* Same rows as the function scan, for less: make sure it is chosen. */
	funcpath = linitial(rel->pathlist);
	cpath = makeNode(CustomPath);
	cpath->path.pathtype = T_CustomScan;
	cpath->path.parent = rel;
	cpath->path.pathtarget = rel->reltarget;
	cpath->path.param_info = NULL;
	cpath->path.parallel_aware = false;
	cpath->path.parallel_safe = false;
	cpath->path.parallel_workers = 0;
	cpath->path.rows = funcpath->rows;
	cpath->path.startup_cost = funcpath->startup_cost / 2;
	cpath->path.total_cost = funcpath->total_cost / 2;
	cpath->path.pathkeys = NIL;
	cpath->flags = 0;
	cpath->custom_paths = NIL;
	cpath->custom_private = NIL;
	cpath->methods = &stampede_path_methods;
	add_path(rel, &cpath->path);
}

void
StampedeScanInit(void)
{
	prev_set_rel_pathlist_hook = set_rel_pathlist_hook;
	set_rel_pathlist_hook = stampede_set_rel_pathlist;
	RegisterCustomScanMethods(&stampede_scan_methods);
	CacheRegisterSyscacheCallback(PROCOID, forget_rows_functions, (Datum) 0);
}

/*
 * The scan has no relation to read its row type from: its scan tuple is
 * described by a target list of the function's columns, which setrefs.c
 * then maps the plan's Vars onto.
 */
static Plan *
plan_stampede_path(PlannerInfo *root, RelOptInfo *rel, CustomPath *best_path,
				   List *tlist, List *clauses, List *custom_plans)
{
	RangeTblEntry *rte = planner_rt_fetch(rel->relid, root);
	FuncExpr   *func = (FuncExpr *) ((RangeTblFunction *) linitial(rte->functions))->funcexpr;
	CustomScan *cscan = makeNode(CustomScan);
	List	   *colvars;
	List	   *scan_tlist = NIL;
	ListCell   *lc;
	AttrNumber	resno = 1;

	StampedeForgetDeadFrames();
	expandRTE(rte, rel->relid, 0, -1, false, NULL, &colvars);
	foreach(lc, colvars)
		scan_tlist = lappend(scan_tlist, makeTargetEntry(lfirst(lc), resno++, NULL, false));

	cscan->scan.plan.targetlist = tlist;
	cscan->scan.plan.qual = extract_actual_clauses(clauses, false);
	cscan->scan.scanrelid = 0;
	cscan->flags = best_path->flags;
	cscan->custom_scan_tlist = scan_tlist;
	cscan->custom_exprs = list_truncate(list_copy(func->args), 3);
	cscan->custom_private = list_make1_oid(func->funcid);
	cscan->methods = &stampede_scan_methods;
	return &cscan->scan.plan;
}

static Node *
create_stampede_scan_state(CustomScan *cscan)
{
	StampedeScanState *state = palloc0(sizeof(StampedeScanState));

	StampedeForgetDeadFrames();
	NodeSetTag(state, T_CustomScanState);
	state->css.methods = &stampede_exec_methods;
	return (Node *) state;
}

static void
begin_stampede_scan(CustomScanState *node, EState *estate, int eflags)
{
	StampedeScanState *state = (StampedeScanState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	Oid			funcid = linitial_oid(cscan->custom_private);

	StampedeForgetDeadFrames();
	/* What ExecInitFunc would have checked of the function. */
	if (StampedeProcAclCheck(funcid, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_FUNCTION, get_func_name(funcid));
	InvokeFunctionExecuteHook(funcid);

	state->args = ExecInitExprList(cscan->custom_exprs, &node->ss.ps);
	state->cxt = AllocSetContextCreate(estate->es_query_cxt, "stampede scan",
									   ALLOCSET_DEFAULT_SIZES);
}

/* Make the call: a hit keeps the entry's rows, a miss the query's. */
static void
stampede_scan_start(StampedeScanState *state)
{
	ExprContext *econtext = state->css.ss.ps.ps_ExprContext;
	TupleDesc	desc = state->css.ss.ss_ScanTupleSlot->tts_tupleDescriptor;
	MemoryContext oldcxt = MemoryContextSwitchTo(state->cxt);
	StampedeRequest req;
	Datum		args[3];
	bool		nulls[3];
	int			i = 0;
	ListCell   *lc;

	foreach(lc, state->args)
	{
		args[i] = ExecEvalExpr(lfirst(lc), econtext, &nulls[i]);
		i++;
	}
	StampedeRequestFromArgs(&req, args, nulls, STAMPEDE_KIND_ROWS);
	req.outdesc = desc;
	req.tupstore = tuplestore_begin_heap(false, false, work_mem);
	req.take_entry = true;
	StampedeServe(&req);

	if (req.entry_data != NULL)
	{
		StampedeEntry entry;

		tuplestore_end(req.tupstore);
		if (!StampedeEntryParse(req.entry_data, req.entry_len, &entry) ||
			(state->rows = StampedeEntryMinimalTuples(&entry)) == NULL)
			elog(ERROR, "stampede entry for the key is damaged");
		state->nrows = entry.nrows;
		state->next = state->rows;
		state->nread = 0;
	}
	else
	{
		state->tupstore = req.tupstore;
		state->tupstore_slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	}
	state->started = true;
	MemoryContextSwitchTo(oldcxt);
}

static TupleTableSlot *
stampede_scan_next(ScanState *ss)
{
	StampedeScanState *state = (StampedeScanState *) ss;
	TupleTableSlot *slot = ss->ss_ScanTupleSlot;

	if (!state->started)
		stampede_scan_start(state);
	ExecClearTuple(slot);

	if (state->rows != NULL)
	{
		MinimalTuple mtup;
		HeapTupleData htup;

		if (state->nread >= state->nrows)
			return slot;
		mtup = (MinimalTuple) state->next;
		state->next += MAXALIGN(mtup->t_len);
		state->nread++;
		/* A MinimalTuple seen as a HeapTuple, as tuptable.c does. */
		htup.t_len = mtup->t_len + MINIMAL_TUPLE_OFFSET;
		htup.t_data = (HeapTupleHeader) ((char *) mtup - MINIMAL_TUPLE_OFFSET);
		heap_deform_tuple(&htup, slot->tts_tupleDescriptor,
						  slot->tts_values, slot->tts_isnull);
		return ExecStoreVirtualTuple(slot);
	}

	if (!tuplestore_gettupleslot(state->tupstore, true, false, state->tupstore_slot))
		return slot;
	slot_getallattrs(state->tupstore_slot);
	memcpy(slot->tts_values, state->tupstore_slot->tts_values,
		   sizeof(Datum) * slot->tts_tupleDescriptor->natts);
	memcpy(slot->tts_isnull, state->tupstore_slot->tts_isnull,
		   sizeof(bool) * slot->tts_tupleDescriptor->natts);
	return ExecStoreVirtualTuple(slot);
}

static bool
stampede_scan_recheck(ScanState *ss, TupleTableSlot *slot)
{
	return true;
}

static TupleTableSlot *
exec_stampede_scan(CustomScanState *node)
{
	StampedeForgetDeadFrames();
	return ExecScan(&node->ss, stampede_scan_next, stampede_scan_recheck);
}

/* Forget the call's rows: the next read makes the call again. */
static void
stampede_scan_reset(StampedeScanState *state)
{
	if (state->tupstore_slot)
		ExecDropSingleTupleTableSlot(state->tupstore_slot);
	if (state->tupstore)
		tuplestore_end(state->tupstore);
	state->tupstore_slot = NULL;
	state->tupstore = NULL;
	state->rows = state->next = NULL;
	state->nrows = state->nread = 0;
	state->started = false;
	MemoryContextReset(state->cxt);
}

static void
end_stampede_scan(CustomScanState *node)
{
	StampedeScanState *state = (StampedeScanState *) node;

	StampedeForgetDeadFrames();
	stampede_scan_reset(state);
	MemoryContextDelete(state->cxt);
}

/*
 * As a function scan: new argument values make a new call; otherwise the
 * same rows are read again.
 */
static void
rescan_stampede_scan(CustomScanState *node)
{
	StampedeScanState *state = (StampedeScanState *) node;

	StampedeForgetDeadFrames();
	if (node->ss.ps.chgParam != NULL)
		stampede_scan_reset(state);
	else if (state->tupstore)
		tuplestore_rescan(state->tupstore);
	else
	{
		state->next = state->rows;
		state->nread = 0;
	}
	ExecScanReScan(&node->ss);
}
