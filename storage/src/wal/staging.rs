//! The staging buffer of one group commit: records are encoded, in their final on-disk form, by
//! the synchronous `stage_*` calls directly into the DMA buffer the group will be written from;
//! `seal` closes the group (flag + padding) and writes its group head (the checksum of every
//! sector after it) in place in front of the records, and the commit writes that buffer whole.
//!
//! **Where the records go.** A group is its head, then its records, and the head's size grows
//! with the group (`record::group_layout`: one 4-byte checksum per 512-byte sector), so it is
//! only known at `seal`. The records are staged after a gap of the head size *predicted* for
//! this group (the previous group's head size: group sizes are steady under a steady load, and a
//! head's size only changes every ~58 KiB of group); `seal` writes the head into that gap. When
//! the prediction misses, `seal` moves the records to where the head's actual size puts them
//! (`copy_within`: the one copy that staging in place otherwise saves). The on-disk bytes are
//! the same either way. A write has to start at the DMA buffer's start (glommio writes a
//! `DmaBuffer` from its first byte), which is why the gap cannot simply be larger than the head.
//!
//! Staging is refused (`StorageError::StagingFull`) past `staged_bytes_max`. The buffer comes from
//! `DmaCache` (reused, pre-faulted) and is replaced by a larger one when a group outgrows it
//! (the staged records copied over: rare once buffers fit the workload's groups).

use glommio::io::{DmaBuffer, DmaFile};
use raft::eraftpb::{Entry, HardState};

use crate::error::StorageError;
use crate::record::{self, Header, RecordKind, BLOCK_BYTES, FLAG_GROUP_END, HEADER_BYTES};

use super::dma_cache::DmaCache;

pub(crate) struct Staging {
    /// The DMA buffer the group is staged in (its length set to its capacity). `None` before the
    /// group's first record, and once `take_sealed` handed it to the write.
    buffer: Option<DmaBuffer>,
    dma_cache: DmaCache,
    /// Where the records start in `buffer`: the head size reserved in front of them.
    records_offset_bytes: usize,
    /// Record bytes staged (closing Pad included once sealed).
    staged_bytes: usize,
    /// Bound on staged records (the closing Pad may go past it).
    staged_bytes_max: usize,
    /// The largest buffer a group needs: the largest head, `staged_bytes_max` of records and a
    /// closing Pad.
    buffer_bytes_max: usize,
    /// The head size reserved for the next group, and the size of the last group sealed (the
    /// buffer size asked for first, so that a steady load stages without growing a buffer).
    head_bytes_predicted: usize,
    group_bytes_last: usize,
    /// Group bytes once sealed.
    sealed_bytes: Option<usize>,
    /// The group the staged records belong to.
    group: u32,
    records: u32,
    /// Offset (from the records' start) of the last staged record, to set its group-end flag on
    /// seal.
    last_record: Option<usize>,
    entry_index_max: Option<u64>,
    hard_state_last: Option<HardState>,
    /// Seals whose head size was mispredicted (records moved), and buffers outgrown mid-group
    /// (records copied to a larger one): each is one copy of the staged bytes.
    pub(crate) records_moved: u64,
    pub(crate) buffers_grown: u64,
}

/// Buffer bytes a group of `staged_bytes` record bytes, staged at `records_offset_bytes`, needs
/// once sealed: the records where they are and a closing Pad (under one block), or, when the
/// head is not the size reserved, the group laid out at the head's actual size.
fn buffer_bytes_needed(records_offset_bytes: usize, staged_bytes: usize) -> usize {
    let (_, group_bytes) = record::group_layout(staged_bytes);
    (records_offset_bytes + staged_bytes + BLOCK_BYTES).max(group_bytes)
}

impl Staging {
    pub(crate) fn new(staged_bytes_max: usize, group: u32) -> Staging {
        assert!(staged_bytes_max >= BLOCK_BYTES);
        assert!(staged_bytes_max.is_multiple_of(BLOCK_BYTES));
        let (head_bytes_max, group_bytes_max) = record::group_layout(staged_bytes_max);
        assert!(group_bytes_max <= record::GROUP_BYTES_MAX);
        let buffer_bytes_max = head_bytes_max + staged_bytes_max + BLOCK_BYTES;
        assert!(buffer_bytes_max >= group_bytes_max);
        let head_bytes_first = record::group_layout(0).0;
        Staging {
            buffer: None,
            dma_cache: DmaCache::default(),
            records_offset_bytes: head_bytes_first,
            staged_bytes: 0,
            staged_bytes_max,
            buffer_bytes_max,
            head_bytes_predicted: head_bytes_first,
            group_bytes_last: 0,
            sealed_bytes: None,
            group,
            records: 0,
            last_record: None,
            entry_index_max: None,
            hard_state_last: None,
            records_moved: 0,
            buffers_grown: 0,
        }
    }

    /// Allocates and touches a buffer for groups up to `bytes` and keeps it for the first groups.
    pub(crate) fn prefault(&mut self, file: &DmaFile, bytes: usize) {
        self.dma_cache
            .prefault(file, bytes.min(self.buffer_bytes_max));
    }

    /// Keeps a written group's buffer for a later group.
    pub(crate) fn give_back(&mut self, buffer: DmaBuffer) {
        self.dma_cache.give_back(buffer);
    }

    pub(crate) fn dma_cache(&self) -> &DmaCache {
        &self.dma_cache
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.staged_bytes == 0
    }

    pub(crate) fn staged_bytes(&self) -> usize {
        self.staged_bytes
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

    /// Bytes of the sealed group, head included (a whole number of blocks).
    pub(crate) fn sealed_len(&self) -> usize {
        self.sealed_bytes.expect("sealed")
    }

    /// The sealed group, as it will be written: head, records, closing Pad.
    #[cfg(test)]
    pub(crate) fn sealed_group(&self) -> &[u8] {
        let group_bytes = self.sealed_len();
        &self.buffer.as_ref().expect("sealed, not taken").as_bytes()[..group_bytes]
    }

    /// Hands the sealed group's buffer over for its write, its length the group's.
    pub(crate) fn take_sealed(&mut self) -> DmaBuffer {
        let group_bytes = self.sealed_len();
        let mut buffer = self.buffer.take().expect("sealed, not taken");
        buffer.set_len(group_bytes);
        buffer
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
        assert!(self.sealed_bytes.is_none());
        if needed_bytes > self.staged_bytes_max - self.staged_bytes {
            return Err(StorageError::StagingFull {
                staged_bytes: self.staged_bytes,
                needed_bytes,
                staged_bytes_max: self.staged_bytes_max,
            });
        }
        Ok(())
    }

    /// Makes the buffer large enough to seal a group of `staged_bytes_after` record bytes: takes
    /// one (from the cache) for the group's first record, or a larger one when the group
    /// outgrows it, copying the records staged so far.
    fn reserve(&mut self, file: &DmaFile, staged_bytes_after: usize) {
        let needed_bytes = buffer_bytes_needed(self.records_offset_bytes, staged_bytes_after);
        assert!(needed_bytes <= self.buffer_bytes_max);
        let capacity_bytes = self.buffer.as_ref().map_or(0, |b| b.capacity());
        if capacity_bytes >= needed_bytes {
            return;
        }
        // At least double when growing, so that a group staged record by record is copied a
        // bounded number of times; at first, the last group's size (a steady load's).
        let wanted_bytes = needed_bytes
            .max(2 * capacity_bytes)
            .max(self.group_bytes_last)
            .min(self.buffer_bytes_max);
        let mut larger = self.dma_cache.take(file, wanted_bytes);
        larger.set_len(larger.capacity());
        if let Some(smaller) = self.buffer.take() {
            let records = self.records_offset_bytes..self.records_offset_bytes + self.staged_bytes;
            larger.as_bytes_mut()[records.clone()].copy_from_slice(&smaller.as_bytes()[records]);
            self.buffers_grown += 1;
            self.dma_cache.give_back(smaller);
        }
        assert!(larger.len() >= needed_bytes);
        self.buffer = Some(larger);
    }

    /// Stages all of `entries` or, when they do not fit, none.
    pub(crate) fn stage_entries(
        &mut self,
        file: &DmaFile,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
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
        let needed_bytes = Self::bytes_needed(entries, None);
        self.check_room(needed_bytes)?;
        self.reserve(file, self.staged_bytes + needed_bytes);
        for entry in entries {
            self.push_entry(entry);
        }
        Ok(())
    }

    pub(crate) fn stage_hard_state(
        &mut self,
        file: &DmaFile,
        hard_state: &HardState,
    ) -> Result<(), StorageError> {
        let needed_bytes = Self::bytes_needed(&[], Some(hard_state));
        self.check_room(needed_bytes)?;
        self.reserve(file, self.staged_bytes + needed_bytes);
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

    /// Appends one record whose payload is the concatenation of `payload_parts`, every byte of
    /// it written (the buffer is reused: the alignment fill is zeroed here). The caller has
    /// reserved the room.
    fn push_record(
        &mut self,
        kind: RecordKind,
        flags: u8,
        index: u64,
        term: u64,
        payload_parts: &[&[u8]],
    ) {
        assert!(self.sealed_bytes.is_none());
        let payload_bytes: usize = payload_parts.iter().map(|part| part.len()).sum();
        let total_bytes = record::record_bytes(payload_bytes);

        let mut header = Header {
            len: payload_bytes as u32,
            crc: 0,
            kind,
            flags,
            group: self.group,
            index,
            term,
        };
        header.crc = record::record_crc(&header.encode(), payload_parts);

        let offset_bytes = self.staged_bytes;
        let start = self.records_offset_bytes + offset_bytes;
        let buffer = self.buffer.as_mut().expect("room reserved").as_bytes_mut();
        assert!(start + total_bytes <= buffer.len(), "room reserved");
        let record = &mut buffer[start..start + total_bytes];
        record[..HEADER_BYTES].copy_from_slice(&header.encode());
        let mut at = HEADER_BYTES;
        for part in payload_parts {
            record[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        record[at..].fill(0);

        self.staged_bytes += total_bytes;
        self.last_record = Some(offset_bytes);
        self.records += 1;
    }

    /// Closes the group: the last record gets the group-end flag, and a Pad record fills the
    /// group to the next block boundary (the Pad is then the flagged last record); then the
    /// group head is written in front of the records. An empty group becomes one block: its
    /// head and one Pad record.
    pub(crate) fn seal(&mut self, file: &DmaFile) {
        assert!(self.sealed_bytes.is_none());
        let staged_bytes = self.staged_bytes;
        // An empty group has no buffer yet.
        self.reserve(file, staged_bytes);
        let (head_bytes, group_bytes) = record::group_layout(staged_bytes);
        if head_bytes != self.records_offset_bytes {
            // Mispredicted head size: the records move next to the head (`reserve` left room
            // for the group at either offset).
            let records = self.records_offset_bytes..self.records_offset_bytes + staged_bytes;
            let buffer = self.buffer.as_mut().unwrap().as_bytes_mut();
            buffer.copy_within(records, head_bytes);
            self.records_offset_bytes = head_bytes;
            if staged_bytes > 0 {
                self.records_moved += 1;
            }
        }
        let pad_bytes = group_bytes - head_bytes - staged_bytes;
        assert!(pad_bytes > 0 || staged_bytes > 0);
        if pad_bytes == 0 {
            // Set the flag on the last record in place; only its header changes, and its CRC is
            // computed again over the staged payload. (Rare: a group whose records end exactly
            // on a block boundary, about one in 128.)
            let offset_bytes = self.last_record.expect("non-empty staging");
            let start = head_bytes + offset_bytes;
            let buffer = self.buffer.as_mut().unwrap().as_bytes_mut();
            let (header_slice, rest) = buffer[start..].split_at_mut(HEADER_BYTES);
            let header_bytes: &mut [u8; HEADER_BYTES] = header_slice.try_into().unwrap();
            assert_eq!(header_bytes[9], 0);
            header_bytes[9] = FLAG_GROUP_END;
            let payload_bytes = u32::from_le_bytes(header_bytes[0..4].try_into().unwrap());
            let crc = record::record_crc(header_bytes, &[&rest[..payload_bytes as usize]]);
            header_bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        } else {
            // Records are 32-byte multiples, so a non-zero gap always fits a Pad header.
            assert!(pad_bytes >= HEADER_BYTES);
            let zeros = [0u8; BLOCK_BYTES];
            let pad_payload = &zeros[..pad_bytes - HEADER_BYTES];
            self.push_record(RecordKind::Pad, FLAG_GROUP_END, 0, 0, &[pad_payload]);
        }
        assert_eq!(head_bytes + self.staged_bytes, group_bytes);
        let buffer = self.buffer.as_mut().unwrap().as_bytes_mut();
        let (head, body) = buffer[..group_bytes].split_at_mut(head_bytes);
        record::encode_group_head(head, self.group, body);
        self.head_bytes_predicted = head_bytes;
        self.group_bytes_last = group_bytes;
        self.records += 1;
        self.sealed_bytes = Some(group_bytes);
    }

    /// Starts the next group, after the sealed one's buffer was taken for its write.
    pub(crate) fn reset(&mut self, group: u32) {
        assert!(self.buffer.is_none(), "the sealed buffer was taken");
        self.records_offset_bytes = self.head_bytes_predicted;
        self.staged_bytes = 0;
        self.sealed_bytes = None;
        self.group = group;
        self.records = 0;
        self.last_record = None;
        self.entry_index_max = None;
        self.hard_state_last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{decode, decode_entry, SECTOR_BYTES};

    fn entry(index: u64, data_bytes: usize) -> Entry {
        Entry {
            index,
            term: 1,
            data: bytes::Bytes::from(vec![index as u8; data_bytes]),
            ..Entry::default()
        }
    }

    /// Runs `test` with a DMA file to allocate buffers from, inside a glommio executor.
    fn with_file(test: impl FnOnce(&DmaFile) + Send + 'static) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buffers");
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let file = DmaFile::create(&path).await.unwrap();
                test(&file);
                file.close().await.unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// The records after the group head (checked against it).
    fn records_of(staging: &Staging) -> Vec<crate::record::Header> {
        let group = staging.sealed_group();
        let parsed = crate::record::decode_group_head(group, 0).unwrap();
        assert_eq!(parsed.group_bytes, group.len());
        assert!(crate::record::group_head_table_valid(group, 0, &parsed));
        let bytes = &group[parsed.head_bytes..];
        for (index, sector) in bytes.chunks_exact(SECTOR_BYTES).enumerate() {
            assert_eq!(
                record::crc32c(&[sector]),
                crate::record::group_head_sector_crc(group, 0, &parsed, index)
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

    /// Seals, returns the group's bytes, and starts the next group (the buffer back in the
    /// cache, as after its write).
    fn seal_and_reset(staging: &mut Staging, file: &DmaFile) -> Vec<u8> {
        staging.seal(file);
        let group = staging.sealed_group().to_vec();
        let buffer = staging.take_sealed();
        assert_eq!(buffer.len(), group.len());
        staging.give_back(buffer);
        staging.reset(staging.group() + 1);
        group
    }

    #[test]
    fn seal_pads_to_block() {
        with_file(|file| {
            let mut staging = Staging::new(BLOCK_BYTES * 4, 9);
            staging
                .stage_entries(file, &[entry(1, 10), entry(2, 100)])
                .unwrap();
            staging.seal(file);
            let headers = records_of(&staging);
            assert_eq!(staging.sealed_len(), BLOCK_BYTES);
            assert_eq!(headers.len(), 3);
            assert_eq!(headers[2].kind, RecordKind::Pad);
            assert!(headers.iter().all(|h| h.group == 9));
            assert_eq!(headers.iter().filter(|h| h.is_group_end()).count(), 1);
            assert!(headers[2].is_group_end());
        });
    }

    #[test]
    fn seal_flags_last_record_when_exactly_aligned() {
        with_file(|file| {
            let mut staging = Staging::new(BLOCK_BYTES * 4, 0);
            // One record that fills the block after a one-sector head: 32 header + 8 prefix +
            // data.
            let data_bytes = BLOCK_BYTES - SECTOR_BYTES - HEADER_BYTES - 8;
            staging
                .stage_entries(file, &[entry(1, data_bytes)])
                .unwrap();
            staging.seal(file);
            let headers = records_of(&staging);
            assert_eq!(headers.len(), 1);
            assert!(headers[0].is_group_end());
            assert_eq!(staging.sealed_len(), BLOCK_BYTES);
            let view = decode(&staging.sealed_group()[SECTOR_BYTES..], 0).unwrap();
            assert_eq!(decode_entry(&view).data.len(), data_bytes);
        });
    }

    #[test]
    fn a_large_group_gets_a_head_of_several_sectors() {
        with_file(|file| {
            let mut staging = Staging::new(BLOCK_BYTES * 64, 3);
            staging
                .stage_entries(file, &(1..=40).map(|i| entry(i, 5000)).collect::<Vec<_>>())
                .unwrap();
            staging.seal(file);
            let group = staging.sealed_group();
            let parsed = crate::record::decode_group_head(group, 0).unwrap();
            assert!(parsed.head_bytes > SECTOR_BYTES);
            assert_eq!(records_of(&staging).len(), 41);
            assert!(staging.sealed_len().is_multiple_of(BLOCK_BYTES));
        });
    }

    #[test]
    fn full_staging_is_refused_without_side_effects() {
        with_file(|file| {
            let mut staging = Staging::new(BLOCK_BYTES, 0);
            staging.stage_entries(file, &[entry(1, 3000)]).unwrap();
            let before = staging.staged_bytes();
            let err = staging
                .stage_entries(file, &[entry(2, 10), entry(3, 2000)])
                .unwrap_err();
            assert!(matches!(err, StorageError::StagingFull { .. }), "{err}");
            assert_eq!(staging.staged_bytes(), before);
            assert_eq!(staging.records(), 1);
        });
    }

    /// The group as the former staging wrote it: records encoded into a vector, then the head
    /// computed over them and put in front (the format's reference layout).
    fn reference_group(group: u32, entries: &[Entry]) -> Vec<u8> {
        fn push(records: &mut Vec<u8>, header: Header, payload: &[u8]) -> usize {
            let start = records.len();
            records.extend_from_slice(&record::encode_test_record(header, payload));
            start
        }
        let header = |kind, flags, index, term| Header {
            len: 0,
            crc: 0,
            kind,
            flags,
            group,
            index,
            term,
        };
        let mut records = Vec::new();
        let mut last = 0;
        for entry in entries {
            let mut payload = record::entry_payload_prefix(entry).to_vec();
            payload.extend_from_slice(&entry.context);
            payload.extend_from_slice(&entry.data);
            last = push(
                &mut records,
                header(RecordKind::Entry, 0, entry.index, entry.term),
                &payload,
            );
        }
        let (head_bytes, group_bytes) = record::group_layout(records.len());
        let pad_bytes = group_bytes - head_bytes - records.len();
        if pad_bytes == 0 {
            // Re-encode the last record flagged.
            let tail = records.split_off(last);
            let view = decode(&tail, 0).unwrap();
            let payload = tail[HEADER_BYTES..HEADER_BYTES + view.header.len as usize].to_vec();
            push(
                &mut records,
                header(
                    RecordKind::Entry,
                    FLAG_GROUP_END,
                    view.header.index,
                    view.header.term,
                ),
                &payload,
            );
        } else {
            push(
                &mut records,
                header(RecordKind::Pad, FLAG_GROUP_END, 0, 0),
                &vec![0u8; pad_bytes - HEADER_BYTES],
            );
        }
        let mut out = vec![0u8; head_bytes];
        record::encode_group_head(&mut out, group, &records);
        out.extend_from_slice(&records);
        assert_eq!(out.len(), group_bytes);
        out
    }

    /// Groups of changing sizes (so that head sizes are mispredicted, buffers outgrown and
    /// reused with older bytes in them) are written byte for byte as the reference layout.
    #[test]
    fn groups_are_byte_for_byte_the_reference_layout_whatever_the_prediction() {
        with_file(|file| {
            let mut staging = Staging::new(BLOCK_BYTES * 1024, 0);
            let mut index = 1;
            // Entry sizes (bytes) per group: small, large (head of many sectors), small again,
            // exactly aligned, empty, larger than any buffer so far staged entry by entry.
            let groups: [&[usize]; 7] = [
                &[10, 100],
                &[170_000; 8],
                &[170_000; 8],
                &[3000],
                &[BLOCK_BYTES - SECTOR_BYTES - HEADER_BYTES - 8],
                &[],
                &[150_000; 20],
            ];
            for (number, sizes) in groups.iter().enumerate() {
                let entries: Vec<Entry> = sizes
                    .iter()
                    .map(|size| {
                        index += 1;
                        entry(index, *size)
                    })
                    .collect();
                if number == 6 {
                    for entry in &entries {
                        staging
                            .stage_entries(file, std::slice::from_ref(entry))
                            .unwrap();
                    }
                } else {
                    staging.stage_entries(file, &entries).unwrap();
                }
                let group = staging.group();
                let written = seal_and_reset(&mut staging, file);
                assert!(
                    written == reference_group(group, &entries),
                    "group {number}"
                );
            }
            // Small to large and back mispredicted; large staged record by record outgrew its
            // buffer; the second large group was predicted.
            assert!(staging.records_moved >= 2, "{}", staging.records_moved);
            assert!(staging.buffers_grown >= 1, "{}", staging.buffers_grown);
        });
    }

    /// Under steady group sizes only the first group's head is mispredicted: the others are
    /// sealed where they were staged, with no copy, in the same two buffers.
    #[test]
    fn steady_groups_are_sealed_in_place() {
        with_file(|file| {
            let mut staging = Staging::new(BLOCK_BYTES * 1024, 0);
            let mut index = 0;
            for _ in 0..10 {
                let entries: Vec<Entry> = (0..8)
                    .map(|_| {
                        index += 1;
                        entry(index, 168_012)
                    })
                    .collect();
                staging.stage_entries(file, &entries).unwrap();
                seal_and_reset(&mut staging, file);
            }
            assert_eq!(staging.records_moved, 1);
            assert_eq!(staging.buffers_grown, 0);
            assert_eq!(staging.dma_cache().misses, 1);
        });
    }
}
