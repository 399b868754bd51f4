//! The data directory: the genesis it was created with, and one folder per shard.
//!
//! ```text
//! <data-dir>/genesis.json          canonical genesis (shard count resolved), written once
//! <data-dir>/shards/<s>/wal/       the shard's write-ahead log (the raft log)
//! <data-dir>/shards/<s>/snap/      the shard's latest snapshot
//! ```
//! A node refuses to start when it is given a genesis that differs from the stored one.

use crate::genesis::Genesis;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const GENESIS_FILE: &str = "genesis.json";

pub struct DataDir {
    pub genesis: Genesis,
    pub shard_count: u32,
}

impl DataDir {
    /// Opens `dir`; creates it from `genesis` when it holds no genesis yet. `default_shards`
    /// resolves a genesis without `shards`.
    pub fn open(
        dir: &Path,
        genesis: Option<&Genesis>,
        default_shards: u32,
    ) -> Result<DataDir, String> {
        let path = dir.join(GENESIS_FILE);
        if path.exists() {
            let text = fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let stored = Genesis::from_json(&text)
                .map_err(|e| format!("{} is damaged: {e}", path.display()))?;
            let shard_count = stored
                .shards
                .ok_or_else(|| format!("{} has no shard count", path.display()))?;
            if let Some(given) = genesis {
                let given_shards = given.shards.unwrap_or(shard_count);
                if given.hash(given_shards) != stored.hash(shard_count) {
                    return Err(format!(
                        "the genesis given differs from the one {} was created with ({}); \
                         use the original genesis or a new data directory",
                        dir.display(),
                        path.display()
                    ));
                }
            }
            return Ok(DataDir {
                genesis: stored,
                shard_count,
            });
        }
        let genesis = genesis.ok_or_else(|| {
            format!(
                "{} holds no genesis yet: a genesis is needed to create it",
                dir.display()
            )
        })?;
        let shard_count = genesis.shards.unwrap_or(default_shards.max(1));
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let text = genesis.to_canonical_json(shard_count);
        write_durably(&path, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let mut stored = genesis.clone();
        stored.shards = Some(shard_count);
        Ok(DataDir {
            genesis: stored,
            shard_count,
        })
    }

    pub fn shard_dir(dir: &Path, shard: u32) -> PathBuf {
        dir.join("shards").join(format!("{shard:04}"))
    }
}

/// `dir` made absolute against the working directory (lexically: symbolic links are kept and
/// the directory need not exist yet). A node resolves its data directory once, at start-up, so
/// that every later use names the same directory whatever the working directory becomes, and so
/// that its log shows where the data is. (The storage layer accepts relative paths as well.)
pub fn absolute(dir: &Path) -> Result<PathBuf, String> {
    std::path::absolute(dir)
        .map_err(|e| format!("cannot resolve the data directory {}: {e}", dir.display()))
}

/// temp file, fsync, rename, fsync the directory.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genesis(amount: u64) -> Genesis {
        Genesis::from_json(&format!(
            r#"{{"chainId":7,"allocations":[{{"address":"{}","amount":{amount}}}]}}"#,
            "ab".repeat(32)
        ))
        .unwrap()
    }

    #[test]
    fn absolute_resolves_against_the_working_directory() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            absolute(Path::new("./aurigraph-data")).unwrap(),
            cwd.join("aurigraph-data")
        );
        assert_eq!(absolute(Path::new("a/b")).unwrap(), cwd.join("a/b"));
        assert_eq!(
            absolute(Path::new("/srv/aurigraph")).unwrap(),
            PathBuf::from("/srv/aurigraph")
        );
        assert!(absolute(Path::new("")).is_err());
    }

    #[test]
    fn creates_then_refuses_a_different_genesis() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::open(dir.path(), Some(&genesis(5)), 2).unwrap();
        assert_eq!(d.shard_count, 2);
        // Same genesis (shards resolved either way): fine. No genesis: fine.
        assert_eq!(
            DataDir::open(dir.path(), Some(&genesis(5)), 8)
                .unwrap()
                .shard_count,
            2
        );
        assert!(DataDir::open(dir.path(), None, 8).is_ok());
        let err = DataDir::open(dir.path(), Some(&genesis(6)), 2)
            .err()
            .unwrap();
        assert!(err.contains("differs"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        assert!(DataDir::open(empty.path(), None, 2)
            .err()
            .unwrap()
            .contains("no genesis"));
    }
}
