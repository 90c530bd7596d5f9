//! Integration tests: the real `imgflux` binary on a loopback socket, driven
//! with raw HTTP requests and real images from the shared corpus.

mod body_limit;
mod endpoints;
mod errors;
mod process;
mod shutdown;
mod util;
