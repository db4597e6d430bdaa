//! Finding, opening and checking the bridge library at run time (dlopen through `libloading`).
//!
//! Where an app's bridge is looked for, in order: `COREML_BRIDGE_PATH`; next to the
//! executable; the app bundle's `Contents/Frameworks` (the executable being in
//! `Contents/MacOS`); the library this crate's build script built (macOS with Swift, see
//! `build.rs`); `target/coreml-bridge/` of this repository (`cargo xtask build-bridge`).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use libloading::Library;

use crate::types::{
    AbiVersionFn, CMB_ABI_VERSION, CompileModelFn, ComputeDevicesFn, ComputePlanFn, FeatureCountFn,
    FeatureDescribeFn, FnTable, ModelCancelFn, ModelFreeFn, ModelLoadFn, OsBuildFn, PredictFn,
    StringFreeFn,
};

/// Environment variable naming the bridge library (a file, or a folder holding
/// [`LIBRARY_FILE_NAME`]).
pub const BRIDGE_PATH_ENV: &str = "COREML_BRIDGE_PATH";

/// File name of the library `cargo xtask build-bridge` and the build script produce.
pub const LIBRARY_FILE_NAME: &str = "libCoreMLBridge.dylib";

/// The library this crate's build script built with SwiftPM (macOS with a Swift toolchain),
/// if it did. It lives in the build's target folder; a copy is put next to the executables.
pub const BUILT_BRIDGE: Option<&str> = option_env!("COREML_BRIDGE_BUILT");

/// Why the build script did not build the bridge (no Swift toolchain, a failed `swift build`,
/// `COREML_BRIDGE_SKIP_BUILD`), if it ran on a Mac and did not.
pub const BUILD_NOTE: Option<&str> = option_env!("COREML_BRIDGE_BUILD_NOTE");

/// What an app user does about a missing or broken bridge.
const APP_HELP: &str = "an app ships libCoreMLBridge.dylib next to its executable or in its \
                        bundle's Contents/Frameworks (or sets COREML_BRIDGE_PATH); building on a \
                        Mac with Xcode, cargo builds it (docs/using-in-your-app.md); in this \
                        repository `cargo xtask build-bridge` builds it too";

fn build_note() -> String {
    BUILD_NOTE.map(|n| format!(" (at build time: {n})")).unwrap_or_default()
}

/// Where [`Bridge::locate`] looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchPolicy {
    /// `COREML_BRIDGE_PATH`, next to the executable, the app bundle's Frameworks folder, the
    /// build script's output, then the xtask output folder. The default on Apple platforms.
    Default,
    /// Only `COREML_BRIDGE_PATH`. The default off Apple platforms, where only a test bridge
    /// can exist.
    EnvOnly,
    /// Exactly this path (a file, or a folder holding [`LIBRARY_FILE_NAME`]).
    Explicit(PathBuf),
}

impl SearchPolicy {
    /// [`SearchPolicy::Default`] on macOS and iOS, [`SearchPolicy::EnvOnly`] elsewhere.
    pub fn for_this_platform() -> SearchPolicy {
        if cfg!(any(target_os = "macos", target_os = "ios")) {
            SearchPolicy::Default
        } else {
            SearchPolicy::EnvOnly
        }
    }
}

/// Why the bridge library could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// No candidate path exists.
    NotFound {
        /// Every path looked at, in order.
        searched: Vec<PathBuf>,
    },
    /// The file exists but the dynamic loader refused it.
    Open {
        /// The library path.
        path: PathBuf,
        /// What the loader said.
        message: String,
    },
    /// A required entry point is missing.
    MissingSymbol {
        /// The library path.
        path: PathBuf,
        /// The missing symbol.
        symbol: String,
    },
    /// The library implements another version of the contract.
    AbiMismatch {
        /// The library path.
        path: PathBuf,
        /// What the library reports.
        found: u32,
        /// What this crate mirrors.
        expected: u32,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotFound { searched } if searched.is_empty() => write!(
                f,
                "no Core ML bridge library: set {BRIDGE_PATH_ENV} to its path \
                 (on a Mac, build it with `cargo xtask build-bridge`){}",
                build_note()
            ),
            LoadError::NotFound { searched } => {
                let list: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "Core ML bridge library not found (looked in: {}){}; {APP_HELP}",
                    list.join(", "),
                    build_note()
                )
            }
            LoadError::Open { path, message } => write!(
                f,
                "cannot open the Core ML bridge {}: {message}; replace it with one built for \
                 this Mac and this version ({APP_HELP})",
                path.display()
            ),
            LoadError::MissingSymbol { path, symbol } => write!(
                f,
                "the Core ML bridge {} lacks the entry point `{symbol}`; it is incomplete or \
                 from another version: replace it ({APP_HELP})",
                path.display()
            ),
            LoadError::AbiMismatch { path, found, expected } => write!(
                f,
                "the Core ML bridge {} implements ABI version {found} but this build expects \
                 {expected}: replace it with the one built with this version ({APP_HELP})",
                path.display()
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// The folder `cargo xtask build-bridge` copies the library into: `target/coreml-bridge/`
/// under the workspace this crate was built from.
pub fn xtask_output_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("target").join("coreml-bridge")
}

fn library_in(path: PathBuf) -> PathBuf {
    if path.is_dir() { path.join(LIBRARY_FILE_NAME) } else { path }
}

/// The paths [`SearchPolicy`] looks at, in order, given the value of `COREML_BRIDGE_PATH` and
/// the executable's path. Pure, so the order is testable.
pub fn candidate_paths(
    policy: &SearchPolicy,
    env_value: Option<OsString>,
    exe: Option<PathBuf>,
) -> Vec<PathBuf> {
    let env = env_value.filter(|v| !v.is_empty()).map(|v| library_in(PathBuf::from(v)));
    match policy {
        SearchPolicy::Explicit(p) => vec![library_in(p.clone())],
        SearchPolicy::EnvOnly => env.into_iter().collect(),
        SearchPolicy::Default => {
            let mut out: Vec<PathBuf> = env.into_iter().collect();
            if let Some(dir) = exe.as_deref().and_then(Path::parent) {
                out.push(dir.join(LIBRARY_FILE_NAME));
                // An app bundle: the executable in Contents/MacOS, libraries in
                // Contents/Frameworks.
                if dir.file_name().is_some_and(|n| n == "MacOS")
                    && let Some(contents) = dir.parent()
                {
                    out.push(contents.join("Frameworks").join(LIBRARY_FILE_NAME));
                }
            }
            if let Some(built) = BUILT_BRIDGE {
                out.push(PathBuf::from(built));
            }
            out.push(xtask_output_dir().join(LIBRARY_FILE_NAME));
            out
        }
    }
}

/// An opened bridge library with every entry point resolved and its ABI version checked.
///
/// The function pointers in [`Bridge::fns`] are valid only while this value lives; keep the
/// `Bridge` (usually in an `Arc`) alive as long as any handle it created.
pub struct Bridge {
    fns: FnTable,
    path: PathBuf,
    abi_version: u32,
    // Dropped last (fields drop in declaration order): unloading must come after every use.
    _library: Library,
}

impl fmt::Debug for Bridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bridge")
            .field("path", &self.path)
            .field("abi_version", &self.abi_version)
            .finish_non_exhaustive()
    }
}

/// Resolves one symbol as a plain function pointer of type `T`.
///
/// # Safety
/// `T` must be the exact `extern "C"` function-pointer type the header declares for `name`.
unsafe fn resolve<T: Copy>(lib: &Library, path: &Path, name: &str) -> Result<T, LoadError> {
    // SAFETY: the caller guarantees `T` matches the symbol's C signature; the pointer is
    // copied out and used only while `lib` is alive (the Bridge owns both).
    let symbol = unsafe { lib.get::<T>(name.as_bytes()) };
    match symbol {
        Ok(s) => Ok(*s),
        Err(_) => Err(LoadError::MissingSymbol { path: path.to_path_buf(), symbol: name.into() }),
    }
}

impl Bridge {
    /// Opens the library at `path` (a file, or a folder holding [`LIBRARY_FILE_NAME`]),
    /// resolves every entry point and checks `cmb_abi_version`.
    pub fn open(path: &Path) -> Result<Bridge, LoadError> {
        let path = library_in(path.to_path_buf());
        // SAFETY: loading a library runs its initialisers. The bridge library is ours (Swift
        // package or the test fake); its initialisers only set up the Swift/ObjC runtimes.
        let lib = unsafe { Library::new(&path) }
            .map_err(|e| LoadError::Open { path: path.clone(), message: e.to_string() })?;
        // SAFETY: for every `resolve` below, the type alias is the header's signature for the
        // named symbol, mirrored in `types.rs`.
        let fns = unsafe {
            FnTable {
                abi_version: resolve::<AbiVersionFn>(&lib, &path, "cmb_abi_version")?,
                os_build: resolve::<OsBuildFn>(&lib, &path, "cmb_os_build")?,
                compute_devices: resolve::<ComputeDevicesFn>(&lib, &path, "cmb_compute_devices")?,
                compile_model: resolve::<CompileModelFn>(&lib, &path, "cmb_compile_model")?,
                model_load: resolve::<ModelLoadFn>(&lib, &path, "cmb_model_load")?,
                model_free: resolve::<ModelFreeFn>(&lib, &path, "cmb_model_free")?,
                feature_count: resolve::<FeatureCountFn>(&lib, &path, "cmb_model_feature_count")?,
                feature_describe: resolve::<FeatureDescribeFn>(
                    &lib,
                    &path,
                    "cmb_model_feature_describe",
                )?,
                compute_plan: resolve::<ComputePlanFn>(&lib, &path, "cmb_model_compute_plan")?,
                predict: resolve::<PredictFn>(&lib, &path, "cmb_model_predict")?,
                model_cancel: resolve::<ModelCancelFn>(&lib, &path, "cmb_model_cancel")?,
                string_free: resolve::<StringFreeFn>(&lib, &path, "cmb_string_free")?,
            }
        };
        // SAFETY: `cmb_abi_version` takes nothing, never fails and has no preconditions.
        let found = unsafe { (fns.abi_version)() };
        if found != CMB_ABI_VERSION {
            return Err(LoadError::AbiMismatch { path, found, expected: CMB_ABI_VERSION });
        }
        Ok(Bridge { fns, path, abi_version: found, _library: lib })
    }

    /// Looks for the library as `policy` says and opens the first candidate that exists.
    /// A candidate that exists but fails (open, symbol, ABI) is reported, not skipped.
    pub fn locate(policy: &SearchPolicy) -> Result<Bridge, LoadError> {
        let candidates = candidate_paths(
            policy,
            std::env::var_os(BRIDGE_PATH_ENV),
            std::env::current_exe().ok(),
        );
        match candidates.iter().find(|p| p.exists()) {
            Some(p) => Bridge::open(p),
            None => Err(LoadError::NotFound { searched: candidates }),
        }
    }

    /// The resolved entry points. Valid while `self` lives.
    pub fn fns(&self) -> &FnTable {
        &self.fns
    }

    /// Path the library was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// ABI version the library reported (equal to [`CMB_ABI_VERSION`]).
    pub fn abi_version(&self) -> u32 {
        self.abi_version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_bundle_looks_in_its_frameworks_folder() {
        let exe = PathBuf::from("/Applications/My.app/Contents/MacOS/My");
        let got = candidate_paths(&SearchPolicy::Default, None, Some(exe));
        assert_eq!(
            got[0],
            PathBuf::from("/Applications/My.app/Contents/MacOS/libCoreMLBridge.dylib")
        );
        assert_eq!(
            got[1],
            PathBuf::from("/Applications/My.app/Contents/Frameworks/libCoreMLBridge.dylib")
        );
    }

    #[test]
    fn not_found_tells_an_app_what_to_ship() {
        let nf = LoadError::NotFound { searched: vec!["/a".into()] }.to_string();
        for want in ["next to its executable", "Contents/Frameworks", BRIDGE_PATH_ENV] {
            assert!(nf.contains(want), "{want}: {nf}");
        }
    }

    #[test]
    fn search_order_is_env_then_exe_then_build_then_xtask() {
        let exe = PathBuf::from("/opt/app/bin/infer");
        let got = candidate_paths(
            &SearchPolicy::Default,
            Some("/custom/libX.dylib".into()),
            Some(exe.clone()),
        );
        assert_eq!(got[0], PathBuf::from("/custom/libX.dylib"));
        assert_eq!(got[1], PathBuf::from("/opt/app/bin").join(LIBRARY_FILE_NAME));
        let mut i = 2;
        if let Some(built) = BUILT_BRIDGE {
            assert_eq!(got[i], PathBuf::from(built));
            i += 1;
        }
        assert!(got[i].ends_with(Path::new("target/coreml-bridge").join(LIBRARY_FILE_NAME)));
        assert_eq!(got.len(), i + 1);

        let only_env = candidate_paths(&SearchPolicy::EnvOnly, None, Some(exe));
        assert!(only_env.is_empty());
        let explicit =
            candidate_paths(&SearchPolicy::Explicit("/x/lib.so".into()), Some("/y".into()), None);
        assert_eq!(explicit, vec![PathBuf::from("/x/lib.so")]);
    }

    #[test]
    fn missing_library_names_the_fix() {
        let err = Bridge::open(Path::new("/nonexistent/libCoreMLBridge.dylib")).unwrap_err();
        assert!(matches!(err, LoadError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("cargo xtask build-bridge"), "{err}");
        let nf = LoadError::NotFound { searched: vec!["/a".into()] }.to_string();
        assert!(nf.contains("/a") && nf.contains("cargo xtask build-bridge"), "{nf}");
    }
}
