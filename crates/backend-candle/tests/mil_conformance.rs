//! coremltools' own MIL op tests as conformance cases for the ML Program executor.
//!
//! `scripts/mil_conformance/capture.sh` runs the op tests shipped in the coremltools wheel with
//! the compare helper replaced by a capture (package, inputs, numpy-computed expected outputs and
//! the test's own tolerances). This file replays the cases through `CandleEngine` and compares
//! as `np.testing.assert_allclose` does (`|got - want| <= atol + rtol * |want|`).
//!
//! - `committed_cases`: the small subset committed under `tests/mil_cases/` (filled by
//!   `scripts/mil_conformance/pick_subset.py`, one small passing case per coremltools test
//!   class); every case passes.
//! - `coremltools_op_tests` (ignored): every case in `$MIL_CASES_DIR` (default
//!   `target/mil_cases`), a pass/fail table per op family; `MIL_MIN_PASS=0.9` makes it fail
//!   below that pass rate in the common families.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backend_candle::CandleEngine;
use inference_api::{
    DType, Engine, ModelArtifact, NamedTensors, PrepareOptions, Tensor, TensorData,
};

#[path = "support/npy.rs"]
mod npy;

/// The op families the issue calls common (coremltools' test file names).
const COMMON: &[&str] = &[
    "activation",
    "elementwise_unary",
    "elementwise_binary",
    "conv",
    "pool",
    "normalization",
    "linear",
    "reduction",
    "tensor_transformation",
    "tensor_operation",
    "scatter_gather",
    "image_resizing",
];

/// What happened to one case.
#[derive(Debug)]
enum Outcome {
    Pass,
    /// Prepared and ran, but a value or shape is off.
    Mismatch(String),
    /// Prepare refused the package (unsupported op or parameter).
    Prepare(String),
    /// Run failed.
    Run(String),
    /// The case itself could not be read.
    Broken(String),
}

struct Case {
    dir: PathBuf,
    family: String,
    test: String,
    outcome: Outcome,
}

fn tensor_for(dtype: DType, a: &npy::Npy) -> Result<Tensor, String> {
    let v = &a.values;
    let data = match dtype {
        DType::F32 => TensorData::F32(v.iter().map(|&x| x as f32).collect()),
        DType::F16 => TensorData::F16(v.iter().map(|&x| half::f16::from_f64(x)).collect()),
        DType::I32 => TensorData::I32(v.iter().map(|&x| x as i32).collect()),
        DType::I64 => TensorData::I64(v.iter().map(|&x| x as i64).collect()),
        DType::I8 => TensorData::I8(v.iter().map(|&x| x as i8).collect()),
        DType::U8 => TensorData::U8(v.iter().map(|&x| x as u8).collect()),
    };
    Tensor::new(a.shape.clone(), data).map_err(|e| e.to_string())
}

fn run_case(dir: &Path) -> (String, String, Outcome) {
    let meta: serde_json::Value = match std::fs::read_to_string(dir.join("case.json"))
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => return ("?".into(), dir.display().to_string(), Outcome::Broken(e)),
    };
    let family = meta["family"].as_str().unwrap_or("?").to_string();
    let test = meta["test"].as_str().unwrap_or("?").to_string();
    let outcome = compare(dir, &meta);
    (family, test, outcome)
}

fn names(meta: &serde_json::Value, key: &str) -> Vec<String> {
    meta[key]
        .as_array()
        .map_or(vec![], |a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
}

fn compare(dir: &Path, meta: &serde_json::Value) -> Outcome {
    let atol = meta["atol"].as_f64().unwrap_or(1e-4);
    let rtol = meta["rtol"].as_f64().unwrap_or(1e-5);
    let allow = meta["allow_mismatch_ratio"].as_f64().unwrap_or(0.0);
    let shapes = meta["compare_shapes"].as_bool().unwrap_or(true);
    let artifact = match ModelArtifact::from_path(dir.join("model.mlpackage")) {
        Ok(a) => a,
        Err(e) => return Outcome::Broken(e.to_string()),
    };
    let model = match CandleEngine::with_threads(1).prepare(&artifact, &PrepareOptions::default()) {
        Ok(m) => m,
        Err(e) => return Outcome::Prepare(e.to_string()),
    };
    let mut inputs = NamedTensors::new();
    for name in names(meta, "inputs") {
        let a = match npy::read(&dir.join(format!("in_{name}.npy"))) {
            Ok(a) => a,
            Err(e) => return Outcome::Broken(e),
        };
        let Some(spec) = model.io_schema().inputs.iter().find(|s| s.name == name) else {
            return Outcome::Broken(format!("the package has no input `{name}`"));
        };
        match tensor_for(spec.dtype, &a) {
            Ok(t) => inputs = inputs.with(&name, t),
            Err(e) => return Outcome::Broken(e),
        }
    }
    // The first run goes through the interpreter; the second, where the plan could be
    // lowered for these shapes, through the lowered plan's buffers.
    for pass in ["first run", "second run"] {
        let outs = match model.run(&inputs, &inference_api::RunContext::new()) {
            Ok(o) => o,
            Err(e) => return Outcome::Run(format!("{pass}: {e}")),
        };
        for name in names(meta, "outputs") {
            let want = match npy::read(&dir.join(format!("out_{name}.npy"))) {
                Ok(a) => a,
                Err(e) => return Outcome::Broken(e),
            };
            let Some(got) = outs.get(&name) else {
                return Outcome::Mismatch(format!("{pass}: no output `{name}`"));
            };
            let g = got.to_f32_vec();
            let same_shape = got.shape() == want.shape.as_slice()
                || (got.shape().iter().product::<usize>() == 1 && want.values.len() == 1);
            if g.len() != want.values.len() || (shapes && !same_shape) {
                return Outcome::Mismatch(format!(
                    "{pass}: `{name}`: shape {:?}, expected {:?}",
                    got.shape(),
                    want.shape
                ));
            }
            let bad = g
                .iter()
                .zip(&want.values)
                .filter(|&(&g, &w)| {
                    let g = f64::from(g);
                    !((g.is_nan() && w.is_nan())
                        || g == w
                        || (g - w).abs() <= atol + rtol * w.abs())
                })
                .count();
            if bad as f64 > allow * g.len() as f64 {
                let worst = g
                    .iter()
                    .zip(&want.values)
                    .map(|(&g, &w)| (f64::from(g) - w).abs())
                    .fold(0f64, f64::max);
                return Outcome::Mismatch(format!(
                    "{pass}: `{name}`: {bad} of {} values off (worst {worst:.3e}, atol {atol}, rtol {rtol})",
                    g.len()
                ));
            }
        }
    }
    Outcome::Pass
}

fn case_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.join("case.json").is_file());
    dirs.sort();
    dirs
}

fn run_all(root: &Path) -> Vec<Case> {
    case_dirs(root)
        .into_iter()
        .map(|d| {
            let r = std::panic::catch_unwind(|| run_case(&d));
            let (family, test, outcome) = r.unwrap_or_else(|_| {
                ("?".into(), d.display().to_string(), Outcome::Run("PANIC".into()))
            });
            Case { dir: d, family, test, outcome }
        })
        .collect()
}

/// Per-family table; returns (passed, total) over the common families.
fn table(cases: &[Case]) -> (usize, usize, String) {
    let mut fam: BTreeMap<&str, [usize; 5]> = BTreeMap::new();
    for c in cases {
        let k = match c.outcome {
            Outcome::Pass => 0,
            Outcome::Mismatch(_) => 1,
            Outcome::Prepare(_) => 2,
            Outcome::Run(_) => 3,
            Outcome::Broken(_) => 4,
        };
        fam.entry(c.family.as_str()).or_default()[k] += 1;
    }
    let mut s = format!(
        "{:<24} {:>6} {:>6} {:>7} {:>9} {:>8} {:>5} {:>7}\n",
        "family", "cases", "pass", "values", "prepare", "run", "case", "rate"
    );
    let (mut cp, mut ct, mut ap, mut at) = (0, 0, 0, 0);
    for (f, n) in &fam {
        let total: usize = n.iter().sum();
        s += &format!(
            "{:<24} {:>6} {:>6} {:>7} {:>9} {:>8} {:>5} {:>6.1}%\n",
            f,
            total,
            n[0],
            n[1],
            n[2],
            n[3],
            n[4],
            100.0 * n[0] as f64 / total.max(1) as f64
        );
        if COMMON.contains(f) {
            cp += n[0];
            ct += total;
        }
        ap += n[0];
        at += total;
    }
    s += &format!(
        "common families: {cp} of {ct} ({:.1}%); all: {ap} of {at} ({:.1}%)\n",
        100.0 * cp as f64 / ct.max(1) as f64,
        100.0 * ap as f64 / at.max(1) as f64
    );
    (cp, ct, s)
}

/// numpy writes some expected outputs column-major (`fortran_order: True`): the reader hands
/// back the same row-major values as for the C-order file of the same array (both files
/// written by numpy's `np.save`, of `arange(24).reshape(2, 3, 4) * 1.5 - 3` as f32).
#[test]
fn fortran_order_npy_reads_row_major() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support");
    let c = npy::read(&dir.join("c_order.npy")).expect("C order");
    let f = npy::read(&dir.join("fortran_order.npy")).expect("Fortran order");
    assert_eq!(f.shape, vec![2, 3, 4]);
    assert_eq!(f.shape, c.shape);
    assert_eq!(f.values, c.values);
}

#[test]
fn committed_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mil_cases");
    let cases = run_all(&root);
    assert!(!cases.is_empty(), "no committed cases under {}", root.display());
    let (_, _, t) = table(&cases);
    println!("{t}");
    let failed: Vec<String> = cases
        .iter()
        .filter(|c| !matches!(c.outcome, Outcome::Pass))
        .map(|c| format!("{}: {:?}", c.test, c.outcome))
        .collect();
    assert!(failed.is_empty(), "{} committed cases fail:\n{}", failed.len(), failed.join("\n"));
}

#[test]
#[ignore = "needs the captured cases: scripts/mil_conformance/capture.sh"]
fn coremltools_op_tests() {
    let root = std::env::var_os("MIL_CASES_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/mil_cases"),
        PathBuf::from,
    );
    let cases = run_all(&root);
    assert!(
        !cases.is_empty(),
        "no cases in {}: run scripts/mil_conformance/capture.sh",
        root.display()
    );
    let (cp, ct, t) = table(&cases);
    println!("{t}");
    if let Some(list) = std::env::var_os("MIL_PASSED_LIST") {
        let passed: Vec<String> = cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Pass))
            .map(|c| format!("{}\t{}\t{}", c.family, c.dir.display(), c.test))
            .collect();
        std::fs::write(list, passed.join("\n") + "\n").expect("write MIL_PASSED_LIST");
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for c in &cases {
        let r = match &c.outcome {
            Outcome::Pass => continue,
            Outcome::Prepare(e) => e.split("op type `").nth(1).map_or_else(
                || short(e),
                |r| format!("unsupported op {}", r.split('`').next().unwrap_or("")),
            ),
            Outcome::Mismatch(e) | Outcome::Run(e) | Outcome::Broken(e) => short(e),
        };
        *reasons.entry(format!("[{}] {r}", c.family)).or_default() += 1;
    }
    // Failing cases per op (coremltools' test class, e.g. `TestConv`), most first.
    let mut by_op: BTreeMap<String, [usize; 2]> = BTreeMap::new();
    for c in &cases {
        let class = c.test.split("::").nth(1).unwrap_or("?");
        let e = by_op.entry(format!("{}::{class}", c.family)).or_default();
        e[usize::from(!matches!(c.outcome, Outcome::Pass))] += 1;
    }
    let mut ops: Vec<_> = by_op.into_iter().filter(|(_, n)| n[1] > 0).collect();
    ops.sort_by_key(|(_, n)| std::cmp::Reverse(n[1]));
    println!("failing cases by op test (failed / cases):");
    for (op, n) in ops.iter().take(40) {
        println!("{:>5} / {:<5} {op}", n[1], n[0] + n[1]);
    }
    let mut top: Vec<_> = reasons.into_iter().collect();
    top.sort_by_key(|e| std::cmp::Reverse(e.1));
    for (r, n) in top.iter().take(60) {
        println!("{n:>5}  {r}");
    }
    if let Some(min) = std::env::var("MIL_MIN_PASS").ok().and_then(|v| v.parse::<f64>().ok()) {
        let rate = cp as f64 / ct.max(1) as f64;
        assert!(rate >= min, "common-family pass rate {rate:.3} below {min}");
    }
}

/// The part of an error message that identifies its kind (op and problem, no numbers).
fn short(e: &str) -> String {
    let e = e.split("; the ML Program executor cannot run").next().unwrap_or(e);
    let e = e.rsplit("ML Program ").next().unwrap_or(e);
    let e: String = e.chars().filter(|c| !c.is_ascii_digit()).collect();
    e.chars().take(140).collect()
}
