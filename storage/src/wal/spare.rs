//! The spare segment: the next segment file, made ahead of time at its full size and filled
//! with zeros, so that the WAL's group commits overwrite blocks that exist.
//!
//! Why. A group commit that appends to a file changes its size and allocates blocks, so its
//! fdatasync must commit file-system metadata (ext4: a journal commit) besides the data, and an
//! O_DIRECT write that extends a file is handed by io_uring to a kernel worker thread, which on
//! a busy host waits for a CPU. Over blocks already written (zeros), the size and the block map
//! do not change: the write can complete without a worker and the fdatasync is a data flush
//! (measured on the 2-core VM, docs/benchmarks.md: half-load gateway batch latency p50 2.6 →
//! 1.1 ms, p99 11–12 → 5–9 ms). Zeros, written, not `fallocate`d: fallocated blocks are
//! "unwritten" and the first write into each converts it, which is a metadata change again.
//!
//! How. The spare is made on glommio's blocking pool under the name [`SPARE_FILE_NAME`] (not a
//! segment name: recovery never reads it, and a crash while it is being made leaves only a file
//! that the next open deletes). When the log rolls and the spare is ready, it is renamed to the
//! new segment's name (never replacing a file) and the directory is synced, as for a created
//! segment; then the next spare is started. When it is not ready (a roll sooner than the spare
//! takes to write), the segment is created empty and grows as before: never a wait on the
//! commit path. Recovery reads zeros up to a file's end as the end of its log
//! (`recovery.rs`).

use futures::FutureExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::StorageError;
use crate::record::BLOCK_BYTES;

/// The spare's file name in the log's directory.
pub(crate) const SPARE_FILE_NAME: &str = "next-segment.spare";
/// Zeros written per `pwrite` while making a spare.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// What making a spare came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Made {
    Zeroed,
    /// Stopped because the spare was dropped (nothing left on disk).
    Cancelled,
    /// Not made: the file system has less free space than [`FREE_SPACE_SEGMENTS_MIN`] segments.
    NoRoom,
}

/// A spare is made only while the file system keeps this many segments' worth of space free
/// besides it: preallocation must never take the last free space from the log itself (or from
/// the snapshots beside it). With less, segments grow with each group, as without.
const FREE_SPACE_SEGMENTS_MIN: u64 = 2;

/// A spare being made, or made. Dropping it stops the making (the partial file is deleted)
/// and waits for the blocking job to end: after a `Wal` is dropped, nothing writes into its
/// directory (a test that removes the directory, a backup that copies it).
pub(crate) struct Spare {
    path: PathBuf,
    /// `cancel` is set when the spare is dropped (the job stops at its next chunk and deletes
    /// its file); `running` by the job when it starts on a blocking thread.
    flags: Arc<JobFlags>,
    /// Closed (its sender dropped) when the job has ended.
    job_ended: std::sync::mpsc::Receiver<()>,
    making: Option<glommio::Task<Result<Made, StorageError>>>,
    made: Option<Result<Made, StorageError>>,
}

impl Spare {
    /// Starts making a spare of `bytes` (a multiple of `BLOCK_BYTES`) in `dir`, replacing any
    /// earlier one. Must run inside a glommio executor.
    pub(crate) fn start(dir: &Path, bytes: u64, bytes_per_sec: Option<u64>) -> Spare {
        assert!(bytes > 0 && bytes.is_multiple_of(BLOCK_BYTES as u64));
        let path = dir.join(SPARE_FILE_NAME);
        let job_path = path.clone();
        let flags = Arc::new(JobFlags::default());
        let job_flags = flags.clone();
        let (ended, job_ended) = std::sync::mpsc::channel::<()>();
        let making = crate::background::spawn_background(move || {
            job_flags.running.store(true, Ordering::SeqCst);
            let outcome = make_zeroed(&job_path, bytes, &job_flags.cancel, bytes_per_sec);
            drop(ended);
            outcome
        });
        // A task of its own: glommio hands the job to its blocking pool only when the future
        // is polled, and the log polls it only when it rolls.
        let making = glommio::spawn_local(making);
        Spare {
            path,
            flags,
            job_ended,
            making: Some(making),
            made: None,
        }
    }

    /// Whether the spare is still being made, or made and not yet taken.
    pub(crate) fn is_pending(&self) -> bool {
        self.making.is_some() || self.made.is_some()
    }

    /// Whether the spare is made (or failed), without waiting.
    fn poll_made(&mut self) -> bool {
        if let Some(outcome) = self
            .making
            .as_mut()
            .and_then(|making| making.now_or_never())
        {
            self.made = Some(outcome);
            self.making = None;
        }
        self.made.is_some()
    }

    /// Waits until the spare is made (or failed).
    pub(crate) async fn wait(&mut self) {
        if let Some(making) = self.making.take() {
            self.made = Some(making.await);
        }
    }

    /// If the spare is made, renames it to `segment` (which must not exist) and returns true;
    /// false when it is still being made. A spare that failed is an error (the caller goes on
    /// without one).
    pub(crate) fn take_as(&mut self, segment: &Path) -> Result<bool, StorageError> {
        if !self.poll_made() {
            return Ok(false);
        }
        match self.made.take().expect("made") {
            Ok(Made::Zeroed) => {
                rename_no_replace(&self.path, segment)
                    .map_err(|e| StorageError::io("renaming the spare segment to", segment, e))?;
                Ok(true)
            }
            Ok(Made::Cancelled) => unreachable!("a spare that is still held is never cancelled"),
            Ok(Made::NoRoom) => {
                tracing::info!(
                    segment = %segment.display(),
                    "WAL: too little free disk space for a preallocated segment; this one grows with its groups"
                );
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// Creates `path` (replacing it) with `bytes` of zeros, durably: O_DIRECT writes where the file
/// system takes them (no page cache to fill and flush), buffered ones where it does not (tmpfs).
/// Makes nothing when the file system would keep less than [`FREE_SPACE_SEGMENTS_MIN`] ×
/// `bytes` free besides; a spare that fails half way is deleted, so that it gives back the
/// space it took.
fn make_zeroed(
    path: &Path,
    bytes: u64,
    cancel: &AtomicBool,
    bytes_per_sec: Option<u64>,
) -> Result<Made, StorageError> {
    if cancel.load(Ordering::SeqCst) {
        return Ok(Made::Cancelled);
    }
    let _ = std::fs::remove_file(path);
    let dir = path.parent().expect("a spare lives in the log's directory");
    let free =
        free_bytes(dir).map_err(|e| StorageError::io("reading the free space of", dir, e))?;
    if free < bytes.saturating_mul(FREE_SPACE_SEGMENTS_MIN + 1) {
        return Ok(Made::NoRoom);
    }
    let made = write_zeros_unless(path, bytes, cancel, bytes_per_sec).inspect_err(|_| {
        let _ = std::fs::remove_file(path);
    })?;
    if !made {
        let _ = std::fs::remove_file(path);
        return Ok(Made::Cancelled);
    }
    Ok(Made::Zeroed)
}

/// `path` as a C string for a libc call.
fn c_path(path: &Path) -> std::io::Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
}

/// Bytes an unprivileged writer may still use on the file system of `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let c = c_path(dir)?;
    // SAFETY: a zeroed statvfs is a valid out-parameter; `c` is a NUL-terminated path.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the kernel writes at most the struct.
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Creates `path` (replacing it) with `bytes` of zeros, fsynced: what a spare segment is made
/// of. Public for the WAL benchmark's zero-filled baseline.
pub fn write_zeros(path: &Path, bytes: u64) -> Result<(), StorageError> {
    write_zeros_unless(path, bytes, &AtomicBool::new(false), None).map(|_| ())
}

/// [`write_zeros`], stopping (false) before any chunk once `cancel` is set, the chunks paced to
/// `bytes_per_sec`.
fn write_zeros_unless(
    path: &Path,
    bytes: u64,
    cancel: &AtomicBool,
    bytes_per_sec: Option<u64>,
) -> Result<bool, StorageError> {
    let create = |direct: bool| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        if direct {
            options.custom_flags(libc::O_DIRECT);
        }
        options.open(path)
    };
    let file = match create(true) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => create(false),
        other => other,
    }
    .map_err(|e| StorageError::io("creating the spare segment", path, e))?;
    let zeros = AlignedZeros::new(ZERO_CHUNK_BYTES);
    let pace = crate::background::Pace::new(bytes_per_sec);
    let mut offset = 0u64;
    while offset < bytes {
        pace.wait_for(offset);
        if cancel.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let chunk = (bytes - offset).min(ZERO_CHUNK_BYTES as u64) as usize;
        file.write_all_at(&zeros.as_slice()[..chunk], offset)
            .map_err(|e| {
                StorageError::io_at("zeroing the spare segment", path, offset, chunk as u64, e)
            })?;
        offset += chunk as u64;
    }
    // fsync, not fdatasync: the size is what changed.
    file.sync_all()
        .map_err(|e| StorageError::io("syncing the spare segment", path, e))?;
    Ok(true)
}

#[derive(Default)]
struct JobFlags {
    cancel: AtomicBool,
    running: AtomicBool,
}

impl Drop for Spare {
    fn drop(&mut self) {
        // Either the job sees `cancel` before it touches the disk, or this sees `running` and
        // waits for the job, which stops at its next chunk (one 1 MiB write at most) and
        // deletes its file (both SeqCst: one of the two sees the other's store). The wait
        // needs nothing from this executor: the job ends on its blocking thread. A job not
        // running yet never writes.
        self.flags.cancel.store(true, Ordering::SeqCst);
        if self.flags.running.load(Ordering::SeqCst) {
            let _ = self.job_ended.recv();
        }
    }
}

/// Deletes a spare that a previous run left (made or half made: either way not trusted).
pub(crate) fn remove_stale(dir: &Path) -> Result<(), StorageError> {
    let path = dir.join(SPARE_FILE_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(
            "deleting the stale spare segment",
            &path,
            e,
        )),
    }
}

/// `rename(from, to)` that fails with `EEXIST` instead of replacing `to`.
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    let (from, to) = (c_path(from)?, c_path(to)?);
    // SAFETY: both are valid NUL-terminated paths that live across the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A zero-filled buffer aligned for O_DIRECT.
struct AlignedZeros {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedZeros {
    fn new(bytes: usize) -> AlignedZeros {
        let layout = std::alloc::Layout::from_size_align(bytes, BLOCK_BYTES).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedZeros { ptr, layout }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` holds `layout.size()` initialized (zeroed) bytes for our lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedZeros {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_is_all_zeros_of_its_size_and_renames_without_replacing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SPARE_FILE_NAME);
        std::fs::write(&path, b"stale").unwrap();
        assert_eq!(
            make_zeroed(
                &path,
                3 * ZERO_CHUNK_BYTES as u64 / 2,
                &AtomicBool::new(false),
                Some(ZERO_CHUNK_BYTES as u64 * 10)
            )
            .unwrap(),
            Made::Zeroed
        );
        let contents = std::fs::read(&path).unwrap();
        assert_eq!(contents.len(), 3 * ZERO_CHUNK_BYTES / 2);
        assert!(contents.iter().all(|b| *b == 0));

        let taken = dir.path().join("taken");
        std::fs::write(&taken, b"x").unwrap();
        let err = rename_no_replace(&path, &taken).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        assert_eq!(std::fs::read(&taken).unwrap(), b"x");
        rename_no_replace(&path, &dir.path().join("segment")).unwrap();
        assert!(!path.exists());

        // A spare that would leave less than its minimum of free space is not made.
        let huge = (free_bytes(dir.path()).unwrap() / 2).next_multiple_of(BLOCK_BYTES as u64);
        assert_eq!(
            make_zeroed(&path, huge, &AtomicBool::new(false), None).unwrap(),
            Made::NoRoom
        );
        // A cancelled one leaves nothing.
        assert_eq!(
            make_zeroed(&path, 1 << 20, &AtomicBool::new(true), None).unwrap(),
            Made::Cancelled
        );
        assert!(!path.exists());

        remove_stale(dir.path()).unwrap(); // nothing there: fine
        std::fs::write(&path, b"half").unwrap();
        remove_stale(dir.path()).unwrap();
        assert!(!path.exists());
    }
}
