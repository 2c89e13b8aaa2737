//! Installing golden without dev_overrides, through the real `terraform init`:
//! the artifacts of `scripts/release.sh` (what `make release` writes) served
//! as a filesystem mirror, and `scripts/install.sh` (what `make install` runs)
//! in the implicit local mirror. The binary packaged is the one this test run
//! built (a release build here would be too slow); the scripts are the ones
//! the Makefile runs, so they are what is tested. No guest boots: the
//! configuration only reads an empty image store.
//!
//! The hashes are checked twice: against this file's own implementation of
//! them (sha256 of the zip for `zh:`, Go's dirhash Hash1 of its contents for
//! `h1:`), and against what terraform itself records in `.terraform.lock.hcl`
//! and verifies a lock file's hashes against.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::util::TfDir;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const ADDR: &str = "registry.terraform.io/golden/golden";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `<os>_<arch>` of this machine, as terraform names platforms.
fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no terraform platform name for {other}"),
    };
    format!("{}_{arch}", std::env::consts::OS)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Go's `dirhash.Hash1` of every file under `dir` (names relative to it), the
/// `h1:` of terraform's lock file.
fn h1_of_dir(dir: &Path) -> String {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
                out.push((rel, p));
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    let mut summary = String::new();
    for (name, path) in &files {
        summary += &format!("{}  {name}\n", sha256_hex(&std::fs::read(path).unwrap()));
    }
    let digest = Sha256::digest(summary.as_bytes());
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// The release artifacts of the binary under test, checked, with their hashes.
struct Dist {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    h1: String,
    zh: String,
}

impl Dist {
    fn mirror(&self) -> PathBuf {
        self.dir.join("mirror")
    }
}

fn package() -> Dist {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_terraform-provider-golden"));
    let tmp = tempfile::Builder::new()
        .prefix("golden-release-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().join("dist");
    let platform = platform();
    let out = Command::new(repo().join("scripts/release.sh"))
        .arg(&dir)
        .arg(format!("{platform}={}", bin.display()))
        .env_remove("VERSION")
        .env_remove("GPG_KEY_ID")
        .output()
        .expect("running scripts/release.sh");
    eprintln!(
        "$ scripts/release.sh -> {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "scripts/release.sh failed");

    let prefix = format!("terraform-provider-golden_{VERSION}");
    let zip_name = format!("{prefix}_{platform}.zip");
    let zip = dir.join(&zip_name);
    let zip_bytes = std::fs::read(&zip).unwrap();

    // The zip holds exactly the binary, under the name registries use.
    let unpacked = tmp.path().join("unpacked");
    let st = Command::new("unzip")
        .arg("-q")
        .arg(&zip)
        .arg("-d")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(st.success());
    let entries: Vec<String> = std::fs::read_dir(&unpacked)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let inner = format!("terraform-provider-golden_v{VERSION}");
    assert_eq!(entries, vec![inner.clone()]);
    assert!(
        std::fs::read(unpacked.join(&inner)).unwrap() == std::fs::read(&bin).unwrap(),
        "the zip's binary is not the one packaged"
    );

    let h1 = h1_of_dir(&unpacked);
    let zh = format!("zh:{}", sha256_hex(&zip_bytes));

    // SHA256SUMS: every zip and the manifest, with their real sha256.
    let sums = std::fs::read_to_string(dir.join(format!("{prefix}_SHA256SUMS"))).unwrap();
    let mut listed = Vec::new();
    for line in sums.lines() {
        let (hex, name) = line.split_once("  ").expect(line);
        assert_eq!(
            hex,
            sha256_hex(&std::fs::read(dir.join(name)).unwrap()),
            "{name}"
        );
        listed.push(name.to_owned());
    }
    listed.sort();
    let mut expected = vec![format!("{prefix}_manifest.json"), zip_name.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    assert!(!dir.join(format!("{prefix}_SHA256SUMS.sig")).exists());

    let manifest = json(&dir.join(format!("{prefix}_manifest.json")));
    assert_eq!(manifest["version"], 1);
    assert_eq!(
        manifest["metadata"]["protocol_versions"],
        serde_json::json!(["6.0"])
    );

    // The network mirror protocol's files, for terraform's and tofu's host.
    for host in ["registry.terraform.io", "registry.opentofu.org"] {
        let d = dir.join("mirror").join(host).join("golden/golden");
        let index = json(&d.join("index.json"));
        assert_eq!(
            index,
            serde_json::json!({ "versions": { VERSION: {} } }),
            "{host}"
        );
        let version = json(&d.join(format!("{VERSION}.json")));
        let archives = version["archives"].as_object().unwrap();
        assert_eq!(archives.len(), 1, "{version}");
        let archive = &archives[&platform];
        assert_eq!(archive["url"], zip_name.as_str());
        assert_eq!(
            archive["hashes"],
            serde_json::json!([h1.clone(), zh.clone()]),
            "{host}: the mirror's hashes are not those of the zip"
        );
        assert!(std::fs::read(d.join(&zip_name)).unwrap() == zip_bytes);
    }

    // The script's own summary says the same.
    let hashes = std::fs::read_to_string(dir.join(format!("{VERSION}.hashes"))).unwrap();
    assert_eq!(hashes, format!("{platform} {h1} {zh}\n"));

    Dist {
        _tmp: tmp,
        dir,
        h1,
        zh,
    }
}

/// The version and hashes terraform locked for golden.
fn locked(tf: &TfDir) -> (String, Vec<String>) {
    let lock = std::fs::read_to_string(tf.path().join(".terraform.lock.hcl"))
        .expect("terraform init wrote no .terraform.lock.hcl");
    let start = lock
        .find(&format!("provider \"{ADDR}\" {{"))
        .unwrap_or_else(|| panic!("{ADDR} not in the lock file:\n{lock}"));
    let block = &lock[start..];
    let block = &block[..block.find("\n}").unwrap()];
    let mut version = String::new();
    let mut hashes = Vec::new();
    for line in block.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("version") {
            version = v
                .trim_start_matches([' ', '='])
                .trim_matches('"')
                .to_owned();
        } else if line.starts_with("\"h1:") || line.starts_with("\"zh:") {
            hashes.push(line.trim_end_matches(',').trim_matches('"').to_owned());
        }
    }
    hashes.sort();
    (version, hashes)
}

fn write_lock(tf: &TfDir, hashes: &[&str]) {
    let list: String = hashes.iter().map(|h| format!("    \"{h}\",\n")).collect();
    std::fs::write(
        tf.path().join(".terraform.lock.hcl"),
        format!(
            "provider \"{ADDR}\" {{\n  version     = \"{VERSION}\"\n  constraints = \"{VERSION}\"\n  hashes = [\n{list}  ]\n}}\n"
        ),
    )
    .unwrap();
}

/// A terraform directory whose CLI config is `cli` (no dev_overrides), with a
/// configuration pinned to this version that reads an empty image store.
fn tf_dir(cli: &str, env: &[(String, String)]) -> TfDir {
    let tf = TfDir::with_env(env);
    std::fs::write(tf.path().join("cli.tfrc"), cli).unwrap();
    let store = tf.path().join("store");
    std::fs::write(
        tf.path().join("main.tf"),
        format!(
            "terraform {{\n  required_providers {{\n    golden = {{\n      source  = \"golden/golden\"\n      version = \"{VERSION}\"\n    }}\n  }}\n}}\n\n\
             provider \"golden\" {{\n  local {{\n    store_dir = \"{}\"\n  }}\n}}\n\n\
             data \"golden_images\" \"all\" {{\n  platform = \"local\"\n  family   = \"empty\"\n}}\n\n\
             output \"count\" {{\n  value = length(data.golden_images.all.images)\n}}\n",
            store.display()
        ),
    )
    .unwrap();
    tf
}

fn init(tf: &TfDir) -> String {
    tf.ok(&["init", "-no-color", "-input=false"])
}

/// The provider runs: plan reads the data source through it.
fn plan_reads_the_store(tf: &TfDir) {
    let plan = tf.plan_json();
    assert_eq!(
        plan["planned_values"]["outputs"]["count"]["value"], 0,
        "{plan}"
    );
}

fn filesystem_mirror_cli(dist: &Dist) -> String {
    // No `direct {}`: golden can only come from the mirror, nothing else from anywhere.
    format!(
        "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"{ADDR}\"]\n  }}\n}}\n",
        dist.mirror().display()
    )
}

#[test]
fn terraform_installs_the_release_artifacts_from_a_filesystem_mirror() {
    let dist = package();
    let cli = filesystem_mirror_cli(&dist);

    // No lock file: terraform records the h1: it computes of the package,
    // which must be the one the mirror's <version>.json announces.
    let tf = tf_dir(&cli, &[]);
    let out = init(&tf);
    assert!(
        out.contains(&format!("Installed golden/golden v{VERSION}")),
        "{out}"
    );
    assert_eq!(locked(&tf), (VERSION.to_owned(), vec![dist.h1.clone()]));
    plan_reads_the_store(&tf);

    // A lock file with only the release's zh: (as a registry would record
    // it): terraform checks the zip against it, then records both.
    let tf = tf_dir(&cli, &[]);
    write_lock(&tf, &[&dist.zh]);
    init(&tf);
    assert_eq!(
        locked(&tf),
        (VERSION.to_owned(), vec![dist.h1.clone(), dist.zh.clone()])
    );
    plan_reads_the_store(&tf);

    // The check is real: a zh: that is not the zip's fails init.
    let tf = tf_dir(&cli, &[]);
    let mut wrong = dist.zh.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    write_lock(&tf, &[&wrong]);
    let out = tf.fails(&["init", "-no-color", "-input=false"]);
    assert!(out.contains("doesn't match any of the checksums"), "{out}");
}

#[test]
fn terraform_finds_make_install_without_any_cli_config() {
    let dist = package();
    let home = tempfile::Builder::new()
        .prefix("golden-home-")
        .tempdir()
        .unwrap();
    let bin = env!("CARGO_BIN_EXE_terraform-provider-golden");
    let out = Command::new(repo().join("scripts/install.sh"))
        .arg(bin)
        .env("HOME", home.path())
        .env_remove("PLUGIN_DIR")
        .env_remove("VERSION")
        .env_remove("OS_ARCH")
        .output()
        .expect("running scripts/install.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "$ scripts/install.sh -> {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "scripts/install.sh failed");
    // It prints the required_providers block to use.
    assert!(
        stdout.contains("source  = \"golden/golden\"")
            && stdout.contains(&format!("version = \"{VERSION}\"")),
        "{stdout}"
    );
    for host in ["registry.terraform.io", "registry.opentofu.org"] {
        let dir = home
            .path()
            .join(".terraform.d/plugins")
            .join(host)
            .join("golden/golden")
            .join(VERSION)
            .join(platform());
        // The unpacked install is the same package as the release zip.
        assert_eq!(h1_of_dir(&dir), dist.h1, "{}", dir.display());
    }

    // An empty CLI config: only the implicit local mirror under $HOME.
    let tf = tf_dir("", &[("HOME".into(), home.path().display().to_string())]);
    let out = init(&tf);
    assert!(
        out.contains(&format!("Installed golden/golden v{VERSION}")),
        "{out}"
    );
    assert_eq!(locked(&tf), (VERSION.to_owned(), vec![dist.h1.clone()]));
    plan_reads_the_store(&tf);
}
