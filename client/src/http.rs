//! A small HTTP/1.1 client for the node's API (used by `transfer`, `validators` and `bench`).
//!
//! hyper-util's pooled client on tokio: connections are kept alive and reused, and as many
//! connections are opened as there are requests in flight. Must be used inside a tokio runtime.
//! Errors name the method and URL, and carry the server's `{"error":{"code","message"}}` when
//! the reply has one.

use crate::connector::{Connector, Steer};
use aurigraph_wire::compact::{decode_compact_results_exact, CompactResultsError};
use aurigraph_wire::result::ResultCode;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as PooledClient;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::fmt;
use std::time::Duration;

pub use aurigraph_wire::compact::{BATCH_MEDIA_TYPE, COMPACT_RESULT_BYTES, RESULTS_MEDIA_TYPE};

/// `Accept` of a batch that asks for the compact reply (and takes JSON if the server answers it).
const ACCEPT_COMPACT: &str = "application/vnd.aurigraph.results, application/json;q=0.5";
/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Replies larger than this are refused (a batch reply of 65,536 JSON results is well below).
const REPLY_BYTES_MAX: usize = 64 << 20;

/// What went wrong with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Could not connect, or the connection failed mid-request.
    Transport(String),
    /// No reply within the client's timeout.
    Timeout(Duration),
    /// The server answered with a 4xx/5xx status. `code`/`message` come from the contract's
    /// `{"error":{"code","message"}}` body when present, otherwise `message` is the body text.
    Status {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// The reply could not be understood.
    Decode(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub method: &'static str,
    pub url: String,
    pub kind: ErrorKind,
}

impl ClientError {
    /// The server's error code (e.g. `MALFORMED`), when it sent one.
    pub fn api_code(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// A short key for grouping errors in summaries (e.g. `HTTP 503 OVERLOADED`, `transport`).
    pub fn short(&self) -> String {
        match &self.kind {
            ErrorKind::Transport(_) => "transport error".into(),
            ErrorKind::Timeout(_) => "timeout".into(),
            ErrorKind::Status { status, code, .. } => match code {
                Some(code) => format!("HTTP {status} {code}"),
                None => format!("HTTP {status}"),
            },
            ErrorKind::Decode(_) => "undecodable reply".into(),
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.method, self.url)?;
        match &self.kind {
            ErrorKind::Transport(e) => write!(f, "{e}"),
            ErrorKind::Timeout(d) => write!(f, "no reply within {:.1} s", d.as_secs_f64()),
            ErrorKind::Status {
                status,
                code: Some(code),
                message,
            } => write!(f, "HTTP {status} {code}: {message}"),
            ErrorKind::Status {
                status,
                code: None,
                message,
            } => {
                if message.is_empty() {
                    write!(f, "HTTP {status}")
                } else {
                    write!(f, "HTTP {status}: {message}")
                }
            }
            ErrorKind::Decode(e) => write!(f, "cannot decode the reply: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A node URL that the client cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("empty node URL")]
    Empty,
    #[error("node URL {0}: only http:// and https:// are supported (e.g. http://127.0.0.1:9003)")]
    NotHttp(String),
    #[error("https: {0}")]
    Tls(String),
    #[error("node URL {url} is not a valid URL: {reason}")]
    Invalid { url: String, reason: String },
    #[error("node URL {0} has no host")]
    NoHost(String),
    #[error("node URL {0} must not have a path (the client adds /api/v11/...)")]
    HasPath(String),
    #[error("the bearer token is not printable ASCII")]
    BadToken,
}

/// A JSON batch reply that does not have the contract's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply is not JSON: {0}")]
    NotJson(String),
    #[error("JSON reply has no \"results\" array")]
    NoResults,
    #[error("JSON reply holds {got} results for a batch of {expected}")]
    Count { got: usize, expected: usize },
    #[error("result {0} has no \"result\" string")]
    NoResultCode(usize),
}

/// A result code as received: one of the known codes, or a newer one this client does not know
/// (the contract says more may be added).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    Known(u8),
    Other(String),
}

impl Code {
    pub fn from_name(name: &str) -> Code {
        match ResultCode::ALL.iter().find(|c| c.as_str() == name) {
            Some(c) => Code::Known(*c as u8),
            None => Code::Other(name.to_string()),
        }
    }

    pub fn from_u8(code: u8) -> Code {
        match ResultCode::from_u8(code) {
            Some(_) => Code::Known(code),
            None => Code::Other(format!("CODE_{code}")),
        }
    }

    pub fn is_ok(&self) -> bool {
        *self == Code::Known(ResultCode::Ok as u8)
    }

    pub fn name(&self) -> &str {
        match self {
            Code::Known(c) => ResultCode::from_u8(*c).expect("known code").as_str(),
            Code::Other(name) => name,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One transfer's result from a batch reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxResult {
    pub code: Code,
    /// Block number (0 when rejected before consensus, or when the JSON reply has none).
    pub block: u64,
}

/// Decodes the compact batch reply: `expected` entries of 9 bytes each.
pub fn decode_compact_results(
    body: &[u8],
    expected: usize,
) -> Result<Vec<TxResult>, CompactResultsError> {
    Ok(decode_compact_results_exact(body, expected)?
        .into_iter()
        .map(|(code, block)| TxResult {
            code: Code::from_u8(code),
            block,
        })
        .collect())
}

/// Decodes the JSON batch reply `{"results":[{"result":"OK","blockNumber":..},..]}`.
pub fn decode_json_results(body: &[u8], expected: usize) -> Result<Vec<TxResult>, ReplyError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ReplyError::NotJson(e.to_string()))?;
    let results = value
        .get("results")
        .and_then(|r| r.as_array())
        .ok_or(ReplyError::NoResults)?;
    if results.len() != expected {
        return Err(ReplyError::Count {
            got: results.len(),
            expected,
        });
    }
    results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let code = r
                .get("result")
                .and_then(|c| c.as_str())
                .ok_or(ReplyError::NoResultCode(i))?;
            let block = match r.get("blockNumber") {
                Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
                Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
                _ => 0,
            };
            Ok(TxResult {
                code: Code::from_name(code),
                block,
            })
        })
        .collect()
}

/// Extracts `{"error":{"code","message"}}` from an error reply, or the body text otherwise.
fn error_from_body(status: StatusCode, body: &[u8]) -> ErrorKind {
    let parsed = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            let code = e.get("code").and_then(|c| c.as_str()).map(str::to_string);
            let message = e
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .to_string();
            Some((code, message))
        });
    let (code, message) = match parsed {
        Some(p) => p,
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let mut short: String = text.chars().take(300).collect();
            if short.len() < text.len() {
                short.push('…');
            }
            (None, short)
        }
    };
    ErrorKind::Status {
        status: status.as_u16(),
        code,
        message,
    }
}

/// A client for one node, e.g. `http://127.0.0.1:9003`. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Client {
    http: PooledClient<HttpsConnector<Connector>, Full<Bytes>>,
    base: String,
    timeout: Duration,
    /// `Authorization: Bearer` value sent with every request (a gateway token), if any.
    bearer: Option<HeaderValue>,
}

impl Client {
    /// `base_url` is `http://HOST:PORT` (a trailing `/` is ignored; `HOST:PORT` alone means
    /// `http://HOST:PORT`). Must be called inside a tokio runtime.
    pub fn new(base_url: &str) -> Result<Client, UrlError> {
        Client::with_options(base_url, DEFAULT_TIMEOUT, 32)
    }

    /// `max_idle`: connections kept open between requests (set it to the intended concurrency).
    pub fn with_options(
        base_url: &str,
        timeout: Duration,
        max_idle: usize,
    ) -> Result<Client, UrlError> {
        Client::with_steering(base_url, timeout, max_idle, None)
    }

    /// As [`Client::with_options`], and with `steer` every connection lands on that core of
    /// the node (client/src/connector.rs): for transfers whose shards live on it.
    pub fn with_steering(
        base_url: &str,
        timeout: Duration,
        max_idle: usize,
        steer: Option<Steer>,
    ) -> Result<Client, UrlError> {
        let base = normalize_base_url(base_url)?;
        let connector = Connector::new(steer);
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = hyper_rustls::HttpsConnectorBuilder::new();
        let tls = if base.starts_with("https://") {
            // The platform's trusted CAs (rustls-native-certs: SSL_CERT_FILE or SSL_CERT_DIR
            // when set, e.g. SSL_CERT_FILE=ca.pem for a development CA of `aurigraph certs`).
            tls.with_provider_and_native_roots(provider).map_err(|e| {
                UrlError::Tls(format!(
                    "no trusted CA certificates ({e}); set SSL_CERT_FILE to a PEM file of the \
                     CAs to trust"
                ))
            })?
        } else {
            // Never used for http://; the connector type is the same for both.
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| UrlError::Tls(e.to_string()))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            tls.with_tls_config(config)
        };
        let connector = tls.https_or_http().enable_http1().wrap_connector(connector);
        let http = PooledClient::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(max_idle.max(1))
            .build(connector);
        Ok(Client {
            http,
            base,
            timeout,
            bearer: None,
        })
    }

    /// The same client, sending `Authorization: Bearer <token>` with every request (gateway
    /// mode). A token that cannot be a header value is refused.
    pub fn with_bearer(mut self, token: &str) -> Result<Client, UrlError> {
        let value =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| UrlError::BadToken)?;
        self.bearer = Some(value);
        Ok(self)
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET base+path`, expecting a 2xx JSON reply.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let (_, _, body) = self
            .send(
                Method::GET,
                path,
                None,
                "application/json",
                Bytes::new(),
                REPLY_BYTES_MAX,
            )
            .await?;
        self.parse_json("GET", path, &body)
    }

    /// `POST base+path` with a JSON body, expecting a 2xx JSON reply.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let bytes = Bytes::from(serde_json::to_vec(body).expect("JSON serializes"));
        let (_, _, reply) = self
            .send(
                Method::POST,
                path,
                Some("application/json"),
                "application/json",
                bytes,
                REPLY_BYTES_MAX,
            )
            .await?;
        self.parse_json("POST", path, &reply)
    }

    /// `POST base+path` with a binary batch of `records` transfers. With `compact`, asks for the
    /// compact reply (and still accepts JSON if the server answers JSON).
    pub async fn post_batch(
        &self,
        path: &str,
        batch: Bytes,
        records: usize,
        compact: bool,
    ) -> Result<Vec<TxResult>, ClientError> {
        let accept = if compact {
            ACCEPT_COMPACT
        } else {
            "application/json"
        };
        let (_, content_type, reply) = self
            .send(
                Method::POST,
                path,
                Some(BATCH_MEDIA_TYPE),
                accept,
                batch,
                REPLY_BYTES_MAX,
            )
            .await?;
        let decoded = if content_type
            .as_deref()
            .is_some_and(|t| t.starts_with(RESULTS_MEDIA_TYPE))
        {
            decode_compact_results(&reply, records).map_err(|e| e.to_string())
        } else {
            decode_json_results(&reply, records).map_err(|e| e.to_string())
        };
        decoded.map_err(|e| self.error("POST", path, ErrorKind::Decode(e)))
    }

    fn error(&self, method: &'static str, path: &str, kind: ErrorKind) -> ClientError {
        ClientError {
            method,
            url: format!("{}{path}", self.base),
            kind,
        }
    }

    fn parse_json(
        &self,
        method: &'static str,
        path: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, ClientError> {
        serde_json::from_slice(body).map_err(|e| {
            self.error(
                method,
                path,
                ErrorKind::Decode(format!("reply is not JSON: {e}")),
            )
        })
    }

    /// `GET base+path` of a binary reply of `accept`, at most `reply_bytes_max` bytes.
    pub async fn get_bytes(
        &self,
        path: &str,
        accept: &'static str,
        reply_bytes_max: usize,
    ) -> Result<Bytes, ClientError> {
        let (_, _, body) = self
            .send(
                Method::GET,
                path,
                None,
                accept,
                Bytes::new(),
                reply_bytes_max,
            )
            .await?;
        Ok(body)
    }

    /// Sends one request; returns status, content type and body of a 2xx reply of at most
    /// `reply_bytes_max` bytes.
    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        accept: &'static str,
        body: Bytes,
        reply_bytes_max: usize,
    ) -> Result<(StatusCode, Option<String>, Bytes), ClientError> {
        let method_name: &'static str = if method == Method::GET { "GET" } else { "POST" };
        let url = format!("{}{path}", self.base);
        let uri: Uri = url.parse().map_err(|e| {
            self.error(
                method_name,
                path,
                ErrorKind::Transport(format!("invalid URL: {e}")),
            )
        })?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(ACCEPT, HeaderValue::from_static(accept));
        if let Some(ct) = content_type {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        if let Some(bearer) = &self.bearer {
            request = request.header(hyper::header::AUTHORIZATION, bearer.clone());
        }
        let request = request.body(Full::new(body)).map_err(|e| {
            self.error(
                method_name,
                path,
                ErrorKind::Transport(format!("cannot build request: {e}")),
            )
        })?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| ErrorKind::Transport(describe_transport_error(&e)))?;
            let (parts, body) = response.into_parts();
            let limited = http_body_util::Limited::new(body, reply_bytes_max);
            let bytes = limited
                .collect()
                .await
                .map_err(|e| ErrorKind::Transport(format!("reading the reply failed: {e}")))?
                .to_bytes();
            let content_type = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            Ok::<_, ErrorKind>((parts.status, content_type, bytes))
        };
        let (status, content_type, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| self.error(method_name, path, ErrorKind::Timeout(self.timeout)))?
            .map_err(|kind| self.error(method_name, path, kind))?;
        if !status.is_success() {
            return Err(self.error(method_name, path, error_from_body(status, &bytes)));
        }
        Ok((status, content_type, bytes))
    }
}

/// hyper's errors print as "client error (Connect)"; the useful part is in the source chain.
fn describe_transport_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// `http://host:port` or `https://host:port` without a trailing slash; `host:port` gets
/// `http://`.
pub fn normalize_base_url(url: &str) -> Result<String, UrlError> {
    let url = url.trim().trim_end_matches('/');
    if url.is_empty() {
        return Err(UrlError::Empty);
    }
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(UrlError::NotHttp(url));
    }
    let uri: Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| UrlError::Invalid {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    if uri.host().is_none() {
        return Err(UrlError::NoHost(url));
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(UrlError::HasPath(url));
    }
    Ok(url)
}

/// The bearer token a file holds (surrounding whitespace ignored), for `flag`'s messages.
pub fn read_token_file(path: &std::path::Path, flag: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{flag} {}: cannot read it: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{flag} {}: the file is empty", path.display()));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_reply_decodes_and_checks_its_length() {
        let mut body = vec![0u8];
        body.extend_from_slice(&42u64.to_le_bytes());
        body.push(ResultCode::NonceTooOld as u8);
        body.extend_from_slice(&0u64.to_le_bytes());
        body.push(200);
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        let results = decode_compact_results(&body, 3).unwrap();
        assert_eq!(
            results[0],
            TxResult {
                code: Code::Known(0),
                block: 42
            }
        );
        assert!(results[0].code.is_ok());
        assert_eq!(results[1].code.name(), "NONCE_TOO_OLD");
        assert_eq!(results[1].block, 0);
        assert_eq!(results[2].code, Code::Other("CODE_200".into()));
        assert_eq!(results[2].block, u64::MAX);
        let err = decode_compact_results(&body, 2).unwrap_err().to_string();
        assert!(err.contains("27 bytes, expected 18"), "{err}");
        assert!(decode_compact_results(&body[..26], 3).is_err());
        assert!(decode_compact_results(&[], 0).unwrap().is_empty());
    }

    #[test]
    fn the_compact_accept_header_names_the_contract_media_type() {
        assert!(ACCEPT_COMPACT.starts_with(RESULTS_MEDIA_TYPE));
    }

    #[test]
    fn json_reply_decodes() {
        let body = br#"{"results":[{"txHash":"ab","result":"OK","blockNumber":7},
                        {"result":"INSUFFICIENT_FUNDS","blockNumber":"9"},{"result":"SOMETHING_NEW"}]}"#;
        let results = decode_json_results(body, 3).unwrap();
        assert!(results[0].code.is_ok());
        assert_eq!(results[0].block, 7);
        assert_eq!(results[1].code.name(), "INSUFFICIENT_FUNDS");
        assert_eq!(results[1].block, 9);
        assert_eq!(results[2].code, Code::Other("SOMETHING_NEW".into()));
        assert!(decode_json_results(body, 2)
            .unwrap_err()
            .to_string()
            .contains("3 results for a batch of 2"));
        assert!(decode_json_results(b"{}", 1)
            .unwrap_err()
            .to_string()
            .contains("results"));
        assert!(decode_json_results(br#"{"results":[{}]}"#, 1)
            .unwrap_err()
            .to_string()
            .contains("result 0"));
    }

    #[test]
    fn error_bodies_show_the_contract_error() {
        let kind = error_from_body(
            StatusCode::BAD_REQUEST,
            br#"{"error":{"code":"MALFORMED","message":"amount is not a number"}}"#,
        );
        let e = ClientError {
            method: "POST",
            url: "http://h:1/api/v11/transactions".into(),
            kind,
        };
        assert_eq!(
            e.to_string(),
            "POST http://h:1/api/v11/transactions: HTTP 400 MALFORMED: amount is not a number"
        );
        assert_eq!(e.api_code(), Some("MALFORMED"));
        assert_eq!(e.short(), "HTTP 400 MALFORMED");
        let kind = error_from_body(StatusCode::BAD_GATEWAY, b"  upstream down \n");
        let e = ClientError {
            method: "GET",
            url: "http://h:1/x".into(),
            kind,
        };
        assert_eq!(e.to_string(), "GET http://h:1/x: HTTP 502: upstream down");
        assert_eq!(e.api_code(), None);
    }

    #[test]
    fn base_urls_are_normalized() {
        assert_eq!(
            normalize_base_url("http://127.0.0.1:9003/").unwrap(),
            "http://127.0.0.1:9003"
        );
        assert_eq!(
            normalize_base_url("localhost:9003").unwrap(),
            "http://localhost:9003"
        );
        assert_eq!(normalize_base_url("https://x:1/").unwrap(), "https://x:1");
        assert!(normalize_base_url("ftp://x:1")
            .unwrap_err()
            .to_string()
            .contains("https://"));
        assert!(normalize_base_url("http://x:1/api")
            .unwrap_err()
            .to_string()
            .contains("path"));
        assert!(normalize_base_url("").is_err());
    }

    #[test]
    fn connection_refused_names_the_url() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Bind then drop a listener to get a port that is (very likely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = rt.block_on(async {
            let client = Client::new(&format!("127.0.0.1:{port}")).unwrap();
            client.get_json("/api/v11/info").await.unwrap_err()
        });
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("GET http://127.0.0.1:{port}/api/v11/info: ")),
            "{text}"
        );
        assert!(matches!(err.kind, ErrorKind::Transport(_)), "{text}");
    }
}
