//! `snapshot`: taking and loading a snapshot of a 1,000,000-account shard, beside plain std::fs
//! writing (with `sync_all`) and reading of the same bytes in the same run.
//!
//! - take: `encode_state` + `aurigraph_storage::write_snapshot` (checksum, tmp file, fsync, rename,
//!   directory fsync, old snapshots removed);
//! - load: `read_latest_snapshot` (read, verify checksum) + `decode_state` (validate the archive,
//!   rebuild the shard's hash map);
//! - and the file layer alone (`write_snapshot` of already encoded bytes, `read_latest_snapshot`);
//! - the part of a take the shard's core pays (`capture_state`, a copy of the state: the node
//!   archives the copy on glommio's blocking pool).

use aurigraph_benches::{
    criterion, filesystem_of, genesis_for, measuring, median_ns, random_addresses, scratch_dir,
    sized, Comparison, Summary,
};
use aurigraph_engine::state_snapshot::{capture_state, decode_state, encode_state};
use aurigraph_engine::ShardState;
use aurigraph_storage::{read_latest_snapshot, write_snapshot};
use criterion::SamplingMode;
use mimalloc::MiMalloc;
use raft::eraftpb::{ConfState, SnapshotMetadata};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const GROUP: &str = "snapshot";
const ACCOUNTS_FULL: usize = 1_000_000;

fn raw_write(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::File::create(path).expect("create raw file");
    file.write_all(bytes).expect("write raw file");
    file.sync_all().expect("sync raw file");
}

fn metadata(index: u64) -> SnapshotMetadata {
    let mut meta = SnapshotMetadata {
        index,
        term: 1,
        ..Default::default()
    };
    meta.set_conf_state(ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    });
    meta
}

fn main() {
    let since = SystemTime::now();
    let mut rng = StdRng::seed_from_u64(0x5AA9);
    let accounts = sized(ACCOUNTS_FULL, 10_000);
    let addresses = random_addresses(accounts, &mut rng);
    let state = ShardState::from_genesis(&genesis_for(&addresses, 1_000_000_000_000), 0, 1);
    drop(addresses);
    let encoded = encode_state(&state);
    let snapshot_bytes = encoded.len();
    println!("snapshot: {accounts} accounts archive to {snapshot_bytes} bytes");

    let scratch = scratch_dir("snapshot-");
    println!(
        "snapshot: scratch directory {} ({})",
        scratch.path().display(),
        filesystem_of(scratch.path())
    );
    let ours_dir = scratch.path().join("snapshots");
    let raw_path = scratch.path().join("raw.bin");

    // Round trip once before timing: the loaded state is the state.
    let written = write_snapshot(&ours_dir, &metadata(1), &encoded).expect("write snapshot");
    let (meta, data) = read_latest_snapshot(&ours_dir)
        .expect("read snapshot")
        .expect("a snapshot is there");
    assert_eq!(meta.index, 1);
    assert_eq!(data, encoded);
    let loaded = decode_state(&data).expect("decode snapshot");
    assert_eq!(loaded.state_hash(), state.state_hash());
    assert_eq!(loaded.account_count(), accounts);
    let file_bytes = std::fs::metadata(&written).expect("stat snapshot").len();
    drop((loaded, data));
    raw_write(&raw_path, &encoded);

    // Taking and loading run for half a second or more: 10 samples of one iteration need ~10 s.
    let long = Duration::from_secs(10);
    let short = Duration::from_secs(3);
    let mut c = criterion(10, short);
    let mut group = c.benchmark_group(GROUP);
    group.sampling_mode(SamplingMode::Flat);
    let mut index = 1u64;
    group.measurement_time(long);
    group.bench_function("take_encode_write", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                index += 1;
                let start = Instant::now();
                let bytes = encode_state(&state);
                write_snapshot(&ours_dir, &metadata(index), &bytes).expect("write snapshot");
                elapsed += start.elapsed();
            }
            elapsed
        })
    });
    // What the shard's core pays now: the copy; archiving runs on glommio's blocking pool.
    group.bench_function("capture_on_core", |b| {
        b.iter_with_large_drop(|| capture_state(&state))
    });
    group.measurement_time(short);
    group.bench_function("file_write", |b| {
        b.iter(|| {
            index += 1;
            write_snapshot(&ours_dir, &metadata(index), &encoded).expect("write snapshot")
        })
    });
    group.bench_function("raw_write_sync", |b| {
        b.iter(|| raw_write(&raw_path, &encoded))
    });
    group.measurement_time(long);
    group.bench_function("load_read_decode", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let (_, data) = read_latest_snapshot(&ours_dir)
                    .expect("read snapshot")
                    .expect("a snapshot is there");
                let loaded = decode_state(&data).expect("decode snapshot");
                elapsed += start.elapsed();
                assert_eq!(loaded.account_count(), accounts);
                drop((loaded, data));
            }
            elapsed
        })
    });
    group.measurement_time(short);
    group.bench_function("file_read", |b| {
        b.iter_with_large_drop(|| {
            read_latest_snapshot(&ours_dir)
                .expect("read snapshot")
                .expect("a snapshot is there")
        })
    });
    group.bench_function("raw_read", |b| {
        b.iter_with_large_drop(|| std::fs::read(&raw_path).expect("read raw file"))
    });
    group.finish();
    c.final_summary();
    drop(scratch);
    if !measuring() {
        return;
    }

    let mut summary = Summary::new();
    let ms = |bench: &str| median_ns(GROUP, bench, since).map(|ns| ns / 1e6);
    let comparisons = [
        (
            "take_encode_write",
            "raw_write_sync",
            "snapshot_write_ms_1m_accounts",
            "snapshot_raw_write_ms_1m_accounts",
            "snapshot_write_ratio_vs_raw",
            "raw File::create+write_all+sync_all baseline",
        ),
        (
            "capture_on_core",
            "take_encode_write",
            "snapshot_on_core_ms_1m_accounts",
            "snapshot_write_ms_1m_accounts",
            "snapshot_on_core_share",
            "the whole take (copy, archive, file)",
        ),
        (
            "file_write",
            "raw_write_sync",
            "snapshot_file_write_ms_1m_accounts",
            "snapshot_raw_write_ms_1m_accounts",
            "snapshot_file_write_ratio_vs_raw",
            "raw File::create+write_all+sync_all baseline",
        ),
        (
            "load_read_decode",
            "raw_read",
            "snapshot_load_ms_1m_accounts",
            "snapshot_raw_read_ms_1m_accounts",
            "snapshot_load_ratio_vs_raw",
            "raw std::fs::read baseline",
        ),
        (
            "file_read",
            "raw_read",
            "snapshot_file_read_ms_1m_accounts",
            "snapshot_raw_read_ms_1m_accounts",
            "snapshot_file_read_ratio_vs_raw",
            "raw std::fs::read baseline",
        ),
    ];
    for (ours, raw, name, raw_name, ratio_name, raw_label) in comparisons {
        let (Some(value), Some(raw)) = (ms(ours), ms(raw)) else {
            println!("snapshot {ours}: not measured in this run (filtered out)");
            continue;
        };
        summary.compare(Comparison {
            name,
            value,
            raw_name,
            raw,
            raw_label,
            unit: " ms",
            ratio_name: Some(ratio_name),
        });
    }
    summary.compare(Comparison {
        name: "snapshot_bytes_1m_accounts",
        value: file_bytes as f64,
        raw_name: "snapshot_raw_bytes_1m_accounts",
        raw: snapshot_bytes as f64,
        raw_label: "raw (the rkyv archive alone)",
        unit: " B",
        ratio_name: None,
    });
    let path = summary.write().expect("write summary");
    println!("snapshot: summary merged into {}", path.display());
}
