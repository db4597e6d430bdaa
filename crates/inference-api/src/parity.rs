//! Numeric parity between two outputs: drift metrics and the one named tolerance table.

/// Agreed error budgets per compute precision. Tests and tools take tolerances from here,
/// never from literals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Name of the budget (`exact`, `fp32`, `fp16`, `int8`).
    pub name: &'static str,
    /// Largest allowed absolute difference.
    pub max_abs: f32,
    /// Largest allowed difference relative to the reference's largest magnitude.
    pub max_rel_to_peak: f32,
}

/// The tolerance table.
pub mod tolerance {
    use super::Tolerance;
    /// Bit-identical results (determinism checks).
    pub const EXACT: Tolerance = Tolerance { name: "exact", max_abs: 0.0, max_rel_to_peak: 0.0 };
    /// An fp32 engine against an fp32 reference (different summation order, fused kernels).
    pub const FP32: Tolerance = Tolerance { name: "fp32", max_abs: 1e-3, max_rel_to_peak: 1e-4 };
    /// fp16 weights or compute against an fp32 reference.
    pub const FP16: Tolerance = Tolerance { name: "fp16", max_abs: 1e-2, max_rel_to_peak: 2e-2 };
    /// int8 weights against an fp32 reference.
    pub const INT8: Tolerance = Tolerance { name: "int8", max_abs: 5e-2, max_rel_to_peak: 5e-2 };
}

/// How far one output is from a reference.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Drift {
    /// Largest absolute difference.
    pub max_abs: f32,
    /// Largest absolute difference divided by the reference's largest magnitude.
    pub max_rel_to_peak: f32,
    /// Largest element-wise relative difference, `|a - b| / max(|b|, 1e-6)`.
    pub max_rel: f32,
    /// Root mean square difference.
    pub rmse: f32,
    /// Cosine similarity of the two vectors (1 = same direction).
    pub cosine: f32,
    /// Whether the arg-max agrees.
    pub top1_agree: bool,
    /// Fraction of the reference's top-5 indices found in the output's top-5.
    pub top5_overlap: f32,
}

impl Drift {
    /// Compares `out` against `reference` (same length; extra elements are ignored).
    pub fn between(out: &[f32], reference: &[f32]) -> Drift {
        let n = out.len().min(reference.len());
        if n == 0 {
            return Drift { cosine: 1.0, top1_agree: true, top5_overlap: 1.0, ..Drift::default() };
        }
        let (mut max_abs, mut peak, mut sq, mut dot, mut na, mut nb) =
            (0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
        let mut max_rel = 0f64;
        for (&a, &b) in out[..n].iter().zip(&reference[..n]) {
            let (a, b) = (a as f64, b as f64);
            let d = (a - b).abs();
            max_abs = max_abs.max(d);
            max_rel = max_rel.max(d / b.abs().max(1e-6));
            peak = peak.max(b.abs());
            sq += d * d;
            dot += a * b;
            na += a * a;
            nb += b * b;
        }
        let cosine = if na == 0.0 || nb == 0.0 {
            if na == nb { 1.0 } else { 0.0 }
        } else {
            dot / (na.sqrt() * nb.sqrt())
        };
        let ta = top_k(&out[..n], 5);
        let tb = top_k(&reference[..n], 5);
        Drift {
            max_abs: max_abs as f32,
            max_rel_to_peak: if peak > 0.0 { (max_abs / peak) as f32 } else { max_abs as f32 },
            max_rel: max_rel as f32,
            rmse: (sq / n as f64).sqrt() as f32,
            cosine: cosine as f32,
            top1_agree: ta.first() == tb.first(),
            top5_overlap: top_k_agreement(&out[..n], &reference[..n], 5),
        }
    }

    /// True when the drift is within `tol` (absolute or relative-to-peak bound, whichever
    /// the budget allows).
    pub fn within(&self, tol: &Tolerance) -> bool {
        self.max_abs <= tol.max_abs || self.max_rel_to_peak <= tol.max_rel_to_peak
    }
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Fraction of the reference's top-`k` indices found among the output's top-`k`
/// (`k` clamped to the vector length; 1 for empty vectors).
pub fn top_k_agreement(out: &[f32], reference: &[f32], k: usize) -> f32 {
    let k = k.min(out.len()).min(reference.len());
    if k == 0 {
        return 1.0;
    }
    let ta = top_k(out, k);
    let tb = top_k(reference, k);
    tb.iter().filter(|i| ta.contains(i)).count() as f32 / k as f32
}

/// Softmax of `values` (numerically stable), for printing probabilities.
pub fn softmax(values: &[f32]) -> Vec<f32> {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = values.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_metrics_on_known_vectors() {
        let d = Drift::between(&[1.0, 2.0, 3.0], &[1.0, 2.5, 3.0]);
        assert!((d.max_abs - 0.5).abs() < 1e-7);
        assert!((d.max_rel_to_peak - 0.5 / 3.0).abs() < 1e-6);
        assert!(d.top1_agree && d.top5_overlap == 1.0);
        assert!(d.cosine > 0.99 && d.cosine < 1.0);
        assert!(!d.within(&tolerance::FP32) && !d.within(&tolerance::INT8));
        let loose = Tolerance { name: "loose", max_abs: 0.5, max_rel_to_peak: 0.0 };
        assert!(d.within(&loose));
        assert_eq!(top_k(&[0.1, 0.9, 0.5], 2), vec![1, 2]);
        let p = softmax(&[0.0, 0.0]);
        assert!((p[0] - 0.5).abs() < 1e-7);
    }
}
