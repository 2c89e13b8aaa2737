//! The simulated DigitalOcean account: SSH keys, droplets, images, tags and
//! actions behind one mutex (`core::state`), plus the per-token rate budget.
//! Every DO fact modelled here names its source in a comment; the guide
//! (docs/guides/digitalocean-simulator.md) lists them all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};

use super::admin::DoFault;
use super::ratelimit::RateBook;
use super::ssh::Sshd;
use crate::core::guest::QemuGuest;
use crate::core::guestfs::GuestFs;
use crate::core::ops::{OperationState, Operations};
use crate::core::state::{Records, SimState};

pub type Shared = crate::core::state::Shared<Account>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Droplets are a file map, a tiny shell and a real sshd.
    Instant,
    /// Droplets are QEMU guests booted from `--image` files (`super::qemu`).
    Qemu,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub token: String,
    pub backend: Backend,
    /// The port every droplet's sshd listens on, on its own 127.0.0.N.
    pub ssh_port: u16,
    /// How long an action runs.
    pub action_ms: u64,
    pub state_dir: PathBuf,
    /// `--image SLUG=PATH`: public images backed by a disk file.
    pub images: Vec<(String, PathBuf)>,
    /// `--public-url URL`: the origin the API's absolute URLs (page links,
    /// action hrefs, tag URIs) name instead of the simulator's own address,
    /// as DO's name `https://api.digitalocean.com` whatever proxy a client
    /// reaches it through.
    pub public_url: Option<String>,
}

/// `GET /v2/account/keys` entries (resources/ssh_keys/models/sshKeys.yml).
#[derive(Debug, Clone)]
pub struct Key {
    pub id: u64,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
}

impl Key {
    pub fn json(&self) -> Value {
        json!({"id": self.id, "fingerprint": self.fingerprint, "public_key": self.public_key, "name": self.name})
    }
}

/// A droplet's status (resources/droplets/models/droplet.yml `status` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    New,
    Active,
    Off,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Active => "active",
            Status::Off => "off",
        }
    }
}

pub struct Droplet {
    pub id: u64,
    pub name: String,
    pub region: String,
    pub size: String,
    pub image_id: u64,
    pub status: Status,
    pub locked: bool,
    pub created_at: String,
    pub tags: Vec<String>,
    pub user_data: Option<String>,
    /// Keys authorised for root, resolved at create (ids or fingerprints).
    pub keys: Vec<Key>,
    /// Its public IPv4, a loopback address (the contract).
    pub ip: String,
    /// The host key pair (OpenSSH private key text, public line).
    pub host_key: Option<(String, String)>,
    /// Snapshot image ids taken of it (`snapshot_ids`).
    pub snapshot_ids: Vec<u64>,
    /// Action ids, newest last (`GET /v2/droplets/{id}/actions`).
    pub action_ids: Vec<u64>,
    /// The instant backend's filesystem.
    pub fs: GuestFs,
    /// The instant backend's sshd, while the droplet is active.
    pub sshd: Option<Sshd>,
    /// The QEMU backend's guest, while it runs.
    pub guest: Option<Arc<QemuGuest>>,
    /// The QEMU backend's overlay, once made, and the image file under it.
    pub disk: Option<PathBuf>,
    pub backing: Option<PathBuf>,
}

impl Droplet {
    /// Where the QEMU backend keeps its overlay, seed and serial log.
    pub fn workdir(&self, opts: &Options) -> PathBuf {
        opts.state_dir.join(format!("droplet-{}", self.id))
    }
}

/// An image: public distribution images and private snapshots.
#[derive(Debug, Clone)]
pub struct Image {
    pub id: u64,
    pub name: String,
    /// `base` (public distribution) or `snapshot`.
    pub kind: &'static str,
    pub distribution: String,
    pub slug: Option<String>,
    pub public: bool,
    pub regions: Vec<String>,
    pub created_at: String,
    pub min_disk_size: u64,
    pub size_gigabytes: f64,
    pub description: String,
    pub tags: Vec<String>,
    /// `available` (or `pending` while a snapshot is being taken).
    pub status: &'static str,
    /// What a droplet made from it starts with (instant backend).
    pub fs: GuestFs,
    /// Its disk file (QEMU backend): `--image` for a public image, a
    /// flattened qcow2 the simulator owns for a snapshot.
    pub path: Option<PathBuf>,
}

impl Image {
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "type": self.kind,
            "distribution": self.distribution,
            "slug": self.slug,
            "public": self.public,
            "regions": self.regions,
            "created_at": self.created_at,
            "min_disk_size": self.min_disk_size,
            "size_gigabytes": self.size_gigabytes,
            "description": self.description,
            "tags": self.tags,
            "status": self.status,
        })
    }
}

/// What an action acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    Droplet,
    Image,
}

/// An action's metadata (resources/actions/models/action.yml); its outcome
/// is the ops engine's.
pub struct ActionMeta {
    pub id: u64,
    pub kind: String,
    pub started_at: String,
    /// When its work is due: `completed_at` once it has ended.
    pub ends_at: String,
    pub resource_id: u64,
    pub resource_type: ResourceType,
    pub region: String,
}

impl crate::core::ops::OperationMeta for ActionMeta {
    const NOUN: &'static str = "action";
}

/// What `PUT /_sim/behaviour` sets.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// The next n snapshot actions end `errored`.
    pub snapshot_errors: u32,
    /// Guests ignore ACPI shutdown and cloud-init's power_state.
    pub never_power_off: bool,
    /// How long an image transfer takes (default: `--action-ms`).
    pub transfer_ms: Option<u64>,
}

pub struct Account {
    pub sim: Records<DoFault>,
    pub opts: Arc<Options>,
    /// `http://127.0.0.1:PORT`, set once listening: pagination links and
    /// action hrefs are absolute URLs built from it.
    pub endpoint: String,
    next_id: u64,
    pub keys: BTreeMap<u64, Key>,
    pub droplets: BTreeMap<u64, Droplet>,
    pub images: BTreeMap<u64, Image>,
    /// Tag names, canonical capitalisation.
    pub tags: BTreeSet<String>,
    pub actions: Operations<ActionMeta>,
    pub rate: RateBook,
    pub behaviour: Behaviour,
    /// Deleted snapshots' files that live droplets' overlays still stand on:
    /// removed when the last such droplet goes (DO's droplets do not depend
    /// on the snapshot they came from).
    pub retired_files: Vec<PathBuf>,
}

impl SimState for Account {
    type Fault = DoFault;

    fn records(&mut self) -> &mut Records<DoFault> {
        &mut self.sim
    }
}

impl OperationState<ActionMeta> for Account {
    fn operations(&mut self) -> &mut Operations<ActionMeta> {
        &mut self.actions
    }
}

/// Regions the contract names, as DO's `GET /v2/regions` shows them
/// (resources/regions/models/region.yml; names from DO's region list).
pub const REGIONS: &[(&str, &str)] = &[
    ("nyc1", "New York 1"),
    ("nyc3", "New York 3"),
    ("sfo3", "San Francisco 3"),
    ("ams3", "Amsterdam 3"),
    ("fra1", "Frankfurt 1"),
];

/// Sizes: slug, memory MiB, vcpus, disk GB, transfer TB, $/month, $/hour
/// (DO's published Basic plans; resources/sizes/models/size.yml).
pub const SIZES: &[(&str, u64, u64, u64, f64, f64, f64)] = &[
    ("s-1vcpu-512mb-10gb", 512, 1, 10, 0.5, 4.0, 0.00595),
    ("s-1vcpu-1gb", 1024, 1, 25, 1.0, 6.0, 0.00893),
    ("s-2vcpu-2gb", 2048, 2, 60, 3.0, 18.0, 0.02679),
];

pub fn region_json(slug: &str) -> Value {
    let name = REGIONS
        .iter()
        .find(|(s, _)| *s == slug)
        .map(|(_, n)| *n)
        .unwrap_or(slug);
    json!({
        "name": name, "slug": slug,
        "features": ["backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"],
        "available": true,
        "sizes": SIZES.iter().map(|s| s.0).collect::<Vec<_>>(),
    })
}

pub fn size_json(slug: &str) -> Option<Value> {
    let (slug, memory, vcpus, disk, transfer, monthly, hourly) =
        SIZES.iter().find(|s| s.0 == slug)?;
    Some(json!({
        "slug": slug, "memory": memory, "vcpus": vcpus, "disk": disk,
        "transfer": transfer, "price_monthly": monthly, "price_hourly": hourly,
        "regions": REGIONS.iter().map(|r| r.0).collect::<Vec<_>>(),
        "available": true, "description": "Basic",
        "disk_info": [{"type": "local", "size": {"amount": disk, "unit": "gib"}}],
    }))
}

/// DO's timestamps: RFC 3339, UTC, whole seconds (`2020-07-21T18:37:44Z`).
pub use crate::core::util::rfc3339;

pub fn now() -> String {
    rfc3339(crate::core::util::unix_now())
}

impl Account {
    pub fn new(opts: Arc<Options>) -> Account {
        let mut a = Account {
            sim: Records::default(),
            opts,
            endpoint: String::new(),
            next_id: 1000,
            keys: BTreeMap::new(),
            droplets: BTreeMap::new(),
            images: BTreeMap::new(),
            tags: BTreeSet::new(),
            actions: Operations::default(),
            rate: RateBook::default(),
            behaviour: Behaviour::default(),
            retired_files: Vec::new(),
        };
        a.seed_public_images();
        a
    }

    /// Ids from one counter: DO's ids are unique per type, ours across
    /// types, which no client can tell apart. Public images get 1000+.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// The contract's public images, and `--image SLUG=PATH` ones: a known
    /// slug gets the file, another slug is a new public image.
    fn seed_public_images(&mut self) {
        let mut slugs: Vec<(String, String, String)> = [
            ("ubuntu-24-04-x64", "24.04 (LTS) x64", "Ubuntu"),
            ("debian-12-x64", "12 x64", "Debian"),
        ]
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
        for (slug, _) in &self.opts.images {
            if !slugs.iter().any(|s| &s.0 == slug) {
                let distribution = match slug.split('-').next() {
                    Some("ubuntu") => "Ubuntu",
                    Some("debian") => "Debian",
                    Some("fedora") => "Fedora",
                    Some("centos") => "CentOS",
                    Some("rockylinux") => "Rocky Linux",
                    _ => "Unknown",
                };
                slugs.push((slug.clone(), slug.clone(), distribution.to_owned()));
            }
        }
        for (slug, name, distribution) in slugs {
            let path = self
                .opts
                .images
                .iter()
                .rev()
                .find(|(s, _)| *s == slug)
                .map(|(_, p)| p.clone());
            let id = self.next_id();
            let fs = crate::core::guestfs::debian_fs("localhost");
            self.images.insert(
                id,
                Image {
                    id,
                    name,
                    kind: "base",
                    distribution,
                    slug: Some(slug),
                    public: true,
                    regions: REGIONS.iter().map(|r| r.0.to_owned()).collect(),
                    created_at: "2024-04-25T00:00:00Z".into(),
                    min_disk_size: 10,
                    size_gigabytes: 2.36,
                    description: String::new(),
                    tags: Vec::new(),
                    status: "available",
                    fs,
                    path,
                },
            );
        }
    }

    pub fn image_by_id_or_slug(&self, s: &str) -> Option<&Image> {
        match s.parse::<u64>() {
            Ok(id) => self.images.get(&id),
            Err(_) => self.images.values().find(|i| i.slug.as_deref() == Some(s)),
        }
    }

    pub fn droplet_json(&self, d: &Droplet) -> Value {
        let image = self
            .images
            .get(&d.image_id)
            .map(Image::json)
            .unwrap_or(Value::Null);
        let size = size_json(&d.size).unwrap_or(Value::Null);
        let (memory, vcpus, disk) = SIZES
            .iter()
            .find(|s| s.0 == d.size)
            .map(|s| (s.1, s.2, s.3))
            .unwrap_or((1024, 1, 25));
        // A new droplet has no addresses yet; they appear once it is active.
        let v4 = if d.status == Status::New {
            json!([])
        } else {
            json!([{"ip_address": d.ip, "netmask": "255.0.0.0", "gateway": "127.0.0.1", "type": "public"}])
        };
        json!({
            "id": d.id,
            "name": d.name,
            "memory": memory,
            "vcpus": vcpus,
            "disk": disk,
            "disk_info": [{"type": "local", "size": {"amount": disk, "unit": "gib"}}],
            "locked": d.locked,
            "status": d.status.as_str(),
            "kernel": null,
            "created_at": d.created_at,
            "features": [],
            "backup_ids": [],
            "next_backup_window": null,
            "snapshot_ids": d.snapshot_ids,
            "image": image,
            "volume_ids": [],
            "size": size,
            "size_slug": d.size,
            "networks": {"v4": v4, "v6": []},
            "region": region_json(&d.region),
            "tags": d.tags,
            "vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000",
        })
    }

    pub fn action_json(&self, id: u64) -> Option<Value> {
        let op = self.actions.get(&id.to_string())?;
        let m = &op.meta;
        let (status, completed_at) = match &op.outcome {
            None => ("in-progress", Value::Null),
            Some(Ok(())) => ("completed", json!(m.ends_at)),
            Some(Err(_)) => ("errored", json!(m.ends_at)),
        };
        Some(json!({
            "id": m.id,
            "status": status,
            "type": m.kind,
            "started_at": m.started_at,
            "completed_at": completed_at,
            "resource_id": m.resource_id,
            "resource_type": match m.resource_type {
                ResourceType::Droplet => "droplet",
                ResourceType::Image => "image",
            },
            "region": region_json(&m.region),
            "region_slug": m.region,
        }))
    }

    /// Whether a tag carries resources of any kind.
    pub fn tagged(&self, tag: &str) -> (Vec<u64>, Vec<u64>) {
        let has = |tags: &[String]| tags.iter().any(|t| t == tag);
        (
            self.droplets
                .values()
                .filter(|d| has(&d.tags))
                .map(|d| d.id)
                .collect(),
            self.images
                .values()
                .filter(|i| has(&i.tags))
                .map(|i| i.id)
                .collect(),
        )
    }

    /// The origin of the API's absolute URLs: `--public-url`, else the
    /// simulator's own address.
    pub fn public_url(&self) -> &str {
        self.opts.public_url.as_deref().unwrap_or(&self.endpoint)
    }

    /// `GET /v2/tags/{tag}` (resources/tags/models/tags.yml): counts per kind.
    pub fn tag_json(&self, tag: &str) -> Value {
        let (droplets, images) = self.tagged(tag);
        let meta = |ids: &[u64], kind: &str| {
            let last = ids
                .last()
                .map(|id| format!("{}/v2/{kind}/{id}", self.public_url()));
            json!({"count": ids.len(), "last_tagged_uri": last.unwrap_or_default()})
        };
        let mut all = droplets
            .iter()
            .map(|i| (i, "droplets"))
            .chain(images.iter().map(|i| (i, "images")))
            .collect::<Vec<_>>();
        all.sort();
        let last = all
            .last()
            .map(|(id, kind)| format!("{}/v2/{kind}/{id}", self.public_url()))
            .unwrap_or_default();
        json!({
            "name": tag,
            "resources": {
                "count": droplets.len() + images.len(),
                "last_tagged_uri": last,
                "droplets": meta(&droplets, "droplets"),
                "images": meta(&images, "images"),
                "volumes": {"count": 0, "last_tagged_uri": ""},
                "volume_snapshots": {"count": 0, "last_tagged_uri": ""},
                "databases": {"count": 0, "last_tagged_uri": ""},
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_732_800), "2025-01-01T12:00:00Z");
        assert_eq!(rfc3339(951_825_600), "2000-02-29T12:00:00Z");
    }
}
