//! The Aurigraph client library, shared by the `aurigraph` command-line tools, the benchmark
//! and the tests. It speaks the node's HTTP API and its gRPC API (the contract: docs/api.md)
//! and knows nothing of the engine: the wire formats come from `aurigraph-wire`.
//!
//! - [`http`]: a pooled HTTP/1.1 client with typed errors, batch replies decoded.
//! - [`connector`]: its connections, optionally steered to one core of the node.
//! - [`grpc`]: a gRPC client (package `aurigraph.v11`): one transfer, a batch, a
//!   `SubmitStream` of batches, the node's identity and an account's nonce.
//! - [`ops`]: one signed transfer, the chain id, an account's nonce.
//! - [`membership`]: adding, promoting and removing validators on every shard.
//! - [`bench`]: the end-to-end throughput benchmark (workload, load, figures).
//! - [`loadtest`]: a load that ramps over time, measured per interval on the client and on the
//!   nodes, with reports and plots.
//! - [`launcher`]: local validators as child processes on loopback.

pub mod backup;
pub mod bench;
pub mod connector;
pub mod grpc;
pub mod http;
pub mod launcher;
pub mod loadtest;
pub mod membership;
pub mod ops;

pub use http::{Client, ClientError, ErrorKind, UrlError};
