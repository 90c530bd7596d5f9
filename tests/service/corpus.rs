//! Every file of the shared corpus sent through the running server: the
//! status, and for images the output format, dimensions and frame count,
//! as `tests/support/corpus.rs` pins them down for each manifest row.

use std::io::Cursor;

use image::{AnimationDecoder, GenericImageView};

use crate::support::compare::{mean_absolute_difference, rmse};
use crate::support::corpus::{
    expectations, read_corpus_file, Expected, ICC_CASES, ICC_REFERENCE, ORIENTATION_PHOTOS,
};
use crate::util::TestServer;

/// Returns the number of frames in a GIF or WebP reply, 1 for other formats.
fn frame_count(format: &str, bytes: &[u8]) -> u32 {
    match format {
        "gif" => image::codecs::gif::GifDecoder::new(Cursor::new(bytes))
            .unwrap()
            .into_frames()
            .count() as u32,
        "webp" => {
            let decoder = image::codecs::webp::WebPDecoder::new(Cursor::new(bytes)).unwrap();
            if decoder.has_animation() {
                decoder.into_frames().count() as u32
            } else {
                1
            }
        }
        _ => 1,
    }
}

#[test]
fn every_corpus_file_gets_its_expected_reply() {
    let server = TestServer::start(&[]);
    let mut failures = Vec::new();
    for case in expectations() {
        let input = case.read();
        let query = case.request.query();
        let reply = server.process(&query, &input);
        let outcome = match case.expected {
            Expected::Status(status) => {
                if reply.status == status {
                    Ok(())
                } else {
                    Err(format!("expected {status}, got {}", reply.describe()))
                }
            }
            Expected::Image {
                format,
                size,
                frames,
            } => check_image(&reply, format, size, frames),
        };
        if reply.status >= 500 {
            failures.push(format!("{}: 5xx: {}", case.path, reply.describe()));
        }
        if let Err(why) = outcome {
            failures.push(format!("{} ({query}): {why}", case.path));
        }
    }
    assert_eq!(server.get("/health").status, 200);
    assert!(
        failures.is_empty(),
        "{} corpus rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn check_image(
    reply: &crate::util::Response,
    format: &str,
    size: (u32, u32),
    frames: u32,
) -> Result<(), String> {
    if reply.status != 200 {
        return Err(format!(
            "expected a {format} image, got {}",
            reply.describe()
        ));
    }
    let expected_type = format!("image/{format}");
    if reply.header("content-type") != Some(expected_type.as_str()) {
        return Err(format!(
            "content type {:?}, expected {expected_type}",
            reply.header("content-type")
        ));
    }
    let image =
        image::load_from_memory(&reply.body).map_err(|e| format!("reply does not decode: {e}"))?;
    if image.dimensions() != size {
        return Err(format!("size {:?}, expected {size:?}", image.dimensions()));
    }
    let got_frames = frame_count(format, &reply.body);
    if got_frames != frames {
        return Err(format!("{got_frames} frames, expected {frames}"));
    }
    Ok(())
}

#[test]
fn bombs_are_rejected_quickly_and_service_stays_small() {
    let server = TestServer::start(&[]);
    for case in expectations()
        .iter()
        .filter(|c| c.path.starts_with("bombs/"))
    {
        let reply = server.process(&case.request.query(), &case.read());
        assert_eq!(reply.status, 422, "{}: {}", case.path, reply.describe());
    }
    // The bombs declare up to 40 GB of pixels; the process must not have
    // allocated them. 300 MB is far above a normal footprint and far below
    // any bomb.
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("no VmHWM in /proc status");
    assert!(peak_kb < 300 * 1024, "peak resident memory {peak_kb} kB");
}

fn decode_png(reply: &crate::util::Response) -> image::DynamicImage {
    assert_eq!(
        reply.header("content-type"),
        Some("image/png"),
        "{}",
        reply.describe()
    );
    image::load_from_memory(&reply.body).unwrap()
}

#[test]
fn exif_orientations_come_out_upright() {
    let server = TestServer::start(&[]);
    let upright = decode_png(&server.process("w=600", &read_corpus_file(ORIENTATION_PHOTOS[0])));
    let wrong = mean_absolute_difference(&upright, &upright.rotate180());
    for path in &ORIENTATION_PHOTOS[1..] {
        let oriented = decode_png(&server.process("w=600", &read_corpus_file(path)));
        assert_eq!(oriented.dimensions(), (600, 400), "{path}");
        // The eight files differ only in the painted digit and JPEG noise.
        let difference = mean_absolute_difference(&upright, &oriented);
        assert!(difference < 6.0, "{path}: mean difference {difference:.2}");
        assert!(
            difference * 4.0 < wrong,
            "{path}: {difference:.2} vs {wrong:.2}"
        );
    }
}

#[test]
fn embedded_profiles_are_converted_to_srgb() {
    let server = TestServer::start(&[]);
    let reference = image::load_from_memory(&read_corpus_file(ICC_REFERENCE)).unwrap();
    for (path, limit) in ICC_CASES {
        let output = decode_png(&server.process("", &read_corpus_file(path)));
        let error = rmse(&reference, &output);
        assert!(error < limit, "{path}: RMSE {:.2} %", error * 100.0);
    }
}
