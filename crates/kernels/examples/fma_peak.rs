//! Prints this CPU's measured FMA peak as one JSON line, for `cargo xtask bench-peers`:
//! `{"isa": ..., "gflops_1t": ..., "gflops_2t": ...}` (best of 5 trials of a register-only loop).

fn main() {
    let iters = 20_000_000u64;
    let one = kernels::peak::fma_peak_gflops(1, iters, 5);
    let two = kernels::peak::fma_peak_gflops(2, iters, 5);
    println!(
        "{{\"isa\": \"{}\", \"gflops_1t\": {one:.1}, \"gflops_2t\": {two:.1}}}",
        kernels::peak::isa()
    );
}
