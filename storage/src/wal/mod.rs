//! Per-shard segmented write-ahead log: the Raft log, on disk.
//!
//! Records (see [`crate::record`] for the byte layout) are staged by the synchronous `stage_*`
//! calls into the DMA buffer they will be written from (bounded; see `staging.rs`), and written
//! as one group commit: one `write_at` through glommio's O_DIRECT `DmaFile` (io_uring), then one
//! `fdatasync`. Nothing is acknowledged before
//! that fdatasync returned.
//!
//! A group commit is started by [`Wal::start_commit`] (which issues its write) and completes
//! while the caller goes on staging the next group: [`Wal::finish_commit`] drives it (issues
//! the fdatasync once the write is done) and waits for it; [`Wal::commit`] does both. The I/O is
//! driven by the caller's own task rather than a task of its own, so that each completion wakes
//! the shard directly (a separate task is one more scheduling round per step on a busy core). One group is in flight at a time: a group is written only once every group
//! before it is durable, which is what recovery's torn-tail rule relies on.
//!
//! Segment files are named `NNNNNNNNNNNNNNNNNNNN.wal` (20-digit sequence number). A group is
//! written to the active (last) segment unless it would push that segment past
//! `segment_bytes_max`, in which case a new segment is started first: a group never spans two
//! segments, and a segment exceeds the maximum only when one group alone does.
//!
//! With `preallocate` (the default), each new segment is a spare made ahead of time at its full
//! size, filled with zeros, so that group commits overwrite blocks instead of growing the file
//! (why, and how the spare is made without waiting for it: `spare.rs`).
//!
//! Recovery (in [`Wal::open`]) is described in `recovery.rs`.

mod deleting;
mod dma_cache;

mod recovery;
mod segment;
mod spare;
mod staging;

use futures::FutureExt;
use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::{Directory, DmaBuffer, DmaFile, OpenOptions};
use raft::eraftpb::{Entry, HardState};

use crate::error::StorageError;
use crate::fs_util;
use crate::record::BLOCK_BYTES;

pub use recovery::TornTail;
use segment::SegmentInfo;
pub use spare::write_zeros;
use staging::Staging;

/// The DMA buffer allocated and touched when the WAL opens: a group commit of a full entry
/// (8,192 transfers, ~1.4 MB) with its header fits.
const PREFAULTED_DMA_BYTES: usize = 2 << 20;

#[derive(Clone, Debug)]
pub struct WalConfig {
    /// Directory of this shard's segment files (created if missing).
    pub dir: PathBuf,
    /// A new segment is started rather than grow the active one past this. Multiple of 4096.
    pub segment_bytes_max: u64,
    /// Bound on the bytes staged for one group commit. Multiple of 4096.
    pub staged_bytes_max: usize,
    /// Start each new segment from a spare made ahead at its full size and filled with zeros
    /// (`spare.rs`), so that group commits do not grow the file. Costs a spare segment of disk
    /// and writing every segment's bytes twice; off, segments grow with each group.
    pub preallocate: bool,
    /// How fast a spare is zero-filled while the log runs (`None`: as fast as the disk takes
    /// it): unpaced, its 64 MiB went to the disk as one burst after every roll and the group
    /// commits of that moment waited behind it (spare.rs). The spare a log opens with is made
    /// unpaced. Above the log's own write rate, so that a spare is ready by the next roll.
    pub preallocate_bytes_per_sec: Option<u64>,
}

impl WalConfig {
    pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 64 * 1024 * 1024;
    /// 256 MiB/s: a 64 MiB spare in a quarter of a second, while a shard writing 1M gateway
    /// transfers a second fills a segment in about 0.7 s (docs/benchmarks.md).
    pub const PREALLOCATE_BYTES_PER_SEC_DEFAULT: u64 = 256 << 20;
    pub const STAGED_BYTES_MAX_DEFAULT: usize = 32 * 1024 * 1024;
    /// Keeps a group (records, closing Pad and head) within `record::GROUP_BYTES_MAX`.
    pub const STAGED_BYTES_MAX_LIMIT: usize = crate::record::GROUP_BYTES_MAX / 2;

    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig {
            dir: dir.into(),
            segment_bytes_max: Self::SEGMENT_BYTES_MAX_DEFAULT,
            staged_bytes_max: Self::STAGED_BYTES_MAX_DEFAULT,
            preallocate: true,
            preallocate_bytes_per_sec: Some(Self::PREALLOCATE_BYTES_PER_SEC_DEFAULT),
        }
    }

    fn validate(&self) -> Result<(), StorageError> {
        let block = BLOCK_BYTES as u64;
        if self.segment_bytes_max < block || !self.segment_bytes_max.is_multiple_of(block) {
            return Err(StorageError::Invalid(format!(
                "segment_bytes_max {} must be a non-zero multiple of {BLOCK_BYTES}",
                self.segment_bytes_max
            )));
        }
        if self.staged_bytes_max < BLOCK_BYTES
            || !self.staged_bytes_max.is_multiple_of(BLOCK_BYTES)
            || self.staged_bytes_max > Self::STAGED_BYTES_MAX_LIMIT
        {
            return Err(StorageError::Invalid(format!(
                "staged_bytes_max {} must be a non-zero multiple of {BLOCK_BYTES}, at most {}",
                self.staged_bytes_max,
                Self::STAGED_BYTES_MAX_LIMIT
            )));
        }
        Ok(())
    }
}

impl Default for WalConfig {
    fn default() -> WalConfig {
        WalConfig::new(PathBuf::new())
    }
}

/// What one group commit did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Bytes written to the segment, padding included (a multiple of 4096; 0: nothing staged).
    pub bytes_written: u64,
    /// Records written, the group head and the closing Pad record included.
    pub records: u32,
    /// The group-commit sequence number of this group.
    pub group: u32,
    pub write_duration: Duration,
    pub fsync_duration: Duration,
    /// Whether this group started a new segment.
    pub segment_rolled: bool,
}

/// The log as found on disk by [`Wal::open`].
#[derive(Debug, Default)]
pub struct Recovered {
    /// Entries of all complete group commits, after conflict truncation, in index order
    /// (contiguous). After a snapshot was installed past the end of the log, they start after it.
    pub entries: Vec<Entry>,
    /// The last hard state written, if any.
    pub hard_state: Option<HardState>,
    /// Group number the next commit will use.
    pub next_group: u32,
    pub segment_count: usize,
    /// What was cut off the last segment, if a crash interrupted a group commit.
    pub torn_tail: Option<TornTail>,
}

/// Running totals, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    pub groups_committed: u64,
    pub bytes_written: u64,
    pub segments_rolled: u64,
    pub segments_deleted: u64,
    /// Segments started from a zero-filled spare (the others were created empty and grew).
    pub segments_preallocated: u64,
    /// Groups whose DMA buffer was reused / had to be allocated.
    pub dma_buffers_reused: u64,
    pub dma_buffers_allocated: u64,
    /// Groups whose records were moved at seal, their head's size mispredicted (each is the
    /// copy that staging into the DMA buffer otherwise saves; see `staging.rs`).
    pub staged_records_moved: u64,
    /// Groups that outgrew their DMA buffer while staging (the records staged so far copied).
    pub staging_buffers_grown: u64,
}

/// What a group commit's I/O hands back: the buffer (for reuse) and how long the write and the
/// fdatasync took.
type GroupIo = Result<(Option<DmaBuffer>, Duration, Duration), StorageError>;

/// A group commit whose write and fdatasync run while the shard goes on.
struct InFlight {
    /// The write and the fdatasync, in progress; their outcome once known.
    io: Pin<Box<dyn Future<Output = GroupIo>>>,
    done: Option<GroupIo>,
    group: u32,
    group_bytes: u64,
    records: u32,
    entry_index_max: Option<u64>,
    hard_state: Option<HardState>,
    segment_rolled: bool,
}

pub struct Wal {
    dir: PathBuf,
    /// Kept open to fsync the directory after creating or deleting segments.
    directory: Directory,
    segment_bytes_max: u64,
    /// `WalConfig::preallocate_bytes_per_sec`.
    preallocate_bytes_per_sec: Option<u64>,
    /// Oldest first; the back one is the active segment. Never empty.
    segments: VecDeque<SegmentInfo>,
    /// Shared with the I/O of the group commit in flight.
    active: Rc<DmaFile>,
    staging: Staging,
    /// The group commit started and not yet finished (at most one).
    in_flight: Option<InFlight>,
    /// The last durable hard state and the segment holding it: compaction must not delete it.
    hard_state_durable: Option<(HardState, u64)>,
    /// Compacted segments being deleted, oldest first, on a thread of their own (an unlink of a
    /// 64 MiB segment takes milliseconds on ext4, and a gradual free seconds for eight: never
    /// on the reactor, never inside a shard's turn, never ahead of the next spare on the
    /// blocking pool; see `delete_segments`). At most one batch at a time, so a crash still
    /// leaves a contiguous run of segments.
    deleting: Option<deleting::Deleting>,
    /// The next segment, being made or made (with `preallocate`).
    spare: Option<spare::Spare>,
    poisoned: bool,
    stats: WalStats,
}

impl Wal {
    /// Opens (creating if needed) the log in `config.dir` and recovers it. Must run inside a
    /// glommio executor. Reads the segments with std::fs: start-up only.
    ///
    /// A relative `config.dir` is resolved against the working directory once, here; the log
    /// keeps the absolute path (see [`fs_util::absolute`]).
    pub async fn open(config: WalConfig) -> Result<(Wal, Recovered), StorageError> {
        config.validate()?;
        let dir = fs_util::absolute(&config.dir)?;
        fs_util::create_dir_durable(&dir)?;
        let outcome = recovery::recover(&dir)?;
        spare::remove_stale(&dir)?;
        segment::remove_doomed(&dir)?;

        let directory = Directory::open(&dir)
            .await
            .map_err(|e| StorageError::glommio("opening directory", &dir, e))?;
        let mut segments: VecDeque<SegmentInfo> = outcome.segments.into();
        let mut stats = WalStats::default();
        let mut spare = config
            .preallocate
            .then(|| spare::Spare::start(&dir, config.segment_bytes_max, None));
        let active = match segments.back() {
            Some(last) => open_segment(&last.path, false).await?,
            None => {
                let path = dir.join(segment::segment_file_name(0));
                // A new log waits for its first spare: start-up, not the commit path.
                if let Some(first) = spare.as_mut() {
                    first.wait().await;
                }
                let file = new_segment(&path, spare.as_mut(), &mut stats).await?;
                sync_directory(&directory, &dir).await?;
                segments.push_back(SegmentInfo {
                    seq: 0,
                    path,
                    bytes: 0,
                    entry_index_max: None,
                });
                file
            }
        };
        let next_group = outcome.last_group.map_or(0, |group| group.wrapping_add(1));
        let hard_state_durable = match (&outcome.hard_state, outcome.hard_state_seq) {
            (Some(hard_state), Some(seq)) => Some((hard_state.clone(), seq)),
            (None, None) => None,
            _ => unreachable!("hard state and its segment are recovered together"),
        };

        let recovered = Recovered {
            entries: outcome.entries,
            hard_state: outcome.hard_state,
            next_group,
            segment_count: segments.len(),
            torn_tail: outcome.torn_tail,
        };
        let mut staging = Staging::new(config.staged_bytes_max, next_group);
        staging.prefault(&active, PREFAULTED_DMA_BYTES);
        restock(
            &mut spare,
            &dir,
            config.segment_bytes_max,
            config.preallocate_bytes_per_sec,
        );
        let wal = Wal {
            dir,
            directory,
            segment_bytes_max: config.segment_bytes_max,
            preallocate_bytes_per_sec: config.preallocate_bytes_per_sec,
            segments,
            active: Rc::new(active),
            staging,
            in_flight: None,
            hard_state_durable,
            deleting: None,
            spare,
            poisoned: false,
            stats,
        };
        Ok((wal, recovered))
    }

    /// Bytes that staging these would take; lets a caller split a batch that does not fit.
    pub fn bytes_needed(entries: &[Entry], hard_state: Option<&HardState>) -> usize {
        Staging::bytes_needed(entries, hard_state)
    }

    /// Copies `entries` into the staging (DMA) buffer: all of them, or (on `StagingFull`) none.
    /// No I/O; durable only after the next [`Wal::commit`].
    pub fn stage_entries(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.staging.stage_entries(&self.active, entries)
    }

    /// Stages a hard state. No I/O; durable only after the next [`Wal::commit`].
    pub fn stage_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.staging.stage_hard_state(&self.active, hard_state)
    }

    /// Fails with `StagingFull`, staging nothing, unless both fit.
    pub fn stage(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.staging
            .check_room(Staging::bytes_needed(entries, hard_state))?;
        self.staging.stage_entries(&self.active, entries)?;
        if let Some(hard_state) = hard_state {
            self.staging.stage_hard_state(&self.active, hard_state)?;
        }
        Ok(())
    }

    /// Writes everything staged as one group commit and returns after its fdatasync. With
    /// nothing staged it does nothing. Any I/O error poisons the WAL. No group may be in flight.
    pub async fn commit(&mut self) -> Result<CommitStats, StorageError> {
        if !self.start_commit().await? {
            return Ok(CommitStats::default());
        }
        self.finish_commit().await
    }

    /// Starts writing everything staged as one group commit: seals it (in its DMA buffer) and
    /// issues its write (the fdatasync follows as [`Wal::finish_commit`] drives it), then starts
    /// the next group in another buffer. Returns whether a group started (`false`: nothing
    /// staged). The group is durable once [`Wal::finish_commit`] returns. No group may be in
    /// flight already.
    pub async fn start_commit(&mut self) -> Result<bool, StorageError> {
        self.check_poisoned()?;
        assert!(
            self.in_flight.is_none(),
            "one group commit in flight at a time"
        );
        if self.staging.is_empty() {
            return Ok(false);
        }
        let result = self.start_group().await;
        if result.is_err() {
            self.poisoned = true;
        }
        result.map(|()| true)
    }

    /// Whether a group commit is in flight.
    pub fn is_committing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Waits until the group commit in flight is durable. Cancel-safe: dropped before it
    /// returns, the group stays in flight. Any I/O error poisons the WAL.
    pub async fn finish_commit(&mut self) -> Result<CommitStats, StorageError> {
        let in_flight = self
            .in_flight
            .as_mut()
            .expect("finish_commit without a group in flight");
        let io = match in_flight.done.take() {
            Some(io) => io,
            None => (&mut in_flight.io).await,
        };
        let in_flight = self.in_flight.take().expect("checked above");
        let (buffer, write_duration, fsync_duration) = match io {
            Ok(done) => done,
            Err(error) => {
                self.poisoned = true;
                return Err(error);
            }
        };
        if let Some(buffer) = buffer {
            self.staging.give_back(buffer);
        }

        // Durable from here on.
        let segment = self.segments.back_mut().unwrap();
        segment.bytes += in_flight.group_bytes;
        if let Some(index) = in_flight.entry_index_max {
            segment.entry_index_max = Some(segment.entry_index_max.map_or(index, |m| m.max(index)));
        }
        if let Some(hard_state) = in_flight.hard_state {
            self.hard_state_durable = Some((hard_state, segment.seq));
        }
        self.stats.groups_committed += 1;
        self.stats.bytes_written += in_flight.group_bytes;

        Ok(CommitStats {
            bytes_written: in_flight.group_bytes,
            records: in_flight.records,
            group: in_flight.group,
            write_duration,
            fsync_duration,
            segment_rolled: in_flight.segment_rolled,
        })
    }

    async fn start_group(&mut self) -> Result<(), StorageError> {
        self.staging.seal(&self.active);
        let group = self.staging.group();
        let group_bytes = self.staging.sealed_len() as u64;
        assert!(group_bytes > 0 && group_bytes.is_multiple_of(BLOCK_BYTES as u64));

        let active_bytes = self.active_segment().bytes;
        let segment_rolled =
            active_bytes > 0 && active_bytes + group_bytes > self.segment_bytes_max;
        if segment_rolled {
            self.roll().await?;
        }
        let offset = self.active_segment().bytes;
        assert!(offset.is_multiple_of(BLOCK_BYTES as u64));

        // The group was staged and sealed in the buffer it is written from: no copy here.
        let buffer = self.staging.take_sealed();
        assert_eq!(buffer.len() as u64, group_bytes);

        let path = self.active_segment().path.clone();
        let file = self.active.clone();
        let mut io: Pin<Box<dyn Future<Output = GroupIo>>> =
            Box::pin(write_and_sync(file, buffer, offset, group_bytes, path));
        // Polled once now: the write is queued for the ring at once, and its completion wakes
        // the caller's task.
        let done = match futures::poll!(io.as_mut()) {
            std::task::Poll::Ready(io) => Some(io),
            std::task::Poll::Pending => None,
        };
        self.in_flight = Some(InFlight {
            io,
            done,
            group,
            group_bytes,
            records: self.staging.records(),
            entry_index_max: self.staging.entry_index_max(),
            hard_state: self.staging.hard_state_last().cloned(),
            segment_rolled,
        });
        // The group's buffer belongs to its write now: the next group stages in another.
        self.staging.reset(group.wrapping_add(1));
        Ok(())
    }

    /// Starts a new, empty active segment.
    async fn roll(&mut self) -> Result<(), StorageError> {
        let seq = self.active_segment().seq + 1;
        let path = self.dir.join(segment::segment_file_name(seq));
        assert!(self.in_flight.is_none(), "rolling under a group in flight");
        let file = new_segment(&path, self.spare.as_mut(), &mut self.stats).await?;
        // The new name must be durable before a group in it is acknowledged.
        sync_directory(&self.directory, &self.dir).await?;
        restock(
            &mut self.spare,
            &self.dir,
            self.segment_bytes_max,
            self.preallocate_bytes_per_sec,
        );
        let previous = std::mem::replace(&mut self.active, Rc::new(file));
        let previous_path = self.active_segment().path.clone();
        // No group is in flight: the I/O that shared the file has ended.
        let previous = Rc::try_unwrap(previous).expect("no I/O holds the previous segment");
        previous
            .close()
            .await
            .map_err(|e| StorageError::glommio("closing", &previous_path, e))?;
        self.segments.push_back(SegmentInfo {
            seq,
            path,
            bytes: 0,
            entry_index_max: None,
        });
        self.stats.segments_rolled += 1;
        Ok(())
    }

    /// Deletes the oldest segments whose every entry index is `<= index_upto` (never the active
    /// one), in the background (`delete_segments`). Returns how many it set out to
    /// delete: none while the last compaction's deletion is still under way (see
    /// [`Wal::settle`]).
    ///
    /// Before deleting the segment that holds the latest hard state, that hard state is written
    /// again (with anything already staged) as a group commit, so a restart still finds it; the
    /// same happens when the active segment is still empty, so the group numbering survives.
    pub async fn compact(&mut self, index_upto: u64) -> Result<usize, StorageError> {
        self.check_poisoned()?;
        assert!(
            self.in_flight.is_none(),
            "compacting under a group in flight"
        );
        // The last compaction's deletions still under way (freed gradually, they take seconds):
        // this compaction deletes nothing,
        // and the next one deletes these segments with its own. The shard's turn, which
        // compacts after a snapshot, never waits on the pool: it waited about 300 ms at a time
        // with snapshots every 128 MiB of log (docs/benchmarks.md).
        if let Some(deleting) = self.deleting.as_mut() {
            match deleting.as_mut().now_or_never() {
                None => return Ok(0),
                Some(deleted) => {
                    self.deleting = None;
                    deleted?;
                }
            }
        }
        let candidates = self.segments.len() - 1;
        let delete_count = self
            .segments
            .iter()
            .take(candidates)
            .take_while(|segment| segment.entry_index_max.is_none_or(|max| max <= index_upto))
            .count();
        if delete_count == 0 {
            return Ok(0);
        }
        let first_kept_seq = self.segments[delete_count].seq;
        let hard_state_deleted = self
            .hard_state_durable
            .as_ref()
            .is_some_and(|(_, seq)| *seq < first_kept_seq);
        if hard_state_deleted || self.active_segment().bytes == 0 {
            if hard_state_deleted && self.staging.hard_state_last().is_none() {
                let (hard_state, _) = self.hard_state_durable.clone().unwrap();
                if let Err(StorageError::StagingFull { .. }) =
                    self.staging.stage_hard_state(&self.active, &hard_state)
                {
                    self.commit().await?;
                    self.staging.stage_hard_state(&self.active, &hard_state)?;
                }
            }
            // With nothing staged this writes a group of one Pad record.
            self.start_group()
                .await
                .inspect_err(|_| self.poisoned = true)?;
            self.finish_commit().await?;
        }

        let mut paths = Vec::with_capacity(delete_count);
        for _ in 0..delete_count {
            let segment = self.segments.pop_front().unwrap();
            assert!(segment.seq < first_kept_seq);
            assert!(segment.seq != self.active_segment().seq);
            paths.push(segment.path);
            self.stats.segments_deleted += 1;
        }
        // Oldest first: if the file system reorders nothing (ext4's journal does not), a crash
        // leaves a contiguous run of segments, which recovery reads as before. Until the
        // unlinks are done the files are still there and nothing refers to them.
        self.deleting = Some(deleting::start(paths, self.dir.clone()));
        Ok(delete_count)
    }

    /// Waits until the segments the last compaction dropped are unlinked and the directory
    /// synced. [`Wal::compact`] and [`Wal::close`] do it first; a caller that looks at the
    /// directory (a test, a backup) does it before.
    pub async fn settle(&mut self) -> Result<(), StorageError> {
        match self.deleting.take() {
            Some(deleting) => deleting.await,
            None => Ok(()),
        }
    }

    /// Waits until the spare segment (with `preallocate`) is made, so that the next roll starts
    /// from it: for tests and benchmarks that need every segment preallocated. The log itself
    /// never waits for its spare.
    pub async fn wait_for_spare(&mut self) {
        if let Some(spare) = self.spare.as_mut() {
            spare.wait().await;
        }
    }

    /// Closes the active segment. Dropping a `Wal` also closes it, asynchronously.
    pub async fn close(mut self) -> Result<(), StorageError> {
        self.settle().await?;
        // No blocking job outlives the log.
        self.wait_for_spare().await;
        if self.in_flight.is_some() {
            self.finish_commit().await?;
        }
        let path = self.active_segment().path.clone();
        let active = Rc::try_unwrap(self.active).expect("no group in flight");
        active
            .close()
            .await
            .map_err(|e| StorageError::glommio("closing", &path, e))?;
        self.directory
            .close()
            .await
            .map_err(|e| StorageError::glommio("closing directory", &self.dir, e))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn staged_bytes(&self) -> usize {
        self.staging.staged_bytes()
    }

    pub fn staged_bytes_max(&self) -> usize {
        self.staging.staged_bytes_max()
    }

    pub fn staged_bytes_free(&self) -> usize {
        self.staging.staged_bytes_max() - self.staging.staged_bytes()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Paths of the segment files, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }

    /// Group number of the next commit.
    pub fn next_group(&self) -> u32 {
        self.staging.group()
    }

    pub fn stats(&self) -> WalStats {
        WalStats {
            dma_buffers_reused: self.staging.dma_cache().hits,
            dma_buffers_allocated: self.staging.dma_cache().misses,
            staged_records_moved: self.staging.records_moved,
            staging_buffers_grown: self.staging.buffers_grown,
            ..self.stats
        }
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    fn active_segment(&self) -> &SegmentInfo {
        self.segments
            .back()
            .expect("a WAL always has an active segment")
    }

    fn check_poisoned(&self) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        Ok(())
    }
}

async fn open_segment(path: &Path, create: bool) -> Result<DmaFile, StorageError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if create {
        options.create_new(true);
    }
    let file = options
        .dma_open(path)
        .await
        .map_err(|e| StorageError::glommio("opening segment", path, e))?;
    let alignment = file.alignment();
    if alignment == 0 || !(BLOCK_BYTES as u64).is_multiple_of(alignment) {
        return Err(StorageError::Invalid(format!(
            "{}: direct I/O alignment {alignment} does not divide {BLOCK_BYTES}",
            path.display()
        )));
    }
    Ok(file)
}

/// Creates segment `path`: from the spare when one is made (counted in `stats`), else empty.
/// A spare that failed is logged and replaced by an empty segment: the log goes on, only
/// without preallocation (a full disk fails the writes themselves).
async fn new_segment(
    path: &Path,
    spare: Option<&mut spare::Spare>,
    stats: &mut WalStats,
) -> Result<DmaFile, StorageError> {
    if let Some(spare) = spare {
        match spare.take_as(path) {
            Ok(true) => {
                stats.segments_preallocated += 1;
                return open_segment(path, false).await;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(segment = %path.display(), error = %e, "WAL: no preallocated segment, starting an empty one");
            }
        }
    }
    open_segment(path, true).await
}

/// Starts the next spare once the last one was taken (or failed); nothing without
/// preallocation, or while one is still being made.
fn restock(
    spare: &mut Option<spare::Spare>,
    dir: &Path,
    segment_bytes_max: u64,
    bytes_per_sec: Option<u64>,
) {
    if spare.as_ref().is_some_and(|s| !s.is_pending()) {
        *spare = Some(spare::Spare::start(dir, segment_bytes_max, bytes_per_sec));
    }
}

/// glommio issues fdatasync on the directory descriptor; for a directory that flushes its
/// entries, which is what makes a created or deleted name durable.
async fn sync_directory(directory: &Directory, dir: &Path) -> Result<(), StorageError> {
    directory
        .sync()
        .await
        .map_err(|e| StorageError::glommio("syncing directory", dir, e))
}

/// A group commit's I/O: the write, then the fdatasync that makes it durable. Hands the buffer back for reuse.
async fn write_and_sync(
    file: Rc<DmaFile>,
    buffer: DmaBuffer,
    offset: u64,
    group_bytes: u64,
    path: PathBuf,
) -> GroupIo {
    let write_start = Instant::now();
    let buffer = Rc::new(buffer);
    let written = file
        .write_rc_at(buffer.clone(), offset)
        .await
        .map_err(|e| {
            StorageError::io_at(
                "writing group commit to",
                &path,
                offset,
                group_bytes,
                std::io::Error::from(e),
            )
        })?;
    // The reactor dropped its reference when the write completed.
    let buffer = Rc::try_unwrap(buffer).ok();
    if written as u64 != group_bytes {
        return Err(StorageError::io_at(
            "writing group commit to",
            &path,
            offset,
            group_bytes,
            std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write: {written} of {group_bytes} bytes"),
            ),
        ));
    }
    let write_duration = write_start.elapsed();
    let fsync_start = Instant::now();
    file.fdatasync().await.map_err(|e| {
        StorageError::io_at(
            "fdatasync after writing group commit to",
            &path,
            offset,
            group_bytes,
            std::io::Error::from(e),
        )
    })?;
    Ok((buffer, write_duration, fsync_start.elapsed()))
}
