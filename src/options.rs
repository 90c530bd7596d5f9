//! What a client asks of one `/process` request, parsed from the query string.
//!
//! Every parameter is optional and validated here, before the body is read:
//! unknown names, repeated names and out-of-range values are rejected with a
//! 400 that names the parameter and the allowed values, because silently
//! ignoring a misspelt `widht=` returns a wrong image that looks right.

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

/// Placeholder parser, replaced by the one on the `multipart` branch.
pub fn parse_query(query: &str) -> Result<ProcessOptions, ApiError> {
    let mut options = ProcessOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let invalid = || ApiError::InvalidParameter {
            name: name.to_string(),
            message: "invalid".into(),
        };
        match name {
            "w" => options.width = Some(value.parse().map_err(|_| invalid())?),
            "h" => options.height = Some(value.parse().map_err(|_| invalid())?),
            _ => return Err(invalid()),
        }
    }
    Ok(options)
}
