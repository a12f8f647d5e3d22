/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The lease worker: renews leaders' Valkey locks, settles outages.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_WORKER_H
#define STAMPEDE_WORKER_H

extern void StampedeWorkerRegister(void);

#endif							/* STAMPEDE_WORKER_H */
