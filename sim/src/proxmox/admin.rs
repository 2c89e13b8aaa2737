//! The simulator's own API under `/_sim` (JSON, no auth): what tests use to
//! inject faults and to inspect what the client did.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::access::AccessConfig;
use super::state::{debian_fs, description_as_read_back, normalize_tags, Cluster, Shared, Vm};
use super::{vms, ApiError};
use crate::core::admin::{bad_json, AdminError};
use crate::core::faults::FaultKind;

/// PVE's own fault kinds, beside the core's `http` and `latency`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PveFault {
    /// The next task(s) of this type end with `message` as exit status.
    Task {
        task_type: String,
        message: String,
        times: Option<u32>,
    },
    /// The agent of a VM (all when `vmid` is null) never comes up.
    Agent { vmid: Option<u32>, mode: String },
    /// The next matching agent call(s) time out inside PVE: qemu-server's
    /// agent call waits a few seconds for the guest, then dies with
    /// "VM N qga command 'guest-<cmd>' failed - got timeout" (HTTP 500).
    /// `command` is the API's name (`exec-status`, `ping`, `file-write`, ...).
    #[serde(rename = "agent_timeout")]
    AgentTimeout {
        command: String,
        vmid: Option<u32>,
        times: Option<u32>,
    },
    /// The fake shell's answer to matching `agent/exec` commands.
    Exec {
        #[serde(rename = "match")]
        pattern: String,
        #[serde(default)]
        exitcode: i64,
        #[serde(default)]
        stdout: String,
        #[serde(default)]
        stderr: String,
        times: Option<u32>,
    },
}

impl FaultKind for PveFault {
    fn times(&mut self) -> Option<&mut Option<u32>> {
        match self {
            PveFault::Task { times, .. }
            | PveFault::Exec { times, .. }
            | PveFault::AgentTimeout { times, .. } => Some(times),
            PveFault::Agent { .. } => None,
        }
    }
}

/// What an `exec` fault makes the fake shell answer.
pub struct ExecFault {
    pub exitcode: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Cluster {
    pub fn take_task_fault(&mut self, kind: &str) -> Option<String> {
        self.sim.faults.take(|f| match f {
            PveFault::Task {
                task_type, message, ..
            } if task_type == kind => Some(message.clone()),
            _ => None,
        })
    }

    /// Whether this agent call times out (one of the rule's `times` used).
    pub fn take_agent_timeout(&mut self, vmid: u32, cmd: &str) -> bool {
        self.sim
            .faults
            .take(|f| match f {
                PveFault::AgentTimeout {
                    command, vmid: v, ..
                } if command == cmd && v.is_none_or(|v| v == vmid) => Some(()),
                _ => None,
            })
            .is_some()
    }

    pub fn agent_never(&self, vmid: u32) -> bool {
        self.sim.faults.any(|f| {
            matches!(f, PveFault::Agent { vmid: v, mode } if mode == "never" && v.is_none_or(|v| v == vmid))
        })
    }

    pub fn take_exec_fault(&mut self, joined: &str) -> Option<ExecFault> {
        self.sim.faults.take(|f| match f {
            PveFault::Exec {
                pattern,
                exitcode,
                stdout,
                stderr,
                ..
            } if joined.contains(pattern.as_str()) => Some(ExecFault {
                exitcode: *exitcode,
                stdout: stdout.clone(),
                stderr: stderr.clone(),
            }),
            _ => None,
        })
    }
}

#[derive(Deserialize)]
struct CloneReq {
    vmid: u32,
    newid: u32,
    name: Option<String>,
    #[serde(default)]
    full: bool,
}

#[derive(Deserialize)]
struct AddVmReq {
    vmid: u32,
    name: Option<String>,
    #[serde(default)]
    template: bool,
    tags: Option<String>,
    description: Option<String>,
}

/// Serves PVE's own `/_sim/...` endpoints (`path` follows `/_sim`; the
/// core serves `/violations`, `/requests` and `/faults`); `None` when there is
/// no such endpoint.
pub async fn handle(
    shared: &Shared,
    method: &str,
    path: &str,
    body: &[u8],
) -> Option<Result<Value, AdminError>> {
    Some(match (method, path.trim_end_matches('/')) {
        ("GET", "/vms") => {
            let cl = shared.lock();
            Ok(Value::Array(
                cl.vms.values().map(|vm| cl.vm_json(vm)).collect(),
            ))
        }
        ("POST", "/vms") => serde_json::from_slice::<AddVmReq>(body)
            .map_err(bad_json)
            .and_then(|req| add_vm(&mut shared.lock(), req).map_err(AdminError::from)),
        // Users, groups, custom roles, tokens and ACL entries, replacing
        // the earlier ones (root@pam and the start-up token stay).
        ("PUT", "/access") => serde_json::from_slice::<AccessConfig>(body)
            .map_err(bad_json)
            .and_then(|cfg| {
                shared
                    .lock()
                    .access
                    .configure(cfg)
                    .map(|()| Value::Null)
                    .map_err(|e| AdminError::new(400, e))
            }),
        ("POST", "/clone") => match serde_json::from_slice::<CloneReq>(body) {
            Ok(req) => clone(shared, req).await.map_err(AdminError::from),
            Err(e) => Err(bad_json(e)),
        },
        _ => return None,
    })
}

/// `POST /_sim/clone`: the API clone, done synchronously.
async fn clone(shared: &Shared, req: CloneReq) -> Result<Value, ApiError> {
    let job = {
        let mut cl = shared.lock();
        vms::prepare_clone(&mut cl, req.vmid, req.newid, req.name, req.full, None, None)?
    };
    let newid = job.newid;
    match job.run().await {
        Ok(()) => {
            let mut cl = shared.lock();
            vms::finish_clone(&mut cl, newid);
            Ok(cl.vm_json(cl.vm(newid)?))
        }
        Err(msg) => {
            shared.lock().remove_vm(newid);
            Err(ApiError::new(500, msg))
        }
    }
}

/// A foreign VM or template, there at once (tests of "only our own").
fn add_vm(cl: &mut Cluster, req: AddVmReq) -> Result<Value, ApiError> {
    if cl.vms.contains_key(&req.vmid) {
        return Err(ApiError::new(
            500,
            format!("VM {} already exists", req.vmid),
        ));
    }
    let st = cl.opts.storage.clone();
    let format = cl.storage_type(&st).default_format();
    let mut disk = cl.free_disk_name(&st, req.vmid, format);
    if req.template {
        disk = disk.replacen("vm-", "base-", 1);
    }
    let mut cfg = BTreeMap::new();
    let name = req.name.unwrap_or_else(|| format!("vm-{}", req.vmid));
    cfg.insert("memory".to_owned(), "1024".to_owned());
    cfg.insert("cores".to_owned(), "1".to_owned());
    cfg.insert("scsi0".to_owned(), format!("{st}:{disk},size=2G"));
    if req.template {
        cfg.insert("template".to_owned(), "1".to_owned());
    }
    if let Some(t) = req.tags {
        let t = normalize_tags(&t).map_err(|why| ApiError::param("tags", why))?;
        if !t.is_empty() {
            cfg.insert("tags".to_owned(), t);
        }
    }
    if let Some(d) = req
        .description
        .as_deref()
        .and_then(description_as_read_back)
    {
        cfg.insert("description".to_owned(), d);
    }
    let mut vol = cl.new_volume(&st, &disk, Some(req.vmid), 2 << 30, format);
    vol.files = debian_fs(&name);
    cfg.insert("name".to_owned(), name);
    cl.add_volume(vol);
    let lag = cl.opts.stats_lag();
    cl.vms
        .insert(req.vmid, Vm::new(req.vmid, cfg).known_long(lag));
    Ok(cl.vm_json(cl.vm(req.vmid)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::faults::Fault;
    use serde_json::json;

    #[test]
    fn fault_rules_parse_and_count_down() {
        let rules: Vec<Fault<PveFault>> = serde_json::from_value(json!([
            {"kind": "http", "method": "POST", "path": "/clone$", "status": 500, "message": "boom", "times": 1},
            {"kind": "task", "task_type": "qmclone", "message": "no space", "times": 2},
            {"kind": "exec", "match": "apt-get", "exitcode": 100, "stderr": "E: x"},
            {"kind": "agent", "vmid": null, "mode": "never"},
            {"kind": "latency", "ms": 5}
        ]))
        .unwrap();
        assert_eq!(rules.len(), 5);
        let opts = std::sync::Arc::new(super::super::state::Options {
            node: "pve".into(),
            storage: "local-lvm".into(),
            token: "root@pam!golden=s3cret".into(),
            task_ms: 10,
            agent_ready_ms: 10,
            backend: super::super::state::Backend::Instant,
            base_image: None,
            state_dir: std::env::temp_dir().join("golden-sim-unit"),
            extra_vms: 0,
            stats_lag_ms: 0,
            extra_storages: Vec::new(),
        });
        let mut cl = Cluster::new(opts);
        cl.sim.faults.arm(rules);
        assert_eq!(cl.sim.faults.latency_ms(), 5);
        assert!(cl.agent_never(101));
        assert_eq!(cl.take_task_fault("qmstart"), None);
        assert_eq!(cl.take_task_fault("qmclone").as_deref(), Some("no space"));
        assert_eq!(cl.take_task_fault("qmclone").as_deref(), Some("no space"));
        assert_eq!(cl.take_task_fault("qmclone"), None, "used up");
        let e = cl
            .take_exec_fault("/bin/sh -c apt-get install -y x")
            .unwrap();
        assert_eq!((e.exitcode, e.stderr.as_str()), (100, "E: x"));
        assert!(cl.take_exec_fault("apt-get").is_some(), "no times: forever");
        assert_eq!(cl.sim.faults.len(), 4);
    }
}
