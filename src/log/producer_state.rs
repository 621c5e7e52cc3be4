//! Kafka's `ProducerStateManager`: what each idempotent or transactional producer last wrote to one
//! partition, so that a retried batch is answered with its original offsets instead of being written twice,
//! a gap or a stale epoch is refused, and open transactions are known (the last stable offset).
//!
//! Per producer id an entry keeps the epoch, the metadata of the last [`NUM_BATCHES_TO_RETAIN`] batches,
//! the coordinator epoch of the last marker, the last timestamp (expiry) and the first offset of the open
//! transaction. Per partition it keeps the open transactions by first offset and the completed ones whose
//! marker the high watermark has not passed yet.
//!
//! An append is checked in two steps, as Kafka's `ProducerAppendInfo`: [`ProducerStateManager::analyze`]
//! validates the batches against a staged copy of the entries (nothing changes), and
//! [`ProducerStateManager::apply`] installs the staged entries once the write succeeded, so a refused or
//! undone write (a full disk) leaves no state behind.
//!
//! The state survives restarts in snapshots, `<20-digit offset>.snapshot` in the partition directory, in
//! Kafka's format (`ProducerSnapshot.json` v1, big-endian, CRC-32C over the bytes after the CRC); the log
//! batches after the newest snapshot are replayed at load. Only the last batch of each producer is saved, so
//! after a restart the dedup window is one batch until new batches arrive (as in Kafka).
//!
//! Locking: the owner (`PartitionLog`) changes producers, snapshots and open transactions only under its
//! append lock; readers (the last stable offset, DescribeProducers) take only the mutex around this, and
//! may forget completed transactions the high watermark or the log start has passed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::log::TopicPartition;
use crate::log::error::LogError;
use crate::log::record_batch::{RECORD_BATCH_OVERHEAD, RecordBatchHeader, check_header};
use crate::log::records;
use crate::log::segment::segment_file_name;

/// Batches remembered per producer for deduplication (Kafka's `NUM_BATCHES_TO_RETAIN`); producers keep at
/// most this many requests in flight.
pub const NUM_BATCHES_TO_RETAIN: usize = 5;
/// A batch without a producer id.
pub const NO_PRODUCER_ID: i64 = -1;
/// The epoch of a producer this partition knows nothing about.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// The sequence of a batch without one (coordinator writes, markers).
pub const NO_SEQUENCE: i32 = -1;
/// Suffix of producer state snapshot files.
pub const PRODUCER_SNAPSHOT_FILE_SUFFIX: &str = ".snapshot";

const SNAPSHOT_VERSION: i16 = 1;
/// Byte offset of the CRC; the CRC covers everything after it.
const SNAPSHOT_CRC_AT: usize = 2;
const SNAPSHOT_ENTRIES_AT: usize = 6;
/// ProducerId i64, Epoch i16, LastSequence i32, LastOffset i64, OffsetDelta i32, Timestamp i64,
/// CoordinatorEpoch i32, CurrentTxnFirstOffset i64.
const SNAPSHOT_ENTRY_BYTES: usize = 46;
/// A snapshot larger than this is not ours (about 1.4 million producers).
const MAX_SNAPSHOT_BYTES: u64 = 64 * 1024 * 1024;
/// Largest control batch payload decoded to read a transaction marker.
const MAX_MARKER_BYTES: usize = 64 * 1024;

/// `sequence + increment`, wrapping from i32::MAX to 0 (Kafka's `DefaultRecordBatch.incrementSequence`).
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// `sequence - decrement`, wrapping below 0 to i32::MAX (Kafka's `DefaultRecordBatch.decrementSequence`).
pub fn decrement_sequence(sequence: i32, decrement: i32) -> i32 {
    if sequence < decrement {
        i32::MAX - (decrement - sequence) + 1
    } else {
        sequence - decrement
    }
}

/// True when `next` may follow `last`: the next sequence, or 0 after i32::MAX.
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// What is remembered of one appended batch (Kafka's `BatchMetadata`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchMetadata {
    pub last_seq: i32,
    pub last_offset: i64,
    /// `last_offset - first_offset`, also `last_seq - first_seq`.
    pub offset_delta: i32,
    /// The batch's max timestamp as stored (the append time under LogAppendTime).
    pub timestamp: i64,
}

impl BatchMetadata {
    pub fn first_seq(&self) -> i32 {
        decrement_sequence(self.last_seq, self.offset_delta)
    }
    pub fn first_offset(&self) -> i64 {
        self.last_offset - i64::from(self.offset_delta)
    }
}

/// The state of one producer id on one partition (Kafka's `ProducerStateEntry`). `Copy`: staging an
/// append copies it, without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerStateEntry {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Oldest first; only `batches[..batch_count]` are set.
    batches: [BatchMetadata; NUM_BATCHES_TO_RETAIN],
    batch_count: u8,
    /// Epoch of the transaction coordinator that wrote this producer's last marker, -1 before any.
    pub coordinator_epoch: i32,
    /// Max timestamp of the last batch or marker (client time): drives expiry.
    pub last_timestamp: i64,
    /// First offset of the producer's open transaction on this partition.
    pub current_txn_first_offset: Option<i64>,
}

impl ProducerStateEntry {
    /// A producer this partition knows nothing about: any sequence is accepted from it (KIP-360).
    pub fn empty(producer_id: i64) -> Self {
        ProducerStateEntry {
            producer_id,
            producer_epoch: NO_PRODUCER_EPOCH,
            batches: [BatchMetadata::default(); NUM_BATCHES_TO_RETAIN],
            batch_count: 0,
            coordinator_epoch: -1,
            last_timestamp: -1,
            current_txn_first_offset: None,
        }
    }

    /// The retained batches, oldest first.
    pub fn batches(&self) -> &[BatchMetadata] {
        &self.batches[..usize::from(self.batch_count)]
    }
    pub fn is_empty(&self) -> bool {
        self.batch_count == 0
    }
    pub fn last_seq(&self) -> i32 {
        self.batches().last().map_or(NO_SEQUENCE, |b| b.last_seq)
    }
    pub fn last_data_offset(&self) -> i64 {
        self.batches().last().map_or(-1, |b| b.last_offset)
    }
    fn last_offset_delta(&self) -> i32 {
        self.batches().last().map_or(0, |b| b.offset_delta)
    }

    /// A new epoch forgets the batches of the old one.
    fn maybe_update_epoch(&mut self, epoch: i16) {
        if self.producer_epoch != epoch {
            self.batch_count = 0;
            self.producer_epoch = epoch;
        }
    }

    fn add_batch(&mut self, epoch: i16, batch: BatchMetadata) {
        self.maybe_update_epoch(epoch);
        let n = usize::from(self.batch_count);
        if n == NUM_BATCHES_TO_RETAIN {
            self.batches.copy_within(1.., 0);
            self.batches[n - 1] = batch;
        } else {
            self.batches[n] = batch;
            self.batch_count += 1;
        }
        self.last_timestamp = batch.timestamp;
    }

    /// The retained batch a retry of `(epoch, first_seq..=last_seq)` duplicates, if any.
    pub fn find_duplicate(
        &self,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Option<BatchMetadata> {
        if epoch != self.producer_epoch {
            return None;
        }
        self.batches()
            .iter()
            .find(|b| b.first_seq() == first_seq && b.last_seq == last_seq)
            .copied()
    }
}

/// A transaction whose marker was just appended (Kafka's `CompletedTxn`). An aborted one goes into the
/// transaction index of the segment holding the marker, with `last_stable_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub is_aborted: bool,
    /// The last stable offset when the marker was written, as Kafka computes it for the `.txnindex` entry:
    /// the first offset of the earliest open transaction of another producer, else `last_offset + 1`.
    pub last_stable_offset: i64,
}

/// One producer as DescribeProducers reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// -1 without an open transaction.
    pub current_txn_start_offset: i64,
}

/// What the log cleaner must keep of one active producer (Kafka's `LastRecord`): the batch holding its last
/// data offset (its last sequence), or, when its last entry is a marker that started a new epoch, that
/// marker (its epoch, for fencing). Either survives cleaning, empty if need be, so a replay of the log
/// restores the producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastRecord {
    pub last_data_offset: Option<i64>,
    pub producer_epoch: i16,
}

/// How much of an append is checked (Kafka's `AppendOrigin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Validation {
    /// A producer: dedup, epoch, sequence and transaction state.
    Client,
    /// A coordinator writing transactional offsets or markers: the epochs only.
    Coordinator,
    /// The log's own batches at load or truncation: nothing is refused.
    Replay,
    /// A follower appending what its leader wrote (Kafka's `REPLICATION` origin): nothing is refused,
    /// the leader validated it; the state is only recorded.
    Replication,
}

/// The end transaction marker of a control batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EndTxnMarker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// Reads the marker of a control batch (`batch` is the whole batch): None for an empty control batch (its
/// transaction was cleaned away). Key: i16 version, i16 type (0 ABORT, 1 COMMIT); value: i16 version, i32
/// coordinator epoch.
pub(crate) fn read_end_txn_marker(batch: &[u8]) -> Result<Option<EndTxnMarker>, String> {
    let h = RecordBatchHeader::parse(batch).map_err(|e| e.to_string())?;
    if h.record_count() <= 0 {
        return Ok(None);
    }
    let (_, raw) = records::decompress(
        h.compression_type(),
        &batch[RECORD_BATCH_OVERHEAD..],
        MAX_MARKER_BYTES,
    )
    .map_err(|e| format!("control batch: {e}"))?;
    let mut first = None;
    records::for_each_record(&raw, h.record_count(), |i, r| {
        if i == 0 {
            first = Some((r.key.map(<[u8]>::to_vec), r.value.map(<[u8]>::to_vec)));
        }
    })
    .map_err(|e| format!("control batch: {e}"))?;
    let Some((Some(key), Some(value))) = first else {
        return Err("control record without key or value".into());
    };
    if key.len() < 4 {
        return Err(format!("control record key of {} bytes", key.len()));
    }
    let commit = match i16::from_be_bytes([key[2], key[3]]) {
        0 => false,
        1 => true,
        other => {
            return Err(format!(
                "invalid control record type {other} for an end transaction marker"
            ));
        }
    };
    if value.len() < 6 {
        return Err(format!(
            "end transaction marker value of {} bytes",
            value.len()
        ));
    }
    let coordinator_epoch = i32::from_be_bytes([value[2], value[3], value[4], value[5]]);
    Ok(Some(EndTxnMarker {
        commit,
        coordinator_epoch,
    }))
}

/// The producer fields of one batch, with the offsets it gets in the log.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProducerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub is_transactional: bool,
    pub is_control: bool,
    /// The marker of a non-empty control batch.
    pub marker: Option<EndTxnMarker>,
}

impl ProducerBatch {
    /// The batch at the start of `batch` (a whole, validated batch) placed at `base_offset`. None without a
    /// producer id.
    pub(crate) fn read(batch: &[u8], base_offset: i64) -> Result<Option<ProducerBatch>, String> {
        let h = RecordBatchHeader::parse(batch).map_err(|e| e.to_string())?;
        if h.producer_id() <= NO_PRODUCER_ID {
            return Ok(None);
        }
        let marker = if h.is_control() {
            read_end_txn_marker(batch)?
        } else {
            None
        };
        Ok(Some(ProducerBatch {
            producer_id: h.producer_id(),
            producer_epoch: h.producer_epoch(),
            base_sequence: h.base_sequence(),
            base_offset,
            last_offset: base_offset + i64::from(h.last_offset_delta()),
            max_timestamp: h.max_timestamp(),
            is_transactional: h.is_transactional(),
            is_control: h.is_control(),
            marker,
        }))
    }

    fn last_sequence(&self) -> i32 {
        if self.base_sequence == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        let delta = i32::try_from(self.last_offset - self.base_offset).unwrap_or(i32::MAX);
        increment_sequence(self.base_sequence, delta)
    }
}

/// One producer's entry as an append would leave it.
#[derive(Clone, Copy, Debug)]
struct Staged {
    entry: ProducerStateEntry,
    /// The producer was unknown before this append (no entry, or epoch -1): any sequence goes.
    was_unknown: bool,
}

/// The validated, not yet applied effect of an append (Kafka's `ProducerAppendInfo`s of one append).
#[derive(Debug, Default)]
pub(crate) struct ProducerAppend {
    staged: Vec<Staged>,
    /// (first offset, producer id) of each transaction this append opens.
    started_txns: Vec<(i64, i64)>,
    /// Transactions this append's markers complete (`last_stable_offset` is set by `apply`).
    completed_txns: Vec<CompletedTxn>,
}

/// What [`ProducerStateManager::analyze`] decided.
#[derive(Debug)]
pub(crate) enum Analysis {
    /// A retry of a retained batch: answer its original offsets, write nothing.
    Duplicate(BatchMetadata),
    Append(ProducerAppend),
}

/// The producer state of one partition; see the module doc.
#[derive(Debug)]
pub struct ProducerStateManager {
    tp: TopicPartition,
    dir: PathBuf,
    producers: HashMap<i64, ProducerStateEntry>,
    /// Open transactions: first offset -> producer id.
    ongoing_txns: BTreeMap<i64, i64>,
    /// Completed transactions whose marker is not yet below the high watermark: first offset -> marker offset.
    unreplicated_txns: BTreeMap<i64, i64>,
    /// The state covers the log below this offset.
    last_map_offset: i64,
    /// Offset of the last snapshot written or loaded.
    last_snap_offset: i64,
    /// Offsets of the snapshot files in `dir`.
    snapshots: BTreeSet<i64>,
    /// Some transaction is open or awaits the high watermark: readers without it skip the lock (the last
    /// stable offset of every fetch). Set before an append's offsets are published, cleared when both
    /// transaction sets empty.
    unstable: Arc<AtomicBool>,
}

fn offset_of_snapshot_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(PRODUCER_SNAPSHOT_FILE_SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The path of the snapshot at `offset` in `dir`.
pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(segment_file_name(offset, PRODUCER_SNAPSHOT_FILE_SUFFIX))
}

/// Kafka's snapshot bytes for `entries`: version, CRC-32C of everything after the CRC, the entry count and
/// one 46-byte entry per producer (its last batch only).
pub fn encode_snapshot<'a>(
    entries: impl ExactSizeIterator<Item = &'a ProducerStateEntry>,
) -> Vec<u8> {
    let count = entries.len();
    let mut out = Vec::with_capacity(SNAPSHOT_ENTRIES_AT + 4 + count * SNAPSHOT_ENTRY_BYTES);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    let count = i32::try_from(count).expect("invariant: fewer than 2^31 producers on a partition");
    out.extend_from_slice(&count.to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.producer_id.to_be_bytes());
        out.extend_from_slice(&e.producer_epoch.to_be_bytes());
        out.extend_from_slice(&e.last_seq().to_be_bytes());
        out.extend_from_slice(&e.last_data_offset().to_be_bytes());
        out.extend_from_slice(&e.last_offset_delta().to_be_bytes());
        out.extend_from_slice(&e.last_timestamp.to_be_bytes());
        out.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
        out.extend_from_slice(&e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
    }
    let crc = crc32c::crc32c(&out[SNAPSHOT_ENTRIES_AT..]);
    out[SNAPSHOT_CRC_AT..SNAPSHOT_ENTRIES_AT].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Reads snapshot bytes (Kafka's `readSnapshot`); an unknown version, a bad length or CRC is an error (the
/// snapshot is corrupt). An entry with a last offset gets that batch as its one retained batch.
pub fn decode_snapshot(bytes: &[u8]) -> Result<Vec<ProducerStateEntry>, String> {
    let at = |i: usize, n: usize| -> Result<&[u8], String> {
        bytes
            .get(i..i + n)
            .ok_or_else(|| format!("snapshot of {} bytes is truncated", bytes.len()))
    };
    let version = i16::from_be_bytes(at(0, 2)?.try_into().expect("2 bytes"));
    if version != SNAPSHOT_VERSION {
        return Err(format!(
            "snapshot contained an unknown file version {version}"
        ));
    }
    let stored = u32::from_be_bytes(at(SNAPSHOT_CRC_AT, 4)?.try_into().expect("4 bytes"));
    let count = i32::from_be_bytes(at(SNAPSHOT_ENTRIES_AT, 4)?.try_into().expect("4 bytes"));
    let count = usize::try_from(count).map_err(|_| format!("snapshot entry count {count}"))?;
    let expected = count
        .checked_mul(SNAPSHOT_ENTRY_BYTES)
        .and_then(|n| n.checked_add(SNAPSHOT_ENTRIES_AT + 4));
    if expected != Some(bytes.len()) {
        return Err(format!(
            "snapshot of {} bytes cannot hold {count} entries",
            bytes.len()
        ));
    }
    let computed = crc32c::crc32c(&bytes[SNAPSHOT_ENTRIES_AT..]);
    if stored != computed {
        return Err(format!(
            "snapshot is corrupt (CRC is no longer valid): stored {stored}, computed {computed}"
        ));
    }
    let mut entries = Vec::with_capacity(count);
    for raw in bytes[SNAPSHOT_ENTRIES_AT + 4..].chunks_exact(SNAPSHOT_ENTRY_BYTES) {
        let i64_at = |i: usize| i64::from_be_bytes(raw[i..i + 8].try_into().expect("8 bytes"));
        let i32_at = |i: usize| i32::from_be_bytes(raw[i..i + 4].try_into().expect("4 bytes"));
        let producer_id = i64_at(0);
        let epoch = i16::from_be_bytes([raw[8], raw[9]]);
        let last_seq = i32_at(10);
        let last_offset = i64_at(14);
        let offset_delta = i32_at(22);
        let timestamp = i64_at(26);
        let coordinator_epoch = i32_at(34);
        let txn_first = i64_at(38);
        let mut entry = ProducerStateEntry::empty(producer_id);
        entry.producer_epoch = epoch;
        entry.coordinator_epoch = coordinator_epoch;
        entry.current_txn_first_offset = (txn_first >= 0).then_some(txn_first);
        if last_offset >= 0 {
            entry.add_batch(
                epoch,
                BatchMetadata {
                    last_seq,
                    last_offset,
                    offset_delta,
                    timestamp,
                },
            );
        }
        entry.last_timestamp = timestamp;
        entries.push(entry);
    }
    Ok(entries)
}

impl ProducerStateManager {
    /// An empty state for the partition in `dir`, covering the log below `offset`. Lists nothing on disk
    /// (see [`ProducerStateManager::load_snapshot_list`]).
    pub fn new(tp: TopicPartition, dir: PathBuf, offset: i64) -> Self {
        ProducerStateManager {
            tp,
            dir,
            producers: HashMap::new(),
            ongoing_txns: BTreeMap::new(),
            unreplicated_txns: BTreeMap::new(),
            last_map_offset: offset,
            last_snap_offset: 0,
            snapshots: BTreeSet::new(),
            unstable: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A flag that is false only while no transaction is open or awaiting the high watermark: a reader
    /// that finds it false after loading the high watermark knows the first unstable offset is None.
    pub fn unstable_flag(&self) -> Arc<AtomicBool> {
        self.unstable.clone()
    }

    fn publish_unstable(&self) {
        let any = !self.ongoing_txns.is_empty() || !self.unreplicated_txns.is_empty();
        self.unstable.store(any, Ordering::Release);
    }

    /// Reads which snapshot files the directory holds.
    pub fn load_snapshot_list(&mut self) -> io::Result<()> {
        self.snapshots.clear();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if let Some(offset) = entry.file_name().to_str().and_then(offset_of_snapshot_name)
                && entry.file_type()?.is_file()
            {
                self.snapshots.insert(offset);
            }
        }
        Ok(())
    }

    pub fn entry(&self, producer_id: i64) -> Option<&ProducerStateEntry> {
        self.producers.get(&producer_id)
    }

    /// No producers and no completed transaction waiting for the high watermark.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty() && self.unreplicated_txns.is_empty()
    }

    pub fn map_end_offset(&self) -> i64 {
        self.last_map_offset
    }

    pub fn update_map_end_offset(&mut self, offset: i64) {
        self.last_map_offset = offset;
    }

    /// Offsets of the snapshot files, oldest first.
    pub fn snapshot_offsets(&self) -> Vec<i64> {
        self.snapshots.iter().copied().collect()
    }

    pub fn latest_snapshot_offset(&self) -> Option<i64> {
        self.snapshots.last().copied()
    }

    /// Whether the producer has a transaction open on this partition.
    pub fn has_ongoing_txn(&self, producer_id: i64) -> bool {
        self.producers
            .get(&producer_id)
            .is_some_and(|e| e.current_txn_first_offset.is_some())
    }

    /// The last record of every known producer, by producer id (what the cleaner keeps).
    pub fn last_records_of_active_producers(&self) -> HashMap<i64, LastRecord> {
        self.producers
            .values()
            .map(|e| {
                let last = e.last_data_offset();
                let record = LastRecord {
                    last_data_offset: (last >= 0).then_some(last),
                    producer_epoch: e.producer_epoch,
                };
                (e.producer_id, record)
            })
            .collect()
    }

    /// Every known producer, by producer id (DescribeProducers).
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .values()
            .map(|e| ActiveProducer {
                producer_id: e.producer_id,
                producer_epoch: e.producer_epoch,
                last_sequence: e.last_seq(),
                last_timestamp: e.last_timestamp,
                coordinator_epoch: e.coordinator_epoch,
                current_txn_start_offset: e.current_txn_first_offset.unwrap_or(-1),
            })
            .collect();
        out.sort_unstable_by_key(|p| p.producer_id);
        out
    }

    /// The first offset not yet decided: the earliest open transaction, or the earliest completed one whose
    /// marker is not below `high_watermark` (those below are forgotten here). None when everything is.
    pub fn first_unstable_offset(&mut self, high_watermark: i64) -> Option<i64> {
        self.unreplicated_txns
            .retain(|_, last| *last >= high_watermark);
        self.publish_unstable();
        let ongoing = self.ongoing_txns.keys().next().copied();
        let unreplicated = self.unreplicated_txns.keys().next().copied();
        match (ongoing, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Validates the batches of an append placed at `base_offset` (Kafka's `analyzeAndValidateProducerState`)
    /// and stages its effect; nothing changes until [`apply`](Self::apply). A client's retry of a retained
    /// batch is a [`Analysis::Duplicate`].
    pub(crate) fn analyze(
        &self,
        records: &[u8],
        base_offset: i64,
        validation: Validation,
    ) -> Result<Analysis, LogError> {
        let mut pending = ProducerAppend::default();
        let mut pos = 0usize;
        let mut offset = base_offset;
        while pos < records.len() {
            let (size, count) = {
                let h = RecordBatchHeader::parse(&records[pos..])?;
                let size = check_header(&h).map_err(LogError::CorruptMessage)?;
                (size, i64::from(h.record_count()))
            };
            let batch = records.get(pos..pos + size).ok_or_else(|| {
                LogError::CorruptMessage("batch runs past the end of the records".into())
            })?;
            let read =
                ProducerBatch::read(batch, offset).map_err(|message| LogError::InvalidRecord {
                    message,
                    record_errors: Vec::new(),
                })?;
            if let Some(b) = read {
                if validation == Validation::Client {
                    if b.base_sequence < 0 {
                        return Err(LogError::InvalidRecord {
                            message: format!(
                                "Invalid sequence number {} in record batch with producerId {} in topic partition {}",
                                b.base_sequence, b.producer_id, self.tp
                            ),
                            record_errors: Vec::new(),
                        });
                    }
                    if let Some(dup) = self.producers.get(&b.producer_id).and_then(|e| {
                        e.find_duplicate(b.producer_epoch, b.base_sequence, b.last_sequence())
                    }) {
                        return Ok(Analysis::Duplicate(dup));
                    }
                }
                self.stage(&mut pending, &b, validation)?;
            }
            offset += count;
            pos += size;
        }
        Ok(Analysis::Append(pending))
    }

    /// Stages the effect of batches a leader wrote, each at the offsets it carries (a follower's append,
    /// Kafka's `REPLICATION` origin): no sequence, epoch or transaction check refuses anything. Fails only
    /// on a control batch whose marker cannot be read.
    pub(crate) fn analyze_replicated(&self, records: &[u8]) -> Result<ProducerAppend, LogError> {
        let mut pending = ProducerAppend::default();
        let mut pos = 0usize;
        while pos < records.len() {
            let (size, base_offset) = {
                let h = RecordBatchHeader::parse(&records[pos..])?;
                (
                    check_header(&h).map_err(LogError::CorruptMessage)?,
                    h.base_offset(),
                )
            };
            let batch = records.get(pos..pos + size).ok_or_else(|| {
                LogError::CorruptMessage("batch runs past the end of the records".into())
            })?;
            if let Some(b) =
                ProducerBatch::read(batch, base_offset).map_err(LogError::CorruptMessage)?
            {
                self.stage(&mut pending, &b, Validation::Replication)?;
            }
            pos += size;
        }
        Ok(pending)
    }

    /// Checks one batch against the producer's staged entry and updates that entry (Kafka's
    /// `ProducerAppendInfo.append`).
    pub(crate) fn stage(
        &self,
        pending: &mut ProducerAppend,
        b: &ProducerBatch,
        validation: Validation,
    ) -> Result<(), LogError> {
        let i = match pending
            .staged
            .iter()
            .position(|s| s.entry.producer_id == b.producer_id)
        {
            Some(i) => i,
            None => {
                let current = self.producers.get(&b.producer_id).copied();
                let entry = current.unwrap_or(ProducerStateEntry::empty(b.producer_id));
                pending.staged.push(Staged {
                    entry,
                    was_unknown: entry.producer_epoch == NO_PRODUCER_EPOCH,
                });
                pending.staged.len() - 1
            }
        };
        let staged = &mut pending.staged[i];
        let entry = &mut staged.entry;
        let tp = &self.tp;
        let pid = b.producer_id;
        let strict = matches!(validation, Validation::Client | Validation::Coordinator);

        if b.is_control && b.marker.is_none() {
            // An empty control batch: its transaction was cleaned from the log.
            return Ok(());
        }
        if b.producer_epoch < entry.producer_epoch && strict {
            return Err(LogError::InvalidProducerEpoch(format!(
                "Epoch of producer {pid} at offset {} in {tp} is {}, which is smaller than the last seen epoch {}",
                b.base_offset, b.producer_epoch, entry.producer_epoch
            )));
        }
        if let Some(marker) = b.marker {
            if entry.coordinator_epoch > marker.coordinator_epoch && strict {
                return Err(LogError::TransactionCoordinatorFenced(format!(
                    "Invalid coordinator epoch for producerId {pid} at offset {} in partition {tp}: {} (zombie), {} (current)",
                    b.base_offset, marker.coordinator_epoch, entry.coordinator_epoch
                )));
            }
            if let Some(first_offset) = entry.current_txn_first_offset {
                pending.completed_txns.push(CompletedTxn {
                    producer_id: pid,
                    first_offset,
                    last_offset: b.base_offset,
                    is_aborted: !marker.commit,
                    last_stable_offset: b.base_offset + 1,
                });
            }
            entry.maybe_update_epoch(b.producer_epoch);
            entry.coordinator_epoch = marker.coordinator_epoch;
            entry.current_txn_first_offset = None;
            entry.last_timestamp = b.max_timestamp;
            return Ok(());
        }

        if validation == Validation::Client {
            check_sequence(entry, staged.was_unknown, b, tp)?;
        }
        let offset_delta = i32::try_from(b.last_offset - b.base_offset)
            .expect("invariant: a batch's offset delta is an i32");
        entry.add_batch(
            b.producer_epoch,
            BatchMetadata {
                last_seq: b.last_sequence(),
                last_offset: b.last_offset,
                offset_delta,
                timestamp: b.max_timestamp,
            },
        );
        match entry.current_txn_first_offset {
            Some(_) if !b.is_transactional && strict => {
                return Err(LogError::InvalidTxnState(format!(
                    "Expected transactional write from producer {pid} at offset {} in partition {tp}",
                    b.base_offset
                )));
            }
            None if b.is_transactional => {
                entry.current_txn_first_offset = Some(b.base_offset);
                pending.started_txns.push((b.base_offset, pid));
            }
            _ => {}
        }
        Ok(())
    }

    /// Installs a staged append whose write succeeded, now covering the log below `map_end_offset`, and
    /// returns the transactions its markers completed, each with its last stable offset.
    pub(crate) fn apply(
        &mut self,
        mut pending: ProducerAppend,
        map_end_offset: i64,
    ) -> Vec<CompletedTxn> {
        self.apply_drain(&mut pending, map_end_offset)
    }

    /// Replays one batch of the log without checks (load, truncation) and returns the transaction its
    /// marker completed, if any. One batch at a time, so each completed transaction's last stable offset
    /// is the one a live append computed. `scratch` is reused between calls.
    pub(crate) fn replay_batch(
        &mut self,
        b: &ProducerBatch,
        scratch: &mut ProducerAppend,
    ) -> Option<CompletedTxn> {
        self.stage(scratch, b, Validation::Replay)
            .expect("invariant: a replay refuses nothing");
        let end = (b.last_offset + 1).max(self.last_map_offset);
        let completed = self.apply_drain(scratch, end);
        debug_assert!(
            completed.len() <= 1,
            "one batch completes one transaction at most"
        );
        completed.into_iter().next()
    }

    fn apply_drain(
        &mut self,
        pending: &mut ProducerAppend,
        map_end_offset: i64,
    ) -> Vec<CompletedTxn> {
        for s in pending.staged.drain(..) {
            self.producers.insert(s.entry.producer_id, s.entry);
        }
        for (first_offset, pid) in pending.started_txns.drain(..) {
            self.ongoing_txns.insert(first_offset, pid);
        }
        let mut completed = std::mem::take(&mut pending.completed_txns);
        for ct in &mut completed {
            ct.last_stable_offset = self
                .ongoing_txns
                .iter()
                .find(|(_, pid)| **pid != ct.producer_id)
                .map_or(ct.last_offset + 1, |(first, _)| *first);
            let started = self.ongoing_txns.remove(&ct.first_offset);
            debug_assert!(
                started == Some(ct.producer_id),
                "invariant: a completed transaction was open ({ct:?}, {})",
                self.tp
            );
            self.unreplicated_txns
                .insert(ct.first_offset, ct.last_offset);
        }
        self.last_map_offset = map_end_offset;
        self.publish_unstable();
        completed
    }

    /// Removes producers without an open transaction whose last timestamp is `expiration_ms` or more before
    /// `now_ms`; returns how many went.
    pub fn remove_expired_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| !is_expired(e, now_ms, expiration_ms));
        before - self.producers.len()
    }

    /// Log start offset moved up: completed transactions below it are forgotten and the state covers at
    /// least up to it (Kafka's `onLogStartOffsetIncremented`).
    pub fn on_log_start_offset_incremented(&mut self, log_start: i64) {
        self.unreplicated_txns.retain(|_, last| *last >= log_start);
        self.publish_unstable();
        self.last_map_offset = self.last_map_offset.max(log_start);
        self.last_snap_offset = self.latest_snapshot_offset().unwrap_or(log_start);
    }

    /// Writes a snapshot at the map end offset unless one is there already; fsyncs it when `sync`. Returns
    /// whether one was written. A failed write leaves no file behind.
    pub fn take_snapshot(&mut self, sync: bool) -> io::Result<bool> {
        if self.last_map_offset <= self.last_snap_offset {
            return Ok(false);
        }
        let offset = self.last_map_offset;
        let mut entries: Vec<&ProducerStateEntry> = self.producers.values().collect();
        entries.sort_unstable_by_key(|e| e.producer_id);
        let bytes = encode_snapshot(entries.into_iter());
        let path = snapshot_path(&self.dir, offset);
        let written = (|| {
            let mut f = fs::File::create(&path)?;
            f.write_all(&bytes)?;
            if sync {
                f.sync_all()?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        tracing::debug!(partition = %self.tp, offset, producers = self.producers.len(),
            "wrote producer snapshot");
        self.snapshots.insert(offset);
        self.last_snap_offset = offset;
        Ok(true)
    }

    fn delete_snapshot(&mut self, offset: i64) -> io::Result<()> {
        self.snapshots.remove(&offset);
        match fs::remove_file(snapshot_path(&self.dir, offset)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Deletes the snapshots below `offset` (the log start offset once segments went).
    pub fn delete_snapshots_before(&mut self, offset: i64) -> io::Result<()> {
        let doomed: Vec<i64> = self.snapshots.range(..offset).copied().collect();
        for o in doomed {
            self.delete_snapshot(o)?;
        }
        Ok(())
    }

    /// Deletes the snapshots that name no segment base, but the newest one when it is above every segment
    /// (the one written at the log end at shutdown) (Kafka's `removeStraySnapshots`).
    pub fn remove_stray_snapshots(&mut self, segment_bases: &[i64]) -> io::Result<()> {
        let max_base = segment_bases.iter().copied().max();
        let strays: Vec<i64> = self
            .snapshots
            .iter()
            .copied()
            .filter(|o| segment_bases.binary_search(o).is_err())
            .collect();
        let Some((&newest, older)) = strays.split_last() else {
            return Ok(());
        };
        for &o in older {
            self.delete_snapshot(o)?;
        }
        if max_base.is_some_and(|m| newest < m) {
            self.delete_snapshot(newest)?;
        }
        Ok(())
    }

    /// Forgets everything and deletes every snapshot: the log restarts empty at `offset`.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> io::Result<()> {
        self.producers.clear();
        self.ongoing_txns.clear();
        self.unreplicated_txns.clear();
        self.publish_unstable();
        let all: Vec<i64> = self.snapshots.iter().copied().collect();
        for o in all {
            self.delete_snapshot(o)?;
        }
        self.last_snap_offset = 0;
        self.last_map_offset = offset;
        Ok(())
    }

    /// Kafka's `truncateAndReload`: deletes snapshots above `log_end` or at or below `log_start` (the state
    /// of producers whose batches are all gone is not kept across a reload, as in Kafka); unless the state
    /// already ends at `log_end`, reloads it from the newest readable snapshot at or below `load_at_most`
    /// (a corrupt one is logged, deleted and the next older tried). The caller replays the log from
    /// `map_end_offset()` to `log_end`.
    pub fn truncate_and_reload(
        &mut self,
        log_start: i64,
        log_end: i64,
        load_at_most: i64,
        now_ms: i64,
        expiration_ms: i64,
    ) -> io::Result<()> {
        let out_of_range: Vec<i64> = self
            .snapshots
            .iter()
            .copied()
            .filter(|o| *o > log_end || *o <= log_start)
            .collect();
        for o in out_of_range {
            self.delete_snapshot(o)?;
        }
        if log_end == self.last_map_offset {
            self.on_log_start_offset_incremented(log_start);
            return Ok(());
        }
        self.producers.clear();
        self.ongoing_txns.clear();
        self.unreplicated_txns.clear();
        self.publish_unstable();
        while let Some(offset) = self.snapshots.range(..=load_at_most).next_back().copied() {
            let path = snapshot_path(&self.dir, offset);
            match read_snapshot_file(&path) {
                Ok(entries) => {
                    for e in entries {
                        if is_expired(&e, now_ms, expiration_ms) {
                            continue;
                        }
                        if let Some(first) = e.current_txn_first_offset {
                            self.ongoing_txns.insert(first, e.producer_id);
                        }
                        self.producers.insert(e.producer_id, e);
                    }
                    self.publish_unstable();
                    tracing::info!(partition = %self.tp, offset, producers = self.producers.len(),
                        "loaded producer state from snapshot");
                    self.last_snap_offset = offset;
                    self.last_map_offset = offset;
                    return Ok(());
                }
                Err(SnapshotReadError::Corrupt(why)) => {
                    tracing::warn!(partition = %self.tp, path = %path.display(), reason = %why,
                        "deleting a corrupt producer snapshot");
                    self.delete_snapshot(offset)?;
                }
                Err(SnapshotReadError::Io(e)) => return Err(e),
            }
        }
        self.last_snap_offset = log_start;
        self.last_map_offset = log_start;
        Ok(())
    }
}

fn is_expired(e: &ProducerStateEntry, now_ms: i64, expiration_ms: i64) -> bool {
    e.current_txn_first_offset.is_none() && now_ms.saturating_sub(e.last_timestamp) >= expiration_ms
}

/// Kafka's sequence rules for a client's data batch (`ProducerAppendInfo.checkSequence`).
fn check_sequence(
    entry: &ProducerStateEntry,
    was_unknown: bool,
    b: &ProducerBatch,
    tp: &TopicPartition,
) -> Result<(), LogError> {
    let (pid, seq) = (b.producer_id, b.base_sequence);
    if b.producer_epoch != entry.producer_epoch {
        if seq != 0 && entry.producer_epoch != NO_PRODUCER_EPOCH {
            return Err(LogError::OutOfOrderSequence(format!(
                "Invalid sequence number for new epoch of producer {pid} at offset {} in partition {tp}: {} (request epoch), {seq} (seq. number), {} (current producer epoch)",
                b.base_offset, b.producer_epoch, entry.producer_epoch
            )));
        }
        return Ok(());
    }
    let last = entry.last_seq();
    // A producer unknown here (expired, or its batches deleted) is accepted at any sequence (KIP-360).
    if !(was_unknown || in_sequence(last, seq)) {
        return Err(LogError::OutOfOrderSequence(format!(
            "Out of order sequence number for producer {pid} at offset {} in partition {tp}: {seq} (incoming seq. number), {last} (current end sequence number)",
            b.base_offset
        )));
    }
    Ok(())
}

/// Why a snapshot file could not be read.
#[derive(Debug)]
enum SnapshotReadError {
    /// The file is damaged or not ours: delete it and try an older one.
    Corrupt(String),
    Io(io::Error),
}

fn read_snapshot_file(path: &Path) -> Result<Vec<ProducerStateEntry>, SnapshotReadError> {
    let len = fs::metadata(path).map_err(SnapshotReadError::Io)?.len();
    if len > MAX_SNAPSHOT_BYTES {
        return Err(SnapshotReadError::Corrupt(format!(
            "{len} bytes is too large"
        )));
    }
    let bytes = fs::read(path).map_err(SnapshotReadError::Io)?;
    decode_snapshot(&bytes).map_err(SnapshotReadError::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch_builder::{BatchBuilder, end_transaction_marker};

    fn psm(dir: &Path) -> ProducerStateManager {
        ProducerStateManager::new(TopicPartition::new("t", 0), dir.to_path_buf(), 0)
    }

    /// A batch of `n` records from `pid` at `epoch` starting at sequence `seq`.
    fn data(pid: i64, epoch: i16, seq: i32, n: usize, txn: bool) -> Vec<u8> {
        let mut b = BatchBuilder::new()
            .producer(pid, epoch, seq)
            .transactional(txn);
        for i in 0..n {
            b.append(1_000 + i as i64, None, Some(b"v"), &[]).unwrap();
        }
        b.build().unwrap().to_vec()
    }

    fn marker(pid: i64, epoch: i16, commit: bool, coordinator_epoch: i32) -> Vec<u8> {
        end_transaction_marker(pid, epoch, commit, coordinator_epoch, 5_000)
            .unwrap()
            .to_vec()
    }

    /// Appends `records` at the map end offset as a successful write would; returns the completed txns.
    fn append(
        m: &mut ProducerStateManager,
        records: &[u8],
        v: Validation,
    ) -> Result<Vec<CompletedTxn>, LogError> {
        let base = m.map_end_offset();
        match m.analyze(records, base, v)? {
            Analysis::Duplicate(d) => panic!("unexpected duplicate {d:?}"),
            Analysis::Append(p) => {
                let s = crate::log::record_batch::validate_batches(records, u32::MAX).unwrap();
                Ok(m.apply(p, base + s.record_count as i64))
            }
        }
    }

    fn client(m: &mut ProducerStateManager, records: &[u8]) -> Result<Vec<CompletedTxn>, LogError> {
        append(m, records, Validation::Client)
    }

    fn is_oosn(r: Result<Vec<CompletedTxn>, LogError>) -> bool {
        matches!(r, Err(LogError::OutOfOrderSequence(_)))
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(decrement_sequence(1, 3), i32::MAX - 1);
        assert_eq!(decrement_sequence(8, 3), 5);
        assert!(in_sequence(i32::MAX, 0) && in_sequence(4, 5) && !in_sequence(4, 6));
    }

    #[test]
    fn p1_a_retained_batch_is_a_duplicate_and_the_sixth_oldest_is_out_of_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = psm(dir.path());
        for i in 0..6 {
            client(&mut m, &data(7, 0, i * 2, 2, false)).unwrap();
        }
        for i in 1..6 {
            match m
                .analyze(&data(7, 0, i * 2, 2, false), 12, Validation::Client)
                .unwrap()
            {
                Analysis::Duplicate(d) => {
                    assert_eq!(
                        (d.first_offset(), d.last_offset),
                        (i64::from(i) * 2, i64::from(i) * 2 + 1)
                    );
                    assert_eq!((d.first_seq(), d.last_seq), (i * 2, i * 2 + 1));
                }
                other => panic!("batch {i}: {other:?}"),
            }
        }
        assert!(
            is_oosn(client(&mut m, &data(7, 0, 0, 2, false))),
            "out of the window"
        );
        // The same sequences with a different range, or another epoch, are not duplicates.
        assert!(is_oosn(client(&mut m, &data(7, 0, 10, 1, false))));
        assert_eq!(m.entry(7).unwrap().batches().len(), NUM_BATCHES_TO_RETAIN);
        assert_eq!(m.map_end_offset(), 12);
    }

    #[test]
    fn p2_a_gap_is_out_of_order_and_a_sequence_wraps_to_zero() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = psm(dir.path());
        client(&mut m, &data(1, 0, 0, 3, false)).unwrap();
        assert!(is_oosn(client(&mut m, &data(1, 0, 4, 1, false))));
        assert!(
            is_oosn(client(&mut m, &data(1, 0, 2, 1, false))),
            "a step back that is no retry"
        );
        client(&mut m, &data(1, 0, 3, 1, false)).unwrap();
        // Wrapping: a batch ending at i32::MAX is followed by 0, and a batch may cross it.
        let mut w = psm(dir.path());
        client(&mut w, &data(2, 0, i32::MAX - 1, 2, false)).unwrap();
        assert_eq!(w.entry(2).unwrap().last_seq(), i32::MAX);
        client(&mut w, &data(2, 0, 0, 1, false)).unwrap();
        client(&mut w, &data(3, 0, i32::MAX, 3, false)).unwrap();
        assert_eq!(w.entry(3).unwrap().last_seq(), 1);
        client(&mut w, &data(3, 0, 2, 1, false)).unwrap();
        // A retry of the crossing batch is recognised.
        let mut x = psm(dir.path());
        client(&mut x, &data(4, 0, i32::MAX - 1, 3, false)).unwrap();
        assert!(matches!(
            x.analyze(&data(4, 0, i32::MAX - 1, 3, false), 3, Validation::Client)
                .unwrap(),
            Analysis::Duplicate(_)
        ));
    }

    #[test]
    fn p3_epochs_older_fenced_newer_from_zero_resets_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = psm(dir.path());
        client(&mut m, &data(1, 5, 0, 2, false)).unwrap();
        assert!(matches!(
            client(&mut m, &data(1, 4, 2, 1, false)),
            Err(LogError::InvalidProducerEpoch(_))
        ));
        assert!(is_oosn(client(&mut m, &data(1, 6, 2, 1, false))));
        client(&mut m, &data(1, 6, 0, 1, false)).unwrap();
        let e = m.entry(1).unwrap();
        assert_eq!(
            (e.producer_epoch, e.batches().len(), e.last_seq()),
            (6, 1, 0)
        );
        // The old epoch's batches no longer dedup.
        assert!(matches!(
            client(&mut m, &data(1, 5, 0, 2, false)),
            Err(LogError::InvalidProducerEpoch(_))
        ));
    }

    #[test]
    fn p4_an_unknown_producer_is_accepted_at_any_sequence_then_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = psm(dir.path());
        client(&mut m, &data(9, 3, 41, 1, false)).unwrap();
        assert!(is_oosn(client(&mut m, &data(9, 3, 43, 1, false))));
        client(&mut m, &data(9, 3, 42, 1, false)).unwrap();
        // After expiry it is unknown again.
        assert_eq!(m.remove_expired_producers(1_000 + 100, 100), 1);
        assert!(m.entry(9).is_none());
        client(&mut m, &data(9, 3, 1_000, 1, false)).unwrap();
        // A negative base sequence with a producer id is an invalid record.
        assert!(matches!(
            client(&mut m, &data(9, 3, -5, 1, false)),
            Err(LogError::InvalidRecord { .. })
        ));
    }

    #[test]
    fn a_refused_append_stages_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = psm(dir.path());
        client(&mut m, &data(1, 0, 0, 1, false)).unwrap();
        let before = *m.entry(1).unwrap();
        // Staged but never applied (the write failed): no trace.
        let Analysis::Append(_) = m
            .analyze(&data(1, 0, 1, 1, true), 1, Validation::Client)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(*m.entry(1).unwrap(), before);
        assert!(!m.has_ongoing_txn(1));
        assert_eq!(m.first_unstable_offset(0), None);
    }

    #[test]
    fn several_batches_of_one_producer_are_checked_against_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = psm(dir.path());
        let mut two = data(1, 0, 0, 2, false);
        two.extend(data(1, 0, 2, 1, false));
        append(&mut m, &two, Validation::Coordinator).unwrap();
        let mut both = data(1, 0, 3, 1, false);
        both.extend(data(1, 0, 5, 1, false));
        let Err(e) = m.analyze(&both, 3, Validation::Client) else {
            panic!("the second batch leaves a gap after the first")
        };
        assert!(matches!(e, LogError::OutOfOrderSequence(_)));
        let Analysis::Append(p) = m
            .analyze(&data(1, 0, 3, 1, false), 3, Validation::Client)
            .unwrap()
        else {
            panic!()
        };
        m.apply(p, 4);
        assert_eq!(m.entry(1).unwrap().last_seq(), 3);
    }

    #[test]
    fn transactions_open_with_data_and_complete_with_markers() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = psm(dir.path());
        let flag = m.unstable_flag();
        client(&mut m, &data(7, 0, 0, 1, false)).unwrap();
        m.update_map_end_offset(0);
        assert!(
            !flag.load(Ordering::Acquire),
            "idempotence alone opens nothing"
        );
        client(&mut m, &data(1, 0, 0, 2, true)).unwrap(); // 0..=1
        assert!(m.has_ongoing_txn(1));
        assert!(flag.load(Ordering::Acquire));
        client(&mut m, &data(2, 0, 0, 1, true)).unwrap(); // 2
        client(&mut m, &data(1, 0, 2, 1, true)).unwrap(); // 3: same txn
        assert_eq!(m.first_unstable_offset(0), Some(0));
        // A plain batch from a producer inside a transaction is refused.
        assert!(matches!(
            client(&mut m, &data(1, 0, 3, 1, false)),
            Err(LogError::InvalidTxnState(_))
        ));
        // The abort marker (offset 4) completes pid 1's transaction; pid 2's is still open.
        let done = append(&mut m, &marker(1, 0, false, 3), Validation::Coordinator).unwrap();
        assert_eq!(
            done,
            vec![CompletedTxn {
                producer_id: 1,
                first_offset: 0,
                last_offset: 4,
                is_aborted: true,
                last_stable_offset: 2,
            }]
        );
        assert!(!m.has_ongoing_txn(1));
        assert_eq!(m.entry(1).unwrap().coordinator_epoch, 3);
        // Not yet replicated past the marker: still unstable from 0.
        assert_eq!(m.first_unstable_offset(4), Some(0));
        assert_eq!(m.first_unstable_offset(5), Some(2), "pid 2's txn remains");
        let done = append(&mut m, &marker(2, 0, true, 3), Validation::Coordinator).unwrap();
        assert_eq!(done[0].last_stable_offset, 6);
        assert!(!done[0].is_aborted);
        assert!(
            flag.load(Ordering::Acquire),
            "until the high watermark passes the marker"
        );
        assert_eq!(m.first_unstable_offset(6), None);
        assert!(!flag.load(Ordering::Acquire));
        // A marker for a producer with no open transaction completes nothing.
        assert!(
            append(&mut m, &marker(1, 0, true, 3), Validation::Coordinator)
                .unwrap()
                .is_empty()
        );
        assert_eq!(m.first_unstable_offset(7), None);
    }

    #[test]
    fn marker_rules_fence_old_epochs_and_old_coordinators() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = psm(dir.path());
        client(&mut m, &data(1, 2, 0, 1, true)).unwrap();
        append(&mut m, &marker(1, 2, true, 5), Validation::Coordinator).unwrap();
        assert!(matches!(
            append(&mut m, &marker(1, 1, true, 5), Validation::Coordinator),
            Err(LogError::InvalidProducerEpoch(_))
        ));
        assert!(matches!(
            append(&mut m, &marker(1, 2, false, 4), Validation::Coordinator),
            Err(LogError::TransactionCoordinatorFenced(_))
        ));
        // A newer epoch (a fencing abort) is fine and becomes the producer's epoch.
        client(&mut m, &data(1, 2, 1, 1, true)).unwrap();
        let done = append(&mut m, &marker(1, 3, false, 6), Validation::Coordinator).unwrap();
        assert_eq!(done.len(), 1);
        let e = m.entry(1).unwrap();
        assert_eq!((e.producer_epoch, e.coordinator_epoch), (3, 6));
        assert!(e.is_empty(), "a new epoch forgets the batches");
        // Replay accepts what a live append would refuse.
        append(&mut m, &marker(1, 1, true, 1), Validation::Replay).unwrap();
    }

    #[test]
    fn coordinator_appends_check_only_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = psm(dir.path());
        client(&mut m, &data(1, 4, 0, 1, true)).unwrap();
        // A transactional offset commit: no sequence.
        append(
            &mut m,
            &data(1, 4, NO_SEQUENCE, 1, true),
            Validation::Coordinator,
        )
        .unwrap();
        assert!(matches!(
            append(
                &mut m,
                &data(1, 3, NO_SEQUENCE, 1, true),
                Validation::Coordinator
            ),
            Err(LogError::InvalidProducerEpoch(_))
        ));
    }

    #[test]
    fn expiry_keeps_open_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = psm(dir.path());
        client(&mut m, &data(1, 0, 0, 1, false)).unwrap();
        client(&mut m, &data(2, 0, 0, 1, true)).unwrap();
        assert_eq!(m.remove_expired_producers(1_000 + 99, 100), 0);
        assert_eq!(m.remove_expired_producers(1_000 + 100, 100), 1);
        assert_eq!(m.active_producers().len(), 1);
        assert_eq!(m.active_producers()[0].current_txn_start_offset, 1);
    }

    #[test]
    fn snapshot_bytes_are_kafkas_layout() {
        let mut a = ProducerStateEntry::empty(0x0102_0304_0506_0708);
        a.add_batch(
            3,
            BatchMetadata {
                last_seq: 11,
                last_offset: 42,
                offset_delta: 2,
                timestamp: 1_700,
            },
        );
        a.coordinator_epoch = -1;
        a.current_txn_first_offset = Some(40);
        let b = ProducerStateEntry::empty(5);
        let bytes = encode_snapshot([a, b].iter());
        let mut expect: Vec<u8> = vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 2];
        // Entry a.
        expect.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        expect.extend([0, 3]);
        expect.extend([0, 0, 0, 11]);
        expect.extend([0, 0, 0, 0, 0, 0, 0, 42]);
        expect.extend([0, 0, 0, 2]);
        expect.extend([0, 0, 0, 0, 0, 0, 0x06, 0xa4]);
        expect.extend([0xff; 4]);
        expect.extend([0, 0, 0, 0, 0, 0, 0, 40]);
        // Entry b: no batch, no txn.
        expect.extend([0, 0, 0, 0, 0, 0, 0, 5]);
        expect.extend([0xff, 0xff]);
        expect.extend([0xff; 4]);
        expect.extend([0xff; 8]);
        expect.extend([0, 0, 0, 0]);
        expect.extend([0xff; 8]);
        expect.extend([0xff; 4]);
        expect.extend([0xff; 8]);
        let crc = crc32c::crc32c(&expect[6..]);
        expect[2..6].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(bytes, expect);
        assert_eq!(bytes.len(), 10 + 2 * 46);
        // The CRC-32C (Castagnoli) of a known input, so the one above is the right polynomial.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);

        let back = decode_snapshot(&bytes).unwrap();
        assert_eq!(back[0].batches(), a.batches());
        assert_eq!(back[0].current_txn_first_offset, Some(40));
        assert_eq!((back[0].producer_epoch, back[0].last_timestamp), (3, 1_700));
        assert!(back[1].is_empty() && back[1].current_txn_first_offset.is_none());
        for bad in [
            {
                let mut x = bytes.clone();
                x[20] ^= 1;
                x
            },
            {
                let mut x = bytes.clone();
                x[1] = 2;
                x
            },
            bytes[..bytes.len() - 1].to_vec(),
            vec![0, 1, 0],
        ] {
            assert!(decode_snapshot(&bad).is_err());
        }
    }

    #[test]
    fn snapshots_reload_and_a_corrupt_one_falls_back_to_the_older() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = psm(dir.path());
        client(&mut m, &data(1, 0, 0, 2, false)).unwrap();
        assert!(m.take_snapshot(true).unwrap());
        assert!(!m.take_snapshot(true).unwrap(), "nothing new since");
        client(&mut m, &data(1, 0, 2, 2, false)).unwrap();
        client(&mut m, &data(2, 0, 0, 1, true)).unwrap();
        assert!(m.take_snapshot(true).unwrap());
        assert_eq!(m.snapshot_offsets(), vec![2, 5]);
        let name = dir.path().join("00000000000000000005.snapshot");
        assert!(name.exists());

        let mut r = psm(dir.path());
        r.load_snapshot_list().unwrap();
        r.truncate_and_reload(0, 5, 5, 1_000, i64::MAX).unwrap();
        assert_eq!(r.map_end_offset(), 5);
        assert_eq!(r.entry(1).unwrap().last_seq(), 3);
        assert!(r.has_ongoing_txn(2));
        assert_eq!(r.first_unstable_offset(5), Some(4));
        // The last batch still dedups after the reload.
        assert!(matches!(
            r.analyze(&data(1, 0, 2, 2, false), 5, Validation::Client)
                .unwrap(),
            Analysis::Duplicate(_)
        ));

        // Damage the newest: it is deleted and the older one loaded.
        let mut bytes = fs::read(&name).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&name, bytes).unwrap();
        let mut c = psm(dir.path());
        c.load_snapshot_list().unwrap();
        c.truncate_and_reload(0, 5, 5, 1_000, i64::MAX).unwrap();
        assert!(!name.exists());
        assert_eq!(c.map_end_offset(), 2);
        assert_eq!(c.entry(1).unwrap().last_seq(), 1);
        assert!(c.entry(2).is_none());
        // Expired entries are skipped on load.
        let mut e = psm(dir.path());
        e.load_snapshot_list().unwrap();
        e.truncate_and_reload(0, 2, 2, 1_001 + 100, 100).unwrap();
        assert!(e.entry(1).is_none());
    }

    #[test]
    fn truncation_drops_snapshots_above_the_end_and_below_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = psm(dir.path());
        for i in 0..4 {
            client(&mut m, &data(1, 0, i, 1, false)).unwrap();
            m.take_snapshot(false).unwrap();
        }
        assert_eq!(m.snapshot_offsets(), vec![1, 2, 3, 4]);
        m.truncate_and_reload(2, 3, 3, 0, i64::MAX).unwrap();
        assert_eq!(
            m.snapshot_offsets(),
            vec![3],
            "at or below the log start, or above the end"
        );
        assert_eq!(m.map_end_offset(), 3);
        assert_eq!(m.entry(1).unwrap().last_seq(), 2);
        m.delete_snapshots_before(3).unwrap();
        assert_eq!(m.snapshot_offsets(), vec![3]);
        m.remove_stray_snapshots(&[0, 10]).unwrap();
        assert!(
            m.snapshot_offsets().is_empty(),
            "a stray below the last segment"
        );
        m.truncate_fully_and_start_at(7).unwrap();
        assert!(m.entry(1).is_none());
        assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[test]
    fn markers_are_read_from_control_batches() {
        let m = marker(3, 1, true, 9);
        assert_eq!(
            read_end_txn_marker(&m).unwrap(),
            Some(EndTxnMarker {
                commit: true,
                coordinator_epoch: 9
            })
        );
        assert!(
            !read_end_txn_marker(&marker(3, 1, false, 9))
                .unwrap()
                .unwrap()
                .commit
        );
        let mut bad = BatchBuilder::new().producer(3, 1, -1).transactional(true);
        bad.append(0, Some(&[0, 0, 0, 4]), Some(&[0, 0, 0, 0, 0, 1]), &[])
            .unwrap();
        let mut bad = bad.build().unwrap().to_vec();
        bad[22] |= 0x20;
        crate::log::record_batch::test_support::fix_crc(&mut bad);
        assert!(
            read_end_txn_marker(&bad).is_err(),
            "type 4 is no end marker"
        );
    }
}
