//! What the replication layer tells the metrics: partition health counts and follower lag (computed on
//! demand from the partitions, so nothing is kept up to date on the hot path) and ISR change counters. The
//! follower side's numbers come from the replica fetcher (`ReplicaFetcherManager::stats`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::log::TopicPartition;

/// This broker's partitions by replication health (Kafka's `ReplicaManager` gauges), at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaHealth {
    /// Partitions this broker leads.
    pub leader: u64,
    /// Led partitions whose committed ISR is smaller than their replica set.
    pub under_replicated: u64,
    /// Led partitions whose ISR is below the effective min ISR (acks=all writes are refused).
    pub under_min_isr: u64,
    /// Partitions this broker is a replica of whose log could not be opened or has failed.
    pub offline: u64,
}

/// ISR changes this broker proposed as a leader since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IsrChangeCounts {
    /// Shrinks sent to the controller (followers dropped for lagging).
    pub shrinks: u64,
    /// Expansions sent to the controller (a follower caught up).
    pub expands: u64,
    /// Proposals the controller refused or did not answer; committed = shrinks + expands - failures.
    pub failures: u64,
}

/// Lock-free counters behind [`IsrChangeCounts`], bumped once per proposal (rare: never on the data path).
#[derive(Debug, Default)]
pub(crate) struct IsrChangeCounters {
    shrinks: AtomicU64,
    expands: AtomicU64,
    failures: AtomicU64,
}

/// Which way an ISR change goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IsrChangeKind {
    Shrink,
    Expand,
}

impl IsrChangeCounters {
    pub(crate) fn proposed(&self, kind: IsrChangeKind) {
        let counter = match kind {
            IsrChangeKind::Shrink => &self.shrinks,
            IsrChangeKind::Expand => &self.expands,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> IsrChangeCounts {
        IsrChangeCounts {
            shrinks: self.shrinks.load(Ordering::Relaxed),
            expands: self.expands.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// How far one follower of a partition this broker leads is behind, as the leader sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct FollowerLag {
    pub tp: TopicPartition,
    pub replica: i32,
    /// Leader log end minus the follower's (never negative); None until its first fetch of this leadership.
    pub records: Option<i64>,
    /// Seconds since it last held everything the leader had; None when it has not caught up once in this
    /// leadership (a follower outside the ISR at the leader's election).
    pub seconds: Option<f64>,
}

/// The lag of one follower from the leader's log end and the follower's progress (as
/// `Partition::follower_progress` gives it: log end -1 and caught-up time 0 mean unknown).
pub(crate) fn follower_lag(
    tp: &TopicPartition,
    leader_log_end: i64,
    (replica, follower_log_end, last_caught_up_ms): (i32, i64, i64),
    now_ms: i64,
) -> FollowerLag {
    FollowerLag {
        tp: tp.clone(),
        replica,
        records: (follower_log_end >= 0).then(|| (leader_log_end - follower_log_end).max(0)),
        seconds: (last_caught_up_ms > 0)
            .then(|| (now_ms - last_caught_up_ms).max(0) as f64 / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isr_changes_are_counted_by_kind() {
        let counters = IsrChangeCounters::default();
        counters.proposed(IsrChangeKind::Shrink);
        counters.proposed(IsrChangeKind::Shrink);
        counters.proposed(IsrChangeKind::Expand);
        counters.failed();
        assert_eq!(
            counters.snapshot(),
            IsrChangeCounts {
                shrinks: 2,
                expands: 1,
                failures: 1
            }
        );
    }

    #[test]
    fn follower_lag_from_progress() {
        let tp = TopicPartition::new("t", 0);
        let lag = follower_lag(&tp, 100, (2, 60, 9_000), 10_500);
        assert_eq!(lag.records, Some(40));
        assert_eq!(lag.seconds, Some(1.5));
        // Not fetched yet in this leadership, never caught up: nothing known.
        let unknown = follower_lag(&tp, 100, (3, -1, 0), 10_500);
        assert_eq!((unknown.records, unknown.seconds), (None, None));
        // A follower ahead of a log end read earlier is not behind.
        assert_eq!(
            follower_lag(&tp, 100, (2, 101, 10_500), 10_500).records,
            Some(0)
        );
    }
}
