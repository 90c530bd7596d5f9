//! Requests whose body framing is ambiguous or invalid, which could let a request hide inside
//! another one (request smuggling), are answered with 400 and the connection is closed.

use std::io::{Read, Write};
use std::time::Duration;

#[allow(dead_code)]
mod support;

use support::{connect, has_connection_close, read_response};

/// Sends `request` on a new connection to a server that answers "hello" to every request it
/// receives, and returns the whole response text up to the close of the connection.
fn send_raw(request: &str) -> String {
    let addr = support::new_server_ignoring_bodies(Duration::from_secs(10));
    let mut client = connect(addr);
    client.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    client.read_to_string(&mut response).unwrap();
    response
}

fn assert_rejected(request: &str) {
    let response = send_raw(request);
    assert!(
        response.starts_with("HTTP/1.1 400"),
        "request: {:?}\nresponse: {:?}",
        request,
        response
    );
    assert!(has_connection_close(&response), "response: {:?}", response);
    // nothing of the request reached the application, which would have answered "hello"
    assert!(!response.contains("hello"), "response: {:?}", response);
}

#[test]
fn content_length_with_transfer_encoding_rejected() {
    assert_rejected(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
}

#[test]
fn differing_content_lengths_rejected() {
    assert_rejected(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    );
}

#[test]
fn invalid_content_length_rejected() {
    for value in [
        "abc",
        "+5",
        "-5",
        "5, 5",
        "",
        "0x10",
        "99999999999999999999999999",
    ] {
        assert_rejected(&format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\nhello",
            value
        ));
    }
}

#[test]
fn unsupported_transfer_encoding_rejected() {
    for value in ["gzip", "gzip, chunked", "chunked, chunked", "identity"] {
        assert_rejected(&format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: {}\r\n\r\n0\r\n\r\n",
            value
        ));
    }
}

#[test]
fn transfer_encoding_in_http_1_0_rejected() {
    assert_rejected(
        "POST / HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
}

#[test]
fn folded_header_line_rejected() {
    assert_rejected(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Folded: a\r\n Transfer-Encoding: chunked\r\n\r\n",
    );
}

#[test]
fn bare_line_feed_rejected() {
    assert_rejected(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Bare: a\nTransfer-Encoding: chunked\r\n\r\n",
    );
}

#[test]
fn bare_carriage_return_rejected() {
    assert_rejected(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Bare: a\rTransfer-Encoding: chunked\r\n\r\n",
    );
}

#[test]
fn identical_content_lengths_accepted() {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let mut client = connect(server.server_addr().to_ip().unwrap());
    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
    )
    .unwrap();

    let mut request = server.recv().unwrap();
    let mut body = String::new();
    request.as_reader().read_to_string(&mut body).unwrap();
    assert_eq!(body, "hello");
    assert_eq!(request.body_length(), Some(5));
}

#[test]
fn http_2_request_line_gets_505() {
    let response = send_raw(
        "GET / HTTP/2.0\r\nHost: localhost\r\n\r\n\
         GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(
        response.starts_with("HTTP/1.1 505"),
        "response: {:?}",
        response
    );
    // the connection goes on with the next request
    assert!(response.ends_with("hello"), "response: {:?}", response);
}

#[test]
fn unread_expect_continue_body_skips_100() {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let mut client = connect(server.server_addr().to_ip().unwrap());
    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    )
    .unwrap();

    // answered without reading the body: no 100 Continue, and the client need not send it
    let request = server.recv().unwrap();
    request
        .respond(tiny_http::Response::from_string("hello"))
        .unwrap();

    let (head, body) = read_response(&mut client);
    assert!(head.starts_with("HTTP/1.1 200"), "head: {}", head);
    assert!(has_connection_close(&head), "head: {}", head);
    assert_eq!(body, b"hello");
}

#[test]
fn expect_continue_then_keep_alive() {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let mut client = connect(server.server_addr().to_ip().unwrap());

    for _ in 0..2 {
        write!(
            client,
            "POST / HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        .unwrap();
        let mut request = server.recv().unwrap();

        let reader = std::thread::spawn(move || {
            let mut body = String::new();
            request.as_reader().read_to_string(&mut body).unwrap();
            assert_eq!(body, "hello");
            request
                .respond(tiny_http::Response::from_string("hello"))
                .unwrap();
        });

        let mut interim = Vec::new();
        let mut byte = [0u8];
        while !interim.ends_with(b"\r\n\r\n") {
            client.read_exact(&mut byte).unwrap();
            interim.push(byte[0]);
        }
        let interim = String::from_utf8(interim).unwrap();
        assert!(
            interim.starts_with("HTTP/1.1 100 Continue\r\n"),
            "interim: {}",
            interim
        );
        client.write_all(b"hello").unwrap();
        reader.join().unwrap();

        let (head, _) = read_response(&mut client);
        assert!(head.starts_with("HTTP/1.1 200"), "head: {}", head);
        assert!(!has_connection_close(&head), "head: {}", head);
    }
}
