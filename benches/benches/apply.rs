//! `apply`: `ShardState::apply_batch` on a 1,000,000-account shard, beside a raw hash map doing
//! the same debit + credit per transfer in the same order; and the ledger's resident memory per
//! account beside the raw map's.

use aurigraph_benches::{
    criterion, genesis_for, measuring, median_ns, per_sec, random_addresses, rss_bytes, sized,
    Comparison, NonceClock, Summary, TransferPool, Zipf,
};
use aurigraph_engine::ShardState;
use aurigraph_wire::{Record, ResultCode};
use criterion::Throughput;
use mimalloc::MiMalloc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant, SystemTime};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const ACCOUNTS_FULL: usize = 1_000_000;
const BATCH_RECORDS: usize = 8_192;
/// 122 batches: 999,424 pre-built transfers per workload.
const BATCHES_FULL: usize = 122;
const GENESIS_AMOUNT: u64 = 1_000_000_000_000;
const GROUP: &str = "apply";

/// The raw baseline: balances only, keyed by the address bytes, with the engine's hasher.
type RawMap = hashbrown::HashMap<[u8; 32], u64, foldhash::fast::RandomState>;

/// The same debit + credit as a successful transfer, on a bare map. Returns the transfers done.
fn raw_apply(map: &mut RawMap, records: &[Record]) -> usize {
    let mut done = 0;
    for record in records {
        let amount = record.amount();
        let Some(balance) = map.get_mut(record.from_bytes()) else {
            continue;
        };
        if *balance < amount {
            continue;
        }
        *balance -= amount;
        *map.entry(record.to().0).or_insert(0) += amount;
        done += 1;
    }
    done
}

/// Walks a pool batch after batch, renumbering its nonces whenever it starts a pass.
struct Cursor {
    next: usize,
    ok: u64,
    total: u64,
}

impl Cursor {
    fn new(pool: &TransferPool) -> Cursor {
        Cursor {
            next: pool.batches.len(),
            ok: 0,
            total: 0,
        }
    }

    fn advance<'p>(&mut self, pool: &'p mut TransferPool, clock: &mut NonceClock) -> &'p [Record] {
        if self.next == pool.batches.len() {
            pool.rebase(clock);
            self.next = 0;
        }
        self.next += 1;
        &pool.batches[self.next - 1]
    }

    fn share(&self) -> f64 {
        self.ok as f64 / self.total.max(1) as f64
    }
}

fn main() {
    let since = SystemTime::now();
    let mut rng = StdRng::seed_from_u64(0xA991);
    let accounts = sized(ACCOUNTS_FULL, 10_000);
    let batches = sized(BATCHES_FULL, 4);

    // Inputs for the state come first, so that the RSS growth below is the state alone.
    let addresses = random_addresses(accounts, &mut rng);
    let genesis = genesis_for(&addresses, GENESIS_AMOUNT);
    let before_state = rss_bytes();
    let mut state = ShardState::from_genesis(&genesis, 0, 1);
    let after_state = rss_bytes();
    assert_eq!(state.account_count(), accounts);
    let mut raw = RawMap::with_capacity_and_hasher(accounts, Default::default());
    for a in &genesis.allocations {
        raw.insert(a.address.0, a.amount);
    }
    let after_raw = rss_bytes();
    drop(genesis);

    let transfers = batches * BATCH_RECORDS;
    let mut uniform = TransferPool::generate(&addresses, transfers, BATCH_RECORDS, &mut rng, |r| {
        r.gen_range(0..accounts)
    });
    let zipf = Zipf::new(accounts, 0.99);
    let mut skewed = TransferPool::generate(&addresses, transfers, BATCH_RECORDS, &mut rng, |r| {
        zipf.sample(r)
    });
    println!(
        "apply: {accounts} accounts, {transfers} pre-built transfers per workload in batches of \
         {BATCH_RECORDS}; busiest sender: {} transfers (uniform), {} (zipf 0.99)",
        uniform.seq_max(),
        skewed.seq_max()
    );

    let mut c = criterion(10, Duration::from_secs(4));
    let mut group = c.benchmark_group(GROUP);
    group.throughput(Throughput::Elements(BATCH_RECORDS as u64));
    let mut clock = NonceClock::default();
    let mut index = 0u64;
    let mut results: Vec<ResultCode> = Vec::with_capacity(BATCH_RECORDS);
    let mut shares = Vec::new();
    for (workload, pool) in [("uniform", &mut uniform), ("zipf099", &mut skewed)] {
        let mut ours = Cursor::new(pool);
        group.bench_function(format!("ledger_{workload}"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let batch = ours.advance(pool, &mut clock);
                    index += 1;
                    let start = Instant::now();
                    state.apply_batch(index, batch, &mut results);
                    elapsed += start.elapsed();
                    ours.ok += results.iter().filter(|r| r.is_ok()).count() as u64;
                    ours.total += batch.len() as u64;
                }
                elapsed
            })
        });
        let mut base = Cursor::new(pool);
        group.bench_function(format!("raw_hashmap_{workload}"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let batch = base.advance(pool, &mut clock);
                    let start = Instant::now();
                    let done = raw_apply(&mut raw, batch);
                    elapsed += start.elapsed();
                    base.ok += done as u64;
                    base.total += batch.len() as u64;
                }
                elapsed
            })
        });
        println!(
            "apply {workload}: OK share {:.4}% of {} applied transfers (raw baseline {:.4}% of {})",
            100.0 * ours.share(),
            ours.total,
            100.0 * base.share(),
            base.total
        );
        shares.push((workload, ours.share(), ours.total));
    }
    group.finish();
    c.final_summary();
    for (workload, share, total) in shares {
        assert!(
            total == 0 || share >= 0.99,
            "only {:.2}% of {workload} transfers applied OK: the figure would not measure apply",
            100.0 * share
        );
    }

    if !measuring() {
        return;
    }
    let mut summary = Summary::new();
    let per_account = |bytes: u64, base: u64| bytes.saturating_sub(base) as f64 / accounts as f64;
    summary.compare(Comparison {
        name: "ledger_rss_bytes_per_account",
        value: per_account(after_state, before_state),
        raw_name: "ledger_raw_hashmap_rss_bytes_per_account",
        raw: per_account(after_raw, after_state),
        raw_label: "raw hash-map<[u8;32],u64> baseline",
        unit: " B/account",
        ratio_name: Some("ledger_rss_ratio_vs_raw_hashmap"),
    });
    let tps =
        |bench: &str| median_ns(GROUP, bench, since).map(|ns| per_sec(BATCH_RECORDS as f64, ns));
    for (workload, suffix, ratio_name) in [
        ("uniform", "", "apply_ratio_vs_raw_hashmap"),
        ("zipf099", "_zipf099", "apply_ratio_vs_raw_hashmap_zipf099"),
    ] {
        let (Some(ours), Some(raw)) = (
            tps(&format!("ledger_{workload}")),
            tps(&format!("raw_hashmap_{workload}")),
        ) else {
            println!("apply {workload}: not measured in this run (filtered out)");
            continue;
        };
        summary.compare(Comparison {
            name: &format!("apply_transfers_per_sec_per_core{suffix}"),
            value: ours,
            raw_name: &format!("apply_raw_hashmap_transfers_per_sec_per_core{suffix}"),
            raw,
            raw_label: "raw hash-map baseline",
            unit: "/s",
            ratio_name: Some(ratio_name),
        });
    }
    let path = summary.write().expect("write summary");
    println!("apply: summary merged into {}", path.display());
}
