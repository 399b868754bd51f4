//! `aurigraph transfer`: sign one transfer with a key file and submit it to a node.

use aurigraph_client::grpc::DEFAULT_GRPC_ADDR;
use aurigraph_client::ops::{self, TransferError, TransferRequest};
use aurigraph_wire::keyfile::{self, KeyFileError};
use aurigraph_wire::record::Address;
use std::path::PathBuf;

/// Sign and submit one transfer (waits until it is committed and prints the node's reply).
#[derive(clap::Args, Debug, Clone)]
pub struct TransferArgs {
    /// Key file of the sender (written by `aurigraph keygen`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Receiver's address (64 hex characters).
    #[arg(long, value_name = "ADDRESS")]
    pub to: String,
    /// Amount to transfer (a positive integer).
    #[arg(long, value_name = "N")]
    pub amount: u64,
    /// Asset (0 is the native asset).
    #[arg(long, value_name = "A", default_value_t = 0)]
    pub asset: u32,
    /// Node to submit to (not used with --grpc).
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:9003",
        env = "AURIGRAPH_NODE"
    )]
    pub node: String,
    /// Nonce to sign [default: the sender's highest spent nonce, from the node, plus 1].
    #[arg(long, value_name = "N")]
    pub nonce: Option<u64>,
    /// Chain id to sign over [default: the node's, from GET /api/v11/info, or over gRPC
    /// from NodeService.Info].
    #[arg(long, value_name = "ID")]
    pub chain_id: Option<u32>,
    /// Submit over gRPC (TransactionService.SubmitTransaction; the chain id and nonce come from
    /// the node's gRPC API too) instead of HTTP, to --grpc-addr. Prints the same reply.
    #[arg(long)]
    pub grpc: bool,
    /// With --grpc: the node's gRPC address, HOST:PORT (plaintext HTTP/2) or
    /// http://HOST:PORT or https://HOST:PORT (TLS trusting the platform's CAs, or those of
    /// SSL_CERT_FILE) [default: 127.0.0.1:9004, the node's --grpc-addr default]. A node also
    /// serves gRPC on its HTTP port.
    #[arg(long, value_name = "HOST:PORT", requires = "grpc")]
    pub grpc_addr: Option<String>,
}

/// Why `aurigraph transfer` failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferCommandError {
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("--to: {0}")]
    To(String),
    #[error(transparent)]
    Transfer(#[from] TransferError),
}

/// Runs the command: prints the node's reply; an error unless the transfer is `OK`.
pub fn run(args: TransferArgs) -> Result<(), TransferCommandError> {
    let key = keyfile::read_key(&args.key)?;
    let to = Address::from_hex(&args.to).map_err(TransferCommandError::To)?;
    let node = match (args.grpc, args.grpc_addr) {
        (true, Some(addr)) => addr,
        (true, None) => DEFAULT_GRPC_ADDR.to_string(),
        (false, _) => args.node,
    };
    let request = TransferRequest {
        node,
        to,
        amount: args.amount,
        asset: args.asset,
        nonce: args.nonce,
        chain_id: args.chain_id,
    };
    let reply = if args.grpc {
        ops::transfer_grpc(&request, &key)?
    } else {
        ops::transfer(&request, &key)?
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&reply).expect("JSON prints")
    );
    Ok(ops::check_result(&reply)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: TransferArgs,
    }

    #[test]
    fn arguments_have_the_documented_defaults() {
        let cli = Cli::try_parse_from([
            "x",
            "--key",
            "k.json",
            "--to",
            &"ab".repeat(32),
            "--amount",
            "5",
        ])
        .unwrap();
        assert_eq!(cli.args.asset, 0);
        assert_eq!(cli.args.nonce, None);
        assert_eq!(cli.args.chain_id, None);
        assert!(!cli.args.grpc);
        assert_eq!(cli.args.grpc_addr, None);
        if std::env::var_os("AURIGRAPH_NODE").is_none() {
            assert_eq!(cli.args.node, "http://127.0.0.1:9003");
        }
        assert!(Cli::try_parse_from(["x", "--key", "k", "--to", "ab"]).is_err());
    }

    #[test]
    fn grpc_addr_goes_with_grpc() {
        let to = "ab".repeat(32);
        let base = ["x", "--key", "k.json", "--to", &to, "--amount", "5"];
        let with = |extra: &[&str]| Cli::try_parse_from(base.iter().chain(extra));
        let cli = with(&["--grpc", "--grpc-addr", "10.0.0.1:9004"]).unwrap();
        assert!(cli.args.grpc);
        assert_eq!(cli.args.grpc_addr.as_deref(), Some("10.0.0.1:9004"));
        assert!(with(&["--grpc"]).unwrap().args.grpc_addr.is_none());
        let err = with(&["--grpc-addr", "10.0.0.1:9004"]).err().unwrap();
        assert!(err.to_string().contains("--grpc"), "{err}");
    }
}
