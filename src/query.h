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

/* What running a query produced, besides the rows in the caller's tuplestore. */
typedef struct StampedeRunResult
{
	StampedeReadSet reads;
	TupleDesc	resultdesc;		/* in the caller's memory context */
	char	   *entry;			/* encoded entry, or NULL when too large */
	Size		entry_len;
	uint64		nrows;
	bool		saw_own_writes; /* this transaction wrote what the query read */
} StampedeRunResult;

extern char *StampedeCheckQuery(const char *querytext, int querylen);
extern void StampedeRunQuery(const char *query, const char *key, int keylen,
							 TupleDesc outdesc, Tuplestorestate *tupstore,
							 Size entry_limit, StampedeRunResult *result);
extern bool StampedeCheckReadRights(const StampedeReadSet *reads);
extern void StampedeQueryReads(const char *query, StampedeReadSet *reads);
extern uint64 StampedeQueryHash(const char *query);
extern TupleConversionMap *StampedeRowTypeMap(TupleDesc indesc, TupleDesc outdesc);

#endif							/* STAMPEDE_QUERY_H */
