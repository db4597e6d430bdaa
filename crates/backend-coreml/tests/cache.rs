//! The compile cache on a real folder: atomic install, hits and misses, sweep of half-written
//! and stale entries, failed compiles leave nothing behind, concurrent installs agree.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::time::Duration;

use backend_coreml::{CompileCache, content_hash};
use inference_api::Error;

fn fake_compile(staging: &Path) -> inference_api::Result<PathBuf> {
    let out = staging.join("m.mlmodelc");
    std::fs::create_dir_all(out.join("weights")).unwrap();
    std::fs::write(out.join("weights").join("weight.bin"), b"0123").unwrap();
    Ok(out)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn install_is_atomic_and_hits_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path(), "os A", 1, Duration::from_secs(3600)).unwrap();
    let a = cache.get_or_compile("hash1", fake_compile).unwrap();
    assert!(a.join("weights").join("weight.bin").is_file());
    let b = cache.get_or_compile("hash1", |_| panic!("must not compile on a hit")).unwrap();
    assert_eq!(a, b);
    let c = cache.get_or_compile("hash2", fake_compile).unwrap();
    assert_ne!(a, c, "the content hash is part of the key");
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (1, 2));
    assert_eq!(names(dir.path()).len(), 2, "no staging folder is left: {:?}", names(dir.path()));
    assert!(cache.size_bytes() >= 8);
}

#[test]
fn a_failed_compile_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path(), "os A", 1, Duration::from_secs(3600)).unwrap();
    let err = cache
        .get_or_compile("h", |staging| {
            std::fs::write(staging.join("partial"), b"x").unwrap();
            Err(Error::Compile("scripted".into()))
        })
        .unwrap_err();
    assert!(matches!(err, Error::Compile(_)));
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[test]
fn sweep_removes_half_written_and_stale_entries_only() {
    let dir = tempfile::tempdir().unwrap();
    let old = CompileCache::open(dir.path(), "os A", 1, Duration::from_secs(3600)).unwrap();
    let stale = old.get_or_compile("h", fake_compile).unwrap();
    // The half-written leftovers of a crashed compile.
    std::fs::create_dir_all(dir.path().join(".staging-999-0-0").join("m.mlmodelc")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not ours").unwrap();

    let fresh = CompileCache::open(dir.path(), "os B", 2, Duration::ZERO).unwrap();
    assert!(!stale.exists(), "an entry of another OS build / ABI is stale");
    assert!(dir.path().join("notes.txt").exists(), "unknown files are left alone");
    assert!(!dir.path().join(".staging-999-0-0").exists());
    assert_eq!(fresh.stats().swept, 2);
    let kept = fresh.get_or_compile("h", fake_compile).unwrap();

    // A young staging folder may belong to a live compile in another process: kept.
    std::fs::create_dir_all(dir.path().join(".staging-1-0-0")).unwrap();
    let patient = CompileCache::open(dir.path(), "os B", 2, Duration::from_secs(3600)).unwrap();
    assert_eq!(patient.stats().swept, 0);
    assert!(kept.exists(), "entries of the current generation are kept");
    assert!(dir.path().join(".staging-1-0-0").exists());
}

#[test]
fn concurrent_installs_agree_on_one_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path(), "os A", 1, Duration::from_secs(3600)).unwrap();
    let paths: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..4).map(|_| s.spawn(|| cache.get_or_compile("same", fake_compile))).collect();
        handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
    });
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(names(dir.path()).len(), 1, "{:?}", names(dir.path()));
}

#[test]
fn content_hash_covers_package_files_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("m.mlpackage");
    std::fs::create_dir_all(pkg.join("Data")).unwrap();
    std::fs::write(pkg.join("Data").join("weight.bin"), b"abc").unwrap();
    let h1 = content_hash(&pkg).unwrap();
    std::fs::write(pkg.join("Data").join("weight.bin"), b"abd").unwrap();
    let h2 = content_hash(&pkg).unwrap();
    assert_ne!(h1, h2, "a weight-only change changes the key");
    assert_eq!(h2.len(), 64);
    assert!(content_hash(&dir.path().join("missing")).is_err());
}

#[test]
fn a_damaged_entry_is_detected_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path(), "os A", 2, Duration::from_secs(3600)).unwrap();
    let bundle = cache.get_or_compile("h", fake_compile).unwrap();
    let entry = bundle.parent().unwrap().to_path_buf();
    let marker = std::fs::read_to_string(entry.join("complete")).unwrap();
    assert_eq!(marker.trim(), format!("sha256 {}", content_hash(&bundle).unwrap()));

    // A weight file changed after install (disk damage, a partial copy, a stray edit).
    std::fs::write(bundle.join("weights").join("weight.bin"), b"01").unwrap();
    let mut compiled = 0;
    let again = cache
        .get_or_compile("h", |s| {
            compiled += 1;
            fake_compile(s)
        })
        .unwrap();
    assert_eq!((compiled, cache.stats().corrupt), (1, 1), "rebuilt, not reused");
    assert_eq!(std::fs::read(again.join("weights").join("weight.bin")).unwrap(), b"0123");

    // An entry without its completeness marker is not trusted either.
    std::fs::remove_file(entry.join("complete")).unwrap();
    cache.get_or_compile("h", fake_compile).unwrap();
    assert_eq!(cache.stats().corrupt, 2);
    // Whole again: a plain hit.
    cache.get_or_compile("h", |_| panic!("must not compile on a hit")).unwrap();
    assert_eq!(cache.stats().hits, 1);
    assert_eq!(names(dir.path()).len(), 1, "nothing left aside: {:?}", names(dir.path()));
}

#[test]
fn entries_of_the_abi_1_layout_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path(), "os A", 2, Duration::from_secs(3600)).unwrap();
    let current = cache.entry_name("h");
    // Same generation prefix, old layout (`<key>.mlmodelc`, no marker).
    let legacy = format!("{current}.mlmodelc");
    std::fs::create_dir_all(dir.path().join(&legacy)).unwrap();
    let reopened = CompileCache::open(dir.path(), "os A", 2, Duration::from_secs(3600)).unwrap();
    assert_eq!(reopened.stats().swept, 1);
    assert!(!dir.path().join(legacy).exists());
}

/// F10: a cache folder others may write is made private; one owned by another user (made by
/// someone else in the shared temp folder, say) is refused rather than trusted by name.
#[cfg(unix)]
#[test]
fn a_cache_folder_is_used_only_when_it_is_private_to_this_user() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("infer-rs-coreml");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    CompileCache::open(&shared, "os A", 1, Duration::from_secs(3600)).unwrap();
    let mode = std::fs::metadata(&shared).unwrap().mode() & 0o777;
    assert_eq!(mode & 0o022, 0, "others may still write the cache: {mode:o}");
    assert!(names(&shared).is_empty(), "the ownership probe was left behind");

    // Owned by another user: only root can arrange that here.
    let theirs = root.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o777)).unwrap();
    if std::os::unix::fs::chown(&theirs, Some(54_321), Some(54_321)).is_err() {
        eprintln!("not root: the other-owner case is not checked");
        return;
    }
    let e = CompileCache::open(&theirs, "os A", 1, Duration::from_secs(3600)).unwrap_err();
    assert!(e.to_string().contains("belongs to user 54321"), "{e}");
    assert!(e.to_string().contains("XDG_CACHE_HOME or HOME"), "{e}");
}
