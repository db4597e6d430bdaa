//! The HTTP layer: KServe v2 routes, `/metrics`, error mapping to status codes, admission
//! before decoding, and the draining flag of a graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use inference_api::Error;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::adapter::{ModelEntry, Repository};
use super::protocol::{self, BadRequest};

/// Header carrying the JSON part's length when binary tensors follow (binary extension).
pub(crate) const HEADER_LEN: &str = "inference-header-content-length";
/// Per-request timeout in milliseconds (the request parameter `timeout` is in microseconds).
pub(crate) const TIMEOUT_MS: &str = "inference-timeout-ms";
/// Response header naming the engine that served the call.
pub(crate) const ENGINE: &str = "x-infer-engine";

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    repo: Arc<Repository>,
    draining: AtomicBool,
    /// Requests being decoded, run or encoded, over all models: bounds blocking threads and
    /// memory before a request reaches the runtime's per-model queue.
    permits: Arc<Semaphore>,
    max_body: usize,
}

impl AppState {
    /// State over a loaded repository; `max_body` bounds a request body in bytes.
    pub(crate) fn new(repo: Arc<Repository>, max_body: usize) -> Arc<AppState> {
        let n = repo.models().count().max(1) * repo.queue_capacity();
        Arc::new(AppState {
            repo,
            draining: AtomicBool::new(false),
            permits: Arc::new(Semaphore::new(n)),
            max_body,
        })
    }

    /// True once a shutdown has begun.
    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Requests admitted and not yet answered.
    pub(crate) fn in_flight(&self) -> usize {
        self.repo.models().map(ModelEntry::in_flight).sum()
    }
}

/// Serves `listener` until `shutdown` resolves, then stops accepting, answers 503 to new
/// requests on open connections, and returns once every in-flight call has been answered.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(Arc::clone(&state));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            state.draining.store(true, Ordering::Release);
        })
        .await
}

/// The routes.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata_v))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/versions/{version}/ready", get(model_ready_v))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer_v))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

/// An error answer: `{"error": message}` with a status and, for back-pressure, `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// HTTP status.
    pub(crate) status: StatusCode,
    /// What went wrong and what to do.
    pub(crate) message: String,
    /// Seconds for `Retry-After`.
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None }
    }

    fn retry(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs.max(1));
        self
    }
}

impl From<BadRequest> for ApiError {
    fn from(e: BadRequest) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, e.0)
    }
}

/// The status a runtime error is answered with.
pub(crate) fn from_runtime(e: &Error) -> ApiError {
    let msg = e.to_string();
    match e {
        Error::InvalidInput { .. } => ApiError::new(StatusCode::BAD_REQUEST, msg),
        Error::Overloaded { .. } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, msg).retry(1),
        Error::CircuitOpen { retry_after_ms, .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg).retry(retry_after_ms.div_ceil(1000))
        }
        Error::Unavailable(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg),
        Error::Timeout { .. } => ApiError::new(StatusCode::GATEWAY_TIMEOUT, msg),
        _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, msg),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, json_body(&json!({ "error": self.message }))).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

fn json_body(v: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn ok_json(v: Value) -> Response {
    json_body(&v)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint; this server speaks KServe v2 (/v2, /v2/health/{live,ready}, \
         /v2/models/NAME[/versions/V][/ready|/infer]) and /metrics",
    )
}

async fn server_metadata() -> Response {
    ok_json(json!({
        "name": "infer-rs",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

async fn live() -> Response {
    ok_json(json!({ "live": true }))
}

async fn server_ready(State(s): State<Arc<AppState>>) -> Response {
    let ready = !s.draining() && s.repo.models().all(ModelEntry::ready);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, ok_json(json!({ "ready": ready }))).into_response()
}

fn find<'a>(
    s: &'a AppState,
    name: &str,
    version: Option<&str>,
) -> Result<&'a ModelEntry, ApiError> {
    let Some(m) = s.repo.get(name) else {
        let known: Vec<&str> = s.repo.models().map(|m| m.name.as_str()).collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no model `{name}` in the repository (models: {})", known.join(", ")),
        ));
    };
    match version {
        Some(v) if v != m.version => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("model `{name}` has version `{}`, not `{v}`", m.version),
        )),
        _ => Ok(m),
    }
}

fn metadata(m: &ModelEntry) -> Response {
    ok_json(json!({
        "name": m.name,
        "versions": [m.version],
        "platform": m.platform,
        "inputs": m.schema.inputs.iter().map(protocol::tensor_metadata).collect::<Vec<_>>(),
        "outputs": m.schema.outputs.iter().map(protocol::tensor_metadata).collect::<Vec<_>>(),
    }))
}

async fn model_metadata(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    find(&s, &name, None).map(metadata)
}

async fn model_metadata_v(
    State(s): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    find(&s, &name, Some(&version)).map(metadata)
}

fn ready_answer(s: &AppState, name: &str, version: Option<&str>) -> Result<Response, ApiError> {
    let m = find(s, name, version)?;
    let ready = !s.draining() && m.ready();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok((status, ok_json(json!({ "name": m.name, "ready": ready }))).into_response())
}

async fn model_ready(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    ready_answer(&s, &name, None)
}

async fn model_ready_v(
    State(s): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    ready_answer(&s, &name, Some(&version))
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let text = s.repo.prometheus_text();
    let mut r = Response::new(Body::from(text));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn infer(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    infer_call(s, name, None, headers, body).await
}

async fn infer_v(
    State(s): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    infer_call(s, name, Some(version), headers, body).await
}

fn header_number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(name) else { return Ok(None) };
    v.to_str().ok().and_then(|t| t.trim().parse::<u64>().ok()).map(Some).ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("header {name} must be a whole number"))
    })
}

async fn infer_call(
    s: Arc<AppState>,
    name: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if s.draining() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down; send the request to another replica",
        )
        .retry(1));
    }
    let m = find(&s, &name, version.as_deref())?;
    if let Some(enc) = headers.get(header::CONTENT_ENCODING)
        && enc.as_bytes() != b"identity"
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {enc:?} is not supported; send the body uncompressed"),
        ));
    }
    let header_len = header_number(&headers, HEADER_LEN)?.map(|n| n as usize);
    let header_timeout = header_number(&headers, TIMEOUT_MS)?.map(Duration::from_millis);
    // Admission before the body is read: a full queue answers at once.
    let full = || {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "overloaded: queue for model `{name}` is full ({} waiting); retry later",
                s.repo.queue_capacity()
            ),
        )
        .retry(1)
    };
    if m.in_flight() >= s.repo.queue_capacity() {
        return Err(full());
    }
    let permit = Arc::clone(&s.permits).try_acquire_owned().map_err(|_| full())?;
    let bytes = axum::body::to_bytes(body, s.max_body).await.map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("could not read the request body (limit {} bytes): {e}", s.max_body),
        )
    })?;
    let state = Arc::clone(&s);
    let joined = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        run_call(&state, &name, &bytes, header_len, header_timeout)
    })
    .await;
    match joined {
        Ok(r) => r,
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the call's worker failed: {e}"),
        )),
    }
}

/// Decode, run and encode one call (on a blocking thread).
fn run_call(
    s: &AppState,
    name: &str,
    body: &[u8],
    header_len: Option<usize>,
    header_timeout: Option<Duration>,
) -> Result<Response, ApiError> {
    let m = find(s, name, None)?;
    let req = protocol::decode_request(body, header_len)?;
    if let Some(list) = &req.outputs {
        for (o, _) in list {
            if m.schema.output(o).is_none() {
                let known: Vec<&str> = m.schema.outputs.iter().map(|s| s.name.as_str()).collect();
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("model `{name}` has no output `{o}` (outputs: {})", known.join(", ")),
                ));
            }
        }
    }
    let timeout = match (header_timeout, req.timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let served = m.infer(req.inputs, timeout).map_err(|e| from_runtime(&e))?;
    let chosen: Vec<(String, inference_api::Tensor, bool)> = served
        .outputs
        .into_iter()
        .filter_map(|(n, t)| match &req.outputs {
            None => Some((n, t, req.binary_default)),
            Some(list) => list
                .iter()
                .find(|(o, _)| *o == n)
                .map(|(_, b)| (n, t, b.unwrap_or(req.binary_default))),
        })
        .collect();
    let enc = protocol::encode_response(&m.name, &m.version, req.id.as_deref(), &chosen);
    let mut r = Response::new(Body::from(enc.body));
    let h = r.headers_mut();
    match enc.header_len {
        Some(n) => {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            h.insert(HEADER_LEN, HeaderValue::from(n));
        }
        None => {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    if let Ok(v) = HeaderValue::from_str(&served.engine) {
        h.insert(ENGINE, v);
    }
    Ok(r)
}
