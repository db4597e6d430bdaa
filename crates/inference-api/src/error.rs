//! The one error type of the project: the failure taxonomy the runtime counts.

/// Result with the project's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure an engine, the runtime or a loader can report.
///
/// Messages name the thing that failed and, where there is one, what to do next.
/// New variants may be added, so match with a wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine cannot serve on this machine or for this model (wrong OS, library missing,
    /// unsupported architecture or op). The message says why and how to make it available.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    /// Compiling or converting a model failed (Core ML compile, ML Program translation).
    #[error("compile failed: {0}")]
    Compile(String),
    /// Loading a model failed: a malformed manifest, weights that do not fit the architecture,
    /// a corrupt weights file.
    #[error("load failed: {0}")]
    Load(String),
    /// Caller inputs do not match the model's schema.
    #[error("invalid input `{tensor}`: expected {expected}, got {got}")]
    InvalidInput {
        /// Name of the offending tensor.
        tensor: String,
        /// What the schema asks for.
        expected: String,
        /// What the caller passed.
        got: String,
    },
    /// The call did not finish within its deadline.
    #[error("timed out after {elapsed_ms} ms (deadline {deadline_ms} ms) on engine `{engine}`")]
    Timeout {
        /// Engine that did not answer in time.
        engine: String,
        /// The deadline the call had.
        deadline_ms: u64,
        /// Time waited before giving up.
        elapsed_ms: u64,
    },
    /// A failure while running a prepared model (kernel error, engine panic, bad output).
    #[error("runtime error: {0}")]
    Runtime(String),
    /// The circuit breaker for this engine is open; the call was not attempted.
    #[error("circuit open for engine `{engine}`; retry after {retry_after_ms} ms")]
    CircuitOpen {
        /// Engine whose breaker is open.
        engine: String,
        /// Time until the breaker admits probes again.
        retry_after_ms: u64,
    },
    /// The model's queue is full; the call was rejected at once.
    #[error("overloaded: queue for model `{model}` is full ({capacity} waiting)")]
    Overloaded {
        /// Model whose queue is full.
        model: String,
        /// Queue capacity.
        capacity: usize,
    },
    /// A file could not be read or written.
    #[error("i/o error on {path}: {message}")]
    Io {
        /// The file involved.
        path: String,
        /// What the OS said.
        message: String,
    },
    /// A file's content does not match its recorded sha256.
    #[error(
        "integrity check failed for {path}: expected sha256 {expected}, found {actual}; \
         the file is corrupt or was replaced, restore it or update the manifest"
    )]
    Integrity {
        /// The file whose hash did not match.
        path: String,
        /// Hash recorded in the manifest.
        expected: String,
        /// Hash of the file on disk.
        actual: String,
    },
}

impl Error {
    /// A short stable name for the variant, used as a telemetry label.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Unavailable(_) => "unavailable",
            Error::Compile(_) => "compile",
            Error::Load(_) => "load",
            Error::InvalidInput { .. } => "invalid_input",
            Error::Timeout { .. } => "timeout",
            Error::Runtime(_) => "runtime",
            Error::CircuitOpen { .. } => "circuit_open",
            Error::Overloaded { .. } => "overloaded",
            Error::Io { .. } => "io",
            Error::Integrity { .. } => "integrity",
        }
    }

    /// Builds an [`Error::Io`] from a path and an OS error.
    pub fn io(path: impl AsRef<std::path::Path>, err: &std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), message: err.to_string() }
    }

    /// Builds an [`Error::InvalidInput`].
    pub fn invalid_input(
        tensor: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Error::InvalidInput { tensor: tensor.into(), expected: expected.into(), got: got.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_problem() {
        let e = Error::invalid_input("input", "shape [1, 3, 224, 224]", "shape [1, 3, 10, 10]");
        assert_eq!(
            e.to_string(),
            "invalid input `input`: expected shape [1, 3, 224, 224], got shape [1, 3, 10, 10]"
        );
        assert_eq!(e.kind(), "invalid_input");
        let e = Error::Integrity {
            path: "w.safetensors".into(),
            expected: "ab".into(),
            actual: "cd".into(),
        };
        let s = e.to_string();
        assert!(s.contains("w.safetensors") && s.contains("ab") && s.contains("cd"), "{s}");
    }
}
