//! Test helpers: a terraform working directory with a `dev_overrides` CLI
//! config pointing at the provider under test, and probes of the image store.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The provider binary cargo built for this test run.
pub fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_terraform-provider-golden"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The offline Debian 12 base image. A missing image is a failure, not a skip.
pub fn base_image() -> PathBuf {
    let p = std::env::var_os("GOLDEN_BASE_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("GOLDEN_CACHE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/golden")
                });
            cache.join("base/debian-12.qcow2")
        });
    assert!(
        p.is_file(),
        "base image {} is missing: run scripts/make-base-image.sh (make test does) or set GOLDEN_BASE_IMAGE",
        p.display()
    );
    p
}

pub fn terraform_available() {
    let ok = Command::new("terraform")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the terraform CLI is not on PATH: install terraform >= 1.5 (make test checks this first)"
    );
}

pub struct TfDir {
    pub dir: tempfile::TempDir,
    /// Extra environment for every terraform command (a platform's settings
    /// passed the way CI passes them).
    env: Vec<(String, String)>,
}

impl TfDir {
    pub fn new() -> Self {
        terraform_available();
        let dir = tempfile::Builder::new()
            .prefix("golden-e2e-")
            .tempdir()
            .unwrap();
        let cli = format!(
            "provider_installation {{\n  dev_overrides {{\n    \"registry.terraform.io/golden/golden\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
            provider_dir().display()
        );
        std::fs::write(dir.path().join("cli.tfrc"), cli).unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        TfDir {
            dir,
            env: Vec::new(),
        }
    }

    /// The same with `env` set for every terraform command run here.
    pub fn with_env(env: &[(String, String)]) -> Self {
        let mut tf = TfDir::new();
        tf.env = env.to_vec();
        tf
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The provider's TMPDIR: tests check it is empty after every run.
    pub fn tmp(&self) -> PathBuf {
        self.path().join("tmp")
    }

    /// The provider's `$XDG_STATE_HOME` in this test.
    fn xdg_state_home(&self) -> PathBuf {
        self.path().join("state")
    }

    /// The provider's state dir, asked of the provider's own code.
    pub fn state_dir(&self) -> PathBuf {
        golden::provider::state_dir_under(&self.xdg_state_home())
    }

    /// Cleanup ledgers of every platform, wherever in the state dir they are.
    pub fn ledgers(&self) -> Vec<PathBuf> {
        golden::lifecycle::ledger::ledger_files(&self.state_dir())
    }

    /// Writes `main.tf` with the terraform/provider header for `store`.
    pub fn write(&self, store: &Path, body: &str) {
        let hcl = format!(
            "terraform {{\n  required_providers {{\n    golden = {{ source = \"golden/golden\" }}\n  }}\n}}\n\n\
             provider \"golden\" {{\n  local {{\n    store_dir = \"{}\"\n  }}\n}}\n\n{body}\n",
            store.display()
        );
        std::fs::write(self.path().join("main.tf"), hcl).unwrap();
    }

    /// Writes `main.tf` with the terraform header, `provider` (a whole
    /// `provider "golden"` block) and `body`.
    pub fn write_with_provider(&self, provider: &str, body: &str) {
        let hcl = format!(
            "terraform {{\n  required_providers {{\n    golden = {{ source = \"golden/golden\" }}\n  }}\n}}\n\n{provider}\n{body}\n"
        );
        std::fs::write(self.path().join("main.tf"), hcl).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("terraform");
        c.args(args)
            .current_dir(self.path())
            .env("TF_CLI_CONFIG_FILE", self.path().join("cli.tfrc"))
            .env("TF_IN_AUTOMATION", "1")
            .env("TMPDIR", self.tmp())
            .env("XDG_STATE_HOME", self.xdg_state_home())
            .env("CHECKPOINT_DISABLE", "1")
            .env_remove("TF_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("running terraform");
        eprintln!(
            "$ terraform {} -> {}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs terraform and asserts success.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "terraform {} failed", args.join(" "));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs terraform and asserts failure, returning stdout+stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "terraform {} unexpectedly succeeded",
            args.join(" ")
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    pub fn apply(&self) -> String {
        self.ok(&["apply", "-auto-approve", "-no-color", "-input=false"])
    }

    /// `terraform plan` saved and rendered as JSON.
    pub fn plan_json(&self) -> Value {
        self.ok(&["plan", "-no-color", "-input=false", "-out=tfplan"]);
        let out = self.ok(&["show", "-json", "tfplan"]);
        serde_json::from_str(&out).unwrap()
    }

    pub fn state_json(&self) -> Value {
        let out = self.ok(&["show", "-json"]);
        serde_json::from_str(&out).unwrap()
    }
}

/// The planned change of one resource address.
pub fn change<'a>(plan: &'a Value, address: &str) -> &'a Value {
    plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == address)
        .unwrap_or_else(|| panic!("{address} not in plan"))
}

pub fn actions(plan: &Value, address: &str) -> Vec<String> {
    change(plan, address)["change"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Attribute values of a resource or data source in `terraform show -json` state.
pub fn resource<'a>(state: &'a Value, address: &str) -> &'a Value {
    let root = &state["values"]["root_module"]["resources"];
    &root
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == address)
        .unwrap_or_else(|| panic!("{address} not in state"))["values"]
}

/// golden's images in `<store>/<family>/` with their status, from their sidecars.
pub fn store_images(store: &Path, family: &str) -> Vec<(String, String)> {
    let dir = store.join(family);
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        // Only golden's own images: a sidecar without golden metadata is someone else's.
        if v["metadata"]["golden-family"] != family {
            continue;
        }
        let status = v["metadata"]["golden-status"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let name = p.file_stem().unwrap().to_str().unwrap().to_owned();
        assert!(
            dir.join(format!("{name}.qcow2")).is_file() || status == "candidate",
            "{name} has no image file"
        );
        out.push((name, status));
    }
    out.sort();
    out
}

/// QEMU processes whose command line mentions `needle` (a store path).
pub fn qemu_processes(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_str().unwrap_or("").parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("qemu-system") && cmd.contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

pub fn today() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y%m%d"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
