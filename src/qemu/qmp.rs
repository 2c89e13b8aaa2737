//! A minimal QMP client: enough to ask for an ACPI power-down or quit.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

pub async fn command(socket: &Path, execute: &str) -> Result<Value> {
    tokio::time::timeout(Duration::from_secs(5), command_inner(socket, execute))
        .await
        .with_context(|| format!("QMP {execute}: no answer within 5s"))?
}

async fn command_inner(socket: &Path, execute: &str) -> Result<Value> {
    let stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to QMP socket {}", socket.display()))?;
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let _greeting = lines
        .next_line()
        .await?
        .context("QMP closed before its greeting")?;
    for cmd in ["qmp_capabilities", execute] {
        w.write_all(format!("{}\n", json!({ "execute": cmd })).as_bytes())
            .await?;
        loop {
            let line = lines
                .next_line()
                .await?
                .context("QMP closed the connection")?;
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v.get("event").is_some() {
                continue;
            }
            if let Some(err) = v.get("error") {
                bail!("QMP {cmd}: {err}");
            }
            if cmd == execute {
                return Ok(v.get("return").cloned().unwrap_or(Value::Null));
            }
            break;
        }
    }
    bail!("QMP {execute}: no answer")
}
