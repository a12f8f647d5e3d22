/*-------------------------------------------------------------------------
 *
 * store_key.h
 *	  Where an entry lives in a store, and one entry to store.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_STORE_KEY_H
#define STAMPEDE_STORE_KEY_H

#include "postgres.h"

/*
 * Where an entry lives: hash covers the caller's key and the entry's kind;
 * variant, the call's identity (the same key with another query, search
 * path or settings is another variant); scope, the users and settings the
 * rows are kept for (0: shared).  The entry itself holds the whole identity,
 * which a hit compares.
 */
typedef struct StampedeStoreKey
{
	Oid			dbid;
	uint32		pad;			/* zero: keys are compared as bytes */
	uint64		hash;
	uint64		variant;
	uint64		scope;
} StampedeStoreKey;

/* One entry to store when a flight ends well: its bytes under key. */
typedef struct StampedePut
{
	StampedeStoreKey key;
	char	   *data;
	Size		len;
} StampedePut;

#endif							/* STAMPEDE_STORE_KEY_H */
