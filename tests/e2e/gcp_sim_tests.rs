//! The GCE simulator over HTTP, as any Compute client sees it: auth with the
//! key it issued, operations, the build and publish calls golden makes, and
//! GCE's refusals. Every test ends with no schema violation and nothing left.

use std::time::Duration;

use serde_json::{json, Value};

use super::gcp_sim::{now, GcpSim};

const DEBIAN: &str = "projects/debian-cloud/global/images/family/debian-12";

/// An instance from `image` (URL), boot disk auto-deleted, with metadata.
fn instance_body(name: &str, image: &str, items: Value) -> Value {
    json!({
        "name": name,
        "machineType": "zones/us-central1-a/machineTypes/e2-small",
        "disks": [{"boot": true, "autoDelete": true, "initializeParams": {"sourceImage": image}}],
        "networkInterfaces": [{"network": "global/networks/default"}],
        "metadata": {"items": items},
        "labels": {"golden-run": "r1"},
    })
}

fn create_instance(sim: &GcpSim, name: &str, image: &str, items: Value) -> Value {
    let op = sim.expect(
        200,
        "POST",
        &sim.zonal("instances"),
        Some(instance_body(name, image, items)),
    );
    let done = sim.wait(&op);
    assert!(done.get("error").is_none(), "{done:#}");
    done
}

/// A stopped instance's disk to image (the instance is kept, stopped).
fn stopped_disk(sim: &GcpSim, name: &str) -> String {
    create_instance(sim, name, DEBIAN, json!([]));
    let op = sim.expect(
        200,
        "POST",
        &sim.zonal(&format!("instances/{name}/stop")),
        None,
    );
    sim.wait(&op);
    sim.wait_status(name, "TERMINATED");
    format!("zones/{}/disks/{name}", sim.zone)
}

fn delete_instance(sim: &GcpSim, name: &str) {
    let op = sim.expect(
        200,
        "DELETE",
        &sim.zonal(&format!("instances/{name}")),
        None,
    );
    sim.wait(&op);
}

fn insert_image(sim: &GcpSim, name: &str, disk: &str, extra: Value) -> Value {
    let mut body = json!({"name": name, "sourceDisk": disk});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let op = sim.expect(200, "POST", &sim.global("images"), Some(body));
    sim.wait(&op)
}

fn delete_image(sim: &GcpSim, name: &str) {
    let op = sim.expect(200, "DELETE", &sim.global(&format!("images/{name}")), None);
    sim.wait(&op);
}

fn error_reason(body: &Value) -> &str {
    body["error"]["errors"][0]["reason"].as_str().unwrap_or("")
}

#[test]
fn gcp_jwts_signed_by_the_issued_key_are_accepted_and_others_refused() {
    let sim = GcpSim::start();
    let key_file: Value =
        serde_json::from_str(&std::fs::read_to_string(&sim.credentials).unwrap()).unwrap();
    assert_eq!(key_file["type"], "service_account");
    assert_eq!(key_file["project_id"], sim.project.as_str());
    assert_eq!(key_file["token_uri"], format!("{}/token", sim.endpoint));
    assert!(key_file["private_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    let list = sim.global("images");
    sim.expect(200, "GET", &list, None);

    let email = sim.key.email();
    let t = now();
    let claims = json!({"iss": email, "sub": email, "aud": "https://compute.googleapis.com/", "iat": t, "exp": t + 3600});
    // A scope claim instead of an audience (google-auth's always_use_jwt_access).
    let scoped = json!({"iss": email, "sub": email, "scope": "https://www.googleapis.com/auth/cloud-platform", "iat": t, "exp": t + 3600});
    assert_eq!(
        sim.call_as(&sim.key.sign(&scoped), "GET", &list, None)
            .status,
        200
    );

    let forged = sim.key.forged().sign(&claims);
    let expired = sim.key.sign(&json!({"iss": email, "sub": email, "aud": "https://compute.googleapis.com/", "iat": t - 7200, "exp": t - 3600}));
    let wrong_kid = sim.key.sign_with_kid("0123456789abcdef", &claims);
    let no_scope = sim
        .key
        .sign(&json!({"iss": email, "sub": email, "iat": t, "exp": t + 3600}));
    for (what, token) in [
        ("none", ""),
        ("wrong key", &forged),
        ("expired", &expired),
        ("wrong kid", &wrong_kid),
        ("no aud or scope", &no_scope),
        ("garbage", "ya29.nope"),
    ] {
        let a = sim.call_as(token, "GET", &list, None);
        assert_eq!(a.status, 401, "{what}: {:#}", a.body);
        assert_eq!(a.body["error"]["status"], "UNAUTHENTICATED", "{what}");
        assert_eq!(error_reason(&a.body), "authError", "{what}");
    }

    // The OAuth JWT-bearer grant at token_uri.
    let assertion = sim.key.sign(
        &json!({"iss": email, "scope": "https://www.googleapis.com/auth/cloud-platform",
        "aud": format!("{}/token", sim.endpoint), "iat": t, "exp": t + 3600}),
    );
    let grant = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    let a = sim.token_call(&[("grant_type", grant), ("assertion", &assertion)]);
    assert_eq!(a.status, 200, "{:#}", a.body);
    let access = a.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(a.body["token_type"], "Bearer");
    assert_eq!(sim.call_as(&access, "GET", &list, None).status, 200);
    let bad = sim.key.forged().sign(
        &json!({"iss": email, "scope": "https://www.googleapis.com/auth/cloud-platform",
        "aud": format!("{}/token", sim.endpoint), "iat": t, "exp": t + 3600}),
    );
    let a = sim.token_call(&[("grant_type", grant), ("assertion", &bad)]);
    assert_eq!(
        (a.status, a.body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{:#}",
        a.body
    );
    // Google's endpoint as the audience, whatever token_uri says: what
    // google-auth (Python) always sends ("Using OAuth 2.0 for Server to
    // Server Applications": "always https://oauth2.googleapis.com/token").
    for (aud, status) in [
        ("https://oauth2.googleapis.com/token", 200),
        ("https://compute.googleapis.com/", 400),
    ] {
        let jwt = sim.key.sign(
            &json!({"iss": email, "scope": "https://www.googleapis.com/auth/cloud-platform",
            "aud": aud, "iat": t, "exp": t + 3600}),
        );
        let a = sim.token_call(&[("grant_type", grant), ("assertion", &jwt)]);
        assert_eq!(a.status, status, "aud {aud}: {:#}", a.body);
    }
    let a = sim.token_call(&[("grant_type", "password"), ("assertion", &assertion)]);
    assert_eq!(a.body["error"], "unsupported_grant_type");

    let log = sim.admin_get("/requests");
    let refused = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["auth_ok"] == false)
        .count();
    assert_eq!(refused, 6, "{log:#}");
    assert!(
        !log.to_string().contains(&forged),
        "credentials never reach the log"
    );
    sim.assert_schema_clean();
}

#[test]
fn gcp_operations_go_pending_running_done_and_wait_may_return_early() {
    let sim = GcpSim::start_with(&["--op-ms", "1600"]);
    let op = sim.expect(
        200,
        "POST",
        &sim.zonal("instances"),
        Some(instance_body("ops-1", DEBIAN, json!([]))),
    );
    assert_eq!(op["status"], "PENDING", "{op:#}");
    assert_eq!(op["operationType"], "insert");
    std::thread::sleep(Duration::from_millis(600));
    let running = sim.expect(200, "GET", &GcpSim::op_path(&op), None);
    assert_eq!(running["status"], "RUNNING");
    // wait returns at its cap whether or not the operation is done.
    sim.admin_put("/behaviour", json!({"wait_cap_ms": 100}));
    let early = sim.expect(200, "POST", &format!("{}/wait", GcpSim::op_path(&op)), None);
    assert_eq!(early["status"], "RUNNING", "{early:#}");
    sim.admin_put("/behaviour", json!({"wait_cap_ms": 120000}));
    let done = sim.wait(&op);
    assert_eq!(
        (done["status"].as_str(), done["progress"].as_i64()),
        (Some("DONE"), Some(100))
    );
    assert!(done["endTime"].is_string());
    sim.wait_status("ops-1", "RUNNING");
    // A global operation is not found in the zone, nor the other way round.
    let name = op["name"].as_str().unwrap();
    let a = sim.call("GET", &sim.global(&format!("operations/{name}")), None);
    assert_eq!(a.status, 404);

    // An operation that ends in an error: DONE, error.errors[], no instance.
    sim.fault(json!({"kind": "operation", "operation_type": "insert", "code": "QUOTA_EXCEEDED", "times": 1}));
    let op = sim.expect(
        200,
        "POST",
        &sim.zonal("instances"),
        Some(instance_body("ops-2", DEBIAN, json!([]))),
    );
    let done = sim.wait(&op);
    assert_eq!(
        done["error"]["errors"][0]["code"], "QUOTA_EXCEEDED",
        "{done:#}"
    );
    assert_eq!(done["httpErrorStatusCode"], 403);
    assert_eq!(
        sim.call("GET", &sim.zonal("instances/ops-2"), None).status,
        404
    );
    delete_instance(&sim, "ops-1");
    sim.assert_nothing_left();
    sim.assert_schema_clean();
}

#[test]
fn gcp_build_flow_images_a_stopped_instances_disk_which_is_in_use_until_done() {
    let sim = GcpSim::start_with(&["--op-ms", "400"]);
    // Google's Debian image has no cloud-init: the startup script provisions.
    let script = "#!/bin/bash\necho built > /etc/built\necho 'GOLDEN-PROVISION rc=0 step=done' > /dev/ttyS0\npoweroff\n";
    create_instance(
        &sim,
        "build-1",
        DEBIAN,
        json!([{"key": "startup-script", "value": script}]),
    );
    let serial = sim.expect(
        200,
        "GET",
        &sim.zonal("instances/build-1/serialPort?port=1&start=0"),
        None,
    );
    assert!(
        serial["contents"]
            .as_str()
            .unwrap()
            .contains("GOLDEN-PROVISION rc=0 step=done"),
        "{serial:#}"
    );
    // Imaging a running instance's disk is refused.
    let disk = format!("zones/{}/disks/build-1", sim.zone);
    let a = sim.call(
        "POST",
        &sim.global("images"),
        Some(json!({"name": "x", "sourceDisk": disk})),
    );
    if a.status == 400 {
        assert_eq!(error_reason(&a.body), "resourceInUseByAnotherResource");
    }
    sim.wait_status("build-1", "TERMINATED");

    let op = sim.expect(200, "POST", &sim.global("images?requestId=0b2f1c7e-6a43-4d7e-9a51-3f6c2f7d9e10"),
        Some(json!({"name": "web-0-1-0", "sourceDisk": format!("https://www.googleapis.com/compute/v1/projects/{}/{disk}", sim.project),
                    "labels": {"golden": "candidate"}})));
    let img = sim.expect(200, "GET", &sim.global("images/web-0-1-0"), None);
    assert_eq!(img["status"], "PENDING");
    for (method, path) in [
        ("DELETE", sim.zonal("instances/build-1")),
        ("DELETE", sim.zonal("disks/build-1")),
    ] {
        let a = sim.call(method, &path, None);
        assert_eq!(
            (a.status, error_reason(&a.body)),
            (400, "resourceInUseByAnotherResource"),
            "{path}: {:#}",
            a.body
        );
        assert!(
            a.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("is already being used by 'projects/"),
            "{:#}",
            a.body
        );
    }
    sim.wait(&op);
    let img = sim.expect(200, "GET", &sim.global("images/web-0-1-0"), None);
    assert_eq!(img["status"], "READY");
    assert!(img["sourceDisk"]
        .as_str()
        .unwrap()
        .ends_with("/disks/build-1"));
    delete_instance(&sim, "build-1");
    assert_eq!(
        sim.call("GET", &sim.zonal("disks/build-1"), None).status,
        404,
        "autoDelete took the disk"
    );

    // An instance from the image sees what provisioning left on its disk.
    let image_url = format!("projects/{}/global/images/web-0-1-0", sim.project);
    create_instance(
        &sim,
        "smoke-1",
        &image_url,
        json!([{"key": "startup-script", "value": "cat /etc/built > /dev/ttyS0\necho 'GOLDEN-CHECK built ok' > /dev/ttyS0\n"}]),
    );
    let out = sim.expect(200, "GET", &sim.zonal("instances/smoke-1/serialPort"), None);
    let text = out["contents"].as_str().unwrap();
    assert!(text.contains("built\nGOLDEN-CHECK built ok\n"), "{text}");
    delete_instance(&sim, "smoke-1");
    delete_image(&sim, "web-0-1-0");
    sim.assert_nothing_left();
    sim.assert_schema_clean();
}

#[test]
fn gcp_request_ids_make_retried_inserts_safe() {
    let sim = GcpSim::start();
    let rid = "5f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f";
    let path = format!("{}?requestId={rid}", sim.zonal("instances"));
    // The first try fails with a 503 before anything happens; the retry
    // creates; a third try with the same id returns the same operation.
    sim.fault(
        json!({"kind": "http", "method": "POST", "path": "/instances$", "status": 503, "times": 1}),
    );
    let a = sim.call(
        "POST",
        &path,
        Some(instance_body("rid-1", DEBIAN, json!([]))),
    );
    assert_eq!(
        (a.status, error_reason(&a.body)),
        (503, "backendError"),
        "{:#}",
        a.body
    );
    let first = sim.expect(
        200,
        "POST",
        &path,
        Some(instance_body("rid-1", DEBIAN, json!([]))),
    );
    let again = sim.expect(
        200,
        "POST",
        &path,
        Some(instance_body("rid-1", DEBIAN, json!([]))),
    );
    assert_eq!(first["name"], again["name"]);
    sim.wait(&first);
    let replay = sim.expect(
        200,
        "POST",
        &path,
        Some(instance_body("rid-1", DEBIAN, json!([]))),
    );
    assert_eq!(
        (replay["name"].clone(), replay["status"].as_str()),
        (first["name"].clone(), Some("DONE"))
    );
    assert_eq!(sim.admin_get("/instances").as_array().unwrap().len(), 1);
    // Without the id the same insert is a 409.
    let a = sim.call(
        "POST",
        &sim.zonal("instances"),
        Some(instance_body("rid-1", DEBIAN, json!([]))),
    );
    assert_eq!((a.status, error_reason(&a.body)), (409, "alreadyExists"));
    for bad in ["not-a-uuid", "00000000-0000-0000-0000-000000000000"] {
        let a = sim.call(
            "POST",
            &format!("{}?requestId={bad}", sim.zonal("instances")),
            Some(instance_body("rid-2", DEBIAN, json!([]))),
        );
        assert_eq!((a.status, error_reason(&a.body)), (400, "invalid"), "{bad}");
    }
    delete_instance(&sim, "rid-1");
    sim.assert_nothing_left();
    sim.assert_schema_clean();
}

#[test]
fn gcp_families_labels_filters_and_pages() {
    let sim = GcpSim::start();
    let disk = stopped_disk(&sim, "src");
    for name in ["web-1", "web-2", "web-3"] {
        insert_image(&sim, name, &disk, json!({"family": "web"}));
        std::thread::sleep(Duration::from_millis(5));
    }
    let fam = sim.global("images/family/web");
    assert_eq!(sim.expect(200, "GET", &fam, None)["name"], "web-3");
    // Deprecating the newest hides it from the family; patch changes only
    // family, description and deprecation status.
    let op = sim.expect(
        200,
        "PATCH",
        &sim.global("images/web-3"),
        Some(json!({"deprecated": {"state": "DEPRECATED"}})),
    );
    sim.wait(&op);
    assert_eq!(sim.expect(200, "GET", &fam, None)["name"], "web-2");
    let a = sim.call(
        "PATCH",
        &sim.global("images/web-2"),
        Some(json!({"labels": {"x": "y"}})),
    );
    assert_eq!(a.status, 400, "{:#}", a.body);
    let op = sim.expect(
        200,
        "PATCH",
        &sim.global("images/web-1"),
        Some(json!({"family": "other", "description": "moved"})),
    );
    sim.wait(&op);
    let a = sim.call("GET", &sim.global("images/family/nope"), None);
    assert_eq!(a.status, 404);
    assert_eq!(
        a.body["error"]["message"],
        format!(
            "The resource 'projects/{}/global/images/family/nope' was not found",
            sim.project
        )
    );

    // setLabels: the fingerprint must be the current one.
    let img = sim.expect(200, "GET", &sim.global("images/web-2"), None);
    let fp = img["labelFingerprint"].as_str().unwrap().to_owned();
    let set = sim.global("images/web-2/setLabels");
    let op = sim.expect(
        200,
        "POST",
        &set,
        Some(json!({"labels": {"golden": "validated", "run": "r1"}, "labelFingerprint": fp})),
    );
    sim.wait(&op);
    let a = sim.call(
        "POST",
        &set,
        Some(json!({"labels": {"golden": "failed"}, "labelFingerprint": fp})),
    );
    assert_eq!(
        (a.status, error_reason(&a.body)),
        (412, "conditionNotMet"),
        "{:#}",
        a.body
    );
    let img = sim.expect(200, "GET", &sim.global("images/web-2"), None);
    assert_ne!(img["labelFingerprint"].as_str().unwrap(), fp);
    let op = sim.expect(
        200,
        "POST",
        &sim.global("images/web-3/setLabels"),
        Some(json!({"labels": {"golden": "candidate"}, "labelFingerprint": "42WmSpB8rSM="})),
    );
    sim.wait(&op);

    // The filter subset.
    let names = |filter: &str| -> Vec<String> {
        let q: String = filter
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let v = sim.expect(
            200,
            "GET",
            &format!("{}?filter={q}", sim.global("images")),
            None,
        );
        v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| i["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names(r#"labels.golden = "validated""#), ["web-2"]);
    assert_eq!(names("labels.golden:*"), ["web-2", "web-3"]);
    assert_eq!(
        names(r#"(family = "web") (labels.golden = "candidate")"#),
        ["web-3"]
    );
    assert_eq!(names(r#"family = "web" AND labels.run = "r1""#), ["web-2"]);
    assert_eq!(names(r#"name = "web-1""#), ["web-1"]);
    assert!(names(r#"labels.golden = "nope""#).is_empty());
    for bad in [
        "name != web-1",
        "(family = web) OR (family = other)",
        "name eq web-.*",
    ] {
        let q: String = bad.bytes().map(|b| format!("%{b:02X}")).collect();
        let a = sim.call("GET", &format!("{}?filter={q}", sim.global("images")), None);
        assert_eq!(a.status, 400, "{bad}");
        assert_eq!(
            a.body["error"]["message"],
            format!("Invalid value for field 'filter': '{bad}'. Invalid list filter expression.")
        );
    }
    // Pages of one.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let q = if token.is_empty() {
            String::new()
        } else {
            format!("&pageToken={token}")
        };
        let v = sim.expect(
            200,
            "GET",
            &format!("{}?maxResults=1{q}", sim.global("images")),
            None,
        );
        seen.push(v["items"][0]["name"].as_str().unwrap().to_owned());
        match v["nextPageToken"].as_str() {
            Some(t) => token = t.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["web-1", "web-2", "web-3"]);
    assert_eq!(
        sim.call(
            "GET",
            &format!("{}?pageToken=bogus", sim.global("images")),
            None
        )
        .status,
        400
    );

    for name in ["web-1", "web-2", "web-3"] {
        delete_image(&sim, name);
    }
    delete_instance(&sim, "src");
    sim.assert_nothing_left();
    sim.assert_schema_clean();
}

#[test]
fn gcp_serial_ring_start_next_and_lost_output() {
    let sim = GcpSim::start();
    create_instance(
        &sim,
        "ser-1",
        DEBIAN,
        json!([{"key": "startup-script", "value": "echo hi"}]),
    );
    let path = |start: &str| format!("{}?start={start}", sim.zonal("instances/ser-1/serialPort"));
    let first = sim.expect(200, "GET", &path("0"), None);
    assert_eq!(first["start"], "0");
    assert!(first["contents"]
        .as_str()
        .unwrap()
        .contains("startup-script: hi\n"));
    let next = first["next"].as_str().unwrap().to_owned();
    sim.admin_post(
        "/instances/ser-1/serial",
        json!({"text": "GOLDEN-CHECK a ok\n"}),
    );
    let more = sim.expect(200, "GET", &path(&next), None);
    assert_eq!(
        (more["contents"].as_str(), more["start"].as_str()),
        (Some("GOLDEN-CHECK a ok\n"), Some(next.as_str()))
    );
    // More than the 1 MB ring: a start that fell out moves forward.
    let chunk = "x".repeat(100_000);
    for _ in 0..11 {
        sim.admin_post("/instances/ser-1/serial", json!({"text": chunk}));
    }
    let late = sim.expect(200, "GET", &path("0"), None);
    let start: u64 = late["start"].as_str().unwrap().parse().unwrap();
    let next: u64 = late["next"].as_str().unwrap().parse().unwrap();
    assert_eq!(next - start, 1 << 20);
    assert!(start > 0);
    let tail = sim.expect(200, "GET", &path("-5"), None);
    assert_eq!(tail["contents"], "xxxxx");
    delete_instance(&sim, "ser-1");
    sim.assert_nothing_left();
    sim.assert_schema_clean();
}

#[test]
fn gcp_rate_limits_and_server_errors_in_googles_shape() {
    let sim = GcpSim::start();
    let list = sim.global("images");
    sim.fault(json!([
        {"kind": "http", "path": "/global/images$", "status": 429, "times": 1},
        {"kind": "http", "path": "/global/images$", "status": 403, "times": 1},
        {"kind": "http", "path": "/global/images$", "status": 500, "times": 1}
    ]));
    let a = sim.call("GET", &list, None);
    assert_eq!(
        (a.status, error_reason(&a.body)),
        (429, "rateLimitExceeded")
    );
    assert_eq!(a.body["error"]["errors"][0]["domain"], "usageLimits");
    let a = sim.call("GET", &list, None);
    assert_eq!(
        (a.status, error_reason(&a.body)),
        (403, "rateLimitExceeded")
    );
    assert_eq!(a.body["error"]["errors"][0]["domain"], "usageLimits");
    let a = sim.call("GET", &list, None);
    assert_eq!(a.status, 500);
    sim.expect(200, "GET", &list, None);
    sim.assert_schema_clean();
}

#[test]
fn gcp_requests_outside_the_discovery_document_are_refused_and_recorded() {
    let sim = GcpSim::start();
    // GCE's own limit, which the document states only in prose: refused,
    // not a violation.
    let a = sim.call(
        "GET",
        &format!("{}?maxResults=501", sim.global("images")),
        None,
    );
    assert_eq!(
        (a.status, error_reason(&a.body)),
        (400, "invalid"),
        "{:#}",
        a.body
    );
    sim.assert_schema_clean();
    let a = sim.call(
        "POST",
        &sim.zonal("instances"),
        Some(json!({"name": "x", "disks": [{"boot": "maybe"}]})),
    );
    assert_eq!(a.status, 400, "{:#}", a.body);
    let a = sim.call(
        "GET",
        &format!("{}?maxResults=-1&colour=blue", sim.global("images")),
        None,
    );
    assert_eq!(a.status, 400, "{:#}", a.body);
    assert!(a.body.to_string().contains("colour"), "{:#}", a.body);
    let v = sim.admin_get("/violations");
    assert_eq!(v.as_array().unwrap().len(), 2, "{v:#}");
    assert!(v.to_string().contains("body.disks[0].boot"), "{v:#}");
    assert!(v.to_string().contains("colour"), "{v:#}");
    assert_eq!(sim.admin_get("/instances"), json!([]));
}

/// An instance whose boot disk and itself carry `labels`.
fn labelled_instance(sim: &GcpSim, name: &str, labels: Value) {
    let body = json!({
        "name": name,
        "machineType": format!("zones/{}/machineTypes/e2-small", sim.zone),
        "disks": [{"boot": true, "autoDelete": true,
                   "initializeParams": {"sourceImage": DEBIAN, "labels": labels}}],
        "networkInterfaces": [{"network": "global/networks/default"}],
        "labels": labels,
    });
    let op = sim.expect(200, "POST", &sim.zonal("instances"), Some(body));
    let done = sim.wait(&op);
    assert!(done.get("error").is_none(), "{done:#}");
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn item_names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The sweep's calls: `instances.list`/`disks.list` with
/// `labels.golden-managed = "true"`, each item's `labels` read back; the
/// same filter, page and order handling as `images.list`.
#[test]
fn gcp_instances_and_disks_list_by_label_with_pages_and_order() {
    let sim = GcpSim::start();
    let managed =
        json!({"golden-managed": "true", "golden-run": "r7", "golden-expires": "20250101t120000z"});
    // Created in an order that is not the names' order.
    labelled_instance(&sim, "sweep-b", managed.clone());
    labelled_instance(&sim, "other-c", json!({"team": "core"}));
    labelled_instance(&sim, "sweep-a", managed.clone());

    let filter = pct(r#"labels.golden-managed = "true""#);
    for what in ["instances", "disks"] {
        let v = sim.expect(
            200,
            "GET",
            &format!("{}?filter={filter}&maxResults=500", sim.zonal(what)),
            None,
        );
        assert_eq!(item_names(&v), ["sweep-a", "sweep-b"], "{what}: {v:#}");
        assert!(v.get("nextPageToken").is_none(), "{v:#}");
        for item in v["items"].as_array().unwrap() {
            assert_eq!(item["labels"], managed, "{what}: {item:#}");
        }
        let kind = if what == "instances" {
            "compute#instanceList"
        } else {
            "compute#diskList"
        };
        assert_eq!(v["kind"], kind);
        // Everything, in name order.
        let all = sim.expect(200, "GET", &sim.zonal(what), None);
        assert_eq!(item_names(&all), ["other-c", "sweep-a", "sweep-b"]);
        // Newest first.
        let v = sim.expect(
            200,
            "GET",
            &format!(
                "{}?orderBy={}",
                sim.zonal(what),
                pct("creationTimestamp desc")
            ),
            None,
        );
        assert_eq!(item_names(&v), ["sweep-a", "other-c", "sweep-b"], "{what}");
        // Nothing matches: no `items` key.
        let v = sim.expect(
            200,
            "GET",
            &format!(
                "{}?filter={}",
                sim.zonal(what),
                pct(r#"labels.golden-run = "nope""#)
            ),
            None,
        );
        assert!(v.get("items").is_none(), "{v:#}");
        // Pages of one, with the filter.
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let q = if token.is_empty() {
                String::new()
            } else {
                format!("&pageToken={token}")
            };
            let v = sim.expect(
                200,
                "GET",
                &format!("{}?filter={filter}&maxResults=1{q}", sim.zonal(what)),
                None,
            );
            seen.extend(item_names(&v));
            match v["nextPageToken"].as_str() {
                Some(t) => token = t.to_owned(),
                None => break,
            }
        }
        assert_eq!(seen, ["sweep-a", "sweep-b"], "{what}");
        // Refusals: a filter outside the subset, a field instances and
        // disks lack, too many results, a token of another list.
        for bad in ["name != sweep-a", "family = debian-12"] {
            let a = sim.call(
                "GET",
                &format!("{}?filter={}", sim.zonal(what), pct(bad)),
                None,
            );
            assert_eq!(
                (a.status, error_reason(&a.body)),
                (400, "invalid"),
                "{bad}: {:#}",
                a.body
            );
            assert_eq!(
                a.body["error"]["message"],
                format!(
                    "Invalid value for field 'filter': '{bad}'. Invalid list filter expression."
                )
            );
        }
        let a = sim.call("GET", &format!("{}?maxResults=501", sim.zonal(what)), None);
        assert_eq!(
            (a.status, error_reason(&a.body)),
            (400, "invalid"),
            "{:#}",
            a.body
        );
    }
    // A page token is the list's own: an instances token is no disks token.
    let v = sim.expect(
        200,
        "GET",
        &format!("{}?maxResults=1", sim.zonal("instances")),
        None,
    );
    let token = v["nextPageToken"].as_str().unwrap();
    let a = sim.call(
        "GET",
        &format!("{}?maxResults=1&pageToken={token}", sim.zonal("disks")),
        None,
    );
    assert_eq!(
        (a.status, error_reason(&a.body)),
        (400, "invalid"),
        "{:#}",
        a.body
    );

    // get shows the labels too, with a fingerprint that is not the empty one.
    let d = sim.expect(200, "GET", &sim.zonal("disks/sweep-a"), None);
    assert_eq!(d["labels"], managed, "{d:#}");
    assert_ne!(d["labelFingerprint"], "42WmSpB8rSM=");
    let i = sim.expect(200, "GET", &sim.zonal("instances/sweep-a"), None);
    assert_eq!(i["labels"], managed, "{i:#}");
    let d = sim.expect(200, "GET", &sim.zonal("disks/other-c"), None);
    assert_eq!(d["labels"], json!({"team": "core"}));

    for name in ["sweep-a", "sweep-b", "other-c"] {
        delete_instance(&sim, name);
    }
    let v = sim.expect(200, "GET", &sim.zonal("instances"), None);
    assert!(v.get("items").is_none(), "{v:#}");
    sim.assert_nothing_left();
    sim.assert_schema_clean();
}

/// `PUT /_sim/behaviour {"op_ms": {"images.insert": n}}`: an image insert
/// that outlasts a client's wait, its disk in use until it is `DONE`, while
/// other operations keep `--op-ms`.
#[test]
fn gcp_a_slow_image_insert_keeps_its_disk_in_use_until_done() {
    let sim = GcpSim::start_with(&["--op-ms", "200"]);
    let b = sim.admin_put(
        "/behaviour",
        json!({"op_ms": {"images.insert": 3000}, "wait_cap_ms": 300}),
    );
    assert_eq!(b["op_ms"], json!({"images.insert": 3000}));
    let disk = stopped_disk(&sim, "slow-1");
    let started = std::time::Instant::now();
    let op = sim.expect(
        200,
        "POST",
        &sim.global("images"),
        Some(json!({"name": "slow-img", "sourceDisk": disk})),
    );
    // A client that waits once (the wait capped at 300 ms here) sees it
    // still running, and the disk still in use.
    let o = sim.expect(200, "POST", &format!("{}/wait", GcpSim::op_path(&op)), None);
    assert_ne!(o["status"], "DONE", "{o:#}");
    std::thread::sleep(Duration::from_millis(1000));
    let o = sim.expect(200, "GET", &GcpSim::op_path(&op), None);
    assert_eq!(o["status"], "RUNNING", "{o:#}");
    for path in [sim.zonal("instances/slow-1"), sim.zonal("disks/slow-1")] {
        let a = sim.call("DELETE", &path, None);
        assert_eq!(
            (a.status, error_reason(&a.body)),
            (400, "resourceInUseByAnotherResource"),
            "{path}: {:#}",
            a.body
        );
    }
    let done = sim.wait(&op);
    assert!(started.elapsed() >= Duration::from_millis(3000), "{done:#}");
    assert!(done.get("error").is_none(), "{done:#}");
    // Other methods keep --op-ms.
    let t = std::time::Instant::now();
    delete_instance(&sim, "slow-1");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    // Back to --op-ms for images.insert; an unknown method is refused.
    let b = sim.admin_put("/behaviour", json!({"op_ms": {"images.insert": null}}));
    assert_eq!(b["op_ms"], json!({}));
    assert_eq!(
        sim.admin_put_status("/behaviour", json!({"op_ms": {"image.insert": 5}})),
        400
    );
    delete_image(&sim, "slow-img");
    sim.assert_nothing_left();
    sim.assert_schema_clean();
}

/// What google-cloud-compute-v1 4.1.0 (Rust) sends: `$alt=json` and
/// `$apiVersion` on every call (URL-encoded by reqwest as `%24`), bodies
/// with int64 fields as strings and enums as their names.
#[test]
fn gcp_the_rust_clients_system_parameters_and_json_are_accepted() {
    let sim = GcpSim::start();
    let sys = "%24alt=json&%24apiVersion=2026-09-01";
    let body = json!({
        "name": "rust-1",
        "machineType": format!("zones/{}/machineTypes/e2-small", sim.zone),
        "disks": [{
            "type": "PERSISTENT",
            "mode": "READ_WRITE",
            "boot": true,
            "autoDelete": true,
            "initializeParams": {
                "sourceImage": "https://compute.googleapis.com/compute/v1/projects/debian-cloud/global/images/family/debian-12",
                "diskSizeGb": "20",
                "labels": {"golden-managed": "true"},
            },
        }],
        "networkInterfaces": [{
            "network": "global/networks/default",
            "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT", "networkTier": "PREMIUM"}],
            "stackType": "IPV4_ONLY",
        }],
        "scheduling": {"onHostMaintenance": "MIGRATE", "provisioningModel": "STANDARD"},
        "metadata": {"items": [{"key": "serial-port-logging-enable", "value": "true"}]},
        "labels": {"golden-managed": "true"},
    });
    let op = sim.expect(
        200,
        "POST",
        &format!(
            "{}?{sys}&requestId=7d4f6c1a-2b3e-4f50-8a9b-0c1d2e3f4a5b",
            sim.zonal("instances")
        ),
        Some(body),
    );
    let o = sim.expect(200, "GET", &format!("{}?{sys}", GcpSim::op_path(&op)), None);
    assert!(o["id"].is_string(), "{o:#}");
    sim.wait(&op);
    let i = sim.expect(
        200,
        "GET",
        &format!("{}?{sys}", sim.zonal("instances/rust-1")),
        None,
    );
    assert_eq!(i["status"], "RUNNING");
    assert!(i["id"].is_string());
    let d = sim.expect(
        200,
        "GET",
        &format!("{}?{sys}", sim.zonal("disks/rust-1")),
        None,
    );
    assert_eq!(d["sizeGb"], "20");
    // Unencoded too, and on lists.
    sim.expect(
        200,
        "GET",
        &format!(
            "{}?$alt=json&$apiVersion=2026-09-01&maxResults=500",
            sim.zonal("instances")
        ),
        None,
    );
    sim.expect(
        200,
        "GET",
        &format!(
            "{}?{sys}&filter={}",
            sim.global("images"),
            pct(r#"labels.golden-family = "x""#)
        ),
        None,
    );
    let s = sim.expect(
        200,
        "GET",
        &format!(
            "{}?{sys}&port=1&start=0",
            sim.zonal("instances/rust-1/serialPort")
        ),
        None,
    );
    assert!(s["next"].is_string(), "{s:#}");
    let op = sim.expect(
        200,
        "DELETE",
        &format!("{}?{sys}", sim.zonal("instances/rust-1")),
        None,
    );
    let o = sim.expect(
        200,
        "POST",
        &format!("{}/wait?{sys}", GcpSim::op_path(&op)),
        None,
    );
    if o["status"] != "DONE" {
        sim.wait(&op);
    }
    sim.assert_nothing_left();
    sim.assert_schema_clean();
}

const UBUNTU: &str = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64";

/// golden's smoke-test script: markers on serial port 1.
const SMOKE_SH: &str = r#"#!/bin/sh
mkdir -p /run/golden-smoke
echo "GOLDEN-CHECK boot ok rc=0" > /dev/ttyS0
timeout 600 sh -c 'cloud-init status --wait --long' > /run/golden-smoke/out 2>&1 && echo "GOLDEN-CHECK cloud_init ok rc=0" > /run/golden-smoke/rc || echo "GOLDEN-CHECK cloud_init failed rc=$?" > /run/golden-smoke/rc
sed 's/^/GOLDEN-OUT cloud_init /' /run/golden-smoke/out > /dev/ttyS0
cat /run/golden-smoke/rc > /dev/ttyS0
echo "GOLDEN-SMOKE done" > /dev/ttyS0
"#;

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Reads serial port 1 as golden does (`start` = the last `next`) until
/// `marker` appears; all of it.
fn serial_until(sim: &GcpSim, name: &str, marker: &str) -> String {
    let mut text = String::new();
    let mut next = "0".to_owned();
    for _ in 0..200 {
        let out = sim.expect(
            200,
            "GET",
            &sim.zonal(&format!("instances/{name}/serialPort?port=1&start={next}")),
            None,
        );
        assert_eq!(out["start"], next.as_str(), "no output lost: {out:#}");
        text += out["contents"].as_str().unwrap();
        next = out["next"].as_str().unwrap().to_owned();
        if text.contains(marker) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{marker} never on {name}'s serial port:\n{text}");
}

/// The lines of `text` from `first` on that carry a golden marker.
fn markers(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("GOLDEN-")).collect()
}

/// The smoke test as golden runs it: cloud-init's runcmd starts the
/// script with `systemd-run --no-block` (on Ubuntu, which has cloud-init);
/// the script waits for cloud-init and reports on serial port 1. A failing
/// runcmd makes `cloud-init status` exit 1: `failed rc=1`. On Debian (no
/// cloud-init) the startup script starts it, and `cloud-init` is not found.
#[test]
fn gcp_smoke_script_started_by_systemd_run_reports_on_the_serial_port() {
    let sim = GcpSim::start();
    let user_data = |extra: Value| {
        let mut runcmd = vec![json!([
            "systemd-run",
            "--no-block",
            "--unit",
            "golden-smoke",
            "/var/lib/golden/smoke.sh"
        ])];
        if !extra.is_null() {
            runcmd.push(extra);
        }
        let doc = json!({
            "write_files": [{"path": "/var/lib/golden/smoke.sh", "encoding": "b64",
                             "content": b64(SMOKE_SH), "permissions": "0755"}],
            "runcmd": runcmd,
        });
        format!("#cloud-config\n{doc:#}\n")
    };
    create_instance(
        &sim,
        "smoke-ok",
        UBUNTU,
        json!([{"key": "user-data", "value": user_data(Value::Null)}]),
    );
    let text = serial_until(&sim, "smoke-ok", "GOLDEN-SMOKE done");
    assert_eq!(
        markers(&text),
        [
            "GOLDEN-CHECK boot ok rc=0",
            "GOLDEN-OUT cloud_init status: done",
            "GOLDEN-OUT cloud_init detail:",
            "GOLDEN-OUT cloud_init DataSourceGCE",
            "GOLDEN-CHECK cloud_init ok rc=0",
            "GOLDEN-SMOKE done",
        ],
        "{text}"
    );

    create_instance(
        &sim,
        "smoke-bad",
        UBUNTU,
        json!([{"key": "user-data", "value": user_data(json!("false"))}]),
    );
    let text = serial_until(&sim, "smoke-bad", "GOLDEN-SMOKE done");
    let m = markers(&text);
    assert_eq!(m[0], "GOLDEN-CHECK boot ok rc=0", "{text}");
    assert_eq!(m[1], "GOLDEN-OUT cloud_init status: error", "{text}");
    assert!(m.contains(&"GOLDEN-CHECK cloud_init failed rc=1"), "{text}");
    assert_eq!(m.last(), Some(&"GOLDEN-SMOKE done"), "{text}");

    let startup = format!(
        "#!/bin/sh\nmkdir -p /var/lib/golden\necho '{}' | base64 -d > /var/lib/golden/smoke.sh\nchmod 0755 /var/lib/golden/smoke.sh\nsystemd-run --no-block --unit golden-smoke /var/lib/golden/smoke.sh\n",
        b64(SMOKE_SH)
    );
    create_instance(
        &sim,
        "smoke-deb",
        DEBIAN,
        json!([{"key": "startup-script", "value": startup}]),
    );
    let text = serial_until(&sim, "smoke-deb", "GOLDEN-SMOKE done");
    assert_eq!(
        markers(&text),
        [
            "GOLDEN-CHECK boot ok rc=0",
            "GOLDEN-OUT cloud_init sh: 1: cloud-init: not found",
            "GOLDEN-CHECK cloud_init failed rc=127",
            "GOLDEN-SMOKE done",
        ],
        "{text}"
    );
    assert!(
        text.contains("startup-script: Running as unit: golden-smoke.service"),
        "{text}"
    );
    for name in ["smoke-ok", "smoke-bad", "smoke-deb"] {
        delete_instance(&sim, name);
    }
    sim.assert_nothing_left();
    sim.assert_schema_clean();
}

/// The build on Google's Debian image (no cloud-init): a startup script
/// writes the files with `echo '<base64>' | base64 -d > PATH`, runs
/// golden's provisioning script, powers off. GOLDEN-PROVISION on serial
/// port 1 while it runs, then TERMINATED; the image keeps what it did.
#[test]
fn gcp_build_startup_script_on_debian_provisions_reports_and_powers_off() {
    // Slow enough operations that the serial port is read before the
    // instance is TERMINATED (its output is refused then).
    let sim = GcpSim::start_with(&["--op-ms", "1000"]);
    let provision = golden::lifecycle::recipe::Provision {
        packages: vec![],
        files: [("/etc/motd".to_owned(), "built by golden\n".to_owned())].into(),
        commands: vec!["echo built > /etc/built".into()],
        services: vec!["nginx".into()],
    };
    let script = golden::lifecycle::cloudinit::provision_script(&provision);
    let startup = format!(
        "#!/bin/bash\nmkdir -p /var/lib/golden\necho '{}' | base64 -d > /etc/motd\necho '{}' | base64 -d > /var/lib/golden/provision.sh\nchmod 0755 /var/lib/golden/provision.sh\n/var/lib/golden/provision.sh\npoweroff\n",
        b64("built by golden\n"),
        b64(&script),
    );
    create_instance(
        &sim,
        "build-deb",
        DEBIAN,
        json!([{"key": "startup-script", "value": startup}]),
    );
    let text = serial_until(&sim, "build-deb", "GOLDEN-PROVISION rc=0 step=done");
    assert!(
        text.lines().any(|l| l == "GOLDEN-PROVISION rc=0 step=done"),
        "the marker on a line of its own: {text}"
    );
    assert!(
        text.contains("startup-script: golden: commands[0]"),
        "{text}"
    );
    sim.wait_status_for("build-deb", "TERMINATED", Duration::from_secs(10));
    let op = sim.expect(
        200,
        "POST",
        &sim.global("images"),
        Some(
            json!({"name": "deb-img", "sourceDisk": format!("zones/{}/disks/build-deb", sim.zone)}),
        ),
    );
    sim.wait(&op);
    delete_instance(&sim, "build-deb");
    let check = "#!/bin/sh\ncat /etc/built /etc/motd > /dev/ttyS0\ntest -e /var/lib/golden/provision.sh || echo 'GOLDEN-CHECK cleaned ok rc=0' > /dev/ttyS0\ncommand -v cloud-init > /dev/null || echo 'GOLDEN-CHECK no_cloud_init ok rc=0' > /dev/ttyS0\n";
    create_instance(
        &sim,
        "check-deb",
        &format!("projects/{}/global/images/deb-img", sim.project),
        json!([{"key": "startup-script", "value": check}]),
    );
    let text = serial_until(&sim, "check-deb", "no_cloud_init");
    assert!(
        text.contains("built\nbuilt by golden\nGOLDEN-CHECK cleaned ok rc=0\nGOLDEN-CHECK no_cloud_init ok rc=0\n"),
        "{text}"
    );

    // A failing step: its marker, then the power-off all the same.
    let bad =
        golden::lifecycle::cloudinit::provision_script(&golden::lifecycle::recipe::Provision {
            packages: vec![],
            files: Default::default(),
            commands: vec!["exit 3".into()],
            services: vec![],
        });
    let startup = format!(
        "#!/bin/bash\nmkdir -p /var/lib/golden\necho '{}' | base64 -d > /var/lib/golden/provision.sh\nchmod 0755 /var/lib/golden/provision.sh\n/var/lib/golden/provision.sh\npoweroff\n",
        b64(&bad)
    );
    create_instance(
        &sim,
        "build-bad",
        DEBIAN,
        json!([{"key": "startup-script", "value": startup}]),
    );
    let text = serial_until(&sim, "build-bad", "GOLDEN-PROVISION");
    assert!(
        text.lines()
            .any(|l| l == "GOLDEN-PROVISION rc=3 step=commands[0]"),
        "{text}"
    );
    sim.wait_status_for("build-bad", "TERMINATED", Duration::from_secs(10));
    for name in ["check-deb", "build-bad"] {
        delete_instance(&sim, name);
    }
    delete_image(&sim, "deb-img");
    sim.assert_nothing_left();
    sim.assert_schema_clean();
}
