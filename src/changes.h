/*-------------------------------------------------------------------------
 *
 * changes.h
 *	  When this server last saw the definition of what an entry read change.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_CHANGES_H
#define STAMPEDE_CHANGES_H

#include "postgres.h"

#include "codec.h"

extern Size StampedeChangesShmemSize(void);
extern void StampedeChangesShmemInit(void);
extern void StampedeChangesInit(void);
extern uint64 StampedeChangesNow(void);
extern bool StampedeChangedSince(uint64 fill_lsn, const StampedeReadSet *reads,
								 Oid dbid);

#endif							/* STAMPEDE_CHANGES_H */
