//! The QEMU backend (`--backend qemu --image NAME=PATH`): an instance is a
//! real QEMU guest (`crate::core::guest`, over `golden::qemu`).
//!
//! - Insert: the boot disk is a qcow2 overlay on its image's file (an
//!   `--image` file behind a public image, or one of ours: the qcow2 its
//!   `images.insert` flattened); the metadata server is a NoCloud seed:
//!   the `user-data` metadata value as user-data, or, with a
//!   `startup-script` and no user-data, a cloud-config that runs the
//!   script (GCE's guest agent runs startup scripts; the base image has
//!   cloud-init, not Google's guest environment); `meta-data` with the
//!   instance id as instance-id and the name as hostname.
//! - Boot: QEMU (KVM when it works, else TCG) with user networking and the
//!   serial console captured into the instance's 1 MB ring (what
//!   `getSerialPortOutput` serves). `PROVISIONING` at insert, `STAGING`
//!   while the disk, the seed and QEMU are made, `RUNNING` once QEMU runs.
//! - The guest powering itself off (QEMU exits): `STOPPING`, then
//!   `TERMINATED`. `instances.stop`: the ACPI button, a hard stop after
//!   `STOP_WAIT`.
//! - `images.insert` from a `TERMINATED` instance's disk: `qemu-img
//!   convert` of the overlay and its chain into one compressed qcow2 owned
//!   by the image; the operation lasts as long as the conversion.
//! - Delete: QEMU killed, overlay, seed and serial log removed; an image's
//!   file goes with the image (or, while disks still stand on it, with the
//!   last of them); everything goes when the simulator exits.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::state::{now_ms, Disk, Image, Instance, Options, Project, Shared};
use crate::core::guest::{self, Boot, QemuGuest};
use golden::qemu::img;

/// How long `instances.stop` waits for the guest to act on the ACPI button
/// before a hard stop (GCE gives a guest 90 s to shut down).
const STOP_WAIT: Duration = Duration::from_secs(90);

/// How often the serial log is copied into the ring and QEMU looked at.
const PUMP: Duration = Duration::from_millis(250);

/// Where a startup script goes inside the guest.
const SCRIPT_PATH: &str = "/var/lib/golden-sim/startup-script";

/// The file an instance of `image` boots from, or why there is none.
pub fn image_file(image: &Image) -> Result<PathBuf, String> {
    image.file.clone().ok_or_else(|| {
        format!(
            "The simulator's QEMU backend has no disk file for {}: start golden-sim gcp with --image {}/{}=PATH",
            image.path(),
            image.project,
            image.name,
        )
    })
}

pub fn instance_dir(opts: &Options, id: u64) -> PathBuf {
    opts.state_dir.join(format!("instance-{id}"))
}

pub fn disk_file(opts: &Options, disk_id: u64) -> PathBuf {
    opts.state_dir.join(format!("disk-{disk_id}.qcow2"))
}

fn meta_data(id: u64, name: &str) -> String {
    format!("instance-id: {id}\nlocal-hostname: {}\n", yaml_str(name))
}

/// A YAML double-quoted scalar (JSON strings are valid YAML).
fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The NoCloud user-data: the `user-data` metadata value; else a
/// cloud-config that runs the `startup-script` as Google's guest agent
/// would (every line on the serial port as `startup-script: <line>`, then
/// its exit status); else an empty cloud-config.
pub fn user_data(user_data: Option<&str>, startup_script: Option<&str>) -> String {
    if let Some(ud) = user_data {
        return ud.to_owned();
    }
    let Some(script) = startup_script else {
        return "#cloud-config\n{}\n".to_owned();
    };
    let runner = "google_metadata_script_runner";
    let run = format!(
        "exec > /dev/ttyS0 2>&1; echo '{runner}: Found startup-script in metadata.'; \
         if [ \"$(head -c2 {SCRIPT_PATH})\" = '#!' ]; then {SCRIPT_PATH}; else /bin/sh {SCRIPT_PATH}; fi 2>&1 \
         | while IFS= read -r l; do echo \"{runner}: startup-script: $l\"; done; \
         echo \"{runner}: startup-script exit status ${{PIPESTATUS[0]:-?}}\"; \
         echo '{runner}: Finished running startup scripts.'"
    );
    let cfg = json!({
        "write_files": [{"path": SCRIPT_PATH, "permissions": "0755", "content": script}],
        "runcmd": [["/bin/bash", "-c", run]],
    });
    format!("#cloud-config\n{cfg}\n")
}

/// Memory and vCPUs for a machine type, capped for a two-core TCG host.
fn size(machine_type: &str) -> (u32, u32) {
    let (mem, cpus) = match machine_type {
        "f1-micro" | "e2-micro" => (1024, 2),
        "g1-small" | "e2-small" => (2048, 2),
        _ => (2048, 2),
    };
    (mem.min(2048), cpus.min(2))
}

fn set_status(shared: &Shared, name: &str, id: u64, status: &'static str) -> Result<(), String> {
    let mut st = shared.lock();
    match st.instances.get_mut(name) {
        Some(i) if i.id == id && !i.deleting => {
            i.status = status;
            Ok(())
        }
        _ => Err("the instance was deleted".into()),
    }
}

/// `instances.insert`'s work: overlay and seed, then QEMU. `STAGING` while
/// they are made, `RUNNING` once QEMU runs.
pub async fn create(shared: &Shared, name: &str) -> Result<(), String> {
    let (id, workdir, disk, backing, ud, machine) = {
        let st = shared.lock();
        let i = st.instances.get(name).ok_or("the instance was deleted")?;
        let d = st
            .disks
            .get(&i.disks[0].disk)
            .ok_or("the boot disk was deleted")?;
        (
            i.id,
            instance_dir(&st.opts, i.id),
            d.file.clone().ok_or("the boot disk has no file")?,
            d.backing.clone().ok_or("the boot disk has no image file")?,
            user_data(
                i.metadata_value("user-data"),
                i.metadata_value("startup-script"),
            ),
            i.machine_type.clone(),
        )
    };
    set_status(shared, name, id, "STAGING")?;
    let made = async {
        guest::make_disk_file(&disk, Some(&backing), 0).await?;
        std::fs::create_dir_all(&workdir)
            .map_err(|e| format!("creating {}: {e}", workdir.display()))?;
        guest::make_seed(&workdir, &ud, &meta_data(id, name), None).await
    }
    .await;
    let seed = match made {
        Ok(seed) => seed,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&workdir);
            let _ = std::fs::remove_file(&disk);
            return Err(e);
        }
    };
    let (memory_mib, cpus) = size(&machine);
    let launched = guest::boot(Boot {
        name: format!("gce-{name}"),
        disk: disk.clone(),
        seed,
        workdir: workdir.clone(),
        memory_mib,
        cpus,
        forward_ssh: false,
    })
    .await;
    let launched = match launched {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&workdir);
            let _ = std::fs::remove_file(&disk);
            return Err(e);
        }
    };
    let guest = Arc::new(launched.guest);
    eprintln!(
        "golden-sim: instance {name} booting under QEMU ({}), serial log {}",
        launched.accel,
        launched.serial_log.display()
    );
    {
        let mut st = shared.lock();
        match st.instances.get_mut(name) {
            Some(i) if i.id == id && !i.deleting => {
                i.guest = Some(guest.clone());
                i.status = "RUNNING";
                i.last_start_ms = Some(now_ms());
            }
            _ => {
                // Deleted while it was being made: its delete found no
                // guest to kill and may have run before the files existed.
                guest.kill_soon();
                let _ = std::fs::remove_dir_all(&workdir);
                let _ = std::fs::remove_file(&disk);
                return Err("the instance was deleted".into());
            }
        }
    }
    tokio::spawn(watch(
        shared.clone(),
        name.to_owned(),
        guest,
        launched.serial_log,
    ));
    Ok(())
}

/// Whether `guest` is still the instance's running guest.
fn is_current(st: &Project, name: &str, guest: &Arc<QemuGuest>) -> bool {
    matches!(st.instances.get(name).and_then(|i| i.guest.as_ref()),
        Some(g) if Arc::ptr_eq(g, guest))
}

/// The guest is down: `TERMINATED`.
fn terminated(shared: &Shared, name: &str, guest: &Arc<QemuGuest>) {
    let mut st = shared.lock();
    if !is_current(&st, name, guest) {
        return;
    }
    if let Some(i) = st.instances.get_mut(name) {
        i.guest = None;
        if !i.deleting {
            i.status = "TERMINATED";
            i.last_stop_ms = Some(now_ms());
        }
    }
}

/// New bytes of the serial log since `offset`.
fn read_from(path: &Path, offset: &mut u64) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        if f.seek(SeekFrom::Start(*offset)).is_ok() && f.read_to_end(&mut buf).is_ok() {
            *offset += buf.len() as u64;
        }
    }
    buf
}

/// Copies the serial log into the instance's ring as the guest writes it;
/// the guest powering itself off makes the instance `STOPPING`, then
/// `TERMINATED`.
async fn watch(shared: Shared, name: String, guest: Arc<QemuGuest>, serial_log: PathBuf) {
    let mut offset = 0u64;
    loop {
        tokio::time::sleep(PUMP).await;
        let bytes = read_from(&serial_log, &mut offset);
        let exited = guest.has_exited().await;
        // QEMU may have written its last bytes just before exiting.
        let tail = if exited {
            read_from(&serial_log, &mut offset)
        } else {
            Vec::new()
        };
        let op_ms = {
            let mut st = shared.lock();
            if !is_current(&st, &name, &guest) {
                return;
            }
            let op_ms = st.opts.op_ms;
            if let Some(i) = st.instances.get_mut(&name) {
                i.serial.write(&bytes);
                i.serial.write(&tail);
                if exited && !i.deleting {
                    i.status = "STOPPING";
                }
            }
            op_ms
        };
        if exited {
            eprintln!("golden-sim: instance {name}'s guest powered off");
            tokio::time::sleep(Duration::from_millis((op_ms / 2).max(100))).await;
            terminated(&shared, &name, &guest);
            return;
        }
    }
}

/// `instances.stop`'s work: the ACPI button, a hard stop after `STOP_WAIT`.
pub async fn stop(shared: &Shared, name: &str) -> Result<(), String> {
    let g = {
        let st = shared.lock();
        st.instances.get(name).and_then(|i| i.guest.clone())
    };
    let Some(g) = g else { return Ok(()) };
    if !g.shutdown(false, STOP_WAIT, true).await {
        return Err("the guest did not stop".into());
    }
    terminated(shared, name, &g);
    Ok(())
}

/// An instance going: its guest, taken out to be killed (outside the lock).
pub fn take_guest(st: &mut Project, name: &str) -> Option<Arc<QemuGuest>> {
    st.instances.get_mut(name).and_then(|i| i.guest.take())
}

/// A deleted instance's files: its seed, serial log and sockets.
pub fn instance_removed(st: &Project, inst: &Instance) {
    let _ = std::fs::remove_dir_all(instance_dir(&st.opts, inst.id));
}

/// A deleted disk's overlay; image files retired while it stood on them
/// go once nothing stands on them.
pub fn disk_removed(st: &mut Project, disk: &Disk) {
    if let Some(f) = &disk.file {
        let _ = std::fs::remove_file(f);
    }
    let retired = std::mem::take(&mut st.retired_files);
    let (keep, gone): (Vec<_>, Vec<_>) = retired
        .into_iter()
        .partition(|f| st.disks.values().any(|d| d.backing.as_ref() == Some(f)));
    for f in gone {
        let _ = std::fs::remove_file(f);
    }
    st.retired_files = keep;
}

/// A deleted image's file (one the simulator made): removed now, or
/// retired while disks' overlays stand on it.
pub fn image_removed(st: &mut Project, image: &Image) {
    let Some(path) = &image.file else { return };
    if !path.starts_with(&st.opts.state_dir) {
        return; // an --image file is the user's
    }
    if st.disks.values().any(|d| d.backing.as_ref() == Some(path)) {
        st.retired_files.push(path.clone());
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// `images.insert`'s work: the disk's overlay flattened into a standalone
/// qcow2 owned by the image. Returns the file.
pub async fn flatten_disk(shared: &Shared, disk: &str, image_id: u64) -> Result<PathBuf, String> {
    let (file, dir) = {
        let st = shared.lock();
        let d = st.disks.get(disk).ok_or("the disk was deleted")?;
        (
            d.file.clone().ok_or("the disk has no file")?,
            st.opts.state_dir.join("images"),
        )
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let out = dir.join(format!("image-{image_id}.qcow2"));
    let t = Instant::now();
    if let Err(e) = img::flatten(&file, &out).await {
        let _ = std::fs::remove_file(&out);
        return Err(format!("{e:#}"));
    }
    eprintln!(
        "golden-sim: disk {disk} flattened into image {image_id} in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// The simulator is exiting: every guest killed, every instance's, disk's
/// and image's file removed.
pub async fn stop_all(shared: &Shared) {
    let (guests, dirs, files) = {
        let mut st = shared.lock();
        let guests: Vec<_> = st
            .instances
            .values_mut()
            .filter_map(|i| i.guest.take())
            .collect();
        let dirs: Vec<_> = st
            .instances
            .values()
            .map(|i| instance_dir(&st.opts, i.id))
            .collect();
        let state_dir = st.opts.state_dir.clone();
        let mut files: Vec<_> = st.disks.values().filter_map(|d| d.file.clone()).collect();
        files.extend(
            st.images
                .values()
                .filter_map(|i| i.file.clone())
                .filter(|p| p.starts_with(&state_dir)),
        );
        files.append(&mut st.retired_files);
        (guests, dirs, files)
    };
    for g in guests {
        g.kill().await;
    }
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
    for f in files {
        let _ = std::fs::remove_file(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_data_names_the_instance() {
        assert_eq!(
            meta_data(42, "build-1"),
            "instance-id: 42\nlocal-hostname: \"build-1\"\n"
        );
    }

    #[test]
    fn user_data_wins_and_a_startup_script_alone_is_run_by_cloud_config() {
        assert_eq!(
            user_data(Some("#cloud-config\n{}"), Some("x")),
            "#cloud-config\n{}"
        );
        assert_eq!(user_data(None, None), "#cloud-config\n{}\n");
        let ud = user_data(None, Some("#!/bin/bash\necho hi\n"));
        let (head, body) = ud.split_once('\n').unwrap();
        assert_eq!(head, "#cloud-config");
        let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
        assert_eq!(v["write_files"][0]["path"], SCRIPT_PATH);
        assert_eq!(v["write_files"][0]["content"], "#!/bin/bash\necho hi\n");
        let run = v["runcmd"][0][2].as_str().unwrap();
        assert!(run.contains("startup-script: $l"), "{run}");
        assert!(run.starts_with("exec > /dev/ttyS0"), "{run}");
    }
}
