//! The DMA buffers group commits are written from, kept for reuse.
//!
//! A group is staged in a DMA buffer taken from here and written from it whole (`staging.rs`),
//! then the buffer comes back. Sizes vary from one block to the staging bound (a gateway's full
//! entry is ~1.4 MB), so buffers are kept by **capacity**: a buffer serves any write up to what
//! it holds, its length set to the write's (`DmaBuffer::set_len`, a patch of ours to the vendored
//! glommio). Capacities come in size classes (powers of two up to 1 MiB, whole MiB above), so a
//! steady workload settles on a buffer or two and then commits without allocating: a fresh
//! multi-megabyte buffer per commit meant the kernel clearing fresh pages on the commit path,
//! stalls of milliseconds that glommio's stall detector named. The first buffer is allocated and
//! touched when the WAL opens (`prefault`), so the first commits do not pay for it either.
//! Buffers up to the executor's registered `io_memory` come from that pool (a buddy allocator,
//! no syscall); larger ones from the heap.

use glommio::io::{DmaBuffer, DmaFile};

/// At most this many buffers are kept (a commit uses one at a time: one in use, one spare)...
const BUFFERS_CACHED_MAX: usize = 2;
/// ...each at most this large (larger groups, rare, get a buffer of their own each time).
const BUFFER_CACHED_BYTES_MAX: usize = 64 << 20;
/// Below this, capacities are powers of two; above, whole multiples of it.
const SIZE_CLASS_STEP_BYTES: usize = 1 << 20;
/// The smallest capacity (one DMA block).
const BUFFER_BYTES_MIN: usize = 4096;

#[derive(Default)]
pub(crate) struct DmaCache {
    /// Smallest capacity first.
    buffers: Vec<DmaBuffer>,
    pub hits: u64,
    pub misses: u64,
}

/// The capacity of the size class that holds `bytes`.
fn size_class(bytes: usize) -> usize {
    if bytes <= SIZE_CLASS_STEP_BYTES {
        bytes.next_power_of_two().max(BUFFER_BYTES_MIN)
    } else {
        bytes.div_ceil(SIZE_CLASS_STEP_BYTES) * SIZE_CLASS_STEP_BYTES
    }
}

impl DmaCache {
    /// Allocates a buffer for writes up to `bytes`, touches every page of it, and keeps it.
    pub(crate) fn prefault(&mut self, file: &DmaFile, bytes: usize) {
        let mut buffer = file.alloc_dma_buffer(size_class(bytes));
        buffer.as_bytes_mut().fill(0);
        self.give_back(buffer);
    }

    /// A buffer of exactly `bytes` (contents unspecified: the caller overwrites all of it).
    pub(crate) fn take(&mut self, file: &DmaFile, bytes: usize) -> DmaBuffer {
        let fits = self.buffers.iter().position(|b| b.capacity() >= bytes);
        let mut buffer = match fits {
            Some(position) => {
                self.hits += 1;
                self.buffers.remove(position)
            }
            None => {
                self.misses += 1;
                file.alloc_dma_buffer(size_class(bytes))
            }
        };
        buffer.set_len(bytes);
        buffer
    }

    /// Keeps `buffer` for a later `take`; when full, the smallest buffer goes.
    pub(crate) fn give_back(&mut self, buffer: DmaBuffer) {
        if buffer.capacity() > BUFFER_CACHED_BYTES_MAX {
            return;
        }
        let at = self
            .buffers
            .partition_point(|b| b.capacity() <= buffer.capacity());
        self.buffers.insert(at, buffer);
        if self.buffers.len() > BUFFERS_CACHED_MAX {
            self.buffers.remove(0);
        }
        assert!(self.buffers.len() <= BUFFERS_CACHED_MAX);
        assert!(self
            .buffers
            .windows(2)
            .all(|w| w[0].capacity() <= w[1].capacity()));
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_are_powers_of_two_then_whole_mebibytes() {
        assert_eq!(size_class(1), 4096);
        assert_eq!(size_class(4096), 4096);
        assert_eq!(size_class(4097), 8192);
        assert_eq!(size_class(1 << 20), 1 << 20);
        assert_eq!(size_class((1 << 20) + 4096), 2 << 20);
        assert_eq!(size_class(1_433_600), 2 << 20);
        assert_eq!(size_class(5 << 20), 5 << 20);
    }
}
