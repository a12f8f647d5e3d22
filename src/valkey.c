/*-------------------------------------------------------------------------
 *
 * valkey.c
 *	  The only file that includes hiredis: this backend's connection to
 *	  Valkey (or Redis), and commands on it.
 *
 *	  hiredis is used without ever blocking the backend where PostgreSQL
 *	  cannot interrupt it: connect, send and receive are non-blocking, and
 *	  every wait is on a wait event set (latch, socket) under one deadline
 *	  (stampede.valkey_connect_timeout, stampede.valkey_timeout).  A cancel
 *	  or statement_timeout during a wait raises its usual error at once; the
 *	  connection, left in an unknown state, is dropped first and made again
 *	  on the next call.
 *
 *	  Each call names the Valkey it is for by its URL (valkey_url.c): the
 *	  caller's setting, or the URL a lease or a debt was made under (the
 *	  lease worker serves every Valkey its server's backends use).  One
 *	  connection per backend, opened on first use (counted with
 *	  AcquireExternalFD), and made again when the URL changes.  After a
 *	  failure a circuit breaker keeps calls off that Valkey for
 *	  stampede.valkey_retry_interval, so that they do not each pay the
 *	  timeouts while it is down; the log says so once per incident.
 *
 *	  Messages name the server by host and port (or socket path) only: the
 *	  URL may hold a password.
 *
 *	  Commands: MGET, SET, LRANGE, PING, SUBSCRIBE, and scripts by SHA1
 *	  (EVALSHA, EVAL when unknown), whose replies come back copied out of
 *	  hiredis.  What the names and scripts mean is remote.c's business.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include <hiredis/hiredis.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "guc.h"
#include "outage.h"
#include "stats.h"
#include "valkey.h"
#include "valkey_url.h"

/*
 * A connection and the wait event set that sleeps on its socket.  The set
 * lives as long as the connection: building one per wait (WaitLatchOrSocket)
 * costs five system calls, more than the round trip itself.
 */
typedef struct ValkeyConn
{
	redisContext *ctx;
	WaitEventSet *waits;
	int			socket_pos;		/* the socket's event in waits */
	uint32		socket_events;	/* what that event waits for now */
	char	   *url;			/* the URL it was made for */
	char	   *name;			/* its server, as StampedeValkeyTarget's name */
	TimestampTz last_used;		/* when its last reply came */
} ValkeyConn;

/* An idle connection is looked at before use after this long (see valkey_alive). */
#define VALKEY_IDLE_CHECK_MS 10

static ValkeyConn conn;			/* commands */
static ValkeyConn sub;			/* SUBSCRIBE, for waiters */
static TimestampTz circuit_open_until = 0;
static bool failed_this_call = false;	/* see StampedeValkeyNewCall */
static bool counting_failures = true;	/* see StampedeValkeyProbe */
static char *circuit_url = NULL;	/* the URL that failed */
static bool incident_logged = false;
static char last_error[256] = "";

/* ---- waiting, interruptibly ---- */

/*
 * Wait until vc's socket is ready for events (one of WL_SOCKET_READABLE,
 * WL_SOCKET_WRITEABLE), or the deadline passes (false).  A cancel or
 * termination raises its error from CHECK_FOR_INTERRUPTS.
 */
static bool
valkey_wait(ValkeyConn *vc, uint32 events, TimestampTz deadline)
{
	bool		latch_was_set = false;
	bool		ready = false;

	if (vc->socket_events != events)
	{
		ModifyWaitEvent(vc->waits, vc->socket_pos, events, NULL);
		vc->socket_events = events;
	}
	for (;;)
	{
		long		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		WaitEvent	event;

		if (timeout <= 0)
			break;
		if (WaitEventSetWait(vc->waits, timeout, &event, 1, PG_WAIT_EXTENSION) == 0)
			continue;			/* timed out: the loop checks the deadline */
		if (event.events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			latch_was_set = true;
			CHECK_FOR_INTERRUPTS();
		}
		if (event.events & events)
		{
			ready = true;
			break;
		}
	}

	/*
	 * The latch may have been set for whoever waits next (the lease worker's
	 * wake-up, say): set it again rather than lose that.
	 */
	if (latch_was_set)
		SetLatch(MyLatch);
	return ready;
}

/* Close vc, if open.  Safe to call at any point of valkey_connect. */
static void
valkey_close(ValkeyConn *vc)
{
	if (vc->waits != NULL)
	{
		FreeWaitEventSet(vc->waits);
		ReleaseExternalFD();
		vc->waits = NULL;
	}
	if (vc->ctx != NULL)
	{
		redisFree(vc->ctx);
		ReleaseExternalFD();
		vc->ctx = NULL;
	}
	if (vc->url != NULL)
	{
		pfree(vc->url);
		vc->url = NULL;
	}
	if (vc->name != NULL)
	{
		pfree(vc->name);
		vc->name = NULL;
	}
}

static void
valkey_disconnect(void)
{
	valkey_close(&conn);
}

/*
 * A failure of vc, connected or connecting to the server called name: open
 * the circuit for vc's URL, log once, drop the connection.
 */
static bool
valkey_failed(ValkeyConn *vc, const char *name, const char *what, char **error)
{
	if (counting_failures)
		StampedeStatsCount(STAT_VALKEY_ERRORS);
	snprintf(last_error, sizeof(last_error), "%s: %s", name, what);
	failed_this_call = true;
	circuit_open_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 stampede_valkey_retry_interval_ms);
	if (circuit_url != NULL)
		pfree(circuit_url);
	circuit_url = MemoryContextStrdup(TopMemoryContext, vc->url);
	StampedeOutageBegan(vc->url);
	if (!incident_logged)
	{
		ereport(LOG,
				(errmsg("stampede: Valkey at %s is unavailable: %s", name, what),
				 errdetail("Calls use the local store; Valkey is tried again every %d ms.",
						   stampede_valkey_retry_interval_ms)));
		incident_logged = true;
	}
	valkey_close(vc);			/* name may be vc's: used above, not after */
	*error = pstrdup(last_error);
	return false;
}

/*
 * Send one command and read its reply, under a deadline.  NULL (and *what)
 * when the connection failed or timed out; an error reply is returned as a
 * reply, for the caller to judge.
 */
static redisReply *
valkey_command(ValkeyConn *vc, int argc, const char **argv, const size_t *argvlen,
			   TimestampTz deadline, const char **what)
{
	redisContext *c = vc->ctx;
	redisReply *reply = NULL;
	int			done = 0;

	if (redisAppendCommandArgv(c, argc, argv, argvlen) != REDIS_OK)
	{
		*what = "out of memory";
		return NULL;
	}
	while (!done)
	{
		if (redisBufferWrite(c, &done) != REDIS_OK)
		{
			*what = "connection lost";
			return NULL;
		}
		if (!done && !valkey_wait(vc, WL_SOCKET_WRITEABLE, deadline))
		{
			*what = "timed out";
			return NULL;
		}
	}
	for (;;)
	{
		if (redisGetReplyFromReader(c, (void **) &reply) != REDIS_OK)
		{
			*what = "protocol error";
			return NULL;
		}
		if (reply != NULL)
			return reply;
		if (!valkey_wait(vc, WL_SOCKET_READABLE, deadline))
		{
			*what = "timed out";
			return NULL;
		}
		if (redisBufferRead(c) != REDIS_OK)
		{
			*what = "connection lost";
			return NULL;
		}
	}
}

/* Run argv during connection setup; false unless the reply is +OK. */
static bool
valkey_setup_command(ValkeyConn *vc, const StampedeValkeyTarget *t, int argc, const char **argv,
					 TimestampTz deadline, char **error)
{
	const char *what = NULL;
	redisReply *reply = valkey_command(vc, argc, argv, NULL, deadline, &what);
	bool		ok;

	if (reply == NULL)
		return valkey_failed(vc, t->name, what, error);
	ok = reply->type == REDIS_REPLY_STATUS;
	if (!ok)
	{
		char		message[128];

		/* The server's words name no secret ("WRONGPASS invalid ..."). */
		snprintf(message, sizeof(message), "%s refused: %s", argv[0],
				 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
		freeReplyObject(reply);
		return valkey_failed(vc, t->name, message, error);
	}
	freeReplyObject(reply);
	return true;
}

/* Connect vc to t (parsed from url) and log in, under stampede.valkey_connect_timeout. */
static bool
valkey_connect(ValkeyConn *vc, const char *url, const StampedeValkeyTarget *t, char **error)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   stampede_valkey_connect_timeout_ms);
	int			soerr = 0;
	socklen_t	len = sizeof(soerr);

	Assert(vc->ctx == NULL);
	vc->url = MemoryContextStrdup(TopMemoryContext, url);
	vc->name = MemoryContextStrdup(TopMemoryContext, t->name);
	if (!AcquireExternalFD())
		return valkey_failed(vc, t->name, "too many open files", error);
	vc->ctx = t->socket_path ? redisConnectUnixNonBlock(t->socket_path)
		: redisConnectNonBlock(t->host, t->port);
	if (vc->ctx == NULL || vc->ctx->err)
	{
		char		message[160];

		snprintf(message, sizeof(message), "cannot connect: %s",
				 vc->ctx ? vc->ctx->errstr : "out of memory");
		if (vc->ctx == NULL)
			ReleaseExternalFD();
		return valkey_failed(vc, t->name, message, error);
	}

	/* The wait set holds an epoll descriptor of its own. */
	if (!AcquireExternalFD())
		return valkey_failed(vc, t->name, "too many open files", error);
	vc->waits = StampedeCreateWaitEventSet(3);
	AddWaitEventToSet(vc->waits, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	/* As WaitLatchOrSocket does: there is no postmaster in single-user mode. */
	if (IsUnderPostmaster)
		AddWaitEventToSet(vc->waits, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	vc->socket_events = WL_SOCKET_WRITEABLE;
	vc->socket_pos = AddWaitEventToSet(vc->waits, vc->socket_events, vc->ctx->fd, NULL, NULL);

	if (!valkey_wait(vc, WL_SOCKET_WRITEABLE, deadline))
		return valkey_failed(vc, t->name, "connect timed out", error);
	if (getsockopt(vc->ctx->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0)
		return valkey_failed(vc, t->name, soerr ? strerror(soerr) : "cannot connect", error);

	if (t->password != NULL)
	{
		const char *auth[3] = {"AUTH", t->user ? t->user : t->password, t->password};

		if (!valkey_setup_command(vc, t, t->user ? 3 : 2, auth, deadline, error))
			return false;
	}
	if (t->db != 0)
	{
		char		db[16];
		const char *select[2] = {"SELECT", db};

		snprintf(db, sizeof(db), "%d", t->db);
		if (!valkey_setup_command(vc, t, 2, select, deadline, error))
			return false;
	}
	vc->last_used = GetCurrentTimestamp();
	if (incident_logged)
	{
		ereport(LOG, (errmsg("stampede: Valkey at %s is available again", t->name)));
		incident_logged = false;
	}
	last_error[0] = '\0';
	return true;
}

/*
 * Is an idle connection still open at the other end?  Valkey closes idle
 * clients (its timeout setting), CLIENT KILL closes any, and a connection
 * can drop while a leader's query runs: finding out only when the leader's
 * rows are sent would lose them.  A peek at the socket tells, without
 * waiting: end of file or an error means closed; bytes nobody asked for
 * mean a connection out of step.  Skipped for a connection in use just now:
 * a hit pays no system call for it.
 */
static bool
valkey_alive(ValkeyConn *vc)
{
	char		byte;
	ssize_t		n;

	if (GetCurrentTimestamp() < TimestampTzPlusMilliseconds(vc->last_used, VALKEY_IDLE_CHECK_MS))
		return true;
	n = recv(vc->ctx->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

/*
 * Make sure this backend has a connection to the Valkey at url.  False,
 * with *error, when there is none: circuit open, or it failed now.  A cancel during it raises; the connection is dropped first.
 * The URL is parsed only to connect: a call on an open connection (every
 * hit) does not pay for it.
 */
static bool
valkey_ensure(const char *url, char **error)
{
	StampedeValkeyTarget t;
	bool		ok = false;

	if (conn.ctx != NULL && strcmp(conn.url, url) != 0)
		valkey_disconnect();	/* another server now */
	if (conn.ctx != NULL && !valkey_alive(&conn))
		valkey_disconnect();	/* closed while idle: open another, no failure */
	if (conn.ctx != NULL)
		return true;
	if (circuit_url != NULL && strcmp(circuit_url, url) != 0)
	{
		circuit_open_until = 0; /* another server: try it */
		failed_this_call = false;
	}
	if (failed_this_call || GetCurrentTimestamp() < circuit_open_until)
	{
		*error = strstr(last_error, "(not retried") ? pstrdup(last_error) :
			psprintf("%s (not retried before stampede.valkey_retry_interval passes)",
					 last_error);
		return false;
	}
	if (!StampedeValkeyUrlParse(url, &t, error))
		return false;

	PG_TRY();
	{
		ok = valkey_connect(&conn, url, &t, error);
	}
	PG_CATCH();
	{
		StampedeForgetDeadFrames();
		valkey_disconnect();
		PG_RE_THROW();
	}
	PG_END_TRY();
	return ok;
}

/*
 * Run one command on the Valkey at url.  NULL when it cannot be used
 * (circuit open, connection failed or timed out, or an error reply such as
 * OOM, LOADING or READONLY): the caller falls back.
 */
static redisReply *
valkey_run_command(const char *url, int argc, const char **argv, const size_t *argvlen,
				   bool noscript_ok)
{
	char	   *error = NULL;
	const char *what = NULL;
	redisReply *reply = NULL;

	if (!valkey_ensure(url, &error))
	{
		/* Why, for stampede_status. */
		if (error != last_error)
			strlcpy(last_error, error, sizeof(last_error));
		return NULL;
	}
	PG_TRY();
	{
		reply = valkey_command(&conn, argc, argv, argvlen,
							   TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   stampede_valkey_timeout_ms),
							   &what);
	}
	PG_CATCH();
	{
		StampedeForgetDeadFrames();
		valkey_disconnect();
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (reply == NULL)
	{
		valkey_failed(&conn, conn.name, what ? what : "failed", &error);
		return NULL;
	}
	if (reply->type == REDIS_REPLY_ERROR &&
		!(noscript_ok && strncmp(reply->str, "NOSCRIPT", 8) == 0))
	{
		char		message[160];

		snprintf(message, sizeof(message), "%s answered %s", argv[0], reply->str);
		freeReplyObject(reply);
		valkey_failed(&conn, conn.name, message, &error);
		return NULL;
	}
	conn.last_used = GetCurrentTimestamp();
	StampedeOutageEnded(conn.url);
	return reply;
}

static redisReply *
valkey_run(const char *url, int argc, const char **argv, const size_t *argvlen)
{
	return valkey_run_command(url, argc, argv, argvlen, false);
}

/*
 * A palloc'd, NUL-terminated copy of element, a string in reply, and its
 * length.  A string too long to palloc is none of ours (entries stay under
 * MaxAllocSize): it is copied as empty, which readers take for garbage.
 * The reply is malloc'd by hiredis: when memory runs out, it is freed
 * before the error is raised, not leaked.
 */
static char *
reply_copy(redisReply *reply, const redisReply *element, Size *len)
{
	char	   *copy;

	*len = AllocSizeIsValid(element->len + 1) ? element->len : 0;
	copy = palloc_extended(*len + 1, MCXT_ALLOC_NO_OOM);
	if (copy == NULL)
	{
		freeReplyObject(reply);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on request of size %zu for a Valkey reply.", *len + 1)));
	}
	memcpy(copy, element->str, *len);
	copy[*len] = '\0';
	return copy;
}

/* element of reply, as a StampedeValkeyReply: nested arrays are not copied. */
static void
reply_to_value(redisReply *reply, const redisReply *element, StampedeValkeyReply *out)
{
	memset(out, 0, sizeof(*out));
	switch (element->type)
	{
		case REDIS_REPLY_STRING:
			out->type = VALKEY_REPLY_STRING;
			out->str = reply_copy(reply, element, &out->len);
			break;
		case REDIS_REPLY_STATUS:
			out->type = VALKEY_REPLY_STATUS;
			out->str = reply_copy(reply, element, &out->len);
			break;
		case REDIS_REPLY_INTEGER:
			out->type = VALKEY_REPLY_INTEGER;
			out->integer = element->integer;
			break;
		case REDIS_REPLY_NIL:
			out->type = VALKEY_REPLY_NIL;
			break;
		case REDIS_REPLY_ARRAY:
			out->type = VALKEY_REPLY_ARRAY;
			break;
		default:
			out->type = VALKEY_REPLY_OTHER;
			break;
	}
}

/* A reply of hiredis, copied into palloc'd memory, and freed. */
static StampedeValkeyReply *
reply_take(redisReply *reply)
{
	StampedeValkeyReply *out = palloc_extended(sizeof(StampedeValkeyReply), MCXT_ALLOC_NO_OOM);

	if (out == NULL)
	{
		freeReplyObject(reply);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on request of size %zu for a Valkey reply.",
						   sizeof(StampedeValkeyReply))));
	}

	reply_to_value(reply, reply, out);
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
		reply->elements <= MaxAllocSize / sizeof(StampedeValkeyReply))
	{
		out->elements = palloc_extended(reply->elements * sizeof(StampedeValkeyReply),
										MCXT_ALLOC_NO_OOM);
		if (out->elements == NULL)
		{
			freeReplyObject(reply);
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Failed on request for the %zu elements of a Valkey reply.",
							   reply->elements)));
		}
		for (size_t i = 0; i < reply->elements; i++)
			reply_to_value(reply, reply->element[i], &out->elements[i]);
		out->nelements = (int) reply->elements;
	}
	freeReplyObject(reply);
	return out;
}

/* ---- scripts ---- */

#define VALKEY_MAX_SCRIPT_ARGS 12

/* Work out script's SHA1, as Valkey names it; false if it cannot be had. */
static bool
script_sha1(StampedeValkeyScript *script)
{
#ifdef STAMPEDE_HAS_SHA1
	pg_cryptohash_ctx *ctx;
	uint8		digest[20];
	bool		ok;

	if (script->sha1[0] != '\0')
		return true;
	ctx = pg_cryptohash_create(PG_SHA1);
	ok = ctx != NULL &&
		pg_cryptohash_init(ctx) == 0 &&
		pg_cryptohash_update(ctx, (const uint8 *) script->body, strlen(script->body)) == 0 &&
		StampedeCryptohashFinal(ctx, digest, sizeof(digest)) == 0;
	pg_cryptohash_free(ctx);
	if (!ok)
		return false;
	for (int i = 0; i < 20; i++)
		snprintf(script->sha1 + 2 * i, 3, "%02x", digest[i]);
	return true;
#else
	return false;
#endif
}

/*
 * Run script on the Valkey at url with nkeys keys, then the arguments (args
 * whose lengths argslen gives, or strlen when argslen is NULL): by EVALSHA,
 * so that the script's text is not sent each time, and by EVAL when Valkey
 * does not know it (NOSCRIPT: restarted, flushed, failed over), which also
 * makes it known again.  NULL when Valkey failed.
 */
StampedeValkeyReply *
StampedeValkeyEval(const char *url, StampedeValkeyScript *script, int nkeys,
				   int nargs, const char **args, const Size *argslen)
{
	const char *argv[3 + VALKEY_MAX_SCRIPT_ARGS];
	size_t		argvlen[3 + VALKEY_MAX_SCRIPT_ARGS];
	char		numkeys[16];
	redisReply *reply = NULL;

	Assert(nargs <= VALKEY_MAX_SCRIPT_ARGS && nkeys <= nargs);
	snprintf(numkeys, sizeof(numkeys), "%d", nkeys);
	argv[2] = numkeys;
	argvlen[2] = strlen(numkeys);
	for (int i = 0; i < nargs; i++)
	{
		argv[i + 3] = args[i];
		argvlen[i + 3] = argslen ? argslen[i] : strlen(args[i]);
	}
	if (script_sha1(script))
	{
		argv[0] = "EVALSHA";
		argv[1] = script->sha1;
		argvlen[0] = 7;
		argvlen[1] = 40;
		reply = valkey_run_command(url, nargs + 3, argv, argvlen, true);
		if (reply == NULL || reply->type != REDIS_REPLY_ERROR)
			return reply ? reply_take(reply) : NULL;
		freeReplyObject(reply); /* NOSCRIPT */
	}
	argv[0] = "EVAL";
	argv[1] = script->body;
	argvlen[0] = 4;
	argvlen[1] = strlen(script->body);
	reply = valkey_run(url, nargs + 3, argv, argvlen);
	return reply ? reply_take(reply) : NULL;
}

/* Is the Valkey at url answering?  PING it, connecting if need be. */
bool
StampedeValkeyPing(const char *url, char **error)
{
	const char *ping[1] = {"PING"};
	redisReply *reply;

	reply = valkey_run(url, 1, ping, NULL);
	if (reply == NULL)
	{
		*error = pstrdup(last_error[0] ? last_error : "Valkey cannot be used");
		return false;
	}
	freeReplyObject(reply);
	return true;
}

/*
 * StampedeValkeyPing for the lease worker's probes of a Valkey that failed:
 * a probe that fails is not a command that failed (valkey_errors counts
 * those), only the outage going on.
 */
bool
StampedeValkeyProbe(const char *url, char **error)
{
	bool		ok;

	counting_failures = false;
	PG_TRY();
	{
		ok = StampedeValkeyPing(url, error);
	}
	PG_FINALLY();
	{
		counting_failures = true;
	}
	PG_END_TRY();
	return ok;
}

/*
 * GET each of nkeys keys: values[i] (palloc'd) and lens[i], NULL when
 * absent.  False when Valkey failed.
 */
bool
StampedeValkeyGet(const char *url, int nkeys, const char **keys, char **values, Size *lens)
{
	const char *argv[3];
	redisReply *reply;

	Assert(nkeys >= 1 && nkeys <= 2);
	argv[0] = "MGET";
	for (int i = 0; i < nkeys; i++)
		argv[i + 1] = keys[i];
	reply = valkey_run(url, nkeys + 1, argv, NULL);
	if (reply == NULL)
		return false;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != (size_t) nkeys)
	{
		freeReplyObject(reply);
		return false;
	}
	for (int i = 0; i < nkeys; i++)
	{
		redisReply *r = reply->element[i];

		values[i] = NULL;
		lens[i] = 0;
		if (r->type == REDIS_REPLY_STRING)
			values[i] = reply_copy(reply, r, &lens[i]);
	}
	freeReplyObject(reply);
	return true;
}

/* SET key value [PX ms] [NX]; *set says whether it was set.  False on failure. */
bool
StampedeValkeySet(const char *url, const char *key, const char *value, Size len,
				  int64 px_ms, bool nx, bool *set)
{
	char		px[32];
	const char *argv[6] = {"SET", key, value, "PX", px, "NX"};
	size_t		argvlen[6] = {3, strlen(key), len, 2, 0, 2};
	redisReply *reply;

	snprintf(px, sizeof(px), INT64_FORMAT, Max(px_ms, 1));
	argvlen[4] = strlen(px);
	reply = valkey_run(url, nx ? 6 : 5, argv, argvlen);
	if (reply == NULL)
		return false;
	if (set)
		*set = reply->type == REDIS_REPLY_STATUS;
	freeReplyObject(reply);
	return true;
}

/*
 * LRANGE key 0 -1 of a list of numbers: *values (palloc'd), *n of them; a
 * key of another type is garbage, no list.  False when Valkey failed.
 */
bool
StampedeValkeyListNumbers(const char *url, const char *key, uint64 **values, int *n)
{
	const char *argv[4] = {"LRANGE", key, "0", "-1"};
	redisReply *reply = valkey_run(url, 4, argv, NULL);

	*n = 0;
	*values = NULL;
	if (reply == NULL)
		return false;
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0)
	{
		*values = palloc(reply->elements * sizeof(uint64));
		for (size_t i = 0; i < reply->elements; i++)
		{
			redisReply *r = reply->element[i];
			char	   *end;
			uint64		v;

			if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 20)
				continue;
			errno = 0;
			v = strtoull(r->str, &end, 10);
			if (errno == 0 && end == r->str + r->len)
				(*values)[(*n)++] = v;
		}
	}
	freeReplyObject(reply);
	return true;
}

/* ---- waking waiters: a second connection, subscribed ---- */

/*
 * Subscribe to channel of the Valkey at url on a connection of its own, so
 * that a waiter can sleep until the leader publishes.  False when that
 * cannot be had: the waiter then only backs off.
 */
bool
StampedeValkeySubscribe(const char *url, const char *channel)
{
	StampedeValkeyTarget t;
	char	   *error = NULL;
	const char *argv[2] = {"SUBSCRIBE", channel};
	const char *what = NULL;
	redisReply *reply = NULL;
	bool		ok = false;

	valkey_close(&sub);
	if (!StampedeValkeyUsable(url) || !StampedeValkeyUrlParse(url, &t, &error))
		return false;
	PG_TRY();
	{
		ok = valkey_connect(&sub, url, &t, &error);
		if (ok)
			reply = valkey_command(&sub, 2, argv, NULL,
								   TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															   stampede_valkey_timeout_ms),
								   &what);
	}
	PG_CATCH();
	{
		StampedeForgetDeadFrames();
		valkey_close(&sub);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY)
	{
		if (reply)
			freeReplyObject(reply);
		valkey_close(&sub);
		return false;
	}
	freeReplyObject(reply);
	return true;
}

/*
 * Sleep until a message comes on the subscription or timeout_ms passes;
 * true when a message came.  Interruptible: a cancel raises at once.
 */
bool
StampedeValkeyWaitMessage(long timeout_ms)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	bool		got = false;

	if (sub.ctx == NULL)
		return false;
	PG_TRY();
	{
		for (;;)
		{
			redisReply *reply = NULL;

			if (redisGetReplyFromReader(sub.ctx, (void **) &reply) != REDIS_OK)
			{
				valkey_close(&sub);
				break;
			}
			if (reply != NULL)
			{
				freeReplyObject(reply);
				got = true;
				break;
			}
			if (!valkey_wait(&sub, WL_SOCKET_READABLE, deadline))
				break;
			if (redisBufferRead(sub.ctx) != REDIS_OK)
			{
				valkey_close(&sub);
				break;
			}
		}
	}
	PG_CATCH();
	{
		StampedeForgetDeadFrames();
		valkey_close(&sub);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return got;
}

bool
StampedeValkeySubscribed(void)
{
	return sub.ctx != NULL;
}

void
StampedeValkeyUnsubscribe(void)
{
	valkey_close(&sub);
}

/*
 * Is the circuit open for the Valkey at url: did it fail in this call, or
 * within stampede.valkey_retry_interval?  (A failure of another URL says
 * nothing about this one.)
 */
bool
StampedeValkeyCircuitOpen(const char *url)
{
	if (conn.ctx != NULL && strcmp(conn.url, url) == 0)
		return false;
	if (circuit_url == NULL || strcmp(circuit_url, url) != 0)
		return false;
	return failed_this_call || GetCurrentTimestamp() < circuit_open_until;
}

/* Can the Valkey at url be tried now?  (Its circuit is not open.) */
bool
StampedeValkeyUsable(const char *url)
{
	return !StampedeValkeyCircuitOpen(url);
}

/*
 * A new call begins.  A call pays for one Valkey failure at most: once a
 * command failed or timed out, the rest of the call uses the local store
 * even if the retry interval passes meanwhile, so that a Valkey that
 * stalls costs a call stampede.valkey_timeout, not that once per command.
 */
void
StampedeValkeyNewCall(void)
{
	failed_this_call = false;
}

