/*-------------------------------------------------------------------------
 *
 * codec.h
 *	  The versioned byte format of a cache entry: a header, the key, the
 *	  row descriptor, what the query read (for rights checks on a hit) and
 *	  the rows in PostgreSQL's own tuple layout.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_CODEC_H
#define STAMPEDE_CODEC_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupconvert.h"
#include "access/tupdesc.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/tuplestore.h"

/*
 * Entry flags.  A stub holds no rows: it says that the rows of its call are
 * kept per scope (see StampedeScope), under the caller's scope key.
 */
#define STAMPEDE_ENTRY_STUB_ROLE		0x0001
#define STAMPEDE_ENTRY_STUB_SETTINGS	0x0002
#define STAMPEDE_ENTRY_STUB (STAMPEDE_ENTRY_STUB_ROLE | STAMPEDE_ENTRY_STUB_SETTINGS)
/* Rows that any catalog change may alter (privilege inquiries): see changes.c */
#define STAMPEDE_ENTRY_ANY_CHANGE		0x0004
/* Rows of one session's own (its temporary schema is in its search path) */
#define STAMPEDE_ENTRY_SESSION			0x0008

/*
 * Who may be handed a query's rows, widest first: every caller of the same
 * identity; only the same effective and session user; only the same users
 * with the same custom settings (app.tenant, request.jwt.claims, ...).
 */
typedef enum StampedeScope
{
	STAMPEDE_SCOPE_SHARED = 0,
	STAMPEDE_SCOPE_ROLE = 1,
	STAMPEDE_SCOPE_SETTINGS = 2
} StampedeScope;

#define STAMPEDE_ID_LEN 32		/* SHA-256 */
#define STAMPEDE_MAC_LEN 32		/* HMAC-SHA256 */

/*
 * What a call is, as digests: "local" says everything, down to the OIDs its
 * names resolved to, and is what a hit on this cluster must match;
 * "portable" leaves out what only means something on this cluster (OIDs),
 * for clusters that share entries on purpose.
 */
typedef struct StampedeEntryId
{
	uint8		local[STAMPEDE_ID_LEN];
	uint8		portable[STAMPEDE_ID_LEN];
} StampedeEntryId;

/*
 * One relation a query read, the user its rights are checked as (InvalidOid:
 * the caller; a view's owner for what the view reads), and the columns it
 * read of it (0: whole row).
 */
typedef struct StampedeReadRel
{
	Oid			relid;
	Oid			checkas;
	uint32		modes;			/* ACL_SELECT, or (a sequence that nextval()
								 * reads) any of ACL_USAGE | ACL_UPDATE, or
								 * (STAMPEDE_READ_SCHEMA) USAGE on schema relid,
								 * or 0: named by a regclass constant, not read */
	List	   *cols;			/* int list of attribute numbers */
} StampedeReadRel;

/* A "relation" of a read set that is a schema named in a literal ('s.t'::regclass) */
#define STAMPEDE_READ_SCHEMA	0x40000000

/* What a query read: what a caller must be allowed to read to get a hit. */
typedef struct StampedeReadSet
{
	List	   *rels;			/* StampedeReadRel * */
	List	   *funcs;			/* OIDs of the functions it calls */
	StampedeScope scope;		/* who else may be handed its rows */
	const char *unshareable;	/* why nobody else may, or NULL */
	bool		any_change;		/* any catalog change may alter its rows */
	bool		session_only;	/* its names resolve through pg_temp */
} StampedeReadSet;

/* Builds an entry row by row; stops collecting once past its limit. */
typedef struct StampedeEncoder
{
	StringInfoData buf;
	int			natts;
	uint64		nrows;
	Size		limit;
	bool		too_large;
} StampedeEncoder;

/* A parsed entry: pointers into the entry's bytes, which the caller owns. */
typedef struct StampedeEntry
{
	const char *data;
	Size		len;
	uint16		flags;
	bool		foreign;		/* written by another cluster */
	uint64		system_id;		/* the writing cluster's */
	Oid			dbid;			/* the writer's database */
	uint64		fill_lsn;		/* WAL position when its query started */
	int64		expires_at;		/* sealed for Valkey: no use after; else 0 */
	const uint8 *local_id;
	const uint8 *portable_id;
	int			natts;
	uint64		nrows;
	const char *key;
	int			keylen;
	const char *attrs;
	const char *rels;
	uint32		nrels;
	const char *funcs;
	uint32		nfuncs;
	const char *rows;
} StampedeEntry;

extern void StampedeEncoderInit(StampedeEncoder *enc, Size limit,
								const char *key, int keylen, uint16 flags,
								const StampedeEntryId *id, uint64 fill_lsn,
								TupleDesc desc, const StampedeReadSet *reads);
extern void StampedeEncoderAddRow(StampedeEncoder *enc, TupleDesc desc, HeapTuple tuple);
extern bool StampedeEncoderFinish(StampedeEncoder *enc, char **data, Size *len);

extern bool StampedeEntryParse(const char *data, Size len, StampedeEntry *entry);
extern bool StampedeEntrySeal(char *data, Size len, int64 expires_at);
/* What a reader may make of bytes read from Valkey. */
typedef enum StampedeSeal
{
	STAMPEDE_SEAL_GOOD,			/* sealed with our secret, unchanged, in date */
	STAMPEDE_SEAL_EXPIRED,		/* good, but past its expiry: a plain miss */
	STAMPEDE_SEAL_BAD			/* not ours, or changed */
} StampedeSeal;

extern StampedeSeal StampedeEntrySealCheck(const char *data, Size len);
extern bool StampedeEntryExpired(const char *data, Size len);
extern bool StampedeEntryRowsValidFor(const StampedeEntry *entry, TupleDesc desc);
extern bool StampedeEntryKeyEquals(const StampedeEntry *entry, const char *key, int keylen);
extern void StampedeEntryReadSet(const StampedeEntry *entry, StampedeReadSet *reads);
extern TupleDesc StampedeEntryTupleDesc(const StampedeEntry *entry);
extern bool StampedeEntryMatchesDesc(const StampedeEntry *entry, TupleDesc desc);
extern bool StampedeEntryTypesPortable(const StampedeEntry *entry);
extern char *StampedeEntryMinimalTuples(const StampedeEntry *entry);
extern bool StampedeEntryToTuplestore(const StampedeEntry *entry, TupleDesc outdesc,
									  TupleConversionMap *map, Tuplestorestate *tupstore);

#endif							/* STAMPEDE_CODEC_H */
