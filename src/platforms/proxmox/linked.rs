//! Which VMs still depend on a template's base volumes, as PVE decides it
//! (pve-storage `PVE/Storage.pm` volume_is_base_and_used): a volume in the
//! storage's listing whose name carries the base. Where that holds depends
//! on the storage type:
//!
//! - directory storage (qcow2, `Plugin.pm`): a linked clone is
//!   `<basevmid>/<basename>/<vmid>/vm-<vmid>-disk-<n>.qcow2`, listed with
//!   `parent` `../<basevmid>/<basename>`; PVE refuses to destroy the base;
//! - ZFS (`ZFSPoolPlugin.pm`) and Ceph RBD (`RBDPlugin.pm`): a linked clone
//!   is `<basename>/vm-<vmid>-disk-<n>`, listed with `parent`
//!   `<basename>@__base__`; PVE refuses to destroy the base;
//! - LVM-thin (`LvmThinPlugin.pm`, PVE's default `local-lvm`): a linked
//!   clone is a thin snapshot named `vm-<vmid>-disk-<n>`, with no trace of
//!   its base in the listing or in its VM's config. PVE lets the base go and
//!   the clone keeps its data, so nothing here (or in PVE) pins it.

use super::api::{config_str, StorageVolume, VmConfig};

/// The volume ids of a template's disks (not its CD-ROMs, cloud-init drive
/// included): what qemu-server destroy_vm checks before removing a template.
pub fn base_volumes(cfg: &VmConfig) -> Vec<String> {
    cfg.keys()
        .filter(|k| is_disk_key(k))
        .filter_map(|k| config_str(cfg, k))
        .filter(|v| !v.split(',').any(|p| p == "media=cdrom"))
        .filter_map(|v| volid_of(&v))
        .collect()
}

/// The VMs (other than `template`) whose volumes in `listing` are linked
/// clones of one of `bases`, sorted.
pub fn dependent_vms(listing: &[StorageVolume], bases: &[String], template: u32) -> Vec<u32> {
    let mut out: Vec<u32> = listing
        .iter()
        .filter(|v| bases.iter().any(|b| names_base(v, b)))
        .filter_map(|v| v.vmid)
        .filter(|id| *id != template)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether a listed volume is a linked clone of `base` (a volume id): its
/// name starts with the base's own part (what parse_volname reads as
/// basevmid/basename), or its `parent` names the base.
fn names_base(listed: &StorageVolume, base: &str) -> bool {
    let (Some((st, name)), Some((base_st, base_name))) =
        (listed.volid.split_once(':'), base.split_once(':'))
    else {
        return false;
    };
    if st != base_st {
        return false;
    }
    let own = own_part(base_name);
    let by_name = name.starts_with(&format!("{own}/"));
    let by_parent = listed
        .parent
        .as_deref()
        .is_some_and(|p| p == format!("../{own}") || p == format!("{own}@__base__"));
    by_name || by_parent
}

/// A volume name without the base it names: for a directory storage
/// (`<vmid>/<file>`, numeric first part) the last two parts, else the last.
fn own_part(volname: &str) -> &str {
    let dir = volname
        .split('/')
        .next()
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let keep = if dir { 2 } else { 1 };
    let cuts: Vec<usize> = volname.match_indices('/').map(|(i, _)| i).collect();
    match cuts.len().checked_sub(keep) {
        Some(i) => &volname[cuts[i] + 1..],
        None => volname,
    }
}

/// `scsi0`, `virtio1`, `sata2`, `ide3`, `efidisk0`, `tpmstate0`, `unused0`.
fn is_disk_key(k: &str) -> bool {
    let bus = k.trim_end_matches(|c: char| c.is_ascii_digit());
    bus.len() < k.len()
        && matches!(
            bus,
            "scsi" | "virtio" | "sata" | "ide" | "efidisk" | "tpmstate" | "unused"
        )
}

/// The volume id of a drive value (`local:9000/base-9000-disk-0.qcow2,size=2G`),
/// unless it is a path or `none`.
fn volid_of(value: &str) -> Option<String> {
    let first = value.split(',').next()?;
    let file = first.strip_prefix("file=").unwrap_or(first);
    (file.contains(':') && !file.starts_with('/')).then(|| file.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vol(volid: &str, vmid: u32, parent: Option<&str>) -> StorageVolume {
        StorageVolume {
            volid: volid.into(),
            vmid: Some(vmid),
            parent: parent.map(str::to_owned),
        }
    }

    fn bases(v: &str) -> Vec<String> {
        vec![v.to_owned()]
    }

    #[test]
    fn a_templates_disks_are_its_non_cdrom_drives() {
        let cfg: VmConfig = [
            ("scsi0", json!("local:9000/base-9000-disk-0.qcow2,size=2G")),
            (
                "ide2",
                json!("local:9000/vm-9000-cloudinit.qcow2,media=cdrom"),
            ),
            ("ide0", json!("none,media=cdrom")),
            ("efidisk0", json!("tank:base-9000-disk-1,size=4M")),
            ("name", json!("x")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(
            base_volumes(&cfg),
            ["tank:base-9000-disk-1", "local:9000/base-9000-disk-0.qcow2"]
        );
    }

    #[test]
    fn directory_clones_name_their_base() {
        let listing = [
            vol("local:9000/base-9000-disk-0.qcow2", 9000, None),
            vol(
                "local:9000/base-9000-disk-0.qcow2/201/vm-201-disk-0.qcow2",
                201,
                Some("../9000/base-9000-disk-0.qcow2"),
            ),
            vol("local:202/vm-202-disk-0.qcow2", 202, None),
        ];
        assert_eq!(
            dependent_vms(&listing, &bases("local:9000/base-9000-disk-0.qcow2"), 9000),
            [201]
        );
    }

    #[test]
    fn zfs_and_rbd_clones_name_their_base() {
        for st in ["local-zfs", "ceph"] {
            let listing = [
                vol(&format!("{st}:base-9000-disk-0"), 9000, None),
                vol(
                    &format!("{st}:base-9000-disk-0/vm-201-disk-0"),
                    201,
                    Some("base-9000-disk-0@__base__"),
                ),
                vol(&format!("{st}:base-90000-disk-0/vm-203-disk-0"), 203, None),
            ];
            assert_eq!(
                dependent_vms(&listing, &bases(&format!("{st}:base-9000-disk-0")), 9000),
                [201],
                "{st}: base-90000 is another base"
            );
        }
    }

    #[test]
    fn a_base_made_from_a_linked_clone_is_named_by_its_own_part() {
        let base = "local:9000/base-9000-disk-0.qcow2/201/base-201-disk-0.qcow2";
        let listing = [
            vol(base, 201, Some("../9000/base-9000-disk-0.qcow2")),
            vol(
                "local:201/base-201-disk-0.qcow2/301/vm-301-disk-0.qcow2",
                301,
                Some("../201/base-201-disk-0.qcow2"),
            ),
        ];
        assert_eq!(dependent_vms(&listing, &bases(base), 201), [301]);
        assert!(
            dependent_vms(&listing, &bases("local:9000/base-9000-disk-0.qcow2"), 9000) == [201],
            "201 depends on 9000, 301 only on 201"
        );
    }

    #[test]
    fn lvm_thin_clones_show_no_base() {
        let listing = [
            vol("local-lvm:base-9000-disk-0", 9000, None),
            vol("local-lvm:vm-201-disk-0", 201, None),
        ];
        assert!(dependent_vms(&listing, &bases("local-lvm:base-9000-disk-0"), 9000).is_empty());
    }

    #[test]
    fn another_storage_never_depends() {
        let listing = [vol("other:base-9000-disk-0/vm-201-disk-0", 201, None)];
        assert!(dependent_vms(&listing, &bases("tank:base-9000-disk-0"), 9000).is_empty());
    }
}
