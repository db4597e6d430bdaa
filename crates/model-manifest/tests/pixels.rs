//! The image helpers (`pixels`) give exactly the tensor the file path gives, on the fixture
//! photos: from a `DynamicImage`, and from RGB/BGR/RGBA/BGRA buffers with padded rows.

use std::path::{Path, PathBuf};

use model_manifest::ModelBundle;
use model_manifest::pixels::{PixelBuffer, PixelFormat, preprocess_buffer, preprocess_dynamic};
use model_manifest::preprocess::{decode_file, preprocess_file};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn photos() -> Vec<PathBuf> {
    let dir = root().join("../shared/fixtures/images");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixture photos in {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    v.sort();
    assert!(v.len() >= 2, "expected the fixture photos in {}", dir.display());
    v
}

fn prep() -> model_manifest::Preprocessing {
    let b = ModelBundle::load(root().join("models/efficientnet-lite0")).unwrap();
    b.manifest.preprocessing.unwrap()
}

/// `rgb` re-laid out in `format` with `pad` junk bytes after every row.
fn buffer(rgb: &[u8], w: usize, h: usize, format: PixelFormat, pad: usize) -> (Vec<u8>, usize) {
    let bpp = format.bytes_per_pixel();
    let stride = w * bpp + pad;
    let mut out = vec![0xAB; stride * h];
    for y in 0..h {
        for x in 0..w {
            let s = &rgb[(y * w + x) * 3..][..3];
            let d = &mut out[y * stride + x * bpp..][..bpp];
            match format {
                PixelFormat::Rgb8 => d.copy_from_slice(s),
                PixelFormat::Bgr8 => d.copy_from_slice(&[s[2], s[1], s[0]]),
                PixelFormat::Rgba8 => d.copy_from_slice(&[s[0], s[1], s[2], 77]),
                PixelFormat::Bgra8 => d.copy_from_slice(&[s[2], s[1], s[0], 200]),
            }
        }
    }
    (out, stride)
}

#[test]
fn dynamic_image_gives_the_same_tensor_as_the_file() {
    let p = prep();
    for photo in photos() {
        let want = preprocess_file(&photo, &p).unwrap();
        let img = image::open(&photo).unwrap();
        let got = preprocess_dynamic(&img, &p).unwrap();
        assert_eq!(got.shape(), want.shape());
        assert_eq!(got.as_f32().unwrap(), want.as_f32().unwrap(), "{}", photo.display());
        // An RGBA image (alpha added, then dropped) gives the same tensor as well.
        let rgba = image::DynamicImage::ImageRgba8(img.to_rgba8());
        let got = preprocess_dynamic(&rgba, &p).unwrap();
        assert_eq!(got.as_f32().unwrap(), want.as_f32().unwrap(), "{} rgba", photo.display());
    }
}

#[test]
fn strided_buffers_in_every_format_give_the_same_tensor_as_the_file() {
    let p = prep();
    for photo in photos() {
        let want = preprocess_file(&photo, &p).unwrap();
        let rgb = decode_file(&photo).unwrap();
        for format in [PixelFormat::Rgb8, PixelFormat::Bgr8, PixelFormat::Rgba8, PixelFormat::Bgra8]
        {
            for pad in [0, 13, 64] {
                let (bytes, stride) = buffer(&rgb.pixels, rgb.width, rgb.height, format, pad);
                let buf = PixelBuffer {
                    bytes: &bytes,
                    width: rgb.width,
                    height: rgb.height,
                    stride,
                    format,
                };
                let got = preprocess_buffer(&buf, &p).unwrap();
                assert_eq!(
                    got.as_f32().unwrap(),
                    want.as_f32().unwrap(),
                    "{} {format:?} pad {pad}",
                    photo.display()
                );
            }
        }
    }
}

#[test]
fn a_short_stride_or_buffer_is_refused_with_the_sizes() {
    let bytes = vec![0u8; 4 * 4 * 4];
    let short_stride =
        PixelBuffer { bytes: &bytes, width: 4, height: 4, stride: 12, format: PixelFormat::Bgra8 };
    let e = short_stride.to_rgb().unwrap_err().to_string();
    assert!(e.contains("stride of at least 16") && e.contains("stride 12"), "{e}");
    let short_buf = PixelBuffer {
        bytes: &bytes[..60],
        width: 4,
        height: 4,
        stride: 16,
        format: PixelFormat::Rgba8,
    };
    let e = short_buf.to_rgb().unwrap_err().to_string();
    assert!(e.contains("at least 64 bytes") && e.contains("60 bytes"), "{e}");
    let empty = PixelBuffer::packed(&[], 0, 3, PixelFormat::Rgb8);
    assert!(empty.to_rgb().is_err());
    // The last row needs only its pixels, not a full stride.
    let ok = PixelBuffer {
        bytes: &bytes[..48 + 12],
        width: 4,
        height: 4,
        stride: 16,
        format: PixelFormat::Rgb8,
    };
    assert_eq!(ok.to_rgb().unwrap().pixels.len(), 48);
}
