//! The one error type of the project: the failure taxonomy the runtime counts, and
//! [`ErrorKind`], the stable label of each failure.

use std::sync::Arc;

/// Result with the project's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure an engine, the runtime or a loader can report.
///
/// Messages name the thing that failed and, where there is one, what to do next.
/// New variants may be added, so match with a wildcard arm.
/// Errors are `Clone` (causes are shared behind an `Arc`) so one failure can be both returned
/// and recorded; compare them through [`Error::kind`], not by message.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The caller (or the runtime on the caller's behalf) cancelled the call; the engine
    /// stopped early. Not the engine's fault.
    #[error("cancelled: the call on engine `{engine}` was cancelled before it finished")]
    Cancelled {
        /// Engine that stopped.
        engine: String,
    },
    /// A failure while running a prepared model (kernel error, engine panic, bad output).
    #[error("runtime error: {0}")]
    Runtime(String),
    /// An engine produced NaN or infinite values in an output. Counted as the engine's failure:
    /// the breaker records it and the runtime falls back as for any engine error.
    #[error(
        "engine `{engine}` produced {count} non-finite value(s) (NaN or infinity) in output `{output}`; the result was discarded and counted as the engine's failure"
    )]
    NonFinite {
        /// Engine that produced the values.
        engine: String,
        /// Output tensor holding them.
        output: String,
        /// How many elements are NaN or infinite.
        count: usize,
    },
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
        /// What went wrong, and what to do about it.
        message: String,
        /// The OS error underneath, when there is one (kept for [`std::error::Error::source`]).
        #[source]
        source: Option<Arc<std::io::Error>>,
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

/// The stable class of an [`Error`]: what the runtime counts and telemetry labels.
///
/// Compares equal to its label string (`ErrorKind::Timeout == "timeout"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::Unavailable`].
    Unavailable,
    /// [`Error::Compile`].
    Compile,
    /// [`Error::Load`].
    Load,
    /// [`Error::InvalidInput`].
    InvalidInput,
    /// [`Error::Timeout`].
    Timeout,
    /// [`Error::Cancelled`].
    Cancelled,
    /// [`Error::Runtime`].
    Runtime,
    /// [`Error::NonFinite`].
    NonFinite,
    /// [`Error::CircuitOpen`].
    CircuitOpen,
    /// [`Error::Overloaded`].
    Overloaded,
    /// [`Error::Io`].
    Io,
    /// [`Error::Integrity`].
    Integrity,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::Unavailable,
        ErrorKind::Compile,
        ErrorKind::Load,
        ErrorKind::InvalidInput,
        ErrorKind::Timeout,
        ErrorKind::Cancelled,
        ErrorKind::Runtime,
        ErrorKind::NonFinite,
        ErrorKind::CircuitOpen,
        ErrorKind::Overloaded,
        ErrorKind::Io,
        ErrorKind::Integrity,
    ];

    /// A short stable name, used as a telemetry label (`invalid_input`, `timeout`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Compile => "compile",
            ErrorKind::Load => "load",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Runtime => "runtime",
            ErrorKind::NonFinite => "non_finite",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Io => "io",
            ErrorKind::Integrity => "integrity",
        }
    }

    /// True for failures that count against the engine that produced them (breaker, fallback):
    /// runtime errors, timeouts, non-finite outputs, compile/load/unavailable.
    pub fn is_engine_failure(self) -> bool {
        !matches!(
            self,
            ErrorKind::InvalidInput
                | ErrorKind::Cancelled
                | ErrorKind::CircuitOpen
                | ErrorKind::Overloaded
        )
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for ErrorKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Compile(_) => ErrorKind::Compile,
            Error::Load(_) => ErrorKind::Load,
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Cancelled { .. } => ErrorKind::Cancelled,
            Error::Runtime(_) => ErrorKind::Runtime,
            Error::NonFinite { .. } => ErrorKind::NonFinite,
            Error::CircuitOpen { .. } => ErrorKind::CircuitOpen,
            Error::Overloaded { .. } => ErrorKind::Overloaded,
            Error::Io { .. } => ErrorKind::Io,
            Error::Integrity { .. } => ErrorKind::Integrity,
        }
    }

    /// Builds an [`Error::Io`] from a path and an OS error; the OS error (its kind and message)
    /// stays reachable through [`std::error::Error::source`].
    pub fn io(path: impl AsRef<std::path::Path>, err: &std::io::Error) -> Self {
        let source = std::io::Error::new(err.kind(), err.to_string());
        Error::Io {
            path: path.as_ref().display().to_string(),
            message: err.to_string(),
            source: Some(Arc::new(source)),
        }
    }

    /// Builds an [`Error::Io`] with a message of our own and no OS error underneath.
    pub fn io_message(path: impl AsRef<std::path::Path>, message: impl Into<String>) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            message: message.into(),
            source: None,
        }
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

    #[test]
    fn io_errors_keep_their_source_and_kinds_have_stable_labels() {
        use std::error::Error as _;
        let os = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Error::io("m.toml", &os);
        let src = e.source().expect("the OS error is the source");
        assert_eq!(src.to_string(), "no such file");
        assert_eq!(e.kind(), ErrorKind::Io);
        let labels: std::collections::HashSet<_> =
            ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(labels.len(), ErrorKind::ALL.len());
        assert!(ErrorKind::NonFinite.is_engine_failure());
        assert!(!ErrorKind::Cancelled.is_engine_failure());
    }
}
