//! The image pipeline: decode, orient, transform, encode, all in memory.
//!
//! [`process`] runs an ordered list of small stages over one [`Context`],
//! one file per stage, and checks the request deadline between stages. The
//! stages that can run for seconds on a large image also check it inside:
//! the JPEG decoder and the JPEG and PNG encoders every few hundred
//! thousand pixels, libwebp through its progress hook, and animations
//! before each frame. The
//! cheap checks come first: the format is sniffed from the magic bytes, and
//! the header is probed against the pixel and frame limits before any pixel
//! buffer is allocated. Pixels are decoded once and resized at the input's
//! own bit depth (8-bit inputs stay 8-bit). A JPEG is decoded at 1/8 to 4/8
//! of its size when the output is that much smaller. A stage with nothing
//! to do (no profile, no rotation, the target equal to the source) returns
//! at once. Large buffers are reused between requests through [`Scratch`].
//!
//! Outputs are sRGB, upright, and carry no metadata: no EXIF, XMP, comments
//! or ICC profile. Untagged images are shown as sRGB by browsers, so tagging
//! sRGB would only add bytes.

mod animation;
mod canvas;
mod color;
mod decode;
mod encode;
mod fit;
mod format;
mod jpeg;
mod orient;
mod resize;
mod scratch;
mod sniff;
mod webp;

use std::time::{Duration, Instant};

use image::metadata::Orientation;
use image::DynamicImage;

use crate::error::ApiError;
use crate::options::ProcessOptions;

pub use scratch::Scratch;
pub use sniff::InputFormat;

/// Limits that bound the work and memory of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum input pixels, width × height × frames.
    pub max_input_pixels: u64,
    /// Maximum width or height of the output, in pixels.
    pub max_output_side: u32,
    /// Maximum output pixels, width × height × frames kept.
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
    /// Time by which the request must be finished, checked between stages
    /// and inside the long-running ones.
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

    /// Returns whether the format stores an alpha channel (GIF stores
    /// one transparent palette entry, which counts).
    pub fn has_alpha(self) -> bool {
        !matches!(self, OutputFormat::Jpeg)
    }
}

/// Time spent in each stage of the pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Sniffing, probing the header and decoding the pixels.
    pub decode: Duration,
    /// Colour conversion, resizing, orientation, padding and flattening.
    pub transform: Duration,
    pub encode: Duration,
    /// Time of each stage, by name, in pipeline order.
    pub stages: [(&'static str, Duration); STAGE_COUNT],
}

/// Number of stages in [`process`]'s pipeline.
pub const STAGE_COUNT: usize = 11;

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

/// One decoded frame; a still image is a single frame.
struct Frame {
    image: DynamicImage,
    /// How long the frame is shown, in milliseconds; 0 for still images.
    delay_ms: u32,
}

/// Everything one request's stages read and write, filled in stage by stage.
struct Context<'a> {
    input: &'a [u8],
    job: &'a Job<'a>,
    /// The worker's reusable buffers.
    scratch: &'a mut Scratch,
    /// Format detected from the magic bytes, set by `sniff`.
    input_format: InputFormat,
    /// Format to write, set by `format`.
    output_format: OutputFormat,
    /// Whether `output_format` depends on the `Accept` header.
    varies_on_accept: bool,
    /// Header-only reader set by `probe` and consumed by `decode`.
    source: Option<decode::Source<'a>>,
    /// Width and height as stored, before orientation.
    stored_size: (u32, u32),
    /// Scale at which the JPEG decoder delivered `frames`, which is the full
    /// size for every other format.
    decode_scale: fit::DctScale,
    /// EXIF orientation, applied after the resize.
    orientation: Orientation,
    /// Embedded ICC profile that still applies to `frames`.
    icc_profile: Option<Vec<u8>>,
    /// Decoded pixels: one frame, or every frame of a kept animation.
    frames: Vec<Frame>,
    /// Whether WebP output is lossless, as it is for GIF and lossless WebP
    /// inputs; set by `decode`.
    webp_lossless: bool,
    /// Loop count of a kept animation; `None` for a still image.
    loop_count: Option<animation::Playback>,
    /// Output geometry in displayed coordinates, set by `fit`.
    geometry: Option<fit::Geometry>,
    /// Encoded output, set by `encode`.
    bytes: Vec<u8>,
}

/// The timing bucket a stage's time is added to.
#[derive(Debug, Clone, Copy)]
enum Bucket {
    Decode,
    Transform,
    Encode,
}

type StageFn = fn(&mut Context<'_>) -> Result<(), ApiError>;

/// The pipeline, in order: name, timing bucket, stage.
const STAGES: [(&str, Bucket, StageFn); STAGE_COUNT] = [
    ("sniff", Bucket::Decode, sniff::stage),
    ("format", Bucket::Decode, format::stage),
    ("probe", Bucket::Decode, decode::probe_stage),
    ("decode", Bucket::Decode, decode::stage),
    ("color", Bucket::Transform, color::stage),
    ("fit", Bucket::Transform, fit::stage),
    ("resize", Bucket::Transform, resize::stage),
    ("orient", Bucket::Transform, orient::stage),
    ("pad", Bucket::Transform, canvas::pad_stage),
    ("flatten", Bucket::Transform, canvas::flatten_stage),
    ("encode", Bucket::Encode, encode::stage),
];

/// Decodes, transforms and encodes one image, reusing the buffers in
/// `scratch`.
///
/// Returns `RequestTimeout` when `job.deadline` passes between two stages
/// or inside one that checks it.
/// Every other error describes the input or the request, except
/// `ApiError::Internal`, which only a bug of ours produces.
pub fn process(input: &[u8], job: &Job<'_>, scratch: &mut Scratch) -> Result<Output, ApiError> {
    let result = run_stages(input, job, scratch);
    scratch.trim();
    result
}

fn run_stages(input: &[u8], job: &Job<'_>, scratch: &mut Scratch) -> Result<Output, ApiError> {
    let mut context = Context {
        input,
        job,
        scratch,
        input_format: InputFormat::Jpeg,
        output_format: OutputFormat::Png,
        varies_on_accept: false,
        source: None,
        stored_size: (0, 0),
        decode_scale: fit::DctScale::FULL,
        orientation: Orientation::NoTransforms,
        icc_profile: None,
        frames: Vec::new(),
        webp_lossless: false,
        loop_count: None,
        geometry: None,
        bytes: Vec::new(),
    };
    let mut timings = Timings::default();
    for (index, (name, bucket, stage)) in STAGES.into_iter().enumerate() {
        check_deadline(job.deadline)?;
        let started = Instant::now();
        stage(&mut context)?;
        let elapsed = started.elapsed();
        log::debug!("stage {name} took {elapsed:?}");
        timings.stages[index] = (name, elapsed);
        match bucket {
            Bucket::Decode => timings.decode += elapsed,
            Bucket::Transform => timings.transform += elapsed,
            Bucket::Encode => timings.encode += elapsed,
        }
    }

    let output_size = context
        .frames
        .first()
        .map(|frame| (frame.image.width(), frame.image.height()))
        .ok_or_else(|| ApiError::Internal("the pipeline ended without a frame".into()))?;
    let frame_count = context.frames.len() as u32;
    for frame in context.frames.drain(..) {
        context.scratch.recycle(frame.image);
    }
    Ok(Output {
        bytes: context.bytes,
        format: context.output_format,
        input_format: context.input_format.name(),
        input_size: context.stored_size,
        output_size,
        frames: frame_count,
        varies_on_accept: context.varies_on_accept,
        timings,
    })
}

/// Pixels that a row-by-row codec handles between two deadline checks.
///
/// An estimate: that many pixels take the JPEG and PNG codecs a few
/// milliseconds, so a check, which reads the clock once, costs nothing
/// measurable, and a request stops soon after its deadline.
const PIXELS_PER_DEADLINE_CHECK: usize = 1 << 18;

/// Returns how many rows of `width` pixels to process between two
/// deadline checks, at least 1.
fn rows_per_deadline_check(width: usize) -> usize {
    (PIXELS_PER_DEADLINE_CHECK / width.max(1)).max(1)
}

/// Returns whether `deadline` has passed. A `None` deadline never passes.
fn deadline_passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|deadline| Instant::now() >= deadline)
}

/// Returns `RequestTimeout` once `deadline` has passed.
fn check_deadline(deadline: Option<Instant>) -> Result<(), ApiError> {
    if deadline_passed(deadline) {
        return Err(ApiError::RequestTimeout);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passed_deadline_times_out() {
        let options = ProcessOptions::default();
        let limits = Limits::default();
        let job = Job {
            options: &options,
            limits: &limits,
            accept_webp: false,
            deadline: Some(Instant::now()),
        };
        let error = process(b"GIF89a", &job, &mut Scratch::new()).unwrap_err();
        assert_eq!(error, ApiError::RequestTimeout);
    }

    #[test]
    fn rows_per_check_is_never_zero() {
        assert_eq!(rows_per_deadline_check(0), PIXELS_PER_DEADLINE_CHECK);
        assert_eq!(rows_per_deadline_check(1024), 256);
        assert_eq!(rows_per_deadline_check(PIXELS_PER_DEADLINE_CHECK * 2), 1);
    }
}
