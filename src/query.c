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
 *	  Before running, we record what the query reads: every relation, with
 *	  the columns read and the user its rights are checked as (the caller,
 *	  or a view's owner for what the view reads), and the functions it
 *	  calls.  A hit repeats exactly those checks, as running the query
 *	  would, so that it never hands a role rows it could not have read
 *	  itself; and the schemas the text names explicitly must still grant
 *	  USAGE (those it reaches through search_path are in the call's
 *	  identity: see identity.c).
 *
 *	  Who else may be handed the rows (StampedeScope), by what the query
 *	  reads and calls:
 *
 *		shared		relations without row-level security, immutable
 *					functions, and built-ins that depend only on their
 *					arguments, the data and the settings in the identity;
 *		role		built-ins that tell who the user is or what the user may
 *					do (current_user, has_*_privilege, pg_has_role, ...):
 *					the same effective and session user only;
 *		settings	row-level security (a policy may read any setting),
 *					foreign tables (user mappings), and functions of users
 *					and extensions that are not immutable (they may read
 *					anything the caller can, and any setting),
 *					current_setting() of a custom setting: the same users
 *					with the same custom settings only;
 *		nobody		temporary tables and functions, built-ins that read
 *					session, backend or server state or data outside the
 *					query (settings by other names, sequences, large objects,
 *					files, statistics and activity, query_to_xml and the
 *					like, pg_try_advisory_lock, WAL and recovery), and every
 *					volatile built-in but a few known to read nothing
 *					(random, clock_timestamp, ...): the rows go to their
 *					caller and are not stored.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/table.h"
#include "access/htup_details.h"
#include "access/heaptoast.h"
#include "access/tupconvert.h"
#include "access/xact.h"
#include "access/sysattr.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_language.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "catalog/pg_proc.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "nodes/nodeFuncs.h"
#include "parser/parsetree.h"
#include "nodes/makefuncs.h"
#include "nodes/readfuncs.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/syscache.h"

#include "changes.h"
#include "compat.h"
#include "identity.h"
#include "query.h"

/*
 * The last query text that passed StampedeCheckQuery, and the statement in
 * it: a dashboard asks the same text over and over, and a hit should not pay
 * for parsing it each time.
 */
static char *checked_query = NULL;
static int	checked_query_len = -1;
static char *checked_statement = NULL;
static List *checked_schemas = NIL;

static void
reject_query(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("stampede caches only a single read-only query that returns rows"),
			 errdetail_internal("%s", detail),
			 errhint("Pass one SELECT, VALUES, TABLE or WITH ... SELECT statement.")));
}

/* The schema of a qualified name (schema.name or catalog.schema.name). */
static void
collect_qualifier(List *names, List **schemas)
{
	if (list_length(names) >= 2)
	{
		Node	   *schema = list_nth(names, list_length(names) - 2);

		if (IsA(schema, String))
			*schemas = list_append_unique(*schemas, schema);
	}
}

/* Every schema the raw statement names explicitly: those need USAGE. */
static bool
collect_schemas_walker(Node *node, List **schemas)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeVar) && ((RangeVar *) node)->schemaname)
		*schemas = list_append_unique(*schemas, makeString(((RangeVar *) node)->schemaname));
	else if (IsA(node, FuncCall))
		collect_qualifier(((FuncCall *) node)->funcname, schemas);
	else if (IsA(node, TypeName))
		collect_qualifier(((TypeName *) node)->names, schemas);
	else if (IsA(node, A_Expr) && ((A_Expr *) node)->kind == AEXPR_OP)
		collect_qualifier(((A_Expr *) node)->name, schemas);
	else if (IsA(node, CollateClause))
		collect_qualifier(((CollateClause *) node)->collname, schemas);
	return raw_expression_tree_walker(node, collect_schemas_walker, (void *) schemas);
}

/*
 * Check that the query text (querylen bytes, not NUL-terminated) is one
 * statement that only reads and returns rows, and return that statement's
 * text alone (no trailing semicolon or comment), so that it can be wrapped.
 * *schemas: the schemas it names explicitly (String nodes).  Raises the
 * error that says what is wrong.
 */
char *
StampedeCheckQuery(const char *querytext, int querylen, List **schemas)
{
	List	   *parsetree;
	RawStmt    *raw;
	SelectStmt *select;
	int			len;
	MemoryContext oldcxt;
	char	   *query;

	if (querylen == checked_query_len && memcmp(checked_query, querytext, querylen) == 0)
	{
		*schemas = checked_schemas;
		return checked_statement;
	}

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
		list_free_deep(checked_schemas);
		checked_query_len = -1;
	}
	checked_schemas = NIL;
	(void) collect_schemas_walker(copyObject(raw->stmt), &checked_schemas);
	checked_statement = pnstrdup(query + raw->stmt_location, len);
	checked_query = pnstrdup(querytext, querylen);
	checked_query_len = querylen;
	MemoryContextSwitchTo(oldcxt);
	*schemas = checked_schemas;
	return checked_statement;
}

/* ---- what a query reads ---- */

typedef struct ReadCollector
{
	StampedeReadSet *reads;
	bool		locks_rows;
	bool		unlocks;		/* releases session advisory locks */
} ReadCollector;

static void
narrow_scope(ReadCollector *collector, StampedeScope scope)
{
	collector->reads->scope = Max(collector->reads->scope, scope);
}

static void
unshareable(ReadCollector *collector, const char *why)
{
	if (collector->reads->unshareable == NULL)
		collector->reads->unshareable = why;
}

/* Does any column of relid have a type of a user's own? */
static bool
relation_has_user_types(Oid relid)
{
	Relation	rel = RelationIdGetRelation(relid);
	bool		found = false;

	if (!RelationIsValid(rel))
		return true;
	for (int i = 0; i < RelationGetNumberOfAttributes(rel) && !found; i++)
		found = TupleDescAttr(RelationGetDescr(rel), i)->atttypid >= FirstNormalObjectId;
	RelationClose(rel);
	return found;
}

static void
collect_relation(ReadCollector *collector, Oid relid, Oid checkas, uint32 modes,
				 Bitmapset *selected)
{
	StampedeReadRel *rel = NULL;
	ListCell   *lc;
	int			col = -1;

	foreach(lc, collector->reads->rels)
	{
		StampedeReadRel *r = lfirst(lc);

		if (r->relid == relid && r->checkas == checkas && r->modes == modes)
			rel = r;
	}
	if (rel == NULL)
	{
		rel = palloc0(sizeof(StampedeReadRel));
		rel->relid = relid;
		rel->checkas = checkas;
		rel->modes = modes;
		collector->reads->rels = lappend(collector->reads->rels, rel);
	}
	while ((col = bms_next_member(selected, col)) >= 0)
	{
		AttrNumber	attno = col + FirstLowInvalidHeapAttributeNumber;

		rel->cols = list_append_unique_int(rel->cols, attno);
		/* A column of a type of a user's own: ALTER TYPE changes what it reads. */
		if (!collector->reads->any_change &&
			(attno == InvalidAttrNumber ? relation_has_user_types(relid) :
			 attno > 0 && get_atttype(relid, attno) >= FirstNormalObjectId))
			collector->reads->any_change = true;
	}
}

/* Who may share the rows of a relation read: see the file's banner. */
static void
classify_relation(ReadCollector *collector, Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class form;

	if (!HeapTupleIsValid(tuple))
	{
		unshareable(collector, gettext_noop("it reads a relation that is gone"));
		return;
	}
	form = (Form_pg_class) GETSTRUCT(tuple);
	if (form->relpersistence == RELPERSISTENCE_TEMP || isAnyTempNamespace(form->relnamespace))
		unshareable(collector, gettext_noop("it reads a temporary table, which only this session sees"));
	if (form->relrowsecurity)
		narrow_scope(collector, STAMPEDE_SCOPE_SETTINGS);
	if (form->relkind == RELKIND_FOREIGN_TABLE)
		narrow_scope(collector, STAMPEDE_SCOPE_SETTINGS);
	ReleaseSysCache(tuple);
}

static bool
name_in(const char *name, const char *const *names)
{
	for (; *names; names++)
	{
		size_t		len = strlen(*names);

		/* "prefix_*" matches every name that begins with prefix_. */
		if ((*names)[len - 1] == '*' ? strncmp(name, *names, len - 1) == 0
			: strcmp(name, *names) == 0)
			return true;
	}
	return false;
}

/* Built-ins whose result tells who the user is or what the user may do. */
static const char *const role_builtins[] = {
	"current_user", "session_user", "current_role", "user", "getpgusername",
	"pg_has_role", "row_security_active", "has_*", "to_reg*", NULL
};

/*
 * Of those, the ones that answer from catalogs the query does not read
 * (has_table_privilege('t', ...) names t in text): any change to any
 * catalog object makes their rows stale.
 */
static const char *const privilege_builtins[] = {
	"pg_has_role", "row_security_active", "has_*", "to_reg*", NULL
};

/*
 * Built-ins that read session, backend or server state, or data outside the
 * query's own relations, or that act: nobody else may be handed their rows.
 */
static const char *const unshareable_builtins[] = {
	"pg_stat_*", "pg_ls_*", "pg_read_*", "lo_*", "loread", "lowrite",
	"pg_try_advisory_*", "txid_*", "pg_current_*", "pg_last_*",
	"pg_wal_*", "pg_is_*", "pg_get_wal_*", "pg_replication_*", "pg_logical_*",
	"pg_control_*", "pg_backup_*", "pg_xact_*", "pg_snapshot_*", "pg_visible_in_snapshot",
	"query_to_xml*", "cursor_to_xml*", "table_to_xml*", "schema_to_xml*", "database_to_xml*",
	"pg_show_all_settings", "pg_show_all_file_settings", "pg_hba_file_rules",
	"pg_ident_file_mappings", "pg_settings_get_flags", "set_config",
	"currval", "lastval", "setval", "setseed", "pg_backend_pid",
	"pg_blocking_pids", "pg_safe_snapshot_blocking_pids", "pg_isolation_test_session_is_blocked",
	"inet_client_addr", "inet_client_port", "inet_server_addr", "inet_server_port",
	"pg_my_temp_schema", "pg_trigger_depth", "pg_listening_channels",
	"pg_notification_queue_usage", "pg_notify", "pg_cancel_backend", "pg_terminate_backend",
	"pg_reload_conf", "pg_rotate_logfile", "pg_conf_load_time", "pg_postmaster_start_time",
	"pg_sequence_last_value", "pg_sequence_parameters", "pg_get_backend_memory_contexts",
	"pg_log_backend_memory_contexts", "pg_get_shmem_allocations", "pg_get_replication_slots",
	"pg_prepared_statement", "pg_cursor", "pg_prepared_xact", "pg_lock_status",
	"pg_export_snapshot", "pg_config", "pg_promote", "pg_switch_wal",
	"pg_create_*", "pg_drop_*", "pg_copy_*", "pg_import_system_collations", NULL
};

/*
 * Volatile built-ins that read nothing but a clock or a random source,
 * advisory locks that only wait (they return nothing), and nextval(), which
 * classify_nextval() sees to.
 */
static const char *const harmless_volatile_builtins[] = {
	"random", "random_normal", "clock_timestamp", "timeofday", "gen_random_uuid",
	"pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_advisory_lock*",
	"pg_advisory_xact_lock*", "nextval", NULL
};

/* Session-level advisory unlocks would release the leader's own lock. */
static const char *const unlock_builtins[] = {
	"pg_advisory_unlock", "pg_advisory_unlock_shared", "pg_advisory_unlock_all", NULL
};

static bool collect_walker(Node *node, void *context);

/*
 * Walk the expressions a function's call carries that are not in the query
 * tree: the defaults the planner fills in for arguments left out.
 */
static void
collect_defaults(ReadCollector *collector, HeapTuple proctuple)
{
	bool		isnull;
	Datum		defaults = SysCacheGetAttr(PROCOID, proctuple, Anum_pg_proc_proargdefaults, &isnull);

	if (!isnull)
		(void) collect_walker(stringToNode(TextDatumGetCString(defaults)), collector);
}

/* Who may share the rows of a function's result: see the file's banner. */
static void
classify_function(ReadCollector *collector, Oid funcid)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	Form_pg_proc form;
	const char *name;

	if (!HeapTupleIsValid(tuple))
	{
		unshareable(collector, gettext_noop("it calls a function that is gone"));
		return;
	}
	form = (Form_pg_proc) GETSTRUCT(tuple);
	name = NameStr(form->proname);
	if (form->pronargdefaults > 0)
		collect_defaults(collector, tuple);
	if (isAnyTempNamespace(form->pronamespace))
		unshareable(collector, gettext_noop("it calls a temporary function"));
	else if (funcid >= FirstNormalObjectId)
	{
		/*
		 * Users' and extensions' own.  Their volatility is taken on trust, as
		 * PostgreSQL takes it, and no further: a volatile one may read
		 * anything (not shared); a stable one the data, the user and the
		 * settings; an immutable one in SQL or a procedural language may read
		 * tables all the same (nothing checks), and an aggregate is recorded
		 * immutable whatever its support functions do.  Only immutable C
		 * functions (extensions' code) are shared.
		 */
		if (form->provolatile == PROVOLATILE_VOLATILE)
			unshareable(collector, gettext_noop("it calls a volatile function of a user or an extension"));
		else if (form->provolatile != PROVOLATILE_IMMUTABLE ||
				 form->prokind != PROKIND_FUNCTION ||
				 (form->prolang != ClanguageId && form->prolang != INTERNALlanguageId))
		{
			/*
			 * What it reads and calls is hidden in its body: a change to any
			 * of those (a table's rights, a function it calls replaced) is
			 * not seen as a change to what the query read.
			 */
			narrow_scope(collector, STAMPEDE_SCOPE_SETTINGS);
			collector->reads->any_change = true;
		}
	}
	else if (name_in(name, unlock_builtins))
		collector->unlocks = true;
	else if (name_in(name, role_builtins))
	{
		narrow_scope(collector, STAMPEDE_SCOPE_ROLE);
		if (name_in(name, privilege_builtins))
			collector->reads->any_change = true;
	}
	else if (name_in(name, unshareable_builtins))
		unshareable(collector, gettext_noop("it calls a function that reads session, server or outside state"));
	else if (form->provolatile == PROVOLATILE_VOLATILE &&
			 !name_in(name, harmless_volatile_builtins))
		unshareable(collector, gettext_noop("it calls a volatile function"));
	ReleaseSysCache(tuple);
}

/* The type a domain is over, one level down. */
static Oid
domain_base_type(Oid typid)
{
	HeapTuple	tuple = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	Oid			base;

	if (!HeapTupleIsValid(tuple))
		return InvalidOid;
	base = ((Form_pg_type) GETSTRUCT(tuple))->typbasetype;
	ReleaseSysCache(tuple);
	return base;
}

/*
 * A domain's CHECK constraints run at every cast to it, with whatever they
 * call (current_setting('app.tenant'), ...): walk them, and the domains
 * it is a domain over.
 */
static void
collect_domain_checks(ReadCollector *collector, Oid typid)
{
	while (get_typtype(typid) == TYPTYPE_DOMAIN)
	{
		Relation	rel = table_open(ConstraintRelationId, AccessShareLock);
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tuple;

		ScanKeyInit(&key, Anum_pg_constraint_contypid, BTEqualStrategyNumber, F_OIDEQ,
					ObjectIdGetDatum(typid));
		scan = systable_beginscan(rel, ConstraintTypidIndexId, true, NULL, 1, &key);
		while (HeapTupleIsValid(tuple = systable_getnext(scan)))
		{
			bool		isnull;
			Datum		bin = heap_getattr(tuple, Anum_pg_constraint_conbin,
										   RelationGetDescr(rel), &isnull);

			if (!isnull)
				(void) collect_walker(stringToNode(TextDatumGetCString(bin)), collector);
		}
		systable_endscan(scan);
		table_close(rel, AccessShareLock);
		typid = domain_base_type(typid);
	}
}

static bool
collect_function(Oid funcid, void *context)
{
	ReadCollector *collector = context;

	collector->reads->funcs = list_append_unique_oid(collector->reads->funcs, funcid);
	return false;
}

/*
 * current_setting() of a custom setting (a dotted name given as a constant,
 * such as app.tenant) puts the rows in the settings scope, whose identity
 * holds every custom setting; of any other setting, or of a name computed
 * at run time, it makes them unshareable.
 */
/*
 * nextval() of a sequence named by a constant reads the sequence (and moves
 * it on): a hit needs the rights nextval() checks, USAGE or UPDATE on it.
 * Of a sequence computed at run time, it is not shareable.
 */
static void
classify_nextval(ReadCollector *collector, FuncExpr *func)
{
	Const	   *arg = func->args ? (Const *) linitial(func->args) : NULL;

	if (arg == NULL || !IsA(arg, Const) || arg->constisnull || arg->consttype != REGCLASSOID)
	{
		unshareable(collector, gettext_noop("it calls nextval() of a sequence named at run time"));
		return;
	}
	collect_relation(collector, DatumGetObjectId(arg->constvalue), InvalidOid,
					 ACL_USAGE | ACL_UPDATE, NULL);
	classify_relation(collector, DatumGetObjectId(arg->constvalue));
}

static void
classify_setting_read(ReadCollector *collector, FuncExpr *func)
{
	Const	   *arg = func->args ? (Const *) linitial(func->args) : NULL;
	char	   *name;

	if (arg == NULL || !IsA(arg, Const) || arg->constisnull || arg->consttype != TEXTOID)
	{
		unshareable(collector, gettext_noop("it reads a setting named at run time"));
		return;
	}
	name = TextDatumGetCString(arg->constvalue);
	if (strchr(name, '.') != NULL && pg_strncasecmp(name, "stampede.", 9) != 0)
		narrow_scope(collector, STAMPEDE_SCOPE_SETTINGS);
	else
		unshareable(collector, gettext_noop("it reads a setting that is not in its identity"));
}

/*
 * A constant that names an object ('s.t'::regclass, a function by OID): its
 * name was looked up when the query was parsed, which needed USAGE on its
 * schema unless the search path reached it (the identity covers that).  A
 * hit checks that USAGE too.  A relation named so is watched for DDL (its
 * name may print differently), with no rights asked of it.
 */
static void
collect_named_object(ReadCollector *collector, Const *c)
{
	Oid			nsp = InvalidOid;
	OverrideSearchPath *path;

	if (c->constisnull)
		return;
	if (c->consttype == REGCLASSOID)
	{
		nsp = get_rel_namespace(DatumGetObjectId(c->constvalue));
		if (OidIsValid(nsp))
			collect_relation(collector, DatumGetObjectId(c->constvalue), InvalidOid, 0, NULL);
	}
	else if (c->consttype == REGPROCOID || c->consttype == REGPROCEDUREOID)
		nsp = get_func_namespace(DatumGetObjectId(c->constvalue));
	if (!OidIsValid(nsp) || nsp == PG_CATALOG_NAMESPACE)
		return;
	path = GetOverrideSearchPath(CurrentMemoryContext);
	if (!list_member_oid(path->schemas, nsp))
		collect_relation(collector, nsp, InvalidOid, STAMPEDE_READ_SCHEMA | ACL_USAGE, NULL);
}

static bool
collect_walker(Node *node, void *context)
{
	ReadCollector *collector = context;

	if (node == NULL)
		return false;
	if (IsA(node, Const))
		collect_named_object(collector, (Const *) node);
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
			classify_relation(collector, rte->relid);
			/* Relations read through a view are checked as the view's owner. */
			if (StampedeRteRequiresSelect(query, rte))
				collect_relation(collector, rte->relid, StampedeRteCheckAsUser(query, rte),
								 ACL_SELECT, StampedeRteSelectedCols(query, rte));
		}
		return query_tree_walker(query, collect_walker, context, 0);
	}
#if PG_VERSION_NUM < 160000
	if (IsA(node, SQLValueFunction))
	{
		SQLValueFunctionOp op = ((SQLValueFunction *) node)->op;

		if (op == SVFOP_CURRENT_ROLE || op == SVFOP_CURRENT_USER ||
			op == SVFOP_USER || op == SVFOP_SESSION_USER)
			narrow_scope(collector, STAMPEDE_SCOPE_ROLE);
	}
#endif
	if (IsA(node, FuncExpr) && (((FuncExpr *) node)->funcid == F_CURRENT_SETTING_TEXT ||
								((FuncExpr *) node)->funcid == F_CURRENT_SETTING_TEXT_BOOL))
		classify_setting_read(collector, (FuncExpr *) node);
	if (IsA(node, FuncExpr) && ((FuncExpr *) node)->funcid == F_NEXTVAL)
		classify_nextval(collector, (FuncExpr *) node);
	if (IsA(node, CoerceToDomain))
	{
		collect_domain_checks(collector, ((CoerceToDomain *) node)->resulttype);
		collector->reads->any_change = true;	/* ALTER DOMAIN ... ADD CHECK */
	}
	if (IsA(node, RowExpr) && ((RowExpr *) node)->row_typeid >= FirstNormalObjectId)
		collector->reads->any_change = true;	/* ALTER TYPE of the row built */
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

/*
 * What the prepared query reads, and who may share its rows; rejects one
 * that locks or modifies rows, or releases session advisory locks (the
 * leader's own among them).
 */
static void
collect_reads(CachedPlanSource *plansource, StampedeReadSet *reads, ReadCollector *collector)
{
	collector->reads = reads;
	collector->locks_rows = false;
	collector->unlocks = false;
	collect_walker((Node *) linitial(plansource->query_list), collector);
	if (collector->locks_rows)
		reject_query(_("The query locks or modifies rows."));

	/*
	 * Functions are classified once each, whatever the number of calls;
	 * their defaults may add more to the list as it goes.
	 */
	for (int i = 0; i < list_length(reads->funcs); i++)
		classify_function(collector, list_nth_oid(reads->funcs, i));
	if (collector->unlocks)
		reject_query(_("The query releases session advisory locks, which would release stampede's own."));
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

/*
 * Has this transaction written anything its queries could now see?  Then
 * rows may show its uncommitted changes, through whatever the query reads:
 * a partition or child of a table it names, a function, a trigger's table.
 * Looking at what the query names cannot see all of those; the command
 * counter can: an earlier command of the transaction that wrote a row
 * (INSERT, UPDATE, DELETE, DDL, a row lock, in a function or trigger too)
 * moved it on, and what the current command writes its own snapshot does
 * not see.  Finer than "it has an XID", and as complete: nextval() gives an
 * XID, but what a sequence hands out is nobody's uncommitted data.
 */
bool
StampedeTransactionHasWritten(void)
{
	return GetCurrentCommandId(false) != FirstCommandId;
}

/* Does attribute attno of relid exist now (not dropped)? */
static bool
column_exists(Oid relid, AttrNumber attno)
{
	HeapTuple	tuple;
	bool		exists;

	if (attno <= 0)
		return true;
	tuple = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(attno));
	if (!HeapTupleIsValid(tuple))
		return false;
	exists = !((Form_pg_attribute) GETSTRUCT(tuple))->attisdropped;
	ReleaseSysCache(tuple);
	return exists;
}

/*
 * Does the role asking for a hit hold the rights that running the query
 * would check, each as the user the query would check it as (a view's owner
 * for what the view reads)?  Raises the same permission error the query
 * would.  False when the entry no longer describes what the query would do
 * (a miss): something it read is gone, or a relation it read has row-level
 * security now while the rows were shared.
 */
bool
StampedeCheckReadRights(const StampedeReadSet *reads, bool shared)
{
	ListCell   *lc;

	foreach(lc, reads->rels)
	{
		StampedeReadRel *rel = lfirst(lc);
		Oid			userid = OidIsValid(rel->checkas) ? rel->checkas : GetUserId();
		HeapTuple	tuple;
		bool		rls;
		ListCell   *lc2;
		bool		allowed = true;

		if (rel->modes & STAMPEDE_READ_SCHEMA)
		{
			if (!SearchSysCacheExists1(NAMESPACEOID, ObjectIdGetDatum(rel->relid)))
				return false;
			if (StampedeNamespaceAclCheck(rel->relid, userid, ACL_USAGE) != ACLCHECK_OK)
				aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_SCHEMA, get_namespace_name(rel->relid));
			continue;
		}
		/* Named, not read (a regclass constant): it must still exist. */
		if (rel->modes == 0)
		{
			if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(rel->relid)))
				return false;
			continue;
		}

		tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(rel->relid));
		if (!HeapTupleIsValid(tuple))
			return false;
		rls = ((Form_pg_class) GETSTRUCT(tuple))->relrowsecurity;
		ReleaseSysCache(tuple);
		if (rls && shared)
			return false;
		if (rel->modes != ACL_SELECT)
		{
			if (pg_class_aclmask(rel->relid, userid, rel->modes, ACLMASK_ANY) == 0)
				aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_SEQUENCE, get_rel_name(rel->relid));
			continue;
		}
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
			else if (!column_exists(rel->relid, attno))
				return false;
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
		if (StampedeProcAclCheck(funcid, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
			aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_FUNCTION, get_func_name(funcid));
	}
	return true;
}

/*
 * May the caller use the schemas the query names explicitly?  Parse
 * analysis would raise "permission denied for schema" (or "schema does not
 * exist"), and so does this.
 */
void
StampedeCheckSchemaUsage(const List *schemas)
{
	ListCell   *lc;

	foreach(lc, schemas)
		(void) LookupExplicitNamespace(strVal(lfirst(lc)), false);
}

/* "id integer, name text": a row type, for messages. */
static char *
describe_columns(TupleDesc desc)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		if (NameStr(att->attname)[0] != '\0')
			appendStringInfo(&buf, "%s ", quote_identifier(NameStr(att->attname)));
		appendStringInfoString(&buf, format_type_with_typemod(att->atttypid, att->atttypmod));
	}
	return buf.data;
}

/*
 * How to turn rows of indesc into rows of outdesc: NULL when they are the
 * same, a map when outdesc has dropped columns.  A different column count or
 * type is the caller's error, 42804, naming the key and both row types.
 */
TupleConversionMap *
StampedeRowTypeMap(TupleDesc indesc, TupleDesc outdesc, const char *key)
{
	TupleConversionMap *map = NULL;
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		map = convert_tuples_by_position(indesc, outdesc,
										 gettext_noop("query result does not match the requested row type"));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		StampedeForgetDeadFrames();
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_DATATYPE_MISMATCH)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("query of stampede key \"%s\" returns columns that do not match the requested row type", key),
				 errdetail("The query returns (%s); the call asks for (%s).",
						   describe_columns(indesc), describe_columns(outdesc)),
				 errhint("Make the column definition list (or the row type) match the query's columns.")));
	}
	PG_END_TRY();
	return map;
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
 * rights and snapshot.  Its rows go to tupstore as outdesc, and, when they
 * may be shared with anyone, into an encoded entry up to entry_limit bytes,
 * under the identity of call (id: NULL for none) or of its scope.
 * Everything in result is allocated in the caller's memory context.
 */
void
StampedeRunQuery(const char *query, const char *key, int keylen,
				 const StampedeIdentity *identity, TupleDesc outdesc,
				 Tuplestorestate *tupstore, Size entry_limit,
				 StampedeRunResult *result)
{
	const StampedeEntryId *id = identity ? &identity->id : NULL;
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

	/* Before anything is planned: DDL after this makes the entry stale. */
	result->fill_lsn = StampedeChangesNow();
	/* Before it runs: what its own functions write, they do not share. */
	result->saw_own_writes = StampedeTransactionHasWritten();
	plansource = prepare_query(query, &plan);
	spicxt = CurrentMemoryContext;

	/* What must outlive SPI_finish is made in the caller's context. */
	MemoryContextSwitchTo(callercxt);
	result->resultdesc = CreateTupleDescCopy(plansource->resultDesc);
	check_result_types(result->resultdesc);
	receiver.map = StampedeRowTypeMap(result->resultdesc, outdesc, pnstrdup(key, keylen));

	collect_reads(plansource, &result->reads, &collector);

	result->id = id ? *id : (StampedeEntryId) {{0}};
	if (id == NULL || result->reads.unshareable != NULL)
		entry_limit = 0;
	else if (result->reads.scope != STAMPEDE_SCOPE_SHARED)
		result->scope_key = StampedeScopeIdentity(id, result->reads.scope, &result->id);
	result->reads.session_only = identity && identity->session_only;
	/* A type of a user's own in the result: ALTER TYPE is not a change of what was read. */
	for (int i = 0; i < result->resultdesc->natts; i++)
	{
		if (TupleDescAttr(result->resultdesc, i)->atttypid >= FirstNormalObjectId)
			result->reads.any_change = true;
	}
	result->flags = (result->reads.any_change ? STAMPEDE_ENTRY_ANY_CHANGE : 0) |
		(result->reads.session_only ? STAMPEDE_ENTRY_SESSION : 0);
	StampedeEncoderInit(&encoder, entry_limit, key, keylen, result->flags, &result->id,
						result->fill_lsn, result->resultdesc, &result->reads);
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
	result->nrows = encoder.nrows;
	if (!StampedeEncoderFinish(&encoder, &result->entry, &result->entry_len))
		result->entry = NULL;
	MemoryContextDelete(rowcxt);
}
