use super::*;
use crate::twine::tests::fixture;

fn cert() -> NistCertificate {
    NistCertificate::from_pem(&fixture("nist_cert_5501e3d7.pem")).unwrap()
}

fn p09() -> NistPulse {
    verify_pulse(&cert(), &fixture("nist_pulse_chain1_54609.json")).unwrap()
}

fn edit(name: &str, f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture(name)).unwrap();
    f(&mut v["pulse"]);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn fixtures_verify_and_chain() {
    let c = cert();
    assert_eq!(
        hex::encode(c.id()),
        "5501e3d72bc42f3b96e16de4dcadcb16768e109662bd16d667d5fd9aee585af31bbdc5dd4f53592276064b53dddd76c8f3604b2a41db6e09f78f82bb5d6569e7"
    );
    let prev = p09();
    let p = verify_nist(&c, &fixture("nist_pulse_chain1_54610.json"), Some(&prev)).unwrap();
    assert_eq!(p.message_len(), 813);
    let r = p.randomness();
    assert_eq!(r.hex().to_uppercase(), "274E031530B2C773494EBFD9827DF4B20BF83B65BCFC5107B97D7C307713E2FFB80C8FD3B7028F457783E88BB07BBD2BC190BC42BA3F56BA2E2F74E04D4E5E98");
    assert_eq!(r.provenance.index, 54610);
    assert_eq!(r.provenance.timestamp, "2018-08-30T17:44:00.000Z");
}

#[test]
fn every_single_byte_tamper_is_rejected() {
    let c = cert();
    let orig = fixture("nist_pulse_chain1_54610.json");
    // listValues[].uri and listValues[].type are not part of the signed message (the chaining
    // check, not the signature, is what rejects a wrong "previous" type); skip those lines and
    // whitespace. Everything else is a signed field, the signature or the output value.
    let text = String::from_utf8(orig.clone()).unwrap();
    let mut skip = vec![false; orig.len()];
    let mut off = 0;
    let mut seen_uri = false;
    for line in text.split_inclusive('\n') {
        let is_uri = line.contains("\"uri\":");
        if line.contains("\"type\":") || (is_uri && seen_uri) {
            skip[off..off + line.len()]
                .iter_mut()
                .for_each(|b| *b = true);
        }
        seen_uri |= is_uri;
        off += line.len();
    }
    let mut rejected = 0;
    for i in 0..orig.len() {
        if orig[i].is_ascii_whitespace() || skip[i] {
            continue;
        }
        let mut t = orig.clone();
        t[i] ^= 0x01;
        assert!(
            verify_pulse(&c, &t).is_err(),
            "tamper at byte {i} ({}) accepted",
            orig[i] as char
        );
        rejected += 1;
    }
    assert!(rejected > 2000);
}

#[test]
fn tampered_signed_field_is_bad_signature() {
    let t = edit("nist_pulse_chain1_54610.json", |p| {
        p["timeStamp"] = "2018-08-30T17:45:00.000Z".into()
    });
    assert_eq!(verify_pulse(&cert(), &t), Err(NistError::BadSignature));
    let t = edit("nist_pulse_chain1_54610.json", |p| {
        p["pulseIndex"] = 54611.into()
    });
    assert_eq!(verify_pulse(&cert(), &t), Err(NistError::BadSignature));
    let t = edit("nist_pulse_chain1_54610.json", |p| {
        p["listValues"][1]["value"] = p["listValues"][2]["value"].clone()
    });
    assert_eq!(verify_pulse(&cert(), &t), Err(NistError::BadSignature));
}

#[test]
fn tampered_output_value() {
    let t = edit("nist_pulse_chain1_54610.json", |p| {
        p["outputValue"] = p["localRandomValue"].clone()
    });
    assert_eq!(
        verify_pulse(&cert(), &t),
        Err(NistError::OutputValueMismatch)
    );
}

#[test]
fn tampered_signature() {
    let t = edit("nist_pulse_chain1_54610.json", |p| {
        let s = p["signatureValue"].as_str().unwrap().replacen('6', "7", 1);
        p["signatureValue"] = s.into()
    });
    assert_eq!(verify_pulse(&cert(), &t), Err(NistError::BadSignature));
    let t = edit("nist_pulse_chain1_54610.json", |p| {
        p["signatureValue"] = "00".into()
    });
    assert_eq!(verify_pulse(&cert(), &t), Err(NistError::BadSignature));
}

#[test]
fn wrong_certificate() {
    let t = edit("nist_pulse_chain1_54610.json", |p| {
        p["certificateId"] = "00".repeat(64).into()
    });
    assert!(matches!(
        verify_pulse(&cert(), &t),
        Err(NistError::CertificateMismatch { .. })
    ));
    assert!(matches!(
        NistCertificate::from_pem(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        ),
        Err(NistError::BadCertificate(_))
    ));
}

#[test]
fn swapped_previous_pulse() {
    let c = cert();
    let p10 = verify_pulse(&c, &fixture("nist_pulse_chain1_54610.json")).unwrap();
    assert_eq!(
        verify_nist(&c, &fixture("nist_pulse_chain1_54609.json"), Some(&p10)).unwrap_err(),
        NistError::IndexNotConsecutive {
            previous: 54610,
            index: 54609
        }
    );
    assert!(matches!(
        verify_nist(&c, &fixture("nist_pulse_chain1_54610.json"), Some(&p10)),
        Err(NistError::IndexNotConsecutive { .. })
    ));
}

#[test]
fn broken_chaining_fields() {
    let p10 = verify_pulse(&cert(), &fixture("nist_pulse_chain1_54610.json")).unwrap();
    let mut prev = p09();
    prev.output[0] ^= 1;
    assert_eq!(
        check_follows(&p10, &prev),
        Err(NistError::PreviousOutputMismatch)
    );
    let mut prev = p09();
    prev.precommitment[0] ^= 1;
    assert_eq!(
        check_follows(&p10, &prev),
        Err(NistError::PrecommitmentMismatch)
    );
    let mut prev = p09();
    prev.chain_index = 2;
    assert!(matches!(
        check_follows(&p10, &prev),
        Err(NistError::ChainMismatch { .. })
    ));
    let mut p = p10.clone();
    p.previous_output = None;
    assert_eq!(check_follows(&p, &p09()), Err(NistError::MissingPrevious));
}

#[test]
fn truncated_and_non_json_bodies() {
    let f = fixture("nist_pulse_chain1_54610.json");
    assert!(matches!(
        verify_pulse(&cert(), &f[..f.len() - 10]),
        Err(NistError::Malformed(_))
    ));
    assert!(matches!(
        verify_pulse(&cert(), b"not json"),
        Err(NistError::Malformed(_))
    ));
    assert!(matches!(
        verify_pulse(&cert(), b"{\"pulse\":{}}"),
        Err(NistError::Malformed(_))
    ));
    let t = edit("nist_pulse_chain1_54610.json", |p| {
        p["localRandomValue"] = "XYZ".into()
    });
    assert_eq!(
        verify_pulse(&cert(), &t),
        Err(NistError::BadHex("localRandomValue"))
    );
}
