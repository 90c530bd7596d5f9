//! `POST /process`: from request head to encoded image.
//!
//! The work is split in two by cost. [`admit`] runs the cheap checks on the
//! accept thread, in the order that rejects bad requests soonest: draining,
//! API key, query parameters, content type and boundary, declared length.
//! Only a request that passes them takes a worker, where [`run`] reads the
//! body under its limit and deadline, finds the `image` part and hands it to
//! the pipeline.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::body;
use crate::error::ApiError;
use crate::http::{Head, Reply};
use crate::multipart;
use crate::options::{self, ProcessOptions};
use crate::pipeline::{self, Job, Output, Scratch};
use crate::service::Service;

/// A `/process` request that passed the cheap checks.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub options: ProcessOptions,
    pub boundary: String,
    /// Whether the client's `Accept` header lists `image/webp`.
    pub accept_webp: bool,
    /// The declared `Content-Length`, if any.
    pub content_length: Option<u64>,
    /// Whether to panic on purpose, to test that a panic becomes a 500.
    /// Set only in debug builds, by the `x-imgflux-test-panic` header.
    pub panic_for_test: bool,
}

/// Checks everything that can be checked before reading the body.
pub fn admit(service: &Service, head: &Head) -> Result<Ticket, ApiError> {
    if service.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    if !service.keys.accepts(head.header("x-api-key")) {
        return Err(ApiError::Unauthorized);
    }
    let options = options::parse_query(&head.query)?;
    let boundary = multipart::boundary(head.header("content-type"))?.to_string();
    body::check_declared_length(head.content_length, service.config.max_body_bytes)?;
    Ok(Ticket {
        options,
        boundary,
        accept_webp: accepts_webp(head.header("accept")),
        content_length: head.content_length,
        panic_for_test: cfg!(debug_assertions) && head.header("x-imgflux-test-panic").is_some(),
    })
}

/// The result of one `/process` request, for the reply, the log and the metrics.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<Output, ApiError>,
    /// Body bytes read.
    pub bytes_in: u64,
    /// Time spent reading the body.
    pub read: Duration,
}

/// Reads the body, finds the image and runs the pipeline; runs on a worker.
pub fn run(
    service: &Service,
    ticket: &Ticket,
    reader: &mut dyn Read,
    deadline: Instant,
) -> Outcome {
    let started = Instant::now();
    let limit = service.config.max_body_bytes;
    let buffer = service.body_buffers.take();
    let body = match body::read_limited(reader, ticket.content_length, limit, deadline, buffer) {
        Ok(body) => body,
        Err(error) => {
            return Outcome {
                result: Err(error),
                bytes_in: 0,
                read: started.elapsed(),
            }
        }
    };
    let read = started.elapsed();
    let result = service
        .acquire_worker(deadline)
        .and_then(|mut permit| process_body(service, ticket, &body, deadline, permit.scratch()));
    let bytes_in = body.len() as u64;
    service.body_buffers.give_back(body);
    Outcome {
        result,
        bytes_in,
        read,
    }
}

/// Finds the image part and runs the pipeline; the caller holds a worker.
fn process_body(
    service: &Service,
    ticket: &Ticket,
    body: &[u8],
    deadline: Instant,
    scratch: &mut Scratch,
) -> Result<Output, ApiError> {
    if ticket.panic_for_test {
        panic!("panic requested by x-imgflux-test-panic");
    }
    let job = Job {
        options: &ticket.options,
        limits: &service.config.limits,
        accept_webp: ticket.accept_webp,
        deadline: Some(deadline),
    };
    let part = multipart::image_part(body, &ticket.boundary)?;
    pipeline::process(part.data, &job, scratch)
}

/// Builds the 200 reply for an encoded image, moving the bytes out of `output`.
pub fn success_reply(output: &mut Output, read: Duration) -> Reply {
    let timing = server_timing(read, output);
    let varies = output.varies_on_accept;
    let bytes = std::mem::take(&mut output.bytes);
    let mut reply = Reply::new(200, output.format.mime(), bytes);
    reply.set_header("Server-Timing", timing);
    if varies {
        reply.set_header("Vary", "Accept".to_string());
    }
    reply
}

/// Formats the `Server-Timing` header: one entry per stage, in milliseconds.
fn server_timing(read: Duration, output: &Output) -> String {
    let stages = [
        ("read", read),
        ("decode", output.timings.decode),
        ("transform", output.timings.transform),
        ("encode", output.timings.encode),
    ];
    stages
        .iter()
        .map(|(name, took)| format!("{name};dur={:.1}", took.as_secs_f64() * 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Returns whether an `Accept` header lists `image/webp` with a non-zero quality.
pub fn accepts_webp(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media_type = parts.next().unwrap_or("");
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        media_type.eq_ignore_ascii_case("image/webp") && !refused
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_webp_detection() {
        assert!(accepts_webp(Some("image/avif,image/webp,*/*;q=0.8")));
        assert!(accepts_webp(Some("IMAGE/WEBP")));
        assert!(!accepts_webp(Some("image/webp;q=0")));
        assert!(!accepts_webp(Some("image/*,*/*")));
        assert!(!accepts_webp(None));
    }

    #[test]
    fn server_timing_lists_each_stage() {
        let output = Output {
            bytes: vec![],
            format: pipeline::OutputFormat::Png,
            input_format: "jpeg",
            input_size: (1, 1),
            output_size: (1, 1),
            frames: 1,
            varies_on_accept: false,
            timings: pipeline::Timings {
                decode: Duration::from_micros(2500),
                transform: Duration::from_millis(1),
                encode: Duration::from_millis(3),
                stages: Default::default(),
            },
        };
        assert_eq!(
            server_timing(Duration::from_micros(100), &output),
            "read;dur=0.1, decode;dur=2.5, transform;dur=1.0, encode;dur=3.0"
        );
    }
}
