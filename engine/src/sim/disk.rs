//! A simulated disk for one shard replica: what is durable survives a crash, what was written
//! but not yet fsynced is lost (or torn: a prefix of the group commit in flight survives).
//! As the WAL: writes are staged, and one group commit of what is staged is in flight at a
//! time while the next writes stage.
//!
//! Recovery mirrors `aurigraph_storage::shard_log::ShardLog::open`: the latest snapshot, then
//! the log entries after it (a stale suffix of lower terms dropped), then the hard state with
//! its term and commit raised to the snapshot's and the commit clamped to the log.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::storage::MemStorage;
use raft::Storage;

/// One write handed to the disk by a ready cycle (in the order the runtime does it: the
/// snapshot file, then the entries, then the hard state).
#[derive(Clone, Debug, Default)]
pub struct DiskWrite {
    pub snapshot: Option<(SnapshotMetadata, Vec<u8>)>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
}

/// Bytes of a WAL record's header; records start 32-byte aligned (as `aurigraph_storage`'s
/// record format).
const WAL_RECORD_ALIGN: u64 = 32;

#[derive(Clone, Debug, Default)]
struct Durable {
    snapshot: Option<(SnapshotMetadata, Vec<u8>)>,
    /// The WAL as replay sees it: later records replace the suffix from their index. Each
    /// entry with the byte offset of its record in the WAL.
    entries: Vec<(u64, Entry)>,
    hard_state: Option<HardState>,
    /// Where the next WAL record goes.
    wal_end: u64,
    /// A flipped bit in a sealed record: that record's offset (the checksum no longer matches).
    corrupt: Option<u64>,
}

impl Durable {
    fn append(&mut self, entries: &[Entry]) {
        if let Some(first) = entries.first() {
            self.entries.retain(|(_, e)| e.index < first.index);
            for e in entries {
                let offset = self.wal_end;
                let bytes = WAL_RECORD_ALIGN + protobuf::Message::compute_size(e) as u64;
                self.wal_end += bytes.div_ceil(WAL_RECORD_ALIGN) * WAL_RECORD_ALIGN;
                self.entries.push((offset, e.clone()));
            }
        }
    }
    fn apply(&mut self, write: &DiskWrite) {
        if let Some((meta, data)) = &write.snapshot {
            self.install_snapshot(meta.clone(), data.clone());
        }
        self.append(&write.entries);
        if let Some(hs) = &write.hard_state {
            self.hard_state = Some(hs.clone());
        }
    }
    /// As `ShardLog::save_snapshot` + `Wal::compact`: the WAL keeps what follows the index.
    fn install_snapshot(&mut self, meta: SnapshotMetadata, data: Vec<u8>) {
        let index = meta.index;
        self.entries.retain(|(_, e)| e.index > index);
        if self
            .corrupt
            .is_some_and(|at| !self.entries.iter().any(|(o, _)| *o == at))
        {
            // The damaged record was compacted away with the segment that held it.
            self.corrupt = None;
        }
        self.snapshot = Some((meta, data));
    }
}

pub struct SimDisk {
    /// The shard this disk holds (named in recovery errors, as a real WAL's path does).
    shard: u32,
    durable: Durable,
    /// Writes staged for the next group commit, in order.
    staged: Vec<DiskWrite>,
    /// The group commit in flight: its writes, in order.
    committing: Vec<DiskWrite>,
    initial_conf: ConfState,
    /// The in-memory log the replica reads (as `ShardLog::storage`).
    pub mem: MemStorage,
}

/// Recovery refused to start (corruption in the middle of the log).
#[derive(Debug)]
pub struct RecoveryError(pub String);

impl SimDisk {
    pub fn new(shard: u32, initial_conf: ConfState) -> SimDisk {
        SimDisk {
            shard,
            durable: Durable::default(),
            staged: Vec::new(),
            committing: Vec::new(),
            mem: MemStorage::new_with_conf_state(initial_conf.clone()),
            initial_conf,
        }
    }

    /// Makes a write visible in memory at once (as `ShardLog::stage`); durable once a group
    /// commit started after it completes ([`Self::start_commit`], [`Self::sync`]).
    pub fn stage(&mut self, write: DiskWrite) {
        {
            let local_term = write
                .snapshot
                .as_ref()
                .and_then(|(meta, _)| self.mem.term(meta.index).ok());
            let mut core = self.mem.wl();
            if let Some((meta, _)) = &write.snapshot {
                if local_term == Some(meta.term) {
                    core.compact(meta.index).expect("compact");
                } else {
                    let mut snapshot = Snapshot::default();
                    snapshot.set_metadata(meta.clone());
                    core.apply_snapshot(snapshot).expect("apply snapshot");
                }
            }
            core.append(&write.entries).expect("append");
            if let Some(hs) = &write.hard_state {
                core.set_hardstate(hs.clone());
            }
        }
        self.staged.push(write);
    }

    /// Starts a group commit of everything staged (none may be in flight).
    pub fn start_commit(&mut self) {
        assert!(
            self.committing.is_empty(),
            "one group commit in flight at a time"
        );
        self.committing = std::mem::take(&mut self.staged);
    }

    /// The group commit's fdatasync returned.
    pub fn sync(&mut self) {
        for write in std::mem::take(&mut self.committing) {
            self.durable.apply(&write);
        }
    }

    /// A local snapshot (as the runtime's `snapshot_if_due`): durable at once (temp file,
    /// fsync, rename, fsync dir), then the log it covers is dropped.
    pub fn save_local_snapshot(&mut self, index: u64, term: u64, conf: ConfState, data: Vec<u8>) {
        let mut meta = SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        meta.set_conf_state(conf);
        self.durable.install_snapshot(meta, data);
        if self.mem.term(index).ok() == Some(term) {
            self.mem.wl().compact(index).expect("compact");
        }
    }

    /// Power loss: what was not fsynced is lost; with `torn = Some(k)` the first `k` parts
    /// (per write: snapshot, entries one by one, hard state) of the group commit in flight
    /// survive. What was only staged never reached the disk.
    pub fn crash(&mut self, torn: Option<usize>) {
        self.staged.clear();
        let committing = std::mem::take(&mut self.committing);
        if let Some(mut keep) = torn {
            for write in &committing {
                let mut partial = DiskWrite::default();
                if write.snapshot.is_some() && keep > 0 {
                    partial.snapshot = write.snapshot.clone();
                    keep -= 1;
                }
                if write.snapshot.is_none() || partial.snapshot.is_some() {
                    let n = keep.min(write.entries.len());
                    partial.entries = write.entries[..n].to_vec();
                    keep -= n;
                    if n == write.entries.len() && keep > 0 && write.hard_state.is_some() {
                        partial.hard_state = write.hard_state.clone();
                        keep -= 1;
                    }
                }
                self.durable.apply(&partial);
                if keep == 0 {
                    break;
                }
            }
        }
        self.mem = MemStorage::new();
    }

    /// Flips one bit in a sealed (fsynced, not last) WAL record chosen by `pick` among the
    /// `n` candidates; returns that record's byte offset, or `None` when the WAL holds fewer
    /// than two records (the last one could be a torn tail, which recovery truncates).
    pub fn flip_bit(&mut self, pick: impl FnOnce(usize) -> usize) -> Option<u64> {
        let sealed = self.durable.entries.len().checked_sub(1)?;
        if sealed == 0 {
            return None;
        }
        let offset = self.durable.entries[pick(sealed)].0;
        self.durable.corrupt = Some(offset);
        Some(offset)
    }

    /// Number of parts of the group commit in flight (for choosing a torn prefix).
    pub fn unsynced_parts(&self) -> usize {
        self.committing
            .iter()
            .map(|w| {
                w.snapshot.is_some() as usize + w.entries.len() + w.hard_state.is_some() as usize
            })
            .sum()
    }

    /// Nothing was ever made durable (a brand-new data directory, as `open_shard` sees it).
    pub fn is_blank(&self) -> bool {
        self.durable.snapshot.is_none()
            && self.durable.entries.is_empty()
            && self.durable.hard_state.is_none()
            && self.staged.is_empty()
            && self.committing.is_empty()
    }

    /// Rebuilds the in-memory log from what is durable; returns the snapshot's data.
    pub fn recover(&mut self) -> Result<Option<Vec<u8>>, RecoveryError> {
        assert!(self.staged.is_empty() && self.committing.is_empty());
        let (storage, snap_index, snap_term, data) = match &self.durable.snapshot {
            Some((meta, data)) => {
                let storage = MemStorage::new();
                let mut snapshot = Snapshot::default();
                snapshot.set_metadata(meta.clone());
                storage
                    .wl()
                    .apply_snapshot(snapshot)
                    .map_err(|e| RecoveryError(format!("applying snapshot: {e}")))?;
                (storage, meta.index, meta.term, Some(data.clone()))
            }
            None => (
                MemStorage::new_with_conf_state(self.initial_conf.clone()),
                0,
                0,
                None,
            ),
        };
        if let Some(offset) = self.durable.corrupt {
            // As `ShardLog::open`: a record that fails its checksum before the end of the WAL
            // is corruption, not a torn tail: refuse to start, naming the file and the byte.
            return Err(RecoveryError(format!(
                "corruption in shard-{}/wal at byte offset {offset}: checksum mismatch",
                self.shard
            )));
        }
        let mut entries: Vec<Entry> = self
            .durable
            .entries
            .iter()
            .filter(|(_, e)| e.index > snap_index)
            .map(|(_, e)| e.clone())
            .collect();
        if let Some(stale) = entries.iter().position(|e| e.term < snap_term) {
            entries.truncate(stale);
        }
        if let Some(first) = entries.first() {
            if first.index != snap_index + 1 {
                return Err(RecoveryError(format!(
                    "entries start at {} but the snapshot ends at {snap_index}",
                    first.index
                )));
            }
        }
        for pair in entries.windows(2) {
            if pair[1].term < pair[0].term {
                return Err(RecoveryError(format!(
                    "entry {} has a lower term than the one before it",
                    pair[1].index
                )));
            }
        }
        storage
            .wl()
            .append(&entries)
            .map_err(|e| RecoveryError(format!("append: {e}")))?;
        let last_index = storage.last_index().expect("infallible");
        if let Some(mut hs) = self.durable.hard_state.clone() {
            hs.term = hs.term.max(snap_term);
            hs.commit = hs.commit.max(snap_index).min(last_index);
            storage.wl().set_hardstate(hs);
        }
        self.mem = storage;
        Ok(data)
    }
}
