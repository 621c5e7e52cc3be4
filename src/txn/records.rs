//! `__transaction_state` records in Kafka's byte format: the key (TransactionLogKey v0 behind the
//! coordinator record type 0) and the value (TransactionLogValue v0, classic encoding, or v1, flexible with
//! tagged fields). Kafka 4.1 writes v0 unless `transaction.version` >= 1 is finalized, which brook does not
//! do; both are read, and unknown tags of v1 (tag 3 NextProducerEpoch of later releases) are skipped.

use std::collections::{BTreeMap, BTreeSet};

use bytes::BufMut;

use crate::log::TopicPartition;
use crate::log::varint::{VarintError, put_unsigned_varint, read_unsigned_varint};

use super::metadata::{TransactionMetadata, TransactionState};

/// The coordinator record type of a transaction log key (Kafka's `CoordinatorRecordType.TRANSACTION_LOG`),
/// written where the key's version would be.
const TRANSACTION_LOG_KEY_TYPE: i16 = 0;
/// The value version brook writes: Kafka 4.1's `transactionLogValueVersion()` without TV1 finalized.
pub const VALUE_VERSION: i16 = 0;
/// Tags of TransactionLogValue v1.
const TAG_PREVIOUS_PRODUCER_ID: u32 = 0;
const TAG_NEXT_PRODUCER_ID: u32 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u32 = 2;
/// The most partitions (or topics) a value may list when read back; far above any real transaction.
const MAX_ENTRIES: usize = 1 << 20;

/// Why a record could not be encoded or decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TxnRecordError {
    #[error("record truncated at byte {0}")]
    Truncated(usize),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Varint(#[from] VarintError),
}

/// What a record of `__transaction_state` says (Kafka's `TransactionLog.ReadResult`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnLogRecord {
    /// The latest state of a transactional id.
    Txn(String, TransactionLogValue),
    /// The id expired.
    Tombstone(String),
    /// A key of a newer coordinator: ignored.
    UnknownKeyVersion(i16),
    /// A value version this broker does not know: ignored.
    UnknownValueVersion(String, i16),
}

/// TransactionLogValue, field for field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionLogValue {
    pub producer_id: i64,
    /// v1 tag 0, -1 when absent.
    pub previous_producer_id: i64,
    /// v1 tag 1, -1 when absent.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// The raw status byte (see [`TransactionState::from_id`]).
    pub status: i8,
    /// By topic, in order; None (null) when Empty.
    pub partitions: Option<Vec<(String, Vec<i32>)>>,
    pub last_update_ms: i64,
    pub start_ms: i64,
    /// v1 tag 2, 0 when absent.
    pub client_transaction_version: i16,
}

impl TransactionLogValue {
    /// The record of `m` (Kafka's `valueToBytes` input): Empty lists no partitions (null).
    pub fn of(m: &TransactionMetadata) -> TransactionLogValue {
        let partitions = (m.state != TransactionState::Empty).then(|| {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for tp in &m.partitions {
                by_topic.entry(&tp.topic).or_default().push(tp.partition);
            }
            by_topic
                .into_iter()
                .map(|(t, ps)| (t.to_string(), ps))
                .collect()
        });
        TransactionLogValue {
            producer_id: m.producer_id,
            previous_producer_id: m.previous_producer_id,
            next_producer_id: -1,
            producer_epoch: m.producer_epoch,
            timeout_ms: m.timeout_ms,
            status: m.state.id(),
            partitions,
            last_update_ms: m.last_update_ms,
            start_ms: m.start_ms,
            client_transaction_version: 0,
        }
    }

    /// The metadata this record restores (Kafka's `TransactionLog.read`): the last epoch is not stored, so
    /// it is -1; an unknown status is an error.
    pub fn to_metadata(
        &self,
        transactional_id: &str,
    ) -> Result<TransactionMetadata, TxnRecordError> {
        let state = TransactionState::from_id(self.status)
            .ok_or_else(|| TxnRecordError::Invalid(format!("unknown status {}", self.status)))?;
        let partitions: BTreeSet<TopicPartition> = if state == TransactionState::Empty {
            BTreeSet::new()
        } else {
            self.partitions
                .iter()
                .flatten()
                .flat_map(|(t, ps)| ps.iter().map(|p| TopicPartition::new(t.clone(), *p)))
                .collect()
        };
        Ok(TransactionMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            producer_epoch: self.producer_epoch,
            last_producer_epoch: -1,
            timeout_ms: self.timeout_ms,
            state,
            partitions,
            start_ms: self.start_ms,
            last_update_ms: self.last_update_ms,
        })
    }
}

fn put_string(out: &mut Vec<u8>, s: &str, flexible: bool) -> Result<(), TxnRecordError> {
    if flexible {
        put_unsigned_varint(out, s.len() as u64 + 1);
    } else {
        let len = i16::try_from(s.len())
            .map_err(|_| TxnRecordError::Invalid(format!("string of {} bytes", s.len())))?;
        out.put_i16(len);
    }
    out.put_slice(s.as_bytes());
    Ok(())
}

fn put_len(out: &mut Vec<u8>, len: Option<usize>, flexible: bool) -> Result<(), TxnRecordError> {
    match (len, flexible) {
        (None, true) => put_unsigned_varint(out, 0),
        (None, false) => out.put_i32(-1),
        (Some(n), true) => put_unsigned_varint(out, n as u64 + 1),
        (Some(n), false) => out.put_i32(
            i32::try_from(n).map_err(|_| TxnRecordError::Invalid(format!("{n} elements")))?,
        ),
    }
    Ok(())
}

/// The key of `transactional_id`'s records.
pub fn encode_key(transactional_id: &str) -> Result<Vec<u8>, TxnRecordError> {
    let mut out = Vec::with_capacity(4 + transactional_id.len());
    out.put_i16(TRANSACTION_LOG_KEY_TYPE);
    put_string(&mut out, transactional_id, false)?;
    Ok(out)
}

/// The value bytes of `value` at `version` (0 or 1), version prefix included.
pub fn encode_value(value: &TransactionLogValue, version: i16) -> Result<Vec<u8>, TxnRecordError> {
    let flexible = match version {
        0 => false,
        1 => true,
        v => return Err(TxnRecordError::Invalid(format!("value version {v}"))),
    };
    let mut out = Vec::with_capacity(64);
    out.put_i16(version);
    out.put_i64(value.producer_id);
    out.put_i16(value.producer_epoch);
    out.put_i32(value.timeout_ms);
    out.put_i8(value.status);
    put_len(&mut out, value.partitions.as_ref().map(Vec::len), flexible)?;
    for (topic, partitions) in value.partitions.iter().flatten() {
        put_string(&mut out, topic, flexible)?;
        put_len(&mut out, Some(partitions.len()), flexible)?;
        for p in partitions {
            out.put_i32(*p);
        }
        if flexible {
            put_unsigned_varint(&mut out, 0); // the partition entry's tagged fields: none
        }
    }
    out.put_i64(value.last_update_ms);
    out.put_i64(value.start_ms);
    if flexible {
        // Tagged fields in tag order, only those that differ from their default.
        let mut tags: Vec<(u32, Vec<u8>)> = Vec::new();
        if value.previous_producer_id != -1 {
            tags.push((
                TAG_PREVIOUS_PRODUCER_ID,
                value.previous_producer_id.to_be_bytes().to_vec(),
            ));
        }
        if value.next_producer_id != -1 {
            tags.push((
                TAG_NEXT_PRODUCER_ID,
                value.next_producer_id.to_be_bytes().to_vec(),
            ));
        }
        if value.client_transaction_version != 0 {
            tags.push((
                TAG_CLIENT_TRANSACTION_VERSION,
                value.client_transaction_version.to_be_bytes().to_vec(),
            ));
        }
        put_unsigned_varint(&mut out, tags.len() as u64);
        for (tag, data) in tags {
            put_unsigned_varint(&mut out, u64::from(tag));
            put_unsigned_varint(&mut out, data.len() as u64);
            out.put_slice(&data);
        }
    }
    Ok(out)
}

/// A bounds-checked reader over one record's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TxnRecordError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(TxnRecordError::Truncated(self.pos))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], TxnRecordError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn i8(&mut self) -> Result<i8, TxnRecordError> {
        Ok(i8::from_be_bytes(self.array()?))
    }
    fn i16(&mut self) -> Result<i16, TxnRecordError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, TxnRecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, TxnRecordError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn uvarint(&mut self) -> Result<u32, TxnRecordError> {
        Ok(read_unsigned_varint(self.buf, &mut self.pos)?)
    }
    fn string(&mut self, flexible: bool) -> Result<String, TxnRecordError> {
        let len = if flexible {
            (self.uvarint()? as usize)
                .checked_sub(1)
                .ok_or_else(|| TxnRecordError::Invalid("null string".into()))?
        } else {
            usize::try_from(self.i16()?)
                .map_err(|_| TxnRecordError::Invalid("null string".into()))?
        };
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| TxnRecordError::Invalid("string is not UTF-8".into()))
    }
    /// An array length, None for null; bounded by what the remaining bytes could hold.
    fn len(&mut self, flexible: bool, min_elem: usize) -> Result<Option<usize>, TxnRecordError> {
        let n = if flexible {
            match self.uvarint()? {
                0 => return Ok(None),
                n => (n - 1) as usize,
            }
        } else {
            match self.i32()? {
                -1 => return Ok(None),
                n => usize::try_from(n)
                    .map_err(|_| TxnRecordError::Invalid(format!("array length {n}")))?,
            }
        };
        if n > MAX_ENTRIES || n.saturating_mul(min_elem) > self.buf.len() - self.pos {
            return Err(TxnRecordError::Invalid(format!("array length {n}")));
        }
        Ok(Some(n))
    }
    /// Skips a tagged-field section, handing the known ones to `known`.
    fn tagged(
        &mut self,
        mut known: impl FnMut(u32, &[u8]) -> Result<(), TxnRecordError>,
    ) -> Result<(), TxnRecordError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            let data = self.take(size)?;
            known(tag, data)?;
        }
        Ok(())
    }
}

fn fixed<const N: usize>(tag: u32, data: &[u8]) -> Result<[u8; N], TxnRecordError> {
    data.try_into()
        .map_err(|_| TxnRecordError::Invalid(format!("tag {tag} has {} bytes", data.len())))
}

fn decode_value_body(
    r: &mut Reader<'_>,
    version: i16,
) -> Result<TransactionLogValue, TxnRecordError> {
    let flexible = version >= 1;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let status = r.i8()?;
    let partitions = match r.len(flexible, 2)? {
        None => None,
        Some(n) => {
            let mut topics = Vec::with_capacity(n);
            for _ in 0..n {
                let topic = r.string(flexible)?;
                let count = r
                    .len(flexible, 4)?
                    .ok_or_else(|| TxnRecordError::Invalid("null partition list".into()))?;
                let mut ps = Vec::with_capacity(count);
                for _ in 0..count {
                    ps.push(r.i32()?);
                }
                if flexible {
                    r.tagged(|_, _| Ok(()))?;
                }
                topics.push((topic, ps));
            }
            Some(topics)
        }
    };
    let mut value = TransactionLogValue {
        producer_id,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch,
        timeout_ms,
        status,
        partitions,
        last_update_ms: r.i64()?,
        start_ms: r.i64()?,
        client_transaction_version: 0,
    };
    if flexible {
        r.tagged(|tag, data| {
            match tag {
                TAG_PREVIOUS_PRODUCER_ID => {
                    value.previous_producer_id = i64::from_be_bytes(fixed(tag, data)?)
                }
                TAG_NEXT_PRODUCER_ID => {
                    value.next_producer_id = i64::from_be_bytes(fixed(tag, data)?)
                }
                TAG_CLIENT_TRANSACTION_VERSION => {
                    value.client_transaction_version = i16::from_be_bytes(fixed(tag, data)?)
                }
                _ => {} // a later release's field
            }
            Ok(())
        })?;
    }
    Ok(value)
}

/// Reads one record of `__transaction_state` (Kafka's `TransactionLog.read`).
pub fn read(key: &[u8], value: Option<&[u8]>) -> Result<TxnLogRecord, TxnRecordError> {
    let mut k = Reader { buf: key, pos: 0 };
    let key_type = k.i16()?;
    if key_type != TRANSACTION_LOG_KEY_TYPE {
        return Ok(TxnLogRecord::UnknownKeyVersion(key_type));
    }
    let id = k.string(false)?;
    let Some(value) = value else {
        return Ok(TxnLogRecord::Tombstone(id));
    };
    let mut r = Reader { buf: value, pos: 0 };
    let version = r.i16()?;
    if !(0..=1).contains(&version) {
        return Ok(TxnLogRecord::UnknownValueVersion(id, version));
    }
    let v = decode_value_body(&mut r, version)?;
    Ok(TxnLogRecord::Txn(id, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(partitions: Option<Vec<(String, Vec<i32>)>>) -> TransactionLogValue {
        TransactionLogValue {
            producer_id: 0x0102,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 3,
            timeout_ms: 60_000,
            status: TransactionState::Ongoing.id(),
            partitions,
            last_update_ms: 1_000,
            start_ms: 900,
            client_transaction_version: 0,
        }
    }

    #[test]
    fn key_is_type_zero_then_a_classic_string() {
        assert_eq!(encode_key("tx").unwrap(), vec![0, 0, 0, 2, b't', b'x']);
        assert_eq!(
            read(&[0, 0, 0, 2, b't', b'x'], None).unwrap(),
            TxnLogRecord::Tombstone("tx".into())
        );
        // A key of another record type (a newer coordinator's) is reported, not fatal.
        assert_eq!(
            read(&[0, 5, 0, 0], Some(&[0, 0])).unwrap(),
            TxnLogRecord::UnknownKeyVersion(5)
        );
    }

    #[test]
    fn value_v0_is_byte_exact() {
        let v = sample(Some(vec![("t".into(), vec![0, 2])]));
        let mut expected = vec![0, 0]; // version 0
        expected.extend(0x0102i64.to_be_bytes());
        expected.extend(3i16.to_be_bytes());
        expected.extend(60_000i32.to_be_bytes());
        expected.push(1); // Ongoing
        expected.extend(1i32.to_be_bytes()); // one topic
        expected.extend([0, 1, b't']);
        expected.extend(2i32.to_be_bytes());
        expected.extend(0i32.to_be_bytes());
        expected.extend(2i32.to_be_bytes());
        expected.extend(1_000i64.to_be_bytes());
        expected.extend(900i64.to_be_bytes());
        let bytes = encode_value(&v, 0).unwrap();
        assert_eq!(bytes, expected);
        assert_eq!(
            read(&encode_key("id").unwrap(), Some(&bytes)).unwrap(),
            TxnLogRecord::Txn("id".into(), v)
        );
        // Empty: partitions are null (-1).
        let mut empty = sample(None);
        empty.status = 0;
        let bytes = encode_value(&empty, 0).unwrap();
        assert_eq!(&bytes[17..21], &(-1i32).to_be_bytes());
        assert_eq!(bytes.len(), 2 + 8 + 2 + 4 + 1 + 4 + 8 + 8);
    }

    #[test]
    fn value_v1_is_byte_exact_with_tags() {
        let mut v = sample(Some(vec![("t".into(), vec![4])]));
        v.previous_producer_id = 7;
        v.client_transaction_version = 2;
        let mut expected = vec![0, 1];
        expected.extend(0x0102i64.to_be_bytes());
        expected.extend(3i16.to_be_bytes());
        expected.extend(60_000i32.to_be_bytes());
        expected.push(1);
        expected.push(2); // compact array: 1 topic
        expected.extend([2, b't']); // compact string
        expected.push(2); // 1 partition
        expected.extend(4i32.to_be_bytes());
        expected.push(0); // the topic entry's tagged fields
        expected.extend(1_000i64.to_be_bytes());
        expected.extend(900i64.to_be_bytes());
        expected.push(2); // two tags
        expected.extend([0, 8]);
        expected.extend(7i64.to_be_bytes());
        expected.extend([2, 2]);
        expected.extend(2i16.to_be_bytes());
        let bytes = encode_value(&v, 1).unwrap();
        assert_eq!(bytes, expected);
        assert_eq!(
            read(&encode_key("id").unwrap(), Some(&bytes)).unwrap(),
            TxnLogRecord::Txn("id".into(), v.clone())
        );
        // Unknown tags (tag 3, NextProducerEpoch, of later releases) are skipped.
        let mut later = bytes[..bytes.len() - 15].to_vec();
        later.push(3);
        later.extend([0, 8]);
        later.extend(7i64.to_be_bytes());
        later.extend([2, 2]);
        later.extend(2i16.to_be_bytes());
        later.extend([3, 2]);
        later.extend(5i16.to_be_bytes());
        assert_eq!(
            read(&encode_key("id").unwrap(), Some(&later)).unwrap(),
            TxnLogRecord::Txn("id".into(), v)
        );
        // A null partition list is a 0 length.
        let mut empty = sample(None);
        empty.status = 0;
        let bytes = encode_value(&empty, 1).unwrap();
        assert_eq!(bytes[17], 0);
        assert_eq!(*bytes.last().unwrap(), 0, "no tags");
    }

    #[test]
    fn damaged_or_unknown_values_are_errors_or_reported() {
        let key = encode_key("id").unwrap();
        assert_eq!(
            read(&key, Some(&[0, 2, 1, 2, 3])).unwrap(),
            TxnLogRecord::UnknownValueVersion("id".into(), 2)
        );
        let bytes = encode_value(&sample(Some(vec![("t".into(), vec![1])])), 0).unwrap();
        for cut in 0..bytes.len() {
            assert!(read(&key, Some(&bytes[..cut])).is_err(), "cut at {cut}");
        }
        // A huge array length is refused before any allocation.
        let mut huge = bytes[..17].to_vec();
        huge.extend(i32::MAX.to_be_bytes());
        assert!(matches!(
            read(&key, Some(&huge)),
            Err(TxnRecordError::Invalid(_))
        ));
        assert!(read(&[0, 0, 0, 9, b'x'], None).is_err());
    }
}
