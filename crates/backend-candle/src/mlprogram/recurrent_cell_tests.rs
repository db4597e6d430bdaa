//! The cell's packed-GEMM path against a naive f64 loop over the same equations, at sizes the
//! captured coremltools cases do not reach (gate widths that are not a multiple of the
//! micro-kernel's tile, several batch rows, both directions).

use super::{Act, Cell, DirWeights, Recurrent};

/// Deterministic values in [-0.5, 0.5).
fn fill(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One LSTM direction in f64: returns the per-step outputs (in the order read) and final h, c.
fn naive_lstm(
    w: &DirWeights,
    x: &[f32],
    (s, b, i, h): (usize, usize, usize, usize),
    rev: bool,
) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
    let mut hs = vec![0f64; b * h];
    let mut cs = vec![0f64; b * h];
    let mut ys = vec![vec![0f64; b * h]; s];
    for k in 0..s {
        let t = if rev { s - 1 - k } else { k };
        let (mut hn, mut cn) = (hs.clone(), cs.clone());
        for n in 0..b {
            for j in 0..h {
                let pre = |g: usize| {
                    let r = g * h + j;
                    let mut v = f64::from(w.b_hh[r]);
                    for p in 0..i {
                        v += f64::from(w.w_ih[r * i + p]) * f64::from(x[(t * b + n) * i + p]);
                    }
                    for p in 0..h {
                        v += f64::from(w.w_hh[r * h + p]) * hs[n * h + p];
                    }
                    v
                };
                let c = cs[n * h + j];
                let ig = sig(pre(0) + c * f64::from(w.peephole[j]));
                let fg = sig(pre(1) + c * f64::from(w.peephole[h + j]));
                let c2 = fg * c + ig * pre(3).tanh();
                let og = sig(pre(2) + c2 * f64::from(w.peephole[2 * h + j]));
                cn[n * h + j] = c2;
                hn[n * h + j] = og * c2.tanh();
            }
        }
        hs = hn;
        cs = cn;
        ys[t].clone_from(&hs);
    }
    (ys, hs, cs)
}

#[test]
fn bidirectional_lstm_matches_a_naive_loop() {
    let (s, b, i, h) = (4, 3, 70, 50);
    let dir = |seed| DirWeights {
        w_ih: fill(4 * h * i, seed),
        w_hh: fill(4 * h * h, seed + 1),
        b_ih: Vec::new(),
        b_hh: fill(4 * h, seed + 2),
        peephole: fill(3 * h, seed + 3),
    };
    let (fwd, bwd) = (dir(1), dir(11));
    let x = fill(s * b * i, 99);
    let cell = Cell::Lstm { recurrent: Act::Sigmoid, cell: Act::Tanh, act: Act::Tanh, clip: None };
    let layer = Recurrent::new(cell, &[dir(1), dir(11)], false, true).expect("layer");
    let out = layer.run(&x, (s, b), None, None).expect("run");
    let (yf, hf, cf) = naive_lstm(&fwd, &x, (s, b, i, h), false);
    let (yb, hb, cb) = naive_lstm(&bwd, &x, (s, b, i, h), true);
    let mut worst = 0f64;
    for t in 0..s {
        for n in 0..b {
            for j in 0..h {
                let at = (t * b + n) * 2 * h;
                worst = worst.max((f64::from(out.y[at + j]) - yf[t][n * h + j]).abs());
                worst = worst.max((f64::from(out.y[at + h + j]) - yb[t][n * h + j]).abs());
            }
        }
    }
    for n in 0..b {
        for j in 0..h {
            let at = n * 2 * h;
            for (got, want) in [
                (out.h[at + j], hf[n * h + j]),
                (out.h[at + h + j], hb[n * h + j]),
                (out.c[at + j], cf[n * h + j]),
                (out.c[at + h + j], cb[n * h + j]),
            ] {
                worst = worst.max((f64::from(got) - want).abs());
            }
        }
    }
    assert!(worst < 1e-5, "worst |difference| {worst:e}");
}

#[test]
fn mismatched_weights_and_inputs_are_errors() {
    let w = DirWeights {
        w_ih: vec![0.0; 3 * 2 * 5],
        w_hh: vec![0.0; 3 * 2 * 2],
        b_ih: Vec::new(),
        b_hh: vec![0.0; 7],
        peephole: Vec::new(),
    };
    let cell = Cell::Gru { recurrent: Act::Sigmoid, act: Act::Tanh, reset_after: false };
    assert!(Recurrent::new(cell, std::slice::from_ref(&w), false, false).is_err(), "bias of 7");
    let w = DirWeights { b_hh: Vec::new(), ..w };
    let layer = Recurrent::new(cell, &[w], false, false).expect("layer");
    assert!(layer.run(&[0.0; 9], (1, 2), None, None).is_err(), "9 inputs for 2 x 5");
    assert!(layer.run(&[0.0; 10], (1, 2), Some(&[0.0; 3]), None).is_err(), "h of 3 for 2 x 2");
    assert!(layer.run(&[0.0; 10], (1, 2), None, None).is_ok());
}
