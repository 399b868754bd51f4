//! The portal: a live page every node serves at `/` (and its files under `/portal/`), plain
//! HTML, CSS and JavaScript written by hand in `api/src/http/portal/` and embedded in the binary.
//! The page reads the public V11 API of the node that served it (same origin) and refreshes by
//! polling; it is not part of the API description (`openapi.json` describes the JSON API).
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles, images and requests
//! from this origin only, no inline script or style, no framing), `X-Content-Type-Options:
//! nosniff` and `Referrer-Policy: no-referrer`, and an `ETag` (a hash of the embedded bytes) that
//! `If-None-Match` revalidates with 304. The page itself is `no-cache` (a browser revalidates it
//! on every load, so a node's new version shows at once); its files may be cached a short while.

use super::{Answer, HttpResponse};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{Request, Response, StatusCode};
use serde_json::Value;

/// What the portal's pages may load and do: everything from this origin only; no inline
/// script or style, no plugins, no `<base>`, no form posted anywhere, not framed.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// How long a browser may keep the page's files without asking again.
const ASSET_CACHE: &str = "public, max-age=600";

/// One embedded file of the portal.
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
    pub cache_control: &'static str,
    /// A hash of `body`, computed at compile time: the `ETag`.
    pub hash: u64,
}

impl Asset {
    const fn new(body: &'static [u8], content_type: &'static str, cache: &'static str) -> Asset {
        Asset {
            body,
            content_type,
            cache_control: cache,
            hash: fnv1a(body),
        }
    }
}

/// `GET /`: the page.
pub const INDEX: Asset = Asset::new(
    include_bytes!("../portal/index.html"),
    "text/html; charset=utf-8",
    "no-cache",
);
/// `GET /portal/app.js`: the polling and the lookups.
pub const APP_JS: Asset = Asset::new(
    include_bytes!("../portal/app.js"),
    "text/javascript; charset=utf-8",
    ASSET_CACHE,
);
/// `GET /portal/style.css`.
pub const STYLE_CSS: Asset = Asset::new(
    include_bytes!("../portal/style.css"),
    "text/css; charset=utf-8",
    ASSET_CACHE,
);
/// `GET /portal/icon.svg`: the page's icon (named by the page, so browsers do not ask for
/// `/favicon.ico`).
pub const ICON_SVG: Asset = Asset::new(
    include_bytes!("../portal/icon.svg"),
    "image/svg+xml",
    ASSET_CACHE,
);

/// FNV-1a, 64 bits: enough to tell two versions of a file apart.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// Whether an `If-None-Match` header names `etag` (or is `*`); weak tags compare alike.
fn matches(request_tags: &str, etag: &str) -> bool {
    request_tags
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Answers a request for `asset`: the file, or 304 when the client holds this version.
pub fn serve<T>(request: &Request<T>, asset: &Asset) -> Answer {
    let etag = format!("\"{:016x}\"", asset.hash);
    let fresh = request
        .headers()
        .get_all(IF_NONE_MATCH)
        .iter()
        .any(|v| v.to_str().is_ok_and(|tags| matches(tags, &etag)));
    let mut response: HttpResponse = if fresh {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Full::new(Bytes::from_static(asset.body)));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        r
    };
    let headers = response.headers_mut();
    let etag = HeaderValue::from_str(&etag).expect("hex digits in quotes are a header value");
    headers.insert(ETAG, etag);
    let fixed: [(HeaderName, &'static str); 5] = [
        (CACHE_CONTROL, asset.cache_control),
        (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (REFERRER_POLICY, "no-referrer"),
        (X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    Ok(response)
}

/// The portal's routes are not described in `openapi.json` (a null operation is left out).
pub fn undescribed() -> Value {
    Value::Null
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_embedded_and_reference_each_other() {
        let page = std::str::from_utf8(INDEX.body).unwrap();
        for path in ["/portal/app.js", "/portal/style.css", "/portal/icon.svg"] {
            assert!(
                page.contains(&format!("\"{path}\"")),
                "{path} not in the page"
            );
        }
        // The policy forbids inline script and style: the page has none.
        assert!(!page.contains("<script>") && !page.contains("style="));
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert_ne!(APP_JS.hash, STYLE_CSS.hash);
    }

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_star() {
        assert!(matches("\"a\"", "\"a\""));
        assert!(matches("\"b\", W/\"a\"", "\"a\""));
        assert!(matches("*", "\"a\""));
        assert!(!matches("\"b\"", "\"a\""));
        assert!(!matches("", "\"a\""));
    }
}
