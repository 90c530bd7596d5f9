//! Command-line arguments: serve, `--help`, `--version` and `healthcheck`.
//!
//! Settings come from the environment, not from flags, so the command line
//! only selects what the binary does. `healthcheck` exists because a
//! distroless container has no curl for its health check.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// The action selected on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve,
    Help,
    Version,
    Healthcheck,
    /// An argument the binary does not know.
    Invalid(String),
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Command {
    match args {
        [] => Command::Serve,
        [flag] if flag == "--help" || flag == "-h" => Command::Help,
        [flag] if flag == "--version" || flag == "-V" => Command::Version,
        [command] if command == "healthcheck" => Command::Healthcheck,
        other => Command::Invalid(other.join(" ")),
    }
}

/// Time the health check may take in all.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks the local service for `GET /health`; returns whether it answered 200.
///
/// The address is the one the service listens on, with a wildcard host
/// (`0.0.0.0` or `::`) replaced by loopback.
pub fn healthcheck(address: SocketAddr) -> Result<(), String> {
    let target = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), address.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), address.port())
        }
        _ => address,
    };
    let mut stream = TcpStream::connect_timeout(&target, HEALTHCHECK_TIMEOUT)
        .map_err(|e| format!("connecting to {target} failed: {e}"))?;
    stream
        .set_read_timeout(Some(HEALTHCHECK_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(HEALTHCHECK_TIMEOUT)))
        .map_err(|e| format!("setting timeouts failed: {e}"))?;
    let request = format!("GET /health HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending to {target} failed: {e}"))?;
    let mut head = [0u8; 64];
    let read = stream
        .read(&mut head)
        .map_err(|e| format!("reading from {target} failed: {e}"))?;
    let status_line = String::from_utf8_lossy(&head[..read]);
    if status_line.starts_with("HTTP/1.1 200") || status_line.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        let first = status_line.lines().next().unwrap_or("").to_string();
        Err(format!("{target}/health answered {first:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_each_command() {
        assert_eq!(parse(&args(&[])), Command::Serve);
        assert_eq!(parse(&args(&["--help"])), Command::Help);
        assert_eq!(parse(&args(&["-V"])), Command::Version);
        assert_eq!(parse(&args(&["healthcheck"])), Command::Healthcheck);
        assert_eq!(
            parse(&args(&["serve", "--port"])),
            Command::Invalid("serve --port".to_string())
        );
    }

    #[test]
    fn healthcheck_fails_when_nothing_listens() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        assert!(healthcheck(address).is_err());
    }
}
