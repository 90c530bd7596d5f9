//! Format detection from the first bytes of the upload.
//!
//! The format comes from the magic bytes alone: the file name and the part's
//! `Content-Type` are chosen by the client and prove nothing. Formats that
//! ImgFlux decodes become an [`InputFormat`]. Common image formats that it
//! does not decode are still named, so the 415 names what was recognised.
//! Anything else is reported as not an image.

use crate::error::ApiError;

use super::Context;

/// An input format that the pipeline decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Jpeg,
    Png,
    Gif,
    Webp,
    Bmp,
    Tiff,
}

impl InputFormat {
    /// Returns the short lower-case name used in logs and `Output::input_format`.
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Jpeg => "jpeg",
            InputFormat::Png => "png",
            InputFormat::Gif => "gif",
            InputFormat::Webp => "webp",
            InputFormat::Bmp => "bmp",
            InputFormat::Tiff => "tiff",
        }
    }

    /// Returns the format as the `image` crate names it.
    pub fn image_format(self) -> image::ImageFormat {
        match self {
            InputFormat::Jpeg => image::ImageFormat::Jpeg,
            InputFormat::Png => image::ImageFormat::Png,
            InputFormat::Gif => image::ImageFormat::Gif,
            InputFormat::Webp => image::ImageFormat::WebP,
            InputFormat::Bmp => image::ImageFormat::Bmp,
            InputFormat::Tiff => image::ImageFormat::Tiff,
        }
    }
}

/// Detects the format of `input` from its magic bytes.
///
/// Returns `MissingImage` for an empty input and `UnsupportedImageFormat`
/// for anything that is not a decodable format, naming the format when it
/// is a known image format.
pub fn sniff(input: &[u8]) -> Result<InputFormat, ApiError> {
    if input.is_empty() {
        return Err(ApiError::MissingImage(
            "the uploaded image is empty (0 bytes)".to_string(),
        ));
    }
    if let Some(format) = decodable_format(input) {
        return Ok(format);
    }
    Err(ApiError::UnsupportedImageFormat {
        detected: unsupported_format_name(input),
    })
}

/// Stage: sets the input format.
pub fn stage(context: &mut Context<'_>) -> Result<(), ApiError> {
    context.input_format = sniff(context.input)?;
    Ok(())
}

fn decodable_format(input: &[u8]) -> Option<InputFormat> {
    if input.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(InputFormat::Jpeg);
    }
    if input.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(InputFormat::Png);
    }
    if input.starts_with(b"GIF87a") || input.starts_with(b"GIF89a") {
        return Some(InputFormat::Gif);
    }
    if input.len() >= 12 && &input[0..4] == b"RIFF" && &input[8..12] == b"WEBP" {
        return Some(InputFormat::Webp);
    }
    if is_bmp(input) {
        return Some(InputFormat::Bmp);
    }
    // Classic TIFF (42) and BigTIFF (43), in both byte orders.
    let tiff_magics: [&[u8]; 4] = [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"];
    if tiff_magics.iter().any(|magic| input.starts_with(magic)) {
        return Some(InputFormat::Tiff);
    }
    None
}

/// Checks the `BM` signature and the DIB header size that follows the
/// 14-byte file header, since two ASCII letters alone match plain text.
fn is_bmp(input: &[u8]) -> bool {
    if input.len() < 18 || !input.starts_with(b"BM") {
        return false;
    }
    let dib_header_size = u32::from_le_bytes([input[14], input[15], input[16], input[17]]);
    matches!(dib_header_size, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124)
}

/// Names a recognised image format that ImgFlux does not decode.
fn unsupported_format_name(input: &[u8]) -> Option<&'static str> {
    if let Some(name) = iso_bmff_image_name(input) {
        return Some(name);
    }
    let signatures: [(&[u8], &'static str); 14] = [
        (&[0xFF, 0x0A], "JPEG XL"),
        (b"\0\0\0\x0cJXL \r\n\x87\n", "JPEG XL"),
        (b"\0\0\0\x0cjP  \r\n\x87\n", "JPEG 2000"),
        (&[0xFF, 0x4F, 0xFF, 0x51], "JPEG 2000"),
        (b"II\xbc", "JPEG XR"),
        (b"%PDF-", "PDF"),
        (&[0, 0, 1, 0], "ICO"),
        (&[0, 0, 2, 0], "CUR"),
        (b"8BPS", "PSD"),
        (&[0x76, 0x2F, 0x31, 0x01], "OpenEXR"),
        (b"qoif", "QOI"),
        (b"DDS ", "DDS"),
        (b"#?RADIANCE", "Radiance HDR"),
        (b"#?RGBE", "Radiance HDR"),
    ];
    for (magic, name) in signatures {
        if input.starts_with(magic) {
            return Some(name);
        }
    }
    if is_pnm(input) {
        return Some("PNM");
    }
    if is_svg(input) {
        return Some("SVG");
    }
    None
}

/// Names AVIF and HEIF files, which are ISO base media files whose `ftyp`
/// box lists an image brand.
fn iso_bmff_image_name(input: &[u8]) -> Option<&'static str> {
    if input.len() < 16 || &input[4..8] != b"ftyp" {
        return None;
    }
    let box_size = u32::from_be_bytes([input[0], input[1], input[2], input[3]]) as usize;
    let box_end = box_size.clamp(16, input.len());
    // The major brand sits at 8..12; compatible brands follow the minor version at 12..16.
    let brands = std::iter::once(&input[8..12]).chain(input[16..box_end].chunks_exact(4));
    let mut heif = false;
    for brand in brands {
        match brand {
            b"avif" | b"avis" => return Some("AVIF"),
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1" => {
                heif = true
            }
            _ => {}
        }
    }
    heif.then_some("HEIC/HEIF")
}

/// Matches the netpbm family: `P1` to `P7` followed by whitespace.
fn is_pnm(input: &[u8]) -> bool {
    input.len() >= 3
        && input[0] == b'P'
        && (b'1'..=b'7').contains(&input[1])
        && input[2].is_ascii_whitespace()
}

/// Matches an XML or SVG document whose first kilobyte opens an `<svg` element.
fn is_svg(input: &[u8]) -> bool {
    let text = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let text = &text[start..];
    if !text.starts_with(b"<") {
        return false;
    }
    let head = &text[..text.len().min(1024)];
    head.windows(4)
        .any(|window| window.eq_ignore_ascii_case(b"<svg"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detected(input: &[u8]) -> Option<&'static str> {
        match sniff(input) {
            Err(ApiError::UnsupportedImageFormat { detected }) => detected,
            other => panic!("expected a 415, got {other:?}"),
        }
    }

    #[test]
    fn sniff_decodable_formats() {
        let cases: [(&[u8], InputFormat); 8] = [
            (b"\xFF\xD8\xFF\xE0\0\x10JFIF", InputFormat::Jpeg),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", InputFormat::Png),
            (b"GIF89a\x01\0\x01\0", InputFormat::Gif),
            (b"GIF87a\x01\0\x01\0", InputFormat::Gif),
            (b"RIFF\x24\0\0\0WEBPVP8 ", InputFormat::Webp),
            (
                b"BM\x36\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0",
                InputFormat::Bmp,
            ),
            (b"II*\0\x08\0\0\0", InputFormat::Tiff),
            (b"MM\0*\0\0\0\x08", InputFormat::Tiff),
        ];
        for (bytes, expected) in cases {
            assert_eq!(sniff(bytes).unwrap(), expected, "{bytes:?}");
        }
    }

    #[test]
    fn sniff_empty_input() {
        let error = sniff(b"").unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(error.message().contains("empty"), "{}", error.message());
    }

    #[test]
    fn sniff_names_unsupported_formats() {
        let avif = b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf";
        assert_eq!(detected(avif), Some("AVIF"));
        let avif_as_compatible = b"\0\0\0\x1cftypmif1\0\0\0\0mif1avifmiaf";
        assert_eq!(detected(avif_as_compatible), Some("AVIF"));
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
        assert_eq!(detected(heic), Some("HEIC/HEIF"));
        assert_eq!(detected(b"\xFF\x0A\xFA\x7F"), Some("JPEG XL"));
        assert_eq!(detected(b"%PDF-1.7\n"), Some("PDF"));
        assert_eq!(detected(b"\0\0\x01\0\x01\0\x10\x10"), Some("ICO"));
        assert_eq!(detected(b"8BPS\0\x01"), Some("PSD"));
        assert_eq!(detected(b"P6\n2 2\n255\n"), Some("PNM"));
        let svg = b"\xEF\xBB\xBF  <?xml version=\"1.0\"?>\n<SVG xmlns=\"x\"/>";
        assert_eq!(detected(svg), Some("SVG"));
    }

    #[test]
    fn sniff_rejects_unknown_bytes() {
        assert_eq!(detected(b"hello, this is plain text"), None);
        assert_eq!(detected(b"\xFF\xD8"), None);
        assert_eq!(detected(b"<html><body>no</body></html>"), None);
        let mp4 = b"\0\0\0\x18ftypisom\0\0\0\0isomiso2";
        assert_eq!(detected(mp4), None);
    }

    #[test]
    fn sniff_needs_bmp_header_size() {
        assert_eq!(detected(b"BM is how this sentence starts"), None);
    }
}
