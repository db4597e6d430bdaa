//! The compile cache: compiled `.mlmodelc` bundles installed by atomic rename, keyed by content
//! hash + OS build + bridge ABI version (not compute units: a compiled model does not depend on
//! them); every entry carries a completeness marker with the hash of its files, checked on each
//! use, so a damaged entry is rebuilt instead of reused; stale and half-written entries swept.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use inference_api::{Error, Result};
use sha2::{Digest, Sha256};

const STAGING_PREFIX: &str = ".staging-";
/// The entry layout of ABI 1 builds (`<key>.mlmodelc`, no marker); swept when seen.
const LEGACY_SUFFIX: &str = ".mlmodelc";
/// The compiled bundle inside an entry folder.
const BUNDLE: &str = "model.mlmodelc";
/// The completeness marker inside an entry folder: `sha256 <hex of the bundle>`.
const MARKER: &str = "complete";

/// Counters of one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that compiled.
    pub misses: u64,
    /// Entries removed by sweeps (stale versions and half-written staging folders).
    pub swept: u64,
    /// Entries found damaged (no marker, or files that no longer match its hash) and rebuilt.
    pub corrupt: u64,
}

/// A folder of compiled models. Safe to share between threads and processes: entries appear
/// only by atomic rename of a fully written staging folder on the same filesystem.
#[derive(Debug)]
pub struct CompileCache {
    dir: PathBuf,
    os_build: String,
    abi_version: u32,
    stale_after: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    swept: AtomicU64,
    corrupt: AtomicU64,
    staging_seq: AtomicU64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CompileCache {
    /// Opens (creating) the cache folder and sweeps it. `stale_after` is how old a staging
    /// folder must be before it is taken for half-written (another process may be writing a
    /// younger one).
    pub fn open(
        dir: impl Into<PathBuf>,
        os_build: &str,
        abi_version: u32,
        stale_after: Duration,
    ) -> Result<CompileCache> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, &e))?;
        #[cfg(unix)]
        ensure_private(&dir)?;
        let cache = CompileCache {
            dir,
            os_build: os_build.to_string(),
            abi_version,
            stale_after,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            swept: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            staging_seq: AtomicU64::new(0),
        };
        cache.sweep()?;
        Ok(cache)
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Name prefix shared by every entry valid for this OS build and ABI version.
    fn generation_prefix(&self) -> String {
        let os = hex(&Sha256::digest(self.os_build.as_bytes())[..4]);
        format!("v{}-{os}-", self.abi_version)
    }

    /// The entry folder name for a model's content hash. Compute units are not part of it:
    /// one compiled model serves every compute-units setting.
    pub fn entry_name(&self, content_hash: &str) -> String {
        let mut h = Sha256::new();
        for part in [content_hash, &self.os_build, &self.abi_version.to_string()] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        format!("{}{}", self.generation_prefix(), &hex(&h.finalize())[..32])
    }

    /// Removes staging folders older than `stale_after` and entries from another OS build or
    /// ABI version. Returns how many were removed.
    pub fn sweep(&self) -> Result<u64> {
        let prefix = self.generation_prefix();
        let listing = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, &e))?;
        let mut removed = 0;
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let doomed = if name.starts_with(STAGING_PREFIX) {
                let age = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .unwrap_or(Duration::MAX);
                age >= self.stale_after
            } else {
                is_entry_name(&name)
                    && (!name.starts_with(&prefix) || name.ends_with(LEGACY_SUFFIX))
            };
            if doomed && remove_any(&path).is_ok() {
                removed += 1;
            }
        }
        self.swept.fetch_add(removed, Ordering::Relaxed);
        Ok(removed)
    }

    /// The compiled bundle for `content_hash`: from the cache when its entry is complete and
    /// its files still match the hash recorded at install, else compiled by `compile` (given
    /// an empty staging folder, returning the bundle it wrote inside it), marked and installed
    /// by atomic rename. A damaged entry is moved aside, removed, counted and rebuilt.
    pub fn get_or_compile(
        &self,
        content_hash: &str,
        compile: impl FnOnce(&Path) -> Result<PathBuf>,
    ) -> Result<PathBuf> {
        let entry = self.dir.join(self.entry_name(content_hash));
        match verify(&entry) {
            Verdict::Good => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(entry.join(BUNDLE));
            }
            Verdict::Damaged => {
                self.corrupt.fetch_add(1, Ordering::Relaxed);
                self.discard(&entry);
            }
            Verdict::Missing => {}
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let staging = self.new_staging()?;
        let result =
            compile(&staging).and_then(|compiled| self.install(&staging, &compiled, &entry));
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    /// A fresh, empty staging folder inside the cache (same filesystem as the entries).
    fn new_staging(&self) -> Result<PathBuf> {
        let seq = self.staging_seq.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let staging =
            self.dir.join(format!("{STAGING_PREFIX}{}-{seq}-{nanos}", std::process::id()));
        std::fs::create_dir(&staging).map_err(|e| Error::io(&staging, &e))?;
        Ok(staging)
    }

    /// Builds the entry inside `staging` (bundle + marker) and renames it into place at once.
    fn install(&self, staging: &Path, compiled: &Path, entry: &Path) -> Result<PathBuf> {
        if !compiled.starts_with(staging) || !compiled.is_dir() {
            return Err(Error::Compile(format!(
                "the compiler left {} outside its staging folder {}",
                compiled.display(),
                staging.display()
            )));
        }
        let folder = staging.join("entry");
        std::fs::create_dir(&folder).map_err(|e| Error::io(&folder, &e))?;
        let bundle = folder.join(BUNDLE);
        std::fs::rename(compiled, &bundle).map_err(|e| Error::io(&bundle, &e))?;
        let hash = content_hash(&bundle)?;
        let marker = folder.join(MARKER);
        std::fs::write(&marker, format!("sha256 {hash}\n")).map_err(|e| Error::io(&marker, &e))?;
        match std::fs::rename(&folder, entry) {
            Ok(()) => Ok(entry.join(BUNDLE)),
            // Another thread or process installed the same entry first: use theirs if whole.
            Err(_) if verify(entry) == Verdict::Good => Ok(entry.join(BUNDLE)),
            Err(e) => Err(Error::io(entry, &e)),
        }
    }

    /// Moves a damaged entry out of the way (one atomic rename, so no other process sees it
    /// half-removed), then removes it. Losing the race to another process is fine.
    fn discard(&self, entry: &Path) {
        let seq = self.staging_seq.fetch_add(1, Ordering::Relaxed);
        let aside = self.dir.join(format!("{STAGING_PREFIX}damaged-{}-{seq}", std::process::id()));
        if std::fs::rename(entry, &aside).is_ok() {
            let _ = std::fs::remove_dir_all(&aside);
        }
    }

    /// Hit, miss and sweep counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            swept: self.swept.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
        }
    }

    /// Total size of the cache folder in bytes.
    pub fn size_bytes(&self) -> u64 {
        dir_size(&self.dir)
    }
}

/// What an entry folder holds.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Nothing there.
    Missing,
    /// A bundle whose files match the marker's hash.
    Good,
    /// Something there that is not a whole entry (no marker, or files changed since install).
    Damaged,
}

fn verify(entry: &Path) -> Verdict {
    if !entry.exists() {
        return Verdict::Missing;
    }
    let Ok(marker) = std::fs::read_to_string(entry.join(MARKER)) else { return Verdict::Damaged };
    let Some(recorded) = marker.trim().strip_prefix("sha256 ") else { return Verdict::Damaged };
    match content_hash(&entry.join(BUNDLE)) {
        Ok(actual) if actual == recorded => Verdict::Good,
        _ => Verdict::Damaged,
    }
}

/// `v<abi>-<8 hex>-<32 hex>` (and the same with `.mlmodelc`, the ABI 1 layout).
fn is_entry_name(name: &str) -> bool {
    let name = name.strip_suffix(LEGACY_SUFFIX).unwrap_or(name);
    let mut parts = name.split('-');
    let hexes = |s: Option<&str>, n: usize| {
        s.is_some_and(|s| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    parts
        .next()
        .and_then(|v| v.strip_prefix('v'))
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        && hexes(parts.next(), 8)
        && hexes(parts.next(), 32)
        && parts.next().is_none()
}

/// A cache folder is trusted only when it is this user's and nobody else may write it: with
/// `HOME` unset the default folder is in the temp folder, where another user could have made
/// it and planted entries (issue 14, F10). A folder of ours that others may write loses their
/// write access; a folder owned by another user is refused: the engine then does not prepare
/// packages, with this error saying what to set, and the runtime serves the model on its next
/// engine.
#[cfg(unix)]
fn ensure_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(dir).map_err(|e| Error::io(dir, &e))?;
    // This user's id without libc: the owner of a file created here.
    let probe = dir.join(format!(".owner-probe-{}", std::process::id()));
    let mine = std::fs::File::create(&probe).and_then(|f| f.metadata()).map(|m| m.uid());
    let _ = std::fs::remove_file(&probe);
    let mine = mine.map_err(|e| {
        Error::io_message(
            dir,
            format!(
                "cannot write the Core ML compile cache folder ({e}); set XDG_CACHE_HOME or HOME \
                 to a folder of your own"
            ),
        )
    })?;
    if meta.uid() != mine {
        return Err(Error::io_message(
            dir,
            format!(
                "the Core ML compile cache folder belongs to user {}, not to this user ({mine}), \
                 so its compiled models are not trusted; set XDG_CACHE_HOME or HOME to a folder \
                 of your own",
                meta.uid()
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & !0o022))
            .map_err(|e| Error::io(dir, &e))?;
    }
    Ok(())
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) }
}

fn dir_size(path: &Path) -> u64 {
    let Ok(listing) = std::fs::read_dir(path) else { return 0 };
    listing
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// sha256 of a model file, or of a package folder, as lower-case hex: the same hash a model
/// manifest records (`model_manifest::sha256_path`), so a package loaded from a manifest and
/// the same package passed bare share one cache entry.
pub fn content_hash(path: &Path) -> Result<String> {
    model_manifest::sha256_path(path).map(|(hash, _size)| hash)
}
