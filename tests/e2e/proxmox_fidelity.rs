//! What a real PVE does that the simulator used to hide (issue "Proxmox on a
//! real cluster"), each through the real terraform CLI against the
//! simulator, asserted from the simulator's state and request log.

use std::path::Path;

use serde_json::json;

use super::sim::{sha256_hex, ImageServer, Sim};
use super::util::{change, resource, strings, today, TfDir};

fn image(family: &str, revision: &str, keep: u32, on_destroy: &str) -> String {
    format!(
        r#"
resource "golden_image" "x" {{
  platform = "proxmox"
  family   = "{family}"
  source {{ template = "debian-12-base" }}
  provision {{
    files = {{ "/etc/golden-revision" = "{revision}" }}
  }}
  smoke_test {{
    commands = ["grep -qx {revision} /etc/golden-revision"]
    timeout  = "2m"
  }}
  retention {{ keep = {keep} }}
  on_destroy = "{on_destroy}"
}}
"#
    )
}

fn write(tf: &TfDir, sim: &Sim, store: &Path, body: &str) {
    tf.write_with_provider(
        &sim.provider_block(store, "    agent_timeout = \"30s\"\n"),
        body,
    );
}

fn vmid(sim: &Sim, name: &str) -> u64 {
    sim.vm_named(name)
        .unwrap_or_else(|| panic!("no VM named {name}"))["vmid"]
        .as_u64()
        .unwrap()
}

/// Temporary golden VMs (candidates, smoke clones) still on the cluster.
fn temporaries(sim: &Sim) -> Vec<(String, String)> {
    sim.golden_vms()
        .into_iter()
        .filter(|(_, tags)| tags.contains("golden-smoke") || tags.contains("golden-candidate"))
        .collect()
}

/// `clone` copies `protection` (qemu-server clone_vm) and PVE refuses to
/// destroy a protected VM. With a protected source template, the candidate
/// and its smoke clone must not stay protected, or they could never go.
#[test]
fn a_protected_source_template_builds_and_leaves_nothing() {
    let sim = Sim::start();
    let base = vmid(&sim, "debian-12-base");
    sim.api_set_config(base, &[("protection", "1")]);
    // The simulator refuses what PVE refuses.
    assert_eq!(sim.api_config(base)["protection"], 1);

    let tf = TfDir::new();
    let store = tf.path().join("store");
    write(&tf, &sim, &store, &image("protected-src", "one", 2, "keep"));
    tf.apply();

    let name = format!("protected-src-{}-001", today());
    let template = vmid(&sim, &name);
    assert!(
        sim.api_config(template)["protection"].is_null(),
        "the published template inherited protection"
    );
    assert!(temporaries(&sim).is_empty(), "{:?}", temporaries(&sim));
    // The smoke clone was really destroyed: one DELETE of a VM that is not
    // the template, answered 200.
    let destroyed: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r["method"] == "DELETE" && r["path"].as_str().unwrap_or("").contains("/qemu/"))
        .map(|r| format!("{} {}", r["path"].as_str().unwrap(), r["status"]))
        .collect();
    assert!(
        !destroyed.is_empty() && destroyed.iter().all(|d| d.ends_with(" 200")),
        "smoke clone destroys: {destroyed:?}"
    );
    assert!(tf.ledgers().is_empty(), "{:?}", tf.ledgers());
    sim.assert_schema_clean();
}

/// A golden template someone protected in PVE is kept: the plan says why,
/// prune skips it, and `on_destroy = "delete"` fails on it naming the flag
/// while deleting the rest.
#[test]
fn a_protected_golden_template_is_kept_and_the_plan_says_why() {
    let sim = Sim::start();
    let tf = TfDir::new();
    let store = tf.path().join("store");
    let family = "protected-img";
    write(&tf, &sim, &store, &image(family, "one", 1, "delete"));
    tf.apply();
    let first = format!("{family}-{}-001", today());
    sim.api_set_config(vmid(&sim, &first), &[("protection", "1")]);

    write(&tf, &sim, &store, &image(family, "two", 1, "delete"));
    let out = tf.ok(&["plan", "-no-color", "-input=false", "-out=tfplan"]);
    assert!(
        out.contains("protection flag"),
        "the plan must say why {first} is kept:\n{out}"
    );
    let plan: serde_json::Value =
        serde_json::from_str(&tf.ok(&["show", "-json", "tfplan"])).unwrap();
    assert_eq!(
        strings(&change(&plan, "golden_image.x")["change"]["after"]["prune"]),
        Vec::<String>::new()
    );
    tf.ok(&[
        "apply",
        "-auto-approve",
        "-no-color",
        "-input=false",
        "tfplan",
    ]);
    let second = format!("{family}-{}-002", today());
    assert!(sim.vm_named(&first).is_some(), "{first} was pruned");
    assert!(sim.vm_named(&second).is_some());

    let err = tf.fails(&["destroy", "-auto-approve", "-no-color", "-input=false"]);
    assert!(
        err.contains(&format!("Unable to Delete Image {first}")) && err.contains("protection"),
        "{err}"
    );
    assert!(sim.vm_named(&first).is_some());
    assert!(
        sim.vm_named(&second).is_none(),
        "the unprotected image stays"
    );
    sim.assert_schema_clean();
}

/// PVE gives the guest agent a few seconds per call, then answers 500 "VM N
/// qga command 'guest-exec-status' failed - got timeout". A busy guest does
/// that now and then; one such answer must not abort an hour of provisioning.
#[test]
fn guest_agent_timeouts_are_retried_within_the_step() {
    let sim = Sim::start();
    // More timeouts in a row than the transport's own retries: the step's
    // poll loop has to carry on.
    sim.fault(json!({"kind": "agent_timeout", "command": "exec-status", "vmid": null, "times": 6}));
    sim.fault(json!({"kind": "agent_timeout", "command": "file-write", "vmid": null, "times": 1}));
    let tf = TfDir::new();
    let store = tf.path().join("store");
    write(
        &tf,
        &sim,
        &store,
        &image("agent-timeouts", "one", 2, "keep"),
    );
    tf.apply();
    assert!(sim
        .vm_named(&format!("agent-timeouts-{}-001", today()))
        .is_some());

    let calls: Vec<(String, u64)> = sim
        .requests()
        .iter()
        .filter_map(|r| {
            let path = r["path"].as_str()?;
            let cmd = path.rsplit_once("/agent/")?.1.to_owned();
            Some((cmd, r["status"].as_u64()?))
        })
        .collect();
    let timeouts = |cmd: &str| calls.iter().filter(|(c, s)| c == cmd && *s == 500).count();
    assert_eq!(timeouts("exec-status"), 6, "the fault fired: {calls:?}");
    assert_eq!(timeouts("file-write"), 1, "the fault fired: {calls:?}");
    // What the client did next: asked again, and got answers.
    let after = |cmd: &str| {
        let first = calls
            .iter()
            .position(|(c, s)| c == cmd && *s == 500)
            .unwrap();
        calls[first..].iter().any(|(c, s)| c == cmd && *s == 200)
    };
    assert!(
        after("exec-status"),
        "exec-status not polled again: {calls:?}"
    );
    let write_retry = calls
        .windows(2)
        .any(|w| w[0] == ("file-write".into(), 500) && w[1] == ("file-write".into(), 200));
    assert!(write_retry, "the file write was not sent again: {calls:?}");
    assert!(temporaries(&sim).is_empty(), "{:?}", temporaries(&sim));
    sim.assert_schema_clean();
}

/// A PVE task that logs warnings ends `TASK WARNINGS: n` with exit status
/// `WARNINGS: n`, and it succeeded: its work is done (pve-common
/// RESTEnvironment.pm, Tools.pm upid_read_status). The candidate's clone
/// ending that way must not fail the build.
#[test]
fn a_task_that_ends_with_warnings_succeeded() {
    let sim = Sim::start();
    sim.fault(
        json!({"kind": "task", "task_type": "qmclone", "message": "WARNINGS: 1", "times": 1}),
    );
    let tf = TfDir::new();
    let store = tf.path().join("store");
    write(&tf, &sim, &store, &image("task-warnings", "one", 2, "keep"));
    tf.apply();
    let name = format!("task-warnings-{}-001", today());
    assert!(sim.vm_named(&name).is_some(), "{name} missing");
    // The fault fired: the candidate's clone task is the one that warned.
    let clone = sim
        .vms()
        .into_iter()
        .find(|v| v["name"] == name.as_str())
        .unwrap();
    assert_eq!(clone["template"], true);
    assert!(temporaries(&sim).is_empty(), "{:?}", temporaries(&sim));
    sim.assert_schema_clean();
}

/// PVE hands a guest's output on byte for character (Latin-1) and `exited`
/// as 0/1; the client repairs both. The smoke report shows the command's
/// first line of output, so UTF-8 there must arrive as UTF-8.
#[test]
fn guest_output_survives_pves_latin1_pass_through() {
    let sim = Sim::start();
    let tf = TfDir::new();
    let store = tf.path().join("store");
    let body = image("latin1", "one", 2, "keep").replace(
        "commands = [\"grep -qx one /etc/golden-revision\"]",
        "commands = [\"echo grüße-✓\"]",
    );
    assert!(body.contains("grüße"), "the recipe did not change");
    write(&tf, &sim, &store, &body);
    tf.apply();
    let state = tf.state_json();
    let checks = super::util::resource(&state, "golden_image.x")["validation"]["checks"].clone();
    let detail = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "commands[0]")
        .map(|c| c["detail"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(detail.contains("grüße-✓"), "{detail}");
    sim.assert_schema_clean();
}

/// The simulator answers exec-status the way PVE does.
#[test]
fn exec_status_comes_back_as_pve_sends_it() {
    let sim = Sim::start();
    let base = vmid(&sim, "debian-12-base");
    // A running guest to ask: a full clone of the base, started.
    let clone = sim.admin_post(
        "/clone",
        json!({"vmid": base, "newid": 700, "name": "probe", "full": true}),
    );
    assert_eq!(clone["vmid"], 700);
    let start = sim.api(
        reqwest::Method::POST,
        &format!("/nodes/{}/qemu/700/status/start", sim.node),
    );
    assert!(start.as_str().unwrap().starts_with("UPID:"));
    let agent = format!("/nodes/{}/qemu/700/agent", sim.node);
    let mut pid = serde_json::Value::Null;
    for _ in 0..100 {
        let r = sim.api_raw(
            reqwest::Method::POST,
            &format!("{agent}/exec"),
            &[
                ("command", "/bin/sh"),
                ("command", "-c"),
                ("command", "echo grüße"),
            ],
        );
        if !r["data"].is_null() {
            pid = r["data"]["pid"].clone();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(pid.is_number(), "the agent never answered");
    let mut status = serde_json::Value::Null;
    for _ in 0..100 {
        status = sim.api(
            reqwest::Method::GET,
            &format!("{agent}/exec-status?pid={pid}"),
        );
        if status["exited"] == 1 {
            break;
        }
        assert_eq!(
            status["exited"], 0,
            "exited is 0/1, not a boolean: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(status["exited"], 1, "{status}");
    // "grüße\n" as UTF-8 bytes, each handed on as one character.
    assert_eq!(status["out-data"], "gr\u{c3}\u{bc}\u{c3}\u{9f}e\n");
}

/// What every real PVE answers and existing PVE clients (bpg's provider on
/// every VM refresh) read: the pool list, each node's TLS fingerprint, a
/// node's status. All within the PVE schema.
#[test]
fn pools_node_fingerprints_and_node_status_are_served() {
    let sim = Sim::start();
    assert_eq!(sim.api(reqwest::Method::GET, "/pools"), json!([]));
    let nodes = sim.api(reqwest::Method::GET, "/nodes");
    let fp = nodes[0]["ssl_fingerprint"].as_str().unwrap_or_default();
    let pairs: Vec<&str> = fp.split(':').collect();
    assert_eq!(pairs.len(), 32, "a SHA-256 fingerprint: {fp}");
    assert!(pairs.iter().all(|p| p.len() == 2
        && p.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())));
    let status = sim.api(reqwest::Method::GET, &format!("/nodes/{}/status", sim.node));
    assert!(status["pveversion"]
        .as_str()
        .unwrap()
        .starts_with("pve-manager/"));
    sim.assert_schema_clean();
}

/// A node that is not in the cluster is a plain 500 "no such cluster node",
/// not pveproxy's 595 for a node it cannot reach: nothing to retry. golden
/// clones on the node that holds the source, so a wrong `node` shows where it
/// is used: the storage listing that finds linked clones, which then keeps
/// every image (the safe side) and says why.
#[test]
fn an_unknown_node_is_refused_once_and_named() {
    let sim = Sim::start();
    let tf = TfDir::new();
    let store = tf.path().join("store");
    let provider = sim.provider_block(&store, "").replace(
        &format!("node      = \"{}\"", sim.node),
        "node      = \"nope\"",
    );
    assert!(provider.contains("\"nope\""));
    tf.write_with_provider(&provider, &image("unknown-node", "one", 2, "keep"));
    tf.apply();
    let log: Vec<(String, u64)> = sim
        .requests()
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_owned(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let to_nope: Vec<usize> = (0..log.len())
        .filter(|&i| log[i].0.contains("/nodes/nope/"))
        .collect();
    assert!(!to_nope.is_empty(), "the node was never asked");
    for &i in &to_nope {
        assert_eq!(log[i].1, 500, "{:?}", log[i]);
        // Not retried: a transient 595 would have been asked again at once.
        assert!(
            log.get(i + 1).is_none_or(|next| next.0 != log[i].0),
            "retried: {:?}",
            &log[i..]
        );
    }
    let state = tf.state_json();
    let images = super::util::resource(&state, "golden_image.x")["images"].clone();
    let why = images[0]["protected"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("no such cluster node 'nope'"), "{why}");
    sim.assert_schema_clean();
}

/// `GET /cluster/nextid` answers a JSON string, as PVE does (pve-manager
/// `PVE/API2/Cluster.pm` nextid: its `$i` is stringified as a hash key before
/// it is returned), whatever the schema's `integer` says.
#[test]
fn nextid_answers_a_string_as_pve_does() {
    let sim = Sim::start();
    assert_eq!(
        sim.api(reqwest::Method::GET, "/cluster/nextid"),
        json!("100")
    );
    assert_eq!(
        sim.api(reqwest::Method::GET, "/cluster/nextid?vmid=4242"),
        json!("4242")
    );
    let (status, body) = sim.api_answer(reqwest::Method::GET, "/cluster/nextid?vmid=9000", &[]);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"]["vmid"], "VM 9000 already exists");
    sim.assert_schema_clean();
}

/// qemu-server keeps the description as comment lines and strips trailing
/// whitespace when it reads them (parse_vm_config): golden's notes come back
/// without their final newline, and a person's notes around them with their
/// blank lines at the end gone. golden still reads its metadata: the image
/// is listed, and nothing changes.
#[test]
fn notes_come_back_trimmed_and_golden_still_reads_its_metadata() {
    let sim = Sim::start();
    let tf = TfDir::new();
    let store = tf.path().join("store");
    write(&tf, &sim, &store, &image("trimmed-notes", "one", 2, "keep"));
    tf.apply();
    let name = format!("trimmed-notes-{}-001", today());
    let id = vmid(&sim, &name);
    let notes = sim.api_config(id)["description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(notes.contains("golden-metadata"), "{notes}");
    assert_eq!(notes, notes.trim_end(), "trailing whitespace read back");

    sim.api_set_description(id, &format!("Owner: ops  \n\n{notes}\n\n \t\n"));
    assert!(sim.api_config(id)["description"]
        .as_str()
        .unwrap()
        .ends_with("```"));
    let st = tf.run(&["plan", "-detailed-exitcode", "-no-color", "-input=false"]);
    assert_eq!(st.status.code(), Some(0), "the image reads back unchanged");
    let state = tf.state_json();
    let images = super::util::resource(&state, "golden_image.x")["images"].clone();
    assert_eq!(images[0]["name"], name.as_str(), "{images}");
    sim.assert_schema_clean();
}

/// PVE's `pve-tag` matches case-insensitively, and qemu-server stores tags
/// lower-cased, sorted and de-duplicated (pve-guest-common GuestHelpers.pm
/// get_unique_tags, the default tag-style). A person's upper-case tag on a
/// golden image is accepted, and golden still finds the image by its tags.
#[test]
fn upper_case_tags_are_accepted_and_read_back_folded() {
    let sim = Sim::start();
    let tf = TfDir::new();
    let store = tf.path().join("store");
    write(&tf, &sim, &store, &image("folded-tags", "one", 2, "keep"));
    tf.apply();
    let id = vmid(&sim, &format!("folded-tags-{}-001", today()));
    let tags = sim.api_config(id)["tags"].as_str().unwrap().to_owned();
    sim.api_set_config(id, &[("tags", &format!("Owner-OPS;{tags};OWNER-ops Zeta"))]);
    let back = sim.api_config(id)["tags"].as_str().unwrap().to_owned();
    let mut want: Vec<&str> = tags.split(';').chain(["owner-ops", "zeta"]).collect();
    want.sort_unstable();
    assert_eq!(back, want.join(";"));
    let st = tf.run(&["plan", "-detailed-exitcode", "-no-color", "-input=false"]);
    assert_eq!(st.status.code(), Some(0), "the image is still golden's");
    sim.assert_schema_clean();
}

/// Drive values come back in PVE's order: the volume, then the other keys
/// sorted (qemu-server Drive.pm print_drive, pve-common print_property_string),
/// whatever order the client sent them in.
#[test]
fn drives_read_back_in_pve_order() {
    let sim = Sim::start();
    let node = sim.node.clone();
    let exit = sim.api_task_exit(
        reqwest::Method::POST,
        &format!("/nodes/{node}/qemu"),
        &[
            ("vmid", "321"),
            ("name", "drives"),
            ("scsi0", "local-lvm:1,ssd=1,iothread=1,discard=on"),
            ("ide2", "local-lvm:cloudinit"),
        ],
    );
    assert_eq!(exit, "OK");
    let cfg = sim.api_config(321);
    assert_eq!(
        cfg["scsi0"],
        "local-lvm:vm-321-disk-0,discard=on,iothread=1,size=1G,ssd=1"
    );
    assert_eq!(cfg["ide2"], "local-lvm:vm-321-cloudinit,media=cdrom");
    let exit = sim.api_task_exit(
        reqwest::Method::POST,
        "/nodes/pve/qemu/321/clone",
        &[("newid", "322"), ("full", "1")],
    );
    assert_eq!(exit, "OK");
    assert_eq!(
        sim.api_config(322)["scsi0"],
        "local-lvm:vm-322-disk-0,discard=on,iothread=1,size=1G,ssd=1"
    );
    sim.assert_schema_clean();
}

/// Locks and taken ids as qemu-server and pve-guest-common word them, and
/// where: the clone's and the config write's checks answer 500 at once;
/// start and destroy check the lock in their worker, so the task fails.
#[test]
fn locks_and_taken_ids_are_refused_with_pves_words() {
    let sim = Sim::start_with(&["--task-ms", "1500"]);
    let node = sim.node.clone();
    let (status, body) = sim.api_answer(
        reqwest::Method::POST,
        &format!("/nodes/{node}/qemu/9000/clone"),
        &[("newid", "500"), ("name", "slow")],
    );
    assert_eq!(status, 200, "{body}");
    let clone_upid = body["data"].as_str().unwrap().to_owned();
    // 500 is locked `clone` while the task runs.
    let refused = |method: reqwest::Method, path: &str, form: &[(&str, &str)]| {
        let (status, body) = sim.api_answer(method, &format!("/nodes/{node}{path}"), form);
        (
            status,
            body["message"].as_str().unwrap_or_default().to_owned(),
        )
    };
    assert_eq!(
        refused(
            reqwest::Method::PUT,
            "/qemu/500/config",
            &[("memory", "2048")]
        ),
        (500, "VM is locked (clone)\n".to_owned())
    );
    assert_eq!(
        refused(
            reqwest::Method::POST,
            "/qemu/500/clone",
            &[("newid", "501"), ("full", "1")]
        ),
        (500, "VM is locked (clone)\n".to_owned())
    );
    assert_eq!(
        refused(
            reqwest::Method::POST,
            "/qemu/9000/clone",
            &[("newid", "500")]
        ),
        (
            500,
            "unable to create VM 500: config file already exists\n".to_owned()
        )
    );
    assert_eq!(
        refused(reqwest::Method::POST, "/qemu", &[("vmid", "500")]),
        (
            500,
            format!("unable to create VM 500 - VM 500 already exists on node '{node}'\n")
        )
    );
    let post = sim.api_task_exit(
        reqwest::Method::POST,
        &format!("/nodes/{node}/qemu/500/config"),
        &[("memory", "2048")],
    );
    assert_eq!(
        post, "VM is locked (clone)",
        "POST config checks in its worker"
    );
    let start = sim.api_task_exit(
        reqwest::Method::POST,
        &format!("/nodes/{node}/qemu/500/status/start"),
        &[],
    );
    assert_eq!(start, "VM is locked (clone)");
    assert_eq!(sim.task_exit(&clone_upid), "OK");
    assert_eq!(
        sim.vm_named("slow").unwrap()["lock"],
        serde_json::Value::Null
    );
    sim.assert_schema_clean();
}

/// pvestatd broadcasts guest statistics every ten seconds; until then
/// `/cluster/resources` lists a new VM without `name` and `template`
/// (pve-manager API2Tools.pm extract_vm_stats). A template made a moment
/// ago is still found by its name, the build's own new VMs (candidate,
/// smoke clone) never collide, and the image's size is known.
#[test]
fn a_template_made_moments_ago_is_found_while_cluster_statistics_lag() {
    let sim = Sim::start_with(&["--stats-lag-ms", "600000"]);
    let node = sim.node.clone();
    let exit = sim.api_task_exit(
        reqwest::Method::POST,
        &format!("/nodes/{node}/qemu/9000/clone"),
        &[("newid", "150"), ("name", "fresh-base"), ("full", "1")],
    );
    assert_eq!(exit, "OK");
    let exit = sim.api_task_exit(
        reqwest::Method::POST,
        &format!("/nodes/{node}/qemu/150/template"),
        &[],
    );
    assert_eq!(exit, "OK");
    let listed = sim.api(reqwest::Method::GET, "/cluster/resources?type=vm");
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["vmid"] == 150)
        .cloned()
        .unwrap();
    assert_eq!(entry["status"], "unknown", "{entry}");
    assert!(
        entry.get("name").is_none() && entry.get("template").is_none(),
        "{entry}"
    );

    let tf = TfDir::new();
    let store = tf.path().join("store");
    let body = image("lagging", "one", 2, "keep").replace("debian-12-base", "fresh-base");
    assert!(body.contains("fresh-base"));
    write(&tf, &sim, &store, &body);
    tf.apply();
    let state = tf.state_json();
    let images = super::util::resource(&state, "golden_image.x")["images"].clone();
    assert_eq!(images[0]["size_bytes"], 2u64 << 30, "{images}");

    // By id too: the entry without `template` is not "not a template".
    let by_id = TfDir::new();
    let store = by_id.path().join("store");
    let body = image("lagging-id", "one", 2, "keep")
        .replace("template = \"debian-12-base\"", "vm_id = 150");
    assert!(body.contains("vm_id = 150"));
    write(&by_id, &sim, &store, &body);
    by_id.apply();
    assert!(sim
        .vm_named(&format!("lagging-id-{}-001", today()))
        .is_some());
    assert!(temporaries(&sim).is_empty(), "{:?}", temporaries(&sim));
    sim.assert_schema_clean();
}

/// `download-url` as pve-storage's Status.pm download_url and pve-common's
/// download_file_from_url do it: block storages and wrong extensions are
/// refused before any task; the `download` task's worker id is the file
/// name; an existing file is refused, or kept when its checksum is the one
/// asked for; a mismatch is worded as PVE words it. The simulator is PVE 9.1
/// (the schema's release), where `.qcow2` imports exist (since PVE 8.4).
#[test]
fn download_url_refuses_keeps_and_checks_files_as_pve_does() {
    const BODY: &[u8] = b"QFI\xfb a tiny image";
    let server = ImageServer::start(BODY);
    let sim = Sim::start();
    let version = sim.api(reqwest::Method::GET, "/version");
    assert_eq!(version["release"], "9.1", "{version}");
    let node = sim.node.clone();
    let sha = sha256_hex(BODY);
    let zeros = "0".repeat(64);
    let download = |storage: &str, content: &str, filename: &str, checksum: Option<&str>| {
        let mut form = vec![
            ("url", server.url.as_str()),
            ("content", content),
            ("filename", filename),
        ];
        if let Some(c) = checksum {
            form.extend([("checksum", c), ("checksum-algorithm", "sha256")]);
        }
        sim.api_answer(
            reqwest::Method::POST,
            &format!("/nodes/{node}/storage/{storage}/download-url"),
            &form,
        )
    };
    let (status, body) = download("local-lvm", "import", "a.qcow2", None);
    assert_eq!(
        (status, body["message"].as_str().unwrap_or_default()),
        (
            500,
            "can't upload to storage type 'lvmthin', not a file based storage!\n"
        )
    );
    let (status, body) = download("local", "iso", "a.qcow2", None);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"]["filename"], "wrong file extension");

    let (status, body) = download("local", "import", "tiny image.qcow2", Some(&sha));
    let upid = body["data"].as_str().unwrap_or_default().to_owned();
    assert_eq!(status, 200, "{body}");
    assert!(upid.contains(":download:tiny_image.qcow2:"), "{upid}");
    assert_eq!(sim.task_exit(&upid), "OK");
    let content = sim.api(
        reqwest::Method::GET,
        &format!("/nodes/{node}/storage/local/content?content=import"),
    );
    assert!(
        content
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["volid"] == "local:import/tiny_image.qcow2"),
        "{content}"
    );
    assert_eq!(server.hits(), 1);

    let again = |checksum: Option<&str>| {
        let (status, body) = download("local", "import", "tiny_image.qcow2", checksum);
        assert_eq!(status, 200, "{body}");
        sim.task_exit(body["data"].as_str().unwrap())
    };
    assert_eq!(
        again(None),
        "refusing to override existing file '/var/lib/vz/import/tiny_image.qcow2'"
    );
    assert_eq!(again(Some(&sha)), "OK", "the right file is kept");
    assert_eq!(
        again(Some(&zeros)),
        format!("checksum mismatch: got '{sha}' != expect '{zeros}', aborting")
    );
    assert_eq!(server.hits(), 1, "an existing file is never fetched again");

    let (_, body) = download("local", "import", "other.qcow2", Some(&zeros));
    assert_eq!(
        sim.task_exit(body["data"].as_str().unwrap()),
        format!("checksum mismatch: got '{sha}' != expect '{zeros}'")
    );
    sim.assert_schema_clean();
}

/// The `images` volumes of a storage, through the PVE API.
fn images_on(sim: &Sim, storage: &str) -> Vec<serde_json::Value> {
    sim.api(
        reqwest::Method::GET,
        &format!(
            "/nodes/{}/storage/{storage}/content?content=images",
            sim.node
        ),
    )
    .as_array()
    .cloned()
    .unwrap_or_default()
}

/// The one volume of `vmid` whose volid contains `disk` (not its cloud-init drive).
fn disk_of(sim: &Sim, storage: &str, vmid: u64, disk: &str) -> serde_json::Value {
    images_on(sim, storage)
        .into_iter()
        .find(|v| v["vmid"] == vmid && v["volid"].as_str().unwrap_or("").contains(disk))
        .unwrap_or_else(|| panic!("no {disk} volume of VM {vmid} on {storage}"))
}

/// LVM-thin, PVE's default `local-lvm` (pve-storage LvmThinPlugin.pm): a
/// linked clone is a thin snapshot named plainly `vm-<id>-disk-0`; the
/// listing shows no parent, qemu-server destroy_vm's
/// volume_is_base_and_used finds no user, and the base goes while the clone
/// keeps its data. So retention prunes a template a linked clone came from,
/// and the clone lives on.
#[test]
fn on_lvm_thin_retention_prunes_a_template_its_linked_clone_outlives() {
    let sim = Sim::start();
    let tf = TfDir::new();
    let store = tf.path().join("store");
    write(&tf, &sim, &store, &image("thin-base", "one", 1, "keep"));
    tf.apply();
    let first = format!("thin-base-{}-001", today());
    let template = vmid(&sim, &first);
    sim.admin_post(
        "/clone",
        json!({"vmid": template, "newid": 7010, "name": "app-server", "full": false}),
    );
    let clone_disk = disk_of(&sim, "local-lvm", 7010, "-disk-");
    assert_eq!(clone_disk["volid"], "local-lvm:vm-7010-disk-0");
    assert!(
        clone_disk.get("parent").is_none(),
        "LVM-thin lists no parent: {clone_disk}"
    );

    write(&tf, &sim, &store, &image("thin-base", "two", 1, "keep"));
    tf.apply();
    assert!(sim.vm_named(&first).is_none(), "{first} was kept");
    let destroyed = sim.calls_to("DELETE", &format!("/qemu/{template}"));
    assert_eq!(destroyed.len(), 1, "{destroyed:?}");
    assert_eq!(destroyed[0].status, 200);
    // The clone keeps its disk and boots.
    assert_eq!(
        disk_of(&sim, "local-lvm", 7010, "-disk-")["volid"],
        "local-lvm:vm-7010-disk-0"
    );
    let started = sim.api_task(reqwest::Method::POST, "/qemu/7010/status/start", &[]);
    assert_eq!(started["exitstatus"], "OK", "{started}");
    sim.assert_schema_clean();
}

/// ZFS (ZFSPoolPlugin.pm) and Ceph RBD (RBDPlugin.pm) keep the clone's
/// dependency: its volume is `<base>/vm-<id>-disk-0`, listed with parent
/// `<base>@__base__`, and qemu-server destroy_vm refuses the template, so
/// golden keeps it, says why in the plan, and prunes it once the clone is
/// gone. (Directory storage: `proxmox.rs`, retag and linked clones.)
#[test]
fn on_zfs_and_rbd_a_linked_clone_pins_its_template() {
    for (kind, storage) in [("zfspool", "local-zfs"), ("rbd", "ceph")] {
        let sim = Sim::start_on(kind);
        let tf = TfDir::new();
        let store = tf.path().join("store");
        let family = format!("pin-{kind}");
        write(&tf, &sim, &store, &image(&family, "one", 1, "keep"));
        tf.apply();
        let first = format!("{family}-{}-001", today());
        let template = vmid(&sim, &first);
        sim.admin_post(
            "/clone",
            json!({"vmid": template, "newid": 7010, "name": "app-server", "full": false}),
        );
        let base = format!("base-{template}-disk-0");
        let clone_disk = disk_of(&sim, storage, 7010, "-disk-");
        assert_eq!(
            clone_disk["volid"],
            format!("{storage}:{base}/vm-7010-disk-0"),
            "{kind}"
        );
        assert_eq!(clone_disk["parent"], format!("{base}@__base__"), "{kind}");
        assert_eq!(clone_disk["format"], "raw", "{kind}");

        write(&tf, &sim, &store, &image(&family, "two", 1, "keep"));
        let out = tf.ok(&["plan", "-no-color", "-input=false"]);
        let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            out.contains("linked clones still use it (VM 7010)"),
            "{kind}: the plan must say why {first} is kept:\n{out}"
        );
        tf.apply();
        assert!(sim.vm_named(&first).is_some(), "{kind}: {first} was pruned");

        // PVE itself refuses, in qemu-server destroy_vm's words, in the task.
        let st = sim.api_task(reqwest::Method::DELETE, &format!("/qemu/{template}"), &[]);
        assert_eq!(
            st["exitstatus"],
            format!("base volume '{storage}:{base}' is still in use by linked cloned"),
            "{kind}"
        );
        sim.api_destroy(7010);
        write(&tf, &sim, &store, &image(&family, "two", 1, "keep"));
        tf.apply();
        assert!(sim.vm_named(&first).is_none(), "{kind}: {first} stays");
        sim.assert_schema_clean();
    }
}

/// A directory storage (Plugin.pm) names a linked clone after its base
/// (`<storage>:9000/base-9000-disk-0.qcow2/<id>/vm-<id>-disk-0.qcow2`, parent
/// `../9000/base-9000-disk-0.qcow2`, qcow2), and `GET .../content/{volume}`
/// takes such a volume id, slashes and all: pve-storage mounts Content.pm
/// with `fragmentDelimiter => ''` (API2/Storage/Status.pm), and answers
/// path, size, used and format (Content.pm info). The storage list reports
/// each storage's type, content, shared flag and formats.
#[test]
fn directory_storage_names_the_base_and_serves_volume_ids_with_slashes() {
    let sim = Sim::start_with(&[
        "--storage",
        "vmstore",
        "--add-storage",
        "vmstore=dir",
        "--add-storage",
        "local-lvm=lvmthin",
        "--add-storage",
        "local-zfs=zfspool",
        "--add-storage",
        "ceph=rbd",
    ]);
    let cloned = sim.api_task(
        reqwest::Method::POST,
        "/qemu/9000/clone",
        &[("newid", "201"), ("name", "app-server")],
    );
    assert_eq!(cloned["exitstatus"], "OK", "{cloned}");
    let base = "vmstore:9000/base-9000-disk-0.qcow2";
    let volid = "vmstore:9000/base-9000-disk-0.qcow2/201/vm-201-disk-0.qcow2";
    let disk = disk_of(&sim, "vmstore", 201, "-disk-");
    assert_eq!(disk["volid"], volid);
    assert_eq!(disk["parent"], "../9000/base-9000-disk-0.qcow2");
    assert_eq!(disk["format"], "qcow2");

    for volume in [volid, "9000/base-9000-disk-0.qcow2/201/vm-201-disk-0.qcow2"] {
        let info = sim.api(
            reqwest::Method::GET,
            &format!("/nodes/{}/storage/vmstore/content/{volume}", sim.node),
        );
        assert_eq!(
            info,
            json!({"path": "/mnt/vmstore/images/201/vm-201-disk-0.qcow2",
                   "size": 2u64 << 30, "used": 0, "format": "qcow2"}),
            "{volume}"
        );
    }
    let info = sim.api(
        reqwest::Method::GET,
        &format!("/nodes/{}/storage/vmstore/content/{base}", sim.node),
    );
    assert_eq!(
        info["path"],
        "/mnt/vmstore/images/9000/base-9000-disk-0.qcow2"
    );
    // Content.pm real_volume_id and info: a volume id of another storage is a
    // parameter error; a volume that is not there fails volume_size_info.
    let path = |v: &str| format!("/nodes/{}/storage/vmstore/content/{v}", sim.node);
    let other = sim.api_raw(reqwest::Method::GET, &path("local-lvm:vm-201-disk-0"), &[]);
    assert_eq!(other["status"], 400, "{other}");
    let missing = sim.api_raw(reqwest::Method::GET, &path("201/vm-201-disk-9.qcow2"), &[]);
    assert_eq!(missing["status"], 500, "{missing}");

    let st = sim.api_task(reqwest::Method::DELETE, "/qemu/9000", &[]);
    assert_eq!(
        st["exitstatus"],
        format!("base volume '{base}' is still in use by linked cloned")
    );
    assert!(sim.vm_named("debian-12-base").is_some());

    let storages = sim.api(
        reqwest::Method::GET,
        &format!("/nodes/{}/storage?format=1", sim.node),
    );
    let row = |id: &str| {
        storages
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["storage"] == id)
            .unwrap_or_else(|| panic!("no storage {id}: {storages}"))
            .clone()
    };
    for (id, kind, content, shared, default) in [
        ("vmstore", "dir", "images,rootdir", 0, "qcow2"),
        ("local", "dir", "iso,vztmpl,import,backup", 0, "qcow2"),
        ("local-lvm", "lvmthin", "images,rootdir", 0, "raw"),
        ("local-zfs", "zfspool", "images,rootdir", 0, "raw"),
        ("ceph", "rbd", "images", 1, "raw"),
    ] {
        let s = row(id);
        assert_eq!(
            (
                &s["type"],
                &s["content"],
                &s["shared"],
                &s["formats"]["default"]
            ),
            (
                &json!(kind),
                &json!(content),
                &json!(shared),
                &json!(default)
            ),
            "{s}"
        );
    }
    sim.assert_schema_clean();
}

/// The in-use check lists the storages the template's disks are on, not
/// the provider's `storage`: after a move to another storage, an older
/// template on the first one still has its linked clone found (else golden
/// would try to prune it and PVE's destroy task would fail the apply).
#[test]
fn a_template_left_on_a_former_storage_is_still_checked_for_linked_clones() {
    let sim = Sim::start_with(&[
        "--storage",
        "vmstore",
        "--add-storage",
        "vmstore=dir",
        "--add-storage",
        "local-zfs=zfspool",
    ]);
    let tf = TfDir::new();
    let store = tf.path().join("store");
    write(&tf, &sim, &store, &image("moved", "one", 1, "keep"));
    tf.apply();
    let first = format!("moved-{}-001", today());
    let template = vmid(&sim, &first);
    sim.admin_post(
        "/clone",
        json!({"vmid": template, "newid": 7010, "name": "app-server", "full": false}),
    );
    let provider = sim
        .provider_block(&store, "    agent_timeout = \"30s\"\n")
        .replace("storage   = \"vmstore\"", "storage   = \"local-zfs\"");
    assert!(provider.contains("\"local-zfs\""));
    tf.write_with_provider(&provider, &image("moved", "two", 1, "keep"));
    tf.apply();
    let second = format!("moved-{}-002", today());
    assert!(
        sim.api_config(vmid(&sim, &second))["scsi0"]
            .as_str()
            .unwrap()
            .starts_with("local-zfs:base-"),
        "the new template is on the new storage"
    );
    assert!(sim.vm_named(&first).is_some(), "{first} was pruned");
    assert!(
        sim.calls_to("DELETE", &format!("/qemu/{template}"))
            .is_empty(),
        "golden tried to destroy {first}"
    );
    let state = tf.state_json();
    let images = super::util::resource(&state, "golden_image.x")["images"].clone();
    let kept = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == first)
        .unwrap()
        .clone();
    assert_eq!(kept["protected"], "linked clones still use it (VM 7010)");
    sim.assert_schema_clean();
}

/// `retention { max_age }`: an image older than it goes even within `keep`,
/// the plan says why in `prune_reasons`, and the newest validated image stays
/// however old. A bad duration fails at plan, naming the attribute.
#[test]
fn max_age_prunes_within_keep_and_the_plan_says_why() {
    let sim = Sim::start();
    let tf = TfDir::new();
    let store = tf.path().join("store");
    let family = "aged";
    let with_max_age = |rev: &str, max_age: &str| {
        image(family, rev, 5, "keep").replace(
            "retention { keep = 5 }",
            &format!("retention {{\n    keep    = 5\n    max_age = \"{max_age}\"\n  }}"),
        )
    };
    write(&tf, &sim, &store, &with_max_age("one", "720h"));
    tf.apply();
    write(&tf, &sim, &store, &with_max_age("two", "720h"));
    tf.apply();
    let first = format!("{family}-{}-001", today());
    let second = format!("{family}-{}-002", today());
    assert!(sim.vm_named(&first).is_some() && sim.vm_named(&second).is_some());

    write(&tf, &sim, &store, &with_max_age("two", "forever"));
    let err = tf.fails(&["plan", "-no-color", "-input=false"]);
    assert!(err.contains("max_age") && err.contains("Invalid"), "{err}");

    // Both images are more than a second old now.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write(&tf, &sim, &store, &with_max_age("two", "1s"));
    let plan = tf.plan_json();
    let after = &change(&plan, "golden_image.x")["change"]["after"];
    assert_eq!(strings(&after["prune"]), vec![first.clone()]);
    assert_eq!(
        after["prune_reasons"],
        json!({ first.clone(): "older than max_age = \"1s\"" })
    );
    tf.ok(&[
        "apply",
        "-auto-approve",
        "-no-color",
        "-input=false",
        "tfplan",
    ]);
    assert!(sim.vm_named(&first).is_none(), "{first} outlived max_age");
    assert!(
        sim.vm_named(&second).is_some(),
        "the newest validated image went"
    );
    // Nothing more to prune: the second plan is empty.
    let out = tf.ok(&["plan", "-no-color", "-input=false", "-detailed-exitcode"]);
    assert!(out.contains("No changes"), "{out}");
    sim.assert_schema_clean();
}

/// What is inside each image: the package manifest read in the booted image,
/// `packages_changed` since the previous validated image (none for an
/// unchanged recipe, the new package when `packages` grows), and the opt-in
/// `minimal` check naming a package a command installed behind the recipe's
/// back, which fails the build and keeps the current image.
#[test]
fn package_changes_are_reported_and_minimal_names_strays() {
    let sim = Sim::start();
    let tf = TfDir::new();
    let store = tf.path().join("store");
    let family = "pkgs";
    let config = |packages: &str, month: &str, command: &str| {
        format!(
            r#"
resource "golden_image" "x" {{
  platform = "proxmox"
  family   = "{family}"
  source {{ template = "debian-12-base" }}
  packages = [{packages}]
  triggers = {{ month = "{month}" }}
  provision {{
    commands = [{command}]
  }}
  smoke_test {{
    checks  = ["boot", "guest_agent", "cloud_init", "minimal"]
    timeout = "2m"
  }}
  retention {{ keep = 5 }}
}}

output "changed" {{ value = golden_image.x.packages_changed }}
"#
        )
    };
    let changed = |tf: &TfDir| tf.state_json()["values"]["outputs"]["changed"]["value"].clone();

    write(&tf, &sim, &store, &config("\"curl\"", "1", "\"true\""));
    tf.apply();
    assert!(
        changed(&tf).is_null(),
        "the first image has nothing to compare with"
    );
    let first = format!("{family}-{}-001", today());
    let state = tf.state_json();
    let checks = &resource(&state, "golden_image.x")["validation"]["checks"];
    let minimal = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "minimal")
        .expect("the minimal check ran");
    assert_eq!(minimal["ok"], true, "{minimal}");

    // Same recipe, rebuilt by a trigger: nothing changed.
    write(&tf, &sim, &store, &config("\"curl\"", "2", "\"true\""));
    tf.apply();
    assert_eq!(
        changed(&tf),
        json!({"since": first, "added": [], "removed": [], "upgraded": []})
    );
    let second = format!("{family}-{}-002", today());

    // One more package: it is the change.
    write(
        &tf,
        &sim,
        &store,
        &config("\"curl\", \"jq\"", "2", "\"true\""),
    );
    tf.apply();
    assert_eq!(
        changed(&tf),
        json!({"since": second, "added": ["jq 1.0-1"], "removed": [], "upgraded": []})
    );
    let third = format!("{family}-{}-003", today());

    // A command installs what `packages` does not list: minimal names it,
    // the candidate is marked failed, the current image stays.
    write(
        &tf,
        &sim,
        &store,
        &config("\"curl\", \"jq\"", "2", "\"apt-get install -y htop\""),
    );
    let err = tf.fails(&["apply", "-auto-approve", "-no-color", "-input=false"]);
    assert!(
        err.contains("minimal")
            && err.contains("installed but neither in the source image nor in packages: htop"),
        "{err}"
    );
    assert_eq!(resource(&tf.state_json(), "golden_image.x")["name"], third);
    sim.assert_schema_clean();
}
