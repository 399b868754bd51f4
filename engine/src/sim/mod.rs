//! A deterministic simulator of a whole Aurigraph cluster in one thread (feature `sim`).
//!
//! N validators × S shards of the real [`ShardNode`] code — the same sans-I/O shard driver the
//! glommio runtime runs, with its raft-rs replica, forwarding, credit watermarks, snapshot
//! pieces and leadership hand-over — with a simulated transport (bounded per-peer queues,
//! drop, delay, duplication, reordering, partitions; every payload encoded and decoded with
//! [`crate::peering`] as on the wire), simulated disks ([`disk::SimDisk`]: a crash loses what
//! was not fsynced, torn writes keep a prefix of it), a simulated clock, crashes and restarts,
//! and a workload of signed transfers (cross-shard included) whose signatures are verified as
//! the runtime's ingress does. Everything is decided by one `u64` seed: the same seed replays
//! the same run, step by step (raft's randomized election timeouts included: the simulator
//! draws them from the seed at every reset).
//!
//! Invariants are checked after every step (see `check.rs`); a violation is returned with the
//! seed and the step. See `docs/simulator.md`.

mod check;
pub mod disk;
mod net;
mod workload;

use crate::genesis::{Allocation, Genesis};
use crate::ledger::ShardState;
use crate::node::{Answer, NodeConfig, NodeCounters, Now, ShardNode, Submitter};
use crate::peering::{self, PeerMessage};
use crate::record::{address_of, Address, Record};
use crate::replica::{ReplicaConfig, ShardReplica};
use crate::result::ResultCode;
use crate::shard::{shard_of, ShardId};
use crate::state_snapshot::decode_state;
use crate::verify::SignatureVerifier;
use disk::{DiskWrite, SimDisk};
use ed25519_dalek::SigningKey;
use net::InFlight;
use raft::eraftpb::ConfState;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};

const CHAIN: u32 = 7;
/// Raft's election timeout: randomized in `[n, 2n)` ticks at every reset.
const ELECTION_TICKS: usize = 10;
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
    /// Raft messages larger than this go in pieces (small, so that snapshots do).
    pub raft_piece_bytes: usize,
    /// Messages each peer's transport queue takes per step and shard before it is full.
    pub transport_queue_max: usize,
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
            raft_piece_bytes: [512, 1024, 2048][rng.gen_range(0..3)],
            transport_queue_max: [4, 16, 64][rng.gen_range(0..3)],
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

/// What a run did (for the report, and for tests that check what the seeds exercise).
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
    /// Sends the transport refused (queue full or peer down).
    pub transport_refused: u64,
    pub leader_changes: u64,
    pub max_commit: u64,
    /// What the shard nodes did, summed over every replica and restart.
    pub node: NodeCounters,
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

/// An input queued for one replica (fed when its node has no write in flight).
enum Input {
    /// A payload from the same shard on validator `from` (node id).
    Peer {
        from: u64,
        payload: Vec<u8>,
    },
    Submit {
        client: u64,
        records: Vec<Record>,
    },
}

/// One shard replica on one validator: its node, disk and queued inputs.
struct Slot {
    node: Option<ShardNode<u64>>,
    disk: SimDisk,
    inputs: VecDeque<Input>,
    /// The write in flight: (ready cycle number, its fdatasync completes at).
    in_flight: Option<(u64, u64)>,
    /// Highest log index compared against the cluster's committed log.
    checked: u64,
}

struct Validator {
    up: bool,
    restart_at: Option<u64>,
    shards: Vec<Slot>,
    next_tick: u64,
}

/// A transfer some client was told is decided.
struct Acked {
    shard: ShardId,
    block: u64,
    tx_hash: crate::record::TxHash,
    result: ResultCode,
    from: Address,
    nonce: u64,
    /// (term, hash) of the committed entry that holds it, once seen.
    entry: Option<(u64, u128)>,
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
    verifier: SignatureVerifier,
    validators: Vec<Validator>,
    net: Vec<InFlight>,
    next_seq: u64,
    /// Per link (from, to, shard): when its latest message arrives (links are FIFO).
    link_clock: BTreeMap<(usize, usize, ShardId), u64>,
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
    /// Per shard: whether a transfer submitted in this calm phase was acknowledged.
    calm_acks: Vec<bool>,
    calm_started: u64,
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
            verifier: SignatureVerifier::default(),
            validators: Vec::new(),
            net: Vec::new(),
            next_seq: 0,
            link_clock: BTreeMap::new(),
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
            let shards = (0..cluster.config.shards)
                .map(|_| Slot {
                    node: None,
                    disk: SimDisk::new(ConfState::from((voters.clone(), vec![]))),
                    inputs: VecDeque::new(),
                    in_flight: None,
                    checked: 0,
                })
                .collect();
            let next_tick = cluster.rng.gen_range(0..cluster.config.tick_ms);
            cluster.validators.push(Validator {
                up: false,
                restart_at: None,
                shards,
                next_tick,
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

    fn clock(&self) -> Now {
        Now {
            monotonic_ms: self.now,
            wall_ms: self.now,
        }
    }

    /// The node's configuration on validator `v` (index), as the runtime derives it.
    fn node_config(&self, v: usize) -> NodeConfig {
        NodeConfig {
            node_id: v as u64 + 1,
            incarnation: self.now + 1,
            replicated: true,
            forward_timeout_ms: 300,
            forwards_pending_max: 64,
            raft_piece_bytes: self.config.raft_piece_bytes,
            raft_message_bytes_max: 1 << 20,
            snapshot_interval_entries: self.config.snapshot_interval,
            credit_announce_interval_ms: 200,
            leader_transfer_interval_ms: 300,
        }
    }

    /// Starts (or restarts) a validator from its disks, as the runtime's `open_shard` does.
    fn start(&mut self, v: usize) -> Result<(), Violation> {
        let shard_count = self.config.shards;
        let voters: Vec<u64> = (1..=self.config.validators as u64).collect();
        for s in 0..shard_count {
            let node_config = self.node_config(v);
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
            config.election_tick = ELECTION_TICKS;
            config.heartbeat_tick = 2;
            config.max_inflight_msgs = 8;
            config.entry_records_max = 16;
            config.recent_transactions_max = 0;
            config.recent_blocks_max = 0;
            slot.checked = state.applied_index();
            slot.inputs.clear();
            slot.in_flight = None;
            let replica =
                ShardReplica::new(config, slot.disk.mem.clone(), state).expect("replica starts");
            slot.node = Some(ShardNode::new(node_config, replica));
        }
        self.validators[v].up = true;
        self.validators[v].restart_at = None;
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
            if let Some(node) = slot.node.take() {
                self.stats.node.add(node.counters());
            }
            slot.inputs.clear();
            slot.in_flight = None;
        }
        self.stats.crashes += 1;
    }

    fn node(&mut self, v: usize, s: usize) -> &mut ShardNode<u64> {
        self.validators[v].shards[s].node.as_mut().expect("up")
    }

    /// Feeds one queued input to a node (a payload as the runtime's router dispatches it, or
    /// a client's submission verified as the runtime's ingress does).
    fn feed(&mut self, v: usize, s: usize, input: Input) -> Result<(), Violation> {
        let mut io = self.io(v, s);
        match input {
            Input::Peer { from, payload } => match peering::decode(&payload) {
                Ok(PeerMessage::Credited {
                    destination,
                    source,
                    up_to,
                }) => {
                    // For the source shard of this validator (the router's rule).
                    if destination == s as ShardId {
                        let credited = crate::node::LocalMessage::Credited {
                            destination,
                            node: from,
                            up_to,
                        };
                        if let Some(node) = self.validators[v].shards[source as usize].node.as_mut()
                        {
                            node.local_message(credited);
                        }
                    }
                }
                Ok(message) => self.node(v, s).peer_message(&mut io, from, message),
                Err(error) => {
                    return Err(self.violation(format!("a payload did not decode: {error}")))
                }
            },
            Input::Submit { client, records } => {
                let mut valid = Vec::new();
                self.verifier.verify(&records, &mut valid);
                self.node(v, s)
                    .submit(&mut io, &records, &valid, Submitter::Client(client));
            }
        }
        self.flush(v, s, io)
    }

    /// Runs one replica's I/O loop as far as it can go this millisecond: the runtime's turn
    /// (inputs, start_turn, persist, persisted, finish_turn, snapshot), with the fdatasync
    /// taking simulated time.
    fn drive(&mut self, v: usize, s: usize) -> Result<(), Violation> {
        for _ in 0..16 {
            if let Some((number, done_at)) = self.validators[v].shards[s].in_flight {
                if done_at > self.now {
                    return Ok(());
                }
                self.validators[v].shards[s].in_flight = None;
                self.validators[v].shards[s].disk.sync();
                let now = self.clock();
                let mut io = self.io(v, s);
                self.node(v, s).persisted(&mut io, number, now);
                self.flush(v, s, io)?;
                self.finish_turn(v, s)?;
            }
            let inputs: Vec<Input> = self.validators[v].shards[s].inputs.drain(..).collect();
            for input in inputs {
                self.feed(v, s, input)?;
            }
            let now = self.clock();
            let mut io = self.io(v, s);
            let persist = self
                .node(v, s)
                .start_turn(&mut io, now)
                .map_err(|e| self.violation(format!("ready failed: {e}")))?;
            self.flush(v, s, io)?;
            let Some(persist) = persist else {
                return self.finish_turn(v, s);
            };
            let write = DiskWrite {
                snapshot: persist
                    .snapshot
                    .map(|snap| (snap.get_metadata().clone(), snap.data.to_vec())),
                entries: persist.entries,
                hard_state: persist.hard_state,
            };
            self.validators[v].shards[s].disk.stage(write);
            let latency = if self.rng.gen_bool(0.5) {
                0
            } else {
                self.rng.gen_range(1..4)
            };
            self.validators[v].shards[s].in_flight = Some((persist.number, self.now + latency));
        }
        Ok(())
    }

    /// The end of a turn: answers, pieces, messages to other shards, and a local snapshot
    /// (durable at once on the simulated disk, which also truncates the log).
    fn finish_turn(&mut self, v: usize, s: usize) -> Result<(), Violation> {
        let mut io = self.io(v, s);
        let snapshot = self.node(v, s).finish_turn(&mut io);
        self.flush(v, s, io)?;
        if let Some(snapshot) = snapshot {
            let index = snapshot.index;
            self.validators[v].shards[s].disk.save_local_snapshot(
                index,
                snapshot.term,
                snapshot.conf,
                snapshot.data,
            );
            let now = self.clock();
            let mut io = self.io(v, s);
            self.node(v, s).snapshot_saved(&mut io, index, now);
            self.flush(v, s, io)?;
        }
        Ok(())
    }

    /// One line per replica of shard `s` (for violation reports).
    fn describe(&self, s: usize) -> String {
        let mut out = format!("network: {} in flight; ", self.net.len());
        for (v, validator) in self.validators.iter().enumerate() {
            let Some(node) = &validator.shards[s].node else {
                out.push_str(&format!("[{}: down] ", v + 1));
                continue;
            };
            let st = node.status();
            let raft = &node.replica().raw_node().raft;
            out.push_str(&format!(
                "[{}: {} term {} vote {} elapsed {}/{} transferee {:?} persisting {} queued {} leader {:?} commit {} applied {} last {} pending {} blocked {}] ",
                v + 1,
                st.role,
                st.term,
                raft.vote,
                raft.election_elapsed,
                raft.randomized_election_timeout(),
                raft.lead_transferee,
                node.is_persisting(),
                node.queued_messages(),
                st.leader_id,
                st.commit_index,
                st.applied_index,
                st.last_index,
                st.pending_records,
                node.replica().apply_blocked()
            ));
        }
        out
    }

    /// A client's answer from validator `v`'s shard `s` (its own or a forwarded one's).
    fn client_answer(&mut self, s: usize, client: u64, answer: Answer) -> Result<(), Violation> {
        let records = self.clients.remove(&client).unwrap_or_default();
        let Answer::Outcomes(Ok(outcomes)) = answer else {
            return Ok(());
        };
        if outcomes.len() != records.len() {
            return Err(self.violation(format!(
                "client {client} got {} outcomes for {} transfers",
                outcomes.len(),
                records.len()
            )));
        }
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
                tx_hash: outcome.tx_hash,
                result: outcome.result,
                from: record.from(),
                nonce: record.nonce(),
                entry: None,
            });
        }
        Ok(())
    }

    /// One millisecond of simulated time.
    fn step_once(&mut self, chaotic: bool, workload: bool) -> Result<(), Violation> {
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
        // Ticks (each validator's clock has its own phase); a replica whose write is in
        // flight ticks at its next tick (raft takes no input while persisting).
        for v in 0..self.validators.len() {
            if !self.validators[v].up || self.validators[v].next_tick > self.now {
                continue;
            }
            self.validators[v].next_tick = self.now + self.config.tick_ms;
            for s in 0..self.validators[v].shards.len() {
                if self.node(v, s).is_persisting() {
                    continue;
                }
                // Raft reset its election clock since the last tick: draw the next timeout
                // from the seed (raft drew one from the thread's RNG, never used before a tick).
                if self.node(v, s).election_clock().0 == 0 {
                    let ticks = self.rng.gen_range(ELECTION_TICKS..2 * ELECTION_TICKS);
                    self.node(v, s).set_election_timeout(ticks);
                }
                let now = self.clock();
                let mut io = self.io(v, s);
                self.node(v, s).tick(&mut io, now);
                self.flush(v, s, io)?;
            }
        }
        if workload && self.rng.gen_bool(0.08) {
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
                self.step_once(true, true)?;
            }
            self.heal()?;
            self.calm_started = self.now;
            self.calm_acks = vec![false; self.config.shards as usize];
            let end = self.now + self.config.calm_ms;
            while self.now < end {
                self.step_once(false, true)?;
            }
            if let Some(s) = self.calm_acks.iter().position(|ok| !ok) {
                return Err(self.violation(format!(
                    "no progress: shard {s} acknowledged no transfer in {} ms after healing; replicas: {}",
                    self.config.calm_ms,
                    self.describe(s)
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
            self.step_once(false, false)?;
        }
        self.check_final()?;
        self.stats.steps = self.now;
        let mut counters = Vec::new();
        for v in &self.validators {
            for slot in &v.shards {
                if let Some(node) = &slot.node {
                    let r = node.replica();
                    self.stats.leader_changes += r.leader_changes();
                    self.stats.max_commit = self.stats.max_commit.max(r.commit_index());
                    counters.push(node.counters().clone());
                }
            }
        }
        for c in &counters {
            self.stats.node.add(c);
        }
        Ok(self.stats.clone())
    }
}
