//! Warming the heap at start (`heap_prefault_mib`).
//!
//! Under load the node takes fresh memory all the time: the raft log grows until a snapshot
//! truncates it, and entry buffers, request bodies and replies come and go. The first touch of
//! each page costs a page fault and the kernel clearing it; in a VM whose host reclaims memory
//! the guest has not used lately, several times more (8.4 µs against 1.5 µs a page on the
//! development VM, docs/benchmarks.md). Touching that memory once at start, and freeing it,
//! moves the cost out of the transfer path: the allocator and the kernel hand the same warm
//! pages out again.

use std::time::{Duration, Instant};

/// The host's memory (`MemTotal` of /proc/meminfo), if it can be read.
pub fn host_memory_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// Touched and freed in pieces of this size (each one allocation of the global allocator).
const PIECE_BYTES: usize = 2 << 20;
/// One write per page.
const PAGE_BYTES: usize = 4096;

/// Allocates `bytes` of heap in pieces, writes one byte of every page, frees it all; returns
/// how long it took.
pub fn prefault(bytes: usize) -> Duration {
    let started = Instant::now();
    let pieces = bytes.div_ceil(PIECE_BYTES);
    let mut held: Vec<Vec<u8>> = Vec::with_capacity(pieces);
    for _ in 0..pieces {
        let mut piece = vec![0u8; PIECE_BYTES];
        // `vec![0; n]` may map zeroed pages without touching them: write each page.
        for offset in (0..PIECE_BYTES).step_by(PAGE_BYTES) {
            piece[offset] = 1;
        }
        std::hint::black_box(&piece);
        held.push(piece);
    }
    drop(held);
    // Returns the freed pieces to the OS now (mimalloc purges with `MADV_FREE`: the pages stay
    // mapped and warm unless the kernel runs short of memory). Left to mimalloc's purge delay,
    // the purge of the whole prefaulted heap ran on the first executor to allocate after it,
    // at the start of the load: the slowest batch of a run's first 100 ms was 64-87 ms with
    // 4 GiB prefaulted, against 5-16 ms with this (docs/benchmarks.md).
    // SAFETY: a plain call into the allocator; harmless when it is not the global one.
    unsafe { libmimalloc_sys::mi_collect(true) };
    started.elapsed()
}
