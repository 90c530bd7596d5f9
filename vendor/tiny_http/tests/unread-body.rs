//! A request whose body is left unread must neither crash the server nor desynchronise the
//! connection: a small rest is skipped, a large or unknown one closes the connection.

use std::io::Write;
use std::time::Duration;

#[allow(dead_code)]
mod support;

use support::{connect, has_connection_close, is_closed_by_peer, read_response};

fn assert_next_connection_served(addr: std::net::SocketAddr) {
    let mut client = connect(addr);
    write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut client);
    assert!(head.starts_with("HTTP/1.1 200"), "head: {}", head);
    assert_eq!(body, b"hello");
}

#[test]
fn huge_content_length_closes_connection() {
    let addr = support::new_server_ignoring_bodies(Duration::from_secs(10));
    let mut client = connect(addr);

    // 10^12 bytes declared, 100 sent: stock 0.12 tried to allocate the rest in one buffer.
    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000000\r\n\r\n"
    )
    .unwrap();
    client.write_all(&[b'x'; 100]).unwrap();

    let (head, body) = read_response(&mut client);
    assert!(head.starts_with("HTTP/1.1 200"), "head: {}", head);
    assert!(has_connection_close(&head), "head: {}", head);
    assert_eq!(body, b"hello");
    assert!(is_closed_by_peer(&mut client));

    assert_next_connection_served(addr);
}

#[test]
fn huge_chunk_size_closes_connection() {
    let addr = support::new_server_ignoring_bodies(Duration::from_secs(10));
    let mut client = connect(addr);

    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFF\r\n"
    )
    .unwrap();
    client.write_all(&[b'x'; 100]).unwrap();

    let (head, body) = read_response(&mut client);
    assert!(head.starts_with("HTTP/1.1 200"), "head: {}", head);
    assert!(has_connection_close(&head), "head: {}", head);
    assert_eq!(body, b"hello");
    assert!(is_closed_by_peer(&mut client));

    assert_next_connection_served(addr);
}

#[test]
fn dropped_request_with_huge_body_gets_500() {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let addr = server.server_addr().to_ip().unwrap();
    let mut client = connect(addr);
    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000000\r\n\r\n"
    )
    .unwrap();

    let request = server.recv().unwrap();
    drop(request);

    let (head, _) = read_response(&mut client);
    assert!(head.starts_with("HTTP/1.1 500"), "head: {}", head);
    assert!(has_connection_close(&head), "head: {}", head);
    assert!(is_closed_by_peer(&mut client));
}

#[test]
fn small_unread_body_is_skipped() {
    let addr = support::new_server_ignoring_bodies(Duration::from_secs(10));
    let mut client = connect(addr);

    // Larger than the 1 KiB that tiny_http buffers itself, smaller than the skip limit.
    let body = [b'x'; 10_000];
    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    client.write_all(&body).unwrap();

    let (head, _) = read_response(&mut client);
    assert!(head.starts_with("HTTP/1.1 200"), "head: {}", head);
    assert!(!has_connection_close(&head), "head: {}", head);

    // The same connection serves the next request, so the skipped body was not parsed as one.
    write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut client);
    assert!(head.starts_with("HTTP/1.1 200"), "head: {}", head);
    assert_eq!(body, b"hello");
}

#[test]
fn unread_body_over_limit_closes_connection() {
    let addr = support::new_server_ignoring_bodies(Duration::from_secs(10));
    let mut client = connect(addr);

    let body = vec![b'x'; 64 * 1024 + 1];
    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    client.write_all(&body).unwrap();

    let (head, _) = read_response(&mut client);
    assert!(has_connection_close(&head), "head: {}", head);
    assert!(is_closed_by_peer(&mut client));
}

#[test]
fn fully_read_chunked_body_keeps_connection() {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let addr = server.server_addr().to_ip().unwrap();
    let mut client = connect(addr);

    for _ in 0..2 {
        write!(
            client,
            "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        .unwrap();

        let mut request = server.recv().unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(request.as_reader(), &mut body).unwrap();
        assert_eq!(body, "hello");
        request
            .respond(tiny_http::Response::from_string("hello"))
            .unwrap();

        let (head, _) = read_response(&mut client);
        assert!(head.starts_with("HTTP/1.1 200"), "head: {}", head);
        assert!(!has_connection_close(&head), "head: {}", head);
    }
}
