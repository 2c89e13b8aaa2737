//! The lifecycle of one family on `platform = "proxmox"`, through the real
//! terraform CLI against the PVE simulator (instant backend), the same steps
//! as the local lifecycle test plus what only Proxmox has: linked clones that
//! pin a template, tags in PVE's charset, candidate names, copies of golden
//! templates that are not golden's. Every request and response is checked
//! against the PVE schema. A last test runs a real guest behind the simulator.

use std::path::Path;

use serde_json::{json, Value};

use super::sim::Sim;
use super::util::{actions, base_image, change, qemu_processes, resource, strings, today, TfDir};

const FAMILY: &str = "e2e-pve";

struct Recipe<'a> {
    revision: &'a str,
    smoke_commands: &'a [&'a str],
    on_destroy: &'a str,
    keep: u32,
}

const V1: Recipe = Recipe {
    revision: "one",
    smoke_commands: &["test -f /etc/golden-e2e"],
    on_destroy: "keep",
    keep: 2,
};

fn config(r: &Recipe) -> String {
    let smoke: Vec<String> = r.smoke_commands.iter().map(|c| format!("{c:?}")).collect();
    format!(
        r#"
resource "golden_image" "x" {{
  platform = "proxmox"
  family   = "{FAMILY}"
  source {{ template = "debian-12-base" }}
  packages = ["curl"]
  provision {{
    files    = {{ "/etc/golden-e2e" = "{rev}" }}
    commands = ["grep -qx {rev} /etc/golden-e2e"]
  }}
  # Mixed case and spaces: PVE tags cannot hold them, the state must not churn.
  tags = {{ os = "Debian 12", type = "minimal", Team = "Platform/Infra" }}
  smoke_test {{
    commands = [{smoke}]
    timeout  = "2m"
  }}
  retention {{ keep = {keep} }}
  on_destroy = "{on_destroy}"
}}

data "golden_latest_image" "x" {{
  platform   = "proxmox"
  family     = "{FAMILY}"
  depends_on = [golden_image.x]
}}

data "golden_images" "all" {{
  platform   = "proxmox"
  family     = "{FAMILY}"
  depends_on = [golden_image.x]
}}

output "latest"    {{ value = data.golden_latest_image.x.name }}
output "latest_id" {{ value = data.golden_latest_image.x.image_id }}
output "all"       {{ value = data.golden_images.all.names }}
"#,
        rev = r.revision,
        smoke = smoke.join(", "),
        on_destroy = r.on_destroy,
        keep = r.keep,
    )
}

fn name(n: u32) -> String {
    format!("{FAMILY}-{}-{n:03}", today())
}

fn write(tf: &TfDir, sim: &Sim, store: &Path, r: &Recipe) {
    tf.write_with_provider(
        &sim.provider_block(store, "    agent_timeout = \"30s\"\n"),
        &config(r),
    );
}

fn apply_plan(tf: &TfDir) -> String {
    tf.ok(&[
        "apply",
        "-auto-approve",
        "-no-color",
        "-input=false",
        "tfplan",
    ])
}

fn plan_prune(plan: &Value) -> Vec<String> {
    strings(&change(plan, "golden_image.x")["change"]["after"]["prune"])
}

/// golden's images of the family on the simulator: (VM name, status tag).
fn family_vms(sim: &Sim) -> Vec<(String, String)> {
    sim.golden_vms()
        .into_iter()
        .filter(|(_, tags)| tags.contains(&format!("golden-family.{FAMILY}")))
        // VMs cloned from golden templates inherit their tags; they are not images.
        .filter(|(n, _)| !["copy-of-golden", "handmade", "app-server"].contains(&n.as_str()))
        .map(|(n, tags)| {
            let status = tags
                .split(';')
                .find_map(|t| {
                    t.strip_prefix("golden-")
                        .filter(|s| ["candidate", "validated", "failed"].contains(s))
                })
                .unwrap_or("?")
                .to_owned();
            (n, status)
        })
        .collect()
}

fn validated(names: &[String]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| (n.clone(), "validated".to_owned()))
        .collect()
}

/// No smoke clone, no candidate, no ledger: nothing temporary survives a run.
fn assert_nothing_leaked(sim: &Sim, dirs: &[&TfDir]) {
    let temps: Vec<(String, String)> = sim
        .golden_vms()
        .into_iter()
        .filter(|(_, tags)| tags.contains("golden-smoke") || tags.contains("golden-candidate"))
        .collect();
    assert!(temps.is_empty(), "temporary VMs left: {temps:?}");
    let locked: Vec<Value> = sim
        .vms()
        .into_iter()
        .filter(|v| !v["lock"].is_null() && v["lock"] != "")
        .collect();
    assert!(locked.is_empty(), "VMs left locked: {locked:?}");
    for tf in dirs {
        assert!(
            tf.ledgers().is_empty(),
            "cleanup ledgers left: {:?}",
            tf.ledgers()
        );
    }
    sim.assert_schema_clean();
}

fn outputs(tf: &TfDir) -> Value {
    serde_json::from_str(&tf.ok(&["output", "-json"])).unwrap()
}

/// A user's full copy of a golden template (it inherits tags and notes) and a
/// hand-made template claiming the family: golden must never list or touch them.
fn plant_foreign_vms(sim: &Sim, golden_vmid: u64) {
    sim.admin_post(
        "/clone",
        json!({"vmid": golden_vmid, "newid": 7001, "name": "copy-of-golden", "full": true}),
    );
    sim.admin_post(
        "/vms",
        json!({"vmid": 7002, "name": "handmade", "template": true,
               "tags": format!("golden;golden-family.{FAMILY};golden-validated"),
               "description": "made by hand"}),
    );
}

fn assert_foreign_vms_untouched(sim: &Sim) {
    for n in ["copy-of-golden", "handmade"] {
        assert!(
            sim.vm_named(n).is_some(),
            "golden deleted a VM it did not build: {n}"
        );
    }
}

fn vmid_of(sim: &Sim, vm_name: &str) -> u64 {
    sim.vm_named(vm_name)
        .unwrap_or_else(|| panic!("no VM named {vm_name}"))["vmid"]
        .as_u64()
        .unwrap()
}

#[test]
fn proxmox_family_from_build_to_destroy_on_the_simulator() {
    let sim = Sim::start();
    let a = TfDir::new();
    let store = a.path().join("store");
    write(&a, &sim, &store, &V1);

    // 1. The first apply builds -001 as a candidate, validates it, publishes
    //    it under the family name with the validated tag.
    a.apply();
    let st = a.state_json();
    let x = resource(&st, "golden_image.x");
    assert_eq!(x["name"], name(1));
    assert_eq!(x["validated"], true);
    assert_eq!(x["id"], format!("proxmox/{FAMILY}"));
    let checks: Vec<&str> = x["validation"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        ["boot", "guest_agent", "cloud_init", "ssh", "commands[0]"]
    );
    assert_eq!(family_vms(&sim), validated(&[name(1)]));
    let vm1 = sim.vm_named(&name(1)).unwrap();
    assert_eq!(vm1["template"], true, "a golden image is a PVE template");
    assert_eq!(
        x["image_id"],
        vm1["vmid"].to_string(),
        "image_id is the template's VM id"
    );
    let tags = vm1["tags"].as_str().unwrap();
    assert_eq!(
        tags,
        format!("golden;golden-family.{FAMILY};golden-validated;os.debian_12;team.platform_infra;type.minimal")
    );
    let out = outputs(&a);
    assert_eq!(out["latest"]["value"], name(1));
    assert_eq!(out["latest_id"]["value"], vm1["vmid"].to_string());
    assert_eq!(strings(&out["all"]["value"]), [name(1)]);
    assert_nothing_leaked(&sim, &[&a]);
    plant_foreign_vms(&sim, vm1["vmid"].as_u64().unwrap());

    // Tags round-trip: PVE sorted and charset-mapped them, the state still
    // holds the user's, and a second plan shows no change at all.
    let st = a.run(&["plan", "-detailed-exitcode", "-no-color", "-input=false"]);
    assert_eq!(
        st.status.code(),
        Some(0),
        "second plan must show no changes"
    );

    // 2. A recipe change is an in-place update that builds -002.
    let v2 = Recipe {
        revision: "two",
        ..V1
    };
    write(&a, &sim, &store, &v2);
    let plan = a.plan_json();
    assert_eq!(actions(&plan, "golden_image.x"), ["update"]);
    assert_eq!(
        change(&plan, "golden_image.x")["change"]["after_unknown"]["name"],
        true
    );
    assert!(plan_prune(&plan).is_empty());
    apply_plan(&a);
    assert_eq!(family_vms(&sim), validated(&[name(1), name(2)]));

    // 3. keep = 2: the plan before the third build prunes the oldest.
    let v3 = Recipe {
        revision: "three",
        ..V1
    };
    write(&a, &sim, &store, &v3);
    let plan = a.plan_json();
    assert_eq!(plan_prune(&plan), [name(1)]);
    apply_plan(&a);
    assert_eq!(family_vms(&sim), validated(&[name(2), name(3)]));
    assert_nothing_leaked(&sim, &[&a]);

    // A change of tags alone re-tags every image in place: no rebuild, and
    // a person's notes on a template survive the metadata rewrite.
    let vm3 = vmid_of(&sim, &name(3));
    sim.api_set_description(
        vm3,
        &format!("Owner: team-platform\n\n{}", sim.description(vm3)),
    );
    let retagged = config(&v3).replace("type = \"minimal\"", "type = \"base\"");
    a.write_with_provider(
        &sim.provider_block(&store, "    agent_timeout = \"30s\"\n"),
        &retagged,
    );
    let plan = a.plan_json();
    assert_eq!(actions(&plan, "golden_image.x"), ["update"]);
    assert_ne!(
        change(&plan, "golden_image.x")["change"]["after_unknown"]["name"],
        true,
        "a tags change must not rebuild"
    );
    apply_plan(&a);
    for n in [name(2), name(3)] {
        let tags = sim.vm_named(&n).unwrap()["tags"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            tags.contains("type.base") && !tags.contains("type.minimal"),
            "{n}: {tags}"
        );
    }
    assert!(
        sim.description(vm3).starts_with("Owner: team-platform"),
        "{}",
        sim.description(vm3)
    );
    assert_eq!(family_vms(&sim), validated(&[name(2), name(3)]));

    // 4. A template with a linked clone survives retention and the plan says
    //    why; once the clone is gone the next plan prunes it.
    let vm2 = vmid_of(&sim, &name(2));
    sim.admin_post(
        "/clone",
        json!({"vmid": vm2, "newid": 7010, "name": "app-server", "full": false}),
    );
    let keep1 = Recipe { keep: 1, ..v3 };
    write(&a, &sim, &store, &keep1);
    let out = a.ok(&["plan", "-no-color", "-input=false", "-out=tfplan"]);
    // Diagnostics wrap long lines; compare with whitespace collapsed.
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        out.contains(&format!("Image {} Kept", name(2)))
            && out.contains("linked clones still use it (VM 7010)"),
        "the plan must name the kept template and why:\n{out}"
    );
    let plan: Value = serde_json::from_str(&a.ok(&["show", "-json", "tfplan"])).unwrap();
    assert!(plan_prune(&plan).is_empty());
    apply_plan(&a);
    assert_eq!(family_vms(&sim), validated(&[name(2), name(3)]));
    let images = resource(&a.state_json(), "golden_image.x")["images"].clone();
    let pinned = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name(2))
        .unwrap()
        .clone();
    assert_eq!(pinned["protected"], "linked clones still use it (VM 7010)");
    sim.api_destroy(7010);
    let plan = a.plan_json();
    assert_eq!(plan_prune(&plan), [name(2)]);
    apply_plan(&a);
    assert_eq!(family_vms(&sim), validated(&[name(3)]));

    // 5. A failing smoke-test command fails the apply with the report, leaves
    //    the candidate as failed under its candidate name, deletes nothing.
    let v4 = Recipe {
        revision: "four",
        smoke_commands: &["test -f /etc/golden-e2e", "echo boom; exit 1"],
        ..V1
    };
    write(&a, &sim, &store, &v4);
    let err = a.fails(&["apply", "-auto-approve", "-no-color", "-input=false"]);
    assert!(
        err.contains(&format!("Unable to Smoke-Test Image {}", name(4))),
        "{err}"
    );
    assert!(
        err.contains("FAILED commands[1]") && err.contains("boom"),
        "{err}"
    );
    assert_eq!(
        family_vms(&sim),
        [
            (format!("candidate-{}", name(4)), "failed".into()),
            (name(3), "validated".into()),
        ]
    );
    assert_eq!(resource(&a.state_json(), "golden_image.x")["name"], name(3));
    assert_eq!(
        outputs(&a)["latest"]["value"],
        name(3),
        "a failed image is never the latest"
    );
    assert_nothing_leaked(&sim, &[&a]);

    // 6. Two concurrent applies from two states get distinct build numbers.
    let v5 = Recipe {
        revision: "five",
        ..V1
    };
    write(&a, &sim, &store, &v5);
    let b = TfDir::new();
    write(&b, &sim, &store, &v5);
    let args = ["apply", "-auto-approve", "-no-color", "-input=false"];
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| a.run(&args));
        let tb = s.spawn(|| b.run(&args));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert!(
        ra.status.success() && rb.status.success(),
        "both concurrent applies must succeed"
    );
    let vms = family_vms(&sim);
    assert!(vms.contains(&(name(5), "validated".into())), "{vms:?}");
    assert!(vms.contains(&(name(6), "validated".into())), "{vms:?}");
    assert_nothing_leaked(&sim, &[&a, &b]);

    // 7. Import adopts the family.
    b.ok(&["state", "rm", "golden_image.x"]);
    let bad = b.fails(&[
        "import",
        "-no-color",
        "-input=false",
        "golden_image.x",
        "proxmox/no-such-family",
    ]);
    assert!(bad.contains("Image Family Not Found"), "{bad}");
    b.ok(&[
        "import",
        "-no-color",
        "-input=false",
        "golden_image.x",
        &format!("proxmox/{FAMILY}"),
    ]);
    let x = resource(&b.state_json(), "golden_image.x").clone();
    assert_eq!(x["name"], name(6));
    assert_eq!(x["validated"], true);

    // 8. Destroy keeps the templates by default; on_destroy = "delete" removes
    //    every image golden built for the family and nothing else.
    b.ok(&["destroy", "-auto-approve", "-no-color", "-input=false"]);
    assert!(family_vms(&sim).len() >= 2);
    let v6 = Recipe {
        on_destroy: "delete",
        ..v5
    };
    write(&a, &sim, &store, &v6);
    a.apply();
    a.ok(&["destroy", "-auto-approve", "-no-color", "-input=false"]);
    assert!(family_vms(&sim).is_empty(), "{:?}", family_vms(&sim));
    assert_foreign_vms_untouched(&sim);
    assert!(
        sim.vm_named("debian-12-base").is_some(),
        "the source template stays"
    );
    assert_nothing_leaked(&sim, &[&a, &b]);
}

/// The real thing behind the API: the simulator's QEMU backend boots the
/// Debian base image, so the agent-based build (file-write, exec, cloud-init
/// clean, shutdown) and the smoke test (cloud-init, sshd and the injected
/// key, commands) meet a real qemu-guest-agent and cloud-init.
#[test]
#[ignore = "boots QEMU guests behind the simulator; run by make test"]
fn guest_build_and_smoke_test_on_the_simulator_qemu_backend() {
    let base = base_image();
    let tf = TfDir::new();
    let store = tf.path().join("store");
    let simstate = tf.path().join("simstate");
    let sim = Sim::start_with(&[
        "--backend",
        "qemu",
        "--base-image",
        base.to_str().unwrap(),
        "--state-dir",
        simstate.to_str().unwrap(),
    ]);
    let body = format!(
        r#"
resource "golden_image" "x" {{
  platform = "proxmox"
  family   = "{FAMILY}-qemu"
  source {{ template = "debian-12-base" }}
  provision {{
    files    = {{
      "/etc/golden-e2e" = "qemu"
      "/etc/motd"       = "grün ✓ golden"
    }}
    commands = ["grep -qx qemu /etc/golden-e2e"]
  }}
  tags = {{ os = "debian-12", type = "minimal" }}
  smoke_test {{
    checks   = ["boot", "guest_agent", "cloud_init", "ssh"]
    commands = ["test -f /etc/golden-e2e", "test ! -e /var/lib/golden/provision.sh", "grep -qx 'grün ✓ golden' /etc/motd"]
    timeout  = "15m"
  }}
}}
"#
    );
    tf.write_with_provider(
        &sim.provider_block(&store, "    agent_timeout = \"10m\"\n"),
        &body,
    );
    tf.apply();
    let x = resource(&tf.state_json(), "golden_image.x").clone();
    assert_eq!(x["validated"], true);
    let checks = x["validation"]["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "boot",
            "guest_agent",
            "cloud_init",
            "ssh",
            "commands[0]",
            "commands[1]",
            "commands[2]"
        ]
    );
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:?}");
    let vm = sim
        .vm_named(x["name"].as_str().unwrap())
        .expect("the published template");
    assert_eq!(vm["template"], true);
    assert_nothing_leaked(&sim, &[&tf]);
    assert!(
        qemu_processes(simstate.to_str().unwrap()).is_empty(),
        "guests still running: {:?}",
        qemu_processes(simstate.to_str().unwrap())
    );
}

/// A one-file HTTP server on loopback (the "internet" PVE downloads from);
/// counts the downloads.
struct ImageServer {
    url: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ImageServer {
    fn start(body: &'static [u8]) -> ImageServer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/images/tiny-cloud.qcow2",
            listener.local_addr().unwrap()
        );
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(body);
            }
        });
        ImageServer { url, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `source.url`: PVE itself downloads the cloud image (`download-url`, content
/// `import`), verifying the checksum, once per checksum; the candidate is
/// created with `import-from`. A layered family builds on the newest
/// validated image of the first. A wrong checksum fails clearly.
#[test]
fn url_source_is_downloaded_by_pve_once_and_layering_builds_on_it() {
    const IMAGE: &[u8] = b"QFI\xfb not really a qcow2, but the simulator only moves bytes";
    let server = ImageServer::start(IMAGE);
    let sim = Sim::start();
    let tf = TfDir::new();
    let store = tf.path().join("store");
    let config = |checksum: &str, rev: &str| {
        format!(
            r#"
resource "golden_image" "cloud" {{
  platform = "proxmox"
  family   = "e2e-cloud"
  source {{
    url      = "{url}"
    checksum = "sha256:{checksum}"
  }}
  provision {{ files = {{ "/etc/rev" = "{rev}" }} }}
  smoke_test {{ commands = ["grep -qx {rev} /etc/rev"] }}
}}

resource "golden_image" "app" {{
  platform = "proxmox"
  family   = "e2e-app"
  source {{ family = golden_image.cloud.family }}
  provision {{ files = {{ "/etc/app" = "on {rev}" }} }}
  # The layer sees what the base family's build wrote.
  smoke_test {{ commands = ["grep -qx {rev} /etc/rev", "test -f /etc/app"] }}
  depends_on = [golden_image.cloud]
}}
"#,
            url = server.url,
        )
    };
    tf.write_with_provider(
        &sim.provider_block(&store, ""),
        &config(&sha256_hex(IMAGE), "a"),
    );
    tf.apply();
    assert_eq!(server.hits(), 1, "PVE downloads the image once");
    let st = tf.state_json();
    assert_eq!(resource(&st, "golden_image.cloud")["validated"], true);
    assert_eq!(resource(&st, "golden_image.app")["validated"], true);
    let volume = format!("local:import/golden-{}.qcow2", &sha256_hex(IMAGE)[..16]);
    let cloud = sim.vm_named(&format!("e2e-cloud-{}-001", today())).unwrap();
    assert!(
        cloud["config"].to_string().contains("scsi0"),
        "the imported disk is the boot disk: {cloud}"
    );

    // A rebuild reuses the downloaded volume.
    tf.write_with_provider(
        &sim.provider_block(&store, ""),
        &config(&sha256_hex(IMAGE), "b"),
    );
    tf.apply();
    assert_eq!(server.hits(), 1, "the second build must reuse {volume}");
    assert!(sim
        .vm_named(&format!("e2e-cloud-{}-002", today()))
        .is_some());
    assert!(sim.vm_named(&format!("e2e-app-{}-002", today())).is_some());

    // A checksum that does not match fails the download task with PVE's words.
    let wrong = "0".repeat(64);
    tf.write_with_provider(&sim.provider_block(&store, ""), &config(&wrong, "c"));
    let out = tf.fails(&["apply", "-auto-approve", "-no-color", "-input=false"]);
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(out.contains("checksum mismatch"), "{out}");
    assert_nothing_leaked(&sim, &[&tf]);
}
