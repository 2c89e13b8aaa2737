//! Waiting for PVE tasks (UPIDs): every asynchronous call is polled to its end
//! and its exit status checked; a failed task's error carries PVE's message and
//! the tail of its log.

use std::time::Duration;

use super::api::{NodeApi, Upid};
use crate::lifecycle::context::Cx;
use crate::platforms::kit::poll::{until_done, Interval, Progress};
use crate::platforms::{Error, ErrorKind, Result};

/// PVE tasks: look again after 200 ms, at most every 2 s.
const INTERVAL: Interval = Interval::new(Duration::from_millis(200), Duration::from_secs(2));

/// Polls `upid` until it stops. `what` names the step in errors.
pub async fn wait(node: &NodeApi<'_>, upid: &Upid, what: &str, cx: &Cx) -> Result<()> {
    let exit = until_done(what, cx, INTERVAL, || async {
        let status = node.task_status(upid).await?;
        Ok(if status.status == "stopped" {
            Progress::Done(status.exitstatus)
        } else {
            Progress::Pending
        })
    })
    .await?;
    finished(node, upid, what, exit).await
}

async fn finished(node: &NodeApi<'_>, upid: &Upid, what: &str, exit: Option<String>) -> Result<()> {
    let exit = exit.unwrap_or_default();
    if exit == "OK" || exit.starts_with("WARNINGS") {
        tracing::debug!(task = %upid.0, %exit, "task finished");
        return Ok(());
    }
    let log = node
        .task_log_tail(upid, 8)
        .await
        .map(|l| l.join("\n"))
        .unwrap_or_default();
    // A clone whose target id was taken by a concurrent run fails in its
    // task ("config file already exists"): the same kinds as a direct answer.
    let kind = match super::client::classify(reqwest::StatusCode::INTERNAL_SERVER_ERROR, &exit) {
        ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        _ => ErrorKind::Other,
    };
    let mut err = Error::new(
        kind,
        format!(
            "{what}: PVE task failed: {}",
            if exit.is_empty() {
                "no exit status"
            } else {
                &exit
            }
        ),
    );
    if !log.trim().is_empty() {
        err = err.with_detail(format!("Task log (last lines, {}):\n{log}", upid.0));
    }
    Err(err)
}
