//! The smoke-test report: what was checked, how, how long it took, and on failure
//! enough of the console or command output to act on.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::packages::{PackageChanges, PackageManifest};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// `boot`, `cloud_init`, `guest_agent`, `ssh` or `commands[N]`.
    pub name: String,
    pub ok: bool,
    pub duration_ms: u64,
    /// How the check ran (e.g. "guest agent ping + exec over virtio-serial") and,
    /// on failure, why.
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub image: String,
    pub checks: Vec<CheckResult>,
    /// The last lines of the serial console, kept when something failed.
    pub console_tail: String,
    pub duration_ms: u64,
    /// RFC 3339.
    pub finished_at: String,
    /// What is inside the image, read in the booted image (Debian family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<PackageManifest>,
    /// What changed since the family's previous validated image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages_changed: Option<PackageChanges>,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    pub fn first_failure(&self) -> Option<&CheckResult> {
        self.checks.iter().find(|c| !c.ok)
    }

    pub fn push(
        &mut self,
        name: impl Into<String>,
        ok: bool,
        took: Duration,
        detail: impl Into<String>,
    ) {
        self.checks.push(CheckResult {
            name: name.into(),
            ok,
            duration_ms: took.as_millis() as u64,
            detail: detail.into(),
        });
    }

    /// A human summary for diagnostics: one line per check, then the console tail.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for c in &self.checks {
            let mark = if c.ok { "ok    " } else { "FAILED" };
            s += &format!(
                "  {mark} {:<12} {:>6.1}s  {}\n",
                c.name,
                c.duration_ms as f64 / 1000.0,
                c.detail
            );
        }
        if !self.passed() && !self.console_tail.is_empty() {
            s += "\nSerial console (last lines):\n";
            for line in self.console_tail.lines() {
                s += &format!("  | {line}\n");
            }
        }
        s
    }
}

/// The last `n` lines of a log, without terminal control characters.
pub fn tail_lines(log: &str, n: usize) -> String {
    let clean: String = log
        .chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect();
    let lines: Vec<&str> = clean.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_passes_only_when_every_check_passed() {
        let mut r = Report::default();
        assert!(!r.passed(), "an empty report proves nothing");
        r.push(
            "boot",
            true,
            Duration::from_secs(40),
            "login prompt on serial",
        );
        assert!(r.passed());
        r.push("commands[0]", false, Duration::from_secs(1), "exit 1: boom");
        assert!(!r.passed());
        assert_eq!(r.first_failure().unwrap().name, "commands[0]");
    }

    #[test]
    fn summary_names_failed_check_and_shows_console() {
        let mut r = Report {
            console_tail: "last line".into(),
            ..Default::default()
        };
        r.push("ssh", false, Duration::from_secs(3), "connection refused");
        let s = r.summary();
        assert!(s.contains("FAILED ssh"));
        assert!(s.contains("| last line"));
    }

    #[test]
    fn tail_strips_control_characters() {
        let log = "a\n\x1b[0mb\nc\n\n";
        assert_eq!(tail_lines(log, 2), "[0mb\nc");
    }
}
