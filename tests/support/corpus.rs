//! The shared test corpus and what ImgFlux must do with each of its files.
//!
//! `MANIFEST.tsv` lists every file with a free-text expectation. This module
//! pins that text down to one request and one checkable outcome per file,
//! including the policy choices ImgFlux made where the manifest allows two
//! answers (truncated files are rejected with 422, for example). Both the
//! pipeline test and the server test walk [`expectations`], so the two
//! cannot drift apart. A manifest row without an entry here, or an entry
//! without a row, fails the walk.

#![allow(dead_code)]

use std::path::PathBuf;

/// A request for one corpus file, in the terms of the query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseRequest {
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// The `format` parameter: `png`, `jpeg`, `webp`, `gif` or `auto`.
    pub format: &'static str,
}

impl CaseRequest {
    /// Returns the query string of this request, such as `w=100&format=png`.
    pub fn query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(width) = self.width {
            parts.push(format!("w={width}"));
        }
        if let Some(height) = self.height {
            parts.push(format!("h={height}"));
        }
        parts.push(format!("format={}", self.format));
        parts.join("&")
    }
}

/// The outcome a corpus file must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// A 200 with an image of this format (`png`, `jpeg`, `webp`, `gif`),
    /// size and frame count.
    Image {
        format: &'static str,
        size: (u32, u32),
        frames: u32,
    },
    /// An error with exactly this status.
    Status(u16),
}

/// One corpus file, the request sent for it, and the expected outcome.
#[derive(Debug, Clone)]
pub struct CorpusCase {
    /// Path under the corpus folder, as in the manifest.
    pub path: &'static str,
    pub request: CaseRequest,
    pub expected: Expected,
    /// Size in bytes according to the manifest, checked when reading.
    pub manifest_bytes: u64,
}

impl CorpusCase {
    /// Reads the file and checks its size against the manifest.
    pub fn read(&self) -> Vec<u8> {
        let bytes = read_corpus_file(self.path);
        assert_eq!(
            bytes.len() as u64,
            self.manifest_bytes,
            "{}: size differs from MANIFEST.tsv; the corpus copy was edited",
            self.path
        );
        bytes
    }
}

/// Returns the corpus folder: `../shared/corpus` next to the crate, or
/// `/work/shared/corpus` when that does not exist.
pub fn corpus_dir() -> PathBuf {
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if beside.join("MANIFEST.tsv").is_file() {
        return beside;
    }
    PathBuf::from("/work/shared/corpus")
}

/// Reads a file of the corpus by its manifest path.
pub fn read_corpus_file(path: &str) -> Vec<u8> {
    let full = corpus_dir().join(path);
    std::fs::read(&full).unwrap_or_else(|error| panic!("cannot read {}: {error}", full.display()))
}

/// One line of `MANIFEST.tsv`: the path and the size in bytes.
struct ManifestRow {
    path: String,
    bytes: u64,
}

fn manifest_rows() -> Vec<ManifestRow> {
    let path = corpus_dir().join("MANIFEST.tsv");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("MANIFEST.tsv is empty")
        .split('\t')
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|&column| column == name)
            .unwrap_or_else(|| panic!("MANIFEST.tsv has no '{name}' column"))
    };
    let (path_column, bytes_column) = (column("path"), column("bytes"));
    lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            ManifestRow {
                path: fields[path_column].to_string(),
                bytes: fields[bytes_column]
                    .parse()
                    .unwrap_or_else(|_| panic!("bad byte count in row {line}")),
            }
        })
        .collect()
}

/// Returns one case per manifest row, in manifest order.
///
/// Panics when a manifest row has no expectation below, or an expectation
/// names a file that the manifest does not list.
pub fn expectations() -> Vec<CorpusCase> {
    let table = expectation_table();
    let rows = manifest_rows();
    for (path, _, _) in &table {
        assert!(
            rows.iter().any(|row| row.path == *path),
            "expectation for {path}, which MANIFEST.tsv does not list"
        );
    }
    rows.iter()
        .map(|row| {
            let (path, request, expected) = table
                .iter()
                .find(|(path, _, _)| *path == row.path)
                .copied()
                .unwrap_or_else(|| panic!("no expectation for manifest row {}", row.path));
            CorpusCase {
                path,
                request,
                expected,
                manifest_bytes: row.bytes,
            }
        })
        .collect()
}

const fn request(width: Option<u32>, height: Option<u32>, format: &'static str) -> CaseRequest {
    CaseRequest {
        width,
        height,
        format,
    }
}

const fn image(format: &'static str, width: u32, height: u32) -> Expected {
    Expected::Image {
        format,
        size: (width, height),
        frames: 1,
    }
}

const PNG: CaseRequest = request(None, None, "png");

/// Returns the request and outcome for every corpus file.
fn expectation_table() -> Vec<(&'static str, CaseRequest, Expected)> {
    let mut table = vec![
        // JPEG variants.
        (
            "jpeg/baseline_testorig.jpg",
            request(Some(100), None, "png"),
            image("png", 100, 66),
        ),
        ("jpeg/progressive_peacock.jpg", PNG, image("png", 100, 75)),
        // zune-jpeg decodes neither arithmetic coding nor 12-bit samples.
        ("jpeg/arithmetic_testimgari.jpg", PNG, Expected::Status(415)),
        ("jpeg/12bit_monkey12.jpg", PNG, Expected::Status(415)),
        (
            "jpeg/ycck_noprofile_pil_sample.jpg",
            PNG,
            image("png", 100, 100),
        ),
        (
            "jpeg/cmyk_inverted_swop_icc.jpg",
            request(None, None, "jpeg"),
            image("jpeg", 388, 218),
        ),
        (
            "jpeg/grayscale_dotgain20_icc.jpg",
            PNG,
            image("png", 50, 50),
        ),
        (
            "jpeg/icc_adobergb1998_harvesters.jpg",
            PNG,
            image("png", 600, 442),
        ),
        (
            "jpeg/icc_displayp3_harvesters.jpg",
            PNG,
            image("png", 600, 442),
        ),
        (
            "jpeg/icc_p3_color_bars_codelogic.jpg",
            request(Some(500), None, "png"),
            image("png", 500, 400),
        ),
        (
            "jpeg/icc_rgb_to_gbr_codelogic.jpg",
            request(Some(500), None, "png"),
            image("png", 500, 500),
        ),
        // Policy: truncated files are rejected, in every format.
        (
            "jpeg/truncated_progressive_pillow.jpg",
            PNG,
            Expected::Status(422),
        ),
        (
            "jpeg/truncated_baseline_bluesquare.jpg",
            PNG,
            Expected::Status(422),
        ),
        (
            "jpeg/subsampling_4x1_2x1_2x2_peacock.jpg",
            PNG,
            image("png", 100, 75),
        ),
        (
            "jpeg/broken_exif_1x1.jpg",
            request(Some(100), None, "jpeg"),
            image("jpeg", 100, 100),
        ),
        // EXIF orientation.
        ("exif/orientation8_2x1_pillow.jpg", PNG, image("png", 1, 2)),
        // Policy: PNG eXIf orientation is honoured.
        (
            "exif/png_exif_orientation6_imgproxy.png",
            PNG,
            image("png", 100, 200),
        ),
        // PNG variants.
        ("png/basn2c08_rgb8.png", PNG, image("png", 32, 32)),
        (
            "png/basi6a08_interlaced_rgba.png",
            request(None, None, "webp"),
            image("webp", 32, 32),
        ),
        ("png/basn6a16_rgba16.png", PNG, image("png", 32, 32)),
        ("png/basn4a08_gray_alpha.png", PNG, image("png", 32, 32)),
        ("png/basn3p02_palette2bit.png", PNG, image("png", 32, 32)),
        (
            "png/tbbn3p08_palette_trns.png",
            request(Some(64), None, "png"),
            image("png", 64, 64),
        ),
        ("png/tbrn2c08_rgb_trns_key.png", PNG, image("png", 32, 32)),
        (
            "png/s01n3p01_1x1.png",
            request(Some(100), None, "png"),
            image("png", 100, 100),
        ),
        // APNG frames are not kept: the output is the default image.
        (
            "png/apng_ball_20frames.png",
            request(None, None, "auto"),
            image("png", 100, 100),
        ),
        (
            "png/icc_dcip3_gradient_wuffs.png",
            PNG,
            image("png", 256, 256),
        ),
        // Deliberately corrupt PngSuite files. A bad signature is not
        // recognised as PNG at all (415); CRC errors are rejected (422).
        ("png-corrupt/xs1n0g01.png", PNG, Expected::Status(415)),
        ("png-corrupt/xhdn0g08.png", PNG, Expected::Status(422)),
        ("png-corrupt/xcsn0g01.png", PNG, Expected::Status(422)),
        ("png-corrupt/xd0n2c08.png", PNG, Expected::Status(422)),
        ("png-corrupt/xdtn0g01.png", PNG, Expected::Status(422)),
        // GIF: format=auto keeps animations.
        (
            "gif/animated_rotating_squares_30f.gif",
            request(Some(40), None, "auto"),
            Expected::Image {
                format: "gif",
                size: (40, 40),
                frames: 30,
            },
        ),
        (
            "gif/animated_muybridge_15f.gif",
            request(None, None, "auto"),
            Expected::Image {
                format: "gif",
                size: (30, 20),
                frames: 15,
            },
        ),
        (
            "gif/transparent_alpha_gif_a.gif",
            PNG,
            image("png", 256, 256),
        ),
        (
            "gif/mixed_disposal_5f.gif",
            request(None, None, "auto"),
            Expected::Image {
                format: "gif",
                size: (32, 32),
                frames: 5,
            },
        ),
        // The frame is clipped to the 2x2 logical screen.
        ("gif/frame_out_of_bounds_wuffs.gif", PNG, image("png", 2, 2)),
        // WebP.
        (
            "webp/lossy_harvesters.webp",
            request(Some(300), None, "auto"),
            image("webp", 300, 221),
        ),
        ("webp/lossless_hat.webp", PNG, image("png", 90, 112)),
        ("webp/lossy_alpha_pillow.webp", PNG, image("png", 200, 150)),
        (
            "webp/animated_rotating_squares_9f.webp",
            request(None, None, "auto"),
            Expected::Image {
                format: "webp",
                size: (80, 80),
                frames: 9,
            },
        ),
        ("webp/fuzz_regression_vp8l.webp", PNG, image("png", 100, 30)),
        // BMP.
        (
            "bmp/rgb24.bmp",
            request(None, None, "auto"),
            image("png", 127, 64),
        ),
        ("bmp/rgba32_alpha.bmp", PNG, image("png", 127, 64)),
        ("bmp/pal8rle.bmp", PNG, image("png", 127, 64)),
        ("bmp/info_8bit_top_down.bmp", PNG, image("png", 6, 6)),
        (
            "bmp/hopper_rle8_row_overflow_pillow.bmp",
            PNG,
            image("png", 128, 128),
        ),
        // TIFF.
        (
            "tiff/lzw_predictor_rgba.tiff",
            request(None, None, "auto"),
            image("png", 32, 32),
        ),
        // The tiff crate has no decoder for JPEG-compressed TIFF.
        ("tiff/ycbcr_jpeg_in_tiff.tif", PNG, Expected::Status(415)),
        ("tiff/fax4_bilevel.tiff", PNG, image("png", 460, 307)),
        (
            "tiff/rgb16_little_endian_thumbor.tif",
            PNG,
            image("png", 100, 100),
        ),
        // Extreme dimensions.
        (
            "dims/wide_10000x1.png",
            request(Some(100), None, "png"),
            image("png", 100, 1),
        ),
        (
            "dims/tall_1x10000.png",
            request(None, Some(100), "png"),
            image("png", 1, 100),
        ),
        (
            "dims/wide_20000x2.jpg",
            request(Some(1000), None, "jpeg"),
            image("jpeg", 1000, 1),
        ),
        (
            "dims/tall_64x20000.gif",
            request(None, Some(1000), "png"),
            image("png", 3, 1000),
        ),
        // Malformed uploads.
        ("malformed/empty.jpg", PNG, Expected::Status(400)),
        ("malformed/text_renamed.jpg", PNG, Expected::Status(415)),
        (
            "malformed/png_content_named.jpg",
            request(None, None, "auto"),
            image("png", 32, 32),
        ),
        ("malformed/jpeg_sof_width_0.jpg", PNG, Expected::Status(422)),
        (
            "malformed/jpeg_truncated_at_40pct_harvesters.jpg",
            PNG,
            Expected::Status(422),
        ),
        (
            "malformed/png_truncated_hippopotamus.png",
            PNG,
            Expected::Status(422),
        ),
        (
            "malformed/gif_truncated_hippopotamus.gif",
            PNG,
            Expected::Status(422),
        ),
        (
            "malformed/gif_no_frames_wuffs.gif",
            PNG,
            Expected::Status(422),
        ),
        (
            "malformed/bmp_invalid_bpp_imgproxy.bmp",
            PNG,
            Expected::Status(422),
        ),
        // Timing photos.
        (
            "photos/harvesters_1165x859.jpg",
            request(Some(300), None, "jpeg"),
            image("jpeg", 300, 221),
        ),
        (
            "photos/portrait_1200x1800.jpg",
            request(Some(600), None, "jpeg"),
            image("jpeg", 600, 900),
        ),
        // Formats ImgFlux recognises but does not decode.
        ("unsupported/thumbor_image.avif", PNG, Expected::Status(415)),
        ("unsupported/thumbor_image.heic", PNG, Expected::Status(415)),
        (
            "unsupported/svg_external_entity.svg",
            PNG,
            Expected::Status(415),
        ),
        (
            "reference/srgb_harvesters_600.png",
            PNG,
            image("png", 600, 442),
        ),
    ];
    // Every orientation of the 2.2 MP photo comes out upright and landscape.
    for path in ORIENTATION_PHOTOS {
        table.push((
            path,
            request(Some(600), None, "png"),
            image("png", 600, 400),
        ));
    }
    // Bombs declare 268 MP to 40 GB and must fail from the header.
    for path in BOMBS {
        table.push((path, PNG, Expected::Status(422)));
    }
    table
}

/// The eight `exif/landscape_orientation_N.jpg` files, N = 1 to 8.
pub const ORIENTATION_PHOTOS: [&str; 8] = [
    "exif/landscape_orientation_1.jpg",
    "exif/landscape_orientation_2.jpg",
    "exif/landscape_orientation_3.jpg",
    "exif/landscape_orientation_4.jpg",
    "exif/landscape_orientation_5.jpg",
    "exif/landscape_orientation_6.jpg",
    "exif/landscape_orientation_7.jpg",
    "exif/landscape_orientation_8.jpg",
];

/// Files that declare far more pixels than any limit allows.
pub const BOMBS: [&str; 8] = [
    "bombs/thumbor_16383x16383_palette.png",
    "bombs/pillow_decompression_bomb.gif",
    "bombs/bmpsuite_reallybig.bmp",
    "bombs/png_ihdr_100000x100000_rgba.png",
    "bombs/png_valid_30000x30000_1bit_black.png",
    "bombs/jpeg_sof_65500x65500.jpg",
    "bombs/gif_screen_65535x65535.gif",
    "bombs/webp_lossless_16383x16383_black.webp",
];

/// The colour-managed rendering that the `jpeg/icc_*_harvesters.jpg` files
/// must match after conversion to sRGB.
pub const ICC_REFERENCE: &str = "reference/srgb_harvesters_600.png";

/// Files with a wide-gamut profile and their RMSE limit against
/// [`ICC_REFERENCE`], as a fraction of full scale. The corpus README gives
/// about 1.5 % for a managed decode (JPEG noise) and 2.6 to 2.9 % when the
/// profile is ignored; 2 % separates the two.
pub const ICC_CASES: [(&str, f64); 2] = [
    ("jpeg/icc_adobergb1998_harvesters.jpg", 0.02),
    ("jpeg/icc_displayp3_harvesters.jpg", 0.02),
];
