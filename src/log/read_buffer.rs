//! Fetch reads, so serving log bytes costs at most one user-space copy and nothing else: no per-fetch
//! allocation, zeroing, page faults or unmapping of a fresh buffer.
//!
//! A fetch reads a segment range into a [`ReadBuffer`], which becomes the response's records [`Bytes`]
//! (via [`Bytes::from_owner`]) and goes back to a process-wide pool when the connection has written it.
//! Reads of at most [`UNPOOLED_MAX_BYTES`] get an exact, fresh buffer: zeroing a few KiB is cheap, and a
//! pooled buffer would make thousands of small long-poll answers pin a large buffer each. Reads up to
//! [`POOLED_MAX_BYTES`] take a pooled buffer of the next power-of-two size, so a buffer is at most twice the
//! bytes it carries (the connection's reply budget counts the bytes carried). The pool keeps at most
//! [`POOL_MAX_BYTES`] of idle buffers; past that a buffer is freed after use.
//!
//! Reads of at least [`MAPPED_MIN_BYTES`] copy nothing at all: they map the range of the segment file
//! read-only and the response is written to the socket straight from the page cache (the kernel's copy into
//! the socket is the only one, as with sendfile on loopback). Mapping is safe here because a segment's bytes
//! below its committed size are never rewritten or cut while it is in use: appends only write past the
//! committed size, a failed append cuts back to it, recovery truncates before any reader exists, and
//! deleted or cleaned segments are unlinked (a mapping keeps the old file's pages).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};

/// Reads up to this size allocate an exact buffer instead of taking a pooled one.
pub const UNPOOLED_MAX_BYTES: usize = 64 * 1024;
/// The largest buffer the pool keeps: larger reads are mapped (see [`MAPPED_MIN_BYTES`]).
pub const POOLED_MAX_BYTES: usize = MAPPED_MIN_BYTES;
/// The most idle buffer bytes the pool keeps, over all sizes.
pub const POOL_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Reads this large are served from a mapping of the file rather than copied: above it, mapping and
/// unmapping cost less than the copy.
pub const MAPPED_MIN_BYTES: usize = 256 * 1024;

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

/// Bytes read from a segment: a buffer that returns to the pool when dropped, or a read-only mapping of
/// the file range.
#[derive(Debug)]
pub struct ReadBuffer {
    /// Initialised in full (pooled buffers are zeroed once, when first allocated). Empty when mapped.
    buf: Vec<u8>,
    /// The mapping and where the range starts in it (mappings start on a page boundary).
    mapped: Option<(Mmap, usize)>,
    /// Bytes that hold data.
    len: usize,
}

impl ReadBuffer {
    /// Exactly `len` bytes of `file` at `pos`, which must lie below the segment's committed size (see the
    /// module comment: that is what makes a mapping safe).
    pub fn read_exact_at(file: &File, pos: u64, len: usize) -> io::Result<ReadBuffer> {
        if len >= MAPPED_MIN_BYTES {
            return ReadBuffer::map(file, pos, len);
        }
        let mut buffer = ReadBuffer::take(len);
        file.read_exact_at(&mut buffer.buf[..len], pos)?;
        buffer.len = len;
        Ok(buffer)
    }

    fn map(file: &File, pos: u64, len: usize) -> io::Result<ReadBuffer> {
        let file_len = file.metadata()?.len();
        if pos.checked_add(len as u64).is_none_or(|end| end > file_len) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read of {len} bytes at {pos} past the end of the file ({file_len})"),
            ));
        }
        let skip = (pos % page_size()) as usize;
        // SAFETY: the range is inside the file (checked above) and below the segment's committed size,
        // which is never cut or rewritten while the segment is in use (module comment), so the mapped
        // pages stay backed and unchanged for the mapping's life. Read-only: nothing writes through it.
        let map = unsafe {
            MmapOptions::new()
                .offset(pos - skip as u64)
                .len(skip + len)
                .populate()
                .map(file)?
        };
        Ok(ReadBuffer {
            buf: Vec::new(),
            mapped: Some((map, skip)),
            len,
        })
    }

    /// An empty buffer with room for `len` bytes: from the pool when one of the right class is idle.
    fn take(len: usize) -> ReadBuffer {
        let Some(class) = class_of(len) else {
            return ReadBuffer {
                buf: vec![0; len],
                mapped: None,
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
            mapped: None,
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
        match &self.mapped {
            Some((map, skip)) => &map[*skip..*skip + self.len],
            None => &self.buf[..self.len],
        }
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

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
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
        for len in [UNPOOLED_MAX_BYTES + 1, 100_000, 200_000, POOLED_MAX_BYTES] {
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
    fn large_reads_map_the_file_range_without_copying_or_pooling() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let file = file_with(&data);
        let pooled_before = pooled_bytes();
        // An offset inside a page: the mapping starts at the page and skips to the range.
        let pos = 3 * 4096 + 17;
        let mut mapped = ReadBuffer::read_exact_at(&file, pos as u64, 2_000_000).unwrap();
        assert!(mapped.mapped.is_some() && mapped.buf.is_empty());
        assert_eq!(&mapped[..], &data[pos..pos + 2_000_000]);
        mapped.truncate(MAPPED_MIN_BYTES + 1);
        let bytes = mapped.into_bytes();
        assert_eq!(&bytes[..], &data[pos..pos + MAPPED_MIN_BYTES + 1]);
        drop(bytes);
        assert_eq!(
            pooled_bytes(),
            pooled_before,
            "a mapping never enters the pool"
        );
        let exact = ReadBuffer::read_exact_at(&file, 1_000_000, 2_000_000).unwrap();
        assert_eq!(&exact[..], &data[1_000_000..]);
        let err = ReadBuffer::read_exact_at(&file, 1_000_001, 2_000_000).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::UnexpectedEof,
            "past the end: {err}"
        );
        assert!(ReadBuffer::read_exact_at(&file, u64::MAX - 10, MAPPED_MIN_BYTES).is_err());
    }

    #[test]
    fn pooled_buffer_is_reused_and_shows_only_new_data() {
        // Sizes in a class no other test uses, so tests running in parallel do not take this buffer.
        let first_len = 120_000;
        let file = file_with(&vec![0xaa; first_len]);
        drop(
            ReadBuffer::read_exact_at(&file, 0, first_len)
                .unwrap()
                .into_bytes(),
        );
        let len = 100_000;
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
