//! Shared helpers of the Aurigraph benchmarks (see `benches/README.md`).
//!
//! - where things go: the workspace's target directory, criterion's output, scratch space on disk;
//! - reading criterion's own estimates back (median, ns per iteration) after the groups ran;
//! - merging headline figures into `target/aurigraph-bench/summary.json` and printing them;
//! - resident memory from `/proc/self/statm`;
//! - a Zipf sampler (precomputed CDF) and account / transfer generators.

use aurigraph_wire::genesis::{Allocation, Genesis};
use aurigraph_wire::record::{Address, Record, Transfer};
use criterion::Criterion;
use rand::Rng;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Chain id used by every benchmark.
pub const CHAIN_ID: u32 = 7;

// ---------------------------------------------------------------------------------------------
// Paths

/// The workspace's target directory: `$CARGO_TARGET_DIR`, else the first ancestor of the running
/// executable that cargo marked with `CACHEDIR.TAG`, else `<workspace>/target` next to this crate.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            std::env::current_dir().expect("current dir").join(dir)
        };
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            if dir.join("CACHEDIR.TAG").is_file() {
                return dir.to_path_buf();
            }
        }
    }
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .parent()
        .map(|workspace| workspace.join("target"))
        .unwrap_or_else(|| manifest.join("target"))
}

/// `target/aurigraph-bench`: the summary and scratch files live here.
pub fn bench_out_dir() -> PathBuf {
    target_dir().join("aurigraph-bench")
}

/// Where criterion writes its reports: `$CRITERION_HOME`, else `target/criterion`.
pub fn criterion_dir() -> PathBuf {
    match std::env::var_os("CRITERION_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => target_dir().join("criterion"),
    }
}

/// A fresh scratch directory on the disk that holds the target directory (never a tmpfs `/tmp`),
/// removed when dropped.
pub fn scratch_dir(prefix: &str) -> tempfile::TempDir {
    let parent = bench_out_dir().join("scratch");
    std::fs::create_dir_all(&parent).expect("create scratch parent");
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)
        .expect("create scratch dir")
}

/// The file system type of `path` (statfs), for the printed record of where I/O benches ran.
/// Panics on tmpfs/ramfs: an I/O benchmark there would measure memory, not a disk.
pub fn filesystem_of(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: `statfs` is plain old data, for which all-zero bytes are a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs writes into the struct we pass; the path is a valid C string.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    assert_eq!(rc, 0, "statfs {}", path.display());
    let name = match stat.f_type as u64 {
        0xEF53 => "ext4".to_string(),
        0x5846_5342 => "xfs".to_string(),
        0x9123_683E => "btrfs".to_string(),
        0x794C_7630 => "overlayfs".to_string(),
        0x0102_1994 | 0x8584_58F6 => {
            panic!("{} is on tmpfs/ramfs: not a disk", path.display())
        }
        other => format!("file system type {other:#x}"),
    };
    name
}

// ---------------------------------------------------------------------------------------------
// Criterion

/// Whether this run measures, as criterion decides it: `--bench` given (`cargo bench` passes it;
/// `cargo test --benches` does not) and none of `--test`, `--list`, `--profile-time`. Only then
/// are the estimates criterion writes fresh measurements worth summarising.
pub fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench")
        && !args
            .iter()
            .any(|a| a == "--test" || a == "--list" || a.starts_with("--profile-time"))
}

/// `full` when measuring, else `quick`: `cargo test --benches` runs each bench once, on small
/// inputs, to check that it works.
pub fn sized(full: usize, quick: usize) -> usize {
    if measuring() {
        full
    } else {
        quick
    }
}

/// Criterion with the modest settings these benches share: `samples` samples (10 to 20),
/// `measurement` per bench, 1 s warm-up (command-line flags still override).
pub fn criterion(samples: usize, measurement: Duration) -> Criterion {
    Criterion::default()
        .output_directory(&criterion_dir())
        .sample_size(samples)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measurement)
        .without_plots()
        .configure_from_args()
}

/// Criterion's median estimate (ns per iteration) of `group/bench` from
/// `<criterion dir>/<group>/<bench>/new/estimates.json`, if it was written at or after `since`
/// (so that a filtered-out bench never reports a stale figure).
pub fn median_ns(group: &str, bench: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(bench)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["median"]["point_estimate"].as_f64()
}

// ---------------------------------------------------------------------------------------------
// Summary

/// Headline figures of one bench binary: printed as they are added, merged into
/// `target/aurigraph-bench/summary.json` by [`Summary::write`].
#[derive(Debug, Default)]
pub struct Summary {
    entries: Vec<(String, f64)>,
}

/// One figure beside its raw baseline.
#[derive(Debug, Clone, Copy)]
pub struct Comparison<'a> {
    /// Summary key of our figure.
    pub name: &'a str,
    pub value: f64,
    /// Summary key of the raw baseline's figure.
    pub raw_name: &'a str,
    pub raw: f64,
    /// Describes the baseline in the printed line, e.g. "raw hash-map baseline".
    pub raw_label: &'a str,
    /// Unit appended to the raw figure in the printed line, e.g. "/s" or " ms".
    pub unit: &'a str,
    /// Summary key of the ratio (`value / raw`), if it has one.
    pub ratio_name: Option<&'a str>,
}

impl Summary {
    pub fn new() -> Summary {
        Summary::default()
    }

    /// Records `name = value` without printing.
    pub fn set(&mut self, name: &str, value: f64) {
        self.entries.retain(|(n, _)| n != name);
        self.entries.push((name.to_string(), value));
    }

    /// Prints `name = value (raw_label raw unit, ratio r)` and records value, raw and ratio.
    pub fn compare(&mut self, c: Comparison<'_>) -> f64 {
        let ratio = c.value / c.raw;
        println!(
            "{} = {} ({} {}{}, ratio {:.2})",
            c.name,
            format_value(c.value),
            c.raw_label,
            format_value(c.raw),
            c.unit,
            ratio
        );
        self.set(c.name, round_figure(c.value));
        self.set(c.raw_name, round_figure(c.raw));
        if let Some(ratio_name) = c.ratio_name {
            self.set(ratio_name, round_ratio(ratio));
        }
        ratio
    }

    pub fn entries(&self) -> &[(String, f64)] {
        &self.entries
    }

    /// Merges the recorded figures into `target/aurigraph-bench/summary.json` (temp + rename).
    pub fn write(&self) -> std::io::Result<PathBuf> {
        let path = bench_out_dir().join("summary.json");
        merge_summary(&path, &self.entries)?;
        Ok(path)
    }
}

/// Reads the JSON object at `path` (if any), sets `entries`, writes it back atomically.
pub fn merge_summary(path: &Path, entries: &[(String, f64)]) -> std::io::Result<()> {
    let mut object = match std::fs::read_to_string(path) {
        Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => {
                eprintln!(
                    "{} is not a JSON object; starting it afresh",
                    path.display()
                );
                serde_json::Map::new()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Map::new(),
        Err(e) => return Err(e),
    };
    for (name, value) in entries {
        let number = serde_json::Number::from_f64(*value)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null);
        object.insert(name.clone(), number);
    }
    let dir = path.parent().expect("summary path has a parent");
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("summary"),
        std::process::id()
    ));
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(object))
        .expect("a JSON object serialises");
    std::fs::write(&temp, text + "\n")?;
    std::fs::rename(&temp, path)
}

/// Figures keep 3 significant decimals below 1000 and are whole numbers above.
pub fn round_figure(v: f64) -> f64 {
    if v.abs() >= 1000.0 {
        v.round()
    } else {
        (v * 1000.0).round() / 1000.0
    }
}

pub fn round_ratio(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn format_value(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{:.0}", v)
    } else if v.abs() >= 10.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.3}", v)
    }
}

/// Per-second rate of `units` done in one iteration that took `ns`.
pub fn per_sec(units: f64, ns: f64) -> f64 {
    units * 1e9 / ns
}

// ---------------------------------------------------------------------------------------------
// Memory

/// Resident set size of this process, in bytes (`/proc/self/statm`, second field × page size).
pub fn rss_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let resident: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm has a resident field");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    resident * page.max(1) as u64
}

// ---------------------------------------------------------------------------------------------
// Zipf

/// Zipf(s) over ranks `0..n` (rank `k` has weight `1 / (k + 1)^s`), sampled by binary search in a
/// precomputed CDF.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        assert!(n >= 1);
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0f64;
        for k in 1..=n {
            total += (k as f64).powf(-s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    /// Probability of rank `k`.
    pub fn probability(&self, k: usize) -> f64 {
        self.cdf[k] - if k == 0 { 0.0 } else { self.cdf[k - 1] }
    }

    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let u: f64 = rng.gen();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

// ---------------------------------------------------------------------------------------------
// Accounts and transfers

/// `n` random 32-byte addresses (Ed25519 keys are not needed: apply does not check signatures).
pub fn random_addresses<R: Rng + ?Sized>(n: usize, rng: &mut R) -> Vec<Address> {
    let mut addresses = Vec::with_capacity(n);
    for _ in 0..n {
        addresses.push(Address(rng.gen()));
    }
    addresses
}

/// A one-shard genesis giving `amount` of asset 0 to each address.
pub fn genesis_for(addresses: &[Address], amount: u64) -> Genesis {
    let mut allocations = Vec::with_capacity(addresses.len());
    for &address in addresses {
        allocations.push(Allocation {
            address,
            asset: 0,
            amount,
        });
    }
    allocations.sort_unstable_by_key(|a| a.address);
    Genesis {
        chain_id: CHAIN_ID,
        controllers: Default::default(),
        shards: Some(1),
        allocations,
    }
}

/// Pre-built batches of transfers that all succeed when applied in order, pass after pass: each
/// record's nonce is `base + seq`, where `seq` is its 1-based position among its sender's
/// transfers in the pool, and every pass takes a fresh `base` above all nonces used before.
#[derive(Debug)]
pub struct TransferPool {
    pub batches: Vec<Vec<Record>>,
    /// Per record (flattened in batch order): its sender-relative sequence number.
    seq: Vec<u32>,
    /// Largest `seq` in the pool.
    seq_max: u64,
}

/// Source of nonce bases shared by the pools applied to one state.
#[derive(Debug, Default)]
pub struct NonceClock {
    next_base: u64,
}

impl TransferPool {
    /// `count` transfers in batches of `batch_records`, sender and receiver chosen by `pick`
    /// (a receiver equal to its sender is drawn again), amounts 1..=1000 of asset 0.
    pub fn generate<R: Rng + ?Sized>(
        addresses: &[Address],
        count: usize,
        batch_records: usize,
        rng: &mut R,
        mut pick: impl FnMut(&mut R) -> usize,
    ) -> TransferPool {
        assert!(addresses.len() >= 2 && batch_records >= 1);
        let mut sent = vec![0u32; addresses.len()];
        let mut seq = Vec::with_capacity(count);
        let mut batches = Vec::with_capacity(count.div_ceil(batch_records));
        let mut batch = Vec::with_capacity(batch_records);
        for _ in 0..count {
            let from = pick(rng);
            let to = loop {
                let to = pick(rng);
                if to != from {
                    break to;
                }
            };
            sent[from] += 1;
            seq.push(sent[from]);
            let transfer = Transfer {
                chain_id: CHAIN_ID,
                from: addresses[from],
                to: addresses[to],
                asset: 0,
                amount: rng.gen_range(1..=1000),
                nonce: sent[from] as u64,
            };
            batch.push(transfer.with_signature(&[0; 64]));
            if batch.len() == batch_records {
                batches.push(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(batch_records),
                ));
            }
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        let seq_max = sent.iter().copied().max().unwrap_or(0) as u64;
        TransferPool {
            batches,
            seq,
            seq_max,
        }
    }

    pub fn len(&self) -> usize {
        self.seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    /// Largest number of transfers one sender has in the pool.
    pub fn seq_max(&self) -> u64 {
        self.seq_max
    }

    /// Renumbers every nonce above all nonces `clock` handed out before, so that the whole pool
    /// applies again.
    pub fn rebase(&mut self, clock: &mut NonceClock) {
        let base = clock.next_base;
        clock.next_base += self.seq_max;
        let mut seq = self.seq.iter();
        for record in self.batches.iter_mut().flatten() {
            let nonce = base + *seq.next().expect("one seq per record") as u64;
            record.0[96..104].copy_from_slice(&nonce.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn zipf_favours_low_ranks_with_the_right_weights() {
        let z = Zipf::new(1000, 0.99);
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = vec![0u32; 1000];
        for _ in 0..200_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        let p0 = counts[0] as f64 / 200_000.0;
        assert!((p0 - z.probability(0)).abs() < 0.01, "{p0}");
        assert!(counts[0] > counts[9] && counts[9] > counts[99]);
        assert!((z.cdf.last().unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn pool_nonces_increase_per_sender_across_rebases() {
        let mut rng = StdRng::seed_from_u64(2);
        let addresses = random_addresses(10, &mut rng);
        let mut pool =
            TransferPool::generate(&addresses, 100, 16, &mut rng, |r| r.gen_range(0..10));
        assert_eq!(pool.len(), 100);
        assert_eq!(pool.batches.len(), 7);
        let mut clock = NonceClock::default();
        let mut last: std::collections::HashMap<Address, u64> = Default::default();
        for _ in 0..3 {
            pool.rebase(&mut clock);
            for r in pool.batches.iter().flatten() {
                assert_ne!(r.from(), r.to());
                let prev = last.insert(r.from(), r.nonce()).unwrap_or(0);
                assert!(r.nonce() > prev);
            }
        }
    }

    #[test]
    fn summary_merges_into_existing_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        merge_summary(&path, &[("a".into(), 1.0), ("b".into(), 2.0)]).unwrap();
        merge_summary(&path, &[("b".into(), 3.5), ("c".into(), 4.0)]).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"a": 1.0, "b": 3.5, "c": 4.0}));
    }
}
