//! What the node currently holds from its beacon sources: per configured source, the latest
//! verified randomness (or none) and the last failure. The HTTP endpoints read it; a beacon
//! client (later) writes it. No I/O, no clock.
//!
//! With no source configured (the development default) every draw is the local fallback:
//! OS CSPRNG bytes through [`derive_secret`] without a beacon value, reported as
//! [`FALLBACK_SOURCE`] and not verified.

use super::derive::{derive_secret, DeriveError};
use super::{Provenance, Source, VerifiedRandomness};
use serde::Serialize;

/// The `source` reported for bytes drawn without a verified pulse.
pub const FALLBACK_SOURCE: &str = "LOCAL_FALLBACK";

/// One configured source as the node currently sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// The configured name of the source (unique within a [`BeaconState`]).
    pub name: String,
    /// Which beacon it is.
    pub source: Source,
    /// The latest fully verified randomness from it, if any.
    pub latest: Option<VerifiedRandomness>,
    /// Why the last attempt failed (cleared by the next verified pulse).
    pub last_error: Option<String>,
    /// Distinct pulses fully verified from this source since start (a pulse recorded again
    /// because the beacon has not moved on is not counted twice).
    pub pulses_verified: u64,
    /// `(index, id)` of the pulse last counted in `pulses_verified` (kept across failures).
    #[serde(skip)]
    last_counted: Option<(u64, String)>,
    /// The signed documents `latest` was verified from, when the client kept them.
    #[serde(skip)]
    pub evidence: Option<Evidence>,
}

/// The signed documents a verified value was checked from, as the beacon served them, so that a
/// third party can re-verify it (`aurigraph beacon verify-curby|verify-nist`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The pulse whose randomness is served.
    pub pulse: Vec<u8>,
    /// The pulse before it, whose precommitment the pulse opens.
    pub previous: Vec<u8>,
}

/// The beacon's own health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeaconHealth {
    /// No source is configured: the fallback is served by design; not a failure.
    NotConfigured,
    /// At least one configured source has verified randomness and none reports a failure.
    Up,
    /// Some configured source has no verified randomness or reports a failure; the reasons,
    /// one per such source (`name: reason`).
    Down(Vec<String>),
}

/// Bytes handed out by [`BeaconState::draw`], with where their beacon share came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drawn {
    /// The derived secret bytes.
    pub bytes: Vec<u8>,
    /// The verified pulse mixed in; `None` for the local fallback.
    pub provenance: Option<Provenance>,
}

impl Drawn {
    /// `source` as served: the beacon's name, or [`FALLBACK_SOURCE`].
    pub fn source(&self) -> &'static str {
        self.provenance
            .as_ref()
            .map_or(FALLBACK_SOURCE, |p| p.source.as_str())
    }

    /// Whether a verified pulse was mixed in.
    pub fn verified(&self) -> bool {
        self.provenance.is_some()
    }
}

/// Errors of [`BeaconState`] updates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The named source is not configured.
    #[error("no beacon source named {0:?} is configured")]
    UnknownSource(String),
    /// Verified randomness of one beacon offered for a source of another.
    #[error("source {name:?} is {expected:?}, the randomness comes from {got:?}")]
    WrongSource {
        name: String,
        expected: Source,
        got: Source,
    },
    /// Two sources configured under the same name.
    #[error("beacon source {0:?} is configured twice")]
    DuplicateName(String),
}

/// Per configured source, the latest verified randomness; sources in priority order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BeaconState {
    sources: Vec<SourceStatus>,
}

impl BeaconState {
    /// No source configured: everything is served from the local fallback.
    pub fn unconfigured() -> BeaconState {
        BeaconState::default()
    }

    /// The given `(name, source)` pairs, in priority order, none verified yet.
    pub fn with_sources<I, S>(sources: I) -> Result<BeaconState, StateError>
    where
        I: IntoIterator<Item = (S, Source)>,
        S: Into<String>,
    {
        let mut state = BeaconState::default();
        for (name, source) in sources {
            let name = name.into();
            if state.sources.iter().any(|s| s.name == name) {
                return Err(StateError::DuplicateName(name));
            }
            state.sources.push(SourceStatus {
                name,
                source,
                latest: None,
                last_error: None,
                pulses_verified: 0,
                last_counted: None,
                evidence: None,
            });
        }
        Ok(state)
    }

    /// The configured sources, in priority order.
    pub fn sources(&self) -> &[SourceStatus] {
        &self.sources
    }

    /// Whether any source is configured.
    pub fn is_configured(&self) -> bool {
        !self.sources.is_empty()
    }

    fn source_mut(&mut self, name: &str) -> Result<&mut SourceStatus, StateError> {
        self.sources
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or_else(|| StateError::UnknownSource(name.to_owned()))
    }

    /// Records verified randomness of source `name` (clears its failure).
    pub fn record_verified(
        &mut self,
        name: &str,
        randomness: VerifiedRandomness,
    ) -> Result<(), StateError> {
        self.record_verified_with_evidence(name, randomness, None)
    }

    /// Records verified randomness of source `name` with the documents it was verified from.
    pub fn record_verified_with_evidence(
        &mut self,
        name: &str,
        randomness: VerifiedRandomness,
        evidence: Option<Evidence>,
    ) -> Result<(), StateError> {
        let status = self.source_mut(name)?;
        if randomness.provenance.source != status.source {
            return Err(StateError::WrongSource {
                name: name.to_owned(),
                expected: status.source,
                got: randomness.provenance.source,
            });
        }
        let pulse = (
            randomness.provenance.index,
            randomness.provenance.id.clone(),
        );
        if status.last_counted.as_ref() != Some(&pulse) {
            status.pulses_verified += 1;
            status.last_counted = Some(pulse);
        }
        status.latest = Some(randomness);
        status.last_error = None;
        status.evidence = evidence;
        Ok(())
    }

    /// Records a failure of source `name`. Its latest verified randomness is dropped, so that
    /// a source that stopped verifying is not served as current.
    pub fn record_failure(
        &mut self,
        name: &str,
        reason: impl Into<String>,
    ) -> Result<(), StateError> {
        let status = self.source_mut(name)?;
        status.latest = None;
        status.evidence = None;
        status.last_error = Some(reason.into());
        Ok(())
    }

    /// The latest verified randomness of the first source (priority order) that has one.
    pub fn latest(&self) -> Option<&VerifiedRandomness> {
        self.sources.iter().find_map(|s| s.latest.as_ref())
    }

    /// The first source (priority order) with verified randomness: the value
    /// [`latest`](Self::latest) serves, with its source's status (evidence included).
    pub fn latest_source(&self) -> Option<&SourceStatus> {
        self.sources.iter().find(|s| s.latest.is_some())
    }

    /// The beacon's own health.
    pub fn health(&self) -> BeaconHealth {
        if self.sources.is_empty() {
            return BeaconHealth::NotConfigured;
        }
        let reasons: Vec<String> = self
            .sources
            .iter()
            .filter_map(|s| match (&s.latest, &s.last_error) {
                (_, Some(e)) => Some(format!("{}: {e}", s.name)),
                (None, None) => Some(format!("{}: no verified pulse yet", s.name)),
                (Some(_), None) => None,
            })
            .collect();
        if reasons.is_empty() {
            BeaconHealth::Up
        } else {
            BeaconHealth::Down(reasons)
        }
    }

    /// `len` secret bytes for `purpose`: the OS CSPRNG mixed with [`latest`](Self::latest)
    /// when there is one, the CSPRNG alone otherwise.
    pub fn draw(&self, purpose: &[u8], len: usize) -> Result<Drawn, DeriveError> {
        let beacon = self.latest();
        Ok(Drawn {
            bytes: derive_secret(beacon, purpose, len)?,
            provenance: beacon.map(|b| b.provenance.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::derive::purpose;
    use super::*;

    fn randomness(source: Source, index: u64) -> VerifiedRandomness {
        VerifiedRandomness {
            value: [index as u8; 64],
            provenance: Provenance {
                source,
                chain: "chain".into(),
                index,
                id: format!("pulse-{index}"),
                timestamp: "2024-01-01T00:00:00Z".into(),
            },
        }
    }

    #[test]
    fn unconfigured_serves_fallback() {
        let s = BeaconState::unconfigured();
        assert!(!s.is_configured());
        assert_eq!(s.health(), BeaconHealth::NotConfigured);
        assert!(s.latest().is_none());
        let d = s.draw(purpose::RANDOM_BYTES, 32).unwrap();
        assert_eq!(d.bytes.len(), 32);
        assert_eq!((d.source(), d.verified()), (FALLBACK_SOURCE, false));
        assert_ne!(d.bytes, s.draw(purpose::RANDOM_BYTES, 32).unwrap().bytes);
        assert_eq!(
            s.draw(purpose::RANDOM_BYTES, 0),
            Err(DeriveError::BadLength(0))
        );
    }

    #[test]
    fn verified_pulses_priority_and_failures() {
        let mut s =
            BeaconState::with_sources([("curby", Source::CurbyRng), ("nist", Source::Nist)])
                .unwrap();
        assert!(matches!(s.health(), BeaconHealth::Down(r) if r.len() == 2));
        assert_eq!(
            s.draw(purpose::CRYPTO_SEED, 16).unwrap().source(),
            FALLBACK_SOURCE
        );

        s.record_verified("nist", randomness(Source::Nist, 5))
            .unwrap();
        assert_eq!(s.latest().unwrap().provenance.source, Source::Nist);
        s.record_verified("curby", randomness(Source::CurbyRng, 9))
            .unwrap();
        assert_eq!(s.health(), BeaconHealth::Up);
        let d = s.draw(purpose::CRYPTO_SEED, 16).unwrap();
        assert_eq!((d.source(), d.verified()), ("CURBY_RNG", true));
        assert_eq!(d.provenance.unwrap().index, 9);
        // The same pulse again is not a new verified pulse.
        s.record_verified("curby", randomness(Source::CurbyRng, 9))
            .unwrap();
        assert_eq!(s.sources()[0].pulses_verified, 1);
        assert_eq!(s.sources()[1].pulses_verified, 1);
        // ... not even after a failure in between.
        s.record_failure("curby", "timeout").unwrap();
        s.record_verified("curby", randomness(Source::CurbyRng, 9))
            .unwrap();
        assert_eq!(s.sources()[0].pulses_verified, 1);

        s.record_failure("curby", "signature does not verify")
            .unwrap();
        assert_eq!(
            s.health(),
            BeaconHealth::Down(vec!["curby: signature does not verify".into()])
        );
        assert_eq!(s.latest().unwrap().provenance.source, Source::Nist);

        assert_eq!(
            s.record_verified("curby", randomness(Source::Nist, 6)),
            Err(StateError::WrongSource {
                name: "curby".into(),
                expected: Source::CurbyRng,
                got: Source::Nist
            })
        );
        assert_eq!(
            s.record_failure("x", "e"),
            Err(StateError::UnknownSource("x".into()))
        );
        assert_eq!(
            BeaconState::with_sources([("a", Source::Nist), ("a", Source::CurbyRng)]),
            Err(StateError::DuplicateName("a".into()))
        );
    }
}
