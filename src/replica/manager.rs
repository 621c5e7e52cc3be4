//! ReplicaManager: the partitions this broker holds, kept in step with the metadata image (Kafka's
//! `ReplicaManager.applyDelta`). It is the one place that creates, opens and deletes partition logs, makes
//! this broker the leader of a partition at the image's leader epoch, and re-applies derived configs; and the
//! one lookup that answers "the leader partition for this request" with Kafka's errors.
//!
//! It also runs the leader's side of replication that spans partitions: followers' fetches recorded (with
//! the image's view of which brokers may join an ISR), and ISR changes batched to the controller
//! (Kafka's `AlterPartitionManager`), shrinks found by a periodic check (`replica.lag.time.max.ms`).
//!
//! Locking: the partition map is a short-held RwLock (lookups clone an Arc). `apply` runs on the metadata
//! writer's thread, one delta at a time, in commit order; log I/O happens there, never under the map lock.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use kafka_protocol::ResponseError;

use crate::clock::Clock;
use crate::cluster::topic_config::topic_log_config;
use crate::cluster::{MetadataDelta, MetadataImage, MetadataPublisher, TopicDelta, TopicImage};
use crate::log::{LogConfig, LogManager, TopicPartition, partition_metadata};

use super::fetcher::ReplicaFetcherManager;
use super::isr::{FollowerFetch, IsrProposal};
use super::partition::Partition;
use super::stats::{
    FollowerLag, IsrChangeCounters, IsrChangeCounts, IsrChangeKind, ReplicaHealth, follower_lag,
};

/// Sends a batch of ISR changes to the controller (AlterPartition) and answers each: Ok once the change is
/// committed (or found unnecessary), else the error that refused it. Implemented by the cluster's
/// controller client; a single node has no followers and never proposes.
pub trait AlterPartitionManager: Send + Sync {
    fn submit(&self, proposals: Vec<IsrProposal>) -> IsrAnswers;
}

/// The answers to a batch of ISR changes, in its order.
pub type IsrAnswers = Pin<Box<dyn Future<Output = Vec<Result<(), ResponseError>>> + Send>>;

/// ISR changes waiting to be sent; at most one per led partition, so bounded by the partition count.
#[derive(Default)]
struct IsrQueue {
    proposals: Mutex<Vec<IsrProposal>>,
    ready: tokio::sync::Notify,
}

/// The broker-level log settings in force (server.properties with the dynamic broker configs on top),
/// read afresh whenever a partition's config is derived.
pub type LogDefaults = Arc<dyn Fn() -> LogConfig + Send + Sync>;

/// The partitions of this broker.
pub struct ReplicaManager {
    node_id: i32,
    logs: Arc<LogManager>,
    log_defaults: LogDefaults,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    clock: Clock,
    /// The last image applied: which brokers may join an ISR (registered, unfenced, not shutting down).
    image: RwLock<Option<Arc<MetadataImage>>>,
    alter_partition: OnceLock<Arc<dyn AlterPartitionManager>>,
    isr_queue: Arc<IsrQueue>,
    /// The replica fetcher (cluster mode): told which partitions to follow from which leader. Set once,
    /// before the metadata log is replayed.
    fetchers: OnceLock<Arc<ReplicaFetcherManager>>,
    /// ISR changes proposed and refused, for the metrics.
    isr_changes: Arc<IsrChangeCounters>,
}

impl std::fmt::Debug for ReplicaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaManager")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl ReplicaManager {
    pub fn new(
        node_id: i32,
        logs: Arc<LogManager>,
        log_defaults: LogDefaults,
    ) -> Arc<ReplicaManager> {
        Arc::new(ReplicaManager {
            node_id,
            logs,
            log_defaults,
            partitions: RwLock::new(HashMap::new()),
            clock: Clock::system(),
            image: RwLock::new(None),
            alter_partition: OnceLock::new(),
            isr_queue: Arc::default(),
            fetchers: OnceLock::new(),
            isr_changes: Arc::default(),
        })
    }

    /// Starts the leader's ISR upkeep (cluster mode): ISR changes go to `sender`, and every
    /// `max_lag / 2` each led partition drops the followers not caught up within `max_lag`
    /// (`replica.lag.time.max.ms`). Ends when `stop` turns true.
    pub fn start_isr_management(
        self: &Arc<Self>,
        sender: Arc<dyn AlterPartitionManager>,
        max_lag: Duration,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        if self.alter_partition.set(sender.clone()).is_err() {
            return;
        }
        let weak = Arc::downgrade(self);
        let queue = self.isr_queue.clone();
        let counters = self.isr_changes.clone();
        let mut stop_send = stop.clone();
        tokio::spawn(async move {
            loop {
                let notified = queue.ready.notified();
                let batch = std::mem::take(&mut *lock(&queue.proposals));
                if batch.is_empty() {
                    tokio::select! {
                        _ = notified => continue,
                        _ = stop_send.wait_for(|s| *s) => return,
                    }
                }
                let answers = sender.submit(batch.clone()).await;
                let Some(manager) = weak.upgrade() else {
                    return;
                };
                for (proposal, answer) in batch.iter().zip(answers) {
                    if let Err(error) = &answer {
                        counters.failed();
                        tracing::debug!(partition = %proposal.tp, ?error, isr = ?proposal.new_isr,
                            "ISR change refused");
                    }
                    // Committed changes arrived with the image already; either way another may follow.
                    if let Some(partition) = manager.partition(&proposal.tp) {
                        partition.clear_pending_isr(proposal.partition_epoch);
                    }
                }
            }
        });
        let weak = Arc::downgrade(self);
        let mut stop_check = stop;
        let period = (max_lag / 2).max(Duration::from_millis(10));
        let max_lag_ms = i64::try_from(max_lag.as_millis()).unwrap_or(i64::MAX);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop_check.wait_for(|s| *s) => return,
                }
                let Some(manager) = weak.upgrade() else {
                    return;
                };
                let now = manager.clock.now_ms();
                for partition in manager.partitions() {
                    if let Some(proposal) = partition.maybe_shrink_isr(now, max_lag_ms) {
                        tracing::info!(partition = %proposal.tp, isr = ?proposal.new_isr,
                            "shrinking the ISR: followers not caught up within replica.lag.time.max.ms");
                        manager.enqueue_isr_change(proposal, IsrChangeKind::Shrink);
                    }
                }
            }
        });
    }

    fn enqueue_isr_change(&self, proposal: IsrProposal, kind: IsrChangeKind) {
        if self.alter_partition.get().is_none() {
            // No controller to ask (a single node has no followers): forget it.
            if let Some(partition) = self.partition(&proposal.tp) {
                partition.clear_pending_isr(proposal.partition_epoch);
            }
            return;
        }
        self.isr_changes.proposed(kind);
        lock(&self.isr_queue.proposals).push(proposal);
        self.isr_queue.ready.notify_one();
    }

    /// A follower's fetch of `partition` at `fetch_offset`, read when the log ended at `leader_log_end`
    /// (see [`Partition::record_follower_fetch`]); an ISR expansion it allows is sent to the controller.
    pub fn record_follower_fetch(
        &self,
        partition: &Partition,
        fetch: &FollowerFetch,
    ) -> Result<(), ResponseError> {
        let image = self.read_image();
        // KIP-841 / KIP-903: the controller accepts only a registered, unfenced broker not shutting down,
        // of the incarnation the fetches came from.
        let eligible = |id: i32, epoch: i64| {
            image
                .as_ref()
                .and_then(|image| image.broker(id))
                .is_some_and(|b| {
                    !b.fenced && !b.in_controlled_shutdown && (epoch == -1 || epoch == b.epoch)
                })
        };
        let proposal = partition.record_follower_fetch(fetch, self.clock.now_ms(), &eligible)?;
        if let Some(proposal) = proposal {
            tracing::info!(partition = %proposal.tp, isr = ?proposal.new_isr, "expanding the ISR: follower caught up");
            self.enqueue_isr_change(proposal, IsrChangeKind::Expand);
        }
        Ok(())
    }

    /// ISR changes this broker proposed as a leader since it started, and how many failed.
    pub fn isr_change_counts(&self) -> IsrChangeCounts {
        self.isr_changes.snapshot()
    }

    /// Counts this broker's partitions by replication health now. Offline partitions are those the image
    /// assigns here whose log is not open (it could not be opened) or has failed; walking the image costs
    /// one lookup per partition, fine for a scrape.
    pub fn health(&self) -> ReplicaHealth {
        let mut health = ReplicaHealth::default();
        for partition in self.partitions() {
            if partition.is_failed() {
                health.offline += 1;
                continue;
            }
            if !partition.is_leader() {
                continue;
            }
            health.leader += 1;
            if partition.is_under_replicated() {
                health.under_replicated += 1;
            }
            if partition.check_enough_replicas().is_err() {
                health.under_min_isr += 1;
            }
        }
        if let Some(image) = self.read_image() {
            for topic in image.topics() {
                for (index, registration) in topic.partitions.iter().enumerate() {
                    if !registration.replicas.contains(&self.node_id) {
                        continue;
                    }
                    let tp = TopicPartition {
                        topic: topic.name.clone(),
                        partition: index as i32,
                    };
                    // One short lookup each, so the map lock is never held across the log manager's.
                    if self.partition(&tp).is_none() && self.logs.get(&tp).is_none() {
                        health.offline += 1;
                    }
                }
            }
        }
        health
    }

    /// How far each follower of each partition this broker leads is behind (empty on a single node).
    pub fn follower_lags(&self) -> Vec<FollowerLag> {
        let now = self.clock.now_ms();
        let mut lags = Vec::new();
        for partition in self.partitions() {
            if !partition.is_leader() {
                continue;
            }
            // Progress first: a log end read after it is never behind what a follower reported.
            let progress = partition.follower_progress();
            let log_end = partition.log_end_offset();
            let tp = partition.topic_partition();
            lags.extend(
                progress
                    .into_iter()
                    .map(|p| follower_lag(tp, log_end, p, now)),
            );
        }
        lags
    }

    /// The replica fetchers' traffic and lag; None without fetchers (a single node).
    pub fn fetcher_stats(&self) -> Option<super::fetcher::FetcherStats> {
        self.fetchers.get().map(|f| f.stats())
    }

    fn read_image(&self) -> Option<Arc<MetadataImage>> {
        self.image
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Hands the partitions this broker follows to `fetchers` from now on. False if one is already set.
    pub fn set_fetcher_manager(&self, fetchers: Arc<ReplicaFetcherManager>) -> bool {
        self.fetchers.set(fetchers).is_ok()
    }

    /// The replica fetcher, if set (cluster mode).
    pub fn fetcher_manager(&self) -> Option<&Arc<ReplicaFetcherManager>> {
        self.fetchers.get()
    }

    /// Stops fetching `tps` (this broker leads them, or holds them no more).
    fn stop_fetching(&self, tps: &[TopicPartition]) {
        if let Some(fetchers) = self.fetchers.get()
            && !tps.is_empty()
        {
            fetchers.remove_partitions(tps);
        }
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The log manager underneath (data directory, background work, shutdown).
    pub fn logs(&self) -> &Arc<LogManager> {
        &self.logs
    }

    /// This broker's partition, if it holds a replica of it (led or followed) and its log is open.
    pub fn partition(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.read().get(tp).cloned()
    }

    /// Every partition this broker holds.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.read().values().cloned().collect()
    }

    /// The partition a produce, fetch or offsets request must go to, or Kafka's error for it: an index the
    /// topic does not have is UNKNOWN_TOPIC_OR_PARTITION, a partition another broker leads (or none)
    /// NOT_LEADER_OR_FOLLOWER, a partition whose log could not be opened KAFKA_STORAGE_ERROR (offline).
    /// The image is visible before its publishers run: a partition this broker has not yet become the
    /// leader of at the image's epoch is NOT_LEADER_OR_FOLLOWER too (the client retries).
    pub fn leader_partition(
        &self,
        topic: &TopicImage,
        partition: i32,
    ) -> Result<Arc<Partition>, ResponseError> {
        self.leader_partition_checked(topic, partition, None, false)
    }

    /// [`Self::leader_partition`], with the request's `current_leader_epoch` checked against the
    /// partition's (KIP-320). As Kafka's `localLogWithEpochOrThrow`, a replica held here checks the epoch
    /// before whether it leads: a follower answers a stale epoch FENCED_LEADER_EPOCH, a newer one
    /// UNKNOWN_LEADER_EPOCH, and only then NOT_LEADER_OR_FOLLOWER.
    pub fn leader_partition_at(
        &self,
        topic: &TopicImage,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<Arc<Partition>, ResponseError> {
        self.leader_partition_checked(topic, partition, Some(current_leader_epoch), false)
    }

    /// A consumer's Fetch v11+ (KIP-392): the leader, or a follower replica held here, which serves up
    /// to its own high watermark. The epoch is checked as for [`Self::leader_partition_at`].
    pub fn fetchable_partition_at(
        &self,
        topic: &TopicImage,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<Arc<Partition>, ResponseError> {
        self.leader_partition_checked(topic, partition, Some(current_leader_epoch), true)
    }

    /// One map lookup per request partition (this is on every produce and fetch).
    fn leader_partition_checked(
        &self,
        topic: &TopicImage,
        partition: i32,
        current_leader_epoch: Option<i32>,
        follower_ok: bool,
    ) -> Result<Arc<Partition>, ResponseError> {
        let registration = topic
            .partition(partition)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        let tp = TopicPartition {
            topic: topic.name.clone(),
            partition,
        };
        let local = self.partition(&tp);
        if let (Some(local), Some(epoch)) = (&local, current_leader_epoch) {
            local.check_leader_epoch(epoch)?;
        }
        if registration.leader != self.node_id {
            return match local {
                Some(follower)
                    if follower_ok
                        && registration.replicas.contains(&self.node_id)
                        && follower.leader_epoch() == registration.leader_epoch =>
                {
                    Ok(follower)
                }
                _ => Err(ResponseError::NotLeaderOrFollower),
            };
        }
        if let Some(found) = local {
            if !found.is_leader() || found.leader_epoch() < registration.leader_epoch {
                return Err(ResponseError::NotLeaderOrFollower);
            }
            return Ok(found);
        }
        // A log that found the disk full is tried again by the log manager (at most once per interval):
        // the partition comes online once space is freed.
        let log = self.logs.get(&tp).ok_or(ResponseError::KafkaStorageError)?;
        let created = Partition::new(tp.clone(), topic.id, log, registration.leader_epoch);
        created.apply_registration(self.node_id, registration, self.clock.now_ms());
        let found = self.write().entry(tp).or_insert(created).clone();
        if let Some(epoch) = current_leader_epoch {
            found.check_leader_epoch(epoch)?;
        }
        Ok(found)
    }

    /// True when this broker should hold `partition` but could not open its log.
    pub fn is_offline(&self, topic: &TopicImage, partition: i32) -> bool {
        self.leader_partition(topic, partition).err() == Some(ResponseError::KafkaStorageError)
    }

    /// Brings the partitions in line with `delta`. At start-up (`delta.from_snapshot`) existing logs are
    /// opened; for a topic created later, a directory of the same name is the remains of an earlier topic
    /// whose deletion did not finish, and is removed before the new, empty log is created.
    pub fn apply(&self, delta: &MetadataDelta, image: &Arc<MetadataImage>) {
        *self
            .image
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(image.clone());
        // A cluster member's first image is empty until its metadata log is replayed: nothing to compare.
        if delta.from_snapshot
            && (image.topic_names().next().is_some() || image.brokers().next().is_some())
        {
            self.warn_about_unknown_directories(image);
        }
        for change in &delta.topics {
            match change {
                TopicDelta::Created(topic) => {
                    self.apply_partitions(topic, None, !delta.from_snapshot);
                }
                TopicDelta::Changed { before, after } => {
                    self.apply_partitions(after, Some(before), true);
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

    /// Brings this broker's replicas of `topic` in line with its registrations (Kafka's
    /// `ReplicaManager.applyDelta`): a partition with this broker among its replicas has its log opened
    /// (created when new here: a directory of its name is kept only when its `partition.metadata` names
    /// this topic) and becomes led or followed at the registration's leader epoch; a
    /// partition this broker held and no longer replicates (reassigned away) is closed and its log
    /// deleted. A log that cannot be opened leaves its partition offline; the others serve. `before` is
    /// the topic as the previous image held it (None for a created one); `fresh` says a log new to this
    /// broker must start empty (not at start-up, where existing logs are opened).
    fn apply_partitions(&self, topic: &TopicImage, before: Option<&TopicImage>, fresh: bool) {
        let config = topic_log_config(&(self.log_defaults)(), topic);
        // Partitions to fetch from their leaders, and leaderless ones to stop fetching, once the loop is
        // done.
        let mut follow = Vec::new();
        let mut unfollow = Vec::new();
        for (index, registration) in topic.partitions.iter().enumerate() {
            let partition = i32::try_from(index).expect("invariant: partition index fits an i32");
            let tp = TopicPartition {
                topic: topic.name.clone(),
                partition,
            };
            let previous = before.and_then(|b| b.partition(partition));
            let was_replica = previous.is_some_and(|r| r.replicas.contains(&self.node_id));
            let leads = registration.leader == self.node_id;
            if previous.is_some_and(|r| r.leader_epoch != registration.leader_epoch) {
                // Every leadership change, as each broker learns it: what a failover's timeline is read from.
                // Debug: a restarted node replays its whole metadata log through here.
                tracing::debug!(partition = %tp, leader = registration.leader,
                    leader_epoch = registration.leader_epoch, isr = ?registration.isr,
                    elr = ?registration.elr, "partition leadership changed");
            }
            if !registration.replicas.contains(&self.node_id) && !leads {
                if was_replica || self.partition(&tp).is_some() {
                    tracing::info!(partition = %tp, "no longer a replica here; deleting its log");
                    self.delete_partition(&tp);
                }
                continue;
            }
            if let Some(existing) = self.partition(&tp) {
                if leads {
                    // No more fetches before it leads (one being applied may still finish: its
                    // append is refused once the partition leads, or lands before the first led one).
                    self.stop_fetching(std::slice::from_ref(&tp));
                }
                existing.apply_registration(self.node_id, registration, self.clock.now_ms());
                if !leads {
                    if registration.leader >= 0 {
                        follow.push((existing, registration.leader, registration.leader_epoch));
                    } else {
                        unfollow.push(tp);
                    }
                }
                continue;
            }
            let dir = self.logs.dir().join(tp.to_string());
            if fresh
                && !was_replica
                && partition_metadata::read(&dir) != Some(topic.id)
                && !self.remove_stale_directory(&tp)
            {
                continue;
            }
            match self.logs.get_or_create(&tp, config.clone()) {
                Ok(log) => {
                    if partition_metadata::read(&dir) != Some(topic.id)
                        && let Err(e) = partition_metadata::write(&dir, topic.id)
                    {
                        tracing::warn!(partition = %tp, error = %e, "could not record the partition's topic id");
                    }
                    let partition =
                        Partition::new(tp.clone(), topic.id, log, registration.leader_epoch);
                    partition.apply_registration(self.node_id, registration, self.clock.now_ms());
                    if !leads && registration.leader >= 0 {
                        follow.push((
                            partition.clone(),
                            registration.leader,
                            registration.leader_epoch,
                        ));
                    }
                    self.write().insert(tp, partition);
                }
                // The log manager has already logged why (once, at ERROR).
                Err(e) => tracing::debug!(partition = %tp, error = %e, "partition is offline"),
            }
        }
        self.stop_fetching(&unfollow);
        if let Some(fetchers) = self.fetchers.get()
            && !follow.is_empty()
        {
            fetchers.add_partitions(follow);
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
            self.delete_partition(&TopicPartition {
                topic: topic.name.clone(),
                partition,
            });
        }
    }

    /// Forgets one partition and deletes its log (closing it first).
    fn delete_partition(&self, tp: &TopicPartition) {
        self.stop_fetching(std::slice::from_ref(tp));
        self.write().remove(tp);
        if let Err(e) = self.logs.delete(tp) {
            tracing::error!(partition = %tp, error = %e, "could not delete partition log");
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MetadataPublisher for ReplicaManager {
    fn publish(&self, delta: &MetadataDelta, image: &Arc<MetadataImage>) {
        self.apply(delta, image);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::BytesMut;

    use super::*;
    use crate::cluster::{MetadataStore, PartitionRegistration, TopicImage};
    use crate::log::AppendOrigin;
    use crate::log::record_batch::test_support::batch;

    fn open(dir: &std::path::Path) -> (Arc<MetadataStore>, Arc<ReplicaManager>) {
        let metadata = Arc::new(MetadataStore::open(dir, 1).unwrap());
        let logs = LogManager::open(dir, LogConfig::default()).unwrap();
        let replicas = ReplicaManager::new(1, logs, Arc::new(LogConfig::default));
        metadata.add_publisher(replicas.clone());
        (metadata, replicas)
    }

    #[test]
    fn leader_partition_answers_kafkas_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (metadata, replicas) = open(dir.path());
        let topic = metadata.create_topic("orders", 2, BTreeMap::new()).unwrap();
        assert!(replicas.leader_partition(&topic, 1).is_ok());
        assert_eq!(
            replicas.leader_partition(&topic, 2).unwrap_err(),
            ResponseError::UnknownTopicOrPartition
        );
        assert_eq!(
            replicas.leader_partition(&topic, -1).unwrap_err(),
            ResponseError::UnknownTopicOrPartition
        );
        assert_eq!(
            replicas.leader_partition_at(&topic, 0, 1).unwrap_err(),
            ResponseError::UnknownLeaderEpoch
        );
        assert!(replicas.leader_partition_at(&topic, 0, 0).is_ok());

        // Another broker leads partition 1: this one must not serve it.
        let mut elsewhere = (*topic).clone();
        elsewhere.partitions[1] = PartitionRegistration {
            leader: 2,
            ..elsewhere.partitions[1].clone()
        };
        assert_eq!(
            replicas.leader_partition(&elsewhere, 1).unwrap_err(),
            ResponseError::NotLeaderOrFollower
        );
        replicas.logs().shutdown().unwrap();
    }

    #[test]
    fn a_new_leader_epoch_reaches_the_partition_and_its_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (metadata, replicas) = open(dir.path());
        let topic = metadata.create_topic("orders", 2, BTreeMap::new()).unwrap();
        let partition = replicas.leader_partition(&topic, 1).unwrap();
        partition
            .append_records_to_leader(BytesMut::from(&batch(2, 10, 1)[..]), AppendOrigin::Client)
            .unwrap();

        let topic = metadata.bump_leader_epoch("orders", 1).unwrap();
        assert_eq!(topic.partition(1).unwrap().leader_epoch, 1);
        assert_eq!(topic.partition(0).unwrap().leader_epoch, 0, "per partition");
        assert_eq!(partition.leader_epoch(), 1);
        assert_eq!(
            partition.check_leader_epoch(0),
            Err(ResponseError::FencedLeaderEpoch)
        );
        partition
            .append_records_to_leader(BytesMut::from(&batch(1, 10, 1)[..]), AppendOrigin::Client)
            .unwrap();
        assert_eq!(partition.log().leader_epochs(), vec![(0, 0), (1, 2)]);
        assert_eq!(partition.end_offset_for_epoch(0), (0, 2));
        replicas.logs().shutdown().unwrap();

        // Persisted: a restart finds the same epochs.
        let (metadata, replicas) = open(dir.path());
        let topic = metadata.topic("orders").unwrap();
        assert_eq!(
            replicas.leader_partition(&topic, 1).unwrap().leader_epoch(),
            1
        );
        assert_eq!(
            replicas.leader_partition(&topic, 0).unwrap().leader_epoch(),
            0
        );
        replicas.logs().shutdown().unwrap();
    }

    #[tokio::test]
    async fn leadership_moves_with_the_image_and_reassigned_replicas_are_deleted() {
        use crate::cluster::{MetadataDelta, TopicDelta};
        use crate::replica::HighWatermarkWaitError;

        let dir = tempfile::tempdir().unwrap();
        let (metadata, replicas) = open(dir.path());
        let before = metadata.create_topic("orders", 3, BTreeMap::new()).unwrap();
        let led = replicas.leader_partition(&before, 0).unwrap();
        // An acks=-1 style wait for an offset not yet written: it must end when leadership moves.
        let waiting = led.wait_for_high_watermark(led.log_end_offset() + 1);
        let registration = |leader, epoch, replicas: &[i32]| PartitionRegistration {
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            leader,
            leader_epoch: epoch,
            partition_epoch: epoch,
            ..Default::default()
        };
        let publish = |before: &Arc<TopicImage>, changes: Vec<(usize, PartitionRegistration)>| {
            let mut after = (**before).clone();
            for (i, r) in changes {
                after.partitions[i] = r;
            }
            let after = Arc::new(after);
            metadata.publish_delta(&MetadataDelta {
                topics: vec![TopicDelta::Changed {
                    before: before.clone(),
                    after: after.clone(),
                }],
                ..Default::default()
            });
            after
        };
        let moved = publish(
            &before,
            vec![
                (0, registration(2, 1, &[2, 1])),
                (1, registration(2, 1, &[2, 3])),
                (2, registration(1, 1, &[1, 2])),
            ],
        );
        let followed = replicas
            .partition(&TopicPartition::new("orders", 0))
            .expect("a follower keeps its log");
        assert!(!followed.is_leader());
        assert_eq!(followed.leader_epoch(), 1);
        assert_eq!(
            replicas.leader_partition(&moved, 0).unwrap_err(),
            ResponseError::NotLeaderOrFollower
        );
        // A follower checks the request's epoch first.
        let at = |epoch| replicas.leader_partition_at(&moved, 0, epoch).unwrap_err();
        assert_eq!(at(0), ResponseError::FencedLeaderEpoch);
        assert_eq!(at(2), ResponseError::UnknownLeaderEpoch);
        assert_eq!(at(1), ResponseError::NotLeaderOrFollower);
        assert_eq!(at(-1), ResponseError::NotLeaderOrFollower);
        assert_eq!(
            tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
                .await
                .expect("the wait ends with the leadership"),
            Err(HighWatermarkWaitError::NotLeader)
        );
        assert!(
            replicas
                .partition(&TopicPartition::new("orders", 1))
                .is_none()
        );
        assert!(!dir.path().join("orders-1").exists(), "reassigned away");
        let still = replicas.leader_partition(&moved, 2).unwrap();
        assert!(still.is_leader());
        assert_eq!(still.leader_epoch(), 1);

        // Leadership comes back at a newer epoch: the same log serves again.
        let back = publish(&moved, vec![(0, registration(1, 2, &[2, 1]))]);
        let again = replicas.leader_partition(&back, 0).unwrap();
        assert!(Arc::ptr_eq(&again, &followed));
        assert_eq!(again.leader_epoch(), 2);
        // A reassignment that adds this broker back creates the replica's log afresh.
        let added = publish(&back, vec![(1, registration(2, 2, &[2, 1]))]);
        assert!(
            !replicas
                .partition(&TopicPartition::new("orders", 1))
                .unwrap()
                .is_leader()
        );
        assert_eq!(
            replicas.leader_partition(&added, 1).unwrap_err(),
            ResponseError::NotLeaderOrFollower
        );
        replicas.logs().shutdown().unwrap();
    }

    #[test]
    fn a_topic_announced_again_keeps_its_own_log_and_not_another_topics() {
        use crate::cluster::{MetadataDelta, TopicDelta};

        let dir = tempfile::tempdir().unwrap();
        let (metadata, replicas) = open(dir.path());
        let topic = metadata.create_topic("orders", 1, BTreeMap::new()).unwrap();
        replicas
            .leader_partition(&topic, 0)
            .unwrap()
            .append_records_to_leader(BytesMut::from(&batch(3, 10, 1)[..]), AppendOrigin::Client)
            .unwrap();
        replicas.logs().shutdown().unwrap();

        // A cluster member starts empty and its metadata log announces the topic again, as created.
        let announce = |topic: Arc<TopicImage>| {
            let metadata = Arc::new(MetadataStore::replicated(1));
            let logs = LogManager::open(dir.path(), LogConfig::default()).unwrap();
            let replicas = ReplicaManager::new(1, logs, Arc::new(LogConfig::default));
            metadata.add_publisher(replicas.clone());
            metadata.publish_delta(&MetadataDelta {
                topics: vec![TopicDelta::Created(topic.clone())],
                ..Default::default()
            });
            let end = replicas
                .leader_partition(&topic, 0)
                .unwrap()
                .log_end_offset();
            replicas.logs().shutdown().unwrap();
            end
        };
        assert_eq!(announce(topic.clone()), 3, "its own log is opened");
        let successor = Arc::new(TopicImage {
            id: uuid::Uuid::new_v4(),
            ..(*topic).clone()
        });
        assert_eq!(announce(successor), 0, "an earlier topic's log is removed");
    }

    /// Refuses every ISR change, as a controller at another partition epoch would.
    struct Refusing;

    impl AlterPartitionManager for Refusing {
        fn submit(&self, proposals: Vec<IsrProposal>) -> IsrAnswers {
            let answers = vec![Err(ResponseError::InvalidUpdateVersion); proposals.len()];
            Box::pin(async move { answers })
        }
    }

    #[tokio::test]
    async fn health_and_isr_changes_are_counted() {
        use crate::cluster::{BrokerRegistration, MetadataDelta, TopicDelta};
        use crate::replica::isr::FollowerFetch;

        let dir = tempfile::tempdir().unwrap();
        let metadata = Arc::new(MetadataStore::open(dir.path(), 1).unwrap());
        let logs = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let defaults = || LogConfig {
            min_insync_replicas: 2,
            ..LogConfig::default()
        };
        let replicas = ReplicaManager::new(1, logs, Arc::new(defaults));
        metadata.add_publisher(replicas.clone());
        let before = metadata.create_topic("orders", 3, BTreeMap::new()).unwrap();
        let single = replicas.health();
        assert_eq!(
            single,
            ReplicaHealth {
                leader: 3,
                ..Default::default()
            },
            "a lone replica is its whole replica set"
        );

        // Partition 0: replicas 1,2,3 with ISR 1 (under-replicated, under min ISR 2); partition 1: ISR 1,3
        // (under-replicated only); partition 2 led by broker 2.
        let registration = |leader, isr: &[i32]| PartitionRegistration {
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            leader,
            leader_epoch: 1,
            partition_epoch: 1,
            ..Default::default()
        };
        let mut after = (*before).clone();
        after.partitions = vec![
            registration(1, &[1]),
            registration(1, &[1, 3]),
            registration(2, &[1, 2, 3]),
        ];
        let brokers = (2..=3)
            .map(|id| {
                Arc::new(BrokerRegistration {
                    id,
                    ..Default::default()
                })
            })
            .collect();
        metadata.publish_delta(&MetadataDelta {
            topics: vec![TopicDelta::Changed {
                before: before.clone(),
                after: Arc::new(after),
            }],
            brokers,
            ..Default::default()
        });
        assert_eq!(
            replicas.health(),
            ReplicaHealth {
                leader: 2,
                under_replicated: 2,
                under_min_isr: 1,
                offline: 0,
            }
        );
        let lags = replicas.follower_lags();
        assert_eq!(
            lags.len(),
            4,
            "two followers of each led partition: {lags:?}"
        );
        assert!(lags.iter().all(|l| l.records.is_none()), "none fetched yet");

        // Broker 3 (in partition 1's ISR) never fetches: shrunk after the lag limit. Broker 2 catches up on
        // partition 0: an expansion. The controller refuses both.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        replicas.start_isr_management(Arc::new(Refusing), Duration::from_millis(20), stopped);
        let p0 = replicas
            .partition(&TopicPartition::new("orders", 0))
            .unwrap();
        replicas
            .record_follower_fetch(
                &p0,
                &FollowerFetch {
                    replica_id: 2,
                    broker_epoch: 0,
                    fetch_offset: 0,
                    log_start_offset: 0,
                    leader_log_end: 0,
                },
            )
            .unwrap();
        let lag = replicas
            .follower_lags()
            .into_iter()
            .find(|l| l.tp.partition == 0 && l.replica == 2)
            .unwrap();
        assert_eq!(lag.records, Some(0));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let counts = loop {
            let counts = replicas.isr_change_counts();
            if counts.failures >= 2 || std::time::Instant::now() > deadline {
                break counts;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(counts.expands, 1);
        assert!(counts.shrinks >= 1, "{counts:?}");
        assert!(counts.failures >= 2, "{counts:?}");
        stop.send_replace(true);
        replicas.logs().shutdown().unwrap();
    }

    #[test]
    fn deleting_a_topic_closes_and_removes_its_logs() {
        let dir = tempfile::tempdir().unwrap();
        let (metadata, replicas) = open(dir.path());
        let topic = metadata.create_topic("gone", 1, BTreeMap::new()).unwrap();
        let partition = replicas.leader_partition(&topic, 0).unwrap();
        metadata.delete_topic("gone").unwrap();
        assert!(
            partition.is_closed(),
            "parked readers and writers are woken"
        );
        assert!(replicas.partitions().is_empty());
        assert!(!dir.path().join("gone-0").exists());
        replicas.logs().shutdown().unwrap();
    }
}
