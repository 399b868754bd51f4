//! What the gRPC suite (grpc.rs) shares: a runtime, the clients of one node, transfers as
//! messages, statuses, raw HTTP/2 calls, and reading event streams.

use aurigraph_proto::v11::account_service_client::AccountServiceClient;
use aurigraph_proto::v11::consensus_service_client::ConsensusServiceClient;
use aurigraph_proto::v11::node_service_client::NodeServiceClient;
use aurigraph_proto::v11::submit_batch_request::Body;
use aurigraph_proto::v11::transaction_service_client::TransactionServiceClient;
use aurigraph_proto::v11::{
    ResultCode, ResultFormat, StartFrom, StreamTransactionEventsRequest, SubmitBatchRequest,
    SubmitBatchResponse, TransactionEvents, TransactionStatus, Transfer, Transfers,
};
use aurigraph_testkit::transfer;
use aurigraph_wire::record::address_of;
use aurigraph_wire::record::Record;
use ed25519_dalek::SigningKey;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;

/// How long anything the tests wait for may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);
/// The metadata key of the HTTP API's UPPER_SNAKE error code.
pub const ERROR_CODE: &str = "aurigraph-error-code";

/// A multi-thread runtime: its workers keep connections and streams going between the
/// `block_on` calls of a test (which stop and start nodes in between).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A channel to `url`, connected (retried while the listener is not up yet).
pub async fn channel(url: &str) -> Channel {
    channel_with(Endpoint::from_shared(url.to_string()).unwrap()).await
}

pub async fn channel_with(endpoint: Endpoint) -> Channel {
    let deadline = Instant::now() + WAIT;
    loop {
        match endpoint.connect().await {
            Ok(channel) => return channel,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no gRPC at {}: {e:?}", endpoint.uri()),
        }
    }
}

/// The clients of every service a node serves, over one connection.
pub struct Clients {
    pub tx: TransactionServiceClient<Channel>,
    pub node: NodeServiceClient<Channel>,
    pub consensus: ConsensusServiceClient<Channel>,
    pub accounts: AccountServiceClient<Channel>,
    pub health: HealthClient<Channel>,
    pub reflection: ServerReflectionClient<Channel>,
}

impl Clients {
    pub async fn connect(url: &str) -> Clients {
        let channel = channel(url).await;
        Clients {
            tx: TransactionServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            node: NodeServiceClient::new(channel.clone()),
            consensus: ConsensusServiceClient::new(channel.clone()),
            accounts: AccountServiceClient::new(channel.clone()),
            health: HealthClient::new(channel.clone()),
            reflection: ServerReflectionClient::new(channel),
        }
    }
}

/// A signed record as the `Transfer` message.
pub fn message(record: &Record) -> Transfer {
    Transfer {
        from: record.from_bytes().to_vec(),
        to: record.to().0.to_vec(),
        asset: record.asset(),
        amount: record.amount(),
        nonce: record.nonce(),
        chain_id: Some(record.chain_id()),
        signature: record.signature().to_vec(),
    }
}

/// `SubmitBatch`'s request with `records` as messages.
pub fn messages(records: &[Record]) -> SubmitBatchRequest {
    SubmitBatchRequest {
        body: Some(Body::Transfers(Transfers {
            transfers: records.iter().map(message).collect(),
        })),
        ..Default::default()
    }
}

/// `SubmitBatch`'s request with `records` as one binary batch.
pub fn binary(records: &[Record]) -> SubmitBatchRequest {
    SubmitBatchRequest {
        body: Some(Body::Batch(
            aurigraph_wire::batch::encode_batch(records).into(),
        )),
        ..Default::default()
    }
}

pub fn ok() -> Option<i32> {
    Some(ResultCode::Ok as i32)
}

/// Submits `records` as one binary batch; every one must be decided OK. Returns the block
/// (shard's log index) of each, by txHash.
pub async fn submit_ok(
    tx: &mut TransactionServiceClient<Channel>,
    records: &[Record],
) -> HashMap<[u8; 32], (u32, u64)> {
    let reply = tx.submit_batch(binary(records)).await.unwrap().into_inner();
    assert_all_ok(&reply, records)
}

/// Checks that `reply` decided every one of `records` OK, in order; their (shard, block) by
/// txHash.
pub fn assert_all_ok(
    reply: &SubmitBatchResponse,
    records: &[Record],
) -> HashMap<[u8; 32], (u32, u64)> {
    assert_eq!(reply.outcomes.len(), records.len(), "{reply:?}");
    assert_eq!(reply.accepted as usize, records.len(), "{reply:?}");
    records
        .iter()
        .zip(&reply.outcomes)
        .map(|(r, o)| {
            assert_eq!(o.tx_hash, r.tx_hash().0, "outcomes in request order");
            assert_eq!(o.status, TransactionStatus::Confirmed as i32, "{o:?}");
            assert_eq!(o.result, ok(), "{o:?}");
            assert!(o.block_number > 0, "{o:?}");
            (r.tx_hash().0, (o.shard, o.block_number))
        })
        .collect()
}

/// A binary batch of `records` answered in the compact format.
pub fn compact(records: &[Record]) -> SubmitBatchRequest {
    SubmitBatchRequest {
        format: ResultFormat::Compact as i32,
        ..binary(records)
    }
}

/// The `aurigraph-error-code` of a status.
pub fn error_code(status: &Status) -> &str {
    status
        .metadata()
        .get(ERROR_CODE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The call failed with `code` (and, unless empty, the API error code `api`).
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, api: &str) {
    match result {
        Ok(answer) => panic!("expected {code:?} {api}, got an answer: {answer:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            if !api.is_empty() {
                assert_eq!(error_code(&status), api, "{status:?}");
            }
        }
    }
}

/// The status a server stream ends with (opening it may fail already); fails the test if it
/// ends without an error.
pub async fn final_status<T>(opened: Result<tonic::Response<Streaming<T>>, Status>) -> Status {
    let mut stream = match opened {
        Err(status) => return status,
        Ok(response) => response.into_inner(),
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => panic!("the stream neither failed nor ended within {WAIT:?}"),
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => panic!("the stream ended with OK"),
            Ok(Err(status)) => return status,
        }
    }
}

/// Polls `GetAccount` until `address` holds `want` of asset 0 (a credit from another shard
/// lands when that shard's marker applies); fails at once if it ever holds more.
pub async fn wait_balance(
    accounts: &mut AccountServiceClient<Channel>,
    address: &aurigraph_wire::record::Address,
    want: u64,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let request = aurigraph_proto::v11::GetAccountRequest {
            address: address.0.to_vec(),
        };
        let account = accounts.get_account(request).await.unwrap().into_inner();
        assert_eq!(account.address, address.0);
        let held = account
            .balances
            .iter()
            .find(|b| b.asset == 0)
            .map_or(0, |b| b.amount);
        assert!(
            held <= want,
            "{address}: {held} > {want}, a transfer applied twice?"
        );
        if held == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{address}: {held}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a stream of transaction events delivered: every message, in order.
#[derive(Default)]
pub struct Seen {
    pub blocks: Vec<TransactionEvents>,
}

impl Seen {
    /// Every event's txHash with its (shard, block), in the order delivered.
    pub fn events(&self) -> Vec<([u8; 32], (u32, u64))> {
        self.blocks
            .iter()
            .flat_map(|b| {
                b.events.iter().map(move |e| {
                    let hash: [u8; 32] = e.tx_hash.as_slice().try_into().expect("32-byte txHash");
                    (hash, (b.shard, b.block_number))
                })
            })
            .collect()
    }

    /// The last block seen of each shard: where a stream resumes.
    pub fn positions(&self) -> BTreeMap<u32, u64> {
        let mut last = BTreeMap::new();
        for b in &self.blocks {
            last.insert(b.shard, b.block_number);
        }
        last
    }

    /// Reads `stream` until `done(self)`; fails the test on an error, an end, or after
    /// [`WAIT`].
    pub async fn read_until(
        &mut self,
        stream: &mut Streaming<TransactionEvents>,
        done: impl Fn(&Seen) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(self) {
            match tokio::time::timeout_at(deadline, stream.message()).await {
                Err(_) => panic!("{} events after {WAIT:?}", self.events().len()),
                Ok(Ok(Some(block))) => self.blocks.push(block),
                Ok(Ok(None)) => panic!("the stream ended after {} events", self.events().len()),
                Ok(Err(status)) => panic!("the stream failed: {status:?}"),
            }
        }
    }

    /// Whether every hash of `expected` was seen.
    pub fn has_all<'a>(&self, mut expected: impl Iterator<Item = &'a [u8; 32]>) -> bool {
        let seen: std::collections::HashSet<[u8; 32]> =
            self.events().into_iter().map(|(h, _)| h).collect();
        expected.all(|h| seen.contains(h))
    }
}

/// One gRPC frame (not compressed) holding `message`.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// POSTs `body` to `path` as a gRPC request over a fresh HTTP/2 connection (no codec on this
/// side: the bytes go as given) and returns the `grpc-status` and `grpc-message` the node
/// answered (in the head of a trailers-only answer, or in the trailers).
pub async fn raw_call(port: u16, path: &str, body: Vec<u8>) -> (Option<i32>, String) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(bytes::Bytes::from(body), true).unwrap();
    let response = tokio::time::timeout(WAIT, response)
        .await
        .expect("an answer")
        .unwrap();
    let (head, mut body) = response.into_parts();
    let read = |map: &http::HeaderMap| {
        let status = map
            .get("grpc-status")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let message = map
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, message)
    };
    if head.headers.contains_key("grpc-status") {
        return read(&head.headers);
    }
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    read(&trailers)
}

/// Polls `GET /metrics` until a line of `aurigraph_api_requests_total` with
/// `protocol="grpc"`, `route` and `status` counts at least `at_least`; returns the line.
pub fn grpc_metric_line(
    node: &aurigraph_testkit::Node,
    route: &str,
    status: &str,
    at_least: f64,
) -> String {
    let labels = format!(
        "aurigraph_api_requests_total{{protocol=\"grpc\",method=\"POST\",route=\"{route}\",status=\"{status}\"}} "
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let text = String::from_utf8(node.get("/metrics").body).unwrap();
        let line = text.lines().find(|l| l.starts_with(&labels));
        if let Some(line) = line {
            let value: f64 = line[labels.len()..].trim().parse().unwrap();
            if value >= at_least {
                return line.to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {labels}>= {at_least} in /metrics:\n{}",
            text.lines()
                .filter(|l| l.contains("protocol=\"grpc\""))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub const SHARDS: u32 = 2;

/// `n` batches of `size` transfers, batch `i` from `keys[i % keys.len()]` with that key's next
/// nonces (`nonces` tracks them), each to the next key, amounts 1, 2, 3, ...
pub fn batches(keys: &[SigningKey], nonces: &mut [u64], n: usize, size: usize) -> Vec<Vec<Record>> {
    (0..n)
        .map(|i| {
            let k = i % keys.len();
            let to = address_of(&keys[(k + 1) % keys.len()]);
            (0..size)
                .map(|j| {
                    nonces[k] += 1;
                    transfer(&keys[k], to, 1 + j as u64, nonces[k])
                })
                .collect()
        })
        .collect()
}

pub fn events_request(start: StartFrom) -> StreamTransactionEventsRequest {
    StreamTransactionEventsRequest {
        start: start as i32,
        ..Default::default()
    }
}
