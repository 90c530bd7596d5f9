//! Fuzzes request handling from raw bytes to reply, without the socket.
//!
//! The input is parsed as an HTTP/1.1 request head with `httparse`; the
//! bytes after the head are the body. The head goes through routing, the
//! cheap `/process` checks and, when they pass, the body read, the multipart
//! parser and the image pipeline, exactly as the server runs them. No input
//! may produce a 500: every failure must be a client error with its own
//! status, or a 503.
//!
//! The service has small limits so that one input stays fast, and one API
//! key, `fuzz-key`, which the seeds carry: keys are compared in constant
//! time, so the fuzzer cannot discover a key by itself.

#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use imgflux::config::Config;
use imgflux::http::{Head, Reply};
use imgflux::pipeline::Limits;
use imgflux::process;
use imgflux::service::{self, Route, Service};
use libfuzzer_sys::fuzz_target;

/// The header that makes debug builds panic on purpose; fuzzing it would
/// only rediscover that.
const TEST_PANIC_HEADER: &str = "x-imgflux-test-panic";

const MAX_HEADERS: usize = 32;

fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let config = Config {
            api_keys: vec!["fuzz-key".to_string()],
            development_keys: false,
            workers: 1,
            queue_size: 1,
            max_body_bytes: 256 * 1024,
            limits: Limits {
                max_input_pixels: 4_000_000,
                max_output_side: 2048,
                max_output_pixels: 4_000_000,
                max_frames: 10,
                ..Limits::default()
            },
            ..Config::default()
        };
        Service::new(config)
    })
}

fuzz_target!(|input: &[u8]| {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut storage);
    let Ok(httparse::Status::Complete(head_len)) = request.parse(input) else {
        return;
    };
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return;
    };
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|header| !header.name.eq_ignore_ascii_case(TEST_PANIC_HEADER))
        .filter_map(|header| {
            let value = std::str::from_utf8(header.value).ok()?;
            Some((header.name.to_ascii_lowercase(), value.to_string()))
        })
        .collect();
    let head = Head::new(method, target, headers);
    let body = &input[head_len..];

    let reply = respond(&head, body);
    assert_ne!(
        reply.status,
        500,
        "a 500 for {method} {target}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(
        (200..600).contains(&reply.status),
        "status {}",
        reply.status
    );
});

/// Builds the reply to one request the way the server's accept thread and worker do.
fn respond(head: &Head, body: &[u8]) -> Reply {
    let service = service();
    let route = match service::route(head) {
        Ok(route) => route,
        Err(error) => return Reply::error(&error, "fuzz"),
    };
    if route != Route::Process {
        return service.answer(route, head);
    }
    let ticket = match process::admit(service, head) {
        Ok(ticket) => ticket,
        Err(error) => return Reply::error(&error, "fuzz"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reader = body;
    let outcome = process::run(service, &ticket, &mut reader, deadline);
    match outcome.result {
        Ok(mut output) => process::success_reply(&mut output, outcome.read),
        Err(error) => Reply::error(&error, "fuzz"),
    }
}
