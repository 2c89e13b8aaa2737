//! Google's JSON error answer, which discovery documents do not describe.
//! Compute Engine v1 answers errors in the "v1"/legacy JSON shape with the
//! newer `status`/`details` allowed beside it:
//!
//! ```json
//! {"error": {"code": 404,
//!            "message": "The resource '...' was not found",
//!            "errors": [{"message": "The resource '...' was not found",
//!                        "domain": "global", "reason": "notFound"}],
//!            "status": "NOT_FOUND",
//!            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", ...}]}}
//! ```
//!
//! Sources:
//! - the legacy envelope, as google-api-java-client's batch error proto
//!   documents it: `code` (the HTTP status, always present), `message` (the
//!   first error's message, always present), `errors` (non-empty), each with
//!   `message`, `domain` and `reason` always present and optional
//!   `location`/`locationType`; the same shape in Google's "Global domain
//!   errors" page (developers.google.com/youtube/v3/docs/core_errors), and
//!   in Compute answers quoted in googleapis/google-cloud-java#4416 and
//!   stackql-registry/stackql-provider-google#41 (no `status` there).
//! - `status` (a `google.rpc.Code` name) and `details` (objects with an
//!   `@type`): the API design guide's error model (AIP-193,
//!   https://cloud.google.com/apis/design/errors).

use serde_json::Value;

use super::schema::Violation;

/// `google.rpc.Code` names (google/rpc/code.proto).
const RPC_CODES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
];

/// The violations of an error answer with HTTP status `status`.
pub fn check(status: u16, body: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(top) = body.as_object() else {
        push(
            &mut out,
            "body",
            "an error answer must be a JSON object {\"error\": {...}}",
        );
        return out;
    };
    for key in top.keys().filter(|k| *k != "error") {
        push(
            &mut out,
            &format!("body.{key}"),
            "not part of Google's error answer",
        );
    }
    let Some(error) = top.get("error").and_then(Value::as_object) else {
        push(&mut out, "body.error", "missing, or not an object");
        return out;
    };
    const KNOWN: &[&str] = &["code", "message", "errors", "status", "details"];
    for key in error.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
        push(
            &mut out,
            &format!("body.error.{key}"),
            "not part of Google's error answer",
        );
    }
    match error.get("code").and_then(Value::as_u64) {
        Some(code) if code == u64::from(status) => {}
        Some(code) => push(
            &mut out,
            "body.error.code",
            &format!("{code}, but the HTTP status is {status}"),
        ),
        None => push(
            &mut out,
            "body.error.code",
            "required: the HTTP status as a number",
        ),
    }
    let message = error.get("message").and_then(Value::as_str);
    if message.is_none() {
        push(&mut out, "body.error.message", "required: a string");
    }
    match error.get("errors").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => {
            for (i, e) in list.iter().enumerate() {
                check_item(e, &format!("body.error.errors[{i}]"), &mut out);
            }
            let first = list[0].get("message").and_then(Value::as_str);
            if let (Some(m), Some(f)) = (message, first) {
                if m != f {
                    push(
                        &mut out,
                        "body.error.message",
                        "must be the first error's message (errors[0].message)",
                    );
                }
            }
        }
        _ => push(
            &mut out,
            "body.error.errors",
            "required: a non-empty array of {message, domain, reason}",
        ),
    }
    if let Some(s) = error.get("status") {
        if !s.as_str().is_some_and(|s| RPC_CODES.contains(&s)) {
            push(
                &mut out,
                "body.error.status",
                &format!("{s} is not a google.rpc.Code name"),
            );
        }
    }
    if let Some(details) = error.get("details") {
        match details.as_array() {
            Some(list) => {
                for (i, d) in list.iter().enumerate() {
                    if !d.get("@type").is_some_and(Value::is_string) {
                        push(
                            &mut out,
                            &format!("body.error.details[{i}]"),
                            "an object with an \"@type\" string",
                        );
                    }
                }
            }
            None => push(&mut out, "body.error.details", "must be an array"),
        }
    }
    out
}

fn check_item(e: &Value, at: &str, out: &mut Vec<Violation>) {
    let Some(e) = e.as_object() else {
        push(out, at, "must be an object");
        return;
    };
    for key in ["message", "domain", "reason"] {
        if !e.get(key).is_some_and(Value::is_string) {
            push(out, &format!("{at}.{key}"), "required: a string");
        }
    }
    const KNOWN: &[&str] = &[
        "message",
        "domain",
        "reason",
        "location",
        "locationType",
        "extendedHelp",
        "sendReport",
        "debugInfo",
    ];
    for (key, v) in e {
        if !KNOWN.contains(&key.as_str()) {
            push(
                out,
                &format!("{at}.{key}"),
                "not part of Google's error item",
            );
        } else if !v.is_string() {
            push(out, &format!("{at}.{key}"), "must be a string");
        }
    }
}

fn push(out: &mut Vec<Violation>, at: &str, why: &str) {
    out.push(Violation {
        at: at.to_owned(),
        why: why.to_owned(),
    });
}
