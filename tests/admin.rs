//! Topic and broker administration as clients see it: rdkafka's AdminClient (describe/alter configs,
//! create topics and partitions) and raw protocol frames for the APIs it does not wrap
//! (IncrementalAlterConfigs, DescribeCluster, DescribeLogDirs, OffsetForLeaderEpoch, ListOffsets
//! max-timestamp); configs that change how records are stored (LogAppendTime, timestamp windows); and
//! dynamic configs surviving a restart.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::raw::{self, Conn};
use common::*;
use kafka_protocol::messages::alter_configs_request::{
    AlterConfigsResource as LegacyAlterResource, AlterableConfig as LegacyAlterable,
};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, ApiKey, BrokerId, CreateTopicsRequest,
    CreateTopicsResponse, DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ListOffsetsRequest,
    ListOffsetsResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::FutureRecord;

const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNKNOWN_LEADER_EPOCH: i16 = 75;
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const DYNAMIC_BROKER_CONFIG: i8 = 2;
const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// (value, source) of each config of a resource, by DescribeConfigs v4.
async fn describe(
    conn: &mut Conn,
    resource_type: i8,
    name: &str,
) -> (i16, Vec<(String, Option<String>, i8, bool)>) {
    let request = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_include_documentation(true)
        .with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_configuration_keys(None),
        ]);
    let resp: DescribeConfigsResponse = conn.call(ApiKey::DescribeConfigs, 4, &request).await;
    let r = &resp.results[0];
    let entries = r
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_ref().map(|v| v.to_string()),
                c.config_source,
                c.read_only,
            )
        })
        .collect();
    (r.error_code, entries)
}

async fn topic_config(conn: &mut Conn, topic: &str, key: &str) -> (Option<String>, i8) {
    let (error, entries) = describe(conn, TOPIC, topic).await;
    assert_eq!(error, 0, "describe {topic}");
    let (_, value, source, _) = entries
        .into_iter()
        .find(|e| e.0 == key)
        .unwrap_or_else(|| panic!("{key} is described"));
    (value, source)
}

/// Sends one IncrementalAlterConfigs resource and returns its (error code, message).
async fn incremental(
    conn: &mut Conn,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let configs = ops
        .iter()
        .map(|(key, op, value)| {
            AlterableConfig::default()
                .with_name(s(key))
                .with_config_operation(*op)
                .with_value(value.map(s))
        })
        .collect();
    let request = IncrementalAlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_configs(configs),
        ]);
    let resp: IncrementalAlterConfigsResponse = conn
        .call(ApiKey::IncrementalAlterConfigs, 1, &request)
        .await;
    let r = &resp.responses[0];
    (
        r.error_code,
        r.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// An IncrementalAlterConfigs that applies (not validate-only): (error code, message).
async fn alter(
    conn: &mut Conn,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> (i16, Option<String>) {
    incremental(conn, resource_type, name, ops, false).await
}

/// An IncrementalAlterConfigs (not validate-only) that must succeed.
async fn alter_ok(
    conn: &mut Conn,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
) {
    assert_eq!(
        alter(conn, resource_type, name, ops).await,
        (0, None),
        "IncrementalAlterConfigs {ops:?} on {name}"
    );
}

/// Creates one topic with rdkafka's AdminClient: its result code.
async fn create_one(
    admin: &AdminClient<DefaultClientContext>,
    topic: NewTopic<'_>,
    options: &AdminOptions,
) -> Result<(), RDKafkaErrorCode> {
    let results = admin
        .create_topics(&[topic], options)
        .await
        .expect("CreateTopics");
    results[0].clone().map(|_| ()).map_err(|(_, c)| c)
}

fn batch(records: &[(i64, &str)]) -> Bytes {
    let records: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(i, (ts, v))| {
            raw::record(
                i as i64,
                *ts,
                Some(Bytes::from(format!("key-{i}"))),
                Bytes::copy_from_slice(v.as_bytes()),
            )
        })
        .collect();
    raw::encode_batch(&records)
}

/// Produces one batch to partition 0 and returns (error code, base offset).
async fn produce(conn: &mut Conn, topic: &str, records: Bytes) -> (i16, i64) {
    let request = raw::produce_request(topic, 0, records);
    let resp: ProduceResponse = conn.call(ApiKey::Produce, 9, &request).await;
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn list_offset(
    conn: &mut Conn,
    topic: &str,
    version: i16,
    timestamp: i64,
) -> (i16, i64, i64) {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(timestamp),
                ]),
        ]);
    let resp: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, version, &request).await;
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_configs_reports_values_and_their_sources() {
    let b = start_broker(&[("log.retention.hours", "1")]).await;
    let admin = admin(&b.bootstrap);
    let topic = "described";
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))
                .set("cleanup.policy", "compact")
                .set("retention.bytes", "1000")],
            &admin_options(),
        )
        .await
        .expect("CreateTopics");
    assert!(created[0].is_ok(), "{created:?}");

    let described = admin
        .describe_configs(
            &[
                ResourceSpecifier::Topic(topic),
                ResourceSpecifier::Broker(1),
            ],
            &admin_options(),
        )
        .await
        .expect("DescribeConfigs");
    let topic_configs = described[0].as_ref().expect("topic described");
    let entry = |name: &str| {
        topic_configs
            .get(name)
            .unwrap_or_else(|| panic!("{name} is described"))
    };
    assert_eq!(entry("cleanup.policy").value.as_deref(), Some("compact"));
    assert_eq!(entry("cleanup.policy").source, ConfigSource::DynamicTopic);
    assert_eq!(entry("retention.bytes").value.as_deref(), Some("1000"));
    assert_eq!(
        entry("retention.ms").value.as_deref(),
        Some("3600000"),
        "log.retention.hours=1 in the broker config"
    );
    assert_eq!(entry("retention.ms").source, ConfigSource::StaticBroker);
    assert_eq!(entry("segment.bytes").value.as_deref(), Some("1073741824"));
    assert_eq!(entry("segment.bytes").source, ConfigSource::Default);
    assert!(!entry("segment.bytes").is_read_only && !entry("segment.bytes").is_sensitive);

    let broker = described[1].as_ref().expect("broker described");
    let hours = broker
        .get("log.retention.hours")
        .expect("log.retention.hours");
    assert_eq!(hours.value.as_deref(), Some("1"));
    assert_eq!(hours.source, ConfigSource::StaticBroker);
    assert!(hours.is_read_only, "only log.retention.ms is dynamic");
    assert!(
        !broker
            .get("log.retention.ms")
            .expect("log.retention.ms")
            .is_read_only
    );
    assert!(broker.get("log.dirs").expect("log.dirs").is_read_only);

    // rdkafka's wrapper drops per-resource errors; the raw response carries them.
    let mut conn = Conn::open(&b.bootstrap).await;
    assert_eq!(
        describe(&mut conn, TOPIC, "no-such-topic").await.0,
        UNKNOWN_TOPIC_OR_PARTITION
    );

    // Raw: the config name filter, documentation and a broker id that is not this broker.
    let request = DescribeConfigsRequest::default()
        .with_include_documentation(true)
        .with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(s(topic))
                .with_configuration_keys(Some(vec![s("retention.ms"), s("no.such.key")])),
            DescribeConfigsResource::default()
                .with_resource_type(BROKER)
                .with_resource_name(s("7")),
        ]);
    let resp: DescribeConfigsResponse = conn.call(ApiKey::DescribeConfigs, 4, &request).await;
    let only = &resp.results[0].configs;
    assert_eq!(only.len(), 1, "only the named config that exists");
    assert_eq!(only[0].config_type, 5, "LONG");
    assert!(
        only[0]
            .documentation
            .as_ref()
            .is_some_and(|d| !d.is_empty())
    );
    assert_eq!(resp.results[1].error_code, INVALID_REQUEST);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_configs_validates_and_takes_effect_without_a_restart() {
    let b = start_broker(&[]).await;
    let topic = "altered";
    create_topic(&b.bootstrap, topic, 1).await;
    let admin = admin(&b.bootstrap);
    let producer = producer(&b.bootstrap, &[("message.timeout.ms", "5000")]);
    let big = vec![b'x'; 20_000];
    producer
        .send(
            FutureRecord::to(topic).key("k").payload(&big),
            Duration::from_secs(10),
        )
        .await
        .expect("a 20 kB record fits the default max.message.bytes");

    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", "5000")],
            &admin_options(),
        )
        .await
        .expect("AlterConfigs");
    assert!(altered[0].is_ok(), "{altered:?}");
    let refused = producer
        .send(
            FutureRecord::to(topic).key("k").payload(&big),
            Duration::from_secs(10),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err((
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                _
            ))
        ),
        "the new max.message.bytes applies at once: {refused:?}"
    );

    // rdkafka's wrapper reports every resource as altered; the raw AlterConfigs response has the errors.
    let mut conn = Conn::open(&b.bootstrap).await;
    for (key, value) in [
        ("retention.ms", "soon"),
        ("no.such.config", "1"),
        ("min.insync.replicas", "0"),
        ("compression.gzip.level", "10"),
    ] {
        let request = AlterConfigsRequest::default().with_resources(vec![
            LegacyAlterResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(s(topic))
                .with_configs(vec![
                    LegacyAlterable::default()
                        .with_name(s(key))
                        .with_value(Some(s(value))),
                ]),
        ]);
        let resp: AlterConfigsResponse = conn.call(ApiKey::AlterConfigs, 2, &request).await;
        let r = &resp.responses[0];
        assert_eq!(r.error_code, INVALID_CONFIG, "{key}={value}");
        let message = r
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        assert!(message.contains(key), "the message names {key}: {message}");
    }
    let validate_only = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(topic)).set("retention.ms", "1234")],
            &admin_options().validate_only(true),
        )
        .await
        .expect("AlterConfigs");
    assert!(validate_only[0].is_ok());
    assert_eq!(
        topic_config(&mut conn, topic, "retention.ms").await,
        (Some("604800000".into()), DEFAULT_CONFIG),
        "validate_only changes nothing"
    );
    assert_eq!(
        topic_config(&mut conn, topic, "max.message.bytes").await,
        (Some("5000".into()), DYNAMIC_TOPIC_CONFIG),
        "a failed alter leaves the earlier one in place"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_checks_configs_validate_only_and_replication_factor() {
    let b = start_broker(&[]).await;
    let admin = admin(&b.bootstrap);

    assert_eq!(
        create_one(
            &admin,
            NewTopic::new("checked", 2, TopicReplication::Fixed(1)).set("retention.ms", "60000"),
            &admin_options().validate_only(true)
        )
        .await,
        Ok(())
    );
    assert_eq!(
        topic_partition_count(&b.bootstrap, "checked"),
        Err(RDKafkaErrorCode::UnknownTopicOrPartition),
        "validate_only creates nothing"
    );

    assert_eq!(
        create_one(
            &admin,
            NewTopic::new("checked", 2, TopicReplication::Fixed(1)).set("retention.ms", "-7"),
            &admin_options()
        )
        .await,
        Err(RDKafkaErrorCode::InvalidConfig)
    );
    assert_eq!(
        create_one(
            &admin,
            NewTopic::new("checked", 2, TopicReplication::Fixed(1)).set("preallocate", "true"),
            &admin_options()
        )
        .await,
        Err(RDKafkaErrorCode::InvalidConfig)
    );
    assert_eq!(
        create_one(
            &admin,
            NewTopic::new("checked", 2, TopicReplication::Fixed(2)),
            &admin_options()
        )
        .await,
        Err(RDKafkaErrorCode::InvalidReplicationFactor)
    );
    assert_eq!(
        create_one(
            &admin,
            NewTopic::new("checked", 2, TopicReplication::Variable(&[&[1], &[2]]),),
            &admin_options()
        )
        .await,
        Err(RDKafkaErrorCode::InvalidReplicaAssignment)
    );

    assert_eq!(
        create_one(
            &admin,
            NewTopic::new("checked", 2, TopicReplication::Variable(&[&[1], &[1]]))
                .set("retention.ms", "60000")
                .set("min.insync.replicas", "1"),
            &admin_options()
        )
        .await,
        Ok(())
    );
    wait_for_partitions(&b.bootstrap, "checked", 2).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    assert_eq!(
        topic_config(&mut conn, "checked", "retention.ms").await,
        (Some("60000".into()), DYNAMIC_TOPIC_CONFIG)
    );

    // CreateTopics v5+ answers with the new topic's configs and their sources, validate_only included.
    let request = CreateTopicsRequest::default()
        .with_validate_only(true)
        .with_timeout_ms(10_000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(s("answered")))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(vec![
                    CreatableTopicConfig::default()
                        .with_name(s("segment.ms"))
                        .with_value(Some(s("900000"))),
                ]),
        ]);
    let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 7, &request).await;
    let created = &resp.topics[0];
    assert_eq!(created.error_code, 0);
    let configs = created.configs.as_ref().expect("v5+ carries configs");
    let entry = |name: &str| {
        configs
            .iter()
            .find(|c| c.name.as_str() == name)
            .map(|c| (c.value.as_ref().map(|v| v.to_string()), c.config_source))
    };
    assert_eq!(
        entry("segment.ms"),
        Some((Some("900000".into()), DYNAMIC_TOPIC_CONFIG))
    );
    assert_eq!(
        entry("retention.ms"),
        Some((Some("604800000".into()), DEFAULT_CONFIG))
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_grows_a_topic_that_clients_then_use() {
    let b = start_broker(&[]).await;
    let topic = "growing";
    create_topic(&b.bootstrap, topic, 1).await;
    let admin = admin(&b.bootstrap);
    let grow = |count: usize| NewPartitions::new(topic, count);
    let code = |r: &Vec<rdkafka::admin::TopicResult>| r[0].clone().map(|_| ()).map_err(|(_, c)| c);

    let r = admin
        .create_partitions(&[grow(5)], &admin_options().validate_only(true))
        .await
        .expect("CreatePartitions");
    assert_eq!(code(&r), Ok(()));
    assert_eq!(
        topic_partition_count(&b.bootstrap, topic),
        Ok(1),
        "validate_only"
    );

    let r = admin
        .create_partitions(&[grow(3)], &admin_options())
        .await
        .expect("CreatePartitions");
    assert_eq!(code(&r), Ok(()));
    wait_for_partitions(&b.bootstrap, topic, 3).await;
    let producer = producer(&b.bootstrap, &[]);
    let d = producer
        .send(
            FutureRecord::to(topic)
                .partition(2)
                .key("k")
                .payload("in a new partition"),
            Duration::from_secs(10),
        )
        .await
        .expect("produce to a new partition");
    assert_eq!((d.partition, d.offset), (2, 0));
    let consumer = consumer(&b.bootstrap, &[]);
    assign(&consumer, topic, &[(2, 0)]);
    let got = consume_n(&consumer, 1, DEADLINE).await;
    assert_eq!(got[0].payload(), Some(&b"in a new partition"[..]));

    for count in [2, 3] {
        let r = admin
            .create_partitions(&[grow(count)], &admin_options())
            .await
            .expect("CreatePartitions");
        assert_eq!(
            code(&r),
            Err(RDKafkaErrorCode::InvalidPartitions),
            "to {count}"
        );
    }
    let r = admin
        .create_partitions(&[NewPartitions::new("no-such-topic", 2)], &admin_options())
        .await
        .expect("CreatePartitions");
    assert_eq!(code(&r), Err(RDKafkaErrorCode::UnknownTopicOrPartition));
    b.shutdown().await;
}

/// Growing topics by more than 10,000 partitions in one request is refused whole (POLICY_VIOLATION) and
/// adds nothing: one crafted count must not fill the disk with partition logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_over_the_partition_cap_is_refused_whole() {
    let b = start_broker(&[]).await;
    create_topic(&b.bootstrap, "grow-a", 1).await;
    create_topic(&b.bootstrap, "grow-b", 1).await;
    let admin = admin(&b.bootstrap);
    let r = admin
        .create_partitions(
            &[
                NewPartitions::new("grow-a", 6_000),
                NewPartitions::new("grow-b", 6_000),
            ],
            &admin_options(),
        )
        .await
        .expect("CreatePartitions");
    let codes: Vec<_> = r
        .iter()
        .map(|t| t.clone().map(|_| ()).map_err(|(_, c)| c))
        .collect();
    assert_eq!(
        codes,
        vec![
            Err(RDKafkaErrorCode::PolicyViolation),
            Err(RDKafkaErrorCode::PolicyViolation)
        ]
    );
    for topic in ["grow-a", "grow-b"] {
        assert_eq!(
            topic_partition_count(&b.bootstrap, topic),
            Ok(1),
            "{topic} unchanged"
        );
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_stamps_records_and_out_of_window_timestamps_are_refused() {
    let b = start_broker(&[]).await;
    let admin = admin(&b.bootstrap);
    let r = admin
        .create_topics(
            &[
                NewTopic::new("stamped", 1, TopicReplication::Fixed(1))
                    .set("message.timestamp.type", "LogAppendTime"),
                NewTopic::new("windowed", 1, TopicReplication::Fixed(1))
                    .set("message.timestamp.before.max.ms", "60000"),
            ],
            &admin_options(),
        )
        .await
        .expect("CreateTopics");
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    wait_for_partitions(&b.bootstrap, "stamped", 1).await;
    wait_for_partitions(&b.bootstrap, "windowed", 1).await;

    let producer = producer(&b.bootstrap, &[("message.timeout.ms", "5000")]);
    let before = now_ms();
    producer
        .send(
            FutureRecord::to("stamped")
                .key("k")
                .payload("v")
                .timestamp(1_000),
            Duration::from_secs(10),
        )
        .await
        .expect("produce");
    let consumer = consumer(&b.bootstrap, &[]);
    assign(&consumer, "stamped", &[(0, 0)]);
    let got = consume_n(&consumer, 1, DEADLINE).await;
    match got[0].timestamp() {
        Timestamp::LogAppendTime(ts) => assert!(
            ts >= before && ts <= now_ms(),
            "stamped with the broker's clock, not 1000: {ts}"
        ),
        other => panic!("expected LogAppendTime, got {other:?}"),
    }

    let refused = producer
        .send(
            FutureRecord::to("windowed")
                .key("k")
                .payload("old")
                .timestamp(now_ms() - 3_600_000),
            Duration::from_secs(10),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err((
                KafkaError::MessageProduction(RDKafkaErrorCode::InvalidTimestamp),
                _
            ))
        ),
        "an hour-old CreateTime record is outside a 60 s window: {refused:?}"
    );
    producer
        .send(
            FutureRecord::to("windowed").key("k").payload("fresh"),
            Duration::from_secs(10),
        )
        .await
        .expect("a current timestamp is accepted");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_alter_configs_sets_deletes_appends_and_subtracts() {
    let b = start_broker(&[]).await;
    let topic = "incremental";
    create_topic(&b.bootstrap, topic, 2).await;
    let mut conn = Conn::open(&b.bootstrap).await;

    let ok = (0, None);
    alter_ok(
        &mut conn,
        TOPIC,
        topic,
        &[("cleanup.policy", APPEND, Some("compact"))],
    )
    .await;
    assert_eq!(
        topic_config(&mut conn, topic, "cleanup.policy").await,
        (Some("delete,compact".into()), DYNAMIC_TOPIC_CONFIG),
        "APPEND adds to the default list"
    );
    alter_ok(
        &mut conn,
        TOPIC,
        topic,
        &[("cleanup.policy", SUBTRACT, Some("delete"))],
    )
    .await;
    assert_eq!(
        topic_config(&mut conn, topic, "cleanup.policy")
            .await
            .0
            .as_deref(),
        Some("compact")
    );
    let (code, message) = alter(
        &mut conn,
        TOPIC,
        topic,
        &[("retention.ms", APPEND, Some("5"))],
    )
    .await;
    assert_eq!(code, INVALID_CONFIG, "APPEND on a non-list config");
    assert!(message.is_some_and(|m| m.contains("retention.ms")));
    alter_ok(
        &mut conn,
        TOPIC,
        topic,
        &[
            ("retention.ms", SET, Some("120000")),
            ("cleanup.policy", DELETE, None),
        ],
    )
    .await;
    assert_eq!(
        topic_config(&mut conn, topic, "cleanup.policy").await,
        (Some("delete".into()), DEFAULT_CONFIG),
        "DELETE falls back to the default"
    );
    let (code, message) = alter(
        &mut conn,
        TOPIC,
        topic,
        &[("segment.bytes", SET, Some("1"))],
    )
    .await;
    assert_eq!(code, INVALID_CONFIG);
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("segment.bytes") && m.contains("at least")),
        "{message:?}"
    );
    assert_eq!(
        alter(
            &mut conn,
            TOPIC,
            "nope",
            &[("retention.ms", SET, Some("1"))]
        )
        .await
        .0,
        UNKNOWN_TOPIC_OR_PARTITION
    );

    // Broker configs: the cluster-wide default, this broker's own, read-only ones, other brokers.
    alter_ok(
        &mut conn,
        BROKER,
        "",
        &[("log.retention.bytes", SET, Some("777777"))],
    )
    .await;
    assert_eq!(
        topic_config(&mut conn, topic, "retention.bytes").await,
        (Some("777777".into()), DYNAMIC_DEFAULT_BROKER_CONFIG)
    );
    assert_eq!(
        incremental(
            &mut conn,
            BROKER,
            "1",
            &[("log.retention.bytes", SET, Some("888888"))],
            true
        )
        .await,
        ok
    );
    assert_eq!(
        topic_config(&mut conn, topic, "retention.bytes")
            .await
            .0
            .as_deref(),
        Some("777777"),
        "validate_only"
    );
    alter_ok(
        &mut conn,
        BROKER,
        "1",
        &[("log.retention.bytes", SET, Some("888888"))],
    )
    .await;
    assert_eq!(
        topic_config(&mut conn, topic, "retention.bytes").await,
        (Some("888888".into()), DYNAMIC_BROKER_CONFIG),
        "this broker's value wins over the cluster default"
    );
    assert_eq!(
        topic_config(&mut conn, topic, "retention.ms").await,
        (Some("120000".into()), DYNAMIC_TOPIC_CONFIG),
        "topic overrides win over broker configs"
    );
    assert_eq!(
        alter(
            &mut conn,
            BROKER,
            "1",
            &[("log.dirs", SET, Some("/elsewhere"))]
        )
        .await
        .0,
        INVALID_REQUEST,
        "log.dirs is not dynamic"
    );
    assert_eq!(
        alter(
            &mut conn,
            BROKER,
            "1",
            &[("log.retention.bytes", SET, Some("lots"))]
        )
        .await
        .0,
        INVALID_CONFIG
    );
    assert_eq!(
        alter(
            &mut conn,
            BROKER,
            "9",
            &[("log.retention.bytes", SET, Some("1"))]
        )
        .await
        .0,
        INVALID_REQUEST,
        "another broker's id"
    );
    let (error, defaults) = describe(&mut conn, BROKER, "").await;
    assert_eq!(error, 0);
    assert_eq!(
        defaults,
        vec![(
            "log.retention.bytes".to_string(),
            Some("777777".to_string()),
            DYNAMIC_DEFAULT_BROKER_CONFIG,
            false
        )]
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_cluster_and_log_dirs_describe_this_node_and_its_disk() {
    let b = start_broker(&[]).await;
    let topic = "sized";
    create_topic(&b.bootstrap, topic, 1).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    let (code, _) = produce(&mut conn, topic, batch(&[(now_ms(), "some bytes on disk")])).await;
    assert_eq!(code, 0);

    let cluster: DescribeClusterResponse = conn
        .call(
            ApiKey::DescribeCluster,
            2,
            &DescribeClusterRequest::default().with_endpoint_type(1),
        )
        .await;
    assert_eq!(cluster.error_code, 0);
    assert_eq!(cluster.cluster_id.as_str(), b.broker.cluster_id());
    assert_eq!(cluster.controller_id, BrokerId(1));
    assert_eq!(cluster.brokers.len(), 1);
    let addr = b.broker.local_addr();
    assert_eq!(cluster.brokers[0].broker_id, BrokerId(1));
    assert_eq!(cluster.brokers[0].host.as_str(), addr.ip().to_string());
    assert_eq!(cluster.brokers[0].port, i32::from(addr.port()));

    let dirs: DescribeLogDirsResponse = conn
        .call(
            ApiKey::DescribeLogDirs,
            4,
            &DescribeLogDirsRequest::default().with_topics(None),
        )
        .await;
    assert_eq!(dirs.results.len(), 1);
    let dir = &dirs.results[0];
    assert_eq!(dir.error_code, 0);
    assert!(dir.total_bytes > 0 && dir.usable_bytes > 0 && dir.usable_bytes <= dir.total_bytes);
    let t = dir
        .topics
        .iter()
        .find(|t| t.name.0.as_str() == topic)
        .expect("the topic is in the log dir");
    assert!(t.partitions[0].partition_size > 18, "{:?}", t.partitions);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_for_leader_epoch_and_list_offsets_max_timestamp() {
    let b = start_broker(&[]).await;
    let topic = "epochs";
    create_topic(&b.bootstrap, topic, 1).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    let t = now_ms();
    assert_eq!(
        produce(
            &mut conn,
            topic,
            batch(&[(t, "a"), (t + 500, "b"), (t + 10, "c")])
        )
        .await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut conn, topic, batch(&[(t + 20, "d"), (t + 30, "e")])).await,
        (0, 3)
    );

    assert_eq!(
        list_offset(&mut conn, topic, 7, -3).await,
        (0, 1, t + 500),
        "the record with the largest timestamp"
    );
    assert_eq!(
        list_offset(&mut conn, topic, 8, -4).await,
        (0, 0, -1),
        "earliest local"
    );
    assert_eq!(list_offset(&mut conn, topic, 6, -1).await.1, 5);

    let request = |epoch: i32, current: i32| {
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                OffsetForLeaderTopic::default()
                    .with_topic(TopicName(s(topic)))
                    .with_partitions(vec![
                        OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(current)
                            .with_leader_epoch(epoch),
                    ]),
            ])
    };
    let answer = |r: OffsetForLeaderEpochResponse| {
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.leader_epoch, p.end_offset)
    };
    let r: OffsetForLeaderEpochResponse = conn
        .call(ApiKey::OffsetForLeaderEpoch, 4, &request(0, 0))
        .await;
    assert_eq!(
        answer(r),
        (0, 0, 5),
        "the current epoch ends at the log end offset"
    );
    let r: OffsetForLeaderEpochResponse = conn
        .call(ApiKey::OffsetForLeaderEpoch, 4, &request(3, -1))
        .await;
    assert_eq!(answer(r), (0, -1, -1), "an epoch this log never had");
    let r: OffsetForLeaderEpochResponse = conn
        .call(ApiKey::OffsetForLeaderEpoch, 4, &request(0, 5))
        .await;
    assert_eq!(answer(r).0, UNKNOWN_LEADER_EPOCH);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_topic_and_broker_configs_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let static_config = [
        ("log.retention.ms", "5000"),
        ("log.segment.bytes", "100000"),
    ];
    let b = start_broker_in(&data, &static_config).await;
    let topic = "kept";
    create_topic(&b.bootstrap, topic, 1).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    assert_eq!(
        alter(
            &mut conn,
            TOPIC,
            topic,
            &[("max.message.bytes", SET, Some("4096"))]
        )
        .await,
        (0, None)
    );
    assert_eq!(
        alter(
            &mut conn,
            BROKER,
            "1",
            &[("log.retention.ms", SET, Some("7000"))]
        )
        .await,
        (0, None)
    );
    drop(conn);
    let (data, _) = b.shutdown().await;

    let b = start_broker_in(&data, &static_config).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    assert_eq!(
        topic_config(&mut conn, topic, "max.message.bytes").await,
        (Some("4096".into()), DYNAMIC_TOPIC_CONFIG)
    );
    assert_eq!(
        topic_config(&mut conn, topic, "retention.ms").await,
        (Some("7000".into()), DYNAMIC_BROKER_CONFIG),
        "the dynamic value wins over server.properties after a restart"
    );
    assert_eq!(
        topic_config(&mut conn, topic, "segment.bytes").await,
        (Some("100000".into()), STATIC_BROKER_CONFIG)
    );
    // And the stored topic override is applied to the reopened log.
    let (code, _) = produce(&mut conn, topic, batch(&[(now_ms(), &"x".repeat(8000))])).await;
    assert_eq!(
        code, 10,
        "MESSAGE_TOO_LARGE under the restored max.message.bytes"
    );
    drop(conn);
    b.shutdown().await;
    drop(tmp);
}

/// Kafka answers a timestamp lookup with the first record (not batch) whose timestamp reaches the target,
/// and MAX_TIMESTAMP with the record carrying it, decompressing batches as needed (librdkafka's test 0054,
/// aiokafka's `offsets_for_times`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_finds_the_record_inside_a_batch() {
    use rdkafka::consumer::Consumer;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

    let b = start_broker(&[]).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    let t = now_ms() - 60_000;
    // Out of order on purpose: the first record reaching a target is not always the batch's largest.
    let timestamps = [t, t + 100, t + 50, t + 200];
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("times-{codec}");
        create_topic(&b.bootstrap, &topic, 1).await;
        // A long linger and every record enqueued before the first delivery: they leave as one batch.
        let producer = producer(
            &b.bootstrap,
            &[("linger.ms", "500"), ("compression.codec", codec)],
        );
        let payloads: Vec<String> = (0..timestamps.len())
            .map(|i| format!("record-{i}"))
            .collect();
        let sends: Vec<_> = timestamps
            .iter()
            .zip(&payloads)
            .map(|(ts, payload)| {
                producer
                    .send_result(
                        FutureRecord::to(&topic)
                            .key("k")
                            .payload(payload)
                            .timestamp(*ts),
                    )
                    .map_err(|(e, _)| e)
                    .expect("enqueue")
            })
            .collect();
        for send in sends {
            send.await.expect("delivery report").expect("produce");
        }
        let batches = stored_batches(&b.data_dir, &topic, 0);
        assert_eq!(batches.len(), 1, "{codec}: one batch holds every record");
        assert_eq!(batches[0].1, 4, "{codec}");

        let consumer = consumer(&b.bootstrap, &[]);
        for (target, expected) in [
            (t, Offset::Offset(0)),
            (t + 1, Offset::Offset(1)),
            (t + 60, Offset::Offset(1)),
            (t + 150, Offset::Offset(3)),
            (t + 201, Offset::End),
        ] {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, 0, Offset::Offset(target))
                .expect("valid timestamp");
            let found = blocking(|| consumer.offsets_for_times(tpl, Duration::from_secs(10)))
                .expect("offsets_for_times");
            let offset = found
                .find_partition(&topic, 0)
                .expect("partition in the answer")
                .offset();
            assert_eq!(offset, expected, "{codec}: timestamp t+{}", target - t);
        }
        // The answer carries the record's own timestamp, not the batch's largest.
        assert_eq!(
            list_offset(&mut conn, &topic, 6, t + 1).await,
            (0, 1, t + 100),
            "{codec}"
        );
        assert_eq!(
            list_offset(&mut conn, &topic, 7, -3).await,
            (0, 3, t + 200),
            "{codec}: the record with the largest timestamp"
        );
    }
    b.shutdown().await;
}

const GROUP: i8 = 32;
const GROUP_CONFIG: i8 = 8;

/// (value, source) of one config of a GROUP resource, by DescribeConfigs.
async fn group_config(conn: &mut Conn, group: &str, key: &str) -> (Option<String>, i8) {
    let (error, entries) = describe(conn, GROUP, group).await;
    assert_eq!(error, 0, "describe group {group}");
    let (_, value, source, _) = entries
        .into_iter()
        .find(|e| e.0 == key)
        .unwrap_or_else(|| panic!("{key} is described"));
    (value, source)
}

/// KIP-848 group configs (Kafka 4.0+): any group id, existing or not, has them; an override is checked
/// against the broker's group.consumer.* bounds and can be deleted again (librdkafka's 0081).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_configs_are_described_altered_and_validated() {
    let b = start_broker(&[("group.consumer.max.session.timeout.ms", "70000")]).await;
    let admin = admin(&b.bootstrap);
    let mut conn = Conn::open(&b.bootstrap).await;
    let group = "no-such-group-yet";
    assert_eq!(
        group_config(&mut conn, group, "consumer.session.timeout.ms").await,
        (Some("45000".into()), DEFAULT_CONFIG)
    );
    assert_eq!(
        group_config(&mut conn, group, "share.auto.offset.reset").await,
        (Some("latest".into()), DEFAULT_CONFIG)
    );

    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Group(group))
                .set("consumer.session.timeout.ms", "65000")],
            &admin_options(),
        )
        .await
        .expect("AlterConfigs");
    assert!(altered[0].is_ok(), "{altered:?}");
    assert_eq!(
        group_config(&mut conn, group, "consumer.session.timeout.ms").await,
        (Some("65000".into()), GROUP_CONFIG),
        "within the broker's raised maximum"
    );

    for (key, value, why) in [
        (
            "consumer.session.timeout.ms",
            "1000",
            "group.consumer.min.session.timeout.ms",
        ),
        (
            "consumer.session.timeout.ms",
            "80000",
            "group.consumer.max.session.timeout.ms",
        ),
        ("consumer.heartbeat.interval.ms", "five", "INT"),
        ("share.isolation.level", "dirty", "read_committed"),
        ("no.such.config", "1", "Unknown group config name"),
    ] {
        // (rdkafka 0.39's alter_configs reports every resource as altered whatever the broker answers, so
        // refusals are checked on the wire.)
        let (code, message) = alter(&mut conn, GROUP, group, &[(key, SET, Some(value))]).await;
        assert_eq!(code, INVALID_CONFIG, "{key}={value}");
        assert!(message.unwrap_or_default().contains(why), "{key}={value}");
    }
    assert_eq!(
        group_config(&mut conn, group, "consumer.session.timeout.ms").await,
        (Some("65000".into()), GROUP_CONFIG),
        "a refused change changes nothing"
    );

    alter_ok(
        &mut conn,
        GROUP,
        group,
        &[("consumer.session.timeout.ms", DELETE, None)],
    )
    .await;
    assert_eq!(
        group_config(&mut conn, group, "consumer.session.timeout.ms").await,
        (Some("45000".into()), DEFAULT_CONFIG)
    );
    let (code, _) = describe(&mut conn, GROUP, "").await;
    assert_eq!(code, INVALID_REQUEST, "a group resource needs a name");
    drop(conn);
    b.shutdown().await;
}

/// Group configs and the dynamic SASL listener configs are stored like topic configs: a restart keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_configs_and_sasl_broker_configs_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let b = start_broker_in(&data, &[]).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    alter_ok(
        &mut conn,
        GROUP,
        "kept-group",
        &[
            ("consumer.heartbeat.interval.ms", SET, Some("6000")),
            ("share.auto.offset.reset", SET, Some("by_duration:PT1H")),
        ],
    )
    .await;
    let (code, message) = alter(
        &mut conn,
        BROKER,
        "1",
        &[("sasl.login.refresh.window.factor", SET, Some("0.2"))],
    )
    .await;
    assert_eq!(
        code, INVALID_CONFIG,
        "{message:?}: Kafka's range is [0.5, 1.0]"
    );
    alter_ok(
        &mut conn,
        BROKER,
        "1",
        &[("sasl.kerberos.min.time.before.relogin", SET, Some("58000"))],
    )
    .await;
    drop(conn);
    let (data, _) = b.shutdown().await;

    let b = start_broker_in(&data, &[]).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    assert_eq!(
        group_config(&mut conn, "kept-group", "consumer.heartbeat.interval.ms").await,
        (Some("6000".into()), GROUP_CONFIG)
    );
    assert_eq!(
        group_config(&mut conn, "kept-group", "share.auto.offset.reset").await,
        (Some("by_duration:PT1H".into()), GROUP_CONFIG)
    );
    let (error, entries) = describe(&mut conn, BROKER, "1").await;
    assert_eq!(error, 0);
    let relogin = entries
        .iter()
        .find(|e| e.0 == "sasl.kerberos.min.time.before.relogin")
        .expect("described");
    assert_eq!(
        (relogin.1.as_deref(), relogin.2, relogin.3),
        (Some("58000"), DYNAMIC_BROKER_CONFIG, false)
    );
    drop(conn);
    b.shutdown().await;
    drop(tmp);
}
