//! `aurigraph token`: bearer tokens for the node's tokens file (`--tokens`).

use aurigraph_wire::tokens::{add_to_file, new_token, Role, TokensError};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a new random token, add its SHA-256 to the tokens file (created, mode 0600, when
    /// missing) and print the token once on stdout: the file never holds it, so keep it.
    /// Nodes read the file at start (`aurigraph node --tokens FILE`).
    New {
        /// The tokens file to add it to.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// What the token may do: `gateway` (gateway mode: submit for the custodial accounts
        /// whose genesis allocation says `"controller": "gateway:NAME"`) or `admin` (membership
        /// changes: `aurigraph validators --token-file`).
        #[arg(long, value_enum, default_value_t = RoleArg::Gateway)]
        role: RoleArg,
        /// The gateway's name, or the operator's for an admin token (named in the audit log):
        /// 1 to 64 characters of A-Z a-z 0-9 . _ -.
        #[arg(long, value_name = "NAME")]
        name: String,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RoleArg {
    Gateway,
    Admin,
}

pub fn run(command: TokenCommand) -> Result<(), TokensError> {
    match command {
        TokenCommand::New { file, role, name } => {
            let role = match role {
                RoleArg::Gateway => Role::Gateway,
                RoleArg::Admin => Role::Admin,
            };
            let (token, entry) = new_token(role, &name)?;
            add_to_file(&file, entry)?;
            println!("{token}");
            eprintln!(
                "aurigraph: {} token of {name:?} added to {} (restart the nodes that read it)",
                role.as_str(),
                file.display()
            );
            Ok(())
        }
    }
}
