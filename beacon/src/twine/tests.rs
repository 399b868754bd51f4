use super::*;

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/beacon/");
    std::fs::read(format!("{path}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn fixture_randomness_534323() {
    let r = verify_curby_rng(
        &fixture("curby_rng_chain.json"),
        CURBY_RNG_CHAIN_CID,
        &fixture("curby_rng_pulse_534322.json"),
        &fixture("curby_rng_pulse_534323.json"),
    )
    .unwrap();
    assert_eq!(r.hex(), "2e184d426ca97c0a751b7a3bef573527522c03247ab5d8e6cf61bd518285c7442b7b050e4c3a7298c4bf5fe5d265d3c31d89d907108bd8fd3c0e6b93f985e8fc");
    assert_eq!(r.provenance.index, 534323);
    assert_eq!(r.provenance.timestamp, "2024-10-31T20:04:00.503Z");
}

fn chain() -> TwineChain {
    TwineChain::verify(&fixture("curby_rng_chain.json"), CURBY_RNG_CHAIN_CID).unwrap()
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// Re-serialize a record after editing it, with its CID recomputed so that the CID check passes
/// and the later checks are exercised.
fn with_fresh_cid(mut v: serde_json::Value) -> Vec<u8> {
    let cid = compute_cid(&dagjson::to_ipld(&v["data"]).unwrap());
    v["cid"] = serde_json::json!({"/": cid.to_string()});
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn chain_record_checks() {
    let c = chain();
    assert_eq!(c.name(), Some("CURBy-RNG"));
    assert_eq!(c.specification(), Some("twine/1.0.x/rng/1.0.x"));
    let q = "bafyriqhijw5soalbtppuwwjbskfiriqy6swa5qd5trgbzx4nypnu7mp7iyhx7m2iin2nxnglmngvjgirzb7bvlisxq3uygoik7ozbybxnftiw";
    assert!(matches!(
        TwineChain::verify(&fixture("curby_rng_chain.json"), q),
        Err(TwineError::WrongChain { .. })
    ));
    // A pin that is not sha3-512 / dag-cbor.
    assert!(matches!(
        TwineChain::verify(
            &fixture("curby_rng_chain.json"),
            "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
        ),
        Err(TwineError::UnsupportedCid { .. })
    ));
}

#[test]
fn flipped_content_byte_is_cid_mismatch() {
    let s = String::from_utf8(fixture("curby_rng_pulse_534323.json")).unwrap();
    let t = s.replace("20:04:00.503Z", "20:04:00.504Z");
    assert_ne!(s, t);
    let prev = verify_pulse(&chain(), &fixture("curby_rng_pulse_534322.json")).unwrap();
    assert!(matches!(
        verify_rng_pulse(&chain(), t.as_bytes(), &prev),
        Err(TwineError::CidMismatch { .. })
    ));
}

#[test]
fn every_single_byte_tamper_is_rejected() {
    let c = chain();
    let orig = fixture("curby_rng_pulse_534322.json");
    assert!(verify_pulse(&c, &orig).is_ok());
    for i in 0..orig.len() {
        let mut t = orig.clone();
        t[i] ^= 0x01;
        assert!(verify_pulse(&c, &t).is_err(), "tamper at byte {i} accepted");
    }
}

#[test]
fn content_tamper_with_fresh_cid_is_payload_mismatch() {
    let mut v = json("curby_rng_pulse_534323.json");
    v["data"]["content"]["payload"]["timestamp"] = "2024-10-31T20:04:00.504Z".into();
    assert_eq!(
        verify_pulse(&chain(), &with_fresh_cid(v)),
        Err(TwineError::SignaturePayloadMismatch)
    );
}

#[test]
fn bad_signature_bytes() {
    let mut v = json("curby_rng_pulse_534323.json");
    let sig = v["data"]["signature"].as_str().unwrap().to_string();
    let (head, s) = sig.rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(s).unwrap();
    raw[10] ^= 0x80;
    v["data"]["signature"] = format!("{head}.{}", URL_SAFE_NO_PAD.encode(raw)).into();
    assert_eq!(
        verify_pulse(&chain(), &with_fresh_cid(v)),
        Err(TwineError::BadSignature)
    );
}

#[test]
fn signature_of_another_pulse_is_rejected() {
    let mut v = json("curby_rng_pulse_534323.json");
    v["data"]["signature"] = json("curby_rng_pulse_534322.json")["data"]["signature"].clone();
    assert_eq!(
        verify_pulse(&chain(), &with_fresh_cid(v)),
        Err(TwineError::SignaturePayloadMismatch)
    );
}

#[test]
fn jws_header_must_be_rs256() {
    let mut v = json("curby_rng_pulse_534323.json");
    let sig = v["data"]["signature"].as_str().unwrap().to_string();
    let rest = sig.split_once('.').unwrap().1;
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
    v["data"]["signature"] = format!("{h}.{rest}").into();
    assert!(matches!(
        verify_pulse(&chain(), &with_fresh_cid(v.clone())),
        Err(TwineError::UnsupportedJwsHeader(_))
    ));
    v["data"]["signature"] = "abc.def".into();
    assert!(matches!(
        verify_pulse(&chain(), &with_fresh_cid(v)),
        Err(TwineError::MalformedJws(_))
    ));
}

#[test]
fn pulse_of_another_chain_is_wrong_chain() {
    // CURBy-Q is signed with the very same RSA key: only the chain pin tells them apart.
    let q = "bafyriqhijw5soalbtppuwwjbskfiriqy6swa5qd5trgbzx4nypnu7mp7iyhx7m2iin2nxnglmngvjgirzb7bvlisxq3uygoik7ozbybxnftiw";
    let qchain = TwineChain::verify(&fixture("curbyq_chain.json"), q).unwrap();
    assert!(matches!(
        verify_pulse(&qchain, &fixture("curby_rng_pulse_534323.json")),
        Err(TwineError::WrongChain { .. })
    ));
}

#[test]
fn swapped_previous_pulse_is_rejected() {
    let c = chain();
    let p23 = verify_pulse(&c, &fixture("curby_rng_pulse_534323.json")).unwrap();
    assert_eq!(
        verify_rng_pulse(&c, &fixture("curby_rng_pulse_534322.json"), &p23).unwrap_err(),
        TwineError::IndexNotConsecutive {
            previous: 534323,
            index: 534322
        }
    );
    // A pulse is not its own predecessor either.
    assert!(matches!(
        verify_rng_pulse(&c, &fixture("curby_rng_pulse_534323.json"), &p23),
        Err(TwineError::IndexNotConsecutive { .. })
    ));
}

#[test]
fn truncated_and_non_json_bodies() {
    let c = chain();
    let f = fixture("curby_rng_pulse_534323.json");
    assert!(matches!(
        verify_pulse(&c, &f[..f.len() / 2]),
        Err(TwineError::NotJson(_))
    ));
    assert!(matches!(
        verify_pulse(&c, b"<html>502</html>"),
        Err(TwineError::NotJson(_))
    ));
    assert!(matches!(
        verify_pulse(&c, b"[]"),
        Err(TwineError::Malformed(_))
    ));
    assert!(matches!(verify_pulse(&c, b""), Err(TwineError::NotJson(_))));
}

/// A test chain signed with a key generated here, to exercise the link and precommitment checks
/// with otherwise valid, correctly signed pulses.
mod synthetic {
    use super::*;
    use rsa::pkcs1v15::SigningKey;
    use rsa::signature::{SignatureEncoding, Signer};
    use rsa::traits::PublicKeyParts;
    use rsa::RsaPrivateKey;
    use serde_json::{json, Value};
    use std::sync::OnceLock;

    fn key() -> &'static RsaPrivateKey {
        static K: OnceLock<RsaPrivateKey> = OnceLock::new();
        K.get_or_init(|| RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap())
    }

    fn b64bytes(b: &[u8]) -> Value {
        use base64::engine::general_purpose::STANDARD_NO_PAD;
        json!({"/": {"bytes": STANDARD_NO_PAD.encode(b)}})
    }

    fn record(content: Value) -> (Value, Cid) {
        let ipld = dagjson::to_ipld(&content).unwrap();
        let payload = sha3_multihash(&serde_ipld_dagcbor::to_vec(&ipld).unwrap());
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let sig = SigningKey::<Sha256>::new(key().clone()).sign(input.as_bytes());
        let data = json!({"content": content, "signature": format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))});
        let cid = compute_cid(&dagjson::to_ipld(&data).unwrap());
        (json!({"cid": {"/": cid.to_string()}, "data": data}), cid)
    }

    fn test_chain() -> (Vec<u8>, Cid) {
        let k = key().to_public_key();
        let (v, cid) = record(json!({
            "key": {"alg": "RS256", "e": URL_SAFE_NO_PAD.encode(k.e().to_bytes_be()),
                    "kty": "RSA", "n": URL_SAFE_NO_PAD.encode(k.n().to_bytes_be())},
            "links_radix": 32, "meta": {"name": "test"}, "mixins": [], "source": "test",
            "specification": "twine/1.0.x/rng/1.0.x"
        }));
        (serde_json::to_vec(&v).unwrap(), cid)
    }

    fn pulse(chain: &Cid, index: u64, links: &[Cid], pre: &[u8], salt: &[u8]) -> (Vec<u8>, Cid) {
        let links: Vec<Value> = links.iter().map(|c| json!({"/": c.to_string()})).collect();
        let (v, cid) = record(json!({
            "chain": {"/": chain.to_string()}, "index": index, "links": links, "mixins": [],
            "payload": {"pre": b64bytes(pre), "salt": b64bytes(salt), "timestamp": "2024-01-01T00:00:00Z"},
            "source": "test"
        }));
        (serde_json::to_vec(&v).unwrap(), cid)
    }

    /// Pulse 0 precommits to r; pulse 1 must reveal salt = r XOR digest(CID0).
    fn setup() -> (TwineChain, TwinePulse, Cid, [u8; 64]) {
        let (cj, ccid) = test_chain();
        let chain = TwineChain::verify(&cj, &ccid.to_string()).unwrap();
        let r = [7u8; 64];
        let (p0, _) = pulse(&ccid, 0, &[], &sha3_multihash(&r), &[0u8; 64]);
        let p0 = verify_pulse(&chain, &p0).unwrap();
        (chain, p0, ccid, r)
    }

    fn salt_for(r: &[u8; 64], prev: &TwinePulse) -> Vec<u8> {
        r.iter()
            .zip(prev.cid_digest())
            .map(|(a, b)| a ^ b)
            .collect()
    }

    #[test]
    fn valid_synthetic_chain() {
        let (chain, p0, ccid, r) = setup();
        let (p1, cid1) = pulse(&ccid, 1, &[*p0.cid()], &[0x14, 0x40], &salt_for(&r, &p0));
        let (v1, rand) = verify_rng_pulse(&chain, &p1, &p0).unwrap();
        assert_eq!(v1.cid(), &cid1);
        assert_eq!(&rand.value[..], cid1.hash().digest());
    }

    #[test]
    fn broken_link() {
        let (chain, p0, ccid, r) = setup();
        let (p1, _) = pulse(&ccid, 1, &[ccid], &[0x14, 0x40], &salt_for(&r, &p0));
        assert!(matches!(
            verify_rng_pulse(&chain, &p1, &p0),
            Err(TwineError::BrokenLink { .. })
        ));
        let (p1, _) = pulse(&ccid, 1, &[], &[0x14, 0x40], &salt_for(&r, &p0));
        assert!(matches!(
            verify_rng_pulse(&chain, &p1, &p0),
            Err(TwineError::BrokenLink { .. })
        ));
    }

    #[test]
    fn broken_precommitment() {
        let (chain, p0, ccid, r) = setup();
        let mut salt = salt_for(&r, &p0);
        salt[0] ^= 1;
        let (p1, _) = pulse(&ccid, 1, &[*p0.cid()], &[0x14, 0x40], &salt);
        assert_eq!(
            verify_rng_pulse(&chain, &p1, &p0).unwrap_err(),
            TwineError::PrecommitmentMismatch
        );
    }

    #[test]
    fn foreign_key_is_bad_signature() {
        // A pulse signed by the test key but claiming the CURBy-RNG chain.
        let real = chain();
        let (p, _) = pulse(real.cid(), 5, &[], &[0x14, 0x40], &[0u8; 64]);
        assert_eq!(verify_pulse(&real, &p), Err(TwineError::BadSignature));
    }
}
