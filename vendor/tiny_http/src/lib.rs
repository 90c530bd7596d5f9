//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use zeroize::Zeroizing;

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::ClientConnection;
use connection::Connection;
use error_reply::{ErrorReplyKind, PreparedReply};
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use error_reply::{ErrorReply, ErrorReplyHook};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod client;
mod common;
mod connection;
mod error_reply;
mod request;
mod response;
mod ssl;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // number of client connections open now
    connections: Arc<AtomicUsize>,
}

enum Message {
    NewRequest(Request),
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
#[allow(dead_code)] // only compiled, never called
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,

    /// Timeouts and size limits applied to every client connection.
    pub limits: Limits,

    /// Gives a request id to each error reply that the server writes by itself (400, 408,
    /// 414, 417, 431, 505 and the 503 over `Limits::max_connections`) and receives a report
    /// of each one. With `None` these replies carry no request id.
    pub error_reply_hook: Option<Arc<dyn ErrorReplyHook>>,
}

/// Timeouts and size limits that protect the server from slow or hostile clients.
///
/// `Limits::default()` holds values meant for a server exposed to the internet; `None`
/// disables a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest time one read from a client socket may block, including the reads of a request
    /// body through `Request::as_reader`, which then fail with `ErrorKind::TimedOut`.
    /// It bounds each read, not a whole body. Default: 30 s.
    pub read_timeout: Option<Duration>,

    /// Longest time one write to a client socket may block. It bounds each write, not a
    /// whole response: a client that reads slowly but steadily is not cut off. Default: 30 s.
    pub write_timeout: Option<Duration>,

    /// Longest time a connection waits for the first byte of a request, both for the first
    /// request and between requests of a kept-alive connection. Then the connection is closed
    /// without a response. Default: 5 s.
    pub idle_timeout: Option<Duration>,

    /// Longest time from the first byte of a request to the end of its head (request line and
    /// headers, plus a body of at most 1 KiB, which is read with the head). Then the client
    /// gets `408 Request Timeout` and the connection is closed. Default: 10 s.
    pub request_head_timeout: Option<Duration>,

    /// Most client connections open at once; each one has its own thread. A connection
    /// accepted over this number gets `503 Service Unavailable` and is closed (HTTPS
    /// connections are closed without a response). Each connection uses three file
    /// descriptors, so the process needs a file limit above three times this number.
    /// Default: 1024.
    pub max_connections: usize,

    /// Largest line of a request head in bytes, CRLF included. A longer request line gets
    /// `414 URI Too Long`, a longer header line `431 Request Header Fields Too Large`, and the
    /// connection is closed. Default: 16 KiB.
    pub max_header_line_size: usize,

    /// Largest request head in bytes: the request line, the headers and the empty line that
    /// ends them. A larger head gets `431 Request Header Fields Too Large` and the connection
    /// is closed. Default: 64 KiB.
    pub max_request_head_size: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            read_timeout: Some(Duration::from_secs(30)),
            write_timeout: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(5)),
            request_head_timeout: Some(Duration::from_secs(10)),
            max_connections: 1024,
            max_header_line_size: 16 * 1024,
            max_request_head_size: 64 * 1024,
        }
    }
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
            limits: Limits::default(),
            error_reply_hook: None,
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
            limits: Limits::default(),
            error_reply_hook: None,
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
            limits: Limits::default(),
            error_reply_hook: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::start(listener, config.ssl, config.limits, config.error_reply_hook)
    }

    /// Builds a new server using the specified TCP listener, with the default `Limits`.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::from_listener_with_limits(listener, ssl_config, Limits::default())
    }

    /// Builds a new server using the specified TCP listener and limits.
    pub fn from_listener_with_limits<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        limits: Limits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::start(listener.into(), ssl_config, limits, None)
    }

    /// Starts the accept thread on `listener`.
    fn start(
        listener: Listener,
        ssl_config: Option<SslConfig>,
        limits: Limits,
        error_reply_hook: Option<Arc<dyn ErrorReplyHook>>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        // building the SSL capabilities
        #[cfg(all(feature = "ssl-openssl", feature = "ssl-rustls"))]
        compile_error!(
            "Features 'ssl-openssl' and 'ssl-rustls' must not be enabled at the same time"
        );
        #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
        type SslContext = ();
        #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
        type SslContext = crate::ssl::SslContextImpl;
        let ssl: Option<SslContext> = {
            match ssl_config {
                #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                Some(config) => Some(SslContext::from_pem(
                    config.certificate,
                    Zeroizing::new(config.private_key),
                )?),
                #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                Some(_) => return Err(
                    "Building a server with SSL requires enabling the `ssl` feature in tiny-http"
                        .into(),
                ),
                None => None,
            }
        };

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);

        let connections = Arc::new(AtomicUsize::new(0));

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        let inside_connections = connections.clone();
        thread::spawn(move || {
            // a tasks pool is used to dispatch the connections into threads
            let tasks_pool = util::TaskPool::new();

            // clients rejected since the connection limit was last reached
            let mut rejected: u64 = 0;

            log::debug!("Running accept thread");
            while !inside_close_trigger.load(Relaxed) {
                let new_client = match server.accept() {
                    Ok((sock, _)) if inside_connections.load(Relaxed) >= limits.max_connections => {
                        if rejected == 0 {
                            log::warn!(
                                "Connection limit of {} reached, rejecting new clients",
                                limits.max_connections
                            );
                        }
                        rejected += 1;
                        if ssl.is_none() {
                            reject_connection(sock, error_reply_hook.as_deref());
                        }
                        continue;
                    }
                    Ok((sock, _)) => {
                        use util::RefinedTcpStream;

                        if rejected > 0 {
                            log::warn!("Rejected {} clients at the connection limit", rejected);
                            rejected = 0;
                        }

                        // set before the TLS handshake, which reads from the socket
                        let timeouts = sock.try_clone().and_then(|socket| {
                            util::SocketTimeouts::new(
                                socket,
                                limits.read_timeout,
                                limits.write_timeout,
                            )
                        });
                        let timeouts = match timeouts {
                            Ok(timeouts) => Arc::new(timeouts),
                            Err(e) => {
                                log::error!("Error setting the timeouts of a new client: {}", e);
                                continue;
                            }
                        };
                        let (read_closable, write_closable) = match ssl {
                            None => RefinedTcpStream::new(sock),
                            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                            Some(ref ssl) => {
                                // trying to apply SSL over the connection
                                // if an error occurs, we just close the socket and resume listening
                                let sock = match ssl.accept(sock) {
                                    Ok(s) => s,
                                    Err(_) => continue,
                                };

                                RefinedTcpStream::new(sock)
                            }
                            #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                            Some(ref _ssl) => unreachable!(),
                        };

                        Ok(ClientConnection::new(
                            write_closable,
                            read_closable,
                            timeouts,
                            limits,
                            error_reply_hook.clone(),
                        ))
                    }
                    Err(e) => Err(e),
                };

                match new_client {
                    Ok(client) => {
                        let messages = inside_messages.clone();
                        let count = ConnectionCount::new(&inside_connections);
                        let mut client = Some((client, count));
                        tasks_pool.spawn(Box::new(move || {
                            if let Some((client, _count)) = client.take() {
                                // Synchronization is needed for HTTPS requests to avoid a deadlock
                                if client.secure() {
                                    let (sender, receiver) = mpsc::channel();
                                    for rq in client {
                                        messages.push(rq.with_notify_sender(sender.clone()).into());
                                        receiver.recv().unwrap();
                                    }
                                } else {
                                    for rq in client {
                                        messages.push(rq.into());
                                    }
                                }
                            }
                        }));
                    }

                    // Errors such as running out of file descriptors pass once connections
                    // close, so the server keeps accepting.
                    Err(e) => {
                        log::error!("Error accepting new client: {}", e);
                        thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            log::debug!("Terminating accept thread");
        });

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            connections,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    pub fn num_connections(&self) -> usize {
        self.connections.load(Relaxed)
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    ///
    /// Fails only when `unblock()` was called; errors of the listening socket are logged and
    /// the server keeps accepting.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

/// Counts one open client connection for as long as it lives.
struct ConnectionCount(Arc<AtomicUsize>);

impl ConnectionCount {
    fn new(connections: &Arc<AtomicUsize>) -> ConnectionCount {
        connections.fetch_add(1, Relaxed);
        ConnectionCount(connections.clone())
    }
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Answers a connection over `Limits::max_connections` with 503 and closes it, without
/// blocking the accept thread.
fn reject_connection(mut sock: Connection, hook: Option<&dyn ErrorReplyHook>) {
    const TOO_MANY_CONNECTIONS: ErrorReplyKind = ErrorReplyKind {
        status: 503,
        code: "too_many_connections",
        message: "the server has too many open connections; retry after 1 second",
    };
    let reply = PreparedReply::new(TOO_MANY_CONNECTIONS, hook);
    let body = reply.body();
    let request_id = reply
        .request_id()
        .map(|id| format!("X-Request-Id: {id}\r\n"))
        .unwrap_or_default();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\n\
         {request_id}\r\n{body}",
        body.len()
    );

    // a new socket has an empty send buffer, so the write completes unless the client is gone
    let written = sock.set_nonblocking(true).is_ok() && sock.write_all(response.as_bytes()).is_ok();
    reply.report(None, body.len(), written);
    if !written {
        return;
    }
    sock.shutdown(Shutdown::Write).ok();

    // Closing with unread data makes the kernel reset the connection, which can destroy the
    // response before the client reads it, so drop what the client has sent so far.
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match sock.read(&mut buf) {
            Ok(len) if len > 0 => continue,
            _ => break,
        }
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
