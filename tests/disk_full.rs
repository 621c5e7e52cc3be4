//! Disk full on a real filesystem: the broker's data directory is a tmpfs of a few MiB. A produce that
//! finds no space gets KAFKA_STORAGE_ERROR for its partition, the broker keeps answering, every acked record
//! stays readable, and once space is freed produce works again at the next (dense) offset.
//!
//! Mounting needs root (CAP_SYS_ADMIN). Without it the test prints a skip line and passes, except under
//! `CI=true`, where it fails: CI runs as root and must exercise it.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::raw;
use common::*;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, GroupId, MetadataRequest, MetadataResponse,
    OffsetCommitRequest, OffsetCommitResponse, ProduceResponse, TopicName,
    metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

const FS_SIZE: &str = "4m";
/// Space left free before producing: a few dozen produces fill it.
const HEADROOM: u64 = 512 * 1024;
const RECORDS_PER_PRODUCE: usize = 8;
const VALUE_BYTES: usize = 1024;
/// More produces than can ever fit in HEADROOM: reaching it means the disk never filled.
const MAX_PRODUCES: usize = 1000;

/// A tmpfs mounted on a fresh temp directory, unmounted on drop (also when the test fails).
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// None when this process may not mount (not root / no CAP_SYS_ADMIN): the caller skips.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("create mount point");
        let path = dir.path().to_path_buf();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { path, _dir: dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .collect::<Vec<_>>()
                        .join("; "),
                    Err(e) => e.to_string(),
                };
                let ci = std::env::var("CI").is_ok_and(|v| v == "true");
                assert!(
                    !ci,
                    "CI=true but a tmpfs cannot be mounted ({why}); the disk-full test must run in CI"
                );
                eprintln!(
                    "SKIPPED disk_full: cannot mount a tmpfs here ({why}); run as root to test"
                );
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Files still open (the test failed with the broker running): detach it anyway.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Writes zeros to `path` until the filesystem is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = File::create(path).expect("create filler");
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    written
}

/// The values of produce number `n`: unique, so the consumer can check each record.
fn values_of(n: usize) -> Vec<String> {
    (0..RECORDS_PER_PRODUCE)
        .map(|i| format!("p{n:04}-r{i}-{}", "x".repeat(VALUE_BYTES)))
        .collect()
}

fn batch(values: &[String]) -> Bytes {
    raw::indexed_batch(values, false)
}

/// (error code, base offset, error message) of a one-partition produce with acks=-1.
fn produce(bootstrap: &str, topic: &str, values: &[String]) -> (i16, i64, Option<String>) {
    let request = raw::produce_request(topic, 0, batch(values));
    let resp: ProduceResponse = blocking(|| raw::request(bootstrap, ApiKey::Produce, 9, &request));
    let p = &resp.responses[0].partition_responses[0];
    (
        p.error_code,
        p.base_offset,
        p.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// Error code of a one-topic, one-partition CreateTopics.
fn create_topic_code(bootstrap: &str, topic: &str) -> (i16, Option<String>) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]);
    let resp: CreateTopicsResponse =
        blocking(|| raw::request(bootstrap, ApiKey::CreateTopics, 7, &request));
    let t = &resp.topics[0];
    (
        t.error_code,
        t.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// Partitions of the test topic; an offset commit covers all of them.
const PARTITIONS: i32 = 4;
/// Commit metadata per partition: a whole commit needs more than one fresh page of the offsets log, so on a
/// full disk it cannot squeeze into the free tail of a page already allocated.
const COMMIT_METADATA_BYTES: usize = 3000;

/// Error code of a simple consumer's OffsetCommit of `offset` for every partition of `topic` (all the same).
fn commit_code(bootstrap: &str, topic: &str, offset: i64) -> i16 {
    let metadata = "m".repeat(COMMIT_METADATA_BYTES);
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("disk-full-group")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(
                    (0..PARTITIONS)
                        .map(|p| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(-1)
                                .with_committed_metadata(Some(StrBytes::from_string(
                                    metadata.clone(),
                                )))
                        })
                        .collect(),
                ),
        ]);
    let resp: OffsetCommitResponse =
        blocking(|| raw::request(bootstrap, ApiKey::OffsetCommit, 8, &request));
    let codes: Vec<i16> = resp.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert!(
        codes.iter().all(|c| *c == codes[0]),
        "one write, one outcome: {codes:?}"
    );
    codes[0]
}

/// The Metadata answer for `topic`: (topic error code, partition error code, leader id).
fn metadata(bootstrap: &str, topic: &str) -> (i16, i16, i32) {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]));
    let resp: MetadataResponse =
        blocking(|| raw::request(bootstrap, ApiKey::Metadata, 12, &request));
    let t = &resp.topics[0];
    let p = &t.partitions[0];
    (t.error_code, p.error_code, p.leader_id.0)
}

/// Consumes `expected.len()` records of `topic`/0 from `from` and checks offsets and values.
async fn assert_reads(bootstrap: &str, topic: &str, from: i64, expected: &[String]) {
    let c = consumer(bootstrap, &[]);
    assign(&c, topic, &[(0, from)]);
    let got = consume_n(&c, expected.len(), DEADLINE).await;
    for (i, (m, want)) in got.iter().zip(expected).enumerate() {
        assert_eq!(m.offset(), from + i as i64, "dense offsets");
        assert_eq!(
            m.payload().map(|p| String::from_utf8_lossy(p).to_string()),
            Some(want.clone()),
            "record at offset {}",
            m.offset()
        );
    }
    assert_no_more(&c, Duration::from_millis(300)).await;
}

/// Small segments and indexes, one offsets partition: the broker's own files fit a 4 MiB filesystem.
const OVERRIDES: [(&str, &str); 4] = [
    ("log.segment.bytes", "262144"),
    ("log.index.size.max.bytes", "8192"),
    ("offsets.topic.num.partitions", "1"),
    ("group.initial.rebalance.delay.ms", "0"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_on_a_full_disk_gets_storage_error_and_recovers_when_space_is_freed() {
    let Some(fs) = Tmpfs::mount(FS_SIZE) else {
        return;
    };
    let data_dir = fs.path.join("data");
    let overrides = OVERRIDES;
    let b = start_broker_in(&data_dir, &overrides).await;
    let topic = "filling";
    create_topic(&b.bootstrap, topic, PARTITIONS).await;
    // The offsets topic exists before the disk fills (its creation is a metadata write of its own).
    assert_eq!(commit_code(&b.bootstrap, topic, 0), 0);

    // Fill the filesystem, then give back HEADROOM for the produces.
    let filler = fs.path.join("filler");
    let filled = fill(&filler);
    assert!(filled > HEADROOM, "filler wrote {filled} bytes");
    OpenOptions::new()
        .write(true)
        .open(&filler)
        .and_then(|f| f.set_len(filled - HEADROOM))
        .expect("shrink filler");

    let mut acked: Vec<String> = Vec::new();
    let mut produces = 0;
    let message = loop {
        assert!(produces < MAX_PRODUCES, "the disk never filled up");
        let values = values_of(produces);
        let (code, base, message) = produce(&b.bootstrap, topic, &values);
        if code == ResponseError::KafkaStorageError.code() {
            break message;
        }
        assert_eq!(code, 0, "produce {produces}: {message:?}");
        assert_eq!(base, acked.len() as i64, "dense offsets while filling");
        acked.extend(values);
        produces += 1;
    };
    assert!(produces > 0, "some produces fit in the headroom");
    let message = message.unwrap_or_default();
    assert!(
        message.contains("No space left on device"),
        "the error says why: {message:?}"
    );
    eprintln!(
        "disk full after {produces} produces ({} records acked)",
        acked.len()
    );

    // Take the last free pages too, so every write below meets a full disk.
    let filler2 = fs.path.join("filler2");
    fill(&filler2);
    let (code, _, _) = produce(&b.bootstrap, topic, &values_of(produces));
    assert_eq!(
        code,
        ResponseError::KafkaStorageError.code(),
        "still full, still refused"
    );
    assert_eq!(
        metadata(&b.bootstrap, topic),
        (0, 0, 1),
        "the broker answers Metadata and still leads the partition"
    );
    let (code, message) = create_topic_code(&b.bootstrap, "born-on-a-full-disk");
    assert_eq!(
        code,
        ResponseError::KafkaStorageError.code(),
        "topic creation fails: {message:?}"
    );
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("No space left on device")),
        "{message:?}"
    );
    assert_eq!(
        commit_code(&b.bootstrap, topic, 5),
        ResponseError::CoordinatorNotAvailable.code(),
        "an offset commit that cannot be stored is refused with a retriable error"
    );
    // Reads keep working: every acked record, nothing else.
    assert_reads(&b.bootstrap, topic, 0, &acked).await;

    // Free the space: appends, topic creation and commits work again, offsets stay dense.
    std::fs::remove_file(&filler).expect("remove filler");
    std::fs::remove_file(&filler2).expect("remove filler2");
    let mut after = Vec::new();
    for n in 0..3 {
        let values = values_of(produces + 1 + n);
        let (code, base, message) = produce(&b.bootstrap, topic, &values);
        assert_eq!(code, 0, "produce after freeing space: {message:?}");
        assert_eq!(base, (acked.len() + after.len()) as i64, "the next offset");
        after.extend(values);
    }
    assert_eq!(create_topic_code(&b.bootstrap, "born-after").0, 0);
    assert_eq!(commit_code(&b.bootstrap, topic, 5), 0);
    assert_reads(&b.bootstrap, topic, acked.len() as i64, &after).await;

    // A restart finds the same log.
    let total = (acked.len() + after.len()) as i64;
    b.shutdown().await;
    let b = start_broker_in(&data_dir, &overrides).await;
    assert_eq!(watermarks(&b.bootstrap, topic, 0), (0, total));
    let mut all = acked;
    all.extend(after);
    assert_reads(&b.bootstrap, topic, 0, &all).await;
    b.shutdown().await;
    drop(fs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_producer_gets_storage_error_and_its_retries_land_once_space_is_freed() {
    let Some(fs) = Tmpfs::mount(FS_SIZE) else {
        return;
    };
    let b = start_broker_in(&fs.path.join("data"), &OVERRIDES).await;
    let topic = "retried";
    create_topic(&b.bootstrap, topic, PARTITIONS).await;
    let value = |i: usize| format!("m{i:03}-{}", "v".repeat(8 * 1024));
    let timeout = Timeout::After(Duration::from_secs(30));
    let retrying = producer(&b.bootstrap, &[("retry.backoff.max.ms", "200")]);
    for i in 0..5 {
        let v = value(i);
        let d = retrying
            .send(
                FutureRecord::<(), _>::to(topic).partition(0).payload(&v),
                timeout,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("message {i} before the disk fills: {e:?}"));
        assert_eq!(d.offset, i as i64);
    }

    let filler = fs.path.join("filler");
    fill(&filler);
    // Each message needs fresh pages, so none fits the free tail of the segment's last page.
    let no_retries = producer(&b.bootstrap, &[("message.send.max.retries", "0")]);
    let v = value(99);
    let refused = no_retries
        .send(
            FutureRecord::<(), _>::to(topic).partition(0).payload(&v),
            timeout,
        )
        .await;
    match refused {
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::KafkaStorageError), _)) => {}
        other => panic!("expected KafkaStorageError on a full disk, got {other:?}"),
    }
    assert_eq!(
        commit_code(&b.bootstrap, topic, 1),
        ResponseError::CoordinatorNotAvailable.code(),
        "no room to create the offsets topic: a retriable error"
    );

    // A retrying producer keeps its messages while the disk is full...
    let mut pending: Vec<_> = (5..10)
        .map(|i| {
            let v = value(i);
            retrying
                .send_result(FutureRecord::<(), _>::to(topic).partition(0).payload(&v))
                .unwrap_or_else(|(e, _)| panic!("enqueue message {i}: {e:?}"))
        })
        .collect();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut pending[0])
            .await
            .is_err(),
        "nothing is acknowledged while the disk is full"
    );
    // ...and delivers each exactly once, at the next offsets, when space is freed.
    std::fs::remove_file(&filler).expect("remove filler");
    for (i, f) in pending.into_iter().enumerate() {
        let d = f
            .await
            .expect("delivery future not cancelled")
            .unwrap_or_else(|(e, _)| panic!("message {} after freeing space: {e:?}", i + 5));
        assert_eq!(d.offset, (i + 5) as i64, "dense offsets, in order");
    }
    assert_eq!(commit_code(&b.bootstrap, topic, 10), 0);
    let all: Vec<String> = (0..10).map(value).collect();
    assert_reads(&b.bootstrap, topic, 0, &all).await;
    b.shutdown().await;
    drop(fs);
}

#[test]
fn index_entries_past_the_reserved_space_are_skipped_on_a_full_disk_not_a_sigbus() {
    let Some(fs) = Tmpfs::mount("1m") else {
        return;
    };
    let path = fs.path.join("00000000000000000000.index");
    // 8 MiB of preallocated (sparse) index on a 1 MiB filesystem.
    let mut idx = brook::log::OffsetIndex::open(&path, 0, Some(8 * 1024 * 1024))
        .expect("the first reserved chunk fits");
    fill(&fs.path.join("filler"));
    let tries = 3 * 8192;
    let stored = (1..=tries).filter(|&i| idx.append(i, i as u32)).count() as i64;
    // A store into an unbacked page of the mapping would have killed the process with SIGBUS by now.
    assert!(stored >= 1, "the reserved chunk takes entries");
    assert!(stored < tries, "entries with no disk space are skipped");
    assert_eq!(idx.last_entry(), Some((stored, stored as u32)));
    assert_eq!(idx.lookup(tries), Some((stored, stored as u32)));
    drop(idx);
    drop(fs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_created_on_a_nearly_full_disk_comes_online_once_space_is_freed() {
    let Some(fs) = Tmpfs::mount(FS_SIZE) else {
        return;
    };
    let b = start_broker_in(&fs.path.join("data"), &OVERRIDES).await;
    let filler = fs.path.join("filler");
    let filled = fill(&filler);
    // Room for the topic's metadata, not for its partition's index reservation.
    OpenOptions::new()
        .write(true)
        .open(&filler)
        .and_then(|f| f.set_len(filled - 16 * 1024))
        .expect("shrink filler");
    let topic = "squeezed";
    let (code, message) = create_topic_code(&b.bootstrap, topic);
    assert_eq!(code, 0, "the topic is recorded: {message:?}");
    let values = values_of(0);
    let (code, _, _) = produce(&b.bootstrap, topic, &values);
    assert_eq!(
        code,
        ResponseError::KafkaStorageError.code(),
        "its partition could not be created"
    );

    std::fs::remove_file(&filler).expect("remove filler");
    let base = poll_until(DEADLINE, "the partition to come online", || {
        let (code, base, _) = produce(&b.bootstrap, topic, &values);
        (code == 0).then_some(base)
    })
    .await;
    assert_eq!(base, 0);
    assert_reads(&b.bootstrap, topic, 0, &values).await;
    b.shutdown().await;
    drop(fs);
}
