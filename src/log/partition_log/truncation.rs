//! Truncation (Kafka's `UnifiedLog.truncateTo` and `truncateFullyAndStartAt`): a follower cuts its log back
//! to where it agrees with the leader, or starts over at the leader's log start offset.
//!
//! Crash order: later segments are deleted before the segment holding the new end is cut, so a crash in
//! between leaves a shorter log, never a gap with old batches after it; the recovery point is lowered
//! first, so an unclean restart rescans what was cut.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::log::checkpoint::{LEADER_EPOCH_CHECKPOINT, sync_dir, write_leader_epoch_checkpoint};
use crate::log::error::LogError;
use crate::log::segment::{LogSegment, delete_segment_files};
use crate::log::{lock, wlock};

use super::{AppendState, PartitionLog, offline};

impl PartitionLog {
    /// Removes every batch at or above `offset` and returns the new log end offset: `offset` when it falls
    /// between batches, the start of the batch holding it otherwise (a batch is never split). At or above
    /// the log end nothing changes. Below the log start it is OFFSET_OUT_OF_RANGE (use
    /// [`PartitionLog::truncate_fully_and_start_at`]). The leader epoch cache, recovery point and high
    /// watermark are lowered to the new end. A failed file operation takes the log offline.
    pub fn truncate_to(&self, offset: i64) -> Result<i64, LogError> {
        // Retention and the cleaner judge segments outside the append lock: none may run meanwhile.
        let _maintenance = self.maintenance_lock();
        let mut st = lock(&self.append_lock);
        self.check_writable()?;
        let leo = self.log_end_offset();
        if offset >= leo {
            return Ok(leo);
        }
        let log_start = self.log_start_offset();
        if offset < log_start {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start,
                log_end: leo,
            });
        }
        // A flush in progress would raise the recovery point back to the old end.
        let _flush = lock(&self.flush_lock);
        self.recovery_point.fetch_min(offset, Ordering::AcqRel);
        let result = self.truncate_locked(&mut st, offset);
        if let Err(e) = &result {
            self.mark_failed(e);
        }
        result
    }

    /// Deletes every segment and starts an empty log at `offset` (a follower too far behind the leader's
    /// log start). The leader epoch cache is emptied; every offset moves to `offset`.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), LogError> {
        let _maintenance = self.maintenance_lock();
        let mut st = lock(&self.append_lock);
        self.check_writable()?;
        if offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset(),
                log_end: self.log_end_offset(),
            });
        }
        let _flush = lock(&self.flush_lock);
        self.recovery_point.store(offset, Ordering::Release);
        let result = self.start_over_locked(&mut st, offset);
        if let Err(e) = &result {
            self.mark_failed(e);
        }
        result
    }

    /// Lowers the high watermark to `to` if above (truncation only: it otherwise only grows) and wakes its
    /// receivers, so parked fetches re-check against the shorter log.
    pub(crate) fn lower_high_watermark(&self, to: i64) {
        let prev = self.high_watermark.fetch_min(to, Ordering::AcqRel);
        if prev > to {
            self.hw_tx.send_modify(|v| *v = (*v).min(to));
        }
    }

    fn check_writable(&self) -> Result<(), LogError> {
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(offline(&self.tp, "log is closed"));
        }
        Ok(())
    }

    fn truncate_locked(&self, st: &mut AppendState, offset: i64) -> Result<i64, LogError> {
        let old_end = self.log_end_offset();
        let segments = self.segments_snapshot();
        // The first segment never starts above the log start, so some segment holds `offset`.
        let at = segments
            .iter()
            .rposition(|s| s.base_offset() <= offset)
            .unwrap_or(0);
        let (kept, dropped) = segments.split_at(at + 1);
        *wlock(&self.segments) = Arc::new(kept.to_vec());
        for seg in dropped.iter().rev() {
            delete_segment_files(&self.dir, seg.base_offset())?;
        }
        let last = &kept[at];
        let new_end = match last.find_batch(offset)? {
            Some(info) => info.base_offset.min(offset).max(last.base_offset()),
            None => offset,
        };
        last.truncate_to(offset)?;
        last.make_active(self.config().max_index_bytes)?;
        last.flush_log()?;
        // Everything that must stay at or below the log end moves down before it does.
        self.recovery_point.fetch_min(new_end, Ordering::AcqRel);
        self.lower_high_watermark(new_end);
        self.log_start_offset.fetch_min(new_end, Ordering::AcqRel);
        self.log_end_offset.store(new_end, Ordering::Release);
        self.debug_check_offsets();
        self.truncate_epochs(st, new_end)?;
        self.reload_producer_state(new_end)?;
        sync_dir(&self.dir)?;
        tracing::info!(partition = %self.tp, from = old_end, to = new_end,
            segments_deleted = dropped.len(), "truncated log");
        Ok(new_end)
    }

    fn start_over_locked(&self, st: &mut AppendState, offset: i64) -> Result<(), LogError> {
        let segments = self.segments_snapshot();
        for seg in segments.iter().rev() {
            delete_segment_files(&self.dir, seg.base_offset())?;
        }
        let fresh = LogSegment::create(&self.dir, offset, self.config().max_index_bytes)?;
        *wlock(&self.segments) = Arc::new(vec![Arc::new(fresh)]);
        self.lower_high_watermark(offset);
        self.log_start_offset.store(offset, Ordering::Release);
        self.log_end_offset.store(offset, Ordering::Release);
        // An empty log: the high watermark may also have to move up to its start.
        self.maybe_increment_high_watermark(offset);
        self.debug_check_offsets();
        self.truncate_epochs(st, i64::MIN)?;
        lock(&self.producer_state).truncate_fully_and_start_at(offset)?;
        self.reload_producer_state(offset)?;
        sync_dir(&self.dir)?;
        tracing::info!(partition = %self.tp, offset, "log emptied and restarted");
        Ok(())
    }

    /// Kafka's `truncateAndReload` after a truncation: snapshots above the new end go and the state is
    /// rebuilt from the newest remaining snapshot and the log up to `log_end`. Under the append lock.
    fn reload_producer_state(&self, log_end: i64) -> Result<(), LogError> {
        let segments = self.segments_snapshot();
        let expiration = self.config().producer_id_expiration_ms;
        super::load::rebuild_producer_state(
            &mut lock(&self.producer_state),
            &segments,
            super::load::ReplayRange {
                log_start: self.log_start_offset(),
                log_end,
                load_at_most: log_end,
                clean_shutdown: false,
                now_ms: self.clock.now_ms(),
                expiration_ms: expiration,
            },
        )
    }

    /// Kafka's `LeaderEpochFileCache.truncateFromStart`, when the log start offset moves up to `start`:
    /// entries starting below it go, but for the last of them, which now starts at `start` (unless an
    /// entry starts exactly there). Every replica thus keeps the same cache over the same log. Under the
    /// append lock. The checkpoint is rewritten without an fsync (as an append's), flushed with the log.
    pub(super) fn truncate_epochs_from_start(
        &self,
        st: &mut AppendState,
        start: i64,
    ) -> Result<(), LogError> {
        let below = st
            .leader_epochs
            .iter()
            .take_while(|(_, o)| *o < start)
            .count();
        if below == 0 {
            return Ok(());
        }
        let rest = &st.leader_epochs[below..];
        let mut epochs = Vec::with_capacity(rest.len() + 1);
        if rest.first().is_none_or(|(_, o)| *o > start) {
            epochs.push((st.leader_epochs[below - 1].0, start));
        }
        epochs.extend_from_slice(rest);
        super::debug_assert_epochs_grow(&epochs);
        write_leader_epoch_checkpoint(&self.dir.join(LEADER_EPOCH_CHECKPOINT), &epochs, false)?;
        st.leader_epochs = epochs;
        self.epochs_dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Drops the leader epoch entries starting at or above `end` and rewrites the checkpoint when any went.
    fn truncate_epochs(&self, st: &mut AppendState, end: i64) -> Result<(), LogError> {
        let keep = st
            .leader_epochs
            .iter()
            .take_while(|(_, o)| *o < end)
            .count();
        if keep == st.leader_epochs.len() {
            return Ok(());
        }
        let epochs = st.leader_epochs[..keep].to_vec();
        super::debug_assert_epochs_grow(&epochs);
        write_leader_epoch_checkpoint(&self.dir.join(LEADER_EPOCH_CHECKPOINT), &epochs, true)?;
        st.leader_epochs = epochs;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use bytes::BytesMut;

    use super::super::tests::small_config;
    use super::*;
    use crate::log::LogManager;
    use crate::log::record_batch::test_support::batch;
    use crate::replica::partition::leader_append;

    fn open(dir: &Path) -> (Arc<LogManager>, Arc<PartitionLog>) {
        super::super::tests::open(dir, small_config())
    }

    /// Appends `batches` batches of 2 records each under `epoch`, ~300 bytes per batch (several segments).
    fn fill(log: &Arc<PartitionLog>, batches: usize, epoch: i32) {
        for i in 0..batches {
            let b = BytesMut::from(&batch(2, 120, i as i64)[..]);
            leader_append(log, b, epoch).unwrap();
        }
    }

    /// (base, last) of every batch readable from the log start up to the log end.
    fn read_all(log: &PartitionLog) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        for seg in log.segments().iter() {
            let mut offset = seg.base_offset();
            while let Some(info) = seg.find_batch(offset).unwrap() {
                out.push((info.base_offset, info.last_offset));
                offset = info.last_offset + 1;
            }
        }
        out
    }

    #[test]
    fn truncate_to_a_batch_boundary_cuts_segments_epochs_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path());
        fill(&log, 6, 1);
        fill(&log, 6, 3);
        log.flush().unwrap();
        assert!(log.segment_count() >= 3);
        assert_eq!(log.leader_epochs(), vec![(1, 0), (3, 12)]);
        assert_eq!((log.high_watermark(), log.recovery_point()), (24, 24));

        assert_eq!(log.truncate_to(10).unwrap(), 10);
        assert_eq!(log.log_end_offset(), 10);
        assert_eq!(log.high_watermark(), 10);
        assert_eq!(log.recovery_point(), 10);
        assert_eq!(log.leader_epochs(), vec![(1, 0)]);
        let bs = read_all(&log);
        assert_eq!(bs.last(), Some(&(8, 9)));
        assert!(log.segments().iter().all(|s| s.base_offset() <= 10));
        let on_disk = super::super::load::list_segment_bases(log.dir()).unwrap();
        let listed: Vec<i64> = log.segments().iter().map(|s| s.base_offset()).collect();
        assert_eq!(on_disk, listed, "deleted segments leave no files");
    }

    #[test]
    fn a_rising_log_start_trims_the_epoch_cache_as_kafka_does() {
        let dir = tempfile::tempdir().unwrap();
        let (mgr, log) = open(dir.path());
        fill(&log, 2, 1); // 0-3
        fill(&log, 2, 3); // 4-7
        fill(&log, 2, 5); // 8-11
        assert_eq!(log.leader_epochs(), vec![(1, 0), (3, 4), (5, 8)]);
        log.delete_records_before(2).unwrap();
        assert_eq!(
            log.leader_epochs(),
            vec![(1, 2), (3, 4), (5, 8)],
            "moved up"
        );
        log.delete_records_before(4).unwrap();
        assert_eq!(
            log.leader_epochs(),
            vec![(3, 4), (5, 8)],
            "an entry starts there"
        );
        log.delete_records_before(9).unwrap();
        assert_eq!(log.leader_epochs(), vec![(5, 9)]);
        // The checkpoint holds it across a restart.
        mgr.shutdown().unwrap();
        drop(log);
        let (mgr, log) = open(dir.path());
        assert_eq!(log.leader_epochs(), vec![(5, 9)]);
        mgr.shutdown().unwrap();
    }

    #[test]
    fn truncate_inside_a_batch_rounds_down_to_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path());
        fill(&log, 4, 0);
        assert_eq!(log.truncate_to(5).unwrap(), 4);
        assert_eq!(log.log_end_offset(), 4);
        assert_eq!(read_all(&log), vec![(0, 1), (2, 3)]);
    }

    #[test]
    fn truncate_at_or_above_the_end_is_a_no_op_and_below_the_start_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path());
        fill(&log, 4, 0);
        assert_eq!(log.truncate_to(8).unwrap(), 8);
        assert_eq!(log.truncate_to(100).unwrap(), 8);
        assert_eq!(read_all(&log).len(), 4);
        log.delete_records_before(4).unwrap();
        assert!(matches!(
            log.truncate_to(3),
            Err(LogError::OffsetOutOfRange { offset: 3, .. })
        ));
        assert_eq!(log.log_end_offset(), 8);
    }

    #[test]
    fn appends_after_truncation_continue_at_the_new_end_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mgr, log) = open(dir.path());
            fill(&log, 10, 1);
            log.truncate_to(6).unwrap();
            fill(&log, 2, 2);
            assert_eq!(log.log_end_offset(), 10);
            assert_eq!(log.leader_epochs(), vec![(1, 0), (2, 6)]);
            mgr.shutdown().unwrap();
        }
        let (_mgr, log) = open(dir.path());
        assert_eq!(log.log_end_offset(), 10);
        assert_eq!(log.leader_epochs(), vec![(1, 0), (2, 6)]);
        let bs = read_all(&log);
        assert_eq!(bs, vec![(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]);
    }

    #[test]
    fn reopen_after_an_unclean_stop_keeps_the_truncated_end() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mgr, log) = open(dir.path());
            fill(&log, 10, 1);
            fill(&log, 2, 4);
            log.flush().unwrap();
            mgr.checkpoint().unwrap();
            log.truncate_to(8).unwrap();
            mgr.abandon();
        }
        let (_mgr, log) = open(dir.path());
        assert_eq!(log.log_end_offset(), 8);
        assert_eq!(log.leader_epochs(), vec![(1, 0)]);
    }

    #[test]
    fn truncation_lowers_the_high_watermark_for_its_receivers() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path());
        fill(&log, 3, 0);
        let rx = log.subscribe_high_watermark();
        log.truncate_to(2).unwrap();
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow(), 2);
    }

    #[test]
    fn truncate_fully_and_start_at_leaves_an_empty_log_there() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mgr, log) = open(dir.path());
            fill(&log, 8, 2);
            log.truncate_fully_and_start_at(100).unwrap();
            assert_eq!(log.segment_count(), 1);
            assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
            assert_eq!(log.high_watermark(), 100);
            assert!(log.leader_epochs().is_empty());
            assert!(read_all(&log).is_empty());
            fill(&log, 1, 3);
            assert_eq!(log.leader_epochs(), vec![(3, 100)]);
            mgr.shutdown().unwrap();
        }
        let (_mgr, log) = open(dir.path());
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 102));
        assert_eq!(read_all(&log), vec![(100, 101)]);
    }

    #[test]
    fn a_reader_of_a_cut_segment_gets_data_or_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path());
        fill(&log, 3, 0);
        let snapshot = log.segments();
        let seg = snapshot.last().unwrap().clone();
        let info = seg.find_batch(4).unwrap().unwrap();
        log.truncate_to(2).unwrap();
        assert!(seg.read_records(info.position, info.size).is_err());
    }

    #[test]
    fn readers_racing_truncation_and_reappends_get_whole_batches_or_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path());
        fill(&log, 8, 0);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u32;
                while !stop.load(Ordering::Acquire) {
                    if let Ok(data) = log.read(0, 1 << 20, true, i64::MAX) {
                        let records = &data.records[..];
                        if !records.is_empty() {
                            crate::log::record_batch::validate_batches(records, u32::MAX)
                                .expect("a read returns whole batches");
                        }
                    }
                    reads += 1;
                }
                reads
            })
        };
        for round in 0..50 {
            log.truncate_to(2 * (round % 4)).unwrap();
            fill(&log, 4, 0);
        }
        stop.store(true, Ordering::Release);
        assert!(reader.join().expect("the reader must not panic") > 0);
    }
}
