//! Resolving a recipe's `source` to a disk image file on this machine.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::store::Store;
use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::recipe::{Checksum, Source};
use crate::qemu::img;

/// A source disk and its format (`qcow2`, `raw`), ready to back an overlay.
#[derive(Debug, Clone)]
pub struct ResolvedSource {
    pub path: PathBuf,
    pub format: String,
    pub description: String,
}

/// The plan-time check of `source.path`: an existing, readable file that
/// `qemu-img` reads as a disk image. Any file passes as `raw`, so a raw one
/// must also hold whole 512-byte sectors, and at least one.
pub fn check_disk_image(path: &Path) -> std::result::Result<(), String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{shown} does not exist"),
        _ => format!("{shown} cannot be read: {e}"),
    })?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a file"));
    }
    std::fs::File::open(path).map_err(|e| format!("{shown} cannot be read: {e}"))?;
    let info = img::info_blocking(path)
        .map_err(|e| format!("{shown} is not a disk image qemu-img can read: {e:#}"))?;
    if let Some(backing) = &info.backing_filename {
        let backing = path.parent().unwrap_or(Path::new(".")).join(backing);
        if !backing.is_file() {
            return Err(format!(
                "{shown} is not a disk image qemu-img can read: its backing file {} is missing",
                backing.display()
            ));
        }
    }
    if info.format == "raw" && (meta.len() == 0 || meta.len() % 512 != 0) {
        return Err(format!(
            "{shown} is not a disk image: qemu-img sees raw data of {} bytes, not whole 512-byte sectors",
            meta.len()
        ));
    }
    Ok(())
}

/// `parent` is the pipeline's resolution of a `source.family`.
pub async fn resolve(
    store: &Store,
    source: &Source,
    parent: Option<&Image>,
    cx: &Cx,
) -> Result<ResolvedSource> {
    let (path, description) = match source {
        Source::Path(p) => {
            if !p.is_file() {
                bail!(
                    "source.path {} does not exist or is not a file",
                    p.display()
                );
            }
            (p.canonicalize()?, format!("file {}", p.display()))
        }
        Source::Url { url, checksum } => (
            download_cached(store, url, checksum, cx).await?,
            format!("url {url}"),
        ),
        Source::Family(family) => {
            let parent = parent.with_context(|| {
                format!("source.family \"{family}\" arrived without its resolved parent image")
            })?;
            (
                PathBuf::from(&parent.id),
                format!("family {family} ({})", parent.name()),
            )
        }
        Source::Native(native) => {
            bail!("the local platform builds from a path, a url or a family, not {native}")
        }
    };
    let info = img::info(&path).await?;
    Ok(ResolvedSource {
        path,
        format: info.format,
        description,
    })
}

/// Downloads `url` once into the store's source cache, keyed by checksum, and
/// verifies it before it can be used.
async fn download_cached(
    store: &Store,
    url: &str,
    checksum: &Checksum,
    cx: &Cx,
) -> Result<PathBuf> {
    let cache = store.internal("sources");
    let target = cache.join(format!("{}-{}.img", checksum.algorithm, checksum.hex));
    if target.is_file() {
        tracing::debug!(url, path = %target.display(), "source already cached");
        return Ok(target);
    }
    tokio::fs::create_dir_all(&cache).await?;
    let partial = cache.join(format!(".{}.partial-{}", checksum.hex, std::process::id()));
    cx.record(crate::lifecycle::ledger::UndoAction::RemovePath {
        path: partial.clone(),
    });
    tracing::info!(url, "downloading source image");
    let digest = cx
        .run("downloading source.url", fetch(url, &partial))
        .await?;
    if digest != checksum.hex {
        bail!(
            "source.url {url}: checksum mismatch: expected sha256:{}, got sha256:{digest}",
            checksum.hex
        );
    }
    tokio::fs::rename(&partial, &target).await?;
    Ok(target)
}

async fn fetch(url: &str, dest: &Path) -> Result<String> {
    let client = crate::platforms::kit::tls::http_client()
        .build()
        .context("cannot build the HTTP client")?;
    let resp = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if !resp.status().is_success() {
        bail!("GET {url}: HTTP {}", resp.status());
    }
    let mut file = tokio::fs::File::create(dest).await?;
    let mut hasher = Sha256::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("reading {url}"))?;
        hasher.update(&chunk);
        file.write_all(&chunk).await?;
    }
    file.sync_all().await?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::ledger::Ledger;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::sync::CancellationToken;

    /// Serves `body` over plain HTTP on loopback, counting requests.
    async fn serve(body: Vec<u8>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&body).await;
                });
            }
        });
        (format!("http://{addr}/disk.img"), hits)
    }

    fn cx() -> Cx {
        Cx::new(
            CancellationToken::new(),
            Duration::from_secs(30),
            Ledger::in_memory(),
        )
    }

    fn sha(b: &[u8]) -> String {
        Sha256::digest(b)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[tokio::test]
    async fn url_source_is_downloaded_once_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().into());
        let body = b"not really a disk".to_vec();
        let (url, hits) = serve(body.clone()).await;
        let checksum = Checksum::parse(&format!("sha256:{}", sha(&body))).unwrap();
        let a = download_cached(&store, &url, &checksum, &cx())
            .await
            .unwrap();
        let b = download_cached(&store, &url, &checksum, &cx())
            .await
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(std::fs::read(&a).unwrap(), body);
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "second use must hit the cache"
        );
    }

    #[tokio::test]
    async fn checksum_mismatch_is_an_error_and_caches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().into());
        let (url, _) = serve(b"tampered".to_vec()).await;
        let checksum = Checksum::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
        let c = cx();
        let err = download_cached(&store, &url, &checksum, &c)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("checksum mismatch"), "{err:#}");
        let local = super::super::LocalPlatform::new(dir.path().into(), crate::qemu::Accel::Tcg);
        crate::lifecycle::pipeline::cleanup(&local, &c).await;
        let left: Vec<_> = std::fs::read_dir(store.internal("sources"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "partial download left behind: {left:?}");
    }
}

#[cfg(test)]
mod check_tests {
    use super::*;

    #[test]
    fn source_path_must_be_a_readable_disk_image() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.qcow2");
        assert!(check_disk_image(&missing)
            .unwrap_err()
            .ends_with("does not exist"));
        assert!(check_disk_image(dir.path())
            .unwrap_err()
            .ends_with("is not a file"));
        let junk = dir.path().join("notes.txt");
        std::fs::write(&junk, "not a disk").unwrap();
        assert!(check_disk_image(&junk)
            .unwrap_err()
            .contains("not whole 512-byte sectors"));
        let empty = dir.path().join("empty.img");
        std::fs::write(&empty, "").unwrap();
        assert!(check_disk_image(&empty).is_err());
        let raw = dir.path().join("disk.raw");
        std::fs::write(&raw, vec![0u8; 4096]).unwrap();
        assert_eq!(check_disk_image(&raw), Ok(()));
        let qcow2 = dir.path().join("disk.qcow2");
        let made = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&qcow2)
            .arg("1M")
            .status()
            .unwrap();
        assert!(made.success());
        assert_eq!(check_disk_image(&qcow2), Ok(()));
        // A qcow2 whose backing file is gone is refused with qemu-img's reason.
        let overlay = dir.path().join("overlay.qcow2");
        let made = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(&qcow2)
            .arg(&overlay)
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::remove_file(&qcow2).unwrap();
        assert!(check_disk_image(&overlay)
            .unwrap_err()
            .contains("not a disk image qemu-img can read"));
    }
}
