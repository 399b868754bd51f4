//! Helpers shared by the integration tests. Each test runs its own single glommio executor in
//! its own temporary directory.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};

use aurigraph_storage::WalConfig;
use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use raft::eraftpb::{Entry, EntryType, HardState};

/// Runs `future` to completion on a fresh single-threaded executor. io_memory is kept small: the
/// memlock limit here is 8 MiB and tests run two at a time.
pub fn run<F: Future>(future: F) -> F::Output {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("glommio executor")
        .run(future)
}

/// An entry whose data is derived from (index, term, salt), so any mix-up shows.
pub fn entry(index: u64, term: u64, data_bytes: usize) -> Entry {
    entry_salted(index, term, data_bytes, 0)
}

pub fn entry_salted(index: u64, term: u64, data_bytes: usize, salt: u8) -> Entry {
    let seed = (index as u8) ^ (term as u8).rotate_left(3) ^ salt;
    Entry {
        index,
        term,
        entry_type: if index.is_multiple_of(7) {
            EntryType::EntryConfChange
        } else {
            EntryType::EntryNormal
        },
        data: (0..data_bytes)
            .map(|i| seed.wrapping_add(i as u8))
            .collect::<Vec<u8>>()
            .into(),
        context: if index.is_multiple_of(3) {
            Bytes::from(format!("ctx-{index}-{term}"))
        } else {
            Bytes::new()
        },
        ..Entry::default()
    }
}

pub fn entries(indexes: std::ops::RangeInclusive<u64>, term: u64, data_bytes: usize) -> Vec<Entry> {
    indexes
        .map(|index| entry(index, term, data_bytes))
        .collect()
}

pub fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..HardState::default()
    }
}

/// Small bounds so tests roll segments without writing megabytes.
pub fn small_config(dir: &Path) -> WalConfig {
    WalConfig {
        dir: dir.to_path_buf(),
        segment_bytes_max: 32 * 1024,
        staged_bytes_max: 64 * 1024,
        // Append mode: the crash tests place their damage by file length. Preallocated
        // segments have their own tests (preallocated_config).
        preallocate: false,
        preallocate_bytes_per_sec: None,
    }
}

/// `small_config` with preallocated segments (each one a zero-filled spare of 32 KiB).
pub fn preallocated_config(dir: &Path) -> WalConfig {
    WalConfig {
        preallocate: true,
        ..small_config(dir)
    }
}

/// Compares what matters of two entry lists, with a readable failure.
pub fn assert_entries_eq(actual: &[Entry], expected: &[Entry]) {
    let summary = |entries: &[Entry]| -> Vec<(u64, u64)> {
        entries.iter().map(|e| (e.index, e.term)).collect()
    };
    assert_eq!(
        summary(actual),
        summary(expected),
        "entry (index, term) lists differ"
    );
    for (a, e) in actual.iter().zip(expected) {
        assert_eq!(a.entry_type, e.entry_type, "entry {} type", e.index);
        assert_eq!(a.context, e.context, "entry {} context", e.index);
        assert_eq!(a.data, e.data, "entry {} data", e.index);
    }
}

/// The raft conflict rule, as a model: `new` replaces the suffix from its first index.
pub fn model_append(log: &mut Vec<Entry>, new: &[Entry]) {
    let Some(first) = new.first() else { return };
    match log.first() {
        Some(log_first) if first.index >= log_first.index => {
            log.truncate((first.index - log_first.index) as usize);
        }
        _ => log.clear(),
    }
    log.extend_from_slice(new);
}

pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    files.sort();
    files
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for dir_entry in std::fs::read_dir(from).unwrap() {
        let dir_entry = dir_entry.unwrap();
        std::fs::copy(dir_entry.path(), to.join(dir_entry.file_name())).unwrap();
    }
}

/// A scratch directory for tests that recover thousands of damaged copies: on tmpfs when there is
/// one, because every repair fsyncs and this machine's disk makes each fsync cost milliseconds.
/// (On tmpfs glommio falls back from O_DIRECT to buffered I/O; the logic under test is the same.
/// The logs being damaged are written on the real disk, with O_DIRECT.)
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}
