//! Crash simulation: the last group commit is cut at every byte, blanked from a sector on, or
//! loses a sector; recovery must keep exactly the groups before it, repair the file, and go on
//! appending. Damage a crash cannot leave (a flipped bit, garbage, a sector cut inside) in the
//! last group or a sealed segment is refused with the file and byte offset.

mod common;

use std::path::{Path, PathBuf};

use aurigraph_storage::{StorageError, Wal};
use common::*;
use proptest::prelude::*;
use raft::eraftpb::{Entry, HardState};

/// A log whose last group commit is the one the tests damage.
struct Fixture {
    _root: tempfile::TempDir,
    dir: PathBuf,
    /// Entries and hard state of every group before the last one.
    entries_before: Vec<Entry>,
    hard_state_before: HardState,
    last_segment: PathBuf,
    /// Byte range of the last group within `last_segment`.
    last_group: (u64, u64),
    /// Group number of the last group.
    last_group_number: u32,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("wal");
    let (entries_before, hard_state_before, last_group, last_group_number) = run(async {
        let (mut wal, _) = Wal::open(small_config(&dir)).await.unwrap();
        let mut log = Vec::new();
        let mut last_hard_state = HardState::default();
        // Earlier groups: enough to fill a first segment and start a second.
        for group in 0..10u64 {
            let batch = entries(group * 2 + 1..=group * 2 + 2, 1 + group / 3, 1200);
            last_hard_state = hard_state(1 + group / 3, 1, group * 2);
            wal.stage_entries(&batch).unwrap();
            wal.stage_hard_state(&last_hard_state).unwrap();
            wal.commit().await.unwrap();
            log.extend(batch);
        }
        assert!(wal.segment_count() >= 2);
        let last_segment = wal.segment_paths().pop().unwrap();
        let start = file_len(&last_segment);
        // The victim: overwrites index 20 and appends, with a new hard state; two blocks long.
        let batch = entries(20..=22, 5, 1500);
        wal.stage_entries(&batch).unwrap();
        wal.stage_hard_state(&hard_state(5, 2, 19)).unwrap();
        let stats = wal.commit().await.unwrap();
        assert!(!stats.segment_rolled);
        assert_eq!(stats.bytes_written, 8192);
        (
            log,
            last_hard_state,
            (start, start + stats.bytes_written),
            stats.group,
        )
    });
    let last_segment = segment_files(&dir).pop().unwrap();
    assert_eq!(file_len(&last_segment), last_group.1);
    Fixture {
        _root: root,
        dir,
        entries_before,
        hard_state_before,
        last_segment,
        last_group,
        last_group_number,
    }
}

impl Fixture {
    /// A fresh copy of the log directory, and the path of its last segment.
    fn copy(&self, scratch: &Path) -> (PathBuf, PathBuf) {
        let copy = scratch.join("copy");
        if copy.exists() {
            std::fs::remove_dir_all(&copy).unwrap();
        }
        copy_dir(&self.dir, &copy);
        let last = copy.join(self.last_segment.file_name().unwrap());
        (copy, last)
    }

    /// Recovery of an undamaged log gives every group, the last one included.
    async fn check_recovers_whole(&self, dir: &Path) {
        let (_, recovered) = Wal::open(small_config(dir)).await.unwrap();
        let mut expected = self.entries_before.clone();
        model_append(&mut expected, &entries(20..=22, 5, 1500));
        assert_entries_eq(&recovered.entries, &expected);
        assert_eq!(recovered.hard_state, Some(hard_state(5, 2, 19)));
        assert!(recovered.torn_tail.is_none());
    }

    /// Recovery must give exactly the groups before the last one, report the torn tail, and
    /// leave a clean log that takes a new group and recovers again.
    async fn check_recovers_without_last_group(&self, dir: &Path, append: bool, what: &str) {
        let (mut wal, recovered) = match Wal::open(small_config(dir)).await {
            Ok(opened) => opened,
            Err(err) => panic!("{what}: recovery failed: {err}"),
        };
        assert_entries_eq(&recovered.entries, &self.entries_before);
        assert_eq!(
            recovered.hard_state.as_ref(),
            Some(&self.hard_state_before),
            "{what}"
        );
        assert_eq!(recovered.next_group, self.last_group_number, "{what}");
        // Cut off, or (when nothing of the group survived: zeros from its start to the end of
        // the file) left as zeros, which recovery reads as the end of the log.
        let last = segment_files(dir).pop().unwrap();
        let contents = std::fs::read(&last).unwrap();
        assert!(
            contents.len() as u64 >= self.last_group.0
                && contents[self.last_group.0 as usize..]
                    .iter()
                    .all(|b| *b == 0),
            "{what}: torn tail not cut off"
        );
        if let Some(torn) = &recovered.torn_tail {
            assert_eq!(
                contents.len() as u64,
                torn.truncated_to,
                "{what}: reported, not cut"
            );
            assert_eq!(torn.truncated_to, self.last_group.0, "{what}");
        }
        if !append {
            return;
        }
        let batch = entries(21..=21, 6, 300);
        wal.stage_entries(&batch).unwrap();
        let stats = wal.commit().await.unwrap();
        assert_eq!(stats.group, self.last_group_number, "{what}");
        drop(wal);

        let (_, again) = Wal::open(small_config(dir)).await.unwrap();
        assert!(
            again.torn_tail.is_none(),
            "{what}: second recovery found garbage"
        );
        let mut expected = self.entries_before.clone();
        model_append(&mut expected, &batch);
        assert_entries_eq(&again.entries, &expected);
        assert_eq!(
            again.next_group,
            self.last_group_number.wrapping_add(1),
            "{what}"
        );
    }
}

/// Cuts the last segment at every byte offset of `range` (relative to the last group's start).
fn torn_at_every_byte(range: std::ops::Range<u64>) {
    let fixture = fixture();
    let scratch = scratch_dir();
    let (start, end) = fixture.last_group;
    assert!(start + range.end <= end);
    run(async {
        for cut in start + range.start..start + range.end {
            let (copy, last) = fixture.copy(scratch.path());
            std::fs::OpenOptions::new()
                .write(true)
                .open(&last)
                .unwrap()
                .set_len(cut)
                .unwrap();
            // Appending after recovery costs an fdatasync: do it at every 32-byte boundary and
            // at the bytes just around them, recovery alone at every byte.
            let append = cut % 32 <= 1 || cut % 32 == 31;
            fixture
                .check_recovers_without_last_group(&copy, append, &format!("cut at {cut}"))
                .await;
        }
        // Uncut: the last group is there.
        let (copy, _) = fixture.copy(scratch.path());
        fixture.check_recovers_whole(&copy).await;
    });
}

// The last group is two blocks long; one test per block so that both test threads share the
// work.
#[test]
fn torn_at_every_byte_of_the_last_group_first_block() {
    torn_at_every_byte(0..4096);
}

#[test]
fn torn_at_every_byte_of_the_last_group_second_block() {
    torn_at_every_byte(4096..8192);
}

const SECTOR: usize = 512;

/// Deterministic garbage (xorshift), never a valid record.
fn garbage(bytes: &mut [u8], seed: u64) {
    let mut state = seed | 1;
    for byte in bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
}

#[test]
fn last_group_blanked_from_a_sector_on_is_torn() {
    // A torn write leaves each sector as written or as it was: blank, past the end of the log.
    let fixture = fixture();
    let scratch = scratch_dir();
    let (start, end) = fixture.last_group;
    run(async {
        for offset in (start..end).step_by(SECTOR) {
            let (copy, last) = fixture.copy(scratch.path());
            let mut contents = std::fs::read(&last).unwrap();
            let original = contents.clone();
            contents[offset as usize..].fill(0);
            if contents == original {
                // Zeros over the Pad record's (zero) payload change nothing: the group is
                // intact, and recovering it is right.
                fixture.check_recovers_whole(&copy).await;
                continue;
            }
            std::fs::write(&last, &contents).unwrap();
            fixture
                .check_recovers_without_last_group(
                    &copy,
                    offset % 4096 == 0,
                    &format!("zeros from {offset}"),
                )
                .await;
        }
    });
}

#[test]
fn last_group_overwritten_with_garbage_or_zeros_within_a_sector_is_refused() {
    // Bytes a torn write cannot leave: garbage (neither what was written nor blank), or a
    // sector cut inside (a device writes a sector whole or not at all; a torn sector reads as an
    // I/O error, not as a mix). Refused, naming the file and an offset at or before the damage.
    let fixture = fixture();
    let scratch = scratch_dir();
    let (start, end) = fixture.last_group;
    run(async {
        let mut cases: Vec<(u64, &str)> = (start..end)
            .step_by(96)
            .map(|offset| (offset, "garbage"))
            .collect();
        cases.extend(
            [start + 1, start + 77, start + 4097, start + 5000, end - 1]
                .into_iter()
                .map(|offset| (offset, "zeros")),
        );
        for (offset, fill) in cases {
            let (copy, last) = fixture.copy(scratch.path());
            let mut contents = std::fs::read(&last).unwrap();
            let sector_end = (offset as usize).next_multiple_of(SECTOR);
            if fill == "zeros"
                && contents[offset as usize..sector_end]
                    .iter()
                    .all(|b| *b == 0)
            {
                continue; // the same as zeros from the next sector on: a torn write
            }
            match fill {
                "zeros" => contents[offset as usize..].fill(0),
                _ => garbage(&mut contents[offset as usize..], offset),
            }
            std::fs::write(&last, &contents).unwrap();
            let err = match Wal::open(small_config(&copy)).await {
                Ok((_, recovered)) => panic!(
                    "{fill} from {offset}: not refused; torn tail {:?}",
                    recovered.torn_tail
                ),
                Err(err) => err,
            };
            let message = err.to_string();
            assert!(
                matches!(&err, StorageError::Corrupt { path, offset: at, .. }
                    if *path == last && *at <= offset && *at >= start),
                "{fill} from {offset}: {message}"
            );
        }
    });
}

#[test]
fn last_group_loses_one_sector() {
    // Devices may persist the sectors of one write in any order: the group's last sector (with
    // the group-end flag) can survive while an earlier one is lost. Still a torn tail.
    let fixture = fixture();
    let scratch = scratch_dir();
    let (start, end) = fixture.last_group;
    run(async {
        for sector_start in (start..end - 512).step_by(512) {
            let (copy, last) = fixture.copy(scratch.path());
            let mut contents = std::fs::read(&last).unwrap();
            let original = contents.clone();
            contents[sector_start as usize..sector_start as usize + 512].fill(0);
            if contents == original {
                // A sector of the Pad record's zero payload: nothing lost.
                fixture.check_recovers_whole(&copy).await;
                continue;
            }
            std::fs::write(&last, &contents).unwrap();
            fixture
                .check_recovers_without_last_group(&copy, true, &format!("sector {sector_start}"))
                .await;
        }
    });
}

/// Flips one bit at each of `positions` of a copy of `file` (of the fixture's log) and checks
/// that recovery refuses to start with `Corrupt` naming that file and an offset at or before the
/// flipped byte, less than a block before it.
fn flipped_bit_is_refused(fixture: &Fixture, file_name: &std::ffi::OsStr, positions: &[u64]) {
    let scratch = scratch_dir();
    run(async {
        for &position in positions {
            let (copy, _) = fixture.copy(scratch.path());
            let file = copy.join(file_name);
            let mut contents = std::fs::read(&file).unwrap();
            contents[position as usize] ^= 0x08;
            std::fs::write(&file, &contents).unwrap();
            let err = match Wal::open(small_config(&copy)).await {
                Ok((_, recovered)) => panic!(
                    "a flipped bit at byte {position} of {} was not refused; torn tail: {:?}",
                    file.display(),
                    recovered.torn_tail
                ),
                Err(err) => err,
            };
            let message = err.to_string();
            let StorageError::Corrupt { path, offset, .. } = err else {
                panic!("flip at {position}: not Corrupt: {message}");
            };
            assert_eq!(path, file, "{message}");
            assert!(
                offset <= position && position - offset < 4096,
                "flip at {position}, reported at {offset}: {message}"
            );
            assert!(
                message.contains(&format!("byte offset {offset}")),
                "{message}"
            );
        }
    });
}

#[test]
fn a_complete_last_group_with_one_flipped_bit_is_refused_with_file_and_offset() {
    // Every byte of the last group was written and fdatasynced (acknowledged); one flipped bit
    // later is damage, not a torn write, and dropping the group would lose what it recorded.
    let fixture = fixture();
    let (start, end) = fixture.last_group;
    let mut positions: Vec<u64> = (start..end).step_by(61).collect();
    positions.extend([start, start + 511, start + 512, end - 1]);
    flipped_bit_is_refused(
        &fixture,
        fixture.last_segment.file_name().unwrap(),
        &positions,
    );
}

#[test]
fn a_flipped_bit_in_a_sealed_segment_is_refused_with_file_and_offset() {
    let fixture = fixture();
    let sealed = segment_files(&fixture.dir)[0].clone();
    let length = file_len(&sealed);
    let mut positions: Vec<u64> = (0..length).step_by(509).collect();
    positions.push(length - 1);
    flipped_bit_is_refused(&fixture, sealed.file_name().unwrap(), &positions);
}

#[test]
fn torn_fresh_segment_and_empty_log() {
    let scratch = scratch_dir();
    run(async {
        // A segment that exists but holds nothing (crash right after a roll, or a new log).
        let dir = scratch.path().join("wal");
        drop(Wal::open(small_config(&dir)).await.unwrap());
        let (mut wal, recovered) = Wal::open(small_config(&dir)).await.unwrap();
        assert!(recovered.entries.is_empty() && recovered.torn_tail.is_none());
        wal.stage_entries(&entries(1..=1, 1, 10)).unwrap();
        wal.commit().await.unwrap();
        drop(wal);

        // Only blank blocks in the only segment (a first write of which nothing reached the
        // disk, or a preallocated segment): the end of the log, nothing acknowledged lost, and
        // nothing to cut.
        let segment = segment_files(&dir).pop().unwrap();
        std::fs::write(&segment, vec![0u8; 8192]).unwrap();
        let (_, recovered) = Wal::open(small_config(&dir)).await.unwrap();
        assert!(recovered.entries.is_empty());
        assert!(recovered.torn_tail.is_none());
        assert_eq!(file_len(&segment), 8192);

        // Only garbage: no torn write leaves that (the log is written past its end only, where
        // the file reads as zeros), so it is refused, not discarded.
        let mut contents = vec![0u8; 4096];
        garbage(&mut contents, 99);
        std::fs::write(&segment, &contents).unwrap();
        let err = Wal::open(small_config(&dir)).await.err().unwrap();
        assert!(
            matches!(err, StorageError::Corrupt { offset: 0, .. }),
            "{err}"
        );
        assert_eq!(file_len(&segment), 4096, "a refused log is left as it is");
    });
}

#[test]
fn bad_record_followed_by_a_later_group_is_corruption() {
    // The other side of the rule: a bad record in the last segment with a complete later group
    // after it. Damage group N-1's first record while group N is intact.
    let fixture = fixture();
    let scratch = scratch_dir();
    run(async {
        let (copy, last) = fixture.copy(scratch.path());
        let mut contents = std::fs::read(&last).unwrap();
        // The group before the last is one block long (two 1.2 KiB entries and a hard state).
        let previous_start = fixture.last_group.0 as usize - 4096;
        contents[previous_start + 40] ^= 0xFF;
        std::fs::write(&last, &contents).unwrap();
        let err = Wal::open(small_config(&copy)).await.err().unwrap();
        assert!(
            matches!(err, StorageError::Corrupt { offset, .. } if offset == previous_start as u64),
            "{err}"
        );
        assert!(err
            .to_string()
            .contains(last.file_name().unwrap().to_str().unwrap()));
    });
}

/// One generated group commit: where its entries start (relative to the log's end, to produce
/// conflict overwrites), how many, how big, and whether it carries a hard state.
#[derive(Clone, Debug)]
struct GroupSpec {
    back: u64,
    count: u64,
    data_bytes: usize,
    hard_state: bool,
}

fn group_spec() -> impl Strategy<Value = GroupSpec> {
    (0u64..4, 0u64..6, 0usize..3000, any::<bool>()).prop_map(|(back, count, data_bytes, hs)| {
        GroupSpec {
            back,
            count,
            data_bytes,
            // A group needs something in it.
            hard_state: hs || count == 0,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random groups, a random cut of the last segment: recovery gives exactly the log of the
    /// groups that lie wholly before the cut (the acknowledged ones), never more or garbage.
    #[test]
    fn random_groups_random_cut(specs in prop::collection::vec(group_spec(), 1..14), cut_fraction in 0.0f64..=1.0) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("wal");
        run(async {
            let (mut wal, _) = Wal::open(small_config(&dir)).await.unwrap();
            // After each group: the model log, the model hard state, its segment, its end.
            let mut model: Vec<Entry> = Vec::new();
            let mut model_hard_state: Option<HardState> = None;
            let mut snapshots = Vec::new();
            for (number, spec) in specs.iter().enumerate() {
                let last_index = model.last().map_or(0, |e| e.index);
                let first = (last_index + 1).saturating_sub(spec.back).max(1);
                let batch: Vec<Entry> = (first..first + spec.count)
                    .map(|index| entry_salted(index, 1 + number as u64, spec.data_bytes, number as u8))
                    .collect();
                wal.stage_entries(&batch).unwrap();
                if spec.hard_state {
                    let hs = hard_state(number as u64, 1, last_index);
                    wal.stage_hard_state(&hs).unwrap();
                    model_hard_state = Some(hs);
                }
                wal.commit().await.unwrap();
                model_append(&mut model, &batch);
                let segment = wal.segment_paths().pop().unwrap();
                let end = file_len(&segment);
                snapshots.push((model.clone(), model_hard_state.clone(), segment, end));
            }
            drop(wal);

            let last_segment = segment_files(&dir).pop().unwrap();
            let length = file_len(&last_segment);
            let cut = (length as f64 * cut_fraction) as u64;
            std::fs::OpenOptions::new().write(true).open(&last_segment).unwrap().set_len(cut).unwrap();

            let survivor = snapshots
                .iter()
                .rev()
                .find(|(_, _, segment, end)| *segment != last_segment || *end <= cut);
            let (expected, expected_hard_state) = match survivor {
                Some((log, hs, _, _)) => (log.clone(), hs.clone()),
                None => (Vec::new(), None),
            };
            let (mut wal, recovered) = Wal::open(small_config(&dir)).await.unwrap();
            assert_entries_eq(&recovered.entries, &expected);
            assert_eq!(recovered.hard_state, expected_hard_state);

            // And the repaired log takes more.
            let next = expected.last().map_or(1, |e| e.index + 1);
            let batch = entries(next..=next, 99, 10);
            wal.stage_entries(&batch).unwrap();
            wal.commit().await.unwrap();
            drop(wal);
            let (_, again) = Wal::open(small_config(&dir)).await.unwrap();
            prop_assert!(again.torn_tail.is_none());
            let mut expected = expected;
            model_append(&mut expected, &batch);
            assert_entries_eq(&again.entries, &expected);
            Ok(())
        })?;
    }
}
