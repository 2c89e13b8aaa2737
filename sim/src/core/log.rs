//! The request log: every API request a simulator served (not the admin
//! API's), as tests read it from `GET /_sim/requests` to assert what the
//! client did rather than trusting its success.

use serde_json::{json, Value};

pub struct RequestRecord {
    pub method: String,
    /// The API's part of the path (PVE: after `/api2/json`).
    pub path: String,
    pub query: String,
    pub status: u16,
    pub auth_ok: bool,
    /// The request's and the answer's bodies (JSON, or text; `null` when
    /// empty), the request's credential redacted.
    pub request_body: Value,
    pub response_body: Value,
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
                .map(|r| {
                    json!({
                        "method": r.method, "path": r.path, "query": r.query,
                        "status": r.status, "auth_ok": r.auth_ok,
                        "request_body": r.request_body, "response_body": r.response_body,
                    })
                })
                .collect(),
        )
    }
}

/// A body as logged: JSON when it parses, else text; `null` when empty.
/// `secret` (the request's credential) never appears in it.
pub fn body_value(bytes: &[u8], secret: &str) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if secret.len() >= 8 {
        text = text.replace(secret, "[REDACTED]");
    }
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}
