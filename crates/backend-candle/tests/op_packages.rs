//! Op-level packages converted from PyTorch (`scripts/make_op_fixtures.py`; the iOS18 `gru`
//! `reset_after` packages from `scripts/make_mil_recurrent_fixtures.py`): every
//! `tests/op_packages/<case>.mlpackage` runs on the ML Program executor and must match PyTorch's
//! output in `<case>.safetensors` within the fp32 tolerance; a package with flexible input
//! shapes also against `<case>.alt.safetensors`, at another size, the sizes alternating.

use std::path::{Path, PathBuf};

use backend_candle::CandleEngine;
use inference_api::{
    Drift, Engine, ModelArtifact, NamedTensors, PrepareOptions, RunContext, Tensor, tolerance,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/op_packages")
}

fn load(path: &Path, name: &str) -> Tensor {
    let map = candle_core::safetensors::load(path, &candle_core::Device::Cpu).expect("reference");
    let t = &map[name];
    let values = t.flatten_all().and_then(|t| t.to_vec1()).expect("f32 values");
    Tensor::from_f32(t.dims().to_vec(), values).expect("tensor")
}

#[test]
fn every_op_package_matches_pytorch() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/op_packages")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "mlpackage"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "expected the generated op packages, found {cases:?}");
    for pkg in cases {
        let artifact = ModelArtifact::from_path(&pkg).expect("artifact");
        let model =
            CandleEngine::new().prepare(&artifact, &PrepareOptions::default()).expect("prepare");
        // Flexible-shape packages carry a second reference at another size (`.alt`): the same
        // prepared model must run both, with the output shape following the input.
        let alt = pkg.with_extension("alt.safetensors");
        let references: Vec<PathBuf> = std::iter::once(pkg.with_extension("safetensors"))
            .chain(alt.exists().then_some(alt))
            .collect();
        // Each size three times in turn: the first run of a size goes through the interpreter,
        // later ones through the plan lowered for it (one kept per size).
        for reference in references.iter().cycle().take(3 * references.len()) {
            let (x, want) = (load(reference, "input"), load(reference, "output"));
            let out =
                model.run(&NamedTensors::new().with("input", x), &RunContext::new()).expect("run");
            let got = out.get("output").expect("output");
            assert_eq!(got.shape(), want.shape(), "{}", reference.display());
            let d = Drift::between(got.as_f32().unwrap(), want.as_f32().unwrap());
            assert!(d.within(&tolerance::FP32), "{}: {d:?}", reference.display());
            let name = reference.file_name().unwrap().to_string_lossy().into_owned();
            println!("{name}: shape {:?} max_abs {:.2e}", got.shape(), d.max_abs);
        }
    }
}
