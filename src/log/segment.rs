//! LogSegment: one `.log` file of concatenated batches with its OffsetIndex, TimeIndex and (once an aborted
//! transaction ends in it) TransactionIndex.
//!
//! Appends happen under the owning partition's append lock; reads do not take it. A reader trusts only the
//! first `size` bytes (the committed size, published after the write and before the indexes and the high
//! watermark move), so it never sees a half-written batch.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::BytesMut;

use crate::log::error::LogError;
use crate::log::index::{NO_TIMESTAMP, OffsetIndex, TimeIndex};
use crate::log::read_buffer::{FileSlice, ReadBuffer};
use crate::log::record_batch::{CRC_START, RECORD_BATCH_OVERHEAD, RecordBatchHeader, check_header};
use crate::log::records::{self, MAX_DECOMPRESSED_BATCH_BYTES};
use crate::log::txn_index::{AbortedTxn, TransactionIndex};
use crate::log::{lock, rlock, wlock};

pub const LOG_FILE_SUFFIX: &str = ".log";
pub const INDEX_FILE_SUFFIX: &str = ".index";
pub const TIME_INDEX_FILE_SUFFIX: &str = ".timeindex";
pub const TXN_INDEX_FILE_SUFFIX: &str = ".txnindex";
/// Every file a segment may have: whatever renames or deletes a segment's files goes through this list.
/// (A partition directory also holds `<offset>.snapshot` producer state files, which are not a segment's.)
pub const SEGMENT_FILE_SUFFIXES: [&str; 4] = [
    LOG_FILE_SUFFIX,
    INDEX_FILE_SUFFIX,
    TIME_INDEX_FILE_SUFFIX,
    TXN_INDEX_FILE_SUFFIX,
];

/// Read buffer of recovery scans: large enough for sequential throughput, small enough to hold per thread.
const SCAN_BUFFER_BYTES: usize = 256 * 1024;

/// `<20-digit zero-padded base offset><suffix>`, Kafka's segment file name.
pub fn segment_file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// Header fields of a stored batch that the read paths need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    pub position: u64,
    pub size: usize,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    /// Records in the batch, as its header counts them.
    pub record_count: i32,
}

impl BatchInfo {
    fn from_header(position: u64, size: usize, h: &RecordBatchHeader<'_>) -> Self {
        BatchInfo {
            position,
            size,
            base_offset: h.base_offset(),
            last_offset: h.last_offset(),
            max_timestamp: h.max_timestamp(),
            record_count: h.record_count(),
        }
    }
}

/// What a recovery scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryOutcome {
    pub batches_scanned: u64,
    /// One past the last valid batch, or None when the scanned range held no valid batch.
    pub next_offset: Option<i64>,
    /// Bytes cut off the end of the file, and why.
    pub truncated_bytes: u64,
    pub truncation_reason: Option<String>,
}

/// Writer-side bookkeeping, touched only by the appender (under the partition's append lock) and by loading.
#[derive(Debug)]
struct AppendState {
    bytes_since_last_index_entry: u64,
    max_timestamp_so_far: i64,
    /// Last offset of the batch that set `max_timestamp_so_far`.
    offset_of_max_timestamp: i64,
    /// Wall-clock time of the first append (or the first batch's timestamp after a restart): drives
    /// time-based rolling.
    rolling_base_ms: Option<i64>,
}

/// One segment of a partition log.
#[derive(Debug)]
pub struct LogSegment {
    base_offset: i64,
    log_path: PathBuf,
    /// Shared with the fetch responses that send a range of it straight from the file ([`FileSlice`]): an
    /// unlinked segment's data stays readable until the last of them is written.
    log: Arc<File>,
    /// Committed bytes: everything below is whole batches.
    size: AtomicU64,
    /// Largest batch maxTimestamp in the segment (NO_TIMESTAMP when none), for ListOffsets by time.
    max_timestamp: AtomicI64,
    offset_index: RwLock<OffsetIndex>,
    time_index: RwLock<TimeIndex>,
    /// Aborted transactions whose marker is in this segment (no file until the first one).
    txn_index: TransactionIndex,
    state: Mutex<AppendState>,
    /// Set once the indexes of this (inactive) segment have been fsynced, so flushes do it only once.
    indexes_flushed: AtomicBool,
    /// Whether both index files were present when the segment was opened (a missing one must be rebuilt).
    indexes_existed: AtomicBool,
    /// Test seam: errno the next append fails with after writing half its bytes (0: none).
    #[cfg(test)]
    fail_next_write: std::sync::atomic::AtomicI32,
}

/// Reads fixed ranges of a file through one reusable buffer (sequential scans without per-batch syscalls).
struct FileScanner<'a> {
    file: &'a File,
    end: u64,
    buf: Vec<u8>,
    buf_pos: u64,
    buf_len: usize,
}

impl<'a> FileScanner<'a> {
    fn new(file: &'a File, end: u64, capacity: usize) -> Self {
        FileScanner {
            file,
            end,
            buf: vec![0; capacity],
            buf_pos: 0,
            buf_len: 0,
        }
    }

    /// `len` bytes at `pos`; `len` must fit the buffer and `pos + len` must be within `end`.
    fn bytes(&mut self, pos: u64, len: usize) -> io::Result<&[u8]> {
        debug_assert!(len <= self.buf.len() && pos + len as u64 <= self.end);
        let in_buf = pos >= self.buf_pos && pos + len as u64 <= self.buf_pos + self.buf_len as u64;
        if !in_buf {
            let n = (self.end - pos).min(self.buf.len() as u64) as usize;
            self.file.read_exact_at(&mut self.buf[..n], pos)?;
            self.buf_pos = pos;
            self.buf_len = n;
        }
        let at = (pos - self.buf_pos) as usize;
        Ok(&self.buf[at..at + len])
    }

    /// CRC-32C of `len` bytes at `pos`, streamed through the buffer (no allocation sized by file content).
    fn crc32c(&mut self, mut pos: u64, mut len: u64) -> io::Result<u32> {
        let mut crc = 0u32;
        while len > 0 {
            let n = len.min(self.buf.len() as u64) as usize;
            crc = crc32c::crc32c_append(crc, self.bytes(pos, n)?);
            pos += n as u64;
            len -= n as u64;
        }
        Ok(crc)
    }
}

fn invalid_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl LogSegment {
    /// Creates an empty segment (any stale files with the same name are emptied) with preallocated indexes.
    pub fn create(dir: &Path, base_offset: i64, max_index_bytes: u32) -> io::Result<Self> {
        Self::create_suffixed(dir, base_offset, max_index_bytes, "").inspect_err(|_| {
            // Typically ENOSPC while reserving the indexes: leave no half-made segment behind (a later
            // start would load it; a retried roll would meet it).
            if let Err(cleanup) = delete_segment_files(dir, base_offset) {
                tracing::warn!(segment = base_offset, error = %cleanup,
                    "could not remove the files of a segment that failed to be created");
            }
        })
    }

    /// Opens an existing segment as found on disk, without checking it; `max_index_bytes` Some preallocates
    /// the indexes for appends. Call `sanity_check_indexes` / `recover` next.
    pub fn open(dir: &Path, base_offset: i64, max_index_bytes: Option<u32>) -> io::Result<Self> {
        let log_path = dir.join(segment_file_name(base_offset, LOG_FILE_SUFFIX));
        let log = OpenOptions::new().read(true).write(true).open(&log_path)?;
        let seg = Self::with_files(dir, base_offset, log_path, log, max_index_bytes)?;
        // Indexes found on disk were fsynced by the run that wrote them, or are rebuilt (and fsynced) now.
        seg.indexes_flushed.store(true, Ordering::Release);
        seg.size.store(seg.log.metadata()?.len(), Ordering::Release);
        let last = rlock(&seg.time_index).last_entry();
        if let Some((ts, off)) = last {
            let mut st = lock(&seg.state);
            st.max_timestamp_so_far = ts;
            st.offset_of_max_timestamp = off;
            seg.max_timestamp.store(ts, Ordering::Release);
        }
        Ok(seg)
    }

    fn with_files(
        dir: &Path,
        base_offset: i64,
        log_path: PathBuf,
        log: File,
        max_index_bytes: Option<u32>,
    ) -> io::Result<Self> {
        Self::with_files_suffixed(dir, base_offset, log_path, log, max_index_bytes, "")
    }

    /// Creates an empty segment whose files carry an extra suffix (`.cleaned`: the log cleaner's
    /// output, renamed into place when it is swapped in; `""` for a live segment).
    pub fn create_suffixed(
        dir: &Path,
        base_offset: i64,
        max_index_bytes: u32,
        extra: &str,
    ) -> io::Result<Self> {
        let name =
            |suffix: &str| dir.join(format!("{}{extra}", segment_file_name(base_offset, suffix)));
        for suffix in [
            INDEX_FILE_SUFFIX,
            TIME_INDEX_FILE_SUFFIX,
            TXN_INDEX_FILE_SUFFIX,
        ] {
            match std::fs::remove_file(name(suffix)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let log_path = name(LOG_FILE_SUFFIX);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)?;
        let seg = Self::with_files_suffixed(
            dir,
            base_offset,
            log_path,
            log,
            Some(max_index_bytes),
            extra,
        )?;
        seg.indexes_existed.store(true, Ordering::Release);
        Ok(seg)
    }

    fn with_files_suffixed(
        dir: &Path,
        base_offset: i64,
        log_path: PathBuf,
        log: File,
        max_index_bytes: Option<u32>,
        extra: &str,
    ) -> io::Result<Self> {
        let index_path = dir.join(format!(
            "{}{extra}",
            segment_file_name(base_offset, INDEX_FILE_SUFFIX)
        ));
        let time_index_path = dir.join(format!(
            "{}{extra}",
            segment_file_name(base_offset, TIME_INDEX_FILE_SUFFIX)
        ));
        let indexes_existed = index_path.exists() && time_index_path.exists();
        let offset_index = OffsetIndex::open(&index_path, base_offset, max_index_bytes)?;
        let time_index = TimeIndex::open(&time_index_path, base_offset, max_index_bytes)?;
        let txn_index = TransactionIndex::open(
            dir.join(format!(
                "{}{extra}",
                segment_file_name(base_offset, TXN_INDEX_FILE_SUFFIX)
            )),
            base_offset,
        )?;
        Ok(LogSegment {
            base_offset,
            log_path,
            log: Arc::new(log),
            size: AtomicU64::new(0),
            max_timestamp: AtomicI64::new(NO_TIMESTAMP),
            offset_index: RwLock::new(offset_index),
            time_index: RwLock::new(time_index),
            txn_index,
            state: Mutex::new(AppendState {
                bytes_since_last_index_entry: 0,
                max_timestamp_so_far: NO_TIMESTAMP,
                offset_of_max_timestamp: base_offset,
                rolling_base_ms: None,
            }),
            indexes_flushed: AtomicBool::new(false),
            indexes_existed: AtomicBool::new(indexes_existed),
            #[cfg(test)]
            fail_next_write: std::sync::atomic::AtomicI32::new(0),
        })
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    /// Committed size in bytes.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    pub fn rolling_base_ms(&self) -> Option<i64> {
        lock(&self.state).rolling_base_ms
    }
    /// True when either index has no room: the segment must roll before the next append.
    pub fn indexes_full(&self) -> bool {
        rlock(&self.offset_index).is_full() || rlock(&self.time_index).is_full()
    }

    /// Appends batches whose offsets are already assigned, then indexes them. Called under the partition's
    /// append lock. On a write error (ENOSPC after a partial write, typically) the file is cut back to the
    /// committed size and the write's own error is returned, so the segment is exactly as before; if even
    /// the cut fails, the error says so and carries no OS error code (the caller must not retry on it).
    pub fn append(&self, records: &[u8], now_ms: i64, index_interval_bytes: u32) -> io::Result<()> {
        let start = self.size();
        if let Err(e) = self.write_at(records, start) {
            // Readers never looked past `start`; the cut frees the blocks a partial write took.
            if let Err(cut) = self.log.set_len(start) {
                return Err(io::Error::other(format!(
                    "{}: write failed ({e}) and the partial write could not be cut off ({cut})",
                    self.log_path.display()
                )));
            }
            return Err(e);
        }
        self.size
            .store(start + records.len() as u64, Ordering::Release);
        let mut st = lock(&self.state);
        if st.rolling_base_ms.is_none() {
            st.rolling_base_ms = Some(now_ms);
        }
        let mut pos = 0usize;
        while pos < records.len() {
            let h = RecordBatchHeader::parse(&records[pos..])
                .expect("invariant: appended records were validated as whole batches");
            let size = h
                .total_size()
                .expect("invariant: appended records were validated");
            self.index_batch(&mut st, start + pos as u64, size, &h, index_interval_bytes);
            pos += size;
        }
        Ok(())
    }

    /// The positioned write of an append; the test seam writes half the bytes, then fails as injected.
    fn write_at(&self, records: &[u8], pos: u64) -> io::Result<()> {
        #[cfg(test)]
        {
            let errno = self.fail_next_write.swap(0, Ordering::AcqRel);
            if errno != 0 {
                self.log.write_all_at(&records[..records.len() / 2], pos)?;
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        self.log.write_all_at(records, pos)
    }

    /// Test seam: the next append writes half its bytes, then fails with `errno` (ENOSPC: a disk that
    /// filled up in the middle of the write).
    #[cfg(test)]
    pub(crate) fn inject_write_failure(&self, errno: i32) {
        self.fail_next_write.store(errno, Ordering::Release);
    }

    /// Kafka's indexing rule: an entry for a batch once more than `index_interval_bytes` were appended since
    /// the last entry (so a segment's first batch is never indexed); the time index follows with the max
    /// timestamp so far.
    fn index_batch(
        &self,
        st: &mut AppendState,
        position: u64,
        size: usize,
        h: &RecordBatchHeader<'_>,
        interval: u32,
    ) {
        if h.max_timestamp() > st.max_timestamp_so_far {
            st.max_timestamp_so_far = h.max_timestamp();
            st.offset_of_max_timestamp = h.last_offset();
            self.max_timestamp
                .fetch_max(h.max_timestamp(), Ordering::AcqRel);
        }
        if st.bytes_since_last_index_entry > u64::from(interval) {
            if let Ok(pos) = u32::try_from(position) {
                wlock(&self.offset_index).append(h.last_offset(), pos);
                wlock(&self.time_index).maybe_append(
                    st.max_timestamp_so_far,
                    st.offset_of_max_timestamp,
                    false,
                );
            }
            st.bytes_since_last_index_entry = 0;
        }
        st.bytes_since_last_index_entry += size as u64;
    }

    /// Validates both indexes against the log file; `next_offset` is the segment's end when known.
    pub fn sanity_check_indexes(&self, next_offset: Option<i64>) -> Result<(), String> {
        if !self.indexes_existed.load(Ordering::Acquire) {
            return Err(format!("{}: index files missing", self.log_path.display()));
        }
        rlock(&self.offset_index).sanity_check(self.size(), next_offset)?;
        rlock(&self.time_index).sanity_check(next_offset)
    }

    /// Position of the last offset index entry (0 when none): where a tail check starts.
    pub fn last_indexed_position(&self) -> u64 {
        rlock(&self.offset_index)
            .last_entry()
            .map_or(0, |(_, p)| u64::from(p))
    }

    /// Walks the batches from `start` (a batch boundary) to the end of the file, checking length, magic,
    /// CRC and that offsets increase (the first batch must start at or after `min_offset`). Truncates the file
    /// at the first torn or corrupt batch. With `rebuild_indexes` both indexes are emptied first and rebuilt
    /// from the walk; otherwise entries are added only for batches past the last one.
    pub fn recover(
        &self,
        start: u64,
        min_offset: i64,
        rebuild_indexes: bool,
        index_interval_bytes: u32,
    ) -> io::Result<RecoveryOutcome> {
        let file_len = self.log.metadata()?.len();
        let mut st = lock(&self.state);
        if rebuild_indexes {
            wlock(&self.offset_index).reset();
            wlock(&self.time_index).reset();
            st.max_timestamp_so_far = NO_TIMESTAMP;
            st.offset_of_max_timestamp = self.base_offset;
            self.max_timestamp.store(NO_TIMESTAMP, Ordering::Release);
            self.indexes_existed.store(true, Ordering::Release);
        }
        st.bytes_since_last_index_entry = 0;
        let mut out = RecoveryOutcome::default();
        let mut scanner = FileScanner::new(&self.log, file_len, SCAN_BUFFER_BYTES);
        let mut pos = start.min(file_len);
        let mut expected = min_offset;
        while pos < file_len {
            let bad = match self.check_batch_at(&mut scanner, pos, file_len, expected)? {
                Ok((info, header)) => {
                    let h = RecordBatchHeader::parse(&header).expect("61-byte header");
                    self.index_batch(&mut st, pos, info.size, &h, index_interval_bytes);
                    out.batches_scanned += 1;
                    expected = info.last_offset + 1;
                    out.next_offset = Some(expected);
                    pos += info.size as u64;
                    continue;
                }
                Err(reason) => reason,
            };
            out.truncated_bytes = file_len - pos;
            out.truncation_reason = Some(bad);
            self.log.set_len(pos)?;
            break;
        }
        self.size.store(pos, Ordering::Release);
        Ok(out)
    }

    /// After a restart the wall-clock time of the first append is unknown; like Kafka, use the first batch's
    /// maxTimestamp instead (capped at `now_ms`), so time-based rolling survives restarts.
    pub fn init_rolling_base(&self, now_ms: i64) -> io::Result<()> {
        if lock(&self.state).rolling_base_ms.is_some() {
            return Ok(());
        }
        if let Some(first) = self.read_batch_info(0, self.size())? {
            let ts = if first.max_timestamp < 0 {
                now_ms
            } else {
                first.max_timestamp.min(now_ms)
            };
            lock(&self.state).rolling_base_ms = Some(ts);
        }
        Ok(())
    }

    /// Checks one stored batch; Ok(Err(reason)) when it is torn or corrupt.
    #[allow(clippy::type_complexity)]
    fn check_batch_at(
        &self,
        scanner: &mut FileScanner<'_>,
        pos: u64,
        end: u64,
        expected: i64,
    ) -> io::Result<Result<(BatchInfo, [u8; RECORD_BATCH_OVERHEAD]), String>> {
        if pos + RECORD_BATCH_OVERHEAD as u64 > end {
            return Ok(Err(format!(
                "incomplete batch header ({} bytes)",
                end - pos
            )));
        }
        let mut header = [0u8; RECORD_BATCH_OVERHEAD];
        header.copy_from_slice(scanner.bytes(pos, RECORD_BATCH_OVERHEAD)?);
        let h = RecordBatchHeader::parse(&header).expect("61-byte header");
        let size = match check_header(&h) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        if pos + size as u64 > end {
            return Ok(Err(format!(
                "torn batch: {size} bytes claimed, {} on disk",
                end - pos
            )));
        }
        let crc = scanner.crc32c(pos + CRC_START as u64, (size - CRC_START) as u64)?;
        if crc != h.crc() {
            return Ok(Err(format!("CRC mismatch at offset {}", h.base_offset())));
        }
        if h.base_offset() < expected {
            return Ok(Err(format!(
                "offset {} goes backwards (expected >= {expected})",
                h.base_offset()
            )));
        }
        Ok(Ok((BatchInfo::from_header(pos, size, &h), header)))
    }

    /// Reads the header of the stored batch at `pos`; None when no whole header fits below `limit`.
    pub(crate) fn read_batch_info(&self, pos: u64, limit: u64) -> io::Result<Option<BatchInfo>> {
        if pos + RECORD_BATCH_OVERHEAD as u64 > limit {
            return Ok(None);
        }
        let mut header = [0u8; RECORD_BATCH_OVERHEAD];
        self.log.read_exact_at(&mut header, pos)?;
        let h = RecordBatchHeader::parse(&header).expect("61-byte header");
        let size = check_header(&h).map_err(|e| {
            invalid_data(format!(
                "{}: bad batch at position {pos}: {e}",
                self.log_path.display()
            ))
        })?;
        if pos + size as u64 > limit {
            return Err(invalid_data(format!(
                "{}: batch at position {pos} runs past the committed size",
                self.log_path.display()
            )));
        }
        Ok(Some(BatchInfo::from_header(pos, size, &h)))
    }

    /// The committed batch that contains `offset` (the first batch whose last offset is >= `offset`), found
    /// through the offset index and a short header walk. None when the segment ends first.
    pub fn find_batch(&self, offset: i64) -> io::Result<Option<BatchInfo>> {
        let limit = self.size();
        let mut pos = rlock(&self.offset_index)
            .lookup(offset)
            .map_or(0, |(_, p)| u64::from(p));
        while let Some(info) = self.read_batch_info(pos, limit)? {
            if info.last_offset >= offset {
                return Ok(Some(info));
            }
            pos += info.size as u64;
        }
        Ok(None)
    }

    /// `len` bytes at `pos`; the caller keeps the range inside the committed size.
    pub fn read(&self, pos: u64, len: usize) -> io::Result<BytesMut> {
        let mut buf = BytesMut::zeroed(len);
        self.log.read_exact_at(&mut buf, pos)?;
        Ok(buf)
    }

    /// `len` bytes at `pos` in a reusable buffer, for fetch responses (see [`ReadBuffer`]); the caller keeps
    /// the range inside the committed size.
    pub fn read_records(&self, pos: u64, len: usize) -> io::Result<ReadBuffer> {
        ReadBuffer::read_exact_at(&self.log, pos, len)
    }

    /// `len` bytes at `pos` left in the file, for a fetch response to send without reading them here (see
    /// [`FileSlice`]); the caller keeps the range inside the committed size.
    pub fn slice(&self, pos: u64, len: usize, records: u64) -> FileSlice {
        FileSlice::new(self.log.clone(), pos, len, records)
    }

    /// Kafka's `LogSegment.findOffsetByTimestamp`: the first record at or after `start_offset` whose
    /// timestamp is >= `ts`, among batches wholly below `limit_offset`, as (offset, timestamp). Starts from
    /// the time index, skips batches by their maxTimestamp and reads the records of a batch reaching `ts`
    /// only (see [`LogSegment::find_record`]).
    pub fn find_offset_for_timestamp(
        &self,
        ts: i64,
        start_offset: i64,
        limit_offset: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let from = rlock(&self.time_index)
            .lookup_before(ts)
            .map_or(start_offset, |(_, off)| off.max(start_offset));
        let mut pos = rlock(&self.offset_index)
            .lookup(from)
            .map_or(0, |(_, p)| u64::from(p));
        let limit = self.size();
        while let Some(info) = self.read_batch_info(pos, limit)? {
            if info.last_offset >= limit_offset {
                return Ok(None);
            }
            if info.max_timestamp >= ts
                && info.last_offset >= start_offset
                && let Some(found) = self.find_record(&info, start_offset, |t| t >= ts)?
            {
                return Ok(Some(found));
            }
            pos += info.size as u64;
        }
        Ok(None)
    }

    /// The first record of the batch at or after `start_offset` whose timestamp `wanted` accepts, as
    /// (offset, timestamp); a compressed batch is decompressed, bounded by MAX_DECOMPRESSED_BATCH_BYTES.
    /// A batch whose records cannot be read (over that bound, or not decodable though its CRC held) answers
    /// its own first offset and maxTimestamp: a consumer seeking there still reads every record of the
    /// batch, so none at or after the target is skipped, where an error would leave it no offset at all.
    pub fn find_record(
        &self,
        info: &BatchInfo,
        start_offset: i64,
        mut wanted: impl FnMut(i64) -> bool,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let fallback = Some((info.base_offset.max(start_offset), info.max_timestamp));
        if info.size > MAX_DECOMPRESSED_BATCH_BYTES {
            return Ok(fallback);
        }
        let bytes = self.read(info.position, info.size)?;
        let found =
            records::find_record_timestamp(&bytes, MAX_DECOMPRESSED_BATCH_BYTES, |delta, t| {
                info.base_offset + i64::from(delta) >= start_offset && wanted(t)
            });
        match found {
            Ok(found) => Ok(found.map(|(delta, t)| (info.base_offset + i64::from(delta), t))),
            Err(e) => {
                // Every lookup that reaches such a batch meets it again: one WARN per process, then DEBUG.
                static WARNED: AtomicBool = AtomicBool::new(false);
                if WARNED.swap(true, Ordering::Relaxed) {
                    tracing::debug!(segment = %self.log_path.display(), base_offset = info.base_offset,
                        error = %e, "records of a batch unreadable; answering the batch's first offset");
                } else {
                    tracing::warn!(segment = %self.log_path.display(), base_offset = info.base_offset,
                        error = %e, "records of a batch unreadable; answering the batch's first offset");
                }
                Ok(fallback)
            }
        }
    }

    /// fsyncs the log data (fdatasync: the size is part of it).
    pub fn flush_log(&self) -> io::Result<()> {
        self.log.sync_data()
    }

    /// fsyncs both indexes once for an inactive segment, so a clean restart can trust them.
    pub fn flush_indexes_once(&self) -> io::Result<()> {
        if self.indexes_flushed.load(Ordering::Acquire) {
            return Ok(());
        }
        rlock(&self.offset_index).flush()?;
        rlock(&self.time_index).flush()?;
        self.txn_index.flush()?;
        self.indexes_flushed.store(true, Ordering::Release);
        Ok(())
    }

    /// fsyncs the indexes unconditionally (clean shutdown, after a rebuild); the transaction index only if
    /// it changed.
    pub fn flush_indexes(&self) -> io::Result<()> {
        rlock(&self.offset_index).flush()?;
        rlock(&self.time_index).flush()?;
        self.txn_index.flush()?;
        self.indexes_flushed.store(true, Ordering::Release);
        Ok(())
    }

    /// fsyncs the transaction index if it changed (every flush of the partition: unlike the offset and
    /// time indexes, it cannot be rebuilt from this segment alone).
    pub fn flush_txn_index(&self) -> io::Result<()> {
        self.txn_index.flush()
    }

    /// The segment stops taking appends: record the final max timestamp in the time index (so it is known at
    /// the next start without a scan) and trim both indexes to their entries.
    pub fn on_become_inactive(&self) -> io::Result<()> {
        let st = lock(&self.state);
        wlock(&self.time_index).maybe_append(
            st.max_timestamp_so_far,
            st.offset_of_max_timestamp,
            true,
        );
        drop(st);
        self.trim_indexes()
    }

    pub fn trim_indexes(&self) -> io::Result<()> {
        wlock(&self.offset_index).trim_to_valid_size()?;
        wlock(&self.time_index).trim_to_valid_size()
    }

    /// Forgets all index entries (before a rebuild), so a resize does not keep a damaged file's length.
    pub fn reset_indexes(&self) {
        wlock(&self.offset_index).reset();
        wlock(&self.time_index).reset();
    }

    /// Kafka's `LogSegment.truncateTo`: removes every batch whose last offset is >= `offset`, so the segment
    /// ends at the batch boundary at or below `offset`, and every aborted transaction whose marker is at or
    /// above `offset`. The committed size drops first (readers stop there), then the file is cut and both
    /// indexes lose their entries at or above the cut; the max timestamp is
    /// recomputed from the batches kept, so the time index's final entry (written when the segment becomes
    /// inactive) is right again. Returns the bytes removed. Call under the partition's append lock; a reader
    /// already past the cut gets a short-read error, never a panic.
    pub fn truncate_to(&self, offset: i64) -> io::Result<u64> {
        let Some(cut) = self.find_batch(offset)? else {
            self.txn_index.truncate_to(offset)?;
            return Ok(0);
        };
        let old_size = self.size();
        let mut st = lock(&self.state);
        self.size.store(cut.position, Ordering::Release);
        self.log.set_len(cut.position)?;
        let end = cut.base_offset.min(offset);
        self.txn_index.truncate_to(end)?;
        wlock(&self.offset_index).truncate_to(end);
        wlock(&self.time_index).truncate_to(end);
        let (mut max_ts, mut max_offset) = (NO_TIMESTAMP, self.base_offset);
        let mut pos = 0;
        while let Some(info) = self.read_batch_info(pos, cut.position)? {
            if info.max_timestamp > max_ts {
                (max_ts, max_offset) = (info.max_timestamp, info.last_offset);
            }
            pos += info.size as u64;
        }
        st.max_timestamp_so_far = max_ts;
        st.offset_of_max_timestamp = max_offset;
        st.bytes_since_last_index_entry = cut.position.saturating_sub(self.last_indexed_position());
        if cut.position == 0 {
            st.rolling_base_ms = None;
        }
        self.max_timestamp.store(max_ts, Ordering::Release);
        Ok(old_size - cut.position)
    }

    /// Preallocates the indexes again so the segment can take appends (it became the last one).
    pub fn make_active(&self, max_index_bytes: u32) -> io::Result<()> {
        wlock(&self.offset_index).resize(max_index_bytes)?;
        wlock(&self.time_index).resize(max_index_bytes)?;
        self.indexes_flushed.store(false, Ordering::Release);
        Ok(())
    }
}

/// The segment's aborted-transaction index (see [`TransactionIndex`]). Appends, truncation and reset run
/// under the partition's append lock, or while loading; reads take no lock.
impl LogSegment {
    /// Records an aborted transaction whose ABORT marker is in this segment (after the marker's append,
    /// before the high watermark passes it). Returns whether the index file was created by it, so the
    /// caller fsyncs the directory with the next flush.
    pub fn append_aborted_txn(&self, txn: &AbortedTxn) -> io::Result<bool> {
        self.txn_index.append(txn)
    }

    /// Adds the aborted transactions of this segment that overlap `[fetch_offset, upper_bound)`; true when
    /// the search is complete (see [`TransactionIndex::collect_aborted_txns`]).
    pub fn collect_aborted_txns(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
        out: &mut Vec<AbortedTxn>,
    ) -> io::Result<bool> {
        self.txn_index
            .collect_aborted_txns(fetch_offset, upper_bound, out)
    }

    /// Every aborted transaction of this segment, in marker order, to `f` until it fails (the cleaner
    /// carries them into a cleaned segment).
    pub fn for_each_aborted_txn(
        &self,
        f: impl FnMut(AbortedTxn) -> io::Result<()>,
    ) -> io::Result<()> {
        self.txn_index.for_each(f)
    }

    /// Whether the segment has a `.txnindex` file.
    pub fn has_txn_index(&self) -> bool {
        self.txn_index.exists()
    }

    /// Creates the (empty) `.txnindex` file if there is none: a cleaned segment gets one whenever the
    /// segment it replaces has one, so the swap always replaces the old file.
    pub fn create_txn_index_file(&self) -> io::Result<bool> {
        self.txn_index.create_file()
    }

    /// Drops the aborted transactions whose marker is at or above `offset` (recovery cut the segment there,
    /// or a producer-state replay from `offset` is about to append them again).
    pub fn truncate_txn_index(&self, offset: i64) -> io::Result<()> {
        self.txn_index.truncate_to(offset)
    }

    /// Forgets every aborted transaction of this segment, before a producer-state replay of the segment
    /// appends them again (Kafka's `LogSegment.recover` does the same).
    pub fn reset_txn_index(&self) -> io::Result<()> {
        self.txn_index.reset()
    }

    /// Checks the transaction index file (see [`TransactionIndex::sanity_check`]).
    pub fn sanity_check_txn_index(&self) -> Result<(), String> {
        self.txn_index.sanity_check()
    }
}

/// Removes a segment's files (recovery dropping segments past a truncation point); missing files are fine.
pub fn delete_segment_files(dir: &Path, base_offset: i64) -> io::Result<()> {
    for suffix in SEGMENT_FILE_SUFFIXES {
        match std::fs::remove_file(dir.join(segment_file_name(base_offset, suffix))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record_batch::test_support::batch;
    use crate::log::record_batch::{set_base_offset, set_partition_leader_epoch};

    fn with_offset(mut b: Vec<u8>, base: i64) -> Vec<u8> {
        set_base_offset(&mut b, base);
        set_partition_leader_epoch(&mut b, 0);
        b
    }

    #[test]
    fn find_batch_uses_index_and_returns_containing_batch() {
        let dir = tempfile::tempdir().unwrap();
        let seg = LogSegment::create(dir.path(), 100, 4096).unwrap();
        let mut next = 100;
        for _ in 0..20 {
            let b = with_offset(batch(3, 50, 1_000 + next), next);
            seg.append(&b, 0, 100).unwrap();
            next += 3;
        }
        assert!(
            rlock(&seg.offset_index).entries() > 3,
            "interval 100 indexes most batches"
        );
        for target in [100, 101, 102, 103, 130, 159] {
            let info = seg.find_batch(target).unwrap().unwrap();
            assert!(
                info.base_offset <= target && target <= info.last_offset,
                "target {target}: {info:?}"
            );
        }
        assert_eq!(seg.find_batch(160).unwrap(), None);
        assert!(seg.sanity_check_indexes(Some(160)).is_ok());
    }

    #[test]
    fn failed_index_trim_at_roll_leaves_the_segment_readable() {
        use crate::log::index::ResizeFault;
        let dir = tempfile::tempdir().unwrap();
        let seg = LogSegment::create(dir.path(), 0, 4096).unwrap();
        for i in 0..10 {
            seg.append(&with_offset(batch(1, 100, i), i), 0, 0).unwrap();
        }
        wlock(&seg.offset_index).inject_resize_failure(ResizeFault::Map);
        assert!(seg.on_become_inactive().is_err());
        wlock(&seg.time_index).inject_resize_failure(ResizeFault::SetLen);
        assert!(seg.on_become_inactive().is_err());
        for target in 0..10 {
            assert_eq!(seg.find_batch(target).unwrap().unwrap().base_offset, target);
        }
        assert_eq!(
            seg.find_offset_for_timestamp(7, 0, 10).unwrap(),
            Some((7, 7))
        );
        assert!(seg.sanity_check_indexes(Some(10)).is_ok());
        seg.on_become_inactive().unwrap();
        assert_eq!(seg.find_batch(9).unwrap().unwrap().base_offset, 9);
    }

    #[test]
    fn recover_rebuilds_indexes_and_truncates_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let seg = LogSegment::create(dir.path(), 0, 4096).unwrap();
        for i in 0..10 {
            seg.append(&with_offset(batch(1, 100, i), i), 0, 0).unwrap();
        }
        let good = seg.size();
        let entries = rlock(&seg.offset_index).entries();
        std::fs::OpenOptions::new()
            .append(true)
            .open(seg.log_path())
            .unwrap()
            .write_all_at(&[7; 30], good)
            .unwrap();
        wlock(&seg.offset_index).reset();
        let out = seg.recover(0, 0, true, 0).unwrap();
        assert_eq!(out.batches_scanned, 10);
        assert_eq!(out.next_offset, Some(10));
        assert_eq!(out.truncated_bytes, 30);
        assert_eq!(seg.size(), good);
        assert_eq!(std::fs::metadata(seg.log_path()).unwrap().len(), good);
        assert_eq!(rlock(&seg.offset_index).entries(), entries);
        assert_eq!(seg.max_timestamp(), 9);
    }

    #[test]
    fn truncate_to_cuts_file_indexes_and_max_timestamp_at_a_batch_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let seg = LogSegment::create(dir.path(), 0, 4096).unwrap();
        for i in 0..10 {
            seg.append(&with_offset(batch(2, 100, 10 * i), 2 * i), 0, 0)
                .unwrap();
        }
        let keep = seg.find_batch(8).unwrap().unwrap().position;
        assert!(
            seg.truncate_to(9).unwrap() > 0,
            "offset 9 is inside the batch at 8"
        );
        assert_eq!(seg.size(), keep);
        assert_eq!(std::fs::metadata(seg.log_path()).unwrap().len(), keep);
        assert_eq!(seg.max_timestamp(), 30);
        let last = rlock(&seg.offset_index).last_entry().unwrap();
        assert!(
            last.0 < 8,
            "no offset index entry at or past the cut: {last:?}"
        );
        let last = rlock(&seg.time_index).last_entry().unwrap();
        assert!(
            last.1 < 8,
            "no time index entry at or past the cut: {last:?}"
        );
        assert!(seg.sanity_check_indexes(Some(8)).is_ok());
        seg.on_become_inactive().unwrap();
        assert_eq!(rlock(&seg.time_index).last_entry().unwrap().0, 30);
        seg.append(&with_offset(batch(2, 100, 5), 8), 0, 0).unwrap();
        assert_eq!(seg.find_batch(9).unwrap().unwrap().base_offset, 8);
        assert_eq!(
            seg.truncate_to(100).unwrap(),
            0,
            "past the end: nothing to cut"
        );
    }

    #[test]
    fn truncate_to_an_offset_in_a_gap_cuts_at_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let seg = LogSegment::create(dir.path(), 0, 4096).unwrap();
        // Compacted: offsets 2..=4 were removed.
        seg.append(&with_offset(batch(2, 100, 1), 0), 0, 0).unwrap();
        let first = seg.size();
        seg.append(&with_offset(batch(2, 100, 9), 5), 0, 0).unwrap();
        assert!(seg.truncate_to(3).unwrap() > 0);
        assert_eq!(seg.size(), first);
        assert_eq!(seg.max_timestamp(), 1);
        assert_eq!(seg.find_batch(2).unwrap(), None);
    }
}
