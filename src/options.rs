//! What a client asks of one `/process` request, parsed from the query string.
//!
//! Every parameter is optional and validated here, before the body is read:
//! unknown names, repeated names and out-of-range values are rejected with a
//! 400 that names the parameter and the allowed values, because silently
//! ignoring a misspelt `widht=` returns a wrong image that looks right.

use std::borrow::Cow;

use crate::error::ApiError;

/// The parameters `/process` accepts, in the order the README lists them.
pub const PARAMETER_NAMES: &[&str] = &["w", "h", "fit", "gravity", "enlarge", "format", "q", "bg"];

/// How the image is fitted to the `w`×`h` box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    /// Scale to fit inside the box, keeping the aspect ratio.
    #[default]
    Inside,
    /// Scale to cover the box, keeping the aspect ratio, and crop the overflow.
    Cover,
    /// Stretch to exactly the box.
    Fill,
    /// Scale to fit inside the box, then pad to exactly the box with `bg`.
    Contain,
}

/// Which part of the image `fit=cover` keeps when it crops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gravity {
    #[default]
    Center,
    North,
    South,
    East,
    West,
    NorthEast,
    NorthWest,
    SouthEast,
    SouthWest,
}

/// The output format a client requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatRequest {
    #[default]
    Png,
    Jpeg,
    Webp,
    Gif,
    /// The input's own format where it can be written, else PNG.
    Auto,
}

/// An sRGB colour with straight (not premultiplied) alpha.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgba {
    pub r: u8,
    pub g: u8,
    pub b: u8,
    pub a: u8,
}

impl Rgba {
    pub const WHITE: Rgba = Rgba {
        r: 255,
        g: 255,
        b: 255,
        a: 255,
    };
}

/// The validated parameters of one `/process` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessOptions {
    /// Target width in pixels (`w`); `None` follows the aspect ratio.
    pub width: Option<u32>,
    /// Target height in pixels (`h`); `None` follows the aspect ratio.
    pub height: Option<u32>,
    /// How the image is fitted to the box (`fit`, default `inside`).
    pub fit: Fit,
    /// Which part `fit=cover` keeps (`gravity`, default `center`).
    pub gravity: Gravity,
    /// Whether a smaller image is scaled up to the box (`enlarge`, default true).
    pub enlarge: bool,
    /// Output format (`format`, default `png`).
    pub format: FormatRequest,
    /// JPEG and lossy WebP quality, 1 to 100 (`q`, default 80).
    pub quality: u8,
    /// Colour for padding and for flattening alpha (`bg`, default white).
    pub background: Rgba,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions {
            width: None,
            height: None,
            fit: Fit::Inside,
            gravity: Gravity::Center,
            enlarge: true,
            format: FormatRequest::Png,
            quality: 80,
            background: Rgba::WHITE,
        }
    }
}

/// The largest `w` or `h` the parser accepts. The pipeline applies the real
/// output limits later.
const MAX_DIMENSION: u32 = u32::MAX;

/// Maximum number of characters of a client's value echoed in an error message.
const MAX_ECHOED_CHARS: usize = 32;

const FIT_VALUES: &[(&str, Fit)] = &[
    ("inside", Fit::Inside),
    ("cover", Fit::Cover),
    ("fill", Fit::Fill),
    ("contain", Fit::Contain),
];

const GRAVITY_VALUES: &[(&str, Gravity)] = &[
    ("center", Gravity::Center),
    ("centre", Gravity::Center),
    ("north", Gravity::North),
    ("south", Gravity::South),
    ("east", Gravity::East),
    ("west", Gravity::West),
    ("northeast", Gravity::NorthEast),
    ("northwest", Gravity::NorthWest),
    ("southeast", Gravity::SouthEast),
    ("southwest", Gravity::SouthWest),
];

const ENLARGE_VALUES: &[(&str, bool)] =
    &[("true", true), ("false", false), ("1", true), ("0", false)];

const FORMAT_VALUES: &[(&str, FormatRequest)] = &[
    ("png", FormatRequest::Png),
    ("jpeg", FormatRequest::Jpeg),
    ("jpg", FormatRequest::Jpeg),
    ("webp", FormatRequest::Webp),
    ("gif", FormatRequest::Gif),
    ("auto", FormatRequest::Auto),
];

/// Parses the query string of a `/process` request, without the leading `?`.
///
/// Names and values are percent-decoded, but `+` is not turned into a space,
/// and no parameter accepts a space or a `+`. Names are case-sensitive.
/// Keyword values (`fit=Cover`) and hex digits are not. Empty pairs, as in
/// `w=1&&h=2`, are skipped. Every error is an [`ApiError::InvalidParameter`]
/// that names the parameter.
pub fn parse_query(query: &str) -> Result<ProcessOptions, ApiError> {
    let raw = RawQuery::split(query)?;
    let mut options = ProcessOptions::default();

    if let Some(value) = raw.get("w") {
        options.width = Some(parse_dimension("w", value)?);
    }
    if let Some(value) = raw.get("h") {
        options.height = Some(parse_dimension("h", value)?);
    }
    if let Some(value) = raw.get("fit") {
        options.fit = parse_keyword("fit", value, FIT_VALUES)?;
    }
    if let Some(value) = raw.get("gravity") {
        options.gravity = parse_keyword("gravity", value, GRAVITY_VALUES)?;
    }
    if let Some(value) = raw.get("enlarge") {
        options.enlarge = parse_keyword("enlarge", value, ENLARGE_VALUES)?;
    }
    if let Some(value) = raw.get("format") {
        options.format = parse_keyword("format", value, FORMAT_VALUES)?;
    }
    if let Some(value) = raw.get("q") {
        options.quality = parse_quality(value)?;
    }
    if let Some(value) = raw.get("bg") {
        options.background = parse_color(value)?;
    }

    check_combination(&options, raw.get("gravity").is_some())?;
    Ok(options)
}

/// The percent-decoded value of each known parameter, indexed like
/// [`PARAMETER_NAMES`].
struct RawQuery<'q> {
    values: [Option<Cow<'q, str>>; PARAMETER_NAMES.len()],
}

impl<'q> RawQuery<'q> {
    /// Splits `query` into its pairs, rejecting unknown and repeated names.
    fn split(query: &'q str) -> Result<Self, ApiError> {
        let mut raw = RawQuery {
            values: Default::default(),
        };
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode_name(raw_name)?;
            let Some(index) = PARAMETER_NAMES.iter().position(|known| *known == name) else {
                return Err(unknown_parameter(&name));
            };
            let name = PARAMETER_NAMES[index];
            if raw.values[index].is_some() {
                return Err(invalid(
                    name,
                    "the parameter is given more than once; send it once",
                ));
            }
            let value = percent_decode_str(raw_value).map_err(|why| invalid(name, &why))?;
            raw.values[index] = Some(value);
        }
        Ok(raw)
    }

    fn get(&self, name: &str) -> Option<&str> {
        let index = PARAMETER_NAMES.iter().position(|known| *known == name)?;
        self.values[index].as_deref()
    }
}

fn decode_name(raw_name: &str) -> Result<Cow<'_, str>, ApiError> {
    percent_decode_str(raw_name).map_err(|why| ApiError::InvalidParameter {
        name: escape_for_message(raw_name),
        message: format!("{why} in the parameter name"),
    })
}

fn unknown_parameter(name: &str) -> ApiError {
    ApiError::InvalidParameter {
        name: escape_for_message(name),
        message: format!(
            "unknown parameter; allowed parameters: {}",
            PARAMETER_NAMES.join(", ")
        ),
    }
}

fn invalid(name: &str, message: &str) -> ApiError {
    ApiError::InvalidParameter {
        name: name.to_string(),
        message: message.to_string(),
    }
}

/// Builds the error for a value that is not `expected`, such as "an integer
/// from 1 to 100", echoing the value in a printable form.
fn invalid_value(name: &str, value: &str, expected: &str) -> ApiError {
    let message = if value.is_empty() {
        format!("the value is empty; expected {expected}")
    } else {
        format!("'{}' is not {expected}", escape_for_message(value))
    };
    invalid(name, &message)
}

/// Parses a decimal integer from `min` to `max` written with ASCII digits
/// only, so that a sign, spaces or a fraction are rejected rather than
/// trimmed.
fn parse_integer(value: &str, min: u32, max: u32) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let number = value.parse::<u32>().ok()?;
    (min..=max).contains(&number).then_some(number)
}

fn parse_dimension(name: &str, value: &str) -> Result<u32, ApiError> {
    parse_integer(value, 1, MAX_DIMENSION).ok_or_else(|| {
        // The configured maximum is checked with the image, in `fit`.
        let expected = "a positive integer no larger than max_output_side (8192 by default)";
        invalid_value(name, value, expected)
    })
}

fn parse_quality(value: &str) -> Result<u8, ApiError> {
    match parse_integer(value, 1, 100) {
        Some(quality) => Ok(quality as u8),
        None => Err(invalid_value("q", value, "an integer from 1 to 100")),
    }
}

/// Looks `value` up, ignoring ASCII case, in a table of keywords.
fn parse_keyword<T: Copy>(name: &str, value: &str, table: &[(&str, T)]) -> Result<T, ApiError> {
    let found = table
        .iter()
        .find(|(keyword, _)| keyword.eq_ignore_ascii_case(value));
    match found {
        Some((_, parsed)) => Ok(*parsed),
        None => {
            let keywords: Vec<&str> = table.iter().map(|(keyword, _)| *keyword).collect();
            let expected = format!("one of {}", keywords.join(", "));
            Err(invalid_value(name, value, &expected))
        }
    }
}

/// Parses `RGB`, `RGBA`, `RRGGBB` or `RRGGBBAA` in hex, with an optional
/// leading `#` (sent as `%23`). A colour without alpha is opaque.
fn parse_color(value: &str) -> Result<Rgba, ApiError> {
    let invalid_color = || {
        let expected = "a hex colour RGB, RGBA, RRGGBB or RRGGBBAA, optionally after %23 (#)";
        invalid_value("bg", value, expected)
    };
    let hex = value.strip_prefix('#').unwrap_or(value);
    let digits: Vec<u8> = hex
        .bytes()
        .map(hex_digit)
        .collect::<Option<_>>()
        .ok_or_else(invalid_color)?;

    // Short forms repeat each digit, so `f80` means `ff8800`.
    let channels: Vec<u8> = match digits.len() {
        3 | 4 => digits.iter().map(|digit| digit * 17).collect(),
        6 | 8 => digits
            .chunks(2)
            .map(|pair| pair[0] * 16 + pair[1])
            .collect(),
        _ => return Err(invalid_color()),
    };
    Ok(Rgba {
        r: channels[0],
        g: channels[1],
        b: channels[2],
        a: channels.get(3).copied().unwrap_or(255),
    })
}

/// Rejects parameters that the chosen `fit` would silently ignore.
fn check_combination(options: &ProcessOptions, gravity_given: bool) -> Result<(), ApiError> {
    let fit_name = FIT_VALUES
        .iter()
        .find(|(_, fit)| *fit == options.fit)
        .map_or("inside", |(keyword, _)| keyword);

    if options.fit != Fit::Inside {
        let missing = match (options.width, options.height) {
            (None, None) => Some("w and h are missing"),
            (None, Some(_)) => Some("w is missing"),
            (Some(_), None) => Some("h is missing"),
            (Some(_), Some(_)) => None,
        };
        if let Some(missing) = missing {
            let message = format!("fit={fit_name} needs both w and h, but {missing}");
            return Err(invalid("fit", &message));
        }
    }

    if gravity_given && options.fit != Fit::Cover {
        let message = format!("gravity applies only to fit=cover, but fit is {fit_name}");
        return Err(invalid("gravity", &message));
    }
    Ok(())
}

/// Returns the value of an ASCII hex digit, in either case.
fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes the `%XX` escapes of `input`, leaving every other byte as it is.
///
/// A `%` that is not followed by two hex digits is an error, and the message
/// quotes the bad escape.
pub(crate) fn percent_decode(input: &str) -> Result<Cow<'_, [u8]>, String> {
    if !input.contains('%') {
        return Ok(Cow::Borrowed(input.as_bytes()));
    }
    let bytes = input.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'%' {
            decoded.push(bytes[index]);
            index += 1;
            continue;
        }
        let high = bytes.get(index + 1).copied().and_then(hex_digit);
        let low = bytes.get(index + 2).copied().and_then(hex_digit);
        let (Some(high), Some(low)) = (high, low) else {
            let escape: String = input[index..].chars().take(3).collect();
            return Err(format!(
                "invalid percent-encoding '{}'",
                escape_for_message(&escape)
            ));
        };
        decoded.push(high * 16 + low);
        index += 3;
    }
    Ok(Cow::Owned(decoded))
}

/// Percent-decodes `input` and requires the result to be UTF-8.
fn percent_decode_str(input: &str) -> Result<Cow<'_, str>, String> {
    match percent_decode(input)? {
        Cow::Borrowed(_) => Ok(Cow::Borrowed(input)),
        Cow::Owned(bytes) => String::from_utf8(bytes)
            .map(Cow::Owned)
            .map_err(|_| "the value is not valid UTF-8 after percent-decoding".to_string()),
    }
}

/// Escapes and shortens a client-supplied `value` for echoing in an error
/// message.
///
/// The result has at most 32 characters, then `…` if the value was longer.
/// Control characters such as CR, LF and ESC are written as Rust escapes
/// (`\r`, `\u{1b}`), so an echoed value cannot break a log line or a
/// terminal.
pub(crate) fn escape_for_message(value: &str) -> String {
    let mut escaped = String::new();
    for c in value.chars().take(MAX_ECHOED_CHARS) {
        if c.is_control() {
            escaped.extend(c.escape_debug());
        } else {
            escaped.push(c);
        }
    }
    if value.chars().nth(MAX_ECHOED_CHARS).is_some() {
        escaped.push('…');
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(edit: impl FnOnce(&mut ProcessOptions)) -> ProcessOptions {
        let mut options = ProcessOptions::default();
        edit(&mut options);
        options
    }

    /// Returns the parameter name and message of a rejected query.
    fn rejection(query: &str) -> (String, String) {
        match parse_query(query) {
            Err(ApiError::InvalidParameter { name, message }) => (name, message),
            other => panic!("query {query:?}: expected InvalidParameter, got {other:?}"),
        }
    }

    #[test]
    fn query_good_cases() {
        let rgba = |r, g, b, a| Rgba { r, g, b, a };
        let cases: Vec<(&str, ProcessOptions)> = vec![
            ("", ProcessOptions::default()),
            ("&&", ProcessOptions::default()),
            ("w=100", options(|o| o.width = Some(100))),
            ("h=1", options(|o| o.height = Some(1))),
            ("w=4294967295", options(|o| o.width = Some(u32::MAX))),
            ("w=007", options(|o| o.width = Some(7))),
            (
                "w=10&&h=20&",
                options(|o| {
                    o.width = Some(10);
                    o.height = Some(20);
                }),
            ),
            ("%77=5", options(|o| o.width = Some(5))),
            ("w=%31%32", options(|o| o.width = Some(12))),
            (
                "w=1&h=2&fit=cover&gravity=northwest",
                options(|o| {
                    o.width = Some(1);
                    o.height = Some(2);
                    o.fit = Fit::Cover;
                    o.gravity = Gravity::NorthWest;
                }),
            ),
            (
                "fit=COVER&w=3&h=4&gravity=Centre",
                options(|o| {
                    o.width = Some(3);
                    o.height = Some(4);
                    o.fit = Fit::Cover;
                    o.gravity = Gravity::Center;
                }),
            ),
            (
                "fit=fill&w=3&h=4",
                options(|o| {
                    o.width = Some(3);
                    o.height = Some(4);
                    o.fit = Fit::Fill;
                }),
            ),
            (
                "fit=contain&w=3&h=4",
                options(|o| {
                    o.width = Some(3);
                    o.height = Some(4);
                    o.fit = Fit::Contain;
                }),
            ),
            ("fit=inside", ProcessOptions::default()),
            ("enlarge=false", options(|o| o.enlarge = false)),
            ("enlarge=0", options(|o| o.enlarge = false)),
            ("enlarge=1", ProcessOptions::default()),
            ("enlarge=TRUE", ProcessOptions::default()),
            ("format=jpg", options(|o| o.format = FormatRequest::Jpeg)),
            ("format=jpeg", options(|o| o.format = FormatRequest::Jpeg)),
            ("format=webp", options(|o| o.format = FormatRequest::Webp)),
            ("format=gif", options(|o| o.format = FormatRequest::Gif)),
            ("format=auto", options(|o| o.format = FormatRequest::Auto)),
            ("format=png", ProcessOptions::default()),
            ("q=1", options(|o| o.quality = 1)),
            ("q=100", options(|o| o.quality = 100)),
            ("bg=000", options(|o| o.background = rgba(0, 0, 0, 255))),
            ("bg=f80", options(|o| o.background = rgba(255, 136, 0, 255))),
            (
                "bg=f808",
                options(|o| o.background = rgba(255, 136, 0, 136)),
            ),
            (
                "bg=%23102030",
                options(|o| o.background = rgba(16, 32, 48, 255)),
            ),
            (
                "bg=AbCdEf80",
                options(|o| o.background = rgba(171, 205, 239, 128)),
            ),
            (
                "bg=%2300000000",
                options(|o| o.background = rgba(0, 0, 0, 0)),
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(parse_query(query), Ok(expected), "query {query:?}");
        }
    }

    #[test]
    fn query_bad_cases() {
        // Each case: query, parameter named in the error, text the message contains.
        let cases: &[(&str, &str, &str)] = &[
            ("w=0", "w", "'0' is not a positive integer"),
            ("w=-5", "w", "'-5' is not a positive integer"),
            ("w=+5", "w", "'+5' is not a positive integer"),
            ("w=%2B5", "w", "'+5' is not a positive integer"),
            ("w= 5", "w", "' 5' is not a positive integer"),
            ("w=5.0", "w", "'5.0' is not a positive integer"),
            ("w=abc", "w", "'abc' is not a positive integer"),
            (
                "w=4294967296",
                "w",
                "'4294967296' is not a positive integer",
            ),
            ("w=", "w", "the value is empty; expected a positive integer"),
            ("w", "w", "the value is empty"),
            ("h=0x10", "h", "'0x10' is not a positive integer"),
            ("q=0", "q", "'0' is not an integer from 1 to 100"),
            ("q=101", "q", "'101' is not an integer from 1 to 100"),
            ("q=", "q", "the value is empty"),
            (
                "fit=stretch",
                "fit",
                "'stretch' is not one of inside, cover, fill, contain",
            ),
            (
                "enlarge=yes",
                "enlarge",
                "'yes' is not one of true, false, 1, 0",
            ),
            (
                "format=tiff",
                "format",
                "'tiff' is not one of png, jpeg, jpg, webp, gif, auto",
            ),
            (
                "w=1&h=1&fit=cover&gravity=n",
                "gravity",
                "'n' is not one of center, centre",
            ),
            ("bg=ff", "bg", "'ff' is not a hex colour"),
            ("bg=fffff", "bg", "'fffff' is not a hex colour"),
            ("bg=gggggg", "bg", "'gggggg' is not a hex colour"),
            ("bg=%23", "bg", "'#' is not a hex colour"),
            ("bg=##fff", "bg", "'##fff' is not a hex colour"),
            ("bg=%2", "bg", "invalid percent-encoding '%2'"),
            ("bg=%zz0", "bg", "invalid percent-encoding '%zz'"),
            ("bg=%ff", "bg", "not valid UTF-8"),
            (
                "widht=100",
                "widht",
                "unknown parameter; allowed parameters: w, h, fit, gravity, enlarge, format, q, bg",
            ),
            ("W=100", "W", "unknown parameter"),
            ("=100", "", "unknown parameter"),
            (
                "%7x=1",
                "%7x",
                "invalid percent-encoding '%7x' in the parameter name",
            ),
            ("w=1&w=1", "w", "given more than once"),
            ("w=1&%77=2", "w", "given more than once"),
            (
                "fit=cover&w=10",
                "fit",
                "fit=cover needs both w and h, but h is missing",
            ),
            (
                "fit=fill&h=10",
                "fit",
                "fit=fill needs both w and h, but w is missing",
            ),
            (
                "fit=contain",
                "fit",
                "fit=contain needs both w and h, but w and h are missing",
            ),
            (
                "gravity=north",
                "gravity",
                "gravity applies only to fit=cover, but fit is inside",
            ),
            (
                "w=1&h=1&fit=fill&gravity=north",
                "gravity",
                "but fit is fill",
            ),
        ];
        for (query, expected_name, expected_text) in cases {
            let (name, message) = rejection(query);
            assert_eq!(name, *expected_name, "query {query:?}: {message}");
            assert!(
                message.contains(expected_text),
                "query {query:?}: message {message:?} lacks {expected_text:?}"
            );
        }
    }

    #[test]
    fn query_errors_are_400() {
        let error = parse_query("w=0").unwrap_err();
        assert_eq!(error.status(), 400);
        assert_eq!(error.code(), "invalid_parameter");
        assert_eq!(
            error.message(),
            "invalid query parameter 'w': '0' is not a positive integer no larger than \
             max_output_side (8192 by default)"
        );
    }

    #[test]
    fn query_echo_is_sanitized() {
        let (name, message) = rejection("fit=%1B%5B31mred%0D%0Aforged%20line");
        assert_eq!(name, "fit");
        assert!(
            message.contains(r"'\u{1b}[31mred\r\nforged line'"),
            "{message}"
        );
        assert!(!message.chars().any(char::is_control), "{message:?}");

        let (name, _) = rejection("%0Aname=1");
        assert_eq!(name, r"\nname");
    }

    #[test]
    fn query_echo_is_truncated() {
        let long = "x".repeat(1000);
        let (name, message) = rejection(&format!("{long}=1"));
        assert_eq!(name, format!("{}…", "x".repeat(32)));

        let (_, message_for_value) = rejection(&format!("w={long}"));
        assert!(message_for_value.contains(&format!("'{}…'", "x".repeat(32))));
        assert!(message_for_value.len() < 120, "{message_for_value}");
        assert!(message.len() < 120, "{message}");
    }

    #[test]
    fn escape_keeps_unicode() {
        assert_eq!(escape_for_message("café ☕"), "café ☕");
        assert_eq!(escape_for_message("a\tb\u{7f}"), r"a\tb\u{7f}");
        assert_eq!(
            escape_for_message(&"é".repeat(33)),
            format!("{}…", "é".repeat(32))
        );
        assert_eq!(escape_for_message(&"é".repeat(32)), "é".repeat(32));
    }

    #[test]
    fn percent_decode_cases() {
        assert_eq!(percent_decode("plain").unwrap(), &b"plain"[..]);
        assert_eq!(percent_decode("a%20b%2fc").unwrap(), &b"a b/c"[..]);
        assert_eq!(percent_decode("%E2%82%AC").unwrap(), "€".as_bytes());
        assert_eq!(percent_decode("%00").unwrap(), &[0u8][..]);
        assert_eq!(percent_decode("+").unwrap(), &b"+"[..]);
        assert!(percent_decode("%").is_err());
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%g0").is_err());
        assert!(percent_decode("%%41").is_err());
        assert_eq!(
            percent_decode("x%é").unwrap_err(),
            "invalid percent-encoding '%é'"
        );
    }
}
