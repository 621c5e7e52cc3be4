//! Durable produce against the disk's own fsync rate, in one run on the same filesystem.
//!
//! (a) Baseline: one writer appending 1 KiB and calling fdatasync, in a loop: the rate at which a single
//!     writer can make data durable, and its latency.
//! (b) brook with `log.flush.interval.messages=1` (an acknowledgment means the data was fsynced), one topic
//!     of 16 partitions, rdkafka producers with acks=all, each keeping many 1 KiB records in flight: acked
//!     records/s, produce requests/s (from librdkafka's statistics), group commits/s and partitions fsynced
//!     per commit (brook's counters), ack latency, and the device's flush requests/s (from /sys; machine-wide,
//!     and a virtual disk may complete fsyncs without a device flush).
//!
//! The ratios of (b)'s produce requests/s and records/s to (a)'s fsync rate show how well group commit
//! shares fsyncs among partitions and producers.
//!
//! Run with `cargo bench --bench durable`. Settings (environment): BROOK_BENCH_SECS (measured seconds per
//! phase, default 10), BROOK_BENCH_PRODUCERS (default 4), BROOK_BENCH_IN_FLIGHT (records each producer keeps
//! outstanding, default 128), BROOK_BENCH_PARTITIONS (default 16).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brook::log::manager::{group_commit_flushes_total, group_commits_total};
use brook::{Broker, Config};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;

const RECORD_BYTES: usize = 1024;
const WARM_UP: Duration = Duration::from_secs(2);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Completed flush requests of the block device holding `path` (field 16 of its `stat`), when the kernel
/// reports them.
fn device_flushes(path: &Path) -> Option<u64> {
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let stat = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/stat")).ok()?;
    stat.split_whitespace().nth(15)?.parse().ok()
}

/// Rate of device flushes over `elapsed`, as text ("n/a" when not observable).
fn flush_rate(before: Option<u64>, after: Option<u64>, elapsed: Duration) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!(
            "{:.0}/s",
            a.saturating_sub(b) as f64 / elapsed.as_secs_f64()
        ),
        _ => "n/a".into(),
    }
}

/// Result of the single-writer baseline.
struct FsyncBaseline {
    ops_per_sec: f64,
}

/// (a) 1 KiB append + fdatasync in a loop for `secs`.
fn single_writer_fsync(dir: &Path, secs: Duration) -> FsyncBaseline {
    let path = dir.join("fsync-baseline.bin");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open the baseline file");
    let block = vec![0x5au8; RECORD_BYTES];
    // Warm-up: allocate the file's first blocks and settle the journal.
    for _ in 0..20 {
        file.write_all(&block).expect("write");
        file.sync_data().expect("fdatasync");
    }
    let mut samples = Vec::new();
    let flushes_before = device_flushes(dir);
    let started = Instant::now();
    while started.elapsed() < secs {
        let t = Instant::now();
        file.write_all(&block).expect("write");
        file.sync_data().expect("fdatasync");
        samples.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    let flushes = flush_rate(flushes_before, device_flushes(dir), elapsed);
    samples.sort();
    let ops_per_sec = samples.len() as f64 / elapsed.as_secs_f64();
    println!(
        "(a) single writer, 1 KiB write + fdatasync: {} ops in {:.1} s = {:.0} fsyncs/s; latency p50 {:.2} ms p99 {:.2} ms; device flushes {flushes}",
        samples.len(),
        elapsed.as_secs_f64(),
        ops_per_sec,
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.99)),
    );
    drop(file);
    let _ = std::fs::remove_file(path);
    FsyncBaseline { ops_per_sec }
}

/// Keeps the latest (timestamp µs, produce requests sent) from librdkafka's statistics.
#[derive(Clone, Default)]
struct StatsContext {
    latest: Arc<Mutex<Option<(i64, i64)>>>,
}

impl ClientContext for StatsContext {
    fn stats(&self, statistics: Statistics) {
        let produce: i64 = statistics
            .brokers
            .values()
            .filter_map(|b| b.req.get("Produce"))
            .sum();
        *self
            .latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((statistics.ts, produce));
    }
}

impl StatsContext {
    fn latest(&self) -> Option<(i64, i64)> {
        *self
            .latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What one sender observed inside the measured window.
#[derive(Default)]
struct SenderResult {
    latencies: Vec<Duration>,
    errors: u64,
}

/// (b) brook with log.flush.interval.messages=1, closed-loop producers with acks=all.
async fn durable_produce(data_dir: PathBuf, secs: Duration, baseline: &FsyncBaseline) {
    let producers = env_or("BROOK_BENCH_PRODUCERS", 4) as usize;
    let in_flight = env_or("BROOK_BENCH_IN_FLIGHT", 128) as usize;
    let partitions = env_or("BROOK_BENCH_PARTITIONS", 16) as i32;

    let mut config = Config::new();
    for (key, value) in [
        ("listeners", "PLAINTEXT://127.0.0.1:0"),
        ("log.dirs", data_dir.to_str().expect("UTF-8 temp path")),
        ("log.flush.interval.messages", "1"),
    ] {
        config.set(key, value).expect("valid property");
    }
    let broker = Broker::start(config).await.expect("broker starts");
    let bootstrap = broker.bootstrap_servers();
    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", &bootstrap)
        .set("broker.address.family", "v4");

    let topic = "durable-bench";
    let admin: AdminClient<DefaultClientContext> = base.create().expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("CreateTopics");
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");

    let payload: Arc<[u8]> = vec![0x42u8; RECORD_BYTES].into();
    let stop = Arc::new(AtomicBool::new(false));
    let window_start = Instant::now() + WARM_UP;
    let window_end = window_start + secs;
    let mut contexts = Vec::new();
    let mut senders = tokio::task::JoinSet::new();
    for p in 0..producers {
        let context = StatsContext::default();
        let producer: FutureProducer<StatsContext> = base
            .clone()
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", "60000")
            .set("statistics.interval.ms", "500")
            .create_with_context(context.clone())
            .expect("producer");
        contexts.push(context);
        for s in 0..in_flight {
            let producer = producer.clone();
            let payload = payload.clone();
            let stop = stop.clone();
            let partition = ((p * in_flight + s) % partitions as usize) as i32;
            senders.spawn(async move {
                let mut result = SenderResult::default();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let delivered = producer
                        .send(
                            FutureRecord::<(), [u8]>::to(topic)
                                .partition(partition)
                                .payload(&payload[..]),
                            Duration::from_secs(60),
                        )
                        .await;
                    let done = Instant::now();
                    if sent >= window_start && done <= window_end {
                        match delivered {
                            Ok(_) => result.latencies.push(done - sent),
                            Err(_) => result.errors += 1,
                        }
                    }
                }
                result
            });
        }
    }

    tokio::time::sleep_until(window_start.into()).await;
    let stats_start: Vec<_> = contexts.iter().map(StatsContext::latest).collect();
    let flushes_before = device_flushes(&data_dir);
    let commits_before = group_commits_total();
    let partition_flushes_before = group_commit_flushes_total();
    tokio::time::sleep_until(window_end.into()).await;
    let commits = group_commits_total() - commits_before;
    let partition_flushes = group_commit_flushes_total() - partition_flushes_before;
    let flushes_after = device_flushes(&data_dir);
    let stats_end: Vec<_> = contexts.iter().map(StatsContext::latest).collect();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(done) = senders.join_next().await {
        let result = done.expect("sender task");
        latencies.extend(result.latencies);
        errors += result.errors;
    }
    latencies.sort();

    // Produce requests/s from each producer's statistics snapshots nearest the window's ends.
    let mut requests_per_sec = 0.0;
    let mut observed = true;
    for (start, end) in stats_start.iter().zip(&stats_end) {
        match (start, end) {
            (Some((t0, r0)), Some((t1, r1))) if t1 > t0 => {
                requests_per_sec += (r1 - r0) as f64 / ((t1 - t0) as f64 / 1e6);
            }
            _ => observed = false,
        }
    }
    let records_per_sec = latencies.len() as f64 / secs.as_secs_f64();
    println!(
        "(b) brook, log.flush.interval.messages=1, {partitions} partitions, {producers} producers x {in_flight} records in flight, acks=all, {RECORD_BYTES} B records:"
    );
    println!(
        "    {} records acked in {:.1} s = {:.0} records/s ({:.1} MB/s); {errors} errors",
        latencies.len(),
        secs.as_secs_f64(),
        records_per_sec,
        records_per_sec * RECORD_BYTES as f64 / 1e6
    );
    if observed {
        println!(
            "    {:.0} produce requests/s ({:.1} records per request)",
            requests_per_sec,
            records_per_sec / requests_per_sec.max(1e-9)
        );
    } else {
        println!("    produce requests/s: not observed (no statistics from a producer)");
    }
    println!(
        "    {:.0} group commits/s, {:.1} partitions fsynced per commit ({:.0} partition fsyncs/s), {:.1} records per commit",
        commits as f64 / secs.as_secs_f64(),
        partition_flushes as f64 / commits.max(1) as f64,
        partition_flushes as f64 / secs.as_secs_f64(),
        latencies.len() as f64 / commits.max(1) as f64
    );
    println!(
        "    ack latency p50 {:.2} ms p99 {:.2} ms; device flushes {}",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        flush_rate(flushes_before, flushes_after, secs)
    );
    let fsyncs = baseline.ops_per_sec.max(1e-9);
    if observed {
        println!(
            "ratio to the single-writer fsync rate: produce requests/s {:.1}x, records/s {:.1}x",
            requests_per_sec / fsyncs,
            records_per_sec / fsyncs
        );
    } else {
        println!(
            "ratio to the single-writer fsync rate: records/s {:.1}x",
            records_per_sec / fsyncs
        );
    }
    broker.shutdown().await.expect("clean shutdown");
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful. Either way run.
    let secs = Duration::from_secs(env_or("BROOK_BENCH_SECS", 10).max(1));
    let tmp = tempfile::tempdir().expect("temp dir");
    let baseline = single_writer_fsync(tmp.path(), secs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(durable_produce(tmp.path().join("data"), secs, &baseline));
}
