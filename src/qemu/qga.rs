//! qemu-guest-agent over its virtio-serial channel (a UNIX socket on the host).
//!
//! The channel buffers requests sent before the agent starts; the agent answers
//! them later. So every session starts with `guest-sync` and a fresh id, and
//! discards any reply that does not carry it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

static SYNC_ID: AtomicU64 = AtomicU64::new(1);

/// The output of a command run with `guest-exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    /// stdout and stderr, trimmed, for messages.
    pub fn combined(&self) -> String {
        let mut s = self.stdout.trim().to_owned();
        if !self.stderr.trim().is_empty() {
            if !s.is_empty() {
                s.push('\n');
            }
            s += self.stderr.trim();
        }
        s
    }
}

pub struct Qga {
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Qga {
    /// Connects and synchronises; fails if the agent does not answer within
    /// `timeout` (callers retry until their own deadline).
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Qga> {
        let stream = UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to guest agent socket {}", socket.display()))?;
        let (r, w) = stream.into_split();
        let mut qga = Qga {
            lines: BufReader::new(r).lines(),
            writer: w,
        };
        qga.sync(timeout).await?;
        Ok(qga)
    }

    async fn sync(&mut self, timeout: Duration) -> Result<()> {
        let id =
            SYNC_ID.fetch_add(1, Ordering::Relaxed) + u64::from(std::process::id()) * 1_000_000;
        self.send(&json!({"execute": "guest-sync", "arguments": {"id": id}}))
            .await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let v = tokio::time::timeout_at(deadline, self.read())
                .await
                .map_err(|_| {
                    anyhow!("guest agent did not answer guest-sync within {timeout:?}")
                })??;
            if v.get("return").and_then(Value::as_u64) == Some(id) {
                return Ok(());
            }
        }
    }

    async fn send(&mut self, v: &Value) -> Result<()> {
        self.writer.write_all(format!("{v}\n").as_bytes()).await?;
        Ok(())
    }

    async fn read(&mut self) -> Result<Value> {
        loop {
            let line = self
                .lines
                .next_line()
                .await?
                .context("guest agent channel closed")?;
            // The agent may emit a 0xFF sentinel or partial lines after a reset.
            let trimmed = line.trim_start_matches(|c: char| !c.is_ascii() || c == '\u{ff}');
            if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
                return Ok(v);
            }
        }
    }

    /// One request, one answer.
    pub async fn call(
        &mut self,
        execute: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value> {
        let mut req = json!({ "execute": execute });
        if !arguments.is_null() {
            req["arguments"] = arguments;
        }
        self.send(&req).await?;
        let v = tokio::time::timeout(timeout, self.read())
            .await
            .map_err(|_| anyhow!("guest agent: no answer to {execute} within {timeout:?}"))??;
        if let Some(err) = v.get("error") {
            bail!(
                "guest agent {execute}: {}",
                err.get("desc").and_then(Value::as_str).unwrap_or("error")
            );
        }
        Ok(v.get("return").cloned().unwrap_or(Value::Null))
    }

    pub async fn ping(&mut self) -> Result<()> {
        self.call("guest-ping", Value::Null, Duration::from_secs(5))
            .await
            .map(|_| ())
    }

    /// Runs `path args...` in the guest and waits for it (polling
    /// `guest-exec-status`) at most `timeout`.
    pub async fn exec(
        &mut self,
        path: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        let started = self
            .call(
                "guest-exec",
                json!({"path": path, "arg": args, "capture-output": true}),
                Duration::from_secs(10),
            )
            .await?;
        let pid = started
            .get("pid")
            .and_then(Value::as_i64)
            .context("guest-exec returned no pid")?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let st = self
                .call(
                    "guest-exec-status",
                    json!({"pid": pid}),
                    Duration::from_secs(10),
                )
                .await?;
            if st.get("exited").and_then(Value::as_bool) == Some(true) {
                let field = |k: &str| {
                    st.get(k)
                        .and_then(Value::as_str)
                        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                };
                let exit_code = st
                    .get("exitcode")
                    .and_then(Value::as_i64)
                    .or_else(|| st.get("signal").and_then(Value::as_i64).map(|s| 128 + s))
                    .unwrap_or(-1);
                return Ok(ExecOutput {
                    exit_code,
                    stdout: field("out-data"),
                    stderr: field("err-data"),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{path} {} still running after {timeout:?}", args.join(" "));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Asks the guest to power off. The agent may close the channel before it
    /// answers; that counts as accepted.
    pub async fn shutdown(&mut self) -> Result<()> {
        self.send(&json!({"execute": "guest-shutdown", "arguments": {"mode": "powerdown"}}))
            .await
    }
}

/// Where a VM's agent socket lives; `wait_ready` polls it until the agent answers.
#[derive(Debug, Clone)]
pub struct AgentChannel {
    pub socket: PathBuf,
}

impl AgentChannel {
    /// Connects, retrying until the agent answers or `cancel`/`deadline` hits.
    pub async fn wait_ready(&self, deadline: tokio::time::Instant) -> Result<Qga> {
        let mut last_err = anyhow!("guest agent never answered");
        while tokio::time::Instant::now() < deadline {
            match Qga::connect(&self.socket, Duration::from_secs(3)).await {
                Ok(mut q) => match q.ping().await {
                    Ok(()) => return Ok(q),
                    Err(e) => last_err = e,
                },
                Err(e) => last_err = e,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(last_err.context("the QEMU guest agent did not answer (is qemu-guest-agent installed and enabled in the image?)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;
    use tokio::net::UnixListener;

    /// An agent that syncs and then never answers (a guest too busy to run
    /// its agent): the call gives up at its timeout with the wording
    /// golden-sim maps to PVE's "got timeout" (`sim/src/core/guest.rs`).
    #[tokio::test]
    async fn a_silent_agent_times_out_naming_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qga.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let v: Value = serde_json::from_str(&line).unwrap();
                if v["execute"] == "guest-sync" {
                    let answer = json!({"return": v["arguments"]["id"]});
                    w.write_all(format!("{answer}\n").as_bytes()).await.unwrap();
                }
            }
        });
        let mut qga = Qga::connect(&socket, Duration::from_secs(2)).await.unwrap();
        let err = qga
            .call(
                "guest-exec-status",
                json!({"pid": 1}),
                Duration::from_millis(100),
            )
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").starts_with("guest agent: no answer to guest-exec-status within"),
            "{err:#}"
        );
    }
}
