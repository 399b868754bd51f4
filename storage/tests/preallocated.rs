//! Preallocated segments: each new segment starts from a zero-filled spare at its full size, so
//! a segment's log ends in zeros rather than at the end of the file. Recovery must take that
//! zero tail as the end (in the last segment and in sealed ones), still tell a torn group from
//! it, and the log must go on writing into the zeros after a restart.

mod common;

use std::path::Path;

use aurigraph_storage::Wal;
use common::*;

const SEGMENT: u64 = 32 * 1024;

/// Where the written log of `file` ends: the start of its zero tail (a multiple of 4096).
fn data_end(file: &Path) -> u64 {
    let contents = std::fs::read(file).unwrap();
    let last = contents.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    last.next_multiple_of(4096) as u64
}

/// Commits `groups` groups of two 1,000-byte entries from index `first`, each after the spare
/// is made, so that every roll starts from one. Returns the entries; `end` follows the end
/// of the active segment's log (from each commit's own figures).
async fn commit_groups(
    wal: &mut Wal,
    first: u64,
    groups: u64,
    end: &mut u64,
) -> Vec<raft::eraftpb::Entry> {
    let mut written = Vec::new();
    for g in 0..groups {
        let batch = entries(first + 2 * g..=first + 2 * g + 1, 1, 1000);
        wal.wait_for_spare().await;
        wal.stage_entries(&batch).unwrap();
        wal.stage_hard_state(&hard_state(1, 1, first + 2 * g))
            .unwrap();
        let stats = wal.commit().await.unwrap();
        *end = if stats.segment_rolled { 0 } else { *end } + stats.bytes_written;
        written.extend(batch);
    }
    written
}

#[test]
fn segments_start_full_size_and_their_zero_tails_recover_as_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    run(async {
        let (mut wal, recovered) = Wal::open(preallocated_config(&wal_dir)).await.unwrap();
        assert!(recovered.entries.is_empty());
        // The first segment is the first spare: full size before anything is written.
        let first = segment_files(&wal_dir).pop().unwrap();
        assert_eq!(file_len(&first), SEGMENT);
        assert_eq!(wal.stats().segments_preallocated, 1);

        let mut end = 0;
        let expected = commit_groups(&mut wal, 1, 30, &mut end).await;
        let stats = wal.stats();
        assert!(stats.segments_rolled >= 3, "{stats:?}");
        assert_eq!(
            stats.segments_preallocated,
            stats.segments_rolled + 1,
            "every segment came from a spare: {stats:?}"
        );
        for segment in segment_files(&wal_dir) {
            assert_eq!(file_len(&segment), SEGMENT, "{}", segment.display());
        }
        wal.close().await.unwrap();

        // Sealed segments and the active one all end in zeros: a clean end, nothing cut.
        let (mut wal, recovered) = Wal::open(preallocated_config(&wal_dir)).await.unwrap();
        assert_entries_eq(&recovered.entries, &expected);
        assert!(recovered.torn_tail.is_none());
        assert_eq!(recovered.next_group, 30);
        let active = segment_files(&wal_dir).pop().unwrap();
        assert!(end < SEGMENT, "the active segment has room left");
        assert!(data_end(&active) <= end);

        // The log goes on in the zeros of the active segment, at the end of its log.
        let end_before = end;
        let more = commit_groups(&mut wal, 61, 1, &mut end).await;
        assert_eq!(segment_files(&wal_dir).pop().unwrap(), active);
        assert!(end > end_before && data_end(&active) > end_before);
        assert_eq!(file_len(&active), SEGMENT);
        wal.close().await.unwrap();

        let (wal, recovered) = Wal::open(preallocated_config(&wal_dir)).await.unwrap();
        let mut all = expected.clone();
        all.extend(more);
        assert_entries_eq(&recovered.entries, &all);
        assert_eq!(recovered.next_group, 31);
        wal.close().await.unwrap();

        // Append mode reads the same log (and goes on growing the active segment).
        let (_, recovered) = Wal::open(small_config(&wal_dir)).await.unwrap();
        assert_entries_eq(&recovered.entries, &all);
    });
}

#[test]
fn a_torn_group_in_a_preallocated_segment_is_cut_and_a_blank_one_is_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let copy = dir.path().join("copy");
    run(async {
        let (mut wal, _) = Wal::open(preallocated_config(&wal_dir)).await.unwrap();
        let mut start = 0;
        let before = commit_groups(&mut wal, 1, 2, &mut start).await;
        let active = segment_files(&wal_dir).pop().unwrap();
        // The victim: two blocks (entries of 1,500 bytes and a hard state).
        wal.stage_entries(&entries(5..=7, 2, 1500)).unwrap();
        let victim = wal.commit().await.unwrap();
        assert!(!victim.segment_rolled);
        let end = start + victim.bytes_written;
        assert_eq!(victim.bytes_written, 8192);
        wal.close().await.unwrap();

        // Its head sector blank, the rest of it written: torn. Cut off (the file shrinks to the
        // end of the last complete group), the groups before kept, and the log goes on.
        copy_fresh(&wal_dir, &copy);
        let last = copy.join(active.file_name().unwrap());
        let mut contents = std::fs::read(&last).unwrap();
        contents[start as usize..start as usize + 512].fill(0);
        std::fs::write(&last, &contents).unwrap();
        let (mut wal, recovered) = Wal::open(preallocated_config(&copy)).await.unwrap();
        assert_entries_eq(&recovered.entries, &before);
        let torn = recovered.torn_tail.expect("a torn group");
        assert_eq!((torn.offset, torn.truncated_to), (start, start));
        assert_eq!(file_len(&last), start);
        let mut at = start;
        let after = commit_groups(&mut wal, 5, 1, &mut at).await;
        wal.close().await.unwrap();
        let (wal, recovered) = Wal::open(preallocated_config(&copy)).await.unwrap();
        wal.close().await.unwrap();
        let mut expected = before.clone();
        expected.extend(after);
        assert_entries_eq(&recovered.entries, &expected);

        // Every sector of it blank (a crash before any of it reached the disk): the end of the
        // log, nothing to cut, and the next group goes where it was.
        copy_fresh(&wal_dir, &copy);
        let mut contents = std::fs::read(&last).unwrap();
        contents[start as usize..end as usize].fill(0);
        std::fs::write(&last, &contents).unwrap();
        let (mut wal, recovered) = Wal::open(preallocated_config(&copy)).await.unwrap();
        assert_entries_eq(&recovered.entries, &before);
        assert!(recovered.torn_tail.is_none());
        assert_eq!(file_len(&last), SEGMENT);
        let mut at = start;
        commit_groups(&mut wal, 5, 1, &mut at).await;
        assert!(data_end(&last) > start && data_end(&last) <= at);
        wal.close().await.unwrap();

        // Garbage where the next group's head would be is not a clean end: refused, as in
        // append mode.
        copy_fresh(&wal_dir, &copy);
        let mut contents = std::fs::read(&last).unwrap();
        contents[end as usize + 7] = 0x5a;
        std::fs::write(&last, &contents).unwrap();
        assert!(Wal::open(preallocated_config(&copy)).await.is_err());
    });
}

#[test]
fn a_stale_spare_is_deleted_at_open_and_never_read_as_log() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    run(async {
        let (mut wal, _) = Wal::open(preallocated_config(&wal_dir)).await.unwrap();
        let expected = commit_groups(&mut wal, 1, 3, &mut 0).await;
        wal.close().await.unwrap();
        let spare = wal_dir.join("next-segment.spare");
        assert!(spare.exists(), "a spare is made ahead");
        std::fs::write(&spare, b"half made, then a crash").unwrap();

        let (wal, recovered) = Wal::open(preallocated_config(&wal_dir)).await.unwrap();
        assert_entries_eq(&recovered.entries, &expected);
        wal.close().await.unwrap();
        assert_eq!(file_len(&spare), SEGMENT, "replaced by a fresh spare");
        assert!(std::fs::read(&spare).unwrap().iter().all(|b| *b == 0));

        // Append mode leaves no spare behind.
        let (wal, _) = Wal::open(small_config(&wal_dir)).await.unwrap();
        wal.close().await.unwrap();
        assert!(!spare.exists());
    });
}

fn copy_fresh(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    copy_dir(from, to);
}

#[test]
fn a_dropped_log_leaves_no_spare_being_written() {
    // The spare of a log that is dropped (not closed) stops and is deleted, or never starts:
    // right after the drop, the directory can be removed and nothing appears in it.
    let dir = tempfile::tempdir().unwrap();
    run(async {
        for round in 0..10 {
            let wal_dir = dir.path().join(format!("wal-{round}"));
            let config = aurigraph_storage::WalConfig {
                segment_bytes_max: 16 << 20,
                ..preallocated_config(&wal_dir)
            };
            let (wal, _) = Wal::open(config).await.unwrap();
            drop(wal);
            assert!(
                !wal_dir.join("next-segment.spare").exists(),
                "round {round}"
            );
            std::fs::remove_dir_all(&wal_dir).unwrap();
            glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            assert!(!wal_dir.exists(), "round {round}: written after the drop");
        }
    });
}
