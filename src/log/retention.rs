//! Retention: deletes whole segments of a partition by time (`retention.ms`), by size (`retention.bytes`)
//! and below the log start offset (DeleteRecords), as Kafka's `UnifiedLog.deleteOldSegments` decides.
//!
//! Runs on the LogManager's retention thread, never on the async workers. A deleted segment is first dropped
//! from the partition's segment list (readers holding the old snapshot keep reading their open files), then
//! its files are renamed `*.deleted` and removed `file.delete.delay.ms` later; leftovers of a crash are
//! removed when the partition loads.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::log::error::LogError;
use crate::log::partition_log::PartitionLog;
use crate::log::segment::{LogSegment, SEGMENT_FILE_SUFFIXES, segment_file_name};

/// Suffix of segment files waiting for their delayed removal.
pub const DELETED_FILE_SUFFIX: &str = ".deleted";
/// Files waiting for delayed removal; past this many they are removed at once (bounded memory).
const MAX_PENDING_FILES: usize = 100_000;

/// Why segments were deleted, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    RetentionTime,
    RetentionSize,
    LogStartOffset,
}

/// Files renamed `.deleted`, removed once their time comes.
#[derive(Debug, Default)]
pub struct PendingDeletes {
    queue: VecDeque<(Instant, PathBuf)>,
}

impl PendingDeletes {
    fn push(&mut self, due: Instant, path: PathBuf) {
        if self.queue.len() >= MAX_PENDING_FILES {
            remove_quietly(&path);
            return;
        }
        self.queue.push_back((due, path));
    }

    /// Removes every file that is due; returns when the next one is.
    pub fn remove_due(&mut self, now: Instant) -> Option<Instant> {
        // Due times are pushed in increasing order per delay; a shorter delay configured later can be
        // behind a longer one, which only postpones it to the next pass.
        while let Some((due, _)) = self.queue.front() {
            if *due > now {
                break;
            }
            if let Some((_, path)) = self.queue.pop_front() {
                remove_quietly(&path);
            }
        }
        self.queue.front().map(|(due, _)| *due)
    }

    /// Removes everything now (shutdown).
    pub fn remove_all(&mut self) {
        for (_, path) in self.queue.drain(..) {
            remove_quietly(&path);
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

fn remove_quietly(path: &Path) {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove deleted segment file")
        }
        _ => {}
    }
}

/// The segment's newest timestamp for time retention: its largest record timestamp, or the file's
/// modification time when it has none (Kafka's `largestTimestamp`).
fn largest_timestamp(seg: &LogSegment) -> i64 {
    let ts = seg.max_timestamp();
    if ts >= 0 {
        return ts;
    }
    fs::metadata(seg.log_path())
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How many of the oldest segments `predicate(segment, next_base_offset)` allows to delete: a prefix, each
/// wholly below the high watermark, and never an empty active segment (Kafka's `deletableSegments`).
fn deletable_prefix(
    log: &PartitionLog,
    segments: &[Arc<LogSegment>],
    mut predicate: impl FnMut(&LogSegment, Option<i64>) -> bool,
) -> usize {
    let hw = log.high_watermark();
    let mut n = 0;
    for (i, seg) in segments.iter().enumerate() {
        let next_base = segments.get(i + 1).map(|s| s.base_offset());
        let upper = next_base.unwrap_or_else(|| log.log_end_offset());
        let last_and_empty = next_base.is_none() && seg.size() == 0;
        if hw < upper || last_and_empty || !predicate(seg, next_base) {
            break;
        }
        n += 1;
    }
    n
}

/// One retention pass over a partition: deletes what has expired and queues the files for removal. Returns
/// how many segments were deleted.
pub fn delete_old_segments(
    log: &PartitionLog,
    pending: &mut PendingDeletes,
    now_ms: i64,
) -> Result<usize, LogError> {
    if log.is_closed() {
        return Ok(0);
    }
    // Being cleaned: try again at the next check rather than hold up every other partition.
    let Some(_maintenance) = log.try_maintenance_lock() else {
        return Ok(0);
    };
    let config = log.config();
    let mut total = 0;
    if config.cleanup_policy.delete {
        if config.retention_ms >= 0 {
            let retention = config.retention_ms;
            total += delete_segments(log, pending, DeleteReason::RetentionTime, |seg, _| {
                now_ms.saturating_sub(largest_timestamp(seg)) > retention
            })?;
        }
        if config.retention_bytes >= 0 {
            let size: u64 = log.segments().iter().map(|s| s.size()).sum();
            let mut excess = i64::try_from(size).unwrap_or(i64::MAX) - config.retention_bytes;
            total += delete_segments(log, pending, DeleteReason::RetentionSize, |seg, _| {
                let seg_size = i64::try_from(seg.size()).unwrap_or(i64::MAX);
                if excess - seg_size >= 0 {
                    excess -= seg_size;
                    true
                } else {
                    false
                }
            })?;
        }
    }
    let log_start = log.log_start_offset();
    total += delete_segments(log, pending, DeleteReason::LogStartOffset, |_, next| {
        next.is_some_and(|n| n <= log_start)
    })?;
    Ok(total)
}

fn delete_segments(
    log: &PartitionLog,
    pending: &mut PendingDeletes,
    reason: DeleteReason,
    predicate: impl FnMut(&LogSegment, Option<i64>) -> bool,
) -> Result<usize, LogError> {
    let segments = log.segments();
    let mut n = deletable_prefix(log, &segments, predicate);
    if n > 0 && n == segments.len() {
        // Every segment expired, the active one included: roll so it can go too, unless an append changed
        // it since it was judged.
        let active = &segments[n - 1];
        if !log.roll_for_retention(active.base_offset(), active.size())? {
            n -= 1;
        }
    }
    if n == 0 {
        return Ok(0);
    }
    let removed = log.remove_oldest_segments(n);
    let delay =
        Duration::from_millis(u64::try_from(log.config().file_delete_delay_ms).unwrap_or(0));
    for seg in &removed {
        schedule_segment_deletion(log.dir(), seg.base_offset(), delay, pending);
    }
    if !removed.is_empty() {
        tracing::info!(partition = %log.topic_partition(), segments = removed.len(), ?reason,
            log_start_offset = log.log_start_offset(), "deleted segments");
    }
    Ok(removed.len())
}

/// Renames a segment's files `*.deleted` and queues their removal after `delay` (zero: removed at once).
pub fn schedule_segment_deletion(
    dir: &Path,
    base_offset: i64,
    delay: Duration,
    pending: &mut PendingDeletes,
) {
    let due = Instant::now() + delay;
    for suffix in SEGMENT_FILE_SUFFIXES {
        let live = dir.join(segment_file_name(base_offset, suffix));
        let doomed = dir.join(format!(
            "{}{DELETED_FILE_SUFFIX}",
            segment_file_name(base_offset, suffix)
        ));
        match fs::rename(&live, &doomed) {
            Ok(()) if delay.is_zero() => remove_quietly(&doomed),
            Ok(()) => pending.push(due, doomed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %live.display(), error = %e, "could not rename deleted segment file")
            }
        }
    }
}

/// Wakes and stops the background threads (retention, cleaner) without polling.
#[derive(Debug, Default)]
pub struct BackgroundSignal {
    state: std::sync::Mutex<SignalState>,
    cv: std::sync::Condvar,
}

/// Why [`BackgroundSignal::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    Stop,
    Woken,
    Timeout,
}

#[derive(Debug, Default)]
struct SignalState {
    stop: bool,
    wake_retention: bool,
}

impl BackgroundSignal {
    pub fn stop(&self) {
        crate::log::lock(&self.state).stop = true;
        self.cv.notify_all();
    }
    /// Asks for a retention pass now (DeleteRecords moved a log start offset).
    pub fn wake_retention(&self) {
        crate::log::lock(&self.state).wake_retention = true;
        self.cv.notify_all();
    }
    /// Sleeps up to `timeout`, until stopped, or (with `retention`) until woken for a retention pass.
    pub fn wait(&self, timeout: Duration, retention: bool) -> Wake {
        let deadline = Instant::now() + timeout;
        let mut st = crate::log::lock(&self.state);
        loop {
            if st.stop {
                return Wake::Stop;
            }
            if retention && st.wake_retention {
                st.wake_retention = false;
                return Wake::Woken;
            }
            let now = Instant::now();
            if now >= deadline {
                return Wake::Timeout;
            }
            st = self
                .cv
                .wait_timeout(st, deadline - now)
                .map_or_else(|e| e.into_inner().0, |(g, _)| g);
        }
    }
    pub fn stopped(&self) -> bool {
        crate::log::lock(&self.state).stop
    }
}

/// The retention thread: every `log.retention.check.interval.ms` (or when woken), deletes expired segments
/// of every loaded partition, writes the log start offset checkpoint when anything moved, and removes
/// `.deleted` files whose delay has passed.
pub fn retention_loop(
    manager: std::sync::Weak<crate::log::LogManager>,
    signal: Arc<BackgroundSignal>,
    interval: Duration,
) {
    let mut pending = PendingDeletes::default();
    let mut next_check = Instant::now() + interval;
    loop {
        let now = Instant::now();
        let wake_at = pending
            .remove_due(now)
            .map_or(next_check, |f| f.min(next_check));
        let woken = match signal.wait(wake_at.saturating_duration_since(now), true) {
            Wake::Stop => break,
            Wake::Woken => true,
            Wake::Timeout => false,
        };
        if !woken && Instant::now() < next_check {
            continue; // only files were due
        }
        next_check = Instant::now() + interval;
        let Some(manager) = manager.upgrade() else {
            break;
        };
        let now_ms = manager.clock().now_ms();
        let mut changed = woken;
        for log in manager.logs() {
            match delete_old_segments(&log, &mut pending, now_ms) {
                Ok(n) => changed |= n > 0,
                Err(e) => {
                    tracing::error!(partition = %log.topic_partition(), error = %e, "retention failed")
                }
            }
        }
        if changed && let Err(e) = manager.checkpoint() {
            tracing::warn!(error = %e, "could not write log checkpoints after retention");
        }
    }
    pending.remove_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record_batch::test_support::batch;
    use crate::log::{LogConfig, LogManager, TopicPartition};
    use crate::replica::partition::leader_append;
    use bytes::BytesMut;

    fn config(extra: impl FnOnce(&mut LogConfig)) -> LogConfig {
        let mut c = LogConfig {
            segment_bytes: 400,
            file_delete_delay_ms: 0,
            ..LogConfig::default()
        };
        extra(&mut c);
        c
    }

    fn fill(log: &Arc<PartitionLog>, batches: usize, ts: i64) {
        for _ in 0..batches {
            leader_append(log, BytesMut::from(&batch(1, 100, ts)[..]), 0).unwrap();
        }
    }

    fn log_files(dir: &Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".log")
            })
            .count()
    }

    #[test]
    fn time_retention_deletes_expired_segments_and_rolls_an_expired_active_one() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(|c| c.retention_ms = 1000);
        let mgr = LogManager::open(dir.path(), c.clone()).unwrap();
        let log = mgr.get_or_create(&TopicPartition::new("t", 0), c).unwrap();
        fill(&log, 10, 1_000);
        let before = log.segment_count();
        assert!(before > 2);
        let mut pending = PendingDeletes::default();
        // Nothing expired yet at t=1500.
        assert_eq!(delete_old_segments(&log, &mut pending, 1_500).unwrap(), 0);
        let n = delete_old_segments(&log, &mut pending, 10_000).unwrap();
        assert_eq!(n, before, "every segment expired, the active one included");
        assert_eq!(log.segment_count(), 1, "a fresh active segment remains");
        assert_eq!(log.log_start_offset(), 10);
        assert_eq!(log_files(log.dir()), 1);
        assert!(matches!(
            log.read(0, 1000, true, log.high_watermark()),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        fill(&log, 1, 20_000);
        assert_eq!(
            log.read(10, 1000, true, log.high_watermark())
                .unwrap()
                .records
                .len(),
            batch(1, 100, 0).len()
        );
    }

    #[test]
    fn deleted_segments_take_their_transaction_index_with_them() {
        use crate::log::segment::TXN_INDEX_FILE_SUFFIX;
        use crate::log::txn_index::AbortedTxn;
        let dir = tempfile::tempdir().unwrap();
        let c = config(|c| {
            c.retention_ms = -1;
            c.file_delete_delay_ms = 60_000;
        });
        let mgr = LogManager::open(dir.path(), c.clone()).unwrap();
        let log = mgr.get_or_create(&TopicPartition::new("t", 0), c).unwrap();
        fill(&log, 10, 1_000);
        let second = log.segments()[1].base_offset();
        let txn = |last: i64| AbortedTxn {
            producer_id: 1,
            first_offset: 0,
            last_offset: last,
            last_stable_offset: 0,
        };
        log.append_aborted_txn(txn(0)).unwrap();
        log.append_aborted_txn(txn(second)).unwrap();
        let file = |suffix: &str| {
            log.dir().join(format!(
                "{}{suffix}",
                segment_file_name(0, TXN_INDEX_FILE_SUFFIX)
            ))
        };
        log.delete_records_before(second).unwrap();
        let mut pending = PendingDeletes::default();
        assert_eq!(delete_old_segments(&log, &mut pending, 2_000).unwrap(), 1);
        assert!(!file("").exists());
        assert!(
            file(DELETED_FILE_SUFFIX).exists(),
            "renamed with the log for the delay"
        );
        pending.remove_all();
        assert!(!file(DELETED_FILE_SUFFIX).exists());
        assert_eq!(
            log.collect_aborted_txns(0, i64::MAX).unwrap(),
            vec![txn(second)]
        );
    }

    #[test]
    fn size_retention_keeps_the_newest_segments_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(|c| c.retention_bytes = 700);
        let mgr = LogManager::open(dir.path(), c.clone()).unwrap();
        let log = mgr.get_or_create(&TopicPartition::new("t", 0), c).unwrap();
        fill(&log, 20, 1_000);
        let mut pending = PendingDeletes::default();
        let n = delete_old_segments(&log, &mut pending, 2_000).unwrap();
        assert!(n > 0);
        let size: u64 = log.segments().iter().map(|s| s.size()).sum();
        assert!(
            size < 700 + 400,
            "less than one segment over the limit: {size} bytes left"
        );
        assert!(log.log_start_offset() > 0);
        assert_eq!(log.log_end_offset(), 20);
    }

    #[test]
    fn delete_records_moves_the_start_and_retention_removes_segments_below_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(|c| {
            c.retention_ms = -1;
            c.file_delete_delay_ms = 60_000;
        });
        let mgr = LogManager::open(dir.path(), c.clone()).unwrap();
        let log = mgr.get_or_create(&TopicPartition::new("t", 0), c).unwrap();
        fill(&log, 10, 1_000);
        assert!(matches!(
            log.delete_records_before(11),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(matches!(
            log.delete_records_before(-2),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(log.delete_records_before(7).unwrap(), 7);
        assert_eq!(log.delete_records_before(3).unwrap(), 7, "never moves back");
        let mut pending = PendingDeletes::default();
        let n = delete_old_segments(&log, &mut pending, 2_000).unwrap();
        assert!(n > 0);
        assert!(log.segments()[0].base_offset() <= 7);
        assert!(!pending.is_empty(), "files wait for file.delete.delay.ms");
        let deleted = fs::read_dir(log.dir())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".deleted")
            })
            .count();
        assert_eq!(deleted, pending.len());
        pending.remove_all();
        assert_eq!(
            log.delete_records_before(-1).unwrap(),
            10,
            "-1 is the high watermark"
        );
        assert_eq!(log.log_start_offset(), 10);
    }
}
