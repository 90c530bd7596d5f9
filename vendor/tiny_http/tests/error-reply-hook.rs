//! The error replies that the server writes by itself carry the request id from
//! `ServerConfig::error_reply_hook` in `X-Request-Id` and in the JSON body, and the hook receives
//! a report of each of them.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{ErrorReply, ErrorReplyHook, Limits, Server};

#[allow(dead_code)]
mod support;

use support::{connect, has_connection_close, new_server_with_hook, serve_hello};

/// The report the hook received for one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reported {
    status: u16,
    code: String,
    request_id: Option<String>,
    method: Option<String>,
    url: Option<String>,
    body_len: usize,
    written: bool,
}

/// Hands out the ids `id-1`, `id-2`, ... and records every report it receives.
#[derive(Debug, Default)]
struct Recorder {
    next_id: AtomicU64,
    replies: Mutex<Vec<Reported>>,
}

impl ErrorReplyHook for Recorder {
    fn request_id(&self) -> Option<String> {
        Some(format!(
            "id-{}",
            self.next_id.fetch_add(1, Ordering::SeqCst) + 1
        ))
    }

    fn replied(&self, reply: &ErrorReply<'_>) {
        self.replies.lock().unwrap().push(Reported {
            status: reply.status,
            code: reply.code.to_string(),
            request_id: reply.request_id.map(str::to_string),
            method: reply.method.map(str::to_string),
            url: reply.url.map(str::to_string),
            body_len: reply.body_len,
            written: reply.written,
        });
    }
}

impl Recorder {
    /// Waits up to 3 s for the hook to have received `count` reports, and returns them.
    fn wait_for(&self, count: usize) -> Vec<Reported> {
        let start = Instant::now();
        loop {
            let replies = self.replies.lock().unwrap().clone();
            if replies.len() >= count || start.elapsed() > Duration::from_secs(3) {
                return replies;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Starts a server that answers "hello" to every request, with a new `Recorder` as its hook.
fn start(limits: Limits) -> (std::net::SocketAddr, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let hook: Arc<dyn ErrorReplyHook> = recorder.clone();
    let server = new_server_with_hook(limits, Some(hook));
    (serve_hello(server, Duration::from_secs(10)), recorder)
}

/// Sends `request` on a new connection and returns everything received until the close.
fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut client = connect(addr);
    client.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    client.read_to_string(&mut response).unwrap();
    response
}

/// Returns the value of the first header named `name` in the response text.
fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Returns the body of the first response in the text, checking it against `Content-Length`.
fn first_body(response: &str) -> &str {
    let length: usize = header(response, "Content-Length").unwrap().parse().unwrap();
    let start = response.find("\r\n\r\n").unwrap() + 4;
    assert!(response.len() >= start + length, "response: {:?}", response);
    &response[start..start + length]
}

#[test]
fn head_errors_carry_the_hooks_id() {
    let (addr, recorder) = start(Limits {
        max_header_line_size: 1024,
        ..Limits::default()
    });
    let long_header = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(2000));
    let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(2000));
    // (request, status, code, the target in the hook's report)
    let cases = [
        (
            "GET /a HTTP/1.1\r\nBad header\r\n\r\n",
            "400 ",
            "bad_request",
            Some("/a"),
        ),
        (long_header.as_str(), "431 ", "header_too_large", Some("/")),
        (long_line.as_str(), "414 ", "uri_too_long", None),
        ("GET /a\r\n\r\n", "400 ", "bad_request", None),
    ];

    for (index, (request, status, code, _)) in cases.iter().enumerate() {
        let id = format!("id-{}", index + 1);
        let response = exchange(addr, request);
        assert!(
            response.starts_with(&format!("HTTP/1.1 {}", status)),
            "response: {:?}",
            response
        );
        assert_eq!(header(&response, "X-Request-Id"), Some(id.as_str()));
        assert!(has_connection_close(&response), "response: {:?}", response);
        let body = first_body(&response);
        let expected = format!(r#""request_id":"{}","status":"#, id);
        assert!(body.contains(&expected), "body: {}", body);
        assert!(
            body.contains(&format!(r#""code":"{}""#, code)),
            "body: {}",
            body
        );
    }

    let replies = recorder.wait_for(cases.len());
    assert_eq!(replies.len(), cases.len(), "{:?}", replies);
    for (index, (reply, (_, status, code, url))) in replies.iter().zip(&cases).enumerate() {
        let id = format!("id-{}", index + 1);
        assert_eq!(reply.status.to_string(), status.trim());
        assert_eq!(reply.code, *code);
        assert_eq!(reply.request_id.as_deref(), Some(id.as_str()));
        assert_eq!(reply.url.as_deref(), *url, "{:?}", reply);
        let method = url.map(|_| "GET");
        assert_eq!(reply.method.as_deref(), method, "{:?}", reply);
    }
}

#[test]
fn reported_body_length_matches_what_was_sent() {
    let (addr, recorder) = start(Limits::default());
    let response = exchange(
        addr,
        "POST /upload HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let body = first_body(&response);

    let replies = recorder.wait_for(1);
    assert_eq!(
        replies,
        vec![Reported {
            status: 400,
            code: "bad_request".to_string(),
            request_id: Some("id-1".to_string()),
            method: Some("POST".to_string()),
            url: Some("/upload".to_string()),
            body_len: body.len(),
            written: true,
        }]
    );
}

#[test]
fn expectation_failed_sends_its_body() {
    let (addr, recorder) = start(Limits::default());
    let response = exchange(
        addr,
        "POST / HTTP/1.1\r\nHost: localhost\r\nExpect: something\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 417 "), "{:?}", response);
    // Content-Length announces the JSON body, so the body must follow in full
    let body = first_body(&response);
    assert!(body.contains(r#""code":"expectation_failed""#), "{}", body);
    assert!(body.contains(r#""request_id":"id-1""#), "{}", body);
    assert_eq!(recorder.wait_for(1)[0].status, 417);
}

#[test]
fn head_timeout_carries_the_hooks_id() {
    let (addr, recorder) = start(Limits {
        request_head_timeout: Some(Duration::from_millis(300)),
        ..Limits::default()
    });
    let response = exchange(addr, "GET /slow HTTP/1.1\r\nHost: a\r\n");
    assert!(response.starts_with("HTTP/1.1 408 "), "{:?}", response);
    assert_eq!(header(&response, "X-Request-Id"), Some("id-1"));

    let replies = recorder.wait_for(1);
    assert_eq!(replies[0].code, "request_timeout");
    assert_eq!(replies[0].url.as_deref(), Some("/slow"));
}

#[test]
fn http_2_reply_carries_the_hooks_id_and_keeps_the_connection() {
    let (addr, recorder) = start(Limits::default());
    let response = exchange(
        addr,
        "GET /v2 HTTP/2.0\r\nHost: a\r\n\r\n\
         GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 505 "), "{:?}", response);
    assert_eq!(header(&response, "X-Request-Id"), Some("id-1"));
    assert!(first_body(&response).contains(r#""request_id":"id-1""#));
    assert!(response.ends_with("hello"), "{:?}", response);

    let replies = recorder.wait_for(1);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, 505);
    assert_eq!(replies[0].method.as_deref(), Some("GET"));
    assert_eq!(replies[0].url.as_deref(), Some("/v2"));
}

#[test]
fn connection_over_limit_carries_the_hooks_id() {
    let recorder = Arc::new(Recorder::default());
    let hook: Arc<dyn ErrorReplyHook> = recorder.clone();
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let server: Server = new_server_with_hook(limits, Some(hook));
    let addr = server.server_addr().to_ip().unwrap();
    let _idle = connect(addr);
    let start = Instant::now();
    while server.num_connections() != 1 {
        assert!(start.elapsed() < Duration::from_secs(3), "no connection");
        thread::sleep(Duration::from_millis(10));
    }

    let mut rejected = connect(addr);
    let mut response = String::new();
    rejected.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 503 "), "{:?}", response);
    assert_eq!(header(&response, "X-Request-Id"), Some("id-1"));
    let body = first_body(&response);
    assert!(
        body.contains(r#""code":"too_many_connections""#),
        "{}",
        body
    );
    assert!(body.contains(r#""request_id":"id-1""#), "{}", body);

    let replies = recorder.wait_for(1);
    assert_eq!(replies[0].status, 503);
    assert_eq!(replies[0].body_len, body.len());
    assert_eq!(replies[0].url, None);
}

#[test]
fn without_hook_replies_carry_no_id() {
    let server = Server::http("127.0.0.1:0").unwrap();
    let addr = serve_hello(server, Duration::from_secs(10));
    let response = exchange(addr, "GET / HTTP/1.1\r\nBad header\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 400 "), "{:?}", response);
    assert_eq!(header(&response, "X-Request-Id"), None);
    let body = first_body(&response);
    assert!(!body.contains("request_id"), "{}", body);
}

/// The head of a request that declares a body of 100 bytes, small enough to be read before
/// the request reaches the application, followed by the first 10 bytes of that body.
const SHORT_BODY_START: &str =
    "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789";

#[test]
fn short_body_ended_early_gets_400() {
    let (addr, recorder) = start(Limits::default());
    let mut client = connect(addr);
    client.write_all(SHORT_BODY_START.as_bytes()).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut response = String::new();
    client.read_to_string(&mut response).unwrap();

    assert!(response.starts_with("HTTP/1.1 400 "), "{:?}", response);
    assert!(has_connection_close(&response), "{:?}", response);
    assert_eq!(header(&response, "X-Request-Id"), Some("id-1"));
    let body = first_body(&response);
    assert!(body.contains(r#""code":"incomplete_body""#), "{}", body);
    assert!(body.contains("declared Content-Length"), "{}", body);

    let replies = recorder.wait_for(1);
    assert_eq!(
        replies,
        vec![Reported {
            status: 400,
            code: "incomplete_body".to_string(),
            request_id: Some("id-1".to_string()),
            method: Some("POST".to_string()),
            url: Some("/upload".to_string()),
            body_len: body.len(),
            written: true,
        }]
    );
}

#[test]
fn short_body_stalled_gets_408_naming_the_body() {
    let (addr, recorder) = start(Limits {
        request_head_timeout: Some(Duration::from_millis(300)),
        ..Limits::default()
    });
    let mut client = connect(addr);
    client.write_all(SHORT_BODY_START.as_bytes()).unwrap();
    let mut response = String::new();
    client.read_to_string(&mut response).unwrap();

    assert!(response.starts_with("HTTP/1.1 408 "), "{:?}", response);
    let body = first_body(&response);
    assert!(body.contains(r#""code":"request_timeout""#), "{}", body);
    assert!(
        body.contains("the request body was not received in time"),
        "{}",
        body
    );

    let replies = recorder.wait_for(1);
    assert_eq!(replies.len(), 1, "{:?}", replies);
    assert_eq!(replies[0].status, 408);
    assert_eq!(replies[0].url.as_deref(), Some("/upload"));
}

#[test]
fn short_body_of_a_closed_connection_is_reported() {
    let (addr, recorder) = start(Limits::default());
    let mut client = connect(addr);
    client.write_all(SHORT_BODY_START.as_bytes()).unwrap();
    drop(client);

    // The reply may or may not reach the socket before the reset, but the hook hears of it.
    let replies = recorder.wait_for(1);
    assert_eq!(replies.len(), 1, "{:?}", replies);
    assert_eq!(replies[0].status, 400);
    assert_eq!(replies[0].code, "incomplete_body");
    assert_eq!(replies[0].method.as_deref(), Some("POST"));
    assert_eq!(replies[0].url.as_deref(), Some("/upload"));
}
