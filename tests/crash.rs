//! Crash safety with the real binary: brook runs as a separate process and is killed with SIGKILL at random
//! moments while a stock client (librdkafka) produces with acks=all and a group consumer commits offsets.
//! After every restart the test checks what a user relies on: brook starts and serves every partition, every
//! acknowledged record is at the offset it was acknowledged at, offsets are dense, no stored batch fails its
//! CRC (read back by the client with `check.crcs` and walked on disk with brook's own validation), and the
//! group's committed offsets are at least the last acknowledged commit and never beyond the high watermark.
//!
//! Two more modes cover exactly-once. In the idempotent one a single `enable.idempotence` producer lives
//! through every kill (brook comes back on the same port) and retries what was in flight: every record it
//! sent is stored once, in order, at the offset acknowledged. In the transactional one a producer with a
//! fixed transactional id commits and aborts transactions across the partitions and is replaced after each
//! kill (its init_transactions fences the old one): read_committed sees every committed transaction once,
//! nothing aborted, and a transaction the kill cut all or nothing; read_uncommitted sees the aborted records.
//!
//! `BROOK_CRASH_CYCLES` sets the number of kills per mode (default 3, for CI);
//! `BROOK_CRASH_SEED` replays a run's kill schedule (the seed is printed; thread timing still varies);
//! `BROOK_CRASH_VERBOSE=1` prints brook's output of every start.
//! Proof run:
//! `BROOK_CRASH_CYCLES=100 cargo test --release --test crash -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw;
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, TopicName, metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const TOPIC: &str = "crash";
const PARTITIONS: i32 = 4;
const GROUP: &str = "crash-group";
/// Only a hung broker or client reaches this.
const DEADLINE: Duration = Duration::from_secs(60);
/// Messages one cycle's producer sends at most, so that the data (and the checks) stay bounded.
const MAX_MESSAGES_PER_CYCLE: u64 = 20_000;
/// How long the group consumer may take to close after the kill (it waits out its session timeout).
const CONSUMER_CLOSE_LIMIT: Duration = Duration::from_secs(3);
/// The producer's pace: fast enough to keep batches in flight at any moment, bounded by the cap above.
const MESSAGES_PER_MS: u64 = 12;
/// The kill comes this long after the clients start, uniformly at random.
const KILL_DELAY_MS: (u64, u64) = (100, 1500);
/// One restart in this many is first killed again during its start-up, i.e. while recovery runs.
const KILL_DURING_STARTUP_ONE_IN: u64 = 6;
const BROOK_NODE_ID: i32 = 1;
const KAFKA_STORAGE_ERROR: i16 = 56;

/// splitmix64: a small seeded generator, so a failing run can be replayed from its printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
    )
}

// ---------------------------------------------------------------------------------------------------------
// Payloads: (cycle, seq) plus filler derived from them, so any stored record can be checked on its own.

fn payload(cycle: u32, seq: u64) -> Vec<u8> {
    let mut out = format!("c{cycle:05}s{seq:010}:").into_bytes();
    let filler = 16 + (seq.wrapping_mul(7919) % 200) as usize;
    out.extend((0..filler).map(|i| b'a' + ((seq as usize + i) % 26) as u8));
    out
}

/// The (cycle, seq) a payload claims, if it is exactly what the producer would have sent for them.
fn parse_payload(bytes: &[u8]) -> Option<(u32, u64)> {
    let text = std::str::from_utf8(bytes.get(..18)?).ok()?;
    let cycle = text.strip_prefix('c')?.get(..5)?.parse().ok()?;
    let seq = text.get(7..17)?.parse().ok()?;
    (payload(cycle, seq) == bytes).then_some((cycle, seq))
}

fn partition_of(seq: u64) -> i32 {
    (seq % PARTITIONS as u64) as i32
}

// ---------------------------------------------------------------------------------------------------------
// The brook process.

/// One brook process and what it printed.
struct Brook {
    child: Child,
    addr: SocketAddr,
    spawned: Instant,
    /// From spawn to the "listening on" line: loading and recovering the data directory.
    announced: Duration,
    log: Arc<Mutex<Vec<String>>>,
}

fn brook_command(data_dir: &Path, overrides: &[(&str, &str)]) -> Command {
    let mut command = common::process::brook_command();
    let dirs = format!("log.dirs={}", data_dir.display());
    if !overrides.iter().any(|(key, _)| *key == "listeners") {
        command.args(["--override", "listeners=PLAINTEXT://127.0.0.1:0"]);
    }
    command.args(["--override", &dirs]);
    for (key, value) in overrides {
        command.args(["--override", &format!("{key}={value}")]);
    }
    command
        // Per-partition load lines carry the number of batches recovery scanned.
        .env("RUST_LOG", "info,brook::log::manager=debug")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

impl Brook {
    /// Spawns brook and returns once it announced its address (or panics with its output if it exited).
    fn spawn(data_dir: &Path, overrides: &[(&str, &str)]) -> Brook {
        let spawned = Instant::now();
        let mut child = brook_command(data_dir, overrides)
            .spawn()
            .expect("spawn the brook binary");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.to_string());
                }
                lines.lock().expect("log lock").push(line);
            }
        });
        let addr = match rx.recv_timeout(DEADLINE) {
            Ok(addr) => addr
                .parse()
                .unwrap_or_else(|_| panic!("brook announced a bad address {addr:?}")),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "brook did not start ({status:?}); its output:\n{}",
                    log.lock().expect("log lock").join("\n")
                );
            }
        };
        Brook {
            child,
            addr,
            spawned,
            announced: spawned.elapsed(),
            log,
        }
    }

    /// Polls Metadata until every partition of TOPIC has this broker as leader; returns the time from spawn.
    fn wait_ready(&mut self) -> Duration {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let last = match metadata_partitions(self.addr) {
                Ok(p)
                    if p.len() == PARTITIONS as usize
                        && p.iter().all(|&(_, e, l)| e == 0 && l == BROOK_NODE_ID) =>
                {
                    return self.spawned.elapsed();
                }
                Ok(p) => format!("partitions (index, error, leader): {p:?}"),
                Err(e) => e,
            };
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "brook exited ({status}) before serving; output:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "brook not ready within {DEADLINE:?}: {last}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn output(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    fn lines_containing(&self, needle: &str) -> Vec<String> {
        let lines = self.log.lock().expect("log lock");
        lines
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Batches the recovery at start scanned, summed over the partitions (from the debug load lines).
    fn recovery_batches_scanned(&self) -> u64 {
        self.lines_containing("loaded partition log")
            .iter()
            .filter_map(|l| {
                let rest = l.split("scanned_batches=").nth(1)?;
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL brook");
        self.child.wait().expect("reap brook");
    }

    /// SIGTERM and wait: a clean stop must exit 0.
    fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM brook");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for brook") {
                assert!(
                    status.success(),
                    "clean stop exits 0, got {status}; output:\n{}",
                    self.output()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "brook did not stop within {DEADLINE:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Raw Metadata, to time the restart without a client library's own start-up in the figure.

/// (partition, error code, leader) of TOPIC's partitions, creating the topic if needed.
fn metadata_partitions(addr: SocketAddr) -> Result<Vec<(i32, i16, i32)>, String> {
    metadata_of(addr, TOPIC, true)
}

fn metadata_of(
    addr: SocketAddr,
    topic: &str,
    create: bool,
) -> Result<Vec<(i32, i16, i32)>, String> {
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(create)
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]));
    let response: MetadataResponse = raw::try_request(addr, ApiKey::Metadata, 12, &request)?;
    let t = response.topics.first().ok_or("no topic in the response")?;
    if t.error_code != 0 {
        return Err(format!("topic error {}", t.error_code));
    }
    let mut out: Vec<_> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.error_code, p.leader_id.0))
        .collect();
    out.sort_unstable();
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------
// The clients of one cycle.

/// A record the broker acknowledged: where it said it stored it, and what it was.
#[derive(Clone, Copy, Debug)]
struct Acked {
    partition: i32,
    offset: i64,
    cycle: u32,
    seq: u64,
}

struct DeliveryRecorder {
    acked: Arc<Mutex<Vec<Acked>>>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for DeliveryRecorder {}

impl ProducerContext for DeliveryRecorder {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let (cycle, seq) = parse_payload(m.payload().unwrap_or_default())
                    .expect("a delivery report carries the payload we sent");
                self.acked.lock().expect("acks lock").push(Acked {
                    partition: m.partition(),
                    offset: m.offset(),
                    cycle,
                    seq,
                });
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn client_config(addr: SocketAddr) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", addr.to_string())
        .set("broker.address.family", "v4")
        .set("log_level", "3");
    cfg
}

/// Produces (cycle, seq) records round-robin over the partitions until `stop`, recording every ack.
fn run_producer(
    addr: SocketAddr,
    cycle: u32,
    acked: Arc<Mutex<Vec<Acked>>>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let producer: BaseProducer<DeliveryRecorder> = client_config(addr)
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "10000")
        .set("queue.buffering.max.messages", "5000")
        .create_with_context(DeliveryRecorder { acked, failed })
        .expect("create producer");
    let mut seq = 0u64;
    let started = Instant::now();
    while !stop.load(Ordering::Acquire) {
        // Paced, so that production spans the whole window in which the kill may come.
        let allowed =
            (started.elapsed().as_millis() as u64 * MESSAGES_PER_MS).min(MAX_MESSAGES_PER_CYCLE);
        if seq >= allowed {
            producer.poll(Duration::from_millis(1));
            continue;
        }
        let value = payload(cycle, seq);
        match producer.send(
            BaseRecord::<(), [u8]>::to(TOPIC)
                .partition(partition_of(seq))
                .payload(&value),
        ) {
            Ok(()) => seq += 1,
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                _,
            )) => {
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => panic!("producer send failed locally: {e:?}"),
        }
        producer.poll(Duration::ZERO);
    }
    // Anything not acknowledged by now was written or not; it is simply not counted as acknowledged.
    producer.purge(PurgeConfig::default().queue().inflight());
    let _ = producer.flush(Duration::from_secs(1));
    seq
}

/// Records the group commits the coordinator acknowledged, as their results arrive.
struct CommitRecorder {
    commits: Arc<Mutex<BTreeMap<i32, i64>>>,
    results: AtomicU64,
}

impl ClientContext for CommitRecorder {}

impl ConsumerContext for CommitRecorder {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.results.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            return;
        }
        let mut acked = self.commits.lock().expect("commits lock");
        for e in offsets.elements() {
            if let (Offset::Offset(o), Ok(())) = (e.offset(), e.error()) {
                let slot = acked.entry(e.partition()).or_insert(o);
                *slot = (*slot).max(o);
            }
        }
    }
}

/// Consumes TOPIC in GROUP as a static member. librdkafka commits the consumed positions every 100 ms and
/// reports each commit's result, which is recorded when the coordinator acknowledged it. (The auto-commit
/// path is used because its results arrive as events: a synchronous `commit()` waits, unboundedly, for a
/// coordinator that was just killed.) Returns (records consumed, commit results received).
fn run_group_consumer(
    addr: SocketAddr,
    commits: Arc<Mutex<BTreeMap<i32, i64>>>,
    stop: Arc<AtomicBool>,
    bad: Arc<Mutex<Vec<String>>>,
) -> (u64, u64, bool) {
    let consumer: BaseConsumer<CommitRecorder> = client_config(addr)
        .set("group.id", GROUP)
        .set("group.instance.id", "crash-member")
        // Short, so that closing after the kill (which waits out the session) takes little of each cycle.
        .set("session.timeout.ms", "1000")
        .set("heartbeat.interval.ms", "250")
        .set("max.poll.interval.ms", "3000")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "100")
        .set("enable.auto.offset.store", "true")
        .set("auto.offset.reset", "earliest")
        .set("check.crcs", "true")
        .set("fetch.wait.max.ms", "50")
        .create_with_context(CommitRecorder {
            commits,
            results: AtomicU64::new(0),
        })
        .expect("create group consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let mut consumed = 0u64;
    while !stop.load(Ordering::Acquire) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
            consumed += 1;
            if parse_payload(m.payload().unwrap_or_default()).is_none() {
                bad.lock().expect("lock").push(format!(
                    "group consumer read a record the producer never sent at partition {} offset {}",
                    m.partition(),
                    m.offset()
                ));
            }
        }
    }
    // Closing waits for the final commit to fail, up to the session timeout. Dropping would wait without a
    // bound, so a consumer that does not close in time is leaked (counted in the summary).
    let closing = Instant::now();
    if consumer.close_queue().is_ok() {
        while !consumer.closed() && closing.elapsed() < CONSUMER_CLOSE_LIMIT {
            consumer.poll(Duration::from_millis(20));
        }
    }
    let results = consumer.context().results.load(Ordering::Relaxed);
    if !consumer.closed() {
        std::mem::forget(consumer);
        return (consumed, results, true);
    }
    (consumed, results, false)
}

/// Joins `handle` unless it takes longer than DEADLINE (a client stuck on a dead broker); then it is left.
fn join_within<T: Send + 'static>(handle: JoinHandle<T>, what: &str) -> Option<T> {
    let deadline = Instant::now() + DEADLINE;
    while !handle.is_finished() {
        if Instant::now() > deadline {
            eprintln!("{what} did not finish within {DEADLINE:?} of the kill; left running");
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Some(handle.join().unwrap_or_else(|_| panic!("{what} panicked")))
}

// ---------------------------------------------------------------------------------------------------------
// Verification.

/// Walks every segment file of a partition directory with brook's own batch validation. Returns the
/// offset after the last batch (the log end offset on disk) and the batches seen; problems go to `bad`.
/// With `below`, the walk stops at the first batch at or above that offset: a producer may be appending
/// there while the walk reads, and a half-written tail is no fault.
fn walk_partition_on_disk(
    dir: &Path,
    below: Option<i64>,
    bad: &mut Vec<String>,
) -> (Option<i64>, u64) {
    let mut segments: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| {
            let path = e.expect("dir entry").path();
            let base = path
                .file_name()?
                .to_str()?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((base, path))
        })
        .collect();
    segments.sort();
    let mut next: Option<i64> = None;
    let mut batches = 0u64;
    for (base, path) in segments {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let mut pos = 0usize;
        while pos < bytes.len() {
            if below.is_some_and(|b| next.unwrap_or(base) >= b) {
                return (next, batches);
            }
            let where_ = format!("{} at byte {pos}", path.display());
            if bytes.len() - pos < brook::log::RECORD_BATCH_OVERHEAD {
                bad.push(format!(
                    "{where_}: {} trailing bytes, not a batch",
                    bytes.len() - pos
                ));
                break;
            }
            let size = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().expect("4 bytes"))
                as usize
                + 12;
            let Some(batch) = bytes.get(pos..pos + size) else {
                bad.push(format!(
                    "{where_}: batch of {size} bytes runs past the end of the file"
                ));
                break;
            };
            let first = i64::from_be_bytes(batch[..8].try_into().expect("8 bytes"));
            match brook::log::validate_batches(batch, u32::MAX) {
                Ok(summary) => {
                    if first < base || next.is_some_and(|n| n != first) {
                        bad.push(format!(
                            "{where_}: batch starts at offset {first}, expected {} (offsets not dense)",
                            next.map_or(base, |n| n)
                        ));
                    }
                    next = Some(first + summary.record_count as i64);
                    batches += 1;
                }
                Err(e) => {
                    bad.push(format!(
                        "{where_}: batch at offset {first} fails validation: {e}"
                    ));
                    break;
                }
            }
            pos += size;
        }
    }
    (next, batches)
}

/// Reads TOPIC's partitions from `from[p]` up to `hw[p]` with CRC checks; returns (cycle, seq) per offset.
/// An offset that is skipped or a record the producer never sent goes to `bad`.
fn read_back(
    addr: SocketAddr,
    from: &[i64],
    hw: &[i64],
    bad: &mut Vec<String>,
) -> Vec<BTreeMap<i64, (u32, u64)>> {
    let mut out = vec![BTreeMap::new(); PARTITIONS as usize];
    let mut next: Vec<i64> = from.to_vec();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS as usize {
        if from[p] < hw[p] {
            tpl.add_partition_offset(TOPIC, p as i32, Offset::Offset(from[p]))
                .expect("valid offset");
        }
    }
    if tpl.count() == 0 {
        return out;
    }
    let consumer: BaseConsumer = client_config(addr)
        .set("group.id", "crash-verify")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "error")
        .set("check.crcs", "true")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("create verify consumer");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + DEADLINE;
    while (0..PARTITIONS as usize).any(|p| next[p] < hw[p]) {
        assert!(
            Instant::now() < deadline,
            "read back did not reach the high watermarks {hw:?} within {DEADLINE:?}: at {next:?}"
        );
        let m = match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                bad.push(format!(
                    "consumer error while reading back (e.g. a CRC failure): {e}"
                ));
                if bad.len() > 100 {
                    return out;
                }
                continue;
            }
            None => continue,
        };
        let p = m.partition() as usize;
        if m.offset() != next[p] {
            bad.push(format!(
                "partition {p}: offsets not dense: expected offset {}, the next record read is at {}",
                next[p],
                m.offset()
            ));
        }
        next[p] = m.offset() + 1;
        match parse_payload(m.payload().unwrap_or_default()) {
            Some(record) => {
                out[p].insert(m.offset(), record);
            }
            None => bad.push(format!(
                "partition {p} offset {}: a record the producer never sent ({} bytes)",
                m.offset(),
                m.payload().map_or(0, <[u8]>::len)
            )),
        }
    }
    out
}

/// Figures of one durability mode's run.
#[derive(Default)]
struct Stats {
    kills: u64,
    kills_during_startup: u64,
    sent: u64,
    acked: u64,
    verified: u64,
    lost: u64,
    failed_deliveries: u64,
    restart: Vec<Duration>,
    announce: Vec<Duration>,
    recovery_scanned: Vec<u64>,
    truncations: u64,
    group_consumed: u64,
    consumers_leaked: u64,
    consumer_stop_max: Duration,
    group_commits_sent: u64,
    batches_on_disk: u64,
    /// Records stored twice (the idempotent and transactional modes).
    duplicates: u64,
}

struct Harness {
    mode: &'static str,
    seed: u64,
    data_dir: PathBuf,
    overrides: Vec<(&'static str, &'static str)>,
    acked: Vec<Acked>,
    /// Highest offset each partition's group commit was acknowledged at.
    commits: Arc<Mutex<BTreeMap<i32, i64>>>,
    /// Each partition's high watermark at the last verification: everything below it was checked.
    verified_hw: Vec<i64>,
    ports_used: std::collections::HashSet<u16>,
    /// The listener keeps its port across restarts (clients that live through a kill reconnect to it).
    fixed_port: bool,
    stats: Stats,
}

impl Harness {
    fn start(&mut self) -> Brook {
        let mut brook = Brook::spawn(&self.data_dir, &self.overrides);
        // Clients of earlier incarnations may still be retrying their old address: never reuse a port.
        while !self.fixed_port && !self.ports_used.insert(brook.addr.port()) {
            brook.sigkill();
            brook = Brook::spawn(&self.data_dir, &self.overrides);
        }
        let took = brook.wait_ready();
        self.stats.restart.push(took);
        self.stats.announce.push(brook.announced);
        self.stats
            .recovery_scanned
            .push(brook.recovery_batches_scanned());
        if std::env::var_os("BROOK_CRASH_VERBOSE").is_some() {
            println!("[{}] brook start:\n{}", self.mode, brook.output());
        }
        self.stats.truncations += brook
            .lines_containing("truncated log at a torn or corrupt batch")
            .len() as u64;
        brook
    }

    /// One restart in KILL_DURING_STARTUP_ONE_IN is killed again while recovery runs (somewhere in the
    /// time the last start took to listen): recovery itself must be safe to interrupt.
    fn maybe_kill_during_startup(&mut self, rng: &mut Rng) {
        if rng.between(1, KILL_DURING_STARTUP_ONE_IN) != 1 {
            return;
        }
        let window = self
            .stats
            .announce
            .last()
            .map_or(20, |d| d.as_millis() as u64);
        let mut early = brook_command(&self.data_dir, &self.overrides)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the brook binary");
        std::thread::sleep(Duration::from_millis(rng.between(0, window.max(2))));
        early.kill().expect("SIGKILL brook");
        early.wait().expect("reap brook");
        self.stats.kills_during_startup += 1;
    }

    fn fail(&self, cycle: u32, what: &str, problems: &[String], brook: &Brook) -> ! {
        panic!(
            "[{}] cycle {cycle}: {what}: {} problem(s) (replay with BROOK_CRASH_SEED={}):\n  {}\nbrook's output:\n{}",
            self.mode,
            problems.len(),
            self.seed,
            problems
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  "),
            brook.output()
        );
    }

    /// Every check after a restart; `first_acked` indexes the acknowledgements not yet verified and
    /// `full` re-reads every partition from offset 0.
    fn verify(&mut self, brook: &Brook, cycle: u32, first_acked: usize, full: bool) {
        let errors = brook.lines_containing(" ERROR ");
        if !errors.is_empty() {
            self.fail(cycle, "brook logged errors at start", &errors, brook);
        }
        let watermarks: BaseConsumer = client_config(brook.addr)
            .set("group.id", GROUP)
            .create()
            .expect("create consumer");
        let hw: Vec<i64> = (0..PARTITIONS)
            .map(|p| {
                watermarks
                    .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
                    .unwrap_or_else(|e| {
                        panic!(
                            "[{}] cycle {cycle}: watermarks of partition {p}: {e}",
                            self.mode
                        )
                    })
                    .1
            })
            .collect();
        let mut bad = Vec::new();
        for (p, (now, before)) in hw.iter().zip(&self.verified_hw).enumerate() {
            if now < before {
                bad.push(format!(
                    "partition {p}: high watermark {now} is below {before}, which was verified after the previous restart"
                ));
            }
        }

        // On disk: every batch of every partition (the group's offsets topic too) passes brook's validation
        // and offsets are dense; TOPIC's log ends at its high watermark.
        for entry in std::fs::read_dir(&self.data_dir).expect("read data dir") {
            let path = entry.expect("dir entry").path();
            if !path.is_dir() {
                continue;
            }
            let (end, batches) = walk_partition_on_disk(&path, None, &mut bad);
            self.stats.batches_on_disk += batches;
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if let Some(p) = name
                .strip_prefix(&format!("{TOPIC}-"))
                .and_then(|p| p.parse::<usize>().ok())
            {
                let end = end.unwrap_or(0);
                if end != hw[p] {
                    bad.push(format!(
                        "{name}: the log on disk ends at offset {end}, the high watermark is {}",
                        hw[p]
                    ));
                }
            }
        }

        let from: Vec<i64> = if full {
            vec![0; PARTITIONS as usize]
        } else {
            self.verified_hw.clone()
        };
        let stored = read_back(brook.addr, &from, &hw, &mut bad);
        let check_from = if full { 0 } else { first_acked };
        let mut verified = 0;
        for a in &self.acked[check_from..] {
            let p = a.partition as usize;
            if a.offset >= hw[p] {
                bad.push(format!(
                    "LOST: record (cycle {}, seq {}) acknowledged at partition {p} offset {}, but the high watermark is {}",
                    a.cycle, a.seq, a.offset, hw[p]
                ));
                self.stats.lost += 1;
            } else if a.offset < from[p] {
                bad.push(format!(
                    "record (cycle {}, seq {}) acknowledged at partition {p} offset {}, below the high watermark {} \
                     the broker had before it was sent",
                    a.cycle, a.seq, a.offset, from[p]
                ));
            } else {
                match stored[p].get(&a.offset) {
                    Some(&(c, s))
                        if (c, s) == (a.cycle, a.seq) && partition_of(s) == a.partition =>
                    {
                        verified += 1
                    }
                    found => {
                        bad.push(format!(
                            "LOST: record (cycle {}, seq {}) acknowledged at partition {p} offset {}, found {found:?} there",
                            a.cycle, a.seq, a.offset
                        ));
                        self.stats.lost += 1;
                    }
                }
            }
        }
        if full {
            self.stats.verified = verified;
        } else {
            self.stats.verified += verified;
        }

        // Committed group offsets: never behind an acknowledged commit, never beyond the high watermark.
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(TOPIC, p);
        }
        let committed = watermarks
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("[{}] cycle {cycle}: OffsetFetch: {e}", self.mode));
        let acked_commits = self.commits.lock().expect("commits lock").clone();
        for e in committed.elements() {
            let p = e.partition();
            let got = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            if let Some(&want) = acked_commits.get(&p)
                && got < want
            {
                bad.push(format!("group {GROUP} partition {p}: committed offset {got}, but a commit of {want} was acknowledged"));
            }
            if got > hw[p as usize] {
                bad.push(format!("group {GROUP} partition {p}: committed offset {got} is beyond the high watermark {}", hw[p as usize]));
            }
        }
        if !bad.is_empty() {
            self.fail(cycle, "verification failed", &bad, brook);
        }
        self.verified_hw = hw;
    }

    /// Runs the producer and the group consumer against `brook`, then kills it after a random delay.
    fn cycle(&mut self, brook: Brook, cycle: u32, rng: &mut Rng) {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(Mutex::new(Vec::new()));
        let addr = brook.addr;
        let producer = {
            let (acked, failed, stop) = (acked.clone(), failed.clone(), stop.clone());
            std::thread::spawn(move || run_producer(addr, cycle, acked, failed, stop))
        };
        let consumer = {
            let (commits, stop, bad) = (self.commits.clone(), stop.clone(), bad.clone());
            std::thread::spawn(move || run_group_consumer(addr, commits, stop, bad))
        };
        // The crash comes at a random moment of the workload; sleeping is the point here.
        std::thread::sleep(Duration::from_millis(
            rng.between(KILL_DELAY_MS.0, KILL_DELAY_MS.1),
        ));
        let log = brook.log.clone();
        brook.sigkill();
        self.stats.kills += 1;
        stop.store(true, Ordering::Release);
        bad.lock().expect("lock").extend(
            log.lock()
                .expect("log lock")
                .iter()
                .filter(|l| l.contains(" ERROR "))
                .map(|l| format!("brook logged an error while serving: {l}")),
        );
        if let Some(sent) = join_within(producer, "producer") {
            self.stats.sent += sent;
        }
        let stopping = Instant::now();
        let joined = join_within(consumer, "group consumer");
        self.stats.consumer_stop_max = self.stats.consumer_stop_max.max(stopping.elapsed());
        if let Some((consumed, commits, leaked)) = joined {
            self.stats.consumers_leaked += u64::from(leaked);
            self.stats.group_consumed += consumed;
            self.stats.group_commits_sent += commits;
        }
        let acked = std::mem::take(&mut *acked.lock().expect("acks lock"));
        self.stats.acked += acked.len() as u64;
        self.stats.failed_deliveries += failed.load(Ordering::Relaxed);
        self.acked.extend(acked);
        let bad = bad.lock().expect("lock").clone();
        assert!(
            bad.is_empty(),
            "[{}] cycle {cycle} (seed {}): {bad:?}",
            self.mode,
            self.seed
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// The run's harness over a fresh data directory (kept alive by the returned guard), its number of kills
/// and its seeded generator.
fn setup(
    mode: &'static str,
    extra: &[(&'static str, &'static str)],
) -> (Harness, tempfile::TempDir, u32, Rng) {
    let cycles = env_u64("BROOK_CRASH_CYCLES").unwrap_or(3) as u32;
    let seed = env_u64("BROOK_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!(
        "[{mode}] crash test: {cycles} cycles, seed {seed} (BROOK_CRASH_SEED={seed} replays it)"
    );
    let rng = Rng(seed ^ mode.len() as u64);
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut overrides = vec![
        ("num.partitions", "4"),
        ("log.segment.bytes", "262144"),
        ("group.initial.rebalance.delay.ms", "0"),
        ("offsets.topic.num.partitions", "2"),
        ("group.min.session.timeout.ms", "1000"),
    ];
    overrides.extend_from_slice(extra);
    let h = Harness {
        mode,
        seed,
        data_dir: tmp.path().join("data"),
        overrides,
        acked: Vec::new(),
        commits: Arc::new(Mutex::new(BTreeMap::new())),
        verified_hw: vec![0; PARTITIONS as usize],
        ports_used: Default::default(),
        fixed_port: false,
        stats: Stats::default(),
    };
    (h, tmp, cycles, rng)
}

fn run_crash_cycles(mode: &'static str, extra: &[(&'static str, &'static str)]) {
    let (mut h, _tmp, cycles, mut rng) = setup(mode, extra);
    let started = Instant::now();
    let mut brook = h.start();
    h.stats.restart.clear();
    h.stats.announce.clear(); // the first start creates the topic; only restarts after a kill count
    h.stats.recovery_scanned.clear();
    for cycle in 0..cycles {
        let first_acked = h.acked.len();
        h.cycle(brook, cycle, &mut rng);
        h.maybe_kill_during_startup(&mut rng);
        brook = h.start();
        h.verify(&brook, cycle, first_acked, false);
    }
    // Last: everything from offset 0 once more, then a clean stop.
    h.verify(&brook, cycles, 0, true);
    brook.stop();

    let s = &h.stats;
    let mut restart = s.restart.clone();
    restart.sort_unstable();
    let mut announce = s.announce.clone();
    announce.sort_unstable();
    let scanned_max = s.recovery_scanned.iter().max().copied().unwrap_or(0);
    let scanned_total: u64 = s.recovery_scanned.iter().sum();
    println!(
        "[{mode}] {} cycles in {:.1} s: {} kills ({} during startup), sent {}, acked {}, verified {} (final re-read), \
         lost {}, unacknowledged (failed) {}; group commits acked on {} partitions; restart to first Metadata \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (listening after p50 {:.1} ms, max {:.1} ms); recovery scanned {} batches in all, max {} per restart; {} torn \
         tails truncated; batches validated on disk {}; group consumer read {} records, {} commit results, stopped within {:?}, {} left unclosed",
        cycles,
        started.elapsed().as_secs_f64(),
        s.kills,
        s.kills_during_startup,
        s.sent,
        s.acked,
        s.verified,
        s.lost,
        s.failed_deliveries,
        h.commits.lock().expect("commits lock").len(),
        percentile(&restart, 0.5),
        percentile(&restart, 0.99),
        percentile(&restart, 1.0),
        percentile(&announce, 0.5),
        percentile(&announce, 1.0),
        scanned_total,
        scanned_max,
        s.truncations,
        s.batches_on_disk,
        s.group_consumed,
        s.group_commits_sent,
        s.consumer_stop_max,
        s.consumers_leaked,
    );
    assert_eq!(s.lost, 0);
    assert_eq!(
        s.verified, s.acked,
        "every acknowledged record verified in the final read"
    );
    assert!(
        s.acked > 0,
        "the producer got acknowledgements (cycles too short?)"
    );
}

#[test]
fn sigkill_loses_no_acknowledged_record_page_cache_mode() {
    run_crash_cycles("default", &[]);
}

#[test]
fn sigkill_loses_no_acknowledged_record_fsync_every_message_mode() {
    run_crash_cycles("flush.messages=1", &[("log.flush.interval.messages", "1")]);
}

// ---------------------------------------------------------------------------------------------------------
// Reads and offsets that see transactions.

/// ListOffsets LATEST of TOPIC's partitions under `isolation` (0: the high watermark; 1, read_committed: the
/// last stable offset). Raw, because librdkafka's watermarks ask under its consumer's isolation only.
fn latest_offsets(addr: SocketAddr, isolation: i8) -> Result<Vec<i64>, String> {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, ListOffsetsResponse};
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation)
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(
                    (0..PARTITIONS)
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_timestamp(-1)
                        })
                        .collect(),
                ),
        ]);
    let response: ListOffsetsResponse = raw::try_request(addr, ApiKey::ListOffsets, 7, &request)?;
    let mut out = vec![-1; PARTITIONS as usize];
    for p in &response
        .topics
        .first()
        .ok_or("no topic in the response")?
        .partitions
    {
        if p.error_code != 0 {
            return Err(format!(
                "partition {}: error {}",
                p.partition_index, p.error_code
            ));
        }
        *out.get_mut(p.partition_index as usize)
            .ok_or("an unknown partition in the response")? = p.offset;
    }
    if out.contains(&-1) {
        return Err(format!("a partition is missing from the response: {out:?}"));
    }
    Ok(out)
}

/// Reads TOPIC's partitions from `from[p]` until librdkafka reports the end (`end[p]` is where it must be)
/// under `isolation` ("read_committed" or "read_uncommitted"), with CRC checks: (partition, offset,
/// payload) of every record delivered. Only for a log that nothing writes to meanwhile.
fn read_to_end(
    addr: SocketAddr,
    isolation: &str,
    from: &[i64],
    end: &[i64],
    bad: &mut Vec<String>,
) -> Vec<(i32, i64, Vec<u8>)> {
    let mut tpl = TopicPartitionList::new();
    let mut open = std::collections::BTreeSet::new();
    for p in 0..PARTITIONS {
        if from[p as usize] < end[p as usize] {
            tpl.add_partition_offset(TOPIC, p, Offset::Offset(from[p as usize]))
                .expect("valid offset");
            open.insert(p);
        }
    }
    let mut out = Vec::new();
    if open.is_empty() {
        return out;
    }
    let consumer: BaseConsumer = client_config(addr)
        .set("group.id", "crash-verify")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "error")
        .set("check.crcs", "true")
        .set("fetch.wait.max.ms", "50")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .create()
        .expect("create verify consumer");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + DEADLINE;
    while !open.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{isolation} read did not reach the end {end:?} of partitions {open:?} within {DEADLINE:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let p = m.partition();
                if m.offset() >= end[p as usize] || m.offset() < from[p as usize] {
                    bad.push(format!(
                        "{isolation}: partition {p}: a record at offset {}, outside [{}, {})",
                        m.offset(),
                        from[p as usize],
                        end[p as usize]
                    ));
                }
                out.push((p, m.offset(), m.payload().unwrap_or_default().to_vec()));
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => {
                bad.push(format!(
                    "{isolation}: consumer error while reading back: {e}"
                ));
                if bad.len() > 100 {
                    return out;
                }
            }
            None => {}
        }
    }
    out
}

/// A port below the ephemeral range that nothing listens on now. A mode whose client lives through the
/// kills needs brook back on the same address; an ephemeral port could meanwhile become the source port of
/// some connection (even of a self-connect to it, as a client retrying it can cause).
fn unused_fixed_port(rng: &mut Rng) -> u16 {
    for _ in 0..1000 {
        let port = rng.between(20_000, 32_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-32000");
}

// ---------------------------------------------------------------------------------------------------------
// Idempotent mode: one producer with `enable.idempotence` lives through every kill and retries what was in
// flight; every record it sent must end up in the log exactly once, in order.

/// Records per millisecond the idempotent producer sends (over its whole life, downtime included).
const IDEMPOTENT_MESSAGES_PER_MS: u64 = 5;

/// What the long-lived idempotent producer shares with the test.
#[derive(Default)]
struct IdempotentShared {
    acked: Mutex<Vec<Acked>>,
    /// Deliveries that failed before the producer was told to stop, with librdkafka's error.
    failed: Mutex<Vec<String>>,
    /// librdkafka's fatal error, once raised (then the producer stops).
    fatal: Mutex<Option<String>>,
    stop: AtomicBool,
    sent: AtomicU64,
}

struct IdempotentRecorder(Arc<IdempotentShared>);

impl ClientContext for IdempotentRecorder {}

impl ProducerContext for IdempotentRecorder {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let (cycle, seq) = parse_payload(m.payload().unwrap_or_default())
                    .expect("a delivery report carries the payload we sent");
                self.0.acked.lock().expect("acks lock").push(Acked {
                    partition: m.partition(),
                    offset: m.offset(),
                    cycle,
                    seq,
                });
            }
            Err((e, m)) if !self.0.stop.load(Ordering::Acquire) => {
                let record = parse_payload(m.payload().unwrap_or_default());
                self.0
                    .failed
                    .lock()
                    .expect("failures lock")
                    .push(format!("delivery of (cycle, seq) {record:?} failed: {e}"));
            }
            Err(_) => {}
        }
    }
}

fn record_fatal(shared: &IdempotentShared, producer: &BaseProducer<IdempotentRecorder>) -> bool {
    match producer.client().fatal_error() {
        Some((code, reason)) => {
            *shared.fatal.lock().expect("fatal lock") = Some(format!("{code:?}: {reason}"));
            true
        }
        None => false,
    }
}

/// Sends (0, seq) records round-robin over the partitions at a steady pace until told to stop, through
/// every kill (brook comes back on the same port); then delivers what is queued. Returns whether everything
/// was delivered.
fn run_idempotent_producer(addr: SocketAddr, shared: Arc<IdempotentShared>) -> bool {
    let producer: BaseProducer<IdempotentRecorder> = client_config(addr)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        // Far beyond any restart: only a fatal error may fail a delivery.
        .set("message.timeout.ms", "120000")
        .set("queue.buffering.max.messages", "5000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .create_with_context(IdempotentRecorder(shared.clone()))
        .expect("create idempotent producer");
    let mut seq = 0u64;
    let started = Instant::now();
    while !shared.stop.load(Ordering::Acquire) {
        if record_fatal(&shared, &producer) {
            return false;
        }
        let allowed = started.elapsed().as_millis() as u64 * IDEMPOTENT_MESSAGES_PER_MS;
        if seq >= allowed {
            producer.poll(Duration::from_millis(1));
            continue;
        }
        let value = payload(0, seq);
        match producer.send(
            BaseRecord::<(), [u8]>::to(TOPIC)
                .partition(partition_of(seq))
                .payload(&value),
        ) {
            Ok(()) => {
                seq += 1;
                shared.sent.store(seq, Ordering::Release);
            }
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                _,
            )) => {
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => {
                if !record_fatal(&shared, &producer) {
                    *shared.fatal.lock().expect("fatal lock") =
                        Some(format!("send failed locally: {e}"));
                }
                return false;
            }
        }
        producer.poll(Duration::ZERO);
    }
    // Told to stop while brook is up: everything queued and in flight must be delivered.
    let flushed = producer.flush(Duration::from_secs(30)).is_ok();
    !record_fatal(&shared, &producer) && flushed
}

/// The idempotent mode's view of the log: each partition's (offset -> seq) read so far.
type IdempotentLog = Vec<BTreeMap<i64, u64>>;

impl Harness {
    /// Kills, restart times and recovery work, for the summary line.
    fn restart_figures(&self) -> String {
        let s = &self.stats;
        let mut restart = s.restart.clone();
        restart.sort_unstable();
        format!(
            "{} kills ({} during startup); restart to first Metadata p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             recovery scanned {} batches in all, max {} per restart; {} torn tails truncated; batches validated on disk {}",
            s.kills,
            s.kills_during_startup,
            percentile(&restart, 0.5),
            percentile(&restart, 0.99),
            percentile(&restart, 1.0),
            s.recovery_scanned.iter().sum::<u64>(),
            s.recovery_scanned.iter().max().copied().unwrap_or(0),
            s.truncations,
            s.batches_on_disk,
        )
    }

    /// The checks after a restart in the idempotent mode, while the producer keeps sending: brook logged no
    /// ERROR; the producer raised no fatal error and lost no delivery; every record acknowledged before the
    /// high watermark was read is at its offset; offsets below it are dense and pass the CRC and brook's
    /// validation on disk; each partition holds its records in production order, each once.
    fn verify_idempotent(
        &mut self,
        brook: &Brook,
        cycle: u32,
        shared: &IdempotentShared,
        log: &mut IdempotentLog,
        full: bool,
    ) {
        let errors = brook.lines_containing(" ERROR ");
        if !errors.is_empty() {
            self.fail(cycle, "brook logged errors", &errors, brook);
        }
        if let Some(fatal) = shared.fatal.lock().expect("fatal lock").clone() {
            self.fail(
                cycle,
                "the idempotent producer raised a fatal error",
                &[fatal],
                brook,
            );
        }
        let failed = shared.failed.lock().expect("failures lock").clone();
        if !failed.is_empty() {
            self.fail(cycle, "deliveries failed", &failed, brook);
        }
        // Acknowledged before the watermarks are read: each must be below them.
        let acked = shared.acked.lock().expect("acks lock").clone();
        let hw = latest_offsets(brook.addr, 0)
            .unwrap_or_else(|e| panic!("[{}] cycle {cycle}: ListOffsets: {e}", self.mode));
        let mut bad = Vec::new();
        for (p, (now, before)) in hw.iter().zip(&self.verified_hw).enumerate() {
            if now < before {
                bad.push(format!(
                    "partition {p}: high watermark {now} is below {before}, verified after the previous restart"
                ));
            }
        }
        for (p, &high) in hw.iter().enumerate() {
            let dir = self.data_dir.join(format!("{TOPIC}-{p}"));
            let (end, batches) = walk_partition_on_disk(&dir, Some(high), &mut bad);
            self.stats.batches_on_disk += batches;
            if end.unwrap_or(0) < high {
                bad.push(format!(
                    "{TOPIC}-{p}: the log on disk ends at offset {end:?}, below the high watermark {high}"
                ));
            }
        }
        let from = if full {
            *log = vec![BTreeMap::new(); PARTITIONS as usize];
            vec![0; PARTITIONS as usize]
        } else {
            self.verified_hw.clone()
        };
        for (p, records) in read_back(brook.addr, &from, &hw, &mut bad)
            .into_iter()
            .enumerate()
        {
            log[p].extend(records.into_iter().map(|(offset, (_, seq))| (offset, seq)));
        }
        // Order and uniqueness: a partition's seqs rise with the offset (each once), and seq fixes the
        // partition, so no record is stored twice anywhere.
        for (p, records) in log.iter().enumerate() {
            let mut last: Option<(i64, u64)> = None;
            for (&offset, &seq) in records {
                if partition_of(seq) != p as i32 {
                    bad.push(format!(
                        "partition {p} offset {offset}: seq {seq} belongs to partition {}",
                        partition_of(seq)
                    ));
                }
                if let Some((o, s)) = last
                    && s >= seq
                {
                    bad.push(format!(
                        "partition {p}: seq {seq} at offset {offset} after seq {s} at offset {o}: {}",
                        if s == seq { "DUPLICATE" } else { "out of production order" }
                    ));
                    self.stats.duplicates += u64::from(s == seq);
                }
                last = Some((offset, seq));
            }
        }
        let mut verified = 0;
        for a in &acked {
            let p = a.partition as usize;
            match log[p].get(&a.offset) {
                Some(&seq) if seq == a.seq => verified += 1,
                found => {
                    bad.push(format!(
                        "LOST: seq {} acknowledged at partition {p} offset {} (high watermark {}), found seq {found:?} there",
                        a.seq, a.offset, hw[p]
                    ));
                    self.stats.lost += 1;
                }
            }
        }
        self.stats.verified = verified;
        self.stats.acked = acked.len() as u64;
        if !bad.is_empty() {
            self.fail(cycle, "verification failed", &bad, brook);
        }
        self.verified_hw = hw;
    }
}

fn run_idempotent_cycles() {
    let mode = "idempotent";
    let (mut h, _tmp, cycles, mut rng) = setup(mode, &[]);
    let port = unused_fixed_port(&mut rng);
    let listeners: &'static str =
        Box::leak(format!("PLAINTEXT://127.0.0.1:{port}").into_boxed_str());
    h.overrides.push(("listeners", listeners));
    h.fixed_port = true;
    let started = Instant::now();
    let mut brook = h.start();
    h.stats.restart.clear();
    h.stats.announce.clear();
    h.stats.recovery_scanned.clear();
    let shared = Arc::new(IdempotentShared::default());
    let producer = {
        let (addr, shared) = (brook.addr, shared.clone());
        std::thread::spawn(move || run_idempotent_producer(addr, shared))
    };
    let mut log = IdempotentLog::new();
    log.resize(PARTITIONS as usize, BTreeMap::new());
    let mut in_flight_at_kills = 0u64;
    for cycle in 0..cycles {
        // The crash comes at a random moment of the workload; sleeping is the point here.
        std::thread::sleep(Duration::from_millis(
            rng.between(KILL_DELAY_MS.0, KILL_DELAY_MS.1),
        ));
        brook.sigkill();
        h.stats.kills += 1;
        // Sent and not yet acknowledged as the kill came: the producer retries them against the next brook.
        in_flight_at_kills += shared.sent.load(Ordering::Acquire)
            - shared.acked.lock().expect("acks lock").len() as u64;
        h.maybe_kill_during_startup(&mut rng);
        brook = h.start();
        h.verify_idempotent(&brook, cycle, &shared, &mut log, false);
    }
    shared.stop.store(true, Ordering::Release);
    let delivered_all = join_within(producer, "idempotent producer").unwrap_or(false);
    h.verify_idempotent(&brook, cycles, &shared, &mut log, true);
    if !delivered_all {
        h.fail(
            cycles,
            "the producer could not deliver what it had queued once stopped with brook up",
            &[],
            &brook,
        );
    }
    // Every record sent (acknowledged or not when a kill came) is in the log once: none was dropped
    // and no retry was stored twice.
    let sent = shared.sent.load(Ordering::Acquire);
    let stored: u64 = log.iter().map(|p| p.len() as u64).sum();
    let mut present = vec![false; sent as usize];
    for &seq in log.iter().flat_map(BTreeMap::values) {
        if let Some(slot) = present.get_mut(seq as usize) {
            *slot = true;
        }
    }
    let missing: Vec<String> = (0..sent)
        .filter(|&seq| !present[seq as usize])
        .take(20)
        .map(|seq| format!("seq {seq} was sent but is not in the log"))
        .collect();
    if stored != sent || h.stats.acked != sent || !missing.is_empty() {
        h.fail(
            cycles,
            &format!(
                "sent {sent}, acknowledged {}, stored {stored}",
                h.stats.acked
            ),
            &missing,
            &brook,
        );
    }
    brook.stop();
    let s = &h.stats;
    println!(
        "[{mode}] {cycles} cycles in {:.1} s: sent {sent}, acked {}, verified at their offsets {} (final re-read), \
         stored {stored} (each once, in order), unacknowledged at a kill (retried) {in_flight_at_kills}, lost {}, \
         duplicates {}; {}",
        started.elapsed().as_secs_f64(),
        s.acked,
        s.verified,
        s.lost,
        s.duplicates,
        h.restart_figures(),
    );
    assert!(s.acked > 0, "the producer got acknowledgements");
}

#[test]
fn sigkill_loses_and_duplicates_nothing_with_the_idempotent_producer() {
    run_idempotent_cycles();
}

// ---------------------------------------------------------------------------------------------------------
// Transactional mode: a transactional producer commits and aborts transactions of random sizes across the
// partitions; after each kill a new instance with the same transactional id fences the old one.

/// Every producer incarnation uses this id: each init_transactions fences and resolves the one before.
const TXN_ID: &str = "crash-txn";
/// The longest a transactional call may take; a call the kill cut off ends its (old) producer after this.
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(5);
const TXN_MAX_RECORDS: u64 = 40;
const TXN_ABORT_ONE_IN: u64 = 3;
/// One kill in this many comes 0-4 ms after a commit_transaction call began.
const KILL_DURING_COMMIT_ONE_IN: u64 = 3;
/// How long the last stable offset may take to reach the high watermark once nothing is open (the
/// markers of a transaction that init_transactions resolved may still be on their way).
const LSO_CATCH_UP: Duration = Duration::from_secs(15);

/// Transaction `txn` is numbered (cycle << 32) | n: incarnations never share a number.
fn txn_payload(txn: u64, idx: u32) -> Vec<u8> {
    let mut out = format!("t{txn:016x}r{idx:04}:").into_bytes();
    let filler = 16 + ((txn ^ u64::from(idx)).wrapping_mul(7919) % 100) as usize;
    out.extend((0..filler).map(|i| b'a' + ((txn as usize + idx as usize + i) % 26) as u8));
    out
}

fn parse_txn_payload(bytes: &[u8]) -> Option<(u64, u32)> {
    let text = std::str::from_utf8(bytes.get(..23)?).ok()?;
    let txn = u64::from_str_radix(text.strip_prefix('t')?.get(..16)?, 16).ok()?;
    let idx = text.get(18..22)?.parse().ok()?;
    (txn_payload(txn, idx) == bytes).then_some((txn, idx))
}

/// Transaction `txn` of the run seeded `seed`: the partition of each record, and whether it is to be
/// aborted (decided before it begins).
fn txn_plan(seed: u64, txn: u64) -> (Vec<i32>, bool) {
    let mut rng = Rng(seed ^ txn.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let size = rng.between(1, TXN_MAX_RECORDS);
    let abort = rng.between(1, TXN_ABORT_ONE_IN) == 1;
    let partitions = (0..size)
        .map(|_| rng.between(0, PARTITIONS as u64 - 1) as i32)
        .collect();
    (partitions, abort)
}

/// Where a transaction got to, as its producer saw it.
#[derive(Clone, Debug)]
enum TxnOutcome {
    /// Records being sent; neither commit nor abort asked for: it can never be committed.
    Open,
    /// Its records being delivered before the commit: commit_transaction not yet called, never committed.
    Delivering,
    /// commit_transaction was called (its records all delivered) and has not returned.
    Committing,
    /// commit_transaction returned Ok.
    Committed,
    /// Its records could not all be delivered before the commit (so EndTxn was never sent): never committed.
    CommitNotSent,
    /// commit_transaction failed after its flush: either outcome, but atomically.
    CommitInDoubt,
    /// Abort asked for (and maybe done); `delivered`: every record was acknowledged first (it is in the log).
    Aborting {
        delivered: bool,
    },
    Aborted {
        delivered: bool,
    },
}

type TxnBook = Arc<Mutex<BTreeMap<u64, TxnOutcome>>>;

/// Counts the failed deliveries of a transactional producer (an abort's flush must see none to claim its
/// records are in the log).
#[derive(Default)]
struct TxnDeliveries {
    failed: AtomicU64,
}

impl ClientContext for TxnDeliveries {}

impl ProducerContext for TxnDeliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A transactional producer on `addr` with TXN_ID, initialized: an earlier instance is fenced and its open
/// transaction resolved.
fn txn_producer(addr: SocketAddr) -> Result<BaseProducer<TxnDeliveries>, KafkaError> {
    let producer: BaseProducer<TxnDeliveries> = client_config(addr)
        .set("transactional.id", TXN_ID)
        .set("transaction.timeout.ms", "10000")
        .set("linger.ms", "2")
        // A transaction's AddPartitionsToTxn meets the previous one's markers still being written
        // (CONCURRENT_TRANSACTIONS) and is retried: soon, so that many transactions fit between kills.
        .set("retry.backoff.ms", "10")
        .set("retry.backoff.max.ms", "50")
        .set("message.timeout.ms", "10000")
        .create_with_context(TxnDeliveries::default())
        .expect("create transactional producer");
    producer.init_transactions(Duration::from_secs(30))?;
    Ok(producer)
}

/// Serves delivery reports until none is outstanding (false on timeout). rust-rdkafka's own flush polls in
/// steps of 100 ms, which would cap the run at a few transactions a second.
fn drain(producer: &BaseProducer<TxnDeliveries>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        if Instant::now() > deadline {
            return false;
        }
        producer.poll(Duration::from_millis(1));
    }
    true
}

/// A transactional producer's run between two kills.
struct TxnTask {
    seed: u64,
    cycle: u32,
    book: TxnBook,
    /// Calls that failed while brook was up.
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    /// Set just before brook is killed: failures after it are expected.
    killed: Arc<AtomicBool>,
    /// Kill brook (this pid) this long after the n-th commit_transaction call began, then report on the
    /// channel: before its EndTxn is stored, between that and its markers (recovery must finish the
    /// commit), or just after.
    kill_during_commit: Option<(u64, Duration, u32, mpsc::Sender<()>)>,
}

/// Runs transactions (cycle << 32) | 0, 1, ... until `stop` or an error, recording each one's outcome in
/// `book`. An error before `killed` goes to `errors`: brook was up, nothing should have failed.
fn run_txn_producer(producer: BaseProducer<TxnDeliveries>, task: TxnTask) {
    let TxnTask {
        seed,
        cycle,
        book,
        errors,
        stop,
        killed,
        kill_during_commit,
    } = task;
    let mut commits = 0u64;
    let set = |txn: u64, outcome: TxnOutcome| {
        book.lock().expect("book lock").insert(txn, outcome);
    };
    let fail = |txn: u64, what: &str, e: &dyn std::fmt::Display| {
        if !killed.load(Ordering::Acquire) {
            errors
                .lock()
                .expect("errors lock")
                .push(format!("transaction {txn:x}: {what}: {e}"));
        }
    };
    'transactions: for n in 0u64.. {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let txn = (u64::from(cycle) << 32) | n;
        let (partitions, abort) = txn_plan(seed, txn);
        set(txn, TxnOutcome::Open);
        if let Err(e) = producer.begin_transaction() {
            fail(txn, "begin_transaction", &e);
            break;
        }
        for (idx, &partition) in partitions.iter().enumerate() {
            let value = txn_payload(txn, idx as u32);
            loop {
                match producer.send(
                    BaseRecord::<(), [u8]>::to(TOPIC)
                        .partition(partition)
                        .payload(&value),
                ) {
                    Ok(()) => break,
                    Err((
                        KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        _,
                    )) => {
                        producer.poll(Duration::from_millis(5));
                    }
                    Err((e, _)) => {
                        fail(txn, "send", &e);
                        break 'transactions;
                    }
                }
            }
            producer.poll(Duration::ZERO);
        }
        if abort {
            let failed_before = producer.context().failed.load(Ordering::Relaxed);
            let delivered = drain(&producer, TXN_CALL_TIMEOUT)
                && producer.context().failed.load(Ordering::Relaxed) == failed_before;
            set(txn, TxnOutcome::Aborting { delivered });
            if let Err(e) = producer.abort_transaction(TXN_CALL_TIMEOUT) {
                fail(txn, "abort_transaction", &e);
                break;
            }
            set(txn, TxnOutcome::Aborted { delivered });
        } else {
            set(txn, TxnOutcome::Delivering);
            if !drain(&producer, TXN_CALL_TIMEOUT) {
                set(txn, TxnOutcome::CommitNotSent);
                fail(txn, "delivering before the commit", &"timed out");
                break;
            }
            set(txn, TxnOutcome::Committing);
            commits += 1;
            if let Some((n, delay, pid, done)) = &kill_during_commit
                && commits == *n
            {
                let (delay, pid, done, killed) = (*delay, *pid, done.clone(), killed.clone());
                std::thread::spawn(move || {
                    // Sleeping is the point: the kill lands somewhere in or just after the commit.
                    std::thread::sleep(delay);
                    killed.store(true, Ordering::Release);
                    // SAFETY: kill(2) on the test's own child's pid has no memory-safety preconditions.
                    let rc = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    assert_eq!(rc, 0, "SIGKILL brook");
                    let _ = done.send(());
                });
            }
            match producer.commit_transaction(TXN_CALL_TIMEOUT) {
                Ok(()) => set(txn, TxnOutcome::Committed),
                Err(e) => {
                    fail(txn, "commit_transaction", &e);
                    set(
                        txn,
                        match &e {
                            KafkaError::Flush(_) => TxnOutcome::CommitNotSent,
                            _ => TxnOutcome::CommitInDoubt,
                        },
                    );
                    break;
                }
            }
        }
    }
}

/// The transactional mode's view of the log, per partition: offset -> (transaction, record index).
#[derive(Default)]
struct TxnView {
    /// What a read_uncommitted consumer reads: everything written.
    uncommitted: Vec<BTreeMap<i64, (u64, u32)>>,
    /// What a read_committed consumer reads.
    committed: Vec<BTreeMap<i64, (u64, u32)>>,
}

/// Figures of the transactional mode.
#[derive(Default, Debug)]
struct TxnFigures {
    committed: u64,
    aborted: u64,
    /// Transactions cut by a kill whose commit had been asked for, by what the broker made of them.
    in_doubt_visible: u64,
    in_doubt_invisible: u64,
    /// Cut before commit was asked for, or meant to be aborted and cut: never visible.
    cut_never_committed: u64,
    records_visible: u64,
    records_aborted_in_log: u64,
    lso_wait_max: Duration,
    init_after_restart: Vec<Duration>,
}

impl Harness {
    /// The checks after a restart in the transactional mode, once init_transactions resolved the previous
    /// incarnation's transaction and with nothing being written: no ERROR; no producer call failed while
    /// brook was up; the last stable offset reaches the high watermark; brook's validation passes on disk;
    /// under read_committed every record of a committed transaction is visible, once, and nothing of an
    /// aborted one; a transaction the kill cut is all visible or not at all; read_uncommitted sees the
    /// aborted records; every partition holds its records in the order they were sent, each once.
    #[allow(clippy::too_many_arguments)]
    fn verify_txn(
        &mut self,
        brook: &Brook,
        cycle: u32,
        book: &TxnBook,
        errors: &Mutex<Vec<String>>,
        view: &mut TxnView,
        figures: &mut TxnFigures,
        full: bool,
    ) {
        let logged = brook.lines_containing(" ERROR ");
        if !logged.is_empty() {
            self.fail(cycle, "brook logged errors", &logged, brook);
        }
        let failed = errors.lock().expect("errors lock").clone();
        if !failed.is_empty() {
            self.fail(
                cycle,
                "a transactional call failed while brook was up",
                &failed,
                brook,
            );
        }
        let mut bad = Vec::new();
        let waiting = Instant::now();
        let hw = loop {
            let hw = latest_offsets(brook.addr, 0)
                .unwrap_or_else(|e| panic!("[{}] cycle {cycle}: ListOffsets: {e}", self.mode));
            let lso = latest_offsets(brook.addr, 1)
                .unwrap_or_else(|e| panic!("[{}] cycle {cycle}: ListOffsets: {e}", self.mode));
            if lso == hw {
                break hw;
            }
            if waiting.elapsed() > LSO_CATCH_UP {
                self.fail(
                    cycle,
                    "with no transaction open, ListOffsets read_committed stays below the high watermark",
                    &[format!("last stable offsets {lso:?}, high watermarks {hw:?}")],
                    brook,
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        figures.lso_wait_max = figures.lso_wait_max.max(waiting.elapsed());
        for (p, (now, before)) in hw.iter().zip(&self.verified_hw).enumerate() {
            if now < before {
                bad.push(format!(
                    "partition {p}: high watermark {now} is below {before}, verified after the previous restart"
                ));
            }
        }
        for entry in std::fs::read_dir(&self.data_dir).expect("read data dir") {
            let path = entry.expect("dir entry").path();
            if !path.is_dir() {
                continue;
            }
            let (end, batches) = walk_partition_on_disk(&path, None, &mut bad);
            self.stats.batches_on_disk += batches;
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if let Some(p) = name
                .strip_prefix(&format!("{TOPIC}-"))
                .and_then(|p| p.parse::<usize>().ok())
                && end.unwrap_or(0) != hw[p]
            {
                bad.push(format!(
                    "{name}: the log on disk ends at offset {end:?}, the high watermark is {}",
                    hw[p]
                ));
            }
        }

        let from = if full {
            *view = TxnView::default();
            vec![0; PARTITIONS as usize]
        } else {
            self.verified_hw.clone()
        };
        view.uncommitted
            .resize(PARTITIONS as usize, BTreeMap::new());
        view.committed.resize(PARTITIONS as usize, BTreeMap::new());
        for (isolation, into) in [
            ("read_uncommitted", &mut view.uncommitted),
            ("read_committed", &mut view.committed),
        ] {
            for (p, offset, value) in read_to_end(brook.addr, isolation, &from, &hw, &mut bad) {
                match parse_txn_payload(&value) {
                    Some(record) => {
                        if into[p as usize].insert(offset, record).is_some() {
                            bad.push(format!("{isolation}: partition {p} offset {offset} read twice"));
                        }
                    }
                    None => bad.push(format!(
                        "{isolation}: partition {p} offset {offset}: a record no transaction sent ({} bytes)",
                        value.len()
                    )),
                }
            }
        }

        // The log: each partition's records in the order they were sent (transactions are numbered in
        // the order they ran), each once, in the partition its plan chose.
        let mut in_log: BTreeMap<u64, u64> = BTreeMap::new();
        for (p, records) in view.uncommitted.iter().enumerate() {
            let mut last: Option<(i64, (u64, u32))> = None;
            for (&offset, &(txn, idx)) in records {
                *in_log.entry(txn).or_default() += 1;
                let planned = txn_plan(self.seed, txn).0.get(idx as usize).copied();
                if planned != Some(p as i32) {
                    bad.push(format!(
                        "partition {p} offset {offset}: record {idx} of transaction {txn:x} belongs to partition {planned:?}"
                    ));
                }
                if let Some((o, prev)) = last
                    && prev >= (txn, idx)
                {
                    bad.push(format!(
                        "partition {p}: record {idx} of transaction {txn:x} at offset {offset} after record {} of \
                         transaction {:x} at offset {o}: {}",
                        prev.1,
                        prev.0,
                        if prev == (txn, idx) { "DUPLICATE" } else { "out of order" }
                    ));
                    self.stats.duplicates += u64::from(prev == (txn, idx));
                }
                last = Some((offset, (txn, idx)));
            }
        }
        let mut visible: BTreeMap<u64, u64> = BTreeMap::new();
        for (p, records) in view.committed.iter().enumerate() {
            for (offset, record) in records {
                *visible.entry(record.0).or_default() += 1;
                if view.uncommitted[p].get(offset) != Some(record) {
                    bad.push(format!(
                        "partition {p} offset {offset}: read_committed reads {record:?}, read_uncommitted {:?}",
                        view.uncommitted[p].get(offset)
                    ));
                }
            }
        }

        let book = book.lock().expect("book lock").clone();
        for txn in in_log.keys() {
            if !book.contains_key(txn) {
                bad.push(format!(
                    "records of transaction {txn:x}, which no producer began"
                ));
            }
        }
        let mut f = TxnFigures::default();
        for (&txn, outcome) in &book {
            let (partitions, abort) = txn_plan(self.seed, txn);
            let size = partitions.len() as u64;
            let seen = visible.get(&txn).copied().unwrap_or(0);
            let stored = in_log.get(&txn).copied().unwrap_or(0);
            let what = format!(
                "transaction {txn:x} ({size} records, {}, {outcome:?}): {seen} visible under read_committed, \
                 {stored} in the log",
                if abort { "to abort" } else { "to commit" }
            );
            if abort {
                let delivered = matches!(
                    outcome,
                    TxnOutcome::Aborting { delivered: true }
                        | TxnOutcome::Aborted { delivered: true }
                );
                if seen != 0 {
                    bad.push(format!("ABORTED DATA VISIBLE: {what}"));
                } else if delivered && stored != size {
                    bad.push(format!(
                        "read_uncommitted misses acknowledged records of an aborted transaction: {what}"
                    ));
                }
                match outcome {
                    TxnOutcome::Aborted { .. } => f.aborted += 1,
                    _ => f.cut_never_committed += 1,
                }
                f.records_aborted_in_log += stored;
                continue;
            }
            match outcome {
                TxnOutcome::Committed => {
                    f.committed += 1;
                    if seen != size {
                        bad.push(format!("COMMITTED TRANSACTION NOT FULLY VISIBLE: {what}"));
                    }
                }
                TxnOutcome::Open | TxnOutcome::Delivering | TxnOutcome::CommitNotSent => {
                    f.cut_never_committed += 1;
                    if seen != 0 {
                        bad.push(format!("NEVER COMMITTED, YET VISIBLE: {what}"));
                    }
                }
                TxnOutcome::Committing | TxnOutcome::CommitInDoubt => {
                    if seen == size {
                        f.in_doubt_visible += 1;
                    } else if seen == 0 {
                        f.in_doubt_invisible += 1;
                    } else {
                        bad.push(format!("NOT ATOMIC: {what}"));
                    }
                }
                TxnOutcome::Aborting { .. } | TxnOutcome::Aborted { .. } => {
                    bad.push(format!("a transaction to commit was aborted: {what}"))
                }
            }
            if seen > stored {
                bad.push(format!("more visible than stored: {what}"));
            }
            f.records_visible += seen;
        }
        if !bad.is_empty() {
            self.fail(cycle, "verification failed", &bad, brook);
        }
        f.lso_wait_max = figures.lso_wait_max;
        f.init_after_restart = std::mem::take(&mut figures.init_after_restart);
        *figures = f;
        self.verified_hw = hw;
    }
}

fn run_txn_cycles() {
    let mode = "transactional";
    let (mut h, _tmp, cycles, mut rng) = setup(
        mode,
        &[
            ("transaction.state.log.num.partitions", "4"),
            ("transaction.state.log.replication.factor", "1"),
        ],
    );
    let started = Instant::now();
    let mut brook = h.start();
    h.stats.restart.clear();
    h.stats.announce.clear();
    h.stats.recovery_scanned.clear();
    let book = TxnBook::default();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut view = TxnView::default();
    let mut figures = TxnFigures::default();
    let mut init_after_restart = Vec::new();
    // Producers the kill cut off; they end once their call times out and are joined at the end.
    let mut cut_off = Vec::new();
    let mut kills_during_commit = 0u64;
    let mut prepared_commits_completed = 0u64;
    let mut producer =
        txn_producer(brook.addr).unwrap_or_else(|e| panic!("[{mode}] init_transactions: {e}"));
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let killed = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = mpsc::channel();
        let kill_during_commit = (rng.between(1, KILL_DURING_COMMIT_ONE_IN) == 1).then(|| {
            (
                rng.between(1, 50),
                Duration::from_micros(rng.between(0, 4000)),
                brook.child.id(),
                done_tx,
            )
        });
        let by_producer = kill_during_commit.is_some();
        let task = TxnTask {
            seed: h.seed,
            cycle,
            book: book.clone(),
            errors: errors.clone(),
            stop: stop.clone(),
            killed: killed.clone(),
            kill_during_commit,
        };
        let thread = std::thread::spawn(move || run_txn_producer(producer, task));
        if by_producer {
            // The producer has brook killed during one of its commits.
            done.recv_timeout(DEADLINE).unwrap_or_else(|_| {
                let failed = errors.lock().expect("errors lock").clone();
                h.fail(
                    cycle,
                    "the producer did not reach its commits",
                    &failed,
                    &brook,
                )
            });
            kills_during_commit += 1;
        } else {
            // The crash comes at a random moment of the workload; sleeping is the point here.
            std::thread::sleep(Duration::from_millis(
                rng.between(KILL_DELAY_MS.0, KILL_DELAY_MS.1),
            ));
            killed.store(true, Ordering::Release);
        }
        brook.sigkill();
        stop.store(true, Ordering::Release);
        h.stats.kills += 1;
        cut_off.push(thread);
        h.maybe_kill_during_startup(&mut rng);
        brook = h.start();
        let init = Instant::now();
        producer = txn_producer(brook.addr).unwrap_or_else(|e| {
            h.fail(
                cycle,
                "init_transactions after the restart",
                &[e.to_string()],
                &brook,
            )
        });
        init_after_restart.push(init.elapsed());
        h.verify_txn(
            &brook,
            cycle,
            &book,
            &errors,
            &mut view,
            &mut figures,
            false,
        );
        // A commit whose EndTxn was stored but whose markers the kill stopped: finished by recovery.
        prepared_commits_completed += brook
            .lines_containing("completing a transaction found prepared on load")
            .iter()
            .filter(|l| l.contains("PrepareCommit"))
            .count() as u64;
    }
    h.verify_txn(
        &brook,
        cycles,
        &book,
        &errors,
        &mut view,
        &mut figures,
        true,
    );
    drop(producer);
    brook.stop();
    for thread in cut_off {
        join_within(thread, "a cut-off transactional producer");
    }
    init_after_restart.sort_unstable();
    let f = &figures;
    println!(
        "[{mode}] {cycles} cycles in {:.1} s: transactions committed {} (all visible, once), aborted {} (none \
         visible; {} records in the log), cut by a kill after commit was asked {} (visible {}, invisible {}), cut \
         before {} (none visible); records visible {}; duplicates {}; init_transactions after a restart p50 {:.1} ms, \
         max {:.1} ms; last stable offset caught up within {:?}; {kills_during_commit} kills 0-4 ms into a \
         commit_transaction; {prepared_commits_completed} commits found prepared at a restart and completed; {}",
        started.elapsed().as_secs_f64(),
        f.committed,
        f.aborted,
        f.records_aborted_in_log,
        f.in_doubt_visible + f.in_doubt_invisible,
        f.in_doubt_visible,
        f.in_doubt_invisible,
        f.cut_never_committed,
        f.records_visible,
        h.stats.duplicates,
        percentile(&init_after_restart, 0.5),
        percentile(&init_after_restart, 1.0),
        f.lso_wait_max,
        h.restart_figures(),
    );
    assert!(
        f.committed > 0 && f.aborted > 0,
        "transactions were committed and aborted"
    );
}

#[test]
fn sigkill_keeps_transactions_atomic_and_aborted_data_invisible() {
    run_txn_cycles();
}

// ---------------------------------------------------------------------------------------------------------
// A partition that cannot be loaded.

/// Produce (acks=-1) of one record to `topic`/`partition`: (error code, base offset).
fn produce_one(addr: SocketAddr, topic: &str, partition: i32, value: &str) -> (i16, i64) {
    use kafka_protocol::messages::ProduceResponse;
    let request = raw::produce_request(topic, partition, raw::indexed_batch(&[value], false));
    let response: ProduceResponse =
        raw::try_request(addr, ApiKey::Produce, 9, &request).expect("Produce");
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Fetch from offset 0 of `topic`/`partition`: (error code, high watermark, bytes of records).
fn fetch_from_start(addr: SocketAddr, topic: &str, partition: i32) -> (i16, i64, usize) {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse};
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let response: FetchResponse =
        raw::try_request(addr, ApiKey::Fetch, 12, &request).expect("Fetch");
    let p = &response.responses[0].partitions[0];
    (
        p.error_code,
        p.high_watermark,
        p.records.as_ref().map_or(0, Bytes::len),
    )
}

/// Full Metadata of one partition: (error code, leader, offline replicas).
fn partition_metadata(addr: SocketAddr, topic: &str, partition: i32) -> (i16, i32, Vec<i32>) {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]));
    let response: MetadataResponse =
        raw::try_request(addr, ApiKey::Metadata, 12, &request).expect("Metadata");
    let p = response.topics[0]
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)
        .expect("the partition is listed");
    (
        p.error_code,
        p.leader_id.0,
        p.offline_replicas.iter().map(|b| b.0).collect(),
    )
}

/// One partition's log cannot be opened at start (its segment file became a directory) and another's
/// leader-epoch-checkpoint is garbage: brook starts, logs exactly one ERROR line naming the broken partition
/// and why, reports it without a leader in Metadata, answers Produce and Fetch for it with
/// KAFKA_STORAGE_ERROR, and serves the other partitions, the one with the bad checkpoint included.
#[test]
fn unloadable_partition_is_offline_and_the_rest_serve() {
    const LEADER_NOT_AVAILABLE: i16 = 5;
    let topic = "damaged";
    let tmp = tempfile::tempdir().expect("temp dir");
    let data_dir = tmp.path().join("data");
    let overrides = [("num.partitions", "3")];
    let brook = Brook::spawn(&data_dir, &overrides);
    let deadline = Instant::now() + DEADLINE;
    while !metadata_of(brook.addr, topic, true)
        .is_ok_and(|p| p.len() == 3 && p.iter().all(|&(_, e, _)| e == 0))
    {
        assert!(Instant::now() < deadline, "topic {topic} not created");
        std::thread::sleep(Duration::from_millis(10));
    }
    for p in 0..3 {
        for i in 0..3 {
            assert_eq!(
                produce_one(brook.addr, topic, p, &format!("before-{i}")),
                (0, i64::from(i))
            );
        }
    }
    brook.sigkill();

    let broken = data_dir.join(format!("{topic}-1"));
    let segment = broken.join("00000000000000000000.log");
    std::fs::remove_file(&segment).expect("remove segment");
    std::fs::create_dir(&segment).expect("a directory where the segment was");
    std::fs::write(
        data_dir
            .join(format!("{topic}-2"))
            .join("leader-epoch-checkpoint"),
        b"\x00garbage\n-7\n",
    )
    .expect("damage the leader epoch checkpoint");

    let brook = Brook::spawn(&data_dir, &overrides);
    let (error, leader, offline) = partition_metadata(brook.addr, topic, 1);
    assert_eq!(
        (error, leader, offline),
        (LEADER_NOT_AVAILABLE, -1, vec![BROOK_NODE_ID]),
        "Metadata shows the broken partition without a leader, its replica offline"
    );
    let errors = brook.lines_containing(" ERROR ");
    assert_eq!(
        errors.len(),
        1,
        "exactly one ERROR line:\n{}",
        brook.output()
    );
    assert!(
        errors[0].contains(&format!("{topic}-1")) && errors[0].contains("00000000000000000000.log"),
        "the line names the partition and the cause: {}",
        errors[0]
    );
    assert_eq!(
        produce_one(brook.addr, topic, 1, "after").0,
        KAFKA_STORAGE_ERROR,
        "Produce to the broken partition"
    );
    assert_eq!(
        fetch_from_start(brook.addr, topic, 1).0,
        KAFKA_STORAGE_ERROR,
        "Fetch from the broken partition"
    );

    for p in [0, 2] {
        assert_eq!(
            partition_metadata(brook.addr, topic, p),
            (0, BROOK_NODE_ID, vec![]),
            "partition {p} online"
        );
        let (error, hw, bytes) = fetch_from_start(brook.addr, topic, p);
        assert_eq!((error, hw), (0, 3), "partition {p} keeps its records");
        assert!(bytes > 0);
        assert_eq!(
            produce_one(brook.addr, topic, p, "after"),
            (0, 3),
            "partition {p} takes new records"
        );
    }
    assert_eq!(
        brook.lines_containing(" ERROR ").len(),
        1,
        "requests for the broken partition log nothing more"
    );
    brook.stop();
}
