//! A global allocator that keeps hostile length fields from aborting the process.
//!
//! kafka-protocol 0.18 decodes arrays with `Vec::with_capacity(count_from_wire)`, so a 7-byte Metadata body
//! can ask for 150+ GB before the decoder notices that the body is too short. With the system allocator that
//! request fails (overcommit heuristics refuse it) and Rust aborts the whole process: no `Result`, no
//! `catch_unwind`. [`GuardedAllocator`] serves such huge requests with `MAP_NORESERVE` anonymous mappings:
//! they reserve address space only, nothing is committed until touched, so the decoder gets its (untouched)
//! buffer, runs out of input, returns an error and the mapping is released. Ordinary sizes go to
//! [`std::alloc::System`] unchanged.
//!
//! Install it with `#[global_allocator] static GLOBAL: GuardedAllocator = GuardedAllocator;` (lib.rs does).
//! Whether it is installed can be checked with [`is_installed`].
//!
//! Limits: each huge request costs one mapping and its address space; the decoder only holds as many at
//! once as the schema nests arrays (a handful), so the 128 TiB of user address space on x86-64 is ample. A
//! request the kernel refuses still returns null (and Rust aborts), as with any allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Requests of at least this many bytes are served by a `MAP_NORESERVE` mapping instead of `System`.
///
/// 256 MiB is above every buffer the broker sizes on purpose (`socket.request.max.bytes` defaults to 100 MiB)
/// and far below what a hostile array count asks for.
pub const LARGE_ALLOCATION_THRESHOLD: usize = 256 << 20;

/// Alignment that every mapping satisfies: mappings are page aligned and pages are at least 4 KiB.
const MAP_ALIGN: usize = 4096;

static LARGE_RESERVATIONS_TOTAL: AtomicU64 = AtomicU64::new(0);
static LARGE_RESERVATIONS_LIVE: AtomicUsize = AtomicUsize::new(0);
static LARGE_RESERVED_BYTES_LIVE: AtomicUsize = AtomicUsize::new(0);

/// Global allocator: `System` for ordinary sizes, lazily committed anonymous mappings for huge ones.
#[derive(Debug, Default, Clone, Copy)]
pub struct GuardedAllocator;

/// Number of huge reservations made since start (a counter for metrics and tests).
pub fn large_reservations_total() -> u64 {
    LARGE_RESERVATIONS_TOTAL.load(Ordering::Relaxed)
}

/// Number of huge reservations currently mapped (a gauge).
pub fn large_reservations_live() -> usize {
    LARGE_RESERVATIONS_LIVE.load(Ordering::Relaxed)
}

/// Bytes of address space currently reserved by huge reservations (a gauge; not resident memory).
pub fn large_reserved_bytes_live() -> usize {
    LARGE_RESERVED_BYTES_LIVE.load(Ordering::Relaxed)
}

/// True when [`GuardedAllocator`] is the process's global allocator: makes one huge reservation (never
/// touched) and checks that the counter saw it. Lets startup code and tests fail loudly instead of aborting
/// later on a hostile frame.
pub fn is_installed() -> bool {
    let before = large_reservations_total();
    let probe: Vec<u8> = Vec::with_capacity(LARGE_ALLOCATION_THRESHOLD);
    let after = large_reservations_total();
    drop(probe);
    after > before
}

/// The kernel's overcommit policy (`/proc/sys/vm/overcommit_memory`): 0 heuristic, 1 always, 2 never.
///
/// Under policy 2 `MAP_NORESERVE` is ignored and huge reservations are charged in full, so they fail; the
/// broker should warn at startup in that case. `None` if the file cannot be read (not Linux, no /proc).
pub fn overcommit_policy() -> Option<u8> {
    let text = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").ok()?;
    text.trim().parse().ok()
}

/// Whether a layout is served by a mapping. A pure function of the layout, so `dealloc` and `realloc`,
/// which receive the layout used at allocation, always take the same path as `alloc` did.
#[inline]
fn is_large(size: usize, align: usize) -> bool {
    size >= LARGE_ALLOCATION_THRESHOLD && align <= MAP_ALIGN
}

/// Maps `size` bytes of zeroed, lazily committed memory; null on failure. Never unwinds.
fn map_reserve(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint touches no existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    LARGE_RESERVATIONS_TOTAL.fetch_add(1, Ordering::Relaxed);
    LARGE_RESERVATIONS_LIVE.fetch_add(1, Ordering::Relaxed);
    LARGE_RESERVED_BYTES_LIVE.fetch_add(size, Ordering::Relaxed);
    p.cast()
}

/// Unmaps a mapping made by [`map_reserve`] with the same size.
///
/// # Safety
/// `p` and `size` must come from one successful `map_reserve` call that has not been unmapped yet.
unsafe fn map_release(p: *mut u8, size: usize) {
    // SAFETY: guaranteed by the caller. munmap of a valid mapping cannot fail; if it somehow did, leaking
    // address space is the only safe outcome (an allocator must not panic).
    unsafe { libc::munmap(p.cast(), size) };
    LARGE_RESERVATIONS_LIVE.fetch_sub(1, Ordering::Relaxed);
    LARGE_RESERVED_BYTES_LIVE.fetch_sub(size, Ordering::Relaxed);
}

// SAFETY: every pointer returned is either from `System` (with the caller's layout) or from a fresh mapping
// of at least `layout.size()` bytes, page aligned (so aligned for any `align <= MAP_ALIGN`); `is_large`
// decides the path from the layout alone, so each pointer is released by the allocator that made it.
unsafe impl GlobalAlloc for GuardedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size(), layout.align()) {
            map_reserve(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees (non-zero size layout).
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size(), layout.align()) {
            // Fresh anonymous mappings are zero-filled by the kernel.
            map_reserve(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if is_large(layout.size(), layout.align()) {
            // SAFETY: the same layout was large at allocation, so `p` is a live mapping of this size.
            unsafe { map_release(p, layout.size()) }
        } else {
            // SAFETY: the same layout was small at allocation, so `p` came from System.
            unsafe { System.dealloc(p, layout) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        let old_size = layout.size();
        match (is_large(old_size, align), is_large(new_size, align)) {
            // SAFETY: both small: System owns `p` and handles the move.
            (false, false) => unsafe { System.realloc(p, layout, new_size) },
            (true, true) => {
                // SAFETY: `p` is a live mapping of `old_size` bytes; MREMAP_MAYMOVE keeps its contents and
                // returns a page-aligned mapping (or fails and leaves the old one intact).
                let q = unsafe { libc::mremap(p.cast(), old_size, new_size, libc::MREMAP_MAYMOVE) };
                if q == libc::MAP_FAILED {
                    return ptr::null_mut();
                }
                if new_size >= old_size {
                    LARGE_RESERVED_BYTES_LIVE.fetch_add(new_size - old_size, Ordering::Relaxed);
                } else {
                    LARGE_RESERVED_BYTES_LIVE.fetch_sub(old_size - new_size, Ordering::Relaxed);
                }
                q.cast()
            }
            (old_large, _) => {
                // Crossing the threshold: allocate on the other side, copy, free the old block.
                // SAFETY: `align` is a valid power of two from an existing layout and `new_size` is non-zero
                // and does not overflow when rounded (GlobalAlloc::realloc's contract).
                let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, align) };
                // SAFETY: `new_layout` has non-zero size.
                let q = unsafe { self.alloc(new_layout) };
                if q.is_null() {
                    return q;
                }
                // SAFETY: both blocks are live, distinct, and at least min(old, new) bytes long.
                unsafe { ptr::copy_nonoverlapping(p, q, old_size.min(new_size)) };
                if old_large {
                    // SAFETY: `p` is a live mapping of `old_size` bytes.
                    unsafe { map_release(p, old_size) }
                } else {
                    // SAFETY: `p` came from System with `layout`.
                    unsafe { System.dealloc(p, layout) }
                }
                q
            }
        }
    }
}

/// These tests need [`GuardedAllocator`] installed as the global allocator of the test binary (lib.rs does
/// that under the `alloc-guard` feature); each one checks [`is_installed`] first so a missing installation
/// fails clearly instead of aborting.
#[cfg(all(test, feature = "alloc-guard"))]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::{ApiKey, RequestKind};
    use std::panic::{AssertUnwindSafe, catch_unwind};

    fn assert_installed() {
        assert!(
            is_installed(),
            "GuardedAllocator must be the #[global_allocator] of this test binary"
        );
    }

    /// Resident set size of this process in bytes, from /proc/self/statm.
    fn rss_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        pages * 4096
    }

    /// Decodes `body` as the given request, catching panics; returns whether it was an error or a panic.
    fn decode_fails(api: ApiKey, version: i16, body: &[u8]) -> bool {
        let mut buf = Bytes::copy_from_slice(body);
        let result = catch_unwind(AssertUnwindSafe(|| {
            RequestKind::decode(api, &mut buf, version)
        }));
        !matches!(result, Ok(Ok(_)))
    }

    fn unsigned_varint(out: &mut BytesMut, mut v: u32) {
        while v >= 0x80 {
            out.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        out.put_u8(v as u8);
    }

    #[test]
    fn huge_allocation_reserves_without_committing() {
        assert_installed();
        let rss_before = rss_bytes();
        let before = large_reservations_total();
        // 64 GiB: more than this machine's RAM, which the system allocator's overcommit heuristic refuses.
        let mut v: Vec<u64> = Vec::with_capacity(8 << 30);
        v.push(7);
        v.extend_from_slice(&[1, 2, 3]);
        assert_eq!(v[0], 7);
        assert!(large_reservations_total() > before);
        assert!(large_reserved_bytes_live() >= 64 << 30);
        assert!(
            rss_bytes() < rss_before + (128 << 20),
            "untouched reservation must not be resident"
        );
        drop(v);
    }

    #[test]
    fn realloc_across_threshold_keeps_contents() {
        assert_installed();
        let mut v: Vec<u8> = Vec::with_capacity(1024);
        v.extend((0..1024u32).map(|i| i as u8));
        v.reserve_exact(LARGE_ALLOCATION_THRESHOLD); // small -> large
        assert!(v.capacity() >= LARGE_ALLOCATION_THRESHOLD);
        assert!(v.iter().enumerate().all(|(i, b)| *b == i as u8));
        v.reserve_exact(2 * LARGE_ALLOCATION_THRESHOLD); // large -> large (mremap)
        assert!(v.iter().enumerate().all(|(i, b)| *b == i as u8));
        v.shrink_to_fit(); // large -> small
        assert_eq!(v.capacity(), 1024);
        assert!(v.iter().enumerate().all(|(i, b)| *b == i as u8));
    }

    #[test]
    fn zeroed_huge_allocation_reads_zero() {
        assert_installed();
        let v = vec![0u8; LARGE_ALLOCATION_THRESHOLD];
        assert!(v[..4096].iter().all(|b| *b == 0));
        assert_eq!(v[LARGE_ALLOCATION_THRESHOLD - 1], 0);
    }

    #[test]
    fn overcommit_policy_is_readable_on_linux() {
        let policy = overcommit_policy();
        assert!(
            matches!(policy, Some(0..=2)),
            "unexpected policy {policy:?}"
        );
    }

    /// The field-notes case: a 7-byte non-flexible Metadata body whose topics array claims 2^31-1 entries.
    #[test]
    fn crafted_metadata_array_count_is_an_error_not_an_abort() {
        assert_installed();
        let rss_before = rss_bytes();
        let body = [0x7f, 0xff, 0xff, 0xff, 0x00, 0x01, 0x41];
        for version in 1..=8 {
            let before = large_reservations_total();
            assert!(
                decode_fails(ApiKey::Metadata, version, &body),
                "v{version} decoded"
            );
            assert!(
                large_reservations_total() > before,
                "v{version} made no large reservation"
            );
        }
        assert!(
            rss_bytes() < rss_before + (256 << 20),
            "RSS grew by more than 256 MiB"
        );
    }

    /// Flexible versions: the compact array count is an unsigned varint (0xffffffff encodes 2^32-2 entries).
    #[test]
    fn crafted_metadata_compact_array_count_is_an_error_not_an_abort() {
        assert_installed();
        let rss_before = rss_bytes();
        let mut body = BytesMut::new();
        unsigned_varint(&mut body, u32::MAX);
        body.put_slice(&[0x00, 0x01]);
        for version in 9..=13 {
            let before = large_reservations_total();
            assert!(
                decode_fails(ApiKey::Metadata, version, &body),
                "v{version} decoded"
            );
            assert!(
                large_reservations_total() > before,
                "v{version} made no large reservation"
            );
        }
        assert!(
            rss_bytes() < rss_before + (256 << 20),
            "RSS grew by more than 256 MiB"
        );
    }

    /// Nested arrays: Produce v3 (topics -> partitions), a huge outer count, then one topic name and a huge
    /// inner count, so two reservations are live at once before the input runs out.
    #[test]
    fn crafted_nested_array_counts_are_an_error_not_an_abort() {
        assert_installed();
        let mut body = BytesMut::new();
        body.put_i16(-1); // transactional_id: null
        body.put_i16(1); // acks
        body.put_i32(30_000); // timeout_ms
        body.put_i32(i32::MAX); // topic_data count
        body.put_i16(1); // topic name length
        body.put_u8(b't');
        body.put_i32(i32::MAX); // partition_data count
        body.put_i32(0); // partition index, then the input ends
        let before = large_reservations_total();
        assert!(decode_fails(ApiKey::Produce, 3, &body));
        assert!(
            large_reservations_total() >= before + 2,
            "expected two nested reservations"
        );

        // The flexible form of the same shape (Produce v9+ uses compact arrays and tagged fields).
        let mut body = BytesMut::new();
        unsigned_varint(&mut body, 0); // transactional_id: null compact string
        body.put_i16(1);
        body.put_i32(30_000);
        unsigned_varint(&mut body, u32::MAX); // topic_data
        unsigned_varint(&mut body, 2); // name "t"
        body.put_u8(b't');
        unsigned_varint(&mut body, u32::MAX); // partition_data
        body.put_i32(0);
        let before = large_reservations_total();
        assert!(decode_fails(ApiKey::Produce, 9, &body));
        assert!(
            large_reservations_total() >= before + 2,
            "expected two nested reservations"
        );
    }

    /// xorshift64*: a tiny deterministic PRNG, so a failing case can be replayed from its seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// 200k random bodies over every request type and version: each decode ends in Ok, Err or a caught
    /// panic, never an abort. Bodies are biased towards large counts (0x7f/0xff runs) so the array paths run.
    #[test]
    fn random_request_bodies_never_abort_the_process() {
        assert_installed();
        let apis: Vec<(ApiKey, i16, i16)> = ApiKey::iter()
            .map(|k| {
                let r = k.valid_versions();
                (k, r.min, r.max)
            })
            .collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut body = Vec::with_capacity(64);
        let (mut errors, mut panics) = (0u64, 0u64);
        let rss_before = rss_bytes();
        for _ in 0..200_000 {
            let (api, min, max) = apis[rng.below(apis.len() as u64) as usize];
            let version = min + rng.below((max - min + 1) as u64) as i16;
            body.clear();
            let len = rng.below(48) as usize;
            for _ in 0..len {
                let b = match rng.below(8) {
                    0 | 1 => 0xff,
                    2 => 0x7f,
                    3 => 0x00,
                    4 => 0x01,
                    _ => rng.next() as u8,
                };
                body.push(b);
            }
            let mut buf = Bytes::copy_from_slice(&body);
            match catch_unwind(AssertUnwindSafe(|| {
                RequestKind::decode(api, &mut buf, version)
            })) {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => errors += 1,
                Err(_) => panics += 1,
            }
        }
        assert!(
            errors > 100_000,
            "too few errors ({errors}): the generator is not hostile enough"
        );
        assert!(
            large_reservations_total() > 1000,
            "the huge-count paths were not exercised"
        );
        assert!(
            rss_bytes() < rss_before + (256 << 20),
            "RSS grew by more than 256 MiB"
        );
        eprintln!("random decode: {errors} errors, {panics} panics caught");
    }
}
