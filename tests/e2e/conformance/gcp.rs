//! The conformance scenario on `platform = "gcp"`: the GCE simulator's
//! instant backend, every request and answer checked against Compute's
//! discovery document. Project, zone and the key file reach the provider
//! through `GOOGLE_*`, the way CI passes them; the endpoint through the
//! provider block.

use std::time::Duration;

use serde_json::{json, Value};

use super::{Harness, Secret};
use crate::e2e::gcp_sim::GcpSim;

const FAMILY: &str = "e2e-gcp";
const FOREIGN: [&str; 2] = ["copy-of-golden", "handmade"];

pub struct Gcp {
    pub sim: GcpSim,
    _dir: tempfile::TempDir,
    store: std::path::PathBuf,
}

impl Gcp {
    pub fn new() -> Gcp {
        let dir = tempfile::Builder::new()
            .prefix("golden-e2e-gcp-")
            .tempdir()
            .unwrap();
        let store = dir.path().join("store");
        Gcp {
            sim: GcpSim::start(),
            _dir: dir,
            store,
        }
    }

    fn label<'a>(img: &'a Value, key: &str) -> &'a str {
        img["labels"][key].as_str().unwrap_or("")
    }

    fn image_named(&self, name: &str) -> Option<Value> {
        self.sim
            .admin_get("/images")
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .find(|i| i["name"] == name)
    }

    fn project_images(&self) -> Vec<Value> {
        self.sim
            .admin_get("/images")
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| {
                i["selfLink"]
                    .as_str()
                    .unwrap_or("")
                    .contains(&format!("/projects/{}/", self.sim.project))
            })
            .collect()
    }

    /// A copy of `like` under `name`, with `labels` changed: how the tests
    /// plant images golden did not make in this run.
    fn plant(&self, like: &Value, name: &str, labels: Value, description: Option<String>) {
        let mut body = json!({
            "name": name,
            "labels": labels,
            "description": description.unwrap_or_default(),
        });
        if let Some(f) = like["family"].as_str() {
            body["family"] = json!(f);
        }
        self.sim.admin_post("/images", body);
    }
}

impl Harness for Gcp {
    fn platform(&self) -> &'static str {
        "gcp"
    }

    fn family(&self) -> &'static str {
        FAMILY
    }

    fn provider_block(&self) -> String {
        format!(
            "provider \"golden\" {{\n  local {{\n    store_dir = \"{}\"\n  }}\n  gcp {{\n    api_endpoint      = \"{}\"\n    power_off_timeout = \"2m\"\n  }}\n}}\n",
            self.store.display(),
            self.sim.endpoint
        )
    }

    fn env(&self) -> Vec<(String, String)> {
        self.sim.provider_env()
    }

    fn source_block(&self) -> String {
        "source { image = \"projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64\" }"
            .into()
    }

    fn recipe_extras(&self) -> &'static str {
        "packages = [\"curl\"]"
    }

    /// GCE labels hold lower case, digits, `_` and `-`: the hardest the
    /// platform stores exactly.
    fn tags_hcl(&self) -> &'static str {
        r#"{ os = "debian-12", type = "minimal", team = "platform_infra-eu" }"#
    }

    fn failing_command(&self) -> &'static str {
        "echo boom; exit 1"
    }

    fn failure_report_markers(&self) -> &'static [&'static str] {
        &["serial port"]
    }

    fn images(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .project_images()
            .into_iter()
            .filter(|i| Self::label(i, "golden-family") == FAMILY)
            .filter(|i| !FOREIGN.contains(&i["name"].as_str().unwrap_or("")))
            .map(|i| {
                (
                    i["name"].as_str().unwrap_or("").to_owned(),
                    Self::label(&i, "golden-status").to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// A published image is in its family (what `getFromFamily` returns),
    /// labelled validated with no expiry, the user's tags as labels, and
    /// its `image_id` is `projects/P/global/images/NAME`.
    fn check_published(&self, name: &str, x: &Value) {
        let img = self.image_named(name).expect("the published image");
        assert_eq!(img["family"], FAMILY, "a published image is in its family");
        assert_eq!(
            x["image_id"],
            format!("projects/{}/global/images/{name}", self.sim.project)
        );
        for (k, v) in [
            ("golden-family", FAMILY),
            ("golden-status", "validated"),
            ("os", "debian-12"),
            ("type", "minimal"),
            ("team", "platform_infra-eu"),
        ] {
            assert_eq!(Self::label(&img, k), v, "label {k}: {img:#}");
        }
        assert!(img["labels"].get("golden-expires").is_none(), "{img:#}");
        let latest = self.sim.expect(
            200,
            "GET",
            &self.sim.global(&format!("images/family/{FAMILY}")),
            None,
        );
        assert_eq!(latest["name"], name, "getFromFamily agrees");
        let d: Value = serde_json::from_str(img["description"].as_str().unwrap_or("{}"))
            .expect("the description is golden's JSON");
        assert!(d["golden"].is_object(), "{d:#}");
    }

    /// A failed image is labelled failed and never joins the family.
    fn check_unpublished(&self, name: &str) {
        let img = self.image_named(name).expect("the failed image is kept");
        assert_eq!(Self::label(&img, "golden-status"), "failed");
        assert!(
            img["family"].as_str().unwrap_or("").is_empty(),
            "a failed image joined the family: {img:#}"
        );
        assert!(
            img["deprecated"].is_null(),
            "never deprecated to hide: {img:#}"
        );
    }

    /// An image like `like` renamed for another build date and number:
    /// what golden wrote in a state since lost.
    fn seed_out_of_band(&self, like: &str, name: &str) {
        let img = self.image_named(like).expect("the image to copy");
        let (date, number) = name
            .strip_prefix(&format!("{FAMILY}-"))
            .and_then(|rest| rest.split_once('-'))
            .unwrap();
        let mut labels = img["labels"].clone();
        labels["golden-build-date"] = json!(date);
        labels["golden-build-number"] = json!(number);
        // No description: golden reads the labels alone then.
        self.plant(&img, name, labels, None);
    }

    /// A user's copy of a golden image under another name (labels kept)
    /// and a hand-made image claiming the family without golden's keys.
    fn seed_foreign(&self, like: &str) {
        let img = self.image_named(like).expect("the image to copy");
        self.plant(
            &img,
            FOREIGN[0],
            img["labels"].clone(),
            img["description"].as_str().map(str::to_owned),
        );
        self.plant(
            &json!({}),
            FOREIGN[1],
            json!({"golden-family": FAMILY, "golden-status": "validated"}),
            None,
        );
    }

    fn assert_foreign_intact(&self) {
        for n in FOREIGN {
            assert!(
                self.image_named(n).is_some(),
                "golden deleted an image it did not build: {n}"
            );
        }
    }

    /// Instances, disks, and candidate images no run is working on.
    fn temporaries(&self) -> Vec<String> {
        let mut out = Vec::new();
        for what in ["instances", "disks"] {
            for x in self
                .sim
                .admin_get(&format!("/{what}"))
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                out.push(format!("{what} {}", x["name"]));
            }
        }
        out.extend(
            self.project_images()
                .into_iter()
                .filter(|i| Self::label(i, "golden-status") == "candidate")
                .map(|i| format!("candidate image {}", i["name"])),
        );
        out
    }

    /// Nothing outside the discovery document.
    fn platform_checks(&self) {
        self.sim.assert_schema_clean();
    }

    fn build_running(&self) -> bool {
        self.sim
            .admin_get("/instances")
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .any(|i| {
                i["name"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("golden-build-")
                    && (i["status"] == "RUNNING" || i["status"] == "STOPPING")
            })
    }

    fn settle_before_interrupt(&self) -> Duration {
        Duration::from_millis(500)
    }

    /// golden stops the build instance once provisioning reported: a stop
    /// that takes two minutes holds the build there.
    fn stall_builds(&self) {
        self.sim
            .admin_put("/behaviour", json!({"op_ms": {"instances.stop": 120000}}));
    }

    fn unstall_builds(&self) {
        self.sim
            .admin_put("/behaviour", json!({"op_ms": {"instances.stop": null}}));
    }

    /// A piece of the private key: it must reach neither logs nor state.
    fn secret(&self) -> Option<Secret> {
        let pem = self.sim.key.json["private_key"].as_str().unwrap_or("");
        let body: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>();
        Some(Secret {
            value: body.chars().skip(40).take(48).collect(),
            trace_marker: "gcp platform configured",
        })
    }

    /// The description holds at most 2 KiB: no room for a package list.
    fn keeps_package_manifests(&self) -> bool {
        false
    }
}

#[test]
fn lifecycle_conformance_on_gcp() {
    let h = Gcp::new();
    super::run(&h);
    let left = h.temporaries();
    assert!(left.is_empty(), "left behind: {left:?}");
}
