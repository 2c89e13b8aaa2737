//! The smoke test on GCE: an instance from the candidate whose checks run
//! inside the guest and print their results on serial port 1 (GCE has no
//! host channel into a guest: no agent socket, no port forward).
//!
//! The guest runs one script, written from the smoke spec: for each check,
//! `GOLDEN-OUT <name> <line>` for every line it printed, then `GOLDEN-CHECK
//! <name> ok|failed rc=<n>`. The host reads the port with `start` = the last
//! `next` and answers the shared sequence (`kit::smoke::run_checks`) from
//! those lines, so verdicts are judged exactly as on every other platform.
//! The script runs outside cloud-init (`systemd-run`), so `cloud-init status
//! --wait` can wait for cloud-init to finish; on images without cloud-init
//! the same script is the startup script.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use google_cloud_compute_v1::model::metadata::Items;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::build::{insert_instance, instance_body, Serial};
use super::encoding::{self, Role};
use super::{new_run_id, GcpPlatform, Undo};
use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::packages;
use crate::lifecycle::recipe::{Check, SmokeSpec};
use crate::lifecycle::report::{tail_lines, Report};
use crate::platforms::kit::smoke::{run_checks, GuestChannel, GuestOutput, SmokeTarget, Verdict};
use crate::platforms::{Error, ErrorKind, Result};

/// The agent golden's images carry; GCE cannot talk to it, the guest can.
const AGENT_CHECK: &str =
    "dpkg-query -W -f='${db:Status-Status}' qemu-guest-agent 2>/dev/null | grep -qx installed \
    && systemctl is-enabled qemu-guest-agent";

/// sshd runs (Debian's unit is `ssh`, others' `sshd`).
const SSH_CHECK: &str = "systemctl is-active ssh || systemctl is-active sshd";

const CLOUD_INIT_CHECK: &str = "cloud-init status --wait --long";

const SCRIPT_PATH: &str = "/var/lib/golden/smoke.sh";

/// How often the serial port is read while waiting for a result.
const POLL: Duration = Duration::from_secs(2);

/// The checks the guest runs, in the shared sequence's order: `(name,
/// script)`. The host answers each `sh(script)` from the result of its name.
fn guest_checks(spec: &SmokeSpec) -> Vec<(String, String)> {
    let mut checks = Vec::new();
    if spec.checks.contains(&Check::GuestAgent) {
        checks.push(("guest_agent".to_owned(), AGENT_CHECK.to_owned()));
    }
    if spec.checks.contains(&Check::CloudInit) {
        checks.push(("cloud_init".to_owned(), CLOUD_INIT_CHECK.to_owned()));
    }
    if spec.checks.contains(&Check::Ssh) {
        checks.push(("ssh".to_owned(), SSH_CHECK.to_owned()));
    }
    for (i, c) in spec.commands.iter().enumerate() {
        checks.push((format!("commands[{i}]"), c.clone()));
    }
    checks.push(("packages".to_owned(), packages::guest_script()));
    checks
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The guest's script: plain POSIX sh, one check after another, each cut
/// off at the smoke-test timeout.
pub fn guest_script(checks: &[(String, String)], timeout: Duration) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         # Written by terraform-provider-golden: the smoke test; results on the serial port.\n\
         mkdir -p /run/golden-smoke\n\
         echo \"GOLDEN-CHECK boot ok rc=0\" > /dev/ttyS0\n",
    );
    let secs = timeout.as_secs().max(1);
    for (name, script) in checks {
        s += &format!(
            "timeout {secs} sh -c {} > /run/golden-smoke/out 2>&1 && echo \"GOLDEN-CHECK {name} ok rc=0\" > /run/golden-smoke/rc || echo \"GOLDEN-CHECK {name} failed rc=$?\" > /run/golden-smoke/rc\n\
             sed 's/^/GOLDEN-OUT {name} /' /run/golden-smoke/out > /dev/ttyS0\n\
             cat /run/golden-smoke/rc > /dev/ttyS0\n",
            sh_quote(script)
        );
    }
    s += "echo \"GOLDEN-SMOKE done\" > /dev/ttyS0\n";
    s
}

/// user-data (cloud-init writes the script and starts it as its own unit)
/// and the startup script (the same script where there is no cloud-init).
fn metadata(script: &str) -> Vec<Items> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(script.as_bytes());
    let doc = serde_json::json!({
        "write_files": [{"path": SCRIPT_PATH, "encoding": "b64", "content": b64, "permissions": "0755", "owner": "root:root"}],
        "runcmd": [["systemd-run", "--no-block", "--unit", "golden-smoke", SCRIPT_PATH]],
    });
    let user_data = format!(
        "#cloud-config\n{}\n",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    );
    let startup = format!(
        "#!/bin/sh\ncommand -v cloud-init >/dev/null 2>&1 && exit 0\n{}",
        script.trim_start_matches("#!/bin/sh\n")
    );
    vec![
        Items::new().set_key("user-data").set_value(user_data),
        Items::new().set_key("startup-script").set_value(startup),
    ]
}

/// What the serial port said so far: each check's output and exit code.
#[derive(Default)]
struct Results {
    out: BTreeMap<String, String>,
    rc: BTreeMap<String, i64>,
}

impl Results {
    /// Takes the verdict lines among complete serial lines.
    fn parse(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(rest) = line.split_once("GOLDEN-CHECK ").map(|(_, r)| r) {
                let mut words = rest.split_whitespace();
                let (Some(name), Some(_verdict)) = (words.next(), words.next()) else {
                    continue;
                };
                let rc = words
                    .find_map(|w| w.strip_prefix("rc="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                self.rc.entry(name.to_owned()).or_insert(rc);
            }
        }
    }
}

/// The serial port, read as lines arrive; outputs are collected as the
/// text streams past (the kept tail is bounded).
struct Guest<'a> {
    p: &'a GcpPlatform,
    instance: String,
    checks: Vec<(String, String)>,
    state: Mutex<(Serial, Results, String)>,
}

impl Guest<'_> {
    /// Reads what is new on the port; `false` when the instance stopped.
    async fn pump(&self, cx: &Cx) -> Result<bool> {
        let mut st = self.state.lock().await;
        let (serial, results, pending) = &mut *st;
        match serial.read(self.p, &self.instance, cx).await {
            Ok(new) => {
                pending.push_str(&new);
                // Complete lines only; the rest waits for its newline.
                if let Some(end) = pending.rfind('\n') {
                    let lines: String = pending.drain(..=end).collect();
                    for line in lines.lines() {
                        let line = line.trim_end_matches('\r');
                        if let Some(rest) = line.split_once("GOLDEN-OUT ").map(|(_, r)| r) {
                            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
                            let o = results.out.entry(name.to_owned()).or_default();
                            o.push_str(text);
                            o.push('\n');
                        }
                    }
                    results.parse(&lines);
                }
                Ok(true)
            }
            // Serial output is served only while the instance runs.
            Err(e) if e.is_busy() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits for `name`'s result until `deadline`.
    async fn result(&self, name: &str, deadline: Instant, cx: &Cx) -> Result<Option<GuestOutput>> {
        loop {
            {
                let st = self.state.lock().await;
                if let Some(rc) = st.1.rc.get(name) {
                    return Ok(Some(GuestOutput {
                        exit_code: *rc,
                        stdout: st.1.out.get(name).cloned().unwrap_or_default(),
                        stderr: String::new(),
                    }));
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            if !self.pump(cx).await? {
                let i = self.p.get_instance(&self.instance, cx).await?;
                if i.status.as_ref().and_then(|s| s.name()) == Some("TERMINATED") {
                    return Ok(None);
                }
            }
            cx.sleep("reading the smoke test's serial port", POLL)
                .await?;
        }
    }

    async fn console_tail(&self) -> String {
        tail_lines(&self.state.lock().await.0.text, 40)
    }

    async fn lost(&self) -> bool {
        self.state.lock().await.0.lost
    }
}

#[async_trait]
impl GuestChannel for Guest<'_> {
    async fn sh(&self, script: &str, timeout: Duration, cx: &Cx) -> Result<GuestOutput> {
        let Some((name, _)) = self.checks.iter().find(|(_, s)| s == script) else {
            return Err(Error::new(
                ErrorKind::Other,
                format!("the smoke test has no serial-port result for {script:?}"),
            ));
        };
        let name = name.clone();
        Ok(self
            .result(&name, Instant::now() + timeout, cx)
            .await?
            .unwrap_or_else(|| {
                GuestOutput::timed_out(format!("no {name} result on the serial port"))
            }))
    }

    fn how(&self) -> &'static str {
        "inside the guest, read from the serial port"
    }
}

struct Target<'a> {
    guest: Guest<'a>,
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

impl Target<'_> {
    async fn verdict(&self, name: &str, deadline: Instant, cx: &Cx, what: &str) -> Result<Verdict> {
        Ok(match self.guest.result(name, deadline, cx).await? {
            Some(out) if out.success() => Verdict::pass(format!(
                "{what}, checked inside the guest (serial port): {}",
                tail_lines(out.stdout.trim(), 3)
            )),
            Some(out) => Verdict::fail(format!(
                "{what}: not so (exit {}), checked inside the guest (serial port): {}",
                out.exit_code,
                tail_lines(&out.combined(), 10)
            )),
            None => Verdict::fail(format!(
                "{what}: no result on the serial port within {}s",
                remaining(deadline).as_secs()
            )),
        })
    }
}

#[async_trait]
impl SmokeTarget for Target<'_> {
    async fn boot(&mut self, deadline: Instant, cx: &Cx) -> Result<Verdict> {
        Ok(match self.guest.result("boot", deadline, cx).await? {
            Some(_) => Verdict::pass(format!(
                "instance {} reached userspace: the smoke script started (serial port 1)",
                self.guest.instance
            )),
            None => Verdict::fail(format!(
                "instance {} never started the smoke script (no GOLDEN-CHECK boot on serial port 1); console:\n{}",
                self.guest.instance,
                self.guest.console_tail().await
            )),
        })
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
        self.verdict(
            "guest_agent",
            deadline,
            cx,
            "qemu-guest-agent installed and its unit enabled (GCE has no guest-agent channel to ping)",
        )
        .await
        .map(Some)
    }

    async fn ssh(&mut self, deadline: Instant, cx: &Cx) -> Result<Verdict> {
        self.verdict(
            "ssh",
            deadline,
            cx,
            "sshd active (GCE offers no host path to port 22 here)",
        )
        .await
    }

    fn channel(&self) -> Option<&dyn GuestChannel> {
        Some(&self.guest)
    }
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub async fn run(p: &GcpPlatform, image: &Image, spec: &SmokeSpec, cx: &Cx) -> Result<Report> {
    let name = image.name().to_string();
    let started = std::time::Instant::now();
    let mut report = Report {
        image: name.clone(),
        ..Default::default()
    };
    let checks = guest_checks(spec);
    let script = guest_script(&checks, spec.timeout);
    let run = new_run_id();
    let instance = format!("golden-smoke-{run}");
    let labels =
        encoding::resource_labels(Role::Smoke, &run, p.expires(cx), None).ok_or_else(|| {
            Error::new(
                ErrorKind::Other,
                format!("run id {run} is not a label value"),
            )
        })?;
    let undo = Undo::DropRun {
        run: run.clone(),
        image: None,
    }
    .action();
    cx.record(undo.clone());
    tracing::info!(%instance, image = %image.id, "creating the smoke-test instance");
    let limit = spec.timeout.min(cx.remaining());
    let deadline = Instant::now() + limit;
    let created = insert_instance(
        p,
        instance_body(p, &instance, &image.id, &labels, metadata(&script)),
        cx,
    )
    .await;
    let mut target = Target {
        guest: Guest {
            p,
            instance: instance.clone(),
            checks,
            state: Mutex::new((Serial::new(), Results::default(), String::new())),
        },
    };
    let outcome = match created {
        Err(e) => Err(e),
        Ok(()) => tokio::select! {
            _ = cx.cancel.cancelled() => Err(Error::cancelled("smoke test")),
            r = run_checks(&mut target, spec, deadline, cx, &mut report) => r,
        },
    };
    if !report.passed() || target.guest.lost().await {
        report.console_tail = target.guest.console_tail().await;
        if target.guest.lost().await {
            report
                .console_tail
                .insert_str(0, "(serial output was lost: GCE keeps 1 MB)\n");
        }
    }

    // Tear down now; the ledger entry stays as the safety net until done.
    let clean = cx.for_cleanup(crate::lifecycle::pipeline::CLEANUP_TIMEOUT);
    match p.drop_run(&run, None, &clean).await {
        Ok(()) => cx.forget(&undo),
        Err(e) => {
            tracing::warn!(%instance, error = %e, "could not delete the smoke-test instance; the ledger will retry")
        }
    }
    outcome?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    report.finished_at = rfc3339_now();
    tracing::info!(
        passed = report.passed(),
        seconds = started.elapsed().as_secs_f64(),
        "smoke test finished"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_script_reports_each_check_in_order() {
        let spec = SmokeSpec {
            commands: vec!["echo 'hi there'".into()],
            ..SmokeSpec::default()
        };
        let checks = guest_checks(&spec);
        let names: Vec<&str> = checks.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "guest_agent",
                "cloud_init",
                "ssh",
                "commands[0]",
                "packages"
            ]
        );
        let s = guest_script(&checks, Duration::from_secs(90));
        assert!(
            s.contains("timeout 90 sh -c 'echo '\\''hi there'\\'''"),
            "{s}"
        );
        assert!(s.contains("GOLDEN-CHECK commands[0] failed rc=$?"));
    }

    #[test]
    fn results_are_parsed_from_serial_lines() {
        let mut r = Results::default();
        r.parse("junk\r\nGOLDEN-CHECK boot ok rc=0\r\n[  5.1] GOLDEN-CHECK ssh failed rc=3\n");
        assert_eq!(r.rc.get("boot"), Some(&0));
        assert_eq!(r.rc.get("ssh"), Some(&3));
        assert_eq!(r.rc.get("cloud_init"), None);
    }
}
