//! The DigitalOcean smoke test: a droplet from the candidate snapshot with
//! fresh user-data that installs a host key made here, and a throwaway
//! account key for root; then the shared checks over SSH (the `ssh` binary,
//! the host key pinned with `StrictHostKeyChecking=yes`). DO has no
//! guest-agent channel and no serial console in its API: `guest_agent` checks
//! the agent's package and unit inside the guest, and a failure reports the
//! command output or the last SSH error. Droplet and key are deleted always.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::time::Instant;

use super::api::NewDroplet;
use super::build::{check_user_data_size, create_droplet, drop_undo, wait_created};
use super::{encoding, DoPlatform};
use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::ledger::UndoAction;
use crate::lifecycle::recipe::SmokeSpec;
use crate::lifecycle::report::{tail_lines, Report};
use crate::platforms::kit::poll::{self, Interval, Progress};
use crate::platforms::kit::smoke::{run_checks, GuestChannel, GuestOutput, SmokeTarget, Verdict};
use crate::platforms::{Context as _, Error, ErrorKind, Result};

/// The agent golden's images carry; DO cannot talk to it, the guest can.
const AGENT_CHECK: &str =
    "dpkg-query -W -f='${db:Status-Status}' qemu-guest-agent 2>/dev/null | grep -qx installed \
    && systemctl is-enabled qemu-guest-agent";

/// A fresh directory for throwaway keys, removed by the ledger.
pub(crate) fn temp_dir(what: &str, cx: &Cx) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("golden-do-{what}-{}", super::new_run_id()));
    std::fs::create_dir_all(&dir).ctx(format!("creating {}", dir.display()))?;
    cx.record(UndoAction::RemovePath { path: dir.clone() });
    Ok(dir)
}

/// An ed25519 host key for a droplet golden logs in to (build and smoke):
/// (private PEM, public line), made here so the first login can pin it.
pub(crate) async fn host_key(dir: &Path) -> anyhow::Result<(String, String)> {
    let key = dir.join("host_ed25519");
    let out = tokio::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "golden-smoke-host",
            "-f",
        ])
        .arg(&key)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            anyhow::anyhow!("running ssh-keygen (install Debian's openssh-client): {e}")
        })?;
    if !out.status.success() {
        anyhow::bail!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((
        std::fs::read_to_string(&key)?,
        std::fs::read_to_string(key.with_extension("pub"))?,
    ))
}

/// The cloud-config `ssh_keys` that installs a host key (cloud-init's cc_ssh).
pub fn host_key_config(private: &str, public: &str) -> serde_json::Value {
    json!({
        "ed25519_private": private,
        "ed25519_public": public.trim(),
    })
}

/// The smoke droplet's user-data: only the host key (cloud-init's cc_ssh).
pub fn smoke_user_data(private: &str, public: &str) -> String {
    let doc = json!({ "ssh_keys": host_key_config(private, public) });
    format!(
        "#cloud-config\n{}\n",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    )
}

/// A `known_hosts` line for `ip:port` (OpenSSH writes port 22 bare).
pub fn known_hosts_line(ip: &str, port: u16, public: &str) -> String {
    let key: Vec<&str> = public.split_whitespace().take(2).collect();
    let host = if port == 22 {
        ip.to_owned()
    } else {
        format!("[{ip}]:{port}")
    };
    format!("{host} {}\n", key.join(" "))
}

pub async fn run(p: &DoPlatform, image: &Image, spec: &SmokeSpec, cx: &Cx) -> Result<Report> {
    let name = image.name().to_string();
    let started = std::time::Instant::now();
    let mut report = Report {
        image: name.clone(),
        ..Default::default()
    };
    let unclean = p
        .unclean
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&name);
    if let Some(why) = unclean {
        // Provisioning never finished: booting the image proves nothing.
        report.push("build", false, Duration::ZERO, why);
        report.finished_at = encoding::rfc3339(super::now());
        return Ok(report);
    }
    let image_id = DoPlatform::image_id(image)?;

    let dir = temp_dir("smoke", cx)?;
    let public_key = cx
        .run(
            "creating a throwaway SSH key",
            crate::sshkey::throwaway_key(&dir),
        )
        .await?;
    let (host_private, host_public) = cx
        .run("creating the smoke droplet's host key", host_key(&dir))
        .await?;
    let ud = smoke_user_data(&host_private, &host_public);
    check_user_data_size(&ud)?;

    let run = super::new_run_id();
    let key = p.create_key(&run, &public_key, cx).await?;
    let run_tag = encoding::run_tag(&run);
    let tags = vec![
        encoding::TAG_MANAGED.to_owned(),
        encoding::TAG_SMOKE.to_owned(),
        run_tag.clone(),
        encoding::deadline_tag(p.deadline(cx)),
    ];
    let droplet_name = format!("golden-smoke-{name}");
    let (droplet, action) = create_droplet(
        p,
        &NewDroplet {
            name: &droplet_name,
            region: &p.config.region,
            size: &p.config.size,
            image: json!(image_id),
            ssh_keys: &[key],
            user_data: &ud,
            tags: &tags,
        },
        &run_tag,
        None,
        cx,
    )
    .await?;
    tracing::info!(
        droplet = droplet.id,
        image = image_id,
        "smoke-test droplet created"
    );

    let limit = spec.timeout.min(cx.remaining());
    let mut target = DoTarget {
        p,
        droplet: droplet.id,
        action,
        port: p.config.ssh_port,
        dir: dir.clone(),
        host_public,
        ip: None,
    };
    let outcome = tokio::select! {
        _ = cx.cancel.cancelled() => Err(Error::cancelled("smoke test")),
        r = run_checks(&mut target, spec, Instant::now() + limit, cx, &mut report) => r,
    };

    // Tear down now, so the report's duration is honest and nothing runs
    // while publishing; the ledger entries stay as the safety net until done.
    let clean = cx.for_cleanup(crate::lifecycle::pipeline::CLEANUP_TIMEOUT);
    match p
        .drop_run(Some(droplet.id), &run_tag, None, None, &clean)
        .await
    {
        Ok(()) => cx.forget(&drop_undo(&run_tag, None)),
        Err(e) => {
            tracing::warn!(droplet = droplet.id, error = %e, "could not delete the smoke-test droplet; the ledger will retry")
        }
    }
    if let Err(e) = p.delete_key(key, &clean).await {
        tracing::warn!(key, error = %e, "could not delete the throwaway key; the ledger will retry");
    }
    let _ = std::fs::remove_dir_all(&dir);
    outcome?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    report.finished_at = encoding::rfc3339(super::now());
    tracing::info!(
        passed = report.passed(),
        seconds = started.elapsed().as_secs_f64(),
        "smoke test finished"
    );
    Ok(report)
}

/// The smoke droplet as the shared sequence sees it: everything over SSH.
struct DoTarget<'a> {
    p: &'a DoPlatform,
    droplet: u64,
    action: Option<u64>,
    port: u16,
    dir: PathBuf,
    host_public: String,
    /// Its public IPv4, once known.
    ip: Option<String>,
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

impl DoTarget<'_> {
    async fn run_ssh(&self, script: &str, timeout: Duration) -> Result<GuestOutput> {
        let ip = self
            .ip
            .as_deref()
            .ok_or_else(|| Error::new(ErrorKind::Other, "the smoke droplet has no address yet"))?;
        ssh(&self.dir, ip, self.port, script, timeout).await
    }
}

/// Runs `script` as root on the droplet at `ip:port` over SSH, with the
/// throwaway account key `dir/id_ed25519` and the host key pinned by
/// `dir/known_hosts`. Exit 255 is SSH's own failure; its message is in
/// stderr. The build's provisioning watch and the smoke test share it.
pub(crate) async fn ssh(
    dir: &Path,
    ip: &str,
    port: u16,
    script: &str,
    timeout: Duration,
) -> Result<GuestOutput> {
    let known = dir.join("known_hosts");
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.arg("-i")
        .arg(dir.join("id_ed25519"))
        .args(["-p", &port.to_string()])
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "LogLevel=ERROR",
            "-F",
            "/dev/null",
        ])
        .arg(format!("root@{ip}"))
        .arg("--")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => return Ok(GuestOutput::timed_out(format!("{}s", timeout.as_secs()))),
        Ok(r) => r.map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("running ssh (install Debian's openssh-client): {e}"),
            )
        })?,
    };
    Ok(GuestOutput {
        exit_code: out.status.code().map(i64::from).unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[async_trait]
impl SmokeTarget for DoTarget<'_> {
    /// The droplet is active with a public address and its sshd answers
    /// with the host key made here.
    async fn boot(&mut self, deadline: Instant, cx: &Cx) -> Result<Verdict> {
        let mut sub = cx.clone();
        sub.deadline = sub.deadline.min(deadline);
        let d = match wait_created(self.p, self.droplet, self.action, &sub).await {
            Ok(d) => d,
            Err(e) if e.is_timeout() && cx.check("boot").is_ok() => {
                return Ok(Verdict::fail(format!("the droplet did not start: {e}")))
            }
            Err(e) => return Err(e),
        };
        let api = self.p.api(&sub);
        let ip = poll::until_done(
            "the smoke droplet's public address",
            &sub,
            Interval::new(Duration::from_millis(250), Duration::from_secs(5)),
            || async {
                let d = api.droplet(d.id).await?;
                Ok(match (d.status.as_str(), d.public_ipv4()) {
                    ("active", Some(ip)) => Progress::Done(ip.to_owned()),
                    _ => Progress::Pending,
                })
            },
        )
        .await;
        let ip = match ip {
            Ok(ip) => ip,
            Err(e) if e.is_timeout() && cx.check("boot").is_ok() => {
                return Ok(Verdict::fail(format!(
                    "the droplet never became active with a public IPv4 address: {e}"
                )))
            }
            Err(e) => return Err(e),
        };
        std::fs::write(
            self.dir.join("known_hosts"),
            known_hosts_line(&ip, self.port, &self.host_public),
        )
        .ctx("writing known_hosts")?;
        self.ip = Some(ip.clone());
        let t = Instant::now();
        let mut last = String::new();
        let mut every = Duration::from_millis(250);
        while Instant::now() < deadline {
            cx.check("waiting for sshd")?;
            let out = self
                .run_ssh("true", remaining(deadline).min(Duration::from_secs(30)))
                .await?;
            if out.success() {
                return Ok(Verdict::pass(format!(
                    "droplet {} active at {ip}; sshd answered with the pinned host key after {:.0}s",
                    self.droplet,
                    t.elapsed().as_secs_f64()
                )));
            }
            last = tail_lines(&out.combined(), 5);
            cx.sleep("waiting for sshd", every.min(remaining(deadline)))
                .await?;
            every = (every * 2).min(Duration::from_secs(5));
        }
        Ok(Verdict::fail(format!(
            "droplet {} is active at {ip}, but no SSH login as root at port {} before the timeout; last SSH error: {}",
            self.droplet,
            self.port,
            if last.is_empty() { "none" } else { &last }
        )))
    }

    async fn guest_agent(
        &mut self,
        wanted: bool,
        deadline: Instant,
        cx: &Cx,
    ) -> Result<Option<Verdict>> {
        if !wanted {
            return Ok(None);
        }
        let out = self.sh(AGENT_CHECK, remaining(deadline), cx).await?;
        Ok(Some(if out.success() {
            Verdict::pass(format!(
                "qemu-guest-agent installed and its unit enabled ({}), checked inside the guest via ssh: DigitalOcean has no guest-agent channel to ping",
                out.stdout.trim()
            ))
        } else {
            Verdict::fail(format!(
                "qemu-guest-agent not installed or its unit not enabled (exit {}; DigitalOcean has no guest-agent channel, so this is checked inside the guest): {}",
                out.exit_code,
                tail_lines(&out.combined(), 10)
            ))
        }))
    }

    /// The login itself is the check: `root@` with the throwaway account
    /// key, the host key pinned; `uname` shows it reached a shell.
    async fn ssh(&mut self, deadline: Instant, cx: &Cx) -> Result<Verdict> {
        let out = self.sh("uname -sr", remaining(deadline), cx).await?;
        Ok(if out.success() {
            Verdict::pass(format!(
                "root login with the throwaway account key, host key pinned ({}): {}",
                self.host_public
                    .split_whitespace()
                    .next()
                    .unwrap_or("ed25519"),
                out.stdout.trim()
            ))
        } else {
            Verdict::fail(format!(
                "no root login over ssh (exit {}): {}",
                out.exit_code,
                tail_lines(&out.combined(), 10)
            ))
        })
    }

    fn channel(&self) -> Option<&dyn GuestChannel> {
        Some(self)
    }
}

#[async_trait]
impl GuestChannel for DoTarget<'_> {
    async fn sh(&self, script: &str, timeout: Duration, _cx: &Cx) -> Result<GuestOutput> {
        self.run_ssh(script, timeout).await
    }

    fn how(&self) -> &'static str {
        "via ssh"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_lines_pin_the_host_key() {
        let public = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB golden-smoke-host\n";
        assert_eq!(
            known_hosts_line("127.0.0.5", 2222, public),
            "[127.0.0.5]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\n"
        );
        assert_eq!(
            known_hosts_line("203.0.113.7", 22, public),
            "203.0.113.7 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\n"
        );
    }

    #[test]
    fn smoke_user_data_carries_the_host_key_only() {
        let ud = smoke_user_data(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n",
            "ssh-ed25519 AAAA c\n",
        );
        let doc: serde_json::Value =
            serde_json::from_str(ud.strip_prefix("#cloud-config\n").unwrap()).unwrap();
        assert_eq!(doc["ssh_keys"]["ed25519_public"], "ssh-ed25519 AAAA c");
        assert!(doc["ssh_keys"]["ed25519_private"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN"));
        assert_eq!(doc.as_object().unwrap().len(), 1);
    }
}
