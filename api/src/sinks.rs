//! The node's downstream sinks: each a thread of its own fed by a bounded channel that the
//! shards never wait on, and, after a gap, reading a shard's balances from its state.

use crate::config::{ConfigError, FileConfig, NodeConfig};
use crate::events::{EventHub, EventHubThread};
use aurigraph_engine::replica::AccountBalance;
use aurigraph_engine::runtime::Engine;
use aurigraph_engine::state_snapshot::decode_state;
use aurigraph_engine::{AppliedTap, SinkWritten};
use aurigraph_sinks::runner::StateSource;
use aurigraph_sinks::SinkThread;
use std::sync::{Arc, OnceLock};

/// Applied entries queued for each sink (each holds a whole entry's bytes, shared with the
/// log; past it the shards drop entries for that sink, counted, and the sink reports the gap).
const SINK_QUEUE_ENTRIES: usize = 65_536;

pub(crate) struct Sinks {
    pub archive: Option<SinkThread>,
    pub redis: Option<SinkThread>,
    /// The gRPC event hub (always: gRPC is always served). Its tap comes last, after the
    /// archive's and Redis's, whose places the metrics name (`HttpSettings::sinks`).
    pub events: EventHubThread,
    /// The engine, once started: where a sink reads a shard's state after a gap.
    engine: Arc<OnceLock<Engine>>,
}

impl Sinks {
    /// Starts the sinks `config` names and the event hub; returns them and the taps the engine
    /// feeds (the archive's first: metrics name them in this order; the hub's last).
    pub fn start(config: &NodeConfig) -> (Sinks, Vec<AppliedTap>) {
        let engine = Arc::new(OnceLock::new());
        let mut taps = Vec::new();
        let mut tap = |sink: &'static str| {
            let (sender, applied) = crossbeam_channel::bounded(SINK_QUEUE_ENTRIES);
            let written = Arc::new(SinkWritten::default());
            taps.push(AppliedTap {
                sink,
                sender,
                written: written.clone(),
                balances: true,
            });
            tracing::info!(sink, "sink started");
            (applied, written)
        };
        let archive = config.archive_url.as_ref().map(|url| {
            let (applied, written) = tap("postgres");
            let state = Some(state_source(&engine));
            SinkThread::spawn_archive(url.clone(), applied, written, state)
        });
        let redis = config.redis.as_ref().map(|(url, options)| {
            let (applied, written) = tap("redis");
            let state = Some(state_source(&engine));
            SinkThread::spawn_redis(url.clone(), options.clone(), applied, written, state)
        });
        let (events, events_tap) = EventHub::spawn(config.grpc_events_retain_bytes_max);
        taps.push(events_tap);
        assert!(taps.len() <= aurigraph_engine::runtime::SINKS_MAX);
        let sinks = Sinks {
            archive,
            redis,
            events,
            engine,
        };
        (sinks, taps)
    }

    /// The engine started: the sinks may read its shards' state from now on.
    pub fn engine_started(&self, engine: &Engine) {
        let _ = self.engine.set(engine.clone());
    }

    /// After the engine stopped: each sink writes what it holds and ends; the event hub's
    /// streams end.
    pub fn stop(self) {
        for (sink, thread) in [("postgres", self.archive), ("redis", self.redis)] {
            if let Some(thread) = thread {
                thread.stop();
                tracing::info!(sink, "sink stopped");
            }
        }
        self.events.stop();
    }
}

/// A shard's balances from its state: copied on its core between two turns, as a backup does
/// (everything the shard applied up to the copy's log index), decoded here on the sink's
/// thread.
fn state_source(engine: &Arc<OnceLock<Engine>>) -> StateSource {
    let engine = engine.clone();
    Box::new(move |shard| {
        let engine = engine.get().ok_or("the engine is not started yet")?;
        if shard >= engine.shard_count() {
            return Err(format!("no shard {shard}"));
        }
        let copy = futures::executor::block_on(engine.backup_shard(shard))
            .map_err(|error| error.to_string())?
            .map_err(|refused| refused.to_string())?;
        let state = decode_state(&copy.data).map_err(|error| error.to_string())?;
        if state.shard() != shard {
            return Err(format!("asked for shard {shard}, got {}", state.shard()));
        }
        let balances = state
            .account_balances()
            .map(|(address, asset, balance)| AccountBalance {
                address,
                asset,
                balance,
            })
            .collect();
        Ok((copy.index, balances))
    })
}

/// The Redis sink's bounds from the file, checked.
pub(crate) fn redis_options(
    file: &FileConfig,
) -> Result<aurigraph_sinks::RedisOptions, ConfigError> {
    let defaults = aurigraph_sinks::RedisOptions::default();
    let bounded = |key: &str, value: Option<u64>, default: u64, max: u64| match value {
        None => Ok(default),
        Some(v) if (1..=max).contains(&v) => Ok(v),
        Some(v) => Err(ConfigError::Invalid(format!(
            "{key} {v}: must be between 1 and {max}"
        ))),
    };
    Ok(aurigraph_sinks::RedisOptions {
        stream_len_max: bounded(
            "redis_stream_len_max",
            file.redis_stream_len_max,
            defaults.stream_len_max,
            100_000_000,
        )?,
        status_ttl_s: bounded(
            "redis_status_ttl_s",
            file.redis_status_ttl_s,
            defaults.status_ttl_s,
            30 * 86_400,
        )?,
        ..defaults
    })
}
