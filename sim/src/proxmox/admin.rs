//! The simulator's own API under `/_sim` (JSON, no auth): what tests use to
//! inject faults and to inspect what the client did.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;
use serde_json::{json, Value};

use super::state::{debian_fs, Cluster, Shared, Vm};
use super::{vms, ApiError};

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Fault {
    /// The matching request gets this status instead of being served.
    Http {
        method: Option<String>,
        /// A substring or regex of the path after `/api2/json`.
        path: Option<String>,
        status: u16,
        message: Option<String>,
        times: Option<u32>,
    },
    /// The next task(s) of this type end with `message` as exit status.
    Task {
        task_type: String,
        message: String,
        times: Option<u32>,
    },
    /// The agent of a VM (all when `vmid` is null) never comes up.
    Agent { vmid: Option<u32>, mode: String },
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
    /// Every API response is delayed.
    Latency { ms: u64 },
}

/// What an `exec` fault makes the fake shell answer.
pub struct ExecFault {
    pub exitcode: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Uses up one of a rule's `times`; a rule at zero is dropped.
fn consume(times: &mut Option<u32>) -> bool {
    match times {
        Some(0) => false,
        Some(n) => {
            *n -= 1;
            true
        }
        None => true,
    }
}

fn path_matches(pattern: &str, path: &str) -> bool {
    path.contains(pattern) || Regex::new(pattern).is_ok_and(|re| re.is_match(path))
}

impl Cluster {
    pub fn take_task_fault(&mut self, kind: &str) -> Option<String> {
        let mut out = None;
        for f in &mut self.faults {
            if let Fault::Task {
                task_type,
                message,
                times,
            } = f
            {
                if task_type == kind && consume(times) {
                    out = Some(message.clone());
                    break;
                }
            }
        }
        self.drop_spent_faults();
        out
    }

    /// `(status, message)` for a request an `http` rule intercepts.
    pub fn take_http_fault(&mut self, method: &str, path: &str) -> Option<(u16, String)> {
        let mut out = None;
        for f in &mut self.faults {
            if let Fault::Http {
                method: m,
                path: p,
                status,
                message,
                times,
            } = f
            {
                let method_ok = m.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method));
                let path_ok = p.as_deref().is_none_or(|p| path_matches(p, path));
                if method_ok && path_ok && consume(times) {
                    let default = if *status == 401 {
                        "Authentication failed!"
                    } else {
                        "simulated failure"
                    };
                    out = Some((*status, message.clone().unwrap_or_else(|| default.into())));
                    break;
                }
            }
        }
        self.drop_spent_faults();
        out
    }

    pub fn agent_never(&self, vmid: u32) -> bool {
        self.faults.iter().any(|f| {
            matches!(f, Fault::Agent { vmid: v, mode } if mode == "never" && v.is_none_or(|v| v == vmid))
        })
    }

    pub fn take_exec_fault(&mut self, joined: &str) -> Option<ExecFault> {
        let mut out = None;
        for f in &mut self.faults {
            if let Fault::Exec {
                pattern,
                exitcode,
                stdout,
                stderr,
                times,
            } = f
            {
                if joined.contains(pattern.as_str()) && consume(times) {
                    out = Some(ExecFault {
                        exitcode: *exitcode,
                        stdout: stdout.clone(),
                        stderr: stderr.clone(),
                    });
                    break;
                }
            }
        }
        self.drop_spent_faults();
        out
    }

    pub fn latency_ms(&self) -> u64 {
        self.faults
            .iter()
            .map(|f| match f {
                Fault::Latency { ms } => *ms,
                _ => 0,
            })
            .sum()
    }

    fn drop_spent_faults(&mut self) {
        self.faults.retain(|f| {
            !matches!(
                f,
                Fault::Http { times: Some(0), .. }
                    | Fault::Task { times: Some(0), .. }
                    | Fault::Exec { times: Some(0), .. }
            )
        });
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

/// Serves `/_sim/...`; `path` is what follows `/_sim`.
pub async fn handle(
    shared: &Shared,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let bad = |e: serde_json::Error| ApiError::new(400, format!("bad JSON body: {e}"));
    match (method, path.trim_end_matches('/')) {
        ("GET", "/violations") => {
            let cl = shared.lock();
            Ok(Value::Array(
                cl.violations
                    .iter()
                    .map(|v| json!({"kind": v.kind, "method": v.method, "path": v.path, "detail": v.detail}))
                    .collect(),
            ))
        }
        ("GET", "/requests") => {
            let cl = shared.lock();
            Ok(Value::Array(
                cl.requests
                    .iter()
                    .map(|r| json!({"method": r.method, "path": r.path, "status": r.status, "auth_ok": r.auth_ok}))
                    .collect(),
            ))
        }
        ("DELETE", "/requests") => {
            shared.lock().requests.clear();
            Ok(json!({}))
        }
        ("GET", "/vms") => {
            let cl = shared.lock();
            Ok(Value::Array(
                cl.vms.values().map(|vm| cl.vm_json(vm)).collect(),
            ))
        }
        ("POST", "/vms") => {
            let req: AddVmReq = serde_json::from_slice(body).map_err(bad)?;
            add_vm(&mut shared.lock(), req)
        }
        ("POST", "/faults") => {
            let rules: Vec<Fault> = match serde_json::from_slice::<Value>(body).map_err(bad)? {
                v @ Value::Array(_) => serde_json::from_value(v).map_err(bad)?,
                v => vec![serde_json::from_value(v).map_err(bad)?],
            };
            let mut cl = shared.lock();
            eprintln!("golden-sim: faults armed: {rules:?}");
            cl.faults.extend(rules);
            Ok(json!({"faults": cl.faults.len()}))
        }
        ("DELETE", "/faults") => {
            shared.lock().faults.clear();
            Ok(json!({}))
        }
        ("POST", "/clone") => {
            let req: CloneReq = serde_json::from_slice(body).map_err(bad)?;
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
        _ => Err(ApiError::new(
            404,
            format!("no admin endpoint {method} /_sim{path}"),
        )),
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
    let disk = format!(
        "{}-{}-disk-0",
        if req.template { "base" } else { "vm" },
        req.vmid
    );
    let mut cfg = BTreeMap::new();
    let name = req.name.unwrap_or_else(|| format!("vm-{}", req.vmid));
    cfg.insert("memory".to_owned(), "1024".to_owned());
    cfg.insert("cores".to_owned(), "1".to_owned());
    cfg.insert("scsi0".to_owned(), format!("{st}:{disk},size=2G"));
    if req.template {
        cfg.insert("template".to_owned(), "1".to_owned());
    }
    if let Some(t) = req.tags {
        let t = super::state::normalize_tags(&t).map_err(|why| ApiError::param("tags", why))?;
        if !t.is_empty() {
            cfg.insert("tags".to_owned(), t);
        }
    }
    if let Some(d) = req.description {
        cfg.insert("description".to_owned(), d);
    }
    let mut vol = cl.new_volume(&st, &disk, Some(req.vmid), 2 << 30, "raw");
    vol.files = debian_fs(&name);
    cfg.insert("name".to_owned(), name);
    cl.add_volume(vol);
    cl.vms.insert(req.vmid, Vm::new(req.vmid, cfg));
    Ok(cl.vm_json(cl.vm(req.vmid)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_rules_parse_and_count_down() {
        let rules: Vec<Fault> = serde_json::from_value(json!([
            {"kind": "http", "method": "POST", "path": "/clone$", "status": 500, "message": "boom", "times": 1},
            {"kind": "task", "task_type": "qmclone", "message": "no space", "times": 2},
            {"kind": "exec", "match": "apt-get", "exitcode": 100, "stderr": "E: x"},
            {"kind": "agent", "vmid": null, "mode": "never"},
            {"kind": "latency", "ms": 5}
        ]))
        .unwrap();
        assert_eq!(rules.len(), 5);
        let mut times = Some(1);
        assert!(consume(&mut times));
        assert!(!consume(&mut times));
        assert!(path_matches("/clone$", "/nodes/pve/qemu/9000/clone"));
        assert!(path_matches("qemu/9000", "/nodes/pve/qemu/9000/clone"));
        assert!(!path_matches("/clone$", "/nodes/pve/qemu/9000/config"));
    }
}
