//! Writes the seed corpus under `fuzz/corpus/<target>/` (run from the repository root):
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus
//! ```
//!
//! `request`: one frame per api key and version kafka-protocol knows for every API brook serves or is about
//! to serve (populated requests, encoded with kafka-protocol's client encoders; a default body where the
//! populated one does not fit the version), the Produce v0-2 frames brook hand-decodes, a KIP-511
//! ApiVersions v5, and the crafted frames from the field notes. `record_batch`: uncompressed batches built
//! here (the rdkafka-produced compressed ones, `rdkafka-*`, were captured from a broker's log and are kept
//! as they are). `group_records`: `__consumer_offsets` batches, keys and values in brook's own encoding
//! plus the older versions Kafka wrote. Output is deterministic: rerunning rewrites the same files.

use std::path::{Path, PathBuf};

#[path = "../../tests/common/legacy_frames.rs"]
mod legacy_frames;

use brook::api::api_versions;
use brook::group::records::{
    KeyValue, encode_batch, encode_group_metadata_key, encode_group_metadata_value,
    encode_offset_commit_key, encode_offset_commit_value,
};
use brook::group::{OffsetAndMetadata, StoredGroup, StoredMember};
use brook::log::TopicPartition;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("fuzz/corpus"));
    requests(&root.join("request"));
    record_batches(&root.join("record_batch"));
    group_records(&root.join("group_records"));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create corpus dir");
    std::fs::write(dir.join(name), bytes).expect("write corpus file");
}

fn s(x: &'static str) -> StrBytes {
    StrBytes::from_static_str(x)
}

fn topic(x: &'static str) -> TopicName {
    TopicName(s(x))
}

fn group(x: &'static str) -> GroupId {
    GroupId(s(x))
}

/// The APIs to seed: everything brook serves, plus the admin APIs being added (seeds for unserved
/// versions exercise the refusal path and become useful as soon as the versions are advertised).
const SEEDED: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::SyncGroup,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::DeleteRecords,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::DescribeLogDirs,
    ApiKey::CreatePartitions,
    ApiKey::DeleteGroups,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::OffsetDelete,
    ApiKey::DescribeCluster,
    ApiKey::DescribeProducers,
    ApiKey::InitProducerId,
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::EndTxn,
    ApiKey::TxnOffsetCommit,
    ApiKey::DescribeTransactions,
    ApiKey::ListTransactions,
    ApiKey::WriteTxnMarkers,
    ApiKey::DescribeQuorum,
    ApiKey::ElectLeaders,
    ApiKey::AlterPartitionReassignments,
    ApiKey::ListPartitionReassignments,
    ApiKey::DescribeTopicPartitions,
];

fn requests(dir: &Path) {
    for &(key, _, _) in api_versions::SUPPORTED {
        assert!(SEEDED.contains(&key), "{key:?} is served but has no seeds");
    }
    let mut fallbacks = Vec::new();
    for &key in SEEDED {
        let range = key.valid_versions();
        for version in range.min..=range.max {
            let correlation_id = 1000 + i32::from(key as i16) * 100 + i32::from(version);
            let body = match encode_body(&sample(key, version), version) {
                Some(body) => body,
                None => match encode_body(&default_request(key), version) {
                    Some(body) => {
                        fallbacks.push(format!("{key:?} v{version}"));
                        body
                    }
                    None => {
                        // OffsetCommit/OffsetFetch v10 (topic ids): kafka-protocol 0.18 cannot encode them.
                        eprintln!(
                            "no seed for {key:?} v{version}: kafka-protocol cannot encode it"
                        );
                        continue;
                    }
                },
            };
            let frame = frame(key, version, correlation_id, &body);
            write(dir, &format!("{key:?}-v{version}"), &frame);
        }
    }
    if !fallbacks.is_empty() {
        eprintln!("default bodies for: {}", fallbacks.join(", "));
    }

    // Produce v0-2 (hand-decoded by api::legacy): acks, timeout, [topic [partition, message set]].
    for version in 0..3 {
        for acks in [0i16, 1] {
            let mut body = BytesMut::new();
            body.put_i16(acks);
            body.put_i32(1500);
            body.put_i32(2);
            for name in ["t", "other"] {
                body.put_i16(name.len() as i16);
                body.put_slice(name.as_bytes());
                body.put_i32(2);
                for p in 0..2 {
                    body.put_i32(p);
                    body.put_i32(3);
                    body.put_slice(b"abc");
                }
            }
            let f = frame(ApiKey::Produce, version, 77, &body);
            let name = match acks {
                0 => format!("Produce-v{version}-acks0"),
                _ => format!("Produce-v{version}"),
            };
            write(dir, &name, &f);
        }
    }
    // The other versions Kafka 4 removed, hand-decoded by brook's api::legacy (bodies from Kafka 3.9's schemas).
    use legacy_frames as lf;
    let legacy: [(ApiKey, i16, Vec<u8>); 11] = [
        (ApiKey::ListOffsets, 0, lf::list_offsets_v0("t", 0, -1, 1)),
        (
            ApiKey::OffsetCommit,
            0,
            lf::offset_commit(0, "g", (-1, ""), "t", 0, 5, "m"),
        ),
        (
            ApiKey::OffsetCommit,
            1,
            lf::offset_commit(1, "g", (-1, ""), "t", 0, 5, "m"),
        ),
        (
            ApiKey::OffsetFetch,
            0,
            lf::offset_fetch_v0("g", "t", &[0, 1]),
        ),
        (
            ApiKey::CreateTopics,
            0,
            lf::create_topics(0, "t", 2, &[("retention.ms", "1000")], false),
        ),
        (
            ApiKey::CreateTopics,
            1,
            lf::create_topics(1, "t", 2, &[], true),
        ),
        (
            ApiKey::DeleteTopics,
            0,
            lf::delete_topics_v0(&["t", "other"]),
        ),
        (
            ApiKey::DescribeConfigs,
            0,
            lf::describe_configs_v0(2, "t", Some(&["retention.ms"])),
        ),
        (ApiKey::DescribeLogDirs, 0, lf::describe_log_dirs_v0(None)),
        (
            ApiKey::OffsetForLeaderEpoch,
            0,
            lf::offset_for_leader_epoch("t", 0, 0),
        ),
        (
            ApiKey::OffsetForLeaderEpoch,
            1,
            lf::offset_for_leader_epoch("t", 0, 0),
        ),
    ];
    for (key, version, body) in legacy {
        let correlation_id = 1000 + i32::from(key as i16) * 100 + i32::from(version);
        write(
            dir,
            &format!("{key:?}-v{version}"),
            &lf::frame(key as i16, version, correlation_id, &body),
        );
    }
    // KIP-511: an ApiVersions newer than any brook knows (body in the newest known layout).
    let body = encode_body(&sample(ApiKey::ApiVersions, 4), 4).expect("ApiVersions v4 encodes");
    write(
        dir,
        "ApiVersions-v5-kip511",
        &frame(ApiKey::ApiVersions, 5, 5, &body),
    );
    // The field notes' crafted frame: a Metadata v4 body whose topics array claims 2^31-1 entries.
    let crafted = [0x7f, 0xff, 0xff, 0xff, 0x00, 0x01, 0x41];
    write(
        dir,
        "Metadata-v4-crafted-count",
        &frame(ApiKey::Metadata, 4, 9, &crafted),
    );
    // Truncated header, unknown api key, negative version.
    write(dir, "short-3-bytes", &[0, 3, 0]);
    write(dir, "unknown-api-key", &frame_raw(-7, 0, 1, &[]));
    write(dir, "negative-version", &frame_raw(3, -1, 1, &[]));
}

/// A request frame without its size prefix, as the dispatcher receives it.
fn frame(key: ApiKey, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("fuzz-seed")));
    let mut out = BytesMut::new();
    header
        .encode(&mut out, key.request_header_version(version))
        .expect("header encodes");
    out.put_slice(body);
    out.to_vec()
}

fn frame_raw(key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&key.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn encode_body(request: &RequestKind, version: i16) -> Option<Vec<u8>> {
    let mut out = BytesMut::new();
    request.encode(&mut out, version).ok()?;
    Some(out.to_vec())
}

fn default_request(key: ApiKey) -> RequestKind {
    match key {
        ApiKey::Produce => ProduceRequest::default().into(),
        ApiKey::Fetch => FetchRequest::default().into(),
        ApiKey::ListOffsets => ListOffsetsRequest::default().into(),
        ApiKey::Metadata => MetadataRequest::default().into(),
        ApiKey::OffsetCommit => OffsetCommitRequest::default().into(),
        ApiKey::OffsetFetch => OffsetFetchRequest::default().into(),
        ApiKey::FindCoordinator => FindCoordinatorRequest::default().into(),
        ApiKey::JoinGroup => JoinGroupRequest::default().into(),
        ApiKey::Heartbeat => HeartbeatRequest::default().into(),
        ApiKey::LeaveGroup => LeaveGroupRequest::default().into(),
        ApiKey::SyncGroup => SyncGroupRequest::default().into(),
        ApiKey::DescribeGroups => DescribeGroupsRequest::default().into(),
        ApiKey::ListGroups => ListGroupsRequest::default().into(),
        ApiKey::ApiVersions => ApiVersionsRequest::default().into(),
        ApiKey::CreateTopics => CreateTopicsRequest::default().into(),
        ApiKey::DeleteTopics => DeleteTopicsRequest::default().into(),
        ApiKey::DeleteRecords => DeleteRecordsRequest::default().into(),
        ApiKey::OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::default().into(),
        ApiKey::DescribeConfigs => DescribeConfigsRequest::default().into(),
        ApiKey::AlterConfigs => AlterConfigsRequest::default().into(),
        ApiKey::DescribeLogDirs => DescribeLogDirsRequest::default().into(),
        ApiKey::CreatePartitions => CreatePartitionsRequest::default().into(),
        ApiKey::DeleteGroups => DeleteGroupsRequest::default().into(),
        ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::default().into(),
        ApiKey::OffsetDelete => OffsetDeleteRequest::default().into(),
        ApiKey::DescribeCluster => DescribeClusterRequest::default().into(),
        ApiKey::DescribeProducers => DescribeProducersRequest::default().into(),
        ApiKey::InitProducerId => InitProducerIdRequest::default().into(),
        ApiKey::AddPartitionsToTxn => AddPartitionsToTxnRequest::default().into(),
        ApiKey::AddOffsetsToTxn => AddOffsetsToTxnRequest::default().into(),
        ApiKey::EndTxn => EndTxnRequest::default().into(),
        ApiKey::TxnOffsetCommit => TxnOffsetCommitRequest::default().into(),
        ApiKey::DescribeTransactions => DescribeTransactionsRequest::default().into(),
        ApiKey::ListTransactions => ListTransactionsRequest::default().into(),
        ApiKey::WriteTxnMarkers => WriteTxnMarkersRequest::default().into(),
        ApiKey::DescribeQuorum => DescribeQuorumRequest::default().into(),
        ApiKey::ElectLeaders => ElectLeadersRequest::default().into(),
        ApiKey::AlterPartitionReassignments => AlterPartitionReassignmentsRequest::default().into(),
        ApiKey::ListPartitionReassignments => ListPartitionReassignmentsRequest::default().into(),
        ApiKey::DescribeTopicPartitions => DescribeTopicPartitionsRequest::default().into(),
        other => panic!("no seed request for {other:?}"),
    }
}

/// A populated request as a client of that version would send it.
fn sample(key: ApiKey, v: i16) -> RequestKind {
    let id = uuid_of(v);
    let by_id = |min: i16| v >= min;
    match key {
        ApiKey::Produce => ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                produce_request::TopicProduceData::default()
                    .with_name(if by_id(13) { TopicName::default() } else { topic("t") })
                    .with_topic_id(if by_id(13) { id } else { Default::default() })
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(client_batch(Compression::None, 3))),
                    ]),
            ])
            .into(),
        ApiKey::Fetch => FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(52_428_800)
            .with_isolation_level(if v >= 4 { 1 } else { 0 })
            .with_session_epoch(if v >= 7 { -1 } else { 0 })
            .with_topics(vec![
                fetch_request::FetchTopic::default()
                    .with_topic(if by_id(13) { TopicName::default() } else { topic("t") })
                    .with_topic_id(if by_id(13) { id } else { Default::default() })
                    .with_partitions(vec![
                        fetch_request::FetchPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(if v >= 9 { 0 } else { -1 })
                            .with_fetch_offset(5)
                            .with_log_start_offset(if v >= 5 { 0 } else { -1 })
                            .with_partition_max_bytes(1_048_576),
                    ]),
            ])
            .with_rack_id(if v >= 11 { s("rack-a") } else { StrBytes::default() })
            .into(),
        ApiKey::ListOffsets => ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(if v >= 2 { 1 } else { 0 })
            .with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_current_leader_epoch(if v >= 4 { 0 } else { -1 })
                            .with_timestamp(-1),
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(1)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(if v >= 7 { -3 } else { -2 }),
                    ]),
            ])
            .with_timeout_ms(if v >= 10 { 1000 } else { 0 })
            .into(),
        ApiKey::Metadata => MetadataRequest::default()
            .with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(topic("t")))
                    .with_topic_id(if v >= 10 { id } else { Default::default() }),
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic("missing"))),
            ]))
            .with_allow_auto_topic_creation(true)
            .with_include_topic_authorized_operations(v >= 8)
            .into(),
        ApiKey::OffsetCommit => OffsetCommitRequest::default()
            .with_group_id(group("g"))
            .with_generation_id_or_member_epoch(if v >= 1 { 3 } else { -1 })
            .with_member_id(if v >= 1 { s("member-1") } else { StrBytes::default() })
            .with_group_instance_id(if v >= 7 { Some(s("static-1")) } else { None })
            .with_retention_time_ms(if (2..=4).contains(&v) { 60_000 } else { -1 })
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(if by_id(10) { TopicName::default() } else { topic("t") })
                    .with_topic_id(if by_id(10) { id } else { Default::default() })
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(42)
                            .with_committed_leader_epoch(if v >= 6 { 0 } else { -1 })
                            .with_committed_metadata(Some(s("meta"))),
                    ]),
            ])
            .into(),
        ApiKey::OffsetFetch if v >= 8 => OffsetFetchRequest::default()
            .with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group("g"))
                    .with_member_id(if v >= 9 { Some(s("member-1")) } else { None })
                    .with_member_epoch(if v >= 9 { 3 } else { -1 })
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(if by_id(10) { TopicName::default() } else { topic("t") })
                            .with_topic_id(if by_id(10) { id } else { Default::default() })
                            .with_partition_indexes(vec![0, 1]),
                    ])),
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group("all"))
                    .with_topics(None),
            ])
            .with_require_stable(true)
            .into(),
        ApiKey::OffsetFetch => OffsetFetchRequest::default()
            .with_group_id(group("g"))
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(topic("t"))
                    .with_partition_indexes(vec![0, 1]),
            ]))
            .with_require_stable(v >= 7)
            .into(),
        ApiKey::FindCoordinator if v >= 4 => FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![s("g"), s("other-group")])
            .into(),
        ApiKey::FindCoordinator => FindCoordinatorRequest::default()
            .with_key(s("g"))
            .with_key_type(0)
            .into(),
        ApiKey::JoinGroup => JoinGroupRequest::default()
            .with_group_id(group("g"))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(if v >= 1 { 30_000 } else { -1 })
            .with_member_id(StrBytes::default())
            .with_group_instance_id(if v >= 5 { Some(s("static-1")) } else { None })
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(b"\x00\x01\x00\x00\x00\x01\x00\x01t\xff\xff\xff\xff")),
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("roundrobin"))
                    .with_metadata(Bytes::from_static(b"\x00\x01\x00\x00\x00\x01\x00\x01t")),
            ])
            .with_reason(if v >= 8 { Some(s("rebalance")) } else { None })
            .into(),
        ApiKey::Heartbeat => HeartbeatRequest::default()
            .with_group_id(group("g"))
            .with_generation_id(3)
            .with_member_id(s("member-1"))
            .with_group_instance_id(if v >= 3 { Some(s("static-1")) } else { None })
            .into(),
        ApiKey::LeaveGroup if v >= 3 => LeaveGroupRequest::default()
            .with_group_id(group("g"))
            .with_members(vec![
                leave_group_request::MemberIdentity::default()
                    .with_member_id(s("member-1"))
                    .with_group_instance_id(Some(s("static-1")))
                    .with_reason(if v >= 5 { Some(s("bye")) } else { None }),
                leave_group_request::MemberIdentity::default().with_member_id(s("member-2")),
            ])
            .into(),
        ApiKey::LeaveGroup => LeaveGroupRequest::default()
            .with_group_id(group("g"))
            .with_member_id(s("member-1"))
            .into(),
        ApiKey::SyncGroup => SyncGroupRequest::default()
            .with_group_id(group("g"))
            .with_generation_id(3)
            .with_member_id(s("member-1"))
            .with_group_instance_id(if v >= 3 { Some(s("static-1")) } else { None })
            .with_protocol_type(if v >= 5 { Some(s("consumer")) } else { None })
            .with_protocol_name(if v >= 5 { Some(s("range")) } else { None })
            .with_assignments(vec![
                sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(s("member-1"))
                    .with_assignment(Bytes::from_static(b"\x00\x01\x00\x00\x00\x01\x00\x01t\x00\x00\x00\x01\x00\x00\x00\x00\xff\xff\xff\xff")),
            ])
            .into(),
        ApiKey::DescribeGroups => DescribeGroupsRequest::default()
            .with_groups(vec![group("g"), group("missing")])
            .with_include_authorized_operations(v >= 3)
            .into(),
        ApiKey::ListGroups => ListGroupsRequest::default()
            .with_states_filter(if v >= 4 { vec![s("Stable"), s("Empty")] } else { vec![] })
            .with_types_filter(if v >= 5 { vec![s("classic")] } else { vec![] })
            .into(),
        ApiKey::ApiVersions => ApiVersionsRequest::default()
            .with_client_software_name(if v >= 3 { s("brook-fuzz") } else { StrBytes::default() })
            .with_client_software_version(if v >= 3 { s("0.1.0") } else { StrBytes::default() })
            .into(),
        ApiKey::CreateTopics => CreateTopicsRequest::default()
            .with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(topic("new-topic"))
                    .with_num_partitions(3)
                    .with_replication_factor(1)
                    .with_configs(vec![
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s("60000"))),
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(s("cleanup.policy"))
                            .with_value(Some(s("compact"))),
                    ]),
                create_topics_request::CreatableTopic::default()
                    .with_name(topic("assigned"))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_assignments(vec![
                        create_topics_request::CreatableReplicaAssignment::default()
                            .with_partition_index(0)
                            .with_broker_ids(vec![BrokerId(1)]),
                    ]),
            ])
            .with_timeout_ms(30_000)
            .with_validate_only(v >= 1)
            .into(),
        ApiKey::DeleteTopics if v >= 6 => DeleteTopicsRequest::default()
            .with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(topic("t"))),
                delete_topics_request::DeleteTopicState::default().with_topic_id(id),
            ])
            .with_timeout_ms(30_000)
            .into(),
        ApiKey::DeleteTopics => DeleteTopicsRequest::default()
            .with_topic_names(vec![topic("t"), topic("missing")])
            .with_timeout_ms(30_000)
            .into(),
        ApiKey::DeleteGroups => DeleteGroupsRequest::default()
            .with_groups_names(vec![group("g"), group("missing")])
            .into(),
        ApiKey::OffsetDelete => OffsetDeleteRequest::default()
            .with_group_id(group("g"))
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default()
                            .with_partition_index(0),
                    ]),
            ])
            .into(),
        ApiKey::InitProducerId => InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s("tx"))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(if v >= 3 { 1000 } else { -1 }))
            .with_producer_epoch(if v >= 3 { 2 } else { -1 })
            .into(),
        // v4+ is the brokers' batched shape.
        ApiKey::AddPartitionsToTxn if v >= 4 => AddPartitionsToTxnRequest::default()
            .with_transactions(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(TransactionalId(s("tx")))
                    .with_producer_id(ProducerId(1000))
                    .with_producer_epoch(2)
                    .with_verify_only(true)
                    .with_topics(vec![
                        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(topic("t"))
                            .with_partitions(vec![0, 1]),
                    ]),
            ])
            .into(),
        ApiKey::AddPartitionsToTxn => AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s("tx")))
            .with_v3_and_below_producer_id(ProducerId(1000))
            .with_v3_and_below_producer_epoch(2)
            .with_v3_and_below_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(vec![0, 1]),
            ])
            .into(),
        ApiKey::AddOffsetsToTxn => AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s("tx")))
            .with_producer_id(ProducerId(1000))
            .with_producer_epoch(2)
            .with_group_id(group("g"))
            .into(),
        ApiKey::EndTxn => EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s("tx")))
            .with_producer_id(ProducerId(1000))
            .with_producer_epoch(2)
            .with_committed(true)
            .into(),
        ApiKey::TxnOffsetCommit => TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s("tx")))
            .with_group_id(group("g"))
            .with_producer_id(ProducerId(1000))
            .with_producer_epoch(2)
            .with_generation_id(-1)
            .with_member_id(s(""))
            .with_topics(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(42)
                            .with_committed_leader_epoch(if v >= 2 { 3 } else { -1 }),
                    ]),
            ])
            .into(),
        ApiKey::DescribeProducers => DescribeProducersRequest::default()
            .with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(topic("t"))
                    .with_partition_indexes(vec![0, 7]),
            ])
            .into(),
        ApiKey::DescribeTransactions => DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(s("tx")), TransactionalId(s("missing"))])
            .into(),
        ApiKey::ListTransactions => ListTransactionsRequest::default()
            .with_state_filters(vec![s("Ongoing"), s("Bogus")])
            .with_producer_id_filters(vec![ProducerId(1000)])
            .with_duration_filter(if v >= 1 { 60_000 } else { -1 })
            .with_transactional_id_pattern(if v >= 2 { Some(s("t.*")) } else { None })
            .into(),
        ApiKey::WriteTxnMarkers => WriteTxnMarkersRequest::default()
            .with_markers(vec![
                write_txn_markers_request::WritableTxnMarker::default()
                    .with_producer_id(ProducerId(1000))
                    .with_producer_epoch(2)
                    .with_transaction_result(false)
                    .with_coordinator_epoch(0)
                    .with_topics(vec![
                        write_txn_markers_request::WritableTxnMarkerTopic::default()
                            .with_name(topic("t"))
                            .with_partition_indexes(vec![0, 7]),
                    ]),
            ])
            .into(),
        ApiKey::DescribeQuorum => DescribeQuorumRequest::default()
            .with_topics(vec![
                describe_quorum_request::TopicData::default()
                    .with_topic_name(topic("__cluster_metadata"))
                    .with_partitions(vec![
                        describe_quorum_request::PartitionData::default().with_partition_index(0),
                    ]),
            ])
            .into(),
        ApiKey::ElectLeaders => ElectLeadersRequest::default()
            .with_election_type(if v >= 1 { 1 } else { 0 })
            .with_timeout_ms(30_000)
            .with_topic_partitions(Some(vec![
                elect_leaders_request::TopicPartitions::default()
                    .with_topic(topic("t"))
                    .with_partitions(vec![0, 7]),
            ]))
            .into(),
        ApiKey::AlterPartitionReassignments => AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_allow_replication_factor_change(v < 1)
            .with_topics(vec![
                alter_partition_reassignments_request::ReassignableTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(vec![
                        alter_partition_reassignments_request::ReassignablePartition::default()
                            .with_partition_index(0)
                            .with_replicas(Some(vec![BrokerId(2), BrokerId(1)])),
                        alter_partition_reassignments_request::ReassignablePartition::default()
                            .with_partition_index(1)
                            .with_replicas(None),
                    ]),
            ])
            .into(),
        ApiKey::ListPartitionReassignments => ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(Some(vec![
                list_partition_reassignments_request::ListPartitionReassignmentsTopics::default()
                    .with_name(topic("t"))
                    .with_partition_indexes(vec![0, 1]),
            ]))
            .into(),
        ApiKey::DescribeTopicPartitions => DescribeTopicPartitionsRequest::default()
            .with_topics(vec![
                describe_topic_partitions_request::TopicRequest::default().with_name(topic("t")),
            ])
            .with_response_partition_limit(2000)
            .with_cursor(Some(
                describe_topic_partitions_request::Cursor::default()
                    .with_topic_name(topic("t"))
                    .with_partition_index(1),
            ))
            .into(),
        other => default_request(other),
    }
}

/// A fixed, version-dependent topic id (seeds must be reproducible).
fn uuid_of(v: i16) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 | v as u128)
}

/// A v2 batch of `n` records as kafka-protocol's client encoder writes it.
fn client_batch(compression: Compression, n: i64) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("batch encodes");
    out.freeze()
}

fn record_batches(dir: &Path) {
    // Mode byte first (see the target): default limit, CRCs as they are.
    let with_mode = |mode: u8, b: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(b);
        v
    };
    let one = client_batch(Compression::None, 1);
    let three = client_batch(Compression::None, 3);
    write(dir, "single-record", &with_mode(0, &one));
    write(dir, "three-records", &with_mode(0, &three));
    let mut two = three.to_vec();
    two.extend_from_slice(&one);
    write(dir, "two-batches", &with_mode(0, &two));
    write(dir, "two-batches-crc-repaired", &with_mode(4, &two));
    write(dir, "over-small-limit", &with_mode(1, &three));
    let mut truncated = three.to_vec();
    truncated.truncate(three.len() - 5);
    write(dir, "truncated", &with_mode(0, &truncated));
    let mut negative_length = one.to_vec();
    negative_length[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    write(dir, "negative-length", &with_mode(4, &negative_length));
    let mut bad_count = three.to_vec();
    bad_count[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    write(dir, "record-count-mismatch", &with_mode(4, &bad_count));
    // A control batch (transaction marker) with a commit record, as a coordinator writes it.
    let mut control = group_batch(&[KeyValue {
        key: Bytes::from_static(&[0, 0, 0, 1]),
        value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
    }]);
    control[21..23].copy_from_slice(&(0x30i16).to_be_bytes()); // transactional | control
    write(dir, "control-batch-crc-repaired", &with_mode(4, &control));
}

fn group_batch(records: &[KeyValue]) -> Vec<u8> {
    encode_batch(records, 1_700_000_000_000)
        .expect("group batch encodes")
        .to_vec()
}

fn group_records(dir: &Path) {
    let tp = TopicPartition::new("t", 0);
    let om = OffsetAndMetadata {
        offset: 42,
        leader_epoch: 0,
        metadata: "meta".to_string(),
        commit_timestamp_ms: 1_700_000_000_000,
    };
    let g = StoredGroup {
        protocol_type: "consumer".to_string(),
        generation: 3,
        protocol: Some("range".to_string()),
        leader: Some("member-1".to_string()),
        current_state_timestamp_ms: 1_700_000_000_000,
        members: vec![StoredMember {
            member_id: "member-1".to_string(),
            group_instance_id: Some("static-1".to_string()),
            client_id: "client".to_string(),
            client_host: "/127.0.0.1".to_string(),
            rebalance_timeout_ms: 30_000,
            session_timeout_ms: 10_000,
            subscription: Bytes::from_static(b"\x00\x01\x00\x00\x00\x01\x00\x01t"),
            assignment: Bytes::from_static(
                b"\x00\x01\x00\x00\x00\x01\x00\x01t\x00\x00\x00\x01\x00\x00\x00\x00",
            ),
        }],
    };
    let ok_key = encode_offset_commit_key("g", &tp).expect("key");
    let ok_value = encode_offset_commit_value(&om).expect("value");
    let gm_key = encode_group_metadata_key("g").expect("key");
    let gm_value = encode_group_metadata_value(&g).expect("value");
    let batch = group_batch(&[
        KeyValue {
            key: ok_key.clone(),
            value: Some(ok_value.clone()),
        },
        KeyValue {
            key: gm_key.clone(),
            value: Some(gm_value.clone()),
        },
        KeyValue {
            key: ok_key.clone(),
            value: None,
        },
    ]);
    let with_mode = |mode: u8, b: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(b);
        v
    };
    write(dir, "walk-batch", &with_mode(0, &batch));
    write(dir, "walk-batch-crc-repaired", &with_mode(1, &batch));
    let mut two = batch.clone();
    two.extend_from_slice(&group_batch(&[KeyValue {
        key: gm_key.clone(),
        value: None,
    }]));
    write(dir, "walk-two-batches", &with_mode(1, &two));
    write(dir, "key-offset-commit", &with_mode(2, &ok_key));
    write(dir, "key-group-metadata", &with_mode(2, &gm_key));
    write(dir, "key-newer-version", &with_mode(2, &[0, 7, 0, 1, b'g']));
    write(dir, "value-offset-commit-v3", &with_mode(3, &ok_value));
    write(dir, "value-group-metadata-v3", &with_mode(4, &gm_value));
    // Older and newer value versions Kafka writes: v1 (with expire timestamp) and flexible v4.
    let mut v1 = BytesMut::new();
    v1.put_i16(1);
    v1.put_i64(42);
    v1.put_i16(4);
    v1.put_slice(b"meta");
    v1.put_i64(1_700_000_000_000);
    v1.put_i64(1_700_000_600_000);
    write(dir, "value-offset-commit-v1", &with_mode(3, &v1));
    let mut v4 = BytesMut::new();
    v4.put_i16(4);
    v4.put_i64(42);
    v4.put_i32(0);
    v4.put_u8(5); // compact string: length + 1
    v4.put_slice(b"meta");
    v4.put_i64(1_700_000_000_000);
    v4.put_u8(0); // no tagged fields
    write(dir, "value-offset-commit-v4", &with_mode(3, &v4));
    let mut gv0 = BytesMut::new();
    gv0.put_i16(0); // version
    gv0.put_i16(8); // protocol type
    gv0.put_slice(b"consumer");
    gv0.put_i32(1); // generation
    gv0.put_i16(-1); // no protocol
    gv0.put_i16(-1); // no leader
    gv0.put_i32(0); // no members
    write(dir, "value-group-metadata-v0-empty", &with_mode(4, &gv0));
}
