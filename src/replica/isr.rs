//! The leader's view of its followers and the in-sync replica set (Kafka's `Replica` state and the ISR half
//! of `Partition`): each follower's log end offset and last caught-up time, learnt from its fetches; the
//! committed ISR from the metadata image and at most one change of it in flight (AlterPartition); and the
//! rules that follow from them: which replicas the high watermark waits for, when a follower joins or
//! leaves the ISR.
//!
//! Pure state: no I/O, no clock. The partition holds it under a mutex and passes the time in.

use std::collections::HashMap;

use uuid::Uuid;

use crate::log::TopicPartition;

/// Kafka's "log end offset not known yet": a follower that has not fetched since this leadership began.
const UNKNOWN_OFFSET: i64 = -1;

/// One follower as the leader sees it (Kafka's `ReplicaState`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteReplica {
    /// The offset of its last fetch: everything below is in its log.
    pub log_end_offset: i64,
    pub log_start_offset: i64,
    /// The last time (ms) it was known to hold everything the leader had.
    pub last_caught_up_ms: i64,
    /// The leader's log end offset and the time at its previous fetch (the caught-up rule looks back one fetch).
    last_fetch_leader_log_end: i64,
    last_fetch_ms: i64,
    /// The broker epoch its fetches carry (KIP-903); -1 when unknown.
    pub broker_epoch: i64,
}

impl RemoteReplica {
    /// Its state when a leadership begins: nothing known, caught up "now" if it is in the ISR (so it is not
    /// dropped before it had a chance to fetch), never otherwise.
    fn reset(in_isr: bool, now_ms: i64) -> RemoteReplica {
        RemoteReplica {
            log_end_offset: UNKNOWN_OFFSET,
            log_start_offset: UNKNOWN_OFFSET,
            last_caught_up_ms: if in_isr { now_ms } else { 0 },
            last_fetch_leader_log_end: UNKNOWN_OFFSET,
            last_fetch_ms: 0,
            broker_epoch: -1,
        }
    }

    /// Kafka's `isCaughtUp`: at the leader's end, or caught up within `max_lag_ms`.
    fn is_caught_up(&self, leader_log_end: i64, now_ms: i64, max_lag_ms: i64) -> bool {
        self.log_end_offset == leader_log_end || now_ms - self.last_caught_up_ms <= max_lag_ms
    }
}

/// An ISR change this leader asked the controller for and has no answer to yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PendingIsr {
    /// A caught-up follower joins: it counts for the high watermark at once (stricter, hence safe).
    Expand(Vec<i32>),
    /// Lagging followers leave: they still count until the controller confirms, so a refused shrink never
    /// let the high watermark pass them.
    Shrink(Vec<i32>),
}

impl PendingIsr {
    fn isr(&self) -> &[i32] {
        match self {
            PendingIsr::Expand(isr) | PendingIsr::Shrink(isr) => isr,
        }
    }
}

/// A follower's fetch as the leader records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerFetch {
    pub replica_id: i32,
    /// The broker epoch its fetch carried (KIP-903); -1 when unknown.
    pub broker_epoch: i64,
    /// Everything below is in its log.
    pub fetch_offset: i64,
    pub log_start_offset: i64,
    /// The leader's log end offset when the fetch was read.
    pub leader_log_end: i64,
}

/// One ISR change for the controller (one partition of an AlterPartition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrProposal {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// The ISR wanted, each member with the broker epoch its fetches carried (-1: unknown).
    pub new_isr: Vec<(i32, i64)>,
}

/// The replica set as the metadata image gives it, and while leading, the followers' progress.
#[derive(Debug)]
pub struct ReplicationState {
    /// This broker's id; -1 for a partition outside any cluster bookkeeping (tests, a lone log).
    pub local_id: i32,
    pub replicas: Vec<i32>,
    /// The committed ISR (from the image).
    pub isr: Vec<i32>,
    pub partition_epoch: i32,
    pub pending: Option<PendingIsr>,
    /// Every replica but this one, while this broker leads.
    pub followers: HashMap<i32, RemoteReplica>,
    /// The log end offset when this leadership began: a follower joins the ISR only once it holds all of
    /// the epochs before it (Kafka's `leaderEpochStartOffsetOpt`). None while following.
    pub epoch_start_offset: Option<i64>,
}

impl ReplicationState {
    /// A partition alone: its only replica is this broker.
    pub fn single() -> ReplicationState {
        ReplicationState {
            local_id: -1,
            replicas: Vec::new(),
            isr: Vec::new(),
            partition_epoch: 0,
            pending: None,
            followers: HashMap::new(),
            epoch_start_offset: None,
        }
    }

    /// Adopts the image's replicas and ISR. `new_leadership` (this broker starts leading at a new epoch, at
    /// `log_end`) resets every follower's state; while leading, replicas that appeared are tracked and
    /// ones that left forgotten. An image at a newer partition epoch answers any change in flight.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        local_id: i32,
        replicas: &[i32],
        isr: &[i32],
        partition_epoch: i32,
        leading: bool,
        new_leadership: bool,
        log_end: i64,
        now_ms: i64,
    ) {
        self.local_id = local_id;
        // Leading without a leadership on record (a partition object just made) starts one too.
        let new_leadership = leading && (new_leadership || self.epoch_start_offset.is_none());
        if partition_epoch > self.partition_epoch || new_leadership || !leading {
            self.pending = None;
        }
        self.replicas = replicas.to_vec();
        self.isr = isr.to_vec();
        self.partition_epoch = partition_epoch;
        if !leading {
            self.followers.clear();
            self.epoch_start_offset = None;
            return;
        }
        if new_leadership {
            self.followers.clear();
            self.epoch_start_offset = Some(log_end);
        }
        let isr = &self.isr;
        self.followers.retain(|id, _| replicas.contains(id));
        for &id in replicas.iter().filter(|&&id| id != local_id) {
            self.followers
                .entry(id)
                .or_insert_with(|| RemoteReplica::reset(isr.contains(&id), now_ms));
        }
    }

    /// The replica set the high watermark waits for (Kafka's maximal ISR): the committed ISR and any member
    /// a change in flight adds.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr.clone();
        if let Some(pending) = &self.pending {
            for id in pending.isr() {
                if !isr.contains(id) {
                    isr.push(*id);
                }
            }
        }
        isr
    }

    /// Kafka's effective min ISR: `min.insync.replicas`, capped at the replication factor.
    pub fn effective_min_isr(&self, min_insync_replicas: i32) -> usize {
        let configured = usize::try_from(min_insync_replicas.max(1)).unwrap_or(1);
        configured.min(self.replicas.len().max(1))
    }

    /// The size the min-ISR checks compare: a partition outside the cluster bookkeeping is its own ISR.
    fn isr_size(isr: &[i32]) -> usize {
        isr.len().max(1)
    }

    /// True when an acks=all write may be appended (Kafka refuses it with NOT_ENOUGH_REPLICAS before).
    pub fn has_enough_replicas(&self, min_insync_replicas: i32) -> bool {
        Self::isr_size(&self.isr) >= self.effective_min_isr(min_insync_replicas)
    }

    /// True when a write below the high watermark counts as acknowledged by enough replicas (else an acks=all
    /// write answers NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    pub fn maximal_isr_is_enough(&self, min_insync_replicas: i32) -> bool {
        Self::isr_size(&self.maximal_isr()) >= self.effective_min_isr(min_insync_replicas)
    }

    /// The leader's high-watermark candidate, from its own (`local`: its log end, or fsynced end in
    /// durable mode): the smallest log end offset over the maximal ISR; None while the ISR is below the
    /// effective min ISR (strict min ISR, KAFKA-15583: the high watermark then does not move).
    pub fn high_watermark_candidate(&self, local: i64, min_insync_replicas: i32) -> Option<i64> {
        if self.epoch_start_offset.is_none() && self.local_id >= 0 {
            return None;
        }
        let maximal = self.maximal_isr();
        if Self::isr_size(&maximal) < self.effective_min_isr(min_insync_replicas) {
            return None;
        }
        let mut candidate = local;
        for id in maximal.iter().filter(|&&id| id != self.local_id) {
            let end = self
                .followers
                .get(id)
                .map_or(UNKNOWN_OFFSET, |f| f.log_end_offset);
            candidate = candidate.min(end);
        }
        Some(candidate)
    }

    /// Records a follower's fetch at `fetch_offset` (Kafka's `updateFetchStateOrThrow`), read when the
    /// leader's log ended at `leader_log_end`. False when `replica_id` is not a follower of this leadership.
    pub fn record_fetch(&mut self, fetch: &FollowerFetch, now_ms: i64) -> bool {
        let FollowerFetch {
            replica_id,
            broker_epoch,
            fetch_offset,
            log_start_offset,
            leader_log_end,
        } = *fetch;
        let Some(f) = self.followers.get_mut(&replica_id) else {
            return false;
        };
        if fetch_offset >= leader_log_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
        } else if fetch_offset >= f.last_fetch_leader_log_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.log_end_offset = fetch_offset;
        f.log_start_offset = log_start_offset;
        f.last_fetch_leader_log_end = leader_log_end;
        f.last_fetch_ms = now_ms;
        f.broker_epoch = broker_epoch;
        true
    }

    /// Kafka's `maybeExpandIsr`: a follower outside the ISR that holds everything up to the high watermark
    /// and this leadership's start, and that the controller would accept (`eligible`: registered, unfenced,
    /// not shutting down, of the current incarnation), is proposed; nothing while another change is in flight.
    pub fn maybe_expand(
        &mut self,
        replica_id: i32,
        high_watermark: i64,
        eligible: bool,
    ) -> Option<Vec<i32>> {
        if self.pending.is_some() || self.isr.contains(&replica_id) || !eligible {
            return None;
        }
        let start = self.epoch_start_offset?;
        let f = self.followers.get(&replica_id)?;
        if f.log_end_offset < high_watermark || f.log_end_offset < start {
            return None;
        }
        let mut isr = self.isr.clone();
        isr.push(replica_id);
        self.pending = Some(PendingIsr::Expand(isr.clone()));
        Some(isr)
    }

    /// Kafka's `maybeShrinkIsr`: ISR followers not caught up within `max_lag_ms` are proposed out; nothing
    /// while another change is in flight.
    pub fn maybe_shrink(
        &mut self,
        leader_log_end: i64,
        now_ms: i64,
        max_lag_ms: i64,
    ) -> Option<Vec<i32>> {
        if self.pending.is_some() || self.epoch_start_offset.is_none() {
            return None;
        }
        let lagging: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|id| *id != self.local_id)
            .filter(|id| {
                self.followers
                    .get(id)
                    .is_none_or(|f| !f.is_caught_up(leader_log_end, now_ms, max_lag_ms))
            })
            .collect();
        if lagging.is_empty() {
            return None;
        }
        let isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|id| !lagging.contains(id))
            .collect();
        self.pending = Some(PendingIsr::Shrink(isr.clone()));
        Some(isr)
    }

    /// The ISR with each member's broker epoch (the leader's own as given).
    pub fn with_epochs(&self, isr: &[i32], own_broker_epoch: i64) -> Vec<(i32, i64)> {
        isr.iter()
            .map(|&id| {
                let epoch = if id == self.local_id {
                    own_broker_epoch
                } else {
                    self.followers.get(&id).map_or(-1, |f| f.broker_epoch)
                };
                (id, epoch)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(replica_id: i32, broker_epoch: i64, at: i64, start: i64, end: i64) -> FollowerFetch {
        FollowerFetch {
            replica_id,
            broker_epoch,
            fetch_offset: at,
            log_start_offset: start,
            leader_log_end: end,
        }
    }

    fn leading(isr: &[i32], now: i64) -> ReplicationState {
        let mut st = ReplicationState::single();
        st.update(1, &[1, 2, 3], isr, 5, true, true, 100, now);
        st
    }

    #[test]
    fn the_high_watermark_waits_for_every_member_of_the_maximal_isr() {
        let mut st = leading(&[1, 2, 3], 0);
        assert_eq!(
            st.high_watermark_candidate(100, 1),
            Some(-1),
            "nothing known yet"
        );
        st.record_fetch(&fetch(2, 7, 100, 0, 100), 10);
        st.record_fetch(&fetch(3, 8, 90, 0, 100), 10);
        assert_eq!(st.high_watermark_candidate(100, 1), Some(90));
        assert_eq!(
            st.high_watermark_candidate(80, 1),
            Some(80),
            "own end bounds it"
        );
        // A shrink in flight keeps the old members counting; an expansion counts the new one at once.
        st.pending = Some(PendingIsr::Shrink(vec![1, 2]));
        assert_eq!(st.high_watermark_candidate(100, 1), Some(90));
        st.update(1, &[1, 2, 3], &[1, 2], 6, true, false, 100, 20);
        assert_eq!(st.pending, None, "the newer partition epoch answers it");
        assert_eq!(st.high_watermark_candidate(100, 1), Some(100));
    }

    #[test]
    fn strict_min_isr_stops_the_high_watermark_and_refuses_acks_all() {
        let st = leading(&[1], 0);
        assert!(st.has_enough_replicas(1));
        assert!(!st.has_enough_replicas(2));
        assert_eq!(st.high_watermark_candidate(100, 2), None);
        assert_eq!(st.high_watermark_candidate(100, 1), Some(100));
        // Capped at the replication factor.
        assert!(st.has_enough_replicas(1));
        assert_eq!(st.effective_min_isr(5), 3);
        let lone = ReplicationState::single();
        assert_eq!(lone.high_watermark_candidate(7, 3), Some(7));
        assert!(lone.has_enough_replicas(3));
    }

    #[test]
    fn a_follower_joins_once_it_holds_the_high_watermark_and_the_epoch_start() {
        let mut st = leading(&[1, 2], 0);
        st.record_fetch(&fetch(3, 9, 50, 0, 100), 10);
        assert_eq!(st.maybe_expand(3, 40, true), None, "below the epoch start");
        st.record_fetch(&fetch(3, 9, 100, 0, 120), 20);
        assert_eq!(
            st.maybe_expand(3, 110, true),
            None,
            "below the high watermark"
        );
        assert_eq!(st.maybe_expand(3, 100, false), None, "ineligible");
        assert_eq!(st.maybe_expand(3, 100, true), Some(vec![1, 2, 3]));
        assert_eq!(st.maybe_expand(3, 100, true), None, "one change at a time");
        assert_eq!(st.with_epochs(&[1, 2, 3], 4), vec![(1, 4), (2, -1), (3, 9)]);
    }

    #[test]
    fn a_follower_that_stops_catching_up_is_dropped_after_the_lag_time() {
        let mut st = leading(&[1, 2, 3], 1_000);
        // Both fetch at the end at t=1000.
        st.record_fetch(&fetch(2, 1, 100, 0, 100), 1_000);
        st.record_fetch(&fetch(3, 1, 100, 0, 100), 1_000);
        assert_eq!(st.maybe_shrink(150, 20_000, 30_000), None);
        // Follower 2 keeps fetching but never reaches the end; 3 goes silent.
        st.record_fetch(&fetch(2, 1, 120, 0, 150), 25_000);
        st.record_fetch(&fetch(2, 1, 150, 0, 200), 26_000);
        // 2 reached the end the leader had at its previous fetch: caught up as of that fetch.
        assert_eq!(st.followers[&2].last_caught_up_ms, 25_000);
        assert_eq!(st.maybe_shrink(200, 40_000, 30_000), Some(vec![1, 2]));
        assert_eq!(st.maybe_shrink(200, 40_000, 30_000), None, "in flight");
    }

    #[test]
    fn a_new_leadership_forgets_what_followers_had() {
        let mut st = leading(&[1, 2, 3], 0);
        st.record_fetch(&fetch(2, 1, 100, 0, 100), 10);
        st.update(1, &[1, 2, 3], &[1, 2, 3], 7, true, true, 130, 50);
        assert_eq!(st.followers[&2].log_end_offset, -1);
        assert_eq!(st.followers[&2].last_caught_up_ms, 50);
        assert_eq!(st.epoch_start_offset, Some(130));
        st.update(1, &[1, 2, 3], &[1, 2, 3], 8, false, false, 130, 60);
        assert!(st.followers.is_empty());
        assert!(
            !st.record_fetch(&fetch(2, 1, 100, 0, 100), 70),
            "a follower serves no fetch"
        );
    }
}
