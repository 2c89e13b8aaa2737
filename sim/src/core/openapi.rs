//! An OpenAPI 3.0 description as a `SpecChecker` (DigitalOcean's, and any
//! other platform that publishes one). See
//! docs/adr/009-openapi-spec-checker.md.
//!
//! - `load`: the root file and every file its relative `$ref`s reach, with
//!   refs rewritten to file index + JSON pointer and followed lazily, so
//!   recursive models are fine.
//! - `validate`: one JSON value against a Schema Object.
//! - here: routing a concrete path to its path template (literal segments
//!   win over `{param}` ones, left to right), the operation by method, its
//!   path and query parameters, its JSON `requestBody`, and an answer's
//!   `application/json` schema for its status (or `default`).
//!
//! Request violations come back as `RequestError::Params`, keyed by the
//! parameter's name or the body's JSON path (`body.tags[0]`); response
//! violations as `"<path>: <why>"` strings. Headers are not passed to the
//! checker, so response headers (declared, or named only in prose like
//! `retry-after` on a 429) are never flagged.

mod load;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use regex::Regex;
use serde_json::{Map, Value};

use crate::core::spec::{Params, RequestError, SpecChecker};
pub use load::parse_yaml;
use load::Files;
use validate::{Dir, Validator, Violation};

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

pub struct OpenApi {
    files: Files,
    routes: Vec<Route>,
    /// Compiled `pattern`s; `None` when Rust's regex cannot compile one.
    regexes: Mutex<HashMap<String, Option<Regex>>>,
}

struct Route {
    template: String,
    segments: Vec<Segment>,
}

enum Segment {
    Literal(String),
    Param(String),
}

/// A request's operation, found: the path item, the operation and the
/// path's parameters by name.
struct Found<'a> {
    item: &'a Value,
    op: &'a Value,
    path_params: BTreeMap<String, String>,
}

impl OpenApi {
    /// Loads a description (YAML or JSON) and the files its `$ref`s reach.
    pub fn load(path: &Path) -> Result<OpenApi> {
        let files = Files::load(path)?;
        OpenApi::from_files(files).with_context(|| format!("reading {}", path.display()))
    }

    /// A single-document description already in memory.
    #[cfg(test)]
    pub fn from_value(root: Value) -> Result<OpenApi> {
        OpenApi::from_files(Files::from_value(root)?)
    }

    fn from_files(files: Files) -> Result<OpenApi> {
        let version = files
            .root()
            .get("openapi")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !version.starts_with("3.") {
            bail!("not an OpenAPI 3 description (openapi: '{version}')");
        }
        let Some(paths) = files.root().get("paths").and_then(Value::as_object) else {
            bail!("the description has no paths");
        };
        let routes = paths
            .keys()
            .map(|t| Route {
                template: t.clone(),
                segments: split_template(t),
            })
            .collect();
        Ok(OpenApi {
            files,
            routes,
            regexes: Mutex::new(HashMap::new()),
        })
    }

    /// How many files the description spans.
    pub fn file_count(&self) -> usize {
        self.files.file_count()
    }

    /// How many path templates it declares.
    pub fn path_count(&self) -> usize {
        self.routes.len()
    }

    fn validator(&self, dir: Dir) -> Validator<'_> {
        Validator {
            files: &self.files,
            regexes: &self.regexes,
            dir,
        }
    }

    /// The template matching `path` and its parameters: among templates of
    /// the same length, a literal segment beats a `{param}` at the first
    /// place they differ (`/v2/droplets/actions` over `/v2/droplets/{id}`).
    fn route(&self, path: &str) -> Option<(&Route, BTreeMap<String, String>)> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let rank = |r: &Route| -> Option<Vec<bool>> {
            if r.segments.len() != segs.len() {
                return None;
            }
            let mut literal = Vec::with_capacity(segs.len());
            for (t, s) in r.segments.iter().zip(&segs) {
                match t {
                    Segment::Literal(l) if l == s => literal.push(true),
                    Segment::Literal(_) => return None,
                    Segment::Param(_) => literal.push(false),
                }
            }
            Some(literal)
        };
        let route = self
            .routes
            .iter()
            .filter_map(|r| rank(r).map(|k| (k, r)))
            .max_by(|a, b| a.0.cmp(&b.0))?
            .1;
        let params = route
            .segments
            .iter()
            .zip(&segs)
            .filter_map(|(t, s)| match t {
                Segment::Param(name) => Some((name.clone(), (*s).to_owned())),
                Segment::Literal(_) => None,
            })
            .collect();
        Some((route, params))
    }

    fn find(&self, method: &str, path: &str) -> Result<Found<'_>, RequestError> {
        let (route, path_params) = self.route(path).ok_or(RequestError::UnknownPath)?;
        let item = self
            .root_path_item(&route.template)
            .ok_or(RequestError::UnknownPath)?;
        let method = method.to_ascii_lowercase();
        if !METHODS.contains(&method.as_str()) {
            return Err(RequestError::UnknownMethod);
        }
        let op = item.get(&method).ok_or(RequestError::UnknownMethod)?;
        let op = self
            .files
            .deref(op)
            .map_err(|_| RequestError::UnknownMethod)?;
        Ok(Found {
            item,
            op,
            path_params,
        })
    }

    fn root_path_item(&self, template: &str) -> Option<&Value> {
        let item = self.files.root().get("paths")?.get(template)?;
        self.files.deref(item).ok()
    }

    /// The operation's parameters, the path item's ones overridden by the
    /// operation's (same `name` and `in`).
    fn parameters<'a>(&'a self, found: &Found<'a>) -> Vec<&'a Map<String, Value>> {
        let mut out: Vec<&Map<String, Value>> = Vec::new();
        for holder in [found.item, found.op] {
            let list = holder.get("parameters").and_then(Value::as_array);
            for p in list.into_iter().flatten() {
                let Some(p) = self.files.deref(p).ok().and_then(Value::as_object) else {
                    continue;
                };
                out.retain(|q| !(q.get("name") == p.get("name") && q.get("in") == p.get("in")));
                out.push(p);
            }
        }
        out
    }

    /// Checks a request: path and query parameters, and the JSON body
    /// against the operation's `requestBody` (`None`: no body was sent).
    pub fn check(
        &self,
        method: &str,
        path: &str,
        query: &Params,
        body: Option<&Value>,
    ) -> Result<(), RequestError> {
        let found = self.find(method, path)?;
        let params = self.parameters(&found);
        let violations = self
            .check_path_params(&params, &found.path_params)
            .into_iter()
            .chain(self.check_query(&params, query))
            .chain(self.check_body(found.op, body));
        let mut errors: BTreeMap<String, String> = BTreeMap::new();
        for v in violations {
            match errors.get_mut(&v.at) {
                Some(why) => {
                    why.push_str("; ");
                    why.push_str(&v.why);
                }
                None => {
                    errors.insert(v.at, v.why);
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RequestError::Params(errors))
        }
    }

    fn check_path_params(
        &self,
        params: &[&Map<String, Value>],
        given: &BTreeMap<String, String>,
    ) -> Vec<Violation> {
        let mut out = Vec::new();
        for p in params.iter().filter(|p| location(p) == "path") {
            let name = param_name(p);
            match given.get(name) {
                Some(text) => {
                    out.extend(self.check_param_values(p, name, std::slice::from_ref(text)))
                }
                None => out.push(violation(name, "path parameter missing from the template")),
            }
        }
        out
    }

    fn check_query(&self, params: &[&Map<String, Value>], query: &Params) -> Vec<Violation> {
        let declared: Vec<&&Map<String, Value>> =
            params.iter().filter(|p| location(p) == "query").collect();
        let mut out = Vec::new();
        for (name, values) in query {
            match declared.iter().find(|p| param_name(p) == name) {
                Some(p) => out.extend(self.check_param_values(p, name, values)),
                None => out.push(violation(
                    name,
                    "query parameter not declared by the operation",
                )),
            }
        }
        for p in declared {
            let name = param_name(p);
            if is_true(p, "required") && !query.contains_key(name) {
                out.push(violation(name, "required query parameter missing"));
            }
        }
        out
    }

    /// Textual parameter values, read as their schema's type says, then
    /// checked against it. Arrays come as repeated keys (`explode`, the
    /// default) or comma-separated (`explode: false`).
    fn check_param_values(
        &self,
        p: &Map<String, Value>,
        name: &str,
        values: &[String],
    ) -> Vec<Violation> {
        let Some(schema) = p.get("schema") else {
            return Vec::new();
        };
        let schema = match self.files.deref(schema) {
            Ok(s) => s,
            Err(why) => return vec![violation(name, &why)],
        };
        let value = match self.param_value(p, schema, values) {
            Ok(v) => v,
            Err(why) => return vec![violation(name, &why)],
        };
        self.validator(Dir::Request).check(schema, &value, name)
    }

    fn param_value(
        &self,
        p: &Map<String, Value>,
        schema: &Value,
        values: &[String],
    ) -> Result<Value, String> {
        if schema.get("type").and_then(Value::as_str) == Some("array") {
            let item = schema.get("items").unwrap_or(&Value::Null);
            let item = self.files.deref(item)?;
            let explode = p.get("explode").and_then(Value::as_bool).unwrap_or(true);
            let texts: Vec<&str> = if explode {
                values.iter().map(String::as_str).collect()
            } else {
                values.iter().flat_map(|v| v.split(',')).collect()
            };
            return texts.into_iter().map(|t| scalar(item, t)).collect();
        }
        match values {
            [one] => scalar(schema, one),
            [] => Err("no value".into()),
            _ => Err("repeated, but not an array".into()),
        }
    }

    fn check_body(&self, op: &Value, body: Option<&Value>) -> Vec<Violation> {
        let declared = op.get("requestBody").and_then(|b| self.files.deref(b).ok());
        match (declared, body) {
            (None, None) => Vec::new(),
            (None, Some(_)) => vec![violation("body", "the operation takes no request body")],
            (Some(rb), None) if is_true_v(rb, "required") => {
                vec![violation("body", "required request body missing")]
            }
            (Some(_), None) => Vec::new(),
            (Some(rb), Some(v)) => match self.json_schema(rb) {
                Some(schema) => self.validator(Dir::Request).check(schema, v, "body"),
                None => vec![violation("body", "the operation takes no JSON body")],
            },
        }
    }

    /// The `application/json` (or `+json`) schema of a request body or
    /// response; `{}` when the media type gives none.
    fn json_schema<'a>(&'a self, holder: &'a Value) -> Option<&'a Value> {
        static ANY: Value = Value::Null;
        let content = holder.get("content")?.as_object()?;
        let (_, media) = content.iter().find(|(t, _)| is_json_media(t))?;
        let media = self.files.deref(media).ok()?;
        Some(media.get("schema").unwrap_or(&ANY))
    }

    /// Checks an answer: the status must be one the operation lists (or it
    /// has a `default`), and a JSON body must fit that response's schema.
    pub fn check_answer(&self, method: &str, path: &str, status: u16, body: &Value) -> Vec<String> {
        let found = match self.find(method, path) {
            Ok(f) => f,
            Err(e) => return vec![format!("{method} {path}: not in the spec ({e:?})")],
        };
        let Some(response) = self.response_for(found.op, status) else {
            return vec![format!(
                "status {status}: not a response {method} {path} lists"
            )];
        };
        let Ok(response) = self.files.deref(response) else {
            return vec![format!(
                "status {status}: its response $ref does not resolve"
            )];
        };
        let violations = match self.json_schema(response) {
            Some(schema) => self.validator(Dir::Response).check(schema, body, "body"),
            None if body.is_null() => Vec::new(),
            None if response.get("content").is_some() => Vec::new(), // not JSON: not ours to check
            None => vec![violation(
                "body",
                &format!("status {status} declares no body"),
            )],
        };
        violations.iter().map(Violation::to_string).collect()
    }

    /// `responses["202"]`, then `"2XX"`, then `default`.
    fn response_for<'a>(&self, op: &'a Value, status: u16) -> Option<&'a Value> {
        let responses = op.get("responses")?;
        let range = format!("{}XX", status / 100);
        responses
            .get(status.to_string())
            .or_else(|| responses.get(&range))
            .or_else(|| responses.get(range.to_ascii_lowercase()))
            .or_else(|| responses.get("default"))
    }
}

impl SpecChecker for OpenApi {
    /// Query parameters only; an operation that requires a body is refused.
    fn check_request(&self, method: &str, path: &str, params: &Params) -> Result<(), RequestError> {
        self.check(method, path, params, None)
    }

    fn check_request_body(
        &self,
        method: &str,
        path: &str,
        params: &Params,
        body: Option<&Value>,
    ) -> Result<(), RequestError> {
        self.check(method, path, params, body)
    }

    fn check_response(&self, method: &str, path: &str, status: u16, body: &Value) -> Vec<String> {
        self.check_answer(method, path, status, body)
    }
}

/// A parameter's text as the JSON value its schema's type reads it as.
fn scalar(schema: &Value, text: &str) -> Result<Value, String> {
    let ty = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    let bad = || format!("expected {ty}, got '{text}'");
    Ok(match ty {
        "integer" => Value::from(text.parse::<i64>().map_err(|_| bad())?),
        "number" => {
            let n: f64 = text.parse().map_err(|_| bad())?;
            serde_json::Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(bad)?
        }
        "boolean" => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(bad()),
        },
        _ => Value::String(text.to_owned()),
    })
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

fn is_json_media(t: &str) -> bool {
    let essence = t.split(';').next().unwrap_or("").trim();
    essence == "application/json" || essence.ends_with("+json")
}

fn location(p: &Map<String, Value>) -> &str {
    p.get("in").and_then(Value::as_str).unwrap_or("")
}

fn param_name(p: &Map<String, Value>) -> &str {
    p.get("name").and_then(Value::as_str).unwrap_or("")
}

fn is_true(p: &Map<String, Value>, key: &str) -> bool {
    p.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn is_true_v(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn violation(at: &str, why: &str) -> Violation {
    Violation {
        at: at.to_owned(),
        why: why.to_owned(),
    }
}

#[cfg(test)]
mod tests;
