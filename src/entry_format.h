/*-------------------------------------------------------------------------
 *
 * entry_format.h
 *	  The bytes of a cache entry, for the two files that read or write them:
 *	  codec.c (in the server) and entry_check.c (which also runs outside it,
 *	  under a fuzzer).  Nothing else includes this.
 *
 *	  Layout (native byte order; the header says whose):
 *
 *		EntryHeader			magic, format version, flags, server major
 *							version, architecture tag, section offsets,
 *							the writing cluster's system identifier and
 *							database, the WAL position its query started
 *							at, the identity of the call (two SHA-256),
 *							and for an entry sent to Valkey its expiry and
 *							its HMAC-SHA256
 *		key					the caller's key, to tell colliding hashes apart
 *		attributes			per column: type OID, typmod, name
 *		relations			per relation read: OID, the user its rights are
 *							checked as, the rights, columns read
 *		functions			OIDs of the functions called
 *		rows				per row: data length, null/varwidth flags,
 *							null bitmap (if any), then the tuple's data area
 *
 *-------------------------------------------------------------------------
 */
#ifndef STAMPEDE_ENTRY_FORMAT_H
#define STAMPEDE_ENTRY_FORMAT_H

#include "postgres.h"

#include "codec.h"

#define STAMPEDE_MAGIC			0x504D5453	/* "STMP" read little-endian */
#define STAMPEDE_FORMAT_VERSION	4

#define ROW_HASNULL				0x01
#define ROW_HASVARWIDTH			0x02
#define ROW_HEADER_SIZE			5	/* uint32 data length + uint8 flags */

#define ATTR_HEADER_SIZE		10	/* type OID, typmod, name length */
#define REL_HEADER_SIZE			14	/* relid, checkas, modes, ncols */

/* What a reader must share with the writer to use the rows as they are. */
#ifdef WORDS_BIGENDIAN
#define STAMPEDE_BIG_ENDIAN 1u
#else
#define STAMPEDE_BIG_ENDIAN 0u
#endif
#define STAMPEDE_ARCH_TAG \
	((uint32) MAXIMUM_ALIGNOF | ((uint32) SIZEOF_DATUM << 8) | \
	 ((uint32) FLOAT8PASSBYVAL << 16) | (STAMPEDE_BIG_ENDIAN << 24))

typedef struct EntryHeader
{
	uint32		magic;
	uint16		format_version;
	uint16		flags;
	uint32		server_major;	/* PG_VERSION_NUM / 10000 */
	uint32		arch;
	uint32		total_len;
	uint16		natts;
	uint16		keylen;
	uint32		nrels;
	uint32		nfuncs;
	uint32		attrs_offset;
	uint32		rels_offset;
	uint32		funcs_offset;
	uint32		rows_offset;
	Oid			dbid;			/* the writing database: OIDs are its */
	uint64		nrows;
	uint64		system_id;		/* the writing cluster's */
	uint64		fill_lsn;		/* for DDL since: see changes.c */
	StampedeEntryId id;			/* the call whose rows these are */
	int64		expires_at;		/* sent to Valkey: no use after (TimestampTz) */
	uint8		mac[STAMPEDE_MAC_LEN];	/* sent to Valkey: HMAC-SHA256 of the
										 * entry, this field as zeros */
} EntryHeader;

static inline uint16
entry_get_u16(const char *p)
{
	uint16		v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint32
entry_get_u32(const char *p)
{
	uint32		v;

	memcpy(&v, p, sizeof(v));
	return v;
}

#endif							/* STAMPEDE_ENTRY_FORMAT_H */
