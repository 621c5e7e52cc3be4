//! The log cleaner: compacts partitions whose `cleanup.policy` includes `compact`, keeping the latest record
//! per key (Kafka's `LogCleaner`), on its own thread.
//!
//! A pass picks the dirtiest partition (dirty bytes / total bytes at or above `min.cleanable.dirty.ratio`,
//! or records older than `max.compaction.lag.ms`, or tombstones whose delete horizon has passed). The dirty
//! part starts at the cleaner checkpoint (`cleaner-offset-checkpoint`) and ends before the active segment,
//! before the segment holding the last stable offset (Kafka cleans up to the LSO itself; whole segments
//! here), and before the first segment with records newer than `min.compaction.lag.ms`. The cleaner maps
//! key -> latest offset over the dirty part, bounded by `log.cleaner.dedupe.buffer.size` (only the prefix
//! that fits is cleaned this pass), then rewrites the closed segments from the log start: a record stays if
//! no later offset of its key is in the map. Offsets never change: batches keep their base offset and last offset
//! delta, so removed records leave gaps. Batches are decompressed (with a cap against bombs) and
//! re-compressed with their own codec; a batch that cannot be decoded is kept as it is.
//!
//! Tombstones follow KIP-534: the first pass that keeps a tombstone's batch stamps it with a delete horizon
//! (`now + delete.retention.ms`, in baseTimestamp, attribute bit 6); a pass after the horizon drops them. A
//! consumer that reads the log from the start within `delete.retention.ms` of the first clean sees them.
//!
//! Transactions (Kafka 4.1's `Cleaner` with `CleanedTransactionMetadata`, see `cleaned_txn_metadata`):
//! below the LSO every transaction is decided and its aborted ones are in the `.txnindex` files. Batches of
//! aborted transactions are discarded whatever their keys and never enter the offset map; committed ones
//! are compacted like any data. A marker stays while a batch of its transaction was seen in the pass, then
//! is stamped with a delete horizon like a tombstone and dropped by a pass after it; the cleaned segment's
//! `.txnindex` lists the aborted transactions whose kept ABORT marker still has data behind it. The batch
//! holding each active producer's last data offset (or its last marker, when that began its epoch) and the
//! batch ending the round are kept even when every record goes (written empty, as Kafka's RETAIN_EMPTY),
//! so a replay of the log restores producer sequences and epochs, and the offsets cleaned stay known.
//!
//! Swapping is crash safe: cleaned files are written as `<base>.log.cleaned` (+ indexes) and fsynced, renamed
//! `.swap` (the log last: its `.log.swap` is the commit point), the replaced segments after the first are
//! renamed `.deleted`, and the `.swap` files are renamed over the first one. At load,
//! [`recover_interrupted_swaps`] drops `.cleaned` and `.deleted` files and completes any `.swap`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::log::checkpoint::{read_offset_checkpoint, sync_dir, write_offset_checkpoint};
use crate::log::cleaned_txn_metadata::CleanedTransactionMetadata;
use crate::log::error::LogError;
use crate::log::partition_log::PartitionLog;
use crate::log::producer_state::{LastRecord, read_end_txn_marker};
use crate::log::record_batch::{RECORD_BATCH_OVERHEAD, RecordBatchHeader, check_header};
use crate::log::records::{
    Codec, DELETE_HORIZON_FLAG, MAX_DECOMPRESSED_BATCH_BYTES, Record, build_batch, decompress,
    encode_record, parse_records,
};
use crate::log::retention::{DELETED_FILE_SUFFIX, PendingDeletes, schedule_segment_deletion};
use crate::log::segment::{
    INDEX_FILE_SUFFIX, LOG_FILE_SUFFIX, LogSegment, SEGMENT_FILE_SUFFIXES, TIME_INDEX_FILE_SUFFIX,
    TXN_INDEX_FILE_SUFFIX, segment_file_name,
};
use crate::log::txn_index::AbortedTxn;
use crate::log::{BeforeSwapHook, CleanerConfig, SwapDecision, TopicPartition, lock};

/// Kafka's file of each compacted partition's first dirty offset, in the data directory.
pub const CLEANER_OFFSET_CHECKPOINT: &str = "cleaner-offset-checkpoint";
pub const CLEANED_FILE_SUFFIX: &str = ".cleaned";
pub const SWAP_FILE_SUFFIX: &str = ".swap";
/// Bytes one offset map entry may cost (a 16-byte key hash, an 8-byte offset, hash table slack), so that
/// `log.cleaner.dedupe.buffer.size` bounds the map's real memory.
const BYTES_PER_MAP_ENTRY: u64 = 48;
/// A stored batch larger than this is never read whole by the cleaner: its group is left uncleaned.
const MAX_STORED_BATCH_BYTES: usize = MAX_DECOMPRESSED_BATCH_BYTES;
/// Output is written to the cleaned segment in chunks of about this size.
const WRITE_CHUNK_BYTES: usize = 1024 * 1024;

fn file_name(base: i64, suffix: &str, extra: &str) -> String {
    format!("{}{extra}", segment_file_name(base, suffix))
}

/// Completes or rolls back a clean that a crash interrupted, before a partition's segments are listed:
/// `.cleaned` and `.deleted` files are removed; a `<base>.log.swap` (the clean was committed) replaces every
/// segment whose base offset falls in its offset range and becomes `<base>.log`, with indexes rebuilt by the
/// load that follows (but its `.txnindex`, which is kept). Index `.swap` files without their log are
/// removed.
pub fn recover_interrupted_swaps(dir: &Path) -> io::Result<()> {
    let mut swaps = Vec::new();
    let mut logs = Vec::new();
    let mut changed = false;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(CLEANED_FILE_SUFFIX) || name.ends_with(DELETED_FILE_SUFFIX) {
            fs::remove_file(entry.path())?;
            changed = true;
            continue;
        }
        let Some((stem, suffix)) = name.split_once('.') else {
            continue;
        };
        let Ok(base) = stem.parse::<i64>() else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        match format!(".{suffix}").as_str() {
            s if s == format!("{LOG_FILE_SUFFIX}{SWAP_FILE_SUFFIX}") => swaps.push(base),
            LOG_FILE_SUFFIX => logs.push(base),
            _ => {}
        }
    }
    swaps.sort_unstable();
    for &base in &swaps {
        let swap_path = dir.join(file_name(base, LOG_FILE_SUFFIX, SWAP_FILE_SUFFIX));
        let next = next_offset_of_file(&swap_path)?
            .unwrap_or(base.saturating_add(1))
            .max(base.saturating_add(1));
        // The cleaned segment's transaction index cannot be rebuilt from its log alone: it is kept. If
        // there is no `.txnindex.swap`, `<base>.txnindex` is already the cleaned one (a cleaned segment has
        // one whenever the segment it replaced had one).
        let txn_swap = dir.join(file_name(base, TXN_INDEX_FILE_SUFFIX, SWAP_FILE_SUFFIX));
        let txn_swapped = txn_swap.exists();
        for &old in logs.iter().filter(|b| **b >= base && **b < next) {
            for suffix in SEGMENT_FILE_SUFFIXES {
                if suffix == TXN_INDEX_FILE_SUFFIX && old == base && !txn_swapped {
                    continue;
                }
                remove_if_exists(&dir.join(file_name(old, suffix, "")))?;
            }
        }
        for suffix in [INDEX_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX] {
            remove_if_exists(&dir.join(file_name(base, suffix, SWAP_FILE_SUFFIX)))?;
        }
        if txn_swapped {
            fs::rename(
                &txn_swap,
                dir.join(file_name(base, TXN_INDEX_FILE_SUFFIX, "")),
            )?;
        }
        fs::rename(&swap_path, dir.join(file_name(base, LOG_FILE_SUFFIX, "")))?;
        tracing::warn!(dir = %dir.display(), segment = base, "completed a log clean interrupted by a crash");
        changed = true;
    }
    // Index swaps whose log never reached `.swap`: the clean was not committed.
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .ends_with(SWAP_FILE_SUFFIX)
        {
            fs::remove_file(entry.path())?;
            changed = true;
        }
    }
    if changed {
        sync_dir(dir)?;
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// One past the last offset of the whole batches at the start of a segment file (headers only).
fn next_offset_of_file(path: &Path) -> io::Result<Option<i64>> {
    let file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut pos = 0u64;
    let mut next = None;
    let mut header = [0u8; RECORD_BATCH_OVERHEAD];
    while pos + RECORD_BATCH_OVERHEAD as u64 <= len {
        file.read_exact_at(&mut header, pos)?;
        let Ok(h) = RecordBatchHeader::parse(&header) else {
            break;
        };
        let Ok(size) = check_header(&h) else { break };
        if pos + size as u64 > len {
            break;
        }
        next = Some(h.next_offset());
        pos += size as u64;
    }
    Ok(next)
}

/// Bounded map from key (a 128-bit hash of it) to the latest offset seen: Kafka's SkimpyOffsetMap.
#[derive(Debug)]
pub struct OffsetMap {
    map: HashMap<u128, i64>,
    capacity: usize,
}

fn key_hash(key: &[u8]) -> u128 {
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

impl OffsetMap {
    pub fn with_memory(bytes: u64) -> OffsetMap {
        OffsetMap::with_capacity((bytes / BYTES_PER_MAP_ENTRY).max(1) as usize)
    }
    pub fn with_capacity(capacity: usize) -> OffsetMap {
        OffsetMap {
            map: HashMap::new(),
            capacity,
        }
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Room for `n` more keys, counting each as new.
    fn has_room(&self, n: usize) -> bool {
        self.map.len().saturating_add(n) <= self.capacity
    }
    fn put(&mut self, key: &[u8], offset: i64) {
        let e = self.map.entry(key_hash(key)).or_insert(offset);
        *e = (*e).max(offset);
    }
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.map.get(&key_hash(key)).copied()
    }
}

/// What one clean did, for logs and the throughput figure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_kept: u64,
    pub tombstones_removed: u64,
    /// Batches of aborted transactions removed (or emptied).
    pub aborted_batches_removed: u64,
    /// Transaction markers removed after their delete horizon.
    pub markers_removed: u64,
    pub segments_cleaned: usize,
    pub batches_read: u64,
    /// Batches copied as they were (all records kept, nothing to stamp).
    pub batches_unchanged: u64,
    /// Where the next clean's dirty part starts.
    pub end_offset: i64,
    pub elapsed: Duration,
}

/// The dirty part of a log and how much of the log it is.
#[derive(Clone, Debug)]
struct Cleanable {
    first_dirty: i64,
    first_uncleanable: i64,
    clean_bytes: u64,
    dirty_bytes: u64,
    /// The first dirty batch is older than max.compaction.lag.ms.
    overdue: bool,
}

impl Cleanable {
    fn ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }
}

/// First batch's maxTimestamp of a segment (for max.compaction.lag.ms), None when empty or unreadable.
fn first_batch_timestamp(seg: &LogSegment) -> Option<i64> {
    if seg.size() < RECORD_BATCH_OVERHEAD as u64 {
        return None;
    }
    let head = seg.read(0, RECORD_BATCH_OVERHEAD).ok()?;
    RecordBatchHeader::parse(&head)
        .ok()
        .map(|h| h.max_timestamp())
}

/// Works out the dirty range of `log` (segment granularity), given its checkpointed first dirty offset.
fn cleanable_range(log: &PartitionLog, checkpoint: Option<i64>, now: i64) -> Cleanable {
    let config = log.config();
    let segments = log.segments();
    let log_start = log.log_start_offset();
    let leo = log.log_end_offset();
    let first_dirty = checkpoint
        .filter(|c| *c >= log_start && *c <= leo)
        .unwrap_or(log_start);
    // Never at or above the last stable offset: below it every transaction is decided, so its aborted
    // ones are all in the transaction indexes, and no undecided record can supersede a key.
    let stable = log.last_stable_offset();
    let active_base = segments.last().map_or(leo, |s| s.base_offset());
    let mut first_uncleanable = active_base.min(stable);
    let mut overdue = false;
    let mut clean_bytes = 0;
    let mut dirty_bytes = 0;
    for (i, seg) in segments.iter().enumerate() {
        let next_base = segments.get(i + 1).map_or(leo, |s| s.base_offset());
        if seg.base_offset() >= first_uncleanable {
            break;
        }
        if next_base <= first_dirty {
            clean_bytes += seg.size();
            continue;
        }
        // A dirty segment.
        if config.min_compaction_lag_ms > 0
            && seg.max_timestamp() > now.saturating_sub(config.min_compaction_lag_ms)
        {
            first_uncleanable = first_uncleanable.min(seg.base_offset());
            break;
        }
        if next_base > stable {
            first_uncleanable = first_uncleanable.min(seg.base_offset());
            break;
        }
        if dirty_bytes == 0
            && let Some(ts) = first_batch_timestamp(seg)
            && ts >= 0
            && now.saturating_sub(ts) > config.max_compaction_lag_ms
        {
            overdue = true;
        }
        dirty_bytes += seg.size();
    }
    Cleanable {
        first_dirty,
        first_uncleanable: first_uncleanable.max(first_dirty),
        clean_bytes,
        dirty_bytes,
        overdue,
    }
}

/// Reads the stored batches of a segment one at a time (bounded memory), with their positions.
struct BatchReader<'a> {
    seg: &'a LogSegment,
    pos: u64,
    end: u64,
}

impl BatchReader<'_> {
    fn next_batch(&mut self) -> Result<Option<Vec<u8>>, LogError> {
        if self.pos + RECORD_BATCH_OVERHEAD as u64 > self.end {
            return Ok(None);
        }
        let head = self.seg.read(self.pos, RECORD_BATCH_OVERHEAD)?;
        let h = RecordBatchHeader::parse(&head)?;
        let size = check_header(&h).map_err(|e| {
            LogError::CorruptMessage(format!("{}: {e}", self.seg.log_path().display()))
        })?;
        if size > MAX_STORED_BATCH_BYTES || self.pos + size as u64 > self.end {
            return Err(LogError::CorruptMessage(format!(
                "{}: batch of {size} bytes at {} cannot be cleaned",
                self.seg.log_path().display(),
                self.pos
            )));
        }
        let batch = self.seg.read(self.pos, size)?;
        self.pos += size as u64;
        Ok(Some(batch.to_vec()))
    }
}

fn batches(seg: &LogSegment) -> BatchReader<'_> {
    BatchReader {
        seg,
        pos: 0,
        end: seg.size(),
    }
}

/// Adds the keys of the dirty range to `map`, batch by batch, stopping before a batch that might not fit.
/// Batches of aborted transactions (known from the transaction indexes, collected a segment ahead) never
/// enter the map: a committed value must not lose to an aborted one. Returns the offset where the map ends
/// (the next clean's first dirty offset).
fn build_offset_map(
    log: &PartitionLog,
    segments: &[Arc<LogSegment>],
    range: &Cleanable,
    map: &mut OffsetMap,
    stats: &mut CleanStats,
) -> Result<i64, LogError> {
    let mut end = range.first_dirty;
    let mut txns = CleanedTransactionMetadata::new();
    for (i, seg) in segments.iter().enumerate() {
        let next_base = segments.get(i + 1).map(|s| s.base_offset());
        if next_base.is_some_and(|n| n <= range.first_dirty) {
            continue;
        }
        if seg.base_offset() >= range.first_uncleanable {
            break;
        }
        let from = seg.base_offset().max(range.first_dirty);
        let to = next_base.map_or(range.first_uncleanable, |n| n.min(range.first_uncleanable));
        txns.add_aborted_txns(log.collect_aborted_txns(from, to)?, from, to);
        let mut reader = batches(seg);
        while let Some(batch) = reader.next_batch()? {
            let h = RecordBatchHeader::parse(&batch)?;
            if h.last_offset() < range.first_dirty {
                continue;
            }
            if h.base_offset() >= range.first_uncleanable {
                return Ok(end.max(range.first_dirty));
            }
            stats.bytes_read += batch.len() as u64;
            if h.is_control() {
                txns.on_control_batch_read(&h, read_end_txn_marker(&batch));
                end = h.next_offset();
                continue;
            }
            let count = usize::try_from(h.record_count()).unwrap_or(0);
            // An empty map takes any one batch, so a pass always makes progress (memory overshoots by at
            // most one batch's keys).
            if !map.is_empty() && !map.has_room(count) {
                return Ok(end.max(range.first_dirty));
            }
            let aborted = txns.on_batch_read(&h);
            if !aborted
                && let Ok((_, raw)) = decompress(
                    h.compression_type(),
                    &batch[RECORD_BATCH_OVERHEAD..],
                    MAX_DECOMPRESSED_BATCH_BYTES,
                )
                && let Ok(records) = parse_records(&raw, h.record_count())
            {
                for r in &records {
                    let offset = h.base_offset().saturating_add(i64::from(r.offset_delta));
                    if let (Some(key), true) = (r.key, offset >= range.first_dirty) {
                        map.put(key, offset);
                    }
                }
            }
            end = h.next_offset();
        }
    }
    // Everything below the uncleanable offset fit.
    Ok(range.first_uncleanable.max(range.first_dirty))
}

/// Consecutive segments cleaned into one, as Kafka's groupSegmentsBySize: at most `segment.bytes` of input
/// and an offset range the relative indexes can hold.
fn group_segments(
    segments: &[Arc<LogSegment>],
    end: i64,
    max_bytes: u64,
) -> Vec<Vec<Arc<LogSegment>>> {
    let mut groups: Vec<Vec<Arc<LogSegment>>> = Vec::new();
    let mut i = 0;
    // Never the active segment, never one that starts at or after the cleaned range's end.
    let candidates = segments.len().saturating_sub(1);
    while i < candidates && segments[i].base_offset() < end {
        let mut group = vec![segments[i].clone()];
        let mut size = segments[i].size();
        let base = segments[i].base_offset();
        let mut j = i + 1;
        while j < candidates && segments[j].base_offset() < end {
            let next_end = segments.get(j + 1).map_or(i64::MAX, |s| s.base_offset());
            let fits = size + segments[j].size() <= max_bytes
                && next_end.saturating_sub(base) <= i64::from(u32::MAX);
            if !fits {
                break;
            }
            size += segments[j].size();
            group.push(segments[j].clone());
            j += 1;
        }
        groups.push(group);
        i = j;
    }
    groups
}

/// What one cleaning round decides batches by.
struct RoundRules<'a> {
    map: &'a OffsetMap,
    /// Records at or above it were not mapped: they stay.
    map_end: i64,
    /// The round's first uncleanable offset: the batch ending just below it stays, empty if need be, so the
    /// offsets the round covered stay known (Kafka's upper bound of the cleaning round).
    upper_bound: i64,
    now: i64,
    delete_retention_ms: i64,
    /// Each active producer's last record, kept so a replay restores its sequence and epoch.
    last_records: HashMap<i64, LastRecord>,
}

impl RoundRules<'_> {
    /// The batch must stay even if all its records go (Kafka's RETAIN_EMPTY): it holds an active
    /// producer's last data offset or its last marker of the current epoch, or it ends the round.
    fn retain_empty(&self, h: &RecordBatchHeader<'_>) -> bool {
        if h.next_offset() == self.upper_bound {
            return true;
        }
        h.producer_id() >= 0
            && self.last_records.get(&h.producer_id()).is_some_and(|last| {
                match last.last_data_offset {
                    Some(offset) => h.last_offset() == offset,
                    None => h.is_control() && h.producer_epoch() == last.producer_epoch,
                }
            })
    }

    fn delete_horizon(&self) -> i64 {
        self.now.saturating_add(self.delete_retention_ms)
    }
}

fn min_horizon(out: &mut Option<i64>, hz: i64) {
    *out = Some(out.map_or(hz, |o: i64| o.min(hz)));
}

/// The batch with every record removed (Kafka's empty batch header): offsets, producer fields and
/// timestamp kept, no records, no codec, no delete horizon.
fn empty_batch(h: &RecordBatchHeader<'_>) -> Result<Vec<u8>, LogError> {
    let attributes = h.attributes() & !DELETE_HORIZON_FLAG;
    build_batch(h, attributes, h.max_timestamp(), Codec::None, 0, &[])
        .map_err(|e| LogError::CorruptMessage(e.to_string()))
}

/// `kept` records of `h`'s batch as a new batch in `codec`; with `new_horizon`, stamped with it (attribute
/// bit 6, baseTimestamp = horizon, timestamp deltas rebased so record timestamps are unchanged).
fn rebuild_batch(
    h: &RecordBatchHeader<'_>,
    codec: Codec,
    kept: &[&Record<'_>],
    new_horizon: Option<i64>,
    raw_len: usize,
) -> Result<Vec<u8>, LogError> {
    let mut body = Vec::with_capacity(raw_len);
    let (attributes, base_ts) = match new_horizon {
        Some(hz) => {
            for r in kept {
                let ts = h.base_timestamp().saturating_add(r.timestamp_delta);
                encode_record(&mut body, r, ts.saturating_sub(hz));
            }
            (h.attributes() | DELETE_HORIZON_FLAG, hz)
        }
        None => {
            for r in kept {
                body.extend_from_slice(r.raw);
            }
            (h.attributes(), h.base_timestamp())
        }
    };
    let count = i32::try_from(kept.len()).expect("invariant: fewer records than the batch held");
    build_batch(h, attributes, base_ts, codec, count, &body)
        .map_err(|e| LogError::CorruptMessage(e.to_string()))
}

/// What `clean_batch` already knows about a control batch it hands to [`clean_control_batch`].
struct ControlCtx<'a, 'r> {
    rules: &'a RoundRules<'r>,
    retain_empty: bool,
    /// The batch's delete horizon, once stamped.
    horizon: Option<i64>,
}

/// A marker's batch: kept while its transaction has data in the log, then stamped with a delete horizon,
/// then removed (or emptied when it must stay as a producer's last batch).
fn clean_control_batch(
    batch: &[u8],
    h: &RecordBatchHeader<'_>,
    ctx: &ControlCtx<'_, '_>,
    txns: &mut CleanedTransactionMetadata,
    index_entries: &mut Vec<AbortedTxn>,
    stats: &mut CleanStats,
    horizon_out: &mut Option<i64>,
) -> Result<Option<Vec<u8>>, LogError> {
    let (rules, retain_empty, horizon, h) = (ctx.rules, ctx.retain_empty, ctx.horizon, *h);
    let unchanged = |stats: &mut CleanStats| {
        stats.batches_unchanged += 1;
        Ok(Some(batch.to_vec()))
    };
    let decision = txns.on_control_batch_read(&h, read_end_txn_marker(batch));
    index_entries.extend(decision.keep_index_entry);
    if h.record_count() <= 0 {
        // An empty control batch: its marker was removed already.
        return if retain_empty {
            unchanged(stats)
        } else {
            Ok(None)
        };
    }
    if !decision.removable {
        return unchanged(stats);
    }
    // A marker whose transaction left no batch: stamped with a delete horizon first, so a consumer
    // that read the transaction within delete.retention.ms also reads its end; gone after it.
    match horizon {
        Some(hz) if rules.now >= hz => {
            stats.markers_removed += 1;
            if retain_empty {
                empty_batch(&h).map(Some)
            } else {
                Ok(None)
            }
        }
        Some(hz) => {
            min_horizon(horizon_out, hz);
            unchanged(stats)
        }
        None => {
            let Ok((codec, raw)) = decompress(
                h.compression_type(),
                &batch[RECORD_BATCH_OVERHEAD..],
                MAX_DECOMPRESSED_BATCH_BYTES,
            ) else {
                return unchanged(stats);
            };
            let Ok(records) = parse_records(&raw, h.record_count()) else {
                return unchanged(stats);
            };
            let hz = rules.delete_horizon();
            min_horizon(horizon_out, hz);
            let kept: Vec<&Record<'_>> = records.iter().collect();
            rebuild_batch(&h, codec, &kept, Some(hz), raw.len()).map(Some)
        }
    }
}

/// Decides which records of one batch stay and returns the batch to write (None: drop it whole). Control
/// batches and aborted batches are decided by `txns`; the index entry of every kept ABORT marker that
/// still has data behind it is pushed to `index_entries`.
fn clean_batch(
    batch: &[u8],
    rules: &RoundRules<'_>,
    txns: &mut CleanedTransactionMetadata,
    index_entries: &mut Vec<AbortedTxn>,
    stats: &mut CleanStats,
    horizon_out: &mut Option<i64>,
) -> Result<Option<Vec<u8>>, LogError> {
    let h = RecordBatchHeader::parse(batch)?;
    stats.batches_read += 1;
    let unchanged = |stats: &mut CleanStats| {
        stats.batches_unchanged += 1;
        Ok(Some(batch.to_vec()))
    };
    let has_horizon = h.attributes() & DELETE_HORIZON_FLAG != 0;
    let horizon = has_horizon.then(|| h.base_timestamp());
    let retain_empty = rules.retain_empty(&h);
    if h.is_control() {
        let ctx = ControlCtx {
            rules,
            retain_empty,
            horizon,
        };
        return clean_control_batch(batch, &h, &ctx, txns, index_entries, stats, horizon_out);
    }
    if txns.on_batch_read(&h) {
        // Aborted: its records go whatever their keys.
        stats.aborted_batches_removed += 1;
        stats.records_read += u64::try_from(h.record_count()).unwrap_or(0);
        return if retain_empty {
            if h.record_count() <= 0 {
                unchanged(stats)
            } else {
                empty_batch(&h).map(Some)
            }
        } else {
            Ok(None)
        };
    }
    let Ok((codec, raw)) = decompress(
        h.compression_type(),
        &batch[RECORD_BATCH_OVERHEAD..],
        MAX_DECOMPRESSED_BATCH_BYTES,
    ) else {
        return unchanged(stats);
    };
    let Ok(records) = parse_records(&raw, h.record_count()) else {
        return unchanged(stats);
    };
    stats.records_read += records.len() as u64;
    let mut kept = Vec::with_capacity(records.len());
    for r in &records {
        let offset = h.base_offset().saturating_add(i64::from(r.offset_delta));
        let keep = if offset >= rules.map_end {
            true
        } else {
            match r.key {
                // Kafka drops keyless records from compacted logs.
                None => false,
                Some(key) => {
                    let latest = rules.map.get(key).is_none_or(|l| offset >= l);
                    let tombstone_expired =
                        r.value.is_none() && horizon.is_some_and(|hz| rules.now >= hz);
                    if latest && tombstone_expired {
                        stats.tombstones_removed += 1;
                    }
                    latest && !tombstone_expired
                }
            }
        };
        if keep {
            kept.push(r);
        }
    }
    stats.records_kept += kept.len() as u64;
    if kept.is_empty() {
        return match (retain_empty, records.is_empty()) {
            (false, _) => Ok(None),
            (true, true) => unchanged(stats),
            (true, false) => empty_batch(&h).map(Some),
        };
    }
    let has_tombstones = kept.iter().any(|r| r.value.is_none());
    let set_horizon = has_tombstones && !has_horizon;
    if let Some(hz) = horizon.filter(|_| has_tombstones) {
        min_horizon(horizon_out, hz);
    }
    if kept.len() == records.len() && !set_horizon {
        stats.batches_unchanged += 1;
        return Ok(Some(batch.to_vec()));
    }
    let new_horizon = set_horizon.then(|| rules.delete_horizon());
    if let Some(hz) = new_horizon {
        min_horizon(horizon_out, hz);
    }
    rebuild_batch(&h, codec, &kept, new_horizon, raw.len()).map(Some)
}

/// Writes the cleaned form of `group` to `<base>.*.cleaned`, fsynced. `group_end` is the base of the
/// segment after the group. The cleaned transaction index holds the aborted transactions whose ABORT
/// marker stays with data of theirs still in the log; the others are gone (their data was all removed).
#[allow(clippy::too_many_arguments)]
fn write_cleaned(
    log: &PartitionLog,
    group: &[Arc<LogSegment>],
    group_end: i64,
    rules: &RoundRules<'_>,
    txns: &mut CleanedTransactionMetadata,
    stats: &mut CleanStats,
    horizon_out: &mut Option<i64>,
    abort: &dyn Fn() -> bool,
) -> Result<LogSegment, LogError> {
    let config = log.config();
    let base = group[0].base_offset();
    let cleaned =
        LogSegment::create_suffixed(log.dir(), base, config.max_index_bytes, CLEANED_FILE_SUFFIX)?;
    // The cleaned segment has a `.txnindex` whenever the segment it replaces at the same base has one, so
    // the swap always replaces that file and never leaves it stale.
    if group[0].has_txn_index() {
        cleaned.create_txn_index_file()?;
    }
    let mut out: Vec<u8> = Vec::with_capacity(WRITE_CHUNK_BYTES);
    let mut index_entries = Vec::new();
    for (i, seg) in group.iter().enumerate() {
        // From the whole segment's range: the cleaned index is rebuilt whole.
        let from = seg.base_offset();
        let to = group.get(i + 1).map_or(group_end, |s| s.base_offset());
        txns.add_aborted_txns(log.collect_aborted_txns(from, to)?, from, to);
        let mut reader = batches(seg);
        while let Some(batch) = reader.next_batch()? {
            if abort() || log.is_closed() {
                return Err(LogError::Offline(
                    "cleaning aborted: shutting down or partition closed".into(),
                ));
            }
            stats.bytes_read += batch.len() as u64;
            let kept = clean_batch(&batch, rules, txns, &mut index_entries, stats, horizon_out)?;
            for txn in index_entries.drain(..) {
                cleaned.append_aborted_txn(&txn)?;
            }
            if let Some(b) = kept {
                out.extend_from_slice(&b);
                if out.len() >= WRITE_CHUNK_BYTES {
                    cleaned.append(&out, rules.now, config.index_interval_bytes)?;
                    stats.bytes_written += out.len() as u64;
                    out.clear();
                }
            }
        }
    }
    if !out.is_empty() {
        cleaned.append(&out, rules.now, config.index_interval_bytes)?;
        stats.bytes_written += out.len() as u64;
    }
    cleaned.on_become_inactive()?;
    cleaned.flush_log()?;
    cleaned.flush_indexes()?;
    Ok(cleaned)
}

fn remove_cleaned_files(dir: &Path, base: i64) {
    for suffix in SEGMENT_FILE_SUFFIXES {
        if let Err(e) = remove_if_exists(&dir.join(file_name(base, suffix, CLEANED_FILE_SUFFIX))) {
            tracing::warn!(dir = %dir.display(), segment = base, error = %e, "could not remove cleaner output");
        }
    }
}

/// Swaps the cleaned files in for `group` (see the module docs for the order) and the new segment into the
/// log's list.
fn swap_in(
    log: &PartitionLog,
    group: &[Arc<LogSegment>],
    cleaned: LogSegment,
    pending: &mut PendingDeletes,
    before_swap: Option<&BeforeSwapHook>,
) -> Result<(), LogError> {
    let dir = log.dir();
    let base = group[0].base_offset();
    let has_txn_index = cleaned.has_txn_index();
    drop(cleaned);
    let rename = |suffix: &str, from: &str, to: &str| {
        fs::rename(
            dir.join(file_name(base, suffix, from)),
            dir.join(file_name(base, suffix, to)),
        )
    };
    // The log last: its `.swap` is the commit point, and every other file of the clean is in place by then.
    let mut suffixes = vec![INDEX_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX];
    if has_txn_index {
        suffixes.push(TXN_INDEX_FILE_SUFFIX);
    }
    suffixes.push(LOG_FILE_SUFFIX);
    for suffix in &suffixes {
        rename(suffix, CLEANED_FILE_SUFFIX, SWAP_FILE_SUFFIX)?;
    }
    sync_dir(dir)?;
    if before_swap.is_some_and(|hook| (hook.0)(log.topic_partition()) == SwapDecision::Halt) {
        tracing::warn!(partition = %log.topic_partition(), segment = base,
            "cleaner halted by its before-swap hook with the cleaned segment in .swap");
        return Err(LogError::Offline(format!(
            "{}: cleaning halted before the swap",
            log.topic_partition()
        )));
    }
    let delay =
        Duration::from_millis(u64::try_from(log.config().file_delete_delay_ms).unwrap_or(0));
    for seg in &group[1..] {
        schedule_segment_deletion(dir, seg.base_offset(), delay, pending);
    }
    for suffix in &suffixes {
        rename(suffix, SWAP_FILE_SUFFIX, "")?;
    }
    sync_dir(dir)?;
    let new = Arc::new(LogSegment::open(dir, base, None)?);
    if !log.replace_segments(group, new) {
        // Cannot happen while the maintenance lock is held; the files on disk are the cleaned ones either way.
        tracing::error!(partition = %log.topic_partition(), segment = base,
            "segment list changed during cleaning; the cleaned segment is used from the next start");
    }
    Ok(())
}

/// Compacts `log` once: offset map over the dirty range, then every closed segment up to the map's end is
/// rewritten. Holds the partition's maintenance lock (retention waits), never its append lock but for the
/// list swap.
pub fn clean_log(
    log: &PartitionLog,
    first_dirty_checkpoint: Option<i64>,
    map: &mut OffsetMap,
    pending: &mut PendingDeletes,
    now: i64,
    abort: &dyn Fn() -> bool,
    before_swap: Option<&BeforeSwapHook>,
) -> Result<(CleanStats, Option<i64>), LogError> {
    let started = Instant::now();
    let _maintenance = log.maintenance_lock();
    let range = cleanable_range(log, first_dirty_checkpoint, now);
    let segments = log.segments();
    let mut stats = CleanStats::default();
    map.map.clear();
    let map_end = build_offset_map(log, &segments, &range, map, &mut stats)?;
    let config = log.config();
    let groups = group_segments(
        &segments,
        map_end,
        config.segment_bytes.min(i32::MAX as u64),
    );
    let rules = RoundRules {
        map,
        map_end,
        upper_bound: range.first_uncleanable,
        now,
        delete_retention_ms: config.delete_retention_ms,
        last_records: log.last_records_of_active_producers(),
    };
    // Carried from group to group: a transaction may span them.
    let mut txns = CleanedTransactionMetadata::new();
    let mut horizon = None;
    for group in groups {
        let before = (stats.batches_read, stats.batches_unchanged);
        let last = group.last().expect("invariant: a group holds a segment");
        let group_end = segments
            .iter()
            .find(|s| s.base_offset() > last.base_offset())
            .map_or_else(|| log.log_end_offset(), |s| s.base_offset());
        let written = write_cleaned(
            log,
            &group,
            group_end,
            &rules,
            &mut txns,
            &mut stats,
            &mut horizon,
            abort,
        );
        let cleaned = match written {
            Ok(c) => c,
            Err(e) => {
                // Leave the group as it is; remove the partial output.
                remove_cleaned_files(log.dir(), group[0].base_offset());
                return Err(e);
            }
        };
        let read = stats.batches_read - before.0;
        let unchanged = stats.batches_unchanged - before.1;
        if read == unchanged && group.len() == 1 {
            // Nothing to gain: keep the segment, drop the copy.
            drop(cleaned);
            remove_cleaned_files(log.dir(), group[0].base_offset());
            continue;
        }
        swap_in(log, &group, cleaned, pending, before_swap)?;
        stats.segments_cleaned += group.len();
    }
    stats.end_offset = map_end;
    stats.elapsed = started.elapsed();
    Ok((stats, horizon))
}

/// The cleaner's memory between passes: checkpoints and when tombstones become removable.
#[derive(Debug)]
pub struct LogCleaner {
    dir: std::path::PathBuf,
    config: CleanerConfig,
    checkpoints: Mutex<BTreeMap<TopicPartition, i64>>,
    /// Earliest delete horizon of the tombstones each partition still holds.
    horizons: Mutex<HashMap<TopicPartition, i64>>,
    map: Mutex<OffsetMap>,
    pending: Mutex<PendingDeletes>,
    /// Wall time for compaction lags and tombstone horizons.
    clock: Clock,
}

impl LogCleaner {
    pub fn new(dir: &Path, config: CleanerConfig, clock: Clock) -> LogCleaner {
        let checkpoints = match read_offset_checkpoint(&dir.join(CLEANER_OFFSET_CHECKPOINT)) {
            Ok(m) => m.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring unreadable cleaner checkpoint; logs are cleaned from the start");
                BTreeMap::new()
            }
        };
        LogCleaner {
            dir: dir.to_path_buf(),
            map: Mutex::new(OffsetMap::with_memory(config.dedupe_buffer_size)),
            config,
            checkpoints: Mutex::new(checkpoints),
            horizons: Mutex::new(HashMap::new()),
            pending: Mutex::new(PendingDeletes::default()),
            clock,
        }
    }

    pub fn config(&self) -> &CleanerConfig {
        &self.config
    }

    /// Picks the filthiest cleanable log among `logs` and cleans it. Returns its stats, None when nothing
    /// needed cleaning.
    pub fn clean_filthiest(
        &self,
        logs: &[Arc<PartitionLog>],
        abort: &dyn Fn() -> bool,
    ) -> Option<(TopicPartition, CleanStats)> {
        let now = self.clock.now_ms();
        lock(&self.pending).remove_due(Instant::now());
        let mut best: Option<(f64, Arc<PartitionLog>)> = None;
        for log in logs {
            if !log.config().cleanup_policy.compact || log.is_closed() {
                continue;
            }
            let tp = log.topic_partition();
            let checkpoint = lock(&self.checkpoints).get(tp).copied();
            let range = cleanable_range(log, checkpoint, now);
            let horizon_due = lock(&self.horizons).get(tp).is_some_and(|h| *h <= now);
            let ratio = range.ratio();
            let due = (range.dirty_bytes > 0
                && (ratio >= log.config().min_cleanable_dirty_ratio || range.overdue))
                || horizon_due;
            if due && best.as_ref().is_none_or(|(r, _)| ratio > *r) {
                best = Some((ratio, log.clone()));
            }
        }
        let (_, log) = best?;
        let tp = log.topic_partition().clone();
        let checkpoint = lock(&self.checkpoints).get(&tp).copied();
        let result = {
            let mut map = lock(&self.map);
            let mut pending = lock(&self.pending);
            clean_log(
                &log,
                checkpoint,
                &mut map,
                &mut pending,
                now,
                abort,
                self.config.before_swap.as_ref(),
            )
        };
        match result {
            Ok((stats, horizon)) => {
                match horizon {
                    Some(h) => lock(&self.horizons).insert(tp.clone(), h),
                    None => lock(&self.horizons).remove(&tp),
                };
                let mut cps = lock(&self.checkpoints);
                cps.insert(tp.clone(), stats.end_offset);
                if let Err(e) =
                    write_offset_checkpoint(&self.dir.join(CLEANER_OFFSET_CHECKPOINT), &cps)
                {
                    tracing::warn!(error = %e, "could not write the cleaner checkpoint");
                }
                drop(cps);
                let secs = stats.elapsed.as_secs_f64().max(1e-9);
                tracing::info!(partition = %tp, segments = stats.segments_cleaned,
                    read_bytes = stats.bytes_read, written_bytes = stats.bytes_written,
                    records_kept = stats.records_kept, records_read = stats.records_read,
                    tombstones_removed = stats.tombstones_removed,
                    mb_per_s = format!("{:.1}", stats.bytes_read as f64 / secs / 1e6),
                    "cleaned log");
                Some((tp, stats))
            }
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "log cleaning failed; will retry after the backoff");
                // Do not pick it again at once: pretend it is clean up to here.
                None
            }
        }
    }

    /// Forgets a deleted partition.
    pub fn forget(&self, tp: &TopicPartition) {
        lock(&self.checkpoints).remove(tp);
        lock(&self.horizons).remove(tp);
    }

    /// Lowers the partition's checkpoint to `offset` if above it (the log was truncated there), so batches
    /// appended again at those offsets are cleaned as dirty ones.
    pub fn maybe_truncate_checkpoint(&self, tp: &TopicPartition, offset: i64) {
        let mut cps = lock(&self.checkpoints);
        if cps.get(tp).is_none_or(|c| *c <= offset) {
            return;
        }
        cps.insert(tp.clone(), offset);
        if let Err(e) = write_offset_checkpoint(&self.dir.join(CLEANER_OFFSET_CHECKPOINT), &cps) {
            tracing::warn!(error = %e, "could not write the cleaner checkpoint");
        }
    }

    /// The partition's first dirty offset, as last checkpointed.
    pub fn checkpoint(&self, tp: &TopicPartition) -> Option<i64> {
        lock(&self.checkpoints).get(tp).copied()
    }

    /// Removes every file waiting for its delayed deletion (shutdown).
    pub fn remove_pending(&self) {
        lock(&self.pending).remove_all();
    }
}

/// The cleaner thread: cleans the filthiest log, or sleeps `log.cleaner.backoff.ms` when none is due.
pub fn cleaner_loop(
    manager: std::sync::Weak<crate::log::LogManager>,
    cleaner: Arc<LogCleaner>,
    signal: Arc<crate::log::retention::BackgroundSignal>,
) {
    let backoff = Duration::from_millis(cleaner.config().backoff_ms.max(1));
    loop {
        if signal.stopped() {
            break;
        }
        let Some(mgr) = manager.upgrade() else { break };
        let logs = mgr.logs();
        drop(mgr);
        let cleaned = cleaner
            .clean_filthiest(&logs, &|| signal.stopped())
            .is_some();
        drop(logs);
        if !cleaned && signal.wait(backoff, false) == crate::log::retention::Wake::Stop {
            break;
        }
    }
    cleaner.remove_pending();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::log::batch_builder::{BatchBuilder, end_transaction_marker};
    use crate::log::partition_log::AppendOrigin;
    use crate::log::records::Codec;
    use crate::log::records::test_support::{ALL_CODECS, keyed_batch};
    use crate::log::{CleanupPolicy, LogConfig, LogManager};
    use crate::replica::partition::{FetchIsolation, Partition, leader_append};
    use bytes::BytesMut;
    use uuid::Uuid;

    fn compact_config() -> LogConfig {
        LogConfig {
            segment_bytes: 600,
            cleanup_policy: CleanupPolicy {
                delete: false,
                compact: true,
            },
            file_delete_delay_ms: 0,
            min_cleanable_dirty_ratio: 0.0,
            ..LogConfig::default()
        }
    }

    /// Every (offset, key, value) readable from the log start.
    fn read_all(log: &PartitionLog) -> Vec<(i64, Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.high_watermark() {
            let data = log
                .read(offset, 1 << 20, true, log.high_watermark())
                .unwrap();
            if data.records.is_empty() {
                break;
            }
            let mut pos = 0;
            while pos < data.records.len() {
                let h = RecordBatchHeader::parse(&data.records[pos..]).unwrap();
                let size = h.total_size().unwrap();
                let (_, raw) = decompress(
                    h.compression_type(),
                    &data.records[pos + 61..pos + size],
                    1 << 24,
                )
                .unwrap();
                for r in parse_records(&raw, h.record_count()).unwrap() {
                    let o = h.base_offset() + i64::from(r.offset_delta);
                    if o >= offset {
                        out.push((o, r.key.unwrap().to_vec(), r.value.map(<[u8]>::to_vec)));
                    }
                }
                offset = h.next_offset();
                pos += size;
            }
        }
        out
    }

    fn produce(log: &Arc<PartitionLog>, key: &str, value: Option<&str>, ts: i64, codec: Codec) {
        let b = keyed_batch(
            0,
            &[(Some(key.as_bytes()), value.map(str::as_bytes))],
            ts,
            codec,
        );
        leader_append(log, BytesMut::from(&b[..]), 0).unwrap();
    }

    #[test]
    fn cleaning_keeps_the_latest_record_per_key_with_offsets_unchanged_in_every_codec() {
        for codec in ALL_CODECS {
            let dir = tempfile::tempdir().unwrap();
            let mgr = LogManager::open(dir.path(), compact_config()).unwrap();
            let log = mgr
                .get_or_create(&TopicPartition::new("c", 0), compact_config())
                .unwrap();
            let now = Clock::system().now_ms();
            for i in 0..60 {
                produce(
                    &log,
                    &format!("k{}", i % 4),
                    Some(&format!("v{i}")),
                    now,
                    codec,
                );
            }
            produce(&log, "k0", None, now, codec); // tombstone at 60
            let active = log.segments().last().unwrap().clone();
            assert!(
                log.roll_for_retention(active.base_offset(), active.size())
                    .unwrap()
            );
            produce(&log, "tail", Some("x"), now, codec); // active segment
            let before = log.segments().iter().map(|s| s.size()).sum::<u64>();
            let mut map = OffsetMap::with_capacity(1000);
            let mut pending = PendingDeletes::default();
            let (stats, horizon) =
                clean_log(&log, None, &mut map, &mut pending, now, &|| false, None).unwrap();
            assert!(stats.segments_cleaned > 0, "{codec:?}");
            let after = log.segments().iter().map(|s| s.size()).sum::<u64>();
            assert!(after < before / 3, "{codec:?}: {before} -> {after}");
            let got = read_all(&log);
            let keys: Vec<_> = got
                .iter()
                .map(|(o, k, v)| (*o, String::from_utf8(k.clone()).unwrap(), v.is_some()))
                .collect();
            // k1..k3's latest values, k0's tombstone (kept: horizon just set), and the active tail.
            assert!(
                keys.contains(&(57, "k1".into(), true)),
                "{codec:?} {keys:?}"
            );
            assert!(keys.contains(&(58, "k2".into(), true)));
            assert!(keys.contains(&(59, "k3".into(), true)));
            assert!(keys.contains(&(60, "k0".into(), false)));
            assert_eq!(
                got.iter().filter(|(o, _, _)| *o < 57).count(),
                0,
                "{codec:?} {keys:?}"
            );
            assert_eq!(log.log_end_offset(), 62);
            assert_eq!(
                horizon,
                Some(now + LogConfig::default().delete_retention_ms)
            );
            // Data survives a restart (indexes rebuilt or trusted), and a later pass past the horizon drops
            // the tombstone.
            let later = now + LogConfig::default().delete_retention_ms + 1;
            let (stats2, _) = clean_log(
                &log,
                Some(stats.end_offset),
                &mut map,
                &mut pending,
                later,
                &|| false,
                None,
            )
            .unwrap();
            assert_eq!(stats2.tombstones_removed, 1, "{codec:?}");
            assert!(!read_all(&log).iter().any(|(_, k, _)| k == b"k0"));
            mgr.shutdown().unwrap();
            let mgr = LogManager::open(dir.path(), compact_config()).unwrap();
            let log = mgr
                .get_or_create(&TopicPartition::new("c", 0), compact_config())
                .unwrap();
            assert_eq!(read_all(&log).len(), 4, "{codec:?}");
        }
    }

    #[test]
    fn a_full_offset_map_cleans_only_the_prefix_that_fits() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = LogManager::open(dir.path(), compact_config()).unwrap();
        let log = mgr
            .get_or_create(&TopicPartition::new("c", 0), compact_config())
            .unwrap();
        let now = Clock::system().now_ms();
        for i in 0..40 {
            produce(&log, &format!("k{i}"), Some("a"), now, Codec::None);
        }
        for i in 0..40 {
            produce(&log, &format!("k{i}"), Some("b"), now, Codec::None);
        }
        produce(&log, "tail", Some("x"), now, Codec::None);
        let mut map = OffsetMap::with_capacity(10);
        let mut pending = PendingDeletes::default();
        let (stats, _) =
            clean_log(&log, None, &mut map, &mut pending, now, &|| false, None).unwrap();
        assert_eq!(stats.end_offset, 10, "ten keys fit");
        let got = read_all(&log);
        // Nothing was superseded within the first ten offsets' keys yet except by themselves: all stay.
        assert_eq!(got.len(), 81);
        // Cleaning on from the checkpoint eventually dedupes everything.
        let mut end = stats.end_offset;
        for _ in 0..10 {
            end = clean_log(
                &log,
                Some(end),
                &mut map,
                &mut pending,
                now,
                &|| false,
                None,
            )
            .unwrap()
            .0
            .end_offset;
        }
        let got = read_all(&log);
        assert!(
            got.iter()
                .all(|(o, _, v)| *o >= 40 && v.as_deref() != Some(b"a")),
            "{got:?}"
        );
    }

    /// Cleans `group` (the closed segments from the log start) into `.cleaned` files without swapping them
    /// in, as a clean interrupted before its swap leaves them.
    fn write_cleaned_unswapped(
        log: &PartitionLog,
        segs: &[Arc<LogSegment>],
        group: &[Arc<LogSegment>],
        now: i64,
    ) -> LogSegment {
        let mut map = OffsetMap::with_capacity(100);
        let range = cleanable_range(log, None, now);
        let mut stats = CleanStats::default();
        let end = build_offset_map(log, segs, &range, &mut map, &mut stats).unwrap();
        let rules = RoundRules {
            map: &map,
            map_end: end,
            upper_bound: range.first_uncleanable,
            now,
            delete_retention_ms: log.config().delete_retention_ms,
            last_records: log.last_records_of_active_producers(),
        };
        let group_end = segs[group.len()].base_offset();
        let mut hz = None;
        write_cleaned(
            log,
            group,
            group_end,
            &rules,
            &mut CleanedTransactionMetadata::new(),
            &mut stats,
            &mut hz,
            &|| false,
        )
        .unwrap()
    }

    /// No `.swap` or `.cleaned` file is left in the partition directory.
    fn assert_no_swap_leftovers(pdir: &Path) {
        let names: Vec<String> = fs::read_dir(pdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with(".swap") || n.ends_with(".cleaned")),
            "swap leftovers remain: {names:?}"
        );
    }

    #[test]
    fn an_interrupted_swap_is_completed_at_load_and_cleaned_leftovers_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let pdir = dir.path().join("c-0");
        {
            let mgr = LogManager::open(dir.path(), compact_config()).unwrap();
            let log = mgr
                .get_or_create(&TopicPartition::new("c", 0), compact_config())
                .unwrap();
            let now = Clock::system().now_ms();
            for i in 0..30 {
                produce(
                    &log,
                    &format!("k{}", i % 3),
                    Some(&format!("v{i}")),
                    now,
                    Codec::Gzip,
                );
            }
            let segs = log.segments();
            assert!(segs.len() > 3);
            let group = segs[..segs.len() - 1].to_vec();
            let cleaned = write_cleaned_unswapped(&log, &segs, &group, now);
            drop(cleaned);
            // Crash after the rename to .swap, before anything else: as the kill -9 test does.
            for suffix in [INDEX_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX, LOG_FILE_SUFFIX] {
                fs::rename(
                    pdir.join(file_name(0, suffix, CLEANED_FILE_SUFFIX)),
                    pdir.join(file_name(0, suffix, SWAP_FILE_SUFFIX)),
                )
                .unwrap();
            }
            // And a stray .cleaned of another, uncommitted clean.
            fs::write(
                pdir.join(file_name(5, LOG_FILE_SUFFIX, CLEANED_FILE_SUFFIX)),
                b"junk",
            )
            .unwrap();
            mgr.abandon();
        }
        let mgr = LogManager::open(dir.path(), compact_config()).unwrap();
        let log = mgr
            .get_or_create(&TopicPartition::new("c", 0), compact_config())
            .unwrap();
        assert_eq!(log.log_end_offset(), 30);
        let got = read_all(&log);
        let keys: Vec<_> = got.iter().map(|(o, _, _)| *o).collect();
        assert!(
            keys.contains(&27) && keys.contains(&28) && keys.contains(&29),
            "{keys:?}"
        );
        assert!(
            got.len() < 30,
            "the cleaned segment replaced the old ones: {keys:?}"
        );
        assert_no_swap_leftovers(&pdir);
    }

    fn partition(log: &Arc<PartitionLog>) -> Arc<Partition> {
        Partition::new(log.topic_partition().clone(), Uuid::nil(), log.clone(), 0)
    }

    /// A batch of producer `pid`: transactional or only idempotent.
    fn producer_batch(
        pid: i64,
        epoch: i16,
        seq: i32,
        transactional: bool,
        records: &[(&str, Option<&str>)],
        ts: i64,
    ) -> BytesMut {
        let mut b = BatchBuilder::new()
            .producer(pid, epoch, seq)
            .transactional(transactional);
        for (k, v) in records {
            b.append(ts, Some(k.as_bytes()), v.map(str::as_bytes), &[])
                .unwrap();
        }
        b.build().unwrap()
    }

    /// Appends a producer's batch as a client does; returns its base offset.
    fn produce_txn(
        log: &Arc<PartitionLog>,
        pid: i64,
        seq: i32,
        records: &[(&str, Option<&str>)],
        ts: i64,
    ) -> i64 {
        partition(log)
            .append_records_to_leader(
                producer_batch(pid, 0, seq, true, records, ts),
                AppendOrigin::Client,
            )
            .unwrap()
            .base_offset
    }

    /// Writes an end transaction marker as the transaction coordinator does; returns its offset.
    fn write_marker(log: &Arc<PartitionLog>, pid: i64, epoch: i16, commit: bool, ts: i64) -> i64 {
        partition(log)
            .append_records_to_leader(
                end_transaction_marker(pid, epoch, commit, 0, ts).unwrap(),
                AppendOrigin::Coordinator,
            )
            .unwrap()
            .base_offset
    }

    /// `rounds` times: three plain records over two keys, then an aborted transaction of its own producer
    /// (whose last batch it stays). Returns the aborted transactions as the log indexed them.
    fn plain_records_and_aborted_txns(
        log: &Arc<PartitionLog>,
        rounds: i64,
        now: i64,
    ) -> Vec<AbortedTxn> {
        for pid in 0..rounds {
            for i in 0..3 {
                produce(log, &format!("k{}", i % 2), Some("v"), now, Codec::None);
            }
            produce_txn(log, pid, 0, &[("t", Some("aborted"))], now);
            write_marker(log, pid, 0, false, now);
        }
        let active = log.segments().last().unwrap().clone();
        log.roll_for_retention(active.base_offset(), active.size())
            .unwrap();
        log.collect_aborted_txns(0, i64::MAX).unwrap()
    }

    /// One stored batch, as a consumer reading uncommitted data sees it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct StoredBatch {
        base: i64,
        pid: i64,
        epoch: i16,
        control: bool,
        horizon: bool,
        /// (offset, key, value) of a data batch's records.
        records: Vec<(i64, String, Option<String>)>,
        record_count: i32,
    }

    fn parse_stored(batch: &[u8]) -> StoredBatch {
        let h = RecordBatchHeader::parse(batch).unwrap();
        let (_, raw) = decompress(
            h.compression_type(),
            &batch[RECORD_BATCH_OVERHEAD..],
            1 << 24,
        )
        .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let records = if h.is_control() {
            Vec::new()
        } else {
            parse_records(&raw, h.record_count())
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        h.base_offset() + i64::from(r.offset_delta),
                        text(r.key.unwrap()),
                        r.value.map(text),
                    )
                })
                .collect()
        };
        StoredBatch {
            base: h.base_offset(),
            pid: h.producer_id(),
            epoch: h.producer_epoch(),
            control: h.is_control(),
            horizon: h.attributes() & DELETE_HORIZON_FLAG != 0,
            records,
            record_count: h.record_count(),
        }
    }

    /// Every batch of the log, from its start to its end.
    fn stored_batches(log: &PartitionLog) -> Vec<StoredBatch> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let data = log
                .read(offset, 1 << 20, true, log.log_end_offset())
                .unwrap();
            if data.records.is_empty() {
                break;
            }
            let mut pos = 0;
            while pos < data.records.len() {
                let h = RecordBatchHeader::parse(&data.records[pos..]).unwrap();
                let size = h.total_size().unwrap();
                offset = h.next_offset();
                out.push(parse_stored(&data.records[pos..pos + size]));
                pos += size;
            }
        }
        out
    }

    /// The data records stored (aborted ones included): (offset, key, value).
    fn stored_records(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
        stored_batches(log)
            .into_iter()
            .flat_map(|b| b.records)
            .collect()
    }

    fn batch_at(log: &PartitionLog, base: i64) -> Option<StoredBatch> {
        stored_batches(log).into_iter().find(|b| b.base == base)
    }

    /// What a read_committed consumer gets from the log start, fetch by fetch, with Java's algorithm: each
    /// fetch's `aborted_transactions` mark a producer aborted from the entry's first offset until its ABORT
    /// marker, and its transactional batches meanwhile are skipped. Small fetches, so that the aborted
    /// transactions of every range are asked for.
    fn read_committed(log: &Arc<PartitionLog>) -> Vec<(i64, String, Option<String>)> {
        let p = partition(log);
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.last_stable_offset() {
            let data = p
                .read(offset, 200, true, FetchIsolation::TxnCommitted)
                .unwrap();
            if data.records.is_empty() {
                break;
            }
            let mut pending = data.aborted_transactions.unwrap();
            pending.sort_by_key(|t| t.first_offset);
            let mut aborted_pids = std::collections::HashSet::new();
            let mut pos = 0;
            while pos < data.records.len() {
                let h = RecordBatchHeader::parse(&data.records[pos..]).unwrap();
                let size = h.total_size().unwrap();
                let batch = &data.records[pos..pos + size];
                pending.retain(|t| {
                    let reached = t.first_offset <= h.last_offset();
                    if reached {
                        aborted_pids.insert(t.producer_id);
                    }
                    !reached
                });
                if h.is_control() {
                    if let Ok(Some(m)) = read_end_txn_marker(batch)
                        && !m.commit
                    {
                        aborted_pids.remove(&h.producer_id());
                    }
                } else if !(h.is_transactional() && aborted_pids.contains(&h.producer_id())) {
                    out.extend(
                        parse_stored(batch)
                            .records
                            .into_iter()
                            .filter(|(o, _, _)| *o >= offset),
                    );
                }
                offset = offset.max(h.next_offset());
                pos += size;
            }
        }
        out
    }

    /// The latest value of each key in `records`.
    fn latest_by_key(
        records: &[(i64, String, Option<String>)],
    ) -> BTreeMap<String, Option<String>> {
        records
            .iter()
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn roll(log: &PartitionLog) {
        let active = log.segments().last().unwrap().clone();
        assert!(
            log.roll_for_retention(active.base_offset(), active.size())
                .unwrap()
        );
    }

    /// One cleaning pass from the log start at `now`.
    fn clean_at(log: &PartitionLog, now: i64) -> CleanStats {
        let mut map = OffsetMap::with_capacity(1000);
        let mut pending = PendingDeletes::default();
        clean_log(log, None, &mut map, &mut pending, now, &|| false, None)
            .unwrap()
            .0
    }

    fn owned(k: &str, v: &str) -> (String, Option<String>) {
        (k.to_string(), Some(v.to_string()))
    }

    #[test]
    fn aborted_data_goes_whatever_its_keys_and_committed_data_is_compacted_normally() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = LogManager::open(dir.path(), compact_config()).unwrap();
        let log = mgr
            .get_or_create(&TopicPartition::new("c", 0), compact_config())
            .unwrap();
        let now = Clock::system().now_ms();
        let retention = compact_config().delete_retention_ms;
        produce(&log, "k3", Some("good"), now, Codec::None);
        // An aborted transaction: a key of its own, a key committed before it, a key committed after it.
        produce_txn(
            &log,
            1,
            0,
            &[
                ("k9", Some("aborted")),
                ("k3", Some("aborted")),
                ("k1", Some("aborted")),
            ],
            now,
        );
        let abort_marker = write_marker(&log, 1, 0, false, now);
        produce_txn(
            &log,
            2,
            0,
            &[("k1", Some("committed")), ("k2", Some("committed"))],
            now,
        );
        let first_commit = write_marker(&log, 2, 0, true, now);
        produce_txn(&log, 2, 2, &[("k2", Some("committed2"))], now);
        write_marker(&log, 2, 0, true, now);
        // Producer 1 moves on: its aborted batch is not its last one.
        produce_txn(&log, 1, 3, &[("k5", Some("x"))], now);
        write_marker(&log, 1, 0, true, now);
        for _ in 0..4 {
            produce(&log, "k7", Some("t"), now, Codec::None);
        }
        // An aborted transaction straddling the first uncleanable offset: its first batch is cleanable, the
        // rest and its marker are in the active segment.
        let straddling = produce_txn(&log, 3, 0, &[("k8", Some("aborted"))], now);
        roll(&log);
        produce_txn(&log, 3, 1, &[("k8", Some("aborted-too"))], now);
        write_marker(&log, 3, 0, false, now);
        produce(&log, "tail", Some("x"), now, Codec::None);
        let expected: BTreeMap<_, _> = [
            owned("k1", "committed"),
            owned("k2", "committed2"),
            owned("k3", "good"),
            owned("k5", "x"),
            owned("k7", "t"),
            owned("tail", "x"),
        ]
        .into_iter()
        .collect();
        assert_eq!(latest_by_key(&read_committed(&log)), expected);
        let before = read_committed(&log);

        let stats = clean_at(&log, now);
        assert!(stats.segments_cleaned > 0, "{stats:?}");
        assert_eq!(stats.aborted_batches_removed, 2, "{stats:?}");
        // What a read_committed consumer sees did not change, and nothing aborted is left below the active
        // segment: k3's committed value survived a later aborted one (never in the offset map), k9 went.
        let stored_offsets: std::collections::HashSet<i64> =
            stored_records(&log).iter().map(|(o, _, _)| *o).collect();
        let mut still_stored = before.clone();
        still_stored.retain(|(o, _, _)| stored_offsets.contains(o));
        assert_eq!(read_committed(&log), still_stored);
        assert_eq!(latest_by_key(&read_committed(&log)), expected);
        let stored = stored_records(&log);
        let active_base = log.segments().last().unwrap().base_offset();
        assert!(
            !stored.iter().any(|(o, _, v)| *o < active_base
                && v.as_deref().is_some_and(|v| v.starts_with("aborted"))),
            "{stored:?}"
        );
        assert!(!stored.iter().any(|(_, k, _)| k == "k9"), "{stored:?}");
        // Committed transactional data was compacted like any other: one record per key below the tail.
        let closed: Vec<_> = stored.iter().filter(|(o, _, _)| *o < active_base).collect();
        let keys: Vec<_> = closed.iter().map(|(_, k, _)| k.as_str()).collect();
        assert_eq!(keys, ["k3", "k1", "k2", "k5", "k7"], "{closed:?}");
        // The straddling transaction's remaining data is still reported aborted to read_committed.
        assert!(
            stored
                .iter()
                .any(|(_, _, v)| v.as_deref() == Some("aborted-too"))
        );
        let entries = log.collect_aborted_txns(0, i64::MAX).unwrap();
        assert_eq!(
            entries
                .iter()
                .map(|t| (t.producer_id, t.first_offset))
                .collect::<Vec<_>>(),
            [(1, 1), (3, straddling)],
            "the ABORT marker whose data was just removed keeps its entry this pass"
        );
        // Markers stay while data of their transaction remained in this pass.
        let marker = batch_at(&log, abort_marker).unwrap();
        assert!(marker.control && !marker.horizon, "{marker:?}");

        // Second pass: the aborted transaction left nothing, so its marker is stamped with a delete horizon
        // and its index entry goes; the COMMIT markers stay while committed data of theirs remains.
        let stats = clean_at(&log, now);
        assert_eq!(stats.markers_removed, 0);
        let marker = batch_at(&log, abort_marker).unwrap();
        assert!(marker.control && marker.horizon, "{marker:?}");
        assert_eq!(
            log.collect_aborted_txns(0, i64::MAX)
                .unwrap()
                .iter()
                .map(|t| t.producer_id)
                .collect::<Vec<_>>(),
            [3]
        );
        let commit = batch_at(&log, first_commit).unwrap();
        assert!(commit.control && !commit.horizon, "{commit:?}");
        assert_eq!(latest_by_key(&read_committed(&log)), expected);
        // Before the horizon a pass keeps it; after, it goes.
        clean_at(&log, now + retention - 1);
        assert!(batch_at(&log, abort_marker).is_some());
        let stats = clean_at(&log, now + retention);
        assert_eq!(stats.markers_removed, 1, "{stats:?}");
        assert_eq!(batch_at(&log, abort_marker), None);
        assert!(batch_at(&log, first_commit).is_some());
        assert_eq!(latest_by_key(&read_committed(&log)), expected);
    }

    #[test]
    fn nothing_at_or_above_the_last_stable_offset_is_cleaned_while_a_transaction_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = LogManager::open(dir.path(), compact_config()).unwrap();
        let log = mgr
            .get_or_create(&TopicPartition::new("c", 0), compact_config())
            .unwrap();
        let now = Clock::system().now_ms();
        for i in 0..20 {
            produce(&log, "k1", Some(&format!("v{i}")), now, Codec::None);
        }
        let open = produce_txn(&log, 5, 0, &[("k1", Some("open"))], now);
        for i in 20..40 {
            produce(&log, "k1", Some(&format!("v{i}")), now, Codec::None);
        }
        roll(&log);
        produce(&log, "tail", Some("x"), now, Codec::None);
        assert_eq!(log.last_stable_offset(), open);
        let above = |log: &PartitionLog| {
            stored_records(log)
                .into_iter()
                .filter(|(o, _, _)| *o >= open)
                .collect::<Vec<_>>()
        };
        let above_before = above(&log);
        assert_eq!(above_before.len(), 22);
        let stats = clean_at(&log, now);
        assert!(stats.segments_cleaned > 0, "{stats:?}");
        assert!(stats.end_offset <= open, "{stats:?}");
        assert_eq!(above(&log), above_before, "untouched at and above the LSO");
        let below = stored_records(&log)
            .into_iter()
            .filter(|(o, _, _)| *o < open)
            .count();
        assert!(below < 20, "the stable part was compacted: {below} left");
        // The transaction commits: the whole log is stable, and k1 shrinks to its latest value.
        write_marker(&log, 5, 0, true, now);
        roll(&log);
        produce(&log, "tail", Some("y"), now, Codec::None);
        clean_at(&log, now);
        let got: Vec<_> = stored_records(&log)
            .into_iter()
            .map(|(o, k, _)| (o, k))
            .collect();
        assert_eq!(
            got,
            [
                (40, "k1".to_string()),
                (41, "tail".into()),
                (43, "tail".into())
            ]
        );
        assert_eq!(
            read_committed(&log)
                .into_iter()
                .map(|(o, _, _)| o)
                .collect::<Vec<_>>(),
            [40, 41, 43]
        );
        // The producer's last batch stays, emptied, with its COMMIT marker (data of the txn was seen).
        let kept = batch_at(&log, open).unwrap();
        assert_eq!((kept.pid, kept.record_count), (5, 0), "{kept:?}");
        assert!(batch_at(&log, 42).unwrap().control);
    }

    #[test]
    fn an_active_producers_last_batch_is_kept_empty_so_a_replay_restores_it() {
        let dir = tempfile::tempdir().unwrap();
        let pdir = dir.path().join("c-0");
        let now = Clock::system().now_ms();
        let retention = compact_config().delete_retention_ms;
        {
            let mgr = LogManager::open(dir.path(), compact_config()).unwrap();
            let log = mgr
                .get_or_create(&TopicPartition::new("c", 0), compact_config())
                .unwrap();
            let p = partition(&log);
            let idempotent =
                |seq: i32, key: &str| producer_batch(7, 0, seq, false, &[(key, Some("a"))], now);
            p.append_records_to_leader(idempotent(0, "k1"), AppendOrigin::Client)
                .unwrap();
            p.append_records_to_leader(idempotent(1, "k2"), AppendOrigin::Client)
                .unwrap();
            // A transactional producer whose last record is an ABORT marker of a bumped epoch.
            produce_txn(&log, 8, 0, &[("k3", Some("aborted"))], now);
            let marker = write_marker(&log, 8, 1, false, now);
            assert_eq!(marker, 3);
            for key in ["k1", "k2", "k3", "k4"] {
                produce(&log, key, Some("z"), now, Codec::None);
            }
            roll(&log);
            produce(&log, "tail", Some("x"), now, Codec::None);

            clean_at(&log, now);
            assert_eq!(batch_at(&log, 0), None, "not the producer's last batch");
            let last = batch_at(&log, 1).unwrap();
            assert_eq!(
                (last.pid, last.epoch, last.record_count),
                (7, 0, 0),
                "{last:?}"
            );
            assert_eq!(batch_at(&log, 2), None, "aborted");
            // The marker: kept, stamped, then past its horizon emptied but kept (the producer's last).
            assert_eq!(batch_at(&log, 3).unwrap().record_count, 1);
            clean_at(&log, now);
            assert!(batch_at(&log, 3).unwrap().horizon);
            let stats = clean_at(&log, now + retention);
            assert_eq!(stats.markers_removed, 1);
            let empty = batch_at(&log, 3).unwrap();
            assert_eq!(
                (empty.pid, empty.epoch, empty.control, empty.record_count),
                (8, 1, true, 0),
                "{empty:?}"
            );
            // Kept on later passes as it is.
            let again = clean_at(&log, now + retention);
            assert_eq!(again.markers_removed, 0);
            assert_eq!(batch_at(&log, 3), Some(empty));
            mgr.abandon();
        }
        // Without snapshots, the producer state is rebuilt from the cleaned log alone.
        for entry in fs::read_dir(&pdir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "snapshot") {
                fs::remove_file(path).unwrap();
            }
        }
        let mgr = LogManager::open(dir.path(), compact_config()).unwrap();
        let log = mgr
            .get_or_create(&TopicPartition::new("c", 0), compact_config())
            .unwrap();
        let p = partition(&log);
        let send = |seq: i32, key: &str| {
            p.append_records_to_leader(
                producer_batch(7, 0, seq, false, &[(key, Some("a"))], now),
                AppendOrigin::Client,
            )
        };
        let retry = send(1, "k2").unwrap();
        assert!(retry.duplicate, "{retry:?}");
        assert_eq!(retry.base_offset, 1);
        assert!(matches!(
            send(3, "k5"),
            Err(LogError::OutOfOrderSequence(_))
        ));
        let next = send(2, "k5").unwrap();
        assert!(!next.duplicate);
    }

    fn txn_index_files(pdir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(pdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(TXN_INDEX_FILE_SUFFIX))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn cleaning_keeps_the_aborted_transactions_of_the_segments_it_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let pdir = dir.path().join("c-0");
        let now = Clock::system().now_ms();
        let aborted;
        {
            let mgr = LogManager::open(dir.path(), compact_config()).unwrap();
            let log = mgr
                .get_or_create(&TopicPartition::new("c", 0), compact_config())
                .unwrap();
            aborted = plain_records_and_aborted_txns(&log, 8, now);
            let before = log.segment_count();
            assert_eq!(aborted.len(), 8, "{aborted:?}");
            // Larger segments from now on: the cleaner merges the small ones it rewrites.
            log.update_config(LogConfig {
                segment_bytes: 100_000,
                ..compact_config()
            });
            let mut map = OffsetMap::with_capacity(100);
            let mut pending = PendingDeletes::default();
            let (stats, _) =
                clean_log(&log, None, &mut map, &mut pending, now, &|| false, None).unwrap();
            assert!(stats.segments_cleaned >= 2, "{stats:?}");
            assert!(log.segment_count() < before, "segments were merged");
            assert_eq!(log.collect_aborted_txns(0, i64::MAX).unwrap(), aborted);
            // One index per remaining segment holding entries; the merged segments' files went with them.
            let holders = log
                .segments()
                .iter()
                .filter(|s| s.has_txn_index())
                .map(|s| segment_file_name(s.base_offset(), TXN_INDEX_FILE_SUFFIX))
                .collect::<Vec<_>>();
            assert_eq!(txn_index_files(&pdir), holders);
            mgr.shutdown().unwrap();
        }
        let mgr = LogManager::open(dir.path(), compact_config()).unwrap();
        let log = mgr
            .get_or_create(&TopicPartition::new("c", 0), compact_config())
            .unwrap();
        assert_eq!(log.collect_aborted_txns(0, i64::MAX).unwrap(), aborted);
    }

    #[test]
    fn an_interrupted_swap_keeps_the_cleaned_transaction_index() {
        // Crash points of a swap after its commit (`.log.swap` exists): before any `.swap` was renamed into
        // place, and after the transaction index was (the first segment's `.txnindex` is then the new one).
        for txn_index_in_place in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let pdir = dir.path().join("c-0");
            let (aborted, log_end);
            {
                let mgr = LogManager::open(dir.path(), compact_config()).unwrap();
                let log = mgr
                    .get_or_create(&TopicPartition::new("c", 0), compact_config())
                    .unwrap();
                let now = Clock::system().now_ms();
                aborted = plain_records_and_aborted_txns(&log, 6, now);
                log_end = log.log_end_offset();
                let segs = log.segments();
                let group = segs[..segs.len() - 1].to_vec();
                let cleaned = write_cleaned_unswapped(&log, &segs, &group, now);
                assert!(cleaned.has_txn_index());
                drop(cleaned);
                for suffix in SEGMENT_FILE_SUFFIXES {
                    fs::rename(
                        pdir.join(file_name(0, suffix, CLEANED_FILE_SUFFIX)),
                        pdir.join(file_name(0, suffix, SWAP_FILE_SUFFIX)),
                    )
                    .unwrap();
                }
                if txn_index_in_place {
                    fs::rename(
                        pdir.join(file_name(0, TXN_INDEX_FILE_SUFFIX, SWAP_FILE_SUFFIX)),
                        pdir.join(file_name(0, TXN_INDEX_FILE_SUFFIX, "")),
                    )
                    .unwrap();
                }
                // The log was flushed and checkpointed before the crash: the load replays producer state
                // (and rebuilds transaction indexes) only from the last snapshot, so the indexes read are
                // the cleaned ones.
                log.flush().unwrap();
                mgr.checkpoint().unwrap();
                mgr.abandon();
            }
            let mgr = LogManager::open(dir.path(), compact_config()).unwrap();
            let log = mgr
                .get_or_create(&TopicPartition::new("c", 0), compact_config())
                .unwrap();
            assert_eq!(log.log_end_offset(), log_end);
            assert_eq!(
                log.collect_aborted_txns(0, i64::MAX).unwrap(),
                aborted,
                "in place: {txn_index_in_place}"
            );
            assert_eq!(
                txn_index_files(&pdir),
                vec![file_name(0, TXN_INDEX_FILE_SUFFIX, "")],
                "the replaced segments' indexes are gone"
            );
            assert_no_swap_leftovers(&pdir);
        }
    }

    #[test]
    fn recovery_without_a_log_swap_keeps_the_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        let pdir = dir.path().join("c-0");
        {
            let mgr = LogManager::open(dir.path(), compact_config()).unwrap();
            let log = mgr
                .get_or_create(&TopicPartition::new("c", 0), compact_config())
                .unwrap();
            for i in 0..30 {
                produce(&log, &format!("k{}", i % 3), Some("v"), 1, Codec::None);
            }
            mgr.shutdown().unwrap();
        }
        // An index swap exists but the log never reached .swap: not committed.
        fs::write(
            pdir.join(file_name(0, INDEX_FILE_SUFFIX, SWAP_FILE_SUFFIX)),
            b"",
        )
        .unwrap();
        fs::write(
            pdir.join(file_name(0, LOG_FILE_SUFFIX, CLEANED_FILE_SUFFIX)),
            b"x",
        )
        .unwrap();
        let mgr = LogManager::open(dir.path(), compact_config()).unwrap();
        let log = mgr
            .get_or_create(&TopicPartition::new("c", 0), compact_config())
            .unwrap();
        assert_eq!(read_all(&log).len(), 30);
        assert_no_swap_leftovers(&pdir);
    }

    #[test]
    fn compaction_lags_and_the_dirty_ratio_decide_what_is_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        // A clock that moves only when told: min.compaction.lag.ms is passed by moving it, not waited for.
        let manual = ManualClock::new(1_700_000_000_000);
        let now = manual.clock().now_ms();
        let hour = 3_600_000;
        let config = |ratio: f64, min_lag: i64, max_lag: i64| LogConfig {
            min_cleanable_dirty_ratio: ratio,
            min_compaction_lag_ms: min_lag,
            max_compaction_lag_ms: max_lag,
            ..compact_config()
        };
        let mgr =
            LogManager::open_with_clock(dir.path(), compact_config(), manual.clock()).unwrap();
        let fresh = mgr
            .get_or_create(
                &TopicPartition::new("fresh", 0),
                config(0.0, hour, i64::MAX),
            )
            .unwrap();
        let old = mgr
            .get_or_create(&TopicPartition::new("old", 0), config(0.99, 0, hour))
            .unwrap();
        let lazy = mgr
            .get_or_create(&TopicPartition::new("lazy", 0), config(0.99, 0, i64::MAX))
            .unwrap();
        for i in 0..30 {
            let key = format!("k{i}");
            produce(&fresh, &key, Some("v"), now, Codec::None);
            produce(&old, &key, Some("v"), now - 2 * hour, Codec::None);
            produce(&lazy, &key, Some("v"), now - 2 * hour, Codec::None);
        }
        // Records newer than min.compaction.lag.ms are not cleanable at all.
        let range = cleanable_range(&fresh, None, now);
        assert_eq!((range.dirty_bytes, range.first_uncleanable), (0, 0));
        let cleaner = LogCleaner::new(
            dir.path(),
            CleanerConfig {
                dedupe_buffer_size: 1 << 20,
                ..CleanerConfig::default()
            },
            manual.clock(),
        );
        let logs = vec![fresh.clone(), old.clone(), lazy.clone()];
        // Never cleaned, a log is all dirty (ratio 1): both are cleaned whatever their threshold.
        let mut cleaned = Vec::new();
        while let Some((tp, _)) = cleaner.clean_filthiest(&logs, &|| false) {
            cleaned.push(tp.topic);
            assert!(cleaned.len() <= 2, "{cleaned:?}");
        }
        cleaned.sort();
        assert_eq!(cleaned, ["lazy", "old"]);
        // A little new dirty data: below min.cleanable.dirty.ratio, so only an expired
        // max.compaction.lag.ms makes a log due.
        for log in [&old, &lazy] {
            for _ in 0..3 {
                produce(log, "k0", Some("w"), now - 2 * hour, Codec::None);
            }
            let active = log.segments().last().unwrap().clone();
            assert!(
                log.roll_for_retention(active.base_offset(), active.size())
                    .unwrap()
            );
        }
        let checkpoint = |tp: &str| {
            lock(&cleaner.checkpoints)
                .get(&TopicPartition::new(tp, 0))
                .copied()
        };
        let old_range = cleanable_range(&old, checkpoint("old"), now);
        assert!(
            old_range.ratio() < 0.99 && old_range.overdue,
            "{old_range:?}"
        );
        let lazy_range = cleanable_range(&lazy, checkpoint("lazy"), now);
        assert!(
            lazy_range.ratio() < 0.99 && !lazy_range.overdue,
            "{lazy_range:?}"
        );
        let (tp, stats) = cleaner.clean_filthiest(&logs, &|| false).unwrap();
        assert_eq!(tp, TopicPartition::new("old", 0));
        assert!(stats.records_kept < stats.records_read);
        assert!(cleaner.clean_filthiest(&logs, &|| false).is_none());
        assert_eq!(read_all(&fresh).len(), 30);
        assert_eq!(read_all(&lazy).len(), 33);
        assert_eq!(read_all(&old).len(), 30, "k0's three updates became one");
        // The checkpoint makes the next pass start where this one ended.
        let cps = read_offset_checkpoint(&dir.path().join(CLEANER_OFFSET_CHECKPOINT))
            .unwrap()
            .unwrap();
        assert_eq!(
            cps.get(&TopicPartition::new("old", 0)),
            Some(&stats.end_offset)
        );
        // An hour later the fresh records have waited out min.compaction.lag.ms: now they are cleaned.
        manual.advance(std::time::Duration::from_millis(hour as u64));
        let (tp, _) = cleaner.clean_filthiest(&logs, &|| false).unwrap();
        assert_eq!(tp, TopicPartition::new("fresh", 0));
    }

    #[test]
    fn truncation_lowers_only_a_checkpoint_above_it_and_persists_it() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::Clock::system();
        let tp = TopicPartition::new("c", 0);
        let cleaner = LogCleaner::new(dir.path(), CleanerConfig::default(), clock.clone());
        cleaner.maybe_truncate_checkpoint(&tp, 5);
        assert_eq!(
            cleaner.checkpoint(&tp),
            None,
            "no checkpoint: nothing to lower"
        );
        lock(&cleaner.checkpoints).insert(tp.clone(), 40);
        cleaner.maybe_truncate_checkpoint(&tp, 50);
        assert_eq!(cleaner.checkpoint(&tp), Some(40));
        cleaner.maybe_truncate_checkpoint(&tp, 12);
        assert_eq!(cleaner.checkpoint(&tp), Some(12));
        let reopened = LogCleaner::new(dir.path(), CleanerConfig::default(), clock);
        assert_eq!(reopened.checkpoint(&tp), Some(12));
    }
}
