//! `aurigraph certs`: a development certificate authority and certificates it signed (rcgen;
//! ECDSA P-256), for local clusters and tests: one for a node's HTTP API TLS, or, with
//! `--peer-ids`, one per validator for mutual TLS on peer links, each for its node id's name
//! (`node-<id>.aurigraph`). Production certificates come from the operator's own CA.

use aurigraph_client::launcher::PeerTlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// Files written, in `--dir`.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const NODE_CERT_FILE: &str = "node.pem";
pub const NODE_KEY_FILE: &str = "node-key.pem";
/// Validators one run makes peer certificates for at most.
const PEER_IDS_MAX: usize = 64;
/// Days a certificate is valid at most.
const DAYS_MAX: u32 = 3650;

#[derive(clap::Args, Debug)]
pub struct CertsArgs {
    /// Directory to write into (created): ca.pem and ca-key.pem (reused when both are there
    /// already), then node.pem and node-key.pem, or with --peer-ids peer-<id>.pem and
    /// peer-<id>-key.pem for each validator. Keys are mode 0600; no existing certificate or
    /// key is overwritten.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Make peer-link certificates (mutual TLS between validators) for these node ids instead
    /// of the API certificate: each validator runs with --peer-ca DIR/ca.pem --peer-cert
    /// DIR/peer-<id>.pem --peer-key DIR/peer-<id>-key.pem. Run again with new ids to add
    /// validators signed by the same CA.
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    pub peer_ids: Vec<u64>,
    /// The names and addresses the node's certificate is valid for (DNS names or IPs).
    #[arg(
        long,
        value_name = "NAME,...",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1"
    )]
    pub hosts: Vec<String>,
    /// Days the certificates are valid (1 to 3650), from a day before now.
    #[arg(long, value_name = "N", default_value_t = 365)]
    pub days: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("--days {0}: must be 1 to {DAYS_MAX}")]
    Days(u32),
    #[error("{}: already exists (certs never overwrites a key or certificate)", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("--peer-ids: {0}")]
    PeerIds(String),
    #[error("{} without {}: give both or neither", present.display(), missing.display())]
    HalfCa { present: PathBuf, missing: PathBuf },
    #[error("cannot read {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
}

pub fn run(args: CertsArgs) -> Result<(), CertsError> {
    if !(1..=DAYS_MAX).contains(&args.days) {
        return Err(CertsError::Days(args.days));
    }
    check_peer_ids(&args.peer_ids)?;
    let [ca_cert_path, ca_key_path] = [CA_CERT_FILE, CA_KEY_FILE].map(|f| args.dir.join(f));
    // What this run makes besides the CA: (certificate, key, names).
    let leaves: Vec<(PathBuf, PathBuf, Vec<String>)> = if args.peer_ids.is_empty() {
        vec![(
            args.dir.join(NODE_CERT_FILE),
            args.dir.join(NODE_KEY_FILE),
            args.hosts.clone(),
        )]
    } else {
        args.peer_ids
            .iter()
            .map(|&id| {
                let files = PeerTlsFiles::new(&args.dir, id);
                debug_assert_eq!(files.ca, args.dir.join(CA_CERT_FILE));
                (
                    files.cert,
                    files.key,
                    vec![aurigraph_net::transport::peer_identity_name(id)],
                )
            })
            .collect()
    };
    if let Some(taken) = leaves
        .iter()
        .flat_map(|(cert, key, _)| [cert, key])
        .find(|f| f.exists())
    {
        return Err(CertsError::Exists(taken.clone()));
    }
    let now = time::OffsetDateTime::now_utc();
    let validity = |params: &mut CertificateParams| {
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(i64::from(args.days));
    };
    std::fs::create_dir_all(&args.dir).map_err(|source| CertsError::Write {
        path: args.dir.clone(),
        source,
    })?;
    let (ca_cert, ca_key, ca_reused) = match (ca_cert_path.exists(), ca_key_path.exists()) {
        (true, true) => {
            let (cert, key) = read_ca(&ca_cert_path, &ca_key_path)?;
            (cert, key, true)
        }
        (false, false) => {
            let ca_key = KeyPair::generate()?;
            let mut ca = CertificateParams::default();
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca.distinguished_name
                .push(DnType::CommonName, "aurigraph development CA");
            ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            validity(&mut ca);
            let ca_cert = ca.self_signed(&ca_key)?;
            write(&ca_cert_path, &ca_cert.pem(), false)?;
            write(&ca_key_path, &ca_key.serialize_pem(), true)?;
            (ca_cert, ca_key, false)
        }
        (true, false) => return Err(half_ca(&ca_cert_path, &ca_key_path)),
        (false, true) => return Err(half_ca(&ca_key_path, &ca_cert_path)),
    };
    for (cert_path, key_path, names) in &leaves {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.clone())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("aurigraph node", String::as_str),
        );
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        validity(&mut params);
        let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
        write(cert_path, &cert.pem(), false)?;
        write(key_path, &key.serialize_pem(), true)?;
        println!("{}", cert_path.display());
    }
    let ca_said = if ca_reused {
        "the CA already there"
    } else {
        "a new development CA"
    };
    if args.peer_ids.is_empty() {
        eprintln!(
            "aurigraph: a certificate for {} signed by {ca_said} ({CA_CERT_FILE}), valid {} \
             days, in {} (node: --tls-cert {} --tls-key {}; clients trust {})",
            args.hosts.join(", "),
            args.days,
            args.dir.display(),
            leaves[0].0.display(),
            leaves[0].1.display(),
            ca_cert_path.display()
        );
    } else {
        eprintln!(
            "aurigraph: peer certificates for validators {:?} signed by {ca_said} \
             ({CA_CERT_FILE}), valid {} days, in {} (validator N: --peer-ca {} --peer-cert \
             {}/peer-N.pem --peer-key {}/peer-N-key.pem)",
            args.peer_ids,
            args.days,
            args.dir.display(),
            ca_cert_path.display(),
            args.dir.display(),
            args.dir.display()
        );
    }
    Ok(())
}

fn check_peer_ids(ids: &[u64]) -> Result<(), CertsError> {
    if ids.len() > PEER_IDS_MAX {
        return Err(CertsError::PeerIds(format!(
            "{} ids, at most {PEER_IDS_MAX} per run",
            ids.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for &id in ids {
        if id == 0 {
            return Err(CertsError::PeerIds("node ids start at 1".into()));
        }
        if !seen.insert(id) {
            return Err(CertsError::PeerIds(format!("{id} is listed twice")));
        }
    }
    Ok(())
}

fn half_ca(present: &Path, missing: &Path) -> CertsError {
    CertsError::HalfCa {
        present: present.to_path_buf(),
        missing: missing.to_path_buf(),
    }
}

/// The CA of an earlier run, to sign more certificates with.
fn read_ca(cert_path: &Path, key_path: &Path) -> Result<(rcgen::Certificate, KeyPair), CertsError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| CertsError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    };
    let bad = |path: &Path, e: rcgen::Error| CertsError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let key = KeyPair::from_pem(&read(key_path)?).map_err(|e| bad(key_path, e))?;
    let params =
        CertificateParams::from_ca_cert_pem(&read(cert_path)?).map_err(|e| bad(cert_path, e))?;
    // Re-signing the same subject with the same key yields an issuer whose signatures verify
    // against the certificate on disk.
    let cert = params.self_signed(&key).map_err(|e| bad(cert_path, e))?;
    Ok((cert, key))
}

/// Writes a new file (never an existing one); keys readable by their owner only.
fn write(path: &Path, text: &str, secret: bool) -> Result<(), CertsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    if secret {
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|source| CertsError::Write {
            path: path.to_path_buf(),
            source,
        })
}
