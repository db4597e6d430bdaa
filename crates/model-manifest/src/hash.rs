//! sha256 of files, folders and byte slices: streamed, regular files only, every read capped.
//!
//! Symlinks to regular files are followed; symlinks to folders are refused (a package with
//! self-pointing folder links made the walk exponential), as are devices, pipes and sockets (a
//! weights file linked to `/dev/zero` or a FIFO was hashed for ever) and symlink loops, which
//! are reported as such rather than as missing files.

use std::io::Read;
use std::path::Path;

use inference_api::{Error, Result};
use sha2::{Digest, Sha256};

/// Lower-case hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// Lower-case hex sha256 and size in bytes of a regular file, read in 1 MiB chunks. A device,
/// pipe, socket or folder is an [`Error::Io`] saying so.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    sha256_file_max(path, u64::MAX)
}

/// [`sha256_file`], refusing (as [`Error::Integrity`]) a file longer than `max_bytes` without
/// reading past the limit.
pub fn sha256_file_max(path: &Path, max_bytes: u64) -> Result<(String, u64)> {
    let len = regular_file_len(path)?;
    if len > max_bytes {
        return Err(too_long(path, max_bytes, len));
    }
    let file = std::fs::File::open(path).map_err(|e| open_error(path, &e))?;
    // The file may grow between the check and the read: never read more than the limit + 1.
    let mut reader = file.take(max_bytes.min(len).saturating_add(1));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::io(path, &e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    if size > max_bytes.min(len) {
        return Err(Error::io_message(
            path,
            format!("file grew from {len} bytes while it was being read"),
        ));
    }
    Ok((to_hex(&hasher.finalize()), size))
}

/// sha256 and total size of a file or of a directory tree (a `.mlpackage`).
///
/// A directory hashes as the sha256 of the lines `<relative path>\0<file sha256>\n` over its
/// files in sorted path order, so renaming, adding or changing any file changes the hash.
pub fn sha256_path(path: &Path) -> Result<(String, u64)> {
    sha256_path_max(path, u64::MAX)
}

/// [`sha256_path`], refusing (as [`Error::Integrity`]) a file or tree whose total size is above
/// `max_bytes` before reading past the limit.
pub fn sha256_path_max(path: &Path, max_bytes: u64) -> Result<(String, u64)> {
    let meta = std::fs::metadata(path).map_err(|e| open_error(path, &e))?;
    if !meta.is_dir() {
        return sha256_file_max(path, max_bytes);
    }
    let mut files = Vec::new();
    collect_files(path, path, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    for rel in files {
        let (h, size) =
            sha256_file_max(&path.join(&rel), max_bytes - total).map_err(|e| match e {
                Error::Integrity { .. } => too_long(path, max_bytes, total.saturating_add(1)),
                other => other,
            })?;
        total += size;
        hasher.update(rel.as_bytes());
        hasher.update([0u8]);
        hasher.update(h.as_bytes());
        hasher.update(b"\n");
    }
    Ok((to_hex(&hasher.finalize()), total))
}

fn too_long(path: &Path, max: u64, len: u64) -> Error {
    Error::Integrity {
        path: path.display().to_string(),
        expected: format!("at most {max} bytes"),
        actual: if len > max { format!("more than {max} bytes ({len})") } else { format!("{len}") },
    }
}

/// Size of `path` when it is (or links to) a regular file; otherwise an error saying what it is.
fn regular_file_len(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| open_error(path, &e))?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    let what = if meta.is_dir() { "a folder" } else { "a device, pipe or socket" };
    Err(Error::io_message(
        path,
        format!("is {what}, not a regular file: model files must be regular files"),
    ))
}

/// An I/O error opening `path`, telling a symlink loop and a dangling symlink from a missing
/// file.
pub(crate) fn open_error(path: &Path, e: &std::io::Error) -> Error {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let message = if is_link && is_loop(e) {
        "is a symlink loop (the link leads back to itself): point it at the real file".to_string()
    } else if is_link && e.kind() == std::io::ErrorKind::NotFound {
        "is a symlink to a file that does not exist".to_string()
    } else {
        e.to_string()
    };
    Error::io_message(path, message)
}

fn is_loop(e: &std::io::Error) -> bool {
    // ELOOP: 40 on Linux, 62 on macOS and the BSDs.
    let eloop = if cfg!(target_os = "linux") { 40 } else { 62 };
    e.raw_os_error() == Some(eloop)
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, &e))? {
        let entry = entry.map_err(|e| Error::io(dir, &e))?;
        let p = entry.path();
        // The entry's own type: a symlink is not followed here.
        let kind = entry.file_type().map_err(|e| Error::io(&p, &e))?;
        if kind.is_dir() {
            collect_files(root, &p, out)?;
            continue;
        }
        if kind.is_symlink() {
            let target = std::fs::metadata(&p).map_err(|e| open_error(&p, &e))?;
            if target.is_dir() {
                return Err(Error::io_message(
                    &p,
                    "is a symlink to a folder; links to folders inside a model are not \
                     followed: copy the folder in instead",
                ));
            }
        }
        let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().replace('\\', "/");
        out.push(rel);
    }
    Ok(())
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
