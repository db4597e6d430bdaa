//! The engine conformance suite, written once against `&dyn Engine`: capability, schema, bad
//! inputs named, determinism, outputs against reference logits within a tolerance. Included by
//! backend-candle's `tests/conformance.rs` and backend-coreml's `tests/conformance_mac.rs`.

use inference_api::{
    DType, Drift, Engine, Error, ModelArtifact, NamedTensors, PrepareOptions, RunContext, Tensor,
    Tolerance, tolerance,
};

/// One reference case: an input and the expected logits.
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) input: Tensor,
    pub(crate) logits: Vec<f32>,
}

fn expect_invalid(result: inference_api::Result<NamedTensors>, tensor: &str, what: &str) {
    match result {
        Err(Error::InvalidInput { tensor: t, .. }) => assert_eq!(t, tensor, "{what}"),
        other => panic!("{what}: expected InvalidInput naming `{tensor}`, got {other:?}"),
    }
}

/// The suite: capability, schema, bad inputs, determinism, outputs against references.
pub(crate) fn conformance(
    engine: &dyn Engine,
    artifact: &ModelArtifact,
    cases: &[Case],
    tol: Tolerance,
) {
    let probe = engine.probe();
    assert!(probe.available, "{}: {:?}", engine.name(), probe.reason);
    assert!(
        probe.formats.contains(&artifact.format),
        "{} formats {:?}",
        engine.name(),
        probe.formats
    );

    let model = engine.prepare(artifact, &PrepareOptions::default()).expect("prepare");
    let schema = model.io_schema().clone();
    assert_eq!(schema.inputs.len(), 1);
    assert_eq!(schema.outputs.len(), 1);
    let input = &schema.inputs[0];
    let output = &schema.outputs[0];
    assert_eq!(input.dtype, DType::F32);
    let in_shape = input.fixed_shape().expect("fixed input shape");
    assert_eq!(in_shape.len(), 4);
    assert_eq!(output.fixed_shape(), Some(vec![1, 1000]));

    // Bad inputs: an undeclared name, a wrong shape, a wrong dtype, nothing at all.
    let zeros = |shape: &[usize], dt| Tensor::zeros(shape.to_vec(), dt).expect("zeros");
    let good = zeros(&in_shape, DType::F32);
    let wrong_name = NamedTensors::new()
        .with(input.name.clone(), good.clone())
        .with("not_an_input", good.clone());
    expect_invalid(model.run(&wrong_name, &RunContext::new()), "not_an_input", "undeclared input");
    let mut small = in_shape.clone();
    small[2] -= 1;
    let wrong_shape = NamedTensors::new().with(input.name.clone(), zeros(&small, DType::F32));
    expect_invalid(model.run(&wrong_shape, &RunContext::new()), &input.name, "wrong shape");
    let wrong_dtype = NamedTensors::new().with(input.name.clone(), zeros(&in_shape, DType::F16));
    expect_invalid(model.run(&wrong_dtype, &RunContext::new()), &input.name, "wrong dtype");
    expect_invalid(
        model.run(&NamedTensors::new(), &RunContext::new()),
        &input.name,
        "missing input",
    );

    for case in cases {
        let inputs = NamedTensors::new().with(input.name.clone(), case.input.clone());
        let a = model.run(&inputs, &RunContext::new()).expect("run");
        let b = model.run(&inputs, &RunContext::new()).expect("second run");
        let a = a.get(&output.name).expect("output").as_f32().expect("f32").to_vec();
        let b = b.get(&output.name).expect("output").as_f32().expect("f32").to_vec();
        let same = Drift::between(&a, &b);
        assert!(
            same.max_abs <= tolerance::EXACT.max_abs,
            "{}: not deterministic {same:?}",
            case.name
        );
        let d = Drift::between(&a, &case.logits);
        println!(
            "{} {} {}: max_abs {:.3e} rel_to_peak {:.3e} cosine {:.7}",
            engine.name(),
            artifact.format,
            case.name,
            d.max_abs,
            d.max_rel_to_peak,
            d.cosine
        );
        assert!(d.within(&tol), "{}: {d:?} over the {} budget", case.name, tol.name);
        assert!(d.top1_agree, "{}: top-1 differs", case.name);
    }
}
