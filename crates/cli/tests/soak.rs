//! `infer soak` end to end: its report keeps answers, refusals and failures apart and adds up,
//! and its growth gate really fails a run that leaks (a planted leak, the hidden
//! `--plant-leak-bytes`), which is what CI's short soak relies on.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::process::{Command, Output};

use serde_json::Value;

fn soak(args: &[&str], json: &std::path::Path) -> Output {
    let model = common::root().join("models/efficientnet-lite0");
    Command::new(env!("CARGO_BIN_EXE_infer"))
        .arg("soak")
        .arg("--model")
        .arg(model)
        .arg("--json")
        .arg(json)
        .args(args)
        .output()
        .unwrap()
}

fn sum(v: &Value) -> u64 {
    v.as_object().unwrap().values().map(|c| c.as_u64().unwrap()).sum()
}

#[test]
fn the_report_keeps_answers_refusals_and_failures_apart() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("soak.json");
    let o = soak(
        &[
            "--duration",
            "2s",
            "--threads",
            "2",
            "--engine-threads",
            "1",
            "--faults",
            "error=0.05,panic=0.01,shape=0.01,nan=0.02",
            "--interval",
            "500ms",
        ],
        &json,
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("refusals {") && stdout.contains("failures {"), "{stdout}");
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let calls = r["calls"].as_u64().unwrap();
    assert!(calls > 0);
    assert_eq!(
        r["answers"].as_u64().unwrap() + sum(&r["refusals"]) + sum(&r["errors"]),
        calls,
        "every call is an answer, a refusal or a failure: {r}"
    );
    assert_eq!(r["non_finite_answers"], 0, "NaN answers reached the caller");
    assert!(r["fallbacks"].as_u64().unwrap() > 0, "the faults never sent a call to the CPU");
    let samples = r["samples"].as_array().unwrap();
    assert!(samples.len() >= 4, "{}", samples.len());
    let last = samples.last().unwrap();
    assert!(last["calls"].as_u64().unwrap() <= calls && last.get("refusals").is_some());
    assert!(r["refusal_pause_s"].as_f64().is_some());
}

#[test]
fn the_growth_gate_fails_a_planted_leak() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("soak.json");
    // 2 KiB kept per call is 2,000 KiB per 1,000 calls, four times the gate CI uses.
    let o = soak(
        &[
            "--duration",
            "2s",
            "--threads",
            "2",
            "--faults",
            "error=0.01",
            "--interval",
            "200ms",
            "--max-rss-growth-kib",
            "512",
            "--plant-leak-bytes",
            "2048",
        ],
        &json,
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a leak of 2 KiB per call passed the gate");
    assert!(stderr.contains("RSS (KiB) grew"), "{stderr}");
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let g = r["growth_per_1000_calls"]["rss_kib"].as_f64().unwrap();
    assert!(g > 1000.0, "measured {g} KiB per 1,000 calls for a 2,000 KiB leak");
}
