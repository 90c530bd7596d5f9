//! Hostile traffic over a loopback socket: idle and slow clients, bursts past
//! capacity, malformed HTTP and multipart, header and log injection, and
//! truncated uploads.
//!
//! Every exchange here has its own deadline, so a server that hangs fails the
//! test instead of stalling the suite. Servers that test timeouts start with
//! a short `IMGFLUX_READ_TIMEOUT_SECS` and `IMGFLUX_REQUEST_TIMEOUT_SECS`.
//! Most cases here check only the status, because several statuses can be
//! right for one malformed request. The JSON body and request id of the HTTP
//! layer's own replies (400, 408, 414, 417, 431, 505, and 503 past the
//! connection cap) are checked in `errors.rs`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use image::GenericImageView;

use crate::util::{corpus, multipart_body, shared_dir, Response, TestServer, BOUNDARY, KEY};

/// A small JPEG, 227×149, that the pipeline decodes quickly.
const SMALL_JPEG: &str = "jpeg/baseline_testorig.jpg";

/// How long the reply to a request that needs no slow work may take.
const PROMPT: Duration = Duration::from_secs(5);

/// What a client saw after sending a request.
#[derive(Debug)]
enum Seen {
    Reply(Response),
    /// The server closed or reset the connection without a whole reply.
    Closed,
    /// Nothing arrived before the deadline.
    TimedOut,
}

impl Seen {
    /// Returns the reply, failing the test with `context` on anything else.
    fn reply(self, context: &str) -> Response {
        match self {
            Seen::Reply(reply) => reply,
            other => panic!("{context}: expected a reply, got {other:?}"),
        }
    }
}

/// One client connection whose reads all have deadlines.
struct Client {
    stream: TcpStream,
    /// Bytes received and not yet returned as part of a reply.
    received: Vec<u8>,
}

impl Client {
    fn connect(server: &TestServer) -> Client {
        Client {
            stream: TcpStream::connect(server.address).expect("connecting to imgflux failed"),
            received: Vec::new(),
        }
    }

    /// Sends bytes, ignoring a failed write: the server may reply and close
    /// before it reads everything, and the reply is what the test checks.
    fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Reads one reply, 1xx replies included, waiting at most `limit`.
    fn reply(&mut self, limit: Duration) -> Seen {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(reply) = self.take_reply() {
                return Seen::Reply(reply);
            }
            match self.read_more(deadline) {
                Ok(true) => {}
                Ok(false) => return Seen::Closed,
                Err(seen) => return seen,
            }
        }
    }

    /// Reads more bytes into `received`; `Ok(false)` at the end of the stream.
    fn read_more(&mut self, deadline: Instant) -> Result<bool, Seen> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Seen::TimedOut);
        }
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Ok(false),
            Ok(count) => {
                self.received.extend_from_slice(&chunk[..count]);
                Ok(true)
            }
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(Seen::TimedOut)
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => Ok(true),
            Err(_) => Err(Seen::Closed),
        }
    }

    /// Removes one whole reply from the front of `received`, if there is one.
    fn take_reply(&mut self) -> Option<Response> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut head = httparse::Response::new(&mut headers);
        let head_len = match head.parse(&self.received) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => return None,
            Err(error) => panic!(
                "the server sent an invalid reply head ({error}): {:?}",
                String::from_utf8_lossy(&self.received)
            ),
        };
        let status = head.code.expect("a complete head has a status");
        let headers: Vec<(String, String)> = head
            .headers
            .iter()
            .map(|header| {
                let value = String::from_utf8_lossy(header.value).into_owned();
                (header.name.to_ascii_lowercase(), value)
            })
            .collect();
        let body_len = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .map_or(0, |(_, value)| value.parse::<usize>().unwrap());
        if self.received.len() < head_len + body_len {
            return None;
        }
        let body = self.received[head_len..head_len + body_len].to_vec();
        self.received.drain(..head_len + body_len);
        Some(Response {
            status,
            headers,
            body,
        })
    }

    /// Waits until the server closes the connection and returns when it did,
    /// or `None` if it is still open at the deadline. Data is discarded.
    fn closed_by(&mut self, deadline: Instant) -> Option<Instant> {
        loop {
            match self.read_more(deadline) {
                Ok(true) => self.received.clear(),
                Ok(false) | Err(Seen::Closed) => return Some(Instant::now()),
                Err(_) => return None,
            }
        }
    }
}

/// Sends `request` on a new connection and reads one reply.
fn exchange(server: &TestServer, request: &[u8], limit: Duration) -> Seen {
    let mut client = Client::connect(server);
    client.send(request);
    client.reply(limit)
}

/// Builds a request head for `POST {path}` with a declared body length.
fn post_head(path: &str, key: Option<&str>, content_type: &str, length: usize) -> String {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n"
    );
    if let Some(key) = key {
        head.push_str(&format!("x-api-key: {key}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Builds a whole `POST` request with the test key and extra header lines.
fn post_request(path: &str, content_type: &str, body: &[u8], extra: &[&str]) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nx-api-key: {KEY}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Checks that `/health` still answers 200 promptly.
fn assert_serving(server: &TestServer, after: &str) {
    let reply = exchange(server, &get_request("/health"), PROMPT).reply(after);
    assert_eq!(reply.status, 200, "/health after {after}");
}

fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// A raw request, its name, and the statuses it may get.
type Case<'a> = (&'a str, Vec<u8>, &'a [u16]);

/// Sends every case on its own connection, side by side, and fails with one
/// line per case that got no reply or a status it may not get.
///
/// Running them together bounds the test by its slowest case, because a
/// server that waits for bytes that never come keeps a case waiting until
/// `limit`.
fn assert_cases(server: &TestServer, cases: Vec<Case<'_>>, limit: Duration) {
    let outcomes: Vec<(&str, &[u16], Seen, Duration)> = thread::scope(|scope| {
        let handles: Vec<_> = cases
            .into_iter()
            .map(|(name, request, allowed)| {
                scope.spawn(move || {
                    let started = Instant::now();
                    let seen = exchange(server, &request, limit);
                    (name, allowed, seen, started.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let mut failures = Vec::new();
    for (name, allowed, seen, took) in outcomes {
        match &seen {
            Seen::Reply(reply) => report(
                "case",
                format_args!("{name}: {} after {took:?}", reply.status),
            ),
            other => report("case", format_args!("{name}: {other:?} after {took:?}")),
        }
        match seen {
            Seen::Reply(reply) if allowed.contains(&reply.status) => {}
            Seen::Reply(reply) => failures.push(format!(
                "{name}: expected one of {allowed:?}, got {}",
                reply.describe()
            )),
            other => failures.push(format!(
                "{name}: expected one of {allowed:?}, got {other:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Prints a measured value; `cargo test --test service hostile -- --nocapture`
/// shows these lines, which docs/RELIABILITY.md records.
fn report(test: &str, measured: std::fmt::Arguments<'_>) {
    eprintln!("measured: {test}: {measured}");
}

/// Returns the server's log lines that name the reply's request id, so a
/// failure shows what the server saw (a panic message, an internal error).
fn log_lines_for(server: &TestServer, reply: &Response) -> String {
    let Some(id) = reply.header("x-request-id") else {
        return "(the reply has no X-Request-Id)".to_string();
    };
    thread::sleep(Duration::from_millis(100));
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|line| line.contains(id)).collect();
    lines.join("\n")
}

/// Starts a server for slow-client tests: 2 s read timeout, and the given request timeout.
fn start_with_timeouts(request_timeout_secs: &str, extra: &[(&str, &str)]) -> TestServer {
    let mut env = vec![
        ("IMGFLUX_READ_TIMEOUT_SECS", "2"),
        ("IMGFLUX_REQUEST_TIMEOUT_SECS", request_timeout_secs),
    ];
    env.extend_from_slice(extra);
    TestServer::start(&env)
}

// ---------------------------------------------------------------------------
// Idle and slow clients
// ---------------------------------------------------------------------------

#[test]
fn idle_and_trickling_clients_do_not_block_process() {
    let server = start_with_timeouts("10", &[]);
    let read_timeout = Duration::from_secs(2);

    // A burst of connects can overflow the listen backlog, and the kernel
    // then retries a SYN after 1 s, so each connection keeps its own time.
    let mut idle: Vec<(Client, Instant)> = (0..200)
        .map(|_| (Client::connect(&server), Instant::now()))
        .collect();

    // 50 connections send a request head one byte every 200 ms. The padding
    // keeps the head unfinished for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let tricklers: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(server.address).unwrap())
        .collect();
    let trickling = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let head = format!(
                "GET /health HTTP/1.1\r\nHost: test\r\nX-Padding: {}\r\n\r\n",
                "p".repeat(200)
            );
            let mut open = tricklers;
            for byte in head.bytes() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                open.retain_mut(|stream| stream.write_all(&[byte]).is_ok());
                thread::sleep(Duration::from_millis(200));
            }
        })
    };

    // A normal client is served promptly meanwhile.
    let photo = corpus(SMALL_JPEG);
    let (content_type, body) = multipart_body(&[("image", Some("a.jpg"), &photo)]);
    let started = Instant::now();
    let reply = exchange(
        &server,
        &post_request("/process?w=100", &content_type, &body, &[]),
        PROMPT,
    )
    .reply("/process beside 250 idle and trickling connections");
    let process_took = started.elapsed();
    assert_eq!(reply.image().width(), 100);
    assert!(
        process_took < Duration::from_secs(3),
        "/process took {process_took:?} beside idle and trickling connections"
    );
    assert_serving(&server, "opening 250 idle and trickling connections");

    // The idle connections are closed once the read timeout has passed. They
    // are read one after another, so a close is seen when its turn comes,
    // and the longest delay measured is an upper bound.
    let mut shortest = Duration::MAX;
    let mut longest = Duration::ZERO;
    for (index, (client, connected)) in idle.iter_mut().enumerate() {
        let deadline = *connected + read_timeout + Duration::from_secs(4);
        let closed = client.closed_by(deadline).unwrap_or_else(|| {
            panic!(
                "idle connection {index} is still open {:?} after connecting (read timeout {read_timeout:?})",
                connected.elapsed()
            )
        });
        let open_for = closed - *connected;
        shortest = shortest.min(open_for);
        longest = longest.max(open_for);
    }
    report(
        "idle and trickling",
        format_args!("/process {process_took:?}; 200 idle connections closed {shortest:?} to at most {longest:?} after connecting"),
    );
    assert!(
        shortest >= read_timeout - Duration::from_millis(500),
        "an idle connection was closed after {shortest:?}, before the read timeout of {read_timeout:?}"
    );

    stop.store(true, Ordering::SeqCst);
    trickling.join().unwrap();
    assert_serving(&server, "closing the idle connections");
}

#[test]
fn connection_flood_does_not_delay_others() {
    // A burst of connections to a fresh server, whose few connection threads
    // are idle, is when a client can be queued behind idle connections. One
    // round shows that fault only most of the time, so there are several,
    // each on a new server.
    const ROUNDS: usize = 5;
    let limit = Duration::from_secs(3);
    let mut waits = Vec::new();
    for round in 0..ROUNDS {
        // A 10 s read timeout: a queued client would wait about that long.
        let server = TestServer::start(&[
            ("IMGFLUX_READ_TIMEOUT_SECS", "10"),
            ("IMGFLUX_REQUEST_TIMEOUT_SECS", "10"),
        ]);
        thread::scope(|scope| {
            let mut idle = Vec::new();
            let mut probes = Vec::new();
            for index in 0..40 {
                idle.push(Client::connect(&server));
                if index % 3 == 0 {
                    let server = &server;
                    probes.push(scope.spawn(move || {
                        let started = Instant::now();
                        let request = get_request("/health");
                        let seen = exchange(server, &request, limit + Duration::from_secs(2));
                        (round, index, seen, started.elapsed())
                    }));
                }
            }
            // The probes finish before the idle connections close, since a
            // close frees a thread for whatever was queued behind it.
            waits.extend(probes.into_iter().map(|probe| probe.join().unwrap()));
        });
        if waits.iter().any(|(_, _, _, took)| *took >= limit) {
            break;
        }
    }

    let slowest = waits.iter().map(|(_, _, _, took)| *took).max().unwrap();
    report(
        "connection flood",
        format_args!(
            "{} /health requests among up to {ROUNDS} x 40 idle connections, slowest {slowest:?}",
            waits.len()
        ),
    );
    for (round, index, seen, took) in waits {
        let context = format!("/health after {index} idle connections in round {round}");
        let reply = seen.reply(&context);
        assert_eq!(reply.status, 200, "{context}: {}", reply.describe());
        // A full listen backlog can add one 1 s SYN retransmission.
        assert!(took < limit, "{context} took {took:?}");
    }
}

#[test]
fn connection_cap_replies_503_then_recovers() {
    let server = start_with_timeouts("10", &[("IMGFLUX_MAX_CONNECTIONS", "16")]);
    let idle: Vec<Client> = (0..16).map(|_| Client::connect(&server)).collect();
    thread::sleep(Duration::from_millis(300));

    let reply = exchange(&server, &get_request("/health"), PROMPT)
        .reply("a 17th connection with IMGFLUX_MAX_CONNECTIONS=16");
    assert_eq!(reply.status, 503, "{}", reply.describe());
    assert_eq!(reply.json()["error"]["code"], "too_many_connections");
    let retry_after = reply.header("retry-after").unwrap_or_default();
    assert!(
        retry_after.parse::<u32>().is_ok(),
        "Retry-After: {retry_after:?}"
    );

    drop(idle);
    let deadline = Instant::now() + PROMPT;
    loop {
        let seen = exchange(&server, &get_request("/health"), PROMPT);
        if matches!(&seen, Seen::Reply(reply) if reply.status == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/health still fails after the idle connections closed: {seen:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn trickled_upload_is_cut_at_request_timeout() {
    let server = start_with_timeouts("3", &[]);
    let mut client = Client::connect(&server);
    client.send(post_head("/process", Some(KEY), &multipart_type(), 100_000).as_bytes());

    // One byte every 100 ms never leaves the socket silent for the 2 s read
    // timeout, so only the 3 s request timeout can end the upload.
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = client.stream.try_clone().unwrap();
    let trickling = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) && writer.write_all(b"x").is_ok() {
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let seen = client.reply(Duration::from_secs(10));
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    trickling.join().unwrap();

    let reply = seen.reply("trickled upload");
    report(
        "trickled upload",
        format_args!("{} after {took:?}", reply.status),
    );
    assert_eq!(reply.status, 408, "{}", reply.describe());
    assert_eq!(reply.error_code(), "request_timeout");
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(6),
        "408 came after {took:?}; the request timeout is 3 s"
    );
    assert_serving(&server, "a trickled upload");
}

#[test]
fn stalled_upload_is_cut_at_read_timeout() {
    let server = start_with_timeouts("30", &[]);
    let mut client = Client::connect(&server);
    client.send(post_head("/process", Some(KEY), &multipart_type(), 100_000).as_bytes());
    client.send(&[b'x'; 5000]);

    let started = Instant::now();
    let reply = client
        .reply(Duration::from_secs(10))
        .reply("upload that stalls after 5000 of 100000 bytes");
    let took = started.elapsed();
    report(
        "stalled upload",
        format_args!("{} after {took:?}", reply.status),
    );
    assert_eq!(reply.status, 408, "{}", reply.describe());
    assert_eq!(reply.error_code(), "request_timeout");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "408 came after {took:?}; the read timeout is 2 s"
    );
    assert_serving(&server, "a stalled upload");
}

#[test]
fn stalled_request_head_gets_408() {
    let server = start_with_timeouts("30", &[]);
    let mut client = Client::connect(&server);
    client.send(b"GET /health HTTP/1.1\r\nHost: te");

    let started = Instant::now();
    let reply = client
        .reply(Duration::from_secs(15))
        .reply("request head that stalls halfway");
    let took = started.elapsed();
    report(
        "stalled head",
        format_args!("{} after {took:?}", reply.status),
    );
    assert_eq!(reply.status, 408, "{}", reply.describe());
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "408 came after {took:?}; the read timeout is 2 s"
    );
    assert_serving(&server, "a stalled request head");
}

// ---------------------------------------------------------------------------
// Overload
// ---------------------------------------------------------------------------

/// One probe of a cheap endpoint during a burst.
struct Probe {
    path: &'static str,
    status: Option<u16>,
    took: Duration,
    finished: Instant,
}

#[test]
fn burst_past_capacity_gets_only_200_and_503() {
    let server = TestServer::start(&[("IMGFLUX_WORKERS", "1"), ("IMGFLUX_QUEUE_SIZE", "2")]);
    let photo = std::fs::read(shared_dir().join("bench-images/photo-2mp-1600x1200.jpg"))
        .expect("reading the 2 MP bench photo failed");
    let (content_type, body) = multipart_body(&[("image", Some("photo.jpg"), &photo)]);
    let request = post_request("/process?w=400", &content_type, &body, &[]);

    const UPLOADS: usize = 40;
    let barrier = Barrier::new(UPLOADS + 1);
    let burst_over = AtomicBool::new(false);
    let (replies, probes) = thread::scope(|scope| {
        let uploads: Vec<_> = (0..UPLOADS)
            .map(|_| {
                scope.spawn(|| {
                    let mut client = Client::connect(&server);
                    barrier.wait();
                    client.send(&request);
                    let seen = client.reply(Duration::from_secs(60));
                    (seen, Instant::now())
                })
            })
            .collect();
        let prober = scope.spawn(|| {
            barrier.wait();
            let mut probes = Vec::new();
            while !burst_over.load(Ordering::SeqCst) {
                for path in ["/health", "/ready", "/metrics"] {
                    let started = Instant::now();
                    let seen = exchange(&server, &get_request(path), PROMPT);
                    let status = match seen {
                        Seen::Reply(reply) => Some(reply.status),
                        _ => None,
                    };
                    probes.push(Probe {
                        path,
                        status,
                        took: started.elapsed(),
                        finished: Instant::now(),
                    });
                }
                thread::sleep(Duration::from_millis(20));
            }
            probes
        });
        let replies: Vec<(Seen, Instant)> =
            uploads.into_iter().map(|h| h.join().unwrap()).collect();
        burst_over.store(true, Ordering::SeqCst);
        (replies, prober.join().unwrap())
    });

    let mut succeeded = 0;
    let mut overloaded = 0;
    let mut last_reply = None;
    for (index, (seen, at)) in replies.into_iter().enumerate() {
        let reply = seen.reply(&format!("upload {index} of the burst"));
        last_reply = last_reply.max(Some(at));
        match reply.status {
            200 => {
                assert_eq!(reply.header("content-type"), Some("image/png"));
                succeeded += 1;
            }
            503 => {
                assert_eq!(reply.error_code(), "overloaded");
                let retry_after = reply.header("retry-after");
                let retry_after = retry_after.unwrap_or_else(|| panic!("503 without Retry-After"));
                assert!(
                    retry_after.parse::<u32>().is_ok_and(|secs| secs >= 1),
                    "Retry-After: {retry_after}"
                );
                overloaded += 1;
            }
            _ => panic!(
                "upload {index}: expected 200 or 503, got {}",
                reply.describe()
            ),
        }
    }
    let slowest = probes
        .iter()
        .map(|probe| probe.took)
        .max()
        .unwrap_or_default();
    report(
        "burst",
        format_args!("{UPLOADS} uploads: {succeeded} x 200, {overloaded} x 503; {} probes, slowest {slowest:?}", probes.len()),
    );
    assert!(succeeded >= 1, "no upload of the burst succeeded");
    assert!(overloaded >= 1, "no upload of the burst got 503");

    for probe in &probes {
        assert_eq!(probe.status, Some(200), "{} during the burst", probe.path);
        assert!(
            probe.took < Duration::from_secs(2),
            "{} took {:?} during the burst",
            probe.path,
            probe.took
        );
    }
    let during = probes
        .iter()
        .filter(|probe| Some(probe.finished) < last_reply)
        .count();
    assert!(
        during >= 3,
        "only {during} probes finished during the burst"
    );

    // The metrics count exactly the 503s the clients saw.
    let expected =
        format!("imgflux_requests_total{{route=\"process\",status=\"503\"}} {overloaded}");
    let deadline = Instant::now() + PROMPT;
    loop {
        let metrics = exchange(&server, &get_request("/metrics"), PROMPT).reply("/metrics");
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        if text.contains(&expected) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{expected:?} not in metrics:\n{text}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Malformed multipart over the wire
// ---------------------------------------------------------------------------

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Expected {
    /// 200 with an image of this width and height.
    Image(u32, u32),
    /// This status, with this JSON error code.
    Error(u16, &'static str),
}

/// Builds a multipart body from `(part headers, data)` pairs with the given
/// boundary and line ending, closing delimiter included.
fn raw_multipart(boundary: &str, newline: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (headers, data) in parts {
        body.extend_from_slice(
            format!("--{boundary}{newline}{headers}{newline}{newline}").as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(newline.as_bytes());
    }
    body.extend_from_slice(format!("--{boundary}--{newline}").as_bytes());
    body
}

fn disposition(name: &str, filename: Option<&str>) -> String {
    match filename {
        Some(filename) => {
            format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"")
        }
        None => format!("Content-Disposition: form-data; name=\"{name}\""),
    }
}

/// Builds an uncompressed 24-bit BMP whose pixel bytes are `pixels`, stored as is.
fn bmp_with_pixels(width: u32, height: u32, pixels: &[u8]) -> Vec<u8> {
    let row = (width * 3).next_multiple_of(4);
    assert_eq!(
        pixels.len(),
        (row * height) as usize,
        "pixel bytes do not fill the rows"
    );
    let data_offset = 14 + 40;
    let file_size = data_offset + pixels.len() as u32;
    let mut bmp = Vec::new();
    bmp.extend_from_slice(b"BM");
    bmp.extend_from_slice(&file_size.to_le_bytes());
    bmp.extend_from_slice(&0u32.to_le_bytes());
    bmp.extend_from_slice(&data_offset.to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&(width as i32).to_le_bytes());
    bmp.extend_from_slice(&(height as i32).to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&0u32.to_le_bytes()); // no compression
    bmp.extend_from_slice(&(pixels.len() as u32).to_le_bytes());
    bmp.extend_from_slice(&2835u32.to_le_bytes());
    bmp.extend_from_slice(&2835u32.to_le_bytes());
    bmp.extend_from_slice(&0u32.to_le_bytes());
    bmp.extend_from_slice(&0u32.to_le_bytes());
    bmp.extend_from_slice(pixels);
    bmp
}

/// Builds a 32×4 BMP whose pixel bytes hold delimiter look-alikes of [`BOUNDARY`]:
/// a parser that cuts the part at one of them truncates the image.
fn bmp_with_boundary_look_alikes() -> Vec<u8> {
    let mut pixels = vec![0x5a; 32 * 3 * 4];
    let look_alikes = [
        format!("\r\n--{BOUNDARY}x"),
        format!("a--{BOUNDARY}\r\n"),
        format!("\n--{BOUNDARY}--"),
    ];
    let mut at = 1;
    for look_alike in &look_alikes {
        pixels[at..at + look_alike.len()].copy_from_slice(look_alike.as_bytes());
        at += look_alike.len() + 3;
    }
    let bmp = bmp_with_pixels(32, 4, &pixels);
    let decoded = image::load_from_memory(&bmp).expect("the test BMP does not decode");
    assert_eq!(decoded.dimensions(), (32, 4));
    bmp
}

/// Returns the multipart cases: name, Content-Type, body and the expected outcome.
fn multipart_cases() -> Vec<(&'static str, String, Vec<u8>, Expected)> {
    let jpeg = corpus(SMALL_JPEG);
    let jpeg = jpeg.as_slice();
    let image = disposition("image", Some("a.jpg"));
    let image_parts: &[(&str, &[u8])] = &[(&image, jpeg)];
    let with_boundary = |boundary: &str| format!("multipart/form-data; boundary={boundary}");
    let standard = |parts: &[(&str, &[u8])]| raw_multipart(BOUNDARY, "\r\n", parts);
    let ok = Expected::Image(227, 149);
    let malformed = Expected::Error(400, "malformed_multipart");
    let missing = Expected::Error(400, "missing_image");

    let mut preamble = b"This is the preamble.\r\nIt is ignored.\r\n".to_vec();
    preamble.extend_from_slice(&standard(image_parts));
    preamble.extend_from_slice(b"This is the epilogue, also ignored.\r\n");

    let mut unclosed = standard(image_parts);
    unclosed.truncate(unclosed.len() - format!("--{BOUNDARY}--\r\n").len());

    let huge_headers = format!("{image}\r\nX-Padding: {}", "h".repeat(9000));
    let many_headers = format!("{image}{}", "\r\nX-Extra: 1".repeat(16));
    let mut endless_headers = format!("--{BOUNDARY}\r\n{image}\r\n").into_bytes();
    for _ in 0..20_000 {
        endless_headers.extend_from_slice(b"X-More: header\r\n");
    }

    let bmp = bmp_with_boundary_look_alikes();
    let bmp_part = disposition("image", Some("look-alikes.bmp"));
    let mut note = format!("note--{BOUNDARY} and \r\n--{BOUNDARY}- in a field").into_bytes();
    note.extend_from_slice(b"\r\n--");

    let quoted = "quoted boundary:with=odd?chars";
    let long_boundary = "b".repeat(71);
    let many_parts: Vec<String> = (0..65)
        .map(|i| disposition(&format!("f{i}"), None))
        .collect();
    let many_parts: Vec<(&str, &[u8])> =
        many_parts.iter().map(|h| (h.as_str(), &b"x"[..])).collect();

    let unicode = disposition("image", Some("фото 📷 写真.jpg"));
    let traversal = disposition("image", Some("../../../etc/passwd"));
    let encoded_crlf = "Content-Disposition: form-data; name=\"image\"; filename*=UTF-8''a%0D%0A%5B2000-01-01T00%3A00%3A00Z%20INFO%20%5D%20request%20id%3Dforged.jpg";
    let raw_crlf = "Content-Disposition: form-data; name=\"image\"; filename=\"a.jpg\r\n[2000-01-01T00:00:00Z INFO ] request id=forged\"";
    let nul_name = "Content-Disposition: form-data; name=\"image\"; filename=\"a\0.jpg\"";
    let mut latin1 =
        b"Content-Disposition: form-data; name=\"image\"; filename=\"caf\xe9.jpg\"".to_vec();
    latin1.extend_from_slice(b"\r\n\r\n");
    let mut latin1_body = format!("--{BOUNDARY}\r\n").into_bytes();
    latin1_body.extend_from_slice(&latin1);
    latin1_body.extend_from_slice(jpeg);
    latin1_body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());

    let html_typed = format!("{image}\r\nContent-Type: text/html");
    let base64 = format!("{image}\r\nContent-Transfer-Encoding: base64");
    let empty_image = disposition("image", Some(""));
    let other_before = disposition("note", None);
    let other_after = disposition("caption", Some("c.txt"));

    vec![
        (
            "missing boundary",
            "multipart/form-data".into(),
            standard(image_parts),
            malformed,
        ),
        (
            "empty boundary",
            "multipart/form-data; boundary=".into(),
            standard(image_parts),
            malformed,
        ),
        (
            "boundary of 71 characters",
            with_boundary(&long_boundary),
            raw_multipart(&long_boundary, "\r\n", image_parts),
            malformed,
        ),
        (
            "two boundary parameters",
            format!("{}; boundary=other", multipart_type()),
            standard(image_parts),
            malformed,
        ),
        (
            "quoted boundary",
            format!("multipart/form-data; boundary=\"{quoted}\""),
            raw_multipart(quoted, "\r\n", image_parts),
            ok,
        ),
        (
            "media type in upper case",
            format!("MULTIPART/FORM-DATA; BOUNDARY={BOUNDARY}"),
            standard(image_parts),
            ok,
        ),
        (
            "boundary look-alikes inside the image",
            multipart_type(),
            standard(&[(&bmp_part, &bmp)]),
            Expected::Image(32, 4),
        ),
        (
            "boundary look-alikes in another field",
            multipart_type(),
            standard(&[(&other_before, &note), (&image, jpeg)]),
            ok,
        ),
        (
            "LF-only line endings",
            multipart_type(),
            raw_multipart(BOUNDARY, "\n", image_parts),
            ok,
        ),
        (
            "part headers over 8 KiB",
            multipart_type(),
            standard(&[(&huge_headers, jpeg)]),
            malformed,
        ),
        (
            "17 part headers",
            multipart_type(),
            standard(&[(&many_headers, jpeg)]),
            malformed,
        ),
        (
            "endless part headers",
            multipart_type(),
            endless_headers,
            malformed,
        ),
        ("no closing boundary", multipart_type(), unclosed, malformed),
        ("preamble and epilogue", multipart_type(), preamble, ok),
        (
            "two image parts",
            multipart_type(),
            standard(&[(&image, jpeg), (&image, jpeg)]),
            malformed,
        ),
        (
            "empty image part",
            multipart_type(),
            standard(&[(&empty_image, b"")]),
            missing,
        ),
        (
            "no image part",
            multipart_type(),
            standard(&[(&other_before, b"hello")]),
            missing,
        ),
        (
            "only the closing boundary",
            multipart_type(),
            format!("--{BOUNDARY}--\r\n").into_bytes(),
            missing,
        ),
        ("empty body", multipart_type(), Vec::new(), malformed),
        (
            "65 parts",
            multipart_type(),
            standard(&many_parts),
            malformed,
        ),
        (
            "other fields around the image",
            multipart_type(),
            standard(&[
                (&other_before, b"hi"),
                (&image, jpeg),
                (&other_after, b"text"),
            ]),
            ok,
        ),
        (
            "unicode file name",
            multipart_type(),
            standard(&[(&unicode, jpeg)]),
            ok,
        ),
        (
            "path traversal file name",
            multipart_type(),
            standard(&[(&traversal, jpeg)]),
            ok,
        ),
        (
            "percent-encoded CR LF in filename*",
            multipart_type(),
            standard(&[(encoded_crlf, jpeg)]),
            ok,
        ),
        (
            "raw CR LF in a quoted file name",
            multipart_type(),
            standard(&[(raw_crlf, jpeg)]),
            malformed,
        ),
        (
            "NUL in a file name",
            multipart_type(),
            standard(&[(nul_name, jpeg)]),
            malformed,
        ),
        ("Latin-1 file name", multipart_type(), latin1_body, ok),
        (
            "part typed text/html holding a JPEG",
            multipart_type(),
            standard(&[(&html_typed, jpeg)]),
            ok,
        ),
        (
            "base64 transfer encoding",
            multipart_type(),
            standard(&[(&base64, b"/9j/4AAQ")]),
            malformed,
        ),
        (
            "text/plain request",
            "text/plain".into(),
            standard(image_parts),
            Expected::Error(415, "unsupported_media_type"),
        ),
        (
            "multipart/mixed request",
            with_boundary(BOUNDARY).replace("form-data", "mixed"),
            standard(image_parts),
            Expected::Error(415, "unsupported_media_type"),
        ),
    ]
}

#[test]
fn multipart_edge_cases_get_the_right_status() {
    let server = TestServer::start(&[]);
    for (name, content_type, body, expected) in multipart_cases() {
        let request = post_request("/process", &content_type, &body, &[]);
        let reply = exchange(&server, &request, PROMPT).reply(name);
        report("multipart", format_args!("{name}: {}", reply.status));
        match expected {
            Expected::Image(width, height) => {
                assert_eq!(reply.status, 200, "{name}: {}", reply.describe());
                assert_eq!(reply.image().dimensions(), (width, height), "{name}");
            }
            Expected::Error(status, code) => {
                assert_eq!(reply.status, status, "{name}: {}", reply.describe());
                assert_eq!(reply.error_code(), code, "{name}");
            }
        }
    }
    assert_serving(&server, "the multipart cases");
}

#[test]
fn hostile_file_names_cannot_forge_log_lines() {
    let server = TestServer::start(&[]);
    for (name, content_type, body, _) in multipart_cases() {
        let request = post_request("/process", &content_type, &body, &[]);
        exchange(&server, &request, PROMPT).reply(name);
    }
    // A path with a bare LF, which HTTP/1.1 only ends at CR LF.
    let request = b"GET /a\n[2000-01-01T00:00:00Z INFO ] request id=forged HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let seen = exchange(&server, request, PROMPT);
    if let Seen::Reply(reply) = &seen {
        assert!(reply.status < 500, "{}", reply.describe());
    }
    assert_serving(&server, "hostile file names and paths");

    let log = server.log();
    for line in log.lines().filter(|line| line.contains("forged")) {
        assert!(line.starts_with('['), "a forged log line: {line:?}");
        assert!(!line.starts_with("[2000-"), "a forged log line: {line:?}");
    }
    assert!(!log.contains('\r'), "the log holds a raw CR");
}

// ---------------------------------------------------------------------------
// Malformed HTTP over the wire
// ---------------------------------------------------------------------------

/// A request that a proxy and the server could split differently, followed
/// by a second request that must never be routed.
fn smuggling_cases() -> Vec<(&'static str, Vec<u8>, &'static [u16])> {
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n";
    let (content_type, body) = multipart_body(&[("image", Some("a.jpg"), &corpus(SMALL_JPEG))]);
    let valid_len = body.len();
    let head = |framing: &str| {
        format!(
            "POST /process HTTP/1.1\r\nHost: test\r\nx-api-key: {KEY}\r\nContent-Type: {content_type}\r\n{framing}\r\n"
        )
        .into_bytes()
    };
    let with_body = |mut request: Vec<u8>, data: &[u8]| {
        request.extend_from_slice(data);
        request.extend_from_slice(smuggled.as_bytes());
        request
    };
    let chunked_empty = b"0\r\n\r\n";
    vec![
        (
            "two different Content-Length headers",
            with_body(
                head("Content-Length: 5\r\nContent-Length: 50\r\n"),
                b"xxxxx",
            ),
            &[400],
        ),
        (
            "Content-Length list of two values",
            with_body(head("Content-Length: 5, 50\r\n"), b"xxxxx"),
            &[400],
        ),
        (
            "Content-Length that is not a number",
            with_body(head("Content-Length: abc\r\n"), b""),
            &[400],
        ),
        (
            "negative Content-Length",
            with_body(head("Content-Length: -1\r\n"), b""),
            &[400],
        ),
        (
            "Content-Length with a plus sign",
            with_body(head("Content-Length: +5\r\n"), b"xxxxx"),
            &[400],
        ),
        (
            "Content-Length beyond u64",
            with_body(head("Content-Length: 99999999999999999999999\r\n"), b""),
            &[400, 413],
        ),
        (
            "Content-Length and chunked",
            with_body(
                head("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
                chunked_empty,
            ),
            &[400],
        ),
        (
            "chunked and Content-Length",
            with_body(
                head("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
                chunked_empty,
            ),
            &[400],
        ),
        (
            "Transfer-Encoding gzip",
            with_body(head("Transfer-Encoding: gzip\r\n"), b"xxxxx"),
            &[400],
        ),
        (
            "chunk size that is not hex",
            with_body(
                head("Transfer-Encoding: chunked\r\n"),
                b"zz\r\nxx\r\n0\r\n\r\n",
            ),
            &[400],
        ),
        // Identical copies may be read as one. The body is then valid and
        // complete, so no request is appended.
        (
            "two identical Content-Length headers",
            {
                let mut request = head(&format!(
                    "Content-Length: {valid_len}\r\nContent-Length: {valid_len}\r\n"
                ));
                request.extend_from_slice(&body);
                request
            },
            &[200, 400],
        ),
    ]
}

#[test]
fn ambiguous_body_framing_is_rejected() {
    let server = TestServer::start(&[]);
    assert_cases(&server, smuggling_cases(), PROMPT);
    assert_serving(&server, "ambiguous body framing");
    thread::sleep(Duration::from_millis(300));
    assert!(
        !server.log().contains("path=/smuggled"),
        "a request hidden in a body was routed:\n{}",
        server.log()
    );
}

#[test]
fn oversized_request_heads_are_rejected() {
    let server = TestServer::start(&[]);
    let long_url = format!(
        "GET /health?{} HTTP/1.1\r\nHost: test\r\n\r\n",
        "u".repeat(100 * 1024)
    );
    let long_line = format!(
        "GET /health HTTP/1.1\r\nHost: test\r\nX-Long: {}\r\n\r\n",
        "h".repeat(100 * 1024)
    );
    let many_lines = format!(
        "GET /health HTTP/1.1\r\nHost: test\r\n{}\r\n",
        "X-Many: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(2000)
    );
    let long_name = format!(
        "GET /health HTTP/1.1\r\nHost: test\r\n{}: x\r\n\r\n",
        "N".repeat(100 * 1024)
    );
    let cases: Vec<Case> = vec![
        ("100 KiB URL", long_url.into_bytes(), &[414]),
        ("100 KiB header line", long_line.into_bytes(), &[431]),
        ("100 KiB header name", long_name.into_bytes(), &[431]),
        ("2000 header lines", many_lines.into_bytes(), &[431]),
    ];
    assert_cases(&server, cases, PROMPT);
    assert_serving(&server, "oversized request heads");
}

#[test]
fn non_utf8_bytes_in_head_get_4xx() {
    let server = TestServer::start(&[]);
    let (content_type, body) = multipart_body(&[("image", Some("a.jpg"), &corpus(SMALL_JPEG))]);
    let mut latin1_key = post_head("/process", None, &content_type, body.len()).into_bytes();
    latin1_key.splice(
        latin1_key.len() - 2..latin1_key.len() - 2,
        b"x-api-key: cl\xe9\r\n".iter().copied(),
    );
    latin1_key.extend_from_slice(&body);
    let mut latin1_boundary =
        b"POST /process HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n".to_vec();
    latin1_boundary.extend_from_slice(format!("x-api-key: {KEY}\r\n").as_bytes());
    latin1_boundary
        .extend_from_slice(b"Content-Type: multipart/form-data; boundary=\xe9\xe9\r\n\r\n");

    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "Latin-1 header value",
            b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Note: caf\xe9\r\n\r\n"
                .to_vec(),
            &[200, 400],
        ),
        (
            "raw 0xFF in the URL",
            b"GET /health?\xff HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "raw UTF-8 in the path",
            "GET /санкт HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                .as_bytes()
                .to_vec(),
            &[400, 404],
        ),
        ("Latin-1 API key", latin1_key, &[400, 401]),
        ("Latin-1 boundary", latin1_boundary, &[400]),
    ];
    assert_cases(&server, cases, PROMPT);

    // Percent-encoded bytes that are not UTF-8 reach the query parser.
    let photo = corpus(SMALL_JPEG);
    for query in ["w=%FF", "fit=%E9", "%FF=1", "w=%", "w=%G0"] {
        let reply = server.process(query, &photo);
        assert_eq!(reply.status, 400, "query {query:?}: {}", reply.describe());
        assert_eq!(reply.error_code(), "invalid_parameter", "query {query:?}");
    }
    assert_serving(&server, "non-UTF-8 request heads");
}

#[test]
fn garbage_request_lines_get_4xx() {
    // The default 30 s read timeout, so a reply held back until the
    // connection times out fails the test.
    let server = TestServer::start(&[]);
    let junk: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 | 1)
        .collect();
    let junk: Vec<u8> = junk
        .into_iter()
        .map(|b| if b == b'\n' { b'.' } else { b })
        .collect();
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("a word", b"GARBAGE\r\n\r\n".to_vec(), &[400]),
        ("method only", b"GET\r\n\r\n".to_vec(), &[400]),
        ("empty request line", b"\r\n\r\n".to_vec(), &[400]),
        (
            "unknown major version",
            b"GET /health HTTP/9.9\r\nHost: t\r\n\r\n".to_vec(),
            &[505],
        ),
        (
            "two-digit minor version",
            b"GET /health HTTP/1.10\r\nHost: t\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "header without colon",
            b"GET /health HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "obsolete line folding",
            b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n".to_vec(),
            &[400],
        ),
        ("20 KB of binary junk", junk, &[400, 414]),
        // HTTP/1.1 lets a server accept bare LF line ends or reject them.
        (
            "LF-only request head",
            b"GET /health HTTP/1.1\nHost: t\nConnection: close\n\n".to_vec(),
            &[200, 400],
        ),
    ];
    assert_cases(&server, cases, PROMPT);
    assert_serving(&server, "garbage request lines");
}

#[test]
fn invalid_host_and_control_bytes_get_400() {
    let server = TestServer::start(&[]);
    let get = |head_lines: &str| {
        format!("GET /health HTTP/1.1\r\n{head_lines}Connection: close\r\n\r\n").into_bytes()
    };
    let cases: Vec<Case> = vec![
        ("HTTP/1.1 without Host", get(""), &[400]),
        ("two Host headers", get("Host: a\r\nHost: a\r\n"), &[400]),
        ("empty Host", get("Host: \r\n"), &[400]),
        ("Host with user info", get("Host: user@t\r\n"), &[400]),
        ("Host with a path", get("Host: t/health\r\n"), &[400]),
        ("Host with a bad port", get("Host: t:http\r\n"), &[400]),
        ("Host with two ports", get("Host: t:1:2\r\n"), &[400]),
        ("unclosed IPv6 Host", get("Host: [::1\r\n"), &[400]),
        (
            "NUL in the target",
            b"GET /health\x00x HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "tab in the target",
            b"GET /health\tx HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "DEL in the target",
            b"GET /health?\x7f HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "NUL in a header value",
            get("Host: t\r\nX-Note: a\x00b\r\n"),
            &[400],
        ),
        (
            "escape in a header value",
            get("Host: t\r\nX-Note: a\x1bb\r\n"),
            &[400],
        ),
        (
            "DEL in a header value",
            get("Host: t\r\nX-Note: a\x7f\r\n"),
            &[400],
        ),
    ];
    assert_cases(&server, cases, PROMPT);

    // Allowed: HTTP/1.0 without Host, a tab in a value, a port, an IPv6 literal.
    let accepted: Vec<Case> = vec![
        (
            "HTTP/1.0 without Host",
            b"GET /health HTTP/1.0\r\n\r\n".to_vec(),
            &[200],
        ),
        (
            "tab in a header value",
            get("Host: t\r\nX-Note: a\tb\r\n"),
            &[200],
        ),
        ("Host with a port", get("Host: t:3000\r\n"), &[200]),
        ("IPv6 Host", get("Host: [::1]:3000\r\n"), &[200]),
    ];
    assert_cases(&server, accepted, PROMPT);
    assert_serving(&server, "invalid Host headers and control bytes");
}

#[test]
fn newer_minor_version_served_as_http11() {
    let server = TestServer::start(&[]);
    let mut client = Client::connect(&server);
    // Without `Connection: close`, so the connection must stay open as in HTTP/1.1.
    client.send(b"GET /health HTTP/1.2\r\nHost: t\r\n\r\n");
    let reply = client.reply(PROMPT).reply("HTTP/1.2 request line");
    assert_eq!(reply.status, 200, "{}", reply.describe());

    client.send(&get_request("/health"));
    let reply = client
        .reply(PROMPT)
        .reply("a second request after HTTP/1.2");
    assert_eq!(reply.status, 200, "{}", reply.describe());
}

#[test]
fn http2_request_line_gets_prompt_505() {
    // The default 30 s read timeout, so a reply held back until the
    // connection times out fails the test.
    let server = TestServer::start(&[]);
    let started = Instant::now();
    let request = b"GET /health HTTP/2.0\r\nHost: t\r\nConnection: close\r\n\r\n";
    let reply = exchange(&server, request, PROMPT).reply("HTTP/2.0 request line");
    assert_eq!(reply.status, 505, "{}", reply.describe());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "505 came after {:?}",
        started.elapsed()
    );
    assert_serving(&server, "an HTTP/2.0 request line");
}

// ---------------------------------------------------------------------------
// Expect: 100-continue and bodies that are never sent
// ---------------------------------------------------------------------------

#[test]
fn expect_continue_upload_succeeds() {
    let server = TestServer::start(&[]);
    let (content_type, body) = multipart_body(&[("image", Some("a.jpg"), &corpus(SMALL_JPEG))]);
    let mut head = post_head("/process?w=100", Some(KEY), &content_type, body.len());
    head.insert_str(head.len() - 2, "Expect: 100-continue\r\n");

    let mut client = Client::connect(&server);
    client.send(head.as_bytes());
    // curl waits 1 s for the interim reply, then sends the body anyway.
    let interim = client
        .reply(Duration::from_secs(2))
        .reply("100-continue head");
    assert_eq!(interim.status, 100, "{}", interim.describe());
    client.send(&body);
    let reply = client.reply(PROMPT).reply("body after 100 Continue");
    assert_eq!(reply.image().width(), 100);
}

#[test]
fn rejected_request_replied_before_body() {
    let server = TestServer::start(&[]);
    let five_mib = 5 * 1024 * 1024;
    let eleven_mib = 11 * 1024 * 1024;
    let expect = "Expect: 100-continue\r\n";
    let cases = [
        (
            "wrong key",
            post_head("/process", Some("wrong-key"), &multipart_type(), five_mib),
            401,
        ),
        (
            "wrong key, Expect",
            post_head("/process", Some("wrong-key"), &multipart_type(), five_mib),
            401,
        ),
        (
            "bad query, Expect",
            post_head("/process?w=0", Some(KEY), &multipart_type(), five_mib),
            400,
        ),
        (
            "declared 11 MiB, Expect",
            post_head("/process", Some(KEY), &multipart_type(), eleven_mib),
            413,
        ),
        (
            "not multipart, Expect",
            post_head("/process", Some(KEY), "image/jpeg", five_mib),
            415,
        ),
    ];
    for (name, mut head, status) in cases {
        if name.ends_with("Expect") {
            head.insert_str(head.len() - 2, expect);
        }
        // The client sends the head and never sends the body.
        let mut client = Client::connect(&server);
        client.send(head.as_bytes());
        let sent = Instant::now();
        let reply = client.reply(Duration::from_secs(2)).reply(name);
        let replied = sent.elapsed();
        assert_eq!(reply.status, status, "{name}: {}", reply.describe());

        // Other clients are served while this one stays open and silent.
        let started = Instant::now();
        let health = exchange(&server, &get_request("/health"), Duration::from_secs(2))
            .reply(&format!("/health beside a silent client ({name})"));
        let health_took = started.elapsed();
        report(
            "rejected before body",
            format_args!(
                "{name}: {} after {replied:?}; /health beside it {health_took:?}",
                reply.status
            ),
        );
        assert_eq!(health.status, 200);
        assert!(
            health_took < Duration::from_secs(1),
            "{name}: /health took {health_took:?}"
        );
        drop(client);
    }
}

// ---------------------------------------------------------------------------
// Secrets, request ids, reflected input and CORS
// ---------------------------------------------------------------------------

#[test]
fn api_keys_never_reach_the_log() {
    let second_key = "second-secret-key-4242";
    let keys = format!("{KEY},{second_key}");
    let server = TestServer::start(&[("API_KEYS", &keys)]);
    let guesses = [
        "wrong-guess-0001",
        "test-key-12",
        "test-key-1234",
        "second-secret-key-424",
    ];
    let photo = corpus(SMALL_JPEG);
    let (content_type, body) = multipart_body(&[("image", Some("a.jpg"), &photo)]);
    let with_key = |key: &str, path: &str| {
        let mut request = post_head(path, Some(key), &content_type, body.len()).into_bytes();
        request.extend_from_slice(&body);
        request
    };

    let mut sent = vec![
        (with_key(KEY, "/process?w=10"), 200),
        (with_key(second_key, "/process?w=10"), 200),
        (with_key(second_key, "/process?nope=1"), 400),
        (with_key(KEY, "/process?w=0"), 400),
        (with_key(KEY, "/nowhere"), 404),
    ];
    for guess in guesses {
        sent.push((with_key(guess, "/process"), 401));
    }
    let get_with_key = format!(
        "GET /process HTTP/1.1\r\nHost: t\r\nConnection: close\r\nx-api-key: {second_key}\r\n\r\n"
    );
    sent.push((get_with_key.into_bytes(), 405));
    for (request, status) in &sent {
        let reply = exchange(&server, request, PROMPT).reply("request with a key");
        assert_eq!(reply.status, *status, "{}", reply.describe());
    }
    server.wait_for_log("status=405");

    let log = server.log();
    for secret in [KEY, second_key].iter().chain(guesses.iter()) {
        assert!(
            !log.contains(secret),
            "the log contains the key {secret:?}:\n{log}"
        );
    }
}

#[test]
fn client_request_id_is_echoed_only_when_safe() {
    let server = TestServer::start(&[]);
    let safe = "client-id_42.A";
    let reply = exchange(
        &server,
        format!(
            "GET /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Request-Id: {safe}\r\n\r\n"
        )
        .as_bytes(),
        PROMPT,
    )
    .reply("safe request id");
    assert_eq!(reply.header("x-request-id"), Some(safe));
    assert_eq!(reply.json()["error"]["request_id"], safe);

    let long = "r".repeat(200);
    let unsafe_ids: Vec<(&str, Vec<u8>)> = vec![
        ("bare CR", b"abc\rSet-Cookie: session=stolen".to_vec()),
        ("bare LF", b"abc\nSet-Cookie: session=stolen".to_vec()),
        ("200 characters", long.clone().into_bytes()),
        ("spaces and quotes", b"a \"b\" <c>".to_vec()),
        ("tab", b"a\tb".to_vec()),
    ];
    for (name, id) in unsafe_ids {
        let mut request =
            b"GET /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Request-Id: ".to_vec();
        request.extend_from_slice(&id);
        request.extend_from_slice(b"\r\n\r\n");
        let reply = exchange(&server, &request, PROMPT).reply(name);
        assert!(
            !String::from_utf8_lossy(&reply.body).contains("stolen"),
            "{name}: {}",
            reply.describe()
        );
        assert!(
            reply.header("set-cookie").is_none(),
            "{name}: a header was injected"
        );
        // RFC 9112 lets the HTTP layer reject a bare CR or LF in a header
        // value with 400; otherwise the route replies 404 with a new id.
        if reply.status == 400 && name.starts_with("bare ") {
            continue;
        }
        assert_eq!(reply.status, 404, "{name}: {}", reply.describe());
        let echoed = reply
            .header("x-request-id")
            .unwrap_or_else(|| panic!("{name}: no X-Request-Id"));
        assert_eq!(
            echoed.len(),
            16,
            "{name}: X-Request-Id {echoed:?} is not a generated id"
        );
        assert!(
            echoed.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: {echoed:?}"
        );
        assert_eq!(reply.json()["error"]["request_id"], echoed, "{name}");
    }
    thread::sleep(Duration::from_millis(200));
    let log = server.log();
    assert!(
        !log.contains("stolen"),
        "an unsafe request id reached the log"
    );
    assert!(
        !log.contains(&long),
        "a 200-character request id reached the log"
    );
}

#[test]
fn no_reply_header_reflects_raw_input() {
    let server = TestServer::start(&[]);
    let marker = "INJ3CT";
    let photo = corpus(SMALL_JPEG);
    let (content_type, body) = multipart_body(&[("image", Some(&format!("{marker}.jpg")), &photo)]);
    let hostile_headers = [
        format!("Origin: https://{marker}.example"),
        format!("Accept: image/{marker}"),
        format!("X-Request-Id: {marker} not safe"),
        format!("X-Forwarded-For: {marker}"),
        format!("Access-Control-Request-Headers: {marker}"),
    ];
    let extra: Vec<&str> = hostile_headers.iter().map(String::as_str).collect();
    let requests = [
        post_request("/process?w=10", &content_type, &body, &extra),
        post_request(
            &format!("/process?{marker}=1"),
            &content_type,
            &body,
            &extra,
        ),
        post_request("/process", &format!("text/{marker}"), &body, &extra),
        post_request(&format!("/{marker}"), &content_type, &body, &extra),
        format!(
            "OPTIONS /process HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{}\r\n\r\n",
            extra.join("\r\n")
        )
        .into_bytes(),
        format!(
            "GET /health HTTP/1.1\r\nHost: {marker}\r\nConnection: close\r\n{}\r\n\r\n",
            extra.join("\r\n")
        )
        .into_bytes(),
    ];
    let known = [
        "server",
        "date",
        "content-type",
        "content-length",
        "x-request-id",
        "server-timing",
        "vary",
        "allow",
        "retry-after",
        "connection",
        "content-security-policy",
        "x-content-type-options",
        "referrer-policy",
    ];
    for request in &requests {
        let reply = exchange(&server, request, PROMPT).reply("request with markers");
        for (name, value) in &reply.headers {
            assert!(
                known.contains(&name.as_str()),
                "unexpected reply header {name}: {value}"
            );
            assert!(
                !value.contains(marker),
                "reply header {name}: {value} reflects the request"
            );
        }
    }
}

#[test]
fn cors_headers_are_absent_by_default() {
    let server = TestServer::start(&[]);
    let origin = "Origin: https://app.example";
    let photo = corpus(SMALL_JPEG);
    let (content_type, body) = multipart_body(&[("image", Some("a.jpg"), &photo)]);
    let requests = [
        post_request("/process?w=10", &content_type, &body, &[origin]),
        format!("OPTIONS /process HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{origin}\r\nAccess-Control-Request-Method: POST\r\n\r\n").into_bytes(),
        format!("GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{origin}\r\n\r\n").into_bytes(),
    ];
    for request in &requests {
        let reply = exchange(&server, request, PROMPT).reply("request with an Origin");
        assert!(reply.status < 300, "{}", reply.describe());
        for (name, value) in &reply.headers {
            assert!(
                !name.starts_with("access-control-"),
                "CORS is off but the reply has {name}: {value}"
            );
        }
    }
}

#[test]
fn cors_allows_only_listed_origins() {
    let server = TestServer::start(&[(
        "IMGFLUX_CORS_ORIGINS",
        "https://app.example,http://localhost:8080",
    )]);
    let photo = corpus(SMALL_JPEG);
    let (content_type, body) = multipart_body(&[("image", Some("a.jpg"), &photo)]);
    let upload = |origin: &str| {
        let header = format!("Origin: {origin}");
        post_request("/process?w=10", &content_type, &body, &[&header])
    };

    for origin in ["https://app.example", "http://localhost:8080"] {
        let reply = exchange(&server, &upload(origin), PROMPT).reply(origin);
        assert_eq!(reply.status, 200, "{origin}: {}", reply.describe());
        assert_eq!(reply.header("access-control-allow-origin"), Some(origin));
        let vary = reply.header("vary").unwrap_or_default();
        assert!(vary.contains("Origin"), "{origin}: Vary is {vary:?}");
        let exposed = reply
            .header("access-control-expose-headers")
            .unwrap_or_default();
        assert!(
            exposed.contains("X-Request-Id"),
            "{origin}: exposed {exposed:?}"
        );
    }

    // Errors carry CORS headers too, so a browser page can read them.
    let header = "Origin: https://app.example".to_string();
    let mut unauthorized = post_head("/process", Some("wrong"), &content_type, body.len());
    unauthorized.insert_str(unauthorized.len() - 2, &format!("{header}\r\n"));
    let mut request = unauthorized.into_bytes();
    request.extend_from_slice(&body);
    let reply = exchange(&server, &request, PROMPT).reply("401 from a listed origin");
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example")
    );

    for origin in [
        "https://evil.example",
        "https://app.example.evil.example",
        "https://app.example:443",
        "http://app.example",
        "null",
        "HTTPS://APP.EXAMPLE",
    ] {
        let reply = exchange(&server, &upload(origin), PROMPT).reply(origin);
        assert_eq!(reply.status, 200, "{origin}: {}", reply.describe());
        for (name, value) in &reply.headers {
            assert!(
                !name.starts_with("access-control-"),
                "{origin} is not listed but the reply has {name}: {value}"
            );
        }
    }

    let preflight = |origin: &str| {
        format!("OPTIONS /process HTTP/1.1\r\nHost: t\r\nConnection: close\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: x-api-key\r\n\r\n")
    };
    let reply = exchange(&server, preflight("https://app.example").as_bytes(), PROMPT)
        .reply("listed preflight");
    assert_eq!(reply.status, 204);
    // RFC 9110 section 8.6: a 204 has no Content-Length, and no body.
    assert!(reply.header("content-length").is_none());
    assert!(reply.header("content-type").is_none());
    assert!(reply.body.is_empty());
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(reply.header("access-control-allow-methods"), Some("POST"));
    let allowed = reply
        .header("access-control-allow-headers")
        .unwrap_or_default();
    assert!(allowed.contains("x-api-key"), "allowed headers {allowed:?}");
    let reply = exchange(
        &server,
        preflight("https://evil.example").as_bytes(),
        PROMPT,
    )
    .reply("unlisted preflight");
    assert!(reply.header("access-control-allow-origin").is_none());
    assert!(reply.header("access-control-allow-methods").is_none());
}

#[test]
fn cors_vary_keeps_accept() {
    let server = TestServer::start(&[("IMGFLUX_CORS_ORIGINS", "https://app.example")]);
    let photo = corpus(SMALL_JPEG);
    let (content_type, body) = multipart_body(&[("image", Some("a.jpg"), &photo)]);
    // format=auto with WebP in Accept varies on Accept; CORS adds Origin.
    let reply = exchange(
        &server,
        &post_request(
            "/process?w=10&format=auto",
            &content_type,
            &body,
            &["Origin: https://app.example", "Accept: image/webp"],
        ),
        PROMPT,
    )
    .reply("format=auto from a listed origin");
    assert_eq!(reply.status, 200, "{}", reply.describe());
    let vary = reply
        .header("vary")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        vary.contains("origin") && vary.contains("accept"),
        "Vary is {vary:?}"
    );
}

// ---------------------------------------------------------------------------
// Truncated uploads
// ---------------------------------------------------------------------------

/// Sends every request on `threads` threads and returns the replies in order.
fn send_all(
    server: &TestServer,
    requests: &[(String, Vec<u8>)],
    threads: usize,
) -> Vec<(String, Seen)> {
    let chunk = requests.len().div_ceil(threads);
    thread::scope(|scope| {
        let handles: Vec<_> = requests
            .chunks(chunk.max(1))
            .map(|batch| {
                scope.spawn(move || {
                    batch
                        .iter()
                        .map(|(name, request)| {
                            (
                                name.clone(),
                                exchange(server, request, Duration::from_secs(10)),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap())
            .collect()
    })
}

/// Returns about `count` prefix lengths of `len`, from 0 up to `len` itself.
fn prefix_lengths(len: usize, count: usize) -> Vec<usize> {
    let step = (len / count).max(1);
    let mut lengths: Vec<usize> = (0..len).step_by(step).collect();
    lengths.push(len - 1);
    lengths.push(len);
    lengths.dedup();
    lengths
}

#[test]
fn truncated_uploads_never_get_5xx() {
    let server = TestServer::start(&[]);
    let mut requests = Vec::new();

    // Every Nth prefix of real images, sent as the whole image part.
    for file in [
        SMALL_JPEG,
        "png/basn6a16_rgba16.png",
        "png/basi6a08_interlaced_rgba.png",
    ] {
        let image = corpus(file);
        for len in prefix_lengths(image.len(), 40) {
            let (content_type, body) = multipart_body(&[("image", Some("cut.bin"), &image[..len])]);
            let request = post_request("/process?w=50", &content_type, &body, &[]);
            requests.push((format!("{file} cut at {len} bytes"), request));
        }
    }

    // Every Nth prefix of a valid multipart body, sent as the whole body.
    let (content_type, body) = multipart_body(&[
        ("note", None, b"hello"),
        ("image", Some("a.jpg"), &corpus(SMALL_JPEG)),
    ]);
    let closing = format!("--{BOUNDARY}--");
    let complete_from = body.len() - 2;
    assert!(body[..complete_from].ends_with(closing.as_bytes()));
    for len in prefix_lengths(body.len(), 60) {
        let request = post_request("/process?w=50", &content_type, &body[..len], &[]);
        requests.push((format!("multipart body cut at {len} bytes"), request));
    }

    let replies = send_all(&server, &requests, 4);
    for (name, seen) in replies {
        let reply = seen.reply(&name);
        assert!(
            reply.status < 500,
            "{name}: {}\nserver log for this request:\n{}",
            reply.describe(),
            log_lines_for(&server, &reply)
        );
        if let Some(len) = name.strip_prefix("multipart body cut at ") {
            let len: usize = len.trim_end_matches(" bytes").parse().unwrap();
            let expected = if len >= complete_from { 200 } else { 400 };
            assert_eq!(reply.status, expected, "{name}: {}", reply.describe());
        }
    }

    // A body that ends before its declared length is a 400, never a hang.
    for len in [0, 100, body.len() / 2, body.len() - 1] {
        let mut client = Client::connect(&server);
        client.send(post_head("/process", Some(KEY), &content_type, body.len()).as_bytes());
        client.send(&body[..len]);
        client.stream.shutdown(Shutdown::Write).unwrap();
        let reply = client
            .reply(PROMPT)
            .reply(&format!("body closed after {len} bytes"));
        assert_eq!(
            reply.status,
            400,
            "closed after {len}: {}",
            reply.describe()
        );
        assert_eq!(reply.error_code(), "incomplete_body");
    }
    assert_serving(&server, "truncated uploads");
}

/// Returns a GIF of `frames` frames of 8x8 px, each a different grey.
fn tiny_animation(frames: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let palette: Vec<u8> = (0..=255u8)
            .flat_map(|level| [level, level, level])
            .collect();
        let mut encoder = gif::Encoder::new(&mut bytes, 8, 8, &palette).unwrap();
        encoder.set_repeat(gif::Repeat::Infinite).unwrap();
        for index in 0..frames {
            let frame = gif::Frame {
                width: 8,
                height: 8,
                delay: 10,
                buffer: vec![index; 64].into(),
                ..gif::Frame::default()
            };
            encoder.write_frame(&frame).unwrap();
        }
    }
    bytes
}

#[test]
fn enlarged_animation_is_rejected_before_resizing() {
    // 100 frames of 7071x7071 px would hold 20 GB of resized frames.
    let server = TestServer::start(&[]);
    let animation = tiny_animation(100);
    for format in ["webp", "gif"] {
        let query = format!("w=7071&h=7071&fit=fill&format={format}");
        let started = Instant::now();
        let reply = server.process(&query, &animation);
        assert_eq!(reply.status, 422, "{query}: {}", reply.describe());
        assert_eq!(reply.error_code(), "output_too_large");
        assert!(
            started.elapsed() < PROMPT,
            "{query} took {:?}",
            started.elapsed()
        );
    }
    // Just over the limit: 100 x 710 x 710 = 50,410,000 px.
    let reply = server.process("w=710&h=710&fit=fill&format=gif", &animation);
    assert_eq!(reply.status, 422, "{}", reply.describe());
    assert_eq!(reply.error_code(), "output_too_large");
    // The same animation at a size within the limit keeps every frame.
    let reply = server.process("w=64&format=gif", &animation);
    assert_eq!(reply.status, 200, "{}", reply.describe());
    assert_eq!(reply.image().width(), 64);
    // A still output of the first frame only is not counted per frame.
    let reply = server.process("w=710&h=710&fit=fill&format=png", &animation);
    assert_eq!(reply.status, 200, "{}", reply.describe());
    assert_eq!(reply.image().width(), 710);
    assert_eq!(server.get("/health").status, 200);
}
