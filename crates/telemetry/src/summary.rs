//! A readable run summary (for `infer classify --stats` and examples).

use std::fmt::Write;

use crate::snapshot::Snapshot;

/// Renders the snapshot as a short human-readable report.
pub(crate) fn render(s: &Snapshot) -> String {
    let mut o = String::new();
    for m in &s.models {
        let t = m.latency_us.get("total").copied().unwrap_or_default();
        let _ = writeln!(
            o,
            "model {}: {} calls, {} ok, {} failed",
            m.model,
            m.calls,
            m.successes,
            m.failures.values().sum::<u64>()
        );
        if !m.failures.is_empty() {
            let f: Vec<String> = m.failures.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(o, "  errors: {}", f.join(", "));
        }
        if t.count > 0 {
            let _ = writeln!(
                o,
                "  latency: p50 {} p90 {} p99 {} p99.9 {} max {}",
                ms(t.p50_us),
                ms(t.p90_us),
                ms(t.p99_us),
                ms(t.p999_us),
                ms(t.max_us)
            );
        }
        for f in &m.fallbacks {
            let _ = writeln!(o, "  fallback {} -> {} ({}): {}", f.from, f.to, f.reason, f.count);
        }
        if m.hedges > 0 || m.hedge_cancellations > 0 {
            let _ = writeln!(
                o,
                "  hedges: {} started, {} won, {} losing attempts cancelled",
                m.hedges, m.hedge_wins, m.hedge_cancellations
            );
        }
        for x in s.series.iter().filter(|x| x.model == m.model) {
            if !x.load.available && x.load.failures > 0 {
                let why = x.load.last_error.as_deref().unwrap_or("?");
                let _ = writeln!(
                    o,
                    "  engine {} [{}]: not available, load failed {}x: {why}",
                    x.engine, x.compute_units, x.load.failures
                );
                if x.requests == 0 {
                    continue;
                }
            }
            let fails: u64 = x.failures.values().sum();
            let _ = write!(
                o,
                "  engine {} [{}]: {} attempts, {} ok, {} failed, breaker {}",
                x.engine, x.compute_units, x.requests, x.successes, fails, x.breaker.state
            );
            if x.breaker.trips > 0 {
                let _ = write!(o, " (opened {}x)", x.breaker.trips);
            }
            let skipped = x.rejections.get("circuit_open").copied().unwrap_or(0);
            if skipped > 0 {
                let _ = write!(o, ", {skipped} skipped while open");
            }
            if x.breaker.bypasses > 0 {
                let _ = write!(o, ", {} let through while open (last resort)", x.breaker.bypasses);
            }
            if x.served_as_fallback > 0 {
                let _ = write!(o, ", {} served as fallback", x.served_as_fallback);
            }
            o.push('\n');
            let c = x.latency_us.get("compute").copied().unwrap_or_default();
            let tot = x.latency_us.get("total").copied().unwrap_or_default();
            if c.count > 0 {
                let _ = writeln!(
                    o,
                    "    compute p50 {} p99 {}; attempt total p50 {} p99 {}",
                    ms(c.p50_us),
                    ms(c.p99_us),
                    ms(tot.p50_us),
                    ms(tot.p99_us)
                );
            }
            if let Some(l) = x.load.last_ms {
                let _ = writeln!(o, "    load {}", ms(l * 1e3));
            }
            if x.parity.checks > 0 {
                let _ = writeln!(
                    o,
                    "    parity: {} checks, {} beyond tolerance, max abs {:.3e}",
                    x.parity.checks, x.parity.exceeded, x.parity.max_abs
                );
            }
        }
    }
    if let Some(b) = s.process.rss_bytes {
        let _ = write!(o, "process RSS {:.1} MiB", b as f64 / 1048576.0);
        if let Some(p) = s.process.rss_peak_bytes {
            let _ = write!(o, " (peak {:.1} MiB)", p as f64 / 1048576.0);
        }
        o.push('\n');
    }
    o
}

fn ms(us: f64) -> String {
    if us >= 1000.0 { format!("{:.2} ms", us / 1000.0) } else { format!("{us:.1} µs") }
}
