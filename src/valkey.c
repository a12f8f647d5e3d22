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
 *	  One connection per backend, opened on first use (counted with
 *	  AcquireExternalFD).  After a failure a circuit breaker keeps calls off
 *	  Valkey for stampede.valkey_retry_interval, so that they do not each
 *	  pay the timeouts while it is down; the log says so once per incident.
 *
 *	  Messages name the server by host and port (or socket path) only: the
 *	  URL may hold a password.
 *
 *	  The commands single flight needs are here too (MGET, SET and four
 *	  scripts, sent by EVALSHA); what they mean is flight.c's business.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>

#include "funcapi.h"
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
#include "store_local.h"
#include "valkey.h"

#define VALKEY_DEFAULT_PORT 6379

/* Where to connect, from stampede.valkey_url. */
typedef struct ValkeyTarget
{
	char	   *host;			/* NULL for a unix socket */
	int			port;
	char	   *socket_path;
	char	   *user;
	char	   *password;
	int			db;
	char	   *name;			/* host:port or the path: safe to print */
} ValkeyTarget;

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
	char	   *name;			/* its server, as ValkeyTarget's name */
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

/* ---- the URL ---- */

static bool
parse_url(const char *url, ValkeyTarget *t, char **error)
{
	const char *p;
	const char *at;
	const char *slash;

	memset(t, 0, sizeof(*t));
	t->port = VALKEY_DEFAULT_PORT;
	if (strncmp(url, "redis://", 8) == 0 || strncmp(url, "valkey://", 9) == 0)
		p = strchr(url, '/') + 2;
	else if (strncmp(url, "unix://", 7) == 0)
		p = url + 7;
	else
	{
		*error = psprintf("stampede.valkey_url must start with redis://, valkey:// or unix://");
		return false;
	}

	/* user:password@, the userinfo, ends at the last @ */
	at = strrchr(p, '@');
	if (at != NULL)
	{
		const char *colon = memchr(p, ':', at - p);

		if (colon != NULL)
		{
			if (colon > p)
				t->user = pnstrdup(p, colon - p);
			t->password = pnstrdup(colon + 1, at - colon - 1);
		}
		else if (at > p)
			t->password = pnstrdup(p, at - p);
		p = at + 1;
	}

	if (url[0] == 'u')
	{
		const char *query = strchr(p, '?');

		t->socket_path = query ? pnstrdup(p, query - p) : pstrdup(p);
		if (t->socket_path[0] != '/')
		{
			*error = psprintf("the socket path of stampede.valkey_url must be absolute");
			return false;
		}
		if (query != NULL && strncmp(query, "?db=", 4) == 0)
			t->db = atoi(query + 4);
		t->name = t->socket_path;
		return true;
	}

	slash = strchr(p, '/');
	if (p[0] == '[')
	{
		const char *close = strchr(p, ']');

		if (close == NULL)
		{
			*error = psprintf("stampede.valkey_url has an unclosed [ in its host");
			return false;
		}
		t->host = pnstrdup(p + 1, close - p - 1);
		p = close + 1;
	}
	else
	{
		const char *end = p + strcspn(p, ":/");

		t->host = pnstrdup(p, end - p);
		p = end;
	}
	if (*p == ':')
		t->port = atoi(p + 1);
	if (slash != NULL && slash[1] != '\0')
		t->db = atoi(slash + 1);
	if (t->host[0] == '\0' || t->port <= 0 || t->port > 65535 || t->db < 0)
	{
		*error = psprintf("stampede.valkey_url has no valid host, port or database number");
		return false;
	}

	/*
	 * hiredis resolves a host name with a blocking lookup that nothing could
	 * interrupt: only addresses are taken.
	 */
	if (strcmp(t->host, "localhost") == 0)
		t->host = "127.0.0.1";
	else
	{
		unsigned char addr[sizeof(struct in6_addr)];

		if (inet_pton(AF_INET, t->host, addr) != 1 &&
			inet_pton(AF_INET6, t->host, addr) != 1)
		{
			*error = psprintf("stampede.valkey_url must give the host as an IP address");
			return false;
		}
	}
	t->name = psprintf("%s:%d", t->host, t->port);
	return true;
}

/* ---- waiting, interruptibly ---- */

/*
 * Wait until vc's socket is ready for events (one of WL_SOCKET_READABLE,
 * WL_SOCKET_WRITEABLE), or the deadline passes (false).  A cancel or
 * termination raises its error from CHECK_FOR_INTERRUPTS.
 */
static bool
valkey_wait(ValkeyConn *vc, uint32 events, TimestampTz deadline)
{
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
			return false;
		if (WaitEventSetWait(vc->waits, timeout, &event, 1, PG_WAIT_EXTENSION) == 0)
			continue;			/* timed out: the loop checks the deadline */
		if (event.events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (event.events & events)
			return true;
	}
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
 * the circuit, log once, drop the connection.
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
	circuit_url = MemoryContextStrdup(TopMemoryContext, stampede_valkey_url);
	StampedeOutageBegan(stampede_valkey_url);
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
valkey_setup_command(ValkeyConn *vc, const ValkeyTarget *t, int argc, const char **argv,
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

/* Connect vc to t and log in, under stampede.valkey_connect_timeout. */
static bool
valkey_connect(ValkeyConn *vc, const ValkeyTarget *t, char **error)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   stampede_valkey_connect_timeout_ms);
	int			soerr = 0;
	socklen_t	len = sizeof(soerr);

	Assert(vc->ctx == NULL);
	vc->url = MemoryContextStrdup(TopMemoryContext, stampede_valkey_url);
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
 * Make sure this backend has a connection to the configured Valkey.  False,
 * with *error, when there is none: not configured, circuit open, or it
 * failed now.  A cancel during it raises; the connection is dropped first.
 * The URL is parsed only to connect: a call on an open connection (every
 * hit) does not pay for it.
 */
static bool
valkey_ensure(char **error)
{
	ValkeyTarget t;
	bool		ok = false;

	if (!StampedeValkeyConfigured())
	{
		valkey_disconnect();
		*error = pstrdup("stampede.valkey_url is not set");
		return false;
	}
	if (conn.ctx != NULL && strcmp(conn.url, stampede_valkey_url) != 0)
		valkey_disconnect();	/* the setting changed */
	if (conn.ctx != NULL && !valkey_alive(&conn))
		valkey_disconnect();	/* closed while idle: open another, no failure */
	if (conn.ctx != NULL)
		return true;
	if (circuit_url != NULL && strcmp(circuit_url, stampede_valkey_url) != 0)
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
	if (!parse_url(stampede_valkey_url, &t, error))
		return false;

	PG_TRY();
	{
		ok = valkey_connect(&conn, &t, error);
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
 * The Valkey names of the flight of one variant of a key whose names begin
 * with prefix (flight.c makes it): its entry (scope 0), lock, error marker
 * and channel, and the key's generation, list of entries and invalidations.
 */
void
StampedeValkeyKeysOf(const char *prefix, uint64 variant, StampedeValkeyKeys *keys)
{
	char	   *vprefix = psprintf("%s%016" INT64_MODIFIER "x:", prefix, variant);

	keys->prefix = pstrdup(prefix);
	keys->value = psprintf("%s0:v", vprefix);
	keys->lock = psprintf("%s0:l", vprefix);
	keys->error = psprintf("%s0:e", vprefix);
	keys->channel = psprintf("%s0:c", vprefix);
	keys->generation = psprintf("%sg", prefix);
	keys->roles = psprintf("%sr", prefix);
	keys->invalidations = psprintf("%si", prefix);
}

bool
StampedeValkeyConfigured(void)
{
	return stampede_valkey_url != NULL && stampede_valkey_url[0] != '\0';
}

/*
 * Run one command on the configured Valkey.  NULL when Valkey cannot be used
 * (not configured, circuit open, connection failed or timed out, or an error
 * reply such as OOM, LOADING or READONLY): the caller falls back.
 */
static redisReply *
valkey_run_command(int argc, const char **argv, const size_t *argvlen, bool noscript_ok)
{
	char	   *error = NULL;
	const char *what = NULL;
	redisReply *reply = NULL;

	if (!valkey_ensure(&error))
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
valkey_run(int argc, const char **argv, const size_t *argvlen)
{
	return valkey_run_command(argc, argv, argvlen, false);
}

/* ---- scripts ---- */

#define VALKEY_MAX_SCRIPT_ARGS 12

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

/* A Lua script, and its SHA1 in hex once known (for EVALSHA). */
typedef struct ValkeyScript
{
	const char *body;
	char		sha1[41];
} ValkeyScript;

/* Work out script's SHA1, as Valkey names it; false if it cannot be had. */
static bool
script_sha1(ValkeyScript *script)
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
 * Run script with args (the number of keys, the keys, then the arguments):
 * by EVALSHA, so that the script's text is not sent each time, and by EVAL
 * when Valkey does not know it (NOSCRIPT: restarted, flushed, failed over),
 * which also makes it known again.  NULL when Valkey failed, as valkey_run.
 */
static redisReply *
valkey_eval(ValkeyScript *script, int nargs, const char **args, const size_t *argslen)
{
	const char *argv[2 + VALKEY_MAX_SCRIPT_ARGS];
	size_t		argvlen[2 + VALKEY_MAX_SCRIPT_ARGS];
	redisReply *reply = NULL;

	Assert(nargs <= VALKEY_MAX_SCRIPT_ARGS);
	for (int i = 0; i < nargs; i++)
	{
		argv[i + 2] = args[i];
		argvlen[i + 2] = argslen ? argslen[i] : strlen(args[i]);
	}
	if (script_sha1(script))
	{
		argv[0] = "EVALSHA";
		argv[1] = script->sha1;
		argvlen[0] = 7;
		argvlen[1] = 40;
		reply = valkey_run_command(nargs + 2, argv, argvlen, true);
		if (reply == NULL || reply->type != REDIS_REPLY_ERROR)
			return reply;
		freeReplyObject(reply); /* NOSCRIPT */
	}
	argv[0] = "EVAL";
	argv[1] = script->body;
	argvlen[0] = 4;
	argvlen[1] = strlen(script->body);
	return valkey_run(nargs + 2, argv, argvlen);
}

/* valkey_eval for a script whose reply says nothing: false when Valkey failed. */
static bool
valkey_eval_done(ValkeyScript *script, int nargs, const char **args, const size_t *argslen)
{
	redisReply *reply = valkey_eval(script, nargs, args, argslen);

	if (reply == NULL)
		return false;
	freeReplyObject(reply);
	return true;
}

/* Is the configured Valkey answering?  PING it, connecting if need be. */
bool
StampedeValkeyPing(char **error)
{
	const char *ping[1] = {"PING"};
	redisReply *reply;

	if (!StampedeValkeyConfigured())
	{
		*error = pstrdup("stampede.valkey_url is not set");
		return false;
	}
	reply = valkey_run(1, ping, NULL);
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
StampedeValkeyProbe(char **error)
{
	bool		ok;

	counting_failures = false;
	PG_TRY();
	{
		ok = StampedeValkeyPing(error);
	}
	PG_FINALLY();
	{
		counting_failures = true;
	}
	PG_END_TRY();
	return ok;
}

/* Can Valkey be tried now?  (Configured, and its circuit not open.) */
bool
StampedeValkeyUsable(void)
{
	return StampedeValkeyConfigured() && !StampedeValkeyCircuitOpen();
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

/*
 * GET each of nkeys keys: values[i] (palloc'd) and lens[i], NULL when
 * absent.  False when Valkey failed.
 */
bool
StampedeValkeyGet(int nkeys, const char **keys, char **values, Size *lens)
{
	const char *argv[3];
	redisReply *reply;

	Assert(nkeys >= 1 && nkeys <= 2);
	argv[0] = "MGET";
	for (int i = 0; i < nkeys; i++)
		argv[i + 1] = keys[i];
	reply = valkey_run(nkeys + 1, argv, NULL);
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
StampedeValkeySet(const char *key, const char *value, Size len, int64 px_ms,
				  bool nx, bool *set)
{
	char		px[32];
	const char *argv[6] = {"SET", key, value, "PX", px, "NX"};
	size_t		argvlen[6] = {3, strlen(key), len, 2, 0, 2};
	redisReply *reply;

	snprintf(px, sizeof(px), INT64_FORMAT, Max(px_ms, 1));
	argvlen[4] = strlen(px);
	reply = valkey_run(nx ? 6 : 5, argv, argvlen);
	if (reply == NULL)
		return false;
	if (set)
		*set = reply->type == REDIS_REPLY_STATUS;
	freeReplyObject(reply);
	return true;
}

/*
 * In one script: store value under vkey for px_ms, unless value is NULL or
 * the key was invalidated since the leader took the lock (its generation is
 * no longer the one given), and list members (the names of the entries
 * stored, space-separated: see flight.c) in the key's list of entries; delete
 * the lock if it still holds token (only its owner lets go); wake the
 * waiters subscribed to the channel.
 */
bool
StampedeValkeyStoreAndUnlock(const StampedeValkeyKeys *keys, const char *vkey,
							 const char *members, const char *value, Size len, int64 px_ms,
							 const char *token, const char *generation)
{
	static ValkeyScript script = {
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
	const char *args[11] = {"5", vkey, keys->lock, keys->channel, keys->generation, keys->roles,
		value ? value : "", px, token, generation ? generation : "0", members};
	size_t		argslen[11];

	snprintf(px, sizeof(px), INT64_FORMAT, Max(px_ms, 1));
	for (int i = 0; i < 11; i++)
		argslen[i] = (i == 6) ? (value ? len : 0) : strlen(args[i]);
	return valkey_eval_done(&script, 11, args, argslen);
}

/*
 * Remove every entry of a key (each variant's, each scope's: those its list
 * of entries names), and bump its generation, so that a leader running now
 * does not store rows it computed before; list xid (unless empty) among the
 * key's last eight invalidating transactions, which a fill's snapshot must
 * see before it stores.  *deleted says whether an entry was removed.
 */
bool
StampedeValkeyInvalidate(const StampedeValkeyKeys *keys, const char *xid, bool *deleted)
{
	static ValkeyScript script = {
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
	const char *args[8] = {"5", keys->value, keys->error, keys->generation, keys->roles,
		keys->invalidations, keys->prefix, xid};
	redisReply *reply = valkey_eval(&script, 8, args, NULL);

	if (reply == NULL)
		return false;
	*deleted = reply->type == REDIS_REPLY_INTEGER && reply->integer > 0;
	freeReplyObject(reply);
	return true;
}

/*
 * One round of single flight, atomically: the key's value if there is one
 * ('v'); else its error marker, if the leader that left it held the lock
 * under holder, the token the caller saw it held with ('e'); else the lock,
 * taken with token for px_ms ('l'); else nothing ('w': another holds the
 * lock).  *kind says which; *value (palloc'd) holds what 'v' and 'e' found,
 * for 'l' the key's generation (for the store to check), and for 'w' the
 * holder's token.  False on failure.
 */
bool
StampedeValkeyTryLead(const StampedeValkeyKeys *keys, const char *token, int64 px_ms,
					  const char *holder, char *kind, char **value, Size *len)
{
	static ValkeyScript script = {
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
	const char *args[8] = {"4", keys->value, keys->lock, keys->error, keys->generation,
		token, px, holder};
	redisReply *reply;

	snprintf(px, sizeof(px), INT64_FORMAT, Max(px_ms, 1));
	reply = valkey_eval(&script, 8, args, NULL);
	if (reply == NULL)
		return false;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
		reply->element[0]->type != REDIS_REPLY_STRING ||
		reply->element[1]->type != REDIS_REPLY_STRING)
	{
		freeReplyObject(reply);
		return false;
	}
	*kind = reply->element[0]->str[0];
	*value = reply_copy(reply, reply->element[1], len);
	freeReplyObject(reply);
	return true;
}

/*
 * LRANGE key 0 -1 of a list of numbers: *values (palloc'd), *n of them; a
 * key of another type is garbage, no list.  False when Valkey failed.
 */
bool
StampedeValkeyListNumbers(const char *key, uint64 **values, int *n)
{
	const char *argv[4] = {"LRANGE", key, "0", "-1"};
	redisReply *reply = valkey_run(4, argv, NULL);

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

/* Extend the lock at key by px_ms, if it still holds token.  False on failure. */
bool
StampedeValkeyRenew(const char *key, const char *token, int64 px_ms)
{
	static ValkeyScript script = {
		LUA_GET
		"if get(KEYS[1]) == ARGV[1] then "
		"return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
	};
	char		px[32];
	const char *args[4] = {"1", key, token, px};

	snprintf(px, sizeof(px), INT64_FORMAT, Max(px_ms, 1));
	return valkey_eval_done(&script, 4, args, NULL);
}

/* ---- waking waiters: a second connection, subscribed ---- */

/*
 * Subscribe to channel on a connection of its own, so that a waiter can
 * sleep until the leader publishes.  False when that cannot be had: the
 * waiter then only backs off.
 */
bool
StampedeValkeySubscribe(const char *channel)
{
	ValkeyTarget t;
	char	   *error = NULL;
	const char *argv[2] = {"SUBSCRIBE", channel};
	const char *what = NULL;
	redisReply *reply = NULL;
	bool		ok = false;

	valkey_close(&sub);
	if (!StampedeValkeyUsable() || !parse_url(stampede_valkey_url, &t, &error))
		return false;
	PG_TRY();
	{
		ok = valkey_connect(&sub, &t, &error);
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

bool
StampedeValkeyCircuitOpen(void)
{
	return conn.ctx == NULL && (failed_this_call || GetCurrentTimestamp() < circuit_open_until);
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

/*
 * stampede_status(): what stampede uses now, whether Valkey answers, the
 * circuit breaker's state and the local store's use.
 */
PG_FUNCTION_INFO_V1(stampede_status);
Datum
stampede_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[9];
	bool		nulls[9] = {0};
	StampedeStoreUsage usage;
	char	   *error = NULL;
	bool		configured = StampedeValkeyConfigured();
	bool		reachable;

	StampedeForgetDeadFrames();
	StampedeValkeyNewCall();
	reachable = configured && StampedeValkeyPing(&error);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	/* Not preloaded, Valkey is all there is: calls run uncached without it. */
	values[0] = CStringGetTextDatum(reachable ? "valkey" :
									!StampedeStoreAvailable() ?
									(configured ? "uncached" : "not preloaded") :
									configured ? "fallback" : "local");
	values[1] = BoolGetDatum(configured);
	values[2] = BoolGetDatum(reachable);
	nulls[2] = !configured;
	values[3] = CStringGetTextDatum(!configured ? "none" :
									StampedeValkeyCircuitOpen() ? "open" : "closed");
	values[4] = error && configured ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[4] = !(error && configured);
	StampedeStoreGetUsage(&usage);
	values[5] = Int64GetDatum(usage.entries);
	values[6] = Int64GetDatum(usage.bytes_used);
	values[7] = Int64GetDatum(usage.bytes_total);
	values[8] = BoolGetDatum(StampedeStoreAvailable());
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
