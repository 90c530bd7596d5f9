use std::net::TcpStream;
use std::thread;
use std::time::Duration;

/// Creates a server and a client connected to the server.
pub fn new_one_server_one_client() -> (tiny_http::Server, TcpStream) {
    let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    (server, client)
}

/// Creates a "hello world" server with a client connected to the server.
///
/// The server will automatically close after 3 seconds.
pub fn new_client_to_hello_world_server() -> TcpStream {
    let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();

    thread::spawn(move || {
        let mut cycles = 3 * 1000 / 20;

        loop {
            if let Some(rq) = server.try_recv().unwrap() {
                let response = tiny_http::Response::from_string("hello world".to_string());
                rq.respond(response).unwrap();
            }

            thread::sleep(Duration::from_millis(20));

            cycles -= 1;
            if cycles == 0 {
                break;
            }
        }
    });

    client
}

/// Starts a server that answers every request with "hello" without reading its body.
///
/// The server thread stops after `lifetime`.
pub fn new_server_ignoring_bodies(lifetime: Duration) -> std::net::SocketAddr {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    serve_hello(server, lifetime)
}

/// Answers every request to `server` with "hello" without reading its body, in a thread that
/// stops after `lifetime`, and returns the server's address.
pub fn serve_hello(server: tiny_http::Server, lifetime: Duration) -> std::net::SocketAddr {
    let addr = server.server_addr().to_ip().unwrap();

    thread::spawn(move || {
        let stop_at = std::time::Instant::now() + lifetime;
        while std::time::Instant::now() < stop_at {
            if let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(50)) {
                let response = tiny_http::Response::from_string("hello");
                let _ = request.respond(response);
            }
        }
    });

    addr
}

/// Connects to `addr` with a 5 second read timeout, so that a hanging server fails the test.
pub fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Reads one response and returns its head (status line and headers) and its body.
///
/// The body is read by `Content-Length`; responses without it are not supported.
pub fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    use std::io::Read;

    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();

    let content_length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            if name.eq_ignore_ascii_case("content-length") {
                Some(value.trim().parse::<usize>().unwrap())
            } else {
                None
            }
        })
        .expect("response without Content-Length");
    let mut body = vec![0; content_length];
    stream.read_exact(&mut body).expect("response body");

    (head, body)
}

/// Returns true when `head` contains a `Connection: close` header.
pub fn has_connection_close(head: &str) -> bool {
    head.lines()
        .any(|line| line.eq_ignore_ascii_case("connection: close"))
}

/// Returns true when the peer has closed the connection, reading and dropping at most 1 MiB.
pub fn is_closed_by_peer(stream: &mut TcpStream) -> bool {
    use std::io::Read;

    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) if total + n < 1024 * 1024 => total += n,
            Ok(_) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Creates a server on 127.0.0.1 with the given limits.
pub fn new_server_with_limits(limits: tiny_http::Limits) -> tiny_http::Server {
    new_server_with_hook(limits, None)
}

/// Creates a server on 127.0.0.1 with the given limits and error reply hook.
pub fn new_server_with_hook(
    limits: tiny_http::Limits,
    error_reply_hook: Option<std::sync::Arc<dyn tiny_http::ErrorReplyHook>>,
) -> tiny_http::Server {
    tiny_http::Server::new(tiny_http::ServerConfig {
        addr: tiny_http::ConfigListenAddr::from_socket_addrs("127.0.0.1:0").unwrap(),
        ssl: None,
        limits,
        error_reply_hook,
    })
    .unwrap()
}
