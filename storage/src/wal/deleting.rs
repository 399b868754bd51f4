//! Compacted segments deleted in the background, oldest first, a piece at a time.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use super::segment;
use crate::error::StorageError;
use crate::fs_util;

/// Starts deleting `paths` (compacted segments of `dir`, oldest first) on a thread of its own:
/// freed gradually, a compaction's segments take seconds, which on the executor's blocking
/// pool would hold up the next spare segment.
pub(super) fn start(paths: Vec<PathBuf>, dir: PathBuf) -> Deleting {
    let job = crate::background::spawn_background_thread("wal-delete", {
        let dir = dir.clone();
        move || delete_segments(&paths, &dir)
    });
    Box::pin(async move {
        job.await
            .map_err(|e| StorageError::io("starting a thread to delete segments", &dir, e))?
    })
}

/// Compacted segments being deleted (see `Wal::deleting`).
pub(super) type Deleting = Pin<Box<dyn Future<Output = Result<(), StorageError>>>>;

/// Time between two compacted segments' deletions (see [`delete_segments`]).
const SEGMENT_DELETE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Deletes `paths` in order, on a thread that may sleep, [`SEGMENT_DELETE_INTERVAL`] apart: each is
/// first renamed out of the log's sight (`segment::doomed_name`) and the directory synced, so
/// that recovery still finds a contiguous run of whole segments whatever a crash interrupts,
/// then freed a piece at a time (`background::free_gradually`). A compaction frees eight
/// 64 MiB segments at a time; freed in one journal commit, on a file system mounted with
/// online discard, their TRIM held every group commit behind that commit for up to 57 ms on
/// the development VM (docs/benchmarks.md, "Online discard").
fn delete_segments(paths: &[PathBuf], dir: &Path) -> Result<(), StorageError> {
    for (i, path) in paths.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(SEGMENT_DELETE_INTERVAL);
        }
        let doomed = segment::doomed_name(path);
        std::fs::rename(path, &doomed)
            .map_err(|e| StorageError::io("deleting segment", path, e))?;
        fs_util::fsync_dir(dir)?;
        crate::background::free_gradually(&doomed)
            .map_err(|e| StorageError::io("deleting segment", &doomed, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacted_segments_are_deleted_oldest_first_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..3)
            .map(|i| {
                let path = dir.path().join(format!("segment-{i}"));
                std::fs::write(&path, [0u8; 4096]).unwrap();
                path
            })
            .collect();
        let started = std::time::Instant::now();
        delete_segments(&paths, dir.path()).unwrap();
        assert!(paths.iter().all(|p| !p.exists()));
        assert!(paths.iter().all(|p| !segment::doomed_name(p).exists()));
        assert!(
            started.elapsed() >= 2 * SEGMENT_DELETE_INTERVAL,
            "three segments, two pauses: {:?}",
            started.elapsed()
        );
        // A segment already gone is an error (the log's bookkeeping went wrong), not skipped.
        assert!(delete_segments(&paths[..1], dir.path()).is_err());
    }
}
