//! WAL: round trips, conflict overwrite, segment rolling, compaction, staging bounds, corruption.

mod common;

use aurigraph_storage::record::BLOCK_BYTES;
use aurigraph_storage::{StorageError, Wal, WalConfig};
use common::*;

#[test]
fn round_trip_entries_and_hard_states() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    run(async {
        let (mut wal, recovered) = Wal::open(small_config(&wal_dir)).await.unwrap();
        assert!(recovered.entries.is_empty());
        assert!(recovered.hard_state.is_none());
        assert_eq!(recovered.next_group, 0);
        assert!(recovered.torn_tail.is_none());

        let mut expected = Vec::new();
        for group in 0..5u64 {
            let batch = entries(
                group * 4 + 1..=group * 4 + 4,
                1 + group / 2,
                100 * group as usize,
            );
            wal.stage_entries(&batch).unwrap();
            wal.stage_hard_state(&hard_state(1 + group / 2, 1, group * 4))
                .unwrap();
            expected.extend(batch);
            let stats = wal.commit().await.unwrap();
            assert_eq!(stats.group, group as u32);
            assert_eq!(stats.bytes_written % BLOCK_BYTES as u64, 0);
            assert!(stats.records >= 5);
        }
        // A group of only a hard state.
        wal.stage_hard_state(&hard_state(3, 2, 20)).unwrap();
        wal.commit().await.unwrap();
        // Nothing staged: nothing written.
        let before = wal.stats();
        assert_eq!(wal.commit().await.unwrap().bytes_written, 0);
        assert_eq!(wal.stats(), before);
        drop(wal);

        let (wal, recovered) = Wal::open(small_config(&wal_dir)).await.unwrap();
        assert_entries_eq(&recovered.entries, &expected);
        assert_eq!(recovered.hard_state, Some(hard_state(3, 2, 20)));
        assert_eq!(recovered.next_group, 6);
        assert_eq!(wal.next_group(), 6);
        assert!(recovered.torn_tail.is_none());
        wal.close().await.unwrap();
    });
}

#[test]
fn conflict_overwrite_truncates_suffix() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (mut wal, _) = Wal::open(small_config(dir.path())).await.unwrap();
        wal.stage_entries(&entries(1..=4, 1, 10)).unwrap();
        wal.commit().await.unwrap();
        wal.stage_entries(&entries(5..=10, 1, 10)).unwrap();
        wal.commit().await.unwrap();
        wal.stage_entries(&entries(7..=8, 2, 20)).unwrap();
        wal.commit().await.unwrap();
        drop(wal);

        let (mut wal, recovered) = Wal::open(small_config(dir.path())).await.unwrap();
        let mut expected = entries(1..=6, 1, 10);
        expected.extend(entries(7..=8, 2, 20));
        assert_entries_eq(&recovered.entries, &expected);

        // Overwriting inside one group and across a restart behaves the same.
        wal.stage_entries(&entries(3..=3, 3, 5)).unwrap();
        wal.commit().await.unwrap();
        drop(wal);
        let (_, recovered) = Wal::open(small_config(dir.path())).await.unwrap();
        let mut expected = entries(1..=2, 1, 10);
        expected.extend(entries(3..=3, 3, 5));
        assert_entries_eq(&recovered.entries, &expected);
    });
}

#[test]
fn segments_roll_and_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    run(async {
        let (mut wal, _) = Wal::open(config.clone()).await.unwrap();
        let mut expected = Vec::new();
        let mut rolls = 0;
        for group in 0..40u64 {
            let batch = entries(group * 3 + 1..=group * 3 + 3, 1, 1500);
            wal.stage_entries(&batch).unwrap();
            expected.extend(batch);
            if wal.commit().await.unwrap().segment_rolled {
                rolls += 1;
            }
        }
        // One group far over segment_bytes_max: a segment of its own.
        let big = entries(121..=160, 1, 1500);
        wal.stage_entries(&big).unwrap();
        expected.extend(big);
        assert!(wal.commit().await.unwrap().segment_rolled);
        rolls += 1;
        assert_eq!(wal.segment_count(), rolls + 1);
        assert_eq!(wal.stats().segments_rolled, rolls as u64);
        // Same-size groups reuse their DMA buffer.
        assert!(wal.stats().dma_buffers_reused >= 38, "{:?}", wal.stats());

        let files = segment_files(dir.path());
        assert_eq!(files, wal.segment_paths());
        assert!(
            files.len() > 3,
            "expected several segments, got {}",
            files.len()
        );
        let (last, others) = files.split_last().unwrap();
        for file in others {
            assert!(
                file_len(file) <= config.segment_bytes_max,
                "{}",
                file.display()
            );
            assert_eq!(file_len(file) % BLOCK_BYTES as u64, 0);
        }
        assert!(file_len(last) > config.segment_bytes_max);
        let name = last.file_name().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 24);
        assert!(name.ends_with(".wal"));
        drop(wal);

        let (wal, recovered) = Wal::open(config.clone()).await.unwrap();
        assert_entries_eq(&recovered.entries, &expected);
        assert_eq!(recovered.segment_count, files.len());
        assert_eq!(recovered.next_group, 41);
        drop(wal);
    });
}

#[test]
fn compaction_deletes_whole_old_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    run(async {
        let (mut wal, _) = Wal::open(config.clone()).await.unwrap();
        // The only hard state goes into the first segment.
        wal.stage_entries(&entries(1..=3, 1, 2000)).unwrap();
        wal.stage_hard_state(&hard_state(1, 1, 2)).unwrap();
        wal.commit().await.unwrap();
        for group in 1..30u64 {
            wal.stage_entries(&entries(group * 3 + 1..=group * 3 + 3, 1, 2000))
                .unwrap();
            wal.commit().await.unwrap();
        }
        let segments_before = wal.segment_count();
        assert!(segments_before >= 5);

        // Nothing is at or below index 0.
        assert_eq!(wal.compact(0).await.unwrap(), 0);
        // Index 2 is in the first segment but entry 3 is too: nothing deletable.
        assert_eq!(wal.compact(2).await.unwrap(), 0);

        // Groups are 2 blocks (3 entries of ~2 KiB), 4 groups per 32 KiB segment: segment k
        // holds entries 12k+1..=12k+12. Segments 0..=2 are at or below 45, segment 3 is not.
        assert_eq!(wal.compact(45).await.unwrap(), 3);
        wal.settle().await.unwrap();
        assert_eq!(wal.segment_count(), segments_before - 3);
        assert_eq!(segment_files(dir.path()), wal.segment_paths());
        // The hard state lived in segment 0: it was written again before the deletion.
        assert_eq!(wal.next_group(), 31);

        // Everything: all but the active segment go, the hard state survives.
        wal.compact(u64::MAX).await.unwrap();
        wal.settle().await.unwrap();
        assert_eq!(segment_files(dir.path()).len(), 1);
        drop(wal);

        let (mut wal, recovered) = Wal::open(config.clone()).await.unwrap();
        assert_eq!(recovered.hard_state, Some(hard_state(1, 1, 2)));
        // The active segment held groups 28 and 29 (entries 85..=90) and the hard state copy.
        assert_entries_eq(&recovered.entries, &entries(85..=90, 1, 2000));
        // Groups keep counting across compaction and restart.
        assert_eq!(recovered.next_group, 31);
        wal.stage_entries(&entries(91..=91, 1, 1)).unwrap();
        wal.commit().await.unwrap();
        drop(wal);
        let (_, recovered) = Wal::open(config).await.unwrap();
        assert_eq!(recovered.entries.last().unwrap().index, 91);
    });
}

/// Commits `groups` groups of 3 entries of 2,000 bytes (indexes 1, 2, 3, then 4, 5, 6, ...):
/// 4 groups to a segment of `small_config`.
async fn commit_groups_of_three(wal: &mut Wal, groups: u64) {
    for group in 0..groups {
        wal.stage_entries(&entries(group * 3 + 1..=group * 3 + 3, 1, 2000))
            .unwrap();
        wal.commit().await.unwrap();
    }
}

#[test]
fn a_compaction_never_waits_for_the_last_ones_unlinks() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (mut wal, _) = Wal::open(small_config(dir.path())).await.unwrap();
        commit_groups_of_three(&mut wal, 30).await;
        // The executor's one blocking thread is busy (as with a paced snapshot write): the
        // first compaction's unlinks wait behind it.
        let (release, busy) = std::sync::mpsc::channel::<()>();
        let sleeper =
            glommio::spawn_local(aurigraph_storage::background::spawn_background(move || {
                let _ = busy.recv();
            }));
        glommio::yield_if_needed().await;
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        let before = wal.segment_count();
        assert_eq!(wal.compact(20).await.unwrap(), 1);
        // The second one returns at once, deleting nothing, though segments are due.
        assert_eq!(wal.compact(45).await.unwrap(), 0);
        release.send(()).unwrap();
        sleeper.await;
        wal.settle().await.unwrap();
        assert_eq!(wal.segment_count(), before - 1);
        // The next compaction deletes what the skipped one left.
        assert_eq!(wal.compact(45).await.unwrap(), 2);
        wal.settle().await.unwrap();
        assert_eq!(wal.segment_count(), before - 3);
        assert_eq!(segment_files(dir.path()), wal.segment_paths());
    });
}

#[test]
fn compaction_keeps_entries_above_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    run(async {
        let (mut wal, _) = Wal::open(config.clone()).await.unwrap();
        let mut all = Vec::new();
        for group in 0..30u64 {
            let batch = entries(group * 3 + 1..=group * 3 + 3, 1, 2000);
            wal.stage_entries(&batch).unwrap();
            all.extend(batch);
            wal.commit().await.unwrap();
        }
        for upto in [10u64, 40, 70] {
            wal.compact(upto).await.unwrap();
            wal.settle().await.unwrap();
            // Reopen a copy: entries above `upto` are all still there, in order.
            let copy = tempfile::tempdir().unwrap();
            copy_dir(dir.path(), copy.path());
            let (_, recovered) = Wal::open(small_config(copy.path())).await.unwrap();
            let first = recovered.entries.first().unwrap().index;
            assert!(
                first <= upto + 1,
                "compact({upto}) dropped entries above it"
            );
            assert_entries_eq(&recovered.entries, &all[first as usize - 1..]);
        }
    });
}

#[test]
fn staging_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let config = WalConfig {
            staged_bytes_max: 8192,
            ..small_config(dir.path())
        };
        let (mut wal, _) = Wal::open(config.clone()).await.unwrap();
        wal.stage_entries(&entries(1..=2, 1, 3000)).unwrap();
        let staged = wal.staged_bytes();
        let err = wal.stage_entries(&entries(3..=4, 1, 3000)).unwrap_err();
        assert!(matches!(err, StorageError::StagingFull { .. }), "{err}");
        assert_eq!(wal.staged_bytes(), staged, "a refused batch stages nothing");
        wal.commit().await.unwrap();
        wal.stage_entries(&entries(3..=4, 1, 3000)).unwrap();
        wal.commit().await.unwrap();
        // Never fits.
        let err = wal.stage_entries(&entries(5..=5, 1, 9000)).unwrap_err();
        assert!(matches!(err, StorageError::StagingFull { .. }), "{err}");
        drop(wal);
        let (_, recovered) = Wal::open(config).await.unwrap();
        assert_entries_eq(&recovered.entries, &entries(1..=4, 1, 3000));
    });
}

/// Writes `groups` groups of 3 entries each into one segment; returns each group's byte range.
async fn write_groups(wal: &mut Wal, groups: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let mut offset = 0;
    for group in 0..groups {
        wal.stage_entries(&entries(group * 3 + 1..=group * 3 + 3, 1, 700))
            .unwrap();
        let stats = wal.commit().await.unwrap();
        assert!(!stats.segment_rolled);
        ranges.push((offset, offset + stats.bytes_written));
        offset += stats.bytes_written;
    }
    ranges
}

#[test]
fn flipped_byte_in_early_group_is_corruption_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (mut wal, _) = Wal::open(small_config(dir.path())).await.unwrap();
        let ranges = write_groups(&mut wal, 4).await;
        drop(wal);
        let segment = segment_files(dir.path()).pop().unwrap();
        let pristine = std::fs::read(&segment).unwrap();

        // Group 1's first entry record, after its group head: records are 32 + align_up(8 + 700
        // + ctx, 32) bytes; find it by parsing the head's length.
        let group_start = ranges[1].0 as usize;
        let first_len =
            u32::from_le_bytes(pristine[group_start..group_start + 4].try_into().unwrap());
        let second_record = group_start + 32 + (first_len as usize).div_ceil(32) * 32;
        for (what, byte) in [
            ("header", second_record + 20),
            ("payload", second_record + 100),
        ] {
            let mut damaged = pristine.clone();
            damaged[byte] ^= 0x01;
            std::fs::write(&segment, &damaged).unwrap();
            let err = match Wal::open(small_config(dir.path())).await {
                Ok(_) => panic!("flip in {what} was not detected"),
                Err(err) => err,
            };
            let message = err.to_string();
            assert!(
                matches!(err, StorageError::Corrupt { offset, .. } if offset == second_record as u64),
                "{what}: {message}"
            );
            let name = segment.file_name().unwrap().to_str().unwrap();
            assert!(message.contains(name), "{message}");
            assert!(message.contains(&second_record.to_string()), "{message}");
        }

        // An early group zeroed out is not an end of log: later groups follow.
        let mut zeroed = pristine.clone();
        zeroed[ranges[1].0 as usize..ranges[1].1 as usize].fill(0);
        std::fs::write(&segment, &zeroed).unwrap();
        let err = Wal::open(small_config(dir.path())).await.err().unwrap();
        assert!(
            matches!(err, StorageError::Corrupt { offset, .. } if offset == ranges[1].0),
            "{err}"
        );

        // The file was left alone: restoring it makes the log whole again.
        std::fs::write(&segment, &pristine).unwrap();
        let (_, recovered) = Wal::open(small_config(dir.path())).await.unwrap();
        assert_eq!(recovered.entries.len(), 12);
    });
}

#[test]
fn damage_in_a_sealed_segment_is_corruption_even_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (mut wal, _) = Wal::open(small_config(dir.path())).await.unwrap();
        commit_groups_of_three(&mut wal, 30).await;
        drop(wal);
        let files = segment_files(dir.path());
        assert!(files.len() >= 3);
        let sealed = &files[1];
        let length = file_len(sealed);
        // Cutting the last block of a non-last segment looks like a torn tail, but is not one.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(sealed)
            .unwrap();
        file.set_len(length - 100).unwrap();
        let err = Wal::open(small_config(dir.path())).await.err().unwrap();
        let message = err.to_string();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{message}");
        assert!(
            message.contains(sealed.file_name().unwrap().to_str().unwrap()),
            "{message}"
        );

        // A missing middle segment is refused too.
        std::fs::remove_file(sealed).unwrap();
        let err = Wal::open(small_config(dir.path())).await.err().unwrap();
        assert!(err.to_string().contains("missing"), "{err}");
    });
}

#[test]
fn group_numbers_are_checked_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (mut wal, _) = Wal::open(small_config(dir.path())).await.unwrap();
        commit_groups_of_three(&mut wal, 30).await;
        drop(wal);
        // Swapping two sealed segments keeps every record valid but breaks the group sequence.
        let files = segment_files(dir.path());
        let (a, b) = (
            std::fs::read(&files[0]).unwrap(),
            std::fs::read(&files[1]).unwrap(),
        );
        std::fs::write(&files[0], &b).unwrap();
        std::fs::write(&files[1], &a).unwrap();
        let err = Wal::open(small_config(dir.path())).await.err().unwrap();
        assert!(err.to_string().contains("group"), "{err}");
    });
}

#[test]
fn compaction_after_a_torn_roll_keeps_hard_state_and_group_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    run(async {
        let (mut wal, _) = Wal::open(config.clone()).await.unwrap();
        // Four two-block groups per segment: group 8 starts segment 2, alone.
        for group in 0..9u64 {
            wal.stage_entries(&entries(group * 3 + 1..=group * 3 + 3, 1, 2000))
                .unwrap();
            wal.stage_hard_state(&hard_state(1, 1, group * 3)).unwrap();
            wal.commit().await.unwrap();
        }
        drop(wal);
        // A crash right after rolling to a new segment: its only group never made it.
        let last = segment_files(dir.path()).pop().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(0)
            .unwrap();

        let (mut wal, recovered) = Wal::open(config.clone()).await.unwrap();
        let next_group = recovered.next_group;
        assert_eq!(next_group, 8);
        // Every segment but the (empty) active one goes; first the hard state and the group
        // sequence are anchored in the active segment.
        assert!(wal.compact(u64::MAX).await.unwrap() >= 1);
        wal.settle().await.unwrap();
        assert_eq!(segment_files(dir.path()), vec![last.clone()]);
        assert!(file_len(&last) > 0);
        drop(wal);

        let (_, recovered) = Wal::open(config).await.unwrap();
        assert!(recovered.entries.is_empty());
        assert_eq!(recovered.hard_state, Some(hard_state(1, 1, 21)));
        assert_eq!(recovered.next_group, next_group.wrapping_add(1));
    });
}

#[test]
fn a_log_of_wal_format_1_is_refused_with_a_message() {
    // Format 1 had no group heads: its first record is an Entry, HardState or Pad.
    use aurigraph_storage::record::{Header, RecordKind, FLAG_GROUP_END};
    let dir = tempfile::tempdir().unwrap();
    let payload = vec![0u8; BLOCK_BYTES - 32];
    let mut header = Header {
        len: payload.len() as u32,
        crc: 0,
        kind: RecordKind::Pad,
        flags: FLAG_GROUP_END,
        group: 0,
        index: 0,
        term: 0,
    };
    // The record checksum covers header bytes 8..32, then the payload.
    header.crc = crc32c(&[&header.encode()[8..], &payload[..]].concat());
    let mut contents = header.encode().to_vec();
    contents.extend_from_slice(&payload);
    let segment = dir.path().join("00000000000000000000.wal");
    std::fs::write(&segment, &contents).unwrap();
    run(async {
        let err = Wal::open(small_config(dir.path())).await.err().unwrap();
        let message = err.to_string();
        assert!(
            matches!(err, StorageError::Corrupt { offset: 0, .. }),
            "{message}"
        );
        assert!(message.contains("format 1"), "{message}");
        assert!(message.contains("00000000000000000000.wal"), "{message}");
    });
}

#[test]
fn a_group_head_of_several_sectors_tells_torn_from_damaged() {
    // A group of about 60 KiB has more sectors than one head sector can check: its head takes
    // two sectors. A blank second head sector is torn; a flipped bit in it is damage.
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let config = WalConfig {
        segment_bytes_max: 1 << 20,
        ..small_config(&wal_dir)
    };
    let (start, end) = run(async {
        let (mut wal, _) = Wal::open(config.clone()).await.unwrap();
        wal.stage_entries(&entries(1..=2, 1, 100)).unwrap();
        let first = wal.commit().await.unwrap();
        wal.stage_entries(&entries(3..=22, 1, 3000)).unwrap();
        let second = wal.commit().await.unwrap();
        (
            first.bytes_written,
            first.bytes_written + second.bytes_written,
        )
    });
    let segment = segment_files(&wal_dir).pop().unwrap();
    assert_eq!(file_len(&segment), end);
    let pristine = std::fs::read(&segment).unwrap();
    let head_len = u32::from_le_bytes(
        pristine[start as usize..start as usize + 4]
            .try_into()
            .unwrap(),
    );
    assert_eq!(head_len as usize + 32, 1024, "a two-sector head");
    let second_head_sector = start as usize + 512;
    run(async {
        let mut torn = pristine.clone();
        torn[second_head_sector..second_head_sector + 512].fill(0);
        std::fs::write(&segment, &torn).unwrap();
        let (_, recovered) = Wal::open(config.clone()).await.unwrap();
        assert_entries_eq(&recovered.entries, &entries(1..=2, 1, 100));
        let tail = recovered.torn_tail.unwrap();
        assert_eq!(tail.offset, second_head_sector as u64);
        assert_eq!(tail.truncated_to, start);

        let mut damaged = pristine.clone();
        damaged[second_head_sector + 100] ^= 0x40;
        std::fs::write(&segment, &damaged).unwrap();
        let err = Wal::open(config.clone()).await.err().unwrap();
        assert!(
            matches!(err, StorageError::Corrupt { offset, .. } if offset == start),
            "{err}"
        );

        std::fs::write(&segment, &pristine).unwrap();
        let (_, recovered) = Wal::open(config.clone()).await.unwrap();
        assert_eq!(recovered.entries.len(), 22);
        assert!(recovered.torn_tail.is_none());
    });
}

fn crc32c(bytes: &[u8]) -> u32 {
    // CRC32C (Castagnoli), bitwise: the test does not lean on the crate's own checksum code.
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn the_next_group_stages_while_one_is_in_flight_and_only_committed_groups_survive() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (mut wal, _) = Wal::open(small_config(dir.path())).await.unwrap();
        wal.stage_entries(&entries(1..=4, 1, 100)).unwrap();
        assert!(wal.start_commit().await.unwrap());
        assert!(wal.is_committing());
        // The staging buffer is free for the next group while the first one is written.
        assert_eq!(wal.staged_bytes(), 0);
        wal.stage_entries(&entries(5..=8, 1, 100)).unwrap();
        wal.stage_hard_state(&hard_state(1, 1, 8)).unwrap();
        let first = wal.finish_commit().await.unwrap();
        assert!(!wal.is_committing());
        assert_eq!(first.group, 0);
        assert!(first.bytes_written > 0);
        // The second group: what staged while the first was written.
        let second = wal.commit().await.unwrap();
        assert_eq!(second.group, 1);
        // Staged, never committed: not durable.
        wal.stage_entries(&entries(9..=12, 1, 100)).unwrap();
        drop(wal);

        let (mut wal, recovered) = Wal::open(small_config(dir.path())).await.unwrap();
        assert_entries_eq(&recovered.entries, &entries(1..=8, 1, 100));
        assert_eq!(recovered.hard_state, Some(hard_state(1, 1, 8)));
        assert_eq!(recovered.next_group, 2);
        assert!(recovered.torn_tail.is_none());
        assert!(!wal.start_commit().await.unwrap(), "nothing staged");
        wal.close().await.unwrap();
    });
}

#[test]
fn a_group_in_flight_is_durable_once_the_wal_closes() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (mut wal, _) = Wal::open(small_config(dir.path())).await.unwrap();
        wal.stage_entries(&entries(1..=3, 1, 10)).unwrap();
        assert!(wal.start_commit().await.unwrap());
        wal.close().await.unwrap();
        let (_, recovered) = Wal::open(small_config(dir.path())).await.unwrap();
        assert_entries_eq(&recovered.entries, &entries(1..=3, 1, 10));
    });
}
