//! `aurigraph loadtest`: the options of the ramped load test (run by
//! `aurigraph_client::loadtest`) and `aurigraph loadtest compare`.

use aurigraph_client::bench::BENCH_CHAIN_ID;
use aurigraph_client::loadtest::{
    compare, parse_duration, LoadtestError, LoadtestOptions, Preset, Target,
};
use std::path::PathBuf;
use std::time::Duration;

/// A load that ramps over time (closed loop: requests in flight; open loop: requests per
/// second), measured per interval on the client and on the nodes (their /metrics), with a
/// JSON, CSV and HTML report (docs/loadtest.md).
#[derive(clap::Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LoadtestArgs {
    #[command(subcommand)]
    pub command: Option<LoadtestCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum LoadtestCommand {
    /// Plot two runs' report.json against each other into DIR/compare.html.
    Compare {
        /// The first run's report.json (drawn solid).
        a: PathBuf,
        /// The second run's report.json (drawn dashed).
        b: PathBuf,
        /// Directory to write compare.html into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

fn preset(text: &str) -> Result<Preset, String> {
    Preset::parse(text)
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Nodes to load, comma-separated; requests go to them round-robin. They must run the
    /// genesis of `--print-genesis` (for transfers and reads). Without it, `--nodes` validators
    /// are started in a temporary directory.
    #[arg(long, value_name = "URL,...", value_delimiter = ',')]
    pub addresses: Vec<String>,
    /// Without --addresses: validators of the local cluster to start (1 to 9).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub nodes: usize,
    /// A named shape: `v11-4h` (the old system's 4-hour test: 1 request in flight, 5 more every
    /// 20 min up to 50, figures every 5 min). Flags given override its values.
    #[arg(long, value_name = "NAME", value_parser = preset)]
    pub preset: Option<Preset>,
    /// Closed loop: requests in flight at the start [default: 1].
    #[arg(long, value_name = "N")]
    pub start_concurrency: Option<u64>,
    /// Closed loop: requests in flight at the end [default: 10].
    #[arg(long, value_name = "N")]
    pub end_concurrency: Option<u64>,
    /// Open loop: requests per second at the start (instead of a concurrency ramp).
    #[arg(long, value_name = "PER_SEC")]
    pub start_rate: Option<u64>,
    /// Open loop: requests per second at the end [default: --start-rate].
    #[arg(long, value_name = "PER_SEC")]
    pub end_rate: Option<u64>,
    /// How much the level moves at each step [default: 1 request in flight; a tenth of the
    /// rate ramp].
    #[arg(long, value_name = "N")]
    pub step: Option<u64>,
    /// Time between steps (500ms, 30s, 20m, 4h; a bare number is seconds) [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub step_interval: Option<Duration>,
    /// Time between reports (client figures and a read of every node's metrics)
    /// [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub report_interval: Option<Duration>,
    /// Length of the run [default: up to the end level, then one step interval at it].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub duration: Option<Duration>,
    /// Multiplies --step-interval, --report-interval and --duration (the preset's too): 0.01
    /// runs the 4-hour preset in 2.4 minutes.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub time_factor: f64,
    /// What each request is: `transfers` (a binary batch of --batch-size transfers) or `reads`
    /// (GET /api/v11/accounts/{address} of the accounts in turn).
    #[arg(long, value_name = "KIND", default_value = "transfers", value_parser = ["transfers", "reads"])]
    pub target: String,
    /// GET this path with every request instead (e.g. /api/v11/blocks/latest).
    #[arg(long, value_name = "PATH", conflicts_with = "target")]
    pub path: Option<String>,
    /// Gateway mode: unsigned transfers of custodial accounts to the gateway endpoint with a
    /// bearer token (as `aurigraph bench --gateway`).
    #[arg(long)]
    pub gateway: bool,
    /// With --gateway and --addresses: a file holding the token of gateway "bench".
    #[arg(long, value_name = "FILE")]
    pub gateway_token_file: Option<PathBuf>,
    /// Transfers per request (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub batch_size: usize,
    /// Sending accounts (funded in the genesis; at least 2).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub accounts: usize,
    /// Seed of the deterministic account keys (as `aurigraph bench`).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub genesis_seed: u64,
    /// Chain id of the genesis.
    #[arg(long, value_name = "ID", default_value_t = BENCH_CHAIN_ID)]
    pub chain_id: u32,
    /// Shard count written into the genesis [default: the node's core count].
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
    /// Write the genesis the nodes must run for --addresses (these --accounts, --genesis-seed,
    /// --chain-id, --shards, --gateway; the same file as `aurigraph bench --print-genesis`) to
    /// FILE, and exit.
    #[arg(long, value_name = "FILE")]
    pub print_genesis: Option<PathBuf>,
    /// Per-request timeout, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// How long to wait for every node to report healthy, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub wait_ms: u64,
    /// Threads of the client's runtime.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub client_threads: usize,
    /// Threads that sign transfers ahead of the load.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub sign_threads: usize,
    /// Open loop: requests in flight at most (a request due beyond them waits, and is late)
    /// [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// Requests the run sends at most (it stops when it has sent them).
    #[arg(long, value_name = "N", default_value_t = 100_000_000)]
    pub max_requests: u64,
    /// Write report.json, report.csv and report.html into DIR (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Keep the temporary data directory of the started validators.
    #[arg(long)]
    pub keep_data: bool,
    /// With --nodes N (N > 1): link the started validators with plain TCP instead of mutual TLS.
    #[arg(long)]
    pub plaintext_peers: bool,
    /// Without --addresses: heap each started validator touches at start, in MiB (0: none, so
    /// that the memory plot shows what the node itself uses).
    #[arg(long, value_name = "MIB", default_value_t = 0)]
    pub node_heap_prefault_mib: u64,
}

impl From<RunArgs> for LoadtestOptions {
    fn from(a: RunArgs) -> LoadtestOptions {
        let target = match (a.path, a.target.as_str()) {
            (Some(path), _) => Target::Path(path),
            (None, "reads") => Target::Reads,
            _ => Target::Transfers,
        };
        LoadtestOptions {
            addresses: a.addresses,
            nodes: a.nodes,
            preset: a.preset,
            start_concurrency: a.start_concurrency,
            end_concurrency: a.end_concurrency,
            start_rate: a.start_rate,
            end_rate: a.end_rate,
            step: a.step,
            step_interval: a.step_interval,
            report_interval: a.report_interval,
            duration: a.duration,
            time_factor: a.time_factor,
            target,
            gateway: a.gateway,
            gateway_token_file: a.gateway_token_file,
            batch_size: a.batch_size,
            accounts: a.accounts,
            genesis_seed: a.genesis_seed,
            chain_id: a.chain_id,
            shards: a.shards,
            print_genesis: a.print_genesis,
            timeout_ms: a.timeout_ms,
            wait_ms: a.wait_ms,
            client_threads: a.client_threads,
            sign_threads: a.sign_threads,
            max_in_flight: a.max_in_flight,
            max_requests: a.max_requests,
            out: a.out,
            keep_data: a.keep_data,
        }
    }
}

/// `aurigraph loadtest compare`.
pub fn run_compare(a: PathBuf, b: PathBuf, out: PathBuf) -> Result<(), LoadtestError> {
    let path = compare::run_compare(&a, &b, &out).map_err(LoadtestError::Compare)?;
    eprintln!("loadtest: wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadtestArgs,
    }

    #[test]
    fn defaults_are_the_library_defaults() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert!(cli.args.command.is_none());
        assert_eq!(
            LoadtestOptions::from(cli.args.run),
            LoadtestOptions::default()
        );
    }

    #[test]
    fn flags_and_the_compare_command_parse() {
        let cli = Cli::try_parse_from([
            "x",
            "--preset",
            "v11-4h",
            "--time-factor",
            "0.01",
            "--step-interval",
            "90s",
            "--path",
            "/api/v11/health",
            "--addresses",
            "http://a:1,http://b:2",
        ])
        .unwrap();
        let o = LoadtestOptions::from(cli.args.run);
        assert_eq!(o.preset, Some(Preset::V11FourHours));
        assert_eq!(o.step_interval, Some(Duration::from_secs(90)));
        assert_eq!(o.target, Target::Path("/api/v11/health".into()));
        assert_eq!(o.addresses.len(), 2);
        let cli = Cli::try_parse_from(["x", "compare", "a.json", "b.json", "--out", "d"]).unwrap();
        assert!(matches!(
            cli.args.command,
            Some(LoadtestCommand::Compare { .. })
        ));
        for bad in [
            vec!["x", "--preset", "nope"],
            vec!["x", "--duration", "5 days"],
            vec!["x", "--target", "writes"],
            vec!["x", "--path", "/a", "--target", "reads"],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }
}
