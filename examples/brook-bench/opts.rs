//! Command-line options of brook-bench. Hand-parsed (`--key value`): a dozen flags do not need a parser
//! crate, and the smoke test builds [`Options`] directly.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

/// Everything one run needs; [`Options::default`] is the documented full run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Broker A; `None` starts an in-process brook on a temp data directory.
    pub bootstrap: Option<String>,
    /// Broker B, measured pair by pair with A.
    pub compare: Option<String>,
    pub label_a: Option<String>,
    pub label_b: Option<String>,
    /// Workload numbers 1..=9 to run (7: librdkafka's rdkafka_performance, not in the default set because
    /// it builds C code; 9: replication on a three-node cluster, not in it because it needs its own run).
    pub workloads: Vec<u8>,
    /// Where results.md and latency.svg go; `None` writes nothing.
    pub out: Option<PathBuf>,
    /// Length of each timed produce phase (workloads 1, 2, 5).
    pub produce_time: Duration,
    /// Workload 3: backlog size and record size.
    pub consume_bytes: u64,
    pub consume_record_bytes: usize,
    /// Workload 11: size of each produced record (its produce phase; the readers read what it wrote).
    pub fanout_record_bytes: usize,
    /// Workload 4: producer rate and timed length (a warm-up of a fifth of it, at least 0.2 s, comes first).
    pub latency_rate: u64,
    pub latency_time: Duration,
    /// Workload 6: partitions created before the restart.
    pub many_partitions: i32,
    /// Machine limits: bytes per page-cache and loopback sample, fsync sampling time, samples taken.
    pub limit_bytes: u64,
    pub fsync_time: Duration,
    pub limit_samples: usize,
    /// The brook binary workloads 6 and 9 spawn; found next to this program (or built with cargo) when unset.
    pub brook_bin: Option<PathBuf>,
    /// Adds librdkafka's in-memory mock cluster as a broker for workloads 1 and 2.
    pub compare_mock: bool,
    /// Times workloads 1-5 run (A, B, A, B ... each time); the table shows each broker's median.
    pub repeat: usize,
    /// Workload 7: records rdkafka_performance produces and then consumes.
    pub rdkperf_records: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bootstrap: None,
            compare: None,
            label_a: None,
            label_b: None,
            workloads: vec![1, 2, 3, 4, 5, 6, 8],
            out: Some(PathBuf::from("bench-results")),
            produce_time: Duration::from_secs(5),
            consume_bytes: 2 << 30,
            consume_record_bytes: 1024,
            fanout_record_bytes: 1024,
            latency_rate: 10_000,
            latency_time: Duration::from_secs(10),
            many_partitions: 1000,
            limit_bytes: 1 << 30,
            fsync_time: Duration::from_secs(2),
            limit_samples: 3,
            brook_bin: None,
            repeat: 1,
            compare_mock: false,
            rdkperf_records: 1_000_000,
        }
    }
}

pub const USAGE: &str = "\
brook-bench: drives a Kafka-compatible broker with rdkafka clients and compares the figures with this
machine's limits (page-cache write, loopback TCP, fsync rate) measured in the same run.

usage: cargo run --release --example brook-bench -- [options]

  --bootstrap ADDR        broker A (default: start an in-process brook on a temp data dir)
  --compare ADDR          broker B: every workload runs on A then B, pair by pair
  --label-a NAME          name of A in the tables (default: the address or \"brook (in-process)\")
  --label-b NAME          name of B
  --compare-mock          also run workloads 1 and 2 on librdkafka's in-process mock cluster, a broker
                          that keeps messages in memory and writes nothing: what the client alone reaches
  --workloads LIST        comma-separated workload numbers (default 1,2,3,4,5,6,8)
                          1 produce 100 B, 4 partitions, acks=1, linger 5 ms
                          2 produce 1 KiB, 16 partitions, acks=1 and acks=all
                          3 consume a backlog from the page cache
                          4 end-to-end latency at a fixed rate of 1 KiB records
                          5 durable produce: acks=all, flush.messages=1, 16 partitions
                          6 1,000 partitions: RSS and start-up time of a spawned brook binary
                          7 librdkafka's rdkafka_performance: -P 100 B records to 4 partitions,
                            acks=1, linger 5 ms (as 1), then -C of that backlog from the beginning
                          8 exactly-once: 1 KiB to 16 partitions, acks=all, with a plain, an idempotent
                            and a transactional producer (commit every 100 ms, and every 1,000
                            records), in turn: records/s against the plain one, commit latency
                          10 one large Fetch: raw Fetch requests for 4 x 1 MiB of cached records, one
                            at a time: time to the response's first and last byte (p50, p99)
                          11 fan-out: 16 producers on 64 partitions (1 KiB, acks=1, --produce-secs or
                            --consume-bytes), then 8 consumer groups read that backlog at once: total
                            MB/s and the broker's CPU-seconds per GB
  --rdkafka-performance   add workload 7 (builds the tool with compat/librdkafka-build.sh if needed)
  --rdkafka-performance-records N  records workload 7 produces and consumes (default 1000000)
  --out DIR               write DIR/results.md and DIR/latency.svg (default bench-results; `-` for none)
  --produce-secs S        timed length of each produce workload (default 5; each of 8's four producers)
  --consume-bytes N       workload 3 backlog, suffixes K M G (default 2G)
  --consume-record-bytes N  workload 3 record size (default 1024)
  --fanout-record-bytes N   workload 11 record size (default 1024; 100 for the cost of small records)
  --latency-rate N        workload 4 records/s (default 10000)
  --latency-secs S        workload 4 timed length (default 10)
  --partitions N          workload 6 partition count (default 1000)
  --limit-bytes N         bytes per page-cache / loopback sample (default 1G)
  --fsync-secs S          fsync-rate sampling time (default 2)
  --brook-bin PATH        brook binary for workloads 6 and 9 (default: next to this program, else
                          `cargo build`)
  --repeat N              run workloads 1-5, 7, 8, 10 and 11 N times, A and B alternating, and workload 9 in N
                          rounds; the table shows medians and the notes every run's figure (default 1;
                          use an odd N)
  --help
";

/// `512K`, `64M`, `2G` or plain bytes.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    n.checked_mul(mult)
        .with_context(|| format!("size {s:?} overflows"))
}

fn parse_secs(s: &str) -> anyhow::Result<Duration> {
    let secs: f64 = s.parse().with_context(|| format!("bad seconds {s:?}"))?;
    if !(secs > 0.0 && secs < 3600.0) {
        bail!("seconds must be in (0, 3600): {s}");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses the arguments after the program name; `Ok(None)` means `--help` was asked.
pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Option<Options>> {
    let mut o = Options::default();
    let mut args = args.into_iter();
    let mut rdkafka_performance = false;
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        // `cargo bench`-style runners may pass --bench; it means nothing here.
        if flag == "--bench" {
            continue;
        }
        if flag == "--compare-mock" {
            o.compare_mock = true;
            continue;
        }
        if flag == "--rdkafka-performance" {
            rdkafka_performance = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value (see --help)"))?;
        match flag.as_str() {
            "--bootstrap" => o.bootstrap = Some(value),
            "--compare" => o.compare = Some(value),
            "--label-a" => o.label_a = Some(value),
            "--label-b" => o.label_b = Some(value),
            "--workloads" => {
                let mut list = Vec::new();
                for w in value.split(',').filter(|w| !w.is_empty()) {
                    let n: u8 = w
                        .trim()
                        .parse()
                        .with_context(|| format!("bad workload {w:?}"))?;
                    if !(1..=11).contains(&n) {
                        bail!("workloads are numbered 1 to 11, not {n}");
                    }
                    list.push(n);
                }
                list.sort_unstable();
                list.dedup();
                o.workloads = list;
            }
            "--out" => o.out = (value != "-").then(|| PathBuf::from(value)),
            "--produce-secs" => o.produce_time = parse_secs(&value)?,
            "--consume-bytes" => o.consume_bytes = parse_size(&value)?,
            "--consume-record-bytes" => {
                o.consume_record_bytes = parse_size(&value)? as usize;
                if !(16..=900_000).contains(&o.consume_record_bytes) {
                    bail!("--consume-record-bytes must be in 16..=900000");
                }
            }
            "--fanout-record-bytes" => {
                o.fanout_record_bytes = parse_size(&value)? as usize;
                if !(16..=900_000).contains(&o.fanout_record_bytes) {
                    bail!("--fanout-record-bytes must be in 16..=900000");
                }
            }
            "--latency-rate" => {
                o.latency_rate = value.parse().context("bad --latency-rate")?;
                if !(1..=1_000_000).contains(&o.latency_rate) {
                    bail!("--latency-rate must be in 1..=1000000");
                }
            }
            "--latency-secs" => o.latency_time = parse_secs(&value)?,
            "--partitions" => {
                o.many_partitions = value.parse().context("bad --partitions")?;
                if !(1..=100_000).contains(&o.many_partitions) {
                    bail!("--partitions must be in 1..=100000");
                }
            }
            "--limit-bytes" => o.limit_bytes = parse_size(&value)?.max(1 << 20),
            "--fsync-secs" => o.fsync_time = parse_secs(&value)?,
            "--brook-bin" => o.brook_bin = Some(PathBuf::from(value)),
            "--repeat" => {
                o.repeat = value.parse().context("bad --repeat")?;
                if !(1..=100).contains(&o.repeat) {
                    bail!("--repeat must be in 1..=100");
                }
            }
            "--rdkafka-performance-records" => {
                o.rdkperf_records = value.parse().context("bad --rdkafka-performance-records")?;
                if !(1..=1_000_000_000).contains(&o.rdkperf_records) {
                    bail!("--rdkafka-performance-records must be in 1..=1000000000");
                }
            }
            other => bail!("unknown option {other} (see --help)"),
        }
    }
    if rdkafka_performance && !o.workloads.contains(&7) {
        o.workloads.push(7);
        o.workloads.sort_unstable();
    }
    Ok(Some(o))
}
