//! librdkafka's own benchmark tool, `rdkafka_performance` (issue 17): the figures the field quotes for any
//! Kafka-compatible broker, measured here beside brook-bench's own workloads so brook can be compared with
//! another broker using a tool neither side wrote. Its source ships in the rdkafka-sys crate; the tool is
//! built by `compat/librdkafka-build.sh` (cached under target/librdkafka-suite, shared with
//! compat/librdkafka.sh) and run as a child process whose closing summary line is parsed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::clients;
use crate::opts::Options;
use crate::workloads::Measured;

/// Record size and partition count of the produce run, as brook-bench's workload 1.
pub const RECORD_BYTES: usize = 100;
pub const PARTITIONS: i32 = 4;
/// Producer settings of the produce run, as brook-bench's workload 1.
pub const ACKS: &str = "1";
pub const LINGER_MS: u32 = 5;
/// Consumer setting of the consume run, as brook-bench's workload 3.
pub const FETCH_WAIT_MAX_MS: u32 = 100;
/// Longest one tool run may take before it is killed and the run fails (a consumer waiting for an
/// end-of-partition that never comes would otherwise hang the benchmark).
const TOOL_DEADLINE: Duration = Duration::from_secs(900);

fn topic_name(run_id: &str) -> String {
    format!("brook-bench-{run_id}-rdkperf")
}

/// The built tool's path; the build runs once per process (later calls return its outcome).
pub fn tool() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build() -> anyhow::Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/librdkafka-build.sh");
    eprintln!(
        "brook-bench: building rdkafka_performance ({})",
        script.display()
    );
    let out = Command::new(&script)
        .arg("rdkafka_performance")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .last()
        .map(PathBuf::from)
        .with_context(|| format!("{} printed no tool path", script.display()))?;
    if !path.is_file() {
        bail!(
            "{} named {}, which does not exist",
            script.display(),
            path.display()
        );
    }
    Ok(path)
}

/// Runs the tool with `args`, killing it after [`TOOL_DEADLINE`]; returns its stdout. Output goes to
/// temp files, so a chatty tool can never block on a full pipe.
fn run_tool(bin: &Path, args: &[String]) -> anyhow::Result<(String, f64)> {
    let stdout = tempfile::tempfile().context("temp file for the tool's stdout")?;
    let stderr = tempfile::tempfile().context("temp file for the tool's stderr")?;
    let read = |mut f: &std::fs::File| -> String {
        use std::io::{Read, Seek};
        let mut s = String::new();
        // An unreadable capture only loses the error text; the exit status still reports failure.
        let _ = f.rewind().and_then(|_| f.read_to_string(&mut s));
        s
    };
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().context("dup stdout capture")?)
        .stderr(stderr.try_clone().context("dup stderr capture")?)
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    let status = loop {
        if let Some(status) = child.try_wait().context("wait for rdkafka_performance")? {
            break status;
        }
        if started.elapsed() > TOOL_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "rdkafka_performance {} did not finish in {TOOL_DEADLINE:?}; its last output:\n{}",
                args.join(" "),
                tail(&read(&stdout), 10)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let secs = started.elapsed().as_secs_f64();
    let out = read(&stdout);
    if !status.success() {
        bail!(
            "rdkafka_performance {} exited with {status}:\n{}\n{}",
            args.join(" "),
            tail(&out, 10),
            tail(&read(&stderr), 10)
        );
    }
    Ok((out, secs))
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn common_args(bootstrap: &str, topic: &str) -> Vec<String> {
    [
        "-b",
        bootstrap,
        "-t",
        topic,
        "-X",
        "broker.address.family=v4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `rdkafka_performance -P`: `o.rdkperf_records` records of [`RECORD_BYTES`] into a new topic of
/// [`PARTITIONS`] partitions (librdkafka's default partitioner spreads them), with workload 1's acks=1
/// and linger.ms=5 rather than the tool's linger.ms=1000, whose last partial batch would add up to a
/// second to every run. The topic stays for [`consume`].
pub fn produce(bootstrap: &str, run_id: &str, o: &Options) -> anyhow::Result<Measured> {
    let bin = tool()?;
    let topic = topic_name(run_id);
    clients::create_topic(bootstrap, &topic, PARTITIONS, &[])?;
    let mut args = vec!["-P".to_string()];
    args.extend(common_args(bootstrap, &topic));
    args.extend([
        "-s".into(),
        RECORD_BYTES.to_string(),
        "-c".into(),
        o.rdkperf_records.to_string(),
        "-a".into(),
        ACKS.into(),
        "-X".into(),
        format!("linger.ms={LINGER_MS}"),
    ]);
    let result = run_tool(&bin, &args).and_then(|(out, secs)| {
        let s = parse_produced(&out)?;
        if s.records != o.rdkperf_records || s.failed != 0 {
            bail!(
                "rdkafka_performance delivered {} of {} records ({} failed): {}",
                s.records,
                o.rdkperf_records,
                s.failed,
                s.line
            );
        }
        Ok(figures(&s, secs))
    });
    if result.is_err() {
        clients::delete_topic(bootstrap, &topic);
    }
    result
}

/// `rdkafka_performance -C`: reads back the topic [`produce`] wrote in the same repetition, every
/// partition from the beginning, exiting at the end of the last one; then deletes the topic. The tool
/// stops its clock after the consumer closes, so its figure includes seeing the end of every partition:
/// an empty fetch that waits fetch.wait.max.ms, set to workload 3's 100 ms rather than librdkafka's
/// 500 ms so that tail weighs less.
pub fn consume(bootstrap: &str, run_id: &str, o: &Options) -> anyhow::Result<Measured> {
    let bin = tool()?;
    let topic = topic_name(run_id);
    let mut args = vec!["-C".to_string()];
    args.extend(common_args(bootstrap, &topic));
    for p in 0..PARTITIONS {
        args.extend(["-p".to_string(), p.to_string()]);
    }
    args.extend([
        "-o".into(),
        "beginning".into(),
        "-e".into(),
        "-X".into(),
        format!("fetch.wait.max.ms={FETCH_WAIT_MAX_MS}"),
    ]);
    let result = run_tool(&bin, &args).and_then(|(out, secs)| {
        let s = parse_consumed(&out)?;
        if s.records != o.rdkperf_records {
            bail!(
                "rdkafka_performance consumed {} records, the backlog holds {}: {}",
                s.records,
                o.rdkperf_records,
                s.line
            );
        }
        Ok(figures(&s, secs))
    });
    clients::delete_topic(bootstrap, &topic);
    result
}

/// The tool's own figures, and its summary line in the note; `secs` is the whole run with start-up.
fn figures(s: &Summary, secs: f64) -> Measured {
    Measured {
        records_per_s: Some(s.msgs_per_s),
        mb_per_s: Some(s.mb_per_s),
        headline: s.msgs_per_s,
        note: format!(
            "{} records of {RECORD_BYTES} B in {} ms by the tool's clock ({secs:.1} s with start-up); \
             its summary: \"{}\"",
            s.records, s.ms, s.line
        ),
        ..Measured::default()
    }
}

/// The figures of one closing summary line of the tool.
#[derive(Debug, PartialEq)]
pub struct Summary {
    /// Records delivered (producer) or consumed (consumer).
    pub records: u64,
    /// Records whose delivery failed (producer; 0 for the consumer).
    pub failed: u64,
    pub ms: u64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    pub line: String,
}

/// The last line containing `marker`: the tool prints a summary every second and the final one last.
fn last_summary<'a>(out: &'a str, marker: &str) -> anyhow::Result<&'a str> {
    out.lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with("% ") && l.contains(marker))
        .with_context(|| {
            format!(
                "no rdkafka_performance summary line (\"{marker}\") in its output:\n{}",
                tail(out, 10)
            )
        })
}

/// The number right after `after` (up to the next space, `)`, `,` or `:`), as T.
fn number_after<T: std::str::FromStr>(line: &str, after: &str) -> anyhow::Result<T> {
    let rest = line
        .find(after)
        .map(|i| &line[i + after.len()..])
        .with_context(|| format!("no {after:?} in rdkafka_performance summary line {line:?}"))?;
    let token = rest
        .split([' ', ')', ',', ':'])
        .next()
        .unwrap_or_default()
        .trim_end_matches("ms");
    token.parse().map_err(|_| {
        anyhow::anyhow!(
            "bad number {token:?} after {after:?} in rdkafka_performance summary line {line:?}"
        )
    })
}

/// The number right before `before` (the last space-separated token ahead of it), as T.
fn number_before<T: std::str::FromStr>(line: &str, before: &str) -> anyhow::Result<T> {
    let head = line
        .find(before)
        .map(|i| &line[..i])
        .with_context(|| format!("no {before:?} in rdkafka_performance summary line {line:?}"))?;
    let token = head
        .trim_end()
        .rsplit([' ', '('])
        .next()
        .unwrap_or_default();
    token.parse().map_err(|_| {
        anyhow::anyhow!(
            "bad number {token:?} before {before:?} in rdkafka_performance summary line {line:?}"
        )
    })
}

/// The producer's closing summary, e.g. `% 1000 messages produced (100000 bytes), 1000 delivered
/// (offset 249, 0 failed) in 312ms: 3205 msgs/s and 0.32 MB/s, 0 produce failures, 0 in queue, no
/// compression`.
pub fn parse_produced(out: &str) -> anyhow::Result<Summary> {
    let line = last_summary(out, " messages produced ")?;
    Ok(Summary {
        records: number_before(line, " delivered ")?,
        failed: number_before(line, " failed)")?,
        ms: number_after(line, ") in ")?,
        msgs_per_s: number_before(line, " msgs/s")?,
        mb_per_s: number_before(line, " MB/s")?,
        line: line.to_string(),
    })
}

/// The consumer's closing summary, e.g. `% 1000 messages (100000 bytes) consumed in 120ms: 8333 msgs/s
/// (0.83 MB/s)`.
pub fn parse_consumed(out: &str) -> anyhow::Result<Summary> {
    let line = last_summary(out, " consumed in ")?;
    if line.starts_with("% INTERVAL:") {
        bail!("rdkafka_performance's last summary is an interval line: {line:?}");
    }
    Ok(Summary {
        records: number_before(line, " messages (")?,
        failed: 0,
        ms: number_after(line, " consumed in ")?,
        msgs_per_s: number_before(line, " msgs/s")?,
        mb_per_s: number_before(line, " MB/s")?,
        line: line.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCED: &str = "\
% Sending 1000 messages of size 100 bytes
% 500 messages produced (50000 bytes), 0 delivered (offset 0, 0 failed) in 1000ms: 0 msgs/s and 0.00 MB/s, 0 produce failures, 500 in queue, no compression
% 1000 messages produced (100000 bytes), 1000 delivered (offset 249, 0 failed) in 1312ms: 762 msgs/s and 0.08 MB/s, 0 produce failures, 0 in queue, no compression
";

    #[test]
    fn parses_the_last_producer_summary() {
        let p = parse_produced(PRODUCED).expect("parses");
        assert_eq!(p.records, 1000);
        assert_eq!(p.failed, 0);
        assert_eq!(p.ms, 1312);
        assert_eq!(p.msgs_per_s, 762.0);
        assert_eq!(p.mb_per_s, 0.08);
        assert!(p.line.starts_with("% 1000 messages produced"), "{}", p.line);
    }

    #[test]
    fn parses_the_consumer_summary() {
        let out = "% Consumer reached end of t [3] message queue at offset 250\n\
                   % 1000 messages (100000 bytes) consumed in 120ms: 8333 msgs/s (0.83 MB/s)\n";
        let c = parse_consumed(out).expect("parses");
        assert_eq!(
            (c.records, c.ms, c.msgs_per_s, c.mb_per_s),
            (1000, 120, 8333.0, 0.83)
        );
    }

    #[test]
    fn the_option_adds_workload_7_whatever_the_order() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for a in [
            args(&["--rdkafka-performance", "--workloads", "3,1"]),
            args(&["--workloads", "1,3", "--rdkafka-performance"]),
        ] {
            let o = crate::opts::parse(a).expect("parses").expect("not --help");
            assert_eq!(o.workloads, vec![1, 3, 7]);
        }
        let o = crate::opts::parse(args(&["--rdkafka-performance-records", "5000"]))
            .expect("parses")
            .expect("not --help");
        assert_eq!((o.rdkperf_records, o.workloads.contains(&7)), (5000, false));
        assert!(crate::opts::parse(args(&["--rdkafka-performance-records", "0"])).is_err());
    }

    #[test]
    fn a_missing_or_malformed_summary_is_an_error_naming_the_line() {
        let e = parse_produced("% ERROR CALLBACK: broker down\n").expect_err("no summary");
        assert!(format!("{e:#}").contains("broker down"), "{e:#}");
        let bad = "% 1000 messages produced (100000 bytes), many delivered (offset 249, 0 failed) in \
                   1312ms: 762 msgs/s and 0.08 MB/s, 0 produce failures, 0 in queue, no compression";
        let e = parse_produced(bad).expect_err("malformed");
        assert!(format!("{e:#}").contains("many delivered"), "{e:#}");
        let e = parse_consumed("% 10 messages (1000 bytes) consumed in 5ms: x msgs/s (0.2 MB/s)")
            .expect_err("malformed");
        assert!(format!("{e:#}").contains("\"x\""), "{e:#}");
    }
}
