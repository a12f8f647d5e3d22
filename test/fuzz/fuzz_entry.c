/*-------------------------------------------------------------------------
 *
 * fuzz_entry.c
 *	  A libFuzzer harness for the reading of entries from Valkey
 *	  (src/entry_check.c), built outside the server: test/fuzz/run.sh.
 *
 *	  An entry's seal (codec.c) keeps out whoever does not hold the secret;
 *	  entry_check.c is what stands between a server and the bytes of a peer
 *	  that holds it and has a bug.  Its promise: bytes that it accepts are
 *	  read by the server without reading outside them.  Here every input is
 *	  taken as such bytes and, when StampedeEntryParseBytes and
 *	  StampedeEntryRowsValid accept it, read the way the server reads it:
 *	  the key and the sections as codec.c walks them, and every row as
 *	  heap_deform_tuple deforms it (att_isnull, att_align_pointer,
 *	  fetch_att, att_addlength_pointer), each value touched byte by byte.
 *	  Each row's data area and null bitmap are read from copies in
 *	  allocations of their own of exactly their size (MAXALIGNed, as a
 *	  tuple's data is in the server), so that AddressSanitizer sees a read
 *	  past a value, and UndefinedBehaviorSanitizer a misaligned one, that
 *	  the checks should have refused.  What the checks promise about a value
 *	  beyond that (no TOAST pointer, a sane compressed header, rows that
 *	  end where their length says) is asserted: a failed one aborts.
 *
 *	  Column layouts come from the reader's catalog in the server, never
 *	  from the entry: here, from the entry's type OIDs through a table of
 *	  built-in types, and for an OID not in it, from the OID's bits, so
 *	  that a mutated OID explores every layout.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdlib.h>

#include "access/htup_details.h"
#include "access/toast_compression.h"
#include "access/tupmacs.h"
#include "catalog/pg_type_d.h"
#include "utils/memutils.h"

#include "entry_check.h"
#include "entry_format.h"

/* port.h sends these to libpgport's, which this harness does not link. */
#undef fprintf

/*
 * What postgres.h and the headers it pulls in may call from their inline
 * functions or macros (Assert is compiled out without USE_ASSERT_CHECKING,
 * but a build of the server headers with it would want this).
 */
void
ExceptionalCondition(const char *conditionName, const char *errorType,
					 const char *fileName, int lineNumber)
{
	fprintf(stderr, "assertion \"%s\" failed at %s:%d\n", conditionName, fileName, lineNumber);
	abort();
}

/* A promise of the checks that the server relies on, broken: a finding. */
#define PROMISE(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz_entry: accepted entry breaks \"%s\" (%s:%d)\n", \
					#cond, __FILE__, __LINE__); \
			abort(); \
		} \
	} while (0)

typedef struct Layout
{
	int16		len;
	char		align;
	bool		byval;
} Layout;

typedef struct KnownType
{
	Oid			oid;
	Layout		layout;
} KnownType;

/* pg_type's typlen, typalign, typbyval of built-in types (64-bit Datum). */
static const KnownType known_types[] = {
	{BOOLOID, {1, TYPALIGN_CHAR, true}},
	{CHAROID, {1, TYPALIGN_CHAR, true}},
	{INT2OID, {2, TYPALIGN_SHORT, true}},
	{INT4OID, {4, TYPALIGN_INT, true}},
	{INT8OID, {8, TYPALIGN_DOUBLE, true}},
	{FLOAT4OID, {4, TYPALIGN_INT, true}},
	{FLOAT8OID, {8, TYPALIGN_DOUBLE, true}},
	{OIDOID, {4, TYPALIGN_INT, true}},
	{TEXTOID, {-1, TYPALIGN_INT, false}},
	{BYTEAOID, {-1, TYPALIGN_INT, false}},
	{VARCHAROID, {-1, TYPALIGN_INT, false}},
	{BPCHAROID, {-1, TYPALIGN_INT, false}},
	{NAMEOID, {NAMEDATALEN, TYPALIGN_CHAR, false}},
	{NUMERICOID, {-1, TYPALIGN_INT, false}},
	{DATEOID, {4, TYPALIGN_INT, true}},
	{TIMESTAMPOID, {8, TYPALIGN_DOUBLE, true}},
	{TIMESTAMPTZOID, {8, TYPALIGN_DOUBLE, true}},
	{INTERVALOID, {16, TYPALIGN_DOUBLE, false}},
	{UUIDOID, {16, TYPALIGN_CHAR, false}},
	{JSONOID, {-1, TYPALIGN_INT, false}},
	{JSONBOID, {-1, TYPALIGN_INT, false}},
	{CSTRINGOID, {-2, TYPALIGN_CHAR, false}},
	{INT4ARRAYOID, {-1, TYPALIGN_INT, false}},
	{TEXTARRAYOID, {-1, TYPALIGN_INT, false}},
	{RECORDOID, {-1, TYPALIGN_DOUBLE, false}},
};

/*
 * The layout of a type this table does not know, from its OID's bits: the
 * lengths and alignments a catalog may give (a pass-by-value type is 1, 2,
 * 4 or 8 bytes, aligned as its size, as DefineType requires), and now and
 * then one that no type has (a length of 0 or -3, an alignment code that is
 * none), which the checks must refuse.
 */
static Layout
layout_from_bits(Oid oid)
{
	static const int16 lens[] = {-1, -1, -2, 1, 2, 4, 8, 3, 6, 12, 16, 64, 0, -3, 5, 7};
	static const char aligns[] = {TYPALIGN_CHAR, TYPALIGN_SHORT, TYPALIGN_INT, TYPALIGN_DOUBLE};
	uint32		h = oid * 2654435761u;
	Layout		l;

	l.len = lens[(h >> 28) & 15];
	l.align = aligns[(h >> 26) & 3];
	l.byval = ((h >> 25) & 1) && (l.len == 1 || l.len == 2 || l.len == 4 || l.len == 8);
	if (l.byval)
		l.align = l.len == 1 ? TYPALIGN_CHAR : l.len == 2 ? TYPALIGN_SHORT :
			l.len == 4 ? TYPALIGN_INT : TYPALIGN_DOUBLE;
	if (((h >> 20) & 63) == 0)
		l.align = 'x';
	return l;
}

static Layout
layout_of(Oid oid)
{
	for (size_t i = 0; i < lengthof(known_types); i++)
		if (known_types[i].oid == oid)
			return known_types[i].layout;
	return layout_from_bits(oid);
}

/* Where what is read goes, so that no read is optimized away. */
static volatile uint8 sink;

static void
touch(const char *p, Size n)
{
	uint8		acc = 0;

	for (Size i = 0; i < n; i++)
		acc ^= (uint8) p[i];
	sink ^= acc;
}

/* A copy of n bytes in an allocation of exactly n bytes (malloc is MAXALIGNed). */
static char *
copy_exact(const char *p, Size n)
{
	char	   *c = malloc(n > 0 ? n : 1);

	if (c == NULL)
		abort();
	memcpy(c, p, n);
	return c;
}

/*
 * Deform one row as heap_deform_tuple does (slow path: no cached offsets),
 * touching each value whole, as the type's output function would read it.
 */
static void
deform_row(const Layout *layouts, int natts, const bits8 *bp, const char *tp, uint32 datalen)
{
	bool		hasnulls = bp != NULL;
	uint32		off = 0;

	for (int attnum = 0; attnum < natts; attnum++)
	{
		const Layout *att = &layouts[attnum];
		Datum		value;

		if (hasnulls && att_isnull(attnum, bp))
			continue;
		/* A layout no type has is refused as soon as a value needs it. */
		PROMISE(att->len > 0 || att->len == -1 || att->len == -2);
		PROMISE(att->align == TYPALIGN_CHAR || att->align == TYPALIGN_SHORT ||
				att->align == TYPALIGN_INT || att->align == TYPALIGN_DOUBLE);
		if (att->len == -1)
			off = att_align_pointer(off, att->align, -1, tp + off);
		else
			off = att_align_nominal(off, att->align);
		value = fetch_att(tp + off, att->byval, att->len);
		if (att->byval)
			sink ^= (uint8) value;
		else if (att->len > 0)
			touch(DatumGetPointer(value), att->len);
		else if (att->len == -1)
		{
			const char *v = DatumGetPointer(value);

			PROMISE(!VARATT_IS_EXTERNAL(v));
			if (VARATT_IS_COMPRESSED(v))
			{
				PROMISE(VARSIZE(v) >= VARHDRSZ_COMPRESSED);
				PROMISE(VARDATA_COMPRESSED_GET_EXTSIZE(v) <= MaxAllocSize - VARHDRSZ);
				PROMISE(VARDATA_COMPRESSED_GET_COMPRESS_METHOD(v) == TOAST_PGLZ_COMPRESSION_ID ||
						VARDATA_COMPRESSED_GET_COMPRESS_METHOD(v) == TOAST_LZ4_COMPRESSION_ID);
			}
			touch(v, VARSIZE_ANY(v));
		}
		else
			touch(DatumGetPointer(value), strlen(DatumGetPointer(value)) + 1);
		off = att_addlength_pointer(off, att->len, tp + off);
	}
	/* heap_fill_tuple wrote exactly this: nothing after the last value. */
	PROMISE(off == datalen);
}

/*
 * Read an accepted entry's key and sections as codec.c does (the entry's
 * own bytes, in the harness's exact-size copy of the input).
 */
static void
read_sections(const StampedeEntry *entry)
{
	const char *p;

	touch(entry->key, entry->keylen);
	p = entry->attrs;
	for (int i = 0; i < entry->natts; i++)
	{
		touch(p, 10);
		touch(p + 10, entry_get_u16(p + 8));
		p += 10 + entry_get_u16(p + 8);
	}
	p = entry->rels;
	for (uint32 i = 0; i < entry->nrels; i++)
	{
		uint16		ncols = entry_get_u16(p + 12);

		touch(p, 14 + 2 * ncols);
		p += 14 + 2 * ncols;
	}
	touch(entry->funcs, entry->nfuncs * sizeof(Oid));
}

/*
 * Read an accepted entry's rows as the server does: each row's header
 * (codec.c's next_row), then its values through a MinimalTuple-like copy.
 */
static void
read_rows(const StampedeEntry *entry, const Layout *layouts)
{
	const char *p = entry->rows;
	const char *end = entry->data + entry->len;
	Size		bitmaplen = BITMAPLEN(entry->natts);

	for (uint64 i = 0; i < entry->nrows; i++)
	{
		uint32		datalen;
		uint8		flags;
		bits8	   *bitmap = NULL;
		char	   *data;

		PROMISE(end - p >= ROW_HEADER_SIZE);
		datalen = entry_get_u32(p);
		flags = (uint8) p[4];
		p += ROW_HEADER_SIZE;
		if (flags & ROW_HASNULL)
		{
			PROMISE((Size) (end - p) >= bitmaplen);
			bitmap = (bits8 *) copy_exact(p, bitmaplen);
			p += bitmaplen;
		}
		PROMISE((Size) (end - p) >= datalen);
		data = copy_exact(p, datalen);
		p += datalen;
		deform_row(layouts, entry->natts, bitmap, data, datalen);
		free(data);
		free(bitmap);
	}
	PROMISE(p == end);
}

int
LLVMFuzzerTestOneInput(const uint8_t *input, size_t size)
{
	char	   *buf = copy_exact((const char *) input, size);
	StampedeEntry entry;

	if (StampedeEntryParseBytes(buf, size, &entry))
	{
		StampedeColumnLayout *columns = malloc(sizeof(StampedeColumnLayout) * entry.natts);
		Layout	   *layouts = malloc(sizeof(Layout) * entry.natts);
		const char *p = entry.attrs;

		PROMISE(entry.data == buf && entry.len == size);
		read_sections(&entry);
		for (int i = 0; i < entry.natts; i++)
		{
			layouts[i] = layout_of(entry_get_u32(p));
			columns[i].len = layouts[i].len;
			columns[i].align = layouts[i].align;
			p += ATTR_HEADER_SIZE + entry_get_u16(p + 8);
		}
		if (StampedeEntryRowsValid(&entry, columns))
			read_rows(&entry, layouts);
		free(layouts);
		free(columns);
	}
	free(buf);
	return 0;
}
