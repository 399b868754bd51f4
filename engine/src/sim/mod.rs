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
mod config;
pub mod disk;
mod drive;
mod net;
mod operator;
mod workload;

use crate::genesis::{Allocation, Genesis};
use crate::ledger::ShardState;
use crate::node::{Answer, NodeConfig, Now, ShardNode, Submitter};
use crate::peering::{self, PeerMessage};
use crate::record::{address_of, Address, Record};
use crate::replica::{bootstrap_snapshot, ReplicaConfig, ShardReplica};
use crate::result::ResultCode;
use crate::shard::{shard_of, ShardId};
use crate::state_snapshot::decode_state;
use crate::verify::SignatureVerifier;
use disk::{DiskWrite, SimDisk};
use ed25519_dalek::SigningKey;
use net::InFlight;
use operator::MembershipRequest;
use raft::eraftpb::{ConfChangeType, ConfState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use xxhash_rust::xxh3::Xxh3;

pub use config::{SimConfig, SimStats, Violation};

const CHAIN: u32 = 7;
/// Raft's election timeout: randomized in `[n, 2n)` ticks at every reset.
const ELECTION_TICKS: usize = 10;
/// A second asset, held by some accounts.
const ASSET_B: u32 = 5;
/// Probability that one write, or one fdatasync, fails during chaos (EIO or ENOSPC).
const STORAGE_FAULT_P: f64 = 0.0006;

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
    /// An operator's membership change, as the admin endpoint hands it to the shard.
    Membership {
        client: u64,
        changes: Vec<(ConfChangeType, u64)>,
    },
}

/// One shard replica on one validator: its node, disk and queued inputs.
struct Slot {
    node: Option<ShardNode<u64>>,
    disk: SimDisk,
    inputs: VecDeque<Input>,
    /// The last ready cycle staged for the next group commit.
    staged_up_to: Option<u64>,
    /// The group commit in flight: (the last ready cycle it makes durable, its fdatasync
    /// completes at).
    committing: Option<(u64, u64)>,
    /// Highest log index compared against the cluster's committed log.
    checked: u64,
}

struct Validator {
    up: bool,
    restart_at: Option<u64>,
    shards: Vec<Slot>,
    /// This validator's clock: microseconds of simulated time between its ticks, and when the
    /// next one is due.
    tick_period_us: u64,
    next_tick_us: u64,
    /// The voters its disks start with when they hold no membership yet: the initial group
    /// (an original member), or the initial group without itself (a joiner, as `--join`).
    initial_voters: Vec<u64>,
    /// Recovery refused to start (a damaged WAL): down until the operator repairs it.
    broken: bool,
    /// Stopped by the operator before removing it from a group it leads: down until wiped.
    stopped: bool,
    /// The bit flipped in its WAL (shard, record offset), expected in the refusal.
    flipped: Option<(usize, u64)>,
    /// It has been in some shard's group since it was last wiped.
    was_member: bool,
    /// Its node id: `index + 1` at first, a new one each time it is wiped (a removed node id
    /// never comes back: `ShardState::node_removed`).
    node_id: u64,
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
    /// The node id the next wiped validator comes back with.
    next_node_id: u64,
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
    /// Chaos is on in this step (storage faults happen only then).
    chaotic: bool,
    /// One-way partitions: messages from the first validator to the second are lost.
    one_way: BTreeSet<(usize, usize)>,
    /// The operator: the voters every shard's group should have (node ids), the membership
    /// requests waiting for their answer (by reply handle), the one outstanding per shard, the
    /// changes answered `Ok` (shard, index, (term, hash) of the entry), a validator being
    /// repaired (re-added after its wipe).
    goal: BTreeSet<u64>,
    requests: BTreeMap<u64, MembershipRequest>,
    pending: Vec<Option<u64>>,
    ok_changes: Vec<(usize, u64, (u64, u128))>,
    repairing: Option<usize>,
    trace: Xxh3,
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
            controllers: Default::default(),
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
            next_node_id: n as u64 + 1,
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
            chaotic: false,
            one_way: BTreeSet::new(),
            goal: (1..=config.group as u64).collect(),
            requests: BTreeMap::new(),
            pending: vec![None; config.shards as usize],
            ok_changes: Vec::new(),
            repairing: None,
            trace: Xxh3::new(),
            genesis,
            config,
        };
        for v in 0..n {
            let initial_voters = cluster.initial_voters(v, v >= cluster.config.group);
            let shards = cluster.fresh_slots(&initial_voters);
            let tick_period_us = cluster.config.tick_ms * 1000;
            let next_tick_us = cluster.rng.gen_range(0..tick_period_us);
            cluster.validators.push(Validator {
                up: false,
                restart_at: None,
                shards,
                tick_period_us,
                next_tick_us,
                initial_voters,
                broken: false,
                stopped: false,
                flipped: None,
                was_member: v < cluster.config.group,
                node_id: v as u64 + 1,
            });
        }
        cluster
    }

    /// The voters validator `v`'s disks start with: the initial group for an original member
    /// at the cluster's start; otherwise (a validator outside it, or one wiped) the initial
    /// group without itself — it is in no group of its own view, never campaigns, and waits
    /// for a leader to add it (as the runtime's `--join`: its `--peers`, the validators the
    /// cluster started with). An empty configuration would be the natural choice, but
    /// `ShardReplica::new` refuses one (see docs/simulator.md).
    fn initial_voters(&self, _v: usize, joiner: bool) -> Vec<u64> {
        // A joiner (`--join`) starts with no configuration: the leader's snapshot brings it.
        if joiner {
            return Vec::new();
        }
        (1..=self.config.group as u64).collect()
    }

    /// Empty disks for every shard of a validator.
    fn fresh_slots(&self, initial_voters: &[u64]) -> Vec<Slot> {
        (0..self.config.shards)
            .map(|s| Slot {
                node: None,
                disk: SimDisk::new(s, ConfState::from((initial_voters.to_vec(), vec![]))),
                inputs: VecDeque::new(),
                staged_up_to: None,
                committing: None,
                checked: 0,
            })
            .collect()
    }

    /// Validator `v`'s node id now.
    pub(super) fn id(&self, v: usize) -> u64 {
        self.validators[v].node_id
    }

    /// The validator (index) that has node id `id` now; `None` for an id that a wiped
    /// validator had before.
    pub(super) fn index_of(&self, id: u64) -> Option<usize> {
        self.validators.iter().position(|x| x.node_id == id)
    }

    /// Adds an event to the run's trace.
    fn trace(&mut self, words: &[u64]) {
        for w in words {
            self.trace.update(&w.to_le_bytes());
        }
        self.stats.trace_events += 1;
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
            node_id: self.validators[v].node_id,
            incarnation: self.now + 1,
            replicated: true,
            forward_timeout_ms: 300,
            forwards_pending_max: 64,
            raft_piece_bytes: self.config.raft_piece_bytes,
            raft_message_bytes_max: 1 << 20,
            snapshot_interval_entries: self.config.snapshot_interval,
            // By entries only, as the seeds were written for (its entries are small).
            snapshot_interval_bytes: u64::MAX,
            credit_announce_interval_ms: 200,
            leader_transfer_interval_ms: 300,
            ready_cycles_in_flight_max: self.config.ready_cycles_in_flight_max,
        }
    }

    /// Starts (or restarts) a validator from its disks, as the runtime's `open_shard` does.
    /// A shard whose recovery is refused (a damaged WAL) keeps the whole validator down (the
    /// runtime refuses to start) until the operator repairs it; returns whether it started.
    fn start(&mut self, v: usize) -> Result<bool, Violation> {
        let shard_count = self.config.shards;
        let mut recovered = Vec::new();
        for s in 0..shard_count as usize {
            match self.validators[v].shards[s].disk.recover() {
                Ok(data) => recovered.push(data),
                Err(refusal) => return self.refused(v, s, refusal.0).map(|()| false),
            }
        }
        let voters = self.validators[v].initial_voters.clone();
        for (s, data) in recovered.iter_mut().enumerate() {
            // As the runtime's `open_shard`: a founding replica's first start saves the
            // bootstrap snapshot (genesis at index 1, the founding configuration) before
            // anything else; a joiner (no voters) starts with no configuration at all.
            let disk = &mut self.validators[v].shards[s].disk;
            if data.is_none() && !voters.is_empty() && disk.is_blank() {
                let mut genesis_state =
                    ShardState::from_genesis(&self.genesis, s as u32, shard_count);
                let (index, term, conf, bytes) = bootstrap_snapshot(&mut genesis_state, &voters);
                disk.save_local_snapshot(index, term, conf, bytes);
                *data = disk.recover().expect("a bootstrap snapshot recovers");
            }
        }
        for (s, data) in recovered.into_iter().enumerate() {
            let node_config = self.node_config(v);
            let state = match data {
                Some(bytes) => decode_state(&bytes).expect("own snapshot decodes"),
                None => ShardState::from_genesis(&self.genesis, s as u32, shard_count),
            };
            let mut config = ReplicaConfig::new(self.validators[v].node_id, s as u32);
            config.voters = voters.clone();
            config.election_tick = ELECTION_TICKS;
            config.heartbeat_tick = 2;
            config.max_inflight_msgs = 8;
            config.entry_records_max = 16;
            config.recent_transactions_max = 0;
            config.recent_blocks_max = 0;
            let slot = &mut self.validators[v].shards[s];
            slot.checked = state.applied_index();
            slot.inputs.clear();
            slot.staged_up_to = None;
            slot.committing = None;
            let replica =
                ShardReplica::new(config, slot.disk.mem.clone(), state).expect("replica starts");
            slot.node = Some(ShardNode::new(node_config, replica));
        }
        let validator = &mut self.validators[v];
        validator.up = true;
        validator.restart_at = None;
        validator.next_tick_us = self.now * 1000 + self.rng.gen_range(0..validator.tick_period_us);
        self.trace(&[7, v as u64]);
        Ok(true)
    }

    /// Recovery of validator `v`'s shard `s` refused to start: it must be the bit flipped in
    /// its WAL, and the refusal must name the shard and the damaged record's offset (as a real
    /// WAL's error names the file and the byte). The validator stays down for the operator.
    fn refused(&mut self, v: usize, s: usize, message: String) -> Result<(), Violation> {
        let Some((shard, offset)) = self.validators[v].flipped else {
            return Err(self.violation(format!(
                "validator {} shard {s}: recovery refused without a damaged WAL: {message}",
                v + 1
            )));
        };
        let names = message.contains(&format!("shard-{shard}/"))
            && message.contains(&format!("byte offset {offset}:"));
        if shard != s || !names {
            return Err(self.violation(format!(
                "validator {} shard {s}: recovery refusal does not name the damaged record (shard {shard}, offset {offset}): {message}",
                v + 1
            )));
        }
        self.stats.recoveries_refused += 1;
        self.trace(&[8, v as u64, s as u64, offset]);
        let validator = &mut self.validators[v];
        validator.broken = true;
        validator.restart_at = None;
        self.start_repair(v);
        Ok(())
    }

    /// Power loss or fail-stop: every shard loses what it had not fsynced (sometimes a torn
    /// prefix of it survives); the membership requests it held are never answered. Now and
    /// then a bit of a sealed WAL record was damaged as well (found at the next start).
    fn crash(&mut self, v: usize) {
        let torn_p = 0.5;
        self.trace(&[6, v as u64]);
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
            slot.staged_up_to = None;
            slot.committing = None;
        }
        self.stats.crashes += 1;
        self.forget_requests(v);
        self.maybe_flip_bit(v);
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
            Input::Membership { client, changes } => {
                let before = self
                    .node(v, s)
                    .replica()
                    .raw_node()
                    .raft
                    .raft_log
                    .last_index();
                if let Some(request) = self.requests.get_mut(&client) {
                    request.before = Some(before);
                }
                let peer_addr = operator::peer_addr(v);
                self.node(v, s)
                    .change_membership(&mut io, &changes, &peer_addr, client);
            }
        }
        self.flush(v, s, io)
    }

    /// A client's answer from validator `v`'s shard `s` (its own or a forwarded one's).
    fn client_answer(
        &mut self,
        v: usize,
        s: usize,
        client: u64,
        answer: Answer,
    ) -> Result<(), Violation> {
        let answer = match answer {
            Answer::Membership(result) => return self.membership_answer(v, s, client, result),
            other => other,
        };
        let records = self.clients.remove(&client).unwrap_or_default();
        match &answer {
            Answer::Outcomes(Ok(outcomes)) => {
                let mut words = vec![4, client];
                words.extend(outcomes.iter().map(|o| o.block));
                self.trace(&words);
            }
            _ => self.trace(&[5, client]),
        }
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
        self.chaotic = chaotic;
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
        self.drift_clocks();
        // Ticks (each validator's clock has its own phase and rate).
        let now_us = self.now * 1000;
        for v in 0..self.validators.len() {
            if !self.validators[v].up || self.validators[v].next_tick_us > now_us {
                continue;
            }
            let validator = &mut self.validators[v];
            validator.next_tick_us =
                (validator.next_tick_us + validator.tick_period_us).max(now_us);
            for s in 0..self.validators[v].shards.len() {
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
        self.operate(workload)?;
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
        self.drift_clocks();
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
                    "no progress: shard {s} acknowledged no transfer in {} ms after healing (goal {:?}, pending {:?}); replicas: {}",
                    self.config.calm_ms,
                    self.goal,
                    self.pending,
                    (0..self.config.shards as usize)
                        .map(|s| format!("shard {s}: {}", self.describe(s)))
                        .collect::<Vec<_>>()
                        .join("; ")
                )));
            }
        }
        // Quiesce: no new work; the operator finishes its changes (a repair included), and
        // every member of every group catches up.
        let deadline = self.now + 8000;
        loop {
            if self.caught_up() {
                break;
            }
            if self.now >= deadline {
                return Err(self.violation(format!(
                    "replicas did not catch up after the last heal (goal {:?}, pending {:?}); shard 0: {}; shard 1: {}",
                    self.goal,
                    self.pending,
                    self.describe(0),
                    self.describe(1)
                )));
            }
            self.step_once(false, false)?;
        }
        self.check_final()?;
        self.stats.steps = self.now;
        self.stats.trace_digest = self.trace.digest128();
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
