//! JPEG decoding directly over the request's bytes.
//!
//! zune-jpeg reads the headers (size, colour space, EXIF and ICC profile).
//! Grey, YCbCr and RGB scans are decoded by libjpeg-turbo (through the
//! `mozjpeg` crate), which can scale the image by 1/8 to 4/8 while it
//! decodes: it runs a smaller inverse DCT on each 8×8 block, so a photo
//! shrunk for a thumbnail never exists at full size. This shrink-on-load
//! is what libvips and Pillow do too. CMYK and YCCK scans, which are rare,
//! are decoded at full size by zune-jpeg into raw samples that
//! `color::cmyk_to_srgb` converts through their profile.
//!
//! JPEG does not go through `image::ImageReader`, for two reasons. The
//! `image` wrapper copies the whole input into a `Vec` first, and it turns
//! CMYK into RGB with a naive formula before an embedded CMYK profile could
//! be applied.
//!
//! A file whose scan data is not followed by an end-of-image marker is
//! rejected as truncated (422), the same policy as for every other format,
//! because a half-grey thumbnail returned with 200 would be cached as if it
//! were right. Both decoders otherwise run leniently (zune-jpeg in its
//! non-strict mode, libjpeg-turbo with its warnings ignored), so stray
//! bytes between segments, which some cameras write, do not fail a whole
//! photo.
//!
//! libjpeg-turbo's output is read in bands of rows with the request
//! deadline checked between them. A progressive JPEG's scans are all read
//! when decoding starts, before the first band, so that part is not
//! interrupted. Neither is zune-jpeg's CMYK decode.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use image::{DynamicImage, GrayImage, RgbImage};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::errors::DecodeErrors;
use zune_jpeg::JpegDecoder;

use crate::error::ApiError;

use super::color;
use super::fit::DctScale;
use super::{check_deadline, rows_per_deadline_check, Scratch};

/// A JPEG whose headers have been read but whose scans have not.
pub struct JpegSource<'a> {
    input: &'a [u8],
    decoder: JpegDecoder<ZCursor<&'a [u8]>>,
    colorspace: ColorSpace,
    adobe_transform: Option<u8>,
    width: u32,
    height: u32,
}

/// Header facts from the segments before the first scan, read by [`scan_markers`].
#[derive(Debug, Default, PartialEq, Eq)]
struct JpegMarkers {
    /// The start-of-frame marker's second byte (0xC0 to 0xCF).
    frame_marker: Option<u8>,
    /// Bits per sample declared by the frame header.
    precision: Option<u8>,
    /// The colour transform byte of an Adobe APP14 segment.
    adobe_transform: Option<u8>,
    /// Offset of the first start-of-scan marker.
    first_scan: Option<usize>,
}

/// Reads the JPEG headers, without decoding any scan.
pub fn probe(input: &[u8]) -> Result<JpegSource<'_>, ApiError> {
    let markers = scan_markers(input);
    reject_unsupported_coding(&markers)?;
    reject_truncated(input, &markers)?;

    let options = DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX));
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(input), options);
    decoder.decode_headers().map_err(map_error)?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| ApiError::Internal("JPEG headers decoded without dimensions".into()))?;
    let colorspace = decoder
        .input_colorspace()
        .ok_or_else(|| ApiError::Internal("JPEG headers decoded without a colour space".into()))?;
    Ok(JpegSource {
        input,
        decoder,
        colorspace,
        adobe_transform: markers.adobe_transform,
        width: width as u32,
        height: height as u32,
    })
}

impl JpegSource<'_> {
    /// Returns the stored width and height.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Returns the embedded ICC profile, reassembled from its APP2 chunks.
    pub fn icc_profile(&self) -> Option<Vec<u8>> {
        self.decoder.icc_profile()
    }

    /// Returns the EXIF block of the APP1 segment.
    pub fn exif(&self) -> Option<&[u8]> {
        self.decoder.exif().map(Vec::as_slice)
    }

    /// Decodes the scans to 8-bit grey or sRGB at `scale` of the stored
    /// size where the colour space allows it, into a buffer from `scratch`.
    ///
    /// The result records the scale that was applied, because CMYK and
    /// YCCK images are always decoded at full size. It also carries the
    /// profile that still applies to the pixels, which is `None` for CMYK
    /// and YCCK because they are converted through their profile here.
    ///
    /// Returns `RequestTimeout` soon after `deadline`, except during the
    /// parts that the module documentation lists.
    pub fn decode(
        self,
        scale: DctScale,
        scratch: &mut Scratch,
        deadline: Option<Instant>,
    ) -> Result<DecodedJpeg, ApiError> {
        let icc = self.icc_profile();
        if !matches!(self.colorspace, ColorSpace::CMYK | ColorSpace::YCCK) {
            let grey = self.colorspace == ColorSpace::Luma;
            let image = decode_with_libjpeg(self.input, grey, scale, scratch, deadline)?;
            return Ok(DecodedJpeg {
                image,
                icc_profile: icc,
                scale,
            });
        }
        let image = self.decode_cmyk(icc.as_deref())?;
        Ok(DecodedJpeg {
            image,
            icc_profile: None,
            scale: DctScale::FULL,
        })
    }

    /// Decodes CMYK or YCCK scans at full size with zune-jpeg and converts
    /// them to sRGB with `color::cmyk_to_srgb`.
    fn decode_cmyk(mut self, icc: Option<&[u8]>) -> Result<DynamicImage, ApiError> {
        let output_colorspace = self.colorspace;
        let options = self
            .decoder
            .options()
            .jpeg_set_out_colorspace(output_colorspace);
        self.decoder.set_options(options);
        let pixels = (self.width as usize) * (self.height as usize);
        let mut samples = vec![0u8; pixels * output_colorspace.num_components()];
        self.decoder.decode_into(&mut samples).map_err(map_error)?;

        self.cmyk_samples_to_inks(&mut samples);
        let rgb = color::cmyk_to_srgb(&samples, icc);
        RgbImage::from_raw(self.width, self.height, rgb)
            .map(DynamicImage::from)
            .ok_or_else(|| ApiError::Internal("CMYK buffer size mismatch".into()))
    }

    /// Turns decoded CMYK or YCCK samples into ink amounts, 0 meaning no ink.
    ///
    /// Adobe applications write CMYK inverted (255 is no ink), and mark the
    /// file with an APP14 segment; YCCK only exists in that form. A CMYK
    /// file without APP14 is taken as plain ink amounts.
    fn cmyk_samples_to_inks(&self, samples: &mut [u8]) {
        if self.colorspace == ColorSpace::YCCK {
            for pixel in samples.chunks_exact_mut(4) {
                let [red, green, blue] = ycc_to_rgb(pixel[0], pixel[1], pixel[2]);
                // YCC encodes 255 minus the inverted ink, which is the ink itself.
                pixel[0] = red;
                pixel[1] = green;
                pixel[2] = blue;
                pixel[3] = 255 - pixel[3];
            }
        } else if self.adobe_transform.is_some() {
            for sample in samples.iter_mut() {
                *sample = 255 - *sample;
            }
        }
    }
}

/// Decoded pixels and what still has to be done to them.
pub struct DecodedJpeg {
    pub image: DynamicImage,
    /// Embedded ICC profile that still applies to `image`.
    pub icc_profile: Option<Vec<u8>>,
    /// The scale the image was decoded at: each side is the stored side
    /// times `scale`, rounded up.
    pub scale: DctScale,
}

/// Decodes grey, YCbCr or RGB scans with libjpeg-turbo into a buffer from
/// `scratch`, each side scaled by `scale` and rounded up.
///
/// libjpeg's fatal errors become a 422. Warnings, such as corrupt entropy
/// data, are ignored and the decode goes on, as zune-jpeg's lenient mode
/// does. `deadline` is checked between bands of rows.
fn decode_with_libjpeg(
    input: &[u8],
    grey: bool,
    scale: DctScale,
    scratch: &mut Scratch,
    deadline: Option<Instant>,
) -> Result<DynamicImage, ApiError> {
    // The inner result is `RequestTimeout` when the deadline stopped the decode.
    let decode = || -> io::Result<Result<DynamicImage, ApiError>> {
        let mut decompress = mozjpeg::Decompress::new_mem(input)?;
        decompress.scale(scale.eighths());
        let mut started = if grey {
            decompress.grayscale()?
        } else {
            decompress.rgb()?
        };
        let (width, height) = (started.width() as u32, started.height() as u32);
        let mut buffer = scratch.take_buffer(started.min_flat_buffer_size());
        let row_bytes = buffer.len() / (height as usize).max(1);
        let band_bytes = row_bytes * rows_per_deadline_check(width as usize);
        for band in buffer.chunks_mut(band_bytes.max(1)) {
            if let Err(timeout) = check_deadline(deadline) {
                // Dropping `started` releases libjpeg's state unfinished.
                return Ok(Err(timeout));
            }
            started.read_scanlines_into(band)?;
        }
        started.finish()?;
        let image = if grey {
            GrayImage::from_raw(width, height, buffer).map(DynamicImage::from)
        } else {
            RgbImage::from_raw(width, height, buffer).map(DynamicImage::from)
        };
        Ok(image.ok_or_else(|| ApiError::Internal("JPEG buffer size mismatch".into())))
    };
    match catch_libjpeg(decode) {
        Ok(result) => result,
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Err(
            ApiError::UndecodableImage("the JPEG data ends early (truncated)".into()),
        ),
        Err(error) => Err(ApiError::UndecodableImage(super::decode::short_reason(
            &error.to_string(),
        ))),
    }
}

/// Runs calls into the `mozjpeg` crate and returns libjpeg's fatal errors
/// as `io::Error`s.
///
/// The crate reports those errors by unwinding out of the C code (built
/// with `-fexceptions`), so the calls run under `catch_unwind`. The
/// unwinding needs `panic = "unwind"`, which the release profile sets.
pub fn catch_libjpeg<T>(calls: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    match panic::catch_unwind(AssertUnwindSafe(calls)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .unwrap_or("libjpeg failed without a message");
            let message = message
                .strip_prefix("libjpeg fatal error: ")
                .unwrap_or(message);
            Err(io::Error::other(message.to_string()))
        }
    }
}

/// Converts one full-range JFIF YCbCr sample to RGB.
fn ycc_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let y = f32::from(y);
    let cb = f32::from(cb) - 128.0;
    let cr = f32::from(cr) - 128.0;
    let clamp = |value: f32| value.round().clamp(0.0, 255.0) as u8;
    [
        clamp(y + 1.402 * cr),
        clamp(y - 0.344_136 * cb - 0.714_136 * cr),
        clamp(y + 1.772 * cb),
    ]
}

/// Rejects codings that zune-jpeg does not decode with a 415 that names them.
fn reject_unsupported_coding(markers: &JpegMarkers) -> Result<(), ApiError> {
    let detected = match markers.frame_marker {
        Some(0xC3 | 0xC7 | 0xCB | 0xCF) => Some("lossless JPEG"),
        Some(0xC5 | 0xC6 | 0xCD | 0xCE) => Some("hierarchical JPEG"),
        Some(0xC9 | 0xCA) => Some("arithmetic-coded JPEG"),
        _ => None,
    };
    let detected = detected.or(match markers.precision {
        Some(8) | None => None,
        Some(_) => Some("12-bit and 16-bit JPEG"),
    });
    match detected {
        Some(name) => Err(ApiError::UnsupportedImageFormat {
            detected: Some(name),
        }),
        None => Ok(()),
    }
}

/// Rejects a JPEG without an end-of-image marker after its first scan.
///
/// Entropy-coded data cannot contain the bytes FF D9 (an FF in the data is
/// always followed by 00), so they mark the end of the last scan. An EOI
/// inside an EXIF thumbnail comes before the first scan and does not count.
fn reject_truncated(input: &[u8], markers: &JpegMarkers) -> Result<(), ApiError> {
    let Some(first_scan) = markers.first_scan else {
        return Err(ApiError::UndecodableImage(
            "the JPEG has no image data (no start-of-scan marker)".into(),
        ));
    };
    if memchr::memmem::find(&input[first_scan..], &[0xFF, 0xD9]).is_none() {
        return Err(ApiError::UndecodableImage(
            "the JPEG data ends early (truncated)".into(),
        ));
    }
    Ok(())
}

/// Walks the marker segments up to the first scan and records the frame
/// type, the sample precision and the Adobe colour transform.
///
/// A truncated or malformed header just ends the walk: the decoder reports
/// such errors with better detail.
fn scan_markers(input: &[u8]) -> JpegMarkers {
    let mut markers = JpegMarkers::default();
    let mut position = 2;
    while position + 1 < input.len() {
        if input[position] != 0xFF {
            return markers;
        }
        let marker = input[position + 1];
        position += 2;
        match marker {
            // Fill bytes before a marker.
            0xFF => position -= 1,
            // Markers without a length field.
            0x01 | 0xD0..=0xD8 => {}
            // Start of scan: the headers are over.
            0xDA => {
                markers.first_scan = Some(position - 2);
                return markers;
            }
            // End of image before any scan.
            0xD9 => return markers,
            _ => {
                let Some(length_bytes) = input.get(position..position + 2) else {
                    return markers;
                };
                let length = usize::from(u16::from_be_bytes([length_bytes[0], length_bytes[1]]));
                let Some(segment) = input.get(position + 2..position + length.max(2)) else {
                    return markers;
                };
                record_segment(&mut markers, marker, segment);
                position += length.max(2);
            }
        }
    }
    markers
}

fn record_segment(markers: &mut JpegMarkers, marker: u8, segment: &[u8]) {
    let is_frame_header = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
    if is_frame_header && markers.frame_marker.is_none() {
        markers.frame_marker = Some(marker);
        markers.precision = segment.first().copied();
    }
    // "Adobe", version (2 bytes), flags0 (2), flags1 (2), then the transform.
    if marker == 0xEE && segment.len() >= 12 && segment.starts_with(b"Adobe") {
        markers.adobe_transform = Some(segment[11]);
    }
}

/// Maps a zune-jpeg error to the client's status.
fn map_error(error: DecodeErrors) -> ApiError {
    match error {
        DecodeErrors::Unsupported(_) => ApiError::UnsupportedImageFormat {
            detected: Some("this JPEG coding"),
        },
        DecodeErrors::LargeDimensions(_) => {
            ApiError::ImageTooLarge("the JPEG declares dimensions over the decoder's limit".into())
        }
        DecodeErrors::ZeroError => {
            ApiError::UndecodableImage("the JPEG declares a width or height of 0".into())
        }
        DecodeErrors::ExhaustedData => {
            ApiError::UndecodableImage("the JPEG data ends early (truncated)".into())
        }
        DecodeErrors::TooSmallOutput(..) => {
            ApiError::Internal(format!("JPEG output buffer too small: {error}"))
        }
        other => ApiError::UndecodableImage(super::decode::short_reason(&other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_find_frame_and_adobe() {
        let mut jpeg = vec![0xFF, 0xD8];
        // APP14 "Adobe", version 100, flags 0, 0, transform 2 (YCCK).
        jpeg.extend_from_slice(&[0xFF, 0xEE, 0x00, 0x0E]);
        jpeg.extend_from_slice(b"Adobe\x00\x64\x00\x00\x00\x00\x02");
        // SOF2 with precision 8, height 16, width 16, 4 components (truncated).
        jpeg.extend_from_slice(&[0xFF, 0xC2, 0x00, 0x08, 0x08, 0x00, 0x10, 0x00, 0x10, 0x04]);
        jpeg.extend_from_slice(&[0xFF, 0xDA]);
        let markers = scan_markers(&jpeg);
        assert_eq!(markers.first_scan, Some(jpeg.len() - 2));
        assert_eq!(markers.frame_marker, Some(0xC2));
        assert_eq!(markers.precision, Some(8));
        assert_eq!(markers.adobe_transform, Some(2));
    }

    #[test]
    fn markers_skip_huffman_tables() {
        let mut jpeg = vec![0xFF, 0xD8];
        // A DHT segment (0xC4) is not a frame header.
        jpeg.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x03, 0x00]);
        jpeg.extend_from_slice(&[0xFF, 0xC9, 0x00, 0x08, 0x0C, 0x00, 0x01, 0x00, 0x01, 0x01]);
        let markers = scan_markers(&jpeg);
        assert_eq!(markers.frame_marker, Some(0xC9));
        assert_eq!(markers.precision, Some(12));
        assert!(matches!(
            reject_unsupported_coding(&markers),
            Err(ApiError::UnsupportedImageFormat {
                detected: Some("arithmetic-coded JPEG")
            })
        ));
    }

    #[test]
    fn markers_survive_truncation() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE1, 0x40, 0x00, 0x01];
        assert_eq!(scan_markers(&jpeg), JpegMarkers::default());
    }

    #[test]
    fn twelve_bit_is_unsupported() {
        let markers = JpegMarkers {
            frame_marker: Some(0xC1),
            precision: Some(12),
            ..JpegMarkers::default()
        };
        let error = reject_unsupported_coding(&markers).unwrap_err();
        assert_eq!(error.status(), 415);
        assert!(error.message().contains("12-bit"), "{}", error.message());
    }

    #[test]
    fn ycc_grey_and_primaries() {
        assert_eq!(ycc_to_rgb(128, 128, 128), [128, 128, 128]);
        assert_eq!(ycc_to_rgb(255, 128, 128), [255, 255, 255]);
        // Pure red in JFIF YCbCr is about (76, 85, 255).
        let [red, green, blue] = ycc_to_rgb(76, 85, 255);
        assert!(red >= 253, "red {red}");
        assert!(green <= 2, "green {green}");
        assert!(blue <= 2, "blue {blue}");
    }

    #[test]
    fn libjpeg_fatal_error_is_422() {
        // Start and end of image with nothing between: libjpeg's error exit
        // unwinds out of the C code and must come back as an error.
        let error = decode_with_libjpeg(
            &[0xFF, 0xD8, 0xFF, 0xD9],
            false,
            DctScale::FULL,
            &mut Scratch::new(),
            None,
        )
        .unwrap_err();
        assert_eq!(error.status(), 422);
        assert!(
            !error.message().starts_with("libjpeg fatal error"),
            "{}",
            error.message()
        );
        let error = decode_with_libjpeg(
            b"not a JPEG file",
            true,
            DctScale::FULL,
            &mut Scratch::new(),
            None,
        )
        .unwrap_err();
        assert_eq!(error.status(), 422);
    }

    #[test]
    fn passed_deadline_stops_decode() {
        let image = RgbImage::from_fn(300, 200, |x, y| image::Rgb([x as u8, y as u8, 90]));
        let mut jpeg = Vec::new();
        DynamicImage::from(image)
            .write_to(&mut io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        let mut scratch = Scratch::new();

        let passed = Some(Instant::now());
        let error = probe(&jpeg)
            .unwrap()
            .decode(DctScale::FULL, &mut scratch, passed)
            .err()
            .expect("a passed deadline stops the decode");
        assert_eq!(error, ApiError::RequestTimeout);

        let decoded = match probe(&jpeg)
            .unwrap()
            .decode(DctScale::FULL, &mut scratch, None)
        {
            Ok(decoded) => decoded,
            Err(error) => panic!("the JPEG does not decode without a deadline: {error:?}"),
        };
        assert_eq!(decoded.image.width(), 300);
        assert_eq!(decoded.image.height(), 200);
    }

    #[test]
    fn missing_end_marker_is_truncation() {
        let mut jpeg = vec![0xFF, 0xD8];
        // An EXIF thumbnail's end marker before the scan does not count.
        jpeg.extend_from_slice(&[0xFF, 0xE1, 0x00, 0x04, 0xFF, 0xD9]);
        jpeg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34]);
        let markers = scan_markers(&jpeg);
        let error = reject_truncated(&jpeg, &markers).unwrap_err();
        assert!(error.message().contains("truncated"), "{}", error.message());
        jpeg.extend_from_slice(&[0xFF, 0xD9, 0x00]);
        assert!(reject_truncated(&jpeg, &markers).is_ok());
    }
}
