/*-------------------------------------------------------------------------
 *
 * secret.h
 *	  The key that authenticates entries in Valkey.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_SECRET_H
#define STAMPEDE_SECRET_H

#include "postgres.h"

#define STAMPEDE_SECRET_FILE "stampede_secret"

extern void StampedeSecretInit(void);
extern uint64 StampedeSecretGeneration(void);
extern bool StampedeSecretMac(const char *a, Size alen, const char *b, Size blen,
							  uint8 *mac);

#endif							/* STAMPEDE_SECRET_H */
