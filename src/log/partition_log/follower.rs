//! A follower's append (Kafka's `UnifiedLog.appendAsFollower`): the batches a leader's Fetch response
//! returned go into the log as the leader wrote them. Offsets, partition leader epochs, timestamps and
//! CRCs are kept, so every replica holds the same bytes; the leader validated the records, so nothing is
//! rewritten or refused for its content. What the follower checks is that the bytes are whole batches
//! (magic 2, framing, CRC) that continue its log, and it records what the leader recorded: the leader
//! epoch cache, the producer state and the aborted transactions.
//!
//! Offsets may have gaps (a compacted leader log has them: the cleaner removes whole batches), as Kafka
//! allows; what is refused is a batch starting below the log end (an overlap) or offsets that do not grow.

use std::sync::atomic::Ordering;

use bytes::BytesMut;

use crate::log::checkpoint::{LEADER_EPOCH_CHECKPOINT, write_leader_epoch_checkpoint};
use crate::log::error::LogError;
use crate::log::lock;
use crate::log::record_batch::{CRC_START, RecordBatchHeader, check_header};

use super::{AppendInfo, MAX_SEGMENT_BYTES, PartitionLog, debug_assert_epochs_grow, offline};

/// What [`whole_batches`] found at the start of a fetched record set.
#[derive(Debug, Default)]
struct FetchedBatches {
    /// Bytes of the whole batches; an incomplete batch after them is dropped.
    len: usize,
    first_offset: i64,
    last_offset: i64,
    record_count: u64,
    max_timestamp: i64,
    has_producer_id: bool,
}

/// Checks the whole batches at the start of `records` (magic 2, framing, CRC-32C, offsets growing from one
/// batch to the next) and stops at an incomplete last batch, which a fetch's size limit may cut. A bad
/// batch refuses the whole set: the leader sent something it does not hold, or the bytes were damaged.
fn whole_batches(records: &[u8]) -> Result<FetchedBatches, LogError> {
    let mut found = FetchedBatches {
        max_timestamp: -1,
        ..FetchedBatches::default()
    };
    let mut pos = 0usize;
    while pos < records.len() {
        let rest = &records[pos..];
        let Ok(h) = RecordBatchHeader::parse(rest) else {
            break; // not even a header: a cut tail
        };
        let size = check_header(&h)
            .map_err(|e| LogError::CorruptMessage(format!("fetched batch at byte {pos}: {e}")))?;
        if size > rest.len() {
            break; // a cut tail
        }
        let crc = crc32c::crc32c(&rest[CRC_START..size]);
        if crc != h.crc() {
            return Err(LogError::CorruptMessage(format!(
                "fetched batch at offset {}: CRC mismatch (stored {:#010x}, computed {crc:#010x})",
                h.base_offset(),
                h.crc()
            )));
        }
        if found.len > 0 && h.base_offset() <= found.last_offset {
            return Err(LogError::UnexpectedAppendOffset(format!(
                "fetched batch at offset {} follows one ending at {}: offsets must grow",
                h.base_offset(),
                found.last_offset
            )));
        }
        if found.len == 0 {
            found.first_offset = h.base_offset();
        }
        found.last_offset = h.last_offset();
        // A cleaned batch may hold fewer records than its offset range, or none.
        found.record_count += u64::try_from(h.record_count()).unwrap_or(0);
        found.max_timestamp = found.max_timestamp.max(h.max_timestamp());
        found.has_producer_id |= h.producer_id() >= 0;
        pos += size;
        found.len = pos;
    }
    Ok(found)
}

/// The size of the batch at the start of `records` (validated by [`whole_batches`]).
fn batch_size(records: &[u8]) -> usize {
    let h = RecordBatchHeader::parse(records).expect("invariant: validated batches");
    h.total_size().expect("invariant: validated batches")
}

/// (base offset, last offset) of the batches in `records` (validated, non-empty).
fn offset_range(records: &[u8]) -> (i64, i64) {
    let first = RecordBatchHeader::parse(records)
        .expect("invariant: validated batches")
        .base_offset();
    let mut pos = 0usize;
    let mut last = first;
    while pos < records.len() {
        let h = RecordBatchHeader::parse(&records[pos..]).expect("invariant: validated batches");
        last = h.last_offset();
        pos += h.total_size().expect("invariant: validated batches");
    }
    (first, last)
}

impl PartitionLog {
    /// Appends what a leader's Fetch returned, as the leader wrote it (see the module doc). An incomplete
    /// batch at the end is ignored; an empty set appends nothing. The first batch must start at or above
    /// the log end offset and offsets must grow, else `UnexpectedAppendOffset` and nothing is written.
    /// The leader epoch cache gains each newer epoch at its first batch, the producer state and the
    /// transaction index follow the batches, segments roll and the flush policy applies as on the leader.
    /// The high watermark does not move: the follower learns it from the leader.
    pub fn append_as_follower(&self, records: BytesMut) -> Result<AppendInfo, LogError> {
        let config = self.config();
        let fetched = whole_batches(&records)?;
        let records = &records[..fetched.len];
        let mut st = lock(&self.append_lock);
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(offline(&self.tp, "log is closed"));
        }
        let log_end = self.log_end_offset();
        if records.is_empty() {
            return Ok(AppendInfo {
                base_offset: log_end,
                last_offset: log_end - 1,
                log_append_time: -1,
                max_timestamp: -1,
                log_start_offset: self.log_start_offset(),
                ..AppendInfo::default()
            });
        }
        if fetched.first_offset < log_end {
            return Err(LogError::UnexpectedAppendOffset(format!(
                "{}: fetched batches start at offset {}, below the log end offset {log_end}",
                self.tp, fetched.first_offset
            )));
        }

        // The leader epoch cache first, as Kafka does: each epoch newer than the cache's latest starts at
        // its first batch. A write refused below leaves entries above the log end, which the retried
        // append finds in place (and a load drops).
        let mut epochs = st.leader_epochs.clone();
        let mut pos = 0usize;
        while pos < records.len() {
            let h =
                RecordBatchHeader::parse(&records[pos..]).expect("invariant: validated batches");
            let epoch = h.partition_leader_epoch();
            if epoch >= 0 && epochs.last().is_none_or(|(e, _)| epoch > *e) {
                epochs.push((epoch, h.base_offset()));
            }
            pos += batch_size(&records[pos..]);
        }
        if epochs.len() != st.leader_epochs.len() {
            debug_assert_epochs_grow(&epochs);
            write_leader_epoch_checkpoint(&self.dir.join(LEADER_EPOCH_CHECKPOINT), &epochs, false)?;
            st.leader_epochs = epochs;
            self.epochs_dirty.store(true, Ordering::Release);
        }

        // Written in runs that fit the active segment, so segments roll where the leader's would.
        let mut completed_txns = Vec::new();
        let mut rolled = false;
        let mut pos = 0usize;
        while pos < records.len() {
            let end = self.run_end(records, pos, &config);
            let run = &records[pos..end];
            let (base_offset, last_offset) = offset_range(run);
            let producer_append = if fetched.has_producer_id {
                Some(lock(&self.producer_state).analyze_replicated(run)?)
            } else {
                None
            };
            match self.write_locked(&mut st, &config, run, base_offset, last_offset, -1) {
                Ok(r) => rolled |= r,
                Err(e) if e.is_disk_full() => {
                    if !self.disk_full.swap(true, Ordering::AcqRel) {
                        tracing::warn!(partition = %self.tp, error = %e, offset = base_offset,
                            "follower appends refused: disk full");
                    }
                    // The runs before this one are in the log and count.
                    drop(st);
                    if rolled {
                        self.request_flush();
                    }
                    return Err(e);
                }
                Err(e) => {
                    self.mark_failed(&e);
                    return Err(e);
                }
            }
            if let Some(pending) = producer_append {
                completed_txns.extend(self.complete_producer_append(pending, last_offset + 1)?);
            }
            self.log_end_offset
                .store(last_offset + 1, Ordering::Release);
            self.debug_check_offsets();
            pos = end;
        }
        if self.disk_full.swap(false, Ordering::AcqRel) {
            tracing::info!(partition = %self.tp, "follower appends resumed: disk space available");
        }
        let next = fetched.last_offset + 1;
        let unflushed = u64::try_from(next - self.recovery_point()).unwrap_or(0);
        let flush_due = unflushed >= config.flush_interval_messages;
        drop(st);
        if flush_due || rolled {
            self.request_flush();
        }
        Ok(AppendInfo {
            base_offset: fetched.first_offset,
            last_offset: fetched.last_offset,
            record_count: u32::try_from(fetched.record_count).unwrap_or(u32::MAX),
            max_timestamp: fetched.max_timestamp,
            log_append_time: -1,
            log_start_offset: self.log_start_offset(),
            duplicate: false,
            completed_txns,
        })
    }

    /// The end of the run of batches from `pos` that goes into one segment: as many as fit the active
    /// segment's room (at least one) with offsets a segment can index; when the first does not fit, the
    /// write rolls and a new segment's room applies. Under the append lock.
    fn run_end(&self, records: &[u8], pos: usize, config: &crate::log::LogConfig) -> usize {
        let max =
            usize::try_from(config.segment_bytes.min(MAX_SEGMENT_BYTES)).unwrap_or(usize::MAX);
        let active = self
            .segments_snapshot()
            .last()
            .expect("invariant: a loaded log has a segment")
            .size();
        let active = usize::try_from(active).unwrap_or(usize::MAX);
        let first = batch_size(&records[pos..]);
        let room = if active == 0 || active.saturating_add(first) <= max {
            max.saturating_sub(active)
        } else {
            max // the write rolls first
        };
        let run_base = RecordBatchHeader::parse(&records[pos..])
            .expect("invariant: validated batches")
            .base_offset();
        let mut taken = first;
        let mut end = pos + first;
        while end < records.len() {
            let h =
                RecordBatchHeader::parse(&records[end..]).expect("invariant: validated batches");
            let size = batch_size(&records[end..]);
            // A compacted leader log may have offset gaps wider than a segment's relative offsets: such a
            // batch starts a run of its own, for which the write rolls.
            if taken + size > room || h.last_offset() - run_base > i64::from(u32::MAX) {
                break;
            }
            taken += size;
            end += size;
        }
        end
    }

    /// The newest epoch of the leader epoch cache (the `last_fetched_epoch` a follower sends), if any.
    pub fn latest_leader_epoch(&self) -> Option<i32> {
        lock(&self.append_lock)
            .leader_epochs
            .last()
            .map(|(e, _)| *e)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use bytes::BytesMut;

    use super::super::tests::{open, small_config};
    use super::*;
    use crate::log::batch_builder::{BatchBuilder, end_transaction_marker};
    use crate::log::record_batch::set_base_offset;
    use crate::log::record_batch::test_support::batch;
    use crate::log::{AppendOrigin, LogConfig, LogManager};

    /// Every batch of `log`, in order, as stored.
    fn all_batches(log: &PartitionLog) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let data = log
                .read(offset, 1 << 20, true, log.log_end_offset())
                .unwrap();
            let bytes = data.records;
            let mut pos = 0;
            while pos < bytes.len() {
                let size = batch_size(&bytes[pos..]);
                out.push(bytes[pos..pos + size].to_vec());
                offset = RecordBatchHeader::parse(&bytes[pos..])
                    .unwrap()
                    .next_offset();
                pos += size;
            }
            if bytes.is_empty() {
                break;
            }
        }
        out
    }

    /// What a Fetch of the leader from `offset` returns: every batch from there, concatenated.
    fn fetched(leader: &PartitionLog, offset: i64) -> BytesMut {
        let mut out = BytesMut::new();
        for b in all_batches(leader) {
            if RecordBatchHeader::parse(&b).unwrap().base_offset() >= offset {
                out.extend_from_slice(&b);
            }
        }
        out
    }

    fn second(dir: &Path, config: LogConfig) -> (Arc<LogManager>, Arc<PartitionLog>) {
        open(&dir.join("follower"), config)
    }

    fn txn_batch(pid: i64, seq: i32, n: usize) -> BytesMut {
        let mut b = BatchBuilder::new()
            .producer(pid, 0, seq)
            .transactional(true);
        for _ in 0..n {
            b.append(1, None, Some(b"t"), &[]).unwrap();
        }
        b.build().unwrap()
    }

    #[test]
    fn follower_log_is_byte_identical_to_the_leaders() {
        let dir = tempfile::tempdir().unwrap();
        let (lm, leader) = open(&dir.path().join("leader"), small_config());
        for (i, epoch) in [0, 0, 0, 3, 3, 7, 7, 7, 7, 7].into_iter().enumerate() {
            leader
                .append(
                    BytesMut::from(&batch(i % 3 + 1, 200, 1000 + i as i64)[..]),
                    epoch,
                    AppendOrigin::Client,
                )
                .unwrap();
        }
        let mut idem = BatchBuilder::new().producer(9, 0, 0);
        idem.append(5, None, Some(b"i"), &[]).unwrap();
        leader
            .append(idem.build().unwrap(), 7, AppendOrigin::Client)
            .unwrap();
        assert!(leader.segment_count() > 1, "the test crosses segment rolls");
        let (fm, follower) = second(dir.path(), small_config());
        // Two fetches, the first cut mid-batch by a size limit.
        let all = fetched(&leader, 0);
        let cut = all.len() / 2;
        let first = follower
            .append_as_follower(BytesMut::from(&all[..cut]))
            .unwrap();
        assert_eq!(first.base_offset, 0);
        let rest = fetched(&leader, follower.log_end_offset());
        follower.append_as_follower(rest).unwrap();

        assert_eq!(all_batches(&follower), all_batches(&leader));
        assert_eq!(follower.log_end_offset(), leader.log_end_offset());
        assert_eq!(follower.leader_epochs(), leader.leader_epochs());
        assert_eq!(follower.latest_leader_epoch(), Some(7));
        assert_eq!(follower.active_producers(), leader.active_producers());
        assert_eq!(
            follower.high_watermark(),
            0,
            "a follower's append leaves the high watermark"
        );
        assert!(follower.segment_count() > 1, "the follower rolls too");
        fm.shutdown().unwrap();
        lm.shutdown().unwrap();
    }

    #[test]
    fn transactions_and_aborts_reproduce_the_lso_and_aborted_list() {
        let dir = tempfile::tempdir().unwrap();
        let (lm, leader) = open(&dir.path().join("leader"), small_config());
        let data = |log: &PartitionLog, r: BytesMut, origin| log.append(r, 2, origin).unwrap();
        data(&leader, txn_batch(1, 0, 2), AppendOrigin::Client); // 0-1, aborted below
        data(&leader, txn_batch(2, 0, 1), AppendOrigin::Client); // 2, committed below
        data(
            &leader,
            BytesMut::from(&batch(1, 10, 1)[..]),
            AppendOrigin::Client,
        ); // 3
        data(
            &leader,
            end_transaction_marker(1, 0, false, 0, 5).unwrap(),
            AppendOrigin::Coordinator,
        ); // 4
        data(
            &leader,
            end_transaction_marker(2, 0, true, 0, 5).unwrap(),
            AppendOrigin::Coordinator,
        ); // 5
        data(&leader, txn_batch(1, 2, 1), AppendOrigin::Client); // 6, still open
        let (fm, follower) = second(dir.path(), small_config());
        let info = follower.append_as_follower(fetched(&leader, 0)).unwrap();
        assert_eq!(info.completed_txns.len(), 2);
        let end = leader.log_end_offset();
        for hw in [3, 5, end] {
            assert_eq!(
                follower.first_unstable_offset(hw),
                leader.first_unstable_offset(hw),
                "first unstable offset at high watermark {hw}"
            );
        }
        assert_eq!(
            follower.collect_aborted_txns(0, end).unwrap(),
            leader.collect_aborted_txns(0, end).unwrap()
        );
        assert_eq!(follower.collect_aborted_txns(0, end).unwrap().len(), 1);
        assert!(follower.has_ongoing_txn(1));
        assert!(!follower.has_ongoing_txn(2));
        fm.shutdown().unwrap();
        lm.shutdown().unwrap();
    }

    #[test]
    fn overlap_and_offsets_that_do_not_grow_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (lm, leader) = open(&dir.path().join("leader"), small_config());
        for _ in 0..3 {
            leader
                .append(
                    BytesMut::from(&batch(2, 10, 1)[..]),
                    0,
                    AppendOrigin::Client,
                )
                .unwrap();
        }
        let (fm, follower) = second(dir.path(), small_config());
        follower.append_as_follower(fetched(&leader, 0)).unwrap();
        assert_eq!(follower.log_end_offset(), 6);
        // The same batches again: they start below the log end.
        let again = follower
            .append_as_follower(fetched(&leader, 0))
            .unwrap_err();
        assert!(
            matches!(again, LogError::UnexpectedAppendOffset(_)),
            "{again}"
        );
        // Two batches at one offset.
        let mut a = batch(1, 10, 1);
        set_base_offset(&mut a, 6);
        let mut twice = BytesMut::from(&a[..]);
        twice.extend_from_slice(&a);
        let twice = follower.append_as_follower(twice).unwrap_err();
        assert!(
            matches!(twice, LogError::UnexpectedAppendOffset(_)),
            "{twice}"
        );
        // A damaged batch.
        let mut bad = a.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let bad = follower
            .append_as_follower(BytesMut::from(&bad[..]))
            .unwrap_err();
        assert!(matches!(bad, LogError::CorruptMessage(_)), "{bad}");
        assert_eq!(follower.log_end_offset(), 6, "nothing written");
        assert_eq!(all_batches(&follower), all_batches(&leader));
        // A gap, as a compacted leader log has: accepted (Kafka's rule), offsets kept.
        let mut later = batch(1, 10, 1);
        set_base_offset(&mut later, 9);
        let info = follower
            .append_as_follower(BytesMut::from(&later[..]))
            .unwrap();
        assert_eq!((info.base_offset, info.last_offset), (9, 9));
        assert_eq!(follower.log_end_offset(), 10);
        fm.shutdown().unwrap();
        lm.shutdown().unwrap();
    }

    #[test]
    fn an_incomplete_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (fm, follower) = second(dir.path(), small_config());
        let whole = batch(3, 10, 1);
        let only_tail = follower
            .append_as_follower(BytesMut::from(&whole[..20]))
            .unwrap();
        assert_eq!(only_tail.record_count, 0);
        assert_eq!(follower.log_end_offset(), 0);
        let mut next = batch(2, 10, 1);
        set_base_offset(&mut next, 3);
        let mut set = BytesMut::from(&whole[..]);
        set.extend_from_slice(&next[..next.len() - 1]);
        let info = follower.append_as_follower(set).unwrap();
        assert_eq!(
            (info.base_offset, info.last_offset, info.record_count),
            (0, 2, 3)
        );
        assert_eq!(follower.log_end_offset(), 3);
        fm.shutdown().unwrap();
    }

    #[test]
    fn a_follower_log_recovers_after_a_crash_and_after_a_clean_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (lm, leader) = open(&dir.path().join("leader"), small_config());
        for epoch in [1, 1, 4, 4, 4, 6] {
            leader
                .append(
                    BytesMut::from(&batch(2, 300, 1)[..]),
                    epoch,
                    AppendOrigin::Client,
                )
                .unwrap();
        }
        leader
            .append(txn_batch(5, 0, 1), 6, AppendOrigin::Client)
            .unwrap();
        let expected = all_batches(&leader);
        for clean in [false, true] {
            let fdir = dir.path().join(format!("follower-{clean}"));
            let (fm, follower) = open(&fdir, small_config());
            follower.append_as_follower(fetched(&leader, 0)).unwrap();
            if clean {
                fm.shutdown().unwrap();
            } else {
                fm.abandon(); // a crash: nothing flushed, no clean-shutdown marker
            }
            drop(follower);
            let (fm, follower) = open(&fdir, small_config());
            assert_eq!(all_batches(&follower), expected, "clean restart: {clean}");
            assert_eq!(follower.leader_epochs(), leader.leader_epochs());
            assert_eq!(follower.active_producers(), leader.active_producers());
            assert!(follower.has_ongoing_txn(5));
            fm.shutdown().unwrap();
        }
        lm.shutdown().unwrap();
    }
}
