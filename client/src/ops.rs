//! Requests of the command-line tools over [`Client`]: one signed transfer (`aurigraph
//! transfer`, also over gRPC with [`GrpcClient`]), the chain id and an account's nonce.

use crate::grpc::{outcome_json, GrpcClient, GrpcError};
use crate::http::{Client, ClientError, ErrorKind, UrlError, DEFAULT_TIMEOUT};
use aurigraph_wire::record::{address_of, Address, Transfer};
use ed25519_dalek::SigningKey;

/// What went wrong asking a node something.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A 2xx reply without the field asked for.
    #[error("GET {url}: the reply has no {field} ({hint})")]
    MissingField {
        url: String,
        field: &'static str,
        hint: &'static str,
    },
}

/// What went wrong with `aurigraph transfer`.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error("account {from} has used nonce {highest}, the largest possible")]
    NonceExhausted { from: Address, highest: u64 },
    /// The node decided the transfer, and not `OK`.
    #[error("transfer not accepted: {status} {code}")]
    NotAccepted { status: String, code: String },
    #[error("transfer has no result yet (status {0})")]
    NoResultYet(String),
    #[error("the node's reply has no \"result\"")]
    NoResult,
}

impl From<ClientError> for TransferError {
    fn from(e: ClientError) -> TransferError {
        TransferError::Request(RequestError::Client(e))
    }
}

/// One transfer to sign and submit.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    /// Node to submit to (`http://HOST:PORT`; with [`transfer_grpc`], its gRPC address).
    pub node: String,
    pub to: Address,
    pub amount: u64,
    pub asset: u32,
    /// Nonce to sign; `None`: the sender's highest spent nonce, from the node, plus 1.
    pub nonce: Option<u64>,
    /// Chain id to sign over; `None`: the node's, from `GET /api/v11/info`.
    pub chain_id: Option<u32>,
}

/// Signs and submits one transfer, waiting until it is decided; returns the node's reply.
/// Builds its own tokio runtime: call it outside any runtime.
pub fn transfer(
    request: &TransferRequest,
    key: &SigningKey,
) -> Result<serde_json::Value, TransferError> {
    on_own_runtime(submit(request, key))
}

/// Runs `submission` to its end on a tokio runtime of its own.
fn on_own_runtime(
    submission: impl std::future::Future<Output = Result<serde_json::Value, TransferError>>,
) -> Result<serde_json::Value, TransferError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(TransferError::Runtime)?;
    runtime.block_on(submission)
}

async fn submit(
    request: &TransferRequest,
    key: &SigningKey,
) -> Result<serde_json::Value, TransferError> {
    let client = Client::new(&request.node)?;
    let from = address_of(key);
    let chain_id = match request.chain_id {
        Some(id) => id,
        None => fetch_chain_id(&client).await?,
    };
    let nonce = match request.nonce {
        Some(n) => n,
        None => next_nonce(from, fetch_nonce(&client, &from).await?)?,
    };
    let transfer = transfer_of(request, from, chain_id, nonce);
    let record = transfer.sign(key);
    let body = transfer_json(&transfer, record.signature());
    Ok(client.post_json("/api/v11/transactions", &body).await?)
}

/// [`transfer`] over gRPC: `request.node` is the node's gRPC address (`HOST:PORT` or
/// `http[s]://HOST:PORT`); the chain id comes from `NodeService.Info`, the nonce from
/// `AccountService.GetAccount`, the transfer goes through `TransactionService.SubmitTransaction`.
/// Returns the outcome in the JSON shape of the HTTP reply. Builds its own tokio runtime: call
/// it outside any runtime.
pub fn transfer_grpc(
    request: &TransferRequest,
    key: &SigningKey,
) -> Result<serde_json::Value, TransferError> {
    on_own_runtime(submit_grpc(request, key))
}

async fn submit_grpc(
    request: &TransferRequest,
    key: &SigningKey,
) -> Result<serde_json::Value, TransferError> {
    let client = GrpcClient::connect(&request.node, DEFAULT_TIMEOUT).await?;
    let from = address_of(key);
    let chain_id = match request.chain_id {
        Some(id) => id,
        None => client.info().await?.chain_id,
    };
    let nonce = match request.nonce {
        Some(n) => n,
        None => next_nonce(from, client.account_nonce(&from).await?)?,
    };
    let transfer = transfer_of(request, from, chain_id, nonce);
    let record = transfer.sign(key);
    let outcome = client
        .submit_transfer(&transfer, record.signature())
        .await?;
    Ok(outcome_json(&outcome))
}

/// The nonce after `highest`, the highest `from` has spent.
fn next_nonce(from: Address, highest: u64) -> Result<u64, TransferError> {
    highest
        .checked_add(1)
        .ok_or(TransferError::NonceExhausted { from, highest })
}

fn transfer_of(request: &TransferRequest, from: Address, chain_id: u32, nonce: u64) -> Transfer {
    Transfer {
        chain_id,
        from,
        to: request.to,
        asset: request.asset,
        amount: request.amount,
        nonce,
    }
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
pub async fn fetch_chain_id(client: &Client) -> Result<u32, RequestError> {
    let info = client.get_json("/api/v11/info").await?;
    info.get("chainId")
        .and_then(json_u64)
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| RequestError::MissingField {
            url: format!("{}/api/v11/info", client.base_url()),
            field: "numeric \"chainId\"",
            hint: "pass --chain-id",
        })
}

/// The account's highest spent nonce (`"nonce"` of `GET /api/v11/accounts/{address}`);
/// 0 for an account the node does not know.
pub async fn fetch_nonce(client: &Client, address: &Address) -> Result<u64, RequestError> {
    let path = format!("/api/v11/accounts/{}", address.to_hex());
    match client.get_json(&path).await {
        Ok(account) => {
            account
                .get("nonce")
                .and_then(json_u64)
                .ok_or_else(|| RequestError::MissingField {
                    url: format!("{}{path}", client.base_url()),
                    field: "\"nonce\"",
                    hint: "pass --nonce",
                })
        }
        Err(e) if matches!(e.kind, ErrorKind::Status { status: 404, .. }) => Ok(0),
        Err(e) => Err(e.into()),
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
pub fn check_result(reply: &serde_json::Value) -> Result<(), TransferError> {
    match reply.get("result").and_then(|r| r.as_str()) {
        Some("OK") => Ok(()),
        Some(code) => {
            let status = reply.get("status").and_then(|s| s.as_str()).unwrap_or("?");
            Err(TransferError::NotAccepted {
                status: status.to_string(),
                code: code.to_string(),
            })
        }
        None => match reply.get("status").and_then(|s| s.as_str()) {
            Some(status) => Err(TransferError::NoResultYet(status.to_string())),
            None => Err(TransferError::NoResult),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurigraph_wire::record::Record;
    use ed25519_dalek::{Signature, Verifier};

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
            .unwrap_err()
            .to_string();
        assert!(err.contains("NONCE_REPLAYED"), "{err}");
        assert!(check_result(&serde_json::json!({"status":"PENDING"}))
            .unwrap_err()
            .to_string()
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
