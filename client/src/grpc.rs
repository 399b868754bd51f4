//! A small gRPC client of the node (package `aurigraph.v11`, `proto/aurigraph/v11/*.proto`):
//! one signed transfer, one binary batch, a `SubmitStream` of batches, and the node's identity,
//! health and an account's nonce — what `aurigraph transfer --grpc` and
//! `aurigraph bench --protocol grpc` need.
//!
//! One [`GrpcClient`] is one HTTP/2 connection (tonic's `Channel` on the caller's tokio
//! runtime), its calls multiplexed on it. Each core of the node accepts connections of its own
//! (`SO_REUSEPORT`), so a load meant to spread over the cores opens several clients, as the HTTP
//! load opens several connections. `http://` is plaintext HTTP/2 (prior knowledge); `https://`
//! is TLS (ALPN `h2`) trusting the platform's CAs, as the HTTP client does (`SSL_CERT_FILE` or
//! `SSL_CERT_DIR` when set, e.g. `SSL_CERT_FILE=ca.pem` for a development CA of
//! `aurigraph certs`). A gateway token goes in `authorization: Bearer` metadata, as over HTTP.
//!
//! Errors name the RPC and the URL, and carry the node's UPPER_SNAKE error code (its
//! `aurigraph-error-code` metadata: the code `{"error":{"code"}}` carries over HTTP) when the
//! node sent one. A batch's compact results are decoded by the HTTP client's decoder, so both
//! protocols read them alike.

use crate::http::{decode_compact_results, normalize_base_url, Code, TxResult, UrlError};
use aurigraph_proto::v11::account_service_client::AccountServiceClient;
use aurigraph_proto::v11::node_service_client::NodeServiceClient;
use aurigraph_proto::v11::submit_batch_request::Body;
use aurigraph_proto::v11::transaction_service_client::TransactionServiceClient;
use aurigraph_proto::v11::{
    GetAccountRequest, HealthRequest, HealthResponse, InfoRequest, InfoResponse, Outcome,
    ResultCode, ResultFormat, SubmitBatchRequest, SubmitBatchResponse, SubmitTransactionRequest,
    TransactionStatus,
};
use aurigraph_wire::record::{Address, Transfer};
use bytes::Bytes;
use std::fmt;
use std::future::Future;
use std::time::Duration;
use tonic::codec::Streaming;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::Code as GrpcCode;

/// Where `aurigraph node` serves gRPC unless told otherwise (its `--grpc-addr` default).
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:9004";
/// Connecting gives up after this long (as the HTTP client's connector does).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers larger than this are refused (tonic's own default is 4 MiB, below a full batch's
/// outcomes: 65,536 × ~60 B); the HTTP client's bound on replies.
pub const ANSWER_BYTES_MAX: usize = 64 << 20;
/// The metadata key of the node's UPPER_SNAKE error code (api/src/grpc/status.rs).
pub const ERROR_CODE_KEY: &str = "aurigraph-error-code";
/// Batches of one `SubmitStream` the node decides at once (proto/aurigraph/v11/
/// transactions.proto); more in flight only wait in its queue.
pub const STREAM_DEPTH_MAX: usize = 16;

/// What went wrong with one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcErrorKind {
    /// Could not connect, or the connection failed mid-call: no status came from the node.
    Transport(String),
    /// No answer within the client's timeout.
    Timeout(Duration),
    /// The node answered a status other than OK. `api_code` is its UPPER_SNAKE code (e.g.
    /// `OVERLOADED`) when it sent one.
    Status {
        code: GrpcCode,
        api_code: Option<String>,
        message: String,
    },
    /// The answer could not be understood.
    Decode(String),
}

/// The `rpc` of an error in connecting, before any call.
const CONNECT: &str = "connect";

/// An error of one call: which RPC, to which node, what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcError {
    /// The RPC's method name (e.g. `SubmitBatch`), or `connect`.
    pub rpc: &'static str,
    pub url: String,
    pub kind: GrpcErrorKind,
}

impl GrpcError {
    /// The node's UPPER_SNAKE error code, when it sent one.
    pub fn api_code(&self) -> Option<&str> {
        match &self.kind {
            GrpcErrorKind::Status { api_code, .. } => api_code.as_deref(),
            _ => None,
        }
    }

    /// A short key for grouping errors in summaries (e.g. `gRPC RESOURCE_EXHAUSTED OVERLOADED`).
    pub fn short(&self) -> String {
        match &self.kind {
            GrpcErrorKind::Transport(_) => "transport error".into(),
            GrpcErrorKind::Timeout(_) => "timeout".into(),
            GrpcErrorKind::Status {
                code,
                api_code: Some(api),
                ..
            } => format!("gRPC {} {api}", code_name(*code)),
            GrpcErrorKind::Status { code, .. } => format!("gRPC {}", code_name(*code)),
            GrpcErrorKind::Decode(_) => "undecodable reply".into(),
        }
    }
}

impl fmt::Display for GrpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rpc == CONNECT {
            write!(f, "gRPC: cannot connect to {}: ", self.url)?;
        } else {
            write!(f, "gRPC {} {}: ", self.rpc, self.url)?;
        }
        match &self.kind {
            GrpcErrorKind::Transport(e) => write!(f, "{e}"),
            GrpcErrorKind::Timeout(d) => write!(f, "no answer within {:.1} s", d.as_secs_f64()),
            GrpcErrorKind::Status {
                code,
                api_code,
                message,
            } => {
                write!(f, "status {}", code_name(*code))?;
                if let Some(api) = api_code {
                    write!(f, " {api}")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            GrpcErrorKind::Decode(e) => write!(f, "cannot decode the answer: {e}"),
        }
    }
}

impl std::error::Error for GrpcError {}

/// The name of a gRPC status code as the gRPC documentation spells it (`INVALID_ARGUMENT`).
pub fn code_name(code: GrpcCode) -> &'static str {
    match code {
        GrpcCode::Ok => "OK",
        GrpcCode::Cancelled => "CANCELLED",
        GrpcCode::Unknown => "UNKNOWN",
        GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
        GrpcCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
        GrpcCode::NotFound => "NOT_FOUND",
        GrpcCode::AlreadyExists => "ALREADY_EXISTS",
        GrpcCode::PermissionDenied => "PERMISSION_DENIED",
        GrpcCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
        GrpcCode::FailedPrecondition => "FAILED_PRECONDITION",
        GrpcCode::Aborted => "ABORTED",
        GrpcCode::OutOfRange => "OUT_OF_RANGE",
        GrpcCode::Unimplemented => "UNIMPLEMENTED",
        GrpcCode::Internal => "INTERNAL",
        GrpcCode::Unavailable => "UNAVAILABLE",
        GrpcCode::DataLoss => "DATA_LOSS",
        GrpcCode::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A status the client itself made from a failed connection (tonic keeps the cause as its
/// source; statuses read from the node's trailers have none), or a call that never reached
/// the node (tonic's "Service was not ready", made when the connection is gone).
fn is_local(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
        || (status.code() == GrpcCode::Unknown
            && status.message().starts_with("Service was not ready"))
}

/// A status as an error kind: the node's own, or a transport failure the client saw.
fn kind_of(status: &tonic::Status) -> GrpcErrorKind {
    if is_local(status) {
        let head = format!("{}: {}", code_name(status.code()), status.message());
        let text = with_sources(head, std::error::Error::source(status));
        return GrpcErrorKind::Transport(text);
    }
    GrpcErrorKind::Status {
        code: status.code(),
        api_code: status
            .metadata()
            .get(ERROR_CODE_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        message: status.message().to_string(),
    }
}

/// `http://HOST:PORT` or `https://HOST:PORT`; `HOST:PORT` alone means `http://HOST:PORT` (the
/// rules of the HTTP client's node URLs).
pub fn normalize_grpc_url(url: &str) -> Result<String, UrlError> {
    normalize_base_url(url)
}

/// A client of one node's gRPC API. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct GrpcClient {
    channel: Channel,
    url: String,
    timeout: Duration,
    /// `authorization: Bearer` value sent with every call (a gateway token), if any.
    bearer: Option<AsciiMetadataValue>,
}

impl GrpcClient {
    /// Connects to `url` (`http://HOST:PORT`, `https://HOST:PORT`, or `HOST:PORT`): one HTTP/2
    /// connection, opened now so that an unreachable node is an error here. Unary calls give
    /// up after `timeout`. Must be called inside a tokio runtime.
    pub async fn connect(url: &str, timeout: Duration) -> Result<GrpcClient, GrpcError> {
        let url = normalize_grpc_url(url).map_err(|e| GrpcError {
            rpc: CONNECT,
            url: url.to_string(),
            kind: GrpcErrorKind::Transport(e.to_string()),
        })?;
        let fail = |kind| GrpcError {
            rpc: CONNECT,
            url: url.clone(),
            kind,
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| fail(GrpcErrorKind::Transport(format!("invalid URL: {e}"))))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        if url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(|e| fail(GrpcErrorKind::Transport(format!("TLS: {e}"))))?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            let text = with_sources(e.to_string(), std::error::Error::source(&e));
            // The fix of an untrusted (or missing) CA is the HTTP client's: say it.
            let untrusted = text.contains("native") || text.contains("UnknownIssuer");
            if untrusted && url.starts_with("https://") {
                fail(GrpcErrorKind::Transport(format!(
                    "{text}; set SSL_CERT_FILE to a PEM file of the CAs to trust (e.g. the \
                     ca.pem of `aurigraph certs`)"
                )))
            } else {
                fail(GrpcErrorKind::Transport(text))
            }
        })?;
        Ok(GrpcClient {
            channel,
            url,
            timeout,
            bearer: None,
        })
    }

    /// The same client, sending `authorization: Bearer <token>` with every call (gateway mode).
    pub fn with_bearer(mut self, token: &str) -> Result<GrpcClient, UrlError> {
        let value = format!("Bearer {token}")
            .parse::<AsciiMetadataValue>()
            .map_err(|_| UrlError::BadToken)?;
        self.bearer = Some(value);
        Ok(self)
    }

    /// The node's URL, normalized (`http://HOST:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn transactions(&self) -> TransactionServiceClient<Channel> {
        TransactionServiceClient::new(self.channel.clone())
            .max_decoding_message_size(ANSWER_BYTES_MAX)
    }

    /// A request carrying the bearer token, when the client has one.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        request
    }

    fn error(&self, rpc: &'static str, kind: GrpcErrorKind) -> GrpcError {
        GrpcError {
            rpc,
            url: self.url.clone(),
            kind,
        }
    }

    /// Runs one unary call under the client's timeout.
    async fn unary<T>(
        &self,
        rpc: &'static str,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, GrpcError> {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(self.error(rpc, GrpcErrorKind::Timeout(self.timeout))),
            Ok(Err(status)) => Err(self.error(rpc, kind_of(&status))),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }

    /// `NodeService.Info`: the node's id, version, chain id, shards.
    pub async fn info(&self) -> Result<InfoResponse, GrpcError> {
        let mut client = NodeServiceClient::new(self.channel.clone());
        self.unary("Info", client.info(self.request(InfoRequest {})))
            .await
    }

    /// `NodeService.Health`: the checks of `GET /api/v11/health`.
    pub async fn health(&self) -> Result<HealthResponse, GrpcError> {
        let mut client = NodeServiceClient::new(self.channel.clone());
        self.unary("Health", client.health(self.request(HealthRequest {})))
            .await
    }

    /// `AccountService.GetAccount`: the account's highest spent nonce (0 for an address the
    /// node has never seen).
    pub async fn account_nonce(&self, address: &Address) -> Result<u64, GrpcError> {
        let mut client = AccountServiceClient::new(self.channel.clone());
        let request = self.request(GetAccountRequest {
            address: address.0.to_vec(),
        });
        let account = self
            .unary("GetAccount", client.get_account(request))
            .await?;
        Ok(account.nonce)
    }

    /// `TransactionService.SubmitTransaction`: one signed transfer, answered once decided.
    pub async fn submit_transfer(
        &self,
        transfer: &Transfer,
        signature: &[u8; 64],
    ) -> Result<Outcome, GrpcError> {
        let request = self.request(SubmitTransactionRequest {
            transfer: Some(proto_transfer(transfer, signature)),
            detach: false,
        });
        let mut client = self.transactions();
        let answer = self
            .unary("SubmitTransaction", client.submit_transaction(request))
            .await?;
        answer.outcome.ok_or_else(|| {
            self.error(
                "SubmitTransaction",
                GrpcErrorKind::Decode("the answer has no outcome".into()),
            )
        })
    }

    /// `TransactionService.SubmitBatch` of a binary batch of `records` transfers (the bytes of
    /// the HTTP API's `application/vnd.aurigraph.batch`), answered once every transfer is
    /// decided; one result per transfer, in order. `format` asks for compact results or for
    /// `Outcome` messages; either is decoded.
    pub async fn submit_batch(
        &self,
        batch: Bytes,
        records: usize,
        format: ResultFormat,
    ) -> Result<Vec<TxResult>, GrpcError> {
        let request = self.request(batch_request(batch, format, 0));
        let mut client = self.transactions();
        let answer = self
            .unary("SubmitBatch", client.submit_batch(request))
            .await?;
        decode_batch_response(&answer, records)
            .map_err(|e| self.error("SubmitBatch", GrpcErrorKind::Decode(e)))
    }

    /// Opens a `TransactionService.SubmitStream`: batches go in through the [`StreamSender`]
    /// (at most `depth` queued in the client), their answers come back in order from
    /// [`StreamAnswers`]. Dropping the sender ends the stream once its answers are read.
    pub fn open_stream(&self, depth: usize) -> (StreamSender, StreamAnswers) {
        let (tx, rx) = async_channel::bounded::<SubmitBatchRequest>(depth.max(1));
        let request = self.request(rx);
        let mut client = self.transactions();
        // The call runs on its own task: tonic sends the requests while it waits for the
        // answer's headers, so the caller can queue batches before any answer (a node may
        // send nothing until it has read a batch).
        let call = tokio::spawn(async move { client.submit_stream(request).await });
        (
            StreamSender {
                tx,
                url: self.url.clone(),
            },
            StreamAnswers {
                call: Some(call),
                answers: None,
                url: self.url.clone(),
            },
        )
    }

    /// Submits `batches` (binary batches, with their record counts) over one `SubmitStream`
    /// with up to `depth` in flight; returns each batch's results, in order. The first error
    /// ends the stream and is returned.
    pub async fn submit_stream(
        &self,
        batches: Vec<(Bytes, usize)>,
        format: ResultFormat,
        depth: usize,
    ) -> Result<Vec<Vec<TxResult>>, GrpcError> {
        let (sender, mut answers) = self.open_stream(depth);
        let records: Vec<usize> = batches.iter().map(|(_, n)| *n).collect();
        let feeder = tokio::spawn(async move {
            for (id, (batch, _)) in batches.into_iter().enumerate() {
                let request = batch_request(batch, format, id as u64);
                if sender.send(request).await.is_err() {
                    // The stream ended: its answers say why.
                    break;
                }
            }
        });
        let mut results = Vec::with_capacity(records.len());
        for (id, &count) in records.iter().enumerate() {
            let answer = match tokio::time::timeout(self.timeout, answers.next()).await {
                Err(_) => Err(self.error("SubmitStream", GrpcErrorKind::Timeout(self.timeout))),
                Ok(Ok(Some(answer))) => Ok(answer),
                Ok(Ok(None)) => Err(self.error(
                    "SubmitStream",
                    GrpcErrorKind::Decode(format!(
                        "the stream ended after {id} of {} answers",
                        records.len()
                    )),
                )),
                Ok(Err(e)) => Err(e),
            };
            let answer = match answer {
                Ok(answer) => answer,
                Err(e) => {
                    feeder.abort();
                    return Err(e);
                }
            };
            let decoded = check_request_id(&answer, id as u64)
                .and_then(|()| decode_batch_response(&answer, count))
                .map_err(|e| self.error("SubmitStream", GrpcErrorKind::Decode(e)))?;
            results.push(decoded);
        }
        let _ = feeder.await;
        // The node ends the stream with its status once the requests have ended.
        match tokio::time::timeout(self.timeout, answers.next()).await {
            Err(_) => Err(self.error("SubmitStream", GrpcErrorKind::Timeout(self.timeout))),
            Ok(Ok(None)) => Ok(results),
            Ok(Ok(Some(_))) => Err(self.error(
                "SubmitStream",
                GrpcErrorKind::Decode("more answers than batches".into()),
            )),
            Ok(Err(e)) => Err(e),
        }
    }
}

/// The sending half of a `SubmitStream` (cheap to clone; the stream's requests end when every
/// clone is dropped).
#[derive(Clone)]
pub struct StreamSender {
    tx: async_channel::Sender<SubmitBatchRequest>,
    url: String,
}

impl StreamSender {
    /// Queues one batch (waits while the client's queue of `depth` is full). An error means
    /// the stream has ended: [`StreamAnswers::next`] says why.
    pub async fn send(&self, request: SubmitBatchRequest) -> Result<(), GrpcError> {
        self.tx.send(request).await.map_err(|_| GrpcError {
            rpc: "SubmitStream",
            url: self.url.clone(),
            kind: GrpcErrorKind::Transport("the stream has ended".into()),
        })
    }

    /// Ends the stream's requests for every clone (the node answers what it has, then closes).
    pub fn close(&self) {
        self.tx.close();
    }
}

/// The answering half of a `SubmitStream`: one answer per batch, in the order sent.
pub struct StreamAnswers {
    call: Option<
        tokio::task::JoinHandle<
            Result<tonic::Response<Streaming<SubmitBatchResponse>>, tonic::Status>,
        >,
    >,
    answers: Option<Streaming<SubmitBatchResponse>>,
    url: String,
}

impl StreamAnswers {
    /// The next answer; `None` once the node has ended the stream with status OK. Safe to
    /// cancel (e.g. under a timeout) and call again.
    pub async fn next(&mut self) -> Result<Option<SubmitBatchResponse>, GrpcError> {
        let fail = |kind| GrpcError {
            rpc: "SubmitStream",
            url: self.url.clone(),
            kind,
        };
        if let Some(call) = &mut self.call {
            let opened = call.await;
            self.call = None;
            match opened {
                Ok(Ok(response)) => self.answers = Some(response.into_inner()),
                Ok(Err(status)) => return Err(fail(kind_of(&status))),
                Err(e) => {
                    return Err(fail(GrpcErrorKind::Transport(format!(
                        "the call failed: {e}"
                    ))))
                }
            }
        }
        let Some(answers) = &mut self.answers else {
            return Ok(None);
        };
        answers
            .message()
            .await
            .map_err(|status| fail(kind_of(&status)))
    }
}

impl Drop for StreamAnswers {
    fn drop(&mut self) {
        // A stream given up on (an error, a timeout) must not keep its call running.
        if let Some(call) = &self.call {
            call.abort();
        }
    }
}

/// The request of one binary batch (`Bytes`: the batch is shared, not copied, until tonic
/// encodes it).
pub fn batch_request(batch: Bytes, format: ResultFormat, request_id: u64) -> SubmitBatchRequest {
    SubmitBatchRequest {
        body: Some(Body::Batch(batch)),
        detach: false,
        format: format as i32,
        request_id,
    }
}

/// A stream's answers come in the order of its requests; one with another `request_id` means
/// the client has lost track of which batch is which.
pub fn check_request_id(answer: &SubmitBatchResponse, expected: u64) -> Result<(), String> {
    if answer.request_id == expected {
        Ok(())
    } else {
        Err(format!(
            "answer for request {} where request {expected} was expected",
            answer.request_id
        ))
    }
}

/// The results of a batch of `records` transfers: its compact results (decoded exactly as the
/// HTTP API's compact reply) or, when the node answered with `Outcome` messages, those.
pub fn decode_batch_response(
    answer: &SubmitBatchResponse,
    records: usize,
) -> Result<Vec<TxResult>, String> {
    if !answer.compact_results.is_empty() || answer.outcomes.is_empty() {
        return decode_compact_results(&answer.compact_results, records).map_err(|e| e.to_string());
    }
    if answer.outcomes.len() != records {
        return Err(format!(
            "{} outcomes for a batch of {records}",
            answer.outcomes.len()
        ));
    }
    Ok(answer
        .outcomes
        .iter()
        .map(|o| TxResult {
            code: outcome_code(o),
            block: o.block_number,
        })
        .collect())
}

/// An outcome's result code as the HTTP client holds it (an unknown number as `CODE_<n>`, an
/// outcome without a result by its status, e.g. `PENDING`).
fn outcome_code(o: &Outcome) -> Code {
    match o.result {
        Some(r) => match u8::try_from(r) {
            Ok(code) => Code::from_u8(code),
            Err(_) => Code::Other(format!("CODE_{r}")),
        },
        None => Code::Other(status_name(o.status).to_string()),
    }
}

fn status_name(status: i32) -> &'static str {
    TransactionStatus::try_from(status).map_or("TRANSACTION_STATUS_UNKNOWN", |s| s.as_str_name())
}

/// An outcome in the JSON shape of the HTTP API's answer to `POST /api/v11/transactions`:
/// `{"txHash","status","result","shard","blockNumber"}`, or `{"txHash","status","shard"}`
/// while PENDING, so that `aurigraph transfer` prints the same either way.
pub fn outcome_json(o: &Outcome) -> serde_json::Value {
    let tx_hash = hex::encode(&o.tx_hash);
    let status = status_name(o.status);
    match o.result {
        Some(r) => {
            let result = ResultCode::try_from(r)
                .map_or_else(|_| format!("CODE_{r}"), |c| c.as_str_name().to_string());
            serde_json::json!({
                "txHash": tx_hash,
                "status": status,
                "result": result,
                "shard": o.shard,
                "blockNumber": o.block_number,
            })
        }
        None => serde_json::json!({ "txHash": tx_hash, "status": status, "shard": o.shard }),
    }
}

/// One signed transfer as the proto's message (raw bytes, the chain id explicit).
pub fn proto_transfer(t: &Transfer, signature: &[u8; 64]) -> aurigraph_proto::v11::Transfer {
    aurigraph_proto::v11::Transfer {
        from: t.from.0.to_vec(),
        to: t.to.0.to_vec(),
        asset: t.asset,
        amount: t.amount,
        nonce: t.nonce,
        chain_id: Some(t.chain_id),
        signature: signature.to_vec(),
    }
}

/// `text` and then each cause of the source chain it lacks (tonic's transport errors print as
/// "transport error"; the cause is in the chain).
fn with_sources(
    mut text: String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurigraph_wire::compact::encode_compact_results;
    use aurigraph_wire::result::ResultCode as WireCode;

    fn answer(compact: Vec<u8>, outcomes: Vec<Outcome>) -> SubmitBatchResponse {
        SubmitBatchResponse {
            outcomes,
            compact_results: compact,
            ..SubmitBatchResponse::default()
        }
    }

    #[test]
    fn compact_results_decode_as_over_http() {
        let bytes = encode_compact_results([(WireCode::Ok, 42), (WireCode::NonceTooOld, 0)]);
        let decoded = decode_batch_response(&answer(bytes.clone(), vec![]), 2).unwrap();
        assert_eq!(
            decoded,
            crate::http::decode_compact_results(&bytes, 2).unwrap()
        );
        assert!(decoded[0].code.is_ok());
        assert_eq!(decoded[0].block, 42);
        assert_eq!(decoded[1].code.name(), "NONCE_TOO_OLD");
        // A length that does not match the batch is refused, as over HTTP.
        let err = decode_batch_response(&answer(bytes, vec![]), 3).unwrap_err();
        assert!(err.contains("18 bytes, expected 27"), "{err}");
        // An empty answer to a non-empty batch is no answer.
        assert!(decode_batch_response(&answer(vec![], vec![]), 1).is_err());
    }

    #[test]
    fn outcomes_decode_when_the_node_sends_them() {
        let outcome = |result: Option<i32>, block| Outcome {
            tx_hash: vec![1; 32],
            status: if result.is_some() {
                TransactionStatus::Confirmed as i32
            } else {
                TransactionStatus::Pending as i32
            },
            result,
            shard: 1,
            block_number: block,
        };
        let outcomes = vec![
            outcome(Some(ResultCode::Ok as i32), 9),
            outcome(Some(ResultCode::InsufficientFunds as i32), 10),
            outcome(Some(300), 0),
            outcome(None, 0),
        ];
        let decoded = decode_batch_response(&answer(vec![], outcomes.clone()), 4).unwrap();
        assert!(decoded[0].code.is_ok());
        assert_eq!(decoded[0].block, 9);
        assert_eq!(decoded[1].code.name(), "INSUFFICIENT_FUNDS");
        assert_eq!(decoded[2].code, Code::Other("CODE_300".into()));
        assert_eq!(decoded[3].code, Code::Other("PENDING".into()));
        assert!(decode_batch_response(&answer(vec![], outcomes), 3)
            .unwrap_err()
            .contains("4 outcomes for a batch of 3"));
    }

    #[test]
    fn request_ids_must_follow_the_order_sent() {
        let mut a = answer(vec![], vec![]);
        a.request_id = 7;
        assert!(check_request_id(&a, 7).is_ok());
        assert!(check_request_id(&a, 6).unwrap_err().contains("request 7"));
    }

    #[test]
    fn outcomes_print_as_the_http_reply() {
        let o = Outcome {
            tx_hash: vec![0xab; 32],
            status: TransactionStatus::Rejected as i32,
            result: Some(ResultCode::NonceReplayed as i32),
            shard: 3,
            block_number: 17,
        };
        assert_eq!(
            outcome_json(&o),
            serde_json::json!({"txHash": "ab".repeat(32), "status": "REJECTED",
                "result": "NONCE_REPLAYED", "shard": 3, "blockNumber": 17})
        );
        let pending = Outcome {
            status: TransactionStatus::Pending as i32,
            result: None,
            ..o
        };
        assert_eq!(outcome_json(&pending)["status"], "PENDING");
        assert!(outcome_json(&pending).get("result").is_none());
    }

    #[test]
    fn statuses_of_the_node_keep_its_error_code() {
        let mut status = tonic::Status::resource_exhausted("too many transfers wait");
        status
            .metadata_mut()
            .insert(ERROR_CODE_KEY, "OVERLOADED".parse().unwrap());
        let e = GrpcError {
            rpc: "SubmitBatch",
            url: "http://h:1".into(),
            kind: kind_of(&status),
        };
        assert_eq!(e.api_code(), Some("OVERLOADED"));
        assert_eq!(e.short(), "gRPC RESOURCE_EXHAUSTED OVERLOADED");
        assert_eq!(
            e.to_string(),
            "gRPC SubmitBatch http://h:1: status RESOURCE_EXHAUSTED OVERLOADED: too many transfers wait"
        );
        let local = tonic::Status::unknown("Service was not ready: transport error");
        assert!(matches!(kind_of(&local), GrpcErrorKind::Transport(_)));
    }

    #[test]
    fn connection_refused_names_the_url() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Bind then drop a listener to get a port that is (very likely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = rt
            .block_on(GrpcClient::connect(
                &format!("127.0.0.1:{port}"),
                Duration::from_secs(5),
            ))
            .err()
            .expect("nothing listens");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "gRPC: cannot connect to http://127.0.0.1:{port}: "
            )),
            "{text}"
        );
        assert!(matches!(err.kind, GrpcErrorKind::Transport(_)), "{text}");
        let err = rt
            .block_on(GrpcClient::connect("ftp://x:1", Duration::from_secs(1)))
            .err()
            .expect("not a gRPC URL");
        assert!(err.to_string().contains("http://"), "{err}");
    }
}
