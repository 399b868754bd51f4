//! `aurigraph beacon verify-*`: offline verification of saved beacon pulses with the same
//! verifiers the node uses (`aurigraph_beacon`). No network: the operator fetches the
//! chain record, pulses or certificate (or takes them from an archive) and passes the files.
//!
//! On success the 64-byte randomness is printed on stdout as lowercase hex (one line, so a
//! script can capture it) and what was checked on stderr; on failure the exit status is
//! non-zero and stderr says which check failed.

use aurigraph_beacon::curbyq::{self, RoundExtras, BELL_CHAIN_CID, CURBY_Q_CHAIN_CID};
use aurigraph_beacon::nist::{self, NistCertificate};
use aurigraph_beacon::twine::{self, TwineChain, CURBY_RNG_CHAIN_CID};
use std::path::{Path, PathBuf};

/// Upper bound of an input file: pulses and chain records are a few KiB, a round three
/// pulses; anything far larger is not a beacon document.
const INPUT_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Verify saved randomness-beacon pulses offline (no network).
#[derive(clap::Subcommand, Debug, Clone)]
// The subcommand names (`verify-curby`, …) are part of the CLI contract.
#[allow(clippy::enum_variant_names)]
pub enum BeaconCommand {
    /// Verify a CURBy-RNG pulse (Twine v1): the chain record against the pinned chain CID,
    /// both pulses' CIDs and RS256 signatures, `links[0]` chaining and the precommitment of
    /// PREV. Prints the pulse's randomness (the SHA3-512 digest in its CID).
    VerifyCurby {
        /// The chain record (`GET {base}/chains/{chainCid}`), JSON as served.
        #[arg(long, value_name = "FILE")]
        chain: PathBuf,
        /// The pulse to verify (JSON as served).
        #[arg(long, value_name = "FILE")]
        pulse: PathBuf,
        /// The pulse before it (index - 1), whose precommitment the pulse opens.
        #[arg(long, value_name = "FILE")]
        prev: PathBuf,
        /// The pinned chain CID [default: the CURBy-RNG chain].
        #[arg(long, value_name = "CID", default_value = CURBY_RNG_CHAIN_CID)]
        chain_cid: String,
    },
    /// Verify a NIST Beacon 2.0 pulse: the signed message, the RSA PKCS#1 v1.5 / SHA-512
    /// signature against the pinned certificate (matched by certificateId) and outputValue;
    /// with --prev also the `previous` chaining and the precommitment. Prints outputValue.
    VerifyNist {
        /// The pulse to verify (JSON as served, `{"pulse":{…}}`).
        #[arg(long, value_name = "FILE")]
        pulse: PathBuf,
        /// The pulse before it (same chain, index - 1).
        #[arg(long, value_name = "FILE")]
        prev: Option<PathBuf>,
        /// The pinned signing certificate (PEM).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
    },
    /// Verify a CURBy-Q round (the Bell-test-certified source): its request, precommit and
    /// randomness pulses as Twine pulses of the pinned CURBy-Q chain, their stages, round
    /// numbers and references; with --params the paramsHash; with --data the dataHash; with
    /// --bell-chain and --bell-pulse the Bell experiment chain's response to the request.
    /// Prints the round's randomness. The extractor itself is not re-run.
    VerifyCurbyq {
        /// The CURBy-Q chain record (JSON as served).
        #[arg(long, value_name = "FILE")]
        chain: PathBuf,
        /// The round: a JSON array of its three pulses (request, precommit, randomness).
        #[arg(long, value_name = "FILE")]
        round: PathBuf,
        /// The Bell experiment chain record (with --bell-pulse).
        #[arg(long, value_name = "FILE", requires = "bell_pulse")]
        bell_chain: Option<PathBuf>,
        /// The Bell chain's response pulse that references the round's request.
        #[arg(long, value_name = "FILE", requires = "bell_chain")]
        bell_pulse: Option<PathBuf>,
        /// The params text whose SHA3-512 is the request's paramsHash.
        #[arg(long, value_name = "FILE")]
        params: Option<PathBuf>,
        /// The Bell-test data whose SHA3-512 is the round's dataHash.
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// The pinned CURBy-Q chain CID [default: the CURBy-Q chain].
        #[arg(long, value_name = "CID", default_value = CURBY_Q_CHAIN_CID)]
        chain_cid: String,
        /// The pinned Bell chain CID [default: the Bell experiment chain].
        #[arg(long, value_name = "CID", default_value = BELL_CHAIN_CID)]
        bell_chain_cid: String,
    },
}

/// Which check failed, on which file.
#[derive(Debug, thiserror::Error)]
pub enum BeaconError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: larger than {INPUT_BYTES_MAX} bytes: not a beacon document", .0.display())]
    TooLarge(PathBuf),
    /// A verifier refused the document (`what`: chain record, pulse, certificate, round...).
    #[error("{what} {}: {reason}", path.display())]
    Refused {
        what: &'static str,
        path: PathBuf,
        reason: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A verifier's error as a [`BeaconError::Refused`] of `what` in `path`.
fn refused<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(E) -> BeaconError {
    let path = path.to_path_buf();
    move |e| BeaconError::Refused {
        what,
        path,
        reason: Box::new(e),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, BeaconError> {
    use std::io::Read;
    let failed = |source| BeaconError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(failed)?;
    let mut bytes = Vec::new();
    file.take(INPUT_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > INPUT_BYTES_MAX {
        return Err(BeaconError::TooLarge(path.to_path_buf()));
    }
    Ok(bytes)
}

fn read_opt(path: &Option<PathBuf>) -> Result<Option<Vec<u8>>, BeaconError> {
    path.as_deref().map(read).transpose()
}

/// What a successful verification prints.
struct Verified {
    randomness_hex: String,
    checked: Vec<String>,
}

/// Runs the command: the randomness on stdout, what was checked on stderr.
pub fn run(command: BeaconCommand) -> Result<(), BeaconError> {
    let verified = verify(&command)?;
    for line in &verified.checked {
        eprintln!("verified: {line}");
    }
    println!("{}", verified.randomness_hex);
    Ok(())
}

fn verify(command: &BeaconCommand) -> Result<Verified, BeaconError> {
    match command {
        BeaconCommand::VerifyCurby {
            chain,
            pulse,
            prev,
            chain_cid,
        } => {
            let chain_record = TwineChain::verify(&read(chain)?, chain_cid)
                .map_err(refused("chain record", chain))?;
            let prev_pulse = twine::verify_pulse(&chain_record, &read(prev)?)
                .map_err(refused("previous pulse", prev))?;
            let (p, randomness) =
                twine::verify_rng_pulse(&chain_record, &read(pulse)?, &prev_pulse)
                    .map_err(refused("pulse", pulse))?;
            Ok(Verified {
                randomness_hex: randomness.hex(),
                checked: vec![
                    format!("chain record matches the pinned CID {chain_cid}"),
                    format!(
                        "pulses {} and {}: CIDs recomputed (DAG-CBOR, SHA3-512), RS256 \
                         signatures by the chain key",
                        prev_pulse.index(),
                        p.index()
                    ),
                    format!(
                        "pulse {} links to pulse {} and opens its precommitment",
                        p.index(),
                        prev_pulse.index()
                    ),
                    format!("randomness = digest of CID {}", p.cid()),
                ],
            })
        }
        BeaconCommand::VerifyNist { pulse, prev, cert } => {
            let certificate =
                NistCertificate::from_pem(&read(cert)?).map_err(refused("certificate", cert))?;
            let prev_pulse = match prev {
                Some(path) => Some(
                    nist::verify_pulse(&certificate, &read(path)?)
                        .map_err(refused("previous pulse", path))?,
                ),
                None => None,
            };
            let p = nist::verify_nist(&certificate, &read(pulse)?, prev_pulse.as_ref())
                .map_err(refused("pulse", pulse))?;
            let mut checked = vec![format!(
                "pulse {} of chain {}: signed message rebuilt ({} bytes), RSA PKCS#1 v1.5 \
                 SHA-512 signature by certificate {}, outputValue recomputed",
                p.pulse_index(),
                p.chain_index(),
                p.message_len(),
                hex::encode(certificate.id())
            )];
            match &prev_pulse {
                Some(prev) => checked.push(format!(
                    "chains to pulse {}: previous = its outputValue, its precommitment opened",
                    prev.pulse_index()
                )),
                None => checked
                    .push("chaining and precommitment NOT checked (no --prev given)".to_string()),
            }
            Ok(Verified {
                randomness_hex: hex::encode(p.output_value()),
                checked,
            })
        }
        BeaconCommand::VerifyCurbyq {
            chain,
            round,
            bell_chain,
            bell_pulse,
            params,
            data,
            chain_cid,
            bell_chain_cid,
        } => {
            let chain_record = TwineChain::verify(&read(chain)?, chain_cid)
                .map_err(refused("CURBy-Q chain record", chain))?;
            let (bell_chain, bell_pulse) = (read_opt(bell_chain)?, read_opt(bell_pulse)?);
            let (params, data) = (read_opt(params)?, read_opt(data)?);
            let extras = RoundExtras {
                bell: bell_chain
                    .as_deref()
                    .zip(bell_pulse.as_deref())
                    .map(|(c, p)| (c, bell_chain_cid.as_str(), p)),
                params: params.as_deref(),
                data: data.as_deref(),
            };
            let r = curbyq::verify_round(&chain_record, &read(round)?, extras)
                .map_err(refused("round", round))?;
            let mut checked = vec![
                format!("CURBy-Q chain record matches the pinned CID {chain_cid}"),
                format!(
                    "round {}: request, precommit and randomness pulses signed by the chain, \
                     stages and references consistent (randomness pulse {})",
                    r.round, r.randomness.provenance.index
                ),
            ];
            checked.push(if r.params_checked {
                "paramsHash = SHA3-512(params text)".to_string()
            } else {
                "paramsHash NOT checked (no --params)".to_string()
            });
            checked.push(if r.data_checked {
                "dataHash = SHA3-512(data)".to_string()
            } else {
                "dataHash NOT checked (no --data)".to_string()
            });
            checked.push(match &r.bell {
                Some(bell) => format!(
                    "Bell chain pulse {} (status {:?}) responds to the request",
                    bell.index, bell.status
                ),
                None => "Bell response NOT checked (no --bell-chain/--bell-pulse)".to_string(),
            });
            checked.push("the extractor itself is not re-run".to_string());
            Ok(Verified {
                randomness_hex: r.randomness.hex(),
                checked,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../beacon/tests/fixtures/beacon")
            .join(name)
    }

    const CURBY_534323: &str = "2e184d426ca97c0a751b7a3bef573527522c03247ab5d8e6cf61bd518285c7442b7b050e4c3a7298c4bf5fe5d265d3c31d89d907108bd8fd3c0e6b93f985e8fc";

    fn curby(pulse: &str, prev: &str, chain_cid: &str) -> BeaconCommand {
        BeaconCommand::VerifyCurby {
            chain: fixture("curby_rng_chain.json"),
            pulse: fixture(pulse),
            prev: fixture(prev),
            chain_cid: chain_cid.into(),
        }
    }

    #[test]
    fn curby_fixture_verifies_and_a_swapped_prev_or_wrong_pin_does_not() {
        let (a, b) = ("curby_rng_pulse_534322.json", "curby_rng_pulse_534323.json");
        let ok = verify(&curby(b, a, CURBY_RNG_CHAIN_CID)).unwrap();
        assert_eq!(ok.randomness_hex, CURBY_534323);
        let err = verify(&curby(a, b, CURBY_RNG_CHAIN_CID)).err().unwrap();
        let err = err.to_string();
        assert!(err.contains("curby_rng_pulse_534322.json"), "{err}");
        let err = verify(&curby(b, a, CURBY_Q_CHAIN_CID))
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("chain record"), "{err}");
    }

    fn nist(prev: Option<&str>, cert: &str) -> BeaconCommand {
        BeaconCommand::VerifyNist {
            pulse: fixture("nist_pulse_chain1_54610.json"),
            prev: prev.map(fixture),
            cert: fixture(cert),
        }
    }

    #[test]
    fn nist_fixture_verifies_with_and_without_prev() {
        let cert = "nist_cert_5501e3d7.pem";
        let with_prev = verify(&nist(Some("nist_pulse_chain1_54609.json"), cert)).unwrap();
        assert_eq!(with_prev.randomness_hex.len(), 128);
        let alone = verify(&nist(None, cert)).unwrap();
        assert_eq!(alone.randomness_hex, with_prev.randomness_hex);
        assert!(alone.checked.iter().any(|c| c.contains("NOT checked")));
        let err = verify(&nist(None, "curby_rng_chain.json"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("certificate"), "{err}");
        let err = verify(&nist(Some("nist_pulse_chain1_54610.json"), cert))
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("pulse"), "{err}");
    }

    fn curbyq(params: &str) -> BeaconCommand {
        BeaconCommand::VerifyCurbyq {
            chain: fixture("curbyq_chain.json"),
            round: fixture("curbyq_round42.json"),
            bell_chain: Some(fixture("bell_chain.json")),
            bell_pulse: Some(fixture("bell_pulse_88.json")),
            params: Some(fixture(params)),
            data: None,
            chain_cid: CURBY_Q_CHAIN_CID.into(),
            bell_chain_cid: BELL_CHAIN_CID.into(),
        }
    }

    #[test]
    fn curbyq_fixture_verifies_with_bell_and_params() {
        let v = verify(&curbyq("curbyq_round42_params.txt")).unwrap();
        assert_eq!(v.randomness_hex, "82a06c62fe0368153baa5e05f2c5407b57bf8e7105a4510d8d857c151ed578e332df8f9e100ef843e801704d88654bfb7d94cf214f7d8527fd11d38cfeed3283");
        assert!(v.checked.iter().any(|c| c.contains("Bell chain pulse 88")));
        assert!(verify(&curbyq("curbyq_chain.json")).is_err());
    }
}
