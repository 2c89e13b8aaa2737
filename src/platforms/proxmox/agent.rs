//! Talking to a guest through PVE's guest-agent endpoints: waiting for the
//! agent, running commands (`agent/exec` + `exec-status`) and writing files.
//! This replaces SSH for builds: nothing needs a route into the guest.

use std::time::Duration;

use tokio::time::Instant;

use super::api::VmApi;
use crate::lifecycle::context::Cx;
use crate::platforms::{Error, ErrorKind, Result};

/// What a guest command printed and how it ended.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub exitcode: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.exitcode == 0
    }

    /// stdout then stderr, trimmed, for reports.
    pub fn combined(&self) -> String {
        let mut s = self.stdout.trim_end().to_owned();
        if !self.stderr.trim().is_empty() {
            if !s.is_empty() {
                s.push('\n');
            }
            s += self.stderr.trim_end();
        }
        s
    }
}

/// Pings the agent until it answers or `limit` passes. The error says plainly
/// that the agent never answered, with PVE's last word on it.
pub async fn wait_ready(vm: &VmApi<'_>, limit: Duration, cx: &Cx) -> Result<Duration> {
    let started = Instant::now();
    let deadline = started + limit.min(cx.remaining());
    loop {
        cx.check("waiting for the guest agent")?;
        let last = match vm.agent_ping().await {
            Ok(()) => return Ok(started.elapsed()),
            // "QEMU guest agent is not running" is how PVE says "not yet".
            Err(e) if e.is_transient() || e.kind() == ErrorKind::Other => e.to_string(),
            Err(e) => return Err(e),
        };
        if Instant::now() >= deadline {
            // Not ErrorKind::Timeout: the apply's own deadline did not run
            // out, the agent's did, and the message must say that.
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "the QEMU guest agent of VM {} did not answer within {}s; is qemu-guest-agent \
                     installed and enabled in the source image, and `agent: 1` set on it? \
                     (last answer: {last})",
                    vm.vmid,
                    limit.as_secs()
                ),
            ));
        }
        cx.sleep("waiting for the guest agent", Duration::from_secs(2))
            .await?;
    }
}

/// Runs `script` with `/bin/sh -c` in the guest and waits for it to end.
pub async fn sh(vm: &VmApi<'_>, script: &str, limit: Duration, cx: &Cx) -> Result<Output> {
    exec(vm, &["/bin/sh", "-c", script], limit, cx).await
}

pub async fn exec(vm: &VmApi<'_>, argv: &[&str], limit: Duration, cx: &Cx) -> Result<Output> {
    let what = format!(
        "running {:?} in the guest",
        argv.last().copied().unwrap_or_default()
    );
    let pid = vm.agent_exec(argv).await?;
    let deadline = Instant::now() + limit.min(cx.remaining());
    let mut every = Duration::from_millis(100);
    loop {
        let status = vm.agent_exec_status(pid).await?;
        if status.has_exited() {
            return Ok(Output {
                exitcode: status
                    .exitcode
                    .unwrap_or_else(|| 128 + status.signal.unwrap_or(0)),
                stdout: status.out_data.unwrap_or_default(),
                stderr: status.err_data.unwrap_or_default(),
            });
        }
        if Instant::now() >= deadline {
            return Err(Error::timeout(&format!(
                "{what} (pid {pid}, {}s)",
                limit.as_secs()
            )));
        }
        cx.sleep(&what, every).await?;
        every = (every * 2).min(Duration::from_secs(1));
    }
}

/// Writes `content` to `path` in the guest (its directory must exist).
pub async fn write_file(vm: &VmApi<'_>, path: &str, content: &str) -> Result<()> {
    // agent/file-write takes at most 60 KiB per call.
    if content.len() > 60 * 1024 {
        return Err(Error::new(
            ErrorKind::Other,
            format!(
                "file {path} is {} bytes; the guest agent writes at most 60 KiB per file",
                content.len()
            ),
        ));
    }
    vm.agent_file_write(path, content).await
}
