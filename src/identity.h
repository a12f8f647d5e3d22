/*-------------------------------------------------------------------------
 *
 * identity.h
 *	  What a call is: the digests that say which entry may answer it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_IDENTITY_H
#define STAMPEDE_IDENTITY_H

#include "postgres.h"

#include "codec.h"

/* A call's identity, and the 64 bits of it that address its entry. */
typedef struct StampedeIdentity
{
	StampedeEntryId id;
	uint64		variant;		/* never 0 */
	bool		session_only;	/* its search path holds the temporary schema */
} StampedeIdentity;

extern void StampedeCallIdentity(int kind, const char *key, int keylen,
								 const char *query, StampedeIdentity *out);
extern uint64 StampedeScopeIdentity(const StampedeEntryId *call, StampedeScope scope,
									StampedeEntryId *scoped);
extern bool StampedeIdEquals(const uint8 *a, const uint8 *b);

#endif							/* STAMPEDE_IDENTITY_H */
