//! The operations endpoints: /health, /ready, /metrics, the demo page and the OpenAPI document.

use std::time::{Duration, Instant};

use crate::util::{corpus, TestServer};

#[test]
fn health_answers_without_key() {
    let server = TestServer::start(&[]);
    let reply = server.get("/health");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json()["status"], "ok");
    assert!(reply.header("x-request-id").is_some());
}

#[test]
fn ready_answers_200_while_serving() {
    let server = TestServer::start(&[]);
    let reply = server.get("/ready");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["status"], "ready");
}

#[test]
fn metrics_count_process_requests() {
    let server = TestServer::start(&[]);
    assert_eq!(
        server
            .process("w=10", &corpus("jpeg/baseline_testorig.jpg"))
            .status,
        200
    );
    server.wait_for_log("path=/process status=200");
    let reply = server.get("/metrics");
    assert_eq!(reply.status, 200);
    let text = String::from_utf8(reply.body).unwrap();
    assert!(
        text.contains("imgflux_requests_total{route=\"process\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(text.contains("imgflux_stage_duration_seconds_count{stage=\"decode\"} 1"));
    assert!(text.contains("imgflux_workers "));
    assert!(text.contains("imgflux_requests_in_flight 0"));
}

/// Returns the value of the reusable buffer gauge from /metrics.
fn reusable_buffer_bytes(server: &TestServer) -> u64 {
    let reply = server.get("/metrics");
    let text = String::from_utf8(reply.body).unwrap();
    let line = text
        .lines()
        .find(|line| line.starts_with("imgflux_reusable_buffer_bytes "))
        .unwrap_or_else(|| panic!("no reusable buffer gauge in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn reusable_buffers_are_freed_when_idle() {
    let server = TestServer::start(&[("IMGFLUX_WORKERS", "1")]);
    assert_eq!(reusable_buffer_bytes(&server), 0);
    // 1165x859 to 500 px wide resizes, so the worker keeps the decoded
    // pixels and the resizer's rows, and the body buffer is retained too.
    let photo = corpus("photos/harvesters_1165x859.jpg");
    assert_eq!(server.process("w=500", &photo).status, 200);
    server.wait_for_log("path=/process status=200");
    let retained = reusable_buffer_bytes(&server);
    assert!(retained > 500_000, "only {retained} bytes were retained");

    // The service frees them about a second after the last image request,
    // even while /metrics is polled faster than its 100 ms idle check.
    let give_up = Instant::now() + Duration::from_secs(10);
    while reusable_buffer_bytes(&server) != 0 {
        assert!(
            Instant::now() < give_up,
            "buffers still retained after 10 s"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(server.process("w=500", &photo).status, 200);
}

#[test]
fn demo_page_and_openapi_are_served() {
    let server = TestServer::start(&[]);
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.header("content-security-policy").is_some());
    let document = server.get("/openapi.json");
    assert_eq!(document.status, 200);
    assert!(document.json()["openapi"]
        .as_str()
        .unwrap()
        .starts_with("3.1"));
}
