//! `GET /metrics`: the exposition, one function per family group, in the order they are
//! served. Every figure is measured: lock-free counters of the HTTP cores and of the shards
//! summed at scrape time, shard consensus state asked of every shard now, process figures read
//! from `/proc`. The family names are listed in `docs/monitoring.md`; dashboards and alert
//! rules in `deploy/` use only these.

mod ledger;
mod node;

use super::exposition::Exposition;
use super::{Histograms, Snapshot};
use crate::http::HttpSettings;
use aurigraph_engine::runtime::{CoreCounters, ShardCounters};
use aurigraph_engine::ShardStatus;

/// What a scrape reads: the node's settings (shared figures included) and what the ledger
/// answered for this scrape.
pub struct Scrape<'a> {
    pub settings: &'a HttpSettings,
    /// Every shard's status, asked now.
    pub status: &'a [ShardStatus],
    /// Running totals of every shard.
    pub counters: &'a [ShardCounters],
    /// Running totals of every core.
    pub core_counters: &'a [CoreCounters],
    pub chain_id: u32,
    pub shards: u32,
    pub cores: usize,
}

/// The exposition of one scrape (OpenMetrics text).
pub fn render(scrape: &Scrape<'_>) -> String {
    let s: Snapshot = scrape.settings.metrics.snapshot();
    let h: Histograms = scrape.settings.metrics.histograms();
    let mut e = Exposition::new();
    ledger::transfers(&mut e, &s, &h);
    ledger::admission(&mut e, scrape.status, scrape.counters);
    ledger::consensus(&mut e, scrape.status);
    ledger::storage(&mut e, scrape.counters, scrape.settings);
    ledger::write_cycles(&mut e, scrape.counters);
    ledger::sink_taps(&mut e, scrape.counters, scrape.settings);
    ledger::sink_progress(&mut e, scrape.status, scrape.settings);
    ledger::snapshots_ahead_of_sinks(&mut e, scrape.counters);
    ledger::archive_reads(&mut e, scrape.settings);
    node::api(&mut e, &h, scrape.settings);
    node::connections(&mut e, scrape.settings, scrape.cores);
    node::submissions(&mut e, scrape.core_counters);
    node::verify_help(&mut e, scrape.core_counters);
    node::beacon(&mut e, scrape.settings);
    node::peers(&mut e, scrape.status);
    node::cores(&mut e, scrape.settings);
    node::process(&mut e, &s);
    node::identity(&mut e, scrape);
    e.finish()
}

/// A family with one sample per shard, labelled `shard`.
fn per_shard(
    e: &mut Exposition,
    status: &[ShardStatus],
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&ShardStatus) -> u64,
) {
    e.family(name, kind, help);
    for st in status {
        e.sample(name, &[("shard", &st.shard.to_string())], value(st));
    }
}
