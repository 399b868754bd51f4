use super::*;
use crate::twine::tests::fixture;

fn qchain() -> TwineChain {
    TwineChain::verify(&fixture("curbyq_chain.json"), CURBY_Q_CHAIN_CID).unwrap()
}

fn full() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    (
        fixture("bell_chain.json"),
        fixture("bell_pulse_88.json"),
        fixture("curbyq_round42_params.txt"),
    )
}

#[test]
fn round42_verifies_with_everything() {
    let (bc, bp, params) = full();
    let r = verify_round(
        &qchain(),
        &fixture("curbyq_round42.json"),
        RoundExtras {
            bell: Some((&bc, BELL_CHAIN_CID, &bp)),
            params: Some(&params),
            data: None,
        },
    )
    .unwrap();
    assert_eq!(r.round, 42);
    assert_eq!(r.randomness.provenance.index, 128);
    assert_eq!(r.randomness.provenance.source, Source::CurbyQ);
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode("gqBsYv4DaBU7ql4F8sVAe1e/jnEFpFENjYV8FR7VeOMy34+eEA74Q+gBcE2IZUv7fZTPIU99hSf9EdOM/u0ygw")
        .unwrap();
    assert_eq!(&r.randomness.value[..], &expected[..]);
    assert_eq!(r.is_quantum, Some(false));
    assert!(r.params_checked && !r.data_checked);
    let bell = r.bell.unwrap();
    assert_eq!(bell.index, 88);
    assert_eq!(bell.status, Some(0));
    assert_eq!(hex::encode(&r.params_hash), "8ece595c1a59f8715e2e689730def646a1ec25d7a151049fbd5347edd58e905165dd2429d86436901cf485f2af6fe4c48c7deea165a76c18bf9a820c8367dacf");
}

#[test]
fn round42_verifies_alone() {
    let r = verify_round(
        &qchain(),
        &fixture("curbyq_round42.json"),
        RoundExtras::default(),
    )
    .unwrap();
    assert!(r.bell.is_none() && !r.params_checked);
}

#[test]
fn wrong_chain_pin() {
    // The CURBy-RNG chain has the same key: only the pin rejects the round.
    let rng =
        TwineChain::verify(&fixture("curby_rng_chain.json"), twine::CURBY_RNG_CHAIN_CID).unwrap();
    assert!(matches!(
        verify_round(
            &rng,
            &fixture("curbyq_round42.json"),
            RoundExtras::default()
        ),
        Err(CurbyQError::Pulse {
            stage: "request",
            source: TwineError::WrongChain { .. }
        })
    ));
}

#[test]
fn tampered_params_text() {
    let mut params = fixture("curbyq_round42_params.txt");
    params[10] ^= 1;
    assert_eq!(
        verify_round(
            &qchain(),
            &fixture("curbyq_round42.json"),
            RoundExtras {
                params: Some(&params),
                ..Default::default()
            }
        )
        .unwrap_err(),
        CurbyQError::ParamsHashMismatch
    );
    assert_eq!(
        verify_round(
            &qchain(),
            &fixture("curbyq_round42.json"),
            RoundExtras {
                data: Some(b"x"),
                ..Default::default()
            }
        )
        .unwrap_err(),
        CurbyQError::DataHashMismatch
    );
}

#[test]
fn reordered_or_short_round() {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture("curbyq_round42.json")).unwrap();
    v.as_array_mut().unwrap().swap(1, 2);
    assert!(matches!(
        verify_round(
            &qchain(),
            &serde_json::to_vec(&v).unwrap(),
            RoundExtras::default()
        ),
        Err(CurbyQError::Stage { position: 1, .. })
    ));
    v.as_array_mut().unwrap().pop();
    assert!(matches!(
        verify_round(
            &qchain(),
            &serde_json::to_vec(&v).unwrap(),
            RoundExtras::default()
        ),
        Err(CurbyQError::NotRound(_))
    ));
    assert!(matches!(
        verify_round(&qchain(), b"[{", RoundExtras::default()),
        Err(CurbyQError::NotRound(_))
    ));
}

#[test]
fn tampered_round_pulse() {
    let s = String::from_utf8(fixture("curbyq_round42.json")).unwrap();
    let t = s.replacen("\"nBitsOut\": 512", "\"nBitsOut\": 513", 1);
    assert_ne!(s, t);
    assert!(matches!(
        verify_round(&qchain(), t.as_bytes(), RoundExtras::default()),
        Err(CurbyQError::Pulse {
            stage: "request",
            source: TwineError::CidMismatch { .. }
        })
    ));
}

#[test]
fn bell_pulse_checks() {
    let (bc, bp, _) = full();
    // Wrong Bell pin.
    assert!(matches!(
        verify_round(
            &qchain(),
            &fixture("curbyq_round42.json"),
            RoundExtras {
                bell: Some((&bc, CURBY_Q_CHAIN_CID, &bp)),
                ..Default::default()
            }
        ),
        Err(CurbyQError::Bell(TwineError::WrongChain { .. }))
    ));
    // A tampered Bell pulse.
    let mut t = bp.clone();
    let pos = t.windows(6).position(|w| w == b"result").unwrap();
    t[pos] = b'R';
    assert!(matches!(
        verify_round(
            &qchain(),
            &fixture("curbyq_round42.json"),
            RoundExtras {
                bell: Some((&bc, BELL_CHAIN_CID, &t)),
                ..Default::default()
            }
        ),
        Err(CurbyQError::Bell(TwineError::CidMismatch { .. }))
    ));
    // A CURBy-Q pulse offered as the Bell pulse.
    let arr: serde_json::Value = serde_json::from_slice(&fixture("curbyq_round42.json")).unwrap();
    let req = serde_json::to_vec(&arr[0]).unwrap();
    assert!(matches!(
        verify_round(
            &qchain(),
            &fixture("curbyq_round42.json"),
            RoundExtras {
                bell: Some((&bc, BELL_CHAIN_CID, &req)),
                ..Default::default()
            }
        ),
        Err(CurbyQError::Bell(TwineError::WrongChain { .. }))
    ));
}
