//! Request versions that Kafka 4 removed (KIP-896) but Kafka 3.9 still served, kept for the clients that
//! still send them (Sarama 1.22 sends DescribeConfigs v0 and OffsetCommit v1; old admin tools send
//! CreateTopics v0-1, DeleteTopics v0, ListOffsets v0).
//!
//! kafka-protocol is generated from Kafka 4.1's schemas, so these versions are decoded here by hand (bounded,
//! see [`wire`]) into today's request structs; the API modules answer them as they answer the oldest version
//! the codec knows, and the answer is written in the old version's format, by hand or, where Kafka 3.9's
//! schemas make the old format byte-identical to a version the codec knows, by the codec at that version.
//! Produce v0-2 (message formats v0/v1) and Fetch v0-3 stay out: brook stores message format v2 only.

mod admin;
mod offsets;
mod produce;
mod wire;

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    DescribeLogDirsRequest, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest,
    OffsetForLeaderEpochRequest, TopicName,
};

pub use admin::{create_topics_response, delete_topics_v0_response, describe_configs_v0_response};
pub use offsets::{
    list_offsets_v0_response, offset_commit_v0_refusal, offset_fetch_v0_refusal,
    offset_for_leader_epoch_response,
};
pub use produce::unsupported_version_frame as produce_unsupported_version_frame;

/// The versions served through this module, per API (all use request header v1 and response header v0).
pub const LEGACY_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ListOffsets, 0, 0),
    (ApiKey::OffsetCommit, 0, 1),
    (ApiKey::OffsetFetch, 0, 0),
    (ApiKey::CreateTopics, 0, 1),
    (ApiKey::DeleteTopics, 0, 0),
    (ApiKey::DescribeConfigs, 0, 0),
    (ApiKey::DescribeLogDirs, 0, 0),
    (ApiKey::OffsetForLeaderEpoch, 0, 1),
];

/// Whether this api key and version is decoded here rather than by the codec.
pub fn is_legacy(key: ApiKey, version: i16) -> bool {
    LEGACY_VERSIONS
        .iter()
        .any(|&(k, min, max)| k == key && (min..=max).contains(&version))
}

/// Why a legacy request body (or, through a bug, its answer) could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("{field}: {needed} bytes needed, {remaining} left")]
    Truncated {
        field: &'static str,
        needed: usize,
        remaining: usize,
    },
    #[error("{field}: {count} entries cannot fit in the {remaining} bytes left")]
    ArrayTooLong {
        field: &'static str,
        count: usize,
        remaining: usize,
    },
    #[error("{0} is null where the schema does not allow it")]
    UnexpectedNull(&'static str),
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("{0} too long for its wire type")]
    TooLong(&'static str),
    #[error("{0:?} v{1} is not a legacy version")]
    NotLegacy(ApiKey, i16),
}

/// A legacy request, decoded into the struct of the version its API module answers.
#[derive(Debug)]
pub enum LegacyRequest {
    /// ListOffsets v0, answered by the v1 path; `max_num_offsets` per (topic, partition) caps the old answer.
    ListOffsetsV0 {
        request: ListOffsetsRequest,
        max_num_offsets: Vec<(TopicName, i32, i32)>,
    },
    /// OffsetCommit v0: ZooKeeper-stored offsets, refused by a KRaft broker (see `offset_commit_v0_refusal`).
    OffsetCommitV0(OffsetCommitRequest),
    /// OffsetCommit v1: stored like v2+ (its commit timestamp is ignored, as Kafka 3.9 ignores it).
    OffsetCommitV1(OffsetCommitRequest),
    /// OffsetFetch v0: ZooKeeper-stored offsets, refused by a KRaft broker (see `offset_fetch_v0_refusal`).
    OffsetFetchV0(OffsetFetchRequest),
    CreateTopics {
        version: i16,
        request: CreateTopicsRequest,
    },
    DeleteTopicsV0(DeleteTopicsRequest),
    DescribeConfigsV0(DescribeConfigsRequest),
    /// DescribeLogDirs v0: the same request and response as v1 (v1 only changed throttling behaviour).
    DescribeLogDirsV0(DescribeLogDirsRequest),
    OffsetForLeaderEpoch {
        version: i16,
        request: OffsetForLeaderEpochRequest,
    },
}

/// Decodes the body (after the request header) of a legacy version.
pub fn decode(key: ApiKey, version: i16, body: Bytes) -> Result<LegacyRequest, LegacyError> {
    if !is_legacy(key, version) {
        return Err(LegacyError::NotLegacy(key, version));
    }
    let mut r = wire::Reader::new(body);
    Ok(match key {
        ApiKey::ListOffsets => offsets::list_offsets_v0(&mut r)?,
        ApiKey::OffsetCommit => offsets::offset_commit(&mut r, version)?,
        ApiKey::OffsetFetch => LegacyRequest::OffsetFetchV0(offsets::offset_fetch_v0(&mut r)?),
        ApiKey::CreateTopics => LegacyRequest::CreateTopics {
            version,
            request: admin::create_topics(&mut r, version)?,
        },
        ApiKey::DeleteTopics => LegacyRequest::DeleteTopicsV0(admin::delete_topics_v0(&mut r)?),
        ApiKey::DescribeConfigs => {
            LegacyRequest::DescribeConfigsV0(admin::describe_configs_v0(&mut r)?)
        }
        ApiKey::DescribeLogDirs => {
            LegacyRequest::DescribeLogDirsV0(admin::describe_log_dirs_v0(&mut r)?)
        }
        ApiKey::OffsetForLeaderEpoch => LegacyRequest::OffsetForLeaderEpoch {
            version,
            request: offsets::offset_for_leader_epoch(&mut r)?,
        },
        _ => return Err(LegacyError::NotLegacy(key, version)),
    })
}

/// A size-prefixed response frame around a hand-written body: response header v0 (the correlation id).
pub fn frame(correlation_id: i32, body: &[u8]) -> Result<Bytes, LegacyError> {
    let size = i32::try_from(4 + body.len()).map_err(|_| LegacyError::TooLong("response"))?;
    let mut out = bytes::BytesMut::with_capacity(8 + body.len());
    out.put_i32(size);
    out.put_i32(correlation_id);
    out.put_slice(body);
    Ok(out.freeze())
}

#[cfg(test)]
#[path = "../../../tests/common/legacy_frames.rs"]
mod legacy_frames;

#[cfg(test)]
mod tests {
    use super::legacy_frames as lf;
    use super::*;
    use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
    use kafka_protocol::messages::describe_configs_response::{
        DescribeConfigsResourceResult, DescribeConfigsResult,
    };
    use kafka_protocol::messages::list_offsets_response::{
        ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
    };
    use kafka_protocol::messages::{
        CreateTopicsResponse, DescribeConfigsResponse, ListOffsetsResponse,
    };
    use kafka_protocol::protocol::StrBytes;

    fn samples() -> Vec<(ApiKey, i16, Vec<u8>)> {
        vec![
            (ApiKey::ListOffsets, 0, lf::list_offsets_v0("t", 2, -2, 5)),
            (
                ApiKey::OffsetCommit,
                0,
                lf::offset_commit(0, "g", (-1, ""), "t", 1, 9, "m"),
            ),
            (
                ApiKey::OffsetCommit,
                1,
                lf::offset_commit(1, "g", (3, "m-1"), "t", 1, 9, "m"),
            ),
            (
                ApiKey::OffsetFetch,
                0,
                lf::offset_fetch_v0("g", "t", &[0, 4]),
            ),
            (
                ApiKey::CreateTopics,
                0,
                lf::create_topics(0, "t", 3, &[("a", "b")], false),
            ),
            (
                ApiKey::CreateTopics,
                1,
                lf::create_topics(1, "t", 3, &[], true),
            ),
            (ApiKey::DeleteTopics, 0, lf::delete_topics_v0(&["t", "u"])),
            (
                ApiKey::DescribeConfigs,
                0,
                lf::describe_configs_v0(2, "t", Some(&["k"])),
            ),
            (
                ApiKey::DescribeLogDirs,
                0,
                lf::describe_log_dirs_v0(Some(("t", &[0]))),
            ),
            (
                ApiKey::OffsetForLeaderEpoch,
                0,
                lf::offset_for_leader_epoch("t", 0, 7),
            ),
            (
                ApiKey::OffsetForLeaderEpoch,
                1,
                lf::offset_for_leader_epoch("t", 0, 7),
            ),
        ]
    }

    #[test]
    fn old_bodies_decode_into_todays_requests() {
        for (key, version, body) in samples() {
            let decoded = decode(key, version, Bytes::from(body));
            let decoded = decoded.unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
            match decoded {
                LegacyRequest::ListOffsetsV0 {
                    request,
                    max_num_offsets,
                } => {
                    let p = &request.topics[0].partitions[0];
                    assert_eq!((p.partition_index, p.timestamp), (2, -2));
                    assert_eq!(
                        max_num_offsets,
                        vec![(request.topics[0].name.clone(), 2, 5)]
                    );
                }
                LegacyRequest::OffsetCommitV0(r) => {
                    assert_eq!(r.generation_id_or_member_epoch, -1);
                    let p = &r.topics[0].partitions[0];
                    assert_eq!((p.partition_index, p.committed_offset), (1, 9));
                }
                LegacyRequest::OffsetCommitV1(r) => {
                    assert_eq!(
                        (r.generation_id_or_member_epoch, r.member_id.as_str()),
                        (3, "m-1")
                    );
                    let p = &r.topics[0].partitions[0];
                    assert_eq!(p.committed_metadata.as_deref(), Some("m"));
                }
                LegacyRequest::OffsetFetchV0(r) => {
                    assert_eq!(r.topics.expect("topics")[0].partition_indexes, vec![0, 4])
                }
                LegacyRequest::CreateTopics { version, request } => {
                    assert_eq!(request.topics[0].num_partitions, 3);
                    assert_eq!(request.validate_only, version == 1);
                    assert_eq!(request.topics[0].configs.len(), 1 - version as usize);
                }
                LegacyRequest::DeleteTopicsV0(r) => assert_eq!(r.topic_names.len(), 2),
                LegacyRequest::DescribeConfigsV0(r) => {
                    assert_eq!(r.resources[0].resource_type, 2);
                    assert!(!r.include_synonyms);
                }
                LegacyRequest::DescribeLogDirsV0(r) => assert!(r.topics.is_some()),
                LegacyRequest::OffsetForLeaderEpoch { request, .. } => {
                    let p = &request.topics[0].partitions[0];
                    assert_eq!((p.leader_epoch, p.current_leader_epoch), (7, -1));
                }
            }
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for (key, version, body) in samples() {
            for len in 0..body.len() {
                assert!(
                    decode(key, version, Bytes::copy_from_slice(&body[..len])).is_err(),
                    "{key:?} v{version} cut at {len} of {}",
                    body.len()
                );
            }
        }
    }

    #[test]
    fn crafted_counts_allocate_nothing() {
        let crafted = lf::Body::default().i32(i32::MAX).i16(0).bytes();
        for &(key, min, max) in LEGACY_VERSIONS {
            for version in min..=max {
                // ListOffsets v0 starts with a replica id, OffsetCommit/OffsetFetch with a group id.
                let prefix = match key {
                    ApiKey::ListOffsets => lf::Body::default().i32(-1).bytes(),
                    ApiKey::OffsetCommit if version == 1 => {
                        lf::Body::default().str("g").i32(-1).str("").bytes()
                    }
                    ApiKey::OffsetCommit | ApiKey::OffsetFetch => {
                        lf::Body::default().str("g").bytes()
                    }
                    _ => Vec::new(),
                };
                let body = [prefix, crafted.clone()].concat();
                match decode(key, version, Bytes::from(body)) {
                    Err(LegacyError::ArrayTooLong { count, .. }) => {
                        assert_eq!(count, i32::MAX as usize)
                    }
                    other => panic!("{key:?} v{version}: {other:?}"),
                }
            }
        }
        assert!(matches!(
            decode(ApiKey::Metadata, 0, Bytes::new()),
            Err(LegacyError::NotLegacy(ApiKey::Metadata, 0))
        ));
    }

    #[test]
    fn mutated_bodies_never_panic() {
        // A fixed xorshift sequence: each sample with bytes overwritten, and in every api key and version.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut decoded = 0;
        for (_, _, body) in samples() {
            for _ in 0..500 {
                let mut body = body.clone();
                for _ in 0..1 + next() % 4 {
                    let at = (next() % body.len() as u64) as usize;
                    body[at] = next() as u8;
                }
                for &(key, min, max) in LEGACY_VERSIONS {
                    for version in min..=max {
                        decoded +=
                            usize::from(decode(key, version, Bytes::from(body.clone())).is_ok());
                    }
                }
            }
        }
        assert!(decoded > 0, "some mutations still decode");
    }

    #[test]
    fn create_topics_answers_drop_what_v0_and_v1_lack() {
        let response = CreateTopicsResponse::default()
            .with_throttle_time_ms(9)
            .with_topics(vec![
                CreatableTopicResult::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_error_code(36)
                    .with_error_message(Some(StrBytes::from_static_str("taken")))
                    .with_num_partitions(3),
            ]);
        let v0 = create_topics_response(0, &response).expect("encodes");
        assert_eq!(v0, lf::Body::default().i32(1).str("t").i16(36).bytes());
        let v1 = create_topics_response(1, &response).expect("encodes");
        assert_eq!(
            v1,
            lf::Body::default()
                .i32(1)
                .str("t")
                .i16(36)
                .str("taken")
                .bytes()
        );
    }

    #[test]
    fn describe_configs_v0_flags_defaults() {
        let config = |name: &'static str, source: i8| {
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(name))
                .with_value(Some(StrBytes::from_static_str("v")))
                .with_config_source(source)
        };
        let response = DescribeConfigsResponse::default().with_results(vec![
            DescribeConfigsResult::default()
                .with_error_message(None)
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configs(vec![config("set", 1), config("unset", 5)]),
        ]);
        let body = describe_configs_v0_response(&response).expect("encodes");
        let want = lf::Body::default()
            .i32(0)
            .i32(1)
            .i16(0)
            .null_str()
            .i8(2)
            .str("t")
            .i32(2)
            .str("set")
            .str("v")
            .i8(0)
            .i8(0)
            .i8(0)
            .str("unset")
            .str("v")
            .i8(0)
            .i8(1)
            .i8(0)
            .bytes();
        assert_eq!(body, want);
    }

    #[test]
    fn list_offsets_v0_answers_at_most_max_num_offsets_except_latest() {
        let name = TopicName(StrBytes::from_static_str("t"));
        let body = lf::list_offsets_v0("t", 0, 100, 0);
        let Ok(LegacyRequest::ListOffsetsV0 {
            request,
            max_num_offsets,
        }) = decode(ApiKey::ListOffsets, 0, Bytes::from(body))
        else {
            panic!("decodes");
        };
        let response = ListOffsetsResponse::default().with_topics(vec![
            ListOffsetsTopicResponse::default()
                .with_name(name)
                .with_partitions(vec![
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(0)
                        .with_offset(17)
                        .with_timestamp(100),
                ]),
        ]);
        let none =
            list_offsets_v0_response(&request, &max_num_offsets, &response).expect("encodes");
        assert_eq!(
            none,
            lf::Body::default()
                .i32(1)
                .str("t")
                .i32(1)
                .i32(0)
                .i16(0)
                .i32(0)
                .bytes()
        );
        let one = list_offsets_v0_response(&request, &[], &response).expect("encodes");
        assert_eq!(
            one,
            lf::Body::default()
                .i32(1)
                .str("t")
                .i32(1)
                .i32(0)
                .i16(0)
                .i32(1)
                .i64(17)
                .bytes()
        );
    }

    #[test]
    fn answers_are_framed_with_response_header_v0() {
        let frame = frame(7, &[1, 2]).expect("frames");
        assert_eq!(&frame[..], &[0, 0, 0, 6, 0, 0, 0, 7, 1, 2]);
    }
}
