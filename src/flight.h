/*-------------------------------------------------------------------------
 *
 * flight.h
 *	  Single flight: one caller computes a key, the others wait for it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_FLIGHT_H
#define STAMPEDE_FLIGHT_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "utils/tuplestore.h"

#include "identity.h"

/* What form an entry holds; the same key in two forms is two entries. */
typedef enum StampedeKind
{
	STAMPEDE_KIND_ROWS = 1,
	STAMPEDE_KIND_JSONB = 2
} StampedeKind;

#define STAMPEDE_NUM_KINDS 2

/* One call: where its rows go, and what to run when nobody has them. */
typedef struct StampedeRequest
{
	const char *key;			/* keylen bytes, not NUL-terminated */
	int			keylen;
	const char *query;			/* one checked statement */
	List	   *schemas;		/* the schemas it names explicitly */
	int64		ttl_ms;
	StampedeKind kind;
	TupleDesc	outdesc;		/* the row type the caller asked for */
	Tuplestorestate *tupstore;

	/*
	 * A caller that reads rows itself sets take_entry: a hit then hands it
	 * the checked entry (entry_data, its to free) instead of filling
	 * tupstore.  Misses still fill tupstore.
	 */
	bool		take_entry;
	char	   *entry_data;
	Size		entry_len;

	/* Filled in while serving. */
	StampedeIdentity identity;	/* what the call is */
	uint64		scope_key;		/* a stub said: rows kept under this scope */
	StampedeEntryId scope_id;	/* ... with this identity */
} StampedeRequest;

extern Size StampedeFlightShmemSize(void);
extern void StampedeFlightShmemInit(void);

extern void StampedeServe(StampedeRequest *req);
extern bool StampedeInvalidate(const char *key, int keylen);

#endif							/* STAMPEDE_FLIGHT_H */
