//! How the API's errors read over gRPC: each [`ApiError`] code has one gRPC status code; the
//! message keeps the HTTP API's text, and the `aurigraph-error-code` metadata its stable
//! UPPER_SNAKE code (the one `{"error":{"code"}}` carries over HTTP), so that clients can
//! match on the same codes over both protocols.

use crate::http::error::{ApiError, ErrorCode};
use tonic::{Code, Status};

/// The metadata key that carries an error's UPPER_SNAKE code.
pub const ERROR_CODE_KEY: &str = "aurigraph-error-code";

/// The gRPC status code of an API error code.
pub fn grpc_code(code: ErrorCode) -> Code {
    match code {
        ErrorCode::MalformedJson
        | ErrorCode::InvalidRequest
        | ErrorCode::InvalidAddress
        | ErrorCode::InvalidSignature
        | ErrorCode::InvalidTxHash
        | ErrorCode::InvalidBatch
        | ErrorCode::BodyReadFailed
        | ErrorCode::UnsupportedMediaType => Code::InvalidArgument,
        ErrorCode::PayloadTooLarge | ErrorCode::TooManyTransfers => Code::ResourceExhausted,
        ErrorCode::RateLimited | ErrorCode::Overloaded => Code::ResourceExhausted,
        ErrorCode::NotFound | ErrorCode::MethodNotAllowed => Code::Unimplemented,
        ErrorCode::TransactionNotFound
        | ErrorCode::BlockNotFound
        | ErrorCode::NoVerifiedPulse
        | ErrorCode::NoArchive => Code::NotFound,
        ErrorCode::Unauthorized => Code::Unauthenticated,
        ErrorCode::Forbidden => Code::PermissionDenied,
        ErrorCode::RequestTimeout => Code::DeadlineExceeded,
        ErrorCode::NotLeader
        | ErrorCode::Retry
        | ErrorCode::ShuttingDown
        | ErrorCode::ArchiveUnavailable => Code::Unavailable,
        ErrorCode::MembershipChangeRefused => Code::FailedPrecondition,
        ErrorCode::EngineFailure | ErrorCode::Internal => Code::Internal,
    }
}

/// The gRPC status of an API error: its code mapped, its message, its UPPER_SNAKE code in the
/// `aurigraph-error-code` metadata.
pub fn status_of(error: ApiError) -> Status {
    let mut status = Status::new(grpc_code(error.code), error.message);
    if let Ok(value) = error.code.as_str().parse() {
        status.metadata_mut().insert(ERROR_CODE_KEY, value);
    }
    status
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        status_of(error)
    }
}

/// INVALID_ARGUMENT with the API's `INVALID_REQUEST` code.
pub fn invalid(message: impl Into<String>) -> Status {
    status_of(ApiError::invalid(message))
}

/// A byte field of exactly `N` bytes, or INVALID_ARGUMENT naming the field (and `code`).
pub fn fixed<const N: usize>(
    bytes: &[u8],
    field: &str,
    code: ErrorCode,
) -> Result<[u8; N], Status> {
    bytes.try_into().map_err(|_| {
        status_of(ApiError::new(
            code,
            format!("{field} must be {N} bytes, not {}", bytes.len()),
        ))
    })
}

/// The name a gRPC status code has in `grpc-status` documentation (`OK`, `INVALID_ARGUMENT`,
/// ...), for metrics labels.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_error_keeps_its_code_in_metadata() {
        for code in ErrorCode::ALL {
            let status = status_of(ApiError::new(code, "why"));
            assert_eq!(status.message(), "why");
            assert_eq!(
                status.metadata().get(ERROR_CODE_KEY).unwrap(),
                code.as_str()
            );
            assert_ne!(status.code(), Code::Ok);
        }
        assert_eq!(grpc_code(ErrorCode::Unauthorized), Code::Unauthenticated);
        assert_eq!(grpc_code(ErrorCode::Forbidden), Code::PermissionDenied);
        assert_eq!(grpc_code(ErrorCode::Overloaded), Code::ResourceExhausted);
    }
}
