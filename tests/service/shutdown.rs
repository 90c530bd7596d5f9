//! Start-up refusal of bad settings and graceful shutdown on SIGTERM.

use std::process::Command;

use crate::util::TestServer;

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
