//! Reusable buffers for fetch reads, so serving log bytes costs one copy (page cache to buffer) and nothing
//! else: no per-fetch allocation, zeroing, page faults or unmapping of a fresh multi-MiB buffer.
//!
//! A fetch reads a segment range into a [`ReadBuffer`], which becomes the response's records [`Bytes`]
//! (via [`Bytes::from_owner`]) and goes back to a process-wide pool when the connection has written it.
//! Reads of at most [`UNPOOLED_MAX_BYTES`] get an exact, fresh buffer: zeroing a few KiB is cheap, and a
//! pooled buffer would make thousands of small long-poll answers pin a large buffer each. Larger reads take
//! a pooled buffer of the next power-of-two size, so a buffer is at most twice the bytes it carries (the
//! connection's reply budget counts the bytes carried).
//!
//! A large read of whole batches need not be read here at all: a [`FileSlice`] names the range of the
//! segment file, and the connection sends it from the page cache to the socket (`sendfile`), so the bytes are
//! never copied through user space.
//!
//! Bounded: the pool keeps at most [`POOL_MAX_BYTES`] of idle buffers and never one above
//! [`POOLED_MAX_BYTES`]; beyond that a read allocates and its buffer is freed after use, as before.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Reads up to this size allocate an exact buffer instead of taking a pooled one.
pub const UNPOOLED_MAX_BYTES: usize = 64 * 1024;
/// The largest buffer the pool keeps (larger reads allocate, and free after use).
pub const POOLED_MAX_BYTES: usize = 16 * 1024 * 1024;
/// The most idle buffer bytes the pool keeps, over all sizes.
pub const POOL_MAX_BYTES: usize = 32 * 1024 * 1024;

/// Size classes are the powers of two from `UNPOOLED_MAX_BYTES * 2` up to `POOLED_MAX_BYTES`.
const FIRST_CLASS_SHIFT: u32 = (UNPOOLED_MAX_BYTES * 2).trailing_zeros();
const CLASSES: usize = (POOLED_MAX_BYTES.trailing_zeros() - FIRST_CLASS_SHIFT + 1) as usize;

/// Idle buffers by size class, and their total size.
struct Pool {
    classes: [Vec<Vec<u8>>; CLASSES],
    bytes: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    classes: [const { Vec::new() }; CLASSES],
    bytes: 0,
});

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    // The pool holds plain buffers; one left mid-update by a panic is still a valid pool.
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The size class that serves a read of `len` bytes, if the pool serves it.
fn class_of(len: usize) -> Option<usize> {
    if len <= UNPOOLED_MAX_BYTES || len > POOLED_MAX_BYTES {
        return None;
    }
    Some((len.next_power_of_two().trailing_zeros() - FIRST_CLASS_SHIFT) as usize)
}

fn class_bytes(class: usize) -> usize {
    1 << (FIRST_CLASS_SHIFT as usize + class)
}

/// A buffer holding bytes read from a segment; returns to the pool when dropped.
#[derive(Debug)]
pub struct ReadBuffer {
    /// Initialised in full (pooled buffers are zeroed once, when first allocated).
    buf: Vec<u8>,
    /// Bytes of `buf` that hold data.
    len: usize,
}

impl ReadBuffer {
    /// Reads exactly `len` bytes of `file` at `pos`.
    pub fn read_exact_at(file: &File, pos: u64, len: usize) -> io::Result<ReadBuffer> {
        let mut buffer = ReadBuffer::take(len);
        file.read_exact_at(&mut buffer.buf[..len], pos)?;
        buffer.len = len;
        Ok(buffer)
    }

    /// An empty buffer with room for `len` bytes: from the pool when one of the right class is idle.
    fn take(len: usize) -> ReadBuffer {
        let Some(class) = class_of(len) else {
            return ReadBuffer {
                buf: vec![0; len],
                len: 0,
            };
        };
        let reused = {
            let mut pool = pool();
            let buf = pool.classes[class].pop();
            if let Some(buf) = &buf {
                pool.bytes -= buf.len();
            }
            buf
        };
        ReadBuffer {
            buf: reused.unwrap_or_else(|| vec![0; class_bytes(class)]),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the first `len` bytes (no-op when `len` is not shorter).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The data as `Bytes` without copying; the buffer returns to the pool once every clone is dropped.
    pub fn into_bytes(self) -> Bytes {
        if self.len == 0 {
            return Bytes::new(); // Gives the buffer back now rather than with an empty response.
        }
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for ReadBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::ops::Deref for ReadBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        let size = self.buf.len();
        // Only buffers the pool allocated have a class size exactly; exact small ones are freed.
        let Some(class) = class_of(size).filter(|&c| class_bytes(c) == size) else {
            return;
        };
        let mut pool = pool();
        if pool.bytes + size <= POOL_MAX_BYTES {
            pool.bytes += size;
            pool.classes[class].push(std::mem::take(&mut self.buf));
        }
    }
}

/// Whole batches left in a segment file, to be sent from there: the file stays open (and its data readable,
/// even once the segment is deleted) while the slice lives. The range was inside the committed size when the
/// slice was taken; a file truncated under it since (a follower's truncation) reads short, which the
/// sender must treat as an error, never pad.
#[derive(Clone)]
pub struct FileSlice {
    file: Arc<File>,
    position: u64,
    len: usize,
    records: u64,
}

impl FileSlice {
    pub fn new(file: Arc<File>, position: u64, len: usize, records: u64) -> FileSlice {
        FileSlice {
            file,
            position,
            len,
            records,
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where the bytes still to send start in the file.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Bytes still to send.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records in the batches of the slice as taken (for the fetch metrics).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Drops the first `n` bytes (already sent).
    pub fn advance(&mut self, n: usize) {
        let n = n.min(self.len);
        self.position += n as u64;
        self.len -= n;
    }

    /// The first `len` bytes of the slice, read into a buffer (a short file is an error).
    pub fn read_prefix(&self, len: usize) -> io::Result<ReadBuffer> {
        ReadBuffer::read_exact_at(&self.file, self.position, len.min(self.len))
    }
}

impl std::fmt::Debug for FileSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSlice")
            .field("position", &self.position)
            .field("len", &self.len)
            .finish()
    }
}

/// Idle bytes held by the pool (for tests and diagnostics).
pub fn pooled_bytes() -> usize {
    pool().bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(data: &[u8]) -> File {
        let mut f = tempfile::tempfile().expect("temp file");
        f.write_all(data).expect("write temp file");
        f
    }

    #[test]
    fn size_classes_cover_pooled_reads_within_twice_their_size() {
        assert_eq!(class_of(UNPOOLED_MAX_BYTES), None);
        assert_eq!(class_of(POOLED_MAX_BYTES + 1), None);
        for len in [
            UNPOOLED_MAX_BYTES + 1,
            200_000,
            1 << 20,
            (1 << 20) + 1,
            POOLED_MAX_BYTES,
        ] {
            let class = class_of(len).expect("pooled size");
            assert!(class < CLASSES);
            let size = class_bytes(class);
            assert!(size >= len && size < 2 * len, "{len} -> {size}");
        }
    }

    #[test]
    fn read_returns_the_file_range_small_and_pooled() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let file = file_with(&data);
        let small = ReadBuffer::read_exact_at(&file, 10, 1000).unwrap();
        assert_eq!(&small[..], &data[10..1010]);
        let mut big = ReadBuffer::read_exact_at(&file, 5, 250_000).unwrap();
        assert_eq!(&big[..], &data[5..250_005]);
        big.truncate(100_000);
        let bytes = big.into_bytes();
        assert_eq!(&bytes[..], &data[5..100_005]);
        assert!(
            ReadBuffer::read_exact_at(&file, 299_000, 2000).is_err(),
            "past the end"
        );
    }

    #[test]
    fn pooled_buffer_is_reused_and_shows_only_new_data() {
        // Sizes in a class no other test uses, so tests running in parallel do not take this buffer.
        let first_len = 12 << 20;
        let file = file_with(&vec![0xaa; first_len]);
        drop(
            ReadBuffer::read_exact_at(&file, 0, first_len)
                .unwrap()
                .into_bytes(),
        );
        let len = 9 << 20;
        let second: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let file = file_with(&second);
        let mut again = ReadBuffer::read_exact_at(&file, 0, len).unwrap();
        assert_eq!(&again[..], &second[..]);
        // A fresh buffer is zeroed; the reused one still holds the first read's bytes past the new data.
        assert!(
            again.buf[len..first_len].iter().all(|&b| b == 0xaa),
            "the idle buffer was taken again"
        );
        again.truncate(10);
        assert_eq!(&again.into_bytes()[..], &second[..10]);
    }
}
