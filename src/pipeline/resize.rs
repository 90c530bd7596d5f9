//! Resampling with fast_image_resize, which picks AVX2, SSE4.1 or plain
//! code at run time.
//!
//! The resizer comes from the worker's [`Scratch`], because it keeps its
//! intermediate buffers between calls. Images with alpha are
//! resized premultiplied (fast_image_resize's `mul_div_alpha`, on by
//! default), so transparent pixels do not bleed their colour into the
//! edges. Shrinking uses Lanczos3 for sharpness; enlarging uses Catmull-Rom,
//! which rings less on the hard edges that upscaling magnifies.
//!
//! The resize runs in stored orientation: the crop and the target size are
//! mapped back from displayed coordinates, and `orient` rotates the small
//! result afterwards. When the JPEG decoder has scaled the image down
//! already, the crop is scaled by the same factor.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions};
use image::DynamicImage;

use crate::error::ApiError;

use super::fit::CropRect;
use super::{check_deadline, orient, Context, Scratch};

/// Stage: crops and scales every frame to the computed geometry.
pub fn stage(context: &mut Context<'_>) -> Result<(), ApiError> {
    let geometry = context
        .geometry
        .ok_or_else(|| ApiError::Internal("resize ran before fit".into()))?;
    for frame in &mut context.frames {
        check_deadline(context.job.deadline)?;
        let crop = orient::crop_to_stored(geometry.crop, context.stored_size, context.orientation)
            .scaled(context.decode_scale);
        let target = orient::to_stored_size(geometry.scaled, context.orientation);
        let image = std::mem::take(&mut frame.image);
        frame.image = resize(context.scratch, image, crop, target)?;
    }
    Ok(())
}

/// Scales the `crop` part of `image` to `target` pixels; returns `image`
/// untouched when it already is the whole crop at the target size.
///
/// The source's buffer goes back to `scratch` for the next decode.
///
/// NOTE: one call runs to its end whatever the request deadline, since
/// fast_image_resize offers no way to stop it. Scaling 12 MP up to 48 MP
/// takes about 10 s in test builds, whose generic code is compiled
/// unoptimised, and less in release builds. Resizing in bands
/// of output rows with a check between them would bound it, at the cost of
/// repeating the alpha premultiplication of the source for every band.
pub fn resize(
    scratch: &mut Scratch,
    image: DynamicImage,
    crop: CropRect,
    target: (u32, u32),
) -> Result<DynamicImage, ApiError> {
    let source = (image.width(), image.height());
    if crop.is_full(source) && target == source {
        return Ok(image);
    }
    let enlarging = f64::from(target.0) > crop.width || f64::from(target.1) > crop.height;
    let filter = if enlarging {
        FilterType::CatmullRom
    } else {
        FilterType::Lanczos3
    };
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(filter))
        .crop(crop.left, crop.top, crop.width, crop.height);
    let mut resized = scratch.new_image(target, image.color());
    scratch
        .resizer
        .resize(&image, &mut resized, &options)
        .map_err(|error| ApiError::Internal(format!("resize failed: {error}")))?;
    scratch.recycle(image);
    Ok(resized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgba, RgbaImage};

    #[test]
    fn same_size_is_untouched() {
        let image = DynamicImage::ImageRgb8(image::RgbImage::new(7, 5));
        let result = resize(
            &mut Scratch::new(),
            image.clone(),
            CropRect::full((7, 5)),
            (7, 5),
        )
        .unwrap();
        assert_eq!(result, image);
    }

    #[test]
    fn resize_gives_exact_size() {
        let image = DynamicImage::ImageRgb8(image::RgbImage::new(227, 149));
        let result = resize(
            &mut Scratch::new(),
            image,
            CropRect::full((227, 149)),
            (100, 66),
        )
        .unwrap();
        assert_eq!((result.width(), result.height()), (100, 66));
        assert_eq!(result.color(), image::ColorType::Rgb8);
    }

    #[test]
    fn transparent_neighbours_do_not_darken_edges() {
        // Left half opaque white, right half fully transparent black.
        let image = RgbaImage::from_fn(64, 8, |x, _| {
            if x < 32 {
                Rgba([255, 255, 255, 255])
            } else {
                Rgba([0, 0, 0, 0])
            }
        });
        let result = resize(
            &mut Scratch::new(),
            DynamicImage::ImageRgba8(image),
            CropRect::full((64, 8)),
            (16, 2),
        )
        .unwrap()
        .into_rgba8();
        for pixel in result.pixels() {
            if pixel.0[3] > 0 {
                assert!(pixel.0[0] >= 250, "edge darkened: {pixel:?}");
            }
        }
    }

    #[test]
    fn crop_takes_the_requested_part() {
        // Left half red, right half blue; crop the right half.
        let image = image::RgbImage::from_fn(40, 10, |x, _| {
            if x < 20 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        });
        let crop = CropRect {
            left: 20.0,
            top: 0.0,
            width: 20.0,
            height: 10.0,
        };
        let result = resize(
            &mut Scratch::new(),
            DynamicImage::ImageRgb8(image),
            crop,
            (10, 5),
        )
        .unwrap()
        .into_rgb8();
        // The Lanczos kernel reaches a few source pixels past the crop
        // edge, so the first columns may take a trace of red.
        for (x, _, pixel) in result.enumerate_pixels() {
            let [red, green, blue] = pixel.0;
            assert_eq!(green, 0, "column {x}: {:?}", pixel.0);
            assert!(blue >= 240, "column {x}: {:?}", pixel.0);
            assert!(
                red <= if x == 0 { 48 } else { 4 },
                "column {x}: {:?}",
                pixel.0
            );
        }
    }
}
