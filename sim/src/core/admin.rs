//! The simulator's own API under `/_sim` (JSON, no auth): what tests use to
//! inject faults and to inspect what the client did. The core serves what
//! every simulator has; a simulator adds its own endpoints (PVE: `/vms`,
//! `/clone`) through `Simulator::admin`.
//!
//! - `GET /_sim/violations`: schema violations (`kind`, `method`, `path`, `detail`)
//! - `GET|DELETE /_sim/requests`: the request log (`method`, `path`, `status`, `auth_ok`)
//! - `POST /_sim/faults` (one rule or an array) -> `{"faults": N}`; `DELETE /_sim/faults`

use serde_json::{json, Value};

use super::faults::Fault;
use super::state::{Shared, SimState};

/// An admin API error: the status, and the message sent as the reason
/// phrase and as `{"error": message}`.
#[derive(Debug, Clone)]
pub struct AdminError {
    pub status: u16,
    pub message: String,
}

impl AdminError {
    pub fn new(status: u16, message: impl Into<String>) -> AdminError {
        AdminError {
            status,
            message: message.into(),
        }
    }
}

pub fn bad_json(e: serde_json::Error) -> AdminError {
    AdminError::new(400, format!("bad JSON body: {e}"))
}

pub fn not_found(method: &str, path: &str) -> AdminError {
    AdminError::new(404, format!("no admin endpoint {method} /_sim{path}"))
}

/// Serves the core's part of `/_sim/...` (`path` is what follows `/_sim`);
/// `None` when the endpoint is not one of the core's.
pub fn handle<S: SimState>(
    shared: &Shared<S>,
    method: &str,
    path: &str,
    body: &[u8],
) -> Option<Result<Value, AdminError>> {
    Some(match (method, path.trim_end_matches('/')) {
        ("GET", "/violations") => Ok(shared.lock().records().violations.json()),
        ("GET", "/requests") => Ok(shared.lock().records().requests.json()),
        ("DELETE", "/requests") => {
            shared.lock().records().requests.clear();
            Ok(json!({}))
        }
        ("POST", "/faults") => arm(shared, body),
        ("DELETE", "/faults") => {
            shared.lock().records().faults.clear();
            Ok(json!({}))
        }
        _ => return None,
    })
}

fn arm<S: SimState>(shared: &Shared<S>, body: &[u8]) -> Result<Value, AdminError> {
    let rules: Vec<Fault<S::Fault>> =
        match serde_json::from_slice::<Value>(body).map_err(bad_json)? {
            v @ Value::Array(_) => serde_json::from_value(v).map_err(bad_json)?,
            v => vec![serde_json::from_value(v).map_err(bad_json)?],
        };
    let n = shared.lock().records().faults.arm(rules);
    Ok(json!({"faults": n}))
}
