//! Retention and DeleteRecords as a Kafka user sees them: old segments go away in the background (by time and
//! by size), the low watermark advances, disk usage shrinks, a consumer below the new start resets by its
//! `auto.offset.reset`, and DeleteRecords moves the start on demand and survives a restart.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Retention checks every 100 ms and deleted files go at once, so tests see the effect quickly.
const BROKER: &[(&str, &str)] = &[
    ("log.retention.check.interval.ms", "100"),
    ("log.segment.delete.delay.ms", "0"),
];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Bytes of segment data on disk for a partition (`.log` files, pending `.deleted` ones included).
fn log_bytes(data_dir: &Path, topic: &str, partition: i32) -> u64 {
    partition_bytes(data_dir, topic, partition, |name| name.contains(".log"))
}

async fn create_with(bootstrap: &str, topic: &str, configs: &[(&str, &str)]) {
    create_topic_with(bootstrap, topic, 1, configs).await;
}

/// Produces `count` messages one batch each, stamped `ts`, with 200-byte values; returns the last offset.
async fn produce_at(bootstrap: &str, topic: &str, from: usize, count: usize, ts: i64) -> i64 {
    let producer = producer(bootstrap, &[("linger.ms", "0")]);
    let value = "x".repeat(200);
    let mut last = -1;
    for i in from..from + count {
        let key = format!("k{i}");
        let d = producer
            .send(
                FutureRecord::to(topic)
                    .partition(0)
                    .key(&key)
                    .payload(&value)
                    .timestamp(ts),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {i}: {e:?}"));
        last = d.offset;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_retention_deletes_expired_segments_and_consumers_reset_to_the_new_start() {
    let b = start_broker(BROKER).await;
    let topic = "retention-time";
    create_with(
        &b.bootstrap,
        topic,
        &[("segment.bytes", "2048"), ("retention.ms", "600000")],
    )
    .await;
    // An hour old: past retention.ms. Then fresh records that must stay.
    produce_at(&b.bootstrap, topic, 0, 100, now_ms() - 3_600_000).await;
    produce_at(&b.bootstrap, topic, 100, 20, now_ms()).await;
    let low = poll_until(DEADLINE, "retention to advance the low watermark", || {
        let (low, high) = watermarks(&b.bootstrap, topic, 0);
        assert_eq!(high, 120);
        (low > 0).then_some(low)
    })
    .await;
    // Whole segments go, and only expired ones: the segment holding offset 100 stays.
    assert!(
        low <= 100,
        "fresh records were deleted: low watermark {low}"
    );
    assert!(
        low >= 80,
        "only a few old records may share a segment with fresh ones: {low}"
    );
    let bytes = log_bytes(&b.data_dir, topic, 0);
    assert!(
        bytes < 120 * 270 / 3,
        "disk usage shrank: {bytes} bytes left"
    );

    // A consumer at offset 0 is below the start: auto.offset.reset=earliest puts it at the new start.
    let c = consumer(&b.bootstrap, &[("auto.offset.reset", "earliest")]);
    assign(&c, topic, &[(0, 0)]);
    let msgs = consume_n(&c, (120 - low) as usize, DEADLINE).await;
    assert_eq!(msgs[0].offset(), low);
    assert_eq!(msgs.last().unwrap().offset(), 119);
    // With auto.offset.reset=latest it goes to the end instead.
    let c = consumer(&b.bootstrap, &[("auto.offset.reset", "latest")]);
    assign(&c, topic, &[(0, 0)]);
    // The reset may land before or after a given produce: keep producing until one arrives.
    let mut next = 120;
    let after = loop {
        produce_at(&b.bootstrap, topic, next, 1, now_ms()).await;
        next += 1;
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), c.recv()).await {
            break m.offset();
        }
        assert!(
            next < 200,
            "the consumer never saw a new record after its reset"
        );
    };
    assert!(
        after >= 120,
        "latest reset skips old records: got offset {after}"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_retention_keeps_a_partition_near_retention_bytes() {
    let b = start_broker(BROKER).await;
    let topic = "retention-size";
    create_with(
        &b.bootstrap,
        topic,
        &[
            ("segment.bytes", "2048"),
            ("retention.bytes", "6000"),
            ("retention.ms", "-1"),
        ],
    )
    .await;
    produce_at(&b.bootstrap, topic, 0, 150, now_ms()).await;
    poll_until(DEADLINE, "size retention to trim the partition", || {
        let bytes = log_bytes(&b.data_dir, topic, 0);
        // Kafka's rule: delete oldest segments while what is left stays at or above the limit.
        (bytes <= 6000 + 2048).then_some(())
    })
    .await;
    let (low, high) = watermarks(&b.bootstrap, topic, 0);
    assert_eq!(high, 150);
    assert!(low > 100, "most records are gone: low watermark {low}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_advances_the_low_watermark_reports_errors_and_survives_restart() {
    let b = start_broker(BROKER).await;
    let topic = "delete-records";
    create_with(
        &b.bootstrap,
        topic,
        &[("segment.bytes", "2048"), ("retention.ms", "-1")],
    )
    .await;
    produce_at(&b.bootstrap, topic, 0, 50, now_ms()).await;
    let admin = admin(&b.bootstrap);

    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(30))
        .unwrap();
    let result = admin
        .delete_records(&tpl, &admin_options())
        .await
        .expect("DeleteRecords");
    let elem = result.find_partition(topic, 0).unwrap();
    assert!(elem.error().is_ok(), "{:?}", elem.error());
    assert_eq!(elem.offset(), Offset::Offset(30), "the new low watermark");
    assert_eq!(watermarks(&b.bootstrap, topic, 0), (30, 50));

    // Beyond the high watermark: OFFSET_OUT_OF_RANGE, nothing changes.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(51))
        .unwrap();
    let result = admin
        .delete_records(&tpl, &admin_options())
        .await
        .expect("DeleteRecords");
    let elem = result.find_partition(topic, 0).unwrap();
    assert_eq!(
        elem.error().unwrap_err().rdkafka_error_code(),
        Some(RDKafkaErrorCode::OffsetOutOfRange)
    );
    assert_eq!(watermarks(&b.bootstrap, topic, 0).0, 30);

    // A consumer that asks for offset 10 resets to 30.
    let c = consumer(&b.bootstrap, &[("auto.offset.reset", "earliest")]);
    assign(&c, topic, &[(0, 10)]);
    let msgs = consume_n(&c, 20, DEADLINE).await;
    assert_eq!(msgs[0].offset(), 30);

    // Segments wholly below the start are removed by the retention thread.
    poll_until(DEADLINE, "segments below the start to be deleted", || {
        let first = std::fs::read_dir(b.data_dir.join(format!("{topic}-0")))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".log")?.parse::<i64>().ok()
            })
            .min()?;
        (first > 0).then_some(())
    })
    .await;

    // Offset::End deletes everything up to the high watermark; the start survives a restart.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(40))
        .unwrap();
    admin
        .delete_records(&tpl, &admin_options())
        .await
        .expect("DeleteRecords");
    drop(admin);
    drop(c);
    let (dir, tmp) = b.shutdown().await;
    let b = start_broker_in(&dir, BROKER).await;
    assert_eq!(watermarks(&b.bootstrap, topic, 0), (40, 50));
    let admin = common::admin(&b.bootstrap);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::End).unwrap();
    let result = admin
        .delete_records(&tpl, &admin_options())
        .await
        .expect("DeleteRecords");
    assert_eq!(
        result.find_partition(topic, 0).unwrap().offset(),
        Offset::Offset(50)
    );
    assert_eq!(watermarks(&b.bootstrap, topic, 0), (50, 50));
    drop(admin);
    b.shutdown().await;
    drop(tmp);
}
