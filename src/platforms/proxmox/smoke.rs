//! The Proxmox smoke test, entirely through the API: a linked clone of the
//! candidate template with a fresh cloud-init (throwaway user and SSH key),
//! started, then checked through the guest agent (ping, exec, `cloud-init
//! status --wait`, sshd and the injected key, the user's commands, the
//! guest's network interfaces), stopped and destroyed with purge.

use std::time::Duration;

use tokio::time::Instant;

use super::agent::{self, Output};
use super::api::{params, VmApi};
use super::encoding::{self, Note};
use super::{tasks, ProxmoxPlatform, VmRef};
use crate::lifecycle::cloudinit::SMOKE_USER;
use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::ledger::UndoAction;
use crate::lifecycle::recipe::{Check, SmokeSpec};
use crate::lifecycle::report::{tail_lines, Report};
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
    let outcome = tokio::select! {
        _ = cx.cancel.cancelled() => Err(Error::cancelled("smoke test")),
        r = checks(&vm, spec, &public_key, p.config.agent_timeout, Instant::now() + limit, cx, &mut report) => r,
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

/// Runs the checks in order; the first failure ends the test. Errors are for
/// the API failing, not for a check failing.
async fn checks(
    vm: &VmApi<'_>,
    spec: &SmokeSpec,
    public_key: &str,
    agent_timeout: Duration,
    deadline: Instant,
    cx: &Cx,
    report: &mut Report,
) -> Result<()> {
    let wants = |c: Check| spec.checks.contains(&c);

    // boot: the guest reached userspace, which on PVE (no readable serial
    // console through the API) means its agent answered.
    let t = Instant::now();
    let ready = agent::wait_ready(vm, agent_timeout.min(remaining(deadline)), cx).await;
    match ready {
        Ok(took) => {
            if wants(Check::Boot) {
                report.push(
                    "boot",
                    true,
                    t.elapsed(),
                    format!(
                        "VM running; userspace reached (guest agent answered after {:.0}s)",
                        took.as_secs_f64()
                    ),
                );
            }
        }
        Err(e) if e.is_cancelled() => return Err(e),
        Err(e) => {
            report.push(
                "boot",
                false,
                t.elapsed(),
                format!("no sign of userspace: {e}"),
            );
            return Ok(());
        }
    }

    if wants(Check::GuestAgent) {
        let t = Instant::now();
        let exec = agent::sh(
            vm,
            "uname -sr",
            Duration::from_secs(60).min(remaining(deadline)),
            cx,
        )
        .await;
        let net = vm.agent_network().await;
        let (ok, detail) = match (&exec, &net) {
            (Ok(o), Ok(n)) if o.success() => (
                true,
                format!(
                    "agent/ping + agent/exec ({}) + network-get-interfaces ({})",
                    o.stdout.trim(),
                    addresses(n)
                ),
            ),
            (Ok(o), _) if !o.success() => (
                false,
                format!(
                    "agent/exec of `uname -sr` exited {}: {}",
                    o.exitcode,
                    o.combined()
                ),
            ),
            (Err(e), _) => (false, format!("agent/exec failed: {e}")),
            (_, Err(e)) => (false, format!("network-get-interfaces failed: {e}")),
            _ => (false, "unexpected".into()),
        };
        report.push("guest_agent", ok, t.elapsed(), detail);
        if !ok {
            return Ok(());
        }
    }

    if wants(Check::CloudInit) {
        let t = Instant::now();
        let out = guest(vm, "cloud-init status --wait", deadline, cx).await?;
        let text = out.combined();
        let degraded = text.contains("degraded") || out.exitcode == 2;
        let ok = out.success() || (degraded && spec.allow_degraded);
        let detail = if ok {
            format!(
                "`cloud-init status --wait` via guest agent: {}",
                text.lines().last().unwrap_or("").trim()
            )
        } else {
            format!(
                "`cloud-init status --wait` exited {}: {}",
                out.exitcode,
                tail_lines(&text, 20)
            )
        };
        report.push("cloud_init", ok, t.elapsed(), detail);
        if !ok {
            return Ok(());
        }
    }

    if wants(Check::Ssh) {
        let t = Instant::now();
        let key_words: Vec<&str> = public_key.split_whitespace().take(2).collect();
        let script = format!(
            // `a || b && c` is `(a || b) && c` in sh.
            // Ubuntu 24.04 starts sshd on demand: an active ssh.socket counts.
            "systemctl is-active ssh || systemctl is-active sshd || systemctl is-active ssh.socket && grep -qF '{}' /home/{SMOKE_USER}/.ssh/authorized_keys",
            key_words.join(" ")
        );
        let out = guest(vm, &script, deadline, cx).await?;
        let detail = if out.success() {
            "sshd (or ssh.socket) active and the throwaway key installed by cloud-init (checked via guest agent)"
                .to_owned()
        } else {
            format!(
                "sshd not active or the throwaway key missing (exit {}): {}",
                out.exitcode,
                out.combined()
            )
        };
        report.push("ssh", out.success(), t.elapsed(), detail);
        if !out.success() {
            return Ok(());
        }
    }

    for (i, cmd) in spec.commands.iter().enumerate() {
        let t = Instant::now();
        let out = guest(vm, cmd, deadline, cx).await?;
        let detail = if out.success() {
            format!("exit 0 via guest agent{}", first_line(&out.stdout))
        } else {
            format!("exit {}: {}", out.exitcode, tail_lines(&out.combined(), 20))
        };
        report.push(format!("commands[{i}]"), out.success(), t.elapsed(), detail);
        if !out.success() {
            return Ok(());
        }
    }
    Ok(())
}

/// A guest command whose timeout counts as a failed check, not an API error.
async fn guest(vm: &VmApi<'_>, script: &str, deadline: Instant, cx: &Cx) -> Result<Output> {
    match agent::sh(vm, script, remaining(deadline), cx).await {
        Ok(o) => Ok(o),
        Err(e) if e.is_timeout() && !cx.cancel.is_cancelled() => Ok(Output {
            exitcode: 124,
            stdout: String::new(),
            stderr: format!("still running when the smoke-test timeout ran out ({e})"),
        }),
        Err(e) => Err(e),
    }
}

fn first_line(s: &str) -> String {
    match s.lines().find(|l| !l.trim().is_empty()) {
        Some(l) => format!(": {}", l.trim()),
        None => String::new(),
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
