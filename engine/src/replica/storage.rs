//! The storage raft reads for a replica.

use super::*;

/// The storage raft reads: the caller's `MemStorage` (which the log keeps in step with the WAL)
/// plus the latest snapshot of the state machine, for followers whose log was truncated.
///
/// `MemStorage::snapshot` would describe a snapshot without data; this one answers with the
/// replica's archived state, or `SnapshotTemporarilyUnavailable` (and a request that the replica
/// makes one on its next ready cycle) when it has none recent enough.
#[derive(Clone)]
pub struct ReplicaStorage {
    pub(super) mem: MemStorage,
    pub(super) snapshot: Arc<Mutex<SnapshotSlot>>,
}

#[derive(Default)]
pub(super) struct SnapshotSlot {
    pub(super) latest: Option<Snapshot>,
    pub(super) requested: bool,
}

impl ReplicaStorage {
    pub fn new(mem: MemStorage) -> ReplicaStorage {
        ReplicaStorage {
            mem,
            snapshot: Arc::default(),
        }
    }
    /// The in-memory log.
    pub fn mem(&self) -> &MemStorage {
        &self.mem
    }
}

impl Storage for ReplicaStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }
    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }
    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }
    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let first_index = self.mem.first_index()?;
        let mut slot = self.snapshot.lock().expect("snapshot slot poisoned");
        if let Some(snapshot) = &slot.latest {
            let index = snapshot.get_metadata().index;
            // Usable when the log continues right after it.
            if index >= request_index && index + 1 >= first_index {
                return Ok(snapshot.clone());
            }
        }
        slot.requested = true;
        Err(raft::Error::Store(
            raft::StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}
