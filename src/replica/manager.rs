//! ReplicaManager: the partitions this broker holds, kept in step with the metadata image (Kafka's
//! `ReplicaManager.applyDelta`). It is the one place that creates, opens and deletes partition logs, makes
//! this broker the leader of a partition at the image's leader epoch, and re-applies derived configs; and the
//! one lookup that answers "the leader partition for this request" with Kafka's errors.
//!
//! Locking: the partition map is a short-held RwLock (lookups clone an Arc). `apply` runs on the metadata
//! writer's thread, one delta at a time, in commit order; log I/O happens there, never under the map lock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kafka_protocol::ResponseError;

use crate::cluster::topic_config::topic_log_config;
use crate::cluster::{MetadataDelta, MetadataImage, MetadataPublisher, TopicDelta, TopicImage};
use crate::log::{LogConfig, LogManager, TopicPartition};

use super::partition::Partition;

/// The broker-level log settings in force (server.properties with the dynamic broker configs on top),
/// read afresh whenever a partition's config is derived.
pub type LogDefaults = Arc<dyn Fn() -> LogConfig + Send + Sync>;

/// The partitions of this broker.
pub struct ReplicaManager {
    node_id: i32,
    logs: Arc<LogManager>,
    log_defaults: LogDefaults,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
}

impl std::fmt::Debug for ReplicaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaManager")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl ReplicaManager {
    pub fn new(node_id: i32, logs: Arc<LogManager>, log_defaults: LogDefaults) -> Arc<ReplicaManager> {
        Arc::new(ReplicaManager {
            node_id,
            logs,
            log_defaults,
            partitions: RwLock::new(HashMap::new()),
        })
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The log manager underneath (data directory, background work, shutdown).
    pub fn logs(&self) -> &Arc<LogManager> {
        &self.logs
    }

    /// This broker's partition, if it holds one (led or, later, followed) and its log is open.
    pub fn partition(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.read().get(tp).cloned()
    }

    /// Every partition this broker holds.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.read().values().cloned().collect()
    }

    /// The partition a produce, fetch or offsets request must go to, or Kafka's error for it: an index the
    /// topic does not have is UNKNOWN_TOPIC_OR_PARTITION, a partition another broker leads
    /// NOT_LEADER_OR_FOLLOWER, a partition whose log could not be opened KAFKA_STORAGE_ERROR (offline).
    pub fn leader_partition(
        &self,
        topic: &TopicImage,
        partition: i32,
    ) -> Result<Arc<Partition>, ResponseError> {
        let registration = topic
            .partition(partition)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        if registration.leader != self.node_id {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        self.partition(&TopicPartition {
            topic: topic.name.clone(),
            partition,
        })
        .ok_or(ResponseError::KafkaStorageError)
    }

    /// [`Self::leader_partition`], then the request's `current_leader_epoch` checked against the
    /// partition's (KIP-320).
    pub fn leader_partition_at(
        &self,
        topic: &TopicImage,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<Arc<Partition>, ResponseError> {
        let found = self.leader_partition(topic, partition)?;
        found.check_leader_epoch(current_leader_epoch)?;
        Ok(found)
    }

    /// True when this broker should hold `partition` but could not open its log.
    pub fn is_offline(&self, topic: &TopicImage, partition: i32) -> bool {
        topic
            .partition(partition)
            .is_some_and(|p| p.leader == self.node_id)
            && self
                .partition(&TopicPartition {
                    topic: topic.name.clone(),
                    partition,
                })
                .is_none()
    }

    /// Brings the partitions in line with `delta`. At start-up (`delta.from_snapshot`) existing logs are
    /// opened; for a topic created later, a directory of the same name is the remains of an earlier topic
    /// whose deletion did not finish, and is removed before the new, empty log is created.
    pub fn apply(&self, delta: &MetadataDelta, image: &MetadataImage) {
        if delta.from_snapshot {
            self.warn_about_unknown_directories(image);
        }
        for change in &delta.topics {
            match change {
                TopicDelta::Created(topic) => {
                    self.open_partitions(topic, 0, !delta.from_snapshot);
                }
                TopicDelta::Changed { before, after } => {
                    self.open_partitions(after, before.partition_count(), true);
                    self.apply_registrations(after);
                    if before.configs != after.configs {
                        self.reapply_config(after);
                    }
                }
                TopicDelta::Deleted(topic) => self.delete_partitions(topic),
            }
        }
        if delta.broker_configs_changed {
            for topic in image.topics() {
                self.reapply_config(&topic);
            }
        }
    }

    /// Opens (creating when needed) the logs of partitions `from..` of `topic` that this broker leads. A
    /// partition whose log cannot be opened stays offline; the others serve.
    fn open_partitions(&self, topic: &TopicImage, from: i32, fresh: bool) {
        let config = topic_log_config(&(self.log_defaults)(), topic);
        for (index, registration) in topic.partitions.iter().enumerate().skip(from.max(0) as usize) {
            if registration.leader != self.node_id {
                continue;
            }
            let tp = TopicPartition {
                topic: topic.name.clone(),
                partition: i32::try_from(index).expect("invariant: partition index fits an i32"),
            };
            if fresh && !self.remove_stale_directory(&tp) {
                continue;
            }
            match self.logs.get_or_create(&tp, config.clone()) {
                Ok(log) => {
                    let partition = Partition::new(tp.clone(), topic.id, log, registration.leader_epoch);
                    self.write().insert(tp, partition);
                }
                // The log manager has already logged why (once, at ERROR).
                Err(e) => tracing::debug!(partition = %tp, error = %e, "partition is offline"),
            }
        }
    }

    /// Removes a directory left by an earlier topic of the same name. False if it could not be removed
    /// (the partition then stays offline rather than serve another topic's data).
    fn remove_stale_directory(&self, tp: &TopicPartition) -> bool {
        if !self.logs.dir().join(tp.to_string()).exists() {
            return true;
        }
        tracing::warn!(partition = %tp, "removing a stale log directory before creating the partition");
        match self.logs.delete(tp) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "stale log directory remains; partition offline");
                false
            }
        }
    }

    /// New leader epochs from the image reach the partitions.
    fn apply_registrations(&self, topic: &TopicImage) {
        for (index, registration) in topic.partitions.iter().enumerate() {
            let tp = TopicPartition {
                topic: topic.name.clone(),
                partition: i32::try_from(index).expect("invariant: partition index fits an i32"),
            };
            if let Some(partition) = self.partition(&tp)
                && registration.leader == self.node_id
            {
                partition.become_leader(registration.leader_epoch);
            }
        }
    }

    /// Gives every partition of `topic` its config derived afresh (after an alter), without a restart.
    fn reapply_config(&self, topic: &TopicImage) {
        let config = topic_log_config(&(self.log_defaults)(), topic);
        for partition in 0..topic.partition_count() {
            let tp = TopicPartition {
                topic: topic.name.clone(),
                partition,
            };
            if let Some(partition) = self.partition(&tp) {
                partition.update_config(config.clone());
            }
        }
    }

    /// Closes and deletes the logs of a deleted topic. Parked readers and writers are woken by the close.
    fn delete_partitions(&self, topic: &TopicImage) {
        for partition in 0..topic.partition_count() {
            let tp = TopicPartition {
                topic: topic.name.clone(),
                partition,
            };
            self.write().remove(&tp);
            if let Err(e) = self.logs.delete(&tp) {
                tracing::error!(partition = %tp, error = %e, "could not delete partition log");
            }
        }
    }

    /// A directory that belongs to no topic of the image is left alone (it may be an operator's), but said.
    fn warn_about_unknown_directories(&self, image: &MetadataImage) {
        let on_disk = match self.logs.partitions_on_disk() {
            Ok(on_disk) => on_disk,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the data directory");
                return;
            }
        };
        for dir in on_disk {
            let known = image
                .topic(&dir.topic)
                .is_some_and(|t| dir.partition < t.partition_count());
            if !known {
                tracing::warn!(partition = %dir, "partition directory belongs to no known topic; left untouched");
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TopicPartition, Arc<Partition>>> {
        self.partitions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<TopicPartition, Arc<Partition>>> {
        self.partitions
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MetadataPublisher for ReplicaManager {
    fn publish(&self, delta: &MetadataDelta, image: &Arc<MetadataImage>) {
        self.apply(delta, image);
    }
}
