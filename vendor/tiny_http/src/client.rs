use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{self, BufReader, BufWriter, ErrorKind, Read, Write};

use std::mem;
use std::net::{Shutdown, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{HTTPVersion, Method};
use crate::error_reply::{ErrorReplyHook, ErrorReplyKind, PreparedReply};
use crate::request::UnreadBody;
use crate::util::{RefinedTcpStream, SocketTimeouts};
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::{Limits, Request};

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // timeouts of the client socket, which also gives the handle to shut it down
    timeouts: Arc<SocketTimeouts>,

    limits: Limits,

    // number of bytes of the current request head read so far
    head_len: usize,

    // what to do with the body that the last request left on the socket, set by that request
    unread_body: Arc<Mutex<UnreadBody>>,

    // gives the error replies written here a request id and receives a report of each
    error_reply_hook: Option<Arc<dyn ErrorReplyHook>>,

    // method and target of the current request, once its request line has been parsed
    request_line: Option<(Method, String)>,
}

/// Longest time a closing connection keeps reading and dropping what the client still sends.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

/// Most bytes a closing connection reads and drops before it closes anyway.
const LINGER_MAX_BYTES: u64 = 256 * 1024;

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    /// the previous request left more of its body unread than the connection skips
    UnreadBody,
    /// the request line is longer than `Limits::max_header_line_size`
    RequestLineTooLong,
    /// a header line or the whole head is larger than `Limits` allow
    HeadTooLarge,
    /// a line of the head contains a CR or LF outside its final CRLF, or a non-ASCII byte
    InvalidLine,
    /// the headers do not give one unambiguous body length
    InvalidFraming,
    ReadIoError(IoError),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub(crate) fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        timeouts: Arc<SocketTimeouts>,
        limits: Limits,
        error_reply_hook: Option<Arc<dyn ErrorReplyHook>>,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();
        read_socket.set_timeouts(timeouts.clone());

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            timeouts,
            limits,
            head_len: 0,
            unread_body: Arc::new(Mutex::new(UnreadBody::Skip(0))),
            error_reply_hook,
            request_line: None,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    ///
    /// Fails with `HeadTooLarge` as soon as the line or the whole head exceeds its limit, so
    /// that no more than the limits is ever buffered.
    fn read_next_line(&mut self) -> Result<AsciiString, ReadError> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;

        loop {
            let byte = self.next_header_source.by_ref().bytes().next();

            let byte = match byte {
                Some(b) => b.map_err(ReadError::ReadIoError)?,
                None => {
                    let err = IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF");
                    return Err(ReadError::ReadIoError(err));
                }
            };

            // the idle wait ends with the first byte, and the head deadline starts there
            self.head_len += 1;
            if self.head_len == 1 {
                self.timeouts
                    .set_deadline_in(self.limits.request_head_timeout)
                    .map_err(ReadError::ReadIoError)?;
            }
            if self.head_len > self.limits.max_request_head_size {
                return Err(ReadError::HeadTooLarge);
            }

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                return AsciiString::from_ascii(buf).map_err(|_| ReadError::InvalidLine);
            }

            // A bare CR or LF ends a line for some parsers and not for others, which would let a
            // proxy in front of this server see other headers than this server does.
            if byte == b'\n' || prev_byte_was_cr {
                return Err(ReadError::InvalidLine);
            }

            prev_byte_was_cr = byte == b'\r';

            buf.push(byte);

            // the line needs at least its final LF on top of what it has
            if buf.len() + 1 > self.limits.max_header_line_size {
                return Err(ReadError::HeadTooLarge);
            }
        }
    }

    /// Waits until the previous request hands the stream back, then skips the part of its
    /// body that it left unread.
    fn skip_unread_body(&mut self) -> Result<(), ReadError> {
        self.next_header_source.wait_for_turn();

        let unread_body = mem::replace(&mut *self.unread_body.lock().unwrap(), UnreadBody::Skip(0));
        let len = match unread_body {
            UnreadBody::Skip(len) => len as u64,
            UnreadBody::Close => return Err(ReadError::UnreadBody),
        };

        let deadline = self.limits.request_head_timeout;
        self.timeouts
            .set_deadline_in(deadline)
            .map_err(ReadError::ReadIoError)?;
        let mut rest = (&mut self.next_header_source).take(len);
        let skipped = io::copy(&mut rest, &mut io::sink()).map_err(ReadError::ReadIoError)?;
        if skipped < len {
            let err = IoError::new(
                ErrorKind::ConnectionAborted,
                "Unexpected EOF in request body",
            );
            return Err(ReadError::ReadIoError(err));
        }

        Ok(())
    }

    /// Closes the connection once every response started on it has been sent.
    ///
    /// Closing a socket that still holds unread data makes the kernel send a reset, which can
    /// destroy the response before the client reads it. So this shuts down the write side
    /// first, then reads and drops what the client still sends, for a short while.
    fn close_gracefully(&mut self) {
        // the writer's flush blocks until the earlier responses have been written
        let mut writer = self.sink.next().unwrap();
        writer.flush().ok();
        drop(writer);
        self.timeouts.socket().shutdown(Shutdown::Write).ok();

        self.timeouts.set_deadline_in(Some(LINGER_TIMEOUT)).ok();
        let mut rest = (&mut self.next_header_source).take(LINGER_MAX_BYTES);
        io::copy(&mut rest, &mut io::sink()).ok();
    }

    /// Writes an error reply with `Connection: close`, then closes the connection once it is
    /// sent. Returns `None`, the iterator's end, for the caller to return.
    fn reply_and_close(&mut self, kind: ErrorReplyKind, version: HTTPVersion) -> Option<Request> {
        let writer = self.sink.next().unwrap();
        let request_line = self
            .request_line
            .as_ref()
            .map(|(method, url)| (method.as_str(), url.as_str()));
        PreparedReply::new(kind, self.error_reply_hook.as_deref()).write(
            writer,
            version,
            true,
            request_line,
        );
        self.close_gracefully();
        None
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        self.head_len = 0;
        self.request_line = None;
        self.skip_unread_body()?;

        self.timeouts
            .set_deadline_in(self.limits.idle_timeout)
            .map_err(ReadError::ReadIoError)?;

        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let line = self.read_next_line().map_err(|e| match e {
                    ReadError::HeadTooLarge => ReadError::RequestLineTooLong,
                    e => e,
                })?;

                let (method, path, version) = parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?;
                self.request_line = Some((method.clone(), path.clone()));
                (method, path, version)
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                loop {
                    let line = self.read_next_line()?;

                    if line.is_empty() {
                        break;
                    };

                    // obsolete line folding continues the previous header, which a proxy in
                    // front of this server may or may not do
                    if line.as_str().starts_with([' ', '\t']) {
                        return Err(ReadError::WrongHeader(version));
                    }
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            *self.remote_addr.as_ref().unwrap(),
            data_source,
            writer,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
                request::RequestCreationError::InvalidFraming => ReadError::InvalidFraming,
            }
        })?;

        // the body is read under the read timeout only
        self.timeouts
            .set_deadline(None)
            .map_err(ReadError::ReadIoError)?;

        // return the request
        Ok(request.with_unread_body(self.unread_body.clone()))
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            self.close_gracefully();
            return None;
        }

        loop {
            let rq = match self.read() {
                Err(ReadError::WrongRequestLine)
                | Err(ReadError::InvalidLine)
                | Err(ReadError::InvalidFraming) => {
                    // we don't know where the next request would start, so we have to close
                    return self.reply_and_close(BAD_REQUEST, HTTPVersion(1, 1));
                }

                Err(ReadError::WrongHeader(ver)) => {
                    // we don't know where the next request would start, so we have to close
                    return self.reply_and_close(BAD_REQUEST, ver);
                }

                // a connection that timed out before sending any byte is closed without a word
                Err(ReadError::ReadIoError(ref err))
                    if err.kind() == ErrorKind::TimedOut && self.head_len > 0 =>
                {
                    return self.reply_and_close(REQUEST_TIMEOUT, HTTPVersion(1, 1));
                }

                Err(ReadError::ExpectationFailed(ver)) => {
                    // TODO: should be recoverable, but needs handling in case of body
                    return self.reply_and_close(EXPECTATION_FAILED, ver);
                }

                Err(ReadError::RequestLineTooLong) => {
                    return self.reply_and_close(URI_TOO_LONG, HTTPVersion(1, 1));
                }

                Err(ReadError::HeadTooLarge) => {
                    return self.reply_and_close(HEADER_TOO_LARGE, HTTPVersion(1, 1));
                }

                Err(ReadError::UnreadBody) => {
                    // the response of the previous request said `Connection: close`
                    self.close_gracefully();
                    return None;
                }

                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
                let reply = PreparedReply::new(
                    HTTP_VERSION_NOT_SUPPORTED,
                    self.error_reply_hook.as_deref(),
                );
                let method = rq.method().as_str().to_owned();
                let url = rq.url().to_owned();
                // The request's own writer, since a later one waits for it to be dropped.
                // Stock 0.12 took a new writer here and so blocked forever.
                let mut writer = rq.into_writer();
                // Without `Connection: close`: the connection stays usable. `write` flushes,
                // so the reply does not wait for the next request.
                reply.write(&mut writer, HTTPVersion(1, 1), false, Some((&method, &url)));
                continue;
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

const BAD_REQUEST: ErrorReplyKind = ErrorReplyKind {
    status: 400,
    code: "bad_request",
    message: "the request is malformed: its request line, a header or its body framing is invalid",
};

const REQUEST_TIMEOUT: ErrorReplyKind = ErrorReplyKind {
    status: 408,
    code: "request_timeout",
    message: "the request head was not received in time; send it without pauses",
};

const EXPECTATION_FAILED: ErrorReplyKind = ErrorReplyKind {
    status: 417,
    code: "expectation_failed",
    message: "the Expect header is not supported; only 100-continue is",
};

const URI_TOO_LONG: ErrorReplyKind = ErrorReplyKind {
    status: 414,
    code: "uri_too_long",
    message: "the request line is too long; send a shorter URL",
};

const HEADER_TOO_LARGE: ErrorReplyKind = ErrorReplyKind {
    status: 431,
    code: "header_too_large",
    message: "a header line or the request head is too large; send smaller headers",
};

const HTTP_VERSION_NOT_SUPPORTED: ErrorReplyKind = ErrorReplyKind {
    status: 505,
    code: "http_version_not_supported",
    message: "this server supports HTTP/1.0 and HTTP/1.1 only",
};

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
