//! ImgFlux: a small, fast image-resizing HTTP service.
//!
//! A request flows through one module per stage: `server` accepts it and
//! hands `/process` work to a worker pool, `service` routes it and answers
//! the cheap endpoints, `process` runs the `/process` steps: `auth` checks
//! the key, `options` parses the query, `body` reads the body under its
//! limit, `multipart` finds the image part, and `pipeline` decodes,
//! transforms and encodes the image. `error` maps every failure to one HTTP
//! status and JSON body; `http` holds the transport-independent request head
//! and reply; `config`, `cli`, `logging` and `metrics` serve operations.

pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod multipart;
pub mod options;
pub mod pipeline;
pub mod process;
pub mod server;
pub mod service;
