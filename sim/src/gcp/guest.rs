//! The instant backend's guest: what an instance does when it boots, in its
//! boot disk's file map and the core's tiny shell.
//!
//! - cloud-init (only where the image has it: Google's Ubuntu images do,
//!   its Debian images do not) runs the `user-data` metadata value
//!   (`core::cloudinit`, datasource `DataSourceGCE`); what it prints goes to
//!   the console, which is serial port 1.
//! - the guest agent's metadata script runner (`google_metadata_script_runner`,
//!   in both) runs the `startup-script` metadata value on every boot and
//!   logs each line it prints as `startup-script: <line>`.
//! - what the guest writes to `/dev/ttyS0` or `/dev/console` lands on
//!   serial port 1 as is.
//! - a power-off request (cloud-init's `power_state`, `poweroff`,
//!   `shutdown -h`, `systemctl poweroff`) stops the instance.

use crate::core::cloudinit;
use crate::core::guestfs::GuestFs;
use crate::core::shell::{self, POWEROFF_REQUESTED};

use super::state::Serial;

const DEVICES: &[&str] = &["/dev/ttyS0", "/dev/console"];

/// Boots the guest: runs its user data and startup script; returns whether
/// it asked to power off.
pub fn boot(
    fs: &mut GuestFs,
    serial: &mut Serial,
    name: &str,
    user_data: Option<&str>,
    startup_script: Option<&str>,
) -> bool {
    for d in DEVICES {
        fs.entry((*d).to_owned()).or_default();
    }
    serial.write(b"SeaBIOS (version 1.8.2)\r\nBooting from Hard Disk 0...\r\n");
    serial.write(format!("[    0.000000] Linux version 6.1.0-28-cloud-amd64\r\n[    2.100000] systemd[1]: Hostname set to <{name}>.\r\n").as_bytes());
    let mut power_off = false;
    if fs.contains_key(crate::core::guestfs::CLOUD_INIT) {
        let out = cloudinit::first_boot(fs, name, user_data, "DataSourceGCE");
        serial.write(&out.console);
        drain(fs, serial);
        power_off |= out.power_off;
    }
    if let (Some(script), true) = (
        startup_script,
        fs.contains_key("/usr/bin/google_metadata_script_runner"),
    ) {
        let runner = "google_metadata_script_runner[812]";
        serial.write(format!("{runner}: Starting startup scripts (version 20250115.00-g1).\n{runner}: Found startup-script in metadata.\n").as_bytes());
        let out = shell::run_script(fs, script, None, false);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        for line in text.lines() {
            serial.write(format!("{runner}: startup-script: {line}\n").as_bytes());
        }
        drain(fs, serial);
        serial.write(format!("{runner}: startup-script exit status {}\n{runner}: Finished running startup scripts.\n", out.exitcode).as_bytes());
    }
    // Transient units the scripts started (`systemd-run --no-block`).
    shell::run_started_units(fs);
    drain(fs, serial);
    power_off |= fs.remove(POWEROFF_REQUESTED).is_some();
    power_off
}

/// What the guest wrote to its console devices, onto the serial port.
fn drain(fs: &mut GuestFs, serial: &mut Serial) {
    for d in DEVICES {
        if let Some(bytes) = fs.get_mut(*d) {
            serial.write(bytes);
            bytes.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::guestfs::debian_fs;

    fn read_all(s: &Serial) -> String {
        String::from_utf8_lossy(&s.read(0).0).into_owned()
    }

    #[test]
    fn golden_build_user_data_reports_on_the_serial_port_and_powers_off() {
        let p = golden::lifecycle::recipe::Provision {
            packages: vec![],
            files: Default::default(),
            commands: vec!["echo built > /etc/built".into()],
            services: vec![],
        };
        let ud = golden::lifecycle::cloudinit::build_user_data(&p);
        let mut fs = debian_fs("x");
        fs.insert("/usr/bin/cloud-init".into(), Vec::new());
        let mut serial = Serial::default();
        assert!(boot(&mut fs, &mut serial, "build", Some(&ud), None));
        let out = read_all(&serial);
        assert!(out.contains("GOLDEN-PROVISION rc=0 step=done"), "{out}");
        assert_eq!(fs["/etc/built"], b"built\n");
    }

    #[test]
    fn without_cloud_init_user_data_is_ignored_and_startup_scripts_run() {
        let mut fs = debian_fs("x");
        crate::core::guestfs::without_cloud_init(&mut fs);
        fs.insert("/usr/bin/google_metadata_script_runner".into(), Vec::new());
        let mut serial = Serial::default();
        let script = "#!/bin/bash\necho hello\necho 'GOLDEN-CHECK nginx ok' > /dev/ttyS0\necho 'GOLDEN-CHECK ssh failed' > /dev/ttyS0\n";
        let off = boot(
            &mut fs,
            &mut serial,
            "smoke",
            Some("#cloud-config\n{\"runcmd\": [\"poweroff\"]}\n"),
            Some(script),
        );
        assert!(
            !off,
            "user-data needs cloud-init, which Google's Debian image lacks"
        );
        let out = read_all(&serial);
        assert!(out.contains("startup-script: hello\n"), "{out}");
        assert!(
            out.contains("GOLDEN-CHECK nginx ok\nGOLDEN-CHECK ssh failed\n"),
            "{out}"
        );
        assert!(out.contains("startup-script exit status 0"), "{out}");
        let mut serial = Serial::default();
        assert!(boot(
            &mut fs,
            &mut serial,
            "smoke",
            None,
            Some("shutdown -h now\n")
        ));
    }
}
