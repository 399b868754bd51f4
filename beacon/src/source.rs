//! Configured beacon sources and the pure poll step a beacon client runs per fetch.
//!
//! [`BeaconSource`] is what a node's configuration names (no source by default). A
//! [`SourcePoller`] holds, per source, the trust anchor (the verified Twine chain record or the
//! pinned NIST certificate), a bounded [`PulseCache`] (whose latest pulse is the `prev` for the
//! next precommitment check) and a [`CircuitBreaker`]. [`SourcePoller::step`] takes what one
//! fetch returned and the caller's monotonic clock in milliseconds; it does no I/O and reads no
//! clock. A fetch is only due when [`SourcePoller::due`] says so.

use super::derive::{CacheError, PulseCache};
use super::nist::{self, NistCertificate, NistError, NistPulse};
use super::twine::{self, TwineChain, TwineError, TwinePulse, CURBY_RNG_CHAIN_CID};
use super::VerifiedRandomness;
use serde::Deserialize;

/// The beacons' own cadence: one pulse per minute.
pub const PULSE_PERIOD_MS: u64 = 60_000;
/// Verified pulses kept per source unless configured otherwise.
pub const DEFAULT_CACHE_CAPACITY: usize = 16;
/// Upper bound of [`BeaconSource::cache_capacity`].
pub const MAX_CACHE_CAPACITY: usize = 1024;

/// Which beacon protocol a source speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SourceKind {
    /// CURBy-RNG, Twine v1 pulses.
    #[serde(rename = "CURBy-RNG")]
    CurbyRng,
    /// NIST Randomness Beacon 2.0.
    #[serde(rename = "NIST")]
    Nist,
}

/// One configured beacon source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeaconSource {
    /// Unique name (health reasons and `info` use it).
    pub name: String,
    /// Protocol.
    pub kind: SourceKind,
    /// Base URL, `https://…` (tests: a loopback HTTPS fake beacon).
    pub base_url: String,
    /// CURBy-RNG: the pinned chain CID (default [`CURBY_RNG_CHAIN_CID`]). Not for NIST.
    #[serde(default)]
    pub chain_cid: Option<String>,
    /// NIST: path of the pinned certificate (PEM). Required for NIST, not for CURBy-RNG.
    #[serde(default)]
    pub certificate: Option<std::path::PathBuf>,
    /// Verified pulses kept, 1..=[`MAX_CACHE_CAPACITY`].
    #[serde(default = "default_capacity")]
    pub cache_capacity: usize,
    /// A PEM file of root certificates trusted for this source's HTTPS in addition to the
    /// public web roots (a private mirror; tests: a certificate made at test time). TLS only:
    /// pulses are still verified against the pinned chain or certificate.
    #[serde(default)]
    pub tls_root: Option<std::path::PathBuf>,
}

fn default_capacity() -> usize {
    DEFAULT_CACHE_CAPACITY
}

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("beacon source has an empty name")]
    EmptyName,
    #[error("beacon source {name:?}: base URL {url:?} is not https://host…")]
    BadUrl { name: String, url: String },
    #[error("beacon source {name:?}: {what}")]
    Pin { name: String, what: &'static str },
    #[error("beacon source {name:?}: cache capacity {capacity} outside 1..={MAX_CACHE_CAPACITY}")]
    Capacity { name: String, capacity: usize },
    #[error("circuit breaker: {0}")]
    Breaker(&'static str),
}

impl BeaconSource {
    /// Checks the fields that do not need any file or network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = || self.name.clone();
        if self.name.trim().is_empty() {
            return Err(ConfigError::EmptyName);
        }
        let host = self.base_url.strip_prefix("https://").unwrap_or("");
        if host.is_empty() || host.starts_with('/') || self.base_url.contains(char::is_whitespace) {
            return Err(ConfigError::BadUrl {
                name: name(),
                url: self.base_url.clone(),
            });
        }
        match (self.kind, &self.chain_cid, &self.certificate) {
            (SourceKind::CurbyRng, _, Some(_)) => {
                return Err(ConfigError::Pin {
                    name: name(),
                    what: "a CURBy-RNG source is pinned by chain_cid, not a certificate",
                })
            }
            (SourceKind::CurbyRng, Some(cid), None) if cid.trim().is_empty() => {
                return Err(ConfigError::Pin {
                    name: name(),
                    what: "chain_cid is empty",
                })
            }
            (SourceKind::Nist, Some(_), _) => {
                return Err(ConfigError::Pin {
                    name: name(),
                    what: "a NIST source is pinned by certificate, not chain_cid",
                })
            }
            (SourceKind::Nist, None, None) => {
                return Err(ConfigError::Pin {
                    name: name(),
                    what: "a NIST source needs its pinned certificate",
                })
            }
            _ => {}
        }
        if !(1..=MAX_CACHE_CAPACITY).contains(&self.cache_capacity) {
            return Err(ConfigError::Capacity {
                name: name(),
                capacity: self.cache_capacity,
            });
        }
        Ok(())
    }

    /// The pinned chain CID of a CURBy-RNG source (the default pin when not configured).
    pub fn pinned_chain_cid(&self) -> &str {
        self.chain_cid.as_deref().unwrap_or(CURBY_RNG_CHAIN_CID)
    }
}

/// Circuit-breaker bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker, 1..=100.
    pub failure_threshold: u32,
    /// How long the breaker stays open after its first trip, 1 s ..= 1 h.
    pub open_base_ms: u64,
    /// Cap of the open time, which doubles with every trip in a row; `open_base_ms` ..= 24 h.
    pub open_max_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 3,
            open_base_ms: PULSE_PERIOD_MS,
            open_max_ms: 30 * 60_000,
        }
    }
}

impl BreakerConfig {
    /// Checks the bounds documented on the fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100).contains(&self.failure_threshold) {
            return Err(ConfigError::Breaker("failure_threshold outside 1..=100"));
        }
        if !(1_000..=3_600_000).contains(&self.open_base_ms) {
            return Err(ConfigError::Breaker("open_base_ms outside 1 s..=1 h"));
        }
        if !(self.open_base_ms..=86_400_000).contains(&self.open_max_ms) {
            return Err(ConfigError::Breaker(
                "open_max_ms outside open_base_ms..=24 h",
            ));
        }
        Ok(())
    }
}

/// A circuit breaker: closed until `failure_threshold` consecutive failures, then open for a
/// time that doubles per consecutive trip (capped); after it, one trial is allowed
/// (half-open): a success closes it, a failure opens it again for longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    failures: u32,
    trips: u32,
    open_until_ms: Option<u64>,
}

impl CircuitBreaker {
    /// A closed breaker with these (validated) bounds.
    pub fn new(config: BreakerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(CircuitBreaker {
            config,
            failures: 0,
            trips: 0,
            open_until_ms: None,
        })
    }

    /// Whether a request may be made at `now_ms`.
    pub fn allows(&self, now_ms: u64) -> bool {
        self.open_until_ms.is_none_or(|until| now_ms >= until)
    }

    /// When the breaker lets the next request through, if it is open at `now_ms`.
    pub fn open_until(&self, now_ms: u64) -> Option<u64> {
        self.open_until_ms.filter(|&until| now_ms < until)
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    fn success(&mut self) {
        self.failures = 0;
        self.trips = 0;
        self.open_until_ms = None;
    }

    fn failure(&mut self, now_ms: u64) {
        self.failures = self.failures.saturating_add(1);
        let half_open = self.open_until_ms.is_some();
        if half_open || self.failures >= self.config.failure_threshold {
            let shift = self.trips.min(32);
            let open_ms = self
                .config
                .open_base_ms
                .saturating_mul(1u64 << shift)
                .min(self.config.open_max_ms);
            self.trips = self.trips.saturating_add(1);
            self.open_until_ms = Some(now_ms.saturating_add(open_ms));
        }
    }
}

/// What one poll step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// A new fully verified pulse: its randomness may be served.
    Verified(VerifiedRandomness),
    /// A pulse verified except for its precommitment (no predecessor held: the first pulse, or
    /// one after a gap); kept as the `prev` for the next one, not served.
    Anchored { index: u64 },
    /// The latest pulse again (the beacon has not moved on yet).
    Unchanged { index: u64 },
}

/// Why a poll step failed. Every failure but [`PollError::CircuitOpen`] counts against the
/// breaker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    /// The breaker is open: do not fetch before `retry_at_ms`.
    #[error("circuit open after repeated failures; next try at {retry_at_ms} ms")]
    CircuitOpen { retry_at_ms: u64 },
    /// The fetch itself failed (connection, TLS, timeout, HTTP status), as the client says.
    #[error("fetch failed: {0}")]
    Fetch(String),
    #[error("CURBy-RNG pulse rejected: {0}")]
    Twine(#[from] TwineError),
    #[error("NIST pulse rejected: {0}")]
    Nist(#[from] NistError),
    /// A validly signed pulse older than the latest one held.
    #[error("stale pulse {index}: pulse {latest} is already held")]
    Stale { index: u64, latest: u64 },
    /// A validly signed pulse with the index of the latest held but other content.
    #[error("pulse {index} differs from the pulse {index} already verified")]
    Conflict { index: u64 },
    /// Completing an anchored pulse with its fetched predecessor failed.
    #[error("predecessor pulse: {0}")]
    Backfill(String),
    /// The cache refused the pulse (indices are compared before, so not expected).
    #[error("cache: {0}")]
    Cache(#[from] CacheError),
}

enum Anchor {
    Twine(TwineChain, PulseCache<TwinePulse>),
    Nist(NistCertificate, PulseCache<NistPulse>),
}

/// Per-source poll state: trust anchor, verified-pulse cache, circuit breaker.
pub struct SourcePoller {
    anchor: Anchor,
    breaker: CircuitBreaker,
    next_due_ms: u64,
}

impl SourcePoller {
    /// For a CURBy-RNG source whose chain record `chain` verified against its pinned CID.
    pub fn curby_rng(chain: TwineChain, capacity: usize, breaker: CircuitBreaker) -> Self {
        SourcePoller {
            anchor: Anchor::Twine(chain, PulseCache::new(capacity)),
            breaker,
            next_due_ms: 0,
        }
    }

    /// For a NIST source with its pinned certificate.
    pub fn nist(cert: NistCertificate, capacity: usize, breaker: CircuitBreaker) -> Self {
        SourcePoller {
            anchor: Anchor::Nist(cert, PulseCache::new(capacity)),
            breaker,
            next_due_ms: 0,
        }
    }

    /// Whether a fetch is due at `now_ms`: the breaker is not open and the last successful
    /// step was at least one pulse period ago.
    pub fn due(&self, now_ms: u64) -> bool {
        self.breaker.allows(now_ms) && now_ms >= self.next_due_ms
    }

    /// The circuit breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The latest servable verified randomness held.
    pub fn latest_randomness(&self) -> Option<&VerifiedRandomness> {
        match &self.anchor {
            Anchor::Twine(_, cache) => cache.latest_randomness(),
            Anchor::Nist(_, cache) => cache.latest_randomness(),
        }
    }

    /// Verified pulses held (at most the configured capacity).
    pub fn cached(&self) -> usize {
        match &self.anchor {
            Anchor::Twine(_, cache) => cache.len(),
            Anchor::Nist(_, cache) => cache.len(),
        }
    }

    /// One poll step: `fetched` is the body of the latest pulse as served, or why the fetch
    /// failed. Verifies it against the anchor and the previous pulse, caches it, and updates
    /// the breaker. With the breaker open it changes nothing and says when to try again.
    pub fn step(
        &mut self,
        now_ms: u64,
        fetched: Result<&[u8], String>,
    ) -> Result<PollOutcome, PollError> {
        if let Some(retry_at_ms) = self.breaker.open_until(now_ms) {
            return Err(PollError::CircuitOpen { retry_at_ms });
        }
        let result = fetched
            .map_err(PollError::Fetch)
            .and_then(|body| self.verify(body));
        match &result {
            Ok(_) => {
                self.breaker.success();
                self.next_due_ms = now_ms.saturating_add(PULSE_PERIOD_MS);
            }
            Err(_) => self.breaker.failure(now_ms),
        }
        result
    }

    /// When the latest pulse held is only an anchor (verified, but with no predecessor to
    /// check its precommitment against: the first pulse after start or after a gap), the
    /// path, relative to the source's base URL, of its predecessor: CURBy-RNG
    /// `chains/{chain}/pulses/{index - 1}`, NIST `chain/{chainIndex}/pulse/{pulseIndex - 1}`.
    /// Fetching it and calling [`backfill`](Self::backfill) makes the anchor servable at once
    /// instead of one pulse period later.
    pub fn predecessor_path(&self) -> Option<String> {
        match &self.anchor {
            Anchor::Twine(chain, cache) => {
                let latest = cache.latest_pulse()?;
                let index = latest.index().checked_sub(1)?;
                cache
                    .latest_randomness()
                    .is_none_or(|r| r.provenance.index != latest.index())
                    .then(|| format!("chains/{}/pulses/{index}", chain.cid()))
            }
            Anchor::Nist(_, cache) => {
                let latest = cache.latest_pulse()?;
                let index = latest.pulse_index().checked_sub(1)?;
                cache
                    .latest_randomness()
                    .is_none_or(|r| r.provenance.index != latest.pulse_index())
                    .then(|| format!("chain/{}/pulse/{index}", latest.chain_index()))
            }
        }
    }

    /// Completes an anchor (see [`predecessor_path`](Self::predecessor_path)): `previous` is
    /// the body fetched for the predecessor, `latest` the body of the anchored pulse as served
    /// before. Both are verified from scratch, the predecessor first (signature, pinned
    /// anchor), then the latest against it (chaining and precommitment); on success the cache
    /// holds both and the latest is servable. On failure the cache is left as it was (the
    /// anchor stays and the next pulse verifies against it) and the breaker is not charged:
    /// the beacon still serves its latest pulse correctly.
    pub fn backfill(&mut self, previous: &[u8], latest: &[u8]) -> Result<PollOutcome, PollError> {
        let fresh = match &self.anchor {
            Anchor::Twine(chain, cache) => {
                Anchor::Twine(chain.clone(), PulseCache::new(cache.capacity()))
            }
            Anchor::Nist(cert, cache) => {
                Anchor::Nist(cert.clone(), PulseCache::new(cache.capacity()))
            }
        };
        let held = std::mem::replace(&mut self.anchor, fresh);
        let result = match self.verify(previous) {
            Ok(PollOutcome::Anchored { .. }) => match self.verify(latest) {
                Ok(outcome @ PollOutcome::Verified(_)) => Ok(outcome),
                Ok(other) => Err(PollError::Backfill(format!(
                    "the latest pulse does not follow the fetched predecessor ({other:?})"
                ))),
                Err(e) => Err(e),
            },
            Ok(other) => Err(PollError::Backfill(format!(
                "unexpected outcome for the predecessor: {other:?}"
            ))),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.anchor = held;
        }
        result
    }

    fn verify(&mut self, body: &[u8]) -> Result<PollOutcome, PollError> {
        match &mut self.anchor {
            Anchor::Twine(chain, cache) => {
                let pulse = twine::verify_pulse(chain, body)?;
                let Some(prev) = cache.latest_pulse() else {
                    let index = pulse.index();
                    cache.insert_anchor(pulse)?;
                    return Ok(PollOutcome::Anchored { index });
                };
                let (index, latest) = (pulse.index(), prev.index());
                if index == latest {
                    return same(pulse.cid() == prev.cid(), index);
                }
                if index < latest {
                    return Err(PollError::Stale { index, latest });
                }
                if index > latest + 1 {
                    cache.insert_anchor(pulse)?;
                    return Ok(PollOutcome::Anchored { index });
                }
                let (pulse, randomness) = twine::verify_rng_pulse(chain, body, prev)?;
                cache.insert(pulse, randomness.clone())?;
                Ok(PollOutcome::Verified(randomness))
            }
            Anchor::Nist(cert, cache) => {
                let pulse = nist::verify_pulse(cert, body)?;
                let Some(prev) = cache.latest_pulse() else {
                    let index = pulse.pulse_index();
                    cache.insert_anchor(pulse)?;
                    return Ok(PollOutcome::Anchored { index });
                };
                let (index, latest) = (pulse.pulse_index(), prev.pulse_index());
                if pulse.chain_index() < prev.chain_index() {
                    return Err(PollError::Stale { index, latest });
                }
                if pulse.chain_index() == prev.chain_index() {
                    if index == latest {
                        return same(pulse == *prev, index);
                    }
                    if index < latest {
                        return Err(PollError::Stale { index, latest });
                    }
                }
                if pulse.chain_index() != prev.chain_index() || index > latest + 1 {
                    // A new NIST chain or a gap: nothing to check the precommitment against.
                    *cache = PulseCache::new(cache.capacity());
                    cache.insert_anchor(pulse)?;
                    return Ok(PollOutcome::Anchored { index });
                }
                nist::check_follows(&pulse, prev)?;
                let randomness = pulse.randomness();
                cache.insert(pulse, randomness.clone())?;
                Ok(PollOutcome::Verified(randomness))
            }
        }
    }
}

fn same(identical: bool, index: u64) -> Result<PollOutcome, PollError> {
    if identical {
        Ok(PollOutcome::Unchanged { index })
    } else {
        Err(PollError::Conflict { index })
    }
}

#[cfg(test)]
mod tests;
