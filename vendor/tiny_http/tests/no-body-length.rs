//! A 204 reply carries neither `Content-Length` nor `Transfer-Encoding`, and
//! the connection stays usable for the next request.

use std::io::{Read, Write};
use std::net::TcpStream;

#[allow(dead_code)]
mod support;

use support::read_response;

/// Reads a response head, up to and including its blank line.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn no_content_reply_has_no_length() {
    let (server, mut stream) = support::new_one_server_one_client();
    write!(stream, "OPTIONS / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let request = server.recv().unwrap();
    request.respond(tiny_http::Response::empty(204)).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 204"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("content-length"), "{head}");
    assert!(!lower.contains("transfer-encoding"), "{head}");

    write!(stream, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let request = server.recv().unwrap();
    request
        .respond(tiny_http::Response::from_string("after"))
        .unwrap();
    let (head, body) = read_response(&mut stream);
    assert!(
        head.to_ascii_lowercase().contains("content-length: 5"),
        "{head}"
    );
    assert_eq!(body, b"after");
}
