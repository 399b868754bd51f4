//! TLS on the HTTP API (rustls through `futures-rustls`, on the core's glommio stream): the
//! certificate chain and key from PEM files, TLS 1.3 and 1.2, ALPN `h2` and `http/1.1`, and a
//! reload (SIGHUP) that new connections see while established ones keep their session.

use futures_rustls::TlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// What went wrong loading the certificate or the key; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {}: {message}", path.display())]
    Certificate { path: PathBuf, message: String },
    #[error("TLS key {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("TLS certificate {} and key {}: {message}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// The node's TLS configuration: the files it came from and the configuration in force.
#[derive(Debug)]
pub struct Tls {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Loads the certificate chain (PEM, leaf first) and the private key (PEM: PKCS#8, PKCS#1
    /// or SEC1) and checks that they belong together.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Tls, TlsError> {
        let config = server_config(cert_path, key_path)?;
        Ok(Tls {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again. New handshakes use the new configuration; connections already
    /// established keep theirs. On an error the configuration in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.cert_path, &self.key_path)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
        Ok(())
    }

    /// An acceptor with the configuration in force.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        TlsAcceptor::from(config)
    }
}

fn server_config(cert_path: &Path, key_path: &Path) -> Result<ServerConfig, TlsError> {
    let certificate = |message: String| TlsError::Certificate {
        path: cert_path.to_path_buf(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| certificate(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(certificate(
            "no certificate (expected PEM: -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Key {
        path: key_path.to_path_buf(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.3 and 1.2")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Pair {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
            message: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
