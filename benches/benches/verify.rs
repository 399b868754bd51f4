//! `verify`: the engine's batched signature verification of 4,096 real signed transfers, beside
//! ed25519-dalek's `verify_batch` called directly on the same records in chunks of the same size
//! (parsing keys and signatures from their bytes, as any verifier must).

use aurigraph_benches::{criterion, measuring, median_ns, per_sec, Comparison, Summary, CHAIN_ID};
use aurigraph_engine::verify::{SignatureVerifier, VERIFY_CHUNK_DEFAULT};
use aurigraph_wire::record::{address_of, Address, Record, Transfer};
use criterion::{SamplingMode, Throughput};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use mimalloc::MiMalloc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::{Duration, SystemTime};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const RECORDS: usize = 4_096;
// One key per record: a fresh verifier decompresses every key, exactly as the raw baseline does.
const KEYS: usize = RECORDS;
const GROUP: &str = "verify";

/// Scratch of the raw baseline (reused between calls, like the engine's verifier).
#[derive(Default)]
struct RawScratch {
    keys: Vec<VerifyingKey>,
    signatures: Vec<Signature>,
}

/// ed25519-dalek batch verification straight from the record bytes, `chunk` records per batch.
fn raw_verify(records: &[Record], chunk: usize, scratch: &mut RawScratch) -> usize {
    let mut messages: Vec<&[u8]> = Vec::with_capacity(chunk);
    let mut valid = 0;
    for part in records.chunks(chunk) {
        scratch.keys.clear();
        scratch.signatures.clear();
        messages.clear();
        for record in part {
            let Ok(key) = VerifyingKey::from_bytes(record.from_bytes()) else {
                continue;
            };
            scratch.keys.push(key);
            scratch
                .signatures
                .push(Signature::from_bytes(record.signature()));
            messages.push(&record.message()[..]);
        }
        if ed25519_dalek::verify_batch(&messages, &scratch.signatures, &scratch.keys).is_ok() {
            valid += messages.len();
        }
    }
    valid
}

fn main() {
    let since = SystemTime::now();
    let mut rng = StdRng::seed_from_u64(0x5165);
    let keys: Vec<SigningKey> = (0..KEYS)
        .map(|_| SigningKey::from_bytes(&rng.gen()))
        .collect();
    let mut nonces = vec![0u64; KEYS];
    let records: Vec<Record> = (0..RECORDS)
        .map(|i| {
            let k = i % KEYS;
            nonces[k] += 1;
            Transfer {
                chain_id: CHAIN_ID,
                from: address_of(&keys[k]),
                to: Address(rng.gen()),
                asset: 0,
                amount: rng.gen_range(1..=1000),
                nonce: nonces[k],
            }
            .sign(&keys[k])
        })
        .collect();

    let mut chunks = vec![VERIFY_CHUNK_DEFAULT, 64, 256];
    chunks.sort_unstable();
    chunks.dedup();

    // Both sides accept every signature before anything is timed.
    let mut valid = Vec::with_capacity(RECORDS);
    let mut scratch = RawScratch::default();
    for &chunk in &chunks {
        let ours = SignatureVerifier::new(chunk).verify(&records, &mut valid);
        let raw = raw_verify(&records, chunk, &mut scratch);
        assert_eq!((ours, raw), (RECORDS, RECORDS), "chunk {chunk}");
    }

    // 20 samples: the machine is shared, and the median of more samples resists bursts of load.
    let mut c = criterion(20, Duration::from_secs(4));
    let mut group = c.benchmark_group(GROUP);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(RECORDS as u64));
    for &chunk in &chunks {
        // Cold: a new verifier per pass, so every key is decompressed, as the raw baseline does.
        group.bench_function(format!("engine_chunk{chunk}"), |b| {
            b.iter(|| SignatureVerifier::new(chunk).verify(black_box(&records), &mut valid))
        });
        // Warm: the stage as the node runs it, its decompressed-key cache holding the senders.
        let mut verifier = SignatureVerifier::new(chunk);
        group.bench_function(format!("engine_warm_keys_chunk{chunk}"), |b| {
            b.iter(|| verifier.verify(black_box(&records), &mut valid))
        });
        group.bench_function(format!("raw_dalek_chunk{chunk}"), |b| {
            b.iter(|| raw_verify(black_box(&records), chunk, &mut scratch))
        });
    }
    group.finish();
    c.final_summary();
    if !measuring() {
        return;
    }
    // Which arithmetic these figures are of (chosen at run time; see .cargo/config.toml).
    println!(
        "verify: curve25519-dalek backend {}",
        aurigraph_wire::signature_backend::Ed25519Backend::detect().name()
    );

    let mut summary = Summary::new();
    let rate =
        |bench: String| median_ns(GROUP, &bench, since).map(|ns| per_sec(RECORDS as f64, ns));
    for &chunk in &chunks {
        let (Some(ours), Some(raw)) = (
            rate(format!("engine_chunk{chunk}")),
            rate(format!("raw_dalek_chunk{chunk}")),
        ) else {
            println!("verify chunk {chunk}: not measured in this run (filtered out)");
            continue;
        };
        let mut suffixes = vec![format!("_chunk{chunk}")];
        if chunk == VERIFY_CHUNK_DEFAULT {
            suffixes.insert(0, String::new());
        }
        if let Some(warm) = rate(format!("engine_warm_keys_chunk{chunk}")) {
            summary.compare(Comparison {
                name: &format!("verify_warm_keys_signatures_per_sec_per_core_chunk{chunk}"),
                value: warm,
                raw_name: &format!("verify_raw_signatures_per_sec_per_core_chunk{chunk}"),
                raw,
                raw_label: &format!("raw ed25519-dalek verify_batch chunk-{chunk} baseline"),
                unit: "/s",
                ratio_name: Some(&format!("verify_warm_keys_ratio_vs_raw_chunk{chunk}")),
            });
        }
        for suffix in suffixes {
            summary.compare(Comparison {
                name: &format!("verify_signatures_per_sec_per_core{suffix}"),
                value: ours,
                raw_name: &format!("verify_raw_signatures_per_sec_per_core{suffix}"),
                raw,
                raw_label: &format!("raw ed25519-dalek verify_batch chunk-{chunk} baseline"),
                unit: "/s",
                ratio_name: Some(&format!("verify_ratio_vs_raw{suffix}")),
            });
        }
    }
    let path = summary.write().expect("write summary");
    println!("verify: summary merged into {}", path.display());
}
