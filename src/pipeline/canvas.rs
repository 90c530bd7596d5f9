//! Padding for `fit=contain`, and flattening alpha for formats without it.
//!
//! Both use the request's `bg` colour. Padding keeps the image's sample
//! type where `bg` fits it (grey stays grey when `bg` is grey, 16-bit stays
//! 16-bit), and gains an alpha channel only when `bg` is translucent and
//! the output format stores alpha. JPEG has no alpha, so its images are
//! composited onto `bg` as an opaque matte; GIF's one-bit transparency is
//! handled by its encoder.

use image::imageops;
use image::{DynamicImage, ImageBuffer, Luma, LumaA, Pixel, Rgb, Rgba};

use crate::error::ApiError;
use crate::options;

use super::{Context, OutputFormat};

/// Stage: pads every frame to the `fit=contain` box.
pub fn pad_stage(context: &mut Context<'_>) -> Result<(), ApiError> {
    let geometry = context
        .geometry
        .ok_or_else(|| ApiError::Internal("pad ran before fit".into()))?;
    if geometry.canvas == geometry.scaled {
        return Ok(());
    }
    let background = context.job.options.background;
    let keep_alpha = context.output_format.has_alpha();
    for frame in &mut context.frames {
        let image = std::mem::take(&mut frame.image);
        frame.image = pad(
            image,
            geometry.canvas,
            geometry.offset,
            background,
            keep_alpha,
        );
    }
    Ok(())
}

/// Stage: composites frames with alpha onto `bg` when the output is JPEG.
pub fn flatten_stage(context: &mut Context<'_>) -> Result<(), ApiError> {
    if context.output_format != OutputFormat::Jpeg {
        return Ok(());
    }
    let background = context.job.options.background;
    for frame in &mut context.frames {
        if frame.image.color().has_alpha() {
            let image = std::mem::take(&mut frame.image);
            frame.image = flatten(image, background);
        }
    }
    Ok(())
}

/// Places `image` at `offset` on a `canvas`-sized background of `bg`.
pub fn pad(
    image: DynamicImage,
    canvas: (u32, u32),
    offset: (u32, u32),
    bg: options::Rgba,
    keep_alpha: bool,
) -> DynamicImage {
    let alpha = image.color().has_alpha() || (keep_alpha && bg.a < u8::MAX);
    let colour = image.color().has_color() || !is_grey(bg);
    let deep = image.color().bytes_per_pixel() / image.color().channel_count() > 1;
    let wide = |value: u8| u16::from(value) * 257;
    let place = (canvas, offset);
    match (deep, colour, alpha) {
        (false, false, false) => placed(image.into_luma8(), place, Luma([bg.r])).into(),
        (false, false, true) => placed(image.into_luma_alpha8(), place, LumaA([bg.r, bg.a])).into(),
        (false, true, false) => placed(image.into_rgb8(), place, Rgb([bg.r, bg.g, bg.b])).into(),
        (false, true, true) => {
            placed(image.into_rgba8(), place, Rgba([bg.r, bg.g, bg.b, bg.a])).into()
        }
        (true, false, false) => placed(image.into_luma16(), place, Luma([wide(bg.r)])).into(),
        (true, false, true) => placed(
            image.into_luma_alpha16(),
            place,
            LumaA([wide(bg.r), wide(bg.a)]),
        )
        .into(),
        (true, true, false) => {
            let fill = Rgb([wide(bg.r), wide(bg.g), wide(bg.b)]);
            placed(image.into_rgb16(), place, fill).into()
        }
        (true, true, true) => {
            let fill = Rgba([wide(bg.r), wide(bg.g), wide(bg.b), wide(bg.a)]);
            placed(image.into_rgba16(), place, fill).into()
        }
    }
}

fn placed<P: Pixel>(
    image: ImageBuffer<P, Vec<P::Subpixel>>,
    (canvas, offset): ((u32, u32), (u32, u32)),
    fill: P,
) -> ImageBuffer<P, Vec<P::Subpixel>> {
    let mut result = ImageBuffer::from_pixel(canvas.0, canvas.1, fill);
    imageops::replace(
        &mut result,
        &image,
        i64::from(offset.0),
        i64::from(offset.1),
    );
    result
}

fn is_grey(colour: options::Rgba) -> bool {
    colour.r == colour.g && colour.g == colour.b
}

/// Composites `image` onto an opaque `bg` and drops the alpha channel;
/// the result is 8-bit, as JPEG is.
pub fn flatten(image: DynamicImage, bg: options::Rgba) -> DynamicImage {
    if !image.color().has_color() && is_grey(bg) {
        let mut pixels = image.into_luma_alpha8();
        let result = ImageBuffer::from_fn(pixels.width(), pixels.height(), |x, y| {
            let LumaA([value, alpha]) = *pixels.get_pixel_mut(x, y);
            Luma([blend(value, bg.r, alpha)])
        });
        return DynamicImage::ImageLuma8(result);
    }
    let pixels = image.into_rgba8();
    let result = ImageBuffer::from_fn(pixels.width(), pixels.height(), |x, y| {
        let Rgba([red, green, blue, alpha]) = *pixels.get_pixel(x, y);
        Rgb([
            blend(red, bg.r, alpha),
            blend(green, bg.g, alpha),
            blend(blue, bg.b, alpha),
        ])
    });
    DynamicImage::ImageRgb8(result)
}

/// Returns `over` at opacity `alpha` on top of `under`, rounded.
fn blend(over: u8, under: u8, alpha: u8) -> u8 {
    let alpha = u32::from(alpha);
    let value = u32::from(over) * alpha + u32::from(under) * (255 - alpha);
    ((value + 127) / 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED_BG: options::Rgba = options::Rgba {
        r: 255,
        g: 0,
        b: 0,
        a: 255,
    };

    #[test]
    fn pad_places_image_at_offset() {
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(2, 1, Rgb([0, 0, 255])));
        let result = pad(image, (4, 3), (1, 1), RED_BG, true).into_rgb8();
        assert_eq!(result.dimensions(), (4, 3));
        assert_eq!(result.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(result.get_pixel(1, 1).0, [0, 0, 255]);
        assert_eq!(result.get_pixel(2, 1).0, [0, 0, 255]);
        assert_eq!(result.get_pixel(3, 1).0, [255, 0, 0]);
        assert_eq!(result.get_pixel(1, 2).0, [255, 0, 0]);
    }

    #[test]
    fn pad_keeps_grey_with_grey_bg() {
        let image = DynamicImage::ImageLuma8(image::GrayImage::new(2, 2));
        let grey = pad(image.clone(), (3, 3), (0, 0), options::Rgba::WHITE, true);
        assert_eq!(grey.color(), image::ColorType::L8);
        let coloured = pad(image, (3, 3), (0, 0), RED_BG, true);
        assert_eq!(coloured.color(), image::ColorType::Rgb8);
    }

    #[test]
    fn pad_adds_alpha_for_translucent_bg() {
        let clear = options::Rgba {
            r: 0,
            g: 0,
            b: 0,
            a: 0,
        };
        let image = DynamicImage::ImageRgb8(image::RgbImage::new(2, 2));
        let with_alpha = pad(image.clone(), (3, 3), (0, 0), clear, true);
        assert_eq!(with_alpha.color(), image::ColorType::Rgba8);
        assert_eq!(with_alpha.into_rgba8().get_pixel(2, 2).0[3], 0);
        let without_alpha = pad(image, (3, 3), (0, 0), clear, false);
        assert_eq!(without_alpha.color(), image::ColorType::Rgb8);
    }

    #[test]
    fn pad_keeps_sixteen_bits() {
        let image = DynamicImage::ImageRgb16(image::ImageBuffer::new(2, 2));
        let result = pad(image, (3, 2), (1, 0), RED_BG, true);
        assert_eq!(result.color(), image::ColorType::Rgb16);
        assert_eq!(result.into_rgb16().get_pixel(0, 0).0, [65535, 0, 0]);
    }

    #[test]
    fn flatten_blends_onto_bg() {
        let pixels =
            image::RgbaImage::from_vec(3, 1, vec![0, 0, 255, 255, 0, 0, 255, 0, 0, 0, 255, 128])
                .unwrap();
        let result = flatten(DynamicImage::ImageRgba8(pixels), RED_BG).into_rgb8();
        assert_eq!(result.get_pixel(0, 0).0, [0, 0, 255]);
        assert_eq!(result.get_pixel(1, 0).0, [255, 0, 0]);
        assert_eq!(result.get_pixel(2, 0).0, [127, 0, 128]);
    }

    #[test]
    fn flatten_grey_alpha_stays_grey() {
        let pixels = image::GrayAlphaImage::from_vec(1, 1, vec![0, 0]).unwrap();
        let result = flatten(DynamicImage::ImageLumaA8(pixels), options::Rgba::WHITE);
        assert_eq!(result.color(), image::ColorType::L8);
        assert_eq!(result.into_luma8().get_pixel(0, 0).0, [255]);
    }
}
