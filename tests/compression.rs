//! A topic's `compression.type` as Kafka applies it: `producer` (the default) stores batches as the
//! producer compressed them; any codec (or `uncompressed`) makes the broker re-encode batches of another
//! codec at append, which consumers cannot tell apart from the original records (keys, values, headers,
//! timestamps, offsets). Settable at creation, by AlterConfigs and IncrementalAlterConfigs, with the
//! KIP-390 levels validated, and as the broker's default for topics without an override.

mod common;

use std::path::Path;

use common::*;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Message, OwnedHeaders, Timestamp};
use rdkafka::producer::FutureRecord;

const RECORDS: usize = 30;
const NONE: u16 = 0;
const GZIP: u16 = 1;
const SNAPPY: u16 = 2;
const LZ4: u16 = 3;
const ZSTD: u16 = 4;

/// Produces RECORDS records to partition 0 of `topic` with the client codec `codec`, each with a key,
/// a value, two headers and its own CreateTime timestamp; returns the next offset.
async fn produce(bootstrap: &str, topic: &str, codec: &str, from: usize) -> i64 {
    let producer = producer(
        bootstrap,
        &[("compression.type", codec), ("linger.ms", "20")],
    );
    let mut pending = Vec::new();
    for i in from..from + RECORDS {
        let key = format!("key-{i}");
        let value = format!("value-{i}-{}", "x".repeat(200));
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "n",
                value: Some(&i.to_string()),
            })
            .insert(Header {
                key: "empty",
                value: None::<&[u8]>,
            });
        let record = FutureRecord::to(topic)
            .partition(0)
            .key(&key)
            .payload(&value)
            .headers(headers)
            .timestamp(1_700_000_000_000 + i as i64 * 7);
        pending.push(producer.send_result(record).expect("queued"));
    }
    let mut last = -1;
    for p in pending {
        last = p.await.expect("delivery").expect("produced").offset;
    }
    last + 1
}

/// Consumes `n` records from offset `from` and checks that each is exactly what [`produce`] sent.
async fn assert_consumed_as_produced(bootstrap: &str, topic: &str, from: i64, n: usize) {
    let consumer = consumer(bootstrap, &[]);
    assign(&consumer, topic, &[(0, from)]);
    let messages = consume_n(&consumer, n, DEADLINE).await;
    for (j, m) in messages.iter().enumerate() {
        let offset = from + j as i64;
        let i = offset as usize;
        assert_eq!(m.offset(), offset);
        assert_eq!(m.key(), Some(format!("key-{i}").as_bytes()));
        let value = format!("value-{i}-{}", "x".repeat(200));
        assert_eq!(m.payload(), Some(value.as_bytes()));
        assert_eq!(
            m.timestamp(),
            Timestamp::CreateTime(1_700_000_000_000 + i as i64 * 7)
        );
        assert_eq!(
            headers_of(m),
            vec![
                ("n".to_string(), Some(i.to_string().into_bytes())),
                ("empty".to_string(), None)
            ]
        );
    }
}

/// Codecs of the batches stored for partition 0 of `topic` from offset `from` on.
fn stored_codecs(data_dir: &Path, topic: &str, from: i64) -> Vec<u16> {
    stored_batches(data_dir, topic, 0)
        .into_iter()
        .filter(|b| b.0 >= from)
        .map(|b| b.2)
        .collect()
}

fn assert_all_stored_with(data_dir: &Path, topic: &str, from: i64, codec: u16) {
    let codecs = stored_codecs(data_dir, topic, from);
    assert!(!codecs.is_empty(), "batches stored from {from}");
    assert!(
        codecs.iter().all(|c| *c == codec),
        "stored codecs {codecs:?}, expected all {codec}"
    );
}

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Sets one config of a resource with IncrementalAlterConfigs (raw: rdkafka does not wrap it).
fn set_config(bootstrap: &str, resource_type: i8, name: &str, key: &str, value: &str) {
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configs(vec![
                AlterableConfig::default()
                    .with_name(s(key))
                    .with_config_operation(0)
                    .with_value(Some(s(value))),
            ]),
    ]);
    let response: IncrementalAlterConfigsResponse =
        common::raw::request(bootstrap, ApiKey::IncrementalAlterConfigs, 1, &request);
    let r = &response.responses[0];
    assert_eq!(r.error_code, 0, "{key}={value}: {:?}", r.error_message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncompressed_batches_are_stored_as_the_topic_codec() {
    let b = start_broker(&[]).await;
    for (topic_codec, stored) in [
        ("lz4", LZ4),
        ("gzip", GZIP),
        ("snappy", SNAPPY),
        ("zstd", ZSTD),
    ] {
        let topic = format!("stored-as-{topic_codec}");
        create_topic_with(
            &b.bootstrap,
            &topic,
            1,
            &[("compression.type", topic_codec)],
        )
        .await;
        let end = produce(&b.bootstrap, &topic, "none", 0).await;
        assert_eq!(end, RECORDS as i64);
        assert_all_stored_with(&b.data_dir, &topic, 0, stored);
        assert_consumed_as_produced(&b.bootstrap, &topic, 0, RECORDS).await;
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncompressed_topic_decompresses_every_codec() {
    let b = start_broker(&[]).await;
    let topic = "stored-uncompressed";
    create_topic_with(
        &b.bootstrap,
        topic,
        1,
        &[("compression.type", "uncompressed")],
    )
    .await;
    let mut next = 0;
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let from = next;
        next = produce(&b.bootstrap, topic, codec, from as usize).await;
        assert_all_stored_with(&b.data_dir, topic, from, NONE);
    }
    assert_consumed_as_produced(&b.bootstrap, topic, 0, next as usize).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_compression_type_applies_to_the_next_batches() {
    let b = start_broker(&[]).await;
    let topic = "altered-codec";
    create_topic(&b.bootstrap, topic, 1).await;
    // producer: stored as the client compressed it.
    let next = produce(&b.bootstrap, topic, "zstd", 0).await;
    assert_all_stored_with(&b.data_dir, topic, 0, ZSTD);

    // AlterConfigs (rdkafka's AdminClient).
    let admin = admin(&b.bootstrap);
    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(topic))
                .set("compression.type", "gzip")
                .set("compression.gzip.level", "9")],
            &admin_options(),
        )
        .await
        .expect("AlterConfigs");
    assert!(altered[0].is_ok(), "{altered:?}");
    let from = next;
    let next = produce(&b.bootstrap, topic, "lz4", from as usize).await;
    assert_all_stored_with(&b.data_dir, topic, from, GZIP);

    // IncrementalAlterConfigs.
    let addr = b.bootstrap.clone();
    blocking(move || set_config(&addr, TOPIC, topic, "compression.type", "snappy"));
    let from = next;
    let next = produce(&b.bootstrap, topic, "none", from as usize).await;
    assert_all_stored_with(&b.data_dir, topic, from, SNAPPY);

    assert_consumed_as_produced(&b.bootstrap, topic, 0, next as usize).await;

    // DescribeConfigs shows what is in force.
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &admin_options())
        .await
        .expect("DescribeConfigs");
    let configs = described[0].as_ref().expect("described");
    let value = |name: &str| configs.get(name).and_then(|e| e.value.clone());
    assert_eq!(value("compression.type").as_deref(), Some("snappy"));
    assert_eq!(value("compression.gzip.level").as_deref(), Some("9"));
    assert_eq!(value("compression.lz4.level").as_deref(), Some("9"));
    assert_eq!(value("compression.zstd.level").as_deref(), Some("3"));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_takes_each_codec_and_refuses_bad_levels() {
    let b = start_broker(&[]).await;
    let admin = admin(&b.bootstrap);
    let mut topics = Vec::new();
    for codec in ["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"] {
        topics.push(
            NewTopic::new(codec, 1, TopicReplication::Fixed(1)).set("compression.type", codec),
        );
    }
    let created = admin
        .create_topics(&topics, &admin_options())
        .await
        .expect("CreateTopics");
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");

    for (key, value) in [
        ("compression.type", "brotli"),
        ("compression.gzip.level", "0"),
        ("compression.gzip.level", "10"),
        ("compression.lz4.level", "18"),
        ("compression.zstd.level", "23"),
        ("compression.zstd.level", "-131073"),
    ] {
        let created = admin
            .create_topics(
                &[NewTopic::new("refused", 1, TopicReplication::Fixed(1)).set(key, value)],
                &admin_options(),
            )
            .await
            .expect("CreateTopics");
        assert!(
            matches!(&created[0], Err((_, RDKafkaErrorCode::InvalidConfig))),
            "{key}={value}: {created:?}"
        );
    }
    for (key, value) in [
        ("compression.gzip.level", "-1"),
        ("compression.lz4.level", "17"),
        ("compression.zstd.level", "-131072"),
    ] {
        let topic = unique_topic("level");
        let created = admin
            .create_topics(
                &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set(key, value)],
                &admin_options(),
            )
            .await
            .expect("CreateTopics");
        assert!(created[0].is_ok(), "{key}={value}: {created:?}");
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_default_applies_to_topics_without_an_override() {
    let b = start_broker(&[
        ("compression.type", "zstd"),
        ("compression.zstd.level", "1"),
    ])
    .await;
    create_topic(&b.bootstrap, "defaulted", 1).await;
    create_topic_with(
        &b.bootstrap,
        "overridden",
        1,
        &[("compression.type", "producer")],
    )
    .await;
    let next = produce(&b.bootstrap, "defaulted", "gzip", 0).await;
    produce(&b.bootstrap, "overridden", "gzip", 0).await;
    assert_all_stored_with(&b.data_dir, "defaulted", 0, ZSTD);
    assert_all_stored_with(&b.data_dir, "overridden", 0, GZIP);

    // A dynamic cluster-wide default, as Kafka's compression.type is.
    let addr = b.bootstrap.clone();
    blocking(move || set_config(&addr, BROKER, "", "compression.type", "lz4"));
    let end = produce(&b.bootstrap, "defaulted", "gzip", next as usize).await;
    assert_all_stored_with(&b.data_dir, "defaulted", next, LZ4);
    assert_consumed_as_produced(&b.bootstrap, "defaulted", 0, end as usize).await;
    b.shutdown().await;
}
