//! `qemu-img`: overlays, inspection and flattening.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tokio::process::Command;

#[derive(Debug, Clone, Deserialize)]
pub struct ImageInfo {
    pub format: String,
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
    #[serde(rename = "actual-size", default)]
    pub actual_size: u64,
    #[serde(rename = "backing-filename", default)]
    pub backing_filename: Option<String>,
}

async fn qemu_img(args: &[&std::ffi::OsStr]) -> Result<Vec<u8>> {
    let out = Command::new("qemu-img")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .context("running qemu-img (install Debian's qemu-utils)")?;
    if !out.status.success() {
        bail!(
            "qemu-img {} failed: {}",
            args.first()
                .map(|a| a.to_string_lossy())
                .unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

pub async fn info(path: &Path) -> Result<ImageInfo> {
    let out = qemu_img(&[
        "info".as_ref(),
        "--output=json".as_ref(),
        "-U".as_ref(),
        path.as_os_str(),
    ])
    .await?;
    serde_json::from_slice(&out)
        .with_context(|| format!("parsing qemu-img info of {}", path.display()))
}

/// `info` for callers that cannot await (plan-time checks): the same
/// answer, from a blocking `qemu-img info`.
pub fn info_blocking(path: &Path) -> Result<ImageInfo> {
    let out = std::process::Command::new("qemu-img")
        .args([
            "info".as_ref(),
            "--output=json".as_ref(),
            "-U".as_ref(),
            path.as_os_str(),
        ])
        .output()
        .context("running qemu-img (install Debian's qemu-utils)")?;
    if !out.status.success() {
        bail!(
            "qemu-img info failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("parsing qemu-img info of {}", path.display()))
}

/// A copy-on-write overlay on `backing`: the backing file is never written.
pub async fn create_overlay(backing: &Path, backing_format: &str, overlay: &Path) -> Result<()> {
    qemu_img(&[
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-F".as_ref(),
        backing_format.as_ref(),
        "-b".as_ref(),
        backing.as_os_str(),
        overlay.as_os_str(),
    ])
    .await
    .with_context(|| {
        format!(
            "creating overlay {} on {}",
            overlay.display(),
            backing.display()
        )
    })?;
    Ok(())
}

/// Writes `src` (with its whole backing chain) as one standalone, compressed
/// qcow2. zstd is several times faster than zlib here at a similar size.
pub async fn flatten(src: &Path, dst: &Path) -> Result<()> {
    qemu_img(&[
        "convert".as_ref(),
        "-c".as_ref(),
        "-O".as_ref(),
        "qcow2".as_ref(),
        "-o".as_ref(),
        "compression_type=zstd".as_ref(),
        src.as_os_str(),
        dst.as_os_str(),
    ])
    .await
    .with_context(|| format!("flattening {} into {}", src.display(), dst.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overlay_and_flatten_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.qcow2");
        qemu_img(&[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            base.as_os_str(),
            "64M".as_ref(),
        ])
        .await
        .unwrap();
        let ov = dir.path().join("ov.qcow2");
        create_overlay(&base, "qcow2", &ov).await.unwrap();
        let i = info(&ov).await.unwrap();
        assert_eq!(i.format, "qcow2");
        assert_eq!(i.virtual_size, 64 << 20);
        assert!(i.backing_filename.is_some());
        let flat = dir.path().join("flat.qcow2");
        flatten(&ov, &flat).await.unwrap();
        let f = info(&flat).await.unwrap();
        assert!(
            f.backing_filename.is_none(),
            "flattened image must be standalone"
        );
    }

    #[tokio::test]
    async fn errors_carry_qemu_img_message() {
        let err = info(Path::new("/nonexistent/x.qcow2")).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("qemu-img info failed"),
            "{err:#}"
        );
    }
}
