//! The deterministic simulator over many seeds: the real `ShardReplica` code on N validators ×
//! 2 shards with a simulated network, disks and clock. See docs/simulator.md.
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
    for &seed in &seeds {
        match run_seed(seed) {
            Ok(stats) => {
                if seeds.len() <= 16 {
                    println!("seed {seed}: ok {stats:?}");
                }
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
