//! The one error shape of the HTTP API (a contract, documented in `docs/api.md`):
//! a 4xx/5xx status with `{"error":{"code":"<UPPER_SNAKE>","message":"<human text>"}}`.

use aurigraph_engine::replica::SubmitError;
use aurigraph_engine::{EngineError, SubmitFailure};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use std::fmt;

/// Seconds a client is asked to wait (`Retry-After`) after `OVERLOADED` or `RETRY`.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// The stable `error.code` of an error answer. Each code has one HTTP status ([`ErrorCode::status`])
/// and one wire form ([`ErrorCode::as_str`], UPPER_SNAKE); clients match on the string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 404: no endpoint has this path.
    NotFound,
    /// 405: the path exists with another method (the `Allow` header names it).
    MethodNotAllowed,
    /// 400: the body is not JSON (syntax error, cut short).
    MalformedJson,
    /// 400: well-formed but invalid: types, missing or unknown fields, bad parameters.
    InvalidRequest,
    /// 400: an address is not 64 hex characters.
    InvalidAddress,
    /// 400: a signature is not 128 hex characters.
    InvalidSignature,
    /// 400: a transaction hash is not 64 hex characters.
    InvalidTxHash,
    /// 400: a binary batch does not validate.
    InvalidBatch,
    /// 400: the request body could not be read.
    BodyReadFailed,
    /// 408 with `Connection: close`: the request body came too slowly.
    RequestTimeout,
    /// 413: the body is over the node's limit.
    PayloadTooLarge,
    /// 413: more transfers in one request than the node takes.
    TooManyTransfers,
    /// 415: a `Content-Type` the endpoint does not take.
    UnsupportedMediaType,
    /// 404: a transaction hash this node does not know.
    TransactionNotFound,
    /// 404: a block this node does not hold.
    BlockNotFound,
    /// 401: no bearer token, or one this node does not accept.
    Unauthorized,
    /// 403: a valid token that may not do this.
    Forbidden,
    /// 429 with `Retry-After`: this client address sent more requests than its rate.
    RateLimited,
    /// 503: this validator does not lead the shard.
    NotLeader,
    /// 503 with `Retry-After`: too many transfers wait for consensus.
    Overloaded,
    /// 503 with `Retry-After`: the proposal was lost in a leadership change.
    Retry,
    /// 409: a membership change the shard refused.
    MembershipChangeRefused,
    /// 503 with `Connection: close`: the node is draining.
    ShuttingDown,
    /// 503: the ledger engine failed.
    EngineFailure,
    /// 404: no verified beacon pulse is held (no beacon configured, or none verified yet).
    NoVerifiedPulse,
    /// 404: an archive read on a node without an archive (`archive_url`).
    NoArchive,
    /// 503 with `Retry-After`: the archive (PostgreSQL) is away, slow, or its readers are busy.
    ArchiveUnavailable,
    /// 500: a defect of this node.
    Internal,
}

impl ErrorCode {
    /// Every code, in the order the API description lists them.
    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::MalformedJson,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidAddress,
        ErrorCode::InvalidSignature,
        ErrorCode::InvalidTxHash,
        ErrorCode::InvalidBatch,
        ErrorCode::BodyReadFailed,
        ErrorCode::RequestTimeout,
        ErrorCode::PayloadTooLarge,
        ErrorCode::TooManyTransfers,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::TransactionNotFound,
        ErrorCode::BlockNotFound,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::NotLeader,
        ErrorCode::Overloaded,
        ErrorCode::Retry,
        ErrorCode::MembershipChangeRefused,
        ErrorCode::ShuttingDown,
        ErrorCode::EngineFailure,
        ErrorCode::NoVerifiedPulse,
        ErrorCode::NoArchive,
        ErrorCode::ArchiveUnavailable,
        ErrorCode::Internal,
    ];

    /// The wire form: `error.code` of the answer.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::MalformedJson => "MALFORMED_JSON",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::InvalidAddress => "INVALID_ADDRESS",
            ErrorCode::InvalidSignature => "INVALID_SIGNATURE",
            ErrorCode::InvalidTxHash => "INVALID_TX_HASH",
            ErrorCode::InvalidBatch => "INVALID_BATCH",
            ErrorCode::BodyReadFailed => "BODY_READ_FAILED",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::TooManyTransfers => "TOO_MANY_TRANSFERS",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::TransactionNotFound => "TRANSACTION_NOT_FOUND",
            ErrorCode::BlockNotFound => "BLOCK_NOT_FOUND",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::NotLeader => "NOT_LEADER",
            ErrorCode::Overloaded => "OVERLOADED",
            ErrorCode::Retry => "RETRY",
            ErrorCode::MembershipChangeRefused => "MEMBERSHIP_CHANGE_REFUSED",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::EngineFailure => "ENGINE_FAILURE",
            ErrorCode::NoVerifiedPulse => "NO_VERIFIED_PULSE",
            ErrorCode::NoArchive => "NO_ARCHIVE",
            ErrorCode::ArchiveUnavailable => "ARCHIVE_UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// The HTTP status every answer with this code has.
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorCode::MalformedJson
            | ErrorCode::InvalidRequest
            | ErrorCode::InvalidAddress
            | ErrorCode::InvalidSignature
            | ErrorCode::InvalidTxHash
            | ErrorCode::InvalidBatch
            | ErrorCode::BodyReadFailed => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound
            | ErrorCode::TransactionNotFound
            | ErrorCode::BlockNotFound
            | ErrorCode::NoVerifiedPulse
            | ErrorCode::NoArchive => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::MembershipChangeRefused => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge | ErrorCode::TooManyTransfers => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::NotLeader
            | ErrorCode::Overloaded
            | ErrorCode::Retry
            | ErrorCode::ShuttingDown
            | ErrorCode::EngineFailure
            | ErrorCode::ArchiveUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An error answer: stable code (which sets the status), human message, and the headers some
/// statuses need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// `Allow` header value (405 only).
    pub allow: Option<String>,
    /// `Retry-After` header value in seconds (503 on overload).
    pub retry_after: Option<u32>,
    /// Ask the client to close the connection (shutdown).
    pub close: bool,
}

impl ApiError {
    /// An answer with `code`, its status, and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            allow: None,
            retry_after: None,
            close: false,
        }
    }

    /// The HTTP status of the answer (the code's).
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// `INVALID_REQUEST`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }

    pub fn route_not_found(method: &str, path: &str) -> ApiError {
        ApiError::new(
            ErrorCode::NotFound,
            format!("no such endpoint: {method} {path} (see GET /api/v11/openapi.json)"),
        )
    }

    /// An admin endpoint asked for on the public listener of a node with an admin listener.
    pub fn admin_listener_only(method: &str, path: &str) -> ApiError {
        ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no such endpoint here: {method} {path} is served on this node's admin listener \
                 only (--admin-addr)"
            ),
        )
    }

    /// `allow`: the methods the path takes, as the `Allow` header lists them.
    pub fn method_not_allowed(method: &str, path: &str, allow: impl Into<String>) -> ApiError {
        let allow = allow.into();
        let message = format!("{method} is not allowed on {path}; allowed: {allow}");
        ApiError {
            allow: Some(allow),
            ..ApiError::new(ErrorCode::MethodNotAllowed, message)
        }
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// The body came too slowly: 408, and the connection closes (its unread bytes would
    /// otherwise be taken for the next request).
    pub fn request_timeout(slow: &crate::http::limits::BodyTooSlow) -> ApiError {
        ApiError {
            close: true,
            ..ApiError::new(
                ErrorCode::RequestTimeout,
                format!("{slow}: a body must arrive at the node's minimum rate (docs/security.md)"),
            )
        }
    }

    /// The bodies being read on this core hold the memory they may: 503, retry shortly.
    pub fn bodies_over_budget(budget_bytes: usize) -> ApiError {
        ApiError {
            retry_after: Some(RETRY_AFTER_SECONDS),
            close: true,
            ..ApiError::new(
                ErrorCode::Overloaded,
                format!(
                    "the request bodies being read on this core hold the {budget_bytes} bytes they \
                     may together; retry after {RETRY_AFTER_SECONDS} s"
                ),
            )
        }
    }

    /// An archive read on a node started without `archive_url`.
    pub fn no_archive(what: &str) -> ApiError {
        ApiError::new(
            ErrorCode::NoArchive,
            format!(
                "this node has no archive: {what} needs the PostgreSQL archive (archive_url in \
                 the node's configuration, docs/operations.md)"
            ),
        )
    }

    /// An archive read that failed: 503, retry shortly.
    pub fn archive_unavailable(error: &aurigraph_sinks::ReadError) -> ApiError {
        ApiError {
            retry_after: Some(RETRY_AFTER_SECONDS),
            ..ApiError::new(ErrorCode::ArchiveUnavailable, error.to_string())
        }
    }

    /// This client address is over its request rate: 429, retry after `seconds`.
    pub fn rate_limited(seconds: u32) -> ApiError {
        ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(
                ErrorCode::RateLimited,
                format!("this client address sent more requests than the node's rate allows; retry after {seconds} s"),
            )
        }
    }

    pub fn too_many_transfers(count: usize, max: usize) -> ApiError {
        ApiError::new(
            ErrorCode::TooManyTransfers,
            format!("batch holds {count} transfers, more than the limit of {max} per request"),
        )
    }

    pub fn unsupported_media_type(got: &str, accepted: &str) -> ApiError {
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type {got:?} is not supported here; send {accepted}"),
        )
    }

    pub fn shutting_down() -> ApiError {
        ApiError {
            close: true,
            ..ApiError::new(
                ErrorCode::ShuttingDown,
                "the node is shutting down; send the request to another validator or retry later",
            )
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Internal, message)
    }

    /// A JSON body that did not parse: syntax errors are `MALFORMED_JSON`, well-formed JSON of
    /// the wrong shape (types, missing or unknown fields) is `INVALID_REQUEST`. serde's message
    /// carries the line and column.
    pub fn from_json(error: &serde_json::Error) -> ApiError {
        use serde_json::error::Category;
        match error.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::new(ErrorCode::MalformedJson, format!("malformed JSON: {error}"))
            }
            Category::Data => ApiError::invalid(format!("invalid request: {error}")),
        }
    }

    /// The body of the answer.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "code": self.code, "message": self.message } })
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = self.code.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            headers.insert(ALLOW, allow);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<SubmitFailure> for ApiError {
    /// Engine refusals are 503s: the request was valid, this validator cannot take it now.
    fn from(failure: SubmitFailure) -> ApiError {
        match failure {
            SubmitFailure::Rejected(SubmitError::NotLeader { shard, leader }) => ApiError::new(
                ErrorCode::NotLeader,
                match leader {
                    Some(leader) => format!(
                        "this validator does not lead shard {shard}; its leader is node {leader}"
                    ),
                    None => format!(
                        "this validator does not lead shard {shard} and no leader is known yet; retry shortly"
                    ),
                },
            ),
            SubmitFailure::Rejected(SubmitError::Overloaded(shard)) => ApiError {
                retry_after: Some(RETRY_AFTER_SECONDS),
                ..ApiError::new(
                    ErrorCode::Overloaded,
                    format!("shard {shard} is overloaded: too many transfers wait for consensus; retry after {RETRY_AFTER_SECONDS} s"),
                )
            },
            SubmitFailure::Rejected(SubmitError::Membership { shard, reason }) => ApiError::new(
                ErrorCode::MembershipChangeRefused,
                format!("shard {shard}: {reason}"),
            ),
            SubmitFailure::Retry(shard) => ApiError {
                retry_after: Some(RETRY_AFTER_SECONDS),
                ..ApiError::new(
                    ErrorCode::Retry,
                    format!("shard {shard}: the proposal was lost in a leadership change; resubmit (resubmitting the same signed transfer is harmless)"),
                )
            },
            SubmitFailure::Stopped => ApiError::shutting_down(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> ApiError {
        match error {
            EngineError::Stopped => ApiError::shutting_down(),
            other => ApiError::new(
                ErrorCode::EngineFailure,
                format!("the ledger engine failed: {other}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_error(text: &str) -> ApiError {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Shape {
            a: u32,
        }
        ApiError::from_json(&serde_json::from_str::<Shape>(text).unwrap_err())
    }

    #[test]
    fn json_errors_are_classified() {
        let e = json_error("{\"a\": 1,");
        assert_eq!(
            (e.status(), e.code),
            (StatusCode::BAD_REQUEST, ErrorCode::MalformedJson)
        );
        assert!(e.message.contains("line 1 column"), "{}", e.message);
        assert_eq!(json_error("{\"a\" 1}").code, ErrorCode::MalformedJson);
        assert_eq!(json_error("{\"a\": 1} x").code, ErrorCode::MalformedJson);
        let e = json_error("{\"a\": \"x\"}");
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let e = json_error("{\"a\": 1, \"b\": 2}");
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains("unknown field `b`"), "{}", e.message);
        assert_eq!(json_error("{}").code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn submit_failures_map_to_503s() {
        let e = ApiError::from(SubmitFailure::Rejected(SubmitError::NotLeader {
            shard: 1,
            leader: Some(3),
        }));
        assert_eq!(
            (e.status(), e.code),
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotLeader)
        );
        assert!(e.message.contains("node 3"));
        let e = ApiError::from(SubmitFailure::Rejected(SubmitError::Overloaded(0)));
        assert_eq!(
            (e.status(), e.code, e.retry_after),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Overloaded,
                Some(1)
            )
        );
        let response = e.into_response();
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let e = ApiError::from(SubmitFailure::Retry(2));
        assert_eq!(e.code, ErrorCode::Retry);
        let e = ApiError::from(SubmitFailure::Stopped);
        assert_eq!(
            (e.status(), e.code),
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ShuttingDown)
        );
        assert_eq!(
            ApiError::from(EngineError::Stopped).code,
            ErrorCode::ShuttingDown
        );
    }

    #[test]
    fn error_shape_and_headers() {
        let e = ApiError::method_not_allowed("DELETE", "/api/v11/info", "GET");
        assert_eq!(
            e.body(),
            serde_json::json!({"error": {"code": "METHOD_NOT_ALLOWED", "message": e.message.clone()}})
        );
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{s}"
            );
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "GET");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let response = ApiError::shutting_down().into_response();
        assert_eq!(response.headers()[CONNECTION], "close");
    }
}
