//! ImgFlux: a small, fast image-resizing HTTP service.
//!
//! A request flows through one module per stage: `server` accepts it and
//! routes it, `auth` checks the key, `body` reads the body under its limit,
//! `multipart` finds the image part, `options` holds the parsed query, and
//! `pipeline` decodes, transforms and encodes the image. `error` maps every
//! failure to one HTTP status and JSON body.

pub mod error;
pub mod multipart;
pub mod options;
pub mod pipeline;
