//! TransactionIndex: the aborted transactions whose ABORT marker is in one segment (Kafka's
//! `TransactionIndex`, file `<base offset>.txnindex`), so a read_committed fetch can tell the consumer which
//! producers' batches in the range it returns to drop.
//!
//! Entries are 34 bytes, big-endian: `i16 version (0) | i64 producerId | i64 firstOffset | i64 lastOffset
//! (the marker) | i64 lastStableOffset (the LSO when the marker was written)`, in strictly increasing
//! `lastOffset` order. Like Kafka, the file is created by the first append only: most segments never hold
//! an aborted transaction and have no file.
//!
//! The index is derived state: a producer-state replay of the log rebuilds it (reset, then append again).
//! That is also the answer to damage: a torn trailing entry (a crash mid-append) is cut on open, and a file
//! that fails [`TransactionIndex::sanity_check`] is reset by the loader for the replay to rebuild.
//!
//! Concurrency: appends, truncation and reset are serialised by an internal mutex (and, above it, by the
//! partition's append lock). Reads take no lock: they read the committed length, published after each
//! append's write, and then the file; a read racing a truncation stops at the cut.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::log::lock;

/// Bytes of one entry on disk.
pub const ABORTED_TXN_SIZE: usize = 34;
/// The only entry version Kafka has written.
pub const ABORTED_TXN_VERSION: i16 = 0;
/// Entries read per `pread` when scanning: bounds the scan buffer (about 34 KiB) whatever the file's size.
const SCAN_CHUNK_ENTRIES: usize = 1024;

/// One aborted transaction (Kafka's `AbortedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first batch in this partition.
    pub first_offset: i64,
    /// Offset of the ABORT marker.
    pub last_offset: i64,
    /// The partition's last stable offset when the marker was written: no transaction still open then
    /// began below it, which lets a scan stop early (see [`TransactionIndex::collect_aborted_txns`]).
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    /// The on-disk form, version 0.
    pub fn encode(&self) -> [u8; ABORTED_TXN_SIZE] {
        let mut out = [0u8; ABORTED_TXN_SIZE];
        out[0..2].copy_from_slice(&ABORTED_TXN_VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }

    /// Parses one entry; `Err(version)` for a version this broker does not know.
    pub fn decode(bytes: &[u8; ABORTED_TXN_SIZE]) -> Result<AbortedTxn, i16> {
        let i64_at = |at: usize| {
            i64::from_be_bytes(
                bytes[at..at + 8]
                    .try_into()
                    .expect("8 bytes of a 34-byte entry"),
            )
        };
        let version = i16::from_be_bytes([bytes[0], bytes[1]]);
        if version != ABORTED_TXN_VERSION {
            return Err(version);
        }
        Ok(AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        })
    }
}

/// Position of the first entry among the first `len` bytes of `file` whose marker is at or after `offset`
/// (entries are in marker order).
fn first_ending_at_or_after(file: &File, len: u64, offset: i64) -> io::Result<u64> {
    let (mut lo, mut hi) = (0u64, len / ABORTED_TXN_SIZE as u64);
    if offset == i64::MIN {
        return Ok(0);
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let mut last = [0u8; 8];
        file.read_exact_at(&mut last, mid * ABORTED_TXN_SIZE as u64 + 18)?;
        if i64::from_be_bytes(last) < offset {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo * ABORTED_TXN_SIZE as u64)
}

fn bad_version(path: &Path, pos: u64, version: i16) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: aborted transaction at position {pos} has version {version}, expected {ABORTED_TXN_VERSION}",
            path.display()
        ),
    )
}

/// The aborted-transaction index of one segment.
#[derive(Debug)]
pub struct TransactionIndex {
    /// The segment's base offset: every entry's marker is at or above it.
    base_offset: i64,
    path: PathBuf,
    /// Set when the file exists: at open, or by the first append.
    file: OnceLock<File>,
    /// Bytes of whole entries that readers may read.
    len: AtomicU64,
    /// The writers' lock, holding the last entry's `lastOffset` (None when empty).
    last_offset: Mutex<Option<i64>>,
    /// Written since the last fsync.
    dirty: AtomicBool,
}

impl TransactionIndex {
    /// Opens the index at `path` if the file exists (else it is created by the first append). A torn
    /// trailing entry (the file is not a whole number of entries) is cut off and logged.
    pub fn open(path: PathBuf, base_offset: i64) -> io::Result<TransactionIndex> {
        let index = TransactionIndex {
            base_offset,
            path,
            file: OnceLock::new(),
            len: AtomicU64::new(0),
            last_offset: Mutex::new(None),
            dirty: AtomicBool::new(false),
        };
        let file = match OpenOptions::new().read(true).write(true).open(&index.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(index),
            Err(e) => return Err(e),
        };
        let mut len = file.metadata()?.len();
        let torn = len % ABORTED_TXN_SIZE as u64;
        if torn != 0 {
            tracing::warn!(path = %index.path.display(), bytes = torn,
                "cutting a torn entry off the end of a transaction index");
            len -= torn;
            file.set_len(len)?;
            index.dirty.store(true, Ordering::Release);
        }
        if len > 0 {
            let mut last = [0u8; ABORTED_TXN_SIZE];
            file.read_exact_at(&mut last, len - ABORTED_TXN_SIZE as u64)?;
            // A bad version is reported by `sanity_check`; the offset field is where it is in any case.
            let last_offset = i64::from_be_bytes(last[18..26].try_into().expect("8 bytes"));
            *lock(&index.last_offset) = Some(last_offset);
        }
        index.len.store(len, Ordering::Release);
        let _ = index.file.set(file);
        Ok(index)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the file exists (a segment with no aborted transaction usually has none).
    pub fn exists(&self) -> bool {
        self.file.get().is_some()
    }

    /// Number of entries.
    pub fn entries(&self) -> usize {
        (self.len.load(Ordering::Acquire) / ABORTED_TXN_SIZE as u64) as usize
    }

    /// The file, created if it does not exist yet; returns it and whether it was created now (the directory
    /// then needs an fsync). Call with the writers' lock held.
    fn file_or_create(&self) -> io::Result<(&File, bool)> {
        if let Some(file) = self.file.get() {
            return Ok((file, false));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.path)?;
        let _ = self.file.set(file);
        Ok((
            self.file
                .get()
                .expect("invariant: the file was set under the writers' lock"),
            true,
        ))
    }

    /// Creates the (empty) file if there is none yet; true when it was created now.
    pub fn create_file(&self) -> io::Result<bool> {
        let _writer = lock(&self.last_offset);
        Ok(self.file_or_create()?.1)
    }

    /// Appends one entry; returns whether the file was created by it (the directory then needs an fsync).
    /// Its marker must be in this segment and after every entry's marker so far: both are invariants of
    /// the caller (markers are appended in offset order to the segment that holds them), asserted here.
    /// A failed write is cut back, so the index stays whole.
    pub fn append(&self, txn: &AbortedTxn) -> io::Result<bool> {
        assert!(
            txn.last_offset >= self.base_offset,
            "invariant: aborted transaction {txn:?} ends below the base offset {} of {}",
            self.base_offset,
            self.path.display()
        );
        let mut last = lock(&self.last_offset);
        if let Some(prev) = *last {
            assert!(
                txn.last_offset > prev,
                "invariant: aborted transactions are appended in increasing marker offset order \
                 ({txn:?} after last offset {prev} in {})",
                self.path.display()
            );
        }
        let (file, created) = self.file_or_create()?;
        let pos = self.len.load(Ordering::Acquire);
        if let Err(e) = file.write_all_at(&txn.encode(), pos) {
            if let Err(cut) = file.set_len(pos) {
                return Err(io::Error::other(format!(
                    "{}: write failed ({e}) and the partial entry could not be cut off ({cut})",
                    self.path.display()
                )));
            }
            return Err(e);
        }
        self.len
            .store(pos + ABORTED_TXN_SIZE as u64, Ordering::Release);
        *last = Some(txn.last_offset);
        self.dirty.store(true, Ordering::Release);
        Ok(created)
    }

    /// Visits the entries in file order with their positions, from the first whose marker is at or after
    /// `from_offset` (a binary search: markers increase), until `f` breaks. Entries of an unknown version
    /// are an `InvalidData` error (Kafka fails such a read as well).
    fn scan(
        &self,
        from_offset: i64,
        mut f: impl FnMut(u64, AbortedTxn) -> ControlFlow<()>,
    ) -> io::Result<()> {
        let Some(file) = self.file.get() else {
            return Ok(());
        };
        let len = self.len.load(Ordering::Acquire);
        let mut pos = match first_ending_at_or_after(file, len, from_offset) {
            Ok(pos) => pos,
            // Truncated since `len` was read: what was cut is gone for this reader too.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let chunk = (SCAN_CHUNK_ENTRIES * ABORTED_TXN_SIZE).min((len - pos) as usize);
        let mut buf = vec![0u8; chunk];
        while pos < len {
            let n = ((len - pos) as usize).min(buf.len());
            match file.read_exact_at(&mut buf[..n], pos) {
                Ok(()) => {}
                // Truncated since `len` was read: what was cut is gone for this reader too.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
            for (i, raw) in buf[..n].chunks_exact(ABORTED_TXN_SIZE).enumerate() {
                let at = pos + (i * ABORTED_TXN_SIZE) as u64;
                let raw: &[u8; ABORTED_TXN_SIZE] = raw.try_into().expect("exact chunk");
                let txn = AbortedTxn::decode(raw).map_err(|v| bad_version(&self.path, at, v))?;
                if f(at, txn).is_break() {
                    return Ok(());
                }
            }
            pos += n as u64;
        }
        Ok(())
    }

    /// Visits every entry in order, stopping at the first error `f` returns (the cleaner copies them into a
    /// cleaned segment).
    pub fn for_each(&self, mut f: impl FnMut(AbortedTxn) -> io::Result<()>) -> io::Result<()> {
        let mut failed = None;
        self.scan(i64::MIN, |_, txn| match f(txn) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// Every entry, in order.
    pub fn all_aborted_txns(&self) -> io::Result<Vec<AbortedTxn>> {
        let mut out = Vec::with_capacity(self.entries());
        self.for_each(|txn| {
            out.push(txn);
            Ok(())
        })?;
        Ok(out)
    }

    /// Kafka's `collectAbortedTxns`: adds to `out` every entry overlapping `[fetch_offset, upper_bound)`
    /// (its marker at or after `fetch_offset`, its first offset below `upper_bound`). Returns true when the
    /// search is complete: an entry whose last stable offset is at or above `upper_bound` was met, so no
    /// transaction aborted later (here or in a later segment) began below `upper_bound`. Entries whose
    /// marker is below `fetch_offset` are skipped unread: their last stable offset is at most one past
    /// their marker (the LSO never passes an open transaction's marker), so none could end the search
    /// before an overlapping entry is found.
    pub fn collect_aborted_txns(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
        out: &mut Vec<AbortedTxn>,
    ) -> io::Result<bool> {
        let mut complete = false;
        self.scan(fetch_offset, |_, txn| {
            if txn.last_offset >= fetch_offset && txn.first_offset < upper_bound {
                out.push(txn);
            }
            if txn.last_stable_offset >= upper_bound {
                complete = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        Ok(complete)
    }

    /// Kafka's `truncateTo`: drops every entry whose marker is at or above `offset`.
    pub fn truncate_to(&self, offset: i64) -> io::Result<()> {
        let mut last = lock(&self.last_offset);
        let mut cut = None;
        let mut kept_last = None;
        self.scan(i64::MIN, |pos, txn| {
            if txn.last_offset >= offset {
                cut = Some(pos);
                return ControlFlow::Break(());
            }
            kept_last = Some(txn.last_offset);
            ControlFlow::Continue(())
        })?;
        let (Some(pos), Some(file)) = (cut, self.file.get()) else {
            return Ok(());
        };
        // Readers stop at the new length before the file shrinks.
        self.len.store(pos, Ordering::Release);
        file.set_len(pos)?;
        *last = kept_last;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Removes every entry (before a rebuild); the file, if any, stays, empty.
    pub fn reset(&self) -> io::Result<()> {
        let mut last = lock(&self.last_offset);
        self.len.store(0, Ordering::Release);
        if let Some(file) = self.file.get() {
            file.set_len(0)?;
            self.dirty.store(true, Ordering::Release);
        }
        *last = None;
        Ok(())
    }

    /// fsyncs the file if it changed since the last fsync.
    pub fn flush(&self) -> io::Result<()> {
        let Some(file) = self.file.get() else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        file.sync_data().inspect_err(|_| {
            self.dirty.store(true, Ordering::Release);
        })
    }

    /// Checks what an open cannot: every entry has a known version, a marker inside the segment, and
    /// markers strictly increase. Kafka checks the marker against the segment base (a failure there
    /// makes it recover the segment); an unknown version fails Kafka's load outright, which brook treats
    /// as the same damage, since the index can be rebuilt.
    pub fn sanity_check(&self) -> Result<(), String> {
        let mut prev: Option<i64> = None;
        let mut problem = None;
        let scanned = self.scan(i64::MIN, |pos, txn| {
            if txn.last_offset < self.base_offset {
                problem = Some(format!(
                    "aborted transaction {txn:?} at position {pos} ends below the segment base {}",
                    self.base_offset
                ));
            } else if prev.is_some_and(|p| txn.last_offset <= p) {
                problem = Some(format!(
                    "aborted transaction {txn:?} at position {pos} does not follow last offset {}",
                    prev.unwrap_or_default()
                ));
            }
            prev = Some(txn.last_offset);
            if problem.is_some() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        match (scanned, problem) {
            (Err(e), _) => Err(e.to_string()),
            (Ok(()), Some(p)) => Err(format!("{}: {p}", self.path.display())),
            (Ok(()), None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn entries_are_kafkas_34_byte_big_endian_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.txnindex");
        let index = TransactionIndex::open(path.clone(), 100).unwrap();
        assert!(
            !index.exists() && !path.exists(),
            "created by the first append only"
        );
        let entry = txn(0x0102_0304_0506_0708, 100, 0x1_0000_0001, -1);
        assert!(
            index.append(&entry).unwrap(),
            "the first append creates the file"
        );
        let bytes = std::fs::read(&path).unwrap();
        #[rustfmt::skip]
        let expected: [u8; 34] = [
            0x00, 0x00,                                     // version 0
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // producerId
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x64, // firstOffset 100
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, // lastOffset 2^32 + 1
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // lastStableOffset -1
        ];
        assert_eq!(bytes, expected);
        assert_eq!(AbortedTxn::decode(&expected), Ok(entry));
        let mut versioned = expected;
        versioned[1] = 1;
        assert_eq!(AbortedTxn::decode(&versioned), Err(1));

        index.append(&txn(7, 150, 0x1_0000_0002, 120)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 68);
        let reopened = TransactionIndex::open(path, 100).unwrap();
        assert_eq!(
            reopened.all_aborted_txns().unwrap(),
            vec![entry, txn(7, 150, 0x1_0000_0002, 120)]
        );
    }

    #[test]
    #[should_panic(expected = "increasing marker offset order")]
    fn markers_must_increase() {
        let dir = tempfile::tempdir().unwrap();
        let index = TransactionIndex::open(dir.path().join("a.txnindex"), 0).unwrap();
        index.append(&txn(1, 0, 10, 0)).unwrap();
        index.append(&txn(2, 5, 10, 0)).unwrap();
    }

    #[test]
    #[should_panic(expected = "ends below the base offset")]
    fn markers_must_be_in_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let index = TransactionIndex::open(dir.path().join("a.txnindex"), 50).unwrap();
        index.append(&txn(1, 0, 49, 0)).unwrap();
    }

    #[test]
    fn the_increase_is_checked_against_entries_found_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txnindex");
        TransactionIndex::open(path.clone(), 0)
            .unwrap()
            .append(&txn(1, 0, 10, 0))
            .unwrap();
        let reopened = TransactionIndex::open(path, 0).unwrap();
        let late = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            reopened.append(&txn(2, 3, 9, 0))
        }));
        assert!(late.is_err());
    }

    #[test]
    fn collect_filters_by_range_and_stops_at_the_first_stable_entry() {
        let dir = tempfile::tempdir().unwrap();
        let index = TransactionIndex::open(dir.path().join("a.txnindex"), 0).unwrap();
        let a = txn(1, 0, 5, 0); // ends before the fetch
        let b = txn(2, 3, 12, 3); // overlaps the start
        let c = txn(3, 14, 20, 14); // inside
        let d = txn(4, 30, 31, 30); // starts at the bound: out, and its LSO completes the search
        let e = txn(5, 25, 40, 25); // never reached
        for t in [a, b, c, d, e] {
            index.append(&t).unwrap();
        }
        let mut out = Vec::new();
        assert!(index.collect_aborted_txns(10, 30, &mut out).unwrap());
        assert_eq!(out, vec![b, c]);

        out.clear();
        assert!(
            !index.collect_aborted_txns(10, 100, &mut out).unwrap(),
            "no entry is stable at 100: the search goes on in later segments"
        );
        assert_eq!(out, vec![b, c, d, e]);
    }

    #[test]
    fn truncate_drops_markers_at_or_above_the_offset_and_appends_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txnindex");
        let index = TransactionIndex::open(path.clone(), 0).unwrap();
        for (i, last) in [5, 10, 15, 20].into_iter().enumerate() {
            index.append(&txn(i as i64, last - 2, last, 0)).unwrap();
        }
        index.truncate_to(15).unwrap();
        assert_eq!(index.entries(), 2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 68);
        index.truncate_to(100).unwrap();
        assert_eq!(index.entries(), 2, "nothing at or above 100");
        index.append(&txn(9, 11, 12, 0)).unwrap();
        assert_eq!(
            index
                .all_aborted_txns()
                .unwrap()
                .iter()
                .map(|t| t.last_offset)
                .collect::<Vec<_>>(),
            vec![5, 10, 12]
        );
        index.reset().unwrap();
        assert_eq!(index.entries(), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        index.append(&txn(1, 0, 1, 0)).unwrap();
        assert_eq!(index.entries(), 1);
        index.flush().unwrap();
    }

    #[test]
    fn a_torn_trailing_entry_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txnindex");
        let index = TransactionIndex::open(path.clone(), 0).unwrap();
        index.append(&txn(1, 0, 4, 0)).unwrap();
        index.append(&txn(2, 5, 9, 5)).unwrap();
        drop(index);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(34 + 20); // a crash in the middle of the second append
        std::fs::write(&path, &bytes).unwrap();

        let index = TransactionIndex::open(path.clone(), 0).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 34);
        assert_eq!(index.all_aborted_txns().unwrap(), vec![txn(1, 0, 4, 0)]);
        assert!(index.sanity_check().is_ok());
        index.append(&txn(2, 5, 9, 5)).unwrap();
        assert_eq!(index.entries(), 2);
    }

    #[test]
    fn damage_fails_the_sanity_check_and_reads_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txnindex");
        let good = txn(1, 100, 104, 100).encode();
        let mut bad_version = txn(2, 105, 109, 105).encode();
        bad_version[0..2].copy_from_slice(&3i16.to_be_bytes());
        std::fs::write(&path, [good, bad_version].concat()).unwrap();
        let index = TransactionIndex::open(path.clone(), 100).unwrap();
        let why = index.sanity_check().unwrap_err();
        assert!(why.contains("version 3"), "{why}");
        let err = index
            .collect_aborted_txns(0, 200, &mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        std::fs::write(&path, txn(1, 0, 50, 0).encode()).unwrap();
        let below = TransactionIndex::open(path.clone(), 100).unwrap();
        assert!(
            below
                .sanity_check()
                .unwrap_err()
                .contains("below the segment base")
        );

        std::fs::write(&path, [good, good].concat()).unwrap();
        let repeated = TransactionIndex::open(path.clone(), 100).unwrap();
        assert!(
            repeated
                .sanity_check()
                .unwrap_err()
                .contains("does not follow")
        );
        repeated.reset().unwrap();
        assert!(repeated.sanity_check().is_ok());
        repeated.append(&txn(1, 100, 101, 100)).unwrap();
    }

    #[test]
    fn scans_cross_read_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let index = TransactionIndex::open(dir.path().join("a.txnindex"), 0).unwrap();
        let n = SCAN_CHUNK_ENTRIES as i64 * 2 + 7;
        for i in 0..n {
            index.append(&txn(i, 2 * i, 2 * i + 1, 2 * i)).unwrap();
        }
        let all = index.all_aborted_txns().unwrap();
        assert_eq!(all.len() as i64, n);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, t)| t.producer_id == i as i64)
        );
        let mut out = Vec::new();
        let complete = index
            .collect_aborted_txns(2 * 1500, 2 * 1600, &mut out)
            .unwrap();
        assert!(complete);
        assert_eq!(out.len(), 100);
        assert_eq!(out[0].producer_id, 1500);
    }
}
