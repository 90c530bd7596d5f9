//! Logger set-up and the one log line written per request.
//!
//! The level comes from `RUST_LOG` (default `info`). A request's line is
//! logged at `error` for 5xx other than 503, and at `warn` for 4xx and 503,
//! since a full queue or a drain is expected under load. Other lines log at
//! `info`, except successful probes of `/health`, `/ready` and `/metrics`,
//! which log at `debug` so a load balancer polling every second does not
//! flood the log. The error replies that the HTTP layer writes before routing
//! log at `warn` too. The line format has no field for a header value, so
//! an API key cannot leak into the log.

use std::borrow::Cow;
use std::time::Duration;

use log::Level;

use crate::http;
use crate::pipeline::Output;

/// Installs the logger; the level comes from `RUST_LOG`, default `info`.
pub fn init() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
}

/// The facts of one completed request.
#[derive(Debug, Default)]
pub struct RequestRecord<'a> {
    pub id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// Body bytes read.
    pub bytes_in: u64,
    /// Reply body bytes.
    pub bytes_out: u64,
    /// The image result, for successful `/process` requests.
    pub output: Option<&'a Output>,
    pub read: Duration,
    pub total: Duration,
    /// The error code for failed requests.
    pub error: Option<&'static str>,
    /// Whether this is a probe that logs at `debug` when it succeeds.
    pub quiet: bool,
}

/// Logs one line for a completed request.
pub fn log_request(record: &RequestRecord<'_>) {
    let level = match record.status {
        // 503 is a full queue or a drain: expected under load, not a fault.
        503 => Level::Warn,
        500.. => Level::Error,
        400..=499 => Level::Warn,
        _ if record.quiet => Level::Debug,
        _ => Level::Info,
    };
    if log::log_enabled!(level) {
        log::log!(level, "{}", format_request(record));
    }
}

/// The facts of an error reply that the HTTP layer (tiny_http) wrote by itself,
/// such as 431 for an oversized head or 503 over the connection cap.
#[derive(Debug, Default)]
pub struct HttpLayerRecord<'a> {
    pub id: &'a str,
    /// The method, when the request line was received and parsed.
    pub method: Option<&'a str>,
    /// The path without its query, when the request line was received and parsed.
    pub path: Option<&'a str>,
    pub status: u16,
    /// Reply body bytes.
    pub bytes_out: usize,
    /// The error code of the JSON body.
    pub error: &'a str,
    /// Whether writing the reply failed, as it does when the client has
    /// already reset the connection.
    pub write_failed: bool,
}

/// Logs one line for an error reply of the HTTP layer, always at `warn`.
/// Each one comes from the client (a malformed, slow or oversized head, a
/// small body that ended early or stalled, or an HTTP/2 request line) or from
/// the connection cap, not from a fault of the service.
pub fn log_http_layer_reply(record: &HttpLayerRecord<'_>) {
    if log::log_enabled!(Level::Warn) {
        log::warn!("{}", format_http_layer_reply(record));
    }
}

fn format_http_layer_reply(record: &HttpLayerRecord<'_>) -> String {
    let mut line = format!(
        "request id={} method={} path={} status={} bytes_out={} error={} layer=http",
        record.id,
        sanitize(record.method.unwrap_or("-")),
        sanitize(record.path.unwrap_or("-")),
        record.status,
        record.bytes_out,
        record.error
    );
    if record.write_failed {
        line.push_str(" write_failed=true");
    }
    line
}

fn format_request(record: &RequestRecord<'_>) -> String {
    let mut line = format!(
        "request id={} method={} path={} status={} bytes_in={} bytes_out={}",
        record.id,
        record.method,
        sanitize(record.path),
        record.status,
        record.bytes_in,
        record.bytes_out
    );
    if let Some(output) = record.output {
        let (iw, ih) = output.input_size;
        let (ow, oh) = output.output_size;
        line.push_str(&format!(
            " input={}x{} {} output={}x{} {} frames={} read_ms={:.1} decode_ms={:.1} transform_ms={:.1} encode_ms={:.1}",
            iw, ih, output.input_format, ow, oh, output.format.mime(), output.frames,
            millis(record.read), millis(output.timings.decode),
            millis(output.timings.transform), millis(output.timings.encode)
        ));
    }
    if let Some(code) = record.error {
        line.push_str(&format!(" error={code}"));
    }
    line.push_str(&format!(" total_ms={:.1}", millis(record.total)));
    line
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Truncates a client-supplied path and escapes control characters, so one
/// request cannot forge extra log lines. User info in an absolute-form
/// target (`http://user:password@host/`) is replaced by `***`.
fn sanitize(path: &str) -> String {
    let path = redact_user_info(path);
    let mut clean: String = path
        .chars()
        .take(128)
        .flat_map(char::escape_default)
        .collect();
    if path.chars().count() > 128 {
        clean.push_str("...");
    }
    clean
}

/// Replaces the user info of a `scheme://user@host` target with `***`.
fn redact_user_info(target: &str) -> Cow<'_, str> {
    let Some((scheme, authority, rest)) = http::split_scheme_and_authority(target) else {
        return Cow::Borrowed(target);
    };
    match authority.rfind('@') {
        Some(at) => Cow::Owned(format!("{scheme}://***{}{rest}", &authority[at..])),
        None => Cow::Borrowed(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_never_reaches_the_log() {
        let line = sanitize("http://admin:hunter2@127.0.0.1:3000/process?w=1");
        assert_eq!(line, "http://***@127.0.0.1:3000/process?w=1");
        assert_eq!(sanitize("/process?next=a@b"), "/process?next=a@b");
        assert_eq!(sanitize("http://host/a@b"), "http://host/a@b");
    }

    #[test]
    fn request_line_names_id_status_and_sizes() {
        let record = RequestRecord {
            id: "abc",
            method: "POST",
            path: "/process",
            status: 413,
            bytes_in: 0,
            bytes_out: 120,
            error: Some("body_too_large"),
            total: Duration::from_millis(2),
            ..RequestRecord::default()
        };
        let line = format_request(&record);
        assert_eq!(
            line,
            "request id=abc method=POST path=/process status=413 bytes_in=0 bytes_out=120 error=body_too_large total_ms=2.0"
        );
    }

    #[test]
    fn http_layer_line_names_id_status_and_code() {
        let record = HttpLayerRecord {
            id: "0123456789abcdef",
            method: Some("POST"),
            path: Some("/process"),
            status: 400,
            bytes_out: 160,
            error: "bad_request",
            write_failed: false,
        };
        assert_eq!(
            format_http_layer_reply(&record),
            "request id=0123456789abcdef method=POST path=/process status=400 bytes_out=160 error=bad_request layer=http"
        );
        let unparsed = HttpLayerRecord {
            id: "0123456789abcdef",
            status: 414,
            error: "uri_too_long",
            ..HttpLayerRecord::default()
        };
        assert_eq!(
            format_http_layer_reply(&unparsed),
            "request id=0123456789abcdef method=- path=- status=414 bytes_out=0 error=uri_too_long layer=http"
        );
    }

    #[test]
    fn http_layer_line_marks_failed_write() {
        let record = HttpLayerRecord {
            id: "0123456789abcdef",
            method: Some("POST"),
            path: Some("/process"),
            status: 400,
            bytes_out: 140,
            error: "incomplete_body",
            write_failed: true,
        };
        assert_eq!(
            format_http_layer_reply(&record),
            "request id=0123456789abcdef method=POST path=/process status=400 bytes_out=140 error=incomplete_body layer=http write_failed=true"
        );
    }

    #[test]
    fn control_characters_in_path_are_escaped() {
        assert_eq!(sanitize("/a\nb"), "/a\\nb");
        assert!(sanitize(&"x".repeat(500)).ends_with("..."));
    }
}
