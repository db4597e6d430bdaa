//! Writing bytes to a destination the user named: `-` for stdout, devices and pipes written in
//! place, regular files replaced atomically (temporary file in the same folder, then a rename)
//! with the permissions a new file would get (or the replaced file had).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Where `dest` leads, decided before anything is written.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// `-`: standard output.
    Stdout,
    /// An existing file that is not a regular file (a device such as `/dev/null`, a FIFO, a
    /// socket): written in place, never replaced.
    Special(PathBuf),
    /// A regular file (existing or not) at this path, after resolving symlinks: replaced
    /// atomically.
    Regular(PathBuf),
}

fn target(dest: &Path) -> Result<Target> {
    if dest.as_os_str() == "-" {
        return Ok(Target::Stdout);
    }
    match fs::metadata(dest) {
        Ok(m) if m.is_dir() => {
            bail!("{} is a folder: name a file to write the outputs to", dest.display())
        }
        Ok(m) if m.is_file() => {
            // Through a symlink, replace the file it points to, not the link.
            let real =
                fs::canonicalize(dest).with_context(|| format!("resolving {}", dest.display()))?;
            Ok(Target::Regular(real))
        }
        Ok(_) => Ok(Target::Special(dest.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if fs::symlink_metadata(dest).is_ok() {
                bail!("{} is a symlink to nothing: remove it or name another file", dest.display())
            }
            Ok(Target::Regular(dest.to_path_buf()))
        }
        Err(e) => Err(e).with_context(|| format!("checking {}", dest.display())),
    }
}

/// Writes `bytes` to `dest`. A regular file is written to a temporary file beside it and renamed
/// over, so a failed write leaves the old file (or nothing) behind; a device or pipe is written
/// directly; `-` writes to stdout.
pub(crate) fn write_bytes(dest: &Path, bytes: &[u8]) -> Result<()> {
    match target(dest)? {
        Target::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush()).context("writing to stdout")
        }
        Target::Special(p) => {
            let mut f = OpenOptions::new()
                .write(true)
                .open(&p)
                .with_context(|| format!("opening {} for writing", p.display()))?;
            f.write_all(bytes).with_context(|| format!("writing {}", p.display()))
        }
        Target::Regular(p) => write_atomic(&p, bytes),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    // A new file gets the default mode (0666 less the umask), as any program's output does.
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let result = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))
        .and_then(|()| match fs::metadata(path) {
            // Replacing a file keeps its permissions.
            Ok(old) => fs::set_permissions(&tmp, old.permissions())
                .with_context(|| format!("copying the permissions of {}", path.display())),
            Err(_) => Ok(()),
        })
        .and_then(|()| {
            fs::rename(&tmp, path).with_context(|| format!("moving output to {}", path.display()))
        });
    drop(f);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_written_in_place_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        write_bytes(&fifo, b"tensor bytes").unwrap();
        assert_eq!(reader.join().unwrap(), b"tensor bytes");
        assert!(
            fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(),
            "the FIFO was replaced"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "a temporary file was left");
    }

    #[test]
    fn stdout_and_devices_are_not_regular_targets() {
        assert_eq!(target(Path::new("-")).unwrap(), Target::Stdout);
        #[cfg(unix)]
        assert_eq!(target(Path::new("/dev/null")).unwrap(), Target::Special("/dev/null".into()));
    }

    #[cfg(unix)]
    #[test]
    fn a_new_file_gets_the_umask_default_and_a_replaced_file_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let reference = dir.path().join("reference");
        fs::write(&reference, b"x").unwrap();
        let out = dir.path().join("out.safetensors");
        write_bytes(&out, b"new").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out), mode(&reference), "a new output gets the same mode as any new file");
        fs::set_permissions(&out, fs::Permissions::from_mode(0o640)).unwrap();
        write_bytes(&out, b"again").unwrap();
        assert_eq!(mode(&out), 0o640);
        assert_eq!(fs::read(&out).unwrap(), b"again");
    }

    #[cfg(unix)]
    #[test]
    fn through_a_symlink_the_target_file_is_replaced_and_the_link_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_bytes(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn a_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_bytes(dir.path(), b"x").unwrap_err().to_string();
        assert!(e.contains("is a folder"), "{e}");
    }
}
