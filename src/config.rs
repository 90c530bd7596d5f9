//! Settings, read once from the environment at start-up.
//!
//! Loading has two steps, as in most well-run services: [`Config::from_env`]
//! parses every variable into typed values and collects *all* errors, so an
//! operator sees every bad variable in one message; [`Config::validate`] then
//! checks the values against each other. A service must refuse to start on a
//! bad setting rather than fall back silently, with one exception that is
//! logged loudly: without `API_KEYS` the development keys are used.
//!
//! [`SETTINGS`] is the one table of variables, defaults and units; `--help`
//! and the README are written from it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::pipeline::Limits;

/// The keys used when `API_KEYS` is not set, for local development only.
pub const DEVELOPMENT_KEYS: &[&str] = &["rust_is_fast_123", "demo_user_007"];

/// Default queue length per worker. With 2 workers it admits 18 requests, so
/// a client pool of 16 connections gets no instant 503s. Bodies are buffered
/// as they arrive, so a waiting request costs only what it has sent.
pub const QUEUE_PER_WORKER: usize = 8;

/// One environment variable the service reads.
pub struct Setting {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// Every setting, in the order `--help` prints them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "HOST",
        default: "0.0.0.0",
        help: "IP address to listen on",
    },
    Setting {
        name: "PORT",
        default: "3000",
        help: "TCP port to listen on (0 picks a free port)",
    },
    Setting {
        name: "API_KEYS",
        default: "(development keys)",
        help: "comma-separated API keys accepted in x-api-key; unset uses the development keys",
    },
    Setting {
        name: "IMGFLUX_WORKERS",
        default: "(CPU cores)",
        help: "image worker threads, 1 to 1024",
    },
    Setting {
        name: "IMGFLUX_QUEUE_SIZE",
        default: "(8 x workers)",
        help: "requests waiting for a worker, 0 to 65536; beyond them /process returns 503",
    },
    Setting {
        name: "IMGFLUX_MAX_BODY_BYTES",
        default: "10485760",
        help: "maximum request body, in bytes, up to 1 GiB",
    },
    Setting {
        name: "IMGFLUX_READ_TIMEOUT_SECS",
        default: "30",
        help: "seconds a client may stay silent while sending a request",
    },
    Setting {
        name: "IMGFLUX_REQUEST_TIMEOUT_SECS",
        default: "60",
        help: "seconds for one whole /process request, upload included; at least the read timeout",
    },
    Setting {
        name: "IMGFLUX_SHUTDOWN_TIMEOUT_SECS",
        default: "30",
        help: "seconds in-flight requests get to finish after SIGTERM",
    },
    Setting {
        name: "IMGFLUX_MAX_CONNECTIONS",
        default: "1024",
        help: "open client connections; more are answered 503 and closed",
    },
    Setting {
        name: "IMGFLUX_MAX_INPUT_PIXELS",
        default: "50000000",
        help: "maximum input pixels (width x height x frames), checked from the header",
    },
    Setting {
        name: "IMGFLUX_MAX_OUTPUT_SIDE",
        default: "8192",
        help: "maximum output width or height, in pixels",
    },
    Setting {
        name: "IMGFLUX_MAX_OUTPUT_PIXELS",
        default: "50000000",
        help: "maximum output pixels (width x height x frames of a kept animation)",
    },
    Setting {
        name: "IMGFLUX_MAX_FRAMES",
        default: "100",
        help: "maximum animation frames decoded",
    },
    Setting {
        name: "IMGFLUX_CORS_ORIGINS",
        default: "(CORS off)",
        help: "comma-separated origins allowed to call /process from a browser, or *",
    },
    Setting {
        name: "RUST_LOG",
        default: "info",
        help: "log level (error, warn, info, debug, trace, off) or target=level pairs",
    },
];

/// The effective settings of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the listener binds.
    pub address: SocketAddr,
    /// API keys accepted in `x-api-key`.
    pub api_keys: Vec<String>,
    /// Whether `api_keys` are the built-in development keys.
    pub development_keys: bool,
    /// Image worker threads.
    pub workers: usize,
    /// Requests that may wait for a worker.
    pub queue_size: usize,
    /// Maximum request body, in bytes.
    pub max_body_bytes: u64,
    /// How long a client may stay silent on its connection.
    pub read_timeout: Duration,
    /// How long one `/process` request may take, upload included.
    pub request_timeout: Duration,
    /// How long in-flight requests get to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// Open client connections allowed at once.
    pub max_connections: usize,
    /// Image limits handed to the pipeline.
    pub limits: Limits,
    /// Origins allowed by CORS; empty means CORS is off.
    pub cors_origins: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Config {
            address: SocketAddr::from(([0, 0, 0, 0], 3000)),
            api_keys: DEVELOPMENT_KEYS.iter().map(|k| k.to_string()).collect(),
            development_keys: true,
            workers,
            queue_size: QUEUE_PER_WORKER * workers,
            max_body_bytes: 10 * 1024 * 1024,
            read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            max_connections: 1024,
            limits: Limits::default(),
            cors_origins: Vec::new(),
        }
    }
}

/// A setting that failed to parse or validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub name: &'static str,
    /// The value as given, or a placeholder where it is secret.
    pub value: String,
    pub allowed: String,
}

/// Every bad setting found, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<SettingError>);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid settings ({}):", self.0.len())?;
        for error in &self.0 {
            writeln!(f, "  {}={:?}: {}", error.name, error.value, error.allowed)?;
        }
        write!(f, "run `imgflux --help` for every setting and its default")
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_process_env() -> Result<Config, ConfigError> {
        Config::from_env(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`, collecting every error, then validates them.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut reader = EnvReader {
            lookup: &lookup,
            errors: Vec::new(),
        };
        let mut config = Config::default();

        let host = reader.parse("HOST", "an IP address such as 0.0.0.0 or ::1", |v| {
            v.parse::<IpAddr>().ok()
        });
        let port = reader.parse("PORT", "a TCP port, 0 to 65535", |v| v.parse::<u16>().ok());
        config.address = SocketAddr::new(
            host.unwrap_or(config.address.ip()),
            port.unwrap_or(config.address.port()),
        );

        if let Some(raw) = lookup("API_KEYS") {
            let keys = parse_keys(&raw);
            if keys.is_empty() {
                reader.errors.push(SettingError {
                    name: "API_KEYS",
                    value: "(no usable key)".to_string(),
                    allowed: "at least one non-empty key, comma-separated".to_string(),
                });
            }
            config.api_keys = keys;
            config.development_keys = false;
        }

        let positive = "a whole number, 1 or more";
        let workers = "a whole number, 1 to 1024";
        if let Some(n) = reader.parse("IMGFLUX_WORKERS", workers, |v| parse_up_to(v, 1, 1024)) {
            config.workers = n as usize;
            config.queue_size = QUEUE_PER_WORKER * config.workers;
        }
        let queue = "a whole number, 0 to 65536";
        if let Some(n) = reader.parse("IMGFLUX_QUEUE_SIZE", queue, |v| parse_up_to(v, 0, 65536)) {
            config.queue_size = n as usize;
        }
        let body = "a whole number of bytes, 1 to 1073741824 (1 GiB)";
        if let Some(n) = reader.parse("IMGFLUX_MAX_BODY_BYTES", body, |v| {
            parse_up_to(v, 1, 1 << 30)
        }) {
            config.max_body_bytes = n;
        }
        // A day bounds the deadlines, so that adding them to the clock cannot overflow.
        let seconds = "a whole number of seconds, 1 to 86400";
        let parse_seconds = |v: &str| parse_up_to(v, 1, 86_400);
        if let Some(n) = reader.parse("IMGFLUX_READ_TIMEOUT_SECS", seconds, parse_seconds) {
            config.read_timeout = Duration::from_secs(n);
        }
        if let Some(n) = reader.parse("IMGFLUX_REQUEST_TIMEOUT_SECS", seconds, parse_seconds) {
            config.request_timeout = Duration::from_secs(n);
        }
        if let Some(n) = reader.parse("IMGFLUX_SHUTDOWN_TIMEOUT_SECS", seconds, parse_seconds) {
            config.shutdown_timeout = Duration::from_secs(n);
        }
        if let Some(n) = reader.parse("IMGFLUX_MAX_CONNECTIONS", positive, parse_positive) {
            config.max_connections = n as usize;
        }
        if let Some(n) = reader.parse("IMGFLUX_MAX_INPUT_PIXELS", positive, parse_positive) {
            config.limits.max_input_pixels = n;
        }
        let side = "a whole number of pixels, 1 to 65535";
        if let Some(n) = reader.parse("IMGFLUX_MAX_OUTPUT_SIDE", side, parse_side) {
            config.limits.max_output_side = n;
        }
        if let Some(n) = reader.parse("IMGFLUX_MAX_OUTPUT_PIXELS", positive, parse_positive) {
            config.limits.max_output_pixels = n;
        }
        let frames = "a whole number of frames, 1 to 10000";
        if let Some(n) = reader.parse("IMGFLUX_MAX_FRAMES", frames, parse_frames) {
            config.limits.max_frames = n;
        }
        let filter = "a level (error, warn, info, debug, trace or off), or comma-separated \
                      target=level pairs such as info,imgflux=debug";
        reader.parse("RUST_LOG", filter, |v| is_log_filter(v).then_some(()));
        let origins = "comma-separated origins such as https://example.com, or *";
        if let Some(list) = reader.parse("IMGFLUX_CORS_ORIGINS", origins, parse_origins) {
            config.cors_origins = list;
        }

        let mut errors = reader.errors;
        errors.extend(config.validate());
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(errors))
        }
    }

    /// Checks the values against each other.
    pub fn validate(&self) -> Vec<SettingError> {
        let mut errors = Vec::new();
        if self.limits.max_output_pixels < u64::from(self.limits.max_output_side) {
            errors.push(SettingError {
                name: "IMGFLUX_MAX_OUTPUT_PIXELS",
                value: self.limits.max_output_pixels.to_string(),
                allowed: "at least IMGFLUX_MAX_OUTPUT_SIDE".to_string(),
            });
        }
        if self.request_timeout < self.read_timeout {
            errors.push(SettingError {
                name: "IMGFLUX_REQUEST_TIMEOUT_SECS",
                value: self.request_timeout.as_secs().to_string(),
                allowed: "at least IMGFLUX_READ_TIMEOUT_SECS".to_string(),
            });
        }
        errors
    }

    /// Renders the `--help` text from [`SETTINGS`].
    pub fn help_text() -> String {
        let mut text = String::from(concat!(
            "imgflux ",
            env!("CARGO_PKG_VERSION"),
            ": a fast image-resizing HTTP service\n\n",
            "USAGE:\n",
            "    imgflux               start the service\n",
            "    imgflux healthcheck   exit 0 when the local service answers GET /health\n",
            "    imgflux --help        print this help\n",
            "    imgflux --version     print the version\n\n",
            "SETTINGS (environment variables):\n",
        ));
        for setting in SETTINGS {
            text.push_str(&format!(
                "    {:<31} {} [default: {}]\n",
                setting.name, setting.help, setting.default
            ));
        }
        text
    }
}

/// Parses environment variables and records every failure.
struct EnvReader<'a, F: Fn(&str) -> Option<String>> {
    lookup: &'a F,
    errors: Vec<SettingError>,
}

impl<F: Fn(&str) -> Option<String>> EnvReader<'_, F> {
    /// Returns the parsed value, `None` when the variable is unset or invalid.
    fn parse<T>(
        &mut self,
        name: &'static str,
        allowed: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let raw = (self.lookup)(name)?;
        let parsed = parse(raw.trim());
        if parsed.is_none() {
            self.errors.push(SettingError {
                name,
                value: raw,
                allowed: allowed.to_string(),
            });
        }
        parsed
    }
}

/// Splits `API_KEYS`: comma-separated, surrounding spaces trimmed, empty entries ignored.
pub fn parse_keys(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses a whole number from `min` to `max`.
fn parse_up_to(value: &str, min: u64, max: u64) -> Option<u64> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
}

/// Returns whether `value` is a log filter of levels and target=level pairs.
///
/// env_logger would read a misspelt level such as `verbose` as the name of
/// a module to log, and so log nothing at all, the start-up error included.
fn is_log_filter(value: &str) -> bool {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let is_level = |word: &str| LEVELS.iter().any(|level| level.eq_ignore_ascii_case(word));
    if value.trim().is_empty() {
        return true;
    }
    value.split(',').all(|directive| {
        let directive = directive.trim();
        match directive.split_once('=') {
            Some((target, level)) => !target.trim().is_empty() && is_level(level.trim()),
            None => is_level(directive),
        }
    })
}

fn parse_positive(value: &str) -> Option<u64> {
    value.parse::<u64>().ok().filter(|&n| n > 0)
}

fn parse_side(value: &str) -> Option<u32> {
    value
        .parse::<u32>()
        .ok()
        .filter(|&n| (1..=65535).contains(&n))
}

fn parse_frames(value: &str) -> Option<u32> {
    value
        .parse::<u32>()
        .ok()
        .filter(|&n| (1..=10_000).contains(&n))
}

fn parse_origins(value: &str) -> Option<Vec<String>> {
    let origins: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(str::to_string)
        .collect();
    let valid = |origin: &String| {
        origin == "*"
            || ((origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && origin.bytes().all(|b| b.is_ascii_graphic()))
    };
    (!origins.is_empty() && origins.iter().all(valid)).then_some(origins)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config_from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_env(|name| map.get(name).cloned())
    }

    #[test]
    fn absurd_sizes_and_durations_are_errors() {
        for (name, value) in [
            ("IMGFLUX_WORKERS", "100000"),
            ("IMGFLUX_QUEUE_SIZE", "1000000"),
            ("IMGFLUX_MAX_BODY_BYTES", "18446744073709551615"),
            ("IMGFLUX_REQUEST_TIMEOUT_SECS", "18446744073709551615"),
            ("IMGFLUX_SHUTDOWN_TIMEOUT_SECS", "86401"),
        ] {
            let error = config_from(&[(name, value)]).unwrap_err();
            assert_eq!(error.0.len(), 1, "{name}={value}");
            assert_eq!(error.0[0].name, name);
        }
        let config = config_from(&[
            ("IMGFLUX_WORKERS", "1024"),
            ("IMGFLUX_MAX_BODY_BYTES", "1073741824"),
        ])
        .unwrap();
        assert_eq!(config.workers, 1024);
        assert_eq!(config.max_body_bytes, 1 << 30);
    }

    #[test]
    fn log_filter_must_name_levels() {
        for valid in ["", "info", "WARN", "info,imgflux=debug", "tiny_http = off"] {
            assert!(config_from(&[("RUST_LOG", valid)]).is_ok(), "{valid:?}");
        }
        for invalid in ["verbose", "info,loud", "=debug", "imgflux=chatty"] {
            let error = config_from(&[("RUST_LOG", invalid)]).unwrap_err();
            assert_eq!(error.0[0].name, "RUST_LOG", "{invalid:?}");
        }
    }

    #[test]
    fn defaults_without_environment() {
        let config = config_from(&[]).unwrap();
        assert_eq!(config.address, "0.0.0.0:3000".parse().unwrap());
        assert!(config.development_keys);
        assert_eq!(config.api_keys, DEVELOPMENT_KEYS);
        assert_eq!(config.max_body_bytes, 10_485_760);
        assert_eq!(config.queue_size, QUEUE_PER_WORKER * config.workers);
    }

    #[test]
    fn host_and_port_override_address() {
        let config = config_from(&[("HOST", "127.0.0.1"), ("PORT", "8080")]).unwrap();
        assert_eq!(config.address, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn api_keys_are_trimmed_and_empty_entries_dropped() {
        let config = config_from(&[("API_KEYS", " alpha , ,beta,, ")]).unwrap();
        assert_eq!(config.api_keys, vec!["alpha", "beta"]);
        assert!(!config.development_keys);
    }

    #[test]
    fn api_keys_without_usable_key_is_an_error() {
        let error = config_from(&[("API_KEYS", " , ,")]).unwrap_err();
        assert_eq!(error.0.len(), 1);
        assert_eq!(error.0[0].name, "API_KEYS");
    }

    #[test]
    fn every_bad_variable_is_reported_together() {
        let error = config_from(&[
            ("PORT", "http"),
            ("IMGFLUX_WORKERS", "0"),
            ("IMGFLUX_MAX_FRAMES", "-1"),
            ("HOST", "localhost"),
        ])
        .unwrap_err();
        let names: Vec<&str> = error.0.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            vec!["HOST", "PORT", "IMGFLUX_WORKERS", "IMGFLUX_MAX_FRAMES"]
        );
        let message = error.to_string();
        assert!(message.contains("PORT=\"http\""), "{message}");
    }

    #[test]
    fn key_values_never_appear_in_errors() {
        let error = config_from(&[("API_KEYS", ","), ("PORT", "x")]).unwrap_err();
        assert!(!error.to_string().contains(",\""), "{error}");
    }

    #[test]
    fn workers_set_the_default_queue() {
        let config = config_from(&[("IMGFLUX_WORKERS", "3")]).unwrap();
        assert_eq!(config.workers, 3);
        assert_eq!(config.queue_size, 24);
        let config = config_from(&[("IMGFLUX_WORKERS", "3"), ("IMGFLUX_QUEUE_SIZE", "0")]);
        assert_eq!(config.unwrap().queue_size, 0);
    }

    #[test]
    fn cors_origins_are_validated() {
        let config = config_from(&[("IMGFLUX_CORS_ORIGINS", "https://a.example, http://b:8080")]);
        assert_eq!(
            config.unwrap().cors_origins,
            vec!["https://a.example", "http://b:8080"]
        );
        assert!(config_from(&[("IMGFLUX_CORS_ORIGINS", "a.example")]).is_err());
    }

    #[test]
    fn request_timeout_must_cover_read_timeout() {
        let error = config_from(&[
            ("IMGFLUX_READ_TIMEOUT_SECS", "30"),
            ("IMGFLUX_REQUEST_TIMEOUT_SECS", "10"),
        ])
        .unwrap_err();
        assert_eq!(error.0[0].name, "IMGFLUX_REQUEST_TIMEOUT_SECS");
    }

    #[test]
    fn help_lists_every_setting() {
        let help = Config::help_text();
        for setting in SETTINGS {
            assert!(help.contains(setting.name), "{} missing", setting.name);
        }
    }
}
