//! [`Quorum`]: one node of the metadata quorum, and the only place that drives openraft.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::async_runtime::WatchReceiver as _;
use openraft::errors::{ClientWriteError, InitializeError, RaftError as OpenRaftError};
use openraft::{BasicNode, ChangeMembers, Instant as _, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::log_store::LogStore;
use super::state_machine_store::StateMachineStore;
use super::transport::{CallError, Network, ObserverAddresses, Peer, Request, Response, VoterSet};
use super::types::{Command, TypeConfig};
use super::{
    LeaderHandler, MAX_COMMAND_BYTES, QuorumConfig, QuorumStatus, RaftError, ReplicaStatus,
    StateMachine,
};

type RaftNode = openraft::Raft<TypeConfig, StateMachineStore>;

/// What the controller listener's server shares with the [`Quorum`].
pub struct Core {
    pub node_id: u64,
    pub raft: RaftNode,
    /// This node's voter set, which every frame carries and every received frame must match.
    pub voters: Arc<VoterSet>,
    handler: RwLock<Option<LeaderHandler>>,
    /// Bounds a forwarded write or call on the leader: a leader cut off from its quorum may never commit,
    /// and the connection serving the forwarder must not wait forever.
    request_timeout: Duration,
}

impl Core {
    /// Commits `command` if this node leads.
    pub async fn local_write(&self, command: Vec<u8>) -> Response {
        if command.len() > MAX_COMMAND_BYTES {
            return Response::Failed(RaftError::TooLarge(command.len()).to_string());
        }
        let written = tokio::time::timeout(
            self.request_timeout,
            self.raft.client_write(Command(command)),
        );
        let Ok(written) = written.await else {
            return Response::Indeterminate(format!(
                "not committed within {:?}",
                self.request_timeout
            ));
        };
        match written {
            Ok(written) => Response::Written {
                index: written.log_id.index,
                response: written.data,
            },
            Err(OpenRaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Response::NotLeader {
                    leader: forward.leader_id,
                }
            }
            Err(OpenRaftError::APIError(e @ ClientWriteError::LogEntryDiscarded(_))) => {
                Response::Indeterminate(e.to_string())
            }
            Err(e) => Response::Failed(e.to_string()),
        }
    }

    /// Adds (or re-addresses) an observer as a learner if this node leads; answers once the membership that
    /// names it is committed.
    pub async fn local_add_learner(&self, node_id: u64, address: String) -> Response {
        if !self.raft.is_leader() {
            return Response::NotLeader {
                leader: self.raft.metrics().borrow_watched().current_leader,
            };
        }
        let membership = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .clone();
        if membership.membership().voter_ids().any(|id| id == node_id) {
            return Response::Failed(format!("node {node_id} is a voter, not an observer"));
        }
        let known = membership.membership().get_node(&node_id).cloned();
        if known.as_ref().is_some_and(|n| n.addr == address) {
            return Response::Called(Vec::new());
        }
        let node = BasicNode { addr: address };
        // A known observer back at a new address (restarted: its socket is an ephemeral port). openraft's
        // add_learner keeps a known node's entry as it is, so its address is replaced; the replication stream
        // follows through the ObserverAddresses book, which the metrics watcher fills from this membership.
        let change = if known.is_some() {
            ChangeMembers::SetNodes(BTreeMap::from([(node_id, node)]))
        } else {
            ChangeMembers::AddNodes(BTreeMap::from([(node_id, node)]))
        };
        let added = tokio::time::timeout(
            self.request_timeout,
            self.raft.change_membership(change, true),
        );
        let Ok(added) = added.await else {
            return Response::Failed(format!(
                "learner {node_id} not added within {:?}",
                self.request_timeout
            ));
        };
        match added {
            Ok(_) => Response::Called(Vec::new()),
            Err(OpenRaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Response::NotLeader {
                    leader: forward.leader_id,
                }
            }
            Err(e) => Response::Failed(e.to_string()),
        }
    }

    /// Runs the leader handler if this node leads.
    pub async fn local_call(&self, request: Vec<u8>) -> Response {
        if request.len() > MAX_COMMAND_BYTES {
            return Response::Failed(RaftError::TooLarge(request.len()).to_string());
        }
        if !self.raft.is_leader() {
            return Response::NotLeader {
                leader: self.raft.metrics().borrow_watched().current_leader,
            };
        }
        let handler = self.handler.read().ok().and_then(|h| h.clone());
        let Some(handler) = handler else {
            return Response::NoLeaderHandler;
        };
        match tokio::time::timeout(self.request_timeout, handler(request)).await {
            Ok(answer) => Response::Called(answer),
            Err(_) => Response::Failed(format!(
                "the leader handler did not answer within {:?}",
                self.request_timeout
            )),
        }
    }
}

/// One node of the metadata quorum.
pub struct Quorum {
    core: Arc<Core>,
    config: QuorumConfig,
    state_machine: StateMachineStore,
    applied: watch::Receiver<u64>,
    leader: watch::Receiver<Option<u64>>,
    /// Wall-clock ms when each peer last held the leader's whole log (kept while this node leads).
    caught_up: Arc<Mutex<HashMap<u64, i64>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
    /// Whether this start initialized a pristine node (a restart never does).
    initialized_here: AtomicBool,
    /// The leader a voter named in its last NotLeader answer, tried once when no leader is known.
    hint: Mutex<Option<u64>>,
    next_voter: AtomicUsize,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn validate(config: &QuorumConfig) -> Result<(), RaftError> {
    let invalid = |why: String| Err(RaftError::Config(why));
    if config.voters.is_empty() {
        return invalid("no voters".into());
    }
    if config.election_timeout < Duration::from_millis(10) {
        return invalid(format!(
            "election timeout {:?} is under 10ms",
            config.election_timeout
        ));
    }
    if config.snapshot_every == 0 {
        return invalid("snapshot_every must be at least 1".into());
    }
    if config.rpc_timeout.is_zero() || config.request_timeout.is_zero() {
        return invalid("rpc and request timeouts must be positive".into());
    }
    Ok(())
}

fn raft_config(config: &QuorumConfig) -> Result<openraft::Config, RaftError> {
    let election_ms = config.election_timeout.as_millis() as u64;
    let rpc_ms = config.rpc_timeout.as_millis() as u64;
    openraft::Config {
        cluster_name: "brook-metadata".into(),
        election_timeout_min: election_ms,
        election_timeout_max: election_ms * 2,
        heartbeat_interval: (election_ms / 5).max(1),
        install_snapshot_timeout: rpc_ms.saturating_mul(10),
        // Entries are at most MAX_COMMAND_BYTES: 32 of them stay under the frame limit.
        max_payload_entries: 32,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        // A follower a little behind a fresh snapshot still catches up from the log.
        max_in_snapshot_log_to_keep: config.snapshot_every / 2,
        replication_lag_threshold: config.snapshot_every.saturating_mul(2),
        enable_pre_vote: Some(true),
        // Standard Raft, as KRaft (a restarted leader resigns): leadership after a restart is won in an
        // election, never resumed from the stored vote.
        enable_leader_restore: Some(false),
        ..Default::default()
    }
    .validate()
    .map_err(|e| RaftError::Config(e.to_string()))
}

impl Quorum {
    /// Opens the node's files in `config.dir`, serves raft RPCs on `listener` (already bound by the caller)
    /// and joins the quorum. `state_machine` must be empty: the quorum restores it from the last snapshot
    /// and replays the committed log into it. A pristine node initializes the static voter set.
    pub async fn start(
        config: QuorumConfig,
        listener: std::net::TcpListener,
        state_machine: Box<dyn StateMachine>,
    ) -> Result<Arc<Quorum>, RaftError> {
        validate(&config)?;
        let raft_config = raft_config(&config)?;
        let address = match (&config.address, config.voters.get(&config.node_id)) {
            (Some(address), _) | (None, Some(address)) => address.clone(),
            (None, None) => {
                let local = listener.local_addr().map_err(RaftError::Listener)?;
                if local.ip().is_unspecified() {
                    return Err(RaftError::Config(format!(
                        "observer {} listens on {local}: set the address peers reach it at",
                        config.node_id
                    )));
                }
                local.to_string()
            }
        };
        listener
            .set_nonblocking(true)
            .map_err(RaftError::Listener)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(RaftError::Listener)?;
        let storage = |source| RaftError::Storage {
            dir: config.dir.clone(),
            source,
        };
        let dir = config.dir.clone();
        let log_store = tokio::task::spawn_blocking(move || LogStore::open(&dir))
            .await
            .map_err(|e| RaftError::Raft(e.to_string()))?
            .map_err(storage)?;
        let (applied_tx, applied) = watch::channel(0);
        let sm =
            StateMachineStore::open(&config.dir, state_machine, applied_tx).map_err(storage)?;
        let voters = VoterSet::new(config.node_id, config.voters.clone());
        let observers = Arc::new(ObserverAddresses::default());
        let network = Network {
            voters: voters.clone(),
            rpc_timeout: config.rpc_timeout,
            addresses: config.voters.clone(),
            observers: observers.clone(),
        };
        let raft = RaftNode::new(
            config.node_id,
            Arc::new(raft_config),
            network,
            log_store,
            sm.clone(),
        )
        .await
        .map_err(|e| RaftError::Storage {
            dir: config.dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let core = Arc::new(Core {
            node_id: config.node_id,
            raft,
            voters,
            handler: RwLock::new(None),
            request_timeout: config.request_timeout,
        });
        let (stop, stopped) = watch::channel(false);
        let server = super::server::spawn(listener, core.clone(), stopped);

        let (leader_tx, leader) = watch::channel(None);
        let caught_up = Arc::new(Mutex::new(HashMap::new()));
        let watcher = spawn_metrics_watcher(
            core.raft.clone(),
            leader_tx,
            caught_up.clone(),
            (config.voters.clone(), observers),
        );
        let quorum = Arc::new(Quorum {
            core,
            config,
            state_machine: sm,
            applied,
            leader,
            caught_up,
            tasks: Mutex::new(vec![server, watcher]),
            stop,
            initialized_here: AtomicBool::new(false),
            hint: Mutex::new(None),
            next_voter: AtomicUsize::new(0),
        });
        if !quorum.config.voters.contains_key(&quorum.config.node_id) {
            let join = spawn_observer_join(Arc::downgrade(&quorum), address);
            if let Ok(mut tasks) = quorum.tasks.lock() {
                tasks.push(join);
            }
            return Ok(quorum);
        }
        match quorum.bootstrap().await {
            Ok(initialized) => quorum
                .initialized_here
                .store(initialized, Ordering::Relaxed),
            Err(e) => {
                quorum.shutdown().await;
                return Err(e);
            }
        }
        Ok(quorum)
    }

    /// Initializes a pristine node with the static voter set (every voter may: the set is identical).
    /// True when this call initialized it.
    async fn bootstrap(&self) -> Result<bool, RaftError> {
        let raft = &self.core.raft;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| RaftError::Raft(e.to_string()))?;
        if initialized {
            return Ok(false);
        }
        let members: BTreeMap<u64, BasicNode> = self
            .config
            .voters
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        match raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(node_id = self.config.node_id, voters = ?self.config.voters.keys(), "metadata quorum initialized");
                Ok(true)
            }
            // A peer got here first and already replicated to (or was voted for by) this node.
            Err(OpenRaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(RaftError::Raft(e.to_string())),
        }
    }

    /// Commits `command` (forwarded to the leader when this node is not it; waits through an election up to
    /// `request_timeout`) and returns its log index and the state machine's response, once applied on the
    /// leader. [`RaftError::Indeterminate`] means it may still commit.
    pub async fn write(&self, command: Vec<u8>) -> Result<(u64, Vec<u8>), RaftError> {
        if *self.stop.borrow() {
            return Err(RaftError::Shutdown);
        }
        if command.len() > MAX_COMMAND_BYTES {
            return Err(RaftError::TooLarge(command.len()));
        }
        let deadline = Instant::now() + self.config.request_timeout;
        loop {
            let response = self
                .on_leader(
                    deadline,
                    Request::Write(command.clone()),
                    self.core.local_write(command.clone()),
                )
                .await?;
            match response {
                Response::Written { index, response } => return Ok((index, response)),
                Response::NotLeader { .. } => self.wait_for_leader(deadline).await?,
                Response::Indeterminate(why) => return Err(RaftError::Indeterminate(why)),
                Response::Failed(why) => return Err(RaftError::Raft(why)),
                _ => {
                    return Err(RaftError::Raft(
                        "the leader answered a write with something else".into(),
                    ));
                }
            }
        }
    }

    /// Commits `command` only if this node leads, never forwarding: for what the leader decides from its
    /// own soft state (a broker session that lapsed on this node, a heartbeat it answered). A deposed
    /// leader's decision must not reach its successor, whose sessions may say otherwise; a leader that is
    /// cut off appends at its old term and never commits. `NotLeader` when another node leads now.
    pub async fn write_as_leader(&self, command: Vec<u8>) -> Result<(u64, Vec<u8>), RaftError> {
        if *self.stop.borrow() {
            return Err(RaftError::Shutdown);
        }
        // openraft refuses a write on a node that does not lead (ForwardToLeader): nothing to check first.
        match self.core.local_write(command).await {
            Response::Written { index, response } => Ok((index, response)),
            Response::NotLeader { .. } => Err(RaftError::NotLeader),
            Response::Indeterminate(why) => Err(RaftError::Indeterminate(why)),
            Response::Failed(why) => Err(RaftError::Raft(why)),
            _ => Err(RaftError::Raft(
                "a local write answered with something else".into(),
            )),
        }
    }

    /// Sends an application request to the current leader's handler (broker heartbeats), with forwarding.
    pub async fn call_leader(&self, request: Vec<u8>) -> Result<Vec<u8>, RaftError> {
        if *self.stop.borrow() {
            return Err(RaftError::Shutdown);
        }
        if request.len() > MAX_COMMAND_BYTES {
            return Err(RaftError::TooLarge(request.len()));
        }
        let deadline = Instant::now() + self.config.request_timeout;
        loop {
            let response = self
                .on_leader(
                    deadline,
                    Request::CallLeader(request.clone()),
                    self.core.local_call(request.clone()),
                )
                .await?;
            match response {
                Response::Called(answer) => return Ok(answer),
                Response::NotLeader { .. } => self.wait_for_leader(deadline).await?,
                Response::NoLeaderHandler => return Err(RaftError::NoLeaderHandler),
                Response::Failed(why) => return Err(RaftError::Raft(why)),
                _ => {
                    return Err(RaftError::Raft(
                        "the leader answered a call with something else".into(),
                    ));
                }
            }
        }
    }

    /// Runs `local` when this node leads, else sends `remote` to the leader. A leader that cannot be reached
    /// (nothing sent) counts as no leader; a cut exchange is indeterminate.
    async fn on_leader(
        &self,
        deadline: Instant,
        remote: Request,
        local: impl std::future::Future<Output = Response>,
    ) -> Result<Response, RaftError> {
        let leader = self.leader.borrow().or_else(|| self.guess_leader());
        let leader_addr =
            leader.and_then(|id| self.config.voters.get(&id).map(|addr| (id, addr.clone())));
        let Some((leader, addr)) = leader_addr else {
            return Ok(Response::NotLeader { leader: None });
        };
        if leader == self.config.node_id {
            return tokio::time::timeout_at(deadline, local).await.map_err(|_| {
                RaftError::Indeterminate(format!(
                    "not committed within {:?}",
                    self.config.request_timeout
                ))
            });
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut peer = Peer::new(self.core.voters.clone(), leader, addr);
        match peer.call(remote, remaining).await {
            Ok(Response::NotLeader { leader: Some(hint) }) => {
                if let Ok(mut slot) = self.hint.lock() {
                    *slot = Some(hint);
                }
                Ok(Response::NotLeader { leader: Some(hint) })
            }
            Ok(response) => Ok(response),
            Err(CallError::Connect { .. }) => Ok(Response::NotLeader { leader: None }),
            Err(CallError::VotersDiffer(why)) => Err(RaftError::VotersDiffer(why)),
            Err(e) => Err(RaftError::Indeterminate(e.to_string())),
        }
    }

    /// Whom to ask when this node knows no leader: the last hint a voter gave, else (on an observer, which
    /// learns the leader only once the leader replicates to it) the next voter in turn.
    fn guess_leader(&self) -> Option<u64> {
        if let Some(hint) = self.hint.lock().ok().and_then(|mut h| h.take()) {
            return Some(hint);
        }
        if self.config.voters.contains_key(&self.config.node_id) {
            return None;
        }
        let turn = self.next_voter.fetch_add(1, Ordering::Relaxed) % self.config.voters.len();
        self.config.voters.keys().nth(turn).copied()
    }

    /// Waits a little for a (new) leader, or fails at the deadline.
    async fn wait_for_leader(&self, deadline: Instant) -> Result<(), RaftError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(RaftError::Timeout(self.config.request_timeout));
        }
        // Re-check at least a few times per election timeout: a known leader may be unreachable for a while.
        let pause = (self.config.election_timeout / 4).min(deadline - now);
        let mut leader = self.leader.clone();
        let _ = tokio::time::timeout(pause, leader.changed()).await;
        Ok(())
    }

    /// The first peer found with other voter ids than this node's `controller.quorum.voters` (None so far):
    /// frames between such nodes are refused, so this node cannot reach the quorum through that peer.
    pub fn voter_conflict(&self) -> watch::Receiver<Option<String>> {
        self.core.voters.conflict()
    }

    /// Sets what answers [`Quorum::call_leader`] while this node leads.
    pub fn set_leader_handler(&self, handler: LeaderHandler) {
        if let Ok(mut slot) = self.core.handler.write() {
            *slot = Some(handler);
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.config.node_id
    }

    /// Whether this node leads now (soft state such as broker sessions lives on the leader only).
    pub fn is_leader(&self) -> bool {
        self.core.raft.is_leader()
    }

    /// The term this node leads in, None while it does not lead. A leader deposed and elected again between
    /// two looks has a new term: what its soft state (broker sessions) must be rebuilt for.
    pub fn leading_term(&self) -> Option<u64> {
        let metrics = self.core.raft.metrics();
        let metrics = metrics.borrow_watched();
        (metrics.state == ServerState::Leader).then_some(metrics.current_term)
    }

    /// The last index applied to this node's state machine.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// The leader as this node knows it.
    pub fn leader(&self) -> watch::Receiver<Option<u64>> {
        self.leader.clone()
    }

    /// This node's view of the quorum, for DescribeQuorum.
    pub fn status(&self) -> QuorumStatus {
        let metrics = self.core.raft.metrics().borrow_watched().clone();
        let now = now_ms();
        let membership = metrics.membership_config.membership();
        let mut voters = Vec::new();
        let mut observers = Vec::new();
        let leading = metrics.state == ServerState::Leader;
        let caught_up = self.caught_up.lock().map(|c| c.clone()).unwrap_or_default();
        let replica = |node_id: u64| -> ReplicaStatus {
            if node_id == metrics.id {
                return ReplicaStatus {
                    node_id,
                    log_end_offset: metrics.last_log_index.map_or(0, |i| i + 1),
                    last_fetch_timestamp: Some(now),
                    last_caught_up_timestamp: Some(now),
                };
            }
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&node_id).cloned().flatten());
            let contact = metrics
                .heartbeat
                .as_ref()
                .and_then(|h| h.get(&node_id).cloned().flatten())
                .map(|at| now - at.elapsed().as_millis() as i64);
            ReplicaStatus {
                node_id,
                log_end_offset: matched.map_or(0, |m| m.index + 1),
                last_fetch_timestamp: contact,
                last_caught_up_timestamp: caught_up.get(&node_id).copied(),
            }
        };
        if leading {
            voters = membership.voter_ids().map(replica).collect();
            observers = membership.learner_ids().map(replica).collect();
        }
        // One statement each: a borrow of the `applied` watch held across `snapshot_index()` (which locks the
        // state machine) deadlocks against `apply`, which holds that lock while it updates the watch.
        let applied = *self.applied.borrow();
        let snapshot_index = self.state_machine.snapshot_index();
        QuorumStatus {
            node_id: metrics.id,
            leader: metrics.current_leader,
            term: metrics.current_term,
            high_watermark: metrics
                .cluster_committed
                .as_ref()
                .or(metrics.local_committed.as_ref())
                .map_or(0, |c| c.index + 1),
            applied,
            snapshot_index,
            log_start_offset: metrics.purged.as_ref().map_or(0, |p| p.index + 1),
            voters,
            observers,
        }
    }

    /// Hands leadership to the most caught-up other voter (controlled shutdown) and waits until this node no
    /// longer leads. Does nothing on a follower.
    pub async fn transfer_leadership(&self) -> Result<(), RaftError> {
        let metrics = self.core.raft.metrics().borrow_watched().clone();
        if metrics.state != ServerState::Leader {
            return Ok(());
        }
        let target = metrics
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != self.config.node_id)
            .max_by_key(|id| {
                metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|m| m.index)
            });
        let Some(target) = target else {
            return Ok(());
        };
        self.core
            .raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|e| RaftError::Raft(e.to_string()))?;
        let deadline = Instant::now() + self.config.request_timeout;
        let mut leader = self.leader.clone();
        loop {
            let current = *leader.borrow_and_update();
            if current.is_some() && current != Some(self.config.node_id) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, leader.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(RaftError::Shutdown),
                Err(_) => return Err(RaftError::Timeout(self.config.request_timeout)),
            }
        }
    }

    /// Whether this start initialized a pristine directory (false after any restart).
    pub fn initialized_here(&self) -> bool {
        self.initialized_here.load(Ordering::Relaxed)
    }

    /// Stops serving and stops the Raft node (its files stay for the next start).
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let tasks = self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for task in &tasks {
            task.abort();
        }
        if let Err(e) = self.core.raft.shutdown().await {
            tracing::warn!(error = %e, "metadata quorum did not stop cleanly");
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for Quorum {
    /// A quorum dropped without [`Quorum::shutdown`] still stops serving (openraft's own tasks end when its
    /// last handle goes).
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Ok(tasks) = self.tasks.lock() {
            for task in tasks.iter() {
                task.abort();
            }
        }
    }
}

/// Whether `metrics`' membership names `node_id` at `address`.
fn names(metrics: &openraft::RaftMetrics<TypeConfig>, node_id: u64, address: &str) -> bool {
    metrics
        .membership_config
        .membership()
        .get_node(&node_id)
        .is_some_and(|n| n.addr == address)
}

/// Asks the leader, until this node's own membership names it at `address`, to add it as a learner.
fn spawn_observer_join(quorum: std::sync::Weak<Quorum>, address: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        // One receiver for the whole join: a fresh clone of openraft's reports a change at once (it has seen
        // none), which made this loop spin.
        let Some(mut metrics) = quorum.upgrade().map(|q| q.core.raft.metrics()) else {
            return;
        };
        loop {
            let Some(quorum) = quorum.upgrade() else {
                return;
            };
            let node_id = quorum.config.node_id;
            if names(&metrics.borrow_watched(), node_id, &address) {
                tracing::info!(node_id, %address, "joined the metadata quorum as an observer");
                return;
            }
            let deadline = Instant::now() + quorum.config.request_timeout;
            let request = Request::AddLearner {
                node_id,
                address: address.clone(),
            };
            let pause = quorum.config.election_timeout;
            // After an accepted request, wait this long for the membership naming this node to arrive before
            // asking again; after a refusal or no leader, a tenth of it (the next voter may lead).
            let wait = match quorum
                .on_leader(deadline, request, async {
                    Response::NotLeader { leader: None }
                })
                .await
            {
                Ok(Response::Called(_)) => pause,
                Ok(Response::Failed(why)) => {
                    // Typically a membership change still in flight (the quorum's first entries): worth
                    // a retry, not a warning.
                    tracing::debug!(node_id, %why, "the leader refused this observer for now");
                    pause / 10
                }
                Ok(_) => pause / 10,
                Err(e) => {
                    tracing::debug!(node_id, error = %e, "cannot reach the metadata quorum leader yet");
                    pause / 10
                }
            };
            drop(quorum);
            let until = Instant::now() + wait;
            while !names(&metrics.borrow_watched(), node_id, &address) {
                match tokio::time::timeout_at(until, metrics.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => break,
                }
            }
        }
    })
}

/// Follows openraft's metrics: publishes the leader, and (while leading) when each peer last held the whole
/// log.
fn spawn_metrics_watcher(
    raft: RaftNode,
    leader: watch::Sender<Option<u64>>,
    caught_up: Arc<Mutex<HashMap<u64, i64>>>,
    (voters, observers): (BTreeMap<u64, String>, Arc<ObserverAddresses>),
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut metrics = raft.metrics();
        let mut membership_seen = None;
        loop {
            {
                let m = metrics.borrow_watched().clone();
                let membership = &m.membership_config;
                if membership_seen.as_ref() != Some(membership.log_id()) {
                    membership_seen = Some(*membership.log_id());
                    observers.replace(
                        membership
                            .membership()
                            .nodes()
                            .filter(|(id, _)| !voters.contains_key(id))
                            .map(|(id, node)| (*id, node.addr.clone()))
                            .collect(),
                    );
                }
                leader.send_if_modified(|known| {
                    let changed = *known != m.current_leader;
                    *known = m.current_leader;
                    changed
                });
                if let Ok(mut caught_up) = caught_up.lock() {
                    match (&m.replication, m.state) {
                        (Some(replication), ServerState::Leader) => {
                            let now = now_ms();
                            for (node, matched) in replication {
                                let matched = matched.as_ref().map(|l| l.index);
                                if matched.is_some() && matched >= m.last_log_index {
                                    caught_up.insert(*node, now);
                                }
                            }
                        }
                        _ => caught_up.clear(),
                    }
                }
            }
            if metrics.changed().await.is_err() {
                break;
            }
        }
    })
}
