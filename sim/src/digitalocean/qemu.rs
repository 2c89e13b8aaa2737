//! The QEMU backend (`--backend qemu --image SLUG=PATH`): a droplet is a real
//! QEMU guest (`crate::core::guest`, over `golden::qemu`).
//!
//! - Create: a qcow2 overlay on its image's file (an `--image` file, or a
//!   snapshot's flattened qcow2) and a NoCloud seed: the droplet's
//!   `user_data` as `user-data`; `meta-data` with the droplet id as the
//!   instance id (cloud-init's DigitalOcean datasource uses `droplet_id`),
//!   its name as hostname and the create's `ssh_keys` as `public-keys` (DO's
//!   metadata `public_keys`); `vendor-data` with `disable_root: false`, which
//!   DO's vendor data carries so that those keys log in as root (a stock
//!   cloud image's `disable_root: true` would refuse root).
//! - Boot: QEMU (KVM when it works, else TCG) with user networking, and the
//!   droplet's public IPv4 `127.0.0.N:ssh_port` forwarded to the guest's :22
//!   (`hostfwd_add` on the monitor). `active` as soon as QEMU runs (DO shows
//!   `active` and the address once the VM is up; sshd answers later).
//! - The guest powering itself off (QEMU exits) makes the droplet `off`;
//!   `shutdown` is the ACPI button, `power_off` a hard stop, `power_on` boots
//!   the same overlay and seed again.
//! - Snapshot (of an `off` droplet): `qemu-img convert` of the overlay and
//!   its chain into one compressed qcow2 owned by the image; the action
//!   lasts as long as the conversion.
//! - Delete: QEMU killed, overlay and seed removed; an image's file goes with
//!   the image (or, while droplets still stand on it, with the last of them).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::{now, Droplet, Image, Shared, Status, SIZES};
use crate::core::guest::{self, Boot, QemuGuest};
use golden::qemu::img;

/// How long the `shutdown` action waits for the guest to act on the ACPI
/// button before it ends `errored` (a Debian guest needs 5-10 s under TCG).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(120);

/// DO's vendor data: what matters here is that the account keys reach root.
const VENDOR_DATA: &str = "#cloud-config\n\
# As DigitalOcean's vendor data: the droplet's ssh_keys log in as root.\n\
disable_root: false\n";

/// The file a droplet of `image` boots from, or why there is none.
pub fn image_file(image: &Image) -> Result<PathBuf, String> {
    image.path.clone().ok_or_else(|| {
        format!(
            "image {} ({}) has no disk file: start golden-sim with --image {}=PATH",
            image.id,
            image.slug.as_deref().unwrap_or(&image.name),
            image.slug.as_deref().unwrap_or("SLUG"),
        )
    })
}

fn meta_data(d: &Droplet) -> String {
    let mut s = format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        d.id,
        yaml_str(&d.name)
    );
    if !d.keys.is_empty() {
        s += "public-keys:\n";
        for k in &d.keys {
            s += &format!("  - {}\n", yaml_str(k.public_key.trim()));
        }
    }
    s
}

/// A YAML double-quoted scalar (JSON strings are valid YAML).
fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// First boot: overlay and seed, then `start`.
pub async fn create(shared: &Shared, id: u64) -> Result<(), String> {
    let (workdir, backing, user_data, meta) = {
        let a = shared.lock();
        let d = a.droplets.get(&id).ok_or("the droplet was deleted")?;
        let image = a.images.get(&d.image_id).ok_or("the image was deleted")?;
        (
            d.workdir(&a.opts),
            image_file(image)?,
            d.user_data.clone().unwrap_or_default(),
            meta_data(d),
        )
    };
    let disk = workdir.join("disk.qcow2");
    guest::make_disk_file(&disk, Some(&backing), 0).await?;
    guest::make_seed(&workdir, &user_data, &meta, Some(VENDOR_DATA)).await?;
    {
        let mut a = shared.lock();
        match a.droplets.get_mut(&id) {
            Some(d) => {
                d.disk = Some(disk);
                d.backing = Some(backing);
            }
            None => {
                let _ = std::fs::remove_dir_all(&workdir);
                return Err("the droplet was deleted".into());
            }
        }
    }
    start(shared, id).await
}

/// Boots the droplet's overlay with its seed and forwards its public IPv4's
/// ssh port to the guest; `active` once QEMU runs.
pub async fn start(shared: &Shared, id: u64) -> Result<(), String> {
    let (boot, ip, port) = {
        let a = shared.lock();
        let d = a.droplets.get(&id).ok_or("the droplet was deleted")?;
        if d.guest.is_some() {
            // Already running: power_on has nothing to do.
            return Ok(());
        }
        let workdir = d.workdir(&a.opts);
        let (memory, vcpus) = SIZES
            .iter()
            .find(|s| s.0 == d.size)
            .map(|s| (s.1, s.2))
            .unwrap_or((1024, 1));
        (
            Boot {
                name: format!("droplet-{id}"),
                disk: d.disk.clone().ok_or("the droplet has no disk")?,
                seed: workdir.join("seed.iso"),
                workdir,
                memory_mib: memory as u32,
                cpus: vcpus as u32,
                forward_ssh: false,
            },
            d.ip.clone(),
            a.opts.ssh_port,
        )
    };
    let launched = guest::boot(boot).await?;
    let guest = Arc::new(launched.guest);
    if let Err(e) = guest.hostfwd_add(&ip, port, 22).await {
        guest.kill().await;
        return Err(format!("forwarding {ip}:{port} to the guest: {e}"));
    }
    eprintln!(
        "golden-sim: droplet {id} booting under QEMU ({}), ssh on {ip}:{port}, serial log {}",
        launched.accel,
        launched.serial_log.display()
    );
    {
        let mut a = shared.lock();
        match a.droplets.get_mut(&id) {
            Some(d) => {
                d.guest = Some(guest.clone());
                d.status = Status::Active;
            }
            None => {
                guest.kill_soon();
                return Err("the droplet was deleted".into());
            }
        }
    }
    tokio::spawn(watch(shared.clone(), id, guest));
    Ok(())
}

/// Whether `guest` is still the droplet's running guest.
fn is_current(shared: &Shared, id: u64, guest: &Arc<QemuGuest>) -> bool {
    let a = shared.lock();
    matches!(a.droplets.get(&id).and_then(|d| d.guest.as_ref()),
        Some(g) if Arc::ptr_eq(g, guest))
}

/// Marks the droplet `off` once its guest is down (QEMU exited).
fn mark_off(shared: &Shared, id: u64, guest: &Arc<QemuGuest>) {
    let mut a = shared.lock();
    if let Some(d) = a.droplets.get_mut(&id) {
        if matches!(&d.guest, Some(g) if Arc::ptr_eq(g, guest)) {
            d.guest = None;
            d.status = Status::Off;
        }
    }
}

/// The guest powering itself off makes the droplet `off`.
async fn watch(shared: Shared, id: u64, guest: Arc<QemuGuest>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !is_current(&shared, id, &guest) {
            return;
        }
        if guest.has_exited().await {
            eprintln!("golden-sim: droplet {id}'s guest powered off");
            mark_off(&shared, id, &guest);
            return;
        }
    }
}

fn current_guest(shared: &Shared, id: u64) -> Result<Option<Arc<QemuGuest>>, String> {
    let a = shared.lock();
    let d = a.droplets.get(&id).ok_or("the droplet was deleted")?;
    Ok(d.guest.clone())
}

/// `shutdown`: the ACPI power button; the action ends when the guest is
/// down, or `errored` when it ignores the button.
pub async fn shutdown(shared: &Shared, id: u64) -> Result<(), String> {
    let Some(g) = current_guest(shared, id)? else {
        return Ok(());
    };
    g.acpi_powerdown().await?;
    if !g.wait_exit(SHUTDOWN_WAIT).await {
        // Best effort, as DO's: the action completes and the droplet stays
        // `active` (digitalocean/api-v2 #79).
        eprintln!(
            "golden-sim: droplet {id}: the guest ignored shutdown for {}s; the action completes, the droplet stays active",
            SHUTDOWN_WAIT.as_secs()
        );
        return Ok(());
    }
    mark_off(shared, id, &g);
    Ok(())
}

/// `power_off`: a hard stop (the power cord).
pub async fn power_off(shared: &Shared, id: u64) -> Result<(), String> {
    if let Some(g) = current_guest(shared, id)? {
        g.kill().await;
        mark_off(shared, id, &g);
    }
    Ok(())
}

/// `snapshot` of an `off` droplet: its overlay flattened into a standalone
/// qcow2 owned by the new image. Returns the file.
pub async fn snapshot_file(shared: &Shared, id: u64, image_id: u64) -> Result<PathBuf, String> {
    let (disk, dir) = {
        let a = shared.lock();
        let d = a.droplets.get(&id).ok_or("the droplet was deleted")?;
        if d.guest.is_some() {
            return Err("the droplet is running".into());
        }
        (
            d.disk.clone().ok_or("the droplet has no disk")?,
            a.opts.state_dir.join("images"),
        )
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let out = dir.join(format!("snapshot-{image_id}.qcow2"));
    let t = Instant::now();
    if let Err(e) = img::flatten(&disk, &out).await {
        let _ = std::fs::remove_file(&out);
        return Err(format!("{e:#}"));
    }
    eprintln!(
        "golden-sim: droplet {id} snapshot {} took {:.1}s ({})",
        image_id,
        t.elapsed().as_secs_f64(),
        now()
    );
    if !shared.lock().droplets.contains_key(&id) {
        let _ = std::fs::remove_file(&out);
        return Err("the droplet was deleted".into());
    }
    Ok(out)
}

/// The size DO reports for a snapshot (`size_gigabytes`): the file's.
pub fn size_gigabytes(path: &Path) -> f64 {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    (bytes as f64 / 1e9 * 100.0).round() / 100.0
}

/// What a deleted droplet leaves to tear down: its guest is killed, its
/// overlay and seed removed; image files retired while it stood on them
/// go once nothing stands on them.
pub fn droplet_removed(a: &mut super::state::Account, d: Droplet) {
    if let Some(g) = &d.guest {
        g.kill_soon();
    }
    if d.disk.is_some() || d.guest.is_some() {
        let _ = std::fs::remove_dir_all(d.workdir(&a.opts));
    }
    let in_use = |a: &super::state::Account, f: &PathBuf| {
        a.droplets.values().any(|d| d.backing.as_ref() == Some(f))
    };
    let retired = std::mem::take(&mut a.retired_files);
    let (keep, gone): (Vec<_>, Vec<_>) = retired.into_iter().partition(|f| in_use(a, f));
    for f in gone {
        let _ = std::fs::remove_file(f);
    }
    a.retired_files = keep;
}

/// A deleted image's file (a snapshot's, which the simulator owns): removed
/// now, or retired while droplets' overlays stand on it.
pub fn image_removed(a: &mut super::state::Account, img: &Image) {
    let Some(path) = &img.path else { return };
    if !path.starts_with(&a.opts.state_dir) {
        return; // an --image file is the user's
    }
    if a.droplets
        .values()
        .any(|d| d.backing.as_ref() == Some(path))
    {
        a.retired_files.push(path.clone());
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// The simulator is exiting: every guest killed, every droplet's and
/// snapshot's file removed.
pub async fn stop_all(shared: &Shared) {
    let (guests, dirs, files) = {
        let mut a = shared.lock();
        let guests: Vec<_> = a
            .droplets
            .values_mut()
            .filter_map(|d| d.guest.take())
            .collect();
        let dirs: Vec<_> = a
            .droplets
            .values()
            .filter(|d| d.disk.is_some())
            .map(|d| d.workdir(&a.opts))
            .collect();
        let state_dir = a.opts.state_dir.clone();
        let mut files: Vec<_> = a
            .images
            .values()
            .filter_map(|i| i.path.clone())
            .filter(|p| p.starts_with(&state_dir))
            .collect();
        files.append(&mut a.retired_files);
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
    use crate::core::guestfs::GuestFs;

    #[test]
    fn meta_data_names_the_droplet_and_its_keys() {
        let d = Droplet {
            id: 1042,
            name: "build: 1".into(),
            region: "nyc3".into(),
            size: "s-1vcpu-1gb".into(),
            image_id: 1001,
            status: Status::New,
            locked: false,
            created_at: now(),
            tags: vec![],
            user_data: None,
            keys: vec![super::super::state::Key {
                id: 1,
                name: "k".into(),
                public_key: "ssh-ed25519 AAAA me@h\n".into(),
                fingerprint: String::new(),
            }],
            ip: "127.0.0.2".into(),
            host_key: None,
            snapshot_ids: vec![],
            action_ids: vec![],
            fs: GuestFs::default(),
            sshd: None,
            guest: None,
            disk: None,
            backing: None,
        };
        assert_eq!(
            meta_data(&d),
            "instance-id: 1042\nlocal-hostname: \"build: 1\"\npublic-keys:\n  - \"ssh-ed25519 AAAA me@h\"\n"
        );
    }
}
