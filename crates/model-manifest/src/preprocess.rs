//! Image preprocessing driven by the manifest: decode, resize the shorter side, center crop,
//! scale, normalize, lay out as NCHW (or NHWC).
//!
//! Resizing follows PIL's separable resampling (antialiased when shrinking: the filter support
//! widens with the scale factor; 8-bit rounding between the horizontal and vertical passes),
//! which is what the torchvision/timm pipelines that made the reference inputs use.

use std::io::Read;
use std::path::Path;

use inference_api::{Error, Result, Tensor};

use crate::limits::{MAX_IMAGE_FILE_BYTES, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, MAX_RESIZED_PIXELS};
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
/// the file; a file longer than [`MAX_IMAGE_FILE_BYTES`] (or an endless device) and an image
/// larger than [`MAX_IMAGE_SIDE`] / [`MAX_IMAGE_PIXELS`] are refused before decoding.
pub fn decode_file(path: &Path) -> Result<RgbImage> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, &e))?;
    let mut bytes = Vec::new();
    file.take(MAX_IMAGE_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, &e))?;
    if bytes.len() as u64 > MAX_IMAGE_FILE_BYTES {
        return Err(Error::io_message(
            path,
            format!(
                "image file is larger than {} MiB (the limit for photos): pass a regular PNG or \
                 JPEG file, downscaled if needed",
                MAX_IMAGE_FILE_BYTES >> 20
            ),
        ));
    }
    decode_bytes(&bytes)
        .map_err(|msg| Error::io_message(path, format!("cannot decode image: {msg}")))
}

/// Decodes PNG or JPEG bytes into RGB. The dimensions are read from the header first and an
/// image wider or taller than [`MAX_IMAGE_SIDE`], or with more than [`MAX_IMAGE_PIXELS`]
/// pixels, is refused without decoding it.
pub fn decode_bytes(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    let reader = |b| {
        image::ImageReader::new(std::io::Cursor::new(b))
            .with_guessed_format()
            .map_err(|e| e.to_string())
    };
    let (w, h) = reader(bytes)?.into_dimensions().map_err(|e| e.to_string())?;
    check_dimensions(w, h)?;
    let mut r = reader(bytes)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    // 16-bit RGBA is the widest decoded layout: 8 bytes per pixel.
    limits.max_alloc = Some(MAX_IMAGE_PIXELS * 8);
    r.limits(limits);
    let img = r.decode().map_err(|e| e.to_string())?;
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    Ok(RgbImage { width: w as usize, height: h as usize, pixels: rgb.into_raw() })
}

/// Refuses an image wider or taller than [`MAX_IMAGE_SIDE`] or larger than [`MAX_IMAGE_PIXELS`].
pub(crate) fn check_dimensions(w: u32, h: u32) -> std::result::Result<(), String> {
    if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE || u64::from(w) * u64::from(h) > MAX_IMAGE_PIXELS {
        return Err(format!(
            "image is {w}x{h} pixels; at most {MAX_IMAGE_SIDE} pixels a side and {} megapixels \
             are accepted: downscale it first",
            MAX_IMAGE_PIXELS / 1_000_000
        ));
    }
    Ok(())
}

/// Reads an image file and turns it into the model's input tensor.
pub fn preprocess_file(path: &Path, p: &Preprocessing) -> Result<Tensor> {
    preprocess(&decode_file(path)?, p)
}

/// The size the shorter-side resize gives: torchvision's rule, the shorter side becomes
/// `resize_shorter` and the longer `int(resize_shorter * long / short)`. An error when the
/// result would exceed [`MAX_RESIZED_PIXELS`] (a very thin image).
pub fn resized_size(width: usize, height: usize, resize_shorter: u32) -> Result<(usize, usize)> {
    if width == 0 || height == 0 {
        return Err(Error::invalid_input("image", "a non-empty image", "0 pixels"));
    }
    let short = width.min(height) as f64;
    let target = f64::from(resize_shorter);
    let (new_w, new_h) = if width <= height {
        (resize_shorter as usize, (target * height as f64 / short) as usize)
    } else {
        ((target * width as f64 / short) as usize, resize_shorter as usize)
    };
    let (new_w, new_h) = (new_w.max(1), new_h.max(1));
    check_resize(new_w, new_h).map_err(|max| {
        Error::invalid_input(
            "image",
            format!(
                "an aspect ratio that resizes (shorter side {resize_shorter}) to at most {max} \
                 pixels; crop the image closer to square first"
            ),
            format!("{width}x{height}, which would resize to {new_w}x{new_h}"),
        )
    })?;
    Ok((new_w, new_h))
}

/// `Err(limit)` when a `w x h` resize output exceeds [`MAX_RESIZED_PIXELS`].
fn check_resize(w: usize, h: usize) -> std::result::Result<(), u64> {
    match (w as u64).checked_mul(h as u64) {
        Some(n) if n <= MAX_RESIZED_PIXELS => Ok(()),
        _ => Err(MAX_RESIZED_PIXELS),
    }
}

/// The geometric half of preprocessing: resize the shorter side to `resize_shorter`, then
/// centre-crop to `crop` (height, width). The pixels stay u8 RGB: what a model whose input is a
/// Core ML image takes, and what [`preprocess`] normalises.
pub fn resize_and_crop(img: &RgbImage, p: &Preprocessing) -> Result<RgbImage> {
    if img.width == 0 || img.height == 0 {
        return Err(Error::invalid_input("image", "a non-empty image", "0 pixels"));
    }
    let (new_w, new_h) = resized_size(img.width, img.height, p.resize_shorter)?;
    let resized = resize(img, new_w, new_h, p.interpolation)?;
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
    let mut pixels = Vec::with_capacity(ch * cw * 3);
    for y in top..top + ch {
        let row = (y * resized.width + left) * 3;
        pixels.extend_from_slice(&resized.pixels[row..row + cw * 3]);
    }
    Ok(RgbImage { width: cw, height: ch, pixels })
}

/// Turns a decoded image into the model's input tensor of shape `[1, 3, crop_h, crop_w]`
/// (or `[1, crop_h, crop_w, 3]` for `layout = "nhwc"`).
pub fn preprocess(img: &RgbImage, p: &Preprocessing) -> Result<Tensor> {
    let cropped = resize_and_crop(img, p)?;
    let (ch, cw) = (cropped.height, cropped.width);
    let bgr = p.channel_order == "bgr";
    let nhwc = p.layout == "nhwc";
    let mut out = vec![0f32; 3 * ch * cw];
    for y in 0..ch {
        for x in 0..cw {
            let src = (y * cw + x) * 3;
            for c in 0..3 {
                let sc = if bgr { 2 - c } else { c };
                let v = cropped.pixels[src + sc] as f32 * p.scale;
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

/// Resizes with PIL's separable, antialiased resampling. An output (or the intermediate
/// `new_w x height` pass) over [`MAX_RESIZED_PIXELS`] / [`MAX_IMAGE_PIXELS`] is an error.
pub fn resize(img: &RgbImage, new_w: usize, new_h: usize, kind: Interpolation) -> Result<RgbImage> {
    if new_w == 0 || new_h == 0 || img.width == 0 || img.height == 0 {
        return Err(Error::invalid_input(
            "image",
            "a non-empty image and a non-empty resize",
            format!("{}x{} to {new_w}x{new_h}", img.width, img.height),
        ));
    }
    let too_big = check_resize(new_w, new_h).is_err()
        || (new_w as u64).saturating_mul(img.height as u64) > MAX_IMAGE_PIXELS;
    if too_big {
        return Err(Error::invalid_input(
            "image",
            format!("a resize to at most {MAX_RESIZED_PIXELS} pixels"),
            format!("{}x{} to {new_w}x{new_h}", img.width, img.height),
        ));
    }
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
    Ok(RgbImage { width: new_w, height: new_h, pixels: out })
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
            let r = resize(&img, 4, 3, kind).unwrap();
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

    fn png(img: image::DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
        out
    }

    /// PNG signature and an IHDR chunk only: enough for the header to state the dimensions.
    fn png_header_only(w: u32, h: u32) -> Vec<u8> {
        fn crc32(bytes: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in bytes {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
                }
            }
            !crc
        }
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
        // IHDR, then an empty IDAT: the decoder reads up to the first IDAT for the header.
        for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &[]), (b"IEND", &[])] {
            let mut chunk = kind.to_vec();
            chunk.extend_from_slice(data);
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(&chunk);
            out.extend_from_slice(&crc32(&chunk).to_be_bytes());
        }
        out
    }

    #[test]
    fn a_thin_png_is_refused_before_resizing() {
        // F1: a 177-byte 100000x1 PNG made the resize allocate 19.6 GB and abort.
        for (w, h) in [(16_000, 1), (1, 16_000)] {
            let bytes = png(image::DynamicImage::ImageLuma8(image::GrayImage::new(w, h)));
            let img = decode_bytes(&bytes).unwrap();
            let e = preprocess(
                &img,
                &Preprocessing { resize_shorter: 256, crop: [224, 224], ..prep() },
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("aspect ratio") && e.contains(&format!("{w}x{h}")), "{e}");
        }
    }

    #[test]
    fn oversized_dimensions_are_refused_from_the_header() {
        let wide =
            png(image::DynamicImage::ImageLuma8(image::GrayImage::new(MAX_IMAGE_SIDE + 1, 1)));
        let e = decode_bytes(&wide).unwrap_err();
        assert!(e.contains(&format!("{}x1", MAX_IMAGE_SIDE + 1)) && e.contains("downscale"), "{e}");
        // 20000x20000 (400 megapixels) stated in the header: refused without decoding.
        let e = decode_bytes(&png_header_only(20_000, 20_000)).unwrap_err();
        assert!(e.contains("20000x20000"), "{e}");
        let e = decode_bytes(&png_header_only(9_000, 9_000)).unwrap_err();
        assert!(e.contains("megapixels"), "{e}");
    }

    #[test]
    fn resize_output_is_bounded() {
        let img = RgbImage { width: 2, height: 2, pixels: vec![0; 12] };
        assert!(resize(&img, 5000, 5000, Interpolation::Bilinear).is_err());
        assert!(resize(&img, 0, 5, Interpolation::Bilinear).is_err());
        assert_eq!(resize(&img, 8, 8, Interpolation::Bilinear).unwrap().pixels.len(), 8 * 8 * 3);
    }

    #[cfg(unix)]
    #[test]
    fn an_endless_file_is_refused_after_the_byte_limit() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("photo.png");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = decode_file(&link).unwrap_err().to_string();
        assert!(e.contains("larger than 256 MiB"), "{e}");
    }
}
