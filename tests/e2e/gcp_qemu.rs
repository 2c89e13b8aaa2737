//! The GCE simulator's QEMU backend: instances are real guests booted from
//! the base image, provisioned by `user-data` through a NoCloud seed, read
//! through `getSerialPortOutput`, imaged by flattening their disk. See
//! docs/guides/gcp-simulator.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::gcp_sim::GcpSim;
use super::util::qemu_processes;

const DEBIAN: &str = "projects/debian-cloud/global/images/family/debian-12";

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = std::env::temp_dir().join(format!("golden-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Inserts an instance (boot disk auto-deleted) with `user-data`; the
/// insert's operation, done.
fn insert(sim: &GcpSim, name: &str, image: &str, user_data: &str) -> Value {
    let body = json!({
        "name": name,
        "machineType": format!("zones/{}/machineTypes/e2-small", sim.zone),
        "disks": [{"boot": true, "autoDelete": true, "initializeParams": {"sourceImage": image}}],
        "networkInterfaces": [{"network": "global/networks/default"}],
        "metadata": {"items": [{"key": "user-data", "value": user_data}]},
    });
    let op = sim.expect(200, "POST", &sim.zonal("instances"), Some(body));
    let done = sim.wait(&op);
    assert!(done.get("error").is_none(), "{done:#}");
    done
}

/// Reads serial port 1 with `start` = the last `next` until `needle` shows
/// up (a `start` moving forward would mean lost output); the whole text.
fn read_serial_until(sim: &GcpSim, name: &str, needle: &str, timeout: Duration) -> String {
    let end = Instant::now() + timeout;
    let mut text = String::new();
    let mut next = 0u64;
    loop {
        let a = sim.call(
            "GET",
            &sim.zonal(&format!("instances/{name}/serialPort?port=1&start={next}")),
            None,
        );
        assert_eq!(
            a.status, 200,
            "serial port of {name} ({:#}); so far:\n{text}",
            a.body
        );
        let start: u64 = a.body["start"].as_str().unwrap().parse().unwrap();
        assert_eq!(start, next, "serial output lost");
        text += a.body["contents"].as_str().unwrap();
        next = a.body["next"].as_str().unwrap().parse().unwrap();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < end,
            "no {needle:?} on {name}'s serial port within {timeout:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn qemu_img_info(path: &Path) -> Value {
    let out = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "qemu-img info {}", path.display());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait_no_qemu(needle: &str) {
    let end = Instant::now() + Duration::from_secs(15);
    while !qemu_processes(needle).is_empty() {
        assert!(
            Instant::now() < end,
            "QEMU left: {:?}",
            qemu_processes(needle)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The build and the smoke test of issue 11 on real guests: an instance
/// from the base image (backing `debian-cloud` family `debian-12`) runs its
/// user data, prints its marker on the serial port and powers off; its
/// disk becomes an image (the instance cannot go while it is imaged); an
/// instance from that image sees the build's file and says so on the
/// serial port. Then nothing is left: no instance, disk, image, file or
/// QEMU process, also when the simulator exits under a running guest. Two
/// guest boots; the timings go to stderr.
#[test]
#[ignore = "boots QEMU guests behind the simulator; run by make test"]
fn gcp_qemu_backend_build_image_and_smoke_test_through_the_serial_port() {
    let base = super::util::base_image();
    let dir = temp_dir("gcp-qemu");
    let state = dir.join("state");
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

    // 1. The build: user data writes a file, prints the marker, powers off.
    let build_ud = format!(
        "#cloud-config\n{}",
        json!({
            "write_files": [{"path": "/etc/golden-gcp", "content": "built on the QEMU backend\n"}],
            "runcmd": [["sh", "-c", "echo 'GOLDEN-PROVISION rc=0 step=done' > /dev/ttyS0"]],
            "power_state": {"mode": "poweroff", "message": "golden: build done"},
        })
    );
    let t = Instant::now();
    insert(&sim, "build-qemu", DEBIAN, &build_ud);
    let i = sim.expect(200, "GET", &sim.zonal("instances/build-qemu"), None);
    assert_eq!(i["status"], "RUNNING", "{i:#}");
    assert_eq!(qemu_processes(&state_text).len(), 1);
    let serial = read_serial_until(
        &sim,
        "build-qemu",
        "GOLDEN-PROVISION rc=0 step=done",
        Duration::from_secs(900),
    );
    let to_marker = t.elapsed();
    assert!(serial.contains("Linux version"), "no kernel on the console");
    sim.wait_status_for("build-qemu", "TERMINATED", Duration::from_secs(300));
    let to_terminated = t.elapsed();
    wait_no_qemu(&state_text);

    // 2. The image from its disk; the disk is in use until that is DONE.
    let t = Instant::now();
    let op = sim.expect(
        200,
        "POST",
        &sim.global("images"),
        Some(json!({"name": "golden-qemu-cand",
            "sourceDisk": format!("projects/{}/zones/{}/disks/build-qemu", sim.project, sim.zone)})),
    );
    let refused = sim.call("DELETE", &sim.zonal("instances/build-qemu"), None);
    assert_eq!(refused.status, 400, "{:#}", refused.body);
    assert_eq!(
        refused.body["error"]["errors"][0]["reason"], "resourceInUseByAnotherResource",
        "{:#}",
        refused.body
    );
    let done = sim.wait(&op);
    assert!(done.get("error").is_none(), "{done:#}");
    let image_time = t.elapsed();
    let img = sim.expect(200, "GET", &sim.global("images/golden-qemu-cand"), None);
    assert_eq!(img["status"], "READY");
    let image_file = state.join(format!(
        "images/image-{}.qcow2",
        img["id"].as_str().unwrap()
    ));
    let info = qemu_img_info(&image_file);
    assert_eq!(info["format"], "qcow2");
    assert!(info["backing-filename"].is_null(), "not flattened: {info}");
    let op = sim.expect(200, "DELETE", &sim.zonal("instances/build-qemu"), None);
    sim.wait(&op);
    let files: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("instance-") || n.starts_with("disk-"))
        .collect();
    assert!(files.is_empty(), "the build's files are left: {files:?}");

    // 3. The smoke test: an instance from the image checks the file.
    let smoke_ud = format!(
        "#cloud-config\n{}",
        json!({
            "runcmd": [["sh", "-c",
                "if [ -f /etc/golden-gcp ]; then r=ok; else r=failed; fi; echo \"GOLDEN-CHECK file $r\" > /dev/ttyS0; \
                 if systemctl is-active --quiet ssh; then r=ok; else r=failed; fi; echo \"GOLDEN-CHECK ssh $r\" > /dev/ttyS0"]],
            "power_state": {"mode": "poweroff", "message": "golden: smoke done"},
        })
    );
    let t = Instant::now();
    insert(
        &sim,
        "smoke-qemu",
        "global/images/golden-qemu-cand",
        &smoke_ud,
    );
    let serial = read_serial_until(
        &sim,
        "smoke-qemu",
        "GOLDEN-CHECK ssh ",
        Duration::from_secs(900),
    );
    let smoke_time = t.elapsed();
    assert!(serial.contains("GOLDEN-CHECK file ok"), "{serial}");
    let ssh_line = serial
        .lines()
        .find(|l| l.contains("GOLDEN-CHECK ssh "))
        .unwrap_or("")
        .trim()
        .to_owned();
    sim.wait_status_for("smoke-qemu", "TERMINATED", Duration::from_secs(300));

    // 4. Delete all: the image first (its file stays while the smoke
    // instance's disk stands on it), then the instance.
    let op = sim.expect(200, "DELETE", &sim.global("images/golden-qemu-cand"), None);
    sim.wait(&op);
    assert!(image_file.exists(), "deleted under a live overlay");
    let op = sim.expect(200, "DELETE", &sim.zonal("instances/smoke-qemu"), None);
    sim.wait(&op);
    assert!(!image_file.exists(), "the image's file is left");
    sim.assert_schema_clean();
    sim.assert_nothing_left();
    wait_no_qemu(&state_text);
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "images" && n != "credentials.json")
        .collect();
    assert!(left.is_empty(), "files left in the state dir: {left:?}");

    // 5. An instance still running when the simulator exits: its QEMU and
    // files go with the simulator.
    insert(&sim, "left-running", DEBIAN, "#cloud-config\n{}\n");
    assert_eq!(qemu_processes(&state_text).len(), 1);
    drop(sim);
    wait_no_qemu(&state_text);
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("instance-") || n.starts_with("disk-"))
        .collect();
    assert!(left.is_empty(), "files outlived the simulator: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "gcp qemu timings: insert to GOLDEN-PROVISION on the serial port {:.1}s, to TERMINATED {:.1}s; \
         images.insert (flatten) {:.1}s; insert from the image to GOLDEN-CHECK {:.1}s ({ssh_line})",
        to_marker.as_secs_f64(),
        to_terminated.as_secs_f64(),
        image_time.as_secs_f64(),
        smoke_time.as_secs_f64(),
    );
}
