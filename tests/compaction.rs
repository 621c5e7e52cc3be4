//! Log compaction as a Kafka user sees it: many updates to a few keys shrink to the latest value per key
//! (in every codec), tombstones stay for `delete.retention.ms` and then go, a consumer reading from the start
//! sees each key's latest value, keyless records are refused with INVALID_RECORD, and a crash in the
//! middle of a clean leaves a readable, complete log.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use brook::log::{BeforeSwapHook, SwapDecision};
use common::*;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// The cleaner looks for work every 100 ms; replaced files go at once.
const BROKER: &[(&str, &str)] = &[
    ("log.cleaner.backoff.ms", "100"),
    ("log.segment.delete.delay.ms", "0"),
];

const KEYS: usize = 5;
const UPDATES: usize = 400;

/// Bytes of segment data on disk for partition 0 of `topic`.
fn log_bytes(data_dir: &Path, topic: &str) -> u64 {
    partition_bytes(data_dir, topic, 0, |name| name.ends_with(".log"))
}

async fn create_compacted(bootstrap: &str, topic: &str, extra: &[(&str, &str)]) {
    let mut configs = vec![
        ("cleanup.policy", "compact"),
        ("segment.bytes", "4096"),
        ("min.cleanable.dirty.ratio", "0.01"),
    ];
    configs.extend_from_slice(extra);
    create_topic_with(bootstrap, topic, 1, &configs).await;
}

/// UPDATES values over KEYS keys (`key-i%KEYS` = `value-i`), then a tombstone for key-0, then a few
/// records of a filler key so the interesting ones end up in closed segments. Returns the next offset.
async fn produce_updates(bootstrap: &str, topic: &str, codec: &str) -> i64 {
    let producer = producer(
        bootstrap,
        &[
            ("compression.type", codec),
            ("linger.ms", "2"),
            ("batch.num.messages", "20"),
        ],
    );
    let mut sends = Vec::new();
    for i in 0..UPDATES {
        let key = format!("key-{}", i % KEYS);
        let value = format!("value-{i}-{}", "p".repeat(100));
        let queued = producer
            .send_result(
                FutureRecord::to(topic)
                    .partition(0)
                    .key(&key)
                    .payload(&value),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue");
        sends.push(queued);
    }
    for s in sends {
        s.await.expect("delivery report").expect("produce");
    }
    producer
        .send(
            FutureRecord::<str, str>::to(topic)
                .partition(0)
                .key("key-0"),
            Duration::from_secs(10),
        )
        .await
        .expect("tombstone");
    // Incompressible filler, so that every codec rolls the segments holding the updates.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut last = 0;
    for _ in 0..40 {
        let value: String = (0..400)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from(b'!' + (seed % 90) as u8)
            })
            .collect();
        last = producer
            .send(
                FutureRecord::to(topic)
                    .partition(0)
                    .key("filler")
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("filler")
            .offset;
    }
    last + 1
}

/// Reads the partition from the start up to `end` and returns each key's last value (None: tombstone),
/// checking offsets only increase; also returns how many records were read.
async fn latest_by_key(
    bootstrap: &str,
    topic: &str,
    end: i64,
) -> (BTreeMap<String, Option<String>>, usize) {
    let c = consumer(bootstrap, &[("auto.offset.reset", "earliest")]);
    assign(&c, topic, &[(0, 0)]);
    let mut latest = BTreeMap::new();
    let mut read = 0;
    let mut last_offset = -1;
    while last_offset < end - 1 {
        let m = tokio::time::timeout(DEADLINE, c.recv())
            .await
            .expect("records up to the end")
            .expect("consume");
        assert!(m.offset() > last_offset, "offsets increase");
        last_offset = m.offset();
        read += 1;
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        let value = m.payload().map(|p| String::from_utf8(p.to_vec()).unwrap());
        latest.insert(key, value);
    }
    (latest, read)
}

fn expected_value(key: usize) -> String {
    let last = (0..UPDATES).filter(|i| i % KEYS == key).max().unwrap();
    format!("value-{last}-{}", "p".repeat(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_shrink_to_the_latest_value_per_key_in_every_codec() {
    let b = start_broker(BROKER).await;
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let mut ends = Vec::new();
    for codec in codecs {
        let topic = format!("compact-{codec}");
        create_compacted(&b.bootstrap, &topic, &[]).await;
        ends.push(produce_updates(&b.bootstrap, &topic, codec).await);
    }
    for (codec, end) in codecs.iter().zip(ends) {
        let topic = format!("compact-{codec}");
        // 400 updates of 5 keys: compacted, a handful remain besides the active segment's filler.
        let (latest, read) =
            poll_until_async(DEADLINE, &format!("{topic} to be compacted"), || async {
                let (latest, read) = latest_by_key(&b.bootstrap, &topic, end).await;
                (read < 60).then_some((latest, read))
            })
            .await;
        assert!(read < 60);
        if *codec == "none" {
            let bytes = log_bytes(&b.data_dir, &topic);
            assert!(
                bytes < 16 * 1024,
                "60 KB of updates shrank on disk: {bytes} bytes"
            );
        }
        for k in 1..KEYS {
            assert_eq!(
                latest.get(&format!("key-{k}")),
                Some(&Some(expected_value(k))),
                "{codec}: latest value of key-{k}"
            );
        }
        // delete.retention.ms (a day by default) has not passed: the tombstone is still there.
        assert_eq!(
            latest.get("key-0"),
            Some(&None),
            "{codec}: key-0's tombstone"
        );
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_go_after_delete_retention_ms() {
    let b = start_broker(BROKER).await;
    let topic = "compact-tombstones";
    create_compacted(&b.bootstrap, topic, &[("delete.retention.ms", "200")]).await;
    let end = produce_updates(&b.bootstrap, topic, "lz4").await;
    let latest = poll_until_async(DEADLINE, "the tombstone to be removed", || async {
        let (latest, _) = latest_by_key(&b.bootstrap, topic, end).await;
        (!latest.contains_key("key-0")).then_some(latest)
    })
    .await;
    for k in 1..KEYS {
        assert_eq!(
            latest.get(&format!("key-{k}")),
            Some(&Some(expected_value(k)))
        );
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_records_are_refused_on_compacted_topics() {
    let b = start_broker(BROKER).await;
    let topic = "compact-keyless";
    create_compacted(&b.bootstrap, topic, &[]).await;
    let producer = producer(&b.bootstrap, &[("linger.ms", "0"), ("retries", "0")]);
    let err = producer
        .send(
            FutureRecord::<str, str>::to(topic)
                .partition(0)
                .payload("no key"),
            Duration::from_secs(10),
        )
        .await
        .expect_err("a keyless record must be refused");
    assert!(
        matches!(
            err.0,
            KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord)
        ),
        "{:?}",
        err.0
    );
    // Keyed records are fine, and nothing of the refused one was stored.
    let d = producer
        .send(
            FutureRecord::to(topic).partition(0).key("k").payload("v"),
            Duration::from_secs(10),
        )
        .await
        .expect("keyed produce");
    assert_eq!(d.offset, 0);
    b.shutdown().await;
}

/// The cleaner is stopped by its before-swap hook with its output in `.swap` (the commit point of a clean),
/// and the broker crashes there. The restarted broker completes the swap and serves the whole log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_cleaning_leaves_a_readable_complete_log() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (reached_tx, reached_rx) = std::sync::mpsc::channel();
    let mut config = base_config(&data, BROKER);
    config.cleaner.before_swap = Some(BeforeSwapHook(Arc::new(move |_| {
        let _ = reached_tx.send(());
        SwapDecision::Halt
    })));
    let crashed = start_broker_with(&data, config).await;
    let topic = "compact-crash";
    create_compacted(&crashed.bootstrap, topic, &[]).await;
    let end = produce_updates(&crashed.bootstrap, topic, "gzip").await;
    poll_until(DEADLINE, "the cleaner to reach .swap", || {
        reached_rx.try_recv().ok()
    })
    .await;
    crashed.crash().await;
    let dir = data.join(format!("{topic}-0"));
    let swapped = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with(".log.swap"));
    assert!(swapped, "the crash left the cleaned segment in .swap");

    // The restart's cleaner stays off: its own next clean would write `.cleaned` files of its own while the
    // directory is listed below, and what is checked is what recovery left.
    let restart: Vec<(&str, &str)> = BROKER
        .iter()
        .copied()
        .chain([("log.cleaner.enable", "false")])
        .collect();
    let b = start_broker_in(&data, &restart).await;
    assert_eq!(watermarks(&b.bootstrap, topic, 0), (0, end), "nothing lost");
    let (latest, _) = latest_by_key(&b.bootstrap, topic, end).await;
    for k in 1..KEYS {
        assert_eq!(
            latest.get(&format!("key-{k}")),
            Some(&Some(expected_value(k))),
            "latest value of key-{k} after the crash"
        );
    }
    assert_eq!(latest.get("key-0"), Some(&None));
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".swap") || n.ends_with(".cleaned"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    b.shutdown().await;
}

/// `__consumer_offsets` is compacted like any compacted topic, and the group coordinator still reloads the
/// latest commit from the compacted log (with its gaps) after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_offsets_is_compacted_and_commits_reload_after_restart() {
    let overrides = [
        BROKER[0],
        BROKER[1],
        ("log.segment.bytes", "1024"),
        ("log.cleaner.min.cleanable.ratio", "0.01"),
        ("offsets.topic.num.partitions", "1"),
    ];
    let b = start_broker(&overrides).await;
    create_topic(&b.bootstrap, "orders", 1).await;
    let group = [("group.id", "compacted-offsets")];
    let c = consumer(&b.bootstrap, &group);
    for i in 1..=200 {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("orders", 0, Offset::Offset(i))
            .unwrap();
        blocking(|| c.commit(&tpl, CommitMode::Sync)).expect("commit");
    }
    drop(c);
    poll_until(DEADLINE, "__consumer_offsets to be compacted", || {
        let bytes = log_bytes(&b.data_dir, "__consumer_offsets");
        // 200 commits of about 100 bytes each; compacted, a few remain besides the active segment.
        (bytes < 4 * 1024).then_some(())
    })
    .await;
    let (dir, tmp) = b.shutdown().await;
    let b = start_broker_in(&dir, &overrides).await;
    let c = consumer(&b.bootstrap, &group);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("orders", 0);
    let committed =
        blocking(|| c.committed_offsets(tpl, Duration::from_secs(10))).expect("committed");
    assert_eq!(
        committed.find_partition("orders", 0).unwrap().offset(),
        Offset::Offset(200)
    );
    drop(c);
    b.shutdown().await;
    drop(tmp);
}

/// (key, value) of every record a consumer with `isolation` reads from the start of partition 0, until
/// a second passes without one.
async fn read_records(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
) -> Vec<(String, Option<String>)> {
    let c = consumer(
        bootstrap,
        &[
            ("isolation.level", isolation),
            ("auto.offset.reset", "earliest"),
        ],
    );
    assign(&c, topic, &[(0, 0)]);
    let mut out = Vec::new();
    while let Ok(m) = tokio::time::timeout(Duration::from_secs(1), c.recv()).await {
        let m = m.expect("consume");
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        out.push((
            key,
            m.payload().map(|p| String::from_utf8(p.to_vec()).unwrap()),
        ));
    }
    out
}

/// P16 end to end: a transactional producer commits and aborts transactions on a compacted topic. The
/// cleaner removes the aborted records whatever their keys (read_uncommitted no longer sees them), drops
/// their ABORT markers after delete.retention.ms, and a read_committed consumer sees each key's latest
/// committed value, as before cleaning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_transactions_are_cleaned_away_and_committed_values_stay() {
    use rdkafka::producer::Producer;
    const TIMEOUT: Duration = Duration::from_secs(30);
    let b = start_broker(BROKER).await;
    let topic = "compact-txn";
    create_compacted(&b.bootstrap, topic, &[("delete.retention.ms", "200")]).await;
    let p = producer(&b.bootstrap, &[("transactional.id", "compact-txn")]);
    blocking(|| p.init_transactions(TIMEOUT)).expect("init_transactions");
    let send = |key: String, value: String| {
        let p = &p;
        async move {
            p.send(
                FutureRecord::to(topic)
                    .partition(0)
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("send {key}: {e}"));
        }
    };
    let mut expected = BTreeMap::new();
    // Transactions 1, 4, 7 and 10 abort; the last one commits.
    for t in 0..12 {
        let commit = t % 3 != 1;
        let outcome = if commit { "committed" } else { "aborted" };
        p.begin_transaction().unwrap();
        for k in 0..KEYS {
            let (key, value) = (
                format!("key-{k}"),
                format!("{outcome}-{t}-{}", "p".repeat(200)),
            );
            send(key.clone(), value.clone()).await;
            if commit {
                expected.insert(key, Some(value));
            }
        }
        if !commit {
            send(format!("only-aborted-{t}"), "aborted".into()).await;
        }
        if commit {
            blocking(|| p.commit_transaction(TIMEOUT)).expect("commit");
        } else {
            blocking(|| p.abort_transaction(TIMEOUT)).expect("abort");
        }
    }
    // Plain filler, so that the transactions end up in closed segments.
    let plain = producer(&b.bootstrap, &[]);
    for i in 0..12 {
        let value = format!("filler-{i}-{}", "f".repeat(400));
        plain
            .send(
                FutureRecord::to(topic)
                    .partition(0)
                    .key("filler")
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("filler");
        expected.insert("filler".into(), Some(value));
    }
    let committed_view = |records: &[(String, Option<String>)]| -> BTreeMap<_, _> {
        records.iter().cloned().collect()
    };
    assert_eq!(
        committed_view(&read_records(&b.bootstrap, topic, "read_committed").await),
        expected
    );
    poll_until_async(
        DEADLINE,
        "aborted data and ABORT markers to be cleaned",
        || async {
            let uncommitted = read_records(&b.bootstrap, topic, "read_uncommitted").await;
            let aborted_left = uncommitted
                .iter()
                .any(|(_, v)| v.as_deref().is_some_and(|v| v.starts_with("aborted")));
            let markers = stored_markers(&b.data_dir, topic, 0);
            let aborts_left = markers.iter().any(|(_, m)| *m == Some(false));
            (!aborted_left && !aborts_left).then_some(())
        },
    )
    .await;
    let committed = read_records(&b.bootstrap, topic, "read_committed").await;
    assert!(
        !committed.iter().any(|(k, _)| k.starts_with("only-aborted")),
        "{committed:?}"
    );
    assert_eq!(committed_view(&committed), expected);
    drop(p);
    b.shutdown().await;
}
