//! Seeded mutation fuzzing of what users hand `infer`: model folders, manifests, Core ML
//! packages, input tensors and photos, each mutated and run through the CLI binary. Any panic,
//! death by a signal, or run past 30 s fails. Ignored by default (it runs the binary a few
//! hundred times); CI runs it with
//! `cargo test -p cli --test mutation_fuzz -- --ignored --nocapture`.
//! `FUZZ_CASES` (default 300), `FUZZ_SEED` (default 14) and `FUZZ_BUDGET_S` (default 600, the
//! whole run's time bound) tune it; a failure prints the seed, case and command to replay.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PER_RUN_LIMIT: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Byte-level mutations: flips, overwrites with boundary bytes, truncation, duplication of a
/// slice, insertion of junk. `head` biases positions toward the first bytes (headers).
fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>, head: usize) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        if bytes.is_empty() {
            bytes.push(0);
        }
        let span = if rng.below(3) == 0 { bytes.len() } else { head.min(bytes.len()) };
        let at = rng.below(span);
        match rng.below(6) {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => bytes[at] = [0x00, 0xff, 0x7f, 0x80, b'9', b'"'][rng.below(6)],
            2 => bytes.truncate(at),
            3 => {
                let end = (at + 1 + rng.below(64)).min(bytes.len());
                let slice = bytes[at..end].to_vec();
                bytes.splice(at..at, slice);
            }
            4 => {
                let junk: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, junk);
            }
            _ => {
                // Little-endian u64 overwrite with an extreme value (lengths, offsets, dims).
                let v = [0u64, u64::MAX, 1 << 40, 0x7fff_ffff][rng.below(4)];
                let end = (at + 8).min(bytes.len());
                let b = v.to_le_bytes();
                bytes[at..end].copy_from_slice(&b[..end - at]);
            }
        }
    }
}

/// Text-level manifest mutations: numbers swapped for extremes, lines dropped or duplicated.
fn mutate_manifest(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        let i = rng.below(lines.len());
        match rng.below(4) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            _ => {
                let extreme = [
                    "nan",
                    "inf",
                    "-inf",
                    "0",
                    "-1",
                    "60000",
                    "1e30",
                    "99999999999",
                    "18446744073709551615",
                    "\"\"",
                    "[]",
                ][rng.below(11)];
                if let Some((k, _)) = lines[i].split_once(" = ") {
                    lines[i] = format!("{k} = {extreme}");
                }
            }
        }
    }
    lines.join("\n")
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

/// Runs the binary; `Ok(true)` when it succeeded, `Ok(false)` when it refused with a clean
/// `error:` line, `Err` saying how it misbehaved (panic, signal, over the time limit).
fn run(args: &[String]) -> Result<bool, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .args(args)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if started.elapsed() > PER_RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {PER_RUN_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        use std::io::Read;
        let _ = s.read_to_string(&mut err);
    }
    if status.code().is_none() {
        return Err(format!("killed by a signal ({status}); stderr: {err}"));
    }
    if err.contains("panicked") || status.code() == Some(101) {
        return Err(format!("panicked: {err}"));
    }
    if !status.success() && !err.starts_with("error: ") {
        return Err(format!("failed without an `error:` line: {err}"));
    }
    Ok(status.success())
}

#[test]
#[ignore = "runs the CLI a few hundred times; CI runs it with --ignored"]
fn mutated_user_inputs_never_panic_hang_or_crash() {
    let cases = env_u64("FUZZ_CASES", 300);
    let seed = env_u64("FUZZ_SEED", 14);
    let budget = Duration::from_secs(env_u64("FUZZ_BUDGET_S", 600));
    let model = root().join("models/efficientnet-lite0");
    let fixtures = root().join("../shared/fixtures/efficientnet_lite0");
    let package = fixtures.join("efficientnet_lite0.mlpackage");
    let reference = std::fs::read(fixtures.join("reference/coffee.safetensors")).unwrap();
    let photo = std::fs::read(root().join("models/samples/coffee.png")).unwrap();
    let manifest = std::fs::read_to_string(model.join("manifest.toml")).unwrap();
    let weights = std::fs::read(model.join("efficientnet-lite0.safetensors")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut done = 0;
    // Per kind (manifest, weights, package, tensor, photo): runs that still succeeded.
    let mut succeeded = [0u32; 5];
    for case in 0..cases {
        if started.elapsed() > budget {
            break;
        }
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (case + 1));
        let dir = work.path().join(format!("case{case}"));
        std::fs::create_dir_all(&dir).unwrap();
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let args: Vec<String> = match case % 5 {
            // A model folder with a mutated manifest (weights linked, not copied).
            0 => {
                std::fs::write(dir.join("manifest.toml"), mutate_manifest(&mut rng, &manifest))
                    .unwrap();
                std::fs::copy(model.join("labels.txt"), dir.join("labels.txt")).unwrap();
                #[cfg(unix)]
                std::os::unix::fs::symlink(
                    model.join("efficientnet-lite0.safetensors"),
                    dir.join("efficientnet-lite0.safetensors"),
                )
                .unwrap();
                vec![
                    "classify".into(),
                    "--model".into(),
                    s(&dir),
                    "models/samples/coffee.png".into(),
                ]
            }
            // Mutated weights whose hash and size the manifest is updated to match.
            1 => {
                let mut w = weights.clone();
                let len = w.len();
                let head = if rng.below(2) == 0 { 4096 } else { len };
                mutate_bytes(&mut rng, &mut w, head);
                let text = manifest
                    .replace(&model_manifest::sha256_hex(&weights), &model_manifest::sha256_hex(&w))
                    .replace(&format!("size = {len}"), &format!("size = {}", w.len()));
                std::fs::write(dir.join("manifest.toml"), text).unwrap();
                std::fs::write(dir.join("efficientnet-lite0.safetensors"), w).unwrap();
                std::fs::copy(model.join("labels.txt"), dir.join("labels.txt")).unwrap();
                vec![
                    "classify".into(),
                    "--model".into(),
                    s(&dir),
                    "models/samples/coffee.png".into(),
                ]
            }
            // A Core ML package with one of its files mutated.
            2 => {
                let pkg = dir.join("m.mlpackage");
                copy_dir(&package, &pkg);
                let data = pkg.join("Data/com.apple.CoreML");
                let target = [
                    pkg.join("Manifest.json"),
                    data.join("model.mlmodel"),
                    data.join("weights/weight.bin"),
                ][rng.below(3)]
                .clone();
                let mut b = std::fs::read(&target).unwrap();
                mutate_bytes(&mut rng, &mut b, 512);
                std::fs::write(&target, b).unwrap();
                let input = fixtures.join("reference/coffee.safetensors");
                vec!["run".into(), s(&pkg), "--input".into(), s(&input)]
            }
            // A mutated input tensor file.
            3 => {
                let mut b = reference.clone();
                mutate_bytes(&mut rng, &mut b, 256);
                let input = dir.join("in.safetensors");
                std::fs::write(&input, b).unwrap();
                vec!["run".into(), s(&model), "--input".into(), s(&input)]
            }
            // A mutated photo, or a valid one of extreme proportions (F1: 100000x1 aborted).
            _ => {
                let p = dir.join("photo.png");
                if rng.below(2) == 0 {
                    let mut b = photo.clone();
                    mutate_bytes(&mut rng, &mut b, 64);
                    std::fs::write(&p, b).unwrap();
                } else {
                    let dims =
                        [(100_000, 1), (1, 100_000), (16_000, 1), (1, 20_000), (3000, 2), (1, 1)];
                    let (w, h) = dims[rng.below(dims.len())];
                    image::GrayImage::new(w, h).save(&p).unwrap();
                }
                vec!["classify".into(), s(&p)]
            }
        };
        match run(&args) {
            Ok(true) => succeeded[(case % 5) as usize] += 1,
            Ok(false) => {}
            Err(why) => {
                failures.push(format!("seed {seed} case {case}: infer {}: {why}", args.join(" ")))
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        done += 1;
    }
    println!(
        "mutation fuzz: {done} cases in {:.0} s, {} failures; succeeded despite the mutation \
         (manifest, weights, package, tensor, photo): {succeeded:?}",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(done >= cases.min(50), "only {done} cases ran within the {budget:?} budget");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
