//! Backups: a consistent, checksummed copy of every shard's state at one log position per
//! shard, taken from a running node (`Engine::backup`), checked, and restored into a fresh
//! data directory from which a node starts as from its own snapshots.
//!
//! A backup is a directory: `manifest.json`, `genesis.json` (the data directory's, byte for
//! byte) and one `shard-NNNN.snap` per shard (the shard's state archive, as its snapshots hold
//! it). The manifest records each file's length and SHA-256, and per shard the log position
//! (index, term), the membership at it and the state hash, so that a backup is verified
//! without a node: every checksum, every archive decoded, and its state hash recomputed.
//!
//! Over HTTP (`GET /api/v11/admin/backup`) the same files travel as one body
//! ([`BACKUP_MEDIA_TYPE`]): the magic line, the manifest's length (u32 LE) and the manifest,
//! then the files in the manifest's order.

use crate::datadir::{DataDir, GENESIS_FILE};
use crate::runtime::ShardBackup;
use crate::state_snapshot::decode_state;
use raft::eraftpb::{ConfState, SnapshotMetadata};
use sha2::{Digest, Sha256};
use std::path::Path;

pub const BACKUP_MEDIA_TYPE: &str = "application/vnd.aurigraph.backup";
/// The first bytes of a backup body.
pub const MAGIC: &[u8] = b"AURIGRAPH-BACKUP-1\n";
pub const MANIFEST_FILE: &str = "manifest.json";
/// The only manifest format this code reads.
pub const FORMAT: u32 = 1;
/// Bound on a manifest (shards × a few hundred bytes).
const MANIFEST_BYTES_MAX: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub chain_id: u32,
    /// Wall-clock milliseconds since the epoch when the node took it.
    pub created_at_ms: u64,
    pub genesis: FileEntry,
    pub shards: Vec<ShardEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShardEntry {
    pub shard: u32,
    pub file: FileEntry,
    /// The log position the state is at.
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    pub learners_next: Vec<u64>,
    pub auto_leave: bool,
    /// The shard's state hash at `index` (32 lowercase hex characters).
    pub state_hash: String,
}

/// Why a backup was refused.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn invalid(message: impl Into<String>) -> BackupError {
    BackupError::Invalid(message.into())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn file_entry(name: String, bytes: &[u8]) -> FileEntry {
    FileEntry {
        name,
        bytes: bytes.len() as u64,
        sha256: sha256_hex(bytes),
    }
}

pub fn shard_file_name(shard: u32) -> String {
    format!("shard-{shard:04}.snap")
}

/// Builds the body of `GET /api/v11/admin/backup` from the data directory's genesis bytes and
/// every shard's part (in shard order).
pub fn encode(chain_id: u32, genesis: &[u8], shards: &[ShardBackup], now_ms: u64) -> Vec<u8> {
    let manifest = Manifest {
        format: FORMAT,
        chain_id,
        created_at_ms: now_ms,
        genesis: file_entry(GENESIS_FILE.into(), genesis),
        shards: shards
            .iter()
            .enumerate()
            .map(|(shard, b)| {
                let shard = shard as u32;
                ShardEntry {
                    shard,
                    file: file_entry(shard_file_name(shard), &b.data),
                    index: b.index,
                    term: b.term,
                    voters: b.conf.voters.clone(),
                    learners: b.conf.learners.clone(),
                    voters_outgoing: b.conf.voters_outgoing.clone(),
                    learners_next: b.conf.learners_next.clone(),
                    auto_leave: b.conf.auto_leave,
                    state_hash: format!("{:032x}", b.state_hash),
                }
            })
            .collect(),
    };
    let manifest = serde_json::to_vec(&manifest).expect("a manifest serializes");
    let mut out = Vec::with_capacity(
        MAGIC.len()
            + 4
            + manifest.len()
            + genesis.len()
            + shards.iter().map(|s| s.data.len()).sum::<usize>(),
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    out.extend_from_slice(&manifest);
    out.extend_from_slice(genesis);
    for s in shards {
        out.extend_from_slice(&s.data);
    }
    out
}

/// A backup's files: name and bytes, in the manifest's order.
pub type Files<'a> = Vec<(String, &'a [u8])>;

/// Splits a backup body into its manifest and its files (checked: lengths and checksums).
pub fn decode(body: &[u8]) -> Result<(Manifest, Files<'_>), BackupError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| invalid("not a backup (the body does not start with its magic line)"))?;
    if rest.len() < 4 {
        return Err(invalid("backup truncated before its manifest"));
    }
    let length = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
    if length > MANIFEST_BYTES_MAX || rest.len() < 4 + length {
        return Err(invalid(format!(
            "backup manifest of {length} bytes: truncated or too large"
        )));
    }
    let manifest = parse_manifest(&rest[4..4 + length])?;
    let mut files = Vec::new();
    let mut at = &rest[4 + length..];
    for entry in std::iter::once(&manifest.genesis).chain(manifest.shards.iter().map(|s| &s.file)) {
        let n = usize::try_from(entry.bytes).map_err(|_| invalid("file too large"))?;
        if at.len() < n {
            return Err(invalid(format!("backup truncated inside {}", entry.name)));
        }
        let (bytes, next) = at.split_at(n);
        check_file(entry, bytes)?;
        files.push((entry.name.clone(), bytes));
        at = next;
    }
    if !at.is_empty() {
        return Err(invalid(format!("{} bytes after the last file", at.len())));
    }
    Ok((manifest, files))
}

fn parse_manifest(bytes: &[u8]) -> Result<Manifest, BackupError> {
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not valid: {e}")))?;
    if manifest.format != FORMAT {
        return Err(invalid(format!(
            "manifest format {} (this node reads format {FORMAT})",
            manifest.format
        )));
    }
    for (i, s) in manifest.shards.iter().enumerate() {
        if s.shard != i as u32 || s.file.name != shard_file_name(s.shard) {
            return Err(invalid(format!(
                "manifest lists shard {} out of place",
                s.shard
            )));
        }
    }
    if manifest.genesis.name != GENESIS_FILE || manifest.shards.is_empty() {
        return Err(invalid("manifest lacks the genesis or every shard"));
    }
    Ok(manifest)
}

fn check_file(entry: &FileEntry, bytes: &[u8]) -> Result<(), BackupError> {
    if bytes.len() as u64 != entry.bytes {
        return Err(invalid(format!(
            "{}: {} bytes, the manifest says {}",
            entry.name,
            bytes.len(),
            entry.bytes
        )));
    }
    let sha = sha256_hex(bytes);
    if sha != entry.sha256 {
        return Err(invalid(format!(
            "{}: SHA-256 {sha}, the manifest says {}",
            entry.name, entry.sha256
        )));
    }
    Ok(())
}

/// Writes a backup body's files into `dir` (created; refused when it exists and is not empty),
/// each fsynced, the manifest last.
pub fn write_dir(body: &[u8], dir: &Path) -> Result<Manifest, BackupError> {
    let (manifest, files) = decode(body)?;
    ensure_empty(dir)?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for (name, bytes) in files {
        let path = dir.join(name);
        crate::datadir::write_durably(&path, bytes).map_err(io(&path))?;
    }
    let path = dir.join(MANIFEST_FILE);
    let text = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    crate::datadir::write_durably(&path, &text).map_err(io(&path))?;
    Ok(manifest)
}

fn ensure_empty(dir: &Path) -> Result<(), BackupError> {
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            return Err(invalid(format!(
                "{} exists and is not empty: refusing to write into it",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// What a verified backup holds, per shard: (shard, index, state hash).
pub type Verified = Vec<(u32, u64, String)>;

/// Checks a backup directory: every file's length and SHA-256, the genesis, and every shard's
/// archive decoded with its applied index and state hash as the manifest says.
pub fn verify_dir(dir: &Path) -> Result<(Manifest, Verified), BackupError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    let manifest = parse_manifest(&bytes)?;
    let read = |entry: &FileEntry| -> Result<Vec<u8>, BackupError> {
        let path = dir.join(&entry.name);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        check_file(entry, &bytes)?;
        Ok(bytes)
    };
    let genesis = read(&manifest.genesis)?;
    let genesis = aurigraph_wire::genesis::Genesis::from_json(
        std::str::from_utf8(&genesis).map_err(|_| invalid("genesis.json is not UTF-8"))?,
    )
    .map_err(|e| invalid(format!("genesis.json: {e}")))?;
    if genesis.shards != Some(manifest.shards.len() as u32) {
        return Err(invalid(format!(
            "the genesis has {:?} shards, the backup {}",
            genesis.shards,
            manifest.shards.len()
        )));
    }
    let mut verified = Vec::new();
    for s in &manifest.shards {
        let data = read(&s.file)?;
        let state = decode_state(&data).map_err(|e| {
            invalid(format!(
                "{}: the state archive does not decode: {e}",
                s.file.name
            ))
        })?;
        let hash = format!("{:032x}", state.state_hash());
        if state.shard() != s.shard || state.applied_index() != s.index || hash != s.state_hash {
            return Err(invalid(format!(
                "{}: holds shard {} at index {} with state hash {hash}; the manifest says shard \
                 {} at {} with {}",
                s.file.name,
                state.shard(),
                state.applied_index(),
                s.shard,
                s.index,
                s.state_hash
            )));
        }
        verified.push((s.shard, s.index, hash));
    }
    Ok((manifest, verified))
}

/// Restores a verified backup into `data_dir` (created; refused when it exists and is not
/// empty): the genesis, and each shard's state as its snapshot at the backup's log position.
/// A node started on it recovers from those snapshots, as after its own.
pub fn restore_dir(backup: &Path, data_dir: &Path) -> Result<Verified, BackupError> {
    let (manifest, verified) = verify_dir(backup)?;
    ensure_empty(data_dir)?;
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let genesis_path = data_dir.join(GENESIS_FILE);
    let genesis = std::fs::read(backup.join(GENESIS_FILE)).map_err(io(backup))?;
    crate::datadir::write_durably(&genesis_path, &genesis).map_err(io(&genesis_path))?;
    for s in &manifest.shards {
        let data = std::fs::read(backup.join(&s.file.name)).map_err(io(backup))?;
        let mut meta = SnapshotMetadata {
            index: s.index,
            term: s.term,
            ..Default::default()
        };
        meta.set_conf_state(ConfState {
            voters: s.voters.clone(),
            learners: s.learners.clone(),
            voters_outgoing: s.voters_outgoing.clone(),
            learners_next: s.learners_next.clone(),
            auto_leave: s.auto_leave,
            ..Default::default()
        });
        let snap_dir = DataDir::shard_dir(data_dir, s.shard).join("snap");
        aurigraph_storage::write_snapshot(&snap_dir, &meta, &data)
            .map_err(|e| invalid(format!("writing {}: {e}", snap_dir.display())))?;
    }
    Ok(verified)
}
