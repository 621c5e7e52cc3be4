//! The metadata quorum: a Raft log of opaque byte commands replicated over the controller listener, as KRaft's
//! `__cluster_metadata` log is. It knows nothing of topics: the controller gives it a [`StateMachine`] and
//! proposes commands with [`Quorum::write`].
//!
//! Built on openraft (pinned exactly, its API still moves between alphas); only this folder names openraft's
//! types, so an upgrade touches nothing else. Files in [`QuorumConfig::dir`] (`<log.dirs>/__cluster_metadata-0`):
//! `raft.log` (entries, each checksummed; a torn tail is cut at load), `vote` and `committed` (replaced
//! atomically), `snapshot` (the state machine at an index, replaced atomically; the log is purged behind it).
//!
//! Observers (brokers that are not controllers) join as openraft learners: each start asks the leader to
//! add it with its address, until its own copy of the membership names it so. Learners are never removed.
//!
//! Bootstrap: every voter starts with the same static voter set and, when its directory is pristine, calls
//! openraft's `initialize` with it. openraft allows this on every node when the membership is identical (the
//! initial entry gets the same log id everywhere), so nodes may start in any order; a restarted node has a
//! vote or a log and never initializes again.

mod log_store;
mod quorum;
mod server;
mod state_machine_store;
mod stored_file;
mod transport;
mod types;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use kafka_protocol::ResponseError;

pub use quorum::Quorum;

/// The replicated state the quorum feeds with committed commands.
pub trait StateMachine: Send + 'static {
    /// Applies one committed command at `index` (deterministic: no clocks, no randomness). Returns the
    /// response handed back to whoever proposed it.
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8>;
    /// The whole state, to snapshot the log (and install on a lagging node).
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole state with a snapshot taken at `index`.
    fn restore(&mut self, index: u64, snapshot: &[u8]) -> Result<(), String>;
}

/// What answers [`Quorum::call_leader`] on the leader (broker heartbeats: soft state the leader alone keeps).
pub type LeaderHandler = Arc<dyn Fn(Vec<u8>) -> BoxFuture<'static, Vec<u8>> + Send + Sync>;

/// The largest command [`Quorum::write`] accepts, and the largest [`Quorum::call_leader`] request or answer.
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;

/// The largest frame on the controller listener, and so the largest snapshot (sent whole) and state file.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// How one node of the quorum runs.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This node's id (`node.id`). One of `voters`, or else an observer (a broker that is not a controller):
    /// it asks the leader to add it as a learner, receives the log and applies it, and never votes.
    pub node_id: u64,
    /// Every voter: id -> `host:port` of its controller listener. The same on every node.
    pub voters: BTreeMap<u64, String>,
    /// Where peers reach this node's listener. Needed by an observer (the leader records it in the
    /// membership to push the log there); None means its `voters` entry, else the listener's local address.
    pub address: Option<String>,
    /// `<log.dirs>/__cluster_metadata-0`: log, vote, committed index and snapshot.
    pub dir: PathBuf,
    /// The least election timeout; a follower waits a random time up to twice this without a heartbeat before
    /// it stands. The leader heartbeats every fifth of it.
    pub election_timeout: Duration,
    /// Entries applied since the last snapshot that trigger the next one.
    pub snapshot_every: u64,
    /// One RPC to a peer (connect, send, answer); a snapshot gets ten times this.
    pub rpc_timeout: Duration,
    /// How long [`Quorum::write`] and [`Quorum::call_leader`] wait through elections and forwarding.
    pub request_timeout: Duration,
}

impl QuorumConfig {
    /// Defaults in the spirit of KRaft's (`controller.quorum.election.timeout.ms` is 1000, the fetch timeout
    /// 2000), with Kafka's snapshot cadence scaled to entries.
    pub fn new(node_id: u64, voters: BTreeMap<u64, String>, dir: PathBuf) -> QuorumConfig {
        QuorumConfig {
            node_id,
            voters,
            address: None,
            dir,
            election_timeout: Duration::from_millis(1000),
            snapshot_every: 10_000,
            rpc_timeout: Duration::from_millis(2000),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the quorum could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("invalid quorum configuration: {0}")]
    Config(String),
    #[error("metadata log storage in {dir}: {source}")]
    Storage {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot serve the controller listener: {0}")]
    Listener(std::io::Error),
    #[error("command of {0} bytes is over the limit of {MAX_COMMAND_BYTES}")]
    TooLarge(usize),
    #[error("no leader answered within {0:?}")]
    Timeout(Duration),
    /// The command may or may not have been committed (the leader changed, or the forwarded call was cut
    /// after it was sent): the caller must not blindly retry a command that is not idempotent.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// A peer has other voters in its `controller.quorum.voters`: nothing was sent to it.
    #[error("{0}")]
    VotersDiffer(String),
    /// A write only the leader may make, on a node that does not lead (not forwarded).
    #[error("this node does not lead the metadata quorum")]
    NotLeader,
    #[error("no leader handler is set")]
    NoLeaderHandler,
    #[error("the quorum is shut down")]
    Shutdown,
    #[error("raft: {0}")]
    Raft(String),
}

impl RaftError {
    /// Kafka's error for a request that needed the quorum: no leader in time (or an unknown outcome) is
    /// REQUEST_TIMED_OUT as in KRaft's controller, a quorum that cannot serve is NOT_CONTROLLER (the client
    /// looks again), a disk failure KAFKA_STORAGE_ERROR.
    pub fn response_error(&self) -> ResponseError {
        match self {
            RaftError::Timeout(_) | RaftError::Indeterminate(_) => ResponseError::RequestTimedOut,
            RaftError::NoLeaderHandler | RaftError::Shutdown | RaftError::NotLeader => {
                ResponseError::NotController
            }
            RaftError::TooLarge(_) => ResponseError::MessageTooLarge,
            RaftError::Storage { .. } => ResponseError::KafkaStorageError,
            RaftError::Config(_)
            | RaftError::Listener(_)
            | RaftError::Raft(_)
            | RaftError::VotersDiffer(_) => ResponseError::UnknownServerError,
        }
    }
}

/// One node as the leader sees it, for DescribeQuorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub node_id: u64,
    /// Kafka's log end offset: one past the last index known to be on that node (0: nothing known).
    pub log_end_offset: u64,
    /// Wall-clock ms of the last answer from that node (this node: now); None when never heard.
    pub last_fetch_timestamp: Option<i64>,
    /// Wall-clock ms when that node last held every entry of the leader's log; None when never seen.
    pub last_caught_up_timestamp: Option<i64>,
}

/// The quorum as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    pub node_id: u64,
    pub leader: Option<u64>,
    /// The Raft term: Kafka's leader epoch of the metadata log.
    pub term: u64,
    /// One past the last committed index: the metadata log's high watermark.
    pub high_watermark: u64,
    /// The last index applied to this node's state machine.
    pub applied: u64,
    /// The index of this node's last snapshot.
    pub snapshot_index: Option<u64>,
    /// The first index still in this node's log (the ones before are only in the snapshot).
    pub log_start_offset: u64,
    /// Replication state of the voters, known on the leader only (empty elsewhere).
    pub voters: Vec<ReplicaStatus>,
    pub observers: Vec<ReplicaStatus>,
}
