//! Checks of the request head beyond its size and framing: the `Host` header, the protocol
//! version, and control characters in the request line and header lines.

use std::io::{Read, Write};
use std::time::Duration;

#[allow(dead_code)]
mod support;

use support::{connect, has_connection_close, read_response};

/// Sends `request` to a new server that answers "hello" to every request, and returns
/// everything received until the server closes the connection.
fn send_raw(request: &[u8]) -> String {
    let addr = support::new_server_ignoring_bodies(Duration::from_secs(10));
    let mut client = connect(addr);
    client.write_all(request).unwrap();
    let mut response = Vec::new();
    client.read_to_end(&mut response).unwrap();
    String::from_utf8(response).unwrap()
}

/// Checks that `request` got a 400 `bad_request` with a JSON body and `Connection: close`,
/// and never reached the application.
fn assert_rejected(name: &str, request: &[u8]) {
    let response = send_raw(request);
    // the status line has the request's version, 1.0 or 1.1
    assert_eq!(
        response.split(' ').nth(1),
        Some("400"),
        "{}: {:?}",
        name,
        response
    );
    assert!(
        response.contains(r#""code":"bad_request""#),
        "{}: {:?}",
        name,
        response
    );
    assert!(has_connection_close(&response), "{}: {:?}", name, response);
    assert!(!response.contains("hello"), "{}: {:?}", name, response);
}

/// Checks that `request` reached the application, which answered "hello", in a response
/// whose status line starts with `status_line`.
fn assert_accepted(name: &str, request: &[u8], status_line: &str) {
    let response = send_raw(request);
    assert!(
        response.starts_with(status_line),
        "{}: {:?}",
        name,
        response
    );
    assert!(response.ends_with("hello"), "{}: {:?}", name, response);
}

fn get_with_host(host_lines: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\n{}Connection: close\r\n\r\n", host_lines).into_bytes()
}

#[test]
fn http_1_1_without_host_rejected() {
    assert_rejected("no Host", &get_with_host(""));
}

#[test]
fn http_1_0_without_host_accepted() {
    assert_accepted(
        "HTTP/1.0 without Host",
        b"GET / HTTP/1.0\r\n\r\n",
        "HTTP/1.0 200 ",
    );
}

#[test]
fn repeated_host_rejected() {
    assert_rejected("two Host headers", &get_with_host("Host: a\r\nHost: a\r\n"));
    assert_rejected(
        "two Host headers, differing case",
        &get_with_host("Host: a\r\nhost: b\r\n"),
    );
    assert_rejected(
        "two Host headers in HTTP/1.0",
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    );
}

#[test]
fn invalid_host_values_rejected() {
    for value in [
        "",
        "user@example.com",
        "example.com/path",
        "example.com:80:80",
        "example.com:http",
        "example.com:65536",
        "example.com:123456",
        ":80",
        "exa mple.com",
        "example.com?",
        "example.com#a",
        "%zz",
        "%4",
        "[::1",
        "[::1]x",
        "[not-an-address]",
        "[v1]",
        "[v.x]",
        "::1",
        "\"quoted\"",
    ] {
        let request = get_with_host(&format!("Host: {}\r\n", value));
        assert_rejected(&format!("Host {:?}", value), &request);
    }

    assert_rejected(
        "invalid Host in HTTP/1.0",
        b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n",
    );
}

#[test]
fn valid_host_values_accepted() {
    for value in [
        "localhost",
        "localhost:8080",
        "example.com:",
        "example.com:65535",
        "127.0.0.1",
        "127.0.0.1:0",
        "[::1]",
        "[::1]:3000",
        "[2001:db8::7]:80",
        "[v1.fe80::a+en1]",
        "xn--bcher-kva.example",
        "a%2Db.example",
        "under_score.example",
        "sub-delims!$&'()*+,;=.example",
    ] {
        let request = get_with_host(&format!("Host: {}\r\n", value));
        assert_accepted(&format!("Host {:?}", value), &request, "HTTP/1.1 200 ");
    }
}

#[test]
fn later_http_1_minor_versions_processed_as_1_1() {
    for version in ["HTTP/1.2", "HTTP/1.9"] {
        let request = format!("GET / {}\r\nHost: a\r\nConnection: close\r\n\r\n", version);
        assert_accepted(version, request.as_bytes(), "HTTP/1.1 200 ");
    }

    // processed as HTTP/1.1, so the Host header is required
    assert_rejected("HTTP/1.2 without Host", b"GET / HTTP/1.2\r\n\r\n");

    // processed as HTTP/1.1, so the connection stays open for a second request
    let response = send_raw(
        b"GET / HTTP/1.2\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        response.matches("HTTP/1.1 200 ").count(),
        2,
        "{:?}",
        response
    );
}

/// Sends `request` to a new server and returns the head of the first response, without
/// waiting for the close; the connection stays open after a 505.
fn first_response_head(request: &[u8]) -> String {
    let addr = support::new_server_ignoring_bodies(Duration::from_secs(10));
    let mut client = connect(addr);
    client.write_all(request).unwrap();
    read_response(&mut client).0
}

#[test]
fn other_major_versions_get_505() {
    for version in ["HTTP/2.0", "HTTP/3.0", "HTTP/9.9", "HTTP/2.1"] {
        let request = format!("GET / {}\r\nHost: a\r\n\r\n", version);
        let head = first_response_head(request.as_bytes());
        assert!(head.starts_with("HTTP/1.1 505 "), "{}: {:?}", version, head);
    }

    // the 505 comes before the Host check, which is a rule of HTTP/1.1
    let head = first_response_head(b"GET / HTTP/2.0\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 505 "), "{:?}", head);
}

#[test]
fn malformed_versions_rejected() {
    for version in [
        "HTTP/1.10",
        "HTTP/1",
        "HTTP/11",
        "http/1.1",
        "HTTP/1.x",
        "HTTP/0.8",
        "HTTPS/1.1",
    ] {
        let request = format!("GET / {}\r\nHost: a\r\n\r\n", version);
        assert_rejected(version, request.as_bytes());
    }
}

#[test]
fn malformed_request_lines_rejected() {
    let cases: [(&str, &[u8]); 5] = [
        ("a fourth word", b"GET / HTTP/1.1 x\r\nHost: a\r\n\r\n"),
        ("two spaces", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("a leading space", b" GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("a trailing space", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n"),
        (
            "a method that is not a token",
            b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
    ];
    for (name, request) in cases {
        assert_rejected(name, request);
    }
}

#[test]
fn control_characters_in_target_rejected() {
    for byte in (0x00..0x20u8).chain([0x7f]) {
        if byte == b'\r' || byte == b'\n' {
            continue;
        }
        let mut request = b"GET /a".to_vec();
        request.push(byte);
        request.extend_from_slice(b"b HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_rejected(&format!("byte {:#04x} in the target", byte), &request);
    }

    let response = send_raw(b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(
        response.contains("the request line contains a control character"),
        "{:?}",
        response
    );
}

#[test]
fn control_characters_in_header_value_rejected() {
    for byte in (0x00..0x20u8).chain([0x7f]) {
        if matches!(byte, b'\r' | b'\n' | b'\t') {
            continue;
        }
        let mut request = b"GET / HTTP/1.1\r\nHost: a\r\nX-Note: a".to_vec();
        request.push(byte);
        request.extend_from_slice(b"b\r\n\r\n");
        assert_rejected(&format!("byte {:#04x} in a header value", byte), &request);
    }

    // `str::trim` drops a trailing vertical tab, which must not hide it
    assert_rejected(
        "vertical tab ending a header value",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Note: a\x0b\r\n\r\n",
    );
    assert_rejected(
        "NUL in the Host value",
        b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
    );
}

#[test]
fn tab_in_header_value_accepted() {
    assert_accepted(
        "tab inside a header value",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Note: a\tb\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 200 ",
    );
    assert_accepted(
        "tab around a header value",
        b"GET / HTTP/1.1\r\nHost:\ta\t\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 200 ",
    );
}

#[test]
fn header_names_that_are_not_tokens_rejected() {
    let cases: [(&str, &[u8]); 4] = [
        (
            "empty name",
            b"GET / HTTP/1.1\r\nHost: a\r\n: value\r\n\r\n",
        ),
        (
            "NUL in the name",
            b"GET / HTTP/1.1\r\nHost: a\r\nX\x00A: b\r\n\r\n",
        ),
        (
            "separator in the name",
            b"GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n",
        ),
        (
            "space before the colon",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        ),
    ];
    for (name, request) in cases {
        assert_rejected(name, request);
    }
}
