//! Start-up refusal of bad settings and graceful shutdown on SIGTERM.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use image::GenericImageView;

use crate::util::{multipart_body, read_response, TestServer, KEY};

#[test]
fn invalid_settings_stop_startup_listing_each_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_imgflux"))
        .env_clear()
        .env("PORT", "nope")
        .env("IMGFLUX_WORKERS", "0")
        .env("API_KEYS", " , ")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in ["PORT", "IMGFLUX_WORKERS", "API_KEYS"] {
        assert!(stderr.contains(name), "{name} missing from: {stderr}");
    }
}

#[test]
fn out_of_range_settings_stop_startup() {
    let output = Command::new(env!("CARGO_BIN_EXE_imgflux"))
        .env_clear()
        .env("IMGFLUX_WORKERS", "100000")
        .env("IMGFLUX_MAX_BODY_BYTES", "18446744073709551615")
        .env("IMGFLUX_REQUEST_TIMEOUT_SECS", "86401")
        .env("RUST_LOG", "verbose")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in [
        "IMGFLUX_WORKERS",
        "IMGFLUX_MAX_BODY_BYTES",
        "IMGFLUX_REQUEST_TIMEOUT_SECS",
        "RUST_LOG",
    ] {
        assert!(stderr.contains(name), "{name} missing from: {stderr}");
    }
}

#[test]
fn help_and_version() {
    let help = Command::new(env!("CARGO_BIN_EXE_imgflux"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("IMGFLUX_MAX_BODY_BYTES"), "{text}");
    let version = Command::new(env!("CARGO_BIN_EXE_imgflux"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("imgflux "));
}

#[test]
fn healthcheck_command_follows_the_service() {
    let server = TestServer::start(&[]);
    let port = server.address.port().to_string();
    let status = Command::new(env!("CARGO_BIN_EXE_imgflux"))
        .arg("healthcheck")
        .env_clear()
        .env("PORT", &port)
        .status()
        .unwrap();
    assert!(status.success());
    drop(server);
    let status = Command::new(env!("CARGO_BIN_EXE_imgflux"))
        .arg("healthcheck")
        .env_clear()
        .env("PORT", &port)
        .status()
        .unwrap();
    assert!(!status.success());
}

#[test]
fn sigterm_when_idle_exits_zero() {
    let mut server = TestServer::start(&[]);
    assert_eq!(server.get("/health").status, 200);
    let status = server.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(server.log().contains("shut down cleanly"));
}

#[test]
fn request_in_flight_at_sigterm_gets_full_reply() {
    let mut server = TestServer::start(&[]);
    let photo = crate::util::corpus("photos/harvesters_1165x859.jpg");
    let (content_type, body) = multipart_body(&[("image", Some("a.jpg"), &photo)]);
    let mut stream = server.connect();
    let head = format!(
        "POST /process?w=300 HTTP/1.1\r\nHost: t\r\nx-api-key: {KEY}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let half = body.len() / 2;
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..half]).unwrap();
    // Let the accept loop admit the request before the signal arrives.
    std::thread::sleep(Duration::from_millis(300));
    server.send_sigterm();

    let draining = Instant::now() + Duration::from_secs(5);
    loop {
        let ready = server.get("/ready");
        if ready.status == 503 {
            assert_eq!(ready.json()["status"], "draining");
            break;
        }
        assert!(
            Instant::now() < draining,
            "/ready still answers {}",
            ready.status
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = server.process("w=10", &photo);
    assert_eq!(refused.status, 503);
    assert_eq!(refused.error_code(), "shutting_down");

    stream.write_all(&body[half..]).unwrap();
    let reply = read_response(&mut stream);
    assert_eq!(reply.status, 200, "{}", reply.describe());
    assert_eq!(reply.image().dimensions(), (300, 221));
    assert_eq!(server.wait_for_exit().code(), Some(0));
    assert!(server.log().contains("shut down cleanly"));
}
