//! NoCloud seeds: an ISO 9660 volume labelled `cidata` holding `user-data` and
//! `meta-data`, which cloud-init finds by label.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tokio::process::Command;

/// Writes the seed ISO into `dir` and returns its path.
pub async fn make_seed(dir: &Path, user_data: &str, meta_data: &str) -> Result<PathBuf> {
    let src = dir.join("seed");
    tokio::fs::create_dir_all(&src).await?;
    tokio::fs::write(src.join("user-data"), user_data).await?;
    tokio::fs::write(src.join("meta-data"), meta_data).await?;
    let iso = dir.join("seed.iso");
    let tool = ["genisoimage", "mkisofs", "xorrisofs"]
        .into_iter()
        .find(|t| which(t))
        .context("no ISO tool found: install Debian's genisoimage")?;
    let out = Command::new(tool)
        .arg("-quiet")
        .arg("-output")
        .arg(&iso)
        .args(["-volid", "cidata", "-joliet", "-rock"])
        .arg(src.join("user-data"))
        .arg(src.join("meta-data"))
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {tool}"))?;
    if !out.status.success() {
        bail!(
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    tokio::fs::remove_dir_all(&src).await.ok();
    Ok(iso)
}

pub fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn seed_is_an_iso_labelled_cidata() {
        let dir = tempfile::tempdir().unwrap();
        let iso = make_seed(dir.path(), "#cloud-config\n{}\n", "instance-id: i-1\n")
            .await
            .unwrap();
        let bytes = std::fs::read(&iso).unwrap();
        // The primary volume descriptor sits at sector 16; its volume id at offset 40.
        let pvd = &bytes[16 * 2048..17 * 2048];
        assert_eq!(&pvd[1..6], b"CD001");
        assert_eq!(std::str::from_utf8(&pvd[40..46]).unwrap(), "cidata");
        assert!(
            !dir.path().join("seed").exists(),
            "staging dir must be removed"
        );
    }
}
