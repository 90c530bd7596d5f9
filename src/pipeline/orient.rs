//! EXIF orientation: reading it, and applying it after the resize.
//!
//! The output is always upright and carries no orientation tag. All eight
//! EXIF values are honoured, and a missing, unreadable or out-of-range value
//! (such as 0) counts as 1, "no transform". The tag is read from JPEG APP1,
//! from WebP and TIFF metadata, and from the PNG `eXIf` chunk. Honouring
//! `eXIf` follows libvips and imgproxy; a service that ignores it would
//! return such a PNG sideways.
//!
//! Rotating the full-size image costs a full copy, so the pipeline computes
//! the geometry in displayed coordinates, maps the crop back to stored
//! coordinates, resizes in stored orientation and rotates only the small
//! result. [`crop_to_stored`] and [`to_stored_size`] do that mapping.

use image::metadata::Orientation;
use image::DynamicImage;

use crate::error::ApiError;

use super::fit::CropRect;
use super::Context;

/// Stage: turns every frame upright.
pub fn stage(context: &mut Context<'_>) -> Result<(), ApiError> {
    if context.orientation == Orientation::NoTransforms {
        return Ok(());
    }
    for frame in &mut context.frames {
        apply(&mut frame.image, context.orientation);
    }
    Ok(())
}

/// Reads the orientation from an EXIF block (with or without the `Exif\0\0`
/// prefix); anything unreadable or out of range is "no transform".
pub fn from_exif(exif: Option<&[u8]>) -> Orientation {
    let Some(exif) = exif else {
        return Orientation::NoTransforms;
    };
    let tiff = exif.strip_prefix(b"Exif\0\0").unwrap_or(exif);
    Orientation::from_exif_chunk(tiff).unwrap_or(Orientation::NoTransforms)
}

/// Returns whether the orientation swaps width and height.
pub fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Returns the displayed size of an image stored as `stored`.
pub fn displayed_size(stored: (u32, u32), orientation: Orientation) -> (u32, u32) {
    if swaps_axes(orientation) {
        (stored.1, stored.0)
    } else {
        stored
    }
}

/// Returns the stored-orientation size that becomes `displayed` once oriented.
pub fn to_stored_size(displayed: (u32, u32), orientation: Orientation) -> (u32, u32) {
    displayed_size(displayed, orientation)
}

/// Maps a point in displayed coordinates to stored coordinates. Coordinates
/// are continuous (pixel edges), and `stored` is the stored width and height.
fn point_to_stored((x, y): (f64, f64), stored: (u32, u32), orientation: Orientation) -> (f64, f64) {
    let width = f64::from(stored.0);
    let height = f64::from(stored.1);
    match orientation {
        Orientation::NoTransforms => (x, y),
        Orientation::FlipHorizontal => (width - x, y),
        Orientation::Rotate180 => (width - x, height - y),
        Orientation::FlipVertical => (x, height - y),
        Orientation::Rotate90 => (y, height - x),
        Orientation::Rotate270 => (width - y, x),
        Orientation::Rotate90FlipH => (y, x),
        Orientation::Rotate270FlipH => (width - y, height - x),
    }
}

/// Maps a crop rectangle in displayed coordinates to stored coordinates.
pub fn crop_to_stored(crop: CropRect, stored: (u32, u32), orientation: Orientation) -> CropRect {
    let first = point_to_stored((crop.left, crop.top), stored, orientation);
    let second = point_to_stored(
        (crop.left + crop.width, crop.top + crop.height),
        stored,
        orientation,
    );
    CropRect {
        left: first.0.min(second.0),
        top: first.1.min(second.1),
        width: (first.0 - second.0).abs(),
        height: (first.1 - second.1).abs(),
    }
}

/// Rotates and flips `image` from stored to displayed orientation.
pub fn apply(image: &mut DynamicImage, orientation: Orientation) {
    image.apply_orientation(orientation);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Orientation; 8] = [
        Orientation::NoTransforms,
        Orientation::FlipHorizontal,
        Orientation::Rotate180,
        Orientation::FlipVertical,
        Orientation::Rotate90FlipH,
        Orientation::Rotate90,
        Orientation::Rotate270FlipH,
        Orientation::Rotate270,
    ];

    /// Returns a 3×2 image whose every pixel value is unique.
    fn numbered_image() -> DynamicImage {
        let pixels = image::GrayImage::from_fn(3, 2, |x, y| image::Luma([(y * 3 + x) as u8]));
        DynamicImage::ImageLuma8(pixels)
    }

    #[test]
    fn point_mapping_matches_image_crate() {
        let stored = numbered_image();
        for orientation in ALL {
            let mut displayed = stored.clone();
            apply(&mut displayed, orientation);
            let displayed = displayed.into_luma8();
            assert_eq!(
                displayed.dimensions(),
                displayed_size((3, 2), orientation),
                "{orientation:?}"
            );
            for (x, y, pixel) in displayed.enumerate_pixels() {
                let centre = (f64::from(x) + 0.5, f64::from(y) + 0.5);
                let (sx, sy) = point_to_stored(centre, (3, 2), orientation);
                let source = stored.as_luma8().unwrap().get_pixel(sx as u32, sy as u32);
                assert_eq!(pixel, source, "{orientation:?} at ({x}, {y})");
            }
        }
    }

    #[test]
    fn crop_maps_to_same_pixels() {
        let stored = numbered_image();
        for orientation in ALL {
            let (width, height) = displayed_size((3, 2), orientation);
            // The displayed pixel at the bottom-right corner, as a 1×1 crop.
            let crop = CropRect {
                left: f64::from(width - 1),
                top: f64::from(height - 1),
                width: 1.0,
                height: 1.0,
            };
            let mapped = crop_to_stored(crop, (3, 2), orientation);
            assert_eq!((mapped.width, mapped.height), (1.0, 1.0), "{orientation:?}");
            let mut displayed = stored.clone();
            apply(&mut displayed, orientation);
            let expected = displayed
                .as_luma8()
                .unwrap()
                .get_pixel(width - 1, height - 1)
                .0[0];
            let actual = stored
                .as_luma8()
                .unwrap()
                .get_pixel(mapped.left as u32, mapped.top as u32)
                .0[0];
            assert_eq!(actual, expected, "{orientation:?}");
        }
    }

    #[test]
    fn full_crop_maps_to_full_image() {
        for orientation in ALL {
            let displayed = displayed_size((30, 20), orientation);
            let mapped = crop_to_stored(CropRect::full(displayed), (30, 20), orientation);
            assert!(mapped.is_full((30, 20)), "{orientation:?}: {mapped:?}");
        }
    }

    #[test]
    fn exif_values_map_to_orientations() {
        // A little-endian TIFF block with one IFD entry: tag 0x0112, SHORT, count 1.
        let exif_with = |value: u8| {
            let mut block = b"Exif\0\0II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0".to_vec();
            block.extend_from_slice(&[value, 0, 0, 0, 0, 0, 0, 0]);
            block
        };
        let expected = [
            (1, Orientation::NoTransforms),
            (2, Orientation::FlipHorizontal),
            (3, Orientation::Rotate180),
            (4, Orientation::FlipVertical),
            (5, Orientation::Rotate90FlipH),
            (6, Orientation::Rotate90),
            (7, Orientation::Rotate270FlipH),
            (8, Orientation::Rotate270),
        ];
        for (value, orientation) in expected {
            assert_eq!(
                from_exif(Some(&exif_with(value))),
                orientation,
                "value {value}"
            );
        }
        assert_eq!(from_exif(Some(&exif_with(0))), Orientation::NoTransforms);
        assert_eq!(from_exif(Some(&exif_with(9))), Orientation::NoTransforms);
        assert_eq!(
            from_exif(Some(b"Exif\0\0garbage")),
            Orientation::NoTransforms
        );
        assert_eq!(from_exif(None), Orientation::NoTransforms);
    }
}
