//! The one error shape of the HTTP API (DESIGN.md section 8, a contract):
//! a 4xx/5xx status with `{"error":{"code":"<UPPER_SNAKE>","message":"<human text>"}}`.

use aurigraph_engine::replica::SubmitError;
use aurigraph_engine::runtime::{EngineError, SubmitFailure};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

/// Seconds a client is asked to wait (`Retry-After`) after `OVERLOADED` or `RETRY`.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// An error answer: status, stable code, human message, and the headers some statuses need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `Allow` header value (405 only).
    pub allow: Option<&'static str>,
    /// `Retry-After` header value in seconds (503 on overload).
    pub retry_after: Option<u32>,
    /// Ask the client to close the connection (shutdown).
    pub close: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            allow: None,
            retry_after: None,
            close: false,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::bad_request("INVALID_REQUEST", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn route_not_found(method: &str, path: &str) -> ApiError {
        ApiError::not_found(
            "NOT_FOUND",
            format!("no such endpoint: {method} {path} (see GET /api/v11/openapi.json)"),
        )
    }

    pub fn method_not_allowed(method: &str, path: &str, allow: &'static str) -> ApiError {
        ApiError {
            allow: Some(allow),
            ..ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                format!("{method} is not allowed on {path}; allowed: {allow}"),
            )
        }
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    pub fn too_many_transfers(count: usize, max: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "TOO_MANY_TRANSFERS",
            format!("batch holds {count} transfers, more than the limit of {max} per request"),
        )
    }

    pub fn unsupported_media_type(got: &str, accepted: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("Content-Type {got:?} is not supported here; send {accepted}"),
        )
    }

    pub fn shutting_down() -> ApiError {
        ApiError {
            close: true,
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SHUTTING_DOWN",
                "the node is shutting down; send the request to another validator or retry later",
            )
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message)
    }

    /// A JSON body that did not parse: syntax errors are `MALFORMED_JSON`, well-formed JSON of
    /// the wrong shape (types, missing or unknown fields) is `INVALID_REQUEST`. serde's message
    /// carries the line and column.
    pub fn from_json(error: &serde_json::Error) -> ApiError {
        use serde_json::error::Category;
        match error.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::bad_request("MALFORMED_JSON", format!("malformed JSON: {error}"))
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
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
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
        let unavailable =
            |code, message: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        match failure {
            SubmitFailure::Rejected(SubmitError::NotLeader { shard, leader }) => unavailable(
                "NOT_LEADER",
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
                ..unavailable(
                    "OVERLOADED",
                    format!("shard {shard} is overloaded: too many transfers wait for consensus; retry after {RETRY_AFTER_SECONDS} s"),
                )
            },
            SubmitFailure::Rejected(SubmitError::Membership { shard, reason }) => ApiError::new(
                StatusCode::CONFLICT,
                "MEMBERSHIP_CHANGE_REFUSED",
                format!("shard {shard}: {reason}"),
            ),
            SubmitFailure::Retry(shard) => ApiError {
                retry_after: Some(RETRY_AFTER_SECONDS),
                ..unavailable(
                    "RETRY",
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
                StatusCode::SERVICE_UNAVAILABLE,
                "ENGINE_FAILURE",
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
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "MALFORMED_JSON")
        );
        assert!(e.message.contains("line 1 column"), "{}", e.message);
        assert_eq!(json_error("{\"a\" 1}").code, "MALFORMED_JSON");
        assert_eq!(json_error("{\"a\": 1} x").code, "MALFORMED_JSON");
        let e = json_error("{\"a\": \"x\"}");
        assert_eq!(e.code, "INVALID_REQUEST");
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let e = json_error("{\"a\": 1, \"b\": 2}");
        assert_eq!(e.code, "INVALID_REQUEST");
        assert!(e.message.contains("unknown field `b`"), "{}", e.message);
        assert_eq!(json_error("{}").code, "INVALID_REQUEST");
    }

    #[test]
    fn submit_failures_map_to_503s() {
        let e = ApiError::from(SubmitFailure::Rejected(SubmitError::NotLeader {
            shard: 1,
            leader: Some(3),
        }));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "NOT_LEADER")
        );
        assert!(e.message.contains("node 3"));
        let e = ApiError::from(SubmitFailure::Rejected(SubmitError::Overloaded(0)));
        assert_eq!(
            (e.status, e.code, e.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, "OVERLOADED", Some(1))
        );
        let response = e.into_response();
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let e = ApiError::from(SubmitFailure::Retry(2));
        assert_eq!(e.code, "RETRY");
        let e = ApiError::from(SubmitFailure::Stopped);
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "SHUTTING_DOWN")
        );
        assert_eq!(ApiError::from(EngineError::Stopped).code, "SHUTTING_DOWN");
    }

    #[test]
    fn error_shape_and_headers() {
        let e = ApiError::method_not_allowed("DELETE", "/api/v11/info", "GET");
        assert_eq!(
            e.body(),
            serde_json::json!({"error": {"code": "METHOD_NOT_ALLOWED", "message": e.message.clone()}})
        );
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "GET");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let response = ApiError::shutting_down().into_response();
        assert_eq!(response.headers()[CONNECTION], "close");
    }
}
