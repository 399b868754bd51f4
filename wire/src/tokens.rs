//! The tokens file (a contract: docs/api.md, *Gateway mode*): who may call the endpoints that
//! need a bearer token, and as what. Tokens are kept only as SHA-256 hashes: a leaked file
//! does not give them away. A presented token is hashed and compared with every entry in
//! constant time (no early exit, no timing that says how much of a hash matched).
//!
//! ```json
//! {"tokens": [{"role": "gateway", "name": "acme", "sha256": "<64 hex digits>"}]}
//! ```
//!
//! `role` is `gateway` (gateway mode: `name` is the gateway the genesis names as the
//! controller of custodial accounts, `"controller": "gateway:acme"`).

use crate::genesis::check_gateway_name;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;

/// Entries in one tokens file at most (each request is compared with all of them).
pub const TOKENS_MAX: usize = 1024;
/// Bytes of a token `new_token` makes (hex-encoded: twice as many characters).
pub const TOKEN_BYTES: usize = 32;
/// Longest token accepted in a request (anything longer is refused unhashed).
pub const TOKEN_CHARS_MAX: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Submits transfers for the custodial accounts of gateway `name` without signatures.
    Gateway,
    /// Runs the node's administration endpoints (membership changes); `name` is the operator,
    /// named in the audit log.
    Admin,
}

impl Role {
    /// The name the tokens file uses.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Admin => "admin",
        }
    }
}

/// One entry of the tokens file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub role: Role,
    pub name: String,
    /// SHA-256 of the token, 64 hex digits.
    pub sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

/// Who a valid token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub role: Role,
    pub name: String,
}

/// The tokens a node accepts (empty: none, every token is refused).
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    entries: Vec<(Principal, [u8; 32])>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("tokens file {path}: {message}")]
    File { path: String, message: String },
    #[error("tokens file: entry {index}: {message}")]
    Entry { index: usize, message: String },
    #[error("tokens file: {0}")]
    Invalid(String),
}

impl Tokens {
    /// Reads and checks a tokens file.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokensError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Tokens::from_json(&text)
    }

    pub fn from_json(text: &str) -> Result<Tokens, TokensError> {
        let file: TokensFile = serde_json::from_str(text)
            .map_err(|e| TokensError::Invalid(format!("not the expected JSON: {e}")))?;
        if file.tokens.len() > TOKENS_MAX {
            return Err(TokensError::Invalid(format!(
                "{} entries, more than the limit of {TOKENS_MAX}",
                file.tokens.len()
            )));
        }
        let mut entries = Vec::with_capacity(file.tokens.len());
        for (index, entry) in file.tokens.into_iter().enumerate() {
            let fail = |message: String| TokensError::Entry { index, message };
            check_gateway_name(&entry.name).map_err(fail)?;
            let mut hash = [0u8; 32];
            hex::decode_to_slice(&entry.sha256, &mut hash)
                .map_err(|_| fail("sha256 must be 64 hex digits".into()))?;
            if entries.iter().any(|(_, known)| known == &hash) {
                return Err(fail("the same token is listed twice".into()));
            }
            let principal = Principal {
                role: entry.role,
                name: entry.name,
            };
            entries.push((principal, hash));
        }
        Ok(Tokens { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal `token` belongs to, if any. Compares its hash with every entry.
    pub fn authenticate(&self, token: &str) -> Option<&Principal> {
        if token.is_empty() || token.len() > TOKEN_CHARS_MAX {
            return None;
        }
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (principal, known) in &self.entries {
            if bool::from(known.ct_eq(&hash)) {
                found = Some(principal);
            }
        }
        found
    }
}

/// A new random token (hex) and its entry for the tokens file.
pub fn new_token(role: Role, name: &str) -> Result<(String, TokenEntry), TokensError> {
    check_gateway_name(name).map_err(TokensError::Invalid)?;
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let entry = TokenEntry {
        role,
        name: name.to_string(),
        sha256: hex::encode(Sha256::digest(token.as_bytes())),
    };
    Ok((token, entry))
}

/// Adds `entry` to the tokens file at `path` (created, readable by its owner only, when it
/// does not exist yet).
pub fn add_to_file(path: &Path, entry: TokenEntry) -> Result<(), TokensError> {
    let fail = |message: String| TokensError::File {
        path: path.display().to_string(),
        message,
    };
    let mut file = match std::fs::read_to_string(path) {
        Ok(text) => {
            Tokens::from_json(&text)?;
            serde_json::from_str::<TokensFile>(&text).map_err(|e| fail(e.to_string()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokensFile::default(),
        Err(e) => return Err(fail(e.to_string())),
    };
    file.tokens.push(entry);
    let text = serde_json::to_string_pretty(&file).expect("tokens encode") + "\n";
    Tokens::from_json(&text)?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail(e.to_string()))?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(|e| fail(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_authenticates_as_its_entry_and_nothing_else_does() {
        let (token, entry) = new_token(Role::Gateway, "acme").unwrap();
        let (other_token, other) = new_token(Role::Gateway, "other").unwrap();
        assert_eq!(token.len(), 2 * TOKEN_BYTES);
        assert!(!entry.sha256.contains(&token), "only the hash is kept");
        let text = serde_json::to_string(&TokensFile {
            tokens: vec![entry, other],
        })
        .unwrap();
        let tokens = Tokens::from_json(&text).unwrap();
        assert_eq!(tokens.authenticate(&token).unwrap().name, "acme");
        assert_eq!(tokens.authenticate(&other_token).unwrap().name, "other");
        assert!(tokens.authenticate("").is_none());
        assert!(tokens.authenticate(&token[1..]).is_none());
        assert!(tokens
            .authenticate(&"a".repeat(TOKEN_CHARS_MAX + 1))
            .is_none());
        assert!(Tokens::default().authenticate(&token).is_none());
    }

    #[test]
    fn bad_files_are_refused_with_clear_errors() {
        let h = "ab".repeat(32);
        let cases = [
            ("{}".to_string(), "missing field"),
            (
                format!(r#"{{"tokens":[{{"role":"root","name":"a","sha256":"{h}"}}]}}"#),
                "unknown variant",
            ),
            (
                r#"{"tokens":[{"role":"gateway","name":"a","sha256":"xyz"}]}"#.to_string(),
                "64 hex digits",
            ),
            (
                format!(r#"{{"tokens":[{{"role":"gateway","name":"a b","sha256":"{h}"}}]}}"#),
                "A-Z a-z 0-9",
            ),
            (
                format!(
                    r#"{{"tokens":[{{"role":"gateway","name":"a","sha256":"{h}"}},{{"role":"gateway","name":"b","sha256":"{h}"}}]}}"#
                ),
                "listed twice",
            ),
        ];
        for (json, needle) in cases {
            let err = Tokens::from_json(&json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn tokens_are_added_to_a_file_only_its_owner_reads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let (first, entry) = new_token(Role::Gateway, "acme").unwrap();
        add_to_file(&path, entry).unwrap();
        let (second, entry) = new_token(Role::Gateway, "acme").unwrap();
        add_to_file(&path, entry).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let tokens = Tokens::load(&path).unwrap();
        assert!(tokens.authenticate(&first).is_some() && tokens.authenticate(&second).is_some());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&first), "the file holds hashes only");
    }
}
