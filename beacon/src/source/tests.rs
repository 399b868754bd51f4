use super::*;
use crate::twine::tests::fixture;

fn curby_source() -> BeaconSource {
    BeaconSource {
        name: "curby".into(),
        kind: SourceKind::CurbyRng,
        base_url: "https://127.0.0.1:8443".into(),
        chain_cid: None,
        certificate: None,
        cache_capacity: DEFAULT_CACHE_CAPACITY,
        tls_root: None,
    }
}

fn breaker() -> CircuitBreaker {
    CircuitBreaker::new(BreakerConfig {
        failure_threshold: 2,
        open_base_ms: 1_000,
        open_max_ms: 3_000,
    })
    .unwrap()
}

fn curby_poller(capacity: usize) -> SourcePoller {
    let chain = TwineChain::verify(&fixture("curby_rng_chain.json"), CURBY_RNG_CHAIN_CID).unwrap();
    SourcePoller::curby_rng(chain, capacity, breaker())
}

fn nist_poller() -> SourcePoller {
    let cert = NistCertificate::from_pem(&fixture("nist_cert_5501e3d7.pem")).unwrap();
    SourcePoller::nist(cert, 4, breaker())
}

#[test]
fn config_validation() {
    assert_eq!(curby_source().validate(), Ok(()));
    assert_eq!(curby_source().pinned_chain_cid(), CURBY_RNG_CHAIN_CID);
    let nist = BeaconSource {
        name: "nist".into(),
        kind: SourceKind::Nist,
        certificate: Some("nist.pem".into()),
        ..curby_source()
    };
    assert_eq!(nist.validate(), Ok(()));
    let parsed: BeaconSource = serde_json::from_str(
        r#"{"name":"curby","kind":"CURBy-RNG","base_url":"https://127.0.0.1:8443","chain_cid":"bafy"}"#,
    )
    .unwrap();
    assert_eq!(parsed.kind, SourceKind::CurbyRng);
    assert_eq!(parsed.pinned_chain_cid(), "bafy");
    assert_eq!(parsed.cache_capacity, DEFAULT_CACHE_CAPACITY);
    assert!(serde_json::from_str::<BeaconSource>(
        r#"{"name":"x","kind":"CURBy-Q","base_url":"https://a"}"#
    )
    .is_err());

    let bad = |f: &dyn Fn(&mut BeaconSource)| {
        let mut s = curby_source();
        f(&mut s);
        s.validate().unwrap_err()
    };
    assert_eq!(bad(&|s| s.name = " ".into()), ConfigError::EmptyName);
    for url in [
        "http://127.0.0.1",
        "https://",
        "https:///x",
        "ftp://a",
        "https://a b",
    ] {
        assert!(
            matches!(
                bad(&|s| s.base_url = url.into()),
                ConfigError::BadUrl { .. }
            ),
            "{url}"
        );
    }
    assert!(matches!(
        bad(&|s| s.certificate = Some("c.pem".into())),
        ConfigError::Pin { .. }
    ));
    assert!(matches!(
        bad(&|s| s.chain_cid = Some("".into())),
        ConfigError::Pin { .. }
    ));
    assert!(matches!(
        bad(&|s| s.kind = SourceKind::Nist),
        ConfigError::Pin { .. }
    ));
    assert!(matches!(
        bad(&|s| {
            s.kind = SourceKind::Nist;
            s.chain_cid = Some("bafy".into());
        }),
        ConfigError::Pin { .. }
    ));
    for capacity in [0, MAX_CACHE_CAPACITY + 1] {
        assert!(matches!(
            bad(&|s| s.cache_capacity = capacity),
            ConfigError::Capacity { .. }
        ));
    }
}

#[test]
fn breaker_bounds() {
    assert_eq!(BreakerConfig::default().validate(), Ok(()));
    let d = BreakerConfig::default();
    for c in [
        BreakerConfig {
            failure_threshold: 0,
            ..d
        },
        BreakerConfig {
            failure_threshold: 101,
            ..d
        },
        BreakerConfig {
            open_base_ms: 999,
            ..d
        },
        BreakerConfig {
            open_base_ms: 3_600_001,
            open_max_ms: 3_600_001,
            ..d
        },
        BreakerConfig {
            open_max_ms: d.open_base_ms - 1,
            ..d
        },
        BreakerConfig {
            open_max_ms: 86_400_001,
            ..d
        },
    ] {
        assert!(CircuitBreaker::new(c).is_err(), "{c:?}");
    }
}

#[test]
fn curby_rng_steps() {
    let mut p = curby_poller(DEFAULT_CACHE_CAPACITY);
    assert!(p.due(0));
    let first = fixture("curby_rng_pulse_534322.json");
    let second = fixture("curby_rng_pulse_534323.json");
    assert_eq!(
        p.step(0, Ok(&first)),
        Ok(PollOutcome::Anchored { index: 534322 })
    );
    assert!(p.latest_randomness().is_none(), "an anchor is never served");
    assert!(!p.due(1), "follows the 60 s cadence");
    assert!(p.due(PULSE_PERIOD_MS));
    assert_eq!(
        p.step(PULSE_PERIOD_MS, Ok(&first)),
        Ok(PollOutcome::Unchanged { index: 534322 })
    );
    let Ok(PollOutcome::Verified(r)) = p.step(2 * PULSE_PERIOD_MS, Ok(&second)) else {
        panic!("534323 does not verify");
    };
    assert_eq!(r.hex(), "2e184d426ca97c0a751b7a3bef573527522c03247ab5d8e6cf61bd518285c7442b7b050e4c3a7298c4bf5fe5d265d3c31d89d907108bd8fd3c0e6b93f985e8fc");
    assert_eq!(p.latest_randomness(), Some(&r));
    assert_eq!(p.cached(), 2);
    // A lying beacon serving an older pulse.
    assert_eq!(
        p.step(3 * PULSE_PERIOD_MS, Ok(&first)),
        Err(PollError::Stale {
            index: 534322,
            latest: 534323
        })
    );
    assert_eq!(p.breaker().failures(), 1);
    assert_eq!(
        p.latest_randomness(),
        Some(&r),
        "a failure keeps the verified pulse"
    );
}

#[test]
fn cache_respects_its_bound() {
    let mut p = curby_poller(1);
    p.step(0, Ok(&fixture("curby_rng_pulse_534322.json")))
        .unwrap();
    p.step(1, Ok(&fixture("curby_rng_pulse_534323.json")))
        .unwrap();
    assert_eq!(p.cached(), 1);
    assert!(p.latest_randomness().is_some());
}

#[test]
fn nist_steps() {
    let mut p = nist_poller();
    let first = fixture("nist_pulse_chain1_54609.json");
    let second = fixture("nist_pulse_chain1_54610.json");
    assert_eq!(
        p.step(0, Ok(&first)),
        Ok(PollOutcome::Anchored { index: 54609 })
    );
    assert_eq!(
        p.step(1, Ok(&first)),
        Ok(PollOutcome::Unchanged { index: 54609 })
    );
    let Ok(PollOutcome::Verified(r)) = p.step(2, Ok(&second)) else {
        panic!("54610 does not verify");
    };
    assert_eq!(r.provenance.index, 54610);
    assert_eq!(
        p.step(3, Ok(&first)),
        Err(PollError::Stale {
            index: 54609,
            latest: 54610
        })
    );
    // A CURBy pulse served by a NIST source.
    assert!(matches!(
        p.step(4, Ok(&fixture("curby_rng_pulse_534323.json"))),
        Err(PollError::Nist(_))
    ));
}

#[test]
fn circuit_breaker_opens_backs_off_and_closes() {
    let mut p = curby_poller(4);
    assert_eq!(
        p.step(0, Err("timeout".into())),
        Err(PollError::Fetch("timeout".into()))
    );
    assert!(p.due(0), "one failure under the threshold");
    // Not JSON / truncated: rejected by the verifier, counted.
    assert!(matches!(
        p.step(10, Ok(b"{\"cid\"")),
        Err(PollError::Twine(_))
    ));
    assert!(!p.due(10));
    assert_eq!(
        p.step(500, Ok(&fixture("curby_rng_pulse_534322.json"))),
        Err(PollError::CircuitOpen { retry_at_ms: 1_010 })
    );
    assert_eq!(p.cached(), 0, "nothing is verified while open");
    // Half-open: one trial; its failure reopens for twice as long.
    assert!(p.due(1_010));
    assert!(p.step(1_010, Err("refused".into())).is_err());
    assert_eq!(p.breaker().open_until(1_010), Some(3_010));
    assert!(p.step(3_010, Err("refused".into())).is_err());
    assert_eq!(
        p.breaker().open_until(3_010),
        Some(6_010),
        "capped at open_max_ms"
    );
    // A verified pulse closes it.
    assert_eq!(
        p.step(6_010, Ok(&fixture("curby_rng_pulse_534322.json"))),
        Ok(PollOutcome::Anchored { index: 534322 })
    );
    assert_eq!(p.breaker().failures(), 0);
    assert_eq!(p.breaker().open_until(6_010), None);
}
