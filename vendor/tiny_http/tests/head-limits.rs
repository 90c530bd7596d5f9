//! Size limits of the request head: each line and the whole head.

use std::io::{Read, Write};
use std::time::Duration;

use tiny_http::Limits;

#[allow(dead_code)]
mod support;

use support::{connect, has_connection_close, new_server_with_limits, read_response, serve_hello};

const MAX_LINE: usize = 100;
const MAX_HEAD: usize = 300;

fn start_server() -> std::net::SocketAddr {
    let server = new_server_with_limits(Limits {
        max_header_line_size: MAX_LINE,
        max_request_head_size: MAX_HEAD,
        ..Limits::default()
    });
    serve_hello(server, Duration::from_secs(10))
}

/// Returns a header line `X-Pad: aaa…` of exactly `len` bytes, CRLF included.
fn header_line(len: usize) -> String {
    format!("X-Pad: {}\r\n", "a".repeat(len - "X-Pad: \r\n".len()))
}

/// Sends `head` on a new connection and returns the whole response text.
fn send_head(addr: std::net::SocketAddr, head: &str) -> String {
    let mut client = connect(addr);
    client.write_all(head.as_bytes()).unwrap();
    let mut response = String::new();
    client.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn header_line_at_limit_accepted() {
    let addr = start_server();
    let mut client = connect(addr);
    let head = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        header_line(MAX_LINE)
    );
    client.write_all(head.as_bytes()).unwrap();

    let (head, body) = read_response(&mut client);
    assert!(head.starts_with("HTTP/1.1 200"), "head: {}", head);
    assert_eq!(body, b"hello");
}

#[test]
fn header_line_over_limit_gets_431() {
    let addr = start_server();
    let head = format!("GET / HTTP/1.1\r\n{}\r\n", header_line(MAX_LINE + 1));

    let response = send_head(addr, &head);
    assert!(
        response.starts_with("HTTP/1.1 431"),
        "response: {}",
        response
    );
    assert!(has_connection_close(&response), "response: {}", response);
}

#[test]
fn request_line_over_limit_gets_414() {
    let addr = start_server();
    let path = "a".repeat(MAX_LINE);
    let head = format!("GET /{} HTTP/1.1\r\n\r\n", path);

    let response = send_head(addr, &head);
    assert!(
        response.starts_with("HTTP/1.1 414"),
        "response: {}",
        response
    );
}

#[test]
fn head_at_limit_accepted() {
    let addr = start_server();
    let start = "GET / HTTP/1.1\r\nHost: localhost\r\n";
    let mut head = start.to_string();
    let mut left = MAX_HEAD - start.len() - "\r\n".len();
    while left > 0 {
        let len = left.min(MAX_LINE);
        head.push_str(&header_line(len));
        left -= len;
    }
    head.push_str("\r\n");
    assert_eq!(head.len(), MAX_HEAD);

    let mut client = connect(addr);
    client.write_all(head.as_bytes()).unwrap();
    let (response_head, _) = read_response(&mut client);
    assert!(
        response_head.starts_with("HTTP/1.1 200"),
        "head: {}",
        response_head
    );
}

#[test]
fn head_over_limit_gets_431() {
    let addr = start_server();
    let request_line = "GET / HTTP/1.1\r\n";
    let mut head = request_line.to_string();
    let mut left = MAX_HEAD + 1 - request_line.len() - "\r\n".len();
    while left > 0 {
        // no line shorter than "X-Pad: \r\n"
        let len = if left > MAX_LINE {
            MAX_LINE.min(left - 20)
        } else {
            left
        };
        head.push_str(&header_line(len));
        left -= len;
    }
    head.push_str("\r\n");
    assert_eq!(head.len(), MAX_HEAD + 1);

    let response = send_head(addr, &head);
    assert!(
        response.starts_with("HTTP/1.1 431"),
        "response: {}",
        response
    );
}

#[test]
fn endless_header_line_rejected_with_default_limits() {
    let addr = support::new_server_ignoring_bodies(Duration::from_secs(10));
    let mut client = connect(addr);
    client.write_all(b"GET / HTTP/1.1\r\nX-Endless: ").unwrap();

    // 1 MiB without a line end; the server answers once 16 KiB are in and stops reading.
    let chunk = [b'a'; 64 * 1024];
    for _ in 0..16 {
        if client.write_all(&chunk).is_err() {
            break;
        }
    }

    let mut response = String::new();
    let _ = client.read_to_string(&mut response);
    assert!(
        response.starts_with("HTTP/1.1 431"),
        "response: {}",
        response
    );
}
