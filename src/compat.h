/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every difference between the PostgreSQL major versions stampede builds
 *	  against (13 to 17) lives here, behind PG_VERSION_NUM, so that the rest
 *	  of the code reads as if there were one version.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_COMPAT_H
#define STAMPEDE_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 130000
#error "stampede needs PostgreSQL 13 or later"
#endif

/* PG 15 added shmem_request_hook; before, shared memory is requested in _PG_init. */
#if PG_VERSION_NUM >= 150000
#define STAMPEDE_HAS_SHMEM_REQUEST_HOOK 1
#endif

/* PG 15 reserves a GUC prefix with MarkGUCPrefixReserved; before, EmitWarningsOnPlaceholders. */
#if PG_VERSION_NUM >= 150000
#define StampedeReserveGucPrefix(prefix) MarkGUCPrefixReserved(prefix)
#else
#define StampedeReserveGucPrefix(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/*
 * PG 16 moved the permission bits of a range table entry into a separate
 * RTEPermissionInfo list.  StampedeRtePermissions() hands back what stampede
 * needs of either: the relation, the user the check runs as, and the columns.
 */
#if PG_VERSION_NUM >= 160000
#define StampedeRteRequiresSelect(query, rte) \
	((rte)->perminfoindex != 0 && \
	 (getRTEPermissionInfo((query)->rteperminfos, (rte))->requiredPerms & ACL_SELECT))
#define StampedeRteCheckAsUser(query, rte) \
	(getRTEPermissionInfo((query)->rteperminfos, (rte))->checkAsUser)
#define StampedeRteSelectedCols(query, rte) \
	(getRTEPermissionInfo((query)->rteperminfos, (rte))->selectedCols)
#else
#define StampedeRteRequiresSelect(query, rte) (((rte)->requiredPerms & ACL_SELECT) != 0)
#define StampedeRteCheckAsUser(query, rte) ((rte)->checkAsUser)
#define StampedeRteSelectedCols(query, rte) ((rte)->selectedCols)
#endif

/* PG 16 renamed pg_*_aclcheck's object-type-generic entry point. */
#if PG_VERSION_NUM >= 160000
#define StampedeProcAclCheck(funcid, roleid, mode) object_aclcheck(ProcedureRelationId, funcid, roleid, mode)
#else
#define StampedeProcAclCheck(funcid, roleid, mode) pg_proc_aclcheck(funcid, roleid, mode)
#endif

#if PG_VERSION_NUM >= 160000
#define StampedeNamespaceAclCheck(nspid, roleid, mode) object_aclcheck(NamespaceRelationId, nspid, roleid, mode)
#else
#define StampedeNamespaceAclCheck(nspid, roleid, mode) pg_namespace_aclcheck(nspid, roleid, mode)
#endif

/* PG 14 lets SPI hand each row to a DestReceiver (no materialized SPI_tuptable). */
#if PG_VERSION_NUM >= 140000
#define STAMPEDE_HAS_SPI_EXECUTE_EXTENDED 1
#endif

/*
 * How many backends can exist at once, for sizing shared memory.  PG 15
 * computes MaxBackends before shmem_request_hook; before, _PG_init must add
 * it up itself.
 */
#if PG_VERSION_NUM >= 150000
#define StampedeMaxBackends() (MaxBackends)
#else
#include "postmaster/autovacuum.h"
#include "replication/walsender.h"
#define StampedeMaxBackends() \
	(MaxConnections + autovacuum_max_workers + 1 + max_worker_processes + max_wal_senders)
#endif

/* PG 17 names a backend's PGPROC slot MyProcNumber; before, MyProc->pgprocno. */
#if PG_VERSION_NUM >= 170000
#define StampedeMyProcNumber() (MyProcNumber)
#else
#define StampedeMyProcNumber() (MyProc->pgprocno)
#endif

/* PG 17 gave LockHeldByMe an "or stronger" argument. */
#if PG_VERSION_NUM >= 170000
#define StampedeLockHeldByMe(tag, mode) LockHeldByMe(tag, mode, false)
#else
#define StampedeLockHeldByMe(tag, mode) LockHeldByMe(tag, mode)
#endif

/* PG 17 ties a wait event set to a resource owner (NULL: the session's). */
#if PG_VERSION_NUM >= 170000
#define StampedeCreateWaitEventSet(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define StampedeCreateWaitEventSet(nevents) CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

/*
 * SHA1 (to name Lua scripts for EVALSHA) is in common/cryptohash.h from PG 14,
 * whose final step takes the digest's length from PG 15.  Without it,
 * scripts go by EVAL.
 */
#if PG_VERSION_NUM >= 140000
#include "common/cryptohash.h"
#endif
#if PG_VERSION_NUM >= 150000
#define STAMPEDE_HAS_SHA1 1
#define StampedeCryptohashFinal(ctx, dest, len) pg_cryptohash_final((ctx), (dest), (len))
#elif PG_VERSION_NUM >= 140000
#define STAMPEDE_HAS_SHA1 1
#define StampedeCryptohashFinal(ctx, dest, len) pg_cryptohash_final((ctx), (dest))
#endif

/*
 * SHA-256 of one buffer, for a call's identity: common/cryptohash.h from
 * PG 14, common/sha2.h's own functions before.  False on failure.
 */
#if PG_VERSION_NUM >= 140000
static inline bool
StampedeSha256(const char *data, size_t len, uint8 *out)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	bool		ok;

	ok = ctx != NULL && pg_cryptohash_init(ctx) == 0 &&
		pg_cryptohash_update(ctx, (const uint8 *) data, len) == 0 &&
		StampedeCryptohashFinal(ctx, out, 32) == 0;
	pg_cryptohash_free(ctx);
	return ok;
}
#else
#include "common/sha2.h"
static inline bool
StampedeSha256(const char *data, size_t len, uint8 *out)
{
	pg_sha256_ctx ctx;

	pg_sha256_init(&ctx);
	pg_sha256_update(&ctx, (const uint8 *) data, len);
	pg_sha256_final(&ctx, out);
	return true;
}
#endif

/*
 * HMAC-SHA256 of a || b under key (at most 64 bytes), to seal entries sent
 * to Valkey: common/hmac.h from PG 14, written out over common/sha2.h
 * before (RFC 2104).  False on failure.
 */
#if PG_VERSION_NUM >= 140000
#include "common/hmac.h"
static inline bool
StampedeHmacSha256(const uint8 *key, size_t keylen, const char *a, size_t alen,
				   const char *b, size_t blen, uint8 *out)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	bool		ok;

	ok = ctx != NULL && pg_hmac_init(ctx, key, keylen) == 0 &&
		pg_hmac_update(ctx, (const uint8 *) a, alen) == 0 &&
		pg_hmac_update(ctx, (const uint8 *) b, blen) == 0 &&
		pg_hmac_final(ctx, out, 32) == 0;
	pg_hmac_free(ctx);
	return ok;
}
#else
static inline bool
StampedeHmacSha256(const uint8 *key, size_t keylen, const char *a, size_t alen,
				   const char *b, size_t blen, uint8 *out)
{
	uint8		pad[PG_SHA256_BLOCK_LENGTH];
	uint8		inner[PG_SHA256_DIGEST_LENGTH];
	pg_sha256_ctx ctx;

	if (keylen > sizeof(pad))
		return false;
	memset(pad, 0x36, sizeof(pad));
	for (size_t i = 0; i < keylen; i++)
		pad[i] ^= key[i];
	pg_sha256_init(&ctx);
	pg_sha256_update(&ctx, pad, sizeof(pad));
	pg_sha256_update(&ctx, (const uint8 *) a, alen);
	pg_sha256_update(&ctx, (const uint8 *) b, blen);
	pg_sha256_final(&ctx, inner);
	for (size_t i = 0; i < sizeof(pad); i++)
		pad[i] ^= 0x36 ^ 0x5c;
	pg_sha256_init(&ctx);
	pg_sha256_update(&ctx, pad, sizeof(pad));
	pg_sha256_update(&ctx, inner, sizeof(inner));
	pg_sha256_final(&ctx, out);
	return true;
}
#endif

/* PG 14 put a compression method in the top bits of a compressed value's size. */
#ifndef VARLENA_EXTSIZE_BITS
#define VARLENA_EXTSIZE_BITS	30
#define VARLENA_EXTSIZE_MASK	((1U << VARLENA_EXTSIZE_BITS) - 1)
#endif

/* PG 15 added common/pg_prng.h; before, random() (the backend seeds it). */
#if PG_VERSION_NUM >= 150000
#include "common/pg_prng.h"
#define StampedeRandomFraction() pg_prng_double(&pg_global_prng_state)
#else
#define StampedeRandomFraction() ((double) random() / ((double) MAX_RANDOM_VALUE + 1))
#endif

/* PG 16 hands back the GUC array with its length; before, two calls. */
#if PG_VERSION_NUM >= 160000
#define StampedeGucVariables(n) get_guc_variables(n)
#else
#define StampedeGucVariables(n) (*(n) = GetNumConfigOptions(), get_guc_variables())
#endif

/*
 * Built with AddressSanitizer, loaded into a postgres that is not:
 * PostgreSQL's errors longjmp over our frames without telling the
 * sanitizer, and the poison it left around their locals would be taken for
 * overflows by later frames at those addresses.  Each entry into our code
 * (SQL functions, hooks, callbacks, PG_CATCH blocks) first forgets the dead
 * frames below it, as ASan does itself before a longjmp it sees.  Nothing
 * in any other build.
 */
#if defined(__SANITIZE_ADDRESS__)
extern void StampedeForgetDeadFrames(void);	/* in stampede.c */
#else
#define StampedeForgetDeadFrames() ((void) 0)
#endif

#endif							/* STAMPEDE_COMPAT_H */
