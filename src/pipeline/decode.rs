//! Header probing and pixel decoding, the only way input bytes become pixels.
//!
//! The probe reads only the header and checks width × height × frames
//! against `max_input_pixels` before any pixel buffer exists, so a 40-byte
//! file that declares 40 GB is rejected in microseconds. Decoding then runs
//! under `image::Limits` as well, whose `max_alloc` is a second line of
//! defence for decoders that allocate more than the declared image.
//!
//! Truncated input is rejected with 422 for every format. JPEG needs an
//! end-of-image marker after its scans (see `jpeg`), and the other
//! decoders report a missing end as an error (the corpus tests truncated
//! PNG and GIF files). A 200 with half the image grey would be cached as if
//! it were right.
//!
//! Decoder errors are mapped by the category `image::ImageError` gives them,
//! never by their text: `Decoding` is 422, `Unsupported` 415, `Limits` 422
//! (too large), and `Parameter` and `Encoding` are 500 because only our
//! own calls produce them. The exceptions describe the input: a `Parameter`
//! error of kind `NoMoreData` means a file without image data, and an
//! `UnexpectedEof` reading the in-memory input means it ended early, so
//! both are 422.

use std::io::{Cursor, ErrorKind};

use image::error::{ImageError, LimitErrorKind, ParameterErrorKind};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::error::ApiError;

use super::animation::{self, GifSource, WebpSource};
use super::jpeg::{self, JpegSource};
use super::{fit, format, orient, Context, Frame, InputFormat, Limits};

/// A parsed header whose pixels have not been decoded yet.
pub enum Source<'a> {
    /// Boxed because zune-jpeg's decoder state is about 30 KB.
    Jpeg(Box<JpegSource<'a>>),
    /// PNG, BMP and TIFF, through the `image` crate's decoders.
    Image(Box<dyn ImageDecoder + 'a>),
    Gif(GifSource<'a>),
    Webp(WebpSource<'a>),
}

/// Stage: reads the header and checks it against the input limits.
pub fn probe_stage(context: &mut Context<'_>) -> Result<(), ApiError> {
    let input = context.input;
    let limits = context.job.limits;
    let keep_animation = format::keeps_animation(context.output_format);
    let (source, size, frames) = match context.input_format {
        InputFormat::Jpeg => {
            let source = jpeg::probe(input)?;
            let size = source.dimensions();
            (Source::Jpeg(Box::new(source)), size, 1)
        }
        InputFormat::Png | InputFormat::Bmp | InputFormat::Tiff => {
            if context.input_format == InputFormat::Bmp {
                check_bmp_header(input, limits)?;
            }
            let decoder = probe_with_image(input, context.input_format, limits)?;
            let size = decoder.dimensions();
            (Source::Image(decoder), size, 1)
        }
        InputFormat::Gif => {
            let source = animation::probe_gif(input, keep_animation, limits)?;
            let (size, frames) = (source.frame_size(), source.frames_to_decode());
            (Source::Gif(source), size, frames)
        }
        InputFormat::Webp => {
            let source = animation::probe_webp(input, keep_animation, limits)?;
            let (size, frames) = (source.dimensions(), source.frames_to_decode());
            (Source::Webp(source), size, frames)
        }
    };
    check_input_size(size, frames, limits)?;
    context.stored_size = size;
    context.source = Some(source);
    Ok(())
}

/// Stage: decodes the pixels, the profile and the orientation.
pub fn stage(context: &mut Context<'_>) -> Result<(), ApiError> {
    let source = context
        .source
        .take()
        .ok_or_else(|| ApiError::Internal("decode ran without a probed source".into()))?;
    match source {
        Source::Jpeg(source) => {
            context.orientation = orient::from_exif(source.exif());
            let job = context.job;
            let scale = fit::jpeg_scale(
                context.stored_size,
                context.orientation,
                job.options,
                job.limits,
            );
            let decoded = source.decode(scale, context.scratch, job.deadline)?;
            context.icc_profile = decoded.icc_profile;
            context.decode_scale = decoded.scale;
            context.frames = vec![still_frame(decoded.image)];
        }
        Source::Image(decoder) => {
            let (image, icc_profile, orientation) = decode_with_image(decoder)?;
            context.icc_profile = icc_profile;
            context.orientation = orientation;
            context.frames = vec![still_frame(image)];
        }
        Source::Gif(source) => {
            let limits = context.job.limits;
            let decoded = source.decode(image_limits(limits), context.job.deadline)?;
            context.frames = decoded.frames;
            context.loop_count = decoded.loop_count;
            context.webp_lossless = decoded.lossless;
        }
        Source::Webp(source) => {
            let decoded = source.decode(context.job.deadline)?;
            context.icc_profile = decoded.icc_profile;
            context.orientation = decoded.orientation;
            context.frames = decoded.frames;
            context.loop_count = decoded.loop_count;
            context.webp_lossless = decoded.lossless;
        }
    }
    Ok(())
}

fn still_frame(image: DynamicImage) -> Frame {
    Frame {
        image: normalize_sample_type(image),
        delay_ms: 0,
    }
}

/// Converts floating-point images (from TIFF) to 16-bit, the deepest
/// integer type the resizer and the PNG encoder share.
fn normalize_sample_type(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageRgb32F(_) => DynamicImage::ImageRgb16(image.to_rgb16()),
        DynamicImage::ImageRgba32F(_) => DynamicImage::ImageRgba16(image.to_rgba16()),
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_)
        | DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_)
        | DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_) => image,
        _ => DynamicImage::ImageRgba16(image.to_rgba16()),
    }
}

/// Returns the `image::Limits` for one request: room for the largest
/// allowed image at 8 bytes per pixel (16-bit RGBA) plus 64 MiB of
/// decoder working memory.
pub fn image_limits(limits: &Limits) -> image::Limits {
    let mut image_limits = image::Limits::default();
    image_limits.max_alloc = Some(
        limits
            .max_input_pixels
            .saturating_mul(8)
            .saturating_add(64 << 20),
    );
    image_limits
}

/// Rejects an image that declares no pixels, or whose declared pixels, over
/// all frames that will be decoded, exceed `max_input_pixels`.
///
/// Every later stage relies on both sides being at least 1.
pub fn check_input_size(size: (u32, u32), frames: u32, limits: &Limits) -> Result<(), ApiError> {
    let (width, height) = size;
    if width == 0 || height == 0 {
        return Err(ApiError::UndecodableImage(format!(
            "it declares an empty {width}x{height} px image"
        )));
    }
    let pixels = u64::from(width)
        .saturating_mul(u64::from(height))
        .saturating_mul(u64::from(frames.max(1)));
    if pixels <= limits.max_input_pixels {
        return Ok(());
    }
    let frames_text = if frames > 1 {
        format!(" in {frames} frames")
    } else {
        String::new()
    };
    Err(ApiError::ImageTooLarge(format!(
        "it declares {width}x{height} px{frames_text} = {pixels} px, over the limit of {} px \
         (max_input_pixels)",
        limits.max_input_pixels
    )))
}

/// Largest width or height the `image` crate's BMP decoder accepts (its
/// `MAX_WIDTH_HEIGHT` in 0.25).
const MAX_BMP_SIDE: u32 = 0xFFFF;

/// Checks the size a BMP header declares before the `image` decoder reads
/// it, so that BMP gets the same errors as every other format.
///
/// The `image` 0.25 decoder reports a zero side as unsupported (415) and a
/// side over 65535 px as invalid data, while the other formats get
/// `undecodable_image` and `image_too_large` (422). A header too short to
/// declare a size is left to that decoder, which reports it as truncated.
fn check_bmp_header(input: &[u8], limits: &Limits) -> Result<(), ApiError> {
    let Some((width, height)) = bmp_declared_size(input)? else {
        return Ok(());
    };
    check_input_size((width, height), 1, limits)?;
    if width > MAX_BMP_SIDE || height > MAX_BMP_SIDE {
        return Err(ApiError::ImageTooLarge(format!(
            "the BMP declares {width}x{height} px, and the BMP decoder takes at most \
             {MAX_BMP_SIDE} px a side"
        )));
    }
    Ok(())
}

/// Returns the width and height a BMP header declares, or `None` when the
/// input ends before them.
///
/// The 14-byte file header is followed by the DIB header, whose first four
/// bytes give its size. The 12-byte OS/2 core header stores the sides as
/// `u16`; every later header stores them as `i32`, with a negative height
/// meaning rows stored top-down.
fn bmp_declared_size(input: &[u8]) -> Result<Option<(u32, u32)>, ApiError> {
    let read = |offset: usize| -> Option<[u8; 4]> {
        let bytes = input.get(offset..offset + 4)?;
        Some([bytes[0], bytes[1], bytes[2], bytes[3]])
    };
    let Some(header_size) = read(14) else {
        return Ok(None);
    };
    if u32::from_le_bytes(header_size) == 12 {
        let Some([width_low, width_high, height_low, height_high]) = read(18) else {
            return Ok(None);
        };
        let width = u16::from_le_bytes([width_low, width_high]);
        let height = u16::from_le_bytes([height_low, height_high]);
        return Ok(Some((u32::from(width), u32::from(height))));
    }
    let (Some(width), Some(height)) = (read(18), read(22)) else {
        return Ok(None);
    };
    let width = i32::from_le_bytes(width);
    let height = i32::from_le_bytes(height);
    let Ok(width) = u32::try_from(width) else {
        return Err(ApiError::UndecodableImage(format!(
            "the BMP declares a negative width of {width} px"
        )));
    };
    Ok(Some((width, height.unsigned_abs())))
}

fn probe_with_image<'a>(
    input: &'a [u8],
    format: InputFormat,
    limits: &Limits,
) -> Result<Box<dyn ImageDecoder + 'a>, ApiError> {
    let mut reader = ImageReader::with_format(Cursor::new(input), format.image_format());
    reader.limits(image_limits(limits));
    let decoder = reader.into_decoder().map_err(map_decode_error)?;
    Ok(Box::new(decoder))
}

fn decode_with_image(
    mut decoder: Box<dyn ImageDecoder + '_>,
) -> Result<(DynamicImage, Option<Vec<u8>>, Orientation), ApiError> {
    // Metadata that cannot be read is dropped: the pixels still decode.
    let icc_profile = decoder.icc_profile().unwrap_or_else(|error| {
        log::debug!("ignoring an unreadable ICC profile: {error}");
        None
    });
    let orientation = decoder.orientation().unwrap_or_else(|error| {
        log::debug!("ignoring unreadable EXIF metadata: {error}");
        Orientation::NoTransforms
    });
    let image = DynamicImage::from_decoder(decoder).map_err(map_decode_error)?;
    Ok((image, icc_profile, orientation))
}

/// Maps an `image` error raised while probing or decoding the input.
pub fn map_decode_error(error: ImageError) -> ApiError {
    match error {
        ImageError::Decoding(error) => ApiError::UndecodableImage(short_reason(&error.to_string())),
        ImageError::Unsupported(error) => {
            log::debug!("unsupported image feature: {error}");
            ApiError::UnsupportedImageFormat {
                detected: Some(unsupported_variant_name(error.format_hint())),
            }
        }
        ImageError::Limits(error) => ApiError::ImageTooLarge(match error.kind() {
            LimitErrorKind::DimensionError => {
                "its width or height is over the decoder's limit".into()
            }
            LimitErrorKind::InsufficientMemory => {
                "decoding it needs more memory than the limit allows".into()
            }
            _ => "it exceeds a decoder limit".into(),
        }),
        ImageError::Parameter(error) if matches!(error.kind(), ParameterErrorKind::NoMoreData) => {
            ApiError::UndecodableImage("the file contains no image data".into())
        }
        ImageError::IoError(error) if error.kind() == ErrorKind::UnexpectedEof => {
            ApiError::UndecodableImage("the file ends early (truncated)".into())
        }
        ImageError::IoError(error) => {
            ApiError::Internal(format!("reading the input failed: {error}"))
        }
        ImageError::Parameter(error) => ApiError::Internal(format!("decoder parameter: {error}")),
        ImageError::Encoding(error) => {
            ApiError::Internal(format!("encoder error while decoding: {error}"))
        }
    }
}

/// Names the unsupported variant of a supported format for the 415 message,
/// which reads "<name> images are not supported".
fn unsupported_variant_name(hint: image::error::ImageFormatHint) -> &'static str {
    use image::error::ImageFormatHint;
    use image::ImageFormat;
    match hint {
        ImageFormatHint::Exact(ImageFormat::Png) => "this kind of PNG",
        ImageFormatHint::Exact(ImageFormat::Bmp) => "this kind of BMP",
        ImageFormatHint::Exact(ImageFormat::Tiff) => {
            "TIFF (this compression, sample format or layout)"
        }
        ImageFormatHint::Exact(ImageFormat::Gif) => "this kind of GIF",
        ImageFormatHint::Exact(ImageFormat::WebP) => "this kind of WebP",
        _ => "this image variant",
    }
}

/// Cuts a decoder message to one short line for the client.
pub fn short_reason(message: &str) -> String {
    const MAX_CHARS: usize = 160;
    let line = message.lines().next().unwrap_or("").trim();
    if line.chars().count() <= MAX_CHARS {
        return line.to_string();
    }
    let cut: String = line.chars().take(MAX_CHARS).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_limit_allows_exact_limit() {
        let limits = Limits {
            max_input_pixels: 100,
            ..Limits::default()
        };
        assert!(check_input_size((10, 10), 1, &limits).is_ok());
        assert!(check_input_size((5, 10), 2, &limits).is_ok());
        let error = check_input_size((10, 11), 1, &limits).unwrap_err();
        assert_eq!(error.status(), 422);
        assert!(
            error.message().contains("max_input_pixels"),
            "{}",
            error.message()
        );
        let frames = check_input_size((10, 10), 2, &limits).unwrap_err();
        assert!(
            frames.message().contains("2 frames"),
            "{}",
            frames.message()
        );
    }

    #[test]
    fn empty_image_is_undecodable() {
        for size in [(0, 0), (0, 5), (5, 0)] {
            let error = check_input_size(size, 1, &Limits::default()).unwrap_err();
            assert_eq!(error.code(), "undecodable_image", "{size:?}");
            assert!(error.message().contains("empty"), "{}", error.message());
        }
    }

    /// Returns a BMP file header and a 40-byte info header declaring
    /// `width` × `height`, without pixel data.
    fn bmp_header(width: i32, height: i32) -> Vec<u8> {
        let mut bmp = b"BM".to_vec();
        bmp.extend_from_slice(&54u32.to_le_bytes()); // file size
        bmp.extend_from_slice(&0u32.to_le_bytes()); // reserved
        bmp.extend_from_slice(&54u32.to_le_bytes()); // pixel data offset
        bmp.extend_from_slice(&40u32.to_le_bytes()); // info header size
        bmp.extend_from_slice(&width.to_le_bytes());
        bmp.extend_from_slice(&height.to_le_bytes());
        bmp.extend_from_slice(&1u16.to_le_bytes()); // planes
        bmp.extend_from_slice(&24u16.to_le_bytes()); // bits per pixel
        bmp.extend_from_slice(&[0; 24]);
        bmp
    }

    #[test]
    fn bmp_header_sizes_are_checked() {
        let limits = Limits::default();
        let cases = [
            (0, 4, "undecodable_image"),
            (4, 0, "undecodable_image"),
            (-3, 4, "undecodable_image"),
            (1, i32::MAX, "image_too_large"),
            (1, i32::MIN, "image_too_large"),
            (70_000, 1, "image_too_large"),
        ];
        for (width, height, code) in cases {
            let error = check_bmp_header(&bmp_header(width, height), &limits).unwrap_err();
            assert_eq!(error.code(), code, "{width}x{height}: {}", error.message());
        }
        assert!(check_bmp_header(&bmp_header(4, -4), &limits).is_ok());
        assert!(check_bmp_header(&bmp_header(65_535, 1), &limits).is_ok());
    }

    #[test]
    fn bmp_core_header_sizes_are_read() {
        let mut bmp = b"BM".to_vec();
        bmp.extend_from_slice(&[0; 12]);
        bmp.extend_from_slice(&12u32.to_le_bytes());
        bmp.extend_from_slice(&3u16.to_le_bytes());
        bmp.extend_from_slice(&0u16.to_le_bytes());
        assert_eq!(bmp_declared_size(&bmp), Ok(Some((3, 0))));
        assert_eq!(bmp_declared_size(&bmp[..20]), Ok(None));
        assert_eq!(bmp_declared_size(b"BM"), Ok(None));
    }

    #[test]
    fn input_limit_never_overflows() {
        let error = check_input_size((u32::MAX, u32::MAX), u32::MAX, &Limits::default());
        assert!(error.is_err());
    }

    #[test]
    fn truncation_maps_to_422() {
        let error = map_decode_error(ImageError::IoError(ErrorKind::UnexpectedEof.into()));
        assert_eq!(error.status(), 422);
        assert!(error.message().contains("truncated"), "{}", error.message());
    }

    #[test]
    fn other_io_errors_are_internal() {
        let error = map_decode_error(ImageError::IoError(ErrorKind::Other.into()));
        assert_eq!(error.status(), 500);
    }

    #[test]
    fn limit_errors_map_to_too_large() {
        let limit = image::error::LimitError::from_kind(LimitErrorKind::InsufficientMemory);
        let error = map_decode_error(ImageError::Limits(limit));
        assert_eq!(error.status(), 422);
        assert_eq!(error.code(), "image_too_large");
    }

    #[test]
    fn short_reason_cuts_long_lines() {
        assert_eq!(short_reason("bad\nsecond line"), "bad");
        let long = "x".repeat(500);
        assert_eq!(short_reason(&long).chars().count(), 161);
    }
}
