//! Schema violations: a request or a response the platform's official API
//! description does not allow (see `spec`). Tests read them from
//! `GET /_sim/violations` and fail on any.

use serde_json::{json, Value};

#[derive(Clone)]
pub struct Violation {
    /// `request` or `response`.
    pub kind: &'static str,
    pub method: String,
    pub path: String,
    pub detail: String,
}

#[derive(Default)]
pub struct Violations {
    list: Vec<Violation>,
}

impl Violations {
    pub fn record(&mut self, kind: &'static str, method: &str, path: &str, detail: String) {
        eprintln!("golden-sim: SCHEMA VIOLATION ({kind}) {method} {path}: {detail}");
        self.list.push(Violation {
            kind,
            method: method.to_owned(),
            path: path.to_owned(),
            detail,
        });
    }

    /// `GET /_sim/violations`.
    pub fn json(&self) -> Value {
        Value::Array(
            self.list
                .iter()
                .map(|v| json!({"kind": v.kind, "method": v.method, "path": v.path, "detail": v.detail}))
                .collect(),
        )
    }
}
