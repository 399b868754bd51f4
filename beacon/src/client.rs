//! The I/O edge of the beacon client: one plain OS thread (not on the node's glommio cores)
//! that fetches pulses over HTTPS (rustls, via `ureq`), feeds them to each source's
//! [`SourcePoller`] and publishes the result into the shared [`BeaconState`].
//!
//! Per source it follows the beacons' 60-second cadence ([`SourcePoller::due`]) and backs off
//! through the poller's [`CircuitBreaker`](super::source::CircuitBreaker). A CURBy-RNG source
//! first fetches its chain record (`{base}/chains/{pinned cid}`) and verifies it against the
//! pin, retrying with doubling back-off until it does; pulses come from
//! `{base}/chains/{cid}/pulses/latest`. A NIST source loads its pinned certificate from the
//! configured PEM file when the client starts and fetches `{base}/pulse/last`.
//!
//! Every request has connect, read and overall timeouts, follows no redirect, is HTTPS only
//! (the roots are `webpki-roots` plus any configured extra roots) and reads at most
//! [`ClientOptions::max_body_bytes`]. Nothing unverified reaches the state: only
//! [`PollOutcome::Verified`] randomness is recorded; every failure is recorded as the source's
//! last error (which drops its randomness, so the endpoints fall back).
//!
//! [`BeaconClient::stop`] (or dropping the client) sets a stop flag, wakes the thread through a
//! condvar and joins it; a request in flight is bounded by the request timeout.

use super::nist::NistCertificate;
use super::source::{
    BeaconSource, BreakerConfig, CircuitBreaker, ConfigError, PollOutcome, SourceKind,
    SourcePoller, PULSE_PERIOD_MS,
};
use super::state::{BeaconState, Evidence};
use super::twine::TwineChain;
use super::Source;
use rustls::pki_types::CertificateDer;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Upper bound of a response body unless configured otherwise (a pulse is a few KiB).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 256 * 1024;

/// Client settings other than the sources themselves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of each socket read.
    pub read_timeout: Duration,
    /// Timeout of a whole request (connect, TLS, headers, body).
    pub request_timeout: Duration,
    /// Responses longer than this are rejected.
    pub max_body_bytes: u64,
    /// Roots trusted in addition to `webpki-roots` (a private mirror; tests: a certificate
    /// made at test time).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Circuit breaker per source.
    pub breaker: BreakerConfig,
    /// How often the thread re-checks which source is due (real time).
    pub tick: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(20),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            extra_roots: Vec::new(),
            breaker: BreakerConfig::default(),
            tick: Duration::from_secs(1),
        }
    }
}

/// Why the client could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("beacon source {name:?}: certificate {path}: {reason}")]
    Certificate {
        name: String,
        path: String,
        reason: String,
    },
    #[error("beacon state: {0}")]
    State(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cannot start the beacon client thread: {0}")]
    Spawn(std::io::Error),
}

/// A monotonic clock in milliseconds (injectable so that tests need not wait a minute).
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since an arbitrary fixed origin; never decreases.
    fn now_ms(&self) -> u64;
}

/// [`Clock`] over [`Instant`], counting from its creation.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock(Instant);

impl MonotonicClock {
    pub fn new() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The running client thread. Stopped (and joined) by [`stop`](Self::stop) or on drop.
pub struct BeaconClient {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for BeaconClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeaconClient")
            .field("running", &self.handle.is_some())
            .finish()
    }
}

impl BeaconClient {
    /// Validates `sources`, loads NIST certificates and starts the client thread with the
    /// real monotonic clock. `state` must have been built with the same sources (names and
    /// kinds), e.g. by [`state_for`].
    pub fn spawn(
        sources: &[BeaconSource],
        state: Arc<RwLock<BeaconState>>,
        options: ClientOptions,
    ) -> Result<BeaconClient, ClientError> {
        Self::spawn_with_clock(sources, state, options, Arc::new(MonotonicClock::new()))
    }

    /// As [`spawn`](Self::spawn), with the given clock.
    pub fn spawn_with_clock(
        sources: &[BeaconSource],
        state: Arc<RwLock<BeaconState>>,
        options: ClientOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<BeaconClient, ClientError> {
        options.breaker.validate()?;
        let workers = sources
            .iter()
            .map(|s| Worker::new(s, &options))
            .collect::<Result<Vec<_>, _>>()?;
        {
            let guard = state.read().unwrap_or_else(|e| e.into_inner());
            for w in &workers {
                if !guard.sources().iter().any(|s| s.name == w.source.name) {
                    return Err(ClientError::State(format!(
                        "source {:?} is not in the beacon state",
                        w.source.name
                    )));
                }
            }
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread_stop = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("beacon-client".into())
            .spawn(move || run(workers, state, options, clock, thread_stop))
            .map_err(ClientError::Spawn)?;
        Ok(BeaconClient {
            stop,
            handle: Some(handle),
        })
    }

    /// Asks the thread to stop and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        {
            let (flag, cvar) = &*self.stop;
            *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cvar.notify_all();
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for BeaconClient {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The [`BeaconState`] matching `sources` (priority = configuration order).
pub fn state_for(sources: &[BeaconSource]) -> Result<BeaconState, ClientError> {
    BeaconState::with_sources(sources.iter().map(|s| {
        let kind = match s.kind {
            SourceKind::CurbyRng => Source::CurbyRng,
            SourceKind::Nist => Source::Nist,
        };
        (s.name.clone(), kind)
    }))
    .map_err(|e| ClientError::State(e.to_string()))
}

/// The roots of a source's `tls_root` PEM file.
fn load_tls_roots(source: &BeaconSource) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    use rustls::pki_types::pem::PemObject;
    let Some(path) = &source.tls_root else {
        return Ok(Vec::new());
    };
    let err = |reason: String| ClientError::Certificate {
        name: source.name.clone(),
        path: path.display().to_string(),
        reason,
    };
    let roots = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if roots.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(roots)
}

/// The HTTPS agent of one source: `webpki-roots` plus the client's extra roots plus the
/// source's own `tls_root` (so a root configured for one source is not trusted for another).
fn agent(
    options: &ClientOptions,
    source_roots: &[CertificateDer<'static>],
) -> Result<ureq::Agent, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for root in options.extra_roots.iter().chain(source_roots) {
        roots
            .add(root.clone())
            .map_err(|e| ClientError::Tls(format!("extra root: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(ureq::AgentBuilder::new()
        .tls_config(Arc::new(tls))
        .https_only(true)
        .redirects(0)
        .timeout_connect(options.connect_timeout)
        .timeout_read(options.read_timeout)
        .timeout_write(options.read_timeout)
        .timeout(options.request_timeout)
        .user_agent(concat!(
            "aurigraph-beacon-client/",
            env!("CARGO_PKG_VERSION")
        ))
        .build())
}

/// GET `url`, status 200, at most `max` bytes of body.
fn fetch(agent: &ureq::Agent, url: &str, max: u64) -> Result<Vec<u8>, String> {
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Status(code, _) => format!("GET {url}: HTTP {code}"),
        ureq::Error::Transport(t) => format!("GET {url}: {t}"),
    })?;
    if response.status() != 200 {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    response
        .into_reader()
        .take(max.saturating_add(1))
        .read_to_end(&mut body)
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    if body.len() as u64 > max {
        return Err(format!("GET {url}: response larger than {max} bytes"));
    }
    Ok(body)
}

enum Phase {
    /// CURBy-RNG: the chain record is not verified yet; next try at `retry_at_ms`.
    NeedChain {
        retry_at_ms: u64,
        backoff_ms: u64,
    },
    Polling(Box<SourcePoller>),
}

struct Worker {
    source: BeaconSource,
    agent: ureq::Agent,
    /// Body of the latest pulse accepted (verified or anchored): the `previous` document of
    /// the next verified pulse's evidence.
    last_body: Option<Vec<u8>>,
    /// The evidence of the randomness published last (republished with it when unchanged).
    evidence: Option<Evidence>,
    breaker: BreakerConfig,
    phase: Phase,
}

impl Worker {
    fn new(source: &BeaconSource, options: &ClientOptions) -> Result<Worker, ClientError> {
        source.validate()?;
        let phase = match source.kind {
            SourceKind::CurbyRng => Phase::NeedChain {
                retry_at_ms: 0,
                backoff_ms: options.breaker.open_base_ms,
            },
            SourceKind::Nist => {
                let path = source.certificate.as_ref().ok_or_else(|| {
                    ClientError::Config(ConfigError::Pin {
                        name: source.name.clone(),
                        what: "a NIST source needs its pinned certificate",
                    })
                })?;
                let cert_err = |reason: String| ClientError::Certificate {
                    name: source.name.clone(),
                    path: path.display().to_string(),
                    reason,
                };
                let pem = std::fs::read(path).map_err(|e| cert_err(e.to_string()))?;
                let cert = NistCertificate::from_pem(&pem).map_err(|e| cert_err(e.to_string()))?;
                Phase::Polling(Box::new(SourcePoller::nist(
                    cert,
                    source.cache_capacity,
                    CircuitBreaker::new(options.breaker)?,
                )))
            }
        };
        let agent = agent(options, &load_tls_roots(source)?)?;
        Ok(Worker {
            source: source.clone(),
            agent,
            last_body: None,
            evidence: None,
            breaker: options.breaker,
            phase,
        })
    }

    fn base(&self) -> &str {
        self.source.base_url.trim_end_matches('/')
    }

    fn pulse_url(&self) -> String {
        match self.source.kind {
            SourceKind::CurbyRng => format!(
                "{}/chains/{}/pulses/latest",
                self.base(),
                self.source.pinned_chain_cid()
            ),
            SourceKind::Nist => format!("{}/pulse/last", self.base()),
        }
    }

    /// One pass at `now_ms`: whatever is due for this source.
    fn poll(&mut self, now_ms: u64, max: u64, state: &RwLock<BeaconState>) {
        let name = self.source.name.clone();
        let agent = &self.agent;
        let publish = |f: &dyn Fn(&mut BeaconState)| {
            let mut guard = state.write().unwrap_or_else(|e| e.into_inner());
            f(&mut guard);
        };
        if let Phase::NeedChain {
            retry_at_ms,
            backoff_ms,
        } = self.phase
        {
            if now_ms < retry_at_ms {
                return;
            }
            let cid = self.source.pinned_chain_cid();
            let url = format!("{}/chains/{cid}", self.base());
            let chain = fetch(agent, &url, max).and_then(|body| {
                TwineChain::verify(&body, cid).map_err(|e| format!("chain record: {e}"))
            });
            match chain {
                Ok(chain) => {
                    // The breaker config was validated when the client started.
                    let Ok(breaker) = CircuitBreaker::new(self.breaker) else {
                        return;
                    };
                    self.phase = Phase::Polling(Box::new(SourcePoller::curby_rng(
                        chain,
                        self.source.cache_capacity,
                        breaker,
                    )));
                }
                Err(reason) => {
                    publish(&|s| {
                        let _ = s.record_failure(&name, reason.clone());
                    });
                    self.phase = Phase::NeedChain {
                        retry_at_ms: now_ms.saturating_add(backoff_ms),
                        backoff_ms: backoff_ms.saturating_mul(2).min(self.breaker.open_max_ms),
                    };
                    return;
                }
            }
        }
        let url = self.pulse_url();
        let Phase::Polling(poller) = &mut self.phase else {
            return;
        };
        if !poller.due(now_ms) {
            return;
        }
        let fetched = fetch(agent, &url, max);
        let record = |s: &mut BeaconState, r: &super::VerifiedRandomness, e: &Option<Evidence>| {
            let _ = s.record_verified_with_evidence(&name, r.clone(), e.clone());
        };
        match poller.step(now_ms, fetched.as_deref().map_err(Clone::clone)) {
            Ok(PollOutcome::Verified(randomness)) => {
                let body = fetched.unwrap_or_default();
                self.evidence = self.last_body.take().map(|previous| Evidence {
                    pulse: body.clone(),
                    previous,
                });
                self.last_body = Some(body);
                let evidence = &self.evidence;
                publish(&|s| record(s, &randomness, evidence));
            }
            Ok(PollOutcome::Unchanged { .. }) => {
                // Still the latest pulse: republish it (clears an earlier transient failure).
                if let Some(randomness) = poller.latest_randomness().cloned() {
                    let evidence = &self.evidence;
                    publish(&|s| record(s, &randomness, evidence));
                }
            }
            Ok(PollOutcome::Anchored { index }) => {
                // The first pulse after start (or a gap): fetch its predecessor so that the
                // precommitment can be checked now rather than one pulse period later.
                let Ok(latest) = fetched else {
                    return;
                };
                self.last_body = Some(latest.clone());
                let Some(path) = poller.predecessor_path() else {
                    return;
                };
                let url = format!("{}/{path}", self.source.base_url.trim_end_matches('/'));
                let outcome = fetch(agent, &url, max)
                    .map_err(|e| format!("pulse {index}: {e}"))
                    .and_then(|previous| {
                        poller
                            .backfill(&previous, &latest)
                            .map(|outcome| (outcome, previous))
                            .map_err(|e| format!("pulse {index}: {e}"))
                    });
                match outcome {
                    Ok((PollOutcome::Verified(randomness), previous)) => {
                        self.evidence = Some(Evidence {
                            pulse: latest,
                            previous,
                        });
                        let evidence = &self.evidence;
                        publish(&|s| record(s, &randomness, evidence));
                    }
                    Ok(_) => {}
                    Err(reason) => publish(&|s| {
                        let _ = s.record_failure(&name, reason.clone());
                    }),
                }
            }
            Err(e) => publish(&|s| {
                let _ = s.record_failure(&name, e.to_string());
            }),
        }
    }
}

fn run(
    mut workers: Vec<Worker>,
    state: Arc<RwLock<BeaconState>>,
    options: ClientOptions,
    clock: Arc<dyn Clock>,
    stop: Arc<(Mutex<bool>, Condvar)>,
) {
    let (flag, cvar) = &*stop;
    let tick = options.tick.min(Duration::from_millis(PULSE_PERIOD_MS));
    loop {
        if *flag.lock().unwrap_or_else(|e| e.into_inner()) {
            return;
        }
        let now_ms = clock.now_ms();
        for worker in &mut workers {
            if *flag.lock().unwrap_or_else(|e| e.into_inner()) {
                return;
            }
            worker.poll(now_ms, options.max_body_bytes, &state);
        }
        let guard = flag.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = cvar
            .wait_timeout_while(guard, tick, |stopped| !*stopped)
            .unwrap_or_else(|e| e.into_inner());
        if *guard {
            return;
        }
    }
}
