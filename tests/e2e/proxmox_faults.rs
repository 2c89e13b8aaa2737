//! Proxmox faults through terraform and the simulator: a guest agent that
//! never answers, a task that fails mid-clone, 5xx and 401 answers, Ctrl-C
//! mid-build, the token kept out of logs and state, and bad provider settings.
//! Every one must leave no VM behind and say clearly what happened.

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use serde_json::json;

use super::sim::Sim;
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
    assert!(leftovers(&sim).is_empty(), "{:?}", leftovers(&sim));
    // The fault was one-off: the next apply builds -001 (the failed attempt
    // did not burn a build number on a VM that no longer exists).
    tf.apply();
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

    // A 500 with a real message on a write is not retried: it fails clearly.
    sim.fault(json!({"kind": "http", "method": "POST", "path": "/clone", "status": 500, "message": "unable to create VM 900002 - permission denied", "times": 1}));
    tf.write_with_provider(
        &sim.provider_block(&store, ""),
        &image("flaky").replace("[\"true\"]", "[\"true\", \"true\"]"),
    );
    let out = apply(&tf);
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(msg.contains("permission denied"), "{msg}");
    assert!(leftovers(&sim).is_empty(), "{:?}", leftovers(&sim));

    // An expired or revoked token: every call answers 401.
    sim.fault(json!({"kind": "http", "method": null, "path": "", "status": 401, "message": "Authentication failed!"}));
    let out = tf.run(&["plan", "-no-color", "-input=false"]);
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(
        msg.contains("401") && msg.contains("Authentication failed!"),
        "{msg}"
    );
    assert!(
        !msg.contains(&sim.secret()),
        "the token leaked into a diagnostic"
    );
    sim.clear_faults();

    // A wrong token, the real way: the simulator's own auth says no.
    let wrong = format!("{}=not-the-secret", sim.token.split_once('=').unwrap().0);
    let provider = sim.provider_block(&store, "").replace(&sim.token, &wrong);
    tf.write_with_provider(&provider, &image("flaky"));
    let out = tf.run(&["plan", "-no-color", "-input=false"]);
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(msg.contains("HTTP 401 Authentication failed!"), "{msg}");
    assert!(
        !msg.contains("not-the-secret"),
        "the token leaked into a diagnostic"
    );
    sim.assert_schema_clean();
}

#[test]
fn api_token_never_appears_in_trace_logs_or_state() {
    let sim = Sim::start();
    let tf = TfDir::new();
    let store = tf.path().join("store");
    // The token comes from the environment, the way CI systems pass it.
    let provider = format!(
        "provider \"golden\" {{\n  local {{ store_dir = \"{}\" }}\n  proxmox {{ node = \"{}\" }}\n}}\n",
        store.display(),
        sim.node
    );
    tf.write_with_provider(&provider, &image("secret-check"));
    let out = tf
        .command(&["apply", "-auto-approve", "-no-color", "-input=false"])
        .env("TF_LOG", "trace")
        .env("PROXMOX_VE_ENDPOINT", &sim.endpoint)
        .env("PROXMOX_VE_API_TOKEN", &sim.token)
        .env("PROXMOX_VE_INSECURE", "true")
        .output()
        .unwrap();
    let log = text(&out);
    assert!(
        out.status.success(),
        "{}",
        &log[log.len().saturating_sub(4000)..]
    );
    assert!(
        log.lines()
            .any(|l| l.contains("API call") && l.contains("PVE")),
        "TF_LOG=trace must show golden's API calls"
    );
    assert!(
        !log.contains(&sim.secret()),
        "the API token secret appears in TF_LOG=trace output"
    );
    let state = std::fs::read_to_string(tf.path().join("terraform.tfstate")).unwrap();
    assert!(
        !state.contains(&sim.secret()),
        "the API token secret is in the state"
    );
    // Every request authenticated; none went out without the token.
    assert!(sim.requests().iter().all(|r| r["auth_ok"] == true));
    sim.assert_schema_clean();
}

#[test]
fn interrupt_during_a_proxmox_build_leaves_no_vm() {
    // Slow tasks and a slow agent keep the build in flight long enough.
    let sim = Sim::start_with(&["--task-ms", "1500", "--agent-ready-ms", "60000"]);
    let tf = TfDir::new();
    let store = tf.path().join("store");
    tf.write_with_provider(
        &sim.provider_block(&store, "    agent_timeout = \"5m\"\n"),
        &image("interrupted"),
    );
    let mut cmd = tf.command(&["apply", "-auto-approve", "-no-color", "-input=false"]);
    cmd.process_group(0);
    let mut child = cmd.spawn().unwrap();
    let pgid = child.id() as i32;

    // Wait for the candidate VM to exist and start, then interrupt.
    let started = Instant::now();
    while !sim.vms().iter().any(|v| {
        v["name"].as_str().unwrap_or("").starts_with("candidate-") && v["status"] == "running"
    }) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the build VM never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "terraform exited before the build VM started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: signalling the process group we created.
    unsafe { libc::kill(-pgid, libc::SIGINT) };
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "terraform did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "an interrupted apply must fail");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        leftovers(&sim).is_empty(),
        "VMs left after Ctrl-C: {:?}",
        leftovers(&sim)
    );
    assert!(tf.ledgers().is_empty(), "{:?}", tf.ledgers());
    sim.assert_schema_clean();
}

#[test]
fn bad_proxmox_settings_fail_at_plan_naming_the_attribute() {
    let tf = TfDir::new();
    let store = tf.path().join("store");
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "proxmox {\n endpoint = \"https://pve:8006\"\n api_token = \"root@pam-s3cr3t-value\"\n }",
            "source { vm_id = 9000 }",
            &["Invalid Proxmox API Token", "api_token"],
        ),
        (
            "proxmox {\n endpoint = \"pve.example.com\"\n api_token = \"root@pam!t=x\"\n }",
            "source { vm_id = 9000 }",
            &["Invalid Proxmox Endpoint", "endpoint"],
        ),
        (
            "proxmox {\n endpoint = \"https://pve:8006\"\n api_token = \"root@pam!t=x\"\n vmid_range = \"99-5\"\n }",
            "source { vm_id = 9000 }",
            &["Invalid vmid_range", "vmid_range"],
        ),
        (
            "proxmox {\n endpoint = \"https://pve:8006\"\n api_token = \"root@pam!t=x\"\n }",
            "source { path = \"/base.qcow2\" }",
            &["Unsupported Source", "source.path does not apply to platform \"proxmox\""],
        ),
        (
            "proxmox {\n endpoint = \"https://pve:8006\"\n api_token = \"root@pam!t=x\"\n }",
            "source { vm_id = 12 }",
            &["Invalid source.vm_id", "vm_id"],
        ),
        ("", "source { vm_id = 9000 }", &["Platform Not Configured", "platform"]),
    ];
    for (block, source, expect) in cases {
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
