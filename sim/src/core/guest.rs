//! The QEMU guest backend: a real guest behind a simulated VM, booted with
//! `golden::qemu` from the VM's disk file and a NoCloud seed, with its serial
//! log, its guest-agent channel and (when asked) an SSH port forward. The
//! platform decides what the guest is (disk, cloud-init user data, size)
//! and how its API relays the agent; this module owns the QEMU process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use golden::qemu::accel::{self, AccelChoice};
use golden::qemu::qga::Qga;
use golden::qemu::{img, qmp, seed, Vm as QemuVm, VmSpec};
use serde_json::Value;
use tokio::sync::Mutex as AsyncMutex;

/// Why an agent call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestError {
    /// No agent answers (not up yet, or the channel broke).
    NotRunning,
    /// The agent's own error answer (its `desc`).
    Agent(String),
    /// The agent took longer than the caller waits (a busy guest).
    Timeout,
}

/// What to boot.
pub struct GuestSpec {
    /// The QEMU process's name.
    pub name: String,
    /// The boot disk (a qcow2 overlay or an image).
    pub disk: PathBuf,
    /// Where the seed, the serial log and the sockets go.
    pub workdir: PathBuf,
    pub user_data: String,
    pub meta_data: String,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Forward a loopback port to the guest's sshd (`Launched::ssh_port`).
    pub forward_ssh: bool,
}

pub struct Launched {
    pub guest: QemuGuest,
    /// The accelerator used (`kvm`, `tcg`), for the simulator's log.
    pub accel: String,
    pub serial_log: PathBuf,
    /// The loopback port forwarded to the guest's sshd (`forward_ssh`). PVE
    /// has no such thing (its guests are reached through the agent), so
    /// nothing reads it yet.
    #[allow(dead_code)]
    pub ssh_port: Option<u16>,
}

/// Makes the NoCloud seed and boots the guest.
pub async fn launch(spec: GuestSpec) -> Result<Launched, String> {
    std::fs::create_dir_all(&spec.workdir)
        .map_err(|e| format!("creating {}: {e}", spec.workdir.display()))?;
    let seed_iso = seed::make_seed(&spec.workdir, &spec.user_data, &spec.meta_data)
        .await
        .map_err(|e| format!("making the cloud-init drive: {e:#}"))?;
    let accel = accel::resolve(AccelChoice::Auto)?;
    let vm_spec = VmSpec {
        name: spec.name,
        disk: spec.disk,
        seed: Some(seed_iso),
        workdir: spec.workdir,
        memory_mib: spec.memory_mib,
        cpus: spec.cpus,
        accel,
        forward_ssh: spec.forward_ssh,
        scratch_disk: false,
    };
    let vm = QemuVm::launch(&vm_spec)
        .await
        .map_err(|e| format!("start failed: {e:#}"))?;
    Ok(Launched {
        accel: accel.to_string(),
        serial_log: vm.serial_log.clone(),
        ssh_port: vm.ssh_port,
        guest: QemuGuest::new(vm),
    })
}

/// A real guest: its QEMU process and a cached agent connection (the agent's
/// channel serves one client at a time, so calls take turns).
pub struct QemuGuest {
    vm: AsyncMutex<QemuVm>,
    qga_socket: PathBuf,
    qmp_socket: PathBuf,
    qga: AsyncMutex<Option<Qga>>,
}

impl QemuGuest {
    pub fn new(vm: QemuVm) -> QemuGuest {
        QemuGuest {
            qga_socket: vm.agent.socket.clone(),
            qmp_socket: vm.qmp_socket.clone(),
            vm: AsyncMutex::new(vm),
            qga: AsyncMutex::new(None),
        }
    }

    pub async fn call(
        &self,
        execute: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, GuestError> {
        let mut slot = self.qga.lock().await;
        if slot.is_none() {
            // PVE asks with a short timeout whether the agent is there.
            let q = Qga::connect(&self.qga_socket, Duration::from_secs(2))
                .await
                .map_err(|_| GuestError::NotRunning)?;
            *slot = Some(q);
        }
        let q = slot.as_mut().ok_or(GuestError::NotRunning)?;
        match q.call(execute, args, timeout).await {
            Ok(v) => Ok(v),
            Err(e) => {
                let msg = format!("{e:#}");
                let prefix = format!("guest agent {execute}: ");
                // A late answer would be taken for the next command's:
                // drop the channel, as PVE's QMPClient does per call.
                if msg.starts_with(&format!("guest agent: no answer to {execute} within")) {
                    *slot = None;
                    return Err(GuestError::Timeout);
                }
                match msg.strip_prefix(&prefix) {
                    // The agent's own error answer: the channel is fine.
                    Some(desc) => Err(GuestError::Agent(desc.to_owned())),
                    // No answer or a broken channel: reconnect next time.
                    None => {
                        *slot = None;
                        Err(GuestError::NotRunning)
                    }
                }
            }
        }
    }

    pub async fn has_exited(&self) -> bool {
        self.vm.lock().await.has_exited()
    }

    /// Clean power-off: the agent if it answers, else the ACPI button; waits
    /// up to `timeout`; then kills when `force`. Returns whether it is down.
    pub async fn shutdown(&self, use_agent: bool, timeout: Duration, force: bool) -> bool {
        let mut asked = false;
        if use_agent {
            let mut slot = self.qga.lock().await;
            if slot.is_none() {
                *slot = Qga::connect(&self.qga_socket, Duration::from_secs(2))
                    .await
                    .ok();
            }
            // The agent powers down without answering guest-shutdown.
            if let Some(q) = slot.as_mut() {
                asked = q.shutdown().await.is_ok();
            }
        }
        if !asked {
            let _ = qmp::command(&self.qmp_socket, "system_powerdown").await;
        }
        *self.qga.lock().await = None;
        let mut vm = self.vm.lock().await;
        if vm.wait_exit(timeout).await {
            return true;
        }
        if force {
            vm.kill().await;
            return true;
        }
        false
    }

    pub async fn kill(&self) {
        *self.qga.lock().await = None;
        self.vm.lock().await.kill().await;
    }

    /// From synchronous code (a VM removed under the state lock).
    pub fn kill_soon(self: &Arc<Self>) {
        let g = self.clone();
        tokio::spawn(async move { g.kill().await });
    }
}

/// Makes a volume's qcow2: an overlay on `backing`, or an empty disk of `size`.
pub async fn make_disk_file(path: &Path, backing: Option<&Path>, size: u64) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    match backing {
        Some(backing) => {
            let info = img::info(backing)
                .await
                .map_err(|e| format!("reading {}: {e:#}", backing.display()))?;
            img::create_overlay(backing, &info.format, path)
                .await
                .map_err(|e| format!("{e:#}"))
        }
        None => blank(path, size).await,
    }
}

async fn blank(path: &Path, size: u64) -> Result<(), String> {
    let out = tokio::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg(size.to_string())
        .output()
        .await
        .map_err(|e| format!("running qemu-img: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "qemu-img create failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
