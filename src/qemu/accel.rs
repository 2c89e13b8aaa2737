//! KVM or TCG. `/dev/kvm` existing proves nothing: in a nested VM without
//! vmx/svm the device opens, `-cpu host` aborts and guests hang silently. So the
//! probe also reads the CPU flags and asks KVM to create a VM.

use std::fmt;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelChoice {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl AccelChoice {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(AccelChoice::Auto),
            "kvm" => Some(AccelChoice::Kvm),
            "tcg" => Some(AccelChoice::Tcg),
            _ => None,
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

impl Accel {
    /// The QEMU arguments selecting this accelerator and a matching CPU model.
    pub fn qemu_args(self) -> Vec<String> {
        match self {
            Accel::Kvm => vec!["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()],
            // Multi-threaded TCG uses every vCPU thread; `max` gives the guest
            // every feature TCG can emulate.
            Accel::Tcg => vec![
                "-accel".into(),
                "tcg,thread=multi".into(),
                "-cpu".into(),
                "max".into(),
            ],
        }
    }
}

/// Resolves the user's choice. `kvm` on a host where KVM cannot work is an
/// error that says why, rather than a guest that hangs.
pub fn resolve(choice: AccelChoice) -> Result<Accel, String> {
    match choice {
        AccelChoice::Tcg => Ok(Accel::Tcg),
        AccelChoice::Kvm => kvm_probe().map(|_| Accel::Kvm),
        AccelChoice::Auto => Ok(if kvm_probe().is_ok() {
            Accel::Kvm
        } else {
            Accel::Tcg
        }),
    }
}

fn kvm_probe() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(probe_uncached).clone()
}

fn probe_uncached() -> Result<(), String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has_virt = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !has_virt {
        return Err("the CPU shows no vmx/svm flag (nested virtualization is off), so KVM cannot run guests".into());
    }
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm: {e}"))?;
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
    // SAFETY: ioctls on a file descriptor we own, with no pointer arguments.
    let version = unsafe { libc::ioctl(dev.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if version != 12 {
        return Err(format!(
            "/dev/kvm reports API version {version}, expected 12"
        ));
    }
    // SAFETY: as above; the returned descriptor is closed right away.
    let vm = unsafe { libc::ioctl(dev.as_raw_fd(), KVM_CREATE_VM, 0) };
    if vm < 0 {
        return Err(format!(
            "KVM_CREATE_VM failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `vm` is a descriptor the kernel just gave us.
    unsafe { libc::close(vm) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_tcg_needs_no_probe() {
        assert_eq!(resolve(AccelChoice::Tcg), Ok(Accel::Tcg));
    }

    #[test]
    fn auto_agrees_with_the_kvm_probe() {
        let auto = resolve(AccelChoice::Auto).unwrap();
        let kvm = resolve(AccelChoice::Kvm);
        assert_eq!(auto == Accel::Kvm, kvm.is_ok(), "auto={auto} kvm={kvm:?}");
    }

    #[test]
    fn parse_choices() {
        assert_eq!(AccelChoice::parse("auto"), Some(AccelChoice::Auto));
        assert_eq!(AccelChoice::parse("hvf"), None);
    }
}
