//! The shared state of a running service, routing, and the small endpoints.
//!
//! Everything here is cheap and runs on the accept thread: routing, the
//! health, readiness and metrics endpoints, the demo page and the OpenAPI
//! document never wait behind image work. [`Service::try_admit`] bounds how
//! many `/process` requests may be queued or running at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::auth::KeySet;
use crate::config::Config;
use crate::error::ApiError;
use crate::http::{Head, Reply};
use crate::metrics::Metrics;

const DEMO_PAGE: &str = include_str!("web/index.html");
const OPENAPI_DOCUMENT: &str = include_str!("web/openapi.json");

/// Seconds a client is asked to wait after a 503 for a full queue.
const RETRY_AFTER_SECS: u32 = 1;

/// An endpoint of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Process,
    /// A CORS preflight (`OPTIONS /process`).
    Preflight,
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
        _ => Err(ApiError::NotFound),
    }
}

/// State shared by the accept thread and the workers.
pub struct Service {
    pub config: Config,
    pub keys: KeySet,
    pub metrics: Metrics,
    draining: AtomicBool,
    /// `/process` requests admitted and not yet answered.
    outstanding: AtomicUsize,
}

impl Service {
    pub fn new(config: Config) -> Service {
        let keys = KeySet::new(&config.api_keys);
        let metrics = Metrics::new(config.workers);
        Service {
            config,
            keys,
            metrics,
            draining: AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
        }
    }

    /// Stops taking new work: `/ready` turns 503 and `/process` answers 503.
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
            Ok(_) => {
                self.metrics.queued.inc();
                Ok(Slot {
                    service: Arc::clone(self),
                    started: false,
                })
            }
            Err(_) => Err(ApiError::Overloaded {
                retry_after_secs: RETRY_AFTER_SECS,
            }),
        }
    }

    /// Answers a route that needs no worker.
    pub fn answer(&self, route: Route, head: &Head) -> Reply {
        match route {
            Route::Health => Reply::json(200, &json!({"status": "ok"})),
            Route::Ready if self.is_draining() => Reply::json(503, &json!({"status": "draining"})),
            Route::Ready => Reply::json(200, &json!({"status": "ready"})),
            Route::Metrics => Reply::new(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render().into_bytes(),
            ),
            Route::DemoPage => demo_page(),
            Route::OpenApi => Reply::new(
                200,
                "application/json",
                OPENAPI_DOCUMENT.as_bytes().to_vec(),
            ),
            Route::Preflight => self.preflight(head),
            Route::Process => unreachable!("/process is answered by a worker"),
        }
    }

    /// Answers a CORS preflight for `/process`.
    fn preflight(&self, head: &Head) -> Reply {
        let mut reply = Reply::new(204, "text/plain", Vec::new());
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
            reply.set_header("Vary", "Origin".to_string());
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

fn demo_page() -> Reply {
    let policy = concat!(
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; ",
        "img-src blob: data:; connect-src 'self'; form-action 'none'; ",
        "base-uri 'none'; frame-ancestors 'none'"
    );
    Reply::new(
        200,
        "text/html; charset=utf-8",
        DEMO_PAGE.as_bytes().to_vec(),
    )
    .with_header("Content-Security-Policy", policy.to_string())
    .with_header("X-Content-Type-Options", "nosniff".to_string())
    .with_header("Referrer-Policy", "no-referrer".to_string())
}

/// One admitted `/process` request's place in the queue or on a worker.
///
/// Dropping it frees the place, whether the request succeeded, failed or panicked.
pub struct Slot {
    service: Arc<Service>,
    started: bool,
}

impl Slot {
    /// Marks the request as taken by a worker.
    pub fn start(&mut self) {
        if !self.started {
            self.started = true;
            self.service.metrics.queued.dec();
            self.service.metrics.in_flight.inc();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.started {
            self.service.metrics.in_flight.dec();
        } else {
            self.service.metrics.queued.dec();
        }
        self.service.outstanding.fetch_sub(1, Ordering::SeqCst);
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
