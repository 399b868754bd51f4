//! Mutual TLS on peer links: every link between validators is TLS 1.3 with a certificate on
//! both sides, issued by the cluster's certificate authority, whose identity is a node id.
//!
//! **Identity.** Validator `N`'s peer certificate is valid for the DNS name `node-N.aurigraph`
//! ([`peer_identity_name`]): a name, not an address, so that it survives re-addressing, NAT
//! and proxies. The connector asks for the name of the node it dialled (rustls refuses a
//! server certificate for any other name); the acceptor verifies the client's chain during the
//! TLS handshake and then checks that the certificate is valid for the node id the peer's
//! handshake frame claims. A peer without a certificate, with one from another authority, an
//! expired one, or one for another node id, is refused before any data frame is read: nothing
//! it sends reaches raft.
//!
//! **Trust.** `--peer-ca` holds the certificates trusted as issuers: the cluster CA (what
//! `aurigraph certs --peer-ids` makes), or, to pin instead of trusting a CA, the validators'
//! own self-signed certificates, one per validator.
//!
//! **Reload.** [`PeerTls::reload`] reads the three files again (SIGHUP): new links use the new
//! configuration, established links keep their session. Connect and accept take the
//! configuration in force once per link, never per message.

use futures_rustls::{TlsAcceptor, TlsConnector};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The DNS name a validator's peer certificate carries: `node-<id>.aurigraph`.
pub fn peer_identity_name(node_id: u64) -> String {
    format!("node-{node_id}.aurigraph")
}

/// [`peer_identity_name`] as the name TLS verifies a certificate against.
pub(crate) fn peer_server_name(node_id: u64) -> ServerName<'static> {
    ServerName::try_from(peer_identity_name(node_id)).expect("identity names are DNS names")
}

/// Why the peer TLS files could not be used; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum PeerTlsError {
    #[error("peer CA {}: {message}", path.display())]
    Ca { path: PathBuf, message: String },
    #[error("peer certificate {}: {message}", path.display())]
    Certificate { path: PathBuf, message: String },
    #[error("peer key {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
}

/// What one link needs: the acceptor and connector of the configuration in force.
#[derive(Clone)]
pub(crate) struct PeerTlsConfig {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
}

/// This validator's peer TLS: the files it came from and the configuration in force. Shared by
/// every core's transport (read once per new link).
pub struct PeerTls {
    node_id: u64,
    ca_path: PathBuf,
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<PeerTlsConfig>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("node_id", &self.node_id)
            .field("ca", &self.ca_path)
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish()
    }
}

impl PeerTls {
    /// Loads the trusted issuers, this node's certificate chain (leaf first) and its key, all
    /// PEM, and checks now what would otherwise fail at every connect: that the certificate
    /// is valid today, chains to a trusted issuer, may serve as both TLS server and client,
    /// and is for `node_id`.
    pub fn load(
        node_id: u64,
        ca_path: &Path,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<PeerTls, PeerTlsError> {
        let current = build(node_id, ca_path, cert_path, key_path)?;
        Ok(PeerTls {
            node_id,
            ca_path: ca_path.to_path_buf(),
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(current),
        })
    }

    /// Reads the files again; on an error the configuration in force stays.
    pub fn reload(&self) -> Result<(), PeerTlsError> {
        let config = build(self.node_id, &self.ca_path, &self.cert_path, &self.key_path)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
        Ok(())
    }

    pub(crate) fn config(&self) -> PeerTlsConfig {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Checks that the certificate a peer presented is for `node_id` (its chain was verified by
/// the TLS handshake already).
pub(crate) fn check_peer_identity(
    certificates: Option<&[CertificateDer<'_>]>,
    node_id: u64,
) -> Result<(), String> {
    let leaf = certificates
        .and_then(|c| c.first())
        .ok_or("the peer presented no certificate")?;
    let cert = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("unreadable peer certificate: {e}"))?;
    cert.verify_is_valid_for_subject_name(&peer_server_name(node_id))
        .map_err(|_| {
            format!(
                "the peer's certificate is not for node {node_id} ({})",
                peer_identity_name(node_id)
            )
        })
}

fn build(
    node_id: u64,
    ca_path: &Path,
    cert_path: &Path,
    key_path: &Path,
) -> Result<PeerTlsConfig, PeerTlsError> {
    let ca = |message: String| PeerTlsError::Ca {
        path: ca_path.to_path_buf(),
        message,
    };
    let certificate = |message: String| PeerTlsError::Certificate {
        path: cert_path.to_path_buf(),
        message,
    };
    let mut roots = RootCertStore::empty();
    for der in read_certificates(ca_path).map_err(ca)? {
        roots
            .add(der)
            .map_err(|e| ca(format!("not a usable issuer: {e}")))?;
    }
    let roots = Arc::new(roots);
    let chain = read_certificates(cert_path).map_err(certificate)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| PeerTlsError::Key {
        path: key_path.to_path_buf(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    // Our own certificate, checked both ways it will be checked by peers.
    let name = peer_identity_name(node_id);
    let server_name = peer_server_name(node_id);
    let now = UnixTime::now();
    WebPkiServerVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
        .build()
        .map_err(|e| ca(e.to_string()))?
        .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], now)
        .map_err(|e| {
            certificate(format!(
                "not usable as node {node_id}'s peer certificate ({name}) with this CA: {e}"
            ))
        })?;
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
            .build()
            .map_err(|e| ca(e.to_string()))?;
    client_verifier
        .verify_client_cert(&chain[0], &chain[1..], now)
        .map_err(|e| certificate(format!("not usable as a TLS client certificate: {e}")))?;

    let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| {
            certificate(format!(
                "does not match the key {}: {e}",
                key_path.display()
            ))
        })?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            certificate(format!(
                "does not match the key {}: {e}",
                key_path.display()
            ))
        })?;
    Ok(PeerTlsConfig {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
    })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certificates.is_empty() {
        return Err("no certificate (expected PEM: -----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certificates)
}
