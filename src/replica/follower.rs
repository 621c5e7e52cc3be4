//! The follower side of a [`Partition`] (Kafka's `Partition.appendRecordsToFollowerOrFutureReplica` and
//! the follower's part of `ReplicaFetcherThread.processPartitionData`): what the replica fetcher does to
//! the local replica of a partition another broker leads. Only through the partition's public accessors
//! and its log: the leader's state is not touched.

use bytes::BytesMut;

use super::partition::Partition;
use crate::log::record_batch::RecordBatchHeader;
use crate::log::{AppendInfo, LogError, TopicPartition};

/// Why a follower operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum FollowerError {
    /// This broker leads the partition now: it takes no records from another replica.
    #[error("{0} is led by this broker: a leader does not append as a follower")]
    Leader(TopicPartition),
    #[error(transparent)]
    Log(#[from] LogError),
}

impl Partition {
    /// Appends what the leader's Fetch returned, offsets and epochs as the leader wrote them (see
    /// [`crate::log::PartitionLog::append_as_follower`]). Refused while this broker leads the partition.
    ///
    /// An empty log whose start falls inside the first batch (it started over at the leader's log start,
    /// which DeleteRecords put mid-batch) starts over at that batch's base offset first, as Kafka's
    /// `appendRecordsToFollowerOrFutureReplica` does: a batch is never split.
    pub fn append_records_as_follower(
        &self,
        records: BytesMut,
    ) -> Result<AppendInfo, FollowerError> {
        if self.is_leader() {
            return Err(FollowerError::Leader(self.topic_partition().clone()));
        }
        let log_end = self.log_end_offset();
        if log_end == self.log_start_offset()
            && let Ok(h) = RecordBatchHeader::parse(&records)
            && h.base_offset() < log_end
            && h.last_offset() >= log_end
        {
            tracing::info!(partition = %self.topic_partition(), log_start = log_end,
                batch_start = h.base_offset(), "first fetched batch starts below the log start; starting the log there");
            self.log().truncate_fully_and_start_at(h.base_offset())?;
        }
        let leader = || FollowerError::Leader(self.topic_partition().clone());
        Ok(self
            .while_following(|| self.log().append_as_follower(records))
            .ok_or_else(leader)??)
    }

    /// A follower's high watermark is the leader's, capped by what this replica holds (Kafka's
    /// `ReplicaFetcherThread`: `min(leader HW, local LEO)`); it only moves up (a truncation lowers it).
    pub fn update_follower_high_watermark(&self, leader_high_watermark: i64) {
        // Under the role: once this broker leads, the leader's rule owns the high watermark.
        self.while_following(|| {
            let to = leader_high_watermark.min(self.log_end_offset());
            self.log().maybe_increment_high_watermark(to);
        });
    }

    /// Removes every batch at or above `offset` (to the start of the batch holding it); returns the new
    /// log end offset. Under the role: a partition this broker leads now is never cut (nothing happens; its
    /// fetcher drops it).
    pub fn truncate_to(&self, offset: i64) -> Result<i64, LogError> {
        self.while_following(|| self.log().truncate_to(offset))
            .unwrap_or_else(|| Ok(self.log_end_offset()))
    }

    /// Empties the log and restarts it at `offset` (a follower behind the leader's log start); nothing
    /// while this broker leads.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), LogError> {
        self.while_following(|| self.log().truncate_fully_and_start_at(offset))
            .unwrap_or(Ok(()))
    }

    /// Follows the leader's log start offset up (retention or DeleteRecords on the leader), never past
    /// this replica's own high watermark. Returns the log start offset.
    pub fn maybe_increment_log_start_offset(
        &self,
        leader_log_start_offset: i64,
    ) -> Result<i64, LogError> {
        let target = leader_log_start_offset.min(self.high_watermark());
        if target <= self.log_start_offset() {
            return Ok(self.log_start_offset());
        }
        self.log().delete_records_before(target)
    }

    /// The epoch of this replica's last batch, from its leader epoch cache (the follower's
    /// `last_fetched_epoch`); None when the log has none.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.log().latest_leader_epoch()
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use uuid::Uuid;

    use super::*;
    use crate::log::record_batch::set_partition_leader_epoch;
    use crate::log::record_batch::test_support::batch;
    use crate::log::{LogConfig, LogManager, TopicPartition};

    fn stamped(n: usize, base: i64, epoch: i32) -> BytesMut {
        let mut b = batch(n, 10, 1);
        crate::log::record_batch::set_base_offset(&mut b, base);
        set_partition_leader_epoch(&mut b, epoch);
        BytesMut::from(&b[..])
    }

    #[test]
    fn follower_high_watermark_and_log_start_follow_the_leader_within_the_local_log() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogManager::open(dir.path(), LogConfig::default()).unwrap();
        let tp = TopicPartition::new("f", 0);
        let log = logs.get_or_create(&tp, LogConfig::default()).unwrap();
        let partition = Partition::new(tp, Uuid::nil(), log, 0);
        let refused = partition.append_records_as_follower(stamped(1, 0, 0));
        assert!(
            matches!(refused, Err(FollowerError::Leader(_))),
            "{refused:?}"
        );
        partition.become_follower(2);
        partition
            .append_records_as_follower(stamped(3, 0, 1))
            .unwrap();
        partition
            .append_records_as_follower(stamped(2, 3, 2))
            .unwrap();
        assert_eq!(partition.latest_epoch(), Some(2));
        partition.update_follower_high_watermark(100);
        assert_eq!(partition.high_watermark(), 5, "capped by the local log end");
        partition.update_follower_high_watermark(2);
        assert_eq!(partition.high_watermark(), 5, "never down");
        assert_eq!(partition.truncate_to(3).unwrap(), 3);
        assert_eq!(partition.high_watermark(), 3);
        assert_eq!(partition.latest_epoch(), Some(1));
        assert_eq!(
            partition.maybe_increment_log_start_offset(9).unwrap(),
            3,
            "not past the high watermark"
        );
        partition.truncate_fully_and_start_at(41).unwrap();
        assert_eq!(
            (partition.log_start_offset(), partition.log_end_offset()),
            (41, 41)
        );
        assert_eq!(partition.latest_epoch(), None);
        // The leader's log start (41) is inside its batch 40..42: the log starts over at 40.
        partition
            .append_records_as_follower(stamped(3, 40, 2))
            .unwrap();
        assert_eq!(
            (partition.log_start_offset(), partition.log_end_offset()),
            (40, 43)
        );
        // A batch below a non-empty log's end is still refused.
        let overlap = partition.append_records_as_follower(stamped(1, 41, 2));
        assert!(
            matches!(
                overlap,
                Err(FollowerError::Log(LogError::UnexpectedAppendOffset(_)))
            ),
            "{overlap:?}"
        );
        logs.shutdown().unwrap();
    }
}
