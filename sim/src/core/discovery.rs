//! A Google API discovery document (Compute Engine's `compute.v1.json`, and
//! any other `discovery#restDescription`) as a `SpecChecker`. See
//! docs/adr/011-discovery-spec-checker.md.
//!
//! - here: loading (every method of the nested `resources`, indexed in a
//!   segment trie), routing a concrete path to its method (literal segments
//!   before `{param}` ones before `{+param}` reserved expansions, left to
//!   right; the HTTP method chooses among templates that match), the path
//!   and query parameters (the method's, the document's top-level ones and
//!   Google's system parameters), the JSON request body against the
//!   method's `request` schema and answers against its `response` schema,
//!   or Google's error shape for 4xx/5xx.
//! - `schema`: one JSON value against a discovery schema (`type`/`format`,
//!   `$ref`, `properties`, `additionalProperties`, `items`, `enum`,
//!   `pattern`, `annotations.required`), read the proto3 JSON way: lenient
//!   in requests as Google's parser is, canonical in answers.
//! - `errors`: the error envelope discovery documents do not describe.
//!
//! Request violations come back as `RequestError::Params`, keyed by the
//! parameter's name or the body's JSON path (`body.disks[0].boot`);
//! response violations as `"<path>: <why>"` strings.

mod errors;
mod schema;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use regex::Regex;
use serde_json::{Map, Value};

use crate::core::spec::{Params, RequestError, SpecChecker};
use schema::{Dir, Validator, Violation};

/// Google's system parameters that a discovery document's top-level
/// `parameters` leave out, in their URL query form: `$`-prefixed aliases
/// of the documented ones and a few more (Google Cloud "System parameters",
/// https://cloud.google.com/apis/docs/system-parameters). Each is read as
/// the document's parameter named in the second column (`""`: a string).
/// Not accepted: `passwd`/`password`, which the same table reserves so
/// that passwords stay out of URLs.
const SYSTEM_PARAMS: &[(&str, &str)] = &[
    ("$alt", "alt"),
    ("$apiVersion", ""),
    ("$callback", "callback"),
    ("$ct", ""),
    ("$fields", "fields"),
    ("$httpMethod", ""),
    ("$key", "key"),
    ("$outputDefaults", "prettyPrint"),
    ("$prettyPrint", "prettyPrint"),
    ("$unique", ""),
];

pub struct Discovery {
    doc: Value,
    /// `basePath` (`/compute/v1/`), stripped from paths that carry it.
    base_path: String,
    methods: Vec<Method>,
    trie: Node,
    /// Compiled, anchored `pattern`s; `None` when Rust's regex cannot
    /// compile one (discovery patterns are RE2, which it nearly is).
    regexes: Mutex<HashMap<String, Option<Regex>>>,
}

struct Method {
    /// `compute.instances.insert`: what `annotations.required` names.
    id: String,
    http: String,
    segments: Vec<Segment>,
    spec: Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}`: one segment.
    Param(String),
    /// `{+name}`: RFC 6570 reserved expansion, one or more segments.
    Plus(String),
}

/// The method index: one trie level per path segment.
#[derive(Default)]
struct Node {
    literal: HashMap<String, Node>,
    param: Option<Box<Node>>,
    plus: Option<Box<Node>>,
    /// Methods whose template ends here.
    methods: Vec<usize>,
}

impl Node {
    fn insert(&mut self, segments: &[Segment], method: usize) {
        let Some((first, rest)) = segments.split_first() else {
            self.methods.push(method);
            return;
        };
        let next = match first {
            Segment::Literal(l) => self.literal.entry(l.clone()).or_default(),
            Segment::Param(_) => self.param.get_or_insert_with(Default::default),
            Segment::Plus(_) => self.plus.get_or_insert_with(Default::default),
        };
        next.insert(rest, method);
    }

    /// Every method whose template matches `path`, best first: at the first
    /// segment where two differ, a literal beats `{param}`, which beats
    /// `{+param}`.
    fn matches(&self, path: &[&str], out: &mut Vec<usize>) {
        let Some((first, rest)) = path.split_first() else {
            out.extend(&self.methods);
            return;
        };
        if let Some(next) = self.literal.get(*first) {
            next.matches(rest, out);
        }
        if let Some(next) = &self.param {
            next.matches(rest, out);
        }
        if let Some(next) = &self.plus {
            for taken in 1..=path.len() {
                next.matches(&path[taken..], out);
            }
        }
    }
}

impl Discovery {
    /// Loads a discovery document (JSON).
    pub fn load(path: &Path) -> Result<Discovery> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Discovery::from_value(doc).with_context(|| format!("reading {}", path.display()))
    }

    pub fn from_value(doc: Value) -> Result<Discovery> {
        if doc.get("kind").and_then(Value::as_str) != Some("discovery#restDescription") {
            bail!("not a Google discovery document (kind is not discovery#restDescription)");
        }
        let base_path = doc
            .get("servicePath")
            .and_then(Value::as_str)
            .map(|s| format!("/{}", s.trim_start_matches('/')))
            .or_else(|| {
                doc.get("basePath")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "/".to_owned());
        let mut methods = Vec::new();
        collect_methods(doc.get("resources"), &mut methods)?;
        collect_methods_of(&doc, &mut methods)?;
        if methods.is_empty() {
            bail!("the discovery document declares no methods");
        }
        let schemas = doc.get("schemas").and_then(Value::as_object);
        for m in &methods {
            for key in ["request", "response"] {
                let Some(name) = m.spec.get(key).and_then(|r| r.get("$ref")) else {
                    continue;
                };
                let name = name.as_str().unwrap_or("");
                if schemas.and_then(|s| s.get(name)).is_none() {
                    bail!("{}: {key} $ref '{name}' is not in schemas", m.id);
                }
            }
        }
        let mut trie = Node::default();
        for (i, m) in methods.iter().enumerate() {
            trie.insert(&m.segments, i);
        }
        Ok(Discovery {
            doc,
            base_path,
            methods,
            trie,
            regexes: Mutex::new(HashMap::new()),
        })
    }

    /// How many methods the document declares.
    pub fn method_count(&self) -> usize {
        self.methods.len()
    }

    /// How many distinct path templates they use.
    pub fn path_count(&self) -> usize {
        let mut paths: Vec<&Vec<Segment>> = self.methods.iter().map(|m| &m.segments).collect();
        paths.sort_by_key(|s| format!("{s:?}"));
        paths.dedup();
        paths.len()
    }

    /// How many schemas it declares.
    pub fn schema_count(&self) -> usize {
        self.doc
            .get("schemas")
            .and_then(Value::as_object)
            .map_or(0, Map::len)
    }

    fn validator(&self, dir: Dir, method_id: &str) -> Validator<'_> {
        Validator {
            schemas: self.doc.get("schemas").and_then(Value::as_object),
            regexes: &self.regexes,
            dir,
            method_id: method_id.to_owned(),
        }
    }

    /// The path relative to `servicePath`, split: `/compute/v1/projects/p`
    /// and `projects/p` are the same request. Empty segments are kept, so
    /// `zones//instances` fails `zone`'s check instead of routing elsewhere.
    fn split<'p>(&self, path: &'p str) -> Vec<&'p str> {
        let rel = path
            .strip_prefix(self.base_path.as_str())
            .unwrap_or(path)
            .trim_start_matches('/');
        rel.split('/').collect()
    }

    /// The request's method and its path parameters: the best-ranked
    /// template with this HTTP method (Google routes on method and path
    /// together); `UnknownMethod` when templates match but none has it.
    fn find(
        &self,
        http: &str,
        path: &str,
    ) -> Result<(&Method, BTreeMap<String, String>), RequestError> {
        let segs = self.split(path);
        let mut candidates = Vec::new();
        self.trie.matches(&segs, &mut candidates);
        if candidates.is_empty() {
            return Err(RequestError::UnknownPath);
        }
        let method = candidates
            .iter()
            .map(|&i| &self.methods[i])
            .find(|m| m.http.eq_ignore_ascii_case(http))
            .ok_or(RequestError::UnknownMethod)?;
        let params = bind(&method.segments, &segs).ok_or(RequestError::UnknownPath)?;
        Ok((method, params))
    }

    /// The method a request would reach (`compute.instances.insert`).
    pub fn method_id(&self, http: &str, path: &str) -> Result<&str, RequestError> {
        self.find(http, path).map(|(m, _)| m.id.as_str())
    }

    /// Checks a request: path and query parameters, and the JSON body
    /// against the method's `request` schema (`None`: no body was sent).
    pub fn check(
        &self,
        http: &str,
        path: &str,
        query: &Params,
        body: Option<&Value>,
    ) -> Result<(), RequestError> {
        let (method, path_params) = self.find(http, path)?;
        let declared = method.spec.get("parameters").and_then(Value::as_object);
        let mut out = Vec::new();
        for (name, p) in declared.into_iter().flatten() {
            if location(p) != "path" {
                continue;
            }
            match path_params.get(name) {
                Some(v) if v.is_empty() => {
                    out.push(violation(name, "required path parameter is empty"))
                }
                Some(v) => out.extend(self.check_param(p, name, std::slice::from_ref(v))),
                None => out.push(violation(name, "path parameter missing from the template")),
            }
        }
        out.extend(self.check_query(declared, query));
        out.extend(self.check_body(method, body));
        let mut errors: BTreeMap<String, String> = BTreeMap::new();
        for v in out {
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

    fn check_query(&self, declared: Option<&Map<String, Value>>, query: &Params) -> Vec<Violation> {
        let global = self.doc.get("parameters").and_then(Value::as_object);
        let mut out = Vec::new();
        for (name, values) in query {
            let own = declared.and_then(|d| d.get(name));
            if own.is_some_and(|p| location(p) == "path") {
                out.push(violation(name, "a path parameter, not a query parameter"));
                continue;
            }
            let p = own
                .or_else(|| global.and_then(|g| g.get(name)))
                .or_else(|| {
                    let (_, alias) = SYSTEM_PARAMS.iter().find(|(n, _)| n == name)?;
                    Some(global.and_then(|g| g.get(*alias)).unwrap_or(&STRING_PARAM))
                });
            match p {
                Some(p) if name == "alt" || name == "$alt" => {
                    out.extend(self.check_alt(p, name, values))
                }
                Some(p) => out.extend(self.check_param(p, name, values)),
                None => out.push(violation(
                    name,
                    "query parameter not declared by the method, the document or Google's system parameters",
                )),
            }
        }
        for (name, p) in declared.into_iter().flatten() {
            if location(p) == "query" && is_true(p, "required") && !query.contains_key(name) {
                out.push(violation(name, "required query parameter missing"));
            }
        }
        out
    }

    /// `alt`/`$alt`: the format, then media-type parameters. Google's
    /// generated REST clients (google-cloud-python, -java; the GAPIC
    /// generators) send `$alt=json;enum-encoding=int`, asking for enums as
    /// numbers; that is the only parameter accepted.
    fn check_alt(&self, p: &Value, name: &str, values: &[String]) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut formats = Vec::new();
        for v in values {
            let mut parts = v.split(';');
            formats.push(parts.next().unwrap_or("").trim().to_owned());
            for extra in parts.map(str::trim) {
                if extra != "enum-encoding=int" {
                    out.push(violation(
                        name,
                        &format!("'{extra}' is not a parameter of alt (only enum-encoding=int is)"),
                    ));
                }
            }
        }
        out.extend(self.check_param(p, name, &formats));
        out
    }

    /// A parameter's textual values: repeated only if `repeated`, each read
    /// as its `type`/`format` and held to `enum`, `pattern` (anchored) and
    /// `minimum`/`maximum` (which discovery writes as strings).
    fn check_param(&self, p: &Value, name: &str, values: &[String]) -> Vec<Violation> {
        let mut out = Vec::new();
        if values.len() > 1 && !is_true(p, "repeated") {
            out.push(violation(
                name,
                "given more than once, but not a repeated parameter",
            ));
        }
        let ty = p.get("type").and_then(Value::as_str).unwrap_or("string");
        let format = p.get("format").and_then(Value::as_str).unwrap_or("");
        for text in values {
            let bad = |what: &str| violation(name, &format!("expected {what}, got '{text}'"));
            let number: Option<f64> = match (ty, format) {
                ("integer", "uint32") => match text.parse::<u32>() {
                    Ok(n) => Some(n.into()),
                    Err(_) => {
                        out.push(bad("a uint32"));
                        continue;
                    }
                },
                ("integer", _) => match text.parse::<i32>() {
                    Ok(n) => Some(n.into()),
                    Err(_) => {
                        out.push(bad("an int32"));
                        continue;
                    }
                },
                ("number", _) => match text.parse::<f64>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        out.push(bad("a number"));
                        continue;
                    }
                },
                ("boolean", _) => {
                    if text != "true" && text != "false" {
                        out.push(bad("true or false"));
                    }
                    None
                }
                ("string", "int64") => {
                    if text.parse::<i64>().is_err() {
                        out.push(bad("an int64"));
                    }
                    None
                }
                ("string", "uint64") => {
                    if text.parse::<u64>().is_err() {
                        out.push(bad("a uint64"));
                    }
                    None
                }
                _ => None,
            };
            if let Some(n) = number {
                if let Some(min) = bound(p, "minimum") {
                    if n < min {
                        out.push(violation(
                            name,
                            &format!("{text} is below the minimum {min}"),
                        ));
                    }
                }
                if let Some(max) = bound(p, "maximum") {
                    if n > max {
                        out.push(violation(
                            name,
                            &format!("{text} is above the maximum {max}"),
                        ));
                    }
                }
            }
            if let Some(allowed) = p.get("enum").and_then(Value::as_array) {
                if !allowed.iter().any(|a| a.as_str() == Some(text)) {
                    out.push(violation(
                        name,
                        &format!("'{text}' is not one of {}", schema::list_enum(allowed)),
                    ));
                }
            }
            if let Some(pattern) = p.get("pattern").and_then(Value::as_str) {
                if let Some(false) = schema::matches(&self.regexes, pattern, text) {
                    out.push(violation(
                        name,
                        &format!("'{text}' must be a match of regex '{pattern}'"),
                    ));
                }
            }
        }
        out
    }

    fn check_body(&self, method: &Method, body: Option<&Value>) -> Vec<Violation> {
        let request = method.spec.get("request");
        match (request, body) {
            (None, None) => Vec::new(),
            // An empty object is what a client that always sends a body
            // sends; nothing in it can be wrong.
            (None, Some(Value::Object(o))) if o.is_empty() => Vec::new(),
            (None, Some(Value::Null)) => Vec::new(),
            (None, Some(_)) => vec![violation("body", "the method takes no request body")],
            (Some(_), None) => vec![violation("body", "Required field 'resource' not specified")],
            (Some(schema), Some(v)) => self
                .validator(Dir::Request, &method.id)
                .check(schema, v, "body"),
        }
    }

    /// Checks an answer: 2xx against the method's `response` schema (none
    /// declared: an empty body), 4xx/5xx against Google's error shape;
    /// other statuses are not what Google's JSON APIs answer.
    pub fn check_answer(&self, http: &str, path: &str, status: u16, body: &Value) -> Vec<String> {
        let method = match self.find(http, path) {
            Ok((m, _)) => m,
            Err(e) => {
                return vec![format!(
                    "{http} {path}: not in the discovery document ({e:?})"
                )]
            }
        };
        let violations = match status {
            200..=299 => match method.spec.get("response") {
                Some(schema) => self
                    .validator(Dir::Response, &method.id)
                    .check(schema, body, "body"),
                None if body.is_null() || body.as_object().is_some_and(Map::is_empty) => Vec::new(),
                None => vec![violation("body", "the method declares no response body")],
            },
            400..=599 => errors::check(status, body),
            _ => vec![violation(
                "status",
                &format!("{status}: a Google JSON API answers 2xx or a 4xx/5xx error"),
            )],
        };
        violations.iter().map(Violation::to_string).collect()
    }
}

impl SpecChecker for Discovery {
    /// Query parameters only; a method that takes a body is refused.
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

/// A system parameter with no documented counterpart: any string.
static STRING_PARAM: Value = Value::Null;

fn collect_methods(resources: Option<&Value>, out: &mut Vec<Method>) -> Result<()> {
    let Some(resources) = resources.and_then(Value::as_object) else {
        return Ok(());
    };
    for resource in resources.values() {
        collect_methods_of(resource, out)?;
        collect_methods(resource.get("resources"), out)?;
    }
    Ok(())
}

/// The `methods` of one resource (or of the document itself).
fn collect_methods_of(holder: &Value, out: &mut Vec<Method>) -> Result<()> {
    let Some(methods) = holder.get("methods").and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, m) in methods {
        let id = m
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or(name)
            .to_owned();
        let (Some(http), Some(path)) = (
            m.get("httpMethod").and_then(Value::as_str),
            m.get("path").and_then(Value::as_str),
        ) else {
            bail!("{id}: a method needs httpMethod and path");
        };
        let segments = split_template(path).with_context(|| format!("{id}: path '{path}'"))?;
        out.push(Method {
            id,
            http: http.to_ascii_uppercase(),
            segments,
            spec: m.clone(),
        });
    }
    Ok(())
}

/// `projects/{project}/zones/{zone}/{+parentName}/x` into segments. A
/// segment that mixes literal text and a `{param}` is not supported (no
/// compute.v1 path has one): loading fails rather than routing wrongly.
fn split_template(path: &str) -> Result<Vec<Segment>> {
    path.trim_start_matches('/')
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) if name.contains(['{', '}']) => {
                    bail!("segment '{s}' is not one template")
                }
                Some(name) => Ok(match name.strip_prefix('+') {
                    Some(name) => Segment::Plus(name.to_owned()),
                    None => Segment::Param(name.to_owned()),
                }),
                None if s.contains(['{', '}']) => bail!("segment '{s}' mixes text and a template"),
                None => Ok(Segment::Literal(s.to_owned())),
            },
        )
        .collect()
}

/// The path parameters of `segments` matched against `path` (a `{+x}`
/// takes as few segments as still lets the rest match).
fn bind(segments: &[Segment], path: &[&str]) -> Option<BTreeMap<String, String>> {
    let Some((first, rest)) = segments.split_first() else {
        return path.is_empty().then(BTreeMap::new);
    };
    let (head, tail) = path.split_first()?;
    match first {
        Segment::Literal(l) => (l == head).then(|| bind(rest, tail)).flatten(),
        Segment::Param(name) => {
            let mut params = bind(rest, tail)?;
            params.insert(name.clone(), (*head).to_owned());
            Some(params)
        }
        Segment::Plus(name) => (1..=path.len()).find_map(|taken| {
            let mut params = bind(rest, &path[taken..])?;
            params.insert(name.clone(), path[..taken].join("/"));
            Some(params)
        }),
    }
}

fn location(p: &Value) -> &str {
    p.get("location").and_then(Value::as_str).unwrap_or("")
}

fn is_true(p: &Value, key: &str) -> bool {
    p.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// `minimum`/`maximum`: strings in discovery (`"minimum": "1"`), numbers
/// accepted too.
fn bound(p: &Value, key: &str) -> Option<f64> {
    match p.get(key)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn violation(at: &str, why: &str) -> Violation {
    Violation {
        at: at.to_owned(),
        why: why.to_owned(),
    }
}

#[cfg(test)]
mod tests;
