//! [`CoordinatorRuntime`]: one [`CoordinatorShard`] per partition of an internal topic this broker leads.
//!
//! A shard is Loading while its partition's log is replayed, Active once it has caught up with the log end,
//! Failed when the replay could not read the log; a partition without a shard is not coordinated here.
//! Writes are decided by the shard under its lock, appended as one batch (or several below
//! `message.max.bytes`) at the leader epoch the shard was loaded for, replayed into the shard in log order
//! under the same lock, and answered once the high watermark covers them. Reads see what was replayed.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kafka_protocol::ResponseError;

use crate::cluster::{MetadataDelta, MetadataImage, MetadataPublisher};
use crate::log::batch_builder::{BatchBuildError, BatchBuilder, end_transaction_marker};
use crate::log::record_batch::{CRC_START, RECORD_BATCH_OVERHEAD, RecordBatchHeader};
use crate::log::records::{MAX_DECOMPRESSED_BATCH_BYTES, decompress, for_each_record};
use crate::log::{AppendOrigin, LogError, TopicPartition};
use crate::replica::{FetchIsolation, HighWatermarkWaitError, Partition, ReplicaManager};

use super::shard::{CoordinatorRecord, CoordinatorShard};

/// Most bytes read from a partition per step while loading.
const LOAD_READ_BYTES: usize = 4 * 1024 * 1024;
/// Per-record framing allowance when splitting a write into batches below `message.max.bytes`.
const RECORD_OVERHEAD_ESTIMATE: usize = 32;

/// Why the runtime could not serve a request; [`CoordinatorError::response_error`] gives Kafka's code.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("{0} is not coordinated by this broker")]
    NotCoordinator(TopicPartition),
    #[error("{0} is loading")]
    LoadInProgress(TopicPartition),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("write not durable: {0}")]
    NotDurable(String),
    /// The partition's ISR is below its `min.insync.replicas`: the write was refused before appending, as
    /// Kafka's acks=-1 append refuses it (NOT_ENOUGH_REPLICAS).
    #[error("{0} has fewer in-sync replicas than min.insync.replicas")]
    NotEnoughReplicas(TopicPartition),
    #[error("cannot encode coordinator records: {0}")]
    Encode(#[from] BatchBuildError),
}

impl CoordinatorError {
    /// Kafka's error for the client: a missing or moved shard is NOT_COORDINATOR (find it again), a loading
    /// one COORDINATOR_LOAD_IN_PROGRESS (retry), a failed append or flush, too small an ISR or a write not
    /// committed in time COORDINATOR_NOT_AVAILABLE (Kafka's mapping of NOT_ENOUGH_REPLICAS and
    /// REQUEST_TIMED_OUT for coordinator writes).
    pub fn response_error(&self) -> ResponseError {
        match self {
            CoordinatorError::NotCoordinator(_) => ResponseError::NotCoordinator,
            CoordinatorError::LoadInProgress(_) => ResponseError::CoordinatorLoadInProgress,
            CoordinatorError::Log(_)
            | CoordinatorError::NotDurable(_)
            | CoordinatorError::NotEnoughReplicas(_) => ResponseError::CoordinatorNotAvailable,
            CoordinatorError::Encode(_) => ResponseError::UnknownServerError,
        }
    }
}

/// Where a shard stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardState {
    Loading,
    Active,
    /// The log could not be read; writes would be layered over missing history and are refused.
    Failed,
}

/// The producer fields of a write: an idempotent or transactional writer's batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
}

struct Slot<S> {
    state: ShardState,
    /// The leader epoch the shard was loaded for; appends are refused once the partition moved on.
    epoch: i32,
    shard: S,
}

type SharedSlot<S> = Arc<Mutex<Slot<S>>>;

/// Resolves once appended records are committed (the high watermark covers them).
pub type CommitWait = Pin<Box<dyn Future<Output = Result<(), CoordinatorError>> + Send>>;

/// The shards of one internal topic on this broker.
pub struct CoordinatorRuntime<S: CoordinatorShard> {
    topic: String,
    replicas: Arc<ReplicaManager>,
    new_shard: Box<dyn Fn(i32) -> S + Send + Sync>,
    shards: RwLock<HashMap<i32, SharedSlot<S>>>,
    /// How long a write waits for the high watermark before failing (Kafka's `offsets.commit.timeout.ms`
    /// for groups): a stuck ISR must not hold a request, or its memory, forever.
    write_timeout: Duration,
}

impl<S: CoordinatorShard> std::fmt::Debug for CoordinatorRuntime<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorRuntime")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: CoordinatorShard> CoordinatorRuntime<S> {
    /// A runtime for `topic` whose shards start as `new_shard(partition)`. Nothing is loaded until
    /// [`Self::load`] or a metadata delta makes this broker a partition's leader. Writes not committed
    /// within `write_timeout` fail (their records stay in the log, as a timed-out produce's do).
    pub fn new(
        topic: impl Into<String>,
        replicas: Arc<ReplicaManager>,
        write_timeout: Duration,
        new_shard: impl Fn(i32) -> S + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(CoordinatorRuntime {
            topic: topic.into(),
            replicas,
            new_shard: Box::new(new_shard),
            shards: RwLock::new(HashMap::new()),
            write_timeout,
        })
    }

    fn tp(&self, partition: i32) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), partition)
    }

    fn slot(&self, partition: i32) -> Option<SharedSlot<S>> {
        self.shards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&partition)
            .cloned()
    }

    /// The state of `partition`'s shard; None when it is not loaded here.
    pub fn state(&self, partition: i32) -> Option<ShardState> {
        self.slot(partition).map(|s| lock(&s).state)
    }

    /// The leader epoch `partition`'s shard was loaded for.
    pub fn epoch(&self, partition: i32) -> Option<i32> {
        self.slot(partition).map(|s| lock(&s).epoch)
    }

    /// Partitions with a shard, sorted.
    pub fn partitions(&self) -> Vec<i32> {
        let mut out: Vec<i32> = self
            .shards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        out.sort_unstable();
        out
    }

    /// Rebuilds `partition`'s shard for leader `epoch` by replaying its log from the log start to the log
    /// end, then makes it Active (Failed if the log cannot be read). A shard already loaded for `epoch` or a
    /// later one is kept. Requests meanwhile get COORDINATOR_LOAD_IN_PROGRESS.
    pub fn load(&self, partition: i32, epoch: i32) -> ShardState {
        let tp = self.tp(partition);
        let slot = {
            let mut shards = self.shards.write().unwrap_or_else(|e| e.into_inner());
            if let Some(existing) = shards.get(&partition) {
                let s = lock(existing);
                if s.epoch >= epoch && s.state != ShardState::Failed {
                    return s.state;
                }
            }
            let slot = Arc::new(Mutex::new(Slot {
                state: ShardState::Loading,
                epoch,
                shard: (self.new_shard)(partition),
            }));
            shards.insert(partition, slot.clone());
            slot
        };
        // The slot is held while replaying, so no write lands between the replay and Active.
        let mut s = lock(&slot);
        let outcome = match self.replicas.partition(&tp) {
            Some(p) => replay_log(&p, &mut s.shard),
            None => Err(LogError::Offline(format!(
                "{tp}: its log could not be opened"
            ))),
        };
        s.state = match outcome {
            Ok(records) => {
                tracing::debug!(partition = %tp, records, epoch, "coordinator shard loaded");
                ShardState::Active
            }
            Err(e) => {
                tracing::error!(partition = %tp, error = %e,
                    "could not load coordinator shard; its requests are refused");
                ShardState::Failed
            }
        };
        s.state
    }

    /// Drops `partition`'s shard: this broker no longer coordinates it.
    pub fn unload(&self, partition: i32) {
        let removed = self
            .shards
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&partition);
        if removed.is_some() {
            tracing::debug!(partition = %self.tp(partition), "coordinator shard unloaded");
        }
    }

    /// Loads the partitions of the internal topic this broker leads (again when their leader epoch grew)
    /// and unloads the others, as the image now says.
    pub fn follow_leadership(&self, image: &MetadataImage) {
        let node = self.replicas.node_id();
        let led: HashMap<i32, i32> = image
            .topic(&self.topic)
            .map(|t| {
                (0..t.partition_count())
                    .filter_map(|p| {
                        let r = t.partition(p)?;
                        (r.leader == node).then_some((p, r.leader_epoch))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for p in self.partitions() {
            if !led.contains_key(&p) {
                self.unload(p);
            }
        }
        let mut to_load: Vec<_> = led.into_iter().collect();
        to_load.sort_unstable();
        for (p, epoch) in to_load {
            if self.epoch(p).is_none_or(|e| e < epoch) || self.state(p) == Some(ShardState::Failed)
            {
                self.load(p, epoch);
            }
        }
    }

    /// NOT_COORDINATOR when `image` names another broker (or none) the leader of `partition`: the keys it
    /// holds are coordinated elsewhere, whatever shard this broker still holds while the change is being
    /// published. Ok when this broker leads it, and before the topic exists (a single node creates it on
    /// first use).
    pub fn check_leadership(
        &self,
        image: &MetadataImage,
        partition: i32,
    ) -> Result<(), CoordinatorError> {
        let Some(topic) = image.topic(&self.topic) else {
            return Ok(());
        };
        match topic.partition(partition) {
            Some(r) if r.leader == self.replicas.node_id() => Ok(()),
            _ => Err(CoordinatorError::NotCoordinator(self.tp(partition))),
        }
    }

    /// The Active shard of `partition` with its slot locked, or why there is none.
    fn active(&self, partition: i32) -> Result<SharedSlot<S>, CoordinatorError> {
        let slot = self
            .slot(partition)
            .ok_or_else(|| CoordinatorError::NotCoordinator(self.tp(partition)))?;
        let state = lock(&slot).state;
        match state {
            ShardState::Active => Ok(slot),
            ShardState::Loading => Err(CoordinatorError::LoadInProgress(self.tp(partition))),
            ShardState::Failed => Err(CoordinatorError::Log(LogError::Offline(format!(
                "{} could not be loaded",
                self.tp(partition)
            )))),
        }
    }

    /// Reads `partition`'s shard as far as it has replayed.
    pub fn read<R>(&self, partition: i32, f: impl FnOnce(&S) -> R) -> Result<R, CoordinatorError> {
        let slot = self.active(partition)?;
        let s = lock(&slot);
        Ok(f(&s.shard))
    }

    /// A plain write: `f` looks at the shard and returns the records to append and the response. The
    /// response is returned once the records are replayed and committed (the high watermark covers them);
    /// no records means nothing to wait for.
    pub async fn write<R>(
        &self,
        partition: i32,
        f: impl FnOnce(&S) -> (Vec<CoordinatorRecord>, R),
    ) -> Result<R, CoordinatorError> {
        self.write_as(partition, None, f).await
    }

    /// [`Self::write`] with an idempotent or transactional producer's fields on the batch (a write that
    /// must not be split: it is appended as one batch).
    pub async fn write_as<R>(
        &self,
        partition: i32,
        producer: Option<ProducerBatch>,
        f: impl FnOnce(&S) -> (Vec<CoordinatorRecord>, R),
    ) -> Result<R, CoordinatorError> {
        let (response, wait) = self.append(partition, producer, f)?;
        wait.await?;
        Ok(response)
    }

    /// The first half of [`Self::write_as`], for callers that must order the append under their own
    /// locks: decides, appends and replays now, and returns the response with the wait for the commit.
    pub fn append<R>(
        &self,
        partition: i32,
        producer: Option<ProducerBatch>,
        f: impl FnOnce(&S) -> (Vec<CoordinatorRecord>, R),
    ) -> Result<(R, CommitWait), CoordinatorError> {
        let slot = self.active(partition)?;
        let mut s = lock(&slot);
        let log = self.leader(partition, s.epoch)?;
        let (records, response) = f(&s.shard);
        if records.is_empty() {
            return Ok((response, Box::pin(std::future::ready(Ok(())))));
        }
        // Refused before appending, so neither the log nor the shard holds a write that cannot commit.
        if log.check_enough_replicas().is_err() {
            return Err(CoordinatorError::NotEnoughReplicas(self.tp(partition)));
        }
        let max = log.log().config().max_message_bytes as usize;
        let now = self.replicas.logs().clock().now_ms();
        let chunks = match producer {
            Some(_) => vec![&records[..]],
            None => split_below(&records, max),
        };
        let producer_id = producer.map_or(-1, |p| p.producer_id);
        let mut last_offset = -1;
        for chunk in chunks {
            let mut builder = BatchBuilder::new();
            if let Some(p) = producer {
                builder = builder
                    .producer(p.producer_id, p.producer_epoch, p.base_sequence)
                    .transactional(p.transactional);
            }
            for r in chunk {
                builder.append(now, Some(&r.key), r.value.as_deref(), &[])?;
            }
            let info = log.append_records_to_leader(builder.build()?, AppendOrigin::Coordinator)?;
            for (offset, r) in (info.base_offset..).zip(chunk) {
                s.shard.replay(offset, producer_id, r);
            }
            last_offset = info.last_offset;
        }
        Ok((
            response,
            committed(log, last_offset + 1, self.write_timeout),
        ))
    }

    /// Appends a transaction's end marker for `producer_id` to `partition` (a control batch), replays it,
    /// and waits until it is committed.
    pub async fn write_end_transaction_marker(
        &self,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<(), CoordinatorError> {
        let slot = self.active(partition)?;
        let (log, target) = {
            let mut s = lock(&slot);
            let log = self.leader(partition, s.epoch)?;
            if log.check_enough_replicas().is_err() {
                return Err(CoordinatorError::NotEnoughReplicas(self.tp(partition)));
            }
            let now = self.replicas.logs().clock().now_ms();
            let marker = end_transaction_marker(
                producer_id,
                producer_epoch,
                commit,
                coordinator_epoch,
                now,
            )?;
            let info = log.append_records_to_leader(marker, AppendOrigin::Coordinator)?;
            s.shard
                .replay_end_transaction(info.base_offset, producer_id, commit);
            (log, info.last_offset + 1)
        };
        committed(log, target, self.write_timeout).await
    }

    /// The partition, as long as this broker still leads it at the shard's epoch.
    fn leader(&self, partition: i32, epoch: i32) -> Result<Arc<Partition>, CoordinatorError> {
        self.replicas
            .partition(&self.tp(partition))
            .filter(|p| p.is_leader() && p.leader_epoch() == epoch)
            .ok_or_else(|| CoordinatorError::NotCoordinator(self.tp(partition)))
    }
}

/// Splits records into runs whose estimated batch size stays below `max` (one record at least per run).
fn split_below(records: &[CoordinatorRecord], max: usize) -> Vec<&[CoordinatorRecord]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let mut end = start;
        let mut size = RECORD_BATCH_OVERHEAD;
        while end < records.len() {
            let r = &records[end];
            let rec_size =
                r.key.len() + r.value.as_ref().map_or(0, Vec::len) + RECORD_OVERHEAD_ESTIMATE;
            if end > start && size + rec_size > max {
                break;
            }
            size += rec_size;
            end += 1;
        }
        out.push(&records[start..end]);
        start = end;
    }
    out
}

/// Resolves once the partition's high watermark reaches `target` with enough replicas in sync; fails if
/// its log fails or closes first, the ISR fell below `min.insync.replicas` meanwhile, or `timeout` passes.
fn committed(partition: Arc<Partition>, target: i64, timeout: Duration) -> CommitWait {
    let reached = partition.wait_for_high_watermark(target);
    Box::pin(async move {
        let Ok(reached) = tokio::time::timeout(timeout, reached).await else {
            return Err(CoordinatorError::NotDurable(format!(
                "{} did not commit offset {} within {timeout:?}",
                partition.topic_partition(),
                target - 1
            )));
        };
        if reached.is_ok() && partition.check_enough_replicas_after_append().is_err() {
            return Err(CoordinatorError::NotEnoughReplicas(
                partition.topic_partition().clone(),
            ));
        }
        reached.map_err(|why| {
            let why = match why {
                // The new leader's shard decides; the client finds the coordinator again.
                HighWatermarkWaitError::NotLeader => {
                    return CoordinatorError::NotCoordinator(partition.topic_partition().clone());
                }
                HighWatermarkWaitError::Failed => "failed",
                HighWatermarkWaitError::Closed => "closed",
            };
            CoordinatorError::NotDurable(format!(
                "{} {why} before offset {} was committed",
                partition.topic_partition(),
                target - 1
            ))
        })
    })
}

/// Replays a partition from its log start to its log end into `shard`; returns the records replayed. A
/// damaged batch is logged and skipped, as a partition must load whatever a crash left in it.
fn replay_log<S: CoordinatorShard>(
    partition: &Partition,
    shard: &mut S,
) -> Result<usize, LogError> {
    let tp = partition.topic_partition();
    let mut offset = partition.log_start_offset();
    let end = partition.log_end_offset();
    let mut replayed = 0;
    while offset < end {
        let data = partition.read(offset, LOAD_READ_BYTES, true, FetchIsolation::LogEnd)?;
        let mut pos = 0;
        let mut next = offset;
        while let Ok(h) = RecordBatchHeader::parse(&data.records[pos..]) {
            let Some(size) = h.total_size().filter(|s| pos + *s <= data.records.len()) else {
                break;
            };
            let batch = &data.records[pos..pos + size];
            pos += size;
            next = h.next_offset();
            if h.last_offset() < offset {
                continue;
            }
            match replay_batch(&h, batch, shard) {
                Ok(n) => replayed += n,
                Err(problem) => {
                    tracing::warn!(partition = %tp, offset = h.base_offset(), problem = %problem,
                        "skipping damaged coordinator batch");
                }
            }
        }
        if next <= offset {
            tracing::warn!(partition = %tp, offset, end,
                "no whole batch readable; the rest of the partition is skipped");
            break;
        }
        offset = next;
    }
    Ok(replayed)
}

/// Replays one whole batch; returns its records replayed, or what is wrong with it.
fn replay_batch<S: CoordinatorShard>(
    h: &RecordBatchHeader<'_>,
    batch: &[u8],
    shard: &mut S,
) -> Result<usize, String> {
    if h.magic() != 2 {
        return Err(format!("magic {}", h.magic()));
    }
    if crc32c::crc32c(&batch[CRC_START..]) != h.crc() {
        return Err("CRC mismatch".into());
    }
    let (_, records) = decompress(
        h.compression_type(),
        &batch[RECORD_BATCH_OVERHEAD..],
        MAX_DECOMPRESSED_BATCH_BYTES,
    )
    .map_err(|e| e.to_string())?;
    let mut replayed = 0;
    let mut problem = None;
    for_each_record(&records, h.record_count(), |_, r| {
        let offset = h.base_offset() + i64::from(r.offset_delta);
        if h.is_control() {
            // Control key: version i16, type i16 (0 abort, 1 commit).
            match r
                .key
                .filter(|k| k.len() >= 4)
                .map(|k| i16::from_be_bytes([k[2], k[3]]))
            {
                Some(kind @ (0 | 1)) => {
                    shard.replay_end_transaction(offset, h.producer_id(), kind == 1)
                }
                _ => problem = Some(format!("unknown control record at offset {offset}")),
            }
            return;
        }
        let Some(key) = r.key else {
            problem = Some(format!("record without a key at offset {offset}"));
            return;
        };
        let record = CoordinatorRecord {
            key: key.to_vec(),
            value: r.value.map(<[u8]>::to_vec),
        };
        shard.replay(offset, h.producer_id(), &record);
        replayed += 1;
    })
    .map_err(|e| e.to_string())?;
    match problem {
        Some(p) if replayed == 0 => Err(p),
        Some(p) => {
            tracing::warn!(problem = %p, "skipping coordinator record");
            Ok(replayed)
        }
        None => Ok(replayed),
    }
}

impl<S: CoordinatorShard> MetadataPublisher for CoordinatorRuntime<S> {
    fn publish(&self, _delta: &MetadataDelta, image: &Arc<MetadataImage>) {
        self.follow_leadership(image);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::MetadataStore;
    use crate::log::{LogConfig, LogManager};

    const TOPIC: &str = "__toy";

    /// Remembers every record replayed, in order, and the latest value per key.
    #[derive(Default)]
    struct Toy {
        replayed: Vec<(i64, Vec<u8>)>,
        latest: BTreeMap<Vec<u8>, Vec<u8>>,
        markers: Vec<(i64, bool)>,
    }

    impl CoordinatorShard for Toy {
        fn replay(&mut self, offset: i64, _producer_id: i64, record: &CoordinatorRecord) {
            self.replayed.push((offset, record.key.clone()));
            match &record.value {
                Some(v) => self.latest.insert(record.key.clone(), v.clone()),
                None => self.latest.remove(&record.key),
            };
        }
        fn replay_end_transaction(&mut self, _offset: i64, producer_id: i64, commit: bool) {
            self.markers.push((producer_id, commit));
        }
    }

    fn rec(key: &str, value: Option<&str>) -> CoordinatorRecord {
        CoordinatorRecord {
            key: key.as_bytes().to_vec(),
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    struct Broker {
        metadata: Arc<MetadataStore>,
        replicas: Arc<ReplicaManager>,
        runtime: Arc<CoordinatorRuntime<Toy>>,
    }

    fn broker(dir: &std::path::Path, log_defaults: LogConfig) -> Broker {
        let metadata = Arc::new(MetadataStore::open(dir, 1).unwrap());
        let logs = LogManager::open(dir, log_defaults.clone()).unwrap();
        let replicas = ReplicaManager::new(1, logs, Arc::new(move || log_defaults.clone()));
        metadata.add_publisher(replicas.clone());
        let runtime =
            CoordinatorRuntime::new(TOPIC, replicas.clone(), Duration::from_secs(5), |_| {
                Toy::default()
            });
        Broker {
            metadata,
            replicas,
            runtime,
        }
    }

    async fn put(
        rt: &CoordinatorRuntime<Toy>,
        p: i32,
        recs: Vec<CoordinatorRecord>,
    ) -> Result<usize, CoordinatorError> {
        let n = recs.len();
        tokio::time::timeout(Duration::from_secs(10), rt.write(p, move |_| (recs, n)))
            .await
            .expect("write answers within 10 s")
    }

    fn keys(t: &Toy) -> Vec<(i64, String)> {
        t.replayed
            .iter()
            .map(|(o, k)| (*o, String::from_utf8_lossy(k).into_owned()))
            .collect()
    }

    #[tokio::test]
    async fn load_replays_the_log_and_writes_replay_in_log_order() {
        let dir = tempfile::tempdir().unwrap();
        let b = broker(dir.path(), LogConfig::default());
        b.metadata.create_topic(TOPIC, 1, BTreeMap::new()).unwrap();
        // Records already in the log (as a previous leader left them).
        let partition = b
            .replicas
            .partition(&TopicPartition::new(TOPIC, 0))
            .unwrap();
        let mut old = BatchBuilder::new();
        old.append(1, Some(b"a"), Some(b"1"), &[]).unwrap();
        old.append(1, Some(b"b"), Some(b"1"), &[]).unwrap();
        partition
            .append_records_to_leader(old.build().unwrap(), AppendOrigin::Coordinator)
            .unwrap();
        assert_eq!(
            put(&b.runtime, 0, vec![rec("a", Some("x"))])
                .await
                .unwrap_err()
                .response_error(),
            ResponseError::NotCoordinator
        );
        assert_eq!(
            b.runtime.load(0, partition.leader_epoch()),
            ShardState::Active
        );
        let loaded = b.runtime.read(0, |t| t.latest.clone()).unwrap();
        assert_eq!(loaded.len(), 2);

        assert_eq!(
            put(
                &b.runtime,
                0,
                vec![rec("a", Some("2")), rec("c", Some("3"))]
            )
            .await
            .unwrap(),
            2
        );
        assert_eq!(put(&b.runtime, 0, vec![rec("b", None)]).await.unwrap(), 1);
        let seen = b.runtime.read(0, keys).unwrap();
        assert_eq!(
            seen,
            [(0, "a"), (1, "b"), (2, "a"), (3, "c"), (4, "b")].map(|(o, k)| (o, k.to_string()))
        );
        assert!(partition.high_watermark() >= 5, "answered once committed");
        // A reload from the log gives the same state.
        let before = b.runtime.read(0, |t| t.latest.clone()).unwrap();
        b.runtime.unload(0);
        assert_eq!(b.runtime.state(0), None);
        assert_eq!(
            b.runtime.read(0, |_| ()).unwrap_err().response_error(),
            ResponseError::NotCoordinator
        );
        b.runtime.load(0, partition.leader_epoch());
        assert_eq!(b.runtime.read(0, |t| t.latest.clone()).unwrap(), before);
        assert_eq!(before.get(&b"a"[..]), Some(&b"2".to_vec()));
        assert!(!before.contains_key(&b"b"[..]));
    }

    #[tokio::test]
    async fn leadership_in_the_image_loads_and_unloads_shards() {
        let dir = tempfile::tempdir().unwrap();
        let b = broker(dir.path(), LogConfig::default());
        b.metadata.add_publisher(b.runtime.clone());
        assert!(b.runtime.partitions().is_empty());
        b.metadata.create_topic(TOPIC, 3, BTreeMap::new()).unwrap();
        assert_eq!(b.runtime.partitions(), vec![0, 1, 2]);
        assert!((0..3).all(|p| b.runtime.state(p) == Some(ShardState::Active)));
        // Writes are Send futures: handlers spawn them.
        let rt = b.runtime.clone();
        tokio::spawn(async move { put(&rt, 1, vec![rec("k", Some("v"))]).await })
            .await
            .unwrap()
            .unwrap();
        // Another topic's changes leave the loaded shards as they are.
        b.metadata
            .create_topic("other", 1, BTreeMap::new())
            .unwrap();
        assert_eq!(b.runtime.read(1, |t| t.replayed.len()).unwrap(), 1);
        b.metadata.delete_topic(TOPIC).unwrap();
        assert!(b.runtime.partitions().is_empty());
    }

    #[tokio::test]
    async fn a_failed_append_leaves_the_shard_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let small = LogConfig {
            max_message_bytes: 200,
            ..LogConfig::default()
        };
        let b = broker(dir.path(), small);
        b.metadata.add_publisher(b.runtime.clone());
        b.metadata.create_topic(TOPIC, 1, BTreeMap::new()).unwrap();
        put(&b.runtime, 0, vec![rec("k", Some("v"))]).await.unwrap();
        let big = "x".repeat(500);
        let err = put(&b.runtime, 0, vec![rec("k", Some(&big))])
            .await
            .unwrap_err();
        assert!(matches!(err, CoordinatorError::Log(_)), "{err:?}");
        assert_eq!(err.response_error(), ResponseError::CoordinatorNotAvailable);
        assert_eq!(b.runtime.read(0, keys).unwrap(), vec![(0, "k".to_string())]);
        let partition = b
            .replicas
            .partition(&TopicPartition::new(TOPIC, 0))
            .unwrap();
        assert_eq!(partition.log_end_offset(), 1);
        // Many small records are split into batches below message.max.bytes, all replayed in order.
        let many: Vec<_> = (0..20)
            .map(|i| rec(&format!("k{i:02}"), Some("0123456789")))
            .collect();
        put(&b.runtime, 0, many).await.unwrap();
        let seen = b.runtime.read(0, keys).unwrap();
        assert_eq!(seen.len(), 21);
        assert!(seen.windows(2).all(|w| w[0].0 + 1 == w[1].0));
        assert_eq!(partition.log_end_offset(), 21);
    }

    /// Makes broker 1 the leader of `__toy-0` with `replicas` and `isr` at a new leader epoch; the runtime
    /// reloads the shard for that epoch.
    fn lead_with(b: &Broker, replicas: &[i32], isr: &[i32]) -> Arc<Partition> {
        b.metadata.lead_for_test(TOPIC, 0, 1, replicas, isr);
        b.replicas
            .partition(&TopicPartition::new(TOPIC, 0))
            .unwrap()
    }

    #[tokio::test]
    async fn too_small_an_isr_refuses_writes_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let two = LogConfig {
            min_insync_replicas: 2,
            ..LogConfig::default()
        };
        let b = broker(dir.path(), two);
        b.metadata.add_publisher(b.runtime.clone());
        b.metadata.create_topic(TOPIC, 1, BTreeMap::new()).unwrap();
        let partition = lead_with(&b, &[1, 2], &[1]);
        assert_eq!(b.runtime.state(0), Some(ShardState::Active));
        // At once, not after the write timeout.
        let err = put(&b.runtime, 0, vec![rec("k", Some("v"))])
            .await
            .unwrap_err();
        assert!(
            matches!(err, CoordinatorError::NotEnoughReplicas(_)),
            "{err:?}"
        );
        assert_eq!(err.response_error(), ResponseError::CoordinatorNotAvailable);
        let err = b
            .runtime
            .write_end_transaction_marker(0, 7, 1, true, 3)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CoordinatorError::NotEnoughReplicas(_)),
            "{err:?}"
        );
        assert_eq!(partition.log_end_offset(), 0, "nothing appended");
        assert!(
            b.runtime.read(0, keys).unwrap().is_empty(),
            "nothing replayed"
        );
    }

    #[tokio::test]
    async fn a_write_not_committed_in_time_fails() {
        let dir = tempfile::tempdir().unwrap();
        let metadata = Arc::new(MetadataStore::open(dir.path(), 1).unwrap());
        let logs = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let replicas = ReplicaManager::new(1, logs, Arc::new(LogConfig::default));
        metadata.add_publisher(replicas.clone());
        let timeout = Duration::from_millis(200);
        let runtime = CoordinatorRuntime::new(TOPIC, replicas.clone(), timeout, |_| Toy::default());
        let b = Broker {
            metadata,
            replicas,
            runtime,
        };
        b.metadata.add_publisher(b.runtime.clone());
        b.metadata.create_topic(TOPIC, 1, BTreeMap::new()).unwrap();
        // Broker 2 is in sync but never fetches: the high watermark stays at 0.
        let partition = lead_with(&b, &[1, 2], &[1, 2]);
        let err = put(&b.runtime, 0, vec![rec("k", Some("v"))])
            .await
            .unwrap_err();
        assert!(matches!(err, CoordinatorError::NotDurable(_)), "{err:?}");
        assert_eq!(err.response_error(), ResponseError::CoordinatorNotAvailable);
        assert_eq!(partition.high_watermark(), 0);
        assert_eq!(
            partition.log_end_offset(),
            1,
            "the record stays, as a timed-out produce's does"
        );
    }

    #[tokio::test]
    async fn producer_batches_and_markers_are_written_and_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let b = broker(dir.path(), LogConfig::default());
        b.metadata.add_publisher(b.runtime.clone());
        b.metadata.create_topic(TOPIC, 1, BTreeMap::new()).unwrap();
        let producer = ProducerBatch {
            producer_id: 7,
            producer_epoch: 1,
            base_sequence: 0,
            transactional: true,
        };
        b.runtime
            .write_as(0, Some(producer), |_| (vec![rec("t", Some("1"))], ()))
            .await
            .unwrap();
        b.runtime
            .write_end_transaction_marker(0, 7, 1, true, 3)
            .await
            .unwrap();
        assert_eq!(
            b.runtime.read(0, |t| t.markers.clone()).unwrap(),
            vec![(7, true)]
        );
        let partition = b
            .replicas
            .partition(&TopicPartition::new(TOPIC, 0))
            .unwrap();
        let data = partition
            .read(0, 1 << 20, true, FetchIsolation::LogEnd)
            .unwrap();
        let first = RecordBatchHeader::parse(&data.records).unwrap();
        assert!(first.is_transactional() && !first.is_control());
        assert_eq!(first.producer_id(), 7);
        // The marker is replayed again on load.
        b.runtime.unload(0);
        b.runtime.load(0, partition.leader_epoch());
        assert_eq!(
            b.runtime
                .read(0, |t| (t.markers.clone(), t.replayed.len()))
                .unwrap(),
            (vec![(7, true)], 1)
        );
    }

    #[tokio::test]
    async fn a_shard_of_another_leader_epoch_may_not_append() {
        let dir = tempfile::tempdir().unwrap();
        let b = broker(dir.path(), LogConfig::default());
        b.metadata.add_publisher(b.runtime.clone());
        b.metadata.create_topic(TOPIC, 1, BTreeMap::new()).unwrap();
        let partition = b
            .replicas
            .partition(&TopicPartition::new(TOPIC, 0))
            .unwrap();
        let epoch = partition.leader_epoch();
        // A newer epoch replaces the shard; an older one is ignored.
        assert_eq!(b.runtime.load(0, epoch + 1), ShardState::Active);
        assert_eq!(b.runtime.load(0, epoch), ShardState::Active);
        assert_eq!(b.runtime.epoch(0), Some(epoch + 1));
        let err = put(&b.runtime, 0, vec![rec("k", Some("v"))])
            .await
            .unwrap_err();
        assert_eq!(err.response_error(), ResponseError::NotCoordinator);
        assert_eq!(partition.log_end_offset(), 0);
        // Loaded again at the partition's epoch, it writes.
        b.runtime.unload(0);
        b.runtime.load(0, epoch);
        put(&b.runtime, 0, vec![rec("k", Some("v"))]).await.unwrap();
    }

    #[tokio::test]
    async fn a_shard_being_loaded_answers_load_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let b = broker(dir.path(), LogConfig::default());
        b.runtime.shards.write().unwrap().insert(
            0,
            Arc::new(Mutex::new(Slot {
                state: ShardState::Loading,
                epoch: 0,
                shard: Toy::default(),
            })),
        );
        assert_eq!(
            b.runtime.read(0, |_| ()).unwrap_err().response_error(),
            ResponseError::CoordinatorLoadInProgress
        );
        // A partition whose log is missing fails to load and refuses requests.
        assert_eq!(b.runtime.load(1, 0), ShardState::Failed);
        assert_eq!(
            b.runtime.read(1, |_| ()).unwrap_err().response_error(),
            ResponseError::CoordinatorNotAvailable
        );
    }
}
