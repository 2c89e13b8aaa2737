//! The `local` platform: QEMU on this machine, images in a directory.
//!
//! Build: overlay on the source, boot with a NoCloud seed, provision by
//! cloud-init, power off, flatten to a standalone compressed qcow2.
//! Smoke test: overlay on the candidate, boot with a fresh seed and a throwaway
//! SSH key, check over the serial console, the guest agent and SSH.
//! Publish: the sidecar's status becomes `validated`.

mod build;
mod smoke;
pub mod source;
pub mod spec;
pub mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;

use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::ledger::UndoAction;
use crate::lifecycle::metadata::{Metadata, Status};
use crate::lifecycle::naming::Family;
use crate::lifecycle::recipe::{BuildInput, SmokeSpec};
use crate::lifecycle::report::Report;
use crate::platforms::{Context as _, Error, Platform, Result};
use crate::process::ProcessId;
use crate::qemu::Accel;
use store::{Sidecar, Store};

pub struct LocalPlatform {
    store: Store,
    accel: Accel,
}

/// Guest size for builds and smoke tests.
const MEMORY_MIB: u32 = 1024;
const CPUS: u32 = 2;

impl LocalPlatform {
    pub fn new(store_dir: PathBuf, accel: Accel) -> Self {
        LocalPlatform {
            store: Store::new(store_dir),
            accel,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// A per-step scratch directory inside the store, recorded for removal.
    fn workdir(&self, label: &str, cx: &Cx) -> Result<PathBuf> {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = Store::work_root(self.store.root())
            .join(format!("{label}-{}-{n:x}", std::process::id()));
        std::fs::create_dir_all(&dir).ctx(format!("creating {}", dir.display()))?;
        cx.record(UndoAction::RemovePath { path: dir.clone() });
        Ok(dir)
    }

    fn update_sidecar(
        &self,
        image: &Image,
        f: impl FnOnce(&mut Sidecar, &mut Metadata),
    ) -> Result<Image> {
        let family = image.meta.name.family.to_string();
        let name = image.name().to_string();
        let mut sidecar = self
            .store
            .read_sidecar(&family, &name)
            .ctx(format!("reading metadata of {name}"))?
            .ok_or_else(|| Error::not_found(format!("image {name} is gone from the store")))?;
        let mut meta = Metadata::decode(&sidecar.metadata, &image.meta.name.family)
            .map_err(|e| Error::other(format!("metadata of {name}"), e.into()))?;
        f(&mut sidecar, &mut meta);
        sidecar.metadata = meta.encode();
        self.store
            .write_sidecar(&family, &name, &sidecar)
            .ctx(format!("writing metadata of {name}"))?;
        Ok(self.store.image_from(meta, &sidecar))
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[async_trait]
impl Platform for LocalPlatform {
    fn kind(&self) -> &'static str {
        "local"
    }

    /// One scope per store directory: `store-<digest of its path>`.
    fn ledger_scope(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.store.root().as_os_str().as_encoded_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("store-{hex}")
    }

    async fn list_images(&self, family: &Family, _cx: &Cx) -> Result<Vec<Image>> {
        self.store.list(family).ctx(format!(
            "listing family {family} in {}",
            self.store.root().display()
        ))
    }

    async fn reserve(&self, meta: &Metadata, _input: &BuildInput, _cx: &Cx) -> Result<Image> {
        let sidecar = Sidecar {
            metadata: meta.encode(),
            builder: Some(ProcessId::current()),
            validation: None,
        };
        let family = meta.name.family.to_string();
        self.store
            .create_sidecar(&family, &meta.name.to_string(), &sidecar)?;
        Ok(self.store.image_from(meta.clone(), &sidecar))
    }

    async fn build(&self, candidate: &Image, input: &BuildInput, cx: &Cx) -> Result<Image> {
        build::run(self, candidate, input, cx).await
    }

    async fn smoke_test(&self, image: &Image, spec: &SmokeSpec, cx: &Cx) -> Result<Report> {
        smoke::run(self, image, spec, cx).await
    }

    async fn publish(&self, image: &Image, report: &Report, _cx: &Cx) -> Result<Image> {
        let validated_at = now_rfc3339();
        if let Some(manifest) = &report.packages {
            let name = image.name().to_string();
            let family = image.meta.name.family.as_str();
            let spdx = manifest.to_spdx(&name, &validated_at);
            self.store
                .write_sbom(family, &name, &spdx)
                .ctx(format!("writing the SPDX document of {name}"))?;
        }
        self.update_sidecar(image, |s, m| {
            m.status = Status::Validated;
            m.validated_at = Some(validated_at);
            s.builder = None;
            s.validation = Some(report.clone());
        })
    }

    async fn mark_failed(&self, image: &Image, report: &Report, _cx: &Cx) -> Result<()> {
        self.update_sidecar(image, |s, m| {
            m.status = Status::Failed;
            s.builder = None;
            s.validation = Some(report.clone());
        })
        .map(|_| ())
    }

    async fn retag(&self, image: &Image, tags: &BTreeMap<String, String>, _cx: &Cx) -> Result<()> {
        self.update_sidecar(image, |_, m| m.tags = tags.clone())
            .map(|_| ())
    }

    async fn delete(&self, image: &Image, _cx: &Cx) -> Result<()> {
        let name = image.name().to_string();
        self.store
            .remove(image.meta.name.family.as_str(), &name)
            .ctx(format!("deleting {name}"))
    }

    async fn undo(&self, action: &UndoAction, _cx: &Cx) -> Result<()> {
        match action {
            // The pipeline carries out machine-local actions itself.
            UndoAction::KillProcess { .. } | UndoAction::RemovePath { .. } => Ok(()),
            UndoAction::Platform { payload } => Err(Error::new(
                crate::platforms::ErrorKind::Other,
                format!("the local platform has no ledger entry {payload}"),
            )),
            UndoAction::DiscardCandidate { family, name } => {
                // Only a candidate: a failed or published image stays.
                let sidecar = self
                    .store
                    .read_sidecar(family, name)
                    .ctx(format!("reading {name}"))?;
                let is_candidate = sidecar
                    .and_then(|s| {
                        s.metadata
                            .get(crate::lifecycle::metadata::KEY_STATUS)
                            .cloned()
                    })
                    .map(|s| s == Status::Candidate.as_str())
                    .unwrap_or(false);
                if is_candidate {
                    tracing::info!(image = %name, "discarding candidate");
                    self.store
                        .remove(family, name)
                        .ctx(format!("discarding candidate {name}"))?;
                }
                Ok(())
            }
        }
    }

    async fn sweep(&self, _cx: &Cx) -> Result<()> {
        // Candidates whose builder died without a ledger entry (e.g. killed
        // between reserve and record) are abandoned: remove them too.
        for family in self.store.families() {
            let Ok(fam) = Family::try_from(family.clone()) else {
                continue;
            };
            for image in self.store.list(&fam).unwrap_or_default() {
                if image.status() == Status::Candidate && !image.in_progress {
                    tracing::info!(image = %image.name(), "removing abandoned candidate");
                    let _ = self.store.remove(&family, &image.name().to_string());
                }
            }
        }
        Ok(())
    }

    async fn report(&self, image: &Image, _cx: &Cx) -> Result<Option<Report>> {
        let family = image.meta.name.family.to_string();
        let s = self
            .store
            .read_sidecar(&family, &image.name().to_string())
            .ctx("reading sidecar")?;
        Ok(s.and_then(|s| s.validation))
    }
}
