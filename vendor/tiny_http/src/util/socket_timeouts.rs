use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::connection::Connection;

/// Read and write timeouts of one client socket, plus an optional deadline that shortens the
/// read timeout while a request head is being read.
///
/// Shared by the connection thread, which sets the deadline, and the read side of the stream,
/// which applies it before each read from the socket.
pub(crate) struct SocketTimeouts {
    // another handle on the client socket; socket options apply to every handle
    socket: Connection,
    read_timeout: Option<Duration>,
    deadline: Mutex<Option<Instant>>,
}

impl SocketTimeouts {
    /// Sets the read and write timeouts on `socket`. `None` lets a call block forever.
    pub(crate) fn new(
        socket: Connection,
        read_timeout: Option<Duration>,
        write_timeout: Option<Duration>,
    ) -> IoResult<SocketTimeouts> {
        socket.set_read_timeout(read_timeout)?;
        socket.set_write_timeout(write_timeout)?;

        Ok(SocketTimeouts {
            socket,
            read_timeout,
            deadline: Mutex::new(None),
        })
    }

    pub(crate) fn socket(&self) -> &Connection {
        &self.socket
    }

    /// Sets the time by which the reads that follow must be done, or clears it.
    pub(crate) fn set_deadline(&self, deadline: Option<Instant>) -> IoResult<()> {
        *self.deadline.lock().unwrap() = deadline;
        if deadline.is_none() {
            self.socket.set_read_timeout(self.read_timeout)?;
        }
        Ok(())
    }

    /// Sets the deadline to `timeout` from now, or clears it when `timeout` is `None`.
    pub(crate) fn set_deadline_in(&self, timeout: Option<Duration>) -> IoResult<()> {
        self.set_deadline(timeout.map(|timeout| Instant::now() + timeout))
    }

    /// Shortens the socket's read timeout to the time left before the deadline, if one is set.
    ///
    /// Returns a `TimedOut` error once the deadline has passed. Called before each read from
    /// the socket, so a client that sends one byte at a time cannot stretch the deadline.
    pub(crate) fn before_read(&self) -> IoResult<()> {
        let deadline = match *self.deadline.lock().unwrap() {
            Some(deadline) => deadline,
            None => return Ok(()),
        };

        let time_left = deadline.saturating_duration_since(Instant::now());
        if time_left == Duration::from_secs(0) {
            return Err(IoError::new(
                ErrorKind::TimedOut,
                "Deadline of the request passed",
            ));
        }

        let timeout = match self.read_timeout {
            Some(read_timeout) => read_timeout.min(time_left),
            None => time_left,
        };
        self.socket.set_read_timeout(Some(timeout))
    }
}
