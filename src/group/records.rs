//! Kafka's `__consumer_offsets` records, byte for byte, so that tools which read that topic (Burrow,
//! kafka-consumer-groups' `--describe` on old brokers, offset exporters) understand what brook writes.
//!
//! Every key and value starts with an int16 version. Keys: versions 0 and 1 are an offset commit
//! (group, topic, partition), version 2 is group metadata (group); newer coordinators use higher key
//! versions for other record types, which this broker skips. Values: OffsetCommitValue and
//! GroupMetadataValue, versions 0-3 in the classic encoding (int16-length strings, int32-length bytes and
//! arrays), version 4 flexible (compact lengths, tagged fields). Version 3 is written; 0-4 are read, and a
//! higher value version is read as 4 because only tagged fields may be added after it (KIP-915).
//! A tombstone is a record whose value is null.
//!
//! Decoding reads data from disk: it never panics, and every length is checked against the bytes that
//! remain before anything is allocated.

use bytes::{BufMut, Bytes, BytesMut};

use super::{OffsetAndMetadata, StoredGroup, StoredMember};
use crate::log::TopicPartition;
use crate::log::batch_builder::{BatchBuildError, BatchBuilder};
use crate::log::record_batch::{CRC_START, RECORD_BATCH_OVERHEAD, RecordBatchHeader};
use crate::log::varint;

/// Key version written for offset commits (0 is the same layout; Kafka writes 1).
pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// Key version of group metadata records.
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;
/// OffsetCommitValue version written: the newest non-flexible one, with the leader epoch.
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// GroupMetadataValue version written: the newest non-flexible one, with group instance ids.
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;
/// Newest value layout this module understands; higher versions only add tagged fields.
const HIGHEST_VALUE_VERSION: i16 = 4;
/// First flexible value version.
const FIRST_FLEXIBLE_VERSION: i16 = 4;

/// Why a record could not be encoded or decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record truncated: needed {needed} bytes at byte {at}, {remaining} remain")]
    Truncated {
        at: usize,
        needed: usize,
        remaining: usize,
    },
    #[error("invalid record: {0}")]
    Invalid(String),
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion { what: &'static str, version: i16 },
    #[error("{what} is {len} bytes, longer than the format allows")]
    TooLong { what: &'static str, len: usize },
}

/// The key of a `__consumer_offsets` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRecordKey {
    /// An offset committed by `group` for a partition; its value is an OffsetCommitValue.
    OffsetCommit { group: String, tp: TopicPartition },
    /// A group's membership after a rebalance; its value is a GroupMetadataValue.
    GroupMetadata { group: String },
    /// A record type of a newer coordinator (consumer groups of KIP-848, share groups...): skipped.
    Other { version: i16 },
}

// ---------------------------------------------------------------------------------------------------
// Encoding

fn put_string(buf: &mut BytesMut, what: &'static str, s: &str) -> Result<(), RecordError> {
    let len = i16::try_from(s.len()).map_err(|_| RecordError::TooLong { what, len: s.len() })?;
    buf.put_i16(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

fn put_nullable_string(
    buf: &mut BytesMut,
    what: &'static str,
    s: Option<&str>,
) -> Result<(), RecordError> {
    match s {
        Some(s) => put_string(buf, what, s),
        None => {
            buf.put_i16(-1);
            Ok(())
        }
    }
}

fn put_bytes(buf: &mut BytesMut, what: &'static str, b: &[u8]) -> Result<(), RecordError> {
    let len = i32::try_from(b.len()).map_err(|_| RecordError::TooLong { what, len: b.len() })?;
    buf.put_i32(len);
    buf.put_slice(b);
    Ok(())
}

/// OffsetCommitKey, key version 1: group, topic, partition.
pub fn encode_offset_commit_key(group: &str, tp: &TopicPartition) -> Result<Bytes, RecordError> {
    let mut buf = BytesMut::with_capacity(2 + 2 + group.len() + 2 + tp.topic.len() + 4);
    buf.put_i16(OFFSET_COMMIT_KEY_VERSION);
    put_string(&mut buf, "group id", group)?;
    put_string(&mut buf, "topic name", &tp.topic)?;
    buf.put_i32(tp.partition);
    Ok(buf.freeze())
}

/// GroupMetadataKey, key version 2: group.
pub fn encode_group_metadata_key(group: &str) -> Result<Bytes, RecordError> {
    let mut buf = BytesMut::with_capacity(2 + 2 + group.len());
    buf.put_i16(GROUP_METADATA_KEY_VERSION);
    put_string(&mut buf, "group id", group)?;
    Ok(buf.freeze())
}

/// OffsetCommitValue version 3: offset, leader epoch, metadata, commit timestamp.
pub fn encode_offset_commit_value(om: &OffsetAndMetadata) -> Result<Bytes, RecordError> {
    let mut buf = BytesMut::with_capacity(2 + 8 + 4 + 2 + om.metadata.len() + 8);
    buf.put_i16(OFFSET_COMMIT_VALUE_VERSION);
    buf.put_i64(om.offset);
    buf.put_i32(om.leader_epoch);
    put_string(&mut buf, "offset metadata", &om.metadata)?;
    buf.put_i64(om.commit_timestamp_ms);
    Ok(buf.freeze())
}

/// GroupMetadataValue version 3.
pub fn encode_group_metadata_value(g: &StoredGroup) -> Result<Bytes, RecordError> {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(GROUP_METADATA_VALUE_VERSION);
    put_string(&mut buf, "protocol type", &g.protocol_type)?;
    buf.put_i32(g.generation);
    put_nullable_string(&mut buf, "protocol", g.protocol.as_deref())?;
    put_nullable_string(&mut buf, "leader", g.leader.as_deref())?;
    buf.put_i64(g.current_state_timestamp_ms);
    let count = i32::try_from(g.members.len()).map_err(|_| RecordError::TooLong {
        what: "member list",
        len: g.members.len(),
    })?;
    buf.put_i32(count);
    for m in &g.members {
        put_string(&mut buf, "member id", &m.member_id)?;
        put_nullable_string(
            &mut buf,
            "group instance id",
            m.group_instance_id.as_deref(),
        )?;
        put_string(&mut buf, "client id", &m.client_id)?;
        put_string(&mut buf, "client host", &m.client_host)?;
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, "subscription", &m.subscription)?;
        put_bytes(&mut buf, "assignment", &m.assignment)?;
    }
    Ok(buf.freeze())
}

// ---------------------------------------------------------------------------------------------------
// Decoding

fn varint_error(e: varint::VarintError) -> RecordError {
    match e {
        varint::VarintError::Truncated { at } => RecordError::Truncated {
            at,
            needed: 1,
            remaining: 0,
        },
        varint::VarintError::TooLong { .. } => RecordError::Invalid(e.to_string()),
    }
}

/// A bounds-checked cursor over a key or value.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if n > self.remaining() {
            return Err(RecordError::Truncated {
                at: self.pos,
                needed: n,
                remaining: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let s = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn i8(&mut self) -> Result<i8, RecordError> {
        Ok(i8::from_be_bytes(self.array()?))
    }
    fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// Kafka's unsigned varint (compact lengths, tagged fields).
    fn unsigned_varint(&mut self) -> Result<u32, RecordError> {
        varint::read_unsigned_varint(self.buf, &mut self.pos).map_err(varint_error)
    }

    /// Zig-zag varint as in record fields.
    fn varint(&mut self) -> Result<i32, RecordError> {
        varint::read_varint(self.buf, &mut self.pos).map_err(varint_error)
    }

    /// Zig-zag varlong.
    fn varlong(&mut self) -> Result<i64, RecordError> {
        varint::read_varlong(self.buf, &mut self.pos).map_err(varint_error)
    }

    fn utf8(what: &str, b: &[u8]) -> Result<String, RecordError> {
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| RecordError::Invalid(format!("{what} is not UTF-8")))
    }

    /// A string in the version's encoding; None only for a null one.
    fn opt_string(&mut self, what: &str, flexible: bool) -> Result<Option<String>, RecordError> {
        let len = if flexible {
            match self.unsigned_varint()? {
                0 => return Ok(None),
                n => (n - 1) as usize,
            }
        } else {
            match self.i16()? {
                -1 => return Ok(None),
                n if n < 0 => {
                    return Err(RecordError::Invalid(format!("{what} has length {n}")));
                }
                n => n as usize,
            }
        };
        let b = self.take(len)?;
        Self::utf8(what, b).map(Some)
    }

    fn string(&mut self, what: &str, flexible: bool) -> Result<String, RecordError> {
        self.opt_string(what, flexible)?
            .ok_or_else(|| RecordError::Invalid(format!("{what} is null")))
    }

    fn bytes(&mut self, what: &str, flexible: bool) -> Result<Bytes, RecordError> {
        let len = if flexible {
            match self.unsigned_varint()? {
                0 => return Err(RecordError::Invalid(format!("{what} is null"))),
                n => (n - 1) as usize,
            }
        } else {
            usize::try_from(self.i32()?)
                .map_err(|_| RecordError::Invalid(format!("{what} has a negative length")))?
        };
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }

    /// An array count, checked against the bytes left (each element takes at least `min_elem` bytes).
    fn count(&mut self, what: &str, flexible: bool, min_elem: usize) -> Result<usize, RecordError> {
        let n = if flexible {
            match self.unsigned_varint()? {
                0 => return Err(RecordError::Invalid(format!("{what} is null"))),
                n => (n - 1) as usize,
            }
        } else {
            usize::try_from(self.i32()?)
                .map_err(|_| RecordError::Invalid(format!("{what} has a negative length")))?
        };
        if n.saturating_mul(min_elem.max(1)) > self.remaining() {
            return Err(RecordError::Invalid(format!(
                "{what} claims {n} elements but only {} bytes remain",
                self.remaining()
            )));
        }
        Ok(n)
    }

    /// Skips a flexible struct's tagged fields (none are known here).
    fn skip_tagged_fields(&mut self) -> Result<(), RecordError> {
        let n = self.unsigned_varint()?;
        for _ in 0..n {
            let _tag = self.unsigned_varint()?;
            let size = self.unsigned_varint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}

/// Reads a value's version; a higher version than known is read with the newest known layout.
fn value_version(r: &mut Reader<'_>, what: &'static str) -> Result<i16, RecordError> {
    let version = r.i16()?;
    if version < 0 {
        return Err(RecordError::UnsupportedVersion { what, version });
    }
    Ok(version.min(HIGHEST_VALUE_VERSION))
}

/// Decodes a record key of any version.
pub fn decode_key(buf: &[u8]) -> Result<GroupRecordKey, RecordError> {
    let mut r = Reader::new(buf);
    let version = r.i16()?;
    match version {
        0 | 1 => {
            let group = r.string("group id", false)?;
            let topic = r.string("topic name", false)?;
            let partition = r.i32()?;
            Ok(GroupRecordKey::OffsetCommit {
                group,
                tp: TopicPartition::new(topic, partition),
            })
        }
        2 => Ok(GroupRecordKey::GroupMetadata {
            group: r.string("group id", false)?,
        }),
        v if v < 0 => Err(RecordError::UnsupportedVersion {
            what: "key",
            version: v,
        }),
        v => Ok(GroupRecordKey::Other { version: v }),
    }
}

/// Decodes an OffsetCommitValue, versions 0-4 (and later ones as 4). Version 1's expire timestamp is
/// dropped: retention follows KIP-211 instead.
pub fn decode_offset_commit_value(buf: &[u8]) -> Result<OffsetAndMetadata, RecordError> {
    let mut r = Reader::new(buf);
    let version = value_version(&mut r, "OffsetCommitValue")?;
    let flexible = version >= FIRST_FLEXIBLE_VERSION;
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string("offset metadata", flexible)?;
    let commit_timestamp_ms = r.i64()?;
    if version == 1 {
        let _expire_timestamp = r.i64()?;
    }
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(OffsetAndMetadata {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

/// Smallest encoded member (v0: four empty strings' lengths... lower bound for the count check).
const MIN_MEMBER_BYTES: usize = 4;

/// Decodes a GroupMetadataValue, versions 0-4 (and later ones as 4). Version 0 has no rebalance timeout:
/// the session timeout stands in for it, as Kafka does.
pub fn decode_group_metadata_value(buf: &[u8]) -> Result<StoredGroup, RecordError> {
    let mut r = Reader::new(buf);
    let version = value_version(&mut r, "GroupMetadataValue")?;
    let flexible = version >= FIRST_FLEXIBLE_VERSION;
    let protocol_type = r.string("protocol type", flexible)?;
    let generation = r.i32()?;
    let protocol = r.opt_string("protocol", flexible)?;
    let leader = r.opt_string("leader", flexible)?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.count("member list", flexible, MIN_MEMBER_BYTES)?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let member_id = r.string("member id", flexible)?;
        let group_instance_id = if version >= 3 {
            r.opt_string("group instance id", flexible)?
        } else {
            None
        };
        let client_id = r.string("client id", flexible)?;
        let client_host = r.string("client host", flexible)?;
        let rebalance_timeout = if version >= 1 { Some(r.i32()?) } else { None };
        let session_timeout_ms = r.i32()?;
        let subscription = r.bytes("subscription", flexible)?;
        let assignment = r.bytes("assignment", flexible)?;
        if flexible {
            r.skip_tagged_fields()?;
        }
        members.push(StoredMember {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: rebalance_timeout.unwrap_or(session_timeout_ms),
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(StoredGroup {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

// ---------------------------------------------------------------------------------------------------
// Record batches: how the records travel to and from the log.

/// One record of a batch: key and (None for a tombstone) value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// Encodes the records as one uncompressed v2 RecordBatch (base offset 0, the log assigns offsets), every
/// record stamped `timestamp_ms` with CreateTime, no producer id. Fails on an empty list.
pub fn encode_batch(records: &[KeyValue], timestamp_ms: i64) -> Result<BytesMut, RecordError> {
    let mut builder = BatchBuilder::new();
    for rec in records {
        builder
            .append(timestamp_ms, Some(&rec.key), rec.value.as_deref(), &[])
            .map_err(|e| batch_error(e, records.len()))?;
    }
    builder.build().map_err(|e| batch_error(e, records.len()))
}

fn batch_error(e: BatchBuildError, len: usize) -> RecordError {
    match e {
        BatchBuildError::Empty => RecordError::Invalid(e.to_string()),
        BatchBuildError::TooLarge => RecordError::TooLong { what: "batch", len },
    }
}

/// A record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRecord {
    pub offset: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

/// What a batch walk found: the records, and the problems met along the way (to be logged, not fatal).
#[derive(Debug, Default)]
pub struct WalkedBatches {
    pub records: Vec<LoggedRecord>,
    /// Offset just past the last whole batch seen; where the next read starts.
    pub next_offset: Option<i64>,
    pub problems: Vec<String>,
}

/// Walks concatenated v2 batches as the log returns them. Control batches are skipped; a batch with a bad
/// CRC, compression, or malformed records contributes the records decoded before the damage and a problem.
/// A truncated trailing batch ends the walk.
pub fn walk_batches(buf: &Bytes) -> WalkedBatches {
    let mut out = WalkedBatches::default();
    let mut pos = 0usize;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let Ok(h) = RecordBatchHeader::parse(rest) else {
            break;
        };
        let Some(size) = h.total_size().filter(|s| *s <= rest.len()) else {
            out.problems.push(format!(
                "batch at offset {} has an unusable length {}",
                h.base_offset(),
                h.batch_length()
            ));
            break;
        };
        let batch = buf.slice(pos..pos + size);
        pos += size;
        out.next_offset = Some(h.last_offset().saturating_add(1));
        if h.magic() != 2 {
            out.problems.push(format!(
                "batch at offset {} has magic {}",
                h.base_offset(),
                h.magic()
            ));
            continue;
        }
        if crc32c::crc32c(&batch[CRC_START..]) != h.crc() {
            out.problems
                .push(format!("batch at offset {} fails its CRC", h.base_offset()));
            continue;
        }
        if h.is_control() {
            continue;
        }
        if h.compression_type() != 0 {
            out.problems.push(format!(
                "batch at offset {} is compressed (type {}); brook writes none",
                h.base_offset(),
                h.compression_type()
            ));
            continue;
        }
        if let Err(e) = walk_records(&batch, h.base_offset(), h.record_count(), &mut out.records) {
            out.problems
                .push(format!("batch at offset {}: {e}", h.base_offset()));
        }
    }
    out
}

fn walk_records(
    batch: &Bytes,
    base_offset: i64,
    count: i32,
    out: &mut Vec<LoggedRecord>,
) -> Result<(), RecordError> {
    let mut r = Reader::new(&batch[RECORD_BATCH_OVERHEAD..]);
    let count = usize::try_from(count)
        .map_err(|_| RecordError::Invalid(format!("record count {count}")))?;
    for _ in 0..count {
        let len = usize::try_from(r.varint()?)
            .map_err(|_| RecordError::Invalid("negative record length".into()))?;
        let body_start = RECORD_BATCH_OVERHEAD + r.pos;
        let body = r.take(len)?;
        let mut rr = Reader::new(body);
        let _attributes = rr.i8()?;
        let _timestamp_delta = rr.varlong()?;
        let offset_delta = rr.varint()?;
        let field = |rr: &mut Reader<'_>| -> Result<Option<Bytes>, RecordError> {
            let n = rr.varint()?;
            if n < 0 {
                return Ok(None);
            }
            let at = body_start + rr.pos;
            rr.take(n as usize)?;
            Ok(Some(batch.slice(at..at + n as usize)))
        };
        let key = field(&mut rr)?;
        let value = field(&mut rr)?;
        out.push(LoggedRecord {
            offset: base_offset.saturating_add(i64::from(offset_delta)),
            key,
            value,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn om(offset: i64, epoch: i32, metadata: &str, ts: i64) -> OffsetAndMetadata {
        OffsetAndMetadata {
            offset,
            leader_epoch: epoch,
            metadata: metadata.into(),
            commit_timestamp_ms: ts,
        }
    }

    fn sample_group() -> StoredGroup {
        StoredGroup {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            current_state_timestamp_ms: 1_700_000_000_000,
            members: vec![
                StoredMember {
                    member_id: "m-1".into(),
                    group_instance_id: Some("i-1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"\x00\x01sub"),
                    assignment: Bytes::from_static(b"asg"),
                },
                StoredMember {
                    member_id: "m-2".into(),
                    group_instance_id: None,
                    client_id: "".into(),
                    client_host: "h".into(),
                    rebalance_timeout_ms: 1,
                    session_timeout_ms: 2,
                    subscription: Bytes::new(),
                    assignment: Bytes::new(),
                },
            ],
        }
    }

    #[test]
    fn offset_commit_key_is_kafkas_version_1_layout() {
        let key = encode_offset_commit_key("g", &TopicPartition::new("t1", 3)).unwrap();
        // version 1, "g", "t1", partition 3
        assert_eq!(hex(&key), "00010001670002743100000003");
        assert_eq!(
            decode_key(&key).unwrap(),
            GroupRecordKey::OffsetCommit {
                group: "g".into(),
                tp: TopicPartition::new("t1", 3)
            }
        );
        // Key version 0 has the same layout.
        let mut v0 = key.to_vec();
        v0[1] = 0;
        assert!(matches!(
            decode_key(&v0).unwrap(),
            GroupRecordKey::OffsetCommit { .. }
        ));
    }

    #[test]
    fn group_metadata_key_is_version_2() {
        let key = encode_group_metadata_key("grp").unwrap();
        assert_eq!(hex(&key), "00020003677270");
        assert_eq!(
            decode_key(&key).unwrap(),
            GroupRecordKey::GroupMetadata {
                group: "grp".into()
            }
        );
    }

    #[test]
    fn newer_key_types_are_reported_as_other() {
        assert_eq!(
            decode_key(&[0, 3, 0, 1, b'g']).unwrap(),
            GroupRecordKey::Other { version: 3 }
        );
        assert!(decode_key(&[0xff, 0xff]).is_err());
        assert!(decode_key(&[0]).is_err());
    }

    #[test]
    fn offset_commit_value_v3_is_byte_exact() {
        let v = encode_offset_commit_value(&om(42, 5, "md", 1000)).unwrap();
        assert_eq!(
            hex(&v),
            "0003".to_string()
                + "000000000000002a"
                + "00000005"
                + "0002"
                + "6d64"
                + "00000000000003e8"
        );
        assert_eq!(
            decode_offset_commit_value(&v).unwrap(),
            om(42, 5, "md", 1000)
        );
    }

    #[test]
    fn offset_commit_value_reads_every_version() {
        let mut v0 = vec![0, 0];
        v0.extend_from_slice(&42i64.to_be_bytes());
        v0.extend_from_slice(&[0, 1, b'x']);
        v0.extend_from_slice(&9i64.to_be_bytes());
        assert_eq!(decode_offset_commit_value(&v0).unwrap(), om(42, -1, "x", 9));

        let mut v1 = vec![0, 1];
        v1.extend_from_slice(&v0[2..]);
        v1.extend_from_slice(&99i64.to_be_bytes()); // expire timestamp
        assert_eq!(decode_offset_commit_value(&v1).unwrap(), om(42, -1, "x", 9));

        let mut v2 = v0.clone();
        v2[1] = 2;
        assert_eq!(decode_offset_commit_value(&v2).unwrap(), om(42, -1, "x", 9));

        // v4: flexible; compact string (length + 1) and a tagged field to skip.
        let mut v4 = vec![0, 4];
        v4.extend_from_slice(&42i64.to_be_bytes());
        v4.extend_from_slice(&7i32.to_be_bytes());
        v4.extend_from_slice(&[2, b'x']);
        v4.extend_from_slice(&9i64.to_be_bytes());
        v4.extend_from_slice(&[1, 0, 2, 0xaa, 0xbb]); // one tagged field, tag 0, 2 bytes
        assert_eq!(decode_offset_commit_value(&v4).unwrap(), om(42, 7, "x", 9));
        // A later version is read as the newest known one.
        let mut v5 = v4.clone();
        v5[1] = 5;
        assert_eq!(decode_offset_commit_value(&v5).unwrap(), om(42, 7, "x", 9));
    }

    #[test]
    fn offset_commit_value_rejects_truncation_and_bad_lengths() {
        let v = encode_offset_commit_value(&om(1, 2, "meta", 3)).unwrap();
        for cut in 0..v.len() {
            assert!(
                decode_offset_commit_value(&v[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad = v.to_vec();
        bad[14] = 0x7f; // metadata length far past the end
        assert!(decode_offset_commit_value(&bad).is_err());
        let mut neg = v.to_vec();
        neg[14] = 0xff; // metadata length -1 where null is not allowed
        assert!(decode_offset_commit_value(&neg).is_err());
    }

    #[test]
    fn group_metadata_value_v3_round_trips_byte_exact() {
        let g = sample_group();
        let v = encode_group_metadata_value(&g).unwrap();
        assert_eq!(&v[..2], &[0, 3]);
        assert_eq!(decode_group_metadata_value(&v).unwrap(), g);
        // Re-encoding what was decoded gives the same bytes.
        let again = encode_group_metadata_value(&decode_group_metadata_value(&v).unwrap()).unwrap();
        assert_eq!(v, again);
        // An empty group: null protocol and leader, no members.
        let empty = StoredGroup {
            protocol_type: "consumer".into(),
            generation: 0,
            protocol: None,
            leader: None,
            current_state_timestamp_ms: -1,
            members: vec![],
        };
        let v = encode_group_metadata_value(&empty).unwrap();
        assert_eq!(
            hex(&v),
            "0003".to_string()
                + "0008"
                + &hex(b"consumer")
                + "00000000"
                + "ffff"
                + "ffff"
                + "ffffffffffffffff"
                + "00000000"
        );
        assert_eq!(decode_group_metadata_value(&v).unwrap(), empty);
    }

    /// Hand-encodes one member in a classic version.
    fn classic_value(version: i16) -> Vec<u8> {
        let s = |b: &mut Vec<u8>, x: &str| {
            b.extend_from_slice(&(x.len() as i16).to_be_bytes());
            b.extend_from_slice(x.as_bytes());
        };
        let mut b = version.to_be_bytes().to_vec();
        s(&mut b, "consumer");
        b.extend_from_slice(&3i32.to_be_bytes());
        s(&mut b, "range");
        s(&mut b, "m");
        if version >= 2 {
            b.extend_from_slice(&55i64.to_be_bytes());
        }
        b.extend_from_slice(&1i32.to_be_bytes());
        s(&mut b, "m");
        if version >= 3 {
            b.extend_from_slice(&(-1i16).to_be_bytes());
        }
        s(&mut b, "cid");
        s(&mut b, "host");
        if version >= 1 {
            b.extend_from_slice(&60_000i32.to_be_bytes());
        }
        b.extend_from_slice(&10_000i32.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.push(b'S');
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(b"AA");
        b
    }

    #[test]
    fn group_metadata_value_reads_versions_0_to_3() {
        for version in 0..=3i16 {
            let g = decode_group_metadata_value(&classic_value(version)).unwrap();
            assert_eq!(g.protocol_type, "consumer");
            assert_eq!(g.generation, 3);
            assert_eq!(g.protocol.as_deref(), Some("range"));
            assert_eq!(g.leader.as_deref(), Some("m"));
            assert_eq!(
                g.current_state_timestamp_ms,
                if version >= 2 { 55 } else { -1 }
            );
            assert_eq!(g.members.len(), 1);
            let m = &g.members[0];
            assert_eq!(
                (m.member_id.as_str(), m.group_instance_id.as_deref()),
                ("m", None)
            );
            assert_eq!(
                (m.client_id.as_str(), m.client_host.as_str()),
                ("cid", "host")
            );
            assert_eq!(m.session_timeout_ms, 10_000);
            // Version 0 has no rebalance timeout: the session timeout stands in.
            let expect_rebalance = if version >= 1 { 60_000 } else { 10_000 };
            assert_eq!(m.rebalance_timeout_ms, expect_rebalance, "v{version}");
            assert_eq!(&m.subscription[..], b"S");
            assert_eq!(&m.assignment[..], b"AA");
        }
    }

    #[test]
    fn group_metadata_value_reads_flexible_version_4() {
        let mut b = vec![0, 4];
        b.push(9);
        b.extend_from_slice(b"consumer");
        b.extend_from_slice(&3i32.to_be_bytes());
        b.push(0); // null protocol
        b.extend_from_slice(&[2, b'm']);
        b.extend_from_slice(&55i64.to_be_bytes());
        b.push(2); // one member
        b.extend_from_slice(&[2, b'm']);
        b.extend_from_slice(&[3, b'i', b'1']);
        b.extend_from_slice(&[4, b'c', b'i', b'd']);
        b.extend_from_slice(&[2, b'h']);
        b.extend_from_slice(&60_000i32.to_be_bytes());
        b.extend_from_slice(&10_000i32.to_be_bytes());
        b.extend_from_slice(&[2, b'S']);
        b.extend_from_slice(&[1]); // empty assignment
        b.extend_from_slice(&[1, 5, 1, 0xee]); // member tagged field
        b.push(0); // no top-level tagged fields
        let g = decode_group_metadata_value(&b).unwrap();
        assert_eq!(g.protocol, None);
        assert_eq!(g.leader.as_deref(), Some("m"));
        assert_eq!(g.current_state_timestamp_ms, 55);
        let m = &g.members[0];
        assert_eq!(m.group_instance_id.as_deref(), Some("i1"));
        assert_eq!(m.client_id, "cid");
        assert_eq!(m.rebalance_timeout_ms, 60_000);
        assert_eq!(&m.subscription[..], b"S");
        assert!(m.assignment.is_empty());
    }

    #[test]
    fn group_metadata_value_never_trusts_counts() {
        let v = encode_group_metadata_value(&sample_group()).unwrap();
        for cut in 0..v.len() {
            assert!(
                decode_group_metadata_value(&v[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        // A member count of i32::MAX with nothing behind it is rejected before any allocation.
        let mut b = encode_group_metadata_value(&StoredGroup {
            members: vec![],
            ..sample_group()
        })
        .unwrap()
        .to_vec();
        let n = b.len();
        b[n - 4..].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_group_metadata_value(&b).is_err());
        // Non-UTF-8 strings are rejected, not replaced.
        let mut bad = classic_value(3);
        bad[4] = 0xff;
        assert!(decode_group_metadata_value(&bad).is_err());
    }

    #[test]
    fn batch_round_trips_and_matches_kafka_protocol_decoder() {
        let recs = vec![
            KeyValue {
                key: Bytes::from_static(b"k1"),
                value: Some(Bytes::from_static(b"v1")),
            },
            KeyValue {
                key: Bytes::from_static(b"k2"),
                value: None,
            },
        ];
        let batch = encode_batch(&recs, 1234).unwrap().freeze();
        crate::log::validate_batches(&batch, 1 << 20).unwrap();
        let walked = walk_batches(&batch);
        assert!(walked.problems.is_empty(), "{:?}", walked.problems);
        assert_eq!(walked.next_offset, Some(2));
        assert_eq!(walked.records.len(), 2);
        assert_eq!(walked.records[1].offset, 1);
        assert_eq!(walked.records[0].value.as_deref(), Some(&b"v1"[..]));
        assert_eq!(walked.records[1].value, None);

        let mut buf = batch.clone();
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf).unwrap();
        let decoded: Vec<_> = sets.iter().flat_map(|s| s.records.iter()).collect();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(decoded[0].timestamp, 1234);
        assert_eq!(decoded[1].offset, 1);
        assert_eq!(decoded[1].value, None);
    }

    #[test]
    fn walk_reports_damage_without_panicking() {
        let recs = vec![KeyValue {
            key: Bytes::from_static(b"k"),
            value: Some(Bytes::from_static(b"v")),
        }];
        let good = encode_batch(&recs, 0).unwrap();
        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0xff;
        let mut both = bad_crc.clone();
        both.extend_from_slice(&good);
        let walked = walk_batches(&both.freeze());
        assert_eq!(walked.records.len(), 1);
        assert_eq!(walked.problems.len(), 1);
        // Every truncation of a batch is survived.
        for cut in 0..good.len() {
            let _ = walk_batches(&Bytes::copy_from_slice(&good[..cut]));
        }
    }
}
