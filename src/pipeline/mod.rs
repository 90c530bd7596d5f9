//! The image pipeline: decode, orient, transform, encode, all in memory.
//!
//! NOTE: this first version decodes with `image`, resizes with `image`'s own
//! filter and always writes PNG. It keeps the interface the server depends on
//! while the real stages are built behind it.

use std::io::Cursor;
use std::time::{Duration, Instant};

use crate::error::ApiError;
use crate::options::ProcessOptions;

/// Limits that bound the work and memory of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum input pixels, width × height × frames.
    pub max_input_pixels: u64,
    /// Maximum width or height of the output, in pixels.
    pub max_output_side: u32,
    /// Maximum output pixels, width × height.
    pub max_output_pixels: u64,
    /// Maximum number of animation frames decoded.
    pub max_frames: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_pixels: 50_000_000,
            max_output_side: 8192,
            max_output_pixels: 50_000_000,
            max_frames: 100,
        }
    }
}

/// One image to process and everything that shapes the result.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    pub options: &'a ProcessOptions,
    pub limits: &'a Limits,
    /// Whether the client's `Accept` header lists `image/webp`.
    pub accept_webp: bool,
    /// When the request must be finished; checked between stages.
    pub deadline: Option<Instant>,
}

/// A format ImgFlux writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Png,
    Jpeg,
    Webp,
    Gif,
}

impl OutputFormat {
    /// Returns the media type for the `Content-Type` header.
    pub fn mime(self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
            OutputFormat::Gif => "image/gif",
        }
    }
}

/// Time spent in each stage of the pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    pub decode: Duration,
    pub transform: Duration,
    pub encode: Duration,
}

/// The encoded result and the facts the log and headers report.
#[derive(Debug, Clone)]
pub struct Output {
    pub bytes: Vec<u8>,
    pub format: OutputFormat,
    /// Short name of the detected input format, such as `jpeg`.
    pub input_format: &'static str,
    /// Input width and height as stored, before orientation.
    pub input_size: (u32, u32),
    pub output_size: (u32, u32),
    /// Frames written: 1 unless an animation was kept.
    pub frames: u32,
    /// Whether the reply depends on the `Accept` header (`Vary: Accept`).
    pub varies_on_accept: bool,
    pub timings: Timings,
}

/// Decodes, transforms and encodes one image.
pub fn process(input: &[u8], job: &Job<'_>) -> Result<Output, ApiError> {
    let started = Instant::now();
    let reader = image::ImageReader::new(Cursor::new(input))
        .with_guessed_format()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if reader.format().is_none() {
        return Err(ApiError::UnsupportedImageFormat { detected: None });
    }
    let image = reader
        .decode()
        .map_err(|e| ApiError::UndecodableImage(e.to_string()))?;
    let decoded = Instant::now();

    let (width, height) = (image.width(), image.height());
    let target = match (job.options.width, job.options.height) {
        (None, None) => (width, height),
        (Some(w), None) => (w, (height as u64 * w as u64 / width as u64).max(1) as u32),
        (None, Some(h)) => ((width as u64 * h as u64 / height as u64).max(1) as u32, h),
        (Some(w), Some(h)) => {
            let scale = f64::min(w as f64 / width as f64, h as f64 / height as f64);
            (
                ((width as f64 * scale).round() as u32).max(1),
                ((height as f64 * scale).round() as u32).max(1),
            )
        }
    };
    let resized = image.resize_exact(target.0, target.1, image::imageops::FilterType::Lanczos3);
    let transformed = Instant::now();

    let mut bytes = Vec::new();
    resized
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let encoded = Instant::now();

    Ok(Output {
        bytes,
        format: OutputFormat::Png,
        input_format: "unknown",
        input_size: (width, height),
        output_size: target,
        frames: 1,
        varies_on_accept: false,
        timings: Timings {
            decode: decoded - started,
            transform: transformed - decoded,
            encode: encoded - transformed,
        },
    })
}
