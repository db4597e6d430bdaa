//! The seed's five figures derived from the measured matrix rows (never typed in), and the
//! Markdown form of a gates run.

use serde::Serialize;

use super::{Gates, Row};

/// One headline figure.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Figure {
    pub(crate) name: String,
    /// None when it could not be measured here (`status` says why).
    pub(crate) value: Option<f64>,
    pub(crate) unit: String,
    pub(crate) status: String,
    /// The rows it comes from.
    pub(crate) from: String,
}

fn find<'a>(
    rows: &'a [Row],
    engine: &str,
    model: &str,
    precision: &str,
    units: &str,
) -> Option<&'a Row> {
    rows.iter().find(|r| {
        r.engine == engine
            && r.model == model
            && r.precision == precision
            && r.compute_units == units
    })
}

/// The figures for `model`/`precision` on `engine`: speedups (p50 CpuOnly over p50 All and
/// over p50 CpuAndNeuralEngine), the Neural Engine share of the plan, p99, memory growth per
/// 1,000 predictions and parity L-inf of the All row. `measured` false gives every figure
/// `status` (e.g. "needs a Mac") and no value.
pub(crate) fn figures(
    rows: &[Row],
    engine: &str,
    model: &str,
    precision: &str,
    measured: bool,
    status: &str,
) -> Vec<Figure> {
    let row = |u: &str| find(rows, engine, model, precision, u).filter(|_| measured);
    let p50 = |u: &str| row(u).and_then(|r| r.timing.as_ref()).map(|t| t.p50_ms);
    let all = row("all");
    let speedup = |over: &str| match (p50("cpu_only"), p50(over)) {
        (Some(cpu), Some(x)) if x > 0.0 => Some(cpu / x),
        _ => None,
    };
    let f = |name: &str, value: Option<f64>, unit: &str, from: String, missing: &str| Figure {
        name: name.into(),
        value,
        unit: unit.into(),
        status: match (measured, value) {
            (false, _) => status.to_string(),
            (true, Some(_)) => status.to_string(),
            (true, None) => format!("not measured: {missing}"),
        },
        from,
    };
    let at = |u: &str| format!("{engine} {model} {precision} {u}");
    vec![
        f(
            "neural_engine_speedup_all",
            speedup("all"),
            "x (p50 cpu_only / p50 all)",
            format!("{} vs {}", at("cpu_only"), at("all")),
            "a row failed (see the matrix)",
        ),
        f(
            "neural_engine_speedup_cpu_and_neural_engine",
            speedup("cpu_and_neural_engine"),
            "x (p50 cpu_only / p50 cpu_and_neural_engine)",
            format!("{} vs {}", at("cpu_only"), at("cpu_and_neural_engine")),
            "a row failed (see the matrix)",
        ),
        f(
            "neural_engine_share",
            all.and_then(|r| r.neural_engine_share),
            "fraction of the compute plan's estimated cost",
            at("all"),
            "no compute plan (macOS 14.4+ and an ML Program are needed)",
        ),
        f(
            "p99_latency",
            all.and_then(|r| r.timing.as_ref()).map(|t| t.p99_ms),
            "ms",
            at("all"),
            "the row failed",
        ),
        f(
            "memory_growth_per_1000_predictions",
            all.and_then(|r| r.timing.as_ref()).and_then(|t| t.mem_growth_kib_per_1000),
            "KiB",
            at("all"),
            "RSS unreadable or the row failed",
        ),
        f(
            "parity_linf_vs_cpu_engine",
            all.and_then(|r| r.parity_linf),
            "max |coreml - cpu|",
            at("all"),
            "no CPU engine output with the same name",
        ),
    ]
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "-".into())
}

fn figure_table(out: &mut String, title: &str, figures: &[Figure]) {
    out.push_str(&format!(
        "\n## {title}\n\n| figure | value | unit | status | from |\n|---|---|---|---|---|\n"
    ));
    for f in figures {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            f.name,
            num(f.value, 4),
            f.unit,
            f.status,
            f.from
        ));
    }
}

/// `gates.md`: figures, device matrix, cycles and soak.
pub(crate) fn markdown(g: &Gates) -> String {
    let mut out = format!(
        "# cargo xtask gates\n\nplatform: {}; Core ML: {}; {} timed runs after {} warm-up per row.\n",
        g.platform, g.core_ml, g.iters, g.warmup
    );
    figure_table(&mut out, "Figures (Core ML)", &g.figures);
    if !g.fake_bridge_figures.is_empty() {
        figure_table(
            &mut out,
            "Harness check on the fake bridge (test support: these are not Core ML numbers)",
            &g.fake_bridge_figures,
        );
    }
    out.push_str(
        "\n## Device matrix\n\n| engine | model | precision | compute units | p50 ms | p99 ms | \
         KiB per 1,000 | NE share | parity L-inf | against | status |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &g.matrix {
        let t = r.timing.as_ref();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.engine,
            r.model,
            r.precision,
            r.compute_units,
            num(t.map(|t| t.p50_ms), 3),
            num(t.map(|t| t.p99_ms), 3),
            num(t.and_then(|t| t.mem_growth_kib_per_1000), 1),
            num(r.neural_engine_share, 3),
            r.parity_linf.map(|v| format!("{v:.3e}")).unwrap_or_else(|| "-".into()),
            r.parity_against.as_deref().unwrap_or("-"),
            r.status.replace('|', "/")
        ));
    }
    out.push_str(
        "\n## Compile+load cycles\n\n| engine | model | cycles | seconds | RSS before KiB | RSS after KiB | status |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for c in &g.cycles {
        let kib = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} | {} | {} | {} |\n",
            c.engine,
            c.model,
            c.cycles,
            c.seconds,
            kib(c.rss_before_kib),
            kib(c.rss_after_kib),
            c.status.replace('|', "/")
        ));
    }
    if let Some(s) = &g.soak {
        out.push_str(&format!(
            "\n## Soak\n\n{} {} for {:.0} s: {} predictions, p50 {:.3} ms, p99 {:.3} ms, {} KiB per 1,000\n",
            s.engine,
            s.model,
            s.seconds,
            s.timing.runs,
            s.timing.p50_ms,
            s.timing.p99_ms,
            num(s.timing.mem_growth_kib_per_1000, 1)
        ));
    }
    out
}
