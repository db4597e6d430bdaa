//! `einsum`: the MIL op takes two operands and an equation. coremltools emits it for
//! `nchw,nwhu->nchu`-shaped equations (any letters); the executor runs any two-operand
//! equation without repeated letters inside an operand (no diagonals) or ellipsis, as
//! reduce + transpose + one batched matmul: letters only in one operand and not in the output
//! are summed first, then each operand is laid out as `[batch, free, contracted]` /
//! `[batch, contracted, free]` (batch sizes of 1 broadcast, numpy style), multiplied, and the
//! result permuted into the output's letter order.

use candle_core::{Result as CResult, Tensor};
use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::arg;
use crate::mlprogram::ops::matmul;

/// A parsed two-operand equation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Equation {
    x: Vec<char>,
    y: Vec<char>,
    out: Vec<char>,
}

impl Equation {
    /// Parses `ab,bc->ac` (spaces ignored). Refused: other operand counts, a letter twice in
    /// one term, ellipsis, an output letter that no operand has.
    pub(crate) fn parse(eq: &str) -> std::result::Result<Equation, String> {
        let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, out) = eq.split_once("->").ok_or("no `->` (implicit output is not supported)")?;
        let terms: Vec<&str> = lhs.split(',').collect();
        let [x, y] = terms.as_slice() else {
            return Err(format!("{} operands; the executor takes two", terms.len()));
        };
        let term = |t: &str| -> std::result::Result<Vec<char>, String> {
            let v: Vec<char> = t.chars().collect();
            if let Some(c) = v.iter().find(|c| !c.is_ascii_alphabetic()) {
                return Err(format!("`{c}` in `{t}` (letters only; no ellipsis)"));
            }
            for (k, c) in v.iter().enumerate() {
                if v[k + 1..].contains(c) {
                    return Err(format!("letter `{c}` twice in `{t}` (diagonals)"));
                }
            }
            Ok(v)
        };
        let (x, y, out) = (term(x)?, term(y)?, term(out)?);
        if let Some(c) = out.iter().find(|c| !x.contains(c) && !y.contains(c)) {
            return Err(format!("output letter `{c}` is in no operand"));
        }
        Ok(Equation { x, y, out })
    }

    /// Evaluates the equation on `a` and `b`.
    pub(crate) fn eval(&self, a: &Tensor, b: &Tensor) -> CResult<Tensor> {
        if a.rank() != self.x.len() || b.rank() != self.y.len() {
            candle_core::bail!(
                "einsum: operands of rank {} and {} for terms of {} and {} letters",
                a.rank(),
                b.rank(),
                self.x.len(),
                self.y.len()
            )
        }
        // Sum away letters only one operand has and the output does not keep.
        let (a, xs) = sum_lonely(a, &self.x, &self.y, &self.out)?;
        let (b, ys) = sum_lonely(b, &self.y, &self.x, &self.out)?;
        let batch: Vec<char> =
            self.out.iter().copied().filter(|c| xs.contains(c) && ys.contains(c)).collect();
        let free_x: Vec<char> = self.out.iter().copied().filter(|c| !ys.contains(c)).collect();
        let free_y: Vec<char> = self.out.iter().copied().filter(|c| !xs.contains(c)).collect();
        let contracted: Vec<char> =
            xs.iter().copied().filter(|c| ys.contains(c) && !self.out.contains(c)).collect();
        let size = |t: &Tensor, term: &[char], c: char| -> usize {
            term.iter().position(|&d| d == c).map_or(1, |k| t.dims()[k])
        };
        for &c in &contracted {
            let (m, n) = (size(&a, &xs, c), size(&b, &ys, c));
            if m != n && m != 1 && n != 1 {
                candle_core::bail!(
                    "einsum: letter `{c}` is {m} in one operand and {n} in the other"
                )
            }
        }
        // [batch..., free..., contracted...] and [batch..., contracted..., free...], then the
        // free and contracted groups flattened into one matrix dimension each.
        let lay = |t: &Tensor, term: &[char], order: &[char]| -> CResult<Tensor> {
            let perm: Vec<usize> =
                order.iter().map(|c| term.iter().position(|d| d == c).unwrap_or(0)).collect();
            t.permute(perm)?.contiguous()
        };
        let a = lay(&a, &xs, &[&batch[..], &free_x, &contracted].concat())?;
        let b = lay(&b, &ys, &[&batch[..], &contracted, &free_y].concat())?;
        let nb = batch.len();
        let prod = |d: &[usize]| d.iter().product::<usize>();
        // Contracted letters broadcast too (a size of 1 against n).
        let ka: Vec<usize> = a.dims()[nb + free_x.len()..].to_vec();
        let kb: Vec<usize> = b.dims()[nb..nb + contracted.len()].to_vec();
        let k: Vec<usize> = ka.iter().zip(&kb).map(|(&p, &q)| p.max(q)).collect();
        let a_shape = [&a.dims()[..nb + free_x.len()], &k[..]].concat();
        let b_shape = [&b.dims()[..nb], &k[..], &b.dims()[nb + contracted.len()..]].concat();
        let a = a.broadcast_as(a_shape.as_slice())?.contiguous()?;
        let b = b.broadcast_as(b_shape.as_slice())?.contiguous()?;
        let (bx, fx) = (&a.dims()[..nb], &a.dims()[nb..nb + free_x.len()]);
        let (by, fy) = (&b.dims()[..nb], &b.dims()[nb + contracted.len()..]);
        let a3 = a.reshape([bx, &[prod(fx), prod(&k)]].concat())?;
        let b3 = b.reshape([by, &[prod(&k), prod(fy)]].concat())?;
        let (fx, fy) = (fx.to_vec(), fy.to_vec());
        let y = matmul(&a3, &b3, false, false)?;
        let out_batch: Vec<usize> = y.dims()[..nb].to_vec();
        let y = y.reshape([&out_batch[..], &fx, &fy].concat())?;
        // Now in [batch, free_x, free_y] letter order; permute to the output's.
        let have: Vec<char> = [&batch[..], &free_x, &free_y].concat();
        let perm: Vec<usize> =
            self.out.iter().map(|c| have.iter().position(|d| d == c).unwrap_or(0)).collect();
        y.permute(perm)?.contiguous()
    }
}

/// Sums `t` over the letters of `term` that neither `other` nor `out` has; returns the tensor
/// and the letters left.
fn sum_lonely(
    t: &Tensor,
    term: &[char],
    other: &[char],
    out: &[char],
) -> CResult<(Tensor, Vec<char>)> {
    let mut t = t.clone();
    let mut left = term.to_vec();
    for k in (0..term.len()).rev() {
        let c = term[k];
        if !other.contains(&c) && !out.contains(&c) {
            t = t.sum(k)?;
            left.remove(k);
        }
    }
    Ok((t, left))
}

/// `einsum(values=(x, y), equation)`.
pub(super) fn einsum(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let eq = b.string(i, op, "equation")?.ok_or_else(|| b.bad(i, op, "no `equation`"))?;
    let eq = Equation::parse(&eq)
        .map_err(|e| b.unsupported(i, op, format!("einsum equation `{eq}`: {e}")))?;
    let args = op.inputs.get("values").cloned().unwrap_or_default();
    let [x, y] = args.as_slice() else {
        return Err(b.unsupported(i, op, format!("einsum of {} operands", args.len())));
    };
    let inputs = vec![b.arg_slot(i, op, x)?, b.arg_slot(i, op, y)?];
    b.push_fn(i, op, inputs, move |a| Ok(vec![eq.eval(arg(a, 0)?, arg(a, 1)?)?]));
    Ok(())
}

#[cfg(test)]
#[path = "op_einsum_tests.rs"]
mod tests;
