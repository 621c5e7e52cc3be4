//! The v2 RecordBatch header (magic 2): a zero-copy view, validation of what producers send, and the two
//! in-place rewrites the broker makes (`baseOffset`, `partitionLeaderEpoch`, both outside the CRC).
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8 (bytes after this field),
//! partitionLeaderEpoch i32 @12, magic i8 @16, crc u32 @17 (CRC-32C of bytes 21..end), attributes i16 @21,
//! lastOffsetDelta i32 @23, baseTimestamp i64 @27, maxTimestamp i64 @35, producerId i64 @43,
//! producerEpoch i16 @51, baseSequence i32 @53, recordCount i32 @57, then the records.

use crate::log::error::LogError;

/// Size of the v2 batch header: the smallest possible batch.
pub const RECORD_BATCH_OVERHEAD: usize = 61;
/// Bytes before the batch that `batchLength` does not count (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// The only batch format this broker stores.
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const PARTITION_LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
/// First byte covered by the CRC.
pub const CRC_START: usize = 21;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

/// A read-only view of a batch header; `parse` guarantees at least [`RECORD_BATCH_OVERHEAD`] bytes.
#[derive(Clone, Copy, Debug)]
pub struct RecordBatchHeader<'a> {
    bytes: &'a [u8],
}

fn be<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes[at..at + N]
        .try_into()
        .expect("invariant: RecordBatchHeader holds at least RECORD_BATCH_OVERHEAD bytes")
}

impl<'a> RecordBatchHeader<'a> {
    /// Views the header at the start of `buf`; fails when fewer than 61 bytes are there.
    pub fn parse(buf: &'a [u8]) -> Result<Self, LogError> {
        if buf.len() < RECORD_BATCH_OVERHEAD {
            return Err(LogError::CorruptMessage(format!(
                "{} bytes cannot hold a {RECORD_BATCH_OVERHEAD}-byte batch header",
                buf.len()
            )));
        }
        Ok(RecordBatchHeader {
            bytes: &buf[..RECORD_BATCH_OVERHEAD],
        })
    }

    pub fn base_offset(&self) -> i64 {
        i64::from_be_bytes(be(self.bytes, BASE_OFFSET_AT))
    }
    pub fn batch_length(&self) -> i32 {
        i32::from_be_bytes(be(self.bytes, BATCH_LENGTH_AT))
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        i32::from_be_bytes(be(self.bytes, PARTITION_LEADER_EPOCH_AT))
    }
    pub fn magic(&self) -> i8 {
        self.bytes[MAGIC_AT] as i8
    }
    pub fn crc(&self) -> u32 {
        u32::from_be_bytes(be(self.bytes, CRC_AT))
    }
    pub fn attributes(&self) -> i16 {
        i16::from_be_bytes(be(self.bytes, ATTRIBUTES_AT))
    }
    pub fn last_offset_delta(&self) -> i32 {
        i32::from_be_bytes(be(self.bytes, LAST_OFFSET_DELTA_AT))
    }
    pub fn base_timestamp(&self) -> i64 {
        i64::from_be_bytes(be(self.bytes, BASE_TIMESTAMP_AT))
    }
    pub fn max_timestamp(&self) -> i64 {
        i64::from_be_bytes(be(self.bytes, MAX_TIMESTAMP_AT))
    }
    pub fn producer_id(&self) -> i64 {
        i64::from_be_bytes(be(self.bytes, PRODUCER_ID_AT))
    }
    pub fn producer_epoch(&self) -> i16 {
        i16::from_be_bytes(be(self.bytes, PRODUCER_EPOCH_AT))
    }
    pub fn base_sequence(&self) -> i32 {
        i32::from_be_bytes(be(self.bytes, BASE_SEQUENCE_AT))
    }
    pub fn record_count(&self) -> i32 {
        i32::from_be_bytes(be(self.bytes, RECORD_COUNT_AT))
    }
    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression_type(&self) -> u8 {
        (self.attributes() & 0x07) as u8
    }
    /// True when the producer asked for LogAppendTime (attribute bit 3).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & 0x08 != 0
    }
    /// A record's timestamp as consumers read it: under LogAppendTime every record has the batch's
    /// `maxTimestamp`, otherwise the base timestamp plus the record's delta.
    pub fn record_timestamp(&self, timestamp_delta: i64) -> i64 {
        if self.is_log_append_time() {
            self.max_timestamp()
        } else {
            self.base_timestamp().saturating_add(timestamp_delta)
        }
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & 0x10 != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & 0x20 != 0
    }
    /// Offset of the last record: `baseOffset + lastOffsetDelta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(i64::from(self.last_offset_delta()))
    }
    /// Offset one past the batch, where the next batch starts.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
    /// Whole size of the batch in bytes, or None when `batchLength` is too small to be a batch.
    pub fn total_size(&self) -> Option<usize> {
        let len = usize::try_from(self.batch_length()).ok()?;
        let total = len + LOG_OVERHEAD;
        (total >= RECORD_BATCH_OVERHEAD).then_some(total)
    }
}

/// What [`validate_batches`] learnt about a produce request's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchesSummary {
    pub batch_count: u32,
    pub record_count: u64,
    /// Largest `maxTimestamp` over all batches.
    pub max_timestamp: i64,
    /// `baseTimestamp` of the first batch.
    pub first_base_timestamp: i64,
    /// Some batch is a control batch (a transaction marker).
    pub has_control_batch: bool,
    /// Some batch has a producer id (idempotent, transactional or a marker): producer state applies.
    pub has_producer_id: bool,
}

/// Checks the parts of a stored batch header that do not need the payload: a usable length and magic 2.
/// Returns the batch's total size. Shared by validation and by recovery scans.
pub(crate) fn check_header(h: &RecordBatchHeader<'_>) -> Result<usize, String> {
    if h.magic() != MAGIC_V2 {
        return Err(format!("unsupported magic {}", h.magic()));
    }
    let size = h
        .total_size()
        .ok_or_else(|| format!("batchLength {} is too small", h.batch_length()))?;
    if h.last_offset_delta() < 0 {
        return Err(format!(
            "negative lastOffsetDelta {}",
            h.last_offset_delta()
        ));
    }
    Ok(size)
}

/// Validates one or more concatenated v2 batches as a producer sent them: magic 2, `batchLength` consistent
/// and within the buffer, each batch no larger than `max_message_bytes`, CRC-32C over attributes..end,
/// `recordCount >= 1` and `== lastOffsetDelta + 1`. Returns a summary; any failure rejects the whole buffer.
pub fn validate_batches(buf: &[u8], max_message_bytes: u32) -> Result<BatchesSummary, LogError> {
    if buf.is_empty() {
        return Err(LogError::CorruptMessage("no record batch".into()));
    }
    let mut summary = BatchesSummary {
        batch_count: 0,
        record_count: 0,
        max_timestamp: i64::MIN,
        first_base_timestamp: 0,
        has_control_batch: false,
        has_producer_id: false,
    };
    let mut pos = 0usize;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let h = RecordBatchHeader::parse(rest).map_err(|_| {
            LogError::CorruptMessage(format!(
                "trailing {} bytes are not a whole batch",
                rest.len()
            ))
        })?;
        let size = check_header(&h)
            .map_err(|e| LogError::CorruptMessage(format!("batch at byte {pos}: {e}")))?;
        if size > rest.len() {
            return Err(LogError::CorruptMessage(format!(
                "batch at byte {pos} claims {size} bytes but only {} remain",
                rest.len()
            )));
        }
        if size > max_message_bytes as usize {
            return Err(LogError::MessageTooLarge {
                size,
                max: max_message_bytes,
            });
        }
        let batch = &rest[..size];
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        if crc != h.crc() {
            return Err(LogError::CorruptMessage(format!(
                "batch at byte {pos}: CRC mismatch (stored {:#010x}, computed {crc:#010x})",
                h.crc()
            )));
        }
        let count = h.record_count();
        if count < 1 || i64::from(count) != i64::from(h.last_offset_delta()) + 1 {
            return Err(LogError::CorruptMessage(format!(
                "batch at byte {pos}: recordCount {count} does not match lastOffsetDelta {}",
                h.last_offset_delta()
            )));
        }
        if summary.batch_count == 0 {
            summary.first_base_timestamp = h.base_timestamp();
        }
        summary.batch_count += 1;
        summary.has_control_batch |= h.is_control();
        summary.has_producer_id |= h.producer_id() >= 0;
        summary.record_count += count as u64;
        summary.max_timestamp = summary.max_timestamp.max(h.max_timestamp());
        pos += size;
    }
    Ok(summary)
}

/// Writes `baseOffset` into the batch at the start of `batch` (outside the CRC, so the CRC stays valid).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes `partitionLeaderEpoch` into the batch at the start of `batch` (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
        .copy_from_slice(&epoch.to_be_bytes());
}

/// Hand-made v2 batches for tests: uncompressed records with a value and no key or headers.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Encodes one batch holding a record per `(timestamp, value)`, base offset 0 and a correct CRC.
    pub(crate) fn batch_with_timestamps(records: &[(i64, &[u8])]) -> Vec<u8> {
        let mut b = crate::log::batch_builder::BatchBuilder::new();
        for (ts, value) in records {
            b.append(*ts, None, Some(value), &[])
                .expect("a test record fits a batch");
        }
        b.build()
            .expect("a test batch needs at least one record")
            .to_vec()
    }

    /// A batch of `n` records with `value_len`-byte values, all stamped `ts`.
    pub(crate) fn batch(n: usize, value_len: usize, ts: i64) -> Vec<u8> {
        let value = vec![b'v'; value_len];
        let recs: Vec<(i64, &[u8])> = (0..n).map(|_| (ts, value.as_slice())).collect();
        batch_with_timestamps(&recs)
    }

    /// Recomputes the CRC after a test edited the covered bytes.
    pub(crate) fn fix_crc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn header_view_reads_fields_by_offset() {
        let mut b = batch_with_timestamps(&[(1000, b"a"), (1500, b"b"), (1200, b"c")]);
        set_base_offset(&mut b, 42);
        set_partition_leader_epoch(&mut b, 7);
        let h = RecordBatchHeader::parse(&b).unwrap();
        assert_eq!(h.base_offset(), 42);
        assert_eq!(h.partition_leader_epoch(), 7);
        assert_eq!(h.magic(), 2);
        assert_eq!(h.record_count(), 3);
        assert_eq!(h.last_offset(), 44);
        assert_eq!(h.base_timestamp(), 1000);
        assert_eq!(h.max_timestamp(), 1500);
        assert_eq!(h.total_size(), Some(b.len()));
        assert_eq!(h.producer_id(), -1);
        // Rewriting the fields outside the CRC keeps the batch valid.
        assert!(validate_batches(&b, 1 << 20).is_ok());
    }

    #[test]
    fn validation_accepts_concatenated_batches_and_summarises() {
        let mut buf = batch_with_timestamps(&[(10, b"x"), (30, b"y")]);
        buf.extend(batch(3, 5, 20));
        let s = validate_batches(&buf, 1 << 20).unwrap();
        assert_eq!(
            s,
            BatchesSummary {
                batch_count: 2,
                record_count: 5,
                max_timestamp: 30,
                first_base_timestamp: 10,
                has_control_batch: false,
                has_producer_id: false
            }
        );
    }

    fn corrupt(r: Result<BatchesSummary, LogError>) -> bool {
        matches!(r, Err(LogError::CorruptMessage(_)))
    }

    #[test]
    fn validation_rejects_bad_magic() {
        let mut b = batch(1, 10, 0);
        b[MAGIC_AT] = 1;
        assert!(corrupt(validate_batches(&b, 1 << 20)));
    }

    #[test]
    fn validation_rejects_bad_crc() {
        let mut b = batch(2, 10, 0);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(corrupt(validate_batches(&b, 1 << 20)));
    }

    #[test]
    fn validation_rejects_bad_lengths() {
        let b = batch(2, 10, 0);
        // Length pointing past the buffer.
        let mut long = b.clone();
        long[8..12].copy_from_slice(&(b.len() as i32).to_be_bytes());
        assert!(corrupt(validate_batches(&long, 1 << 20)));
        // Negative and too-small lengths.
        for bad in [-1i32, 0, 48, i32::MIN] {
            let mut x = b.clone();
            x[8..12].copy_from_slice(&bad.to_be_bytes());
            assert!(corrupt(validate_batches(&x, 1 << 20)), "batchLength {bad}");
        }
        // Truncated batch, trailing garbage shorter than a header, and an empty buffer.
        assert!(corrupt(validate_batches(&b[..b.len() - 1], 1 << 20)));
        let mut trailing = b.clone();
        trailing.extend_from_slice(&[0; 10]);
        assert!(corrupt(validate_batches(&trailing, 1 << 20)));
        assert!(corrupt(validate_batches(&[], 1 << 20)));
    }

    #[test]
    fn validation_rejects_inconsistent_record_count() {
        let mut b = batch(2, 10, 0);
        b[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&3i32.to_be_bytes());
        fix_crc(&mut b);
        assert!(corrupt(validate_batches(&b, 1 << 20)));
        let mut zero = batch(1, 10, 0);
        zero[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&0i32.to_be_bytes());
        zero[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
            .copy_from_slice(&(-1i32).to_be_bytes());
        fix_crc(&mut zero);
        assert!(corrupt(validate_batches(&zero, 1 << 20)));
    }

    #[test]
    fn validation_rejects_oversize_batch() {
        let b = batch(1, 1000, 0);
        match validate_batches(&b, 500) {
            Err(LogError::MessageTooLarge { size, max }) => {
                assert_eq!(size, b.len());
                assert_eq!(max, 500);
            }
            other => panic!("expected MessageTooLarge, got {other:?}"),
        }
    }
}
