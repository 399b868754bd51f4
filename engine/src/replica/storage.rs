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
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let first_index = self.mem.first_index()?;
        let mut slot = self.snapshot.lock().expect("snapshot slot poisoned");
        if let Some(snapshot) = &slot.latest {
            let index = snapshot.get_metadata().index;
            // Usable when the log continues right after it and the leader can answer its
            // term: the follower's next append is sent with `prev = index`. After
            // `MemStorage::compact(i)` the log starts at `i` and keeps no term for `i - 1`;
            // after `apply_snapshot(s)` (a restart) it starts at `s + 1` and answers `term(s)`
            // from the snapshot. A snapshot whose term the leader cannot answer would be
            // ignored by a follower already at it and sent again, for ever: a newer one is
            // made instead. So is one whose configuration does not hold the follower (made
            // before it joined): raft-rs refuses to restore a snapshot that leaves it out of
            // the group, and the leader would send the same one again, for ever; a newer one,
            // at the leader's applied index, holds it (the leader tracks it only once it applied
            // the change that added it).
            let cs = snapshot.get_metadata().get_conf_state();
            let holds_to = cs
                .get_voters()
                .iter()
                .chain(cs.get_learners())
                .chain(cs.get_voters_outgoing())
                .any(|&id| id == to);
            if index >= request_index
                && index + 1 >= first_index
                && self.mem.term(index).is_ok()
                && holds_to
            {
                return Ok(snapshot.clone());
            }
        }
        slot.requested = true;
        Err(raft::Error::Store(
            raft::StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

/// A founding group's log starts from a snapshot at this index (term [`BOOTSTRAP_TERM`]):
/// the genesis state and the founding configuration. No log of any replica holds an entry at
/// index 1, so a validator that joins later (an empty log, no configuration) can never be sent
/// entries from the start — which it would replay on top of a configuration it does not have
/// — and always starts from a leader's snapshot (TiKV bootstraps its regions the same way).
pub const BOOTSTRAP_INDEX: u64 = 1;
pub const BOOTSTRAP_TERM: u64 = 1;

/// The founding snapshot of a shard's group: `state` (genesis, now at [`BOOTSTRAP_INDEX`]) and
/// `voters`. Returns (index, term, configuration, archived state) for the log to save.
pub fn bootstrap_snapshot(
    state: &mut ShardState,
    voters: &[u64],
) -> (u64, u64, ConfState, Vec<u8>) {
    assert_eq!(state.applied_index(), 0, "bootstrap from genesis only");
    assert!(!voters.is_empty(), "a founding group has voters");
    state.set_applied_index(BOOTSTRAP_INDEX);
    let conf = ConfState::from((voters.to_vec(), vec![]));
    (BOOTSTRAP_INDEX, BOOTSTRAP_TERM, conf, encode_state(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_just_below_the_first_index_is_not_offered_a_newer_one_is_asked_for() {
        let mem = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
        let entries: Vec<Entry> = (1..=40)
            .map(|index| Entry {
                index,
                term: 5,
                ..Default::default()
            })
            .collect();
        mem.wl().append(&entries).unwrap();
        // A local snapshot at 32 compacted the log to start at 32 (keeping 32's term).
        mem.wl().compact(32).unwrap();
        let storage = ReplicaStorage::new(mem);
        let mut old = Snapshot::default();
        old.mut_metadata().index = 31;
        old.mut_metadata().term = 5;
        storage.snapshot.lock().unwrap().latest = Some(old);
        // A follower at 31 needs entry 32 onwards, sent with prev = 31: the snapshot at 31
        // would not move it, and the leader cannot answer term(31).
        assert!(storage.term(31).is_err());
        assert!(storage.snapshot(0, 2).is_err());
        assert!(storage.snapshot.lock().unwrap().requested);
        let mut newer = Snapshot::default();
        newer.mut_metadata().index = 36;
        newer.mut_metadata().term = 5;
        newer
            .mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        storage.snapshot.lock().unwrap().latest = Some(newer);
        assert_eq!(storage.snapshot(0, 2).unwrap().get_metadata().index, 36);
    }

    #[test]
    fn after_a_restart_from_a_snapshot_that_snapshot_is_offered() {
        // Restored from its snapshot at 115: the log starts at 116 and term(115) answers from
        // the snapshot's metadata. A follower behind 115 needs exactly that snapshot; refusing
        // it and archiving a "newer" one at the same applied index would go round for ever.
        let mem = MemStorage::new();
        let mut restored = Snapshot::default();
        restored.mut_metadata().index = 115;
        restored.mut_metadata().term = 4;
        restored
            .mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        mem.wl().apply_snapshot(restored.clone()).unwrap();
        let storage = ReplicaStorage::new(mem);
        assert_eq!(storage.first_index().unwrap(), 116);
        storage.snapshot.lock().unwrap().latest = Some(restored);
        assert_eq!(storage.snapshot(0, 2).unwrap().get_metadata().index, 115);
    }

    #[test]
    fn a_snapshot_made_before_the_follower_joined_is_not_offered_to_it() {
        // The leader made a snapshot at 36 for some follower; validator 4 joined as a learner
        // at 38. raft-rs on 4 refuses a snapshot whose configuration leaves it out (and
        // answers with its commit index, 0), so offering the one at 36 would go round for
        // ever: a newer one is asked for.
        let mem = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
        let entries: Vec<Entry> = (1..=40)
            .map(|index| Entry {
                index,
                term: 5,
                ..Default::default()
            })
            .collect();
        mem.wl().append(&entries).unwrap();
        mem.wl().compact(32).unwrap();
        let storage = ReplicaStorage::new(mem);
        let mut before = Snapshot::default();
        before.mut_metadata().index = 36;
        before.mut_metadata().term = 5;
        before
            .mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        storage.snapshot.lock().unwrap().latest = Some(before);
        assert_eq!(storage.snapshot(0, 2).unwrap().get_metadata().index, 36);
        assert!(storage.snapshot(0, 4).is_err());
        assert!(storage.snapshot.lock().unwrap().requested);
        let mut after = Snapshot::default();
        after.mut_metadata().index = 39;
        after.mut_metadata().term = 5;
        after
            .mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2, 3], vec![4])));
        storage.snapshot.lock().unwrap().latest = Some(after);
        assert_eq!(storage.snapshot(0, 4).unwrap().get_metadata().index, 39);
    }
}
