//! Start-up recovery: read every segment (with std::fs; this runs once), replay complete group
//! commits, and tell a torn tail (a crash during an unacknowledged group: repaired) from
//! corruption (refused).
//!
//! What a crash can leave. The WAL writes each group once, with O_DIRECT, past the end of the
//! log (a new segment, or after the last complete group, where a repair truncated the file), so
//! the bytes it writes over read as zeros. A crash during that write leaves each sector (512
//! bytes; a device writes a sector whole or not at all, and a torn sector reads as an I/O error,
//! not as a mix) either as written or blank, in any combination (devices persist the sectors of
//! one write in any order), and the file may end anywhere inside the group. Nothing else. Each
//! group begins with a head (see `record.rs`) whose first 48 bytes carry the group's length and
//! their own check, and whose table holds the CRC32C of every later sector of the group.
//!
//! Segments may be **preallocated**: created at their full size and filled with zeros before
//! the log writes into them (`Wal`'s spare segment), so that a group commit overwrites blocks
//! that exist instead of growing the file. What follows the log's end then reads as zeros too,
//! only not to the end of the file. So, before each group: if every byte from there to the end
//! of the file is zero, the segment's log **ends** there, cleanly (nothing is cut off, and the
//! WAL's next group goes there). A group whose every sector a crash left blank is the same
//! thing: it was never acknowledged, and nothing of it survives. In a segment that is not the
//! last, a zero tail is where the log rolled to the next segment; had it lost groups, the next
//! segment's first group number would not follow (checked below).
//!
//! The rule, per group, from the start of each segment:
//! - everything from the group's start to the end of the file is zero: the **end** of the log
//!   in this segment;
//! - the head's first sector is blank, or the file ends inside the group: the group is **torn**;
//! - the head's check fails and its first sector is not blank: **corruption**;
//! - the head's table fails its checksum: torn if one of the head's sectors is blank, else
//!   corruption;
//! - a sector fails the CRC its head recorded: torn if it is blank, **corruption** if not (a
//!   flipped bit, garbage); any non-blank bad sector makes the group corrupt;
//! - every sector matches: the group is complete, and its records must all be valid.
//!
//! A torn group is accepted only as the last group of the last segment, and only when no valid
//! record of a later group follows it anywhere in the file (a later group is written only after
//! this one was acknowledged). The file is then truncated to the end of the last complete group
//! and fsynced; that group was never acknowledged, because `commit` returns only after its
//! fdatasync. Everything else is `StorageError::Corrupt` naming the file and the byte offset
//! (the first record that fails, else the damaged sector or the group head).
//!
//! Limits, precisely. A damaged sector that reads as all zeros (a device that returns zeros for
//! a sector it lost, or a flip of the only set bit of a sector) is taken for a torn write when
//! it is in the last group. Garbage where the log has not been written yet (a file system that
//! exposes stale blocks after a crash, a device that ignores flushes) is refused as corruption
//! rather than discarded: the operator decides. The head's own table is one checksum over the
//! head, so damage inside a multi-sector head that also has a blank sector counts as torn.

use std::path::{Path, PathBuf};

use raft::eraftpb::{Entry, HardState};

use crate::error::StorageError;
use crate::record::{self, HeadError, RecordKind, BLOCK_BYTES, RECORD_ALIGN_BYTES, SECTOR_BYTES};
use crate::wal::segment::{self, SegmentInfo};

/// What recovery found past the end of the last complete group of the last segment, and cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    /// Where the first invalid byte run began (the file length when the file ended inside a
    /// group).
    pub offset: u64,
    /// The file length after the repair: the end of the last complete group.
    pub truncated_to: u64,
    pub bytes_discarded: u64,
    pub reason: String,
}

pub(crate) struct RecoveryOutcome {
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    /// Segment that holds `hard_state`.
    pub hard_state_seq: Option<u64>,
    /// Group of the last complete group commit, if any.
    pub last_group: Option<u32>,
    pub segments: Vec<SegmentInfo>,
    pub torn_tail: Option<TornTail>,
}

/// The log as the replayed records describe it.
#[derive(Default)]
struct Replay {
    /// Contiguous by index.
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
    hard_state_seq: Option<u64>,
}

impl Replay {
    fn apply_entry(&mut self, entry: Entry) {
        match self.entries.last() {
            Some(last) if last.index.checked_add(1) == Some(entry.index) => {}
            Some(last) if entry.index <= last.index => {
                // Raft conflict overwrite: the new entry replaces the suffix from its index on.
                let first_index = self.entries[0].index;
                let keep = entry.index.saturating_sub(first_index) as usize;
                self.entries.truncate(keep);
            }
            Some(_) => {
                // A gap: the caller installed a snapshot past the end of the log and went on
                // from there. Everything before is superseded by that snapshot.
                self.entries.clear();
            }
            None => {}
        }
        self.entries.push(entry);
        debug_assert!(self
            .entries
            .windows(2)
            .all(|pair| pair[0].index.checked_add(1) == Some(pair[1].index)));
    }
}

enum Pending {
    Entry(Entry),
    HardState(HardState),
}

struct SegmentScan {
    /// End of the last complete group (a multiple of `BLOCK_BYTES`).
    complete_end: usize,
    last_group: Option<u32>,
    entry_index_max: Option<u64>,
    torn_tail: Option<TornTail>,
}

pub(crate) fn recover(dir: &Path) -> Result<RecoveryOutcome, StorageError> {
    let listed = segment::list_segments(dir)?;
    let mut replay = Replay::default();
    let mut segments = Vec::with_capacity(listed.len());
    let mut last_group: Option<u32> = None;
    let mut torn_tail = None;

    for (position, (seq, path)) in listed.iter().enumerate() {
        let is_last = position + 1 == listed.len();
        // One segment in memory at a time (bounded by segment_bytes_max plus one group).
        let contents = std::fs::read(path).map_err(|e| StorageError::io("reading", path, e))?;
        let expect_group = last_group.map(|group| group.wrapping_add(1));
        let scan = scan_segment(path, *seq, &contents, expect_group, is_last, &mut replay)?;

        match scan.last_group {
            Some(group) => last_group = Some(group),
            None if !is_last => {
                return Err(StorageError::corrupt(
                    path,
                    0,
                    "segment holds no complete group commit but is not the last segment",
                ));
            }
            None => {}
        }
        if let Some(torn) = scan.torn_tail {
            assert!(is_last);
            tracing::warn!(
                file = %torn.path.display(),
                offset = torn.offset,
                truncated_to = torn.truncated_to,
                reason = %torn.reason,
                "WAL: discarding torn tail of an unacknowledged group commit"
            );
            truncate_file(path, torn.truncated_to)?;
            torn_tail = Some(torn);
        }
        segments.push(SegmentInfo {
            seq: *seq,
            path: path.clone(),
            bytes: scan.complete_end as u64,
            entry_index_max: scan.entry_index_max,
        });
    }

    Ok(RecoveryOutcome {
        entries: replay.entries,
        hard_state: replay.hard_state,
        hard_state_seq: replay.hard_state_seq,
        last_group,
        segments,
        torn_tail,
    })
}

fn scan_segment(
    path: &Path,
    seq: u64,
    contents: &[u8],
    expect_group: Option<u32>,
    is_last: bool,
    replay: &mut Replay,
) -> Result<SegmentScan, StorageError> {
    // The start of the next group: the end of the last complete one.
    let mut complete_end = 0usize;
    let mut last_group = None;
    let mut entry_index_max: Option<u64> = None;

    let torn: Option<Torn> = loop {
        // The end of the log in this segment: the file's end, or zeros up to it (preallocated,
        // or a group of which a crash left nothing). `is_blank` stops at the first non-zero
        // byte, which is the next group's head when there is one: cheap at every group.
        if is_blank(&contents[complete_end..]) {
            break None;
        }
        let expected = last_group.map_or(expect_group, |group: u32| Some(group.wrapping_add(1)));
        match check_group(path, contents, complete_end, expected)? {
            GroupCheck::Torn(torn) => break Some(torn),
            GroupCheck::Complete {
                group,
                end,
                pending,
            } => {
                for item in pending {
                    match item {
                        Pending::Entry(entry) => {
                            entry_index_max = Some(
                                entry_index_max.map_or(entry.index, |max| max.max(entry.index)),
                            );
                            replay.apply_entry(entry);
                        }
                        Pending::HardState(hard_state) => {
                            replay.hard_state = Some(hard_state);
                            replay.hard_state_seq = Some(seq);
                        }
                    }
                }
                complete_end = end;
                last_group = Some(group);
            }
        }
    };

    let torn_tail = match torn {
        None => None,
        Some(torn) => {
            if !is_last {
                return Err(StorageError::corrupt(
                    path,
                    torn.offset as u64,
                    format!(
                        "{} in a segment that is not the last (only the last one can hold a \
                         write in flight)",
                        torn.reason
                    ),
                ));
            }
            let in_flight = last_group.map_or(expect_group, |group| Some(group.wrapping_add(1)));
            if let Some((proof_offset, proof_group)) =
                find_later_group(contents, complete_end, in_flight)
            {
                return Err(StorageError::corrupt(
                    path,
                    torn.offset as u64,
                    format!(
                        "{}, and a valid record of the later group {proof_group} follows at \
                         offset {proof_offset}, so this is not a torn write",
                        torn.reason
                    ),
                ));
            }
            Some(TornTail {
                path: path.to_path_buf(),
                offset: torn.offset as u64,
                truncated_to: complete_end as u64,
                bytes_discarded: (contents.len() - complete_end) as u64,
                reason: torn.reason,
            })
        }
    };
    if torn_tail.is_none() {
        assert!(is_blank(&contents[complete_end..]));
    }
    Ok(SegmentScan {
        complete_end,
        last_group,
        entry_index_max,
        torn_tail,
    })
}

/// What a torn write of the group at a segment's end left: where, and why it is taken for one.
struct Torn {
    offset: usize,
    reason: String,
}

enum GroupCheck {
    Complete {
        group: u32,
        /// Offset just past the group.
        end: usize,
        pending: Vec<Pending>,
    },
    /// Explained by a torn write of this group (whether it may be one is the caller's rule).
    Torn(Torn),
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

/// The first blank (all-zero) sector of `start..end` (whole sectors, within `contents`).
fn first_blank_sector(contents: &[u8], start: usize, end: usize) -> Option<usize> {
    (start..end)
        .step_by(SECTOR_BYTES)
        .find(|&at| is_blank(&contents[at..at + SECTOR_BYTES]))
}

/// Checks the group that starts at `start` (a block boundary before the end of `contents`).
///
/// A torn write leaves every sector of the group either as written or as it was before, and the
/// WAL writes only past the end of the log, where the file reads as zeros: so a torn group is
/// one that ends past the end of the file, or has a blank sector where its head records other
/// contents. A sector that is neither what was written nor blank cannot come from a crash: it is
/// corruption, last group or not.
fn check_group(
    path: &Path,
    contents: &[u8],
    start: usize,
    expected: Option<u32>,
) -> Result<GroupCheck, StorageError> {
    assert!(start < contents.len() && start.is_multiple_of(BLOCK_BYTES));
    let torn = |offset: usize, reason: String| Ok(GroupCheck::Torn(Torn { offset, reason }));
    let first_sector_end = (start + SECTOR_BYTES).min(contents.len());
    if is_blank(&contents[start..first_sector_end]) {
        return torn(
            start,
            "blank group head with data after it (a torn write)".to_string(),
        );
    }
    let head = match record::decode_group_head(contents, start) {
        Ok(head) => head,
        Err(HeadError::Short) => {
            return torn(
                contents.len(),
                "end of file inside a group head".to_string(),
            );
        }
        Err(HeadError::Malformed(reason)) => {
            return Err(StorageError::corrupt(path, start as u64, reason));
        }
        Err(HeadError::CheckMismatch) => {
            if let Ok(record) = record::decode(contents, start) {
                if record.header.kind != RecordKind::GroupHead {
                    return Err(StorageError::corrupt(
                        path,
                        start as u64,
                        format!(
                            "a {:?} record where a group head is expected: this log was written \
                             in WAL format 1 (no group heads), which this version does not read \
                             (storage/README.md)",
                            record.header.kind
                        ),
                    ));
                }
            }
            return Err(StorageError::corrupt(
                path,
                start as u64,
                "group head fails its check and its first sector is not blank: damaged, not a \
                 torn write",
            ));
        }
    };
    if let Some(expected) = expected {
        if head.group != expected {
            return Err(StorageError::corrupt(
                path,
                start as u64,
                format!(
                    "group head of group {} where group {expected} was expected",
                    head.group
                ),
            ));
        }
    }
    let end = start + head.group_bytes;
    if end > contents.len() {
        return torn(
            contents.len(),
            format!(
                "end of file inside group {} ({} of its {} bytes present)",
                head.group,
                contents.len() - start,
                head.group_bytes
            ),
        );
    }
    let body = start + head.head_bytes;
    if !record::group_head_table_valid(contents, start, &head) {
        if let Some(blank) = first_blank_sector(contents, start, body) {
            return torn(
                blank,
                format!("blank sector in the head of group {}", head.group),
            );
        }
        return Err(StorageError::corrupt(
            path,
            start as u64,
            "group head's sector table fails its checksum and none of its sectors is blank: \
             damaged, not a torn write",
        ));
    }
    let mut first_blank = None;
    for index in 0..head.sectors {
        let at = body + index * SECTOR_BYTES;
        let sector = &contents[at..at + SECTOR_BYTES];
        if record::crc32c(&[sector]) == record::group_head_sector_crc(contents, start, &head, index)
        {
            continue;
        }
        if is_blank(sector) {
            first_blank.get_or_insert(at);
            continue;
        }
        // Damaged. Name the first record that fails (the records before it are intact), else
        // the sector.
        let offset = first_invalid_record(contents, body, at).unwrap_or(at);
        return Err(StorageError::corrupt(
            path,
            offset as u64,
            format!(
                "the sector at offset {at} of group {} differs from what its group head \
                 recorded and is not blank: damaged, not a torn write",
                head.group
            ),
        ));
    }
    if let Some(blank) = first_blank {
        return torn(
            blank,
            format!(
                "blank sector in group {} where its head records data",
                head.group
            ),
        );
    }

    // Every sector is as written: the records must be valid, else they were written so.
    let mut pending = Vec::new();
    let mut offset = body;
    loop {
        let record = record::decode(&contents[..end], offset)
            .map_err(|e| StorageError::corrupt(path, offset as u64, e.reason()))?;
        let header = record.header;
        if header.kind == RecordKind::GroupHead {
            return Err(StorageError::corrupt(
                path,
                offset as u64,
                "group head inside a group",
            ));
        }
        if header.group != head.group {
            return Err(StorageError::corrupt(
                path,
                offset as u64,
                format!("record of group {} in group {}", header.group, head.group),
            ));
        }
        match header.kind {
            RecordKind::Entry => pending.push(Pending::Entry(record::decode_entry(&record))),
            RecordKind::HardState => {
                pending.push(Pending::HardState(record::decode_hard_state(&record)));
            }
            RecordKind::Pad | RecordKind::GroupHead => {}
        }
        let record_offset = offset;
        offset += record.record_bytes;
        match (header.is_group_end(), offset == end) {
            (true, true) => break,
            (false, false) => {}
            (true, false) => {
                return Err(StorageError::corrupt(
                    path,
                    record_offset as u64,
                    "group-end record before the end of its group",
                ));
            }
            (false, true) => {
                return Err(StorageError::corrupt(
                    path,
                    record_offset as u64,
                    "group ends without a group-end record",
                ));
            }
        }
    }
    Ok(GroupCheck::Complete {
        group: head.group,
        end,
        pending,
    })
}

/// The offset of the first record from `body` on that does not decode, if it starts before
/// `until` (a damaged sector: the record that covers it fails).
fn first_invalid_record(contents: &[u8], body: usize, until: usize) -> Option<usize> {
    let mut offset = body;
    while offset <= until {
        match record::decode(contents, offset) {
            Ok(record) => offset += record.record_bytes,
            Err(_) => return Some(offset),
        }
    }
    None
}

/// Looks for a valid record from `group_start` (the torn group's start) on that a torn write of
/// group `in_flight` cannot explain: one of a later group. Valid records of the in-flight group
/// itself (its head among them) are skipped whole (their payload may contain anything, including
/// bytes that look like a record). When the in-flight group is unknown (a lone segment with
/// nothing valid before the bad bytes), the first valid record found defines it.
fn find_later_group(
    contents: &[u8],
    group_start: usize,
    in_flight: Option<u32>,
) -> Option<(usize, u32)> {
    let mut in_flight = in_flight;
    let mut offset = group_start;
    while offset < contents.len() {
        match record::decode(contents, offset) {
            Ok(record) => match in_flight {
                Some(group) if record.header.group == group => offset += record.record_bytes,
                Some(group) if record::group_at_least(record.header.group, group, 1) => {
                    return Some((offset, record.header.group));
                }
                // An older group after the bad bytes cannot come from our writes; it does not
                // prove that acknowledged data was lost either.
                Some(_) => offset += RECORD_ALIGN_BYTES,
                None => {
                    in_flight = Some(record.header.group);
                    offset += record.record_bytes;
                }
            },
            Err(_) => offset += RECORD_ALIGN_BYTES,
        }
    }
    None
}

fn truncate_file(path: &Path, length: u64) -> Result<(), StorageError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StorageError::io("opening for repair", path, e))?;
    file.set_len(length)
        .map_err(|e| StorageError::io("truncating torn tail of", path, e))?;
    // fsync, not fdatasync: the file size is what changed.
    file.sync_all()
        .map_err(|e| StorageError::io("syncing repaired", path, e))?;
    Ok(())
}
