//! Workload 11 (issue 17): many clients on one broker at once, where the broker's own cost shows.
//!
//! - **produce**: [`PRODUCERS`] producers (each its own librdkafka client and thread, records of
//!   `--fanout-record-bytes` (1 KiB by default), acks=1, linger 5 ms) write to one [`PARTITIONS`]-partition topic for `--produce-secs` or until
//!   `--consume-bytes` are written in all, after an untimed warm-up; the clock runs from the moment every
//!   producer is ready until the last one's last acknowledgement.
//! - **fan-out consume**: [`READERS`] consumers, each its own client with its own group id (nothing is
//!   committed; each is assigned every partition from the beginning, as 8 consumer groups reading the same
//!   topic would be), read that whole backlog at once, from the page cache; the clock runs from the
//!   moment all are ready until the last one has read everything.
//!
//! Each phase reports the total MB/s of record values and the broker's CPU-seconds per GB moved (the
//! produce phase also per million records, the figure that matters for small records): from
//! /proc/PID/stat of the process listening on the bootstrap port when it runs on this machine, else
//! (the in-process broker) this process's CPU outside the rdkafka clients.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::clients::{self, DEADLINE};
use crate::cpu::CpuClock;
use crate::limits::MB;
use crate::opts::Options;
use crate::report::Kind;
use crate::workloads::Measured;

/// The rows this workload reports, in order, for records of `record_bytes`.
pub fn rows(record_bytes: usize) -> Vec<(String, Kind)> {
    let size = match record_bytes {
        1024 => "1 KiB".to_string(),
        n => format!("{n} B"),
    };
    vec![
        (
            format!(
                "fan-out: {PRODUCERS} producers, {PARTITIONS} partitions, {size} acks=1: total"
            ),
            Kind::FanOutProduce,
        ),
        (
            "fan-out: broker CPU-seconds per GB produced".into(),
            Kind::CpuPerGb,
        ),
        (
            format!("fan-out: broker CPU-seconds per million {size} records produced"),
            Kind::CpuPerMillion,
        ),
        (
            format!("fan-out: {READERS} consumer groups read that backlog at once: total"),
            Kind::FanOutConsume,
        ),
        (
            "fan-out: broker CPU-seconds per GB consumed".into(),
            Kind::CpuPerGb,
        ),
    ]
}

const PRODUCERS: usize = 16;
const PARTITIONS: i32 = 64;
const READERS: usize = 8;

fn topic_name(run_id: &str) -> String {
    format!("brook-bench-{run_id}-w11")
}

pub fn fan_out(bootstrap: &str, run_id: &str, o: &Options) -> anyhow::Result<Vec<Measured>> {
    let topic = topic_name(run_id);
    clients::create_topic(bootstrap, &topic, PARTITIONS, &[])?;
    let result = measure(bootstrap, &topic, o);
    clients::delete_topic(bootstrap, &topic);
    result
}

/// CPU-seconds used so far by the broker: the listening process's, or this process's outside the clients.
struct BrokerCpu {
    pid: Option<u32>,
}

impl BrokerCpu {
    fn find(bootstrap: &str) -> BrokerCpu {
        let pid = bootstrap
            .split(',')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok())
            .and_then(listening_pid)
            .filter(|&pid| pid != std::process::id());
        BrokerCpu { pid }
    }

    fn describe(&self) -> String {
        match self.pid {
            Some(pid) => format!("broker CPU from /proc/{pid}/stat"),
            None => {
                "broker CPU: this process outside the rdkafka clients (in-process broker)".into()
            }
        }
    }

    fn start(&self) -> (Option<ProcessCpu>, CpuClock) {
        (self.pid.and_then(process_cpu_secs), CpuClock::now())
    }

    /// Broker CPU-seconds since `start`, and of them the user-space part when the broker is a process of
    /// its own (the rest is the kernel's: socket and page-cache copies, page faults).
    fn since(&self, start: &(Option<ProcessCpu>, CpuClock), secs: f64) -> (f64, Option<f64>) {
        match (self.pid, start.0) {
            (Some(pid), Some(before)) => process_cpu_secs(pid).map_or((0.0, None), |now| {
                (
                    now.user + now.system - before.user - before.system,
                    Some(now.user - before.user),
                )
            }),
            _ => (start.1.since().broker_cores.unwrap_or(0.0) * secs, None),
        }
    }
}

/// The process with a socket listening on `port` (IPv4 or IPv6), found through /proc (needs the right to
/// read other processes' fds: root, or the same user).
fn listening_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let listening = *state == "0A";
            let on_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listening && on_port {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| target.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// A process's CPU time so far, in seconds.
#[derive(Clone, Copy)]
struct ProcessCpu {
    user: f64,
    system: f64,
}

/// utime and stime of a process, in seconds.
fn process_cpu_secs(pid: u32) -> Option<ProcessCpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let tick = if tick > 0 { tick as f64 } else { 100.0 };
    Some(ProcessCpu {
        user: utime / tick,
        system: stime / tick,
    })
}

fn measure(bootstrap: &str, topic: &str, o: &Options) -> anyhow::Result<Vec<Measured>> {
    let cpu = BrokerCpu::find(bootstrap);
    let record_bytes = o.fanout_record_bytes;
    let per_producer = (o.consume_bytes / record_bytes as u64 / PRODUCERS as u64).max(1);
    let ready = Arc::new(Barrier::new(PRODUCERS + 1));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let (bootstrap, topic, ready) =
                (bootstrap.to_string(), topic.to_string(), ready.clone());
            let load = Load {
                time: o.produce_time,
                max_records: per_producer,
                record_bytes,
            };
            std::thread::spawn(move || produce(&bootstrap, &topic, load, &ready))
        })
        .collect();
    ready.wait();
    let started = Instant::now();
    let cpu_start = cpu.start();
    let records = join_all(producers, "producer")?;
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    let produced_bytes = records * record_bytes as u64;
    let (produce_cpu, produce_user) = cpu.since(&cpu_start, secs);
    // The warm-up records are in the backlog too.
    let backlog = records + (PRODUCERS * 1000) as u64;

    let ready = Arc::new(Barrier::new(READERS + 1));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (bootstrap, topic, ready) =
                (bootstrap.to_string(), topic.to_string(), ready.clone());
            std::thread::spawn(move || consume(&bootstrap, &topic, backlog, &ready))
        })
        .collect();
    ready.wait();
    let read_started = Instant::now();
    let cpu_start = cpu.start();
    let read_bytes = join_all(readers, "consumer")?;
    let read_secs = read_started.elapsed().as_secs_f64().max(1e-6);
    let (consume_cpu, _) = cpu.since(&cpu_start, read_secs);
    let gb = |bytes: u64| bytes as f64 / 1e9;
    let figure = |headline: f64, mb_per_s: Option<f64>, note: String| Measured {
        headline,
        mb_per_s,
        records_per_s: None,
        note,
        ..Measured::default()
    };
    let produce_mb_s = produced_bytes as f64 / MB / secs;
    let consume_mb_s = read_bytes as f64 / MB / read_secs;
    Ok(vec![
        figure(
            produce_mb_s,
            Some(produce_mb_s),
            format!(
                "{records} records ({:.0} MB) by {PRODUCERS} producers in {secs:.2} s",
                produced_bytes as f64 / MB
            ),
        ),
        figure(
            produce_cpu / gb(produced_bytes).max(1e-9),
            None,
            format!(
                "{produce_cpu:.2} CPU-s for {:.2} GB in; {}",
                gb(produced_bytes),
                cpu.describe()
            ),
        ),
        figure(
            produce_cpu / (records as f64 / 1e6).max(1e-9),
            None,
            format!(
                "{produce_cpu:.2} CPU-s for {records} records in{}",
                produce_user.map_or(String::new(), |u| format!(
                    " ({u:.2} of it user space: {:.3} CPU-s per million records)",
                    u / (records as f64 / 1e6).max(1e-9)
                ))
            ),
        ),
        figure(
            consume_mb_s,
            Some(consume_mb_s),
            format!(
                "{READERS} readers x {backlog} records ({:.0} MB in all) in {read_secs:.2} s",
                read_bytes as f64 / MB
            ),
        ),
        figure(
            consume_cpu / gb(read_bytes).max(1e-9),
            None,
            format!(
                "{consume_cpu:.2} CPU-s for {:.2} GB out; {}",
                gb(read_bytes),
                cpu.describe()
            ),
        ),
    ])
}

/// What one producer sends: for `time`, at most `max_records` records of `record_bytes`.
#[derive(Clone, Copy)]
struct Load {
    time: Duration,
    max_records: u64,
    record_bytes: usize,
}

/// One producer: a warm-up, then the timed sending once every producer is ready. Returns records sent.
fn produce(bootstrap: &str, topic: &str, load: Load, ready: &Barrier) -> anyhow::Result<u64> {
    let Load {
        time,
        max_records,
        record_bytes,
    } = load;
    let producer = clients::producer(bootstrap, &[("acks", "1"), ("linger.ms", "5")]);
    let producer = match producer {
        Ok(p) => p,
        Err(e) => {
            ready.wait();
            return Err(e);
        }
    };
    let payload = clients::payload(record_bytes);
    let warm = (|| {
        for _ in 0..1000 {
            clients::send(&producer, topic, None, &payload)?;
        }
        clients::flush(&producer)
    })();
    ready.wait();
    warm?;
    let started = Instant::now();
    let mut batch = clients::BatchSender::new(&producer, topic, &payload)?;
    let mut sent = 0u64;
    while sent < max_records && started.elapsed() < time {
        let n = (max_records - sent).min(clients::SEND_BATCH as u64) as usize;
        batch.send(n)?;
        sent += n as u64;
        producer.poll(Duration::ZERO);
    }
    drop(batch);
    clients::flush(&producer)?;
    Ok(sent)
}

/// One reader: its own group id, every partition from the beginning, until `records` are read. Returns the
/// value bytes read.
fn consume(bootstrap: &str, topic: &str, records: u64, ready: &Barrier) -> anyhow::Result<u64> {
    let consumer = clients::consumer(
        bootstrap,
        &[
            ("fetch.wait.max.ms", "100"),
            ("fetch.queue.backoff.ms", "10"),
        ],
    );
    ready.wait();
    // Assigned once all are ready: fetching starts with the clock.
    let consumer = consumer?;
    clients::assign_from_start(&consumer, topic, PARTITIONS)?;
    let deadline = Instant::now() + DEADLINE;
    let (mut got, mut bytes) = (0u64, 0u64);
    while got < records {
        if Instant::now() > deadline {
            bail!("a reader got {got} of {records} records before the deadline");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                got += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => return Err(e).context("fan-out consume"),
            None => {}
        }
    }
    Ok(bytes)
}

/// Waits for every thread and sums their counts; the last failure, if any, fails the phase (after all
/// threads ended, so none is left running).
fn join_all(
    threads: Vec<std::thread::JoinHandle<anyhow::Result<u64>>>,
    what: &str,
) -> anyhow::Result<u64> {
    let mut total = 0u64;
    let mut failure = None;
    for t in threads {
        match t.join() {
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some(anyhow::anyhow!("a {what} thread panicked")),
        }
    }
    failure.map_or(Ok(total), Err)
}
