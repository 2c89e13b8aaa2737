//! The simulated GCE project: images, disks, instances and operations behind
//! one mutex (`core::state`). Every GCE fact modelled here names its source;
//! the guide (docs/guides/gcp-simulator.md) lists them all.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::admin::GcpFault;
use super::auth::ServiceAccount;
use crate::core::guest::QemuGuest;
use crate::core::guestfs::GuestFs;
use crate::core::ops::{OperationMeta, OperationState, Operations};
use crate::core::state::{Records, SimState};

pub type Shared = crate::core::state::Shared<Project>;

/// Where GCE's selfLinks point (GCE answers `https://www.googleapis.com/
/// compute/v1/...` whatever endpoint was called).
pub const LINK_BASE: &str = "https://www.googleapis.com/compute/v1/";

/// The serial console's buffer: "If the amount of serial console output
/// exceeds the size of the buffer (1 MB), the oldest output is discarded"
/// (instances.getSerialPortOutput `start`, compute.v1.json).
pub const SERIAL_RING: usize = 1 << 20;

/// How long a `requestId` is remembered: Google's APIs that document it
/// say "the server will guarantee that for at least 60 minutes since the
/// first request" a retry with the same id is recognised.
pub const REQUEST_ID_RETENTION: Duration = Duration::from_secs(60 * 60);

/// `operations.wait` returns "no more than the 2 minutes" after it was
/// called (zoneOperations.wait, compute.v1.json).
pub const WAIT_CAP: Duration = Duration::from_secs(120);

/// The public image projects seeded read-only (Google's Debian images have
/// no cloud-init, Ubuntu's do; both run the guest agent's startup scripts).
pub const PUBLIC_PROJECTS: &[&str] = &["debian-cloud", "ubuntu-os-cloud"];

/// The public images seeded: (project, name, family, has cloud-init).
pub const PUBLIC_IMAGES: &[(&str, &str, &str, bool)] = &[
    (
        "debian-cloud",
        "debian-12-bookworm-v20250113",
        "debian-12",
        false,
    ),
    (
        "ubuntu-os-cloud",
        "ubuntu-2404-noble-amd64-v20250117",
        "ubuntu-2404-lts-amd64",
        true,
    ),
];

/// What an instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A file map and the core's tiny shell (`super::guest`).
    Instant,
    /// A real QEMU guest booted from `--image` files (`super::qemu`).
    Qemu,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub project: String,
    pub zone: String,
    /// How long an operation runs.
    pub op_ms: u64,
    pub state_dir: std::path::PathBuf,
    pub backend: Backend,
    /// `--image NAME=PATH`: a public image (by URL, `PROJECT/NAME`, name or
    /// family) backed by a disk file.
    pub image_files: Vec<(String, std::path::PathBuf)>,
}

impl Options {
    /// `us-central1-a` -> `us-central1`.
    pub fn region(&self) -> &str {
        self.zone.rsplit_once('-').map_or(&self.zone, |(r, _)| r)
    }
}

/// The serial port: a ring of the last 1 MB and the count of every byte
/// ever written (positions are absolute).
#[derive(Default)]
pub struct Serial {
    buf: VecDeque<u8>,
    total: u64,
}

impl Serial {
    pub fn write(&mut self, bytes: &[u8]) {
        self.buf.extend(bytes);
        self.total += bytes.len() as u64;
        let excess = self.buf.len().saturating_sub(SERIAL_RING);
        self.buf.drain(..excess);
    }

    /// `getSerialPortOutput`: (contents, start, next). A start before the
    /// oldest kept byte moves forward to it; a negative start is the last
    /// |start| bytes; a start past the end returns nothing.
    pub fn read(&self, start: i64) -> (Vec<u8>, u64, u64) {
        let oldest = self.total - self.buf.len() as u64;
        let from = if start < 0 {
            self.total.saturating_sub(start.unsigned_abs()).max(oldest)
        } else {
            (start as u64).max(oldest)
        };
        if from >= self.total {
            return (Vec::new(), from, from.max(self.total));
        }
        let skip = (from - oldest) as usize;
        let bytes: Vec<u8> = self.buf.iter().skip(skip).copied().collect();
        (bytes, from, self.total)
    }
}

pub struct Image {
    pub project: String,
    pub name: String,
    pub id: u64,
    pub created_ms: u64,
    pub seq: u64,
    pub description: Option<String>,
    pub family: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `PENDING` while its insert runs, then `READY`.
    pub status: &'static str,
    pub source_disk: Option<(String, u64)>,
    pub disk_size_gb: u64,
    /// `DeprecationStatus`, as last set (`images.patch`/`deprecate`).
    pub deprecated: Option<Value>,
    pub fs: GuestFs,
    /// Its disk file (QEMU backend): an `--image` file for a public image,
    /// the flattened qcow2 the simulator made for one of ours.
    pub file: Option<PathBuf>,
}

impl Image {
    pub fn path(&self) -> String {
        format!("projects/{}/global/images/{}", self.project, self.name)
    }

    /// Whether `getFromFamily` may return it: "returns the latest image
    /// that is part of an image family and is not deprecated"
    /// (images.getFromFamily, compute.v1.json).
    pub fn deprecated_state(&self) -> &str {
        self.deprecated
            .as_ref()
            .and_then(|d| d.get("state"))
            .and_then(Value::as_str)
            .unwrap_or("ACTIVE")
    }

    pub fn json(&self) -> Value {
        let mut v = json!({
            "kind": "compute#image",
            "id": self.id.to_string(),
            "creationTimestamp": timestamp(self.created_ms),
            "name": self.name,
            "sourceType": "RAW",
            "status": self.status,
            "archiveSizeBytes": (self.disk_size_gb * 60_000_000).to_string(),
            "diskSizeGb": self.disk_size_gb.to_string(),
            "selfLink": format!("{LINK_BASE}{}", self.path()),
            "labelFingerprint": fingerprint(&self.labels),
            "storageLocations": ["us"],
            "architecture": "X86_64",
        });
        if let Some(d) = &self.description {
            v["description"] = json!(d);
        }
        if let Some(f) = &self.family {
            v["family"] = json!(f);
        }
        if !self.labels.is_empty() {
            v["labels"] = json!(self.labels);
        }
        if let Some((disk, id)) = &self.source_disk {
            v["sourceDisk"] = json!(format!("{LINK_BASE}{disk}"));
            v["sourceDiskId"] = json!(id.to_string());
        }
        if let Some(d) = &self.deprecated {
            v["deprecated"] = d.clone();
        }
        v
    }
}

pub struct Disk {
    pub name: String,
    pub id: u64,
    pub created_ms: u64,
    pub size_gb: u64,
    pub source_image: Option<(String, u64)>,
    pub labels: BTreeMap<String, String>,
    /// Instances using it (their paths).
    pub users: Vec<String>,
    /// The image being made from it, while that insert runs.
    pub imaging: Option<String>,
    pub fs: GuestFs,
    /// Its qcow2 overlay (QEMU backend), once made, and the file under it.
    pub file: Option<PathBuf>,
    pub backing: Option<PathBuf>,
}

impl Disk {
    pub fn json(&self, opts: &Options) -> Value {
        let zone = format!("projects/{}/zones/{}", opts.project, opts.zone);
        let mut v = json!({
            "kind": "compute#disk",
            "id": self.id.to_string(),
            "creationTimestamp": timestamp(self.created_ms),
            "name": self.name,
            "sizeGb": self.size_gb.to_string(),
            "zone": format!("{LINK_BASE}{zone}"),
            "status": "READY",
            "selfLink": format!("{LINK_BASE}{zone}/disks/{}", self.name),
            "type": format!("{LINK_BASE}{zone}/diskTypes/pd-balanced"),
            "labelFingerprint": fingerprint(&self.labels),
            "physicalBlockSizeBytes": "4096",
            "architecture": "X86_64",
        });
        if let Some((img, id)) = &self.source_image {
            v["sourceImage"] = json!(format!("{LINK_BASE}{img}"));
            v["sourceImageId"] = json!(id.to_string());
        }
        if !self.users.is_empty() {
            v["users"] = json!(self
                .users
                .iter()
                .map(|u| format!("{LINK_BASE}{u}"))
                .collect::<Vec<_>>());
        }
        if !self.labels.is_empty() {
            v["labels"] = json!(self.labels);
        }
        v
    }
}

pub struct AttachedDisk {
    pub disk: String,
    pub device_name: String,
    pub boot: bool,
    pub auto_delete: bool,
}

pub struct Instance {
    pub name: String,
    pub id: u64,
    pub created_ms: u64,
    /// Instance `status` enum (compute.v1.json).
    pub status: &'static str,
    pub machine_type: String,
    pub disks: Vec<AttachedDisk>,
    pub metadata: Vec<(String, String)>,
    pub metadata_fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub network: String,
    pub ip: String,
    pub serial: Serial,
    pub last_start_ms: Option<u64>,
    pub last_stop_ms: Option<u64>,
    /// A delete is running: further calls see it go.
    pub deleting: bool,
    /// The QEMU backend's guest, while it runs.
    pub guest: Option<Arc<QemuGuest>>,
}

impl Instance {
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self, opts: &Options) -> Value {
        let zone = format!("projects/{}/zones/{}", opts.project, opts.zone);
        let disks: Vec<Value> = self
            .disks
            .iter()
            .enumerate()
            .map(|(i, d)| {
                json!({
                    "kind": "compute#attachedDisk",
                    "type": "PERSISTENT",
                    "mode": "READ_WRITE",
                    "source": format!("{LINK_BASE}{zone}/disks/{}", d.disk),
                    "deviceName": d.device_name,
                    "index": i,
                    "boot": d.boot,
                    "autoDelete": d.auto_delete,
                    "interface": "SCSI",
                    "architecture": "X86_64",
                })
            })
            .collect();
        let items: Vec<Value> = self
            .metadata
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let mut metadata =
            json!({"kind": "compute#metadata", "fingerprint": self.metadata_fingerprint});
        if !items.is_empty() {
            metadata["items"] = json!(items);
        }
        let mut v = json!({
            "kind": "compute#instance",
            "id": self.id.to_string(),
            "creationTimestamp": timestamp(self.created_ms),
            "name": self.name,
            "tags": {"fingerprint": fingerprint(&BTreeMap::new())},
            "machineType": format!("{LINK_BASE}{zone}/machineTypes/{}", self.machine_type),
            "status": self.status,
            "zone": format!("{LINK_BASE}{zone}"),
            "canIpForward": false,
            "networkInterfaces": [{
                "kind": "compute#networkInterface",
                "network": format!("{LINK_BASE}{}", self.network),
                "subnetwork": format!("{LINK_BASE}projects/{}/regions/{}/subnetworks/default", opts.project, opts.region()),
                "networkIP": self.ip,
                "name": "nic0",
                "fingerprint": "Fq4vW5mwJ0E=",
                "stackType": "IPV4_ONLY",
            }],
            "disks": disks,
            "metadata": metadata,
            "selfLink": format!("{LINK_BASE}{zone}/instances/{}", self.name),
            "scheduling": {"onHostMaintenance": "MIGRATE", "automaticRestart": true, "preemptible": false, "provisioningModel": "STANDARD"},
            "cpuPlatform": "Intel Broadwell",
            "labelFingerprint": fingerprint(&self.labels),
            "startRestricted": false,
            "deletionProtection": false,
            "fingerprint": fingerprint(&BTreeMap::from([("status".to_owned(), self.status.to_owned())])),
        });
        if !self.labels.is_empty() {
            v["labels"] = json!(self.labels);
        }
        if let Some(t) = self.last_start_ms {
            v["lastStartTimestamp"] = json!(timestamp(t));
        }
        if let Some(t) = self.last_stop_ms {
            v["lastStopTimestamp"] = json!(timestamp(t));
        }
        v
    }
}

/// An operation's metadata (`Operation`, compute.v1.json); its outcome is
/// the ops engine's.
pub struct OpMeta {
    pub id: u64,
    pub name: String,
    /// Zonal operations carry their zone; global ones none.
    pub zonal: bool,
    pub op_type: String,
    pub target_link: String,
    pub target_id: u64,
    pub user: String,
    pub insert_ms: u64,
    pub started: Instant,
    pub duration: Duration,
    /// An injected failure's `errors[].code` and HTTP status.
    pub error_code: Option<String>,
    pub http_error: Option<u16>,
}

impl OperationMeta for OpMeta {
    const NOUN: &'static str = "operation";
}

/// `PUT /_sim/behaviour`.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// How long `operations.wait` waits at most (GCE: 2 minutes).
    pub wait_cap: Duration,
    /// Guests ignore power-off requests.
    pub never_power_off: bool,
    /// Instant guests boot but their user-data and startup script never
    /// finish: nothing reaches the serial port (a provisioning that hangs).
    pub hung_guests: bool,
    /// How long operations of a method run (`images.insert` -> ms), where
    /// it differs from `--op-ms`.
    pub op_ms: BTreeMap<String, u64>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            wait_cap: WAIT_CAP,
            never_power_off: false,
            hung_guests: false,
            op_ms: BTreeMap::new(),
        }
    }
}

pub struct Project {
    pub sim: Records<GcpFault>,
    pub opts: Arc<Options>,
    pub account: Arc<ServiceAccount>,
    pub endpoint: String,
    next_id: u64,
    seq: u64,
    /// (project, name) -> image: ours and the public projects'.
    pub images: BTreeMap<(String, String), Image>,
    pub disks: BTreeMap<String, Disk>,
    pub instances: BTreeMap<String, Instance>,
    pub ops: Operations<OpMeta>,
    /// requestId -> (operation name, first seen).
    pub request_ids: HashMap<String, (String, Instant)>,
    /// OAuth access tokens handed out by `/token` -> expiry.
    pub access_tokens: HashMap<String, Instant>,
    pub behaviour: Behaviour,
    /// Deleted images' files that overlays still stand on (QEMU backend):
    /// removed with the last disk on them.
    pub retired_files: Vec<PathBuf>,
}

impl SimState for Project {
    type Fault = GcpFault;

    fn records(&mut self) -> &mut Records<GcpFault> {
        &mut self.sim
    }
}

impl OperationState<OpMeta> for Project {
    fn operations(&mut self) -> &mut Operations<OpMeta> {
        &mut self.ops
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// GCE's timestamps: RFC 3339 with milliseconds in Pacific time
/// (`2025-01-01T04:00:00.123-08:00`); always -08:00 here.
pub fn timestamp(ms: u64) -> String {
    let local = ms.saturating_sub(8 * 3600 * 1000);
    let base = crate::core::util::rfc3339(local / 1000);
    format!("{}.{:03}-08:00", base.trim_end_matches('Z'), local % 1000)
}

/// A label fingerprint: a hash of the labels (the empty set's is
/// `42WmSpB8rSM=`, what GCE answers for a resource without labels), in
/// the discovery format `byte`: padded base64 with the URL-safe alphabet
/// ("-" and "_", RFC 4648 section 5; Google's discovery-document format
/// table). google-cloud-compute-v1 decodes it so and refused the standard
/// alphabet's `+` and `/`, which this simulator wrote before.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "42WmSpB8rSM=".into();
    }
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    base64::engine::general_purpose::URL_SAFE.encode(&h.finalize()[..8])
}

impl Project {
    pub fn new(opts: Arc<Options>, account: Arc<ServiceAccount>) -> Project {
        let mut p = Project {
            sim: Records::default(),
            opts,
            account,
            endpoint: String::new(),
            next_id: 1_000_000_000_000_000_000 + u64::from(std::process::id()) * 1_000_000,
            seq: 0,
            images: BTreeMap::new(),
            disks: BTreeMap::new(),
            instances: BTreeMap::new(),
            ops: Operations::default(),
            request_ids: HashMap::new(),
            access_tokens: HashMap::new(),
            behaviour: Behaviour::default(),
            retired_files: Vec::new(),
        };
        p.seed_public_images();
        p
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 7919;
        self.next_id
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Google's Debian 12 image (no cloud-init; the guest agent runs
    /// startup scripts) and Ubuntu 24.04 (cloud-init too).
    fn seed_public_images(&mut self) {
        for &(project, name, family, cloud_init) in PUBLIC_IMAGES {
            let mut fs = crate::core::guestfs::debian_fs("localhost");
            fs.insert("/usr/bin/google_metadata_script_runner".into(), Vec::new());
            if !cloud_init {
                crate::core::guestfs::without_cloud_init(&mut fs);
            }
            let id = self.next_id();
            let seq = self.next_seq();
            self.images.insert(
                (project.to_owned(), name.to_owned()),
                Image {
                    project: project.into(),
                    name: name.into(),
                    id,
                    created_ms: 1_736_700_000_000,
                    seq,
                    description: Some(format!("{family}, built on {}", &name[name.len() - 8..])),
                    family: Some(family.into()),
                    labels: BTreeMap::new(),
                    status: "READY",
                    source_disk: None,
                    disk_size_gb: 10,
                    deprecated: None,
                    fs,
                    file: None,
                },
            );
        }
    }

    /// `--image NAME=PATH`: backs the public image NAME names with PATH.
    /// NAME is an image or family URL (`projects/debian-cloud/global/images/
    /// family/debian-12`), `PROJECT/NAME`, an image name or a family.
    pub fn back_image(&mut self, name: &str, path: &std::path::Path) -> Result<(), String> {
        let rel = match name.find("projects/") {
            Some(i) => &name[i..],
            None => name,
        };
        let segs: Vec<&str> = rel.split('/').collect();
        let (project, key, family) = match segs.as_slice() {
            ["projects", p, "global", "images", "family", f] => (Some(*p), *f, true),
            ["projects", p, "global", "images", i] => (Some(*p), *i, false),
            [p, "family", f] => (Some(*p), *f, true),
            [p, i] => (Some(*p), *i, false),
            [i] => (None, *i, false),
            _ => return Err(format!("--image {name}: not an image name or URL")),
        };
        let found = self
            .images
            .values_mut()
            .filter(|i| project.is_none_or(|p| p == i.project))
            .filter(|i| {
                if family {
                    i.family.as_deref() == Some(key)
                } else {
                    i.name == key || (project.is_none() && i.family.as_deref() == Some(key))
                }
            })
            .max_by_key(|i| (i.created_ms, i.seq));
        match found {
            Some(img) => {
                img.file = Some(path.to_owned());
                Ok(())
            }
            None => Err(format!(
                "--image {name}: no such public image; the simulator has {} (families {})",
                PUBLIC_IMAGES
                    .iter()
                    .map(|(p, n, _, _)| format!("{p}/{n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                PUBLIC_IMAGES
                    .iter()
                    .map(|(p, _, f, _)| format!("{p}/family/{f}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    pub fn zone_path(&self) -> String {
        format!("projects/{}/zones/{}", self.opts.project, self.opts.zone)
    }

    /// An operation's JSON as `operations.get` answers it.
    pub fn op_json(&self, name: &str) -> Option<Value> {
        let op = self.ops.get(name)?;
        let m = &op.meta;
        let status = match &op.outcome {
            Some(_) => "DONE",
            None if m.started.elapsed() < m.duration / 4 => "PENDING",
            None => "RUNNING",
        };
        let scope = if m.zonal {
            format!("{}/operations/{}", self.zone_path(), m.name)
        } else {
            format!(
                "projects/{}/global/operations/{}",
                self.opts.project, m.name
            )
        };
        let mut v = json!({
            "kind": "compute#operation",
            "id": m.id.to_string(),
            "name": m.name,
            "operationType": m.op_type,
            "targetLink": format!("{LINK_BASE}{}", m.target_link),
            "targetId": m.target_id.to_string(),
            "status": status,
            "user": m.user,
            "progress": if op.outcome.is_some() { 100 } else { 0 },
            "insertTime": timestamp(m.insert_ms),
            "selfLink": format!("{LINK_BASE}{scope}"),
        });
        if m.zonal {
            v["zone"] = json!(format!("{LINK_BASE}{}", self.zone_path()));
        }
        if status != "PENDING" {
            v["startTime"] = json!(timestamp(m.insert_ms + 20));
        }
        if op.outcome.is_some() {
            v["endTime"] = json!(timestamp(m.insert_ms + m.duration.as_millis() as u64));
        }
        if let Some(Err(msg)) = &op.outcome {
            let code = m
                .error_code
                .clone()
                .unwrap_or_else(|| "INTERNAL_ERROR".into());
            let http = m.http_error.unwrap_or(400);
            v["error"] = json!({"errors": [{"code": code, "message": msg}]});
            v["httpErrorStatusCode"] = json!(http);
            v["httpErrorMessage"] = json!(http_reason(http));
        }
        Some(v)
    }

    /// Whether an operation is done.
    pub fn op_done(&self, name: &str) -> bool {
        self.ops.get(name).is_none_or(|o| o.outcome.is_some())
    }

    /// Forgets request ids past their retention.
    pub fn prune_request_ids(&mut self) {
        self.request_ids
            .retain(|_, (_, t)| t.elapsed() < REQUEST_ID_RETENTION);
    }

    /// `GET /_sim/images`: ours (not the public projects').
    pub fn images_json(&self) -> Value {
        Value::Array(
            self.images
                .values()
                .filter(|i| i.project == self.opts.project)
                .map(Image::json)
                .collect(),
        )
    }

    pub fn labels_map(v: &Value) -> BTreeMap<String, String> {
        v.as_object()
            .map(Map::iter)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
            .collect()
    }
}

/// The HTTP reason phrase GCE puts in `httpErrorMessage` (upper case).
pub fn http_reason(status: u16) -> String {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("ERROR")
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serial_ring_keeps_the_last_megabyte_and_moves_start_forward() {
        let mut s = Serial::default();
        s.write(b"hello ");
        assert_eq!(s.read(0), (b"hello ".to_vec(), 0, 6));
        assert_eq!(s.read(3), (b"lo ".to_vec(), 3, 6));
        assert_eq!(s.read(6), (Vec::new(), 6, 6));
        assert_eq!(s.read(-2), (b"o ".to_vec(), 4, 6));
        s.write(&vec![b'x'; SERIAL_RING]);
        let (bytes, start, next) = s.read(0);
        assert_eq!((start, next), (6, 6 + SERIAL_RING as u64));
        assert_eq!(bytes.len(), SERIAL_RING);
        let (bytes, start, _) = s.read(10);
        assert_eq!((bytes.len(), start), (SERIAL_RING - 4, 10));
    }

    #[test]
    fn timestamps_are_pacific_with_milliseconds() {
        assert_eq!(
            timestamp(1_735_732_800_123),
            "2025-01-01T04:00:00.123-08:00"
        );
    }

    #[test]
    fn empty_labels_have_gces_fingerprint() {
        assert_eq!(fingerprint(&BTreeMap::new()), "42WmSpB8rSM=");
        let a = fingerprint(&BTreeMap::from([("a".into(), "1".into())]));
        let b = fingerprint(&BTreeMap::from([("a".into(), "2".into())]));
        assert_ne!(a, b);
    }
}
