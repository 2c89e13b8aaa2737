//! Existing PVE API clients against the simulator: what users of `make
//! sim-proxmox` point at it. Each drives a VM lifecycle and the simulator's
//! schema-violation log must stay empty.
//!
//! proxmoxer (Python, PyPI) is installed into a venv under
//! `~/.cache/golden/venv-proxmoxer` on first use (`python3 -m venv`, Debian's
//! python3-venv; `make deps` installs it). bpg's Terraform provider is not
//! driven here: it comes from the Terraform registry, which these tests do
//! not reach.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::sim::Sim;

/// The proxmoxer release the lifecycle script is written against.
const PROXMOXER_VERSION: &str = "2.3.0";

fn venv_dir() -> PathBuf {
    std::env::var_os("GOLDEN_PROXMOXER_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/golden/venv-proxmoxer")
        })
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Python with proxmoxer and requests, made on first use. Missing tools
/// are a failure that says what to install, never a skip.
fn proxmoxer_python() -> PathBuf {
    let venv = venv_dir();
    let python = venv.join("bin/python");
    let check = format!(
        "import proxmoxer, requests; assert proxmoxer.__version__ == '{PROXMOXER_VERSION}'"
    );
    let has_it = python.is_file()
        && Command::new(&python)
            .args(["-c", &check])
            .status()
            .is_ok_and(|s| s.success());
    if has_it {
        return python;
    }
    run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        "creating the proxmoxer venv (Debian: apt-get install python3-venv, or `make deps`)",
    );
    run(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            &format!("proxmoxer=={PROXMOXER_VERSION}"),
            "requests",
        ]),
        "installing proxmoxer from PyPI",
    );
    python
}

/// proxmoxer lists nodes, storage (and a storage's status) and pools, makes a
/// full and a linked clone of the template, configures one (tags, notes, a
/// disk resize, the cloud-init drive, its HA state), starts it, reads the
/// guest's addresses from the agent, reads config and status twice, reboots
/// it, converts it to a template and destroys both: every call answered as
/// PVE does, within the schema.
#[test]
fn proxmoxer_drives_a_vm_lifecycle_within_the_schema() {
    let python = proxmoxer_python();
    let sim = Sim::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/proxmoxer_lifecycle.py");
    let out = Command::new(&python)
        .arg(&script)
        .env("SIM_ENDPOINT", &sim.endpoint)
        .env("SIM_TOKEN", &sim.token)
        .env("SIM_NODE", &sim.node)
        .env("SIM_TEMPLATE", "9000")
        // proxmoxer warns about the self-signed certificate on every call.
        .env("PYTHONWARNINGS", "ignore:Unverified HTTPS request")
        .output()
        .expect("running the proxmoxer lifecycle");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("proxmoxer lifecycle: done"),
        "proxmoxer lifecycle ({}):\n{stdout}{stderr}",
        out.status
    );
    sim.assert_schema_clean();
    // The lifecycle really went through the PVE API, every step answered.
    let calls = sim.calls();
    for (method, suffix) in [
        ("GET", "/nodes"),
        ("GET", "/pools"),
        ("GET", "/cluster/nextid"),
        ("POST", "/qemu/9000/clone"),
        ("PUT", "/config"),
        ("POST", "/status/start"),
        ("GET", "/agent/network-get-interfaces"),
        ("GET", "/status/current"),
        ("POST", "/template"),
        ("GET", "/storage/local-lvm/status"),
        ("PUT", "/resize"),
        ("PUT", "/cloudinit"),
        ("POST", "/status/reboot"),
    ] {
        assert!(
            calls
                .iter()
                .any(|c| c.method == method && c.path.ends_with(suffix) && c.status == 200),
            "no {method} ...{suffix} answered 200: {calls:?}"
        );
    }
    let destroyed = calls
        .iter()
        .filter(|c| c.method == "DELETE" && c.status == 200)
        .count();
    assert_eq!(destroyed, 2, "{calls:?}");
    assert!(
        sim.vm_named("pmx-full").is_none() && sim.vm_named("pmx-linked").is_none(),
        "the lifecycle's VMs are gone"
    );
}
