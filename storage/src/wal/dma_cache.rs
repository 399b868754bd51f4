//! A few DMA buffers kept for reuse between group commits.
//!
//! glommio writes a whole `DmaBuffer` and can only shrink one (`trim_to_size` is irreversible),
//! so a single large buffer cannot serve writes of varying sizes. Group commits of a steady
//! workload come in few distinct sizes (one or two blocks, mostly), so an exact-size free list
//! of a handful of buffers makes the common commit allocation-free after warm-up. Other sizes
//! come from the executor's registered io_memory pool (a buddy allocator, no syscall) or, when
//! too large for it, the heap.

use glommio::io::{DmaBuffer, DmaFile};

/// At most this many buffers are cached...
const BUFFERS_CACHED_MAX: usize = 4;
/// ...each at most this large, so the cache holds at most 4 MiB.
const BUFFER_CACHED_BYTES_MAX: usize = 1024 * 1024;

#[derive(Default)]
pub(crate) struct DmaCache {
    /// Oldest first.
    buffers: Vec<DmaBuffer>,
    pub hits: u64,
    pub misses: u64,
}

impl DmaCache {
    /// A buffer of exactly `bytes` (contents unspecified: the caller overwrites all of it).
    pub(crate) fn take(&mut self, file: &DmaFile, bytes: usize) -> DmaBuffer {
        match self.buffers.iter().position(|buffer| buffer.len() == bytes) {
            Some(position) => {
                self.hits += 1;
                self.buffers.remove(position)
            }
            None => {
                self.misses += 1;
                file.alloc_dma_buffer(bytes)
            }
        }
    }

    /// Keeps `buffer` for a later `take`, evicting the oldest when full.
    pub(crate) fn give_back(&mut self, buffer: DmaBuffer) {
        if buffer.len() > BUFFER_CACHED_BYTES_MAX {
            return;
        }
        if self.buffers.len() == BUFFERS_CACHED_MAX {
            self.buffers.remove(0);
        }
        self.buffers.push(buffer);
        assert!(self.buffers.len() <= BUFFERS_CACHED_MAX);
    }
}
