//! Start-up recovery: read every segment (with std::fs; this runs once), replay complete group
//! commits, and tell a torn tail (a crash during an unacknowledged group: repaired) from
//! corruption (refused).
//!
//! The rule. When the record at offset X of segment F is invalid (bad checksum, impossible
//! length, unknown kind, zero header, ...):
//! - F is not the last segment: corruption. Only the last segment can hold a write in flight.
//! - Otherwise let P be the last valid record before X (in F, else the last record of the
//!   previous segment, which always ends a group). The group in flight at the crash, G, is
//!   `P.group + 1` if P ends its group, else `P.group`. A torn write of G can leave valid records
//!   of G after X, but nothing of a later group: so a valid record after X (searched at every
//!   32-byte aligned offset to the end of the file) whose group is `>= G + 1` proves corruption.
//!   Otherwise X begins a torn tail, and F is truncated to the end of its last complete group.
//!
//! Only complete groups (through the record with the group-end flag) are replayed: a group commit
//! is atomic. Records of an incomplete last group are discarded with the torn tail; that group was
//! never acknowledged because `commit` returns only after its fdatasync.
//!
//! Limitation, shared by every log that checksums records but not redundantly: a completely
//! written, acknowledged last group whose middle was later damaged on the device looks exactly
//! like a torn write of that group and is discarded rather than reported.

use std::path::{Path, PathBuf};

use raft::eraftpb::{Entry, HardState};

use crate::error::StorageError;
use crate::record::{self, DecodeError, Header, RecordKind, BLOCK_BYTES, RECORD_ALIGN_BYTES};
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
    let mut offset = 0usize;
    let mut pending: Vec<Pending> = Vec::new();
    // The last valid record of this segment ("P" of the rule).
    let mut previous: Option<Header> = None;
    let mut complete_end = 0usize;
    let mut last_group = None;
    let mut entry_index_max: Option<u64> = None;

    let invalid: Option<(usize, &'static str)> = loop {
        if offset == contents.len() {
            break None;
        }
        let record = match record::decode(contents, offset) {
            Ok(record) => record,
            Err(DecodeError::Malformed(reason)) => {
                return Err(StorageError::corrupt(path, offset as u64, reason));
            }
            Err(DecodeError::Invalid(reason)) => break Some((offset, reason)),
        };
        let header = record.header;
        if let Some(expected) = group_in_flight(previous, expect_group) {
            if header.group != expected {
                return Err(StorageError::corrupt(
                    path,
                    offset as u64,
                    format!(
                        "record of group {} where group {} was expected",
                        header.group, expected
                    ),
                ));
            }
        }
        match header.kind {
            RecordKind::Entry => {
                pending.push(Pending::Entry(record::decode_entry(&record)));
            }
            RecordKind::HardState => {
                pending.push(Pending::HardState(record::decode_hard_state(&record)));
            }
            RecordKind::Pad => {}
        }
        let record_offset = offset;
        offset += record.record_bytes;
        previous = Some(header);

        if header.is_group_end() {
            if !offset.is_multiple_of(BLOCK_BYTES) {
                return Err(StorageError::corrupt(
                    path,
                    record_offset as u64,
                    "group commit does not end on a block boundary",
                ));
            }
            for item in pending.drain(..) {
                match item {
                    Pending::Entry(entry) => {
                        entry_index_max =
                            Some(entry_index_max.map_or(entry.index, |max| max.max(entry.index)));
                        replay.apply_entry(entry);
                    }
                    Pending::HardState(hard_state) => {
                        replay.hard_state = Some(hard_state);
                        replay.hard_state_seq = Some(seq);
                    }
                }
            }
            complete_end = offset;
            last_group = Some(header.group);
        }
    };

    let inside_group = previous.is_some_and(|header| !header.is_group_end());
    let torn: Option<(usize, String)> = match invalid {
        Some((invalid_offset, reason)) => {
            if !is_last {
                return Err(StorageError::corrupt(path, invalid_offset as u64, reason));
            }
            let in_flight = group_in_flight(previous, expect_group);
            if let Some((proof_offset, proof_group)) =
                find_later_group(contents, invalid_offset, in_flight)
            {
                return Err(StorageError::corrupt(
                    path,
                    invalid_offset as u64,
                    format!(
                        "{reason}, and a valid record of the later group {proof_group} follows \
                         at offset {proof_offset}, so this is not a torn write"
                    ),
                ));
            }
            Some((invalid_offset, reason.to_string()))
        }
        None if inside_group => {
            if !is_last {
                return Err(StorageError::corrupt(
                    path,
                    complete_end as u64,
                    "segment ends inside a group commit",
                ));
            }
            Some((
                contents.len(),
                "end of file inside a group commit".to_string(),
            ))
        }
        None => None,
    };

    let torn_tail = torn.map(|(torn_offset, reason)| TornTail {
        path: path.to_path_buf(),
        offset: torn_offset as u64,
        truncated_to: complete_end as u64,
        bytes_discarded: (contents.len() - complete_end) as u64,
        reason,
    });
    if torn_tail.is_none() {
        assert_eq!(complete_end, contents.len());
    }
    Ok(SegmentScan {
        complete_end,
        last_group,
        entry_index_max,
        torn_tail,
    })
}

/// The group the next record must belong to, given the last valid record before it (in this
/// segment) or, at the start of a segment, the group following the previous segment's last one.
fn group_in_flight(previous: Option<Header>, expect_group: Option<u32>) -> Option<u32> {
    match previous {
        Some(header) if header.is_group_end() => Some(header.group.wrapping_add(1)),
        Some(header) => Some(header.group),
        None => expect_group,
    }
}

/// Looks for a valid record after `invalid_offset` that a torn write of group `in_flight` cannot
/// explain: one of a later group. Valid records of the in-flight group itself are skipped whole
/// (their payload may contain anything, including bytes that look like a record). When the
/// in-flight group is unknown (a lone segment with nothing valid before the bad bytes), the first
/// valid record found defines it.
fn find_later_group(
    contents: &[u8],
    invalid_offset: usize,
    in_flight: Option<u32>,
) -> Option<(usize, u32)> {
    let mut in_flight = in_flight;
    let mut offset = invalid_offset + RECORD_ALIGN_BYTES;
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
