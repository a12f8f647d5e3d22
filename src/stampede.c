/*-------------------------------------------------------------------------
 *
 * stampede.c
 *	  Module entry: _PG_init defines the settings, installs the planner hook
 *	  of the custom scan and, when loaded through shared_preload_libraries,
 *	  asks for the shared memory that the store, the flight table and the
 *	  counters live in.  Nothing else happens here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "changes.h"
#include "compat.h"
#include "flight.h"
#include "guc.h"
#include "lease.h"
#include "scan.h"
#include "stats.h"
#include "store_local.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

#ifdef STAMPEDE_HAS_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
stampede_shmem_request(void)
{
#ifdef STAMPEDE_HAS_SHMEM_REQUEST_HOOK
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(add_size(add_size(add_size(add_size(StampedeStatsShmemSize(),
															   StampedeStoreShmemSize()),
													  StampedeFlightShmemSize()),
											 StampedeLeaseShmemSize()),
									StampedeChangesShmemSize()));
	RequestNamedLWLockTranche("stampede", 2);	/* store, flight table */
}

static void
stampede_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	StampedeStatsShmemInit();
	StampedeStoreShmemInit();
	StampedeFlightShmemInit();
	StampedeLeaseShmemInit();
	StampedeChangesShmemInit();
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	StampedeGucInit();
	StampedeScanInit();
	StampedeChangesInit();

	if (!process_shared_preload_libraries_in_progress)
		return;

#ifdef STAMPEDE_HAS_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = stampede_shmem_request;
#else
	stampede_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stampede_shmem_startup;
	StampedeLeaseWorkerRegister();
}
