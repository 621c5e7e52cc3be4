//! The partition's aborted transactions, kept in the `.txnindex` of the segment holding each ABORT marker
//! (Kafka's `UnifiedLog`/`LocalLog` side of the TransactionIndex): recorded by the append path, collected
//! by read_committed fetches, dropped with truncation, and rebuilt by a producer-state replay.
//!
//! Ordering: an aborted transaction is recorded under the append lock right after its marker is appended
//! and before the high watermark (hence the last stable offset) passes the marker, so a reader that loaded
//! the LSO first finds the entry of every aborted transaction below it.

use std::sync::atomic::Ordering;

use crate::log::error::LogError;
use crate::log::lock;
use crate::log::txn_index::AbortedTxn;

use super::{PartitionLog, offline};

impl PartitionLog {
    /// Records an aborted transaction in the segment holding its marker (`txn.last_offset`), taking the
    /// append lock. The append path, which holds the lock already, calls
    /// [`PartitionLog::append_aborted_txn_locked`].
    pub fn append_aborted_txn(&self, txn: AbortedTxn) -> Result<(), LogError> {
        let _append = lock(&self.append_lock);
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(offline(&self.tp, "log is closed"));
        }
        self.append_aborted_txn_locked(txn)
    }

    /// [`PartitionLog::append_aborted_txn`] for a caller that holds the append lock (the append path, after
    /// the marker's write and before the log end offset and high watermark move). Markers arrive in offset
    /// order, so each entry goes after the previous one (asserted by the index). A failed write takes the
    /// log offline: the marker is in the log already, and without its entry a read_committed consumer would
    /// be handed the aborted records; the restart's replay rebuilds the index.
    pub(crate) fn append_aborted_txn_locked(&self, txn: AbortedTxn) -> Result<(), LogError> {
        let segments = self.segments_snapshot();
        let idx = segments.partition_point(|s| s.base_offset() <= txn.last_offset);
        assert!(
            idx > 0,
            "invariant: the marker {} of an aborted transaction is in a segment of {}",
            txn.last_offset,
            self.tp
        );
        match segments[idx - 1].append_aborted_txn(&txn) {
            Ok(created) => {
                if created {
                    self.dir_dirty.store(true, Ordering::Release);
                }
                Ok(())
            }
            Err(e) => {
                let e = LogError::from(e);
                self.mark_failed(&e);
                Err(e)
            }
        }
    }

    /// Kafka's `LocalLog.collectAbortedTransactions` for a fetch: the aborted transactions overlapping
    /// `[fetch_offset, upper_bound)`, scanning the transaction indexes from the segment holding
    /// `fetch_offset` onwards (a transaction's marker follows its records) until an entry's last stable
    /// offset shows that no later one can overlap.
    pub fn collect_aborted_txns(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
    ) -> Result<Vec<AbortedTxn>, LogError> {
        let segments = self.segments_snapshot();
        let start = segments
            .partition_point(|s| s.base_offset() <= fetch_offset)
            .saturating_sub(1);
        let mut out = Vec::new();
        for seg in &segments[start..] {
            if seg.collect_aborted_txns(fetch_offset, upper_bound, &mut out)? {
                break;
            }
        }
        Ok(out)
    }

    /// Drops every aborted transaction whose marker is at or above `offset`, in every segment: the first
    /// step of rebuilding the indexes by a producer-state replay from `offset`, which then records each
    /// aborted transaction it completes with [`PartitionLog::append_aborted_txn_locked`].
    pub fn truncate_txn_indexes(&self, offset: i64) -> Result<(), LogError> {
        let segments = self.segments_snapshot();
        for (i, seg) in segments.iter().enumerate() {
            // Markers of a segment lie below the next one's base: those wholly below `offset` keep theirs.
            if segments.get(i + 1).is_some_and(|next| next.base_offset() <= offset) {
                continue;
            }
            seg.truncate_txn_index(offset)?;
        }
        Ok(())
    }
}
