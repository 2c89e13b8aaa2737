//! cloud-init on the instant backends: what a DO droplet's or a GCE
//! instance's cloud-init does with its user data on first boot, run in the
//! guest's file map and tiny shell (`core::shell`), in cloud-init's module order
//! (cloud-init `config/cloud.cfg`: init stage `bootcmd`, `write_files`,
//! `ssh`; final stage `package-update-upgrade-install`, `scripts-user`
//! (runcmd), `power-state-change`).
//!
//! - `#cloud-config` documents (YAML; golden's are JSON, which is YAML);
//!   a `#!` script runs as the user script; anything else is ignored.
//! - `bootcmd`/`runcmd` items are strings (`sh -c`) or argv lists; runcmd is
//!   one script whose exit code is its last command's, as cloud-init writes
//!   it (`cc_runcmd`, `scripts/runcmd`).
//! - `write_files`: `content` plain or `encoding: b64|base64`, `append`.
//! - `packages`: names or `[name, version]`, into the dpkg database.
//! - everything's output goes to `/var/log/cloud-init-output.log` (DO's
//!   images log there) and to the console (cloud-init's default `output`
//!   setting, `{all: '| tee -a /var/log/cloud-init-output.log'}`, tees to
//!   its stdout, the console); a failing module makes `cloud-init status`
//!   say `error` (`/run/cloud-init/result.json`).
//! - `ssh_keys.ed25519_private`/`_public` become the host key (`cc_ssh`).
//! - `power_state: {mode: poweroff}` powers the droplet off after it all,
//!   unless its `condition` (a bool, or a command run like a runcmd item)
//!   is false (`cc_power_state_change`): golden's build makes the power-off
//!   depend on provisioning having succeeded.

use base64::Engine;
use serde_json::{json, Value};

use crate::core::guestfs::GuestFs;
use crate::core::shell::{self, CLOUD_INIT_RESULT};

const OUTPUT_LOG: &str = "/var/log/cloud-init-output.log";
/// Debian 12's cloud-init (the base packages' `cloud-init` version).
const VERSION: &str = "22.4.2";

/// What cloud-init's run decided beyond the file map.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The host key pair given in `ssh_keys` (private, public).
    pub host_key: Option<(String, String)>,
    /// `power_state.mode` was `poweroff` (or `halt`).
    pub power_off: bool,
    pub errors: Vec<String>,
    /// What cloud-init wrote to the console.
    pub console: Vec<u8>,
}

/// The user data as a cloud-config document, if it is one.
pub fn cloud_config(user_data: &str) -> Option<Value> {
    let first = user_data.lines().next()?.trim();
    if first != "#cloud-config" {
        return None;
    }
    crate::core::openapi::parse_yaml(user_data).ok()
}

/// The host key pair a cloud-config's `ssh_keys` gives.
pub fn host_key(doc: &Value) -> Option<(String, String)> {
    let keys = doc.get("ssh_keys")?;
    let private = keys.get("ed25519_private")?.as_str()?.to_owned();
    let public = keys
        .get("ed25519_public")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_owned();
    Some((private, public))
}

/// First boot: runs the user data in `fs` (hostname `name`); `datasource`
/// is cloud-init's name for the platform (`DataSourceDigitalOcean`,
/// `DataSourceGCE`).
pub fn first_boot(
    fs: &mut GuestFs,
    name: &str,
    user_data: Option<&str>,
    datasource: &str,
) -> Outcome {
    fs.insert("/etc/hostname".into(), format!("{name}\n").into_bytes());
    let mut log = Log::start(fs, datasource);
    let mut out = Outcome::default();
    match user_data {
        Some(ud) if ud.starts_with("#cloud-config") => match cloud_config(ud) {
            Some(doc) => run_config(fs, &doc, &mut log, &mut out),
            None => out.errors.push("user data: not a YAML cloud-config".into()),
        },
        Some(ud) if ud.starts_with("#!") => {
            fs.insert("/var/lib/cloud/instance/user-data.txt".into(), ud.into());
            let o = shell::run_script(fs, ud, None, false);
            log.append(fs, &o.stdout);
            log.append(fs, &o.stderr);
            if o.exitcode != 0 {
                out.errors
                    .push(format!("user script exited {}", o.exitcode));
            }
        }
        _ => {}
    }
    let status = if out.errors.is_empty() {
        "done"
    } else {
        "error"
    };
    log.append(
        fs,
        format!("Cloud-init v. {VERSION} finished. Datasource {datasource}. Status {status}\n")
            .as_bytes(),
    );
    let result = json!({"v1": {"datasource": datasource, "errors": out.errors}});
    fs.insert(CLOUD_INIT_RESULT.into(), result.to_string().into_bytes());
    // Units runcmd started with `systemd-run --no-block`: they run beside
    // cloud-init's last stage; here, once it is over (their output is the
    // journal's).
    shell::run_started_units(fs);
    out.console = log.console;
    out
}

/// The output log, appended to while it exists: a step that deletes it
/// (`cloud-init clean --logs`) leaves it deleted, as cloud-init's open
/// log file is then unlinked.
/// The console gets everything, deleted log or not.
struct Log {
    live: bool,
    console: Vec<u8>,
}

impl Log {
    fn start(fs: &mut GuestFs, datasource: &str) -> Log {
        let first = format!("Cloud-init v. {VERSION} running 'init' ({datasource})\n");
        fs.insert(OUTPUT_LOG.into(), first.clone().into_bytes());
        Log {
            live: true,
            console: first.into_bytes(),
        }
    }

    fn append(&mut self, fs: &mut GuestFs, bytes: &[u8]) {
        self.console.extend_from_slice(bytes);
        if !self.live {
            return;
        }
        match fs.get_mut(OUTPUT_LOG) {
            Some(f) => f.extend_from_slice(bytes),
            None => self.live = false,
        }
    }
}

fn run_config(fs: &mut GuestFs, doc: &Value, log: &mut Log, out: &mut Outcome) {
    out.host_key = host_key(doc);
    if let Some(items) = doc.get("bootcmd").and_then(Value::as_array) {
        for item in items {
            let rc = run_item(fs, item, log);
            if rc != 0 {
                out.errors
                    .push(format!("bootcmd: {} exited {rc}", item_text(item)));
            }
        }
    }
    if let Some(files) = doc.get("write_files").and_then(Value::as_array) {
        for f in files {
            if let Err(e) = write_file(fs, f) {
                out.errors.push(format!("write_files: {e}"));
            }
        }
    }
    if let Some(pkgs) = doc.get("packages").and_then(Value::as_array) {
        let names: Vec<String> = pkgs
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.clone()),
                Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_owned),
                _ => None,
            })
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        crate::core::dpkg::install(fs, &refs);
        log.append(
            fs,
            format!("Setting up {} ...\n", names.join(", ")).as_bytes(),
        );
    }
    if let Some(items) = doc.get("runcmd").and_then(Value::as_array) {
        let mut rc = 0;
        for item in items {
            rc = run_item(fs, item, log);
        }
        if rc != 0 {
            out.errors.push(format!("scripts-user: runcmd exited {rc}"));
            log.append(
                fs,
                b"Failed to run module scripts-user (scripts in /var/lib/cloud/instance/scripts)\n",
            );
        }
    }
    let power_state = doc.get("power_state");
    out.power_off = power_state
        .and_then(|p| p.get("mode"))
        .and_then(Value::as_str)
        .is_some_and(|m| m == "poweroff" || m == "halt")
        && condition_holds(fs, power_state.and_then(|p| p.get("condition")), log);
}

/// `power_state.condition`: absent or `true` holds, `false` does not, a
/// command holds when it exits 0 (cloud-init logs when it does not).
fn condition_holds(fs: &mut GuestFs, condition: Option<&Value>, log: &mut Log) -> bool {
    let holds = match condition {
        None | Some(Value::Bool(true)) => true,
        Some(Value::Bool(false)) => false,
        Some(cmd) => run_item(fs, cmd, log) == 0,
    };
    if !holds {
        log.append(fs, b"Condition was false. Will not perform state change.\n");
    }
    holds
}

fn item_text(item: &Value) -> String {
    match item {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One `bootcmd`/`runcmd` item; its output goes to the log.
fn run_item(fs: &mut GuestFs, item: &Value, log: &mut Log) -> i64 {
    let argv: Vec<String> = match item {
        Value::String(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        _ => return 0,
    };
    let o = shell::run_argv(fs, &argv, None);
    log.append(fs, &o.stdout);
    log.append(fs, &o.stderr);
    o.exitcode
}

fn write_file(fs: &mut GuestFs, f: &Value) -> Result<(), String> {
    let path = f
        .get("path")
        .and_then(Value::as_str)
        .ok_or("an entry without a path")?;
    let content = f.get("content").and_then(Value::as_str).unwrap_or("");
    let encoding = f
        .get("encoding")
        .and_then(Value::as_str)
        .unwrap_or("text/plain");
    let bytes = match encoding {
        "b64" | "base64" => base64::engine::general_purpose::STANDARD
            .decode(content.trim())
            .map_err(|e| format!("{path}: bad base64: {e}"))?,
        "text/plain" => content.as_bytes().to_vec(),
        other => return Err(format!("{path}: encoding '{other}' is not simulated")),
    };
    let append = f.get("append").and_then(Value::as_bool).unwrap_or(false);
    let entry = fs.entry(path.to_owned()).or_default();
    if !append {
        entry.clear();
    }
    entry.extend(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::guestfs::debian_fs;

    fn sh(fs: &mut GuestFs, cmd: &str) -> shell::Output {
        shell::run_argv(fs, &["/bin/sh".into(), "-c".into(), cmd.into()], None)
    }

    #[test]
    fn golden_build_user_data_runs_its_provisioning_script() {
        let p = golden::lifecycle::recipe::Provision {
            packages: vec!["htop".into()],
            files: [("/etc/motd".to_owned(), "hello\n".to_owned())].into(),
            commands: vec!["echo built > /etc/built".into()],
            services: vec![],
        };
        let ud = golden::lifecycle::cloudinit::build_user_data(&p);
        let mut fs = debian_fs("x");
        let out = first_boot(&mut fs, "build-1", Some(&ud), "DataSourceDigitalOcean");
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert!(out.power_off);
        let console = String::from_utf8_lossy(&out.console).into_owned();
        assert!(
            console.contains("GOLDEN-PROVISION rc=0 step=done\n"),
            "the console has the marker: {console}"
        );
        assert_eq!(fs["/etc/motd"], b"hello\n");
        assert_eq!(fs["/etc/built"], b"built\n");
        assert!(
            fs.contains_key("/usr/share/golden/source-packages"),
            "bootcmd ran"
        );
        assert!(
            !fs.contains_key("/var/lib/golden/provision.sh"),
            "the script cleans up"
        );
        let o = sh(&mut fs, "dpkg-query -W -f='${db:Status-Status}' htop");
        assert_eq!(o.stdout, b"installed");
        // The script deleted the output log with `cloud-init clean --logs`.
        assert!(!fs.contains_key(OUTPUT_LOG));
        let o = sh(&mut fs, "cloud-init status");
        assert_eq!(
            (o.exitcode, o.stdout.as_slice()),
            (0, &b"status: done\n"[..])
        );
    }

    #[test]
    fn a_failing_runcmd_is_a_cloud_init_error_and_is_logged() {
        let ud = "#cloud-config\n{\"runcmd\": [\"echo one\", [\"sh\", \"-c\", \"echo two >&2; exit 3\"]],\n \"write_files\": [{\"path\": \"/etc/x\", \"content\": \"plain\"}]}\n";
        let mut fs = debian_fs("x");
        let out = first_boot(&mut fs, "d", Some(ud), "DataSourceDigitalOcean");
        assert_eq!(out.errors, vec!["scripts-user: runcmd exited 3".to_owned()]);
        assert!(!out.power_off);
        let log = String::from_utf8_lossy(&fs[OUTPUT_LOG]).into_owned();
        assert!(log.contains("one\n") && log.contains("two\n"), "{log}");
        assert_eq!(fs["/etc/x"], b"plain");
        let o = sh(&mut fs, "cloud-init status");
        assert_eq!(
            (o.exitcode, o.stdout.as_slice()),
            (1, &b"status: error\n"[..])
        );
    }

    /// golden's build powers off only after provisioning succeeded: a
    /// failing step leaves the droplet up, its marker in the output log.
    #[test]
    fn a_failed_provisioning_step_is_logged_and_keeps_the_droplet_up() {
        let p = golden::lifecycle::recipe::Provision {
            commands: vec!["echo half-way; exit 7".into()],
            ..Default::default()
        };
        let mut doc: Value =
            cloud_config(&golden::lifecycle::cloudinit::build_user_data(&p)).unwrap();
        doc["power_state"]["condition"] =
            json!(["sh", "-c", "test ! -e /var/lib/golden/provision.sh"]);
        let ud = format!("#cloud-config\n{doc}\n");
        let mut fs = debian_fs("x");
        let out = first_boot(&mut fs, "build-1", Some(&ud), "DataSourceDigitalOcean");
        assert!(!out.power_off, "the condition is false");
        let log = String::from_utf8_lossy(&fs[OUTPUT_LOG]).into_owned();
        assert!(
            log.contains("half-way\n") && log.contains("GOLDEN-PROVISION rc=7 step=commands[0]"),
            "{log}"
        );
        // Without the failure the same condition holds.
        let mut fs = debian_fs("x");
        let ok = format!(
            "#cloud-config\n{}\n",
            json!({"power_state": doc["power_state"]})
        );
        assert!(first_boot(&mut fs, "build-2", Some(&ok), "DataSourceDigitalOcean").power_off);
    }

    #[test]
    fn ssh_keys_give_the_host_key() {
        let ud = "#cloud-config\nssh_keys:\n  ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    abc\n    -----END OPENSSH PRIVATE KEY-----\n  ed25519_public: ssh-ed25519 AAAA host\n";
        let doc = cloud_config(ud).unwrap();
        let (private, public) = host_key(&doc).unwrap();
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n"));
        assert_eq!(public, "ssh-ed25519 AAAA host");
    }
}
