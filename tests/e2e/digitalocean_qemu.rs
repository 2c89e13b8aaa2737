//! One golden build and smoke test through terraform on the DigitalOcean
//! simulator's QEMU backend: the build droplet is a real guest that runs the
//! recipe's cloud-config and powers itself off, the snapshot is a flattened
//! qcow2, and the smoke test logs into a second real guest over SSH, as root
//! with the throwaway account key and the host key golden made and pinned.

use std::time::Instant;

use super::do_sim::DoSim;
use super::util::{base_image, resource, TfDir};

const FAMILY: &str = "e2e-do-qemu";

#[test]
#[ignore = "boots QEMU guests behind the simulator; run by make test"]
fn golden_build_and_smoke_test_on_the_digitalocean_simulator_qemu_backend() {
    let base = base_image();
    // The simulator's guests and snapshots live beside terraform's files.
    let scratch = tempfile::Builder::new()
        .prefix("golden-e2e-do-qemu-")
        .tempdir()
        .unwrap();
    let state = scratch.path().join("simstate");
    let sim = DoSim::start_with(&[
        "--backend",
        "qemu",
        "--image",
        &format!("debian-12-x64={}", base.display()),
        "--state",
        state.to_str().unwrap(),
    ]);
    let tf = TfDir::with_env(&[
        ("DIGITALOCEAN_API_URL".into(), sim.endpoint.clone()),
        ("DIGITALOCEAN_TOKEN".into(), sim.token.clone()),
    ]);
    let provider = format!(
        "provider \"golden\" {{\n  digitalocean {{\n    ssh_port = {}\n  }}\n}}\n",
        sim.ssh_port
    );
    let body = format!(
        r#"
resource "golden_image" "x" {{
  platform = "digitalocean"
  family   = "{FAMILY}"
  source {{ slug = "debian-12-x64" }}
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
        "digitalocean qemu backend: build + smoke test through terraform in {:.0} s",
        started.elapsed().as_secs_f64()
    );

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

    // The published snapshot: final name, validated, and a real image file.
    let name = x["name"].as_str().unwrap();
    let images = sim.images();
    let published = images
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no image named {name} in {images:#?}"));
    let tags: Vec<&str> = published["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(tags.contains(&"golden-status:validated"), "{tags:?}");
    assert!(!tags.contains(&"golden-status:candidate"), "{tags:?}");
    let private: Vec<_> = images.iter().filter(|i| i["public"] != true).collect();
    assert_eq!(private.len(), 1, "only the published image: {private:#?}");

    // The smoke test logged in over SSH with the pinned host key.
    let ssh = checks.iter().find(|c| c["name"] == "ssh").unwrap();
    assert!(
        ssh["detail"].as_str().unwrap_or_default().contains("root"),
        "{ssh:#}"
    );

    sim.assert_schema_clean();
    sim.assert_nothing_left();
}
