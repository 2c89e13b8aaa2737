//! Proxmox faults through terraform and the simulator: a guest agent that
//! never answers, a task that fails mid-clone, 5xx and 401 answers, a storage
//! without linked clones, and bad provider settings. Every one must leave no
//! VM behind and say clearly what happened, and every fault test proves from
//! the simulator's request log that the fault fired and what the client did
//! next. (Ctrl-C and the token's absence from logs and state are steps of the
//! conformance scenario, `conformance/`.)

use std::time::{Duration, Instant};

use serde_json::json;

use super::sim::{Call, Sim};
use super::util::{resource, today, TfDir};

fn image(family: &str) -> String {
    format!(
        r#"
resource "golden_image" "x" {{
  platform = "proxmox"
  family   = "{family}"
  source {{ vm_id = 9000 }}
  provision {{ commands = ["true"] }}
  smoke_test {{ timeout = "1m" }}
}}
"#
    )
}

/// Golden VMs other than published images: candidates, failed ones, smoke clones.
fn leftovers(sim: &Sim) -> Vec<(String, String)> {
    sim.golden_vms()
        .into_iter()
        .filter(|(_, t)| !t.contains("golden-validated"))
        .collect()
}

fn apply(tf: &TfDir) -> std::process::Output {
    tf.run(&["apply", "-auto-approve", "-no-color", "-input=false"])
}

fn statuses(calls: &[Call]) -> Vec<u16> {
    calls.iter().map(|c| c.status).collect()
}

/// Panics if any request follows an identical one (method and path) that was
/// answered `status`: a retry of a call that must not be retried.
fn assert_not_retried(calls: &[Call], status: u16) {
    for w in calls.windows(2) {
        assert!(
            !(w[0].status == status && w[1].method == w[0].method && w[1].path == w[0].path),
            "{} {} answered {status} was sent again: {calls:?}",
            w[0].method,
            w[0].path
        );
    }
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn agent_that_never_answers_fails_the_build_in_time() {
    let sim = Sim::start();
    sim.fault(json!({"kind": "agent", "vmid": null, "mode": "never"}));
    let tf = TfDir::new();
    let store = tf.path().join("store");
    tf.write_with_provider(
        &sim.provider_block(&store, "    agent_timeout = \"6s\"\n"),
        &image("no-agent"),
    );
    let started = Instant::now();
    let out = apply(&tf);
    let took = started.elapsed();
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(
        msg.contains("Unable to Build Image")
            && msg.contains("guest agent")
            && msg.contains("did not answer within 6s"),
        "{msg}"
    );
    assert!(
        took < Duration::from_secs(60),
        "the step must fail within the agent timeout, took {took:?}"
    );
    // The fault fired: every ping of the build VM's agent was answered 500
    // ("not running"); the client kept asking until its timeout, then
    // destroyed the build VM.
    let pings = sim.calls_to("POST", "/agent/ping");
    assert!(pings.len() >= 2, "the agent was not polled: {pings:?}");
    assert!(pings.iter().all(|c| c.status == 500), "{pings:?}");
    let vm_path = pings[0].path.trim_end_matches("/agent/ping").to_owned();
    let calls = sim.calls();
    let last_ping = calls
        .iter()
        .rposition(|c| c.path.ends_with("/agent/ping"))
        .unwrap();
    assert!(
        calls[last_ping..]
            .iter()
            .any(|c| c.method == "DELETE" && c.path == vm_path && c.status == 200),
        "the build VM {vm_path} was not destroyed after the agent timed out: {calls:?}"
    );
    assert!(
        leftovers(&sim).is_empty(),
        "build VM left: {:?}",
        leftovers(&sim)
    );
    assert!(tf.ledgers().is_empty(), "{:?}", tf.ledgers());
    sim.assert_schema_clean();
}

#[test]
fn clone_task_failure_leaves_nothing_and_the_next_apply_builds() {
    let sim = Sim::start();
    sim.fault(json!({"kind": "task", "task_type": "qmclone", "message": "storage 'local-lvm' does not have enough free space", "times": 1}));
    let tf = TfDir::new();
    let store = tf.path().join("store");
    tf.write_with_provider(&sim.provider_block(&store, ""), &image("clone-fails"));
    let out = apply(&tf);
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(
        msg.contains("PVE task failed") && msg.contains("not have enough free space"),
        "{msg}"
    );
    // The fault fired (the rule is used up) on the one clone PVE accepted;
    // a failed task is not a transient error: the clone was not sent again.
    assert_eq!(sim.faults_left(), 0, "the task fault never fired");
    let clones = sim.calls_to("POST", "/clone");
    assert_eq!(
        statuses(&clones),
        [200],
        "one clone, not retried: {clones:?}"
    );
    assert!(leftovers(&sim).is_empty(), "{:?}", leftovers(&sim));
    // The fault was one-off: the next apply builds -001 (the failed attempt
    // did not burn a build number on a VM that no longer exists).
    sim.clear_requests();
    tf.apply();
    assert_eq!(statuses(&sim.calls_to("POST", "/clone"))[0], 200);
    let x = resource(&tf.state_json(), "golden_image.x").clone();
    assert_eq!(x["name"], format!("clone-fails-{}-001", today()));
    assert!(leftovers(&sim).is_empty());
    assert!(tf.ledgers().is_empty(), "{:?}", tf.ledgers());
    sim.assert_schema_clean();
}

#[test]
fn transient_5xx_are_retried_and_401_is_reported() {
    let sim = Sim::start();
    let tf = TfDir::new();
    let store = tf.path().join("store");
    tf.write_with_provider(&sim.provider_block(&store, ""), &image("flaky"));
    // A listing that fails twice and a clone PVE refused with 503 (never
    // processed, so safe to send again) do not fail the apply.
    sim.fault(json!({"kind": "http", "method": "GET", "path": "/cluster/resources", "status": 500, "message": "", "times": 2}));
    sim.fault(json!({"kind": "http", "method": "POST", "path": "/clone", "status": 503, "message": "Service Unavailable", "times": 1}));
    tf.apply();
    assert_eq!(
        resource(&tf.state_json(), "golden_image.x")["validated"],
        true
    );
    assert_eq!(sim.faults_left(), 0, "a fault never fired");
    // The listing (an idempotent GET) was answered 500 twice and sent again
    // each time until it got its answer.
    let listings = sim.calls_to("GET", "/cluster/resources");
    assert!(listings.len() >= 3, "{listings:?}");
    assert_eq!(
        statuses(&listings[..3]),
        [500, 500, 200],
        "the 500s fired and the GET was retried: {listings:?}"
    );
    let calls = sim.calls();
    let first = calls
        .iter()
        .position(|c| c.status == 500)
        .expect("a 500 was served");
    assert_eq!(
        calls[first].path, "/cluster/resources",
        "the first 500 was the listing's"
    );
    // The clone PVE refused with 503 (not processed) was sent again, to the
    // same path, and then accepted.
    let all_clones = sim.calls_to("POST", "/clone");
    // The source template's clones (the smoke test's clone of the candidate
    // comes later, from another VM).
    let clones: Vec<Call> = all_clones
        .iter()
        .filter(|c| c.path == all_clones[0].path)
        .cloned()
        .collect();
    assert_eq!(statuses(&clones), [503, 200], "{all_clones:?}");
    let refused = calls.iter().position(|c| c.status == 503).unwrap();
    let next_clone = calls[refused + 1..]
        .iter()
        .find(|c| c.method == "POST")
        .unwrap();
    assert_eq!(
        next_clone, &clones[1],
        "the write after the 503 is the same clone again"
    );

    // A 500 with a real message on a write is not retried: it fails clearly.
    sim.fault(json!({"kind": "http", "method": "POST", "path": "/clone", "status": 500, "message": "unable to create VM 900002 - permission denied", "times": 1}));
    tf.write_with_provider(
        &sim.provider_block(&store, ""),
        &image("flaky").replace("[\"true\"]", "[\"true\", \"true\"]"),
    );
    sim.clear_requests();
    let out = apply(&tf);
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(msg.contains("permission denied"), "{msg}");
    assert_eq!(sim.faults_left(), 0, "the 500 never fired");
    let clones = sim.calls_to("POST", "/clone");
    assert_eq!(
        statuses(&clones),
        [500],
        "a 500 on a write is served once and not retried: {clones:?}"
    );
    assert!(leftovers(&sim).is_empty(), "{:?}", leftovers(&sim));

    // An expired or revoked token: every call answers 401.
    sim.fault(json!({"kind": "http", "method": null, "path": "", "status": 401, "message": "Authentication failed!"}));
    sim.clear_requests();
    let out = tf.run(&["plan", "-no-color", "-input=false"]);
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(
        msg.contains("401") && msg.contains("Authentication failed!"),
        "{msg}"
    );
    // The fault answered (the token itself was fine), and a 401 is final:
    // no call was sent again.
    let calls = sim.calls();
    assert!(
        !calls.is_empty() && calls.iter().all(|c| c.status == 401 && c.auth_ok),
        "{calls:?}"
    );
    assert_not_retried(&calls, 401);
    assert!(
        !msg.contains(&sim.secret()),
        "the token leaked into a diagnostic"
    );
    sim.clear_faults();

    // A wrong token, the real way: the simulator's own auth says no.
    let wrong = format!("{}=not-the-secret", sim.token.split_once('=').unwrap().0);
    let provider = sim.provider_block(&store, "").replace(&sim.token, &wrong);
    tf.write_with_provider(&provider, &image("flaky"));
    sim.clear_requests();
    let out = tf.run(&["plan", "-no-color", "-input=false"]);
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(msg.contains("HTTP 401 Authentication failed!"), "{msg}");
    // The simulator's own auth refused the token, once per call.
    let calls = sim.calls();
    assert!(
        !calls.is_empty() && calls.iter().all(|c| c.status == 401 && !c.auth_ok),
        "{calls:?}"
    );
    assert_not_retried(&calls, 401);
    assert!(
        !msg.contains("not-the-secret"),
        "the token leaked into a diagnostic"
    );
    sim.assert_schema_clean();
}

#[test]
fn bad_proxmox_settings_fail_at_plan_naming_the_attribute() {
    let tf = TfDir::new();
    let store = tf.path().join("store");
    // (provider block, source, expected words, the config text the pointer names)
    let cases: [(&str, &str, &[&str], &str); 6] = [
        (
            "proxmox {\n endpoint = \"https://pve:8006\"\n api_token = \"root@pam-s3cr3t-value\"\n }",
            "source { vm_id = 9000 }",
            &["Invalid Proxmox API Token", "api_token"],
            "api_token =",
        ),
        (
            "proxmox {\n endpoint = \"pve.example.com\"\n api_token = \"root@pam!t=x\"\n }",
            "source { vm_id = 9000 }",
            &["Invalid Proxmox Endpoint", "endpoint"],
            "endpoint =",
        ),
        (
            "proxmox {\n endpoint = \"https://pve:8006\"\n api_token = \"root@pam!t=x\"\n vmid_range = \"99-5\"\n }",
            "source { vm_id = 9000 }",
            &["Invalid vmid_range", "vmid_range"],
            "vmid_range =",
        ),
        (
            "proxmox {\n endpoint = \"https://pve:8006\"\n api_token = \"root@pam!t=x\"\n }",
            "source { path = \"/base.qcow2\" }",
            &["Unsupported Source", "source.path does not apply to platform \"proxmox\""],
            "source { path",
        ),
        (
            "proxmox {\n endpoint = \"https://pve:8006\"\n api_token = \"root@pam!t=x\"\n }",
            "source { vm_id = 12 }",
            &["Invalid source.vm_id", "vm_id"],
            "vm_id = 12",
        ),
        (
            "",
            "source { vm_id = 9000 }",
            &["Platform Not Configured", "platform"],
            "platform =",
        ),
    ];
    for (block, source, expect, at) in cases {
        let provider = format!(
            "provider \"golden\" {{\n  local {{ store_dir = \"{}\" }}\n  {block}\n}}\n",
            store.display()
        );
        let body = format!("resource \"golden_image\" \"x\" {{\n  platform = \"proxmox\"\n  family = \"bad\"\n  {source}\n}}\n");
        tf.write_with_provider(&provider, &body);
        let out = tf
            .command(&["plan", "-no-color", "-input=false"])
            .env_remove("PROXMOX_VE_ENDPOINT")
            .env_remove("PROXMOX_VE_API_TOKEN")
            .output()
            .unwrap();
        // terraform's pointer names the line of the offending attribute.
        let main = std::fs::read_to_string(tf.path().join("main.tf")).unwrap();
        let n = main
            .lines()
            .position(|l| l.contains(at))
            .unwrap_or_else(|| panic!("{at:?} is not in main.tf"))
            + 1;
        assert!(
            text(&out).contains(&format!("on main.tf line {n},")),
            "{block} {source}: the diagnostic must point at line {n} ({at:?}):\n{}",
            text(&out)
        );
        // Diagnostics wrap long lines; compare with whitespace collapsed.
        let msg = text(&out).split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(!out.status.success(), "{block} {source}: plan succeeded");
        for want in expect {
            assert!(
                msg.contains(want),
                "{block} {source}: lacks {want:?}:\n{msg}"
            );
        }
        // terraform quotes the config line it points at; golden's own text
        // must not repeat the value.
        assert!(
            msg.matches("s3cr3t").count() <= 1,
            "a malformed token was echoed:\n{msg}"
        );
    }
}

#[test]
fn storage_without_linked_clones_gets_a_full_clone_for_the_smoke_test() {
    let sim = Sim::start();
    // The candidate is VM 900000; its template refuses a linked clone, as
    // thick LVM or raw files on a directory storage do.
    sim.fault(json!({"kind": "http", "method": "POST", "path": "/qemu/900000/clone", "status": 500,
                     "message": "Linked clone feature is not supported for drive 'scsi0'", "times": 1}));
    let tf = TfDir::new();
    let store = tf.path().join("store");
    tf.write_with_provider(&sim.provider_block(&store, ""), &image("thick-lvm"));
    tf.apply();
    assert_eq!(
        resource(&tf.state_json(), "golden_image.x")["validated"],
        true
    );
    let clones: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| {
            r["method"] == "POST" && r["path"].as_str().unwrap_or("").ends_with("/900000/clone")
        })
        .map(|r| r["status"].to_string())
        .collect();
    assert_eq!(
        clones,
        ["500", "200"],
        "one refused linked clone, then a full clone"
    );
    assert_eq!(sim.faults_left(), 0, "the refusal never fired");
    assert!(leftovers(&sim).is_empty(), "{:?}", leftovers(&sim));
    sim.assert_schema_clean();
}

#[test]
fn big_and_non_ascii_files_reach_the_guest_intact() {
    let sim = Sim::start();
    let tf = TfDir::new();
    let store = tf.path().join("store");
    // 8000 lines, about 80 KiB: more than one agent/file-write can carry.
    let big: String = (0..8000).map(|i| format!("line-{i}\\n")).collect();
    let body = format!(
        r#"
resource "golden_image" "x" {{
  platform = "proxmox"
  family   = "files"
  source {{ vm_id = 9000 }}
  provision {{
    files = {{
      "/etc/big"  = "{big}"
      "/etc/motd" = "grün ✓ — golden"
    }}
  }}
  smoke_test {{
    commands = ["grep -qx line-0 /etc/big", "grep -qx line-7999 /etc/big", "grep -qx 'grün ✓ — golden' /etc/motd"]
  }}
}}
"#
    );
    tf.write_with_provider(&sim.provider_block(&store, ""), &body);
    tf.apply();
    let x = resource(&tf.state_json(), "golden_image.x").clone();
    assert_eq!(x["validated"], true, "{x}");
    assert!(leftovers(&sim).is_empty(), "{:?}", leftovers(&sim));
    sim.assert_schema_clean();
}
