//! Request targets in the absolute form (`http://host/path`), which RFC 9112,
//! section 3.2.2, requires servers to accept, and in the asterisk form
//! (`OPTIONS *`).

use std::io::Write;

use crate::util::{corpus, multipart_body, read_response, TestServer, KEY};

#[test]
fn absolute_form_process_applies_the_query() {
    let server = TestServer::start(&[]);
    let photo = corpus("jpeg/baseline_testorig.jpg");
    let (content_type, body) = multipart_body(&[("image", Some("a.jpg"), &photo)]);
    let target = format!("http://{}/process?w=10", server.address);
    let reply = server.post(&target, Some(KEY), &content_type, &body, &[]);
    assert_eq!(reply.image().width(), 10);

    let id = reply.header("x-request-id").expect("no X-Request-Id");
    server.wait_for_log(&format!(
        "request id={id} method=POST path=/process status=200"
    ));
}

#[test]
fn absolute_form_routes_like_origin_form() {
    let server = TestServer::start(&[]);
    // (target, status, error code for error replies)
    let cases = [
        ("http://127.0.0.1:3000/health", 200, None),
        ("HTTPS://example.com/health", 200, None),
        ("http://[::1]/ready", 200, None),
        ("http://example.com", 200, None),
        ("http://example.com/nope", 404, Some("not_found")),
        (
            "http://example.com/process",
            405,
            Some("method_not_allowed"),
        ),
        // An empty host or user info makes the target invalid (RFC 9110, 4.2).
        ("http:///health", 404, Some("not_found")),
        ("http://user@example.com/health", 404, Some("not_found")),
    ];
    for (target, status, code) in cases {
        let reply = server.get(target);
        assert_eq!(reply.status, status, "{target}: {}", reply.describe());
        assert!(reply.header("x-request-id").is_some(), "{target}");
        if let Some(code) = code {
            assert_eq!(reply.error_code(), code, "{target}");
        }
    }
    let page = server.get("http://example.com");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
}

#[test]
fn options_asterisk_lists_methods() {
    let server = TestServer::start(&[]);
    let mut stream = server.connect();
    stream
        .write_all(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();

    let reply = read_response(&mut stream);
    assert_eq!(reply.status, 200, "{}", reply.describe());
    assert_eq!(reply.header("allow"), Some("GET, HEAD, POST, OPTIONS"));
    assert_eq!(reply.header("content-length"), Some("0"));
    assert!(reply.body.is_empty());
    let id = reply.header("x-request-id").expect("no X-Request-Id");
    server.wait_for_log(&format!("request id={id} method=OPTIONS path=* status=200"));

    // The connection stays usable for the next request.
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let next = read_response(&mut stream);
    assert_eq!(next.status, 200, "{}", next.describe());
    assert_eq!(next.json()["status"], "ok");
}

#[test]
fn asterisk_with_other_methods_is_405() {
    let server = TestServer::start(&[]);
    for method in ["GET", "POST", "DELETE"] {
        let request = format!("{method} * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let reply = server.raw(request.as_bytes());
        assert_eq!(reply.status, 405, "{method}: {}", reply.describe());
        assert_eq!(reply.header("allow"), Some("OPTIONS"), "{method}");
        assert_eq!(reply.error_code(), "method_not_allowed", "{method}");
    }
}

#[test]
fn user_info_in_target_is_redacted_in_log() {
    let server = TestServer::start(&[]);
    let request = "GET http://admin:hunter2@127.0.0.1/health HTTP/1.1\r\n\
                   Host: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut stream = server.connect();
    stream.write_all(request.as_bytes()).unwrap();
    let reply = read_response(&mut stream);
    assert_eq!(reply.status, 404, "{}", reply.describe());

    let id = reply.header("x-request-id").expect("no X-Request-Id");
    let log = server.wait_for_log(&format!("request id={id}"));
    assert!(
        !log.contains("hunter2"),
        "the password reached the log:\n{log}"
    );
    assert!(log.contains("path=http://***@127.0.0.1/health"), "{log}");
}
