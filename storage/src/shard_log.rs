//! `ShardLog`: one shard's Raft log. raft's `MemStorage` is the in-memory view that `RawNode`
//! reads; the [`Wal`] makes it durable; snapshot files bound the WAL.
//!
//! Directory layout: `<dir>/wal/` (segments) and `<dir>/snap/` (snapshots).
//!
//! Persistence contract (raft-rs asynchronous ready): entries and hard states given to
//! [`ShardLog::stage`] are visible to `RawNode` at once but durable only when [`ShardLog::sync`]
//! (or [`ShardLog::finish_sync`] of the group commit that took them) returns; the caller
//! acknowledges (sends messages, calls `on_persist_ready`) only after that. One group commit is
//! in flight at a time, and the next one stages meanwhile.
//! A failed `sync` poisons the log: the process must restart and recover.
//!
//! Membership: the conf state survives restarts through snapshots (their metadata carries it).
//! Without a snapshot the caller's `initial_conf` is used, and conf changes committed after the
//! latest snapshot are re-applied by the engine when raft replays committed entries.

use std::path::{Path, PathBuf};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::Storage;

use crate::error::StorageError;
use crate::fs_util;
use crate::snapshot;
use crate::wal::{CommitStats, TornTail, Wal, WalConfig};
use std::future::Future;

const WAL_DIR: &str = "wal";
const SNAP_DIR: &str = "snap";

pub struct ShardLog {
    dir: PathBuf,
    snap_dir: PathBuf,
    storage: MemStorage,
    wal: Wal,
    snapshot_index: u64,
    snapshot_term: u64,
    torn_tail: Option<TornTail>,
}

impl ShardLog {
    /// Opens (creating if needed) the shard log in `dir` and recovers it: the latest snapshot's
    /// metadata, then the WAL entries after it and the last hard state. Returns the snapshot's
    /// data, which the caller restores into its state machine. `config.dir` is replaced by
    /// `<dir>/wal`. A brand-new log starts with `initial_conf`.
    pub async fn open(
        dir: &Path,
        initial_conf: ConfState,
        config: WalConfig,
    ) -> Result<(ShardLog, Option<Vec<u8>>), StorageError> {
        // Kept absolute, as the WAL keeps its own (see `fs_util::absolute`).
        let dir = &fs_util::absolute(dir)?;
        fs_util::create_dir_durable(dir)?;
        let snap_dir = dir.join(SNAP_DIR);
        let wal_dir = dir.join(WAL_DIR);
        // Synchronous read: start-up only.
        let snapshot = snapshot::read_latest_snapshot(&snap_dir)?;
        let (wal, recovered) = Wal::open(WalConfig {
            dir: wal_dir.clone(),
            ..config
        })
        .await?;

        let (storage, snapshot_index, snapshot_term, snapshot_data) = match snapshot {
            Some((meta, data)) => {
                let (index, term) = (meta.index, meta.term);
                let storage = MemStorage::new();
                let mut raft_snapshot = Snapshot::default();
                raft_snapshot.set_metadata(meta);
                storage
                    .wl()
                    .apply_snapshot(raft_snapshot)
                    .map_err(|e| StorageError::Invalid(format!("applying snapshot: {e}")))?;
                (storage, index, term, Some(data))
            }
            None => (MemStorage::new_with_conf_state(initial_conf), 0, 0, None),
        };

        let entries =
            entries_after_snapshot(&wal_dir, recovered.entries, snapshot_index, snapshot_term)?;
        storage
            .wl()
            .append(&entries)
            .map_err(|e| StorageError::Invalid(format!("appending recovered entries: {e}")))?;
        let last_index = storage
            .last_index()
            .expect("MemStorage::last_index is infallible");

        if let Some(mut hard_state) = recovered.hard_state {
            // A crash between saving a snapshot and persisting the hard state that goes with it
            // leaves an older hard state: the snapshot's commit and term are at least as new.
            hard_state.term = hard_state.term.max(snapshot_term);
            hard_state.commit = hard_state.commit.max(snapshot_index);
            if hard_state.commit > last_index {
                // Cannot happen with atomic group commits; clamping is safe (the commit index is
                // re-learned from the leader), refusing to start would not be.
                tracing::warn!(
                    commit = hard_state.commit,
                    last_index,
                    "recovered commit index beyond the log; clamping"
                );
                hard_state.commit = last_index;
            }
            storage.wl().set_hardstate(hard_state);
        }

        let log = ShardLog {
            dir: dir.to_path_buf(),
            snap_dir,
            storage,
            wal,
            snapshot_index,
            snapshot_term,
            torn_tail: recovered.torn_tail,
        };
        Ok((log, snapshot_data))
    }

    /// A handle on the in-memory log, for `RawNode::new`.
    pub fn storage(&self) -> MemStorage {
        self.storage.clone()
    }

    /// Appends `entries` (raft's conflict rule: they replace the suffix from their first index)
    /// and records `hard_state`, in memory and in the WAL staging buffer. Nothing is durable
    /// before [`ShardLog::sync`]. All or nothing: on `StagingFull` nothing changed (sync, then
    /// retry; or use [`ShardLog::persist`], which splits).
    pub fn stage(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StorageError> {
        self.check_entries(entries)?;
        self.wal.stage(entries, hard_state)?;
        // Checked above, so MemStorage's panicking preconditions hold.
        let mut core = self.storage.wl();
        core.append(entries)
            .map_err(|e| StorageError::Invalid(format!("append: {e}")))?;
        if let Some(hard_state) = hard_state {
            core.set_hardstate(hard_state.clone());
        }
        Ok(())
    }

    /// Group-commits everything staged; returns after the fdatasync. No group may be in
    /// flight.
    pub async fn sync(&mut self) -> Result<CommitStats, StorageError> {
        self.wal.commit().await
    }

    /// Starts a group commit of everything staged (see [`Wal::start_commit`]); staging goes on
    /// meanwhile. Returns whether one started (`false`: nothing staged).
    pub async fn start_sync(&mut self) -> Result<bool, StorageError> {
        self.wal.start_commit().await
    }

    /// Waits until the group commit in flight is durable (cancel-safe).
    pub async fn finish_sync(&mut self) -> Result<CommitStats, StorageError> {
        self.wal.finish_commit().await
    }

    /// Whether a group commit is in flight.
    pub fn is_syncing(&self) -> bool {
        self.wal.is_committing()
    }

    /// Stages the longest prefix of `entries` that fits the staging buffer, and `hard_state`
    /// too when all of them fit with it. Returns how many entries were staged and whether
    /// everything was (`false`: commit what is staged, then stage the rest). An entry larger
    /// than the whole staging buffer is refused.
    pub fn stage_prefix(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(usize, bool), StorageError> {
        let free_bytes = self.wal.staged_bytes_free();
        let mut fitting = 0;
        let mut fitting_bytes = 0;
        for entry in entries {
            let bytes = Wal::bytes_needed(std::slice::from_ref(entry), None);
            if fitting_bytes + bytes > free_bytes {
                break;
            }
            fitting_bytes += bytes;
            fitting += 1;
        }
        let hard_state_bytes = Wal::bytes_needed(&[], hard_state);
        if fitting == entries.len() && fitting_bytes + hard_state_bytes <= free_bytes {
            self.stage(entries, hard_state)?;
            return Ok((fitting, true));
        }
        if fitting == 0 && self.wal.staged_bytes() == 0 {
            // Staging holds at least a block, more than any hard state: an entry did not fit.
            let entry = &entries[0];
            return Err(StorageError::Invalid(format!(
                "entry {} needs {} bytes, more than staged_bytes_max {}",
                entry.index,
                Wal::bytes_needed(std::slice::from_ref(entry), None),
                self.wal.staged_bytes_max()
            )));
        }
        if fitting > 0 {
            self.stage(&entries[..fitting], None)?;
        }
        Ok((fitting, false))
    }

    /// `stage` + `sync`, splitting into several group commits when the batch does not fit the
    /// staging buffer. The hard state goes with the last part. Returns the summed stats.
    pub async fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<CommitStats, StorageError> {
        let mut total = CommitStats::default();
        let mut rest = entries;
        loop {
            let (staged, done) = self.stage_prefix(rest, hard_state)?;
            rest = &rest[staged..];
            add_stats(&mut total, self.sync().await?);
            if done {
                return Ok(total);
            }
        }
    }

    /// Saves a snapshot of the shard state at `index` (term `term`, membership `conf`) and drops
    /// the log it covers: writes the snapshot file (on glommio's blocking thread pool, off the
    /// reactor), then compacts the in-memory log and deletes WAL segments at or below `index`.
    ///
    /// For a snapshot of the local state (`index` in the log with that term) the in-memory log
    /// keeps entries from `index` on. For one received from the leader that the log does not
    /// contain, the in-memory log is replaced by the snapshot, as raft does.
    pub async fn save_snapshot(
        &mut self,
        index: u64,
        term: u64,
        conf: ConfState,
        data: Vec<u8>,
    ) -> Result<(), StorageError> {
        if index == 0 {
            return Err(StorageError::Invalid("snapshot at index 0".into()));
        }
        if index < self.snapshot_index {
            return Err(StorageError::Invalid(format!(
                "snapshot at {index} is older than the current one at {}",
                self.snapshot_index
            )));
        }
        self.write_snapshot_file(index, term, conf.clone(), data, None)
            .await?;
        self.compact_to_snapshot(index, term, conf).await
    }

    /// Writes a snapshot's file (durably) on glommio's blocking pool, and nothing else: the
    /// returned future owns what it needs, so the caller's turns go on while the file is
    /// written (an fsync behind a busy WAL took up to 0.3 s). The snapshot takes effect with
    /// [`ShardLog::compact_to_snapshot`] once the future is done; a crash in between leaves a
    /// newer snapshot file and a log that still holds its entries, which recovery accepts.
    /// The data goes to the disk at no more than `bytes_per_sec` (`None`: unpaced; see
    /// [`snapshot::write_snapshot_paced`]).
    pub fn write_snapshot_file(
        &self,
        index: u64,
        term: u64,
        conf: ConfState,
        data: Vec<u8>,
        bytes_per_sec: Option<u64>,
    ) -> impl Future<Output = Result<(), StorageError>> + 'static {
        let meta = snapshot::snapshot_metadata(index, term, conf);
        let snap_dir = self.snap_dir.clone();
        let written = crate::background::spawn_background(move || {
            snapshot::write_snapshot_paced(&snap_dir, &meta, &data, bytes_per_sec)
        });
        async move { written.await.map(|_path| ()) }
    }

    /// Makes a snapshot whose file [`ShardLog::write_snapshot_file`] wrote the log's start: the
    /// in-memory log forgets what it covers and the WAL compacts up to it.
    pub async fn compact_to_snapshot(
        &mut self,
        index: u64,
        term: u64,
        conf: ConfState,
    ) -> Result<(), StorageError> {
        if index < self.snapshot_index {
            return Err(StorageError::Invalid(format!(
                "snapshot at {index} is older than the current one at {}",
                self.snapshot_index
            )));
        }
        let meta = snapshot::snapshot_metadata(index, term, conf);
        let local_term = self.storage.term(index).ok();
        {
            let mut core = self.storage.wl();
            if local_term == Some(term) {
                // Keep the entry at `index` itself so that term(index) still answers.
                core.compact(index)
                    .map_err(|e| StorageError::Invalid(format!("compact: {e}")))?;
            } else {
                let mut raft_snapshot = Snapshot::default();
                raft_snapshot.set_metadata(meta);
                core.apply_snapshot(raft_snapshot)
                    .map_err(|e| StorageError::Invalid(format!("applying snapshot: {e}")))?;
            }
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.wal.compact(index).await?;
        Ok(())
    }

    fn check_entries(&self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        for pair in entries.windows(2) {
            if pair[0].index.checked_add(1) != Some(pair[1].index) {
                return Err(StorageError::Invalid(format!(
                    "entries not contiguous: {} follows {}",
                    pair[1].index, pair[0].index
                )));
            }
        }
        let (first_index, last_index) = (self.first_index(), self.last_index());
        if first.index < first_index {
            return Err(StorageError::Invalid(format!(
                "entry {} would overwrite the compacted log (first index {first_index})",
                first.index
            )));
        }
        if first.index > last_index.saturating_add(1) {
            return Err(StorageError::Invalid(format!(
                "entry {} leaves a gap after the last index {last_index}",
                first.index
            )));
        }
        Ok(())
    }

    pub fn first_index(&self) -> u64 {
        self.storage
            .first_index()
            .expect("MemStorage::first_index is infallible")
    }

    pub fn last_index(&self) -> u64 {
        self.storage
            .last_index()
            .expect("MemStorage::last_index is infallible")
    }

    pub fn hard_state(&self) -> HardState {
        self.storage.rl().hard_state().clone()
    }

    /// Index of the latest snapshot saved or recovered (0: none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    pub fn snapshot_term(&self) -> u64 {
        self.snapshot_term
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The WAL, for its statistics.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// What recovery cut off the WAL at open, if anything.
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.torn_tail.as_ref()
    }
}

/// The recovered WAL entries that extend the snapshot, checked to do so.
fn entries_after_snapshot(
    wal_dir: &Path,
    mut entries: Vec<Entry>,
    snapshot_index: u64,
    snapshot_term: u64,
) -> Result<Vec<Entry>, StorageError> {
    let covered = entries
        .iter()
        .take_while(|entry| entry.index <= snapshot_index)
        .count();
    entries.drain(..covered);
    // Entries after a snapshot carry at least its term. Lower terms are a stale suffix that a
    // snapshot from the leader replaced (raft dropped them from memory; the WAL still had them).
    if let Some(stale) = entries.iter().position(|entry| entry.term < snapshot_term) {
        tracing::info!(
            from_index = entries[stale].index,
            "dropping stale WAL entries replaced by the snapshot"
        );
        entries.truncate(stale);
    }
    if let Some(first) = entries.first() {
        if snapshot_index.checked_add(1) != Some(first.index) {
            return Err(StorageError::corrupt(
                wal_dir,
                0,
                format!(
                    "the WAL's entries start at index {} but the snapshot ends at {snapshot_index}: \
                     entries are missing",
                    first.index
                ),
            ));
        }
    }
    for pair in entries.windows(2) {
        if pair[1].term < pair[0].term {
            return Err(StorageError::corrupt(
                wal_dir,
                0,
                format!(
                    "entry {} has term {}, lower than the term {} of the entry before it",
                    pair[1].index, pair[1].term, pair[0].term
                ),
            ));
        }
    }
    Ok(entries)
}

fn add_stats(total: &mut CommitStats, stats: CommitStats) {
    total.bytes_written += stats.bytes_written;
    total.records += stats.records;
    total.group = stats.group;
    total.write_duration += stats.write_duration;
    total.fsync_duration += stats.fsync_duration;
    total.segment_rolled |= stats.segment_rolled;
}
