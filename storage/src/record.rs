//! The on-disk record format of the write-ahead log. Pure functions, no I/O.
//!
//! A segment file is a sequence of records. Every record starts at a 32-byte aligned offset and
//! occupies `32 + align_up(len, 32)` bytes; the bytes between the end of the payload and the next
//! 32-byte boundary are zero (and checked to be zero on read, so that no byte of a record escapes
//! verification).
//!
//! Header, 32 bytes, little-endian:
//!
//! | offset | size | field      | meaning                                                         |
//! |--------|------|------------|-----------------------------------------------------------------|
//! | 0      | 4    | `len`      | payload bytes (excluding the header and the zero padding)       |
//! | 4      | 4    | `crc32c`   | CRC32C over header bytes 8..32 followed by the `len` payload bytes |
//! | 8      | 1    | `kind`     | 1 = Entry, 2 = HardState, 3 = Pad                               |
//! | 9      | 1    | `flags`    | bit 0 = last record of its group commit; other bits must be 0   |
//! | 10     | 2    | `reserved` | must be 0                                                       |
//! | 12     | 4    | `group`    | group-commit sequence number (wrapping, monotonic across restarts) |
//! | 16     | 8    | `index`    | Raft entry index (0 for HardState and Pad)                      |
//! | 24     | 8    | `term`     | Raft entry term (0 for HardState and Pad)                       |
//!
//! Payloads:
//! - Entry: `[entry_type u8][0u8; 3][context_len u32][context bytes][data bytes]`, where
//!   `entry_type` is raft's `EntryType` as a number (0 Normal, 1 ConfChange, 2 ConfChangeV2).
//!   raft's deprecated `sync_log` flag is not stored.
//! - HardState: `[term u64][vote u64][commit u64]`.
//! - Pad: zeros. A Pad record fills a group commit up to the next 4096-byte boundary.
//!
//! A group commit is a run of records with the same `group`, the last one flagged; it always ends
//! on a `BLOCK_BYTES` boundary, so a complete group never shares a block with the next one.
//!
//! Format 2 (this one): every group starts with a GroupHead record (kind 4), a whole number of
//! `SECTOR_BYTES` sectors long, that checks every sector of the rest of the group:
//!
//! | offset | size | field          |                                                        |
//! |--------|------|----------------|--------------------------------------------------------|
//! | 0      | 32   | record header  | kind 4, flags 0, index 0, term 0, `len` = head bytes - 32 |
//! | 32     | 8    | `group_bytes`  | bytes of the whole group, head included (multiple of 4096) |
//! | 40     | 4    | `sectors`      | `(group_bytes - head bytes) / 512`                     |
//! | 44     | 4    | `head_check`   | CRC32C over head bytes 0..4 and 8..44                  |
//! | 48     | 4 × `sectors` | sector CRCs | CRC32C of each 512-byte sector after the head   |
//! | ...    |      | zeros          | up to the head's end                                   |
//!
//! `head_check` lies in the head's first sector and does not depend on the record checksum, so
//! the group's length can be trusted before the rest of the group is read. Format 1 had no group
//! heads; this version refuses to read it (see storage/README.md).

use raft::eraftpb::{Entry, EntryType, HardState};

pub const HEADER_BYTES: usize = 32;
pub const RECORD_ALIGN_BYTES: usize = 32;
/// Every group commit ends on a multiple of this. It is at least the O_DIRECT alignment of any
/// device we support (512 or 4096), so a group is always a whole number of direct-I/O blocks.
pub const BLOCK_BYTES: usize = 4096;

pub const FLAG_GROUP_END: u8 = 1;

/// The unit a group head checks, and the smallest unit a device writes whole (a sector; devices
/// with 4096-byte sectors write 8 of these whole).
pub const SECTOR_BYTES: usize = 512;
/// The fixed part of a group head: record header, group bytes, sector count, head check.
pub const HEAD_FIXED_BYTES: usize = HEADER_BYTES + 16;
/// Bound on one group commit, head included (the staging bound keeps groups below it).
pub const GROUP_BYTES_MAX: usize = 1 << 30;

pub const ENTRY_PAYLOAD_FIXED_BYTES: usize = 8;
pub const HARD_STATE_PAYLOAD_BYTES: usize = 24;

/// An entry payload must fit the u32 `len` field. (The staging bound is usually far smaller.)
pub const PAYLOAD_BYTES_MAX: usize = u32::MAX as usize - RECORD_ALIGN_BYTES;

const _: () = assert!(BLOCK_BYTES.is_multiple_of(RECORD_ALIGN_BYTES));
const _: () = assert!(HEADER_BYTES == RECORD_ALIGN_BYTES);
const _: () = assert!(BLOCK_BYTES.is_multiple_of(SECTOR_BYTES));
const _: () = assert!(SECTOR_BYTES.is_multiple_of(RECORD_ALIGN_BYTES));

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    Entry = 1,
    HardState = 2,
    Pad = 3,
    GroupHead = 4,
}

impl RecordKind {
    fn from_u8(v: u8) -> Option<RecordKind> {
        match v {
            1 => Some(RecordKind::Entry),
            2 => Some(RecordKind::HardState),
            3 => Some(RecordKind::Pad),
            4 => Some(RecordKind::GroupHead),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub crc: u32,
    pub kind: RecordKind,
    pub flags: u8,
    pub group: u32,
    pub index: u64,
    pub term: u64,
}

impl Header {
    pub fn is_group_end(&self) -> bool {
        self.flags & FLAG_GROUP_END != 0
    }

    /// Serializes the header. The crc field is written as given.
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[0..4].copy_from_slice(&self.len.to_le_bytes());
        out[4..8].copy_from_slice(&self.crc.to_le_bytes());
        out[8] = self.kind as u8;
        out[9] = self.flags;
        // out[10..12]: reserved, zero.
        out[12..16].copy_from_slice(&self.group.to_le_bytes());
        out[16..24].copy_from_slice(&self.index.to_le_bytes());
        out[24..32].copy_from_slice(&self.term.to_le_bytes());
        out
    }
}

pub const fn align_up(value: usize, alignment: usize) -> usize {
    assert!(alignment.is_power_of_two());
    (value + alignment - 1) & !(alignment - 1)
}

/// Total bytes a record with `payload_bytes` of payload occupies on disk.
pub const fn record_bytes(payload_bytes: usize) -> usize {
    HEADER_BYTES + align_up(payload_bytes, RECORD_ALIGN_BYTES)
}

pub fn entry_payload_bytes(entry: &Entry) -> usize {
    ENTRY_PAYLOAD_FIXED_BYTES + entry.context.len() + entry.data.len()
}

/// CRC-32C (Castagnoli) of `parts`, one after the other.
pub fn crc32c(parts: &[&[u8]]) -> u32 {
    crc32c_of(parts.iter().copied())
}

fn crc32c_of<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u32 {
    let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    for part in parts {
        digest.update(part);
    }
    digest.finalize() as u32
}

/// The record checksum: CRC-32C of header bytes 8..32, then the payload (given in parts), in one
/// pass. (Combining a separately computed payload CRC with the header's cost ~8 µs a record,
/// a tenth of a group commit's time at 32 entries.)
pub fn record_crc(header: &[u8; HEADER_BYTES], payload_parts: &[&[u8]]) -> u32 {
    crc32c_of(std::iter::once(&header[8..HEADER_BYTES]).chain(payload_parts.iter().copied()))
}

/// One record's bytes as staging writes them: `header` with its length and checksum set, the
/// payload, the zero fill to the record alignment (tests build reference layouts with it).
#[cfg(test)]
pub(crate) fn encode_test_record(header: Header, payload: &[u8]) -> Vec<u8> {
    let mut header = Header {
        len: payload.len() as u32,
        crc: 0,
        ..header
    };
    header.crc = record_crc(&header.encode(), &[payload]);
    let mut out = header.encode().to_vec();
    out.extend_from_slice(payload);
    out.resize(record_bytes(payload.len()), 0);
    out
}

fn entry_type_to_u8(entry_type: EntryType) -> u8 {
    match entry_type {
        EntryType::EntryNormal => 0,
        EntryType::EntryConfChange => 1,
        EntryType::EntryConfChangeV2 => 2,
    }
}

fn entry_type_from_u8(v: u8) -> Option<EntryType> {
    match v {
        0 => Some(EntryType::EntryNormal),
        1 => Some(EntryType::EntryConfChange),
        2 => Some(EntryType::EntryConfChangeV2),
        _ => None,
    }
}

/// The fixed 8-byte prefix of an Entry payload.
pub fn entry_payload_prefix(entry: &Entry) -> [u8; ENTRY_PAYLOAD_FIXED_BYTES] {
    assert!(entry.context.len() <= u32::MAX as usize);
    let mut prefix = [0u8; ENTRY_PAYLOAD_FIXED_BYTES];
    prefix[0] = entry_type_to_u8(entry.entry_type);
    prefix[4..8].copy_from_slice(&(entry.context.len() as u32).to_le_bytes());
    prefix
}

pub fn hard_state_payload(hard_state: &HardState) -> [u8; HARD_STATE_PAYLOAD_BYTES] {
    let mut payload = [0u8; HARD_STATE_PAYLOAD_BYTES];
    payload[0..8].copy_from_slice(&hard_state.term.to_le_bytes());
    payload[8..16].copy_from_slice(&hard_state.vote.to_le_bytes());
    payload[16..24].copy_from_slice(&hard_state.commit.to_le_bytes());
    payload
}

/// A record that passed every check, borrowed from the segment bytes.
#[derive(Debug)]
pub struct RecordView<'a> {
    pub header: Header,
    /// Offset of the payload within the segment bytes.
    pub payload_offset: usize,
    pub payload: &'a [u8],
    /// Bytes the whole record occupies (header, payload, padding).
    pub record_bytes: usize,
}

/// Why bytes at an offset are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// What a torn write (or the end of the log) can leave behind: the recovery rule decides
    /// whether it is a torn tail or corruption.
    Invalid(&'static str),
    /// The checksum matched but the contents are impossible. A torn write cannot produce this, so
    /// it is always corruption.
    Malformed(&'static str),
}

impl DecodeError {
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Invalid(reason) | DecodeError::Malformed(reason) => reason,
        }
    }
}

/// Decodes and verifies the record at `offset` of `bytes` (a whole segment file).
pub fn decode(bytes: &[u8], offset: usize) -> Result<RecordView<'_>, DecodeError> {
    assert!(offset.is_multiple_of(RECORD_ALIGN_BYTES));
    if offset + HEADER_BYTES > bytes.len() {
        return Err(DecodeError::Invalid(
            "record header extends past end of file",
        ));
    }
    let header = &bytes[offset..offset + HEADER_BYTES];
    if header.iter().all(|b| *b == 0) {
        return Err(DecodeError::Invalid("zero header"));
    }
    let len = u32::from_le_bytes(header[0..4].try_into().unwrap());
    let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
    let kind = RecordKind::from_u8(header[8]).ok_or(DecodeError::Invalid("unknown record kind"))?;
    let flags = header[9];
    if flags & !FLAG_GROUP_END != 0 {
        return Err(DecodeError::Invalid("unknown flag bits"));
    }
    if header[10] != 0 || header[11] != 0 {
        return Err(DecodeError::Invalid("reserved bytes not zero"));
    }
    let group = u32::from_le_bytes(header[12..16].try_into().unwrap());
    let index = u64::from_le_bytes(header[16..24].try_into().unwrap());
    let term = u64::from_le_bytes(header[24..32].try_into().unwrap());

    let payload_bytes = len as usize;
    if payload_bytes > PAYLOAD_BYTES_MAX {
        return Err(DecodeError::Invalid("impossible payload length"));
    }
    let total_bytes = record_bytes(payload_bytes);
    if total_bytes > bytes.len() - offset {
        return Err(DecodeError::Invalid("record extends past end of file"));
    }
    let payload_offset = offset + HEADER_BYTES;
    let payload = &bytes[payload_offset..payload_offset + payload_bytes];
    let header_array: &[u8; HEADER_BYTES] = header.try_into().unwrap();
    if record_crc(header_array, &[payload]) != crc {
        return Err(DecodeError::Invalid("checksum mismatch"));
    }
    let padding = &bytes[payload_offset + payload_bytes..offset + total_bytes];
    if padding.iter().any(|b| *b != 0) {
        return Err(DecodeError::Invalid("record padding not zero"));
    }

    match kind {
        RecordKind::Entry => {
            if payload_bytes < ENTRY_PAYLOAD_FIXED_BYTES {
                return Err(DecodeError::Malformed(
                    "entry payload shorter than its prefix",
                ));
            }
            if entry_type_from_u8(payload[0]).is_none() {
                return Err(DecodeError::Malformed("unknown entry type"));
            }
            if payload[1..4].iter().any(|b| *b != 0) {
                return Err(DecodeError::Malformed("entry prefix padding not zero"));
            }
            let context_bytes = u32::from_le_bytes(payload[4..8].try_into().unwrap()) as usize;
            if context_bytes > payload_bytes - ENTRY_PAYLOAD_FIXED_BYTES {
                return Err(DecodeError::Malformed("entry context longer than payload"));
            }
            if index == 0 {
                return Err(DecodeError::Malformed("entry index 0"));
            }
        }
        RecordKind::HardState => {
            if payload_bytes != HARD_STATE_PAYLOAD_BYTES {
                return Err(DecodeError::Malformed("hard state payload of wrong length"));
            }
            if index != 0 || term != 0 {
                return Err(DecodeError::Malformed(
                    "hard state record with index or term",
                ));
            }
        }
        RecordKind::Pad => {
            if index != 0 || term != 0 {
                return Err(DecodeError::Malformed("pad record with index or term"));
            }
            if payload.iter().any(|b| *b != 0) {
                return Err(DecodeError::Malformed("pad payload not zero"));
            }
        }
        RecordKind::GroupHead => {
            if index != 0 || term != 0 || flags != 0 {
                return Err(DecodeError::Malformed(
                    "group head with index, term or flags",
                ));
            }
        }
    }

    Ok(RecordView {
        header: Header {
            len,
            crc,
            kind,
            flags,
            group,
            index,
            term,
        },
        payload_offset,
        payload,
        record_bytes: total_bytes,
    })
}

/// The layout of a group whose records (the closing Pad or flag not yet added) take
/// `records_bytes`: `(head_bytes, group_bytes)`. The head is the smallest whole number of sectors
/// that holds a checksum for every sector after it; the group ends on a block boundary, with
/// room for at least a Pad record when there are no records.
pub fn group_layout(records_bytes: usize) -> (usize, usize) {
    assert!(records_bytes.is_multiple_of(RECORD_ALIGN_BYTES));
    let records_bytes = records_bytes.max(HEADER_BYTES);
    let mut head_bytes = SECTOR_BYTES;
    loop {
        let group_bytes = align_up(head_bytes + records_bytes, BLOCK_BYTES);
        let sectors = (group_bytes - head_bytes) / SECTOR_BYTES;
        let needed = align_up(HEAD_FIXED_BYTES + 4 * sectors, SECTOR_BYTES);
        if needed <= head_bytes {
            return (head_bytes, group_bytes);
        }
        head_bytes = needed;
    }
}

/// The check of a head's first `HEAD_FIXED_BYTES`: everything but the record checksum.
fn head_check(head: &[u8]) -> u32 {
    crc32c(&[&head[0..4], &head[8..44]])
}

/// Writes the group head of a group whose sectors after the head are `body` into `head`, all of
/// it (`head.len()` is the head's size: the table and the zero fill after it are written, so
/// `head` may hold anything before; a reused DMA buffer does).
pub fn encode_group_head(head: &mut [u8], group: u32, body: &[u8]) {
    let head_bytes = head.len();
    assert!(head_bytes >= SECTOR_BYTES && head_bytes.is_multiple_of(SECTOR_BYTES));
    assert!(body.len().is_multiple_of(SECTOR_BYTES));
    let group_bytes = head_bytes + body.len();
    assert!(group_bytes.is_multiple_of(BLOCK_BYTES) && group_bytes <= GROUP_BYTES_MAX);
    let sectors = body.len() / SECTOR_BYTES;
    let table_end = HEAD_FIXED_BYTES + 4 * sectors;
    assert!(table_end <= head_bytes);
    let header = Header {
        len: (head_bytes - HEADER_BYTES) as u32,
        crc: 0,
        kind: RecordKind::GroupHead,
        flags: 0,
        group,
        index: 0,
        term: 0,
    };
    head[..HEADER_BYTES].copy_from_slice(&header.encode());
    head[HEADER_BYTES..HEADER_BYTES + 8].copy_from_slice(&(group_bytes as u64).to_le_bytes());
    head[HEADER_BYTES + 8..HEADER_BYTES + 12].copy_from_slice(&(sectors as u32).to_le_bytes());
    let check = head_check(head);
    head[HEADER_BYTES + 12..HEAD_FIXED_BYTES].copy_from_slice(&check.to_le_bytes());
    for (slot, sector) in head[HEAD_FIXED_BYTES..table_end]
        .chunks_exact_mut(4)
        .zip(body.chunks_exact(SECTOR_BYTES))
    {
        slot.copy_from_slice(&crc32c(&[sector]).to_le_bytes());
    }
    head[table_end..].fill(0);
    let header_bytes: [u8; HEADER_BYTES] = head[..HEADER_BYTES].try_into().unwrap();
    let crc = record_crc(&header_bytes, &[&head[HEADER_BYTES..]]);
    head[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// A group head whose first `HEAD_FIXED_BYTES` passed their check (its sector table is not
/// verified yet: see [`group_head_table_valid`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupHead {
    pub group: u32,
    pub head_bytes: usize,
    pub group_bytes: usize,
    pub sectors: usize,
}

/// Why the bytes at a group's start are not a usable group head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The file ends before the head's fixed part.
    Short,
    /// The fixed part fails its check.
    CheckMismatch,
    /// The check matched but the contents are impossible.
    Malformed(&'static str),
}

/// Decodes the fixed part of the group head at `offset` of `bytes` (a whole segment file).
pub fn decode_group_head(bytes: &[u8], offset: usize) -> Result<GroupHead, HeadError> {
    assert!(offset.is_multiple_of(BLOCK_BYTES));
    if offset + HEAD_FIXED_BYTES > bytes.len() {
        return Err(HeadError::Short);
    }
    let head = &bytes[offset..offset + HEAD_FIXED_BYTES];
    let stored_check = u32::from_le_bytes(head[44..48].try_into().unwrap());
    if head_check(head) != stored_check {
        return Err(HeadError::CheckMismatch);
    }
    let len = u32::from_le_bytes(head[0..4].try_into().unwrap()) as usize;
    if head[8] != RecordKind::GroupHead as u8 {
        return Err(HeadError::Malformed("group head of another record kind"));
    }
    if head[9..12].iter().any(|b| *b != 0) || head[16..32].iter().any(|b| *b != 0) {
        return Err(HeadError::Malformed(
            "group head with flags, reserved bytes, index or term",
        ));
    }
    let group = u32::from_le_bytes(head[12..16].try_into().unwrap());
    let group_bytes = u64::from_le_bytes(head[32..40].try_into().unwrap());
    let sectors = u32::from_le_bytes(head[40..44].try_into().unwrap()) as usize;
    let head_bytes = len + HEADER_BYTES;
    if head_bytes < SECTOR_BYTES || !head_bytes.is_multiple_of(SECTOR_BYTES) {
        return Err(HeadError::Malformed(
            "group head not a whole number of sectors",
        ));
    }
    if group_bytes > GROUP_BYTES_MAX as u64 || !group_bytes.is_multiple_of(BLOCK_BYTES as u64) {
        return Err(HeadError::Malformed("impossible group length"));
    }
    let group_bytes = group_bytes as usize;
    if group_bytes <= head_bytes || (group_bytes - head_bytes) / SECTOR_BYTES != sectors {
        return Err(HeadError::Malformed(
            "group head's sector count does not match the group length",
        ));
    }
    if HEAD_FIXED_BYTES + 4 * sectors > head_bytes {
        return Err(HeadError::Malformed(
            "group head too short for its sector table",
        ));
    }
    Ok(GroupHead {
        group,
        head_bytes,
        group_bytes,
        sectors,
    })
}

/// Whether the whole head record (its sector table and zero fill included) passes its record
/// checksum. The head must lie within `bytes`.
pub fn group_head_table_valid(bytes: &[u8], offset: usize, head: &GroupHead) -> bool {
    let end = offset + head.head_bytes;
    assert!(end <= bytes.len());
    let record = &bytes[offset..end];
    let header_bytes: [u8; HEADER_BYTES] = record[..HEADER_BYTES].try_into().unwrap();
    let stored = u32::from_le_bytes(record[4..8].try_into().unwrap());
    let table_end = HEAD_FIXED_BYTES + 4 * head.sectors;
    record_crc(&header_bytes, &[&record[HEADER_BYTES..]]) == stored
        && record[table_end..].iter().all(|b| *b == 0)
}

/// The checksum the head at `offset` records for the `index`-th sector after it.
pub fn group_head_sector_crc(bytes: &[u8], offset: usize, head: &GroupHead, index: usize) -> u32 {
    assert!(index < head.sectors);
    let at = offset + HEAD_FIXED_BYTES + 4 * index;
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Builds the raft Entry of a verified Entry record. Context and data are copied out: slicing the
/// segment buffer instead would keep a whole segment in memory for one live entry.
pub fn decode_entry(record: &RecordView<'_>) -> Entry {
    assert_eq!(record.header.kind, RecordKind::Entry);
    let payload = record.payload;
    // decode() verified both of these; a failure here is a bug, not bad disk data.
    let entry_type = entry_type_from_u8(payload[0]).expect("verified by decode");
    let context_bytes = u32::from_le_bytes(payload[4..8].try_into().unwrap()) as usize;
    let (context, data) = payload[ENTRY_PAYLOAD_FIXED_BYTES..].split_at(context_bytes);

    Entry {
        entry_type,
        index: record.header.index,
        term: record.header.term,
        context: bytes::Bytes::copy_from_slice(context),
        data: bytes::Bytes::copy_from_slice(data),
        ..Entry::default()
    }
}

pub fn decode_hard_state(record: &RecordView<'_>) -> HardState {
    assert_eq!(record.header.kind, RecordKind::HardState);
    let payload = record.payload;
    assert_eq!(payload.len(), HARD_STATE_PAYLOAD_BYTES);
    HardState {
        term: u64::from_le_bytes(payload[0..8].try_into().unwrap()),
        vote: u64::from_le_bytes(payload[8..16].try_into().unwrap()),
        commit: u64::from_le_bytes(payload[16..24].try_into().unwrap()),
        ..HardState::default()
    }
}

/// True when `a` comes at least `distance` groups after `b` in wrapping (serial number)
/// arithmetic. Group numbers are u32 and wrap; within one segment they never span 2^31.
pub fn group_at_least(a: u32, b: u32, distance: u32) -> bool {
    let diff = a.wrapping_sub(b) as i32;
    assert!(distance < i32::MAX as u32);
    diff >= distance as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_record(kind: RecordKind, flags: u8, group: u32, payload: &[u8]) -> Vec<u8> {
        let (index, term) = match kind {
            RecordKind::Entry => (7, 3),
            _ => (0, 0),
        };
        let header = Header {
            len: 0,
            crc: 0,
            kind,
            flags,
            group,
            index,
            term,
        };
        encode_test_record(header, payload)
    }

    #[test]
    fn header_round_trip() {
        let entry = Entry {
            entry_type: EntryType::EntryConfChange,
            context: bytes::Bytes::from_static(b"ctx"),
            data: bytes::Bytes::from_static(b"hello world"),
            ..Entry::default()
        };
        let mut payload = entry_payload_prefix(&entry).to_vec();
        payload.extend_from_slice(b"ctxhello world");
        let record = encode_record(RecordKind::Entry, FLAG_GROUP_END, 42, &payload);
        assert_eq!(record.len(), 64);

        let view = decode(&record, 0).unwrap();
        assert_eq!(view.header.group, 42);
        assert!(view.header.is_group_end());
        let decoded = decode_entry(&view);
        assert_eq!(decoded.entry_type, EntryType::EntryConfChange);
        assert_eq!(&decoded.context[..], b"ctx");
        assert_eq!(&decoded.data[..], b"hello world");
        assert_eq!((decoded.index, decoded.term), (7, 3));
    }

    #[test]
    fn every_byte_is_verified() {
        let hard_state = HardState {
            term: 5,
            vote: 2,
            commit: 9,
            ..HardState::default()
        };
        let record = encode_record(
            RecordKind::HardState,
            0,
            1,
            &hard_state_payload(&hard_state),
        );
        assert_eq!(decode_hard_state(&decode(&record, 0).unwrap()), hard_state);
        for i in 0..record.len() {
            let mut bad = record.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad, 0).is_err(), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn zero_and_short_inputs_are_invalid() {
        assert_eq!(
            decode(&[0u8; 64], 0).unwrap_err(),
            DecodeError::Invalid("zero header")
        );
        assert!(matches!(
            decode(&[1u8; 16], 0),
            Err(DecodeError::Invalid(_))
        ));
        let record = encode_record(RecordKind::Pad, FLAG_GROUP_END, 0, &[0u8; 100]);
        assert!(matches!(
            decode(&record[..96], 0),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn wrapping_group_order() {
        assert!(group_at_least(5, 3, 2));
        assert!(!group_at_least(5, 4, 2));
        assert!(group_at_least(1, u32::MAX, 2));
        assert!(!group_at_least(u32::MAX, 1, 1));
    }
}
