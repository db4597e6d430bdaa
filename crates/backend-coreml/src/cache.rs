//! The compile cache: compiled `.mlmodelc` bundles installed by atomic rename, keyed by content
//! hash + OS build + bridge ABI version + compute units; stale and half-written entries swept.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use inference_api::{ComputeUnits, Error, Result};
use sha2::{Digest, Sha256};

const STAGING_PREFIX: &str = ".staging-";
const ENTRY_SUFFIX: &str = ".mlmodelc";

/// Counters of one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that compiled.
    pub misses: u64,
    /// Entries removed by sweeps (stale versions and half-written staging folders).
    pub swept: u64,
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
        let cache = CompileCache {
            dir,
            os_build: os_build.to_string(),
            abi_version,
            stale_after,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            swept: AtomicU64::new(0),
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

    /// The entry name for a model's content hash and compute units.
    pub fn entry_name(&self, content_hash: &str, units: ComputeUnits) -> String {
        let mut h = Sha256::new();
        for part in [content_hash, &self.os_build, &self.abi_version.to_string(), units.as_str()] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        format!("{}{}{ENTRY_SUFFIX}", self.generation_prefix(), &hex(&h.finalize())[..32])
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
                name.ends_with(ENTRY_SUFFIX) && name.starts_with('v') && !name.starts_with(&prefix)
            };
            if doomed && remove_any(&path).is_ok() {
                removed += 1;
            }
        }
        self.swept.fetch_add(removed, Ordering::Relaxed);
        Ok(removed)
    }

    /// The compiled bundle for `content_hash` and `units`: from the cache, or compiled by
    /// `compile` (given an empty staging folder, returning the bundle it wrote inside it) and
    /// installed by atomic rename.
    pub fn get_or_compile(
        &self,
        content_hash: &str,
        units: ComputeUnits,
        compile: impl FnOnce(&Path) -> Result<PathBuf>,
    ) -> Result<PathBuf> {
        let final_path = self.dir.join(self.entry_name(content_hash, units));
        if final_path.is_dir() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(final_path);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let seq = self.staging_seq.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let staging =
            self.dir.join(format!("{STAGING_PREFIX}{}-{seq}-{nanos}", std::process::id()));
        std::fs::create_dir(&staging).map_err(|e| Error::io(&staging, &e))?;
        let result = compile(&staging).and_then(|compiled| {
            if !compiled.starts_with(&staging) || !compiled.is_dir() {
                return Err(Error::Compile(format!(
                    "the compiler left {} outside its staging folder {}",
                    compiled.display(),
                    staging.display()
                )));
            }
            match std::fs::rename(&compiled, &final_path) {
                Ok(()) => Ok(final_path.clone()),
                // Another thread or process installed the same entry first: use theirs.
                Err(_) if final_path.is_dir() => Ok(final_path.clone()),
                Err(e) => Err(Error::io(&final_path, &e)),
            }
        });
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    /// Hit, miss and sweep counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            swept: self.swept.load(Ordering::Relaxed),
        }
    }

    /// Total size of the cache folder in bytes.
    pub fn size_bytes(&self) -> u64 {
        dir_size(&self.dir)
    }
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
