//! cloud-init user-data for the build VM and the smoke-test VM.
//!
//! The documents are written as JSON after the `#cloud-config` header: JSON is
//! valid YAML, so cloud-init reads it, and serde_json escapes every string
//! correctly. Provisioning runs as one script so that the first failing step
//! stops the build and says which step failed; its result goes to the serial
//! console as a marker line the host reads.

use base64::Engine;
use serde_json::{json, Value};

use super::recipe::Provision;

/// Printed on the serial console when provisioning ends: `GOLDEN-PROVISION rc=<n> step=<what>`.
pub const PROVISION_MARKER: &str = "GOLDEN-PROVISION";

const SCRIPT_PATH: &str = "/var/lib/golden/provision.sh";

/// A provisioning outcome parsed from the serial console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionResult {
    pub rc: i32,
    pub step: String,
}

impl ProvisionResult {
    pub fn ok(&self) -> bool {
        self.rc == 0
    }
}

/// Finds the provisioning marker in a serial-console log.
pub fn parse_provision_marker(log: &str) -> Option<ProvisionResult> {
    log.lines().rev().find_map(|line| {
        let rest = &line[line.find(PROVISION_MARKER)? + PROVISION_MARKER.len()..];
        let rest = rest.trim();
        let rc = rest
            .strip_prefix("rc=")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let step = rest.split_once("step=").map(|(_, s)| s.trim().to_owned())?;
        Some(ProvisionResult { rc, step })
    })
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The provisioning script: check packages, run commands, enable services, then
/// clean the guest so the image is a template (fresh machine-id, no cloud-init
/// state, no logs), and report on the console.
pub fn provision_script(p: &Provision) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         # Written by terraform-provider-golden: the image's provisioning steps.\n\
         set -u\n\
         report() {\n  \
           for c in /dev/ttyS0 /dev/console; do\n    \
             if [ -w \"$c\" ]; then echo \"GOLDEN-PROVISION rc=$1 step=$2\" > \"$c\" && break; fi\n  \
           done\n  \
           echo \"GOLDEN-PROVISION rc=$1 step=$2\"\n\
         }\n\
         step() {\n  \
           name=\"$1\"; shift\n  \
           echo \"golden: $name\"\n  \
           \"$@\"\n  \
           rc=$?\n  \
           if [ \"$rc\" -ne 0 ]; then report \"$rc\" \"$name\"; exit \"$rc\"; fi\n\
         }\n",
    );
    for pkg in &p.packages {
        s += &format!(
            "step {} sh -c 'dpkg-query -W -f=\"\\${{db:Status-Status}}\" \"$1\" 2>/dev/null | grep -qx installed' _ {}\n",
            sh_quote(&format!("package {pkg} installed")),
            sh_quote(pkg)
        );
    }
    for (i, cmd) in p.commands.iter().enumerate() {
        s += &format!(
            "step {} /bin/sh -c {}\n",
            sh_quote(&format!("commands[{i}]")),
            sh_quote(cmd)
        );
    }
    for svc in &p.services {
        s += &format!(
            "step {} systemctl enable {}\n",
            sh_quote(&format!("enable service {svc}")),
            sh_quote(svc)
        );
    }
    s += "step 'clean apt caches' sh -c 'command -v apt-get >/dev/null || exit 0; apt-get clean; rm -rf /var/lib/apt/lists/*'\n\
          step 'reset cloud-init' sh -c 'command -v cloud-init >/dev/null || exit 0; cloud-init clean --logs'\n\
          step 'reset machine-id' sh -c ': > /etc/machine-id; rm -f /var/lib/dbus/machine-id'\n\
          rm -rf /var/lib/golden\n\
          sync\n\
          report 0 done\n";
    s
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn render(doc: Value) -> String {
    let body = serde_json::to_string_pretty(&doc).unwrap_or_default();
    format!("#cloud-config\n{body}\n")
}

/// Who ends the build VM's run once provisioning reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerOff {
    /// The guest powers itself off (cloud-init `power_state`): where the
    /// host sees the console after the guest stopped.
    ByGuest,
    /// The guest stays up; the host stops it after reading the marker:
    /// where the console is unreadable once the guest stopped (GCE's serial
    /// port), so a guest powering itself off could take its last lines with it.
    ByHost,
}

/// User-data for the build VM: install packages, write files, run the
/// provisioning script, power off.
pub fn build_user_data(p: &Provision) -> String {
    build_user_data_with(p, PowerOff::ByGuest)
}

/// [`build_user_data`], saying who powers the VM off.
pub fn build_user_data_with(p: &Provision, power_off: PowerOff) -> String {
    let mut files: Vec<Value> = p
        .files
        .iter()
        .map(|(path, content)| {
            json!({"path": path, "encoding": "b64", "content": b64(content), "permissions": "0644", "owner": "root:root"})
        })
        .collect();
    files.push(json!({
        "path": SCRIPT_PATH, "encoding": "b64", "content": b64(&provision_script(p)),
        "permissions": "0755", "owner": "root:root"
    }));
    let mut doc = json!({
        // bootcmd runs before the package module: the source image's
        // packages, for the `minimal` check.
        "bootcmd": [["sh", "-c", super::packages::record_source_script()]],
        "write_files": files,
        "runcmd": [[SCRIPT_PATH]],
    });
    if power_off == PowerOff::ByGuest {
        doc["power_state"] =
            json!({"mode": "poweroff", "delay": "now", "timeout": 120, "condition": true});
    }
    if !p.packages.is_empty() {
        doc["package_update"] = json!(true);
        doc["packages"] = json!(p.packages);
    }
    render(doc)
}

/// The throwaway login the smoke test uses for its SSH check.
pub const SMOKE_USER: &str = "golden-smoke";

/// User-data for a smoke-test VM: a throwaway user with a throwaway key.
pub fn smoke_user_data(ssh_public_key: &str) -> String {
    render(json!({
        "users": ["default", {
            "name": SMOKE_USER,
            "shell": "/bin/sh",
            "lock_passwd": true,
            "sudo": "ALL=(ALL) NOPASSWD:ALL",
            "ssh_authorized_keys": [ssh_public_key.trim()],
        }],
    }))
}

/// NoCloud meta-data: a fresh instance id makes cloud-init treat every boot of
/// a template as a new instance.
pub fn meta_data(instance_id: &str, hostname: &str) -> String {
    format!("instance-id: {instance_id}\nlocal-hostname: {hostname}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn provision() -> Provision {
        Provision {
            packages: vec!["jq".into()],
            files: BTreeMap::from([("/etc/motd".into(), "it's golden\n".into())]),
            commands: vec!["echo 'a' > /tmp/x".into()],
            services: vec!["ssh".into()],
        }
    }

    fn parse_doc(ud: &str) -> Value {
        let body = ud.strip_prefix("#cloud-config\n").expect("header");
        serde_json::from_str(body).expect("json body")
    }

    #[test]
    fn build_user_data_has_packages_files_script_and_poweroff() {
        let doc = parse_doc(&build_user_data(&provision()));
        assert_eq!(doc["packages"], json!(["jq"]));
        assert_eq!(doc["package_update"], json!(true));
        let files = doc["write_files"].as_array().unwrap();
        assert_eq!(files[0]["path"], "/etc/motd");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(files[0]["content"].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, b"it's golden\n");
        assert_eq!(files[1]["path"], SCRIPT_PATH);
        assert_eq!(doc["runcmd"], json!([[SCRIPT_PATH]]));
        assert_eq!(doc["power_state"]["mode"], "poweroff");
        let bootcmd = doc["bootcmd"][0][2].as_str().unwrap();
        assert!(bootcmd.contains(crate::lifecycle::packages::SOURCE_LIST));
    }

    #[test]
    fn no_packages_means_no_apt_update() {
        let doc = parse_doc(&build_user_data(&Provision::default()));
        assert!(doc.get("packages").is_none());
        assert!(doc.get("package_update").is_none());
    }

    #[test]
    fn script_runs_steps_in_order_and_quotes_commands() {
        let s = provision_script(&provision());
        let pkg = s.find("package jq installed").unwrap();
        let cmd = s.find("commands[0]").unwrap();
        let svc = s.find("enable service ssh").unwrap();
        let clean = s.find("reset cloud-init").unwrap();
        assert!(pkg < cmd && cmd < svc && svc < clean);
        assert!(s.contains(r#"/bin/sh -c 'echo '\''a'\'' > /tmp/x'"#), "{s}");
        assert!(s.trim_end().ends_with("report 0 done"));
    }

    #[test]
    fn script_is_valid_shell() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.sh");
        std::fs::write(&path, provision_script(&provision())).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn marker_parsing() {
        let log = "boot...\n[  5.0] cloud-init[1]: golden: commands[0]\nGOLDEN-PROVISION rc=3 step=commands[1]\n";
        assert_eq!(
            parse_provision_marker(log),
            Some(ProvisionResult {
                rc: 3,
                step: "commands[1]".into()
            })
        );
        assert!(parse_provision_marker("GOLDEN-PROVISION rc=0 step=done")
            .unwrap()
            .ok());
        assert_eq!(parse_provision_marker("nothing here"), None);
    }

    #[test]
    fn smoke_user_data_injects_key_for_throwaway_user() {
        let doc = parse_doc(&smoke_user_data("ssh-ed25519 AAAA test\n"));
        assert_eq!(doc["users"][1]["name"], SMOKE_USER);
        assert_eq!(
            doc["users"][1]["ssh_authorized_keys"],
            json!(["ssh-ed25519 AAAA test"])
        );
    }
}
