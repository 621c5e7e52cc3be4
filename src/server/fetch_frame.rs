//! FetchResponse framing of our own, so the records read from a segment are written to the socket from the
//! buffer they were read into: the one user-space copy of a fetch is the segment read itself.
//!
//! kafka-protocol's encoder would copy every partition's records into the response buffer. This writes the
//! same bytes (checked against kafka-protocol for every Fetch version, 4 to 18, in the tests below), field
//! by field in schema order, into one small buffer that is split wherever a partition's records go; each
//! records `Bytes` becomes its own chunk of the [`Frame`]. Records of at most [`INLINE_RECORDS_MAX_BYTES`] are
//! copied inline: a tiny copy is cheaper than an extra `iovec`.
//!
//! A partition whose batches the fetch left in the segment file ([`FetchReply::files`]) gets a
//! [`Chunk::File`] where its records go: the connection sends it from the page cache (`sendfile`).
//!
//! The nested structs that carry no records (aborted transactions, tagged fields, node endpoints) are
//! encoded with kafka-protocol's own encoders, exactly as its FetchResponse encoder does.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchResponse, ResponseHeader};
use kafka_protocol::protocol::{Encodable, HeaderVersion};

use super::frame::{Chunk, Frame};
use crate::api::fetch::{FetchReply, SentFromFile};
use crate::log::read_buffer::FileSlice;

/// Records at most this long are copied into the frame rather than sent as a chunk of their own.
pub const INLINE_RECORDS_MAX_BYTES: usize = 512;

/// The Fetch versions this framing writes (the versions kafka-protocol's FetchResponse encodes).
const VERSIONS: std::ops::RangeInclusive<i16> = 4..=18;

/// Encodes a size-prefixed FetchResponse frame: byte for byte what kafka-protocol encodes (with the same
/// response header), with large records left in their own buffers.
pub fn encode_fetch_frame(
    correlation_id: i32,
    version: i16,
    response: &FetchResponse,
) -> anyhow::Result<Frame> {
    encode(correlation_id, version, response, &[])
}

/// [`encode_fetch_frame`] of a fetch's reply: the partitions whose batches are in `reply.files` get them
/// as file chunks, as if their records held those bytes.
pub fn encode_fetch_reply(
    correlation_id: i32,
    version: i16,
    reply: &FetchReply,
) -> anyhow::Result<Frame> {
    encode(correlation_id, version, &reply.response, &reply.files)
}

fn encode(
    correlation_id: i32,
    version: i16,
    response: &FetchResponse,
    files: &[SentFromFile],
) -> anyhow::Result<Frame> {
    if !VERSIONS.contains(&version) {
        bail!("FetchResponse v{version} is not supported");
    }
    let flexible = version >= 12;
    let header_version = FetchResponse::header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    // kafka-protocol sizes those partitions' records as empty: add the file bytes and their longer length.
    let mut from_files = 0usize;
    for file in files {
        let len = file.slice.len();
        from_files += len;
        if flexible {
            from_files += uvarint_len(len + 1) - uvarint_len(1);
        }
    }
    let size = header.compute_size(header_version)? + response.compute_size(version)? + from_files;
    let prefix = i32::try_from(size).context("FetchResponse larger than a frame can be")?;
    let mut chunked = 0usize;
    let mut chunks = 1usize;
    for partition in response.responses.iter().flat_map(|t| &t.partitions) {
        if let Some(records) = partition.records.as_ref().filter(|r| is_chunked(r)) {
            chunked += records.len();
            chunks += 2;
        }
    }
    for file in files {
        chunked += file.slice.len();
        chunks += 2;
    }
    let mut out = ChunkWriter {
        // Exactly the frame's bytes other than the chunked records: the buffer never grows.
        head: BytesMut::with_capacity((4 + size).saturating_sub(chunked)),
        chunks: Vec::with_capacity(chunks),
        files,
        next_file: 0,
    };
    out.head.put_i32(prefix);
    header.encode(&mut out.head, header_version)?;
    encode_response(&mut out, response, version)?;
    if out.next_file != files.len() {
        bail!(
            "FetchResponse names {} file slices it has no partition for",
            files.len() - out.next_file
        );
    }
    let frame = out.finish();
    if frame.len() != 4 + size {
        bail!(
            "FetchResponse v{version} framed as {} bytes, computed {}",
            frame.len(),
            4 + size
        );
    }
    Ok(frame)
}

fn uvarint_len(mut value: usize) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

fn is_chunked(records: &Bytes) -> bool {
    records.len() > INLINE_RECORDS_MAX_BYTES
}

/// The frame being built: the fields written so far since the last records chunk, and the chunks before.
struct ChunkWriter<'a> {
    head: BytesMut,
    chunks: Vec<Chunk>,
    /// The partitions whose records are file slices, in response order, and the next one due.
    files: &'a [SentFromFile],
    next_file: usize,
}

impl ChunkWriter<'_> {
    /// Ends the current run of fields and appends `records` as a chunk of its own (shared, not copied).
    fn push_records(&mut self, records: Chunk) {
        if !self.head.is_empty() {
            // `split` keeps the rest of the capacity in `head`: every field run shares one allocation.
            self.chunks.push(Chunk::Bytes(self.head.split().freeze()));
        }
        self.chunks.push(records);
    }

    /// The file slice holding the records of partition `partition` of topic `topic`, if it is next.
    fn take_file(&mut self, topic: usize, partition: usize) -> Option<FileSlice> {
        let file = self
            .files
            .get(self.next_file)
            .filter(|f| (f.topic, f.partition) == (topic, partition))?;
        self.next_file += 1;
        Some(file.slice.clone())
    }

    fn finish(mut self) -> Frame {
        if !self.head.is_empty() {
            self.chunks.push(Chunk::Bytes(self.head.freeze()));
        }
        Frame::from_parts(self.chunks)
    }
}

/// Kafka's unsigned varint: 7 bits a byte, low bits first, high bit set on all but the last byte.
fn put_uvarint(buf: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// The length of an array, string or byte field; `None` is null. Flexible versions write a varint of
/// length + 1 (0 for null); older ones an i32 (arrays, bytes) or i16 (strings) with -1 for null.
fn put_len(
    buf: &mut BytesMut,
    len: Option<usize>,
    flexible: bool,
    short: bool,
) -> anyhow::Result<()> {
    match (len, flexible) {
        (None, true) => put_uvarint(buf, 0),
        (None, false) if short => buf.put_i16(-1),
        (None, false) => buf.put_i32(-1),
        (Some(len), true) => {
            let len = u32::try_from(len)
                .ok()
                .filter(|&l| l < u32::MAX)
                .context("field too long to encode")?;
            put_uvarint(buf, len + 1);
        }
        (Some(len), false) if short => {
            buf.put_i16(i16::try_from(len).context("string too long to encode")?)
        }
        (Some(len), false) => buf.put_i32(i32::try_from(len).context("field too long to encode")?),
    }
    Ok(())
}

/// An array of structs, each encoded by kafka-protocol; `None` is a null array.
fn put_structs<T: Encodable>(
    buf: &mut BytesMut,
    items: Option<&[T]>,
    version: i16,
) -> anyhow::Result<()> {
    put_len(buf, items.map(<[T]>::len), version >= 12, false)?;
    for item in items.unwrap_or_default() {
        item.encode(buf, version)?;
    }
    Ok(())
}

/// Tagged fields the schema does not know, in tag order, from `range` (as kafka-protocol writes them).
fn unknown_tagged_fields(
    buf: &mut BytesMut,
    fields: &BTreeMap<i32, Bytes>,
    range: std::ops::RangeFrom<i32>,
) -> anyhow::Result<()> {
    for (&tag, value) in fields.range(range) {
        let len = u32::try_from(value.len()).context("tagged field too long to encode")?;
        put_uvarint(buf, tag as u32);
        put_uvarint(buf, len);
        buf.put_slice(value);
    }
    Ok(())
}

/// A tagged field: tag, size, then the value (`size` bytes written by `value`).
fn tagged(
    buf: &mut BytesMut,
    tag: u32,
    size: usize,
    value: impl FnOnce(&mut BytesMut) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    put_uvarint(buf, tag);
    put_uvarint(
        buf,
        u32::try_from(size).context("tagged field too large to encode")?,
    );
    value(buf)
}

fn tagged_count(count: usize) -> anyhow::Result<u32> {
    u32::try_from(count).context("too many tagged fields to encode")
}

fn encode_response(
    out: &mut ChunkWriter,
    response: &FetchResponse,
    version: i16,
) -> anyhow::Result<()> {
    let flexible = version >= 12;
    let buf = &mut out.head;
    buf.put_i32(response.throttle_time_ms);
    if version >= 7 {
        buf.put_i16(response.error_code);
        buf.put_i32(response.session_id);
    } else if response.session_id != 0 {
        bail!("FetchResponse v{version} cannot carry a session id");
    }
    put_len(buf, Some(response.responses.len()), flexible, false)?;
    for (index, topic) in response.responses.iter().enumerate() {
        encode_topic(out, topic, index, version)?;
    }
    if flexible {
        let buf = &mut out.head;
        let endpoints = &response.node_endpoints;
        let with_endpoints = version >= 16 && !endpoints.is_empty();
        let count = response.unknown_tagged_fields.len() + usize::from(with_endpoints);
        put_uvarint(buf, tagged_count(count)?);
        if with_endpoints {
            // Small and rare (brook sets none today): encoded aside to learn its size.
            let mut array = BytesMut::new();
            put_structs(&mut array, Some(endpoints), version)?;
            tagged(buf, 0, array.len(), |buf| {
                buf.put_slice(&array);
                Ok(())
            })?;
        }
        // Tag 0 is node_endpoints; kafka-protocol writes unknown fields from tag 1.
        unknown_tagged_fields(buf, &response.unknown_tagged_fields, 1..)?;
    }
    Ok(())
}

fn encode_topic(
    out: &mut ChunkWriter,
    topic: &FetchableTopicResponse,
    topic_index: usize,
    version: i16,
) -> anyhow::Result<()> {
    let flexible = version >= 12;
    let buf = &mut out.head;
    // Topics are named up to v12 and identified by id from v13.
    if version <= 12 {
        let name = topic.topic.0.as_bytes();
        put_len(buf, Some(name.len()), flexible, true)?;
        buf.put_slice(name);
    } else {
        buf.put_slice(topic.topic_id.as_bytes());
    }
    put_len(buf, Some(topic.partitions.len()), flexible, false)?;
    for (index, partition) in topic.partitions.iter().enumerate() {
        encode_partition(out, partition, (topic_index, index), version)?;
    }
    if flexible {
        let buf = &mut out.head;
        put_uvarint(buf, tagged_count(topic.unknown_tagged_fields.len())?);
        unknown_tagged_fields(buf, &topic.unknown_tagged_fields, 0..)?;
    }
    Ok(())
}

fn encode_partition(
    out: &mut ChunkWriter,
    partition: &PartitionData,
    (topic_index, partition_index): (usize, usize),
    version: i16,
) -> anyhow::Result<()> {
    let flexible = version >= 12;
    let buf = &mut out.head;
    buf.put_i32(partition.partition_index);
    buf.put_i16(partition.error_code);
    buf.put_i64(partition.high_watermark);
    buf.put_i64(partition.last_stable_offset);
    if version >= 5 {
        buf.put_i64(partition.log_start_offset);
    }
    put_structs(buf, partition.aborted_transactions.as_deref(), version)?;
    if version >= 11 {
        buf.put_i32(partition.preferred_read_replica.0);
    } else if partition.preferred_read_replica != -1 {
        bail!("FetchResponse v{version} cannot carry a preferred read replica");
    }
    let records = partition.records.as_ref();
    if let Some(slice) = out.take_file(topic_index, partition_index) {
        if records.is_none_or(|r| !r.is_empty()) {
            bail!("a partition sent from a file must carry empty records");
        }
        put_len(&mut out.head, Some(slice.len()), flexible, false)?;
        out.push_records(Chunk::File(slice));
    } else {
        let buf = &mut out.head;
        put_len(buf, records.map(Bytes::len), flexible, false)?;
        match records {
            Some(records) if is_chunked(records) => out.push_records(Chunk::Bytes(records.clone())),
            Some(records) => buf.put_slice(records),
            None => {}
        }
    }
    if flexible {
        let buf = &mut out.head;
        let diverging = partition.diverging_epoch != Default::default();
        let leader = partition.current_leader != Default::default();
        let snapshot = partition.snapshot_id != Default::default();
        let count = partition.unknown_tagged_fields.len()
            + usize::from(diverging)
            + usize::from(leader)
            + usize::from(snapshot);
        put_uvarint(buf, tagged_count(count)?);
        if diverging {
            tagged_struct(buf, 0, &partition.diverging_epoch, version)?;
        }
        if leader {
            tagged_struct(buf, 1, &partition.current_leader, version)?;
        }
        if snapshot {
            tagged_struct(buf, 2, &partition.snapshot_id, version)?;
        }
        unknown_tagged_fields(buf, &partition.unknown_tagged_fields, 3..)?;
    }
    Ok(())
}

/// A tagged field holding a struct, encoded by kafka-protocol.
fn tagged_struct<T: Encodable>(
    buf: &mut BytesMut,
    tag: u32,
    value: &T,
    version: i16,
) -> anyhow::Result<()> {
    let size = value.compute_size(version)?;
    tagged(buf, tag, size, |buf| value.encode(buf, version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, EpochEndOffset, LeaderIdAndEpoch, NodeEndpoint, SnapshotId,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use uuid::Uuid;

    /// kafka-protocol's own encoding of the same frame: the reference.
    fn reference(correlation_id: i32, version: i16, response: &FetchResponse) -> Bytes {
        let header_version = FetchResponse::header_version(version);
        let header = ResponseHeader::default().with_correlation_id(correlation_id);
        let size =
            header.compute_size(header_version).unwrap() + response.compute_size(version).unwrap();
        let mut buf = BytesMut::new();
        buf.put_i32(size as i32);
        header.encode(&mut buf, header_version).unwrap();
        response.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    /// Distinct, recognisable bytes standing for a partition's record batches.
    fn records(len: usize, seed: u8) -> Bytes {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>()
            .into()
    }

    fn topic_name(name: &'static str) -> TopicName {
        TopicName(StrBytes::from_static_str(name))
    }

    /// Partitions as brook builds them (data, no data, errors) plus the fields it does not set today.
    fn partitions(version: i16, seed: u8) -> Vec<PartitionData> {
        let read_replica: BrokerId = (if version >= 11 { 3 } else { -1 }).into();
        let mut list = vec![
            PartitionData::default()
                .with_partition_index(0)
                .with_high_watermark(1_000)
                .with_last_stable_offset(1_000)
                .with_log_start_offset(7)
                .with_preferred_read_replica((-1).into())
                .with_records(Some(records(4_000, seed))),
            PartitionData::default()
                .with_partition_index(1)
                .with_high_watermark(5)
                .with_last_stable_offset(5)
                .with_preferred_read_replica(read_replica)
                .with_aborted_transactions(Some(Vec::new()))
                .with_records(Some(records(100, seed + 1))),
            // Exactly at and just over the inline limit.
            PartitionData::default()
                .with_partition_index(2)
                .with_preferred_read_replica((-1).into())
                .with_records(Some(records(INLINE_RECORDS_MAX_BYTES, seed + 2))),
            PartitionData::default()
                .with_partition_index(3)
                .with_preferred_read_replica((-1).into())
                .with_records(Some(records(INLINE_RECORDS_MAX_BYTES + 1, seed + 3))),
            // Caught up: empty records.
            PartitionData::default()
                .with_partition_index(4)
                .with_high_watermark(42)
                .with_last_stable_offset(42)
                .with_preferred_read_replica((-1).into())
                .with_records(Some(Bytes::new())),
            // An error: no offsets, null records.
            PartitionData::default()
                .with_partition_index(5)
                .with_error_code(3)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica((-1).into())
                .with_records(None),
            PartitionData::default()
                .with_partition_index(6)
                .with_preferred_read_replica((-1).into())
                .with_aborted_transactions(Some(vec![
                    AbortedTransaction::default()
                        .with_producer_id(9.into())
                        .with_first_offset(11),
                    AbortedTransaction::default()
                        .with_producer_id(10.into())
                        .with_first_offset(12),
                ]))
                .with_records(Some(records(70_000, seed + 4))),
        ];
        // Tagged fields (v12+) are set at every version: older versions leave them out.
        list.push(
            PartitionData::default()
                .with_partition_index(7)
                .with_preferred_read_replica(read_replica)
                .with_diverging_epoch(EpochEndOffset::default().with_epoch(2).with_end_offset(30))
                .with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(1.into())
                        .with_leader_epoch(4),
                )
                .with_snapshot_id(SnapshotId::default().with_end_offset(8).with_epoch(1))
                .with_unknown_tagged_field(3, Bytes::from_static(b"tag3"))
                .with_unknown_tagged_field(9, Bytes::new())
                .with_records(Some(records(3_000, seed + 5))),
        );
        list.push(
            PartitionData::default()
                .with_partition_index(8)
                .with_preferred_read_replica((-1).into())
                .with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(1.into())
                        .with_leader_epoch(0),
                )
                .with_records(Some(records(600, seed + 6))),
        );
        list
    }

    /// Responses covering every field brook sets, and the others the schema allows at `version`.
    fn responses(version: i16) -> Vec<FetchResponse> {
        let topic_a = FetchableTopicResponse::default()
            .with_topic(topic_name("alpha"))
            .with_topic_id(Uuid::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677))
            .with_partitions(partitions(version, 1))
            // Tagged (v12+), set at every version: older versions leave it out.
            .with_unknown_tagged_field(3, Bytes::from_static(b"topic tag"));
        let topic_b = FetchableTopicResponse::default()
            .with_topic(topic_name("b"))
            .with_topic_id(Uuid::from_u128(7))
            .with_partitions(partitions(version, 50));
        let unknown_topic = FetchableTopicResponse::default()
            .with_topic(topic_name("missing"))
            .with_partitions(vec![
                PartitionData::default()
                    .with_partition_index(0)
                    .with_error_code(3)
                    .with_high_watermark(-1)
                    .with_last_stable_offset(-1)
                    .with_log_start_offset(-1)
                    .with_preferred_read_replica((-1).into())
                    .with_records(Some(Bytes::new())),
            ]);
        let session = if version >= 7 { 77 } else { 0 };
        let full = FetchResponse::default()
            .with_throttle_time_ms(12)
            .with_session_id(session)
            .with_responses(vec![topic_a, topic_b, unknown_topic]);
        // Node endpoints (v16+) and tagged fields (v12+) are set at every version: older ones leave them out.
        let full = full
            .with_unknown_tagged_field(2, Bytes::from_static(b"resp"))
            .with_unknown_tagged_field(6, Bytes::from_static(b"x"))
            .with_node_endpoints(vec![
                NodeEndpoint::default()
                    .with_node_id(1.into())
                    .with_host(StrBytes::from_static_str("broker-1"))
                    .with_port(9092)
                    .with_rack(Some(StrBytes::from_static_str("r1"))),
                NodeEndpoint::default()
                    .with_node_id(2.into())
                    .with_host(StrBytes::from_static_str("broker-2"))
                    .with_port(9093),
            ]);
        vec![
            FetchResponse::default(),
            // brook's answer to an unknown fetch session.
            FetchResponse::default().with_error_code(70),
            // Topics without partitions, and a topic whose only partition is empty.
            FetchResponse::default().with_responses(vec![
                FetchableTopicResponse::default().with_topic(topic_name("t")),
                FetchableTopicResponse::default()
                    .with_topic(topic_name("u"))
                    .with_partitions(vec![
                        PartitionData::default()
                            .with_preferred_read_replica((-1).into())
                            .with_records(Some(Bytes::new())),
                    ]),
            ]),
            full,
        ]
    }

    #[test]
    fn fetch_frame_matches_kafka_protocol_for_every_version() {
        for version in VERSIONS {
            for (case, response) in responses(version).iter().enumerate() {
                let expected = reference(-5 + version as i32, version, response);
                let frame = encode_fetch_frame(-5 + version as i32, version, response)
                    .unwrap_or_else(|e| panic!("v{version} case {case}: {e}"));
                assert_eq!(
                    frame.len(),
                    expected.len(),
                    "v{version} case {case}: length"
                );
                assert!(
                    frame.to_bytes() == expected,
                    "v{version} case {case}: bytes differ from kafka-protocol's encoding"
                );
            }
        }
    }

    #[test]
    fn large_records_are_chunks_of_their_own_buffers() {
        for version in VERSIONS {
            let response = responses(version).pop().expect("the full response");
            let frame = encode_fetch_frame(1, version, &response).unwrap();
            let chunks: Vec<Bytes> = frame
                .into_chunks()
                .map(|c| match c {
                    Chunk::Bytes(b) => b,
                    Chunk::File(f) => panic!("no file slices here: {f:?}"),
                })
                .collect();
            let mut chunked = 0;
            for partition in response.responses.iter().flat_map(|t| &t.partitions) {
                let Some(records) = &partition.records else {
                    continue;
                };
                let shared = chunks
                    .iter()
                    .any(|c| c.as_ptr() == records.as_ptr() && c.len() == records.len());
                assert_eq!(
                    shared,
                    records.len() > INLINE_RECORDS_MAX_BYTES,
                    "v{version} partition {}: {} bytes of records",
                    partition.partition_index,
                    records.len()
                );
                chunked += usize::from(shared);
            }
            assert!(chunked >= 6, "v{version}: {chunked} records chunks");
            // Fields around the records: one run before each records chunk, one after the last.
            assert_eq!(chunks.len(), 2 * chunked + 1, "v{version}");
        }
    }

    #[test]
    fn records_left_in_a_file_frame_as_if_they_were_in_memory() {
        use crate::api::fetch::{FetchReply, SentFromFile};
        use std::io::Write;
        let data = records(300_000, 9);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let file = std::sync::Arc::new(file);
        // Lengths whose flexible length prefix takes 2 and 3 bytes.
        for (position, len) in [(5u64, 200usize), (1_000, 299_000)] {
            let slice = FileSlice::new(file.clone(), position, len, 1);
            for version in VERSIONS {
                let mut in_memory = responses(version).pop().expect("the full response");
                let mut from_file = in_memory.clone();
                let wanted = &data[position as usize..position as usize + len];
                in_memory.responses[1].partitions[4].records = Some(Bytes::copy_from_slice(wanted));
                let reply = FetchReply {
                    response: from_file.clone(),
                    files: vec![SentFromFile {
                        topic: 1,
                        partition: 4,
                        slice: slice.clone(),
                    }],
                };
                let framed = encode_fetch_reply(3, version, &reply).unwrap();
                let expected = reference(3, version, &in_memory);
                assert_eq!(framed.len(), expected.len(), "v{version} len {len}");
                assert!(framed.has_file_chunks());
                assert!(
                    framed.to_bytes() == expected,
                    "v{version} len {len}: bytes differ"
                );
                // A file for a partition whose records are not empty is a bug, refused.
                from_file.responses[1].partitions[0].records = None;
                let wrong = FetchReply {
                    response: from_file,
                    files: vec![SentFromFile {
                        topic: 1,
                        partition: 0,
                        slice: slice.clone(),
                    }],
                };
                assert!(encode_fetch_reply(3, version, &wrong).is_err());
            }
        }
    }

    #[test]
    fn fields_a_version_cannot_carry_are_refused_like_kafka_protocol() {
        let with_session = FetchResponse::default().with_session_id(5);
        assert!(encode_fetch_frame(0, 6, &with_session).is_err());
        assert!(with_session.encode(&mut BytesMut::new(), 6).is_err());
        let replica = FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default().with_partitions(vec![
                PartitionData::default().with_preferred_read_replica(2.into()),
            ]),
        ]);
        assert!(encode_fetch_frame(0, 10, &replica).is_err());
        assert!(replica.encode(&mut BytesMut::new(), 10).is_err());
        assert!(encode_fetch_frame(0, 3, &FetchResponse::default()).is_err());
        assert!(encode_fetch_frame(0, 19, &FetchResponse::default()).is_err());
    }
}
