//! The privilege table of `docs/index.md`, proven rather than read: the
//! simulator models PVE's permission system (tokens, roles, ACLs,
//! privilege separation, the checks each call makes, the lists it filters),
//! the documented role runs every flow, and each privilege taken away makes
//! golden fail (or keep an image) with a message naming it.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::json;

use super::sim::Sim;
use super::sim::{sha256_hex, ImageServer};
use super::util::{today, TfDir};

const TOKEN_ID: &str = "golden@pve!terraform";
const SECRET: &str = "6a3c0f1e-golden-test";
const IMAGE: &[u8] = b"QFI\xfb a cloud image, as far as the simulator cares";

/// The privileges the docs' table lists, in its first column.
fn documented_privileges() -> BTreeSet<String> {
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/index.md"))
        .expect("docs/index.md");
    let section = docs
        .split("### API token and privileges")
        .nth(1)
        .expect("the privileges section")
        .split("\n### ")
        .next()
        .unwrap();
    let table: BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let first = l.split('|').nth(1).unwrap_or("");
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    // The `pveum role add` command grants exactly the table's privileges.
    let command = section
        .split("--privs \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the pveum role add command");
    let granted: BTreeSet<String> = command
        .split_whitespace()
        .filter(|w| *w != "\\")
        .map(str::to_owned)
        .collect();
    assert_eq!(table, granted, "the table and the pveum command disagree");
    assert!(table.len() > 10, "{table:?}");
    table
}

/// Gives `golden@pve` and its privilege-separated token a role with `privs`
/// on `/`.
fn grant(sim: &Sim, privs: &BTreeSet<String>) {
    sim.admin_put(
        "/access",
        json!({
            "users": ["golden@pve"],
            "roles": {"GoldenBuilder": privs},
            "tokens": [{"id": TOKEN_ID, "secret": SECRET, "privsep": true}],
            "acl": [
                {"path": "/", "user": "golden@pve", "role": "GoldenBuilder"},
                {"path": "/", "token": TOKEN_ID, "role": "GoldenBuilder"}
            ]
        }),
    );
}

/// A template without a cloud-init drive or a NIC (golden adds the drive),
/// and a cloud image on loopback for `source.url`.
fn sources(sim: &Sim) -> ImageServer {
    sim.admin_post(
        "/vms",
        json!({"vmid": 8000, "name": "bare-base", "template": true}),
    );
    ImageServer::start(IMAGE)
}

/// Both build flows, each keeping one image.
fn config(tf: &TfDir, sim: &Sim, server: &ImageServer, rev: &str) {
    let store = tf.path().join("store");
    let body = format!(
        r#"
resource "golden_image" "from_template" {{
  platform = "proxmox"
  family   = "perm-tpl"
  source {{ template = "bare-base" }}
  provision {{ files = {{ "/etc/rev" = "{rev}" }} }}
  smoke_test {{ commands = ["grep -qx {rev} /etc/rev"] }}
  retention {{ keep = 1 }}
}}

resource "golden_image" "from_url" {{
  platform = "proxmox"
  family   = "perm-url"
  source {{
    url      = "{url}"
    checksum = "sha256:{sum}"
  }}
  provision {{ files = {{ "/etc/rev" = "{rev}" }} }}
  smoke_test {{ commands = ["grep -qx {rev} /etc/rev"] }}
  retention {{ keep = 1 }}
}}
"#,
        url = server.url,
        sum = sha256_hex(IMAGE),
    );
    tf.write_with_provider(
        &sim.provider_block_with_token(
            &store,
            &format!("{TOKEN_ID}={SECRET}"),
            "    agent_timeout = \"30s\"\n",
        ),
        &body,
    );
}

fn refusals(sim: &Sim) -> Vec<String> {
    sim.requests()
        .iter()
        .filter(|r| r["status"] == 403)
        .map(|r| format!("{} {}", r["method"], r["path"]))
        .collect()
}

fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The documented role, on a privilege-separated token, builds from a
/// template and from a URL, rebuilds, and prunes; PVE refuses nothing.
#[test]
fn the_documented_role_runs_every_flow() {
    let privs = documented_privileges();
    let sim = Sim::start_with(&["--task-ms", "20"]);
    grant(&sim, &privs);
    let server = sources(&sim);
    let tf = TfDir::new();
    config(&tf, &sim, &server, "one");
    tf.apply();
    config(&tf, &sim, &server, "two");
    tf.apply();
    for family in ["perm-tpl", "perm-url"] {
        let kept: Vec<String> = sim
            .golden_vms()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|n| n.starts_with(family))
            .collect();
        assert_eq!(
            kept,
            vec![format!("{family}-{}-002", today())],
            "kept {kept:?}"
        );
    }
    assert!(
        refusals(&sim).is_empty(),
        "PVE refused: {:?}",
        refusals(&sim)
    );
    // The token's tasks name it as PVE does: user and token apart.
    let task = sim
        .calls()
        .into_iter()
        .find(|c| c.method == "GET" && c.path.ends_with("/status") && c.path.contains("/tasks/"))
        .expect("a task status read");
    let status = sim.api(reqwest::Method::GET, &task.path);
    assert_eq!(
        (status["user"].as_str(), status["tokenid"].as_str()),
        (Some("golden@pve"), Some("terraform"))
    );
    sim.assert_schema_clean();
}

/// Each privilege of the table taken away, on a fresh cluster: the build
/// fails naming it (PVE's 403, or golden's account of what the call needs),
/// except `Datastore.Audit`, whose absence PVE hides by leaving disks out of
/// a listing: golden then keeps the image and the plan says why.
#[test]
fn each_documented_privilege_is_needed_and_named() {
    let privs = documented_privileges();
    let mut unnamed = Vec::new();
    for missing in &privs {
        if missing == "Datastore.Audit" {
            continue;
        }
        let sim = Sim::start_with(&["--task-ms", "20"]);
        let mut role = privs.clone();
        role.remove(missing);
        grant(&sim, &role);
        let server = sources(&sim);
        let tf = TfDir::new();
        config(&tf, &sim, &server, "one");
        let out = flat(&tf.fails(&["apply", "-auto-approve", "-no-color", "-input=false"]));
        if !out.contains(missing.as_str()) {
            unnamed.push(format!("{missing}: {out}"));
        }
        sim.assert_schema_clean();
    }
    assert!(
        unnamed.is_empty(),
        "failures that do not name the missing privilege:\n{}",
        unnamed.join("\n\n")
    );
}

#[test]
fn without_datastore_audit_images_are_kept_and_the_plan_says_why() {
    let privs = documented_privileges();
    let sim = Sim::start_with(&["--task-ms", "20"]);
    grant(&sim, &privs);
    let server = sources(&sim);
    let tf = TfDir::new();
    config(&tf, &sim, &server, "one");
    tf.apply();
    let mut role = privs.clone();
    role.remove("Datastore.Audit");
    grant(&sim, &role);
    config(&tf, &sim, &server, "two");
    let plan = flat(&tf.ok(&["plan", "-no-color", "-input=false"]));
    assert!(
        plan.contains("Datastore.Audit on /storage/local-lvm"),
        "the plan does not say why: {plan}"
    );
    tf.apply();
    let kept: Vec<String> = sim
        .golden_vms()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|n| n.starts_with("perm-tpl"))
        .collect();
    assert_eq!(
        kept.len(),
        2,
        "an image went although linked clones could not be ruled out: {kept:?}"
    );
    assert!(
        refusals(&sim).is_empty(),
        "PVE refused: {:?}",
        refusals(&sim)
    );
    sim.assert_schema_clean();
}
