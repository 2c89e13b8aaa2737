//! What only Proxmox has, through the real terraform CLI against the PVE
//! simulator (the platform-neutral lifecycle is the conformance scenario,
//! `conformance/proxmox.rs`): re-tagging templates in PVE's tag charset
//! without touching people's notes, linked clones that pin a template, a
//! `url` source PVE downloads itself, and a real guest behind the simulator.
//! Every request and response is checked against the PVE schema.

use std::path::Path;

use serde_json::{json, Value};

use super::sim::{sha256_hex, ImageServer, Sim};
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
        .filter(|(n, _)| n != "app-server")
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

fn vmid_of(sim: &Sim, vm_name: &str) -> u64 {
    sim.vm_named(vm_name)
        .unwrap_or_else(|| panic!("no VM named {vm_name}"))["vmid"]
        .as_u64()
        .unwrap()
}

/// A change of tags alone re-tags every image in place (no rebuild) and a
/// person's notes on a template survive the metadata rewrite; on a directory
/// storage (qcow2), where a linked clone's volume names its base, a template
/// with a linked clone survives retention and the plan says why, until the
/// clone is gone. (On LVM-thin it does not: `proxmox_fidelity.rs`.)
#[test]
fn proxmox_retag_in_place_and_linked_clones_pin_templates() {
    let sim = Sim::start_on("dir");
    let a = TfDir::new();
    let store = a.path().join("store");
    write(&a, &sim, &store, &V1);
    a.apply();
    let v2 = Recipe {
        revision: "two",
        ..V1
    };
    write(&a, &sim, &store, &v2);
    a.apply();
    assert_eq!(family_vms(&sim), validated(&[name(1), name(2)]));

    // Tags alone: an update that re-tags both templates and keeps the notes.
    let vm2 = vmid_of(&sim, &name(2));
    sim.api_set_description(
        vm2,
        &format!("Owner: team-platform\n\n{}", sim.description(vm2)),
    );
    let retagged = config(&v2).replace("type = \"minimal\"", "type = \"base\"");
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
    for n in [name(1), name(2)] {
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
        sim.description(vm2).starts_with("Owner: team-platform"),
        "{}",
        sim.description(vm2)
    );
    assert_eq!(family_vms(&sim), validated(&[name(1), name(2)]));
    let st = a.run(&["plan", "-detailed-exitcode", "-no-color", "-input=false"]);
    assert_eq!(
        st.status.code(),
        Some(0),
        "re-tagged images read back as configured"
    );

    // A linked clone pins -001: keep = 1 prunes nothing, and the plan says why.
    let vm1 = vmid_of(&sim, &name(1));
    sim.admin_post(
        "/clone",
        json!({"vmid": vm1, "newid": 7010, "name": "app-server", "full": false}),
    );
    let keep1 = config(&Recipe { keep: 1, ..v2 }).replace("type = \"minimal\"", "type = \"base\"");
    a.write_with_provider(
        &sim.provider_block(&store, "    agent_timeout = \"30s\"\n"),
        &keep1,
    );
    let out = a.ok(&["plan", "-no-color", "-input=false", "-out=tfplan"]);
    // Diagnostics wrap long lines; compare with whitespace collapsed.
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        out.contains(&format!("Image {} Kept", name(1)))
            && out.contains("linked clones still use it (VM 7010)"),
        "the plan must name the kept template and why:\n{out}"
    );
    let plan: Value = serde_json::from_str(&a.ok(&["show", "-json", "tfplan"])).unwrap();
    assert!(plan_prune(&plan).is_empty());
    apply_plan(&a);
    assert_eq!(family_vms(&sim), validated(&[name(1), name(2)]));
    let images = resource(&a.state_json(), "golden_image.x")["images"].clone();
    let pinned = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name(1))
        .unwrap()
        .clone();
    assert_eq!(pinned["protected"], "linked clones still use it (VM 7010)");
    sim.api_destroy(7010);
    let plan = a.plan_json();
    assert_eq!(plan_prune(&plan), [name(1)]);
    apply_plan(&a);
    assert_eq!(family_vms(&sim), validated(&[name(2)]));
    assert_nothing_leaked(&sim, &[&a]);
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
