//! The cap on open connections: clients over it get 503 instead of a thread.

use std::io::{Read, Write};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Limits, Server};

#[allow(dead_code)]
mod support;

use support::{connect, has_connection_close, new_server_with_limits, read_response};

/// Waits until the server counts `expected` open connections, for at most 3 s.
fn wait_for_connections(server: &Server, expected: usize) {
    let start = Instant::now();
    while server.num_connections() != expected {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "open connections: {}, expected {}",
            server.num_connections(),
            expected
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn connection_over_limit_gets_503() {
    let server = Arc::new(new_server_with_limits(Limits {
        max_connections: 2,
        ..Limits::default()
    }));
    let addr = server.server_addr().to_ip().unwrap();
    let responder = server.clone();
    thread::spawn(move || {
        while let Ok(request) = responder.recv() {
            let _ = request.respond(tiny_http::Response::from_string("hello"));
        }
    });

    // two idle clients take both places
    let idle_first = connect(addr);
    let _idle_second = connect(addr);
    wait_for_connections(&server, 2);

    let mut rejected = connect(addr);
    let mut response = String::new();
    rejected.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 503"),
        "response: {}",
        response
    );
    assert!(has_connection_close(&response), "response: {}", response);
    assert_eq!(server.num_connections(), 2);

    // a closed connection frees its place for the next client
    drop(idle_first);
    wait_for_connections(&server, 1);

    let mut client = connect(addr);
    write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut client);
    assert!(head.starts_with("HTTP/1.1 200"), "head: {}", head);
    assert_eq!(body, b"hello");

    server.unblock();
}

#[test]
fn num_connections_counts_open_clients() {
    let server = new_server_with_limits(Limits::default());
    let addr = server.server_addr().to_ip().unwrap();
    assert_eq!(server.num_connections(), 0);

    let clients: Vec<_> = (0..3).map(|_| connect(addr)).collect();
    wait_for_connections(&server, 3);

    drop(clients);
    wait_for_connections(&server, 0);
}
