//! The conformance scenario on `platform = "digitalocean"`: the DO
//! simulator's instant backend (a real sshd per droplet), every request and
//! answer checked against DigitalOcean's OpenAPI description. The token and
//! endpoint reach the provider through the environment, the way CI passes
//! them.

use std::time::Duration;

use serde_json::{json, Value};

use super::{Harness, Secret};
use crate::e2e::do_sim::DoSim;

const FAMILY: &str = "e2e-do";
const FAMILY_TAG: &str = "golden-family:e2e-do";

pub struct DigitalOcean {
    pub sim: DoSim,
    _dir: tempfile::TempDir,
    store: std::path::PathBuf,
}

impl DigitalOcean {
    pub fn new() -> DigitalOcean {
        let dir = tempfile::Builder::new()
            .prefix("golden-e2e-do-")
            .tempdir()
            .unwrap();
        let store = dir.path().join("store");
        DigitalOcean {
            sim: DoSim::start(),
            _dir: dir,
            store,
        }
    }

    fn tags(img: &Value) -> Vec<String> {
        img["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// validated wins over failed over candidate (publish adds before it removes).
    fn status_of(tags: &[String]) -> String {
        for s in ["validated", "failed", "candidate"] {
            if tags.iter().any(|t| *t == format!("golden-status:{s}")) {
                return s.to_owned();
            }
        }
        "?".into()
    }

    fn image_named(&self, name: &str) -> Option<Value> {
        self.sim.images().into_iter().find(|i| i["name"] == name)
    }
}

impl Harness for DigitalOcean {
    fn platform(&self) -> &'static str {
        "digitalocean"
    }

    fn family(&self) -> &'static str {
        FAMILY
    }

    fn provider_block(&self) -> String {
        format!(
            "provider \"golden\" {{\n  local {{\n    store_dir = \"{}\"\n  }}\n  digitalocean {{\n    ssh_port          = {}\n    power_off_timeout = \"2m\"\n  }}\n}}\n",
            self.store.display(),
            self.sim.ssh_port
        )
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DIGITALOCEAN_API_URL".into(), self.sim.endpoint.clone()),
            ("DIGITALOCEAN_TOKEN".into(), self.sim.token.clone()),
        ]
    }

    fn source_block(&self) -> String {
        "source { slug = \"debian-12-x64\" }".into()
    }

    fn recipe_extras(&self) -> &'static str {
        "packages = [\"curl\"]"
    }

    /// The instant backend's shell has no `>&2`.
    /// DO refuses at plan what an image tag cannot hold exactly (upper
    /// case, spaces, `/`, `.`): the hardest it stores, `:` in a value.
    fn tags_hcl(&self) -> &'static str {
        r#"{ os = "debian-12", type = "minimal", team = "platform-infra:eu" }"#
    }

    fn failing_command(&self) -> &'static str {
        "echo boom; exit 1"
    }

    fn failure_report_markers(&self) -> &'static [&'static str] {
        &["via ssh"]
    }

    /// golden's images of the family (planted foreign ones excluded by
    /// name), under their image name (candidates carry `candidate-`).
    fn images(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .sim
            .images()
            .into_iter()
            .filter(|i| i["public"] != true)
            .filter(|i| Self::tags(i).iter().any(|t| t == FAMILY_TAG))
            .filter(|i| !["copy-of-golden", "handmade"].contains(&i["name"].as_str().unwrap_or("")))
            .map(|i| {
                let name = i["name"].as_str().unwrap_or("");
                (
                    name.strip_prefix("candidate-").unwrap_or(name).to_owned(),
                    Self::status_of(&Self::tags(&i)),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// A published image is a snapshot named after the image, its id is
    /// `image_id`, and its tags carry golden's metadata and the user's tags
    /// exactly as written.
    fn check_published(&self, name: &str, x: &Value) {
        let img = self.image_named(name).expect("the published snapshot");
        assert_eq!(img["type"], "snapshot");
        assert_eq!(
            x["image_id"],
            img["id"].to_string(),
            "image_id is the snapshot's id"
        );
        let tags = Self::tags(&img);
        for t in [
            FAMILY_TAG,
            "golden-status:validated",
            "golden-tag-os:debian-12",
            "golden-tag-type:minimal",
            "golden-tag-team:platform-infra:eu",
        ] {
            assert!(tags.iter().any(|x| x == t), "{t} missing: {tags:?}");
        }
        assert!(
            !tags
                .iter()
                .any(|t| t == "golden-status:candidate" || t.starts_with("golden-deadline:")),
            "candidate tags left on a published image: {tags:?}"
        );
        assert!(
            tags.iter().all(|t| t.len() <= 255
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-:".contains(&b))
                && *t == t.to_ascii_lowercase()),
            "{tags:?}"
        );
    }

    /// A failed image keeps its candidate name: no name-based lookup of the
    /// family (a regex on `^<family>-`) matches it.
    fn check_unpublished(&self, name: &str) {
        assert!(
            self.image_named(name).is_none(),
            "a failed image carries its published name"
        );
        let img = self
            .image_named(&format!("candidate-{name}"))
            .expect("the failed candidate is kept");
        assert!(Self::tags(&img).iter().any(|t| t == "golden-status:failed"));
    }

    /// A snapshot with `like`'s tags rewritten for another build date and
    /// number: what golden wrote in a state since lost.
    fn seed_out_of_band(&self, like: &str, name: &str) {
        let img = self.image_named(like).expect("the image to copy");
        let (date, number) = name
            .strip_prefix(&format!("{FAMILY}-"))
            .and_then(|rest| rest.split_once('-'))
            .unwrap();
        let tags: Vec<String> = Self::tags(&img)
            .into_iter()
            .map(|t| {
                if t.starts_with("golden-build-date:") {
                    format!("golden-build-date:{date}")
                } else if t.starts_with("golden-build-number:") {
                    format!("golden-build-number:{number}")
                } else {
                    t
                }
            })
            .collect();
        self.sim.admin_post(
            "/images",
            json!({"name": name, "tags": tags, "created_at": "2020-01-01T00:00:00Z"}),
        );
    }

    /// A user's copy of a golden snapshot under another name (every tag
    /// kept) and a hand-made snapshot claiming the family without golden's
    /// other keys.
    fn seed_foreign(&self, like: &str) {
        let img = self.image_named(like).expect("the image to copy");
        self.sim.admin_post(
            "/images",
            json!([
                {"name": "copy-of-golden", "tags": Self::tags(&img)},
                {"name": "handmade", "tags": [FAMILY_TAG, "golden-status:validated"]},
            ]),
        );
    }

    fn assert_foreign_intact(&self) {
        for n in ["copy-of-golden", "handmade"] {
            assert!(
                self.image_named(n).is_some(),
                "golden deleted an image it did not build: {n}"
            );
        }
        assert!(
            self.sim
                .images()
                .iter()
                .any(|i| i["slug"] == "debian-12-x64"),
            "the source image stays"
        );
    }

    /// Droplets, keys, and candidate snapshots no run is working on.
    fn temporaries(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .sim
            .droplets()
            .into_iter()
            .map(|d| format!("droplet {} {}", d["id"], d["name"]))
            .collect();
        out.extend(
            self.sim
                .keys()
                .into_iter()
                .map(|k| format!("key {} {}", k["id"], k["name"])),
        );
        out.extend(
            self.sim
                .images()
                .into_iter()
                .filter(|i| Self::status_of(&Self::tags(i)) == "candidate")
                .map(|i| format!("candidate image {} {}", i["id"], i["name"])),
        );
        out
    }

    /// Nothing outside DO's OpenAPI description.
    fn platform_checks(&self) {
        self.sim.assert_schema_clean();
    }

    fn build_running(&self) -> bool {
        self.sim.droplets().iter().any(|d| {
            d["name"]
                .as_str()
                .unwrap_or("")
                .starts_with("golden-build-")
                && d["status"] == "active"
        })
    }

    fn settle_before_interrupt(&self) -> Duration {
        Duration::from_millis(500)
    }

    /// The instant backend powers off in a blink: a guest that never does
    /// holds the build in its power-off wait (2 minutes in this block).
    fn stall_builds(&self) {
        self.sim
            .admin_put("/behaviour", json!({"never_power_off": true}));
    }

    fn unstall_builds(&self) {
        self.sim
            .admin_put("/behaviour", json!({"never_power_off": false}));
    }

    fn secret(&self) -> Option<Secret> {
        Some(Secret {
            value: self.sim.token.clone(),
            trace_marker: "API call",
        })
    }

    fn keeps_package_manifests(&self) -> bool {
        false
    }
}

#[test]
fn lifecycle_conformance_on_digitalocean() {
    let h = DigitalOcean::new();
    super::run(&h);
    h.sim.assert_nothing_left();
    // The tags made for one run went with it.
    let left: Vec<String> = h
        .sim
        .tags()
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .filter(|t| t.starts_with("golden-run:") || t.starts_with("golden-claim:"))
        .collect();
    assert!(left.is_empty(), "run tags left: {left:?}");
}
