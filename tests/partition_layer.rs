//! The partition layer against what users have on disk and see on the wire: a data directory written by an
//! earlier brook opens and serves the same, and each partition's leader epoch is its own, persisted, and
//! answered by Metadata, Fetch, ListOffsets and OffsetForLeaderEpoch.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::raw::{self, Conn};
use common::*;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::Consumer;
use rdkafka::{Message, Offset, TopicPartitionList};

/// Written by brook at commit 30033b9 (before the partition layer) and shut down cleanly: topics `orders`
/// (20 keyed records) and `users` (5), and group `fixture-group` with offset 20 committed on orders-0.
const FIXTURE: &str = "tests/fixtures/data-dir-30033b9";

const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("fixture entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

fn values(messages: &[rdkafka::message::OwnedMessage]) -> Vec<(i64, String, String)> {
    messages
        .iter()
        .map(|m| {
            let text =
                |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            (m.offset(), text(m.key()), text(m.payload()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_from_an_earlier_brook_serves_the_same() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    copy_dir(Path::new(FIXTURE), &data);
    let topics_before = std::fs::read(data.join("brook-topics.json")).expect("topics file");

    let b = start_broker_in(&data, &[]).await;
    assert_eq!(watermarks(&b.bootstrap, "orders", 0), (0, 20));
    assert_eq!(watermarks(&b.bootstrap, "users", 0), (0, 5));
    let group_member = consumer(&b.bootstrap, &[("group.id", "fixture-group")]);
    let committed = blocking(|| {
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition("orders", 0);
        group_member.committed_offsets(wanted, Duration::from_secs(10))
    })
    .expect("committed offsets");
    assert_eq!(
        committed.find_partition("orders", 0).map(|p| p.offset()),
        Some(Offset::Offset(20)),
        "the group's commit survives"
    );
    drop(group_member);

    let reader = consumer(&b.bootstrap, &[]);
    assign(&reader, "orders", &[(0, 0)]);
    let orders = values(&consume_n(&reader, 20, DEADLINE).await);
    let expected: Vec<_> = (1..=20)
        .map(|i| (i - 1, format!("k{}", i % 4), format!("order-{i}")))
        .collect();
    assert_eq!(orders, expected);
    assert_no_more(&reader, Duration::from_millis(300)).await;

    // New records continue the offsets; the topics file is not rewritten by opening it.
    let producer = producer(&b.bootstrap, &[]);
    let delivered = producer
        .send(
            rdkafka::producer::FutureRecord::to("orders")
                .partition(0)
                .key("k1")
                .payload("order-21"),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    assert_eq!((delivered.partition, delivered.offset), (0, 20));
    assert_eq!(
        std::fs::read(data.join("brook-topics.json")).expect("topics file"),
        topics_before
    );
    b.shutdown().await;

    let b = start_broker_in(&data, &[]).await;
    assert_eq!(watermarks(&b.bootstrap, "orders", 0), (0, 21));
    b.shutdown().await;
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// Metadata's leader epoch per partition.
async fn metadata_epochs(conn: &mut Conn, topic: &str) -> Vec<i32> {
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name(topic))),
    ]));
    let response: MetadataResponse = conn.call(ApiKey::Metadata, 12, &request).await;
    let mut partitions = response.topics[0].partitions.clone();
    partitions.sort_by_key(|p| p.partition_index);
    partitions.iter().map(|p| p.leader_epoch).collect()
}

/// ListOffsets LATEST: (error, offset, leader epoch).
async fn latest(conn: &mut Conn, topic: &str, partition: i32, current: i32) -> (i16, i64, i32) {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_current_leader_epoch(current)
                        .with_timestamp(-1),
                ]),
        ]);
    let response: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, 8, &request).await;
    let p = &response.topics[0].partitions[0];
    (p.error_code, p.offset, p.leader_epoch)
}

/// Fetch from `offset` naming `current` as the leader epoch: (error, records).
async fn fetch(
    conn: &mut Conn,
    topic: &str,
    partition: i32,
    offset: i64,
    current: i32,
) -> (i16, Bytes) {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_current_leader_epoch(current)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let response: FetchResponse = conn.call(ApiKey::Fetch, 12, &request).await;
    let p = &response.responses[0].partitions[0];
    (p.error_code, p.records.clone().unwrap_or_default())
}

/// OffsetForLeaderEpoch: (error, epoch, end offset).
async fn epoch_end(conn: &mut Conn, topic: &str, partition: i32, epoch: i32) -> (i16, i32, i64) {
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![
                    OffsetForLeaderPartition::default()
                        .with_partition(partition)
                        .with_current_leader_epoch(-1)
                        .with_leader_epoch(epoch),
                ]),
        ]);
    let response: OffsetForLeaderEpochResponse =
        conn.call(ApiKey::OffsetForLeaderEpoch, 4, &request).await;
    let p = &response.topics[0].partitions[0];
    (p.error_code, p.leader_epoch, p.end_offset)
}

/// partitionLeaderEpoch of each batch (bytes 12..16 of its header).
fn batch_epochs(mut records: &[u8]) -> Vec<i32> {
    let mut epochs = Vec::new();
    while records.len() >= 61 {
        let length = i32::from_be_bytes(records[8..12].try_into().unwrap()) as usize;
        epochs.push(i32::from_be_bytes(records[12..16].try_into().unwrap()));
        records = &records[(12 + length).min(records.len())..];
    }
    epochs
}

async fn produce_one(conn: &mut Conn, topic: &str, partition: i32) -> i16 {
    let request = raw::produce_request(topic, partition, raw::indexed_batch(&["x"], false));
    let response: ProduceResponse = conn.call(ApiKey::Produce, 9, &request).await;
    response.responses[0].partition_responses[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_epochs_are_per_partition_persisted_and_answered() {
    let b = start_broker(&[]).await;
    let topic = "epochs";
    create_topic(&b.bootstrap, topic, 2).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    assert_eq!(produce_one(&mut conn, topic, 1).await, 0);
    assert_eq!(metadata_epochs(&mut conn, topic).await, vec![0, 0]);
    drop(conn);
    let (data, tmp) = b.shutdown().await;

    // Partition 1 is at leader epoch 3 in the metadata, as a controller records a new leadership.
    let path = data.join("brook-topics.json");
    let mut stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("topics file")).expect("json");
    for t in stored["topics"].as_array_mut().expect("topics") {
        if t["name"] == topic {
            t["leader_epochs"] = serde_json::json!([0, 3]);
        }
    }
    std::fs::write(&path, serde_json::to_vec(&stored).expect("json")).expect("write topics file");

    let b = start_broker_in(&data, &[]).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    assert_eq!(metadata_epochs(&mut conn, topic).await, vec![0, 3]);
    assert_eq!(produce_one(&mut conn, topic, 1).await, 0);
    assert_eq!(produce_one(&mut conn, topic, 0).await, 0);

    assert_eq!(latest(&mut conn, topic, 1, 3).await, (0, 2, 3));
    assert_eq!(latest(&mut conn, topic, 0, 0).await, (0, 1, 0));
    assert_eq!(latest(&mut conn, topic, 1, 2).await.0, FENCED_LEADER_EPOCH);
    assert_eq!(latest(&mut conn, topic, 1, 4).await.0, UNKNOWN_LEADER_EPOCH);

    // Each batch keeps the epoch it was written in (the restart rolled a segment between them, and one
    // fetch answers from one segment).
    let (error, records) = fetch(&mut conn, topic, 1, 0, 3).await;
    assert_eq!((error, batch_epochs(&records)), (0, vec![0]));
    let (error, records) = fetch(&mut conn, topic, 1, 1, 3).await;
    assert_eq!((error, batch_epochs(&records)), (0, vec![3]));
    assert_eq!(
        fetch(&mut conn, topic, 1, 0, 0).await.0,
        FENCED_LEADER_EPOCH
    );
    assert_eq!(
        fetch(&mut conn, topic, 0, 0, 3).await.0,
        UNKNOWN_LEADER_EPOCH
    );
    assert_eq!(fetch(&mut conn, topic, 0, 0, 0).await.0, 0);

    assert_eq!(
        epoch_end(&mut conn, topic, 1, 0).await,
        (0, 0, 1),
        "epoch 0 ended where 3 began"
    );
    assert_eq!(epoch_end(&mut conn, topic, 1, 3).await, (0, 3, 2));
    assert_eq!(epoch_end(&mut conn, topic, 0, 0).await, (0, 0, 1));
    let checkpoint =
        std::fs::read_to_string(data.join(format!("{topic}-1/leader-epoch-checkpoint")))
            .expect("epoch checkpoint");
    assert!(checkpoint.ends_with("0 0\n3 1\n"), "{checkpoint}");
    drop(conn);
    b.shutdown().await;

    // Persisted: the epochs and the file that holds them are unchanged by a restart.
    let b = start_broker_in(&data, &[]).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    assert_eq!(metadata_epochs(&mut conn, topic).await, vec![0, 3]);
    drop(conn);
    b.shutdown().await;
    drop(tmp);
}
