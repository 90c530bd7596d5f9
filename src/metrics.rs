//! Prometheus metrics, served in the text format at `GET /metrics`.
//!
//! Counters and histograms are lock-free atomics from `prometheus-client`,
//! cheap enough to update on every request from any thread.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

/// The service's metrics and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    stage_seconds: Family<StageLabels, Histogram>,
    bytes_received: Counter,
    bytes_sent: Counter,
    /// Requests a worker is processing now.
    pub in_flight: Gauge,
    /// Requests admitted and receiving their body or waiting for a worker.
    pub queued: Gauge,
    /// Bytes kept allocated for reuse by the next requests.
    pub reusable_buffer_bytes: Gauge,
}

impl Metrics {
    pub fn new(workers: usize) -> Metrics {
        let mut registry = Registry::with_prefix("imgflux");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        let stage_seconds = Family::<StageLabels, Histogram>::new_with_constructor(|| {
            // 0.5 ms to about 16 s.
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "stage_duration_seconds",
            "Time spent per /process stage: read, decode, transform, encode, total",
            stage_seconds.clone(),
        );
        let bytes_received = Counter::default();
        registry.register(
            "received_bytes",
            "Request body bytes read by /process",
            bytes_received.clone(),
        );
        let bytes_sent = Counter::default();
        registry.register(
            "sent_bytes",
            "Image bytes sent by /process",
            bytes_sent.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "/process requests a worker is processing now",
            in_flight.clone(),
        );
        let queued = Gauge::default();
        registry.register(
            "requests_queued",
            "/process requests admitted and receiving their body or waiting for a worker",
            queued.clone(),
        );
        let reusable_buffer_bytes = Gauge::default();
        registry.register(
            "reusable_buffer_bytes",
            "Bytes of pixel, resizer and body buffers kept for the next requests; freed after 1 s \
             without work",
            reusable_buffer_bytes.clone(),
        );
        let worker_gauge = Gauge::<i64>::default();
        worker_gauge.set(workers as i64);
        registry.register("workers", "Image worker threads", worker_gauge);

        Metrics {
            registry,
            requests,
            stage_seconds,
            bytes_received,
            bytes_sent,
            in_flight,
            queued,
            reusable_buffer_bytes,
        }
    }

    /// Counts one answered request.
    pub fn record_request(&self, route: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
    }

    /// Records the time one stage took.
    pub fn record_stage(&self, stage: &'static str, took: Duration) {
        self.stage_seconds
            .get_or_create(&StageLabels { stage })
            .observe(took.as_secs_f64());
    }

    /// Counts body bytes read and image bytes sent by `/process`.
    pub fn record_bytes(&self, received: u64, sent: u64) {
        self.bytes_received.inc_by(received);
        self.bytes_sent.inc_by(sent);
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_recorded_values() {
        let metrics = Metrics::new(3);
        metrics.record_request("process", 200);
        metrics.record_request("process", 200);
        metrics.record_stage("decode", Duration::from_millis(3));
        metrics.record_bytes(100, 40);
        let text = metrics.render();
        assert!(
            text.contains("imgflux_requests_total{route=\"process\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("imgflux_workers 3"), "{text}");
        assert!(text.contains("imgflux_received_bytes_total 100"), "{text}");
        assert!(
            text.contains("imgflux_stage_duration_seconds_count{stage=\"decode\"} 1"),
            "{text}"
        );
    }
}
