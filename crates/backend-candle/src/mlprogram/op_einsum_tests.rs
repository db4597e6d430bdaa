//! `einsum` against a naive sum over every letter assignment (f64), on random shapes.

use candle_core::{Device, Tensor};
use proptest::prelude::*;

use super::Equation;

/// Naive einsum: for every output index, the sum over the contracted letters of x * y.
fn naive(eq: &str, xd: &[usize], x: &[f32], yd: &[usize], y: &[f32]) -> (Vec<usize>, Vec<f64>) {
    let e = Equation::parse(eq).unwrap();
    let mut size = std::collections::BTreeMap::new();
    for (term, dims) in [(&e.x, xd), (&e.y, yd)] {
        for (c, &d) in term.iter().zip(dims) {
            let s = size.entry(*c).or_insert(d);
            *s = (*s).max(d);
        }
    }
    let letters: Vec<char> = size.keys().copied().collect();
    let out_dims: Vec<usize> = e.out.iter().map(|c| size[c]).collect();
    let mut out = vec![0f64; out_dims.iter().product()];
    let total: usize = letters.iter().map(|c| size[c]).product();
    let flat = |term: &[char], dims: &[usize], at: &std::collections::BTreeMap<char, usize>| {
        term.iter().zip(dims).fold(0, |acc, (c, &d)| acc * d + if d == 1 { 0 } else { at[c] })
    };
    for n in 0..total {
        let mut at = std::collections::BTreeMap::new();
        let mut r = n;
        for c in letters.iter().rev() {
            at.insert(*c, r % size[c]);
            r /= size[c];
        }
        let o = e.out.iter().zip(&out_dims).fold(0, |acc, (c, &d)| acc * d + at[c]);
        out[o] += f64::from(x[flat(&e.x, xd, &at)]) * f64::from(y[flat(&e.y, yd, &at)]);
    }
    (out_dims, out)
}

fn check(eq: &str, xd: &[usize], yd: &[usize], seed: u64) {
    let mut s = seed;
    let mut rnd = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    };
    let (x, y) = (rnd(xd.iter().product()), rnd(yd.iter().product()));
    let (want_dims, want) = naive(eq, xd, &x, yd, &y);
    let a = Tensor::from_vec(x, xd, &Device::Cpu).unwrap();
    let b = Tensor::from_vec(y, yd, &Device::Cpu).unwrap();
    let got = Equation::parse(eq).unwrap().eval(&a, &b).unwrap();
    assert_eq!(got.dims(), want_dims.as_slice(), "{eq} {xd:?} {yd:?}");
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((f64::from(*g) - w).abs() <= 1e-5 * (1.0 + w.abs()), "{eq}: {g} vs {w}");
    }
}

#[test]
fn the_equations_coremltools_emits_match_the_naive_sum() {
    check("nchw,nwhu->nchu", &[2, 3, 4, 5], &[2, 5, 4, 6], 1);
    check("chw,whr->chr", &[3, 4, 5], &[5, 4, 2], 2);
    // Broadcast B and H of size 1, as the MIL op allows.
    check("nchw,nwhu->nchu", &[1, 3, 1, 5], &[2, 5, 4, 6], 3);
    check("nchw,nhcq->nchq", &[2, 3, 4, 5], &[2, 4, 3, 6], 4);
    check("bhqd,bhkd->bhqk", &[2, 3, 4, 5], &[2, 3, 6, 5], 5);
    check("bhqk,bhkd->bhqd", &[1, 2, 3, 4], &[1, 2, 4, 5], 6);
    check("ij,jk->ik", &[3, 4], &[4, 5], 7);
    check("ij,kj->ki", &[3, 4], &[5, 4], 8);
    check("i,i->", &[7], &[7], 9);
    check("i,j->ij", &[3], &[4], 10);
    // A letter only one operand has and the output drops is summed away.
    check("abc,cd->ad", &[2, 3, 4], &[4, 5], 11);
    check("bnd,bmd->bnm", &[2, 3, 4], &[2, 5, 4], 12);
}

#[test]
fn unsupported_equations_are_refused_with_the_reason() {
    for (eq, why) in [
        ("ii,ij->j", "twice"),
        ("...ij,jk->...ik", "ellipsis"),
        ("ij,jk", "->"),
        ("ij,jk,kl->il", "operands"),
        ("ij,jk->iz", "no operand"),
    ] {
        let e = Equation::parse(eq).unwrap_err();
        assert!(e.contains(why), "{eq}: {e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Random letter assignments: each of up to five letters is batch, contracted or free on
    /// either side; sizes 1-4.
    #[test]
    fn random_equations_match_the_naive_sum(
        roles in proptest::collection::vec(0u8..5, 1..5),
        sizes in proptest::collection::vec(1usize..4, 5),
        seed in any::<u64>(),
    ) {
        let letters = ['p', 'q', 'r', 's', 't'];
        let (mut x, mut y, mut out) = (String::new(), String::new(), String::new());
        for (k, role) in roles.iter().enumerate() {
            let c = letters[k];
            match role {
                0 => { x.push(c); y.push(c); out.push(c); } // batch
                1 => { x.push(c); y.push(c); }              // contracted
                2 => { x.push(c); out.push(c); }            // free in x
                3 => { y.push(c); out.push(c); }            // free in y
                _ => { x.push(c); }                         // summed away
            }
        }
        // Output letters in reverse: the result must be permuted.
        let out: String = out.chars().rev().collect();
        let eq = format!("{x},{y}->{out}");
        let dim = |t: &str| -> Vec<usize> {
            t.chars().map(|c| sizes[letters.iter().position(|&d| d == c).unwrap()]).collect()
        };
        check(&eq, &dim(&x), &dim(&y), seed);
    }
}
