//! A small multi-file fixture (relative `$ref`s, pointers, cycles) and
//! DigitalOcean's real description (`/work/shared/specs/digitalocean`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::{json, Value};

use super::load::parse_yaml;
use super::*;

// ---- the fixture ----------------------------------------------------------

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("golden-openapi-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the fixture dir");
        TempDir(dir)
    }

    fn write(&self, rel: &str, text: &str) -> &TempDir {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).expect("creating a fixture subdir");
        std::fs::write(&path, text).expect("writing a fixture file");
        self
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const ROOT: &str = r#"
openapi: 3.0.0
info: {title: fixture, version: "1"}
paths:
  /v1/things:
    post:
      $ref: 'ops/things_create.yml'
  /v1/things/{thing_id}:
    parameters:
      - $ref: 'ops/parameters.yml#/thing_id'
    get:
      parameters:
        - $ref: 'ops/parameters.yml#/limit'
        - $ref: '#/components/parameters/mode'
      responses:
        200:
          description: a tree
          content:
            application/json:
              schema:
                $ref: '#/components/schemas/Node'
        default:
          $ref: '#/components/responses/error'
  /v1/things/special:
    get:
      responses:
        '204':
          description: nothing
components:
  parameters:
    mode:
      in: query
      name: mode
      schema: {type: string, enum: [fast, slow]}
  responses:
    error:
      description: an error
      content:
        application/json:
          schema: {$ref: 'models/error.yml'}
  schemas:
    Node:
      type: object
      required: [name]
      properties:
        name: {type: string}
        children:
          type: array
          items: {$ref: '#/components/schemas/Node'}
        partner: {$ref: 'models/a.yml'}
"#;

const THINGS_CREATE: &str = r#"
requestBody:
  required: true
  content:
    application/json:
      schema: {$ref: '../models/thing.yml'}
responses:
  '201':
    description: created
    content:
      application/json:
        schema:
          type: object
          required: [thing]
          properties:
            thing: {$ref: '../models/thing.yml'}
"#;

const PARAMETERS: &str = r#"
thing_id:
  in: path
  name: thing_id
  required: true
  schema: {type: integer, minimum: 1}
limit:
  in: query
  name: limit
  schema: {type: integer, minimum: 1, maximum: 10}
"#;

const THING: &str = r#"
type: object
additionalProperties: false
required: [name, size]
properties:
  id: {type: integer, readOnly: true}
  name: {$ref: '../common/types.yml#/names~1short'}
  size: {$ref: '#/definitions/size'}
  tags:
    type: array
    maxItems: 3
    items: {type: string, pattern: '^[a-z]+$'}
  note: {type: string, nullable: true}
definitions:
  size: {type: string, enum: [small, large]}
"#;

const TYPES: &str = r#"
names/short: {type: string, maxLength: 8}
"#;

// a.yml and b.yml refer to each other: a cycle across files.
const A: &str = r#"
type: object
properties:
  b: {$ref: 'b.yml'}
  label: {type: string}
"#;

const B: &str = r#"
type: object
properties:
  a: {$ref: './a.yml'}
  count: {type: integer}
"#;

const ERROR: &str = r#"
type: object
required: [id, message]
properties:
  id: {type: string}
  message: {type: string}
"#;

fn fixture() -> (TempDir, OpenApi) {
    let dir = TempDir::new();
    dir.write("root.yaml", ROOT)
        .write("ops/things_create.yml", THINGS_CREATE)
        .write("ops/parameters.yml", PARAMETERS)
        .write("models/thing.yml", THING)
        .write("models/a.yml", A)
        .write("models/b.yml", B)
        .write("models/error.yml", ERROR)
        .write("common/types.yml", TYPES);
    let api = OpenApi::load(&dir.path("root.yaml")).expect("loading the fixture");
    (dir, api)
}

fn query(pairs: &[(&str, &str)]) -> Params {
    let mut p = Params::new();
    for (k, v) in pairs {
        p.entry((*k).to_owned()).or_default().push((*v).to_owned());
    }
    p
}

/// The parameter errors of a request that must be refused.
fn refused(
    api: &OpenApi,
    method: &str,
    path: &str,
    q: &Params,
    body: Option<Value>,
) -> BTreeMap<String, String> {
    match api.check(method, path, q, body.as_ref()) {
        Err(RequestError::Params(e)) => e,
        other => panic!("{method} {path}: expected parameter errors, got {other:?}"),
    }
}

fn accepted(api: &OpenApi, method: &str, path: &str, q: &Params, body: Option<Value>) {
    assert_eq!(
        api.check(method, path, q, body.as_ref()),
        Ok(()),
        "{method} {path} {body:?}"
    );
}

#[test]
fn fixture_loads_every_file_a_ref_reaches_once() {
    let (_dir, api) = fixture();
    // root, things_create, parameters, thing, types, a, b, error.
    assert_eq!(api.file_count(), 8);
    assert_eq!(api.path_count(), 3);
}

#[test]
fn fixture_body_follows_relative_refs_and_pointers() {
    let (_dir, api) = fixture();
    let none = Params::new();
    let good = json!({"name": "box", "size": "small", "tags": ["a", "b"], "note": null});
    accepted(&api, "POST", "/v1/things", &none, Some(good));
    // `names~1short` in another directory: maxLength 8.
    let e = refused(
        &api,
        "POST",
        "/v1/things",
        &none,
        Some(json!({"name": "much-too-long", "size": "small"})),
    );
    assert!(e["body.name"].contains("maxLength 8"), "{e:?}");
    // `#/definitions/size` inside thing.yml.
    let e = refused(
        &api,
        "POST",
        "/v1/things",
        &none,
        Some(json!({"name": "box", "size": "huge"})),
    );
    assert!(e["body.size"].contains("enumerated"), "{e:?}");
    let e = refused(
        &api,
        "POST",
        "/v1/things",
        &none,
        Some(json!({"name": "box", "size": "small", "tags": ["ok", "Not"], "colour": 1})),
    );
    assert!(e["body.tags[1]"].contains("pattern"), "{e:?}");
    assert!(e["body.colour"].contains("not declared"), "{e:?}");
    let e = refused(
        &api,
        "POST",
        "/v1/things",
        &none,
        Some(json!({"size": "small", "tags": ["a", "b", "c", "d"]})),
    );
    assert!(e["body.name"].contains("required"), "{e:?}");
    assert!(e["body.tags"].contains("maxItems"), "{e:?}");
    let e = refused(&api, "POST", "/v1/things", &none, None);
    assert!(e["body"].contains("required request body missing"), "{e:?}");
    let e = refused(
        &api,
        "POST",
        "/v1/things",
        &none,
        Some(json!({"name": 7, "size": "small", "note": 1})),
    );
    assert!(e["body.name"].contains("expected string"), "{e:?}");
    assert!(e["body.note"].contains("expected string"), "{e:?}");
}

#[test]
fn fixture_read_only_properties_are_required_in_answers_only() {
    let dir = TempDir::new();
    dir.write(
        "spec.yaml",
        r#"
openapi: 3.0.3
info: {title: ro, version: "1"}
paths:
  /x:
    post:
      requestBody:
        content: {application/json: {schema: {$ref: '#/components/schemas/X'}}}
      responses:
        '200':
          description: ok
          content: {application/json: {schema: {$ref: '#/components/schemas/X'}}}
components:
  schemas:
    X:
      type: object
      required: [id, name]
      properties:
        id: {type: integer, readOnly: true}
        name: {type: string}
"#,
    );
    let api = OpenApi::load(&dir.path("spec.yaml")).unwrap();
    accepted(
        &api,
        "POST",
        "/x",
        &Params::new(),
        Some(json!({"name": "a"})),
    );
    let answer = api.check_answer("POST", "/x", 200, &json!({"name": "a"}));
    assert_eq!(
        answer,
        vec!["body.id: required property missing".to_owned()]
    );
}

#[test]
fn fixture_parameters_are_typed_and_bounded() {
    let (_dir, api) = fixture();
    accepted(
        &api,
        "GET",
        "/v1/things/7",
        &query(&[("limit", "10"), ("mode", "fast")]),
        None,
    );
    let e = refused(
        &api,
        "GET",
        "/v1/things/7",
        &query(&[("limit", "11")]),
        None,
    );
    assert!(e["limit"].contains("maximum 10"), "{e:?}");
    let e = refused(
        &api,
        "GET",
        "/v1/things/0",
        &query(&[("limit", "x"), ("mode", "warp")]),
        None,
    );
    assert!(e["thing_id"].contains("minimum 1"), "{e:?}");
    assert!(e["limit"].contains("expected integer"), "{e:?}");
    assert!(e["mode"].contains("enumerated"), "{e:?}");
    let e = refused(
        &api,
        "GET",
        "/v1/things/abc",
        &query(&[("colour", "red"), ("limit", "1"), ("limit", "2")]),
        None,
    );
    assert!(e["thing_id"].contains("expected integer"), "{e:?}");
    assert!(e["colour"].contains("not declared"), "{e:?}");
    assert!(e["limit"].contains("repeated"), "{e:?}");
    let e = refused(&api, "GET", "/v1/things/7", &Params::new(), Some(json!({})));
    assert!(e["body"].contains("takes no request body"), "{e:?}");
}

#[test]
fn fixture_literal_segments_win_and_unknowns_are_refused() {
    let (_dir, api) = fixture();
    // `/v1/things/special` has no `thing_id`: were `{thing_id}` chosen,
    // "special" would fail its integer type.
    accepted(&api, "GET", "/v1/things/special", &Params::new(), None);
    assert!(api
        .check_answer("GET", "/v1/things/special", 204, &Value::Null)
        .is_empty());
    assert_eq!(
        api.check("GET", "/v1/nothing", &Params::new(), None),
        Err(RequestError::UnknownPath)
    );
    assert_eq!(
        api.check("GET", "/v1/things/1/more", &Params::new(), None),
        Err(RequestError::UnknownPath)
    );
    assert_eq!(
        api.check("DELETE", "/v1/things/1", &Params::new(), None),
        Err(RequestError::UnknownMethod)
    );
    assert_eq!(
        api.check("BREW", "/v1/things/1", &Params::new(), None),
        Err(RequestError::UnknownMethod)
    );
}

#[test]
fn fixture_recursive_models_check_to_any_depth() {
    let (_dir, api) = fixture();
    let tree = json!({"name": "root", "children": [
        {"name": "a", "children": [{"name": "a1"}]},
        {"name": "b", "partner": {"label": "x", "b": {"count": 2, "a": {"b": {"count": 3}}}}}
    ]});
    assert!(api
        .check_answer("GET", "/v1/things/1", 200, &tree)
        .is_empty());
    let bad = json!({"name": "root", "children": [
        {"name": "a", "children": [{"children": []}]},
        {"name": "b", "partner": {"b": {"a": {"b": {"count": "three"}}}}}
    ]});
    let got = api.check_answer("GET", "/v1/things/1", 200, &bad);
    assert_eq!(
        got,
        vec![
            "body.children[0].children[0].name: required property missing".to_owned(),
            "body.children[1].partner.b.a.b.count: expected integer, got \"three\"".to_owned(),
        ]
    );
}

#[test]
fn fixture_statuses_must_be_listed_or_defaulted() {
    let (_dir, api) = fixture();
    // 404 falls to `default` (an error shape from another file).
    let err = json!({"id": "not_found", "message": "no such thing"});
    assert!(api
        .check_answer("GET", "/v1/things/1", 404, &err)
        .is_empty());
    let got = api.check_answer("GET", "/v1/things/1", 404, &json!({"id": "x"}));
    assert_eq!(
        got,
        vec!["body.message: required property missing".to_owned()]
    );
    let got = api.check_answer("POST", "/v1/things", 500, &err);
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("status 500"), "{got:?}");
    // A body where the response declares none.
    let got = api.check_answer("GET", "/v1/things/special", 204, &json!({"x": 1}));
    assert!(got[0].contains("declares no body"), "{got:?}");
}

#[test]
fn a_ref_cycle_without_a_schema_in_between_fails_to_load() {
    let dir = TempDir::new();
    dir.write(
        "spec.yaml",
        "openapi: 3.0.0\npaths: {}\ncomponents:\n  schemas:\n    A: {$ref: 'loop.yml#/B'}\n",
    )
    .write("loop.yml", "B: {$ref: 'spec.yaml#/components/schemas/A'}\n");
    let err = OpenApi::load(&dir.path("spec.yaml"))
        .err()
        .expect("a pure $ref loop must not load");
    assert!(format!("{err:#}").contains("cycle"), "{err:#}");
}

#[test]
fn dangling_refs_and_missing_files_fail_with_their_names() {
    let dir = TempDir::new();
    dir.write(
        "spec.yaml",
        "openapi: 3.0.0\npaths: {}\nx: {$ref: 'other.yml#/nothing'}\n",
    )
    .write("other.yml", "something: 1\n");
    let err = format!("{:#}", OpenApi::load(&dir.path("spec.yaml")).err().unwrap());
    assert!(
        err.contains("other.yml") && err.contains("/nothing"),
        "{err}"
    );
    dir.write(
        "spec.yaml",
        "openapi: 3.0.0\npaths: {}\nx: {$ref: 'gone.yml'}\n",
    );
    let err = format!("{:#}", OpenApi::load(&dir.path("spec.yaml")).err().unwrap());
    assert!(err.contains("gone.yml"), "{err}");
    dir.write(
        "spec.yaml",
        "openapi: 3.0.0\npaths: {}\nx: {oneOf: [], discriminator: {propertyName: t, mapping: {a: 'other.yml#/none'}}}\n",
    );
    let err = format!("{:#}", OpenApi::load(&dir.path("spec.yaml")).err().unwrap());
    assert!(err.contains("/none"), "{err}");
    dir.write("spec.yaml", "swagger: '2.0'\npaths: {}\n");
    let err = format!("{:#}", OpenApi::load(&dir.path("spec.yaml")).err().unwrap());
    assert!(err.contains("not an OpenAPI 3"), "{err}");
}

#[test]
fn json_descriptions_load_too() {
    let dir = TempDir::new();
    dir.write(
        "spec.json",
        r#"{"openapi": "3.0.1", "paths": {"/p": {"get": {"parameters": [{"$ref": "p.json#/q"}], "responses": {"200": {"description": "ok"}}}}}}"#,
    )
    .write("p.json", r#"{"q": {"in": "query", "name": "q", "required": true, "schema": {"type": "boolean"}}}"#);
    let api = OpenApi::load(&dir.path("spec.json")).unwrap();
    accepted(&api, "GET", "/p", &query(&[("q", "true")]), None);
    let e = refused(&api, "GET", "/p", &Params::new(), None);
    assert!(e["q"].contains("required"), "{e:?}");
}

#[test]
fn yaml_scalars_become_json_as_yaml_1_2_reads_them() {
    let v = parse_yaml("a: yes\nb: 1.5\n200: x\nc: ~\nd: '7'\ne: [1, true]\n").unwrap();
    assert_eq!(
        v,
        json!({"a": "yes", "b": 1.5, "200": "x", "c": null, "d": "7", "e": [1, true]})
    );
    assert!(parse_yaml("a: [1\n").is_err());
    assert_eq!(parse_yaml("").unwrap(), Value::Null);
}

#[test]
fn schema_keywords_beyond_the_fixture() {
    let api = OpenApi::from_value(json!({
        "openapi": "3.0.0",
        "paths": {"/v": {"post": {
            "requestBody": {"content": {"application/json; charset=utf-8": {"schema": {
                "type": "object",
                "properties": {
                    "n": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "multipleOf": 0.5},
                    "id": {"type": "string", "format": "uuid"},
                    "at": {"type": "string", "format": "date-time"},
                    "ip": {"type": "string", "format": "ipv4"},
                    "any": {"anyOf": [{"type": "integer"}, {"type": "string", "minLength": 2}]},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "one": {"oneOf": [{"type": "integer"}, {"type": "number"}]}
                }
            }}}},
            "responses": {"2XX": {"description": "ok",
                "content": {"application/problem+json": {"schema": {"type": "array"}}}}}
        }}}
    }))
    .unwrap();
    let none = Params::new();
    // `2XX` covers 201; `+json` media types are JSON; nothing covers 404.
    assert!(api.check_answer("POST", "/v", 201, &json!([])).is_empty());
    assert_eq!(
        api.check_answer("POST", "/v", 201, &json!({})),
        vec!["body: expected array, got {}".to_owned()]
    );
    assert!(api.check_answer("POST", "/v", 404, &json!([]))[0].contains("status 404"));
    let good = json!({"n": 1.5, "id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "at": "2026-12-02T02:23:30.5Z", "ip": "10.0.0.1", "any": 3, "labels": {"a": "b"}});
    accepted(&api, "POST", "/v", &none, Some(good));
    let bad = json!({"n": 0, "id": "nope", "at": "yesterday", "ip": "10.0.0.256", "any": "x", "labels": {"a": 1}});
    let e = refused(&api, "POST", "/v", &none, Some(bad));
    let keys: Vec<&str> = e.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "body.any",
            "body.at",
            "body.id",
            "body.ip",
            "body.labels.a",
            "body.n"
        ],
        "{e:?}"
    );
    assert!(e["body.any"].contains("fits none of the 2 anyOf"), "{e:?}");
    let e = refused(&api, "POST", "/v", &none, Some(json!({"n": 0.7})));
    assert!(e["body.n"].contains("multiple of 0.5"), "{e:?}");
    // 2.5 is a number only; 3 is an integer and a number: two fit.
    accepted(&api, "POST", "/v", &none, Some(json!({"one": 2.5})));
    let e = refused(&api, "POST", "/v", &none, Some(json!({"one": 3})));
    assert!(
        e["body.one"].contains("fits 2 of the 2 oneOf alternatives"),
        "{e:?}"
    );
}

// ---- DigitalOcean's description -------------------------------------------

fn do_spec_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/specs/digitalocean/specification/DigitalOcean-public.v2.yaml")
}

/// The real description; a missing spec fails the test, never skips it.
fn digitalocean() -> OpenApi {
    let path = do_spec_path();
    assert!(
        path.is_file(),
        "DigitalOcean's OpenAPI description is missing at {}",
        path.display()
    );
    OpenApi::load(&path).unwrap_or_else(|e| panic!("loading {}: {e:#}", path.display()))
}

#[test]
fn do_spec_loads_whole_and_quickly() {
    let start = Instant::now();
    let api = digitalocean();
    let took = start.elapsed();
    eprintln!(
        "DigitalOcean spec: {} files, {} paths, loaded in {took:.2?}",
        api.file_count(),
        api.path_count()
    );
    assert!(
        api.file_count() > 1000,
        "only {} files reached",
        api.file_count()
    );
    assert!(api.path_count() > 300, "only {} paths", api.path_count());
    assert!(took.as_secs_f64() < 5.0, "loading took {took:?}");
}

fn droplet_create() -> Value {
    json!({
        "name": "golden-build-1",
        "region": "nyc3",
        "size": "s-1vcpu-1gb",
        "image": "ubuntu-24-04-x64",
        "ssh_keys": [289794, "3b:16:e4:bf:8b:00:8b:b8:59:8c:a9:d3:f0:19:fa:45"],
        "backups": false,
        "ipv6": true,
        "monitoring": true,
        "tags": ["golden", "env:ci"],
        "user_data": "#cloud-config\n",
        "vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000"
    })
}

/// Droplet create's body is `oneOf` single (`name`) / multiple (`names`),
/// each `allOf` with the shared part that requires `size` and `image`.
#[test]
fn do_droplet_create_bodies() {
    let api = digitalocean();
    let none = Params::new();
    accepted(&api, "POST", "/v2/droplets", &none, Some(droplet_create()));
    let mut multi = droplet_create();
    multi.as_object_mut().unwrap().remove("name");
    multi["names"] = json!(["a-1", "a-2"]);
    accepted(&api, "POST", "/v2/droplets", &none, Some(multi));
    for field in ["size", "image", "name"] {
        let mut body = droplet_create();
        body.as_object_mut().unwrap().remove(field);
        let e = refused(&api, "POST", "/v2/droplets", &none, Some(body));
        let missing = format!("body.{field}: required property missing");
        assert!(e["body"].contains(&missing), "without {field}: {e:?}");
    }
    let mut body = droplet_create();
    body["backups"] = json!("yes");
    let e = refused(&api, "POST", "/v2/droplets", &none, Some(body));
    assert!(
        e["body"].contains("body.backups: expected boolean, got \"yes\""),
        "{e:?}"
    );
    let mut body = droplet_create();
    body["name"] = json!("no_underscores");
    let e = refused(&api, "POST", "/v2/droplets", &none, Some(body));
    assert!(
        e["body"].contains("body.name: 'no_underscores' does not match"),
        "{e:?}"
    );
}

#[test]
fn do_query_parameters() {
    let api = digitalocean();
    let q = query(&[("private", "true"), ("tag_name", "x"), ("per_page", "200")]);
    accepted(&api, "GET", "/v2/images", &q, None);
    let e = refused(
        &api,
        "GET",
        "/v2/images",
        &query(&[("per_page", "201")]),
        None,
    );
    assert!(e["per_page"].contains("above the maximum 200"), "{e:?}");
    let e = refused(
        &api,
        "GET",
        "/v2/images",
        &query(&[("private", "maybe"), ("type", "weird")]),
        None,
    );
    assert!(e["private"].contains("expected boolean"), "{e:?}");
    assert!(e["type"].contains("enumerated"), "{e:?}");
    let e = refused(&api, "GET", "/v2/droplets/abc", &Params::new(), None);
    assert!(e["droplet_id"].contains("expected integer"), "{e:?}");
}

#[test]
fn do_droplet_actions_and_tag_resources() {
    let api = digitalocean();
    let none = Params::new();
    let path = "/v2/droplets/3164444/actions";
    accepted(
        &api,
        "POST",
        path,
        &none,
        Some(json!({"type": "snapshot", "name": "x"})),
    );
    accepted(
        &api,
        "POST",
        path,
        &none,
        Some(json!({"type": "power_off"})),
    );
    let e = refused(&api, "POST", path, &none, Some(json!({"type": "explode"})));
    assert!(
        e["body.type"].contains("'explode' is not one of the discriminator's values"),
        "{e:?}"
    );
    // change_backup_policy maps to a schema that requires backup_policy.
    let e = refused(
        &api,
        "POST",
        path,
        &none,
        Some(json!({"type": "change_backup_policy"})),
    );
    assert!(e.contains_key("body.backup_policy"), "{e:?}");
    let tag = "/v2/tags/golden/resources";
    let body = json!({"resources": [{"resource_id": "9569411", "resource_type": "droplet"}]});
    accepted(&api, "POST", tag, &none, Some(body));
    let e = refused(
        &api,
        "POST",
        tag,
        &none,
        Some(json!({"resources": [{"resource_id": 9569411}]})),
    );
    assert!(
        e.keys().any(|k| k.starts_with("body.resources[0]")),
        "{e:?}"
    );
    let e = refused(&api, "POST", tag, &none, Some(json!({})));
    assert!(e["body.resources"].contains("required"), "{e:?}");
}

/// A droplet as DO's droplet model describes it (`resources/droplets/models/droplet.yml`).
fn droplet() -> Value {
    json!({
        "id": 3164444,
        "name": "golden-build-1",
        "memory": 1024,
        "vcpus": 1,
        "disk": 25,
        "disk_info": [{"type": "local", "size": {"amount": 25, "unit": "gib"}}],
        "locked": false,
        "status": "new",
        "kernel": null,
        "created_at": "2026-12-02T02:23:30Z",
        "features": ["monitoring"],
        "backup_ids": [],
        "next_backup_window": null,
        "snapshot_ids": [],
        "image": {
            "id": 6918990, "name": "24.04 (LTS) x64", "distribution": "Ubuntu",
            "slug": "ubuntu-24-04-x64", "public": true, "regions": ["nyc3"],
            "created_at": "2026-01-01T00:00:00Z", "type": "base", "min_disk_size": 20,
            "size_gigabytes": 2.36, "description": "", "tags": [], "status": "available"
        },
        "volume_ids": [],
        "size": {
            "slug": "s-1vcpu-1gb", "memory": 1024, "vcpus": 1, "disk": 25, "transfer": 1.0,
            "price_monthly": 6.0, "price_hourly": 0.00893, "regions": ["nyc3"],
            "available": true, "description": "Basic"
        },
        "size_slug": "s-1vcpu-1gb",
        "networks": {"v4": [], "v6": []},
        "region": {
            "name": "New York 3", "slug": "nyc3", "features": ["metadata"],
            "available": true, "sizes": ["s-1vcpu-1gb"]
        },
        "tags": ["golden"],
        "vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000"
    })
}

#[test]
fn do_droplet_create_answers() {
    let api = digitalocean();
    let answer = json!({
        "droplet": droplet(),
        "links": {"actions": [{"id": 7515, "rel": "create", "href": "https://api.digitalocean.com/v2/actions/7515"}]}
    });
    let got = api.check_answer("POST", "/v2/droplets", 202, &answer);
    assert!(got.is_empty(), "{got:#?}");
    let mut no_status = answer.clone();
    no_status["droplet"]
        .as_object_mut()
        .unwrap()
        .remove("status");
    let got = api.check_answer("POST", "/v2/droplets", 202, &no_status);
    assert!(
        got.len() == 1 && got[0].contains("body.droplet.status: required property missing"),
        "{got:#?}"
    );
    let mut wrong = answer;
    wrong["droplet"]["id"] = json!("3164444");
    let got = api.check_answer("POST", "/v2/droplets", 202, &wrong);
    assert!(
        got.len() == 1 && got[0].contains("body.droplet.id: expected integer"),
        "{got:#?}"
    );
    // 429 is listed (its retry-after header is only prose, and not ours);
    // 418 is not, but `default` takes it.
    let limited = json!({"id": "too_many_requests", "message": "API rate limit exceeded."});
    assert!(api
        .check_answer("POST", "/v2/droplets", 429, &limited)
        .is_empty());
    assert!(api
        .check_answer("POST", "/v2/droplets", 418, &limited)
        .is_empty());
    let got = api.check_answer(
        "POST",
        "/v2/droplets",
        429,
        &json!({"message": "slow down"}),
    );
    assert_eq!(got, vec!["body.id: required property missing".to_owned()]);
}

#[test]
fn do_unknown_paths_and_methods() {
    let api = digitalocean();
    let none = Params::new();
    assert_eq!(
        api.check("GET", "/v2/nonsense", &none, None),
        Err(RequestError::UnknownPath)
    );
    assert_eq!(
        api.check("GET", "/v3/droplets", &none, None),
        Err(RequestError::UnknownPath)
    );
    assert_eq!(
        api.check("PATCH", "/v2/droplets", &none, None),
        Err(RequestError::UnknownMethod)
    );
    // Through the trait, as a simulator calls it.
    let checker: &dyn SpecChecker = &api;
    assert_eq!(checker.check_request("GET", "/v2/account", &none), Ok(()));
    assert!(checker
        .check_request_body("POST", "/v2/droplets", &none, Some(&droplet_create()))
        .is_ok());
    // `account` is optional in the answer, but it must be an account.
    assert!(checker
        .check_response("GET", "/v2/account", 200, &json!({}))
        .is_empty());
    let got = checker.check_response("GET", "/v2/account", 200, &json!({"account": "me"}));
    assert_eq!(
        got,
        vec!["body.account: expected object, got \"me\"".to_owned()]
    );
}

/// Every `example` and `examples.*.value` of a JSON request body or answer
/// in the spec, with the schema it illustrates: (label, direction, schema,
/// example).
fn spec_examples(api: &OpenApi) -> Vec<(String, Dir, &Value, &Value)> {
    let mut out = Vec::new();
    let paths = api.files.root()["paths"].as_object().expect("paths");
    for (template, item) in paths {
        let item = api.files.deref(item).expect("a path item");
        for method in METHODS {
            let Some(op) = item.get(*method) else {
                continue;
            };
            let op = api.files.deref(op).expect("an operation");
            let label = format!("{method} {template}");
            if let Some(rb) = op.get("requestBody") {
                let rb = api.files.deref(rb).expect("a request body");
                media_examples(api, rb, &format!("{label} request"), Dir::Request, &mut out);
            }
            let responses = op.get("responses").and_then(Value::as_object);
            for (status, resp) in responses.into_iter().flatten() {
                let resp = api.files.deref(resp).expect("a response");
                media_examples(
                    api,
                    resp,
                    &format!("{label} {status}"),
                    Dir::Response,
                    &mut out,
                );
            }
        }
    }
    out
}

fn media_examples<'a>(
    api: &'a OpenApi,
    holder: &'a Value,
    label: &str,
    dir: Dir,
    out: &mut Vec<(String, Dir, &'a Value, &'a Value)>,
) {
    let Some(media) = holder
        .get("content")
        .and_then(|c| c.get("application/json"))
    else {
        return;
    };
    let Some(schema) = media.get("schema") else {
        return;
    };
    if let Some(example) = media.get("example") {
        out.push((label.to_owned(), dir, schema, example));
    }
    let named = media.get("examples").and_then(Value::as_object);
    for (name, example) in named.into_iter().flatten() {
        let example = api.files.deref(example).expect("an example");
        if let Some(value) = example.get("value") {
            out.push((format!("{label} ({name})"), dir, schema, value));
        }
    }
}

/// The spec's own examples are real DO traffic as DO documents it: the
/// checker must take them all, bar the spec's own slips, listed here.
#[test]
fn do_spec_examples_fit_their_schemas() {
    let api = digitalocean();
    let examples = spec_examples(&api);
    assert!(
        examples.len() > 3000,
        "only {} examples found",
        examples.len()
    );
    let mut misfits = Vec::new();
    for (label, dir, schema, example) in &examples {
        let got = api.validator(*dir).check(schema, example, "body");
        if !got.is_empty() {
            let got: Vec<String> = got.iter().map(Violation::to_string).collect();
            misfits.push(format!("{label}: {}", got.join(" | ")));
        }
    }
    // DO's BYOIP list examples leave out the `meta` their schemas require.
    let known = [
        "get /v2/byoip_prefixes 200",
        "get /v2/byoip_prefixes/{byoip_prefix_uuid}/ips 200",
    ];
    misfits.retain(|m| {
        !known
            .iter()
            .any(|k| m.starts_with(k) && m.ends_with("body.meta: required property missing"))
    });
    eprintln!("{} spec examples checked", examples.len());
    assert!(misfits.is_empty(), "{misfits:#?}");
}
