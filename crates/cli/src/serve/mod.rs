//! `infer serve`: a KServe v2 (Open Inference Protocol) REST server over the runtime, with
//! `/metrics` for Prometheus and a graceful shutdown that drains in-flight calls.
//!
//! Modules: [`adapter`] (the only code that touches the runtime API), [`protocol`] (the wire
//! format), [`http`] (routes, status codes, admission, draining).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub(crate) mod adapter;
pub(crate) mod http;
pub(crate) mod protocol;
#[cfg(test)]
mod tests;

/// Arguments of `infer serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Model repository: one sub-folder per model (a model folder with manifest.toml, a
    /// .mlpackage, or a folder holding one .mlpackage / .mlmodel). The sub-folder's name is
    /// the model's name in URLs.
    #[arg(long)]
    model_repository: PathBuf,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Calls per model in flight (running or queued) before answering 429 with Retry-After.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    queue: u64,
    /// Worker threads per (model, engine): calls computed at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    workers: u64,
    /// Serve only from this engine (`candle-cpu`, `coreml`).
    #[arg(long)]
    engine: Option<String>,
    /// CPU engine threads per call (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    max_body_mib: u64,
    /// On SIGINT/SIGTERM, how long to wait for in-flight calls before exiting anyway.
    #[arg(long, default_value_t = 30)]
    drain_seconds: u64,
}

pub(crate) fn main(args: Args) -> Result<()> {
    let settings = adapter::Settings {
        queue_capacity: args.queue as usize,
        workers: args.workers as usize,
        engine: args.engine.clone(),
    };
    let engines = crate::common::engines(args.threads.map(|t| t as usize));
    let repo = adapter::Repository::load(&args.model_repository, &settings, engines)?;
    for m in repo.models() {
        eprintln!("model {} (version {}): {}", m.name, m.version, m.load_line());
    }
    let state = http::AppState::new(Arc::new(repo), (args.max_body_mib as usize) << 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("infer-serve")
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(run(args.listen, state, Duration::from_secs(args.drain_seconds)));
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn run(addr: SocketAddr, state: Arc<http::AppState>, drain: Duration) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} (is another server using the port?)"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    eprintln!("listening on http://{local} (KServe v2 REST; /metrics)");
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let mut server = tokio::spawn(http::serve(listener, Arc::clone(&state), async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }));
    let signal = tokio::select! {
        r = &mut server => {
            return match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e).context("serving"),
                Err(e) => bail!("the server task failed: {e}"),
            };
        }
        s = shutdown_signal() => s,
    };
    let pending = state.in_flight();
    eprintln!("{signal}: no longer accepting; draining {pending} call(s) in flight");
    let started = Instant::now();
    let _ = tx.send(true);
    match tokio::time::timeout(drain, &mut server).await {
        Ok(Ok(Ok(()))) => {
            eprintln!("drained in {:.0} ms; bye", started.elapsed().as_secs_f64() * 1e3);
            Ok(())
        }
        Ok(Ok(Err(e))) => Err(e).context("serving"),
        Ok(Err(e)) => bail!("the server task failed: {e}"),
        Err(_) => bail!(
            "{} call(s) still in flight after {} s of draining; exiting anyway (raise \
             --drain-seconds to wait longer)",
            state.in_flight(),
            drain.as_secs()
        ),
    }
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM; names the signal.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
