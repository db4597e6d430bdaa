//! The gates harness tested where it runs here: durations, percentiles, L-inf and the figures
//! against hand-made rows, and a whole quick run on Linux (CPU engine, ML Program executor,
//! fake bridge) whose Core ML rows say "needs a Mac".

use std::time::Duration;

use inference_api::Tensor;

use super::measure::{Timing, linf, percentile_ms};
use super::report::figures;
use super::{Options, Row, gather, parse_duration};

#[test]
fn durations_parse_and_bad_ones_say_why() {
    assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
    assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    let e = parse_duration("3 weeks").unwrap_err().to_string();
    assert!(e.contains("unknown unit"), "{e}");
    assert!(parse_duration("h").is_err());
}

#[test]
fn percentiles_are_nearest_rank_and_linf_is_the_largest_gap() {
    let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    assert_eq!(percentile_ms(&ms, 0.50), 50.0);
    assert_eq!(percentile_ms(&ms, 0.99), 99.0);
    assert_eq!(percentile_ms(&ms[..1], 0.99), 1.0);
    let a = Tensor::from_f32([1, 3], vec![1.0, -2.0, 3.0]).unwrap();
    let b = Tensor::from_f32([1, 3], vec![1.5, -2.0, 0.0]).unwrap();
    assert_eq!(linf(&a, &b), Some(3.0));
    let c = Tensor::from_f32([1, 2], vec![0.0, 0.0]).unwrap();
    assert_eq!(linf(&a, &c), None, "different models are not compared");
}

fn row(units: &str, p50: f64, share: Option<f64>) -> Row {
    let mut r = Row::new("coreml", "m", "fp16", units, "measured");
    r.timing = Some(Timing {
        runs: 10,
        p50_ms: p50,
        p99_ms: p50 * 2.0,
        mem_growth_kib_per_1000: Some(4.0),
    });
    r.neural_engine_share = share;
    r.parity_linf = Some(0.01);
    r
}

#[test]
fn figures_come_from_the_rows_and_say_when_they_cannot() {
    let rows = vec![
        row("all", 2.0, Some(0.8)),
        row("cpu_only", 10.0, None),
        row("cpu_and_gpu", 5.0, Some(0.0)),
        row("cpu_and_neural_engine", 2.5, Some(0.9)),
    ];
    let f = figures(&rows, "coreml", "m", "fp16", true, "measured");
    let value = |n: &str| f.iter().find(|x| x.name == n).and_then(|x| x.value);
    assert_eq!(value("neural_engine_speedup_all"), Some(5.0));
    assert_eq!(value("neural_engine_speedup_cpu_and_neural_engine"), Some(4.0));
    assert_eq!(value("neural_engine_share"), Some(0.8));
    assert_eq!(value("p99_latency"), Some(4.0));
    assert_eq!(value("memory_growth_per_1000_predictions"), Some(4.0));
    assert_eq!(value("parity_linf_vs_cpu_engine"), Some(0.01));
    // Without the CpuOnly row there is no speedup, and the status says so.
    let f = figures(&rows[..1], "coreml", "m", "fp16", true, "measured");
    assert!(f[0].value.is_none() && f[0].status.starts_with("not measured"), "{:?}", f[0]);
    // Not measurable here: no value, whatever the rows hold.
    let f = figures(&rows, "coreml", "m", "fp16", false, "needs a Mac");
    assert!(f.iter().all(|x| x.value.is_none() && x.status == "needs a Mac"));
}

/// A whole quick run as CI does it on Linux. Needs ../shared/fixtures (CI has it beside the
/// clone) and the fake bridge (built by backend-coreml's build script on Linux).
#[cfg(target_os = "linux")]
#[test]
fn a_quick_linux_run_measures_what_it_can_and_marks_core_ml_rows() {
    let root = crate::workspace_root();
    let fixtures = root.join("..").join("shared").join("fixtures");
    let package = fixtures.join("efficientnet_lite0").join("efficientnet_lite0.mlpackage");
    assert!(package.exists(), "the shared fixtures are missing: {}", package.display());
    assert!(backend_coreml::test_support::fake_bridge_library().is_some(), "fake bridge not built");
    let out = tempfile::tempdir().unwrap();
    let o = Options {
        iters: 2,
        warmup: 0,
        cycles: 2,
        soak: Some(Duration::from_millis(1)),
        out: out.path().to_path_buf(),
        bridge: None,
        models: vec![package],
        fixtures: fixtures.clone(),
        fake_rows: true,
    };
    let g = gather(&o).unwrap();
    let find = |engine: &str, precision: &str, units: &str| {
        g.matrix
            .iter()
            .find(|r| {
                r.engine == engine
                    && r.precision == precision
                    && r.compute_units == units
                    && !r.model.contains('-') // not a bundled folder's native-model row
            })
            .unwrap_or_else(|| panic!("no row {engine} {precision} {units}: {:#?}", g.matrix))
    };
    // Core ML: every compute-units row says it needs a Mac; so do the figures.
    for units in ["all", "cpu_only", "cpu_and_gpu", "cpu_and_neural_engine"] {
        let r = find("coreml", "fp16", units);
        assert_eq!((r.status.as_str(), r.timing.is_none()), ("needs a Mac", true));
    }
    assert!(g.figures.iter().all(|f| f.value.is_none() && f.status == "needs a Mac"));
    // The ML Program executor ran and agrees with PyTorch's logits within the fp16 bound.
    let cpu = find("candle-cpu", "fp16", "cpu");
    assert_eq!(cpu.status, "measured");
    assert!(
        cpu.timing.as_ref().is_some_and(|t| t.runs == 2 && t.p50_ms > 0.0 && t.p99_ms >= t.p50_ms)
    );
    let reference = super::measure::read_safetensors(
        &fixtures.join("efficientnet_lite0/reference/noise.safetensors"),
    )
    .unwrap();
    let peak =
        reference.get("logits").unwrap().to_f32_vec().iter().fold(0f32, |m, v| m.max(v.abs()));
    let linf = cpu.parity_linf.expect("parity against the fixture");
    assert!(
        linf / f64::from(peak) <= f64::from(inference_api::tolerance::FP16.max_rel_to_peak),
        "{linf}"
    );
    let fp32 = find("candle-cpu", "fp32", "cpu");
    assert!(fp32.status.starts_with("skipped: no efficientnet_lite0_fp32"), "{fp32:?}");
    // The fake bridge exercised the Core ML path of the harness: its plan puts 0.6 + 0.1 of
    // 1.0 of the estimated cost on the Neural Engine.
    let fake = find("coreml-fake-bridge", "fp16", "all");
    assert!(fake.status.contains("fake bridge"), "{}", fake.status);
    assert!((fake.neural_engine_share.unwrap() - 0.7).abs() < 1e-12);
    assert_eq!(fake.parity_linf, Some(0.0));
    let share = g.fake_bridge_figures.iter().find(|f| f.name == "neural_engine_share").unwrap();
    assert!((share.value.unwrap() - 0.7).abs() < 1e-12);
    let p50 = |u: &str| find("coreml-fake-bridge", "fp16", u).timing.as_ref().unwrap().p50_ms;
    let speedup = g.fake_bridge_figures[0].value.unwrap();
    assert!((speedup - p50("cpu_only") / p50("all")).abs() < 1e-9);
    // Cycles ran with memory before and after; the Core ML ones need a Mac.
    for c in &g.cycles {
        if c.engine == "coreml" {
            assert_eq!(c.status, "needs a Mac");
        } else {
            assert_eq!((c.cycles, c.status.as_str()), (2, "measured"), "{c:?}");
            assert!(c.rss_before_kib.is_some() && c.rss_after_kib.is_some());
        }
    }
    assert_eq!(g.cycles.len(), 3);
    assert!(g.soak.as_ref().is_some_and(|s| s.engine == "candle-cpu" && s.timing.runs >= 1));
    let md = super::report::markdown(&g);
    assert!(
        md.contains("| coreml | efficientnet_lite0 | fp16 | all |") && md.contains("needs a Mac")
    );
    let native = g.matrix.iter().find(|r| r.model == "efficientnet-lite0").unwrap();
    assert_eq!(native.status, "measured", "{native:?}");
    assert!(native.parity_linf.is_some_and(|d| d / f64::from(peak) <= 1e-3), "{native:?}");
}
