/*-------------------------------------------------------------------------
 *
 * valkey.h
 *	  This backend's connection to a Valkey: transport only.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_VALKEY_H
#define STAMPEDE_VALKEY_H

/* A Lua script, and its SHA1 in hex once known (for EVALSHA). */
typedef struct StampedeValkeyScript
{
	const char *body;
	char		sha1[41];
} StampedeValkeyScript;

typedef enum StampedeValkeyReplyType
{
	VALKEY_REPLY_NIL,
	VALKEY_REPLY_STRING,
	VALKEY_REPLY_STATUS,
	VALKEY_REPLY_INTEGER,
	VALKEY_REPLY_ARRAY,
	VALKEY_REPLY_OTHER
} StampedeValkeyReplyType;

/* A script's reply, palloc'd: an array's elements one level deep. */
typedef struct StampedeValkeyReply
{
	StampedeValkeyReplyType type;
	int64		integer;
	char	   *str;			/* STRING, STATUS: NUL-terminated */
	Size		len;
	int			nelements;		/* ARRAY */
	struct StampedeValkeyReply *elements;
} StampedeValkeyReply;

extern bool StampedeValkeyPing(const char *url, char **error);
extern bool StampedeValkeyProbe(const char *url, char **error);
extern bool StampedeValkeyCircuitOpen(const char *url);
extern bool StampedeValkeyUsable(const char *url);
extern void StampedeValkeyNewCall(void);
extern bool StampedeValkeyGet(const char *url, int nkeys, const char **keys,
							  char **values, Size *lens);
extern bool StampedeValkeySet(const char *url, const char *key, const char *value, Size len,
							  int64 px_ms, bool nx, bool *set);
extern bool StampedeValkeyListNumbers(const char *url, const char *key, uint64 **values, int *n);
extern StampedeValkeyReply *StampedeValkeyEval(const char *url, StampedeValkeyScript *script,
											   int nkeys, int nargs, const char **args,
											   const Size *argslen);
extern bool StampedeValkeySubscribe(const char *url, const char *channel);
extern bool StampedeValkeyWaitMessage(long timeout_ms);
extern bool StampedeValkeySubscribed(void);
extern void StampedeValkeyUnsubscribe(void);

#endif							/* STAMPEDE_VALKEY_H */
