//! The instant backends' guest filesystem: a map of path -> contents, enough
//! for the tiny shell (`shell`) and the package database (`dpkg`) that both
//! the Proxmox and the DigitalOcean simulators run provisioning in.

use std::collections::BTreeMap;

pub type GuestFs = BTreeMap<String, Vec<u8>>;

/// cloud-init's program: whether a guest has cloud-init is whether this
/// file is in its map (`shell` answers `command -v cloud-init` and runs
/// `cloud-init` by it; the GCE guest boots through cloud-init by it).
pub const CLOUD_INIT: &str = "/usr/bin/cloud-init";

/// A guest without cloud-init (Google's Debian images): no program, no
/// package.
pub fn without_cloud_init(fs: &mut GuestFs) {
    fs.remove(CLOUD_INIT);
    super::dpkg::remove(fs, "cloud-init");
}

/// The files of a freshly installed Debian 12 cloud image, enough for the
/// fake shell's `cat`/`test`/`grep`.
pub fn debian_fs(hostname: &str) -> GuestFs {
    let mut fs = GuestFs::new();
    fs.insert("/etc/hostname".into(), format!("{hostname}\n").into_bytes());
    fs.insert(
        "/etc/os-release".into(),
        b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n".to_vec(),
    );
    fs.insert("/etc/debian_version".into(), b"12.8\n".to_vec());
    super::dpkg::seed(&mut fs);
    // Debian's cloud images (genericcloud, what DigitalOcean and Proxmox
    // templates start from) have cloud-init; the GCE simulator takes it
    // away for Google's Debian image (`without_cloud_init`).
    fs.insert(CLOUD_INIT.into(), Vec::new());
    fs
}
