//! GCP faults through terraform and the GCE simulator: 429 and 403
//! `rateLimitExceeded` (retried; an insert's retry carries the same
//! `requestId`, so GCE answers it with the first operation), an operation that ends
//! `DONE` with `QUOTA_EXCEEDED`, and an image insert that outlasts the
//! create timeout (the disk stays until it ends, then everything goes).
//! Each test asserts from the simulator's request log what the fault did
//! and what the client did next, and ends with nothing left.

use serde_json::{json, Value};

use super::gcp_sim::GcpSim;
use super::util::TfDir;

fn tf(sim: &GcpSim, extra: &str, body: &str) -> TfDir {
    let tf = TfDir::with_env(&[
        ("GOOGLE_PROJECT".into(), sim.project.clone()),
        ("GOOGLE_ZONE".into(), sim.zone.clone()),
        ("GOOGLE_CREDENTIALS".into(), sim.credentials.clone()),
    ]);
    tf.write_with_provider(
        &format!(
            "provider \"golden\" {{\n  gcp {{\n    api_endpoint = \"{}\"\n{extra}  }}\n}}\n",
            sim.endpoint
        ),
        body,
    );
    tf
}

fn image(family: &str, timeouts: &str) -> String {
    format!(
        r#"
resource "golden_image" "x" {{
  platform = "gcp"
  family   = "{family}"
  source {{ image = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64" }}
  provision {{ commands = ["true"] }}
  smoke_test {{
    checks  = ["boot", "ssh"]
    timeout = "2m"
  }}
  {timeouts}
}}
"#
    )
}

fn apply(tf: &TfDir) -> std::process::Output {
    tf.run(&["apply", "-auto-approve", "-no-color", "-input=false"])
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn requests(sim: &GcpSim) -> Vec<Value> {
    sim.admin_get("/requests")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn query_param(r: &Value, key: &str) -> Option<String> {
    r["query"].as_str().unwrap_or("").split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_owned())
    })
}

fn is(r: &Value, method: &str, path_end: &str) -> bool {
    r["method"] == method && r["path"].as_str().unwrap_or("").ends_with(path_end)
}

/// No instance or disk, and no candidate image.
fn assert_clean(sim: &GcpSim) {
    for what in ["instances", "disks"] {
        let v = sim.admin_get(&format!("/{what}"));
        assert_eq!(v, json!([]), "{what} left: {v:#}");
    }
    let candidates: Vec<Value> = sim
        .admin_get("/images")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i["labels"]["golden-status"] == "candidate")
        .collect();
    assert!(candidates.is_empty(), "candidates left: {candidates:#?}");
    sim.assert_schema_clean();
}

#[test]
fn gcp_a_429_and_a_403_rate_limit_are_retried_with_the_same_request_id() {
    let sim = GcpSim::start();
    sim.fault(json!({"kind": "http", "method": "GET", "path": "/global/images$", "status": 429, "times": 1}));
    sim.fault(json!({"kind": "http", "method": "POST", "path": "/global/images$", "status": 403, "times": 1}));
    let tf = tf(&sim, "", &image("faults-gcp", ""));
    let out = apply(&tf);
    assert!(out.status.success(), "{}", text(&out));

    let log = requests(&sim);
    let build_instances: Vec<String> = log
        .iter()
        .filter(|r| is(r, "POST", "/instances") && r["status"] == 200)
        .filter_map(|r| r["request_body"]["name"].as_str().map(str::to_owned))
        .filter(|n| n.starts_with("golden-build-"))
        .collect();
    assert_eq!(build_instances.len(), 1, "{build_instances:?}");
    // 429 on a list and 403 rateLimitExceeded on the image insert were
    // retried, not reported.
    let lists: Vec<&Value> = log
        .iter()
        .filter(|r| is(r, "GET", "/global/images"))
        .collect();
    let limited = lists
        .iter()
        .position(|r| r["status"] == 429)
        .expect("the 429 fired on an images.list");
    assert_eq!(lists[limited + 1]["status"], 200, "{lists:#?}");
    let image_inserts: Vec<&Value> = log
        .iter()
        .filter(|r| is(r, "POST", "/global/images"))
        .collect();
    assert_eq!(image_inserts[0]["status"], 403);
    assert_eq!(
        image_inserts[0]["response_body"]["error"]["errors"][0]["reason"],
        "rateLimitExceeded"
    );
    assert_eq!(image_inserts[1]["status"], 200);
    assert_eq!(
        query_param(image_inserts[0], "requestId"),
        query_param(image_inserts[1], "requestId")
    );
    let images = sim.admin_get("/images");
    let ours: Vec<&Value> = images
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["labels"]["golden-family"] == "faults-gcp")
        .collect();
    assert_eq!(ours.len(), 1, "{ours:#?}");
    assert_eq!(ours[0]["family"], "faults-gcp");
    assert_clean(&sim);
}

#[test]
fn gcp_an_operation_ending_in_quota_exceeded_fails_the_build_and_leaves_nothing() {
    let sim = GcpSim::start();
    sim.fault(json!({"kind": "operation", "operation_type": "insert", "target": "global/images/", "code": "QUOTA_EXCEEDED", "message": "Quota 'IMAGES' exceeded. Limit: 100.0 globally.", "http_status": 403, "times": 1}));
    let tf = tf(&sim, "", &image("quota-gcp", ""));
    let out = apply(&tf);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("QUOTA_EXCEEDED") && t.contains("IMAGES"), "{t}");
    // The operation was read to its end (DONE with the error), then the
    // build instance went.
    let log = requests(&sim);
    let last_insert = log
        .iter()
        .rposition(|r| is(r, "POST", "/global/images"))
        .expect("the image insert");
    assert!(
        log[last_insert..].iter().any(|r| r["method"] == "DELETE"
            && r["path"]
                .as_str()
                .unwrap_or("")
                .contains("/instances/golden-build-")),
        "the build instance was not deleted after the failed operation"
    );
    assert_clean(&sim);
    let none: Vec<Value> = sim
        .admin_get("/images")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i["labels"]["golden-family"] == "quota-gcp")
        .collect();
    assert!(none.is_empty(), "{none:#?}");
}

#[test]
fn gcp_an_image_insert_outlasting_the_timeout_keeps_the_disk_until_done_then_cleans_up() {
    let sim = GcpSim::start();
    sim.admin_put("/behaviour", json!({"op_ms": {"images.insert": 25000}}));
    let tf = tf(
        &sim,
        "",
        &image("slow-gcp", "timeouts {\n    create = \"20s\"\n  }"),
    );
    let out = apply(&tf);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("timed out") || t.contains("timeout"), "{t}");
    let log = requests(&sim);
    // The instance delete was refused while the image was being made from
    // its disk, and tried again until it went.
    let deletes: Vec<&Value> = log
        .iter()
        .filter(|r| {
            r["method"] == "DELETE"
                && r["path"]
                    .as_str()
                    .unwrap_or("")
                    .contains("/instances/golden-build-")
        })
        .collect();
    assert!(
        deletes.iter().any(|r| r["status"] == 400
            && r["response_body"]["error"]["errors"][0]["reason"]
                == "resourceInUseByAnotherResource"),
        "{deletes:#?}"
    );
    assert_eq!(deletes.last().unwrap()["status"], 200, "{deletes:#?}");
    // Then the candidate the insert made was discarded.
    assert!(
        log.iter().any(|r| r["method"] == "DELETE"
            && r["path"]
                .as_str()
                .unwrap_or("")
                .contains("/global/images/slow-gcp-")),
        "the candidate image was not deleted"
    );
    assert_clean(&sim);
    assert_eq!(
        sim.admin_get("/images")
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["labels"]["golden-family"] == "slow-gcp")
            .count(),
        0
    );
}
