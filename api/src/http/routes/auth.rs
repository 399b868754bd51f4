//! Who sends a request: `Authorization: Bearer <token>`, checked against the node's tokens
//! file (SHA-256 of each token at rest, compared in constant time: `aurigraph_wire::tokens`).

use super::Ctx;
use crate::http::error::{ApiError, ErrorCode};
use aurigraph_engine::tokens::{Principal, Role};
use hyper::Request;

/// The principal of the request's bearer token if it has `role`: 401 without a token or with
/// one this node does not accept (also when the node has no tokens file), 403 for a valid
/// token of another role, 429 when the token is over its request rate on this core
/// (`requests_per_s_per_token`).
pub fn require_role<B, T>(
    ctx: &Ctx<B>,
    request: &Request<T>,
    role: Role,
) -> Result<Principal, ApiError> {
    let unauthorized = |message: String| ApiError::new(ErrorCode::Unauthorized, message);
    let role_name = role.as_str();
    let header = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .ok_or_else(|| {
            unauthorized(format!(
                "this endpoint needs Authorization: Bearer <token of role {role_name}>"
            ))
        })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            unauthorized("the Authorization header must be \"Bearer <token>\"".into())
        })?;
    if ctx.settings.tokens.is_empty() {
        return Err(unauthorized(format!(
            "this node accepts no tokens: it was started without a tokens file (--tokens); \
             make a {role_name} token with aurigraph token new --role {role_name}"
        )));
    }
    let principal = ctx
        .settings
        .tokens
        .authenticate(token)
        .cloned()
        .ok_or_else(|| unauthorized("the token is not one this node accepts".into()))?;
    if principal.role != role {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "the token of {:?} has role {}; this endpoint needs role {role_name}",
                principal.name,
                principal.role.as_str()
            ),
        ));
    }
    ctx.principals
        .take(&principal.name)
        .map_err(ApiError::rate_limited)?;
    Ok(principal)
}
