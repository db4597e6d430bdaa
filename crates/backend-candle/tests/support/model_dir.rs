//! Runs every `.mlmodel` of a fixture folder on the CPU engine against the reference file
//! beside it (`NAME.safetensors`, read by `support/reference.rs`), for the tests whose models
//! a fixture script generates.

use std::path::{Path, PathBuf};

use backend_candle::CandleEngine;
use inference_api::{Drift, Engine, ModelArtifact, PrepareOptions, PreparedModel, RunContext};

/// Prepares a model file on the CPU engine.
pub(crate) fn prepare(path: &Path) -> inference_api::Result<std::sync::Arc<dyn PreparedModel>> {
    let artifact = ModelArtifact::from_path(path)?;
    CandleEngine::new().prepare(&artifact, &PrepareOptions::default())
}

/// One line per model or output that failed (prepare, run, a missing output, a shape, or a
/// drift `accept` refuses) over every `.mlmodel` in `dir`; panics when fewer than `at_least`
/// models are there. Each output's drift is printed.
pub(crate) fn failures(
    dir: &Path,
    at_least: usize,
    accept: impl Fn(&Drift) -> bool,
) -> Vec<String> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "mlmodel"))
        .collect();
    cases.sort();
    assert!(cases.len() >= at_least, "expected the generated models, found {cases:?}");
    let mut failures = Vec::new();
    for path in &cases {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let (inputs, want) =
            super::reference_file::inputs_and_outputs(&path.with_extension("safetensors"));
        let model = match prepare(path) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{name}: prepare: {e}"));
                continue;
            }
        };
        let out = match model.run(&inputs, &RunContext::new()) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{name}: run: {e}"));
                continue;
            }
        };
        for (oname, expected) in &want {
            let Some(got) = out.get(oname) else {
                failures.push(format!("{name}: no output `{oname}`"));
                continue;
            };
            if got.shape() != expected.shape() {
                failures.push(format!(
                    "{name}.{oname}: shape {:?}, reference {:?}",
                    got.shape(),
                    expected.shape()
                ));
                continue;
            }
            let d = Drift::between(&got.to_f32_vec(), &expected.to_f32_vec());
            println!(
                "{name}.{oname}: max_abs {:.2e} rel_to_peak {:.2e} top1 {}",
                d.max_abs, d.max_rel_to_peak, d.top1_agree
            );
            if !accept(&d) {
                failures.push(format!("{name}.{oname}: {d:?}"));
            }
        }
    }
    failures
}
