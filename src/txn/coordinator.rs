//! [`TransactionCoordinator`]: Kafka's `TransactionCoordinator` and `TransactionStateManager` on the
//! coordinator runtime. A transactional id lives on partition `abs(hashCode) % partitions` of
//! `__transaction_state`; every change of its state is decided by a pure function of
//! [`super::metadata`], appended there, replayed into the [`TxnShard`] and answered once committed.
//!
//! Ending a transaction: Prepare* is persisted and the client answered, then a marker (a control batch at
//! the transaction's producer epoch, carrying the coordinator epoch = the leader epoch of the id's
//! `__transaction_state` partition) goes to every partition of the transaction and is waited for until
//! committed, then Complete* is persisted. A shard loaded with Prepare* transactions (a restart, a crash)
//! completes them the same way; Ongoing ones are left to the timeout sweep.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use kafka_protocol::ResponseError;

use crate::clock::Clock;
use crate::cluster::{
    MetadataDelta, MetadataError, MetadataImage, MetadataPublisher, MetadataStore, OFFSETS_TOPIC,
};
use crate::coordinator::{
    CoordinatorError, CoordinatorRecord, CoordinatorRuntime, ShardState, partition_for,
};
use crate::log::batch_builder::end_transaction_marker;
use crate::log::{AppendOrigin, CleanupPolicy, LogError, TopicPartition};
use crate::replica::ReplicaManager;

use super::metadata::{
    InitProducerIdTransition, TransactionMetadata, TransactionState, prepare_add_partitions,
    prepare_complete, prepare_end_txn, prepare_fence_and_abort, prepare_init_producer_id,
    validate_timeout, verify_partition,
};
use super::records::{TransactionLogValue, VALUE_VERSION, encode_key, encode_value};
use super::shard::TxnShard;
use super::{TRANSACTION_STATE_TOPIC, TransactionConfig};

mod markers;
mod sweeps;
mod verification;

/// Hands out producer ids never used before (the broker's durable allocator).
pub type ProducerIdSource = Arc<dyn Fn() -> Result<i64, ResponseError> + Send + Sync>;

/// Resolves once a marker is written and committed.
pub type MarkerWait = Pin<Box<dyn Future<Output = Result<(), ResponseError>> + Send>>;

/// Writes a transaction's end marker into a partition of `__consumer_offsets` through the group
/// coordinator, so its pending transactional offsets are committed or dropped:
/// `(offsets partition, producer id, producer epoch, commit, coordinator epoch)`.
pub type OffsetsMarkerWriter = Arc<dyn Fn(i32, i64, i16, bool, i32) -> MarkerWait + Send + Sync>;

/// The first wait before a marker append is tried again, doubled up to [`MARKER_RETRY_MAX`].
const MARKER_RETRY_MIN: Duration = Duration::from_millis(50);
const MARKER_RETRY_MAX: Duration = Duration::from_secs(5);

/// What Kafka keeps of an id in memory only (never in `__transaction_state` v0): valid while the id is at
/// this producer id and epoch.
#[derive(Clone, Copy, Debug)]
struct Remembered {
    producer_id: i64,
    producer_epoch: i16,
    last_producer_epoch: i16,
    previous_producer_id: i64,
}

/// An id with a transition being persisted; dropped when the write is answered or failed.
struct PendingGuard {
    pending: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        lock(&self.pending).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A transaction as DescribeTransactions and ListTransactions show it.
pub type TransactionView = TransactionMetadata;

/// The transaction coordinator of this broker.
pub struct TransactionCoordinator {
    metadata: Arc<MetadataStore>,
    replicas: Arc<ReplicaManager>,
    runtime: Arc<CoordinatorRuntime<TxnShard>>,
    config: TransactionConfig,
    /// `offsets.topic.num.partitions`, for the partition of a group before `__consumer_offsets` exists.
    offsets_topic_num_partitions: i32,
    clock: Clock,
    producer_ids: ProducerIdSource,
    offsets_markers: RwLock<Option<OffsetsMarkerWriter>>,
    /// Sends WriteTxnMarkers to the leaders of partitions this broker does not lead (a cluster); None on
    /// a single node, where every partition is local.
    marker_client: RwLock<Option<Arc<crate::network::NetworkClient>>>,
    pending: Arc<Mutex<HashSet<String>>>,
    remembered: Mutex<HashMap<String, Remembered>>,
    /// Ids whose markers are being written now.
    completing: Mutex<HashSet<String>>,
    /// The leader epoch each partition's Prepare* transactions were last recovered for.
    recovered: Mutex<HashMap<i32, i32>>,
    /// Wakes the background task when shards were loaded.
    loaded: tokio::sync::Notify,
    stopping: tokio::sync::watch::Sender<bool>,
    weak: Weak<TransactionCoordinator>,
}

impl std::fmt::Debug for TransactionCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionCoordinator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `cleanup.policy` of `__transaction_state`.
const STATE_CLEANUP_POLICY: CleanupPolicy = CleanupPolicy {
    delete: false,
    compact: true,
};

fn coordinator_error(e: CoordinatorError) -> ResponseError {
    e.response_error()
}

fn record_of(m: &TransactionMetadata) -> Result<CoordinatorRecord, ResponseError> {
    let encode = || -> Result<CoordinatorRecord, super::records::TxnRecordError> {
        Ok(CoordinatorRecord {
            key: encode_key(&m.transactional_id)?,
            value: Some(encode_value(&TransactionLogValue::of(m), VALUE_VERSION)?),
        })
    };
    encode().map_err(|e| {
        tracing::error!(id = %m.transactional_id, error = %e, "cannot encode transaction state");
        ResponseError::UnknownServerError
    })
}

impl TransactionCoordinator {
    /// Starts the transaction shards: the runtime follows the metadata image, so every partition of an
    /// existing `__transaction_state` is loaded now (the topic is created on first use). Registers itself
    /// after the runtime, to complete the Prepare* transactions of each loaded shard.
    pub fn open(
        metadata: Arc<MetadataStore>,
        replicas: Arc<ReplicaManager>,
        config: TransactionConfig,
        offsets_topic_num_partitions: i32,
        clock: Clock,
        producer_ids: ProducerIdSource,
    ) -> Arc<TransactionCoordinator> {
        let runtime = CoordinatorRuntime::new(
            TRANSACTION_STATE_TOPIC,
            replicas.clone(),
            super::STATE_LOG_WRITE_TIMEOUT,
            |_| TxnShard::default(),
        );
        metadata.add_publisher(runtime.clone());
        let coordinator = Arc::new_cyclic(|weak| TransactionCoordinator {
            metadata: metadata.clone(),
            replicas,
            runtime,
            config,
            offsets_topic_num_partitions,
            clock,
            producer_ids,
            offsets_markers: RwLock::new(None),
            marker_client: RwLock::new(None),
            pending: Arc::new(Mutex::new(HashSet::new())),
            remembered: Mutex::new(HashMap::new()),
            completing: Mutex::new(HashSet::new()),
            recovered: Mutex::new(HashMap::new()),
            loaded: tokio::sync::Notify::new(),
            stopping: tokio::sync::watch::Sender::new(false),
            weak: weak.clone(),
        });
        metadata.add_publisher(Arc::new(LoadListener(Arc::downgrade(&coordinator))));
        coordinator
    }

    /// Routes the markers of `__consumer_offsets` partitions through the group coordinator. Until it is
    /// set they are appended like any partition's (no transactional offsets exist to complete then).
    pub fn set_offsets_marker_writer(&self, writer: OffsetsMarkerWriter) {
        *self
            .offsets_markers
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(writer);
    }

    /// Sends the markers of partitions led by other brokers through `client` (see `markers`).
    pub fn set_marker_client(&self, client: Arc<crate::network::NetworkClient>) {
        *self
            .marker_client
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(client);
    }

    /// The wall clock of transaction start, update and timeout times.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn config(&self) -> &TransactionConfig {
        &self.config
    }

    /// The runtime holding the shards (for tests and metrics).
    pub fn runtime(&self) -> &Arc<CoordinatorRuntime<TxnShard>> {
        &self.runtime
    }

    fn num_partitions(&self) -> i32 {
        self.metadata
            .topic(TRANSACTION_STATE_TOPIC)
            .map_or(self.config.state_log_num_partitions, |t| {
                t.partition_count()
            })
    }

    /// The partition of `__transaction_state` that holds `transactional_id`.
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        partition_for(transactional_id, self.num_partitions())
    }

    /// The partition of `__consumer_offsets` that holds `group_id` (what AddOffsetsToTxn adds).
    pub fn offsets_partition_for(&self, group_id: &str) -> i32 {
        let partitions = self
            .metadata
            .topic(OFFSETS_TOPIC)
            .map_or(self.offsets_topic_num_partitions, |t| t.partition_count());
        partition_for(group_id, partitions)
    }

    /// NOT_COORDINATOR when another broker leads `transactional_id`'s partition of `__transaction_state`
    /// (Kafka's transaction APIs answer so on any broker but the coordinator); Ok when this broker leads
    /// it or the topic does not exist yet.
    pub fn check_coordinator(&self, transactional_id: &str) -> Result<(), ResponseError> {
        self.runtime
            .check_leadership(&self.metadata.image(), self.partition_for(transactional_id))
            .map_err(|e| e.response_error())
    }

    /// Whether this broker can answer for `transactional_id` now (FindCoordinator): COORDINATOR_LOAD_IN_PROGRESS
    /// while its shard loads. Before the topic exists every id is this broker's.
    pub fn coordinator_status(&self, transactional_id: &str) -> Result<(), ResponseError> {
        if self.metadata.topic(TRANSACTION_STATE_TOPIC).is_none() {
            return Ok(());
        }
        match self.runtime.state(self.partition_for(transactional_id)) {
            Some(ShardState::Active) => Ok(()),
            Some(ShardState::Loading) => Err(ResponseError::CoordinatorLoadInProgress),
            Some(ShardState::Failed) | None => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// Creates `__transaction_state` (compacted, `transaction.state.log.segment.bytes`) on first use.
    pub fn ensure_topic(&self) -> Result<(), ResponseError> {
        if self.metadata.topic(TRANSACTION_STATE_TOPIC).is_some() {
            return Ok(());
        }
        let configs = BTreeMap::from([
            (
                "cleanup.policy".to_string(),
                STATE_CLEANUP_POLICY.to_string(),
            ),
            (
                "segment.bytes".to_string(),
                self.config.state_log_segment_bytes.to_string(),
            ),
            (
                "min.insync.replicas".to_string(),
                self.config.state_log_min_isr.to_string(),
            ),
        ]);
        match self.metadata.create_topic_with(
            TRANSACTION_STATE_TOPIC,
            self.config.state_log_num_partitions,
            self.config.state_log_replication_factor,
            Vec::new(),
            configs,
        ) {
            Ok(topic) => {
                tracing::info!(
                    partitions = topic.partition_count(),
                    "created {TRANSACTION_STATE_TOPIC}"
                );
                Ok(())
            }
            Err(MetadataError::TopicExists(_)) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "cannot create {TRANSACTION_STATE_TOPIC}");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    /// The shard's metadata of `id` with what is kept in memory only put back.
    fn current(&self, shard: &TxnShard, id: &str) -> Option<TransactionMetadata> {
        let mut m = shard.get(id)?.clone();
        if let Some(r) = lock(&self.remembered).get(id)
            && r.producer_id == m.producer_id
            && r.producer_epoch == m.producer_epoch
        {
            m.last_producer_epoch = r.last_producer_epoch;
            m.previous_producer_id = r.previous_producer_id;
        }
        Some(m)
    }

    /// One transition of `id`: `decide` sees its current metadata and whether another transition is being
    /// persisted, and returns the metadata to persist (None: nothing) with the caller's result. Returns
    /// once the write is committed, with the coordinator epoch it was written at.
    pub(super) async fn transit<T>(
        &self,
        id: &str,
        decide: impl Fn(
            Option<TransactionMetadata>,
            bool,
        ) -> Result<(Option<TransactionMetadata>, T), ResponseError>,
    ) -> Result<(T, Option<TransactionMetadata>, i32), ResponseError> {
        self.check_coordinator(id)?;
        let partition = self.partition_for(id);
        let attempt = || {
            self.runtime.append(partition, None, |shard| {
                let pending = lock(&self.pending).contains(id);
                let decided = decide(self.current(shard, id), pending).and_then(|(next, t)| {
                    let Some(next) = next else {
                        return Ok((Vec::new(), t, None, None));
                    };
                    let record = record_of(&next)?;
                    lock(&self.pending).insert(id.to_string());
                    let guard = PendingGuard {
                        pending: self.pending.clone(),
                        id: id.to_string(),
                    };
                    Ok((vec![record], t, Some(next), Some(guard)))
                });
                match decided {
                    Ok((records, t, next, guard)) => (records, Ok((t, next, guard))),
                    Err(e) => (Vec::new(), Err(e)),
                }
            })
        };
        let (decided, wait) = match attempt() {
            // The topic was just created by another request, whose publishers are still loading its shards.
            Err(CoordinatorError::NotCoordinator(_) | CoordinatorError::LoadInProgress(_))
                if self.metadata.topic(TRANSACTION_STATE_TOPIC).is_some() =>
            {
                self.metadata.await_publishers();
                attempt().map_err(coordinator_error)?
            }
            other => other.map_err(coordinator_error)?,
        };
        let epoch = self.runtime.epoch(partition).unwrap_or(-1);
        let (t, next, _guard) = decided?;
        wait.await.map_err(coordinator_error)?;
        Ok((t, next, epoch))
    }

    /// InitProducerId with a transactional id (Kafka's `handleInitProducerId`): the producer id and epoch
    /// the producer is to use. An Ongoing transaction of the id is fenced and aborted first, answered with
    /// CONCURRENT_TRANSACTIONS for the client to retry.
    pub async fn init_producer_id(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        validate_timeout(timeout_ms, self.config.max_timeout_ms)?;
        self.ensure_topic()?;
        let now = self.clock.now_ms();
        let (transition, _, coordinator_epoch) = self
            .transit(transactional_id, |current, pending| {
                let mut new_id = || (self.producer_ids)();
                let t = prepare_init_producer_id(
                    current.as_ref(),
                    pending,
                    transactional_id,
                    timeout_ms,
                    expected,
                    now,
                    &mut new_id,
                )?;
                let next = match &t {
                    InitProducerIdTransition::Ready(m) => {
                        // Remembered as the record is appended, so a retry arriving before this answer
                        // sees it. Keyed by the new producer id and epoch: after a failed append it matches
                        // nothing (the id's last epoch is then -1, as after a reload).
                        lock(&self.remembered).insert(
                            transactional_id.to_string(),
                            Remembered {
                                producer_id: m.producer_id,
                                producer_epoch: m.producer_epoch,
                                last_producer_epoch: m.last_producer_epoch,
                                previous_producer_id: m.previous_producer_id,
                            },
                        );
                        m.clone()
                    }
                    InitProducerIdTransition::FenceAndAbort(m) => m.clone(),
                };
                Ok((Some(next), t))
            })
            .await?;
        match transition {
            InitProducerIdTransition::Ready(m) => Ok((m.producer_id, m.producer_epoch)),
            InitProducerIdTransition::FenceAndAbort(m) => {
                tracing::info!(
                    id = transactional_id,
                    producer_id = m.producer_id,
                    epoch = m.producer_epoch,
                    "fenced the producer of an ongoing transaction; aborting it"
                );
                self.spawn_completion(self.partition_for(transactional_id), coordinator_epoch, m);
                Err(ResponseError::ConcurrentTransactions)
            }
        }
    }

    /// AddPartitionsToTxn v0-3 for partitions that exist (the api layer answers for unknown ones).
    pub async fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: BTreeSet<TopicPartition>,
    ) -> Result<(), ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        if self.metadata.topic(TRANSACTION_STATE_TOPIC).is_none() {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        let now = self.clock.now_ms();
        self.transit(transactional_id, |current, pending| {
            let next = prepare_add_partitions(
                current.as_ref(),
                pending,
                producer_id,
                producer_epoch,
                &partitions,
                now,
            )?;
            Ok((next, ()))
        })
        .await
        .map(|_| ())
    }

    /// AddOffsetsToTxn: adds the group's partition of `__consumer_offsets` to the transaction.
    pub async fn add_offsets(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group_id: &str,
    ) -> Result<(), ResponseError> {
        let tp = TopicPartition::new(OFFSETS_TOPIC, self.offsets_partition_for(group_id));
        self.add_partitions(
            transactional_id,
            producer_id,
            producer_epoch,
            BTreeSet::from([tp]),
        )
        .await
    }

    /// EndTxn v0-4 (TV1): answers once Prepare* is committed; the markers and Complete* follow in the
    /// background. A retry of a completed end answers NONE at once.
    pub async fn end_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Result<(), ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        if self.metadata.topic(TRANSACTION_STATE_TOPIC).is_none() {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        let now = self.clock.now_ms();
        let ((), prepared, coordinator_epoch) = self
            .transit(transactional_id, |current, pending| {
                let next = prepare_end_txn(
                    current.as_ref(),
                    pending,
                    producer_id,
                    producer_epoch,
                    commit,
                    now,
                )?;
                Ok((next, ()))
            })
            .await?;
        if let Some(prepared) = prepared {
            self.spawn_completion(
                self.partition_for(transactional_id),
                coordinator_epoch,
                prepared,
            );
        }
        Ok(())
    }

    /// KIP-890 part 1: may `producer_id` at `producer_epoch` write transactionally to `tp` now? The produce
    /// path asks when a transactional batch arrives for a producer with no ongoing transaction on the
    /// partition. TRANSACTION_ABORTABLE when the partition is not in the producer's ongoing transaction.
    pub fn verify_partition(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        tp: &TopicPartition,
    ) -> Result<(), ResponseError> {
        let mut loading = false;
        for partition in self.runtime.partitions() {
            match self.runtime.read(partition, |shard| {
                shard.by_producer_id(producer_id).cloned()
            }) {
                Ok(Some(m)) => {
                    let pending = lock(&self.pending).contains(&m.transactional_id);
                    return verify_partition(&m, pending, producer_id, producer_epoch, tp);
                }
                Ok(None) => {}
                Err(CoordinatorError::LoadInProgress(_)) => loading = true,
                Err(_) => {}
            }
        }
        if loading {
            // The producer's id may be in a shard still loading.
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        Err(ResponseError::InvalidProducerIdMapping)
    }

    /// [`Self::verify_partition`] for a named transactional id (a TxnOffsetCommit's offsets partition, or a
    /// produce request that carries its transactional id): Kafka's verify-only AddPartitionsToTxn.
    pub fn verify_transaction(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        tp: &TopicPartition,
    ) -> Result<(), ResponseError> {
        if self.metadata.topic(TRANSACTION_STATE_TOPIC).is_none() {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        // Produce and TxnOffsetCommit ask a coordinator on another broker before they append
        // (`verify_remotely`) and never get here for one; should a caller, this broker has nothing to check
        // against and the write goes unverified, as with `transaction.partition.verification.enable=false`.
        if self.remote_coordinator(transactional_id).is_some() {
            return Ok(());
        }
        let partition = self.partition_for(transactional_id);
        let m = self
            .runtime
            .read(partition, |shard| shard.get(transactional_id).cloned())
            .map_err(coordinator_error)?
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        let pending = lock(&self.pending).contains(transactional_id);
        verify_partition(&m, pending, producer_id, producer_epoch, tp)
    }

    /// DescribeTransactions of one id: TRANSACTIONAL_ID_NOT_FOUND when unknown.
    pub fn describe(&self, transactional_id: &str) -> Result<TransactionView, ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        if self.metadata.topic(TRANSACTION_STATE_TOPIC).is_none() {
            return Err(ResponseError::TransactionalIdNotFound);
        }
        self.runtime
            .read(self.partition_for(transactional_id), |shard| {
                shard.get(transactional_id).cloned()
            })
            .map_err(coordinator_error)?
            .filter(|m| m.state != TransactionState::Dead)
            .ok_or(ResponseError::TransactionalIdNotFound)
    }

    /// Every id this broker coordinates (ListTransactions), Dead ones left out, sorted by id;
    /// COORDINATOR_LOAD_IN_PROGRESS while a shard loads.
    pub fn list(&self) -> Result<Vec<TransactionView>, ResponseError> {
        let mut out = Vec::new();
        for partition in self.runtime.partitions() {
            match self.runtime.state(partition) {
                Some(ShardState::Loading) => return Err(ResponseError::CoordinatorLoadInProgress),
                Some(ShardState::Active) => {}
                _ => continue,
            }
            self.runtime
                .read(partition, |shard| {
                    out.extend(
                        shard
                            .transactions()
                            .filter(|m| m.state != TransactionState::Dead)
                            .cloned(),
                    )
                })
                .map_err(coordinator_error)?;
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(out)
    }
}

impl TransactionCoordinator {
    /// How many transactional ids of the loaded shards are in each state, every state listed (for the
    /// metrics page: a state with none reads 0 rather than vanishing). Shards still loading are left out.
    pub fn state_counts(&self) -> Vec<(TransactionState, usize)> {
        let mut counts: Vec<(TransactionState, usize)> =
            TransactionState::ALL.iter().map(|&s| (s, 0)).collect();
        for partition in self.runtime.partitions() {
            if self.runtime.state(partition) != Some(ShardState::Active) {
                continue;
            }
            let _ = self.runtime.read(partition, |shard| {
                for m in shard.transactions() {
                    if let Some(count) = counts.iter_mut().find(|(s, _)| *s == m.state) {
                        count.1 += 1;
                    }
                }
            });
        }
        counts
    }
}

/// Tells the coordinator that the runtime (registered before it) may have loaded shards.
struct LoadListener(Weak<TransactionCoordinator>);

impl MetadataPublisher for LoadListener {
    fn publish(&self, _delta: &MetadataDelta, _image: &Arc<MetadataImage>) {
        if let Some(coordinator) = self.0.upgrade() {
            coordinator.loaded.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::clock::ManualClock;
    use crate::log::record_batch::{RECORD_BATCH_OVERHEAD, RecordBatchHeader};
    use crate::log::records::{MAX_DECOMPRESSED_BATCH_BYTES, decompress, for_each_record};
    use crate::log::{LogConfig, LogManager};
    use crate::replica::FetchIsolation;
    use crate::txn::metadata::TransactionState::*;

    const START_MS: i64 = 1_700_000_000_000;

    struct Broker {
        metadata: Arc<MetadataStore>,
        replicas: Arc<ReplicaManager>,
        logs: Arc<LogManager>,
        txn: Arc<TransactionCoordinator>,
    }

    fn open(dir: &Path, clock: &ManualClock, config: TransactionConfig) -> Broker {
        let metadata = Arc::new(MetadataStore::open(dir, 1).unwrap());
        let logs = LogManager::open_with_clock(dir, LogConfig::default(), clock.clock()).unwrap();
        let defaults = LogConfig::default();
        let replicas = ReplicaManager::new(1, logs.clone(), Arc::new(move || defaults.clone()));
        metadata.add_publisher(replicas.clone());
        // A test allocator: ids from 1000 on, never repeated within a test.
        let next = Arc::new(AtomicI64::new(1000));
        let producer_ids: ProducerIdSource =
            Arc::new(move || Ok(next.fetch_add(1, Ordering::SeqCst)));
        let txn = TransactionCoordinator::open(
            metadata.clone(),
            replicas.clone(),
            config,
            50,
            clock.clock(),
            producer_ids,
        );
        Broker {
            metadata,
            replicas,
            logs,
            txn,
        }
    }

    fn small_config() -> TransactionConfig {
        TransactionConfig {
            state_log_num_partitions: 3,
            ..TransactionConfig::default()
        }
    }

    fn tp(topic: &str, p: i32) -> TopicPartition {
        TopicPartition::new(topic, p)
    }

    /// Polls `f` until it holds, for at most 10 s.
    async fn eventually(what: &str, f: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A control record as read back: (producer id, epoch, commit, coordinator epoch).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Marker {
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    }

    fn markers(b: &Broker, tp: &TopicPartition) -> Vec<Marker> {
        let partition = b.replicas.partition(tp).expect("partition open");
        let data = partition
            .read(0, 1 << 20, true, FetchIsolation::LogEnd)
            .unwrap();
        let mut out = Vec::new();
        let mut pos = 0;
        while let Ok(h) = RecordBatchHeader::parse(&data.records[pos..]) {
            let size = h.total_size().unwrap();
            if h.is_control() {
                assert!(
                    h.is_transactional(),
                    "a marker is a transactional control batch"
                );
                assert_eq!(h.record_count(), 1);
                let (_, records) = decompress(
                    h.compression_type(),
                    &data.records[pos + RECORD_BATCH_OVERHEAD..pos + size],
                    MAX_DECOMPRESSED_BATCH_BYTES,
                )
                .unwrap();
                for_each_record(&records, 1, |_, r| {
                    let key = r.key.unwrap();
                    let value = r.value.unwrap();
                    assert_eq!(key.len(), 4);
                    assert_eq!(&key[..2], &[0, 0], "control key version 0");
                    assert_eq!(value.len(), 6);
                    assert_eq!(&value[..2], &[0, 0], "marker value version 0");
                    out.push(Marker {
                        producer_id: h.producer_id(),
                        producer_epoch: h.producer_epoch(),
                        commit: match i16::from_be_bytes([key[2], key[3]]) {
                            0 => false,
                            1 => true,
                            other => panic!("control type {other}"),
                        },
                        coordinator_epoch: i32::from_be_bytes(value[2..6].try_into().unwrap()),
                    });
                })
                .unwrap();
            }
            pos += size;
        }
        out
    }

    fn state_of(b: &Broker, id: &str) -> Option<TransactionState> {
        b.txn.describe(id).ok().map(|m| m.state)
    }

    fn leader_epoch(b: &Broker, id: &str) -> i32 {
        b.replicas
            .partition(&tp(TRANSACTION_STATE_TOPIC, b.txn.partition_for(id)))
            .unwrap()
            .leader_epoch()
    }

    #[tokio::test]
    async fn end_txn_writes_markers_to_every_partition_then_completes() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START_MS);
        let b = open(dir.path(), &clock, small_config());
        b.metadata.create_topic("t", 2, BTreeMap::new()).unwrap();
        assert!(b.metadata.topic(TRANSACTION_STATE_TOPIC).is_none());
        assert_eq!(
            b.txn.end_txn("tx", 1, 0, true).await,
            Err(ResponseError::InvalidProducerIdMapping)
        );
        let (pid, epoch) = b.txn.init_producer_id("tx", 60_000, None).await.unwrap();
        assert_eq!((pid, epoch), (1000, 0));
        let topic = b
            .metadata
            .topic(TRANSACTION_STATE_TOPIC)
            .expect("created on first use");
        assert_eq!(topic.partition_count(), 3);
        assert_eq!(
            topic.configs.get("cleanup.policy").map(String::as_str),
            Some("compact")
        );
        // A second InitProducerId bumps the epoch (fencing the first instance).
        assert_eq!(
            b.txn.init_producer_id("tx", 60_000, None).await.unwrap(),
            (pid, 1)
        );
        assert_eq!(
            b.txn
                .add_partitions("tx", pid, 0, BTreeSet::from([tp("t", 0)]))
                .await,
            Err(ResponseError::ProducerFenced)
        );
        b.txn
            .add_partitions("tx", pid, 1, BTreeSet::from([tp("t", 0), tp("t", 1)]))
            .await
            .unwrap();
        assert_eq!(b.txn.verify_partition(pid, 1, &tp("t", 1)), Ok(()));
        assert_eq!(
            b.txn.verify_partition(pid, 1, &tp("t", 5)),
            Err(ResponseError::TransactionAbortable)
        );
        assert_eq!(
            b.txn.verify_partition(pid + 1, 1, &tp("t", 1)),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        assert_eq!(b.txn.verify_transaction("tx", pid, 1, &tp("t", 0)), Ok(()));
        assert_eq!(
            b.txn.verify_transaction("tx", pid, 0, &tp("t", 0)),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            b.txn.verify_transaction("other", pid, 1, &tp("t", 0)),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        let described = b.txn.describe("tx").unwrap();
        assert_eq!((described.state, described.start_ms), (Ongoing, START_MS));
        assert_eq!(b.txn.end_txn("tx", pid, 1, true).await, Ok(()));
        eventually("CompleteCommit", || {
            state_of(&b, "tx") == Some(CompleteCommit)
        })
        .await;
        let expected = Marker {
            producer_id: pid,
            producer_epoch: 1,
            commit: true,
            coordinator_epoch: leader_epoch(&b, "tx"),
        };
        for p in 0..2 {
            assert_eq!(markers(&b, &tp("t", p)), vec![expected]);
        }
        // P12: the retry answers NONE and writes nothing; the opposite end is INVALID_TXN_STATE.
        assert_eq!(b.txn.end_txn("tx", pid, 1, true).await, Ok(()));
        assert_eq!(
            b.txn.end_txn("tx", pid, 1, false).await,
            Err(ResponseError::InvalidTxnState)
        );
        assert_eq!(markers(&b, &tp("t", 0)).len(), 1);
        assert!(b.txn.describe("tx").unwrap().partitions.is_empty());
        // An offsets-only transaction: AddOffsetsToTxn adds the group's partition of __consumer_offsets,
        // whose marker is written there (the topic does not exist here: dropped) and the abort completes.
        b.txn.add_offsets("tx", pid, 1, "my-group").await.unwrap();
        assert_eq!(
            b.txn.describe("tx").unwrap().partitions,
            BTreeSet::from([tp(OFFSETS_TOPIC, 12)])
        );
        b.txn.end_txn("tx", pid, 1, false).await.unwrap();
        eventually("CompleteAbort", || {
            state_of(&b, "tx") == Some(CompleteAbort)
        })
        .await;
        assert_eq!(b.txn.list().unwrap().len(), 1);
        b.logs.shutdown().unwrap();
    }

    /// The markers of `__consumer_offsets` partitions go through the group coordinator's writer.
    #[tokio::test]
    async fn offsets_partitions_are_completed_through_the_group_writer() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START_MS);
        let b = open(dir.path(), &clock, small_config());
        b.metadata
            .create_topic(OFFSETS_TOPIC, 50, BTreeMap::new())
            .unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        b.txn
            .set_offsets_marker_writer(Arc::new(move |p, pid, epoch, commit, ce| {
                lock(&seen).push((p, pid, epoch, commit, ce));
                Box::pin(std::future::ready(Ok(())))
            }));
        let (pid, epoch) = b.txn.init_producer_id("tx", 60_000, None).await.unwrap();
        b.txn
            .add_offsets("tx", pid, epoch, "my-group")
            .await
            .unwrap();
        b.txn.end_txn("tx", pid, epoch, true).await.unwrap();
        eventually("CompleteCommit", || {
            state_of(&b, "tx") == Some(CompleteCommit)
        })
        .await;
        assert_eq!(
            *lock(&calls),
            vec![(12, pid, epoch, true, leader_epoch(&b, "tx"))]
        );
        assert!(
            markers(&b, &tp(OFFSETS_TOPIC, 12)).is_empty(),
            "not appended directly"
        );
        b.logs.shutdown().unwrap();
    }

    #[tokio::test]
    async fn a_deleted_topic_leaves_the_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START_MS);
        let b = open(dir.path(), &clock, small_config());
        b.metadata.create_topic("gone", 1, BTreeMap::new()).unwrap();
        b.metadata.create_topic("kept", 1, BTreeMap::new()).unwrap();
        let (pid, epoch) = b.txn.init_producer_id("tx", 60_000, None).await.unwrap();
        b.txn
            .add_partitions(
                "tx",
                pid,
                epoch,
                BTreeSet::from([tp("gone", 0), tp("kept", 0)]),
            )
            .await
            .unwrap();
        b.metadata.delete_topic("gone").unwrap();
        b.txn.end_txn("tx", pid, epoch, true).await.unwrap();
        eventually("CompleteCommit", || {
            state_of(&b, "tx") == Some(CompleteCommit)
        })
        .await;
        assert_eq!(markers(&b, &tp("kept", 0)).len(), 1);
        b.logs.shutdown().unwrap();
    }

    /// P15: a transaction found in PrepareCommit when its shard loads gets its markers and completes.
    #[tokio::test]
    async fn a_shard_loaded_with_a_prepared_transaction_completes_it() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START_MS);
        let (pid, epoch) = {
            let b = open(dir.path(), &clock, small_config());
            b.metadata.create_topic("t", 1, BTreeMap::new()).unwrap();
            let (pid, epoch) = b.txn.init_producer_id("tx", 60_000, None).await.unwrap();
            b.txn
                .add_partitions("tx", pid, epoch, BTreeSet::from([tp("t", 0)]))
                .await
                .unwrap();
            // As a crash right after PrepareCommit was persisted leaves it: the record, no marker.
            let partition = b.txn.partition_for("tx");
            b.txn
                .runtime()
                .write(partition, |shard| {
                    let m = shard.get("tx").unwrap();
                    let prepared =
                        prepare_end_txn(Some(m), false, pid, epoch, true, START_MS).unwrap();
                    (vec![record_of(&prepared.unwrap()).unwrap()], ())
                })
                .await
                .unwrap();
            assert_eq!(state_of(&b, "tx"), Some(PrepareCommit));
            assert!(markers(&b, &tp("t", 0)).is_empty());
            b.logs.abandon();
            (pid, epoch)
        };
        let b = open(dir.path(), &clock, small_config());
        assert_eq!(
            state_of(&b, "tx"),
            Some(PrepareCommit),
            "replayed as persisted"
        );
        assert_eq!(
            b.txn.end_txn("tx", pid, epoch, true).await,
            Err(ResponseError::ConcurrentTransactions)
        );
        b.txn.start();
        eventually("CompleteCommit", || {
            state_of(&b, "tx") == Some(CompleteCommit)
        })
        .await;
        assert_eq!(
            markers(&b, &tp("t", 0)),
            vec![Marker {
                producer_id: pid,
                producer_epoch: epoch,
                commit: true,
                coordinator_epoch: leader_epoch(&b, "tx"),
            }]
        );
        b.txn.shutdown();
        b.logs.shutdown().unwrap();
    }

    /// P15: `__transaction_state` replays to the same transactions after a restart.
    #[tokio::test]
    async fn a_restart_replays_the_same_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START_MS);
        let before = {
            let b = open(dir.path(), &clock, small_config());
            b.metadata.create_topic("t", 3, BTreeMap::new()).unwrap();
            b.txn.init_producer_id("empty", 1_000, None).await.unwrap();
            for (i, id) in ["ongoing", "committed"].iter().enumerate() {
                let (pid, epoch) = b.txn.init_producer_id(id, 60_000, None).await.unwrap();
                let parts = BTreeSet::from([tp("t", i as i32), tp("t", 2)]);
                b.txn.add_partitions(id, pid, epoch, parts).await.unwrap();
            }
            let committed = b.txn.describe("committed").unwrap();
            b.txn
                .end_txn(
                    "committed",
                    committed.producer_id,
                    committed.producer_epoch,
                    true,
                )
                .await
                .unwrap();
            eventually("CompleteCommit", || {
                state_of(&b, "committed") == Some(CompleteCommit)
            })
            .await;
            let listed = b.txn.list().unwrap();
            b.logs.shutdown().unwrap();
            listed
        };
        let states: Vec<_> = before
            .iter()
            .map(|m| (m.transactional_id.as_str(), m.state))
            .collect();
        assert_eq!(
            states,
            vec![
                ("committed", CompleteCommit),
                ("empty", Empty),
                ("ongoing", Ongoing)
            ]
        );
        let b = open(dir.path(), &clock, small_config());
        assert_eq!(b.txn.list().unwrap(), before);
        b.logs.shutdown().unwrap();
    }

    /// P10 and P11: a timed-out transaction is fenced (epoch + 1) and aborted; the fenced producer is refused.
    /// A new instance meeting an Ongoing transaction fences it too and retries after CONCURRENT_TRANSACTIONS.
    #[tokio::test]
    async fn timed_out_transactions_are_fenced_and_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START_MS);
        let b = open(dir.path(), &clock, small_config());
        b.metadata.create_topic("t", 1, BTreeMap::new()).unwrap();
        let (pid, epoch) = b.txn.init_producer_id("slow", 10_000, None).await.unwrap();
        b.txn
            .add_partitions("slow", pid, epoch, BTreeSet::from([tp("t", 0)]))
            .await
            .unwrap();
        clock.advance(Duration::from_millis(10_000));
        assert_eq!(
            b.txn.abort_timed_out_transactions().await,
            0,
            "not past its timeout yet"
        );
        clock.advance(Duration::from_millis(1));
        assert_eq!(b.txn.abort_timed_out_transactions().await, 1);
        eventually("CompleteAbort", || {
            state_of(&b, "slow") == Some(CompleteAbort)
        })
        .await;
        let m = b.txn.describe("slow").unwrap();
        assert_eq!((m.producer_id, m.producer_epoch), (pid, epoch + 1));
        assert_eq!(
            markers(&b, &tp("t", 0)),
            vec![Marker {
                producer_id: pid,
                producer_epoch: epoch + 1,
                commit: false,
                coordinator_epoch: leader_epoch(&b, "slow"),
            }]
        );
        assert_eq!(
            b.txn.end_txn("slow", pid, epoch, true).await,
            Err(ResponseError::ProducerFenced)
        );

        // A new instance while a transaction is Ongoing: fenced and aborted, CONCURRENT_TRANSACTIONS, then
        // the retry gets epoch + 2.
        let (pid, epoch) = b
            .txn
            .init_producer_id("zombie", 60_000, None)
            .await
            .unwrap();
        b.txn
            .add_partitions("zombie", pid, epoch, BTreeSet::from([tp("t", 0)]))
            .await
            .unwrap();
        assert_eq!(
            b.txn.init_producer_id("zombie", 60_000, None).await,
            Err(ResponseError::ConcurrentTransactions)
        );
        eventually("CompleteAbort", || {
            state_of(&b, "zombie") == Some(CompleteAbort)
        })
        .await;
        assert_eq!(
            b.txn.init_producer_id("zombie", 60_000, None).await,
            Ok((pid, epoch + 2))
        );
        assert_eq!(
            b.txn
                .add_partitions("zombie", pid, epoch, BTreeSet::from([tp("t", 0)]))
                .await,
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            b.txn.init_producer_id("zombie", 900_001, None).await,
            Err(ResponseError::InvalidTransactionTimeout)
        );
        b.logs.shutdown().unwrap();
    }

    #[tokio::test]
    async fn idle_ids_expire_and_the_sweeps_run_on_their_timers() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START_MS);
        let config = TransactionConfig {
            id_expiration_ms: 60_000,
            abort_timed_out_interval_ms: 10,
            remove_expired_interval_ms: 10,
            ..small_config()
        };
        let b = open(dir.path(), &clock, config);
        b.metadata.create_topic("t", 1, BTreeMap::new()).unwrap();
        b.txn.init_producer_id("idle", 60_000, None).await.unwrap();
        let (pid, epoch) = b.txn.init_producer_id("busy", 1_000, None).await.unwrap();
        b.txn
            .add_partitions("busy", pid, epoch, BTreeSet::from([tp("t", 0)]))
            .await
            .unwrap();
        assert_eq!(b.txn.remove_expired_transactional_ids().await, 0);
        b.txn.start();
        clock.advance(Duration::from_millis(60_000));
        // The timer aborts "busy" (timed out) and expires "idle"; "busy" was just updated by its abort.
        eventually("idle expired", || state_of(&b, "idle").is_none()).await;
        eventually("busy aborted", || {
            state_of(&b, "busy") == Some(CompleteAbort)
        })
        .await;
        assert_eq!(
            b.txn.describe("idle").unwrap_err(),
            ResponseError::TransactionalIdNotFound
        );
        assert_eq!(b.txn.list().unwrap().len(), 1);
        // The tombstone survives a reload: the id is gone from the replayed shard too.
        let partition = b.txn.partition_for("idle");
        let epoch = b.txn.runtime().epoch(partition).unwrap();
        b.txn.runtime().unload(partition);
        b.txn.runtime().load(partition, epoch);
        assert!(state_of(&b, "idle").is_none());
        b.txn.shutdown();
        b.logs.shutdown().unwrap();
    }
}
