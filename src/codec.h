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

/* Entry flags */
#define STAMPEDE_ENTRY_PER_ROLE		0x0001	/* rows are kept per role; this
											 * entry only says so */

/* One relation a query read, and the columns it read of it (0: whole row). */
typedef struct StampedeReadRel
{
	Oid			relid;
	List	   *cols;			/* int list of attribute numbers */
} StampedeReadRel;

/* What a query read: what a caller must be allowed to read to get a hit. */
typedef struct StampedeReadSet
{
	List	   *rels;			/* StampedeReadRel * */
	List	   *funcs;			/* OIDs of the functions it calls */
	bool		per_role;		/* its rows depend on who asks */
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
	uint64		query_hash;
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
								const char *key, int keylen, uint16 flags, uint64 query_hash,
								TupleDesc desc, const StampedeReadSet *reads);
extern void StampedeEncoderAddRow(StampedeEncoder *enc, TupleDesc desc, HeapTuple tuple);
extern bool StampedeEncoderFinish(StampedeEncoder *enc, char **data, Size *len);

extern bool StampedeEntryParse(const char *data, Size len, StampedeEntry *entry);
extern bool StampedeEntryChecksumOk(const char *data, Size len);
extern bool StampedeEntryKeyEquals(const StampedeEntry *entry, const char *key, int keylen);
extern void StampedeEntryReadSet(const StampedeEntry *entry, StampedeReadSet *reads);
extern TupleDesc StampedeEntryTupleDesc(const StampedeEntry *entry);
extern bool StampedeEntryMatchesDesc(const StampedeEntry *entry, TupleDesc desc);
extern bool StampedeEntryTypesPortable(const StampedeEntry *entry);
extern char *StampedeEntryMinimalTuples(const StampedeEntry *entry);
extern bool StampedeEntryToTuplestore(const StampedeEntry *entry, TupleDesc outdesc,
									  TupleConversionMap *map, Tuplestorestate *tupstore);

#endif							/* STAMPEDE_CODEC_H */
