//! Memory that one image worker reuses from request to request.
//!
//! Each large buffer that a fresh allocation would get from the kernel
//! costs a page fault per 4 KiB page on first touch, and musl's malloc
//! returns large blocks to the kernel as soon as they are freed. Keeping
//! the resizer's buffers and the decoded JPEG pixels across requests
//! removes most of those faults. The service keeps one `Scratch` per image
//! worker, never one per thread, and frees them all when it goes idle.

use fast_image_resize::Resizer;
use image::DynamicImage;

/// Largest buffer of each kind that is kept for the next request. A larger
/// one is freed after use, so one huge image does not pin its memory.
const MAX_RETAINED_BYTES: usize = 32 << 20;

/// Buffers one image worker reuses: the resizer's and a pixel buffer.
#[derive(Default)]
pub struct Scratch {
    /// fast_image_resize keeps its intermediate rows between calls.
    pub(super) resizer: Resizer,
    /// Bytes for the next decoded JPEG, from the last image that was
    /// resized and dropped.
    pixels: Vec<u8>,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch::default()
    }

    /// Returns the number of bytes allocated for reuse.
    pub fn retained_bytes(&self) -> usize {
        self.resizer.size_of_internal_buffers() + self.pixels.capacity()
    }

    /// Frees every buffer and returns the number of bytes freed.
    pub fn release(&mut self) -> usize {
        let bytes = self.retained_bytes();
        self.resizer.reset_internal_buffers();
        self.pixels = Vec::new();
        bytes
    }

    /// Takes the pixel buffer, which the caller fills and may hand back
    /// through [`Scratch::recycle`].
    pub(super) fn take_pixels(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pixels)
    }

    /// Keeps the buffer of an 8-bit image that is no longer needed, unless
    /// it is over the retention limit or smaller than the one kept already.
    pub(super) fn recycle(&mut self, image: DynamicImage) {
        let buffer = match image {
            DynamicImage::ImageLuma8(image) => image.into_raw(),
            DynamicImage::ImageLumaA8(image) => image.into_raw(),
            DynamicImage::ImageRgb8(image) => image.into_raw(),
            DynamicImage::ImageRgba8(image) => image.into_raw(),
            _ => return,
        };
        if buffer.capacity() <= MAX_RETAINED_BYTES && buffer.capacity() > self.pixels.capacity() {
            self.pixels = buffer;
        }
    }

    /// Frees the resizer's buffers when they grew over the retention limit.
    pub(super) fn trim(&mut self) {
        if self.resizer.size_of_internal_buffers() > MAX_RETAINED_BYTES {
            self.resizer.reset_internal_buffers();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rgb(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::new(width, height))
    }

    #[test]
    fn recycled_pixels_are_reused_and_released() {
        let mut scratch = Scratch::new();
        scratch.recycle(rgb(100, 10));
        assert_eq!(scratch.retained_bytes(), 3000);
        let buffer = scratch.take_pixels();
        assert_eq!(buffer.capacity(), 3000);
        assert_eq!(scratch.retained_bytes(), 0);

        scratch.recycle(DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(100, 10, buffer).unwrap(),
        ));
        assert_eq!(scratch.release(), 3000);
        assert_eq!(scratch.retained_bytes(), 0);
    }

    #[test]
    fn recycle_keeps_the_larger_buffer() {
        let mut scratch = Scratch::new();
        scratch.recycle(rgb(100, 10));
        scratch.recycle(rgb(10, 10));
        assert_eq!(scratch.retained_bytes(), 3000);
    }

    #[test]
    fn recycle_drops_huge_and_deep_buffers() {
        let mut scratch = Scratch::new();
        scratch.recycle(rgb(4096, 4096));
        assert_eq!(scratch.retained_bytes(), 0);
        scratch.recycle(DynamicImage::ImageRgb16(image::ImageBuffer::new(10, 10)));
        assert_eq!(scratch.retained_bytes(), 0);
    }
}
