//! Colour management: every output is sRGB.
//!
//! An embedded ICC profile (Adobe RGB, Display P3, DCI-P3, a grey profile, or
//! anything else that moxcms reads) is converted to sRGB, because outputs
//! carry no profile and every viewer shows untagged images as sRGB. RGB and
//! grey profiles use the relative colorimetric intent, so in-gamut colours
//! stay exact and wide-gamut colours clip to the sRGB gamut. CMYK profiles,
//! which are lookup tables built for print, use the perceptual intent.
//!
//! A profile that cannot be parsed, or that does not match the pixel layout
//! (an RGB profile on a grey image, say), is ignored and the pixels are
//! taken as sRGB. Such a file still decodes, though its colours may be off. A profile that maps sRGB onto itself is detected on a handful of
//! probe colours and skipped, so sRGB photos pay for no conversion pass.

use std::sync::Arc;

use image::DynamicImage;
use moxcms::{
    CmsError, ColorProfile, DataColorSpace, Layout, RenderingIntent, TransformExecutor,
    TransformOptions,
};

use crate::error::ApiError;

use super::Context;

/// Stage: converts every frame to sRGB when the image has a profile.
pub fn stage(context: &mut Context<'_>) -> Result<(), ApiError> {
    let Some(icc) = context.icc_profile.take() else {
        return Ok(());
    };
    for frame in &mut context.frames {
        convert_to_srgb(&mut frame.image, Some(&icc));
    }
    Ok(())
}

/// Converts `image` from the colour space of `icc` to sRGB, in place.
///
/// Does nothing without a profile, and ignores a profile that cannot be
/// used (see the module documentation). Images of other sample types than
/// 8- and 16-bit grey, grey+alpha, RGB and RGBA are left unchanged.
pub fn convert_to_srgb(image: &mut DynamicImage, icc: Option<&[u8]>) {
    let Some(icc) = icc else {
        return;
    };
    let profile = match ColorProfile::new_from_slice(icc) {
        Ok(profile) => profile,
        Err(error) => {
            log::debug!("ignoring an unreadable ICC profile: {error}");
            return;
        }
    };
    if let Err(error) = convert_with_profile(image, &profile) {
        log::debug!(
            "ignoring an ICC profile ({:?}) that cannot be applied: {error}",
            profile.color_space
        );
    }
}

fn convert_with_profile(image: &mut DynamicImage, profile: &ColorProfile) -> Result<(), CmsError> {
    let is_gray_profile = profile.color_space == DataColorSpace::Gray;
    let is_rgb_profile = profile.color_space == DataColorSpace::Rgb;
    match image {
        DynamicImage::ImageRgb8(pixels) if is_rgb_profile => {
            transform_8bit(pixels, profile, Layout::Rgb, &ColorProfile::new_srgb())
        }
        DynamicImage::ImageRgba8(pixels) if is_rgb_profile => {
            transform_8bit(pixels, profile, Layout::Rgba, &ColorProfile::new_srgb())
        }
        DynamicImage::ImageLuma8(pixels) if is_gray_profile => {
            transform_8bit(pixels, profile, Layout::Gray, &srgb_gray_profile())
        }
        DynamicImage::ImageLumaA8(pixels) if is_gray_profile => {
            transform_8bit(pixels, profile, Layout::GrayAlpha, &srgb_gray_profile())
        }
        DynamicImage::ImageRgb16(pixels) if is_rgb_profile => {
            transform_16bit(pixels, profile, Layout::Rgb, &ColorProfile::new_srgb())
        }
        DynamicImage::ImageRgba16(pixels) if is_rgb_profile => {
            transform_16bit(pixels, profile, Layout::Rgba, &ColorProfile::new_srgb())
        }
        DynamicImage::ImageLuma16(pixels) if is_gray_profile => {
            transform_16bit(pixels, profile, Layout::Gray, &srgb_gray_profile())
        }
        DynamicImage::ImageLumaA16(pixels) if is_gray_profile => {
            transform_16bit(pixels, profile, Layout::GrayAlpha, &srgb_gray_profile())
        }
        _ => Err(CmsError::InvalidLayout),
    }
}

/// Returns a grey profile with the sRGB tone curve, the grey counterpart of sRGB.
fn srgb_gray_profile() -> ColorProfile {
    let mut profile = ColorProfile::new_srgb();
    profile.color_space = DataColorSpace::Gray;
    profile.gray_trc = profile.red_trc.clone();
    profile
}

fn rgb_options() -> TransformOptions {
    TransformOptions {
        rendering_intent: RenderingIntent::RelativeColorimetric,
        ..TransformOptions::default()
    }
}

fn transform_8bit(
    samples: &mut [u8],
    profile: &ColorProfile,
    layout: Layout,
    target: &ColorProfile,
) -> Result<(), CmsError> {
    let transform = profile.create_transform_8bit(layout, target, layout, rgb_options())?;
    if is_identity(transform.as_ref(), layout, u8::MAX)? {
        return Ok(());
    }
    let mut converted = vec![0u8; samples.len()];
    transform.transform(samples, &mut converted)?;
    samples.copy_from_slice(&converted);
    Ok(())
}

fn transform_16bit(
    samples: &mut [u16],
    profile: &ColorProfile,
    layout: Layout,
    target: &ColorProfile,
) -> Result<(), CmsError> {
    let transform = profile.create_transform_16bit(layout, target, layout, rgb_options())?;
    if is_identity(transform.as_ref(), layout, u16::MAX)? {
        return Ok(());
    }
    let mut converted = vec![0u16; samples.len()];
    transform.transform(samples, &mut converted)?;
    samples.copy_from_slice(&converted);
    Ok(())
}

/// Returns whether `transform` leaves a grid of probe colours within one
/// 8-bit step of where they were, so that the conversion can be skipped.
fn is_identity<T>(
    transform: &(dyn TransformExecutor<T> + Send + Sync),
    layout: Layout,
    max: T,
) -> Result<bool, CmsError>
where
    T: Copy + Default + Into<u32> + TryFrom<u32>,
{
    const STEPS: u32 = 6;
    let max_value: u32 = max.into();
    let level = |step: u32| -> T { T::try_from(max_value * step / (STEPS - 1)).unwrap_or(max) };
    let channels = layout.channels();
    let colour_channels = if layout.has_alpha() {
        channels - 1
    } else {
        channels
    };
    let mut probe = Vec::new();
    let grid = STEPS.pow(colour_channels as u32);
    for index in 0..grid {
        let mut rest = index;
        for _ in 0..colour_channels {
            probe.push(level(rest % STEPS));
            rest /= STEPS;
        }
        if layout.has_alpha() {
            probe.push(max);
        }
    }
    let mut result = vec![T::default(); probe.len()];
    transform.transform(&probe, &mut result)?;
    let tolerance = max_value / 255;
    Ok(probe.iter().zip(&result).all(|(&before, &after)| {
        let (before, after): (u32, u32) = (before.into(), after.into());
        before.abs_diff(after) <= tolerance
    }))
}

/// Converts CMYK ink amounts (0 is no ink, four bytes per pixel) to 8-bit
/// sRGB (three bytes per pixel).
///
/// Uses the embedded CMYK profile where there is a usable one. Without it,
/// the fallback multiplies each colour's remaining light by the black's,
/// `R = (1 − C)(1 − K)`: the conversion browsers use for untagged CMYK,
/// with natural hues though more saturated than a press would print.
pub fn cmyk_to_srgb(cmyk: &[u8], icc: Option<&[u8]>) -> Vec<u8> {
    let mut rgb = vec![0u8; cmyk.len() / 4 * 3];
    if let Some(transform) = icc.and_then(cmyk_transform) {
        match transform.transform(cmyk, &mut rgb) {
            Ok(()) => return rgb,
            Err(error) => log::debug!("ignoring a CMYK profile that failed: {error}"),
        }
    }
    for (pixel, ink) in rgb.chunks_exact_mut(3).zip(cmyk.chunks_exact(4)) {
        let light_k = 255 - u32::from(ink[3]);
        for channel in 0..3 {
            let light = 255 - u32::from(ink[channel]);
            pixel[channel] = ((light * light_k + 127) / 255) as u8;
        }
    }
    rgb
}

fn cmyk_transform(icc: &[u8]) -> Option<Arc<moxcms::Transform8BitExecutor>> {
    let profile = match ColorProfile::new_from_slice(icc) {
        Ok(profile) => profile,
        Err(error) => {
            log::debug!("ignoring an unreadable CMYK profile: {error}");
            return None;
        }
    };
    if profile.color_space != DataColorSpace::Cmyk {
        log::debug!(
            "ignoring a {:?} profile on a CMYK image",
            profile.color_space
        );
        return None;
    }
    let options = TransformOptions {
        rendering_intent: RenderingIntent::Perceptual,
        ..TransformOptions::default()
    };
    // moxcms reads CMYK through the four-channel RGBA layout.
    match profile.create_transform_8bit(
        Layout::Rgba,
        &ColorProfile::new_srgb(),
        Layout::Rgb,
        options,
    ) {
        Ok(transform) => Some(transform),
        Err(error) => {
            log::debug!("ignoring a CMYK profile that cannot be applied: {error}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rgb_image(pixels: &[[u8; 3]]) -> DynamicImage {
        let flat: Vec<u8> = pixels.iter().flatten().copied().collect();
        let buffer = image::RgbImage::from_raw(pixels.len() as u32, 1, flat).unwrap();
        DynamicImage::ImageRgb8(buffer)
    }

    fn profile_bytes(profile: &ColorProfile) -> Vec<u8> {
        profile.encode().unwrap()
    }

    #[test]
    fn srgb_profile_is_skipped() {
        let mut image = rgb_image(&[[10, 200, 30], [255, 0, 0]]);
        let before = image.clone();
        convert_to_srgb(&mut image, Some(&profile_bytes(&ColorProfile::new_srgb())));
        assert_eq!(image, before);
    }

    #[test]
    fn display_p3_red_clips_to_srgb_red() {
        let mut image = rgb_image(&[[255, 0, 0], [128, 128, 128]]);
        let p3 = profile_bytes(&ColorProfile::new_display_p3());
        convert_to_srgb(&mut image, Some(&p3));
        let pixels = image.as_rgb8().unwrap();
        // P3 red is outside sRGB, so it clips to full red.
        assert_eq!(pixels.get_pixel(0, 0).0, [255, 0, 0]);
        // Both use the sRGB tone curve and the D65 white, so grey stays grey.
        let grey = pixels.get_pixel(1, 0).0;
        assert!(grey.iter().all(|&v| v.abs_diff(128) <= 1), "{grey:?}");
    }

    #[test]
    fn display_p3_green_gains_saturation_loss() {
        // A mid P3 green lands in sRGB with red added, not as the same numbers.
        let mut image = rgb_image(&[[60, 180, 60]]);
        let p3 = profile_bytes(&ColorProfile::new_display_p3());
        convert_to_srgb(&mut image, Some(&p3));
        let [red, green, blue] = image.as_rgb8().unwrap().get_pixel(0, 0).0;
        assert!(green > 180, "green {green}");
        assert!(red < 60, "red {red}");
        assert!(blue < 70, "blue {blue}");
    }

    #[test]
    fn garbage_profile_is_ignored() {
        let mut image = rgb_image(&[[1, 2, 3]]);
        convert_to_srgb(&mut image, Some(b"not a profile"));
        assert_eq!(image.as_rgb8().unwrap().get_pixel(0, 0).0, [1, 2, 3]);
    }

    #[test]
    fn rgb_profile_on_grey_image_is_ignored() {
        let mut image =
            DynamicImage::ImageLuma8(image::GrayImage::from_raw(1, 1, vec![77]).unwrap());
        let p3 = profile_bytes(&ColorProfile::new_display_p3());
        convert_to_srgb(&mut image, Some(&p3));
        assert_eq!(image.as_luma8().unwrap().get_pixel(0, 0).0, [77]);
    }

    #[test]
    fn cmyk_fallback_is_not_inverted() {
        let inks = [
            [0, 0, 0, 0],     // paper white
            [0, 0, 0, 255],   // full black
            [255, 0, 0, 0],   // cyan
            [0, 255, 255, 0], // red
            [0, 0, 0, 128],   // mid grey
        ];
        let flat: Vec<u8> = inks.iter().flatten().copied().collect();
        let rgb = cmyk_to_srgb(&flat, None);
        assert_eq!(&rgb[0..3], &[255, 255, 255]);
        assert_eq!(&rgb[3..6], &[0, 0, 0]);
        assert_eq!(&rgb[6..9], &[0, 255, 255]);
        assert_eq!(&rgb[9..12], &[255, 0, 0]);
        assert_eq!(&rgb[12..15], &[127, 127, 127]);
    }
}
