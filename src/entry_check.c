/*-------------------------------------------------------------------------
 *
 * entry_check.c
 *	  Reads an entry's bytes as a stranger's: every length, count and offset
 *	  is checked against the bytes that hold it before anything is read
 *	  through it, and an entry that does not add up is reported as damaged
 *	  (the caller treats it as a miss, never an error or a crash).
 *
 *	  An entry from Valkey is authenticated first (codec.c); these checks are
 *	  the second line, against a peer that has the secret and a bug.  They
 *	  go down to each value's envelope: alignment, fixed lengths, varlena
 *	  headers within the row, no TOAST pointer (it would point into another
 *	  server's memory or tables), a sane compressed header.  What a value
 *	  means inside its envelope is its type's business.
 *
 *	  Nothing here calls into the server: no catalog, no palloc, no ereport.
 *	  test/fuzz builds this file alone under libFuzzer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/tupmacs.h"
#include "utils/memutils.h"

#include "compat.h"
#include "entry_check.h"
#include "entry_format.h"

/*
 * Check an entry's header and sections and point into them.  False means
 * the bytes are not an entry this build can read: another format, major
 * version or architecture, or damaged.  Says nothing of whose it is: see
 * StampedeEntryParse.
 */
bool
StampedeEntryParseBytes(const char *data, Size len, StampedeEntry *entry)
{
	EntryHeader header;
	const char *p;
	const char *end;

	if (len < sizeof(EntryHeader))
		return false;
	memcpy(&header, data, sizeof(header));
	if (header.magic != STAMPEDE_MAGIC ||
		header.format_version != STAMPEDE_FORMAT_VERSION ||
		header.server_major != PG_VERSION_NUM / 10000 ||
		header.arch != STAMPEDE_ARCH_TAG ||
		header.total_len != len ||
		header.natts == 0 || header.natts > MaxTupleAttributeNumber)
		return false;
	if (!(sizeof(EntryHeader) + header.keylen <= header.attrs_offset &&
		  header.attrs_offset <= header.rels_offset &&
		  header.rels_offset <= header.funcs_offset &&
		  header.funcs_offset <= header.rows_offset &&
		  header.rows_offset <= len &&
		  header.rows_offset - header.funcs_offset >= (uint64) header.nfuncs * sizeof(Oid) &&
		  header.rows_offset % MAXIMUM_ALIGNOF == 0))
		return false;
	/* Each row takes at least its header: the count is bounded by the bytes. */
	if (header.nrows > (len - header.rows_offset) / ROW_HEADER_SIZE)
		return false;

	/* Walk the variable-length sections once, so later readers need not. */
	end = data + header.rels_offset;
	p = data + header.attrs_offset;
	for (int i = 0; i < header.natts; i++)
	{
		if (end - p < ATTR_HEADER_SIZE ||
			end - p - ATTR_HEADER_SIZE < entry_get_u16(p + 8))
			return false;
		p += ATTR_HEADER_SIZE + entry_get_u16(p + 8);
	}
	if (p != end)
		return false;
	end = data + header.funcs_offset;
	p = data + header.rels_offset;
	for (uint32 i = 0; i < header.nrels; i++)
	{
		if (end - p < REL_HEADER_SIZE ||
			(end - p - REL_HEADER_SIZE) / 2 < entry_get_u16(p + 12))
			return false;
		p += REL_HEADER_SIZE + 2 * entry_get_u16(p + 12);
	}
	if (p != end)
		return false;

	entry->data = data;
	entry->len = len;
	entry->flags = header.flags;
	entry->foreign = false;
	entry->system_id = header.system_id;
	entry->dbid = header.dbid;
	entry->fill_lsn = header.fill_lsn;
	entry->expires_at = header.expires_at;
	entry->local_id = (const uint8 *) data + offsetof(EntryHeader, id.local);
	entry->portable_id = (const uint8 *) data + offsetof(EntryHeader, id.portable);
	entry->natts = header.natts;
	entry->nrows = header.nrows;
	entry->key = data + sizeof(EntryHeader);
	entry->keylen = header.keylen;
	entry->attrs = data + header.attrs_offset;
	entry->rels = data + header.rels_offset;
	entry->nrels = header.nrels;
	entry->funcs = data + header.funcs_offset;
	entry->nfuncs = header.nfuncs;
	entry->rows = data + header.rows_offset;
	return true;
}

/* The byte alignment of a typalign code; 0 for a code that is none. */
static Size
align_of(char align)
{
	switch (align)
	{
		case TYPALIGN_CHAR:
			return 1;
		case TYPALIGN_SHORT:
			return ALIGNOF_SHORT;
		case TYPALIGN_INT:
			return ALIGNOF_INT;
		case TYPALIGN_DOUBLE:
			return ALIGNOF_DOUBLE;
	}
	return 0;
}

/*
 * Is a varlena value at data[off] whole within the row's datalen bytes, and
 * one a reader here may use?  *size gets its length.
 */
static bool
varlena_valid(const char *data, Size off, Size datalen, Size alignment, Size *size)
{
	const char *p = data + off;
	Size		left = datalen - off;
	varattrib_4b header;		/* a copy of the 4-byte header, for the macros */

	if (left < 1)
		return false;
	/* A TOAST pointer or expanded object: another server's, or nothing. */
	if (VARATT_IS_EXTERNAL(p))
		return false;
	if (VARATT_IS_SHORT(p))
	{
		*size = VARSIZE_SHORT(p);
		return *size >= VARHDRSZ_SHORT && *size <= left;
	}
	/* A 4-byte header is read in place: it must be where the type aligns it. */
	if (off % alignment != 0 || left < VARHDRSZ)
		return false;
	memset(&header, 0, sizeof(header));
	memcpy(&header, p, VARHDRSZ);
	*size = VARSIZE(&header);
	if (*size < VARHDRSZ || *size > left)
		return false;
	if (VARATT_IS_COMPRESSED(&header))
	{
		uint32		info;

		/*
		 * Compressed in line: its raw size and method come from its header.
		 * Neither pglz nor lz4 gets past about 255 to 1: a larger claim would
		 * only make a reader allocate for nothing.
		 */
		if (*size < VARHDRSZ + sizeof(uint32))
			return false;
		memcpy(&info, p + VARHDRSZ, sizeof(info));
		if ((info & VARLENA_EXTSIZE_MASK) > MaxAllocSize - VARHDRSZ ||
			(info & VARLENA_EXTSIZE_MASK) > (uint64) 256 * *size ||
			(info >> VARLENA_EXTSIZE_BITS) > 1) /* pglz or lz4 */
			return false;
	}
	return true;
}

/*
 * Does a row's data area (datalen bytes, as heap_fill_tuple laid them out
 * from a MAXALIGNed start) hold exactly one value of each non-null column,
 * each whole and where its type aligns it?  *varwidth says whether one of
 * them has a variable width.
 */
static bool
row_values_valid(const StampedeEntry *entry, const StampedeColumnLayout *columns,
				 const bits8 *bitmap, const char *data, Size datalen, bool *varwidth)
{
	Size		off = 0;

	*varwidth = false;
	for (int i = 0; i < entry->natts; i++)
	{
		const StampedeColumnLayout *col = &columns[i];
		Size		alignment = align_of(col->align);
		Size		size;

		if (bitmap != NULL && att_isnull(i, bitmap))
			continue;
		if (alignment == 0)
			return false;
		if (col->len > 0)
		{
			off = TYPEALIGN(alignment, off);
			if (off > datalen || datalen - off < (Size) col->len)
				return false;
			off += col->len;
		}
		else if (col->len == -1)
		{
			*varwidth = true;
			/* As att_align_pointer: a zero byte is padding before an aligned value. */
			if (off < datalen && data[off] == 0)
				off = TYPEALIGN(alignment, off);
			if (off >= datalen || !varlena_valid(data, off, datalen, alignment, &size))
				return false;
			off += size;
		}
		else if (col->len == -2)
		{
			const char *nul;

			*varwidth = true;
			off = TYPEALIGN(alignment, off);
			if (off >= datalen || (nul = memchr(data + off, '\0', datalen - off)) == NULL)
				return false;
			off = nul - data + 1;
		}
		else
			return false;
	}
	return off == datalen;
}

/*
 * Are all of a parsed entry's rows whole, with values of the given layouts
 * (one per column, from the reader's own catalog: never from the entry),
 * and nothing after the last?  Reading rows that pass never reads outside
 * the entry.
 */
bool
StampedeEntryRowsValid(const StampedeEntry *entry, const StampedeColumnLayout *columns)
{
	const char *p = entry->rows;
	const char *end = entry->data + entry->len;
	Size		bitmaplen = BITMAPLEN(entry->natts);

	for (uint64 i = 0; i < entry->nrows; i++)
	{
		uint32		datalen;
		uint8		flags;
		Size		left;
		const bits8 *bitmap = NULL;
		bool		varwidth;

		if (end - p < ROW_HEADER_SIZE)
			return false;
		datalen = entry_get_u32(p);
		flags = (uint8) p[4];
		p += ROW_HEADER_SIZE;
		left = end - p;
		if (flags & ~(ROW_HASNULL | ROW_HASVARWIDTH))
			return false;
		if (flags & ROW_HASNULL)
		{
			if (left < bitmaplen)
				return false;
			bitmap = (const bits8 *) p;
			p += bitmaplen;
			left -= bitmaplen;
		}
		if (left < datalen || datalen > MaxAllocSize)
			return false;
		if (!row_values_valid(entry, columns, bitmap, p, datalen, &varwidth))
			return false;
		/* Readers skip offset caching on this flag's word: it must not lie. */
		if (varwidth && !(flags & ROW_HASVARWIDTH))
			return false;
		p += datalen;
	}
	return p == end;
}
