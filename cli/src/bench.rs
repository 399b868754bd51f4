//! `aurigraph bench`: the options of the end-to-end benchmark (run by `aurigraph_client::bench`).

use aurigraph_client::bench::cpus::CpuList;
use aurigraph_client::bench::{BenchOptions, Protocol, BENCH_CHAIN_ID};
use aurigraph_client::grpc::STREAM_DEPTH_MAX;
use std::path::PathBuf;

/// The end-to-end throughput benchmark.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Nodes to load, comma-separated (e.g. http://10.0.0.1:9003,http://10.0.0.2:9003). They
    /// must run the genesis of `--print-genesis`. Without it, a node is started in a temporary
    /// directory.
    #[arg(long, value_name = "URL,...", value_delimiter = ',')]
    pub addresses: Vec<String>,
    /// Without --addresses: validators of the local cluster to start and load (1 to 9; more
    /// than one replicates every shard across them, each on its own loopback ports).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub nodes: usize,
    /// Transfers to submit (1,000,000 by default: about 10 s of load on a 2-core machine).
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub transfers: usize,
    /// Sending accounts (funded in the genesis; at least 2).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub accounts: usize,
    /// Transfers per batch (one HTTP request, or one message of a gRPC stream).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub batch_size: usize,
    /// Requests in flight (one keep-alive connection each), spread over the addresses. With
    /// --protocol grpc: streams (one connection each).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub concurrency: usize,
    /// Also write the figures as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Target load in transfers per second (open loop, paced per batch); default: unlimited.
    #[arg(long, value_name = "TX_PER_SEC")]
    pub rate: Option<u64>,
    /// How long to wait for every node to report healthy before starting, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub wait_ms: u64,
    /// Per-request timeout, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    pub timeout_ms: u64,
    /// Seed of the deterministic account keys and receivers (see `--print-genesis`).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub genesis_seed: u64,
    /// Chain id of the benchmark genesis.
    #[arg(long, value_name = "ID", default_value_t = BENCH_CHAIN_ID)]
    pub chain_id: u32,
    /// Shard count written into the genesis [default: the node's core count].
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
    /// Write the genesis that a node must be started with for `--addresses` runs (for these
    /// `--accounts`, `--genesis-seed`, `--chain-id`, `--shards`) to FILE, and exit.
    #[arg(long, value_name = "FILE")]
    pub print_genesis: Option<PathBuf>,
    /// Threads of the client's runtime (sending and receiving).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub client_threads: usize,
    /// Threads that pre-sign the transfers [default: all cores].
    #[arg(long, value_name = "N")]
    pub sign_threads: Option<usize>,
    /// Ask for JSON batch replies instead of the compact binary reply (with --protocol grpc:
    /// one Outcome message per transfer instead of compact results).
    #[arg(long)]
    pub json_replies: bool,
    /// Keep the temporary data directory of the started node.
    #[arg(long)]
    pub keep_data: bool,
    /// Gateway mode: every account is custodial (`"controller": "gateway:bench"` in the
    /// genesis) and the transfers go unsigned to POST /api/v11/gateway/transactions/batch with
    /// a bearer token. A started node gets a fresh token; with --addresses give the token of
    /// gateway "bench" on those nodes with --gateway-token-file.
    #[arg(long)]
    pub gateway: bool,
    /// With --gateway and --addresses: a file holding the gateway's token.
    #[arg(long, value_name = "FILE")]
    pub gateway_token_file: Option<PathBuf>,
    /// With --nodes N (N > 1): link the started validators with plain TCP instead of mutual
    /// TLS, to measure what TLS on replication costs.
    #[arg(long)]
    pub plaintext_peers: bool,
    /// Without --addresses: heap each started validator touches at start, in MiB (its
    /// `--heap-prefault-mib`), so that the run measures a node whose memory is warm, as a
    /// long-running node's is; 0 turns it off. On a VM, runs without it alternate between a
    /// fast and a slow mode, and a long run whose node outgrows it slows down as it goes
    /// (docs/benchmarks.md). [default: 4096, at most a quarter of the host's memory shared by
    /// the validators]
    #[arg(long, value_name = "MIB")]
    pub node_heap_prefault_mib: Option<u64>,
    /// How the batches are sent. http: POST .../transactions/batch over HTTP/1.1, one request
    /// in flight per connection. grpc: TransactionService.SubmitStream over HTTP/2, one
    /// bidirectional stream per connection (--concurrency of them), each batch a binary-batch
    /// SubmitBatchRequest answered with compact results, --stream-depth batches in flight per
    /// stream (1: like for like with http). Same workload, same summary. Started nodes get a
    /// free --grpc-addr each and the load goes there; with --addresses see --grpc-addresses.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Http)]
    pub protocol: ProtocolArg,
    /// With --protocol grpc and --addresses: the nodes' gRPC addresses (their --grpc-addr),
    /// one per --addresses entry in the same order, e.g. http://10.0.0.1:9004,.... Default:
    /// the --addresses themselves, since a node also serves gRPC on its HTTP port. The health
    /// and account checks before the run use --addresses (HTTP) either way.
    #[arg(long, value_name = "URL,...", value_delimiter = ',')]
    pub grpc_addresses: Vec<String>,
    /// With --protocol grpc: batches in flight per stream, 1 to 16 (the node decides up to 16
    /// batches of one stream at once). 1, the default, matches http's one request per
    /// connection; more lets one stream pipeline.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=STREAM_DEPTH_MAX as i64))]
    pub stream_depth: u16,
    /// Do not steer. By default (over HTTP) the benchmark asks the nodes for their cores and
    /// shard leaders, groups the senders by the core that owns their shard on its leader, and
    /// sends each batch (senders of one such core only) over a connection that lands on that
    /// core, so that no batch crosses cores or validators. With --no-steer, every batch mixes
    /// senders of all shards and goes to any core of any address, as an unaware client's would.
    #[arg(long)]
    pub no_steer: bool,
    /// Without --addresses: the CPUs the started node runs on, in the list format of
    /// `taskset -c` (e.g. 0-3). The node gets one executor per CPU of the list, pinned (one
    /// validator) or sharing them (--nodes N), the genesis one shard per CPU unless --shards
    /// says otherwise, and the verify ceiling as many threads; the benchmark's own threads run
    /// on the other CPUs (on all of them when the list names every CPU). For scaling runs on a
    /// many-core host (benches/scripts/scaling.sh). Default: everything shares every CPU.
    #[arg(long, value_name = "LIST", value_parser = CpuList::parse)]
    pub node_cpus: Option<CpuList>,
}

/// `--protocol`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolArg {
    Http,
    Grpc,
}

impl From<ProtocolArg> for Protocol {
    fn from(p: ProtocolArg) -> Protocol {
        match p {
            ProtocolArg::Http => Protocol::Http,
            ProtocolArg::Grpc => Protocol::Grpc,
        }
    }
}

impl From<BenchArgs> for BenchOptions {
    fn from(a: BenchArgs) -> BenchOptions {
        BenchOptions {
            addresses: a.addresses,
            nodes: a.nodes,
            transfers: a.transfers,
            accounts: a.accounts,
            batch_size: a.batch_size,
            concurrency: a.concurrency,
            json: a.json,
            rate: a.rate,
            wait_ms: a.wait_ms,
            timeout_ms: a.timeout_ms,
            genesis_seed: a.genesis_seed,
            chain_id: a.chain_id,
            shards: a.shards,
            print_genesis: a.print_genesis,
            client_threads: a.client_threads,
            sign_threads: a.sign_threads,
            json_replies: a.json_replies,
            keep_data: a.keep_data,
            verify_chunk: aurigraph_engine::verify::VERIFY_CHUNK_DEFAULT,
            gateway: a.gateway,
            gateway_token_file: a.gateway_token_file,
            protocol: a.protocol.into(),
            grpc_addresses: a.grpc_addresses,
            stream_depth: usize::from(a.stream_depth),
            steer: !a.no_steer,
            node_cpus: a.node_cpus,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    #[test]
    fn defaults_are_the_library_defaults() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        let options = BenchOptions::from(cli.args);
        assert_eq!(
            options,
            BenchOptions {
                verify_chunk: aurigraph_engine::verify::VERIFY_CHUNK_DEFAULT,
                ..BenchOptions::default()
            }
        );
        assert_eq!(
            (
                options.transfers,
                options.accounts,
                options.batch_size,
                options.concurrency
            ),
            (1_000_000, 10_000, 1000, 16)
        );
        let cli = Cli::try_parse_from(["x", "--addresses", "http://a:1,http://b:2"]).unwrap();
        assert_eq!(cli.args.addresses, vec!["http://a:1", "http://b:2"]);
    }

    #[test]
    fn grpc_options_parse() {
        let options = BenchOptions::from(Cli::try_parse_from(["x"]).unwrap().args);
        assert_eq!(
            (options.protocol, options.stream_depth),
            (Protocol::Http, 1)
        );
        let cli = Cli::try_parse_from([
            "x",
            "--protocol",
            "grpc",
            "--addresses",
            "http://a:1,http://b:2",
            "--grpc-addresses",
            "a:9004,b:9004",
            "--stream-depth",
            "4",
        ])
        .unwrap();
        let options = BenchOptions::from(cli.args);
        assert_eq!(options.protocol, Protocol::Grpc);
        assert_eq!(options.grpc_addresses, vec!["a:9004", "b:9004"]);
        assert_eq!(options.stream_depth, 4);
        for depth in ["0", "17"] {
            assert!(Cli::try_parse_from(["x", "--stream-depth", depth]).is_err());
        }
        assert!(Cli::try_parse_from(["x", "--protocol", "quic"]).is_err());
    }

    #[test]
    fn node_cpus_take_the_list_format() {
        let options = BenchOptions::from(Cli::try_parse_from(["x"]).unwrap().args);
        assert_eq!(options.node_cpus, None);
        let cli = Cli::try_parse_from(["x", "--node-cpus", "0-3,8"]).unwrap();
        assert_eq!(cli.args.node_cpus.unwrap().cpus(), &[0, 1, 2, 3, 8]);
        assert!(Cli::try_parse_from(["x", "--node-cpus", "3-1"]).is_err());
    }

    #[test]
    fn steering_is_on_unless_turned_off() {
        let options = BenchOptions::from(Cli::try_parse_from(["x"]).unwrap().args);
        assert!(options.steer);
        let options = BenchOptions::from(Cli::try_parse_from(["x", "--no-steer"]).unwrap().args);
        assert!(!options.steer);
    }
}
