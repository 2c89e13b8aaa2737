//! What each PVE storage plugin does with VM disks (pve-storage
//! `PVE/Storage/*Plugin.pm`): how a volume is named, how a linked clone names
//! its base (or does not), what the content listing shows as `parent`, and
//! which formats a storage offers. Pure rules on volume names; the cluster
//! state keeps the volumes.

use std::fmt;
use std::str::FromStr;

/// The storage types the simulator models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageType {
    /// `LvmThinPlugin.pm`: thin LVs; a linked clone is a thin snapshot.
    LvmThin,
    /// `DirPlugin.pm` on `Plugin.pm`: files under `images/<vmid>/`.
    Dir,
    /// `ZFSPoolPlugin.pm`: zvols; a linked clone is a `zfs clone`.
    ZfsPool,
    /// `RBDPlugin.pm`: Ceph RBD images; a linked clone is an `rbd clone`.
    Rbd,
}

impl FromStr for StorageType {
    type Err = String;

    fn from_str(s: &str) -> Result<StorageType, String> {
        match s {
            "lvmthin" => Ok(StorageType::LvmThin),
            "dir" => Ok(StorageType::Dir),
            "zfspool" => Ok(StorageType::ZfsPool),
            "rbd" => Ok(StorageType::Rbd),
            other => Err(format!(
                "storage type '{other}' is not simulated (lvmthin, dir, zfspool, rbd)"
            )),
        }
    }
}

impl fmt::Display for StorageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name())
    }
}

impl StorageType {
    /// The plugin's `type` (`storage.cfg`, `GET /nodes/{node}/storage`).
    pub fn type_name(self) -> &'static str {
        match self {
            StorageType::LvmThin => "lvmthin",
            StorageType::Dir => "dir",
            StorageType::ZfsPool => "zfspool",
            StorageType::Rbd => "rbd",
        }
    }

    /// The content a storage of this type gets when its config names none:
    /// `plugindata`'s `content->[1]` (`PVE::Storage::Plugin::parse_config`).
    /// RBDPlugin.pm's default is `images` only; the others add `rootdir`.
    pub fn default_content(self) -> &'static str {
        match self {
            StorageType::Rbd => "images",
            _ => "images,rootdir",
        }
    }

    /// `PVE::Storage::Plugin::@SHARED_STORAGE` names `rbd` (and `zfs`, which
    /// is ZFS over iSCSI, not `zfspool`): parse_config sets `shared` for it.
    pub fn shared(self) -> bool {
        self == StorageType::Rbd
    }

    /// `get_formats` (Plugin.pm): the valid formats, sorted, and the default.
    /// Plugins without a `format` in `plugindata` (LvmThinPlugin.pm,
    /// RBDPlugin.pm) offer raw only; ZFSPoolPlugin.pm raw and subvol;
    /// DirPlugin.pm raw, qcow2, vmdk and subvol, and the simulator's
    /// directory storages are configured `format qcow2`.
    pub fn formats(self) -> (&'static [&'static str], &'static str) {
        match self {
            StorageType::LvmThin | StorageType::Rbd => (&["raw"], "raw"),
            StorageType::ZfsPool => (&["raw", "subvol"], "raw"),
            StorageType::Dir => (&["qcow2", "raw", "subvol", "vmdk"], "qcow2"),
        }
    }

    pub fn default_format(self) -> &'static str {
        self.formats().1
    }

    /// A new disk's volume name: Plugin.pm alloc_image answers
    /// `<vmid>/vm-<vmid>-disk-<n>.<fmt>` (get_next_vm_diskname with the
    /// format suffix); the block plugins answer `vm-<vmid>-disk-<n>`.
    pub fn disk_volname(self, vmid: u32, n: u32, format: &str) -> String {
        match self {
            StorageType::Dir => format!("{vmid}/vm-{vmid}-disk-{n}.{format}"),
            _ => format!("vm-{vmid}-disk-{n}"),
        }
    }

    /// The cloud-init drive: `vm-<vmid>-cloudinit`, on a directory storage a
    /// file `<vmid>/vm-<vmid>-cloudinit.<fmt>` (qemu-server
    /// `PVE/QemuServer/Cloudinit.pm`, `PVE/API2/Qemu.pm` create_disks).
    pub fn cloudinit_volname(self, vmid: u32, format: &str) -> String {
        match self {
            StorageType::Dir => format!("{vmid}/vm-{vmid}-cloudinit.{format}"),
            _ => format!("vm-{vmid}-cloudinit"),
        }
    }

    /// The volume name `clone_image` answers for disk `n` of `vmid` cloned
    /// from the base volume `base`:
    /// - LvmThinPlugin.pm: a plain `vm-<vmid>-disk-<n>` (a thin snapshot; the
    ///   base is not in the name, see the note at the top of that file);
    /// - Plugin.pm (dir): `<basevmid>/<basename>/<vmid>/vm-<vmid>-disk-<n>.qcow2`,
    ///   always qcow2 (a qcow2 overlay backed by `../<basevmid>/<basename>`);
    /// - ZFSPoolPlugin.pm, RBDPlugin.pm: `<basename>/vm-<vmid>-disk-<n>`.
    pub fn linked_clone_volname(self, base: &str, vmid: u32, n: u32) -> String {
        let own = self.own_name(base);
        match self {
            StorageType::LvmThin => format!("vm-{vmid}-disk-{n}"),
            StorageType::Dir => format!("{own}/{vmid}/vm-{vmid}-disk-{n}.qcow2"),
            StorageType::ZfsPool | StorageType::Rbd => format!("{own}/vm-{vmid}-disk-{n}"),
        }
    }

    /// The volume's own part, without the base it names: for a directory
    /// storage `<vmid>/<name>`, for the block plugins `<name>`.
    pub fn own_name(self, volname: &str) -> String {
        self.split(volname).1.to_owned()
    }

    /// The base a linked clone's volume name names (`parse_volname`'s
    /// `$basevmid/$basename` for dir, `$basename` for zfs and rbd); `None`
    /// for any volume on LVM-thin, whose parse_volname never returns a base.
    pub fn linked_base(self, volname: &str) -> Option<String> {
        self.split(volname).0.map(str::to_owned)
    }

    /// `parse_volname` of each plugin, reduced to (base part, own part).
    fn split(self, volname: &str) -> (Option<&str>, &str) {
        match self {
            StorageType::LvmThin => (None, volname),
            // Plugin.pm: m!^(\d+)/(\S+)/(\d+)/(\S+)$! is a linked clone.
            StorageType::Dir => {
                let parts: Vec<&str> = volname.splitn(4, '/').collect();
                if parts.len() == 4 {
                    let cut = parts[0].len() + 1 + parts[1].len();
                    (Some(&volname[..cut]), &volname[cut + 1..])
                } else {
                    (None, volname)
                }
            }
            // ZFSPoolPlugin.pm / RBDPlugin.pm: m/^((base-\d+-\S+)\/)?(...)$/.
            StorageType::ZfsPool | StorageType::Rbd => match volname.split_once('/') {
                Some((base, own)) => (Some(base), own),
                None => (None, volname),
            },
        }
    }

    /// Whether the volume is a base volume: its own name starts `base-`
    /// (every plugin's parse_volname `$isBase`).
    pub fn is_base(self, volname: &str) -> bool {
        let own = self.own_name(volname);
        own.rsplit('/').next().unwrap_or(&own).starts_with("base-")
    }

    /// The content listing's `parent` of a volume:
    /// - Plugin.pm list_images: qemu-img's backing file, `../<basevmid>/<basename>`;
    /// - ZFSPoolPlugin.pm zfs_list_zvol: the zvol's origin, `<basename>@__base__`;
    /// - RBDPlugin.pm rbd_ls: the parent image and snapshot, `<basename>@__base__`;
    /// - LvmThinPlugin.pm list_images: none.
    pub fn listed_parent(self, volname: &str) -> Option<String> {
        let base = self.linked_base(volname)?;
        match self {
            StorageType::LvmThin => None,
            StorageType::Dir => Some(format!("../{base}")),
            StorageType::ZfsPool | StorageType::Rbd => Some(format!("{base}@__base__")),
        }
    }

    /// PVE::Storage::volume_is_base_and_used's test for one listed volume:
    /// does `candidate` name `base` as its base (same base vmid and name)?
    pub fn is_linked_clone_of(self, candidate: &str, base: &str) -> bool {
        self.linked_base(candidate)
            .is_some_and(|b| b == self.own_name(base))
    }

    /// The disk number in a volume name, as `get_next_vm_diskname` (Plugin.pm)
    /// reads it: `(vm|base)-<vmid>-disk-<n>`.
    pub fn disk_number(self, volname: &str, vmid: u32) -> Option<u32> {
        let own = self.own_name(volname);
        let file = own.rsplit('/').next().unwrap_or(&own);
        let stem = file.split('.').next().unwrap_or(file);
        ["vm-", "base-"].iter().find_map(|p| {
            stem.strip_prefix(p)?
                .strip_prefix(&format!("{vmid}-disk-"))?
                .parse()
                .ok()
        })
    }

    /// `path` of a volume (`GET .../content/{volume}`), for the storage
    /// layouts a PVE installer and `pveceph` make:
    /// - LvmThinPlugin.pm filesystem_path: `/dev/<vg>/<name>`, VG `pve`;
    /// - Plugin.pm filesystem_path: `<path>/images/<vmid>/<name>`, `local` at
    ///   `/var/lib/vz`, other directory storages at `/mnt/<storage>`;
    /// - ZFSPoolPlugin.pm path: `/dev/zvol/<pool>/<name>`, pool `rpool/data`;
    /// - RBDPlugin.pm path: `rbd:<pool>/<name>:conf=/etc/pve/ceph.conf`, pool
    ///   named as the storage.
    pub fn path(self, storage: &str, volname: &str) -> String {
        let own = self.own_name(volname);
        let name = own.rsplit('/').next().unwrap_or(&own);
        match self {
            StorageType::LvmThin => format!("/dev/pve/{name}"),
            StorageType::Dir => {
                let root = if storage == "local" {
                    "/var/lib/vz".to_owned()
                } else {
                    format!("/mnt/{storage}")
                };
                format!("{root}/images/{own}")
            }
            StorageType::ZfsPool => format!("/dev/zvol/rpool/data/{name}"),
            StorageType::Rbd => format!("rbd:{storage}/{name}:conf=/etc/pve/ceph.conf"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StorageType::*;
    use super::*;

    #[test]
    fn linked_clones_are_named_as_each_plugin_names_them() {
        assert_eq!(
            LvmThin.linked_clone_volname("base-9000-disk-0", 201, 0),
            "vm-201-disk-0"
        );
        assert_eq!(
            Dir.linked_clone_volname("9000/base-9000-disk-0.qcow2", 201, 0),
            "9000/base-9000-disk-0.qcow2/201/vm-201-disk-0.qcow2"
        );
        assert_eq!(
            ZfsPool.linked_clone_volname("base-9000-disk-0", 201, 1),
            "base-9000-disk-0/vm-201-disk-1"
        );
        assert_eq!(
            Rbd.linked_clone_volname("base-9000-disk-0", 201, 0),
            "base-9000-disk-0/vm-201-disk-0"
        );
    }

    #[test]
    fn a_clone_of_a_linked_clone_names_only_its_own_base() {
        // A template made from a linked clone: its clones name it, not 9000.
        let base = "9000/base-9000-disk-0.qcow2/201/base-201-disk-0.qcow2";
        let clone = Dir.linked_clone_volname(base, 301, 0);
        assert_eq!(clone, "201/base-201-disk-0.qcow2/301/vm-301-disk-0.qcow2");
        assert!(Dir.is_linked_clone_of(&clone, base));
        assert!(!Dir.is_linked_clone_of(&clone, "9000/base-9000-disk-0.qcow2"));
        let zbase = "base-9000-disk-0/base-201-disk-0";
        let zclone = ZfsPool.linked_clone_volname(zbase, 301, 0);
        assert_eq!(zclone, "base-201-disk-0/vm-301-disk-0");
        assert!(ZfsPool.is_linked_clone_of(&zclone, zbase));
    }

    #[test]
    fn only_lvm_thin_hides_the_base_from_the_listing() {
        assert_eq!(LvmThin.listed_parent("vm-201-disk-0"), None);
        assert!(!LvmThin.is_linked_clone_of("vm-201-disk-0", "base-9000-disk-0"));
        assert_eq!(
            Dir.listed_parent("9000/base-9000-disk-0.qcow2/201/vm-201-disk-0.qcow2")
                .as_deref(),
            Some("../9000/base-9000-disk-0.qcow2")
        );
        assert_eq!(Dir.listed_parent("201/vm-201-disk-0.qcow2"), None);
        for t in [ZfsPool, Rbd] {
            assert_eq!(
                t.listed_parent("base-9000-disk-0/vm-201-disk-0").as_deref(),
                Some("base-9000-disk-0@__base__")
            );
            assert!(t.is_linked_clone_of("base-9000-disk-0/vm-201-disk-0", "base-9000-disk-0"));
            assert!(!t.is_linked_clone_of("vm-201-disk-0", "base-9000-disk-0"));
        }
    }

    #[test]
    fn disk_numbers_bases_and_paths() {
        assert_eq!(
            Dir.disk_number("9000/base-9000-disk-0.qcow2/201/vm-201-disk-3.qcow2", 201),
            Some(3)
        );
        assert_eq!(
            ZfsPool.disk_number("base-9000-disk-0/vm-201-disk-1", 201),
            Some(1)
        );
        assert_eq!(LvmThin.disk_number("vm-201-cloudinit", 201), None);
        assert!(Dir.is_base("201/base-201-disk-0.qcow2"));
        assert!(!Dir.is_base("9000/base-9000-disk-0.qcow2/201/vm-201-disk-0.qcow2"));
        assert!(!Rbd.is_base("base-9000-disk-0/vm-201-disk-0"));
        assert_eq!(
            Dir.path(
                "local",
                "9000/base-9000-disk-0.qcow2/201/vm-201-disk-0.qcow2"
            ),
            "/var/lib/vz/images/201/vm-201-disk-0.qcow2"
        );
        assert_eq!(
            LvmThin.path("local-lvm", "vm-201-disk-0"),
            "/dev/pve/vm-201-disk-0"
        );
        assert_eq!(
            ZfsPool.path("local-zfs", "base-9000-disk-0/vm-201-disk-0"),
            "/dev/zvol/rpool/data/vm-201-disk-0"
        );
        assert_eq!("zfspool".parse::<StorageType>(), Ok(ZfsPool));
        assert!("lvm".parse::<StorageType>().is_err());
    }
}
