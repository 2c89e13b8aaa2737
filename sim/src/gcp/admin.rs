//! The GCE simulator's own `/_sim` endpoints (the core serves `/violations`,
//! `/requests`, `/faults`):
//!
//! - `GET /instances`, `/images` (this project's), `/disks`, `/operations`
//! - `PUT /behaviour {"wait_cap_ms": n, "never_power_off": b, "hung_guests": b, "op_ms": {"images.insert": 30000}}`
//! - `POST /instances/{name}/serial {"text": "..."}`: bytes on its serial port
//! - `POST /images {"name", "labels", "description", "family"}` (or an array of them): READY images seeded
//!
//! Fault kinds beside the core's `http` and `latency`:
//! `{"kind": "operation", "operation_type": "insert", "target": "global/images/",
//!   "code": "QUOTA_EXCEEDED", "message": "...", "http_status": 403, "times": 1}`:
//! the next matching operation ends `DONE` with `error.errors[]`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::state::{Project, Shared};
use crate::core::admin::{bad_json, AdminError};
use crate::core::faults::{path_matches, FaultKind};

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum GcpFault {
    Operation {
        /// `insert`, `delete`, `stop`, `setLabels`, `patch`; none: any.
        operation_type: Option<String>,
        /// A substring or regex of the target's path.
        target: Option<String>,
        #[serde(default = "quota")]
        code: String,
        message: Option<String>,
        http_status: Option<u16>,
        times: Option<u32>,
    },
}

fn quota() -> String {
    "QUOTA_EXCEEDED".into()
}

impl FaultKind for GcpFault {
    fn times(&mut self) -> Option<&mut Option<u32>> {
        match self {
            GcpFault::Operation { times, .. } => Some(times),
        }
    }
}

/// An injected operation failure: code, message, HTTP status.
pub struct OpFailure {
    pub code: String,
    pub message: String,
    pub http_status: u16,
}

impl Project {
    /// The failure armed for this operation, if any (one use taken).
    pub fn take_op_fault(&mut self, op_type: &str, target: &str) -> Option<OpFailure> {
        let region = self.opts.region().to_owned();
        self.sim.faults.take(|f| match f {
            GcpFault::Operation {
                operation_type,
                target: t,
                code,
                message,
                http_status,
                ..
            } if operation_type.as_deref().is_none_or(|o| o == op_type)
                && t.as_deref().is_none_or(|t| path_matches(t, target)) =>
            {
                // QUOTA_EXCEEDED's message and status as GCE words them
                // (operations failing on quota answer 403 FORBIDDEN).
                let quota = code == "QUOTA_EXCEEDED";
                Some(OpFailure {
                    code: code.clone(),
                    message: message.clone().unwrap_or_else(|| {
                        if quota {
                            format!("Quota 'CPUS' exceeded.  Limit: 24.0 in region {region}.")
                        } else {
                            format!("simulated {code}")
                        }
                    }),
                    http_status: http_status.unwrap_or(if quota { 403 } else { 400 }),
                })
            }
            _ => None,
        })
    }
}

/// The methods that start operations, as `op_ms` names them.
pub const TIMED_METHODS: &[&str] = &[
    "images.insert",
    "images.patch",
    "images.setLabels",
    "images.delete",
    "instances.insert",
    "instances.stop",
    "instances.delete",
    "disks.delete",
];

#[derive(Deserialize)]
struct BehaviourReq {
    wait_cap_ms: Option<u64>,
    never_power_off: Option<bool>,
    #[serde(default)]
    hung_guests: Option<bool>,
    /// Per method (`images.insert`): how long its operations run; `null`
    /// for a method goes back to `--op-ms`.
    op_ms: Option<std::collections::BTreeMap<String, Option<u64>>>,
}

#[derive(Deserialize)]
struct SerialReq {
    text: String,
}

pub fn handle(
    shared: &Shared,
    method: &str,
    path: &str,
    body: &[u8],
) -> Option<Result<Value, AdminError>> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    Some(match (method, segs.as_slice()) {
        ("GET", ["instances"]) => {
            let p = shared.lock();
            Ok(Value::Array(
                p.instances.values().map(|i| i.json(&p.opts)).collect(),
            ))
        }
        ("GET", ["images"]) => Ok(shared.lock().images_json()),
        ("GET", ["disks"]) => {
            let p = shared.lock();
            Ok(Value::Array(
                p.disks.values().map(|d| d.json(&p.opts)).collect(),
            ))
        }
        ("GET", ["operations"]) => {
            let p = shared.lock();
            Ok(Value::Array(
                p.ops.ids().filter_map(|id| p.op_json(id)).collect(),
            ))
        }
        ("PUT", ["behaviour"]) => serde_json::from_slice::<BehaviourReq>(body)
            .map_err(bad_json)
            .and_then(|r| {
                let methods = r.op_ms.iter().flat_map(|m| m.keys());
                match methods
                    .into_iter()
                    .find(|m| !TIMED_METHODS.contains(&m.as_str()))
                {
                    Some(m) => Err(AdminError::new(
                        400,
                        format!(
                            "op_ms: {m} starts no operation here; one of {}",
                            TIMED_METHODS.join(", ")
                        ),
                    )),
                    None => Ok(r),
                }
            })
            .map(|r| {
                let mut p = shared.lock();
                if let Some(ms) = r.wait_cap_ms {
                    p.behaviour.wait_cap = Duration::from_millis(ms);
                }
                if let Some(b) = r.never_power_off {
                    p.behaviour.never_power_off = b;
                }
                if let Some(b) = r.hung_guests {
                    p.behaviour.hung_guests = b;
                }
                for (method, ms) in r.op_ms.unwrap_or_default() {
                    match ms {
                        Some(ms) => p.behaviour.op_ms.insert(method, ms),
                        None => p.behaviour.op_ms.remove(&method),
                    };
                }
                json!({"wait_cap_ms": p.behaviour.wait_cap.as_millis() as u64,
                           "never_power_off": p.behaviour.never_power_off,
                           "hung_guests": p.behaviour.hung_guests,
                           "op_ms": p.behaviour.op_ms})
            }),
        // One image, or an array of them (a bulk seed in one request).
        ("POST", ["images"]) => match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => serde_json::from_slice::<Vec<SeedImage>>(body)
                .map_err(bad_json)
                .and_then(|rs| {
                    rs.into_iter()
                        .map(|r| seed_image(shared, r))
                        .collect::<Result<Vec<_>, _>>()
                        .map(Value::Array)
                }),
            _ => serde_json::from_slice::<SeedImage>(body)
                .map_err(bad_json)
                .and_then(|r| seed_image(shared, r)),
        },
        ("POST", ["instances", name, "serial"]) => serde_json::from_slice::<SerialReq>(body)
            .map_err(bad_json)
            .and_then(|r| {
                let mut p = shared.lock();
                let inst = p
                    .instances
                    .get_mut(*name)
                    .ok_or_else(|| AdminError::new(404, format!("no instance {name}")))?;
                inst.serial.write(r.text.as_bytes());
                Ok(json!({"written": r.text.len()}))
            }),
        _ => return None,
    })
}

/// `POST /_sim/images`: a READY image in the project, as if made earlier
/// (by golden in a state since lost, or by hand): name, labels, description,
/// family. It carries no files (an instance from it boots an empty guest).
/// An array seeds each in order; the first that cannot be (a name taken)
/// answers the error, those before it stay.
#[derive(serde::Deserialize)]
struct SeedImage {
    name: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    family: Option<String>,
}

fn seed_image(shared: &Shared, r: SeedImage) -> Result<Value, AdminError> {
    let mut p = shared.lock();
    let project = p.opts.project.clone();
    let key = (project.clone(), r.name.clone());
    if p.images.contains_key(&key) {
        return Err(AdminError::new(409, format!("image {} exists", r.name)));
    }
    let id = p.next_id();
    let seq = p.next_seq();
    let image = super::state::Image {
        project,
        name: r.name,
        id,
        created_ms: super::state::now_ms(),
        seq,
        description: r.description.filter(|d| !d.is_empty()),
        family: r.family.filter(|f| !f.is_empty()),
        labels: r.labels,
        status: "READY",
        source_disk: None,
        disk_size_gb: 10,
        deprecated: None,
        fs: Default::default(),
        file: None,
    };
    let json = image.json();
    p.images.insert(key, image);
    Ok(json)
}
