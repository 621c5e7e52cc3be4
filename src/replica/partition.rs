//! Partition: one partition as this broker serves it (Kafka's `Partition`): its leader epoch, the
//! high-watermark rule over the in-sync replicas, the slot for the last stable offset, reads with an
//! explicit isolation, and the one high-watermark waiter that acks=-1 produces and coordinators share. Its
//! [`PartitionLog`] is storage only; the followers' progress and the ISR live in [`ReplicationState`].
//!
//! Locking: appends are serialised by the log's append lock; the replication state has a mutex of its own,
//! taken after (never around) a log append and never held across I/O. The high watermark is moved up only
//! (`PartitionLog::maybe_increment_high_watermark`, a `fetch_max`), so two threads applying the rule at
//! once cannot move it back; the leader epoch is an atomic replaced by the replica manager when the
//! metadata image changes.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use uuid::Uuid;

use super::isr::{FollowerFetch, IsrProposal, ReplicationState};
use crate::log::{
    AppendInfo, AppendOrigin, FetchData, FlushListener, LogConfig, LogError, PartitionLog,
    TopicPartition,
};

/// How far a read may see (Kafka's `FetchIsolation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchIsolation {
    /// Everything appended: followers.
    LogEnd,
    /// Up to the high watermark: consumers under read_uncommitted.
    HighWatermark,
    /// Up to the last stable offset: consumers under read_committed.
    TxnCommitted,
}

impl FetchIsolation {
    /// A consumer's isolation from its request's `isolation_level` (1 = READ_COMMITTED).
    pub fn for_consumer(isolation_level: i8) -> FetchIsolation {
        if isolation_level == 1 {
            FetchIsolation::TxnCommitted
        } else {
            FetchIsolation::HighWatermark
        }
    }
}

/// Why a wait for the high watermark ended without reaching its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HighWatermarkWaitError {
    /// A write or fsync failed: the data may never be durable.
    Failed,
    /// The log was closed (the partition was deleted or the broker is stopping).
    Closed,
    /// Leadership moved to another broker: the new leader decides what is committed.
    NotLeader,
}

/// Kafka's "no leader epoch" in requests.
pub const NO_LEADER_EPOCH: i32 = -1;

/// One partition this broker holds a replica of: the leader, or a follower (its log kept, nothing served).
#[derive(Debug)]
pub struct Partition {
    tp: TopicPartition,
    topic_id: Uuid,
    log: Arc<PartitionLog>,
    /// The epoch of the current leadership, from the metadata image; stamped into every appended batch.
    leader_epoch: AtomicI32,
    /// True while this broker leads the partition at `leader_epoch`; a follower serves no client. A
    /// watch, so that waits for the high watermark end when leadership moves away.
    is_leader: watch::Sender<bool>,
    /// Replicas, ISR and (while leading) the followers' progress.
    replication: Mutex<ReplicationState>,
    /// The log end offset after each append here, for follower fetches parked at the end of the log.
    log_end: watch::Sender<i64>,
    /// This replica's own term of the high-watermark rule ([`Partition::local_offset`]), for acks=1 on a
    /// durable log.
    local: watch::Sender<i64>,
}

/// The leader's own term of the high-watermark rule: a durable log (`flush.messages`/`flush.ms`) counts a
/// record once it is fsynced, any other once it is appended. The high watermark is the smallest of this and
/// the in-sync followers' log end offsets (see [`ReplicationState::high_watermark_candidate`]).
fn high_watermark_candidate(log: &PartitionLog, config: &LogConfig) -> i64 {
    let log_end = log.log_end_offset();
    if config.is_durable() {
        log.recovery_point().min(log_end)
    } else {
        log_end
    }
}

impl Partition {
    /// Takes over `log` as the leader of `leader_epoch`, and applies the high-watermark rule whenever the
    /// log is flushed.
    pub(crate) fn new(
        tp: TopicPartition,
        topic_id: Uuid,
        log: Arc<PartitionLog>,
        leader_epoch: i32,
    ) -> Arc<Partition> {
        let log_end = watch::Sender::new(log.log_end_offset());
        let local = watch::Sender::new(high_watermark_candidate(&log, &log.config()));
        let partition = Arc::new_cyclic(|weak: &std::sync::Weak<Partition>| {
            // A durable leader's own term moves with every flush.
            let weak = weak.clone();
            log.set_flush_listener(FlushListener(Box::new(move |_recovery_point| {
                if let Some(partition) = weak.upgrade() {
                    partition.publish_local_offset();
                    partition.update_high_watermark();
                }
            })));
            Partition {
                tp,
                topic_id,
                log,
                leader_epoch: AtomicI32::new(leader_epoch),
                is_leader: watch::Sender::new(true),
                replication: Mutex::new(ReplicationState::single()),
                log_end,
                local,
            }
        });
        partition.update_high_watermark();
        partition
    }

    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    pub fn topic_id(&self) -> Uuid {
        self.topic_id
    }

    /// The storage underneath (sizes, segments, diagnostics).
    pub fn log(&self) -> &Arc<PartitionLog> {
        &self.log
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Adopts the image's registration of this partition (Kafka's `makeLeader` / `makeFollower`): the
    /// leader epoch, whether this broker (`local_id`) leads, the replicas and the ISR. A leadership at a new
    /// epoch starts with nothing known of the followers and its epoch start offset at the log end. Epochs
    /// only grow.
    pub(crate) fn apply_registration(
        &self,
        local_id: i32,
        registration: &crate::cluster::PartitionRegistration,
        now_ms: i64,
    ) {
        let leads = registration.leader == local_id;
        let new_leadership =
            leads && (!self.is_leader() || registration.leader_epoch > self.leader_epoch());
        {
            let mut st = self.replication();
            st.update(
                local_id,
                &registration.replicas,
                &registration.isr,
                registration.partition_epoch,
                leads,
                new_leadership,
                self.log.log_end_offset(),
                now_ms,
            );
        }
        if leads {
            self.become_leader(registration.leader_epoch);
        } else {
            self.become_follower(registration.leader_epoch);
        }
        self.update_high_watermark();
    }

    /// This broker leads the partition at `leader_epoch`, from the metadata image. Epochs only grow.
    pub(crate) fn become_leader(&self, leader_epoch: i32) {
        self.set_leader_epoch(leader_epoch);
        self.is_leader
            .send_if_modified(|leads| !std::mem::replace(leads, true));
    }

    /// Another broker (or none) leads the partition at `leader_epoch`: this replica keeps its log and
    /// stops serving (appends and reads for clients go to the leader).
    pub(crate) fn become_follower(&self, leader_epoch: i32) {
        self.is_leader
            .send_if_modified(|leads| std::mem::replace(leads, false));
        self.set_leader_epoch(leader_epoch);
    }

    fn replication(&self) -> std::sync::MutexGuard<'_, ReplicationState> {
        self.replication
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` only while this replica follows, holding the role (Kafka's `leaderIsrUpdateLock`): a
    /// follower's write can never land after this broker started leading at a new epoch (its epoch start
    /// offset is the log end at that moment). None while leading.
    pub(crate) fn while_following<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        let st = self.replication();
        if st.epoch_start_offset.is_some() || self.is_leader() {
            return None;
        }
        let result = f();
        drop(st);
        Some(result)
    }

    fn min_insync_replicas(&self) -> i32 {
        self.log.config().min_insync_replicas
    }

    /// acks=all: NOT_ENOUGH_REPLICAS when the ISR is below `min.insync.replicas` (checked before appending).
    pub fn check_enough_replicas(&self) -> Result<(), ResponseError> {
        if self
            .replication()
            .has_enough_replicas(self.min_insync_replicas())
        {
            Ok(())
        } else {
            Err(ResponseError::NotEnoughReplicas)
        }
    }

    /// acks=all, once the high watermark passed the write: NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR
    /// shrank below `min.insync.replicas` meanwhile (the write is in the log, maybe not on enough replicas).
    pub fn check_enough_replicas_after_append(&self) -> Result<(), ResponseError> {
        if self
            .replication()
            .maximal_isr_is_enough(self.min_insync_replicas())
        {
            Ok(())
        } else {
            Err(ResponseError::NotEnoughReplicasAfterAppend)
        }
    }

    /// True when `broker` holds a replica of this partition, as this broker last applied it.
    pub fn has_replica(&self, broker: i32) -> bool {
        self.replication().replicas.contains(&broker)
    }

    /// Where this leadership began (None while following): ListOffsets answers OFFSET_NOT_AVAILABLE until
    /// the high watermark reaches it, since what the previous leader committed is not known before.
    pub fn epoch_start_offset(&self) -> Option<i64> {
        self.replication().epoch_start_offset
    }

    /// A follower's fetch at `fetch_offset` (Kafka's `updateFollowerFetchState`): its progress is recorded,
    /// the high watermark may move, and an ISR expansion may be proposed (`eligible` says whether the
    /// controller would accept the follower). NOT_LEADER_OR_FOLLOWER when this broker does not lead or
    /// `replica_id` is not a replica.
    pub fn record_follower_fetch(
        &self,
        fetch: &FollowerFetch,
        now_ms: i64,
        eligible: &dyn Fn(i32, i64) -> bool,
    ) -> Result<Option<IsrProposal>, ResponseError> {
        if !self.is_leader() {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        let proposal = {
            let mut st = self.replication();
            if !st.record_fetch(fetch, now_ms) {
                return Err(ResponseError::NotLeaderOrFollower);
            }
            let high_watermark = self.high_watermark();
            st.maybe_expand(
                fetch.replica_id,
                high_watermark,
                eligible(fetch.replica_id, fetch.broker_epoch),
            )
            .map(|isr| self.proposal(&st, &isr))
        };
        self.update_high_watermark();
        Ok(proposal)
    }

    /// The periodic ISR check (Kafka's `maybeShrinkIsr`): followers not caught up within `max_lag_ms`.
    pub fn maybe_shrink_isr(&self, now_ms: i64, max_lag_ms: i64) -> Option<IsrProposal> {
        if !self.is_leader() {
            return None;
        }
        let mut st = self.replication();
        let isr = st.maybe_shrink(self.log.log_end_offset(), now_ms, max_lag_ms)?;
        Some(self.proposal(&st, &isr))
    }

    /// The controller refused (or never answered) this partition's ISR change: another may be proposed.
    pub fn clear_pending_isr(&self, partition_epoch: i32) {
        let mut st = self.replication();
        if st.partition_epoch == partition_epoch {
            st.pending = None;
        }
        drop(st);
        self.update_high_watermark();
    }

    fn proposal(&self, st: &ReplicationState, isr: &[i32]) -> IsrProposal {
        IsrProposal {
            tp: self.tp.clone(),
            topic_id: self.topic_id,
            leader_epoch: self.leader_epoch(),
            partition_epoch: st.partition_epoch,
            // The leader's own broker epoch is filled in by whoever sends it (-1 is "unknown").
            new_isr: st.with_epochs(isr, -1),
        }
    }

    /// Followers (as (id, log end offset, last caught-up ms)) while leading, for metrics and DescribeQuorum-like views.
    pub fn follower_progress(&self) -> Vec<(i32, i64, i64)> {
        let st = self.replication();
        let mut out: Vec<_> = st
            .followers
            .iter()
            .map(|(id, f)| (*id, f.log_end_offset, f.last_caught_up_ms))
            .collect();
        out.sort_unstable();
        out
    }

    /// KIP-392: the in-sync followers that hold `fetch_offset` (between their log start and end), as
    /// (id, log end offset, ms since last caught up), for a replica selector to choose from.
    pub fn read_replica_candidates(&self, fetch_offset: i64, now_ms: i64) -> Vec<(i32, i64, i64)> {
        let st = self.replication();
        st.followers
            .iter()
            .filter(|(id, f)| {
                st.isr.contains(id)
                    && f.log_end_offset >= fetch_offset
                    && f.log_start_offset <= fetch_offset
            })
            .map(|(id, f)| (*id, f.log_end_offset, now_ms - f.last_caught_up_ms))
            .collect()
    }

    /// True when the leader's ISR is smaller than its replica set.
    pub fn is_under_replicated(&self) -> bool {
        let st = self.replication();
        self.is_leader() && st.isr.len() < st.replicas.len()
    }

    /// A receiver that changes whenever an append here moves the log end offset (follower fetches park on it).
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.log_end.subscribe()
    }

    fn publish_log_end(&self) {
        let end = self.log.log_end_offset();
        self.log_end.send_if_modified(|v| {
            let moved = *v != end;
            *v = end;
            moved
        });
    }

    /// What this replica alone counts as written: its log end, or on a durable log the fsynced end. Only a
    /// durable log's moves without an append (its flushes, which publish it), so only there does acks=1
    /// wait on it.
    pub fn local_offset(&self) -> i64 {
        high_watermark_candidate(&self.log, &self.log.config())
    }

    fn publish_local_offset(&self) {
        let local = self.local_offset();
        self.local.send_if_modified(|v| {
            let moved = *v != local;
            *v = local;
            moved
        });
    }

    /// Resolves once this replica alone holds `target` (acks=1: written, or fsynced on a durable log);
    /// fails as [`Self::wait_for_high_watermark`] does.
    pub fn wait_for_local_offset(
        self: &Arc<Self>,
        target: i64,
    ) -> impl Future<Output = Result<(), HighWatermarkWaitError>> + Send + 'static {
        self.wait_until(self.local.subscribe(), Partition::local_offset, target)
    }

    fn set_leader_epoch(&self, leader_epoch: i32) {
        let previous = self.leader_epoch.fetch_max(leader_epoch, Ordering::AcqRel);
        assert!(
            previous <= leader_epoch,
            "invariant: leader epochs only grow ({previous} -> {leader_epoch} for {})",
            self.tp
        );
    }

    /// True while this broker leads the partition.
    pub fn is_leader(&self) -> bool {
        *self.is_leader.borrow()
    }

    /// KIP-320: a request naming a newer epoch than ours is ahead of us (UNKNOWN_LEADER_EPOCH: retry later);
    /// one naming an older epoch is fenced (FENCED_LEADER_EPOCH: refresh metadata). -1 skips the check.
    pub fn check_leader_epoch(&self, requested: i32) -> Result<(), ResponseError> {
        let current = self.leader_epoch();
        match requested {
            NO_LEADER_EPOCH => Ok(()),
            e if e > current => Err(ResponseError::UnknownLeaderEpoch),
            e if e < current => Err(ResponseError::FencedLeaderEpoch),
            _ => Ok(()),
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.log.high_watermark()
    }

    /// The last stable offset (Kafka's `lastStableOffset`): the first offset of a transaction not yet
    /// decided (open, or its marker not yet below the high watermark), never above the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        self.log.last_stable_offset()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// True once the log takes no more appends (deleted, stopping, or failed).
    pub fn is_closed(&self) -> bool {
        self.log.is_closed()
    }

    /// True once a write or fsync failed: offline until the broker restarts.
    pub fn is_failed(&self) -> bool {
        self.log.is_failed()
    }

    /// Appends as the leader: the current leader epoch is stamped into the batches, then the high-watermark
    /// rule runs.
    pub fn append_records_to_leader(
        &self,
        records: BytesMut,
        origin: AppendOrigin,
    ) -> Result<AppendInfo, LogError> {
        let info = self.log.append(records, self.leader_epoch(), origin)?;
        self.publish_log_end();
        self.update_high_watermark();
        Ok(info)
    }

    /// [`Self::append_records_to_leader`] for a client request with a transactional id: a transactional
    /// batch opening a transaction here is first verified with its coordinator through `verify` (see
    /// [`PartitionLog::append_verified`]).
    pub fn append_records_verified(
        &self,
        records: BytesMut,
        verify: &dyn Fn(i64, i16) -> bool,
    ) -> Result<AppendInfo, LogError> {
        let info = self.log.append_verified(
            records,
            self.leader_epoch(),
            AppendOrigin::Client,
            Some(verify),
        )?;
        self.publish_log_end();
        self.update_high_watermark();
        Ok(info)
    }

    /// Applies the leader's high-watermark rule now (after an append, a flush, a follower's fetch, an ISR
    /// or config change). A follower's high watermark is the leader's, as its fetcher learns it.
    ///
    /// The replication lock is held until the high watermark is set: the role changes under it, so a
    /// partition that just became a follower (and may truncate next) is never given a leader's value.
    fn update_high_watermark(&self) {
        let config = self.log.config();
        let st = self.replication();
        let local = high_watermark_candidate(&self.log, &config);
        if let Some(candidate) = st.high_watermark_candidate(local, config.min_insync_replicas) {
            self.log.maybe_increment_high_watermark(candidate);
        }
    }

    /// Applies altered topic configs. Leaving durable mode publishes everything appended so far (the high
    /// watermark no longer waits for fsync); entering it only gates later appends.
    pub fn update_config(&self, config: LogConfig) {
        self.log.update_config(config);
        self.publish_local_offset();
        self.update_high_watermark();
    }

    /// The offset a read under `isolation` may not reach.
    fn upper_bound(&self, isolation: FetchIsolation) -> i64 {
        match isolation {
            FetchIsolation::LogEnd => self.log.log_end_offset(),
            FetchIsolation::HighWatermark => self.high_watermark(),
            FetchIsolation::TxnCommitted => self.last_stable_offset(),
        }
    }

    /// Whole batches from the batch holding `offset`, below the bound `isolation` sets (see
    /// [`PartitionLog::read`]); control batches are returned under every isolation (a consumer skips them
    /// and moves past). Under read_committed the data also lists the aborted transactions overlapping what
    /// was returned (Kafka's `addAbortedTransactions`), so the consumer can drop their records; none when
    /// nothing was returned, since there is nothing to drop.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        isolation: FetchIsolation,
    ) -> Result<FetchData, LogError> {
        self.read_for_fetch(offset, max_bytes, min_one, isolation, false)
    }

    /// [`Partition::read`] for a fetch response: with `from_file`, a large range may come back as a file
    /// slice to send from the segment (see [`crate::log::PartitionLog::read_from`]).
    pub fn read_for_fetch(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        isolation: FetchIsolation,
        from_file: bool,
    ) -> Result<FetchData, LogError> {
        let upper_bound = self.upper_bound(isolation);
        let mut data = self
            .log
            .read_from(offset, max_bytes, min_one, upper_bound, from_file)?;
        if isolation == FetchIsolation::TxnCommitted {
            data.aborted_transactions = Some(if data.records.is_empty() && data.file.is_none() {
                Vec::new()
            } else {
                self.log
                    .collect_aborted_txns(offset, data.upper_bound_offset)?
            });
        }
        Ok(data)
    }

    /// ListOffsets LATEST: the first offset a consumer under `isolation` cannot read yet.
    pub fn latest_offset(&self, isolation: FetchIsolation) -> i64 {
        self.upper_bound(isolation)
    }

    /// The first record at or after `timestamp` visible under `isolation`, as (offset, timestamp).
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
        isolation: FetchIsolation,
    ) -> Result<Option<(i64, i64)>, LogError> {
        self.log
            .offset_for_timestamp(timestamp, self.upper_bound(isolation))
    }

    /// KIP-734: the record with the largest timestamp visible under `isolation`.
    pub fn offset_of_max_timestamp(
        &self,
        isolation: FetchIsolation,
    ) -> Result<Option<(i64, i64)>, LogError> {
        self.log
            .offset_of_max_timestamp(self.upper_bound(isolation))
    }

    /// OffsetForLeaderEpoch as the leader answers it: where `requested` ended, from the epoch cache.
    pub fn end_offset_for_epoch(&self, requested: i32) -> (i32, i64) {
        end_offset_for(
            &self.log.leader_epochs(),
            requested,
            self.log.log_end_offset(),
        )
    }

    /// DeleteRecords: moves the log start offset up to `offset` (-1: the high watermark), never past the
    /// high watermark (consumers may not lose what they cannot see yet).
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        self.log.delete_records_before(offset)
    }

    /// A receiver that changes when the high watermark moves, and once more when the log closes or fails.
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.log.subscribe_high_watermark()
    }

    /// Resolves once the high watermark reaches `target` (the offset after the last record waited for);
    /// fails if the log fails or closes first, or this broker stops leading the partition (Kafka's
    /// delayed produce answers NOT_LEADER_OR_FOLLOWER then). Callers bound it with their own timeout.
    pub fn wait_for_high_watermark(
        self: &Arc<Self>,
        target: i64,
    ) -> impl Future<Output = Result<(), HighWatermarkWaitError>> + Send + 'static {
        self.wait_until(
            self.subscribe_high_watermark(),
            Partition::high_watermark,
            target,
        )
    }

    /// Resolves once `reached` (moving with `progress`) is at least `target`; fails as
    /// [`Self::wait_for_high_watermark`] says.
    fn wait_until(
        self: &Arc<Self>,
        mut progress: watch::Receiver<i64>,
        reached: fn(&Partition) -> i64,
        target: i64,
    ) -> impl Future<Output = Result<(), HighWatermarkWaitError>> + Send + 'static {
        let partition = self.clone();
        let mut leadership = self.is_leader.subscribe();
        async move {
            loop {
                if partition.is_failed() {
                    return Err(HighWatermarkWaitError::Failed);
                }
                if reached(&partition) >= target {
                    return Ok(());
                }
                if partition.is_closed() {
                    return Err(HighWatermarkWaitError::Closed);
                }
                if !*leadership.borrow_and_update() {
                    return Err(HighWatermarkWaitError::NotLeader);
                }
                tokio::select! {
                    changed = progress.changed() => if changed.is_err() {
                        return Err(HighWatermarkWaitError::Closed);
                    },
                    // The sender lives as long as the partition, which this future holds.
                    _ = leadership.changed() => {}
                }
            }
        }
    }
}

/// The partition [`leader_append`] last made for each log: the log's flush listener reaches its partition
/// weakly, and a test's flushes may come after the appending thread ended. Appends at the same epoch reuse
/// it; one whose log nobody else holds any more is dropped at the next append.
#[cfg(test)]
static TEST_PARTITIONS: std::sync::Mutex<Vec<Arc<Partition>>> = std::sync::Mutex::new(Vec::new());

/// For the log layer's own tests: appends to `log` through a partition at `leader_epoch`, so the
/// high-watermark rule (and its flush listener) applies as in the broker.
#[cfg(test)]
pub(crate) fn leader_append(
    log: &Arc<PartitionLog>,
    records: BytesMut,
    leader_epoch: i32,
) -> Result<AppendInfo, LogError> {
    let partition = {
        let mut kept = TEST_PARTITIONS.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|p| Arc::strong_count(&p.log) > 1);
        match kept.iter().find(|p| Arc::ptr_eq(&p.log, log)) {
            Some(p) if p.leader_epoch() == leader_epoch => p.clone(),
            _ => {
                let partition = Partition::new(
                    log.topic_partition().clone(),
                    Uuid::nil(),
                    log.clone(),
                    leader_epoch,
                );
                kept.retain(|p| !Arc::ptr_eq(&p.log, log));
                kept.push(partition.clone());
                partition
            }
        }
    };
    partition.append_records_to_leader(records, AppendOrigin::Client)
}

/// Kafka's "no epoch" and "no offset" answers.
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// Kafka's rule over the (epoch, start offset) cache: the latest epoch ends at the log end offset; an
/// older epoch ends where the next larger epoch starts, answered with the largest known epoch not above
/// the requested one; an epoch above every known one, or an empty cache, has no answer.
pub fn end_offset_for(epochs: &[(i32, i64)], requested: i32, log_end_offset: i64) -> (i32, i64) {
    let Some(&(latest, _)) = epochs.last() else {
        return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
    };
    if requested == UNDEFINED_EPOCH {
        return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
    }
    if requested == latest {
        return (latest, log_end_offset);
    }
    let Some(&(_, next_start)) = epochs.iter().find(|(e, _)| *e > requested) else {
        return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
    };
    match epochs.iter().rev().find(|(e, _)| *e <= requested) {
        Some(&(floor, _)) => (floor, next_start),
        None => (requested, next_start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafkas_leader_epoch_cache_rules() {
        let epochs = [(0, 0), (2, 10), (5, 30)];
        assert_eq!(
            end_offset_for(&epochs, 5, 42),
            (5, 42),
            "latest ends at LEO"
        );
        assert_eq!(end_offset_for(&epochs, 0, 42), (0, 10));
        assert_eq!(
            end_offset_for(&epochs, 3, 42),
            (2, 30),
            "unknown epoch: floor"
        );
        assert_eq!(end_offset_for(&epochs, 6, 42), (-1, -1), "future epoch");
        assert_eq!(end_offset_for(&[(3, 5)], 1, 9), (1, 5), "below the first");
        assert_eq!(end_offset_for(&[], 0, 0), (-1, -1), "empty cache");
    }
}

#[cfg(test)]
mod isolation_tests {
    use super::*;
    use crate::log::LogManager;
    use crate::log::record_batch::test_support::batch;

    #[tokio::test]
    async fn durable_partition_publishes_only_what_is_fsynced() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            flush_interval_messages: 1,
            ..LogConfig::default()
        };
        assert!(config.is_durable());
        let tp = TopicPartition::new("durable", 0);
        // No flusher thread: nothing is fsynced until the test flushes.
        let log =
            PartitionLog::load_without_flusher(dir.path().join(tp.to_string()), tp.clone(), config);
        let partition = Partition::new(tp, Uuid::nil(), log, 0);
        partition
            .append_records_to_leader(BytesMut::from(&batch(3, 10, 1)[..]), AppendOrigin::Client)
            .unwrap();
        assert_eq!(partition.high_watermark(), 0, "not fsynced yet");
        let committed = partition
            .read(0, 1 << 20, true, FetchIsolation::TxnCommitted)
            .unwrap();
        assert!(committed.records.is_empty());
        let everything = partition
            .read(0, 1 << 20, true, FetchIsolation::LogEnd)
            .unwrap();
        assert!(
            !everything.records.is_empty(),
            "a follower reads to the log end"
        );

        let waiter = partition.wait_for_high_watermark(3);
        partition.log().flush().unwrap();
        waiter.await.unwrap();
        assert_eq!(partition.latest_offset(FetchIsolation::HighWatermark), 3);

        // Leaving durable mode publishes what was appended since.
        partition
            .append_records_to_leader(BytesMut::from(&batch(1, 10, 1)[..]), AppendOrigin::Client)
            .unwrap();
        assert_eq!(partition.high_watermark(), 3);
        partition.update_config(LogConfig::default());
        assert_eq!(partition.high_watermark(), 4);
        partition.log().close().unwrap();
    }

    #[test]
    fn clients_cannot_write_control_batches() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let tp = TopicPartition::new("markers", 0);
        let log = logs.get_or_create(&tp, LogConfig::default()).unwrap();
        let partition = Partition::new(tp, Uuid::nil(), log, 0);
        let marker = crate::log::batch_builder::end_transaction_marker(1, 0, true, 0, 10).unwrap();
        let refused = partition
            .append_records_to_leader(BytesMut::from(&marker[..]), AppendOrigin::Client)
            .unwrap_err();
        assert!(
            matches!(refused, LogError::InvalidRecord { .. }),
            "{refused}"
        );
        assert_eq!(partition.log_end_offset(), 0);
        partition
            .append_records_to_leader(BytesMut::from(&marker[..]), AppendOrigin::Coordinator)
            .unwrap();
        assert_eq!(partition.log_end_offset(), 1);
        logs.shutdown().unwrap();
    }

    #[test]
    fn the_last_stable_offset_stops_at_an_open_transaction_until_its_marker() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let tp = TopicPartition::new("lso", 0);
        let log = logs.get_or_create(&tp, LogConfig::default()).unwrap();
        let partition = Partition::new(tp, Uuid::nil(), log, 0);
        let append = |records: BytesMut, origin| {
            partition.append_records_to_leader(records, origin).unwrap()
        };
        append(BytesMut::from(&batch(2, 10, 1)[..]), AppendOrigin::Client);
        let mut txn = crate::log::batch_builder::BatchBuilder::new()
            .producer(4, 0, 0)
            .transactional(true);
        txn.append(1, None, Some(b"t"), &[]).unwrap();
        append(txn.build().unwrap(), AppendOrigin::Client); // offset 2
        append(BytesMut::from(&batch(1, 10, 1)[..]), AppendOrigin::Client);
        assert_eq!(partition.high_watermark(), 4);
        assert_eq!(partition.last_stable_offset(), 2);
        assert_eq!(partition.latest_offset(FetchIsolation::TxnCommitted), 2);
        let marker = crate::log::batch_builder::end_transaction_marker(4, 0, true, 0, 10).unwrap();
        append(marker, AppendOrigin::Coordinator);
        assert_eq!(partition.last_stable_offset(), 5);
        logs.shutdown().unwrap();
    }
}
