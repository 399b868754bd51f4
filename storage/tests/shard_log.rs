//! Snapshot files, and `ShardLog` (MemStorage + WAL + snapshots) across restarts, including a real
//! single-node raft `RawNode` on top of it.

mod common;

use std::path::Path;

use aurigraph_storage::snapshot::snapshot_metadata;
use aurigraph_storage::{read_latest_snapshot, write_snapshot, ShardLog, StorageError};
use common::*;
use raft::eraftpb::{ConfState, Entry, SnapshotMetadata};
use raft::Storage;

fn conf(voters: &[u64]) -> ConfState {
    ConfState {
        voters: voters.to_vec(),
        ..ConfState::default()
    }
}

fn meta(index: u64, term: u64) -> SnapshotMetadata {
    let conf = ConfState {
        voters: vec![1, 2, 3],
        learners: vec![4],
        voters_outgoing: vec![1, 2, 5],
        learners_next: vec![5],
        auto_leave: true,
        ..ConfState::default()
    };
    snapshot_metadata(index, term, conf)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

// ---- snapshot files ----

#[test]
fn snapshot_round_trip_and_older_ones_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let snap_dir = dir.path().join("snap");
    assert!(read_latest_snapshot(&snap_dir).unwrap().is_none());

    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    let path = write_snapshot(&snap_dir, &meta(10, 2), &data).unwrap();
    assert_eq!(path.file_name().unwrap(), "snap-00000000000000000010.snap");
    let (read_meta, read_data) = read_latest_snapshot(&snap_dir).unwrap().unwrap();
    assert_eq!(read_meta, meta(10, 2));
    assert_eq!(read_data, data);

    // Empty data and a newer index: the older snapshot is deleted.
    write_snapshot(&snap_dir, &meta(20, 3), &[]).unwrap();
    assert_eq!(files_in(&snap_dir), vec!["snap-00000000000000000020.snap"]);
    let (read_meta, read_data) = read_latest_snapshot(&snap_dir).unwrap().unwrap();
    assert_eq!(read_meta, meta(20, 3));
    assert!(read_data.is_empty());
}

#[test]
fn snapshot_bad_checksum_names_the_file_and_is_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let snap_dir = dir.path().join("snap");
    // An older, valid snapshot next to the damaged newer one (as if its deletion was lost).
    let older_dir = dir.path().join("older");
    let older = write_snapshot(&older_dir, &meta(5, 1), b"old state").unwrap();
    let newer = write_snapshot(&snap_dir, &meta(9, 2), b"new state").unwrap();
    std::fs::copy(&older, snap_dir.join(older.file_name().unwrap())).unwrap();

    let mut contents = std::fs::read(&newer).unwrap();
    let last = contents.len() - 1;
    contents[last] ^= 0x40;
    std::fs::write(&newer, &contents).unwrap();
    let err = read_latest_snapshot(&snap_dir).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{message}");
    assert!(
        message.contains("snap-00000000000000000009.snap"),
        "{message}"
    );
    assert!(message.contains("checksum"), "{message}");

    // A truncated file is refused too.
    std::fs::write(&newer, &contents[..contents.len() - 3]).unwrap();
    let err = read_latest_snapshot(&snap_dir).unwrap_err();
    assert!(
        err.to_string().contains("snap-00000000000000000009.snap"),
        "{err}"
    );
}

#[test]
fn snapshot_tmp_leftovers_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let snap_dir = dir.path().join("snap");
    write_snapshot(&snap_dir, &meta(7, 1), b"state at 7").unwrap();
    // A crash while writing a newer snapshot leaves its .tmp behind: never used, deleted.
    std::fs::write(
        snap_dir.join("snap-00000000000000000012.tmp"),
        b"half written",
    )
    .unwrap();
    let (read_meta, read_data) = read_latest_snapshot(&snap_dir).unwrap().unwrap();
    assert_eq!(read_meta.index, 7);
    assert_eq!(read_data, b"state at 7");
    assert_eq!(files_in(&snap_dir), vec!["snap-00000000000000000007.snap"]);
}

// ---- ShardLog ----

fn entries_of(log: &ShardLog, low: u64, high_inclusive: u64) -> Vec<Entry> {
    log.storage()
        .entries(
            low,
            high_inclusive + 1,
            None,
            raft::GetEntriesContext::empty(false),
        )
        .unwrap()
}

#[test]
fn shard_log_round_trip_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (mut log, snapshot) =
            ShardLog::open(dir.path(), conf(&[1, 2, 3]), small_config(dir.path()))
                .await
                .unwrap();
        assert!(snapshot.is_none());
        assert_eq!((log.first_index(), log.last_index()), (1, 0));
        assert_eq!(
            log.storage().initial_state().unwrap().conf_state,
            conf(&[1, 2, 3])
        );

        log.stage(&entries(1..=4, 1, 100), Some(&hard_state(1, 1, 0)))
            .unwrap();
        log.sync().await.unwrap();
        log.stage(&entries(5..=10, 1, 100), None).unwrap();
        log.sync().await.unwrap();
        // Conflict: 7..8 at a new term replaces 7..10.
        log.stage(&entries(7..=8, 2, 50), Some(&hard_state(2, 3, 6)))
            .unwrap();
        log.sync().await.unwrap();
        assert_eq!(log.last_index(), 8);

        // Contract violations are errors, not panics, and change nothing.
        let err = log.stage(&entries(10..=11, 2, 1), None).unwrap_err();
        assert!(matches!(err, StorageError::Invalid(_)), "{err}");
        let mut broken = entries(9..=10, 2, 1);
        broken[1].index = 11;
        assert!(log.stage(&broken, None).is_err());
        assert_eq!(log.last_index(), 8);
        drop(log);

        let (log, snapshot) = ShardLog::open(dir.path(), conf(&[9]), small_config(dir.path()))
            .await
            .unwrap();
        assert!(snapshot.is_none());
        let mut expected = entries(1..=6, 1, 100);
        expected.extend(entries(7..=8, 2, 50));
        assert_entries_eq(&entries_of(&log, 1, 8), &expected);
        assert_eq!(log.hard_state(), hard_state(2, 3, 6));
        let state = log.storage().initial_state().unwrap();
        assert_eq!(state.hard_state, hard_state(2, 3, 6));
        // No snapshot: the caller's conf state.
        assert_eq!(state.conf_state, conf(&[9]));
    });
}

#[test]
fn shard_log_restart_after_snapshot_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (mut log, _) = ShardLog::open(dir.path(), conf(&[1]), small_config(dir.path()))
            .await
            .unwrap();
        for batch in 0..20u64 {
            let term = 1 + batch / 10;
            log.stage(
                &entries(batch * 5 + 1..=batch * 5 + 5, term, 1000),
                Some(&hard_state(term, 1, batch * 5)),
            )
            .unwrap();
            log.sync().await.unwrap();
        }
        let segments_before = log.wal().segment_count();
        assert!(segments_before > 3);

        let state = b"shard state at 60".to_vec();
        log.save_snapshot(60, 2, conf(&[1, 2]), state.clone())
            .await
            .unwrap();
        assert_eq!(log.snapshot_index(), 60);
        assert_eq!(
            log.first_index(),
            60,
            "the entry at the snapshot index is kept in memory"
        );
        assert!(
            log.wal().segment_count() < segments_before,
            "no segment was deleted"
        );
        assert_eq!(
            files_in(&dir.path().join("snap")),
            vec!["snap-00000000000000000060.snap"]
        );

        log.stage(&entries(101..=110, 3, 200), Some(&hard_state(3, 1, 105)))
            .unwrap();
        log.sync().await.unwrap();
        drop(log);

        let (log, snapshot) = ShardLog::open(dir.path(), conf(&[7]), small_config(dir.path()))
            .await
            .unwrap();
        assert_eq!(snapshot.unwrap(), state);
        assert_eq!(log.snapshot_index(), 60);
        assert_eq!((log.first_index(), log.last_index()), (61, 110));
        let storage = log.storage();
        assert_eq!(storage.term(60).unwrap(), 2);
        let mut expected: Vec<Entry> = (12..20u64)
            .flat_map(|batch| entries(batch * 5 + 1..=batch * 5 + 5, 1 + batch / 10, 1000))
            .collect();
        expected.extend(entries(101..=110, 3, 200));
        assert_entries_eq(&entries_of(&log, 61, 110), &expected);
        let state = storage.initial_state().unwrap();
        assert_eq!(state.hard_state, hard_state(3, 1, 105));
        assert_eq!(
            state.conf_state,
            conf(&[1, 2]),
            "conf state from the snapshot"
        );
    });
}

#[test]
fn shard_log_snapshot_from_leader_past_the_log() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (mut log, _) = ShardLog::open(dir.path(), conf(&[1, 2]), small_config(dir.path()))
            .await
            .unwrap();
        log.stage(&entries(1..=10, 1, 10), Some(&hard_state(1, 2, 5)))
            .unwrap();
        log.sync().await.unwrap();
        // A lagging follower receives a snapshot at 50: the in-memory log is replaced.
        log.save_snapshot(50, 3, conf(&[1, 2, 3]), b"fifty".to_vec())
            .await
            .unwrap();
        assert_eq!((log.first_index(), log.last_index()), (51, 50));
        log.stage(&entries(51..=53, 3, 10), Some(&hard_state(3, 2, 52)))
            .unwrap();
        log.sync().await.unwrap();
        drop(log);

        let (log, snapshot) = ShardLog::open(dir.path(), conf(&[1, 2]), small_config(dir.path()))
            .await
            .unwrap();
        assert_eq!(snapshot.as_deref(), Some(&b"fifty"[..]));
        assert_eq!((log.first_index(), log.last_index()), (51, 53));
        assert_entries_eq(&entries_of(&log, 51, 53), &entries(51..=53, 3, 10));
        assert_eq!(log.hard_state(), hard_state(3, 2, 52));
    });
}

#[test]
fn shard_log_drops_stale_suffix_replaced_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (mut log, _) = ShardLog::open(dir.path(), conf(&[1, 2]), small_config(dir.path()))
            .await
            .unwrap();
        log.stage(&entries(1..=20, 1, 10), Some(&hard_state(1, 2, 10)))
            .unwrap();
        log.sync().await.unwrap();
        // The leader's snapshot at 15 has term 2: entries 11..=20 of term 1 diverged.
        log.save_snapshot(15, 2, conf(&[1, 2]), b"s".to_vec())
            .await
            .unwrap();
        assert_eq!(log.last_index(), 15);
        drop(log);

        // The WAL still holds 16..=20 at term 1; they must not come back.
        let (log, _) = ShardLog::open(dir.path(), conf(&[1, 2]), small_config(dir.path()))
            .await
            .unwrap();
        assert_eq!((log.first_index(), log.last_index()), (16, 15));
        assert_eq!(log.hard_state().commit, 15);
        assert_eq!(log.hard_state().term, 2);
    });
}

#[test]
fn shard_log_persist_splits_large_batches() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (mut log, _) = ShardLog::open(dir.path(), conf(&[1]), small_config(dir.path()))
            .await
            .unwrap();
        // 200 KiB against 64 KiB of staging.
        let batch = entries(1..=100, 1, 2000);
        let stats = log
            .persist(&batch, Some(&hard_state(1, 1, 100)))
            .await
            .unwrap();
        assert!(stats.bytes_written >= 200_000);
        assert!(log.wal().stats().groups_committed >= 4);
        let err = log
            .persist(&entries(101..=101, 1, 100_000), None)
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Invalid(_)), "{err}");
        drop(log);
        let (log, _) = ShardLog::open(dir.path(), conf(&[1]), small_config(dir.path()))
            .await
            .unwrap();
        assert_entries_eq(&entries_of(&log, 1, 100), &batch);
        assert_eq!(log.hard_state(), hard_state(1, 1, 100));
    });
}

/// The engine's loop in miniature: a single-voter RawNode persists through ShardLog, restarts, and
/// carries on with its term, vote, commit index and log intact.
#[test]
fn raw_node_on_shard_log_survives_restart() {
    use raft::{Config, RawNode};
    use slog::o;

    let dir = tempfile::tempdir().unwrap();
    let logger = slog::Logger::root(slog::Discard, o!());
    let config = Config {
        id: 1,
        election_tick: 10,
        heartbeat_tick: 1,
        ..Config::default()
    };

    /// Drives the node until it has nothing more to do; returns the data of applied entries.
    async fn drive(
        node: &mut RawNode<raft::storage::MemStorage>,
        log: &mut ShardLog,
    ) -> Vec<Vec<u8>> {
        let mut applied = Vec::new();
        while node.has_ready() {
            let mut ready = node.ready();
            assert!(ready.snapshot().data.is_empty());
            let committed = ready.take_committed_entries();
            log.persist(ready.entries(), ready.hs()).await.unwrap();
            applied.extend(
                committed
                    .iter()
                    .filter(|e| !e.data.is_empty())
                    .map(|e| e.data.to_vec()),
            );
            let mut light = node.advance(ready);
            if let Some(commit) = light.commit_index() {
                let mut hard_state = log.hard_state();
                hard_state.commit = commit;
                log.persist(&[], Some(&hard_state)).await.unwrap();
            }
            applied.extend(
                light
                    .take_committed_entries()
                    .iter()
                    .filter(|e| !e.data.is_empty())
                    .map(|e| e.data.to_vec()),
            );
            node.advance_apply();
        }
        applied
    }

    run(async {
        let (mut log, _) = ShardLog::open(dir.path(), conf(&[1]), small_config(dir.path()))
            .await
            .unwrap();
        let mut node = RawNode::new(&config, log.storage(), &logger).unwrap();
        node.campaign().unwrap();
        let mut applied = drive(&mut node, &mut log).await;
        for i in 0..20u32 {
            node.propose(vec![], format!("command {i}").into_bytes())
                .unwrap();
        }
        applied.extend(drive(&mut node, &mut log).await);
        assert_eq!(applied.len(), 20);
        let term = node.raft.term;
        let last_index = log.last_index();
        assert_eq!(log.hard_state().commit, last_index);
        drop(node);
        drop(log);

        let (mut log, _) = ShardLog::open(dir.path(), conf(&[1]), small_config(dir.path()))
            .await
            .unwrap();
        assert_eq!(log.last_index(), last_index);
        let hard_state = log.hard_state();
        assert_eq!(
            (hard_state.term, hard_state.vote, hard_state.commit),
            (term, 1, last_index)
        );
        // applied = 0: raft hands every committed entry to the state machine again.
        let mut node = RawNode::new(&config, log.storage(), &logger).unwrap();
        let replayed = drive(&mut node, &mut log).await;
        assert_eq!(replayed, applied);
        node.campaign().unwrap();
        drive(&mut node, &mut log).await;
        assert!(node.raft.term > term);
        node.propose(vec![], b"after restart".to_vec()).unwrap();
        let more = drive(&mut node, &mut log).await;
        assert_eq!(more, vec![b"after restart".to_vec()]);
    });
}
