//! The PVE API viewer schema (`apidoc.js` as JSON) as a checker: every request
//! the simulator serves, and every answer it gives, is held against it, so a
//! client that passes against the simulator sends what a real PVE accepts and
//! the simulator cannot drift from what a real PVE answers.
//!
//! PVE's own rules are reproduced where the schema states them: parameters
//! must be declared (`scsi[n]` covers `scsi0`), non-optional ones present, and
//! each value must fit its type, `enum`, `pattern` (anchored), length and
//! range, the named formats we meet (`pve-vmid`, `dns-name`, `pve-tag-list`,
//! `urlencoded`, ...) and property-string formats (`net0=virtio=...,bridge=`).
//! Named formats we do not know are not checked.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use regex::Regex;
use serde_json::{Map, Value};

use crate::core::spec::SpecChecker;
pub use crate::core::spec::{Params, RequestError};

struct Endpoint {
    segments: Vec<Segment>,
    methods: Map<String, Value>,
}

enum Segment {
    Literal(String),
    Param(String),
}

pub struct Schema {
    endpoints: Vec<Endpoint>,
    /// Compiled patterns; `None` when the Perl regex has no Rust equivalent.
    regexes: Mutex<HashMap<String, Option<Regex>>>,
}

impl Schema {
    pub fn load(path: &Path) -> Result<Schema> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let root: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Schema::from_value(&root)
    }

    pub fn from_value(root: &Value) -> Result<Schema> {
        let Some(top) = root.as_array() else {
            bail!("the PVE schema must be a JSON array of path nodes");
        };
        let mut endpoints = Vec::new();
        let mut stack: Vec<&Value> = top.iter().collect();
        while let Some(node) = stack.pop() {
            if let Some(path) = node.get("path").and_then(Value::as_str) {
                let methods = node
                    .get("info")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                endpoints.push(Endpoint {
                    segments: split_template(path),
                    methods,
                });
            }
            if let Some(children) = node.get("children").and_then(Value::as_array) {
                stack.extend(children);
            }
        }
        if endpoints.is_empty() {
            bail!("the PVE schema holds no paths");
        }
        Ok(Schema {
            endpoints,
            regexes: Mutex::new(HashMap::new()),
        })
    }

    /// The endpoint whose template matches `path` (after `/api2/json`), with
    /// its path parameters. Literal segments win over `{param}` ones.
    fn find(&self, path: &str) -> Option<(&Endpoint, Params)> {
        let segs = fold_whole_rest(path.split('/').filter(|s| !s.is_empty()).collect());
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let mut best: Option<(&Endpoint, usize)> = None;
        for ep in &self.endpoints {
            if ep.segments.len() != segs.len() {
                continue;
            }
            let mut literals = 0;
            let matches = ep.segments.iter().zip(&segs).all(|(t, s)| match t {
                Segment::Literal(l) => {
                    literals += 1;
                    l == s
                }
                Segment::Param(_) => true,
            });
            if matches && best.is_none_or(|(_, n)| literals > n) {
                best = Some((ep, literals));
            }
        }
        let (ep, _) = best?;
        let mut params = Params::new();
        for (t, s) in ep.segments.iter().zip(&segs) {
            if let Segment::Param(name) = t {
                params.insert(name.clone(), vec![(*s).to_owned()]);
            }
        }
        Some((ep, params))
    }

    /// The method's description (`info.GET` ...) for a concrete path.
    fn method(&self, method: &str, path: &str) -> Result<(&Value, Params), RequestError> {
        let (ep, path_params) = self.find(path).ok_or(RequestError::UnknownPath)?;
        let info = ep.methods.get(method).ok_or(RequestError::UnknownMethod)?;
        Ok((info, path_params))
    }

    /// Checks a request: `params` are the query and body parameters; the path
    /// parameters are taken from `path` itself.
    pub fn check_request(
        &self,
        method: &str,
        path: &str,
        params: &Params,
    ) -> Result<(), RequestError> {
        let (info, path_params) = self.method(method, path)?;
        let empty = Map::new();
        let decl = info.get("parameters");
        let props = decl
            .and_then(|p| p.get("properties"))
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let additional = decl
            .and_then(|p| p.get("additionalProperties"))
            .is_some_and(truthy);
        let mut all = params.clone();
        for (k, v) in path_params {
            all.entry(k).or_default().extend(v);
        }
        let mut errors = BTreeMap::new();
        for (name, values) in &all {
            match lookup(props, name) {
                Some(prop) => {
                    if let Err(why) = self.check_param(prop, values) {
                        errors.insert(name.clone(), why);
                    }
                }
                None if additional => {}
                None => {
                    errors.insert(
                        name.clone(),
                        "property is not defined in schema and the schema does not allow additional properties".into(),
                    );
                }
            }
        }
        for (name, prop) in props {
            if name.contains("[n]") {
                continue;
            }
            if !all.contains_key(name) && !truthy_key(prop, "optional") {
                errors.insert(
                    name.clone(),
                    "property is missing and it is not optional".into(),
                );
            }
            if all.contains_key(name) {
                if let Some(req) = prop.get("requires").and_then(Value::as_str) {
                    if !all.contains_key(req) {
                        errors.insert(req.to_owned(), format!("parameter is required by '{name}'"));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RequestError::Params(errors))
        }
    }

    fn check_param(&self, prop: &Value, values: &[String]) -> Result<(), String> {
        if type_of(prop) == "array" {
            let items = prop.get("items").cloned().unwrap_or(Value::Null);
            for v in values {
                self.check_scalar(&items, v)?;
            }
            return Ok(());
        }
        match values {
            [one] => self.check_scalar(prop, one),
            [] => Err("property is missing".into()),
            _ => Err("duplicate parameter (not an array)".into()),
        }
    }

    /// One textual value against a property schema, as PVE's `check_type`
    /// plus `check_format` do.
    fn check_scalar(&self, prop: &Value, v: &str) -> Result<(), String> {
        match type_of(prop) {
            "integer" => {
                let n: i64 = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("type check ('integer') failed - got '{v}'"))?;
                check_range(prop, n as f64)?;
            }
            "number" => {
                let n: f64 = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("type check ('number') failed - got '{v}'"))?;
                check_range(prop, n)?;
            }
            "boolean" => {
                if parse_bool(v).is_none() {
                    return Err(format!("type check ('boolean') failed - got '{v}'"));
                }
            }
            "null" => return Err(format!("type check ('null') failed - got '{v}'")),
            _ => {
                let len = v.chars().count() as u64;
                if let Some(max) = num(prop.get("maxLength")) {
                    if len as f64 > max {
                        return Err(format!("value may only be {max} characters long"));
                    }
                }
                if let Some(min) = num(prop.get("minLength")) {
                    if (len as f64) < min {
                        return Err(format!("value must be at least {min} characters long"));
                    }
                }
                if let Some(pattern) = prop.get("pattern").and_then(Value::as_str) {
                    if let Some(re) = self.regex(pattern) {
                        if !re.is_match(v) {
                            return Err("value does not match the regex pattern".into());
                        }
                    }
                }
                match prop.get("format") {
                    Some(Value::String(f)) => self.check_named_format(f, v)?,
                    Some(Value::Object(dict)) => self.check_property_string(dict, v)?,
                    _ => {}
                }
            }
        }
        if let Some(list) = prop.get("enum").and_then(Value::as_array) {
            if !list.iter().any(|e| enum_eq(e, v)) {
                let names: Vec<String> = list.iter().map(enum_text).collect();
                return Err(format!(
                    "value '{v}' does not have a value in the enumeration '{}'",
                    names.join(", ")
                ));
            }
        }
        Ok(())
    }

    fn check_named_format(&self, format: &str, v: &str) -> Result<(), String> {
        let ok = match format {
            "pve-vmid" => v.chars().all(|c| c.is_ascii_digit()) && !v.is_empty(),
            "pve-node" => is_dns_label(v),
            "pve-storage-id" => {
                let b = v.as_bytes();
                b.len() >= 2
                    && b[0].is_ascii_lowercase()
                    && b[b.len() - 1].is_ascii_lowercase() | b[b.len() - 1].is_ascii_digit()
                    && b.iter()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(c))
            }
            "pve-configid" => is_configid(v),
            "pve-configid-list" => split_list(v).all(is_configid),
            "dns-name" => !v.is_empty() && v.split('.').all(is_dns_label),
            // check_format's `-list`: "we allow empty lists".
            "pve-tag-list" => split_tags(v).all(valid_tag),
            // PVE's pve_verify_urlencoded: the value itself must be encoded.
            "urlencoded" => v
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-%_.!~*'()".contains(&c)),
            "pve-storage-content" => STORAGE_CONTENT.contains(&v),
            "pve-storage-content-list" => split_list(v).all(|c| STORAGE_CONTENT.contains(&c)),
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("value does not match the format '{format}': '{v}'"))
        }
    }

    /// `key=value,...` against a dictionary format; a bare value goes to the
    /// `default_key`; `alias`/`keyAlias` entries (`virtio=<mac>`) stand for
    /// their targets.
    fn check_property_string(&self, dict: &Map<String, Value>, v: &str) -> Result<(), String> {
        let mut seen: Vec<String> = Vec::new();
        for part in v.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = match part.split_once('=') {
                Some((k, val)) => (k.trim().to_owned(), val),
                None => {
                    let Some((k, _)) = dict.iter().find(|(_, d)| truthy_key(d, "default_key"))
                    else {
                        return Err(format!(
                            "value without key, but schema does not define a default key: '{part}'"
                        ));
                    };
                    (k.clone(), part)
                }
            };
            let Some(sub) = dict.get(&key) else {
                return Err(format!(
                    "invalid format - {key}: property is not defined in schema"
                ));
            };
            if let Some(target) = sub.get("keyAlias").and_then(Value::as_str) {
                seen.push(target.to_owned());
            }
            let (name, sub) = match sub.get("alias").and_then(Value::as_str) {
                Some(target) => (target.to_owned(), dict.get(target).unwrap_or(sub)),
                None => (key.clone(), sub),
            };
            if seen.contains(&name) {
                return Err(format!(
                    "invalid format - duplicate key in comma-separated list property: {name}"
                ));
            }
            self.check_scalar(sub, value)
                .map_err(|why| format!("invalid format - {name}: {why}"))?;
            seen.push(name);
        }
        for (k, d) in dict {
            let required = !truthy_key(d, "optional")
                && d.get("default").is_none()
                && d.get("alias").is_none()
                && d.get("keyAlias").is_none();
            if required && !seen.contains(k) {
                return Err(format!(
                    "invalid format - {k}: property is missing and it is not optional"
                ));
            }
        }
        Ok(())
    }

    fn regex(&self, pattern: &str) -> Option<Regex> {
        let mut cache = self.regexes.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(pattern.to_owned())
            .or_insert_with(|| {
                // Perl's `(?^:` / `(?^i:` mean "default flags" (plus i).
                let p = pattern.replace("(?^i:", "(?i:").replace("(?^:", "(?:");
                Regex::new(&format!("^(?:{p})$")).ok()
            })
            .clone()
    }

    /// Checks an answer's `data` against the method's `returns`; the list of
    /// violations is empty when it fits. Unknown paths were already refused.
    pub fn check_response(&self, method: &str, path: &str, data: &Value) -> Vec<String> {
        let Ok((info, _)) = self.method(method, path) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match info.get("returns") {
            Some(returns) => check_value(returns, data, "data", &mut out),
            None if !data.is_null() => out.push("data: the schema declares no return value".into()),
            None => {}
        }
        out.retain(|v| !undeclared_by_pve(method, path, v));
        out
    }
}

/// What PVE itself answers beyond its declared `returns`, so not a
/// simulator fault: a token's task status carries `tokenid` (pve-manager
/// API2/Tasks.pm read_task_status, `$convert_token_task`), which the
/// method's `returns` does not list.
fn undeclared_by_pve(method: &str, path: &str, violation: &str) -> bool {
    method == "GET"
        && path.starts_with("/nodes/")
        && path.contains("/tasks/")
        && path.ends_with("/status")
        && violation == "data.tokenid: property not declared in the schema"
}

const STORAGE_CONTENT: &[&str] = &[
    "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import", "none",
];

/// The PVE apidoc schema is the Proxmox simulator's spec.
impl SpecChecker for Schema {
    fn check_request(&self, method: &str, path: &str, params: &Params) -> Result<(), RequestError> {
        Schema::check_request(self, method, path, params)
    }

    /// PVE answers errors without `data`: only successes are checked.
    fn check_response(&self, method: &str, path: &str, status: u16, body: &Value) -> Vec<String> {
        if status != 200 {
            return Vec::new();
        }
        Schema::check_response(self, method, path, body)
    }
}

/// Sub-APIs PVE mounts with `fragmentDelimiter => ''`: below them, the rest
/// of the path is one parameter (pve-common `PVE/RESTHandler.pm`
/// map_path_to_methods joins it with `/`). The apidoc schema does not say
/// so; pve-storage `PVE/API2/Storage/Status.pm` mounts Content.pm this way
/// because volume ids may contain `/`.
const WHOLE_REST_MOUNTS: &[&[&str]] = &[&["nodes", "{node}", "storage", "{storage}", "content"]];

/// A concrete path's segments with everything below a whole-rest mount
/// joined into one (`.../content/local:9000/base.qcow2/201/vm.qcow2` has
/// one `{volume}` segment).
fn fold_whole_rest(segs: Vec<&str>) -> Vec<String> {
    let mount = WHOLE_REST_MOUNTS.iter().find(|m| {
        segs.len() > m.len() + 1
            && m.iter()
                .zip(&segs)
                .all(|(t, s)| t.starts_with('{') || t == s)
    });
    match mount {
        Some(m) => {
            let mut out: Vec<String> = segs[..m.len()].iter().map(|s| (*s).to_owned()).collect();
            out.push(segs[m.len()..].join("/"));
            out
        }
        None => segs.into_iter().map(str::to_owned).collect(),
    }
}

fn split_template(path: &str) -> Vec<Segment> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_owned()),
                None => Segment::Literal(s.to_owned()),
            },
        )
        .collect()
}

/// A declared property by name; `scsi0` finds `scsi[n]`.
fn lookup<'a>(props: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(p) = props.get(name) {
        return Some(p);
    }
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if base.len() < name.len() && !base.is_empty() {
        return props.get(&format!("{base}[n]"));
    }
    None
}

fn type_of(prop: &Value) -> &str {
    prop.get("type").and_then(Value::as_str).unwrap_or("string")
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty() && s != "0",
        _ => false,
    }
}

fn truthy_key(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(truthy)
}

/// Limits may be numbers or numeric strings in the schema (`"minimum": "0"`).
fn num(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn check_range(prop: &Value, n: f64) -> Result<(), String> {
    if let Some(min) = num(prop.get("minimum")) {
        if n < min {
            return Err(format!("value must have a minimum value of {min}"));
        }
    }
    if let Some(max) = num(prop.get("maximum")) {
        if n > max {
            return Err(format!("value must have a maximum value of {max}"));
        }
    }
    Ok(())
}

/// PVE accepts these spellings of a boolean parameter.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn enum_eq(e: &Value, v: &str) -> bool {
    match e {
        Value::String(s) => s == v,
        Value::Number(n) => n.to_string() == v,
        _ => false,
    }
}

fn enum_text(e: &Value) -> String {
    match e {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn is_dns_label(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

fn is_configid(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

/// PVE's `split_list`: commas, semicolons, whitespace and NULs separate.
fn split_list(v: &str) -> impl Iterator<Item = &str> {
    v.split(|c: char| c == ',' || c == ';' || c == '\0' || c.is_whitespace())
        .filter(|s| !s.is_empty())
}

/// Tags are separated by `;`, `,` or whitespace (pve-common
/// `PVE/ParseUtils.pm` split_list).
pub fn split_tags(v: &str) -> impl Iterator<Item = &str> {
    v.split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
}

/// `pve-tag`: `[a-z0-9_][a-z0-9_+.-]*`, matched case-insensitively (pve-common
/// `PVE/JSONSchema.pm` `$PVE_TAG_RE` and pve_verify_tag's `m/^...$/i`).
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_+.-".contains(c))
}

fn is_integer_text(s: &str) -> bool {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// One JSON value against a `returns` schema; PVE encodes booleans as 0/1.
fn check_value(schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    if v.is_null() {
        let declared = schema.get("type").and_then(Value::as_str);
        if !truthy_key(schema, "optional") && declared.is_some_and(|t| t != "null") {
            out.push(format!("{at}: null where {} is required", type_of(schema)));
        }
        return;
    }
    let Some(ty) = schema.get("type").and_then(Value::as_str) else {
        return;
    };
    let fits = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        // A Perl number that was once used as a string is encoded as one
        // (JSON::XS), and PVE's own check accepts it (pve-common
        // `PVE/JSONSchema.pm` check_type: is_integer, `^[+-]?\d+$`).
        "integer" => v.is_i64() || v.is_u64() || v.as_str().is_some_and(is_integer_text),
        "number" => v.is_number(),
        "boolean" => v.is_boolean() || matches!(v.as_u64(), Some(0 | 1)),
        "string" => v.is_string(),
        "null" => false,
        "any" => true,
        _ => true,
    };
    if !fits {
        out.push(format!("{at}: expected {ty}, got {v}"));
        return;
    }
    if let (Some(list), Some(s)) = (schema.get("enum").and_then(Value::as_array), v.as_str()) {
        if !list.iter().any(|e| enum_eq(e, s)) {
            out.push(format!("{at}: '{s}' is not in the enumeration"));
        }
    }
    if let Value::Array(items) = v {
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                check_value(item_schema, item, &format!("{at}[{i}]"), out);
            }
        }
    }
    if let Value::Object(obj) = v {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        let additional = schema.get("additionalProperties").is_some_and(truthy);
        for (k, pv) in obj {
            match lookup(props, k) {
                Some(ps) => check_value(ps, pv, &format!("{at}.{k}"), out),
                None if additional => {}
                None => out.push(format!("{at}.{k}: property not declared in the schema")),
            }
        }
        for (k, ps) in props {
            if !k.contains("[n]") && !truthy_key(ps, "optional") && !obj.contains_key(k) {
                out.push(format!("{at}.{k}: required property missing"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A two-endpoint schema in the PVE viewer's shape.
    fn schema() -> Schema {
        Schema::from_value(&json!([{
            "path": "/nodes",
            "info": {"GET": {"parameters": {"additionalProperties": 0}, "returns": {"type": "array"}}},
            "children": [{
                "path": "/nodes/{node}",
                "children": [{
                    "path": "/nodes/{node}/qemu",
                    "info": {"POST": {
                        "parameters": {"additionalProperties": 0, "properties": {
                            "node": {"type": "string", "format": "pve-node"},
                            "vmid": {"type": "integer", "minimum": 100, "maximum": 999999999},
                            "name": {"type": "string", "format": "dns-name", "optional": 1},
                            "tags": {"type": "string", "format": "pve-tag-list", "optional": 1},
                            "ostype": {"type": "string", "enum": ["l26", "other"], "optional": 1},
                            "agent": {"type": "string", "optional": 1, "format": {
                                "enabled": {"type": "boolean", "default_key": 1, "default": 0},
                                "type": {"type": "string", "enum": ["virtio", "isa"], "optional": 1}
                            }},
                            "net[n]": {"type": "string", "optional": 1, "format": {
                                "model": {"type": "string", "default_key": 1, "enum": ["virtio", "e1000"]},
                                "virtio": {"alias": "macaddr", "keyAlias": "model"},
                                "macaddr": {"type": "string", "optional": 1},
                                "bridge": {"type": "string", "optional": 1}
                            }},
                            "sshkeys": {"type": "string", "format": "urlencoded", "optional": 1},
                            "serial[n]": {"type": "string", "optional": 1, "pattern": "(/dev/.+|socket)"},
                            "command": {"type": "array", "optional": 1, "items": {"type": "string"}},
                            "start": {"type": "boolean", "optional": 1}
                        }},
                        "returns": {"type": "string"}
                    }}
                }]
            }]
        }]))
        .unwrap()
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        let mut p = Params::new();
        for (k, v) in pairs {
            p.entry((*k).to_owned()).or_default().push((*v).to_owned());
        }
        p
    }

    fn param_errors(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        match schema().check_request("POST", "/nodes/pve/qemu", &params(pairs)) {
            Err(RequestError::Params(e)) => e,
            other => panic!("expected parameter errors, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_good_request() {
        let ok = params(&[
            ("vmid", "101"),
            ("name", "golden-build-1"),
            ("tags", "golden;family.x"),
            ("ostype", "l26"),
            ("agent", "1"),
            ("net0", "virtio=BC:24:11:00:00:01,bridge=vmbr0"),
            ("sshkeys", "ssh-ed25519%20AAAA%20me%40host%0A"),
            ("serial0", "socket"),
            ("command", "/bin/sh"),
            ("command", "-c"),
            ("start", "true"),
        ]);
        assert_eq!(
            schema().check_request("POST", "/nodes/pve/qemu", &ok),
            Ok(())
        );
    }

    #[test]
    fn rejects_unknown_parameter() {
        let e = param_errors(&[("vmid", "101"), ("colour", "red")]);
        assert!(e["colour"].contains("not defined"), "{e:?}");
    }

    #[test]
    fn rejects_missing_required_parameter() {
        let e = param_errors(&[("name", "x")]);
        assert!(e["vmid"].contains("missing"), "{e:?}");
    }

    #[test]
    fn rejects_wrong_types_and_ranges() {
        assert!(param_errors(&[("vmid", "abc")])["vmid"].contains("integer"));
        assert!(param_errors(&[("vmid", "99")])["vmid"].contains("minimum"));
        assert!(param_errors(&[("vmid", "101"), ("start", "maybe")])["start"].contains("boolean"));
        assert!(param_errors(&[("vmid", "101"), ("vmid", "102")])["vmid"].contains("duplicate"));
    }

    #[test]
    fn rejects_enum_and_format_violations() {
        assert!(
            param_errors(&[("vmid", "101"), ("ostype", "beos")])["ostype"].contains("enumeration")
        );
        assert!(param_errors(&[("vmid", "101"), ("name", "no_underscores")]).contains_key("name"));
        assert!(param_errors(&[("vmid", "101"), ("tags", "a=b")]).contains_key("tags"));
        assert!(
            param_errors(&[("vmid", "101"), ("sshkeys", "ssh-ed25519 AAAA")])
                .contains_key("sshkeys")
        );
        assert!(param_errors(&[("vmid", "101"), ("serial0", "pty")]).contains_key("serial0"));
        assert!(
            param_errors(&[("vmid", "101"), ("net0", "virtio,colour=red")]).contains_key("net0")
        );
        assert!(param_errors(&[("vmid", "101"), ("net0", "rtl=1")]).contains_key("net0"));
        assert!(param_errors(&[("vmid", "101"), ("agent", "enabled=2")]).contains_key("agent"));
    }

    #[test]
    fn rejects_unknown_path_and_method() {
        let s = schema();
        assert_eq!(
            s.check_request("GET", "/nodes/pve/lxc", &Params::new()),
            Err(RequestError::UnknownPath)
        );
        assert_eq!(
            s.check_request("DELETE", "/nodes/pve/qemu", &Params::new()),
            Err(RequestError::UnknownMethod)
        );
    }

    #[test]
    fn a_volume_id_with_slashes_is_one_path_parameter() {
        let s = Schema::from_value(&json!([{
            "path": "/nodes/{node}/storage/{storage}/content/{volume}",
            "info": {"GET": {
                "parameters": {"additionalProperties": 0, "properties": {
                    "node": {"type": "string"},
                    "storage": {"type": "string", "optional": 1},
                    "volume": {"type": "string"}
                }},
                "returns": {"type": "object", "properties": {"path": {"type": "string"}}}
            }}
        }]))
        .unwrap();
        let path = "/nodes/pve/storage/local/content/local:9000/base-9000-disk-0.qcow2/201/vm-201-disk-0.qcow2";
        let (_, params) = s.find(path).expect("the volume route");
        assert_eq!(
            params["volume"],
            vec!["local:9000/base-9000-disk-0.qcow2/201/vm-201-disk-0.qcow2"]
        );
        assert_eq!(s.check_request("GET", path, &Params::new()), Ok(()));
        assert!(s
            .check_response(
                "GET",
                path,
                &json!({"path": "/var/lib/vz/images/201/vm-201-disk-0.qcow2"})
            )
            .is_empty());
        assert_eq!(
            s.check_request("GET", "/nodes/pve/storage/local/other/a/b", &Params::new()),
            Err(RequestError::UnknownPath),
            "only the content mount takes the rest of the path"
        );
    }

    #[test]
    fn json_bodies_are_refused_as_pve_takes_form_parameters() {
        let s = schema();
        let checker: &dyn SpecChecker = &s;
        let none = Params::new();
        assert_eq!(
            checker.check_request_body("GET", "/nodes", &none, None),
            Ok(())
        );
        match checker.check_request_body("GET", "/nodes", &none, Some(&json!({}))) {
            Err(RequestError::Params(e)) => assert!(e["body"].contains("no JSON"), "{e:?}"),
            other => panic!("a JSON body must be refused, got {other:?}"),
        }
    }

    #[test]
    fn checks_responses() {
        let s = schema();
        assert!(s
            .check_response("POST", "/nodes/pve/qemu", &json!("UPID:x"))
            .is_empty());
        assert_eq!(
            s.check_response("POST", "/nodes/pve/qemu", &json!(7)).len(),
            1
        );
        assert_eq!(
            s.check_response("POST", "/nodes/pve/qemu", &Value::Null)
                .len(),
            1
        );
        assert!(s.check_response("GET", "/nodes", &json!([])).is_empty());
    }

    #[test]
    fn response_objects_fit_their_properties() {
        let schema = json!({"type": "object", "properties": {
            "status": {"type": "string", "enum": ["running", "stopped"]},
            "template": {"type": "boolean", "optional": 1},
            "scsi[n]": {"type": "string", "optional": 1}
        }});
        let mut out = Vec::new();
        check_value(
            &schema,
            &json!({"status": "running", "template": 1, "scsi0": "x"}),
            "data",
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        check_value(
            &schema,
            &json!({"status": "paused", "extra": 1}),
            "data",
            &mut out,
        );
        assert_eq!(out.len(), 2, "{out:?}");
        out.clear();
        check_value(&schema, &json!({"template": true}), "data", &mut out);
        assert_eq!(
            out,
            vec!["data.status: required property missing".to_owned()]
        );
    }

    #[test]
    fn tags_match_case_insensitively_as_pve_tag_does() {
        assert!(valid_tag("Team-A") && valid_tag("prod") && valid_tag("_x.1+2"));
        assert!(!valid_tag("-lead") && !valid_tag("a=b") && !valid_tag(""));
        // An empty list is a valid pve-tag-list (check_format's `-list`).
        let s = schema();
        let empty = params(&[("vmid", "101"), ("tags", "")]);
        assert_eq!(s.check_request("POST", "/nodes/pve/qemu", &empty), Ok(()));
    }

    #[test]
    fn integers_may_arrive_as_digit_strings_as_pve_check_type_allows() {
        let mut out = Vec::new();
        check_value(&json!({"type": "integer"}), &json!("100"), "data", &mut out);
        check_value(&json!({"type": "integer"}), &json!(100), "data", &mut out);
        assert!(out.is_empty(), "{out:?}");
        check_value(&json!({"type": "integer"}), &json!("10x"), "data", &mut out);
        check_value(&json!({"type": "integer"}), &json!(""), "data", &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
    }
}
