//! The conformance scenario on `platform = "proxmox"`: the PVE simulator's
//! instant backend, every request and response checked against the PVE
//! schema. The token reaches the provider through the environment, the way
//! CI passes it.

use serde_json::{json, Value};

use super::{Harness, Secret};
use crate::e2e::sim::Sim;

const FAMILY: &str = "e2e-pve";
/// VMs the harness plants that are not golden's.
const COPY_OF_GOLDEN: u64 = 7001;
const HANDMADE: u64 = 7002;
/// The out-of-band golden image.
const OUT_OF_BAND: u64 = 7003;

const FENCE_OPEN: &str = "```json golden-metadata\n";
const FENCE_CLOSE: &str = "\n```";

pub struct Proxmox {
    pub sim: Sim,
    _dir: tempfile::TempDir,
    store: std::path::PathBuf,
}

impl Proxmox {
    pub fn new() -> Proxmox {
        let dir = tempfile::Builder::new()
            .prefix("golden-e2e-pve-")
            .tempdir()
            .unwrap();
        let store = dir.path().join("store");
        Proxmox {
            sim: Sim::start(),
            _dir: dir,
            store,
        }
    }

    fn status_of(tags: &str) -> String {
        tags.split(';')
            .find_map(|t| {
                t.strip_prefix("golden-")
                    .filter(|s| ["candidate", "validated", "failed"].contains(s))
            })
            .unwrap_or("?")
            .to_owned()
    }
}

impl Harness for Proxmox {
    fn platform(&self) -> &'static str {
        "proxmox"
    }

    fn family(&self) -> &'static str {
        FAMILY
    }

    fn provider_block(&self) -> String {
        format!(
            "provider \"golden\" {{\n  local {{\n    store_dir = \"{}\"\n  }}\n  proxmox {{\n    node          = \"{}\"\n    agent_timeout = \"30s\"\n  }}\n}}\n",
            self.store.display(),
            self.sim.node
        )
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PROXMOX_VE_ENDPOINT".into(), self.sim.endpoint.clone()),
            ("PROXMOX_VE_API_TOKEN".into(), self.sim.token.clone()),
            ("PROXMOX_VE_INSECURE".into(), "true".into()),
        ]
    }

    fn source_block(&self) -> String {
        "source { template = \"debian-12-base\" }".into()
    }

    fn recipe_extras(&self) -> &'static str {
        "packages = [\"curl\"]"
    }

    /// The instant backend's shell has no `>&2` (it writes a file named
    /// `&2`), so the failing command prints to stdout.
    fn failing_command(&self) -> &'static str {
        "echo boom; exit 1"
    }

    /// golden's VMs of the family; a VM that is not yet (or never) validated
    /// carries a candidate name, listed here under its image name.
    fn images(&self) -> Vec<(String, String)> {
        let fam_tag = format!("golden-family.{FAMILY}");
        let mut v: Vec<(String, String)> = self
            .sim
            .vms()
            .into_iter()
            .filter(|vm| {
                let id = vm["vmid"].as_u64().unwrap_or(0);
                // Planted copies and clones carry the tags but are not images.
                id != COPY_OF_GOLDEN && id != HANDMADE
            })
            .filter(|vm| {
                vm["tags"]
                    .as_str()
                    .unwrap_or("")
                    .split(';')
                    .any(|t| t == fam_tag)
            })
            .map(|vm| {
                let name = vm["name"].as_str().unwrap_or("");
                (
                    name.strip_prefix("candidate-").unwrap_or(name).to_owned(),
                    Self::status_of(vm["tags"].as_str().unwrap_or("")),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// A published image is a PVE template named after the image, its VM id
    /// is `image_id`, and its tags are the user's in PVE's charset.
    fn check_published(&self, name: &str, x: &Value) {
        let vm = self.sim.vm_named(name).expect("the published VM");
        assert_eq!(vm["template"], true, "a golden image is a PVE template");
        assert_eq!(
            x["image_id"],
            vm["vmid"].to_string(),
            "image_id is the template's VM id"
        );
        assert_eq!(
            vm["tags"].as_str().unwrap(),
            format!("golden;golden-family.{FAMILY};golden-validated;os.debian_12;team.platform_infra;type.minimal")
        );
    }

    /// A failed image keeps its candidate name: no name-based lookup of the
    /// family (a regex on `^<family>-`) can match it.
    fn check_unpublished(&self, name: &str) {
        assert!(
            self.sim.vm_named(name).is_none(),
            "a failed image carries its published name"
        );
        assert!(
            self.sim.vm_named(&format!("candidate-{name}")).is_some(),
            "the failed candidate-{name} is gone"
        );
    }

    /// A template with `like`'s tags and a note rewritten for its own VM id,
    /// build date and number: what golden wrote in a state since lost.
    fn seed_out_of_band(&self, like: &str, name: &str) {
        let vm = self.sim.vm_named(like).expect("the image to copy");
        let desc = vm["description"].as_str().unwrap();
        let start = desc.find(FENCE_OPEN).expect("golden's note") + FENCE_OPEN.len();
        let end = start + desc[start..].find(FENCE_CLOSE).unwrap();
        let mut note: Value = serde_json::from_str(&desc[start..end]).unwrap();
        let (date, number) = name
            .strip_prefix(&format!("{FAMILY}-"))
            .and_then(|rest| rest.split_once('-'))
            .unwrap();
        note["vmid"] = OUT_OF_BAND.into();
        note["metadata"]["golden-build-date"] = date.into();
        note["metadata"]["golden-build-number"] = number.into();
        let description = format!(
            "Golden image {name} (validated), managed by terraform-provider-golden.\n\n{FENCE_OPEN}{note}{FENCE_CLOSE}\n"
        );
        self.sim.admin_post(
            "/vms",
            json!({"vmid": OUT_OF_BAND, "name": name, "template": true,
                   "tags": vm["tags"], "description": description}),
        );
    }

    /// A user's full copy of a golden template (it inherits tags and notes)
    /// and a hand-made template claiming the family.
    fn seed_foreign(&self, like: &str) {
        let vmid = self.sim.vm_named(like).expect("the image to copy")["vmid"].clone();
        self.sim.admin_post(
            "/clone",
            json!({"vmid": vmid, "newid": COPY_OF_GOLDEN, "name": "copy-of-golden", "full": true}),
        );
        self.sim.admin_post(
            "/vms",
            json!({"vmid": HANDMADE, "name": "handmade", "template": true,
                   "tags": format!("golden;golden-family.{FAMILY};golden-validated"),
                   "description": "made by hand"}),
        );
    }

    fn assert_foreign_intact(&self) {
        for n in ["copy-of-golden", "handmade"] {
            assert!(
                self.sim.vm_named(n).is_some(),
                "golden deleted a VM it did not build: {n}"
            );
        }
        assert!(
            self.sim.vm_named("debian-12-base").is_some(),
            "the source template stays"
        );
    }

    /// Smoke clones, candidates being built, locked VMs.
    fn temporaries(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .sim
            .golden_vms()
            .into_iter()
            .filter(|(_, tags)| tags.contains("golden-smoke") || tags.contains("golden-candidate"))
            .map(|(n, tags)| format!("VM {n} ({tags})"))
            .collect();
        out.extend(
            self.sim
                .vms()
                .into_iter()
                .filter(|v| !v["lock"].is_null() && v["lock"] != "")
                .map(|v| format!("VM {} locked: {}", v["vmid"], v["lock"])),
        );
        out
    }

    /// Nothing outside the PVE schema; no request without the token.
    fn platform_checks(&self) {
        self.sim.assert_schema_clean();
        let unauth: Vec<Value> = self
            .sim
            .requests()
            .into_iter()
            .filter(|r| r["auth_ok"] != true)
            .collect();
        assert!(unauth.is_empty(), "requests without the token: {unauth:?}");
    }

    fn build_running(&self) -> bool {
        self.sim.vms().iter().any(|v| {
            v["name"].as_str().unwrap_or("").starts_with("candidate-") && v["status"] == "running"
        })
    }

    /// The instant backend builds in a blink: an agent that never answers
    /// holds the build at its first agent call.
    fn stall_builds(&self) {
        self.sim
            .fault(json!({"kind": "agent", "vmid": null, "mode": "never"}));
    }

    fn unstall_builds(&self) {
        self.sim.clear_faults();
    }

    fn secret(&self) -> Option<Secret> {
        Some(Secret {
            value: self.sim.secret(),
            trace_marker: "API call",
        })
    }
}

#[test]
fn lifecycle_conformance_on_proxmox() {
    super::run(&Proxmox::new());
}
