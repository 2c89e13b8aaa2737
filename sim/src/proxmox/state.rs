//! The simulated cluster: one node, its storages and volumes, its VMs (a
//! config map each, as `/etc/pve/qemu-server/<vmid>.conf` holds), its tasks,
//! and the simulator's own records (faults, violations, requests: the core's).
//!
//! Everything sits behind one mutex, held briefly and never across an await
//! (`crate::core::state::Shared`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::access::{parse_token, Access, Token};
use super::admin::PveFault;
use super::plugins::StorageType;
use super::schema::{split_tags, valid_tag};
use super::tasks::Upid;
use super::ApiError;
use crate::core::guest::QemuGuest;
use crate::core::ops::{OperationState, Operations};
use crate::core::state::{Records, SimState};
use crate::core::util::unix_now;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Instant,
    Qemu,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub node: String,
    pub storage: String,
    /// `user@realm!tokenid=secret`.
    pub token: String,
    pub task_ms: u64,
    pub agent_ready_ms: u64,
    pub backend: Backend,
    pub base_image: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub extra_vms: u32,
    /// How long `/cluster/resources` lags behind a VM's config: pvestatd
    /// broadcasts guest statistics (name, status, template) every ten
    /// seconds, so a new VM is listed without them until then.
    pub stats_lag_ms: u64,
    /// Storages beyond (or replacing) the defaults, `--add-storage`.
    pub extra_storages: Vec<StorageSpec>,
}

/// `--add-storage ID=TYPE[:CONTENT]`: a storage as `storage.cfg` defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSpec {
    pub id: String,
    pub kind: StorageType,
    /// Comma-separated content types; `None`: the plugin's default.
    pub content: Option<String>,
}

impl std::str::FromStr for StorageSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<StorageSpec, String> {
        let (id, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("--add-storage {s}: use ID=TYPE[:CONTENT]"))?;
        let (kind, content) = match rest.split_once(':') {
            Some((k, c)) => (k, Some(c.to_owned())),
            None => (rest, None),
        };
        if id.is_empty() {
            return Err(format!("--add-storage {s}: the storage ID is empty"));
        }
        Ok(StorageSpec {
            id: id.to_owned(),
            kind: kind
                .parse()
                .map_err(|e| format!("--add-storage {s}: {e}"))?,
            content,
        })
    }
}

impl Options {
    /// `user@realm!tokenid`: what PVE puts in a task's UPID.
    pub fn token_user(&self) -> String {
        self.token
            .split_once('=')
            .map(|(u, _)| u.to_owned())
            .unwrap_or_else(|| self.token.clone())
    }

    pub fn task(&self) -> Duration {
        Duration::from_millis(self.task_ms)
    }

    pub fn stats_lag(&self) -> Duration {
        Duration::from_millis(self.stats_lag_ms)
    }
}

/// A guest's files, for the instant backend: path -> content. It lives on the
/// boot volume so clones and imports carry it like a real disk would.
pub use crate::core::guestfs::{debian_fs, GuestFs};

pub struct Volume {
    pub storage: String,
    /// After `storage:`, as the storage's plugin names it (`plugins.rs`):
    /// `base-9000-disk-0/vm-101-disk-0` for a linked clone on ZFS or RBD,
    /// a plain `vm-101-disk-0` for one on LVM-thin.
    pub name: String,
    pub vmid: Option<u32>,
    pub size: u64,
    pub format: String,
    /// `images` or `import` (PVE's content type).
    pub content: String,
    /// The simulator's own record of the base volume (volid) a linked clone
    /// was made from, whether or not the storage shows it (LVM-thin does not).
    pub origin: Option<String>,
    pub files: GuestFs,
    pub ctime: u64,
    /// QEMU backend: the qcow2 file and the file it is an overlay on.
    pub path: Option<PathBuf>,
    pub backing: Option<PathBuf>,
}

impl Volume {
    pub fn volid(&self) -> String {
        format!("{}:{}", self.storage, self.name)
    }
}

pub struct StorageDef {
    pub id: String,
    pub kind: StorageType,
    /// Comma-separated content types.
    pub content: String,
    pub total: u64,
}

impl StorageDef {
    pub fn holds(&self, content: &str) -> bool {
        self.content.split(',').any(|c| c == content)
    }
}

pub enum Power {
    Stopped,
    Running {
        since: Instant,
        /// QEMU backend: the real guest.
        guest: Option<Arc<QemuGuest>>,
    },
}

pub struct ExecRecord {
    pub started: Instant,
    pub exitcode: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

pub struct Vm {
    pub vmid: u32,
    /// Keys and values as in the VM's config file (`lock`, `template` too).
    pub config: BTreeMap<String, String>,
    pub power: Power,
    pub execs: BTreeMap<i64, ExecRecord>,
    pub next_exec_pid: i64,
    /// The statistics `/cluster/resources` shows (pve-manager
    /// `PVE/API2Tools.pm` extract_vm_stats reads them from the rrd data
    /// pvestatd broadcasts): none until the first broadcast after creation,
    /// then a snapshot at most `stats_lag` old.
    pub stats: Option<serde_json::Map<String, Value>>,
    pub stats_at: Instant,
}

impl Vm {
    pub fn new(vmid: u32, config: BTreeMap<String, String>) -> Vm {
        Vm {
            vmid,
            config,
            power: Power::Stopped,
            execs: BTreeMap::new(),
            next_exec_pid: 1000,
            stats: None,
            stats_at: Instant::now(),
        }
    }

    /// A VM that existed before anyone looked (seeded, or added through
    /// `/_sim/vms`): its statistics are already broadcast.
    pub fn known_long(mut self, lag: Duration) -> Vm {
        self.stats_at = Instant::now().checked_sub(lag).unwrap_or(self.stats_at);
        self
    }

    pub fn name(&self) -> String {
        self.config
            .get("name")
            .cloned()
            .unwrap_or_else(|| format!("VM {}", self.vmid))
    }

    pub fn is_template(&self) -> bool {
        self.config.get("template").is_some_and(|v| v == "1")
    }

    pub fn lock(&self) -> Option<&str> {
        self.config.get("lock").map(String::as_str)
    }

    pub fn running(&self) -> bool {
        matches!(self.power, Power::Running { .. })
    }

    pub fn uptime(&self) -> u64 {
        match &self.power {
            Power::Running { since, .. } => since.elapsed().as_secs(),
            Power::Stopped => 0,
        }
    }

    pub fn memory_mib(&self) -> u64 {
        self.config
            .get("memory")
            .and_then(|m| m.split(',').next())
            .map(|m| m.trim_start_matches("current="))
            .and_then(|m| m.parse().ok())
            .unwrap_or(512)
    }

    pub fn cores(&self) -> u64 {
        let c: u64 = self
            .config
            .get("cores")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let s: u64 = self
            .config
            .get("sockets")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        c * s
    }

    /// `agent: 1` or `agent: enabled=1,...`.
    pub fn agent_enabled(&self) -> bool {
        self.config.get("agent").is_some_and(|a| {
            a.split(',').any(|p| {
                let v = p.strip_prefix("enabled=").unwrap_or(p);
                matches!(v, "1" | "true" | "yes" | "on")
            })
        })
    }

    /// PVE's `digest`: a hash of the config file.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.config {
            h.update(format!("{k}: {v}\n"));
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        hex[..40].to_owned()
    }

    /// Volume ids of every disk-like key (including the cloud-init drive).
    pub fn disk_volids(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .filter(|(k, _)| is_drive_key(k))
            .filter_map(|(k, v)| drive_volid(v).map(|id| (k.clone(), id.to_owned())))
            .collect()
    }

    /// The volume the guest boots from: the first disk of `boot: order=`,
    /// else the first of scsi0/virtio0/sata0/ide0.
    pub fn boot_volid(&self) -> Option<String> {
        let order: Vec<String> = self
            .config
            .get("boot")
            .and_then(|b| b.split(',').find_map(|p| p.strip_prefix("order=")))
            .map(|o| o.split(';').map(str::to_owned).collect())
            .unwrap_or_default();
        let fallback = ["scsi0", "virtio0", "sata0", "ide0"].map(str::to_owned);
        order
            .iter()
            .chain(fallback.iter())
            .filter_map(|k| self.config.get(k))
            .filter(|v| !v.contains("media=cdrom"))
            .find_map(|v| drive_volid(v).map(str::to_owned))
    }
}

/// `scsi0`, `virtio1`, `ide2`, `efidisk0`, `unused0`...
pub fn is_drive_key(k: &str) -> bool {
    let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
    base.len() < k.len()
        && matches!(
            base,
            "scsi" | "virtio" | "sata" | "ide" | "efidisk" | "tpmstate" | "unused"
        )
}

/// The volume id of a drive value (`local-lvm:vm-1-disk-0,size=2G`), unless
/// it is `none` or a path.
pub fn drive_volid(v: &str) -> Option<&str> {
    let first = v.split(',').next()?;
    let file = first.strip_prefix("file=").unwrap_or(first);
    if file.contains(':') && !file.starts_with('/') {
        Some(file)
    } else {
        None
    }
}

/// PVE prints sizes as `2G`, `512M` or `4K`.
pub fn fmt_size(bytes: u64) -> String {
    const K: u64 = 1024;
    for (unit, f) in [
        ("T", K * K * K * K),
        ("G", K * K * K),
        ("M", K * K),
        ("K", K),
    ] {
        if bytes >= f && bytes.is_multiple_of(f) {
            return format!("{}{unit}", bytes / f);
        }
    }
    bytes.to_string()
}

/// `tags` as qemu-server stores them: split on `;`, `,` or whitespace
/// (pve-common `PVE/ParseUtils.pm` split_list), each checked against
/// `pve-tag` (pve-common `PVE/JSONSchema.pm` pve_verify_tag: "invalid
/// characters in tag", case-insensitive), then lower-cased, sorted and
/// de-duplicated (pve-guest-common `PVE/GuestHelpers.pm` get_unique_tags
/// with datacenter.cfg's default tag-style: not case-sensitive, sorted),
/// joined with `;`.
pub fn normalize_tags(v: &str) -> Result<String, String> {
    // check_format's `-list` dies "invalid format - $@" without the tag.
    if split_tags(v).any(|t| !valid_tag(t)) {
        return Err("invalid format - invalid characters in tag".to_owned());
    }
    let mut tags: Vec<String> = split_tags(v).map(str::to_lowercase).collect();
    tags.sort_unstable();
    tags.dedup();
    Ok(tags.join(";"))
}

/// The description as a later read gives it back. qemu-server writes it as
/// `#` comment lines on top of the config file, and nothing when it is empty
/// (or Perl-false `0`); reading joins the lines and strips trailing
/// whitespace (qemu-server `PVE/QemuServer.pm` write_vm_config and
/// parse_vm_config's `$finish_description`: `$descr =~ s/\s+$//`).
pub fn description_as_read_back(v: &str) -> Option<String> {
    if v.is_empty() || v == "0" {
        return None;
    }
    Some(v.trim_end().to_owned())
}

/// A drive's property string in PVE's order: the default key (the volume)
/// first, bare, then the other keys sorted (qemu-server
/// `PVE/QemuServer/Drive.pm` print_drive, pve-common `PVE/JSONSchema.pm`
/// print_property_string).
pub fn print_drive(v: &str) -> String {
    let mut file = None;
    // A bare value after the volume has no key (PVE would refuse it): it is
    // kept and sorted by its text.
    let mut keyed: Vec<(&str, Option<&str>)> = Vec::new();
    for part in v.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("file", f)) => file = Some(f),
            Some((k, val)) => keyed.push((k, Some(val))),
            None if file.is_none() => file = Some(part),
            None => keyed.push((part, None)),
        }
    }
    keyed.sort_by(|a, b| a.0.cmp(b.0));
    let mut out: Vec<String> = file.map(str::to_owned).into_iter().collect();
    out.extend(keyed.into_iter().map(|(k, val)| match val {
        Some(val) => format!("{k}={val}"),
        None => k.to_owned(),
    }));
    out.join(",")
}

pub struct Cluster {
    pub opts: Arc<Options>,
    /// Users, tokens, roles and ACLs: who may do what.
    pub access: Access,
    pub pstart: u32,
    pub booted: Instant,
    pub storages: Vec<StorageDef>,
    pub vms: BTreeMap<u32, Vm>,
    pub volumes: BTreeMap<String, Volume>,
    /// Worker tasks by UPID (the core's operations).
    pub tasks: Operations<Upid>,
    pub task_seq: u32,
    /// Faults, schema violations, the request log.
    pub sim: Records<PveFault>,
    /// The HTTPS certificate's SHA-256, as `GET /nodes` shows it.
    pub ssl_fingerprint: String,
    mac_seq: u32,
}

impl SimState for Cluster {
    type Fault = PveFault;

    fn records(&mut self) -> &mut Records<PveFault> {
        &mut self.sim
    }
}

impl OperationState<Upid> for Cluster {
    fn operations(&mut self) -> &mut Operations<Upid> {
        &mut self.tasks
    }
}

pub type Shared = crate::core::state::Shared<Cluster>;

const GIB: u64 = 1024 * 1024 * 1024;

impl Cluster {
    pub fn new(opts: Arc<Options>) -> Cluster {
        let storages = storages(&opts);
        // The start-up token is not privilege-separated: `root@pam!golden`
        // may do what root may, as a fresh cluster's admin token.
        let start_token = parse_token(&opts.token, false).unwrap_or(Token {
            id: opts.token_user(),
            secret: String::new(),
            privsep: false,
        });
        let mut cl = Cluster {
            access: Access::new(start_token),
            pstart: (unix_now() % 0x00FF_FFFF) as u32,
            opts,
            booted: Instant::now(),
            storages,
            vms: BTreeMap::new(),
            volumes: BTreeMap::new(),
            tasks: Operations::default(),
            task_seq: 0,
            sim: Records::default(),
            ssl_fingerprint: String::new(),
            mac_seq: 0,
        };
        cl.seed_source_template();
        for i in 0..cl.opts.extra_vms {
            cl.seed_extra_vm(10_000 + i, i);
        }
        cl
    }

    /// Template 9000 `debian-12-base`, the source golden clones.
    fn seed_source_template(&mut self) {
        let st = self.opts.storage.clone();
        let kind = self.storage_type(&st);
        let format = kind.default_format();
        let disk_name = kind
            .disk_volname(9000, 0, format)
            .replacen("vm-", "base-", 1);
        let ci_name = kind.cloudinit_volname(9000, format);
        let cfg: BTreeMap<String, String> = [
            ("name", "debian-12-base".to_owned()),
            ("template", "1".into()),
            ("agent", "1".into()),
            ("memory", "1024".into()),
            ("cores", "2".into()),
            ("net0", "virtio=BC:24:11:00:90:00,bridge=vmbr0".into()),
            ("scsihw", "virtio-scsi-single".into()),
            ("scsi0", format!("{st}:{disk_name},size=2G")),
            ("ide2", format!("{st}:{ci_name},media=cdrom")),
            ("serial0", "socket".into()),
            ("vga", "serial0".into()),
            ("boot", "order=scsi0".into()),
            ("ostype", "l26".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut disk = self.new_volume(&st, &disk_name, Some(9000), 2 * GIB, format);
        disk.files = debian_fs("debian-12-base");
        disk.path = self.opts.base_image.clone();
        self.add_volume(disk);
        let ci = self.new_volume(&st, &ci_name, Some(9000), 4 * 1024 * 1024, format);
        self.add_volume(ci);
        let lag = self.opts.stats_lag();
        self.vms.insert(9000, Vm::new(9000, cfg).known_long(lag));
    }

    /// Unrelated VMs that make the cluster big: lookups must cope.
    fn seed_extra_vm(&mut self, vmid: u32, i: u32) {
        let st = self.opts.storage.clone();
        let template = i % 10 == 9;
        let kind = self.storage_type(&st);
        let format = kind.default_format();
        let mut disk = kind.disk_volname(vmid, 0, format);
        if template {
            disk = disk.replacen("vm-", "base-", 1);
        }
        let mut cfg: BTreeMap<String, String> = BTreeMap::new();
        cfg.insert("name".into(), format!("vm-{vmid}"));
        cfg.insert("memory".into(), "2048".into());
        cfg.insert("cores".into(), "2".into());
        cfg.insert("scsi0".into(), format!("{st}:{disk},size=8G"));
        cfg.insert(
            "net0".into(),
            format!("virtio={},bridge=vmbr0", self.new_mac()),
        );
        cfg.insert("ostype".into(), "l26".into());
        if template {
            cfg.insert("template".into(), "1".into());
        }
        match i % 4 {
            1 => cfg.insert("tags".into(), "prod;web".into()),
            2 => cfg.insert("tags".into(), "db;staging".into()),
            _ => None,
        };
        let mut vol = self.new_volume(&st, &disk, Some(vmid), 8 * GIB, format);
        vol.files = debian_fs(&format!("vm-{vmid}"));
        self.add_volume(vol);
        let lag = self.opts.stats_lag();
        self.vms.insert(vmid, Vm::new(vmid, cfg).known_long(lag));
    }

    pub fn new_volume(
        &self,
        storage: &str,
        name: &str,
        vmid: Option<u32>,
        size: u64,
        format: &str,
    ) -> Volume {
        Volume {
            storage: storage.to_owned(),
            name: name.to_owned(),
            vmid,
            size,
            format: format.to_owned(),
            content: "images".into(),
            origin: None,
            files: GuestFs::new(),
            ctime: unix_now(),
            path: None,
            backing: None,
        }
    }

    pub fn add_volume(&mut self, v: Volume) {
        self.volumes.insert(v.volid(), v);
    }

    pub fn storage(&self, id: &str) -> Result<&StorageDef, ApiError> {
        self.storages
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| ApiError::new(500, format!("storage '{id}' does not exist")))
    }

    /// The plugin behind a storage; volumes only live on defined storages,
    /// so an unknown id (never reached) reads as the default LVM-thin.
    pub fn storage_type(&self, id: &str) -> StorageType {
        self.storage(id)
            .map(|s| s.kind)
            .unwrap_or(StorageType::LvmThin)
    }

    /// A fresh MAC in Proxmox's `BC:24:11` range.
    pub fn new_mac(&mut self) -> String {
        self.mac_seq += 1;
        let n = self.mac_seq;
        format!(
            "BC:24:11:{:02X}:{:02X}:{:02X}",
            (n >> 16) & 0xFF,
            (n >> 8) & 0xFF,
            n & 0xFF
        )
    }

    pub fn vm(&self, vmid: u32) -> Result<&Vm, ApiError> {
        self.vms.get(&vmid).ok_or_else(|| self.no_such_vm(vmid))
    }

    pub fn vm_mut(&mut self, vmid: u32) -> Result<&mut Vm, ApiError> {
        let err = self.no_such_vm(vmid);
        self.vms.get_mut(&vmid).ok_or(err)
    }

    fn no_such_vm(&self, vmid: u32) -> ApiError {
        ApiError::new(
            500,
            format!(
                "Configuration file 'nodes/{}/qemu-server/{vmid}.conf' does not exist",
                self.opts.node
            ),
        )
    }

    /// The first free disk number of `vmid` on a storage, as
    /// get_next_vm_diskname (pve-storage Plugin.pm) finds it from the
    /// storage's listing of the VM's volumes.
    pub fn free_disk_number(&self, storage: &str, vmid: u32) -> u32 {
        let kind = self.storage_type(storage);
        let taken: Vec<u32> = self
            .volumes
            .values()
            .filter(|v| v.storage == storage && v.vmid == Some(vmid))
            .filter_map(|v| kind.disk_number(&v.name, vmid))
            .collect();
        (0..).find(|n| !taken.contains(n)).unwrap_or_default()
    }

    /// A new disk's volume name for `vmid` on `storage`.
    pub fn free_disk_name(&self, storage: &str, vmid: u32, format: &str) -> String {
        let n = self.free_disk_number(storage, vmid);
        self.storage_type(storage).disk_volname(vmid, n, format)
    }

    /// VMs with a disk made as a linked clone of a base volume of `vmid`: the
    /// simulator's own record (`/_sim/vms`), which PVE may not have (LVM-thin).
    pub fn linked_clones_of(&self, vmid: u32) -> Vec<u32> {
        let is_base_of_vmid = |origin: &str| {
            self.volumes
                .get(origin)
                .is_some_and(|base| base.vmid == Some(vmid))
        };
        let mut out: Vec<u32> = self
            .volumes
            .values()
            .filter(|v| v.origin.as_deref().is_some_and(is_base_of_vmid))
            .filter_map(|v| v.vmid)
            .filter(|id| *id != vmid)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// pve-storage `PVE/Storage.pm` volume_is_base_and_used: a base volume is
    /// in use when a volume in its storage's listing names it as its base
    /// (parse_volname's basename and basevmid). Never on LVM-thin, whose
    /// volume names do not carry the base (see the note there).
    pub fn volume_is_base_and_used(&self, volid: &str) -> bool {
        let Some(base) = self.volumes.get(volid) else {
            return false;
        };
        let kind = self.storage_type(&base.storage);
        kind.is_base(&base.name)
            && self
                .volumes
                .values()
                .filter(|v| v.storage == base.storage)
                .any(|v| kind.is_linked_clone_of(&v.name, &base.name))
    }

    /// Removes a VM and every volume it owns (files too, unless another
    /// volume still uses the file as its backing).
    pub fn remove_vm(&mut self, vmid: u32) {
        if let Some(vm) = self.vms.remove(&vmid) {
            if let Power::Running { guest: Some(g), .. } = vm.power {
                g.kill_soon();
            }
        }
        let owned: Vec<String> = self
            .volumes
            .iter()
            .filter(|(_, v)| v.vmid == Some(vmid) && v.content == "images")
            .map(|(k, _)| k.clone())
            .collect();
        for id in owned {
            self.remove_volume(&id);
        }
        // Seed and serial log of a QEMU guest.
        let _ = std::fs::remove_dir_all(self.opts.state_dir.join("vms").join(vmid.to_string()));
    }

    pub fn remove_volume(&mut self, volid: &str) {
        let Some(vol) = self.volumes.remove(volid) else {
            return;
        };
        if let Some(path) = vol.path {
            let still_backing = self
                .volumes
                .values()
                .any(|v| v.backing.as_ref() == Some(&path));
            let is_base_image = self.opts.base_image.as_ref() == Some(&path);
            if !still_backing && !is_base_image && path.starts_with(&self.opts.state_dir) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// `/_sim/vms`.
    pub fn vm_json(&self, vm: &Vm) -> Value {
        let disks: Vec<String> = vm.disk_volids().into_iter().map(|(_, id)| id).collect();
        json!({
            "vmid": vm.vmid,
            "name": vm.config.get("name"),
            "template": vm.is_template(),
            "status": if vm.running() { "running" } else { "stopped" },
            "lock": vm.lock(),
            "tags": vm.config.get("tags"),
            "description": vm.config.get("description"),
            "config": vm.config,
            "disks": disks,
            "linked_clones": self.linked_clones_of(vm.vmid),
        })
    }
}

/// The node's storages: PVE's installer makes `local` (dir, content
/// `iso,vztmpl,backup`, here with `import` for download-url) and `local-lvm`
/// (lvmthin, `images,rootdir`); `--storage` names the images storage (lvmthin unless
/// `--add-storage` says otherwise) and `--add-storage` adds or replaces one.
fn storages(opts: &Options) -> Vec<StorageDef> {
    let mut out = vec![
        StorageDef {
            id: opts.storage.clone(),
            kind: StorageType::LvmThin,
            content: StorageType::LvmThin.default_content().into(),
            total: 512 * GIB,
        },
        StorageDef {
            id: "local".into(),
            kind: StorageType::Dir,
            content: "iso,vztmpl,import,backup".into(),
            total: 100 * GIB,
        },
    ];
    for spec in &opts.extra_storages {
        let def = StorageDef {
            id: spec.id.clone(),
            kind: spec.kind,
            content: spec
                .content
                .clone()
                .unwrap_or_else(|| spec.kind.default_content().into()),
            total: 512 * GIB,
        };
        match out.iter_mut().find(|s| s.id == spec.id) {
            Some(old) => *old = def,
            None => out.push(def),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Arc<Options> {
        Arc::new(Options {
            node: "pve".into(),
            storage: "local-lvm".into(),
            token: "root@pam!golden=s3cret".into(),
            task_ms: 10,
            agent_ready_ms: 10,
            backend: Backend::Instant,
            base_image: None,
            state_dir: std::env::temp_dir().join("golden-sim-unit"),
            extra_vms: 20,
            stats_lag_ms: 0,
            extra_storages: vec![
                "vmstore=dir".parse().unwrap(),
                "tank=zfspool".parse().unwrap(),
            ],
        })
    }

    #[test]
    fn tags_are_normalised_like_pve() {
        assert_eq!(
            normalize_tags("web;prod,web  golden").unwrap(),
            "golden;prod;web"
        );
        assert_eq!(normalize_tags(";;").unwrap(), "");
        assert_eq!(
            normalize_tags("golden-family.x_1+2").unwrap(),
            "golden-family.x_1+2"
        );
        assert_eq!(
            normalize_tags("Prod;web;PROD\tTeam-A").unwrap(),
            "prod;team-a;web",
            "upper case is accepted, folded, sorted and de-duplicated"
        );
        assert!(normalize_tags("a=b").is_err());
        assert!(normalize_tags("-lead").is_err());
    }

    #[test]
    fn descriptions_read_back_as_the_config_file_keeps_them() {
        assert_eq!(
            description_as_read_back("notes\n\n```json\n{}\n```\n  \n").as_deref(),
            Some("notes\n\n```json\n{}\n```")
        );
        assert_eq!(
            description_as_read_back("  indented\r\nkept").as_deref(),
            Some("  indented\r\nkept")
        );
        assert_eq!(description_as_read_back(""), None);
        assert_eq!(
            description_as_read_back("0"),
            None,
            "Perl-false: not written"
        );
    }

    #[test]
    fn drives_print_with_the_volume_first_and_the_rest_sorted() {
        assert_eq!(
            print_drive("local-lvm:vm-1-disk-0,ssd=1,discard=on,size=2G,iothread=1"),
            "local-lvm:vm-1-disk-0,discard=on,iothread=1,size=2G,ssd=1"
        );
        assert_eq!(
            print_drive("media=cdrom,file=local-lvm:vm-1-cloudinit"),
            "local-lvm:vm-1-cloudinit,media=cdrom"
        );
        assert_eq!(print_drive("none,media=cdrom"), "none,media=cdrom");
    }

    #[test]
    fn sizes_print_like_pve() {
        assert_eq!(fmt_size(2 * GIB), "2G");
        assert_eq!(fmt_size(4 * 1024 * 1024), "4M");
        assert_eq!(fmt_size(1536), "1536");
    }

    #[test]
    fn seeds_the_source_template_and_extra_vms() {
        let cl = Cluster::new(opts());
        let t = cl.vm(9000).unwrap();
        assert!(t.is_template() && t.agent_enabled());
        assert_eq!(
            t.boot_volid().as_deref(),
            Some("local-lvm:base-9000-disk-0")
        );
        assert_eq!(cl.vms.len(), 21);
        assert_eq!(cl.vms.values().filter(|v| v.is_template()).count(), 3);
        assert!(cl
            .vms
            .values()
            .any(|v| v.config.get("tags").is_some_and(|t| t == "prod;web")));
    }

    #[test]
    fn linked_clones_are_found_by_their_base() {
        let mut cl = Cluster::new(opts());
        let mut v = cl.new_volume("local-lvm", "vm-101-disk-0", Some(101), GIB, "raw");
        v.origin = Some("local-lvm:base-9000-disk-0".into());
        cl.add_volume(v);
        assert_eq!(cl.linked_clones_of(9000), vec![101]);
        assert!(
            !cl.volume_is_base_and_used("local-lvm:base-9000-disk-0"),
            "LVM-thin names no base: PVE sees no user"
        );
        assert_eq!(
            cl.free_disk_name("local-lvm", 101, "raw"),
            "vm-101-disk-1",
            "disk-0 is taken by the linked clone's volume"
        );
        cl.remove_vm(101);
        assert!(cl.linked_clones_of(9000).is_empty());
    }

    #[test]
    fn a_base_named_by_a_clone_is_in_use_on_dir_and_zfs() {
        let mut cl = Cluster::new(opts());
        for (st, base, clone, format) in [
            (
                "vmstore",
                "9000/base-9000-disk-0.qcow2",
                "9000/base-9000-disk-0.qcow2/201/vm-201-disk-0.qcow2",
                "qcow2",
            ),
            (
                "tank",
                "base-9000-disk-0",
                "base-9000-disk-0/vm-201-disk-0",
                "raw",
            ),
        ] {
            cl.add_volume(cl.new_volume(st, base, Some(9000), GIB, format));
            let volid = format!("{st}:{base}");
            assert!(!cl.volume_is_base_and_used(&volid));
            cl.add_volume(cl.new_volume(st, clone, Some(201), GIB, format));
            assert!(cl.volume_is_base_and_used(&volid), "{volid}");
        }
    }

    #[test]
    fn storages_are_the_defaults_plus_the_added_ones() {
        let cl = Cluster::new(opts());
        let kinds: Vec<(&str, &str, &str)> = cl
            .storages
            .iter()
            .map(|s| (s.id.as_str(), s.kind.type_name(), s.content.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("local-lvm", "lvmthin", "images,rootdir"),
                ("local", "dir", "iso,vztmpl,import,backup"),
                ("vmstore", "dir", "images,rootdir"),
                ("tank", "zfspool", "images,rootdir"),
            ]
        );
        let spec: StorageSpec = "local=dir:images,iso,import".parse().unwrap();
        assert_eq!(spec.content.as_deref(), Some("images,iso,import"));
        assert!("ceph=cephfs".parse::<StorageSpec>().is_err());
        assert!("ceph".parse::<StorageSpec>().is_err());
    }
}
