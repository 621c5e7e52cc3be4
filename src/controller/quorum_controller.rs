//! The bridge between a broker and the metadata quorum: the quorum's state machine is the
//! [`ControllerStateMachine`], and every command it applies reaches this broker's [`MetadataStore`] as a
//! [`crate::cluster::MetadataDelta`] (so the replica manager and the coordinators follow it as on a single
//! node); every metadata change the broker asks for is a [`ControllerCommand`] committed through the quorum
//! ([`MetadataWriter`]). On the quorum leader it also answers broker heartbeats (fencing, unfencing,
//! controlled shutdown) with the soft state of [`BrokerSessions`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cluster::{MetadataChange, MetadataError, MetadataStore, MetadataWriter};
use crate::raft::{Quorum, RaftError, StateMachine};

use super::broker_sessions::BrokerSessions;
use super::heartbeat::{BrokerHeartbeat, decide_heartbeat};
use super::{
    ApiError, ControllerCommand, ControllerReader, ControllerResponse, ControllerStateMachine,
};

/// What a node asks the quorum leader (over [`Quorum::call_leader`]): soft state only the leader keeps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LeaderRequest {
    Heartbeat(HeartbeatRequest),
    DescribeQuorum,
    /// A `RegisterBroker` command, checked against the live sessions first.
    Register(ControllerCommand),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LeaderResponse {
    Heartbeat(HeartbeatResponse),
    DescribeQuorum(QuorumView),
    Registered(ControllerResponse),
    Error(i16),
}

/// The metadata quorum as its leader sees it (what DescribeQuorum answers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumView {
    pub leader_id: i32,
    /// The Raft term: Kafka's leader epoch of `__cluster_metadata`.
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<ReplicaView>,
    pub observers: Vec<ReplicaView>,
}

/// One replica of the metadata log; timestamps are wall-clock ms, -1 when unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    pub replica_id: i32,
    pub log_end_offset: i64,
    pub last_fetch_timestamp: i64,
    pub last_caught_up_timestamp: i64,
}

impl QuorumView {
    fn of(status: &crate::raft::QuorumStatus) -> QuorumView {
        let replica = |r: &crate::raft::ReplicaStatus| ReplicaView {
            replica_id: i32::try_from(r.node_id).unwrap_or(-1),
            log_end_offset: i64::try_from(r.log_end_offset).unwrap_or(i64::MAX),
            last_fetch_timestamp: r.last_fetch_timestamp.unwrap_or(-1),
            last_caught_up_timestamp: r.last_caught_up_timestamp.unwrap_or(-1),
        };
        QuorumView {
            leader_id: status
                .leader
                .and_then(|l| i32::try_from(l).ok())
                .unwrap_or(-1),
            leader_epoch: i32::try_from(status.term).unwrap_or(i32::MAX),
            high_watermark: i64::try_from(status.high_watermark).unwrap_or(i64::MAX),
            voters: status.voters.iter().map(replica).collect(),
            observers: status.observers.iter().map(replica).collect(),
        }
    }
}

impl StateMachine for ControllerStateMachine {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        ControllerStateMachine::apply(self, index, command)
    }

    fn snapshot(&self) -> Vec<u8> {
        ControllerStateMachine::snapshot(self)
    }

    fn restore(&mut self, index: u64, snapshot: &[u8]) -> Result<(), String> {
        ControllerStateMachine::restore(self, index, snapshot)
    }
}

/// The state machine of a broker's quorum node: every delta reaches `metadata` (configs mirrored first,
/// so the publishers that re-derive partition configs see them).
pub fn state_machine(metadata: &Arc<MetadataStore>, node_id: i32) -> ControllerStateMachine {
    let metadata = Arc::downgrade(metadata);
    ControllerStateMachine::new(Box::new(move |state, delta| {
        let Some(metadata) = metadata.upgrade() else {
            return;
        };
        if delta.broker_configs_changed {
            metadata.mirror_configs(
                state.dynamic_configs(node_id),
                state.all_group_configs().clone(),
            );
        }
        metadata.publish_delta(delta);
    }))
}

/// What a broker sends the active controller every `broker.heartbeat.interval.ms` (Kafka's
/// BrokerHeartbeatRequest, over the quorum's leader call).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub broker_id: i32,
    pub broker_epoch: i64,
    /// The metadata log index this broker has applied.
    pub applied_index: u64,
    pub want_fence: bool,
    pub want_shut_down: bool,
}

/// The controller's answer (Kafka's BrokerHeartbeatResponse).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub error_code: i16,
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub should_shut_down: bool,
}

/// Settings the proposer resolves before a command goes to the quorum (Kafka resolves them on the active
/// controller; here each broker's own config, which must agree across the cluster).
#[derive(Clone, Debug)]
pub struct ControllerDefaults {
    pub default_replication_factor: i16,
    pub session_timeout: Duration,
    /// This node's static `min.insync.replicas` and `unclean.leader.election.enable`, where they are not
    /// Kafka's defaults: the controller decides with them while this node leads the quorum.
    pub static_configs: BTreeMap<String, String>,
}

/// This broker's handle on the metadata quorum.
pub struct QuorumController {
    quorum: Arc<Quorum>,
    node_id: i32,
    defaults: ControllerDefaults,
    /// The replicated state as this node applied it (the leader decides heartbeats from it).
    state: ControllerReader,
    sessions: Mutex<BrokerSessions>,
    /// This broker's epoch once registered (producer id blocks are asked for with it).
    broker_epoch: std::sync::atomic::AtomicI64,
    /// This process's incarnation: what its broker registers with (unused on a controller-only node).
    incarnation: Uuid,
}

impl std::fmt::Debug for QuorumController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumController")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// How long a metadata change waits for the quorum before the client is told to retry.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

impl QuorumController {
    pub fn new(
        quorum: Arc<Quorum>,
        node_id: i32,
        defaults: ControllerDefaults,
        state: ControllerReader,
    ) -> Arc<QuorumController> {
        let session_timeout = defaults.session_timeout;
        Arc::new(QuorumController {
            quorum,
            node_id,
            defaults,
            state,
            sessions: Mutex::new(BrokerSessions::new(session_timeout)),
            broker_epoch: std::sync::atomic::AtomicI64::new(-1),
            incarnation: Uuid::new_v4(),
        })
    }

    pub fn quorum(&self) -> &Arc<Quorum> {
        &self.quorum
    }

    /// The replicated state as this node applied it (reassignment listings, the leader balancer).
    pub fn state(&self) -> &ControllerReader {
        &self.state
    }

    /// The epoch this broker registered with, -1 before its registration was accepted (the replica
    /// fetcher sends it as Fetch's `replica_state.replica_epoch`).
    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The incarnation this process's broker registers with: new in every process.
    pub fn incarnation(&self) -> Uuid {
        self.incarnation
    }

    pub fn set_broker_epoch(&self, epoch: i64) {
        self.broker_epoch
            .store(epoch, std::sync::atomic::Ordering::Relaxed);
    }

    /// Commits `command` and waits until this node applied it; the state machine's answer.
    pub async fn commit(
        &self,
        command: &ControllerCommand,
    ) -> Result<ControllerResponse, MetadataError> {
        self.commit_with(command, false).await
    }

    /// [`Self::commit`] for what this node decided as the quorum leader from its soft state (sessions,
    /// heartbeats, registrations): committed only while it still leads, never forwarded to a successor.
    async fn commit_as_leader(
        &self,
        command: &ControllerCommand,
    ) -> Result<ControllerResponse, MetadataError> {
        self.commit_with(command, true).await
    }

    async fn commit_with(
        &self,
        command: &ControllerCommand,
        leader_only: bool,
    ) -> Result<ControllerResponse, MetadataError> {
        let bytes = serde_json::to_vec(command).map_err(|e| MetadataError::Controller {
            error: ResponseError::InvalidRequest,
            message: format!("cannot encode a controller command: {e}"),
        })?;
        let written = if leader_only {
            self.quorum.write_as_leader(bytes).await
        } else {
            self.quorum.write(bytes).await
        };
        let (index, response) = written.map_err(quorum_error)?;
        self.await_applied(index).await?;
        serde_json::from_slice(&response).map_err(|e| MetadataError::Controller {
            error: ResponseError::UnknownServerError,
            message: format!("undecodable controller response: {e}"),
        })
    }

    /// Waits until this node's state machine applied `index` (its image then holds the change).
    pub async fn await_applied(&self, index: u64) -> Result<(), MetadataError> {
        let mut applied = self.quorum.applied();
        let wait = applied.wait_for(|&a| a >= index);
        match tokio::time::timeout(WRITE_TIMEOUT, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(quorum_error(RaftError::Shutdown)),
            Err(_) => Err(MetadataError::Controller {
                error: ResponseError::RequestTimedOut,
                message: format!("this broker has not applied metadata log index {index} yet"),
            }),
        }
    }

    /// What answers [`Quorum::call_leader`] on this node while it leads.
    pub fn leader_handler(self: &Arc<Self>) -> crate::raft::LeaderHandler {
        let controller = Arc::downgrade(self);
        Arc::new(move |bytes: Vec<u8>| {
            let controller = controller.upgrade();
            Box::pin(async move {
                let response = match (controller, serde_json::from_slice::<LeaderRequest>(&bytes)) {
                    (None, _) => LeaderResponse::Error(ResponseError::NotController.code()),
                    (_, Err(_)) => LeaderResponse::Error(ResponseError::InvalidRequest.code()),
                    (Some(c), Ok(LeaderRequest::Heartbeat(request))) => {
                        LeaderResponse::Heartbeat(c.handle_heartbeat(request).await)
                    }
                    (Some(c), Ok(LeaderRequest::DescribeQuorum)) => {
                        LeaderResponse::DescribeQuorum(QuorumView::of(&c.quorum.status()))
                    }
                    (Some(c), Ok(LeaderRequest::Register(command))) => {
                        c.handle_registration(command).await
                    }
                };
                serde_json::to_vec(&response).unwrap_or_default()
            })
        })
    }

    /// Sends `request` to the quorum leader's [`Self::leader_handler`].
    pub async fn call_leader(
        &self,
        request: &LeaderRequest,
    ) -> Result<LeaderResponse, MetadataError> {
        let bytes = serde_json::to_vec(request).map_err(|e| MetadataError::Controller {
            error: ResponseError::InvalidRequest,
            message: format!("cannot encode a leader request: {e}"),
        })?;
        let answer = self.quorum.call_leader(bytes).await.map_err(quorum_error)?;
        serde_json::from_slice(&answer).map_err(|e| MetadataError::Controller {
            error: ResponseError::UnknownServerError,
            message: format!("undecodable answer of the quorum leader: {e}"),
        })
    }

    /// The quorum as its leader sees it (DescribeQuorum).
    pub async fn describe_quorum(&self) -> Result<QuorumView, MetadataError> {
        match self.call_leader(&LeaderRequest::DescribeQuorum).await? {
            LeaderResponse::DescribeQuorum(view) => Ok(view),
            other => Err(MetadataError::Controller {
                error: ResponseError::NotLeaderOrFollower,
                message: format!("the quorum leader answered {other:?}"),
            }),
        }
    }

    /// Registers a broker on the quorum leader, unless another active incarnation of the same id still holds
    /// a live session (Kafka's DUPLICATE_BROKER_REGISTRATION: two processes configured with one `node.id`).
    async fn handle_registration(&self, command: ControllerCommand) -> LeaderResponse {
        let ControllerCommand::RegisterBroker {
            broker_id,
            incarnation_id,
            ..
        } = &command
        else {
            return LeaderResponse::Error(ResponseError::InvalidRequest.code());
        };
        let now = Instant::now();
        // This node's own broker, registering through itself as the quorum leader: the other incarnation
        // of its id was this process's predecessor, gone whatever the session says (one this leader may
        // just have seeded), so the restart need not wait out `broker.session.timeout.ms`.
        let own = (*broker_id == self.node_id).then_some(self.incarnation);
        let duplicate = is_duplicate_registration(
            self.state.read().broker(*broker_id),
            *incarnation_id,
            own,
            || lock(&self.sessions).is_alive(*broker_id, now),
        );
        if duplicate {
            return LeaderResponse::Registered(ControllerResponse::RegisterBroker(Err(
                ApiError::new(
                    ResponseError::DuplicateBrokerRegistration,
                    format!(
                        "Another broker is registered with broker id {broker_id} and its session is alive: \
                         is node.id {broker_id} configured on two nodes?"
                    ),
                ),
            )));
        }
        match self.commit_as_leader(&command).await {
            Ok(response) => {
                if response.first_error().is_none() {
                    lock(&self.sessions).touch(*broker_id, -1, now);
                }
                LeaderResponse::Registered(response)
            }
            Err(e) => LeaderResponse::Error(e.response_error().code()),
        }
    }

    /// The cluster id the quorum agreed on, once it did.
    pub fn cluster_id(&self) -> Option<String> {
        self.state.read().cluster_id().map(str::to_string)
    }

    /// Answers a broker's heartbeat on the quorum leader: commits the lifecycle change it calls for
    /// (Kafka's `calculateNextBrokerState`), then answers.
    pub async fn handle_heartbeat(&self, request: HeartbeatRequest) -> HeartbeatResponse {
        if !self.quorum.is_leader() {
            return heartbeat_error(ResponseError::NotController);
        }
        let now = Instant::now();
        let applied = i64::try_from(request.applied_index).unwrap_or(i64::MAX);
        let committed = i64::try_from(self.quorum.status().high_watermark)
            .unwrap_or(i64::MAX)
            .saturating_sub(1);
        let heartbeat = BrokerHeartbeat {
            broker_id: request.broker_id,
            broker_epoch: request.broker_epoch,
            current_metadata_offset: applied,
            want_fence: request.want_fence,
            want_shut_down: request.want_shut_down,
        };
        let decision = {
            let state = self.state.read();
            let mut sessions = lock(&self.sessions);
            let liveness = sessions.liveness(&state, request.broker_id, committed);
            match decide_heartbeat(&state, &heartbeat, liveness) {
                Ok(decision) => {
                    sessions.touch(request.broker_id, applied, now);
                    decision
                }
                Err(e) => {
                    return heartbeat_error(e.error().unwrap_or(ResponseError::UnknownServerError));
                }
            }
        };
        if let Some(command) = &decision.command {
            match self.commit_as_leader(command).await {
                Ok(response) => {
                    if let Some(error) = response.first_error() {
                        return heartbeat_error(
                            error.error().unwrap_or(ResponseError::UnknownServerError),
                        );
                    }
                    if matches!(command, ControllerCommand::BeginControlledShutdown { .. }) {
                        let offset =
                            i64::try_from(*self.quorum.applied().borrow()).unwrap_or(i64::MAX);
                        lock(&self.sessions).controlled_shutdown_began(request.broker_id, offset);
                    }
                }
                Err(e) => return heartbeat_error(e.response_error()),
            }
        }
        HeartbeatResponse {
            error_code: 0,
            is_caught_up: decision.is_caught_up,
            is_fenced: decision.is_fenced,
            should_shut_down: decision.should_shut_down,
        }
    }

    /// Runs on every node; acts while this node leads the quorum: seeds the sessions when leadership
    /// arrives, fences brokers whose session lapsed.
    pub async fn run_session_expiry(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut leader = self.quorum.leader();
        // The term the sessions were seeded for: a node deposed and elected again between two looks still
        // holds the sessions of its earlier term, stale by however long it did not lead.
        let mut seeded_term = None;
        let period = (self.defaults.session_timeout / 4).max(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = leader.changed() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let term = self.quorum.leading_term();
            let now = Instant::now();
            if term.is_some() && term != seeded_term {
                tracing::info!(
                    term,
                    "leading the metadata quorum: every registered broker's session starts now"
                );
                // The state's read lock before the sessions' lock, as `handle_heartbeat` takes them: the other
                // order deadlocks with a heartbeat and an apply waiting for the write lock.
                let state = self.state.read();
                lock(&self.sessions).seed(&state, now);
            }
            seeded_term = term;
            if term.is_none() {
                continue;
            }
            let expired = {
                let state = self.state.read();
                lock(&self.sessions).expired(&state, now)
            };
            for (broker_id, broker_epoch) in expired {
                tracing::warn!(broker_id, "broker session expired; fencing it");
                let command = ControllerCommand::FenceBroker {
                    broker_id,
                    broker_epoch,
                };
                // Only as the leader: a deposed one (cut off, its sessions lapsing for want of heartbeats
                // that went to its successor) would otherwise fence healthy brokers through the new leader.
                if let Err(e) = self.commit_as_leader(&command).await {
                    tracing::warn!(broker_id, error = %e, "could not fence the broker");
                }
            }
            // After the fencing: a write the quorum cannot take now must not hold it up.
            self.write_static_configs().await;
        }
    }

    /// As the quorum leader: writes this node's static configs when the state holds others (the first
    /// leader, a leader with another `server.properties`, one restarted with a changed one), so that every
    /// node decides ISR and election matters with the leader's values, as Kafka's active controller does.
    /// Checked on every pass: a value of an earlier leader applied after this look is replaced at the next.
    async fn write_static_configs(&self) {
        let wanted = &self.defaults.static_configs;
        if self.state.read().controller_static_configs() == wanted {
            return;
        }
        let command = ControllerCommand::SetControllerStaticConfigs {
            configs: wanted.clone(),
        };
        match self.commit_as_leader(&command).await {
            Ok(response) => match response.first_error() {
                Some(e) => tracing::warn!(?e, "the controller's static configs were refused"),
                None => {
                    tracing::info!(configs = ?wanted, "the controller decides with this node's static configs")
                }
            },
            Err(e) => tracing::warn!(error = %e, "could not write the controller's static configs"),
        }
    }

    /// True while `broker_id`'s session is alive on this (leader) node.
    pub fn session_alive(&self, broker_id: i32) -> bool {
        lock(&self.sessions).is_alive(broker_id, Instant::now())
    }
}

impl MetadataWriter for QuorumController {
    fn write(&self, change: MetadataChange) -> Result<(), MetadataError> {
        let topic = change.topic().unwrap_or_default().to_string();
        let command = ControllerCommand::from_change(
            change,
            new_topic_id(),
            self.defaults.default_replication_factor,
        );
        block_on(self.commit(&command))??.into_store_result(&topic)
    }

    fn allocate_producer_ids(&self) -> Result<(i64, i64), MetadataError> {
        let command = ControllerCommand::AllocateProducerIds {
            broker_id: self.node_id,
            broker_epoch: self.broker_epoch.load(std::sync::atomic::Ordering::Relaxed),
        };
        match block_on(self.commit(&command))?? {
            ControllerResponse::AllocateProducerIds(Ok(block)) => {
                Ok((block.first_producer_id, i64::from(block.size)))
            }
            ControllerResponse::AllocateProducerIds(Err(error)) => Err(error.into()),
            other => Err(MetadataError::Controller {
                error: ResponseError::UnknownServerError,
                message: format!("unexpected controller response {other:?}"),
            }),
        }
    }
}

/// What a client is told when the quorum could not decide: retriable, as Kafka's forwarding answers.
fn quorum_error(error: RaftError) -> MetadataError {
    let code = match &error {
        RaftError::Timeout(_) | RaftError::Indeterminate(_) => ResponseError::RequestTimedOut,
        RaftError::TooLarge(_) => ResponseError::PolicyViolation,
        _ => ResponseError::NotController,
    };
    MetadataError::Controller {
        error: code,
        message: format!("the metadata quorum could not decide: {error}"),
    }
}

/// Kafka's duplicate-registration rule (with KAFKA-19047, 4.1): another incarnation may not take over a
/// broker id while the registered one is active (unfenced, not in controlled shutdown) with a live session.
/// A broker that shut down cleanly is fenced or still in controlled shutdown, so its restart registers at
/// once instead of waiting out `broker.session.timeout.ms`; a process killed while active must wait, unless
/// the registration comes from the quorum leader's own process (`own`: that process's broker incarnation,
/// for the leader's own id), which knows its predecessor is gone.
fn is_duplicate_registration(
    existing: Option<&super::state::RegisteredBroker>,
    incarnation_id: Uuid,
    own: Option<Uuid>,
    session_alive: impl FnOnce() -> bool,
) -> bool {
    own != Some(incarnation_id)
        && existing.is_some_and(|b| b.incarnation_id != incarnation_id && b.is_active())
        && session_alive()
}

fn heartbeat_error(error: ResponseError) -> HeartbeatResponse {
    HeartbeatResponse {
        error_code: error.code(),
        ..Default::default()
    }
}

fn new_topic_id() -> Uuid {
    loop {
        let id = Uuid::new_v4();
        if !id.is_nil() {
            return id;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs a quorum call to completion from the synchronous metadata store API. API handlers run on the
/// multi-threaded runtime's workers: the worker hands its other tasks away while this one waits.
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, MetadataError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            Ok(tokio::task::block_in_place(|| handle.block_on(future)))
        }
        _ => Err(MetadataError::Controller {
            error: ResponseError::UnknownServerError,
            message: "a cluster member needs the multi-threaded tokio runtime".into(),
        }),
    }
}

#[cfg(test)]
mod registration_tests {
    use super::super::state::RegisteredBroker;
    use super::*;

    fn broker(fenced: bool, in_controlled_shutdown: bool) -> RegisteredBroker {
        RegisteredBroker {
            id: 1,
            incarnation_id: Uuid::from_u128(1),
            epoch: 10,
            endpoints: Vec::new(),
            rack: None,
            fenced,
            in_controlled_shutdown,
        }
    }

    #[test]
    fn only_an_active_other_incarnation_with_a_live_session_is_a_duplicate() {
        let new = Uuid::from_u128(2);
        let active = broker(false, false);
        assert!(is_duplicate_registration(Some(&active), new, None, || true));
        // Its session expired (a killed process): the new one takes over.
        assert!(!is_duplicate_registration(Some(&active), new, None, || {
            false
        }));
        // The same incarnation registering again is not a duplicate.
        assert!(!is_duplicate_registration(
            Some(&active),
            Uuid::from_u128(1),
            None,
            || true
        ));
        // A clean shutdown ends fenced, or is still in controlled shutdown: the restart registers at once.
        assert!(!is_duplicate_registration(
            Some(&broker(true, false)),
            new,
            None,
            || true
        ));
        assert!(!is_duplicate_registration(
            Some(&broker(false, true)),
            new,
            None,
            || true
        ));
        assert!(!is_duplicate_registration(None, new, None, || true));
        // The quorum leader's own process registering its broker again: its predecessor is gone.
        assert!(!is_duplicate_registration(
            Some(&active),
            new,
            Some(new),
            || true
        ));
        // Another process claiming the leader's id still is a duplicate.
        assert!(is_duplicate_registration(
            Some(&active),
            new,
            Some(Uuid::from_u128(3)),
            || true
        ));
    }
}
