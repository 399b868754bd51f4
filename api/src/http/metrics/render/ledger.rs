//! The ledger's families: transfers and their latency, admission, consensus per shard, storage.

use super::per_shard;
use crate::http::metrics::exposition::Exposition;
use crate::http::metrics::{disk_space, Histograms, Snapshot};
use crate::http::HttpSettings;
use aurigraph_engine::runtime::{HistogramCounts, ShardCounters, Stage};
use aurigraph_engine::ShardStatus;
use aurigraph_sinks::SinkCounters;
use std::sync::atomic::{AtomicU64, Ordering};

/// Transfers by result, their latency (histogram and windowed quantiles), throughput, batches.
pub(super) fn transfers(e: &mut Exposition, s: &Snapshot, h: &Histograms) {
    e.family(
        "aurigraph_transactions_total",
        "counter",
        "Transfers answered after consensus (wait=true), by result code (OK, INSUFFICIENT_FUNDS, ...).",
    );
    for (code, n) in &h.results {
        e.sample(
            "aurigraph_transactions_total",
            &[("result", code.as_str())],
            *n,
        );
    }
    e.single(
        "aurigraph_transactions_detached_total",
        "counter",
        "Transfers admitted with wait=false (their result is not seen by the API; see /api/v11/transactions/{txHash}).",
        s.detached,
    );
    e.family(
        "aurigraph_transaction_duration_seconds",
        "histogram",
        "Admission-to-reply latency of transfers answered after consensus.",
    );
    e.histogram(
        "aurigraph_transaction_duration_seconds",
        &[],
        &h.latency_us,
        1e6,
    );
    // Windowed quantiles as a gauge (OpenMetrics summaries are not encoded by
    // prometheus-client; the since-start sum and count are the histogram's).
    e.family(
        "aurigraph_transaction_latency_seconds",
        "gauge",
        "Admission-to-reply latency quantiles over the recent window (the figures of /api/v11/stats).",
    );
    for (q, ms) in [
        ("0.5", s.p50_ms),
        ("0.95", s.p95_ms),
        ("0.99", s.p99_ms),
        ("0.999", s.p999_ms),
    ] {
        e.sample(
            "aurigraph_transaction_latency_seconds",
            &[("quantile", q)],
            ms / 1000.0,
        );
    }
    e.single(
        "aurigraph_transaction_latency_max_seconds",
        "gauge",
        "Longest admission-to-reply latency over the recent window.",
        s.max_ms / 1000.0,
    );
    e.single(
        "aurigraph_tps",
        "gauge",
        "Confirmed transfers per second over the last second.",
        s.tps,
    );
    e.single(
        "aurigraph_peak_tps",
        "gauge",
        "Highest one-second confirmed-transfer rate since start.",
        s.peak_tps,
    );
    e.single(
        "aurigraph_batches_total",
        "counter",
        "Submissions (POST /transactions or /transactions/batch) that carried transfers into consensus.",
        h.batch_size.count(),
    );
    e.family(
        "aurigraph_batch_size",
        "histogram",
        "Transfers per submission.",
    );
    e.histogram("aurigraph_batch_size", &[], &h.batch_size, 1.0);
}

/// Admission: what waits in each shard, and the signatures verified.
pub(super) fn admission(e: &mut Exposition, status: &[ShardStatus], counters: &[ShardCounters]) {
    per_shard(
        e,
        status,
        "aurigraph_transaction_queue_size",
        "gauge",
        "Transfers admitted by the shard and not yet decided (bounded by pending_records_max).",
        |st| st.pending_records as u64,
    );
    per_shard(
        e,
        status,
        "aurigraph_shard_queued_commands",
        "gauge",
        "Commands (submissions, queries, receipts) waiting in the shard's channels.",
        |st| st.queued_commands as u64,
    );
    e.family(
        "aurigraph_signature_verifications_total",
        "counter",
        "Ed25519 signatures verified at admission, by outcome (valid, invalid).",
    );
    let valid: u64 = counters
        .iter()
        .map(|c| c.signatures_valid.load(Ordering::Relaxed))
        .sum();
    let invalid: u64 = counters
        .iter()
        .map(|c| c.signatures_invalid.load(Ordering::Relaxed))
        .sum();
    e.sample(
        "aurigraph_signature_verifications_total",
        &[("outcome", "valid")],
        valid,
    );
    e.sample(
        "aurigraph_signature_verifications_total",
        &[("outcome", "invalid")],
        invalid,
    );
    e.family(
        "aurigraph_verify_key_cache_lookups_total",
        "counter",
        "Lookups of the verifiers' decompressed public-key caches (bounded per shard), by \
         result (hit, miss).",
    );
    for (result, read) in [
        (
            "hit",
            (|c: &ShardCounters| c.key_cache_hits.load(Ordering::Relaxed))
                as fn(&ShardCounters) -> u64,
        ),
        ("miss", |c: &ShardCounters| {
            c.key_cache_misses.load(Ordering::Relaxed)
        }),
    ] {
        e.sample(
            "aurigraph_verify_key_cache_lookups_total",
            &[("result", result)],
            counters.iter().map(read).sum::<u64>(),
        );
    }
    e.family(
        "aurigraph_shard_batches_submitted_whole_total",
        "counter",
        "Binary batches of one shard submitted whole on the shard's own core (steered \
         connections) and admitted: proposed as the log entry itself, their records not copied \
         (as=\"entry\"), or copied into the entry being built (as=\"copied\": a record \
         refused, or too few or too many records for an entry of their own).",
    );
    per_shard_split(
        e,
        "aurigraph_shard_batches_submitted_whole_total",
        "as",
        counters,
        |c| {
            [
                ("entry", &c.archives_as_entries),
                ("copied", &c.archives_copied),
            ]
        },
    );
    e.family(
        "aurigraph_shard_commands_received_total",
        "counter",
        "Commands that reached the shard from another core's executor over their ring \
         (from=\"core\") or from a thread that is not an executor (from=\"thread\"). Commands \
         from the shard's own core are not counted.",
    );
    per_shard_split(
        e,
        "aurigraph_shard_commands_received_total",
        "from",
        counters,
        |c| {
            [
                ("core", &c.commands_from_cores),
                ("thread", &c.commands_from_threads),
            ]
        },
    );
}

/// One sample per shard and value of `label`, from two counters of each shard.
fn per_shard_split(
    e: &mut Exposition,
    name: &str,
    label: &str,
    counters: &[ShardCounters],
    split: impl Fn(&ShardCounters) -> [(&'static str, &AtomicU64); 2],
) {
    for (shard, c) in counters.iter().enumerate() {
        let shard = shard.to_string();
        for (value, count) in split(c) {
            e.sample(
                name,
                &[("shard", &shard), (label, value)],
                count.load(Ordering::Relaxed),
            );
        }
    }
}

/// Whether a shard's ready cycles overlap its group commits (persistence pipelined).
pub(super) fn write_cycles(e: &mut Exposition, counters: &[ShardCounters]) {
    e.family(
        "aurigraph_shard_write_cycles_total",
        "counter",
        "Ready cycles with writes (entries, a hard state), by whether the shard's previous group \
         commit was still in flight when they were staged (overlapped=\"true\": proposed and \
         sent while that fdatasync ran).",
    );
    per_shard_split(
        e,
        "aurigraph_shard_write_cycles_total",
        "overlapped",
        counters,
        |c| {
            [
                ("false", &c.write_cycles_alone),
                ("true", &c.write_cycles_overlapped),
            ]
        },
    );
}

/// What the shards handed to each sink's queue, and what they dropped because it was full.
pub(super) fn sink_taps(e: &mut Exposition, counters: &[ShardCounters], settings: &HttpSettings) {
    e.family(
        "aurigraph_sink_entries_total",
        "counter",
        "Applied entries handed to a sink's queue (outcome=\"queued\") or dropped because it \
         was full (outcome=\"dropped\": the sink misses them and reports a gap).",
    );
    for (i, (sink, _)) in settings.sinks().into_iter().enumerate() {
        for (shard, c) in counters.iter().enumerate() {
            let shard = shard.to_string();
            for (outcome, count) in [
                ("queued", &c.applied_tapped[i]),
                ("dropped", &c.applied_dropped[i]),
            ] {
                e.sample(
                    "aurigraph_sink_entries_total",
                    &[("sink", sink), ("shard", &shard), ("outcome", outcome)],
                    count.load(Ordering::Relaxed),
                );
            }
        }
    }
}

/// Local snapshots a shard saved although a sink had not written up to them.
pub(super) fn snapshots_ahead_of_sinks(e: &mut Exposition, counters: &[ShardCounters]) {
    e.family(
        "aurigraph_sink_snapshots_ahead_total",
        "counter",
        "Local snapshots the shard saved although a sink had not written up to them (it stayed \
         behind past sink_retain_bytes_max): a crash before it caught up leaves it a gap.",
    );
    for (shard, c) in counters.iter().enumerate() {
        e.sample(
            "aurigraph_sink_snapshots_ahead_total",
            &[("shard", &shard.to_string())],
            c.snapshots_ahead_of_sinks.load(Ordering::Relaxed),
        );
    }
}

/// Each sink's progress: per shard the last log index it wrote and how far that is behind the
/// shard's applied index; rows, errors, drops, gaps. The families are always declared
/// (dashboards and alert rules refer to them); samples only for the sinks configured.
pub(super) fn sink_progress(e: &mut Exposition, status: &[ShardStatus], settings: &HttpSettings) {
    let sinks = settings.sinks();
    e.family(
        "aurigraph_sink_archived_index",
        "gauge",
        "The last log index of the shard whose entries the sink wrote.",
    );
    e.family(
        "aurigraph_sink_lag_entries",
        "gauge",
        "Log entries the shard applied that the sink has not written yet.",
    );
    for (name, counters) in &sinks {
        let at = |shard: u32| counters.written.get(shard);
        for s in status {
            let shard = s.shard.to_string();
            let labels = [("sink", *name), ("shard", shard.as_str())];
            e.sample("aurigraph_sink_archived_index", &labels, at(s.shard));
            e.sample(
                "aurigraph_sink_lag_entries",
                &labels,
                s.applied_index.saturating_sub(at(s.shard)),
            );
        }
    }
    type Field = fn(&SinkCounters) -> &AtomicU64;
    let families: [(&str, &str, Field); 6] = [
        (
            "aurigraph_sink_rows_written_total",
            "Transfer rows the sink added (rows sent again after a restart add none).",
            |s| &s.rows_written,
        ),
        (
            "aurigraph_sink_errors_total",
            "Failed connections or writes of the sink (it retries with back-off).",
            |s| &s.errors,
        ),
        (
            "aurigraph_sink_pending_dropped_total",
            "Entries the sink dropped because its server stayed away past its pending bound.",
            |s| &s.entries_dropped,
        ),
        (
            "aurigraph_sink_gaps_total",
            "Gaps the sink found in the shards' entries (entries lost before it wrote them: a \
             full queue, the pending bound, a snapshot restored past them).",
            |s| &s.gaps,
        ),
        (
            "aurigraph_sink_gap_entries_total",
            "Log indexes the sink's gaps missed.",
            |s| &s.gap_entries,
        ),
        (
            "aurigraph_sink_resyncs_total",
            "Shards whose balances the sink wrote again from the shard's state after a gap.",
            |s| &s.resyncs,
        ),
    ];
    for (name, help, field) in families {
        e.family(name, "counter", help);
        for (sink, counters) in &sinks {
            e.sample(
                name,
                &[("sink", sink)],
                field(counters).load(Ordering::Relaxed),
            );
        }
    }
}

/// Reads of the archive by the API (`GET /api/v11/transactions/{txHash}` past the recent
/// window, `GET /api/v11/accounts/{address}/transactions`), by outcome. Always declared;
/// samples only with `archive_url`.
pub(super) fn archive_reads(e: &mut Exposition, settings: &HttpSettings) {
    let name = "aurigraph_archive_reads_total";
    e.family(
        name,
        "counter",
        "Reads of the PostgreSQL archive by the API, by outcome: ok (answered, found or not), \
         unavailable (PostgreSQL away or failing), timed_out (no answer within the reader's \
         timeout), queue_full (every reader busy and the queue full: refused at once).",
    );
    if let Some(reader) = settings.archive_reader.as_ref() {
        let c = reader.counters();
        for (outcome, value) in [
            ("ok", &c.ok),
            ("unavailable", &c.unavailable),
            ("timed_out", &c.timed_out),
            ("queue_full", &c.queue_full),
        ] {
            e.sample(name, &[("outcome", outcome)], value.load(Ordering::Relaxed));
        }
    }
}

/// Consensus, per shard (each shard is one raft group).
pub(super) fn consensus(e: &mut Exposition, status: &[ShardStatus]) {
    per_shard(
        e,
        status,
        "aurigraph_consensus_term",
        "gauge",
        "Raft term of the shard.",
        |st| st.term,
    );
    per_shard(
        e,
        status,
        "aurigraph_consensus_commit_index",
        "gauge",
        "Raft commit index of the shard.",
        |st| st.commit_index,
    );
    per_shard(
        e,
        status,
        "aurigraph_consensus_applied_index",
        "gauge",
        "Last log index applied to the shard's ledger.",
        |st| st.applied_index,
    );
    per_shard(
        e,
        status,
        "aurigraph_consensus_last_index",
        "gauge",
        "Last index in the shard's raft log on this node.",
        |st| st.last_index,
    );
    per_shard(
        e,
        status,
        "aurigraph_consensus_is_leader",
        "gauge",
        "1 when this node leads the shard.",
        |st| (st.role == "LEADER") as u64,
    );
    per_shard(
        e,
        status,
        "aurigraph_consensus_has_leader",
        "gauge",
        "1 when the shard has a leader known to this node.",
        |st| st.leader_id.is_some() as u64,
    );
    per_shard(
        e,
        status,
        "aurigraph_consensus_leader_changes_total",
        "counter",
        "Leader changes seen by the shard on this node since start.",
        |st| st.leader_changes,
    );
    per_shard(
        e,
        status,
        "aurigraph_consensus_voters",
        "gauge",
        "Voters of the shard's raft group.",
        |st| st.voters as u64,
    );
    e.single(
        "aurigraph_consensus_cluster_size",
        "gauge",
        "Validators in the cluster (the most voters of any shard's raft group).",
        status.iter().map(|st| st.voters).max().unwrap_or(0),
    );
    e.family(
        "aurigraph_consensus_peer_lag_entries",
        "gauge",
        "On the shard's leader: entries each voter (this node included) is behind the leader's last index.",
    );
    for st in status {
        let shard = st.shard.to_string();
        for (peer, lag) in &st.peer_lag {
            let peer = peer.to_string();
            e.sample(
                "aurigraph_consensus_peer_lag_entries",
                &[("shard", &shard), ("peer", &peer)],
                *lag,
            );
        }
    }
    per_shard(
        e,
        status,
        "aurigraph_shard_accounts",
        "gauge",
        "Accounts held by the shard.",
        |st| st.accounts as u64,
    );
}

/// Storage: WAL group commits, bytes, snapshots, space left in the data directory.
pub(super) fn storage(e: &mut Exposition, counters: &[ShardCounters], settings: &HttpSettings) {
    let mut fsync = HistogramCounts::default();
    for c in counters {
        fsync.add(&c.wal_fsync_ns.read());
    }
    e.family(
        "aurigraph_wal_fsync_duration_seconds",
        "histogram",
        "fdatasync time of each WAL group commit, all shards.",
    );
    e.histogram("aurigraph_wal_fsync_duration_seconds", &[], &fsync, 1e9);
    e.family(
        "aurigraph_shard_stage_duration_seconds",
        "histogram",
        "Where the shards' time goes, all shards: to_admission (a submission from the \
         submitting core's send to its admission: channels, signature verification, the turn in \
         progress), and per turn propose_apply (entries proposed, raft's ready, entries other \
         validators committed applied), persist (write and fdatasync, wall clock), answer \
         (entries the write committed applied, clients answered).",
    );
    for stage in Stage::ALL {
        let mut counts = HistogramCounts::default();
        for c in counters {
            counts.add(&c.stage_ns[stage as usize].read());
        }
        e.histogram(
            "aurigraph_shard_stage_duration_seconds",
            &[("stage", stage.label())],
            &counts,
            1e9,
        );
    }
    e.single(
        "aurigraph_wal_bytes_written_total",
        "counter",
        "Bytes written to the WAL segments (padding included), all shards.",
        counters
            .iter()
            .map(|c| c.wal_bytes_written.load(Ordering::Relaxed))
            .sum::<u64>(),
    );
    e.single(
        "aurigraph_snapshots_total",
        "counter",
        "Shard state snapshots written since start, all shards.",
        counters
            .iter()
            .map(|c| c.snapshots.load(Ordering::Relaxed))
            .sum::<u64>(),
    );
    if let Some((capacity, available)) = settings.data_dir.as_deref().and_then(disk_space) {
        e.single(
            "aurigraph_data_dir_capacity_bytes",
            "gauge",
            "Size of the file system holding the data directory.",
            capacity,
        );
        e.single(
            "aurigraph_data_dir_available_bytes",
            "gauge",
            "Bytes available to the node on the file system holding the data directory.",
            available,
        );
    }
}
