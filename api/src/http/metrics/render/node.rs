//! The node's families: the HTTP API, the randomness beacon, the validator links, the cores,
//! the process, and what build and node this is.

use super::Scrape;
use crate::http::metrics::exposition::Exposition;
use crate::http::metrics::{cpus_available, read_process, Histograms, Snapshot};
use crate::http::HttpSettings;
use aurigraph_engine::runtime::CoreCounters;
use aurigraph_engine::ShardStatus;
use aurigraph_net::transport::TransportCounters;

/// HTTP requests by method, route template and status; their duration; those running now.
pub(super) fn api(e: &mut Exposition, h: &Histograms, settings: &HttpSettings) {
    e.family(
        "aurigraph_api_requests_total",
        "counter",
        "API requests answered, by protocol (http, grpc), method, route (the HTTP route \
         template or the gRPC method's path) and status (the HTTP status or the gRPC code).",
    );
    for r in &h.requests {
        let status = r
            .status
            .map_or_else(|| "other".to_string(), |c| c.to_string());
        e.sample(
            "aurigraph_api_requests_total",
            &[
                ("protocol", "http"),
                ("method", r.method),
                ("route", r.route),
                ("status", &status),
            ],
            r.count,
        );
    }
    for g in &h.grpc_calls {
        e.sample(
            "aurigraph_api_requests_total",
            &[
                ("protocol", "grpc"),
                ("method", "POST"),
                ("route", g.rpc),
                ("status", g.status),
            ],
            g.count,
        );
    }
    e.family(
        "aurigraph_api_request_duration_seconds",
        "histogram",
        "API request handling time (gRPC: to the answer's head), by protocol and route.",
    );
    let http = h
        .request_us
        .iter()
        .map(|(route, hist)| ("http", route, hist));
    let grpc = h.grpc_call_us.iter().map(|(rpc, hist)| ("grpc", rpc, hist));
    for (protocol, route, hist) in http.chain(grpc) {
        e.histogram(
            "aurigraph_api_request_duration_seconds",
            &[("protocol", protocol), ("route", route)],
            hist,
            1e6,
        );
    }
    e.single(
        "aurigraph_http_requests_in_flight",
        "gauge",
        "HTTP requests being handled.",
        settings.in_flight.total(),
    );
}

/// Connections accepted per core: whether the kernel (and the clients' steering by source
/// port) spreads them as expected.
pub(super) fn connections(e: &mut Exposition, settings: &HttpSettings, cores: usize) {
    e.family(
        "aurigraph_http_connections_accepted_total",
        "counter",
        "Connections accepted by each core's HTTP/gRPC listeners.",
    );
    for (core, count) in settings
        .metrics
        .connections_accepted()
        .into_iter()
        .enumerate()
        .take(cores)
    {
        e.sample(
            "aurigraph_http_connections_accepted_total",
            &[("core", &core.to_string())],
            count,
        );
    }
    e.family(
        "aurigraph_http_bodies_read_direct_total",
        "counter",
        "Batch request bodies each core received straight from the socket into their own buffer \
         (plaintext HTTP/1.1; the others are read through hyper's buffer).",
    );
    for (core, count) in settings
        .metrics
        .bodies_read_direct()
        .into_iter()
        .enumerate()
        .take(cores)
    {
        e.sample(
            "aurigraph_http_bodies_read_direct_total",
            &[("core", &core.to_string())],
            count,
        );
    }
}

/// Where each core sent the submissions it received (one per shard of a request): to its own
/// shards, or over a ring to another core's (what connection steering avoids).
pub(super) fn submissions(e: &mut Exposition, counters: &[CoreCounters]) {
    e.family(
        "aurigraph_core_submissions_total",
        "counter",
        "Submissions (a request's transfers of one shard) that each core's API sent to a shard \
         of its own (to=\"own_shard\") or of another core (to=\"other_core\"); a client \
         that steers its connections (docs/api.md) sends none to other cores.",
    );
    for (core, c) in counters.iter().enumerate() {
        let core = core.to_string();
        for (to, count) in [
            ("own_shard", &c.submissions_to_own_shards),
            ("other_core", &c.submissions_to_other_cores),
        ] {
            e.sample(
                "aurigraph_core_submissions_total",
                &[("core", &core), ("to", to)],
                count.load(std::sync::atomic::Ordering::Relaxed),
            );
        }
    }
}

/// Verification shared between cores (`aurigraph_engine::runtime::verify_help`): the offers
/// of large submissions each core made to the others and joined for them, and the signatures
/// it verified for them.
pub(super) fn verify_help(e: &mut Exposition, counters: &[CoreCounters]) {
    use std::sync::atomic::Ordering::Relaxed;
    e.family(
        "aurigraph_core_verify_help_total",
        "counter",
        "Large signed submissions shared between cores: offers each core's shards made to the \
         other cores (as=\"offered\", one per other core), and offers each core joined by \
         verifying at least one chunk (as=\"joined\").",
    );
    for (core, c) in counters.iter().enumerate() {
        let core = core.to_string();
        for (what, count) in [
            ("offered", &c.verify_help_offered),
            ("joined", &c.verify_help_joined),
        ] {
            e.sample(
                "aurigraph_core_verify_help_total",
                &[("core", &core), ("as", what)],
                count.load(Relaxed),
            );
        }
    }
    e.family(
        "aurigraph_core_signatures_verified_for_others_total",
        "counter",
        "Signatures each core verified for other cores' shards.",
    );
    for (core, c) in counters.iter().enumerate() {
        e.sample(
            "aurigraph_core_signatures_verified_for_others_total",
            &[("core", &core.to_string())],
            c.signatures_verified_for_others.load(Relaxed),
        );
    }
}

/// The randomness beacon: pulses verified and health per source, fallback answers.
pub(super) fn beacon(e: &mut Exposition, settings: &HttpSettings) {
    e.family(
        "aurigraph_beacon_pulses_verified_total",
        "counter",
        "Distinct beacon pulses fully verified (signature, pinned anchor, chaining and \
         precommitment), by configured source name.",
    );
    let beacon = settings.beacon_state().sources().to_vec();
    for s in &beacon {
        e.sample(
            "aurigraph_beacon_pulses_verified_total",
            &[("source", &s.name)],
            s.pulses_verified,
        );
    }
    e.family(
        "aurigraph_beacon_source_up",
        "gauge",
        "1 while a configured beacon source holds verified randomness and reports no failure.",
    );
    for s in &beacon {
        let up = s.latest.is_some() && s.last_error.is_none();
        e.sample("aurigraph_beacon_source_up", &[("source", &s.name)], up);
    }
    e.single(
        "aurigraph_beacon_fallback_total",
        "counter",
        "Randomness answers (random-bytes, transaction-nonce, crypto-seed) served from the OS \
         CSPRNG alone because no verified pulse was held (LOCAL_FALLBACK).",
        settings.metrics.beacon_fallbacks(),
    );
}

type PeerCounter = fn(&TransportCounters) -> u64;

/// The transport counters, one family each (all counters, labelled `core`).
const PEER_COUNTERS: [(&str, &str, PeerCounter); 9] = [
    (
        "aurigraph_peer_messages_sent_total",
        "Messages sent to other validators.",
        |c| c.messages_sent,
    ),
    (
        "aurigraph_peer_messages_received_total",
        "Messages received from other validators.",
        |c| c.messages_received,
    ),
    (
        "aurigraph_peer_bytes_sent_total",
        "Frame bytes written to other validators.",
        |c| c.bytes_sent,
    ),
    (
        "aurigraph_peer_bytes_received_total",
        "Frame bytes read from other validators.",
        |c| c.bytes_received,
    ),
    (
        "aurigraph_peer_decode_errors_total",
        "Inbound links closed for a malformed frame.",
        |c| c.decode_errors,
    ),
    (
        "aurigraph_peer_handshakes_refused_total",
        "Peer links refused at their handshake (other chain or placement, unknown node, \
         failed authentication).",
        |c| c.handshakes_refused,
    ),
    (
        "aurigraph_peer_authentication_failures_total",
        "Peer links refused for their certificate (none, untrusted, expired, another node's).",
        |c| c.authentication_failures,
    ),
    (
        "aurigraph_peer_reconnects_total",
        "Outbound links re-established after a break.",
        |c| c.reconnects,
    ),
    (
        "aurigraph_peer_queue_full_total",
        "Sends refused because a peer's queue was full (back-pressure).",
        |c| c.queue_full_drops,
    ),
];

/// Validator links, per core: every shard of a core shares its transport.
pub(super) fn peers(e: &mut Exposition, status: &[ShardStatus]) {
    let mut cores_seen = std::collections::BTreeSet::new();
    let per_core: Vec<&ShardStatus> = status
        .iter()
        .filter(|s| s.transport.is_some() && cores_seen.insert(s.core))
        .collect();
    e.family(
        "aurigraph_peer_link_up",
        "gauge",
        "1 while this core's outbound link to the peer validator is up (handshake done).",
    );
    for s in &per_core {
        let core = s.core.to_string();
        for &(peer, up) in &s.peer_links {
            e.sample(
                "aurigraph_peer_link_up",
                &[("core", &core), ("peer", &peer.to_string())],
                up,
            );
        }
    }
    for (name, help, value) in PEER_COUNTERS {
        e.family(name, "counter", help);
        for s in &per_core {
            if let Some(c) = &s.transport {
                e.sample(name, &[("core", &s.core.to_string())], value(c));
            }
        }
    }
}

/// CPU time of each core's executor thread (shards, verification, HTTP).
pub(super) fn cores(e: &mut Exposition, settings: &HttpSettings) {
    e.family(
        "aurigraph_core_cpu_seconds_total",
        "counter",
        "User and system CPU time of each core's executor thread (its shards, signature verification and HTTP server), seconds.",
    );
    for (core, seconds) in settings.metrics.core_cpu_seconds() {
        e.sample(
            "aurigraph_core_cpu_seconds_total",
            &[("core", &core.to_string())],
            seconds,
        );
    }
}

/// The standard `process_*` families, CPU use, CPUs available, uptime.
pub(super) fn process(e: &mut Exposition, s: &Snapshot) {
    let p = read_process();
    e.single(
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time spent, seconds.",
        p.cpu_seconds,
    );
    e.single(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size.",
        p.resident_bytes,
    );
    e.single(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size.",
        p.virtual_bytes,
    );
    e.single(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, seconds.",
        p.start_time_seconds,
    );
    e.single(
        "process_open_fds",
        "gauge",
        "Open file descriptors.",
        p.open_fds,
    );
    e.single(
        "process_max_fds",
        "gauge",
        "Limit on open file descriptors.",
        p.max_fds,
    );
    e.single(
        "process_threads",
        "gauge",
        "OS threads of the process.",
        p.threads,
    );
    e.single(
        "aurigraph_cpu_usage_ratio",
        "gauge",
        "Process CPU use over the last second as a fraction of the CPUs available to it.",
        s.cpu_percent / 100.0,
    );
    e.single(
        "aurigraph_cpus_available",
        "gauge",
        "CPUs this process may run on.",
        cpus_available(),
    );
    e.single(
        "aurigraph_uptime_seconds",
        "gauge",
        "Seconds since the node's figures started.",
        s.uptime_s,
    );
}

/// The build, the node, and its layout.
pub(super) fn identity(e: &mut Exposition, scrape: &Scrape<'_>) {
    e.family(
        "aurigraph_build_info",
        "gauge",
        "Always 1; the labels tell the build.",
    );
    e.sample(
        "aurigraph_build_info",
        &[
            ("version", scrape.settings.version),
            (
                "profile",
                if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                },
            ),
        ],
        1u64,
    );
    let node_id = scrape.settings.node_id.to_string();
    let chain_id = scrape.chain_id.to_string();
    e.family(
        "aurigraph_node_info",
        "gauge",
        "Always 1; the labels tell the node.",
    );
    e.sample(
        "aurigraph_node_info",
        &[("node_id", &node_id), ("chain_id", &chain_id)],
        1u64,
    );
    e.single(
        "aurigraph_shards",
        "gauge",
        "Shards of the ledger.",
        scrape.shards as u64,
    );
    e.single(
        "aurigraph_cores",
        "gauge",
        "Executors (one per core) of the node.",
        scrape.cores,
    );
}
