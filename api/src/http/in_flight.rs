//! Requests being handled, counted per core: each core writes only its own cache line (no
//! counter shared by every core on the request path); readers — the drain at shutdown,
//! `/metrics` — add them up.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Counters for this many cores at most (the node's limit on executors).
pub const IN_FLIGHT_CORES_MAX: usize = 256;

/// One core's counter, alone on its cache line.
#[repr(align(64))]
#[derive(Default)]
struct Padded(AtomicUsize);

pub struct InFlightCounts {
    per_core: Box<[Padded]>,
}

impl Default for InFlightCounts {
    fn default() -> Self {
        InFlightCounts {
            per_core: (0..IN_FLIGHT_CORES_MAX)
                .map(|_| Padded::default())
                .collect(),
        }
    }
}

impl InFlightCounts {
    /// A request starts on `core`.
    pub fn enter(&self, core: usize) {
        self.per_core[core].0.fetch_add(1, Ordering::Relaxed);
    }

    /// A request on `core` is done (answered, or dropped with its connection).
    pub fn exit(&self, core: usize) {
        // Release: what the request did happens before a drain that reads zero.
        let before = self.per_core[core].0.fetch_sub(1, Ordering::Release);
        assert!(before > 0, "a request exits only once it entered");
    }

    /// Requests being handled on all cores.
    pub fn total(&self) -> usize {
        self.per_core
            .iter()
            .map(|c| c.0.load(Ordering::Acquire))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_core_and_adds_them_up() {
        let counts = InFlightCounts::default();
        assert_eq!(std::mem::align_of::<Padded>(), 64);
        counts.enter(0);
        counts.enter(3);
        counts.enter(3);
        assert_eq!(counts.total(), 3);
        counts.exit(3);
        counts.exit(0);
        assert_eq!(counts.total(), 1);
    }
}
