//! The shared state of a running service, routing, and the small endpoints.
//!
//! Everything here is cheap and runs on the accept thread: routing, the
//! health, readiness and metrics endpoints, the demo page and the OpenAPI
//! document never wait behind image work.
//!
//! Two bounds shape `/process`. [`Service::try_admit`] caps the requests
//! admitted at once (`workers + queue_size`); each admitted request gets its
//! own thread to receive its body, so a slow upload holds a thread that
//! mostly sleeps, not a CPU. [`Service::acquire_worker`] then caps the
//! requests decoding, transforming or encoding at once (`workers`), which
//! bounds CPU use and the memory of decoded images.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::auth::KeySet;
use crate::body::BodyBuffers;
use crate::config::Config;
use crate::error::ApiError;
use crate::http::{Head, Reply};
use crate::metrics::Metrics;
use crate::pipeline::Scratch;

const DEMO_PAGE: &str = include_str!("web/index.html");
const OPENAPI_DOCUMENT: &str = include_str!("web/openapi.json");
/// The demo page's Content-Security-Policy: inline code is allowed only by
/// its hash, written by `scripts/csp-hashes.sh` whenever the page changes.
const DEMO_PAGE_POLICY: &str = include_str!("web/csp.txt");

/// Seconds a client is asked to wait after a 503 for a full queue.
const RETRY_AFTER_SECS: u32 = 1;

/// An endpoint of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Process,
    /// A CORS preflight (`OPTIONS /process`).
    Preflight,
    /// `OPTIONS *`, a request about the server as a whole (RFC 9110, section 9.3.7).
    ServerOptions,
    Health,
    Ready,
    Metrics,
    DemoPage,
    OpenApi,
}

impl Route {
    /// Returns the route's name as used in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Route::Process => "process",
            Route::Preflight => "preflight",
            Route::ServerOptions => "server_options",
            Route::Health => "health",
            Route::Ready => "ready",
            Route::Metrics => "metrics",
            Route::DemoPage => "demo_page",
            Route::OpenApi => "openapi",
        }
    }
}

/// Maps a method and path to a route, or to 404 or 405.
pub fn route(head: &Head) -> Result<Route, ApiError> {
    let method = head.method.as_str();
    let read_only = |route| match method {
        "GET" | "HEAD" => Ok(route),
        _ => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
    };
    match head.path.as_str() {
        "/process" => match method {
            "POST" => Ok(Route::Process),
            "OPTIONS" => Ok(Route::Preflight),
            _ => Err(ApiError::MethodNotAllowed {
                allow: "POST, OPTIONS",
            }),
        },
        "/health" => read_only(Route::Health),
        "/ready" => read_only(Route::Ready),
        "/metrics" => read_only(Route::Metrics),
        "/" | "/index.html" => read_only(Route::DemoPage),
        "/openapi.json" => read_only(Route::OpenApi),
        "*" => match method {
            "OPTIONS" => Ok(Route::ServerOptions),
            _ => Err(ApiError::MethodNotAllowed { allow: "OPTIONS" }),
        },
        _ => Err(ApiError::NotFound),
    }
}

/// State shared by the accept thread and the workers.
pub struct Service {
    pub config: Config,
    pub keys: KeySet,
    pub metrics: Metrics,
    /// Body buffers of finished requests, kept for the next ones.
    pub body_buffers: BodyBuffers,
    draining: AtomicBool,
    /// `/process` requests admitted and not yet replied to.
    outstanding: AtomicUsize,
    /// Image workers free to take a request.
    free_workers: Mutex<FreeWorkers>,
    worker_freed: Condvar,
}

/// The image workers that are free, each with the buffers it reuses.
struct FreeWorkers {
    scratch: Vec<Scratch>,
    /// When a worker was last freed.
    last_freed: Instant,
    /// Whether the buffers were released after the last request.
    released: bool,
}

impl Service {
    pub fn new(config: Config) -> Service {
        let keys = KeySet::new(&config.api_keys);
        let metrics = Metrics::new(config.workers);
        let workers = config.workers;
        // A body buffer grows by doubling when no length is declared.
        let max_body_buffer = usize::try_from(config.max_body_bytes + 1)
            .unwrap_or(usize::MAX)
            .saturating_mul(2);
        Service {
            config,
            keys,
            metrics,
            body_buffers: BodyBuffers::new(2 * workers, max_body_buffer),
            draining: AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
            free_workers: Mutex::new(FreeWorkers {
                scratch: (0..workers).map(|_| Scratch::new()).collect(),
                last_freed: Instant::now(),
                released: true,
            }),
            worker_freed: Condvar::new(),
        }
    }

    /// Stops taking new work: `/ready` and `/process` return 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Returns the number of `/process` requests queued or running.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::SeqCst)
    }

    /// Takes a slot for one `/process` request, or returns 503 when every
    /// worker is busy and the queue is full.
    pub fn try_admit(self: &Arc<Self>) -> Result<Slot, ApiError> {
        let capacity = self.config.workers + self.config.queue_size;
        let admitted = self
            .outstanding
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < capacity).then_some(n + 1)
            });
        match admitted {
            Ok(_) => Ok(Slot {
                service: Arc::clone(self),
            }),
            Err(_) => Err(ApiError::Overloaded {
                retry_after_secs: RETRY_AFTER_SECS,
            }),
        }
    }

    /// Waits for a free image worker until `deadline`; 503 when none frees in time.
    pub fn acquire_worker(&self, deadline: Instant) -> Result<WorkerPermit<'_>, ApiError> {
        let mut free = self.free_workers.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(scratch) = free.scratch.pop() {
                self.metrics.in_flight.inc();
                return Ok(WorkerPermit {
                    service: self,
                    scratch: Some(scratch),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ApiError::Overloaded {
                    retry_after_secs: RETRY_AFTER_SECS,
                });
            }
            free = self
                .worker_freed
                .wait_timeout(free, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Frees the reusable buffers of the image workers and of request
    /// bodies once every worker has been free for `idle`, and returns the
    /// number of bytes freed.
    ///
    /// Under steady load the buffers are reused from request to request.
    /// After it, the memory goes back to the system.
    pub fn release_idle_memory(&self, idle: Duration) -> usize {
        let mut free = self.free_workers.lock().unwrap_or_else(|e| e.into_inner());
        let busy = free.scratch.len() < self.config.workers;
        if free.released || busy || free.last_freed.elapsed() < idle {
            return 0;
        }
        free.released = true;
        let scratch: usize = free.scratch.iter_mut().map(Scratch::release).sum();
        drop(free);
        let freed = scratch + self.body_buffers.release();
        trim_allocator();
        freed
    }

    /// Returns the bytes kept for reuse by the free workers and in body buffers.
    fn reusable_bytes(&self) -> usize {
        let free = self.free_workers.lock().unwrap_or_else(|e| e.into_inner());
        let scratch: usize = free.scratch.iter().map(Scratch::retained_bytes).sum();
        drop(free);
        scratch + self.body_buffers.retained_bytes()
    }

    /// Renders the metrics, with the queue length and the reusable memory
    /// as of now.
    pub fn render_metrics(&self) -> String {
        let in_flight = self.metrics.in_flight.get().max(0) as usize;
        let queued = self.outstanding().saturating_sub(in_flight);
        self.metrics.queued.set(queued as i64);
        let reusable = i64::try_from(self.reusable_bytes()).unwrap_or(i64::MAX);
        self.metrics.reusable_buffer_bytes.set(reusable);
        self.metrics.render()
    }

    /// Builds the reply for a route that needs no worker.
    pub fn answer(&self, route: Route, head: &Head) -> Reply {
        match route {
            Route::Health => Reply::json(200, &json!({"status": "ok"})),
            Route::Ready if self.is_draining() => Reply::json(503, &json!({"status": "draining"})),
            Route::Ready => Reply::json(200, &json!({"status": "ready"})),
            Route::Metrics => Reply::new(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.render_metrics().into_bytes(),
            ),
            Route::DemoPage => demo_page(),
            Route::OpenApi => Reply::new(
                200,
                "application/json",
                OPENAPI_DOCUMENT.as_bytes().to_vec(),
            ),
            Route::Preflight => self.preflight(head),
            Route::ServerOptions => server_options(),
            Route::Process => unreachable!("/process is answered by a worker"),
        }
    }

    /// Builds the reply to a CORS preflight for `/process`.
    fn preflight(&self, head: &Head) -> Reply {
        let mut reply = Reply::no_content();
        if self.allowed_origin(head).is_some() {
            reply.set_header("Access-Control-Allow-Methods", "POST".to_string());
            reply.set_header(
                "Access-Control-Allow-Headers",
                "x-api-key, content-type, x-request-id".to_string(),
            );
            reply.set_header("Access-Control-Max-Age", "600".to_string());
        }
        reply
    }

    /// Adds CORS headers when the request's `Origin` is allowed.
    pub fn add_cors_headers(&self, head: &Head, reply: &mut Reply) {
        if let Some(origin) = self.allowed_origin(head) {
            reply.set_header("Access-Control-Allow-Origin", origin);
            reply.set_header(
                "Access-Control-Expose-Headers",
                "X-Request-Id, Server-Timing".to_string(),
            );
            let vary = match reply.headers.iter().find(|(n, _)| *n == "Vary") {
                Some((_, existing)) => format!("{existing}, Origin"),
                None => "Origin".to_string(),
            };
            reply.set_header("Vary", vary);
        }
    }

    /// Returns the value for `Access-Control-Allow-Origin`, if CORS allows this request.
    fn allowed_origin(&self, head: &Head) -> Option<String> {
        let origin = head.header("origin")?;
        let origins = &self.config.cors_origins;
        if origins.iter().any(|o| o == "*") {
            Some("*".to_string())
        } else {
            origins.iter().find(|o| *o == origin).cloned()
        }
    }
}

/// Builds the reply to `OPTIONS *`: the methods the service supports on some path,
/// and no body.
fn server_options() -> Reply {
    Reply {
        status: 200,
        headers: vec![("Allow", "GET, HEAD, POST, OPTIONS".to_string())],
        body: Vec::new(),
    }
}

fn demo_page() -> Reply {
    Reply::new(
        200,
        "text/html; charset=utf-8",
        DEMO_PAGE.as_bytes().to_vec(),
    )
    .with_header(
        "Content-Security-Policy",
        DEMO_PAGE_POLICY.trim().to_string(),
    )
    .with_header("X-Content-Type-Options", "nosniff".to_string())
    .with_header("Referrer-Policy", "no-referrer".to_string())
}

/// One admitted `/process` request's place among the admitted requests.
///
/// Dropping it frees the place, whether the request succeeded, failed or panicked.
pub struct Slot {
    service: Arc<Service>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.service.outstanding.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Returns freed heap memory to the system where the allocator keeps it.
///
/// glibc keeps what was freed in per-thread arenas, so after a burst of
/// requests a glibc build stayed at hundreds of MB while idle. musl returns
/// large blocks at once and needs nothing.
fn trim_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only returns free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The right to use one image worker and its buffers. Dropping it frees
/// the worker.
pub struct WorkerPermit<'a> {
    service: &'a Service,
    /// Always `Some` until the permit is dropped.
    scratch: Option<Scratch>,
}

impl WorkerPermit<'_> {
    /// Returns the buffers this worker reuses between requests.
    pub fn scratch(&mut self) -> &mut Scratch {
        self.scratch.get_or_insert_with(Scratch::new)
    }
}

impl Drop for WorkerPermit<'_> {
    fn drop(&mut self) {
        let scratch = self.scratch.take().unwrap_or_default();
        let mut free = self
            .service
            .free_workers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        free.scratch.push(scratch);
        free.last_freed = Instant::now();
        free.released = false;
        self.service.metrics.in_flight.dec();
        self.service.worker_freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, target: &str) -> Head {
        Head::new(method, target, vec![])
    }

    #[test]
    fn routes_known_paths() {
        assert_eq!(route(&head("POST", "/process?w=1")), Ok(Route::Process));
        assert_eq!(route(&head("GET", "/health")), Ok(Route::Health));
        assert_eq!(route(&head("HEAD", "/ready")), Ok(Route::Ready));
        assert_eq!(route(&head("GET", "/")), Ok(Route::DemoPage));
        assert_eq!(
            route(&head("POST", "http://127.0.0.1:3000/process?w=1")),
            Ok(Route::Process)
        );
    }

    #[test]
    fn asterisk_routes_options_only() {
        assert_eq!(route(&head("OPTIONS", "*")), Ok(Route::ServerOptions));
        let error = route(&head("GET", "*")).unwrap_err();
        assert_eq!(error, ApiError::MethodNotAllowed { allow: "OPTIONS" });
        let reply =
            Service::new(Config::default()).answer(Route::ServerOptions, &head("OPTIONS", "*"));
        assert_eq!(reply.status, 200);
        assert!(reply.body.is_empty());
        assert!(reply
            .headers
            .contains(&("Allow", "GET, HEAD, POST, OPTIONS".to_string())));
    }

    #[test]
    fn wrong_method_is_405_with_allow() {
        let error = route(&head("GET", "/process")).unwrap_err();
        assert_eq!(
            error,
            ApiError::MethodNotAllowed {
                allow: "POST, OPTIONS"
            }
        );
        let error = route(&head("DELETE", "/health")).unwrap_err();
        assert_eq!(error, ApiError::MethodNotAllowed { allow: "GET, HEAD" });
    }

    #[test]
    fn unknown_path_is_404() {
        assert_eq!(route(&head("GET", "/processx")), Err(ApiError::NotFound));
        assert_eq!(route(&head("POST", "/process/")), Err(ApiError::NotFound));
    }

    #[test]
    fn admission_is_bounded_and_slots_free_on_drop() {
        let config = Config {
            workers: 1,
            queue_size: 1,
            ..Config::default()
        };
        let service = Arc::new(Service::new(config));
        let first = service.try_admit().unwrap();
        let second = service.try_admit().unwrap();
        assert!(matches!(
            service.try_admit(),
            Err(ApiError::Overloaded { .. })
        ));
        drop(first);
        assert_eq!(service.outstanding(), 1);
        let third = service.try_admit();
        assert!(third.is_ok());
        drop(second);
        drop(third);
        assert_eq!(service.outstanding(), 0);
    }

    #[test]
    fn idle_memory_is_released_once_per_idle_period() {
        let service = Service::new(Config {
            workers: 1,
            ..Config::default()
        });
        let later = Instant::now() + Duration::from_secs(5);
        let permit = service.acquire_worker(later).unwrap();
        service.body_buffers.give_back(Vec::with_capacity(1000));
        assert_eq!(
            service.release_idle_memory(Duration::ZERO),
            0,
            "a worker is busy"
        );
        drop(permit);
        assert_eq!(service.release_idle_memory(Duration::from_secs(60)), 0);
        assert_eq!(service.release_idle_memory(Duration::ZERO), 1000);
        service.body_buffers.give_back(Vec::with_capacity(500));
        assert_eq!(
            service.release_idle_memory(Duration::ZERO),
            0,
            "no request since"
        );
    }

    #[test]
    fn worker_permits_are_bounded_and_time_out() {
        let config = Config {
            workers: 1,
            ..Config::default()
        };
        let service = Service::new(config);
        let soon = Instant::now() + std::time::Duration::from_millis(50);
        let permit = service.acquire_worker(soon).unwrap();
        assert!(matches!(
            service.acquire_worker(soon),
            Err(ApiError::Overloaded { .. })
        ));
        drop(permit);
        assert!(service.acquire_worker(Instant::now()).is_ok());
    }

    #[test]
    fn ready_turns_503_while_draining() {
        let service = Service::new(Config::default());
        assert_eq!(
            service.answer(Route::Ready, &head("GET", "/ready")).status,
            200
        );
        service.start_draining();
        assert_eq!(
            service.answer(Route::Ready, &head("GET", "/ready")).status,
            503
        );
    }

    #[test]
    fn cors_is_off_by_default_and_follows_the_list() {
        let with_origin = Head::new(
            "POST",
            "/process",
            vec![("origin".to_string(), "https://a.example".to_string())],
        );
        let mut reply = Reply::new(200, "image/png", vec![]);
        Service::new(Config::default()).add_cors_headers(&with_origin, &mut reply);
        assert!(!reply
            .headers
            .iter()
            .any(|(n, _)| n.starts_with("Access-Control")));

        let config = Config {
            cors_origins: vec!["https://a.example".to_string()],
            ..Config::default()
        };
        Service::new(config).add_cors_headers(&with_origin, &mut reply);
        assert!(reply.headers.contains(&(
            "Access-Control-Allow-Origin",
            "https://a.example".to_string()
        )));
    }
}
