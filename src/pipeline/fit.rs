//! Output geometry: which part of the image is scaled to what size, and
//! where it sits on the output canvas.
//!
//! This is pure arithmetic on the oriented source size and the request, so
//! every mode is unit-tested without pixels. Sizes are rounded half up in
//! integer arithmetic, so the side that sets the scale is exactly the
//! requested value, and no side is ever rounded down to 0 px. The result is
//! checked against the output limits before any pixel work starts.

use image::metadata::Orientation;

use crate::error::ApiError;
use crate::options::{Fit, Gravity, ProcessOptions};

use super::{orient, Context, Limits, OutputFormat};

/// A rectangle of source pixels; fractional for `fit=cover`, so the crop
/// has exactly the aspect ratio of the box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropRect {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl CropRect {
    /// Returns the rectangle that covers a whole image of `size`.
    pub fn full(size: (u32, u32)) -> CropRect {
        CropRect {
            left: 0.0,
            top: 0.0,
            width: f64::from(size.0),
            height: f64::from(size.1),
        }
    }

    /// Returns whether the rectangle covers a whole image of `size`.
    pub fn is_full(&self, size: (u32, u32)) -> bool {
        *self == CropRect::full(size)
    }

    /// Returns the rectangle in the coordinates of an image decoded at
    /// `scale` of its stored size.
    pub fn scaled(&self, scale: DctScale) -> CropRect {
        let factor = scale.factor();
        CropRect {
            left: self.left * factor,
            top: self.top * factor,
            width: self.width * factor,
            height: self.height * factor,
        }
    }
}

/// Size at which the JPEG decoder delivers pixels: `eighths / 8` of each
/// stored side, rounded up.
///
/// libjpeg-turbo scales inside the inverse DCT, running an N×N transform
/// on each 8×8 block. Only the scales in [`DctScale::CHOICES`] are used:
/// 5/8, 6/8 and 7/8 have no SIMD code and decode slower than the full size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DctScale {
    eighths: u8,
}

impl DctScale {
    /// The full stored size, at which every format but JPEG decodes.
    pub const FULL: DctScale = DctScale { eighths: 8 };

    /// The scales chosen from, smallest first.
    const CHOICES: [DctScale; 5] = [
        DctScale { eighths: 1 },
        DctScale { eighths: 2 },
        DctScale { eighths: 3 },
        DctScale { eighths: 4 },
        DctScale::FULL,
    ];

    /// Returns the numerator over 8, as libjpeg's `scale_num` takes it.
    pub fn eighths(self) -> u8 {
        self.eighths
    }

    /// Returns the scale as a fraction of the stored size.
    pub fn factor(self) -> f64 {
        f64::from(self.eighths) / 8.0
    }
}

/// Source rectangle, scaled size and canvas placement of the output, in
/// displayed (already oriented) coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Part of the source that is scaled: the whole image unless `fit=cover` crops.
    pub crop: CropRect,
    /// Size that the cropped source is scaled to.
    pub scaled: (u32, u32),
    /// Size of the output; larger than `scaled` only when `fit=contain` pads.
    pub canvas: (u32, u32),
    /// Top-left position of the scaled image on the canvas.
    pub offset: (u32, u32),
}

impl Geometry {
    fn unscaled(source: (u32, u32)) -> Geometry {
        Geometry::scaled_whole(source, source)
    }

    fn scaled_whole(source: (u32, u32), scaled: (u32, u32)) -> Geometry {
        Geometry {
            crop: CropRect::full(source),
            scaled,
            canvas: scaled,
            offset: (0, 0),
        }
    }
}

/// Stage: computes the geometry from the displayed size of the source.
///
/// The geometry refers to the stored size from the header, even when the
/// JPEG decoder has already scaled the pixels down. `resize` maps the crop
/// onto the scaled image.
pub fn stage(context: &mut Context<'_>) -> Result<(), ApiError> {
    let displayed = orient::displayed_size(context.stored_size, context.orientation);
    let geometry = compute(displayed, context.job.options, context.job.limits)?;
    check_format_limits(geometry.canvas, context.output_format)?;
    let frames = u32::try_from(context.frames.len()).unwrap_or(u32::MAX);
    check_animation_limits(geometry.canvas, frames, context.job.limits)?;
    context.geometry = Some(geometry);
    Ok(())
}

/// Rejects a kept animation whose frames together exceed
/// `max_output_pixels`, because every resized frame is held in memory
/// until the encoder has written them all.
fn check_animation_limits(
    canvas: (u32, u32),
    frames: u32,
    limits: &Limits,
) -> Result<(), ApiError> {
    let (width, height) = canvas;
    let pixels = u64::from(width) * u64::from(height) * u64::from(frames.max(1));
    if frames <= 1 || pixels <= limits.max_output_pixels {
        return Ok(());
    }
    Err(ApiError::OutputTooLarge(format!(
        "the output would be {frames} frames of {width}x{height} = {pixels} px, over the \
         maximum of {} px (max_output_pixels); request a smaller w or h, or format=png for \
         the first frame only",
        limits.max_output_pixels
    )))
}

/// Returns the smallest JPEG decode scale (shrink-on-load) that still
/// leaves at least the output's pixels in both directions.
///
/// The resize that follows then never enlarges, so the output keeps the
/// detail of a full-size decode up to the DCT-domain filter. Invalid
/// requests get the full scale here and their error from [`stage`].
pub fn jpeg_scale(
    stored: (u32, u32),
    orientation: Orientation,
    options: &ProcessOptions,
    limits: &Limits,
) -> DctScale {
    let displayed = orient::displayed_size(stored, orientation);
    let Ok(geometry) = compute(displayed, options, limits) else {
        return DctScale::FULL;
    };
    let crop = orient::crop_to_stored(geometry.crop, stored, orientation);
    let target = orient::to_stored_size(geometry.scaled, orientation);
    DctScale::CHOICES
        .into_iter()
        .find(|&scale| {
            let covered = crop.scaled(scale);
            covered.width >= f64::from(target.0) && covered.height >= f64::from(target.1)
        })
        .unwrap_or(DctScale::FULL)
}

/// Maximum JPEG side that libjpeg-turbo writes (its `JPEG_MAX_DIMENSION`),
/// below the format's own 65535.
pub const MAX_JPEG_SIDE: u32 = 65500;

/// Rejects an output larger than its format or encoder can store: 16383 px
/// per side for WebP, 65500 for JPEG and 65535 for GIF.
pub fn check_format_limits(canvas: (u32, u32), format: OutputFormat) -> Result<(), ApiError> {
    let (name, max_side) = match format {
        OutputFormat::Webp => ("WebP", 16383),
        OutputFormat::Jpeg => ("JPEG", MAX_JPEG_SIDE),
        OutputFormat::Gif => ("GIF", 65535),
        OutputFormat::Png => return Ok(()),
    };
    let (width, height) = canvas;
    if width.max(height) <= max_side {
        return Ok(());
    }
    Err(ApiError::OutputTooLarge(format!(
        "{name} stores at most {max_side} px per side and the output would be {width}x{height} px; \
         request a smaller w or h or another format"
    )))
}

/// Computes the geometry for a source of `source` pixels (width, height,
/// after orientation) and checks it against the output limits.
///
/// Returns `InvalidParameter` (400) when `w` or `h` alone exceeds
/// `max_output_side`, and `OutputTooLarge` (422) when the output computed
/// from this image exceeds `max_output_side` or `max_output_pixels`. A
/// source with a zero side is a bug in the caller (the probe rejects such
/// images), reported as `Internal` rather than divided by.
pub fn compute(
    source: (u32, u32),
    options: &ProcessOptions,
    limits: &Limits,
) -> Result<Geometry, ApiError> {
    if source.0 == 0 || source.1 == 0 {
        return Err(ApiError::Internal(format!(
            "fit got an empty {}x{} px source",
            source.0, source.1
        )));
    }
    check_requested_sides(options, limits)?;
    let enlarge = options.enlarge;
    let geometry = match (options.width, options.height) {
        (None, None) => Geometry::unscaled(source),
        (Some(width), None) => scale_to_width(source, width, enlarge),
        (None, Some(height)) => scale_to_height(source, height, enlarge),
        (Some(width), Some(height)) => {
            let target = (width, height);
            match options.fit {
                Fit::Inside => inside(source, target, enlarge),
                Fit::Contain => contain(source, target, enlarge, options.gravity),
                Fit::Cover => cover(source, target, enlarge, options.gravity),
                Fit::Fill => fill(source, target, enlarge),
            }
        }
    };
    check_output_limits(geometry.canvas, limits)?;
    Ok(geometry)
}

/// Returns `value × numerator / denominator` rounded half up, at least 1
/// and saturated at `u32::MAX` (which the output limits then reject).
fn scale_side(value: u32, numerator: u32, denominator: u32) -> u32 {
    let product = u128::from(value) * u128::from(numerator) * 2 + u128::from(denominator);
    let rounded = product / (2 * u128::from(denominator));
    u32::try_from(rounded).unwrap_or(u32::MAX).max(1)
}

fn scale_to_width(source: (u32, u32), width: u32, enlarge: bool) -> Geometry {
    if !enlarge && width > source.0 {
        return Geometry::unscaled(source);
    }
    let height = scale_side(source.1, width, source.0);
    Geometry::scaled_whole(source, (width, height))
}

fn scale_to_height(source: (u32, u32), height: u32, enlarge: bool) -> Geometry {
    if !enlarge && height > source.1 {
        return Geometry::unscaled(source);
    }
    let width = scale_side(source.0, height, source.1);
    Geometry::scaled_whole(source, (width, height))
}

/// Returns whether the box is relatively wider than the source, comparing
/// `target.0 / source.0` with `target.1 / source.1` without division.
fn width_ratio_is_larger(source: (u32, u32), target: (u32, u32)) -> bool {
    u64::from(target.0) * u64::from(source.1) >= u64::from(target.1) * u64::from(source.0)
}

fn inside(source: (u32, u32), target: (u32, u32), enlarge: bool) -> Geometry {
    if width_ratio_is_larger(source, target) {
        scale_to_height(source, target.1, enlarge)
    } else {
        scale_to_width(source, target.0, enlarge)
    }
}

fn contain(source: (u32, u32), target: (u32, u32), enlarge: bool, gravity: Gravity) -> Geometry {
    let inner = inside(source, target, enlarge);
    let (weight_x, weight_y) = gravity_weights(gravity);
    let free_x = f64::from(target.0 - inner.scaled.0);
    let free_y = f64::from(target.1 - inner.scaled.1);
    Geometry {
        canvas: target,
        offset: (
            (free_x * weight_x).floor() as u32,
            (free_y * weight_y).floor() as u32,
        ),
        ..inner
    }
}

fn cover(source: (u32, u32), target: (u32, u32), enlarge: bool, gravity: Gravity) -> Geometry {
    let (source_w, source_h) = (f64::from(source.0), f64::from(source.1));
    let (target_w, target_h) = (f64::from(target.0), f64::from(target.1));
    let width_sets_scale = width_ratio_is_larger(source, target);
    let scale = if width_sets_scale {
        target_w / source_w
    } else {
        target_h / source_h
    };
    let (weight_x, weight_y) = gravity_weights(gravity);

    if !enlarge && scale > 1.0 {
        // Keep the box's aspect ratio but take the crop 1:1 from the source,
        // on whole pixels, so no pixel is resampled.
        let scaled = if width_sets_scale {
            (
                source.0,
                scale_side(target.1, source.0, target.0).min(source.1),
            )
        } else {
            (
                scale_side(target.0, source.1, target.1).min(source.0),
                source.1,
            )
        };
        let crop = CropRect {
            left: (f64::from(source.0 - scaled.0) * weight_x).floor(),
            top: (f64::from(source.1 - scaled.1) * weight_y).floor(),
            width: f64::from(scaled.0),
            height: f64::from(scaled.1),
        };
        return Geometry {
            crop,
            scaled,
            canvas: scaled,
            offset: (0, 0),
        };
    }

    let (crop_w, crop_h) = if width_sets_scale {
        (source_w, (target_h / scale).min(source_h))
    } else {
        ((target_w / scale).min(source_w), source_h)
    };
    let crop = CropRect {
        left: (source_w - crop_w) * weight_x,
        top: (source_h - crop_h) * weight_y,
        width: crop_w,
        height: crop_h,
    };
    Geometry {
        crop,
        scaled: target,
        canvas: target,
        offset: (0, 0),
    }
}

fn fill(source: (u32, u32), target: (u32, u32), enlarge: bool) -> Geometry {
    let scaled = if enlarge {
        target
    } else {
        (target.0.min(source.0), target.1.min(source.1))
    };
    Geometry::scaled_whole(source, scaled)
}

/// Returns where the kept part sits: 0 is the left or top edge, 1 the
/// right or bottom edge.
fn gravity_weights(gravity: Gravity) -> (f64, f64) {
    match gravity {
        Gravity::Center => (0.5, 0.5),
        Gravity::North => (0.5, 0.0),
        Gravity::South => (0.5, 1.0),
        Gravity::East => (1.0, 0.5),
        Gravity::West => (0.0, 0.5),
        Gravity::NorthEast => (1.0, 0.0),
        Gravity::NorthWest => (0.0, 0.0),
        Gravity::SouthEast => (1.0, 1.0),
        Gravity::SouthWest => (0.0, 1.0),
    }
}

fn check_requested_sides(options: &ProcessOptions, limits: &Limits) -> Result<(), ApiError> {
    let max = limits.max_output_side;
    for (name, value) in [("w", options.width), ("h", options.height)] {
        if let Some(value) = value.filter(|&value| value > max) {
            return Err(ApiError::InvalidParameter {
                name: name.to_string(),
                message: format!(
                    "{value} is over the maximum output side of {max} px (max_output_side)"
                ),
            });
        }
    }
    Ok(())
}

fn check_output_limits(canvas: (u32, u32), limits: &Limits) -> Result<(), ApiError> {
    let (width, height) = canvas;
    if width.max(height) > limits.max_output_side {
        return Err(ApiError::OutputTooLarge(format!(
            "the output would be {width}x{height} px, over the maximum of {} px per side \
             (max_output_side); request a smaller w or h",
            limits.max_output_side
        )));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_output_pixels {
        return Err(ApiError::OutputTooLarge(format!(
            "the output would be {width}x{height} = {pixels} px, over the maximum of {} px \
             (max_output_pixels); request a smaller w or h",
            limits.max_output_pixels
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(width: Option<u32>, height: Option<u32>, fit: Fit) -> ProcessOptions {
        ProcessOptions {
            width,
            height,
            fit,
            ..ProcessOptions::default()
        }
    }

    fn geometry(source: (u32, u32), options: &ProcessOptions) -> Geometry {
        compute(source, options, &Limits::default()).unwrap()
    }

    fn output_size(
        source: (u32, u32),
        width: Option<u32>,
        height: Option<u32>,
        fit: Fit,
    ) -> (u32, u32) {
        geometry(source, &request(width, height, fit)).canvas
    }

    #[test]
    fn animation_limit_counts_every_frame() {
        let limits = Limits {
            max_output_pixels: 1000,
            ..Limits::default()
        };
        assert!(check_animation_limits((10, 10), 10, &limits).is_ok());
        assert!(check_animation_limits((40, 25), 1, &limits).is_ok());
        let error = check_animation_limits((10, 10), 11, &limits).unwrap_err();
        assert_eq!(error.code(), "output_too_large");
        assert!(error.message().contains("11 frames"), "{}", error.message());
    }

    #[test]
    fn empty_source_is_internal_error() {
        let fits = [Fit::Inside, Fit::Cover, Fit::Fill, Fit::Contain];
        for source in [(0, 0), (0, 7), (7, 0)] {
            for fit in fits {
                for (width, height) in [(Some(2), None), (None, Some(2)), (Some(2), Some(3))] {
                    let options = request(width, height, fit);
                    let error = compute(source, &options, &Limits::default()).unwrap_err();
                    assert_eq!(error.status(), 500, "{source:?} {fit:?}");
                }
            }
        }
    }

    #[test]
    fn no_size_keeps_source() {
        let result = geometry((227, 149), &request(None, None, Fit::Cover));
        assert!(result.crop.is_full((227, 149)));
        assert_eq!(result.scaled, (227, 149));
        assert_eq!(result.canvas, (227, 149));
    }

    #[test]
    fn width_only_keeps_aspect() {
        assert_eq!(
            output_size((227, 149), Some(100), None, Fit::Inside),
            (100, 66)
        );
        assert_eq!(
            output_size((1800, 1200), Some(600), None, Fit::Inside),
            (600, 400)
        );
        assert_eq!(
            output_size((1165, 859), Some(300), None, Fit::Inside),
            (300, 221)
        );
    }

    #[test]
    fn height_only_keeps_aspect() {
        assert_eq!(
            output_size((1200, 1800), None, Some(900), Fit::Inside),
            (600, 900)
        );
        assert_eq!(
            output_size((227, 149), None, Some(50), Fit::Inside),
            (76, 50)
        );
    }

    #[test]
    fn single_side_ignores_fit_mode() {
        for fit in [Fit::Inside, Fit::Cover, Fit::Fill, Fit::Contain] {
            assert_eq!(
                output_size((400, 200), Some(100), None, fit),
                (100, 50),
                "{fit:?}"
            );
        }
    }

    #[test]
    fn rounding_is_half_up() {
        // 3 × 5 / 2 = 7.5 rounds to 8; 3 × 3 / 2 = 4.5 rounds to 5.
        assert_eq!(output_size((2, 3), Some(5), None, Fit::Inside), (5, 8));
        assert_eq!(output_size((2, 3), Some(3), None, Fit::Inside), (3, 5));
        // 149 × 100 / 227 = 65.64 rounds to 66; 10 × 1 / 4 = 2.5 rounds to 3.
        assert_eq!(
            output_size((227, 149), Some(100), None, Fit::Inside),
            (100, 66)
        );
        assert_eq!(output_size((4, 10), Some(1), None, Fit::Inside), (1, 3));
    }

    #[test]
    fn extreme_aspect_never_gives_zero() {
        assert_eq!(
            output_size((10000, 1), Some(100), None, Fit::Inside),
            (100, 1)
        );
        assert_eq!(
            output_size((1, 10000), None, Some(100), Fit::Inside),
            (1, 100)
        );
        assert_eq!(
            output_size((10000, 1), Some(100), Some(100), Fit::Inside),
            (100, 1)
        );
        assert_eq!(
            output_size((1, 10000), Some(100), Some(100), Fit::Inside),
            (1, 100)
        );
        assert_eq!(output_size((10000, 1), Some(1), None, Fit::Inside), (1, 1));
        assert_eq!(
            output_size((1, 10000), Some(1), Some(1), Fit::Contain),
            (1, 1)
        );
    }

    #[test]
    fn extreme_aspect_cover_and_fill() {
        assert_eq!(
            output_size((10000, 1), Some(50), Some(50), Fit::Cover),
            (50, 50)
        );
        assert_eq!(
            output_size((1, 10000), Some(50), Some(50), Fit::Fill),
            (50, 50)
        );
        let crop = geometry((10000, 1), &request(Some(50), Some(50), Fit::Cover)).crop;
        assert_eq!((crop.width, crop.height), (1.0, 1.0));
        assert_eq!(crop.left, 4999.5);
    }

    #[test]
    fn one_pixel_source_scales_up() {
        assert_eq!(
            output_size((1, 1), Some(100), None, Fit::Inside),
            (100, 100)
        );
        assert_eq!(
            output_size((1, 1), Some(30), Some(20), Fit::Inside),
            (20, 20)
        );
        assert_eq!(
            output_size((1, 1), Some(30), Some(20), Fit::Cover),
            (30, 20)
        );
    }

    #[test]
    fn inside_fits_the_box() {
        assert_eq!(
            output_size((1600, 1200), Some(800), Some(800), Fit::Inside),
            (800, 600)
        );
        assert_eq!(
            output_size((1200, 1600), Some(800), Some(800), Fit::Inside),
            (600, 800)
        );
        assert_eq!(
            output_size((1000, 500), Some(300), Some(300), Fit::Inside),
            (300, 150)
        );
        // Exactly the box's aspect ratio.
        assert_eq!(
            output_size((400, 200), Some(200), Some(100), Fit::Inside),
            (200, 100)
        );
    }

    #[test]
    fn inside_without_enlarge() {
        let mut options = request(Some(800), Some(800), Fit::Inside);
        options.enlarge = false;
        assert_eq!(geometry((300, 200), &options).canvas, (300, 200));
        assert_eq!(geometry((1600, 1200), &options).canvas, (800, 600));
        let mut width_only = request(Some(500), None, Fit::Inside);
        width_only.enlarge = false;
        assert_eq!(geometry((300, 200), &width_only).canvas, (300, 200));
        assert_eq!(geometry((600, 200), &width_only).canvas, (500, 167));
    }

    #[test]
    fn cover_crops_centre() {
        let result = geometry((1600, 1200), &request(Some(400), Some(400), Fit::Cover));
        assert_eq!(result.canvas, (400, 400));
        assert_eq!(result.scaled, (400, 400));
        assert_eq!(
            result.crop,
            CropRect {
                left: 200.0,
                top: 0.0,
                width: 1200.0,
                height: 1200.0
            }
        );
    }

    #[test]
    fn cover_follows_gravity() {
        let mut options = request(Some(400), Some(400), Fit::Cover);
        let expected_left = [
            (Gravity::West, 0.0),
            (Gravity::NorthWest, 0.0),
            (Gravity::East, 400.0),
            (Gravity::SouthEast, 400.0),
            (Gravity::North, 200.0),
        ];
        for (gravity, left) in expected_left {
            options.gravity = gravity;
            let crop = geometry((1600, 1200), &options).crop;
            assert_eq!(crop.left, left, "{gravity:?}");
            assert_eq!(crop.top, 0.0, "{gravity:?}");
        }
        options.gravity = Gravity::South;
        let crop = geometry((1200, 1600), &options).crop;
        assert_eq!((crop.left, crop.top), (0.0, 400.0));
        options.gravity = Gravity::North;
        let crop = geometry((1200, 1600), &options).crop;
        assert_eq!((crop.left, crop.top), (0.0, 0.0));
    }

    #[test]
    fn cover_crop_keeps_box_aspect() {
        let result = geometry((1165, 859), &request(Some(300), Some(100), Fit::Cover));
        let crop = result.crop;
        assert_eq!(crop.width, 1165.0);
        assert!((crop.width / crop.height - 3.0).abs() < 1e-9, "{crop:?}");
        assert!(
            crop.top > 0.0 && crop.top + crop.height <= 859.0,
            "{crop:?}"
        );
    }

    #[test]
    fn cover_without_enlarge_crops_one_to_one() {
        let mut options = request(Some(200), Some(50), Fit::Cover);
        options.enlarge = false;
        let result = geometry((100, 100), &options);
        assert_eq!(result.canvas, (100, 25));
        assert_eq!(result.scaled, (100, 25));
        assert_eq!(
            result.crop,
            CropRect {
                left: 0.0,
                top: 37.0,
                width: 100.0,
                height: 25.0
            }
        );
        // A source larger than the box is still scaled down.
        assert_eq!(geometry((1000, 1000), &options).canvas, (200, 50));
    }

    #[test]
    fn fill_stretches() {
        assert_eq!(
            output_size((1600, 1200), Some(100), Some(300), Fit::Fill),
            (100, 300)
        );
        let mut options = request(Some(100), Some(300), Fit::Fill);
        options.enlarge = false;
        assert_eq!(geometry((200, 200), &options).canvas, (100, 200));
    }

    #[test]
    fn contain_pads_to_box() {
        let result = geometry((1600, 1200), &request(Some(400), Some(400), Fit::Contain));
        assert_eq!(result.canvas, (400, 400));
        assert_eq!(result.scaled, (400, 300));
        assert_eq!(result.offset, (0, 50));
        let mut options = request(Some(400), Some(400), Fit::Contain);
        options.gravity = Gravity::South;
        assert_eq!(geometry((1600, 1200), &options).offset, (0, 100));
        options.gravity = Gravity::West;
        assert_eq!(geometry((1200, 1600), &options).offset, (0, 0));
        options.gravity = Gravity::East;
        assert_eq!(geometry((1200, 1600), &options).offset, (100, 0));
    }

    #[test]
    fn contain_without_enlarge_centres_source() {
        let mut options = request(Some(400), Some(400), Fit::Contain);
        options.enlarge = false;
        let result = geometry((100, 50), &options);
        assert_eq!(result.canvas, (400, 400));
        assert_eq!(result.scaled, (100, 50));
        assert_eq!(result.offset, (150, 175));
    }

    #[test]
    fn odd_padding_rounds_down() {
        let result = geometry((10, 5), &request(Some(10), Some(10), Fit::Contain));
        assert_eq!(result.scaled, (10, 5));
        assert_eq!(result.offset, (0, 2));
    }

    /// Returns the chosen JPEG decode scale in eighths.
    fn eighths(stored: (u32, u32), orientation: Orientation, options: &ProcessOptions) -> u8 {
        jpeg_scale(stored, orientation, options, &Limits::default()).eighths()
    }

    #[test]
    fn jpeg_scale_keeps_target_covered() {
        let upright = Orientation::NoTransforms;
        let width = |value| request(Some(value), None, Fit::Inside);
        assert_eq!(eighths((1600, 1200), upright, &width(800)), 4);
        assert_eq!(eighths((1600, 1200), upright, &width(801)), 8);
        assert_eq!(eighths((1600, 1200), upright, &width(600)), 3);
        assert_eq!(eighths((1600, 1200), upright, &width(601)), 4);
        assert_eq!(eighths((1600, 1200), upright, &width(400)), 2);
        assert_eq!(eighths((1600, 1200), upright, &width(399)), 2);
        assert_eq!(eighths((1600, 1200), upright, &width(200)), 1);
        assert_eq!(eighths((1600, 1200), upright, &width(16)), 1);
        assert_eq!(eighths((4032, 3024), upright, &width(1024)), 3);
        assert_eq!(eighths((4032, 3024), upright, &width(1512)), 3);
        assert_eq!(eighths((4032, 3024), upright, &width(1513)), 4);
        assert_eq!(eighths((4032, 3024), upright, &width(1008)), 2);
    }

    #[test]
    fn jpeg_scale_is_full_without_downscale() {
        let upright = Orientation::NoTransforms;
        let unscaled = request(None, None, Fit::Inside);
        assert_eq!(eighths((1600, 1200), upright, &unscaled), 8);
        let enlarge = request(Some(400), None, Fit::Inside);
        assert_eq!(eighths((100, 100), upright, &enlarge), 8);
        let mut no_enlarge = request(Some(400), None, Fit::Inside);
        no_enlarge.enlarge = false;
        assert_eq!(eighths((100, 100), upright, &no_enlarge), 8);
        // An invalid request gets its error from the fit stage, not here.
        assert_eq!(eighths((100, 100), upright, &width_over_limit()), 8);
    }

    fn width_over_limit() -> ProcessOptions {
        request(
            Some(Limits::default().max_output_side + 1),
            None,
            Fit::Inside,
        )
    }

    #[test]
    fn jpeg_scale_uses_stored_axes() {
        // Stored 1200x1600 and turned to 1600x1200: w=400 is 400x300
        // displayed, 300x400 stored, which 2/8 of the stored size covers.
        let options = request(Some(400), None, Fit::Inside);
        assert_eq!(eighths((1200, 1600), Orientation::Rotate90, &options), 2);
        // A box that is tall when displayed, on a photo stored wide.
        let tall = request(Some(150), Some(800), Fit::Fill);
        assert_eq!(eighths((1600, 1200), Orientation::NoTransforms, &tall), 8);
        assert_eq!(eighths((1600, 1200), Orientation::Rotate270, &tall), 4);
    }

    #[test]
    fn jpeg_scale_counts_only_the_crop() {
        // fit=cover keeps a 1200x1200 square of a 1600x1200 photo.
        let square = request(Some(300), Some(300), Fit::Cover);
        assert_eq!(eighths((1600, 1200), Orientation::NoTransforms, &square), 2);
        let larger = request(Some(301), Some(301), Fit::Cover);
        assert_eq!(eighths((1600, 1200), Orientation::NoTransforms, &larger), 3);
    }

    #[test]
    fn dct_scale_choices_ascend_to_full() {
        let eighths: Vec<u8> = DctScale::CHOICES
            .iter()
            .map(|scale| scale.eighths())
            .collect();
        assert_eq!(eighths, [1, 2, 3, 4, 8]);
        assert_eq!(DctScale::CHOICES[2].factor(), 0.375);
    }

    #[test]
    fn crop_scales_every_edge() {
        let crop = CropRect {
            left: 10.0,
            top: 20.0,
            width: 300.0,
            height: 5.0,
        };
        let expected = CropRect {
            left: 2.5,
            top: 5.0,
            width: 75.0,
            height: 1.25,
        };
        let quarter = DctScale { eighths: 2 };
        assert_eq!(crop.scaled(quarter), expected);
        assert_eq!(crop.scaled(DctScale::FULL), crop);
    }

    #[test]
    fn requested_side_over_limit_is_400() {
        let limits = Limits {
            max_output_side: 1000,
            ..Limits::default()
        };
        let error =
            compute((100, 100), &request(Some(1001), None, Fit::Inside), &limits).unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(
            error.message().contains("max_output_side"),
            "{}",
            error.message()
        );
        let at_limit = compute((100, 100), &request(Some(1000), None, Fit::Inside), &limits);
        assert_eq!(at_limit.unwrap().canvas, (1000, 1000));
    }

    #[test]
    fn computed_side_over_limit_is_422() {
        let limits = Limits {
            max_output_side: 8192,
            ..Limits::default()
        };
        let error = compute((20000, 2), &request(None, None, Fit::Inside), &limits).unwrap_err();
        assert_eq!(error.status(), 422);
        assert!(
            error.message().contains("max_output_side"),
            "{}",
            error.message()
        );
        let error = compute((1, 10000), &request(Some(2), None, Fit::Inside), &limits).unwrap_err();
        assert!(error.message().contains("2x20000"), "{}", error.message());
    }

    #[test]
    fn output_pixels_over_limit_is_422() {
        let limits = Limits {
            max_output_pixels: 1_000_000,
            ..Limits::default()
        };
        let ok = compute((100, 100), &request(Some(1000), None, Fit::Inside), &limits);
        assert_eq!(ok.unwrap().canvas, (1000, 1000));
        let error =
            compute((100, 100), &request(Some(1001), None, Fit::Inside), &limits).unwrap_err();
        assert_eq!(error.status(), 422);
        assert!(
            error.message().contains("max_output_pixels"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn huge_scale_saturates_and_fails() {
        let error = compute(
            (1, 1),
            &request(Some(8000), None, Fit::Inside),
            &Limits {
                max_output_pixels: 10,
                ..Limits::default()
            },
        )
        .unwrap_err();
        assert_eq!(error.status(), 422);
        assert_eq!(scale_side(u32::MAX, u32::MAX, 1), u32::MAX);
    }
}
