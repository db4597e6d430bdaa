//! Project automation behind `cargo xtask`.
fn main() {}
