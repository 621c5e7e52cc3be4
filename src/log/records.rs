//! Records inside a v2 RecordBatch: decompression (every Kafka codec, with a cap against bombs), record
//! parsing, and re-encoding of a batch with fewer records or another codec. Compacted topics (keys, the
//! cleaner), timestamp checks of compressed batches and topics with a `compression.type` codec need this: the
//! produce and fetch paths never look inside a batch otherwise.
//!
//! Record layout: length varint, attributes i8, timestampDelta varlong, offsetDelta varint, key (varint
//! length, -1 = null), value (same), header count varint, headers (key and value, varint lengths).

use std::io::Read;

use crate::log::record_batch::{CRC_START, LOG_OVERHEAD, RECORD_BATCH_OVERHEAD, RecordBatchHeader};
use crate::log::varint::{self, put_nullable_bytes, put_varlong};

/// Largest decompressed batch accepted. A batch claiming more is refused (compression bomb): at produce time
/// on a compacted topic, and by the cleaner, which then keeps the batch as it is.
pub const MAX_DECOMPRESSED_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Kafka's default zstd level (`compression.zstd.level`).
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;
/// Attribute bit 6 (KIP-534): the batch's baseTimestamp holds the delete horizon of its tombstones.
pub const DELETE_HORIZON_FLAG: i16 = 0x40;
/// xerial snappy-java's stream header (magic, then version and compatible version, 4 bytes each).
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Why the records of a batch cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordsError {
    #[error("unknown compression codec {0}")]
    UnknownCodec(u8),
    #[error("batch decompresses to more than {MAX_DECOMPRESSED_BATCH_BYTES} bytes")]
    TooLarge,
    #[error("cannot decompress batch: {0}")]
    Decompress(String),
    #[error("malformed record: {0}")]
    Malformed(String),
}

/// Kafka's batch compression codecs (attributes bits 0-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    /// Snappy, remembering whether the producer used xerial framing (Java) or raw blocks (librdkafka).
    Snappy {
        xerial: bool,
    },
    Lz4,
    Zstd,
}

impl Codec {
    pub fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy { .. } => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }
}

/// Reads at most `cap` bytes from `r`; more is a bomb.
fn read_capped(r: impl Read, cap: usize) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    r.take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| RecordsError::Decompress(e.to_string()))?;
    if out.len() > cap {
        return Err(RecordsError::TooLarge);
    }
    Ok(out)
}

fn snappy_raw(block: &[u8], out: &mut Vec<u8>, cap: usize) -> Result<(), RecordsError> {
    let len =
        snap::raw::decompress_len(block).map_err(|e| RecordsError::Decompress(e.to_string()))?;
    if out.len().saturating_add(len) > cap {
        return Err(RecordsError::TooLarge);
    }
    let start = out.len();
    out.resize(start + len, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| RecordsError::Decompress(e.to_string()))?;
    Ok(())
}

/// Decompresses a batch payload (the bytes after the 61-byte header), never producing more than `cap` bytes.
/// Returns the codec as found (snappy framing included) with the records.
pub fn decompress(
    codec_id: u8,
    payload: &[u8],
    cap: usize,
) -> Result<(Codec, Vec<u8>), RecordsError> {
    match codec_id {
        0 => {
            if payload.len() > cap {
                return Err(RecordsError::TooLarge);
            }
            Ok((Codec::None, payload.to_vec()))
        }
        1 => Ok((
            Codec::Gzip,
            read_capped(flate2::read::MultiGzDecoder::new(payload), cap)?,
        )),
        2 => {
            let mut out = Vec::new();
            if payload.starts_with(XERIAL_MAGIC) {
                let mut rest = payload.get(XERIAL_HEADER_LEN..).ok_or_else(|| {
                    RecordsError::Decompress("truncated xerial snappy header".into())
                })?;
                while !rest.is_empty() {
                    let (len, tail) = rest.split_at_checked(4).ok_or_else(|| {
                        RecordsError::Decompress("truncated xerial snappy block length".into())
                    })?;
                    let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
                    let (block, tail) = tail.split_at_checked(len).ok_or_else(|| {
                        RecordsError::Decompress("truncated xerial snappy block".into())
                    })?;
                    snappy_raw(block, &mut out, cap)?;
                    rest = tail;
                }
                Ok((Codec::Snappy { xerial: true }, out))
            } else {
                snappy_raw(payload, &mut out, cap)?;
                Ok((Codec::Snappy { xerial: false }, out))
            }
        }
        3 => Ok((
            Codec::Lz4,
            read_capped(lz4_flex::frame::FrameDecoder::new(payload), cap)?,
        )),
        4 => {
            let decoder = zstd::stream::read::Decoder::new(payload)
                .map_err(|e| RecordsError::Decompress(e.to_string()))?;
            Ok((Codec::Zstd, read_capped(decoder, cap)?))
        }
        other => Err(RecordsError::UnknownCodec(other)),
    }
}

/// Compresses record bytes with `codec` at its default level (the inverse of [`decompress`]).
pub fn compress(codec: Codec, records: &[u8]) -> Result<Vec<u8>, RecordsError> {
    compress_at(codec, None, records)
}

/// Compresses record bytes with `codec` at a KIP-390 `level` (None: the codec's default; gzip's -1 is its
/// default too). Levels are validated with the topic config. LZ4 has one level here: lz4_flex, the
/// pure-Rust encoder brook uses, has no high-compression mode, so an LZ4 level does not change the output.
pub fn compress_at(
    codec: Codec,
    level: Option<i32>,
    records: &[u8],
) -> Result<Vec<u8>, RecordsError> {
    let fail = |e: std::io::Error| RecordsError::Decompress(format!("compression failed: {e}"));
    match codec {
        Codec::None => Ok(records.to_vec()),
        Codec::Gzip => {
            use std::io::Write;
            let level = match level.and_then(|l| u32::try_from(l).ok()) {
                Some(l) => flate2::Compression::new(l.min(9)),
                None => flate2::Compression::default(),
            };
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), level);
            enc.write_all(records).map_err(fail)?;
            enc.finish().map_err(fail)
        }
        Codec::Snappy { xerial: false } => snap::raw::Encoder::new()
            .compress_vec(records)
            .map_err(|e| RecordsError::Decompress(e.to_string())),
        Codec::Snappy { xerial: true } => {
            // snappy-java's default block size.
            const BLOCK: usize = 32 * 1024;
            let mut out = Vec::with_capacity(records.len() / 2 + XERIAL_HEADER_LEN);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            for chunk in records.chunks(BLOCK) {
                let block = enc
                    .compress_vec(chunk)
                    .map_err(|e| RecordsError::Decompress(e.to_string()))?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
        Codec::Lz4 => {
            use std::io::Write;
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(records).map_err(fail)?;
            enc.finish()
                .map_err(|e| RecordsError::Decompress(format!("compression failed: {e}")))
        }
        Codec::Zstd => {
            zstd::bulk::compress(records, level.unwrap_or(ZSTD_DEFAULT_LEVEL)).map_err(fail)
        }
    }
}

/// One record of a batch, borrowing from the decompressed records buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The header count and headers, verbatim.
    pub headers: &'a [u8],
    /// The whole record including its length prefix, for copying unchanged.
    pub raw: &'a [u8],
}

fn malformed(e: varint::VarintError) -> RecordsError {
    RecordsError::Malformed(e.to_string())
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn varlong(&mut self) -> Result<i64, RecordsError> {
        varint::read_varlong(self.buf, &mut self.pos).map_err(malformed)
    }
    #[inline]
    fn varint(&mut self) -> Result<i32, RecordsError> {
        varint::read_varint(self.buf, &mut self.pos).map_err(malformed)
    }
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordsError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| RecordsError::Malformed(format!("{n} bytes past the end")))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    #[inline]
    fn nullable(&mut self) -> Result<Option<&'a [u8]>, RecordsError> {
        let n = self.varint()?;
        if n < 0 {
            return Ok(None);
        }
        self.take(n as usize).map(Some)
    }
}

/// Parses `count` records from decompressed record bytes. The count comes from the (CRC-checked) header,
/// but nothing is preallocated from it.
pub fn parse_records(buf: &[u8], count: i32) -> Result<Vec<Record<'_>>, RecordsError> {
    let mut out = Vec::new();
    for_each_record(buf, count, |_, r| out.push(r))?;
    Ok(out)
}

/// Calls `f(index, record)` for each of the `count` records in decompressed record bytes, without
/// collecting them; fails on a malformed record or on bytes left after the last one.
pub fn for_each_record<'a>(
    buf: &'a [u8],
    count: i32,
    mut f: impl FnMut(i32, Record<'a>),
) -> Result<(), RecordsError> {
    let count = usize::try_from(count)
        .map_err(|_| RecordsError::Malformed(format!("record count {count}")))?;
    let mut c = Cursor { buf, pos: 0 };
    for index in 0..count {
        let start = c.pos;
        let len = usize::try_from(c.varint()?)
            .map_err(|_| RecordsError::Malformed("negative record length".into()))?;
        let body = c.take(len)?;
        let mut r = Cursor { buf: body, pos: 0 };
        let attributes = r.take(1)?[0] as i8;
        let timestamp_delta = r.varlong()?;
        let offset_delta = r.varint()?;
        let key = r.nullable()?;
        let value = r.nullable()?;
        let headers = &body[r.pos..];
        // `index < count`, and `count` came from an i32.
        f(
            index as i32,
            Record {
                attributes,
                timestamp_delta,
                offset_delta,
                key,
                value,
                headers,
                raw: &buf[start..c.pos],
            },
        );
    }
    if c.pos != buf.len() {
        return Err(RecordsError::Malformed(format!(
            "{} bytes after the last record",
            buf.len() - c.pos
        )));
    }
    Ok(())
}

/// Encodes a record with a new timestamp delta (used when the batch's base timestamp changes).
pub fn encode_record(out: &mut Vec<u8>, r: &Record<'_>, timestamp_delta: i64) {
    let mut body = Vec::with_capacity(r.raw.len() + 8);
    body.push(r.attributes as u8);
    put_varlong(&mut body, timestamp_delta);
    put_varlong(&mut body, i64::from(r.offset_delta));
    put_nullable_bytes(&mut body, r.key);
    put_nullable_bytes(&mut body, r.value);
    body.extend_from_slice(r.headers);
    put_varlong(out, body.len() as i64);
    out.extend_from_slice(&body);
}

/// Builds a batch from an original header and new (uncompressed) record bytes: keeps baseOffset,
/// lastOffsetDelta (so offsets, gaps included, are unchanged), producer fields and maxTimestamp; sets the
/// record count, attributes and base timestamp given, compresses with `codec`, and computes the CRC.
pub fn build_batch(
    original: &RecordBatchHeader<'_>,
    attributes: i16,
    base_timestamp: i64,
    codec: Codec,
    record_count: i32,
    records: &[u8],
) -> Result<Vec<u8>, RecordsError> {
    let payload = compress(codec, records)?;
    let total = RECORD_BATCH_OVERHEAD + payload.len();
    let batch_length = i32::try_from(total - LOG_OVERHEAD)
        .map_err(|_| RecordsError::Malformed("rewritten batch too large".into()))?;
    let attributes = (attributes & !0x07) | i16::from(codec.id());
    let mut b = Vec::with_capacity(total);
    b.extend_from_slice(&original.base_offset().to_be_bytes());
    b.extend_from_slice(&batch_length.to_be_bytes());
    b.extend_from_slice(&original.partition_leader_epoch().to_be_bytes());
    b.push(original.magic() as u8);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&original.last_offset_delta().to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&original.max_timestamp().to_be_bytes());
    b.extend_from_slice(&original.producer_id().to_be_bytes());
    b.extend_from_slice(&original.producer_epoch().to_be_bytes());
    b.extend_from_slice(&original.base_sequence().to_be_bytes());
    b.extend_from_slice(&record_count.to_be_bytes());
    b.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(b)
}

/// Walks the records of one batch (`batch` holds at least the whole batch), decompressing a compressed one
/// into at most `cap` bytes, and returns the first `(offset delta, timestamp)` that `wanted` accepts, with
/// timestamps as consumers read them ([`RecordBatchHeader::record_timestamp`]). Nothing is allocated from a
/// count read off the batch.
pub fn find_record_timestamp(
    batch: &[u8],
    cap: usize,
    mut wanted: impl FnMut(i32, i64) -> bool,
) -> Result<Option<(i32, i64)>, RecordsError> {
    let h = RecordBatchHeader::parse(batch).map_err(|e| RecordsError::Malformed(e.to_string()))?;
    let end = h
        .total_size()
        .filter(|&size| size <= batch.len())
        .ok_or_else(|| RecordsError::Malformed("batch length out of range".into()))?;
    let payload = &batch[RECORD_BATCH_OVERHEAD..end];
    let decompressed;
    let records = if h.compression_type() == 0 {
        payload
    } else {
        decompressed = decompress(h.compression_type(), payload, cap)?.1;
        &decompressed[..]
    };
    let mut found = None;
    for_each_record(records, h.record_count(), |_, r| {
        let timestamp = h.record_timestamp(r.timestamp_delta);
        if found.is_none() && wanted(r.offset_delta, timestamp) {
            found = Some((r.offset_delta, timestamp));
        }
    })?;
    Ok(found)
}

/// Re-encodes a batch's records with `codec` at `level`, as Kafka's LogValidator does when a topic's
/// `compression.type` differs from the batch's codec. The record bytes are kept as they are, so offsets,
/// timestamps, keys, values and headers are unchanged, and so are the header's fields (base offset, base
/// and max timestamp, producer id, epoch and sequence, transactional bit); only the codec bits, the batch
/// length and the CRC change. Decompression is capped like every other ([`MAX_DECOMPRESSED_BATCH_BYTES`]);
/// the records are parsed first, so a malformed payload is refused rather than sealed under a new CRC.
pub fn recompress_batch(
    batch: &[u8],
    codec: Codec,
    level: Option<i32>,
) -> Result<Vec<u8>, RecordsError> {
    let h = RecordBatchHeader::parse(batch).map_err(|e| RecordsError::Malformed(e.to_string()))?;
    let end = h
        .total_size()
        .filter(|s| *s <= batch.len())
        .ok_or_else(|| RecordsError::Malformed("batch length out of range".into()))?;
    let (_, records) = decompress(
        h.compression_type(),
        &batch[RECORD_BATCH_OVERHEAD..end],
        MAX_DECOMPRESSED_BATCH_BYTES,
    )?;
    for_each_record(&records, h.record_count(), |_, _| {})?;
    let payload = compress_at(codec, level, &records)?;
    let total = RECORD_BATCH_OVERHEAD + payload.len();
    let batch_length = i32::try_from(total - LOG_OVERHEAD)
        .map_err(|_| RecordsError::Malformed("recompressed batch too large".into()))?;
    let attributes = (h.attributes() & !0x07) | i16::from(codec.id());
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&batch[..RECORD_BATCH_OVERHEAD]);
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Builds v2 batches with keys in any codec, for tests of compaction.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::log::batch_builder::BatchBuilder;

    /// A test record: key and value, each nullable.
    pub(crate) type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

    /// One batch at `base_offset` with a record per `(key, value)` (offset deltas 0..n), timestamps `ts`.
    pub(crate) fn keyed_batch(
        base_offset: i64,
        records: &[KeyValue<'_>],
        ts: i64,
        codec: Codec,
    ) -> Vec<u8> {
        let mut b = BatchBuilder::new()
            .base_offset(base_offset)
            .partition_leader_epoch(0);
        for (k, v) in records {
            b.append(ts, *k, *v, &[]).unwrap();
        }
        let plain = b.build().unwrap();
        if codec == Codec::None {
            return plain.to_vec();
        }
        recompress_batch(&plain, codec, None).unwrap()
    }

    pub(crate) const ALL_CODECS: [Codec; 6] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy { xerial: false },
        Codec::Snappy { xerial: true },
        Codec::Lz4,
        Codec::Zstd,
    ];
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::log::record_batch::validate_batches;

    #[test]
    fn every_codec_round_trips_records() {
        for codec in ALL_CODECS {
            let b = keyed_batch(
                5,
                &[(Some(b"k1"), Some(b"v1")), (Some(b"k2"), None)],
                1000,
                codec,
            );
            validate_batches(&b, u32::MAX).unwrap();
            let h = RecordBatchHeader::parse(&b).unwrap();
            assert_eq!(h.compression_type(), codec.id());
            let (found, raw) =
                decompress(h.compression_type(), &b[RECORD_BATCH_OVERHEAD..], 1 << 20).unwrap();
            assert_eq!(found, codec);
            let recs = parse_records(&raw, h.record_count()).unwrap();
            assert_eq!(recs.len(), 2);
            assert_eq!(
                (recs[0].key, recs[0].value),
                (Some(&b"k1"[..]), Some(&b"v1"[..]))
            );
            assert_eq!((recs[1].key, recs[1].value), (Some(&b"k2"[..]), None));
            assert_eq!(recs[1].offset_delta, 1);
        }
    }

    #[test]
    fn decompression_is_capped_against_bombs() {
        let zeros = vec![0u8; 1 << 20];
        for codec in ALL_CODECS {
            let packed = compress(codec, &zeros).unwrap();
            assert_eq!(
                decompress(codec.id(), &packed, 1000).unwrap_err(),
                RecordsError::TooLarge,
                "{codec:?}"
            );
        }
    }

    #[test]
    fn garbage_records_are_errors_not_panics() {
        for junk in [&[0xffu8; 12][..], &[0x02, 0x00], &[]] {
            let _ = parse_records(junk, 3);
            for id in 0..6 {
                let _ = decompress(id, junk, 1 << 20);
            }
        }
    }
}
