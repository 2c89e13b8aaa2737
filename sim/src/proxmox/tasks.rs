//! PVE worker tasks: the UPID that names them, their status and log, and the
//! runner that makes an operation take time and end in `OK` or an error, as
//! `qm` workers do (the running itself is the core's operation engine,
//! `crate::core::ops`).

use std::future::Future;
use std::time::Duration;

use serde_json::{json, Value};

use super::state::{Cluster, Shared};
use crate::core::ops::{self, Operation, OperationMeta};
use crate::core::util::unix_now;

/// `UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>:`, the numbers
/// in 8-digit upper-case hex, as PVE writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upid {
    pub node: String,
    pub pid: u32,
    pub pstart: u32,
    pub starttime: u32,
    pub kind: String,
    pub id: String,
    pub user: String,
}

impl Upid {
    pub fn format(&self) -> String {
        format!(
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.pstart, self.starttime, self.kind, self.id, self.user
        )
    }

    pub fn parse(s: &str) -> Option<Upid> {
        let rest = s.strip_prefix("UPID:")?.strip_suffix(':')?;
        let mut f = rest.splitn(7, ':');
        let node = f.next()?.to_owned();
        let hex = |x: Option<&str>| {
            x.filter(|h| h.len() >= 8)
                .and_then(|h| u32::from_str_radix(h, 16).ok())
        };
        let pid = hex(f.next())?;
        let pstart = hex(f.next())?;
        let starttime = hex(f.next())?;
        let kind = f.next()?.to_owned();
        let id = f.next()?.to_owned();
        let user = f.next()?.to_owned();
        if node.is_empty() || kind.is_empty() || user.is_empty() {
            return None;
        }
        Some(Upid {
            node,
            pid,
            pstart,
            starttime,
            kind,
            id,
            user,
        })
    }
}

impl OperationMeta for Upid {
    const NOUN: &'static str = "task";

    /// A task log ends with `TASK OK`, `TASK WARNINGS: <n>` or
    /// `TASK ERROR: <message>` (pve-common `PVE/RESTEnvironment.pm`
    /// fork_worker).
    fn closing_line(&self, outcome: &Result<(), String>, warnings: Option<&str>) -> Option<String> {
        Some(match (outcome, warnings) {
            (Ok(()), Some(n)) => format!("TASK WARNINGS: {n}"),
            (Ok(()), None) => "TASK OK".into(),
            (Err(msg), _) => format!("TASK ERROR: {msg}"),
        })
    }
}

/// A task: its UPID, its log, and once stopped its outcome.
pub type Task = Operation<Upid>;

/// How PVE shows a task.
pub trait TaskView {
    /// `None` while running; then `OK` or the error message.
    fn exitstatus(&self) -> Option<&str>;
    /// `GET /nodes/{node}/tasks/{upid}/status`.
    fn status_json(&self) -> Value;
    /// `GET /nodes/{node}/tasks/{upid}/log`.
    fn log_json(&self, start: usize, limit: usize) -> Value;
}

impl TaskView for Task {
    fn exitstatus(&self) -> Option<&str> {
        // The exit status is the closing line's tail (pve-common
        // `PVE/Tools.pm` upid_read_status): `OK`, `WARNINGS: <n>`, or the error.
        match (&self.outcome, &self.warnings) {
            (None, _) => None,
            (Some(Ok(())), Some(w)) => Some(w),
            (Some(Ok(())), None) => Some("OK"),
            (Some(Err(msg)), _) => Some(msg),
        }
    }

    fn status_json(&self) -> Value {
        let u = &self.meta;
        let mut v = json!({
            "upid": u.format(),
            "node": u.node,
            "pid": u.pid,
            "pstart": u.pstart,
            "starttime": u.starttime,
            "type": u.kind,
            "id": u.id,
            "user": u.user,
            "status": if self.exitstatus().is_some() { "stopped" } else { "running" },
        });
        // pve-manager API2/Tasks.pm convert_token_task: a token's task shows
        // its user in `user` and the token's name in `tokenid`.
        if let Some((user, token)) = u.user.split_once('!') {
            v["user"] = json!(user);
            v["tokenid"] = json!(token);
        }
        if let Some(e) = self.exitstatus() {
            v["exitstatus"] = json!(e);
        }
        v
    }

    fn log_json(&self, start: usize, limit: usize) -> Value {
        Value::Array(
            self.log
                .iter()
                .enumerate()
                .skip(start)
                .take(limit)
                .map(|(i, t)| json!({"n": i + 1, "t": t}))
                .collect(),
        )
    }
}

/// What a task is: its UPID type and id, how long it takes, its first log line.
pub struct TaskSpec<'a> {
    pub kind: &'a str,
    pub id: &'a str,
    pub duration: Duration,
    pub first_line: String,
}

/// Registers a task and runs it: after `duration`, `work` (unless a `task`
/// fault for this type was armed, whose message becomes the result); on an
/// error `rollback` restores the cluster (a failed create or clone leaves no
/// VM, anything else leaves the VM as it was). Returns the UPID string.
pub fn spawn<W, R>(
    shared: &Shared,
    cl: &mut Cluster,
    spec: TaskSpec<'_>,
    work: W,
    rollback: R,
) -> String
where
    W: Future<Output = Result<(), String>> + Send + 'static,
    R: FnOnce(&mut Cluster) + Send + 'static,
{
    let TaskSpec {
        kind,
        id,
        duration,
        first_line,
    } = spec;
    cl.task_seq += 1;
    let upid = Upid {
        node: cl.opts.node.clone(),
        pid: 0x0010_0000 + cl.task_seq,
        pstart: cl.pstart,
        starttime: unix_now() as u32,
        kind: kind.to_owned(),
        id: id.to_owned(),
        user: super::caller(cl),
    };
    let text = upid.format();
    // A `task` fault whose message is `WARNINGS: <n>` is a task that did its
    // work and succeeded with warnings, as PVE's are; any other message fails it.
    let fault = cl.take_task_fault(kind).map(|msg| {
        if msg.starts_with("WARNINGS: ") {
            ops::Armed::Warnings(msg)
        } else {
            ops::Armed::Fail(msg)
        }
    });
    ops::spawn(
        shared,
        cl,
        ops::Start {
            id: text,
            meta: upid,
            first_line,
            duration,
            fault,
        },
        work,
        rollback,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upid_round_trips() {
        let u = Upid {
            node: "pve".into(),
            pid: 0x1A2B,
            pstart: 0xFF,
            starttime: 0x6745_0000,
            kind: "qmclone".into(),
            id: "9000".into(),
            user: "root@pam!golden".into(),
        };
        let s = u.format();
        assert_eq!(
            s,
            "UPID:pve:00001A2B:000000FF:67450000:qmclone:9000:root@pam!golden:"
        );
        assert_eq!(Upid::parse(&s), Some(u));
    }

    #[test]
    fn upid_parse_accepts_real_pve_upids_and_rejects_garbage() {
        let real = "UPID:pve1:000F2A1C:0B8E7F3A:6745A1B2:download::root@pam:";
        let u = Upid::parse(real).unwrap();
        assert_eq!(
            (u.kind.as_str(), u.id.as_str(), u.user.as_str()),
            ("download", "", "root@pam")
        );
        assert_eq!(u.format(), real);
        for bad in [
            "",
            "UPID:",
            "UPID:pve:xyz:0:0:qmstart:1:root@pam:",
            "pve:00000001:00000001:00000001:qmstart:1:root@pam:",
        ] {
            assert_eq!(Upid::parse(bad), None, "{bad}");
        }
    }
}
