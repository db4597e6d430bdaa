//! Tests of the HTTP layer: a real server on a loopback port over the scripted test engine,
//! spoken to by a minimal HTTP/1.1 client written against the wire, not against our types.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use inference_api::{Engine, Tensor};
use runtime::testing::{self, BundleSpec, Fault, FaultyEngine};
use serde_json::{Value, json};

use super::adapter::{Repository, Settings};
use super::http::{self, AppState};

/// A server over one test model `tiny` (input `input` f32 [1,4], output `logits` f32 [1,10]).
struct Server {
    addr: SocketAddr,
    engine: FaultyEngine,
    state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    rt: tokio::runtime::Runtime,
}

impl Server {
    fn start(queue: usize) -> Server {
        let engine = FaultyEngine::new("fake");
        let bundle = testing::bundle(&BundleSpec::default()).unwrap();
        let settings = Settings { queue_capacity: queue, workers: 1, engine: None };
        let engines: Vec<Arc<dyn Engine>> = vec![Arc::new(engine.clone())];
        let repo =
            Repository::from_bundles(vec![("tiny".into(), bundle)], &settings, engines).unwrap();
        let state = AppState::new(Arc::new(repo), 1 << 20);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = rt.spawn(http::serve(listener, Arc::clone(&state), async move {
            let _ = rx.await;
        }));
        Server { addr, engine, state, stop: Some(tx), done: Some(done), rt }
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Reply {
        request(self.addr, method, path, headers, body)
    }

    fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    fn infer_json(&self, values: [f32; 4], extra: &[(&str, String)]) -> Reply {
        let body = json!({
            "id": "call-1",
            "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": values}],
        });
        self.request("POST", "/v2/models/tiny/infer", extra, body.to_string().as_bytes())
    }
}

/// What came back: status, headers (lower-case names), body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to the end.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let text = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = text.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = raw[split + 4..].to_vec();
    let reply = Reply { status, headers, body };
    if let Some(n) = reply.header("content-length") {
        assert_eq!(n.parse::<usize>().unwrap(), reply.body.len(), "body length");
    }
    reply
}

/// The runtime's own answer for the same input, without HTTP.
/// A fresh runtime over a healthy engine of the same kind gives the same answer.
fn direct(values: [f32; 4]) -> Vec<f32> {
    let engine = FaultyEngine::new("fake");
    let bundle = testing::bundle(&BundleSpec::default()).unwrap();
    let settings = Settings { queue_capacity: 4, workers: 1, engine: None };
    let repo = Repository::from_bundles(
        vec![("tiny".into(), bundle)],
        &settings,
        vec![Arc::new(engine) as Arc<dyn Engine>],
    )
    .unwrap();
    let inputs = vec![("input".to_string(), Tensor::from_f32([1, 4], values.to_vec()).unwrap())];
    let served = repo.get("tiny").unwrap().infer(inputs, None).unwrap();
    served.outputs[0].1.as_f32().unwrap().to_vec()
}

#[test]
fn health_metadata_and_unknown_paths() {
    let s = Server::start(4);
    let r = s.get("/v2/health/live");
    assert_eq!((r.status, r.json()["live"].clone()), (200, json!(true)));
    let r = s.get("/v2/health/ready");
    assert_eq!((r.status, r.json()["ready"].clone()), (200, json!(true)));
    let r = s.get("/v2");
    assert_eq!(r.json()["extensions"], json!(["binary_tensor_data"]));
    let r = s.get("/v2/models/tiny");
    assert_eq!(r.status, 200);
    let m = r.json();
    assert_eq!(m["inputs"], json!([{"name": "input", "datatype": "FP32", "shape": [1, 4]}]));
    assert_eq!(m["outputs"][0]["shape"], json!([1, 10]));
    assert_eq!(m["versions"], json!(["1"]));
    assert_eq!(s.get("/v2/models/tiny/ready").status, 200);
    assert_eq!(s.get("/v2/models/tiny/versions/1/ready").status, 200);

    let r = s.get("/v2/models/nope/ready");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].as_str().unwrap().contains("no model `nope`"), "{:?}", r.json());
    assert_eq!(s.get("/v2/models/tiny/versions/9").status, 404);
    let r = s.get("/v3/whatever");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
}

#[test]
fn json_and_binary_inference_match_the_runtime() {
    let s = Server::start(4);
    let x = [0.5, -1.0, 2.0, 0.25];
    let want = direct(x);

    let r = s.infer_json(x, &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-infer-engine"), Some("fake"));
    let v = r.json();
    assert_eq!(v["id"], "call-1");
    assert_eq!(v["model_name"], "tiny");
    let out = &v["outputs"][0];
    assert_eq!((out["name"].clone(), out["datatype"].clone()), (json!("logits"), json!("FP32")));
    assert_eq!(out["shape"], json!([1, 10]));
    let got: Vec<f32> =
        out["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(got, want, "JSON floats round-trip exactly");

    // Binary in, binary out (what tritonclient sends by default).
    let header = json!({
        "parameters": {"binary_data_output": true},
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                    "parameters": {"binary_data_size": 16}}],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    x.iter().for_each(|v| body.extend_from_slice(&v.to_le_bytes()));
    let r = s.request(
        "POST",
        "/v2/models/tiny/versions/1/infer",
        &[("Inference-Header-Content-Length", header.len().to_string())],
        &body,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let n: usize = r.header("inference-header-content-length").unwrap().parse().unwrap();
    let meta: Value = serde_json::from_slice(&r.body[..n]).unwrap();
    assert_eq!(meta["outputs"][0]["parameters"]["binary_data_size"], 40);
    let got: Vec<f32> =
        r.body[n..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(got, want);
}

#[test]
fn bad_requests_get_400_with_the_reason() {
    let s = Server::start(4);
    let body = json!({"inputs": [{"name": "input", "shape": [1, 5], "datatype": "FP32",
                                  "data": [1, 2, 3, 4, 5]}]});
    let r = s.request("POST", "/v2/models/tiny/infer", &[], body.to_string().as_bytes());
    assert_eq!(r.status, 400);
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(e.contains("`input`") && e.contains("[1, 4]") && e.contains("[1, 5]"), "{e}");

    let r = s.request("POST", "/v2/models/tiny/infer", &[], b"{not json");
    assert_eq!(r.status, 400);
    let body = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                  "data": [1, 2, 3, 4]}], "outputs": [{"name": "probs"}]});
    let r = s.request("POST", "/v2/models/tiny/infer", &[], body.to_string().as_bytes());
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("no output `probs`"));
    let r = s.infer_json([0.0; 4], &[("Content-Encoding", "gzip".into())]);
    assert_eq!(r.status, 415);
    let r = s.infer_json([0.0; 4], &[("Inference-Timeout-Ms", "soon".into())]);
    assert_eq!(r.status, 400);
}

#[test]
fn timeout_from_header_answers_504_within_the_deadline() {
    let s = Server::start(4);
    s.engine.push([Fault::Hang]);
    let t0 = std::time::Instant::now();
    let r = s.infer_json([0.0; 4], &[("Inference-Timeout-Ms", "100".into())]);
    let waited = t0.elapsed();
    s.engine.release_hangs();
    assert_eq!(r.status, 504, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["error"].as_str().unwrap().contains("deadline 100 ms"));
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
}

#[test]
fn full_queue_answers_429_with_retry_after_then_recovers() {
    let s = Server::start(1);
    s.engine.push([Fault::Hang]);
    let addr = s.addr;
    let first = std::thread::spawn(move || {
        let body = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                      "data": [1, 1, 1, 1]}]});
        request(addr, "POST", "/v2/models/tiny/infer", &[], body.to_string().as_bytes())
    });
    // Wait until the first call holds the only slot.
    let t0 = std::time::Instant::now();
    while s.state.in_flight() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "first call never admitted");
        std::thread::yield_now();
    }
    let r = s.infer_json([0.0; 4], &[]);
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.json()["error"].as_str().unwrap().contains("full"));
    // Release until the first call is answered (a release before its worker reached the
    // engine would be missed).
    let t0 = std::time::Instant::now();
    while !first.is_finished() {
        assert!(t0.elapsed() < Duration::from_secs(10), "first call never answered");
        s.engine.release_hangs();
        std::thread::yield_now();
    }
    assert_eq!(first.join().unwrap().status, 200);
    let r = s.infer_json([0.0; 4], &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn metrics_expose_the_runtime_series() {
    let s = Server::start(4);
    assert_eq!(s.infer_json([1.0; 4], &[]).status, 200);
    let r = s.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.body).unwrap();
    assert!(text.contains("infer_model_calls_total{model=\"tiny\"} 1"), "{text}");
    assert!(text.contains("infer_successes_total{model=\"tiny\",engine=\"fake\""), "{text}");
}

#[test]
fn shutdown_drains_in_flight_calls_and_refuses_new_ones() {
    let mut s = Server::start(4);
    s.engine.push([Fault::Latency(Duration::from_millis(400))]);
    let addr = s.addr;
    let slow = std::thread::spawn(move || {
        let body = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                      "data": [1, 2, 3, 4]}]});
        request(addr, "POST", "/v2/models/tiny/infer", &[], body.to_string().as_bytes())
    });
    let t0 = std::time::Instant::now();
    while s.state.in_flight() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "call never admitted");
        std::thread::yield_now();
    }
    let _ = s.stop.take().unwrap().send(());
    let done = s.done.take().unwrap();
    let served = s.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), done).await });
    // The server returned only after the in-flight call was answered.
    assert!(matches!(served, Ok(Ok(Ok(())))), "{served:?}");
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.state.in_flight(), 0);
    assert!(s.state.draining());
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed after the drain");
}

#[test]
fn runtime_errors_map_to_kserve_statuses() {
    use axum::http::StatusCode;
    use inference_api::Error;
    let cases = [
        (Error::invalid_input("x", "a", "b"), StatusCode::BAD_REQUEST, None),
        (
            Error::Overloaded { model: "m".into(), capacity: 1 },
            StatusCode::TOO_MANY_REQUESTS,
            Some(1),
        ),
        (
            Error::CircuitOpen { engine: "e".into(), retry_after_ms: 2500 },
            StatusCode::SERVICE_UNAVAILABLE,
            Some(3),
        ),
        (Error::Unavailable("gone".into()), StatusCode::SERVICE_UNAVAILABLE, None),
        (
            Error::Timeout { engine: "e".into(), deadline_ms: 5, elapsed_ms: 6 },
            StatusCode::GATEWAY_TIMEOUT,
            None,
        ),
        (Error::Runtime("boom".into()), StatusCode::INTERNAL_SERVER_ERROR, None),
    ];
    for (e, status, retry) in cases {
        let a = http::from_runtime(&e);
        assert_eq!((a.status, a.retry_after), (status, retry), "{e}");
        assert_eq!(a.message, e.to_string());
    }
}
