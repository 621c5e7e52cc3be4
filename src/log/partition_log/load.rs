//! Loading a partition's log at startup (Kafka's `LogLoader`), in steps: list the segment files, open and
//! recover each one (a full scan from the segment holding the recovery point after an unclean stop, only the
//! active tail after a clean one), drop segments after a truncation point, make the last segment active,
//! then restore the leader epoch cache and the offsets.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use tokio::sync::watch;

use crate::log::TopicPartition;
use crate::log::checkpoint::{
    LEADER_EPOCH_CHECKPOINT, read_leader_epoch_checkpoint, sync_dir, write_leader_epoch_checkpoint,
};
use crate::log::error::{LogError, is_disk_full_io};
use crate::log::producer_state::{
    CompletedTxn, ProducerAppend, ProducerBatch, ProducerStateManager,
};
use crate::log::record_batch::{RECORD_BATCH_OVERHEAD, RecordBatchHeader, check_header};
use crate::log::segment::{
    INDEX_FILE_SUFFIX, LOG_FILE_SUFFIX, LogSegment, RecoveryOutcome, TIME_INDEX_FILE_SUFFIX,
    TXN_INDEX_FILE_SUFFIX, delete_segment_files, segment_file_name,
};
use crate::log::txn_index::AbortedTxn;

use super::{AppendState, LoadParams, MAX_LEADER_EPOCH_ENTRIES, PartitionLog, offline};

/// The segments as loaded, before the log around them is built.
struct LoadedSegments {
    segments: Vec<Arc<LogSegment>>,
    log_end_offset: i64,
    batches_scanned: u64,
}

/// What recovering the segments needs to know, and what it has found so far.
struct SegmentLoader<'a> {
    dir: &'a Path,
    tp: &'a TopicPartition,
    max_index_bytes: u32,
    index_interval_bytes: u32,
    /// Segments from this index on are scanned in full (unclean stop: the one holding the recovery point).
    scan_from: usize,
    /// One past the last valid batch so far.
    next_offset: i64,
    batches_scanned: u64,
    /// Segments whose files or indexes were rewritten and need an fsync.
    needs_fsync: Vec<usize>,
}

impl PartitionLog {
    /// Opens the partition directory (creating it), recovering as needed (see the module docs of
    /// `LogManager`): unclean start -> scan from the segment holding the recovery point, truncate at the
    /// first torn/corrupt batch, drop later segments, rebuild indexes; clean start -> check indexes and only
    /// the active segment's tail.
    /// For tests: `tp`'s log in `dir` with no flusher thread, so nothing is fsynced until the test flushes
    /// (a durable log's gating is then deterministic).
    #[cfg(test)]
    pub(crate) fn load_without_flusher(
        dir: std::path::PathBuf,
        tp: TopicPartition,
        config: crate::log::LogConfig,
    ) -> Arc<PartitionLog> {
        PartitionLog::load(LoadParams {
            dir,
            tp,
            config,
            had_clean_shutdown: false,
            recovery_point: None,
            log_start_offset: None,
            flusher: None,
            clock: crate::clock::Clock::system(),
        })
        .expect("a new log loads")
    }

    pub(crate) fn load(p: LoadParams) -> Result<Arc<PartitionLog>, LogError> {
        fs::create_dir_all(&p.dir)?;
        crate::log::cleaner::recover_interrupted_swaps(&p.dir)?;
        let bases = list_segment_bases(&p.dir)?;
        let (loaded, dir_dirty) = if bases.is_empty() {
            let base = p.log_start_offset.unwrap_or(0).max(0);
            let seg = LogSegment::create(&p.dir, base, p.config.max_index_bytes)?;
            let loaded = LoadedSegments {
                segments: vec![Arc::new(seg)],
                log_end_offset: base,
                batches_scanned: 0,
            };
            (loaded, true)
        } else {
            load_segments(&p, &bases)?
        };
        if dir_dirty {
            sync_dir(&p.dir)?;
        }
        let leader_epochs = load_leader_epochs(&p.dir, &p.tp, loaded.log_end_offset)?;
        super::debug_assert_epochs_grow(&leader_epochs);
        let leo = loaded.log_end_offset;
        let first_base = loaded.segments[0].base_offset();
        let log_start = p
            .log_start_offset
            .unwrap_or(first_base)
            .clamp(first_base, leo.max(first_base));
        let producers = load_producer_state(&p, &loaded.segments, log_start, leo)?;
        let log = Self::assemble(p, loaded, leader_epochs, log_start, producers);
        log.debug_check_offsets();
        Ok(log)
    }

    /// Builds the log around its loaded segments: every offset starts at the log end, but the log start
    /// (from its checkpoint, kept inside the segments).
    fn assemble(
        p: LoadParams,
        loaded: LoadedSegments,
        leader_epochs: Vec<(i32, i64)>,
        log_start: i64,
        producers: ProducerStateManager,
    ) -> Arc<PartitionLog> {
        let leo = loaded.log_end_offset;
        let (hw_tx, _) = watch::channel(leo);
        Arc::new_cyclic(|me| PartitionLog {
            tp: p.tp,
            dir: p.dir,
            config: RwLock::new(Arc::new(p.config)),
            segments: RwLock::new(Arc::new(loaded.segments)),
            append_lock: Mutex::new(AppendState { leader_epochs }),
            unstable_txns: producers.unstable_flag(),
            producer_state: Mutex::new(producers),
            log_start_offset: AtomicI64::new(log_start),
            log_end_offset: AtomicI64::new(leo),
            high_watermark: AtomicI64::new(leo),
            recovery_point: AtomicI64::new(leo),
            hw_tx,
            flush_listener: std::sync::RwLock::new(None),
            flush_lock: Mutex::new(Instant::now()),
            flusher: p.flusher,
            flush_requested: AtomicBool::new(false),
            dir_dirty: AtomicBool::new(false),
            epochs_dirty: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            failure: OnceLock::new(),
            disk_full: AtomicBool::new(false),
            verifications: Mutex::default(),
            #[cfg(test)]
            fail_next_fsync: AtomicBool::new(false),
            #[cfg(test)]
            fail_next_write: std::sync::atomic::AtomicI32::new(0),
            recovery_batches_scanned: AtomicU64::new(loaded.batches_scanned),
            self_ref: me.clone(),
            maintenance: Mutex::new(()),
            clock: p.clock,
        })
    }
}

/// Opens and recovers the segments at `bases` (sorted, not empty); returns them and whether the directory
/// changed (segments deleted).
fn load_segments(p: &LoadParams, bases: &[i64]) -> Result<(LoadedSegments, bool), LogError> {
    let needs_recovery = !p.had_clean_shutdown || p.recovery_point.is_none();
    let scan_from = if needs_recovery {
        let rp = p.recovery_point.unwrap_or(0);
        bases.iter().rposition(|b| *b <= rp).unwrap_or(0)
    } else {
        bases.len()
    };
    let mut loader = SegmentLoader {
        dir: &p.dir,
        tp: &p.tp,
        max_index_bytes: p.config.max_index_bytes,
        index_interval_bytes: p.config.index_interval_bytes,
        scan_from,
        next_offset: bases[0],
        batches_scanned: 0,
        needs_fsync: Vec::new(),
    };
    let mut segments: Vec<Arc<LogSegment>> = Vec::with_capacity(bases.len());
    for (i, base) in bases.iter().copied().enumerate() {
        let (seg, truncated) = loader.load_segment(i, base, bases.get(i + 1).copied())?;
        segments.push(Arc::new(seg));
        if truncated && i + 1 < bases.len() {
            break;
        }
    }
    let dropped = &bases[segments.len()..];
    if let Some(first) = dropped.first() {
        tracing::warn!(partition = %p.tp, segments = dropped.len(), first,
            "deleting segments after the truncation point");
        for base in dropped {
            delete_segment_files(&p.dir, *base)?;
        }
    }
    loader.finish(&segments, p.clock.now_ms())?;
    let loaded = LoadedSegments {
        segments,
        log_end_offset: loader.next_offset,
        batches_scanned: loader.batches_scanned,
    };
    Ok((loaded, !dropped.is_empty()))
}

impl SegmentLoader<'_> {
    /// Opens segment `i` and recovers it as needed; returns it and whether a torn or corrupt batch was cut.
    fn load_segment(
        &mut self,
        i: usize,
        base: i64,
        next_base: Option<i64>,
    ) -> Result<(LogSegment, bool), LogError> {
        let is_last = next_base.is_none();
        // Name the file: this error is what the operator sees for an offline partition.
        let seg = LogSegment::open(self.dir, base, None).map_err(|e| {
            if is_disk_full_io(&e) {
                return LogError::Storage(e); // not damage: retried once space is freed
            }
            let file = segment_file_name(base, LOG_FILE_SUFFIX);
            offline(self.tp, format_args!("cannot open segment {file}: {e}"))
        })?;
        let min_offset = self.next_offset.max(base);
        // A damaged transaction index is emptied and its segment recovered, as Kafka recovers a segment
        // whose index fails its sanity check: the producer-state replay of a recovered segment is what
        // fills the index again (it is derived state).
        let txn_index_damaged = match seg.sanity_check_txn_index() {
            Ok(()) => false,
            Err(why) => {
                tracing::warn!(partition = %self.tp, segment = base, reason = %why,
                    "resetting a damaged transaction index");
                seg.reset_txn_index()?;
                true
            }
        };
        let full_scan = if i >= self.scan_from || txn_index_damaged {
            true
        } else if let Err(why) = seg.sanity_check_indexes(next_base) {
            tracing::warn!(partition = %self.tp, segment = base, reason = %why, "rebuilding index");
            true
        } else {
            false
        };
        let outcome = if full_scan {
            seg.reset_indexes();
            seg.make_active(self.max_index_bytes)?;
            self.needs_fsync.push(i);
            Some(seg.recover(0, min_offset, true, self.index_interval_bytes)?)
        } else if is_last {
            Some(self.recover_tail(&seg, min_offset)?)
        } else {
            None
        };
        let truncated = match outcome {
            Some(o) => {
                let truncated = self.account(i, base, o);
                // No aborted transaction may end past the recovered end (a cut torn tail took its marker).
                seg.truncate_txn_index(self.next_offset)?;
                truncated
            }
            None => {
                self.next_offset =
                    next_base.expect("invariant: only non-last segments skip the scan");
                false
            }
        };
        if !is_last && full_scan && !truncated {
            seg.on_become_inactive()?;
        }
        Ok((seg, truncated))
    }

    /// After a clean shutdown only the active segment's tail past its last index entry is unchecked; junk
    /// there means entries may point into it, so the whole segment is then rebuilt.
    fn recover_tail(&self, seg: &LogSegment, min_offset: i64) -> Result<RecoveryOutcome, LogError> {
        let interval = self.index_interval_bytes;
        make_active_unless_disk_full(self.tp, seg, self.max_index_bytes)?;
        let start = seg.last_indexed_position();
        let tail = seg.recover(start, seg.base_offset(), false, interval)?;
        if tail.truncated_bytes == 0 && (tail.next_offset.is_some() || start == 0) {
            return Ok(tail);
        }
        seg.reset_indexes();
        let mut full = seg.recover(0, min_offset, true, interval)?;
        full.truncated_bytes += tail.truncated_bytes;
        full.truncation_reason = full.truncation_reason.or(tail.truncation_reason);
        Ok(full)
    }

    /// Takes in one segment's recovery; true when it cut a torn or corrupt batch.
    fn account(&mut self, i: usize, base: i64, o: RecoveryOutcome) -> bool {
        self.batches_scanned += o.batches_scanned;
        self.next_offset = o.next_offset.unwrap_or(base);
        if o.truncated_bytes == 0 {
            return false;
        }
        tracing::warn!(
            partition = %self.tp,
            segment = base,
            bytes_dropped = o.truncated_bytes,
            offset = self.next_offset,
            reason = o.truncation_reason.as_deref().unwrap_or(""),
            "truncated log at a torn or corrupt batch"
        );
        self.needs_fsync.push(i);
        true
    }

    /// Makes the last segment active and fsyncs every segment recovery rewrote.
    fn finish(&mut self, segments: &[Arc<LogSegment>], now_ms: i64) -> Result<(), LogError> {
        let last = segments
            .last()
            .expect("invariant: at least one segment was loaded");
        make_active_unless_disk_full(self.tp, last, self.max_index_bytes)?;
        last.init_rolling_base(now_ms)?;
        self.needs_fsync.sort_unstable();
        self.needs_fsync.dedup();
        for &i in &self.needs_fsync {
            if let Some(seg) = segments.get(i) {
                seg.flush_log()?;
                seg.flush_indexes()?;
            }
        }
        Ok(())
    }
}

/// Preallocates the indexes of the segment that will take appends. On a full disk the segment keeps its
/// indexes as they are on disk (whole, trimmed to their entries, so "full"): the partition still loads and
/// serves reads, and its first append retries the allocation by rolling (or re-preallocating an empty
/// segment), failing with ENOSPC until space is freed.
fn make_active_unless_disk_full(
    tp: &TopicPartition,
    seg: &LogSegment,
    max_index_bytes: u32,
) -> io::Result<()> {
    match seg.make_active(max_index_bytes) {
        Err(e) if crate::log::error::is_disk_full_io(&e) => {
            tracing::warn!(partition = %tp, segment = seg.base_offset(), error = %e,
                "disk full: indexes not preallocated; appends wait for space");
            Ok(())
        }
        other => other,
    }
}

/// Base offsets of the `.log` files in `dir`, sorted; index files (`.index`, `.timeindex`, `.txnindex`)
/// without a log are removed.
pub(super) fn list_segment_bases(dir: &Path) -> io::Result<Vec<i64>> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, suffix)) = name.split_once('.') else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(base) = stem.parse::<i64>() else {
            continue;
        };
        match format!(".{suffix}").as_str() {
            LOG_FILE_SUFFIX => logs.push(base),
            INDEX_FILE_SUFFIX | TIME_INDEX_FILE_SUFFIX | TXN_INDEX_FILE_SUFFIX => {
                indexes.push((base, entry.path()))
            }
            // `.snapshot` (producer state) and anything else is not a segment's.
            _ => {}
        }
    }
    logs.sort_unstable();
    for (base, path) in indexes {
        if logs.binary_search(&base).is_err() {
            tracing::warn!(path = %path.display(), "removing index file without a log segment");
            fs::remove_file(&path)?;
        }
    }
    Ok(logs)
}

/// Reads the leader epoch cache, keeping only entries below the log end offset that keep epochs and offsets
/// increasing; rewrites the file when that dropped anything. A damaged file is logged and replaced.
fn load_leader_epochs(
    dir: &Path,
    tp: &TopicPartition,
    leo: i64,
) -> Result<Vec<(i32, i64)>, LogError> {
    let path = dir.join(LEADER_EPOCH_CHECKPOINT);
    let (entries, damaged) = match read_leader_epoch_checkpoint(&path) {
        Ok(Some(v)) => (v, false),
        Ok(None) => (Vec::new(), false),
        Err(e) => {
            tracing::warn!(partition = %tp, error = %e, "ignoring unreadable leader epoch checkpoint");
            (Vec::new(), true)
        }
    };
    let mut kept: Vec<(i32, i64)> = Vec::new();
    for (epoch, start) in entries.iter().copied().take(MAX_LEADER_EPOCH_ENTRIES) {
        let increasing = kept.last().is_none_or(|&(e, o)| epoch > e && start >= o);
        if start < leo && increasing {
            kept.push((epoch, start));
        }
    }
    if damaged || kept.len() != entries.len() {
        match write_leader_epoch_checkpoint(&path, &kept, true) {
            // The old file stays; the next load filters it the same way, so a full disk need not keep the
            // partition offline.
            Err(e) if crate::log::error::is_disk_full_io(&e) => {
                tracing::warn!(partition = %tp, error = %e, "disk full: leader epoch checkpoint not rewritten");
            }
            other => other?,
        }
    }
    Ok(kept)
}

/// Loads the producer state at start: the newest readable snapshot at or below the log end, then the
/// batches after it (Kafka's `LogLoader` + `rebuildProducerState`). Snapshots naming no segment are removed
/// but the newest (the one a clean stop wrote at the log end).
fn load_producer_state(
    p: &LoadParams,
    segments: &[Arc<LogSegment>],
    log_start: i64,
    log_end: i64,
) -> Result<ProducerStateManager, LogError> {
    let mut producers = ProducerStateManager::new(p.tp.clone(), p.dir.clone(), 0);
    producers.load_snapshot_list()?;
    let bases: Vec<i64> = segments.iter().map(|s| s.base_offset()).collect();
    producers.remove_stray_snapshots(&bases)?;
    // As `load_segments` decides: only a clean stop with a recovery point skips the scan.
    let clean = p.had_clean_shutdown && p.recovery_point.is_some();
    // After a crash, what is above the recovery point may have reached the disk in part (a segment's
    // batches without its transaction index entries): replay it all, from a snapshot below it.
    let load_at_most = if clean {
        log_end
    } else {
        p.recovery_point.unwrap_or(log_start).min(log_end)
    };
    rebuild_producer_state(
        &mut producers,
        segments,
        ReplayRange {
            log_start,
            log_end,
            load_at_most,
            clean_shutdown: clean,
            now_ms: p.clock.now_ms(),
            expiration_ms: p.config.producer_id_expiration_ms,
        },
    )?;
    Ok(producers)
}

/// What [`rebuild_producer_state`] brings the state to, and how.
pub(super) struct ReplayRange {
    pub log_start: i64,
    pub log_end: i64,
    /// The newest snapshot at or below this is loaded (the log end, or the recovery point after a crash).
    pub load_at_most: i64,
    /// The last stop was clean (a snapshot at the log end is expected).
    pub clean_shutdown: bool,
    pub now_ms: i64,
    /// `producer.id.expiration.ms`: expired producers are not loaded from a snapshot.
    pub expiration_ms: i64,
}

/// Kafka's `rebuildProducerState`: brings `producers` to `log_end`. After a clean stop with no snapshot at
/// all (a data directory from a brook without producer state) there is no producer to find: empty
/// snapshots are written instead of scanning. Otherwise the newest readable snapshot is loaded and the
/// batches with a producer id from there to `log_end` are replayed without checks, snapshotting at the
/// last two segment bases and at `log_end`. The transaction indexes are derived state: a replay from `X`
/// drops the entries of markers at or above `X` and records each aborted transaction it completes again,
/// with the last stable offset the live append computed.
pub(super) fn rebuild_producer_state(
    producers: &mut ProducerStateManager,
    segments: &[Arc<LogSegment>],
    range: ReplayRange,
) -> Result<(), LogError> {
    let ReplayRange {
        log_start,
        log_end,
        load_at_most,
        clean_shutdown,
        now_ms,
        expiration_ms,
    } = range;
    let mut to_snapshot = Vec::with_capacity(3);
    let n = segments.len();
    if n >= 2 {
        to_snapshot.push(segments[n - 2].base_offset());
    }
    if let Some(last) = segments.last() {
        to_snapshot.push(last.base_offset());
    }
    to_snapshot.push(log_end);
    if clean_shutdown && producers.latest_snapshot_offset().is_none() {
        for offset in to_snapshot {
            producers.update_map_end_offset(offset);
            producers.take_snapshot(false)?;
        }
        return Ok(());
    }
    let was_empty = producers.is_empty() && producers.map_end_offset() >= log_end;
    producers.truncate_and_reload(log_start, log_end, load_at_most, now_ms, expiration_ms)?;
    if log_end > producers.map_end_offset() && !was_empty {
        let from = producers.map_end_offset().max(log_start);
        for (i, seg) in segments.iter().enumerate() {
            // Markers of a segment lie below the next one's base: those wholly below `from` keep theirs.
            if segments
                .get(i + 1)
                .is_none_or(|next| next.base_offset() > from)
            {
                seg.truncate_txn_index(from)?;
            }
        }
        for (i, seg) in segments.iter().enumerate() {
            let next_base = segments.get(i + 1).map(|s| s.base_offset());
            if next_base.is_some_and(|b| b <= producers.map_end_offset()) {
                continue;
            }
            if seg.base_offset() >= log_end {
                break;
            }
            let start = seg
                .base_offset()
                .max(producers.map_end_offset())
                .max(log_start);
            producers.update_map_end_offset(start);
            if to_snapshot.contains(&seg.base_offset()) {
                producers.take_snapshot(false)?;
            }
            replay_segment(producers, seg, start, log_end)?;
        }
    }
    producers.update_map_end_offset(log_end);
    producers.take_snapshot(false)?;
    Ok(())
}

/// Largest control batch read whole during a replay (markers are ~80 bytes).
const MAX_REPLAYED_CONTROL_BATCH: usize = 1024 * 1024;

/// Replays the producer fields of `seg`'s batches from the one holding `start` to those below `end`.
fn replay_segment(
    producers: &mut ProducerStateManager,
    seg: &LogSegment,
    start: i64,
    end: i64,
) -> Result<(), LogError> {
    let Some(first) = seg.find_batch(start)? else {
        return Ok(());
    };
    let corrupt =
        |why: String| LogError::CorruptMessage(format!("{}: {why}", seg.log_path().display()));
    let limit = seg.size();
    let mut pos = first.position;
    let mut scratch = ProducerAppend::default();
    while pos + RECORD_BATCH_OVERHEAD as u64 <= limit {
        let head = seg.read(pos, RECORD_BATCH_OVERHEAD)?;
        let h = RecordBatchHeader::parse(&head)?;
        let size = check_header(&h).map_err(corrupt)?;
        let (base_offset, next_offset) = (h.base_offset(), h.next_offset());
        let (producer_id, is_control) = (h.producer_id(), h.is_control());
        if base_offset >= end {
            break;
        }
        if producer_id >= 0 {
            let batch = if is_control {
                if size > MAX_REPLAYED_CONTROL_BATCH {
                    return Err(corrupt(format!("control batch of {size} bytes")));
                }
                seg.read(pos, size)?
            } else {
                head
            };
            match ProducerBatch::read(&batch, base_offset) {
                Ok(Some(b)) => {
                    if let Some(ct) = producers.replay_batch(&b, &mut scratch)
                        && ct.is_aborted
                    {
                        seg.append_aborted_txn(&aborted_txn(&ct))?;
                    }
                }
                Ok(None) => {}
                // Written by a coordinator that checked it; an unreadable marker is skipped, not fatal.
                Err(why) => tracing::warn!(path = %seg.log_path().display(), offset = base_offset,
                    reason = %why, "skipping an unreadable control batch while loading producer state"),
            }
        }
        producers.update_map_end_offset(next_offset.max(producers.map_end_offset()));
        pos += size as u64;
    }
    Ok(())
}

/// The `.txnindex` entry of an aborted transaction.
pub(super) fn aborted_txn(ct: &CompletedTxn) -> AbortedTxn {
    debug_assert!(
        ct.is_aborted,
        "only aborted transactions are indexed: {ct:?}"
    );
    AbortedTxn {
        producer_id: ct.producer_id,
        first_offset: ct.first_offset,
        last_offset: ct.last_offset,
        last_stable_offset: ct.last_stable_offset,
    }
}
