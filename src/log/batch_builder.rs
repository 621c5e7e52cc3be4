//! The one encoder of v2 RecordBatches that the broker writes itself: coordinator records, transaction
//! markers, and test batches. Batches are uncompressed (a topic's `compression.type` is applied by the
//! validator at append) and start at base offset 0 unless told: the log assigns offsets.
//!
//! Record layout: length varint, attributes i8 (0), timestampDelta varlong, offsetDelta varint, key and
//! value (varint length, -1 = null), header count varint, then each header's key and value.

use bytes::{BufMut, BytesMut};

use crate::log::TimestampType;
use crate::log::record_batch::{CRC_START, LOG_OVERHEAD, MAGIC_V2, RECORD_BATCH_OVERHEAD};
use crate::log::varint::{put_nullable_bytes, put_varlong, varlong_len};

/// Attribute bit 3: the batch's timestamps are LogAppendTime.
const LOG_APPEND_TIME_FLAG: i16 = 0x08;
/// Attribute bit 4: written by a transactional producer.
const TRANSACTIONAL_FLAG: i16 = 0x10;
/// Attribute bit 5: a control batch (transaction markers).
const CONTROL_FLAG: i16 = 0x20;
/// Version of a control record's key and of an end-transaction marker's value.
const CONTROL_RECORD_VERSION: i16 = 0;

/// Why a batch could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchBuildError {
    #[error("a batch needs at least one record")]
    Empty,
    #[error("batch is too large for the v2 format")]
    TooLarge,
}

/// A record header: key and nullable value.
pub type Header<'a> = (&'a [u8], Option<&'a [u8]>);

/// Kafka's control record types (the key of a control record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlRecordType {
    Abort = 0,
    Commit = 1,
}

/// Builds one uncompressed v2 batch record by record.
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    base_offset: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
    timestamp_type: TimestampType,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    count: i32,
    records: BytesMut,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// A batch at base offset 0, leader epoch -1 (the log sets both), no producer, CreateTime.
    pub fn new() -> Self {
        BatchBuilder {
            base_offset: 0,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            control: false,
            timestamp_type: TimestampType::CreateTime,
            base_timestamp: None,
            max_timestamp: -1,
            count: 0,
            records: BytesMut::new(),
        }
    }

    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }

    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// An idempotent (or, with [`Self::transactional`], transactional) writer's id, epoch and the sequence
    /// of the batch's first record.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    pub fn timestamp_type(mut self, timestamp_type: TimestampType) -> Self {
        self.timestamp_type = timestamp_type;
        self
    }

    /// Appends a record at the next offset delta; the first record's timestamp is the batch's base.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> Result<&mut Self, BatchBuildError> {
        let base = *self.base_timestamp.get_or_insert(timestamp);
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let delta = timestamp.wrapping_sub(base);
        let offset_delta = i64::from(self.count);
        let nullable_len = |b: Option<&[u8]>| match b {
            Some(b) => varlong_len(b.len() as i64) + b.len(),
            None => varlong_len(-1),
        };
        let body_len = 1
            + varlong_len(delta)
            + varlong_len(offset_delta)
            + nullable_len(key)
            + nullable_len(value)
            + varlong_len(headers.len() as i64)
            + headers
                .iter()
                .map(|(k, v)| varlong_len(k.len() as i64) + k.len() + nullable_len(*v))
                .sum::<usize>();
        let body_len = i32::try_from(body_len).map_err(|_| BatchBuildError::TooLarge)?;
        self.count = self.count.checked_add(1).ok_or(BatchBuildError::TooLarge)?;
        let out = &mut self.records;
        put_varlong(out, i64::from(body_len));
        out.put_i8(0);
        put_varlong(out, delta);
        put_varlong(out, offset_delta);
        put_nullable_bytes(out, key);
        put_nullable_bytes(out, value);
        put_varlong(out, headers.len() as i64);
        for (k, v) in headers {
            put_nullable_bytes(out, Some(k));
            put_nullable_bytes(out, *v);
        }
        Ok(self)
    }

    /// Seals the batch: header, record count, CRC-32C.
    pub fn build(self) -> Result<BytesMut, BatchBuildError> {
        let base_timestamp = self.base_timestamp.ok_or(BatchBuildError::Empty)?;
        let batch_length = i32::try_from(RECORD_BATCH_OVERHEAD - LOG_OVERHEAD + self.records.len())
            .map_err(|_| BatchBuildError::TooLarge)?;
        let mut attributes = 0i16;
        if self.timestamp_type == TimestampType::LogAppendTime {
            attributes |= LOG_APPEND_TIME_FLAG;
        }
        if self.transactional {
            attributes |= TRANSACTIONAL_FLAG;
        }
        if self.control {
            attributes |= CONTROL_FLAG;
        }
        let mut b = BytesMut::with_capacity(RECORD_BATCH_OVERHEAD + self.records.len());
        b.put_i64(self.base_offset);
        b.put_i32(batch_length);
        b.put_i32(self.partition_leader_epoch);
        b.put_i8(MAGIC_V2);
        b.put_u32(0); // crc, below
        b.put_i16(attributes);
        b.put_i32(self.count - 1); // lastOffsetDelta
        b.put_i64(base_timestamp);
        b.put_i64(self.max_timestamp);
        b.put_i64(self.producer_id);
        b.put_i16(self.producer_epoch);
        b.put_i32(self.base_sequence);
        b.put_i32(self.count);
        b.put_slice(&self.records);
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(b)
    }
}

/// A transaction's end marker as a transaction coordinator writes it into each partition: a transactional
/// control batch of one record whose key is (version 0, COMMIT or ABORT) and whose value is (version 0,
/// coordinator epoch). Control batches carry no sequence.
pub fn end_transaction_marker(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Result<BytesMut, BatchBuildError> {
    let kind = if commit {
        ControlRecordType::Commit
    } else {
        ControlRecordType::Abort
    };
    let mut key = [0u8; 4];
    key[..2].copy_from_slice(&CONTROL_RECORD_VERSION.to_be_bytes());
    key[2..].copy_from_slice(&(kind as i16).to_be_bytes());
    let mut value = [0u8; 6];
    value[..2].copy_from_slice(&CONTROL_RECORD_VERSION.to_be_bytes());
    value[2..].copy_from_slice(&coordinator_epoch.to_be_bytes());
    let mut builder = BatchBuilder::new()
        .producer(producer_id, producer_epoch, -1)
        .transactional(true);
    builder.control = true;
    builder.append(timestamp, Some(&key), Some(&value), &[])?;
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::RecordBatchHeader;
    use crate::log::record_batch::validate_batches;
    use crate::log::records::{decompress, parse_records};

    #[test]
    fn built_batch_validates_and_reads_back() {
        let mut b = BatchBuilder::new()
            .producer(7, 2, 40)
            .transactional(true)
            .base_offset(5);
        b.append(
            1_000,
            Some(b"k1"),
            Some(b"v1"),
            &[(b"h", Some(b"x")), (b"n", None)],
        )
        .unwrap();
        b.append(900, None, None, &[]).unwrap();
        b.append(1_500, Some(b"k3"), Some(b""), &[]).unwrap();
        let batch = b.build().unwrap();
        validate_batches(&batch, u32::MAX).unwrap();
        let h = RecordBatchHeader::parse(&batch).unwrap();
        assert_eq!(h.base_offset(), 5);
        assert_eq!(h.last_offset(), 7);
        assert_eq!((h.base_timestamp(), h.max_timestamp()), (1_000, 1_500));
        assert_eq!(
            (h.producer_id(), h.producer_epoch(), h.base_sequence()),
            (7, 2, 40)
        );
        assert!(h.is_transactional() && !h.is_control() && !h.is_log_append_time());
        assert_eq!(h.compression_type(), 0);
        let (_, raw) = decompress(0, &batch[RECORD_BATCH_OVERHEAD..], 1 << 20).unwrap();
        let recs = parse_records(&raw, h.record_count()).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(
            (recs[0].key, recs[0].value),
            (Some(&b"k1"[..]), Some(&b"v1"[..]))
        );
        // Header count 2, then "h" -> "x" and "n" -> null.
        assert_eq!(recs[0].headers, &[4, 2, b'h', 2, b'x', 2, b'n', 1]);
        assert_eq!((recs[1].key, recs[1].value), (None, None));
        assert_eq!(h.record_timestamp(recs[1].timestamp_delta), 900);
        assert_eq!(recs[2].offset_delta, 2);
        assert_eq!(recs[2].value, Some(&b""[..]));
    }

    #[test]
    fn plain_batch_defaults_and_log_append_time() {
        let mut b = BatchBuilder::new().timestamp_type(TimestampType::LogAppendTime);
        b.append(3, Some(b"k"), Some(b"v"), &[]).unwrap();
        let batch = b.build().unwrap();
        let h = RecordBatchHeader::parse(&batch).unwrap();
        assert_eq!((h.base_offset(), h.partition_leader_epoch()), (0, -1));
        assert_eq!(
            (h.producer_id(), h.producer_epoch(), h.base_sequence()),
            (-1, -1, -1)
        );
        assert!(h.is_log_append_time() && !h.is_transactional());
        assert_eq!(
            BatchBuilder::new().build().unwrap_err(),
            BatchBuildError::Empty
        );
    }

    #[test]
    fn end_transaction_marker_is_kafkas_control_batch() {
        for (commit, kind) in [(true, 1u8), (false, 0u8)] {
            let batch = end_transaction_marker(9, 3, commit, 17, 1_234).unwrap();
            validate_batches(&batch, u32::MAX).unwrap();
            let h = RecordBatchHeader::parse(&batch).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(h.attributes(), 0x30);
            assert_eq!(
                (h.producer_id(), h.producer_epoch(), h.base_sequence()),
                (9, 3, -1)
            );
            assert_eq!((h.record_count(), h.base_timestamp()), (1, 1_234));
            let recs = parse_records(&batch[RECORD_BATCH_OVERHEAD..], 1).unwrap();
            // Key: version 0, type; value: version 0, coordinator epoch.
            assert_eq!(recs[0].key, Some(&[0, 0, 0, kind][..]));
            assert_eq!(recs[0].value, Some(&[0, 0, 0, 0, 0, 17][..]));
            assert_eq!(recs[0].headers, &[0]);
            // The whole record (varints zig-zag): length 16, attributes, deltas, key, value, no headers.
            let expect = [32, 0, 0, 0, 8, 0, 0, 0, kind, 12, 0, 0, 0, 0, 0, 17, 0];
            assert_eq!(recs[0].raw, &expect[..]);
        }
    }
}
