//! Several `brook` processes forming one cluster, for faults an in-process cluster cannot make: SIGKILL
//! (nothing of the process survives, not even its sockets' buffers), SIGTERM (the binary's own signal path
//! and exit code), and network partitions (each node in a network namespace of its own, see [`Netns`]).
//!
//! Every node is a combined broker+controller with fixed client and controller ports (picked before the
//! first start, so a restarted node keeps its address and clients their bootstrap list) and a data
//! directory that outlives restarts. Each process logs to `node<id>.log` in the cluster's temp directory
//! (kept across restarts, appended); a failing test prints the tails.

use std::fs::OpenOptions;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{ApiKey, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::DEADLINE;
use super::cluster::{FAST, free_port};
use super::process::brook_command;
use super::raw::try_request;

/// How long a broker may take from spawn to "listening on" (it waits for nothing but its own disk).
const START_LIMIT: Duration = Duration::from_secs(30);

/// One node of a [`ProcessCluster`].
#[derive(Debug)]
pub struct ProcessNode {
    pub id: i32,
    /// The address clients and peers reach it on (127.0.0.1, or its namespace's address).
    pub host: String,
    pub client_port: u16,
    pub controller_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// The running process; None while stopped.
    child: Option<Child>,
    /// Where this incarnation's lines start in `log_path`.
    log_from: u64,
}

impl ProcessNode {
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.client_port)
    }
}

/// Brooks as separate processes; every running one is killed when this drops.
pub struct ProcessCluster {
    pub nodes: Vec<ProcessNode>,
    pub voters: String,
    extra: Vec<(String, String)>,
    netns: Option<Netns>,
    pub root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl ProcessCluster {
    /// Starts `n` nodes on 127.0.0.1 and waits until each one listens (not until they registered: see
    /// [`ProcessCluster::wait_for_brokers`]).
    pub fn start(n: i32, extra: &[(&str, &str)]) -> ProcessCluster {
        Self::start_with(n, extra, None)
    }

    /// Starts `n` nodes, inside `netns`'s namespaces when given (node `id` in namespace `id`).
    pub fn start_with(n: i32, extra: &[(&str, &str)], netns: Option<Netns>) -> ProcessCluster {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().to_path_buf();
        let nodes: Vec<ProcessNode> = (1..=n)
            .map(|id| {
                let (host, client_port, controller_port) = match &netns {
                    // Each namespace has its own port space: the well-known ports are free there.
                    Some(ns) => (ns.addr(id), 9092, 9093),
                    None => ("127.0.0.1".to_string(), free_port(), free_port()),
                };
                ProcessNode {
                    id,
                    host,
                    client_port,
                    controller_port,
                    data_dir: root.join(format!("node{id}")),
                    log_path: root.join(format!("node{id}.log")),
                    child: None,
                    log_from: 0,
                }
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|n| format!("{}@{}:{}", n.id, n.host, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = ProcessCluster {
            nodes,
            voters,
            extra: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            netns,
            root,
            _tmp: Some(tmp),
        };
        // All at once: a node waits for a quorum of voters before it can register.
        for id in 1..=n {
            cluster.spawn(id);
        }
        for id in 1..=n {
            cluster.wait_listening(id);
        }
        cluster
    }

    pub fn node(&self, id: i32) -> &ProcessNode {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: i32) -> &mut ProcessNode {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn bootstrap(&self, id: i32) -> String {
        self.node(id).bootstrap()
    }

    /// Every node's address (running or not: clients skip the dead ones), comma separated.
    pub fn bootstrap_all(&self) -> String {
        self.nodes
            .iter()
            .map(ProcessNode::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The addresses of the running nodes other than `not`.
    pub fn bootstrap_except(&self, not: i32) -> String {
        self.nodes
            .iter()
            .filter(|n| n.id != not && n.child.is_some())
            .map(ProcessNode::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn is_running(&self, id: i32) -> bool {
        self.node(id).child.is_some()
    }

    /// The `--override` properties of node `id`.
    pub fn properties(&self, id: i32) -> Vec<(String, String)> {
        let node = self.node(id);
        let mut props: Vec<(String, String)> = vec![
            ("process.roles".into(), "broker,controller".into()),
            ("node.id".into(), id.to_string()),
            ("controller.quorum.voters".into(), self.voters.clone()),
            ("controller.listener.names".into(), "CONTROLLER".into()),
            (
                "listeners".into(),
                format!(
                    "PLAINTEXT://{h}:{},CONTROLLER://{h}:{}",
                    node.client_port,
                    node.controller_port,
                    h = node.host
                ),
            ),
            ("log.dirs".into(), node.data_dir.display().to_string()),
        ];
        let extra = self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        for (k, v) in FAST.iter().copied().chain(extra) {
            props.retain(|(key, _)| key != k);
            props.push((k.to_string(), v.to_string()));
        }
        props
    }

    /// Starts node `id`'s process on its data directory (it must not be running).
    pub fn spawn(&mut self, id: i32) {
        assert!(!self.is_running(id), "node {id} already runs");
        let props = self.properties(id);
        let mut command = match &self.netns {
            None => brook_command(),
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", &ns.namespace(id)]);
                command.arg(env!("CARGO_BIN_EXE_brook"));
                for (name, _) in std::env::vars() {
                    if name.starts_with("BROOK_") {
                        command.env_remove(name);
                    }
                }
                command.env("BROOK_METRICS_LISTENER", "127.0.0.1:0");
                command
            }
        };
        for (k, v) in props {
            command.arg("--override").arg(format!("{k}={v}"));
        }
        let node = self.node_mut(id);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .expect("open the node's log");
        node.log_from = log.metadata().expect("log metadata").len();
        let child = command
            .env(
                "RUST_LOG",
                std::env::var("BROOK_TEST_NODE_LOG")
                    .unwrap_or_else(|_| "info,openraft=error".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn brook");
        node.child = Some(child);
    }

    /// Waits until node `id`'s current incarnation announced its listener; panics with its log if it
    /// exited or took longer than [`START_LIMIT`].
    pub fn wait_listening(&mut self, id: i32) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if self.log_since_start(id).contains("listening on ") {
                return;
            }
            let exited = self
                .node_mut(id)
                .child
                .as_mut()
                .expect("node runs")
                .try_wait()
                .expect("try_wait");
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "node {id} did not start ({exited:?}):\n{}",
                    self.log_since_start(id)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Spawns node `id` again and waits until it listens.
    pub fn restart(&mut self, id: i32) {
        self.spawn(id);
        self.wait_listening(id);
    }

    /// The process id of node `id`.
    pub fn pid(&self, id: i32) -> i32 {
        self.node(id).child.as_ref().expect("node runs").id() as i32
    }

    /// SIGKILL: the process ends at once, nothing flushed, no controlled shutdown.
    pub fn kill(&mut self, id: i32) {
        let mut child = self.node_mut(id).child.take().expect("node runs");
        child.kill().expect("SIGKILL brook");
        child.wait().expect("reap brook");
    }

    /// Sends SIGTERM to node `id` and leaves it running (see [`ProcessCluster::wait_exit`]).
    pub fn terminate(&self, id: i32) {
        let rc = unsafe { libc::kill(self.pid(id), libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM node {id}");
    }

    /// The exit status of node `id` if it has exited (then it counts as stopped).
    pub fn try_exit(&mut self, id: i32) -> Option<ExitStatus> {
        let node = self.node_mut(id);
        let status = node.child.as_mut()?.try_wait().expect("try_wait")?;
        node.child = None;
        Some(status)
    }

    /// Waits until node `id` exits (within `limit`, else panics with its log).
    pub fn wait_exit(&mut self, id: i32, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_exit(id) {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "node {id} did not exit within {limit:?}:\n{}",
                    self.log_since_start(id)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What node `id` logged since its latest start.
    pub fn log_since_start(&self, id: i32) -> String {
        let node = self.node(id);
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&node.log_path) {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            let from = (node.log_from as usize).min(bytes.len());
            text = String::from_utf8_lossy(&bytes[from..]).into_owned();
        }
        text
    }

    /// The last `lines` lines of every node's log, for a failure message.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let text = std::fs::read_to_string(&node.log_path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- node {} ---\n", node.id));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// The quorum leader and its epoch as node `id` reports them (DescribeQuorum, api 55); None while
    /// it knows no leader or does not answer.
    pub fn quorum_leader(&self, id: i32) -> Option<(i32, i32)> {
        describe_quorum(&self.bootstrap(id)).ok().and_then(|p| {
            (p.error_code == 0 && p.leader_id.0 >= 0).then_some((p.leader_id.0, p.leader_epoch))
        })
    }

    /// Waits until node `via` names a quorum leader other than `not` (any leader when None).
    pub fn wait_quorum_leader(&self, via: i32, not: Option<i32>, limit: Duration) -> (i32, i32) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some((leader, epoch)) = self.quorum_leader(via)
                && Some(leader) != not
            {
                return (leader, epoch);
            }
            assert!(
                Instant::now() < deadline,
                "no quorum leader other than {not:?} seen through node {via} within {limit:?}\n{}",
                self.log_tails(20)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The namespaces the nodes run in (panics on a loopback cluster).
    pub fn netns(&self) -> &Netns {
        self.netns
            .as_ref()
            .expect("a cluster started in namespaces")
    }

    /// Like [`ProcessCluster::wait_quorum_leader`] through several nodes, a fresh DescribeQuorum every 25 ms
    /// each (one to a node still forwarding to an unreachable old leader hangs for the request timeout, so
    /// waiting for each answer in turn would measure that timeout, not the election): the first answer
    /// naming a leader other than `not`.
    pub fn wait_quorum_leader_any(&self, vias: &[i32], not: i32, limit: Duration) -> (i32, i32) {
        let (tx, rx) = std::sync::mpsc::channel();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            for &via in vias {
                let (tx, addr) = (tx.clone(), self.bootstrap(via));
                std::thread::spawn(move || {
                    if let Ok(p) = describe_quorum(&addr)
                        && p.error_code == 0
                        && p.leader_id.0 >= 0
                        && p.leader_id.0 != not
                    {
                        let _ = tx.send((p.leader_id.0, p.leader_epoch));
                    }
                });
            }
            if let Ok(answer) = rx.recv_timeout(Duration::from_millis(25)) {
                return answer;
            }
        }
        panic!(
            "no quorum leader other than {not} seen through {vias:?} within {limit:?}\n{}",
            self.log_tails(20)
        )
    }

    /// Where node `id` keeps the metadata log.
    pub fn metadata_dir(&self, id: i32) -> PathBuf {
        self.node(id).data_dir.join("__cluster_metadata-0")
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(40));
            // BROOK_TEST_KEEP=1 keeps the data directories and full logs of a failed test.
            if std::env::var_os("BROOK_TEST_KEEP").is_some()
                && let Some(tmp) = self._tmp.take()
            {
                eprintln!("kept {}", tmp.keep().display());
            }
        }
    }
}

/// DescribeQuorum v2 for `__cluster_metadata` partition 0, through `addr`: that partition's answer.
pub fn describe_quorum(
    addr: &str,
) -> Result<kafka_protocol::messages::describe_quorum_response::PartitionData, String> {
    let request = DescribeQuorumRequest::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
    ]);
    let response: DescribeQuorumResponse = try_request(addr, ApiKey::DescribeQuorum, 2, &request)?;
    if response.error_code != 0 {
        return Err(format!("DescribeQuorum error {}", response.error_code));
    }
    response
        .topics
        .into_iter()
        .next()
        .and_then(|t| t.partitions.into_iter().next())
        .ok_or_else(|| "DescribeQuorum answered no partition".to_string())
}

/// Files directly in `dir` (names), for checks on the metadata log directory.
pub fn file_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Network namespaces `<prefix>n1..n<count>` on a bridge `<prefix>br`, node `i` at `10.<a>.<b>.i/24`, the
/// bridge (the test process's side) at `.254`. Needs root; removed on drop. Faults are nftables rules in
/// a node's namespace (table `inet fault`), so a fault never touches the host's own rules.
pub struct Netns {
    prefix: String,
    subnet: String,
    count: i32,
}

/// Why namespaces cannot be used here (not root, or `ip`/`nft` missing); None when they can.
pub fn netns_unavailable() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!(
                "`{tool}` is not installed (apt-get install iproute2 nftables)"
            ));
        }
    }
    None
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Creates `count` namespaces joined by a bridge. Names and subnet come from this process id, so two
    /// test processes never collide.
    pub fn create(count: i32) -> Netns {
        let pid = std::process::id();
        let netns = Netns {
            prefix: format!("bk{}", pid % 100_000),
            subnet: format!("10.{}.{}", 100 + (pid / 250) % 100, pid % 250),
            count,
        };
        let bridge = netns.bridge();
        // Left over from a killed run of this same pid: start clean.
        netns.remove();
        let gateway = format!("{}.254/24", netns.subnet);
        let steps: Vec<Vec<String>> = vec![
            vec!["ip", "link", "add", &bridge, "type", "bridge"],
            vec!["ip", "addr", "add", &gateway, "dev", &bridge],
            vec!["ip", "link", "set", &bridge, "up"],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(String::from).collect())
        .collect();
        for step in steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            sh(&args).unwrap_or_else(|e| panic!("bridge: {e}"));
        }
        for i in 1..=count {
            let ns = netns.namespace(i);
            let host_end = format!("{}v{i}", netns.prefix);
            let ns_end = format!("{}p{i}", netns.prefix);
            let addr = format!("{}/24", netns.addr(i));
            let steps: Vec<Vec<&str>> = vec![
                vec!["ip", "netns", "add", &ns],
                vec![
                    "ip", "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end,
                ],
                vec!["ip", "link", "set", &host_end, "master", &bridge],
                vec!["ip", "link", "set", &host_end, "up"],
                vec!["ip", "link", "set", &ns_end, "netns", &ns],
                vec!["ip", "-n", &ns, "addr", "add", &addr, "dev", &ns_end],
                vec!["ip", "-n", &ns, "link", "set", &ns_end, "up"],
                vec!["ip", "-n", &ns, "link", "set", "lo", "up"],
            ];
            for step in steps {
                sh(&step).unwrap_or_else(|e| panic!("namespace {i}: {e}"));
            }
        }
        netns
    }

    pub fn namespace(&self, i: i32) -> String {
        format!("{}n{i}", self.prefix)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    /// Node `i`'s address.
    pub fn addr(&self, i: i32) -> String {
        format!("{}.{i}", self.subnet)
    }

    /// Cuts node `i` off from every other address (peers and clients) in both directions; its loopback
    /// still works.
    pub fn isolate(&self, i: i32) {
        let ns = self.namespace(i);
        self.heal(i);
        let nft = |rule: &str| {
            sh(&["ip", "netns", "exec", &ns, "nft", rule]).unwrap_or_else(|e| panic!("nft: {e}"))
        };
        nft("add table inet fault");
        nft("add chain inet fault in { type filter hook input priority 0; policy accept; }");
        nft("add chain inet fault out { type filter hook output priority 0; policy accept; }");
        nft("add rule inet fault in iifname != \"lo\" drop");
        nft("add rule inet fault out oifname != \"lo\" drop");
    }

    /// Runs `f` on a thread that entered node `i`'s namespace (setns moves only the calling thread), so
    /// sockets it opens see the network as node `i` does: a client the isolation rules do not cut off.
    pub fn run_in<T: Send + 'static>(&self, i: i32, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.namespace(i));
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in the namespace")
    }

    /// Removes node `i`'s fault rules.
    pub fn heal(&self, i: i32) {
        let _ = sh(&[
            "ip",
            "netns",
            "exec",
            &self.namespace(i),
            "nft",
            "delete table inet fault",
        ]);
    }

    fn remove(&self) {
        for i in 1..=self.count {
            let _ = sh(&["ip", "netns", "del", &self.namespace(i)]);
            let _ = sh(&["ip", "link", "del", &format!("{}v{i}", self.prefix)]);
        }
        let _ = sh(&["ip", "link", "del", &self.bridge()]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Seconds with millisecond precision, for the printed figures.
pub fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// Polls `check` every 10 ms until it yields, or panics naming `what` after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub const LIMIT: Duration = DEADLINE;
