//! `aurigraph backup create|verify|restore`: a running validator's state, copied out,
//! checked, and restored into a fresh data directory (`aurigraph_engine::backup`).

use aurigraph_engine::backup::{self, BackupError};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum BackupCommand {
    /// Take a backup of a running validator through its admin endpoint (a token of role
    /// admin), without stopping it: every shard's state at its applied index, and the genesis.
    /// Writes DIR (created; refused if it exists and is not empty) and prints each shard's
    /// log position and state hash. Everything acknowledged before it started is in it.
    Create {
        /// The validator's base URL (its admin listener when it has one).
        #[arg(long, value_name = "URL")]
        node: String,
        /// A file holding an admin token (`aurigraph token new --role admin`).
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        /// The backup directory to write.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Check a backup without a node: every file's length and SHA-256, the genesis, and every
    /// shard's state decoded with the log position and state hash the manifest records.
    Verify {
        /// The backup directory.
        dir: PathBuf,
    },
    /// Verify a backup, then write a fresh data directory from it: the genesis and each
    /// shard's state as its snapshot. `aurigraph node --data-dir DATA_DIR` then starts from
    /// the backup's positions (a single validator; see docs/operations.md for a cluster).
    Restore {
        /// The backup directory.
        dir: PathBuf,
        /// The data directory to create (refused if it exists and is not empty).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BackupCommandError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("{0}")]
    Fetch(String),
}

pub fn run(command: BackupCommand) -> Result<(), BackupCommandError> {
    match command {
        BackupCommand::Create {
            node,
            token_file,
            out,
        } => {
            let token = aurigraph_client::http::read_token_file(&token_file, "--token-file")
                .map_err(BackupCommandError::Fetch)?;
            let body = aurigraph_client::backup::fetch(&node, &token)
                .map_err(|e| BackupCommandError::Fetch(format!("backup from {node}: {e}")))?;
            let manifest = backup::write_dir(&body, &out)?;
            for s in &manifest.shards {
                println!(
                    "shard {} index {} term {} state hash {} ({} bytes)",
                    s.shard, s.index, s.term, s.state_hash, s.file.bytes
                );
            }
            eprintln!(
                "aurigraph: backup of chain {} ({} shards, {} bytes) written to {}",
                manifest.chain_id,
                manifest.shards.len(),
                body.len(),
                out.display()
            );
        }
        BackupCommand::Verify { dir } => {
            let (_, verified) = backup::verify_dir(&dir)?;
            print_verified(&verified);
            eprintln!("aurigraph: {} verified", dir.display());
        }
        BackupCommand::Restore { dir, data_dir } => {
            let verified = backup::restore_dir(&dir, &data_dir)?;
            print_verified(&verified);
            eprintln!(
                "aurigraph: restored into {}; start it with aurigraph node --data-dir {}",
                data_dir.display(),
                data_dir.display()
            );
        }
    }
    Ok(())
}

fn print_verified(verified: &backup::Verified) {
    for (shard, index, hash) in verified {
        println!("shard {shard} index {index} state hash {hash}");
    }
}
