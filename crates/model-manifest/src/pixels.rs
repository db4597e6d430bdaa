//! Model inputs from images as an app holds them: an `image::DynamicImage`, or a raw RGB,
//! RGBA, BGRA or BGR byte buffer with a row stride (a camera frame, a `CVPixelBuffer`'s base
//! address, a canvas). Each becomes the same [`RgbImage`] a decoded file does, so the tensor is
//! identical to [`crate::preprocess::preprocess_file`] on the same pixels.
//!
//! Alpha is dropped, not composited (what PIL's `convert("RGB")` does, and so what the
//! reference pipelines did).

use inference_api::{Error, Result, Tensor};

use crate::manifest::Preprocessing;
use crate::preprocess::{RgbImage, check_dimensions, preprocess};

/// How the pixels of a byte buffer are laid out (8 bits per channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Red, green, blue: 3 bytes per pixel.
    Rgb8,
    /// Blue, green, red: 3 bytes per pixel.
    Bgr8,
    /// Red, green, blue, alpha: 4 bytes per pixel.
    Rgba8,
    /// Blue, green, red, alpha: 4 bytes per pixel (Core Video's `kCVPixelFormatType_32BGRA`).
    Bgra8,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Bgr8 => 3,
            PixelFormat::Rgba8 | PixelFormat::Bgra8 => 4,
        }
    }

    /// Byte offsets of red, green and blue within a pixel.
    fn rgb_offsets(self) -> [usize; 3] {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Rgba8 => [0, 1, 2],
            PixelFormat::Bgr8 | PixelFormat::Bgra8 => [2, 1, 0],
        }
    }
}

/// A borrowed image buffer: `height` rows of `stride` bytes, each starting with `width`
/// pixels in `format` (padding after them is ignored).
#[derive(Debug, Clone, Copy)]
pub struct PixelBuffer<'a> {
    /// The bytes, at least `stride * (height - 1) + width * bytes_per_pixel` long.
    pub bytes: &'a [u8],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Bytes from the start of one row to the start of the next.
    pub stride: usize,
    /// Channel layout.
    pub format: PixelFormat,
}

impl<'a> PixelBuffer<'a> {
    /// A tightly packed buffer (`stride = width * bytes_per_pixel`).
    pub fn packed(bytes: &'a [u8], width: usize, height: usize, format: PixelFormat) -> Self {
        PixelBuffer { bytes, width, height, stride: width * format.bytes_per_pixel(), format }
    }

    /// The pixels as 8-bit RGB. Errors name what is wrong: an empty or oversized image, a
    /// stride shorter than a row, a buffer shorter than the rows it claims.
    pub fn to_rgb(&self) -> Result<RgbImage> {
        let (w, h) = (self.width, self.height);
        if w == 0 || h == 0 {
            return Err(Error::invalid_input("image", "a non-empty image", format!("{w}x{h}")));
        }
        let side = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        check_dimensions(side(w), side(h))
            .map_err(|m| Error::invalid_input("image", "an image within the size limits", m))?;
        let bpp = self.format.bytes_per_pixel();
        let row = w * bpp;
        if self.stride < row {
            return Err(Error::invalid_input(
                "image",
                format!("a row stride of at least {row} bytes ({w} pixels x {bpp} bytes)"),
                format!("stride {}", self.stride),
            ));
        }
        let need = self.stride.checked_mul(h - 1).and_then(|n| n.checked_add(row));
        if need.is_none_or(|n| self.bytes.len() < n) {
            return Err(Error::invalid_input(
                "image",
                format!(
                    "a buffer of at least {} bytes ({h} rows, stride {}, {row} bytes in the last)",
                    need.map_or_else(|| "too many".to_string(), |n| n.to_string()),
                    self.stride
                ),
                format!("{} bytes", self.bytes.len()),
            ));
        }
        let [r, g, b] = self.format.rgb_offsets();
        let mut pixels = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            let line = &self.bytes[y * self.stride..y * self.stride + row];
            for px in line.chunks_exact(bpp) {
                pixels.extend_from_slice(&[px[r], px[g], px[b]]);
            }
        }
        Ok(RgbImage { width: w, height: h, pixels })
    }
}

/// The model input for a raw pixel buffer, preprocessed as the manifest says.
pub fn preprocess_buffer(buffer: &PixelBuffer<'_>, p: &Preprocessing) -> Result<Tensor> {
    preprocess(&buffer.to_rgb()?, p)
}

/// A `DynamicImage` as 8-bit RGB (16-bit and float images are converted, alpha dropped).
pub fn rgb_from_dynamic(img: &image::DynamicImage) -> Result<RgbImage> {
    check_dimensions(img.width(), img.height())
        .map_err(|m| Error::invalid_input("image", "an image within the size limits", m))?;
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    Ok(RgbImage { width: w as usize, height: h as usize, pixels: rgb.into_raw() })
}

/// The model input for a `DynamicImage`, preprocessed as the manifest says.
pub fn preprocess_dynamic(img: &image::DynamicImage, p: &Preprocessing) -> Result<Tensor> {
    preprocess(&rgb_from_dynamic(img)?, p)
}
