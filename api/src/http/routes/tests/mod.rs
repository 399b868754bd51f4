//! The endpoints against a fake ledger ([`Fake`]), through [`handle`] as the server calls it.

mod admin;
mod archive;
mod node;
mod quantum;
mod reads;
mod transactions;

use super::backend::{Backend, MembershipResults};
use super::table::{lookup, route_label, Lookup, ROUTE_SLOTS, SPEC, UNMATCHED};
use super::{handle, Ctx};
use crate::http::types::{decode_compact_results, BATCH_MEDIA_TYPE, RESULTS_MEDIA_TYPE};
use crate::http::HttpSettings;
use aurigraph_beacon::state::BeaconState;
use aurigraph_engine::batch::encode_batch;
use aurigraph_engine::ledger::Account;
use aurigraph_engine::record::{Address, Record, Transfer, TxHash};
use aurigraph_engine::replica::{BlockHeader, Outcome, SubmitError, TxStatus};
use aurigraph_engine::runtime::{GatewayId, ShardCounters};
use aurigraph_engine::{shard_of, ConfChangeType, ResultCode};
use aurigraph_engine::{EngineError, ShardStatus, SubmitFailure};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use futures::executor::block_on;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A ledger double: records what was submitted, answers what the test set up.
#[derive(Clone, Default)]
pub(crate) struct Fake {
    submitted: Rc<RefCell<Vec<Record>>>,
    /// On whose behalf each submission came (gateway mode).
    submitted_as: Rc<RefCell<Vec<Option<GatewayId>>>>,
    fail: Rc<RefCell<Option<SubmitFailure>>>,
    /// Membership changes asked for.
    membership_changes: Rc<RefCell<Vec<(ConfChangeType, u64)>>>,
    no_leader: bool,
    stopped: bool,
}

impl Fake {
    fn outcome(r: &Record) -> Outcome {
        let result = if r.amount() == 0 {
            ResultCode::ZeroAmount
        } else {
            ResultCode::Ok
        };
        Outcome {
            tx_hash: r.tx_hash(),
            result,
            shard: shard_of(&r.from(), 2),
            block: 5,
        }
    }
    fn status_of(&self, shard: u32) -> ShardStatus {
        ShardStatus {
            shard,
            core: shard as usize,
            role: if self.no_leader && shard == 1 {
                "CANDIDATE"
            } else {
                "LEADER"
            },
            term: 3 + shard as u64,
            leader_id: if self.no_leader && shard == 1 {
                None
            } else {
                Some(1)
            },
            commit_index: 10,
            applied_index: 9,
            last_index: 10,
            state_hash: 0xabc,
            accounts_hash: 0,
            accounts: 4,
            leader_changes: 1,
            pending_records: 0,
            queued_commands: 0,
            voters: 1,
            transport: None,
            peer_links: Vec::new(),
            voter_ids: vec![1],
            learner_ids: Vec::new(),
            peer_matched: if self.no_leader && shard == 1 {
                Vec::new()
            } else {
                vec![(1, 10)]
            },
            peer_lag: if self.no_leader && shard == 1 {
                Vec::new()
            } else {
                vec![(1, 0)]
            },
        }
    }
}

fn stopped() -> Result<(), EngineError> {
    Err(EngineError::Stopped)
}

impl Backend for Fake {
    fn chain_id(&self) -> u32 {
        7
    }
    fn shard_count(&self) -> u32 {
        2
    }
    fn cores(&self) -> usize {
        2
    }
    fn assets(&self) -> Vec<u32> {
        vec![0]
    }
    fn gateway(&self, name: &str) -> Option<GatewayId> {
        (name == "acme").then_some(GatewayId(0))
    }
    async fn submit(
        &self,
        records: &[Record],
        gateway: Option<GatewayId>,
    ) -> Result<Vec<Outcome>, SubmitFailure> {
        if let Some(f) = self.fail.borrow().clone() {
            return Err(f);
        }
        self.submitted.borrow_mut().extend_from_slice(records);
        self.submitted_as.borrow_mut().push(gateway);
        Ok(records.iter().map(Fake::outcome).collect())
    }
    async fn submit_archive(
        &self,
        archive: Vec<u8>,
        gateway: Option<GatewayId>,
    ) -> Result<Vec<Outcome>, SubmitFailure> {
        let records = aurigraph_wire::batch::records_of_validated(&archive);
        self.submit(records, gateway).await
    }
    async fn submit_detached(
        &self,
        records: &[Record],
        gateway: Option<GatewayId>,
    ) -> Result<Vec<TxHash>, SubmitFailure> {
        if let Some(f) = self.fail.borrow().clone() {
            return Err(f);
        }
        self.submitted.borrow_mut().extend_from_slice(records);
        self.submitted_as.borrow_mut().push(gateway);
        Ok(records.iter().map(Record::tx_hash).collect())
    }
    async fn transaction(&self, hash: TxHash) -> Result<Option<TxStatus>, EngineError> {
        Ok(match hash.0[0] {
            1 => Some(TxStatus::Pending { shard: 1 }),
            2 => Some(TxStatus::Decided(Outcome {
                tx_hash: hash,
                result: ResultCode::NonceReplayed,
                shard: 0,
                block: 4,
            })),
            _ => None,
        })
    }
    async fn account(&self, address: Address) -> Result<Option<Account>, EngineError> {
        Ok((address.0[0] == 1).then(|| Account {
            nonce_high: 12,
            nonce_window: 1,
            native: 1000,
            others: Some(Box::new(vec![(3, 5), (4, 0)])),
        }))
    }
    async fn status(&self) -> Result<Vec<ShardStatus>, EngineError> {
        if self.stopped {
            stopped()?;
        }
        Ok((0..2).map(|s| self.status_of(s)).collect())
    }
    async fn block(&self, shard: u32, height: u64) -> Result<Option<BlockHeader>, EngineError> {
        Ok((height == 9).then_some(BlockHeader {
            shard,
            height,
            hash: [1; 32],
            prev_hash: [2; 32],
            tx_count: 3,
            term: 2,
            state_hash: 5,
            timestamp_ms: 1_714_564_800_000,
        }))
    }
    async fn latest_blocks(&self) -> Result<Vec<BlockHeader>, EngineError> {
        Ok(vec![
            self.block(0, 9).await?.unwrap(),
            self.block(1, 9).await?.unwrap(),
        ])
    }
    async fn change_membership(
        &self,
        changes: Vec<(ConfChangeType, u64)>,
        _peer_addr: Vec<u8>,
    ) -> Result<MembershipResults, EngineError> {
        // Shard 0 is led here, shard 1 elsewhere.
        assert_eq!(changes.len(), 1);
        self.membership_changes.borrow_mut().extend(&changes);
        Ok(vec![
            (0, Ok(42)),
            (
                1,
                Err(SubmitFailure::Rejected(SubmitError::NotLeader {
                    shard: 1,
                    leader: Some(2),
                })),
            ),
        ])
    }
    async fn backup(&self) -> Result<crate::http::routes::backend::BackupParts, EngineError> {
        if self.stopped {
            stopped()?;
        }
        Ok(Vec::new())
    }
    fn core_counters(&self) -> Arc<[aurigraph_engine::runtime::CoreCounters]> {
        (0..2).map(|_| Default::default()).collect()
    }
    fn shard_counters(&self) -> Arc<[ShardCounters]> {
        let counters: Arc<[ShardCounters]> = (0..2).map(|_| ShardCounters::default()).collect();
        counters[1].wal_fsync_ns.observe(700_000);
        counters[1]
            .signatures_invalid
            .fetch_add(2, Ordering::Relaxed);
        counters
    }
}

fn ctx(fake: Fake) -> Ctx<Fake> {
    let mut settings = HttpSettings::new("127.0.0.1:0".parse().unwrap());
    settings.version = "test";
    settings.batch_transfers_max = 3;
    settings.body_bytes_max = 4096;
    Ctx::new(0, fake, settings)
}

fn request(
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        b = b.header(CONTENT_TYPE, ct);
    }
    b.body(Full::new(body.into())).unwrap()
}

fn call(ctx: &Ctx<Fake>, req: Request<Full<Bytes>>) -> (StatusCode, hyper::HeaderMap, Bytes) {
    let response = block_on(handle(ctx, req));
    let (parts, body) = response.into_parts();
    let bytes = block_on(body.collect()).unwrap().to_bytes();
    (parts.status, parts.headers, bytes)
}

fn call_json(ctx: &Ctx<Fake>, req: Request<Full<Bytes>>) -> (StatusCode, Value) {
    let (status, headers, bytes) = call(ctx, req);
    assert_eq!(headers[CONTENT_TYPE], "application/json");
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn get(ctx: &Ctx<Fake>, uri: &str) -> (StatusCode, Value) {
    call_json(ctx, request("GET", uri, None, Bytes::new()))
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {v}"))
}

pub(crate) fn key(n: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[n; 32])
}

pub(crate) fn signed(n: u8, amount: u64) -> Record {
    Transfer {
        chain_id: 7,
        from: aurigraph_engine::record::address_of(&key(n)),
        to: Address([9; 32]),
        asset: 0,
        amount,
        nonce: n as u64,
    }
    .sign(&key(n))
}

pub(crate) fn transfer_json(r: &Record) -> Value {
    json!({
        "fromAddress": r.from().to_hex(),
        "toAddress": r.to().to_hex(),
        "amount": r.amount().to_string(),
        "nonce": r.nonce(),
        "signature": hex::encode(r.signature()),
        "transactionType": "TRANSFER",
    })
}
