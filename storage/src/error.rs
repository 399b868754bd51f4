//! The one error type of the crate.
//!
//! Every variant that concerns a file names it: an operator reading a log line must be able to
//! find the bad file (and, for corruption, the byte) without a debugger.

use std::path::{Path, PathBuf};

/// The exit status of a node that stops because its storage failed while it ran (a failed
/// write, fdatasync, snapshot or directory sync): `EX_IOERR` of sysexits.h. The process stops
/// rather than carry on without the shard; its supervisor restarts it and recovery decides from
/// what the disk really holds. Distinct from 1, every other error of the `aurigraph` binary.
pub const STORAGE_FAILURE_EXIT_CODE: i32 = 74;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system I/O error. `op` says what we were doing.
    #[error("I/O error while {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A write or fdatasync of the byte range `offset .. offset + bytes` of `path` failed. The
    /// WAL is poisoned from then on (see [`StorageError::Poisoned`]).
    #[error("I/O error while {op} {path} at byte offset {offset} ({bytes} bytes): {source}")]
    IoAt {
        op: &'static str,
        path: PathBuf,
        offset: u64,
        bytes: u64,
        #[source]
        source: std::io::Error,
    },

    /// Bytes on disk that cannot be explained by a crash during an unacknowledged write.
    /// Starting on such a log could lose acknowledged data, so we refuse.
    #[error("corruption in {path} at byte offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    /// The staging buffer cannot take `needed_bytes` more: commit first (or split the batch, when
    /// `needed_bytes` exceeds `staged_bytes_max` on its own). Nothing was staged.
    #[error(
        "WAL staging buffer full: {staged_bytes} bytes staged, {needed_bytes} more needed, \
         staged_bytes_max {staged_bytes_max}"
    )]
    StagingFull {
        staged_bytes: usize,
        needed_bytes: usize,
        staged_bytes_max: usize,
    },

    /// A caller broke the API contract (non-contiguous entries, snapshot older than the current
    /// one, ...). Nothing was changed.
    #[error("invalid request: {0}")]
    Invalid(String),

    /// A write or fdatasync failed earlier. After a failed fdatasync the kernel may have dropped
    /// dirty pages and the on-disk state is unknown, so the only safe way on is to restart and
    /// recover from what the disk really holds.
    #[error("WAL is poisoned by an earlier I/O failure; restart to recover")]
    Poisoned,
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> StorageError {
        StorageError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// For an I/O error of a write (or its fdatasync) of `bytes` bytes at `offset` of `path`.
    pub(crate) fn io_at(
        op: &'static str,
        path: &Path,
        offset: u64,
        bytes: u64,
        source: std::io::Error,
    ) -> StorageError {
        StorageError::IoAt {
            op,
            path: path.to_path_buf(),
            offset,
            bytes,
            source,
        }
    }

    /// For glommio's error type, which converts into `std::io::Error` keeping the OS error.
    pub(crate) fn glommio(
        op: &'static str,
        path: &Path,
        source: glommio::GlommioError<()>,
    ) -> StorageError {
        StorageError::io(op, path, std::io::Error::from(source))
    }

    pub(crate) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
}
