//! The request versions Kafka 4 removed (KIP-896) and Kafka 3.9 served, as old clients send them: each
//! request is written by hand from Kafka 3.9's schemas and its answer read field by field (or by
//! kafka-protocol where the old response is byte-identical to a version it knows), checking what the
//! request did. Also: what a version brook does not serve at all gets.

mod common;
#[path = "common/legacy_frames.rs"]
mod legacy_frames;

use bytes::{Buf, Bytes};
use common::raw::{self, Conn, Outcome};
use common::*;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeLogDirsResponse, GroupId,
    MetadataRequest, MetadataResponse, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use legacy_frames as lf;
use tokio::io::AsyncWriteExt;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNSUPPORTED_VERSION: i16 = 35;
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// Sends one hand-built request and returns the response body after its correlation id (header v0).
async fn exchange(conn: &mut Conn, key: ApiKey, version: i16, body: &[u8]) -> Bytes {
    let correlation_id = 4242;
    let frame = lf::frame(key as i16, version, correlation_id, body);
    conn.stream
        .write_all(&lf::sized(&frame))
        .await
        .expect("write request");
    let mut response = tokio::time::timeout(raw::IO_LIMIT, conn.read_frame())
        .await
        .unwrap_or_else(|_| panic!("no {key:?} v{version} answer within {:?}", raw::IO_LIMIT))
        .expect("read response")
        .unwrap_or_else(|| {
            panic!("broker closed the connection instead of answering {key:?} v{version}")
        });
    assert_eq!(response.get_i32(), correlation_id, "correlation id");
    response
}

/// Decodes a legacy answer that is byte-identical to `as_version` of today's schema, to its last byte.
fn decode_as<R: Decodable>(mut body: Bytes, as_version: i16) -> R {
    let decoded = R::decode(&mut body, as_version).expect("decode response");
    assert!(body.is_empty(), "{} bytes left over", body.len());
    decoded
}

fn string(b: &mut Bytes) -> String {
    let len = b.get_i16();
    assert!(len >= 0, "null where a string was expected");
    String::from_utf8(b.split_to(len as usize).to_vec()).expect("UTF-8")
}

fn nullable_string(b: &mut Bytes) -> Option<String> {
    let len = b.get_i16();
    (len >= 0).then(|| String::from_utf8(b.split_to(len as usize).to_vec()).expect("UTF-8"))
}

fn topic_partitions(bootstrap: &str, topic: &str) -> Option<usize> {
    let md: MetadataResponse = blocking(|| {
        raw::request(
            bootstrap,
            ApiKey::Metadata,
            1,
            &MetadataRequest::default().with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(topic.to_string())))),
            ])),
        )
    });
    let t = md.topics.first().expect("the topic asked for");
    (t.error_code == 0).then_some(t.partitions.len())
}

/// The (name, value, read_only, is_default, is_sensitive) configs of a one-resource DescribeConfigs v0 answer.
fn describe_configs_v0_answer(mut b: Bytes) -> Vec<(String, Option<String>, bool, bool, bool)> {
    assert_eq!(b.get_i32(), 0, "throttle time");
    assert_eq!(b.get_i32(), 1, "one resource");
    assert_eq!(b.get_i16(), 0, "resource error code");
    nullable_string(&mut b);
    b.get_i8();
    string(&mut b);
    let configs = (0..b.get_i32())
        .map(|_| {
            (
                string(&mut b),
                nullable_string(&mut b),
                b.get_i8() != 0,
                b.get_i8() != 0,
                b.get_i8() != 0,
            )
        })
        .collect();
    assert!(b.is_empty(), "{} bytes left over", b.len());
    configs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_describe_and_delete_topics_with_old_admin_versions() {
    // Metadata v1 would create the topics it asks about otherwise.
    let b = start_broker(&[("auto.create.topics.enable", "false")]).await;
    let mut conn = Conn::open(&b.bootstrap).await;

    // CreateTopics v0: the topic exists afterwards, with its partitions and its override.
    let body = lf::create_topics(0, "legacy-a", 3, &[("retention.ms", "1234")], false);
    let mut r = exchange(&mut conn, ApiKey::CreateTopics, 0, &body).await;
    assert_eq!(r.get_i32(), 1);
    assert_eq!(string(&mut r), "legacy-a");
    assert_eq!(r.get_i16(), 0, "created");
    assert!(r.is_empty(), "v0 has no error message and no throttle time");
    assert_eq!(topic_partitions(&b.bootstrap, "legacy-a"), Some(3));

    // CreateTopics v1: validate_only creates nothing; a taken name gets an error and a message.
    let body = lf::create_topics(1, "legacy-b", 2, &[], true);
    let mut r = exchange(&mut conn, ApiKey::CreateTopics, 1, &body).await;
    assert_eq!(r.get_i32(), 1);
    assert_eq!(string(&mut r), "legacy-b");
    assert_eq!(r.get_i16(), 0, "valid");
    assert!(
        nullable_string(&mut r).is_none_or(|m| m.is_empty()),
        "no error message"
    );
    assert!(r.is_empty());
    assert_eq!(
        topic_partitions(&b.bootstrap, "legacy-b"),
        None,
        "validate only"
    );
    let body = lf::create_topics(1, "legacy-a", 1, &[], false);
    let mut r = exchange(&mut conn, ApiKey::CreateTopics, 1, &body).await;
    r.advance(4);
    assert_eq!(string(&mut r), "legacy-a");
    assert_eq!(r.get_i16(), TOPIC_ALREADY_EXISTS);
    assert!(nullable_string(&mut r).is_some_and(|m| !m.is_empty()));

    // DescribeConfigs v0 (Sarama 1.22's version): the override, and a default flagged as one.
    let body = lf::describe_configs_v0(2, "legacy-a", Some(&["retention.ms", "cleanup.policy"]));
    let r = exchange(&mut conn, ApiKey::DescribeConfigs, 0, &body).await;
    let mut configs = describe_configs_v0_answer(r);
    configs.sort();
    assert_eq!(
        configs,
        vec![
            (
                "cleanup.policy".into(),
                Some("delete".into()),
                false,
                true,
                false
            ),
            (
                "retention.ms".into(),
                Some("1234".into()),
                false,
                false,
                false
            ),
        ]
    );

    // DeleteTopics v0: one topic deleted, an unknown one refused per topic.
    let body = lf::delete_topics_v0(&["legacy-a", "legacy-missing"]);
    let mut r = exchange(&mut conn, ApiKey::DeleteTopics, 0, &body).await;
    assert_eq!(r.get_i32(), 2);
    let mut results: Vec<(String, i16)> = (0..2).map(|_| (string(&mut r), r.get_i16())).collect();
    assert!(r.is_empty(), "v0 has no throttle time");
    results.sort();
    assert_eq!(
        results,
        vec![
            ("legacy-a".to_string(), 0),
            ("legacy-missing".to_string(), UNKNOWN_TOPIC_OR_PARTITION)
        ]
    );
    assert_eq!(topic_partitions(&b.bootstrap, "legacy-a"), None, "deleted");
    b.shutdown().await;
}

fn offset_fetch_v1(group: &str, topic: &str) -> OffsetFetchRequest {
    OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_indexes(vec![0]),
        ]))
}

fn only_partition(r: &OffsetFetchResponse) -> (i64, Option<String>, i16) {
    let p = &r.topics[0].partitions[0];
    (
        p.committed_offset,
        p.metadata.as_ref().map(|m| m.to_string()),
        p.error_code,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_commit_v1_is_stored_and_v0_is_refused_as_kafka_3_9_does() {
    let b = start_broker(&[]).await;
    create_topic(&b.bootstrap, "legacy-offsets", 1).await;
    let mut conn = Conn::open(&b.bootstrap).await;

    // OffsetCommit v1 as Sarama 1.22 sends it by default: a simple commit (generation -1, no member).
    let body = lf::offset_commit(1, "sarama", (-1, ""), "legacy-offsets", 0, 42, "m");
    let r: OffsetCommitResponse =
        decode_as(exchange(&mut conn, ApiKey::OffsetCommit, 1, &body).await, 2);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let fetched: OffsetFetchResponse = conn
        .call(
            ApiKey::OffsetFetch,
            1,
            &offset_fetch_v1("sarama", "legacy-offsets"),
        )
        .await;
    assert_eq!(only_partition(&fetched), (42, Some("m".to_string()), 0));

    // v1 carries a generation, and it is checked: a member the group never had cannot commit.
    let body = lf::offset_commit(1, "sarama", (5, "ghost"), "legacy-offsets", 0, 7, "");
    let r: OffsetCommitResponse =
        decode_as(exchange(&mut conn, ApiKey::OffsetCommit, 1, &body).await, 2);
    assert_ne!(r.topics[0].partitions[0].error_code, 0, "ghost member");
    let fetched: OffsetFetchResponse = conn
        .call(
            ApiKey::OffsetFetch,
            1,
            &offset_fetch_v1("sarama", "legacy-offsets"),
        )
        .await;
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, 42);

    // v0 offsets lived in ZooKeeper: a KRaft Kafka 3.9 refused them, and so does brook, in v0's format.
    let body = lf::offset_commit(0, "sarama", (-1, ""), "legacy-offsets", 0, 9, "");
    let r: OffsetCommitResponse =
        decode_as(exchange(&mut conn, ApiKey::OffsetCommit, 0, &body).await, 2);
    assert_eq!(r.topics[0].partitions[0].error_code, UNSUPPORTED_VERSION);
    let body = lf::offset_commit(0, "sarama", (-1, ""), "legacy-nowhere", 0, 9, "");
    let r: OffsetCommitResponse =
        decode_as(exchange(&mut conn, ApiKey::OffsetCommit, 0, &body).await, 2);
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    let body = lf::offset_fetch_v0("sarama", "legacy-offsets", &[0]);
    let r: OffsetFetchResponse =
        decode_as(exchange(&mut conn, ApiKey::OffsetFetch, 0, &body).await, 1);
    assert_eq!(
        only_partition(&r),
        (-1, Some(String::new()), UNSUPPORTED_VERSION)
    );
    let fetched: OffsetFetchResponse = conn
        .call(
            ApiKey::OffsetFetch,
            1,
            &offset_fetch_v1("sarama", "legacy-offsets"),
        )
        .await;
    assert_eq!(
        fetched.topics[0].partitions[0].committed_offset, 42,
        "v0 stored nothing"
    );
    b.shutdown().await;
}

/// The (error code, old-style offsets) of a one-partition ListOffsets v0 answer.
fn list_offsets_v0_answer(mut r: Bytes) -> (i16, Vec<i64>) {
    assert_eq!(r.get_i32(), 1);
    string(&mut r);
    assert_eq!(r.get_i32(), 1);
    r.get_i32();
    let error = r.get_i16();
    let offsets = (0..r.get_i32()).map(|_| r.get_i64()).collect();
    assert!(r.is_empty(), "v0 has no throttle time");
    (error, offsets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_v0_and_offset_for_leader_epoch_v0_v1_see_the_log() {
    let b = start_broker(&[]).await;
    let topic = "legacy-log";
    create_topic(&b.bootstrap, topic, 1).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    let produced: ProduceResponse = conn
        .call(
            ApiKey::Produce,
            8,
            &raw::produce_request(topic, 0, raw::indexed_batch(&["a", "b", "c"], false)),
        )
        .await;
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);

    for (timestamp, max, want) in [
        (-1, 1, (0, vec![3])),
        (-2, 1, (0, vec![0])),
        (-2, 0, (0, vec![])),
        // A consumer's "latest" is the high watermark whatever it asks for, as in Kafka.
        (-1, 0, (0, vec![3])),
        (-3, 1, (UNSUPPORTED_VERSION, vec![])),
    ] {
        let body = lf::list_offsets_v0(topic, 0, timestamp, max);
        let r = exchange(&mut conn, ApiKey::ListOffsets, 0, &body).await;
        assert_eq!(
            list_offsets_v0_answer(r),
            want,
            "timestamp {timestamp} max {max}"
        );
    }
    let body = lf::list_offsets_v0(topic, 7, -1, 1);
    let r = exchange(&mut conn, ApiKey::ListOffsets, 0, &body).await;
    assert_eq!(
        list_offsets_v0_answer(r),
        (UNKNOWN_TOPIC_OR_PARTITION, vec![])
    );

    // OffsetForLeaderEpoch: v0 answers (error, partition, end offset), v1 adds the leader epoch.
    for version in [0, 1] {
        let body = lf::offset_for_leader_epoch(topic, 0, 0);
        let mut r = exchange(&mut conn, ApiKey::OffsetForLeaderEpoch, version, &body).await;
        assert_eq!(r.get_i32(), 1);
        assert_eq!(string(&mut r), topic);
        assert_eq!(r.get_i32(), 1);
        assert_eq!(r.get_i16(), 0, "error code");
        assert_eq!(r.get_i32(), 0, "partition");
        if version >= 1 {
            assert_eq!(r.get_i32(), 0, "leader epoch");
        }
        assert_eq!(r.get_i64(), 3, "end offset of epoch 0");
        assert!(r.is_empty(), "no throttle time before v2");
    }

    // DescribeLogDirs v0 (byte for byte v1): the partition's bytes are there.
    let body = lf::describe_log_dirs_v0(Some((topic, &[0])));
    let r: DescribeLogDirsResponse = decode_as(
        exchange(&mut conn, ApiKey::DescribeLogDirs, 0, &body).await,
        1,
    );
    let partition = &r.results[0].topics[0].partitions[0];
    assert!(partition.partition_size > 0, "{partition:?}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertised_ranges_include_the_versions_kafka_3_9_served() {
    let b = start_broker(&[]).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    let r: ApiVersionsResponse = conn
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    for key in [
        ApiKey::ListOffsets,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
        ApiKey::DescribeConfigs,
        ApiKey::DescribeLogDirs,
        ApiKey::OffsetForLeaderEpoch,
    ] {
        let k = r
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .unwrap_or_else(|| panic!("{key:?} advertised"));
        assert_eq!(k.min_version, 0, "{key:?}");
    }
    b.shutdown().await;
}

/// Versions brook cannot serve: a closed connection (logged with the api key and version, see
/// `unserved_versions_are_refused_with_a_reason` in src/server/dispatch.rs), never a crash, and the other
/// connections go on. ApiVersions (KIP-511) and Produce v0-2 are answered with UNSUPPORTED_VERSION.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unserved_versions_close_only_their_connection() {
    let b = start_broker(&[]).await;
    let mut bystander = Conn::open(&b.bootstrap).await;
    for (key, version) in [
        (ApiKey::Fetch, 3),  // removed by Kafka 4, message format v0/v1 only
        (ApiKey::Fetch, 19), // newer than brook
        (ApiKey::Metadata, 14),
        (ApiKey::OffsetCommit, 10), // topic ids: not yet
        (ApiKey::ListOffsets, 11),
        (ApiKey::InitProducerId, 0), // an API brook does not serve
        (ApiKey::SaslHandshake, 1),
    ] {
        let mut offender = Conn::open(&b.bootstrap).await;
        let frame = lf::frame(key as i16, version, 11, &[0, 0, 0, 0]);
        offender
            .stream
            .write_all(&lf::sized(&frame))
            .await
            .expect("write");
        let outcome = offender.outcome().await;
        assert!(
            matches!(outcome, Outcome::Closed),
            "{key:?} v{version}: {outcome:?}"
        );
        let _: ApiVersionsResponse = bystander
            .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
            .await;
    }
    // ApiVersions newer than brook knows: a v0 body with error 35 (KIP-511).
    let mut conn = Conn::open(&b.bootstrap).await;
    let (_, framed) = conn.frame(ApiKey::ApiVersions, 9, 3, &ApiVersionsRequest::default());
    conn.stream.write_all(&framed).await.expect("write");
    let (_, r): (i32, ApiVersionsResponse) = conn.recv(ApiKey::ApiVersions, 0).await;
    assert_eq!(r.error_code, UNSUPPORTED_VERSION);
    // Produce v0: every partition gets 35 (v0 responses: name, [partition, error, base offset]).
    let body = lf::Body::default()
        .i16(1)
        .i32(1000)
        .i32(1)
        .str("t")
        .i32(1)
        .i32(0)
        .i32(0)
        .bytes();
    let mut r = exchange(&mut conn, ApiKey::Produce, 0, &body).await;
    r.advance(4);
    string(&mut r);
    r.advance(4 + 4);
    assert_eq!(r.get_i16(), UNSUPPORTED_VERSION);
    b.shutdown().await;
}
