//! PartitionLog: the ordered segments of one partition, with its log start offset, high watermark, log end
//! offset, recovery point and leader epoch cache (Kafka's `UnifiedLog` + `LogLoader`, single replica).
//!
//! Concurrency: appends are serialised by the append lock. Reads take no lock beyond a short read lock on the
//! segment list (to clone an `Arc` snapshot) and on one index at a time. The appender publishes in this
//! order: bytes written -> segment committed size -> indexes -> log end offset -> high watermark, and a
//! reader loads the high watermark first, so everything below it is whole and indexed. fsync never runs in
//! `append`: it is handed to the LogManager's flusher thread.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::log::checkpoint::{LEADER_EPOCH_CHECKPOINT, sync_dir, write_leader_epoch_checkpoint};
use crate::log::error::LogError;
use crate::log::manager::FlusherMsg;
use crate::log::producer_state::{
    ActiveProducer, Analysis, CompletedTxn, LastRecord, ProducerStateManager, Validation,
};
use crate::log::read_buffer::FileSlice;
use crate::log::record_batch::{
    BatchesSummary, RecordBatchHeader, check_header, set_base_offset, set_partition_leader_epoch,
    validate_batches,
};
use crate::log::segment::{LogSegment, delete_segment_files};
use crate::log::txn_index::AbortedTxn;
use crate::log::validator;
use crate::log::{LogConfig, TopicPartition, lock, rlock, wlock};

mod aborted_txns;
mod follower;
mod load;
#[cfg(test)]
mod producer_state_tests;
mod truncation;

/// Upper bound of one read, whatever the caller asks (a single larger batch is still returned whole).
pub const MAX_READ_BYTES: usize = 64 * 1024 * 1024;
/// Segment positions are u32 in the offset index, and Kafka caps `segment.bytes` at i32::MAX.
const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;
/// A leader epoch checkpoint longer than this is not ours (epochs only grow, one entry per leader change).
const MAX_LEADER_EPOCH_ENTRIES: usize = 100_000;

/// Who is appending (Kafka's `AppendOrigin`): a client's batches are checked for what only the broker may
/// write; a coordinator writes its internal partitions (and, later, transaction markers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOrigin {
    Client,
    Coordinator,
}

/// Called after every successful flush with the new recovery point (see [`PartitionLog::set_flush_listener`]).
pub struct FlushListener(pub Box<dyn Fn(i64) + Send + Sync>);

impl std::fmt::Debug for FlushListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlushListener")
    }
}

/// Result of an append, for the produce response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Records written by this append (0 for a duplicate).
    pub record_count: u32,
    pub max_timestamp: i64,
    /// The time the batches were stamped with under LogAppendTime, -1 under CreateTime. For a duplicate,
    /// the original batch's max timestamp, as Kafka answers.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// The batch is a producer's retry of a batch already in the log: nothing was written, and the offsets
    /// are the original batch's.
    pub duplicate: bool,
    /// Transactions completed by the markers of this append (empty for any other append: no allocation).
    /// Each aborted one is already in the transaction index of the segment holding its marker.
    pub completed_txns: Vec<CompletedTxn>,
}

/// Result of a read, for the fetch response.
#[derive(Clone, Debug)]
pub struct FetchData {
    /// Whole batches only, all below the read's upper bound (empty when `file` holds them).
    pub records: Bytes,
    /// From [`PartitionLog::read_from`]: the batches, left in the segment file to be sent from there.
    pub file: Option<FileSlice>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// The end of the range a read_committed response must list aborted transactions for (Kafka's fetch
    /// upper bound): the offset after the last batch returned; with none, the base of the segment after
    /// the one read, else the log end offset.
    pub upper_bound_offset: i64,
    /// Under read_committed, the aborted transactions overlapping `[fetch offset, upper_bound_offset)`
    /// (filled by the partition, which knows the isolation); None otherwise.
    pub aborted_transactions: Option<Vec<AbortedTxn>>,
}

/// State only the appender touches.
#[derive(Debug)]
struct AppendState {
    /// (epoch, start offset) in increasing order: the leader epoch cache.
    leader_epochs: Vec<(i32, i64)>,
}

/// Everything `load` needs; the LogManager fills it from its checkpoints.
pub(crate) struct LoadParams {
    pub dir: PathBuf,
    pub tp: TopicPartition,
    pub config: LogConfig,
    pub had_clean_shutdown: bool,
    pub recovery_point: Option<i64>,
    pub log_start_offset: Option<i64>,
    pub flusher: Option<Sender<FlusherMsg>>,
    pub clock: Clock,
}

/// The log of one partition.
#[derive(Debug)]
pub struct PartitionLog {
    tp: TopicPartition,
    dir: PathBuf,
    /// Replaced whole when a topic's configs are altered; readers clone the Arc.
    config: RwLock<Arc<LogConfig>>,
    /// Copy-on-write list, replaced on roll; readers clone the Arc.
    segments: RwLock<Arc<Vec<Arc<LogSegment>>>>,
    append_lock: Mutex<AppendState>,
    /// What each idempotent or transactional producer last wrote, and the open transactions. Changed only
    /// under the append lock (lock order: append lock, then this one), so an append validates and applies
    /// against a state nobody else changes; readers (the last stable offset, DescribeProducers) take only
    /// this short lock, never waiting for an append's I/O.
    producer_state: Mutex<ProducerStateManager>,
    /// The producer state's [`ProducerStateManager::unstable_flag`]: lets `first_unstable_offset` skip the
    /// lock when no transaction is in flight (every fetch asks).
    unstable_txns: Arc<AtomicBool>,
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    high_watermark: AtomicI64,
    /// Everything below is fsynced.
    recovery_point: AtomicI64,
    hw_tx: watch::Sender<i64>,
    /// Told of every new recovery point: the partition's high-watermark rule may depend on it.
    flush_listener: RwLock<Option<Arc<FlushListener>>>,
    /// Serialises flushes and remembers when the last one finished (for `flush.ms`).
    flush_lock: Mutex<Instant>,
    flusher: Option<Sender<FlusherMsg>>,
    /// A flush request is queued: do not queue another.
    flush_requested: AtomicBool,
    /// A segment file was created since the last flush: the directory needs an fsync.
    dir_dirty: AtomicBool,
    /// The leader epoch checkpoint was rewritten since the last flush.
    epochs_dirty: AtomicBool,
    /// No more appends: closed, deleted, or a failed write or fsync left the data in doubt.
    closed: AtomicBool,
    /// Why a write or fsync failed, once one did. Sticky until restart: Linux reports a writeback error to
    /// one fsync only and then marks the pages clean, so a retried fsync "succeeds" over lost data. While set,
    /// the recovery point and high watermark never move again and close() reports the failure (so no
    /// clean-shutdown marker covers this partition). A write refused with ENOSPC/EDQUOT is not a failure:
    /// it lost nothing, is undone at once, and later appends are tried again.
    failure: OnceLock<String>,
    /// An append was refused for a full disk and none has succeeded since: logs once per episode, not once
    /// per refused (and retried) produce.
    disk_full: AtomicBool,
    /// Test seams: the next fsync of a flush fails / the next segment write fails with this errno (0: none).
    #[cfg(test)]
    fail_next_fsync: AtomicBool,
    #[cfg(test)]
    fail_next_write: std::sync::atomic::AtomicI32,
    /// Batches whose CRC was checked while loading (0 after a clean restart but for the active tail).
    recovery_batches_scanned: AtomicU64,
    self_ref: Weak<PartitionLog>,
    /// Serialises the background work that removes or replaces segments (retention, the cleaner).
    maintenance: Mutex<()>,
    /// Wall time for append timestamps and time-based rolling.
    clock: Clock,
    /// Transactional writes being verified with a transaction coordinator on another broker.
    verifications: Mutex<VerificationGuards>,
}

/// At most this many verifications in flight per partition; a new one past it forgets the others (they are
/// refused at append, and their producers retry).
const MAX_VERIFICATIONS_IN_FLIGHT: usize = 4096;

/// A verification started for a producer (Kafka's `VerificationGuard`): an append verified remotely holds
/// only while no transaction marker for that producer was written since it started
/// ([`PartitionLog::start_verification`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerificationGuard {
    pub producer_id: i64,
    token: u64,
}

/// The latest verification started per producer (Kafka's `VerificationStateEntry`).
#[derive(Debug, Default)]
struct VerificationGuards {
    next_token: u64,
    by_producer: std::collections::HashMap<i64, u64>,
}

fn offline(tp: &TopicPartition, why: impl std::fmt::Display) -> LogError {
    LogError::Offline(format!("{tp}: {why}"))
}

impl PartitionLog {
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> Arc<LogConfig> {
        rlock(&self.config).clone()
    }

    /// Applies altered topic configs without a restart (under the append lock: an append sees one config).
    pub fn update_config(&self, config: LogConfig) {
        let _append = lock(&self.append_lock);
        *wlock(&self.config) = Arc::new(config);
    }

    /// Registers the one listener told of every new recovery point (the partition owning this log),
    /// replacing an earlier one (a partition object made again over the same log takes over).
    pub fn set_flush_listener(&self, listener: FlushListener) {
        *wlock(&self.flush_listener) = Some(Arc::new(listener));
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }
    /// Offset below which everything is fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point.load(Ordering::Acquire)
    }
    pub fn segment_count(&self) -> usize {
        self.segments_snapshot().len()
    }
    /// Batches checked while loading this log: shows whether a restart had to scan (diagnostics, tests).
    pub fn recovery_batches_scanned(&self) -> u64 {
        self.recovery_batches_scanned.load(Ordering::Relaxed)
    }
    /// The leader epoch cache: (epoch, first offset of that epoch).
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        lock(&self.append_lock).leader_epochs.clone()
    }

    /// Receiver that changes whenever the high watermark advances, and once more when the log is closed,
    /// deleted or fails (long-poll fetches park on it; on a wake-up they should check `is_closed`).
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.hw_tx.subscribe()
    }

    /// True once the log takes no more appends: closed, deleted, or failed (see `is_failed`).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// True once a write or fsync failed: the partition is offline until the broker restarts and recovers it.
    pub fn is_failed(&self) -> bool {
        self.failure.get().is_some()
    }

    /// The error every operation that needs a healthy log returns after a failure.
    fn failed_error(&self) -> Option<LogError> {
        self.failure.get().map(|why| {
            offline(
                &self.tp,
                format_args!("an earlier write or fsync failed ({why}); offline until restart"),
            )
        })
    }

    /// Makes the failure sticky: no more appends, flushes or clean close. Idempotent.
    fn mark_failed(&self, why: &LogError) {
        self.closed.store(true, Ordering::Release);
        if self.failure.set(why.to_string()).is_ok() {
            tracing::error!(partition = %self.tp, error = %why, "write or fsync failed; partition taken offline");
            self.wake_watchers();
        }
    }

    /// Wakes every high watermark receiver without changing the value (a concurrent advance is never
    /// overwritten), so parked long polls re-check the log's state.
    fn wake_watchers(&self) {
        self.hw_tx.send_modify(|_| {});
    }

    /// Test seam: the next flush fails as if fsync had returned EIO.
    #[cfg(test)]
    pub(crate) fn inject_fsync_failure(&self) {
        self.fail_next_fsync.store(true, Ordering::Release);
    }

    /// Test seam: the next append writes half its bytes to the segment, then fails with `errno` (ENOSPC:
    /// the disk filled up mid-write; EIO: the device failed).
    #[cfg(test)]
    pub(crate) fn inject_write_failure(&self, errno: i32) {
        self.fail_next_write.store(errno, Ordering::Release);
    }

    fn segments_snapshot(&self) -> Arc<Vec<Arc<LogSegment>>> {
        rlock(&self.segments).clone()
    }

    /// The order of the offsets: log start <= high watermark <= log end, and recovery point <= log end.
    /// Checked (in debug builds, so by every test) wherever one of them moves. The log end is read last:
    /// outside truncation it only grows, so a concurrent append cannot make a consistent state look broken.
    fn debug_check_offsets(&self) {
        let start = self.log_start_offset();
        let hw = self.high_watermark();
        let rp = self.recovery_point();
        let leo = self.log_end_offset();
        debug_assert!(
            start <= hw && hw <= leo,
            "invariant: log start {start} <= high watermark {hw} <= log end {leo} ({})",
            self.tp
        );
        debug_assert!(
            rp <= leo,
            "invariant: recovery point {rp} <= log end {leo} ({})",
            self.tp
        );
    }

    /// Moves the high watermark up to `to` (never down) and wakes its receivers. The partition decides the
    /// value (its high-watermark rule); the log only keeps it, because reads and long polls need it next to
    /// the data.
    pub(crate) fn maybe_increment_high_watermark(&self, to: i64) {
        let leo = self.log_end_offset();
        assert!(
            to <= leo,
            "invariant: high watermark {to} <= log end offset {leo} ({})",
            self.tp
        );
        let prev = self.high_watermark.fetch_max(to, Ordering::AcqRel);
        self.debug_check_offsets();
        if to > prev {
            self.hw_tx.send_if_modified(|v| {
                let moved = *v < to;
                if moved {
                    *v = to;
                }
                moved
            });
        }
    }

    /// Validates every batch, then (under the append lock) assigns offsets and the leader epoch in place,
    /// rolls if needed, appends, indexes, advances the log end offset and applies the flush policy. The high
    /// watermark is the caller's (the partition's rule). Nothing is written if any batch is invalid. A full disk
    /// (ENOSPC/EDQUOT) fails only this append, which is undone; any other storage error takes the log
    /// offline for good (see `failure`).
    pub fn append(
        &self,
        records: BytesMut,
        leader_epoch: i32,
        origin: AppendOrigin,
    ) -> Result<AppendInfo, LogError> {
        self.append_verified(records, leader_epoch, origin, None)
    }

    /// [`Self::append`] for a client's transactional write (KIP-890 part 1): when the batch is
    /// transactional and its producer has no transaction open on this partition, `verify(producer_id,
    /// producer_epoch)` is asked under the append lock whether the partition is part of the producer's
    /// ongoing transaction; `false` refuses the append (TransactionNotVerified). Asking under the lock
    /// orders the answer before any marker the coordinator writes here, so a late write cannot open a
    /// transaction that was already decided (a hanging transaction).
    pub fn append_verified(
        &self,
        mut records: BytesMut,
        leader_epoch: i32,
        origin: AppendOrigin,
        verify: Option<&dyn Fn(i64, i16) -> bool>,
    ) -> Result<AppendInfo, LogError> {
        // One snapshot for the whole append: configs may be altered meanwhile, and each read takes a lock.
        let config = self.config();
        let (summary, log_append_time) = self.validate_for_append(&mut records, &config, origin)?;
        let record_count = u32::try_from(summary.record_count)
            .map_err(|_| LogError::CorruptMessage("too many records in one append".into()))?;
        let mut st = lock(&self.append_lock);
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(offline(&self.tp, "log is closed"));
        }
        if origin == AppendOrigin::Coordinator {
            self.void_verifications(&records);
        }
        let base_offset = self.log_end_offset();
        // Producer state: only batches with a producer id pay for it (no lock, no allocation otherwise).
        let producer_append = if summary.has_producer_id {
            match self.analyze_producer_state(&records, &summary, base_offset, origin)? {
                Analysis::Duplicate(original) => {
                    // Kafka answers a retry with the original batch's offsets and max timestamp.
                    return Ok(AppendInfo {
                        base_offset: original.first_offset(),
                        last_offset: original.last_offset,
                        max_timestamp: original.timestamp,
                        log_append_time: original.timestamp,
                        log_start_offset: self.log_start_offset(),
                        duplicate: true,
                        ..AppendInfo::default()
                    });
                }
                Analysis::Append(pending) => Some(pending),
            }
        } else {
            None
        };
        if let (Some(verify), Some(_)) = (verify, &producer_append) {
            self.verify_transaction_start(&records, verify)?;
        }
        let next = assign_offsets(&mut records, base_offset, leader_epoch)?;
        let last_offset = next - 1;
        let rolled = match self.write_locked(
            &mut st,
            &config,
            &records,
            base_offset,
            last_offset,
            leader_epoch,
        ) {
            Ok(rolled) => rolled,
            Err(e) if e.is_disk_full() => {
                // Undone by write_locked: nothing of this append is visible or will be, the log end offset
                // did not move, and the next append may succeed once space is freed.
                if !self.disk_full.swap(true, Ordering::AcqRel) {
                    tracing::warn!(partition = %self.tp, error = %e, offset = base_offset,
                        "appends refused: disk full");
                }
                return Err(e);
            }
            Err(e) => {
                self.mark_failed(&e);
                return Err(e);
            }
        };
        let completed_txns = match producer_append {
            Some(pending) => self.complete_producer_append(pending, next)?,
            None => Vec::new(),
        };
        self.log_end_offset.store(next, Ordering::Release);
        self.debug_check_offsets();
        if self.disk_full.swap(false, Ordering::AcqRel) {
            tracing::info!(partition = %self.tp, offset = base_offset, "appends resumed: disk space available");
        }
        let unflushed = u64::try_from(next - self.recovery_point()).unwrap_or(0);
        let flush_due = unflushed >= config.flush_interval_messages;
        drop(st);

        if flush_due || rolled {
            // Like Kafka, also flush a segment once it stops being active. Never blocks: the flusher does it.
            self.request_flush();
        }
        Ok(AppendInfo {
            base_offset,
            last_offset,
            record_count,
            max_timestamp: if log_append_time == validator::NO_TIMESTAMP {
                summary.max_timestamp
            } else {
                log_append_time
            },
            log_append_time,
            log_start_offset: self.log_start_offset(),
            duplicate: false,
            completed_txns,
        })
    }

    /// Under the append lock: a transactional data batch whose producer has no transaction open here
    /// opens one, which `verify` must allow (see [`Self::append_verified`]).
    fn verify_transaction_start(
        &self,
        records: &[u8],
        verify: &dyn Fn(i64, i16) -> bool,
    ) -> Result<(), LogError> {
        let h = RecordBatchHeader::parse(records)?;
        if h.is_transactional()
            && !h.is_control()
            && !self.has_ongoing_txn(h.producer_id())
            && !verify(h.producer_id(), h.producer_epoch())
        {
            return Err(LogError::TransactionNotVerified(format!(
                "producer {} epoch {} has no ongoing transaction with {}",
                h.producer_id(),
                h.producer_epoch(),
                self.tp
            )));
        }
        Ok(())
    }

    /// Validates the producer fields of an append placed at `base_offset`, under the append lock (Kafka's
    /// `analyzeAndValidateProducerState`). A client sends one batch per partition (Kafka refuses more in a
    /// Produce v3+ request); a coordinator may send several, each checked against the ones before it.
    fn analyze_producer_state(
        &self,
        records: &[u8],
        summary: &BatchesSummary,
        base_offset: i64,
        origin: AppendOrigin,
    ) -> Result<Analysis, LogError> {
        let validation = match origin {
            AppendOrigin::Client => Validation::Client,
            AppendOrigin::Coordinator => Validation::Coordinator,
        };
        if validation == Validation::Client && summary.batch_count > 1 {
            return Err(LogError::InvalidRecord {
                message: "Produce requests are only allowed to contain exactly one record batch per partition"
                    .into(),
                record_errors: Vec::new(),
            });
        }
        lock(&self.producer_state).analyze(records, base_offset, validation)
    }

    /// Installs the producer state of a written append (now ending at `next`), records each aborted
    /// transaction its markers completed in the `.txnindex` of the marker's segment, and returns the
    /// completed transactions. Under the append lock, after the write and before the log end moves (as
    /// Kafka's `UnifiedLog.append`): a reader that sees the new offsets below the high watermark also sees
    /// the transactions they open, and finds the index entry of every aborted transaction below the last
    /// stable offset. A failed index write takes the log offline (see `append_aborted_txn_locked`).
    fn complete_producer_append(
        &self,
        pending: crate::log::producer_state::ProducerAppend,
        next: i64,
    ) -> Result<Vec<CompletedTxn>, LogError> {
        let completed = lock(&self.producer_state).apply(pending, next);
        for ct in completed.iter().filter(|ct| ct.is_aborted) {
            self.append_aborted_txn_locked(load::aborted_txn(ct))?;
        }
        Ok(completed)
    }

    /// The first offset of a transaction not yet decided: the earliest open transaction, or the earliest
    /// completed one whose marker is not below `high_watermark` (forgotten once it is), not below the log
    /// start. None when there is none; the partition's last stable offset is then the high watermark, else `min(this, hw)`. Load the
    /// high watermark before calling: an append registers its transactions before its offsets can count.
    pub fn first_unstable_offset(&self, high_watermark: i64) -> Option<i64> {
        if !self.unstable_txns.load(Ordering::Acquire) {
            return None;
        }
        let first = lock(&self.producer_state).first_unstable_offset(high_watermark)?;
        // DeleteRecords may have moved the log start past an open transaction's start (Kafka's
        // `maybeIncrementFirstUnstableOffset`): nothing below the log start is readable anyway.
        Some(first.max(self.log_start_offset()))
    }

    /// What DescribeProducers answers for this partition, by producer id.
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        lock(&self.producer_state).active_producers()
    }

    /// The last record of every known producer, by producer id: the cleaner keeps each (see
    /// [`LastRecord`]).
    pub fn last_records_of_active_producers(&self) -> std::collections::HashMap<i64, LastRecord> {
        lock(&self.producer_state).last_records_of_active_producers()
    }

    /// Kafka's last stable offset of this log: the first unstable offset, capped by the high watermark
    /// (loaded first: an append registers its transactions before its offsets can count).
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        self.first_unstable_offset(hw)
            .map_or(hw, |first| first.min(hw))
    }

    /// Whether `producer_id` has a transaction open here (if not, a transactional batch from it must be
    /// verified with its coordinator first).
    pub fn has_ongoing_txn(&self, producer_id: i64) -> bool {
        lock(&self.producer_state).has_ongoing_txn(producer_id)
    }

    /// Starts verifying a transactional write of `producer_id` with a coordinator elsewhere (KIP-890): a
    /// transaction marker for that producer written from now on voids the returned guard, so a write
    /// verified against a transaction that ended meanwhile cannot open a new (hanging) one here.
    pub fn start_verification(&self, producer_id: i64) -> VerificationGuard {
        let mut guards = lock(&self.verifications);
        if guards.by_producer.len() >= MAX_VERIFICATIONS_IN_FLIGHT
            && !guards.by_producer.contains_key(&producer_id)
        {
            guards.by_producer.clear();
        }
        // Requests of one producer in flight together share the guard: the first to append opens the
        // transaction, and the others then need no verification.
        let next = guards.next_token + 1;
        let token = *guards.by_producer.entry(producer_id).or_insert(next);
        if token == next {
            guards.next_token = next;
        }
        VerificationGuard { producer_id, token }
    }

    /// Whether `guard` still holds: no marker for its producer was written since it started.
    /// Asked under the append lock, by an [`Self::append_verified`] check.
    pub fn verification_holds(&self, guard: VerificationGuard) -> bool {
        lock(&self.verifications)
            .by_producer
            .get(&guard.producer_id)
            .is_some_and(|&token| token == guard.token)
    }

    /// Under the append lock, before a coordinator's batches are written: every producer that gets a
    /// transaction marker loses its verification in flight.
    fn void_verifications(&self, records: &[u8]) {
        let mut guards = lock(&self.verifications);
        if guards.by_producer.is_empty() {
            return;
        }
        let mut pos = 0;
        while let Ok(h) = RecordBatchHeader::parse(&records[pos..]) {
            if h.is_control() {
                guards.by_producer.remove(&h.producer_id());
            }
            match h.total_size() {
                Some(size) if pos + size < records.len() => pos += size,
                _ => break,
            }
        }
    }

    /// Removes producers idle for `producer.id.expiration.ms` (by their last batch's timestamp) with no open
    /// transaction; returns how many went. A later batch from one is accepted at any sequence.
    pub fn remove_expired_producers(&self, now_ms: i64) -> usize {
        let expiration = self.config().producer_id_expiration_ms;
        let _append = lock(&self.append_lock);
        lock(&self.producer_state).remove_expired_producers(now_ms, expiration)
    }

    /// Offsets of the producer state snapshots on disk, oldest first (diagnostics, tests).
    pub fn producer_snapshot_offsets(&self) -> Vec<i64> {
        lock(&self.producer_state).snapshot_offsets()
    }

    /// Everything about an append that needs no lock: the batches' framing and CRCs, who may write control
    /// batches, the records against the topic's configs, recompression to the topic's codec, and the
    /// LogAppendTime stamp. Returns the batches' summary and the stamped time (or `NO_TIMESTAMP`).
    fn validate_for_append(
        &self,
        records: &mut BytesMut,
        config: &LogConfig,
        origin: AppendOrigin,
    ) -> Result<(BatchesSummary, i64), LogError> {
        let summary = validate_batches(records, config.max_message_bytes)?;
        if origin == AppendOrigin::Client && summary.has_control_batch {
            // Markers are the transaction coordinator's to write, as in Kafka's LogValidator.
            return Err(LogError::InvalidRecord {
                message: "Clients are not allowed to write control records".into(),
                record_errors: Vec::new(),
            });
        }
        let now = self.clock.now_ms();
        validator::validate_records(records, config, now, &self.tp)?;
        if let Some(recompressed) = validator::recompress(records, config)? {
            // Takes over the Vec's allocation (it is unique), no copy.
            *records = BytesMut::from(Bytes::from(recompressed));
        }
        let log_append_time = validator::stamp(records, config, now);
        Ok((summary, log_append_time))
    }

    /// The I/O of an append, under the append lock: leader epoch checkpoint, roll, segment write. Returns
    /// whether the log rolled. Every error here is a storage error. A disk-full error (see
    /// `LogError::is_disk_full`) leaves the log as it was before the call, but for a leader epoch entry at
    /// the unchanged log end offset (still right for the next append) or a new, empty active segment.
    fn write_locked(
        &self,
        st: &mut AppendState,
        config: &LogConfig,
        records: &[u8],
        base_offset: i64,
        last_offset: i64,
        leader_epoch: i32,
    ) -> Result<bool, LogError> {
        let now = self.clock.now_ms();
        if leader_epoch >= 0
            && st
                .leader_epochs
                .last()
                .is_none_or(|(e, _)| leader_epoch > *e)
        {
            let mut epochs = st.leader_epochs.clone();
            epochs.push((leader_epoch, base_offset));
            debug_assert_epochs_grow(&epochs);
            write_leader_epoch_checkpoint(&self.dir.join(LEADER_EPOCH_CHECKPOINT), &epochs, false)?;
            st.leader_epochs = epochs;
            self.epochs_dirty.store(true, Ordering::Release);
        }

        let segments = self.segments_snapshot();
        let mut active = segments
            .last()
            .expect("invariant: a loaded log has a segment")
            .clone();
        let mut rolled = false;
        if self.should_roll(config, &active, records.len(), last_offset, now) {
            active = self.roll(&segments, base_offset)?;
            rolled = true;
        } else if active.size() == 0 && active.indexes_full() {
            // An empty segment cannot roll; its indexes were not preallocated at load (disk full). Reserve
            // them now or refuse the append, so that it never runs without room for its final entries.
            active.make_active(config.max_index_bytes)?;
        }
        #[cfg(test)]
        {
            let errno = self.fail_next_write.swap(0, Ordering::AcqRel);
            if errno != 0 {
                active.inject_write_failure(errno);
            }
        }
        active.append(records, now, config.index_interval_bytes)?;
        Ok(rolled)
    }

    fn should_roll(
        &self,
        config: &LogConfig,
        active: &LogSegment,
        append_bytes: usize,
        last_offset: i64,
        now: i64,
    ) -> bool {
        let size = active.size();
        if size == 0 {
            return false; // an empty segment takes any append; rolling it would reuse its name
        }
        let max = config.segment_bytes.min(MAX_SEGMENT_BYTES);
        let too_big = size.saturating_add(append_bytes as u64) > max;
        let too_old = active.rolling_base_ms().is_some_and(|t| {
            now.saturating_sub(t) >= i64::try_from(config.segment_ms).unwrap_or(i64::MAX)
        });
        let offsets_overflow = last_offset - active.base_offset() > i64::from(u32::MAX);
        too_big || too_old || offsets_overflow || active.indexes_full()
    }

    /// Starts a new segment at `base_offset` and closes the old active one to appends. Under the append
    /// lock. The new segment (with the first chunk of its indexes reserved on disk) is made first: when that
    /// fails (a full disk), nothing was changed and the old segment stays active.
    fn roll(
        &self,
        segments: &Arc<Vec<Arc<LogSegment>>>,
        base_offset: i64,
    ) -> Result<Arc<LogSegment>, LogError> {
        let old = segments
            .last()
            .expect("invariant: a loaded log has a segment");
        let new = Arc::new(LogSegment::create(
            &self.dir,
            base_offset,
            self.config().max_index_bytes,
        )?);
        if let Err(e) = old.on_become_inactive() {
            // Trimming only shrinks files, so this is no full disk; the log is taken offline anyway.
            drop(new);
            if let Err(cleanup) = delete_segment_files(&self.dir, base_offset) {
                tracing::warn!(partition = %self.tp, segment = base_offset, error = %cleanup,
                    "could not remove the segment of an abandoned roll");
            }
            return Err(e.into());
        }
        let mut list = Vec::with_capacity(segments.len() + 1);
        list.extend(segments.iter().cloned());
        list.push(new.clone());
        *wlock(&self.segments) = Arc::new(list);
        self.dir_dirty.store(true, Ordering::Release);
        // The producer state as of the new segment's base, so a recovery of this segment starts from it. Not
        // fsynced under the lock (as Kafka): a torn snapshot fails its CRC at load and an older one is used.
        let mut producers = lock(&self.producer_state);
        producers.update_map_end_offset(base_offset);
        if let Err(e) = producers.take_snapshot(false) {
            tracing::warn!(partition = %self.tp, offset = base_offset, error = %e,
                "could not write a producer snapshot at roll; recovery replays from an older one");
        }
        drop(producers);
        tracing::debug!(partition = %self.tp, segment = base_offset, "rolled segment");
        Ok(new)
    }

    /// Queues one flush of this partition with the flusher; a request already queued covers this one (so
    /// the flusher's channel holds at most one request per partition). Never blocks.
    fn request_flush(&self) {
        let Some(tx) = &self.flusher else { return };
        if self.flush_requested.swap(true, Ordering::SeqCst) {
            return;
        }
        if tx.send(FlusherMsg::Flush(self.self_ref.clone())).is_err() {
            // The flusher is gone (shutting down): nothing will flush; allow a later request.
            self.flush_requested.store(false, Ordering::SeqCst);
        }
    }

    /// Called by the flusher just before it flushes: appends from now on must queue a new request.
    pub(crate) fn take_flush_request(&self) {
        self.flush_requested.store(false, Ordering::SeqCst);
    }

    /// Flushes if `flush.ms` has passed since the last flush and there is unflushed data.
    pub(crate) fn flush_if_due(&self, now: Instant) -> Result<(), LogError> {
        let Some(ms) = self.config().flush_interval_ms else {
            return Ok(());
        };
        if self.is_failed() {
            return Ok(()); // reported once when it failed; retrying cannot help
        }
        if self.log_end_offset() <= self.recovery_point() {
            return Ok(());
        }
        let last = *lock(&self.flush_lock);
        if now.saturating_duration_since(last).as_millis() >= u128::from(ms) {
            self.flush()?;
        }
        Ok(())
    }

    /// Whole batches starting at the batch containing `offset`, up to `max_bytes`, never a batch whose last
    /// offset is >= `upper_bound` (the caller's isolation: high watermark, last stable offset or log end);
    /// at least one whole batch when `min_one` (KIP-74). Returns data from one segment. `offset == log end
    /// offset` gives no records; outside `[log_start, log_end]` is OffsetOutOfRange.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        upper_bound: i64,
    ) -> Result<FetchData, LogError> {
        self.read_from(offset, max_bytes, min_one, upper_bound, false)
    }

    /// [`PartitionLog::read`] for a fetch response: with `from_file`, a range of at least
    /// [`SEND_FROM_FILE_MIN_BYTES`] is returned as a [`FileSlice`] (in `file`, with `records` empty) instead
    /// of being read, when walking its batch headers takes at most [`SEND_FROM_FILE_MAX_BATCHES`] reads.
    pub fn read_from(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        upper_bound: i64,
        from_file: bool,
    ) -> Result<FetchData, LogError> {
        // The high watermark first: everything below it is whole and indexed (see the module doc).
        let hw = self.high_watermark();
        let leo = self.log_end_offset();
        let log_start = self.log_start_offset();
        let out_of_range = LogError::OffsetOutOfRange {
            offset,
            log_start,
            log_end: leo,
        };
        if offset < log_start || offset > leo {
            return Err(out_of_range);
        }
        let bound = upper_bound.min(leo);
        let mut records = Bytes::new();
        let mut file = None;
        let segments = self.segments_snapshot();
        let idx = segments.partition_point(|s| s.base_offset() <= offset);
        if idx == 0 {
            return Err(out_of_range);
        }
        let mut upper_bound_offset = segments.get(idx).map_or(leo, |s| s.base_offset());
        if offset < bound {
            for (i, seg) in segments[idx - 1..].iter().enumerate() {
                if let Some(first) = seg.find_batch(offset)? {
                    upper_bound_offset = segments.get(idx + i).map_or(leo, |s| s.base_offset());
                    if first.last_offset < bound {
                        let last;
                        (records, file, last) = read_batches(
                            seg,
                            first.position,
                            first.size,
                            bound,
                            max_bytes,
                            min_one,
                            from_file,
                        )?;
                        if let Some(last) = last {
                            upper_bound_offset = last + 1;
                        }
                    }
                    break;
                }
            }
        }
        Ok(FetchData {
            records,
            file,
            high_watermark: hw,
            log_start_offset: log_start,
            log_end_offset: leo,
            upper_bound_offset,
            aborted_transactions: None,
        })
    }

    /// Kafka's `fetchOffsetByTimestamp`: the first record at or after the log start offset whose timestamp
    /// is >= `ts`, with that record's own timestamp, among batches below `upper_bound`. None when no
    /// record reaches `ts`.
    pub fn offset_for_timestamp(
        &self,
        ts: i64,
        upper_bound: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let hw = upper_bound.min(self.log_end_offset());
        let log_start = self.log_start_offset();
        for seg in self.segments_snapshot().iter() {
            if seg.max_timestamp() >= ts
                && let Some(found) = seg.find_offset_for_timestamp(ts, log_start, hw)?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Bytes of all segments' log files (DescribeLogDirs).
    pub fn size_bytes(&self) -> u64 {
        self.segments_snapshot().iter().map(|s| s.size()).sum()
    }

    /// KIP-734 (ListOffsets MAX_TIMESTAMP): the first record with the largest timestamp below the high
    /// watermark, as (offset, timestamp), decompressing its batch when needed (see
    /// [`LogSegment::find_record`] for a batch whose records cannot be read). Found through the segments'
    /// max timestamps and the time index, not by scanning the log.
    pub fn offset_of_max_timestamp(
        &self,
        upper_bound: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let hw = upper_bound.min(self.log_end_offset());
        let log_start = self.log_start_offset();
        let segments = self.segments_snapshot();
        let mut best: Option<&Arc<LogSegment>> = None;
        for seg in segments.iter() {
            if seg.max_timestamp() > best.map_or(validator::NO_TIMESTAMP, |b| b.max_timestamp()) {
                best = Some(seg);
            }
        }
        let Some(seg) = best else { return Ok(None) };
        let ts = seg.max_timestamp();
        // No record is above the segment's max: the first one reaching it carries it.
        if let Some((offset, found_ts)) = seg.find_offset_for_timestamp(ts, log_start, hw)?
            && found_ts == ts
        {
            return Ok(Some((offset, ts)));
        }
        // The newest batches are above the high watermark (durable mode): walk the visible ones.
        let Some((seg, info)) = self.max_timestamp_batch_below(&segments, hw)? else {
            return Ok(None);
        };
        Ok(seg
            .find_record(&info, log_start, |t| t == info.max_timestamp)?
            .or(Some((info.base_offset.max(log_start), info.max_timestamp))))
    }

    /// The first batch with the largest maxTimestamp among batches wholly below `hw`, by walking headers.
    fn max_timestamp_batch_below<'a>(
        &self,
        segments: &'a [Arc<LogSegment>],
        hw: i64,
    ) -> Result<Option<(&'a Arc<LogSegment>, crate::log::segment::BatchInfo)>, LogError> {
        let mut best: Option<(&Arc<LogSegment>, crate::log::segment::BatchInfo)> = None;
        for seg in segments {
            let mut offset = seg.base_offset();
            while offset < hw {
                let Some(info) = seg.find_batch(offset)? else {
                    break;
                };
                if info.last_offset >= hw {
                    break;
                }
                if info.max_timestamp
                    > best.map_or(validator::NO_TIMESTAMP, |(_, b)| b.max_timestamp)
                {
                    best = Some((seg, info));
                }
                offset = info.last_offset + 1;
            }
        }
        Ok(best)
    }

    /// fsyncs everything appended so far, advances the recovery point and tells the flush listener. Segments wholly below the recovery point are skipped; an inactive segment's indexes are
    /// fsynced once. An fsync failure takes the partition offline for good: the kernel may have dropped the
    /// data and would not report it again, so every later flush fails at once without an fsync.
    pub fn flush(&self) -> Result<(), LogError> {
        let mut last_flush = lock(&self.flush_lock);
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        let target = self.log_end_offset();
        let result = self.flush_to(target);
        *last_flush = Instant::now();
        if let Err(e) = result {
            self.mark_failed(&e);
            return Err(e);
        }
        let recovery_point = target.max(self.recovery_point.fetch_max(target, Ordering::AcqRel));
        self.debug_check_offsets();
        // Cloned out of the lock: the listener takes the partition's own locks.
        let listener = rlock(&self.flush_listener).clone();
        if let Some(listener) = listener {
            (listener.0)(recovery_point);
        }
        Ok(())
    }

    fn flush_to(&self, target: i64) -> Result<(), LogError> {
        let segments = self.segments_snapshot();
        let rp = self.recovery_point();
        if target <= rp
            && !self.dir_dirty.load(Ordering::Acquire)
            && !self.epochs_dirty.load(Ordering::Acquire)
        {
            return Ok(());
        }
        #[cfg(test)]
        if self.fail_next_fsync.swap(false, Ordering::AcqRel) {
            return Err(io::Error::from_raw_os_error(libc::EIO).into());
        }
        for (i, seg) in segments.iter().enumerate() {
            match segments.get(i + 1).map(|s| s.base_offset()) {
                // Inactive: its log needs an fsync unless wholly below the recovery point; its (trimmed)
                // indexes need one once.
                Some(next_base) => {
                    if next_base > rp {
                        seg.flush_log()?;
                    }
                    seg.flush_indexes_once()?;
                }
                None => seg.flush_log()?,
            }
            // Entries of aborted transactions are durable with the markers they follow.
            seg.flush_txn_index()?;
        }
        if self.epochs_dirty.swap(false, Ordering::AcqRel) {
            fs::File::open(self.dir.join(LEADER_EPOCH_CHECKPOINT))?.sync_all()?;
            self.dir_dirty.store(true, Ordering::Release);
        }
        if self.dir_dirty.swap(false, Ordering::AcqRel)
            && let Err(e) = sync_dir(&self.dir)
        {
            self.dir_dirty.store(true, Ordering::Release);
            return Err(e.into());
        }
        Ok(())
    }

    /// Clean close: no more appends, flush, record the final max timestamp, trim and fsync the active
    /// segment's indexes, and wake parked high watermark receivers. Idempotent, except that a log whose write
    /// or fsync failed (now or earlier) always returns that error: it was not closed cleanly.
    pub fn close(&self) -> Result<(), LogError> {
        let _st = lock(&self.append_lock);
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.wake_watchers();
        let result = self.flush().and_then(|()| {
            let segments = self.segments_snapshot();
            let active = segments
                .last()
                .expect("invariant: a loaded log has a segment");
            active.on_become_inactive()?;
            active.flush_indexes()?;
            // At the log end, fsynced: the next load after this clean stop reads it instead of the log.
            let mut producers = lock(&self.producer_state);
            producers.update_map_end_offset(self.log_end_offset());
            match producers.take_snapshot(true) {
                Ok(true) => sync_dir(&self.dir)?,
                Ok(false) => {}
                // An older snapshot is loaded and the log replayed from it, and an empty state loses nothing:
                // the stop can still be clean (a full disk must not make every partition recover).
                Err(e) if producers.latest_snapshot_offset().is_some() || producers.is_empty() => {
                    tracing::warn!(partition = %self.tp, error = %e,
                        "no producer snapshot at close; the next load replays from an older one");
                }
                // Without any snapshot a clean load would take the producers for none: not clean.
                Err(e) => return Err(e.into()),
            }
            Ok(())
        });
        if let Err(e) = &result {
            self.mark_failed(e);
        }
        result
    }

    /// Stops appends without touching the files (deletion, crash simulation) and wakes parked receivers.
    pub(crate) fn mark_closed(&self) {
        let _st = lock(&self.append_lock);
        self.closed.store(true, Ordering::Release);
        self.wake_watchers();
    }
}

/// Retention, DeleteRecords and compaction: moving the log start offset and removing or replacing closed
/// segments. None of this holds the append lock across file I/O: the segment list is swapped under it, and
/// files are renamed afterwards (readers holding the old snapshot keep their open files).
impl PartitionLog {
    /// Held by whoever removes or replaces segments, so two of them never work on the same list.
    pub(crate) fn maintenance_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        lock(&self.maintenance)
    }

    /// The maintenance lock if nobody holds it (retention skips a partition the cleaner is working on).
    pub(crate) fn try_maintenance_lock(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        match self.maintenance.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// The current segments, oldest first; the last one is active.
    pub(crate) fn segments(&self) -> Arc<Vec<Arc<LogSegment>>> {
        self.segments_snapshot()
    }

    /// DeleteRecords: moves the log start offset up to `offset` (-1 means the high watermark) and returns the
    /// new log start offset (the partition's low watermark). Beyond the high watermark, or negative other
    /// than -1, is OFFSET_OUT_OF_RANGE. Segments wholly below the new start are removed by the next
    /// retention pass; reads below it fail with OFFSET_OUT_OF_RANGE at once.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let mut st = lock(&self.append_lock);
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        let hw = self.high_watermark();
        let offset = if offset == -1 { hw } else { offset };
        if offset < 0 || offset > hw {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset(),
                log_end: hw,
            });
        }
        let prev = self.log_start_offset.fetch_max(offset, Ordering::AcqRel);
        self.debug_check_offsets();
        lock(&self.producer_state).on_log_start_offset_incremented(prev.max(offset));
        if offset > prev {
            self.epochs_follow_log_start(&mut st, offset);
            tracing::info!(partition = %self.tp, log_start_offset = offset, "log start offset advanced by DeleteRecords");
        }
        Ok(prev.max(offset))
    }

    /// The leader epoch cache after the log start moved up to `start` (see `truncate_epochs_from_start`).
    /// A checkpoint that cannot be written leaves the cache as it was: an entry below the log start only
    /// answers OffsetForLeaderEpoch for offsets no longer readable.
    fn epochs_follow_log_start(&self, st: &mut AppendState, start: i64) {
        if let Err(e) = self.truncate_epochs_from_start(st, start) {
            tracing::warn!(partition = %self.tp, error = %e, start,
                "could not trim the leader epoch cache to the log start");
        }
    }

    /// Rolls the active segment so that retention can delete it (Kafka does the same when every segment has
    /// expired), provided it is still the segment retention judged: `expected_base` holding `expected_size`
    /// bytes. False when an append got there first (its fresh records must not be deleted). Under the append
    /// lock, like any roll.
    pub(crate) fn roll_for_retention(
        &self,
        expected_base: i64,
        expected_size: u64,
    ) -> Result<bool, LogError> {
        let _st = lock(&self.append_lock);
        if self.closed.load(Ordering::Acquire) {
            return Err(offline(&self.tp, "log is closed"));
        }
        let segments = self.segments_snapshot();
        let active = segments
            .last()
            .expect("invariant: a loaded log has a segment");
        if active.size() == 0
            || active.base_offset() != expected_base
            || active.size() != expected_size
        {
            return Ok(false);
        }
        let leo = self.log_end_offset();
        if let Err(e) = self.roll(&segments, leo) {
            // A full disk abandons the roll cleanly (the old segment stays active); anything else is in doubt.
            if !e.is_disk_full() {
                self.mark_failed(&e);
            }
            return Err(e);
        }
        self.request_flush();
        Ok(true)
    }

    /// Drops the `count` oldest segments from the list (never the active one) and advances the log start
    /// offset to the first remaining segment. Returns the removed segments, whose files the caller renames.
    /// Call with the maintenance lock held.
    pub(crate) fn remove_oldest_segments(&self, count: usize) -> Vec<Arc<LogSegment>> {
        let mut st = lock(&self.append_lock);
        let segments = self.segments_snapshot();
        let count = count.min(segments.len().saturating_sub(1));
        if count == 0 {
            return Vec::new();
        }
        let removed = segments[..count].to_vec();
        let kept = segments[count..].to_vec();
        let new_start = kept[0].base_offset();
        *wlock(&self.segments) = Arc::new(kept);
        self.log_start_offset.fetch_max(new_start, Ordering::AcqRel);
        self.debug_check_offsets();
        let log_start = self.log_start_offset();
        self.epochs_follow_log_start(&mut st, log_start);
        let mut producers = lock(&self.producer_state);
        producers.on_log_start_offset_incremented(log_start);
        if let Err(e) = producers.delete_snapshots_before(log_start) {
            tracing::warn!(partition = %self.tp, error = %e, "could not delete producer snapshots below the log start");
        }
        removed
    }

    /// Swaps the consecutive closed segments `old` for their cleaned replacement `new` (same first base
    /// offset). False, with nothing changed, when the list no longer holds `old` in place. Call with the
    /// maintenance lock held.
    pub(crate) fn replace_segments(&self, old: &[Arc<LogSegment>], new: Arc<LogSegment>) -> bool {
        let _st = lock(&self.append_lock);
        let segments = self.segments_snapshot();
        let Some(first) = old.first() else {
            return false;
        };
        let Some(at) = segments.iter().position(|s| Arc::ptr_eq(s, first)) else {
            return false;
        };
        let end = at + old.len();
        if end >= segments.len()
            || !segments[at..end]
                .iter()
                .zip(old)
                .all(|(a, b)| Arc::ptr_eq(a, b))
        {
            return false;
        }
        let mut list = Vec::with_capacity(segments.len() - old.len() + 1);
        list.extend(segments[..at].iter().cloned());
        list.push(new);
        list.extend(segments[end..].iter().cloned());
        *wlock(&self.segments) = Arc::new(list);
        true
    }
}

/// The leader epoch cache's order: each entry has a larger epoch and a start offset no smaller than the one
/// before (a follower's truncation and the leader's fetch-from-epoch both rely on it).
fn debug_assert_epochs_grow(epochs: &[(i32, i64)]) {
    debug_assert!(
        epochs
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "invariant: leader epochs and their start offsets grow: {epochs:?}"
    );
}

/// Reads whole batches from `seg` starting at `start` (a batch of `first_size` bytes), stopping before
/// `max_bytes` would be exceeded or a batch reaches `hw`. The first batch is returned even when larger than
/// `max_bytes` if `min_one`. Returns the batches (read, or with `from_file` possibly left in the file) and
/// the last offset of the last one.
fn read_batches(
    seg: &LogSegment,
    start: u64,
    first_size: usize,
    hw: i64,
    max_bytes: usize,
    min_one: bool,
    from_file: bool,
) -> Result<(Bytes, Option<FileSlice>, Option<i64>), LogError> {
    let available = usize::try_from(seg.size().saturating_sub(start)).unwrap_or(usize::MAX);
    let mut want = max_bytes.min(MAX_READ_BYTES).min(available);
    if min_one && first_size > want {
        want = first_size.min(available);
    }
    if want == 0 {
        return Ok((Bytes::new(), None, None));
    }
    if from_file
        && want >= SEND_FROM_FILE_MIN_BYTES
        && let Some((end, last_offset, records)) = walk_batches(seg, start, want, hw)?
    {
        if end >= SEND_FROM_FILE_MIN_BYTES {
            return Ok((
                Bytes::new(),
                Some(seg.slice(start, end, records)),
                last_offset,
            ));
        }
        // Small after all: read exactly the batches found.
        let buf = seg.read_records(start, end)?;
        return Ok((buf.into_bytes(), None, last_offset));
    }
    let mut buf = seg.read_records(start, want)?;
    let mut end = 0usize;
    let mut last_offset = None;
    while let Ok(h) = RecordBatchHeader::parse(&buf[end..]) {
        let size = check_header(&h).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", seg.log_path().display()),
            )
        })?;
        if end + size > buf.len() || h.last_offset() >= hw {
            break;
        }
        end += size;
        last_offset = Some(h.last_offset());
    }
    buf.truncate(end);
    Ok((buf.into_bytes(), None, last_offset))
}

/// Ranges at least this long are sent from the segment file rather than read (see
/// [`PartitionLog::read_from`]): below it a copy costs less than the extra system calls.
pub const SEND_FROM_FILE_MIN_BYTES: usize = 64 * 1024;
/// Most batch headers read to find where a range sent from the file ends. More batches (small ones) are
/// cheaper to read in one go and walk in memory.
pub const SEND_FROM_FILE_MAX_BATCHES: usize = 32;

/// The whole batches from `start` that fit in `want` bytes and end below `hw`, found by reading their headers
/// only: (bytes, last offset, records). None when there are more than [`SEND_FROM_FILE_MAX_BATCHES`].
/// The first batch is taken when it fits `want` (the caller widened `want` for KIP-74's first batch).
fn walk_batches(
    seg: &LogSegment,
    start: u64,
    want: usize,
    hw: i64,
) -> Result<Option<(usize, Option<i64>, u64)>, LogError> {
    let limit = start + want as u64;
    let mut end = 0usize;
    let mut last_offset = None;
    let mut records = 0u64;
    for _ in 0..SEND_FROM_FILE_MAX_BATCHES {
        let pos = start + end as u64;
        // A batch running past `limit` is the end of this read, not damage: look no further than the segment.
        let Some(info) = seg.read_batch_info(pos, seg.size())? else {
            return Ok(Some((end, last_offset, records)));
        };
        if pos + info.size as u64 > limit || info.last_offset >= hw {
            return Ok(Some((end, last_offset, records)));
        }
        end += info.size;
        last_offset = Some(info.last_offset);
        records += u64::try_from(info.record_count).unwrap_or(0);
    }
    Ok(None)
}

/// Stamps validated `records` with consecutive offsets from `base_offset` and with `leader_epoch`, in
/// place; returns the offset after the last record.
fn assign_offsets(
    records: &mut [u8],
    base_offset: i64,
    leader_epoch: i32,
) -> Result<i64, LogError> {
    let mut next = base_offset;
    let mut pos = 0usize;
    while pos < records.len() {
        let (count, size) = {
            let h =
                RecordBatchHeader::parse(&records[pos..]).expect("invariant: validated batches");
            (
                h.record_count(),
                h.total_size().expect("invariant: validated batches"),
            )
        };
        set_base_offset(&mut records[pos..], next);
        set_partition_leader_epoch(&mut records[pos..], leader_epoch);
        next = next
            .checked_add(i64::from(count))
            .ok_or_else(|| LogError::CorruptMessage("offset overflow".into()))?;
        pos += size;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogManager;
    use crate::log::record_batch::test_support::{batch, batch_with_timestamps};
    use crate::log::segment::{
        INDEX_FILE_SUFFIX, LOG_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX, segment_file_name,
    };
    use crate::replica::partition::leader_append;
    use std::time::Duration;

    pub(super) fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    pub(super) fn small_config() -> LogConfig {
        LogConfig {
            segment_bytes: 1024,
            index_interval_bytes: 128,
            ..LogConfig::default()
        }
    }

    pub(super) fn open(dir: &Path, config: LogConfig) -> (Arc<LogManager>, Arc<PartitionLog>) {
        let mgr = LogManager::open(dir, config.clone()).unwrap();
        let log = mgr.get_or_create(&tp(), config).unwrap();
        (mgr, log)
    }

    fn append(log: &Arc<PartitionLog>, records: usize, value_len: usize, ts: i64) -> AppendInfo {
        leader_append(log, BytesMut::from(&batch(records, value_len, ts)[..]), 0).unwrap()
    }

    /// (base offset, last offset) of each batch in `records`, checking every batch is whole and valid.
    fn batches(records: &[u8]) -> Vec<(i64, i64)> {
        if records.is_empty() {
            return Vec::new();
        }
        validate_batches(records, u32::MAX).expect("fetched data must be whole valid batches");
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < records.len() {
            let h = RecordBatchHeader::parse(&records[pos..]).unwrap();
            out.push((h.base_offset(), h.last_offset()));
            pos += h.total_size().unwrap();
        }
        out
    }

    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn log_file(log: &PartitionLog, base: i64) -> PathBuf {
        log.dir().join(segment_file_name(base, LOG_FILE_SUFFIX))
    }

    #[test]
    fn append_read_round_trip_across_segment_rolls() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path(), small_config());
        let mut expected = Vec::new();
        for i in 0..40 {
            let info = append(&log, 1 + i % 3, 60, 1_000 + i as i64);
            assert_eq!(
                info.base_offset,
                expected.last().map_or(0, |&(_, l): &(i64, i64)| l + 1)
            );
            assert_eq!(info.last_offset - info.base_offset + 1, (1 + i % 3) as i64);
            expected.push((info.base_offset, info.last_offset));
        }
        let leo = expected.last().unwrap().1 + 1;
        assert_eq!(log.log_end_offset(), leo);
        assert_eq!(log.high_watermark(), leo);
        assert!(
            log.segment_count() > 5,
            "1 KiB segments must roll: {}",
            log.segment_count()
        );
        // Consume everything the way a consumer does, following the next offset.
        let mut got = Vec::new();
        let mut offset = 0;
        while offset < leo {
            let data = log.read(offset, 300, true, log.high_watermark()).unwrap();
            let bs = batches(&data.records);
            assert!(!bs.is_empty(), "no data at {offset}");
            offset = bs.last().unwrap().1 + 1;
            got.extend(bs);
        }
        assert_eq!(got, expected);
        assert!(
            log.read(leo, 1000, true, log.high_watermark())
                .unwrap()
                .records
                .is_empty(),
            "reading at the log end is empty"
        );
        assert!(matches!(
            log.read(leo + 1, 1000, true, log.high_watermark()),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(matches!(
            log.read(-1, 1000, true, log.high_watermark()),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        // Segment files are named by their base offsets.
        assert!(log_file(&log, 0).exists());
    }

    #[test]
    fn read_from_middle_of_batch_returns_containing_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(
            dir.path(),
            LogConfig {
                index_interval_bytes: 1,
                ..small_config()
            },
        );
        for _ in 0..10 {
            append(&log, 5, 10, 0);
        }
        for offset in [0, 2, 4, 7, 23, 49] {
            let bs = batches(
                &log.read(offset, 1, true, log.high_watermark())
                    .unwrap()
                    .records,
            );
            assert_eq!(bs.len(), 1);
            assert!(
                bs[0].0 <= offset && offset <= bs[0].1,
                "offset {offset} not in {:?}",
                bs[0]
            );
        }
    }

    #[test]
    fn min_one_returns_a_batch_larger_than_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path(), LogConfig::default());
        append(&log, 1, 2000, 0);
        append(&log, 1, 10, 0);
        append(&log, 1, 10, 0);
        assert!(
            log.read(0, 100, false, log.high_watermark())
                .unwrap()
                .records
                .is_empty(),
            "without min_one nothing fits"
        );
        let one = log.read(0, 100, true, log.high_watermark()).unwrap();
        assert_eq!(
            batches(&one.records),
            vec![(0, 0)],
            "KIP-74: exactly the first whole batch"
        );
        let all = log.read(0, 1 << 20, false, log.high_watermark()).unwrap();
        assert_eq!(batches(&all.records), vec![(0, 0), (1, 1), (2, 2)]);
        let two = log.read(1, 2 * 80, false, log.high_watermark()).unwrap();
        assert_eq!(
            batches(&two.records).len(),
            2,
            "max_bytes bounds whole batches"
        );
        assert_eq!(
            batches(
                &log.read(1, 100, false, log.high_watermark())
                    .unwrap()
                    .records
            )
            .len(),
            1
        );
    }

    #[test]
    fn durable_log_gates_reads_on_the_flushed_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            flush_interval_messages: 1,
            ..LogConfig::default()
        };
        // Without a flusher nothing is fsynced until an explicit flush: the gating is deterministic.
        let log = load_without_flusher(dir.path(), config.clone());
        let mut hw_rx = log.subscribe_high_watermark();
        append(&log, 3, 10, 0);
        assert_eq!(log.log_end_offset(), 3);
        assert_eq!(log.high_watermark(), 0, "not fsynced yet");
        let data = log.read(0, 1 << 20, true, log.high_watermark()).unwrap();
        assert!(data.records.is_empty(), "reads stop at the high watermark");
        assert_eq!((data.high_watermark, data.log_end_offset), (0, 3));
        assert!(!hw_rx.has_changed().unwrap());
        log.flush().unwrap();
        assert!(hw_rx.has_changed().unwrap());
        assert_eq!(*hw_rx.borrow_and_update(), 3);
        assert_eq!(log.recovery_point(), 3);
        assert_eq!(
            batches(
                &log.read(0, 1 << 20, true, log.high_watermark())
                    .unwrap()
                    .records
            ),
            vec![(0, 2)]
        );

        // Through the manager the flusher advances it on its own.
        let dir2 = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir2.path(), config);
        for _ in 0..20 {
            append(&log, 2, 10, 0);
        }
        wait_until("the flusher to advance the high watermark", || {
            log.high_watermark() == 40
        });
        assert_eq!(log.recovery_point(), 40);
    }

    /// A log without a flusher: nothing is fsynced but by explicit `flush`, so recovery points are exact.
    fn load_without_flusher(dir: &Path, config: LogConfig) -> Arc<PartitionLog> {
        PartitionLog::load_without_flusher(dir.join("t-0"), tp(), config)
    }

    #[test]
    fn failed_fsync_is_sticky_and_never_advances_recovery_point_or_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let durable = LogConfig {
            flush_interval_messages: 1,
            ..LogConfig::default()
        };
        let log = load_without_flusher(dir.path(), durable);
        let mut hw_rx = log.subscribe_high_watermark();
        append(&log, 3, 10, 0);
        log.flush().unwrap();
        assert_eq!((log.recovery_point(), log.high_watermark()), (3, 3));
        hw_rx.borrow_and_update();

        append(&log, 2, 10, 0);
        log.inject_fsync_failure();
        assert!(matches!(log.flush(), Err(LogError::Storage(_))));
        assert!(log.is_failed() && log.is_closed());
        assert!(hw_rx.has_changed().unwrap(), "parked readers are woken");
        assert_eq!(
            *hw_rx.borrow_and_update(),
            3,
            "without moving the watermark"
        );
        // Linux would let this retry succeed over the lost pages: it must not be tried at all.
        assert!(matches!(log.flush(), Err(LogError::Offline(_))));
        assert_eq!(log.recovery_point(), 3);
        assert_eq!(log.high_watermark(), 3);
        assert!(
            log.read(3, 1 << 20, true, log.high_watermark())
                .unwrap()
                .records
                .is_empty()
        );
        assert!(matches!(
            leader_append(&log, BytesMut::from(&batch(1, 10, 0)[..]), 0),
            Err(LogError::Offline(_))
        ));
        assert_eq!(log.log_end_offset(), 5);
        assert!(matches!(log.close(), Err(LogError::Offline(_))));
        assert!(
            matches!(log.close(), Err(LogError::Offline(_))),
            "close keeps reporting the failure"
        );
    }

    #[test]
    fn failed_write_takes_the_log_offline() {
        let dir = tempfile::tempdir().unwrap();
        let log = load_without_flusher(dir.path(), small_config());
        append(&log, 2, 10, 0);
        let committed = fs::metadata(log_file(&log, 0)).unwrap().len();
        log.inject_write_failure(libc::EIO);
        let err = leader_append(&log, BytesMut::from(&batch(1, 10, 0)[..]), 0).unwrap_err();
        assert!(matches!(err, LogError::Storage(_)), "{err:?}");
        assert!(!err.is_disk_full());
        assert!(log.is_failed());
        assert_eq!(fs::metadata(log_file(&log, 0)).unwrap().len(), committed);
        assert_eq!(log.log_end_offset(), 2);
        assert!(matches!(
            leader_append(&log, BytesMut::from(&batch(1, 10, 0)[..]), 0),
            Err(LogError::Offline(_))
        ));
        assert!(matches!(log.flush(), Err(LogError::Offline(_))));
        assert_eq!(log.recovery_point(), 0);
        assert!(log.close().is_err());
        assert_eq!(
            batches(
                &log.read(0, 1 << 20, true, log.high_watermark())
                    .unwrap()
                    .records
            ),
            vec![(0, 1)],
            "what was written before stays readable"
        );
    }

    /// Every batch of the log from offset 0, following the next offset as a consumer does.
    fn read_all(log: &PartitionLog) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.high_watermark() {
            let bs = batches(
                &log.read(offset, 1 << 20, true, log.high_watermark())
                    .unwrap()
                    .records,
            );
            assert!(!bs.is_empty(), "no data at {offset}");
            offset = bs.last().unwrap().1 + 1;
            out.extend(bs);
        }
        out
    }

    /// Offsets are dense: each batch starts right after the previous one, from 0.
    fn assert_dense(bs: &[(i64, i64)]) {
        let mut next = 0;
        for &(base, last) in bs {
            assert_eq!(base, next, "dense offsets in {bs:?}");
            next = last + 1;
        }
    }

    fn is_disk_full(r: Result<AppendInfo, LogError>) -> bool {
        matches!(&r, Err(e @ LogError::Storage(_)) if e.is_disk_full())
    }

    #[test]
    fn disk_full_write_is_undone_and_the_next_append_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config();
        let (mgr, log) = open(dir.path(), config.clone());
        for i in 0..5 {
            append(&log, 2, 30, i);
        }
        let active = rlock(&log.segments).last().unwrap().base_offset();
        let committed = fs::metadata(log_file(&log, active)).unwrap().len();
        let before = read_all(&log);
        let mut hw_rx = log.subscribe_high_watermark();
        hw_rx.borrow_and_update();

        log.inject_write_failure(libc::ENOSPC);
        assert!(is_disk_full(leader_append(
            &log,
            BytesMut::from(&batch(3, 30, 9)[..]),
            0
        )));
        assert!(
            !log.is_failed() && !log.is_closed(),
            "the partition stays online"
        );
        assert_eq!(
            fs::metadata(log_file(&log, active)).unwrap().len(),
            committed,
            "the half-written batch is cut off"
        );
        assert_eq!((log.log_end_offset(), log.high_watermark()), (10, 10));
        assert!(!hw_rx.has_changed().unwrap());
        assert_eq!(read_all(&log), before, "reads are unaffected");

        let info = append(&log, 3, 30, 10);
        assert_eq!((info.base_offset, info.last_offset), (10, 12));
        log.flush().unwrap();
        assert_eq!(log.recovery_point(), 13);
        let after = read_all(&log);
        assert_eq!(after.len(), before.len() + 1);
        assert_dense(&after);

        mgr.shutdown().unwrap();
        drop((log, mgr));
        let (_mgr, log) = open(dir.path(), config);
        assert_eq!(log.log_end_offset(), 13);
        assert_eq!(read_all(&log), after, "a restart recovers the same log");
        assert_eq!(append(&log, 1, 30, 0).base_offset, 13);
    }

    #[test]
    fn disk_full_at_roll_keeps_the_old_segment_active() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config();
        let (mgr, log) = open(dir.path(), config.clone());
        let one = batch(1, 60, 0).len() as u64;
        let mut i = 0;
        // Fill the first segment up to the point where the next batch rolls.
        while rlock(&log.segments).last().unwrap().size() + one <= config.segment_bytes {
            append(&log, 1, 60, i);
            i += 1;
        }
        assert_eq!(log.segment_count(), 1);
        let leo = log.log_end_offset();
        let before = read_all(&log);

        crate::log::index::fail_next_index_allocation(libc::ENOSPC);
        assert!(is_disk_full(leader_append(
            &log,
            BytesMut::from(&batch(1, 60, i)[..]),
            0
        )));
        assert!(!log.is_failed());
        assert_eq!(log.segment_count(), 1, "the roll was abandoned");
        for suffix in [LOG_FILE_SUFFIX, INDEX_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX] {
            assert!(
                !log.dir().join(segment_file_name(leo, suffix)).exists(),
                "no half-made segment file {suffix}"
            );
        }
        assert_eq!(log.log_end_offset(), leo);
        assert_eq!(read_all(&log), before);
        assert_eq!(
            log.offset_for_timestamp(0, log.high_watermark()).unwrap(),
            Some((0, 0)),
            "the old segment's indexes still serve lookups"
        );

        assert_eq!(append(&log, 1, 60, i).base_offset, leo);
        assert_eq!(log.segment_count(), 2, "the retried roll succeeds");
        let after = read_all(&log);
        assert_dense(&after);
        mgr.shutdown().unwrap();
        drop((log, mgr));
        let (_mgr, log) = open(dir.path(), config);
        assert_eq!(log.segment_count(), 2);
        assert_eq!(read_all(&log), after);
    }

    #[test]
    fn restart_on_a_full_disk_serves_reads_and_appends_once_space_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config();
        let (mgr, log) = open(dir.path(), config.clone());
        for i in 0..5 {
            append(&log, 2, 30, i);
        }
        let before = read_all(&log);
        mgr.shutdown().unwrap();
        drop((log, mgr));

        // Every index preallocation while loading (and at the first append's roll) finds the disk full.
        crate::log::index::fail_next_index_allocations(libc::ENOSPC, 5);
        let (mgr, log) = open(dir.path(), config.clone());
        assert_eq!(
            read_all(&log),
            before,
            "the partition loads and serves reads"
        );
        assert!(is_disk_full(leader_append(
            &log,
            BytesMut::from(&batch(1, 30, 0)[..]),
            0
        )));
        crate::log::index::fail_next_index_allocations(libc::ENOSPC, 0);
        assert!(!log.is_failed());
        assert_eq!(log.segment_count(), 1);
        let info = append(&log, 1, 30, 0);
        assert_eq!(info.base_offset, 10);
        assert_eq!(
            log.segment_count(),
            2,
            "the unpreallocated segment was rolled"
        );
        let after = read_all(&log);
        assert_dense(&after);
        assert_eq!(after.len(), before.len() + 1);
        mgr.shutdown().unwrap();
        drop((log, mgr));
        let (_mgr, log) = open(dir.path(), config);
        assert_eq!(read_all(&log), after);
    }

    #[test]
    fn epoch_entry_of_a_refused_append_is_dropped_at_load_even_on_a_full_disk() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config();
        let (mgr, log) = open(dir.path(), config.clone());
        leader_append(&log, BytesMut::from(&batch(2, 5, 0)[..]), 0).unwrap();
        // The new epoch is checkpointed before the write, which then finds the disk full.
        log.inject_write_failure(libc::ENOSPC);
        assert!(is_disk_full(leader_append(
            &log,
            BytesMut::from(&batch(1, 5, 0)[..]),
            4
        )));
        assert_eq!(log.leader_epochs(), vec![(0, 0), (4, 2)]);
        mgr.shutdown().unwrap();
        drop((log, mgr));

        // Loading drops (4, 2), which is not below the log end offset; the rewrite finds the disk full.
        let tmp = dir
            .path()
            .join("t-0")
            .join(format!("{LEADER_EPOCH_CHECKPOINT}.tmp"));
        std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
        let (_mgr, log) = open(dir.path(), config);
        assert_eq!(log.leader_epochs(), vec![(0, 0)]);
        assert_eq!(read_all(&log), vec![(0, 1)]);
        assert_eq!(
            leader_append(&log, BytesMut::from(&batch(1, 5, 0)[..]), 4)
                .unwrap()
                .base_offset,
            2
        );
        assert_eq!(log.leader_epochs(), vec![(0, 0), (4, 2)]);
    }

    #[test]
    fn empty_active_segment_without_preallocated_indexes_allocates_before_its_first_append() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config();
        let (mgr, log) = open(dir.path(), config.clone());
        mgr.shutdown().unwrap();
        drop((log, mgr));
        crate::log::index::fail_next_index_allocations(libc::ENOSPC, 2);
        let (_mgr, log) = open(dir.path(), config);
        crate::log::index::fail_next_index_allocation(libc::ENOSPC);
        assert!(is_disk_full(leader_append(
            &log,
            BytesMut::from(&batch(1, 30, 0)[..]),
            0
        )));
        assert_eq!(fs::metadata(log_file(&log, 0)).unwrap().len(), 0);
        for i in 0..8 {
            append(&log, 1, 30, i);
        }
        assert_eq!(
            log.segment_count(),
            1,
            "preallocated again: no roll for full indexes"
        );
        let seg = rlock(&log.segments).last().unwrap().clone();
        seg.sanity_check_indexes(None).unwrap();
        assert!(seg.last_indexed_position() > 0, "entries were indexed");
    }

    #[test]
    fn disk_full_on_the_leader_epoch_checkpoint_fails_only_that_append() {
        let dir = tempfile::tempdir().unwrap();
        let log = load_without_flusher(dir.path(), small_config());
        leader_append(&log, BytesMut::from(&batch(2, 5, 0)[..]), 0).unwrap();
        let committed = fs::metadata(log_file(&log, 0)).unwrap().len();
        // The checkpoint's temp file is /dev/full: its writes fail with ENOSPC, as on a full disk.
        let tmp = log.dir().join(format!("{LEADER_EPOCH_CHECKPOINT}.tmp"));
        std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
        assert!(is_disk_full(leader_append(
            &log,
            BytesMut::from(&batch(1, 5, 0)[..]),
            4
        )));
        assert!(!log.is_failed());
        assert_eq!(fs::metadata(log_file(&log, 0)).unwrap().len(), committed);
        assert_eq!(log.leader_epochs(), vec![(0, 0)]);
        assert_eq!(
            fs::read_to_string(log.dir().join(LEADER_EPOCH_CHECKPOINT)).unwrap(),
            "0\n1\n0 0\n",
            "the old checkpoint is intact"
        );
        assert!(fs::symlink_metadata(&tmp).is_err(), "temp file removed");
        assert_eq!(
            leader_append(&log, BytesMut::from(&batch(1, 5, 0)[..]), 4)
                .unwrap()
                .base_offset,
            2
        );
        assert_eq!(log.leader_epochs(), vec![(0, 0), (4, 2)]);
    }

    #[test]
    fn close_wakes_high_watermark_receivers_and_is_closed_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = load_without_flusher(dir.path(), small_config());
        append(&log, 2, 10, 0);
        let mut rx = log.subscribe_high_watermark();
        rx.borrow_and_update();
        assert!(!log.is_closed());
        log.close().unwrap();
        assert!(log.is_closed() && !log.is_failed());
        assert!(
            rx.has_changed().unwrap(),
            "a parked fetch wakes and re-checks"
        );
        assert_eq!(*rx.borrow_and_update(), 2);
        log.close().unwrap();
    }

    #[test]
    fn durable_group_commit_across_many_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            flush_interval_messages: 1,
            ..LogConfig::default()
        };
        let mgr = LogManager::open(dir.path(), config.clone()).unwrap();
        let logs: Vec<_> = (0..16)
            .map(|p| {
                mgr.get_or_create(&TopicPartition::new("g", p), config.clone())
                    .unwrap()
            })
            .collect();
        std::thread::scope(|s| {
            for log in &logs {
                s.spawn(move || {
                    for _ in 0..25 {
                        append(log, 1, 100, 0);
                    }
                });
            }
        });
        for log in &logs {
            wait_until("every partition's high watermark", || {
                log.high_watermark() == 25
            });
        }
        mgr.shutdown().unwrap();
    }

    #[test]
    fn recovery_truncates_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config();
        let (mgr, log) = open(dir.path(), config.clone());
        for i in 0..30 {
            append(&log, 2, 40, i);
        }
        let leo = log.log_end_offset();
        let last_base = rlock(&log.segments).last().unwrap().base_offset();
        let path = log_file(&log, last_base);
        let expected = batches(
            &log.read(0, 1 << 20, true, log.high_watermark())
                .unwrap()
                .records,
        );
        mgr.abandon();
        drop((log, mgr));
        // A torn write: half a batch, then garbage.
        let half = batch(3, 40, 0);
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        io::Write::write_all(&mut f, &half[..half.len() / 2]).unwrap();
        io::Write::write_all(&mut f, &[0xAB; 100]).unwrap();
        drop(f);

        let (mgr, log) = open(dir.path(), config);
        assert_eq!(log.log_end_offset(), leo);
        assert_eq!(log.high_watermark(), leo);
        assert_eq!(
            batches(
                &log.read(0, 1 << 20, true, log.high_watermark())
                    .unwrap()
                    .records
            ),
            expected
        );
        let info = append(&log, 1, 10, 0);
        assert_eq!(info.base_offset, leo);
        let tail = batches(
            &log.read(leo, 1 << 20, true, log.high_watermark())
                .unwrap()
                .records,
        );
        assert_eq!(tail, vec![(leo, leo)]);
        mgr.shutdown().unwrap();
    }

    #[test]
    fn corrupt_crc_in_the_middle_truncates_there_and_drops_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config();
        let (mgr, log) = open(dir.path(), config.clone());
        for i in 0..40 {
            append(&log, 1, 60, i);
        }
        let segs: Vec<i64> = rlock(&log.segments)
            .iter()
            .map(|s| s.base_offset())
            .collect();
        assert!(segs.len() >= 4);
        let victim = segs[1];
        // Flip a payload byte of the third batch of the second segment.
        let data = log
            .read(victim, 1 << 20, true, log.high_watermark())
            .unwrap();
        let bs = batches(&data.records);
        let third_pos: usize = (0..2).map(|_| data.records.len() / bs.len()).sum();
        let corrupt_at = bs[2].0;
        mgr.abandon();
        drop((log, mgr));
        let path = dir
            .path()
            .join("t-0")
            .join(segment_file_name(victim, LOG_FILE_SUFFIX));
        let mut bytes = fs::read(&path).unwrap();
        bytes[third_pos + 70] ^= 0xFF;
        fs::write(&path, &bytes).unwrap();

        let (_mgr, log) = open(dir.path(), config);
        assert_eq!(
            log.log_end_offset(),
            corrupt_at,
            "truncated at the corrupt batch"
        );
        assert_eq!(log.segment_count(), 2, "later segments deleted");
        assert!(
            !dir.path()
                .join("t-0")
                .join(segment_file_name(segs[2], LOG_FILE_SUFFIX))
                .exists()
        );
        let all: Vec<_> = {
            let mut v = batches(
                &log.read(0, 1 << 20, true, log.high_watermark())
                    .unwrap()
                    .records,
            );
            v.extend(batches(
                &log.read(victim, 1 << 20, true, log.high_watermark())
                    .unwrap()
                    .records,
            ));
            v
        };
        assert_eq!(all.last().unwrap().1, corrupt_at - 1);
        assert_eq!(append(&log, 1, 10, 0).base_offset, corrupt_at);
    }

    #[test]
    fn missing_or_corrupt_index_is_rebuilt_after_a_clean_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            index_interval_bytes: 1,
            ..small_config()
        };
        let (mgr, log) = open(dir.path(), config.clone());
        for i in 0..40 {
            append(&log, 1, 60, i);
        }
        let segs: Vec<i64> = rlock(&log.segments)
            .iter()
            .map(|s| s.base_offset())
            .collect();
        mgr.shutdown().unwrap();
        drop((log, mgr));
        let part = dir.path().join("t-0");
        fs::remove_file(part.join(segment_file_name(segs[0], INDEX_FILE_SUFFIX))).unwrap();
        // Entries out of order in the second segment's index.
        let idx = part.join(segment_file_name(segs[1], INDEX_FILE_SUFFIX));
        let mut b = fs::read(&idx).unwrap();
        assert!(b.len() >= 16);
        b.swap(3, 11);
        fs::write(&idx, &b).unwrap();
        // Not a whole number of entries in the third segment's time index.
        let tidx = part.join(segment_file_name(segs[2], TIME_INDEX_FILE_SUFFIX));
        let mut t = fs::read(&tidx).unwrap();
        t.push(0);
        fs::write(&tidx, &t).unwrap();

        let (_mgr, log) = open(dir.path(), config);
        assert!(
            log.recovery_batches_scanned() >= 3 * 3,
            "three segments rescanned"
        );
        for (i, seg) in rlock(&log.segments).iter().enumerate() {
            let next = segs.get(i + 1).copied().or(Some(log.log_end_offset()));
            seg.sanity_check_indexes(next).unwrap();
        }
        assert!(
            part.join(segment_file_name(segs[0], INDEX_FILE_SUFFIX))
                .exists()
        );
        for offset in 0..40 {
            assert_eq!(
                batches(
                    &log.read(offset, 1, true, log.high_watermark())
                        .unwrap()
                        .records
                ),
                vec![(offset, offset)]
            );
        }
    }

    #[test]
    fn clean_restart_does_not_rescan() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config();
        let (mgr, log) = open(dir.path(), config.clone());
        for i in 0..100 {
            append(&log, 1, 20, i);
        }
        mgr.shutdown().unwrap();
        mgr.shutdown().unwrap(); // idempotent
        drop((log, mgr));
        assert!(dir.path().join(CLEAN_SHUTDOWN_MARKER).exists());

        let (mgr, log) = open(dir.path(), config.clone());
        assert!(mgr.had_clean_shutdown());
        assert!(
            !dir.path().join(CLEAN_SHUTDOWN_MARKER).exists(),
            "marker removed at start"
        );
        assert_eq!(log.log_end_offset(), 100);
        let clean_scan = log.recovery_batches_scanned();
        assert!(
            clean_scan <= 4,
            "only the active segment's tail is checked, scanned {clean_scan}"
        );
        mgr.abandon();
        drop((log, mgr));

        // No marker now, and the checkpoint's recovery point is the end: the unclean start scans only the
        // segment that holds it.
        let (mgr, log) = open(dir.path(), config.clone());
        assert!(!mgr.had_clean_shutdown());
        let last_segment_batches = log.recovery_batches_scanned();
        assert!(last_segment_batches < 100 && last_segment_batches > 0);
        mgr.abandon();
        drop((log, mgr));

        // Without checkpoints everything is scanned.
        fs::remove_file(
            dir.path()
                .join(crate::log::checkpoint::RECOVERY_POINT_CHECKPOINT),
        )
        .unwrap();
        let (_mgr, log) = open(dir.path(), config);
        assert_eq!(log.recovery_batches_scanned(), 100);
        assert_eq!(log.log_end_offset(), 100);
    }

    #[test]
    fn clean_restart_still_truncates_junk_after_the_active_tail() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            index_interval_bytes: 1,
            ..small_config()
        };
        let (mgr, log) = open(dir.path(), config.clone());
        for i in 0..30 {
            append(&log, 1, 20, i);
        }
        let active = rlock(&log.segments).last().unwrap().base_offset();
        let path = log_file(&log, active);
        let good_len = fs::metadata(&path).unwrap().len();
        mgr.shutdown().unwrap();
        drop((log, mgr));
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        io::Write::write_all(&mut f, &batch(1, 20, 0)[..50]).unwrap();
        drop(f);

        let (_mgr, log) = open(dir.path(), config);
        assert_eq!(log.log_end_offset(), 30);
        assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
        assert_eq!(append(&log, 1, 20, 0).base_offset, 30);
        assert_eq!(
            batches(
                &log.read(29, 1 << 20, true, log.high_watermark())
                    .unwrap()
                    .records
            )[0],
            (29, 29)
        );
        assert_eq!(
            batches(
                &log.read(30, 1 << 20, true, log.high_watermark())
                    .unwrap()
                    .records
            ),
            vec![(30, 30)]
        );
    }

    const CLEAN_SHUTDOWN_MARKER: &str = crate::log::manager::CLEAN_SHUTDOWN_FILE;

    #[test]
    fn max_timestamp_lookup_finds_the_exact_record_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mgr, log) = open(dir.path(), small_config());
        assert_eq!(
            log.offset_of_max_timestamp(log.high_watermark()).unwrap(),
            None,
            "empty log"
        );
        for i in 0..30i64 {
            // Batch 12's middle record carries the largest timestamp; a later batch repeats it.
            let recs: Vec<(i64, &[u8])> = match i {
                12 => vec![(500, b"a"), (9_000, b"b"), (600, b"c")],
                20 => vec![(9_000, b"a"), (1, b"b"), (2, b"c")],
                _ => vec![(100 + i, b"a"), (100 + i, b"b"), (100 + i, b"c")],
            };
            leader_append(&log, BytesMut::from(&batch_with_timestamps(&recs)[..]), 0).unwrap();
        }
        assert!(log.segment_count() > 1, "the lookup spans several segments");
        assert_eq!(
            log.offset_of_max_timestamp(log.high_watermark()).unwrap(),
            Some((12 * 3 + 1, 9_000)),
            "the first record with the largest timestamp"
        );
        mgr.shutdown().unwrap();
    }

    #[test]
    fn offset_for_timestamp_finds_first_batch_reaching_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mgr, log) = open(
            dir.path(),
            LogConfig {
                index_interval_bytes: 1,
                ..small_config()
            },
        );
        // Timestamps 1000, 1010, ... with one batch out of order.
        for i in 0..50i64 {
            let ts = if i == 20 { 5 } else { 1000 + 10 * i };
            leader_append(
                &log,
                BytesMut::from(&batch_with_timestamps(&[(ts, b"a"), (ts, b"b")])[..]),
                0,
            )
            .unwrap();
        }
        assert_eq!(
            log.offset_for_timestamp(0, log.high_watermark()).unwrap(),
            Some((0, 1000))
        );
        assert_eq!(
            log.offset_for_timestamp(1000, log.high_watermark())
                .unwrap(),
            Some((0, 1000))
        );
        assert_eq!(
            log.offset_for_timestamp(1001, log.high_watermark())
                .unwrap(),
            Some((2, 1010))
        );
        assert_eq!(
            log.offset_for_timestamp(1205, log.high_watermark())
                .unwrap(),
            Some((42, 1210))
        );
        assert_eq!(
            log.offset_for_timestamp(1490, log.high_watermark())
                .unwrap(),
            Some((98, 1490))
        );
        assert_eq!(
            log.offset_for_timestamp(1491, log.high_watermark())
                .unwrap(),
            None
        );
        // Same answers after a clean restart, from the persisted time indexes.
        mgr.shutdown().unwrap();
        drop((log, mgr));
        let (_mgr, log) = open(dir.path(), small_config());
        assert_eq!(
            log.offset_for_timestamp(1205, log.high_watermark())
                .unwrap(),
            Some((42, 1210))
        );
        assert_eq!(
            log.offset_for_timestamp(1491, log.high_watermark())
                .unwrap(),
            None
        );
    }

    /// `batch_with_timestamps(records)` with its records compressed by `codec`.
    fn compressed(records: &[(i64, &[u8])], codec: crate::log::records::Codec) -> BytesMut {
        let plain = batch_with_timestamps(records);
        let h = RecordBatchHeader::parse(&plain).unwrap();
        let b = crate::log::records::build_batch(
            &h,
            h.attributes(),
            h.base_timestamp(),
            codec,
            h.record_count(),
            &plain[crate::log::record_batch::RECORD_BATCH_OVERHEAD..],
        )
        .unwrap();
        BytesMut::from(&b[..])
    }

    #[test]
    fn timestamp_lookups_answer_the_record_inside_a_batch_in_every_codec() {
        for codec in crate::log::records::test_support::ALL_CODECS {
            let dir = tempfile::tempdir().unwrap();
            let (mgr, log) = open(dir.path(), small_config());
            let first: [(i64, &[u8]); 4] = [(1000, b"a"), (1100, b"b"), (1300, b"c"), (1200, b"d")];
            leader_append(&log, compressed(&first, codec), 0).unwrap();
            leader_append(&log, compressed(&[(1250, b"e"), (1260, b"f")], codec), 0).unwrap();
            let at = |ts| log.offset_for_timestamp(ts, log.high_watermark()).unwrap();
            assert_eq!(at(0), Some((0, 1000)), "{codec:?}");
            assert_eq!(at(1050), Some((1, 1100)), "{codec:?}");
            assert_eq!(
                at(1150),
                Some((2, 1300)),
                "{codec:?}: not the batch's first record"
            );
            assert_eq!(
                at(1255),
                Some((2, 1300)),
                "{codec:?}: the first record reaching it"
            );
            assert_eq!(at(1301), None, "{codec:?}");
            assert_eq!(
                log.offset_of_max_timestamp(log.high_watermark()).unwrap(),
                Some((2, 1300)),
                "{codec:?}"
            );
            // Records below the log start offset are never answered, even inside a kept batch.
            log.delete_records_before(3).unwrap();
            assert_eq!(at(0), Some((3, 1200)), "{codec:?}");
            assert_eq!(at(1250), Some((4, 1250)), "{codec:?}");
            mgr.shutdown().unwrap();
        }
    }

    #[test]
    fn under_log_append_time_every_record_has_the_batch_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let (mgr, log) = open(
            dir.path(),
            LogConfig {
                timestamp_type: crate::log::TimestampType::LogAppendTime,
                ..small_config()
            },
        );
        let info = leader_append(
            &log,
            compressed(&[(5, b"a"), (9, b"b")], crate::log::records::Codec::Gzip),
            0,
        )
        .unwrap();
        let stamped = info.max_timestamp;
        assert!(stamped > 9, "stamped with the broker's clock");
        assert_eq!(
            log.offset_for_timestamp(7, log.high_watermark()).unwrap(),
            Some((0, stamped))
        );
        assert_eq!(
            log.offset_for_timestamp(stamped, log.high_watermark())
                .unwrap(),
            Some((0, stamped))
        );
        assert_eq!(
            log.offset_of_max_timestamp(log.high_watermark()).unwrap(),
            Some((0, stamped))
        );
        mgr.shutdown().unwrap();
    }

    #[test]
    fn batch_with_unreadable_records_answers_its_first_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (mgr, log) = open(dir.path(), small_config());
        leader_append(&log, BytesMut::from(&batch(2, 10, 900)[..]), 0).unwrap();
        // Marked gzip with plain records: the CRC holds, the payload does not decompress.
        let mut bad = batch_with_timestamps(&[(1000, b"a"), (1100, b"b")]);
        bad[22] |= 1;
        crate::log::record_batch::test_support::fix_crc(&mut bad);
        leader_append(&log, BytesMut::from(&bad[..]), 0).unwrap();
        assert_eq!(
            log.offset_for_timestamp(1050, log.high_watermark())
                .unwrap(),
            Some((2, 1100))
        );
        assert_eq!(
            log.offset_of_max_timestamp(log.high_watermark()).unwrap(),
            Some((2, 1100))
        );
        mgr.shutdown().unwrap();
    }

    #[test]
    fn concurrent_reader_sees_only_whole_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(
            dir.path(),
            LogConfig {
                segment_bytes: 16 * 1024,
                ..small_config()
            },
        );
        let total = 2000i64;
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut offset = 0;
                let mut reads = 0u64;
                while offset < total {
                    let data = log.read(offset, 700, true, log.high_watermark()).unwrap();
                    assert!(data.high_watermark <= data.log_end_offset);
                    for (base, last) in batches(&data.records) {
                        assert_eq!(base, offset, "dense offsets");
                        assert!(last < data.high_watermark);
                        offset = last + 1;
                    }
                    reads += 1;
                }
                reads
            });
            for i in 0..total / 2 {
                append(&log, 2, (i % 50) as usize, i);
            }
            assert!(reader.join().unwrap() > 0);
        });
    }

    #[test]
    fn invalid_append_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(
            dir.path(),
            LogConfig {
                max_message_bytes: 500,
                ..small_config()
            },
        );
        append(&log, 1, 10, 0);
        let mut buf = batch(1, 10, 0);
        let mut bad = batch(1, 10, 0);
        let n = bad.len();
        bad[n - 1] ^= 1;
        buf.extend(bad);
        assert!(matches!(
            leader_append(&log, BytesMut::from(&buf[..]), 0),
            Err(LogError::CorruptMessage(_))
        ));
        let big = batch(1, 1000, 0);
        assert!(matches!(
            leader_append(&log, BytesMut::from(&big[..]), 0),
            Err(LogError::MessageTooLarge { .. })
        ));
        assert_eq!(log.log_end_offset(), 1);
        assert_eq!(
            fs::metadata(log_file(&log, 0)).unwrap().len(),
            batch(1, 10, 0).len() as u64
        );
    }

    #[test]
    fn leader_epoch_checkpoint_records_each_new_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let (mgr, log) = open(dir.path(), small_config());
        leader_append(&log, BytesMut::from(&batch(2, 5, 0)[..]), 0).unwrap();
        leader_append(&log, BytesMut::from(&batch(2, 5, 0)[..]), 0).unwrap();
        leader_append(&log, BytesMut::from(&batch(1, 5, 0)[..]), 3).unwrap();
        let stored = log.read(4, 100, true, log.high_watermark()).unwrap();
        assert_eq!(
            RecordBatchHeader::parse(&stored.records)
                .unwrap()
                .partition_leader_epoch(),
            3
        );
        assert_eq!(log.leader_epochs(), vec![(0, 0), (3, 4)]);
        let text = fs::read_to_string(log.dir().join(LEADER_EPOCH_CHECKPOINT)).unwrap();
        assert_eq!(text, "0\n2\n0 0\n3 4\n");
        mgr.shutdown().unwrap();
        drop((log, mgr));
        let (_mgr, log) = open(dir.path(), small_config());
        assert_eq!(log.leader_epochs(), vec![(0, 0), (3, 4)]);
    }

    #[test]
    fn time_based_roll_and_timed_flush() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_ms: 60_000,
            flush_interval_ms: Some(5),
            ..LogConfig::default()
        };
        // segment.ms is passed by moving a manual clock, not waited for.
        let manual = crate::clock::ManualClock::new(1_700_000_000_000);
        let mgr = LogManager::open_with_clock(dir.path(), config.clone(), manual.clock()).unwrap();
        let log = mgr.get_or_create(&tp(), config).unwrap();
        append(&log, 1, 10, 0);
        manual.advance(Duration::from_millis(59_999));
        append(&log, 1, 10, 0);
        assert_eq!(log.segment_count(), 1, "younger than segment.ms");
        manual.advance(Duration::from_millis(1));
        append(&log, 1, 10, 0);
        assert_eq!(
            log.segment_count(),
            2,
            "segment.ms after the first append rolls into a new segment"
        );
        wait_until("flush.ms to flush", || log.recovery_point() == 3);
    }

    #[test]
    #[cfg(debug_assertions)]
    fn offsets_out_of_order_trip_the_offset_check() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path(), small_config());
        append(&log, 2, 10, 0);
        log.debug_check_offsets();
        let trips = |field: &AtomicI64, value: i64| {
            let old = field.swap(value, Ordering::AcqRel);
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                log.debug_check_offsets()
            }));
            field.store(old, Ordering::Release);
            caught.is_err()
        };
        assert!(
            trips(&log.recovery_point, 3),
            "recovery point past the log end"
        );
        log.high_watermark.store(1, Ordering::Release);
        assert!(
            trips(&log.log_start_offset, 2),
            "log start past the high watermark"
        );
    }

    #[test]
    #[should_panic(expected = "invariant: high watermark")]
    fn a_high_watermark_past_the_log_end_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_mgr, log) = open(dir.path(), small_config());
        append(&log, 2, 10, 0);
        log.maybe_increment_high_watermark(3);
    }

    #[test]
    #[cfg(debug_assertions)]
    fn leader_epochs_must_grow_with_their_start_offsets() {
        debug_assert_epochs_grow(&[(1, 0), (3, 0), (4, 9)]);
        for bad in [[(2, 0), (2, 5)], [(1, 5), (2, 4)], [(3, 0), (1, 5)]] {
            let caught = std::panic::catch_unwind(|| debug_assert_epochs_grow(&bad));
            assert!(caught.is_err(), "{bad:?} must trip the check");
        }
    }
}
