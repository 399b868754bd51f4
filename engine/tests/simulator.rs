//! The deterministic simulator over many seeds: the real `ShardNode` code (the shard driver the
//! runtime runs, with its raft-rs replica) on N validators × 2 shards with a simulated network, disks and clock. See docs/simulator.md.
//!
//! - `AURIGRAPH_SIM_SEEDS=n`: how many seeds (default 10), starting at `AURIGRAPH_SIM_FIRST_SEED`
//!   (default 1).
//! - `AURIGRAPH_SIM_SEED=s`: run that one seed only (to reproduce a failure).

use aurigraph_engine::sim::run_seed;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn simulator_seeds_hold_every_invariant() {
    let seeds: Vec<u64> = match env_u64("AURIGRAPH_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let first = env_u64("AURIGRAPH_SIM_FIRST_SEED").unwrap_or(1);
            let count = env_u64("AURIGRAPH_SIM_SEEDS").unwrap_or(10);
            (first..first + count).collect()
        }
    };
    let mut failures = Vec::new();
    let mut total = aurigraph_engine::node::NodeCounters::default();
    for &seed in &seeds {
        match run_seed(seed) {
            Ok(stats) => {
                if seeds.len() <= 16 {
                    println!("seed {seed}: ok {stats:?}");
                }
                total.add(&stats.node);
            }
            Err(violation) => {
                eprintln!("{violation}");
                failures.push(violation.seed);
            }
        }
    }
    println!(
        "simulator: {} seeds, {} without a violation",
        seeds.len(),
        seeds.len() - failures.len()
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
    if seeds.len() >= 10 {
        // The seeds drive the shard driver's paths, not only raft's: a follower forwards to the
        // leader and the leader answers it, snapshots travel in pieces and are reassembled,
        // credit watermarks are announced and receipts pruned, leadership is handed over.
        println!("shard nodes did: {total:?}");
        assert!(
            total.forwarded > 0 && total.forwards_served > 0,
            "{total:?}"
        );
        assert!(total.snapshots_sent_in_pieces > 0, "{total:?}");
        assert!(total.messages_reassembled > 0, "{total:?}");
        assert!(
            total.credits_announced > 0 && total.receipts_pruned_to > 0,
            "{total:?}"
        );
        assert!(total.leadership_handovers > 0, "{total:?}");
    }
}

#[test]
fn a_seed_replays_exactly() {
    let a = run_seed(3)
        .map(|s| format!("{s:?}"))
        .map_err(|v| v.to_string());
    let b = run_seed(3)
        .map(|s| format!("{s:?}"))
        .map_err(|v| v.to_string());
    assert_eq!(a, b);
}
