//! The accept loop, the worker pool and graceful shutdown.
//!
//! One thread takes requests from `tiny_http` and routes them. Cheap routes
//! are answered right there; an admitted `/process` request goes to a fixed
//! `threadpool` with one thread per admission slot, which reads its body,
//! waits for one of the `workers` image workers, processes the image and
//! replies. This is the only module that knows `tiny_http`.
//!
//! On SIGTERM or SIGINT the service drains: `/ready` turns 503, new
//! `/process` requests get 503, and the loop ends once every admitted request
//! has been answered or the shutdown timeout has passed.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use threadpool::ThreadPool;
use tiny_http::{
    ConfigListenAddr, ErrorReply, ErrorReplyHook, Limits, Request, Response, Server, ServerConfig,
};

use crate::error::ApiError;
use crate::http::{self, Head, Reply};
use crate::logging::{self, HttpLayerRecord, RequestRecord};
use crate::process::{self, Outcome, Ticket};
use crate::service::{self, Route, Service, Slot};

/// Maximum time for a request line and headers; a real client sends them at once.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the accept loop wakes up to check for a shutdown signal.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long every image worker must have been free before the buffers
/// they reuse are freed.
const IDLE_RELEASE_AFTER: Duration = Duration::from_secs(1);

/// The outcome of the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Every admitted request was answered.
    Clean,
    /// The shutdown timeout passed with requests still in flight.
    TimedOut { abandoned: usize },
}

/// Binds the listener with the connection limits from the settings; call [`run`] to serve.
pub fn bind(service: &Service) -> io::Result<Server> {
    let config = &service.config;
    let read_timeout = Some(config.read_timeout);
    let limits = Limits {
        read_timeout,
        write_timeout: read_timeout,
        // A kept-alive connection may wait as long as a client may stay
        // silent mid-request, so a load balancer that reuses connections
        // for up to that long does not meet a closed one.
        idle_timeout: read_timeout,
        request_head_timeout: Some(config.read_timeout.min(HEAD_TIMEOUT)),
        max_connections: config.max_connections,
        ..Limits::default()
    };
    let server_config = ServerConfig {
        addr: ConfigListenAddr::IP(vec![config.address]),
        ssl: None,
        limits,
        error_reply_hook: Some(Arc::new(HttpLayerReplies)),
    };
    Server::new(server_config).map_err(io::Error::other)
}

/// Gives the error replies that tiny_http writes by itself (400, 408, 414,
/// 417, 431, 505, and 503 over the connection cap) a request id, and logs
/// them, including those it could not write because the client was gone.
/// These requests never reach [`dispatch`].
#[derive(Debug)]
struct HttpLayerReplies;

impl ErrorReplyHook for HttpLayerReplies {
    fn request_id(&self) -> Option<String> {
        Some(http::generate_request_id())
    }

    fn replied(&self, reply: &ErrorReply<'_>) {
        let path = reply.url.map(|url| http::path_and_query(url).0);
        logging::log_http_layer_reply(&HttpLayerRecord {
            id: reply.request_id.unwrap_or("-"),
            method: reply.method,
            path,
            status: reply.status,
            bytes_out: reply.body_len,
            error: reply.code,
            write_failed: !reply.written,
        });
    }
}

/// Serves requests until `stop` is set and draining ends.
pub fn run(server: Server, service: Arc<Service>, stop: &AtomicBool) -> Shutdown {
    // One thread per admitted request: it receives the body, then waits for
    // an image worker (`Service::acquire_worker`) to process it.
    let threads = service.config.workers + service.config.queue_size;
    let pool = ThreadPool::with_name("imgflux-request".to_string(), threads);
    let mut drain_started: Option<Instant> = None;
    let mut last_idle_check = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) && drain_started.is_none() {
            log::info!(
                "shutdown requested: draining {} request(s), up to {:?}",
                service.outstanding(),
                service.config.shutdown_timeout
            );
            service.start_draining();
            drain_started = Some(Instant::now());
        }
        if let Some(since) = drain_started {
            // A request frees its place before its reply is written, so
            // also wait for the threads that are still writing replies.
            let outstanding = service.outstanding();
            let writing = pool.active_count() + pool.queued_count();
            if outstanding == 0 && writing == 0 {
                return Shutdown::Clean;
            }
            if since.elapsed() > service.config.shutdown_timeout {
                return Shutdown::TimedOut {
                    abandoned: outstanding.max(writing),
                };
            }
        }
        match server.recv_timeout(POLL_INTERVAL) {
            Ok(Some(request)) => dispatch(request, &service, &pool),
            Ok(None) => {}
            Err(error) => log::error!("accepting a request failed: {error}"),
        }
        // Checked on a timer rather than when no request came, so that
        // frequent probes do not keep the buffers forever.
        if last_idle_check.elapsed() >= POLL_INTERVAL {
            last_idle_check = Instant::now();
            let freed = service.release_idle_memory(IDLE_RELEASE_AFTER);
            if freed > 0 {
                log::debug!("idle: freed {freed} bytes of reusable buffers");
            }
        }
    }
}

/// Routes one request: answers it here, or hands it to a worker.
fn dispatch(request: Request, service: &Arc<Service>, pool: &ThreadPool) {
    let started = Instant::now();
    let head = head_of(&request);
    let id = http::request_id(head.header("x-request-id"));
    let route = match service::route(&head) {
        Ok(route) => route,
        Err(error) => return reply_now(request, service, &head, &id, None, Err(error), started),
    };
    if route != Route::Process {
        let reply = service.answer(route, &head);
        return reply_now(
            request,
            service,
            &head,
            &id,
            Some(route),
            Ok(reply),
            started,
        );
    }
    let admitted =
        process::admit(service, &head).and_then(|ticket| Ok((ticket, service.try_admit()?)));
    match admitted {
        Ok((ticket, slot)) => {
            let service = Arc::clone(service);
            pool.execute(move || work(request, &service, slot, head, id, ticket, started));
        }
        Err(error) => reply_now(
            request,
            service,
            &head,
            &id,
            Some(route),
            Err(error),
            started,
        ),
    }
}

/// Sends a reply built on the accept thread.
fn reply_now(
    request: Request,
    service: &Service,
    head: &Head,
    id: &str,
    route: Option<Route>,
    reply: Result<Reply, ApiError>,
    started: Instant,
) {
    let (reply, error) = match reply {
        Ok(reply) => (reply, None),
        Err(error) => (Reply::error(&error, id), Some(error.code())),
    };
    let quiet = matches!(route, Some(Route::Health | Route::Ready | Route::Metrics));
    let status = reply.status;
    let bytes_out = reply.body.len() as u64;
    send(request, service, head, id, reply);
    service
        .metrics
        .record_request(route.map_or("unknown", Route::name), status);
    logging::log_request(&RequestRecord {
        id,
        method: &head.method,
        path: &head.path,
        status,
        bytes_out,
        error,
        quiet,
        total: started.elapsed(),
        ..RequestRecord::default()
    });
}

/// Processes one admitted `/process` request on a worker thread.
fn work(
    mut request: Request,
    service: &Service,
    slot: Slot,
    head: Head,
    id: String,
    ticket: Ticket,
    started: Instant,
) {
    let deadline = started + service.config.request_timeout;
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        process::run(service, &ticket, request.as_reader(), deadline)
    }))
    .unwrap_or_else(|panic| Outcome {
        result: Err(ApiError::Internal(panic_message(&panic))),
        bytes_in: 0,
        read: Duration::ZERO,
    });
    record_stages(service, &outcome, started);

    let Outcome {
        result,
        bytes_in,
        read,
    } = outcome;
    let (reply, output_facts, error) = match result {
        Ok(mut output) => {
            let reply = process::success_reply(&mut output, read);
            (reply, Some(output), None)
        }
        Err(error) => {
            if let Some(detail) = error.detail() {
                log::error!("request {id} failed with an internal error: {detail}");
            }
            (Reply::error(&error, &id), None, Some(error.code()))
        }
    };
    let status = reply.status;
    let bytes_out = reply.body.len() as u64;
    // The place is free once the work is done: a client that sends its next
    // request as soon as it reads this reply must not find it still taken.
    drop(slot);
    send(request, service, &head, &id, reply);

    service
        .metrics
        .record_request(Route::Process.name(), status);
    service.metrics.record_bytes(bytes_in, bytes_out);
    logging::log_request(&RequestRecord {
        id: &id,
        method: &head.method,
        path: &head.path,
        status,
        bytes_in,
        bytes_out,
        output: output_facts.as_ref(),
        read,
        total: started.elapsed(),
        error,
        quiet: false,
    });
}

fn record_stages(service: &Service, outcome: &Outcome, started: Instant) {
    let metrics = &service.metrics;
    metrics.record_stage("read", outcome.read);
    if let Ok(output) = &outcome.result {
        metrics.record_stage("decode", output.timings.decode);
        metrics.record_stage("transform", output.timings.transform);
        metrics.record_stage("encode", output.timings.encode);
    }
    metrics.record_stage("total", started.elapsed());
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string());
    format!("panic: {text}")
}

/// Converts a tiny_http request into a transport-independent head.
fn head_of(request: &Request) -> Head {
    let headers = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    Head::new(request.method().as_str(), request.url(), headers)
}

/// Sends a reply with the headers every reply carries.
fn send(request: Request, service: &Service, head: &Head, id: &str, mut reply: Reply) {
    reply.set_header("X-Request-Id", id.to_string());
    service.add_cors_headers(head, &mut reply);
    if service.is_draining() {
        reply.set_header("Connection", "close".to_string());
    }
    // Every reply is in memory, so send Content-Length rather than chunks.
    let mut response = Response::from_data(reply.body)
        .with_status_code(reply.status)
        .with_chunked_threshold(usize::MAX);
    for (name, value) in reply.headers {
        let header = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
            .expect("reply headers are ASCII");
        response.add_header(header);
    }
    if let Err(error) = request.respond(response) {
        log::debug!("request {id}: sending the reply failed: {error}");
    }
}
