//! Three in-process voters on ephemeral ports with a recording state machine: election, forwarding, leader
//! calls, failover, catch-up from a snapshot, full restart; and openraft's storage suite on the stores.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::*;

const ELECTION_TIMEOUT: Duration = Duration::from_millis(150);

/// What a node's state machine has seen: every applied command in order, and every snapshot restored.
#[derive(Default)]
struct Recorded {
    applied: Vec<(u64, Vec<u8>)>,
    restores: Vec<u64>,
}

/// The state is the list of applied commands; the response to a command is how many came before it.
struct Recorder(Arc<Mutex<Recorded>>);

impl StateMachine for Recorder {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        let mut recorded = self.0.lock().unwrap();
        let before = recorded.applied.len() as u64;
        recorded.applied.push((index, command.to_vec()));
        before.to_be_bytes().to_vec()
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_stdvec(&self.0.lock().unwrap().applied).unwrap()
    }

    fn restore(&mut self, index: u64, snapshot: &[u8]) -> Result<(), String> {
        let applied: Vec<(u64, Vec<u8>)> =
            postcard::from_bytes(snapshot).map_err(|e| e.to_string())?;
        let mut recorded = self.0.lock().unwrap();
        recorded.applied = applied;
        recorded.restores.push(index);
        Ok(())
    }
}

struct Node {
    quorum: Arc<Quorum>,
    recorded: Arc<Mutex<Recorded>>,
}

struct Cluster {
    root: tempfile::TempDir,
    voters: BTreeMap<u64, String>,
    observers: BTreeMap<u64, String>,
    snapshot_every: u64,
    nodes: BTreeMap<u64, Node>,
}

impl Cluster {
    /// Reserves a port per voter (bound here, handed to each node's first start).
    fn new(size: u64, snapshot_every: u64) -> (Cluster, BTreeMap<u64, std::net::TcpListener>) {
        let mut voters = BTreeMap::new();
        let mut listeners = BTreeMap::new();
        for id in 1..=size {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            voters.insert(id, listener.local_addr().unwrap().to_string());
            listeners.insert(id, listener);
        }
        let cluster = Cluster {
            root: tempfile::tempdir().unwrap(),
            voters,
            observers: BTreeMap::new(),
            snapshot_every,
            nodes: BTreeMap::new(),
        };
        (cluster, listeners)
    }

    /// Reserves a port for an observer (a node that is not a voter).
    fn add_observer(&mut self, id: u64) -> std::net::TcpListener {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        self.observers
            .insert(id, listener.local_addr().unwrap().to_string());
        listener
    }

    fn config(&self, id: u64) -> QuorumConfig {
        QuorumConfig {
            election_timeout: ELECTION_TIMEOUT,
            snapshot_every: self.snapshot_every,
            rpc_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(5),
            address: self.observers.get(&id).cloned(),
            ..QuorumConfig::new(
                id,
                self.voters.clone(),
                self.root
                    .path()
                    .join(format!("node-{id}"))
                    .join("__cluster_metadata-0"),
            )
        }
    }

    async fn start_on(&mut self, id: u64, listener: std::net::TcpListener) {
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let machine = Box::new(Recorder(recorded.clone()));
        let quorum = Quorum::start(self.config(id), listener, machine)
            .await
            .unwrap();
        self.nodes.insert(id, Node { quorum, recorded });
    }

    /// Starts (again) on the node's own address, with an empty state machine.
    async fn restart(&mut self, id: u64) {
        let addr = self
            .voters
            .get(&id)
            .or(self.observers.get(&id))
            .unwrap()
            .clone();
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match std::net::TcpListener::bind(&addr) {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot bind {addr} again: {e}"),
            }
        };
        self.start_on(id, listener).await;
    }

    async fn stop(&mut self, id: u64) {
        let node = self.nodes.remove(&id).unwrap();
        node.quorum.shutdown().await;
    }

    fn quorum(&self, id: u64) -> &Arc<Quorum> {
        &self.nodes[&id].quorum
    }

    fn applied(&self, id: u64) -> Vec<(u64, Vec<u8>)> {
        self.nodes[&id].recorded.lock().unwrap().applied.clone()
    }

    /// Waits until every running node names the same leader.
    async fn wait_leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let leaders: Vec<Option<u64>> = self
                .nodes
                .values()
                .map(|n| *n.quorum.leader().borrow())
                .collect();
            if let Some(Some(leader)) = leaders.first()
                && leaders.iter().all(|l| *l == Some(*leader))
                && self.nodes.contains_key(leader)
            {
                return *leader;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {within:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `id` applied `index`.
    async fn wait_applied(&self, id: u64, index: u64) {
        let mut applied = self.quorum(id).applied();
        let waited =
            tokio::time::timeout(Duration::from_secs(10), applied.wait_for(|a| *a >= index))
                .await
                .map(|r| r.is_ok());
        assert_eq!(
            waited,
            Ok(true),
            "node {id} did not apply {index}: {}",
            *applied.borrow()
        );
    }

    fn follower_of(&self, leader: u64) -> u64 {
        *self
            .nodes
            .keys()
            .find(|id| **id != leader && self.voters.contains_key(id))
            .unwrap()
    }

    async fn shutdown(mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

fn command(i: u32) -> Vec<u8> {
    format!("command-{i}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_elects_a_leader_and_applies_forwarded_writes_in_order() {
    let (mut cluster, mut listeners) = Cluster::new(3, 1000);
    let started = Instant::now();
    // Pristine nodes come up in any order, each initializing the same voter set.
    for id in [3, 1, 2] {
        let listener = listeners.remove(&id).unwrap();
        cluster.start_on(id, listener).await;
    }
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let elected = started.elapsed();
    println!(
        "metadata quorum: 3 pristine voters elected node {leader} in {} ms (election timeout {}-{} ms)",
        elected.as_millis(),
        ELECTION_TIMEOUT.as_millis(),
        2 * ELECTION_TIMEOUT.as_millis()
    );
    let initialized = cluster
        .nodes
        .values()
        .filter(|n| n.quorum.initialized_here())
        .count();
    assert!(initialized >= 1, "some node initialized the quorum");

    // Writes from a follower are forwarded; writes from the leader are local: one order for all.
    let follower = cluster.follower_of(leader);
    let mut written = Vec::new();
    for i in 0..10 {
        let via = if i % 2 == 0 { follower } else { leader };
        let (index, response) = cluster.quorum(via).write(command(i)).await.unwrap();
        assert_eq!(
            response,
            (i as u64).to_be_bytes().to_vec(),
            "the response is the state machine's"
        );
        written.push((index, command(i)));
    }
    assert!(
        written.windows(2).all(|w| w[0].0 < w[1].0),
        "indexes grow: {written:?}"
    );
    let last = written.last().unwrap().0;
    for id in 1..=3 {
        cluster.wait_applied(id, last).await;
        assert_eq!(
            cluster.applied(id),
            written,
            "node {id} applied the same commands in the same order"
        );
    }

    let status = cluster.quorum(leader).status();
    assert_eq!(status.leader, Some(leader));
    assert!(status.term >= 1);
    assert_eq!(status.high_watermark, last + 1);
    assert_eq!(
        status.voters.iter().map(|v| v.node_id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while cluster
        .quorum(leader)
        .status()
        .voters
        .iter()
        .any(|v| v.log_end_offset != last + 1)
    {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            cluster.quorum(leader).status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = cluster.quorum(leader).status();
    assert!(
        status
            .voters
            .iter()
            .all(|v| v.last_fetch_timestamp.is_some()),
        "{status:?}"
    );
    assert!(
        status
            .voters
            .iter()
            .all(|v| v.last_caught_up_timestamp.is_some()),
        "{status:?}"
    );
    assert!(
        cluster.quorum(follower).status().voters.is_empty(),
        "replication state is the leader's"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_every_node_see_one_order() {
    let (mut cluster, listeners) = Cluster::new(3, 7);
    for (id, listener) in listeners {
        cluster.start_on(id, listener).await;
    }
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    assert!(cluster.quorum(leader).is_leader());
    assert!(!cluster.quorum(cluster.follower_of(leader)).is_leader());
    let started = Instant::now();
    let mut writers = Vec::new();
    for id in 1..=3u64 {
        let quorum = cluster.quorum(id).clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..20u32 {
                let command = format!("writer-{id}-{i}").into_bytes();
                let (index, _) = quorum.write(command.clone()).await.unwrap();
                acked.push((index, command));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.unwrap());
    }
    println!(
        "metadata quorum: {} writes from 3 concurrent writers (one per node) committed in {} ms",
        acked.len(),
        started.elapsed().as_millis()
    );
    acked.sort();
    let last = acked.last().unwrap().0;
    for id in 1..=3 {
        cluster.wait_applied(id, last).await;
        // Every acknowledged write is applied once, at the index its writer was told, on every node.
        assert_eq!(cluster.applied(id), acked, "node {id}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_leader_reaches_the_leaders_handler() {
    let (mut cluster, listeners) = Cluster::new(3, 1000);
    for (id, listener) in listeners {
        cluster.start_on(id, listener).await;
    }
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let follower = cluster.follower_of(leader);
    let err = cluster
        .quorum(follower)
        .call_leader(b"beat".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, RaftError::NoLeaderHandler), "{err}");
    for (id, node) in &cluster.nodes {
        let id = *id;
        node.quorum
            .set_leader_handler(Arc::new(move |request: Vec<u8>| {
                Box::pin(async move {
                    let mut answer = format!("node {id} got ").into_bytes();
                    answer.extend_from_slice(&request);
                    answer
                })
            }));
    }
    for via in [follower, leader] {
        let answer = cluster
            .quorum(via)
            .call_leader(b"beat".to_vec())
            .await
            .unwrap();
        assert_eq!(answer, format!("node {leader} got beat").into_bytes());
    }
    let err = cluster
        .quorum(follower)
        .write(vec![0; MAX_COMMAND_BYTES + 1])
        .await
        .unwrap_err();
    assert!(matches!(err, RaftError::TooLarge(_)), "{err}");
    let quorum = cluster.quorum(follower).clone();
    cluster.shutdown().await;
    let err = quorum.write(command(1)).await.unwrap_err();
    assert!(matches!(err, RaftError::Shutdown), "{err}");
    assert_eq!(
        err.response_error(),
        kafka_protocol::ResponseError::NotController
    );
}

/// What a leader decides from its own soft state (a lapsed broker session) is committed only while it
/// leads: on any other node the write fails instead of travelling to whoever leads now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_only_write_is_never_forwarded() {
    let (mut cluster, listeners) = Cluster::new(3, 1000);
    for (id, listener) in listeners {
        cluster.start_on(id, listener).await;
    }
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let follower = cluster.follower_of(leader);
    let term = cluster
        .quorum(leader)
        .leading_term()
        .expect("the leader leads a term");
    assert_eq!(cluster.quorum(follower).leading_term(), None);
    let err = cluster
        .quorum(follower)
        .write_as_leader(command(1))
        .await
        .unwrap_err();
    assert!(matches!(err, RaftError::NotLeader), "{err}");
    assert_eq!(
        err.response_error(),
        kafka_protocol::ResponseError::NotController
    );
    let (index, _) = cluster
        .quorum(leader)
        .write_as_leader(command(2))
        .await
        .unwrap();
    for id in 1..=3 {
        cluster.wait_applied(id, index).await;
        assert_eq!(
            cluster.applied(id),
            vec![(index, command(2))],
            "node {id} applied the leader's write and nothing of the follower's"
        );
    }
    cluster.stop(leader).await;
    let new = cluster.wait_leader(Duration::from_secs(5)).await;
    let new_term = cluster
        .quorum(new)
        .leading_term()
        .expect("the new leader leads");
    assert!(new_term > term, "a new leader leads a later term");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_shutdown_elects_another_and_writes_continue() {
    let (mut cluster, listeners) = Cluster::new(3, 1000);
    for (id, listener) in listeners {
        cluster.start_on(id, listener).await;
    }
    let old = cluster.wait_leader(Duration::from_secs(5)).await;
    let (first, _) = cluster.quorum(old).write(command(1)).await.unwrap();
    cluster.stop(old).await;
    let stopped = Instant::now();
    let new = cluster.wait_leader(Duration::from_secs(5)).await;
    println!(
        "metadata quorum: node {new} took over from node {old} in {} ms",
        stopped.elapsed().as_millis()
    );
    assert_ne!(new, old);
    let survivor = cluster.follower_of(new);
    let (second, _) = cluster.quorum(survivor).write(command(2)).await.unwrap();
    assert!(second > first);
    for id in [new, survivor] {
        cluster.wait_applied(id, second).await;
        let applied = cluster.applied(id);
        assert_eq!(
            applied,
            vec![(first, command(1)), (second, command(2))],
            "node {id}"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_leadership_hands_over_to_another_voter() {
    let (mut cluster, listeners) = Cluster::new(3, 1000);
    for (id, listener) in listeners {
        cluster.start_on(id, listener).await;
    }
    let old = cluster.wait_leader(Duration::from_secs(5)).await;
    cluster.quorum(old).write(command(1)).await.unwrap();
    cluster.quorum(old).transfer_leadership().await.unwrap();
    let new = cluster.wait_leader(Duration::from_secs(5)).await;
    assert_ne!(new, old);
    let (index, _) = cluster.quorum(old).write(command(2)).await.unwrap();
    cluster.wait_applied(old, index).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_node_catches_up_from_a_snapshot() {
    let (mut cluster, listeners) = Cluster::new(3, 10);
    for (id, listener) in listeners {
        cluster.start_on(id, listener).await;
    }
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let lagging = cluster.follower_of(leader);
    let mut last = 0;
    for i in 0..3 {
        last = cluster.quorum(leader).write(command(i)).await.unwrap().0;
    }
    cluster.wait_applied(lagging, last).await;
    let stopped_at = last;
    cluster.stop(lagging).await;
    // openraft purges the leader's log behind a snapshot only while no replication to the stopped node is
    // in flight over it: write until it did.
    let mut written = 3;
    let deadline = Instant::now() + Duration::from_secs(10);
    while written < 43 || cluster.quorum(leader).status().log_start_offset <= stopped_at + 1 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            cluster.quorum(leader).status()
        );
        last = cluster
            .quorum(leader)
            .write(command(written))
            .await
            .unwrap()
            .0;
        written += 1;
    }
    let snapshot = cluster.quorum(leader).status().snapshot_index;
    assert!(
        snapshot.is_some_and(|s| s > stopped_at + 10),
        "the leader snapshotted: {snapshot:?}"
    );

    cluster.restart(lagging).await;
    cluster.wait_applied(lagging, last).await;
    let restores = cluster.nodes[&lagging]
        .recorded
        .lock()
        .unwrap()
        .restores
        .clone();
    assert!(
        restores.first().is_some_and(|r| *r > stopped_at),
        "node {lagging} installed the leader's snapshot: {restores:?}"
    );
    let expected = cluster.applied(leader);
    assert_eq!(expected.len(), written as usize);
    assert_eq!(cluster.applied(lagging), expected);
    // openraft reports the installed snapshot in its metrics a moment after the state machine has it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let installed = cluster.quorum(lagging).status().snapshot_index;
        if installed.is_some_and(|s| s > stopped_at) {
            break;
        }
        assert!(Instant::now() < deadline, "{installed:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_restart_restores_the_state_without_initializing_again() {
    let (mut cluster, listeners) = Cluster::new(3, 10);
    for (id, listener) in listeners {
        cluster.start_on(id, listener).await;
    }
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let mut last = 0;
    for i in 0..15 {
        last = cluster.quorum(leader).write(command(i)).await.unwrap().0;
    }
    for id in 1..=3 {
        cluster.wait_applied(id, last).await;
    }
    let before = cluster.applied(leader);
    for id in 1..=3 {
        cluster.stop(id).await;
    }
    let restarted = Instant::now();
    for id in [2, 3, 1] {
        cluster.restart(id).await;
    }
    for id in 1..=3 {
        assert!(
            !cluster.quorum(id).initialized_here(),
            "node {id} initialized again"
        );
    }
    // The stored vote names the old leader at once; the first commit shows a leader really serves.
    let (next, response) = cluster.quorum(2).write(command(99)).await.unwrap();
    println!(
        "metadata quorum: 3 restarted voters committed their first write {} ms after the first restart",
        restarted.elapsed().as_millis()
    );
    for id in 1..=3 {
        cluster.wait_applied(id, last).await;
        let applied = cluster.applied(id);
        assert_eq!(
            applied[..before.len()],
            before[..],
            "node {id} restored its state"
        );
    }
    assert!(next > last);
    assert_eq!(response, 15u64.to_be_bytes().to_vec());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_state_file_fails_start_with_a_clear_error() {
    let (mut cluster, mut listeners) = Cluster::new(1, 10);
    cluster.start_on(1, listeners.remove(&1).unwrap()).await;
    cluster.wait_leader(Duration::from_secs(5)).await;
    cluster.quorum(1).write(command(1)).await.unwrap();
    cluster.stop(1).await;
    let dir = cluster.config(1).dir;
    let vote = dir.join("vote");
    let mut bytes = std::fs::read(&vote).unwrap();
    let end = bytes.len() - 1;
    bytes[end] ^= 0xff;
    std::fs::write(&vote, bytes).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let recorded = Arc::new(Mutex::new(Recorded::default()));
    let err = Quorum::start(cluster.config(1), listener, Box::new(Recorder(recorded)))
        .await
        .err()
        .expect("a damaged vote file must stop the start");
    assert!(matches!(err, RaftError::Storage { .. }), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_voter_restarts_after_a_torn_log_tail() {
    let (mut cluster, mut listeners) = Cluster::new(1, 1000);
    cluster.start_on(1, listeners.remove(&1).unwrap()).await;
    cluster.wait_leader(Duration::from_secs(5)).await;
    let mut last = 0;
    for i in 0..5 {
        last = cluster.quorum(1).write(command(i)).await.unwrap().0;
    }
    cluster.stop(1).await;
    // A crash in the middle of an append: half a record header at the end.
    let log = cluster.config(1).dir.join("raft.log");
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut file, &[0, 0, 1]).unwrap();
    let torn_len = std::fs::metadata(&log).unwrap().len();
    cluster.restart(1).await;
    assert!(
        std::fs::metadata(&log).unwrap().len() < torn_len,
        "the torn tail was cut"
    );
    cluster.wait_leader(Duration::from_secs(5)).await;
    cluster.wait_applied(1, last).await;
    assert_eq!(cluster.applied(1).len(), 5);
    let (next, _) = cluster.quorum(1).write(command(5)).await.unwrap();
    assert!(next > last);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_joins_as_a_learner_and_follows_the_log() {
    let (mut cluster, listeners) = Cluster::new(3, 10);
    for (id, listener) in listeners {
        cluster.start_on(id, listener).await;
    }
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let (first, _) = cluster.quorum(leader).write(command(0)).await.unwrap();
    let listener = cluster.add_observer(4);
    cluster.start_on(4, listener).await;
    assert!(!cluster.quorum(4).initialized_here());
    // The observer knows no leader until it is added; its write finds the leader through the voters.
    let (second, _) = cluster.quorum(4).write(command(1)).await.unwrap();
    assert!(second > first);
    cluster.wait_applied(4, second).await;
    assert_eq!(
        cluster.applied(4),
        vec![(first, command(0)), (second, command(1))]
    );
    assert_eq!(cluster.wait_leader(Duration::from_secs(5)).await, leader);

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = cluster.quorum(leader).status();
        let observer = status.observers.iter().find(|o| o.node_id == 4);
        if observer.is_some_and(|o| o.log_end_offset == status.high_watermark) {
            assert_eq!(
                status.voters.len(),
                3,
                "the observer does not vote: {status:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Stopped, it misses writes past a snapshot, and catches up again as a learner once restarted.
    cluster.stop(4).await;
    let mut last = second;
    for i in 2..30 {
        last = cluster.quorum(leader).write(command(i)).await.unwrap().0;
    }
    cluster.restart(4).await;
    cluster.wait_applied(4, last).await;
    assert_eq!(cluster.applied(4), cluster.applied(leader));
    let status = cluster.quorum(leader).status();
    assert_eq!(
        status.voters.iter().map(|v| v.node_id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        status
            .observers
            .iter()
            .map(|v| v.node_id)
            .collect::<Vec<_>>(),
        vec![4]
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_for_another_node_is_refused() {
    let (mut cluster, mut listeners) = Cluster::new(1, 1000);
    cluster.start_on(1, listeners.remove(&1).unwrap()).await;
    cluster.wait_leader(Duration::from_secs(5)).await;
    // The sender believes node 2 listens where node 1 does.
    let voters = transport::VoterSet::new(7, cluster.voters.clone());
    let mut peer = transport::Peer::new(voters, 2, cluster.voters[&1].clone());
    let err = peer
        .call(
            transport::Request::Write(command(1)),
            Duration::from_secs(2),
        )
        .await
        .err()
        .expect("node 1 must refuse a frame for node 2");
    assert!(err.to_string().contains("is node 1, not node 2"), "{err}");
    assert!(cluster.applied(1).is_empty(), "nothing was written");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_from_a_node_with_other_voters_is_refused_and_both_sides_know() {
    let (mut cluster, mut listeners) = Cluster::new(1, 1000);
    cluster.start_on(1, listeners.remove(&1).unwrap()).await;
    cluster.wait_leader(Duration::from_secs(5)).await;
    let mut theirs = cluster.voters.clone();
    theirs.insert(9, "127.0.0.1:1".into());
    let voters = transport::VoterSet::new(9, theirs);
    let mut peer = transport::Peer::new(voters.clone(), 1, cluster.voters[&1].clone());
    let err = peer
        .call(
            transport::Request::Write(command(1)),
            Duration::from_secs(2),
        )
        .await
        .err()
        .expect("node 1 must refuse a frame from a node with other voters");
    assert!(
        matches!(err, transport::CallError::VotersDiffer(_)),
        "{err}"
    );
    let seen = voters
        .conflict()
        .borrow()
        .clone()
        .expect("the sender knows");
    assert!(seen.contains("9@127.0.0.1:1"), "{seen}");
    let refused = cluster.quorum(1).voter_conflict().borrow().clone();
    let refused = refused.expect("the receiver knows");
    assert!(
        refused.contains("node 9") && refused.contains("9@127.0.0.1:1"),
        "{refused}"
    );
    assert!(cluster.applied(1).is_empty(), "nothing was written");
    cluster.shutdown().await;
}

mod storage_suite {
    use openraft::StorageError;
    use openraft::testing::log::{StoreBuilder, Suite};

    use super::super::log_store::LogStore;
    use super::super::state_machine_store::StateMachineStore;
    use super::super::types::TypeConfig;
    use super::*;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>>
        {
            let dir = tempfile::tempdir().unwrap();
            let log = LogStore::open(dir.path()).unwrap();
            let (applied, _) = tokio::sync::watch::channel(0);
            let machine = Box::new(Recorder(Arc::new(Mutex::new(Recorded::default()))));
            let sm = StateMachineStore::open(dir.path(), machine, applied).unwrap();
            Ok((dir, log, sm))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openraft_storage_suite_passes() {
        Suite::test_all(Builder).await.unwrap();
    }
}

/// `status()` (DescribeQuorum, every heartbeat on the leader) while commands apply: the applied-index watch
/// and the state machine's lock must never be held in opposite orders (a process deadlocked here, found by
/// tests/cluster_process.rs creating topics while brokers heartbeat).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_while_applying_never_deadlocks() {
    let (mut cluster, mut listeners) = Cluster::new(1, 1000);
    cluster.start_on(1, listeners.remove(&1).unwrap()).await;
    cluster.wait_leader(Duration::from_secs(5)).await;
    let quorum = cluster.quorum(1).clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (quorum, stop) = (quorum.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = quorum.status();
                }
            })
        })
        .collect();
    let writes = async {
        for i in 0..2000 {
            quorum.write(command(i)).await.unwrap();
        }
    };
    // A deadlock blocks runtime workers, so the test could never end by itself: a watchdog fails it.
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let finished = finished.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(60));
            if !finished.load(std::sync::atomic::Ordering::Relaxed) {
                eprintln!(
                    "status_while_applying_never_deadlocks: writes stalled for 60 s (deadlock)"
                );
                std::process::abort();
            }
        });
    }
    writes.await;
    finished.store(true, std::sync::atomic::Ordering::Relaxed);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    cluster.shutdown().await;
}
