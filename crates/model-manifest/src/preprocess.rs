//! Image preprocessing driven by the manifest: decode, resize the shorter side, center crop,
//! scale, normalize, lay out as NCHW (or NHWC).
//!
//! Resizing follows PIL's separable resampling (antialiased when shrinking: the filter support
//! widens with the scale factor; 8-bit rounding between the horizontal and vertical passes),
//! which is what the torchvision/timm pipelines that made the reference inputs use.

use std::path::Path;

use inference_api::{Error, Result, Tensor};

use crate::manifest::{Interpolation, Preprocessing};

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes.
    pub pixels: Vec<u8>,
}

/// Decodes a PNG or JPEG file into RGB. Truncated or unreadable files give an error naming
/// the file.
pub fn decode_file(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, &e))?;
    decode_bytes(&bytes)
        .map_err(|msg| Error::io_message(path, format!("cannot decode image: {msg}")))
}

/// Decodes PNG or JPEG bytes into RGB.
pub fn decode_bytes(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    Ok(RgbImage { width: w as usize, height: h as usize, pixels: rgb.into_raw() })
}

/// Reads an image file and turns it into the model's input tensor.
pub fn preprocess_file(path: &Path, p: &Preprocessing) -> Result<Tensor> {
    preprocess(&decode_file(path)?, p)
}

/// Turns a decoded image into the model's input tensor of shape `[1, 3, crop_h, crop_w]`
/// (or `[1, crop_h, crop_w, 3]` for `layout = "nhwc"`).
pub fn preprocess(img: &RgbImage, p: &Preprocessing) -> Result<Tensor> {
    if img.width == 0 || img.height == 0 {
        return Err(Error::invalid_input("image", "a non-empty image", "0 pixels"));
    }
    let short = img.width.min(img.height) as f64;
    let target = p.resize_shorter as f64;
    // torchvision: the shorter side becomes `size`, the longer `int(size * long / short)`.
    let (new_w, new_h) = if img.width <= img.height {
        (p.resize_shorter as usize, (target * img.height as f64 / short) as usize)
    } else {
        ((target * img.width as f64 / short) as usize, p.resize_shorter as usize)
    };
    let resized = resize(img, new_w.max(1), new_h.max(1), p.interpolation);
    let (ch, cw) = (p.crop[0] as usize, p.crop[1] as usize);
    if ch > resized.height || cw > resized.width {
        return Err(Error::invalid_input(
            "image",
            format!("a crop of {ch}x{cw} to fit inside the resized image"),
            format!("{}x{}", resized.height, resized.width),
        ));
    }
    let top = ((resized.height - ch) as f64 / 2.0).round() as usize;
    let left = ((resized.width - cw) as f64 / 2.0).round() as usize;
    let bgr = p.channel_order == "bgr";
    let nhwc = p.layout == "nhwc";
    let mut out = vec![0f32; 3 * ch * cw];
    for y in 0..ch {
        for x in 0..cw {
            let src = ((top + y) * resized.width + left + x) * 3;
            for c in 0..3 {
                let sc = if bgr { 2 - c } else { c };
                let v = resized.pixels[src + sc] as f32 * p.scale;
                let v = (v - p.mean[c]) / p.std[c];
                let dst = if nhwc { (y * cw + x) * 3 + c } else { c * ch * cw + y * cw + x };
                out[dst] = v;
            }
        }
    }
    let shape = if nhwc { vec![1, ch, cw, 3] } else { vec![1, 3, ch, cw] };
    Tensor::from_f32(shape, out)
}

fn filter(kind: Interpolation, x: f64) -> f64 {
    let x = x.abs();
    match kind {
        Interpolation::Nearest => {
            if x < 0.5 {
                1.0
            } else {
                0.0
            }
        }
        Interpolation::Bilinear => (1.0 - x).max(0.0),
        Interpolation::Bicubic => {
            const A: f64 = -0.5;
            if x < 1.0 {
                ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * A
            } else {
                0.0
            }
        }
    }
}

fn support(kind: Interpolation) -> f64 {
    match kind {
        Interpolation::Nearest => 0.5,
        Interpolation::Bilinear => 1.0,
        Interpolation::Bicubic => 2.0,
    }
}

/// Per output index: first source index and normalized weights.
fn coefficients(in_size: usize, out_size: usize, kind: Interpolation) -> Vec<(usize, Vec<f64>)> {
    let scale = in_size as f64 / out_size as f64;
    let fscale = scale.max(1.0);
    let sup = support(kind) * fscale;
    (0..out_size)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let lo = ((center - sup + 0.5).floor().max(0.0)) as usize;
            let hi = ((center + sup + 0.5).floor() as usize).min(in_size);
            let mut w: Vec<f64> =
                (lo..hi).map(|j| filter(kind, (j as f64 - center + 0.5) / fscale)).collect();
            let sum: f64 = w.iter().sum();
            if sum != 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            }
            (lo, w)
        })
        .collect()
}

fn round_u8(v: f64) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Resizes with PIL's separable, antialiased resampling.
pub fn resize(img: &RgbImage, new_w: usize, new_h: usize, kind: Interpolation) -> RgbImage {
    let cx = coefficients(img.width, new_w, kind);
    let mut tmp = vec![0u8; new_w * img.height * 3];
    for y in 0..img.height {
        for (x, (lo, w)) in cx.iter().enumerate() {
            for c in 0..3 {
                let acc: f64 = w
                    .iter()
                    .enumerate()
                    .map(|(k, wk)| wk * img.pixels[(y * img.width + lo + k) * 3 + c] as f64)
                    .sum();
                tmp[(y * new_w + x) * 3 + c] = round_u8(acc);
            }
        }
    }
    let cy = coefficients(img.height, new_h, kind);
    let mut out = vec![0u8; new_w * new_h * 3];
    for (y, (lo, w)) in cy.iter().enumerate() {
        for x in 0..new_w {
            for c in 0..3 {
                let acc: f64 = w
                    .iter()
                    .enumerate()
                    .map(|(k, wk)| wk * tmp[((lo + k) * new_w + x) * 3 + c] as f64)
                    .sum();
                out[(y * new_w + x) * 3 + c] = round_u8(acc);
            }
        }
    }
    RgbImage { width: new_w, height: new_h, pixels: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep() -> Preprocessing {
        Preprocessing {
            resize_shorter: 4,
            interpolation: Interpolation::Bicubic,
            crop: [4, 4],
            scale: 1.0 / 255.0,
            mean: [0.5; 3],
            std: [0.5; 3],
            channel_order: "rgb".into(),
            layout: "nchw".into(),
        }
    }

    #[test]
    fn constant_image_stays_constant_through_resize() {
        let img = RgbImage { width: 9, height: 7, pixels: vec![200; 9 * 7 * 3] };
        for kind in [Interpolation::Nearest, Interpolation::Bilinear, Interpolation::Bicubic] {
            let r = resize(&img, 4, 3, kind);
            assert!(r.pixels.iter().all(|&p| p == 200), "{kind:?}");
        }
    }

    #[test]
    fn normalizes_and_lays_out_channels_first() {
        // 8x4 image: red channel 255, green 0, blue 51.
        let px: Vec<u8> = (0..32).flat_map(|_| [255u8, 0, 51]).collect();
        let img = RgbImage { width: 8, height: 4, pixels: px };
        let t = preprocess(&img, &prep()).unwrap();
        assert_eq!(t.shape(), &[1, 3, 4, 4]);
        let v = t.as_f32().unwrap();
        assert!((v[0] - 1.0).abs() < 1e-6);
        assert!((v[16] + 1.0).abs() < 1e-6);
        assert!((v[32] - (0.2 - 0.5) / 0.5).abs() < 1e-6);
    }

    #[test]
    fn truncated_png_is_an_error_not_a_panic() {
        let mut png = Vec::new();
        image::RgbImage::new(4, 4)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png.truncate(png.len() / 2);
        assert!(decode_bytes(&png).is_err());
    }
}
