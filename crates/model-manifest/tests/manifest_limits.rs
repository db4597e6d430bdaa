//! Manifest values out of range (F8: no upper bounds; F4: non-finite numbers) are refused at
//! load with an error naming the field and the limit.

use inference_api::Error;
use model_manifest::Manifest;

const BASE: &str = r#"
name = "tiny"
version = "1"
task = "image-classification"
license = "MIT"

[origin]
source = "made in a test"

[[files]]
path = "w.safetensors"
role = "weights"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
size = 1

[[inputs]]
name = "input"
dtype = "f32"
shape = [1, 3, 224, 224]

[[outputs]]
name = "logits"
dtype = "f32"
shape = [1, 1000]
"#;

fn preprocessing(resize: &str, crop: &str, scale: &str, mean: &str, std: &str) -> String {
    format!(
        "{BASE}\n[preprocessing]\nresize_shorter = {resize}\ninterpolation = \"bicubic\"\n\
         crop = {crop}\nscale = {scale}\nmean = {mean}\nstd = {std}\n"
    )
}

fn good() -> String {
    preprocessing(
        "256",
        "[224, 224]",
        "0.00392156",
        "[0.485, 0.456, 0.406]",
        "[0.229, 0.224, 0.225]",
    )
}

fn refused(text: &str, needle: &str) {
    let err = Manifest::parse(text, "m.toml").expect_err(needle);
    assert!(matches!(err, Error::Load(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("m.toml") && msg.contains(needle), "{needle}: {msg}");
}

#[test]
fn the_good_manifest_parses() {
    Manifest::parse(&good(), "m.toml").unwrap();
}

#[test]
fn preprocessing_sizes_have_upper_bounds() {
    // F8: resize_shorter = 60000 aborted on a 16 GB allocation.
    refused(
        &good().replace("resize_shorter = 256", "resize_shorter = 60000"),
        "resize_shorter is 60000; at most 4096",
    );
    refused(&good().replace("crop = [224, 224]", "crop = [224, 5000]"), "crop is 5000");
}

#[test]
fn preprocessing_numbers_must_be_finite_and_std_positive() {
    let nums = [
        ("std = [0.229, 0.224, 0.225]", "std = [nan, 0.224, 0.225]", "std has NaN"),
        ("std = [0.229, 0.224, 0.225]", "std = [0.229, -0.5, 0.225]", "std has -0.5"),
        ("std = [0.229, 0.224, 0.225]", "std = [0.229, 0.224, inf]", "std has inf"),
        ("scale = 0.00392156", "scale = inf", "scale is inf"),
        ("scale = 0.00392156", "scale = nan", "scale is NaN"),
        ("mean = [0.485, 0.456, 0.406]", "mean = [0.485, -inf, 0.406]", "mean has -inf"),
    ];
    for (from, to, needle) in nums {
        refused(&good().replace(from, to), needle);
    }
}

#[test]
fn serving_parity_and_shapes_are_bounded() {
    refused(
        &format!(
            "{}\n[serving]\nsla_ms = 10\ntimeout_ms = 99999999999\npreferred_backends = []\ncompute_units = \"all\"\n",
            good()
        ),
        "timeout_ms is 99999999999",
    );
    refused(
        &format!(
            "{}\n[parity]\nfp32_max_abs = nan\nfp16_max_abs = 0.1\nint8_max_abs = 0.1\n",
            good()
        ),
        "parity.fp32_max_abs is NaN",
    );
    refused(&good().replace("shape = [1, 1000]", "shape = [1000000, 1000000]"), "tensor `logits`");
    // A product that overflows u64 is refused, not wrapped.
    refused(
        &good().replace("shape = [1, 1000]", "shape = [4294967296, 4294967296, 4294967296]"),
        "tensor `logits`",
    );
    refused(
        &good().replace("shape = [1, 1000]", "shape = [1, 1, 1, 1, 1, 1, 1, 1, 1]"),
        "at most 8 dimensions",
    );
}
