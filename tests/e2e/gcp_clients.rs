//! Google's official Python client for Compute Engine,
//! `google-cloud-compute` (REST transport), against the GCE simulator,
//! unmodified: the lifecycle calls golden makes (instances.insert with a boot
//! disk from an image, `startup-script`/`user-data` that print a marker and
//! power off, operations wait/get, the serial port by start/next, images
//! insert/get/patch/setLabels (a stale fingerprint is 412)/getFromFamily,
//! images.list by label two a page, a failed operation, deletes), with the
//! key file the simulator issued (its `token_uri` and self-signed JWTs); the
//! simulator's schema-violation log must stay empty and nothing be left.
//!
//! google-cloud-compute (PyPI) is installed into a venv under
//! `~/.cache/golden/venv-gcp-compute` on first use (`python3 -m venv`,
//! Debian's python3-venv).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::gcp_sim::GcpSim;

/// The releases the lifecycle script is written against (google-auth pinned
/// too: it makes the token-endpoint assertion and the self-signed JWTs).
const COMPUTE_VERSION: &str = "1.57.0";
const AUTH_VERSION: &str = "2.63.0";

fn venv_dir() -> PathBuf {
    std::env::var_os("GOLDEN_GCP_COMPUTE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/golden/venv-gcp-compute")
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

/// A Python with google-cloud-compute, made on first use. Missing tools are
/// a failure that says what to install, never a skip.
fn compute_python() -> PathBuf {
    let venv = venv_dir();
    let python = venv.join("bin/python");
    let check = format!(
        "import importlib.metadata as m; \
         assert m.version('google-cloud-compute') == '{COMPUTE_VERSION}'; \
         assert m.version('google-auth') == '{AUTH_VERSION}'"
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
        "creating the google-cloud-compute venv (Debian: apt-get install python3-venv)",
    );
    run(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            &format!("google-cloud-compute=={COMPUTE_VERSION}"),
            &format!("google-auth=={AUTH_VERSION}"),
        ]),
        "installing google-cloud-compute from PyPI",
    );
    python
}

#[test]
fn gcp_google_cloud_compute_drives_golden_lifecycle_within_the_spec() {
    let python = compute_python();
    // An operation takes 1 s: the guest powers off as its insert is DONE and
    // is STOPPING for that long, while its serial port can still be read
    // (GCE refuses a TERMINATED instance's).
    let sim = GcpSim::start_with(&["--op-ms", "1000"]);
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/gcp_compute_lifecycle.py");
    let out = Command::new(&python)
        .arg(&script)
        .env("SIM_ENDPOINT", &sim.endpoint)
        .env("SIM_CREDENTIALS", &sim.credentials)
        .env("SIM_PROJECT", &sim.project)
        .env("SIM_ZONE", &sim.zone)
        .env("SIM_ADMIN", &sim.admin)
        // Nothing from the developer's own Google setup.
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env_remove("GOOGLE_API_USE_CLIENT_CERTIFICATE")
        .env_remove("GOOGLE_API_USE_MTLS_ENDPOINT")
        .env_remove("GOOGLE_CLOUD_UNIVERSE_DOMAIN")
        .output()
        .expect("running the google-cloud-compute lifecycle");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("gcp compute lifecycle: done"),
        "google-cloud-compute lifecycle ({}):\n{stdout}{stderr}",
        out.status
    );
    sim.assert_schema_clean();
    let log = sim.admin_get("/requests");
    let calls = log.as_array().expect("the request log");
    for (method, suffix) in [
        ("POST", "/token"),
        ("POST", "/instances"),
        ("GET", "/serialPort"),
        ("POST", "/wait"),
        ("GET", "/operations/"),
        ("POST", "/global/images"),
        ("PATCH", "/global/images/"),
        ("POST", "/setLabels"),
        ("GET", "/global/images/family/"),
        ("GET", "/global/images"),
        ("DELETE", "/instances/"),
        ("DELETE", "/global/images/"),
    ] {
        let n = calls
            .iter()
            .filter(|c| {
                let path = c["path"].as_str().unwrap_or_default();
                c["method"] == method
                    && (path.ends_with(suffix) || (suffix.ends_with('/') && path.contains(suffix)))
            })
            .count();
        assert!(n > 0, "google-cloud-compute made no {method} ...{suffix}");
    }
    // Every Compute call but the token exchange was authenticated, and the
    // stale fingerprint's 412 was the one refusal by precondition.
    assert!(calls.iter().all(|c| c["auth_ok"] == true), "{log:#}");
    let n412 = calls.iter().filter(|c| c["status"] == 412).count();
    assert_eq!(n412, 1, "one stale setLabels");
    sim.assert_nothing_left();
}
