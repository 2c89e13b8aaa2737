//! Compute Engine's real discovery document
//! (`/work/shared/specs/gcp/compute.v1.json`): the calls a GCP image
//! pipeline makes, the answers it reads, and what must be refused.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

fn spec_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/specs/gcp/compute.v1.json")
}

/// Loaded once for every test (5 MB of JSON), with how long that took.
static COMPUTE: LazyLock<(Discovery, Duration)> = LazyLock::new(|| {
    let started = Instant::now();
    let d = Discovery::load(&spec_path()).expect("compute.v1.json loads");
    (d, started.elapsed())
});

fn gce() -> &'static Discovery {
    &COMPUTE.0
}

const P: &str = "projects/golden-test/zones/europe-west1-b";
const G: &str = "projects/golden-test/global";

fn q(pairs: &[(&str, &str)]) -> Params {
    let mut params = Params::new();
    for (k, v) in pairs {
        params
            .entry((*k).to_owned())
            .or_default()
            .push((*v).to_owned());
    }
    params
}

fn ok(method: &str, path: &str, query: &[(&str, &str)], body: Option<Value>) {
    let got = gce().check(method, path, &q(query), body.as_ref());
    assert_eq!(got, Ok(()), "{method} {path} {query:?} should pass");
}

/// The request's violations, by parameter or body path.
fn refused(
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> BTreeMap<String, String> {
    match gce().check(method, path, &q(query), body.as_ref()) {
        Err(RequestError::Params(e)) => e,
        other => panic!("{method} {path}: expected parameter violations, got {other:?}"),
    }
}

fn answer(method: &str, path: &str, status: u16, body: Value) -> Vec<String> {
    gce().check_answer(method, path, status, &body)
}

// ---- loading ----------------------------------------------------------------

#[test]
fn loads_compute_v1_and_counts_its_methods() {
    let (d, took) = &*COMPUTE;
    eprintln!(
        "compute.v1.json: {} methods, {} path templates, {} schemas, loaded in {took:?}",
        d.method_count(),
        d.path_count(),
        d.schema_count()
    );
    assert_eq!(d.method_count(), 1025);
    assert_eq!(d.path_count(), 751);
    assert_eq!(d.schema_count(), 1075);
    assert!(*took < Duration::from_secs(5), "loading took {took:?}");
}

#[test]
fn every_method_routes_to_itself() {
    // Each method's own template, filled with a value its pattern accepts,
    // reaches that method (or one that shares its method and template).
    let d = gce();
    for m in &d.methods {
        let path: Vec<String> = m
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.clone(),
                Segment::Param(_) => "x1".to_owned(),
                Segment::Plus(_) => "reservations/r1/reservationBlocks/b1".to_owned(),
            })
            .collect();
        let path = path.join("/");
        let (found, _) = d
            .find(&m.http, &path)
            .unwrap_or_else(|e| panic!("{}: {path}: {e:?}", m.id));
        assert!(
            found.id == m.id || (found.segments == m.segments && found.http == m.http),
            "{} routed to {}",
            m.id,
            found.id
        );
    }
}

#[test]
fn the_document_offers_no_examples() {
    // OpenAPI descriptions carry examples the checker can run; discovery
    // documents carry none. Should a later revision add some, this fails
    // and they get a test of their own.
    fn walk(v: &Value, at: &str, found: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    if k == "example" || k == "examples" {
                        found.push(format!("{at}.{k}"));
                    }
                    walk(x, &format!("{at}.{k}"), found);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, at, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(&gce().doc, "", &mut found);
    assert_eq!(found, Vec::<String>::new());
}

#[test]
fn refuses_what_is_not_a_discovery_document() {
    assert!(Discovery::from_value(json!({"openapi": "3.0.0"})).is_err());
    let dangling = json!({
        "kind": "discovery#restDescription",
        "servicePath": "x/v1/",
        "resources": {"things": {"methods": {"get": {
            "id": "x.things.get", "httpMethod": "GET", "path": "things/{thing}",
            "response": {"$ref": "Missing"}
        }}}}
    });
    let e = Discovery::from_value(dangling)
        .err()
        .expect("a dangling $ref fails");
    assert!(format!("{e:#}").contains("Missing"), "{e:#}");
}

// ---- routing ----------------------------------------------------------------

#[test]
fn routes_paths_to_methods() {
    let d = gce();
    let id = |m: &str, p: &str| d.method_id(m, p).map(str::to_owned);
    assert_eq!(
        id("GET", &format!("{P}/instances/vm-1")).as_deref(),
        Ok("compute.instances.get")
    );
    // With the service path, as a server sees the request.
    assert_eq!(
        id("GET", &format!("/compute/v1/{P}/instances/vm-1")).as_deref(),
        Ok("compute.instances.get")
    );
    assert_eq!(
        id("DELETE", &format!("{P}/instances/vm-1")).as_deref(),
        Ok("compute.instances.delete")
    );
    assert_eq!(
        id("POST", &format!("{P}/instances")).as_deref(),
        Ok("compute.instances.insert")
    );
    // A literal segment beats a template: family/x is getFromFamily.
    assert_eq!(
        id("GET", &format!("{G}/images/family/golden-debian")).as_deref(),
        Ok("compute.images.getFromFamily")
    );
    assert_eq!(
        id("GET", &format!("{G}/images/family")).as_deref(),
        Ok("compute.images.get")
    );
    assert_eq!(
        id("POST", &format!("{P}/operations/op-1/wait")).as_deref(),
        Ok("compute.zoneOperations.wait")
    );
    // {+parentName} spans several segments.
    assert_eq!(
        id(
            "GET",
            &format!("{P}/reservations/r1/reservationBlocks/b1/reservationSubBlocks/sb1")
        )
        .as_deref(),
        Ok("compute.reservationSubBlocks.get")
    );
    let (_, params) = d
        .find(
            "GET",
            &format!("{P}/reservations/r1/reservationBlocks/b1/reservationSubBlocks"),
        )
        .expect("reservationSubBlocks.list routes");
    assert_eq!(params["parentName"], "reservations/r1/reservationBlocks/b1");
}

#[test]
fn unknown_paths_and_methods() {
    let d = gce();
    assert_eq!(
        d.method_id("GET", &format!("{P}/gadgets/g1")),
        Err(RequestError::UnknownPath)
    );
    assert_eq!(
        d.method_id("GET", "compute/v2/projects/p"),
        Err(RequestError::UnknownPath)
    );
    assert_eq!(
        d.method_id("DELETE", &format!("{P}/instances/vm-1/serialPort")),
        Err(RequestError::UnknownMethod)
    );
    // images.get is GET only; insert is POST on the collection.
    assert_eq!(
        d.method_id("POST", &format!("{G}/images/img-1")),
        Err(RequestError::UnknownMethod)
    );
    assert_eq!(
        gce().check("PUT", &format!("{G}/images"), &Params::new(), None),
        Err(RequestError::UnknownMethod)
    );
}

// ---- requests: the image pipeline's calls ---------------------------------

fn instance_insert_body() -> Value {
    json!({
        "name": "golden-build-42",
        "machineType": "zones/europe-west1-b/machineTypes/e2-medium",
        "disks": [{
            "boot": true,
            "autoDelete": true,
            "type": "PERSISTENT",
            "mode": "READ_WRITE",
            "initializeParams": {
                "sourceImage": "projects/debian-cloud/global/images/family/debian-12",
                "diskSizeGb": "10",
                "diskType": "zones/europe-west1-b/diskTypes/pd-balanced",
                "labels": {"golden-build": "42"}
            }
        }],
        "metadata": {"items": [
            {"key": "user-data", "value": "#cloud-config\nruncmd: [true]\n"},
            {"key": "startup-script", "value": "#!/bin/sh\necho hi\n"}
        ]},
        "networkInterfaces": [{
            "network": "global/networks/default",
            "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]
        }],
        "labels": {"golden": "candidate", "golden-build": "42"},
        "tags": {"items": ["golden-build"]}
    })
}

#[test]
fn instances_insert_get_delete_and_serial_port() {
    let path = format!("{P}/instances");
    ok(
        "POST",
        &path,
        &[("requestId", "5f0c8a4e-9a1b-4f5e-8c7d-0e1f2a3b4c5d")],
        Some(instance_insert_body()),
    );
    ok(
        "POST",
        &format!("/compute/v1/{path}"),
        &[("alt", "json")],
        Some(instance_insert_body()),
    );
    let vm = format!("{P}/instances/golden-build-42");
    ok("GET", &vm, &[], None);
    ok(
        "DELETE",
        &vm,
        &[("requestId", "5f0c8a4e-9a1b-4f5e-8c7d-0e1f2a3b4c5e")],
        None,
    );
    let serial = format!("{vm}/serialPort");
    ok("GET", &serial, &[], None);
    ok("GET", &serial, &[("port", "1"), ("start", "0")], None);
    ok(
        "GET",
        &serial,
        &[("port", "4"), ("start", "9223372036854775807")],
        None,
    );
    let e = refused("GET", &serial, &[("port", "5"), ("start", "ten")], None);
    assert!(e["port"].contains("above the maximum 4"), "{e:?}");
    assert!(e["start"].contains("expected an int64"), "{e:?}");
    let e = refused("GET", &serial, &[("port", "0")], None);
    assert!(e["port"].contains("below the minimum 1"), "{e:?}");
}

#[test]
fn images_insert_get_family_list_patch_and_labels() {
    let images = format!("{G}/images");
    ok(
        "POST",
        &images,
        &[
            ("requestId", "0b8f3c2a-1d4e-4f6a-9b7c-8d9e0f1a2b3c"),
            ("forceCreate", "true"),
        ],
        Some(json!({
            "name": "golden-debian-12-20261202-42",
            "family": "golden-debian-12",
            "description": "golden build 42",
            "sourceDisk": "projects/golden-test/zones/europe-west1-b/disks/golden-build-42",
            "labels": {"golden-build": "42"},
            "storageLocations": ["eu"]
        })),
    );
    ok(
        "GET",
        &format!("{images}/golden-debian-12-20261202-42"),
        &[],
        None,
    );
    ok(
        "GET",
        &format!("{images}/family/golden-debian-12"),
        &[],
        None,
    );
    ok(
        "GET",
        &images,
        &[
            ("filter", "labels.golden-build = \"42\""),
            ("maxResults", "500"),
            ("pageToken", "CgR0b2tlbg=="),
            ("orderBy", "creationTimestamp desc"),
        ],
        None,
    );
    // images.list has no returnPartialSuccess (aggregatedList has).
    let e = refused(
        "GET",
        &images,
        &[("maxResults", "-1"), ("returnPartialSuccess", "true")],
        None,
    );
    assert!(e["maxResults"].contains("uint32"), "{e:?}");
    assert!(e["returnPartialSuccess"].contains("not declared"), "{e:?}");

    ok(
        "PATCH",
        &format!("{images}/golden-debian-12-20261202-42"),
        &[("requestId", "0b8f3c2a-1d4e-4f6a-9b7c-8d9e0f1a2b3d")],
        Some(json!({"family": "golden-debian-12-retired", "description": "superseded"})),
    );
    ok(
        "POST",
        &format!("{images}/golden-debian-12-20261202-42/setLabels"),
        &[],
        Some(json!({"labels": {"golden": "released"}, "labelFingerprint": "42WmSpB8rSM="})),
    );
    let e = refused(
        "POST",
        &format!("{images}/golden-debian-12-20261202-42/setLabels"),
        &[],
        Some(json!({"labels": {"golden": 1}, "labelFingerprint": "not base64!"})),
    );
    assert!(
        e["body.labels.golden"].contains("expected a string"),
        "{e:?}"
    );
    assert!(
        e["body.labelFingerprint"].contains("not a valid byte"),
        "{e:?}"
    );
}

#[test]
fn operations_get_and_wait() {
    ok(
        "GET",
        &format!("{P}/operations/operation-1764600000000-abc"),
        &[],
        None,
    );
    ok(
        "POST",
        &format!("{P}/operations/operation-1764600000000-abc/wait"),
        &[],
        None,
    );
    ok(
        "GET",
        &format!("{G}/operations/operation-1764600000000-def"),
        &[],
        None,
    );
    ok(
        "POST",
        &format!("{G}/operations/operation-1764600000000-def/wait"),
        &[],
        None,
    );
    // Clients that always send a body send an empty one.
    ok(
        "POST",
        &format!("{G}/operations/op-2/wait"),
        &[],
        Some(json!({})),
    );
    let e = refused(
        "POST",
        &format!("{G}/operations/op-2/wait"),
        &[],
        Some(json!({"timeout": "120s"})),
    );
    assert!(e["body"].contains("takes no request body"), "{e:?}");
}

#[test]
fn system_parameters_are_accepted() {
    // The document's own (alt, fields, prettyPrint, quotaUser, $.xgafv,
    // ...) and the $-forms of Google's system parameters, as clients such
    // as google-cloud-rust send them ($alt=json, $apiVersion).
    ok(
        "GET",
        &format!("{G}/images/img-1"),
        &[
            ("alt", "json"),
            ("$alt", "json;enum-encoding=int"),
            ("$apiVersion", "2026-11-01"),
            ("$.xgafv", "2"),
            ("prettyPrint", "false"),
            ("fields", "id,name,status"),
            ("quotaUser", "golden"),
            ("key", "AIza-test"),
            ("access_token", "ya29.test"),
            ("userIp", "127.0.0.1"),
        ],
        None,
    );
}

#[test]
fn system_parameter_values_are_checked() {
    let e = refused(
        "GET",
        &format!("{G}/images/img-1"),
        &[
            ("alt", "xml"),
            ("$prettyPrint", "yes"),
            ("$.xgafv", "3"),
            ("password", "hunter2"),
        ],
        None,
    );
    assert!(
        e["alt"].contains("'xml' is not one of json, media, proto"),
        "{e:?}"
    );
    assert!(e["$prettyPrint"].contains("true or false"), "{e:?}");
    assert!(e["$.xgafv"].contains("not one of 1, 2"), "{e:?}");
    assert!(e["password"].contains("not declared"), "{e:?}");
}

// ---- requests: what must be refused ---------------------------------------

#[test]
fn bad_enums_unknown_fields_and_patterns_in_bodies() {
    let mut body = instance_insert_body();
    body["disks"][0]["mode"] = json!("READ");
    body["networkInterfaces"][0]["accessConfigs"][0]["type"] = json!("NAT");
    body["name"] = json!("Golden_Build");
    body["metadata"]["items"][0]["kee"] = json!("typo");
    body["colour"] = json!("blue");
    let e = refused("POST", &format!("{P}/instances"), &[], Some(body));
    assert!(
        e["body.disks[0].mode"].contains("'READ' is not one of READ_ONLY, READ_WRITE"),
        "{e:?}"
    );
    assert!(
        e["body.networkInterfaces[0].accessConfigs[0].type"]
            .contains("not one of DIRECT_IPV6, ONE_TO_ONE_NAT"),
        "{e:?}"
    );
    assert!(e["body.name"].contains("must be a match of regex"), "{e:?}");
    assert!(
        e["body.metadata.items[0].kee"].contains("Unknown name \"kee\""),
        "{e:?}"
    );
    assert!(e["body.colour"].contains("Cannot find field"), "{e:?}");
    assert_eq!(e.len(), 5, "{e:?}");
    // A metadata item without its key: required for instances.insert.
    let mut body = instance_insert_body();
    body["metadata"]["items"][1] = json!({"value": "#!/bin/sh"});
    let e = refused("POST", &format!("{P}/instances"), &[], Some(body));
    assert!(
        e["body.metadata.items[1].key"].contains("Required field"),
        "{e:?}"
    );
}

#[test]
fn required_fields_follow_annotations_required_for_the_method() {
    let mut body = instance_insert_body();
    body.as_object_mut().unwrap().remove("name");
    let e = refused("POST", &format!("{P}/instances"), &[], Some(body.clone()));
    assert!(e["body.name"].contains("compute.instances.insert"), "{e:?}");
    // images.patch takes an Image too, but name is required for insert only.
    ok(
        "PATCH",
        &format!("{G}/images/img-1"),
        &[],
        Some(json!({"family": "f"})),
    );
    let e = refused(
        "POST",
        &format!("{G}/images"),
        &[],
        Some(json!({"family": "f"})),
    );
    assert!(e["body.name"].contains("compute.images.insert"), "{e:?}");
    // No body at all where the method takes one: what GCE answers.
    let e = refused("POST", &format!("{P}/instances"), &[], None);
    assert_eq!(e["body"], "Required field 'resource' not specified");
}

#[test]
fn int64_fields_take_strings_or_numbers_in_requests_strings_in_answers() {
    // proto3 JSON: int64 "either numbers or strings are accepted" on input.
    let mut body = instance_insert_body();
    body["disks"][0]["initializeParams"]["diskSizeGb"] = json!(20);
    ok("POST", &format!("{P}/instances"), &[], Some(body.clone()));
    body["disks"][0]["initializeParams"]["diskSizeGb"] = json!(20.5);
    let e = refused("POST", &format!("{P}/instances"), &[], Some(body.clone()));
    assert!(
        e["body.disks[0].initializeParams.diskSizeGb"].contains("not an int64"),
        "{e:?}"
    );
    body["disks"][0]["initializeParams"]["diskSizeGb"] = json!("twenty");
    let e = refused("POST", &format!("{P}/instances"), &[], Some(body.clone()));
    assert!(
        e["body.disks[0].initializeParams.diskSizeGb"].contains("not a valid int64"),
        "{e:?}"
    );
    // int32 given as a decimal string in a request: accepted too.
    body["disks"][0]["initializeParams"]["diskSizeGb"] = json!("20");
    body["disks"][0]["index"] = json!("0");
    ok("POST", &format!("{P}/instances"), &[], Some(body.clone()));
    // An enum's number (enum-encoding=int clients) is accepted in requests.
    body["disks"][0]["mode"] = json!(2);
    ok(
        "POST",
        &format!("{P}/instances"),
        &[("$alt", "json;enum-encoding=int")],
        Some(body),
    );
    // Answers: canonical only.
    let mut image = image_answer();
    image["diskSizeGb"] = json!(10);
    image["status"] = json!(1);
    let v = answer("GET", &format!("{G}/images/golden-1"), 200, image);
    assert!(
        v.iter()
            .any(|v| v.contains("body.diskSizeGb: int64 must be a JSON string")),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|v| v.contains("body.status: expected a string")),
        "{v:?}"
    );
}

#[test]
fn query_parameters_unknown_repeated_and_required() {
    let e = refused(
        "GET",
        &format!("{G}/images"),
        &[("maxResult", "10"), ("pageToken", "a"), ("pageToken", "b")],
        None,
    );
    assert!(e["maxResult"].contains("not declared"), "{e:?}");
    assert!(e["pageToken"].contains("not a repeated parameter"), "{e:?}");
    // A path parameter in the query is not one.
    let e = refused(
        "GET",
        &format!("{G}/images"),
        &[("project", "golden-test")],
        None,
    );
    assert!(e["project"].contains("a path parameter"), "{e:?}");
    // Required query parameters (instances.setDiskAutoDelete).
    let e = refused(
        "POST",
        &format!("{P}/instances/vm-1/setDiskAutoDelete"),
        &[],
        None,
    );
    assert!(
        e["autoDelete"].contains("required query parameter missing"),
        "{e:?}"
    );
    assert!(
        e["deviceName"].contains("required query parameter missing"),
        "{e:?}"
    );
    ok(
        "POST",
        &format!("{P}/instances/vm-1/setDiskAutoDelete"),
        &[("autoDelete", "false"), ("deviceName", "persistent-disk-0")],
        None,
    );
    // Repeated ones may repeat, each value checked (subnetworks.get views).
    let sub = "projects/golden-test/regions/europe-west1/subnetworks/default";
    ok(
        "GET",
        sub,
        &[("views", "DEFAULT"), ("views", "WITH_UTILIZATION")],
        None,
    );
    let e = refused("GET", sub, &[("views", "DEFAULT"), ("views", "ALL")], None);
    assert!(
        e["views"].contains("'ALL' is not one of DEFAULT, WITH_UTILIZATION"),
        "{e:?}"
    );
}

#[test]
fn path_parameters_are_checked() {
    // An empty zone (`zones//instances`) is a missing path parameter.
    let e = refused(
        "GET",
        "projects/golden-test/zones//instances/vm-1",
        &[],
        None,
    );
    assert!(
        e["zone"].contains("required path parameter is empty"),
        "{e:?}"
    );
    // Patterns, anchored: GCE answers "Must be a match of regex".
    let e = refused("POST", &format!("{P}/instances/vm-/start"), &[], None);
    assert!(e["instance"].contains("must be a match of regex"), "{e:?}");
    let e = refused(
        "GET",
        &format!("{P}/instances/Bad.Name/getIamPolicy"),
        &[],
        None,
    );
    assert!(e["resource"].contains("must be a match of regex"), "{e:?}");
    ok(
        "GET",
        &format!("{P}/instances/vm-1/getIamPolicy"),
        &[],
        None,
    );
    // An unexpected body where none is taken; none where one is.
    let e = refused(
        "GET",
        &format!("{P}/instances/vm-1"),
        &[],
        Some(json!({"name": "vm-1"})),
    );
    assert!(e["body"].contains("takes no request body"), "{e:?}");
}

// ---- answers ------------------------------------------------------------------

fn operation_answer(status: &str) -> Value {
    json!({
        "kind": "compute#operation",
        "id": "7234567890123456789",
        "name": "operation-1764600000000-abc",
        "zone": "https://www.googleapis.com/compute/v1/projects/golden-test/zones/europe-west1-b",
        "operationType": "insert",
        "targetLink": "https://www.googleapis.com/compute/v1/projects/golden-test/zones/europe-west1-b/instances/golden-build-42",
        "targetId": "18234567890123456789",
        "status": status,
        "user": "golden@golden-test.iam.gserviceaccount.com",
        "progress": 0,
        "insertTime": "2026-12-02T03:00:00.000-08:00",
        "startTime": "2026-12-02T03:00:00.100-08:00",
        "selfLink": "https://www.googleapis.com/compute/v1/projects/golden-test/zones/europe-west1-b/operations/operation-1764600000000-abc"
    })
}

fn image_answer() -> Value {
    json!({
        "kind": "compute#image",
        "id": "5123456789012345678",
        "creationTimestamp": "2026-12-02T03:10:00.000-08:00",
        "name": "golden-1",
        "family": "golden-debian-12",
        "sourceDisk": "https://www.googleapis.com/compute/v1/projects/golden-test/zones/europe-west1-b/disks/golden-build-42",
        "sourceDiskId": "3123456789012345678",
        "sourceType": "RAW",
        "status": "READY",
        "diskSizeGb": "10",
        "archiveSizeBytes": "123456789",
        "storageLocations": ["eu"],
        "labels": {"golden-build": "42"},
        "labelFingerprint": "42WmSpB8rSM=",
        "selfLink": "https://www.googleapis.com/compute/v1/projects/golden-test/global/images/golden-1"
    })
}

#[test]
fn operations_instances_images_and_serial_output_answers_fit() {
    for status in ["PENDING", "RUNNING", "DONE"] {
        let v = answer(
            "POST",
            &format!("{P}/instances"),
            200,
            operation_answer(status),
        );
        assert_eq!(v, Vec::<String>::new(), "{status}");
    }
    let mut failed = operation_answer("DONE");
    failed["error"] = json!({"errors": [{
        "code": "QUOTA_EXCEEDED",
        "message": "Quota 'CPUS' exceeded.  Limit: 8.0 in region europe-west1.",
        "errorDetails": [{"quotaInfo": {"metricName": "compute.googleapis.com/cpus", "limitName": "CPUS-per-project-region", "limit": 8.0}}]
    }]});
    failed["httpErrorStatusCode"] = json!(403);
    failed["httpErrorMessage"] = json!("FORBIDDEN");
    assert_eq!(
        answer("POST", &format!("{P}/operations/op-1/wait"), 200, failed),
        Vec::<String>::new()
    );
    assert_eq!(
        answer(
            "GET",
            &format!("{G}/operations/op-1"),
            200,
            operation_answer("DONE")
        ),
        Vec::<String>::new()
    );

    let instance = json!({
        "kind": "compute#instance",
        "id": "18234567890123456789",
        "creationTimestamp": "2026-12-02T03:00:00.000-08:00",
        "name": "golden-build-42",
        "machineType": "https://www.googleapis.com/compute/v1/projects/golden-test/zones/europe-west1-b/machineTypes/e2-medium",
        "status": "RUNNING",
        "zone": "https://www.googleapis.com/compute/v1/projects/golden-test/zones/europe-west1-b",
        "networkInterfaces": [{
            "kind": "compute#networkInterface",
            "network": "https://www.googleapis.com/compute/v1/projects/golden-test/global/networks/default",
            "networkIP": "10.132.0.2",
            "name": "nic0",
            "accessConfigs": [{"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT", "name": "External NAT", "natIP": "203.0.113.7", "networkTier": "PREMIUM"}]
        }],
        "disks": [{
            "kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": "READ_WRITE",
            "source": "https://www.googleapis.com/compute/v1/projects/golden-test/zones/europe-west1-b/disks/golden-build-42",
            "deviceName": "persistent-disk-0", "index": 0, "boot": true, "autoDelete": true,
            "interface": "SCSI", "diskSizeGb": "10"
        }],
        "metadata": {"kind": "compute#metadata", "fingerprint": "mX9yFe8hWjQ=", "items": [{"key": "startup-script", "value": "#!/bin/sh"}]},
        "labels": {"golden": "candidate"},
        "labelFingerprint": "42WmSpB8rSM=",
        "selfLink": "https://www.googleapis.com/compute/v1/projects/golden-test/zones/europe-west1-b/instances/golden-build-42"
    });
    assert_eq!(
        answer(
            "GET",
            &format!("{P}/instances/golden-build-42"),
            200,
            instance
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        answer("GET", &format!("{G}/images/golden-1"), 200, image_answer()),
        Vec::<String>::new()
    );
    assert_eq!(
        answer(
            "GET",
            &format!("{G}/images/family/golden-debian-12"),
            200,
            image_answer()
        ),
        Vec::<String>::new()
    );
    let list = json!({
        "kind": "compute#imageList",
        "id": "projects/golden-test/global/images",
        "items": [image_answer(), image_answer()],
        "nextPageToken": "CgR0b2tlbg==",
        "selfLink": "https://www.googleapis.com/compute/v1/projects/golden-test/global/images"
    });
    assert_eq!(
        answer("GET", &format!("{G}/images"), 200, list),
        Vec::<String>::new()
    );
    let serial = json!({
        "kind": "compute#serialPortOutput",
        "contents": "golden: build done\r\n",
        "start": "0",
        "next": "20",
        "selfLink": "https://www.googleapis.com/compute/v1/projects/golden-test/zones/europe-west1-b/instances/golden-build-42/serialPort"
    });
    assert_eq!(
        answer(
            "GET",
            &format!("{P}/instances/golden-build-42/serialPort"),
            200,
            serial
        ),
        Vec::<String>::new()
    );
    // operations.delete declares no response: an empty body.
    assert_eq!(
        answer("DELETE", &format!("{G}/operations/op-1"), 200, json!({})),
        Vec::<String>::new()
    );
    assert_eq!(
        answer(
            "DELETE",
            &format!("{G}/operations/op-1"),
            200,
            json!({"done": true})
        ),
        vec!["body: the method declares no response body"]
    );
}

#[test]
fn answers_that_do_not_fit() {
    let mut op = operation_answer("FINISHED");
    op["progress"] = json!("50");
    op["warnings"] = json!(null);
    op["kind"] = json!("compute#zoneOperation");
    op["etag"] = json!("abc");
    let v = answer("GET", &format!("{P}/operations/op-1"), 200, op);
    let want = [
        "body.status: 'FINISHED' is not one of DONE, PENDING, RUNNING",
        "body.progress: expected integer, got a string",
        "body.warnings: null: Google's answers leave unset fields out",
        "body.kind: 'compute#zoneOperation', but the document says it is always 'compute#operation'",
        "body.etag: Unknown name \"etag\" at 'body': Cannot find field.",
    ];
    for w in want {
        assert!(v.iter().any(|x| x == w), "missing '{w}' in {v:?}");
    }
    assert_eq!(v.len(), want.len(), "{v:?}");
    // Instance.status is an enum too.
    let v = answer(
        "GET",
        &format!("{P}/instances/vm-1"),
        200,
        json!({"status": "BOOTING"}),
    );
    assert!(
        v[0].starts_with("body.status: 'BOOTING' is not one of DEPROVISIONING, PENDING"),
        "{v:?}"
    );
    // A 3xx is not something the API answers.
    let v = answer("GET", &format!("{P}/instances/vm-1"), 302, json!(null));
    assert!(v[0].contains("answers 2xx or a 4xx/5xx error"), "{v:?}");
    let v = answer("GET", "projects/p/nowhere", 200, json!({}));
    assert!(v[0].contains("not in the discovery document"), "{v:?}");
}

#[test]
fn error_answers_follow_googles_shape() {
    let vm = format!("{P}/instances/vm-1");
    let not_found = json!({"error": {
        "code": 404,
        "message": "The resource 'projects/golden-test/zones/europe-west1-b/instances/vm-1' was not found",
        "errors": [{
            "message": "The resource 'projects/golden-test/zones/europe-west1-b/instances/vm-1' was not found",
            "domain": "global",
            "reason": "notFound"
        }]
    }});
    assert_eq!(
        answer("GET", &vm, 404, not_found.clone()),
        Vec::<String>::new()
    );
    let mut with_status = not_found.clone();
    with_status["error"]["status"] = json!("NOT_FOUND");
    with_status["error"]["details"] =
        json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "notFound"}]);
    assert_eq!(answer("GET", &vm, 404, with_status), Vec::<String>::new());
    let rate = json!({"error": {
        "code": 403,
        "message": "Rate Limit Exceeded",
        "errors": [{"message": "Rate Limit Exceeded", "domain": "usageLimits", "reason": "rateLimitExceeded"}]
    }});
    assert_eq!(
        answer("POST", &format!("{P}/instances"), 403, rate),
        Vec::<String>::new()
    );

    let v = answer("GET", &vm, 409, not_found);
    assert_eq!(v, vec!["body.error.code: 404, but the HTTP status is 409"]);
    let v = answer(
        "GET",
        &vm,
        500,
        json!({"error": {"code": 500, "message": "boom", "status": "EXPLODED", "trace": "x"}}),
    );
    let want = [
        "body.error.trace: not part of Google's error answer",
        "body.error.errors: required: a non-empty array of {message, domain, reason}",
        "body.error.status: \"EXPLODED\" is not a google.rpc.Code name",
    ];
    for w in want {
        assert!(v.iter().any(|x| x == w), "missing '{w}' in {v:?}");
    }
    let v = answer(
        "GET",
        &vm,
        400,
        json!({"error": {"code": 400, "message": "a", "errors": [{"message": "b", "reason": "invalid"}]}}),
    );
    assert!(
        v.contains(&"body.error.errors[0].domain: required: a string".to_owned()),
        "{v:?}"
    );
    assert!(
        v.contains(
            &"body.error.message: must be the first error's message (errors[0].message)".to_owned()
        ),
        "{v:?}"
    );
    let v = answer("GET", &vm, 503, json!("Service Unavailable"));
    assert!(
        v[0].starts_with("body: an error answer must be a JSON object"),
        "{v:?}"
    );
}

#[test]
fn the_spec_checker_trait_reaches_the_same_checks() {
    let checker: &dyn SpecChecker = gce();
    let path = format!("/compute/v1/{P}/instances");
    assert_eq!(
        checker.check_request_body("POST", &path, &Params::new(), Some(&instance_insert_body())),
        Ok(())
    );
    assert!(matches!(
        checker.check_request("POST", &path, &Params::new()),
        Err(RequestError::Params(e)) if e["body"].contains("'resource'")
    ));
    assert_eq!(
        checker.check_response("POST", &path, 200, &operation_answer("PENDING")),
        Vec::<String>::new()
    );
}
