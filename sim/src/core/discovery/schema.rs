//! One JSON value against a discovery schema: `$ref` (a name in
//! `schemas`), `type` with `format`, `properties`, `additionalProperties`,
//! `items`, `enum`, `pattern` (anchored), `minimum`/`maximum`, and
//! `annotations.required` (the methods for whose request a field is
//! required).
//!
//! Discovery schemas describe proto3 messages through Google's JSON
//! mapping (https://protobuf.dev/programming-guides/json/), so values are
//! read the way Google's parser reads them in requests and held to the
//! canonical form in answers:
//!
//! - `int64`/`uint64` (`type: string`): answers carry decimal strings;
//!   requests may also send JSON integers ("either numbers or strings are
//!   accepted"). `int32`/`uint32`/`number`: answers carry JSON numbers;
//!   requests may send decimal strings too.
//! - `null`: in requests the field's default (accepted); never in answers,
//!   which leave unset fields out.
//! - Unknown properties are violations both ways: Google's JSON parser
//!   refuses them (`Invalid JSON payload received. Unknown name "x" at
//!   'resource': Cannot find field.`), and an answer with a field the
//!   document lacks breaks clients that parse strictly (google-cloud-compute
//!   0.1 failed on `supportsPzs`, googleapis/python-compute#16).
//! - Output-only fields (`readOnly`, "[Output Only]") are accepted in
//!   requests: a client that sends back a resource it read (`get`, edit,
//!   `patch`) sends them, and Google ignores them (AIP-203).
//! - Enums: names both ways; requests may carry an enum's number instead
//!   (proto3 JSON parsers accept both; `$alt=json;enum-encoding=int`
//!   clients send numbers), which the document cannot check.
//! - `kind` properties with a `default` (`compute#instance`): answers must
//!   carry exactly that value ("Always compute#instance for instances").

use std::collections::HashMap;
use std::sync::Mutex;

use regex::Regex;
use serde_json::{Map, Value};

/// Schema steps before we call it a cycle.
const MAX_DEPTH: usize = 128;

/// How many enumerated values a message lists.
const ENUM_SHOWN: usize = 12;

/// Which way a value travels.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dir {
    Request,
    Response,
}

/// A value that does not fit: where (`body.disks[0]`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub at: String,
    pub why: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.why)
    }
}

pub struct Validator<'a> {
    pub schemas: Option<&'a Map<String, Value>>,
    pub regexes: &'a Mutex<HashMap<String, Option<Regex>>>,
    pub dir: Dir,
    /// The method's id, for `annotations.required`.
    pub method_id: String,
}

impl Validator<'_> {
    /// All the ways `v` (found at `at`) does not fit `schema`.
    pub fn check(&self, schema: &Value, v: &Value, at: &str) -> Vec<Violation> {
        let mut out = Vec::new();
        self.walk(schema, v, at, 0, &mut out);
        out
    }

    fn walk(&self, schema: &Value, v: &Value, at: &str, depth: usize, out: &mut Vec<Violation>) {
        if depth > MAX_DEPTH {
            return push(out, at, "the schema nests too deep (a $ref cycle?)".into());
        }
        let s = match self.resolve(schema) {
            Ok(s) => s,
            Err(why) => return push(out, at, why),
        };
        if v.is_null() {
            if self.dir == Dir::Response {
                push(
                    out,
                    at,
                    "null: Google's answers leave unset fields out".into(),
                );
            }
            return; // proto3 JSON: null is the field's default
        }
        let ty = s.get("type").and_then(Value::as_str).unwrap_or("any");
        let format = s.get("format").and_then(Value::as_str).unwrap_or("");
        match ty {
            "object" => match v.as_object() {
                Some(obj) => self.check_object(s, obj, at, depth, out),
                None => push(out, at, format!("expected an object, got {}", kind(v))),
            },
            "array" => match v.as_array() {
                Some(items) => {
                    let item = s.get("items").unwrap_or(&Value::Null);
                    for (i, x) in items.iter().enumerate() {
                        if x.is_null() {
                            push(out, &format!("{at}[{i}]"), "null in an array".into());
                            continue;
                        }
                        self.walk(item, x, &format!("{at}[{i}]"), depth + 1, out);
                    }
                }
                None => push(out, at, format!("expected an array, got {}", kind(v))),
            },
            "string" => self.check_string(s, format, v, at, out),
            "integer" | "number" => self.check_number(s, ty, format, v, at, out),
            "boolean" => {
                if !v.is_boolean() {
                    push(out, at, format!("expected a boolean, got {}", kind(v)));
                }
            }
            "any" => {}
            other => push(out, at, format!("the schema has an unknown type '{other}'")),
        }
    }

    /// A `$ref` to its schema (a ref's siblings are ignored, as discovery
    /// generators never write any); an inline schema as it is.
    fn resolve<'s>(&'s self, schema: &'s Value) -> Result<&'s Map<String, Value>, String> {
        let mut schema = schema;
        for _ in 0..8 {
            let Some(obj) = schema.as_object() else {
                return Err("the schema is not an object".into());
            };
            let Some(name) = obj.get("$ref").and_then(Value::as_str) else {
                return Ok(obj);
            };
            schema = self
                .schemas
                .and_then(|s| s.get(name))
                .ok_or_else(|| format!("$ref '{name}' is not in schemas"))?;
        }
        Err("a $ref chain longer than 8".into())
    }

    fn check_object(
        &self,
        s: &Map<String, Value>,
        obj: &Map<String, Value>,
        at: &str,
        depth: usize,
        out: &mut Vec<Violation>,
    ) {
        let props = s.get("properties").and_then(Value::as_object);
        let extra = s.get("additionalProperties");
        for (key, value) in obj {
            let here = format!("{at}.{key}");
            match (props.and_then(|p| p.get(key)), extra) {
                (Some(p), _) => {
                    self.walk(p, value, &here, depth + 1, out);
                    if self.dir == Dir::Response && key == "kind" {
                        check_kind(p, value, &here, out);
                    }
                }
                (None, Some(x)) => self.walk(x, value, &here, depth + 1, out),
                (None, None) if props.is_none() => {} // a free-form object
                (None, None) => push(out, &here, unknown_field(key, at)),
            }
        }
        if self.dir == Dir::Request {
            for (key, p) in props.into_iter().flatten() {
                if obj.get(key).is_none_or(Value::is_null) && self.required_here(p) {
                    push(
                        out,
                        &format!("{at}.{key}"),
                        format!(
                            "Required field not specified (annotations.required names {})",
                            self.method_id
                        ),
                    );
                }
            }
        }
    }

    fn required_here(&self, p: &Value) -> bool {
        let listed = p
            .get("annotations")
            .and_then(|a| a.get("required"))
            .and_then(Value::as_array);
        listed
            .into_iter()
            .flatten()
            .any(|m| m.as_str() == Some(&self.method_id))
    }

    fn check_string(
        &self,
        s: &Map<String, Value>,
        format: &str,
        v: &Value,
        at: &str,
        out: &mut Vec<Violation>,
    ) {
        let text = match v {
            Value::String(t) => t.as_str(),
            // proto3 JSON: a 64-bit integer may come as a JSON number in
            // requests; answers carry strings.
            Value::Number(n) if matches!(format, "int64" | "uint64") => {
                if self.dir == Dir::Response {
                    return push(
                        out,
                        at,
                        format!("{format} must be a JSON string in answers, got the number {n}"),
                    );
                }
                let fits = if format == "int64" {
                    n.is_i64()
                        || (n.is_u64() && n.as_u64().is_some_and(|u| i64::try_from(u).is_ok()))
                } else {
                    n.is_u64()
                };
                if !fits {
                    push(out, at, format!("{n} is not an {format}"));
                }
                return;
            }
            // proto3 JSON: parsers accept an enum's number for its name,
            // and Google's generated REST clients send numbers when they ask
            // for `$alt=json;enum-encoding=int`. The document has no
            // numbers to hold it to; answers carry names.
            Value::Number(n) if self.dir == Dir::Request && s.contains_key("enum") => {
                if !n.is_i64() || n.as_i64().is_some_and(|i| i32::try_from(i).is_err()) {
                    push(out, at, format!("{n} is not an enum number (int32)"));
                }
                return;
            }
            _ => return push(out, at, format!("expected a string, got {}", kind(v))),
        };
        let bad_format = match format {
            "int64" => text.parse::<i64>().is_err(),
            "uint64" => text.parse::<u64>().is_err(),
            "byte" => !is_base64(text),
            "google-datetime" | "date-time" => !is_rfc3339(text),
            "google-duration" => !is_duration(text),
            _ => false,
        };
        if bad_format {
            push(
                out,
                at,
                format!("'{}' is not a valid {format}", shorten_text(text)),
            );
        }
        check_enum(s, v, at, out);
        if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
            if let Some(false) = matches(self.regexes, pattern, text) {
                push(
                    out,
                    at,
                    format!(
                        "'{}' must be a match of regex '{pattern}'",
                        shorten_text(text)
                    ),
                );
            }
        }
    }

    fn check_number(
        &self,
        s: &Map<String, Value>,
        ty: &str,
        format: &str,
        v: &Value,
        at: &str,
        out: &mut Vec<Violation>,
    ) {
        let n: f64 = match v {
            Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            // proto3 JSON: numbers may come as strings in requests.
            Value::String(t) if self.dir == Dir::Request => match t.parse::<f64>() {
                Ok(n) => n,
                Err(_)
                    if ty == "number" && matches!(t.as_str(), "NaN" | "Infinity" | "-Infinity") =>
                {
                    return;
                }
                Err(_) => return push(out, at, format!("expected {ty}, got the string '{t}'")),
            },
            _ => return push(out, at, format!("expected {ty}, got {}", kind(v))),
        };
        if ty == "integer" {
            let (lo, hi) = match format {
                "uint32" => (0.0, f64::from(u32::MAX)),
                _ => (f64::from(i32::MIN), f64::from(i32::MAX)),
            };
            if n.fract() != 0.0 || n < lo || n > hi {
                let f = if format.is_empty() { "int32" } else { format };
                return push(out, at, format!("{} is not a {f}", number_text(v)));
            }
        }
        for (key, below) in [("minimum", true), ("maximum", false)] {
            let limit = match s.get(key) {
                Some(Value::String(t)) => t.parse::<f64>().ok(),
                Some(Value::Number(x)) => x.as_f64(),
                _ => None,
            };
            if let Some(limit) = limit {
                if (below && n < limit) || (!below && n > limit) {
                    push(
                        out,
                        at,
                        format!("{} is outside the {key} {limit}", number_text(v)),
                    );
                }
            }
        }
    }
}

fn check_enum(s: &Map<String, Value>, v: &Value, at: &str, out: &mut Vec<Violation>) {
    if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            let shown = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            push(
                out,
                at,
                format!("'{shown}' is not one of {}", list_enum(allowed)),
            );
        }
    }
}

fn check_kind(p: &Value, value: &Value, at: &str, out: &mut Vec<Violation>) {
    if let (Some(want), Some(got)) = (p.get("default").and_then(Value::as_str), value.as_str()) {
        if want != got {
            push(
                out,
                at,
                format!("'{got}', but the document says it is always '{want}'"),
            );
        }
    }
}

fn unknown_field(key: &str, at: &str) -> String {
    format!("Unknown name \"{key}\" at '{at}': Cannot find field.")
}

/// The enum's values for a message, the first few if there are many.
pub fn list_enum(allowed: &[Value]) -> String {
    let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
    if names.len() <= ENUM_SHOWN {
        names.join(", ")
    } else {
        format!(
            "{}, ... ({} values)",
            names[..ENUM_SHOWN].join(", "),
            names.len()
        )
    }
}

/// Whether `text` matches `pattern` as a whole; `None` when the pattern
/// does not compile (then it is not checked). Discovery patterns are RE2
/// and unanchored (`[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?`), and Google holds
/// the whole value to them ("Must be a match of regex").
pub fn matches(
    regexes: &Mutex<HashMap<String, Option<Regex>>>,
    pattern: &str,
    text: &str,
) -> Option<bool> {
    let mut cache = regexes.lock().unwrap_or_else(|e| e.into_inner());
    let re = cache
        .entry(pattern.to_owned())
        .or_insert_with(|| Regex::new(&format!("^(?:{pattern})$")).ok());
    re.as_ref().map(|re| re.is_match(text))
}

/// Standard or URL-safe base64, padded or not: what proto3 JSON accepts
/// for `bytes`.
fn is_base64(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    text.len() - body.len() <= 2
        && body.len() % 4 != 1
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'))
}

fn is_rfc3339(text: &str) -> bool {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
            .expect("the RFC 3339 regex compiles")
    })
    .is_match(text)
}

/// google.protobuf.Duration's JSON form: seconds with up to nine decimals
/// and an `s` (`"3.5s"`).
fn is_duration(text: &str) -> bool {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^-?\d+(\.\d{1,9})?s$").expect("the duration regex compiles"))
        .is_match(text)
}

fn number_text(v: &Value) -> String {
    match v {
        Value::String(t) => format!("'{t}'"),
        other => other.to_string(),
    }
}

fn shorten_text(text: &str) -> String {
    if text.chars().count() <= 80 {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(77).collect::<String>())
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn push(out: &mut Vec<Violation>, at: &str, why: String) {
    out.push(Violation {
        at: at.to_owned(),
        why,
    });
}
