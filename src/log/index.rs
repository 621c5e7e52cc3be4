//! Sparse indexes of a segment, Kafka-style: a file preallocated to `max_index_bytes`, memory-mapped while
//! the segment is active, trimmed to its entries when the segment rolls or the log closes.
//!
//! [`OffsetIndex`] entries are 8 bytes (relative offset u32 BE, file position u32 BE) and map the last offset
//! of a batch to the position where that batch starts. [`TimeIndex`] entries are 12 bytes (timestamp i64 BE,
//! relative offset u32 BE): the largest timestamp seen so far in the segment and the offset where it was seen.
//! Both are rebuilt from the log whenever they look wrong, so they need no fsync on the append path.
//!
//! Disk space: the preallocated length is sparse, as in Kafka, but entries are stored through a shared
//! mapping, and a store into a page the filesystem cannot back (a full disk) raises SIGBUS and kills the
//! process. So the blocks under the mapping are reserved for real (`posix_fallocate`) a chunk at a time
//! ahead of the entries: the first chunk when the segment is created or made active (a full disk then fails
//! that roll with ENOSPC), the next ones as entries reach them (a full disk then only skips index entries,
//! which makes lookups scan a little further). The time index always keeps one reserved slot spare for the
//! final entry written when the segment rolls.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use memmap2::{MmapMut, MmapOptions};

/// Timestamp of "no timestamp" in Kafka; time index entries are only added above it.
pub const NO_TIMESTAMP: i64 = -1;

/// A memory-mapped file of fixed-size entries; the first `entries` are valid.
#[derive(Debug)]
struct IndexFile {
    path: PathBuf,
    file: File,
    /// Always a valid mapping of at least `entries` entries: `resize` swaps it only once the new one exists,
    /// so a failed resize (ENOSPC while rolling) leaves the index usable.
    mmap: MmapMut,
    entries: usize,
    entry_size: usize,
    /// False when the file length was not a multiple of the entry size at open.
    length_ok: bool,
    /// Bytes from the start of the file reserved by this process (backed by allocated blocks); entries are
    /// only ever stored below it.
    reserved: usize,
    /// Test seam: make the next resize fail at the given step.
    #[cfg(test)]
    fault: Option<ResizeFault>,
}

/// Where an injected resize failure strikes (tests only).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResizeFault {
    /// Changing the file length (`set_len`, or the allocation when growing) fails: the file keeps its length.
    SetLen,
    /// Mapping the new length fails (after `set_len` when growing, before it when shrinking).
    Map,
}

impl IndexFile {
    /// Opens or creates the file. Existing files keep their entries (length / entry size); when `max_bytes`
    /// is Some the file is then grown (preallocated, sparse) to that size, rounded down to whole entries, with
    /// the entries and the first chunk past them reserved on disk.
    fn open(path: &Path, entry_size: usize, max_bytes: Option<u32>) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        let usable =
            usize::try_from(len).map_err(|_| io::Error::other("index file larger than memory"))?;
        let entries = usable / entry_size;
        let whole = entries * entry_size;
        // Nothing is known to be backed: a file left untrimmed by a crash is sparse past its real entries.
        let mut reserved = 0;
        let mmap = match max_bytes {
            Some(max) => {
                let target = preallocated_len(max, entry_size, entries);
                // Reserve the entries and the first chunk past them before the (sparse) resize, so a full
                // disk fails here and leaves the file as it was.
                let first = target.min(whole + RESERVE_CHUNK_BYTES);
                allocate(&file, 0, first)?;
                reserved = first;
                if target != usable {
                    file.set_len(target as u64)?;
                }
                map_file(&file, target)?
            }
            None => map_file(&file, whole)?,
        };
        Ok(IndexFile {
            path: path.to_path_buf(),
            file,
            mmap,
            entries,
            entry_size,
            length_ok: usable % entry_size == 0,
            reserved,
            #[cfg(test)]
            fault: None,
        })
    }

    /// Maps the first `len` bytes of the file (which must be at least that long), or fails as injected.
    fn map(&mut self, len: usize) -> io::Result<MmapMut> {
        #[cfg(test)]
        if self.fault == Some(ResizeFault::Map) {
            self.fault = None;
            return Err(io::Error::other("injected index mmap failure"));
        }
        map_file(&self.file, len)
    }

    fn set_len(&mut self, len: usize) -> io::Result<()> {
        #[cfg(test)]
        if self.fault == Some(ResizeFault::SetLen) {
            self.fault = None;
            return Err(io::Error::other("injected index set_len failure"));
        }
        self.file.set_len(len as u64)
    }

    /// Grows the file to `len` (sparse), reserving the first chunk past the entries first.
    fn grow(&mut self, len: usize) -> io::Result<()> {
        #[cfg(test)]
        if self.fault == Some(ResizeFault::SetLen) {
            self.fault = None;
            return Err(io::Error::other("injected index allocation failure"));
        }
        let whole = self.entries * self.entry_size;
        let first = len.min(whole + RESERVE_CHUNK_BYTES);
        if first > self.reserved {
            allocate(&self.file, self.reserved, first)?;
            self.reserved = first;
        }
        self.file.set_len(len as u64)
    }

    /// Makes sure the bytes below `upto` (within the mapping) are backed: reserves the next chunk, or on a
    /// nearly full disk just what is needed.
    fn reserve(&mut self, upto: usize) -> io::Result<()> {
        if upto <= self.reserved {
            return Ok(());
        }
        let chunk_end = (self.reserved + RESERVE_CHUNK_BYTES)
            .max(upto)
            .min(self.mmap.len());
        if allocate(&self.file, self.reserved, chunk_end).is_ok() {
            self.reserved = chunk_end;
            return Ok(());
        }
        allocate(&self.file, self.reserved, upto)?;
        self.reserved = upto;
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mmap.len() / self.entry_size
    }

    fn is_full(&self) -> bool {
        self.entries >= self.capacity()
    }

    /// One slot short of full: the time index keeps its last slot for the entry written at roll/close.
    fn is_full_but_one(&self) -> bool {
        self.entries + 1 >= self.capacity()
    }

    /// Entry `i < entries`; the mapping always covers every valid entry.
    fn entry(&self, i: usize) -> &[u8] {
        debug_assert!(i < self.entries);
        &self.mmap[i * self.entry_size..(i + 1) * self.entry_size]
    }

    /// Stores the next entry, keeping `spare` more slots reserved behind it (when the file has them). False
    /// when full, or when the disk has no room for the entry (and its spares): it is skipped.
    fn push(&mut self, bytes: &[u8], spare: usize) -> bool {
        debug_assert_eq!(bytes.len(), self.entry_size);
        if self.is_full() {
            return false;
        }
        let at = self.entries * self.entry_size;
        let need = (at + self.entry_size * (1 + spare)).min(self.mmap.len());
        if let Err(e) = self.reserve(need) {
            tracing::debug!(path = %self.path.display(), error = %e, "index entry skipped: no disk space");
            return false;
        }
        self.mmap[at..at + self.entry_size].copy_from_slice(bytes);
        self.entries += 1;
        true
    }

    /// Forgets every entry from `n` on. The bytes stay until the next append or trim; a crash before the
    /// trim leaves an untrimmed file, which the load-time sanity check rejects and rebuilds anyway.
    fn truncate_entries(&mut self, n: usize) {
        if n >= self.entries {
            return;
        }
        self.entries = n;
        self.length_ok = true;
    }

    /// Sets the file length to `max_bytes` rounded down to whole entries (never below the valid entries) and
    /// remaps it. On error the old mapping stays in place and valid (the file is never shorter than it), so
    /// the index keeps serving lookups and the caller decides what the failure means.
    fn resize(&mut self, max_bytes: u32) -> io::Result<()> {
        let len = preallocated_len(max_bytes, self.entry_size, self.entries);
        let old_len = self.mmap.len();
        if len <= old_len {
            // Shrinking: map the new (shorter) prefix while the file is still long, then cut the file. The
            // old mapping is dropped at once after the cut and never touched past the new end.
            let mmap = self.map(len)?;
            self.set_len(len)?;
            self.mmap = mmap;
            self.reserved = self.reserved.min(len);
        } else {
            // Growing: the old mapping stays valid whatever happens to the longer file. The first chunk
            // past the entries is reserved for real (a full disk is an ENOSPC here), the rest on demand.
            self.grow(len)?;
            self.mmap = self.map(len)?;
        }
        Ok(())
    }

    fn trim(&mut self) -> io::Result<()> {
        let len = self.entries * self.entry_size;
        if self.mmap.len() == len {
            return Ok(());
        }
        self.resize(u32::try_from(len).map_err(|_| io::Error::other("index too large"))?)
    }

    fn flush(&self) -> io::Result<()> {
        self.mmap.flush()?;
        self.file.sync_all()
    }
}

/// Bytes of index file reserved on disk at a time (see the module docs): 8192 offset index entries.
const RESERVE_CHUNK_BYTES: usize = 64 * 1024;

/// Reserves bytes `from..to` of `file` on disk (growing the file to `to` when shorter), so that stores
/// through the mapping there never fault; a full disk is an ENOSPC error here instead.
fn allocate(file: &File, from: usize, to: usize) -> io::Result<()> {
    #[cfg(test)]
    {
        let (errno, times) = FAIL_NEXT_ALLOCATION.with(|f| f.get());
        if times > 0 {
            FAIL_NEXT_ALLOCATION.with(|f| f.set((errno, times - 1)));
            return Err(io::Error::from_raw_os_error(errno));
        }
    }
    if to <= from {
        return Ok(()); // posix_fallocate rejects an empty range
    }
    let offset = libc::off_t::try_from(from).map_err(|_| io::Error::other("index too large"))?;
    let len = libc::off_t::try_from(to - from).map_err(|_| io::Error::other("index too large"))?;
    // SAFETY: plain syscall on a file descriptor this `File` owns for the duration of the call.
    let rc = unsafe { libc::posix_fallocate(std::os::fd::AsRawFd::as_raw_fd(file), offset, len) };
    if rc == 0 {
        Ok(())
    } else {
        // posix_fallocate returns the error number instead of setting errno.
        Err(io::Error::from_raw_os_error(rc))
    }
}

#[cfg(test)]
thread_local! {
    /// Test seam: (errno, how many more) index allocations on this thread fail (ENOSPC at a roll).
    static FAIL_NEXT_ALLOCATION: std::cell::Cell<(i32, u32)> = const { std::cell::Cell::new((0, 0)) };
}

/// Test seam: the next index preallocation made by this thread fails with `errno`, as a full disk would.
#[cfg(test)]
pub(crate) fn fail_next_index_allocation(errno: i32) {
    fail_next_index_allocations(errno, 1);
}

/// Test seam: the next `times` index preallocations made by this thread fail with `errno`.
#[cfg(test)]
pub(crate) fn fail_next_index_allocations(errno: i32, times: u32) {
    FAIL_NEXT_ALLOCATION.with(|f| f.set((errno, times)));
}

/// `max_bytes` rounded down to whole entries, never below the `entries` already valid.
fn preallocated_len(max_bytes: u32, entry_size: usize, entries: usize) -> usize {
    ((max_bytes as usize / entry_size) * entry_size).max(entries * entry_size)
}

fn map_file(file: &File, len: usize) -> io::Result<MmapMut> {
    // SAFETY: the mapping is only valid while the file is at least `len` bytes long. The file belongs to this
    // broker's data directory and its IndexFile is its only writer, which never shortens the file below a
    // mapping it still uses (see `resize`). An outside process truncating the file would fault (SIGBUS)
    // exactly as it would for Kafka; that is outside the broker's contract with the operator.
    unsafe { MmapOptions::new().len(len).map_mut(file) }
}

fn relative(base_offset: i64, offset: i64) -> Option<u32> {
    offset
        .checked_sub(base_offset)
        .and_then(|d| u32::try_from(d).ok())
}

/// Sparse map from offset to file position within one segment.
#[derive(Debug)]
pub struct OffsetIndex {
    inner: IndexFile,
    base_offset: i64,
}

impl OffsetIndex {
    pub const ENTRY_SIZE: usize = 8;

    /// Opens or creates the index; `max_index_bytes` Some preallocates it for appends (active segment).
    pub fn open(path: &Path, base_offset: i64, max_index_bytes: Option<u32>) -> io::Result<Self> {
        Ok(OffsetIndex {
            inner: IndexFile::open(path, Self::ENTRY_SIZE, max_index_bytes)?,
            base_offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }
    pub fn entries(&self) -> usize {
        self.inner.entries
    }
    pub fn is_full(&self) -> bool {
        self.inner.is_full()
    }

    /// Entry `i` as (absolute offset, position).
    pub fn entry(&self, i: usize) -> (i64, u32) {
        let e = self.inner.entry(i);
        let rel = u32::from_be_bytes(e[0..4].try_into().expect("4-byte slice"));
        let pos = u32::from_be_bytes(e[4..8].try_into().expect("4-byte slice"));
        (self.base_offset + i64::from(rel), pos)
    }

    pub fn last_entry(&self) -> Option<(i64, u32)> {
        self.entries().checked_sub(1).map(|i| self.entry(i))
    }

    /// The entry with the largest offset <= `target`: the batch at its position is at or before the batch
    /// that contains `target`. None means "scan from the start of the segment".
    pub fn lookup(&self, target: i64) -> Option<(i64, u32)> {
        // partition_point: number of entries whose offset <= target.
        let (mut lo, mut hi) = (0usize, self.entries());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid).0 <= target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1).map(|i| self.entry(i))
    }

    /// Adds an entry; returns false (and adds nothing) when the index is full or the entry would not keep
    /// offsets and positions strictly increasing. A skipped entry only makes lookups scan a little further.
    pub fn append(&mut self, offset: i64, position: u32) -> bool {
        let Some(rel) = relative(self.base_offset, offset) else {
            return false;
        };
        if let Some((last_off, last_pos)) = self.last_entry()
            && (offset <= last_off || position <= last_pos)
        {
            return false;
        }
        let mut e = [0u8; Self::ENTRY_SIZE];
        e[0..4].copy_from_slice(&rel.to_be_bytes());
        e[4..8].copy_from_slice(&position.to_be_bytes());
        self.inner.push(&e, 0)
    }

    /// Checks the entries against the log: whole entries, strictly increasing offsets and positions (never
    /// the segment's first batch, which is never indexed), positions inside the log and offsets below
    /// `next_offset` when known. A failure means the index must be rebuilt.
    pub fn sanity_check(&self, log_size: u64, next_offset: Option<i64>) -> Result<(), String> {
        if !self.inner.length_ok {
            return Err(format!(
                "{}: length is not a multiple of {}",
                self.path().display(),
                Self::ENTRY_SIZE
            ));
        }
        let mut prev = (self.base_offset, 0u32);
        for i in 0..self.entries() {
            let (off, pos) = self.entry(i);
            if off <= prev.0 || pos <= prev.1 || u64::from(pos) >= log_size {
                return Err(format!(
                    "{}: entry {i} ({off}, {pos}) is out of order or past the log",
                    self.path().display()
                ));
            }
            if next_offset.is_some_and(|n| off >= n) {
                return Err(format!(
                    "{}: entry {i} offset {off} is past the segment",
                    self.path().display()
                ));
            }
            prev = (off, pos);
        }
        Ok(())
    }

    /// Drops all entries (before a rebuild).
    pub fn reset(&mut self) {
        self.inner.truncate_entries(0);
    }

    /// Drops entries whose offset is >= `offset` (after the log was truncated there).
    pub fn truncate_to(&mut self, offset: i64) {
        let keep = (0..self.entries())
            .take_while(|&i| self.entry(i).0 < offset)
            .count();
        self.inner.truncate_entries(keep);
    }

    /// Shrinks the file to its entries (segment no longer active, or log closing).
    pub fn trim_to_valid_size(&mut self) -> io::Result<()> {
        self.inner.trim()
    }

    /// Preallocates the file to `max_index_bytes` so the segment can take appends again.
    pub fn resize(&mut self, max_index_bytes: u32) -> io::Result<()> {
        self.inner.resize(max_index_bytes)
    }

    /// Test seam: the next resize or trim fails at `fault`.
    #[cfg(test)]
    pub(crate) fn inject_resize_failure(&mut self, fault: ResizeFault) {
        self.inner.fault = Some(fault);
    }

    pub fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Sparse map from timestamp to offset within one segment; timestamps strictly increase.
#[derive(Debug)]
pub struct TimeIndex {
    inner: IndexFile,
    base_offset: i64,
}

impl TimeIndex {
    pub const ENTRY_SIZE: usize = 12;

    /// Opens or creates the index; `max_index_bytes` Some preallocates it for appends (active segment).
    pub fn open(path: &Path, base_offset: i64, max_index_bytes: Option<u32>) -> io::Result<Self> {
        Ok(TimeIndex {
            inner: IndexFile::open(path, Self::ENTRY_SIZE, max_index_bytes)?,
            base_offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }
    pub fn entries(&self) -> usize {
        self.inner.entries
    }
    /// Full for regular appends: the last slot is reserved for the final entry written when the segment
    /// becomes inactive, so the segment's max timestamp is always on disk.
    pub fn is_full(&self) -> bool {
        self.inner.is_full_but_one()
    }

    /// Entry `i` as (timestamp, absolute offset).
    pub fn entry(&self, i: usize) -> (i64, i64) {
        let e = self.inner.entry(i);
        let ts = i64::from_be_bytes(e[0..8].try_into().expect("8-byte slice"));
        let rel = u32::from_be_bytes(e[8..12].try_into().expect("4-byte slice"));
        (ts, self.base_offset + i64::from(rel))
    }

    pub fn last_entry(&self) -> Option<(i64, i64)> {
        self.entries().checked_sub(1).map(|i| self.entry(i))
    }

    /// Adds (timestamp, offset) when the timestamp is larger than the last entry's (and than NO_TIMESTAMP);
    /// returns whether it was added. Full index or a decreasing offset: not added. `final_entry` may use the
    /// reserved last slot (roll / close).
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64, final_entry: bool) -> bool {
        if !final_entry && self.is_full() {
            return false;
        }
        let Some(rel) = relative(self.base_offset, offset) else {
            return false;
        };
        let (last_ts, last_off) = self
            .last_entry()
            .unwrap_or((NO_TIMESTAMP, self.base_offset));
        if timestamp <= last_ts || offset < last_off {
            return false;
        }
        let mut e = [0u8; Self::ENTRY_SIZE];
        e[0..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..12].copy_from_slice(&rel.to_be_bytes());
        // A regular entry keeps the next slot reserved on disk, so the final one always has room.
        self.inner.push(&e, usize::from(!final_entry))
    }

    /// The entry with the largest timestamp strictly below `ts`. Every batch before its offset has a max
    /// timestamp below `ts` too, so a search for the first batch reaching `ts` may start there.
    pub fn lookup_before(&self, ts: i64) -> Option<(i64, i64)> {
        let (mut lo, mut hi) = (0usize, self.entries());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid).0 < ts {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1).map(|i| self.entry(i))
    }

    /// Whole entries, strictly increasing timestamps above NO_TIMESTAMP, non-decreasing offsets below
    /// `next_offset` when known.
    pub fn sanity_check(&self, next_offset: Option<i64>) -> Result<(), String> {
        if !self.inner.length_ok {
            return Err(format!(
                "{}: length is not a multiple of {}",
                self.path().display(),
                Self::ENTRY_SIZE
            ));
        }
        let mut prev = (NO_TIMESTAMP, self.base_offset);
        for i in 0..self.entries() {
            let (ts, off) = self.entry(i);
            if ts <= prev.0 || off < prev.1 || next_offset.is_some_and(|n| off >= n) {
                return Err(format!(
                    "{}: entry {i} ({ts}, {off}) is out of order or past the segment",
                    self.path().display()
                ));
            }
            prev = (ts, off);
        }
        Ok(())
    }

    pub fn reset(&mut self) {
        self.inner.truncate_entries(0);
    }

    pub fn truncate_to(&mut self, offset: i64) {
        let keep = (0..self.entries())
            .take_while(|&i| self.entry(i).1 < offset)
            .count();
        self.inner.truncate_entries(keep);
    }

    pub fn trim_to_valid_size(&mut self) -> io::Result<()> {
        self.inner.trim()
    }

    pub fn resize(&mut self, max_index_bytes: u32) -> io::Result<()> {
        self.inner.resize(max_index_bytes)
    }

    pub fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }

    /// Test seam: the next resize or trim fails at `fault`.
    #[cfg(test)]
    pub(crate) fn inject_resize_failure(&mut self, fault: ResizeFault) {
        self.inner.fault = Some(fault);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_finds_largest_entry_at_or_below() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::open(&dir.path().join("a.index"), 100, Some(1024)).unwrap();
        assert_eq!(idx.lookup(150), None);
        assert!(idx.append(110, 50));
        assert!(idx.append(120, 90));
        assert!(!idx.append(120, 95), "offsets must strictly increase");
        assert!(!idx.append(125, 90), "positions must strictly increase");
        assert!(idx.append(130, 140));
        assert_eq!(idx.lookup(105), None);
        assert_eq!(idx.lookup(110), Some((110, 50)));
        assert_eq!(idx.lookup(129), Some((120, 90)));
        assert_eq!(idx.lookup(1_000), Some((130, 140)));
        assert!(idx.sanity_check(141, Some(131)).is_ok());
        assert!(
            idx.sanity_check(140, None).is_err(),
            "position past the log"
        );
        assert!(
            idx.sanity_check(1000, Some(130)).is_err(),
            "offset past the segment"
        );
    }

    #[test]
    fn offset_index_survives_trim_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.index");
        let mut idx = OffsetIndex::open(&path, 0, Some(4096)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
        for i in 1..=10 {
            assert!(idx.append(i * 10, (i * 100) as u32));
        }
        idx.trim_to_valid_size().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 80);
        assert!(idx.is_full(), "a trimmed index takes no appends");
        drop(idx);
        let idx = OffsetIndex::open(&path, 0, None).unwrap();
        assert_eq!(idx.entries(), 10);
        assert_eq!(idx.lookup(55), Some((50, 500)));
        assert!(idx.sanity_check(1001, None).is_ok());
    }

    #[test]
    fn preallocated_index_left_by_a_crash_fails_the_sanity_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.index");
        let mut idx = OffsetIndex::open(&path, 0, Some(800)).unwrap();
        idx.append(5, 100);
        drop(idx); // no trim: the file keeps its zero-filled tail, like after kill -9
        let idx = OffsetIndex::open(&path, 0, None).unwrap();
        assert_eq!(idx.entries(), 100);
        assert!(idx.sanity_check(1000, None).is_err());
        std::fs::write(&path, [0u8; 12]).unwrap();
        let idx = OffsetIndex::open(&path, 0, None).unwrap();
        assert!(
            idx.sanity_check(1000, None).is_err(),
            "length not a multiple of 8"
        );
    }

    #[test]
    fn full_index_refuses_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::open(&dir.path().join("d.index"), 0, Some(20)).unwrap();
        assert!(idx.append(1, 1));
        assert!(idx.append(2, 2));
        assert!(idx.is_full());
        assert!(!idx.append(3, 3));
        assert_eq!(idx.entries(), 2);
    }

    #[test]
    fn time_index_keeps_only_increasing_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.timeindex");
        let mut idx = TimeIndex::open(&path, 1000, Some(1200)).unwrap();
        assert!(
            !idx.maybe_append(-1, 1000, false),
            "NO_TIMESTAMP is never indexed"
        );
        assert!(idx.maybe_append(50, 1003, false));
        assert!(!idx.maybe_append(50, 1004, false));
        assert!(idx.maybe_append(70, 1009, false));
        assert_eq!(idx.lookup_before(50), None);
        assert_eq!(idx.lookup_before(51), Some((50, 1003)));
        assert_eq!(idx.lookup_before(i64::MAX), Some((70, 1009)));
        idx.truncate_to(1009);
        assert_eq!(idx.entries(), 1);
        idx.trim_to_valid_size().unwrap();
        drop(idx);
        let idx = TimeIndex::open(&path, 1000, None).unwrap();
        assert_eq!(idx.last_entry(), Some((50, 1003)));
        assert!(idx.sanity_check(Some(1004)).is_ok());
        assert!(idx.sanity_check(Some(1003)).is_err());
    }

    #[test]
    fn failed_trim_or_resize_keeps_the_index_usable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.index");
        let mut idx = OffsetIndex::open(&path, 0, Some(4096)).unwrap();
        for i in 1..=10 {
            assert!(idx.append(i * 10, (i * 100) as u32));
        }
        for fault in [ResizeFault::SetLen, ResizeFault::Map] {
            idx.inject_resize_failure(fault);
            assert!(idx.trim_to_valid_size().is_err(), "{fault:?}");
            assert_eq!(idx.lookup(55), Some((50, 500)), "lookups survive {fault:?}");
            assert_eq!(idx.last_entry(), Some((100, 1000)));
        }
        // Still the preallocated active index: appends go on.
        assert!(idx.append(110, 1100));
        idx.trim_to_valid_size().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 88);
        // Growing back (the segment becomes active again) fails at either step: still readable, and full.
        for fault in [ResizeFault::SetLen, ResizeFault::Map] {
            idx.inject_resize_failure(fault);
            assert!(idx.resize(4096).is_err(), "{fault:?}");
            assert_eq!(idx.lookup(1_000), Some((110, 1100)));
            assert!(
                !idx.append(120, 1200),
                "the old, trimmed mapping has no room"
            );
        }
        idx.resize(4096).unwrap();
        assert!(idx.append(120, 1200));

        let mut tidx = TimeIndex::open(&dir.path().join("g.timeindex"), 0, Some(1200)).unwrap();
        assert!(tidx.maybe_append(5, 3, false));
        tidx.inject_resize_failure(ResizeFault::Map);
        assert!(tidx.trim_to_valid_size().is_err());
        assert_eq!(tidx.lookup_before(6), Some((5, 3)));
        assert!(tidx.maybe_append(7, 4, true), "the final entry still fits");
        assert!(tidx.sanity_check(Some(5)).is_ok());
    }

    fn allocated_bytes(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().blocks() * 512
    }

    #[test]
    fn active_index_reserves_disk_a_chunk_ahead_of_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.index");
        let max = 1024 * 1024;
        let mut idx = OffsetIndex::open(&path, 0, Some(max)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), u64::from(max));
        let chunk = RESERVE_CHUNK_BYTES as u64;
        let reserved = allocated_bytes(&path);
        assert!(
            (chunk..u64::from(max)).contains(&reserved),
            "the first chunk is reserved, the rest is sparse: {reserved} bytes"
        );
        // Entries past the first chunk reserve the next one before they are stored.
        let per_chunk = RESERVE_CHUNK_BYTES / OffsetIndex::ENTRY_SIZE;
        for i in 1..=per_chunk as i64 + 1 {
            assert!(idx.append(i, i as u32));
        }
        assert!(allocated_bytes(&path) >= 2 * chunk);
        // Made active again after a trim: the entries and a new chunk are reserved.
        idx.trim_to_valid_size().unwrap();
        idx.resize(max).unwrap();
        assert!(allocated_bytes(&path) >= 2 * chunk + 8);
        assert!(idx.append(per_chunk as i64 + 2, per_chunk as u32 + 2));
    }

    #[test]
    fn index_entry_that_finds_the_disk_full_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.index");
        let mut idx = OffsetIndex::open(&path, 0, Some(1024 * 1024)).unwrap();
        let per_chunk = (RESERVE_CHUNK_BYTES / OffsetIndex::ENTRY_SIZE) as i64;
        for i in 1..=per_chunk {
            assert!(idx.append(i, i as u32));
        }
        // The next entry needs the next chunk (and, failing that, its own bytes): both refused.
        fail_next_index_allocations(libc::ENOSPC, 2);
        assert!(!idx.append(per_chunk + 1, per_chunk as u32 + 1));
        assert_eq!(idx.entries(), per_chunk as usize);
        assert_eq!(
            idx.lookup(per_chunk + 5),
            Some((per_chunk, per_chunk as u32))
        );
        // Only the chunk is refused: the entry's own bytes are enough.
        fail_next_index_allocation(libc::ENOSPC);
        assert!(idx.append(per_chunk + 2, per_chunk as u32 + 2));
        assert!(idx.append(per_chunk + 3, per_chunk as u32 + 3));
    }

    #[test]
    fn time_index_final_entry_has_room_when_the_disk_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx =
            TimeIndex::open(&dir.path().join("k.timeindex"), 0, Some(1024 * 1024)).unwrap();
        let mut ts = 0;
        // Fill the first reserved chunk but for the spare slot.
        while (idx.entries() + 2) * TimeIndex::ENTRY_SIZE <= RESERVE_CHUNK_BYTES {
            ts += 1;
            assert!(idx.maybe_append(ts, ts, false));
        }
        fail_next_index_allocations(libc::ENOSPC, 2);
        assert!(!idx.maybe_append(ts + 1, ts + 1, false), "no room on disk");
        fail_next_index_allocations(libc::ENOSPC, 2);
        assert!(idx.maybe_append(ts + 2, ts + 2, true), "the spare slot");
        assert_eq!(idx.last_entry(), Some((ts + 2, ts + 2)));
        fail_next_index_allocations(libc::ENOSPC, 0);
    }

    #[test]
    fn failed_allocation_is_an_enospc_error_not_a_sparse_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.index");
        fail_next_index_allocation(libc::ENOSPC);
        let err = OffsetIndex::open(&path, 0, Some(4096)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert!(OffsetIndex::open(&path, 0, Some(4096)).is_ok(), "one-shot");
    }

    #[test]
    fn time_index_reserves_its_last_slot_for_the_final_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = TimeIndex::open(&dir.path().join("f.timeindex"), 0, Some(36)).unwrap();
        assert!(idx.maybe_append(1, 1, false));
        assert!(idx.maybe_append(2, 2, false));
        assert!(idx.is_full());
        assert!(!idx.maybe_append(3, 3, false));
        assert!(idx.maybe_append(3, 3, true));
        assert_eq!(idx.entries(), 3);
    }

    #[test]
    fn offset_index_truncate_to_drops_entries_at_or_above_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.index");
        let mut idx = OffsetIndex::open(&path, 100, Some(800)).unwrap();
        for (i, off) in [102, 105, 109].into_iter().enumerate() {
            assert!(idx.append(off, 100 * (i as u32 + 1)));
        }
        idx.truncate_to(105);
        assert_eq!(idx.last_entry(), Some((102, 100)));
        assert_eq!(idx.lookup(200), Some((102, 100)));
        assert!(idx.append(104, 150), "appends continue after the cut");
        idx.truncate_to(0);
        assert_eq!(idx.entries(), 0);
    }
}
