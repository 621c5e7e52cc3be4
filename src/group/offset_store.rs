//! Committed offsets and group metadata in `__consumer_offsets` (Kafka's format): the group coordinator's
//! handle on the [`CoordinatorRuntime`] whose [`GroupShard`]s hold them, one per partition.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::cluster::{MetadataError, MetadataStore};
use crate::coordinator::{CoordinatorError, CoordinatorRecord, CoordinatorRuntime, ProducerBatch};
use kafka_protocol::ResponseError;

use crate::log::{CleanupPolicy, LogError, TopicPartition};
use crate::replica::{Partition, ReplicaManager};

use super::records::{
    KeyValue, RecordError, encode_group_metadata_key, encode_group_metadata_value,
    encode_offset_commit_key, encode_offset_commit_value,
};
use super::shard::GroupShard;
use super::{GroupConfig, OFFSETS_TOPIC, OffsetAndMetadata, StoredGroup};

/// Resolves once a write is as durable as the partition's flush policy makes it.
pub type WriteWait = Pin<Box<dyn Future<Output = Result<(), GroupStoreError>> + Send>>;

/// Why the offset store could not load or write.
#[derive(Debug, thiserror::Error)]
pub enum GroupStoreError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("corrupt __consumer_offsets record: {0}")]
    Corrupt(String),
    #[error("write not durable: {0}")]
    NotDurable(String),
    /// A transaction marker of this partition was written after the producer's transaction was verified
    /// with the transaction coordinator, and the producer has nothing open here: the verified transaction
    /// may have ended (Kafka's stale VerificationGuard). Verify again.
    #[error("the transaction verification is stale")]
    StaleVerification,
}

impl From<RecordError> for GroupStoreError {
    fn from(e: RecordError) -> Self {
        corrupt(e)
    }
}

impl From<CoordinatorError> for GroupStoreError {
    /// A shard that is missing, loading or failed is an offline partition to the offset APIs, as before the
    /// runtime: clients retry on COORDINATOR_NOT_AVAILABLE.
    fn from(e: CoordinatorError) -> Self {
        match e {
            CoordinatorError::Log(e) => GroupStoreError::Log(e),
            CoordinatorError::NotDurable(why) => GroupStoreError::NotDurable(why),
            e @ CoordinatorError::NotEnoughReplicas(_) => {
                GroupStoreError::NotDurable(e.to_string())
            }
            CoordinatorError::Encode(e) => GroupStoreError::Corrupt(e.to_string()),
            e @ (CoordinatorError::NotCoordinator(_) | CoordinatorError::LoadInProgress(_)) => {
                GroupStoreError::Log(LogError::Offline(e.to_string()))
            }
        }
    }
}

/// What the coordinator knows of a group, for offset expiration (KIP-211).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupActivity {
    /// The group has members: its offsets never expire.
    Active,
    /// The group has been empty since this time (ms).
    EmptySince(i64),
    /// No group is known (offsets committed by a simple consumer).
    Unknown,
}

/// Committed offsets and group metadata of every group this broker coordinates, kept by the coordinator
/// runtime's group shards (one per `__consumer_offsets` partition this broker leads).
pub struct OffsetStore {
    metadata: Arc<MetadataStore>,
    replicas: Arc<ReplicaManager>,
    config: GroupConfig,
    runtime: Arc<CoordinatorRuntime<GroupShard>>,
}

impl std::fmt::Debug for OffsetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn ready() -> WriteWait {
    Box::pin(std::future::ready(Ok(())))
}

fn corrupt(e: RecordError) -> GroupStoreError {
    GroupStoreError::Corrupt(e.to_string())
}

fn to_record(kv: KeyValue) -> CoordinatorRecord {
    CoordinatorRecord {
        key: kv.key.to_vec(),
        value: kv.value.map(|v| v.to_vec()),
    }
}

/// `cleanup.policy` of `__consumer_offsets`.
const OFFSETS_CLEANUP_POLICY: CleanupPolicy = CleanupPolicy {
    delete: false,
    compact: true,
};

/// Offsets topics stored before compaction existed carry no `cleanup.policy`, so every config derived from
/// the stored topic (at start, after AlterConfigs) would say delete. Records compact once, before the
/// partitions are opened; a failure (a full disk) is logged and [`ensure_compacted`] covers the open logs.
pub fn upgrade_offsets_topic_config(metadata: &MetadataStore) {
    let Some(topic) = metadata.topic(OFFSETS_TOPIC) else {
        return;
    };
    if topic.configs.contains_key("cleanup.policy") {
        return;
    }
    let mut configs = topic.configs.clone();
    configs.insert(
        "cleanup.policy".to_string(),
        OFFSETS_CLEANUP_POLICY.to_string(),
    );
    match metadata.set_topic_configs(OFFSETS_TOPIC, configs) {
        Ok(_) => tracing::info!("{OFFSETS_TOPIC} recorded as compacted"),
        Err(e) => tracing::error!(error = %e,
            "could not record {OFFSETS_TOPIC} as compacted; its logs are compacted until a config change"),
    }
}

/// The open logs of an offsets topic whose stored config still says delete (see
/// [`upgrade_offsets_topic_config`]) are switched anyway.
fn ensure_compacted(partition: &Partition) {
    let config = partition.log().config();
    if config.cleanup_policy != OFFSETS_CLEANUP_POLICY {
        let mut config = (*config).clone();
        config.cleanup_policy = OFFSETS_CLEANUP_POLICY;
        partition.update_config(config);
    }
}

impl OffsetStore {
    /// Starts the group shards: the runtime follows the metadata image, so every partition of an existing
    /// `__consumer_offsets` is loaded now (does not create the topic). A partition that cannot be opened is
    /// logged; writes for its groups then fail.
    pub fn open(
        metadata: Arc<MetadataStore>,
        replicas: Arc<ReplicaManager>,
        config: GroupConfig,
    ) -> Result<Arc<OffsetStore>, GroupStoreError> {
        if let Some(topic) = metadata.topic(OFFSETS_TOPIC) {
            for partition in 0..topic.partition_count() {
                if let Some(p) = replicas.partition(&TopicPartition::new(OFFSETS_TOPIC, partition))
                {
                    ensure_compacted(&p);
                }
            }
        }
        let runtime = CoordinatorRuntime::new(
            OFFSETS_TOPIC,
            replicas.clone(),
            config.commit_timeout(),
            |_| GroupShard::default(),
        );
        metadata.add_publisher(runtime.clone());
        let store = OffsetStore {
            metadata,
            replicas,
            config,
            runtime,
        };
        if store.metadata.topic(OFFSETS_TOPIC).is_some() {
            tracing::info!(
                groups = store.loaded_groups().len(),
                groups_with_offsets = store.groups_with_offsets().len(),
                "loaded {OFFSETS_TOPIC}"
            );
        }
        Ok(Arc::new(store))
    }

    /// The metadata store the shards follow.
    pub fn metadata(&self) -> &Arc<MetadataStore> {
        &self.metadata
    }

    /// The `__consumer_offsets` partitions whose shards are Active here (this broker leads them).
    pub fn active_partitions(&self) -> Vec<i32> {
        self.runtime
            .partitions()
            .into_iter()
            .filter(|&p| self.runtime.state(p) == Some(crate::coordinator::ShardState::Active))
            .collect()
    }

    /// The groups stored in `partition`'s shard, sorted by name (none when it is not Active here).
    pub fn groups_in(&self, partition: i32) -> Vec<(String, StoredGroup)> {
        let mut out: Vec<(String, StoredGroup)> = self
            .runtime
            .read(partition, |shard| {
                shard
                    .groups()
                    .map(|(g, s)| (g.clone(), s.clone()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every group whose metadata is stored, sorted by name.
    pub fn loaded_groups(&self) -> Vec<(String, StoredGroup)> {
        let mut out = Vec::new();
        for p in self.runtime.partitions() {
            let _ = self.runtime.read(p, |shard| {
                out.extend(shard.groups().map(|(g, s)| (g.clone(), s.clone())));
            });
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Partition count of `__consumer_offsets`: the topic's once it exists, the configured one before.
    fn num_partitions(&self) -> i32 {
        self.metadata
            .topic(OFFSETS_TOPIC)
            .map_or(self.config.offsets_topic_num_partitions, |t| {
                t.partition_count()
            })
    }

    /// Creates the topic on first use. The replica manager opens every partition of the new topic as it is
    /// published, as Kafka makes every partition of a new topic led at once (clients such as kafkajs and
    /// Sarama take a partition without a leader for an election in progress and give up), and the runtime
    /// then loads their (empty) shards.
    fn create_offsets_topic(&self, partition: i32) -> Result<(), GroupStoreError> {
        self.ensure_topic()?;
        let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
        let found = self
            .replicas
            .partition(&tp)
            .ok_or_else(|| LogError::Offline(format!("{tp}: its log could not be opened")))?;
        ensure_compacted(&found);
        Ok(())
    }

    /// Creates `__consumer_offsets` (compacted, `offsets.topic.num.partitions`) unless it exists; in a
    /// cluster the controller places and leads its partitions.
    pub fn ensure_topic(&self) -> Result<(), GroupStoreError> {
        if self.metadata.topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let configs = BTreeMap::from([(
            "cleanup.policy".to_string(),
            OFFSETS_CLEANUP_POLICY.to_string(),
        )]);
        match self.metadata.create_topic_with(
            OFFSETS_TOPIC,
            self.config.offsets_topic_num_partitions,
            self.config.offsets_topic_replication_factor,
            Vec::new(),
            configs,
        ) {
            Ok(topic) => {
                tracing::info!(
                    partitions = topic.partition_count(),
                    "created {OFFSETS_TOPIC}"
                );
            }
            // Another request created it first.
            Err(MetadataError::TopicExists(_)) => {}
            // No room to record the topic (a full disk): to the client this is a failed append like
            // any other, retriable once space is freed.
            Err(MetadataError::Io(e)) => return Err(LogError::Storage(e).into()),
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Appends the records `decide` makes from the group's shard (split into batches below
    /// `message.max.bytes`, or one batch of `producer`'s); the shard replays them before this returns. The
    /// wait covers the last batch. Nothing to write writes nothing, and creates no topic.
    fn write(
        &self,
        group: &str,
        producer: Option<ProducerBatch>,
        decide: impl Fn(&GroupShard) -> Result<Vec<KeyValue>, GroupStoreError>,
    ) -> Result<WriteWait, GroupStoreError> {
        let partition = self.partition_for(group);
        if self.metadata.topic(OFFSETS_TOPIC).is_none() {
            if decide(&GroupShard::default())?.is_empty() {
                return Ok(ready());
            }
            self.create_offsets_topic(partition)?;
        }
        let append = || {
            self.runtime
                .append(partition, producer, |shard| match decide(shard) {
                    Ok(records) => (records.into_iter().map(to_record).collect(), Ok(())),
                    Err(e) => (Vec::new(), Err(e)),
                })
        };
        let (decided, wait) = match append() {
            // The topic was just created by another request, whose publishers are still opening its logs
            // and loading its shards: wait for them, then try once more.
            Err(CoordinatorError::NotCoordinator(_) | CoordinatorError::LoadInProgress(_)) => {
                self.metadata.await_publishers();
                append()?
            }
            other => other?,
        };
        decided?;
        Ok(Box::pin(async move {
            wait.await.map_err(GroupStoreError::from)
        }))
    }

    /// Appends one record batch to the group's partition of __consumer_offsets (creating the topic with
    /// offsets.topic.num.partitions partitions on first use), updates the in-memory view at once, and returns
    /// a future that resolves when the partition's high watermark covers the batch (flush policy respected).
    pub fn commit(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
    ) -> Result<WriteWait, GroupStoreError> {
        let records = offsets
            .iter()
            .map(|(tp, om)| {
                Ok(KeyValue {
                    key: encode_offset_commit_key(group, tp)?,
                    value: Some(encode_offset_commit_value(om)?),
                })
            })
            .collect::<Result<Vec<_>, RecordError>>()
            .map_err(corrupt)?;
        self.write(group, None, |_| Ok(records.clone()))
    }

    /// TxnOffsetCommit: appends the offsets as one transactional batch of `producer`, staged in the shard
    /// until the transaction's marker ([`Self::complete_transaction`]). `verified_after_marker` is
    /// [`Self::last_marker_offset`] as read before the transaction was verified: when a marker was written
    /// since and the producer has no transaction open here, the write is refused as
    /// [`GroupStoreError::StaleVerification`].
    pub fn commit_transactional(
        &self,
        group: &str,
        producer: ProducerBatch,
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
        verified_after_marker: Option<i64>,
    ) -> Result<WriteWait, GroupStoreError> {
        assert!(
            producer.transactional && producer.producer_id >= 0,
            "a transactional offset commit needs a transactional producer"
        );
        let records = offsets
            .iter()
            .map(|(tp, om)| {
                Ok(KeyValue {
                    key: encode_offset_commit_key(group, tp)?,
                    value: Some(encode_offset_commit_value(om)?),
                })
            })
            .collect::<Result<Vec<_>, RecordError>>()?;
        self.write(group, Some(producer), |shard| {
            if let Some(seen) = verified_after_marker
                && shard.last_marker_offset() != seen
                && !shard.has_open_transaction(producer.producer_id)
            {
                return Err(GroupStoreError::StaleVerification);
            }
            Ok(records.clone())
        })
    }

    /// The log offset of the last transaction marker of the group's partition (-1 before any, or when the
    /// partition is not loaded here).
    pub fn last_marker_offset(&self, group: &str) -> i64 {
        self.runtime
            .read(self.partition_for(group), GroupShard::last_marker_offset)
            .unwrap_or(-1)
    }

    /// Whether an open transaction has staged an offset of the group for `tp` (OffsetFetch's
    /// require_stable answers UNSTABLE_OFFSET_COMMIT for it).
    pub fn has_pending_offset(&self, group: &str, tp: &TopicPartition) -> bool {
        self.runtime
            .read(self.partition_for(group), |shard| {
                shard.has_pending_offset(group, tp)
            })
            .unwrap_or(false)
    }

    /// Writes a transaction's end marker for `producer_id` to `partition` of `__consumer_offsets` (its shard
    /// replays it: COMMIT materialises the staged offsets, ABORT drops them) and resolves once committed.
    /// Without an offsets topic there is nothing to end.
    pub async fn complete_transaction(
        &self,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<(), CoordinatorError> {
        if self.metadata.topic(OFFSETS_TOPIC).is_none() {
            return Ok(());
        }
        self.runtime
            .write_end_transaction_marker(
                partition,
                producer_id,
                producer_epoch,
                commit,
                coordinator_epoch,
            )
            .await
    }

    /// Stores a group's state (after a rebalance, or when it empties).
    pub fn store_group(
        &self,
        group: &str,
        state: &StoredGroup,
    ) -> Result<WriteWait, GroupStoreError> {
        let record = KeyValue {
            key: encode_group_metadata_key(group).map_err(corrupt)?,
            value: Some(encode_group_metadata_value(state).map_err(corrupt)?),
        };
        self.write(group, None, |_| Ok(vec![record.clone()]))
    }

    /// Tombstones the group metadata and every offset of the group, those staged by open transactions too
    /// (as Kafka's `deleteAllOffsets`: their COMMIT then materialises nothing).
    pub fn delete_group(&self, group: &str) -> Result<WriteWait, GroupStoreError> {
        self.write(group, None, |shard| {
            let mut records = vec![KeyValue {
                key: encode_group_metadata_key(group)?,
                value: None,
            }];
            let committed: BTreeSet<&TopicPartition> =
                shard.offsets(group).map(|(tp, _)| tp).collect();
            let pending = shard.pending_partitions(group);
            for tp in committed.union(&pending) {
                records.push(KeyValue {
                    key: encode_offset_commit_key(group, tp)?,
                    value: None,
                });
            }
            Ok(records)
        })
    }

    /// Tombstones the group's offsets of these partitions (those it has).
    pub fn delete_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<WriteWait, GroupStoreError> {
        self.write(group, None, |shard| {
            tombstones(shard, group, partitions.iter())
        })
    }

    pub fn fetch(&self, group: &str, tp: &TopicPartition) -> Option<OffsetAndMetadata> {
        self.runtime
            .read(self.partition_for(group), |shard| {
                shard.offset(group, tp).cloned()
            })
            .ok()
            .flatten()
    }

    /// The group's committed offsets, sorted by partition.
    pub fn fetch_all(&self, group: &str) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        self.runtime
            .read(self.partition_for(group), |shard| {
                shard
                    .offsets(group)
                    .map(|(tp, om)| (tp.clone(), om.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Groups with at least one committed offset, sorted.
    pub fn groups_with_offsets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in self.runtime.partitions() {
            let _ = self.runtime.read(p, |shard| {
                out.extend(shard.groups_with_offsets().cloned());
            });
        }
        out.sort();
        out
    }

    /// Expires offsets per offsets.retention.minutes (KIP-211: for a group EmptySince(t), all its offsets
    /// once now - t >= retention; for Unknown groups (simple consumers), each offset once now - commit
    /// timestamp >= retention; never while Active). Writes tombstones. Returns how many expired.
    ///
    /// `activity` is asked about every group first, without a shard's lock held, so it may take the
    /// coordinator's locks.
    pub fn expire(
        &self,
        now_ms: i64,
        activity: &dyn Fn(&str) -> GroupActivity,
    ) -> Result<usize, GroupStoreError> {
        let retention = self.config.offsets_retention_ms;
        let activities: Vec<(String, GroupActivity)> = self
            .groups_with_offsets()
            .into_iter()
            .map(|g| {
                let a = activity(&g);
                (g, a)
            })
            .collect();
        let mut expired = 0;
        let mut first_error = None;
        for (group, act) in activities {
            if act == GroupActivity::Active {
                continue;
            }
            // An offset with a transactional commit pending is kept until that transaction ends.
            let doomed = |shard: &GroupShard| -> Vec<TopicPartition> {
                shard
                    .offsets(&group)
                    .filter(|(tp, om)| match act {
                        GroupActivity::EmptySince(t) => now_ms.saturating_sub(t) >= retention,
                        GroupActivity::Unknown => {
                            now_ms.saturating_sub(om.commit_timestamp_ms) >= retention
                        }
                        GroupActivity::Active => false,
                    } && !shard.has_pending_offset(&group, tp))
                    .map(|(tp, _)| tp.clone())
                    .collect()
            };
            let count = std::cell::Cell::new(0);
            // The tombstones' durability is not awaited: a lost tombstone only means the offset expires
            // again after a restart.
            let written = self.write(&group, None, |shard| {
                let records = tombstones(shard, &group, doomed(shard).iter())?;
                count.set(records.len());
                Ok(records)
            });
            match written {
                Ok(_wait) if count.get() == 0 => {}
                Ok(_wait) => {
                    tracing::info!(group = %group, count = count.get(), "expired committed offsets");
                    expired += count.get();
                }
                Err(e) => {
                    tracing::warn!(group = %group, error = %e, "could not expire offsets");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if expired == 0 => Err(e),
            _ => Ok(expired),
        }
    }

    /// NOT_COORDINATOR when another broker leads `group`'s partition of `__consumer_offsets` (Kafka's
    /// group APIs answer so on any broker but the coordinator); Ok when this broker leads it or the
    /// topic does not exist yet.
    pub fn check_coordinator(&self, group: &str) -> Result<(), ResponseError> {
        self.runtime
            .check_leadership(&self.metadata.image(), self.partition_for(group))
            .map_err(|e| e.response_error())
    }

    /// Kafka's partition of `__consumer_offsets` for a group: abs(String.hashCode) % partitions.
    pub fn partition_for(&self, group: &str) -> i32 {
        crate::coordinator::partition_for(group, self.num_partitions())
    }
}

/// Tombstones for the group's offsets of `partitions` that it has, committed or staged by an open
/// transaction (Kafka's OffsetDelete).
fn tombstones<'a>(
    shard: &GroupShard,
    group: &str,
    partitions: impl Iterator<Item = &'a TopicPartition>,
) -> Result<Vec<KeyValue>, GroupStoreError> {
    partitions
        .filter(|tp| shard.offset(group, tp).is_some() || shard.has_pending_offset(group, tp))
        .map(|tp| {
            Ok(KeyValue {
                key: encode_offset_commit_key(group, tp)?,
                value: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::group::StoredMember;
    use crate::group::records::encode_batch;
    use crate::log::RECORD_BATCH_OVERHEAD;
    use crate::log::{LogConfig, LogManager};

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    fn om(offset: i64, leader_epoch: i32, metadata: &str, ts: i64) -> OffsetAndMetadata {
        OffsetAndMetadata {
            offset,
            leader_epoch,
            metadata: metadata.into(),
            commit_timestamp_ms: ts,
        }
    }

    fn group_state(generation: i32) -> StoredGroup {
        StoredGroup {
            protocol_type: "consumer".into(),
            generation,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            current_state_timestamp_ms: 1_000,
            members: vec![StoredMember {
                member_id: "m-1".into(),
                group_instance_id: Some("static-1".into()),
                client_id: "cid".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        }
    }

    struct Broker {
        logs: Arc<LogManager>,
        store: Arc<OffsetStore>,
    }

    fn open_with(dir: &Path, log_defaults: LogConfig, config: GroupConfig) -> Broker {
        let metadata = Arc::new(MetadataStore::open(dir, 1).expect("metadata store opens"));
        let logs = LogManager::open(dir, log_defaults.clone()).expect("log manager opens");
        let replicas = ReplicaManager::new(1, logs.clone(), Arc::new(move || log_defaults.clone()));
        metadata.add_publisher(replicas.clone());
        let store = OffsetStore::open(metadata, replicas, config).expect("offset store opens");
        Broker { logs, store }
    }

    fn open(dir: &Path) -> Broker {
        open_with(dir, LogConfig::default(), GroupConfig::default())
    }

    #[test]
    fn an_offsets_topic_stored_without_a_policy_is_recorded_as_compacted_once() {
        let dir = tempfile::tempdir().unwrap();
        let metadata = MetadataStore::open(dir.path(), 1).unwrap();
        upgrade_offsets_topic_config(&metadata); // no offsets topic yet: nothing to do
        assert!(metadata.topic(OFFSETS_TOPIC).is_none());
        // As brook stored it before compaction existed: other overrides, no cleanup.policy.
        let old = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        metadata.create_topic(OFFSETS_TOPIC, 2, old).unwrap();
        upgrade_offsets_topic_config(&metadata);
        let expected = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("retention.ms".to_string(), "1000".to_string()),
        ]);
        assert_eq!(metadata.topic(OFFSETS_TOPIC).unwrap().configs, expected);
        // Survives a restart, and an explicit policy is never overwritten.
        drop(metadata);
        let metadata = MetadataStore::open(dir.path(), 1).unwrap();
        assert_eq!(metadata.topic(OFFSETS_TOPIC).unwrap().configs, expected);
        let chosen = BTreeMap::from([("cleanup.policy".to_string(), "compact,delete".to_string())]);
        metadata
            .set_topic_configs(OFFSETS_TOPIC, chosen.clone())
            .unwrap();
        upgrade_offsets_topic_config(&metadata);
        assert_eq!(metadata.topic(OFFSETS_TOPIC).unwrap().configs, chosen);
    }

    /// Awaits a write with a deadline, so a wait that never resolves fails the test instead of hanging.
    async fn done(wait: WriteWait) -> Result<(), GroupStoreError> {
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("write wait resolves within 10 s")
    }

    #[tokio::test]
    async fn nothing_is_created_until_the_first_write() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        assert!(b.store.metadata.topic(OFFSETS_TOPIC).is_none());
        assert!(b.store.fetch("g", &tp("t", 0)).is_none());
        done(
            b.store
                .commit("g", vec![(tp("t", 0), om(5, -1, "", 1))])
                .unwrap(),
        )
        .await
        .unwrap();
        let topic = b
            .store
            .metadata
            .topic(OFFSETS_TOPIC)
            .expect("topic created");
        assert_eq!(topic.partition_count(), 50);
        let p = b.store.partition_for("g");
        let log = b
            .logs
            .get(&tp(OFFSETS_TOPIC, p))
            .expect("group's partition open");
        assert_eq!(log.high_watermark(), 1);
    }

    #[tokio::test]
    async fn commits_and_groups_survive_clean_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = open(dir.path());
            let w = b
                .store
                .commit(
                    "g1",
                    vec![
                        (tp("t", 0), om(10, 3, "meta data", 111)),
                        (tp("t", 1), om(20, -1, "", 222)),
                    ],
                )
                .unwrap();
            done(w).await.unwrap();
            done(
                b.store
                    .commit("g1", vec![(tp("t", 0), om(11, 4, "later", 333))])
                    .unwrap(),
            )
            .await
            .unwrap();
            done(b.store.store_group("g1", &group_state(1)).unwrap())
                .await
                .unwrap();
            done(b.store.store_group("g1", &group_state(2)).unwrap())
                .await
                .unwrap();
            done(
                b.store
                    .commit("g2", vec![(tp("u", 7), om(1, 0, "x", 5))])
                    .unwrap(),
            )
            .await
            .unwrap();
            b.logs.shutdown().unwrap();
        }
        let b = open(dir.path());
        assert_eq!(
            b.store.fetch("g1", &tp("t", 0)),
            Some(om(11, 4, "later", 333))
        );
        assert_eq!(
            b.store.fetch_all("g1"),
            vec![
                (tp("t", 0), om(11, 4, "later", 333)),
                (tp("t", 1), om(20, -1, "", 222)),
            ]
        );
        assert_eq!(b.store.fetch("g2", &tp("u", 7)), Some(om(1, 0, "x", 5)));
        assert_eq!(b.store.groups_with_offsets(), vec!["g1", "g2"]);
        assert_eq!(
            b.store.loaded_groups(),
            vec![("g1".to_string(), group_state(2))]
        );
    }

    #[tokio::test]
    async fn commits_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = open(dir.path());
            done(
                b.store
                    .commit("g", vec![(tp("t", 0), om(42, 9, "m", 7))])
                    .unwrap(),
            )
            .await
            .unwrap();
            done(b.store.store_group("g", &group_state(3)).unwrap())
                .await
                .unwrap();
            b.logs.abandon();
        }
        let b = open(dir.path());
        assert!(!b.logs.had_clean_shutdown());
        assert_eq!(b.store.fetch("g", &tp("t", 0)), Some(om(42, 9, "m", 7)));
        assert_eq!(
            b.store.loaded_groups(),
            vec![("g".to_string(), group_state(3))]
        );
    }

    #[tokio::test]
    async fn tombstones_remove_offsets_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = open(dir.path());
            let offsets = vec![
                (tp("t", 0), om(1, -1, "", 1)),
                (tp("t", 1), om(2, -1, "", 1)),
            ];
            done(b.store.commit("g", offsets).unwrap()).await.unwrap();
            done(
                b.store
                    .delete_offsets("g", &[tp("t", 0), tp("nope", 0)])
                    .unwrap(),
            )
            .await
            .unwrap();
            assert_eq!(b.store.fetch("g", &tp("t", 0)), None);
            assert!(b.store.fetch("g", &tp("t", 1)).is_some());
            b.logs.shutdown().unwrap();
        }
        let b = open(dir.path());
        assert_eq!(b.store.fetch("g", &tp("t", 0)), None);
        assert_eq!(b.store.fetch("g", &tp("t", 1)), Some(om(2, -1, "", 1)));
    }

    #[tokio::test]
    async fn delete_group_removes_metadata_and_every_offset() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = open(dir.path());
            let offsets = (0..5)
                .map(|p| (tp("t", p), om(p as i64, -1, "", 1)))
                .collect();
            done(b.store.commit("g", offsets).unwrap()).await.unwrap();
            done(b.store.store_group("g", &group_state(1)).unwrap())
                .await
                .unwrap();
            done(
                b.store
                    .commit("other", vec![(tp("t", 0), om(9, -1, "", 1))])
                    .unwrap(),
            )
            .await
            .unwrap();
            done(b.store.delete_group("g").unwrap()).await.unwrap();
            assert!(b.store.fetch_all("g").is_empty());
            assert!(b.store.loaded_groups().is_empty());
            b.logs.abandon();
        }
        let b = open(dir.path());
        assert!(b.store.fetch_all("g").is_empty());
        assert!(b.store.loaded_groups().is_empty());
        assert_eq!(b.store.groups_with_offsets(), vec!["other"]);
    }

    #[tokio::test]
    async fn large_writes_are_split_below_message_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = LogConfig {
            max_message_bytes: 2_000,
            ..LogConfig::default()
        };
        {
            let b = open_with(dir.path(), defaults.clone(), GroupConfig::default());
            let offsets: Vec<_> = (0..200)
                .map(|p| (tp("topic", p), om(p as i64, 1, "md", 1)))
                .collect();
            done(b.store.commit("g", offsets).unwrap()).await.unwrap();
            done(b.store.delete_group("g").unwrap()).await.unwrap();
            done(
                b.store
                    .commit("g", vec![(tp("topic", 3), om(3, 1, "", 1))])
                    .unwrap(),
            )
            .await
            .unwrap();
            b.logs.shutdown().unwrap();
        }
        let b = open_with(dir.path(), defaults, GroupConfig::default());
        assert_eq!(
            b.store.fetch_all("g"),
            vec![(tp("topic", 3), om(3, 1, "", 1))]
        );
    }

    #[tokio::test]
    async fn offsets_topic_that_cannot_be_recorded_on_a_full_disk_is_a_storage_error() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        // The metadata store's temp file is /dev/full: its writes fail with ENOSPC, as on a full disk.
        let tmp = dir
            .path()
            .join(crate::cluster::metadata_store::FILE_NAME)
            .with_extension("tmp");
        std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
        let commit = || b.store.commit("g", vec![(tp("t", 0), om(1, -1, "", 1))]);
        match commit() {
            Err(GroupStoreError::Log(e)) => assert!(e.is_disk_full(), "{e}"),
            Err(e) => panic!("expected a storage error, got {e}"),
            Ok(_) => panic!("expected a storage error, got a write"),
        }
        assert!(b.store.fetch("g", &tp("t", 0)).is_none());
        // The failed write removed the temp file: the retry creates the topic and commits.
        done(commit().unwrap()).await.unwrap();
        assert_eq!(b.store.fetch("g", &tp("t", 0)), Some(om(1, -1, "", 1)));
    }

    #[tokio::test]
    async fn partition_count_follows_the_existing_topic() {
        let dir = tempfile::tempdir().unwrap();
        {
            let config = GroupConfig {
                offsets_topic_num_partitions: 3,
                ..GroupConfig::default()
            };
            let b = open_with(dir.path(), LogConfig::default(), config);
            done(
                b.store
                    .commit("my-group", vec![(tp("t", 0), om(1, -1, "", 1))])
                    .unwrap(),
            )
            .await
            .unwrap();
            assert_eq!(b.store.partition_for("my-group"), 1_906_497_762 % 3);
            b.logs.shutdown().unwrap();
        }
        // Reopened with the default of 50: the topic's 3 partitions still decide.
        let b = open(dir.path());
        assert_eq!(b.store.partition_for("my-group"), 1_906_497_762 % 3);
        assert_eq!(
            b.store.fetch("my-group", &tp("t", 0)),
            Some(om(1, -1, "", 1))
        );
    }

    #[tokio::test]
    async fn expire_follows_kip_211() {
        let dir = tempfile::tempdir().unwrap();
        let config = GroupConfig {
            offsets_retention_ms: 1_000,
            ..GroupConfig::default()
        };
        let retention = config.offsets_retention_ms;
        {
            let b = open_with(dir.path(), LogConfig::default(), config.clone());
            let old_and_new = || {
                vec![
                    (tp("t", 0), om(1, -1, "", 0)),
                    (tp("t", 1), om(2, -1, "", 5_000)),
                ]
            };
            for g in ["active", "empty-long", "empty-recent", "simple"] {
                done(b.store.commit(g, old_and_new()).unwrap())
                    .await
                    .unwrap();
            }
            let now = 5_500;
            let activity = |g: &str| match g {
                "active" => GroupActivity::Active,
                "empty-long" => GroupActivity::EmptySince(now - retention),
                "empty-recent" => GroupActivity::EmptySince(now - retention + 1),
                _ => GroupActivity::Unknown,
            };
            // empty-long: both offsets, even the fresh one; simple: only the one committed at 0.
            assert_eq!(b.store.expire(now, &activity).unwrap(), 3);
            assert_eq!(b.store.fetch_all("active").len(), 2);
            assert_eq!(b.store.fetch_all("empty-recent").len(), 2);
            assert!(b.store.fetch_all("empty-long").is_empty());
            assert_eq!(
                b.store.fetch_all("simple"),
                vec![(tp("t", 1), om(2, -1, "", 5_000))]
            );
            // Nothing more is due at the same time.
            assert_eq!(b.store.expire(now, &activity).unwrap(), 0);
            b.logs.shutdown().unwrap();
        }
        // The tombstones were written.
        let b = open_with(dir.path(), LogConfig::default(), config);
        assert_eq!(
            b.store.groups_with_offsets(),
            vec!["active", "empty-recent", "simple"]
        );
        assert_eq!(b.store.fetch_all("simple").len(), 1);
    }

    #[tokio::test]
    async fn metadata_and_leader_epoch_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let metadata = "x".repeat(4096) + "\u{1f600} unicode";
        {
            let b = open(dir.path());
            done(
                b.store
                    .commit("g", vec![(tp("t", 0), om(7, 12, &metadata, 99))])
                    .unwrap(),
            )
            .await
            .unwrap();
            b.logs.shutdown().unwrap();
        }
        let b = open(dir.path());
        assert_eq!(
            b.store.fetch("g", &tp("t", 0)),
            Some(om(7, 12, &metadata, 99))
        );
    }

    #[tokio::test]
    async fn oversized_metadata_is_refused_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        let huge = "x".repeat(40_000); // longer than an int16-length string can hold
        let err = b
            .store
            .commit("g", vec![(tp("t", 0), om(1, -1, &huge, 1))])
            .err()
            .expect("refused");
        assert!(matches!(err, GroupStoreError::Corrupt(_)), "{err:?}");
        assert!(b.store.fetch("g", &tp("t", 0)).is_none());
    }

    #[tokio::test]
    async fn undecodable_records_are_skipped_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let group = "g";
        {
            let b = open(dir.path());
            done(
                b.store
                    .commit(group, vec![(tp("t", 0), om(1, -1, "", 1))])
                    .unwrap(),
            )
            .await
            .unwrap();
            // Records a buggy or foreign writer might leave: garbage value, garbage key, no key, and a
            // record type of a newer coordinator.
            let key = super::super::records::encode_offset_commit_key(group, &tp("t", 0)).unwrap();
            let junk = vec![
                KeyValue {
                    key: key.clone(),
                    value: Some(Bytes::from_static(b"\x00\x03\x00")),
                },
                KeyValue {
                    key: Bytes::from_static(b"\x00\x01\x7f\xff"),
                    value: Some(Bytes::from_static(b"v")),
                },
                KeyValue {
                    key: Bytes::from_static(b"\x00\x05\x00\x01g"),
                    value: Some(Bytes::from_static(b"new")),
                },
            ];
            let log = b
                .logs
                .get(&tp(OFFSETS_TOPIC, b.store.partition_for(group)))
                .unwrap();
            crate::replica::partition::leader_append(&log, encode_batch(&junk, 0).unwrap(), 0)
                .unwrap();
            done(
                b.store
                    .commit(group, vec![(tp("t", 1), om(2, -1, "", 1))])
                    .unwrap(),
            )
            .await
            .unwrap();
            b.logs.shutdown().unwrap();
        }
        let b = open(dir.path());
        // The good records before and after the junk are there; the junk changed nothing.
        assert_eq!(
            b.store.fetch_all(group),
            vec![
                (tp("t", 0), om(1, -1, "", 1)),
                (tp("t", 1), om(2, -1, "", 1))
            ]
        );
    }

    #[tokio::test]
    async fn a_damaged_batch_on_disk_is_skipped_not_fatal() {
        // One batch per segment, so the damaged batch sits in an older segment that a clean restart does
        // not rescan: the store itself meets the bad CRC. (Damage in the active segment is truncated by
        // the log's own recovery before the store reads.)
        let dir = tempfile::tempdir().unwrap();
        let small_segments = LogConfig {
            segment_bytes: 150,
            ..LogConfig::default()
        };
        let group = "g";
        let partition;
        {
            let b = open_with(dir.path(), small_segments.clone(), GroupConfig::default());
            partition = b.store.partition_for(group);
            for (p, offset) in [(0, 111), (1, 222), (2, 333)] {
                let w = b
                    .store
                    .commit(group, vec![(tp("t", p), om(offset, -1, "", 1))])
                    .unwrap();
                done(w).await.unwrap();
            }
            let log = b.logs.get(&tp(OFFSETS_TOPIC, partition)).unwrap();
            assert_eq!(log.segment_count(), 3, "one batch per segment");
            b.logs.shutdown().unwrap();
        }
        // Flip a byte inside the first batch's records (after its header): its CRC no longer matches.
        let seg = dir
            .path()
            .join(format!("{OFFSETS_TOPIC}-{partition}"))
            .join("00000000000000000000.log");
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[RECORD_BATCH_OVERHEAD + 5] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();

        let b = open_with(dir.path(), small_segments, GroupConfig::default());
        assert_eq!(b.store.fetch(group, &tp("t", 0)), None);
        assert_eq!(b.store.fetch(group, &tp("t", 1)), Some(om(222, -1, "", 1)));
        assert_eq!(b.store.fetch(group, &tp("t", 2)), Some(om(333, -1, "", 1)));
    }

    #[tokio::test]
    async fn concurrent_commits_leave_the_log_and_the_view_in_the_same_order() {
        let dir = tempfile::tempdir().unwrap();
        let seen_before;
        {
            let b = open(dir.path());
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let store = b.store.clone();
                    std::thread::spawn(move || {
                        for i in 0..50 {
                            let offsets = vec![(tp("t", 0), om(t * 1000 + i, -1, "", 1))];
                            let _wait = store.commit("g", offsets).expect("commit");
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("committer thread");
            }
            seen_before = b.store.fetch("g", &tp("t", 0));
            b.logs.shutdown().unwrap();
        }
        let b = open(dir.path());
        assert!(seen_before.is_some());
        assert_eq!(b.store.fetch("g", &tp("t", 0)), seen_before);
    }

    fn txn_producer(producer_id: i64) -> ProducerBatch {
        ProducerBatch {
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            transactional: true,
        }
    }

    async fn end_txn(store: &OffsetStore, group: &str, producer_id: i64, commit: bool) {
        tokio::time::timeout(
            Duration::from_secs(10),
            store.complete_transaction(store.partition_for(group), producer_id, 0, commit, 0),
        )
        .await
        .expect("the marker is committed within 10 s")
        .unwrap();
    }

    #[tokio::test]
    async fn a_marker_written_after_the_verification_refuses_a_first_transactional_write() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        let offsets = || vec![(tp("t", 0), om(1, -1, "", 1))];
        done(b.store.commit("g", offsets()).unwrap()).await.unwrap();
        let seen = b.store.last_marker_offset("g");
        assert_eq!(seen, -1);
        // Producer 7's transaction was verified, then a marker (of 7's ended transaction, as far as this
        // partition can tell) was written: its first write is refused, and writes nothing.
        end_txn(&b.store, "g", 7, false).await;
        let err = b
            .store
            .commit_transactional("g", txn_producer(7), offsets(), Some(seen))
            .err()
            .expect("a stale verification is refused");
        assert!(matches!(err, GroupStoreError::StaleVerification), "{err:?}");
        assert!(!b.store.has_pending_offset("g", &tp("t", 0)));
        // Verified again after the marker, it writes.
        let seen = b.store.last_marker_offset("g");
        assert!(seen >= 0);
        done(
            b.store
                .commit_transactional("g", txn_producer(7), offsets(), Some(seen))
                .unwrap(),
        )
        .await
        .unwrap();
        // With its transaction open here, other producers' markers no longer matter.
        end_txn(&b.store, "g", 8, true).await;
        done(
            b.store
                .commit_transactional("g", txn_producer(7), offsets(), Some(seen))
                .unwrap(),
        )
        .await
        .unwrap();
        assert!(b.store.has_pending_offset("g", &tp("t", 0)));
    }

    #[tokio::test]
    async fn an_offset_with_a_pending_transactional_commit_does_not_expire() {
        let dir = tempfile::tempdir().unwrap();
        let config = GroupConfig {
            offsets_retention_ms: 1_000,
            ..GroupConfig::default()
        };
        let b = open_with(dir.path(), LogConfig::default(), config);
        let old = vec![
            (tp("t", 0), om(1, -1, "", 0)),
            (tp("t", 1), om(2, -1, "", 0)),
        ];
        done(b.store.commit("g", old).unwrap()).await.unwrap();
        // Only pending offsets: a group with offsets all the same.
        done(
            b.store
                .commit_transactional(
                    "g",
                    txn_producer(7),
                    vec![(tp("t", 1), om(3, -1, "", 0))],
                    None,
                )
                .unwrap(),
        )
        .await
        .unwrap();
        done(
            b.store
                .commit_transactional(
                    "pending-only",
                    txn_producer(9),
                    vec![(tp("t", 0), om(3, -1, "", 0))],
                    None,
                )
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(b.store.groups_with_offsets(), vec!["g", "pending-only"]);
        let unknown = |_: &str| GroupActivity::Unknown;
        assert_eq!(b.store.expire(10_000, &unknown).unwrap(), 1);
        assert_eq!(b.store.fetch("g", &tp("t", 0)), None);
        assert_eq!(b.store.fetch("g", &tp("t", 1)), Some(om(2, -1, "", 0)));
        end_txn(&b.store, "g", 7, true).await;
        assert_eq!(b.store.fetch("g", &tp("t", 1)), Some(om(3, -1, "", 0)));
    }

    #[tokio::test]
    async fn deleting_nothing_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        done(b.store.delete_offsets("g", &[tp("t", 0)]).unwrap())
            .await
            .unwrap();
        done(b.store.commit("g", vec![]).unwrap()).await.unwrap();
        assert!(b.store.metadata.topic(OFFSETS_TOPIC).is_none());
    }

    #[tokio::test]
    async fn durable_write_waits_for_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let durable = LogConfig {
            flush_interval_messages: 1,
            ..LogConfig::default()
        };
        let b = open_with(dir.path(), durable, GroupConfig::default());
        let wait = b
            .store
            .commit("g", vec![(tp("t", 0), om(1, -1, "", 1))])
            .unwrap();
        // The view is updated at once, before durability.
        assert!(b.store.fetch("g", &tp("t", 0)).is_some());
        done(wait).await.unwrap();
        let log = b
            .logs
            .get(&tp(OFFSETS_TOPIC, b.store.partition_for("g")))
            .unwrap();
        assert!(log.recovery_point() >= 1);
    }

    #[tokio::test]
    async fn failed_fsync_fails_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let durable = LogConfig {
            flush_interval_messages: 1,
            ..LogConfig::default()
        };
        let b = open_with(dir.path(), durable, GroupConfig::default());
        done(
            b.store
                .commit("g", vec![(tp("t", 0), om(1, -1, "", 1))])
                .unwrap(),
        )
        .await
        .unwrap();
        let log = b
            .logs
            .get(&tp(OFFSETS_TOPIC, b.store.partition_for("g")))
            .unwrap();
        log.inject_fsync_failure();
        let wait = b
            .store
            .commit("g", vec![(tp("t", 0), om(2, -1, "", 1))])
            .unwrap();
        let err = done(wait).await.expect_err("the commit is not durable");
        assert!(matches!(err, GroupStoreError::NotDurable(_)), "{err:?}");
        // Later writes to the failed partition are refused at once.
        assert!(
            b.store
                .commit("g", vec![(tp("t", 0), om(3, -1, "", 1))])
                .is_err()
        );
    }
}
