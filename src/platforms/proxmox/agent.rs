//! Talking to a guest through PVE's guest-agent endpoints: waiting for the
//! agent, running commands (`agent/exec` + `exec-status`) and writing files.
//! This replaces SSH for builds: nothing needs a route into the guest.

use std::time::Duration;

use tokio::time::Instant;

use super::api::{guest_text, VmApi};
use crate::lifecycle::context::Cx;
use crate::platforms::{Error, ErrorKind, Result};

/// What a command printed in the guest: the kit's type.
pub use crate::platforms::kit::smoke::GuestOutput as Output;

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
        // A busy guest's agent may miss qemu-server's few seconds on a
        // status poll ("got timeout"): the command still runs; ask again
        // until the step's own deadline.
        let status = match vm.agent_exec_status(pid).await {
            Ok(s) => Some(s),
            Err(e) if e.is_transient() && !e.is_cancelled() => {
                tracing::warn!(pid, error = %e, "the guest agent did not answer a status poll; polling again");
                None
            }
            Err(e) => return Err(e),
        };
        if let Some(status) = status.filter(|s| s.has_exited()) {
            return Ok(Output {
                exit_code: status
                    .exitcode
                    .unwrap_or_else(|| 128 + status.signal.unwrap_or(0)),
                stdout: guest_text(&status.out_data.unwrap_or_default()),
                stderr: guest_text(&status.err_data.unwrap_or_default()),
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

/// Bytes per `agent/file-write`: 44 KiB is 60 KiB of base64 (PVE's limit on
/// `content`), and stays under the 64 KiB request body that PVE before 8.4
/// accepts, even form-encoded.
const WRITE_CHUNK: usize = 40 * 1024;

/// Writes `content` to `path` in the guest (its directory must exist). Big
/// files go in chunks, joined in the guest.
pub async fn write_file(vm: &VmApi<'_>, path: &str, content: &str, cx: &Cx) -> Result<()> {
    let bytes = content.as_bytes();
    if bytes.len() <= WRITE_CHUNK {
        return vm.agent_file_write(path, bytes).await;
    }
    let parts: Vec<&[u8]> = bytes.chunks(WRITE_CHUNK).collect();
    let mut names = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let name = format!("{path}.golden-part{i}");
        vm.agent_file_write(&name, part).await?;
        names.push(name);
    }
    let quoted: Vec<String> = names.iter().map(|n| sh_quote(n)).collect();
    let script = format!(
        "cat {} > {} && rm -f {}",
        quoted.join(" "),
        sh_quote(path),
        quoted.join(" ")
    );
    let out = sh(vm, &script, Duration::from_secs(120), cx).await?;
    if !out.success() {
        return Err(Error::new(
            ErrorKind::Other,
            format!(
                "joining the parts of {path} in the guest failed: {}",
                out.combined()
            ),
        ));
    }
    Ok(())
}

pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
