//! `infer classify --stats`: the telemetry summary names the model, the engine that served
//! and latency percentiles.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

#[test]
fn stats_mention_model_engine_and_percentiles() {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models");
    let out = Command::new(env!("CARGO_BIN_EXE_infer"))
        .args(["classify", "--stats", "--top", "1", "--engine", "candle-cpu", "--threads", "1"])
        .arg(format!("{models}/samples/coffee.png"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("COREML_BRIDGE_PATH")
        .output()
        .expect("run infer classify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("espresso"), "{text}");
    let stats = text.split("\nmodel ").nth(1).expect("a telemetry summary after the results");
    assert!(stats.starts_with("efficientnet-lite0: 1 calls, 1 ok"), "{stats}");
    assert!(stats.contains("engine candle-cpu"), "{stats}");
    for p in ["p50", "p90", "p99", "p99.9"] {
        assert!(stats.contains(&format!("{p} ")), "{p} missing: {stats}");
    }
    assert!(stats.contains(" ms"), "{stats}");
}
