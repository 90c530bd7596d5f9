//! Transport-independent request heads and replies.
//!
//! Request handling works on [`Head`] and [`Reply`] instead of
//! `tiny_http::Request`, so unit tests and fuzz targets can drive it with
//! any bytes, and the server module is the only place that knows tiny_http.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::error::ApiError;

/// The parts of a request that routing and the cheap checks need.
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string, without the leading `?`.
    pub query: String,
    /// Header names in lower case, values as sent.
    pub headers: Vec<(String, String)>,
    /// The declared `Content-Length`, if any.
    pub content_length: Option<u64>,
}

impl Head {
    /// Builds a head, splitting the request target as [`path_and_query`] does.
    pub fn new(method: &str, target: &str, headers: Vec<(String, String)>) -> Head {
        let (path, query) = path_and_query(target);
        let content_length = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .and_then(|(_, value)| value.trim().parse().ok());
        Head {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            headers,
            content_length,
        }
    }

    /// Returns the first value of a header; `name` must be lower case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Splits a request target into path and query.
///
/// The absolute form, `http://host:port/path?query` (RFC 9112, section 3.2.2,
/// which servers must accept), loses its scheme and authority, and an empty
/// path becomes `/`, so it routes like the origin form `/path?query`. Only
/// `http` and `https` targets with a host and no user info count as absolute
/// form (RFC 9110, sections 4.2.1 and 4.2.4). Any other target, such as the
/// asterisk form `*`, is returned as it is and matches no path but its own.
pub fn path_and_query(target: &str) -> (&str, &str) {
    let (rest, absolute) = match strip_scheme_and_authority(target) {
        Some(rest) => (rest, true),
        None => (target, false),
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if absolute && path.is_empty() {
        ("/", query)
    } else {
        (path, query)
    }
}

/// Returns what follows the authority of an `http` or `https` absolute-form target.
fn strip_scheme_and_authority(target: &str) -> Option<&str> {
    let (scheme, authority, rest) = split_scheme_and_authority(target)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(rest)
}

/// Splits `scheme://authority/rest` into its scheme, its authority (user
/// info included) and the rest, which starts at the first `/`, `?` or `#`.
pub fn split_scheme_and_authority(target: &str) -> Option<(&str, &str, &str)> {
    let (scheme, after_scheme) = target.split_once("://")?;
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let (authority, rest) = after_scheme.split_at(authority_end);
    Some((scheme, authority, rest))
}

/// A reply ready to send.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body,
        }
    }

    /// Builds a 204 reply, which has neither a body nor a content type.
    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Builds a JSON reply from a `serde_json` value.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        let body = serde_json::to_vec(value).expect("a JSON value always serializes");
        Reply::new(status, "application/json", body)
    }

    /// Builds the JSON error reply for `error`, with the headers its status needs.
    pub fn error(error: &ApiError, request_id: &str) -> Reply {
        let mut reply = Reply::new(
            error.status(),
            "application/json",
            error.to_json(request_id),
        );
        match error {
            ApiError::MethodNotAllowed { allow } => reply.set_header("Allow", allow.to_string()),
            ApiError::Overloaded { retry_after_secs } => {
                reply.set_header("Retry-After", retry_after_secs.to_string())
            }
            ApiError::ShuttingDown => reply.set_header("Retry-After", "1".to_string()),
            _ => {}
        }
        reply
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.set_header(name, value);
        self
    }

    pub fn set_header(&mut self, name: &'static str, value: String) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name, value));
    }
}

/// Maximum length of a client-supplied request id that is echoed back.
const MAX_REQUEST_ID_LEN: usize = 64;

/// Returns the client's `X-Request-Id` when it is short and of safe characters, else a new id.
///
/// Only `[A-Za-z0-9._-]` is accepted, so the id is safe to put in headers,
/// JSON and log lines as it is.
pub fn request_id(client_id: Option<&str>) -> String {
    match client_id {
        Some(id) if is_safe_request_id(id) => id.to_string(),
        _ => generate_request_id(),
    }
}

fn is_safe_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Generates a 16-hex-digit id: a per-process random key hashed with a counter.
pub fn generate_request_id() -> String {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = KEYS.get_or_init(RandomState::new).build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_splits_path_and_query() {
        let head = Head::new("POST", "/process?w=10&h=2", vec![]);
        assert_eq!(head.path, "/process");
        assert_eq!(head.query, "w=10&h=2");
        let head = Head::new("GET", "/health", vec![]);
        assert_eq!(head.query, "");
    }

    #[test]
    fn absolute_form_routes_like_origin_form() {
        let cases = [
            ("http://127.0.0.1:3000/process?w=10", "/process", "w=10"),
            ("HTTPS://example.com/health", "/health", ""),
            ("http://[::1]:3000/process?w=1&h=2", "/process", "w=1&h=2"),
            ("http://example.com", "/", ""),
            ("http://example.com?w=3", "/", "w=3"),
            ("http://example.com/a/http://b/", "/a/http://b/", ""),
        ];
        for (target, path, query) in cases {
            let head = Head::new("POST", target, vec![]);
            assert_eq!(head.path, path, "{target}");
            assert_eq!(head.query, query, "{target}");
        }
    }

    #[test]
    fn other_targets_keep_their_path() {
        let cases = [
            ("*", "*"),
            ("http:///process", "http:///process"),
            ("http://user@host/process", "http://user@host/process"),
            ("ftp://host/process", "ftp://host/process"),
            ("/process/http://host/x", "/process/http://host/x"),
            ("example.com:443", "example.com:443"),
        ];
        for (target, path) in cases {
            assert_eq!(Head::new("GET", target, vec![]).path, path, "{target}");
        }
    }

    #[test]
    fn head_reads_content_length() {
        let headers = vec![("content-length".to_string(), "42".to_string())];
        assert_eq!(Head::new("POST", "/", headers).content_length, Some(42));
    }

    #[test]
    fn safe_client_request_id_is_echoed() {
        assert_eq!(request_id(Some("abc-123_X.y")), "abc-123_X.y");
    }

    #[test]
    fn unsafe_client_request_id_is_replaced() {
        for bad in ["", "a b", "a\r\nSet-Cookie: x", "<script>", &"a".repeat(65)] {
            let id = request_id(Some(bad));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 16, "{id}");
        }
    }

    #[test]
    fn generated_request_ids_differ() {
        assert_ne!(request_id(None), request_id(None));
    }

    #[test]
    fn error_reply_carries_allow_and_retry_after() {
        let reply = Reply::error(&ApiError::MethodNotAllowed { allow: "POST" }, "id");
        assert!(reply.headers.contains(&("Allow", "POST".to_string())));
        let reply = Reply::error(
            &ApiError::Overloaded {
                retry_after_secs: 2,
            },
            "id",
        );
        assert!(reply.headers.contains(&("Retry-After", "2".to_string())));
        assert_eq!(reply.status, 503);
    }
}
