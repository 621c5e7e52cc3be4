//! Request bodies of the versions Kafka 4 removed (KIP-896), written by hand from Kafka 3.9's schemas:
//! kafka-protocol 0.18 cannot encode them. Shared by tests/legacy_versions.rs and the fuzz seed corpus
//! generator (fuzz/examples/gen_corpus.rs includes this file by path).
#![allow(dead_code)]

use bytes::{BufMut, BytesMut};

/// A body under construction, in the non-flexible wire types.
#[derive(Default)]
pub struct Body(pub BytesMut);

impl Body {
    pub fn i8(mut self, v: i8) -> Self {
        self.0.put_i8(v);
        self
    }
    pub fn i16(mut self, v: i16) -> Self {
        self.0.put_i16(v);
        self
    }
    pub fn i32(mut self, v: i32) -> Self {
        self.0.put_i32(v);
        self
    }
    pub fn i64(mut self, v: i64) -> Self {
        self.0.put_i64(v);
        self
    }
    pub fn str(mut self, v: &str) -> Self {
        self.0.put_i16(v.len() as i16);
        self.0.put_slice(v.as_bytes());
        self
    }
    pub fn null_str(self) -> Self {
        self.i16(-1)
    }
    pub fn bytes(self) -> Vec<u8> {
        self.0.to_vec()
    }
}

/// A request frame without its size prefix: request header v1 (key, version, correlation id, client id).
pub fn frame(key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Body::default()
        .i16(key)
        .i16(version)
        .i32(correlation_id)
        .str("legacy-client")
        .bytes();
    out.extend_from_slice(body);
    out
}

/// The same frame with its size prefix, ready for a socket.
pub fn sized(frame: &[u8]) -> Vec<u8> {
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(frame);
    out
}

/// ListOffsets v0: one partition at `timestamp`, asking for up to `max_num_offsets` offsets.
pub fn list_offsets_v0(
    topic: &str,
    partition: i32,
    timestamp: i64,
    max_num_offsets: i32,
) -> Vec<u8> {
    Body::default()
        .i32(-1) // replica id: a consumer
        .i32(1)
        .str(topic)
        .i32(1)
        .i32(partition)
        .i64(timestamp)
        .i32(max_num_offsets)
        .bytes()
}

/// OffsetCommit v0 (no generation, member or timestamp) or v1 (`member`: generation and member id, and a
/// commit timestamp).
pub fn offset_commit(
    version: i16,
    group: &str,
    (generation, member): (i32, &str),
    topic: &str,
    partition: i32,
    offset: i64,
    metadata: &str,
) -> Vec<u8> {
    let mut b = Body::default().str(group);
    if version >= 1 {
        b = b.i32(generation).str(member);
    }
    b = b.i32(1).str(topic).i32(1).i32(partition).i64(offset);
    if version >= 1 {
        b = b.i64(-1); // commit timestamp: the broker's clock
    }
    b.str(metadata).bytes()
}

/// OffsetFetch v0: the listed partitions of one topic.
pub fn offset_fetch_v0(group: &str, topic: &str, partitions: &[i32]) -> Vec<u8> {
    let mut b = Body::default()
        .str(group)
        .i32(1)
        .str(topic)
        .i32(partitions.len() as i32);
    for &p in partitions {
        b = b.i32(p);
    }
    b.bytes()
}

/// CreateTopics v0 or v1 (adds validate_only): one topic without assignments, with `configs`.
pub fn create_topics(
    version: i16,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
    validate_only: bool,
) -> Vec<u8> {
    let mut b = Body::default()
        .i32(1)
        .str(topic)
        .i32(partitions)
        .i16(1)
        .i32(0) // no assignments
        .i32(configs.len() as i32);
    for (name, value) in configs {
        b = b.str(name).str(value);
    }
    b = b.i32(30_000);
    if version >= 1 {
        b = b.i8(i8::from(validate_only));
    }
    b.bytes()
}

/// DeleteTopics v0: topic names and a timeout.
pub fn delete_topics_v0(topics: &[&str]) -> Vec<u8> {
    let mut b = Body::default().i32(topics.len() as i32);
    for t in topics {
        b = b.str(t);
    }
    b.i32(30_000).bytes()
}

/// DescribeConfigs v0: one resource (2 topic, 4 broker), all keys when `keys` is None.
pub fn describe_configs_v0(resource_type: i8, name: &str, keys: Option<&[&str]>) -> Vec<u8> {
    let b = Body::default().i32(1).i8(resource_type).str(name);
    match keys {
        None => b.i32(-1).bytes(),
        Some(keys) => {
            let mut b = b.i32(keys.len() as i32);
            for k in keys {
                b = b.str(k);
            }
            b.bytes()
        }
    }
}

/// DescribeLogDirs v0: one topic's partitions, or every partition when `topic` is None.
pub fn describe_log_dirs_v0(topic: Option<(&str, &[i32])>) -> Vec<u8> {
    match topic {
        None => Body::default().i32(-1).bytes(),
        Some((name, partitions)) => {
            let mut b = Body::default()
                .i32(1)
                .str(name)
                .i32(partitions.len() as i32);
            for &p in partitions {
                b = b.i32(p);
            }
            b.bytes()
        }
    }
}

/// OffsetForLeaderEpoch v0 and v1 (same request): one partition's end offset for `leader_epoch`.
pub fn offset_for_leader_epoch(topic: &str, partition: i32, leader_epoch: i32) -> Vec<u8> {
    Body::default()
        .i32(1)
        .str(topic)
        .i32(1)
        .i32(partition)
        .i32(leader_epoch)
        .bytes()
}
