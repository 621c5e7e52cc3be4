//! Workload 9: what replication costs. One run starts a three-node cluster of brook processes (racks r1, r2,
//! r3, the rack-aware replica selector), then measures, round after round (`--repeat`):
//! - 1 KiB acks=all produce to an RF=1 topic and to an RF=3 topic with `min.insync.replicas=2`, both led by
//!   node 1 (manual assignment, leader = first replica), so the producer talks to one broker in both cases
//!   and the difference is the followers' fetches that every acks=all write waits for;
//! - a consumer reading the RF=3 backlog from the leader (no `client.rack`) and one reading it from the
//!   follower in its rack (`client.rack=r2`, KIP-392), checked with librdkafka's per-broker statistics.
//!
//! The results are ratios of runs made back to back on the same machine (rf3/rf1, follower/leader), the
//! median over rounds: absolute figures on a shared 2-core machine move with everything else running.

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::statistics::Statistics;

use crate::clients::{self, DEADLINE};
use crate::cpu::CpuClock;
use crate::limits::MB;
use crate::opts::Options;
use crate::workloads::{Measured, Spawned, free_port};

/// Partitions of both topics: enough for librdkafka to keep several batches in flight to the one leader.
pub const PARTITIONS: i32 = 8;

/// The rows of workload 9, in this order.
pub const ROWS: [&str; 4] = [
    "replication: produce 1 KiB, acks=all, RF=1, 8 partitions led by node 1",
    "replication: same to RF=3, min.insync.replicas=2 (result: rf3/rf1)",
    "replication: consume the RF=3 backlog from the leader",
    "replication: consume it from a follower, client.rack (result: follower/leader)",
];

/// The follower the rack-aware consumer should read from: node 2, in rack r2 (node 1 leads every partition).
const FOLLOWER: i32 = 2;
const FOLLOWER_RACK: &str = "r2";

/// The selector class that turns on fetch from follower (KIP-392).
const RACK_SELECTOR: &str = "org.apache.kafka.common.replica.RackAwareReplicaSelector";

/// One brook process of the cluster.
struct Node {
    id: i32,
    port: u16,
    process: Spawned,
}

/// Three combined (broker and controller) brook processes; killed on drop (their data is temporary).
struct Cluster {
    nodes: Vec<Node>,
}

/// Node `id`'s data directory under `work`.
fn node_dir(work: &Path, id: i32) -> PathBuf {
    work.join(format!("w9-node{id}"))
}

/// Node `id`'s log (its stderr) under `work`.
fn node_log(work: &Path, id: i32) -> PathBuf {
    work.join(format!("w9-node{id}.log"))
}

fn remove_node_dirs(work: &Path) {
    for id in 1..=3 {
        let _ = std::fs::remove_dir_all(node_dir(work, id));
    }
}

/// True when a brook log says a listener's port was taken (`BrokerError::Bind` on EADDRINUSE).
pub fn port_taken(log: &str) -> bool {
    log.contains("cannot listen on") && log.contains("Address already in use")
}

/// A start lost its ports to another process between [`free_port`] and the node's bind.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct PortTaken(String);

impl Cluster {
    /// Starts the cluster; again on fresh ports (at most twice more) when a node found one of its ports taken:
    /// a port is picked by binding and releasing it, and anything running beside may take it first.
    fn start(bin: &Path, work: &Path) -> anyhow::Result<Cluster> {
        let mut attempt = 1;
        loop {
            match Cluster::start_once(bin, work) {
                Err(e) if attempt < 3 && e.is::<PortTaken>() => {
                    eprintln!("brook-bench:   {e}; starting again on other ports");
                    remove_node_dirs(work);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn start_once(bin: &Path, work: &Path) -> anyhow::Result<Cluster> {
        let ports: Vec<(u16, u16)> = (0..3)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<anyhow::Result<_>>()?;
        let voters = ports
            .iter()
            .enumerate()
            .map(|(i, (_, c))| format!("{}@127.0.0.1:{c}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (i, (port, controller)) in ports.iter().enumerate() {
            let id = i as i32 + 1;
            let data = node_dir(work, id);
            let log = node_log(work, id);
            let log_file =
                std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
            let overrides = [
                "process.roles=broker,controller".to_string(),
                format!("node.id={id}"),
                format!("controller.quorum.voters={voters}"),
                format!(
                    "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}"
                ),
                "controller.listener.names=CONTROLLER".into(),
                format!(
                    "log.dirs={}",
                    data.to_str().context("data dir is not UTF-8")?
                ),
                // Metrics on an ephemeral port: the default port may be taken by a broker running beside.
                "metrics.listener=127.0.0.1:0".into(),
                format!("broker.rack=r{id}"),
                format!("replica.selector.class={RACK_SELECTOR}"),
                "group.initial.rebalance.delay.ms=0".into(),
            ];
            let mut cmd = Command::new(bin);
            for o in &overrides {
                cmd.args(["--override", o]);
            }
            let child = cmd
                // BENCH_NODE_LOG: a filter for the nodes' logs when a run needs explaining.
                .env(
                    "RUST_LOG",
                    std::env::var("BENCH_NODE_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .with_context(|| format!("spawn {}", bin.display()))?;
            nodes.push(Node {
                id,
                port: *port,
                process: Spawned(child),
            });
        }
        let mut cluster = Cluster { nodes };
        let started = Instant::now();
        for node in &mut cluster.nodes {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], node.port));
            while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
                if let Some(status) = node.process.0.try_wait()? {
                    let log = std::fs::read_to_string(node_log(work, node.id)).unwrap_or_default();
                    let message = format!(
                        "node {} exited with {status} before listening: {log}",
                        node.id
                    );
                    if port_taken(&log) {
                        return Err(PortTaken(message).into());
                    }
                    bail!(message);
                }
                if started.elapsed() > DEADLINE {
                    bail!(
                        "node {} did not listen on {addr} within {DEADLINE:?}",
                        node.id
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // A node that exits after another process took its port leaves that process answering on it.
        if let Err(e) = cluster.wait_for_brokers(3) {
            let tails = cluster.log_tails(work);
            if port_taken(&tails) {
                return Err(PortTaken(format!("{e}\n{tails}")).into());
            }
            bail!("{e}\n{tails}");
        }
        Ok(cluster)
    }

    fn bootstrap(&self, id: i32) -> String {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| format!("127.0.0.1:{}", n.port))
            .unwrap_or_default()
    }

    /// The last lines of every node's log, for a failure to say what the nodes saw.
    fn log_tails(&mut self, work: &Path) -> String {
        const LINES: usize = 40;
        self.nodes
            .iter_mut()
            .map(|n| {
                let log = std::fs::read_to_string(node_log(work, n.id)).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(LINES)..].join("\n");
                let exited = match n.process.0.try_wait() {
                    Ok(Some(status)) => format!(" (exited: {status})"),
                    _ => String::new(),
                };
                format!("--- node {}{exited}, last {LINES} log lines:\n{tail}", n.id)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until node 1's metadata lists `count` brokers (all registered and unfenced).
    fn wait_for_brokers(&mut self, count: usize) -> anyhow::Result<()> {
        let probe: BaseConsumer = clients::client_config(&self.bootstrap(1))
            .create()
            .context("create metadata probe")?;
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(md) = probe.fetch_metadata(None, Duration::from_secs(5))
                && md.brokers().len() >= count
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the cluster never listed {count} brokers");
            }
            for node in &mut self.nodes {
                if let Some(status) = node.process.0.try_wait()? {
                    bail!("node {} exited with {status}", node.id);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// CPU seconds (user + system) each node has used so far, from /proc/PID/stat.
    fn cpu_secs(&self) -> Vec<f64> {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        self.nodes
            .iter()
            .map(|n| {
                std::fs::read_to_string(format!("/proc/{}/stat", n.process.0.id()))
                    .ok()
                    .and_then(|s| {
                        // Fields after the parenthesised command name; utime and stime are 14 and 15.
                        let rest = s.rsplit_once(')')?.1;
                        let f: Vec<&str> = rest.split_whitespace().collect();
                        let user: f64 = f.get(11)?.parse().ok()?;
                        let system: f64 = f.get(12)?.parse().ok()?;
                        Some((user + system) / ticks)
                    })
                    .unwrap_or(0.0)
            })
            .collect()
    }
}

/// Cores each node used between two [`Cluster::cpu_secs`] readings, as "n1 0.9, n2 0.3, n3 0.3".
fn cores_between(before: &[f64], after: &[f64], secs: f64) -> String {
    before
        .iter()
        .zip(after)
        .enumerate()
        .map(|(i, (b, a))| format!("n{} {:.2}", i + 1, (a - b) / secs.max(1e-6)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates `topic` with every partition on `replicas` (the first is the leader) and topic `configs`.
fn create_assigned(
    bootstrap: &str,
    topic: &str,
    replicas: &[i32],
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = clients::client_config(bootstrap)
        .create()
        .context("create admin client")?;
    let assignment: Vec<&[i32]> = (0..PARTITIONS).map(|_| replicas).collect();
    let mut new = NewTopic::new(topic, PARTITIONS, TopicReplication::Variable(&assignment));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("admin runtime")?;
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(60)));
    let results = rt
        .block_on(admin.create_topics(&[new], &opts))
        .with_context(|| format!("CreateTopics {topic}"))?;
    for r in results {
        if let Err((name, code)) = r {
            bail!("CreateTopics {name}: {code:?}");
        }
    }
    wait_for_isr(bootstrap, topic, replicas)
}

/// Polls metadata until every partition of `topic` is led by `replicas[0]` with all `replicas` in sync.
fn wait_for_isr(bootstrap: &str, topic: &str, replicas: &[i32]) -> anyhow::Result<()> {
    let probe: BaseConsumer = clients::client_config(bootstrap)
        .create()
        .context("create metadata probe")?;
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(md) = probe.fetch_metadata(Some(topic), Duration::from_secs(5))
            && let Some(t) = md.topics().iter().find(|t| t.name() == topic)
            && t.error().is_none()
            && t.partitions().len() == PARTITIONS as usize
            && t.partitions()
                .iter()
                .all(|p| p.leader() == replicas[0] && replicas.iter().all(|r| p.isr().contains(r)))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "topic {topic} never had leader {} and ISR {replicas:?}",
                replicas[0]
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One timed acks=all produce phase to a fresh topic on `replicas`; the topic is kept (the caller
/// deletes it).
fn produce_phase(
    cluster: &Cluster,
    topic: &str,
    replicas: &[i32],
    configs: &[(&str, &str)],
    time: Duration,
) -> anyhow::Result<(clients::ProduceRun, String)> {
    let bootstrap = cluster.bootstrap(1);
    create_assigned(&bootstrap, topic, replicas, configs)?;
    let producer = clients::producer(&bootstrap, &[("acks", "all"), ("linger.ms", "5")])?;
    let before = cluster.cpu_secs();
    let run = clients::produce_for(&producer, topic, 1024, time, u64::MAX)?;
    let cores = cores_between(&before, &cluster.cpu_secs(), run.secs);
    Ok((run, cores))
}

/// Bytes librdkafka received from each broker (by node id), from the newest statistics report.
#[derive(Default)]
struct RxByBroker(Mutex<HashMap<i32, u64>>);

impl ClientContext for RxByBroker {
    fn stats(&self, statistics: Statistics) {
        let by_node = statistics
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0)
            .map(|b| (b.nodeid, b.rxbytes))
            .collect();
        if let Ok(mut m) = self.0.lock() {
            *m = by_node;
        }
    }
}

impl ConsumerContext for RxByBroker {}

/// What one consume of the backlog measured.
struct ConsumeRun {
    bytes: u64,
    records: u64,
    secs: f64,
    first_record_ms: f64,
    /// Bytes received per broker node id over the whole consume (librdkafka statistics).
    rx: HashMap<i32, u64>,
    cpu: crate::cpu::CpuUse,
    cores: String,
}

/// Reads all `expected` records of `topic` from offset 0 through node 1, as a consumer in `rack` (none: no
/// `client.rack`, so it fetches from the leaders).
fn consume_phase(
    cluster: &Cluster,
    topic: &str,
    expected: u64,
    rack: Option<&str>,
) -> anyhow::Result<ConsumeRun> {
    let mut cfg: ClientConfig = clients::client_config(&cluster.bootstrap(1));
    cfg.set(
        "group.id",
        format!(
            "brook-bench-w9-{}-{}",
            std::process::id(),
            rack.unwrap_or("none")
        ),
    )
    .set("enable.auto.commit", "false")
    .set("enable.auto.offset.store", "false")
    .set("enable.partition.eof", "false")
    .set("auto.offset.reset", "earliest")
    .set("fetch.wait.max.ms", "100")
    .set("queued.max.messages.kbytes", "262144")
    .set("fetch.queue.backoff.ms", "10")
    .set("statistics.interval.ms", "200");
    if let Some(r) = rack {
        cfg.set("client.rack", r);
    }
    let consumer: BaseConsumer<RxByBroker> = cfg
        .create_with_context(RxByBroker::default())
        .context("create consumer")?;
    let assigned = Instant::now();
    clients::assign_from_start(&consumer, topic, PARTITIONS)?;
    let deadline = assigned + DEADLINE;
    let mut first: Option<(Instant, u64, CpuClock, Vec<f64>)> = None;
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
                    first = Some((Instant::now(), bytes, CpuClock::now(), cluster.cpu_secs()));
                }
            }
            Some(Err(e)) => bail!("consume: {e}"),
            None => {}
        }
    }
    let (first_at, first_bytes, cpu, before) = first.context("no record consumed")?;
    let secs = first_at.elapsed().as_secs_f64().max(1e-6);
    let cpu = cpu.since();
    let cores = cores_between(&before, &cluster.cpu_secs(), secs);
    // One more statistics report, so the per-broker counts include the last fetches.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_millis(500) {
        consumer.poll(Duration::from_millis(50));
    }
    let rx = consumer
        .context()
        .0
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    Ok(ConsumeRun {
        bytes: bytes - first_bytes,
        records: got - 1,
        secs,
        first_record_ms: first_at.duration_since(assigned).as_secs_f64() * 1e3,
        rx,
        cpu,
        cores,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The index of the round whose value is the median of `v`.
fn median_index(v: &[f64]) -> usize {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|a, b| v[*a].total_cmp(&v[*b]));
    idx.get(v.len() / 2).copied().unwrap_or(0)
}

fn list(v: &[f64], digits: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Workload 9 on a cluster of `bin` processes under `work`; one [`Measured`] per [`ROWS`] entry.
pub fn replication(bin: &Path, work: &Path, o: &Options) -> anyhow::Result<Vec<Measured>> {
    eprintln!("brook-bench: workload 9: starting a three-node cluster");
    let cluster = Cluster::start(bin, work)?;
    let result = measure(&cluster, o);
    drop(cluster);
    remove_node_dirs(work);
    result
}

fn measure(cluster: &Cluster, o: &Options) -> anyhow::Result<Vec<Measured>> {
    let bootstrap = cluster.bootstrap(1);
    let rounds = o.repeat.max(1);
    let mut rf1 = Vec::new();
    let mut rf3 = Vec::new();
    let mut rf3_topic: Option<(String, u64)> = None;
    for round in 1..=rounds {
        eprintln!("brook-bench: workload 9 produce, round {round} of {rounds}");
        let t1 = format!("brook-bench-w9-rf1-{round}");
        let r1 = produce_phase(cluster, &t1, &[1], &[], o.produce_time);
        clients::delete_topic(&bootstrap, &t1);
        let r1 = r1?;
        // The previous round's RF=3 topic goes first; the last one stays as the backlog to consume.
        if let Some((old, _)) = rf3_topic.take() {
            clients::delete_topic(&bootstrap, &old);
        }
        let t3 = format!("brook-bench-w9-rf3-{round}");
        let r3 = produce_phase(
            cluster,
            &t3,
            &[1, 2, 3],
            &[("min.insync.replicas", "2")],
            o.produce_time,
        );
        // produce_for's 1,000 warm-up records are in the topic too.
        rf3_topic = Some((
            t3.clone(),
            r3.as_ref().map(|(r, _)| r.records + 1000).unwrap_or(0),
        ));
        let r3 = r3?;
        eprintln!(
            "brook-bench:   RF=1 {:.0} MB/s, RF=3 {:.0} MB/s ({:.2}x)",
            r1.0.bytes as f64 / MB / r1.0.secs,
            r3.0.bytes as f64 / MB / r3.0.secs,
            (r3.0.bytes as f64 / r3.0.secs) / (r1.0.bytes as f64 / r1.0.secs).max(1e-9)
        );
        rf1.push(r1);
        rf3.push(r3);
    }
    let (topic, expected) = rf3_topic.context("no RF=3 backlog")?;
    let mut leader = Vec::new();
    let mut follower = Vec::new();
    let consumed = (|| -> anyhow::Result<()> {
        for round in 1..=rounds {
            eprintln!("brook-bench: workload 9 consume, round {round} of {rounds}");
            let l = consume_phase(cluster, &topic, expected, None)?;
            let f = consume_phase(cluster, &topic, expected, Some(FOLLOWER_RACK))?;
            // The point of the row: the follower consumer's records came from node 2, not the leader.
            let from_follower = f.rx.get(&FOLLOWER).copied().unwrap_or(0);
            let from_leader = f.rx.get(&1).copied().unwrap_or(0);
            anyhow::ensure!(
                from_follower > f.bytes / 2 && from_follower > from_leader,
                "the client.rack={FOLLOWER_RACK} consumer did not fetch from node {FOLLOWER}, a follower: \
                 bytes received by node {:?}",
                f.rx
            );
            eprintln!(
                "brook-bench:   leader {:.0} MB/s, follower {:.0} MB/s ({:.2}x)",
                l.bytes as f64 / MB / l.secs,
                f.bytes as f64 / MB / f.secs,
                (f.bytes as f64 / f.secs) / (l.bytes as f64 / l.secs).max(1e-9)
            );
            leader.push(l);
            follower.push(f);
        }
        Ok(())
    })();
    clients::delete_topic(&bootstrap, &topic);
    consumed?;

    let mbs = |r: &clients::ProduceRun| r.bytes as f64 / MB / r.secs;
    let rf1_mbs: Vec<f64> = rf1.iter().map(|(r, _)| mbs(r)).collect();
    let rf3_mbs: Vec<f64> = rf3.iter().map(|(r, _)| mbs(r)).collect();
    let produce_ratios: Vec<f64> = rf1_mbs
        .iter()
        .zip(&rf3_mbs)
        .map(|(a, b)| b / a.max(1e-9))
        .collect();
    let cmbs = |r: &ConsumeRun| r.bytes as f64 / MB / r.secs;
    let leader_mbs: Vec<f64> = leader.iter().map(cmbs).collect();
    let follower_mbs: Vec<f64> = follower.iter().map(cmbs).collect();
    let consume_ratios: Vec<f64> = leader_mbs
        .iter()
        .zip(&follower_mbs)
        .map(|(a, b)| b / a.max(1e-9))
        .collect();

    let produced = |(run, cores): &(clients::ProduceRun, String), headline: f64, note: String| {
        let mut cpu = run.cpu;
        cpu.broker_cores = None;
        Measured {
            records_per_s: Some(run.records as f64 / run.secs),
            mb_per_s: Some(run.bytes as f64 / MB / run.secs),
            latency: None,
            cpu: Some(cpu),
            headline,
            note: format!(
                "{note}; that round: {} records in {:.2} s, brokers used cores {cores}",
                run.records, run.secs
            ),
        }
    };
    let consumed = |r: &ConsumeRun, headline: f64, note: String| {
        let mut cpu = r.cpu;
        cpu.broker_cores = None;
        let mut rx: Vec<(i32, u64)> = r.rx.iter().map(|(k, v)| (*k, *v)).collect();
        rx.sort_unstable();
        Measured {
            records_per_s: Some(r.records as f64 / r.secs),
            mb_per_s: Some(r.bytes as f64 / MB / r.secs),
            latency: None,
            cpu: Some(cpu),
            headline,
            note: format!(
                "{note}; that round: {} records in {:.2} s after a first record at {:.0} ms, brokers \
                 used cores {}; MB received per node: {}",
                r.records,
                r.secs,
                r.first_record_ms,
                r.cores,
                rx.iter()
                    .map(|(n, b)| format!("n{n} {:.1}", *b as f64 / MB))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    };
    let i1 = median_index(&rf1_mbs);
    let i3 = median_index(&produce_ratios);
    let il = median_index(&leader_mbs);
    let ic = median_index(&consume_ratios);
    Ok(vec![
        produced(
            &rf1[i1],
            median(rf1_mbs.clone()),
            format!(
                "median MB/s of {rounds} rounds ({}), linger 5 ms",
                list(&rf1_mbs, 0)
            ),
        ),
        produced(
            &rf3[i3],
            median(produce_ratios.clone()),
            format!(
                "median of the per-round ratios ({}); RF=3 MB/s per round: {}",
                list(&produce_ratios, 2),
                list(&rf3_mbs, 0)
            ),
        ),
        consumed(
            &leader[il],
            median(leader_mbs.clone()),
            format!(
                "median MB/s of {rounds} rounds ({}), the last round's RF=3 topic ({expected} records)",
                list(&leader_mbs, 0)
            ),
        ),
        consumed(
            &follower[ic],
            median(consume_ratios.clone()),
            format!(
                "client.rack={FOLLOWER_RACK} (node {FOLLOWER}, a follower); median of the per-round \
                 ratios ({}); MB/s per round: {}",
                list(&consume_ratios, 2),
                list(&follower_mbs, 0)
            ),
        ),
    ])
}
