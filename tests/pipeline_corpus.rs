//! Runs every corpus file through `imgflux::pipeline::process` and checks
//! the outcome the corpus expectations pin down, then the properties that
//! sizes alone cannot show: orientation, colour management, transparency,
//! animation timing and the speed of rejecting bombs.
//!
//! Set `IMGFLUX_SAVE_OUTPUT=DIR` to write every output image to DIR for a
//! look by eye.

mod support;

use std::cell::RefCell;
use std::io::Cursor;
use std::time::{Duration, Instant};

use image::{AnimationDecoder, DynamicImage, ImageFormat};
use imgflux::error::ApiError;
use imgflux::options::{FormatRequest, ProcessOptions};
use imgflux::pipeline::{process, Job, Limits, Output, OutputFormat, Scratch};

use support::compare::{mean_absolute_difference, rmse};
use support::corpus::{
    corpus_dir, expectations, read_corpus_file, CaseRequest, CorpusCase, Expected, BOMBS,
    ICC_CASES, ICC_REFERENCE, ORIENTATION_PHOTOS,
};

fn options_for(request: &CaseRequest) -> ProcessOptions {
    let format = match request.format {
        "png" => FormatRequest::Png,
        "jpeg" => FormatRequest::Jpeg,
        "webp" => FormatRequest::Webp,
        "gif" => FormatRequest::Gif,
        "auto" => FormatRequest::Auto,
        other => panic!("unknown format '{other}' in a corpus request"),
    };
    ProcessOptions {
        width: request.width,
        height: request.height,
        format,
        ..ProcessOptions::default()
    }
}

fn run_with(
    input: &[u8],
    options: &ProcessOptions,
    limits: &Limits,
    accept_webp: bool,
) -> Result<Output, ApiError> {
    let job = Job {
        options,
        limits,
        accept_webp,
        deadline: None,
    };
    // One scratch per test thread, reused from image to image as a
    // worker reuses it, so the corpus walk also checks that reuse.
    thread_local! {
        static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
    }
    let result = SCRATCH.with(|scratch| process(input, &job, &mut scratch.borrow_mut()));
    if let (Ok(output), Ok(dir)) = (&result, std::env::var("IMGFLUX_SAVE_OUTPUT")) {
        save_output(&dir, output);
    }
    result
}

fn run(input: &[u8], options: &ProcessOptions) -> Result<Output, ApiError> {
    run_with(input, options, &Limits::default(), false)
}

fn save_output(dir: &str, output: &Output) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let extension = output.format.mime().trim_start_matches("image/");
    let number = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{dir}/{number:03}-{}.{extension}", output.input_format);
    std::fs::write(&name, &output.bytes)
        .unwrap_or_else(|error| panic!("cannot write {name}: {error}"));
}

fn format_name(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Png => "png",
        OutputFormat::Jpeg => "jpeg",
        OutputFormat::Webp => "webp",
        OutputFormat::Gif => "gif",
    }
}

fn decode(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).expect("the output decodes")
}

/// Counts the frames of an output file by decoding it.
fn count_frames(bytes: &[u8]) -> usize {
    match image::guess_format(bytes).expect("the output has a known format") {
        ImageFormat::Gif => image::codecs::gif::GifDecoder::new(Cursor::new(bytes))
            .unwrap()
            .into_frames()
            .count(),
        ImageFormat::WebP => {
            let decoder = image_webp::WebPDecoder::new(Cursor::new(bytes)).unwrap();
            if decoder.is_animated() {
                decoder.num_frames() as usize
            } else {
                1
            }
        }
        _ => 1,
    }
}

/// Returns a description of how `case` failed, or `None` when it passed.
fn check_case(case: &CorpusCase) -> Option<String> {
    let input = case.read();
    let result = run(&input, &options_for(&case.request));
    match (case.expected, result) {
        (Expected::Status(status), Err(error)) if error.status() == status => None,
        (Expected::Status(status), Err(error)) => Some(format!(
            "expected status {status}, got {} ({})",
            error.status(),
            error.message()
        )),
        (Expected::Status(status), Ok(output)) => Some(format!(
            "expected status {status}, got a {}x{} {}",
            output.output_size.0,
            output.output_size.1,
            format_name(output.format)
        )),
        (Expected::Image { .. }, Err(error)) => Some(format!(
            "expected an image, got {} ({})",
            error.status(),
            error.message()
        )),
        (
            Expected::Image {
                format,
                size,
                frames,
            },
            Ok(output),
        ) => check_image(&output, format, size, frames),
    }
}

fn check_image(output: &Output, format: &str, size: (u32, u32), frames: u32) -> Option<String> {
    let actual_format = image::guess_format(&output.bytes)
        .map(|format| format!("{format:?}").to_lowercase())
        .unwrap_or_else(|_| "unknown".into());
    let decoded = image::load_from_memory(&output.bytes);
    let decoded_size = decoded
        .as_ref()
        .map(|image| (image.width(), image.height()));
    let decoded_frames = count_frames(&output.bytes) as u32;
    let expected = (format.to_string(), Ok(size), frames);
    let actual = (
        actual_format,
        decoded_size.map_err(|e| e.to_string()),
        decoded_frames,
    );
    if actual != expected {
        return Some(format!("expected {expected:?}, got {actual:?}"));
    }
    if format_name(output.format) != format || output.output_size != size || output.frames != frames
    {
        return Some(format!(
            "Output reports {:?} {:?} with {} frames",
            output.format, output.output_size, output.frames
        ));
    }
    None
}

#[test]
fn corpus_outcomes_match_expectations() {
    let cases = expectations();
    assert!(cases.len() >= 85, "only {} corpus cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            check_case(case).map(|why| format!("{} ({}): {why}", case.path, case.request.query()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn width_600_png(path: &str) -> DynamicImage {
    let options = ProcessOptions {
        width: Some(600),
        ..ProcessOptions::default()
    };
    let output = run(&read_corpus_file(path), &options).unwrap_or_else(|e| panic!("{path}: {e}"));
    decode(&output.bytes)
}

#[test]
fn orientations_match_upright_photo() {
    let upright = width_600_png(ORIENTATION_PHOTOS[0]);
    // The same photo turned 180°: what a service that ignored the tag would show.
    let turned = upright.rotate180();
    let wrong = mean_absolute_difference(&upright, &turned);
    for path in &ORIENTATION_PHOTOS[1..] {
        let oriented = width_600_png(path);
        assert_eq!((oriented.width(), oriented.height()), (600, 400), "{path}");
        let difference = mean_absolute_difference(&upright, &oriented);
        // The files differ only in the painted digit and JPEG noise.
        assert!(
            difference < 6.0,
            "{path}: mean difference {difference:.2} from orientation 1"
        );
        assert!(
            difference * 4.0 < wrong,
            "{path}: {difference:.2} is not far below {wrong:.2}"
        );
    }
}

#[test]
fn jpeg_shrink_on_load_matches_full_decode() {
    // The upright photo is 1800x1200. Before the final Lanczos3, w=900 is
    // decoded at 4/8 of that (900x600), w=600 at 3/8 (675x450), w=450 at
    // 2/8 and w=225 at 1/8.
    let input = read_corpus_file(ORIENTATION_PHOTOS[0]);
    let full = decode(&input);
    for width in [900, 600, 450, 225] {
        let options = ProcessOptions {
            width: Some(width),
            ..ProcessOptions::default()
        };
        let output = run(&input, &options).expect("the photo processes");
        let shrunk = decode(&output.bytes);
        let height = width * 2 / 3;
        assert_eq!((shrunk.width(), shrunk.height()), (width, height));
        let reference = full.resize_exact(width, height, image::imageops::FilterType::Lanczos3);
        let difference = mean_absolute_difference(&reference, &shrunk);
        assert!(
            difference < 2.0,
            "w={width}: mean difference {difference:.2} from a full-size decode"
        );
    }
}

#[test]
fn icc_profiles_convert_to_srgb() {
    let reference = decode(&read_corpus_file(ICC_REFERENCE));
    for (path, limit) in ICC_CASES {
        let output = run(&read_corpus_file(path), &ProcessOptions::default()).unwrap();
        let error = rmse(&reference, &decode(&output.bytes));
        assert!(
            error < limit,
            "{path}: RMSE {:.2} % against the sRGB reference",
            error * 100.0
        );
    }
}

#[test]
fn primaries_rotating_profile_is_applied() {
    // The profile maps stored R, G, B to G, B, R. Ignoring it leaves the
    // stored values, so every converted pixel must differ from its raw decode.
    let input = read_corpus_file("jpeg/icc_rgb_to_gbr_codelogic.jpg");
    let output = run(&input, &ProcessOptions::default()).unwrap();
    let converted = decode(&output.bytes).to_rgb8();
    let raw = decode(&input).to_rgb8();
    let mut rotated = 0;
    let mut saturated = 0;
    for (after, before) in converted.pixels().zip(raw.pixels()).step_by(97) {
        let [r, g, b] = before.0.map(i32::from);
        if r.max(g).max(b) - r.min(g).min(b) < 100 {
            continue;
        }
        saturated += 1;
        // The strongest channel moves to the next one: red to green, green to blue, blue to red.
        let strongest_before = (0..3).max_by_key(|&i| before.0[i]).unwrap();
        let strongest_after = (0..3).max_by_key(|&i| after.0[i]).unwrap();
        if strongest_after == (strongest_before + 1) % 3 {
            rotated += 1;
        }
    }
    assert!(saturated > 100, "only {saturated} saturated samples");
    assert!(
        rotated * 10 >= saturated * 9,
        "{rotated} of {saturated} saturated samples rotated"
    );
}

fn assert_colour_near(path: &str, actual: [u8; 3], expected: [u8; 3], tolerance: u8) {
    let close = actual
        .iter()
        .zip(expected)
        .all(|(a, e)| a.abs_diff(e) <= tolerance);
    assert!(
        close,
        "{path}: got {actual:?}, expected {expected:?} ± {tolerance}"
    );
}

#[test]
fn cmyk_converts_through_profile() {
    // A flat CMYK colour (C 60 %, M 0 %, Y 18 %, K 0 %) with an embedded
    // SWOP profile. LittleCMS 2, through Pillow's ImageCms at the perceptual
    // intent, renders it as sRGB (149, 213, 213). The naive formula would
    // give (153, 254, 210), and a negated decode a dark red.
    let path = "jpeg/cmyk_inverted_swop_icc.jpg";
    let output = run(&read_corpus_file(path), &ProcessOptions::default()).unwrap();
    let image = decode(&output.bytes).to_rgb8();
    for (x, y) in [(1, 1), (194, 109), (387, 217)] {
        assert_colour_near(path, image.get_pixel(x, y).0, [149, 213, 213], 3);
    }
}

#[test]
fn ycck_without_profile_is_not_negated() {
    // Red "RED" lettering on black. Pillow's libjpeg decode reads the red
    // corner as (255, 14, 23) and the black field as (1, 4, 5).
    let path = "jpeg/ycck_noprofile_pil_sample.jpg";
    let output = run(&read_corpus_file(path), &ProcessOptions::default()).unwrap();
    let image = decode(&output.bytes).to_rgb8();
    assert_colour_near(path, image.get_pixel(1, 1).0, [255, 14, 23], 12);
    assert_colour_near(path, image.get_pixel(50, 50).0, [1, 4, 5], 12);
}

#[test]
fn bombs_fail_fast_from_header() {
    for path in BOMBS {
        let input = read_corpus_file(path);
        let started = Instant::now();
        let error = run(&input, &ProcessOptions::default()).unwrap_err();
        let elapsed = started.elapsed();
        // The Pillow GIF fails as corrupt before the pixel check can run:
        // it ends inside the frame header that declares 65535x1321 px.
        let fails_as_corrupt = ["bombs/pillow_decompression_bomb.gif"];
        let expected_code = if fails_as_corrupt.contains(&path) {
            "undecodable_image"
        } else {
            "image_too_large"
        };
        assert_eq!(error.code(), expected_code, "{path}: {}", error.message());
        assert!(
            elapsed < Duration::from_millis(500),
            "{path}: rejected after {elapsed:?}"
        );
    }
}

#[test]
fn input_pixel_limit_is_inclusive() {
    let input = read_corpus_file("photos/harvesters_1165x859.jpg");
    let options = ProcessOptions {
        width: Some(100),
        ..ProcessOptions::default()
    };
    let at_limit = Limits {
        max_input_pixels: 1165 * 859,
        ..Limits::default()
    };
    assert!(run_with(&input, &options, &at_limit, false).is_ok());
    let below = Limits {
        max_input_pixels: 1165 * 859 - 1,
        ..Limits::default()
    };
    let error = run_with(&input, &options, &below, false).unwrap_err();
    assert_eq!(error.code(), "image_too_large");
}

#[test]
fn transparency_survives_resize() {
    let input = read_corpus_file("png/tbbn3p08_palette_trns.png");
    let options = ProcessOptions {
        width: Some(64),
        ..ProcessOptions::default()
    };
    let image = decode(&run(&input, &options).unwrap().bytes).to_rgba8();
    let clear = image.pixels().filter(|p| p.0[3] == 0).count();
    let opaque = image.pixels().filter(|p| p.0[3] == 255).count();
    assert!(clear > 100, "{clear} transparent pixels");
    assert!(opaque > 100, "{opaque} opaque pixels");
    // Premultiplied resizing: no dark fringe where opaque meets transparent.
    let dark_fringe = image
        .pixels()
        .filter(|p| p.0[3] > 0 && p.0[3] < 255 && p.0[..3].iter().all(|&v| v < 16))
        .count();
    assert_eq!(dark_fringe, 0);
}

#[test]
fn jpeg_output_flattens_alpha_onto_bg() {
    let input = read_corpus_file("gif/transparent_alpha_gif_a.gif");
    let source = decode(&input).to_rgba8();
    let clear = source
        .enumerate_pixels()
        .find(|(_, _, p)| p.0[3] == 0)
        .map(|(x, y, _)| (x, y))
        .expect("the GIF has transparent pixels");
    let options = ProcessOptions {
        format: FormatRequest::Jpeg,
        ..ProcessOptions::default()
    };
    let output = decode(&run(&input, &options).unwrap().bytes);
    assert!(!output.color().has_alpha());
    let pixel = output.to_rgb8().get_pixel(clear.0, clear.1).0;
    assert!(
        pixel.iter().all(|&v| v > 240),
        "transparent pixel became {pixel:?}, not white"
    );
}

#[test]
fn png_output_keeps_alpha_and_depth() {
    let sixteen = run(
        &read_corpus_file("png/basn6a16_rgba16.png"),
        &ProcessOptions::default(),
    )
    .unwrap();
    assert_eq!(decode(&sixteen.bytes).color(), image::ColorType::Rgba16);
    let grey_alpha = run(
        &read_corpus_file("png/basn4a08_gray_alpha.png"),
        &ProcessOptions::default(),
    )
    .unwrap();
    assert_eq!(decode(&grey_alpha.bytes).color(), image::ColorType::La8);
    let keyed = run(
        &read_corpus_file("png/tbrn2c08_rgb_trns_key.png"),
        &ProcessOptions::default(),
    )
    .unwrap();
    let keyed = decode(&keyed.bytes).to_rgba8();
    assert!(
        keyed.pixels().any(|p| p.0[3] == 0),
        "the colour key became opaque"
    );
}

#[test]
fn palette_input_stays_small() {
    let input = read_corpus_file("png/basn3p02_palette2bit.png");
    let output = run(&input, &ProcessOptions::default()).unwrap();
    assert!(
        output.bytes.len() <= 2 * input.len(),
        "{} bytes from a {}-byte palette PNG",
        output.bytes.len(),
        input.len()
    );
    assert_eq!(decode(&output.bytes).to_rgb8(), decode(&input).to_rgb8());
}

#[test]
fn gif_animation_keeps_delays_and_loop() {
    let input = read_corpus_file("gif/animated_muybridge_15f.gif");
    let options = ProcessOptions {
        format: FormatRequest::Auto,
        ..ProcessOptions::default()
    };
    let output = run(&input, &options).unwrap();
    let delays = |bytes: &[u8]| -> (Vec<u16>, gif::Repeat) {
        let mut options = gif::DecodeOptions::new();
        options.skip_frame_decoding(true);
        let mut decoder = options.read_info(Cursor::new(bytes)).unwrap();
        let mut delays = Vec::new();
        while let Some(frame) = decoder.read_next_frame().unwrap() {
            delays.push(frame.delay);
        }
        (delays, decoder.repeat())
    };
    assert_eq!(delays(&output.bytes), delays(&input));
}

#[test]
fn webp_animation_keeps_durations() {
    let input = read_corpus_file("webp/animated_rotating_squares_9f.webp");
    let options = ProcessOptions {
        width: Some(40),
        format: FormatRequest::Auto,
        ..ProcessOptions::default()
    };
    let output = run(&input, &options).unwrap();
    let durations = |bytes: &[u8]| -> (Vec<u32>, image_webp::LoopCount) {
        let mut decoder = image_webp::WebPDecoder::new(Cursor::new(bytes)).unwrap();
        let mut buffer = vec![0; decoder.output_buffer_size().unwrap()];
        let durations = (0..decoder.num_frames())
            .map(|_| decoder.read_frame(&mut buffer).unwrap())
            .collect();
        (durations, decoder.loop_count())
    };
    assert_eq!(durations(&output.bytes), durations(&input));
}

#[test]
fn gif_to_webp_keeps_animation() {
    let input = read_corpus_file("gif/animated_rotating_squares_30f.gif");
    let options = ProcessOptions {
        format: FormatRequest::Webp,
        ..ProcessOptions::default()
    };
    let output = run(&input, &options).unwrap();
    assert_eq!(output.frames, 30);
    // libwebp merges identical consecutive frames into one longer frame,
    // so the frame count may drop while the total duration stays.
    let gif_total: u32 = image::codecs::gif::GifDecoder::new(Cursor::new(&input))
        .unwrap()
        .into_frames()
        .map(|frame| {
            let (numerator, denominator) = frame.unwrap().delay().numer_denom_ms();
            numerator / denominator
        })
        .sum();
    let decoder = image_webp::WebPDecoder::new(Cursor::new(&output.bytes[..])).unwrap();
    assert!(decoder.num_frames() > 1, "{} frames", decoder.num_frames());
    assert_eq!(decoder.loop_duration(), u64::from(gif_total));
}

#[test]
fn animation_over_frame_limit_is_rejected() {
    let input = read_corpus_file("gif/animated_rotating_squares_30f.gif");
    let limits = Limits {
        max_frames: 29,
        ..Limits::default()
    };
    let auto = ProcessOptions {
        format: FormatRequest::Auto,
        ..ProcessOptions::default()
    };
    let error = run_with(&input, &auto, &limits, false).unwrap_err();
    assert_eq!(error.status(), 422);
    assert!(
        error.message().contains("max_frames"),
        "{}",
        error.message()
    );
    // The first frame alone is within the limit.
    let still = run_with(&input, &ProcessOptions::default(), &limits, false).unwrap();
    assert_eq!(still.frames, 1);
}

#[test]
fn auto_format_follows_accept() {
    let input = read_corpus_file("photos/harvesters_1165x859.jpg");
    let options = ProcessOptions {
        width: Some(300),
        format: FormatRequest::Auto,
        ..ProcessOptions::default()
    };
    let with_webp = run_with(&input, &options, &Limits::default(), true).unwrap();
    assert_eq!(with_webp.format, OutputFormat::Webp);
    assert!(with_webp.varies_on_accept);
    assert_eq!(
        image::guess_format(&with_webp.bytes).unwrap(),
        ImageFormat::WebP
    );
    let without_webp = run_with(&input, &options, &Limits::default(), false).unwrap();
    assert_eq!(without_webp.format, OutputFormat::Jpeg);
    assert!(without_webp.varies_on_accept);
    let png_input = read_corpus_file("png/basn2c08_rgb8.png");
    let png = run_with(&png_input, &options, &Limits::default(), true).unwrap();
    assert_eq!(png.format, OutputFormat::Png);
    assert!(!png.varies_on_accept);
}

#[test]
fn webp_output_over_format_limit_is_422() {
    let limits = Limits {
        max_output_side: 30000,
        ..Limits::default()
    };
    let options = ProcessOptions {
        format: FormatRequest::Webp,
        ..ProcessOptions::default()
    };
    for path in ["dims/wide_20000x2.jpg", "dims/tall_64x20000.gif"] {
        let error = run_with(&read_corpus_file(path), &options, &limits, false).unwrap_err();
        assert_eq!(error.status(), 422, "{path}");
        assert!(
            error.message().contains("16383"),
            "{path}: {}",
            error.message()
        );
    }
}

#[test]
fn unsupported_formats_are_named() {
    let cases = [
        ("unsupported/thumbor_image.avif", Some("AVIF")),
        ("unsupported/thumbor_image.heic", Some("HEIC/HEIF")),
        ("unsupported/svg_external_entity.svg", Some("SVG")),
        ("malformed/text_renamed.jpg", None),
    ];
    for (path, name) in cases {
        let error = run(&read_corpus_file(path), &ProcessOptions::default()).unwrap_err();
        assert_eq!(
            error,
            ApiError::UnsupportedImageFormat { detected: name },
            "{path}"
        );
    }
}

#[test]
fn peacock_subsampling_matches_progressive() {
    let weird = decode(
        &run(
            &read_corpus_file("jpeg/subsampling_4x1_2x1_2x2_peacock.jpg"),
            &ProcessOptions::default(),
        )
        .unwrap()
        .bytes,
    );
    let progressive = decode(
        &run(
            &read_corpus_file("jpeg/progressive_peacock.jpg"),
            &ProcessOptions::default(),
        )
        .unwrap()
        .bytes,
    );
    let difference = mean_absolute_difference(&weird, &progressive);
    assert!(difference < 8.0, "mean difference {difference:.2}");
}

#[test]
fn reused_scratch_matches_fresh_scratch() {
    // A large photo leaves large buffers behind. Each smaller, grey,
    // transparent or differently subsampled image decoded or resized into
    // them must come out byte for byte as it does with fresh buffers.
    let cases = [
        ("photos/portrait_1200x1800.jpg", 500),
        ("jpeg/baseline_testorig.jpg", 100),
        ("png/basi6a08_interlaced_rgba.png", 20),
        ("jpeg/grayscale_dotgain20_icc.jpg", 90),
        ("png/basn4a08_gray_alpha.png", 17),
        ("jpeg/subsampling_4x1_2x1_2x2_peacock.jpg", 70),
        ("photos/harvesters_1165x859.jpg", 300),
    ];
    let limits = Limits::default();
    let mut reused = Scratch::new();
    for (path, width) in cases {
        let input = read_corpus_file(path);
        let options = ProcessOptions {
            width: Some(width),
            ..ProcessOptions::default()
        };
        let job = Job {
            options: &options,
            limits: &limits,
            accept_webp: false,
            deadline: None,
        };
        let with_reuse = process(&input, &job, &mut reused).expect("the image processes");
        let fresh = process(&input, &job, &mut Scratch::new()).expect("the image processes");
        assert_eq!(with_reuse.output_size, fresh.output_size, "{path}");
        assert!(with_reuse.bytes == fresh.bytes, "{path}: outputs differ");
        assert!(reused.retained_bytes() > 0, "{path}: nothing was kept");
    }
}

/// Reads a photo from the bench images beside the corpus.
fn read_bench_image(name: &str) -> Vec<u8> {
    let path = corpus_dir().with_file_name("bench-images").join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

fn read_fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
}

#[test]
fn bmp_header_errors_match_other_formats() {
    let cases = [
        ("bmp-0x4.bmp", "undecodable_image", "empty 0x4"),
        (
            "bmp-1x2147483647.bmp",
            "image_too_large",
            "max_input_pixels",
        ),
    ];
    for (name, code, message) in cases {
        let started = Instant::now();
        let error = run(&read_fixture(name), &ProcessOptions::default()).unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(error.code(), code, "{name}: {}", error.message());
        assert!(
            error.message().contains(message),
            "{name}: {}",
            error.message()
        );
        assert!(
            elapsed < Duration::from_millis(500),
            "{name}: rejected after {elapsed:?}"
        );
    }
}

#[test]
fn deadline_stops_long_encode() {
    // The photo at its own size, so no resize runs: the WebP encode alone
    // takes about 3 s in release mode on the 2-core development machine.
    let input = read_bench_image("photo-12mp-4032x3024.jpg");
    let options = ProcessOptions {
        format: FormatRequest::Webp,
        quality: 100,
        ..ProcessOptions::default()
    };
    let limits = Limits::default();
    let started = Instant::now();
    let job = Job {
        options: &options,
        limits: &limits,
        accept_webp: false,
        deadline: Some(started + Duration::from_secs(1)),
    };
    let result = process(&input, &job, &mut Scratch::new());
    let elapsed = started.elapsed();
    assert_eq!(result.err(), Some(ApiError::RequestTimeout));
    assert!(
        elapsed < Duration::from_millis(2500),
        "stopped {elapsed:?} after a deadline of 1 s"
    );
}
