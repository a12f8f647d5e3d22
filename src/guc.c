/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Defines every stampede.* setting and reserves the prefix, so that a
 *	  misspelt stampede.something is reported instead of silently ignored.
 *
 *	  Who may set what: settings that change what other sessions see (how
 *	  long a lock counts as held, how big an entry may be stored) are
 *	  superuser-only; how long a caller waits and what it does when it gives
 *	  up is each session's own business; the store's size is fixed at start.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "compat.h"
#include "guc.h"
#include "valkey_url.h"

int			stampede_last_call = STAMPEDE_CALL_NONE;
int			stampede_lock_timeout_ms = 10000;
int			stampede_max_wait_ms = 0;
int			stampede_backoff_base_ms = 100;
int			stampede_backoff_max_ms = 2000;
int			stampede_wait_timeout_action = STAMPEDE_ON_TIMEOUT_EXECUTE;
int			stampede_local_cache_size_kb = 64 * 1024;
int			stampede_max_entry_size_kb = 8 * 1024;
char	   *stampede_valkey_url = NULL;
char	   *stampede_valkey_secret = NULL;
char	   *stampede_namespace = NULL;
int			stampede_valkey_connect_timeout_ms = 1000;
int			stampede_valkey_timeout_ms = 1000;
int			stampede_valkey_retry_interval_ms = 5000;

static const struct config_enum_entry last_call_options[] = {
	{"none", STAMPEDE_CALL_NONE, false},
	{"hit", STAMPEDE_CALL_HIT, false},
	{"waited", STAMPEDE_CALL_WAITED, false},
	{"led", STAMPEDE_CALL_LED, false},
	{"ran", STAMPEDE_CALL_RAN, false},
	{NULL, 0, false}
};

static const struct config_enum_entry wait_timeout_action_options[] = {
	{"execute", STAMPEDE_ON_TIMEOUT_EXECUTE, false},
	{"error", STAMPEDE_ON_TIMEOUT_ERROR, false},
	{NULL, 0, false}
};

/*
 * stampede.valkey_secret is never shown, not even to the roles that may read
 * every setting (pg_read_all_settings, pg_monitor): whoever holds it and can
 * write to Valkey chooses what servers serve.  Nor may it be set where every
 * user can read it back: per role or database (pg_db_role_setting), or in
 * a function's SET clause (pg_proc); PGC_S_TEST is how those are checked.
 */
static bool
check_valkey_secret(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && (*newval)[0] != '\0' &&
		(source == PGC_S_DATABASE || source == PGC_S_USER ||
		 source == PGC_S_DATABASE_USER || source == PGC_S_TEST))
	{
		GUC_check_errdetail("stampede.valkey_secret may be set in postgresql.conf, with ALTER SYSTEM, or with SET in a session: settings of a role, a database or a function are visible to every user.");
		return false;
	}
	return true;
}

/*
 * A URL stampede cannot use is refused when it is set, with why.  The
 * message replaces PostgreSQL's own, which would quote the value, and the
 * URL may hold a password.
 */
static bool
check_valkey_url(char **newval, void **extra, GucSource source)
{
	StampedeValkeyTarget target;
	char	   *error = NULL;

	if (*newval == NULL || (*newval)[0] == '\0' ||
		StampedeValkeyUrlParse(*newval, &target, &error))
		return true;
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errmsg("invalid value for parameter \"stampede.valkey_url\"");
	GUC_check_errdetail("%s.", error);
	GUC_check_errhint("Use redis://[[user]:password@]host[:port][/db] with an IP address, or unix://[[user]:password@]/path[?db=N].");
	return false;
}

static const char *
show_valkey_secret(void)
{
	return stampede_valkey_secret != NULL && stampede_valkey_secret[0] != '\0' ?
		"(hidden)" : "";
}

void
StampedeGucInit(void)
{
	DefineCustomIntVariable("stampede.lock_timeout",
							"How long a single-flight lock counts as held when its holder vanished.",
							"Cache entries whose ttl is shorter than this draw a warning.",
							&stampede_lock_timeout_ms,
							10000, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stampede.max_wait",
							"How long a caller waits for another session's execution of the same key.",
							"0 waits as long as that execution runs; statement_timeout still applies.",
							&stampede_max_wait_ms,
							0, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	/*
	 * Superuser-only: the backoff is how often a waiter polls Valkey, which
	 * other servers and applications share; a role that could lower it
	 * could turn every wait into a busy loop against it.
	 */
	DefineCustomIntVariable("stampede.backoff_base",
							"First delay of the exponential backoff of a caller that polls for a result.",
							NULL,
							&stampede_backoff_base_ms,
							100, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stampede.backoff_max",
							"Longest delay of the exponential backoff of a caller that polls for a result.",
							NULL,
							&stampede_backoff_max_ms,
							2000, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	/* Read-only: set by each call, a plain int store. */
	DefineCustomEnumVariable("stampede.last_call",
							 "How this session's last stampede call was answered: hit, waited, led or ran.",
							 "hit: rows from the store; waited: rows another session or server computed; led: ran the query and shared its rows; ran: ran the query for itself alone.",
							 &stampede_last_call,
							 STAMPEDE_CALL_NONE,
							 last_call_options,
							 PGC_INTERNAL, GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("stampede.wait_timeout_action",
							 "What a caller does when stampede.max_wait runs out: execute the query itself, or raise an error.",
							 NULL,
							 &stampede_wait_timeout_action,
							 STAMPEDE_ON_TIMEOUT_EXECUTE,
							 wait_timeout_action_options,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("stampede.max_entry_size",
							"Largest result that is stored; larger results are returned but not cached.",
							NULL,
							&stampede_max_entry_size_kb,
							8 * 1024, 1, INT_MAX / 2,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	/* Superuser-only, and hidden from others: it may hold a password. */
	DefineCustomStringVariable("stampede.valkey_url",
							   "Valkey (or Redis) server: redis://[user:password@]host[:port][/db] or unix://[user:password@]/path[?db=N].",
							   "Empty: no Valkey; entries stay in this server's shared memory.",
							   &stampede_valkey_url,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY,
							   check_valkey_url, NULL, NULL);

	/* Superuser-only, and never shown: it decides whose entries a server accepts. */
	DefineCustomStringVariable("stampede.valkey_secret",
							   "Secret that authenticates the entries that servers share through Valkey.",
							   "Empty: the file stampede_secret of the data directory, which a primary and its physical replicas share. Set the same value on independent clusters that share entries on purpose.",
							   &stampede_valkey_secret,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   check_valkey_secret, NULL, show_valkey_secret);

	DefineCustomStringVariable("stampede.namespace",
							   "Prefix of this database's keys in Valkey.",
							   "Empty: the cluster's system identifier and the database name, so that a primary and its physical replicas share entries and other clusters never collide.",
							   &stampede_namespace,
							   "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("stampede.valkey_connect_timeout",
							"How long connecting to Valkey may take.",
							NULL,
							&stampede_valkey_connect_timeout_ms,
							1000, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stampede.valkey_timeout",
							"How long one Valkey command may take.",
							NULL,
							&stampede_valkey_timeout_ms,
							1000, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stampede.valkey_retry_interval",
							"After Valkey failed, how long calls skip it before trying again.",
							NULL,
							&stampede_valkey_retry_interval_ms,
							5000, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	/*
	 * The store's size only means something where the store exists, and a
	 * PGC_POSTMASTER setting cannot be created after server start.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("stampede.local_cache_size",
								"Shared memory set aside for the server's local result store.",
								NULL,
								&stampede_local_cache_size_kb,
								64 * 1024, 1024, INT_MAX / 2,
								PGC_POSTMASTER, GUC_UNIT_KB,
								NULL, NULL, NULL);

	StampedeReserveGucPrefix("stampede");
}
