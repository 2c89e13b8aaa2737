//! Loading a multi-file OpenAPI description: the root file and every file a
//! `$ref` reaches, each parsed once (YAML, or JSON by extension), with every
//! `$ref` rewritten to `<file index>#<JSON pointer>` so it resolves without
//! paths. Refs stay references (resolved when a check walks them), so the
//! recursive models in real specs cost nothing at load.
//!
//! YAML goes through `yaml-rust2` (pure Rust, maintained, YAML 1.2 core
//! schema as OpenAPI 3 asks; no default features: the specs are UTF-8) and is
//! converted to `serde_json::Value` here; see
//! docs/adr/009-openapi-spec-checker.md for why not a serde YAML crate.

use std::collections::{HashMap, VecDeque};
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

use crate::core::util::pct_decode;

/// How many `$ref` hops a chain may take before it counts as a cycle.
const MAX_REF_HOPS: usize = 64;

/// The files of one description; file 0 is the root.
pub struct Files {
    docs: Vec<Value>,
    names: Vec<PathBuf>,
}

impl Files {
    /// Loads `root` and everything its `$ref`s reach, transitively.
    pub fn load(root: &Path) -> Result<Files> {
        let root = std::fs::canonicalize(root)
            .with_context(|| format!("finding the OpenAPI description {}", root.display()))?;
        let mut reg = Registry::default();
        reg.id_of(root);
        let mut docs = Vec::new();
        while let Some(id) = reg.queue.pop_front() {
            let name = reg.names[id].clone();
            let mut doc = parse_file(&name)?;
            let dir = name.parent().unwrap_or(Path::new("/")).to_path_buf();
            rewrite_refs(&mut doc, id, &dir, &mut reg)
                .with_context(|| format!("resolving the $refs of {}", name.display()))?;
            docs.push(doc);
        }
        let files = Files {
            docs,
            names: reg.names,
        };
        files.verify_refs()?;
        Ok(files)
    }

    /// One in-memory document, for tests and small specs: no file refs.
    #[cfg(test)]
    pub fn from_value(root: Value) -> Result<Files> {
        let mut reg = Registry::default();
        reg.names.push(PathBuf::from("<memory>"));
        let mut root = root;
        rewrite_refs(&mut root, 0, Path::new("/nonexistent"), &mut reg)?;
        if reg.names.len() > 1 {
            bail!("an in-memory description cannot refer to other files");
        }
        let files = Files {
            docs: vec![root],
            names: reg.names,
        };
        files.verify_refs()?;
        Ok(files)
    }

    pub fn root(&self) -> &Value {
        &self.docs[0]
    }

    pub fn file_count(&self) -> usize {
        self.docs.len()
    }

    /// Follows `v`'s `$ref` chain (if any) to the value it names.
    pub fn deref<'a>(&'a self, v: &'a Value) -> Result<&'a Value, String> {
        let mut cur = v;
        for _ in 0..MAX_REF_HOPS {
            let Some(r) = cur.get("$ref").and_then(Value::as_str) else {
                return Ok(cur);
            };
            cur = self.target(r)?;
        }
        Err(format!(
            "$ref chain longer than {MAX_REF_HOPS} hops (a cycle?)"
        ))
    }

    /// The value a rewritten `$ref` (`<file>#<pointer>`) names.
    fn target(&self, r: &str) -> Result<&Value, String> {
        let (file, pointer) = r
            .split_once('#')
            .ok_or_else(|| format!("$ref '{r}' was not rewritten"))?;
        let doc = file
            .parse::<usize>()
            .ok()
            .and_then(|i| self.docs.get(i))
            .ok_or_else(|| format!("$ref '{r}' names no loaded file"))?;
        doc.pointer(pointer).ok_or_else(|| {
            let name = self.names[file.parse::<usize>().unwrap_or(0)].display();
            format!("$ref: {name} has nothing at '{pointer}'")
        })
    }

    /// Every `$ref` and discriminator mapping must name something: a
    /// dangling one is a spec error we want at load, not as a puzzling
    /// violation later.
    fn verify_refs(&self) -> Result<()> {
        let mut bad = Vec::new();
        for (i, doc) in self.docs.iter().enumerate() {
            visit_refs(doc, &mut |r| {
                if let Err(why) = self.target(r).and_then(|t| self.deref(t)) {
                    bad.push(format!("{}: {why}", self.names[i].display()));
                }
            });
        }
        if bad.is_empty() {
            return Ok(());
        }
        bail!(
            "{} dangling $refs, first: {}",
            bad.len(),
            bad[..bad.len().min(5)].join("; ")
        )
    }
}

/// Files seen so far (path -> index) and those still to parse.
#[derive(Default)]
struct Registry {
    index: HashMap<PathBuf, usize>,
    names: Vec<PathBuf>,
    queue: VecDeque<usize>,
}

impl Registry {
    fn id_of(&mut self, path: PathBuf) -> usize {
        if let Some(&id) = self.index.get(&path) {
            return id;
        }
        let id = self.names.len();
        self.index.insert(path.clone(), id);
        self.names.push(path);
        self.queue.push_back(id);
        id
    }
}

fn parse_file(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    if is_json {
        return serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()));
    }
    parse_yaml(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The first document of a YAML text as JSON (an empty text is `null`).
pub fn parse_yaml(text: &str) -> Result<Value> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| anyhow!("{e}"))?;
    match docs.into_iter().next() {
        None | Some(Yaml::BadValue) => Ok(Value::Null),
        Some(doc) => yaml_to_json(doc),
    }
}

fn yaml_to_json(y: Yaml) -> Result<Value> {
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::from(i),
        Yaml::Real(s) => real_to_json(&s)?,
        Yaml::String(s) => Value::String(s),
        Yaml::Array(items) => {
            Value::Array(items.into_iter().map(yaml_to_json).collect::<Result<_>>()?)
        }
        Yaml::Hash(hash) => {
            let mut map = Map::with_capacity(hash.len());
            for (k, v) in hash {
                map.insert(yaml_key(k)?, yaml_to_json(v)?);
            }
            Value::Object(map)
        }
        Yaml::Alias(_) => bail!("an unresolved YAML alias"),
        Yaml::BadValue => bail!("a YAML value that does not fit its tag"),
    })
}

/// `.inf`/`.nan` have no JSON form; they do not occur in API descriptions.
fn real_to_json(s: &str) -> Result<Value> {
    let f: f64 = s
        .parse()
        .with_context(|| format!("the YAML float '{s}' has no JSON form"))?;
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| anyhow!("the YAML float '{s}' has no JSON form"))
}

/// Mapping keys become strings (`200:` unquoted is an integer in YAML).
fn yaml_key(k: Yaml) -> Result<String> {
    Ok(match k {
        Yaml::String(s) | Yaml::Real(s) => s,
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => "null".to_owned(),
        other => bail!("a YAML mapping key that is not a scalar: {other:?}"),
    })
}

/// Rewrites every `$ref` (and discriminator mapping) under `v`, found in
/// file `id` in directory `dir`, to `<file>#<pointer>`, registering files
/// not seen yet.
fn rewrite_refs(v: &mut Value, id: usize, dir: &Path, reg: &mut Registry) -> Result<()> {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                *r = normalize_ref(r, id, dir, reg)?;
            }
            if let Some(mapping) = map
                .get_mut("discriminator")
                .and_then(|d| d.get_mut("mapping"))
                .and_then(Value::as_object_mut)
            {
                for target in mapping.values_mut() {
                    if let Value::String(t) = target {
                        *t = normalize_mapping(t, id, dir, reg)?;
                    }
                }
            }
            for (k, child) in map.iter_mut() {
                if k != "$ref" {
                    rewrite_refs(child, id, dir, reg)?;
                }
            }
        }
        Value::Array(items) => {
            for child in items {
                rewrite_refs(child, id, dir, reg)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `file.yml#/a/b`, `#/a/b` or `file.yml` -> `<file index>#<pointer>`.
fn normalize_ref(r: &str, id: usize, dir: &Path, reg: &mut Registry) -> Result<String> {
    let (file, fragment) = r.split_once('#').unwrap_or((r, ""));
    let pointer = pct_decode(fragment);
    if !pointer.is_empty() && !pointer.starts_with('/') {
        bail!("$ref '{r}': only JSON-pointer fragments are supported");
    }
    if file.contains("://") {
        bail!("$ref '{r}': remote references are not supported");
    }
    let target = if file.is_empty() {
        id
    } else {
        reg.id_of(normalize_path(&dir.join(pct_decode(file))))
    };
    Ok(format!("{target}#{pointer}"))
}

/// A discriminator mapping value is a `$ref` or a bare schema name (which
/// names `#/components/schemas/<name>` of the root file).
fn normalize_mapping(t: &str, id: usize, dir: &Path, reg: &mut Registry) -> Result<String> {
    let is_ref = t.contains('#') || [".yml", ".yaml", ".json"].iter().any(|e| t.ends_with(e));
    if is_ref {
        normalize_ref(t, id, dir, reg)
    } else {
        Ok(format!("0#/components/schemas/{t}"))
    }
}

/// `a/b/../c/./d` -> `a/c/d`, without touching the file system.
fn normalize_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Calls `f` with every (rewritten) `$ref` and discriminator mapping under
/// `v`.
fn visit_refs<'a>(v: &'a Value, f: &mut impl FnMut(&'a str)) {
    match v {
        Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                f(r);
            }
            let mapping = map
                .get("discriminator")
                .and_then(|d| d.get("mapping"))
                .and_then(Value::as_object);
            mapping
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(Value::as_str)
                .for_each(&mut *f);
            map.values().for_each(|c| visit_refs(c, f));
        }
        Value::Array(items) => items.iter().for_each(|c| visit_refs(c, f)),
        _ => {}
    }
}
