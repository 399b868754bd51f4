//! A deterministic simulator of a whole Aurigraph cluster in one thread (feature `sim`).
//!
//! N validators × S shards of the real [`ShardReplica`] code, with a simulated network
//! (drop, delay, duplication, reordering, partitions), simulated disks ([`disk::SimDisk`]: crash
//! loses what was not fsynced, torn writes keep a prefix of it), a simulated clock, crashes and
//! restarts, and a workload of signed transfers (cross-shard included). Everything is decided by
//! one `u64` seed: the same seed replays the same run, step by step.
//!
//! Invariants are checked after every step (see [`Cluster::check`]); a violation is returned
//! with the seed and the step. See `docs/simulator.md`.

pub mod disk;

use crate::genesis::{Allocation, Genesis};
use crate::ledger::ShardState;
use crate::record::{address_of, Address, Record, Transfer};
use crate::replica::{ReadyWork, ReplicaConfig, ShardReplica, SubmitError};
use crate::result::ResultCode;
use crate::shard::{shard_of, ShardId};
use crate::state_snapshot::{decode_state, encode_state};
use disk::{DiskWrite, SimDisk};
use ed25519_dalek::SigningKey;
use raft::eraftpb::{ConfState, Message, MessageType};
use raft::Storage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use xxhash_rust::xxh3::xxh3_128;

const CHAIN: u32 = 7;
/// A second asset, held by some accounts.
const ASSET_B: u32 = 5;

/// What one seed's run looks like.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub validators: usize,
    pub shards: u32,
    pub accounts: usize,
    /// Rounds of (chaos, calm): faults during chaos; all healed and restarted for calm, during
    /// which every shard must commit new transfers.
    pub rounds: usize,
    pub chaos_ms: u64,
    pub calm_ms: u64,
    /// Milliseconds of simulated time between raft ticks.
    pub tick_ms: u64,
    /// Take a local snapshot (and truncate the log) every this many applied entries.
    pub snapshot_interval: u64,
}

impl SimConfig {
    /// The configuration a seed picks: 3 validators, sometimes 5; 2 shards.
    pub fn for_seed(seed: u64) -> SimConfig {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_c0f1_9000_0001);
        SimConfig {
            validators: if rng.gen_bool(0.25) { 5 } else { 3 },
            shards: 2,
            accounts: 8,
            rounds: 3,
            chaos_ms: 1500,
            calm_ms: 1200,
            tick_ms: 10,
            snapshot_interval: rng.gen_range(6..30),
        }
    }
}

/// An invariant failed (or the code under test panicked).
#[derive(Debug)]
pub struct Violation {
    pub seed: u64,
    pub step: u64,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} violated an invariant at step {}: {}\n  reproduce: AURIGRAPH_SIM_SEED={} cargo test -p aurigraph-engine --test simulator -- --nocapture",
            self.seed, self.step, self.message, self.seed
        )
    }
}

/// What a run did (for the report).
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    pub steps: u64,
    pub submitted: u64,
    pub acked: u64,
    pub acked_ok: u64,
    pub cross_shard_ok: u64,
    pub crashes: u64,
    pub torn_writes: u64,
    pub partitions: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub snapshots_sent: u64,
    pub snapshots_installed: u64,
    pub leader_changes: u64,
    pub max_commit: u64,
}

/// Runs one seed; catches panics in the code under test and reports them as violations.
pub fn run_seed(seed: u64) -> Result<SimStats, Violation> {
    run_seed_with(seed, SimConfig::for_seed(seed))
}

pub fn run_seed_with(seed: u64, config: SimConfig) -> Result<SimStats, Violation> {
    let step = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let step_seen = step.clone();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let mut cluster = Cluster::new(seed, config, step);
        cluster.run()
    }));
    match result {
        Ok(r) => r,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Err(Violation {
                seed,
                step: step_seen.load(std::sync::atomic::Ordering::Relaxed),
                message: format!("panic: {message}"),
            })
        }
    }
}

/// An input queued for one replica (processed when it has no ready cycle in flight).
enum Input {
    Raft(Message),
    Submit { client: u64, records: Vec<Record> },
    SnapshotReport { to: u64, delivered: bool },
}

struct InFlight {
    deliver_at: u64,
    seq: u64,
    from: usize,
    to: usize,
    shard: ShardId,
    message: Message,
}

/// One shard replica on one validator, with its disk and I/O state.
struct Slot {
    replica: Option<ShardReplica>,
    disk: SimDisk,
    inputs: VecDeque<Input>,
    /// The ready cycle whose write is in flight: (number, fsync completes at, persisted msgs).
    in_flight: Option<(u64, u64, Vec<Message>)>,
    /// Applied index at the last local snapshot.
    last_snapshot: u64,
    /// Highest log index compared against the cluster's committed log.
    checked: u64,
    /// Client tickets: ticket -> client submission id.
    tickets: BTreeMap<u64, u64>,
}

struct Validator {
    up: bool,
    restart_at: Option<u64>,
    shards: Vec<Slot>,
    next_tick: u64,
    election_tick: Vec<usize>,
}

/// A transfer some client was told is decided.
struct Acked {
    shard: ShardId,
    block: u64,
    result: ResultCode,
    from: Address,
    nonce: u64,
    entry: (u64, u128),
}

struct Cluster {
    seed: u64,
    config: SimConfig,
    rng: StdRng,
    now: u64,
    step: std::sync::Arc<std::sync::atomic::AtomicU64>,
    genesis: Genesis,
    keys: Vec<SigningKey>,
    nonces: Vec<u64>,
    validators: Vec<Validator>,
    net: Vec<InFlight>,
    next_seq: u64,
    /// Partition side of each validator (messages cross only within a side).
    side: Vec<u8>,
    drop_p: f64,
    dup_p: f64,
    max_delay: u64,
    /// Per shard: index -> (term, hash of the entry) as first seen committed.
    committed: Vec<BTreeMap<u64, (u64, u128)>>,
    /// Per shard: applied index -> state hash.
    hashes: Vec<BTreeMap<u64, u128>>,
    acked: Vec<Acked>,
    next_client: u64,
    clients: BTreeMap<u64, Vec<Record>>,
    supply: BTreeMap<u32, u64>,
    stats: SimStats,
    /// Per shard: time of the latest ack of a transfer submitted in this calm phase.
    calm_acks: Vec<bool>,
    calm_started: u64,
}

fn entry_hash(e: &raft::eraftpb::Entry) -> u128 {
    let mut bytes = Vec::with_capacity(e.data.len() + e.context.len() + 8);
    bytes.extend_from_slice(&(e.get_entry_type() as u32).to_le_bytes());
    bytes.extend_from_slice(&e.context);
    bytes.extend_from_slice(&e.data);
    xxh3_128(&bytes)
}

impl Cluster {
    fn new(
        seed: u64,
        config: SimConfig,
        step: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Cluster {
        let rng = StdRng::seed_from_u64(seed);
        let keys: Vec<SigningKey> = (0..config.accounts)
            .map(|i| {
                let mut b = [0u8; 32];
                b[0] = i as u8 + 1;
                b[1] = 0x51;
                SigningKey::from_bytes(&b)
            })
            .collect();
        let mut allocations = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            allocations.push(Allocation {
                address: address_of(k),
                asset: 0,
                amount: 1_000_000,
            });
            if i % 2 == 0 {
                allocations.push(Allocation {
                    address: address_of(k),
                    asset: ASSET_B,
                    amount: 5_000,
                });
            }
        }
        allocations.sort_by_key(|a| (a.address, a.asset));
        let genesis = Genesis {
            chain_id: CHAIN,
            shards: Some(config.shards),
            allocations,
        };
        let supply = genesis.supply();
        let n = config.validators;
        let mut cluster = Cluster {
            seed,
            rng,
            now: 0,
            step,
            nonces: vec![0; keys.len()],
            keys,
            validators: Vec::new(),
            net: Vec::new(),
            next_seq: 0,
            side: vec![0; n],
            drop_p: 0.0,
            dup_p: 0.0,
            max_delay: 3,
            committed: vec![BTreeMap::new(); config.shards as usize],
            hashes: vec![BTreeMap::new(); config.shards as usize],
            acked: Vec::new(),
            next_client: 1,
            clients: BTreeMap::new(),
            supply,
            stats: SimStats::default(),
            calm_acks: vec![false; config.shards as usize],
            calm_started: 0,
            genesis,
            config,
        };
        let voters: Vec<u64> = (1..=n as u64).collect();
        for _ in 0..n {
            let election_tick = (0..cluster.config.shards)
                .map(|_| cluster.rng.gen_range(10..20))
                .collect();
            let shards = (0..cluster.config.shards)
                .map(|_| Slot {
                    replica: None,
                    disk: SimDisk::new(ConfState::from((voters.clone(), vec![]))),
                    inputs: VecDeque::new(),
                    in_flight: None,
                    last_snapshot: 0,
                    checked: 0,
                    tickets: BTreeMap::new(),
                })
                .collect();
            let next_tick = cluster.rng.gen_range(0..cluster.config.tick_ms);
            cluster.validators.push(Validator {
                up: false,
                restart_at: None,
                shards,
                next_tick,
                election_tick,
            });
        }
        cluster
    }

    fn violation(&self, message: String) -> Violation {
        Violation {
            seed: self.seed,
            step: self.now,
            message,
        }
    }

    /// Starts (or restarts) a validator from its disks, as the runtime's `open_shard` does.
    fn start(&mut self, v: usize) -> Result<(), Violation> {
        let shard_count = self.config.shards;
        let voters: Vec<u64> = (1..=self.config.validators as u64).collect();
        for s in 0..shard_count {
            let e = self.validators[v].election_tick[s as usize];
            let slot = &mut self.validators[v].shards[s as usize];
            let data = slot.disk.recover().map_err(|e| Violation {
                seed: self.seed,
                step: self.now,
                message: format!("validator {} shard {s}: recovery refused: {}", v + 1, e.0),
            })?;
            let state = match data {
                Some(bytes) => decode_state(&bytes).expect("own snapshot decodes"),
                None => ShardState::from_genesis(&self.genesis, s, shard_count),
            };
            let mut config = ReplicaConfig::new(v as u64 + 1, s);
            config.voters = voters.clone();
            config.election_tick = 10;
            config.heartbeat_tick = 2;
            config.min_election_tick = e;
            config.max_election_tick = e + 1;
            config.max_inflight_msgs = 8;
            config.entry_records_max = 16;
            config.recent_transactions_max = 0;
            config.recent_blocks_max = 0;
            slot.last_snapshot = state.applied_index();
            slot.checked = state.applied_index();
            slot.inputs.clear();
            slot.in_flight = None;
            slot.tickets.clear();
            let replica =
                ShardReplica::new(config, slot.disk.mem.clone(), state).expect("replica starts");
            slot.replica = Some(replica);
        }
        self.validators[v].up = true;
        self.validators[v].restart_at = None;
        // Receipts the recovered outboxes still hold are delivered again.
        self.route_deliveries(v);
        Ok(())
    }

    fn crash(&mut self, v: usize) {
        let torn_p = 0.5;
        let validator = &mut self.validators[v];
        validator.up = false;
        for s in 0..validator.shards.len() {
            let parts = validator.shards[s].disk.unsynced_parts();
            let torn = if parts > 0 && self.rng.gen_bool(torn_p) {
                self.stats.torn_writes += 1;
                Some(self.rng.gen_range(0..parts))
            } else {
                None
            };
            let slot = &mut validator.shards[s];
            slot.disk.crash(torn);
            slot.replica = None;
            slot.inputs.clear();
            slot.in_flight = None;
            slot.tickets.clear();
        }
        self.stats.crashes += 1;
    }

    fn send(&mut self, from: usize, shard: ShardId, message: Message) {
        let to = (message.to - 1) as usize;
        let is_snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
        if is_snapshot {
            self.stats.snapshots_sent += 1;
        }
        let copies = if self.rng.gen_bool(self.drop_p) {
            self.stats.dropped += 1;
            0
        } else if self.rng.gen_bool(self.dup_p) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        if copies == 0 && is_snapshot {
            let slot = &mut self.validators[from].shards[shard as usize];
            slot.inputs.push_back(Input::SnapshotReport {
                to: message.to,
                delivered: false,
            });
        }
        for _ in 0..copies {
            let delay = self.rng.gen_range(0..=self.max_delay);
            self.next_seq += 1;
            self.net.push(InFlight {
                deliver_at: self.now + delay,
                seq: self.next_seq,
                from,
                to,
                shard,
                message: message.clone(),
            });
        }
    }

    fn deliver_network(&mut self) {
        let now = self.now;
        let (due, rest): (Vec<InFlight>, Vec<InFlight>) = std::mem::take(&mut self.net)
            .into_iter()
            .partition(|m| m.deliver_at <= now);
        self.net = rest;
        let mut due = due;
        due.sort_by_key(|m| (m.deliver_at, m.seq));
        for m in due {
            let reachable = self.validators[m.to].up && self.side[m.to] == self.side[m.from];
            let is_snapshot = m.message.get_msg_type() == MessageType::MsgSnapshot;
            if is_snapshot && self.validators[m.from].up {
                self.validators[m.from].shards[m.shard as usize]
                    .inputs
                    .push_back(Input::SnapshotReport {
                        to: m.message.to,
                        delivered: reachable,
                    });
            }
            if reachable {
                self.validators[m.to].shards[m.shard as usize]
                    .inputs
                    .push_back(Input::Raft(m.message));
            } else {
                self.stats.dropped += 1;
            }
        }
    }

    /// Receipts produced by one validator's replicas go to its other shards (same process).
    fn route_deliveries(&mut self, v: usize) {
        let shards = self.validators[v].shards.len();
        for s in 0..shards {
            let deliveries = match self.validators[v].shards[s].replica.as_mut() {
                Some(r) => r.take_deliveries(),
                None => continue,
            };
            for delivery in deliveries {
                if let Some(r) = self.validators[v].shards[delivery.destination as usize]
                    .replica
                    .as_mut()
                {
                    r.receive_receipts(delivery);
                }
            }
        }
    }

    /// Runs one replica's I/O loop as far as it can go this millisecond.
    fn drive(&mut self, v: usize, s: usize) -> Result<(), Violation> {
        for _ in 0..16 {
            // Finish the write in flight when its fdatasync is done.
            if let Some((number, done_at, _)) = &self.validators[v].shards[s].in_flight {
                if *done_at > self.now {
                    return Ok(());
                }
                let number = *number;
                let (_, _, persisted_messages) = self.validators[v].shards[s]
                    .in_flight
                    .take()
                    .expect("in flight");
                self.validators[v].shards[s].disk.sync();
                for m in persisted_messages {
                    self.send(v, s as ShardId, m);
                }
                let messages = self.validators[v].shards[s]
                    .replica
                    .as_mut()
                    .expect("up")
                    .persisted(number, self.now);
                for m in messages {
                    self.send(v, s as ShardId, m);
                }
                self.after_apply(v, s)?;
            }
            // Inputs.
            let inputs: Vec<Input> = self.validators[v].shards[s].inputs.drain(..).collect();
            for input in inputs {
                let slot = &mut self.validators[v].shards[s];
                let replica = slot.replica.as_mut().expect("up");
                match input {
                    Input::Raft(m) => {
                        if m.get_msg_type() == MessageType::MsgSnapshot {
                            self.stats.snapshots_installed += 1;
                        }
                        replica.step(m).map_err(|e| Violation {
                            seed: self.seed,
                            step: self.now,
                            message: format!("step failed: {e}"),
                        })?;
                    }
                    Input::SnapshotReport { to, delivered } => {
                        replica.report_snapshot(to, delivered)
                    }
                    Input::Submit { client, records } => {
                        let valid = vec![true; records.len()];
                        match replica.submit_verified(&records, &valid) {
                            Ok(ticket) => {
                                slot.tickets.insert(ticket, client);
                            }
                            Err(SubmitError::NotLeader { leader, .. }) => {
                                // The client retries once at the leader it was told about.
                                if let Some(l) = leader {
                                    let l = (l - 1) as usize;
                                    if l != v && self.validators[l].up {
                                        self.validators[l].shards[s]
                                            .inputs
                                            .push_back(Input::Submit { client, records });
                                    }
                                }
                            }
                            Err(SubmitError::Overloaded(_) | SubmitError::Membership { .. }) => {}
                        }
                    }
                }
            }
            let replica = self.validators[v].shards[s].replica.as_mut().expect("up");
            replica.propose_preverified();
            let work = replica
                .ready(self.now)
                .map_err(|e| self.violation(format!("ready failed: {e}")))?;
            self.after_apply(v, s)?;
            let Some(work) = work else {
                return Ok(());
            };
            let ReadyWork {
                number,
                snapshot,
                entries,
                hard_state,
                messages,
                persisted_messages,
                ..
            } = work;
            for m in messages {
                self.send(v, s as ShardId, m);
            }
            let write = DiskWrite {
                snapshot: snapshot.map(|snap| (snap.get_metadata().clone(), snap.data.to_vec())),
                entries,
                hard_state,
            };
            if let Some((meta, _)) = &write.snapshot {
                self.validators[v].shards[s].last_snapshot = meta.index;
            }
            self.validators[v].shards[s].disk.stage(write);
            let latency = if self.rng.gen_bool(0.5) {
                0
            } else {
                self.rng.gen_range(1..4)
            };
            self.validators[v].shards[s].in_flight =
                Some((number, self.now + latency, persisted_messages));
        }
        Ok(())
    }

    /// Collects acknowledgements, routes receipts and takes a local snapshot when due.
    fn after_apply(&mut self, v: usize, s: usize) -> Result<(), Violation> {
        self.route_deliveries(v);
        let slot = &mut self.validators[v].shards[s];
        let replica = slot.replica.as_mut().expect("up");
        let completed = replica.take_completed();
        let failed = replica.take_failed();
        for ticket in failed {
            slot.tickets.remove(&ticket);
        }
        let mut acks = Vec::new();
        for (ticket, outcomes) in completed {
            let Some(client) = slot.tickets.remove(&ticket) else {
                continue;
            };
            acks.push((client, outcomes));
        }
        for (client, outcomes) in acks {
            let records = self.clients.remove(&client).unwrap_or_default();
            for (i, outcome) in outcomes.iter().enumerate() {
                let record = &records[i];
                if outcome.tx_hash != record.tx_hash() {
                    return Err(self.violation(format!(
                        "ack of client {client} slot {i} names another transfer"
                    )));
                }
                if outcome.block == 0 {
                    continue;
                }
                let replica = self.validators[v].shards[s].replica.as_ref().expect("up");
                let entry = replica
                    .raw_node()
                    .store()
                    .entries(
                        outcome.block,
                        outcome.block + 1,
                        None,
                        raft::GetEntriesContext::empty(false),
                    )
                    .map_err(|e| self.violation(format!("acked entry unreadable: {e}")))?;
                let entry = &entry[0];
                if !crate::decode_batch(&entry.data)
                    .map(|b| b.records().iter().any(|r| r.tx_hash() == outcome.tx_hash))
                    .unwrap_or(false)
                {
                    return Err(self.violation(format!(
                        "acked transfer not in its entry {} on shard {s}",
                        outcome.block
                    )));
                }
                self.stats.acked += 1;
                if outcome.result == ResultCode::Ok {
                    self.stats.acked_ok += 1;
                    if shard_of(&record.to(), self.config.shards) != s as ShardId {
                        self.stats.cross_shard_ok += 1;
                    }
                }
                if self.now >= self.calm_started {
                    self.calm_acks[s] = true;
                }
                self.acked.push(Acked {
                    shard: s as ShardId,
                    block: outcome.block,
                    result: outcome.result,
                    from: record.from(),
                    nonce: record.nonce(),
                    entry: (entry.term, entry_hash(entry)),
                });
            }
        }
        // Local snapshot and log truncation, as the runtime's `snapshot_if_due`.
        let slot = &mut self.validators[v].shards[s];
        let replica = slot.replica.as_ref().expect("up");
        let applied = replica.state().applied_index();
        if slot.in_flight.is_none() && applied >= slot.last_snapshot + self.config.snapshot_interval
        {
            let node = replica.raw_node();
            let term = node.raft.raft_log.term(applied).unwrap_or(0);
            if term > 0 {
                let conf = node.raft.prs().conf().to_conf_state();
                let data = encode_state(replica.state());
                slot.disk.save_local_snapshot(applied, term, conf, data);
                slot.last_snapshot = applied;
            }
        }
        Ok(())
    }

    /// A client submits a few signed transfers to some validator's replica of the sender's shard.
    fn submit_workload(&mut self) {
        let sender = self.rng.gen_range(0..self.keys.len());
        let count = self.rng.gen_range(1..4);
        let from = address_of(&self.keys[sender]);
        let shard = shard_of(&from, self.config.shards);
        let mut records = Vec::new();
        for _ in 0..count {
            let to = if self.rng.gen_bool(0.2) {
                let mut a = [0u8; 32];
                a[0] = 0xee;
                a[1] = self.rng.gen_range(0..16);
                Address(a)
            } else {
                let mut r = self.rng.gen_range(0..self.keys.len());
                if r == sender {
                    r = (r + 1) % self.keys.len();
                }
                address_of(&self.keys[r])
            };
            let asset = if sender % 2 == 0 && self.rng.gen_bool(0.3) {
                ASSET_B
            } else {
                0
            };
            self.nonces[sender] += 1;
            let record = Transfer {
                chain_id: CHAIN,
                from,
                to,
                asset,
                amount: self.rng.gen_range(1..2_000),
                nonce: self.nonces[sender],
            }
            .sign(&self.keys[sender]);
            records.push(record);
        }
        let up: Vec<usize> = (0..self.validators.len())
            .filter(|&v| self.validators[v].up)
            .collect();
        if up.is_empty() {
            return;
        }
        let v = up[self.rng.gen_range(0..up.len())];
        let client = self.next_client;
        self.next_client += 1;
        self.clients.insert(client, records.clone());
        self.stats.submitted += records.len() as u64;
        self.validators[v].shards[shard as usize]
            .inputs
            .push_back(Input::Submit { client, records });
    }

    fn chaos(&mut self) {
        let n = self.validators.len();
        // Network quality changes now and then.
        if self.rng.gen_bool(0.01) {
            self.drop_p = [0.0, 0.02, 0.1, 0.3][self.rng.gen_range(0..4)];
            self.dup_p = [0.0, 0.02, 0.1][self.rng.gen_range(0..3)];
            self.max_delay = [2, 5, 20, 60][self.rng.gen_range(0..4)];
        }
        // Partitions and heals.
        if self.rng.gen_bool(0.003) {
            self.stats.partitions += 1;
            for v in 0..n {
                self.side[v] = self.rng.gen_range(0..2);
            }
        }
        if self.rng.gen_bool(0.004) {
            self.side = vec![0; n];
        }
        // Crashes (keeping a majority up most of the time) and restarts.
        let up = self.validators.iter().filter(|v| v.up).count();
        if self.rng.gen_bool(0.003) && up > n / 2 {
            let v = self.rng.gen_range(0..n);
            if self.validators[v].up {
                self.crash(v);
                self.validators[v].restart_at = Some(self.now + self.rng.gen_range(20..400));
            }
        }
    }

    fn heal(&mut self) -> Result<(), Violation> {
        self.side = vec![0; self.validators.len()];
        self.drop_p = 0.0;
        self.dup_p = 0.0;
        self.max_delay = 3;
        for v in 0..self.validators.len() {
            if !self.validators[v].up {
                self.start(v)?;
            }
        }
        Ok(())
    }

    /// One millisecond of simulated time.
    fn step_once(&mut self, chaotic: bool) -> Result<(), Violation> {
        self.step
            .store(self.now, std::sync::atomic::Ordering::Relaxed);
        if chaotic {
            self.chaos();
        }
        for v in 0..self.validators.len() {
            if let Some(at) = self.validators[v].restart_at {
                if at <= self.now && !self.validators[v].up {
                    self.start(v)?;
                }
            }
        }
        self.deliver_network();
        // Ticks (each validator's clock has its own phase).
        for v in 0..self.validators.len() {
            if !self.validators[v].up || self.validators[v].next_tick > self.now {
                continue;
            }
            self.validators[v].next_tick = self.now + self.config.tick_ms;
            for s in 0..self.validators[v].shards.len() {
                let slot = &mut self.validators[v].shards[s];
                if slot.in_flight.is_none() {
                    slot.replica.as_mut().expect("up").tick();
                }
            }
            self.route_deliveries(v);
        }
        if self.rng.gen_bool(0.08) {
            self.submit_workload();
        }
        for v in 0..self.validators.len() {
            if !self.validators[v].up {
                continue;
            }
            for s in 0..self.validators[v].shards.len() {
                self.drive(v, s)?;
            }
        }
        self.check()?;
        self.now += 1;
        Ok(())
    }

    fn run(&mut self) -> Result<SimStats, Violation> {
        for v in 0..self.validators.len() {
            self.start(v)?;
        }
        for _round in 0..self.config.rounds {
            let end = self.now + self.config.chaos_ms;
            while self.now < end {
                self.step_once(true)?;
            }
            self.heal()?;
            self.calm_started = self.now;
            self.calm_acks = vec![false; self.config.shards as usize];
            let end = self.now + self.config.calm_ms;
            while self.now < end {
                self.step_once(false)?;
            }
            if let Some(s) = self.calm_acks.iter().position(|ok| !ok) {
                return Err(self.violation(format!(
                    "no progress: shard {s} acknowledged no transfer in {} ms after healing",
                    self.config.calm_ms
                )));
            }
        }
        // Quiesce: no new work, everyone catches up.
        let deadline = self.now + 3000;
        loop {
            if self.caught_up() {
                break;
            }
            if self.now >= deadline {
                return Err(self.violation("replicas did not catch up after the last heal".into()));
            }
            self.step_once_quiet()?;
        }
        self.check_final()?;
        self.stats.steps = self.now;
        for v in &self.validators {
            for slot in &v.shards {
                if let Some(r) = &slot.replica {
                    self.stats.leader_changes += r.leader_changes();
                    self.stats.max_commit = self.stats.max_commit.max(r.commit_index());
                }
            }
        }
        Ok(self.stats.clone())
    }

    fn step_once_quiet(&mut self) -> Result<(), Violation> {
        self.step
            .store(self.now, std::sync::atomic::Ordering::Relaxed);
        self.deliver_network();
        for v in 0..self.validators.len() {
            if self.validators[v].next_tick > self.now {
                continue;
            }
            self.validators[v].next_tick = self.now + self.config.tick_ms;
            for s in 0..self.validators[v].shards.len() {
                let slot = &mut self.validators[v].shards[s];
                if slot.in_flight.is_none() {
                    slot.replica.as_mut().expect("up").tick();
                }
            }
            self.route_deliveries(v);
        }
        for v in 0..self.validators.len() {
            for s in 0..self.validators[v].shards.len() {
                self.drive(v, s)?;
            }
        }
        self.check()?;
        self.now += 1;
        Ok(())
    }

    fn caught_up(&self) -> bool {
        for s in 0..self.config.shards as usize {
            let max_commit = self
                .validators
                .iter()
                .map(|v| v.shards[s].replica.as_ref().map_or(0, |r| r.commit_index()))
                .max()
                .unwrap_or(0);
            for v in &self.validators {
                let slot = &v.shards[s];
                let Some(r) = &slot.replica else {
                    return false;
                };
                if r.state().applied_index() < max_commit || slot.in_flight.is_some() {
                    return false;
                }
            }
        }
        self.net.is_empty()
    }

    /// Invariants after every step.
    fn check(&mut self) -> Result<(), Violation> {
        for v in 0..self.validators.len() {
            if !self.validators[v].up {
                continue;
            }
            for s in 0..self.config.shards as usize {
                // Committed prefixes agree: same term and data at each index.
                let slot = &self.validators[v].shards[s];
                let replica = slot.replica.as_ref().expect("up");
                let store = replica.raw_node().store();
                let commit = replica.commit_index();
                let first = store.first_index().expect("infallible");
                let last = store.last_index().expect("infallible");
                let from = (slot.checked + 1).max(first);
                let to = commit.min(last);
                if from <= to {
                    let entries = store
                        .entries(from, to + 1, None, raft::GetEntriesContext::empty(false))
                        .map_err(|e| {
                            self.violation(format!("committed entries unreadable: {e}"))
                        })?;
                    for e in &entries {
                        let seen = (e.term, entry_hash(e));
                        match self.committed[s].get(&e.index) {
                            Some(known) if *known != seen => {
                                return Err(self.violation(format!(
                                    "committed prefixes disagree: shard {s} index {} on validator {}: term {} vs {}",
                                    e.index,
                                    v + 1,
                                    seen.0,
                                    known.0
                                )));
                            }
                            Some(_) => {}
                            None => {
                                self.committed[s].insert(e.index, seen);
                            }
                        }
                    }
                }
                let checked = to.max(slot.checked);
                // Replicas at the same applied index have equal state hashes.
                let state = replica.state();
                let (applied, hash) = (state.applied_index(), state.state_hash());
                match self.hashes[s].get(&applied) {
                    Some(&known) if known != hash => {
                        return Err(self.violation(format!(
                            "state hashes differ: shard {s} applied {applied} on validator {}",
                            v + 1
                        )));
                    }
                    Some(_) => {}
                    None => {
                        self.hashes[s].insert(applied, hash);
                    }
                }
                self.validators[v].shards[s].checked = checked;
            }
            self.check_supply(v)?;
        }
        // Acknowledged transfers are in the committed log at the index they were acked with.
        for a in &self.acked {
            if let Some(known) = self.committed[a.shard as usize].get(&a.block) {
                if *known != a.entry {
                    return Err(self.violation(format!(
                        "acknowledged transfer lost: shard {} index {} holds another entry",
                        a.shard, a.block
                    )));
                }
            }
        }
        if self.now.is_multiple_of(100) {
            self.check_acked_applied()?;
        }
        Ok(())
    }

    /// Every acknowledged OK transfer consumed its nonce on every replica that applied it.
    fn check_acked_applied(&self) -> Result<(), Violation> {
        for a in &self.acked {
            if a.result != ResultCode::Ok {
                continue;
            }
            for (v, validator) in self.validators.iter().enumerate() {
                let Some(r) = &validator.shards[a.shard as usize].replica else {
                    continue;
                };
                if r.state().applied_index() < a.block {
                    continue;
                }
                let consumed = r
                    .state()
                    .account(&a.from)
                    .is_some_and(|acc| acc.check_nonce(a.nonce).is_err());
                if !consumed {
                    return Err(self.violation(format!(
                        "acknowledged transfer (nonce {}) missing from validator {}'s shard {} at applied {}",
                        a.nonce,
                        v + 1,
                        a.shard,
                        r.state().applied_index()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Supply per asset on one validator: balances plus receipts in flight. Checked when the
    /// validator's shards form a consistent cut (no destination credited beyond what its
    /// source here has applied; a snapshot from another validator can briefly break that).
    fn check_supply(&self, v: usize) -> Result<(), Violation> {
        let shards = &self.validators[v].shards;
        let states: Vec<&ShardState> = shards
            .iter()
            .map(|slot| slot.replica.as_ref().expect("up").state())
            .collect();
        for d in 0..states.len() {
            for s in 0..states.len() {
                if s != d && states[d].inbound_watermark(s as ShardId) > states[s].applied_index() {
                    return Ok(());
                }
            }
        }
        for (&asset, &amount) in &self.supply {
            let mut total = 0u128;
            for (s, state) in states.iter().enumerate() {
                total += state.supply_held(asset);
                total += state.supply_in_flight(asset, |d| {
                    states[d as usize].inbound_watermark(s as ShardId)
                });
            }
            if total != amount as u128 {
                return Err(self.violation(format!(
                    "supply of asset {asset} on validator {} is {total}, genesis says {amount}",
                    v + 1
                )));
            }
        }
        Ok(())
    }

    fn check_final(&self) -> Result<(), Violation> {
        self.check_acked_applied()?;
        for s in 0..self.config.shards as usize {
            let hashes: Vec<(u64, u128)> = self
                .validators
                .iter()
                .map(|v| {
                    let st = v.shards[s].replica.as_ref().expect("up").state();
                    (st.applied_index(), st.state_hash())
                })
                .collect();
            if hashes.iter().any(|h| *h != hashes[0]) {
                return Err(
                    self.violation(format!("shard {s}: replicas differ at the end: {hashes:?}"))
                );
            }
        }
        Ok(())
    }
}
