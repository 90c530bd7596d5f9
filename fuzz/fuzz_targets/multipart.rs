//! Fuzzes the multipart parser with a `Content-Type` value and a body.
//!
//! The input's first line is the `Content-Type` value and the rest is the
//! body. Besides finding panics, it checks that `parse` and `image_part`
//! agree, that every part's data is a slice of the body, and that every
//! error is a 400 or a 415.

#![no_main]

use imgflux::multipart::{self, Part, IMAGE_FIELD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let line_end = input.iter().position(|&byte| byte == b'\n');
    let (header, body) = match line_end {
        Some(end) => (&input[..end], &input[end + 1..]),
        None => (input, &[][..]),
    };
    let Ok(content_type) = std::str::from_utf8(header) else {
        return;
    };

    let boundary = match multipart::boundary(Some(content_type)) {
        Ok(boundary) => boundary,
        Err(error) => {
            assert!(
                matches!(error.status(), 400 | 415),
                "boundary error {error:?}"
            );
            return;
        }
    };

    let parsed = multipart::parse(body, boundary);
    let image = multipart::image_part(body, boundary);
    if let Ok(parts) = &parsed {
        for part in parts {
            assert_within(part, body);
        }
    }
    match (&parsed, &image) {
        (Ok(parts), Ok(image)) => {
            let images: Vec<&Part> = parts.iter().filter(|p| p.name == IMAGE_FIELD).collect();
            assert_eq!(
                images.len(),
                1,
                "image_part found one image, parse found more"
            );
            assert_eq!(images[0].data.as_ptr(), image.data.as_ptr());
            assert_eq!(images[0].data.len(), image.data.len());
            assert!(!image.data.is_empty(), "image_part returned an empty image");
        }
        (Ok(parts), Err(error)) => {
            let images: Vec<&Part> = parts.iter().filter(|p| p.name == IMAGE_FIELD).collect();
            match error.code() {
                "missing_image" => assert!(
                    images.is_empty() || (images.len() == 1 && images[0].data.is_empty()),
                    "missing_image with {} image parts",
                    images.len()
                ),
                "malformed_multipart" => assert!(
                    images.len() > 1,
                    "image_part rejected a body parse accepts: {error:?}"
                ),
                other => panic!("unexpected error code {other}"),
            }
        }
        (Err(error), Ok(_)) => panic!("image_part accepted a body parse rejects: {error:?}"),
        (Err(parse_error), Err(image_error)) => {
            assert_eq!(parse_error.status(), 400, "{parse_error:?}");
            assert_eq!(image_error.status(), 400, "{image_error:?}");
        }
    }
});

/// Checks that a part's data is a slice of the body and was not copied.
fn assert_within(part: &Part<'_>, body: &[u8]) {
    let range = body.as_ptr_range();
    let data = part.data.as_ptr_range();
    assert!(
        part.data.is_empty() || (range.start <= data.start && data.end <= range.end),
        "part {:?} data is not a slice of the body",
        part.name
    );
}
