//! The smoke-test sequence, written once. A platform boots the throwaway VM
//! and implements [`SmokeTarget`] (how it sees userspace, its guest-agent
//! check, its SSH check, and how commands reach the guest); [`run_checks`]
//! runs the checks in their fixed order (boot, guest agent, cloud-init, SSH,
//! the user's commands), stops at the first failure, and judges cloud-init
//! the same way on every platform. A passing sequence ends by reading the
//! image's package manifest (`lifecycle::packages`).

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::lifecycle::context::Cx;
use crate::lifecycle::packages::{self, PackageManifest};
use crate::lifecycle::recipe::{Check, SmokeSpec};
use crate::lifecycle::report::{tail_lines, Report};
use crate::platforms::Result;

/// What a command printed in the guest, and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// The exit code a command gets when the smoke-test timeout ends it (as
/// coreutils' `timeout` reports it).
pub const TIMED_OUT: i64 = 124;

impl GuestOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    /// stdout then stderr, trimmed, for reports.
    pub fn combined(&self) -> String {
        let mut s = self.stdout.trim().to_owned();
        if !self.stderr.trim().is_empty() {
            if !s.is_empty() {
                s.push('\n');
            }
            s += self.stderr.trim();
        }
        s
    }

    /// A command the smoke-test timeout cut short: a failed check, not an error.
    pub fn timed_out(why: impl std::fmt::Display) -> Self {
        GuestOutput {
            exit_code: TIMED_OUT,
            stdout: String::new(),
            stderr: format!("still running when the smoke-test timeout ran out ({why})"),
        }
    }
}

/// A way into the guest: the QEMU guest agent, SSH, a serial console.
#[async_trait]
pub trait GuestChannel: Send + Sync {
    /// Runs `script` with `/bin/sh -c` as root. A script still running at
    /// `timeout` is a [`GuestOutput::timed_out`], not an error; errors are
    /// for the channel itself failing.
    async fn sh(&self, script: &str, timeout: Duration, cx: &Cx) -> Result<GuestOutput>;

    /// `via guest agent`, `via ssh`: said in every report line.
    fn how(&self) -> &'static str;
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    pub detail: String,
}

impl Verdict {
    pub fn pass(detail: impl Into<String>) -> Self {
        Verdict {
            ok: true,
            detail: detail.into(),
        }
    }

    pub fn fail(detail: impl Into<String>) -> Self {
        Verdict {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// What a platform provides for the sequence. Each method returns the
/// check's verdict; `Err` is for the platform failing to run the check at
/// all (an API error, cancellation).
#[async_trait]
pub trait SmokeTarget: Send {
    /// Waits until the guest reached userspace.
    async fn boot(&mut self, deadline: Instant, cx: &Cx) -> Result<Verdict>;

    /// Connects to the guest's channel for the rest of the test. With
    /// `wanted` the result is the `guest_agent` check; without it, a
    /// platform may fall back to another channel and report `None`.
    async fn guest_agent(
        &mut self,
        wanted: bool,
        deadline: Instant,
        cx: &Cx,
    ) -> Result<Option<Verdict>>;

    /// sshd answers (with the throwaway key where the platform allows).
    async fn ssh(&mut self, deadline: Instant, cx: &Cx) -> Result<Verdict>;

    /// How commands reach the guest now; `None`: no way in.
    fn channel(&self) -> Option<&dyn GuestChannel>;
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Runs the checks `spec` asks for, in order, into `report`; the first
/// failed check ends the test.
pub async fn run_checks(
    target: &mut dyn SmokeTarget,
    spec: &SmokeSpec,
    deadline: Instant,
    cx: &Cx,
    report: &mut Report,
) -> Result<()> {
    let wants = |c: Check| spec.checks.contains(&c);

    // boot: always waited for (everything else needs it), reported when asked.
    let t = Instant::now();
    let booted = target.boot(deadline, cx).await?;
    if wants(Check::Boot) || !booted.ok {
        report.push(Check::Boot.as_str(), booted.ok, t.elapsed(), booted.detail);
    }
    if !booted.ok {
        return Ok(());
    }

    let t = Instant::now();
    if let Some(v) = target
        .guest_agent(wants(Check::GuestAgent), deadline, cx)
        .await?
    {
        report.push(Check::GuestAgent.as_str(), v.ok, t.elapsed(), v.detail);
        if !v.ok {
            return Ok(());
        }
    }

    if wants(Check::CloudInit) {
        let t = Instant::now();
        let v = match target.channel() {
            None => Verdict::fail("no channel into the guest (no guest agent, no ssh)"),
            Some(ch) => {
                let out = ch
                    .sh("cloud-init status --wait --long", remaining(deadline), cx)
                    .await?;
                cloud_init_verdict(&out, spec.allow_degraded, ch.how())
            }
        };
        report.push(Check::CloudInit.as_str(), v.ok, t.elapsed(), v.detail);
        if !v.ok {
            return Ok(());
        }
    }

    if wants(Check::Ssh) {
        let t = Instant::now();
        let v = target.ssh(deadline, cx).await?;
        report.push(Check::Ssh.as_str(), v.ok, t.elapsed(), v.detail);
        if !v.ok {
            return Ok(());
        }
    }

    for (i, cmd) in spec.commands.iter().enumerate() {
        let t = Instant::now();
        let v = match target.channel() {
            None => Verdict::fail("no channel into the guest to run the command"),
            Some(ch) => command_verdict(cmd, &ch.sh(cmd, remaining(deadline), cx).await?, ch.how()),
        };
        report.push(format!("commands[{i}]"), v.ok, t.elapsed(), v.detail);
        if !v.ok {
            return Ok(());
        }
    }
    if let Some(ch) = target.channel() {
        report.packages = read_manifest(ch, deadline, cx).await?;
    }
    Ok(())
}

/// The booted image's package manifest; `None` when it has none to read
/// (no dpkg) or the guest does not answer in time: the report then simply
/// has no manifest, and only the `minimal` check minds.
async fn read_manifest(
    ch: &dyn GuestChannel,
    deadline: Instant,
    cx: &Cx,
) -> Result<Option<PackageManifest>> {
    // Every check passed: a channel error now costs the manifest, not the
    // image. Cancellation still ends the run.
    let out = match ch
        .sh(&packages::guest_script(), remaining(deadline), cx)
        .await
    {
        Ok(out) => out,
        Err(e) if cx.check("reading the package manifest").is_err() => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the image's package manifest");
            return Ok(None);
        }
    };
    let manifest = PackageManifest::parse(&out.stdout);
    if manifest.is_none() {
        tracing::info!(
            exit = out.exit_code,
            stderr = %tail_lines(&out.stderr, 3),
            "no package manifest in this image"
        );
    }
    Ok(manifest)
}

fn command_verdict(cmd: &str, out: &GuestOutput, how: &str) -> Verdict {
    if out.success() {
        let first = out
            .stdout
            .lines()
            .find(|l| !l.trim().is_empty())
            .map(|l| format!(": {}", l.trim()))
            .unwrap_or_default();
        return Verdict::pass(format!("{cmd:?} exited 0 {how}{first}"));
    }
    Verdict::fail(format!(
        "{cmd:?} exited {} {how}: {}",
        out.exit_code,
        tail_lines(&out.combined(), 15)
    ))
}

/// The one cloud-init verdict. `cloud-init status --wait --long` exits 0
/// when done, 2 when done with recoverable errors ("degraded"; cloud-init
/// 23.4 and later), 1 on error; older versions exit 0 and say "degraded"
/// only in `extended_status`. Degraded passes only with `allow_degraded`.
pub fn cloud_init_verdict(out: &GuestOutput, allow_degraded: bool, how: &str) -> Verdict {
    let text = out.combined();
    let status = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("status:"))
        .map(str::trim)
        .unwrap_or("unknown");
    if out.exit_code == 127 {
        // The shell's "command not found".
        return Verdict::fail(format!(
            "cloud-init is not installed in this image ({how}; Google's Debian images, for one, have none): leave cloud_init out of smoke_test.checks for it:\n{}",
            tail_lines(&text, 5)
        ));
    }
    let degraded = out.exit_code == 2 || text.contains("degraded");
    match (out.exit_code, degraded) {
        (0, false) => Verdict::pass(format!("status: {status} ({how})")),
        (0 | 2, true) if allow_degraded => Verdict::pass(format!(
            "status: {status}, degraded tolerated by allow_degraded ({how})"
        )),
        _ => Verdict::fail(format!(
            "status: {status}, exit {} ({how}):\n{}",
            out.exit_code,
            tail_lines(&text, 15)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::recipe::Check;
    use std::sync::Mutex;
    use tokio_util::sync::CancellationToken;

    fn out(code: i64, text: &str) -> GuestOutput {
        GuestOutput {
            exit_code: code,
            stdout: text.into(),
            stderr: String::new(),
        }
    }

    #[test]
    fn cloud_init_verdicts() {
        let v = |code, text, allow| cloud_init_verdict(&out(code, text), allow, "x").ok;
        assert!(v(0, "\nstatus: done\n", false));
        assert!(!v(1, "status: error", false));
        // cloud-init >= 23.4: exit 2.
        assert!(!v(2, "status: done\nextended_status: degraded done", false));
        assert!(v(2, "status: done\nextended_status: degraded done", true));
        // Older cloud-init: exit 0, degraded only in the long status. This
        // passed on Proxmox before the sequence was shared.
        assert!(!v(0, "status: done\nextended_status: degraded done", false));
        assert!(v(0, "status: done\nextended_status: degraded done", true));
        // No cloud-init at all: said so.
        let none = cloud_init_verdict(&out(127, "sh: 1: cloud-init: not found"), true, "x");
        assert!(
            !none.ok && none.detail.contains("not installed"),
            "{}",
            none.detail
        );
        // An error is never tolerated.
        assert!(!v(
            1,
            "status: error\nextended_status: degraded error",
            true
        ));
    }

    /// A guest whose commands answer from a table, recording what ran.
    struct Scripted {
        boot: bool,
        answers: Vec<(&'static str, GuestOutput)>,
        ran: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl GuestChannel for Scripted {
        async fn sh(&self, script: &str, _t: Duration, _cx: &Cx) -> Result<GuestOutput> {
            self.ran.lock().unwrap().push(script.to_owned());
            Ok(self
                .answers
                .iter()
                .find(|(s, _)| script.starts_with(s))
                .map(|(_, o)| o.clone())
                .unwrap_or_else(|| out(0, "")))
        }
        fn how(&self) -> &'static str {
            "via test"
        }
    }

    #[async_trait]
    impl SmokeTarget for Scripted {
        async fn boot(&mut self, _d: Instant, _cx: &Cx) -> Result<Verdict> {
            Ok(if self.boot {
                Verdict::pass("up")
            } else {
                Verdict::fail("never came up")
            })
        }
        async fn guest_agent(
            &mut self,
            wanted: bool,
            _d: Instant,
            _cx: &Cx,
        ) -> Result<Option<Verdict>> {
            Ok(wanted.then(|| Verdict::pass("agent")))
        }
        async fn ssh(&mut self, _d: Instant, _cx: &Cx) -> Result<Verdict> {
            Ok(Verdict::pass("ssh"))
        }
        fn channel(&self) -> Option<&dyn GuestChannel> {
            Some(self)
        }
    }

    async fn run(target: &mut Scripted, spec: &SmokeSpec) -> Report {
        let cx = Cx::transient(CancellationToken::new(), Duration::from_secs(5));
        let mut report = Report::default();
        run_checks(
            target,
            spec,
            Instant::now() + Duration::from_secs(5),
            &cx,
            &mut report,
        )
        .await
        .unwrap();
        report
    }

    fn names(r: &Report) -> Vec<(String, bool)> {
        r.checks.iter().map(|c| (c.name.clone(), c.ok)).collect()
    }

    #[tokio::test]
    async fn checks_run_in_order_and_stop_at_the_first_failure() {
        let mut t = Scripted {
            boot: true,
            answers: vec![
                ("cloud-init", out(0, "status: done")),
                ("false", out(1, "nope")),
            ],
            ran: Mutex::default(),
        };
        let spec = SmokeSpec {
            checks: Check::ALL.into_iter().collect(),
            commands: vec!["false".into(), "never-run".into()],
            ..SmokeSpec::default()
        };
        let r = run(&mut t, &spec).await;
        assert_eq!(
            names(&r),
            [
                ("boot".into(), true),
                ("guest_agent".into(), true),
                ("cloud_init".into(), true),
                ("ssh".into(), true),
                ("commands[0]".into(), false),
            ]
        );
        assert!(!t.ran.lock().unwrap().contains(&"never-run".to_owned()));
    }

    #[tokio::test]
    async fn a_guest_that_never_boots_is_reported_even_unasked() {
        let mut t = Scripted {
            boot: false,
            answers: vec![],
            ran: Mutex::default(),
        };
        let spec = SmokeSpec {
            checks: [Check::Ssh].into_iter().collect(),
            ..SmokeSpec::default()
        };
        let r = run(&mut t, &spec).await;
        assert_eq!(names(&r), [("boot".into(), false)]);
        assert!(t.ran.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn degraded_cloud_init_fails_unless_allowed() {
        let degraded = (
            "cloud-init",
            out(0, "status: done\nextended_status: degraded done"),
        );
        let spec = SmokeSpec {
            checks: [Check::CloudInit].into_iter().collect(),
            ..SmokeSpec::default()
        };
        let mut t = Scripted {
            boot: true,
            answers: vec![degraded.clone()],
            ran: Mutex::default(),
        };
        assert!(!run(&mut t, &spec).await.passed());
        let allowed = SmokeSpec {
            allow_degraded: true,
            ..spec
        };
        let mut t = Scripted {
            boot: true,
            answers: vec![degraded],
            ran: Mutex::default(),
        };
        assert!(run(&mut t, &allowed).await.passed());
    }
}
