//! GIF and WebP input, still or animated.
//!
//! An animation is kept when the output format is GIF or WebP (see
//! `format::keeps_animation`). Every frame is then decoded, composited onto
//! the full canvas, and later resized, and the delays and the loop count
//! are kept.
//! Any other output gets the first frame. A kept animation with more than
//! `max_frames` frames is rejected (422) rather than cut short, since a
//! silently shortened animation looks like a bug to its viewer.
//!
//! The GIF probe walks every frame header with LZW decoding switched off,
//! so the frame count, the loop count and each frame's declared size are
//! known and checked before any pixel is decoded.

use std::io::Cursor;
use std::time::Instant;

use image::codecs::gif::GifDecoder;
use image::metadata::Orientation;
use image::{AnimationDecoder, DynamicImage, ImageDecoder, RgbImage, RgbaImage};

use crate::error::ApiError;

use super::decode::{check_input_size, map_decode_error, short_reason};
use super::{check_deadline, orient, Frame, Limits};

/// How many times an animation plays in total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playback {
    Forever,
    /// Plays this many times (at least once), then stops on the last frame.
    Times(u32),
}

/// The frames and metadata of a decoded GIF or WebP.
pub struct DecodedAnimation {
    pub frames: Vec<Frame>,
    /// `None` unless more than one frame was decoded.
    pub loop_count: Option<Playback>,
    pub icc_profile: Option<Vec<u8>>,
    pub orientation: Orientation,
    /// Whether the input was compressed losslessly.
    pub lossless: bool,
}

/// A GIF whose frame headers have been walked but not decoded.
pub struct GifSource<'a> {
    input: &'a [u8],
    screen: (u32, u32),
    /// Frames found: every frame when the animation is kept, else 1.
    frames: u32,
    repeat: gif::Repeat,
}

/// Walks the GIF's frame headers without decoding pixels.
///
/// Counts the frames when `keep_animation` is set (else it stops after the
/// first), and rejects a screen or a single frame over `max_input_pixels`,
/// a kept animation with more than `max_frames` frames, and a file
/// without frames.
pub fn probe_gif<'a>(
    input: &'a [u8],
    keep_animation: bool,
    limits: &Limits,
) -> Result<GifSource<'a>, ApiError> {
    let mut options = gif::DecodeOptions::new();
    options.skip_frame_decoding(true);
    let mut decoder = options
        .read_info(Cursor::new(input))
        .map_err(map_gif_error)?;
    let screen = (u32::from(decoder.width()), u32::from(decoder.height()));
    check_input_size(screen, 1, limits)?;

    // `next_frame_info` stops at each frame header and skips the data of
    // the previous frame, so a frame's size is checked before its data is read.
    let mut frames = 0;
    while let Some(frame) = decoder.next_frame_info().map_err(map_gif_error)? {
        let frame_size = (u32::from(frame.width), u32::from(frame.height));
        check_input_size(frame_size, 1, limits)?;
        frames += 1;
        if !keep_animation {
            break;
        }
        if frames > limits.max_frames {
            return Err(too_many_frames(limits));
        }
    }
    if frames == 0 {
        return Err(ApiError::UndecodableImage(
            "the GIF contains no frames".into(),
        ));
    }
    Ok(GifSource {
        input,
        screen,
        frames,
        repeat: decoder.repeat(),
    })
}

fn too_many_frames(limits: &Limits) -> ApiError {
    ApiError::ImageTooLarge(format!(
        "the animation has more than {} frames (max_frames); request format=png for the \
         first frame only",
        limits.max_frames
    ))
}

impl GifSource<'_> {
    /// Returns the size of the logical screen, which every frame is composited onto.
    pub fn frame_size(&self) -> (u32, u32) {
        self.screen
    }

    /// Returns how many frames `decode` produces.
    pub fn frames_to_decode(&self) -> u32 {
        self.frames
    }

    /// Decodes the first frame, or every frame when the animation is kept.
    pub fn decode(
        self,
        limits: image::Limits,
        deadline: Option<Instant>,
    ) -> Result<DecodedAnimation, ApiError> {
        let mut decoder = GifDecoder::new(Cursor::new(self.input)).map_err(map_decode_error)?;
        decoder.set_limits(limits).map_err(map_decode_error)?;
        let mut frames = Vec::with_capacity(self.frames as usize);
        if self.frames == 1 {
            let image = DynamicImage::from_decoder(decoder).map_err(map_decode_error)?;
            frames.push(Frame { image, delay_ms: 0 });
        } else {
            for frame in decoder.into_frames().take(self.frames as usize) {
                check_deadline(deadline)?;
                let frame = frame.map_err(map_decode_error)?;
                let (numerator, denominator) = frame.delay().numer_denom_ms();
                frames.push(Frame {
                    delay_ms: numerator / denominator.max(1),
                    image: DynamicImage::ImageRgba8(frame.into_buffer()),
                });
            }
        }
        let loop_count = (frames.len() > 1).then(|| gif_playback(self.repeat));
        Ok(DecodedAnimation {
            frames,
            loop_count,
            icc_profile: None,
            orientation: Orientation::NoTransforms,
            lossless: true,
        })
    }
}

/// Converts the NETSCAPE loop extension to total plays. Without the
/// extension a GIF plays once; a count of n means n repeats after the first
/// play, as browsers show it; 0 means forever.
fn gif_playback(repeat: gif::Repeat) -> Playback {
    match repeat {
        gif::Repeat::Infinite => Playback::Forever,
        gif::Repeat::Finite(repeats) => Playback::Times(u32::from(repeats) + 1),
    }
}

/// Converts total plays back to the NETSCAPE extension; `None` means
/// "write no extension", which plays once.
pub fn gif_repeat(playback: Playback) -> Option<gif::Repeat> {
    match playback {
        Playback::Forever => Some(gif::Repeat::Infinite),
        Playback::Times(0 | 1) => None,
        Playback::Times(plays) => Some(gif::Repeat::Finite(
            u16::try_from(plays - 1).unwrap_or(u16::MAX),
        )),
    }
}

/// Converts total plays to the WebP `ANIM` loop count, where 0 is forever.
pub fn webp_loop_count(playback: Playback) -> i32 {
    match playback {
        Playback::Forever => 0,
        Playback::Times(plays) => i32::try_from(plays.clamp(1, u32::from(u16::MAX))).unwrap_or(0),
    }
}

fn map_gif_error(error: gif::DecodingError) -> ApiError {
    match error {
        gif::DecodingError::UnexpectedEof => truncated("GIF"),
        gif::DecodingError::Io(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            truncated("GIF")
        }
        gif::DecodingError::Io(error) => {
            ApiError::Internal(format!("reading the GIF failed: {error}"))
        }
        gif::DecodingError::MemoryLimit | gif::DecodingError::OutOfMemory => {
            ApiError::ImageTooLarge("a GIF frame needs more memory than the limit allows".into())
        }
        other => ApiError::UndecodableImage(short_reason(&format!("invalid GIF: {other}"))),
    }
}

fn truncated(format: &str) -> ApiError {
    ApiError::UndecodableImage(format!("the {format} data ends early (truncated)"))
}

/// A WebP whose chunk headers have been read but whose frames have not.
pub struct WebpSource<'a> {
    decoder: image_webp::WebPDecoder<Cursor<&'a [u8]>>,
    keep_animation: bool,
}

/// Reads the WebP chunk headers; rejects a kept animation with more than
/// `max_frames` frames.
pub fn probe_webp<'a>(
    input: &'a [u8],
    keep_animation: bool,
    limits: &Limits,
) -> Result<WebpSource<'a>, ApiError> {
    let decoder = image_webp::WebPDecoder::new(Cursor::new(input)).map_err(map_webp_error)?;
    let source = WebpSource {
        keep_animation: keep_animation && decoder.is_animated() && decoder.num_frames() > 1,
        decoder,
    };
    if source.keep_animation && source.decoder.num_frames() > limits.max_frames {
        return Err(too_many_frames(limits));
    }
    Ok(source)
}

impl WebpSource<'_> {
    /// Returns the canvas size.
    pub fn dimensions(&self) -> (u32, u32) {
        self.decoder.dimensions()
    }

    /// Returns how many frames `decode` produces.
    pub fn frames_to_decode(&self) -> u32 {
        if self.keep_animation {
            self.decoder.num_frames()
        } else {
            1
        }
    }

    /// Decodes the image, the first frame, or every frame when the animation is kept.
    pub fn decode(mut self, deadline: Option<Instant>) -> Result<DecodedAnimation, ApiError> {
        let icc_profile = self.decoder.icc_profile().unwrap_or_else(|error| {
            log::debug!("ignoring an unreadable WebP ICC profile: {error}");
            None
        });
        let exif = self.decoder.exif_metadata().unwrap_or_else(|error| {
            log::debug!("ignoring unreadable WebP EXIF metadata: {error}");
            None
        });
        let orientation = orient::from_exif(exif.as_deref());
        let (width, height) = self.decoder.dimensions();
        let has_alpha = self.decoder.has_alpha();
        let lossless = !self.decoder.is_lossy();
        let buffer_size = self
            .decoder
            .output_buffer_size()
            .ok_or_else(|| ApiError::ImageTooLarge("the WebP canvas is too large".into()))?;

        let mut frames = Vec::new();
        if self.keep_animation {
            for _ in 0..self.decoder.num_frames() {
                check_deadline(deadline)?;
                let mut buffer = vec![0u8; buffer_size];
                let delay_ms = self
                    .decoder
                    .read_frame(&mut buffer)
                    .map_err(map_webp_error)?;
                let image = webp_image(width, height, has_alpha, buffer)?;
                frames.push(Frame { image, delay_ms });
            }
        } else {
            let mut buffer = vec![0u8; buffer_size];
            self.decoder
                .read_image(&mut buffer)
                .map_err(map_webp_error)?;
            let image = webp_image(width, height, has_alpha, buffer)?;
            frames.push(Frame { image, delay_ms: 0 });
        }
        let loop_count = (frames.len() > 1).then(|| match self.decoder.loop_count() {
            image_webp::LoopCount::Forever => Playback::Forever,
            image_webp::LoopCount::Times(plays) => Playback::Times(u32::from(plays.get())),
        });
        Ok(DecodedAnimation {
            frames,
            loop_count,
            icc_profile,
            orientation,
            lossless,
        })
    }
}

fn webp_image(
    width: u32,
    height: u32,
    has_alpha: bool,
    buffer: Vec<u8>,
) -> Result<DynamicImage, ApiError> {
    let image = if has_alpha {
        RgbaImage::from_raw(width, height, buffer).map(DynamicImage::ImageRgba8)
    } else {
        RgbImage::from_raw(width, height, buffer).map(DynamicImage::ImageRgb8)
    };
    image.ok_or_else(|| ApiError::Internal("WebP buffer size mismatch".into()))
}

fn map_webp_error(error: image_webp::DecodingError) -> ApiError {
    use image_webp::DecodingError;
    match error {
        DecodingError::IoError(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            truncated("WebP")
        }
        DecodingError::IoError(error) => {
            ApiError::Internal(format!("reading the WebP failed: {error}"))
        }
        DecodingError::ImageTooLarge | DecodingError::MemoryLimitExceeded => {
            ApiError::ImageTooLarge("the WebP needs more memory than the limit allows".into())
        }
        other => ApiError::UndecodableImage(short_reason(&format!("invalid WebP: {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gif_loop_extension_round_trips() {
        let cases = [
            (gif::Repeat::Infinite, Playback::Forever),
            (gif::Repeat::Finite(0), Playback::Times(1)),
            (gif::Repeat::Finite(3), Playback::Times(4)),
        ];
        for (repeat, playback) in cases {
            assert_eq!(gif_playback(repeat), playback, "{repeat:?}");
        }
        assert_eq!(gif_repeat(Playback::Forever), Some(gif::Repeat::Infinite));
        assert_eq!(gif_repeat(Playback::Times(1)), None);
        assert_eq!(gif_repeat(Playback::Times(4)), Some(gif::Repeat::Finite(3)));
    }

    #[test]
    fn webp_loop_count_zero_is_forever() {
        assert_eq!(webp_loop_count(Playback::Forever), 0);
        assert_eq!(webp_loop_count(Playback::Times(1)), 1);
        assert_eq!(webp_loop_count(Playback::Times(1_000_000)), 65535);
    }
}
