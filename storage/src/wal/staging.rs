//! The staging buffer of one group commit: records are encoded here, in their final on-disk
//! form, by the synchronous `stage_*` calls; `seal` closes the group (flag + padding) and writes
//! its group head (the checksum of every sector after it) into a second buffer; the commit copies
//! head and records into one DMA buffer and writes them with one `write_at`.
//!
//! The buffer is allocated once with a fixed capacity and never grows: staging is refused
//! (`StorageError::StagingFull`) rather than allocating.

use raft::eraftpb::{Entry, HardState};

use crate::error::StorageError;
use crate::record::{self, Header, RecordKind, BLOCK_BYTES, FLAG_GROUP_END, HEADER_BYTES};

pub(crate) struct Staging {
    /// Encoded records. `len()` is the staged byte count.
    buffer: Vec<u8>,
    /// Bound on staged records; the buffer has `BLOCK_BYTES` more capacity for the seal's Pad.
    staged_bytes_max: usize,
    /// The sealed group's head; allocated once for the largest group.
    head: Vec<u8>,
    /// The group the staged records belong to.
    group: u32,
    records: u32,
    /// Offset and payload CRC of the last staged record, to set its group-end flag on seal.
    last_record: Option<(usize, u32)>,
    entry_index_max: Option<u64>,
    hard_state_last: Option<HardState>,
    sealed: bool,
}

impl Staging {
    pub(crate) fn new(staged_bytes_max: usize, group: u32) -> Staging {
        assert!(staged_bytes_max >= BLOCK_BYTES);
        assert!(staged_bytes_max.is_multiple_of(BLOCK_BYTES));
        let (head_bytes_max, group_bytes_max) = record::group_layout(staged_bytes_max);
        assert!(group_bytes_max <= record::GROUP_BYTES_MAX);
        Staging {
            buffer: Vec::with_capacity(staged_bytes_max + BLOCK_BYTES),
            staged_bytes_max,
            head: Vec::with_capacity(head_bytes_max),
            group,
            records: 0,
            last_record: None,
            entry_index_max: None,
            hard_state_last: None,
            sealed: false,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    pub(crate) fn staged_bytes(&self) -> usize {
        self.buffer.len()
    }

    pub(crate) fn staged_bytes_max(&self) -> usize {
        self.staged_bytes_max
    }

    pub(crate) fn group(&self) -> u32 {
        self.group
    }

    pub(crate) fn records(&self) -> u32 {
        self.records
    }

    pub(crate) fn entry_index_max(&self) -> Option<u64> {
        self.entry_index_max
    }

    pub(crate) fn hard_state_last(&self) -> Option<&HardState> {
        self.hard_state_last.as_ref()
    }

    /// The sealed group, ready to write: its head, then its records (closing Pad included);
    /// together a whole number of blocks.
    pub(crate) fn sealed_parts(&self) -> (&[u8], &[u8]) {
        assert!(self.sealed);
        assert!((self.head.len() + self.buffer.len()).is_multiple_of(BLOCK_BYTES));
        (&self.head, &self.buffer)
    }

    /// Bytes of the sealed group, head included.
    pub(crate) fn sealed_len(&self) -> usize {
        assert!(self.sealed);
        self.head.len() + self.buffer.len()
    }

    /// Bytes that staging `entries` and `hard_state` would take.
    pub(crate) fn bytes_needed(entries: &[Entry], hard_state: Option<&HardState>) -> usize {
        let entries_bytes: usize = entries
            .iter()
            .map(|entry| record::record_bytes(record::entry_payload_bytes(entry)))
            .sum();
        let hard_state_bytes = match hard_state {
            Some(_) => record::record_bytes(record::HARD_STATE_PAYLOAD_BYTES),
            None => 0,
        };
        entries_bytes + hard_state_bytes
    }

    pub(crate) fn check_room(&self, needed_bytes: usize) -> Result<(), StorageError> {
        assert!(!self.sealed);
        if needed_bytes > self.staged_bytes_max - self.buffer.len() {
            return Err(StorageError::StagingFull {
                staged_bytes: self.buffer.len(),
                needed_bytes,
                staged_bytes_max: self.staged_bytes_max,
            });
        }
        Ok(())
    }

    /// Stages all of `entries` or, when they do not fit, none.
    pub(crate) fn stage_entries(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        for entry in entries {
            if entry.index == 0 {
                return Err(StorageError::Invalid("entry with index 0".into()));
            }
            if record::entry_payload_bytes(entry) > record::PAYLOAD_BYTES_MAX {
                return Err(StorageError::Invalid(format!(
                    "entry {} of {} bytes exceeds the record size limit",
                    entry.index,
                    entry.data.len()
                )));
            }
        }
        self.check_room(Self::bytes_needed(entries, None))?;
        for entry in entries {
            self.push_entry(entry);
        }
        Ok(())
    }

    pub(crate) fn stage_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.check_room(Self::bytes_needed(&[], Some(hard_state)))?;
        let payload = record::hard_state_payload(hard_state);
        self.push_record(RecordKind::HardState, 0, 0, 0, &[&payload]);
        self.hard_state_last = Some(hard_state.clone());
        Ok(())
    }

    fn push_entry(&mut self, entry: &Entry) {
        let prefix = record::entry_payload_prefix(entry);
        self.push_record(
            RecordKind::Entry,
            0,
            entry.index,
            entry.term,
            &[&prefix, &entry.context, &entry.data],
        );
        self.entry_index_max = Some(
            self.entry_index_max
                .map_or(entry.index, |m| m.max(entry.index)),
        );
    }

    /// Appends one record whose payload is the concatenation of `payload_parts`. The caller has
    /// checked the room, so the buffer never reallocates.
    fn push_record(
        &mut self,
        kind: RecordKind,
        flags: u8,
        index: u64,
        term: u64,
        payload_parts: &[&[u8]],
    ) {
        assert!(!self.sealed);
        let payload_bytes: usize = payload_parts.iter().map(|part| part.len()).sum();
        let total_bytes = record::record_bytes(payload_bytes);
        let capacity_before = self.buffer.capacity();
        assert!(self.buffer.len() + total_bytes <= capacity_before);

        let payload_crc = payload_parts
            .iter()
            .fold(0u32, |crc, part| crc32c::crc32c_append(crc, part));
        let mut header = Header {
            len: payload_bytes as u32,
            crc: 0,
            kind,
            flags,
            group: self.group,
            index,
            term,
        };
        header.crc = record::record_crc(&header.encode(), payload_crc, payload_bytes);

        let offset = self.buffer.len();
        self.buffer.extend_from_slice(&header.encode());
        for part in payload_parts {
            self.buffer.extend_from_slice(part);
        }
        self.buffer.resize(offset + total_bytes, 0);

        assert_eq!(
            self.buffer.capacity(),
            capacity_before,
            "staging buffer reallocated"
        );
        self.last_record = Some((offset, payload_crc));
        self.records += 1;
    }

    /// Closes the group: the last record gets the group-end flag, and a Pad record fills the
    /// group to the next block boundary (the Pad is then the flagged last record); then the
    /// group head is written. An empty group becomes one block: its head and one Pad record.
    pub(crate) fn seal(&mut self) {
        assert!(!self.sealed);
        let staged_bytes = self.buffer.len();
        let (head_bytes, group_bytes) = record::group_layout(staged_bytes);
        let pad_bytes = group_bytes - head_bytes - staged_bytes;
        assert!(pad_bytes > 0 || staged_bytes > 0);
        if pad_bytes == 0 {
            // Set the flag on the last record in place; only its header changes, and its CRC is
            // recomputed from the stored payload CRC.
            let (offset, payload_crc) = self.last_record.expect("non-empty staging");
            let header_bytes: &mut [u8; HEADER_BYTES] = (&mut self.buffer
                [offset..offset + HEADER_BYTES])
                .try_into()
                .unwrap();
            assert_eq!(header_bytes[9], 0);
            header_bytes[9] = FLAG_GROUP_END;
            let payload_bytes = u32::from_le_bytes(header_bytes[0..4].try_into().unwrap());
            let crc = record::record_crc(header_bytes, payload_crc, payload_bytes as usize);
            header_bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        } else {
            // Records are 32-byte multiples, so a non-zero gap always fits a Pad header.
            assert!(pad_bytes >= HEADER_BYTES);
            let zeros = [0u8; BLOCK_BYTES];
            let pad_payload = &zeros[..pad_bytes - HEADER_BYTES];
            self.push_record(RecordKind::Pad, FLAG_GROUP_END, 0, 0, &[pad_payload]);
        }
        assert_eq!(head_bytes + self.buffer.len(), group_bytes);
        record::encode_group_head(&mut self.head, self.group, head_bytes, &self.buffer);
        self.records += 1;
        self.sealed = true;
    }

    /// Empties the buffer for the next group (keeping its allocation).
    pub(crate) fn reset(&mut self, group: u32) {
        self.buffer.clear();
        self.head.clear();
        self.group = group;
        self.records = 0;
        self.last_record = None;
        self.entry_index_max = None;
        self.hard_state_last = None;
        self.sealed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{decode, decode_entry};

    fn entry(index: u64, data_bytes: usize) -> Entry {
        Entry {
            index,
            term: 1,
            data: bytes::Bytes::from(vec![index as u8; data_bytes]),
            ..Entry::default()
        }
    }

    /// The records after the group head (checked against it).
    fn records_of(staging: &Staging) -> Vec<crate::record::Header> {
        let (head, bytes) = staging.sealed_parts();
        let mut group = head.to_vec();
        group.extend_from_slice(bytes);
        let parsed = crate::record::decode_group_head(&group, 0).unwrap();
        assert_eq!(parsed.head_bytes, head.len());
        assert_eq!(parsed.group_bytes, group.len());
        assert!(crate::record::group_head_table_valid(&group, 0, &parsed));
        for (index, sector) in bytes.chunks_exact(crate::record::SECTOR_BYTES).enumerate() {
            assert_eq!(
                crc32c::crc32c(sector),
                crate::record::group_head_sector_crc(&group, 0, &parsed, index)
            );
        }
        let mut offset = 0;
        let mut headers = Vec::new();
        while offset < bytes.len() {
            let view = decode(bytes, offset).unwrap();
            headers.push(view.header);
            offset += view.record_bytes;
        }
        headers
    }

    #[test]
    fn seal_pads_to_block() {
        let mut staging = Staging::new(BLOCK_BYTES * 4, 9);
        staging
            .stage_entries(&[entry(1, 10), entry(2, 100)])
            .unwrap();
        staging.seal();
        let headers = records_of(&staging);
        assert_eq!(staging.sealed_len(), BLOCK_BYTES);
        assert_eq!(headers.len(), 3);
        assert_eq!(headers[2].kind, RecordKind::Pad);
        assert!(headers.iter().all(|h| h.group == 9));
        assert_eq!(headers.iter().filter(|h| h.is_group_end()).count(), 1);
        assert!(headers[2].is_group_end());
    }

    #[test]
    fn seal_flags_last_record_when_exactly_aligned() {
        let mut staging = Staging::new(BLOCK_BYTES * 4, 0);
        // One record that fills the block after a one-sector head: 32 header + 8 prefix + data.
        let data_bytes = BLOCK_BYTES - crate::record::SECTOR_BYTES - HEADER_BYTES - 8;
        staging.stage_entries(&[entry(1, data_bytes)]).unwrap();
        staging.seal();
        let headers = records_of(&staging);
        assert_eq!(headers.len(), 1);
        assert!(headers[0].is_group_end());
        assert_eq!(staging.sealed_len(), BLOCK_BYTES);
        let view = decode(staging.sealed_parts().1, 0).unwrap();
        assert_eq!(decode_entry(&view).data.len(), data_bytes);
    }

    #[test]
    fn a_large_group_gets_a_head_of_several_sectors() {
        let mut staging = Staging::new(BLOCK_BYTES * 64, 3);
        staging
            .stage_entries(&(1..=40).map(|i| entry(i, 5000)).collect::<Vec<_>>())
            .unwrap();
        staging.seal();
        assert!(staging.sealed_parts().0.len() > crate::record::SECTOR_BYTES);
        assert_eq!(records_of(&staging).len(), 41);
        assert!(staging.sealed_len().is_multiple_of(BLOCK_BYTES));
    }

    #[test]
    fn full_staging_is_refused_without_side_effects() {
        let mut staging = Staging::new(BLOCK_BYTES, 0);
        staging.stage_entries(&[entry(1, 3000)]).unwrap();
        let before = staging.staged_bytes();
        let err = staging
            .stage_entries(&[entry(2, 10), entry(3, 2000)])
            .unwrap_err();
        assert!(matches!(err, StorageError::StagingFull { .. }), "{err}");
        assert_eq!(staging.staged_bytes(), before);
        assert_eq!(staging.records(), 1);
    }
}
