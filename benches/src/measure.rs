//! Wall time of a child process, and a process's own peak RSS.
//!
//! Owns spawning a child and reading `/proc/self/status`. Must not interpret what the child
//! prints beyond handing it back.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one child run printed, and how long it took.
#[derive(Debug, Clone)]
pub struct Measured {
    pub wall: Duration,
    pub stdout: String,
}

/// Runs `exe args` with `envs` added; stderr passes through. Fails if the child fails.
pub fn run(exe: &Path, args: &[String], envs: &[(&str, &str)]) -> Result<Measured, String> {
    let started = Instant::now();
    let out = Command::new(exe)
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let wall = started.elapsed();
    if !out.status.success() {
        return Err(format!("{} {args:?} failed: {}", exe.display(), out.status));
    }
    Ok(Measured {
        wall,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
}

/// This process's peak resident set size so far, in KiB (`VmHWM`); 0 where unknown.
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_rss_is_read_and_grows_with_use() {
        let before = super::peak_rss_kb();
        assert!(before > 0);
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        assert!(super::peak_rss_kb() >= before + 32 * 1024);
    }
}
