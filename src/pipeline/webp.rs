//! A small safe wrapper over libwebp's encoder and animation encoder.
//!
//! libwebp-sys builds the libwebp C sources it bundles with `cc`, so the
//! service needs no system library. The `webp` crate wraps the same library
//! but drops the last frame's duration of an animation (it ends the stream
//! with timestamp 0, which libwebp rejects) and ignores several error
//! codes, so this module calls libwebp directly. Every buffer that libwebp
//! allocates is released by a guard's `Drop`, on success and error alike.
//!
//! A deadline is enforced through the picture's progress hook, which
//! libwebp calls each time its progress estimate grows by a percent. The
//! hook returns 0 once the deadline has passed, and libwebp then stops
//! with `VP8_ENC_ERROR_USER_ABORT`.

use std::ffi::{c_int, c_void, CStr};
use std::fmt;
use std::ptr;
use std::time::Instant;

use libwebp_sys as sys;

/// Compression mode of the encoded pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Compression {
    /// VP8 at a quality from 0 to 100.
    Lossy { quality: f32 },
    /// VP8L, bit-exact.
    Lossless,
}

/// Channels of the input pixels, 8 bits each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    Rgb,
    Rgba,
}

impl Channels {
    fn count(self) -> usize {
        match self {
            Channels::Rgb => 3,
            Channels::Rgba => 4,
        }
    }
}

/// Failure of a WebP encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The deadline passed, and the encode stopped early.
    DeadlinePassed,
    /// libwebp rejected the input or failed, for the reason in the message.
    Failed(String),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::DeadlinePassed => formatter.write_str("the deadline passed"),
            EncodeError::Failed(message) => formatter.write_str(message),
        }
    }
}

impl From<String> for EncodeError {
    fn from(message: String) -> Self {
        EncodeError::Failed(message)
    }
}

/// One animation frame: RGBA pixels of the full canvas and how long it shows.
pub struct AnimationFrame<'a> {
    pub rgba: &'a [u8],
    pub duration_ms: u32,
}

/// Encodes one image. `pixels` contains `width × height` pixels of
/// `channels`. Stops with `DeadlinePassed` soon after `deadline`.
pub fn encode_still(
    pixels: &[u8],
    channels: Channels,
    width: u32,
    height: u32,
    compression: Compression,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, EncodeError> {
    check_buffer(pixels, channels, width, height)?;
    let config = new_config(compression)?;
    let mut picture = Picture::new(width, height, compression == Compression::Lossless)?;
    picture.import(pixels, channels)?;
    if let Some(deadline) = &deadline {
        picture.stop_after(deadline);
    }

    let mut writer = MemoryWriter::new();
    picture.inner.writer = Some(sys::WebPMemoryWrite);
    picture.inner.custom_ptr = (&mut writer.inner as *mut sys::WebPMemoryWriter).cast::<c_void>();
    // SAFETY: `config` was initialised and validated, `picture` contains
    // the imported pixels, and `writer` and the deadline that the progress
    // hook reads outlive this call.
    let encoded = unsafe { sys::WebPEncode(&config, &mut picture.inner) };
    if encoded == 0 {
        if picture.inner.error_code == sys::WebPEncodingError::VP8_ENC_ERROR_USER_ABORT {
            return Err(EncodeError::DeadlinePassed);
        }
        return Err(EncodeError::Failed(format!(
            "WebPEncode failed: {:?}",
            picture.inner.error_code
        )));
    }
    Ok(writer.bytes())
}

/// Encodes an animation on a `width × height` canvas. `loop_count` is the
/// number of plays, 0 meaning forever. Stops with `DeadlinePassed` soon
/// after `deadline`, checked before each frame and inside libwebp.
pub fn encode_animation(
    frames: &[AnimationFrame<'_>],
    width: u32,
    height: u32,
    compression: Compression,
    loop_count: i32,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, EncodeError> {
    let config = new_config(compression)?;
    let encoder = AnimationEncoder::new(width, height, loop_count)?;
    // libwebp keeps the progress hook and its pointer to `deadline` in its
    // own copy of the last frame, so `deadline` must outlive `encoder`,
    // which it does because it is a parameter.
    let failed = |action: &str| {
        if super::deadline_passed(deadline) {
            EncodeError::DeadlinePassed
        } else {
            EncodeError::Failed(encoder.last_error(action))
        }
    };

    let mut timestamp_ms: i32 = 0;
    for frame in frames {
        if super::deadline_passed(deadline) {
            return Err(EncodeError::DeadlinePassed);
        }
        check_buffer(frame.rgba, Channels::Rgba, width, height)?;
        let mut picture = Picture::new(width, height, true)?;
        picture.import(frame.rgba, Channels::Rgba)?;
        if let Some(deadline) = &deadline {
            picture.stop_after(deadline);
        }
        // SAFETY: the encoder and the picture are initialised, and libwebp
        // copies the picture before this call returns.
        let added = unsafe {
            sys::WebPAnimEncoderAdd(encoder.inner, &mut picture.inner, timestamp_ms, &config)
        };
        if added == 0 {
            return Err(failed("adding a frame"));
        }
        let duration = i32::try_from(frame.duration_ms).unwrap_or(i32::MAX);
        timestamp_ms = timestamp_ms.saturating_add(duration);
    }

    // A null frame ends the stream; its timestamp sets the last frame's duration.
    // SAFETY: a null picture and config are the documented way to finish.
    let finished = unsafe {
        sys::WebPAnimEncoderAdd(encoder.inner, ptr::null_mut(), timestamp_ms, ptr::null())
    };
    if finished == 0 {
        return Err(failed("ending the animation"));
    }

    let mut data = sys::WebPData {
        bytes: ptr::null(),
        size: 0,
    };
    // SAFETY: `data` is an empty WebPData that libwebp fills with a buffer
    // it allocated, which is freed below with `WebPFree`.
    let assembled = unsafe { sys::WebPAnimEncoderAssemble(encoder.inner, &mut data) };
    if assembled == 0 {
        return Err(failed("assembling the animation"));
    }
    // SAFETY: on success `data.bytes` points at `data.size` initialised bytes.
    let bytes = unsafe { std::slice::from_raw_parts(data.bytes, data.size) }.to_vec();
    // SAFETY: the buffer came from libwebp's allocator and is freed once.
    unsafe { sys::WebPFree(data.bytes as *mut c_void) };
    Ok(bytes)
}

fn check_buffer(pixels: &[u8], channels: Channels, width: u32, height: u32) -> Result<(), String> {
    if width == 0 || height == 0 || width > 16383 || height > 16383 {
        return Err(format!("WebP cannot store {width}x{height} px"));
    }
    let expected = width as usize * height as usize * channels.count();
    if pixels.len() != expected {
        return Err(format!(
            "WebP input holds {} bytes, expected {expected}",
            pixels.len()
        ));
    }
    Ok(())
}

fn new_config(compression: Compression) -> Result<sys::WebPConfig, String> {
    // SAFETY: WebPConfig is a plain C struct; all-zero is a valid starting
    // value, and WebPConfigInitInternal overwrites every field.
    let mut config: sys::WebPConfig = unsafe { std::mem::zeroed() };
    let quality = match compression {
        Compression::Lossy { quality } => quality.clamp(0.0, 100.0),
        Compression::Lossless => 75.0,
    };
    // SAFETY: `config` is a valid, writable WebPConfig.
    let initialised = unsafe {
        sys::WebPConfigInitInternal(
            &mut config,
            sys::WebPPreset::WEBP_PRESET_DEFAULT,
            quality,
            sys::WEBP_ENCODER_ABI_VERSION as i32,
        )
    };
    if initialised == 0 {
        return Err("libwebp rejected the encoder ABI version".into());
    }
    if compression == Compression::Lossless {
        // Level 6 of 9: libwebp's default trade-off (method 4, quality 75).
        // SAFETY: `config` was initialised above.
        if unsafe { sys::WebPConfigLosslessPreset(&mut config, 6) } == 0 {
            return Err("libwebp rejected the lossless preset".into());
        }
    }
    // SAFETY: `config` was initialised above.
    if unsafe { sys::WebPValidateConfig(&config) } == 0 {
        return Err("libwebp rejected the encoder configuration".into());
    }
    Ok(config)
}

/// A `WebPPicture` that frees its pixel buffers when dropped.
struct Picture {
    inner: sys::WebPPicture,
}

impl Picture {
    fn new(width: u32, height: u32, use_argb: bool) -> Result<Picture, String> {
        // SAFETY: WebPPicture is a plain C struct, and WebPPictureInitInternal
        // sets every field before use.
        let mut inner: sys::WebPPicture = unsafe { std::mem::zeroed() };
        // SAFETY: `inner` is a valid, writable WebPPicture.
        if unsafe { sys::WebPPictureInitInternal(&mut inner, sys::WEBP_ENCODER_ABI_VERSION as i32) }
            == 0
        {
            return Err("libwebp rejected the picture ABI version".into());
        }
        inner.width = width as i32;
        inner.height = height as i32;
        inner.use_argb = i32::from(use_argb);
        Ok(Picture { inner })
    }

    /// Copies `pixels` into the picture, converting to YUV for lossy VP8.
    fn import(&mut self, pixels: &[u8], channels: Channels) -> Result<(), String> {
        let stride = self.inner.width * channels.count() as i32;
        // SAFETY: the caller checked that `pixels` contains width × height
        // pixels of `channels`, so libwebp reads only inside the slice.
        let imported = unsafe {
            match channels {
                Channels::Rgb => {
                    sys::WebPPictureImportRGB(&mut self.inner, pixels.as_ptr(), stride)
                }
                Channels::Rgba => {
                    sys::WebPPictureImportRGBA(&mut self.inner, pixels.as_ptr(), stride)
                }
            }
        };
        if imported == 0 {
            return Err("libwebp could not allocate the picture".into());
        }
        Ok(())
    }

    /// Makes libwebp abort the encode of this picture once `deadline` has
    /// passed. `deadline` must outlive every encode of the picture and of
    /// libwebp's copies of it.
    fn stop_after(&mut self, deadline: &Instant) {
        self.inner.progress_hook = Some(stop_after_deadline);
        self.inner.user_data = ptr::from_ref(deadline).cast_mut().cast::<c_void>();
    }
}

/// libwebp's progress hook: returns 0, which aborts the encode, once the
/// `Instant` that `user_data` points at has passed.
unsafe extern "C" fn stop_after_deadline(
    _percent: c_int,
    picture: *const sys::WebPPicture,
) -> c_int {
    // SAFETY: libwebp passes the picture being encoded, whose `user_data`
    // `Picture::stop_after` set to an `Instant` that outlives the encode.
    let deadline = unsafe { &*(*picture).user_data.cast::<Instant>() };
    c_int::from(Instant::now() < *deadline)
}

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: frees only what libwebp allocated for this picture; safe
        // to call on a picture that never received pixels.
        unsafe { sys::WebPPictureFree(&mut self.inner) };
    }
}

/// A `WebPMemoryWriter` that frees its output buffer when dropped.
struct MemoryWriter {
    inner: sys::WebPMemoryWriter,
}

impl MemoryWriter {
    fn new() -> MemoryWriter {
        let mut inner = sys::WebPMemoryWriter {
            mem: ptr::null_mut(),
            size: 0,
            max_size: 0,
            pad: [0],
        };
        // SAFETY: `inner` is a valid, writable WebPMemoryWriter.
        unsafe { sys::WebPMemoryWriterInit(&mut inner) };
        MemoryWriter { inner }
    }

    fn bytes(&self) -> Vec<u8> {
        if self.inner.mem.is_null() {
            return Vec::new();
        }
        // SAFETY: libwebp wrote `size` bytes at `mem`.
        unsafe { std::slice::from_raw_parts(self.inner.mem, self.inner.size) }.to_vec()
    }
}

impl Drop for MemoryWriter {
    fn drop(&mut self) {
        // SAFETY: releases the buffer libwebp grew for this writer, once.
        unsafe { sys::WebPMemoryWriterClear(&mut self.inner) };
    }
}

/// A `WebPAnimEncoder` that is deleted when dropped.
struct AnimationEncoder {
    inner: *mut sys::WebPAnimEncoder,
}

impl AnimationEncoder {
    fn new(width: u32, height: u32, loop_count: i32) -> Result<AnimationEncoder, String> {
        // SAFETY: the options struct is plain C data, initialised by libwebp.
        let mut options: sys::WebPAnimEncoderOptions = unsafe { std::mem::zeroed() };
        let abi = sys::WEBP_MUX_ABI_VERSION as i32;
        // SAFETY: `options` is a valid, writable WebPAnimEncoderOptions.
        if unsafe { sys::WebPAnimEncoderOptionsInitInternal(&mut options, abi) } == 0 {
            return Err("libwebp rejected the animation ABI version".into());
        }
        options.anim_params.loop_count = loop_count;
        // Transparent black: frames are full canvases, so it only shows where they are clear.
        options.anim_params.bgcolor = 0;
        // SAFETY: `options` was initialised above.
        let inner =
            unsafe { sys::WebPAnimEncoderNewInternal(width as i32, height as i32, &options, abi) };
        if inner.is_null() {
            return Err(format!(
                "libwebp could not create a {width}x{height} animation encoder"
            ));
        }
        Ok(AnimationEncoder { inner })
    }

    fn last_error(&self, action: &str) -> String {
        // SAFETY: the encoder is live; the message is owned by the encoder
        // and copied before it can change.
        let message = unsafe { sys::WebPAnimEncoderGetError(self.inner) };
        if message.is_null() {
            return format!("{action} failed");
        }
        // SAFETY: libwebp returns a NUL-terminated string.
        let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
        format!("{action} failed: {text}")
    }
}

impl Drop for AnimationEncoder {
    fn drop(&mut self) {
        // SAFETY: the pointer came from WebPAnimEncoderNewInternal and is deleted once.
        unsafe { sys::WebPAnimEncoderDelete(self.inner) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> image_webp::WebPDecoder<std::io::Cursor<&[u8]>> {
        image_webp::WebPDecoder::new(std::io::Cursor::new(bytes)).unwrap()
    }

    #[test]
    fn lossless_round_trips_exactly() {
        let pixels: Vec<u8> = (0..16 * 8 * 4)
            .map(|value| (value * 7 % 256) as u8)
            .collect();
        let bytes =
            encode_still(&pixels, Channels::Rgba, 16, 8, Compression::Lossless, None).unwrap();
        let mut decoder = decode(&bytes);
        assert_eq!(decoder.dimensions(), (16, 8));
        let mut decoded = vec![0u8; pixels.len()];
        decoder.read_image(&mut decoded).unwrap();
        // Lossless keeps colour exactly only where alpha is not 0.
        for (before, after) in pixels.chunks_exact(4).zip(decoded.chunks_exact(4)) {
            assert_eq!(before[3], after[3]);
            if before[3] > 0 {
                assert_eq!(before, after);
            }
        }
    }

    #[test]
    fn lossy_rgb_has_no_alpha() {
        let pixels = vec![200u8; 32 * 32 * 3];
        let bytes = encode_still(
            &pixels,
            Channels::Rgb,
            32,
            32,
            Compression::Lossy { quality: 80.0 },
            None,
        )
        .unwrap();
        let decoder = decode(&bytes);
        assert_eq!(decoder.dimensions(), (32, 32));
        assert!(!decoder.has_alpha());
    }

    #[test]
    fn animation_keeps_every_duration() {
        let red: Vec<u8> = [255, 0, 0, 255].repeat(8 * 8);
        let blue: Vec<u8> = [0, 0, 255, 255].repeat(8 * 8);
        let frames = [
            AnimationFrame {
                rgba: &red,
                duration_ms: 100,
            },
            AnimationFrame {
                rgba: &blue,
                duration_ms: 250,
            },
            AnimationFrame {
                rgba: &red,
                duration_ms: 70,
            },
        ];
        let bytes = encode_animation(&frames, 8, 8, Compression::Lossless, 3, None).unwrap();
        let mut decoder = decode(&bytes);
        assert_eq!(decoder.num_frames(), 3);
        assert_eq!(
            decoder.loop_count(),
            image_webp::LoopCount::Times(3.try_into().unwrap())
        );
        let mut buffer = vec![0u8; decoder.output_buffer_size().unwrap()];
        let durations: Vec<u32> = (0..3)
            .map(|_| decoder.read_frame(&mut buffer).unwrap())
            .collect();
        assert_eq!(durations, [100, 250, 70]);
    }

    #[test]
    fn oversized_picture_is_an_error() {
        let error =
            encode_still(&[], Channels::Rgb, 16384, 1, Compression::Lossless, None).unwrap_err();
        assert!(error.to_string().contains("16384x1"), "{error}");
    }

    /// Returns `width × height` RGB pixels of noise, which VP8 compresses slowly.
    fn noise(width: u32, height: u32) -> Vec<u8> {
        let mut state: u32 = 0x9E37_79B9;
        (0..width * height * 3)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect()
    }

    #[test]
    fn passed_deadline_aborts_still() {
        let pixels = noise(64, 64);
        for compression in [Compression::Lossy { quality: 80.0 }, Compression::Lossless] {
            let result = encode_still(
                &pixels,
                Channels::Rgb,
                64,
                64,
                compression,
                Some(Instant::now()),
            );
            assert_eq!(result, Err(EncodeError::DeadlinePassed), "{compression:?}");
        }
    }

    #[test]
    fn near_deadline_stops_encode_early() {
        let (width, height) = (2000, 1500);
        let pixels = noise(width, height);
        let compression = Compression::Lossy { quality: 100.0 };
        let started = Instant::now();
        encode_still(&pixels, Channels::Rgb, width, height, compression, None).unwrap();
        let full = started.elapsed();

        // A deadline a tenth of the way in must stop the encode well before
        // its end. Half the full time leaves room for a busy machine.
        let started = Instant::now();
        let deadline = started + full / 10;
        let result = encode_still(
            &pixels,
            Channels::Rgb,
            width,
            height,
            compression,
            Some(deadline),
        );
        let stopped_after = started.elapsed();
        assert_eq!(result, Err(EncodeError::DeadlinePassed));
        assert!(
            stopped_after < full / 2,
            "stopped after {stopped_after:?}; the whole encode took {full:?}"
        );
    }

    #[test]
    fn passed_deadline_aborts_animation() {
        let red: Vec<u8> = [255, 0, 0, 255].repeat(8 * 8);
        let frames = [AnimationFrame {
            rgba: &red,
            duration_ms: 100,
        }];
        let result = encode_animation(
            &frames,
            8,
            8,
            Compression::Lossless,
            0,
            Some(Instant::now()),
        );
        assert_eq!(result, Err(EncodeError::DeadlinePassed));
    }
}
