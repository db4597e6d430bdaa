//! Image features the way Core ML presents them: the one convention every engine takes (u8
//! `[height, width, channels]`, R, G, B order or one gray channel) turned into the float planes a
//! program reads (`[1, channels, height, width]` in the model's colour layout), and back for image
//! outputs.
//!
//! Core ML itself does this conversion between a `CVPixelBuffer` and the program: a BGR model
//! gets its planes in B, G, R order, and the image's `scale` and per-channel `bias`, which
//! coremltools writes into an ML Program as ordinary `mul`/`add` ops, run inside the program. So
//! the CPU executor and the Core ML bridge read the same input tensor the same way.

use inference_api::{Error, ImageFormat, Result, Tensor, TensorData};

/// Number of channels of an image in `format` (3 for colour, 1 for gray).
pub fn channels(format: ImageFormat) -> usize {
    match format {
        ImageFormat::Rgb | ImageFormat::Bgr => 3,
        ImageFormat::Gray => 1,
    }
}

/// Turns an image tensor (u8 `[height, width, channels]`, R, G, B or gray) into the float planes
/// `[1, channels, height, width]` in the model's colour layout (`format`), as Core ML feeds an
/// image feature to an ML Program. `name` is the feature, for errors.
///
/// An f16 gray image (Core ML's `GrayscaleFloat16`) is accepted as `[height, width, 1]` f16.
pub fn image_to_planes(name: &str, image: &Tensor, format: ImageFormat) -> Result<Tensor> {
    let c = channels(format);
    let &[h, w, got_c] = image.shape() else {
        return Err(Error::invalid_input(
            name,
            format!("an image [height, width, {c}]"),
            format!("shape {:?}", image.shape()),
        ));
    };
    if got_c != c {
        return Err(Error::invalid_input(
            name,
            format!("{c} channel(s) ({})", layout_name(format)),
            format!("{got_c} channels"),
        ));
    }
    let plane = h * w;
    let mut out = vec![0f32; c * plane];
    // Output plane `p` reads input channel `src[p]`: R, G, B in, the model's layout out.
    let src = plane_order(format);
    let mut fill = |value: &dyn Fn(usize) -> f32| {
        for (p, &s) in src.iter().enumerate() {
            let dst = &mut out[p * plane..(p + 1) * plane];
            for (i, d) in dst.iter_mut().enumerate() {
                *d = value(i * c + s);
            }
        }
    };
    match image.data() {
        TensorData::U8(px) => fill(&|i| f32::from(px[i])),
        TensorData::F16(px) if format == ImageFormat::Gray => fill(&|i| px[i].to_f32()),
        other => {
            return Err(Error::invalid_input(
                name,
                "u8 pixels (f16 only for a gray f16 image)",
                format!("{:?}", other.dtype()),
            ));
        }
    }
    Tensor::from_f32(vec![1, c, h, w], out)
}

/// Turns a program's float output planes (`[1, channels, height, width]` or `[channels, height,
/// width]`, in the model's colour layout) into an image tensor u8 `[height, width, channels]` in
/// R, G, B order: values rounded to the nearest integer and clamped to 0..=255.
pub fn planes_to_image(
    name: &str,
    planes: &[f32],
    shape: &[usize],
    format: ImageFormat,
) -> Result<Tensor> {
    let c = channels(format);
    let (pc, h, w) = match *shape {
        [1, pc, h, w] | [pc, h, w] => (pc, h, w),
        _ => {
            return Err(Error::Runtime(format!(
                "image output `{name}`: the program produced shape {shape:?}, not [1, {c}, H, W]"
            )));
        }
    };
    if pc != c || planes.len() != c * h * w {
        return Err(Error::Runtime(format!(
            "image output `{name}` ({}): the program produced {pc} planes of {h}x{w} \
             ({} values), not {c}",
            layout_name(format),
            planes.len()
        )));
    }
    let plane = h * w;
    let src = plane_order(format);
    let mut px = vec![0u8; c * plane];
    for (ch, &p) in src.iter().enumerate() {
        for (i, v) in planes[p * plane..(p + 1) * plane].iter().enumerate() {
            // NaN becomes 0 (`as` saturates), as a pixel buffer cannot hold it.
            px[i * c + ch] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    Tensor::new(vec![h, w, c], TensorData::U8(px))
}

/// For each plane of the model's layout, the channel of an R, G, B (or gray) pixel it holds.
fn plane_order(format: ImageFormat) -> &'static [usize] {
    match format {
        ImageFormat::Rgb => &[0, 1, 2],
        ImageFormat::Bgr => &[2, 1, 0],
        ImageFormat::Gray => &[0],
    }
}

fn layout_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Rgb => "RGB",
        ImageFormat::Bgr => "RGB in, BGR model",
        ImageFormat::Gray => "gray",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(h: usize, w: usize, c: usize) -> Tensor {
        let px = (0..h * w * c).map(|i| (i * 7 % 256) as u8).collect();
        Tensor::new(vec![h, w, c], TensorData::U8(px)).unwrap()
    }

    /// Naive reference: pixel (y, x) channel k of the model's layout.
    fn naive(img: &Tensor, format: ImageFormat, k: usize, y: usize, x: usize) -> f32 {
        let TensorData::U8(px) = img.data() else { unreachable!() };
        let [_, w, c] = img.shape() else { unreachable!() };
        let rgb = match format {
            ImageFormat::Bgr => 2 - k,
            _ => k,
        };
        f32::from(px[(y * w + x) * c + rgb])
    }

    #[test]
    fn bgr_planes_swap_red_and_blue_and_round_trip() {
        for format in [ImageFormat::Rgb, ImageFormat::Bgr, ImageFormat::Gray] {
            let c = channels(format);
            let img = image(5, 7, c);
            let planes = image_to_planes("image", &img, format).unwrap();
            assert_eq!(planes.shape(), &[1, c, 5, 7]);
            let v = planes.as_f32().unwrap();
            for k in 0..c {
                for y in 0..5 {
                    for x in 0..7 {
                        assert_eq!(v[(k * 5 + y) * 7 + x], naive(&img, format, k, y, x));
                    }
                }
            }
            let back = planes_to_image("image", v, planes.shape(), format).unwrap();
            assert_eq!(back.data(), img.data(), "{format:?} round trip");
        }
    }

    #[test]
    fn wrong_layouts_are_named() {
        let chw = Tensor::new(vec![1, 3, 4, 4], TensorData::U8(vec![0; 48])).unwrap();
        let err = image_to_planes("image", &chw, ImageFormat::Rgb).unwrap_err().to_string();
        assert!(err.contains("[height, width, 3]"), "{err}");
        let gray_as_rgb = image(4, 4, 3);
        let err = image_to_planes("g", &gray_as_rgb, ImageFormat::Gray).unwrap_err().to_string();
        assert!(err.contains("1 channel"), "{err}");
        let f32_img = Tensor::from_f32(vec![2, 2, 3], vec![0.0; 12]).unwrap();
        assert!(image_to_planes("image", &f32_img, ImageFormat::Rgb).is_err());
    }

    #[test]
    fn outputs_round_and_clamp() {
        let planes = [-3.0, 0.49, 0.5, 254.6, 300.0, f32::NAN];
        let img = planes_to_image("o", &planes, &[1, 1, 2, 3], ImageFormat::Gray).unwrap();
        let TensorData::U8(px) = img.data() else { panic!() };
        assert_eq!(px, &[0, 0, 1, 255, 255, 0]);
    }
}
