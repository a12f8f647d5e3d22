/*-------------------------------------------------------------------------
 *
 * valkey.h
 *	  This backend's connection to Valkey.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_VALKEY_H
#define STAMPEDE_VALKEY_H

extern bool StampedeValkeyConfigured(void);
extern bool StampedeValkeyPing(char **error);
extern bool StampedeValkeyCircuitOpen(void);

#endif							/* STAMPEDE_VALKEY_H */
