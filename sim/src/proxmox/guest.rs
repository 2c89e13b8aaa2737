//! Powering a VM on: the instant backend just marks it running (and plays
//! cloud-init's part by setting the hostname); the QEMU backend boots a real
//! guest from the VM's disk file with a NoCloud seed made from the VM's
//! cloud-init settings, the way PVE builds its cloud-init drive (the QEMU
//! process itself is the core's guest backend, `crate::core::guest`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::{Backend, Power, Shared};
use super::vms::DiskFile;
use crate::core::guest::{self, GuestSpec, QemuGuest};
use crate::core::util::{pct_decode, unix_now};

/// What a boot needs from the VM's config, read under the lock.
struct BootPlan {
    name: String,
    memory_mib: u32,
    cpus: u32,
    disk: Option<std::path::PathBuf>,
    boot_volid: Option<String>,
    user_data: String,
    workdir: std::path::PathBuf,
}

pub async fn boot(shared: &Shared, vmid: u32) -> Result<(), String> {
    let (backend, plan) = {
        let mut cl = shared.lock();
        let backend = cl.opts.backend;
        let workdir = cl.opts.state_dir.join("vms").join(vmid.to_string());
        let vm = cl.vm(vmid).map_err(|e| e.message)?;
        if vm.running() {
            return Err(format!("VM {vmid} already running"));
        }
        let boot_volid = vm.boot_volid();
        let plan = BootPlan {
            name: vm.name(),
            memory_mib: vm.memory_mib().clamp(256, 16384) as u32,
            cpus: vm.cores().clamp(1, 8) as u32,
            disk: boot_volid
                .as_ref()
                .and_then(|id| cl.volumes.get(id))
                .and_then(|v| v.path.clone()),
            boot_volid: boot_volid.clone(),
            user_data: user_data(&vm.name(), &vm.config),
            workdir,
        };
        if backend == Backend::Instant {
            // cloud-init names the host after the VM on first boot.
            // It also installs the configured user's SSH keys, which a smoke
            // test looks for.
            let keys = vm.config.get("sshkeys").map(|k| url_decode(k));
            let user = vm
                .config
                .get("ciuser")
                .cloned()
                .unwrap_or_else(|| "debian".to_owned());
            if let Some(vol) = boot_volid.and_then(|id| cl.volumes.get_mut(&id)) {
                vol.files.insert(
                    "/etc/hostname".into(),
                    format!("{}\n", plan.name).into_bytes(),
                );
                if let Some(keys) = keys {
                    vol.files.insert(
                        format!("/home/{user}/.ssh/authorized_keys"),
                        format!("{}\n", keys.trim_end()).into_bytes(),
                    );
                }
            }
            let vm = cl.vm_mut(vmid).map_err(|e| e.message)?;
            vm.power = Power::Running {
                since: Instant::now(),
                guest: None,
            };
            return Ok(());
        }
        (backend, plan)
    };
    debug_assert_eq!(backend, Backend::Qemu);
    let Some(disk) = plan.disk else {
        return Err(format!(
            "volume '{}' has no image file (start golden-sim with --base-image)",
            plan.boot_volid.unwrap_or_else(|| "<no boot disk>".into())
        ));
    };
    // A fresh instance-id on every start, so cloud-init applies the current settings.
    let meta = format!(
        "instance-id: pve-{vmid}-{}\nlocal-hostname: {}\n",
        unix_now(),
        plan.name
    );
    let launched = guest::launch(GuestSpec {
        name: format!("pve-{vmid}"),
        disk,
        workdir: plan.workdir.clone(),
        user_data: plan.user_data.clone(),
        meta_data: meta,
        memory_mib: plan.memory_mib,
        cpus: plan.cpus,
        forward_ssh: false,
    })
    .await?;
    eprintln!(
        "golden-sim: VM {vmid} booting under QEMU ({}), serial log {}",
        launched.accel,
        launched.serial_log.display()
    );
    let guest = Arc::new(launched.guest);
    {
        let mut cl = shared.lock();
        match cl.vm_mut(vmid) {
            Ok(vm) => {
                vm.power = Power::Running {
                    since: Instant::now(),
                    guest: Some(guest.clone()),
                };
            }
            Err(e) => {
                guest.kill_soon();
                return Err(e.message);
            }
        }
    }
    tokio::spawn(watch(shared.clone(), vmid, guest));
    Ok(())
}

/// Marks the VM stopped when its guest powers itself off.
async fn watch(shared: Shared, vmid: u32, guest: Arc<QemuGuest>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let still_ours = {
            let cl = shared.lock();
            matches!(cl.vms.get(&vmid).map(|v| &v.power),
                Some(Power::Running { guest: Some(g), .. }) if Arc::ptr_eq(g, &guest))
        };
        if !still_ours {
            return;
        }
        if guest.has_exited().await {
            let mut cl = shared.lock();
            if let Some(vm) = cl.vms.get_mut(&vmid) {
                if matches!(&vm.power, Power::Running { guest: Some(g), .. } if Arc::ptr_eq(g, &guest))
                {
                    eprintln!("golden-sim: VM {vmid}'s guest powered off");
                    vm.power = Power::Stopped;
                    vm.execs.clear();
                }
            }
            return;
        }
    }
}

/// PVE's `sshkeys` is stored URL-encoded; the seed needs it decoded.
fn url_decode(s: &str) -> String {
    pct_decode(s)
}

/// The user-data PVE writes on its cloud-init drive (`nocloud`).
fn user_data(name: &str, config: &std::collections::BTreeMap<String, String>) -> String {
    let mut s = format!("#cloud-config\nhostname: {name}\nmanage_etc_hosts: true\nfqdn: {name}\n");
    if let Some(u) = config.get("ciuser") {
        s += &format!("user: {u}\n");
    }
    if let Some(p) = config.get("cipassword") {
        s += &format!("password: {p}\n");
    }
    if let Some(keys) = config.get("sshkeys") {
        s += "ssh_authorized_keys:\n";
        for k in url_decode(keys).lines().filter(|l| !l.trim().is_empty()) {
            s += &format!("  - {}\n", k.trim());
        }
    }
    s += "chpasswd:\n  expire: False\nusers:\n  - default\n";
    // PVE upgrades packages on first boot unless `ciupgrade=0`; offline test
    // guests cannot, so only an explicit `ciupgrade=1` asks for it.
    let upgrade = config.get("ciupgrade").is_some_and(|v| v == "1");
    s += &format!("package_upgrade: {upgrade}\n");
    s
}

/// Makes a volume's qcow2: an overlay on its source, or an empty disk.
pub async fn make_disk_file(f: &DiskFile) -> Result<(), String> {
    guest::make_disk_file(&f.path, f.backing.as_deref(), f.size).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_carries_the_cloud_init_settings() {
        let mut c = std::collections::BTreeMap::new();
        c.insert("ciuser".to_owned(), "golden".to_owned());
        c.insert(
            "sshkeys".to_owned(),
            "ssh-ed25519%20AAAA%20me%40h%0Assh-rsa%20BBBB".to_owned(),
        );
        let u = user_data("build-1", &c);
        assert!(u.starts_with("#cloud-config\nhostname: build-1\n"));
        assert!(u.contains("user: golden\n"));
        assert!(
            u.contains("  - ssh-ed25519 AAAA me@h\n  - ssh-rsa BBBB\n"),
            "{u}"
        );
        assert!(u.contains("package_upgrade: false"));
    }
}
