//! The `proxmox` platform: golden images are PVE templates.
//!
//! Reserve: clone the source template (or import a cloud image) into a
//! candidate VM in `vmid_range`, named `candidate-<name>` and tagged
//! `golden-candidate`. Build: a cloud-init drive, start, then provisioning
//! entirely through the guest agent, `cloud-init clean`, shutdown, template.
//! Smoke test: a linked clone with a throwaway key, checks through the agent,
//! destroyed with purge. Publish: the final name and `golden-validated` in one
//! config write. Metadata: tags plus JSON in the description (`encoding.rs`).

mod agent;
pub mod api;
mod build;
pub mod client;
pub mod encoding;
mod linked;
mod privileges;
mod smoke;
pub mod spec;
mod tasks;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::ledger::UndoAction;
use crate::lifecycle::metadata::{Metadata, Status};
use crate::lifecycle::naming::Family;
use crate::lifecycle::recipe::{BuildInput, SmokeSpec};
use crate::lifecycle::report::Report;
use crate::platforms::{Error, ErrorKind, Platform, Result};
use api::{
    boot_disk_size, config_str, is_protected, params, Api, StorageVolume, VmConfig, VmResource,
};
use client::Client;
use encoding::{Note, ROLE_IMAGE, ROLE_SMOKE};

/// Everything the provider block says about the cluster.
#[derive(Debug, Clone)]
pub struct ProxmoxConfig {
    pub node: String,
    /// Where candidate and template disks live.
    pub storage: String,
    /// Where `download-url` puts cloud images (content type `import`).
    pub import_storage: String,
    /// Inclusive range of VM ids golden may use for candidates and smoke clones.
    pub vmid_range: (u32, u32),
    /// How long a guest agent may take to answer after start.
    pub agent_timeout: Duration,
    /// Names this cluster among the provider's ledgers (its host and port).
    pub ledger_scope: String,
}

pub struct ProxmoxPlatform {
    client: Client,
    config: ProxmoxConfig,
    /// vmid -> node, learned from `/cluster/resources`.
    nodes: Mutex<HashMap<u32, String>>,
}

/// A VM golden can clone from.
#[derive(Debug, Clone)]
pub(crate) enum SourceVm {
    Clone {
        node: String,
        vmid: u32,
        what: String,
    },
    Import {
        volid: String,
        what: String,
    },
}

impl ProxmoxPlatform {
    pub fn new(client: Client, config: ProxmoxConfig) -> Self {
        ProxmoxPlatform {
            client,
            config,
            nodes: Mutex::new(HashMap::new()),
        }
    }

    fn api<'a>(&'a self, cx: &'a Cx) -> Api<'a> {
        Api::new(&self.client, cx)
    }

    fn remember_node(&self, vmid: u32, node: &str) {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(vmid, node.to_owned());
    }

    fn node_of(&self, vmid: u32) -> String {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&vmid)
            .cloned()
            .unwrap_or_else(|| self.config.node.clone())
    }

    /// The lowest id in `vmid_range` that no VM uses and that is not in `skip`.
    fn free_vmid(&self, resources: &[VmResource], skip: &[u32]) -> Result<u32> {
        let (lo, hi) = self.config.vmid_range;
        let used: std::collections::HashSet<u32> = resources.iter().map(|r| r.vmid).collect();
        (lo..=hi)
            .find(|id| !used.contains(id) && !skip.contains(id))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Other,
                    format!("no free VM id left in vmid_range {lo}-{hi}"),
                )
            })
    }

    /// golden's note on a VM, if it is golden's own (not a copy).
    async fn note_of(&self, node: &str, vmid: u32, cx: &Cx) -> Result<Option<Note>> {
        Ok(self.vm_note(node, vmid, cx).await?.map(|(note, _)| note))
    }

    /// golden's note on a VM with the VM's config.
    async fn vm_note(&self, node: &str, vmid: u32, cx: &Cx) -> Result<Option<(Note, VmConfig)>> {
        let cfg = match self.api(cx).node(node).vm(vmid).config().await {
            Ok(c) => c,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let desc = config_str(&cfg, "description").unwrap_or_default();
        Ok(Note::parse(&desc)
            .filter(|n| n.belongs_to(vmid))
            .map(|n| (n, cfg)))
    }

    /// Images of `family` with their notes; `resources` saves a call when the
    /// caller has just listed the cluster.
    async fn family_images(
        &self,
        family: &Family,
        resources: Option<Vec<VmResource>>,
        cx: &Cx,
    ) -> Result<Vec<(Image, Note)>> {
        let resources = match resources {
            Some(r) => r,
            None => self.api(cx).vm_resources().await?,
        };
        let tag = encoding::family_tag(family.as_str());
        let now = time::OffsetDateTime::now_utc();
        let mut out = Vec::new();
        let mut bases = Vec::new();
        for r in resources
            .iter()
            .filter(|r| r.tag_list().contains(&tag.as_str()))
        {
            let node = r.node.clone().unwrap_or_else(|| self.config.node.clone());
            self.remember_node(r.vmid, &node);
            let Some((note, cfg)) = self.vm_note(&node, r.vmid, cx).await? else {
                continue;
            };
            if note.role != ROLE_IMAGE {
                continue;
            }
            // Someone protected it in PVE: golden never removes it (PVE would
            // refuse anyway), and says so in the plan.
            let protected = is_protected(&cfg)
                .then(|| "PVE's protection flag is set on it (Options > Protection)".to_owned());
            let Ok(meta) = Metadata::decode(&note.metadata, family) else {
                continue;
            };
            let in_progress = meta.status == Status::Candidate && !note.deadline_passed(now);
            out.push((
                Image {
                    meta,
                    id: r.vmid.to_string(),
                    size_bytes: boot_disk_size(&cfg).or(r.maxdisk),
                    in_progress,
                    protected,
                },
                note,
            ));
            bases.push(linked::base_volumes(&cfg));
        }
        if out.iter().any(|(i, _)| i.status() != Status::Candidate) {
            self.mark_linked_clones(&mut out, &bases, cx).await;
        }
        Ok(out)
    }

    /// A template whose base volume still backs linked clones cannot be
    /// deleted where the storage names the base in the clone's volume (dir,
    /// ZFS, RBD: PVE refuses, see `linked.rs`): say so up front. On LVM-thin
    /// nothing names the base and PVE lets it go, clones intact, so retention
    /// may prune it. `bases` are each image's disk volumes, in order.
    async fn mark_linked_clones(
        &self,
        images: &mut [(Image, Note)],
        bases: &[Vec<String>],
        cx: &Cx,
    ) {
        let mut listings: HashMap<String, std::result::Result<Vec<StorageVolume>, String>> =
            HashMap::new();
        for ((image, _), bases) in images.iter_mut().zip(bases) {
            let Ok(vmid) = image.id.parse::<u32>() else {
                continue;
            };
            if image.protected.is_some() {
                continue;
            }
            let mut clones = Vec::new();
            let mut unknown = None;
            for storage in storages_of(bases) {
                if !listings.contains_key(&storage) {
                    let listing = self.storage_images(&storage, cx).await;
                    listings.insert(storage.clone(), listing);
                }
                match &listings[&storage] {
                    Ok(vols) => clones.extend(linked::dependent_vms(vols, bases, vmid)),
                    Err(e) => unknown = Some(e.clone()),
                }
            }
            clones.sort_unstable();
            clones.dedup();
            image.protected = if !clones.is_empty() {
                let ids: Vec<String> = clones.iter().map(u32::to_string).collect();
                Some(format!(
                    "linked clones still use it (VM {})",
                    ids.join(", ")
                ))
            } else {
                // Without a storage listing we cannot rule linked clones out:
                // keeping an image is always the safe side.
                unknown.map(|e| format!("could not check for linked clones: {e}"))
            };
        }
    }

    /// The `images` volumes of a storage, as its plugin lists them, when the
    /// listing can be complete: PVE silently leaves out other VMs' disks
    /// unless the token has `Datastore.Audit` on the storage (pve-storage
    /// Content.pm index via `check_volume_access`), and a short listing would
    /// look like "no linked clones".
    async fn storage_images(
        &self,
        storage: &str,
        cx: &Cx,
    ) -> std::result::Result<Vec<StorageVolume>, String> {
        // Another VM's disk shows only with Datastore.Allocate on the
        // storage, or Datastore.Audit there and VM.Config.Disk on that VM
        // (pve-storage check_volume_access).
        let path = format!("/storage/{storage}");
        let api = self.api(cx);
        let on_storage = api.own_privileges(&path).await.map_err(|e| e.to_string())?;
        if !on_storage.contains("Datastore.Allocate") {
            if !on_storage.contains("Datastore.Audit") {
                return Err(format!(
                    "the API token lacks Datastore.Audit on {path}, so PVE hides other VMs' disks from it"
                ));
            }
            let on_vms = api
                .own_privileges("/vms")
                .await
                .map_err(|e| e.to_string())?;
            if !on_vms.contains("VM.Config.Disk") {
                return Err(
                    "the API token lacks VM.Config.Disk on /vms, so PVE hides other VMs' disks from it"
                        .into(),
                );
            }
        }
        self.api(cx)
            .node(&self.config.node)
            .storage_volumes(storage, "images")
            .await
            .map_err(|e| e.to_string())
    }

    async fn vm_by_id(&self, image: &Image) -> Result<u32> {
        image.id.parse::<u32>().map_err(|_| {
            Error::new(
                ErrorKind::Other,
                format!("{} has no Proxmox VM id (id {:?})", image.name(), image.id),
            )
        })
    }

    /// Rewrites name, tags and description in one config write, so lookups by
    /// name or tag switch over together.
    async fn write_metadata(&self, vmid: u32, meta: &Metadata, note: &Note, cx: &Cx) -> Result<()> {
        let node = self.node_of(vmid);
        let api = self.api(cx);
        let vm = api.node(&node).vm(vmid);
        let existing = config_str(&vm.config().await?, "description").unwrap_or_default();
        let form = params([
            ("name", encoding::vm_name(meta)),
            ("tags", encoding::tags_for(meta)),
            ("description", note.merge_into(&existing)),
        ]);
        vm.set_config(form).await
    }

    /// Stops (if running) and destroys a VM with purge; gone already is fine.
    async fn destroy_vm(&self, node: &str, vmid: u32, cx: &Cx) -> Result<()> {
        let api = self.api(cx);
        let node_api = api.node(node);
        let vm = node_api.vm(vmid);
        match vm.status().await {
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
            Ok(s) if s == "running" => {
                let upid = vm.stop().await?;
                tasks::wait(&node_api, &upid, &format!("stopping VM {vmid}"), cx).await?;
            }
            Ok(_) => {}
        }
        let upid = match vm.destroy().await {
            Err(e) if e.is_not_found() => return Ok(()),
            r => r?,
        };
        tasks::wait(&node_api, &upid, &format!("destroying VM {vmid}"), cx).await?;
        tracing::info!(vmid, node, "VM destroyed");
        Ok(())
    }

    /// Destroys a temporary VM, but only if it is still the one meant: the
    /// note on it must carry `claim` (VM ids are reused, and two runs racing
    /// for one id must never destroy each other's VM), and it must still be a
    /// candidate or a smoke clone (a ledger replayed late must never remove a
    /// published image). `claim = None` is the sweep's abandoned-VM case,
    /// where the caller has just read the note itself.
    async fn destroy_temporary(
        &self,
        node: &str,
        vmid: u32,
        claim: Option<&str>,
        cx: &Cx,
    ) -> Result<()> {
        let cfg = match self.api(cx).node(node).vm(vmid).config().await {
            Ok(c) => c,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let desc = config_str(&cfg, "description").unwrap_or_default();
        let Some(note) = Note::parse(&desc).filter(|n| n.belongs_to(vmid)) else {
            tracing::info!(
                vmid,
                "VM {vmid} carries no golden note of its own; leaving it"
            );
            return Ok(());
        };
        if claim.is_some() && note.claim.as_deref() != claim {
            tracing::info!(vmid, "VM {vmid} belongs to another run now; leaving it");
            return Ok(());
        }
        let status = note.metadata.get(crate::lifecycle::metadata::KEY_STATUS);
        let temporary = note.role == ROLE_SMOKE || status.map(String::as_str) == Some("candidate");
        if !temporary {
            tracing::warn!(vmid, "not destroying VM {vmid}: it is a golden image now");
            return Ok(());
        }
        self.destroy_vm(node, vmid, cx).await
    }
}

/// The storages holding `volids`, each once, in order.
fn storages_of(volids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for st in volids
        .iter()
        .filter_map(|v| v.split_once(':').map(|(s, _)| s))
    {
        if !out.iter().any(|o| o == st) {
            out.push(st.to_owned());
        }
    }
    out
}

/// The one Proxmox ledger payload: `{"destroy_vm": "<node>/<vmid>/<claim>"}`.
const LEDGER_DESTROY_VM: &str = "destroy_vm";

/// A temporary VM as the ledger names it: `<node>/<vmid>/<claim>`, where
/// `claim` is the nonce the creating run wrote into the VM's note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VmRef {
    pub node: String,
    pub vmid: u32,
    pub claim: String,
}

impl VmRef {
    /// The ledger entry that destroys this VM while it is still this run's.
    pub fn undo(&self) -> UndoAction {
        UndoAction::Platform {
            payload: serde_json::json!({
                LEDGER_DESTROY_VM: format!("{}/{}/{}", self.node, self.vmid, self.claim)
            }),
        }
    }

    fn from_undo(payload: &serde_json::Value) -> Option<VmRef> {
        payload
            .get(LEDGER_DESTROY_VM)
            .and_then(serde_json::Value::as_str)
            .and_then(VmRef::parse)
    }

    fn parse(id: &str) -> Option<VmRef> {
        let mut parts = id.splitn(3, '/');
        let node = parts.next()?.to_owned();
        let vmid = parts.next()?.parse().ok()?;
        let claim = parts.next().filter(|c| !c.is_empty())?.to_owned();
        Some(VmRef { node, vmid, claim })
    }
}

/// A nonce unique to one VM creation by this process.
pub(crate) fn new_claim() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}-{nanos:x}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

#[async_trait]
impl Platform for ProxmoxPlatform {
    fn kind(&self) -> &'static str {
        "proxmox"
    }

    fn ledger_scope(&self) -> String {
        self.config.ledger_scope.clone()
    }

    async fn list_images(&self, family: &Family, cx: &Cx) -> Result<Vec<Image>> {
        let images = self.family_images(family, None, cx).await?;
        Ok(images.into_iter().map(|(i, _)| i).collect())
    }

    async fn reserve(&self, meta: &Metadata, input: &BuildInput, cx: &Cx) -> Result<Image> {
        build::reserve(self, meta, input, cx).await
    }

    async fn build(&self, candidate: &Image, input: &BuildInput, cx: &Cx) -> Result<Image> {
        build::run(self, candidate, input.recipe, cx).await
    }

    async fn smoke_test(&self, image: &Image, spec: &SmokeSpec, cx: &Cx) -> Result<Report> {
        smoke::run(self, image, spec, cx).await
    }

    async fn publish(&self, image: &Image, report: &Report, cx: &Cx) -> Result<Image> {
        let vmid = self.vm_by_id(image).await?;
        let mut meta = image.meta.clone();
        meta.status = Status::Validated;
        meta.validated_at = Some(encoding::rfc3339(now()));
        let note = Note::image(&meta, vmid, None, Some(report.clone()));
        self.write_metadata(vmid, &meta, &note, cx).await?;
        Ok(Image {
            meta,
            in_progress: false,
            ..image.clone()
        })
    }

    async fn mark_failed(&self, image: &Image, report: &Report, cx: &Cx) -> Result<()> {
        let vmid = self.vm_by_id(image).await?;
        let mut meta = image.meta.clone();
        meta.status = Status::Failed;
        let note = Note::image(&meta, vmid, None, Some(report.clone()));
        self.write_metadata(vmid, &meta, &note, cx).await
    }

    async fn retag(&self, image: &Image, tags: &BTreeMap<String, String>, cx: &Cx) -> Result<()> {
        let vmid = self.vm_by_id(image).await?;
        let node = self.node_of(vmid);
        let mut note = self
            .note_of(&node, vmid, cx)
            .await?
            .ok_or_else(|| Error::not_found(format!("VM {vmid} ({})", image.name())))?;
        let mut meta = image.meta.clone();
        meta.tags = tags.clone();
        note.metadata = meta.encode();
        self.write_metadata(vmid, &meta, &note, cx).await
    }

    async fn delete(&self, image: &Image, cx: &Cx) -> Result<()> {
        let vmid = self.vm_by_id(image).await?;
        let node = self.node_of(vmid);
        // Re-check ownership right before deleting (only our own, ever).
        let Some(note) = self.note_of(&node, vmid, cx).await? else {
            return Err(Error::not_found(format!(
                "VM {vmid} is gone or no longer golden's"
            )));
        };
        if Metadata::decode(&note.metadata, image.meta.family()).is_err() {
            return Err(Error::not_found(format!(
                "VM {vmid} is not {} any more",
                image.name()
            )));
        }
        self.destroy_vm(&node, vmid, cx).await
    }

    async fn undo(&self, action: &UndoAction, cx: &Cx) -> Result<()> {
        match action {
            UndoAction::Platform { payload } => {
                let r = VmRef::from_undo(payload).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Other,
                        format!("unknown Proxmox ledger entry {payload}"),
                    )
                })?;
                self.destroy_temporary(&r.node, r.vmid, Some(&r.claim), cx)
                    .await
            }
            UndoAction::DiscardCandidate { family, name } => {
                let Ok(family) = Family::try_from(family.clone()) else {
                    return Ok(());
                };
                for (image, _) in self.family_images(&family, None, cx).await? {
                    if image.name().to_string() == *name && image.status() == Status::Candidate {
                        let vmid = self.vm_by_id(&image).await?;
                        tracing::info!(image = %name, vmid, "discarding candidate");
                        self.destroy_vm(&self.node_of(vmid), vmid, cx).await?;
                    }
                }
                Ok(())
            }
            // The pipeline carries out machine-local actions itself.
            UndoAction::KillProcess { .. } | UndoAction::RemovePath { .. } => Ok(()),
        }
    }

    async fn sweep(&self, cx: &Cx) -> Result<()> {
        // Candidates and smoke clones whose deadline passed were abandoned by
        // a run that died without a ledger (another machine, a lost disk).
        let resources = self.api(cx).vm_resources().await?;
        let now = now();
        for r in resources.iter().filter(|r| {
            let tags = r.tag_list();
            tags.contains(&encoding::TAG_SMOKE)
                || tags.contains(&encoding::status_tag(Status::Candidate).as_str())
        }) {
            let node = r.node.clone().unwrap_or_else(|| self.config.node.clone());
            let Some(note) = self.note_of(&node, r.vmid, cx).await? else {
                continue;
            };
            if note.deadline_passed(now) {
                tracing::info!(vmid = r.vmid, name = ?r.name, "removing an abandoned golden VM");
                if let Err(e) = self.destroy_temporary(&node, r.vmid, None, cx).await {
                    tracing::warn!(vmid = r.vmid, error = %e, "could not remove an abandoned VM");
                }
            }
        }
        Ok(())
    }

    async fn report(&self, image: &Image, cx: &Cx) -> Result<Option<Report>> {
        let vmid = self.vm_by_id(image).await?;
        Ok(self
            .note_of(&self.node_of(vmid), vmid, cx)
            .await?
            .and_then(|n| n.report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_vm_refs_round_trip_with_the_claim() {
        let r = VmRef {
            node: "pve".into(),
            vmid: 900_004,
            claim: new_claim(),
        };
        let UndoAction::Platform { payload } = r.undo() else {
            panic!("not a platform entry")
        };
        assert_eq!(
            payload,
            serde_json::json!({"destroy_vm": format!("pve/900004/{}", r.claim)})
        );
        assert_eq!(VmRef::from_undo(&payload), Some(r));
        assert_eq!(VmRef::parse("pve/x/y"), None);
        assert_eq!(VmRef::parse("pve/900004"), None);
        assert_eq!(VmRef::parse("pve/900004/"), None);
        assert_ne!(new_claim(), new_claim());
    }
}
