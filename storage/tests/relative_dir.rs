//! A log opened by a relative path, as the node's default `--data-dir ./aurigraph-data` gives it:
//! on a fresh directory, on an existing one, and still the same log after the working directory
//! changes.
//!
//! Regression: glommio's `Directory::open` asks io_uring's openat to resolve the path against
//! file descriptor -1 instead of the working directory, so any relative path failed with
//! `I/O error while opening directory ./aurigraph-data/shards/0000/wal: Bad file descriptor
//! (os error 9)`; only absolute paths worked.
//!
//! The working directory is per process, so this file holds a single test (its own test binary:
//! no other test runs beside it).

mod common;

use std::path::{Path, PathBuf};

use aurigraph_storage::{ShardLog, Wal, WalConfig};
use common::*;
use raft::eraftpb::ConfState;

/// Restores the working directory when dropped, even when an assertion fails.
struct WorkingDir(PathBuf);

impl WorkingDir {
    fn enter(dir: &Path) -> WorkingDir {
        let previous = std::env::current_dir().unwrap();
        std::env::set_current_dir(dir).unwrap();
        WorkingDir(previous)
    }
}

impl Drop for WorkingDir {
    fn drop(&mut self) {
        let _ = std::env::set_current_dir(&self.0);
    }
}

fn config(dir: &str) -> WalConfig {
    small_config(Path::new(dir))
}

#[test]
fn relative_dirs_open_fresh_and_existing_and_survive_a_change_of_working_directory() {
    let root = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let _restore = WorkingDir::enter(root.path());

    run(async {
        // --- the WAL alone, `./` prefix as the node's default data dir gives it ---
        let wal_dir = "./aurigraph-data/shards/0000/wal";
        // Fresh: nothing of the path exists yet.
        let (mut wal, recovered) = Wal::open(config(wal_dir)).await.unwrap();
        assert!(recovered.entries.is_empty());
        assert!(
            wal.dir().is_absolute(),
            "the WAL keeps an absolute path: {}",
            wal.dir().display()
        );
        assert_eq!(
            wal.dir(),
            root.path().join("aurigraph-data/shards/0000/wal"),
            "resolved against the working directory at open"
        );
        let first = entries(1..=40, 1, 700);
        for group in first.chunks(10) {
            wal.stage_entries(group).unwrap();
            wal.commit().await.unwrap();
        }
        wal.stage_hard_state(&hard_state(1, 1, 40)).unwrap();
        wal.commit().await.unwrap();
        assert!(wal.segment_count() > 1, "small segments: the log rolled");

        // The working directory changes under an open log: new segments, compaction (directory
        // fsyncs) still land in the log's own directory.
        std::env::set_current_dir(elsewhere.path()).unwrap();
        let second = entries(41..=80, 1, 700);
        for group in second.chunks(10) {
            wal.stage_entries(group).unwrap();
            wal.commit().await.unwrap();
        }
        assert!(wal.compact(60).await.unwrap() > 0);
        wal.close().await.unwrap();
        assert!(
            std::fs::read_dir(elsewhere.path())
                .unwrap()
                .next()
                .is_none(),
            "nothing written into the new working directory"
        );
        std::env::set_current_dir(root.path()).unwrap();

        // Existing: reopened by the same relative path (no `./` this time).
        let (wal, recovered) = Wal::open(config("aurigraph-data/shards/0000/wal"))
            .await
            .unwrap();
        let last = recovered.entries.last().expect("recovered entries");
        assert_eq!(last.index, 80);
        assert_entries_eq(
            &recovered.entries,
            &[first, second].concat()[(recovered.entries[0].index - 1) as usize..],
        );
        assert_eq!(recovered.hard_state, Some(hard_state(1, 1, 40)));
        wal.close().await.unwrap();

        // --- the shard log (WAL and snapshot directories), a bare relative name ---
        let shard_dir = Path::new("data/shards/0001");
        let conf = ConfState {
            voters: vec![1],
            ..ConfState::default()
        };
        // Fresh.
        let (mut log, snapshot) = ShardLog::open(shard_dir, conf.clone(), config("unused"))
            .await
            .unwrap();
        assert!(snapshot.is_none());
        assert!(log.dir().is_absolute(), "{}", log.dir().display());
        log.persist(&entries(1..=10, 1, 100), Some(&hard_state(1, 1, 10)))
            .await
            .unwrap();
        log.save_snapshot(6, 1, conf.clone(), b"state at 6".to_vec())
            .await
            .unwrap();
        drop(log);
        // Existing.
        let (log, snapshot) = ShardLog::open(shard_dir, conf, config("unused"))
            .await
            .unwrap();
        assert_eq!(snapshot.as_deref(), Some(&b"state at 6"[..]));
        assert_eq!(log.snapshot_index(), 6);
        assert_eq!(log.last_index(), 10);
        assert!(root.path().join("data/shards/0001/wal").is_dir());
        assert!(root.path().join("data/shards/0001/snap").is_dir());
    });
}
