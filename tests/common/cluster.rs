//! Several brooks forming one cluster on loopback: in-process (a [`TestCluster`] of `Broker`s, stopped or
//! crashed one at a time) or as separate processes (killed with SIGKILL). Each node is a combined
//! broker+controller with its own data directory, an ephemeral client port and a controller port picked
//! before start (the voters must be known to every node up front). Raft and session timings are short so
//! elections and fencing take well under a second or two.

use std::path::{Path, PathBuf};
use std::time::Duration;

use brook::{Broker, Config};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::Metadata;

use super::{DEADLINE, base_config, client_config, init_tracing, poll_until_async};

#[path = "../../examples/brook-bench/ports.rs"]
mod ports;

/// Timings for tests: Kafka's election timeout (a loaded machine must not see spurious elections), heartbeats
/// every 200 ms, a dead broker fenced after 1.5 s.
pub const FAST: &[(&str, &str)] = &[
    ("controller.quorum.election.timeout.ms", "1000"),
    ("broker.heartbeat.interval.ms", "200"),
    ("broker.session.timeout.ms", "1500"),
];

/// A free port on 127.0.0.1, never one this process was given before (`ports::free_port`, shared with
/// brook-bench): another process could still take it first, which fails the start loudly rather than flakily.
pub fn free_port() -> u16 {
    ports::free_port().expect("bind an ephemeral port")
}

/// One node's place in the cluster.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub id: i32,
    pub controller_port: u16,
    pub data_dir: PathBuf,
}

/// The properties of node `spec` in a cluster whose voters are `voters`.
pub fn node_properties(
    spec: &NodeSpec,
    voters: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut props: Vec<(String, String)> = vec![
        ("process.roles".into(), "broker,controller".into()),
        ("node.id".into(), spec.id.to_string()),
        ("controller.quorum.voters".into(), voters.into()),
        ("controller.listener.names".into(), "CONTROLLER".into()),
        (
            "listeners".into(),
            format!(
                "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:{}",
                spec.controller_port
            ),
        ),
        ("log.dirs".into(), spec.data_dir.display().to_string()),
    ];
    for (k, v) in FAST.iter().chain(extra) {
        props.retain(|(key, _)| key != k);
        props.push((k.to_string(), v.to_string()));
    }
    props
}

/// `n` node specs under `root`, and the voters string they share.
pub fn specs(root: &Path, n: i32) -> (Vec<NodeSpec>, String) {
    let specs: Vec<NodeSpec> = (1..=n)
        .map(|id| NodeSpec {
            id,
            controller_port: free_port(),
            data_dir: root.join(format!("node{id}")),
        })
        .collect();
    let voters = specs
        .iter()
        .map(|s| format!("{}@127.0.0.1:{}", s.id, s.controller_port))
        .collect::<Vec<_>>()
        .join(",");
    (specs, voters)
}

/// A cluster of in-process brokers.
pub struct TestCluster {
    pub specs: Vec<NodeSpec>,
    pub voters: String,
    extra: Vec<(String, String)>,
    /// By node id - 1; None while that node is stopped.
    pub nodes: Vec<Option<Broker>>,
    _tmp: tempfile::TempDir,
    /// One cluster at a time per test binary: three brokers per test already fill a 2-core machine, and
    /// elections time out under more.
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Drop for TestCluster {
    /// A failed test unwinds without `shutdown`: stop the brokers' background work so the test ends.
    fn drop(&mut self) {
        for broker in self.nodes.iter().flatten() {
            broker.halt();
        }
    }
}

impl TestCluster {
    /// Starts `n` nodes at once and waits until every one is registered and unfenced.
    pub async fn start(n: i32, extra: &[(&str, &str)]) -> TestCluster {
        init_tracing();
        let serial = ONE_CLUSTER_AT_A_TIME.lock().await;
        let tmp = tempfile::tempdir().expect("temp dir");
        let (specs, voters) = specs(tmp.path(), n);
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut cluster = TestCluster {
            specs,
            voters,
            extra,
            nodes: Vec::new(),
            _tmp: tmp,
            _serial: serial,
        };
        let starts = cluster.specs.clone().into_iter().map(|spec| {
            let config = cluster.config_of(&spec);
            async move { Broker::start(config).await.expect("cluster node starts") }
        });
        cluster.nodes = futures_util::future::join_all(starts)
            .await
            .into_iter()
            .map(Some)
            .collect();
        cluster.wait_for_brokers(n as usize).await;
        cluster
    }

    pub fn config_of(&self, spec: &NodeSpec) -> Config {
        let extra: Vec<(&str, &str)> = self
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let props = node_properties(spec, &self.voters, &extra);
        let overrides: Vec<(&str, &str)> = props
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        base_config(&spec.data_dir, &overrides)
    }

    /// The bootstrap address of node `id`.
    pub fn bootstrap(&self, id: i32) -> String {
        self.node(id).bootstrap_servers()
    }

    /// Every running node's address, comma separated.
    pub fn bootstrap_all(&self) -> String {
        self.nodes
            .iter()
            .flatten()
            .map(Broker::bootstrap_servers)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node(&self, id: i32) -> &Broker {
        self.nodes[(id - 1) as usize]
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is stopped"))
    }

    /// A running node other than `not`.
    pub fn other_than(&self, not: i32) -> i32 {
        (1..=self.nodes.len() as i32)
            .find(|&id| id != not && self.nodes[(id - 1) as usize].is_some())
            .expect("another node runs")
    }

    /// Stops node `id` cleanly (controlled shutdown first).
    pub async fn stop(&mut self, id: i32) {
        let broker = self.nodes[(id - 1) as usize].take().expect("node runs");
        broker.shutdown().await.expect("clean shutdown");
    }

    /// Stops node `id` as a crash would (no controlled shutdown, nothing flushed).
    pub async fn crash(&mut self, id: i32) {
        let broker = self.nodes[(id - 1) as usize].take().expect("node runs");
        broker.crash().await;
    }

    /// Starts node `id` again on its data directory.
    pub async fn restart(&mut self, id: i32) {
        let spec = self.specs[(id - 1) as usize].clone();
        let broker = Broker::start(self.config_of(&spec))
            .await
            .expect("node restarts");
        self.nodes[(id - 1) as usize] = Some(broker);
    }

    /// Waits until the metadata seen through any running node lists `n` brokers.
    pub async fn wait_for_brokers(&self, n: usize) {
        let bootstrap = self.bootstrap_all();
        poll_until_async(DEADLINE, &format!("{n} brokers in the metadata"), || {
            let bootstrap = bootstrap.clone();
            async move {
                let metadata = fetch_metadata(&bootstrap, None).await.ok()?;
                (metadata.brokers().len() == n).then_some(())
            }
        })
        .await
    }

    /// Stops every running node at once (one by one, the last ones would wait for a quorum that is gone).
    pub async fn shutdown(mut self) {
        let nodes: Vec<Broker> = self.nodes.iter_mut().filter_map(Option::take).collect();
        let stops = nodes
            .into_iter()
            .map(|broker| async move { broker.shutdown().await.expect("clean shutdown") });
        futures_util::future::join_all(stops).await;
    }
}

/// Metadata through `bootstrap` (all topics, or one), off the async runtime.
pub async fn fetch_metadata(
    bootstrap: &str,
    topic: Option<&str>,
) -> Result<Metadata, rdkafka::error::KafkaError> {
    let bootstrap = bootstrap.to_string();
    let topic = topic.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client_config(&bootstrap).create().expect("metadata client");
        consumer.fetch_metadata(topic.as_deref(), Duration::from_secs(5))
    })
    .await
    .expect("metadata task")
}
