//! The local image store: `<store_dir>/<family>/<name>.qcow2` with a JSON
//! sidecar `<name>.json` holding golden's metadata and the validation report.
//! Every sidecar write is atomic (temp file + rename); a new candidate's
//! sidecar appears with `link(2)`, which fails if the name is taken: that is
//! what makes build-number allocation safe between concurrent applies.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;
use crate::lifecycle::image::Image;
use crate::lifecycle::metadata::{Metadata, Status};
use crate::lifecycle::naming::Family;
use crate::lifecycle::report::Report;
use crate::platforms::Error;
use crate::process::ProcessId;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sidecar {
    /// The flat metadata encoding (`golden-*` keys plus user tags).
    pub metadata: BTreeMap<String, String>,
    /// The process building this candidate; a candidate whose builder is gone
    /// is abandoned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<ProcessId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Report>,
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    cache: Arc<Mutex<HashMap<PathBuf, CachedFamily>>>,
    /// One reader per family directory: parallel lookups of a family (a
    /// plan's data sources) wait for the first read instead of repeating it.
    readers: Arc<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>>,
}

/// A family directory's images, valid while the directory's mtime is
/// unchanged. Every sidecar write is a rename into the directory, which bumps
/// its mtime, so a changed family is always re-read. A directory modified in
/// the last `RACY` is never served from cache: its mtime could still tick
/// within the filesystem's timestamp granularity (git's "racy" rule).
#[derive(Debug, Clone)]
struct CachedFamily {
    mtime: SystemTime,
    images: Arc<Vec<Image>>,
    /// Candidates' sidecars: their size and builder change without a rename.
    candidates: Arc<Vec<(Metadata, Sidecar)>>,
}

const RACY: Duration = Duration::from_secs(2);
impl Store {
    pub fn new(root: PathBuf) -> Self {
        Store {
            root,
            cache: Arc::default(),
            readers: Arc::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// golden's own working area inside the store.
    pub fn internal(&self, what: &str) -> PathBuf {
        self.root.join(".golden").join(what)
    }

    /// Where builds and smoke tests keep their temporary directories
    /// (overlays, seeds, sockets); empty when no run is going on.
    pub fn work_root(root: &Path) -> PathBuf {
        Store::new(root.to_path_buf()).internal("work")
    }

    pub fn family_dir(&self, family: &str) -> PathBuf {
        self.root.join(family)
    }

    pub fn image_path(&self, family: &str, name: &str) -> PathBuf {
        self.family_dir(family).join(format!("{name}.qcow2"))
    }

    pub fn sidecar_path(&self, family: &str, name: &str) -> PathBuf {
        self.family_dir(family).join(format!("{name}.json"))
    }

    /// The image's SPDX 2.3 document, next to it: `<name>.spdx.json`.
    pub fn sbom_path(&self, family: &str, name: &str) -> PathBuf {
        self.family_dir(family).join(format!("{name}{SBOM_SUFFIX}"))
    }

    pub fn write_sbom(&self, family: &str, name: &str, doc: &serde_json::Value) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(doc)?;
        write_atomic(&self.sbom_path(family, name), &bytes)
    }

    pub fn read_sidecar(&self, family: &str, name: &str) -> Result<Option<Sidecar>> {
        read_sidecar(&self.sidecar_path(family, name))
    }

    pub fn write_sidecar(&self, family: &str, name: &str, sidecar: &Sidecar) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(sidecar)?;
        write_atomic(&self.sidecar_path(family, name), &bytes)
    }

    /// Creates the sidecar only if no image of that name exists.
    pub fn create_sidecar(&self, family: &str, name: &str, sidecar: &Sidecar) -> Result<(), Error> {
        let dir = self.family_dir(family);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::other(format!("creating {}", dir.display()), e.into()))?;
        let target = self.sidecar_path(family, name);
        if self.image_path(family, name).exists() {
            return Err(Error::already_exists(format!("{name} exists in the store")));
        }
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.json.new-{}-{n}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(sidecar)
            .map_err(|e| Error::other("encoding sidecar", e.into()))?;
        std::fs::write(&tmp, bytes)
            .map_err(|e| Error::other(format!("writing {}", tmp.display()), e.into()))?;
        let linked = std::fs::hard_link(&tmp, &target);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::already_exists(format!("{name} is already taken")))
            }
            Err(e) => Err(Error::other(
                format!("creating {}", target.display()),
                e.into(),
            )),
        }
    }

    /// Every image of `family` that golden built (see `read_family`).
    pub fn list(&self, family: &Family) -> Result<Vec<Image>> {
        let dir = self.family_dir(family.as_str());
        let mtime = match std::fs::metadata(&dir) {
            Ok(m) => m.modified()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        let settled = SystemTime::now()
            .duration_since(mtime)
            .map(|age| age >= RACY)
            .unwrap_or(false);
        if !settled {
            return Ok(self
                .read_images(&dir, family)?
                .into_iter()
                .map(|(i, _)| i)
                .collect());
        }
        if let Some(images) = self.cached(&dir, mtime) {
            return Ok(images);
        }
        let reader = self.reader(&dir);
        let _one_reader = reader.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(images) = self.cached(&dir, mtime) {
            return Ok(images);
        }
        let entries = self.read_images(&dir, family)?;
        let images: Vec<Image> = entries.iter().map(|(i, _)| i.clone()).collect();
        let candidates = entries
            .into_iter()
            .filter(|(i, _)| i.meta.status == Status::Candidate)
            .map(|(i, sidecar)| (i.meta, sidecar))
            .collect();
        let fresh = CachedFamily {
            mtime,
            images: Arc::new(images.clone()),
            candidates: Arc::new(candidates),
        };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dir, fresh);
        Ok(images)
    }

    fn read_images(&self, dir: &Path, family: &Family) -> Result<Vec<(Image, Sidecar)>> {
        Ok(read_family(dir, family)?
            .into_iter()
            .map(|(meta, sidecar)| (self.image_from(meta, &sidecar), sidecar))
            .collect())
    }

    /// The cached images of `dir` if its mtime still matches. A candidate's
    /// size and builder change without a rename, so candidates are re-read.
    fn cached(&self, dir: &Path, mtime: SystemTime) -> Option<Vec<Image>> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(dir)
            .filter(|c| c.mtime == mtime)
            .cloned()?;
        let settled = cached
            .images
            .iter()
            .filter(|i| i.meta.status != Status::Candidate)
            .cloned();
        let candidates = cached
            .candidates
            .iter()
            .map(|(meta, sidecar)| self.image_from(meta.clone(), sidecar));
        Some(settled.chain(candidates).collect())
    }

    fn reader(&self, dir: &Path) -> Arc<Mutex<()>> {
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(dir.to_path_buf())
            .or_default()
            .clone()
    }

    pub fn image_from(&self, meta: Metadata, sidecar: &Sidecar) -> Image {
        let path = self.image_path(meta.name.family.as_str(), &meta.name.to_string());
        let size_bytes = std::fs::metadata(&path).ok().map(|m| m.len());
        let in_progress = meta.status == Status::Candidate
            && sidecar.builder.map(|b| b.is_alive()).unwrap_or(false);
        Image {
            meta,
            id: path.display().to_string(),
            size_bytes,
            in_progress,
            protected: None,
        }
    }

    /// Removes the image file, then its sidecar: a crash in between leaves a
    /// listed image with no file, which the next delete finishes.
    pub fn remove(&self, family: &str, name: &str) -> Result<()> {
        for p in [
            self.image_path(family, name),
            self.sbom_path(family, name),
            self.sidecar_path(family, name),
        ] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
            }
        }
        Ok(())
    }

    /// Families present in the store (for the start-of-run sweep).
    pub fn families(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| !n.starts_with('.'))
            .collect()
    }
}

const SBOM_SUFFIX: &str = ".spdx.json";

/// Decodes every sidecar of `family` in `dir`. Files without a sidecar, or with
/// a sidecar for another family, are not ours and not returned.
fn read_family(dir: &Path, family: &Family) -> Result<Vec<(Metadata, Sidecar)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let sidecars: Vec<PathBuf> = rd
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".json") && !name.ends_with(SBOM_SUFFIX) && !name.starts_with('.')
        })
        .collect();
    // A large family is read on every core: a plan's first lookup waits for it.
    const PER_THREAD: usize = 256;
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .min(sidecars.len().div_ceil(PER_THREAD))
        .max(1);
    if threads == 1 {
        return Ok(decode_sidecars(&sidecars, family));
    }
    let chunk = sidecars.len().div_ceil(threads);
    Ok(std::thread::scope(|scope| {
        let readers: Vec<_> = sidecars
            .chunks(chunk)
            .map(|paths| scope.spawn(move || decode_sidecars(paths, family)))
            .collect();
        readers
            .into_iter()
            .flat_map(|r| r.join().unwrap_or_default())
            .collect()
    }))
}

/// golden's images among `paths`; anything unreadable or not ours is skipped.
fn decode_sidecars(paths: &[PathBuf], family: &Family) -> Vec<(Metadata, Sidecar)> {
    let mut entries = Vec::new();
    for path in paths {
        let Ok(Some(sidecar)) = read_sidecar(path) else {
            continue;
        };
        let Ok(meta) = Metadata::decode(&sidecar.metadata, family) else {
            continue;
        };
        // The file name must agree with the metadata, or it is not ours.
        if path.file_stem().and_then(|s| s.to_str()) != Some(&meta.name.to_string()) {
            continue;
        }
        entries.push((meta, sidecar));
    }
    entries
}

fn read_sidecar(path: &Path) -> Result<Option<Sidecar>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Maps an I/O-ish failure to a platform error of kind `Other`.
pub fn io_err(what: impl Into<String>) -> impl FnOnce(anyhow::Error) -> Error {
    let what = what.into();
    move |e| Error::other(what, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::naming::{BuildDate, ImageName, NamingRules};

    fn meta(family: &Family, build: u16, status: Status) -> Metadata {
        Metadata {
            name: ImageName::new(family.clone(), BuildDate::parse("20260101").unwrap(), build),
            builder_version: "0.1.0".into(),
            recipe_hash: "h".into(),
            status,
            validated_at: None,
            tags: BTreeMap::new(),
        }
    }

    fn sidecar(m: &Metadata) -> Sidecar {
        Sidecar {
            metadata: m.encode(),
            builder: None,
            validation: None,
        }
    }

    #[test]
    fn lists_only_golden_images_of_the_family() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().into());
        let fam = Family::parse("base", NamingRules { allow_dot: true }).unwrap();
        let m = meta(&fam, 1, Status::Validated);
        store
            .create_sidecar("base", &m.name.to_string(), &sidecar(&m))
            .unwrap();
        // A user's own file in the family directory, and a stray sidecar-looking file.
        std::fs::write(store.family_dir("base").join("handmade.qcow2"), b"x").unwrap();
        std::fs::write(
            store.family_dir("base").join("notes.json"),
            b"{\"metadata\":{}}",
        )
        .unwrap();
        let listed = store.list(&fam).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name().to_string(), "base-20260101-001");
    }

    #[test]
    fn create_sidecar_refuses_a_taken_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().into());
        let fam = Family::parse("base", NamingRules { allow_dot: true }).unwrap();
        let m = meta(&fam, 1, Status::Candidate);
        store
            .create_sidecar("base", "base-20260101-001", &sidecar(&m))
            .unwrap();
        let err = store
            .create_sidecar("base", "base-20260101-001", &sidecar(&m))
            .unwrap_err();
        assert!(err.is_already_exists());
    }

    #[test]
    fn candidate_with_a_live_builder_is_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().into());
        let fam = Family::parse("base", NamingRules { allow_dot: true }).unwrap();
        let m = meta(&fam, 1, Status::Candidate);
        let mut s = sidecar(&m);
        s.builder = Some(ProcessId::current());
        store
            .create_sidecar("base", "base-20260101-001", &s)
            .unwrap();
        assert!(store.list(&fam).unwrap()[0].in_progress);
        s.builder = Some(ProcessId {
            pid: std::process::id(),
            start_ticks: 1,
        });
        store
            .write_sidecar("base", "base-20260101-001", &s)
            .unwrap();
        assert!(!store.list(&fam).unwrap()[0].in_progress);
    }

    #[test]
    fn cached_listing_sees_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().into());
        let fam = Family::parse("base", NamingRules { allow_dot: true }).unwrap();
        let m = meta(&fam, 1, Status::Candidate);
        store
            .create_sidecar("base", "base-20260101-001", &sidecar(&m))
            .unwrap();
        // Age the directory so the listing is cached.
        let st = std::process::Command::new("touch")
            .args(["-d", "2020-01-01"])
            .arg(store.family_dir("base"))
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(store.list(&fam).unwrap()[0].status(), Status::Candidate);
        assert_eq!(store.list(&fam).unwrap()[0].status(), Status::Candidate);
        let validated = meta(&fam, 1, Status::Validated);
        store
            .write_sidecar("base", "base-20260101-001", &sidecar(&validated))
            .unwrap();
        assert_eq!(store.list(&fam).unwrap()[0].status(), Status::Validated);
    }
}
