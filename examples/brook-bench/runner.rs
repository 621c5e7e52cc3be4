//! Runs a whole benchmark: the machine limits, then each workload on broker A and broker B in turn
//! (A, B, A, B, ...), so slow drift of the machine (page cache, other load) affects both alike.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::limits::{self, Limits};
use crate::opts::Options;
use crate::report::{Kind, Row};
use crate::workloads::{self, Measured};

/// Everything a run produced.
pub struct Outcome {
    pub rows: Vec<Row>,
    /// Broker labels; the last one is the spawned brook binary of workload 6 (and the cluster of 9).
    pub labels: Vec<String>,
    pub limits: Option<Limits>,
    /// Machine and load facts printed with the results.
    pub context: String,
}

/// An in-process brook on a temp data directory (the default broker A), stopped cleanly on drop of the run.
struct InProcess {
    runtime: tokio::runtime::Runtime,
    broker: Option<brook::Broker>,
}

impl InProcess {
    fn start(data_dir: &Path) -> anyhow::Result<InProcess> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("brook")
            .build()
            .context("broker runtime")?;
        let mut config = brook::Config::new();
        config.set("listeners", "PLAINTEXT://127.0.0.1:0")?;
        // Metrics stay on, as by default, without taking the default port from a broker running beside.
        config.set("metrics.listener", "127.0.0.1:0")?;
        config.set(
            "log.dirs",
            data_dir.to_str().context("temp dir is not UTF-8")?,
        )?;
        let broker = runtime
            .block_on(brook::Broker::start(config))
            .context("start in-process brook")?;
        Ok(InProcess {
            runtime,
            broker: Some(broker),
        })
    }

    fn bootstrap(&self) -> String {
        self.broker
            .as_ref()
            .map(|b| b.bootstrap_servers())
            .unwrap_or_default()
    }

    fn stop(mut self) -> anyhow::Result<()> {
        if let Some(b) = self.broker.take() {
            self.runtime
                .block_on(b.shutdown())
                .context("in-process brook shutdown")?;
        }
        Ok(())
    }
}

/// The brook binary for workloads 6 and 9: `--brook-bin`, else `brook` in the profile directory this program
/// runs from (target/<profile>/examples/brook-bench -> target/<profile>/brook), built first with the
/// same cargo when this program was started by `cargo run`, so it is never stale.
pub fn locate_brook(o: &Options) -> anyhow::Result<PathBuf> {
    if let Some(b) = &o.brook_bin {
        return Ok(b.clone());
    }
    let exe = std::env::current_exe().context("current exe")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("this program is not inside a cargo target directory")?;
    let candidate = profile_dir.join("brook");
    if let (Ok(cargo), Ok(manifest)) = (std::env::var("CARGO"), std::env::var("CARGO_MANIFEST_DIR"))
    {
        let mut cmd = std::process::Command::new(cargo);
        cmd.current_dir(manifest)
            .args(["build", "--quiet", "--bin", "brook"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().context("cargo build --bin brook")?;
        anyhow::ensure!(status.success(), "cargo build --bin brook failed: {status}");
    }
    anyhow::ensure!(
        candidate.is_file(),
        "no brook binary at {}; build it (cargo build --release) or pass --brook-bin",
        candidate.display()
    );
    Ok(candidate)
}

fn machine_context(o: &Options) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "Machine: {cores} cores ({cpu}), load average at start {}. Sizes: produce phases {:.0} s each, \
         consume backlog {} MiB of {} B records, latency run {:.0} s at {} records/s, {} partitions in \
         workload 6.",
        load_average(),
        o.produce_time.as_secs_f64(),
        o.consume_bytes >> 20,
        o.consume_record_bytes,
        o.latency_time.as_secs_f64(),
        o.latency_rate,
        o.many_partitions
    )
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The run with the median headline; with several runs its note lists every run's figure.
fn median_run(kind: Kind, mut runs: Vec<Measured>) -> Option<Measured> {
    if runs.len() < 2 {
        return runs.pop();
    }
    let all: Vec<String> = runs
        .iter()
        .map(|m| crate::report::headline(kind, m))
        .collect();
    runs.sort_by(|a, b| a.headline.total_cmp(&b.headline));
    let count = runs.len();
    let mut median = runs.swap_remove(count / 2);
    median.note = format!(
        "median of {count} runs ({}); that run: {}",
        all.join(", "),
        median.note
    );
    Some(median)
}

/// Runs the limits and the selected workloads; progress goes to stderr.
pub fn run(o: &Options) -> anyhow::Result<Outcome> {
    let run_id = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000)
            .unwrap_or(0)
    );
    let work = tempfile::Builder::new()
        .prefix("brook-bench-")
        .tempdir()
        .context("temp dir")?;
    let context = machine_context(o);

    eprintln!("brook-bench: measuring machine limits");
    let limits = Some(limits::measure(
        work.path(),
        o.limit_bytes,
        o.produce_time,
        o.limit_samples,
        o.fsync_time,
        o.latency_rate,
        o.latency_time.min(std::time::Duration::from_secs(2)),
    )?);

    let in_process = match &o.bootstrap {
        Some(_) => None,
        None => Some(InProcess::start(&work.path().join("brook-data"))?),
    };
    let mut targets: Vec<(String, String)> = Vec::new();
    match (&o.bootstrap, &in_process) {
        (Some(addr), _) => targets.push((
            o.label_a.clone().unwrap_or_else(|| addr.clone()),
            addr.clone(),
        )),
        (None, Some(ip)) => targets.push((
            o.label_a
                .clone()
                .unwrap_or_else(|| "brook (in-process)".into()),
            ip.bootstrap(),
        )),
        (None, None) => {
            unreachable!("an in-process broker is started when no --bootstrap is given")
        }
    }
    if let Some(b) = &o.compare {
        targets.push((o.label_b.clone().unwrap_or_else(|| b.clone()), b.clone()));
    }
    let mock = if o.compare_mock {
        targets.push((
            "librdkafka mock cluster (in memory)".into(),
            crate::clients::start_mock()?,
        ));
        Some(targets.len() - 1)
    } else {
        None
    };
    let broker_in_process = in_process.is_some();
    let mut labels: Vec<String> = targets.iter().map(|(l, _)| l.clone()).collect();
    labels.push("brook binary (spawned)".into());
    let n = labels.len();

    let mut rows = Vec::new();
    type Workload = fn(&str, &str, &Options) -> anyhow::Result<Measured>;
    type MultiRowWorkload<'a> = &'a dyn Fn(&str, &str, &Options) -> anyhow::Result<Vec<Measured>>;
    // One call of `f` measures every row of `spec` at once (workload 8's rows are ratios within a call).
    let mut pairwise_rows = |w: u8, spec: &[(String, Kind)], f: MultiRowWorkload<'_>| {
        let mut runs: Vec<Vec<Vec<Measured>>> = vec![vec![Vec::new(); n]; spec.len()];
        let mut failed: Vec<Option<String>> = vec![None; n];
        let name = spec.first().map(|(name, _)| name.as_str()).unwrap_or("");
        for rep in 1..=o.repeat {
            for (i, (label, addr)) in targets.iter().enumerate() {
                // The mock keeps 5 MiB per partition (no backlog to consume), has no disk, and answers
                // a long poll only when it expires (its latency would be fetch.wait.max.ms).
                // Workload 7's backlog would not fit the mock either, nor does it do transactions; 10 and 11 are
                // about the broker's own cost.
                if failed[i].is_some() || (Some(i) == mock && matches!(w, 3..=5 | 7 | 8 | 10 | 11))
                {
                    continue;
                }
                let of = if o.repeat > 1 {
                    format!(", run {rep} of {}", o.repeat)
                } else {
                    String::new()
                };
                eprintln!("brook-bench: workload {w} ({name}) on {label}{of}");
                let started = Instant::now();
                // Topic names differ per repetition: the mock cluster cannot delete topics.
                let mut r = f(addr, &format!("{run_id}-{rep}"), o)
                    .and_then(|ms| {
                        anyhow::ensure!(
                            ms.len() == spec.len(),
                            "{} figures for {} rows",
                            ms.len(),
                            spec.len()
                        );
                        Ok(ms)
                    })
                    .map_err(|e| format!("{e:#}"));
                // The rest of this process is the broker only for an in-process A or the mock.
                let broker_here = (i == 0 && broker_in_process) || Some(i) == mock;
                if !broker_here && let Ok(ms) = &mut r {
                    for m in ms {
                        if let Some(cpu) = &mut m.cpu {
                            cpu.broker_cores = None;
                        }
                    }
                }
                match r {
                    Ok(ms) => {
                        for (j, m) in ms.into_iter().enumerate() {
                            eprintln!(
                                "brook-bench:   {}{} in {:.1} s{}",
                                if spec.len() > 1 {
                                    format!("{}: ", spec[j].0)
                                } else {
                                    String::new()
                                },
                                crate::report::headline(spec[j].1, &m),
                                started.elapsed().as_secs_f64(),
                                m.cpu
                                    .map(|c| format!("; {}", c.describe()))
                                    .unwrap_or_default()
                            );
                            runs[j][i].push(m);
                        }
                    }
                    Err(e) => {
                        eprintln!("brook-bench:   FAILED: {e}");
                        failed[i] = Some(e);
                    }
                }
            }
        }
        for ((name, kind), runs) in spec.iter().zip(runs) {
            let results = runs
                .into_iter()
                .zip(&failed)
                .map(|(runs, failed)| match failed {
                    Some(e) => Some(Err(e.clone())),
                    // None: the workload does not apply to that broker.
                    None => median_run(*kind, runs).map(Ok),
                })
                .collect();
            rows.push(Row {
                workload: w,
                name: name.clone(),
                kind: *kind,
                results,
            });
        }
    };
    // A workload with one row.
    macro_rules! pairwise {
        ($w:expr, $name:expr, $kind:expr, $f:expr $(,)?) => {{
            let f = $f;
            pairwise_rows(
                $w,
                &[(($name).to_string(), $kind)],
                &|a: &str, r: &str, o: &Options| f(a, r, o).map(|m| vec![m]),
            )
        }};
    }
    for &w in &o.workloads {
        match w {
            1 => pairwise!(
                1,
                "produce 100 B, 4 partitions, acks=1",
                Kind::ProduceSmall,
                &(workloads::produce_small as Workload),
            ),
            2 => {
                pairwise!(
                    2,
                    "produce 1 KiB, 16 partitions, acks=1",
                    Kind::Produce1k,
                    &|a: &str, r: &str, o: &Options| workloads::produce_1k(a, r, o, "1"),
                );
                pairwise!(
                    2,
                    "produce 1 KiB, 16 partitions, acks=all",
                    Kind::Produce1k,
                    &|a: &str, r: &str, o: &Options| workloads::produce_1k(a, r, o, "all"),
                );
            }
            3 => pairwise!(
                3,
                "consume backlog from page cache",
                Kind::Consume,
                &(workloads::consume_backlog as Workload),
            ),
            4 => pairwise!(
                4,
                "end-to-end latency, 1 KiB at fixed rate",
                Kind::Latency,
                &(workloads::latency as Workload),
            ),
            5 => pairwise!(
                5,
                "durable produce: acks=all, flush.messages=1, 16 partitions",
                Kind::Durable,
                &(workloads::produce_durable as Workload),
            ),
            7 => {
                let records = o.rdkperf_records;
                pairwise!(
                    7,
                    &format!(
                        "rdkafka_performance -P: {records} x {} B, {} partitions, acks={}, linger {} ms",
                        crate::rdkperf::RECORD_BYTES,
                        crate::rdkperf::PARTITIONS,
                        crate::rdkperf::ACKS,
                        crate::rdkperf::LINGER_MS
                    ),
                    Kind::ToolProduce,
                    &(crate::rdkperf::produce as Workload),
                );
                pairwise!(
                    7,
                    "rdkafka_performance -C: that backlog from the beginning to the end",
                    Kind::ToolConsume,
                    &(crate::rdkperf::consume as Workload),
                );
            }
            8 => pairwise_rows(
                8,
                &workloads::EXACTLY_ONCE_ROWS
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        let kind = if i == 0 {
                            Kind::ExactlyOncePlain
                        } else {
                            Kind::ExactlyOnceRatio
                        };
                        (name.to_string(), kind)
                    })
                    .collect::<Vec<_>>(),
                &workloads::exactly_once,
            ),
            10 => pairwise_rows(
                10,
                &[
                    (crate::fetchlat::ROWS[0].to_string(), Kind::FetchFirstByte),
                    (crate::fetchlat::ROWS[1].to_string(), Kind::FetchLastByte),
                ],
                &crate::fetchlat::fetch_latency,
            ),
            11 => pairwise_rows(
                11,
                &crate::fanout::rows(o.fanout_record_bytes),
                &crate::fanout::fan_out,
            ),
            _ => {}
        }
    }
    if o.workloads.contains(&6) {
        eprintln!(
            "brook-bench: workload 6 ({} partitions) on a spawned brook",
            o.many_partitions
        );
        let outcome =
            locate_brook(o).and_then(|bin| workloads::many_partitions(&bin, work.path(), o));
        let spawned = n - 1;
        let mut push = |name: String, kind: Kind, r: Result<Measured, String>| {
            let mut results = vec![None; n];
            results[spawned] = Some(r);
            rows.push(Row {
                workload: 6,
                name,
                kind,
                results,
            });
        };
        match outcome {
            Ok(m) => {
                let fig = |headline: f64, note: String| Measured {
                    headline,
                    note,
                    ..Measured::default()
                };
                push(
                    "idle broker RSS".into(),
                    Kind::IdleRss,
                    Ok(fig(
                        m.idle_rss_mb,
                        format!(
                            "fresh start (empty data dir took {:.0} ms), after one metadata request",
                            m.empty_start_ms
                        ),
                    )),
                );
                push(
                    format!("RSS with {} partitions", o.many_partitions),
                    Kind::ManyRss,
                    Ok(fig(
                        m.loaded_rss_mb,
                        format!(
                            "after creating them and writing one record to each; {:.1} MB right after the restart",
                            m.restarted_rss_mb
                        ),
                    )),
                );
                push(
                    format!("start-up with {} partitions", o.many_partitions),
                    Kind::Startup,
                    Ok(fig(
                        m.restart_ms,
                        "clean restart: process spawn until the listener accepts".into(),
                    )),
                );
            }
            Err(e) => {
                eprintln!("brook-bench:   FAILED: {e:#}");
                push(
                    "1,000 partitions".into(),
                    Kind::ManyRss,
                    Err(format!("{e:#}")),
                );
            }
        }
    }
    if o.workloads.contains(&9) {
        eprintln!(
            "brook-bench: workload 9 (replication) on a three-node cluster of spawned brooks"
        );
        let outcome =
            locate_brook(o).and_then(|bin| crate::replication::replication(&bin, work.path(), o));
        let spawned = n - 1;
        let kinds = [
            Kind::ReplicationProduce,
            Kind::ReplicationRatio,
            Kind::ReplicationConsume,
            Kind::ReplicationRatio,
        ];
        match outcome {
            Ok(ms) => {
                for ((name, kind), m) in crate::replication::ROWS.iter().zip(kinds).zip(ms) {
                    let mut results = vec![None; n];
                    results[spawned] = Some(Ok(m));
                    rows.push(Row {
                        workload: 9,
                        name: name.to_string(),
                        kind,
                        results,
                    });
                }
            }
            Err(e) => {
                eprintln!("brook-bench:   FAILED: {e:#}");
                let mut results = vec![None; n];
                results[spawned] = Some(Err(format!("{e:#}")));
                rows.push(Row {
                    workload: 9,
                    name: "replication".into(),
                    kind: Kind::ReplicationRatio,
                    results,
                });
            }
        }
    }
    if let Some(ip) = in_process {
        ip.stop()?;
    }
    Ok(Outcome {
        rows,
        labels,
        limits,
        context: format!("{context} Load average at the end {}.", load_average()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(headline: f64, note: &str) -> Measured {
        Measured {
            headline,
            note: note.into(),
            ..Measured::default()
        }
    }

    #[test]
    fn median_run_takes_the_middle_headline_and_lists_every_run() {
        let m = median_run(
            Kind::Produce1k,
            vec![run(500.0, "a"), run(300.0, "b"), run(700.0, "c")],
        )
        .expect("a median");
        assert_eq!(m.headline, 500.0);
        assert_eq!(
            m.note,
            "median of 3 runs (500 MB/s, 300 MB/s, 700 MB/s); that run: a"
        );
        let one = median_run(Kind::Produce1k, vec![run(1.0, "only")]).expect("one run");
        assert_eq!((one.headline, one.note.as_str()), (1.0, "only"));
        assert!(median_run(Kind::Produce1k, Vec::new()).is_none());
    }
}
