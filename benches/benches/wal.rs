//! `wal`: group commits of the storage crate's write-ahead log (stage entries, then one
//! `write_at` + one `fdatasync`), beside a raw O_DIRECT baseline on the same disk in the same run:
//! glommio `DmaFile`, the same payload bytes copied into an aligned buffer, one sequential
//! `write_at` and one `fdatasync` per group, into files that grow (`raw_dma`, the headline
//! ratio) and, second, into files zero-filled before use outside the timed part (`raw_zeroed`:
//! the best this disk does with a synced write, since it overwrites blocks that exist; the WAL
//! writes into such segments too, but makes them while it runs).
//!
//! Each entry carries a real engine batch of 1,000 records (168,012 bytes); groups hold 1, 8 or 32
//! entries. Throughput counts payload bytes (the entries' data), so the ratio includes the WAL's
//! framing (record headers, padding to 4 KiB) as well as its code.

use aurigraph_benches::{
    criterion, filesystem_of, measuring, median_ns, per_sec, random_addresses, scratch_dir,
    Comparison, Summary, CHAIN_ID,
};
use aurigraph_storage::{Wal, WalConfig};
use aurigraph_wire::record::Transfer;
use aurigraph_wire::{encode_batch, Record};
use criterion::{SamplingMode, Throughput};
use glommio::io::DmaFile;
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use mimalloc::MiMalloc;
use raft::eraftpb::Entry;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const GROUP: &str = "wal";
const ENTRY_RECORDS: usize = 1_000;
const GROUP_ENTRIES: [usize; 3] = [1, 8, 32];
/// The group size whose figures are the headline (`wal_bytes_per_sec`, ...).
const HEADLINE_GROUP_ENTRIES: usize = 8;
const SEGMENT_BYTES_MAX: u64 = 64 << 20;
const STAGED_BYTES_MAX: usize = 8 << 20;
/// Registered io_uring buffer memory; the memlock limit here is 8 MiB.
const IO_MEMORY: usize = 4 << 20;
/// Segments kept on disk by either side; older ones are removed between timed commits.
const SEGMENTS_KEPT: usize = 4;
const ALIGN: u64 = 4096;

/// One log entry's payload: an engine batch of `ENTRY_RECORDS` transfers.
fn entry_template() -> Entry {
    let mut rng = StdRng::seed_from_u64(0x3A1);
    let addresses = random_addresses(2 * ENTRY_RECORDS, &mut rng);
    let records: Vec<Record> = (0..ENTRY_RECORDS)
        .map(|i| {
            let mut signature = [0u8; 64];
            rng.fill(&mut signature[..]);
            Transfer {
                chain_id: CHAIN_ID,
                from: addresses[2 * i],
                to: addresses[2 * i + 1],
                asset: 0,
                amount: rng.gen_range(1..=1000),
                nonce: 1,
            }
            .with_signature(&signature)
        })
        .collect();
    Entry {
        term: 1,
        data: encode_batch(&records).into(),
        ..Default::default()
    }
}

/// `count` entries with the next log indexes (cheap: the payload is shared, not copied).
fn next_entries(template: &Entry, count: usize, next_index: &mut u64) -> Vec<Entry> {
    (0..count)
        .map(|_| {
            let mut entry = template.clone();
            entry.index = *next_index;
            *next_index += 1;
            entry
        })
        .collect()
}

/// The raw baseline: segment files of the same size bound, written sequentially with O_DIRECT;
/// with `zeroed`, each one zero-filled before it is used (outside the timed part).
struct RawLog {
    zeroed: bool,
    dir: PathBuf,
    file: DmaFile,
    position: u64,
    files: VecDeque<PathBuf>,
    next_seq: u64,
    /// The next segment, zero-filled.
    prepared: Option<PathBuf>,
}

impl RawLog {
    async fn create(dir: &Path, zeroed: bool) -> RawLog {
        std::fs::create_dir_all(dir).expect("create raw log dir");
        let path = dir.join("00000000000000000000.raw");
        let file = if zeroed {
            zero_fill(&path, SEGMENT_BYTES_MAX);
            open_rw(&path).await
        } else {
            DmaFile::create(&path).await.expect("create raw segment")
        };
        let mut log = RawLog {
            zeroed,
            dir: dir.to_path_buf(),
            file,
            position: 0,
            files: VecDeque::from([path]),
            next_seq: 1,
            prepared: None,
        };
        log.prepare();
        log
    }

    /// Zero-fills the next segment unless it is ready (outside the timed part).
    fn prepare(&mut self) {
        if self.zeroed && self.prepared.is_none() {
            let path = self.dir.join(format!("{:020}.raw", self.next_seq));
            zero_fill(&path, SEGMENT_BYTES_MAX);
            self.prepared = Some(path);
        }
    }

    /// Copies the entries' data into one aligned buffer, writes it, fdatasyncs. Returns the bytes
    /// written.
    async fn append(&mut self, entries: &[Entry]) -> u64 {
        let payload: usize = entries.iter().map(|e| e.data.len()).sum();
        let length = (payload as u64).div_ceil(ALIGN) * ALIGN;
        if self.position > 0 && self.position + length > SEGMENT_BYTES_MAX {
            let path = self.dir.join(format!("{:020}.raw", self.next_seq));
            self.next_seq += 1;
            let file = match self.prepared.take() {
                Some(prepared) => {
                    assert_eq!(prepared, path);
                    open_rw(&path).await
                }
                None => DmaFile::create(&path).await.expect("create raw segment"),
            };
            std::mem::replace(&mut self.file, file)
                .close()
                .await
                .expect("close raw segment");
            self.files.push_back(path);
            self.position = 0;
        }
        let mut buffer = self.file.alloc_dma_buffer(length as usize);
        let bytes = buffer.as_bytes_mut();
        let mut at = 0;
        for entry in entries {
            bytes[at..at + entry.data.len()].copy_from_slice(&entry.data);
            at += entry.data.len();
        }
        bytes[at..].fill(0);
        let written = self
            .file
            .write_at(buffer, self.position)
            .await
            .expect("raw write");
        assert_eq!(written as u64, length, "short raw write");
        self.file.fdatasync().await.expect("raw fdatasync");
        self.position += length;
        length
    }

    /// Deletes all but the newest `SEGMENTS_KEPT` files and makes the next segment ready
    /// (outside the timed part).
    fn trim(&mut self) {
        while self.files.len() > SEGMENTS_KEPT {
            let path = self.files.pop_front().unwrap();
            std::fs::remove_file(&path).expect("remove raw segment");
        }
        self.prepare();
    }
}

/// Opens an existing raw segment for O_DIRECT writes.
async fn open_rw(path: &Path) -> DmaFile {
    glommio::io::OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(path)
        .await
        .expect("open raw segment")
}

/// Creates `path` with `bytes` of zeros, fsynced, as the WAL makes its spare segments.
fn zero_fill(path: &Path, bytes: u64) {
    aurigraph_storage::wal::write_zeros(path, bytes).expect("zero-fill a raw segment");
}

/// Bytes on disk vs payload bytes, for the printed framing overhead.
#[derive(Default, Clone, Copy)]
struct Written {
    payload: u64,
    disk: u64,
}

fn main() {
    let since = SystemTime::now();
    let executor: LocalExecutor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(IO_MEMORY)
        .make()
        .expect("start a glommio executor (io_uring)");
    let scratch = scratch_dir("wal-");
    println!(
        "wal: scratch directory {} ({})",
        scratch.path().display(),
        filesystem_of(scratch.path())
    );
    let template = entry_template();
    let entry_bytes = template.data.len();

    // 20 samples: fdatasync latency on a shared disk comes in bursts; the median of more samples
    // resists them.
    let mut c = criterion(20, Duration::from_secs(4));
    let mut group = c.benchmark_group(GROUP);
    group.sampling_mode(SamplingMode::Flat);
    let mut overhead = Vec::new();
    for n in GROUP_ENTRIES {
        group.throughput(Throughput::Bytes((n * entry_bytes) as u64));

        let config = WalConfig {
            dir: scratch.path().join(format!("wal-group{n}")),
            segment_bytes_max: SEGMENT_BYTES_MAX,
            staged_bytes_max: STAGED_BYTES_MAX,
            preallocate: true,
            // Unpaced: this measures what the WAL's own writes cost, spares included.
            preallocate_bytes_per_sec: None,
        };
        let (mut wal, recovered) = executor.run(Wal::open(config)).expect("open the WAL");
        assert!(recovered.entries.is_empty(), "a fresh WAL directory");
        let mut next_index = 1u64;
        let mut ours = Written::default();
        group.bench_function(format!("wal_group{n}"), |b| {
            b.iter_custom(|iters| {
                executor.run(async {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iters {
                        let entries = next_entries(&template, n, &mut next_index);
                        let start = Instant::now();
                        wal.stage_entries(&entries).expect("stage entries");
                        let stats = wal.commit().await.expect("group commit");
                        elapsed += start.elapsed();
                        ours.payload += (n * entry_bytes) as u64;
                        ours.disk += stats.bytes_written;
                        if wal.segment_count() > SEGMENTS_KEPT {
                            wal.compact(next_index - 1).await.expect("compact the WAL");
                        }
                    }
                    elapsed
                })
            })
        });
        executor.run(wal.close()).expect("close the WAL");

        let mut raw = Written::default();
        for (zeroed, name) in [(false, "raw_dma"), (true, "raw_zeroed")] {
            let mut raw_log = executor.run(RawLog::create(
                &scratch.path().join(format!("{name}-group{n}")),
                zeroed,
            ));
            let mut raw_index = 1u64;
            group.bench_function(format!("{name}_group{n}"), |b| {
                b.iter_custom(|iters| {
                    executor.run(async {
                        let mut elapsed = Duration::ZERO;
                        for _ in 0..iters {
                            let entries = next_entries(&template, n, &mut raw_index);
                            let start = Instant::now();
                            let written = raw_log.append(&entries).await;
                            elapsed += start.elapsed();
                            if !zeroed {
                                raw.payload += (n * entry_bytes) as u64;
                                raw.disk += written;
                            }
                            raw_log.trim();
                        }
                        elapsed
                    })
                })
            });
            executor
                .run(raw_log.file.close())
                .expect("close raw segment");
        }
        overhead.push((n, ours, raw));
    }
    group.finish();
    c.final_summary();
    drop(scratch);
    if !measuring() {
        return;
    }

    let mut summary = Summary::new();
    for (n, ours, raw) in overhead {
        let rate = |bench: String| {
            median_ns(GROUP, &bench, since).map(|ns| per_sec((n * entry_bytes) as f64, ns))
        };
        let (Some(ours_rate), Some(raw_rate), Some(zeroed_rate)) = (
            rate(format!("wal_group{n}")),
            rate(format!("raw_dma_group{n}")),
            rate(format!("raw_zeroed_group{n}")),
        ) else {
            println!("wal group {n}: not measured in this run (filtered out)");
            continue;
        };
        println!("wal: groups of {n} entries x {entry_bytes} payload bytes");
        let mut suffixes = vec![format!("_group{n}")];
        if n == HEADLINE_GROUP_ENTRIES {
            suffixes.insert(0, String::new());
        }
        for suffix in &suffixes {
            summary.compare(Comparison {
                name: &format!("wal_bytes_per_sec{suffix}"),
                value: ours_rate,
                raw_name: &format!("wal_raw_bytes_per_sec{suffix}"),
                raw: raw_rate,
                raw_label: "raw O_DIRECT write+fdatasync baseline",
                unit: " B/s",
                ratio_name: Some(&format!("wal_ratio_vs_raw{suffix}")),
            });
            summary.compare(Comparison {
                name: &format!("wal_bytes_per_sec{suffix}"),
                value: ours_rate,
                raw_name: &format!("wal_raw_zeroed_bytes_per_sec{suffix}"),
                raw: zeroed_rate,
                raw_label: "raw O_DIRECT overwrite+fdatasync of zero-filled files (best case)",
                unit: " B/s",
                ratio_name: Some(&format!("wal_ratio_vs_raw_zeroed{suffix}")),
            });
        }
        summary.compare(Comparison {
            name: &format!("wal_disk_bytes_per_payload_byte_group{n}"),
            value: ours.disk as f64 / ours.payload.max(1) as f64,
            raw_name: &format!("wal_raw_disk_bytes_per_payload_byte_group{n}"),
            raw: raw.disk as f64 / raw.payload.max(1) as f64,
            raw_label: "raw baseline (4 KiB alignment only)",
            unit: "",
            ratio_name: None,
        });
    }
    let path = summary.write().expect("write summary");
    println!("wal: summary merged into {}", path.display());
}
