//! Reading a request body under a size limit and a deadline.
//!
//! The body is read once into one buffer, sized from `Content-Length` when
//! the client declares it, and never copied again: the multipart parser and
//! the decoder work on slices of it. A body is cut off as soon as it passes
//! the limit, so at most `limit + 1` bytes are ever held for one request,
//! whatever the client declared or sends with chunked encoding.

use std::io::{ErrorKind, Read};
use std::time::Instant;

use crate::error::ApiError;

/// Largest single read; bounds how far past the deadline one read can run.
const READ_CHUNK: usize = 256 * 1024;

/// Checks a declared `Content-Length` before any byte of the body is read.
pub fn check_declared_length(declared: Option<u64>, limit: u64) -> Result<(), ApiError> {
    match declared {
        Some(length) if length > limit => Err(ApiError::BodyTooLarge { limit }),
        _ => Ok(()),
    }
}

/// Reads the whole body, failing once it passes `limit` bytes or `deadline` passes.
///
/// The reader's own timeout (the socket read timeout) ends a read that waits
/// too long for data; the deadline ends a client that trickles bytes slowly.
pub fn read_limited(
    reader: &mut dyn Read,
    declared: Option<u64>,
    limit: u64,
    deadline: Instant,
) -> Result<Vec<u8>, ApiError> {
    check_declared_length(declared, limit)?;
    let capacity = declared.unwrap_or(READ_CHUNK as u64).min(limit + 1) as usize;
    let mut body = Vec::with_capacity(capacity);
    loop {
        // `body.len() <= limit` here, so there is always room for one more byte.
        let room = (limit + 1 - body.len() as u64).min(READ_CHUNK as u64) as usize;
        let start = body.len();
        body.resize(start + room, 0);
        let result = reader.read(&mut body[start..]);
        body.truncate(start + *result.as_ref().unwrap_or(&0));
        match result {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(read_error(error)),
        }
        if body.len() as u64 > limit {
            return Err(ApiError::BodyTooLarge { limit });
        }
        if Instant::now() > deadline {
            return Err(ApiError::RequestTimeout);
        }
    }
    if let Some(length) = declared {
        if (body.len() as u64) < length {
            return Err(ApiError::IncompleteBody(format!(
                "received {} of the {} bytes declared in Content-Length",
                body.len(),
                length
            )));
        }
    }
    Ok(body)
}

fn read_error(error: std::io::Error) -> ApiError {
    match error.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => ApiError::RequestTimeout,
        _ => ApiError::IncompleteBody(format!("reading the body failed: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::time::Duration;

    use super::*;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn reads_body_up_to_exact_limit() {
        let data = vec![7u8; 1000];
        let body = read_limited(&mut Cursor::new(&data), Some(1000), 1000, later()).unwrap();
        assert_eq!(body, data);
        let body = read_limited(&mut Cursor::new(&data), None, 1000, later()).unwrap();
        assert_eq!(body.len(), 1000);
    }

    #[test]
    fn rejects_declared_length_over_limit_before_reading() {
        struct Unreadable;
        impl Read for Unreadable {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                panic!("the body must not be read");
            }
        }
        let result = read_limited(&mut Unreadable, Some(1001), 1000, later());
        assert_eq!(result, Err(ApiError::BodyTooLarge { limit: 1000 }));
    }

    #[test]
    fn cuts_off_undeclared_body_one_byte_over_limit() {
        let data = vec![1u8; 1001];
        let result = read_limited(&mut Cursor::new(&data), None, 1000, later());
        assert_eq!(result, Err(ApiError::BodyTooLarge { limit: 1000 }));
    }

    #[test]
    fn stops_reading_a_huge_stream_at_the_limit() {
        let mut endless = std::io::repeat(0).take(u64::MAX);
        let result = read_limited(&mut endless, None, 4096, later());
        assert_eq!(result, Err(ApiError::BodyTooLarge { limit: 4096 }));
    }

    #[test]
    fn short_body_is_incomplete() {
        let data = vec![1u8; 10];
        let result = read_limited(&mut Cursor::new(&data), Some(20), 1000, later());
        assert!(
            matches!(result, Err(ApiError::IncompleteBody(_))),
            "{result:?}"
        );
    }

    #[test]
    fn passed_deadline_is_a_timeout() {
        let data = vec![1u8; 10];
        let past = Instant::now() - Duration::from_millis(1);
        let result = read_limited(&mut Cursor::new(&data), None, 1000, past);
        assert_eq!(result, Err(ApiError::RequestTimeout));
    }

    #[test]
    fn socket_timeout_maps_to_408() {
        struct Stalled;
        impl Read for Stalled {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::new(ErrorKind::WouldBlock, "timed out"))
            }
        }
        let result = read_limited(&mut Stalled, Some(10), 1000, later());
        assert_eq!(result, Err(ApiError::RequestTimeout));
    }
}
