//! DigitalOcean's official Python client, pydo, against the simulator,
//! unmodified: the lifecycle calls golden makes (keys, droplet create with
//! user data and a tag, actions, power-off, snapshot, snapshots list, images
//! by tag with pagination, tags, image rename, transfer, deletes) and the
//! simulator's schema-violation log must stay empty.
//!
//! pydo (PyPI) is installed into a venv under `~/.cache/golden/venv-pydo` on
//! first use (`python3 -m venv`, Debian's python3-venv; `make deps`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::do_sim::DoSim;

/// The pydo release the lifecycle script is written against.
const PYDO_VERSION: &str = "0.44.0";

fn venv_dir() -> PathBuf {
    std::env::var_os("GOLDEN_PYDO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/golden/venv-pydo")
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

/// A Python with pydo, made on first use. Missing tools are a failure that
/// says what to install, never a skip.
fn pydo_python() -> PathBuf {
    let venv = venv_dir();
    let python = venv.join("bin/python");
    let check =
        format!("import importlib.metadata as m; assert m.version('pydo') == '{PYDO_VERSION}'");
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
        "creating the pydo venv (Debian: apt-get install python3-venv, or `make deps`)",
    );
    run(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            &format!("pydo=={PYDO_VERSION}"),
        ]),
        "installing pydo from PyPI",
    );
    python
}

#[test]
fn digitalocean_pydo_drives_golden_lifecycle_within_the_spec() {
    let python = pydo_python();
    // azure-core (under pydo) sends a bearer token over HTTPS only: the
    // simulator serves TLS, and requests trusts its certificate.
    let sim = DoSim::start_with(&["--action-ms", "100", "--tls"]);
    let ca = sim.ca_cert.clone().expect("--tls gives a certificate");
    // Three more images under the family tag: the listing pages (2 a page).
    let planted: Vec<serde_json::Value> = (1..=3)
        .map(|i| serde_json::json!({"name": format!("web-old-{i}"), "tags": ["golden-family:web"]}))
        .collect();
    sim.admin_post("/images", serde_json::Value::Array(planted));
    let dir = std::env::temp_dir().join(format!("golden-pydo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("id");
    run(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
        "ssh-keygen",
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/pydo_lifecycle.py");
    let out = Command::new(&python)
        .arg(&script)
        .env("SIM_ENDPOINT", &sim.endpoint)
        .env("SIM_TOKEN", &sim.token)
        .env("SIM_PUBKEY", public.trim())
        .env("REQUESTS_CA_BUNDLE", &ca)
        .output()
        .expect("running the pydo lifecycle");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("pydo lifecycle: done"),
        "pydo lifecycle ({}):\n{stdout}{stderr}",
        out.status
    );
    sim.assert_schema_clean();
    for (method, suffix) in [
        ("POST", "/v2/account/keys"),
        ("POST", "/v2/droplets"),
        ("POST", "/actions"),
        ("GET", "/snapshots"),
        ("POST", "/v2/tags"),
        ("POST", "/resources"),
        ("DELETE", "/resources"),
        ("PUT", "/v2/images/"),
        ("GET", "/v2/images"),
    ] {
        let n = sim
            .requests()
            .iter()
            .filter(|c| {
                c.method == method
                    && (c.path.ends_with(suffix)
                        || (suffix.ends_with('/') && c.path.contains(suffix)))
            })
            .count();
        assert!(n > 0, "pydo made no {method} ...{suffix}");
    }
    sim.assert_nothing_left();
    let _ = std::fs::remove_dir_all(dir);
}
