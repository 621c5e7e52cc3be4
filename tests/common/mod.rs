//! Shared helpers for the integration tests: an in-process broker on an ephemeral port in a temp
//! directory, stock rdkafka clients configured for it, and polling with a deadline.
//!
//! Every test binary compiles this module, and not every binary uses every helper.
#![allow(dead_code)]

pub mod cluster;
pub mod cluster_process;
pub mod process;
pub mod raw;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use brook::{Broker, Config};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Generous upper bound for anything a healthy broker does in a test; only a hang reaches it.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A broker running in this process, with the data directory that outlives restarts.
pub struct TestBroker {
    pub broker: Broker,
    pub bootstrap: String,
    pub data_dir: PathBuf,
    /// Keeps the temp directory alive; `None` when the caller owns the directory.
    _tmp: Option<tempfile::TempDir>,
}

/// Logs to the test's captured output; `RUST_LOG=brook=debug cargo test` shows the broker's view.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,openraft=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The config every test broker starts from: loopback, ephemeral port, the given data dir.
pub fn base_config(data_dir: &Path, overrides: &[(&str, &str)]) -> Config {
    let mut config = Config::new();
    config
        .set("listeners", "PLAINTEXT://127.0.0.1:0")
        .expect("listeners is a valid property");
    config
        .set(
            "log.dirs",
            data_dir.to_str().expect("temp dir path is UTF-8"),
        )
        .expect("log.dirs is a valid property");
    // Metrics on an ephemeral port: test brokers never take the well-known 9464.
    config
        .set("metrics.listener", "127.0.0.1:0")
        .expect("metrics.listener is a valid property");
    for (key, value) in overrides {
        config
            .set(key, value)
            .unwrap_or_else(|e| panic!("test override {key}={value} rejected: {e:?}"));
    }
    config
}

/// Starts a broker in a fresh temp directory.
pub async fn start_broker(overrides: &[(&str, &str)]) -> TestBroker {
    init_tracing();
    let tmp = tempfile::tempdir().expect("create temp dir");
    let data_dir = tmp.path().join("data");
    let mut broker = start_broker_in(&data_dir, overrides).await;
    broker._tmp = Some(tmp);
    broker
}

/// Starts a broker on an existing data directory (for restart tests).
pub async fn start_broker_in(data_dir: &Path, overrides: &[(&str, &str)]) -> TestBroker {
    start_broker_with(data_dir, base_config(data_dir, overrides)).await
}

/// Starts a broker with a config a test built (from [`base_config`]) on `data_dir`, e.g. to set a test hook
/// that has no property.
pub async fn start_broker_with(data_dir: &Path, config: Config) -> TestBroker {
    init_tracing();
    let broker = Broker::start(config)
        .await
        .unwrap_or_else(|e| panic!("broker failed to start on {}: {e:?}", data_dir.display()));
    let bootstrap = broker.bootstrap_servers();
    assert_eq!(
        bootstrap,
        broker.local_addr().to_string(),
        "bootstrap_servers() names the bound address"
    );
    TestBroker {
        broker,
        bootstrap,
        data_dir: data_dir.to_path_buf(),
        _tmp: None,
    }
}

impl TestBroker {
    /// Clean shutdown; returns the temp directory so the data can be reopened.
    pub async fn shutdown(self) -> (PathBuf, Option<tempfile::TempDir>) {
        self.broker.shutdown().await.expect("clean shutdown");
        (self.data_dir, self._tmp)
    }

    /// Stops as if killed; returns the temp directory so the data can be reopened.
    pub async fn crash(self) -> (PathBuf, Option<tempfile::TempDir>) {
        self.broker.crash().await;
        (self.data_dir, self._tmp)
    }
}

/// Client settings shared by every rdkafka handle: IPv4 loopback and quick failure on a dead broker.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "30000")
        // Fail fast on topics the broker says do not exist instead of waiting 30 s for propagation.
        .set("topic.metadata.propagation.max.ms", "2000");
    cfg
}

pub fn producer(bootstrap: &str, overrides: &[(&str, &str)]) -> FutureProducer {
    let mut cfg = client_config(bootstrap);
    cfg.set("message.timeout.ms", "30000")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000");
    for (k, v) in overrides {
        cfg.set(*k, *v);
    }
    cfg.create().expect("create producer")
}

static GROUP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A consumer for `assign()` with explicit offsets. librdkafka refuses `assign()` without a
/// group.id, so each consumer gets a unique one; nothing is ever committed (no group protocol).
pub fn consumer(bootstrap: &str, overrides: &[(&str, &str)]) -> StreamConsumer {
    let mut cfg = client_config(bootstrap);
    let group = format!(
        "brook-test-{}-{}",
        std::process::id(),
        GROUP_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    cfg.set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "error")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in overrides {
        cfg.set(*k, *v);
    }
    cfg.create().expect("create consumer")
}

pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap)
        .create()
        .expect("create admin client")
}

pub fn admin_options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(Duration::from_secs(30)))
}

/// Creates a topic with the AdminClient and waits until metadata shows all its partitions.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    create_topic_with(bootstrap, topic, partitions, &[]).await;
}

/// [`create_topic`] with topic configs (`retention.ms`, `cleanup.policy`, ...).
pub async fn create_topic_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let admin = admin(bootstrap);
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        new = new.set(key, value);
    }
    let results = admin
        .create_topics(&[new], &admin_options())
        .await
        .expect("CreateTopics request");
    assert_eq!(results.len(), 1);
    if let Err((name, code)) = &results[0] {
        panic!("create topic {name}: {code:?}");
    }
    wait_for_partitions(bootstrap, topic, partitions as usize).await;
}

/// Total size of the files in a partition directory whose names pass `keep` (segment data on disk).
pub fn partition_bytes(
    data_dir: &Path,
    topic: &str,
    partition: i32,
    keep: impl Fn(&str) -> bool,
) -> u64 {
    std::fs::read_dir(data_dir.join(format!("{topic}-{partition}")))
        .expect("read the partition directory")
        .filter_map(|e| e.ok())
        .filter(|e| keep(&e.file_name().to_string_lossy()))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// Polls metadata until `topic` has `partitions` partitions, each with a leader.
pub async fn wait_for_partitions(bootstrap: &str, topic: &str, partitions: usize) {
    let c = consumer(bootstrap, &[]);
    poll_until(
        DEADLINE,
        &format!("metadata for {topic} with {partitions} partitions"),
        || {
            let md = blocking(|| c.fetch_metadata(Some(topic), Duration::from_secs(5))).ok()?;
            let t = md.topics().iter().find(|t| t.name() == topic)?;
            (t.error().is_none()
                && t.partitions().len() == partitions
                && t.partitions().iter().all(|p| p.leader() >= 0))
            .then_some(())
        },
    )
    .await;
}

/// Runs a blocking rdkafka call without stalling the runtime (tests use the multi-thread flavour).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Calls `check` until it yields a value; panics naming `what` once `limit` has passed.
/// Checks back off from 10 ms to 200 ms so a quick condition is seen quickly.
pub async fn poll_until<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Async flavour of [`poll_until`].
pub async fn poll_until_async<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Assigns the given partitions at explicit offsets.
pub fn assign(consumer: &StreamConsumer, topic: &str, partitions: &[(i32, i64)]) {
    let mut tpl = TopicPartitionList::new();
    for (p, offset) in partitions {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*offset))
            .expect("valid offset");
    }
    consumer.assign(&tpl).expect("assign");
}

/// Receives exactly `n` messages (fewer = panic at the deadline). Transient client-side errors
/// are logged and skipped; the message checks catch anything they hide.
pub async fn consume_n(consumer: &StreamConsumer, n: usize, limit: Duration) -> Vec<OwnedMessage> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::with_capacity(n);
    let mut errors = 0usize;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => out.push(m.detach()),
            Ok(Err(e)) => {
                errors += 1;
                assert!(errors < 100, "too many consumer errors, last: {e:?}");
                eprintln!("consumer error (continuing): {e:?}");
            }
            Err(_) => panic!(
                "timed out after {limit:?}: received {} of {n} messages",
                out.len()
            ),
        }
    }
    out
}

/// Asserts that nothing more arrives within `quiet` (used after reading everything expected).
pub async fn assert_no_more(consumer: &StreamConsumer, quiet: Duration) {
    if let Ok(Ok(m)) = tokio::time::timeout(quiet, consumer.recv()).await {
        panic!(
            "unexpected extra message at {}/{} offset {}",
            m.topic(),
            m.partition(),
            m.offset()
        );
    }
}

/// (low, high) watermarks as the broker reports them through ListOffsets.
pub fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    let c = consumer(bootstrap, &[]);
    blocking(|| c.fetch_watermarks(topic, partition, Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("watermarks of {topic}/{partition}: {e:?}"))
}

/// The partition count metadata reports for `topic`, or the topic-level error code.
pub fn topic_partition_count(bootstrap: &str, topic: &str) -> Result<usize, RDKafkaErrorCode> {
    let c = consumer(bootstrap, &[]);
    let md = blocking(|| c.fetch_metadata(Some(topic), Duration::from_secs(10)))
        .expect("metadata request");
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .expect("metadata response names the requested topic");
    match t.error() {
        Some(code) => Err(code.into()),
        None => Ok(t.partitions().len()),
    }
}

/// Headers as an ordered list of (key, value) for comparisons.
pub fn headers_of(m: &OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    match m.headers() {
        None => Vec::new(),
        Some(h) => h
            .iter()
            .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
            .collect(),
    }
}

/// Messages grouped by partition, each group in offset order.
pub fn by_partition(msgs: Vec<OwnedMessage>) -> BTreeMap<i32, Vec<OwnedMessage>> {
    let mut map: BTreeMap<i32, Vec<OwnedMessage>> = BTreeMap::new();
    for m in msgs {
        map.entry(m.partition()).or_default().push(m);
    }
    map
}

/// A topic name unique within this test process.
pub fn unique_topic(prefix: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}", SEQ.fetch_add(1, Ordering::Relaxed))
}

/// One stored RecordBatch as seen on disk: (base offset, record count, compression codec id).
pub type StoredBatch = (i64, i32, u16);

/// Walks every segment of `topic`/`partition` in the data directory and returns the batch headers
/// (v2 format: baseOffset @0, batchLength @8, attributes @21, recordCount @57). Lets tests check
/// what the broker really stored, e.g. that a client's compression survived.
pub fn stored_batches(data_dir: &Path, topic: &str, partition: i32) -> Vec<StoredBatch> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("partition dir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    let mut batches = Vec::new();
    for segment in segments {
        let bytes = std::fs::read(&segment).expect("read segment");
        let mut pos = 0usize;
        while pos + 61 <= bytes.len() {
            let be_i32 =
                |at: usize| i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
            let base = i64::from_be_bytes(bytes[pos..pos + 8].try_into().expect("8 bytes"));
            let len = be_i32(pos + 8);
            let attributes = u16::from_be_bytes([bytes[pos + 21], bytes[pos + 22]]);
            assert!(
                len >= 49,
                "batch at {pos} of {} has length {len}",
                segment.display()
            );
            batches.push((base, be_i32(pos + 57), attributes & 7));
            pos += 12 + len as usize;
        }
    }
    batches
}

/// Records stored in batches compressed with `codec` (1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub fn records_stored_with_codec(batches: &[StoredBatch], codec: u16) -> i64 {
    batches
        .iter()
        .filter(|b| b.2 == codec)
        .map(|b| i64::from(b.1))
        .sum()
}

/// A zigzag varint at `*pos` of `bytes` (Kafka's record fields), advancing `pos`.
fn zigzag_varint(bytes: &[u8], pos: &mut usize) -> i64 {
    let mut raw = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes[*pos];
        *pos += 1;
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    (raw >> 1) as i64 ^ -((raw & 1) as i64)
}

/// Every control batch stored for `partition` of `topic`, read from the segment files: (offset,
/// Some(commit)) for a marker, None for a control batch the cleaner emptied. Markers are never compressed.
pub fn stored_markers(data_dir: &Path, topic: &str, partition: i32) -> Vec<(i64, Option<bool>)> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    let mut out = Vec::new();
    for segment in segments {
        let bytes = std::fs::read(&segment).unwrap();
        let mut pos = 0usize;
        while pos + 61 <= bytes.len() {
            let base = i64::from_be_bytes(bytes[pos..pos + 8].try_into().unwrap());
            let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
            let attributes = u16::from_be_bytes([bytes[pos + 21], bytes[pos + 22]]);
            let count = i32::from_be_bytes(bytes[pos + 57..pos + 61].try_into().unwrap());
            if attributes & 0x20 != 0 {
                let marker = (count > 0).then(|| {
                    // Record: length, attributes (1 byte), timestamp delta, offset delta, key length, key.
                    let mut at = pos + 61;
                    zigzag_varint(&bytes, &mut at);
                    at += 1;
                    zigzag_varint(&bytes, &mut at);
                    zigzag_varint(&bytes, &mut at);
                    let key_len = zigzag_varint(&bytes, &mut at);
                    assert_eq!(key_len, 4, "a marker's key");
                    i16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) == 1
                });
                out.push((base, marker));
            }
            pos += 12 + len;
        }
    }
    out
}
