/*-------------------------------------------------------------------------
 *
 * valkey_url.c
 *	  Parsing stampede.valkey_url: redis://[[user]:password@]host[:port][/db],
 *	  valkey://... the same, or unix://[[user]:password@]/path[?db=N].
 *
 *	  Used by the setting's check hook (guc.c), so that a URL stampede
 *	  cannot use is refused when it is set, and by valkey.c to connect.
 *	  Calls nothing that can fail but palloc.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <limits.h>

#include "valkey_url.h"

#define VALKEY_DEFAULT_PORT 6379

/* The decimal number in [s, end), at most max; false unless all digits. */
static bool
parse_number(const char *s, const char *end, int max, int *out)
{
	long		n = 0;

	if (s >= end)
		return false;
	for (; s < end; s++)
	{
		if (*s < '0' || *s > '9')
			return false;
		n = n * 10 + (*s - '0');
		if (n > max)
			return false;
	}
	*out = (int) n;
	return true;
}

/*
 * Parse url into *t, palloc'd in the current context.  False, with *error
 * (which never quotes the URL: it may hold a password), when it is not one
 * stampede can use.
 */
bool
StampedeValkeyUrlParse(const char *url, StampedeValkeyTarget *t, char **error)
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
		if (query != NULL &&
			!(strncmp(query, "?db=", 4) == 0 &&
			  parse_number(query + 4, query + strlen(query), INT_MAX, &t->db)))
		{
			*error = psprintf("stampede.valkey_url takes only ?db=N after a socket path");
			return false;
		}
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
	if (t->host[0] == '\0' ||
		(*p == ':' && !parse_number(p + 1, slash ? slash : p + strlen(p), 65535, &t->port)) ||
		(*p != ':' && *p != '/' && *p != '\0') || t->port == 0 ||
		(slash != NULL && slash[1] != '\0' &&
		 !parse_number(slash + 1, slash + strlen(slash), INT_MAX, &t->db)))
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
