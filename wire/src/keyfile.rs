//! Key files: `{"address":"<64 hex>","secretKey":"<64 hex: the 32-byte Ed25519 seed>"}`, mode 0600.
//!
//! Written by `aurigraph keygen` (and by the node's development genesis), read by
//! `aurigraph transfer`. The address is the Ed25519 public key; it is stored beside the seed so
//! that a reader can see which account a file holds, and it is checked against the seed on read.

use crate::record::address_of;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KeyFile {
    address: String,
    secret_key: String,
}

/// What went wrong reading or writing a key file; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file {} already exists; not replacing it (use --force to overwrite)", .0.display())]
    AlreadyExists(PathBuf),
    #[error("cannot create key file {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set mode 0600 on {}: {source}", path.display())]
    Permissions {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write key file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {} does not exist (create one with `aurigraph keygen --out {}`)", .0.display(), .0.display())]
    NotFound(PathBuf),
    #[error("cannot read key file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin} is not a key file ({reason}); expected {{\"address\":\"<64 hex>\",\"secretKey\":\"<64 hex>\"}}")]
    NotKeyFile { origin: String, reason: String },
    #[error("{origin}: secretKey must be 64 hex characters (a 32-byte Ed25519 seed), got {len} characters")]
    SecretLength { origin: String, len: usize },
    #[error("{origin}: secretKey is not hex: {reason}")]
    SecretNotHex { origin: String, reason: String },
    #[error("{origin}: address {stored} does not match the secret key (whose address is {actual}); the file is damaged or was edited")]
    AddressMismatch {
        origin: String,
        stored: String,
        actual: String,
    },
}

/// A fresh key from the operating system's random number generator.
pub fn generate() -> SigningKey {
    // The secret key is 32 bytes from the OS; ed25519-dalek's own `generate` wants a newer
    // `rand_core` than the rest of the workspace uses.
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let key = SigningKey::from_bytes(&secret);
    secret.fill(0);
    key
}

/// The key file's JSON text for `key`.
pub fn key_json(key: &SigningKey) -> String {
    let file = KeyFile {
        address: address_of(key).to_hex(),
        secret_key: hex::encode(key.to_bytes()),
    };
    let mut text = serde_json::to_string_pretty(&file).expect("key file serializes");
    text.push('\n');
    text
}

/// Writes `key` to `path` with mode 0600. Refuses to replace an existing file unless `force`
/// (a key file may be the only copy of a funded key).
pub fn write_key(path: &Path, key: &SigningKey, force: bool) -> Result<(), KeyFileError> {
    let text = key_json(key);
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::AlreadyExists(path.to_path_buf())
        } else {
            KeyFileError::Create {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    // With --force on an existing file, `mode` above does not apply: tighten it explicitly.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|source| KeyFileError::Permissions {
                path: path.to_path_buf(),
                source,
            })?;
    }
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyFileError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Parses a key file's text; `origin` names it in errors.
pub fn parse_key(text: &str, origin: &str) -> Result<SigningKey, KeyFileError> {
    let file: KeyFile = serde_json::from_str(text).map_err(|e| KeyFileError::NotKeyFile {
        origin: origin.to_string(),
        reason: e.to_string(),
    })?;
    let mut seed = [0u8; 32];
    if file.secret_key.len() != 64 {
        return Err(KeyFileError::SecretLength {
            origin: origin.to_string(),
            len: file.secret_key.len(),
        });
    }
    hex::decode_to_slice(&file.secret_key, &mut seed).map_err(|e| KeyFileError::SecretNotHex {
        origin: origin.to_string(),
        reason: e.to_string(),
    })?;
    let key = SigningKey::from_bytes(&seed);
    let address = address_of(&key).to_hex();
    if !file.address.eq_ignore_ascii_case(&address) {
        return Err(KeyFileError::AddressMismatch {
            origin: origin.to_string(),
            stored: file.address,
            actual: address,
        });
    }
    Ok(key)
}

/// Reads a key file written by [`write_key`].
pub fn read_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            KeyFileError::NotFound(path.to_path_buf())
        } else {
            KeyFileError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    parse_key(&text, &format!("key file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let key = generate();
        write_key(&path, &key, false).unwrap();
        assert_eq!(read_key(&path).unwrap().to_bytes(), key.to_bytes());
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["address"], address_of(&key).to_hex());
        assert_eq!(json["secretKey"], hex::encode(key.to_bytes()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let first = generate();
        write_key(&path, &first, false).unwrap();
        let err = write_key(&path, &generate(), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already exists") && err.contains("--force"),
            "{err}"
        );
        assert_eq!(read_key(&path).unwrap().to_bytes(), first.to_bytes());

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let second = generate();
        write_key(&path, &second, true).unwrap();
        assert_eq!(read_key(&path).unwrap().to_bytes(), second.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn read_errors_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let err = read_key(&missing).unwrap_err().to_string();
        assert!(
            err.contains("does not exist") && err.contains("keygen"),
            "{err}"
        );

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "not json").unwrap();
        let err = read_key(&bad).unwrap_err().to_string();
        assert!(err.contains("is not a key file"), "{err}");

        let short = r#"{"address":"00","secretKey":"abcd"}"#;
        assert!(parse_key(short, "f")
            .unwrap_err()
            .to_string()
            .contains("64 hex"));
        let nothex = format!(r#"{{"address":"00","secretKey":"{}"}}"#, "zz".repeat(32));
        assert!(parse_key(&nothex, "f")
            .unwrap_err()
            .to_string()
            .contains("not hex"));

        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let mismatched = format!(
            r#"{{"address":"{}","secretKey":"{}"}}"#,
            address_of(&other).to_hex(),
            hex::encode(key.to_bytes())
        );
        let err = parse_key(&mismatched, "f").unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");

        let upper = format!(
            r#"{{"address":"{}","secretKey":"{}"}}"#,
            address_of(&key).to_hex().to_uppercase(),
            hex::encode_upper(key.to_bytes())
        );
        assert_eq!(parse_key(&upper, "f").unwrap().to_bytes(), key.to_bytes());
    }
}
