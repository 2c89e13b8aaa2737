//! The conformance scenario on `platform = "local"`: real QEMU guests (KVM
//! when /dev/kvm works, TCG otherwise) and the image store on disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{Harness, Secret};
use crate::e2e::util::{base_image, qemu_processes, store_images};

const FAMILY: &str = "e2e-life";

pub struct Local {
    base: PathBuf,
    _dir: tempfile::TempDir,
    /// The store both states of the scenario share.
    store: PathBuf,
}

impl Local {
    pub fn new() -> Local {
        let base = base_image();
        let dir = tempfile::Builder::new()
            .prefix("golden-e2e-local-")
            .tempdir()
            .unwrap();
        let store = dir.path().join("store");
        Local {
            base,
            _dir: dir,
            store,
        }
    }

    fn family_dir(&self) -> PathBuf {
        self.store.join(FAMILY)
    }
}

fn qemu_img_create(path: &Path) {
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg("16M")
        .status()
        .unwrap();
    assert!(st.success(), "qemu-img create {}", path.display());
}

fn is_standalone_qcow2(path: &Path) -> bool {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["format"] == "qcow2" && v.get("backing-filename").is_none()
}

impl Harness for Local {
    fn platform(&self) -> &'static str {
        "local"
    }

    fn family(&self) -> &'static str {
        FAMILY
    }

    fn provider_block(&self) -> String {
        format!(
            "provider \"golden\" {{\n  local {{\n    store_dir = \"{}\"\n  }}\n}}\n",
            self.store.display()
        )
    }

    fn source_block(&self) -> String {
        format!("source {{ path = \"{}\" }}", self.base.display())
    }

    fn failure_report_markers(&self) -> &'static [&'static str] {
        &["Serial console"]
    }

    fn images(&self) -> Vec<(String, String)> {
        store_images(&self.store, FAMILY)
    }

    /// The published file is a flattened qcow2 that needs nothing else.
    fn check_published(&self, name: &str, _x: &Value) {
        let file = self.family_dir().join(format!("{name}.qcow2"));
        assert!(
            is_standalone_qcow2(&file),
            "{} is not a standalone qcow2",
            file.display()
        );
        // The packages read in the booted image, as SPDX next to it.
        let sbom = self.family_dir().join(format!("{name}.spdx.json"));
        let doc: Value = serde_json::from_slice(
            &std::fs::read(&sbom).unwrap_or_else(|e| panic!("{}: {e}", sbom.display())),
        )
        .unwrap();
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        let packages = doc["packages"].as_array().unwrap();
        assert!(packages.len() > 20, "{} packages", packages.len());
        assert!(
            packages.iter().any(|p| p["name"] == "qemu-guest-agent"
                && p["externalRefs"][0]["referenceLocator"]
                    .as_str()
                    .is_some_and(|l| l.starts_with("pkg:deb/debian/qemu-guest-agent@"))),
            "no qemu-guest-agent purl in {}",
            sbom.display()
        );
    }

    /// Lookups read the sidecar's status: `images` already shows `failed`,
    /// and the scenario's own lookup proves the data source skips it.
    fn check_unpublished(&self, _name: &str) {}

    /// A validated image golden wrote: `like`'s sidecar under another name
    /// and build date, with a (small) image file of its own.
    fn seed_out_of_band(&self, like: &str, name: &str) {
        let dir = self.family_dir();
        let mut sidecar: Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{like}.json"))).unwrap())
                .unwrap();
        let (date, number) = name
            .strip_prefix(&format!("{FAMILY}-"))
            .and_then(|rest| rest.split_once('-'))
            .unwrap();
        let meta = &mut sidecar["metadata"];
        meta["golden-build-date"] = date.into();
        meta["golden-build-number"] = number.into();
        meta["golden-status"] = "validated".into();
        qemu_img_create(&dir.join(format!("{name}.qcow2")));
        std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::to_vec_pretty(&sidecar).unwrap(),
        )
        .unwrap();
    }

    /// An image file with a sidecar that golden did not write, in the
    /// family's own directory.
    fn seed_foreign(&self, _like: &str) {
        let dir = self.family_dir();
        qemu_img_create(&dir.join("handmade.qcow2"));
        std::fs::write(
            dir.join("handmade.json"),
            r#"{"metadata":{"owner":"someone else"}}"#,
        )
        .unwrap();
    }

    fn assert_foreign_intact(&self) {
        for f in ["handmade.qcow2", "handmade.json"] {
            assert!(
                self.family_dir().join(f).is_file(),
                "a file golden did not write was deleted: {f}"
            );
        }
        assert!(self.base.is_file(), "the source image is gone");
    }

    /// QEMU processes on the store, the store's work dirs (asked of the
    /// provider's code), partial files in family directories.
    fn temporaries(&self) -> Vec<String> {
        let mut out: Vec<String> = qemu_processes(&self.store.display().to_string())
            .into_iter()
            .map(|pid| format!("QEMU process {pid}"))
            .collect();
        let work = golden::platforms::local::store::Store::work_root(&self.store);
        if let Ok(rd) = std::fs::read_dir(&work) {
            out.extend(rd.flatten().map(|e| e.path().display().to_string()));
        }
        for fam in std::fs::read_dir(&self.store)
            .into_iter()
            .flatten()
            .flatten()
        {
            if !fam.path().is_dir() {
                continue;
            }
            for f in std::fs::read_dir(fam.path()).unwrap().flatten() {
                let n = f.file_name().to_string_lossy().into_owned();
                if n.contains(".partial") || n.contains(".tmp-") || n.contains(".new-") {
                    out.push(f.path().display().to_string());
                }
            }
        }
        out
    }

    fn build_running(&self) -> bool {
        !qemu_processes(&self.store.display().to_string()).is_empty()
    }

    /// Let the guest boot a little: the interrupt lands mid-build.
    fn settle_before_interrupt(&self) -> Duration {
        Duration::from_secs(8)
    }

    /// The local platform has no credential at all (no account, no token,
    /// only files on this machine), so there is nothing to keep out of logs
    /// and state: the scenario's secret step is skipped for it, on purpose.
    fn secret(&self) -> Option<Secret> {
        None
    }
}

#[test]
#[ignore = "boots a QEMU guest; run by make test"]
fn lifecycle_conformance_on_local() {
    super::run(&Local::new());
}
