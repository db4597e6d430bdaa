//! Load test of `infer serve` on loopback: throughput and p50/p99 latency at 1, 4 and 16
//! concurrent clients, each a keep-alive HTTP/1.1 connection sending KServe v2 binary-tensor
//! requests for EfficientNet-Lite0. Bounded: at most `--requests` calls and `--seconds` per
//! level; the server is started on 127.0.0.1 with a free port and stopped with SIGTERM at the
//! end.
//!
//! `cargo bench -p cli --bench serve_load -- [--requests N] [--seconds S] [--workers W]
//! [--threads T] [--clients 1,4,16]`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Opts {
    requests: usize,
    seconds: u64,
    workers: u64,
    threads: u64,
    clients: Vec<usize>,
}

fn opts() -> Opts {
    let mut o =
        Opts { requests: 300, seconds: 60, workers: 1, threads: 2, clients: vec![1, 4, 16] };
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--requests" => o.requests = val().parse().expect("--requests N"),
            "--seconds" => o.seconds = val().parse().expect("--seconds S"),
            "--workers" => o.workers = val().parse().expect("--workers W"),
            "--threads" => o.threads = val().parse().expect("--threads T"),
            "--clients" => {
                o.clients = val().split(',').map(|c| c.parse().expect("--clients 1,4,16")).collect()
            }
            _ => {}
        }
    }
    o
}

/// The binary-tensor request body for one [1,3,224,224] f32 input, and its JSON length.
fn request_body() -> (Vec<u8>, usize) {
    let header = r#"{"parameters":{"binary_data_output":true},"inputs":[{"name":"input","shape":[1,3,224,224],"datatype":"FP32","parameters":{"binary_data_size":602112}}]}"#;
    let mut body = header.as_bytes().to_vec();
    let mut state = 7u32;
    for _ in 0..3 * 224 * 224 {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let v = (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
        body.extend_from_slice(&v.to_le_bytes());
    }
    (body, header.len())
}

/// Sends one request on a keep-alive connection; returns the status.
fn call(r: &mut BufReader<TcpStream>, head: &[u8], body: &[u8]) -> std::io::Result<u16> {
    let s = r.get_mut();
    s.write_all(head)?;
    s.write_all(body)?;
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(status)
}

struct Level {
    clients: usize,
    ok: usize,
    rejected: usize,
    /// Non-200 answers by status code.
    statuses: std::collections::BTreeMap<u16, usize>,
    wall: Duration,
    lat: Vec<Duration>,
}

fn run_level(addr: &str, clients: usize, o: &Opts, body: &Arc<(Vec<u8>, usize)>) -> Level {
    let issued = Arc::new(AtomicUsize::new(0));
    let stop_at = Instant::now() + Duration::from_secs(o.seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (addr, issued, body) = (addr.to_string(), Arc::clone(&issued), Arc::clone(body));
            let limit = o.requests;
            std::thread::spawn(move || {
                let stream = TcpStream::connect(&addr).expect("connect to infer serve");
                stream.set_nodelay(true).ok();
                let mut r = BufReader::new(stream);
                let head = format!(
                    "POST /v2/models/lite0/infer HTTP/1.1\r\nHost: {addr}\r\nContent-Type: \
                     application/octet-stream\r\nInference-Header-Content-Length: {}\r\n\
                     Content-Length: {}\r\n\r\n",
                    body.1,
                    body.0.len()
                );
                let (mut lat, mut rejected) = (Vec::new(), Vec::new());
                while Instant::now() < stop_at && issued.fetch_add(1, Ordering::Relaxed) < limit {
                    let t0 = Instant::now();
                    match call(&mut r, head.as_bytes(), &body.0) {
                        Ok(200) => lat.push(t0.elapsed()),
                        Ok(code) => rejected.push(code),
                        Err(e) => panic!("request failed: {e}"),
                    }
                }
                (lat, rejected)
            })
        })
        .collect();
    let mut level = Level {
        clients,
        ok: 0,
        rejected: 0,
        statuses: Default::default(),
        wall: Duration::ZERO,
        lat: Vec::new(),
    };
    for h in handles {
        let (lat, rejected) = h.join().expect("client thread");
        level.ok += lat.len();
        level.rejected += rejected.len();
        for code in rejected {
            *level.statuses.entry(code).or_default() += 1;
        }
        level.lat.extend(lat);
    }
    level.wall = started.elapsed();
    level.lat.sort();
    level
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

fn main() {
    let o = opts();
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let repo = std::env::temp_dir().join(format!("infer-serve-load-{}", std::process::id()));
    std::fs::create_dir_all(&repo).expect("temp repository");
    let model = root.join("models/efficientnet-lite0").canonicalize().expect("bundled model");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&model, repo.join("lite0")).expect("symlink the model");
    let mut server = Command::new(env!("CARGO_BIN_EXE_infer"))
        .args(["serve", "--model-repository"])
        .arg(&repo)
        .args(["--listen", "127.0.0.1:0", "--queue", "64"])
        .args(["--workers", &o.workers.to_string(), "--threads", &o.threads.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start infer serve");
    let mut err = BufReader::new(server.stderr.take().expect("stderr"));
    let mut addr = String::new();
    let mut line = String::new();
    while err.read_line(&mut line).unwrap_or(0) > 0 {
        eprint!("{line}");
        if let Some(rest) = line.strip_prefix("listening on http://") {
            addr = rest.split_whitespace().next().unwrap_or_default().to_string();
            break;
        }
        line.clear();
    }
    assert!(!addr.is_empty(), "infer serve did not start");
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
    });
    let body = Arc::new(request_body());
    // Warm-up: a few calls on one connection, not counted.
    let warm =
        Opts { requests: 5, seconds: 30, workers: o.workers, threads: o.threads, clients: vec![1] };
    run_level(&addr, 1, &warm, &body);
    println!(
        "| clients | calls ok | rejected (by status) | wall s | throughput calls/s | p50 ms | p99 ms |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for &c in &o.clients {
        let l = run_level(&addr, c, &o, &body);
        println!(
            "| {} | {} | {}{} | {:.1} | {:.1} | {:.1} | {:.1} |",
            l.clients,
            l.ok,
            l.rejected,
            if l.statuses.is_empty() {
                String::new()
            } else {
                let by: Vec<String> = l.statuses.iter().map(|(c, n)| format!("{c}: {n}")).collect();
                format!(" ({})", by.join(", "))
            },
            l.wall.as_secs_f64(),
            l.ok as f64 / l.wall.as_secs_f64(),
            pct(&l.lat, 0.50),
            pct(&l.lat, 0.99)
        );
    }
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let status = server.wait().expect("wait for infer serve");
    println!("infer serve exited with {status} after SIGTERM");
    let _ = std::fs::remove_dir_all(&repo);
}
