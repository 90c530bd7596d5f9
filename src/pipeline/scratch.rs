//! Memory that one image worker reuses from request to request.
//!
//! Each large buffer that a fresh allocation would get from the kernel
//! costs a page fault per 4 KiB page on first touch, and musl's malloc
//! returns large blocks to the kernel as soon as they are freed. Keeping
//! the resizer's buffers and the pixel buffers of the decoded and the
//! resized image across requests removes most of those faults. The service keeps one `Scratch` per image
//! worker, never one per thread, and frees them all when it goes idle.

use fast_image_resize::Resizer;
use image::{ColorType, DynamicImage, GrayAlphaImage, GrayImage, RgbImage, RgbaImage};

/// Largest buffer that is kept for the next request. A larger one is freed
/// after use, so one huge image does not pin its memory.
const MAX_RETAINED_BYTES: usize = 32 << 20;

/// Number of pixel buffers kept: one for the decoded image and one for
/// the resized image.
const KEPT_BUFFERS: usize = 2;

/// Buffers one image worker reuses: the resizer's and a few pixel buffers.
#[derive(Default)]
pub struct Scratch {
    /// fast_image_resize keeps its intermediate rows between calls.
    pub(super) resizer: Resizer,
    /// Pixel buffers of images that are no longer needed.
    buffers: Vec<Vec<u8>>,
    /// Number of buffers handed out, which sets the debug fill byte.
    taken: u8,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch::default()
    }

    /// Returns the number of bytes allocated for reuse.
    pub fn retained_bytes(&self) -> usize {
        let buffers: usize = self.buffers.iter().map(Vec::capacity).sum();
        self.resizer.size_of_internal_buffers() + buffers
    }

    /// Frees every buffer and returns the number of bytes freed.
    pub fn release(&mut self) -> usize {
        let bytes = self.retained_bytes();
        self.resizer.reset_internal_buffers();
        self.buffers = Vec::new();
        bytes
    }

    /// Returns a buffer of exactly `len` bytes for pixels that the caller
    /// overwrites completely.
    ///
    /// It is the smallest kept buffer that fits, or else the largest one,
    /// grown. Only bytes past a reused buffer's previous length are zeroed,
    /// so the rest contains stale pixels until the caller writes them. Debug
    /// builds fill the whole buffer with a byte that changes on every call,
    /// so a pixel the caller forgets differs between two runs of a request
    /// and shows up in every test that compares pixels.
    pub(super) fn take_buffer(&mut self, len: usize) -> Vec<u8> {
        let fitting = (0..self.buffers.len())
            .filter(|&index| self.buffers[index].capacity() >= len)
            .min_by_key(|&index| self.buffers[index].capacity());
        let largest = (0..self.buffers.len()).max_by_key(|&index| self.buffers[index].capacity());
        let mut buffer = match fitting.or(largest) {
            Some(index) => self.buffers.swap_remove(index),
            None => Vec::new(),
        };
        buffer.resize(len, 0);
        if cfg!(debug_assertions) {
            self.taken = self.taken.wrapping_add(1);
            buffer.fill(0xA5_u8.wrapping_add(self.taken.wrapping_mul(29)));
        }
        buffer
    }

    /// Returns an image of `size` and `color` whose pixels the caller
    /// overwrites completely, on a reused buffer for 8-bit colour types.
    pub(super) fn new_image(&mut self, size: (u32, u32), color: ColorType) -> DynamicImage {
        let (width, height) = size;
        let samples = |channels: usize| width as usize * height as usize * channels;
        let reused = match color {
            ColorType::L8 => {
                GrayImage::from_raw(width, height, self.take_buffer(samples(1))).map(Into::into)
            }
            ColorType::La8 => GrayAlphaImage::from_raw(width, height, self.take_buffer(samples(2)))
                .map(Into::into),
            ColorType::Rgb8 => {
                RgbImage::from_raw(width, height, self.take_buffer(samples(3))).map(Into::into)
            }
            ColorType::Rgba8 => {
                RgbaImage::from_raw(width, height, self.take_buffer(samples(4))).map(Into::into)
            }
            _ => None,
        };
        reused.unwrap_or_else(|| DynamicImage::new(width, height, color))
    }

    /// Keeps the buffer of an 8-bit image that is no longer needed, unless
    /// it is over the retention limit. When more than [`KEPT_BUFFERS`] are
    /// kept, the smallest is freed.
    pub(super) fn recycle(&mut self, image: DynamicImage) {
        let buffer = match image {
            DynamicImage::ImageLuma8(image) => image.into_raw(),
            DynamicImage::ImageLumaA8(image) => image.into_raw(),
            DynamicImage::ImageRgb8(image) => image.into_raw(),
            DynamicImage::ImageRgba8(image) => image.into_raw(),
            _ => return,
        };
        if buffer.capacity() == 0 || buffer.capacity() > MAX_RETAINED_BYTES {
            return;
        }
        self.buffers.push(buffer);
        if self.buffers.len() > KEPT_BUFFERS {
            let smallest = (0..self.buffers.len())
                .min_by_key(|&index| self.buffers[index].capacity())
                .unwrap_or(0);
            self.buffers.swap_remove(smallest);
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
    fn recycled_buffer_is_reused_and_released() {
        let mut scratch = Scratch::new();
        scratch.recycle(rgb(100, 10));
        assert_eq!(scratch.retained_bytes(), 3000);
        let buffer = scratch.take_buffer(2000);
        assert_eq!(buffer.len(), 2000);
        assert_eq!(buffer.capacity(), 3000);
        assert_eq!(scratch.retained_bytes(), 0);

        scratch.recycle(rgb(100, 10));
        assert_eq!(scratch.release(), 3000);
        assert_eq!(scratch.retained_bytes(), 0);
    }

    #[test]
    fn take_buffer_prefers_smallest_fit() {
        let mut scratch = Scratch::new();
        scratch.recycle(rgb(100, 10));
        scratch.recycle(rgb(10, 10));
        assert_eq!(scratch.take_buffer(250).capacity(), 300);
        assert_eq!(scratch.take_buffer(250).capacity(), 3000);
        assert_eq!(scratch.take_buffer(250).capacity(), 250);
    }

    #[test]
    fn take_buffer_grows_largest_when_none_fits() {
        let mut scratch = Scratch::new();
        scratch.recycle(rgb(10, 10));
        scratch.recycle(rgb(20, 10));
        let buffer = scratch.take_buffer(5000);
        assert_eq!(buffer.len(), 5000);
        assert_eq!(scratch.retained_bytes(), 300);
    }

    #[test]
    fn recycle_keeps_the_largest_two() {
        let mut scratch = Scratch::new();
        scratch.recycle(rgb(100, 10));
        scratch.recycle(rgb(10, 10));
        scratch.recycle(rgb(50, 10));
        assert_eq!(scratch.retained_bytes(), 3000 + 1500);
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
