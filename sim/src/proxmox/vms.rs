//! `/nodes/{node}/qemu/...` and `/cluster/resources`: VMs and templates, with
//! PVE's rules (locks, templates, linked clones) and its asynchronous tasks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::guest;
use super::schema::{parse_bool, Params};
use super::state::{
    description_as_read_back, drive_volid, fmt_size, is_drive_key, normalize_tags, print_drive,
    Backend, Cluster, Power, Shared, Vm,
};
use super::tasks::{self, TaskSpec};
use super::ApiError;
use crate::core::guest::QemuGuest;

const GIB: u64 = 1024 * 1024 * 1024;

/// Config keys PVE returns as JSON numbers (the schema's integer, number and
/// boolean keys of `GET .../config`); everything else is a string.
const INT_KEYS: &[&str] = &[
    "balloon",
    "cores",
    "cpuunits",
    "migrate_speed",
    "shares",
    "smp",
    "snaptime",
    "sockets",
    "vcpus",
    "acpi",
    "allow-ksm",
    "autostart",
    "ciupgrade",
    "freeze",
    "keephugepages",
    "kvm",
    "localtime",
    "numa",
    "onboot",
    "protection",
    "reboot",
    "tablet",
    "tdf",
    "template",
];
const NUM_KEYS: &[&str] = &["cpulimit", "migrate_downtime"];

/// Parameters that steer an API call and are not stored in the config.
const NOT_CONFIG: &[&str] = &[
    "node",
    "vmid",
    "start",
    "storage",
    "pool",
    "archive",
    "force",
    "unique",
    "delete",
    "digest",
    "skiplock",
    "revert",
    "background_delay",
    "import-working-storage",
    "live-restore",
    "bwlimit",
];

fn first<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.get(k).and_then(|v| v.first()).map(String::as_str)
}

fn flag(p: &Params, k: &str) -> Option<bool> {
    first(p, k).and_then(parse_bool)
}

pub fn parse_vmid(name: &str, v: &str) -> Result<u32, ApiError> {
    v.parse::<u32>()
        .ok()
        .filter(|n| (100..=999_999_999).contains(n))
        .ok_or_else(|| {
            ApiError::param(
                name,
                format!("invalid format - value '{v}' does not look like a valid VM ID"),
            )
        })
}

/// `skiplock` is root@pam's alone (qemu-server `PVE/API2/Qemu.pm`:
/// `raise_param_exc({ skiplock => "Only root may use this option." }) if
/// $skiplock && $authuser ne 'root@pam'`), and every caller here is a token,
/// which is never `root@pam`, even root's own.
fn no_skiplock(params: &Params) -> Result<(), ApiError> {
    if flag(params, "skiplock").unwrap_or(false) {
        return Err(ApiError::param(
            "skiplock",
            "Only root may use this option.",
        ));
    }
    Ok(())
}

/// pve-guest-common `PVE/AbstractConfig.pm` check_lock: `die
/// $class->guest_type() . " is locked ($conf->{lock})\n"`, the guest type
/// being `VM`, without its id.
fn lock_message(vm: &Vm) -> Option<String> {
    vm.lock().map(|l| format!("VM is locked ({l})"))
}

/// A lock checked before any task: a plain 500.
fn locked(vm: &Vm) -> Result<(), ApiError> {
    match lock_message(vm) {
        Some(m) => Err(ApiError::new(500, m)),
        None => Ok(()),
    }
}

/// A lock checked inside the worker (vm_start, _do_vm_stop, destroy_vm):
/// the API answers a task, and the task fails.
fn locked_in_task(cl: &Cluster, vmid: u32) -> Result<(), String> {
    let vm = cl.vm(vmid).map_err(|e| e.message)?;
    lock_message(vm).map_or(Ok(()), Err)
}

fn config_json(vm: &Vm) -> Value {
    let mut m = Map::new();
    for (k, v) in &vm.config {
        let val = if INT_KEYS.contains(&k.as_str()) {
            v.parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| json!(v))
        } else if NUM_KEYS.contains(&k.as_str()) {
            v.parse::<f64>()
                .map(Value::from)
                .unwrap_or_else(|_| json!(v))
        } else {
            json!(v)
        };
        m.insert(k.clone(), val);
    }
    m.insert("digest".into(), json!(vm.digest()));
    Value::Object(m)
}

fn disk_size(cl: &Cluster, vm: &Vm) -> u64 {
    vm.boot_volid()
        .and_then(|id| cl.volumes.get(&id))
        .map(|v| v.size)
        .unwrap_or(0)
}

/// The fields `GET /nodes/{node}/qemu` and `/cluster/resources` share.
fn vm_summary(cl: &Cluster, vm: &Vm) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("vmid".into(), json!(vm.vmid));
    m.insert("name".into(), json!(vm.name()));
    m.insert(
        "status".into(),
        json!(if vm.running() { "running" } else { "stopped" }),
    );
    m.insert("maxmem".into(), json!(vm.memory_mib() * 1024 * 1024));
    m.insert("maxdisk".into(), json!(disk_size(cl, vm)));
    m.insert(
        "mem".into(),
        json!(if vm.running() {
            vm.memory_mib() * 1024 * 1024 / 4
        } else {
            0
        }),
    );
    m.insert("cpu".into(), json!(0));
    m.insert("uptime".into(), json!(vm.uptime()));
    m.insert("netin".into(), json!(0));
    m.insert("netout".into(), json!(0));
    m.insert("diskread".into(), json!(0));
    m.insert("diskwrite".into(), json!(0));
    if vm.is_template() {
        m.insert("template".into(), json!(1));
    }
    if let Some(t) = vm.config.get("tags").filter(|t| !t.is_empty()) {
        m.insert("tags".into(), json!(t));
    }
    if let Some(l) = vm.lock() {
        m.insert("lock".into(), json!(l));
    }
    m
}

pub fn list(cl: &Cluster) -> Value {
    Value::Array(
        cl.vms
            .values()
            .map(|vm| {
                let mut m = vm_summary(cl, vm);
                m.insert("cpus".into(), json!(vm.cores()));
                Value::Object(m)
            })
            .collect(),
    )
}

/// The statistics a VM shows in `/cluster/resources`: pvestatd's last
/// broadcast, refreshed once it is `stats_lag` old; none yet for a VM
/// younger than that.
fn broadcast_stats(cl: &mut Cluster) {
    let lag = cl.opts.stats_lag();
    let due: Vec<u32> = cl
        .vms
        .values()
        .filter(|vm| vm.stats_at.elapsed() >= lag)
        .map(|vm| vm.vmid)
        .collect();
    for vmid in due {
        let Some(vm) = cl.vms.get(&vmid) else {
            continue;
        };
        let mut stats = vm_summary(cl, vm);
        for live in ["vmid", "tags", "lock"] {
            stats.remove(live);
        }
        stats.insert("template".into(), json!(i32::from(vm.is_template())));
        stats.insert("maxcpu".into(), json!(vm.cores()));
        stats.insert("disk".into(), json!(0));
        if let Some(vm) = cl.vms.get_mut(&vmid) {
            vm.stats = Some(stats);
            vm.stats_at = std::time::Instant::now();
        }
    }
}

/// One `qemu/<vmid>` entry (pve-manager `PVE/API2/Cluster.pm` resources,
/// `PVE/API2Tools.pm` extract_vm_stats): id, vmid, node and type from the
/// cluster's VM list, status `unknown` and nothing else until statistics
/// arrive; `lock` and `tags` come from the config itself
/// (PVE::Cluster::get_guest_config_properties), so they never lag.
fn vm_resource(node: &str, vm: &Vm) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(format!("qemu/{}", vm.vmid)));
    m.insert("vmid".into(), json!(vm.vmid));
    m.insert("node".into(), json!(node));
    m.insert("type".into(), json!("qemu"));
    m.insert("status".into(), json!("unknown"));
    if let Some(stats) = &vm.stats {
        m.extend(stats.clone());
    }
    if let Some(t) = vm.config.get("tags").filter(|t| !t.is_empty()) {
        m.insert("tags".into(), json!(t));
    }
    if let Some(l) = vm.lock() {
        m.insert("lock".into(), json!(l));
    }
    Value::Object(m)
}

pub fn resources(cl: &mut Cluster, kind: Option<&str>) -> Value {
    broadcast_stats(cl);
    let cl = &*cl;
    let node = &cl.opts.node;
    let mut out = Vec::new();
    if matches!(kind, None | Some("node")) {
        out.push(json!({
            "id": format!("node/{node}"), "type": "node", "node": node, "status": "online",
            "maxcpu": 2, "maxmem": 16 * GIB, "mem": 2 * GIB, "cpu": 0.01,
            "maxdisk": 100 * GIB, "disk": 10 * GIB, "uptime": cl.booted.elapsed().as_secs(),
            "level": "", "cgroup-mode": 2,
        }));
    }
    if matches!(kind, None | Some("vm")) {
        out.extend(cl.vms.values().map(|vm| vm_resource(node, vm)));
    }
    if matches!(kind, None | Some("storage")) {
        for s in &cl.storages {
            out.push(json!({
                "id": format!("storage/{node}/{}", s.id), "type": "storage", "storage": s.id,
                "node": node, "status": "available", "content": s.content, "plugintype": s.kind.type_name(),
                "maxdisk": s.total, "disk": used_bytes(cl, &s.id),
            }));
        }
    }
    Value::Array(out)
}

pub fn used_bytes(cl: &Cluster, storage: &str) -> u64 {
    cl.volumes
        .values()
        .filter(|v| v.storage == storage)
        .map(|v| v.size)
        .sum()
}

/// `GET /cluster/nextid` (pve-manager `PVE/API2/Cluster.pm` nextid): the
/// id comes back as a JSON *string*. The schema says integer, but the
/// loop's `$i` is used as a hash key (`$idlist->{$i}`) before it is
/// returned, which makes Perl's JSON encoder write it as a string; a
/// `vmid` parameter is returned as it arrived, a string too.
pub fn nextid(cl: &Cluster, params: &Params) -> Result<Value, ApiError> {
    if let Some(v) = first(params, "vmid") {
        let id = parse_vmid("vmid", v)?;
        if cl.vms.contains_key(&id) {
            return Err(ApiError::param("vmid", format!("VM {id} already exists")));
        }
        return Ok(json!(id.to_string()));
    }
    let id = (100..).find(|id| !cl.vms.contains_key(id)).unwrap_or(100);
    Ok(json!(id.to_string()))
}

pub fn config_get(cl: &Cluster, vmid: u32) -> Result<Value, ApiError> {
    Ok(config_json(cl.vm(vmid)?))
}

pub fn status_current(cl: &Cluster, vmid: u32) -> Result<Value, ApiError> {
    let vm = cl.vm(vmid)?;
    let mut m = vm_summary(cl, vm);
    m.insert("cpus".into(), json!(vm.cores()));
    m.insert(
        "qmpstatus".into(),
        json!(if vm.running() { "running" } else { "stopped" }),
    );
    m.insert("agent".into(), json!(i32::from(vm.agent_enabled())));
    m.insert("ha".into(), json!({"managed": 0}));
    if vm.running() {
        m.insert("pid".into(), json!(40_000 + vm.vmid % 20_000));
        // PVE 9.1 ships QEMU 10.1 (the simulator's PVE_VERSION).
        m.insert("running-qemu".into(), json!("10.1.2"));
        m.insert("running-machine".into(), json!("pc-i440fx-10.1+pve0"));
    }
    if vm.config.contains_key("serial0") {
        m.insert("serial".into(), json!(1));
    }
    Ok(Value::Object(m))
}

/// A disk file the QEMU backend must make before a VM can use the volume:
/// an overlay on `backing`, or an empty image of `size` bytes.
pub struct DiskFile {
    pub path: PathBuf,
    pub backing: Option<PathBuf>,
    pub size: u64,
}

pub async fn make_disk_files(files: Vec<DiskFile>) -> Result<(), String> {
    for f in files {
        guest::make_disk_file(&f).await?;
    }
    Ok(())
}

/// Where the QEMU backend keeps a volume's file.
fn volume_path(cl: &Cluster, volid: &str) -> PathBuf {
    cl.opts
        .state_dir
        .join("images")
        .join(format!("{}.qcow2", volid.replace([':', '/'], "_")))
}

/// Allocates the volumes a drive value asks for (`<storage>:<GiB>`,
/// `<storage>:0,import-from=<volid>`, `<storage>:cloudinit`) and returns the
/// value to store, as PVE rewrites it (`<volid>,...,size=<n>`).
fn allocate_drive(
    cl: &mut Cluster,
    vmid: u32,
    key: &str,
    value: &str,
    files: &mut Vec<DiskFile>,
) -> Result<String, ApiError> {
    let mut parts: Vec<&str> = value.split(',').collect();
    let file = parts[0]
        .strip_prefix("file=")
        .unwrap_or(parts[0])
        .to_owned();
    let import = parts
        .iter()
        .find_map(|p| p.strip_prefix("import-from="))
        .map(str::to_owned);
    parts.retain(|p| !p.starts_with("import-from=") && !p.starts_with("size="));
    let rest: Vec<&str> = parts[1..].to_vec();
    let Some((storage, what)) = file.split_once(':') else {
        return Ok(value.to_owned());
    };
    let storage = storage.to_owned();
    let new_size: Option<u64> = what.parse::<f64>().ok().map(|g| (g * GIB as f64) as u64);
    if what == "cloudinit" {
        let kind = cl.storage(&storage)?.kind;
        let format = kind.default_format();
        let name = kind.cloudinit_volname(vmid, format);
        let vol = cl.new_volume(&storage, &name, Some(vmid), 4 * 1024 * 1024, format);
        cl.add_volume(vol);
        return Ok(format!("{storage}:{name},media=cdrom"));
    }
    let Some(mut size) = new_size else {
        // An existing volume being attached.
        if !cl.volumes.contains_key(&file) && !value.contains("media=cdrom") && file != "none" {
            return Err(ApiError::param(
                key,
                format!("volume '{file}' does not exist"),
            ));
        }
        return Ok(value.to_owned());
    };
    let st = cl.storage(&storage)?;
    if !st.holds("images") {
        return Err(ApiError::new(
            500,
            format!("storage '{storage}' does not support vm images"),
        ));
    }
    // qemu-server create_disks: the storage's default format
    // (PVE::Storage::storage_default_format).
    let format = st.kind.default_format();
    let name = cl.free_disk_name(&storage, vmid, format);
    let volid = format!("{storage}:{name}");
    let mut vol = cl.new_volume(&storage, &name, Some(vmid), size, format);
    let qemu = cl.opts.backend == Backend::Qemu;
    let path = volume_path(cl, &volid);
    let mut backing = None;
    if let Some(src) = import {
        let Some(source) = cl.volumes.get(&src) else {
            return Err(ApiError::param(
                key,
                format!("import-from: volume '{src}' does not exist"),
            ));
        };
        size = size.max(source.size);
        vol.size = size;
        vol.files = source.files.clone();
        backing = source.path.clone();
        if qemu && backing.is_none() {
            return Err(ApiError::new(
                500,
                format!("import-from: volume '{src}' has no image file here"),
            ));
        }
    }
    if qemu {
        vol.path = Some(path.clone());
        vol.backing = backing.clone();
        files.push(DiskFile {
            path,
            backing,
            size,
        });
    }
    cl.add_volume(vol);
    let mut out = volid;
    for r in rest {
        out.push(',');
        out.push_str(r);
    }
    out.push_str(&format!(",size={}", fmt_size(size)));
    Ok(out)
}

/// Applies settable keys to a config: tags normalised, description bounded,
/// new drives allocated. Used by create and by config updates.
fn apply_settings(
    cl: &mut Cluster,
    vmid: u32,
    config: &mut BTreeMap<String, String>,
    params: &Params,
    files: &mut Vec<DiskFile>,
) -> Result<(), ApiError> {
    for (k, values) in params {
        if NOT_CONFIG.contains(&k.as_str()) {
            continue;
        }
        let v = values.first().cloned().unwrap_or_default();
        let v = match k.as_str() {
            "tags" => normalize_tags(&v).map_err(|why| ApiError::param("tags", why))?,
            "description" if v.chars().count() > 8192 => {
                return Err(ApiError::param(
                    "description",
                    "value may only be 8192 characters long",
                ));
            }
            "description" => match description_as_read_back(&v) {
                Some(d) => d,
                None => {
                    config.remove(k);
                    continue;
                }
            },
            "template" => continue,
            key if is_drive_key(key) && !key.starts_with("unused") => {
                print_drive(&allocate_drive(cl, vmid, key, &v, files)?)
            }
            key if is_net_key(key) => with_mac(cl, &v),
            _ => v,
        };
        if k == "tags" && v.is_empty() {
            config.remove(k);
        } else {
            config.insert(k.clone(), v);
        }
    }
    Ok(())
}

fn is_net_key(k: &str) -> bool {
    k.strip_prefix("net")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// `virtio,bridge=vmbr0` gets a MAC, as PVE assigns one: `virtio=BC:24:11:..`.
fn with_mac(cl: &mut Cluster, v: &str) -> String {
    let mut parts: Vec<String> = v.split(',').map(str::to_owned).collect();
    let has_mac = parts
        .iter()
        .any(|p| p.contains('=') && p.matches(':').count() == 5);
    if !has_mac {
        if let Some(model) = parts.iter_mut().find(|p| !p.contains('=')) {
            *model = format!("{model}={}", cl.new_mac());
        } else if let Some(i) = parts.iter().position(|p| p.starts_with("model=")) {
            let model = parts[i].trim_start_matches("model=").to_owned();
            parts[i] = format!("{model}={}", cl.new_mac());
        }
    }
    parts.join(",")
}

pub fn create(shared: &Shared, cl: &mut Cluster, params: &Params) -> Result<Value, ApiError> {
    let vmid = parse_vmid(
        "vmid",
        first(params, "vmid")
            .ok_or_else(|| ApiError::param("vmid", "property is missing and it is not optional"))?,
    )?;
    // qemu-server `PVE/API2/Qemu.pm` create_vm: `die "$emsg $@"` around
    // create_and_lock_config, whose PVE::Cluster::check_vmid_unused (pve-cluster)
    // dies "VM $vmid already exists on node '$node'".
    if cl.vms.contains_key(&vmid) {
        return Err(ApiError::new(
            500,
            format!(
                "unable to create VM {vmid} - VM {vmid} already exists on node '{}'",
                cl.opts.node
            ),
        ));
    }
    let mut config = BTreeMap::new();
    let mut files = Vec::new();
    if let Err(e) = apply_settings(cl, vmid, &mut config, params, &mut files) {
        cl.remove_vm(vmid);
        return Err(e);
    }
    config.insert("lock".into(), "create".into());
    cl.vms.insert(vmid, Vm::new(vmid, config));
    let start = flag(params, "start").unwrap_or(false);
    let s2 = shared.clone();
    let work = async move {
        make_disk_files(files).await?;
        if let Ok(vm) = s2.lock().vm_mut(vmid) {
            vm.config.remove("lock");
        }
        if start {
            guest::boot(&s2, vmid).await?;
        }
        Ok(())
    };
    let upid = tasks::spawn(
        shared,
        cl,
        TaskSpec {
            kind: "qmcreate",
            id: &vmid.to_string(),
            duration: cl.opts.task(),
            first_line: format!("create VM {vmid}"),
        },
        work,
        move |cl| cl.remove_vm(vmid),
    );
    Ok(json!(upid))
}

pub fn config_set(
    shared: &Shared,
    cl: &mut Cluster,
    vmid: u32,
    params: &Params,
    post: bool,
) -> Result<Value, ApiError> {
    let vm = cl.vm(vmid)?;
    no_skiplock(params)?;
    // qemu-server update_vm_api checks the lock in `$updatefn`: PUT runs it
    // in the request (a 500), POST in its `qmconfig` worker (a failed task).
    if post {
        if let Some(why) = lock_message(vm) {
            return Ok(json!(config_task(
                shared,
                cl,
                vmid,
                async move { Err(why) }
            )));
        }
    }
    locked(vm)?;
    if let Some(d) = first(params, "digest") {
        if d != vm.digest() {
            return Err(ApiError::new(
                500,
                "detected modified configuration - file changed by other user? Try again.",
            ));
        }
    }
    // qemu-server update_vm_api: `die "no options specified\n" if
    // !$delete_str && !$revert_str && !scalar(keys %$param)`, after taking
    // out node, vmid, digest, skiplock and the other steering parameters.
    let options = params
        .keys()
        .filter(|k| {
            !["node", "vmid", "digest", "skiplock", "background_delay"].contains(&k.as_str())
        })
        .count();
    if options == 0 {
        return Err(ApiError::new(500, "no options specified"));
    }
    let mut config = vm.config.clone();
    let mut files = Vec::new();
    if let Some(del) = first(params, "delete") {
        for key in del.split([',', ';', ' ']).filter(|k| !k.is_empty()) {
            if let Some(old) = config.remove(key) {
                // A deleted cloud-init drive goes; other disks become unused.
                if let Some(volid) = drive_volid(&old).map(str::to_owned) {
                    if is_cloudinit(&volid) {
                        cl.remove_volume(&volid);
                    } else if is_drive_key(key) && cl.volumes.contains_key(&volid) {
                        let n = (0..)
                            .find(|n| !config.contains_key(&format!("unused{n}")))
                            .unwrap_or(0);
                        config.insert(format!("unused{n}"), volid);
                    }
                }
            }
        }
    }
    apply_settings(cl, vmid, &mut config, params, &mut files)?;
    cl.vm_mut(vmid)?.config = config;
    // POST is asynchronous: always a task (update_vm_api's fork_worker),
    // which also makes the new disks' files.
    if post {
        return Ok(json!(config_task(shared, cl, vmid, make_disk_files(files))));
    }
    if !files.is_empty() {
        tokio::spawn(make_disk_files(files));
    }
    Ok(Value::Null)
}

/// The `qmconfig` worker of `POST .../config`.
fn config_task(
    shared: &Shared,
    cl: &mut Cluster,
    vmid: u32,
    work: impl std::future::Future<Output = Result<(), String>> + Send + 'static,
) -> String {
    tasks::spawn(
        shared,
        cl,
        TaskSpec {
            kind: "qmconfig",
            id: &vmid.to_string(),
            duration: Duration::ZERO,
            first_line: format!("update VM {vmid}"),
        },
        work,
        |_| {},
    )
}

/// A clone under way: the new VM exists (locked `clone`); `run` makes its
/// disk files.
pub struct CloneJob {
    pub newid: u32,
    files: Vec<DiskFile>,
}

impl CloneJob {
    pub async fn run(self) -> Result<(), String> {
        make_disk_files(self.files).await
    }
}

/// Everything PVE checks before the clone task starts, then the new VM with
/// its new volumes (full copies, or linked clones of a template's base).
pub fn prepare_clone(
    cl: &mut Cluster,
    vmid: u32,
    newid: u32,
    name: Option<String>,
    full: bool,
    description: Option<String>,
    storage: Option<String>,
) -> Result<CloneJob, ApiError> {
    let src = cl.vm(vmid)?;
    // qemu-server `PVE/API2/Qemu.pm` clone_vm, `$load_and_check` before the
    // worker: the source's lock, then the target's config file.
    locked(src)?;
    if cl.vms.contains_key(&newid) {
        return Err(ApiError::new(
            500,
            format!("unable to create VM {newid}: config file already exists"),
        ));
    }
    let template = src.is_template();
    if !full && !template {
        return Err(ApiError::new(
            500,
            "Linked clone feature is not supported for a non-template VM",
        ));
    }
    if !full && storage.is_some() {
        return Err(ApiError::new(
            500,
            "parameter 'storage' not allowed for linked clones",
        ));
    }
    if let Some(s) = &storage {
        cl.storage(s)?;
    }
    let src_name = src.name();
    let mut config = src.config.clone();
    let disks = src.disk_volids();
    for k in ["template", "lock", "digest", "vmgenid", "meta"] {
        config.remove(k);
    }
    config.insert(
        "name".into(),
        name.unwrap_or_else(|| format!("Copy-of-VM-{src_name}")),
    );
    // `if ($param->{description})`: an empty one keeps the source's.
    if let Some(d) = description.as_deref().and_then(description_as_read_back) {
        config.insert("description".into(), d);
    }
    let nets: Vec<String> = config
        .keys()
        .filter(|k| k.starts_with("net"))
        .cloned()
        .collect();
    for k in nets {
        let mac = cl.new_mac();
        let v = &config[&k];
        let rewritten: Vec<String> = v
            .split(',')
            .map(|p| match p.split_once('=') {
                Some((model, m)) if m.len() == 17 && m.matches(':').count() == 5 => {
                    format!("{model}={mac}")
                }
                Some(("macaddr", _)) => format!("macaddr={mac}"),
                _ => p.to_owned(),
            })
            .collect();
        config.insert(k, rewritten.join(","));
    }
    let qemu = cl.opts.backend == Backend::Qemu;
    let mut files = Vec::new();
    for (key, volid) in disks {
        let Some(source) = cl.volumes.get(&volid) else {
            continue;
        };
        let target_storage = storage.clone().unwrap_or_else(|| source.storage.clone());
        let (name, format, origin) = clone_volname(cl, source, &target_storage, newid, full)?;
        // Two disks of one VM must not get the same name: reserve as we go.
        let mut vol = cl.new_volume(&target_storage, &name, Some(newid), source.size, &format);
        vol.files = source.files.clone();
        vol.origin = origin;
        if qemu && !is_cloudinit(&volid) {
            let path = volume_path(cl, &vol.volid());
            vol.path = Some(path.clone());
            vol.backing = source.path.clone();
            if source.path.is_none() {
                return Err(ApiError::new(
                    500,
                    format!(
                        "volume '{volid}' has no image file (start golden-sim with --base-image)"
                    ),
                ));
            }
            files.push(DiskFile {
                path,
                backing: source.path.clone(),
                size: source.size,
            });
        }
        let old = config[&key].clone();
        let tail: Vec<&str> = old.split(',').skip(1).collect();
        let mut value = vol.volid();
        for t in tail {
            value.push(',');
            value.push_str(t);
        }
        config.insert(key, print_drive(&value));
        cl.add_volume(vol);
    }
    config.insert("lock".into(), "clone".into());
    cl.vms.insert(newid, Vm::new(newid, config));
    Ok(CloneJob { newid, files })
}

/// A cloud-init drive's volume (`vm-<vmid>-cloudinit[.<fmt>]`).
fn is_cloudinit(volid: &str) -> bool {
    volid
        .rsplit('/')
        .next()
        .is_some_and(|f| f.split('.').next().unwrap_or(f).ends_with("-cloudinit"))
}

/// The new volume's name, format and origin for one disk of a clone
/// (qemu-server `PVE/QemuServer.pm` clone_disk): the cloud-init drive is made
/// anew; a full clone gets a fresh disk in the target's default format (the
/// source's, when the target offers it); a linked clone is the source
/// storage's `clone_image` (see `plugins.rs`), which needs a base volume.
fn clone_volname(
    cl: &Cluster,
    source: &super::state::Volume,
    target: &str,
    newid: u32,
    full: bool,
) -> Result<(String, String, Option<String>), ApiError> {
    let kind = cl.storage(target)?.kind;
    let (valid, default) = kind.formats();
    let format = if valid.contains(&source.format.as_str()) {
        source.format.clone()
    } else {
        default.to_owned()
    };
    if is_cloudinit(&source.volid()) {
        return Ok((kind.cloudinit_volname(newid, &format), format, None));
    }
    if full {
        return Ok((cl.free_disk_name(target, newid, &format), format, None));
    }
    if !kind.is_base(&source.name) {
        // LvmThinPlugin.pm / Plugin.pm / ZFSPoolPlugin.pm clone_image.
        return Err(ApiError::new(500, "clone_image only works on base images"));
    }
    let n = cl.free_disk_number(target, newid);
    let name = kind.linked_clone_volname(&source.name, newid, n);
    // Plugin.pm clone_image makes a qcow2 overlay whatever the base's format.
    let format = if kind == super::plugins::StorageType::Dir {
        "qcow2".to_owned()
    } else {
        format
    };
    Ok((name, format, Some(source.volid())))
}

pub fn finish_clone(cl: &mut Cluster, newid: u32) {
    if let Ok(vm) = cl.vm_mut(newid) {
        vm.config.remove("lock");
    }
}

pub fn clone(
    shared: &Shared,
    cl: &mut Cluster,
    vmid: u32,
    params: &Params,
) -> Result<Value, ApiError> {
    let newid = parse_vmid(
        "newid",
        first(params, "newid").ok_or_else(|| {
            ApiError::param("newid", "property is missing and it is not optional")
        })?,
    )?;
    let template = cl.vm(vmid)?.is_template();
    let full = flag(params, "full").unwrap_or(!template);
    let job = prepare_clone(
        cl,
        vmid,
        newid,
        first(params, "name").map(str::to_owned),
        full,
        first(params, "description").map(str::to_owned),
        first(params, "storage").map(str::to_owned),
    )?;
    let s2 = shared.clone();
    let work = async move {
        job.run().await?;
        finish_clone(&mut s2.lock(), newid);
        Ok(())
    };
    let upid = tasks::spawn(
        shared,
        cl,
        TaskSpec {
            kind: "qmclone",
            id: &vmid.to_string(),
            duration: cl.opts.task(),
            first_line: format!(
                "create {} clone of VM {vmid} as VM {newid}",
                if full { "full" } else { "linked" }
            ),
        },
        work,
        move |cl| cl.remove_vm(newid),
    );
    Ok(json!(upid))
}

pub fn template(shared: &Shared, cl: &mut Cluster, vmid: u32) -> Result<Value, ApiError> {
    let vm = cl.vm(vmid)?;
    locked(vm)?;
    // qemu-server PVE/API2/Qemu.pm template, before the worker.
    if vm.is_template() {
        return Err(ApiError::new(
            500,
            "you can't convert a template to a template",
        ));
    }
    if vm.running() {
        return Err(ApiError::new(
            500,
            "you can't convert a VM to template if VM is running",
        ));
    }
    let s2 = shared.clone();
    let work = async move {
        let mut cl = s2.lock();
        let vm = cl.vm(vmid).map_err(|e| e.message)?;
        if vm.running() {
            return Err("you can't convert a VM to template if VM is running".to_owned());
        }
        let disks = vm.disk_volids();
        let mut renames = Vec::new();
        for (key, volid) in disks {
            if is_cloudinit(&volid) {
                continue;
            }
            let Some(mut vol) = cl.volumes.remove(&volid) else {
                continue;
            };
            let (prefix, own) = match vol.name.rsplit_once('/') {
                Some((p, o)) => (Some(p.to_owned()), o.to_owned()),
                None => (None, vol.name.clone()),
            };
            if let Some(rest) = own.strip_prefix("vm-") {
                let own = format!("base-{rest}");
                vol.name = match prefix {
                    Some(p) => format!("{p}/{own}"),
                    None => own,
                };
            }
            renames.push((key, volid, vol.volid()));
            cl.add_volume(vol);
        }
        let vm = cl.vm_mut(vmid).map_err(|e| e.message)?;
        for (key, old, new) in renames {
            if let Some(v) = vm.config.get_mut(&key) {
                *v = v.replacen(&old, &new, 1);
            }
        }
        vm.config.insert("template".into(), "1".into());
        Ok(())
    };
    let upid = tasks::spawn(
        shared,
        cl,
        TaskSpec {
            kind: "qmtemplate",
            id: &vmid.to_string(),
            duration: cl.opts.task() / 2,
            first_line: format!("convert VM {vmid} to a template"),
        },
        work,
        |_| {},
    );
    Ok(json!(upid))
}

pub fn start(
    shared: &Shared,
    cl: &mut Cluster,
    vmid: u32,
    params: &Params,
) -> Result<Value, ApiError> {
    // qemu-server `PVE/API2/Qemu.pm` vm_start checks nothing before its
    // worker: the lock (PVE::QemuServer::vm_start), "already running" and
    // the template (vm_start_nolock) fail the task.
    cl.vm(vmid)?;
    no_skiplock(params)?;
    // The worker's first checks see the VM as it is now; the task's time is
    // the boot.
    let refused = check_startable(cl, vmid).err();
    let s2 = shared.clone();
    let upid = tasks::spawn(
        shared,
        cl,
        TaskSpec {
            kind: "qmstart",
            id: &vmid.to_string(),
            duration: cl.opts.task(),
            first_line: format!("start VM {vmid}"),
        },
        async move {
            if let Some(why) = refused {
                return Err(why);
            }
            check_startable(&s2.lock(), vmid)?;
            guest::boot(&s2, vmid).await
        },
        |_| {},
    );
    Ok(json!(upid))
}

/// What vm_start and vm_start_nolock refuse, in their order.
fn check_startable(cl: &Cluster, vmid: u32) -> Result<(), String> {
    locked_in_task(cl, vmid)?;
    let vm = cl.vm(vmid).map_err(|e| e.message)?;
    if vm.running() {
        return Err(format!("VM {vmid} already running"));
    }
    if vm.is_template() {
        return Err("you can't start a vm if it's a template".to_owned());
    }
    Ok(())
}

/// qemu-server `PVE/QemuServer.pm` _do_vm_stop: a VM that is not running is
/// left alone (the task ends OK); a running one is refused while locked.
fn check_stoppable(cl: &Cluster, vmid: u32) -> Result<bool, String> {
    let vm = cl.vm(vmid).map_err(|e| e.message)?;
    if !vm.running() {
        return Ok(false);
    }
    locked_in_task(cl, vmid)?;
    Ok(true)
}

fn set_stopped(cl: &mut Cluster, vmid: u32) -> Option<std::sync::Arc<QemuGuest>> {
    let vm = cl.vms.get_mut(&vmid)?;
    let old = std::mem::replace(&mut vm.power, Power::Stopped);
    vm.execs.clear();
    match old {
        Power::Running { guest, .. } => guest,
        Power::Stopped => None,
    }
}

pub fn stop(
    shared: &Shared,
    cl: &mut Cluster,
    vmid: u32,
    params: &Params,
) -> Result<Value, ApiError> {
    cl.vm(vmid)?;
    no_skiplock(params)?;
    let refused = check_stoppable(cl, vmid).err();
    let s2 = shared.clone();
    let work = async move {
        if let Some(why) = refused {
            return Err(why);
        }
        if !check_stoppable(&s2.lock(), vmid)? {
            return Ok(());
        }
        let guest = set_stopped(&mut s2.lock(), vmid);
        if let Some(g) = guest {
            g.kill().await;
        }
        Ok(())
    };
    let upid = tasks::spawn(
        shared,
        cl,
        TaskSpec {
            kind: "qmstop",
            id: &vmid.to_string(),
            duration: cl.opts.task(),
            first_line: format!("stop VM {vmid}"),
        },
        work,
        |_| {},
    );
    Ok(json!(upid))
}

pub fn shutdown(
    shared: &Shared,
    cl: &mut Cluster,
    vmid: u32,
    params: &Params,
) -> Result<Value, ApiError> {
    let vm = cl.vm(vmid)?;
    no_skiplock(params)?;
    // No running check: the worker's vm_stop returns at once for a VM that
    // is not running, and the task ends OK (qemu-server vm_stop_nolock).
    let use_agent = vm.agent_enabled();
    let timeout = first(params, "timeout")
        .and_then(|t| t.parse().ok())
        .unwrap_or(60);
    let force = flag(params, "forceStop").unwrap_or(false);
    let refused = check_stoppable(cl, vmid).err();
    let s2 = shared.clone();
    let work = async move {
        if let Some(why) = refused {
            return Err(why);
        }
        if !check_stoppable(&s2.lock(), vmid)? {
            return Ok(());
        }
        let guest = match &s2.lock().vm(vmid).map_err(|e| e.message)?.power {
            Power::Running { guest, .. } => guest.clone(),
            Power::Stopped => return Ok(()),
        };
        if let Some(g) = guest {
            if !g
                .shutdown(use_agent, Duration::from_secs(timeout), force)
                .await
            {
                return Err("VM quit/powerdown failed - got timeout".to_owned());
            }
        }
        set_stopped(&mut s2.lock(), vmid);
        Ok(())
    };
    let upid = tasks::spawn(
        shared,
        cl,
        TaskSpec {
            kind: "qmshutdown",
            id: &vmid.to_string(),
            duration: cl.opts.task(),
            first_line: format!("shutdown VM {vmid}"),
        },
        work,
        |_| {},
    );
    Ok(json!(upid))
}

/// `POST .../status/reboot` (qemu-server `PVE/API2/Qemu.pm` vm_reboot): a VM
/// that is not running is refused at once, 500 `VM <id> not running`; the
/// worker shuts the guest down as shutdown does (PVE::QemuServer::vm_reboot,
/// _do_vm_stop, the lock checked) and qmeventd starts it again.
pub fn reboot(
    shared: &Shared,
    cl: &mut Cluster,
    vmid: u32,
    params: &Params,
) -> Result<Value, ApiError> {
    let vm = cl.vm(vmid)?;
    if !vm.running() {
        return Err(ApiError::new(500, format!("VM {vmid} not running")));
    }
    let use_agent = vm.agent_enabled();
    let timeout = first(params, "timeout")
        .and_then(|t| t.parse().ok())
        .unwrap_or(60);
    let refused = check_stoppable(cl, vmid).err();
    let s2 = shared.clone();
    let work = async move {
        if let Some(why) = refused {
            return Err(why);
        }
        let guest = match &s2.lock().vm(vmid).map_err(|e| e.message)?.power {
            Power::Running { guest, .. } => guest.clone(),
            Power::Stopped => return Ok(()),
        };
        if let Some(g) = guest {
            if !g
                .shutdown(use_agent, Duration::from_secs(timeout), false)
                .await
            {
                return Err("VM quit/powerdown failed - got timeout".to_owned());
            }
        }
        set_stopped(&mut s2.lock(), vmid);
        guest::boot(&s2, vmid).await
    };
    let upid = tasks::spawn(
        shared,
        cl,
        TaskSpec {
            kind: "qmreboot",
            id: &vmid.to_string(),
            duration: cl.opts.task(),
            first_line: format!("requesting reboot of VM {vmid}"),
        },
        work,
        |_| {},
    );
    Ok(json!(upid))
}

/// `PUT .../resize` (qemu-server `PVE/API2/Qemu.pm` resize_vm): every check
/// runs in the `resize` worker, so the API answers a task that fails with
/// qemu-server's words; the new size is written with the drive
/// (print_drive). `size` is `[+]N[.N][KMGT]` (the schema's pattern).
pub fn resize(
    shared: &Shared,
    cl: &mut Cluster,
    vmid: u32,
    params: &Params,
) -> Result<Value, ApiError> {
    let vm = cl.vm(vmid)?;
    no_skiplock(params)?;
    let disk = first(params, "disk").unwrap_or_default().to_owned();
    let size = first(params, "size").unwrap_or_default().to_owned();
    let digest = first(params, "digest").map(str::to_owned);
    let outcome = resized_drive(cl, vm, digest.as_deref(), &disk, &size);
    let first_line = format!("update VM {vmid}: resize --disk {disk} --size {size}");
    let s2 = shared.clone();
    let work = async move {
        let Some((volid, bytes)) = outcome? else {
            return Ok(());
        };
        let mut cl = s2.lock();
        if let Some(vol) = cl.volumes.get_mut(&volid) {
            vol.size = bytes;
        }
        let vm = cl.vm_mut(vmid).map_err(|e| e.message)?;
        if let Some(value) = vm.config.get(&disk) {
            let kept: Vec<&str> = value
                .split(',')
                .filter(|p| !p.starts_with("size="))
                .collect();
            let value = format!("{},size={}", kept.join(","), fmt_size(bytes));
            vm.config.insert(disk, print_drive(&value));
        }
        Ok(())
    };
    let upid = tasks::spawn(
        shared,
        cl,
        TaskSpec {
            kind: "resize",
            id: &vmid.to_string(),
            duration: cl.opts.task() / 2,
            first_line,
        },
        work,
        |_| {},
    );
    Ok(json!(upid))
}

/// resize_vm's `$updatefn` checks, in its order: the volume and its new
/// size in bytes, `None` when the size is already that, or why not.
fn resized_drive(
    cl: &Cluster,
    vm: &Vm,
    digest: Option<&str>,
    disk: &str,
    size: &str,
) -> Result<Option<(String, u64)>, String> {
    if digest.is_some_and(|d| d != vm.digest()) {
        return Err("checksum mismatch (file change by other user?)".into());
    }
    if let Some(m) = lock_message(vm) {
        return Err(m);
    }
    let value = vm
        .config
        .get(disk)
        .ok_or_else(|| format!("disk '{disk}' does not exist"))?;
    let volid =
        drive_volid(value).ok_or_else(|| format!("disk '{disk}' has no associated volume"))?;
    if value.split(',').any(|p| p == "media=cdrom") {
        return Err("you can't resize a cdrom".into());
    }
    let current = cl
        .volumes
        .get(volid)
        .map(|v| v.size)
        .ok_or_else(|| format!("Could not determine current size of volume '{volid}'"))?;
    let wanted = parse_resize(size, current).ok_or("internal error")?;
    if wanted < current {
        return Err("shrinking disks is not supported".into());
    }
    Ok((wanted != current).then(|| (volid.to_owned(), wanted)))
}

/// `[+]N[.N][KMGT]` in bytes; a leading `+` grows `current` by that much.
fn parse_resize(size: &str, current: u64) -> Option<u64> {
    let (grow, rest) = match size.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, size),
    };
    let (num, factor) = match rest.chars().last()? {
        'K' => (&rest[..rest.len() - 1], 1u64 << 10),
        'M' => (&rest[..rest.len() - 1], 1 << 20),
        'G' => (&rest[..rest.len() - 1], 1 << 30),
        'T' => (&rest[..rest.len() - 1], 1 << 40),
        _ => (rest, 1),
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let bytes = (num.parse::<f64>().ok()? * factor as f64) as u64;
    Some(if grow { current + bytes } else { bytes })
}

/// `PUT .../cloudinit` (qemu-server `PVE/API2/Qemu.pm` cloudinit_update):
/// regenerates the cloud-init drive, synchronously, refusing a locked VM.
/// Here the drive's contents are made at each start from the config, so
/// there is nothing else to do.
pub fn cloudinit_update(cl: &Cluster, vmid: u32) -> Result<Value, ApiError> {
    locked(cl.vm(vmid)?)?;
    Ok(Value::Null)
}

pub fn delete(
    shared: &Shared,
    cl: &mut Cluster,
    vmid: u32,
    params: &Params,
) -> Result<Value, ApiError> {
    let vm = cl.vm(vmid)?;
    no_skiplock(params)?;
    // qemu-server PVE/API2/Qemu.pm destroy_vm, early checks, before any task:
    // PVE::AbstractConfig::check_protection (pve-guest-common) dies with
    // "$err_msg - protection mode enabled", $err_msg = "can't remove VM $vmid".
    if vm.config.get("protection").is_some_and(|v| v == "1") {
        return Err(ApiError::new(
            500,
            format!("can't remove VM {vmid} - protection mode enabled"),
        ));
    }
    if vm.running() {
        return Err(ApiError::new(
            500,
            format!("VM {vmid} is running - destroy failed"),
        ));
    }
    let s2 = shared.clone();
    let refused = locked_in_task(cl, vmid).err();
    let work = async move {
        match refused {
            Some(why) => Err(why),
            None => destroy(&mut s2.lock(), vmid),
        }
    };
    let upid = tasks::spawn(
        shared,
        cl,
        TaskSpec {
            kind: "qmdestroy",
            id: &vmid.to_string(),
            duration: cl.opts.task() / 2,
            first_line: format!("destroy VM {vmid}"),
        },
        work,
        |_| {},
    );
    Ok(json!(upid))
}

/// The destroy task's work (qemu-server `PVE/QemuServer.pm` destroy_vm): a
/// locked VM stays (the task fails); a template first checks each non-cdrom
/// drive with PVE::Storage::volume_is_base_and_used and dies "base volume
/// '<volid>' is still in use by linked cloned" (true on dir, ZFS and RBD;
/// never on LVM-thin, where the base goes and its thin clones live on).
fn destroy(cl: &mut Cluster, vmid: u32) -> Result<(), String> {
    // PVE::QemuServer::destroy_vm checks the lock in the worker.
    locked_in_task(cl, vmid)?;
    let vm = cl.vm(vmid).map_err(|e| e.message)?;
    if vm.running() {
        return Err(format!("VM {vmid} is running - destroy failed"));
    }
    if vm.is_template() {
        let drives: Vec<String> = vm
            .config
            .iter()
            .filter(|(k, v)| is_drive_key(k) && !v.contains("media=cdrom"))
            .filter_map(|(_, v)| drive_volid(v).map(str::to_owned))
            .collect();
        if let Some(used) = drives.iter().find(|id| cl.volume_is_base_and_used(id)) {
            return Err(format!(
                "base volume '{used}' is still in use by linked cloned"
            ));
        }
    }
    cl.remove_vm(vmid);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::state::Options;
    use super::*;

    fn cluster() -> Cluster {
        cluster_on("local-lvm", &[])
    }

    fn cluster_with_lag(stats_lag_ms: u64) -> Cluster {
        cluster_built("local-lvm", &[], stats_lag_ms)
    }

    /// Template 9000 on `storage`, with `extra` storages (`ID=TYPE`).
    fn cluster_on(storage: &str, extra: &[&str]) -> Cluster {
        cluster_built(storage, extra, 0)
    }

    fn cluster_built(storage: &str, extra: &[&str], stats_lag_ms: u64) -> Cluster {
        Cluster::new(Arc::new(Options {
            node: "pve".into(),
            storage: storage.into(),
            token: "root@pam!golden=s".into(),
            task_ms: 0,
            agent_ready_ms: 0,
            backend: Backend::Instant,
            base_image: None,
            state_dir: std::env::temp_dir().join("golden-sim-unit"),
            extra_vms: 0,
            stats_lag_ms,
            extra_storages: extra.iter().map(|s| s.parse().unwrap()).collect(),
        }))
    }

    /// A full clone of 9000 as `vmid`, made a template as qemu-server's
    /// template call does (the worker's work, run inline).
    fn golden_template(cl: &mut Cluster, vmid: u32) {
        prepare_clone(cl, 9000, vmid, Some("build".into()), true, None, None).unwrap();
        finish_clone(cl, vmid);
        let vm = cl.vm_mut(vmid).unwrap();
        vm.config.insert("template".into(), "1".into());
        let key = "scsi0".to_owned();
        let volid = drive_volid(&vm.config[&key]).unwrap().to_owned();
        let mut vol = cl.volumes.remove(&volid).unwrap();
        vol.name = vol
            .name
            .replacen(&format!("vm-{vmid}-"), &format!("base-{vmid}-"), 1);
        let new = vol.volid();
        cl.add_volume(vol);
        let vm = cl.vm_mut(vmid).unwrap();
        let value = vm.config[&key].replacen(&volid, &new, 1);
        vm.config.insert(key, value);
    }

    fn linked_clone(cl: &mut Cluster, template: u32, newid: u32) {
        prepare_clone(cl, template, newid, Some("app".into()), false, None, None).unwrap();
        finish_clone(cl, newid);
    }

    #[test]
    fn full_and_linked_clones_get_pve_volume_names() {
        let mut cl = cluster();
        prepare_clone(&mut cl, 9000, 101, Some("a".into()), true, None, None).unwrap();
        prepare_clone(&mut cl, 9000, 102, Some("b".into()), false, None, None).unwrap();
        assert_eq!(
            cl.vm(101).unwrap().config["scsi0"],
            "local-lvm:vm-101-disk-0,size=2G"
        );
        assert_eq!(
            cl.vm(102).unwrap().config["scsi0"],
            "local-lvm:vm-102-disk-0,size=2G",
            "an LVM-thin linked clone does not name its base"
        );
        assert_eq!(
            cl.vm(102).unwrap().config["ide2"],
            "local-lvm:vm-102-cloudinit,media=cdrom"
        );
        assert_eq!(cl.vm(102).unwrap().lock(), Some("clone"));
        assert_ne!(
            cl.vm(102).unwrap().config["net0"],
            cl.vm(9000).unwrap().config["net0"]
        );
        assert_eq!(cl.linked_clones_of(9000), vec![102]);
        let err = prepare_clone(&mut cl, 9000, 101, None, true, None, None)
            .err()
            .unwrap();
        assert_eq!(
            err.message,
            "unable to create VM 101: config file already exists"
        );
        let err = prepare_clone(&mut cl, 101, 103, None, false, None, None)
            .err()
            .unwrap();
        assert_eq!(err.status, 500);
    }

    #[test]
    fn clones_on_dir_zfs_and_rbd_name_their_base() {
        for (st, kind, scsi0, ide2) in [
            (
                "vmstore",
                "dir",
                "vmstore:9000/base-9000-disk-0.qcow2/102/vm-102-disk-0.qcow2,size=2G",
                "vmstore:102/vm-102-cloudinit.qcow2,media=cdrom",
            ),
            (
                "tank",
                "zfspool",
                "tank:base-9000-disk-0/vm-102-disk-0,size=2G",
                "tank:vm-102-cloudinit,media=cdrom",
            ),
            (
                "ceph",
                "rbd",
                "ceph:base-9000-disk-0/vm-102-disk-0,size=2G",
                "ceph:vm-102-cloudinit,media=cdrom",
            ),
        ] {
            let mut cl = cluster_on(st, &[&format!("{st}={kind}")]);
            linked_clone(&mut cl, 9000, 102);
            assert_eq!(cl.vm(102).unwrap().config["scsi0"], scsi0);
            assert_eq!(cl.vm(102).unwrap().config["ide2"], ide2);
        }
    }

    #[test]
    fn a_template_with_linked_clones_is_not_destroyed_where_the_base_is_named() {
        for (st, kind, base) in [
            ("vmstore", "dir", "vmstore:101/base-101-disk-0.qcow2"),
            ("tank", "zfspool", "tank:base-101-disk-0"),
            ("ceph", "rbd", "ceph:base-101-disk-0"),
        ] {
            let mut cl = cluster_on(st, &[&format!("{st}={kind}")]);
            golden_template(&mut cl, 101);
            linked_clone(&mut cl, 101, 102);
            let err = destroy(&mut cl, 101).unwrap_err();
            assert_eq!(
                err,
                format!("base volume '{base}' is still in use by linked cloned")
            );
            assert!(cl.vms.contains_key(&101), "the template stays");
            assert!(cl.volumes.contains_key(base));
            destroy(&mut cl, 102).unwrap();
            destroy(&mut cl, 101).unwrap();
            assert!(!cl.vms.contains_key(&101));
            assert!(!cl
                .volumes
                .keys()
                .any(|k| k.contains("-101-") || k.contains("-102-")));
        }
    }

    #[test]
    fn on_lvm_thin_the_template_goes_and_its_linked_clone_stays() {
        let mut cl = cluster();
        golden_template(&mut cl, 101);
        linked_clone(&mut cl, 101, 102);
        destroy(&mut cl, 101).unwrap();
        assert!(!cl.vms.contains_key(&101));
        assert!(!cl.volumes.contains_key("local-lvm:base-101-disk-0"));
        let disk = &cl.volumes["local-lvm:vm-102-disk-0"];
        assert_eq!(
            disk.files.get("/etc/hostname"),
            Some(&b"debian-12-base\n".to_vec())
        );
    }

    #[test]
    fn nextid_is_the_lowest_free_id() {
        let mut cl = cluster();
        assert_eq!(nextid(&cl, &Params::new()).unwrap(), json!("100"));
        cl.vms.insert(100, Vm::new(100, BTreeMap::new()));
        assert_eq!(nextid(&cl, &Params::new()).unwrap(), json!("101"));
        let mut free = Params::new();
        free.insert("vmid".into(), vec!["105".into()]);
        assert_eq!(nextid(&cl, &free).unwrap(), json!("105"));
        let mut p = Params::new();
        p.insert("vmid".into(), vec!["100".into()]);
        assert_eq!(nextid(&cl, &p).unwrap_err().status, 400);
    }

    #[test]
    fn config_renders_numbers_as_pve_does() {
        let cl = cluster();
        let c = config_get(&cl, 9000).unwrap();
        assert_eq!(c["cores"], json!(2));
        assert_eq!(c["template"], json!(1));
        assert_eq!(c["memory"], json!("1024"));
        assert_eq!(c["digest"].as_str().unwrap().len(), 40);
    }

    fn params(kv: &[(&str, &str)]) -> Params {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
            .collect()
    }

    /// Waits for a task and returns its exit status.
    async fn exit_of(shared: &Shared, upid: &Value) -> String {
        use super::super::tasks::TaskView;
        use crate::core::ops::OperationState;
        let id = upid.as_str().unwrap().to_owned();
        for _ in 0..200 {
            if let Some(e) = shared
                .lock()
                .operations()
                .get(&id)
                .and_then(|t| t.exitstatus().map(str::to_owned))
            {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("task {id} never ended");
    }

    #[tokio::test]
    async fn pve_refusals_the_client_must_meet() {
        let shared = Shared::new(cluster());
        // An empty config write (qemu-server update_vm_api).
        let err = config_set(
            &shared,
            &mut shared.lock(),
            9000,
            &params(&[("node", "pve")]),
            false,
        )
        .unwrap_err();
        assert_eq!(
            (err.status, err.message.as_str()),
            (500, "no options specified")
        );
        // skiplock is root@pam's, never a token's.
        let err = delete(
            &shared,
            &mut shared.lock(),
            9000,
            &params(&[("skiplock", "1")]),
        )
        .unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(
            err.errors.unwrap()["skiplock"],
            "Only root may use this option."
        );
        // A template cannot become a template again.
        let err = template(&shared, &mut shared.lock(), 9000).unwrap_err();
        assert_eq!(err.message, "you can't convert a template to a template");
    }

    #[tokio::test]
    async fn starting_a_template_is_a_task_that_fails() {
        let shared = Shared::new(cluster());
        let upid = start(&shared, &mut shared.lock(), 9000, &Params::new()).unwrap();
        assert_eq!(
            exit_of(&shared, &upid).await,
            "you can't start a vm if it's a template"
        );
    }

    #[tokio::test]
    async fn shutting_down_a_stopped_vm_is_a_task_that_ends_ok() {
        let shared = Shared::new(cluster());
        {
            let mut cl = shared.lock();
            prepare_clone(&mut cl, 9000, 101, Some("x".into()), true, None, None).unwrap();
            finish_clone(&mut cl, 101);
        }
        let upid = shutdown(&shared, &mut shared.lock(), 101, &Params::new()).unwrap();
        assert_eq!(exit_of(&shared, &upid).await, "OK");
    }

    fn qemu_entry(cl: &mut Cluster, vmid: u32) -> Value {
        resources(cl, Some("vm"))
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["vmid"] == vmid)
            .cloned()
            .unwrap()
    }

    #[test]
    fn a_new_vm_is_listed_without_name_or_template_until_stats_arrive() {
        let mut cl = cluster_with_lag(60_000);
        prepare_clone(&mut cl, 9000, 101, Some("fresh".into()), true, None, None).unwrap();
        finish_clone(&mut cl, 101);
        cl.vm_mut(101)
            .unwrap()
            .config
            .insert("tags".into(), "golden".into());
        let fresh = qemu_entry(&mut cl, 101);
        assert_eq!(fresh["status"], "unknown");
        assert!(
            fresh.get("name").is_none() && fresh.get("template").is_none(),
            "{fresh}"
        );
        assert_eq!(
            fresh["tags"], "golden",
            "tags come from the config, at once"
        );
        let seeded = qemu_entry(&mut cl, 9000);
        assert_eq!(
            (seeded["name"].clone(), seeded["template"].clone()),
            (json!("debian-12-base"), json!(1))
        );
        // Without lag the entry is complete at once.
        let mut cl = cluster();
        prepare_clone(&mut cl, 9000, 101, Some("fresh".into()), true, None, None).unwrap();
        let entry = qemu_entry(&mut cl, 101);
        assert_eq!(
            (entry["name"].clone(), entry["template"].clone()),
            (json!("fresh"), json!(0))
        );
        assert_eq!(entry["lock"], "clone");
    }

    #[test]
    fn settings_read_back_as_qemu_server_stores_them() {
        let shared = Shared::new(cluster());
        prepare_clone(
            &mut shared.lock(),
            9000,
            101,
            Some("x".into()),
            true,
            None,
            None,
        )
        .unwrap();
        finish_clone(&mut shared.lock(), 101);
        config_set(
            &shared,
            &mut shared.lock(),
            101,
            &params(&[
                ("description", "notes\n```\n\n"),
                ("tags", "Team-A;golden"),
                ("scsi1", "local-lvm:1,ssd=1,discard=on"),
            ]),
            false,
        )
        .unwrap();
        let cfg = config_get(&shared.lock(), 101).unwrap();
        assert_eq!(cfg["description"], "notes\n```");
        assert_eq!(cfg["tags"], "golden;team-a");
        assert_eq!(
            cfg["scsi1"],
            "local-lvm:vm-101-disk-1,discard=on,size=1G,ssd=1"
        );
    }

    #[tokio::test]
    async fn locks_and_taken_ids_are_worded_as_pve_words_them() {
        let shared = Shared::new(cluster_with_lag(0));
        prepare_clone(
            &mut shared.lock(),
            9000,
            101,
            Some("x".into()),
            true,
            None,
            None,
        )
        .unwrap();
        // 101 is locked `clone` until its clone finishes.
        let err = clone(
            &shared,
            &mut shared.lock(),
            101,
            &params(&[("newid", "102")]),
        )
        .unwrap_err();
        assert_eq!(
            (err.status, err.message.as_str()),
            (500, "VM is locked (clone)")
        );
        let err = config_set(
            &shared,
            &mut shared.lock(),
            101,
            &params(&[("name", "y")]),
            false,
        )
        .unwrap_err();
        assert_eq!(err.message, "VM is locked (clone)");
        // start and destroy check the lock in their worker: a task that fails.
        let upid = start(&shared, &mut shared.lock(), 101, &Params::new()).unwrap();
        assert_eq!(exit_of(&shared, &upid).await, "VM is locked (clone)");
        let upid = delete(&shared, &mut shared.lock(), 101, &Params::new()).unwrap();
        assert_eq!(exit_of(&shared, &upid).await, "VM is locked (clone)");
        assert!(shared.lock().vms.contains_key(&101));
        let err = create(&shared, &mut shared.lock(), &params(&[("vmid", "101")])).unwrap_err();
        assert_eq!(
            (err.status, err.message.as_str()),
            (
                500,
                "unable to create VM 101 - VM 101 already exists on node 'pve'"
            )
        );
        let err = clone(
            &shared,
            &mut shared.lock(),
            9000,
            &params(&[("newid", "101")]),
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "unable to create VM 101: config file already exists"
        );
        finish_clone(&mut shared.lock(), 101);
        let upid = start(&shared, &mut shared.lock(), 101, &Params::new()).unwrap();
        assert_eq!(exit_of(&shared, &upid).await, "OK");
        let upid = start(&shared, &mut shared.lock(), 101, &Params::new()).unwrap();
        assert_eq!(exit_of(&shared, &upid).await, "VM 101 already running");
    }

    #[test]
    fn resize_sizes_follow_qemu_servers_rules() {
        assert_eq!(parse_resize("+1G", GIB), Some(2 * GIB));
        assert_eq!(parse_resize("4G", GIB), Some(4 * GIB));
        assert_eq!(parse_resize("1.5G", 0), Some(3 * GIB / 2));
        assert_eq!(parse_resize("2048", 0), Some(2048));
        assert_eq!(parse_resize("G", 0), None);
        let cl = cluster();
        let vm = cl.vm(9000).unwrap();
        assert_eq!(
            resized_drive(&cl, vm, None, "scsi0", "1G"),
            Err("shrinking disks is not supported".into())
        );
        assert_eq!(resized_drive(&cl, vm, None, "scsi0", "2G"), Ok(None));
        assert_eq!(
            resized_drive(&cl, vm, None, "ide2", "+1G"),
            Err("you can't resize a cdrom".into())
        );
        assert_eq!(
            resized_drive(&cl, vm, None, "virtio3", "+1G"),
            Err("disk 'virtio3' does not exist".into())
        );
    }

    #[tokio::test]
    async fn a_resize_task_writes_the_new_size_in_pve_order() {
        let shared = Shared::new(cluster());
        prepare_clone(
            &mut shared.lock(),
            9000,
            101,
            Some("x".into()),
            true,
            None,
            None,
        )
        .unwrap();
        finish_clone(&mut shared.lock(), 101);
        let upid = resize(
            &shared,
            &mut shared.lock(),
            101,
            &params(&[("disk", "scsi0"), ("size", "+1G")]),
        )
        .unwrap();
        assert_eq!(exit_of(&shared, &upid).await, "OK");
        let cl = shared.lock();
        assert_eq!(
            cl.vm(101).unwrap().config["scsi0"],
            "local-lvm:vm-101-disk-0,size=3G"
        );
        assert_eq!(cl.volumes["local-lvm:vm-101-disk-0"].size, 3 * GIB);
    }

    #[tokio::test]
    async fn reboot_needs_a_running_vm_and_leaves_it_running() {
        let shared = Shared::new(cluster());
        prepare_clone(
            &mut shared.lock(),
            9000,
            101,
            Some("x".into()),
            true,
            None,
            None,
        )
        .unwrap();
        finish_clone(&mut shared.lock(), 101);
        let err = reboot(&shared, &mut shared.lock(), 101, &Params::new()).unwrap_err();
        assert_eq!(
            (err.status, err.message.as_str()),
            (500, "VM 101 not running")
        );
        let upid = start(&shared, &mut shared.lock(), 101, &Params::new()).unwrap();
        assert_eq!(exit_of(&shared, &upid).await, "OK");
        let upid = reboot(&shared, &mut shared.lock(), 101, &Params::new()).unwrap();
        assert_eq!(exit_of(&shared, &upid).await, "OK");
        assert!(shared.lock().vm(101).unwrap().running());
    }

    #[tokio::test]
    async fn a_config_post_is_always_a_task_and_its_worker_checks_the_lock() {
        let shared = Shared::new(cluster());
        prepare_clone(
            &mut shared.lock(),
            9000,
            101,
            Some("x".into()),
            true,
            None,
            None,
        )
        .unwrap();
        let upid = config_set(
            &shared,
            &mut shared.lock(),
            101,
            &params(&[("memory", "2048")]),
            true,
        )
        .unwrap();
        assert_eq!(exit_of(&shared, &upid).await, "VM is locked (clone)");
        assert_eq!(shared.lock().vm(101).unwrap().memory_mib(), 1024);
        finish_clone(&mut shared.lock(), 101);
        let upid = config_set(
            &shared,
            &mut shared.lock(),
            101,
            &params(&[("memory", "2048")]),
            true,
        )
        .unwrap();
        assert_eq!(exit_of(&shared, &upid).await, "OK");
        assert_eq!(shared.lock().vm(101).unwrap().memory_mib(), 2048);
    }

    #[tokio::test]
    async fn stopping_a_running_locked_vm_is_a_task_that_fails() {
        let shared = Shared::new(cluster());
        prepare_clone(
            &mut shared.lock(),
            9000,
            101,
            Some("x".into()),
            true,
            None,
            None,
        )
        .unwrap();
        finish_clone(&mut shared.lock(), 101);
        let upid = start(&shared, &mut shared.lock(), 101, &Params::new()).unwrap();
        assert_eq!(exit_of(&shared, &upid).await, "OK");
        let lock = |cl: &mut Cluster| {
            let vm = cl.vm_mut(101).unwrap();
            vm.config.insert("lock".into(), "backup".into());
        };
        lock(&mut shared.lock());
        let upid = stop(&shared, &mut shared.lock(), 101, &Params::new()).unwrap();
        assert_eq!(exit_of(&shared, &upid).await, "VM is locked (backup)");
        let upid = shutdown(&shared, &mut shared.lock(), 101, &Params::new()).unwrap();
        assert_eq!(exit_of(&shared, &upid).await, "VM is locked (backup)");
        assert!(shared.lock().vm(101).unwrap().running());
    }
}
