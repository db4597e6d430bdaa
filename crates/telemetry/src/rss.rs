//! Process resident memory (RSS) sampling: Linux `/proc/self/status`, macOS `ps`.
//!
//! This crate forbids unsafe code, so on macOS the Mach `task_info` call is not used; RSS is
//! read from `ps -o rss= -p <pid>` instead (about a millisecond per sample: sample per batch,
//! not per call). Elsewhere sampling returns `None` and exports omit the value.

/// Current resident set size of this process in bytes, when the platform lets us read it.
pub fn resident_bytes() -> Option<u64> {
    imp()
}

#[cfg(target_os = "linux")]
fn imp() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

#[cfg(target_os = "macos")]
fn imp() -> Option<u64> {
    let out = std::process::Command::new("ps")
        .args(["-o", "rss=", "-p", &std::process::id().to_string()])
        .output()
        .ok()?;
    let kb: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    Some(kb * 1024)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn imp() -> Option<u64> {
    None
}

/// Parses the `VmRSS:` line of `/proc/<pid>/status` (kB) into bytes.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 =
        line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let s = "Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t   2048 kB\nThreads: 3\n";
        assert_eq!(parse_vm_rss(s), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("nothing"), None);
    }

    #[cfg(any(target_os = "linux", target_os = "macos"))]
    #[test]
    fn samples_this_process() {
        let b = resident_bytes().expect("rss readable");
        assert!(b > 100 * 1024, "{b}");
    }
}
