//! A FIFO queue stored in fixed-size chunks: it grows by one chunk at a time and never moves
//! what it holds. A `VecDeque` of half a million receipts doubles by copying all of them into
//! a new allocation whose pages then fault in — tens of milliseconds on the shard's core in one
//! go (glommio's stall detector caught 60 ms stalls of exactly that); here growing costs one
//! chunk, and a chunk emptied at the front is kept for the next one needed at the back.
//!
//! Full chunks are shared (`Arc`), never written again: a snapshot takes the queue with
//! [`ChunkedQueue::image`], which clones the full chunks' handles and copies only the last,
//! partial one (at most `CHUNK_LEN` elements), instead of copying every element on the shard's
//! core (copying the outboxes stalled a shard about 0.45 s per snapshot in a 9-second
//! half-load run: docs/benchmarks.md).

use std::collections::VecDeque;
use std::sync::Arc;

/// Elements per chunk.
pub const CHUNK_LEN: usize = 4096;

#[derive(Clone, Debug)]
pub struct ChunkedQueue<T> {
    /// Every chunk but the last is full (`CHUNK_LEN`); the first starts at `head`. Only the
    /// last chunk is ever written (`Arc::make_mut`: copied first in the rare case that a clone
    /// of the queue shares it).
    chunks: VecDeque<Arc<Vec<T>>>,
    head: usize,
    len: usize,
    /// Emptied (or reserved) chunks kept for reuse, at most `spares_max` (1 unless
    /// [`ChunkedQueue::reserve_touched`] said more): the queue gives memory back as it shrinks.
    spares: Vec<Vec<T>>,
    spares_max: usize,
}

impl<T> Default for ChunkedQueue<T> {
    fn default() -> Self {
        ChunkedQueue {
            chunks: VecDeque::new(),
            head: 0,
            len: 0,
            spares: Vec::new(),
            spares_max: 1,
        }
    }
}

impl<T: Copy + Send + Sync> ChunkedQueue<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push_back(&mut self, item: T) {
        if self.chunks.back().is_none_or(|c| c.len() == CHUNK_LEN) {
            let chunk = self
                .spares
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(CHUNK_LEN));
            debug_assert!(chunk.is_empty() && chunk.capacity() >= CHUNK_LEN);
            self.chunks.push_back(Arc::new(chunk));
        }
        Arc::make_mut(self.chunks.back_mut().expect("a chunk with room")).push(item);
        self.len += 1;
    }

    pub fn front(&self) -> Option<&T> {
        self.chunks.front().and_then(|c| c.get(self.head))
    }

    /// Allocates now the chunks that `elements` more elements need and writes them end to end
    /// (with `placeholder`), so that growing to that length neither allocates nor faults a
    /// page in on the hot path; they are kept for reuse from then on.
    pub fn reserve_touched(&mut self, elements: usize, placeholder: T) {
        let chunks = elements.div_ceil(CHUNK_LEN) + 1;
        self.spares_max = self.spares_max.max(chunks);
        while self.spares.len() < chunks {
            let mut chunk = Vec::with_capacity(CHUNK_LEN);
            chunk.resize(CHUNK_LEN, placeholder);
            chunk.clear();
            self.spares.push(chunk);
        }
    }

    pub fn back(&self) -> Option<&T> {
        self.chunks.back().and_then(|c| c.last())
    }

    /// The `index`-th element counted from the front (O(1)).
    pub fn get(&self, index: usize) -> Option<&T> {
        if index >= self.len {
            return None;
        }
        let at = self.head + index;
        self.chunks[at / CHUNK_LEN].get(at % CHUNK_LEN)
    }

    pub fn pop_front(&mut self) -> Option<T> {
        let chunk = self.chunks.front()?;
        let item = *chunk.get(self.head)?;
        self.head += 1;
        self.len -= 1;
        if self.head == chunk.len() {
            // The front chunk is used up (if it is also the last one, the next push starts a
            // fresh chunk either way).
            let used = self.chunks.pop_front().expect("front exists");
            self.head = 0;
            // Kept for reuse unless an image still holds it (it goes when the image does).
            if let Ok(mut used) = Arc::try_unwrap(used) {
                if self.spares.len() < self.spares_max {
                    used.clear();
                    self.spares.push(used);
                }
            }
        }
        Some(item)
    }

    /// The elements from the `skip`-th on, oldest first (O(1) to find where to start).
    pub fn iter_from(&self, skip: usize) -> impl Iterator<Item = &T> + '_ {
        let skip = skip.min(self.len);
        // Position of element `skip` counted from the start of the first chunk.
        let at = self.head + skip;
        let (first, offset) = (at / CHUNK_LEN, at % CHUNK_LEN);
        self.chunks
            .iter()
            .skip(first)
            .enumerate()
            .flat_map(move |(i, c)| if i == 0 { &c[offset..] } else { &c[..] })
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.iter_from(0)
    }

    /// The queue's elements as they are now, for another thread: the full chunks shared, the
    /// last partial one copied. O(chunks), not O(elements).
    pub fn image(&self) -> QueueImage<T> {
        let mut full: Vec<Arc<Vec<T>>> = self.chunks.iter().cloned().collect();
        let tail = match full.last() {
            Some(last) if last.len() < CHUNK_LEN => full.pop().map(|c| c.as_ref().clone()),
            _ => None,
        }
        .unwrap_or_default();
        QueueImage {
            full,
            head: self.head,
            tail,
            len: self.len,
        }
    }
}

/// What [`ChunkedQueue::image`] took: `Send`, immutable, iterated oldest first.
#[derive(Clone, Debug)]
pub struct QueueImage<T> {
    full: Vec<Arc<Vec<T>>>,
    /// Where the first element is, in the first chunk (full or the tail).
    head: usize,
    tail: Vec<T>,
    len: usize,
}

impl<T: Copy> QueueImage<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.full
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.tail[..]))
            .enumerate()
            .flat_map(move |(i, c)| {
                if i == 0 {
                    &c[self.head.min(c.len())..]
                } else {
                    c
                }
            })
    }
}

impl<T: Copy + Send + Sync> FromIterator<T> for ChunkedQueue<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut queue = ChunkedQueue::new();
        for item in items {
            queue.push_back(item);
        }
        queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_vecdeque_across_chunk_boundaries() {
        let mut queue = ChunkedQueue::new();
        let mut model = VecDeque::new();
        let mut next = 0u64;
        // Grow past several chunks, drain part, grow again, drain all: every step agrees.
        for (pushes, pops) in [
            (10_000, 3),
            (5, 4_100),
            (CHUNK_LEN, CHUNK_LEN),
            (1, 7_000),
            (9_000, 20_000),
        ] {
            for _ in 0..pushes {
                queue.push_back(next);
                model.push_back(next);
                next += 1;
            }
            for _ in 0..pops {
                assert_eq!(queue.pop_front(), model.pop_front());
            }
            assert_eq!(queue.len(), model.len());
            assert_eq!(queue.front(), model.front());
            assert_eq!(queue.back(), model.back());
            for i in [0, 1, CHUNK_LEN - 1, CHUNK_LEN, model.len() / 2, model.len()] {
                assert_eq!(queue.get(i), model.get(i), "get({i})");
            }
            assert!(queue.iter().eq(model.iter()));
            // An image is the same elements, and stays so while the queue moves on.
            let image = queue.image();
            assert_eq!(image.len(), model.len());
            assert!(image.iter().eq(model.iter()));
            let frozen: Vec<u64> = model.iter().copied().collect();
            queue.push_back(u64::MAX);
            queue.pop_front();
            assert!(image.iter().eq(frozen.iter()));
            model.push_back(u64::MAX);
            model.pop_front();
            for skip in [0, 1, CHUNK_LEN - 1, CHUNK_LEN, model.len() / 2, model.len()] {
                assert!(
                    queue.iter_from(skip).eq(model.iter().skip(skip)),
                    "skip {skip}"
                );
            }
        }
        assert!(queue.is_empty() && queue.pop_front().is_none());
        assert!(queue.chunks.is_empty(), "emptied chunks are not held");
        assert!(queue.spares.len() <= 1, "one spare kept by default");
    }

    #[test]
    fn reserved_chunks_are_used_and_kept() {
        let mut queue = ChunkedQueue::new();
        queue.reserve_touched(3 * CHUNK_LEN, 0u32);
        assert_eq!(queue.spares.len(), 4);
        for i in 0..3 * CHUNK_LEN as u32 {
            queue.push_back(i);
        }
        assert_eq!(queue.spares.len(), 1, "three reserved chunks taken");
        while queue.pop_front().is_some() {}
        assert_eq!(queue.spares.len(), 4, "and given back, not freed");
    }
}
