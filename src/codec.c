/*-------------------------------------------------------------------------
 *
 * codec.c
 *	  Writes cache entries, seals those that go to Valkey, and reads them
 *	  back in the server (the layout: entry_format.h).
 *
 *	  Rows keep PostgreSQL's own tuple data layout, so a hit rebuilds each
 *	  row with one header write and one memcpy, without touching a value.
 *	  That layout is only meaningful to a server of the same major version
 *	  and architecture with the same type and relation OIDs: the header's
 *	  version, architecture tag and system identifier (a primary and its
 *	  physical replicas share it) let a reader check.
 *
 *	  What Valkey holds, anyone who can write to Valkey may have written.  An
 *	  entry sent there is sealed: an expiry and an HMAC-SHA256 under the key
 *	  of secret.c, which only the servers meant to share entries hold.  A
 *	  reader takes an entry from Valkey only if its seal is good and it has
 *	  not expired, and then still checks every row (entry_check.c) before
 *	  reading one.  The local store is this server's own memory: its entries
 *	  are neither sealed nor checked again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/tupdesc.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "codec.h"
#include "entry_check.h"
#include "entry_format.h"
#include "secret.h"

static inline void
put_u16(StringInfo buf, uint16 v)
{
	appendBinaryStringInfo(buf, (char *) &v, sizeof(v));
}

static inline void
put_u32(StringInfo buf, uint32 v)
{
	appendBinaryStringInfo(buf, (char *) &v, sizeof(v));
}

static inline EntryHeader *
encoder_header(StampedeEncoder *enc)
{
	return (EntryHeader *) enc->buf.data;
}

/*
 * Start an entry: everything but the rows is known before the query runs.
 */
void
StampedeEncoderInit(StampedeEncoder *enc, Size limit,
					const char *key, int keylen, uint16 flags,
					const StampedeEntryId *id, uint64 fill_lsn,
					TupleDesc desc, const StampedeReadSet *reads)
{
	EntryHeader header = {0};
	ListCell   *lc;

	Assert(keylen <= PG_UINT16_MAX);
	enc->natts = desc->natts;
	enc->nrows = 0;
	enc->limit = Min(limit, MaxAllocSize - 1);
	enc->too_large = false;

	initStringInfo(&enc->buf);
	appendBinaryStringInfo(&enc->buf, (char *) &header, sizeof(header));
	appendBinaryStringInfo(&enc->buf, key, keylen);

	header.attrs_offset = enc->buf.len;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);
		uint16		namelen = strlen(name);

		put_u32(&enc->buf, att->atttypid);
		put_u32(&enc->buf, (uint32) att->atttypmod);
		put_u16(&enc->buf, namelen);
		appendBinaryStringInfo(&enc->buf, name, namelen);
	}

	header.rels_offset = enc->buf.len;
	foreach(lc, reads ? reads->rels : NIL)
	{
		StampedeReadRel *rel = lfirst(lc);
		ListCell   *lc2;

		put_u32(&enc->buf, rel->relid);
		put_u32(&enc->buf, rel->checkas);
		put_u32(&enc->buf, rel->modes);
		put_u16(&enc->buf, list_length(rel->cols));
		foreach(lc2, rel->cols)
			put_u16(&enc->buf, (uint16) (int16) lfirst_int(lc2));
	}

	header.funcs_offset = enc->buf.len;
	foreach(lc, reads ? reads->funcs : NIL)
		put_u32(&enc->buf, lfirst_oid(lc));

	/* Rows start aligned so that a reader may copy them in one go. */
	while (enc->buf.len % MAXIMUM_ALIGNOF != 0)
		appendStringInfoChar(&enc->buf, '\0');
	header.rows_offset = enc->buf.len;

	header.magic = STAMPEDE_MAGIC;
	header.format_version = STAMPEDE_FORMAT_VERSION;
	header.flags = flags;
	header.server_major = PG_VERSION_NUM / 10000;
	header.arch = STAMPEDE_ARCH_TAG;
	header.natts = desc->natts;
	header.keylen = keylen;
	header.nrels = reads ? list_length(reads->rels) : 0;
	header.nfuncs = reads ? list_length(reads->funcs) : 0;
	header.dbid = MyDatabaseId;
	header.fill_lsn = fill_lsn;
	header.id = *id;
	memcpy(enc->buf.data, &header, sizeof(header));

	if ((Size) enc->buf.len > enc->limit)
		enc->too_large = true;
}

/*
 * Append one row.  The tuple must have exactly the descriptor's attributes
 * and no out-of-line (TOASTed) values: the caller flattens it first, since a
 * TOAST pointer would outlive the row it points to.
 */
void
StampedeEncoderAddRow(StampedeEncoder *enc, TupleDesc desc, HeapTuple tuple)
{
	HeapTupleHeader th = tuple->t_data;
	bool		hasnull = HeapTupleHasNulls(tuple);
	uint32		datalen = tuple->t_len - th->t_hoff;
	Size		bitmaplen = hasnull ? BITMAPLEN(enc->natts) : 0;
	uint8		flags;

	Assert(HeapTupleHeaderGetNatts(th) == enc->natts);
	Assert(!HeapTupleHasExternal(tuple));

	enc->nrows++;
	if (enc->too_large)
		return;
	if ((Size) enc->buf.len + ROW_HEADER_SIZE + bitmaplen + datalen > enc->limit)
	{
		/* Give the memory back now: the rows still go to the caller. */
		enc->too_large = true;
		pfree(enc->buf.data);
		enc->buf.data = NULL;
		return;
	}

	flags = (hasnull ? ROW_HASNULL : 0) |
		(HeapTupleHasVarWidth(tuple) ? ROW_HASVARWIDTH : 0);
	put_u32(&enc->buf, datalen);
	appendStringInfoChar(&enc->buf, (char) flags);
	if (hasnull)
		appendBinaryStringInfo(&enc->buf, (char *) th->t_bits, bitmaplen);
	appendBinaryStringInfo(&enc->buf, (char *) th + th->t_hoff, datalen);
}

/*
 * Close the entry.  Returns false when it grew past its limit and was
 * dropped; then nothing is handed back.
 */
bool
StampedeEncoderFinish(StampedeEncoder *enc, char **data, Size *len)
{
	EntryHeader *header;

	if (enc->too_large)
	{
		if (enc->buf.data)
			pfree(enc->buf.data);
		enc->buf.data = NULL;
		return false;
	}
	header = encoder_header(enc);
	header->total_len = enc->buf.len;
	header->nrows = enc->nrows;
	header->system_id = GetSystemIdentifier();
	*data = enc->buf.data;
	*len = enc->buf.len;
	return true;
}

/*
 * Check an entry's header and sections and point into them (see
 * StampedeEntryParseBytes).  An entry another cluster wrote is parsed, and
 * marked foreign: its OIDs are that cluster's.
 */
bool
StampedeEntryParse(const char *data, Size len, StampedeEntry *entry)
{
	if (!StampedeEntryParseBytes(data, len, entry))
		return false;
	entry->foreign = entry->system_id != GetSystemIdentifier();
	return true;
}

/* The HMAC of an entry, its header's mac field counted as zeros. */
static bool
entry_mac(const char *data, Size len, uint8 *mac)
{
	EntryHeader header;

	memcpy(&header, data, sizeof(header));
	memset(header.mac, 0, sizeof(header.mac));
	return StampedeSecretMac((const char *) &header, sizeof(header),
							 data + sizeof(header), len - sizeof(header), mac);
}

/*
 * Make a finished entry fit to send to Valkey: no reader takes it after
 * expires_at, nor if anything in it changed.  False when it cannot be
 * sealed (no secret): then it must not be sent.
 */
bool
StampedeEntrySeal(char *data, Size len, int64 expires_at)
{
	EntryHeader *header = (EntryHeader *) data;
	uint8		mac[STAMPEDE_MAC_LEN];

	Assert(len >= sizeof(EntryHeader));
	header->expires_at = expires_at;
	memset(header->mac, 0, sizeof(header->mac));
	if (!entry_mac(data, len, mac))
		return false;
	memcpy(header->mac, mac, sizeof(mac));
	return true;
}

/*
 * Did a server holding our secret write these bytes, as they are, and is
 * the entry still in date?  For bytes read from Valkey, before anything
 * else reads them.  Compared in constant time: the bytes are a stranger's.
 * Valkey drops an entry at its ttl too, an instant after the expiry it
 * carries: an expired entry is a plain miss.
 */
StampedeSeal
StampedeEntrySealCheck(const char *data, Size len)
{
	EntryHeader header;
	uint8		mac[STAMPEDE_MAC_LEN];
	uint8		diff = 0;

	if (len < sizeof(EntryHeader))
		return STAMPEDE_SEAL_BAD;
	memcpy(&header, data, sizeof(header));
	if (!entry_mac(data, len, mac))
		return STAMPEDE_SEAL_BAD;
	for (int i = 0; i < STAMPEDE_MAC_LEN; i++)
		diff |= mac[i] ^ header.mac[i];
	if (diff != 0)
		return STAMPEDE_SEAL_BAD;
	return StampedeEntryExpired(data, len) ? STAMPEDE_SEAL_EXPIRED : STAMPEDE_SEAL_GOOD;
}

/* Has a sealed entry's expiry passed?  (Its seal already known good.) */
bool
StampedeEntryExpired(const char *data, Size len)
{
	EntryHeader header;

	if (len < sizeof(EntryHeader))
		return true;
	memcpy(&header, data, sizeof(header));
	return header.expires_at <= GetCurrentTimestamp();
}

/*
 * Are the rows of an entry whole for a reader whose row type is desc (the
 * types of the entry's columns, as this server's catalog lays them out)?
 */
bool
StampedeEntryRowsValidFor(const StampedeEntry *entry, TupleDesc desc)
{
	StampedeColumnLayout *columns;
	bool		valid;

	if (desc->natts != entry->natts)
		return false;
	columns = palloc(sizeof(StampedeColumnLayout) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		columns[i].len = TupleDescAttr(desc, i)->attlen;
		columns[i].align = TupleDescAttr(desc, i)->attalign;
	}
	valid = StampedeEntryRowsValid(entry, columns);
	pfree(columns);
	return valid;
}

bool
StampedeEntryKeyEquals(const StampedeEntry *entry, const char *key, int keylen)
{
	return entry->keylen == keylen && memcmp(entry->key, key, keylen) == 0;
}

/* The relations and functions the entry's query read, as lists. */
void
StampedeEntryReadSet(const StampedeEntry *entry, StampedeReadSet *reads)
{
	const char *p = entry->rels;

	memset(reads, 0, sizeof(*reads));
	reads->any_change = (entry->flags & STAMPEDE_ENTRY_ANY_CHANGE) != 0;
	reads->session_only = (entry->flags & STAMPEDE_ENTRY_SESSION) != 0;
	for (uint32 i = 0; i < entry->nrels; i++)
	{
		StampedeReadRel *rel = palloc(sizeof(StampedeReadRel));
		uint16		ncols = entry_get_u16(p + 12);

		rel->relid = entry_get_u32(p);
		rel->checkas = entry_get_u32(p + 4);
		rel->modes = entry_get_u32(p + 8);
		rel->cols = NIL;
		for (int c = 0; c < ncols; c++)
			rel->cols = lappend_int(rel->cols, (int16) entry_get_u16(p + REL_HEADER_SIZE + 2 * c));
		reads->rels = lappend(reads->rels, rel);
		p += REL_HEADER_SIZE + 2 * ncols;
	}
	for (uint32 i = 0; i < entry->nfuncs; i++)
		reads->funcs = lappend_oid(reads->funcs, entry_get_u32(entry->funcs + i * sizeof(Oid)));
}

/*
 * Is a type's binary value the same on every cluster of this major version
 * and architecture?  Built-in base types and their arrays are, but not
 * reg* types (their OID values name another cluster's objects) nor record
 * and composites (their values carry type OIDs).
 */
static bool
type_is_portable(Oid typid)
{
	Oid			elem = get_element_type(typid);

	if (OidIsValid(elem))
		typid = elem;
	if (typid >= FirstGenbkiObjectId || get_typtype(typid) != TYPTYPE_BASE)
		return false;
	switch (typid)
	{
		case REGPROCOID:
		case REGPROCEDUREOID:
		case REGOPEROID:
		case REGOPERATOROID:
		case REGCLASSOID:
		case REGTYPEOID:
		case REGROLEOID:
		case REGNAMESPACEOID:
		case REGCONFIGOID:
		case REGDICTIONARYOID:
#ifdef REGCOLLATIONOID
		case REGCOLLATIONOID:
#endif
			return false;
	}
	return true;
}

/* Can another cluster read the entry's rows as this one would? */
bool
StampedeEntryTypesPortable(const StampedeEntry *entry)
{
	const char *p = entry->attrs;

	for (int i = 0; i < entry->natts; i++)
	{
		if (!type_is_portable(entry_get_u32(p)))
			return false;
		p += ATTR_HEADER_SIZE + entry_get_u16(p + 8);
	}
	return true;
}

/*
 * Is the entry's row type exactly what the caller expects?  Same rule as
 * convert_tuples_by_position: same count, same types, same typmod unless
 * the caller's is unspecified.  This is the hit path's check, done without
 * building a descriptor.
 */
bool
StampedeEntryMatchesDesc(const StampedeEntry *entry, TupleDesc desc)
{
	const char *p = entry->attrs;

	if (desc->natts != entry->natts)
		return false;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Oid			typid = entry_get_u32(p);
		int32		typmod = (int32) entry_get_u32(p + 4);

		if (att->attisdropped || att->atttypid != typid ||
			(att->atttypmod >= 0 && att->atttypmod != typmod))
			return false;
		p += ATTR_HEADER_SIZE + entry_get_u16(p + 8);
	}
	return true;
}

/*
 * The entry's row descriptor, or NULL when one of its types no longer
 * exists (the entry then describes rows nobody can read: a miss).
 */
TupleDesc
StampedeEntryTupleDesc(const StampedeEntry *entry)
{
	TupleDesc	desc = CreateTemplateTupleDesc(entry->natts);
	const char *p = entry->attrs;

	for (int i = 0; i < entry->natts; i++)
	{
		Oid			typid = entry_get_u32(p);
		int32		typmod = (int32) entry_get_u32(p + 4);
		uint16		namelen = Min(entry_get_u16(p + 8), NAMEDATALEN - 1);
		NameData	name;

		if (!SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(typid)))
			return NULL;
		memset(&name, 0, sizeof(name));
		memcpy(NameStr(name), p + ATTR_HEADER_SIZE, namelen);
		TupleDescInitEntry(desc, i + 1, NameStr(name), typid, typmod, 0);
		p += ATTR_HEADER_SIZE + entry_get_u16(p + 8);
	}
	return BlessTupleDesc(desc);
}

/*
 * One stored row, seen as a tuple slot that can do exactly one thing: make a
 * MinimalTuple copy of itself.  That is all tuplestore_puttupleslot asks of a
 * slot, so a hit builds each row once, straight into the tuplestore's
 * memory: header written there, data copied there, no value touched.
 */
typedef struct RowSlot
{
	TupleTableSlot base;
	int			natts;
	uint16		infomask;
	const char *bitmap;
	Size		nullbytes;
	const char *data;
	uint32		datalen;
} RowSlot;

static inline Size
row_minimal_tuple_size(const RowSlot *row)
{
	return MAXALIGN(SizeofMinimalTupleHeader + row->nullbytes) + row->datalen;
}

/* Write a row as a MinimalTuple at mtup (MAXALIGNed, row_minimal_tuple_size). */
static void
row_write_minimal_tuple(const RowSlot *row, MinimalTuple mtup)
{
	Size		hoff = MAXALIGN(SizeofMinimalTupleHeader + row->nullbytes);

	/*
	 * The same header heap_form_minimal_tuple would write.  t_infomask2 is
	 * assigned, not read-modify-written as HeapTupleHeaderSetNatts does: a
	 * read right after the memset stalls the store buffer on every row.
	 */
	memset(mtup, 0, hoff);
	mtup->t_len = hoff + row->datalen;
	mtup->t_infomask2 = (uint16) row->natts;
	mtup->t_infomask = row->infomask;
	mtup->t_hoff = hoff + MINIMAL_TUPLE_OFFSET;
	memcpy(mtup->t_bits, row->bitmap, row->nullbytes);
	memcpy((char *) mtup + hoff, row->data, row->datalen);
}

static MinimalTuple
row_to_minimal_tuple(const RowSlot *row)
{
	MinimalTuple mtup = palloc(row_minimal_tuple_size(row));

	row_write_minimal_tuple(row, mtup);
	return mtup;
}

/*
 * Read the row at *p into row and move *p past it.  False when the bytes do
 * not hold a whole row.
 */
static bool
next_row(const StampedeEntry *entry, const char **p, RowSlot *row)
{
	const char *end = entry->data + entry->len;
	uint8		flags;
	Size		left;

	if (end - *p < ROW_HEADER_SIZE)
		return false;
	row->natts = entry->natts;
	row->datalen = entry_get_u32(*p);
	flags = (uint8) (*p)[4];
	row->nullbytes = (flags & ROW_HASNULL) ? BITMAPLEN(entry->natts) : 0;
	left = end - *p - ROW_HEADER_SIZE;
	if (left < row->nullbytes || left - row->nullbytes < row->datalen)
		return false;
	row->infomask = ((flags & ROW_HASNULL) ? HEAP_HASNULL : 0) |
		((flags & ROW_HASVARWIDTH) ? HEAP_HASVARWIDTH : 0);
	row->bitmap = *p + ROW_HEADER_SIZE;
	row->data = row->bitmap + row->nullbytes;
	*p = row->data + row->datalen;
	return true;
}

static MinimalTuple
rowslot_copy_minimal_tuple(TupleTableSlot *slot)
{
	return row_to_minimal_tuple((RowSlot *) slot);
}

static void
rowslot_noop(TupleTableSlot *slot)
{
}

static void
rowslot_clear(TupleTableSlot *slot)
{
	slot->tts_nvalid = 0;
	slot->tts_flags |= TTS_FLAG_EMPTY;
}

static void
rowslot_unsupported(void)
{
	elog(ERROR, "a stampede row slot only copies itself into a tuplestore");
}

static void
rowslot_getsomeattrs(TupleTableSlot *slot, int natts)
{
	rowslot_unsupported();
}

static Datum
rowslot_getsysattr(TupleTableSlot *slot, int attnum, bool *isnull)
{
	rowslot_unsupported();
	return (Datum) 0;
}

static void
rowslot_copyslot(TupleTableSlot *dstslot, TupleTableSlot *srcslot)
{
	rowslot_unsupported();
}

static HeapTuple
rowslot_copy_heap_tuple(TupleTableSlot *slot)
{
	rowslot_unsupported();
	return NULL;
}

static const TupleTableSlotOps TTSOpsStampedeRow = {
	.base_slot_size = sizeof(RowSlot),
	.init = rowslot_noop,
	.release = rowslot_noop,
	.clear = rowslot_clear,
	.getsomeattrs = rowslot_getsomeattrs,
	.getsysattr = rowslot_getsysattr,
	.materialize = rowslot_noop,
	.copyslot = rowslot_copyslot,
	.get_heap_tuple = NULL,
	.get_minimal_tuple = NULL,
	.copy_heap_tuple = rowslot_copy_heap_tuple,
	.copy_minimal_tuple = rowslot_copy_minimal_tuple,
};

/*
 * Put the entry's rows in the tuplestore; with a conversion map (the caller's
 * row type has dropped columns), convert each.  False if the rows are
 * damaged: rows already put stay there, so the caller must then discard the
 * tuplestore.
 */
bool
StampedeEntryToTuplestore(const StampedeEntry *entry, TupleDesc outdesc,
						  TupleConversionMap *map, Tuplestorestate *tupstore)
{
	const char *p = entry->rows;
	TupleTableSlot *slot = MakeSingleTupleTableSlot(outdesc, &TTSOpsStampedeRow);
	RowSlot    *row = (RowSlot *) slot;
	bool		ok = true;

	for (uint64 i = 0; i < entry->nrows; i++)
	{
		if (!(ok = next_row(entry, &p, row)))
			break;
		if (map == NULL)
		{
			slot->tts_flags &= ~TTS_FLAG_EMPTY;
			tuplestore_puttupleslot(tupstore, slot);
		}
		else
		{
			/* Converting deforms the row, which needs it aligned. */
			MinimalTuple mtup = row_to_minimal_tuple(row);
			HeapTuple	htup = heap_tuple_from_minimal_tuple(mtup);
			HeapTuple	converted = execute_attr_map_tuple(htup, map);

			tuplestore_puttuple(tupstore, converted);
			heap_freetuple(converted);
			heap_freetuple(htup);
			pfree(mtup);
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	return ok && p == entry->data + entry->len;
}

/*
 * The entry's rows as MinimalTuples, each MAXALIGNed, one after the other in
 * one allocation (a reader steps from one to the next by MAXALIGN(t_len)),
 * for a reader that walks them itself: the custom scan.  NULL if the rows
 * are damaged.
 */
char *
StampedeEntryMinimalTuples(const StampedeEntry *entry)
{
	const char *p = entry->rows;
	const char *end = entry->data + entry->len;
	RowSlot		row;
	char	   *block;
	char	   *next;

	/*
	 * A row grows by its longer header and by alignment, at most:
	 * MAXALIGN(MAXALIGN(15 + bitmap) + data) <= 5 + bitmap + data + 24.
	 */
	block = next = MemoryContextAllocHuge(CurrentMemoryContext,
										  Max((Size) (end - p) + entry->nrows * 24, 1));
	for (uint64 i = 0; i < entry->nrows; i++)
	{
		if (!next_row(entry, &p, &row))
		{
			pfree(block);
			return NULL;
		}
		row_write_minimal_tuple(&row, (MinimalTuple) next);
		next += MAXALIGN(row_minimal_tuple_size(&row));
	}
	if (p != end)
	{
		pfree(block);
		return NULL;
	}
	return block;
}
