//! Prometheus text of a short run over a flaky primary and a CPU fallback.
//! Run: `cargo run --release -p cli --example telemetry`.

use std::sync::Arc;
use std::time::Duration;

use inference_api::{DeviceClass, Error};
use runtime::testing::{BundleSpec, Fault, FaultyEngine, bundle, input};
use runtime::{RunOptions, Runtime};

fn main() -> Result<(), Error> {
    let primary = FaultyEngine::new("coreml").with_device(DeviceClass::NeuralEngine);
    primary.set_random(0.1, Fault::Error(Error::Runtime("transient".into())), 42);
    let cpu = FaultyEngine::new("candle-cpu").with_device(DeviceClass::Cpu);
    let rt = Runtime::builder().engine(Arc::new(primary)).engine(Arc::new(cpu)).build();
    let model = rt.load_bundle(&bundle(&BundleSpec::default())?)?;
    for i in 0..200 {
        let _ = model.run_with(
            input([i as f32, 1.0, 2.0, 3.0]),
            &RunOptions::deadline(Duration::from_millis(500)),
        );
    }
    rt.telemetry().sample_rss();
    print!("{}", rt.telemetry().prometheus_text());
    Ok(())
}
