//! Snapshot files: a shard's state (opaque bytes: the engine's rkyv archive) plus the Raft
//! snapshot metadata, checksummed, written atomically (tmp file, fsync, rename, directory fsync).
//!
//! File `snap-<index, 20 digits>.snap`, little-endian:
//!
//! | offset | size | field                                                       |
//! |--------|------|-------------------------------------------------------------|
//! | 0      | 8    | magic `AURSNAP1`                                            |
//! | 8      | 4    | version (1)                                                 |
//! | 12     | 4    | crc32c of every byte from offset 16 to the end of the file  |
//! | 16     | 8    | index                                                       |
//! | 24     | 8    | term                                                        |
//! | 32     | 8    | data length in bytes                                        |
//! | 40     | 1    | conf_state.auto_leave (0 or 1)                              |
//! | 41     | 3    | reserved, 0                                                 |
//! | 44     | 4    | number of voters                                            |
//! | 48     | 4    | number of learners                                          |
//! | 52     | 4    | number of voters_outgoing                                   |
//! | 56     | 4    | number of learners_next                                     |
//! | 60     | 4    | reserved, 0                                                 |
//! | 64     | 8×n  | voters, learners, voters_outgoing, learners_next (u64 each) |
//! | …      | …    | data                                                        |
//!
//! The functions are synchronous (std::fs) so that tests and benches can call them directly;
//! `ShardLog` runs them on glommio's blocking thread pool.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use raft::eraftpb::{ConfState, SnapshotMetadata};

use crate::error::StorageError;
use crate::fs_util;
use crate::record::crc32c;

const MAGIC: &[u8; 8] = b"AURSNAP1";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 64;
/// Offset of the first checksummed byte.
const CHECKSUMMED_FROM: usize = 16;
/// Bound on each membership list; a Raft group this large is not a thing we run.
pub const MEMBERS_MAX: usize = 4096;

const PREFIX: &str = "snap-";
const SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".tmp";
const INDEX_DIGITS: usize = 20;

fn snapshot_file_name(index: u64, suffix: &str) -> String {
    format!("{PREFIX}{index:0width$}{suffix}", width = INDEX_DIGITS)
}

fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != INDEX_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Header and membership lists: everything before the data.
fn encode_meta(meta: &SnapshotMetadata, data_bytes: usize) -> Result<Vec<u8>, StorageError> {
    let conf = meta.get_conf_state();
    let lists: [&[u64]; 4] = [
        &conf.voters,
        &conf.learners,
        &conf.voters_outgoing,
        &conf.learners_next,
    ];
    for list in lists {
        if list.len() > MEMBERS_MAX {
            return Err(StorageError::Invalid(format!(
                "snapshot conf state lists {} members, more than {MEMBERS_MAX}",
                list.len()
            )));
        }
    }
    let ids: usize = lists.iter().map(|list| list.len()).sum();
    let mut out = Vec::with_capacity(HEADER_BYTES + ids * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // crc, filled in by the caller
    out.extend_from_slice(&meta.index.to_le_bytes());
    out.extend_from_slice(&meta.term.to_le_bytes());
    out.extend_from_slice(&(data_bytes as u64).to_le_bytes());
    out.push(conf.auto_leave as u8);
    out.extend_from_slice(&[0u8; 3]);
    for list in lists {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(out.len(), HEADER_BYTES);
    for list in lists {
        for id in list {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    Ok(out)
}

/// Writes `snap-<index>.tmp`, fsyncs it, renames it to `.snap`, fsyncs the directory, then deletes
/// older snapshots and leftover temporary files. Returns the path of the new snapshot.
/// The metadata of a snapshot at `index` (of `term`) under configuration `conf`.
pub fn snapshot_metadata(index: u64, term: u64, conf: ConfState) -> SnapshotMetadata {
    let mut meta = SnapshotMetadata {
        index,
        term,
        ..SnapshotMetadata::default()
    };
    meta.set_conf_state(conf);
    meta
}

pub fn write_snapshot(
    dir: &Path,
    meta: &SnapshotMetadata,
    data: &[u8],
) -> Result<PathBuf, StorageError> {
    write_snapshot_paced(dir, meta, data, None)
}

/// [`write_snapshot`], sending the data to the disk at no more than `bytes_per_sec` (`None` or
/// 0: as fast as the disk takes it).
pub fn write_snapshot_paced(
    dir: &Path,
    meta: &SnapshotMetadata,
    data: &[u8],
    bytes_per_sec: Option<u64>,
) -> Result<PathBuf, StorageError> {
    if meta.index == 0 {
        return Err(StorageError::Invalid("snapshot at index 0".into()));
    }
    fs_util::create_dir_durable(dir)?;
    let mut head = encode_meta(meta, data.len())?;
    let crc = crc32c(&[&head[CHECKSUMMED_FROM..], data]);
    head[12..16].copy_from_slice(&crc.to_le_bytes());

    let tmp_path = dir.join(snapshot_file_name(meta.index, TMP_SUFFIX));
    let final_path = dir.join(snapshot_file_name(meta.index, SUFFIX));
    {
        let mut file = std::fs::File::create(&tmp_path)
            .map_err(|e| StorageError::io("creating snapshot", &tmp_path, e))?;
        file.write_all(&head)
            .and_then(|()| write_in_pieces(&mut file, head.len() as u64, data, bytes_per_sec))
            .map_err(|e| StorageError::io("writing snapshot", &tmp_path, e))?;
        file.sync_all()
            .map_err(|e| StorageError::io("syncing snapshot", &tmp_path, e))?;
    }
    std::fs::rename(&tmp_path, &final_path)
        .map_err(|e| StorageError::io("renaming snapshot", &tmp_path, e))?;
    fs_util::fsync_dir(dir)?;

    // Old snapshots are dead weight now, freed a piece at a time (`free_gradually`: on a
    // file system with online discard, 55 MB freed at once held group commits up). No
    // directory fsync after deleting them: one that survives a crash, whole or shrunk, is
    // harmless, the newest (checksummed) is the one read.
    for (path, index) in list_dir(dir)?.snapshots {
        if index < meta.index {
            crate::background::free_gradually(&path)
                .map_err(|e| StorageError::io("deleting old snapshot", &path, e))?;
        }
    }
    Ok(final_path)
}

/// How much of a snapshot is written to the page cache before it is sent to the disk and
/// waited for.
const WRITE_PIECE_BYTES: usize = 1 << 20;

/// Writes `data` at `offset` (where the file's end is) a piece at a time, each sent to the disk
/// and waited for before the next is written, and the pieces paced to `bytes_per_sec`. Written
/// whole and then synced, a snapshot of ~95 MB reached the disk as one burst that every WAL
/// group commit queued behind (each one's fdatasync waits for the disk's queue): batch latency
/// rose to 30-90 ms for the second it took (docs/benchmarks.md, "Background writes, paced: the
/// long-run half-load tail"). In pieces, a group commit waits behind one piece at most; paced,
/// the disk is the WAL's most of the time.
fn write_in_pieces(
    file: &mut std::fs::File,
    offset: u64,
    data: &[u8],
    bytes_per_sec: Option<u64>,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let pace = crate::background::Pace::new(bytes_per_sec);
    let mut at = offset;
    for piece in data.chunks(WRITE_PIECE_BYTES) {
        pace.wait_for(at - offset);
        file.write_all(piece)?;
        // SAFETY: a plain syscall on an open file descriptor.
        let rc = unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                at as libc::off64_t,
                piece.len() as libc::off64_t,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        at += piece.len() as u64;
    }
    Ok(())
}

struct Listing {
    snapshots: Vec<(PathBuf, u64)>,
    tmp_files: Vec<PathBuf>,
}

fn list_dir(dir: &Path) -> Result<Listing, StorageError> {
    let mut listing = Listing {
        snapshots: Vec::new(),
        tmp_files: Vec::new(),
    };
    let read_dir = std::fs::read_dir(dir).map_err(|e| StorageError::io("listing", dir, e))?;
    for dir_entry in read_dir {
        let dir_entry = dir_entry.map_err(|e| StorageError::io("listing", dir, e))?;
        let name = dir_entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(index) = parse_snapshot_file_name(name) {
            listing.snapshots.push((dir_entry.path(), index));
        } else if name.starts_with(PREFIX) && name.ends_with(TMP_SUFFIX) {
            listing.tmp_files.push(dir_entry.path());
        }
    }
    Ok(listing)
}

/// The newest snapshot in `dir`, verified. A damaged newest snapshot is an error naming the file:
/// falling back to an older one would silently move the state back in time, while the WAL was
/// compacted past it. Leftover `.tmp` files (a crash during `write_snapshot`) are deleted.
pub fn read_latest_snapshot(
    dir: &Path,
) -> Result<Option<(SnapshotMetadata, Vec<u8>)>, StorageError> {
    if !dir.exists() {
        return Ok(None);
    }
    let listing = list_dir(dir)?;
    for path in &listing.tmp_files {
        tracing::info!(file = %path.display(), "deleting leftover temporary snapshot");
        std::fs::remove_file(path)
            .map_err(|e| StorageError::io("deleting leftover snapshot", path, e))?;
    }
    let Some((path, index)) = listing
        .snapshots
        .into_iter()
        .max_by_key(|(_, index)| *index)
    else {
        return Ok(None);
    };
    let (meta, data) = read_snapshot_file(&path)?;
    if meta.index != index {
        return Err(StorageError::corrupt(
            &path,
            16,
            format!("snapshot index {} does not match its file name", meta.index),
        ));
    }
    Ok(Some((meta, data)))
}

fn read_snapshot_file(path: &Path) -> Result<(SnapshotMetadata, Vec<u8>), StorageError> {
    let corrupt = |offset: u64, reason: String| StorageError::corrupt(path, offset, reason);
    let mut file =
        std::fs::File::open(path).map_err(|e| StorageError::io("opening snapshot", path, e))?;
    let file_bytes = file
        .metadata()
        .map_err(|e| StorageError::io("reading metadata of", path, e))?
        .len();
    if file_bytes < HEADER_BYTES as u64 {
        return Err(corrupt(
            0,
            format!("file of {file_bytes} bytes is shorter than the header"),
        ));
    }
    let mut header = [0u8; HEADER_BYTES];
    file.read_exact(&mut header)
        .map_err(|e| StorageError::io("reading snapshot", path, e))?;
    if &header[0..8] != MAGIC {
        return Err(corrupt(0, "bad magic".into()));
    }
    let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap());
    let version = u32_at(8);
    if version != VERSION {
        return Err(corrupt(8, format!("unknown version {version}")));
    }
    let crc_expected = u32_at(12);
    let counts = [u32_at(44), u32_at(48), u32_at(52), u32_at(56)];
    let data_bytes = u64_at(32);
    // Check sizes before allocating anything they imply.
    if counts.iter().any(|count| *count as usize > MEMBERS_MAX) {
        return Err(corrupt(44, "impossible membership list length".into()));
    }
    let ids_bytes: u64 = counts.iter().map(|count| *count as u64 * 8).sum();
    let expected_bytes = (HEADER_BYTES as u64 + ids_bytes).checked_add(data_bytes);
    if expected_bytes != Some(file_bytes) {
        return Err(corrupt(
            32,
            format!("file is {file_bytes} bytes but its header implies {expected_bytes:?}"),
        ));
    }

    let mut ids = vec![0u8; ids_bytes as usize];
    let mut data = vec![0u8; data_bytes as usize];
    file.read_exact(&mut ids)
        .and_then(|()| file.read_exact(&mut data))
        .map_err(|e| StorageError::io("reading snapshot", path, e))?;
    let crc = crc32c(&[&header[CHECKSUMMED_FROM..], &ids, &data]);
    if crc != crc_expected {
        return Err(corrupt(
            12,
            format!("checksum mismatch (stored {crc_expected:#010x}, computed {crc:#010x})"),
        ));
    }
    // Checked after the checksum: with a valid checksum these are bugs, not torn bytes.
    let auto_leave = match header[40] {
        0 => false,
        1 => true,
        other => return Err(corrupt(40, format!("auto_leave byte {other}"))),
    };
    if header[41..44].iter().any(|b| *b != 0) || u32_at(60) != 0 {
        return Err(corrupt(41, "reserved bytes not zero".into()));
    }

    let mut id_values = ids
        .chunks_exact(8)
        .map(|chunk| u64::from_le_bytes(chunk.try_into().unwrap()));
    let mut take = |count: u32| -> Vec<u64> { id_values.by_ref().take(count as usize).collect() };
    let conf = ConfState {
        voters: take(counts[0]),
        learners: take(counts[1]),
        voters_outgoing: take(counts[2]),
        learners_next: take(counts[3]),
        auto_leave,
        ..ConfState::default()
    };

    if u64_at(16) == 0 {
        return Err(corrupt(16, "snapshot at index 0".into()));
    }
    let mut meta = SnapshotMetadata {
        index: u64_at(16),
        term: u64_at(24),
        ..SnapshotMetadata::default()
    };
    meta.set_conf_state(conf);
    Ok((meta, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            snapshot_file_name(12, SUFFIX),
            "snap-00000000000000000012.snap"
        );
        assert_eq!(
            parse_snapshot_file_name("snap-00000000000000000012.snap"),
            Some(12)
        );
        assert_eq!(
            parse_snapshot_file_name("snap-00000000000000000012.tmp"),
            None
        );
        assert_eq!(parse_snapshot_file_name("snap-12.snap"), None);
    }

    #[test]
    fn a_paced_snapshot_reads_back_whole_and_takes_its_pace() {
        let dir = tempfile::tempdir().unwrap();
        // Three and a half pieces at 10 pieces a second: the 4th piece is due 0.3 s in.
        let data: Vec<u8> = (0..WRITE_PIECE_BYTES * 7 / 2).map(|i| i as u8).collect();
        let meta = snapshot_metadata(9, 2, ConfState::from((vec![1], vec![])));
        let started = std::time::Instant::now();
        write_snapshot_paced(
            dir.path(),
            &meta,
            &data,
            Some(WRITE_PIECE_BYTES as u64 * 10),
        )
        .unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_millis(300));
        let (read_meta, read_data) = read_latest_snapshot(dir.path()).unwrap().unwrap();
        assert_eq!(read_meta.index, 9);
        assert_eq!(read_data, data);
        // Unpaced, and a newer snapshot replaces it.
        let meta = snapshot_metadata(10, 2, ConfState::from((vec![1], vec![])));
        write_snapshot_paced(dir.path(), &meta, &data[..5], None).unwrap();
        let (read_meta, read_data) = read_latest_snapshot(dir.path()).unwrap().unwrap();
        assert_eq!((read_meta.index, &read_data[..]), (10, &data[..5]));
    }
}
