//! One golden build and smoke test through terraform on the GCE
//! simulator's QEMU backend: the build instance is a real guest (booted from
//! the base image behind `debian-cloud` family `debian-12`) that runs the
//! recipe's user data, reports on serial port 1 and powers itself off; the
//! image is its flattened disk; the smoke test is a second real guest whose
//! checks run inside it and whose verdicts golden reads from the serial port
//! (GCE has no host channel into a guest).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::gcp_sim::GcpSim;
use super::util::{base_image, qemu_processes, resource, TfDir};

const FAMILY: &str = "e2e-gcp-qemu";
const DEBIAN: &str = "projects/debian-cloud/global/images/family/debian-12";

#[test]
#[ignore = "boots QEMU guests behind the simulator; run by make test"]
fn golden_build_and_smoke_test_on_the_gcp_simulator_qemu_backend() {
    let base = base_image();
    // The simulator's overlays, seeds and images live beside terraform's files.
    let scratch = tempfile::Builder::new()
        .prefix("golden-e2e-gcp-qemu-")
        .tempdir()
        .unwrap();
    let state = scratch.path().join("simstate");
    let state_text = state.to_str().unwrap().to_owned();
    let sim = GcpSim::start_with(&[
        "--op-ms",
        "200",
        "--backend",
        "qemu",
        "--image",
        &format!("debian-cloud/family/debian-12={}", base.display()),
        "--state",
        &state_text,
    ]);
    let tf = TfDir::with_env(&sim.provider_env());
    let provider = format!(
        "provider \"golden\" {{\n  gcp {{\n    api_endpoint      = \"{}\"\n    power_off_timeout = \"20m\"\n  }}\n}}\n",
        sim.endpoint
    );
    let body = format!(
        r#"
resource "golden_image" "x" {{
  platform = "gcp"
  family   = "{FAMILY}"
  source {{ image = "{DEBIAN}" }}
  provision {{
    files    = {{
      "/etc/golden-e2e" = "qemu"
      "/etc/motd"       = "grün ✓ golden"
    }}
    commands = ["grep -qx qemu /etc/golden-e2e"]
  }}
  tags = {{ os = "debian-12", type = "minimal" }}
  smoke_test {{
    checks   = ["boot", "guest_agent", "cloud_init", "ssh"]
    commands = ["test -f /etc/golden-e2e", "test ! -e /var/lib/golden/provision.sh", "grep -qx 'grün ✓ golden' /etc/motd"]
    timeout  = "15m"
  }}
}}
"#
    );
    tf.write_with_provider(&provider, &body);
    let started = Instant::now();
    tf.apply();
    eprintln!(
        "gcp qemu backend: build + smoke test through terraform in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // The smoke test's report: every check passed, read from the serial port.
    let x = resource(&tf.state_json(), "golden_image.x").clone();
    assert_eq!(x["validated"], true, "{x:#}");
    let checks = x["validation"]["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "boot",
            "guest_agent",
            "cloud_init",
            "ssh",
            "commands[0]",
            "commands[1]",
            "commands[2]"
        ]
    );
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:#?}");
    for c in &checks[..4] {
        assert!(
            c["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("serial port"),
            "not read from the serial port: {c:#}"
        );
    }

    // The published image: in its family (getFromFamily returns it),
    // labelled validated, the tags as labels.
    let name = x["name"].as_str().unwrap();
    assert_eq!(
        x["image_id"],
        format!("projects/{}/global/images/{name}", sim.project)
    );
    let img = sim.expect(200, "GET", &sim.global(&format!("images/{name}")), None);
    assert_eq!(img["status"], "READY", "{img:#}");
    assert_eq!(img["family"], FAMILY, "{img:#}");
    for (k, v) in [
        ("golden-family", FAMILY),
        ("golden-status", "validated"),
        ("os", "debian-12"),
        ("type", "minimal"),
    ] {
        assert_eq!(img["labels"][k], v, "label {k}: {img:#}");
    }
    let latest = sim.expect(
        200,
        "GET",
        &sim.global(&format!("images/family/{FAMILY}")),
        None,
    );
    assert_eq!(latest["name"], name, "getFromFamily: {latest:#}");
    // Only the published image: no candidate or failed one.
    let ours: Vec<Value> = sim
        .admin_get("/images")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i["labels"]["golden-family"] == FAMILY)
        .collect();
    assert_eq!(ours.len(), 1, "only the published image: {ours:#?}");

    // Nothing left running: no instance, no disk, no QEMU; nothing outside
    // the discovery document.
    for what in ["instances", "disks"] {
        let v = sim.admin_get(&format!("/{what}"));
        assert_eq!(v, json!([]), "{what} left: {v:#}");
    }
    let end = Instant::now() + Duration::from_secs(15);
    while !qemu_processes(&state_text).is_empty() {
        assert!(
            Instant::now() < end,
            "QEMU left: {:?}",
            qemu_processes(&state_text)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    sim.assert_schema_clean();
}
