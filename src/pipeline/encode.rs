//! Encoding to PNG, JPEG, WebP and GIF, with no metadata in the output.
//!
//! - PNG: the `png` crate at `Compression::Fast` (fdeflate with adaptive
//!   row filters). On the 2 MP bench photo resized to 800x600 it wrote
//!   1.10 MB in 2.5 ms, against 0.98 MB in 76 ms at `Balanced` (zlib level
//!   6), measured in release mode on the 2-core development machine.
//!   16-bit images stay 16-bit. An 8-bit image with
//!   at most 256 colours (palette and graphics inputs that were not
//!   resampled) is written as an indexed PNG of 1 to 8 bits per pixel.
//! - JPEG: libjpeg-turbo (the `mozjpeg` crate in its fastest profile, which
//!   is plain libjpeg-turbo) at quality `q`, 4:2:0 chroma subsampling,
//!   baseline; grey images are written as one-channel JPEG. It wrote the
//!   800x600 bench output in 1.3 ms against 3.6 ms for `jpeg-encoder` 0.7
//!   with its SIMD feature, at about the same size (122 KB at q=80).
//! - WebP: libwebp, lossy VP8 at quality `q`, except for GIF and lossless
//!   WebP inputs, which are written losslessly: those are palette graphics
//!   whose sharp edges lossy VP8 blurs, often at no saving in bytes.
//! - GIF: one palette per frame, exact when a frame has at most 256
//!   colours and NeuQuant-reduced otherwise. Pixels below half opacity
//!   become the transparent entry; the rest are opaque.
//!
//! Every encoder stops with `RequestTimeout` soon after the request
//! deadline: PNG and JPEG check it between bands of rows, libwebp through
//! its progress hook, and GIF and animated WebP before each frame.

use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

use image::DynamicImage;
use mozjpeg::{qtable, ColorSpace};

use crate::error::ApiError;

use super::animation::{self, Playback};
use super::jpeg;
use super::webp::{self, AnimationFrame, Channels, Compression, EncodeError};
use super::{check_deadline, rows_per_deadline_check, Context, Frame, OutputFormat};

/// Largest PNG output, in pixels, that is compressed in one call without
/// deadline checks: an estimate of 20 to 30 ms of work in release builds.
const PNG_SINGLE_CALL_PIXELS: u64 = 4 << 20;

/// Size of the IDAT chunks that PNG data is written in. Chunks this large
/// add 12 bytes of framing per 256 KiB.
const PNG_CHUNK_BYTES: usize = 256 << 10;

/// Sampling speed of the NeuQuant palette reduction, from 1 (best) to 30
/// (fastest); 10 is the gif crate's suggested balance.
const GIF_QUANTIZER_SPEED: i32 = 10;

/// Stage: encodes the frames in the output format.
pub fn stage(context: &mut Context<'_>) -> Result<(), ApiError> {
    let quality = context.job.options.quality;
    let lossless_webp = context.webp_lossless;
    let deadline = context.job.deadline;
    context.bytes = match (context.output_format, context.loop_count) {
        (OutputFormat::Gif, Some(playback)) => {
            encode_gif_animation(&context.frames, playback, deadline)?
        }
        (OutputFormat::Webp, Some(playback)) => encode_webp_animation(
            &context.frames,
            playback,
            webp_compression(quality, lossless_webp),
            deadline,
        )?,
        (format, _) => {
            let frame = context
                .frames
                .first()
                .ok_or_else(|| ApiError::Internal("encode ran without a frame".into()))?;
            encode_still(&frame.image, format, quality, lossless_webp, deadline)?
        }
    };
    Ok(())
}

fn webp_compression(quality: u8, lossless: bool) -> Compression {
    if lossless {
        Compression::Lossless
    } else {
        Compression::Lossy {
            quality: f32::from(quality),
        }
    }
}

/// Encodes one image, and returns `RequestTimeout` soon after `deadline`.
pub fn encode_still(
    image: &DynamicImage,
    format: OutputFormat,
    quality: u8,
    lossless_webp: bool,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, ApiError> {
    match format {
        OutputFormat::Png => encode_png(image, deadline),
        OutputFormat::Jpeg => encode_jpeg(image, quality, deadline),
        OutputFormat::Webp => {
            encode_webp(image, webp_compression(quality, lossless_webp), deadline)
        }
        OutputFormat::Gif => {
            let frame = Frame {
                image: image.clone(),
                delay_ms: 0,
            };
            encode_gif(std::slice::from_ref(&frame), None, deadline)
        }
    }
}

fn encoder_error(format: &str, error: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("{format} encoding failed: {error}"))
}

fn webp_error(error: EncodeError) -> ApiError {
    match error {
        EncodeError::DeadlinePassed => ApiError::RequestTimeout,
        EncodeError::Failed(message) => encoder_error("WebP", message),
    }
}

fn encode_png(image: &DynamicImage, deadline: Option<Instant>) -> Result<Vec<u8>, ApiError> {
    let (width, height) = (image.width(), image.height());
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_compression(png::Compression::Fast);

    if let Some(indexed) = indexed_colours(image, deadline)? {
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_depth(indexed.depth);
        encoder.set_palette(indexed.palette);
        if let Some(alphas) = indexed.alphas {
            encoder.set_trns(alphas);
        }
        let writer = encoder
            .write_header()
            .map_err(|e| encoder_error("PNG", e))?;
        write_png_rows(writer, &indexed.data, (width, height), deadline)?;
        return Ok(bytes);
    }

    let (colour_type, depth, data) = png_samples(image);
    encoder.set_color(colour_type);
    encoder.set_depth(depth);
    let writer = encoder
        .write_header()
        .map_err(|e| encoder_error("PNG", e))?;
    write_png_rows(writer, &data, (width, height), deadline)?;
    Ok(bytes)
}

/// Compresses `data`, rows of `width` pixels in packed samples, into the
/// IDAT chunks and ends the file.
///
/// An image over [`PNG_SINGLE_CALL_PIXELS`] is written through the png
/// crate's stream writer in bands of rows, with `deadline` checked between
/// them. A smaller one is written in one call, because the stream writer
/// made the 800x600 bench output 0.7 ms (about 20 %) slower.
fn write_png_rows<W: Write>(
    mut writer: png::Writer<W>,
    data: &[u8],
    (width, height): (u32, u32),
    deadline: Option<Instant>,
) -> Result<(), ApiError> {
    if u64::from(width) * u64::from(height) <= PNG_SINGLE_CALL_PIXELS {
        writer
            .write_image_data(data)
            .map_err(|e| encoder_error("PNG", e))?;
        return writer.finish().map_err(|e| encoder_error("PNG", e));
    }
    let row_bytes = data.len() / (height as usize).max(1);
    let rows_per_band = rows_per_deadline_check(width as usize);
    let mut stream = writer
        .stream_writer_with_size(PNG_CHUNK_BYTES)
        .map_err(|e| encoder_error("PNG", e))?;
    for band in data.chunks((row_bytes * rows_per_band).max(1)) {
        check_deadline(deadline)?;
        stream
            .write_all(band)
            .map_err(|e| encoder_error("PNG", e))?;
    }
    stream.finish().map_err(|e| encoder_error("PNG", e))?;
    writer.finish().map_err(|e| encoder_error("PNG", e))
}

/// Returns the PNG colour type, bit depth and big-endian samples of `image`.
fn png_samples(
    image: &DynamicImage,
) -> (png::ColorType, png::BitDepth, std::borrow::Cow<'_, [u8]>) {
    use png::{BitDepth, ColorType};
    let big_endian = |samples: &[u16]| -> Vec<u8> {
        samples
            .iter()
            .flat_map(|sample| sample.to_be_bytes())
            .collect()
    };
    match image {
        DynamicImage::ImageLuma8(pixels) => (
            ColorType::Grayscale,
            BitDepth::Eight,
            pixels.as_raw().into(),
        ),
        DynamicImage::ImageLumaA8(pixels) => (
            ColorType::GrayscaleAlpha,
            BitDepth::Eight,
            pixels.as_raw().into(),
        ),
        DynamicImage::ImageRgb8(pixels) => {
            (ColorType::Rgb, BitDepth::Eight, pixels.as_raw().into())
        }
        DynamicImage::ImageRgba8(pixels) => {
            (ColorType::Rgba, BitDepth::Eight, pixels.as_raw().into())
        }
        DynamicImage::ImageLuma16(pixels) => (
            ColorType::Grayscale,
            BitDepth::Sixteen,
            big_endian(pixels.as_raw()).into(),
        ),
        DynamicImage::ImageLumaA16(pixels) => (
            ColorType::GrayscaleAlpha,
            BitDepth::Sixteen,
            big_endian(pixels.as_raw()).into(),
        ),
        DynamicImage::ImageRgb16(pixels) => (
            ColorType::Rgb,
            BitDepth::Sixteen,
            big_endian(pixels.as_raw()).into(),
        ),
        DynamicImage::ImageRgba16(pixels) => (
            ColorType::Rgba,
            BitDepth::Sixteen,
            big_endian(pixels.as_raw()).into(),
        ),
        other => (
            ColorType::Rgba,
            BitDepth::Eight,
            other.to_rgba8().into_raw().into(),
        ),
    }
}

/// An image re-expressed as palette indices, packed at `depth` bits.
struct IndexedColours {
    depth: png::BitDepth,
    /// RGB triples.
    palette: Vec<u8>,
    /// One alpha per palette entry, when any entry is not opaque.
    alphas: Option<Vec<u8>>,
    /// Packed index rows, each starting on a byte boundary.
    data: Vec<u8>,
}

/// Builds an indexed version of an 8-bit RGB or RGBA image with at most
/// 256 colours. Returns `None` for other images, stops scanning at the
/// 257th distinct colour, and returns `RequestTimeout` soon after `deadline`.
fn indexed_colours(
    image: &DynamicImage,
    deadline: Option<Instant>,
) -> Result<Option<IndexedColours>, ApiError> {
    let (samples, channels): (&[u8], usize) = match image {
        DynamicImage::ImageRgb8(pixels) => (pixels.as_raw(), 3),
        DynamicImage::ImageRgba8(pixels) => (pixels.as_raw(), 4),
        _ => return Ok(None),
    };
    let mut lookup: HashMap<[u8; 4], u8> = HashMap::new();
    let mut colours: Vec<[u8; 4]> = Vec::new();
    let mut indices = Vec::with_capacity(samples.len() / channels);
    let band_bytes = rows_per_deadline_check(1) * channels;
    for band in samples.chunks(band_bytes) {
        check_deadline(deadline)?;
        for pixel in band.chunks_exact(channels) {
            let colour = [
                pixel[0],
                pixel[1],
                pixel[2],
                *pixel.get(3).unwrap_or(&u8::MAX),
            ];
            let index = match lookup.get(&colour) {
                Some(&index) => index,
                None => {
                    if colours.len() == 256 {
                        return Ok(None);
                    }
                    let index = colours.len() as u8;
                    lookup.insert(colour, index);
                    colours.push(colour);
                    index
                }
            };
            indices.push(index);
        }
    }

    let (depth, bits) = match colours.len() {
        0..=2 => (png::BitDepth::One, 1),
        3..=4 => (png::BitDepth::Two, 2),
        5..=16 => (png::BitDepth::Four, 4),
        _ => (png::BitDepth::Eight, 8),
    };
    let width = image.width() as usize;
    let data = pack_rows(&indices, width, bits);
    let palette = colours
        .iter()
        .flat_map(|colour| [colour[0], colour[1], colour[2]])
        .collect();
    let alphas = colours
        .iter()
        .any(|colour| colour[3] < u8::MAX)
        .then(|| colours.iter().map(|colour| colour[3]).collect());
    Ok(Some(IndexedColours {
        depth,
        palette,
        alphas,
        data,
    }))
}

/// Packs one index per pixel into rows of `bits`-bit samples, most
/// significant bits first, each row padded to a whole byte.
fn pack_rows(indices: &[u8], width: usize, bits: usize) -> Vec<u8> {
    if bits == 8 {
        return indices.to_vec();
    }
    let per_byte = 8 / bits;
    let row_bytes = width.div_ceil(per_byte);
    let mut packed = Vec::with_capacity(row_bytes * indices.len() / width.max(1));
    for row in indices.chunks_exact(width) {
        for group in row.chunks(per_byte) {
            let mut byte = 0u8;
            for (position, &index) in group.iter().enumerate() {
                byte |= index << (8 - bits * (position + 1));
            }
            packed.push(byte);
        }
    }
    packed
}

/// Encodes a baseline JPEG with libjpeg-turbo's standard settings: 4:2:0
/// chroma subsampling for colour, one channel for grey, the standard
/// Huffman tables and the IJG quality scaling. Checks `deadline` between
/// bands of rows.
fn encode_jpeg(
    image: &DynamicImage,
    quality: u8,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, ApiError> {
    check_jpeg_size(image)?;
    let (colour_space, samples): (mozjpeg::ColorSpace, std::borrow::Cow<'_, [u8]>) = match image {
        DynamicImage::ImageLuma8(pixels) => (ColorSpace::JCS_GRAYSCALE, pixels.as_raw().into()),
        DynamicImage::ImageRgb8(pixels) => (ColorSpace::JCS_RGB, pixels.as_raw().into()),
        DynamicImage::ImageLuma16(_) => (
            ColorSpace::JCS_GRAYSCALE,
            image.to_luma8().into_raw().into(),
        ),
        _ => (ColorSpace::JCS_RGB, image.to_rgb8().into_raw().into()),
    };
    let (width, height) = (image.width() as usize, image.height() as usize);
    // The Annex K tables scaled as libjpeg scales them for a quality, but
    // clamped to 255, so quality 1 to 24 still writes a baseline file.
    let quality = f32::from(quality.clamp(1, 100));
    let luma_table = qtable::AnnexK_Luma.scaled(quality, quality);
    let chroma_table = qtable::AnnexK_Chroma.scaled(quality, quality);
    let band_bytes = samples.len() / height.max(1) * rows_per_deadline_check(width);
    // The inner result is `RequestTimeout` when the deadline stopped the encode.
    let encode = || -> std::io::Result<Result<Vec<u8>, ApiError>> {
        let mut compress = mozjpeg::Compress::new(colour_space);
        compress.set_fastest_defaults();
        compress.set_size(width, height);
        compress.set_luma_qtable(&luma_table);
        compress.set_chroma_qtable(&chroma_table);
        let expected_bytes = width * height / 4;
        let mut started = compress.start_compress(Vec::with_capacity(expected_bytes))?;
        for band in samples.chunks(band_bytes.max(1)) {
            if let Err(timeout) = check_deadline(deadline) {
                // Dropping `started` releases libjpeg's state unfinished.
                return Ok(Err(timeout));
            }
            started.write_scanlines(band)?;
        }
        started.finish().map(Ok)
    };
    jpeg::catch_libjpeg(encode).map_err(|e| encoder_error("JPEG", e))?
}

fn check_jpeg_size(image: &DynamicImage) -> Result<(), ApiError> {
    let max_side = super::fit::MAX_JPEG_SIDE;
    if image.width() <= max_side && image.height() <= max_side {
        return Ok(());
    }
    Err(ApiError::Internal(format!(
        "{}x{} px reached the JPEG encoder past the format check",
        image.width(),
        image.height()
    )))
}

fn encode_webp(
    image: &DynamicImage,
    compression: Compression,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, ApiError> {
    let (width, height) = (image.width(), image.height());
    let encode = |pixels: &[u8], channels| {
        webp::encode_still(pixels, channels, width, height, compression, deadline)
    };
    let result = if image.color().has_alpha() {
        encode(image.to_rgba8().as_raw(), Channels::Rgba)
    } else if let DynamicImage::ImageRgb8(pixels) = image {
        encode(pixels.as_raw(), Channels::Rgb)
    } else {
        encode(image.to_rgb8().as_raw(), Channels::Rgb)
    };
    result.map_err(webp_error)
}

fn encode_webp_animation(
    frames: &[Frame],
    playback: Playback,
    compression: Compression,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, ApiError> {
    let first = frames
        .first()
        .ok_or_else(|| ApiError::Internal("an animation without frames".into()))?;
    let (width, height) = (first.image.width(), first.image.height());
    let rgba: Vec<image::RgbaImage> = frames.iter().map(|frame| frame.image.to_rgba8()).collect();
    let webp_frames: Vec<AnimationFrame<'_>> = rgba
        .iter()
        .zip(frames)
        .map(|(pixels, frame)| AnimationFrame {
            rgba: pixels.as_raw(),
            duration_ms: frame.delay_ms,
        })
        .collect();
    let loop_count = animation::webp_loop_count(playback);
    webp::encode_animation(
        &webp_frames,
        width,
        height,
        compression,
        loop_count,
        deadline,
    )
    .map_err(webp_error)
}

fn encode_gif_animation(
    frames: &[Frame],
    playback: Playback,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, ApiError> {
    encode_gif(frames, animation::gif_repeat(playback), deadline)
}

/// Writes `frames` as full-canvas GIF frames, with the loop extension
/// when `repeat` is set. Checks `deadline` before each frame.
///
/// NOTE: one frame's palette reduction and LZW compression run to their
/// end, because the gif crate offers no way to stop them. So a large still
/// GIF output can finish seconds after the deadline.
fn encode_gif(
    frames: &[Frame],
    repeat: Option<gif::Repeat>,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, ApiError> {
    let first = frames
        .first()
        .ok_or_else(|| ApiError::Internal("a GIF without frames".into()))?;
    let (width, height) = match (
        u16::try_from(first.image.width()),
        u16::try_from(first.image.height()),
    ) {
        (Ok(width), Ok(height)) => (width, height),
        _ => return Err(ApiError::Internal("GIF size past the format check".into())),
    };
    let mut bytes = Vec::new();
    {
        let mut encoder = gif::Encoder::new(&mut bytes, width, height, &[])
            .map_err(|e| encoder_error("GIF", e))?;
        if let Some(repeat) = repeat {
            encoder
                .set_repeat(repeat)
                .map_err(|e| encoder_error("GIF", e))?;
        }
        for frame in frames {
            check_deadline(deadline)?;
            let mut rgba = frame.image.to_rgba8().into_raw();
            threshold_alpha(&mut rgba);
            let mut gif_frame =
                gif::Frame::from_rgba_speed(width, height, &mut rgba, GIF_QUANTIZER_SPEED);
            // Each frame is a whole canvas, so clear it before the next one;
            // otherwise transparent pixels would show the previous frame.
            gif_frame.dispose = gif::DisposalMethod::Background;
            gif_frame.delay = u16::try_from(frame.delay_ms.div_ceil(10)).unwrap_or(u16::MAX);
            encoder
                .write_frame(&gif_frame)
                .map_err(|e| encoder_error("GIF", e))?;
        }
    }
    Ok(bytes)
}

/// Makes alpha one bit, as GIF stores it: below half opacity is transparent.
fn threshold_alpha(rgba: &mut [u8]) {
    for pixel in rgba.chunks_exact_mut(4) {
        pixel[3] = if pixel[3] < 128 { 0 } else { u8::MAX };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn decode(bytes: &[u8]) -> DynamicImage {
        image::load_from_memory(bytes).unwrap()
    }

    #[test]
    fn png_few_colours_is_indexed() {
        let image = RgbImage::from_fn(33, 3, |x, _| {
            if x % 3 == 0 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let image = DynamicImage::ImageRgb8(image);
        let bytes = encode_png(&image, None).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&bytes))
            .read_info()
            .unwrap();
        assert_eq!(decoder.info().color_type, png::ColorType::Indexed);
        assert_eq!(decoder.info().bit_depth, png::BitDepth::One);
        assert_eq!(decode(&bytes).to_rgb8(), image.to_rgb8());
    }

    #[test]
    fn png_indexed_keeps_transparency() {
        let image = RgbaImage::from_fn(5, 5, |x, y| {
            Rgba([x as u8 * 40, y as u8 * 40, 0, (x * 50) as u8])
        });
        let image = DynamicImage::ImageRgba8(image);
        let bytes = encode_png(&image, None).unwrap();
        assert_eq!(decode(&bytes).to_rgba8(), image.to_rgba8());
    }

    #[test]
    fn png_many_colours_is_truecolour() {
        let image = RgbImage::from_fn(32, 32, |x, y| {
            Rgb([x as u8 * 8, y as u8 * 8, (x + y) as u8])
        });
        let image = DynamicImage::ImageRgb8(image);
        let bytes = encode_png(&image, None).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&bytes))
            .read_info()
            .unwrap();
        assert_eq!(decoder.info().color_type, png::ColorType::Rgb);
        assert_eq!(decode(&bytes).to_rgb8(), image.to_rgb8());
    }

    #[test]
    fn png_sixteen_bit_round_trips() {
        let image = image::ImageBuffer::from_fn(4, 4, |x, y| {
            image::Rgb([x as u16 * 1000 + 1, y as u16 * 3000, 65535])
        });
        let image = DynamicImage::ImageRgb16(image);
        let bytes = encode_png(&image, None).unwrap();
        assert_eq!(decode(&bytes), image);
    }

    #[test]
    fn pack_rows_pads_each_row() {
        // Width 3 at 2 bits: one byte per row, low bits zero.
        let packed = pack_rows(&[1, 2, 3, 3, 2, 1], 3, 2);
        assert_eq!(packed, [0b0110_1100, 0b1110_0100]);
    }

    #[test]
    fn jpeg_grey_stays_one_channel() {
        let image =
            DynamicImage::ImageLuma8(image::GrayImage::from_pixel(16, 16, image::Luma([90])));
        let bytes = encode_jpeg(&image, 90, None).unwrap();
        let decoded = decode(&bytes);
        assert_eq!(decoded.color(), image::ColorType::L8);
        assert!(decoded
            .to_luma8()
            .pixels()
            .all(|p| p.0[0].abs_diff(90) <= 2));
    }

    /// Returns the frame-header marker (0xC0 for baseline) and the
    /// sampling factors of each component of a JPEG.
    fn jpeg_frame(bytes: &[u8]) -> (u8, Vec<u8>) {
        let start = bytes
            .windows(2)
            .position(|pair| pair[0] == 0xFF && matches!(pair[1], 0xC0..=0xC2))
            .expect("the JPEG has a frame header");
        let components = usize::from(bytes[start + 9]);
        let sampling = (0..components)
            .map(|index| bytes[start + 11 + 3 * index])
            .collect();
        (bytes[start + 1], sampling)
    }

    #[test]
    fn jpeg_colour_is_baseline_420() {
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_fn(33, 17, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 15) as u8, 200])
        }));
        for quality in [1, 24, 80, 100] {
            let bytes = encode_jpeg(&image, quality, None).unwrap();
            let (marker, sampling) = jpeg_frame(&bytes);
            assert_eq!(marker, 0xC0, "q={quality}");
            assert_eq!(sampling, [0x22, 0x11, 0x11], "q={quality}");
            let decoded = decode(&bytes);
            assert_eq!((decoded.width(), decoded.height()), (33, 17));
        }
    }

    #[test]
    fn jpeg_quality_sets_size() {
        // Smooth gradients, which 4:2:0 subsampling keeps.
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * 2 + y) as u8, (x * 4) as u8, (y * 4) as u8])
        }));
        let low = encode_jpeg(&image, 20, None).unwrap();
        let high = encode_jpeg(&image, 95, None).unwrap();
        assert!(low.len() < high.len(), "{} >= {}", low.len(), high.len());
        let decoded = decode(&high).to_rgb8();
        let original = image.to_rgb8();
        let worst = decoded
            .as_raw()
            .iter()
            .zip(original.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 12, "q=95 differs by up to {worst}");
    }

    #[test]
    fn gif_keeps_transparent_pixels() {
        let image = RgbaImage::from_fn(4, 1, |x, _| {
            Rgba([200, 10, 10, if x < 2 { 255 } else { 20 }])
        });
        let bytes = encode_still(
            &DynamicImage::ImageRgba8(image),
            OutputFormat::Gif,
            80,
            false,
            None,
        )
        .unwrap();
        let decoded = decode(&bytes).to_rgba8();
        assert_eq!(decoded.get_pixel(0, 0).0[3], 255);
        assert_eq!(decoded.get_pixel(3, 0).0[3], 0);
    }

    /// Builds an RGB image that the PNG encoder writes in bands, taller
    /// than one band of rows between deadline checks.
    fn tall_gradient() -> DynamicImage {
        let width = 1024;
        let height = (PNG_SINGLE_CALL_PIXELS / width) as u32 + 5;
        assert!(height as usize > 3 * rows_per_deadline_check(width as usize));
        let width = width as u32;
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            Rgb([(x / 4) as u8, (y / 4) as u8, ((x + y) / 8) as u8])
        }))
    }

    #[test]
    fn png_bands_round_trip() {
        let image = tall_gradient();
        let bytes = encode_png(&image, None).unwrap();
        assert_eq!(decode(&bytes).to_rgb8(), image.to_rgb8());
    }

    #[test]
    fn jpeg_bands_keep_every_row() {
        let image = tall_gradient();
        let bytes = encode_jpeg(&image, 90, None).unwrap();
        let decoded = decode(&bytes).to_rgb8();
        assert_eq!(decoded.dimensions(), (image.width(), image.height()));
        let last_row = image.height() - 1;
        let expected = image.to_rgb8();
        for x in [0, 511, 1023] {
            let (before, after) = (
                expected.get_pixel(x, last_row),
                decoded.get_pixel(x, last_row),
            );
            for channel in 0..3 {
                assert!(
                    before.0[channel].abs_diff(after.0[channel]) <= 8,
                    "pixel ({x}, {last_row}): {before:?} became {after:?}"
                );
            }
        }
    }

    #[test]
    fn passed_deadline_stops_every_encoder() {
        let photo = tall_gradient();
        let flat = DynamicImage::ImageRgba8(RgbaImage::from_pixel(300, 300, Rgba([9, 9, 9, 255])));
        let cases = [
            ("PNG", &photo, OutputFormat::Png),
            ("indexed PNG", &flat, OutputFormat::Png),
            ("JPEG", &photo, OutputFormat::Jpeg),
            ("WebP", &photo, OutputFormat::Webp),
            ("GIF", &flat, OutputFormat::Gif),
        ];
        for (name, image, format) in cases {
            let result = encode_still(image, format, 80, false, Some(Instant::now()));
            assert_eq!(result, Err(ApiError::RequestTimeout), "{name}");
            assert!(
                encode_still(image, format, 80, false, None).is_ok(),
                "{name} without a deadline"
            );
        }
    }

    #[test]
    fn passed_deadline_stops_animations() {
        let frames: Vec<Frame> = (0..3)
            .map(|index| Frame {
                image: DynamicImage::ImageRgba8(RgbaImage::from_pixel(
                    8,
                    8,
                    Rgba([index * 80, 0, 0, 255]),
                )),
                delay_ms: 100,
            })
            .collect();
        let passed = Some(Instant::now());
        let gif = encode_gif_animation(&frames, Playback::Forever, passed);
        assert_eq!(gif, Err(ApiError::RequestTimeout));
        let webp = encode_webp_animation(&frames, Playback::Forever, Compression::Lossless, passed);
        assert_eq!(webp, Err(ApiError::RequestTimeout));
    }
}
