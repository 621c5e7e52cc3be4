//! The six workloads of issue 7. Each creates its own topics (named with a run id so two runs never mix),
//! measures, deletes them, and returns what a user of the broker would see: records/s, MB/s, latency
//! percentiles, RSS, start-up time.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use rdkafka::Message;

use crate::clients::{self, DEADLINE};
use crate::cpu::{CpuClock, CpuUse};
use crate::limits::MB;
use crate::opts::Options;

/// What one workload measured on one broker.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub records_per_s: Option<f64>,
    pub mb_per_s: Option<f64>,
    pub latency: Option<Latency>,
    /// Cores used by the client and (in-process) the broker while the figure was measured.
    pub cpu: Option<CpuUse>,
    /// The figure the target is about, in the unit of the row's [`crate::report::Kind`].
    pub headline: f64,
    /// Anything a reader needs to interpret the figure (records moved, time taken).
    pub note: String,
}

/// End-to-end latency percentiles in milliseconds, and the percentile curve for the plot.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// (quantile, latency ms) points, from HdrHistogram's quantile iteration.
    pub curve: Vec<(f64, f64)>,
}

fn topic_name(run_id: &str, what: &str) -> String {
    format!("brook-bench-{run_id}-{what}")
}

fn throughput(run: clients::ProduceRun, note: &str) -> Measured {
    Measured {
        records_per_s: Some(run.records as f64 / run.secs),
        mb_per_s: Some(run.bytes as f64 / MB / run.secs),
        latency: None,
        cpu: Some(run.cpu),
        headline: 0.0,
        note: format!("{} records in {:.2} s; {note}", run.records, run.secs),
    }
}

/// Creates a topic, runs one timed produce phase on it, deletes it.
fn produce_workload(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    topic_configs: &[(&str, &str)],
    producer_configs: &[(&str, &str)],
    record_bytes: usize,
    time: Duration,
) -> anyhow::Result<clients::ProduceRun> {
    clients::create_topic(bootstrap, topic, partitions, topic_configs)?;
    let result = clients::producer(bootstrap, producer_configs)
        .and_then(|p| clients::produce_for(&p, topic, record_bytes, time, u64::MAX));
    clients::delete_topic(bootstrap, topic);
    result
}

/// Workload 1: 100-byte records, 4 partitions, acks=1, linger 5 ms, one producer. Headline: records/s.
pub fn produce_small(bootstrap: &str, run_id: &str, o: &Options) -> anyhow::Result<Measured> {
    let run = produce_workload(
        bootstrap,
        &topic_name(run_id, "w1"),
        4,
        &[],
        &[("acks", "1"), ("linger.ms", "5")],
        100,
        o.produce_time,
    )?;
    let mut m = throughput(run, "keyless (sticky partitioner)");
    m.headline = m.records_per_s.unwrap_or(0.0);
    Ok(m)
}

/// Workload 2: 1 KiB records, 16 partitions, with the given acks. Headline: MB/s.
pub fn produce_1k(
    bootstrap: &str,
    run_id: &str,
    o: &Options,
    acks: &str,
) -> anyhow::Result<Measured> {
    let what = if acks == "1" {
        "w2-acks1"
    } else {
        "w2-acksall"
    };
    let run = produce_workload(
        bootstrap,
        &topic_name(run_id, what),
        16,
        &[],
        &[("acks", acks), ("linger.ms", "5")],
        1024,
        o.produce_time,
    )?;
    let mut m = throughput(run, "linger 5 ms");
    m.headline = m.mb_per_s.unwrap_or(0.0);
    Ok(m)
}

/// Workload 5: acks=all on 16 partitions whose topic has flush.messages=1 (fsync before the
/// acknowledgment), 1 KiB records. Headline: records/s, compared with one writer's fsync rate.
pub fn produce_durable(bootstrap: &str, run_id: &str, o: &Options) -> anyhow::Result<Measured> {
    let run = produce_workload(
        bootstrap,
        &topic_name(run_id, "w5"),
        16,
        &[("flush.messages", "1")],
        &[("acks", "all"), ("linger.ms", "5")],
        1024,
        o.produce_time,
    )?;
    let mut m = throughput(run, "topic flush.messages=1, linger 5 ms");
    m.headline = m.records_per_s.unwrap_or(0.0);
    Ok(m)
}

/// Workload 3: fills a 4-partition topic with `consume_bytes` of records (acks=1), then one consumer reads
/// it all from offset 0 while it is still in the page cache. Headline: MB/s of record values received.
pub fn consume_backlog(bootstrap: &str, run_id: &str, o: &Options) -> anyhow::Result<Measured> {
    let topic = topic_name(run_id, "w3");
    let partitions = 4;
    clients::create_topic(bootstrap, &topic, partitions, &[])?;
    let result = (|| {
        let records = (o.consume_bytes / o.consume_record_bytes as u64).max(1);
        let producer = clients::producer(
            bootstrap,
            &[("acks", "1"), ("linger.ms", "5"), ("batch.size", "1000000")],
        )?;
        // produce_for's 1,000 warm-up records are part of the backlog too.
        let fill = clients::produce_for(
            &producer,
            &topic,
            o.consume_record_bytes,
            Duration::from_secs(3600),
            records.saturating_sub(1000),
        )?;
        drop(producer);
        let expected = fill.records + 1000;
        let consumer = clients::consumer(
            bootstrap,
            &[
                ("fetch.wait.max.ms", "100"),
                ("queued.max.messages.kbytes", "262144"),
                // Past queued.min.messages (100,000) buffered records a partition's next fetch waits
                // fetch.queue.backoff.ms, 1 s by default: whenever the consuming thread fell that far
                // behind, a partition stalled for a second of a 2-second run.
                ("fetch.queue.backoff.ms", "10"),
            ],
        )?;
        let assigned = Instant::now();
        clients::assign_from_start(&consumer, &topic, partitions)?;
        let deadline = assigned + DEADLINE;
        // The clock runs from the first record to the last: the client's start (metadata, offset
        // lookups) is reported apart, as time to first record.
        let mut first: Option<(Instant, u64, CpuClock)> = None;
        let (mut got, mut bytes) = (0u64, 0u64);
        while got < expected {
            if Instant::now() > deadline {
                bail!("consumed {got} of {expected} records before the deadline");
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    got += 1;
                    bytes += m.payload_len() as u64;
                    if first.is_none() {
                        first = Some((Instant::now(), bytes, CpuClock::now()));
                    }
                }
                Some(Err(e)) => bail!("consume: {e}"),
                None => {}
            }
        }
        let (first_at, first_bytes, cpu) = first.context("no record consumed")?;
        let cpu = cpu.since();
        let secs = first_at.elapsed().as_secs_f64().max(1e-6);
        let timed_bytes = bytes - first_bytes;
        let mb_s = timed_bytes as f64 / MB / secs;
        Ok(Measured {
            records_per_s: Some((got - 1) as f64 / secs),
            mb_per_s: Some(mb_s),
            latency: None,
            cpu: Some(cpu),
            headline: mb_s,
            note: format!(
                "{got} records ({:.0} MB) of {} B read in {secs:.2} s after a first record at {:.0} ms \
                 (filled at {:.0} MB/s)",
                bytes as f64 / MB,
                o.consume_record_bytes,
                first_at.duration_since(assigned).as_secs_f64() * 1e3,
                fill.bytes as f64 / MB / fill.secs
            ),
        })
    })();
    clients::delete_topic(bootstrap, &topic);
    result
}

/// Workload 4: one producer paced at `latency_rate` records/s of 1 KiB (linger 0, acks=1) and one
/// consumer (fetch.wait.max.ms 100: a long poll the broker must answer as soon as data arrives). Each
/// record carries the time it was due to be sent, so a stalled producer shows up as latency
/// (no coordinated omission); the consumer records receipt minus that time. Headline: p99 in ms.
pub fn latency(bootstrap: &str, run_id: &str, o: &Options) -> anyhow::Result<Measured> {
    let topic = topic_name(run_id, "w4");
    let partitions = 4;
    clients::create_topic(bootstrap, &topic, partitions, &[])?;
    let result = latency_run(bootstrap, &topic, partitions, o);
    clients::delete_topic(bootstrap, &topic);
    result
}

const STAMP: usize = 9;

fn latency_run(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    o: &Options,
) -> anyhow::Result<Measured> {
    let warmup = (o.latency_time / 5).max(Duration::from_millis(200));
    let interval = Duration::from_secs_f64(1.0 / o.latency_rate as f64);
    let warm_n = (warmup.as_secs_f64() * o.latency_rate as f64).ceil() as u64;
    let timed_n = (o.latency_time.as_secs_f64() * o.latency_rate as f64).ceil() as u64;
    let total = warm_n + timed_n;

    let consumer = clients::consumer(
        bootstrap,
        &[("fetch.wait.max.ms", "100"), ("fetch.min.bytes", "1")],
    )?;
    clients::assign_from_start(&consumer, topic, partitions)?;
    let producer = clients::producer(bootstrap, &[("acks", "1"), ("linger.ms", "0")])?;
    // Connections and metadata before the clock: one record per partition, received by the consumer.
    let epoch = Instant::now();
    let warm_payload = vec![0u8; 1024];
    for p in 0..partitions {
        clients::send(&producer, topic, Some(p), &warm_payload)?;
    }
    clients::flush(&producer)?;
    let mut primed = 0;
    let deadline = Instant::now() + DEADLINE;
    while primed < partitions {
        if Instant::now() > deadline {
            bail!("consumer never received the priming records");
        }
        if let Some(r) = consumer.poll(Duration::from_millis(100)) {
            r.context("consume priming record")?;
            primed += 1;
        }
    }

    let failed = Arc::new(AtomicBool::new(false));
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram bounds")?,
    ));
    let consumer_thread = {
        let failed = failed.clone();
        let histogram = histogram.clone();
        std::thread::spawn(move || -> anyhow::Result<u64> {
            let mut received = 0u64;
            let mut local =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram bounds")?;
            let deadline = Instant::now() + DEADLINE;
            while received < total {
                if Instant::now() > deadline || failed.load(Ordering::Relaxed) {
                    bail!("received {received} of {total} records");
                }
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        let now = epoch.elapsed().as_nanos() as u64;
                        received += 1;
                        let Some(p) = m.payload().filter(|p| p.len() >= STAMP) else {
                            continue;
                        };
                        let mut due = [0u8; 8];
                        due.copy_from_slice(&p[..8]);
                        let due = u64::from_le_bytes(due);
                        if p[8] == 1 {
                            let micros = now.saturating_sub(due) / 1000;
                            local.saturating_record(micros.max(1));
                        }
                    }
                    Some(Err(e)) => bail!("consume: {e}"),
                    None => {}
                }
            }
            if let Ok(mut h) = histogram.lock() {
                h.add(&local).context("merge histogram")?;
            }
            Ok(received)
        })
    };

    let mut payload = clients::payload(1024);
    // How late the load generator itself sends (starved of CPU, sleep overshoot): part of the
    // latency above, reported apart so a reader can tell the generator's share from the broker's.
    let mut lag =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram bounds")?;
    let start = Instant::now();
    let mut produced = 0u64;
    let produce = (|| -> anyhow::Result<()> {
        while produced < total {
            let due = start + interval.mul_f64(produced as f64);
            let now = Instant::now();
            if now < due {
                producer.poll(Duration::ZERO);
                // Sleep to the due time; the scheduler's slack is part of what the run measures.
                std::thread::sleep(due - now);
                continue;
            }
            let due_nanos = due.duration_since(epoch).as_nanos() as u64;
            payload[..8].copy_from_slice(&due_nanos.to_le_bytes());
            payload[8] = u8::from(produced >= warm_n);
            clients::send(&producer, topic, None, &payload)?;
            if produced >= warm_n {
                lag.saturating_record((now.duration_since(due).as_micros() as u64).max(1));
            }
            produced += 1;
        }
        clients::flush(&producer)
    })();
    if produce.is_err() {
        failed.store(true, Ordering::Relaxed);
    }
    let consumed = consumer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("latency consumer thread panicked"))?;
    produce?;
    consumed?;
    let send_secs = start.elapsed().as_secs_f64();
    let h = histogram
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram lock poisoned"))?;
    let ms = |micros: u64| micros as f64 / 1000.0;
    let curve = h
        .iter_quantiles(4)
        .map(|v| (v.quantile_iterated_to(), ms(v.value_iterated_to())))
        .collect();
    let lat = Latency {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.50)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        curve,
    };
    Ok(Measured {
        records_per_s: Some(timed_n as f64 / o.latency_time.as_secs_f64()),
        mb_per_s: Some(timed_n as f64 * 1024.0 / MB / o.latency_time.as_secs_f64()),
        cpu: None,
        headline: lat.p99,
        note: format!(
            "{} timed records after a {:.1} s warm-up, max {:.2} ms; the producer itself sent \
             behind schedule by p50 {:.2} / p99 {:.2} ms (counted in the latency); whole run \
             {send_secs:.1} s",
            lat.count,
            warmup.as_secs_f64(),
            lat.max,
            ms(lag.value_at_quantile(0.5)),
            ms(lag.value_at_quantile(0.99)),
        ),
        latency: Some(lat),
    })
}

/// Workload 6's three figures, measured on a spawned brook binary.
#[derive(Debug, Clone)]
pub struct ManyPartitions {
    /// RSS of a freshly started broker after one metadata round trip.
    pub idle_rss_mb: f64,
    /// RSS after creating the partitions and writing one record to each.
    pub loaded_rss_mb: f64,
    /// Process spawn until the listener accepts, on a clean restart with the partitions on disk.
    pub restart_ms: f64,
    /// RSS right after that restart.
    pub restarted_rss_mb: f64,
    /// Start-up of the same binary on an empty data directory, for reference.
    pub empty_start_ms: f64,
}

/// A spawned brook that is killed if the bench stops early.
pub struct Spawned(pub Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Resident set size of a process, from /proc/PID/status (VmRSS), in MB (10^6 bytes).
pub fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS missing from /proc status")?;
    Ok(kb * 1024.0 / MB)
}

/// A port that was free a moment ago and not given before in this run ([`crate::ports::free_port`]); another
/// process may still take it before brook binds it (see [`spawn_on_free_port`]).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(crate::ports::free_port()?)
}

/// [`spawn_brook`] on a free port, trying up to three ports in case one is taken in between; each
/// attempt times its own start.
fn spawn_on_free_port(
    bin: &Path,
    data_dir: &Path,
    log: &Path,
) -> anyhow::Result<(Spawned, f64, u16)> {
    let mut last = None;
    for _ in 0..3 {
        let port = free_port()?;
        match spawn_brook(bin, data_dir, port, log) {
            Ok((spawned, ms)) => return Ok((spawned, ms, port)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt to start brook was made")))
}

/// Starts `brook` on `data_dir` and returns once its listener accepts connections, with the time that took.
fn spawn_brook(
    bin: &Path,
    data_dir: &Path,
    port: u16,
    log: &Path,
) -> anyhow::Result<(Spawned, f64)> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let data = data_dir.to_str().context("data dir is not UTF-8")?;
    let started = Instant::now();
    let child = Command::new(bin)
        .args([
            "--override",
            &format!("listeners=PLAINTEXT://127.0.0.1:{port}"),
        ])
        .args(["--override", &format!("log.dirs={data}")])
        .args(["--override", "group.initial.rebalance.delay.ms=0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    let mut spawned = Spawned(child);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok((spawned, started.elapsed().as_secs_f64() * 1e3));
        }
        if let Some(status) = spawned.0.try_wait()? {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            bail!("brook exited with {status} before listening: {log}");
        }
        if started.elapsed() > DEADLINE {
            bail!("brook did not listen on {addr} within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// SIGTERM and wait for the clean shutdown (flush, checkpoints, clean-shutdown marker).
fn stop_brook(mut spawned: Spawned) -> anyhow::Result<()> {
    let pid = i32::try_from(spawned.0.id()).context("pid fits i32")?;
    // SAFETY: kill(2) on the pid of a child this process spawned and has not reaped yet.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("SIGTERM brook");
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = spawned.0.try_wait()? {
            anyhow::ensure!(status.success(), "brook exited with {status} on SIGTERM");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("brook did not stop within {DEADLINE:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Workload 6: a spawned brook binary on a temp data directory: idle RSS, RSS with `many_partitions`
/// partitions holding one record each, and the clean-restart time with those partitions on disk.
pub fn many_partitions(bin: &Path, work: &Path, o: &Options) -> anyhow::Result<ManyPartitions> {
    let data = work.join("w6-data");
    let log = work.join("w6-brook.log");
    let (broker, empty_start_ms, port) = spawn_on_free_port(bin, &data, &log)?;
    let bootstrap = format!("127.0.0.1:{port}");
    let probe = clients::consumer(&bootstrap, &[])?;
    rdkafka::consumer::Consumer::fetch_metadata(&probe, None, Duration::from_secs(30))
        .context("metadata from the spawned broker")?;
    drop(probe);
    let idle_rss_mb = rss_mb(broker.0.id())?;

    let topic = "brook-bench-w6";
    clients::create_topic(&bootstrap, topic, o.many_partitions, &[])?;
    let producer = clients::producer(&bootstrap, &[("acks", "1"), ("linger.ms", "5")])?;
    let payload = clients::payload(100);
    for p in 0..o.many_partitions {
        clients::send(&producer, topic, Some(p), &payload)?;
    }
    clients::flush(&producer)?;
    drop(producer);
    let loaded_rss_mb = rss_mb(broker.0.id())?;
    stop_brook(broker)?;

    let (broker, restart_ms, _) = spawn_on_free_port(bin, &data, &log)?;
    let restarted_rss_mb = rss_mb(broker.0.id())?;
    stop_brook(broker)?;
    Ok(ManyPartitions {
        idle_rss_mb,
        loaded_rss_mb,
        restart_ms,
        restarted_rss_mb,
        empty_start_ms,
    })
}

/// Workload 8's producers, one row each, in this order.
pub const EXACTLY_ONCE_ROWS: [&str; 4] = [
    "exactly-once: plain producer (no idempotence), 1 KiB, 16 partitions, acks=all",
    "exactly-once: idempotent producer",
    "exactly-once: transactional, commit every 100 ms (latency: of the commits)",
    "exactly-once: transactional, commit every 1,000 records (latency: of the commits)",
];

/// librdkafka's queue bound in workload 8, the same for all four producers: a commit flushes what is
/// queued, so with the default 1 GiB queue a commit would time the drain of a backlog the sender ran
/// ahead with, not the transaction.
const EXACTLY_ONCE_QUEUE_KBYTES: &str = "8192";

/// When a transactional producer of workload 8 commits.
#[derive(Debug, Clone, Copy)]
enum CommitEvery {
    Time(Duration),
    Records(u64),
}

/// Workload 8: the cost of exactly-once. One after another on fresh 16-partition topics, 1 KiB records,
/// acks=all and linger 5 ms for all: a plain producer, an idempotent one, and two transactional ones
/// (commit every 100 ms; every 1,000 records). Returns one [`Measured`] per [`EXACTLY_ONCE_ROWS`] entry:
/// the plain one's headline is records/s, the others' is their records/s over the plain one's in this
/// same call (so `--repeat` takes the median of the ratios); the transactional ones carry their commit
/// latency (from `commit_transaction` called to returned: the flush of the records still queued, EndTxn
/// and the markers).
pub fn exactly_once(bootstrap: &str, run_id: &str, o: &Options) -> anyhow::Result<Vec<Measured>> {
    let base = [
        ("acks", "all"),
        ("linger.ms", "5"),
        ("queue.buffering.max.kbytes", EXACTLY_ONCE_QUEUE_KBYTES),
    ];
    let with = |extra: (&'static str, &'static str)| {
        let mut configs = base.to_vec();
        configs.push(extra);
        configs
    };
    let plain = produce_workload(
        bootstrap,
        &topic_name(run_id, "w8-plain"),
        16,
        &[],
        &with(("enable.idempotence", "false")),
        1024,
        o.produce_time,
    )?;
    let idempotent = produce_workload(
        bootstrap,
        &topic_name(run_id, "w8-idempotent"),
        16,
        &[],
        &with(("enable.idempotence", "true")),
        1024,
        o.produce_time,
    )?;
    let by_time = produce_transactions(
        bootstrap,
        &topic_name(run_id, "w8-txn-100ms"),
        &base,
        CommitEvery::Time(Duration::from_millis(100)),
        o.produce_time,
    )?;
    let by_count = produce_transactions(
        bootstrap,
        &topic_name(run_id, "w8-txn-1000"),
        &base,
        CommitEvery::Records(1000),
        o.produce_time,
    )?;
    let plain_rate = plain.records as f64 / plain.secs;
    anyhow::ensure!(plain_rate > 0.0, "the plain producer sent nothing");
    let mut out = vec![{
        let mut m = throughput(plain, "the baseline of workload 8");
        m.headline = m.records_per_s.unwrap_or(0.0);
        m
    }];
    let ratio = |run: &clients::ProduceRun| run.records as f64 / run.secs / plain_rate;
    out.push({
        let r = ratio(&idempotent);
        let mut m = throughput(
            idempotent,
            &format!("{r:.2}x the plain producer's records/s"),
        );
        m.headline = r;
        m
    });
    for (run, commits) in [by_time, by_count] {
        let r = ratio(&run);
        let note = format!(
            "{r:.2}x the plain producer's records/s; {} commits, commit latency max {:.2} ms",
            commits.count, commits.max
        );
        let mut m = throughput(run, &note);
        m.headline = r;
        m.latency = Some(commits);
        out.push(m);
    }
    debug_assert_eq!(out.len(), EXACTLY_ONCE_ROWS.len());
    Ok(out)
}

/// A transactional producer on a new topic: transactions of `commit` records or time, sent as fast as
/// librdkafka takes them, for `time` (whole transactions; the clock stops when the last commit
/// returns). One warm-up transaction of 1,000 records (InitProducerId, metadata, connections) runs first.
fn produce_transactions(
    bootstrap: &str,
    topic: &str,
    configs: &[(&str, &str)],
    commit: CommitEvery,
    time: Duration,
) -> anyhow::Result<(clients::ProduceRun, Latency)> {
    use rdkafka::producer::Producer;

    clients::create_topic(bootstrap, topic, 16, &[])?;
    let result = (|| {
        let mut configs = configs.to_vec();
        configs.push(("transactional.id", topic));
        let producer = clients::producer(bootstrap, &configs)?;
        producer
            .init_transactions(DEADLINE)
            .context("init_transactions")?;
        let payload = clients::payload(1024);
        let mut sender = clients::BatchSender::new(&producer, topic, &payload)?;
        producer.begin_transaction().context("begin_transaction")?;
        sender.send(1000)?;
        commit_transaction(&producer).context("warm-up commit")?;
        // Microseconds, 1 us to 10 minutes.
        let mut commits = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
        let started = Instant::now();
        let cpu = CpuClock::now();
        let mut sent = 0u64;
        while started.elapsed() < time {
            producer.begin_transaction().context("begin_transaction")?;
            let began = Instant::now();
            let mut in_txn = 0u64;
            match commit {
                CommitEvery::Records(n) => {
                    while in_txn < n {
                        let k = (n - in_txn).min(clients::SEND_BATCH as u64);
                        sender.send(k as usize)?;
                        in_txn += k;
                    }
                }
                CommitEvery::Time(every) => {
                    // Small slices, so the commit comes close to its time.
                    while began.elapsed() < every {
                        sender.send(100)?;
                        in_txn += 100;
                        producer.poll(Duration::ZERO);
                    }
                }
            }
            let committing = Instant::now();
            commit_transaction(&producer)?;
            commits.saturating_record((committing.elapsed().as_micros() as u64).max(1));
            sent += in_txn;
        }
        drop(sender);
        // Nothing is left to deliver; this reports a failed delivery, if any.
        clients::flush(&producer)?;
        let secs = started.elapsed().as_secs_f64();
        let ms = |micros: u64| micros as f64 / 1000.0;
        let latency = Latency {
            count: commits.len(),
            p50: ms(commits.value_at_quantile(0.50)),
            p99: ms(commits.value_at_quantile(0.99)),
            p999: ms(commits.value_at_quantile(0.999)),
            max: ms(commits.max()),
            curve: Vec::new(),
        };
        Ok((
            clients::ProduceRun {
                cpu: cpu.since(),
                records: sent,
                bytes: sent * 1024,
                secs,
            },
            latency,
        ))
    })();
    clients::delete_topic(bootstrap, topic);
    result
}

/// librdkafka's `rd_kafka_commit_transaction` called as its C API (and confluent-kafka, kcat) call it: it
/// flushes the queued records, then sends EndTxn. rust-rdkafka's `commit_transaction` flushes first in
/// steps of a 100 ms `poll`, which returns early only for an event; with only failed deliveries reported
/// nothing comes, so every commit would last at least 100 ms whatever the broker does.
fn commit_transaction(producer: &clients::CountingProducer) -> anyhow::Result<()> {
    use rdkafka::bindings as rdsys;
    use rdkafka::producer::Producer;

    let timeout_ms = i32::try_from(DEADLINE.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the client handle is valid while `producer` lives; a non-null result is an error object
    // this call owns: its string is copied before it is destroyed, once.
    unsafe {
        let error = rdsys::rd_kafka_commit_transaction(producer.client().native_ptr(), timeout_ms);
        if error.is_null() {
            return Ok(());
        }
        let message = std::ffi::CStr::from_ptr(rdsys::rd_kafka_error_string(error))
            .to_string_lossy()
            .into_owned();
        rdsys::rd_kafka_error_destroy(error);
        bail!("commit_transaction: {message}")
    }
}
