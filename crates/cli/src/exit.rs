//! Exit statuses of `infer`, one per kind of failure, so a script can tell "the model did not
//! load" from "the photo is missing" from "parity exceeded". Documented in docs/cli-json.md.

use std::fmt;
use std::process::ExitCode;

use inference_api::ErrorKind;

/// Why `infer` stopped. The number is the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 1: anything not classified below (an internal error, an output that could not be
    /// written).
    Other = 1,
    /// 2: bad command-line arguments (clap's usage errors use 2 as well).
    Usage = 2,
    /// 3: an input the user gave is missing, unreadable or does not fit the model.
    BadInput = 3,
    /// 4: the model could not be loaded (manifest, integrity, no engine can take it).
    LoadFailed = 4,
    /// 5: the model loaded but a call failed (engine error, timeout, non-finite output).
    RunFailed = 5,
    /// 6: `infer parity` ran and a comparison exceeded the tolerance.
    ParityExceeded = 6,
    /// 7: a batch ran to the end but some items failed (each is reported).
    PartialBatch = 7,
}

impl Exit {
    /// Every status, in numeric order (for the docs test).
    #[cfg(test)]
    pub(crate) const ALL: [Exit; 7] = [
        Exit::Other,
        Exit::Usage,
        Exit::BadInput,
        Exit::LoadFailed,
        Exit::RunFailed,
        Exit::ParityExceeded,
        Exit::PartialBatch,
    ];

    /// The stable name used in docs/cli-json.md.
    #[cfg(test)]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Exit::Other => "other",
            Exit::Usage => "usage",
            Exit::BadInput => "bad_input",
            Exit::LoadFailed => "load_failed",
            Exit::RunFailed => "run_failed",
            Exit::ParityExceeded => "parity_exceeded",
            Exit::PartialBatch => "partial_batch",
        }
    }

    /// The process exit code.
    pub(crate) fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

/// An error with the exit status it should end the process with.
#[derive(Debug)]
pub(crate) struct Tagged {
    /// The status.
    pub(crate) exit: Exit,
    inner: anyhow::Error,
}

impl fmt::Display for Tagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.inner, f)
    }
}

impl std::error::Error for Tagged {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

/// Tags the error of a `Result` with an exit status (the first tag in the chain wins).
pub(crate) trait TagExit<T> {
    /// `Err(e)` becomes `Err(e)` tagged with `exit`, unless already tagged.
    fn exit(self, exit: Exit) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> TagExit<T> for Result<T, E> {
    fn exit(self, exit: Exit) -> anyhow::Result<T> {
        self.map_err(|e| {
            let inner: anyhow::Error = e.into();
            if inner.downcast_ref::<Tagged>().is_some() {
                inner
            } else {
                anyhow::Error::new(Tagged { exit, inner })
            }
        })
    }
}

/// A tagged error from a message.
pub(crate) fn fail(exit: Exit, msg: impl fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Tagged { exit, inner: anyhow::anyhow!("{msg}") })
}

/// The status for an error: its tag, else the class of the runtime error inside it.
pub(crate) fn classify(e: &anyhow::Error) -> Exit {
    for cause in e.chain() {
        if let Some(t) = cause.downcast_ref::<Tagged>() {
            return t.exit;
        }
    }
    for cause in e.chain() {
        if let Some(err) = cause.downcast_ref::<inference_api::Error>() {
            return match err.kind() {
                ErrorKind::InvalidInput => Exit::BadInput,
                ErrorKind::Load
                | ErrorKind::Compile
                | ErrorKind::Unavailable
                | ErrorKind::Integrity => Exit::LoadFailed,
                ErrorKind::Io => Exit::Other,
                _ => Exit::RunFailed,
            };
        }
    }
    Exit::Other
}

/// True when the error comes from writing to a closed pipe.
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_tag_wins_and_the_message_is_kept() {
        let r: anyhow::Result<()> = Err(anyhow::anyhow!("photo x.png is missing"));
        let e = r.exit(Exit::BadInput).exit(Exit::LoadFailed).unwrap_err();
        assert_eq!(classify(&e), Exit::BadInput);
        assert_eq!(e.to_string(), "photo x.png is missing");
    }

    #[test]
    fn untagged_runtime_errors_are_classified_by_kind() {
        let e = anyhow::Error::new(inference_api::Error::Load("bad".into()));
        assert_eq!(classify(&e), Exit::LoadFailed);
        let e = anyhow::Error::new(inference_api::Error::Runtime("boom".into()));
        assert_eq!(classify(&e), Exit::RunFailed);
        assert_eq!(classify(&anyhow::anyhow!("??")), Exit::Other);
    }

    #[test]
    fn the_docs_list_every_status_with_its_name() {
        let doc = include_str!("../../../docs/cli-json.md");
        let section = doc.split("## Exit statuses").nth(1).expect("an Exit statuses section");
        let rows: Vec<(u8, String)> = section
            .lines()
            .filter_map(|l| {
                let c: Vec<&str> = l.split('|').map(str::trim).collect();
                (c.len() > 3).then(|| c[1].parse::<u8>().ok().map(|n| (n, c[2].to_string())))?
            })
            .collect();
        let want: Vec<(u8, String)> = std::iter::once((0, "ok".to_string()))
            .chain(Exit::ALL.iter().map(|e| (*e as u8, e.name().to_string())))
            .collect();
        assert_eq!(rows, want, "docs/cli-json.md's exit table and exit.rs disagree");
    }

    #[test]
    fn codes_are_distinct_and_ordered() {
        for (i, x) in Exit::ALL.iter().enumerate() {
            assert_eq!(*x as u8, i as u8 + 1);
        }
    }
}
