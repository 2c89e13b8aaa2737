//! The cleanup ledger. A step records how to undo what it created right after
//! creating it; the pipeline drains the ledger in reverse on every exit path.
//! The ledger is also written to disk, so a run killed outright (SIGKILL, power
//! loss) is finished by the sweep at the start of the next run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::process::ProcessId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum UndoAction {
    /// Kill a helper process (a QEMU VM).
    KillProcess { process: ProcessId },
    /// Remove a file or a directory tree (overlays, seeds, work dirs).
    RemovePath { path: PathBuf },
    /// Something only one platform knows how to undo (a temporary VM, a
    /// droplet, an SSH key), in that platform's own encoding: `lifecycle`
    /// stores and replays it without reading it.
    Platform { payload: serde_json::Value },
    /// Remove a candidate image that never got to publish or fail.
    DiscardCandidate { family: String, name: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct LedgerFile {
    owner: ProcessId,
    entries: Vec<UndoAction>,
}

/// Where the ledgers of one platform instance live: one directory per
/// platform and scope (a store, a cluster) under the provider's state dir.
pub fn runs_dir(state_dir: &Path, platform: &str, scope: &str) -> PathBuf {
    state_dir.join("runs").join(platform).join(scope)
}

/// Every ledger file under `root`, at any depth: what a leak check asserts
/// is empty once no run is going on.
pub fn ledger_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in rd.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().and_then(|e| e.to_str()) == Some("json") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[derive(Debug)]
pub struct Ledger {
    file: Option<PathBuf>,
    owner: ProcessId,
    entries: Vec<UndoAction>,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl Ledger {
    /// A ledger persisted under `dir` (one file per run).
    pub fn persisted(dir: &Path) -> Self {
        let owner = ProcessId::current();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        Ledger {
            file: Some(dir.join(format!("run-{}-{n}.json", owner.pid))),
            owner,
            entries: Vec::new(),
        }
    }

    /// The directory of a persisted ledger.
    pub fn dir(&self) -> Option<&Path> {
        self.file.as_deref().and_then(Path::parent)
    }

    pub fn in_memory() -> Self {
        Ledger {
            file: None,
            owner: ProcessId::current(),
            entries: Vec::new(),
        }
    }

    pub fn push(&mut self, action: UndoAction) {
        tracing::debug!(?action, "ledger: recorded undo");
        self.entries.push(action);
        self.save();
    }

    /// Forget an undo because the thing is now meant to stay (a published image).
    pub fn forget(&mut self, action: &UndoAction) {
        self.entries.retain(|a| a != action);
        self.save();
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[UndoAction] {
        &self.entries
    }

    /// Takes every entry, newest first. The file stays until `close`, so a
    /// crash during cleanup leaves the actions for the next sweep.
    pub fn drain_reverse(&mut self) -> Vec<UndoAction> {
        let mut v = std::mem::take(&mut self.entries);
        v.reverse();
        v
    }

    /// Called once every drained action has been carried out.
    pub fn close(&mut self) {
        if self.entries.is_empty() {
            if let Some(f) = &self.file {
                let _ = std::fs::remove_file(f);
            }
        } else {
            self.save();
        }
    }

    /// Puts back actions that failed, so the next sweep retries them.
    pub fn restore(&mut self, failed: Vec<UndoAction>) {
        self.entries.extend(failed);
        self.save();
    }

    fn save(&self) {
        let Some(path) = &self.file else { return };
        if self.entries.is_empty() {
            let _ = std::fs::remove_file(path);
            return;
        }
        let body = LedgerFile {
            owner: self.owner,
            entries: self.entries.clone(),
        };
        // A ledger that cannot be written is reported, never replaced by an
        // empty file: the in-memory entries still drive this run's cleanup.
        let written = serde_json::to_vec_pretty(&body)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| crate::fsutil::write_atomic(path, &bytes));
        if let Err(e) = written {
            tracing::warn!(error = %e, path = %path.display(), "could not persist the cleanup ledger");
        }
    }
}

/// Ledgers left by runs whose process is gone: (file, actions newest first).
pub fn orphaned(dir: &Path) -> Vec<(PathBuf, Vec<UndoAction>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(file) = serde_json::from_slice::<LedgerFile>(&bytes) else {
            continue;
        };
        if file.owner.is_alive() {
            continue;
        }
        let mut entries = file.entries;
        entries.reverse();
        out.push((path, entries));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persisted_ledger_tracks_entries_and_vanishes_when_closed() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::persisted(dir.path());
        l.push(UndoAction::RemovePath {
            path: "/tmp/a".into(),
        });
        l.push(UndoAction::RemovePath {
            path: "/tmp/b".into(),
        });
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let drained = l.drain_reverse();
        assert_eq!(
            drained[0],
            UndoAction::RemovePath {
                path: "/tmp/b".into()
            }
        );
        l.close();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn forget_keeps_what_is_meant_to_stay() {
        let mut l = Ledger::in_memory();
        let cand = UndoAction::DiscardCandidate {
            family: "f".into(),
            name: "f-20260101-001".into(),
        };
        l.push(cand.clone());
        l.forget(&cand);
        assert!(l.is_empty());
    }

    #[test]
    fn orphaned_finds_only_dead_owners() {
        let dir = tempfile::tempdir().unwrap();
        let live = LedgerFile {
            owner: ProcessId::current(),
            entries: vec![UndoAction::RemovePath { path: "/x".into() }],
        };
        let dead_owner = ProcessId {
            pid: std::process::id(),
            start_ticks: 1,
        };
        let dead = LedgerFile {
            owner: dead_owner,
            entries: vec![
                UndoAction::RemovePath { path: "/1".into() },
                UndoAction::RemovePath { path: "/2".into() },
            ],
        };
        std::fs::write(
            dir.path().join("live.json"),
            serde_json::to_vec(&live).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("dead.json"),
            serde_json::to_vec(&dead).unwrap(),
        )
        .unwrap();
        let found = orphaned(dir.path());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1[0], UndoAction::RemovePath { path: "/2".into() });
    }
}
