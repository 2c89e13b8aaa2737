//! The request log: every API request a simulator served (not the admin
//! API's), as tests read it from `GET /_sim/requests` to assert what the
//! client did rather than trusting its success.

use serde_json::{json, Value};

pub struct RequestRecord {
    pub method: String,
    /// The API's part of the path (PVE: after `/api2/json`).
    pub path: String,
    pub status: u16,
    pub auth_ok: bool,
}

#[derive(Default)]
pub struct RequestLog {
    records: Vec<RequestRecord>,
}

impl RequestLog {
    pub fn push(&mut self, r: RequestRecord) {
        self.records.push(r);
    }

    pub fn clear(&mut self) {
        self.records.clear();
    }

    /// `GET /_sim/requests`.
    pub fn json(&self) -> Value {
        Value::Array(
            self.records
                .iter()
                .map(|r| json!({"method": r.method, "path": r.path, "status": r.status, "auth_ok": r.auth_ok}))
                .collect(),
        )
    }
}
