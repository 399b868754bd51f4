//! Reading requests: media types, query parameters, bodies within the size limit.

use super::{Ctx, RequestBody};
use crate::http::direct::ReadBody;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::limits::BodyTooSlow;
use crate::http::types::RESULTS_MEDIA_TYPE;
use http_body_util::{BodyExt, Limited};
use hyper::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Request;

/// The media type of the request without parameters, lower case; `None` when absent.
pub fn content_type<T>(request: &Request<T>) -> Result<Option<String>, ApiError> {
    match request.headers().get(CONTENT_TYPE) {
        None => Ok(None),
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| ApiError::unsupported_media_type("<not text>", "application/json"))?;
            Ok(Some(
                text.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase(),
            ))
        }
    }
}

/// `application/json` or any `application/*+json`.
pub fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Whether the client asked for the compact results format.
pub fn wants_compact<T>(request: &Request<T>) -> bool {
    request.headers().get_all(ACCEPT).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|m| {
                m.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case(RESULTS_MEDIA_TYPE)
            })
        })
    })
}

/// `?wait=true|false` (default true).
pub fn wait_param<T>(request: &Request<T>) -> Result<bool, ApiError> {
    let mut wait = true;
    for pair in request.uri().query().unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "wait" {
            // Exactly the API description's boolean (a bare `?wait` or `wait=1` is refused
            // rather than guessed at).
            wait = match value {
                "true" => true,
                "false" => false,
                other => {
                    return Err(ApiError::invalid(format!(
                        "query parameter wait={other:?}: expected true or false"
                    )))
                }
            };
        }
    }
    Ok(wait)
}

/// Reads the whole body, refusing more than the node's `body_bytes_max`: first by
/// `Content-Length`, then while reading (`Limited`, for chunked bodies and lying lengths). The
/// body grows as its bytes arrive, within the core's budget for bodies being read (503
/// `OVERLOADED` past it); one that comes too slowly ([`crate::http::limits::BodyTooSlow`]) is
/// 408 `REQUEST_TIMEOUT` and closes the connection.
pub async fn read_body<B, T: RequestBody>(
    ctx: &Ctx<B>,
    mut request: Request<T>,
) -> Result<Vec<u8>, ApiError> {
    // Received already, straight from the socket (`http::direct`).
    match request.extensions_mut().remove::<ReadBody>() {
        Some(ReadBody::Whole(bytes)) => return Ok(bytes),
        Some(ReadBody::TooSlow(slow)) => return Err(ApiError::request_timeout(&slow)),
        Some(ReadBody::OverBudget) => {
            return Err(ApiError::bodies_over_budget(
                ctx.settings.body_bytes_budget_per_core,
            ))
        }
        None => {}
    }
    let limit = ctx.settings.body_bytes_max;
    let declared = match request.headers().get(CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::invalid("Content-Length is not a number"))?,
        ),
        None => None,
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let mut body = std::pin::pin!(Limited::new(request.into_body(), limit));
    let mut bytes = ctx.bodies.body(declared);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::payload_too_large(limit)
            } else if let Some(slow) = e.downcast_ref::<BodyTooSlow>() {
                ApiError::request_timeout(slow)
            } else {
                ApiError::new(
                    ErrorCode::BodyReadFailed,
                    format!("could not read the request body: {e}"),
                )
            }
        })?;
        if let Ok(data) = frame.into_data() {
            bytes.extend(&data).map_err(|_| {
                ApiError::bodies_over_budget(ctx.settings.body_bytes_budget_per_core)
            })?;
        }
    }
    Ok(bytes.into_bytes())
}

/// `?name=N` as an integer in `min..=max` (`default` when absent); 400 otherwise.
pub fn int_param<T>(
    request: &Request<T>,
    name: &str,
    (min, max, default): (usize, usize, usize),
) -> Result<usize, ApiError> {
    let mut value = None;
    for pair in request.uri().query().unwrap_or("").split('&') {
        let (key, v) = pair.split_once('=').unwrap_or((pair, ""));
        if key == name {
            value = Some(v);
        }
    }
    let Some(v) = value else {
        return Ok(default);
    };
    match v.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(format!(
            "query parameter {name}={v:?}: expected an integer in {min}..={max}"
        ))),
    }
}
