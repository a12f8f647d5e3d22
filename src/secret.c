/*-------------------------------------------------------------------------
 *
 * secret.c
 *	  The key under which entries sent to Valkey are sealed (codec.c).
 *
 *	  Valkey is shared with other servers and often with other applications;
 *	  whoever can write to it must not be able to choose what a server
 *	  serves.  Only servers that hold the same secret accept each other's
 *	  entries:
 *
 *	  - by default, 32 random bytes in the file stampede_secret of the data
 *		directory, made the first time the library loads there.  A physical
 *		replica is a copy of its primary's data directory (pg_basebackup,
 *		pg_rewind and file-level copies take the file along), so a primary
 *		and its replicas share entries without configuration, and no other
 *		cluster can read or forge theirs;
 *	  - when a superuser sets stampede.valkey_secret, that instead: the way
 *		for independent clusters to share entries on purpose (with
 *		stampede.namespace).  Like stampede.valkey_url, only superusers may
 *		see or set it.
 *
 *	  The key itself is an HMAC-SHA256 key derived from the secret; it stays
 *	  in this backend's memory.  Without a secret (the file cannot be read
 *	  or made) nothing is sealed, so nothing goes to Valkey and nothing from
 *	  it is accepted: calls use the local store.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_perm.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "guc.h"
#include "secret.h"

#define SECRET_BYTES	32
#define SECRET_MAX		1024

#define RETRY_FILE_MS	10000	/* a secret file that could not be read is tried again after */

static uint8 hmac_key[32];
static bool have_key = false;
static uint64 key_generation = 1;	/* moves on when the key changes */
static TimestampTz file_retry_at = 0;
static char *key_source = NULL; /* the setting the key was made from, or NULL: the file */
static bool failure_logged = false;

/* Read up to max bytes of the secret file; -1 if there is none to read. */
static int
read_secret_file(const char *path, uint8 *buf, int max)
{
	int			fd = open(path, O_RDONLY | PG_BINARY, 0);
	int			n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, max);
	close(fd);
	return n;
}

/*
 * Make the secret file if it is missing, without ever replacing one: write
 * a file of our own, then link it in place (fails if another process was
 * first, whose file stays).  False, with errno, when it cannot be made.
 */
static bool
make_secret_file(const char *path)
{
	char		tmp[MAXPGPATH];
	uint8		secret[SECRET_BYTES];
	int			fd;
	bool		ok;

	if (!pg_strong_random(secret, sizeof(secret)))
		return false;
	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, MyProcPid);
	/* As the data directory's other files: readable by its group if they are. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY, pg_file_create_mode);
	if (fd < 0)
		return false;
	ok = write(fd, secret, sizeof(secret)) == sizeof(secret) && pg_fsync(fd) == 0;
	close(fd);
	if (ok && link(tmp, path) != 0 && errno != EEXIST)
		ok = false;
	unlink(tmp);
	/* A secret lost in a crash would be replaced by one no replica has. */
	if (ok)
		fsync_fname(DataDir, true);
	return ok;
}

static char *
secret_path(void)
{
	return psprintf("%s/%s", DataDir, STAMPEDE_SECRET_FILE);
}

/* At server start (preloaded): make the file, so that base backups carry it. */
void
StampedeSecretInit(void)
{
	char	   *path = secret_path();
	uint8		buf[SECRET_BYTES];

	if (read_secret_file(path, buf, sizeof(buf)) < SECRET_BYTES && !make_secret_file(path))
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("stampede could not create \"%s\": %m", path),
				 errdetail("Entries are not shared through Valkey until it exists.")));
	pfree(path);
}

/* The key, from the setting or the file; false when neither gives one. */
static bool
ensure_key(void)
{
	const char *setting = stampede_valkey_secret;
	uint8		secret[SECRET_MAX];
	int			n;
	char	   *path;

	if (setting != NULL && setting[0] == '\0')
		setting = NULL;
	if (have_key && (setting == NULL ? key_source == NULL :
					 key_source != NULL && strcmp(key_source, setting) == 0))
		return true;

	/* No file to be had a moment ago: not every call tries again. */
	if (setting == NULL && key_source == NULL && !have_key &&
		GetCurrentTimestamp() < file_retry_at)
		return false;
	if (have_key)
		key_generation++;
	have_key = false;
	if (key_source != NULL)
		pfree(key_source);
	key_source = NULL;
	if (setting != NULL)
	{
		n = Min(strlen(setting), sizeof(secret));
		memcpy(secret, setting, n);
		key_source = MemoryContextStrdup(TopMemoryContext, setting);
	}
	else
	{
		path = secret_path();
		n = read_secret_file(path, secret, sizeof(secret));
		if (n < SECRET_BYTES && make_secret_file(path))
			n = read_secret_file(path, secret, sizeof(secret));
		if (n < SECRET_BYTES)
		{
			if (!failure_logged)
				ereport(LOG,
						(errcode_for_file_access(),
						 errmsg("stampede could not read \"%s\"", path),
						 errdetail("Entries are neither sent to Valkey nor accepted from it.")));
			failure_logged = true;
			file_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), RETRY_FILE_MS);
			pfree(path);
			return false;
		}
		pfree(path);
	}

	/* A key of its own, so that the secret serves this one purpose. */
	{
		StringInfoData buf;

		initStringInfo(&buf);
		appendStringInfoString(&buf, "stampede entries in Valkey, v1:");
		appendBinaryStringInfo(&buf, (char *) secret, n);
		have_key = StampedeSha256(buf.data, buf.len, hmac_key);
		explicit_bzero(buf.data, buf.len);
		pfree(buf.data);
	}
	explicit_bzero(secret, sizeof(secret));
	return have_key;
}

/*
 * Which key this backend seals and checks with: it moves on whenever the key
 * changes, so that what was checked under another key is checked again.
 */
uint64
StampedeSecretGeneration(void)
{
	(void) ensure_key();
	return key_generation;
}

/* HMAC-SHA256 of a || b under the key; false when there is no key. */
bool
StampedeSecretMac(const char *a, Size alen, const char *b, Size blen, uint8 *mac)
{
	if (!ensure_key())
		return false;
	return StampedeHmacSha256(hmac_key, sizeof(hmac_key), a, alen, b, blen, mac);
}
