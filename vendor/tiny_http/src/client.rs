use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{self, BufReader, BufWriter, ErrorKind, Read, Write};

use std::mem;
use std::net::{Ipv6Addr, Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{HTTPVersion, Header, Method};
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
    /// the request line contains a control character, such as a tab or NUL in the target
    ControlInRequestLine,
    /// a header name is not a token, or a header line contains a control character other
    /// than horizontal tab
    InvalidHeaderLine(HTTPVersion),
    /// the `Host` header is missing from an HTTP/1.1 request, repeated, or not `host[:port]`
    InvalidHost(HTTPVersion),
    /// reading a body that is read before the request is returned (at most 1024 bytes)
    /// failed: the client closed early, reset the connection or stalled
    IncompleteBody(HTTPVersion, IoError),
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

                let (method, path, version) = parse_request_line(line.as_str())?;
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
                    headers.push(parse_header_line(line.as_str(), &version)?);
                }

                headers
            };
            check_host(&headers, &version)?;

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
                request::RequestCreationError::IncompleteBody(e) => {
                    ReadError::IncompleteBody(version, e)
                }
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

                Err(ReadError::ControlInRequestLine) => {
                    return self.reply_and_close(CONTROL_IN_REQUEST_LINE, HTTPVersion(1, 1));
                }

                Err(ReadError::InvalidHeaderLine(ver)) => {
                    return self.reply_and_close(INVALID_HEADER_LINE, ver);
                }

                Err(ReadError::InvalidHost(ver)) => {
                    return self.reply_and_close(INVALID_HOST, ver);
                }

                // The reply is written even when the client has closed the connection, because
                // a client that only shut down its sending side still reads it, and because
                // writing it reports it to the hook, which logs it either way.
                Err(ReadError::IncompleteBody(ver, ref err))
                    if err.kind() == ErrorKind::TimedOut =>
                {
                    return self.reply_and_close(BODY_TIMEOUT, ver);
                }

                Err(ReadError::IncompleteBody(ver, _)) => {
                    return self.reply_and_close(INCOMPLETE_BODY, ver);
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

            // checking HTTP version; `parse_http_version` gives 1.1 for every later 1.x
            if rq.http_version().0 >= 2 {
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

/// Parses the version of a request line, `HTTP/` DIGIT `.` DIGIT (RFC 9112, section 2.3).
///
/// A minor version above 1 under major 1 gives 1.1: such a client also understands HTTP/1.1,
/// so the request is processed, and answered, as HTTP/1.1 (RFC 9110, section 6.2). A major
/// version of 2 or more is returned as sent, and answered with 505. Of major 0, only `HTTP/0.9`
/// is accepted, as in stock tiny_http.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let digits = match version.strip_prefix("HTTP/").map(str::as_bytes) {
        Some(&[major, b'.', minor]) if major.is_ascii_digit() && minor.is_ascii_digit() => {
            (major - b'0', minor - b'0')
        }
        _ => return Err(ReadError::WrongRequestLine),
    };

    match digits {
        (0, 9) => Ok(HTTPVersion(0, 9)),
        (0, _) => Err(ReadError::WrongRequestLine),
        (1, 0) => Ok(HTTPVersion(1, 0)),
        (1, _) => Ok(HTTPVersion(1, 1)),
        (major, minor) => Ok(HTTPVersion(major, minor)),
    }
}

/// Parses the request line of the request: method, target and version, each separated by one
/// space (RFC 9112, section 3).
///
/// Fails with `ControlInRequestLine` when the line contains a control character (below 0x20,
/// or 0x7F), horizontal tab included, which a valid target never contains and which other
/// parsers may read as a separator.
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    if line.bytes().any(|b| b.is_ascii_control()) {
        return Err(ReadError::ControlInRequestLine);
    }

    let mut parts = line.split(' ');
    let (method, path, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(path), Some(version), None) => (method, path, version),
        _ => return Err(ReadError::WrongRequestLine),
    };
    if !is_token(method) || path.is_empty() {
        return Err(ReadError::WrongRequestLine);
    }

    let method = method.parse().map_err(|_| ReadError::WrongRequestLine)?;
    let version = parse_http_version(version)?;
    Ok((method, path.to_owned(), version))
}

/// Parses one header line, `name ":" OWS value OWS` (RFC 9112, section 5).
///
/// The name must be a token, and the line may contain no control character except
/// horizontal tab (RFC 9110, section 5.5); a NUL in a value, for example, is rejected rather
/// than passed to the application.
fn parse_header_line(line: &str, version: &HTTPVersion) -> Result<Header, ReadError> {
    if line.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(ReadError::InvalidHeaderLine(version.clone()));
    }

    let header: Header = line
        .parse()
        .map_err(|_| ReadError::WrongHeader(version.clone()))?;
    if !is_token(header.field.as_str().as_str()) {
        return Err(ReadError::InvalidHeaderLine(version.clone()));
    }
    Ok(header)
}

/// Checks the `Host` header (RFC 9112, section 3.2): an HTTP/1.1 request must have one, and no
/// request may have more than one or one whose value is not a valid `host[:port]`.
///
/// HTTP/1.0 and 0.9 requests may omit it. The check is skipped for the request lines of
/// later major versions, which are answered with 505 instead.
fn check_host(headers: &[Header], version: &HTTPVersion) -> Result<(), ReadError> {
    if version.0 >= 2 {
        return Ok(());
    }

    let mut hosts = headers.iter().filter(|h| h.field.equiv("Host"));
    let valid = match (hosts.next(), hosts.next()) {
        (None, _) => *version < (1, 1),
        (Some(host), None) => is_valid_host(host.value.as_str()),
        (Some(_), Some(_)) => false,
    };
    if valid {
        Ok(())
    } else {
        Err(ReadError::InvalidHost(version.clone()))
    }
}

/// Returns whether `value` is a `Host` value, `uri-host [ ":" port ]` (RFC 3986, sections
/// 3.2.2 and 3.2.3), with no user information.
///
/// The host may not be empty, because an `http` or `https` URI must have one (RFC 9110,
/// section 4.2). The port may be empty, as RFC 3986 allows, and may not exceed 65535.
fn is_valid_host(value: &str) -> bool {
    let (host_is_valid, port) = match value.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((literal, port)) => (is_ip_literal(literal), port),
            None => return false,
        },
        None => {
            let end = value.find(':').unwrap_or(value.len());
            (is_reg_name(&value[..end]), &value[end..])
        }
    };

    let port_is_valid = port.is_empty()
        || match port.strip_prefix(':') {
            Some(digits) => {
                digits.len() <= 5
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && digits
                        .parse::<u32>()
                        .map_or(digits.is_empty(), |port| port <= 65535)
            }
            None => false,
        };

    host_is_valid && port_is_valid
}

/// Returns whether `host` is a non-empty `reg-name` (RFC 3986, section 3.2.2), which also
/// covers IPv4 addresses: unreserved characters, sub-delimiters and percent-encoded octets.
fn is_reg_name(host: &str) -> bool {
    let bytes = host.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let encoded = bytes.get(i + 1..i + 3);
                if !encoded.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            b if is_unreserved(b) || is_sub_delim(b) => i += 1,
            _ => return false,
        }
    }
    !bytes.is_empty()
}

/// Returns whether `literal`, the text between `[` and `]`, is an IPv6 address or an
/// `IPvFuture` (RFC 3986, section 3.2.2).
fn is_ip_literal(literal: &str) -> bool {
    if literal.parse::<Ipv6Addr>().is_ok() {
        return true;
    }

    let future = match literal.strip_prefix(['v', 'V']) {
        Some(future) => future,
        None => return false,
    };
    match future.split_once('.') {
        Some((version, address)) => {
            !version.is_empty()
                && version.bytes().all(|b| b.is_ascii_hexdigit())
                && !address.is_empty()
                && address
                    .bytes()
                    .all(|b| is_unreserved(b) || is_sub_delim(b) || b == b':')
        }
        None => false,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// Returns whether `text` is a `token` (RFC 9110, section 5.6.2), the syntax of methods and
/// header names.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

const BAD_REQUEST: ErrorReplyKind = ErrorReplyKind {
    status: 400,
    code: "bad_request",
    message: "the request is malformed: its request line, a header or its body framing is invalid",
};

const CONTROL_IN_REQUEST_LINE: ErrorReplyKind = ErrorReplyKind {
    status: 400,
    code: "bad_request",
    message: "the request line contains a control character; percent-encode such bytes in the URL",
};

const INVALID_HEADER_LINE: ErrorReplyKind = ErrorReplyKind {
    status: 400,
    code: "bad_request",
    message: "a header name is not a token, or a header value contains a control character",
};

const INVALID_HOST: ErrorReplyKind = ErrorReplyKind {
    status: 400,
    code: "bad_request",
    message: "the Host header is missing, repeated or not a valid host[:port]; HTTP/1.1 requests need exactly one",
};

const INCOMPLETE_BODY: ErrorReplyKind = ErrorReplyKind {
    status: 400,
    code: "incomplete_body",
    message: "the connection ended before the body reached its declared Content-Length",
};

const BODY_TIMEOUT: ErrorReplyKind = ErrorReplyKind {
    status: 408,
    code: "request_timeout",
    message: "the request body was not received in time; send it without pauses",
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

    #[test]
    fn http_version_parsing() {
        use super::parse_http_version;
        use crate::common::HTTPVersion;

        let cases = [
            ("HTTP/1.0", Some(HTTPVersion(1, 0))),
            ("HTTP/1.1", Some(HTTPVersion(1, 1))),
            ("HTTP/1.2", Some(HTTPVersion(1, 1))),
            ("HTTP/1.9", Some(HTTPVersion(1, 1))),
            ("HTTP/0.9", Some(HTTPVersion(0, 9))),
            ("HTTP/2.0", Some(HTTPVersion(2, 0))),
            ("HTTP/9.9", Some(HTTPVersion(9, 9))),
            ("HTTP/0.8", None),
            ("HTTP/1.10", None),
            ("HTTP/1", None),
            ("http/1.1", None),
            ("HTTP/1.1 ", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_http_version(text).ok(), expected, "{:?}", text);
        }
    }

    #[test]
    fn host_validation() {
        use super::is_valid_host;

        for valid in [
            "a",
            "a:1",
            "a:",
            "1.2.3.4:65535",
            "[::1]",
            "[::ffff:1.2.3.4]:80",
            "[v7.a:b]",
            "%41b",
        ] {
            assert!(is_valid_host(valid), "{:?}", valid);
        }
        for invalid in [
            "", ":1", "a:65536", "a:0x1", "a:1:2", "u@a", "a/b", "[::1", "[::g]", "[v.a]", "%4",
            "%g1", "a b",
        ] {
            assert!(!is_valid_host(invalid), "{:?}", invalid);
        }
    }
}
