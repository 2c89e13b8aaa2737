//! One JSON value against an OpenAPI 3.0 Schema Object: `type` (with
//! `nullable`), `enum`, `properties`/`required`/`additionalProperties`,
//! `items`/`minItems`/`maxItems`, `allOf`/`oneOf`/`anyOf` (with a
//! `discriminator` mapping), string `minLength`/`maxLength`/`pattern` and a
//! few well-known `format`s, numbers' bounds and `multipleOf`. Keywords the
//! value's kind does not use are ignored, as JSON Schema does.
//!
//! As OpenAPI 3.0 says, a required `readOnly` property is required in
//! answers only, a `writeOnly` one in requests only. Not checked, on
//! purpose (docs/adr/009-openapi-spec-checker.md): `format`s beyond
//! date-time, date, uuid, ipv4 and ipv6, and the ECMA patterns Rust's
//! `regex` cannot compile (look-around, back-references).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use regex::Regex;
use serde_json::{Map, Value};

use super::load::Files;

/// Schema steps without descending into the value before we call it a
/// cycle (`A: {allOf: [B]}`, `B: {allOf: [A]}`).
const MAX_DEPTH: usize = 256;

/// How many enumerated values a message lists.
const ENUM_SHOWN: usize = 12;

/// Which way a value travels: `required` differs for readOnly/writeOnly.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dir {
    Request,
    Response,
}

/// A value that does not fit: where (`body.tags[0]`) and why.
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
    pub files: &'a Files,
    pub regexes: &'a Mutex<HashMap<String, Option<Regex>>>,
    pub dir: Dir,
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
        let schema = match self.files.deref(schema) {
            Ok(s) => s,
            Err(why) => return push(out, at, why),
        };
        let Some(s) = schema.as_object() else {
            return; // `true`/`{}`-like: anything fits
        };
        if v.is_null() && (is_true(s, "nullable") || !constrains_type(s)) {
            return;
        }
        self.all_of(s, v, at, depth, out);
        self.any_or_one_of(s, v, at, depth, out);
        if !self.fits_type(s, v, at, out) {
            return;
        }
        check_enum(s, v, at, out);
        match v {
            Value::String(text) => self.check_string(s, text, at, out),
            Value::Number(_) => check_number(s, v, at, out),
            Value::Array(items) => self.check_array(s, items, at, depth, out),
            Value::Object(obj) => self.check_object(s, obj, at, depth, out),
            _ => {}
        }
    }

    fn all_of(
        &self,
        s: &Map<String, Value>,
        v: &Value,
        at: &str,
        d: usize,
        out: &mut Vec<Violation>,
    ) {
        for part in s
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.walk(part, v, at, d + 1, out);
        }
    }

    /// `oneOf`/`anyOf`: the discriminator's choice when it names one;
    /// otherwise exactly one (`oneOf`) or at least one (`anyOf`) alternative
    /// must fit.
    fn any_or_one_of(
        &self,
        s: &Map<String, Value>,
        v: &Value,
        at: &str,
        d: usize,
        out: &mut Vec<Violation>,
    ) {
        for key in ["oneOf", "anyOf"] {
            let Some(alts) = s.get(key).and_then(Value::as_array) else {
                continue;
            };
            match self.discriminated(s, v, at, out) {
                Choice::Schema(target) => {
                    self.walk(&target, v, at, d + 1, out);
                    continue;
                }
                Choice::Refused => continue,
                Choice::Undecided => {}
            }
            let mut failures = Vec::new();
            for alt in alts {
                let mut tried = Vec::new();
                self.walk(alt, v, at, d + 1, &mut tried);
                if !tried.is_empty() {
                    failures.push(tried);
                }
            }
            let fits = alts.len() - failures.len();
            if fits == 0 {
                push(out, at, none_fits(key, &failures));
            } else if fits > 1 && key == "oneOf" {
                push(
                    out,
                    at,
                    format!(
                        "fits {fits} of the {} oneOf alternatives; exactly one must fit",
                        alts.len()
                    ),
                );
            }
        }
    }

    /// What a `discriminator` with a `mapping` decides for a value that
    /// holds its property; an unmapped value is recorded as a violation.
    fn discriminated(
        &self,
        s: &Map<String, Value>,
        v: &Value,
        at: &str,
        out: &mut Vec<Violation>,
    ) -> Choice {
        let decided = || {
            let disc = s.get("discriminator")?;
            let name = disc.get("propertyName")?.as_str()?;
            let mapping = disc.get("mapping")?.as_object()?;
            Some((name, mapping, v.get(name)?.as_str()?))
        };
        let Some((name, mapping, value)) = decided() else {
            return Choice::Undecided;
        };
        if let Some(target) = mapping.get(value).and_then(Value::as_str) {
            return Choice::Schema(serde_json::json!({ "$ref": target }));
        }
        let names: Vec<&str> = mapping.keys().map(String::as_str).collect();
        let why = format!(
            "'{value}' is not one of the discriminator's values ({})",
            shorten(&names)
        );
        push(out, &format!("{at}.{name}"), why);
        Choice::Refused
    }

    /// Whether `v` is of the declared `type`; records the mismatch.
    fn fits_type(
        &self,
        s: &Map<String, Value>,
        v: &Value,
        at: &str,
        out: &mut Vec<Violation>,
    ) -> bool {
        let Some(ty) = s.get("type").and_then(Value::as_str) else {
            return true;
        };
        let fits = match ty {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "number" => v.is_number(),
            "integer" => is_integer(v),
            _ => true,
        };
        if !fits {
            push(out, at, format!("expected {ty}, got {}", brief(v)));
        }
        fits
    }

    fn check_string(&self, s: &Map<String, Value>, text: &str, at: &str, out: &mut Vec<Violation>) {
        let len = text.chars().count() as f64;
        if let Some(max) = num(s, "maxLength").filter(|m| len > *m) {
            push(out, at, format!("longer than maxLength {max}"));
        }
        if let Some(min) = num(s, "minLength").filter(|m| len < *m) {
            push(out, at, format!("shorter than minLength {min}"));
        }
        if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
            if self.regex(pattern).is_some_and(|re| !re.is_match(text)) {
                push(
                    out,
                    at,
                    format!("'{text}' does not match the pattern {pattern}"),
                );
            }
        }
        if let Some(format) = s.get("format").and_then(Value::as_str) {
            if !fits_format(format, text) {
                push(out, at, format!("'{text}' is not a valid {format}"));
            }
        }
    }

    fn check_array(
        &self,
        s: &Map<String, Value>,
        items: &[Value],
        at: &str,
        d: usize,
        out: &mut Vec<Violation>,
    ) {
        let n = items.len() as f64;
        if let Some(max) = num(s, "maxItems").filter(|m| n > *m) {
            push(out, at, format!("{n} items, more than maxItems {max}"));
        }
        if let Some(min) = num(s, "minItems").filter(|m| n < *m) {
            push(out, at, format!("{n} items, fewer than minItems {min}"));
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.walk(item_schema, item, &format!("{at}[{i}]"), d + 1, out);
            }
        }
    }

    fn check_object(
        &self,
        s: &Map<String, Value>,
        obj: &Map<String, Value>,
        at: &str,
        d: usize,
        out: &mut Vec<Violation>,
    ) {
        let empty = Map::new();
        let props = s
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for (k, pv) in obj {
            let here = format!("{at}.{k}");
            match (props.get(k), s.get("additionalProperties")) {
                (Some(ps), _) => self.walk(ps, pv, &here, d + 1, out),
                (None, Some(Value::Bool(false))) => {
                    push(out, &here, "property not declared in the schema".into())
                }
                (None, Some(extra @ Value::Object(_))) => self.walk(extra, pv, &here, d + 1, out),
                (None, _) => {}
            }
        }
        for name in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = name.as_str() else { continue };
            if !obj.contains_key(name) && self.required_here(props.get(name)) {
                push(
                    out,
                    &format!("{at}.{name}"),
                    "required property missing".into(),
                );
            }
        }
    }

    /// OpenAPI 3.0: a required `readOnly` property is required in responses
    /// only, a required `writeOnly` one in requests only.
    fn required_here(&self, prop: Option<&Value>) -> bool {
        let Some(prop) = prop
            .and_then(|p| self.files.deref(p).ok())
            .and_then(Value::as_object)
        else {
            return true;
        };
        match self.dir {
            Dir::Request => !is_true(prop, "readOnly"),
            Dir::Response => !is_true(prop, "writeOnly"),
        }
    }

    /// Compiled once; `None` when the ECMA pattern has no Rust equivalent.
    fn regex(&self, pattern: &str) -> Option<Regex> {
        let mut cache = self.regexes.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(pattern.to_owned())
            .or_insert_with(|| Regex::new(pattern).ok())
            .clone()
    }
}

/// A discriminator's verdict on a value.
enum Choice {
    /// Check against this schema (a `$ref` to the mapped one).
    Schema(Value),
    /// The value is not mapped; already recorded.
    Refused,
    /// No discriminator, no mapping, or the value lacks the property.
    Undecided,
}

fn push(out: &mut Vec<Violation>, at: &str, why: String) {
    out.push(Violation {
        at: at.to_owned(),
        why,
    });
}

/// "fits none of the 2 oneOf alternatives: [1] body.name: ...; [2] ...".
fn none_fits(key: &str, failures: &[Vec<Violation>]) -> String {
    let parts: Vec<String> = failures
        .iter()
        .enumerate()
        .map(|(i, vs)| {
            let vs: Vec<String> = vs.iter().map(Violation::to_string).collect();
            format!("[{}] {}", i + 1, vs.join(", "))
        })
        .collect();
    format!(
        "fits none of the {} {key} alternatives: {}",
        failures.len(),
        parts.join("; ")
    )
}

/// Whether the schema says anything that a `null` would break (a `type`, or
/// alternatives that might); `{}` and description-only schemas take null.
fn constrains_type(s: &Map<String, Value>) -> bool {
    ["type", "allOf", "oneOf", "anyOf", "enum", "properties"]
        .iter()
        .any(|k| s.contains_key(*k))
}

fn check_enum(s: &Map<String, Value>, v: &Value, at: &str, out: &mut Vec<Violation>) {
    let Some(list) = s.get("enum").and_then(Value::as_array) else {
        return;
    };
    if list.iter().any(|e| json_eq(e, v)) {
        return;
    }
    let names: Vec<String> = list.iter().map(brief).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    push(
        out,
        at,
        format!(
            "{} is not one of the enumerated values ({})",
            brief(v),
            shorten(&names)
        ),
    );
}

fn check_number(s: &Map<String, Value>, v: &Value, at: &str, out: &mut Vec<Violation>) {
    let Some(n) = v.as_f64() else { return };
    if let Some(min) = num(s, "minimum") {
        let exclusive = is_true(s, "exclusiveMinimum");
        if n < min || (exclusive && n == min) {
            push(out, at, format!("{n} is below the minimum {min}"));
        }
    }
    if let Some(max) = num(s, "maximum") {
        let exclusive = is_true(s, "exclusiveMaximum");
        if n > max || (exclusive && n == max) {
            push(out, at, format!("{n} is above the maximum {max}"));
        }
    }
    if let Some(m) = num(s, "multipleOf").filter(|m| *m > 0.0) {
        if ((n / m).round() * m - n).abs() > 1e-9 * n.abs().max(1.0) {
            push(out, at, format!("{n} is not a multiple of {m}"));
        }
    }
}

/// Formats we can tell wrong without doubt; the rest (`int32`, `byte`,
/// `uri`, `email`, vendor ones) are not checked.
fn fits_format(format: &str, text: &str) -> bool {
    match format {
        "date-time" => is_date_time(text),
        "date" => is_date(text),
        "uuid" => is_uuid(text),
        "ipv4" => text.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => text.parse::<Ipv6Addr>().is_ok(),
        _ => true,
    }
}

fn is_date(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && [0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
}

/// RFC 3339 `2006-01-02T15:04:05[.frac](Z|±hh:mm)`; `t`/`z` and a space
/// separator are accepted too (RFC 3339 allows them).
fn is_date_time(t: &str) -> bool {
    let b = t.as_bytes();
    if b.len() < 20 || !is_date(&t[..10]) || !matches!(b[10], b'T' | b't' | b' ') {
        return false;
    }
    let time = &b[11..];
    let clock = time.len() >= 8
        && time[2] == b':'
        && time[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| time[i].is_ascii_digit());
    if !clock {
        return false;
    }
    let mut rest = &time[8..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        rest = &frac[digits..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

fn is_uuid(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// JSON integers, and floats with no fraction (`2.0`).
fn is_integer(v: &Value) -> bool {
    v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0)
}

/// Equality as JSON Schema has it: `1` equals `1.0`.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

fn is_true(s: &Map<String, Value>, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn num(s: &Map<String, Value>, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64)
}

/// A value as a message shows it: strings quoted, long ones cut.
fn brief(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= 60 {
        return text;
    }
    let cut: String = text.chars().take(57).collect();
    format!("{cut}...")
}

fn shorten(names: &[&str]) -> String {
    if names.len() <= ENUM_SHOWN {
        return names.join(", ");
    }
    format!(
        "{}, ... {} more",
        names[..ENUM_SHOWN].join(", "),
        names.len() - ENUM_SHOWN
    )
}
