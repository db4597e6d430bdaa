//! `cargo xtask check-bridge`: checks the Swift Core ML bridge from any OS, without Swift.
//! `scripts/check-bridge/extract.js` parses the Swift sources, the C header and coreml-sys with
//! tree-sitter and prints one JSON model; this module checks it: (1) no parse error anywhere,
//! (2) the ABI (symbols, signatures, constants, struct fields and layout) agrees across the
//! three, (3) lints (public API naming non-public types; APIs newer than the deployment
//! target outside an availability guard; entry points outside guarded()/autoreleasepool). Every failure names the file, line and both sides.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, bail};

mod abi;
mod lints;
mod model;
#[cfg(test)]
mod tests;

use model::{Model, ParseError};

const USAGE: &str = "usage: cargo xtask check-bridge [--root DIR]

Parses coreml-bridge/ (Swift, Package.swift, include/coreml_bridge.h) and crates/coreml-sys
with tree-sitter (Node.js; npm packages in scripts/check-bridge, installed on first use with
`npm ci`) and fails on any parse error, ABI drift or lint. DIR defaults to the workspace root.";

/// One group of checks: how many ran and what failed.
#[derive(Debug, Default)]
pub(crate) struct Section {
    pub title: &'static str,
    pub checked: usize,
    pub failures: Vec<String>,
}

impl Section {
    fn new(title: &'static str) -> Section {
        Section { title, ..Section::default() }
    }

    /// Counts one check; records `message()` when it failed.
    pub(crate) fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.failures.push(message());
        }
    }

    pub(crate) fn fail(&mut self, message: String) {
        self.checked += 1;
        self.failures.push(message);
    }
}

/// Every section's outcome.
#[derive(Debug)]
pub(crate) struct Report {
    pub sections: Vec<Section>,
}

impl Report {
    pub(crate) fn failures(&self) -> Vec<&str> {
        self.sections.iter().flat_map(|s| s.failures.iter().map(String::as_str)).collect()
    }

    fn print(&self) {
        for s in &self.sections {
            let mark = if s.failures.is_empty() { "ok  " } else { "FAIL" };
            println!("{mark} {:<58} {} checks, {} failed", s.title, s.checked, s.failures.len());
            for f in &s.failures {
                println!("       - {f}");
            }
        }
    }
}

fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

/// The Node project holding extract.js and its lockfile.
fn scripts_dir() -> PathBuf {
    workspace_root().join("scripts").join("check-bridge")
}

static NPM: Mutex<()> = Mutex::new(());

/// Installs the tree-sitter packages from the lockfile when they are missing. Install scripts
/// are skipped: the grammars ship prebuilt binaries, and tree-sitter-cli's script (a
/// dependency of tree-sitter-swift we do not use) would download one from outside the registry.
fn ensure_node_packages() -> anyhow::Result<()> {
    let _one_at_a_time = NPM.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scripts_dir();
    let wanted = ["tree-sitter", "tree-sitter-swift", "tree-sitter-c", "tree-sitter-rust"];
    if wanted.iter().all(|p| dir.join("node_modules").join(p).join("package.json").is_file()) {
        return Ok(());
    }
    println!("installing the tree-sitter packages (npm ci in {})", dir.display());
    let status = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .context("running `npm ci`: check-bridge needs Node.js 18+ and npm on PATH")?;
    if !status.success() {
        bail!("`npm ci` failed in {} ({status})", dir.display());
    }
    Ok(())
}

/// Parses the tree at `root` into the model.
fn extract(root: &Path) -> anyhow::Result<Model> {
    ensure_node_packages()?;
    let script = scripts_dir().join("extract.js");
    let out = Command::new("node")
        .arg(&script)
        .arg(root)
        .output()
        .context("running `node`: check-bridge needs Node.js 18+ on PATH")?;
    if !out.status.success() {
        bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).context("reading extract.js's JSON")
}

fn syntax(title: &'static str, files: &[String], errors: &[&ParseError]) -> Section {
    let mut s = Section::new(title);
    s.checked = files.len().max(1);
    for e in errors {
        s.failures.push(format!("{}:{}:{}: {} at `{}`", e.file, e.line, e.column, e.what, e.text));
    }
    s
}

/// One check over the model, recording into its section.
type Check = fn(&Model, &mut Section);

/// Runs every check on the tree at `root` (a workspace, or a copy of its bridge parts).
pub(crate) fn check_tree(root: &Path) -> anyhow::Result<Report> {
    let m = extract(root)?;
    let swift_files = m.swift.files.clone();
    let mut sections = vec![syntax(
        "Swift sources parse (tree-sitter-swift)",
        &swift_files,
        &m.swift.errors.iter().chain(&m.package.errors).collect::<Vec<_>>(),
    )];
    sections.push(syntax(
        "header and coreml-sys parse (tree-sitter-c, -rust)",
        &[m.header.file.clone(), m.rust.types_file.clone(), m.rust.loader_file.clone()],
        &m.header.errors.iter().chain(&m.rust.errors).collect::<Vec<_>>(),
    ));
    let checks: [(&'static str, Check); 9] = [
        ("ABI: the same symbols in header, Swift, coreml-sys", abi::symbols),
        ("ABI: @_cdecl signatures match the header", abi::swift_signatures),
        ("ABI: coreml-sys fn types match the header", abi::rust_signatures),
        ("ABI: constants (header = coreml-sys; Swift uses defined)", abi::constants),
        ("ABI: struct fields (header = coreml-sys #[repr(C)])", abi::structs),
        ("ABI: struct layout (header LP64 = coreml-sys asserts)", abi::layouts),
        ("lint: public declarations use only public types", lints::public_types),
        ("lint: newer APIs only under @available/#available", lints::availability),
        ("lint: every entry point inside guarded()/autoreleasepool", lints::entry_points),
    ];
    for (title, run) in checks {
        let mut s = Section::new(title);
        run(&m, &mut s);
        sections.push(s);
    }
    Ok(Report { sections })
}

/// `cargo xtask check-bridge [--root DIR]`.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let mut root = workspace_root();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--root" => root = PathBuf::from(it.next().context("--root needs a folder")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    let report = check_tree(&root)?;
    report.print();
    let failures = report.failures().len();
    let total: usize = report.sections.iter().map(|s| s.checked).sum();
    if failures > 0 {
        bail!("check-bridge: {failures} of {total} checks failed (listed above)");
    }
    println!("check-bridge: all {total} checks passed");
    Ok(())
}
