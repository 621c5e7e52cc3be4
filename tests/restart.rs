//! Durability across restarts: a clean shutdown keeps topics, data and offsets; a crash followed
//! by a torn or garbage tail recovers to the last whole batch.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;

/// Produces `count` messages to `topic`/`partition`, one batch each, and returns their offsets.
async fn produce_numbered(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    from: usize,
    count: usize,
) -> Vec<i64> {
    let producer = producer(bootstrap, &[("linger.ms", "0")]);
    let mut offsets = Vec::with_capacity(count);
    for i in from..from + count {
        let value = format!("{topic}-{partition}-message-{i}");
        let d = producer
            .send(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key(&format!("k{i}"))
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {i} to {topic}/{partition}: {e:?}"));
        offsets.push(d.offset);
    }
    offsets
}

/// Reads `count` messages from offset 0 and checks they are exactly `..-message-0..count`.
async fn assert_numbered(bootstrap: &str, topic: &str, partition: i32, count: usize) {
    let consumer = consumer(bootstrap, &[]);
    assign(&consumer, topic, &[(partition, 0)]);
    let msgs = consume_n(&consumer, count, DEADLINE).await;
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.offset(), i as i64, "offset of message {i}");
        assert_eq!(m.key(), Some(format!("k{i}").as_bytes()));
        assert_eq!(
            m.payload(),
            Some(format!("{topic}-{partition}-message-{i}").as_bytes()),
            "value at offset {i}"
        );
    }
    assert_no_more(&consumer, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_topics_data_and_offsets() {
    let b = start_broker(&[]).await;
    create_topic(&b.bootstrap, "kept", 3).await;
    let mut counts = Vec::new();
    for p in 0..3 {
        let n = 10 + p as usize * 7;
        let offsets = produce_numbered(&b.bootstrap, "kept", p, 0, n).await;
        assert_eq!(offsets, (0..n as i64).collect::<Vec<_>>());
        counts.push(n);
    }
    let before: Vec<(i64, i64)> = (0..3)
        .map(|p| watermarks(&b.bootstrap, "kept", p))
        .collect();
    let (dir, tmp) = b.shutdown().await;

    let b = start_broker_in(&dir, &[("auto.create.topics.enable", "false")]).await;
    assert_eq!(
        topic_partition_count(&b.bootstrap, "kept"),
        Ok(3),
        "topic and partition count survive"
    );
    let after: Vec<(i64, i64)> = (0..3)
        .map(|p| watermarks(&b.bootstrap, "kept", p))
        .collect();
    assert_eq!(after, before, "watermarks survive a clean restart");
    for p in 0..3 {
        assert_numbered(&b.bootstrap, "kept", p, counts[p as usize]).await;
    }
    let next = produce_numbered(&b.bootstrap, "kept", 1, counts[1], 3).await;
    let n1 = counts[1] as i64;
    assert_eq!(
        next,
        vec![n1, n1 + 1, n1 + 2],
        "produce continues at the next offset"
    );
    assert_numbered(&b.bootstrap, "kept", 1, counts[1] + 3).await;

    // A second restart on top of data written after the first one.
    let (dir, _tmp2) = b.shutdown().await;
    let b = start_broker_in(&dir, &[]).await;
    assert_eq!(watermarks(&b.bootstrap, "kept", 1), (0, n1 + 3));
    b.shutdown().await;
    drop(tmp);
}

/// The active segment's .log file of `topic`/`partition`.
fn active_log_file(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("partition dir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let last = logs.pop().expect("partition has a .log segment");
    assert!(
        last.file_name().is_some_and(|n| n.len() == 24),
        "segment named by a 20-digit base offset: {}",
        last.display()
    );
    last
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open segment for append");
    f.write_all(bytes).expect("append to segment");
}

/// Crashes after `n` acknowledged messages, lets `damage` append to the segment, restarts, and
/// checks the acknowledged messages are intact and producing continues right after them.
async fn crash_damage_and_recover(topic: &str, damage: impl FnOnce(&Path)) {
    const N: usize = 25;
    let b = start_broker(&[]).await;
    create_topic(&b.bootstrap, topic, 1).await;
    produce_numbered(&b.bootstrap, topic, 0, 0, N).await;
    let (dir, tmp) = b.crash().await;

    let log = active_log_file(&dir, topic, 0);
    let len = std::fs::metadata(&log).expect("segment metadata").len();
    assert!(
        len > 0,
        "acknowledged data reached the file before the crash"
    );
    damage(&log);

    let b = start_broker_in(&dir, &[]).await;
    assert_eq!(topic_partition_count(&b.bootstrap, topic), Ok(1));
    assert_eq!(
        watermarks(&b.bootstrap, topic, 0),
        (0, N as i64),
        "high watermark after recovery"
    );
    assert_numbered(&b.bootstrap, topic, 0, N).await;
    let next = produce_numbered(&b.bootstrap, topic, 0, N, 2).await;
    assert_eq!(next, vec![N as i64, N as i64 + 1], "produce continues at N");
    assert_numbered(&b.bootstrap, topic, 0, N + 2).await;
    b.shutdown().await;
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_truncated_at_restart() {
    crash_damage_and_recover("torn", |log| {
        // Copy the first batch and append half of it: a write torn mid-batch by the crash.
        let bytes = std::fs::read(log).expect("read segment");
        assert!(bytes.len() >= 61, "segment holds at least one batch header");
        let batch_len = i32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize + 12;
        assert!(batch_len <= bytes.len(), "first batch is whole");
        append(log, &bytes[..batch_len / 2]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_tail_is_truncated_at_restart() {
    crash_damage_and_recover("garbage", |log| {
        // A whole-looking batch whose CRC does not match, then noise.
        let bytes = std::fs::read(log).expect("read segment");
        let batch_len = i32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize + 12;
        let mut bad = bytes[..batch_len].to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        bad.extend((0..500u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        append(log, &bad);
    })
    .await;
}

/// After a crash (no clean-shutdown marker), deleted `.index` and `.timeindex` files of every segment are
/// rebuilt: reads from any offset and timestamp lookups give the same answers as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_indexes_are_rebuilt_after_a_crash() {
    use rdkafka::consumer::Consumer;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    const N: i64 = 60;
    const BASE_TS: i64 = 1_700_000_000_000;
    let topic = "unindexed";
    // Small segments and dense index entries: several segments, each with many index entries.
    let overrides = [
        ("log.segment.bytes", "2048"),
        ("log.index.interval.bytes", "64"),
    ];
    let b = start_broker(&overrides).await;
    create_topic(&b.bootstrap, topic, 1).await;
    let producer = producer(&b.bootstrap, &[("linger.ms", "0")]);
    for i in 0..N {
        let value = format!("{topic}-0-message-{i}");
        let d = producer
            .send(
                FutureRecord::to(topic)
                    .partition(0)
                    .key(&format!("k{i}"))
                    .payload(&value)
                    .timestamp(BASE_TS + i * 1_000),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {i}: {e:?}"));
        assert_eq!(d.offset, i);
    }
    drop(producer);
    let (dir, tmp) = b.crash().await;

    let part = dir.join(format!("{topic}-0"));
    let mut removed = 0;
    for entry in std::fs::read_dir(&part).expect("partition dir") {
        let path = entry.expect("dir entry").path();
        if path
            .extension()
            .is_some_and(|x| x == "index" || x == "timeindex")
        {
            std::fs::remove_file(&path).expect("remove index");
            removed += 1;
        }
    }
    assert!(
        removed >= 6,
        "several segments' indexes removed, got {removed}"
    );

    let b = start_broker_in(&dir, &overrides).await;
    assert_eq!(watermarks(&b.bootstrap, topic, 0), (0, N));
    assert_numbered(&b.bootstrap, topic, 0, N as usize).await;
    // Reads that start mid-log, in every segment, find their record through the rebuilt offset index.
    for start in [7, 23, 41, N - 1] {
        let consumer = consumer(&b.bootstrap, &[]);
        assign(&consumer, topic, &[(0, start)]);
        let m = consume_n(&consumer, 1, DEADLINE).await;
        assert_eq!(
            m[0].offset(),
            start,
            "first record read from offset {start}"
        );
        assert_eq!(
            m[0].payload(),
            Some(format!("{topic}-0-message-{start}").as_bytes())
        );
    }
    // Timestamp lookups go through the rebuilt time index.
    let consumer = consumer(&b.bootstrap, &[]);
    for (ts, expected) in [
        (BASE_TS, 0),
        (BASE_TS + 1, 1),
        (BASE_TS + 33_500, 34),
        (BASE_TS + (N - 1) * 1_000, N - 1),
    ] {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(ts))
            .expect("valid timestamp");
        let result = blocking(|| consumer.offsets_for_times(tpl, Duration::from_secs(10)))
            .expect("offsets_for_times");
        let elem = result
            .find_partition(topic, 0)
            .expect("partition in result");
        assert_eq!(
            elem.offset(),
            Offset::Offset(expected),
            "offset for timestamp {ts}"
        );
    }
    b.shutdown().await;
    for entry in std::fs::read_dir(&part).expect("partition dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|x| x == "log") {
            assert!(
                path.with_extension("index").exists() && path.with_extension("timeindex").exists(),
                "indexes of {} rebuilt on disk",
                path.display()
            );
        }
    }
    drop(tmp);
}

/// The recovery an unclean start does is recorded in the recovery-point checkpoint at once, not a minute
/// later: a second crash right after the restart does not scan the same data again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclean_start_checkpoints_what_it_recovered() {
    const N: usize = 12;
    let topic = "rechecked";
    let b = start_broker(&[]).await;
    create_topic(&b.bootstrap, topic, 1).await;
    produce_numbered(&b.bootstrap, topic, 0, 0, N).await;
    let (dir, tmp) = b.crash().await;

    let b = start_broker_in(&dir, &[]).await;
    let checkpoint = std::fs::read_to_string(dir.join("recovery-point-offset-checkpoint"))
        .expect("recovery point checkpoint written at start");
    assert!(
        checkpoint.lines().any(|l| l == format!("{topic} 0 {N}")),
        "the recovered partition's recovery point is its log end offset: {checkpoint}"
    );
    let (dir, _) = b.crash().await;
    let b = start_broker_in(&dir, &[]).await;
    assert_numbered(&b.bootstrap, topic, 0, N).await;
    b.shutdown().await;
    drop(tmp);
}
