/*-------------------------------------------------------------------------
 *
 * valkey_url.h
 *	  What stampede.valkey_url names: where to connect and as whom.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_VALKEY_URL_H
#define STAMPEDE_VALKEY_URL_H

typedef struct StampedeValkeyTarget
{
	char	   *host;			/* an IP address; NULL for a unix socket */
	int			port;
	char	   *socket_path;
	char	   *user;
	char	   *password;
	int			db;
	char	   *name;			/* host:port or the path: safe to print */
} StampedeValkeyTarget;

extern bool StampedeValkeyUrlParse(const char *url, StampedeValkeyTarget *t, char **error);

#endif							/* STAMPEDE_VALKEY_URL_H */
