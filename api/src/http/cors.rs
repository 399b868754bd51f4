//! Cross-origin resource sharing: off unless configured. By default the node sends no
//! `Access-Control-Allow-*` header, so a browser keeps every other origin's pages from reading
//! its answers (and from sending a preflighted request at all). `cors_allow_origins` names the
//! origins whose pages may: each gets `Access-Control-Allow-Origin` with its own origin echoed
//! (with `Vary: Origin`), or `*` when the list is `["*"]`. Credentials (cookies) are never
//! allowed; a bearer token travels in the `Authorization` header, which preflights allow.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode};

/// Origins one node allows at most (a short list read per cross-origin request).
pub const ORIGINS_MAX: usize = 64;
/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE_S: &str = "600";
const ALLOWED_METHODS: &str = "GET, POST, OPTIONS";
const ALLOWED_HEADERS: &str = "authorization, content-type, accept";
/// Headers of our answers that pages may read besides the CORS-safelisted ones.
const EXPOSED_HEADERS: &str = "retry-after, allow";

/// The configured policy.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cors {
    any: bool,
    origins: Vec<HeaderValue>,
}

impl Cors {
    /// Validates the configured origins: `*` alone, or each `scheme://host[:port]` exactly as
    /// browsers send it (no path, no trailing slash).
    pub fn parse(origins: &[String]) -> Result<Cors, String> {
        if origins.len() > ORIGINS_MAX {
            return Err(format!(
                "cors_allow_origins: {} origins, at most {ORIGINS_MAX}",
                origins.len()
            ));
        }
        if origins.iter().any(|o| o == "*") {
            if origins.len() > 1 {
                return Err("cors_allow_origins: \"*\" must be the only entry".into());
            }
            return Ok(Cors {
                any: true,
                origins: Vec::new(),
            });
        }
        let mut parsed = Vec::with_capacity(origins.len());
        for origin in origins {
            let valid = origin
                .split_once("://")
                .filter(|(scheme, rest)| {
                    matches!(*scheme, "http" | "https")
                        && !rest.is_empty()
                        && !rest.contains(['/', '?', '#', ' ', '@'])
                })
                .is_some();
            if !valid {
                return Err(format!(
                    "cors_allow_origins: {origin:?} is not an origin (scheme://host[:port], e.g. \
                     \"https://portal.example.com\", no path or trailing slash)"
                ));
            }
            parsed.push(HeaderValue::from_str(origin).map_err(|e| e.to_string())?);
        }
        Ok(Cors {
            any: false,
            origins: parsed,
        })
    }

    pub fn is_off(&self) -> bool {
        !self.any && self.origins.is_empty()
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if allowed.
    fn allow(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        self.origins.iter().find(|o| *o == origin).cloned()
    }

    /// A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin:
    /// the headers of its 204 answer. `None` for anything else (the request goes on as usual).
    pub fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<HeaderMap> {
        if self.is_off()
            || method != Method::OPTIONS
            || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let allow = self.allow(headers.get(header::ORIGIN))?;
        let mut out = HeaderMap::with_capacity(5);
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOWED_METHODS),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE_S),
        );
        out.insert(header::VARY, HeaderValue::from_static("origin"));
        Some(out)
    }

    /// Adds the CORS headers to an answer for a request from `origin`, if allowed.
    pub fn decorate(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        if let Some(allow) = self.allow(origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
            if !self.any {
                headers.append(header::VARY, HeaderValue::from_static("origin"));
            }
        }
    }
}

/// The status of a preflight answer.
pub const PREFLIGHT_STATUS: StatusCode = StatusCode::NO_CONTENT;

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        h
    }

    #[test]
    fn off_by_default_and_only_listed_origins_when_on() {
        let off = Cors::default();
        assert!(off
            .preflight(&Method::OPTIONS, &request("https://a.example"))
            .is_none());
        let mut headers = HeaderMap::new();
        off.decorate(
            Some(&HeaderValue::from_static("https://a.example")),
            &mut headers,
        );
        assert!(headers.is_empty());

        let on =
            Cors::parse(&["https://a.example".into(), "http://localhost:3000".into()]).unwrap();
        let pre = on
            .preflight(&Method::OPTIONS, &request("https://a.example"))
            .unwrap();
        assert_eq!(
            pre[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://a.example"
        );
        assert!(on
            .preflight(&Method::OPTIONS, &request("https://evil.example"))
            .is_none());
        let mut headers = HeaderMap::new();
        on.decorate(
            Some(&HeaderValue::from_static("https://evil.example")),
            &mut headers,
        );
        assert!(headers.is_empty());
        on.decorate(
            Some(&HeaderValue::from_static("http://localhost:3000")),
            &mut headers,
        );
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:3000"
        );
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));

        let any = Cors::parse(&["*".into()]).unwrap();
        let pre = any
            .preflight(&Method::OPTIONS, &request("https://b.example"))
            .unwrap();
        assert_eq!(pre[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }

    #[test]
    fn malformed_origins_are_refused_with_the_entry() {
        for bad in [
            "a.example",
            "https://a.example/",
            "ftp://a.example",
            "https://",
        ] {
            let error = Cors::parse(&[bad.into()]).unwrap_err();
            assert!(error.contains(bad), "{error}");
        }
        assert!(Cors::parse(&["*".into(), "https://a.example".into()]).is_err());
    }
}
