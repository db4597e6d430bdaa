//! `CoreMlEngine`: finding the bridge, the availability policy, probe and doctor data, and
//! preparing models (compile cache, one load, describe, instance pool).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coreml_sys::{BRIDGE_PATH_ENV, Bridge, CMB_IO_INPUT, CMB_IO_OUTPUT, LoadError, SearchPolicy};
use inference_api::{
    ArtifactFormat, CapabilityReport, DType, DeviceClass, Engine, Error, IoSchema, ModelArtifact,
    PrepareOptions, PreparedModel, Result,
};

use crate::cache::{CacheStats, CompileCache, content_hash};
use crate::ffi::{self, ModelHandle};
use crate::model::{CoreMlModel, Plan};
use crate::pool::{Factory, Pool};
use crate::schema::{Feature, Side, feature_spec};
use crate::watch::Watcher;

/// How the engine finds the bridge, caches compiled models and sizes its instance pools.
///
/// There is no deadline here: the call's [`inference_api::RunContext`] carries it, and the
/// runtime owns timeouts, quarantine and rebuilds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreMlConfig {
    /// Where to look for the bridge library. Default: `COREML_BRIDGE_PATH`, next to the
    /// executable and the xtask output folder on Apple platforms; only `COREML_BRIDGE_PATH`
    /// elsewhere.
    pub bridge: SearchPolicy,
    /// Compile-cache folder; `None` uses [`CoreMlConfig::default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// Most instances per prepared model (each serves one prediction at a time). Prepare
    /// loads one; another is loaded only when a call finds every instance busy.
    pub instances: usize,
    /// Age after which a staging folder in the cache counts as half-written and is swept.
    pub stale_after: Duration,
    /// Longest wait for Core ML to build a model's compute plan (passed to the bridge), read
    /// the first time placement is asked for; past it the placement stays empty rather than
    /// a guess, and a later call tries again.
    pub plan_timeout: Duration,
}

impl Default for CoreMlConfig {
    fn default() -> Self {
        CoreMlConfig {
            bridge: SearchPolicy::for_this_platform(),
            cache_dir: None,
            instances: 2,
            stale_after: Duration::from_secs(3600),
            plan_timeout: Duration::from_secs(10),
        }
    }
}

impl CoreMlConfig {
    /// `$XDG_CACHE_HOME/infer-rs/coreml`, else `~/Library/Caches/infer-rs/coreml` on Apple
    /// platforms and `~/.cache/infer-rs/coreml` elsewhere, else a folder in the temp dir.
    pub fn default_cache_dir() -> PathBuf {
        let sub = PathBuf::from("infer-rs").join("coreml");
        if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(x).join(sub);
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            let base = if cfg!(any(target_os = "macos", target_os = "ios")) {
                PathBuf::from(home).join("Library").join("Caches")
            } else {
                PathBuf::from(home).join(".cache")
            };
            return base.join(sub);
        }
        std::env::temp_dir().join("infer-rs-coreml")
    }
}

/// Facts about the loaded bridge library, for `infer doctor` and probe details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeInfo {
    /// Where the library was loaded from.
    pub path: PathBuf,
    /// ABI version it implements.
    pub abi_version: u32,
    /// OS name, version and build it reports; `None` if it could not say.
    pub os_build: Option<String>,
    /// Compute devices it reports (`cpu`, `gpu`, `neural_engine`).
    pub compute_devices: Vec<String>,
}

/// Everything `infer doctor` prints about Core ML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorReport {
    /// OS and architecture of this build, e.g. `macos aarch64`.
    pub platform: String,
    /// Whether the engine can prepare models.
    pub available: bool,
    /// Why not, and what to do.
    pub reason: Option<String>,
    /// The bridge, when one was loaded.
    pub bridge: Option<BridgeInfo>,
    /// Paths the loader looks at, in order.
    pub searched: Vec<PathBuf>,
    /// The compile-cache folder.
    pub cache_dir: PathBuf,
    /// Bytes in the compile cache.
    pub cache_size_bytes: u64,
    /// Cache counters since the engine started.
    pub cache: CacheStats,
}

struct Ready {
    bridge: Arc<Bridge>,
    info: BridgeInfo,
    cache: std::result::Result<CompileCache, Error>,
}

/// The Core ML engine. Construct once and share; cheap to probe.
pub struct CoreMlEngine {
    config: CoreMlConfig,
    state: std::result::Result<Ready, String>,
    /// Cancels predictions whose call is over; shared with every model prepared here.
    watcher: Arc<Watcher>,
}

impl std::fmt::Debug for CoreMlEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreMlEngine")
            .field("config", &self.config)
            .field("available", &self.state.is_ok())
            .finish_non_exhaustive()
    }
}

fn platform() -> String {
    format!("{} {}", std::env::consts::OS, std::env::consts::ARCH)
}

fn unavailable_reason(policy: &SearchPolicy, err: &LoadError) -> String {
    let apple = cfg!(any(target_os = "macos", target_os = "ios"));
    match err {
        LoadError::NotFound { searched }
            if !apple && *policy == SearchPolicy::EnvOnly && searched.is_empty() =>
        {
            format!(
                "Core ML runs only on Apple platforms and this is {}; no bridge library was given \
             ({BRIDGE_PATH_ENV} is unset). On a Mac, build it with `cargo xtask build-bridge`",
                platform()
            )
        }
        LoadError::NotFound { .. } if !apple => format!(
            "{err}; Core ML runs only on Apple platforms and this is {}, so only a test bridge \
             can load here",
            platform()
        ),
        other => other.to_string(),
    }
}

impl Default for CoreMlEngine {
    fn default() -> Self {
        CoreMlEngine::new()
    }
}

impl CoreMlEngine {
    /// An engine with the default configuration. Never fails: when the bridge is missing the
    /// engine reports itself unavailable.
    pub fn new() -> CoreMlEngine {
        CoreMlEngine::with_config(CoreMlConfig::default())
    }

    /// An engine with `config`. Loads the bridge and sweeps the compile cache.
    pub fn with_config(config: CoreMlConfig) -> CoreMlEngine {
        let state = match Bridge::locate(&config.bridge) {
            Err(e) => Err(unavailable_reason(&config.bridge, &e)),
            Ok(bridge) => {
                let bridge = Arc::new(bridge);
                let os_build = ffi::os_build(&bridge).ok();
                let info = BridgeInfo {
                    path: bridge.path().to_path_buf(),
                    abi_version: bridge.abi_version(),
                    os_build: os_build.clone(),
                    compute_devices: ffi::compute_devices(&bridge).unwrap_or_default(),
                };
                let dir = config.cache_dir.clone().unwrap_or_else(CoreMlConfig::default_cache_dir);
                let cache = CompileCache::open(
                    dir,
                    os_build.as_deref().unwrap_or("unknown-os"),
                    bridge.abi_version(),
                    config.stale_after,
                );
                Ok(Ready { bridge, info, cache })
            }
        };
        CoreMlEngine { config, state, watcher: Arc::default() }
    }

    /// The loaded bridge's facts, or why there is none.
    pub fn bridge_info(&self) -> std::result::Result<&BridgeInfo, &str> {
        self.state.as_ref().map(|r| &r.info).map_err(String::as_str)
    }

    /// The compile cache, when the bridge loaded and the folder is usable.
    pub fn cache(&self) -> Option<&CompileCache> {
        self.state.as_ref().ok().and_then(|r| r.cache.as_ref().ok())
    }

    /// Everything `infer doctor` shows for Core ML.
    pub fn doctor(&self) -> DoctorReport {
        let searched = coreml_sys::candidate_paths(
            &self.config.bridge,
            std::env::var_os(BRIDGE_PATH_ENV),
            std::env::current_exe().ok(),
        );
        let cache = self.cache();
        DoctorReport {
            platform: platform(),
            available: self.state.is_ok(),
            reason: self.state.as_ref().err().cloned(),
            bridge: self.state.as_ref().ok().map(|r| r.info.clone()),
            searched,
            cache_dir: cache.map(|c| c.dir().to_path_buf()).unwrap_or_else(|| {
                self.config.cache_dir.clone().unwrap_or_else(CoreMlConfig::default_cache_dir)
            }),
            cache_size_bytes: cache.map(CompileCache::size_bytes).unwrap_or(0),
            cache: cache.map(CompileCache::stats).unwrap_or_default(),
        }
    }

    fn ready(&self) -> Result<&Ready> {
        self.state.as_ref().map_err(|why| Error::Unavailable(why.clone()))
    }

    /// Like [`Engine::prepare`], returning the concrete model (for its counters and notes).
    pub fn prepare_model(
        &self,
        artifact: &ModelArtifact,
        options: &PrepareOptions,
    ) -> Result<Arc<CoreMlModel>> {
        let ready = self.ready()?;
        let units = options.compute_units;
        let compiled = match artifact.format {
            ArtifactFormat::MlModelc => artifact.path.clone(),
            ArtifactFormat::MlPackage | ArtifactFormat::MlModel => {
                let cache = ready.cache.as_ref().map_err(Clone::clone)?;
                let hash = match &artifact.sha256 {
                    Some(h) => h.clone(),
                    None => content_hash(&artifact.path)?,
                };
                cache.get_or_compile(&hash, |staging| {
                    ffi::compile(&ready.bridge, &artifact.path, staging)
                })?
            }
            other => {
                return Err(Error::Unavailable(format!(
                    "the Core ML engine runs .mlpackage, .mlmodel and .mlmodelc models; `{}` is \
                     {other}, serve it with the CPU engine",
                    artifact.name
                )));
            }
        };
        let cache_key = format!("{}:{}:{units}", crate::ENGINE_NAME, compiled.display());
        // The one load at prepare; more instances only when calls overlap (Pool::checkout).
        let first = ModelHandle::load(&ready.bridge, &compiled, units)?;
        let described = describe(&first, &artifact.name)?;
        let hints = Arc::new(described.size_hints);
        let first = first.with_size_hints(hints.clone());
        let bridge = ready.bridge.clone();
        let path = compiled.clone();
        let factory: Factory = Box::new(move || {
            ModelHandle::load(&bridge, &path, units).map(|h| h.with_size_hints(hints.clone()))
        });
        let pool = Pool::new(&artifact.name, first, factory, self.config.instances);
        Ok(Arc::new(CoreMlModel {
            name: artifact.name.clone(),
            schema: described.schema,
            pool,
            watcher: Arc::clone(&self.watcher),
            cancel_unsupported: Arc::default(),
            cache_key,
            units,
            plan_timeout: self.config.plan_timeout,
            plan: Mutex::new(Plan::Unknown(None)),
            notes: described.notes,
        }))
    }
}

/// A model's schema as the bridge describes it, with the first-buffer size of each output
/// and notes on what was left out.
struct Described {
    schema: IoSchema,
    size_hints: HashMap<String, usize>,
    notes: Vec<String>,
}

fn describe(handle: &ModelHandle, model: &str) -> Result<Described> {
    let mut out =
        Described { schema: IoSchema::default(), size_hints: HashMap::new(), notes: Vec::new() };
    let unreadable = |side: &str, e: Error| {
        Error::Unavailable(format!(
            "the Core ML bridge cannot describe the {side} of model `{model}` ({e}); a feature \
             name longer than {} bytes is one cause. Serve it with the CPU engine",
            coreml_sys::CMB_NAME_CAPACITY - 1
        ))
    };
    let inputs = handle.describe(CMB_IO_INPUT).map_err(|e| unreadable("inputs", e))?;
    for desc in inputs {
        match feature_spec(&desc, Side::Input)? {
            Feature::Tensor(spec, _) => out.schema.inputs.push(spec),
            Feature::Unsupported(name, why) => {
                return Err(Error::Unavailable(format!(
                    "model `{model}` takes input `{name}` with {why}, which the Core ML bridge \
                     cannot pass (it passes f32/f16/i32/float64 multi-arrays and 8-bit RGB or \
                     gray images); serve it with the CPU engine"
                )));
            }
        }
    }
    // Outputs the bridge cannot deliver are left out of the schema; the model stays usable.
    let outputs = handle.describe(CMB_IO_OUTPUT).map_err(|e| unreadable("outputs", e))?;
    for desc in outputs {
        match feature_spec(&desc, Side::Output)? {
            Feature::Tensor(spec, default) => {
                out.size_hints.insert(spec.name.clone(), default);
                out.schema.outputs.push(spec);
            }
            Feature::Unsupported(name, why) => out.notes.push(format!(
                "output `{name}` is left out of the schema: {why}, which the Core ML bridge \
                 cannot deliver"
            )),
        }
    }
    if out.schema.outputs.is_empty() {
        return Err(Error::Unavailable(format!(
            "model `{model}` has no output the Core ML bridge can deliver ({}); serve it with \
             the CPU engine",
            out.notes.join("; ")
        )));
    }
    Ok(out)
}

impl Engine for CoreMlEngine {
    fn name(&self) -> &str {
        crate::ENGINE_NAME
    }

    fn id(&self) -> inference_api::EngineId {
        inference_api::EngineId::COREML
    }

    fn probe(&self) -> CapabilityReport {
        let doctor = self.doctor();
        let mut details = vec![("platform".to_string(), doctor.platform.clone())];
        if let Some(info) = &doctor.bridge {
            details.push(("bridge_path".into(), info.path.display().to_string()));
            details.push(("abi_version".into(), info.abi_version.to_string()));
            if let Some(os) = &info.os_build {
                details.push(("os_build".into(), os.clone()));
            }
        }
        details.push(("cache_dir".into(), doctor.cache_dir.display().to_string()));
        let mut r = CapabilityReport::new(crate::ENGINE_NAME, DeviceClass::Mixed);
        r.available = doctor.available;
        r.reason = doctor.reason;
        r.os = doctor.platform;
        r.dtypes = vec![DType::F32, DType::F16, DType::I32, DType::U8];
        r.formats =
            vec![ArtifactFormat::MlPackage, ArtifactFormat::MlModel, ArtifactFormat::MlModelc];
        r.compute_devices = doctor.bridge.map(|b| b.compute_devices).unwrap_or_default();
        r.details = details;
        r
    }

    fn prepare(
        &self,
        artifact: &ModelArtifact,
        options: &PrepareOptions,
    ) -> Result<Arc<dyn PreparedModel>> {
        let model: Arc<dyn PreparedModel> = self.prepare_model(artifact, options)?;
        Ok(model)
    }
}
