//! GCP faults through terraform and the GCE simulator: 429 and 403
//! `rateLimitExceeded` (retried; an insert's retry carries the same
//! `requestId`, so GCE answers it with the first operation), an operation that ends
//! `DONE` with `QUOTA_EXCEEDED`, and an image insert that outlasts the
//! create timeout (the disk stays until it ends, then everything goes).
//! Also: a stale label fingerprint (412: re-read, retry), `wait` returning
//! before `DONE`, a failed smoke test (the family unchanged), and Ctrl-C
//! during the smoke test.
//! Each test asserts from the simulator's request log what the fault did
//! and what the client did next, and ends with nothing left.

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::gcp_sim::GcpSim;
use super::util::TfDir;

fn tf(sim: &GcpSim, extra: &str, body: &str) -> TfDir {
    let tf = TfDir::with_env(&sim.provider_env());
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

#[test]
fn gcp_a_503_after_an_insert_that_happened_makes_no_second_instance() {
    let sim = GcpSim::start();
    // Both inserts are done, then answered 503: a retry without the same
    // requestId would make a second build instance and a second image.
    sim.fault(json!({"kind": "http", "method": "POST", "path": "/instances$", "status": 503, "times": 1, "after": true}));
    sim.fault(json!({"kind": "http", "method": "POST", "path": "/global/images$", "status": 502, "times": 1, "after": true}));
    let tf = tf(&sim, "", &image("after-gcp", ""));
    let out = apply(&tf);
    assert!(out.status.success(), "{}", text(&out));
    let log = requests(&sim);
    for (what, path, status) in [
        ("instance", "/instances", 503),
        ("image", "/global/images", 502),
    ] {
        let inserts: Vec<&Value> = log.iter().filter(|r| is(r, "POST", path)).collect();
        assert_eq!(inserts[0]["status"], status, "{what}: {inserts:#?}");
        let rid = query_param(inserts[0], "requestId").expect("a requestId");
        assert_eq!(
            query_param(inserts[1], "requestId").as_deref(),
            Some(rid.as_str()),
            "{what}: the retry carries the same requestId"
        );
        assert_eq!(inserts[1]["status"], 200, "{what}");
    }
    // One insert operation each: the retries got the first ones back.
    let ops = sim.admin_get("/operations");
    for target in ["/instances/golden-build-", "/global/images/after-gcp-"] {
        let n = ops
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| {
                o["operationType"] == "insert"
                    && o["targetLink"].as_str().unwrap_or("").contains(target)
            })
            .count();
        assert_eq!(n, 1, "insert operations on {target}: {ops:#}");
    }
    let build_instances = log
        .iter()
        .filter(|r| is(r, "POST", "/instances") && r["status"] == 200)
        .filter_map(|r| r["request_body"]["name"].as_str())
        .filter(|n| n.starts_with("golden-build-"))
        .count();
    assert_eq!(build_instances, 1, "one build instance insert succeeded");
    let ours = sim
        .admin_get("/images")
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["labels"]["golden-family"] == "after-gcp")
        .count();
    assert_eq!(ours, 1, "one image");
    assert_clean(&sim);
}

fn family_latest(sim: &GcpSim, family: &str) -> Option<String> {
    let a = sim.call("GET", &sim.global(&format!("images/family/{family}")), None);
    (a.status == 200).then(|| a.body["name"].as_str().unwrap_or("").to_owned())
}

#[test]
fn gcp_a_stale_label_fingerprint_is_read_again_and_retried() {
    let sim = GcpSim::start();
    sim.fault(
        json!({"kind": "http", "method": "POST", "path": "/setLabels$", "status": 412, "times": 1}),
    );
    let tf = tf(&sim, "", &image("stale-gcp", ""));
    let out = apply(&tf);
    assert!(out.status.success(), "{}", text(&out));
    let log = requests(&sim);
    let first = log
        .iter()
        .position(|r| is(r, "POST", "/setLabels"))
        .expect("a setLabels");
    assert_eq!(log[first]["status"], 412);
    assert_eq!(
        log[first]["response_body"]["error"]["errors"][0]["reason"],
        "conditionNotMet"
    );
    // Read again (a fresh fingerprint), then sent again, accepted.
    let image_path = log[first]["path"]
        .as_str()
        .unwrap()
        .trim_end_matches("/setLabels")
        .to_owned();
    let reread = log[first + 1..]
        .iter()
        .position(|r| r["method"] == "GET" && r["path"] == image_path.as_str())
        .expect("the image read again after the 412")
        + first
        + 1;
    let retry = log[reread..]
        .iter()
        .find(|r| is(r, "POST", "/setLabels"))
        .expect("setLabels sent again");
    assert_eq!(retry["status"], 200);
    assert!(retry["request_body"]["labelFingerprint"].is_string());
    assert!(family_latest(&sim, "stale-gcp").is_some(), "published");
    assert_clean(&sim);
}

#[test]
fn gcp_waits_that_return_before_done_are_repeated() {
    let sim = GcpSim::start();
    // GCE's wait returns after at most two minutes, maybe earlier; here
    // after 300 ms while the image takes 3 s.
    sim.admin_put(
        "/behaviour",
        json!({"wait_cap_ms": 300, "op_ms": {"images.insert": 3000}}),
    );
    let tf = tf(&sim, "", &image("wait-gcp", ""));
    let out = apply(&tf);
    assert!(out.status.success(), "{}", text(&out));
    let log = requests(&sim);
    let waits: Vec<&Value> = log
        .iter()
        .filter(|r| {
            r["method"] == "POST"
                && r["path"]
                    .as_str()
                    .unwrap_or("")
                    .contains("/global/operations/")
                && r["path"].as_str().unwrap_or("").ends_with("/wait")
        })
        .collect();
    let early = waits
        .iter()
        .filter(|r| r["response_body"]["status"] != "DONE")
        .count();
    assert!(
        early >= 3,
        "waits that returned before DONE: {early} of {}",
        waits.len()
    );
    assert!(waits.iter().any(|r| r["response_body"]["status"] == "DONE"));
    assert!(family_latest(&sim, "wait-gcp").is_some(), "published");
    assert_clean(&sim);
}

#[test]
fn gcp_a_failed_smoke_test_leaves_the_family_unchanged() {
    let sim = GcpSim::start();
    let tf = tf(&sim, "", &image("smoke-gcp", ""));
    let out = apply(&tf);
    assert!(out.status.success(), "{}", text(&out));
    let before = family_latest(&sim, "smoke-gcp").expect("the first image is in the family");
    let failing = image("smoke-gcp", "").replace(
        "checks  = [\"boot\", \"ssh\"]",
        "checks  = [\"boot\", \"ssh\"]\n    commands = [\"echo boom; exit 1\"]",
    );
    tf.write_with_provider(
        &format!(
            "provider \"golden\" {{\n  gcp {{\n    api_endpoint = \"{}\"\n  }}\n}}\n",
            sim.endpoint
        ),
        &failing,
    );
    let out = apply(&tf);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("boom"), "{t}");
    assert_eq!(
        family_latest(&sim, "smoke-gcp"),
        Some(before.clone()),
        "getFromFamily unchanged"
    );
    let failed: Vec<Value> = sim
        .admin_get("/images")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i["labels"]["golden-status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(
        failed[0]["family"].is_null() || failed[0]["family"] == "",
        "{failed:#?}"
    );
    assert_clean(&sim);
}

#[test]
fn gcp_ctrl_c_during_the_smoke_test_leaves_nothing() {
    let sim = GcpSim::start();
    // Serial reads fail for a while (retried with backoff): the smoke test
    // is still running when Ctrl-C comes.
    sim.fault(
        json!({"kind": "http", "method": "GET", "path": "/serialPort$", "status": 503, "times": 6}),
    );
    let tf = tf(&sim, "", &image("ctrlc-gcp", ""));
    let mut cmd = tf.command(&["apply", "-auto-approve", "-no-color", "-input=false"]);
    cmd.process_group(0);
    let mut child = cmd.spawn().unwrap();
    let pgid = child.id() as i32;
    let started = Instant::now();
    let smoke_running = || {
        sim.admin_get("/instances")
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .any(|i| {
                i["name"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("golden-smoke-")
                    && i["status"] == "RUNNING"
            })
    };
    while !smoke_running() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the smoke-test instance never ran"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "terraform exited before the smoke test"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling the process group we created.
    unsafe { libc::kill(-pgid, libc::SIGINT) };
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "terraform did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "an interrupted apply must fail");
    std::thread::sleep(Duration::from_secs(2));
    let log = requests(&sim);
    let deleted = log.iter().any(|r| {
        r["method"] == "DELETE"
            && r["path"]
                .as_str()
                .unwrap_or("")
                .contains("/instances/golden-smoke-")
            && r["status"] == 200
    });
    assert!(deleted, "the smoke-test instance was not deleted");
    assert_clean(&sim);
    let left = sim
        .admin_get("/images")
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["labels"]["golden-family"] == "ctrlc-gcp")
        .count();
    assert_eq!(left, 0, "the interrupted candidate was discarded");
    assert_eq!(family_latest(&sim, "ctrlc-gcp"), None);
}

#[test]
fn gcp_an_inline_key_reaches_neither_trace_logs_nor_state() {
    let sim = GcpSim::start();
    let pem = sim.key.json["private_key"].as_str().unwrap().to_owned();
    let piece: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
        .chars()
        .skip(64)
        .take(48)
        .collect();
    let tf = TfDir::with_env(&[
        ("GOOGLE_PROJECT".into(), sim.project.clone()),
        ("GOOGLE_ZONE".into(), sim.zone.clone()),
        ("TF_LOG".into(), "trace".into()),
    ]);
    // The key's JSON itself in the block (sensitive), as `file(...)` gives it.
    tf.write_with_provider(
        &format!(
            "provider \"golden\" {{\n  gcp {{\n    api_endpoint = \"{}\"\n    credentials  = file(\"{}\")\n  }}\n}}\n",
            sim.endpoint, sim.credentials
        ),
        &image("inline-gcp", ""),
    );
    let out = apply(&tf);
    let t = text(&out);
    assert!(
        out.status.success(),
        "{}",
        &t[t.len().saturating_sub(4000)..]
    );
    assert!(
        t.contains("gcp platform configured"),
        "the trace holds golden's own logs"
    );
    assert!(
        !t.contains(&piece),
        "the private key reached the trace output"
    );
    let state = std::fs::read_to_string(tf.path().join("terraform.tfstate")).unwrap();
    assert!(!state.contains(&piece), "the private key reached the state");
    assert!(
        !state.contains("private_key"),
        "the key file reached the state"
    );
    assert_clean(&sim);
}

#[test]
fn gcp_a_provisioning_that_never_reports_is_stopped_at_power_off_timeout() {
    let sim = GcpSim::start();
    sim.admin_put("/behaviour", json!({"hung_guests": true}));
    let tf = tf(
        &sim,
        "    power_off_timeout = \"5s\"\n",
        &image("hung-gcp", ""),
    );
    let out = apply(&tf);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    let flat = t.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("did not report a result within power_off_timeout (5s)"),
        "{t}"
    );
    let log = requests(&sim);
    let stop = log
        .iter()
        .position(|r| {
            r["method"] == "POST"
                && r["path"]
                    .as_str()
                    .unwrap_or("")
                    .contains("/instances/golden-build-")
                && r["path"].as_str().unwrap_or("").ends_with("/stop")
        })
        .expect("the build instance was stopped");
    assert!(
        log[stop..].iter().any(|r| r["method"] == "DELETE"
            && r["path"]
                .as_str()
                .unwrap_or("")
                .contains("/instances/golden-build-")
            && r["status"] == 200),
        "then deleted"
    );
    assert!(
        !log.iter().any(|r| is(r, "POST", "/global/images")),
        "no image is made from an unprovisioned disk"
    );
    assert_clean(&sim);
}

/// Without `credentials` and `GOOGLE_CREDENTIALS`, golden takes
/// application-default credentials: here `GOOGLE_APPLICATION_CREDENTIALS`
/// naming the simulator's key file, which google-cloud-auth loads itself.
#[test]
fn gcp_application_default_credentials_are_used_without_a_key() {
    let sim = GcpSim::start();
    let tf = TfDir::with_env(&[
        ("GOOGLE_PROJECT".into(), sim.project.clone()),
        ("GOOGLE_ZONE".into(), sim.zone.clone()),
        (
            "GOOGLE_APPLICATION_CREDENTIALS".into(),
            sim.credentials.clone(),
        ),
    ]);
    tf.write_with_provider(
        &format!(
            "provider \"golden\" {{\n  gcp {{\n    api_endpoint = \"{}\"\n  }}\n}}\n",
            sim.endpoint
        ),
        &image("adc-gcp", ""),
    );
    let out = apply(&tf);
    assert!(out.status.success(), "{}", text(&out));
    let log = requests(&sim);
    assert!(
        !log.is_empty() && log.iter().all(|r| r["auth_ok"] == true),
        "every call authenticated"
    );
    assert!(family_latest(&sim, "adc-gcp").is_some(), "published");
    assert_clean(&sim);
}

/// An instance in the simulator's project, as another run (or a person)
/// left it.
fn plant_instance(sim: &GcpSim, name: &str, labels: Value) {
    let body = json!({
        "name": name,
        "machineType": format!("zones/{}/machineTypes/e2-small", sim.zone),
        "disks": [{"boot": true, "autoDelete": true, "initializeParams": {
            "sourceImage": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
            "labels": labels.clone()}}],
        "networkInterfaces": [{"network": "global/networks/default"}],
        "labels": labels,
    });
    let op = sim.expect(200, "POST", &sim.zonal("instances"), Some(body));
    sim.wait(&op);
}

/// What runs that died without their ledger (another machine) left: the
/// next run sweeps golden's instances, disks and candidates past their
/// `golden-expires`, and nothing else.
#[test]
fn gcp_the_sweep_takes_only_golden_leftovers_past_their_expiry() {
    let sim = GcpSim::start();
    let past = "20200101t000000z";
    let future = "20990101t000000z";
    let managed = |expires: &str| json!({"golden-managed": "true", "golden-role": "build", "golden-run": "dead-run", "golden-expires": expires});
    plant_instance(&sim, "golden-build-dead", managed(past));
    plant_instance(&sim, "golden-build-live", managed(future));
    plant_instance(&sim, "someones-web-1", json!({"golden-expires": past}));
    // A stale candidate of another family, and a validated image whose
    // labels still carry an old expiry: only the candidate goes.
    let golden = |status: &str, name: &str| {
        json!({"name": name, "labels": {
            "golden-family": "old-fam", "golden-status": status, "golden-build-date": "20200101",
            "golden-build-number": name.rsplit('-').next().unwrap(), "golden-builder-version": "0-1-0",
            "golden-recipe-hash": "0123456789abcdef", "golden-expires": past}})
    };
    sim.admin_post(
        "/images",
        json!([
            golden("candidate", "old-fam-20200101-001"),
            golden("validated", "old-fam-20200101-002")
        ]),
    );

    let tf = tf(&sim, "", &image("sweep-gcp", ""));
    let out = apply(&tf);
    assert!(out.status.success(), "{}", text(&out));

    let names = |what: &str| -> Vec<String> {
        sim.admin_get(&format!("/{what}"))
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|x| x["name"].as_str().map(str::to_owned))
            .collect()
    };
    let instances = names("instances");
    assert!(
        !instances.contains(&"golden-build-dead".to_owned()),
        "{instances:?}"
    );
    assert!(
        instances.contains(&"golden-build-live".to_owned()),
        "a live run's instance stays: {instances:?}"
    );
    assert!(
        instances.contains(&"someones-web-1".to_owned()),
        "not golden's: {instances:?}"
    );
    let images = names("images");
    assert!(
        !images.contains(&"old-fam-20200101-001".to_owned()),
        "{images:?}"
    );
    assert!(
        images.contains(&"old-fam-20200101-002".to_owned()),
        "a validated image is never swept: {images:?}"
    );
    let log = requests(&sim);
    assert!(log.iter().any(|r| r["method"] == "GET"
        && r["path"].as_str().unwrap_or("").ends_with("/instances")
        && r["query"].as_str().unwrap_or("").contains("golden-managed")));
    sim.assert_schema_clean();
}
