//! Test harness: starts the real `imgflux` binary on a free loopback port and
//! talks raw HTTP/1.1 to it over a `TcpStream`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const KEY: &str = "test-key-123";

/// A running service, stopped with SIGKILL when dropped unless already stopped.
pub struct TestServer {
    pub address: SocketAddr,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl TestServer {
    /// Starts the service with `API_KEYS=KEY` and the given extra environment.
    pub fn start(env: &[(&str, &str)]) -> TestServer {
        let mut with_key = vec![("API_KEYS", KEY)];
        with_key.extend_from_slice(env);
        TestServer::start_with_env(&with_key)
    }

    /// Starts the service with exactly the given environment (plus HOST and PORT).
    pub fn start_with_env(env: &[(&str, &str)]) -> TestServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_imgflux"));
        command
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("starting imgflux failed");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (sender, receiver) = std::sync::mpsc::channel();
        let log_writer = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.split("listening on http://").nth(1) {
                    let _ = sender.send(address.trim().to_string());
                }
                let mut log = log_writer.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let address = receiver
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("imgflux did not start; log:\n{}", log.lock().unwrap()));
        TestServer {
            address: address.parse().unwrap(),
            child,
            log,
        }
    }

    /// Returns the process id of the service.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns everything the service logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `pattern` (the request line is written
    /// just after the reply is sent) and returns the log.
    pub fn wait_for_log(&self, pattern: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.contains(pattern) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{pattern:?} not logged; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends raw bytes and reads one response.
    ///
    /// The request is written from a second thread while this one reads,
    /// because the service may answer early (413, 401) and close the
    /// connection before the client has sent its whole body.
    pub fn raw(&self, request: &[u8]) -> Response {
        let mut stream = self.connect();
        let mut writer = stream.try_clone().unwrap();
        let request = request.to_vec();
        let sender = std::thread::spawn(move || {
            let _ = writer.write_all(&request);
        });
        let response = read_response(&mut stream);
        drop(stream);
        sender.join().unwrap();
        response
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
    }

    pub fn get(&self, path: &str) -> Response {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        self.raw(request.as_bytes())
    }

    /// Posts `image` as the multipart field `image` to `/process?{query}` with the test key.
    pub fn process(&self, query: &str, image: &[u8]) -> Response {
        let (content_type, body) = multipart_body(&[("image", Some("upload.bin"), image)]);
        self.post(
            &format!("/process?{query}"),
            Some(KEY),
            &content_type,
            &body,
            &[],
        )
    }

    /// Posts a body with an optional key and extra header lines.
    pub fn post(
        &self,
        path: &str,
        key: Option<&str>,
        content_type: &str,
        body: &[u8],
        extra_headers: &[&str],
    ) -> Response {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(key) = key {
            request.push_str(&format!("x-api-key: {key}\r\n"));
        }
        for header in extra_headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        self.raw(&bytes)
    }

    /// Sends SIGTERM without waiting for the exit.
    pub fn send_sigterm(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill failed");
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_sigterm();
        self.wait_for_exit()
    }

    /// Waits up to 40 s for the process to exit and returns its status.
    pub fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "imgflux did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Returns the JSON error code, checking the error body's shape.
    pub fn error_code(&self) -> String {
        assert_eq!(self.header("content-type"), Some("application/json"));
        let json = self.json();
        assert_eq!(json["error"]["status"], self.status, "{json}");
        assert!(json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(json["error"]["request_id"].as_str().is_some());
        json["error"]["code"].as_str().unwrap().to_string()
    }

    /// Decodes the body as an image, checking the Content-Type matches the bytes.
    pub fn image(&self) -> image::DynamicImage {
        assert_eq!(self.status, 200, "{}", self.describe());
        let format = image::guess_format(&self.body).expect("the reply is not an image");
        let mime = format.to_mime_type();
        assert_eq!(self.header("content-type"), Some(mime));
        image::load_from_memory(&self.body).expect("the reply does not decode")
    }

    /// Returns status and a readable start of the body, for assertion messages.
    pub fn describe(&self) -> String {
        let text = String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned();
        format!("status {} body {:?}", self.status, text)
    }
}

/// Reads one response, by Content-Length or until the server closes.
pub fn read_response(stream: &mut TcpStream) -> Response {
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no status line: {status_line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse::<usize>().unwrap());
    let mut body = Vec::new();
    match length {
        Some(length) => {
            body.resize(length, 0);
            reader.read_exact(&mut body).unwrap();
        }
        None => {
            reader.read_to_end(&mut body).unwrap();
        }
    }
    Response {
        status,
        headers,
        body,
    }
}

pub const BOUNDARY: &str = "----imgflux-test-boundary-7MA4YWxkTrZu0gW";

/// Builds a multipart/form-data body from `(name, filename, data)` fields.
pub fn multipart_body(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (name, filename, data) in fields {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match filename {
            Some(file) => format!("form-data; name=\"{name}\"; filename=\"{file}\""),
            None => format!("form-data; name=\"{name}\""),
        };
        body.extend_from_slice(format!("Content-Disposition: {disposition}\r\n").as_bytes());
        body.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// Returns the shared folder beside the repository (corpus and bench images).
pub fn shared_dir() -> PathBuf {
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if beside.is_dir() {
        beside
    } else {
        PathBuf::from("/work/shared")
    }
}

/// Reads a file of the shared corpus, such as `photos/harvesters_1165x859.jpg`.
pub fn corpus(path: &str) -> Vec<u8> {
    let full = shared_dir().join("corpus").join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("reading {} failed: {e}", full.display()))
}
