//! The `imgflux` binary: reads the settings, starts logging and serves.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use imgflux::cli::{self, Command};
use imgflux::config::{Config, DEVELOPMENT_KEYS};
use imgflux::server::{self, Shutdown};
use imgflux::service::Service;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args) {
        Command::Serve => serve(),
        Command::Help => {
            print!("{}", Config::help_text());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("imgflux {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Healthcheck => healthcheck(),
        Command::Invalid(args) => {
            eprintln!("imgflux: unknown arguments {args:?}; run `imgflux --help`");
            ExitCode::from(2)
        }
    }
}

fn serve() -> ExitCode {
    let config = match Config::from_process_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("imgflux: {error}");
            return ExitCode::from(2);
        }
    };
    imgflux::logging::init();
    log_settings(&config);

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(error) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            log::error!("installing the handler for signal {signal} failed: {error}");
            return ExitCode::FAILURE;
        }
    }

    let service = Arc::new(Service::new(config));
    let listener = match server::bind(&service) {
        Ok(listener) => listener,
        Err(error) => {
            log::error!("listening on {} failed: {error}", service.config.address);
            return ExitCode::FAILURE;
        }
    };
    match listener.server_addr().to_ip() {
        Some(address) => log::info!("listening on http://{address}"),
        None => log::info!("listening"),
    }
    match server::run(listener, service, &stop) {
        Shutdown::Clean => {
            log::info!("shut down cleanly");
            ExitCode::SUCCESS
        }
        Shutdown::TimedOut { abandoned } => {
            log::error!("shutdown timeout passed; abandoning {abandoned} request(s)");
            ExitCode::FAILURE
        }
    }
}

fn log_settings(config: &Config) {
    log::info!(
        "imgflux {} starting: address={} workers={} queue_size={} max_body_bytes={} read_timeout={}s request_timeout={}s shutdown_timeout={}s max_connections={} max_input_pixels={} max_output_side={} max_output_pixels={} max_frames={} api_keys={} cors_origins={}",
        env!("CARGO_PKG_VERSION"),
        config.address,
        config.workers,
        config.queue_size,
        config.max_body_bytes,
        config.read_timeout.as_secs(),
        config.request_timeout.as_secs(),
        config.shutdown_timeout.as_secs(),
        config.max_connections,
        config.limits.max_input_pixels,
        config.limits.max_output_side,
        config.limits.max_output_pixels,
        config.limits.max_frames,
        config.api_keys.len(),
        if config.cors_origins.is_empty() { "off".to_string() } else { config.cors_origins.join(",") },
    );
    if config.development_keys {
        log::warn!(
            "API_KEYS is not set: accepting the {} public DEVELOPMENT keys; anyone can use this service. Set API_KEYS before exposing it.",
            DEVELOPMENT_KEYS.len()
        );
    }
}

fn healthcheck() -> ExitCode {
    let config = match Config::from_process_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("imgflux healthcheck: {error}");
            return ExitCode::from(2);
        }
    };
    match cli::healthcheck(config.address) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("imgflux healthcheck: {message}");
            ExitCode::FAILURE
        }
    }
}
