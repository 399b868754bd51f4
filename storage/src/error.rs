//! The one error type of the crate.
//!
//! Every variant that concerns a file names it: an operator reading a log line must be able to
//! find the bad file (and, for corruption, the byte) without a debugger.

use std::path::{Path, PathBuf};

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
