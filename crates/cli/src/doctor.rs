//! `infer doctor`: what each engine can do on this machine and why not, the Core ML bridge,
//! the CPU features the CPU engine uses, and the compile cache.

use std::path::Path;

use anyhow::Result;
use inference_api::{CapabilityReport, Engine};
use serde::Serialize;

/// Arguments of `infer doctor`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print one JSON document on stdout (docs/cli-json.md) instead of text.
    #[arg(long)]
    json: bool,
}

/// The Core ML part of the report.
#[derive(Debug, Serialize)]
struct CoreMl {
    platform: String,
    available: bool,
    reason: Option<String>,
    bridge_found: bool,
    bridge_path: Option<String>,
    /// What coreml-sys's build script did: the library it built, or why it did not.
    bridge_build: String,
    searched: Vec<String>,
    abi_version: Option<u32>,
    os_build: Option<String>,
    compute_devices: Vec<String>,
    cache_dir: String,
    cache_exists: bool,
    cache_size_bytes: u64,
    cache_hits: u64,
    cache_misses: u64,
    cache_swept: u64,
}

/// The CPU engine part of the report.
#[derive(Debug, Serialize)]
struct Cpu {
    cpu_features: Vec<String>,
    details: Vec<(String, String)>,
}

/// Everything `infer doctor` prints.
#[derive(Debug, Serialize)]
struct Report {
    version: String,
    engines: Vec<CapabilityReport>,
    coreml: CoreMl,
    cpu: Cpu,
}

fn build_report() -> Report {
    let coreml_engine = backend_coreml::CoreMlEngine::new();
    let cpu_engine = backend_candle::CandleEngine::new();
    let engines = vec![coreml_engine.probe(), cpu_engine.probe()];
    let d = coreml_engine.doctor();
    // The engine sizes the cache only when the bridge loaded; size the folder regardless so
    // leftovers from an earlier bridge are visible.
    let cache_exists = d.cache_dir.is_dir();
    let cache_size_bytes =
        if d.cache_size_bytes > 0 { d.cache_size_bytes } else { dir_size(&d.cache_dir) };
    let coreml = CoreMl {
        platform: d.platform,
        available: d.available,
        reason: d.reason,
        bridge_found: d.bridge.is_some(),
        bridge_path: d.bridge.as_ref().map(|b| b.path.display().to_string()),
        bridge_build: match (coreml_sys::BUILT_BRIDGE, coreml_sys::BUILD_NOTE) {
            (Some(p), _) => format!("built by cargo: {p}"),
            (None, Some(note)) => format!("not built by cargo: {note}"),
            (None, None) => "not built by cargo (not a macOS build)".into(),
        },
        searched: d.searched.iter().map(|p| p.display().to_string()).collect(),
        abi_version: d.bridge.as_ref().map(|b| b.abi_version),
        os_build: d.bridge.as_ref().and_then(|b| b.os_build.clone()),
        compute_devices: d.bridge.map(|b| b.compute_devices).unwrap_or_default(),
        cache_dir: d.cache_dir.display().to_string(),
        cache_exists,
        cache_size_bytes,
        cache_hits: d.cache.hits,
        cache_misses: d.cache.misses,
        cache_swept: d.cache.swept,
    };
    let cpu_probe = &engines[1];
    let cpu = Cpu {
        cpu_features: backend_candle::cpu_features().iter().map(|s| s.to_string()).collect(),
        details: cpu_probe.details.clone(),
    };
    Report { version: env!("CARGO_PKG_VERSION").to_string(), engines, coreml, cpu }
}

/// Bytes of all files under `dir` (0 when it does not exist); symlinks are not followed.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else { continue };
        if meta.is_dir() {
            total += dir_size(&entry.path());
        } else {
            total += meta.len();
        }
    }
    total
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit} ({n} bytes)")
}

fn text(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "infer {} doctor", r.version);
    let _ = writeln!(s, "\nengines (in routing preference order):");
    for e in &r.engines {
        let state = if e.available { "available".to_string() } else { "UNAVAILABLE".to_string() };
        let _ = writeln!(s, "  {:<11} {state}", e.engine);
        if let Some(why) = &e.reason {
            let _ = writeln!(s, "              why: {why}");
        }
        if e.available {
            let devices = if e.compute_devices.is_empty() {
                "-".into()
            } else {
                e.compute_devices.join(", ")
            };
            let _ =
                writeln!(s, "              device class: {:?}, devices: {devices}", e.device_class);
            let formats: Vec<&str> = e.formats.iter().map(|f| f.as_str()).collect();
            let _ = writeln!(s, "              formats: {}", formats.join(", "));
        }
    }
    let c = &r.coreml;
    let none = || "-".to_string();
    let _ = writeln!(s, "\ncoreml:");
    let _ = writeln!(s, "  platform         {}", c.platform);
    let found = match &c.bridge_path {
        Some(p) => format!("found at {p}"),
        None => "not found".into(),
    };
    let _ = writeln!(s, "  bridge library   {found}");
    let _ = writeln!(s, "  bridge build     {}", c.bridge_build);
    if c.searched.is_empty() {
        let _ = writeln!(
            s,
            "  searched         nothing ({} is unset; off Apple platforms only it is consulted)",
            coreml_sys::BRIDGE_PATH_ENV
        );
    } else {
        let _ = writeln!(s, "  searched         (in order)");
        for p in &c.searched {
            let _ = writeln!(s, "                   {p}");
        }
    }
    let _ = writeln!(
        s,
        "  abi version      {} (this build expects {})",
        c.abi_version.map_or_else(none, |v| v.to_string()),
        coreml_sys::CMB_ABI_VERSION
    );
    let _ = writeln!(s, "  os build         {}", c.os_build.clone().unwrap_or_else(none));
    let devices = if c.compute_devices.is_empty() { none() } else { c.compute_devices.join(", ") };
    let _ = writeln!(s, "  compute devices  {devices}");
    let exists = if c.cache_exists { "" } else { ", not created yet" };
    let _ = writeln!(s, "  compile cache    {}{exists}", c.cache_dir);
    let _ = writeln!(s, "  cache size       {}", human_bytes(c.cache_size_bytes));
    if c.bridge_found {
        let _ = writeln!(
            s,
            "  cache counters   {} hits, {} misses, {} swept",
            c.cache_hits, c.cache_misses, c.cache_swept
        );
    }
    let _ = writeln!(s, "\ncandle-cpu:");
    let features =
        if r.cpu.cpu_features.is_empty() { "none".into() } else { r.cpu.cpu_features.join(", ") };
    let _ = writeln!(s, "  cpu features     {features}");
    for (k, v) in &r.cpu.details {
        if k != "cpu_features" {
            let _ = writeln!(s, "  {:<16} {v}", k.replace('_', " "));
        }
    }
    s
}

pub(crate) fn main(args: Args) -> Result<()> {
    let report = build_report();
    if args.json {
        crate::json::emit("doctor", &report)?;
    } else {
        crate::json::write_human(&text(&report));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(2048), "2.0 KiB (2048 bytes)");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB (3145728 bytes)");
    }

    #[test]
    fn dir_size_counts_nested_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sub = dir.path().join("a.mlmodelc");
        std::fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(sub.join("w"), [0u8; 100]).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("x"), [0u8; 20]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dir_size(dir.path()), 120);
        assert_eq!(dir_size(&dir.path().join("missing")), 0);
    }
}
