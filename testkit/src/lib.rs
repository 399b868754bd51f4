//! Test support for the end-to-end suites: starts the real `aurigraph` binary (built once per
//! test process, see [`aurigraph_bin`]) on free loopback ports and talks HTTP/1.1 to it with a
//! tiny blocking client (no async runtime in the tests).
//!
//! - this module: keys, genesis and signed transfers of the tests, free ports.
//! - [`node`]: one `aurigraph node` child process ([`Node`]).
//! - [`cluster`]: a cluster of validators, each ordered pair linked through a [`proxy`].
//! - [`proxy`]: a fault-injecting TCP proxy.
//! - [`ports`]: consecutive loopback ports for a cluster's validators.
//! - [`http`]: the blocking client and the one HTTP response parser of every harness.
//! - [`bin`]: finding (building) the `aurigraph` binary.

pub mod bin;
pub mod cluster;
pub mod http;
pub mod node;
pub mod ports;
pub mod postgres;
pub mod proxy;
pub mod redis;

pub use aurigraph_wire::compact::{BATCH_MEDIA_TYPE, RESULTS_MEDIA_TYPE};
pub use bin::aurigraph_bin;
pub use http::{http_request, parse_response, read_response, Response};
pub use node::Node;

use aurigraph_wire::genesis::{Allocation, Genesis};
use aurigraph_wire::record::{address_of, Address, Record, Transfer};
use ed25519_dalek::SigningKey;

/// Chain id of the tests' genesis.
pub const CHAIN: u32 = 7;
/// Genesis balance of every test key, asset 0.
pub const FUNDS: u64 = 1_000_000_000;

/// `n` fixed test keys (seeds 11, 12, ...).
pub fn keys(n: usize) -> Vec<SigningKey> {
    (0..n)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 11; 32]))
        .collect()
}

/// A genesis of chain [`CHAIN`] with `shards` shards funding every key with [`FUNDS`].
pub fn genesis(keys: &[SigningKey], shards: u32) -> Genesis {
    let mut allocations: Vec<Allocation> = keys
        .iter()
        .map(|k| Allocation {
            address: address_of(k),
            asset: 0,
            amount: FUNDS,
        })
        .collect();
    allocations.sort_by_key(|a| a.address);
    Genesis {
        chain_id: CHAIN,
        controllers: Default::default(),
        shards: Some(shards),
        allocations,
    }
}

/// A transfer of asset 0 on chain [`CHAIN`], signed by `key`.
pub fn transfer(key: &SigningKey, to: Address, amount: u64, nonce: u64) -> Record {
    Transfer {
        chain_id: CHAIN,
        from: address_of(key),
        to,
        asset: 0,
        amount,
        nonce,
    }
    .sign(key)
}

/// The V11 JSON body of a signed record (as `aurigraph transfer` sends it).
pub fn transfer_json(record: &Record) -> serde_json::Value {
    aurigraph_client::ops::transfer_json(&record.transfer(), record.signature())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `aurigraph ARGS` and returns what it printed on stdout; the test fails with the
/// command's stderr when it fails.
pub fn aurigraph_ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let out = std::process::Command::new(aurigraph_bin())
        .args(args)
        .output()
        .expect("run aurigraph");
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    assert!(
        out.status.success(),
        "aurigraph {}: {}",
        shown.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("output is text")
}

/// `aurigraph token new --role ROLE --name NAME --file FILE`: the token it printed (the test
/// fails with the command's message when it fails).
pub fn new_token(file: &std::path::Path, role: &str, name: &str) -> String {
    let file = file.as_os_str();
    aurigraph_ok(&[
        "token".as_ref(),
        "new".as_ref(),
        "--role".as_ref(),
        role.as_ref(),
        "--name".as_ref(),
        name.as_ref(),
        "--file".as_ref(),
        file,
    ])
    .trim()
    .to_string()
}

/// The executable `name` in a directory of `PATH`, if there is one.
pub fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(name))
        .find(|candidate| candidate.is_file())
}
