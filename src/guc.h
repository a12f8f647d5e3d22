/*-------------------------------------------------------------------------
 *
 * guc.h
 *	  The stampede.* settings.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_GUC_H
#define STAMPEDE_GUC_H

typedef enum StampedeWaitTimeoutAction
{
	STAMPEDE_ON_TIMEOUT_EXECUTE,
	STAMPEDE_ON_TIMEOUT_ERROR
} StampedeWaitTimeoutAction;

/* How this session's last call was answered (stampede.last_call). */
typedef enum StampedeLastCall
{
	STAMPEDE_CALL_NONE,			/* no call yet */
	STAMPEDE_CALL_HIT,			/* rows from the store at first look */
	STAMPEDE_CALL_WAITED,		/* rows another session or server computed */
	STAMPEDE_CALL_LED,			/* ran the query for its single flight */
	STAMPEDE_CALL_RAN			/* ran the query for itself, storing nothing */
} StampedeLastCall;

extern int	stampede_last_call;
extern int	stampede_lock_timeout_ms;
extern int	stampede_max_wait_ms;
extern int	stampede_backoff_base_ms;
extern int	stampede_backoff_max_ms;
extern int	stampede_wait_timeout_action;
extern int	stampede_local_cache_size_kb;
extern int	stampede_max_entry_size_kb;
extern char *stampede_valkey_url;
extern char *stampede_valkey_secret;
extern char *stampede_namespace;
extern int	stampede_valkey_connect_timeout_ms;
extern int	stampede_valkey_timeout_ms;
extern int	stampede_valkey_retry_interval_ms;

extern void StampedeGucInit(void);

#endif							/* STAMPEDE_GUC_H */
