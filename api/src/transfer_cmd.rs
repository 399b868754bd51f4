//! `aurigraph transfer`: sign one transfer with a key file and submit it to a node.

use crate::client::{Client, ErrorKind};
use crate::keys;
use aurigraph_engine::record::{address_of, Address, Transfer};
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
    /// Node to submit to.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:9003",
        env = "AURIGRAPH_NODE"
    )]
    pub node: String,
    /// Nonce to sign [default: the sender's highest accepted nonce, from the node, plus 1].
    #[arg(long, value_name = "N")]
    pub nonce: Option<u64>,
    /// Chain id to sign over [default: the node's, from GET /api/v11/info].
    #[arg(long, value_name = "ID")]
    pub chain_id: Option<u32>,
}

/// Runs the command. Builds its own tokio runtime: call it outside any runtime.
pub fn run(args: TransferArgs) -> Result<(), String> {
    let key = keys::read_key(&args.key)?;
    let to = Address::from_hex(&args.to).map_err(|e| format!("--to: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    let reply = runtime.block_on(submit(&args, &key, to))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&reply).expect("JSON prints")
    );
    check_result(&reply)
}

async fn submit(
    args: &TransferArgs,
    key: &ed25519_dalek::SigningKey,
    to: Address,
) -> Result<serde_json::Value, String> {
    let client = Client::new(&args.node)?;
    let from = address_of(key);
    let chain_id = match args.chain_id {
        Some(id) => id,
        None => fetch_chain_id(&client).await?,
    };
    let nonce = match args.nonce {
        Some(n) => n,
        None => {
            let highest = fetch_nonce(&client, &from).await?;
            highest.checked_add(1).ok_or_else(|| {
                format!("account {from} has used nonce {highest}, the largest possible")
            })?
        }
    };
    let transfer = Transfer {
        chain_id,
        from,
        to,
        asset: args.asset,
        amount: args.amount,
        nonce,
    };
    let record = transfer.sign(key);
    let body = transfer_json(&transfer, record.signature());
    Ok(client.post_json("/api/v11/transactions", &body).await?)
}

/// The V11 JSON body of one signed transfer.
pub fn transfer_json(t: &Transfer, signature: &[u8; 64]) -> serde_json::Value {
    serde_json::json!({
        "fromAddress": t.from.to_hex(),
        "toAddress": t.to.to_hex(),
        "amount": t.amount.to_string(),
        "asset": t.asset,
        "nonce": t.nonce.to_string(),
        "chainId": t.chain_id,
        "signature": hex::encode(signature),
        "transactionType": "TRANSFER",
    })
}

/// `chainId` from `GET /api/v11/info`.
pub async fn fetch_chain_id(client: &Client) -> Result<u32, String> {
    let info = client.get_json("/api/v11/info").await?;
    info.get("chainId")
        .and_then(json_u64)
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| {
            format!(
                "GET {}/api/v11/info: the reply has no numeric \"chainId\" (pass --chain-id)",
                client.base_url()
            )
        })
}

/// The account's highest accepted nonce (`"nonce"` of `GET /api/v11/accounts/{address}`);
/// 0 for an account the node does not know.
pub async fn fetch_nonce(client: &Client, address: &Address) -> Result<u64, String> {
    let path = format!("/api/v11/accounts/{}", address.to_hex());
    match client.get_json(&path).await {
        Ok(account) => account.get("nonce").and_then(json_u64).ok_or_else(|| {
            format!(
                "GET {}{path}: the reply has no \"nonce\" (pass --nonce)",
                client.base_url()
            )
        }),
        Err(e) if matches!(e.kind, ErrorKind::Status { status: 404, .. }) => Ok(0),
        Err(e) => Err(e.to_string()),
    }
}

/// A u64 given as a JSON number or a decimal string.
pub fn json_u64(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `Ok` when the reply's `result` is `OK`; otherwise an error naming the result.
pub fn check_result(reply: &serde_json::Value) -> Result<(), String> {
    match reply.get("result").and_then(|r| r.as_str()) {
        Some("OK") => Ok(()),
        Some(code) => {
            let status = reply.get("status").and_then(|s| s.as_str()).unwrap_or("?");
            Err(format!("transfer not accepted: {status} {code}"))
        }
        None => match reply.get("status").and_then(|s| s.as_str()) {
            Some(status) => Err(format!("transfer has no result yet (status {status})")),
            None => Err("the node's reply has no \"result\"".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurigraph_engine::record::Record;
    use clap::Parser;
    use ed25519_dalek::{Signature, Verifier};

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
        if std::env::var_os("AURIGRAPH_NODE").is_none() {
            assert_eq!(cli.args.node, "http://127.0.0.1:9003");
        }
        assert!(Cli::try_parse_from(["x", "--key", "k", "--to", "ab"]).is_err());
    }

    #[test]
    fn json_body_carries_a_signature_over_the_contract_message() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let t = Transfer {
            chain_id: 7,
            from: address_of(&key),
            to: Address([9; 32]),
            asset: 2,
            amount: u64::MAX,
            nonce: 12,
        };
        let record: Record = t.sign(&key);
        let body = transfer_json(&t, record.signature());
        assert_eq!(body["amount"], "18446744073709551615");
        assert_eq!(body["nonce"], "12");
        assert_eq!(body["asset"], 2);
        assert_eq!(body["chainId"], 7);
        assert_eq!(body["transactionType"], "TRANSFER");
        assert_eq!(body["fromAddress"], t.from.to_hex());
        let sig_hex = body["signature"].as_str().unwrap();
        assert_eq!(sig_hex.len(), 128);
        let mut sig = [0u8; 64];
        hex::decode_to_slice(sig_hex, &mut sig).unwrap();
        key.verifying_key()
            .verify(&t.message(), &Signature::from_bytes(&sig))
            .unwrap();
    }

    #[test]
    fn results_other_than_ok_are_errors() {
        assert!(check_result(&serde_json::json!({"status":"CONFIRMED","result":"OK"})).is_ok());
        let err = check_result(&serde_json::json!({"status":"REJECTED","result":"NONCE_REPLAYED"}))
            .unwrap_err();
        assert!(err.contains("NONCE_REPLAYED"), "{err}");
        assert!(check_result(&serde_json::json!({"status":"PENDING"}))
            .unwrap_err()
            .contains("PENDING"));
        assert!(check_result(&serde_json::json!({})).is_err());
    }

    #[test]
    fn json_numbers_or_strings() {
        assert_eq!(json_u64(&serde_json::json!("42")), Some(42));
        assert_eq!(json_u64(&serde_json::json!(42)), Some(42));
        assert_eq!(json_u64(&serde_json::json!(-1)), None);
        assert_eq!(json_u64(&serde_json::json!(null)), None);
    }
}
