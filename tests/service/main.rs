//! Integration tests: the real `imgflux` binary on a loopback socket, driven
//! with raw HTTP requests and real images from the shared corpus.

mod body_limit;
mod corpus;
mod endpoints;
mod errors;
mod hostile;
mod process;
mod shutdown;
mod targets;
mod util;

#[path = "../support/mod.rs"]
mod support;
