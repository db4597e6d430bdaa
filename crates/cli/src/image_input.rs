//! A photo as the model's input: normalised float planes for a model that takes a tensor (the
//! manifest's preprocessing), or the cropped u8 `[height, width, 3]` RGB image for a model whose
//! input is a Core ML image feature (which applies its own colour layout, scale and bias).

use std::path::Path;

use anyhow::{Context, Result, bail};
use inference_api::{DType, FeatureKind, ImageFormat, Tensor, TensorData, TensorSpec};
use model_manifest::Preprocessing;
use model_manifest::preprocess::{decode_file, resize_and_crop};

/// The input tensor for `photo`, shaped for `spec`.
pub(crate) fn photo_tensor(
    photo: &Path,
    prep: &Preprocessing,
    spec: &TensorSpec,
) -> Result<Tensor> {
    match image_kind(spec) {
        None => Ok(model_manifest::preprocess::preprocess_file(photo, prep)?),
        Some(ImageFormat::Gray) => bail!(
            "input `{}` is a grayscale image; classify feeds colour photos. Pass a u8 \
             [height, width, 1] tensor with `infer run` instead",
            spec.name
        ),
        Some(_) => {
            let img = resize_and_crop(&decode_file(photo)?, prep)?;
            Tensor::new(vec![img.height, img.width, 3], TensorData::U8(img.pixels))
                .with_context(|| format!("building the image input from {}", photo.display()))
        }
    }
}

/// The image layout of an input that takes an image: a Core ML image feature, or (as a
/// manifest records one, without its kind) a u8 `[height, width, 3 or 1]` tensor, which is the
/// image convention of every engine.
pub(crate) fn image_kind(spec: &TensorSpec) -> Option<ImageFormat> {
    match (spec.kind, spec.dtype, spec.fixed_shape().as_deref()) {
        (FeatureKind::Image { format, .. }, _, _) => Some(format),
        (_, DType::U8, Some(&[_, _, 3])) => Some(ImageFormat::Rgb),
        (_, DType::U8, Some(&[_, _, 1])) => Some(ImageFormat::Gray),
        _ => None,
    }
}
