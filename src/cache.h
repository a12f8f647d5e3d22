/*-------------------------------------------------------------------------
 *
 * cache.h
 *	  Turning the SQL arguments of a call into a request.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_CACHE_H
#define STAMPEDE_CACHE_H

#include "flight.h"

extern void StampedeRequestFromArgs(StampedeRequest *req, const Datum *args,
									const bool *nulls, StampedeKind kind);

#endif							/* STAMPEDE_CACHE_H */
