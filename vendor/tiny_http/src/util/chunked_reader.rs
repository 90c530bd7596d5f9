use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read};

/// Largest chunk-size line (with its extensions) or trailer line, in bytes without CRLF.
const MAX_LINE_SIZE: usize = 4096;

/// Largest trailer section, in bytes with CRLFs.
const MAX_TRAILER_SIZE: usize = 16 * 1024;

/// Reader of a chunked request body (RFC 9112, section 7.1) that bounds every line it reads.
///
/// It replaces `chunked_transfer::Decoder` (version 1.5.0) for request bodies, because that
/// decoder buffers a chunk-size line until its CR with no maximum. Extensions and trailer
/// fields are read and dropped. It returns EOF after the last chunk and the trailer section.
pub struct ChunkedReader<R> {
    source: R,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a chunk-size line.
    Size,
    /// Inside the data of a chunk, with this many bytes left.
    Data(u64),
    /// Before the CRLF that ends the data of a chunk.
    DataEnd,
    /// After the trailer section.
    Done,
}

impl<R: Read> ChunkedReader<R> {
    pub fn new(source: R) -> ChunkedReader<R> {
        ChunkedReader {
            source,
            state: State::Size,
        }
    }

    /// Reads one line and returns it without its CRLF.
    fn read_line(&mut self) -> IoResult<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let mut byte = [0u8];
            self.source.read_exact(&mut byte)?;

            if byte[0] == b'\n' {
                return match line.pop() {
                    Some(b'\r') => Ok(line),
                    _ => Err(invalid_data("bare LF in chunked body")),
                };
            }

            line.push(byte[0]);
            if line.len() > MAX_LINE_SIZE + 1 {
                return Err(invalid_data("line of chunked body too long"));
            }
        }
    }

    /// Reads and drops the trailer section that follows the last chunk.
    fn skip_trailers(&mut self) -> IoResult<()> {
        let mut size = 0;
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                return Ok(());
            }

            size += line.len() + 2;
            if size > MAX_TRAILER_SIZE {
                return Err(invalid_data("trailer section of chunked body too large"));
            }
        }
    }
}

/// Parses the size at the start of a chunk-size line: hexadecimal digits, then optional
/// spaces or tabs and extensions after a `;`.
fn parse_chunk_size(line: &[u8]) -> IoResult<u64> {
    let digits_len = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let (digits, rest) = line.split_at(digits_len);

    let rest_is_valid = match rest.iter().position(|b| *b != b' ' && *b != b'\t') {
        None => true,
        Some(start) => rest[start] == b';',
    };
    if digits.is_empty() || !rest_is_valid {
        return Err(invalid_data("invalid chunk size"));
    }

    // the digits are ASCII, so the conversion cannot fail
    let digits = std::str::from_utf8(digits).unwrap();
    u64::from_str_radix(digits, 16).map_err(|_| invalid_data("chunk size too large"))
}

fn invalid_data(message: &'static str) -> IoError {
    IoError::new(ErrorKind::InvalidData, message)
}

impl<R: Read> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        loop {
            match self.state {
                State::Done => return Ok(0),

                State::Size => {
                    let line = self.read_line()?;
                    match parse_chunk_size(&line)? {
                        0 => {
                            self.skip_trailers()?;
                            self.state = State::Done;
                        }
                        size => self.state = State::Data(size),
                    }
                }

                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(0);
                    }

                    let len = (buf.len() as u64).min(left) as usize;
                    let read = self.source.read(&mut buf[..len])?;
                    if read == 0 {
                        let err = IoError::new(ErrorKind::UnexpectedEof, "chunked body cut short");
                        return Err(err);
                    }

                    self.state = match left - read as u64 {
                        0 => State::DataEnd,
                        left => State::Data(left),
                    };
                    return Ok(read);
                }

                State::DataEnd => {
                    if !self.read_line()?.is_empty() {
                        return Err(invalid_data("chunk data longer than its size"));
                    }
                    self.state = State::Size;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ChunkedReader, MAX_LINE_SIZE};
    use std::io::{ErrorKind, Read};

    fn decode(input: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        ChunkedReader::new(input).read_to_end(&mut body)?;
        Ok(body)
    }

    #[test]
    fn decodes_chunks() {
        let body = decode(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"hello world");
    }

    #[test]
    fn drops_extensions_and_trailers() {
        let input = b"5 ; name=value\r\nhello\r\n0;last\r\nX-Checksum: 1\r\n\r\n";
        assert_eq!(decode(input).unwrap(), b"hello");
    }

    #[test]
    fn leaves_next_request_unread() {
        let mut input = &b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n"[..];
        let mut body = Vec::new();
        ChunkedReader::new(&mut input)
            .read_to_end(&mut body)
            .unwrap();
        assert_eq!(body, b"a");
        assert_eq!(input, b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn rejects_endless_size_line() {
        // one byte more than a line may hold, and the reader must stop there
        let mut input = vec![b'0'; MAX_LINE_SIZE + 1];
        input.extend_from_slice(&[b'0'; 1024 * 1024]);
        let mut source = &input[..];

        let err = ChunkedReader::new(&mut source)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(
            source.len() >= 1024 * 1024 - 2,
            "read {}",
            input.len() - source.len()
        );
    }

    #[test]
    fn accepts_size_line_at_limit() {
        let mut input = vec![b'0'; MAX_LINE_SIZE - 1];
        input.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(decode(&input).unwrap(), b"hello");
    }

    #[test]
    fn rejects_invalid_sizes() {
        for input in [
            &b"\r\nhello\r\n0\r\n\r\n"[..],
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"5x\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
        ] {
            let err = decode(input).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidData, "input: {:?}", input);
        }
    }

    #[test]
    fn rejects_data_longer_than_size() {
        let err = decode(b"3\r\nhello\r\n0\r\n\r\n").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
    }

    #[test]
    fn rejects_bare_line_feed() {
        let err = decode(b"5\nhello\r\n0\r\n\r\n").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
    }

    #[test]
    fn reports_cut_body() {
        let err = decode(b"5\r\nhel").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
    }
}
