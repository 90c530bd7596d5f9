//! Socket timeouts, the idle timeout and the request head deadline.

use std::io::{Read, Write};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::Limits;

#[allow(dead_code)]
mod support;

use support::{connect, is_closed_by_peer, new_server_with_limits, read_response};

#[test]
fn idle_connection_closed_without_response() {
    let server = new_server_with_limits(Limits {
        idle_timeout: Some(Duration::from_millis(300)),
        ..Limits::default()
    });
    let mut client = connect(server.server_addr().to_ip().unwrap());

    let start = Instant::now();
    let mut received = Vec::new();
    client.read_to_end(&mut received).unwrap();

    assert!(received.is_empty(), "received: {:?}", received);
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn idle_keep_alive_connection_closed() {
    let server = Arc::new(new_server_with_limits(Limits {
        idle_timeout: Some(Duration::from_millis(300)),
        ..Limits::default()
    }));
    let mut client = connect(server.server_addr().to_ip().unwrap());
    let responder = server.clone();
    thread::spawn(move || {
        let request = responder.recv().unwrap();
        request
            .respond(tiny_http::Response::from_string("hello"))
            .unwrap();
    });

    write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let (head, _) = read_response(&mut client);
    assert!(head.starts_with("HTTP/1.1 200"), "head: {}", head);

    let start = Instant::now();
    assert!(is_closed_by_peer(&mut client));
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn trickled_head_gets_408() {
    let server = new_server_with_limits(Limits {
        request_head_timeout: Some(Duration::from_millis(500)),
        ..Limits::default()
    });
    let mut client = connect(server.server_addr().to_ip().unwrap());

    // Each byte arrives well within the 30 s read timeout; only the head deadline stops this.
    let writer = client.try_clone().unwrap();
    thread::spawn(move || {
        let mut writer = writer;
        let head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
        for byte in head.iter().chain([b'a'; 100].iter()) {
            if writer.write_all(&[*byte]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });

    let start = Instant::now();
    let mut response = String::new();
    client.read_to_string(&mut response).unwrap();

    assert!(
        response.starts_with("HTTP/1.1 408"),
        "response: {}",
        response
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    drop(server);
}

#[test]
fn slow_body_read_times_out() {
    let server = new_server_with_limits(Limits {
        read_timeout: Some(Duration::from_millis(300)),
        ..Limits::default()
    });
    let mut client = connect(server.server_addr().to_ip().unwrap());
    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n"
    )
    .unwrap();
    client.write_all(&[b'x'; 10]).unwrap();

    let mut request = server.recv().unwrap();
    let start = Instant::now();
    let mut body = Vec::new();
    let err = request.as_reader().read_to_end(&mut body).unwrap_err();

    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(body.len(), 10);
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn recv_timeout_returns_none_when_idle() {
    let server = support::new_server_with_limits(Limits::default());

    let start = Instant::now();
    let request = server.recv_timeout(Duration::from_millis(200)).unwrap();

    assert!(request.is_none());
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn default_limits_are_finite() {
    let limits = Limits::default();

    assert_eq!(limits.read_timeout, Some(Duration::from_secs(30)));
    assert_eq!(limits.write_timeout, Some(Duration::from_secs(30)));
    assert_eq!(limits.idle_timeout, Some(Duration::from_secs(5)));
    assert_eq!(limits.request_head_timeout, Some(Duration::from_secs(10)));
}
