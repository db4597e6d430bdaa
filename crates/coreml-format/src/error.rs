//! The crate's error type: every failure names the file and the problem.

use std::path::{Path, PathBuf};

/// Result with [`FormatError`].
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// A failure reading a Core ML model. Converts into [`inference_api::Error`]
/// (`Io` for operating-system errors, `Load` for malformed content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The file could not be read (missing, permissions, ...).
    #[error("cannot read {}: {message}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the OS said.
        message: String,
    },
    /// The file was read but its content is not a valid Core ML model, package or weight file.
    #[error("malformed {}: {problem}", path.display())]
    Malformed {
        /// The file whose content is wrong.
        path: PathBuf,
        /// What is wrong, specifically.
        problem: String,
    },
    /// The content is valid but uses something this reader does not handle.
    #[error("unsupported in {}: {problem}", path.display())]
    Unsupported {
        /// The file involved.
        path: PathBuf,
        /// What is not supported.
        problem: String,
    },
}

impl FormatError {
    /// A [`FormatError::Malformed`] for `path`.
    pub fn malformed(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        FormatError::Malformed { path: path.as_ref().to_path_buf(), problem: problem.into() }
    }

    /// A [`FormatError::Unsupported`] for `path`.
    pub fn unsupported(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        FormatError::Unsupported { path: path.as_ref().to_path_buf(), problem: problem.into() }
    }

    /// A [`FormatError::Io`] for `path` from an OS error.
    pub fn io(path: impl AsRef<Path>, err: &std::io::Error) -> Self {
        FormatError::Io { path: path.as_ref().to_path_buf(), message: err.to_string() }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            FormatError::Io { path, .. }
            | FormatError::Malformed { path, .. }
            | FormatError::Unsupported { path, .. } => path,
        }
    }
}

impl From<FormatError> for inference_api::Error {
    fn from(e: FormatError) -> Self {
        match e {
            FormatError::Io { path, message } => inference_api::Error::io_message(path, message),
            other => inference_api::Error::Load(other.to_string()),
        }
    }
}

/// Largest `Manifest.json` of a package read (1 MiB; real ones are under 1 KiB).
pub const MAX_PACKAGE_MANIFEST_BYTES: u64 = 1 << 20;

/// Largest model spec (`model.mlmodel`) read: 2 GiB, the protobuf message limit.
pub const MAX_SPEC_BYTES: u64 = 2 << 30;

/// Largest weight file (`weight.bin`) read: 16 GiB.
pub const MAX_WEIGHT_FILE_BYTES: u64 = 16 << 30;

/// Reads a whole regular file of at most `max` bytes, mapping OS errors to [`FormatError::Io`].
/// Devices, pipes, sockets and folders are refused without reading (a weight file linked to
/// `/dev/zero` was read for 2 GB before failing), and no more than the size the file had when
/// opened (nor `max`) is ever read.
pub(crate) fn read_file(path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    // Look before opening: opening a FIFO for reading blocks until a writer appears.
    let before = std::fs::metadata(path).map_err(|e| open_error(path, &e))?;
    let file = if before.is_file() {
        Some(std::fs::File::open(path).map_err(|e| open_error(path, &e))?)
    } else {
        None
    };
    let meta = match &file {
        Some(f) => f.metadata().map_err(|e| FormatError::io(path, &e))?,
        None => before,
    };
    let (Some(file), true) = (file, meta.is_file()) else {
        let what = if meta.is_dir() { "a folder" } else { "a device, pipe or socket" };
        return Err(FormatError::Io {
            path: path.to_path_buf(),
            message: format!("is {what}, not a regular file: model files must be regular files"),
        });
    };
    if meta.len() > max {
        return Err(FormatError::malformed(
            path,
            format!(
                "file is {} bytes; at most {max} are read for this part of a model",
                meta.len()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(meta.len()).read_to_end(&mut bytes).map_err(|e| FormatError::io(path, &e))?;
    Ok(bytes)
}

/// An OS error opening `path`, telling a symlink loop from a missing file.
fn open_error(path: &Path, e: &std::io::Error) -> FormatError {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    // ELOOP: 40 on Linux, 62 on macOS and the BSDs.
    let eloop = if cfg!(target_os = "linux") { 40 } else { 62 };
    if is_link && e.raw_os_error() == Some(eloop) {
        return FormatError::Io {
            path: path.to_path_buf(),
            message: "is a symlink loop (the link leads back to itself)".into(),
        };
    }
    FormatError::io(path, e)
}
