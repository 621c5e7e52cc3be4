//! The quorum's wire: frames on the controller listener and the client side of its RPCs.
//!
//! A frame is its body length (u32, big-endian) then the body (postcard). A request names the node it is
//! meant for ([`RequestFrame::to`]); the receiver refuses a frame for another node, so a stale address book
//! cannot make one node vote or append for another. A request also carries the sender's voter set
//! ([`RequestFrame::voters`]); a receiver configured with other voter ids refuses it
//! ([`Response::VotersDiffer`]), so nodes that disagree on `controller.quorum.voters` never vote for or
//! replicate to each other (two quorums could otherwise form side by side), and both sides learn it
//! ([`VoterSet::conflict`]). One request is answered before the next is read on a
//! connection; each peer client keeps its connection for the next RPC and drops it on any error.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::OptionalSend;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::MAX_FRAME_BYTES;
use super::types::{Snapshot, SnapshotMeta, TypeConfig, Vote};

/// A request on the controller listener.
#[derive(Serialize, Deserialize)]
pub struct RequestFrame {
    /// The node the sender means to reach.
    pub to: u64,
    pub from: u64,
    /// The sender's `controller.quorum.voters` (id -> address).
    pub voters: BTreeMap<u64, String>,
    pub body: Request,
}

/// Disagreements remembered to log each once: beyond this many, further ones are refused silently.
const MAX_CONFLICTS_LOGGED: usize = 64;

/// This node's static voter set as every frame carries it, and the first disagreement seen with a peer.
///
/// Voters are compared by id only: a voter's address may legitimately read differently from different
/// nodes (a host name here, an IP there; a controller listener being moved), while a different set of ids is
/// always a mistake.
pub struct VoterSet {
    node_id: u64,
    voters: BTreeMap<u64, String>,
    conflict: watch::Sender<Option<String>>,
    logged: Mutex<BTreeSet<(u64, String)>>,
}

impl VoterSet {
    pub fn new(node_id: u64, voters: BTreeMap<u64, String>) -> Arc<VoterSet> {
        Arc::new(VoterSet {
            node_id,
            voters,
            conflict: watch::Sender::new(None),
            logged: Mutex::default(),
        })
    }

    pub fn voters(&self) -> &BTreeMap<u64, String> {
        &self.voters
    }

    /// Whether `other` names the same voter ids as this node's set.
    pub fn agrees_with(&self, other: &BTreeMap<u64, String>) -> bool {
        self.voters.keys().eq(other.keys())
    }

    /// Records that node `peer` (reached at or calling from `at`) holds `theirs`; logs it once per peer and
    /// set, in one line naming both lists.
    pub fn record_conflict(&self, peer: u64, at: &str, theirs: &BTreeMap<u64, String>) {
        let message = format!(
            "controller.quorum.voters disagree: node {} has {} but node {peer} ({at}) has {}; every node \
             of a cluster must list the same voters",
            self.node_id,
            show(&self.voters),
            show(theirs)
        );
        let first = {
            let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
            logged.len() < MAX_CONFLICTS_LOGGED && logged.insert((peer, show(theirs)))
        };
        if first {
            tracing::error!("{message}");
        }
        self.conflict.send_if_modified(|known| {
            let fresh = known.is_none();
            if fresh {
                *known = Some(message);
            }
            fresh
        });
    }

    /// The first disagreement seen, if any (None until one is).
    pub fn conflict(&self) -> watch::Receiver<Option<String>> {
        self.conflict.subscribe()
    }
}

/// Voters as `controller.quorum.voters` writes them.
pub fn show(voters: &BTreeMap<u64, String>) -> String {
    voters
        .iter()
        .map(|(id, addr)| format!("{id}@{addr}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        data: Vec<u8>,
    },
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// A command forwarded to the leader, which commits it.
    Write(Vec<u8>),
    /// An application request for the leader's handler.
    CallLeader(Vec<u8>),
    /// An observer asks the leader to add it as a learner at `address`.
    AddLearner {
        node_id: u64,
        address: String,
    },
}

#[derive(Serialize, Deserialize)]
pub enum Response {
    AppendEntries(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    Snapshot(SnapshotResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    Written {
        index: u64,
        response: Vec<u8>,
    },
    Called(Vec<u8>),
    /// This node does not lead (nothing was appended); `leader` is its best guess.
    NotLeader {
        leader: Option<u64>,
    },
    /// The frame was for another node: the sender's address book is wrong.
    WrongNode {
        node_id: u64,
    },
    /// The sender's voter ids differ from the receiver's `voters` (nothing was done).
    VotersDiffer {
        voters: BTreeMap<u64, String>,
    },
    /// No handler answers leader calls on the leader yet.
    NoLeaderHandler,
    /// The write's outcome is unknown (its entry was discarded on a leader change, or may commit later).
    Indeterminate(String),
    Failed(String),
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    value: &T,
) -> io::Result<()> {
    let body = postcard::to_stdvec(value).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "frame of {} bytes is over the limit of {MAX_FRAME_BYTES}",
                body.len()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(4 + body.len());
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&body);
    writer.write_all(&bytes).await?;
    writer.flush().await
}

/// Reads one frame; None when the peer closed the connection between frames.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    reader: &mut R,
) -> io::Result<Option<T>> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the limit of {MAX_FRAME_BYTES}"),
        ));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    postcard::from_bytes(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Why an RPC got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing was sent: the peer could not be reached.
    #[error("cannot connect to node {node} at {addr}: {source}")]
    Connect {
        node: u64,
        addr: String,
        source: io::Error,
    },
    #[error("node {node} did not answer within {timeout:?}")]
    Timeout { node: u64, timeout: Duration },
    /// The request may have been sent.
    #[error("connection to node {node} failed: {source}")]
    Io { node: u64, source: io::Error },
    /// The peer refused the request (nothing was done): its voter set differs from this node's.
    #[error("{0}")]
    VotersDiffer(String),
}

/// One peer's connection, kept between RPCs.
pub struct Peer {
    from: u64,
    target: u64,
    addr: String,
    voters: Arc<VoterSet>,
    conn: Option<TcpStream>,
}

impl Peer {
    pub fn new(voters: Arc<VoterSet>, target: u64, addr: String) -> Peer {
        Peer {
            from: voters.node_id,
            target,
            addr,
            voters,
            conn: None,
        }
    }

    /// Sends `body` and waits for its answer, all within `timeout`.
    pub async fn call(&mut self, body: Request, timeout: Duration) -> Result<Response, CallError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let node = self.target;
        let timed_out = || CallError::Timeout { node, timeout };
        if self.conn.is_none() {
            let connect = TcpStream::connect(self.addr.as_str());
            let stream = match tokio::time::timeout_at(deadline, connect).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(source)) => {
                    return Err(CallError::Connect {
                        node: self.target,
                        addr: self.addr.clone(),
                        source,
                    });
                }
                Err(_) => return Err(timed_out()),
            };
            let _ = stream.set_nodelay(true);
            self.conn = Some(stream);
        }
        let frame = RequestFrame {
            to: self.target,
            from: self.from,
            voters: self.voters.voters.clone(),
            body,
        };
        let Some(conn) = self.conn.as_mut() else {
            unreachable!("the connection was opened above");
        };
        let exchange = async {
            write_frame(conn, &frame).await?;
            read_frame::<_, Response>(conn).await?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the answer",
                )
            })
        };
        let result = tokio::time::timeout_at(deadline, exchange).await;
        match result {
            Ok(Ok(Response::WrongNode { node_id })) => {
                self.conn = None;
                Err(CallError::Io {
                    node: self.target,
                    source: io::Error::other(format!(
                        "{} is node {node_id}, not node {}",
                        self.addr, self.target
                    )),
                })
            }
            Ok(Ok(Response::VotersDiffer { voters })) => {
                self.conn = None;
                self.voters
                    .record_conflict(self.target, &self.addr, &voters);
                Err(CallError::VotersDiffer(format!(
                    "node {} at {} has voters {}, this node {}",
                    self.target,
                    self.addr,
                    show(&voters),
                    show(&self.voters.voters)
                )))
            }
            Ok(Ok(response)) => Ok(response),
            Ok(Err(source)) => {
                self.conn = None;
                Err(CallError::Io {
                    node: self.target,
                    source,
                })
            }
            Err(_) => {
                self.conn = None;
                Err(timed_out())
            }
        }
    }

    /// Points the next connection at `addr`; drops a connection made to another address.
    pub fn set_addr(&mut self, addr: &str) {
        if self.addr != addr {
            self.addr = addr.to_string();
            self.conn = None;
        }
    }

    /// A raft RPC: failures become openraft's Unreachable (back off) or Network (retry now).
    async fn raft_call(
        &mut self,
        body: Request,
        timeout: Duration,
    ) -> Result<Response, RPCError<TypeConfig>> {
        match self.call(body, timeout).await {
            Ok(Response::Failed(why)) => Err(RPCError::Unreachable(Unreachable::from_string(
                format!("node {}: {why}", self.target),
            ))),
            Ok(response) => Ok(response),
            Err(e @ CallError::Io { .. }) => Err(RPCError::Network(NetworkError::new(&e))),
            Err(e) => Err(RPCError::Unreachable(Unreachable::new(&e))),
        }
    }

    fn unexpected(&self) -> RPCError<TypeConfig> {
        RPCError::Network(NetworkError::from_string(format!(
            "node {} answered with the wrong kind of response",
            self.target
        )))
    }
}

/// Makes a [`Peer`] per replication stream for openraft.
pub struct Network {
    pub voters: Arc<VoterSet>,
    pub rpc_timeout: Duration,
    /// Addresses from this node's configuration: they win over the ones recorded in the membership, so a
    /// voter that moved its controller listener is found where the configuration says (as KRaft's static
    /// `controller.quorum.voters`).
    pub addresses: BTreeMap<u64, String>,
    pub observers: Arc<ObserverAddresses>,
}

/// Where each observer (learner) is reached now, as the latest membership records it.
///
/// openraft keeps a replication stream, and so its [`PeerClient`], across membership changes: a learner
/// re-addressed by `SetNodes` (an observer restarted on a new ephemeral port) would otherwise be called at
/// its dead address until the next leader change. Each client looks its target up here before connecting.
#[derive(Default)]
pub struct ObserverAddresses(RwLock<BTreeMap<u64, String>>);

impl ObserverAddresses {
    /// Replaces the book with `observers` (every learner of the latest membership: bounded by it).
    pub fn replace(&self, observers: BTreeMap<u64, String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = observers;
    }

    fn get(&self, node: u64) -> Option<String> {
        let book = self.0.read().unwrap_or_else(|e| e.into_inner());
        book.get(&node).cloned()
    }
}

/// openraft's client of one peer.
pub struct PeerClient {
    peer: Peer,
    rpc_timeout: Duration,
    observers: Arc<ObserverAddresses>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &openraft::BasicNode) -> PeerClient {
        let addr = self.addresses.get(&target).unwrap_or(&node.addr).clone();
        PeerClient {
            peer: Peer::new(self.voters.clone(), target, addr),
            rpc_timeout: self.rpc_timeout,
            observers: self.observers.clone(),
        }
    }
}

impl PeerClient {
    /// Follows an observer to its latest recorded address (voters are never in the book: their configured
    /// address wins).
    fn readdress(&mut self) {
        if let Some(addr) = self.observers.get(self.peer.target) {
            self.peer.set_addr(&addr);
        }
    }

    fn timeout(&self, option: &RPCOption) -> Duration {
        option.hard_ttl().min(self.rpc_timeout)
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.readdress();
        let timeout = self.timeout(&option);
        match self
            .peer
            .raft_call(Request::AppendEntries(rpc), timeout)
            .await?
        {
            Response::AppendEntries(response) => Ok(response),
            _ => Err(self.peer.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.readdress();
        let timeout = self.timeout(&option);
        match self.peer.raft_call(Request::Vote(rpc), timeout).await? {
            Response::Vote(response) => Ok(response),
            _ => Err(self.peer.unexpected()),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.readdress();
        let timeout = self.timeout(&option);
        match self.peer.raft_call(Request::PreVote(rpc), timeout).await? {
            Response::Vote(response) => Ok(response),
            _ => Err(self.peer.unexpected()),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        // A snapshot goes whole in one frame; it may take far longer than a heartbeat.
        self.readdress();
        let timeout = option.hard_ttl().max(self.rpc_timeout * 10);
        let request = Request::Snapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        let sent = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            sent = self.peer.raft_call(request, timeout) => sent,
        };
        match sent {
            Ok(Response::Snapshot(response)) => Ok(response),
            Ok(_) => Err(StreamingError::Network(NetworkError::from_string(
                "answered a snapshot with the wrong kind of response",
            ))),
            Err(RPCError::Unreachable(e)) => Err(StreamingError::Unreachable(e)),
            Err(RPCError::Network(e)) => Err(StreamingError::Network(e)),
            Err(e) => Err(StreamingError::Network(NetworkError::new(&e))),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.readdress();
        let timeout = self.timeout(&option);
        match self
            .peer
            .raft_call(Request::TransferLeader(req), timeout)
            .await?
        {
            Response::TransferLeader(response) => Ok(response),
            _ => Err(self.peer.unexpected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_refuse_oversize() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let frame = RequestFrame {
            to: 2,
            from: 1,
            voters: BTreeMap::from([(1, "h:1".to_string())]),
            body: Request::Write(vec![1, 2, 3]),
        };
        write_frame(&mut a, &frame).await.unwrap();
        let back: RequestFrame = read_frame(&mut b).await.unwrap().unwrap();
        assert_eq!((back.to, back.from), (2, 1));
        assert_eq!(show(&back.voters), "1@h:1");
        assert!(matches!(back.body, Request::Write(ref c) if c == &[1, 2, 3]));

        a.write_all(&((MAX_FRAME_BYTES + 1) as u32).to_be_bytes())
            .await
            .unwrap();
        let err = read_frame::<_, RequestFrame>(&mut b).await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        drop(a);
        assert!(
            read_frame::<_, RequestFrame>(&mut b)
                .await
                .unwrap()
                .is_none()
        );
    }
}
