//! Small synchronous file-system helpers for start-up and snapshot paths.

use std::path::{Path, PathBuf};

use crate::error::StorageError;

/// `path` made absolute against the working directory (lexically: no symbolic link is resolved
/// and the path need not exist yet).
///
/// The log and snapshot directories are kept absolute for two reasons. glommio's
/// `Directory::open` (0.9) submits io_uring's openat with directory descriptor -1 instead of
/// `AT_FDCWD`, so the kernel resolves a relative path against an invalid descriptor and fails
/// with EBADF ("Bad file descriptor (os error 9)"); an absolute path ignores the descriptor.
/// (glommio's file opens resolve a relative path against the working directory themselves, at
/// every open.) And a log opened once must keep naming the same directory when the process's
/// working directory changes later.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, StorageError> {
    std::path::absolute(path).map_err(|e| StorageError::io("resolving", path, e))
}

/// fsync a directory, making the names created, renamed or deleted in it durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    let handle =
        std::fs::File::open(dir).map_err(|e| StorageError::io("opening directory", dir, e))?;
    handle
        .sync_all()
        .map_err(|e| StorageError::io("syncing directory", dir, e))
}

/// Creates `dir` and any missing parents, and makes each new name durable by syncing the
/// directory that holds it.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    // The directories about to be created, deepest first.
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(path) = cursor {
        if path.as_os_str().is_empty() || path.exists() {
            break;
        }
        missing.push(path);
        cursor = path.parent();
    }
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io("creating directory", dir, e))?;
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        fsync_dir(parent)?;
    }
    Ok(())
}
