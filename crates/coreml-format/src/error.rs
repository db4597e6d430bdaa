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

/// Reads a whole file, mapping OS errors to [`FormatError::Io`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| FormatError::io(path, &e))
}
