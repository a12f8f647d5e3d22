/*-------------------------------------------------------------------------
 *
 * query.h
 *	  The cached query itself: what is accepted, what it reads, who may see
 *	  its rows, and running it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_QUERY_H
#define STAMPEDE_QUERY_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "utils/tuplestore.h"

#include "codec.h"
#include "identity.h"

/* What running a query produced, besides the rows in the caller's tuplestore. */
typedef struct StampedeRunResult
{
	StampedeReadSet reads;
	uint64		fill_lsn;		/* WAL position before it was planned */
	StampedeEntryId id;			/* of the rows: the call's, or its scope's */
	uint64		scope_key;		/* the scope's address, when not shared */
	uint16		flags;			/* of the entry (STAMPEDE_ENTRY_*) */
	TupleDesc	resultdesc;		/* in the caller's memory context */
	char	   *entry;			/* encoded entry, or NULL when too large */
	Size		entry_len;
	uint64		nrows;
	bool		saw_own_writes; /* this transaction has written */
	bool		superseded;		/* an invalidation its snapshot does not see */
} StampedeRunResult;

extern char *StampedeCheckQuery(const char *querytext, int querylen, List **schemas);
extern void StampedeRunQuery(const char *query, const char *key, int keylen,
							 const StampedeIdentity *identity, TupleDesc outdesc,
							 Tuplestorestate *tupstore, Size entry_limit,
							 StampedeRunResult *result);
extern bool StampedeTransactionHasWritten(void);
extern bool StampedeCheckReadRights(const StampedeReadSet *reads, bool shared);
extern void StampedeCheckSchemaUsage(const List *schemas);
extern void StampedeQueryReads(const char *query, StampedeReadSet *reads);
extern TupleConversionMap *StampedeRowTypeMap(TupleDesc indesc, TupleDesc outdesc,
											  const char *key);

#endif							/* STAMPEDE_QUERY_H */
