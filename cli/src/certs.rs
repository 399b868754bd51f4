//! `aurigraph certs`: a development certificate authority and a certificate it signed for a
//! node's TLS (rcgen; ECDSA P-256), for local clusters and tests. Production certificates come
//! from the operator's own CA.

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
/// Days a certificate is valid at most.
const DAYS_MAX: u32 = 3650;

#[derive(clap::Args, Debug)]
pub struct CertsArgs {
    /// Directory to write into (created): ca.pem, ca-key.pem, node.pem, node-key.pem (keys
    /// mode 0600). Existing files are not overwritten.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
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
}

pub fn run(args: CertsArgs) -> Result<(), CertsError> {
    if !(1..=DAYS_MAX).contains(&args.days) {
        return Err(CertsError::Days(args.days));
    }
    let files =
        [CA_CERT_FILE, CA_KEY_FILE, NODE_CERT_FILE, NODE_KEY_FILE].map(|f| args.dir.join(f));
    if let Some(taken) = files.iter().find(|f| f.exists()) {
        return Err(CertsError::Exists(taken.clone()));
    }
    let now = time::OffsetDateTime::now_utc();
    let validity = |params: &mut CertificateParams| {
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(i64::from(args.days));
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "aurigraph development CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca);
    let ca_cert = ca.self_signed(&ca_key)?;
    let node_key = KeyPair::generate()?;
    let mut node = CertificateParams::new(args.hosts.clone())?;
    node.distinguished_name.push(
        DnType::CommonName,
        args.hosts.first().map_or("aurigraph node", String::as_str),
    );
    node.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(&mut node);
    let node_cert = node.signed_by(&node_key, &ca_cert, &ca_key)?;
    std::fs::create_dir_all(&args.dir).map_err(|source| CertsError::Write {
        path: args.dir.clone(),
        source,
    })?;
    let [ca_cert_path, ca_key_path, node_cert_path, node_key_path] = files;
    write(&ca_cert_path, &ca_cert.pem(), false)?;
    write(&ca_key_path, &ca_key.serialize_pem(), true)?;
    write(&node_cert_path, &node_cert.pem(), false)?;
    write(&node_key_path, &node_key.serialize_pem(), true)?;
    println!("{}", node_cert_path.display());
    eprintln!(
        "aurigraph: development CA {} and a certificate for {} signed by it, valid {} days, in {} \
         (node: --tls-cert {} --tls-key {}; clients trust {})",
        CA_CERT_FILE,
        args.hosts.join(", "),
        args.days,
        args.dir.display(),
        node_cert_path.display(),
        node_key_path.display(),
        ca_cert_path.display()
    );
    Ok(())
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
