/*-------------------------------------------------------------------------
 *
 * entry_check.h
 *	  Reading an entry's bytes without trusting them: the header and
 *	  sections, and every row down to each value's length.  Pure functions
 *	  over a buffer (no catalog, no memory allocation, no error raised), so
 *	  that a fuzzer can run them outside the server: test/fuzz.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_ENTRY_CHECK_H
#define STAMPEDE_ENTRY_CHECK_H

#include "codec.h"

/* How one column's values are laid out: its type's typlen and typalign. */
typedef struct StampedeColumnLayout
{
	int16		len;
	char		align;
} StampedeColumnLayout;

extern bool StampedeEntryParseBytes(const char *data, Size len, StampedeEntry *entry);
extern bool StampedeEntryRowsValid(const StampedeEntry *entry,
								   const StampedeColumnLayout *columns);

#endif							/* STAMPEDE_ENTRY_CHECK_H */
