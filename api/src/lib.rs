//! The Aurigraph validator node as a library: its HTTP API (served on every core of the
//! engine), its configuration, and the wiring of the engine, the HTTP servers and the beacon
//! client that `aurigraph node` runs.
//!
//! - [`http`]: the HTTP API (the contract: docs/api.md), hyper on glommio, one server per core.
//! - [`config`]: the node's flags, environment variables and TOML file, resolved.
//! - [`node`]: starting a node, serving until SIGTERM/SIGINT, stopping gracefully.

pub mod config;
pub mod events;
pub mod grpc;
pub mod heap;
pub mod http;
pub mod node;
mod sinks;
pub mod systemd;
