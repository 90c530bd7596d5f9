//! The 10 MiB body limit, declared and chunked, at and around the boundary.

use std::io::Write;

use crate::util::{read_response, TestServer, BOUNDARY, KEY};

const LIMIT: usize = 10 * 1024 * 1024;

/// A multipart body of exactly `total` bytes whose image part is filler.
fn body_of_size(total: usize) -> Vec<u8> {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.bin\"\r\n\r\n"
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let filler = total - head.len() - tail.len();
    let mut body = head.into_bytes();
    body.resize(body.len() + filler, b'x');
    body.extend_from_slice(tail.as_bytes());
    assert_eq!(body.len(), total);
    body
}

fn content_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

#[test]
fn declared_body_at_limit_is_read_and_over_is_413() {
    let server = TestServer::start(&[]);
    for (size, expected) in [(LIMIT - 1, 415), (LIMIT, 415), (LIMIT + 1, 413)] {
        let reply = server.post(
            "/process",
            Some(KEY),
            &content_type(),
            &body_of_size(size),
            &[],
        );
        // The filler is not an image, so a body within the limit reaches the
        // decoder and gets 415; one byte more is rejected as too large.
        assert_eq!(reply.status, expected, "size {size}: {}", reply.describe());
    }
}

#[test]
fn chunked_body_is_cut_off_past_the_limit() {
    let server = TestServer::start(&[]);
    for (size, expected) in [(LIMIT - 1, 415), (LIMIT, 415), (LIMIT + 1, 413)] {
        let body = body_of_size(size);
        let mut stream = server.connect();
        let head = format!(
            "POST /process HTTP/1.1\r\nHost: t\r\nConnection: close\r\nx-api-key: {KEY}\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
            content_type()
        );
        stream.write_all(head.as_bytes()).unwrap();
        for chunk in body.chunks(64 * 1024) {
            if stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .is_err()
                || stream.write_all(chunk).is_err()
                || stream.write_all(b"\r\n").is_err()
            {
                break; // The server may close once the limit is passed.
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n");
        let reply = read_response(&mut stream);
        assert_eq!(reply.status, expected, "size {size}: {}", reply.describe());
    }
}

#[test]
fn huge_declared_length_is_413_without_reading_and_service_survives() {
    let server = TestServer::start(&[]);
    let mut stream = server.connect();
    let head = format!(
        "POST /process HTTP/1.1\r\nHost: t\r\nx-api-key: {KEY}\r\nContent-Type: {}\r\nContent-Length: 1000000000000\r\n\r\nabc",
        content_type()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let reply = read_response(&mut stream);
    assert_eq!(reply.status, 413);
    assert_eq!(reply.error_code(), "body_too_large");
    drop(stream);
    // The process must still be alive and serving.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(server.get("/health").status, 200);
}

#[test]
fn unauthenticated_huge_body_is_401_before_reading() {
    let server = TestServer::start(&[]);
    let mut stream = server.connect();
    let head = format!(
        "POST /process HTTP/1.1\r\nHost: t\r\nContent-Type: {}\r\nContent-Length: 1000000000000\r\n\r\n",
        content_type()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let reply = read_response(&mut stream);
    assert_eq!(reply.status, 401);
    drop(stream);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(server.get("/health").status, 200);
}
