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
    let seed_iso = make_seed(&spec.workdir, &spec.user_data, &spec.meta_data, None).await?;
    boot(Boot {
        name: spec.name,
        disk: spec.disk,
        seed: seed_iso,
        workdir: spec.workdir,
        memory_mib: spec.memory_mib,
        cpus: spec.cpus,
        forward_ssh: spec.forward_ssh,
    })
    .await
}

/// A guest to boot from a disk and a seed made beforehand (a platform that
/// keeps its seed across power cycles, as a cloud's metadata service does).
pub struct Boot {
    pub name: String,
    pub disk: PathBuf,
    pub seed: PathBuf,
    /// Where the serial log goes.
    pub workdir: PathBuf,
    pub memory_mib: u32,
    pub cpus: u32,
    pub forward_ssh: bool,
}

pub async fn boot(b: Boot) -> Result<Launched, String> {
    let accel = accel::resolve(AccelChoice::Auto)?;
    let vm_spec = VmSpec {
        name: b.name,
        disk: b.disk,
        seed: Some(b.seed),
        workdir: b.workdir,
        memory_mib: b.memory_mib,
        cpus: b.cpus,
        accel,
        forward_ssh: b.forward_ssh,
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

/// A NoCloud seed in `dir`: `user-data` and `meta-data`, and `vendor-data`
/// when given (cloud-init's NoCloud reads all three; vendor data is what a
/// cloud adds under the user's own, and the user's wins).
pub async fn make_seed(
    dir: &Path,
    user_data: &str,
    meta_data: &str,
    vendor_data: Option<&str>,
) -> Result<PathBuf, String> {
    let Some(vendor) = vendor_data else {
        return seed::make_seed(dir, user_data, meta_data)
            .await
            .map_err(|e| format!("making the cloud-init drive: {e:#}"));
    };
    let src = dir.join("seed");
    std::fs::create_dir_all(&src).map_err(|e| format!("creating {}: {e}", src.display()))?;
    let files = [
        ("user-data", user_data),
        ("meta-data", meta_data),
        ("vendor-data", vendor),
    ];
    for (name, text) in files {
        std::fs::write(src.join(name), text).map_err(|e| format!("writing {name}: {e}"))?;
    }
    let iso = dir.join("seed.iso");
    let tool = ["genisoimage", "mkisofs", "xorrisofs"]
        .into_iter()
        .find(|t| seed::which(t))
        .ok_or("no ISO tool found: install Debian's genisoimage")?;
    let out = tokio::process::Command::new(tool)
        .arg("-quiet")
        .arg("-output")
        .arg(&iso)
        .args(["-volid", "cidata", "-joliet", "-rock"])
        .args(files.iter().map(|(n, _)| src.join(n)))
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("running {tool}: {e}"))?;
    let _ = std::fs::remove_dir_all(&src);
    if !out.status.success() {
        return Err(format!(
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(iso)
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

    /// Forwards `ip:port` on the host to the guest's `guest_port` (QEMU's
    /// user networking, `hostfwd_add` on the monitor: the same forward as
    /// `-netdev user,hostfwd=tcp:IP:PORT-:22`, on an address of our choice).
    pub async fn hostfwd_add(&self, ip: &str, port: u16, guest_port: u16) -> Result<(), String> {
        let line = format!("hostfwd_add n0 tcp:{ip}:{port}-:{guest_port}");
        let out = hmp(&self.qmp_socket, &line).await?;
        // The monitor answers errors as text ("Could not set up host forwarding rule ...").
        if out.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("{line}: {}", out.trim()))
        }
    }

    /// The ACPI power button (QMP `system_powerdown`); the guest decides.
    pub async fn acpi_powerdown(&self) -> Result<(), String> {
        qmp::command(&self.qmp_socket, "system_powerdown")
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }

    /// Waits up to `timeout` for QEMU to exit (the guest powered off).
    pub async fn wait_exit(&self, timeout: Duration) -> bool {
        self.vm.lock().await.wait_exit(timeout).await
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

/// A human monitor command over QMP (`human-monitor-command`): its text output.
async fn hmp(socket: &Path, command_line: &str) -> Result<String, String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let talk = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| format!("connecting to QMP socket {}: {e}", socket.display()))?;
        let (r, mut w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        let mut next = async || -> Result<Value, String> {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .map_err(|e| format!("QMP: {e}"))?
                    .ok_or("QMP closed the connection")?;
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if v.get("event").is_none() {
                    return Ok(v);
                }
            }
        };
        next().await?; // the greeting
        let cmds = [
            serde_json::json!({"execute": "qmp_capabilities"}),
            serde_json::json!({"execute": "human-monitor-command",
                "arguments": {"command-line": command_line}}),
        ];
        let mut last = Value::Null;
        for c in cmds {
            w.write_all(format!("{c}\n").as_bytes())
                .await
                .map_err(|e| format!("QMP: {e}"))?;
            last = next().await?;
            if let Some(err) = last.get("error") {
                return Err(format!("QMP {}: {err}", c["execute"]));
            }
        }
        Ok(last["return"].as_str().unwrap_or("").to_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), talk)
        .await
        .map_err(|_| format!("QMP {command_line}: no answer within 5s"))?
}
