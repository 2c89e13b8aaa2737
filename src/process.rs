//! Process identity that survives PID reuse: a PID plus its start time from
//! `/proc/<pid>/stat`, so a sweep never signals an unrelated process.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: u32,
    /// Clock ticks since boot at which the process started (field 22 of stat).
    pub start_ticks: u64,
}

impl ProcessId {
    pub fn current() -> Self {
        let pid = std::process::id();
        ProcessId {
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
        }
    }

    pub fn of(pid: u32) -> Option<Self> {
        Some(ProcessId {
            pid,
            start_ticks: start_ticks(pid)?,
        })
    }

    /// True while this very process (not a reuse of its PID) is running.
    pub fn is_alive(&self) -> bool {
        start_ticks(self.pid) == Some(self.start_ticks)
    }

    /// SIGKILL, only if the process is still the one we recorded.
    pub fn kill(&self) {
        if self.is_alive() {
            // SAFETY: plain syscall on a PID we just verified.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields resume after ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state); start time is field 22.
    if fields.first() == Some(&"Z") {
        return None; // a zombie has already exited
    }
    fields.get(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_process_is_alive_and_a_fake_start_time_is_not() {
        let me = ProcessId::current();
        assert!(me.is_alive());
        let impostor = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!impostor.is_alive());
    }

    #[test]
    fn exited_child_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessId::of(child.id());
        child.wait().unwrap();
        if let Some(id) = id {
            assert!(!id.is_alive());
        }
    }
}
