//! Loading a model folder: manifest, sha256 verification of every file, labels, artifact.

use std::path::{Path, PathBuf};

use std::time::Duration;

use inference_api::{Error, IoSchema, ModelArtifact, ModelSpec, Result, ServingSpec, tolerance};

use crate::hash::sha256_path_max;
use crate::limits::MAX_MANIFEST_BYTES;
use crate::manifest::Manifest;

/// A verified model folder, ready to hand to an engine.
#[derive(Debug, Clone)]
pub struct ModelBundle {
    /// The folder holding `manifest.toml`.
    pub dir: PathBuf,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// Declared inputs and outputs.
    pub io_schema: IoSchema,
    /// The weights as an engine artifact (path absolute, sha256 verified).
    pub artifact: ModelArtifact,
    /// Class labels, when the manifest lists a labels file.
    pub labels: Option<Vec<String>>,
}

impl ModelBundle {
    /// Loads `dir/manifest.toml`, verifies every listed file's size and sha256 and reads the
    /// labels. A missing file is [`Error::Io`] (with how to obtain it when the manifest says),
    /// a hash mismatch [`Error::Integrity`] naming the file and both hashes, a malformed
    /// manifest [`Error::Load`].
    pub fn load(dir: impl AsRef<Path>) -> Result<ModelBundle> {
        let dir = dir.as_ref().to_path_buf();
        let manifest_path = dir.join("manifest.toml");
        let text = read_manifest(&manifest_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::io_message(
                    &manifest_path,
                    "no manifest.toml here: pass a model folder that has one, or a \
                     .safetensors/.mlpackage/.mlmodel file",
                )
            } else {
                Error::io(&manifest_path, &e)
            }
        })?;
        let origin = manifest_path.display().to_string();
        let manifest = Manifest::parse(&text, &origin)?;
        for f in &manifest.files {
            verify_file(&dir, f, &manifest)?;
        }
        let io_schema = manifest.io_schema(&origin)?;
        let weights =
            manifest.weights().ok_or_else(|| Error::Load(format!("{origin}: no weights")))?;
        let format = manifest.weights_format().ok_or_else(|| {
            Error::Load(format!("{origin}: cannot tell the format of `{}`", weights.path))
        })?;
        let artifact = ModelArtifact {
            name: manifest.name.clone(),
            format,
            path: dir.join(&weights.path),
            sha256: Some(weights.sha256.clone()),
            architecture: manifest.architecture.clone(),
            io_schema: Some(io_schema.clone()),
        };
        let labels = match manifest.labels() {
            Some(l) => {
                let p = dir.join(&l.path);
                let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, &e))?;
                Some(text.lines().map(|s| s.trim().to_string()).collect())
            }
            None => None,
        };
        Ok(ModelBundle { dir, manifest, io_schema, artifact, labels })
    }

    /// The plain-data spec a runtime serves this model from: artifact, schema, the manifest's
    /// serving settings (`sla_ms = 0` means no SLA) and the fp16 parity tolerance for
    /// accelerated engines.
    pub fn spec(&self) -> ModelSpec {
        let s = &self.manifest.serving;
        let serving = ServingSpec::default()
            .with_sla((s.sla_ms > 0).then(|| Duration::from_millis(s.sla_ms)))
            .with_timeout(Duration::from_millis(s.timeout_ms.max(1)))
            .with_preferred_engines(s.preferred_backends.iter().map(|b| b.as_str().into()))
            .with_compute_units(s.compute_units);
        ModelSpec::from_artifact(self.artifact.clone())
            .with_name(self.manifest.name.clone())
            .with_io_schema(self.io_schema.clone())
            .with_serving(serving)
            .with_tolerance(tolerance::FP16)
    }

    /// The label of class `index`, or `class <index>` when there are no labels.
    pub fn label(&self, index: usize) -> String {
        self.labels
            .as_ref()
            .and_then(|l| l.get(index).cloned())
            .unwrap_or_else(|| format!("class {index}"))
    }
}

/// Reads `manifest.toml`: a regular file of at most [`MAX_MANIFEST_BYTES`].
fn read_manifest(path: &Path) -> std::io::Result<String> {
    use std::io::{Error as IoError, ErrorKind, Read};
    // Look before opening: opening a FIFO for reading blocks until a writer appears.
    if !std::fs::metadata(path)?.is_file() {
        return Err(IoError::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(IoError::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_MANIFEST_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(IoError::new(
            ErrorKind::InvalidData,
            format!("larger than {} KiB: not a manifest", MAX_MANIFEST_BYTES >> 10),
        ));
    }
    Ok(text)
}

fn verify_file(dir: &Path, f: &crate::FileEntry, m: &Manifest) -> Result<()> {
    let path = dir.join(&f.path);
    // `symlink_metadata`: a dangling link or a link loop is reported as such by the hash, not
    // as a missing file.
    if std::fs::symlink_metadata(&path).is_err() {
        let how = m.origin.how.as_deref().map(|h| format!("; {h}")).unwrap_or_default();
        return Err(Error::io_message(
            &path,
            format!("file listed in the manifest is missing{how}"),
        ));
    }
    // Never read past the declared size: a longer file (or a link to an endless device) is an
    // integrity error at once.
    let (actual, size) = sha256_path_max(&path, f.size).map_err(|e| match e {
        Error::Integrity { path, actual, .. } => {
            Error::Integrity { path, expected: format!("{} ({} bytes)", f.sha256, f.size), actual }
        }
        other => other,
    })?;
    if actual != f.sha256.to_ascii_lowercase() {
        return Err(Error::Integrity {
            path: path.display().to_string(),
            expected: f.sha256.clone(),
            actual,
        });
    }
    if size != f.size {
        return Err(Error::Integrity {
            path: path.display().to_string(),
            expected: format!("{} ({} bytes)", f.sha256, f.size),
            actual: format!("{actual} ({size} bytes)"),
        });
    }
    Ok(())
}

impl From<&ModelBundle> for ModelSpec {
    fn from(b: &ModelBundle) -> ModelSpec {
        b.spec()
    }
}
