//! What a simulator run is given (its configuration, drawn from the seed), what it reports
//! (its statistics) and how it fails (a violation with the seed and the step).

use crate::node::NodeCounters;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What one seed's run looks like.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Validators in the cluster; the shards' groups start with the first `group` of them as
    /// voters, the others start outside every group (as `aurigraph node --join`).
    pub validators: usize,
    pub group: usize,
    pub shards: u32,
    pub accounts: usize,
    /// Rounds of (chaos, calm): faults during chaos; all healed and restarted for calm, during
    /// which every shard must commit new transfers.
    pub rounds: usize,
    pub chaos_ms: u64,
    pub calm_ms: u64,
    /// Milliseconds of simulated time between raft ticks (each validator's clock runs up to
    /// `tick_drift_pct` % faster or slower, and its rate changes over time).
    pub tick_ms: u64,
    pub tick_drift_pct: u64,
    /// The operator moves the goal (spares replace voters, groups grow and shrink); without
    /// it, membership changes only for repairs.
    pub membership_moves: bool,
    /// Write and fdatasync errors (fail-stop) and flipped WAL bits (repair).
    pub storage_faults: bool,
    pub one_way_partitions: bool,
    /// The operator proposes a leader's own removal at that leader (finding F3: raft-rs keeps
    /// a removed leader leading and panics at its next acknowledgement). Off: the operator
    /// stops a validator before removing it from a group it leads.
    pub remove_leader: bool,
    /// The operator wipes a removed validator as soon as the leaders no longer list it
    /// (finding F4); off: only once no replica's applied configuration lists it.
    pub wipe_early: bool,
    /// Take a local snapshot (and truncate the log) every this many applied entries.
    pub snapshot_interval: u64,
    /// Raft messages larger than this go in pieces (small, so that snapshots do).
    pub raft_piece_bytes: usize,
    /// Messages each peer's transport queue takes per step and shard before it is full.
    pub transport_queue_max: usize,
    /// Ready cycles a shard stages before they are durable (1: each write durable before the
    /// next cycle starts, as before raft-rs's asynchronous append was used).
    pub ready_cycles_in_flight_max: usize,
}

impl SimConfig {
    /// The configuration a seed picks: 4 validators, sometimes 5, groups of 3 voters at the
    /// start; 2 shards.
    pub fn for_seed(seed: u64) -> SimConfig {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_c0f1_9000_0001);
        SimConfig {
            validators: if rng.gen_bool(0.25) { 5 } else { 4 },
            group: 3,
            shards: 2,
            accounts: 8,
            rounds: 3,
            chaos_ms: 1500,
            calm_ms: 1200,
            tick_ms: 10,
            tick_drift_pct: 20,
            // Goal moves: spares replacing voters, groups growing and shrinking, on top of
            // the repairs' membership changes (`AURIGRAPH_SIM_OFF=membership` turns them off).
            membership_moves: true,
            storage_faults: true,
            one_way_partitions: true,
            remove_leader: true,
            wipe_early: false,
            snapshot_interval: rng.gen_range(6..30),
            raft_piece_bytes: [512, 1024, 2048][rng.gen_range(0..3)],
            transport_queue_max: [4, 16, 64][rng.gen_range(0..3)],
            ready_cycles_in_flight_max: [1, 2, 8][rng.gen_range(0..3)],
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
    /// Membership changes answered `Ok` (each change of a ConfChangeV2 counted by kind).
    pub learners_added: u64,
    pub voters_promoted: u64,
    pub voters_removed: u64,
    pub learners_removed: u64,
    /// `Ok` answers of a ConfChangeV2 with several changes (joint consensus).
    pub joint_changes: u64,
    /// Membership answers: refused (with a reason), `Retry` (leadership lost), and requests
    /// lost with the validator that held them (crash, fail-stop).
    pub membership_refused: u64,
    pub membership_retry: u64,
    pub membership_lost: u64,
    /// Validators wiped after leaving every group (and started again as joiners).
    pub wiped: u64,
    /// Validators the operator stopped before removing them from a group they led (F3).
    pub operator_stops: u64,
    /// Storage faults: the validator fail-stops (all its shards) and restarts later.
    pub write_eio: u64,
    pub write_enospc: u64,
    pub fsync_eio: u64,
    /// Bits flipped in sealed WAL records; recoveries refused because of them (each one checked
    /// to name the shard and the record's offset); repairs completed (the validator removed
    /// from every group, wiped, added back as a learner and promoted on every shard).
    pub bit_flips: u64,
    pub recoveries_refused: u64,
    pub repairs_completed: u64,
    pub one_way_partitions: u64,
    /// Changes of a validator's tick rate, and the largest deviation seen (per mille).
    pub tick_rate_changes: u64,
    pub max_tick_skew_permille: u64,
    /// Every event of the run (sends, deliveries, ready cycles, answers, crashes, starts,
    /// membership proposals), hashed in order: two runs of a seed must agree on it.
    pub trace_events: u64,
    pub trace_digest: u128,
}

impl SimStats {
    /// Adds another run's counts (for a report over many seeds; maxima stay maxima, the trace
    /// digests are combined).
    pub fn add(&mut self, other: &SimStats) {
        self.steps += other.steps;
        self.submitted += other.submitted;
        self.acked += other.acked;
        self.acked_ok += other.acked_ok;
        self.cross_shard_ok += other.cross_shard_ok;
        self.crashes += other.crashes;
        self.torn_writes += other.torn_writes;
        self.partitions += other.partitions;
        self.dropped += other.dropped;
        self.duplicated += other.duplicated;
        self.transport_refused += other.transport_refused;
        self.leader_changes += other.leader_changes;
        self.max_commit = self.max_commit.max(other.max_commit);
        self.node.add(&other.node);
        self.learners_added += other.learners_added;
        self.voters_promoted += other.voters_promoted;
        self.voters_removed += other.voters_removed;
        self.learners_removed += other.learners_removed;
        self.joint_changes += other.joint_changes;
        self.membership_refused += other.membership_refused;
        self.membership_retry += other.membership_retry;
        self.membership_lost += other.membership_lost;
        self.wiped += other.wiped;
        self.operator_stops += other.operator_stops;
        self.write_eio += other.write_eio;
        self.write_enospc += other.write_enospc;
        self.fsync_eio += other.fsync_eio;
        self.bit_flips += other.bit_flips;
        self.recoveries_refused += other.recoveries_refused;
        self.repairs_completed += other.repairs_completed;
        self.one_way_partitions += other.one_way_partitions;
        self.tick_rate_changes += other.tick_rate_changes;
        self.max_tick_skew_permille = self
            .max_tick_skew_permille
            .max(other.max_tick_skew_permille);
        self.trace_events += other.trace_events;
        self.trace_digest ^= other.trace_digest;
    }
}
