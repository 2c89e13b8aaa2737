//! The Proxmox smoke test, entirely through the API: a linked clone of the
//! candidate template with a fresh cloud-init (throwaway user and SSH key),
//! started, then checked through the guest agent (ping, exec, `cloud-init
//! status --wait`, sshd and the injected key, the user's commands, the
//! guest's network interfaces), stopped and destroyed with purge.

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::agent;
use super::api::{params, VmApi};
use super::encoding::{self, Note};
use super::{tasks, ProxmoxPlatform, VmRef};
use crate::lifecycle::cloudinit::SMOKE_USER;
use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::ledger::UndoAction;
use crate::lifecycle::recipe::SmokeSpec;
use crate::lifecycle::report::Report;
use crate::platforms::kit::smoke::{run_checks, GuestChannel, GuestOutput, SmokeTarget, Verdict};
use crate::platforms::{Context as _, Error, Result};

pub async fn run(p: &ProxmoxPlatform, image: &Image, spec: &SmokeSpec, cx: &Cx) -> Result<Report> {
    let name = image.name().to_string();
    let started = std::time::Instant::now();
    let template = p.vm_by_id(image).await?;
    let node = p.node_of(template);
    let api = p.api(cx);
    let node_api = api.node(&node);

    let keydir = key_dir(cx)?;
    let public_key = cx
        .run(
            "creating a throwaway SSH key",
            crate::sshkey::throwaway_key(&keydir),
        )
        .await?;

    let (vmid, claim, upid) = linked_clone(p, &node, template, &name, cx).await?;
    let undo = VmRef {
        node: node.clone(),
        vmid,
        claim,
    }
    .undo();
    cx.record(undo.clone());
    tasks::wait(
        &node_api,
        &upid,
        &format!("linked clone {vmid} of {name}"),
        cx,
    )
    .await?;
    let vm = node_api.vm(vmid);
    // The clone inherits the template's network settings (DHCP unless the
    // source had its own); only the user and key are the smoke test's.
    vm.set_config(params([
        (
            "tags",
            format!("{};{}", encoding::TAG_MANAGED, encoding::TAG_SMOKE),
        ),
        ("ciuser", SMOKE_USER.to_owned()),
        ("sshkeys", pve_urlencode(public_key.trim())),
    ]))
    .await?;
    let upid = vm.start().await?;
    tasks::wait(
        &node_api,
        &upid,
        &format!("starting smoke-test VM {vmid}"),
        cx,
    )
    .await?;
    tracing::info!(vmid, template, "smoke-test VM started");

    let limit = spec.timeout.min(cx.remaining());
    let mut report = Report {
        image: name.clone(),
        ..Default::default()
    };
    let mut target = PveTarget {
        vm: &vm,
        public_key: &public_key,
        agent_timeout: p.config.agent_timeout,
    };
    let outcome = tokio::select! {
        _ = cx.cancel.cancelled() => Err(Error::cancelled("smoke test")),
        r = run_checks(&mut target, spec, Instant::now() + limit, cx, &mut report) => r,
    };

    // Tear down now rather than at ledger time, so the report's duration is
    // honest and the VM is gone before publish; the ledger entry stays as the
    // safety net (destroying what is gone succeeds).
    let teardown = p
        .destroy_vm(
            &node,
            vmid,
            &cx.for_cleanup(crate::lifecycle::pipeline::CLEANUP_TIMEOUT),
        )
        .await;
    let _ = std::fs::remove_dir_all(&keydir);
    match teardown {
        // Gone now: forget it, so a late ledger replay cannot hit a VM that
        // reuses the id.
        Ok(()) => cx.forget(&undo),
        Err(e) => {
            tracing::warn!(vmid, error = %e, "could not destroy the smoke-test VM; the ledger will retry")
        }
    }
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

/// Clones the template into the lowest free VM id, moving on when a
/// concurrent run takes the same id first. A linked clone is quick and small;
/// storages without linked clones (thick LVM, raw files on a directory) refuse
/// it, and then a full clone onto `storage` does the same job, slower.
async fn linked_clone(
    p: &ProxmoxPlatform,
    node: &str,
    template: u32,
    name: &str,
    cx: &Cx,
) -> Result<(u32, String, super::api::Upid)> {
    let api = p.api(cx);
    let resources = api.vm_resources().await?;
    let mut tried = Vec::new();
    let mut full = false;
    let mut vmid = p.free_vmid(&resources, &tried)?;
    loop {
        let deadline = encoding::rfc3339(super::now() + cx.remaining());
        let claim = super::new_claim();
        let mut note = Note::smoke(name, vmid, deadline);
        note.claim = Some(claim.clone());
        let mut form = params([
            ("newid", vmid.to_string()),
            ("name", smoke_vm_name(name)),
            ("description", note.to_description()),
        ]);
        if full {
            form.push(("full".into(), "1".into()));
            form.push(("storage".into(), p.config.storage.clone()));
        }
        match api.node(node).vm(template).clone_to(form).await {
            Ok(upid) => {
                p.remember_node(vmid, node);
                return Ok((vmid, claim, upid));
            }
            Err(e) if e.is_already_exists() && tried.len() < 10 => {
                tracing::info!(vmid, "VM id taken meanwhile; trying the next one");
                tried.push(vmid);
                vmid = p.free_vmid(&resources, &tried)?;
            }
            Err(e) if !full && e.kind() == crate::platforms::ErrorKind::Other => {
                tracing::warn!(vmid, error = %e, "linked clone refused; using a full clone for the smoke test");
                full = true;
            }
            Err(e) => return Err(e),
        }
    }
}

fn smoke_vm_name(image: &str) -> String {
    format!("smoke-{image}")
}

fn key_dir(cx: &Cx) -> Result<std::path::PathBuf> {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("golden-smoke-key-{}-{n:x}", std::process::id()));
    std::fs::create_dir_all(&dir).ctx(format!("creating {}", dir.display()))?;
    cx.record(UndoAction::RemovePath { path: dir.clone() });
    Ok(dir)
}

/// PVE wants `sshkeys` percent-encoded (spaces as %20, not '+').
pub fn pve_urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// The smoke-test VM as the shared sequence sees it: everything goes
/// through the guest agent (PVE shows no serial console through the API).
struct PveTarget<'a> {
    vm: &'a VmApi<'a>,
    public_key: &'a str,
    agent_timeout: Duration,
}

/// Commands through `agent/exec`. API errors stay errors (the platform
/// failing, not the image); a command the timeout cuts short is a failed check.
struct AgentChannel<'a>(&'a VmApi<'a>);

#[async_trait]
impl GuestChannel for AgentChannel<'_> {
    async fn sh(&self, script: &str, timeout: Duration, cx: &Cx) -> Result<GuestOutput> {
        match agent::sh(self.0, script, timeout, cx).await {
            Ok(o) => Ok(o),
            Err(e) if e.is_timeout() && !cx.cancel.is_cancelled() => Ok(GuestOutput::timed_out(e)),
            Err(e) => Err(e),
        }
    }

    fn how(&self) -> &'static str {
        "via guest agent"
    }
}

#[async_trait]
impl SmokeTarget for PveTarget<'_> {
    /// The guest reached userspace, which on PVE means its agent answered.
    async fn boot(&mut self, deadline: Instant, cx: &Cx) -> Result<Verdict> {
        let limit = self.agent_timeout.min(remaining(deadline));
        match agent::wait_ready(self.vm, limit, cx).await {
            Ok(took) => Ok(Verdict::pass(format!(
                "VM running; userspace reached (guest agent answered after {:.0}s)",
                took.as_secs_f64()
            ))),
            Err(e) if e.is_cancelled() => Err(e),
            Err(e) => Ok(Verdict::fail(format!("no sign of userspace: {e}"))),
        }
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
        let exec = AgentChannel(self.vm)
            .sh(
                "uname -sr",
                Duration::from_secs(60).min(remaining(deadline)),
                cx,
            )
            .await?;
        if !exec.success() {
            return Ok(Some(Verdict::fail(format!(
                "agent/exec of `uname -sr` exited {}: {}",
                exec.exit_code,
                exec.combined()
            ))));
        }
        Ok(Some(match self.vm.agent_network().await {
            Ok(n) => Verdict::pass(format!(
                "agent/ping + agent/exec ({}) + network-get-interfaces ({})",
                exec.stdout.trim(),
                addresses(&n)
            )),
            Err(e) => Verdict::fail(format!("network-get-interfaces failed: {e}")),
        }))
    }

    /// No route into the guest is assumed: sshd's unit and the injected key
    /// are checked from inside, through the agent.
    async fn ssh(&mut self, deadline: Instant, cx: &Cx) -> Result<Verdict> {
        let key_words: Vec<&str> = self.public_key.split_whitespace().take(2).collect();
        let script = format!(
            // `a || b && c` is `(a || b) && c` in sh.
            // Ubuntu 24.04 starts sshd on demand: an active ssh.socket counts.
            "systemctl is-active ssh || systemctl is-active sshd || systemctl is-active ssh.socket && grep -qF '{}' /home/{SMOKE_USER}/.ssh/authorized_keys",
            key_words.join(" ")
        );
        let out = AgentChannel(self.vm)
            .sh(&script, remaining(deadline), cx)
            .await?;
        Ok(if out.success() {
            Verdict::pass("sshd (or ssh.socket) active and the throwaway key installed by cloud-init (checked via guest agent)")
        } else {
            Verdict::fail(format!(
                "sshd not active or the throwaway key missing (exit {}): {}",
                out.exit_code,
                out.combined()
            ))
        })
    }

    fn channel(&self) -> Option<&dyn GuestChannel> {
        Some(self)
    }
}

#[async_trait]
impl GuestChannel for PveTarget<'_> {
    async fn sh(&self, script: &str, timeout: Duration, cx: &Cx) -> Result<GuestOutput> {
        AgentChannel(self.vm).sh(script, timeout, cx).await
    }

    fn how(&self) -> &'static str {
        "via guest agent"
    }
}

/// `eth0 10.0.2.15/24` for every non-loopback interface.
fn addresses(v: &serde_json::Value) -> String {
    let mut out = Vec::new();
    for iface in v.as_array().into_iter().flatten() {
        let name = iface["name"].as_str().unwrap_or("?");
        if name == "lo" {
            continue;
        }
        for a in iface["ip-addresses"].as_array().into_iter().flatten() {
            if let (Some(ip), Some(prefix)) = (a["ip-address"].as_str(), a["prefix"].as_i64()) {
                out.push(format!("{name} {ip}/{prefix}"));
            }
        }
    }
    if out.is_empty() {
        "no addresses".into()
    } else {
        out.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_keys_are_percent_encoded_as_pve_expects() {
        assert_eq!(
            pve_urlencode("ssh-ed25519 AAAA+/= golden-smoke"),
            "ssh-ed25519%20AAAA%2B%2F%3D%20golden-smoke"
        );
    }

    #[test]
    fn addresses_skip_loopback() {
        let v = serde_json::json!([
            {"name": "lo", "ip-addresses": [{"ip-address": "127.0.0.1", "prefix": 8}]},
            {"name": "eth0", "ip-addresses": [{"ip-address": "10.0.2.15", "prefix": 24}]}
        ]);
        assert_eq!(addresses(&v), "eth0 10.0.2.15/24");
    }
}
