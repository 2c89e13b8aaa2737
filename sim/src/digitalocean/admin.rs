//! The DO simulator's own `/_sim` endpoints (the core serves `/violations`,
//! `/requests`, `/faults`):
//!
//! - `GET /droplets`, `/keys`, `/images` (public ones too), `/tags`
//! - `PUT /ratelimit {"remaining_hour": N, "remaining_minute": M,
//!   "reset_in": S, "token"?}` (`reset_in`: the hour's counted calls
//!   expire S seconds from now, so `ratelimit-reset` is that close)
//! - `POST /images` (one or an array): plant private snapshots
//! - `PUT /behaviour {"snapshot_errors": n, "never_power_off": b, "transfer_ms": n}`
//! - `POST /droplets/{id}/exec {"command", "stdin" (base64)}`: the ssh relay's

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::state::{Account, Image, Shared, Status};
use crate::core::admin::{bad_json, AdminError};
use crate::core::faults::FaultKind;
use crate::core::shell;

/// DO's own fault kinds, beside the core's `http` and `latency`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DoFault {
    /// The next action(s) of this type (`snapshot`, `transfer`, `create`,
    /// `shutdown`, ...) end `errored`.
    Action {
        action_type: String,
        times: Option<u32>,
    },
}

impl FaultKind for DoFault {
    fn times(&mut self) -> Option<&mut Option<u32>> {
        match self {
            DoFault::Action { times, .. } => Some(times),
        }
    }
}

impl Account {
    /// Whether the next action of this type is to end `errored` (a fault
    /// rule or the `snapshot_errors` behaviour, one use taken).
    pub fn take_action_fault(&mut self, kind: &str) -> bool {
        if kind == "snapshot" && self.behaviour.snapshot_errors > 0 {
            self.behaviour.snapshot_errors -= 1;
            return true;
        }
        self.sim
            .faults
            .take(|f| match f {
                DoFault::Action { action_type, .. } if action_type == kind => Some(()),
                _ => None,
            })
            .is_some()
    }
}

#[derive(Deserialize)]
struct RateReq {
    remaining_hour: Option<usize>,
    remaining_minute: Option<usize>,
    /// Seconds until the hour's counted calls (those older than the
    /// minute) expire: `ratelimit-reset` this close.
    reset_in: Option<u64>,
    /// Whose budget (default: the start-up token).
    token: Option<String>,
}

#[derive(Deserialize, Default)]
struct BehaviourReq {
    snapshot_errors: Option<u32>,
    never_power_off: Option<bool>,
    transfer_ms: Option<u64>,
}

#[derive(Deserialize)]
struct PlantReq {
    name: String,
    #[serde(default)]
    tags: Vec<String>,
    created_at: Option<String>,
    #[serde(default = "default_distribution")]
    distribution: String,
    regions: Option<Vec<String>>,
    /// `available` (default) or `pending`, `deleted`, ...
    status: Option<String>,
    #[serde(default)]
    description: String,
}

fn default_distribution() -> String {
    "Ubuntu".into()
}

#[derive(Deserialize)]
struct ExecReq {
    command: String,
    #[serde(default)]
    stdin: String,
}

pub fn handle(
    shared: &Shared,
    method: &str,
    path: &str,
    body: &[u8],
) -> Option<Result<Value, AdminError>> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    Some(match (method, segs.as_slice()) {
        ("GET", ["droplets"]) => {
            let a = shared.lock();
            Ok(Value::Array(a.droplets.values().map(|d| a.droplet_json(d)).collect()))
        }
        ("GET", ["keys"]) => Ok(Value::Array(
            shared.lock().keys.values().map(|k| k.json()).collect(),
        )),
        ("GET", ["images"]) => Ok(Value::Array(
            shared.lock().images.values().map(Image::json).collect(),
        )),
        ("GET", ["tags"]) => {
            let a = shared.lock();
            Ok(Value::Array(a.tags.iter().map(|t| a.tag_json(t)).collect()))
        }
        ("PUT", ["ratelimit"]) => parse::<RateReq>(body).map(|r| {
            let mut a = shared.lock();
            let token = r.token.unwrap_or_else(|| a.opts.token.clone());
            a.rate
                .set_remaining(&token, r.remaining_hour, r.remaining_minute, r.reset_in);
            json!({})
        }),
        ("PUT", ["behaviour"]) => parse::<BehaviourReq>(body).map(|r| {
            let mut a = shared.lock();
            let b = &mut a.behaviour;
            if let Some(n) = r.snapshot_errors {
                b.snapshot_errors = n;
            }
            if let Some(n) = r.never_power_off {
                b.never_power_off = n;
            }
            if let Some(ms) = r.transfer_ms {
                b.transfer_ms = Some(ms);
            }
            json!({"snapshot_errors": b.snapshot_errors, "never_power_off": b.never_power_off, "transfer_ms": b.transfer_ms})
        }),
        ("POST", ["images"]) => plant(shared, body),
        ("POST", ["droplets", id, "exec"]) => match id.parse::<u64>() {
            Ok(id) => parse::<ExecReq>(body).and_then(|r| exec(shared, id, r)),
            Err(_) => Err(AdminError::new(404, format!("no droplet {id}"))),
        },
        _ => return None,
    })
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(bad_json)
}

/// Private snapshots there at once (lookups over many images, images the
/// client did not make).
fn plant(shared: &Shared, body: &[u8]) -> Result<Value, AdminError> {
    let reqs: Vec<PlantReq> = match serde_json::from_slice::<Value>(body).map_err(bad_json)? {
        v @ Value::Array(_) => serde_json::from_value(v).map_err(bad_json)?,
        v => vec![serde_json::from_value(v).map_err(bad_json)?],
    };
    let mut a = shared.lock();
    let mut out = Vec::new();
    for r in reqs {
        let id = a.next_id();
        for t in &r.tags {
            if !a.tags.contains(t) {
                a.tags.insert(t.clone());
            }
        }
        let status = match r.status.as_deref() {
            None | Some("available") => "available",
            Some("pending") => "pending",
            Some("deleted") => "deleted",
            Some(other) => {
                return Err(AdminError::new(
                    400,
                    format!("status {other}: use available, pending or deleted"),
                ))
            }
        };
        let img = Image {
            id,
            name: r.name,
            kind: "snapshot",
            distribution: r.distribution,
            slug: None,
            public: false,
            regions: r.regions.unwrap_or_else(|| vec!["nyc3".into()]),
            created_at: r.created_at.unwrap_or_else(super::state::now),
            min_disk_size: 25,
            size_gigabytes: 2.36,
            description: r.description,
            tags: r.tags,
            status,
            fs: crate::core::guestfs::debian_fs("localhost"),
            path: None,
        };
        out.push(img.json());
        a.images.insert(id, img);
    }
    Ok(Value::Array(out))
}

/// Runs a command in an active droplet's shell (the ssh relay's call).
fn exec(shared: &Shared, id: u64, r: ExecReq) -> Result<Value, AdminError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let stdin = b64
        .decode(r.stdin.as_bytes())
        .map_err(|e| AdminError::new(400, format!("stdin: bad base64: {e}")))?;
    let mut a = shared.lock();
    let d = a
        .droplets
        .get_mut(&id)
        .ok_or_else(|| AdminError::new(404, format!("no droplet {id}")))?;
    if d.status != Status::Active {
        return Err(AdminError::new(
            409,
            format!("droplet {id} is {}", d.status.as_str()),
        ));
    }
    let argv = ["/bin/sh".to_owned(), "-c".to_owned(), r.command];
    let input = (!stdin.is_empty()).then_some(stdin.as_slice());
    let o = shell::run_argv(&mut d.fs, &argv, input);
    // Units it started with `systemd-run` run after it.
    shell::run_started_units(&mut d.fs);
    Ok(json!({
        "exit_code": o.exitcode,
        "stdout": b64.encode(&o.stdout),
        "stderr": b64.encode(&o.stderr),
    }))
}
