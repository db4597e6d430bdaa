//! What `infer` writes to stdout: one versioned JSON document under `--json` (human text then
//! goes to stderr), and every line written so that a reader closing the pipe (`| head`) ends the
//! command quietly instead of panicking.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use serde::Serialize;

/// Version of every `--json` document's layout (`schema_version`). Raised when a field is
/// renamed, removed or changes type; adding a field does not raise it. See docs/cli-json.md.
pub(crate) const SCHEMA_VERSION: u32 = 1;

static STDOUT_IS_JSON: AtomicBool = AtomicBool::new(false);

/// From now on stdout is reserved for the JSON document: [`human!`] text goes to stderr.
pub(crate) fn reserve_stdout() {
    STDOUT_IS_JSON.store(true, Ordering::Relaxed);
}

/// Writes `text` to stdout. When the reader has gone (a closed pipe), exits at once with
/// status 0 and no message: the reader chose to stop reading.
pub(crate) fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        quiet_exit_on_broken_pipe(&e);
    }
}

/// Writes human-readable `text` to stdout, or to stderr once [`reserve_stdout`] was called.
pub(crate) fn write_human(text: &str) {
    if STDOUT_IS_JSON.load(Ordering::Relaxed) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
    } else {
        write_stdout(text);
    }
}

/// Ends the process quietly (status 0) when `e` is a broken pipe; otherwise returns.
pub(crate) fn quiet_exit_on_broken_pipe(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
}

/// `{"schema_version": 1, "command": "...", ...fields of value}`.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    schema_version: u32,
    command: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

/// The JSON document for `command` (pretty-printed, ending in a newline).
pub(crate) fn document<T: Serialize>(command: &str, body: &T) -> Result<String> {
    let env = Envelope { schema_version: SCHEMA_VERSION, command, body };
    Ok(serde_json::to_string_pretty(&env)? + "\n")
}

/// Writes the JSON document for `command` to stdout.
pub(crate) fn emit<T: Serialize>(command: &str, body: &T) -> Result<()> {
    write_stdout(&document(command, body)?);
    Ok(())
}

/// `println!` for results: stdout, or stderr when stdout holds JSON; a closed pipe exits quietly.
macro_rules! human {
    () => { $crate::json::write_human("\n") };
    ($($arg:tt)*) => { $crate::json::write_human(&format!("{}\n", format_args!($($arg)*))) };
}
pub(crate) use human;
