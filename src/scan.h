/*-------------------------------------------------------------------------
 *
 * scan.h
 *	  The custom scan that reads a hit's rows straight from the entry.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_SCAN_H
#define STAMPEDE_SCAN_H

extern void StampedeScanInit(void);

#endif							/* STAMPEDE_SCAN_H */
