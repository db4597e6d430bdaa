//! Prometheus text exposition (format 0.0.4) of a [`Snapshot`].

use std::fmt::Write;

use crate::snapshot::{ModelSnapshot, SeriesSnapshot, Snapshot};
use crate::{BreakerGauge, LATENCY_BUCKETS_SECONDS, Quantiles};

/// Renders a snapshot as Prometheus text. Latencies are histograms in seconds with the fixed
/// buckets of [`LATENCY_BUCKETS_SECONDS`], so they can be summed across processes (the HDR
/// quantiles stay in the JSON snapshot and the summary); every family has `# HELP` and
/// `# TYPE` lines. Every family name is documented in docs/metrics.md (a test checks).
pub(crate) fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let mut fam = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    };

    // Process.
    fam(
        "infer_process_resident_memory_bytes",
        "gauge",
        "Resident memory of the process at the last sample.",
        s.process
            .rss_bytes
            .map(|b| format!("infer_process_resident_memory_bytes {b}"))
            .into_iter()
            .collect(),
    );

    // Model level.
    let ml = |m: &str| format!("model=\"{}\"", esc(m));
    fam(
        "infer_model_calls_total",
        "counter",
        "Calls to run, each counted once.",
        s.models
            .iter()
            .map(|m| format!("infer_model_calls_total{{{}}} {}", ml(&m.model), m.calls))
            .collect(),
    );
    fam(
        "infer_model_successes_total",
        "counter",
        "Calls answered with outputs.",
        s.models
            .iter()
            .map(|m| format!("infer_model_successes_total{{{}}} {}", ml(&m.model), m.successes))
            .collect(),
    );
    fam(
        "infer_model_failures_total",
        "counter",
        "Calls answered with an error, by error kind.",
        s.models
            .iter()
            .flat_map(|m| {
                m.failures.iter().map(move |(k, v)| {
                    format!(
                        "infer_model_failures_total{{{},kind=\"{}\"}} {v}",
                        ml(&m.model),
                        esc(k)
                    )
                })
            })
            .collect(),
    );
    fam(
        "infer_fallbacks_total",
        "counter",
        "The router moved past one engine to the next, by route and reason.",
        s.models
            .iter()
            .flat_map(|m| {
                m.fallbacks.iter().map(move |f| {
                    format!(
                        "infer_fallbacks_total{{{},from=\"{}\",to=\"{}\",reason=\"{}\"}} {}",
                        ml(&m.model),
                        esc(&f.from),
                        esc(&f.to),
                        esc(&f.reason),
                        f.count
                    )
                })
            })
            .collect(),
    );
    for (name, help, get) in [
        (
            "infer_hedges_total",
            "Hedges: the next engine started beside a preferred one that had not answered.",
            (|m: &ModelSnapshot| m.hedges) as fn(&ModelSnapshot) -> u64,
        ),
        ("infer_hedge_wins_total", "Hedges that answered first.", |m| m.hedge_wins),
        (
            "infer_hedge_cancellations_total",
            "Losing attempts cancelled after another engine answered the call.",
            |m| m.hedge_cancellations,
        ),
    ] {
        fam(
            name,
            "counter",
            help,
            s.models.iter().map(|m| format!("{name}{{{}}} {}", ml(&m.model), get(m))).collect(),
        );
    }
    fam(
        "infer_queue_depth",
        "gauge",
        "Calls in the model's queue now (running or waiting).",
        s.models
            .iter()
            .map(|m| format!("infer_queue_depth{{{}}} {}", ml(&m.model), m.queue_depth))
            .collect(),
    );
    fam(
        "infer_queue_capacity",
        "gauge",
        "Calls the model's queue holds before rejecting as overloaded.",
        s.models
            .iter()
            .filter(|m| m.queue_capacity > 0)
            .map(|m| format!("infer_queue_capacity{{{}}} {}", ml(&m.model), m.queue_capacity))
            .collect(),
    );
    let mut lines = Vec::new();
    for m in &s.models {
        for (phase, q) in &m.latency_us {
            histogram(
                &mut lines,
                "infer_model_latency_seconds",
                &format!("{},phase=\"{phase}\"", ml(&m.model)),
                q,
            );
        }
    }
    fam("infer_model_latency_seconds", "histogram", "Caller-seen latency of run calls.", lines);

    // Series level.
    let counter = |f: &dyn Fn(&SeriesSnapshot) -> u64, name: &str| -> Vec<String> {
        s.series.iter().map(|x| format!("{name}{{{}}} {}", sl(x), f(x))).collect()
    };
    fam(
        "infer_requests_total",
        "counter",
        "Attempts on an engine.",
        counter(&|x| x.requests, "infer_requests_total"),
    );
    fam(
        "infer_successes_total",
        "counter",
        "Attempts that returned outputs.",
        counter(&|x| x.successes, "infer_successes_total"),
    );
    fam(
        "infer_failures_total",
        "counter",
        "Failed attempts by error kind.",
        s.series
            .iter()
            .flat_map(|x| {
                x.failures.iter().map(move |(k, v)| {
                    format!("infer_failures_total{{{},kind=\"{}\"}} {v}", sl(x), esc(k))
                })
            })
            .collect(),
    );
    fam(
        "infer_timeouts_total",
        "counter",
        "Attempts that missed their deadline.",
        counter(&|x| x.timeouts, "infer_timeouts_total"),
    );
    fam(
        "infer_slow_calls_total",
        "counter",
        "Successful attempts slower than the SLA.",
        counter(&|x| x.slow, "infer_slow_calls_total"),
    );
    fam(
        "infer_rejections_total",
        "counter",
        "Calls not attempted on an engine, by reason.",
        s.series
            .iter()
            .flat_map(|x| {
                x.rejections.iter().map(move |(k, v)| {
                    format!("infer_rejections_total{{{},reason=\"{}\"}} {v}", sl(x), esc(k))
                })
            })
            .collect(),
    );
    fam(
        "infer_served_as_fallback_total",
        "counter",
        "Calls an engine served after a preferred engine did not.",
        counter(&|x| x.served_as_fallback, "infer_served_as_fallback_total"),
    );
    fam(
        "infer_quarantines_total",
        "counter",
        "Engine instances quarantined after a timeout.",
        counter(&|x| x.quarantines, "infer_quarantines_total"),
    );
    fam(
        "infer_abandoned_workers",
        "gauge",
        "Workers currently stuck inside an engine.",
        counter(&|x| x.abandoned_workers, "infer_abandoned_workers"),
    );
    fam(
        "infer_engine_available",
        "gauge",
        "1 when the engine serves the model (its last load succeeded), 0 when loading failed.",
        s.series
            .iter()
            .filter(|x| x.load.loads + x.load.failures > 0)
            .map(|x| format!("infer_engine_available{{{}}} {}", sl(x), u8::from(x.load.available)))
            .collect(),
    );
    fam(
        "infer_loads_total",
        "counter",
        "Successful model loads on an engine (rebuilds after quarantine included).",
        counter(&|x| x.load.loads, "infer_loads_total"),
    );
    fam(
        "infer_load_failures_total",
        "counter",
        "Failed model loads on an engine (unavailable, unreadable format, prepare failed).",
        counter(&|x| x.load.failures, "infer_load_failures_total"),
    );
    fam(
        "infer_breaker_state",
        "gauge",
        "Circuit breaker state (1 for the current state); engines that never loaded have none.",
        s.series
            .iter()
            .filter(|x| !(x.load.loads == 0 && x.load.failures > 0))
            .flat_map(|x| {
                BreakerGauge::ALL.iter().map(move |g| {
                    format!(
                        "infer_breaker_state{{{},state=\"{}\"}} {}",
                        sl(x),
                        g.as_str(),
                        u8::from(x.breaker.state == g.as_str())
                    )
                })
            })
            .collect(),
    );
    fam(
        "infer_breaker_transitions_total",
        "counter",
        "Circuit breaker transitions.",
        s.series
            .iter()
            .flat_map(|x| {
                x.breaker.transitions.iter().map(move |t| {
                    format!(
                        "infer_breaker_transitions_total{{{},from=\"{}\",to=\"{}\"}} {}",
                        sl(x),
                        t.from,
                        t.to,
                        t.count
                    )
                })
            })
            .collect(),
    );
    fam(
        "infer_breaker_bypasses_total",
        "counter",
        "Calls let through an open breaker because the engine was the last one left.",
        counter(&|x| x.breaker.bypasses, "infer_breaker_bypasses_total"),
    );
    fam(
        "infer_load_seconds",
        "gauge",
        "Duration of the last model load on an engine.",
        s.series
            .iter()
            .filter_map(|x| {
                x.load.last_ms.map(|ms| format!("infer_load_seconds{{{}}} {}", sl(x), ms / 1e3))
            })
            .collect(),
    );
    fam(
        "infer_parity_checks_total",
        "counter",
        "Shadow parity comparisons.",
        counter(&|x| x.parity.checks, "infer_parity_checks_total"),
    );
    fam(
        "infer_parity_exceeded_total",
        "counter",
        "Shadow comparisons beyond tolerance.",
        counter(&|x| x.parity.exceeded, "infer_parity_exceeded_total"),
    );
    fam(
        "infer_parity_max_abs",
        "gauge",
        "Largest absolute output difference against the reference engine.",
        s.series
            .iter()
            .filter(|x| x.parity.checks > 0)
            .map(|x| format!("infer_parity_max_abs{{{}}} {}", sl(x), x.parity.max_abs))
            .collect(),
    );
    let mut lines = Vec::new();
    for x in &s.series {
        for (phase, q) in &x.latency_us {
            histogram(
                &mut lines,
                "infer_latency_seconds",
                &format!("{},phase=\"{phase}\"", sl(x)),
                q,
            );
        }
    }
    fam("infer_latency_seconds", "histogram", "Attempt latency per phase.", lines);
    out
}

fn sl(x: &SeriesSnapshot) -> String {
    format!(
        "model=\"{}\",engine=\"{}\",compute_units=\"{}\"",
        esc(&x.model),
        esc(&x.engine),
        esc(&x.compute_units)
    )
}

/// Cumulative `_bucket` lines over the fixed bounds, `+Inf`, `_sum` and `_count`.
fn histogram(lines: &mut Vec<String>, name: &str, labels: &str, q: &Quantiles) {
    let mut cumulative = 0u64;
    for (i, n) in q.buckets.iter().enumerate() {
        cumulative += n;
        let le = LATENCY_BUCKETS_SECONDS.get(i).map_or_else(|| "+Inf".to_string(), f64::to_string);
        lines.push(format!("{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}"));
    }
    lines.push(format!("{name}_sum{{{labels}}} {}", q.sum_us / 1e6));
    lines.push(format!("{name}_count{{{labels}}} {cumulative}"));
}

/// Escapes a label value: backslash, double quote and newline.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
