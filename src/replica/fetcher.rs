//! The replica fetcher (Kafka's `ReplicaFetcherManager` + `ReplicaFetcherThread`): a follower keeps its
//! replica of each partition another broker leads in step with that leader by sending it Fetch requests
//! as a replica (`replica_state` / `replica_id`, `last_fetched_epoch`) and appending what comes back as
//! the leader wrote it.
//!
//! One task per (source broker, fetcher id), the fetcher id being a hash of the partition modulo
//! `num.replica.fetchers`; each task has one request in flight, for all its partitions that are not backing
//! off, from each one's log end offset. Per partition in the response: records are appended and the high
//! watermark and log start offset follow the leader's; a `diverging_epoch` truncates the log to where it
//! agrees with the leader (KIP-279 / KIP-320, Kafka's `truncateOnFetchResponse`); OFFSET_OUT_OF_RANGE asks
//! the leader for its log end and start with ListOffsets (`fetchOffsetAndTruncate`); any other error backs
//! the partition off for `replica.fetch.backoff.ms`, until the replica manager re-adds it with the next
//! leader and epoch. A local storage failure stops fetching that partition for good (the log is offline).
//!
//! Bounds: a response is at most `replica.fetch.response.max.bytes` (`replica.fetch.max.bytes` per
//! partition); the partitions of a fetcher are those this broker follows; log I/O runs on the blocking pool.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::follower::FollowerError;
use super::partition::Partition;
use crate::log::{LogError, TopicPartition};
use crate::network::{NetworkClient, NetworkError, SendOptions};

/// The fetcher's settings: `num.replica.fetchers` and `replica.fetch.*`.
pub type FetcherConfig = super::fetch_config::ReplicaFetchConfig;

/// The oldest Fetch version a follower uses: `last_fetched_epoch` and `diverging_epoch` came with v12.
const MIN_FETCH_VERSION: i16 = 12;
/// ListOffsets' special timestamps.
const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;

/// The broker epoch this broker registered with (-1 before registration), for Fetch v15's `replica_state`.
pub type BrokerEpoch = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Counters of the fetchers, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetcherStats {
    /// Record bytes appended from fetch responses.
    pub bytes_fetched: u64,
    /// Records appended from fetch responses.
    pub records_fetched: u64,
    /// Per followed partition: the leader's high watermark minus this replica's log end offset at the
    /// last response (0 when caught up).
    pub partition_lag: Vec<(TopicPartition, i64)>,
}

#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    records: AtomicU64,
    /// One entry per partition followed (removed with it).
    lag: Mutex<HashMap<TopicPartition, i64>>,
}

/// What the fetcher knows of one partition it fetches.
struct FetchState {
    partition: Arc<Partition>,
    /// The leader epoch the partition was added with: sent as `current_leader_epoch`.
    leader_epoch: i32,
    /// Backing off after an error until then.
    delayed_until: Option<Instant>,
    /// A local storage failure: no more fetching (the log is offline until restart).
    stopped: bool,
}

/// The partitions of one fetcher task, shared with the manager.
struct FetcherShared {
    leader: i32,
    partitions: Mutex<HashMap<TopicPartition, FetchState>>,
    /// Wakes an idle task when partitions are added (a permit is kept if it is not waiting).
    changed: Notify,
}

/// What every task needs.
struct Context {
    node_id: i32,
    client: Arc<NetworkClient>,
    config: FetcherConfig,
    broker_epoch: BrokerEpoch,
    cluster_id: Option<String>,
    counters: Counters,
}

/// The fetcher tasks of this broker, keyed by (source broker, fetcher id).
pub struct ReplicaFetcherManager {
    ctx: Arc<Context>,
    runtime: tokio::runtime::Handle,
    fetchers: Mutex<Fetchers>,
    stop: watch::Sender<bool>,
}

#[derive(Default)]
struct Fetchers {
    tasks: HashMap<(i32, usize), (Arc<FetcherShared>, JoinHandle<()>)>,
    shut_down: bool,
}

impl std::fmt::Debug for ReplicaFetcherManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaFetcherManager")
            .field("node_id", &self.ctx.node_id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ReplicaFetcherManager {
    /// A manager for broker `node_id`; call from within the tokio runtime its tasks will run on.
    pub fn new(
        node_id: i32,
        client: Arc<NetworkClient>,
        config: FetcherConfig,
        broker_epoch: BrokerEpoch,
        cluster_id: Option<String>,
    ) -> Arc<ReplicaFetcherManager> {
        Arc::new(ReplicaFetcherManager {
            ctx: Arc::new(Context {
                node_id,
                client,
                config,
                broker_epoch,
                cluster_id,
                counters: Counters::default(),
            }),
            runtime: tokio::runtime::Handle::current(),
            fetchers: Mutex::new(Fetchers::default()),
            stop: watch::Sender::new(false),
        })
    }

    /// Kafka's `getFetcherId`: the partitions of a topic spread over the fetchers of a source broker.
    fn fetcher_id(&self, tp: &TopicPartition) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        tp.topic.hash(&mut h);
        tp.partition.hash(&mut h);
        (h.finish() % self.ctx.config.num_replica_fetchers.max(1) as u64) as usize
    }

    /// Starts fetching each partition from `leader_id` at `leader_epoch`, replacing an entry for another
    /// leader or epoch; an entry with the same leader, epoch and partition is left as it is (its backoff
    /// too). Ignored after shutdown.
    pub fn add_partitions(&self, partitions: Vec<(Arc<Partition>, i32, i32)>) {
        let mut fetchers = lock(&self.fetchers);
        if fetchers.shut_down {
            return;
        }
        for (partition, leader, leader_epoch) in partitions {
            let tp = partition.topic_partition().clone();
            let key = (leader, self.fetcher_id(&tp));
            let unchanged = fetchers.tasks.get(&key).is_some_and(|(f, _)| {
                lock(&f.partitions).get(&tp).is_some_and(|s| {
                    s.leader_epoch == leader_epoch && Arc::ptr_eq(&s.partition, &partition)
                })
            });
            if unchanged {
                continue;
            }
            for (shared, _) in fetchers.tasks.values() {
                lock(&shared.partitions).remove(&tp);
            }
            let shared = match fetchers.tasks.get(&key) {
                Some((shared, _)) => shared.clone(),
                None => {
                    let shared = Arc::new(FetcherShared {
                        leader,
                        partitions: Mutex::new(HashMap::new()),
                        changed: Notify::new(),
                    });
                    let task = FetcherTask {
                        ctx: self.ctx.clone(),
                        shared: shared.clone(),
                        stop: self.stop.subscribe(),
                        failing: false,
                    };
                    let handle = self.runtime.spawn(task.run());
                    fetchers.tasks.insert(key, (shared.clone(), handle));
                    shared
                }
            };
            tracing::info!(partition = %tp, leader, leader_epoch, offset = partition.log_end_offset(),
                "following the leader");
            lock(&shared.partitions).insert(
                tp,
                FetchState {
                    partition,
                    leader_epoch,
                    delayed_until: None,
                    stopped: false,
                },
            );
            shared.changed.notify_one();
        }
    }

    /// Stops fetching these partitions (this broker leads them now, or holds no replica any more).
    pub fn remove_partitions(&self, partitions: &[TopicPartition]) {
        let fetchers = lock(&self.fetchers);
        for (shared, _) in fetchers.tasks.values() {
            let mut map = lock(&shared.partitions);
            for tp in partitions {
                map.remove(tp);
            }
        }
        let mut lag = lock(&self.ctx.counters.lag);
        for tp in partitions {
            lag.remove(tp);
        }
    }

    /// The partitions being fetched, with their leader and leader epoch (diagnostics, tests).
    pub fn fetched_partitions(&self) -> Vec<(TopicPartition, i32, i32)> {
        let fetchers = lock(&self.fetchers);
        let mut out = Vec::new();
        for (shared, _) in fetchers.tasks.values() {
            for (tp, s) in lock(&shared.partitions).iter() {
                out.push((tp.clone(), shared.leader, s.leader_epoch));
            }
        }
        out.sort();
        out
    }

    /// The fetchers' counters.
    pub fn stats(&self) -> FetcherStats {
        let c = &self.ctx.counters;
        let mut partition_lag: Vec<_> = lock(&c.lag)
            .iter()
            .map(|(tp, lag)| (tp.clone(), *lag))
            .collect();
        partition_lag.sort();
        FetcherStats {
            bytes_fetched: c.bytes.load(Ordering::Relaxed),
            records_fetched: c.records.load(Ordering::Relaxed),
            partition_lag,
        }
    }

    /// Stops every fetcher and waits for their tasks to end (a fetch in flight is dropped; an append in
    /// progress finishes first). Later `add_partitions` calls are ignored.
    pub async fn shutdown(&self) {
        let handles: Vec<JoinHandle<()>> = {
            let mut fetchers = lock(&self.fetchers);
            fetchers.shut_down = true;
            fetchers.tasks.drain().map(|(_, (_, h))| h).collect()
        };
        self.stop.send_replace(true);
        for handle in handles {
            if let Err(e) = handle.await
                && e.is_panic()
            {
                tracing::error!(error = %e, "replica fetcher task panicked");
            }
        }
    }

    /// Stops every fetcher without waiting (a broker halted from synchronous code, or crashing).
    pub fn halt(&self) {
        let mut fetchers = lock(&self.fetchers);
        fetchers.shut_down = true;
        self.stop.send_replace(true);
        for (_, (_, handle)) in fetchers.tasks.drain() {
            handle.abort();
        }
    }
}

/// One partition of a request being built: what was asked, to recognise its answer.
struct Wanted {
    tp: TopicPartition,
    topic_id: Uuid,
    partition: Arc<Partition>,
    leader_epoch: i32,
    fetch_offset: i64,
    last_fetched_epoch: i32,
    log_start_offset: i64,
}

/// What processing a partition's answer left to do.
enum Next {
    /// Fetch again at once.
    Continue,
    /// Back off for `replica.fetch.backoff.ms`.
    Delay,
    /// Stop fetching (local storage failure).
    Stop,
    /// OFFSET_OUT_OF_RANGE: ask the leader for its offsets.
    OutOfRange,
}

/// One fetcher task (Kafka's `ReplicaFetcherThread`).
struct FetcherTask {
    ctx: Arc<Context>,
    shared: Arc<FetcherShared>,
    stop: watch::Receiver<bool>,
    /// The last request failed: the next failure is logged at debug only (one warning per outage).
    failing: bool,
}

impl FetcherTask {
    async fn run(mut self) {
        let leader = self.shared.leader;
        let mut stop = self.stop.clone();
        tracing::debug!(leader, "replica fetcher started");
        loop {
            // Stopped, or the manager is gone without a shutdown: either way this task ends.
            if *stop.borrow() || stop.has_changed().is_err() {
                break;
            }
            let (wanted, wake_at) = self.ready_partitions();
            if wanted.is_empty() {
                let sleep = tokio::time::sleep_until(
                    wake_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
                );
                tokio::select! {
                    _ = self.shared.changed.notified() => {}
                    _ = sleep => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let ctx = self.ctx.clone();
            let options = SendOptions {
                max_version: None,
                // The leader may hold the fetch for max_wait: the deadline has to exceed it.
                timeout: Some(ctx.config.max_wait() + ctx.client.config().request_timeout),
            };
            let sent = {
                let wanted = &wanted;
                let ctx = &ctx;
                let send = ctx.client.send_built::<FetchRequest>(
                    leader,
                    |version| build_fetch(ctx, wanted, version),
                    options,
                );
                tokio::select! {
                    sent = send => sent,
                    _ = stop.changed() => break,
                }
            };
            let response = match sent {
                Ok((version, _)) if version < MIN_FETCH_VERSION => {
                    Err(NetworkError::UnsupportedVersion {
                        addr: format!("broker {leader}"),
                        api_key: 1,
                    })
                }
                Ok((_, response)) if response.error_code != 0 => Err(NetworkError::BadResponse {
                    addr: format!("broker {leader}"),
                    reason: format!(
                        "fetch failed with {:?}",
                        ResponseError::try_from_code(response.error_code)
                    ),
                }),
                Ok((version, response)) => Ok((version, response)),
                Err(e) => Err(e),
            };
            let (version, response) = match response {
                Ok(ok) => {
                    if self.failing {
                        tracing::info!(leader, "fetching from the leader again");
                    }
                    self.failing = false;
                    ok
                }
                Err(e) => {
                    if !self.failing {
                        tracing::warn!(leader, error = %e, "replica fetch failed; backing off");
                    } else {
                        tracing::debug!(leader, error = %e, "replica fetch failed");
                    }
                    self.failing = true;
                    let tps: Vec<_> = wanted.iter().map(|w| w.tp.clone()).collect();
                    self.delay(&tps);
                    continue;
                }
            };
            let outcomes = self.process(version, response, wanted).await;
            let mut delayed = Vec::new();
            for (w, next) in outcomes {
                match next {
                    Next::Continue => {}
                    Next::Delay => delayed.push(w.tp),
                    Next::Stop => self.stop_partition(&w),
                    Next::OutOfRange => {
                        let handled = tokio::select! {
                            handled = self.handle_out_of_range(&w) => handled,
                            _ = stop.changed() => return,
                        };
                        if !handled {
                            delayed.push(w.tp);
                        }
                    }
                }
            }
            self.delay(&delayed);
        }
        tracing::debug!(leader, "replica fetcher stopped");
    }

    /// The partitions to fetch now, and when the earliest backing-off one is ready again.
    fn ready_partitions(&self) -> (Vec<Wanted>, Option<Instant>) {
        let now = Instant::now();
        let mut wake_at: Option<Instant> = None;
        let mut wanted = Vec::new();
        for (tp, s) in lock(&self.shared.partitions).iter_mut() {
            if s.stopped {
                continue;
            }
            match s.delayed_until {
                Some(until) if until > now => {
                    wake_at = Some(wake_at.map_or(until, |w| w.min(until)));
                    continue;
                }
                _ => s.delayed_until = None,
            }
            wanted.push(Wanted {
                tp: tp.clone(),
                topic_id: s.partition.topic_id(),
                partition: s.partition.clone(),
                leader_epoch: s.leader_epoch,
                fetch_offset: s.partition.log_end_offset(),
                last_fetched_epoch: s.partition.latest_epoch().unwrap_or(-1),
                log_start_offset: s.partition.log_start_offset(),
            });
        }
        (wanted, wake_at)
    }

    /// True while `w` is still fetched as it was when its request was built (not removed, re-added with
    /// another leader epoch, or stopped).
    fn is_current(&self, w: &Wanted) -> bool {
        lock(&self.shared.partitions).get(&w.tp).is_some_and(|s| {
            !s.stopped
                && s.leader_epoch == w.leader_epoch
                && Arc::ptr_eq(&s.partition, &w.partition)
        })
    }

    fn delay(&self, tps: &[TopicPartition]) {
        if tps.is_empty() {
            return;
        }
        let until = Instant::now() + self.ctx.config.backoff();
        let mut map = lock(&self.shared.partitions);
        for tp in tps {
            if let Some(s) = map.get_mut(tp) {
                s.delayed_until = Some(until);
            }
        }
    }

    fn stop_partition(&self, w: &Wanted) {
        if let Some(s) = lock(&self.shared.partitions).get_mut(&w.tp)
            && Arc::ptr_eq(&s.partition, &w.partition)
        {
            s.stopped = true;
        }
    }

    /// Applies a response on the blocking pool (appends, fsyncs and truncations are file I/O) and returns
    /// what each partition asked for still needs.
    async fn process(
        &self,
        version: i16,
        response: FetchResponse,
        wanted: Vec<Wanted>,
    ) -> Vec<(Wanted, Next)> {
        // Match answers by topic id from v13, by name before.
        let mut answers: HashMap<(Uuid, String, i32), _> = HashMap::new();
        for topic in response.responses {
            for p in topic.partitions {
                let key = if version >= 13 {
                    (topic.topic_id, String::new(), p.partition_index)
                } else {
                    (Uuid::nil(), topic.topic.0.to_string(), p.partition_index)
                };
                answers.insert(key, p);
            }
        }
        let mut work = Vec::with_capacity(wanted.len());
        for w in wanted {
            let key = if version >= 13 {
                (w.topic_id, String::new(), w.tp.partition)
            } else {
                (Uuid::nil(), w.tp.topic.clone(), w.tp.partition)
            };
            let answer = answers.remove(&key);
            let current = self.is_current(&w) && w.partition.log_end_offset() == w.fetch_offset;
            work.push((w, answer, current));
        }
        let ctx = self.ctx.clone();
        let joined = tokio::task::spawn_blocking(move || {
            work.into_iter()
                .map(|(w, answer, current)| {
                    let next = match (answer, current) {
                        // Removed or changed meanwhile: its next fetch is built afresh.
                        (_, false) => Next::Continue,
                        // Left out of the response (its size limit): fetched again next round.
                        (None, true) => Next::Continue,
                        (Some(p), true) => apply_partition_response(&ctx, &w, p),
                    };
                    (w, next)
                })
                .collect::<Vec<_>>()
        })
        .await;
        match joined {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::error!(error = %e, "applying a fetch response failed");
                Vec::new()
            }
        }
    }

    /// Kafka's `fetchOffsetAndTruncate`: the leader's log end below ours means it lost what we hold past
    /// it (an unclean election): truncate to it; our log end below the leader's log start means what we
    /// miss is gone: start over at the leader's log start. True when it could decide (fetch again now).
    async fn handle_out_of_range(&self, w: &Wanted) -> bool {
        let leo = w.partition.log_end_offset();
        let leader_end = match self.list_offset(w, LATEST_TIMESTAMP).await {
            Ok(offset) => offset,
            Err(e) => {
                tracing::debug!(partition = %w.tp, error = %e, "cannot ask the leader for its log end offset");
                return false;
            }
        };
        if !self.is_current(w) {
            return true;
        }
        let partition = w.partition.clone();
        if leader_end < leo {
            tracing::warn!(partition = %w.tp, leader_end, log_end = leo,
                "the leader's log ends below ours (unclean leader election?); truncating to it");
            return self
                .blocking(move || truncate(&partition, leader_end))
                .await;
        }
        let leader_start = match self.list_offset(w, EARLIEST_TIMESTAMP).await {
            Ok(offset) => offset,
            Err(e) => {
                tracing::debug!(partition = %w.tp, error = %e, "cannot ask the leader for its log start offset");
                return false;
            }
        };
        if !self.is_current(w) {
            return true;
        }
        if leader_start > leo {
            tracing::info!(partition = %w.tp, leader_start, log_end = leo,
                "behind the leader's log start; starting over there");
            return self
                .blocking(move || {
                    partition
                        .truncate_fully_and_start_at(leader_start)
                        .map_err(|e| {
                            tracing::error!(partition = %partition.topic_partition(), error = %e,
                                "cannot restart the log at the leader's log start");
                        })
                        .is_ok()
                })
                .await;
        }
        // Within the leader's range after all (it moved meanwhile): back off, then fetch again.
        false
    }

    async fn blocking(&self, f: impl FnOnce() -> bool + Send + 'static) -> bool {
        tokio::task::spawn_blocking(f).await.unwrap_or(false)
    }

    /// ListOffsets as a replica (`replica_id` = this broker): LATEST answers the leader's log end offset.
    async fn list_offset(&self, w: &Wanted, timestamp: i64) -> Result<i64, String> {
        let node_id = self.ctx.node_id;
        let build = |version: i16| {
            let partition = ListOffsetsPartition::default()
                .with_partition_index(w.tp.partition)
                .with_timestamp(timestamp)
                .with_current_leader_epoch(if version >= 4 { w.leader_epoch } else { -1 });
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(node_id))
                .with_topics(vec![
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(w.tp.topic.clone())))
                        .with_partitions(vec![partition]),
                ])
        };
        let (_, response) = self
            .ctx
            .client
            .send_built(self.shared.leader, build, SendOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let p = response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == w.tp.partition)
            .ok_or("no answer for the partition")?;
        if p.error_code != 0 {
            return Err(format!("{:?}", ResponseError::try_from_code(p.error_code)));
        }
        Ok(p.offset)
    }
}

/// The Fetch of `wanted` at `version` (fields as that version has them).
fn build_fetch(ctx: &Context, wanted: &[Wanted], version: i16) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for w in wanted {
        let partition = FetchPartition::default()
            .with_partition(w.tp.partition)
            .with_current_leader_epoch(if version >= 9 { w.leader_epoch } else { -1 })
            .with_fetch_offset(w.fetch_offset)
            .with_last_fetched_epoch(if version >= 12 {
                w.last_fetched_epoch
            } else {
                -1
            })
            .with_log_start_offset(if version >= 5 { w.log_start_offset } else { -1 })
            .with_partition_max_bytes(ctx.config.fetch_max_bytes);
        let same = |t: &FetchTopic| {
            if version >= 13 {
                t.topic_id == w.topic_id
            } else {
                t.topic.0.as_str() == w.tp.topic
            }
        };
        match topics.iter_mut().find(|t| same(t)) {
            Some(t) => t.partitions.push(partition),
            None => {
                let topic = if version >= 13 {
                    FetchTopic::default().with_topic_id(w.topic_id)
                } else {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(w.tp.topic.clone())))
                };
                topics.push(topic.with_partitions(vec![partition]));
            }
        }
    }
    let mut request = FetchRequest::default()
        .with_max_wait_ms(ctx.config.fetch_wait_max_ms)
        .with_min_bytes(ctx.config.fetch_min_bytes)
        .with_max_bytes(ctx.config.fetch_response_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics);
    if version >= 15 {
        request = request.with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(ctx.node_id))
                .with_replica_epoch((ctx.broker_epoch)()),
        );
    } else {
        request = request.with_replica_id(BrokerId(ctx.node_id));
    }
    if version >= 12 {
        request = request.with_cluster_id(ctx.cluster_id.clone().map(StrBytes::from_string));
    }
    request
}

/// One partition's answer (on the blocking pool): Kafka's `processPartitionData` and its error handling.
fn apply_partition_response(
    ctx: &Context,
    w: &Wanted,
    p: kafka_protocol::messages::fetch_response::PartitionData,
) -> Next {
    let tp = &w.tp;
    match ResponseError::try_from_code(p.error_code) {
        None => {}
        Some(ResponseError::OffsetOutOfRange) => return Next::OutOfRange,
        Some(error) => {
            // NOT_LEADER_OR_FOLLOWER, FENCED/UNKNOWN_LEADER_EPOCH, UNKNOWN_TOPIC_*, REPLICA_NOT_AVAILABLE,
            // the leader's KAFKA_STORAGE_ERROR, ...: the metadata will say who leads now.
            tracing::debug!(partition = %tp, ?error, "replica fetch refused; backing off");
            return Next::Delay;
        }
    }
    if p.diverging_epoch.epoch >= 0 || p.diverging_epoch.end_offset >= 0 {
        let offset = truncation_offset(
            &w.partition,
            p.diverging_epoch.epoch,
            p.diverging_epoch.end_offset,
        );
        tracing::info!(partition = %tp, epoch = p.diverging_epoch.epoch,
            leader_end_offset = p.diverging_epoch.end_offset, truncate_to = offset,
            "log diverges from the leader's");
        return if truncate(&w.partition, offset) {
            Next::Continue
        } else {
            Next::Stop
        };
    }
    let records = p.records.unwrap_or_default();
    let appended = !records.is_empty();
    if appended {
        let len = records.len() as u64;
        match w
            .partition
            .append_records_as_follower(BytesMut::from(&records[..]))
        {
            Ok(info) => {
                ctx.counters.bytes.fetch_add(len, Ordering::Relaxed);
                ctx.counters
                    .records
                    .fetch_add(u64::from(info.record_count), Ordering::Relaxed);
            }
            Err(FollowerError::Leader(_)) => return Next::Continue, // removed from the fetcher soon
            Err(FollowerError::Log(e)) => return log_failure(tp, &e, "append"),
        }
        // Durable mode: what the next fetch reports as our log end must be on disk, so that the leader's
        // high watermark (hence an acks=all acknowledgement) counts only fsynced replicas.
        let log = w.partition.log();
        if log.config().is_durable()
            && let Err(e) = log.flush()
        {
            return log_failure(tp, &e, "flush");
        }
    }
    w.partition.update_follower_high_watermark(p.high_watermark);
    if let Err(e) = w
        .partition
        .maybe_increment_log_start_offset(p.log_start_offset)
    {
        tracing::debug!(partition = %tp, error = %e, "log start offset not raised");
    }
    let lag = (p.high_watermark - w.partition.log_end_offset()).max(0);
    if let Some(entry) = lock(&ctx.counters.lag).get_mut(tp) {
        *entry = lag;
    } else {
        lock(&ctx.counters.lag).insert(tp.clone(), lag);
    }
    Next::Continue
}

/// A local failure: a full disk backs off (the append was undone and may succeed later); any other storage
/// failure took the log offline, so fetching stops; anything else (a corrupt response) backs off.
fn log_failure(tp: &TopicPartition, e: &LogError, what: &str) -> Next {
    match e {
        LogError::Storage(_) if e.is_disk_full() => {
            tracing::debug!(partition = %tp, error = %e, "follower {what} refused: disk full");
            Next::Delay
        }
        LogError::Storage(_) | LogError::Offline(_) => {
            tracing::error!(partition = %tp, error = %e, "follower {what} failed; no longer fetching this partition");
            Next::Stop
        }
        _ => {
            tracing::warn!(partition = %tp, error = %e, "follower {what} refused; backing off");
            Next::Delay
        }
    }
}

/// Kafka's `getOffsetTruncationState` for a `diverging_epoch` {epoch, end_offset} from the leader: where
/// this replica's log stops agreeing with the leader's.
pub(crate) fn truncation_offset(partition: &Partition, epoch: i32, leader_end: i64) -> i64 {
    let leo = partition.log_end_offset();
    if leader_end < 0 {
        // The leader knows no epochs: keep what is known committed.
        return partition.high_watermark().min(leo);
    }
    if epoch < 0 {
        return leader_end.min(leo);
    }
    let (own_epoch, own_end) = partition.end_offset_for_epoch(epoch);
    if own_epoch < 0 {
        // No epoch here at or below the leader's: keep no more than the leader has.
        leader_end.min(leo)
    } else if own_epoch != epoch {
        // This replica does not know the leader's epoch: cut to the end of its own largest smaller epoch,
        // and the next fetch (with that epoch as `last_fetched_epoch`) asks again.
        own_end.min(leo)
    } else {
        leader_end.min(own_end).min(leo)
    }
}

/// Truncates to `offset` (below the log start: starts over there, as Kafka's `truncateTo`). False when the
/// log failed (it is offline; fetching it stops).
fn truncate(partition: &Partition, offset: i64) -> bool {
    let result = if offset < partition.log_start_offset() {
        partition.truncate_fully_and_start_at(offset)
    } else {
        partition.truncate_to(offset).map(|_| ())
    };
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(partition = %partition.topic_partition(), offset, error = %e,
                "truncation failed; no longer fetching this partition");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use uuid::Uuid;

    use super::*;
    use crate::log::record_batch::test_support::batch;
    use crate::log::record_batch::{set_base_offset, set_partition_leader_epoch};
    use crate::log::{LogConfig, LogManager};

    fn stamped(n: usize, base: i64, epoch: i32) -> BytesMut {
        let mut b = batch(n, 10, 1);
        set_base_offset(&mut b, base);
        set_partition_leader_epoch(&mut b, epoch);
        BytesMut::from(&b[..])
    }

    /// A follower holding epochs 1 (offsets 0-2), 3 (3-5) and 4 (6-7).
    fn follower(dir: &std::path::Path) -> (Arc<LogManager>, Arc<Partition>) {
        let logs = LogManager::open(dir, LogConfig::default()).unwrap();
        let tp = TopicPartition::new("t", 0);
        let log = logs.get_or_create(&tp, LogConfig::default()).unwrap();
        let partition = Partition::new(tp, Uuid::nil(), log, 0);
        partition.become_follower(4);
        for (n, base, epoch) in [(3, 0, 1), (3, 3, 3), (2, 6, 4)] {
            partition
                .append_records_as_follower(stamped(n, base, epoch))
                .unwrap();
        }
        (logs, partition)
    }

    #[test]
    fn diverging_epochs_truncate_as_kafka_does() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, p) = follower(dir.path());
        assert_eq!(p.log_end_offset(), 8);
        // The leader has epoch 3 too, ending at 4: cut there.
        assert_eq!(truncation_offset(&p, 3, 4), 4);
        // The leader's epoch 3 ends later than ours: ours ends at 6.
        assert_eq!(truncation_offset(&p, 3, 7), 6);
        // The leader answers epoch 2, which we never had: our largest smaller epoch (1) ends at 3; the
        // next fetch asks with last_fetched_epoch 1.
        assert_eq!(truncation_offset(&p, 2, 5), 3);
        // An epoch older than all of ours: it ends where our first epoch starts.
        assert_eq!(truncation_offset(&p, 0, 2), 0);
        // Never past our own end.
        assert_eq!(truncation_offset(&p, 4, 100), 8);
        // The leader knows no epoch at all: keep the high watermark.
        assert_eq!(truncation_offset(&p, -1, -1), p.high_watermark().min(8));

        // Truncating and fetching again from the leader's batches ends identical.
        assert!(truncate(&p, truncation_offset(&p, 3, 4)));
        assert_eq!(
            p.log_end_offset(),
            3,
            "a batch is never split: 3-5 goes whole"
        );
        assert_eq!(p.latest_epoch(), Some(1));
        p.append_records_as_follower(stamped(2, 3, 5)).unwrap();
        assert_eq!(p.log().leader_epochs(), vec![(1, 0), (5, 3)]);
        logs.shutdown().unwrap();
    }

    fn context() -> Context {
        let client = NetworkClient::new(
            crate::network::NetworkClientConfig::for_broker(2),
            Arc::new(|b| Err(NetworkError::UnknownBroker(b))),
        );
        Context {
            node_id: 2,
            client,
            config: FetcherConfig::default(),
            broker_epoch: Arc::new(|| 77),
            cluster_id: Some("c".into()),
            counters: Counters::default(),
        }
    }

    fn wanted(p: &Arc<Partition>, leader_epoch: i32) -> Wanted {
        Wanted {
            tp: p.topic_partition().clone(),
            topic_id: Uuid::from_u128(9),
            partition: p.clone(),
            leader_epoch,
            fetch_offset: p.log_end_offset(),
            last_fetched_epoch: p.latest_epoch().unwrap_or(-1),
            log_start_offset: p.log_start_offset(),
        }
    }

    #[test]
    fn crafted_responses_append_truncate_or_back_off() {
        use kafka_protocol::messages::fetch_response::{EpochEndOffset, PartitionData};
        let dir = tempfile::tempdir().unwrap();
        let (logs, p) = follower(dir.path());
        let ctx = context();
        // Records: appended as sent, the high watermark follows the leader's within our log, lag counted.
        let mut records = BytesMut::new();
        records.extend_from_slice(&stamped(2, 8, 4));
        records.extend_from_slice(&stamped(1, 10, 4)[..30]); // cut by the leader's size limit
        let answer = PartitionData::default()
            .with_high_watermark(20)
            .with_log_start_offset(0)
            .with_records(Some(records.freeze()));
        assert!(matches!(
            apply_partition_response(&ctx, &wanted(&p, 4), answer),
            Next::Continue
        ));
        assert_eq!(p.log_end_offset(), 10);
        assert_eq!(p.high_watermark(), 10);
        assert_eq!(ctx.counters.records.load(Ordering::Relaxed), 2);
        assert_eq!(lock(&ctx.counters.lag).get(p.topic_partition()), Some(&10));
        // A diverging epoch: the leader's epoch 3 ended at 4; nothing of the records is taken.
        let answer = PartitionData::default()
            .with_diverging_epoch(EpochEndOffset::default().with_epoch(3).with_end_offset(4))
            .with_records(Some(stamped(1, 10, 5).freeze()));
        assert!(matches!(
            apply_partition_response(&ctx, &wanted(&p, 5), answer),
            Next::Continue
        ));
        assert_eq!(
            p.log_end_offset(),
            3,
            "cut at the start of the batch holding 4"
        );
        // Errors.
        let code = |e: ResponseError| PartitionData::default().with_error_code(e.code());
        for e in [
            ResponseError::NotLeaderOrFollower,
            ResponseError::FencedLeaderEpoch,
            ResponseError::UnknownLeaderEpoch,
            ResponseError::UnknownTopicOrPartition,
            ResponseError::KafkaStorageError,
        ] {
            assert!(
                matches!(
                    apply_partition_response(&ctx, &wanted(&p, 5), code(e)),
                    Next::Delay
                ),
                "{e:?}"
            );
        }
        assert!(matches!(
            apply_partition_response(&ctx, &wanted(&p, 5), code(ResponseError::OffsetOutOfRange)),
            Next::OutOfRange
        ));
        // A batch that does not continue the log backs off; a local storage failure stops.
        let overlap = PartitionData::default().with_records(Some(stamped(1, 0, 5).freeze()));
        assert!(matches!(
            apply_partition_response(&ctx, &wanted(&p, 5), overlap),
            Next::Delay
        ));
        p.log().close().unwrap();
        let closed = PartitionData::default().with_records(Some(stamped(1, 3, 5).freeze()));
        assert!(matches!(
            apply_partition_response(&ctx, &wanted(&p, 5), closed),
            Next::Stop
        ));
        logs.shutdown().unwrap();
    }

    #[test]
    fn a_durable_follower_fsyncs_what_it_appended_before_its_next_fetch() {
        use kafka_protocol::messages::fetch_response::PartitionData;
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            flush_interval_messages: 1,
            ..LogConfig::default()
        };
        let tp = TopicPartition::new("durable", 0);
        // No flusher thread: only the fetcher's own flush can move the recovery point.
        let log = crate::log::PartitionLog::load_without_flusher(
            dir.path().join(tp.to_string()),
            tp.clone(),
            config,
        );
        let p = Partition::new(tp, Uuid::nil(), log, 0);
        p.become_follower(1);
        let answer = PartitionData::default()
            .with_high_watermark(3)
            .with_records(Some(stamped(3, 0, 1).freeze()));
        assert!(matches!(
            apply_partition_response(&context(), &wanted(&p, 1), answer),
            Next::Continue
        ));
        assert_eq!(p.log_end_offset(), 3);
        assert_eq!(
            p.log().recovery_point(),
            3,
            "fsynced before the next fetch reports 3"
        );
        p.log().close().unwrap();
    }

    #[tokio::test]
    async fn partitions_move_between_fetchers_and_shutdown_ends_every_task() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, p) = follower(dir.path());
        let ctx = context();
        let manager = ReplicaFetcherManager::new(
            ctx.node_id,
            ctx.client.clone(),
            FetcherConfig {
                num_replica_fetchers: 3,
                ..FetcherConfig::default()
            },
            Arc::new(|| 1),
            None,
        );
        let tp = p.topic_partition().clone();
        manager.add_partitions(vec![(p.clone(), 5, 4)]);
        assert_eq!(manager.fetched_partitions(), vec![(tp.clone(), 5, 4)]);
        // A new leader and epoch replace the entry; the same again changes nothing.
        manager.add_partitions(vec![(p.clone(), 6, 5)]);
        manager.add_partitions(vec![(p.clone(), 6, 5)]);
        assert_eq!(manager.fetched_partitions(), vec![(tp.clone(), 6, 5)]);
        manager.remove_partitions(std::slice::from_ref(&tp));
        assert!(manager.fetched_partitions().is_empty());
        manager.add_partitions(vec![(p.clone(), 6, 5)]);
        manager.shutdown().await;
        assert!(
            manager.fetched_partitions().is_empty(),
            "the fetchers are gone after shutdown"
        );
        manager.add_partitions(vec![(p.clone(), 6, 6)]);
        assert!(
            manager.fetched_partitions().is_empty(),
            "ignored after shutdown"
        );
        logs.shutdown().unwrap();
    }

    #[test]
    fn requests_carry_the_replica_fields_of_their_version() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, p) = follower(dir.path());
        let ctx = context();
        let wanted = vec![wanted(&p, 4)];
        let v17 = build_fetch(&ctx, &wanted, 17);
        assert_eq!(v17.replica_id, BrokerId(-1));
        assert_eq!(v17.replica_state.replica_id, BrokerId(2));
        assert_eq!(v17.replica_state.replica_epoch, 77);
        assert_eq!((v17.session_id, v17.session_epoch), (0, -1));
        assert_eq!(
            (v17.max_wait_ms, v17.min_bytes, v17.max_bytes),
            (500, 1, 10 << 20)
        );
        let fp = &v17.topics[0].partitions[0];
        assert_eq!(v17.topics[0].topic_id, Uuid::from_u128(9));
        assert_eq!(
            (
                fp.fetch_offset,
                fp.last_fetched_epoch,
                fp.current_leader_epoch,
                fp.partition_max_bytes
            ),
            (8, 4, 4, 1 << 20)
        );
        let v12 = build_fetch(&ctx, &wanted, 12);
        assert_eq!(v12.replica_id, BrokerId(2));
        assert_eq!(v12.topics[0].topic.0.as_str(), "t");
        // Each encodes at its version.
        use kafka_protocol::protocol::Encodable;
        for (v, r) in [(17, &v17), (12, &v12)] {
            let mut buf = BytesMut::new();
            r.encode(&mut buf, v).unwrap();
        }
        logs.shutdown().unwrap();
    }
}
