//! The recurrent cells (simple RNN, GRU, LSTM) both model formats run: gate weights packed once
//! for the kernels' GEMM, the input projection of a whole sequence in one matmul, then one
//! small matmul and the gate math per time step, in each direction.
//!
//! Semantics are those of the MIL `rnn` / `gru` / `lstm` ops (iOS15-iOS18) and the
//! NeuralNetwork recurrent layers: `x` is `[seq, batch, input]`; a uni-directional layer run in
//! reverse emits its outputs in processing order, a bidirectional layer's backward half at the
//! time step it read (so position `t` holds the backward state after reading `x[t]`).

use kernels::{PackedB, Strided};

/// A gate activation as the recurrent ops name them (with their fixed parameters).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Act {
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `max(x, 0)`.
    Relu,
    /// `x`.
    Linear,
    /// `alpha * tanh(beta * x)`.
    ScaledTanh(f32, f32),
    /// `clamp(alpha * x + beta, 0, 1)`.
    HardSigmoid(f32, f32),
}

impl Act {
    /// The activation a MIL recurrent op names (`sigmoid_hard` and `hard_sigmoid` both, any
    /// case); `scaled_tanh` and the hard sigmoid take the defaults coremltools' tests use
    /// (alpha 1, beta 1 and alpha 0.2, beta 0.5).
    pub(crate) fn parse(name: &str) -> Option<Act> {
        Some(match name.to_ascii_lowercase().as_str() {
            "sigmoid" => Act::Sigmoid,
            "tanh" => Act::Tanh,
            "relu" => Act::Relu,
            "linear" => Act::Linear,
            "scaled_tanh" => Act::ScaledTanh(1.0, 1.0),
            "sigmoid_hard" | "hard_sigmoid" => Act::HardSigmoid(0.2, 0.5),
            _ => return None,
        })
    }

    /// Applies the activation.
    pub(crate) fn apply(self, x: f32) -> f32 {
        match self {
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Act::Tanh => x.tanh(),
            Act::Relu => x.max(0.0),
            Act::Linear => x,
            Act::ScaledTanh(a, b) => a * (b * x).tanh(),
            Act::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
        }
    }
}

/// Which recurrence, with its gate layout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell {
    /// `h = act(W x + R h + b)`; one gate.
    Rnn {
        /// The activation.
        act: Act,
    },
    /// Gates in the order reset, output (new), update (`[r, o, z]`).
    Gru {
        /// On the reset and update gates.
        recurrent: Act,
        /// On the output gate.
        act: Act,
        /// `o = act(W_o x + b_io + r * (R_o h + b_ho))` (PyTorch's form) instead of
        /// `act(W_o x + b_io + R_o (r * h) + b_ho)`.
        reset_after: bool,
    },
    /// Gates in the order input, forget, output, cell (`[i, f, o, z]`).
    Lstm {
        /// On the input, forget and output gates.
        recurrent: Act,
        /// On the cell gate.
        cell: Act,
        /// On the cell state for the output.
        act: Act,
        /// The cell state is clipped to `[-clip, clip]`.
        clip: Option<f32>,
    },
}

impl Cell {
    /// Gates per hidden unit.
    pub(crate) fn gates(self) -> usize {
        match self {
            Cell::Rnn { .. } => 1,
            Cell::Gru { .. } => 3,
            Cell::Lstm { .. } => 4,
        }
    }
}

/// The weights of one direction, row-major as the ops store them.
pub(crate) struct DirWeights {
    /// `[gates * hidden, input]`.
    pub(crate) w_ih: Vec<f32>,
    /// `[gates * hidden, hidden]`.
    pub(crate) w_hh: Vec<f32>,
    /// Added to the input projection (`gates * hidden`, or empty).
    pub(crate) b_ih: Vec<f32>,
    /// Added to the recurrent projection (`gates * hidden`, or empty); for a GRU with
    /// `reset_after` its output-gate part is scaled by the reset gate.
    pub(crate) b_hh: Vec<f32>,
    /// LSTM peepholes `[i, f, o]` (`3 * hidden`, or empty).
    pub(crate) peephole: Vec<f32>,
}

/// One direction ready to run.
struct Dir {
    wx: PackedB,
    wh: PackedB,
    /// GRU reset-before: the output gate's recurrent weights alone (`hidden x hidden`).
    wh_o: Option<PackedB>,
    b_ih: Vec<f32>,
    b_hh: Vec<f32>,
    peephole: Vec<f32>,
}

/// A recurrent layer: the cell, one or two directions of weights, the output form.
pub(crate) struct Recurrent {
    cell: Cell,
    dirs: Vec<Dir>,
    input: usize,
    hidden: usize,
    /// Uni-directional layer reading the sequence back to front.
    reverse: bool,
    /// Every step's output (`[seq, ..]`) instead of the last (`[1, ..]`).
    output_sequence: bool,
}

/// `y = x W^T` for a `[out, inp]` row-major `w`, packed for the GEMM.
fn pack(w: &[f32], out: usize, inp: usize) -> Option<PackedB> {
    PackedB::new(Strided { data: w, batch: 0, row: 1, col: inp }, inp, out)
}

fn check_len(v: &[f32], n: usize, what: &str) -> Result<Vec<f32>, String> {
    match v.len() {
        0 => Ok(vec![0.0; n]),
        l if l == n => Ok(v.to_vec()),
        l => Err(format!("{what} has {l} values, expected {n}")),
    }
}

/// The results of a run: the output sequence (or last output), final hidden and cell states.
pub(crate) struct RunOut {
    /// `[seq or 1, batch, dirs * hidden]`.
    pub(crate) y: Vec<f32>,
    /// `[batch, dirs * hidden]`.
    pub(crate) h: Vec<f32>,
    /// `[batch, dirs * hidden]` (zeros for a cell without a cell state).
    pub(crate) c: Vec<f32>,
}

impl Recurrent {
    /// Checks and packs the weights (one or two directions; two is bidirectional).
    pub(crate) fn new(
        cell: Cell,
        weights: &[DirWeights],
        reverse: bool,
        output_sequence: bool,
    ) -> Result<Recurrent, String> {
        let g = cell.gates();
        let first = weights.first().ok_or("no weights")?;
        if weights.len() > 2 || (weights.len() == 2 && reverse) {
            return Err("at most two directions, and a reverse layer has one".into());
        }
        let hidden = (first.w_hh.len() as f64 / g as f64).sqrt() as usize;
        if hidden == 0 || g * hidden * hidden != first.w_hh.len() {
            return Err(format!(
                "the recurrent weight has {} values, not {g} x H x H",
                first.w_hh.len()
            ));
        }
        let input = first.w_ih.len() / (g * hidden);
        let mut dirs = Vec::new();
        for w in weights {
            if w.w_hh.len() != g * hidden * hidden || w.w_ih.len() != g * hidden * input {
                return Err(format!(
                    "weights of {} and {} values for {g} gates of {hidden} units on {input} inputs",
                    w.w_ih.len(),
                    w.w_hh.len()
                ));
            }
            let gh = g * hidden;
            let peephole = match cell {
                Cell::Lstm { .. } => check_len(&w.peephole, 3 * hidden, "peephole")?,
                _ => Vec::new(),
            };
            let wh_o = match cell {
                Cell::Gru { reset_after: false, .. } => {
                    pack(&w.w_hh[hidden * hidden..2 * hidden * hidden], hidden, hidden)
                }
                _ => None,
            };
            let bad = || "weights do not cover their shape".to_string();
            dirs.push(Dir {
                wx: pack(&w.w_ih, gh, input).ok_or_else(bad)?,
                wh: pack(&w.w_hh, gh, hidden).ok_or_else(bad)?,
                wh_o,
                b_ih: check_len(&w.b_ih, gh, "input bias")?,
                b_hh: check_len(&w.b_hh, gh, "bias")?,
                peephole,
            });
        }
        Ok(Recurrent { cell, dirs, input, hidden, reverse, output_sequence })
    }

    /// Hidden units per direction.
    pub(crate) fn hidden(&self) -> usize {
        self.hidden
    }

    /// Directions (1 or 2).
    pub(crate) fn directions(&self) -> usize {
        self.dirs.len()
    }

    /// Runs on `x` (`[seq, batch, input]`) from the initial states (`[batch, dirs * hidden]`;
    /// `None` is zeros).
    pub(crate) fn run(
        &self,
        x: &[f32],
        (seq, batch): (usize, usize),
        h0: Option<&[f32]>,
        c0: Option<&[f32]>,
    ) -> Result<RunOut, String> {
        let (hd, nd) = (self.hidden, self.dirs.len());
        let width = nd * hd;
        if x.len() != seq * batch * self.input {
            return Err(format!(
                "x has {} values, expected {seq} x {batch} x {} (the weights' input size)",
                x.len(),
                self.input
            ));
        }
        for (s, what) in [(h0, "initial_h"), (c0, "initial_c")] {
            if let Some(s) = s.filter(|s| s.len() != batch * width) {
                return Err(format!("{what} has {} values, expected {batch} x {width}", s.len()));
            }
        }
        let steps_out = if self.output_sequence { seq } else { 1 };
        let mut out = RunOut {
            y: vec![0.0; steps_out * batch * width],
            h: vec![0.0; batch * width],
            c: vec![0.0; batch * width],
        };
        for (d, dir) in self.dirs.iter().enumerate() {
            let backward = self.reverse || d == 1;
            let slice = |s: Option<&[f32]>| -> Vec<f32> {
                let mut v = vec![0.0; batch * hd];
                if let Some(s) = s {
                    for b in 0..batch {
                        let from = b * width + d * hd;
                        v[b * hd..(b + 1) * hd].copy_from_slice(&s[from..from + hd]);
                    }
                }
                v
            };
            let (mut h, mut c) = (slice(h0), slice(c0));
            let xp = self.project(dir, x, seq * batch)?;
            for k in 0..seq {
                let t = if backward { seq - 1 - k } else { k };
                let gh = self.dirs[0].b_hh.len();
                self.step(dir, &xp[t * batch * gh..(t + 1) * batch * gh], batch, &mut h, &mut c)?;
                let pos = match (self.output_sequence, nd == 2) {
                    (false, _) => (k + 1 == seq).then_some(0),
                    (true, true) => Some(t),
                    (true, false) => Some(k),
                };
                if let Some(p) = pos {
                    for b in 0..batch {
                        let to = (p * batch + b) * width + d * hd;
                        out.y[to..to + hd].copy_from_slice(&h[b * hd..(b + 1) * hd]);
                    }
                }
            }
            for b in 0..batch {
                let to = b * width + d * hd;
                out.h[to..to + hd].copy_from_slice(&h[b * hd..(b + 1) * hd]);
                out.c[to..to + hd].copy_from_slice(&c[b * hd..(b + 1) * hd]);
            }
        }
        if seq == 0 && !self.output_sequence {
            // No step ran: the "last output" is the initial state.
            out.y.copy_from_slice(&out.h);
        }
        Ok(out)
    }

    /// The input projection of every step at once: `[rows, gates * hidden]`.
    fn project(&self, dir: &Dir, x: &[f32], rows: usize) -> Result<Vec<f32>, String> {
        let gh = dir.b_ih.len();
        let mut xp = vec![0.0; rows * gh];
        let a = Strided { data: x, batch: 0, row: self.input, col: 1 };
        if !kernels::matmul_packed(rows, a, &dir.wx, Some(&dir.b_ih), &mut xp) {
            return Err("input projection: shapes do not match".into());
        }
        Ok(xp)
    }

    /// One time step for every batch row: `xp` is this step's input projection.
    fn step(
        &self,
        dir: &Dir,
        xp: &[f32],
        batch: usize,
        h: &mut [f32],
        c: &mut [f32],
    ) -> Result<(), String> {
        let hd = self.hidden;
        let gh = dir.b_hh.len();
        let mut hp = vec![0.0; batch * gh];
        let a = Strided { data: h, batch: 0, row: hd, col: 1 };
        if !kernels::matmul_packed(batch, a, &dir.wh, Some(&dir.b_hh), &mut hp) {
            return Err("recurrent projection: shapes do not match".into());
        }
        match self.cell {
            Cell::Rnn { act } => {
                for (h, (x, r)) in h.iter_mut().zip(xp.iter().zip(&hp)) {
                    *h = act.apply(x + r);
                }
            }
            Cell::Gru { recurrent, act, reset_after } => {
                // r and z first; the output gate needs r.
                let mut r = vec![0.0; batch * hd];
                let mut z = vec![0.0; batch * hd];
                for b in 0..batch {
                    let (x, p) = (&xp[b * gh..], &hp[b * gh..]);
                    for j in 0..hd {
                        r[b * hd + j] = recurrent.apply(x[j] + p[j]);
                        z[b * hd + j] = recurrent.apply(x[2 * hd + j] + p[2 * hd + j]);
                    }
                }
                let ro = match (&dir.wh_o, reset_after) {
                    (Some(wh_o), false) => {
                        let rh: Vec<f32> = r.iter().zip(h.iter()).map(|(r, h)| r * h).collect();
                        let mut ro = vec![0.0; batch * hd];
                        let bo = &dir.b_hh[hd..2 * hd];
                        let a = Strided { data: &rh, batch: 0, row: hd, col: 1 };
                        if !kernels::matmul_packed(batch, a, wh_o, Some(bo), &mut ro) {
                            return Err("gru output gate: shapes do not match".into());
                        }
                        ro
                    }
                    _ => (0..batch * hd).map(|k| r[k] * hp[(k / hd) * gh + hd + k % hd]).collect(),
                };
                for b in 0..batch {
                    for j in 0..hd {
                        let k = b * hd + j;
                        let o = act.apply(xp[b * gh + hd + j] + ro[k]);
                        h[k] = (1.0 - z[k]) * o + z[k] * h[k];
                    }
                }
            }
            Cell::Lstm { recurrent, cell, act, clip } => {
                let p = &dir.peephole;
                for b in 0..batch {
                    let (x, q) = (&xp[b * gh..(b + 1) * gh], &hp[b * gh..(b + 1) * gh]);
                    for j in 0..hd {
                        let k = b * hd + j;
                        let pre = |g: usize| x[g * hd + j] + q[g * hd + j];
                        let i = recurrent.apply(pre(0) + c[k] * p[j]);
                        let f = recurrent.apply(pre(1) + c[k] * p[hd + j]);
                        let z = cell.apply(pre(3));
                        let mut cn = f * c[k] + i * z;
                        if let Some(t) = clip {
                            cn = cn.max(-t).min(t);
                        }
                        let o = recurrent.apply(pre(2) + cn * p[2 * hd + j]);
                        c[k] = cn;
                        h[k] = o * act.apply(cn);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "recurrent_cell_tests.rs"]
mod tests;
