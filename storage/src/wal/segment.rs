//! Segment files: names, listing, and what the WAL remembers about each.

use std::path::{Path, PathBuf};

use crate::error::StorageError;

const SEGMENT_SUFFIX: &str = ".wal";
const SEGMENT_DIGITS: usize = 20;

/// What the WAL knows about one segment file.
#[derive(Clone, Debug)]
pub(crate) struct SegmentInfo {
    pub seq: u64,
    pub path: PathBuf,
    /// Bytes of complete groups: the write offset of the next group when this segment is active.
    /// Always a multiple of `BLOCK_BYTES`.
    pub bytes: u64,
    /// Largest entry index written to this segment (None: no entries), to decide compaction.
    pub entry_index_max: Option<u64>,
}

pub(crate) fn segment_file_name(seq: u64) -> String {
    format!("{seq:0width$}{SEGMENT_SUFFIX}", width = SEGMENT_DIGITS)
}

pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Suffix of a compacted segment being deleted: the log never reads it.
const DOOMED_SUFFIX: &str = ".deleting";

/// The name a compacted segment takes while it is being deleted.
pub(crate) fn doomed_name(segment: &Path) -> PathBuf {
    let mut name = segment.as_os_str().to_owned();
    name.push(DOOMED_SUFFIX);
    PathBuf::from(name)
}

/// Deletes what a previous run left of compacted segments being deleted (whole or shrunk).
pub(crate) fn remove_doomed(dir: &Path) -> Result<(), StorageError> {
    let read_dir = std::fs::read_dir(dir).map_err(|e| StorageError::io("listing", dir, e))?;
    for dir_entry in read_dir {
        let dir_entry = dir_entry.map_err(|e| StorageError::io("listing", dir, e))?;
        let name = dir_entry.file_name();
        let doomed = name
            .to_str()
            .and_then(|n| n.strip_suffix(DOOMED_SUFFIX))
            .is_some_and(|n| parse_segment_file_name(n).is_some());
        if doomed {
            let path = dir_entry.path();
            std::fs::remove_file(&path)
                .map_err(|e| StorageError::io("deleting a compacted segment", &path, e))?;
        }
    }
    Ok(())
}

/// The segment files of `dir`, oldest first. Segment numbers must be contiguous: a hole means a
/// lost file, and replaying around it could resurrect overwritten entries.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let read_dir = std::fs::read_dir(dir).map_err(|e| StorageError::io("listing", dir, e))?;
    let mut segments = Vec::new();
    for dir_entry in read_dir {
        let dir_entry = dir_entry.map_err(|e| StorageError::io("listing", dir, e))?;
        let name = dir_entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match parse_segment_file_name(name) {
            Some(seq) => segments.push((seq, dir_entry.path())),
            None => {
                if name.ends_with(SEGMENT_SUFFIX) {
                    tracing::warn!(file = %dir_entry.path().display(), "ignoring oddly named WAL file");
                }
            }
        }
    }
    segments.sort_by_key(|(seq, _)| *seq);
    for pair in segments.windows(2) {
        let (seq_a, _) = &pair[0];
        let (seq_b, path_b) = &pair[1];
        if *seq_b != seq_a + 1 {
            return Err(StorageError::corrupt(
                path_b,
                0,
                format!(
                    "segment {} is missing (found {} after it)",
                    segment_file_name(seq_a + 1),
                    segment_file_name(*seq_b)
                ),
            ));
        }
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_doomed_segments_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let segment = dir.path().join(segment_file_name(7));
        let doomed = doomed_name(&dir.path().join(segment_file_name(6)));
        let other = dir.path().join("notes.deleting");
        for path in [&segment, &doomed, &other] {
            std::fs::write(path, b"x").unwrap();
        }
        remove_doomed(dir.path()).unwrap();
        assert!(!doomed.exists());
        assert!(segment.exists() && other.exists());
        // The log does not read a doomed segment either.
        let found: Vec<u64> = list_segments(dir.path())
            .unwrap()
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(found, vec![7]);
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(7), "00000000000000000007.wal");
        assert_eq!(parse_segment_file_name("00000000000000000007.wal"), Some(7));
        assert_eq!(parse_segment_file_name("7.wal"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000x.wal"), None);
        assert_eq!(parse_segment_file_name("00000000000000000007.tmp"), None);
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
    }
}
