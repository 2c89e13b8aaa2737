//! One QEMU virtual machine: launched in its own process group (a terminal's
//! Ctrl-C is ours to handle, not QEMU's), with `PR_SET_PDEATHSIG` so it dies
//! with the provider, and killed on drop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use super::accel::Accel;
use super::qga::{AgentChannel, Qga};
use super::qmp;
use crate::process::ProcessId;

#[derive(Debug, Clone)]
pub struct VmSpec {
    pub name: String,
    pub disk: PathBuf,
    pub seed: Option<PathBuf>,
    /// Holds the serial log.
    pub workdir: PathBuf,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    /// Forward a free host port on 127.0.0.1 to the guest's port 22.
    pub forward_ssh: bool,
    /// Guest writes are thrown away with the overlay anyway: skip host flushes.
    pub scratch_disk: bool,
}

pub struct Vm {
    child: Child,
    pub process: ProcessId,
    /// Holds the control sockets (see `runtime_dir()`).
    pub runtime_dir: PathBuf,
    pub serial_log: PathBuf,
    pub qmp_socket: PathBuf,
    pub agent: AgentChannel,
    pub ssh_port: Option<u16>,
}

/// How a VM was brought down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The guest powered itself off.
    PoweredOff,
    /// It was killed: the disk may be inconsistent.
    Killed,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

impl Vm {
    pub async fn launch(spec: &VmSpec) -> Result<Vm> {
        std::fs::create_dir_all(&spec.workdir)?;
        let runtime_dir = runtime_dir()?;
        let launched = Self::launch_in(spec, runtime_dir.clone()).await;
        if launched.is_err() {
            let _ = std::fs::remove_dir_all(&runtime_dir);
        }
        launched
    }

    async fn launch_in(spec: &VmSpec, runtime_dir: PathBuf) -> Result<Vm> {
        let serial_log = spec.workdir.join("serial.log");
        let qmp_socket = runtime_dir.join("qmp.sock");
        let qga_socket = runtime_dir.join("qga.sock");
        let ssh_port = if spec.forward_ssh {
            Some(free_port()?)
        } else {
            None
        };
        let mut netdev = "user,id=n0".to_owned();
        if let Some(p) = ssh_port {
            netdev += &format!(",hostfwd=tcp:127.0.0.1:{p}-:22");
        }
        let cache = if spec.scratch_disk {
            "unsafe"
        } else {
            "writeback"
        };
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-name",
            &spec.name,
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-vga",
            "none",
        ])
        .args(spec.accel.qemu_args())
        .args([
            "-m",
            &spec.memory_mib.to_string(),
            "-smp",
            &spec.cpus.to_string(),
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial_log.display()))
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=qcow2,cache={cache},discard=unmap",
            spec.disk.display()
        ))
        .args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=n0"])
        .arg("-chardev")
        .arg(format!(
            "socket,path={},server=on,wait=off,id=qga0",
            qga_socket.display()
        ))
        .args([
            "-device",
            "virtio-serial",
            "-device",
            "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        ])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp_socket.display()))
        .args(["-device", "virtio-rng-pci"]);
        if let Some(seed) = &spec.seed {
            cmd.arg("-drive").arg(format!(
                "file={},if=virtio,format=raw,readonly=on",
                seed.display()
            ));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; it runs in the child before exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .context("starting qemu-system-x86_64 (install Debian's qemu-system-x86)")?;
        let pid = child.id().context("QEMU exited at once")?;
        let process = ProcessId::of(pid).unwrap_or(ProcessId {
            pid,
            start_ticks: 0,
        });
        // QEMU creates its sockets during start-up; a bad argument makes it exit.
        for _ in 0..100 {
            if let Some(status) = child.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut err).await;
                }
                bail!("QEMU exited during start-up ({status}): {}", err.trim());
            }
            if qmp_socket.exists() && qga_socket.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::debug!(pid, accel = %spec.accel, ?ssh_port, "QEMU started");
        Ok(Vm {
            child,
            process,
            runtime_dir,
            serial_log,
            qmp_socket,
            agent: AgentChannel { socket: qga_socket },
            ssh_port,
        })
    }

    /// Everything the guest has written to its serial console so far.
    pub fn serial(&self) -> String {
        read_lossy(&self.serial_log)
    }

    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the guest to power off by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .is_ok()
    }

    pub async fn agent(&self, deadline: tokio::time::Instant) -> Result<Qga> {
        self.agent.wait_ready(deadline).await
    }

    /// Brings the guest down cleanly if it can: guest agent power-down, then an
    /// ACPI power button over QMP, each given `grace`; then a kill.
    pub async fn power_off(&mut self, grace: Duration) -> Stopped {
        if self.has_exited() {
            return Stopped::PoweredOff;
        }
        if let Ok(mut q) = Qga::connect(&self.agent.socket, Duration::from_secs(2)).await {
            if q.shutdown().await.is_ok() && self.wait_exit(grace).await {
                return Stopped::PoweredOff;
            }
        }
        if qmp::command(&self.qmp_socket, "system_powerdown")
            .await
            .is_ok()
            && self.wait_exit(grace).await
        {
            return Stopped::PoweredOff;
        }
        self.kill().await;
        Stopped::Killed
    }

    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
    }
}

/// A fresh, short, private directory for one VM's sockets: a UNIX socket path
/// is limited to 108 bytes, and store paths can be long.
fn runtime_dir() -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("golden-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    bail!(
        "could not create a socket directory under {}",
        base.display()
    )
}

pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
