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
#include "invalidation.h"
#include "lease.h"
#include "locks.h"
#include "outage.h"
#include "scan.h"
#include "secret.h"
#include "stats.h"
#include "store_local.h"
#include "worker.h"

PG_MODULE_MAGIC;

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>

/*
 * Built with AddressSanitizer: its runtime comes with this library, after
 * the postmaster started, and a backend's environment (ASAN_OPTIONS) is out
 * of its reach by then (PostgreSQL writes the process title over it).  The
 * options it needs here: see compat.h and test/lib.sh.
 */
PGDLLEXPORT const char *__asan_default_options(void);

const char *
__asan_default_options(void)
{
	return "verify_asan_link_order=0:detect_leaks=0";
}

/* See compat.h: a megabyte of dead stack below the caller, unpoisoned. */
#define DEAD_STACK (1024 * 1024)

pg_noinline void
StampedeForgetDeadFrames(void)
{
	uintptr_t	below = (uintptr_t) __builtin_frame_address(0);

	__asan_unpoison_memory_region((void *) (below - DEAD_STACK), DEAD_STACK);
}
#endif

void		_PG_init(void);

#ifdef STAMPEDE_HAS_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
stampede_shmem_request(void)
{
	Size		size;

#ifdef STAMPEDE_HAS_SHMEM_REQUEST_HOOK
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	size = StampedeStatsShmemSize();
	size = add_size(size, StampedeLocalStoreShmemSize());
	size = add_size(size, StampedeFlightShmemSize());
	size = add_size(size, StampedeLeaseShmemSize());
	size = add_size(size, StampedeChangesShmemSize());
	size = add_size(size, StampedeInvalShmemSize());
	size = add_size(size, StampedeOutageShmemSize());
	RequestAddinShmemSpace(size);
	RequestNamedLWLockTranche(STAMPEDE_LWLOCK_TRANCHE, STAMPEDE_NUM_LOCKS);
}

static void
stampede_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	StampedeStatsShmemInit();
	StampedeLocalStoreShmemInit();
	StampedeFlightShmemInit();
	StampedeLeaseShmemInit();
	StampedeChangesShmemInit();
	StampedeInvalShmemInit();
	StampedeOutageShmemInit();
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
	StampedeWorkerRegister();
	StampedeSecretInit();
}
