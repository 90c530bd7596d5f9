//! Error replies that the server writes by itself, such as 400 for a malformed request head or
//! 503 over `Limits::max_connections`, and the hook through which the application gives each
//! of them a request id and logs it.
//!
//! These replies never reach the application as a `Request`, so without the hook they would
//! carry no request id and leave no trace in the application's log.

use std::fmt::Debug;
use std::io::{Cursor, Write};

use crate::common::{HTTPVersion, Header, StatusCode};
use crate::Response;

/// Receives the error replies that the server writes by itself, so that each one carries a
/// request id and the application can log it.
///
/// Set it in `ServerConfig::error_reply_hook`. Both methods are called on the connection's
/// thread, or for the 503 over `Limits::max_connections` on the accept thread, so they must
/// be quick and must not block.
pub trait ErrorReplyHook: Debug + Send + Sync {
    /// Returns a new request id, sent in the reply's `X-Request-Id` header and in the
    /// `request_id` field of its JSON body; `None` sends neither. An id that is not 1 to 64
    /// characters of `A-Z a-z 0-9 . _ -` is not sent.
    fn request_id(&self) -> Option<String>;

    /// Reports a reply once it has been written, or once writing it has failed.
    fn replied(&self, reply: &ErrorReply<'_>);
}

/// An error reply that the server wrote by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorReply<'a> {
    /// The HTTP status code, such as 431.
    pub status: u16,
    /// The machine-readable `code` of the JSON body, such as `header_too_large`.
    pub code: &'a str,
    /// The id sent in `X-Request-Id`, if the hook returned a valid one.
    pub request_id: Option<&'a str>,
    /// The request method, when the request line was received and parsed.
    pub method: Option<&'a str>,
    /// The request target as sent, when the request line was received and parsed.
    pub url: Option<&'a str>,
    /// Length of the JSON body in bytes.
    pub body_len: usize,
    /// Whether writing the reply to the socket succeeded. A reply can be written and still
    /// be lost when the client has gone, so only `false` is certain.
    pub written: bool,
}

/// Maximum length of a request id that the server sends.
const MAX_REQUEST_ID_LEN: usize = 64;

/// The status, code and message of an error reply, before it gets a request id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorReplyKind {
    pub status: u16,
    pub code: &'static str,
    /// A static text without `"` or `\`, so it needs no JSON escaping.
    pub message: &'static str,
}

/// An error reply with its request id, ready to be written.
pub(crate) struct PreparedReply<'h> {
    kind: ErrorReplyKind,
    request_id: Option<String>,
    hook: Option<&'h dyn ErrorReplyHook>,
}

impl<'h> PreparedReply<'h> {
    /// Asks the hook, if any, for a request id.
    pub(crate) fn new(
        kind: ErrorReplyKind,
        hook: Option<&'h dyn ErrorReplyHook>,
    ) -> PreparedReply<'h> {
        let request_id = hook.and_then(|hook| hook.request_id()).filter(|id| {
            let valid = is_valid_request_id(id);
            if !valid {
                log::warn!("The error reply hook returned an invalid request id; sending none");
            }
            valid
        });
        PreparedReply {
            kind,
            request_id,
            hook,
        }
    }

    pub(crate) fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Renders the JSON body in the key order that `serde_json` gives the application's own
    /// error bodies: `{"error": {"code", "message", "request_id", "status"}}`.
    pub(crate) fn body(&self) -> String {
        let ErrorReplyKind {
            status,
            code,
            message,
        } = self.kind;
        let request_id = match &self.request_id {
            Some(id) => format!(r#","request_id":"{id}""#),
            None => String::new(),
        };
        format!(
            r#"{{"error":{{"code":"{code}","message":"{message}"{request_id},"status":{status}}}}}"#
        )
    }

    /// Writes the reply with `Content-Type: application/json`, `X-Request-Id` when there is an
    /// id and, if `close` is set, `Connection: close`; then reports it to the hook.
    ///
    /// `request_line` gives the method and target when they are known. A write error only
    /// sets `ErrorReply::written` to false, since the connection is being given up anyway.
    pub(crate) fn write<W: Write>(
        self,
        writer: W,
        version: HTTPVersion,
        close: bool,
        request_line: Option<(&str, &str)>,
    ) {
        let body = self.body();
        let body_len = body.len();
        let mut response = Response::from_string(body)
            .with_status_code(StatusCode(self.kind.status))
            .with_header(static_header("Content-Type", "application/json"));
        if let Some(id) = &self.request_id {
            let header = Header::from_bytes(&b"X-Request-Id"[..], id.as_bytes())
                .expect("a valid request id is a valid header value");
            response.add_header(header);
        }
        if close {
            response = response.with_connection_close();
        }
        let written = write_response(response, writer, version);
        self.report(request_line, body_len, written);
    }

    /// Tells the hook, if any, that the reply was written, or that writing it failed.
    pub(crate) fn report(
        &self,
        request_line: Option<(&str, &str)>,
        body_len: usize,
        written: bool,
    ) {
        if let Some(hook) = self.hook {
            hook.replied(&ErrorReply {
                status: self.kind.status,
                code: self.kind.code,
                request_id: self.request_id(),
                method: request_line.map(|(method, _)| method),
                url: request_line.map(|(_, url)| url),
                body_len,
                written,
            });
        }
    }
}

/// Writes the whole response, body included, and flushes it. Returns whether both succeeded.
fn write_response<W: Write>(
    response: Response<Cursor<Vec<u8>>>,
    mut writer: W,
    version: HTTPVersion,
) -> bool {
    // `raw_print` does not flush, and a buffered reply would wait for the connection's next
    // write or close.
    response
        .raw_print(&mut writer, version, &[], false, None)
        .and_then(|()| writer.flush())
        .is_ok()
}

fn static_header(name: &'static str, value: &'static str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a static header is valid")
}

fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const TOO_LARGE: ErrorReplyKind = ErrorReplyKind {
        status: 431,
        code: "header_too_large",
        message: "the head is too large",
    };

    /// Status, code, request id, target and body length of a reported reply.
    type Reported = (u16, String, Option<String>, Option<String>, usize);

    /// Returns a fixed id and records every reply reported to it.
    #[derive(Debug, Default)]
    struct FixedId {
        id: &'static str,
        replies: Mutex<Vec<Reported>>,
    }

    impl ErrorReplyHook for FixedId {
        fn request_id(&self) -> Option<String> {
            Some(self.id.to_string())
        }

        fn replied(&self, reply: &ErrorReply<'_>) {
            self.replies.lock().unwrap().push((
                reply.status,
                reply.code.to_string(),
                reply.request_id.map(str::to_string),
                reply.url.map(str::to_string),
                reply.body_len,
            ));
        }
    }

    #[test]
    fn body_without_hook_has_no_request_id() {
        let reply = PreparedReply::new(TOO_LARGE, None);
        assert_eq!(
            reply.body(),
            r#"{"error":{"code":"header_too_large","message":"the head is too large","status":431}}"#
        );
    }

    #[test]
    fn reply_carries_the_hooks_id_in_header_and_body() {
        let hook = FixedId {
            id: "0123456789abcdef",
            ..FixedId::default()
        };
        let mut written = Vec::new();
        PreparedReply::new(TOO_LARGE, Some(&hook)).write(
            &mut written,
            HTTPVersion(1, 1),
            true,
            Some(("GET", "/a")),
        );
        let text = String::from_utf8(written).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();

        assert!(head.starts_with("HTTP/1.1 431 "), "{}", head);
        assert!(
            head.contains("\r\nX-Request-Id: 0123456789abcdef"),
            "{}",
            head
        );
        assert!(head.contains("\r\nConnection: close"), "{}", head);
        assert!(
            head.contains("\r\nContent-Type: application/json"),
            "{}",
            head
        );
        assert!(
            head.contains(&format!("\r\nContent-Length: {}", body.len())),
            "{}",
            head
        );
        assert_eq!(
            body,
            r#"{"error":{"code":"header_too_large","message":"the head is too large","request_id":"0123456789abcdef","status":431}}"#
        );

        let replies = hook.replies.lock().unwrap();
        assert_eq!(
            *replies,
            vec![(
                431,
                "header_too_large".to_string(),
                Some("0123456789abcdef".to_string()),
                Some("/a".to_string()),
                body.len()
            )]
        );
    }

    /// A writer whose every write fails, like a socket whose peer has reset the connection.
    struct ResetSocket;

    impl Write for ResetSocket {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::ConnectionReset.into())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::ConnectionReset.into())
        }
    }

    /// Records whether each reported reply was written.
    #[derive(Debug, Default)]
    struct WrittenFlags(Mutex<Vec<bool>>);

    impl ErrorReplyHook for WrittenFlags {
        fn request_id(&self) -> Option<String> {
            None
        }

        fn replied(&self, reply: &ErrorReply<'_>) {
            self.0.lock().unwrap().push(reply.written);
        }
    }

    #[test]
    fn failed_write_is_reported_as_not_written() {
        let hook = WrittenFlags::default();
        PreparedReply::new(TOO_LARGE, Some(&hook)).write(
            ResetSocket,
            HTTPVersion(1, 1),
            true,
            None,
        );
        PreparedReply::new(TOO_LARGE, Some(&hook)).write(Vec::new(), HTTPVersion(1, 1), true, None);
        assert_eq!(*hook.0.lock().unwrap(), vec![false, true]);
    }

    #[test]
    fn invalid_id_from_hook_is_not_sent() {
        for id in ["", "a b", "a\r\nSet-Cookie: x", "\"quoted\""] {
            let hook = FixedId {
                id,
                ..FixedId::default()
            };
            let reply = PreparedReply::new(TOO_LARGE, Some(&hook));
            assert_eq!(reply.request_id(), None, "{:?}", id);
            assert!(!reply.body().contains("request_id"), "{:?}", id);
        }
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        assert!(!is_valid_request_id(&long));
        assert!(is_valid_request_id(&long[1..]));
    }
}
