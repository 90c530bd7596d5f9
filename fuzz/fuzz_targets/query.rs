//! Fuzzes the `/process` query parser.
//!
//! Accepted options must be within their documented ranges and survive a
//! round trip through a canonical query string. Rejections must be 400
//! `invalid_parameter` errors whose message has no control characters, so
//! echoing it into a log line or JSON cannot break either.

#![no_main]

use imgflux::options::{self, Fit, FormatRequest, Gravity, ProcessOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(query) = std::str::from_utf8(input) else {
        return;
    };
    match options::parse_query(query) {
        Ok(parsed) => {
            assert!((1..=100).contains(&parsed.quality), "{parsed:?}");
            assert_ne!(parsed.width, Some(0));
            assert_ne!(parsed.height, Some(0));
            if parsed.fit != Fit::Inside {
                assert!(
                    parsed.width.is_some() && parsed.height.is_some(),
                    "{parsed:?}"
                );
            }
            let canonical = canonical_query(&parsed);
            let reparsed = options::parse_query(&canonical);
            assert_eq!(reparsed.as_ref(), Ok(&parsed), "{query:?} -> {canonical:?}");
        }
        Err(error) => {
            assert_eq!(error.status(), 400, "{error:?}");
            assert_eq!(error.code(), "invalid_parameter");
            let message = error.message();
            assert!(
                !message.chars().any(char::is_control),
                "control character in {message:?}"
            );
        }
    }
});

/// Writes options as a query string that names every parameter that applies.
fn canonical_query(parsed: &ProcessOptions) -> String {
    let mut pairs = Vec::new();
    if let Some(width) = parsed.width {
        pairs.push(format!("w={width}"));
    }
    if let Some(height) = parsed.height {
        pairs.push(format!("h={height}"));
    }
    let fit = match parsed.fit {
        Fit::Inside => "inside",
        Fit::Cover => "cover",
        Fit::Fill => "fill",
        Fit::Contain => "contain",
    };
    pairs.push(format!("fit={fit}"));
    if parsed.fit == Fit::Cover {
        let gravity = match parsed.gravity {
            Gravity::Center => "center",
            Gravity::North => "north",
            Gravity::South => "south",
            Gravity::East => "east",
            Gravity::West => "west",
            Gravity::NorthEast => "northeast",
            Gravity::NorthWest => "northwest",
            Gravity::SouthEast => "southeast",
            Gravity::SouthWest => "southwest",
        };
        pairs.push(format!("gravity={gravity}"));
    }
    pairs.push(format!("enlarge={}", parsed.enlarge));
    let format = match parsed.format {
        FormatRequest::Png => "png",
        FormatRequest::Jpeg => "jpeg",
        FormatRequest::Webp => "webp",
        FormatRequest::Gif => "gif",
        FormatRequest::Auto => "auto",
    };
    pairs.push(format!("format={format}"));
    pairs.push(format!("q={}", parsed.quality));
    let bg = parsed.background;
    pairs.push(format!(
        "bg={:02x}{:02x}{:02x}{:02x}",
        bg.r, bg.g, bg.b, bg.a
    ));
    pairs.join("&")
}
