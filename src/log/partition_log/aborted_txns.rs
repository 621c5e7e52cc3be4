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
            if segments
                .get(i + 1)
                .is_some_and(|next| next.base_offset() <= offset)
            {
                continue;
            }
            seg.truncate_txn_index(offset)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::BytesMut;

    use super::super::tests::{open, small_config};
    use super::*;
    use crate::log::record_batch::test_support::batch;
    use crate::log::segment::{TXN_INDEX_FILE_SUFFIX, segment_file_name};
    use crate::replica::partition::leader_append;

    fn txn(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    /// Appends `batches` batches of 2 records (~300 bytes: three to a 1 KiB segment).
    fn fill(log: &Arc<PartitionLog>, batches: usize) {
        for _ in 0..batches {
            leader_append(log, BytesMut::from(&batch(2, 120, 1)[..]), 0).unwrap();
        }
    }

    fn bases(log: &PartitionLog) -> Vec<i64> {
        log.segments().iter().map(|s| s.base_offset()).collect()
    }

    #[test]
    fn entries_go_to_the_segment_holding_the_marker_and_collect_crosses_segments_until_stable() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path(), small_config());
        fill(&log, 12);
        let b = bases(&log);
        assert!(b.len() >= 4, "{b:?}");
        let spans = txn(2, 2, b[1] + 1, 2); // begins in segment 0, aborted in segment 1
        let inside = txn(3, b[2], b[2] + 2, b[2]);
        let stable = txn(4, b[3], b[3] + 1, b[3]);
        // Matches any range, but follows an entry whose LSO closes the search: never reached.
        let beyond = txn(5, 0, b[3] + 3, 0);
        let early = txn(1, 0, 1, 0);
        for t in [early, spans, inside, stable, beyond] {
            log.append_aborted_txn(t).unwrap();
        }
        let segs = log.segments();
        let per_segment: Vec<usize> = segs
            .iter()
            .map(|s| {
                let mut n = 0;
                s.for_each_aborted_txn(|_| {
                    n += 1;
                    Ok(())
                })
                .unwrap();
                n
            })
            .collect();
        assert_eq!(&per_segment[..4], &[1, 1, 1, 2]);
        assert!(segs[4..].iter().all(|s| !s.has_txn_index()));

        assert_eq!(
            log.collect_aborted_txns(4, b[2] + 1).unwrap(),
            vec![spans, inside]
        );
        assert_eq!(
            log.collect_aborted_txns(0, 2).unwrap(),
            vec![early],
            "spans begins at the bound: out; early's marker is inside"
        );
        assert_eq!(
            log.collect_aborted_txns(b[1] + 2, i64::MAX).unwrap(),
            vec![inside, stable, beyond],
            "from a later segment, to the end: nothing stops the scan"
        );
    }

    #[test]
    fn truncation_drops_entries_at_or_above_the_new_end_and_the_files_of_dropped_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path(), small_config());
        fill(&log, 12);
        let b = bases(&log);
        let kept = txn(1, 0, 1, 0);
        let cut = txn(2, 3, b[1] + 1, 3);
        let gone = txn(3, b[2], b[2] + 1, b[2]);
        for t in [kept, cut, gone] {
            log.append_aborted_txn(t).unwrap();
        }
        let dropped_file = log
            .dir()
            .join(segment_file_name(b[2], TXN_INDEX_FILE_SUFFIX));
        assert!(dropped_file.exists());

        assert_eq!(log.truncate_to(b[1] + 1).unwrap(), b[1]);
        assert!(
            !dropped_file.exists(),
            "a deleted segment takes its .txnindex"
        );
        assert_eq!(log.collect_aborted_txns(0, i64::MAX).unwrap(), vec![kept]);
        // The next marker in the cut segment goes after what is left.
        fill(&log, 1);
        log.append_aborted_txn(txn(4, b[1], b[1] + 1, b[1]))
            .unwrap();

        log.truncate_fully_and_start_at(100).unwrap();
        assert!(log.collect_aborted_txns(0, i64::MAX).unwrap().is_empty());
        let left: Vec<_> = std::fs::read_dir(log.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(TXN_INDEX_FILE_SUFFIX))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn truncate_txn_indexes_prepares_a_replay_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path(), small_config());
        fill(&log, 9);
        let b = bases(&log);
        let entries = [
            txn(1, 0, 1, 0),
            txn(2, 2, b[1] + 1, 2),
            txn(3, b[2], b[2] + 1, b[2]),
        ];
        for t in entries {
            log.append_aborted_txn(t).unwrap();
        }
        log.truncate_txn_indexes(b[1] + 1).unwrap();
        assert_eq!(log.collect_aborted_txns(0, i64::MAX).unwrap(), entries[..1]);
        // The replay appends them again, in order, while the append lock is held.
        let _append = lock(&log.append_lock);
        for t in &entries[1..] {
            log.append_aborted_txn_locked(*t).unwrap();
        }
        drop(_append);
        assert_eq!(log.collect_aborted_txns(0, i64::MAX).unwrap(), entries);
    }

    #[test]
    fn entries_survive_restarts_and_a_damaged_index_is_reset_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let b;
        let entries;
        {
            let (mgr, log) = open(dir.path(), small_config());
            fill(&log, 9);
            b = bases(&log);
            entries = [
                txn(1, 0, 1, 0),
                txn(2, 2, b[1] + 1, 2),
                txn(3, b[2], b[2] + 1, b[2]),
            ];
            for t in entries {
                log.append_aborted_txn(t).unwrap();
            }
            mgr.shutdown().unwrap();
        }
        let pdir = dir.path().join("t-0");
        let file = |base: i64| pdir.join(segment_file_name(base, TXN_INDEX_FILE_SUFFIX));
        // Damage: a torn trailing entry in segment 1, an unknown version in segment 2, an orphan index and
        // a producer snapshot the loader must leave alone.
        let mut torn = std::fs::read(file(b[1])).unwrap();
        torn.extend_from_slice(&[0, 0, 0, 7]);
        std::fs::write(file(b[1]), torn).unwrap();
        let mut versioned = std::fs::read(file(b[2])).unwrap();
        versioned[1] = 9;
        std::fs::write(file(b[2]), versioned).unwrap();
        std::fs::write(file(1_000_000), txn(9, 1_000_000, 1_000_001, 0).encode()).unwrap();
        let snapshot = pdir.join(segment_file_name(b[1], ".snapshot"));
        std::fs::write(&snapshot, b"producer state").unwrap();
        {
            let (mgr, log) = open(dir.path(), small_config());
            assert_eq!(log.log_end_offset(), 18);
            assert_eq!(
                log.collect_aborted_txns(0, i64::MAX).unwrap(),
                entries[..2],
                "the damaged index is empty, to be rebuilt by a replay"
            );
            assert_eq!(std::fs::metadata(file(b[1])).unwrap().len(), 34);
            assert!(
                !file(1_000_000).exists(),
                "an index without its log is removed"
            );
            assert!(snapshot.exists());
            mgr.shutdown().unwrap();
        }
        let (_mgr, log) = open(dir.path(), small_config());
        assert_eq!(log.collect_aborted_txns(0, i64::MAX).unwrap(), entries[..2]);
    }

    #[test]
    fn an_unclean_load_drops_entries_whose_marker_was_cut_with_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let last_base;
        {
            let (mgr, log) = open(dir.path(), small_config());
            fill(&log, 8);
            last_base = *bases(&log).last().unwrap();
            assert_eq!((last_base, log.log_end_offset()), (12, 16));
            log.append_aborted_txn(txn(1, 2, 12, 2)).unwrap();
            log.append_aborted_txn(txn(2, 3, 15, 3)).unwrap();
            mgr.abandon();
        }
        // The crash tore the last batch (offsets 14-15), which held the second marker.
        let log_file = dir
            .path()
            .join("t-0")
            .join(segment_file_name(last_base, ".log"));
        let len = std::fs::metadata(&log_file).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log_file)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        let (_mgr, log) = open(dir.path(), small_config());
        assert_eq!(log.log_end_offset(), 14);
        assert_eq!(
            log.collect_aborted_txns(0, i64::MAX).unwrap(),
            vec![txn(1, 2, 12, 2)]
        );
    }
}
