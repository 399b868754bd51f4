//! Binary transfer batches: an rkyv archive of fixed-size records.
//!
//! The batch is the unit that travels from the HTTP edge into the log, over the wire to
//! followers and into apply. It is validated once, with rkyv's checked access, where it enters
//! the process from untrusted bytes; after that the same bytes are read in place.
//!
//! # Layout (for producers in other languages)
//!
//! The archive of `Batch { version: u32, records: Vec<[u8; 168]> }` with rkyv 0.8 in its
//! `little_endian + unaligned + pointer_width_32` format. For a batch of `N` records it is
//! exactly `168 * N + 12` bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 168 × N | the records, back to back (each: 104-byte message ‖ 64-byte signature) |
//! | 168N | 4 | `version`, u32 LE, must be 1 |
//! | 168N + 4 | 4 | relative pointer to the records, i32 LE: `-(168N + 4)` (from this field back to offset 0) |
//! | 168N + 8 | 4 | `N`, u32 LE |
//!
//! `1 <= N <= BATCH_RECORDS_MAX`. Any other length, version, pointer or count is rejected with a
//! precise error. The media type over HTTP is `application/vnd.aurigraph.batch`.

use crate::record::{Record, RECORD_BYTES};
use rkyv::{Archive, Serialize};

/// Upper bound on records per batch: bounds every buffer that holds one batch (11 MiB).
pub const BATCH_RECORDS_MAX: usize = 65_536;
pub const BATCH_VERSION: u32 = 1;
/// Bytes after the records: version, relative pointer, length.
pub const BATCH_FOOTER_BYTES: usize = 12;

/// The archived schema. Only the archived form is used on the hot path; this type documents the
/// schema and lets tests check that [`BatchBuilder`] writes exactly what rkyv would.
#[derive(Archive, Serialize, Debug)]
pub struct Batch {
    pub version: u32,
    pub records: Vec<[u8; RECORD_BYTES]>,
}

/// Why a batch was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error(
        "batch is {bytes} bytes: a batch of N records is 168*N+12 bytes, with 1 <= N <= {max}"
    )]
    BadLength { bytes: usize, max: usize },
    #[error("batch holds {count} records, more than the limit of {max}")]
    TooManyRecords { count: usize, max: usize },
    #[error("batch holds no records")]
    Empty,
    #[error("batch version is {0}, only version 1 is supported")]
    BadVersion(u32),
    #[error("batch footer says {claimed} records but the body holds {actual}")]
    CountMismatch { claimed: u32, actual: usize },
    #[error("batch records pointer is {0}, it must point back to byte 0")]
    BadPointer(i32),
    #[error("batch archive failed validation: {0}")]
    Archive(String),
}

/// A validated batch: a borrowed view of records in the original bytes.
#[derive(Clone, Copy, Debug)]
pub struct BatchView<'a> {
    records: &'a [Record],
}

impl<'a> BatchView<'a> {
    pub fn records(&self) -> &'a [Record] {
        self.records
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Validates untrusted bytes as a batch (rkyv checked access plus the canonical-layout rules
/// above) and returns a zero-copy view of its records.
pub fn decode_batch(bytes: &[u8]) -> Result<BatchView<'_>, BatchError> {
    let length_error = BatchError::BadLength {
        bytes: bytes.len(),
        max: BATCH_RECORDS_MAX,
    };
    if bytes.len() < BATCH_FOOTER_BYTES
        || !(bytes.len() - BATCH_FOOTER_BYTES).is_multiple_of(RECORD_BYTES)
    {
        return Err(length_error);
    }
    let count = (bytes.len() - BATCH_FOOTER_BYTES) / RECORD_BYTES;
    if count == 0 {
        return Err(BatchError::Empty);
    }
    if count > BATCH_RECORDS_MAX {
        return Err(BatchError::TooManyRecords {
            count,
            max: BATCH_RECORDS_MAX,
        });
    }
    // Checked access first: every offset and length in the archive is validated by rkyv.
    let archived = rkyv::access::<ArchivedBatch, rkyv::rancor::Error>(bytes)
        .map_err(|e| BatchError::Archive(e.to_string()))?;
    let version = archived.version.to_native();
    if version != BATCH_VERSION {
        return Err(BatchError::BadVersion(version));
    }
    let footer = &bytes[bytes.len() - BATCH_FOOTER_BYTES..];
    let pointer = i32::from_le_bytes(footer[4..8].try_into().unwrap());
    let expected_pointer = -((count * RECORD_BYTES + 4) as i64);
    if pointer as i64 != expected_pointer {
        return Err(BatchError::BadPointer(pointer));
    }
    let claimed = archived.records.len();
    if claimed != count {
        return Err(BatchError::CountMismatch {
            claimed: claimed as u32,
            actual: count,
        });
    }
    debug_assert_eq!(archived.records.as_ptr() as *const u8, bytes.as_ptr());
    Ok(BatchView {
        records: records_at_start(bytes, count),
    })
}

/// The records of a batch that [`decode_batch`] accepted earlier, read in place without
/// validating it again: a batch validated where it entered the process, handed on whole.
/// Panics if `bytes` does not have a batch's length (a caller's bug, not bad input).
pub fn records_of_validated(bytes: &[u8]) -> &[Record] {
    assert!(
        bytes.len() > BATCH_FOOTER_BYTES
            && (bytes.len() - BATCH_FOOTER_BYTES).is_multiple_of(RECORD_BYTES),
        "{} bytes are not a validated batch",
        bytes.len()
    );
    records_at_start(bytes, (bytes.len() - BATCH_FOOTER_BYTES) / RECORD_BYTES)
}

/// The first `count` records of `bytes` (which holds at least that many), in place: a batch
/// keeps its records back to back from byte 0.
fn records_at_start(bytes: &[u8], count: usize) -> &[Record] {
    let records = &bytes[..count * RECORD_BYTES];
    // SAFETY: Record is repr(transparent) over [u8; RECORD_BYTES] (alignment 1), and `records`
    // holds exactly `count` of them.
    unsafe { std::slice::from_raw_parts(records.as_ptr() as *const Record, count) }
}

/// Writes batches in the layout above without an intermediate `Vec<[u8; 168]>`: records are
/// copied once into the output buffer, then the footer is appended.
#[derive(Debug)]
pub struct BatchBuilder {
    bytes: Vec<u8>,
    count: usize,
    records_max: usize,
}

impl BatchBuilder {
    /// `records_max` bounds the batch (at most `BATCH_RECORDS_MAX`).
    pub fn with_capacity(records_max: usize) -> BatchBuilder {
        assert!((1..=BATCH_RECORDS_MAX).contains(&records_max));
        BatchBuilder {
            bytes: Vec::new(),
            count: 0,
            records_max,
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn is_full(&self) -> bool {
        self.count == self.records_max
    }

    /// Appends one record. Panics if full: callers check `is_full` (a bound, not an error).
    /// Sizes the next batch's buffer for `records` records (at most the builder's bound), so
    /// that it is allocated once at its real size: the bytes become a log entry, and a buffer
    /// sized for the maximum would be allocated (and its pages committed) for every entry.
    pub fn reserve_records(&mut self, records: usize) {
        let records = records.clamp(1, self.records_max);
        let wanted = records * RECORD_BYTES + BATCH_FOOTER_BYTES;
        if self.bytes.capacity() < wanted {
            self.bytes.reserve_exact(wanted - self.bytes.len());
        }
    }

    pub fn push(&mut self, record: &Record) {
        assert!(!self.is_full(), "batch builder is full");
        self.bytes.extend_from_slice(&record.0);
        self.count += 1;
    }

    /// Drops the batch being built.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }

    /// Finishes the batch and resets the builder for reuse (keeps no allocation: the bytes move
    /// out, as they become a log entry; the next batch allocates on its first push, sized by
    /// [`BatchBuilder::reserve_records`] when called). A buffer less than half used is moved to
    /// one of its size (a log entry keeps its buffer until a snapshot; mimalloc, the node's
    /// allocator, shrinks a block by at most half in place, without a copy).
    pub fn finish(&mut self) -> Vec<u8> {
        assert!(self.count >= 1, "a batch holds at least one record");
        let records_bytes = self.count * RECORD_BYTES;
        self.bytes.extend_from_slice(&BATCH_VERSION.to_le_bytes());
        self.bytes
            .extend_from_slice(&(-((records_bytes + 4) as i64) as i32).to_le_bytes());
        self.bytes
            .extend_from_slice(&(self.count as u32).to_le_bytes());
        self.count = 0;
        let mut bytes = std::mem::take(&mut self.bytes);
        if bytes.len() < bytes.capacity() / 2 {
            bytes.shrink_to_fit();
        }
        bytes
    }
}

/// Convenience: encodes records as one batch.
pub fn encode_batch(records: &[Record]) -> Vec<u8> {
    let mut builder = BatchBuilder::with_capacity(records.len().max(1));
    builder.reserve_records(records.len());
    for r in records {
        builder.push(r);
    }
    builder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Address, Transfer};

    fn record(n: u64) -> Record {
        Transfer {
            chain_id: 7,
            from: Address([n as u8; 32]),
            to: Address([2; 32]),
            asset: 0,
            amount: n + 1,
            nonce: n,
        }
        .with_signature(&[n as u8; 64])
    }

    #[test]
    fn builder_writes_exactly_what_rkyv_writes() {
        for n in [1usize, 2, 7] {
            let records: Vec<Record> = (0..n as u64).map(record).collect();
            let ours = encode_batch(&records);
            let schema = Batch {
                version: BATCH_VERSION,
                records: records.iter().map(|r| r.0).collect(),
            };
            let theirs = rkyv::to_bytes::<rkyv::rancor::Error>(&schema).unwrap();
            assert_eq!(ours, theirs.as_slice(), "n = {n}");
            assert_eq!(ours.len(), n * 168 + 12);
            let view = decode_batch(&ours).unwrap();
            assert_eq!(view.records(), &records[..]);
            assert_eq!(view.records().as_ptr() as *const u8, ours.as_ptr());
        }
    }

    #[test]
    fn a_validated_batch_reads_back_the_same_records_in_place() {
        let bytes = encode_batch(&[record(1), record(2), record(3)]);
        let view = decode_batch(&bytes).unwrap();
        let again = records_of_validated(&bytes);
        assert_eq!(again, view.records());
        assert_eq!(again.as_ptr() as *const u8, bytes.as_ptr());
        let caught = std::panic::catch_unwind(|| records_of_validated(&bytes[1..]).len());
        assert!(caught.is_err(), "a length no batch has is refused");
    }

    #[test]
    fn decodes_at_any_alignment() {
        let bytes = encode_batch(&[record(1), record(2)]);
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        let view = decode_batch(&shifted[1..]).unwrap();
        assert_eq!(view.len(), 2);
    }

    #[test]
    fn malformed_batches_get_precise_errors() {
        let good = encode_batch(&[record(1), record(2)]);
        assert!(matches!(
            decode_batch(&[]),
            Err(BatchError::BadLength { .. })
        ));
        assert!(matches!(
            decode_batch(&good[..good.len() - 1]),
            Err(BatchError::BadLength { .. })
        ));
        assert_eq!(decode_batch(&[0u8; 12]).unwrap_err(), BatchError::Empty);

        let mut bad_version = good.clone();
        let at = 2 * 168;
        bad_version[at..at + 4].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(
            decode_batch(&bad_version).unwrap_err(),
            BatchError::BadVersion(9)
        );

        let mut bad_count = good.clone();
        let at = good.len() - 4;
        bad_count[at..].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            decode_batch(&bad_count),
            Err(BatchError::CountMismatch { .. })
        ));

        let mut too_long = good.clone();
        too_long[at..].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            decode_batch(&too_long),
            Err(BatchError::Archive(_))
        ));

        let mut bad_pointer = good.clone();
        let at = good.len() - 8;
        bad_pointer[at..at + 4].copy_from_slice(&(-4i32).to_le_bytes());
        assert!(decode_batch(&bad_pointer).is_err());
        bad_pointer[at..at + 4].copy_from_slice(&1_000_000i32.to_le_bytes());
        assert!(matches!(
            decode_batch(&bad_pointer),
            Err(BatchError::Archive(_))
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..2000 {
            let n = rng.gen_range(0..3) * 168 + 12;
            let mut bytes = vec![0u8; n];
            rng.fill(&mut bytes[..]);
            let _ = decode_batch(&bytes);
        }
    }
}
