//! Finds the fields of a `multipart/form-data` body that is already in memory.
//!
//! The body has been read under the size limit, so the parser works on one
//! byte slice. `memchr::memmem` finds the delimiters, `httparse` parses each
//! part's headers, and every [`Part`] borrows its data from the body, so the
//! image bytes are never copied. Delimiters follow RFC 2046 section 5.1.1 and
//! fields follow RFC 7578.
//!
//! Line endings are CRLF, as the RFCs require. A body whose first boundary
//! line ends in a bare LF is read with LF delimiters throughout instead,
//! because scripts that build bodies by hand often write `\n`. Deciding once
//! from the first line keeps a CR at the end of a part's data in an LF body,
//! and a lone LF before a boundary inside a CRLF body, as data.

use std::borrow::Cow;

use memchr::memmem;

use crate::error::ApiError;
use crate::options::{escape_for_message, percent_decode};

/// The form field that carries the image.
pub const IMAGE_FIELD: &str = "image";

/// Maximum length of a boundary, in characters (RFC 2046).
pub const MAX_BOUNDARY_LEN: usize = 70;

/// Maximum size of one part's header block, blank line included, in bytes.
pub const MAX_PART_HEADER_BYTES: usize = 8 * 1024;

/// Maximum number of headers in one part.
pub const MAX_PART_HEADERS: usize = 16;

/// Maximum number of parts in one body, which bounds the work on a body of
/// many tiny parts.
pub const MAX_PARTS: usize = 64;

/// Maximum number of other field names listed when the image is missing.
const MAX_LISTED_FIELDS: usize = 5;

/// One field of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// Field name from `Content-Disposition: form-data; name=...`, which is
    /// case-sensitive.
    pub name: Cow<'a, str>,
    /// File name the client sent, from `filename*=` or else `filename=`.
    ///
    /// It is untrusted: it may contain `../`, control characters or anything
    /// else, so use it only for logging, escaped (for example with `{:?}`).
    pub filename: Option<Cow<'a, str>>,
    /// The part's `Content-Type` value as sent, not checked against the data.
    pub content_type: Option<&'a str>,
    /// The part's data, a slice of the body.
    pub data: &'a [u8],
}

/// Extracts the boundary from a request's `Content-Type` header value.
///
/// The media type must be `multipart/form-data` in any case, and the
/// `boundary` parameter must be 1 to 70 characters of the RFC 2046 set,
/// quoted or not. A missing header or another media type is a 415, and a
/// missing, repeated or invalid boundary is a 400.
pub fn boundary(content_type: Option<&str>) -> Result<&str, ApiError> {
    let Some(value) = content_type else {
        let reason = "the Content-Type header is missing".to_string();
        return Err(ApiError::UnsupportedMediaType(reason));
    };

    let media_type = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim_matches(is_space);
    if !media_type.eq_ignore_ascii_case("multipart/form-data") {
        let reason = format!(
            "Content-Type '{}' is not multipart/form-data",
            escape_for_message(media_type)
        );
        return Err(ApiError::UnsupportedMediaType(reason));
    }

    let (_, parameters) = split_parameters(value)
        .map_err(|reason| malformed(format!("invalid Content-Type header: {reason}")))?;
    let Some(boundary) = find_parameter(&parameters, "boundary") else {
        return Err(malformed(
            "the Content-Type header has no boundary parameter",
        ));
    };
    match boundary {
        Cow::Borrowed(boundary) if is_valid_boundary(boundary) => Ok(boundary),
        _ => Err(malformed(format!(
            "the boundary '{}' is invalid; use 1 to {MAX_BOUNDARY_LEN} letters, digits or '()+_,-./:=? characters",
            escape_for_message(&boundary)
        ))),
    }
}

/// Parses every part of `body`, delimited by `boundary` as returned by
/// [`boundary`].
///
/// Every part must be a `form-data` field with a name. The body must end
/// with the closing delimiter `--boundary--`, and anything after it (the
/// epilogue) is ignored, as is anything before the first delimiter (the
/// preamble).
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, ApiError> {
    Parts::new(body, boundary)?.collect()
}

/// Returns the one field named `image` in `body`, ignoring other fields.
///
/// A body without that field or with an empty one is [`ApiError::MissingImage`].
/// A body with two such fields is rejected as malformed because either
/// choice could be the wrong image.
pub fn image_part<'a>(body: &'a [u8], boundary: &str) -> Result<Part<'a>, ApiError> {
    let mut image = None;
    let mut other_names = Vec::new();
    for part in Parts::new(body, boundary)? {
        let part = part?;
        if part.name != IMAGE_FIELD {
            other_names.push(part.name);
        } else if image.replace(part).is_some() {
            return Err(malformed("the form has more than one field named 'image'"));
        }
    }

    let Some(image) = image else {
        return Err(missing_image(&other_names));
    };
    if image.data.is_empty() {
        return Err(ApiError::MissingImage(
            "the 'image' field is empty".to_string(),
        ));
    }
    Ok(image)
}

fn missing_image(other_names: &[Cow<'_, str>]) -> ApiError {
    if other_names.is_empty() {
        return ApiError::MissingImage("the form has no fields".to_string());
    }
    let mut listed: Vec<String> = other_names
        .iter()
        .take(MAX_LISTED_FIELDS)
        .map(|name| format!("'{}'", escape_for_message(name)))
        .collect();
    if other_names.len() > MAX_LISTED_FIELDS {
        listed.push("…".to_string());
    }
    ApiError::MissingImage(format!(
        "the form has no field named 'image' (fields found: {})",
        listed.join(", ")
    ))
}

fn malformed(reason: impl Into<String>) -> ApiError {
    ApiError::MalformedMultipart(reason.into())
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Checks a boundary against RFC 2046: 1 to 70 characters from `bchars`,
/// where a space may appear but not last.
fn is_valid_boundary(boundary: &str) -> bool {
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&byte);
    (1..=MAX_BOUNDARY_LEN).contains(&boundary.len())
        && !boundary.ends_with(' ')
        && boundary.bytes().all(allowed)
}

/// The kind of text after a `--boundary` that starts a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// `--`: the closing delimiter. The epilogue after it is ignored.
    Close,
    /// Optional spaces and tabs, then a line break. A part follows after
    /// `len` bytes, and `bare_lf` is true when the line ends in LF only.
    Line { len: usize, bare_lf: bool },
    /// Anything else, so the boundary is only a prefix of data on that line.
    NotDelimiter,
}

/// Classifies the bytes that follow a `--boundary` match.
fn classify_tail(rest: &[u8]) -> Tail {
    if rest.starts_with(b"--") {
        return Tail::Close;
    }
    // Transport padding: RFC 2046 lets the sender add spaces and tabs.
    let padding = rest
        .iter()
        .position(|&byte| byte != b' ' && byte != b'\t')
        .unwrap_or(rest.len());
    match &rest[padding..] {
        [b'\r', b'\n', ..] => Tail::Line {
            len: padding + 2,
            bare_lf: false,
        },
        [b'\n', ..] => Tail::Line {
            len: padding + 1,
            bare_lf: true,
        },
        _ => Tail::NotDelimiter,
    }
}

/// An iterator over the parts of a body. It stops after the first error.
struct Parts<'a> {
    body: &'a [u8],
    boundary: String,
    /// Finds a line break followed by `--boundary`: the delimiter that ends
    /// each part.
    delimiter: memmem::Finder<'static>,
    /// Length of the line break at the start of the delimiter: 2 for CRLF, 1
    /// for LF.
    line_break_len: usize,
    /// Offset of the next part, or `None` after the closing delimiter or an
    /// error.
    next_start: Option<usize>,
    /// Number of parts yielded so far.
    count: usize,
}

impl<'a> Parts<'a> {
    /// Finds the first delimiter line, which sets the line ending.
    fn new(body: &'a [u8], boundary: &str) -> Result<Self, ApiError> {
        if body.is_empty() {
            return Err(malformed("the body is empty"));
        }
        // Checked again for callers that did not get the boundary from
        // `boundary`, because an empty one would match every `--`. Messages
        // below can then show it unescaped.
        if !is_valid_boundary(boundary) {
            return Err(malformed("the boundary is invalid"));
        }
        let dash_boundary = format!("--{boundary}");
        let (after, tail) =
            find_first_boundary(body, dash_boundary.as_bytes()).ok_or_else(|| {
                malformed(format!(
                    "no line starts with the boundary '--{boundary}' from the Content-Type header"
                ))
            })?;

        let (next_start, newline) = match tail {
            Tail::Line { len, bare_lf } => (Some(after + len), if bare_lf { "\n" } else { "\r\n" }),
            _ => (None, "\r\n"),
        };
        let delimiter = format!("{newline}{dash_boundary}");
        Ok(Parts {
            body,
            boundary: boundary.to_string(),
            delimiter: memmem::Finder::new(delimiter.as_bytes()).into_owned(),
            line_break_len: newline.len(),
            next_start,
            count: 0,
        })
    }

    /// Finds the delimiter that ends the part starting at `start`.
    ///
    /// Returns where the part's bytes end and where the next part starts, or
    /// `None` for the next start when the delimiter is the closing one.
    fn find_part_end(&self, start: usize) -> Result<(usize, Option<usize>), ApiError> {
        let mut from = start;
        while let Some(found) = self.delimiter.find(&self.body[from..]) {
            let end = from + found;
            let after = end + self.delimiter.needle().len();
            match classify_tail(&self.body[after..]) {
                Tail::Close => return Ok((end, None)),
                Tail::Line { len, .. } => return Ok((end, Some(after + len))),
                Tail::NotDelimiter => from = end + 1,
            }
        }
        Err(malformed(format!(
            "the closing boundary line '--{}--' is missing; the body may be truncated",
            self.boundary
        )))
    }
}

impl<'a> Iterator for Parts<'a> {
    type Item = Result<Part<'a>, ApiError>;

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.next_start.take()?;
        self.count += 1;
        if self.count > MAX_PARTS {
            let reason = format!("the body has more than {MAX_PARTS} parts");
            return Some(Err(malformed(reason)));
        }

        let (end, next_start) = match self.find_part_end(start) {
            Ok(found) => found,
            Err(error) => return Some(Err(error)),
        };
        // The delimiter's line break is passed along because it also ends a
        // header block that has no blank line of its own.
        let with_line_break = &self.body[start..end + self.line_break_len];
        let part = parse_part(self.count, with_line_break, self.line_break_len);
        if part.is_ok() {
            self.next_start = next_start;
        }
        Some(part)
    }
}

/// Finds the first `--boundary` at the start of the body or of a line that is
/// followed by a valid tail. Returns the offset just after `--boundary` and
/// the tail found there.
fn find_first_boundary(body: &[u8], dash_boundary: &[u8]) -> Option<(usize, Tail)> {
    memmem::find_iter(body, dash_boundary)
        .filter(|&start| start == 0 || body[start - 1] == b'\n')
        .map(|start| start + dash_boundary.len())
        .map(|after| (after, classify_tail(&body[after..])))
        .find(|(_, tail)| *tail != Tail::NotDelimiter)
}

/// The headers of one part that the parser reads. Others are ignored.
#[derive(Debug, Default)]
struct PartHeaders<'a> {
    disposition: Option<&'a [u8]>,
    content_type: Option<&'a [u8]>,
    transfer_encoding: Option<&'a [u8]>,
}

/// Parses one part: its headers, a blank line, then its data.
///
/// `number` counts parts from 1 for error messages. `with_line_break` is the
/// part followed by the `line_break_len` bytes of the line break that starts
/// the next delimiter.
fn parse_part(
    number: usize,
    with_line_break: &[u8],
    line_break_len: usize,
) -> Result<Part<'_>, ApiError> {
    let (headers, data) = read_part_headers(number, with_line_break, line_break_len)?;

    let Some(disposition) = headers.disposition else {
        return Err(malformed(format!(
            "part {number} has no Content-Disposition header"
        )));
    };
    let (name, filename) = parse_disposition(disposition).map_err(|reason| {
        malformed(format!(
            "part {number} has an invalid Content-Disposition header: {reason}"
        ))
    })?;

    let content_type = match headers.content_type {
        Some(value) => Some(std::str::from_utf8(value).map_err(|_| {
            malformed(format!(
                "the Content-Type header of part {number} is not valid UTF-8"
            ))
        })?),
        None => None,
    };
    if let Some(encoding) = headers.transfer_encoding {
        check_transfer_encoding(number, encoding)?;
    }

    Ok(Part {
        name,
        filename,
        content_type,
        data,
    })
}

/// Reads the header block of a part, at most [`MAX_PART_HEADER_BYTES`]
/// bytes and [`MAX_PART_HEADERS`] headers, and returns the headers and the
/// data after the blank line.
///
/// RFC 2046 lets a part end right after its last header line, or be empty,
/// so the line break of the next delimiter may serve as the blank line. In
/// both cases the part has no data.
fn read_part_headers(
    number: usize,
    with_line_break: &[u8],
    line_break_len: usize,
) -> Result<(PartHeaders<'_>, &[u8]), ApiError> {
    let bytes = with_line_break;
    let part_len = bytes.len() - line_break_len;
    let window = &bytes[..bytes.len().min(MAX_PART_HEADER_BYTES)];
    let mut storage = [httparse::EMPTY_HEADER; MAX_PART_HEADERS];
    let (header_len, parsed) = match httparse::parse_headers(window, &mut storage) {
        Ok(httparse::Status::Complete(done)) => done,
        Ok(httparse::Status::Partial) if bytes.len() > MAX_PART_HEADER_BYTES => {
            return Err(malformed(format!(
                "the headers of part {number} are longer than {MAX_PART_HEADER_BYTES} bytes"
            )));
        }
        Ok(httparse::Status::Partial) => {
            return Err(malformed(format!(
                "the headers of part {number} do not end with a blank line"
            )));
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(malformed(format!(
                "part {number} has more than {MAX_PART_HEADERS} headers"
            )));
        }
        Err(error) => {
            return Err(malformed(format!(
                "part {number} has an invalid header line ({error})"
            )));
        }
    };

    let mut headers = PartHeaders::default();
    for header in parsed {
        let slot = if header.name.eq_ignore_ascii_case("content-disposition") {
            &mut headers.disposition
        } else if header.name.eq_ignore_ascii_case("content-type") {
            &mut headers.content_type
        } else if header
            .name
            .eq_ignore_ascii_case("content-transfer-encoding")
        {
            &mut headers.transfer_encoding
        } else {
            continue;
        };
        if slot.replace(header.value).is_some() {
            return Err(malformed(format!(
                "part {number} has more than one {} header",
                header.name
            )));
        }
    }
    let data_start = header_len.min(part_len);
    Ok((headers, &bytes[data_start..part_len]))
}

/// Rejects a `Content-Transfer-Encoding` other than the identity ones,
/// because the parser hands the data on as sent and a decoder would fail on
/// base64 or quoted-printable text. RFC 7578 deprecates the header.
fn check_transfer_encoding(number: usize, value: &[u8]) -> Result<(), ApiError> {
    let value = String::from_utf8_lossy(value);
    let value = value.trim_matches(is_space);
    let identity = ["binary", "8bit", "7bit"];
    if identity.iter().any(|name| name.eq_ignore_ascii_case(value)) {
        return Ok(());
    }
    Err(malformed(format!(
        "part {number} uses Content-Transfer-Encoding '{}', which is not supported; send the file as binary",
        escape_for_message(value)
    )))
}

/// Returns the field name and the file name of a `Content-Disposition`
/// value, which must be of type `form-data`.
///
/// A value that is not UTF-8 is read lossily, so a Latin-1 file name is
/// logged with replacement characters rather than rejected.
fn parse_disposition(value: &[u8]) -> Result<(Cow<'_, str>, Option<Cow<'_, str>>), String> {
    match std::str::from_utf8(value) {
        Ok(text) => parse_disposition_text(text),
        Err(_) => {
            let text = String::from_utf8_lossy(value).into_owned();
            let (name, filename) = parse_disposition_text(&text)?;
            let filename = filename.map(|filename| Cow::Owned(filename.into_owned()));
            Ok((Cow::Owned(name.into_owned()), filename))
        }
    }
}

fn parse_disposition_text(text: &str) -> Result<(Cow<'_, str>, Option<Cow<'_, str>>), String> {
    let (kind, parameters) = split_parameters(text)?;
    if !kind.eq_ignore_ascii_case("form-data") {
        return Err(format!(
            "the type is '{}', expected 'form-data'",
            escape_for_message(kind)
        ));
    }

    let Some(name) = find_parameter(&parameters, "name") else {
        return Err("the name parameter is missing".to_string());
    };
    // RFC 6266 prefers `filename*` where both are sent. A malformed
    // `filename*` falls back to `filename`, since the name is only logged.
    let filename = find_parameter(&parameters, "filename*")
        .and_then(|value| decode_extended_value(&value))
        .or_else(|| find_parameter(&parameters, "filename"));
    Ok((name, filename))
}

/// Decodes an RFC 5987 extended value, `charset'language'percent-encoded`.
/// Returns `None` for a malformed value or a charset other than UTF-8 and
/// ISO-8859-1.
fn decode_extended_value(value: &str) -> Option<Cow<'static, str>> {
    let mut fields = value.splitn(3, '\'');
    let (charset, _language, encoded) = (fields.next()?, fields.next()?, fields.next()?);
    let bytes = percent_decode(encoded).ok()?;
    let text = if charset.eq_ignore_ascii_case("utf-8") {
        String::from_utf8_lossy(&bytes).into_owned()
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        bytes.iter().map(|&byte| char::from(byte)).collect()
    } else {
        return None;
    };
    Some(Cow::Owned(text))
}

/// One `name=value` parameter of a header value.
#[derive(Debug, PartialEq, Eq)]
struct Parameter<'a> {
    name: &'a str,
    value: Cow<'a, str>,
}

/// Returns the value of the parameter `name`, compared ignoring ASCII case.
fn find_parameter<'a>(parameters: &[Parameter<'a>], name: &str) -> Option<Cow<'a, str>> {
    parameters
        .iter()
        .find(|parameter| parameter.name.eq_ignore_ascii_case(name))
        .map(|parameter| parameter.value.clone())
}

/// Splits a header value of the form `type; name=value; name="quoted value"`
/// into the type and its parameters.
///
/// Spaces and tabs are allowed around `;` and `=`, and a trailing `;` is
/// ignored. A parameter given twice is an error, because a sender and a
/// receiver that pick different copies would see different fields.
fn split_parameters(value: &str) -> Result<(&str, Vec<Parameter<'_>>), String> {
    let (kind, mut rest) = value.split_once(';').unwrap_or((value, ""));
    let mut parameters: Vec<Parameter<'_>> = Vec::new();
    loop {
        rest = rest.trim_start_matches(is_space);
        if rest.is_empty() {
            break;
        }
        let (parameter, after) = split_parameter(rest)?;
        if find_parameter(&parameters, parameter.name).is_some() {
            return Err(format!(
                "the parameter '{}' is given more than once",
                escape_for_message(parameter.name)
            ));
        }
        parameters.push(parameter);

        rest = after.trim_start_matches(is_space);
        rest = match rest.strip_prefix(';') {
            Some(after_separator) => after_separator,
            None if rest.is_empty() => rest,
            None => return Err(format!("unexpected '{}'", escape_for_message(rest))),
        };
    }
    Ok((kind.trim_matches(is_space), parameters))
}

/// Splits one `name=value` from the start of `text` and returns it with the
/// text after the value.
fn split_parameter(text: &str) -> Result<(Parameter<'_>, &str), String> {
    let name_end = text.find(['=', ';']).unwrap_or(text.len());
    if !text[name_end..].starts_with('=') {
        return Err(format!(
            "the parameter '{}' has no '=' and value",
            escape_for_message(&text[..name_end])
        ));
    }
    let name = text[..name_end].trim_end_matches(is_space);
    let rest = &text[name_end + 1..];
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(format!(
            "'{}' is not a valid parameter name",
            escape_for_message(name)
        ));
    }

    let rest = rest.trim_start_matches(is_space);
    let (value, after) = match rest.strip_prefix('"') {
        Some(quoted) => split_quoted_string(quoted)?,
        None => split_bare_value(rest),
    };
    if value.is_empty() && !rest.starts_with('"') {
        return Err(format!(
            "the parameter '{}' has no value",
            escape_for_message(name)
        ));
    }
    Ok((Parameter { name, value }, after))
}

/// Splits an unquoted value, which ends at `;`, a space, a tab or a quote.
fn split_bare_value(text: &str) -> (Cow<'_, str>, &str) {
    let end = text.find([';', ' ', '\t', '"']).unwrap_or(text.len());
    (Cow::Borrowed(&text[..end]), &text[end..])
}

/// Splits the rest of a quoted string, after its opening quote, at the
/// closing quote, and resolves `\x` escapes to `x` (RFC 9110 `quoted-pair`).
///
/// Browsers write `"` as `%22` in file names instead and send a backslash
/// as it is, so a file name with `\` may lose it. That only affects logs.
fn split_quoted_string(text: &str) -> Result<(Cow<'_, str>, &str), String> {
    let Some(end) = text.find(['"', '\\']) else {
        return Err("a quoted string has no closing quote".to_string());
    };
    if text.as_bytes()[end] == b'"' {
        return Ok((Cow::Borrowed(&text[..end]), &text[end + 1..]));
    }

    // The slow path, taken only when the string contains an escape.
    let mut unescaped = String::from(&text[..end]);
    let mut chars = text[end..].char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => return Ok((Cow::Owned(unescaped), &text[end + index + 1..])),
            '\\' => match chars.next() {
                Some((_, escaped)) => unescaped.push(escaped),
                None => break,
            },
            _ => unescaped.push(c),
        }
    }
    Err("a quoted string has no closing quote".to_string())
}

/// Checks for an RFC 9110 `tchar`, a byte allowed in a token.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDARY: &str = "----ImgFluxTestBoundary7MA4YWxkTrZu0gW";

    fn disposition(name: &str) -> String {
        format!("Content-Disposition: form-data; name=\"{name}\"")
    }

    /// Builds a CRLF body from (header lines, data) pairs, as a browser does.
    fn build_body(parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (headers, data) in parts {
            body.extend_from_slice(format!("--{BOUNDARY}\r\n{headers}\r\n\r\n").as_bytes());
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        body
    }

    /// Builds a CRLF body with one `image` field.
    fn image_body(data: &[u8]) -> Vec<u8> {
        build_body(&[(&disposition("image"), data)])
    }

    /// Returns the error of `result`, asserting its code and that its
    /// message contains `text`.
    fn assert_error<T: std::fmt::Debug>(result: Result<T, ApiError>, code: &str, text: &str) {
        let error = result.expect_err("expected an error");
        assert_eq!(error.code(), code, "{error:?}");
        assert!(
            error.message().contains(text),
            "{:?} lacks {text:?}",
            error.message()
        );
    }

    /// A xorshift64 generator: deterministic test data without a crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }

        fn bytes_below(&mut self, bound: usize) -> Vec<u8> {
            let len = self.below(bound);
            self.bytes(len)
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            let mut bytes = Vec::with_capacity(len + 8);
            while bytes.len() < len {
                bytes.extend_from_slice(&self.next().to_le_bytes());
            }
            bytes.truncate(len);
            bytes
        }
    }

    #[test]
    fn boundary_accepts_valid_headers() {
        let cases = [
            ("multipart/form-data; boundary=abc", "abc"),
            ("Multipart/Form-Data; BOUNDARY=abc", "abc"),
            ("multipart/form-data;boundary=abc", "abc"),
            ("multipart/form-data ; boundary = abc ;", "abc"),
            ("multipart/form-data; charset=utf-8; boundary=abc", "abc"),
            ("multipart/form-data; boundary=abc; charset=utf-8", "abc"),
            ("multipart/form-data; boundary=\"a b:c\"", "a b:c"),
            ("multipart/form-data; boundary=\"abc\"; x=\"y;z\"", "abc"),
            (
                "multipart/form-data;\tboundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
                "----WebKitFormBoundary7MA4YWxkTrZu0gW",
            ),
            ("multipart/form-data; boundary='()+_,-./:=?", "'()+_,-./:=?"),
        ];
        for (header, expected) in cases {
            assert_eq!(boundary(Some(header)), Ok(expected), "{header:?}");
        }

        let longest = "b".repeat(MAX_BOUNDARY_LEN);
        let header = format!("multipart/form-data; boundary={longest}");
        assert_eq!(boundary(Some(&header)), Ok(longest.as_str()));
    }

    #[test]
    fn boundary_rejects_other_media_types() {
        let cases = [
            (None, "the Content-Type header is missing"),
            (Some(""), "Content-Type '' is not multipart/form-data"),
            (Some("application/json"), "'application/json' is not"),
            (
                Some("multipart/mixed; boundary=abc"),
                "'multipart/mixed' is not",
            ),
            (
                Some("multipart/form-data-x; boundary=abc"),
                "is not multipart/form-data",
            ),
            (
                Some("text/plain\r\n; boundary=abc"),
                r"'text/plain\r\n' is not",
            ),
        ];
        for (header, text) in cases {
            let error = boundary(header).expect_err("expected an error");
            assert_eq!(error.status(), 415, "{header:?}");
            assert_eq!(error.code(), "unsupported_media_type", "{header:?}");
            assert!(
                error.message().contains(text),
                "{header:?}: {}",
                error.message()
            );
        }
    }

    #[test]
    fn boundary_rejects_invalid_boundaries() {
        let too_long = format!(
            "multipart/form-data; boundary={}",
            "b".repeat(MAX_BOUNDARY_LEN + 1)
        );
        let cases = [
            ("multipart/form-data", "has no boundary parameter"),
            (
                "multipart/form-data; charset=utf-8",
                "has no boundary parameter",
            ),
            (
                "multipart/form-data; boundary=",
                "the parameter 'boundary' has no value",
            ),
            (
                "multipart/form-data; boundary=\"\"",
                "the boundary '' is invalid",
            ),
            (
                "multipart/form-data; boundary=\"abc \"",
                "the boundary 'abc ' is invalid",
            ),
            (
                "multipart/form-data; boundary=\"a\\\"b\"",
                "the boundary 'a\"b' is invalid",
            ),
            (
                "multipart/form-data; boundary=\"a\\bc\"",
                "the boundary 'abc' is invalid",
            ),
            ("multipart/form-data; boundary=ab\u{e9}", "is invalid"),
            (
                "multipart/form-data; boundary=a<b",
                "the boundary 'a<b' is invalid",
            ),
            (
                "multipart/form-data; boundary=\"abc",
                "has no closing quote",
            ),
            ("multipart/form-data; boundary=a b", "unexpected 'b'"),
            (
                "multipart/form-data; boundary=a; boundary=b",
                "'boundary' is given more than once",
            ),
            ("multipart/form-data; boundary", "has no '=' and value"),
            (
                "multipart/form-data; charset; boundary=abc",
                "the parameter 'charset' has no '=' and value",
            ),
            (too_long.as_str(), "is invalid; use 1 to 70"),
        ];
        for (header, text) in cases {
            let error = boundary(Some(header)).expect_err(header);
            assert_eq!(error.status(), 400, "{header:?}");
            assert_eq!(error.code(), "malformed_multipart", "{header:?}");
            assert!(
                error.message().contains(text),
                "{header:?}: {}",
                error.message()
            );
        }
    }

    #[test]
    fn parse_crlf_body() {
        let body = build_body(&[
            (&disposition("title"), b"Holiday"),
            (
                "Content-Disposition: form-data; name=\"image\"; filename=\"beach.png\"\r\nContent-Type: image/png",
                b"\x89PNG\r\n\x1a\n",
            ),
        ]);
        let parts = parse(&body, BOUNDARY).unwrap();

        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "title");
        assert_eq!(parts[0].filename, None);
        assert_eq!(parts[0].content_type, None);
        assert_eq!(parts[0].data, b"Holiday");
        assert_eq!(parts[1].name, "image");
        assert_eq!(parts[1].filename.as_deref(), Some("beach.png"));
        assert_eq!(parts[1].content_type, Some("image/png"));
        assert_eq!(parts[1].data, b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn parse_lf_only_body() {
        let body = format!(
            "--{BOUNDARY}\n{}\n\nHoliday\n--{BOUNDARY}\n{}\nContent-Type: image/png\n\nline1\r\n--{BOUNDARY}--\n",
            disposition("title"),
            disposition("image"),
        );
        let parts = parse(body.as_bytes(), BOUNDARY).unwrap();

        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].data, b"Holiday");
        assert_eq!(parts[1].content_type, Some("image/png"));
        // In an LF body a CR before the delimiter is data.
        assert_eq!(parts[1].data, b"line1\r");
    }

    #[test]
    fn crlf_body_keeps_lone_lf_data() {
        // A bare LF before `--boundary` does not end a part in a CRLF body.
        let data = format!("one\n--{BOUNDARY}\r\ntwo\n");
        let body = image_body(data.as_bytes());
        let parts = parse(&body, BOUNDARY).unwrap();

        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].data, data.as_bytes());
    }

    #[test]
    fn parse_ignores_preamble_and_epilogue() {
        let mut body = b"This is the preamble.\r\nIt mentions --not-the-boundary.\r\n".to_vec();
        body.extend_from_slice(&image_body(b"pixels"));
        body.extend_from_slice(b"This is the epilogue.\r\n--more epilogue\r\n");
        let parts = parse(&body, BOUNDARY).unwrap();

        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].data, b"pixels");
    }

    #[test]
    fn boundary_in_data_does_not_split() {
        let cases = [
            // The boundary without a line break before it.
            format!("abc--{BOUNDARY}\r\ndef"),
            format!("abc--{BOUNDARY}--\r\n"),
            // A line that starts with the boundary but goes on with other text.
            format!("abc\r\n--{BOUNDARY}x\r\ndef"),
            format!("abc\r\n--{BOUNDARY} x\r\n"),
        ];
        for data in cases {
            let body = image_body(data.as_bytes());
            let parts = parse(&body, BOUNDARY).unwrap();
            assert_eq!(parts.len(), 1, "{data:?}");
            assert_eq!(parts[0].data, data.as_bytes(), "{data:?}");
        }
    }

    #[test]
    fn transport_padding_after_boundary() {
        let body = format!(
            "--{BOUNDARY} \t \r\n{}\r\n\r\nfirst\r\n--{BOUNDARY}\t\r\n{}\r\n\r\nsecond\r\n--{BOUNDARY}--  \r\n",
            disposition("a"),
            disposition("b"),
        );
        let parts = parse(body.as_bytes(), BOUNDARY).unwrap();

        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].data, b"first");
        assert_eq!(parts[1].data, b"second");
    }

    #[test]
    fn missing_closing_boundary_rejected() {
        let complete = image_body(b"pixels");
        let without_close = format!("--{BOUNDARY}\r\n{}\r\n\r\npixels\r\n", disposition("image"));
        let bodies = [
            without_close.as_bytes(),
            &complete[..complete.len() - 4],
            &complete[..complete.len() - 20],
            format!("--{BOUNDARY}\r\n").as_bytes(),
        ]
        .map(<[u8]>::to_vec);
        for body in bodies {
            assert_error(
                image_part(&body, BOUNDARY),
                "malformed_multipart",
                "the closing boundary line '------ImgFluxTestBoundary7MA4YWxkTrZu0gW--' is missing",
            );
        }
    }

    #[test]
    fn body_without_boundary_rejected() {
        let cases: [&[u8]; 4] = [
            b"just some text",
            b"--otherboundary\r\n\r\n--otherboundary--\r\n",
            // The boundary must start a line.
            b"x------ImgFluxTestBoundary7MA4YWxkTrZu0gW\r\n",
            b"------ImgFluxTestBoundary7MA4YWxkTrZu0gW",
        ];
        for body in cases {
            assert_error(
                parse(body, BOUNDARY),
                "malformed_multipart",
                "no line starts with the boundary",
            );
        }
    }

    #[test]
    fn empty_body_rejected() {
        assert_error(
            parse(b"", BOUNDARY),
            "malformed_multipart",
            "the body is empty",
        );
        assert_error(
            image_part(b"", BOUNDARY),
            "malformed_multipart",
            "the body is empty",
        );
    }

    #[test]
    fn parse_rejects_invalid_boundary() {
        let body = b"--\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nx\r\n----\r\n";
        for invalid in ["", "a\r\nb", "trailing ", &"b".repeat(MAX_BOUNDARY_LEN + 1)] {
            assert_error(
                parse(body, invalid),
                "malformed_multipart",
                "the boundary is invalid",
            );
        }
    }

    #[test]
    fn body_of_only_closing_boundary() {
        for body in [format!("--{BOUNDARY}--"), format!("--{BOUNDARY}--\r\n")] {
            assert_eq!(parse(body.as_bytes(), BOUNDARY), Ok(Vec::new()));
            assert_error(
                image_part(body.as_bytes(), BOUNDARY),
                "missing_image",
                "the form has no fields",
            );
        }
    }

    #[test]
    fn part_header_size_limit() {
        // A header block of exactly the limit, blank line included, passes.
        let prefix = format!("{}\r\nX-Padding: ", disposition("image"));
        let padding = MAX_PART_HEADER_BYTES - prefix.len() - "\r\n\r\n".len();
        let headers = format!("{prefix}{}", "p".repeat(padding));
        let body = build_body(&[(&headers, b"data")]);
        let part = image_part(&body, BOUNDARY).unwrap();
        assert_eq!(part.data, b"data");

        // One byte more is rejected.
        let headers = format!("{prefix}{}", "p".repeat(padding + 1));
        let body = build_body(&[(&headers, b"data")]);
        assert_error(
            image_part(&body, BOUNDARY),
            "malformed_multipart",
            "the headers of part 1 are longer than 8192 bytes",
        );
    }

    #[test]
    fn part_headers_without_end_rejected() {
        // One huge header line that never ends.
        let huge = format!(
            "--{BOUNDARY}\r\n{}\r\nX-Junk: {}",
            disposition("image"),
            "j".repeat(1 << 20)
        );
        let mut body = huge.into_bytes();
        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        assert_error(
            parse(&body, BOUNDARY),
            "malformed_multipart",
            "longer than 8192 bytes",
        );

        // A short header block with data but no blank line before it.
        let body = format!(
            "--{BOUNDARY}\r\n{}\r\nnot a header\r\n--{BOUNDARY}--\r\n",
            disposition("image")
        );
        assert_error(
            parse(body.as_bytes(), BOUNDARY),
            "malformed_multipart",
            "part 1 has an invalid header line",
        );

        // A header line with no line break before the delimiter.
        let body = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"--{BOUNDARY}--\r\n"
        );
        assert_error(
            parse(body.as_bytes(), BOUNDARY),
            "malformed_multipart",
            "the closing boundary line",
        );
    }

    #[test]
    fn part_header_count_limit() {
        let extra = |count: usize| -> String {
            (0..count)
                .map(|index| format!("\r\nX-Extra-{index}: {index}"))
                .collect()
        };

        let headers = format!("{}{}", disposition("image"), extra(MAX_PART_HEADERS - 1));
        let body = build_body(&[(&headers, b"data")]);
        assert_eq!(image_part(&body, BOUNDARY).unwrap().data, b"data");

        let headers = format!("{}{}", disposition("image"), extra(MAX_PART_HEADERS));
        let body = build_body(&[(&headers, b"data")]);
        assert_error(
            image_part(&body, BOUNDARY),
            "malformed_multipart",
            "part 1 has more than 16 headers",
        );
    }

    #[test]
    fn part_without_blank_line_is_empty() {
        // RFC 2046 lets a part end right after its last header line, so the
        // first part's CRLF CRLF is a header line end and the delimiter's
        // line break. The second part has a blank line and empty data.
        let body = format!(
            "--{BOUNDARY}\r\n{}\r\n\r\n--{BOUNDARY}\r\n{}\r\n\r\n\r\n--{BOUNDARY}--",
            disposition("note"),
            disposition("image"),
        );
        let parts = parse(body.as_bytes(), BOUNDARY).unwrap();

        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "note");
        assert_eq!(parts[0].data, b"");
        assert_eq!(parts[1].name, "image");
        assert_eq!(parts[1].data, b"");
    }

    #[test]
    fn bad_content_disposition_rejected() {
        let cases: &[(&str, &str)] = &[
            ("Content-Type: image/png", "part 1 has no Content-Disposition header"),
            ("Content-Disposition: attachment; name=\"image\"", "the type is 'attachment', expected 'form-data'"),
            ("Content-Disposition: form-data", "the name parameter is missing"),
            ("Content-Disposition: form-data; filename=\"a.png\"", "the name parameter is missing"),
            ("Content-Disposition: form-data; name=\"image\"; NAME=\"other\"", "the parameter 'NAME' is given more than once"),
            ("Content-Disposition: form-data; name=\"image\"\r\ncontent-disposition: form-data; name=\"x\"", "part 1 has more than one content-disposition header"),
            ("Content-Disposition: form-data; name=\"image", "a quoted string has no closing quote"),
            ("Content-Disposition: form-data; name=", "the parameter 'name' has no value"),
            ("Content-Disposition: form-data; na me=x", "'na me' is not a valid parameter name"),
            ("Content-Disposition: form-data; name=\"image\"x", "unexpected 'x'"),
            ("Content-Disposition : form-data; name=\"image\"", "part 1 has an invalid header line"),
        ];
        for (headers, text) in cases {
            let body = build_body(&[(headers, b"data")]);
            assert_error(image_part(&body, BOUNDARY), "malformed_multipart", text);
        }
    }

    #[test]
    fn error_names_failing_part() {
        let body = build_body(&[
            (&disposition("a"), b"1"),
            (&disposition("image"), b"2"),
            ("X-Only: 1", b"3"),
        ]);
        assert_error(
            image_part(&body, BOUNDARY),
            "malformed_multipart",
            "part 3 has no Content-Disposition header",
        );
    }

    #[test]
    fn disposition_parameters_parse() {
        // Content-Disposition value, expected name, expected file name.
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("form-data; name=image", "image", None),
            ("FORM-DATA; NAME=\"image\"", "image", None),
            (
                "form-data;name=\"image\";filename=\"a.png\"",
                "image",
                Some("a.png"),
            ),
            (
                "form-data ; name = \"image\" ; filename = \"a.png\" ;",
                "image",
                Some("a.png"),
            ),
            (
                "form-data; filename=\"a.png\"; name=\"image\"",
                "image",
                Some("a.png"),
            ),
            (
                "form-data; name=\"image\"; filename=\"\"",
                "image",
                Some(""),
            ),
            (
                "form-data; name=\"image\"; filename=\"a \\\"quoted\\\" name.png\"",
                "image",
                Some("a \"quoted\" name.png"),
            ),
            (
                "form-data; name=\"image\"; filename=\"semi;colon=.png\"",
                "image",
                Some("semi;colon=.png"),
            ),
            (
                "form-data; name=\"image\"; filename=\"back\\\\slash.png\"",
                "image",
                Some("back\\slash.png"),
            ),
            (
                "form-data; name=\"image\"; filename=\"фото 📷.jpg\"",
                "image",
                Some("фото 📷.jpg"),
            ),
            (
                "form-data; name=\"image\"; filename=\"../../etc/passwd\"",
                "image",
                Some("../../etc/passwd"),
            ),
            (
                "form-data; name=\"image\"; filename=\"C:\\\\Windows\\\\win.ini\"",
                "image",
                Some("C:\\Windows\\win.ini"),
            ),
            // Browsers escape CR, LF and quotes in file names as %0D, %0A and
            // %22. The file name is not percent-decoded, so they stay escaped.
            (
                "form-data; name=\"image\"; filename=\"a%0D%0AContent-Type: text/html%22.png\"",
                "image",
                Some("a%0D%0AContent-Type: text/html%22.png"),
            ),
            (
                "form-data; name=\"image\"; filename=\"tab\there.png\"",
                "image",
                Some("tab\there.png"),
            ),
            ("form-data; name=\"a \\\"b\\\"\"", "a \"b\"", None),
        ];
        for (value, name, filename) in cases {
            let headers = format!("Content-Disposition: {value}");
            let body = build_body(&[(&headers, b"data")]);
            let parts = parse(&body, BOUNDARY).unwrap_or_else(|error| panic!("{value:?}: {error}"));
            assert_eq!(parts[0].name, *name, "{value:?}");
            assert_eq!(parts[0].filename.as_deref(), *filename, "{value:?}");
        }
    }

    #[test]
    fn header_injection_in_filename_rejected() {
        // A raw CR LF ends the header line inside the quoted file name.
        let headers = "Content-Disposition: form-data; name=\"image\"; filename=\"a.png\r\nContent-Type: text/html\"";
        let body = build_body(&[(headers, b"data")]);
        assert_error(
            image_part(&body, BOUNDARY),
            "malformed_multipart",
            "a quoted string has no closing quote",
        );

        // A second Content-Disposition cannot override the first.
        let headers = "Content-Disposition: form-data; name=\"other\"; filename=\"x\"\r\nContent-Disposition: form-data; name=\"image\"";
        let body = build_body(&[(headers, b"data")]);
        assert_error(
            image_part(&body, BOUNDARY),
            "malformed_multipart",
            "more than one Content-Disposition header",
        );
    }

    #[test]
    fn non_utf8_filename_read_lossily() {
        let mut headers =
            b"Content-Disposition: form-data; name=\"image\"; filename=\"caf\xe9.jpg\"".to_vec();
        headers.extend_from_slice(b"\r\n\r\ndata\r\n");
        let mut body = format!("--{BOUNDARY}\r\n").into_bytes();
        body.extend_from_slice(&headers);
        body.extend_from_slice(format!("--{BOUNDARY}--").as_bytes());

        let part = image_part(&body, BOUNDARY).unwrap();
        assert_eq!(part.name, "image");
        assert_eq!(part.filename.as_deref(), Some("caf\u{fffd}.jpg"));
        assert_eq!(part.data, b"data");
    }

    #[test]
    fn filename_star_decodes_rfc5987() {
        // Parameters after `form-data; name="image"; `, expected file name.
        let cases: &[(&str, Option<&str>)] = &[
            (
                "filename*=UTF-8''%E2%82%AC%20rates.jpg",
                Some("€ rates.jpg"),
            ),
            ("filename*=utf-8'en'photo.jpg", Some("photo.jpg")),
            ("filename*=ISO-8859-1''caf%E9.jpg", Some("café.jpg")),
            (
                "filename=\"fallback.jpg\"; filename*=UTF-8''%C3%A9t%C3%A9.jpg",
                Some("été.jpg"),
            ),
            (
                "filename*=UTF-8''%C3%A9t%C3%A9.jpg; filename=\"fallback.jpg\"",
                Some("été.jpg"),
            ),
            (
                "filename*=UTF-8''..%2F..%2Fetc%2Fpasswd",
                Some("../../etc/passwd"),
            ),
            ("filename*=UTF-8''a%0D%0Ab.jpg", Some("a\r\nb.jpg")),
            ("filename*=UTF-8''%FF.jpg", Some("\u{fffd}.jpg")),
            // Malformed or unknown encodings fall back to `filename`.
            (
                "filename=\"fallback.jpg\"; filename*=UTF-8''%ZZ",
                Some("fallback.jpg"),
            ),
            (
                "filename=\"fallback.jpg\"; filename*=KOI8-R''%C1",
                Some("fallback.jpg"),
            ),
            (
                "filename=\"fallback.jpg\"; filename*=no-quotes",
                Some("fallback.jpg"),
            ),
            ("filename*=UTF-8''%ZZ", None),
        ];
        for (parameters, filename) in cases {
            let headers = format!("Content-Disposition: form-data; name=\"image\"; {parameters}");
            let body = build_body(&[(&headers, b"data")]);
            let part = image_part(&body, BOUNDARY)
                .unwrap_or_else(|error| panic!("{parameters:?}: {error}"));
            assert_eq!(part.filename.as_deref(), *filename, "{parameters:?}");
        }
    }

    #[test]
    fn field_names_are_case_sensitive() {
        let body = build_body(&[
            (&disposition("Image"), b"data"),
            (&disposition("IMAGE"), b"data"),
        ]);
        assert_error(
            image_part(&body, BOUNDARY),
            "missing_image",
            "the form has no field named 'image' (fields found: 'Image', 'IMAGE')",
        );
    }

    #[test]
    fn missing_image_lists_some_fields() {
        let names: Vec<String> = (1..=7).map(|index| format!("f{index}")).collect();
        let parts: Vec<(String, &[u8])> = names
            .iter()
            .map(|name| (disposition(name), &b"x"[..]))
            .collect();
        let parts: Vec<(&str, &[u8])> = parts
            .iter()
            .map(|(headers, data)| (headers.as_str(), *data))
            .collect();
        let body = build_body(&parts);
        assert_error(
            image_part(&body, BOUNDARY),
            "missing_image",
            "(fields found: 'f1', 'f2', 'f3', 'f4', 'f5', …)",
        );

        // httparse rejects other control characters in header values.
        let body = build_body(&[(&disposition("tab\there"), b"x")]);
        assert_error(
            image_part(&body, BOUNDARY),
            "missing_image",
            r"fields found: 'tab\there'",
        );
    }

    #[test]
    fn image_part_ignores_other_fields() {
        let body = build_body(&[
            (&disposition("before"), b"1"),
            ("Content-Disposition: form-data; name=\"image\"; filename=\"x.gif\"\r\nContent-Type: image/gif", b"GIF89a"),
            (&disposition("after"), b""),
        ]);
        let part = image_part(&body, BOUNDARY).unwrap();

        assert_eq!(part.name, "image");
        assert_eq!(part.filename.as_deref(), Some("x.gif"));
        assert_eq!(part.content_type, Some("image/gif"));
        assert_eq!(part.data, b"GIF89a");
    }

    #[test]
    fn duplicate_image_field_rejected() {
        let body = build_body(&[
            (&disposition("image"), b"one"),
            (&disposition("image"), b"two"),
        ]);
        let error = image_part(&body, BOUNDARY).unwrap_err();
        assert_eq!(error.status(), 400);
        assert_eq!(error.code(), "malformed_multipart");
        assert!(
            error
                .message()
                .contains("more than one field named 'image'"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn empty_image_field_rejected() {
        let body = build_body(&[(
            "Content-Disposition: form-data; name=\"image\"; filename=\"\"",
            b"",
        )]);
        let error = image_part(&body, BOUNDARY).unwrap_err();
        assert_eq!(error.status(), 400);
        assert_eq!(
            error,
            ApiError::MissingImage("the 'image' field is empty".to_string())
        );
    }

    #[test]
    fn later_error_rejects_found_image() {
        // A valid image part followed by a broken part still fails, so a
        // truncated body is never half accepted.
        let mut body = image_body(b"pixels");
        body.truncate(body.len() - format!("--{BOUNDARY}--\r\n").len());
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nBroken\r\n\r\nx\r\n--{BOUNDARY}--").as_bytes(),
        );
        assert_error(
            image_part(&body, BOUNDARY),
            "malformed_multipart",
            "part 2 has an invalid header line",
        );
    }

    #[test]
    fn part_count_limit() {
        let names: Vec<String> = (0..=MAX_PARTS)
            .map(|index| disposition(&format!("f{index}")))
            .collect();
        let parts: Vec<(&str, &[u8])> = names
            .iter()
            .map(|headers| (headers.as_str(), &b"x"[..]))
            .collect();

        let body = build_body(&parts[..MAX_PARTS]);
        assert_eq!(parse(&body, BOUNDARY).unwrap().len(), MAX_PARTS);

        let body = build_body(&parts);
        assert_error(
            parse(&body, BOUNDARY),
            "malformed_multipart",
            "the body has more than 64 parts",
        );
    }

    #[test]
    fn transfer_encoding_other_than_binary_rejected() {
        for encoding in ["binary", "8bit", "7BIT"] {
            let headers = format!(
                "{}\r\nContent-Transfer-Encoding: {encoding}",
                disposition("image")
            );
            let body = build_body(&[(&headers, b"data")]);
            assert_eq!(
                image_part(&body, BOUNDARY).unwrap().data,
                b"data",
                "{encoding}"
            );
        }
        let headers = format!(
            "{}\r\nContent-Transfer-Encoding: base64",
            disposition("image")
        );
        let body = build_body(&[(&headers, b"ZGF0YQ==")]);
        assert_error(
            image_part(&body, BOUNDARY),
            "malformed_multipart",
            "part 1 uses Content-Transfer-Encoding 'base64', which is not supported",
        );
    }

    #[test]
    fn corpus_images_are_byte_identical() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
        let files = [
            "png/basn6a16_rgba16.png",
            "jpeg/baseline_testorig.jpg",
            "jpeg/progressive_peacock.jpg",
            "png/apng_ball_20frames.png",
        ];
        for file in files {
            let path = corpus.join(file);
            let image =
                std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            let headers = format!(
                "{}; filename=\"{file}\"\r\nContent-Type: application/octet-stream",
                disposition("image")
            );
            let body = build_body(&[(&disposition("w"), b"100"), (&headers, &image)]);
            let part = image_part(&body, BOUNDARY).unwrap();

            assert_eq!(part.filename.as_deref(), Some(file));
            assert_eq!(part.data.len(), image.len(), "{file}");
            assert!(part.data == image.as_slice(), "{file}: data differs");
            // The data is a slice of the body, not a copy.
            let body_range = body.as_ptr_range();
            assert!(
                body_range.contains(&part.data.as_ptr()),
                "{file}: data was copied"
            );
        }
    }

    #[test]
    fn random_bodies_round_trip() {
        let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let bare_lf = round % 3 == 0;
            let newline = if bare_lf { "\n" } else { "\r\n" };
            let count = 1 + random.below(6);
            let mut expected = Vec::new();
            let mut body = random.bytes_below(40);
            body.extend_from_slice(newline.as_bytes());

            for index in 0..count {
                let mut data = random.bytes_below(3000);
                // Plant boundary look-alikes that must stay data.
                if random.below(2) == 0 {
                    let at = random.below(data.len() + 1);
                    let look_alike = format!("x--{BOUNDARY}{newline}");
                    data.splice(at..at, look_alike.bytes());
                }
                if random.below(2) == 0 {
                    let at = random.below(data.len() + 1);
                    let look_alike = format!("{newline}--{BOUNDARY}x");
                    data.splice(at..at, look_alike.bytes());
                }
                let name = format!("field{index}");
                body.extend_from_slice(format!("--{BOUNDARY}{newline}Content-Disposition: form-data; name=\"{name}\"{newline}{newline}").as_bytes());
                body.extend_from_slice(&data);
                body.extend_from_slice(newline.as_bytes());
                expected.push((name, data));
            }
            body.extend_from_slice(format!("--{BOUNDARY}--{newline}").as_bytes());
            body.extend_from_slice(&random.bytes_below(40));

            let parts =
                parse(&body, BOUNDARY).unwrap_or_else(|error| panic!("round {round}: {error}"));
            assert_eq!(parts.len(), expected.len(), "round {round}");
            for (part, (name, data)) in parts.iter().zip(&expected) {
                assert_eq!(part.name, name.as_str(), "round {round}");
                assert!(
                    part.data == data.as_slice(),
                    "round {round}: {name} differs"
                );
            }
        }
    }

    #[test]
    fn ten_mib_body_with_look_alikes_parses() {
        // Random data with a delimiter look-alike every 4 KiB, alternating
        // between one that lacks the boundary's last character, which memmem
        // rejects, and the whole boundary followed by 'x', which the parser
        // must check and skip.
        let mut data = XorShift(42).bytes(10 * 1024 * 1024);
        let near_miss = format!("\r\n--{}", &BOUNDARY[..BOUNDARY.len() - 1]);
        let look_alike = format!("\r\n--{BOUNDARY}x");
        for (index, at) in (0..data.len() - look_alike.len()).step_by(4096).enumerate() {
            let planted = if index % 2 == 0 {
                &near_miss
            } else {
                &look_alike
            };
            data[at..at + planted.len()].copy_from_slice(planted.as_bytes());
        }
        let body = build_body(&[(&disposition("w"), b"1"), (&disposition("image"), &data)]);

        // Speed is measured by the criterion benchmark, not here.
        let part = image_part(&body, BOUNDARY).unwrap();
        assert!(part.data == data.as_slice());
    }
}
