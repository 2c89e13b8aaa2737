//! Local smoke test: a throwaway VM on an overlay of the candidate, a fresh
//! cloud-init seed with a throwaway SSH key, then the checks in order: boot
//! (serial console), guest agent (ping + exec over virtio-serial), cloud-init
//! (`cloud-init status --wait` in the guest), SSH (a real login with the
//! throwaway key), and the user's commands. The first failing check ends the
//! test; the report says which one and shows the console tail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::LocalPlatform;
use crate::lifecycle::cloudinit::{meta_data, smoke_user_data, SMOKE_USER};
use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::ledger::UndoAction;
use crate::lifecycle::recipe::SmokeSpec;
use crate::lifecycle::report::{tail_lines, Report};
use crate::platforms::kit::smoke::{run_checks, GuestChannel, GuestOutput, SmokeTarget, Verdict};
use crate::platforms::{Context as _, Error, Result};
use crate::qemu::qga::{ExecOutput, Qga};
use crate::qemu::{img, seed, Vm, VmSpec};

/// What the serial console shows once systemd runs in the guest.
const USERSPACE_MARKERS: [&str; 3] = ["Welcome to ", "login:", "Reached target"];

pub async fn run(p: &LocalPlatform, image: &Image, spec: &SmokeSpec, cx: &Cx) -> Result<Report> {
    let name = image.name().to_string();
    let started = std::time::Instant::now();
    let work = p.workdir(&format!("smoke-{name}"), cx)?;
    let overlay = work.join("disk.qcow2");
    cx.run(
        "creating the smoke-test overlay",
        img::create_overlay(Path::new(&image.id), "qcow2", &overlay),
    )
    .await?;
    let public_key = cx
        .run(
            "creating a throwaway SSH key",
            crate::sshkey::throwaway_key(&work),
        )
        .await?;
    let instance = format!("smoke-{name}-{}", std::process::id());
    let seed = cx
        .run(
            "writing the smoke-test seed",
            seed::make_seed(
                &work,
                &smoke_user_data(&public_key),
                &meta_data(&instance, "golden-smoke"),
            ),
        )
        .await?;
    let mut vm = Vm::launch(&VmSpec {
        name: format!("golden-smoke-{name}"),
        disk: overlay,
        seed: Some(seed),
        workdir: work.clone(),
        memory_mib: super::MEMORY_MIB,
        cpus: super::CPUS,
        accel: p.accel(),
        forward_ssh: true,
        scratch_disk: true,
    })
    .await
    .ctx("starting the smoke-test VM")?;
    cx.record(UndoAction::KillProcess {
        process: vm.process,
    });
    cx.record(UndoAction::RemovePath {
        path: vm.runtime_dir.clone(),
    });
    tracing::info!(pid = vm.process.pid, ssh_port = ?vm.ssh_port, "smoke-test VM booting");

    let deadline = Instant::now() + spec.timeout.min(cx.remaining());
    let mut report = Report {
        image: name,
        ..Default::default()
    };
    let mut target = LocalTarget {
        vm: &mut vm,
        key: work.join("id_ed25519"),
        channel: None,
    };
    let outcome = tokio::select! {
        _ = cx.cancel.cancelled() => Err(Error::cancelled("smoke test")),
        r = run_checks(&mut target, spec, deadline, cx, &mut report) => r,
    };
    vm.kill().await;
    outcome?;
    if !report.passed() {
        report.console_tail = tail_lines(&vm.serial(), 40);
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    report.finished_at = super::now_rfc3339();
    tracing::info!(
        passed = report.passed(),
        seconds = started.elapsed().as_secs_f64(),
        "smoke test finished"
    );
    Ok(report)
}

/// How commands reach the guest: the agent when it answers, SSH otherwise.
enum Channel {
    Agent(tokio::sync::Mutex<Qga>),
    Ssh { port: u16, key: PathBuf },
}

#[async_trait]
impl GuestChannel for Channel {
    async fn sh(&self, script: &str, timeout: Duration, _cx: &Cx) -> Result<GuestOutput> {
        let out = match self {
            Channel::Agent(q) => {
                let mut q = q.lock().await;
                q.exec("/bin/sh", &["-c", script], timeout).await
            }
            Channel::Ssh { port, key } => {
                let remote = format!("sudo -n /bin/sh -c {}", quote(script));
                match tokio::time::timeout(timeout, ssh(*port, key, &remote)).await {
                    Ok(out) => out,
                    Err(_) => return Ok(GuestOutput::timed_out(format!("{timeout:?}"))),
                }
            }
        };
        match out {
            Ok(o) => Ok(GuestOutput {
                exit_code: o.exit_code,
                stdout: o.stdout,
                stderr: o.stderr,
            }),
            // On this machine a channel that fails is the guest's doing (its
            // agent died, sshd went away): a failed check, not an error.
            Err(e) => Ok(GuestOutput {
                exit_code: -1,
                stdout: String::new(),
                stderr: format!("{} failed: {e:#}", self.how()),
            }),
        }
    }

    fn how(&self) -> &'static str {
        match self {
            Channel::Agent(_) => "via guest agent",
            Channel::Ssh { .. } => "via ssh",
        }
    }
}

/// The local smoke-test VM as the shared sequence sees it.
struct LocalTarget<'a> {
    vm: &'a mut Vm,
    key: PathBuf,
    channel: Option<Channel>,
}

#[async_trait]
impl SmokeTarget for LocalTarget<'_> {
    async fn boot(&mut self, deadline: Instant, _cx: &Cx) -> Result<Verdict> {
        Ok(match wait_for_userspace(self.vm, deadline).await {
            Ok(marker) => Verdict::pass(format!(
                "userspace reached ({marker:?} on the serial console)"
            )),
            Err(why) => Verdict::fail(why),
        })
    }

    async fn guest_agent(
        &mut self,
        wanted: bool,
        deadline: Instant,
        _cx: &Cx,
    ) -> Result<Option<Verdict>> {
        // Without a guest_agent check the agent is only a convenience: give it
        // two minutes, then fall back to SSH.
        let agent_deadline = if wanted {
            deadline
        } else {
            deadline.min(Instant::now() + Duration::from_secs(120))
        };
        match self.vm.agent(agent_deadline).await {
            Ok(mut q) => {
                let exec = q.exec("/bin/true", &[], remaining(deadline)).await;
                self.channel = Some(Channel::Agent(tokio::sync::Mutex::new(q)));
                if !wanted {
                    return Ok(None);
                }
                Ok(Some(match exec {
                    Ok(o) if o.success() => {
                        Verdict::pass("guest-ping and guest-exec answered over virtio-serial")
                    }
                    Ok(o) => {
                        Verdict::fail(format!("guest-exec of /bin/true exited {}", o.exit_code))
                    }
                    Err(e) => Verdict::fail(format!("guest-exec failed: {e:#}")),
                }))
            }
            Err(e) => {
                if wanted {
                    return Ok(Some(Verdict::fail(format!("{e:#}"))));
                }
                self.channel = self.vm.ssh_port.map(|port| Channel::Ssh {
                    port,
                    key: self.key.clone(),
                });
                Ok(None)
            }
        }
    }

    async fn ssh(&mut self, deadline: Instant, _cx: &Cx) -> Result<Verdict> {
        Ok(ssh_check(self.vm.ssh_port, &self.key, deadline).await)
    }

    fn channel(&self) -> Option<&dyn GuestChannel> {
        self.channel.as_ref().map(|c| c as &dyn GuestChannel)
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

async fn ssh(port: u16, key: &Path, remote: &str) -> anyhow::Result<ExecOutput> {
    let out = tokio::process::Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "-i"])
        .arg(key)
        .args([
            "-p",
            &port.to_string(),
            &format!("{SMOKE_USER}@127.0.0.1"),
            remote,
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("running ssh (install Debian's openssh-client): {e}"))?;
    Ok(ExecOutput {
        exit_code: out.status.code().map(i64::from).unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

async fn wait_for_userspace(
    vm: &mut Vm,
    deadline: Instant,
) -> std::result::Result<&'static str, String> {
    loop {
        let log = vm.serial();
        if let Some(m) = USERSPACE_MARKERS.into_iter().find(|m| log.contains(m)) {
            return Ok(m);
        }
        if vm.has_exited() {
            return Err("the VM stopped before reaching userspace".into());
        }
        if Instant::now() >= deadline {
            return Err(
                "no sign of userspace on the serial console before the smoke-test timeout".into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn ssh_check(port: Option<u16>, key: &Path, deadline: Instant) -> Verdict {
    let Some(port) = port else {
        return Verdict::fail("no ssh port forwarded");
    };
    let mut last = String::from("no attempt made");
    while Instant::now() < deadline {
        match ssh(port, key, "true").await {
            Ok(o) if o.success() => {
                return Verdict::pass(format!(
                    "login as {SMOKE_USER} with a throwaway ed25519 key on forwarded port {port}"
                ))
            }
            Ok(o) => last = format!("exit {}: {}", o.exit_code, o.stderr.trim()),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Verdict::fail(format!("ssh never accepted the throwaway key: {last}"))
}
