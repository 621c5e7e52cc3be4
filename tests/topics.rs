//! Topic lifecycle and offsets through stock clients: auto-creation, AdminClient
//! create/delete with their error codes, and ListOffsets (watermarks, offsets by timestamp).

mod common;

use std::time::Duration;

use common::*;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const UNKNOWN_TOPIC_OR_PARTITION: RDKafkaErrorCode = RDKafkaErrorCode::UnknownTopicOrPartition;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_unknown_topic_auto_creates_it_with_num_partitions() {
    let b = start_broker(&[("num.partitions", "3")]).await;
    let topic = "auto-created";
    let producer = producer(&b.bootstrap, &[]);
    let d = producer
        .send(
            FutureRecord::to(topic).key("k").payload("hello"),
            Duration::from_secs(10),
        )
        .await
        .expect("produce to a new topic succeeds when auto-creation is on");
    assert_eq!(d.offset, 0);
    assert_eq!(topic_partition_count(&b.bootstrap, topic), Ok(3));

    let consumer = consumer(&b.bootstrap, &[]);
    assign(&consumer, topic, &[(d.partition, 0)]);
    let msgs = consume_n(&consumer, 1, DEADLINE).await;
    assert_eq!(msgs[0].payload(), Some(&b"hello"[..]));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topic_is_not_created_when_auto_create_is_disabled() {
    let b = start_broker(&[("auto.create.topics.enable", "false")]).await;
    let topic = "not-there";
    // The producer asks for auto-creation in its Metadata requests; the broker must refuse.
    let producer = producer(&b.bootstrap, &[("message.timeout.ms", "5000")]);
    let result = producer
        .send(
            FutureRecord::<(), _>::to(topic).payload("lost"),
            Duration::from_secs(5),
        )
        .await;
    match result {
        Err((KafkaError::MessageProduction(code), _)) => assert!(
            matches!(
                code,
                RDKafkaErrorCode::UnknownTopicOrPartition
                    | RDKafkaErrorCode::UnknownTopic
                    | RDKafkaErrorCode::MessageTimedOut
            ),
            "delivery error for a missing topic: {code:?}"
        ),
        other => panic!("expected a delivery failure, got {other:?}"),
    }
    let md = blocking(|| {
        use rdkafka::producer::Producer;
        producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
    })
    .expect("metadata");
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .expect("topic in response");
    assert_eq!(
        t.error().map(RDKafkaErrorCode::from),
        Some(UNKNOWN_TOPIC_OR_PARTITION),
        "metadata reports UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        topic_partition_count(&b.bootstrap, topic),
        Err(UNKNOWN_TOPIC_OR_PARTITION)
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_create_topics_honours_partitions_and_reports_errors() {
    let b = start_broker(&[]).await;
    let admin = admin(&b.bootstrap);
    let opts = admin_options();

    let results = admin
        .create_topics(
            &[NewTopic::new("orders", 6, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .expect("CreateTopics");
    assert_eq!(results, vec![Ok("orders".to_string())]);
    wait_for_partitions(&b.bootstrap, "orders", 6).await;
    assert_eq!(topic_partition_count(&b.bootstrap, "orders"), Ok(6));

    let results = admin
        .create_topics(
            &[NewTopic::new("orders", 2, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .expect("CreateTopics");
    assert_eq!(
        results,
        vec![Err((
            "orders".to_string(),
            RDKafkaErrorCode::TopicAlreadyExists
        ))]
    );
    assert_eq!(
        topic_partition_count(&b.bootstrap, "orders"),
        Ok(6),
        "unchanged"
    );

    for bad in ["bad name", "a/b", "..", "x".repeat(250).as_str()] {
        let results = admin
            .create_topics(&[NewTopic::new(bad, 1, TopicReplication::Fixed(1))], &opts)
            .await
            .expect("CreateTopics");
        assert_eq!(
            results,
            vec![Err((bad.to_string(), RDKafkaErrorCode::InvalidTopic))],
            "invalid topic name {bad:?}"
        );
    }

    let results = admin
        .create_topics(
            &[NewTopic::new("replicated", 1, TopicReplication::Fixed(2))],
            &opts,
        )
        .await
        .expect("CreateTopics");
    assert_eq!(
        results,
        vec![Err((
            "replicated".to_string(),
            RDKafkaErrorCode::InvalidReplicationFactor
        ))]
    );
    assert_eq!(
        topic_partition_count(&b.bootstrap, "replicated"),
        Err(UNKNOWN_TOPIC_OR_PARTITION),
        "a refused topic is not created"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_topic_removes_it_and_recreate_starts_at_offset_zero() {
    let b = start_broker(&[("auto.create.topics.enable", "false")]).await;
    let topic = "ephemeral";
    create_topic(&b.bootstrap, topic, 2).await;
    let producer = producer(&b.bootstrap, &[]);
    for i in 0..10 {
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(&format!("old-{i}")),
                Duration::from_secs(5),
            )
            .await
            .expect("produce");
    }
    assert_eq!(watermarks(&b.bootstrap, topic, 0), (0, 10));

    let admin = admin(&b.bootstrap);
    let results = admin
        .delete_topics(&[topic], &admin_options())
        .await
        .expect("DeleteTopics");
    assert_eq!(results, vec![Ok(topic.to_string())]);
    poll_until(DEADLINE, "deleted topic to leave metadata", || {
        (topic_partition_count(&b.bootstrap, topic) == Err(UNKNOWN_TOPIC_OR_PARTITION))
            .then_some(())
    })
    .await;
    let results = admin
        .delete_topics(&[topic], &admin_options())
        .await
        .expect("DeleteTopics");
    assert_eq!(
        results,
        vec![Err((
            topic.to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))],
        "deleting a missing topic"
    );

    create_topic(&b.bootstrap, topic, 1).await;
    assert_eq!(
        watermarks(&b.bootstrap, topic, 0),
        (0, 0),
        "recreated topic is empty"
    );
    // A fresh producer: the old one may cache the deleted topic's metadata.
    let producer = self::producer(&b.bootstrap, &[]);
    let d = producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(0)
                .payload("new-0"),
            Duration::from_secs(5),
        )
        .await
        .expect("produce to the recreated topic");
    assert_eq!(d.offset, 0, "recreated topic starts at offset 0");
    let consumer = consumer(&b.bootstrap, &[]);
    assign(&consumer, topic, &[(0, 0)]);
    let msgs = consume_n(&consumer, 1, DEADLINE).await;
    assert_eq!(
        msgs[0].payload(),
        Some(&b"new-0"[..]),
        "no data from before the delete"
    );
    assert_no_more(&consumer, Duration::from_millis(300)).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_reports_watermarks_and_offsets_for_timestamps() {
    const N: i64 = 20;
    const BASE_TS: i64 = 1_700_000_000_000;
    let b = start_broker(&[]).await;
    let topic = "timed";
    create_topic(&b.bootstrap, topic, 1).await;
    assert_eq!(
        watermarks(&b.bootstrap, topic, 0),
        (0, 0),
        "empty partition"
    );

    // Timestamps 1 s apart; small batches so the time index has several entries to search.
    let producer = producer(&b.bootstrap, &[("linger.ms", "0")]);
    for i in 0..N {
        let d = producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(&format!("t{i}"))
                    .timestamp(BASE_TS + i * 1_000),
                Duration::from_secs(5),
            )
            .await
            .expect("produce");
        assert_eq!(d.offset, i);
    }
    assert_eq!(watermarks(&b.bootstrap, topic, 0), (0, N));

    let consumer = consumer(&b.bootstrap, &[]);
    // (query timestamp, expected offset): the earliest offset whose timestamp is >= the query.
    let cases = [
        (0, Offset::Offset(0)),
        (BASE_TS, Offset::Offset(0)),
        (BASE_TS + 1, Offset::Offset(1)),
        (BASE_TS + 3_500, Offset::Offset(4)),
        (BASE_TS + 7_000, Offset::Offset(7)),
        (BASE_TS + (N - 1) * 1_000, Offset::Offset(N - 1)),
        (BASE_TS + N * 1_000, Offset::End),
    ];
    for (ts, expected) in cases {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(ts))
            .expect("valid timestamp");
        let result = blocking(|| consumer.offsets_for_times(tpl, Duration::from_secs(10)))
            .expect("offsets_for_times");
        let elem = result
            .find_partition(topic, 0)
            .expect("partition in result");
        elem.error().expect("no partition error");
        assert_eq!(elem.offset(), expected, "offset for timestamp {ts}");
    }

    // The consumer sees the producer's timestamps.
    assign(&consumer, topic, &[(0, 4)]);
    let msgs = consume_n(&consumer, 1, DEADLINE).await;
    assert_eq!(msgs[0].timestamp().to_millis(), Some(BASE_TS + 4_000));
    b.shutdown().await;
}

/// A request asking for more than 10,000 partitions in all is refused whole (POLICY_VIOLATION, as Kafka's
/// controller does) and creates nothing: one crafted count must not fill the disk with partition logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_over_the_partition_cap_is_refused_whole() {
    // No auto-creation, so the metadata checks below cannot create the topics either.
    let b = start_broker(&[("auto.create.topics.enable", "false")]).await;
    let admin = admin(&b.bootstrap);
    let results = admin
        .create_topics(
            &[
                NewTopic::new("big-a", 6_000, TopicReplication::Fixed(1)),
                NewTopic::new("big-b", 6_000, TopicReplication::Fixed(1)),
            ],
            &admin_options(),
        )
        .await
        .expect("CreateTopics");
    assert_eq!(
        results,
        vec![
            Err(("big-a".to_string(), RDKafkaErrorCode::PolicyViolation)),
            Err(("big-b".to_string(), RDKafkaErrorCode::PolicyViolation)),
        ]
    );
    for topic in ["big-a", "big-b"] {
        assert_eq!(
            topic_partition_count(&b.bootstrap, topic),
            Err(RDKafkaErrorCode::UnknownTopicOrPartition),
            "{topic} not created"
        );
    }
    b.shutdown().await;
}
