//! `aurigraph`: the validator node and its command-line tools. Thin: the flags of every
//! command and their dispatch; the node is `aurigraph_api`, the tools are `aurigraph_client`.

use aurigraph_api::config::{self, LogFormat};
use aurigraph_api::node::{self, NodeError};
use aurigraph_client::bench::BenchError;
use aurigraph_client::launcher::{self, LaunchError};
use aurigraph_client::membership::MembershipError;
use aurigraph_wire::keyfile::{self, KeyFileError};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod backup;
mod beacon;
mod bench;
mod certs;
mod cluster;
mod loadtest;
mod token;
mod transfer;
mod tune;
mod validators;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Aurigraph: a validator node for a permissioned, high-throughput ledger.
#[derive(Parser, Debug)]
#[command(name = "aurigraph", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a validator. With no arguments: a single-validator development chain in
    /// ./aurigraph-data, HTTP on 127.0.0.1:9003, with a funded key written into the data directory.
    ///
    /// Exit status: 0 after SIGTERM or SIGINT; 74 when its storage fails while it runs (a failed
    /// write, fdatasync or snapshot: restart it, recovery decides); 1 on any other error,
    /// refusing to start on a corrupt log among them.
    Node(config::NodeArgs),
    /// Write a new Ed25519 key to a file and print its address.
    Keygen {
        /// Where to write the key (JSON, mode 0600).
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Sign one transfer and submit it to a node.
    Transfer(transfer::TransferArgs),
    /// The throughput benchmark: pre-signed transfers in binary batches over several
    /// connections; prints `load accepted = N tx/s` and batch latency percentiles. Without
    /// --addresses it starts its own node in a temporary directory.
    Bench(bench::BenchArgs),
    /// A load that ramps over time (closed loop: requests in flight, or open loop: requests
    /// per second) against one or more nodes, measured per interval on the client and from
    /// each node's /metrics; writes report.json, report.csv and report.html with --out DIR.
    /// `aurigraph loadtest compare A.json B.json --out DIR` plots two runs together.
    Loadtest(loadtest::LoadtestArgs),
    /// Membership changes: add a validator (as learner), promote it, remove one — on every
    /// shard, through the validators' admin endpoint.
    #[command(subcommand)]
    Validators(validators::ValidatorsCommand),
    /// Start a local cluster of N validators on loopback in one directory (for developers);
    /// Ctrl-C stops them.
    Cluster(cluster::ClusterArgs),
    /// Verify saved randomness-beacon pulses offline (CURBy-RNG, NIST Beacon 2.0, CURBy-Q):
    /// prints the verified randomness in hex, or exits non-zero with the failed check.
    #[command(subcommand)]
    Beacon(beacon::BeaconCommand),
    /// Bearer tokens of the node's tokens file (`aurigraph node --tokens FILE`): gateway mode
    /// and the admin endpoint.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// A development certificate authority and a node certificate it signed, for the HTTP
    /// API's TLS (`aurigraph node --tls-cert --tls-key`). Not for production.
    Certs(certs::CertsArgs),
    /// Backups of a running validator: take one (`create`), check one (`verify`), start a
    /// fresh data directory from one (`restore`).
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Host tuning for bare metal: `check` reports what differs from what the node wants,
    /// `apply` changes what can change at runtime (dry run unless --yes).
    #[command(subcommand)]
    Tune(tune::TuneCommand),
}

/// Why a command failed: printed on stderr as `aurigraph: error: ...`, exit status 1.
///
/// One failure does not come back here: a storage failure while a node runs stops the process
/// from the shard's core at once, with exit status 74
/// (`aurigraph_storage::STORAGE_FAILURE_EXIT_CODE`, EX_IOERR; see `docs/operations.md`).
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error(transparent)]
    Transfer(#[from] transfer::TransferCommandError),
    #[error(transparent)]
    Bench(#[from] BenchError),
    #[error(transparent)]
    Loadtest(#[from] aurigraph_client::loadtest::LoadtestError),
    #[error(transparent)]
    Validators(#[from] MembershipError),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    #[error(transparent)]
    Beacon(#[from] beacon::BeaconError),
    #[error(transparent)]
    Token(#[from] aurigraph_wire::tokens::TokensError),
    #[error(transparent)]
    Certs(#[from] certs::CertsError),
    #[error(transparent)]
    Backup(#[from] backup::BackupCommandError),
}

/// The heap `aurigraph bench` has each validator it starts warm by default: 4 GiB, what a
/// shard's in-memory log grows to between two snapshots under a gateway load (about twice
/// `snapshot_interval_bytes` per shard, on two shards; docs/operations.md), and at most a
/// quarter of the host's memory (`host_mib`, when known) shared by the `nodes` validators.
fn bench_heap_prefault_mib(nodes: usize, host_mib: Option<u64>) -> u64 {
    const DEFAULT_MIB: u64 = 4096;
    match host_mib {
        Some(host) => DEFAULT_MIB.min(host / 4 / nodes.max(1) as u64),
        None => DEFAULT_MIB,
    }
}

/// mimalloc's `purge_delay` option (its index in mimalloc v3's `mi_option_e`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// mimalloc's documented default for `purge_delay`, in milliseconds.
const MI_PURGE_DELAY_DEFAULT_MS: std::os::raw::c_long = 10;
/// How long freed memory stays committed before mimalloc returns it to the OS. The default
/// (10 ms) makes every request's and every group commit's fresh buffers fault in zeroed pages
/// again: 10-18 % of the node's CPU went to the kernel clearing pages under load.
const PURGE_DELAY_MS: std::os::raw::c_long = 1000;

/// mimalloc's `purge_decommits` option (its index in mimalloc v3's `mi_option_e`) and its
/// documented default (1: a purge decommits, `MADV_DONTNEED`).
const MI_OPTION_PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;
const MI_PURGE_DECOMMITS_DEFAULT: std::os::raw::c_long = 1;

/// Sets a mimalloc option to `value`, unless the operator set it (`MIMALLOC_<env>`) or the
/// option at `index` does not read its documented `default` (never set an option we did not
/// identify: a mimalloc upgrade could renumber them).
fn set_allocator_option(
    env: &str,
    index: libmimalloc_sys::mi_option_t,
    default: std::os::raw::c_long,
    value: std::os::raw::c_long,
) {
    if std::env::var_os(format!("MIMALLOC_{env}")).is_some() {
        return; // the operator decides
    }
    // SAFETY: plain option getters/setters of the global allocator, before any thread starts.
    unsafe {
        if libmimalloc_sys::mi_option_get(index) == default {
            libmimalloc_sys::mi_option_set(index, value);
        }
    }
}

fn tune_allocator() {
    set_allocator_option(
        "PURGE_DELAY",
        MI_OPTION_PURGE_DELAY,
        MI_PURGE_DELAY_DEFAULT_MS,
        PURGE_DELAY_MS,
    );
    // A purge resets (`MADV_FREE`) instead of decommitting: the kernel takes the pages back
    // only under memory pressure, and a page written again before that costs no fault and no
    // zeroing. Decommitted, the buffers that come and go with every batch (request bodies,
    // decoded raft messages, entries) faulted in zeroed pages again: 11.5 % of the CPU of
    // three signed validators went to `clear_page_erms` (docs/benchmarks.md).
    set_allocator_option(
        "PURGE_DECOMMITS",
        MI_OPTION_PURGE_DECOMMITS,
        MI_PURGE_DECOMMITS_DEFAULT,
        0,
    );
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    if let Command::Tune(command) = cli.command {
        return ExitCode::from(tune::run(command));
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("aurigraph: error: {error}");
            match &error {
                CliError::Node(node) => ExitCode::from(node.exit_status()),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// `aurigraph loadtest`: SIGINT and SIGTERM end the run early (its report is still written).
fn run_loadtest(args: loadtest::LoadtestArgs) -> Result<(), CliError> {
    if let Some(loadtest::LoadtestCommand::Compare { a, b, out }) = args.command {
        return Ok(loadtest::run_compare(a, b, out)?);
    }
    node::init_logging(LogFormat::Human);
    let run = args.run;
    let (nodes, plaintext_peers) = (run.nodes, run.plaintext_peers);
    let heap_prefault_mib = (run.node_heap_prefault_mib > 0).then_some(run.node_heap_prefault_mib);
    let signals = node::block_stop_signals();
    let interrupt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (interrupt, done) = (interrupt.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let wait = std::time::Duration::from_millis(200);
                if node::wait_for_stop_signal_timeout(signals, wait).is_some() {
                    eprintln!("loadtest: stopping early (signal); the report is still written");
                    interrupt.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let result = aurigraph_client::loadtest::run(
        run.into(),
        command,
        Some(interrupt),
        move |genesis, dir, tokens| {
            let exe = std::env::current_exe().map_err(LaunchError::OwnBinary)?;
            let options = launcher::LaunchOptions {
                tokens,
                plaintext_peers,
                heap_prefault_mib,
                ..Default::default()
            };
            launcher::start_nodes("loadtest", &exe, genesis, dir, nodes, options)
        },
    );
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.join();
    result?;
    Ok(())
}

fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Node(args) => node::run(args)?,
        Command::Keygen { out, force } => {
            let key = keyfile::generate();
            keyfile::write_key(&out, &key, force)?;
            println!("{}", aurigraph_wire::record::address_of(&key));
        }
        Command::Transfer(args) => transfer::run(args)?,
        Command::Bench(args) => {
            node::init_logging(LogFormat::Human);
            let (nodes, plaintext_peers) = (args.nodes, args.plaintext_peers);
            let heap_prefault_mib = args.node_heap_prefault_mib.unwrap_or_else(|| {
                bench_heap_prefault_mib(nodes, aurigraph_api::heap::host_memory_mib())
            });
            let heap_prefault_mib = (heap_prefault_mib > 0).then_some(heap_prefault_mib);
            aurigraph_client::bench::run(args.into(), move |genesis, dir, tokens| {
                let exe = std::env::current_exe().map_err(LaunchError::OwnBinary)?;
                let options = launcher::LaunchOptions {
                    tokens,
                    plaintext_peers,
                    heap_prefault_mib,
                    ..Default::default()
                };
                launcher::start_nodes("bench", &exe, genesis, dir, nodes, options)
            })?
        }
        Command::Loadtest(args) => run_loadtest(args)?,
        Command::Beacon(command) => beacon::run(command)?,
        Command::Token(command) => token::run(command)?,
        Command::Certs(args) => certs::run(args)?,
        Command::Cluster(args) => cluster::run(args)?,
        Command::Validators(command) => validators::run(command)?,
        Command::Backup(command) => backup::run(command)?,
        Command::Tune(_) => unreachable!("handled in main: it has exit statuses of its own"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bench_heap_prefault_mib;

    #[test]
    fn the_bench_warms_4_gib_within_a_quarter_of_the_host_shared_by_its_validators() {
        assert_eq!(bench_heap_prefault_mib(1, Some(24 * 1024)), 4096);
        assert_eq!(bench_heap_prefault_mib(3, Some(24 * 1024)), 2048);
        assert_eq!(bench_heap_prefault_mib(1, Some(8 * 1024)), 2048);
        assert_eq!(bench_heap_prefault_mib(2, None), 4096);
    }
}
