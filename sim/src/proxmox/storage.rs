//! `/nodes/{node}/storage/...`: the storages, their volumes, and
//! `download-url`, which really fetches the URL and checks its checksum.

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use super::schema::{parse_bool, Params};
use super::state::{debian_fs, Cluster, Shared, StorageDef};
use super::tasks::{self, TaskSpec};
use super::vms::used_bytes;
use super::ApiError;

fn first<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.get(k).and_then(|v| v.first()).map(String::as_str)
}

pub fn list(cl: &Cluster, params: &Params) -> Value {
    let want = first(params, "content");
    Value::Array(
        cl.storages
            .iter()
            .filter(|s| {
                want.is_none_or(|w| w.split(',').all(|c| s.content.split(',').any(|x| x == c)))
            })
            .filter(|s| first(params, "storage").is_none_or(|id| id == s.id))
            .map(|s| {
                let mut m = usage(cl, s);
                m["storage"] = json!(s.id);
                m["used_fraction"] = json!(used_bytes(cl, &s.id) as f64 / s.total as f64);
                m
            })
            .collect(),
    )
}

/// What PVE::Storage::storage_info reports of one storage.
fn usage(cl: &Cluster, s: &StorageDef) -> Value {
    let used = used_bytes(cl, &s.id);
    json!({
        "type": s.plugin, "content": s.content,
        "active": 1, "enabled": 1, "shared": 0,
        "total": s.total, "used": used, "avail": s.total.saturating_sub(used),
    })
}

/// `GET /nodes/{node}/storage/{storage}/status` (pve-storage
/// `PVE/API2/Storage/Status.pm` read_status): the storage's entry of
/// PVE::Storage::storage_info; an unknown one is a parameter error, 400
/// `storage: No such storage.`.
pub fn status(cl: &Cluster, storage: &str) -> Result<Value, ApiError> {
    let s = cl
        .storages
        .iter()
        .find(|s| s.id == storage)
        .ok_or_else(|| ApiError::param("storage", "No such storage."))?;
    Ok(usage(cl, s))
}

/// The volumes of one storage. PVE also reports `content`, but the schema
/// does not declare it, so neither do we (filter with `?content=` instead).
pub fn content(cl: &Cluster, storage: &str, params: &Params) -> Result<Value, ApiError> {
    cl.storage(storage)?;
    let want = first(params, "content");
    let vmid: Option<u32> = first(params, "vmid").and_then(|v| v.parse().ok());
    Ok(Value::Array(
        cl.volumes
            .values()
            .filter(|v| v.storage == storage)
            .filter(|v| want.is_none_or(|w| w == v.content))
            .filter(|v| vmid.is_none_or(|id| v.vmid == Some(id)))
            .map(|v| {
                let mut m = json!({"volid": v.volid(), "format": v.format, "size": v.size, "ctime": v.ctime});
                if let Some(id) = v.vmid {
                    m["vmid"] = json!(id);
                }
                if let Some(p) = &v.parent {
                    m["parent"] = json!(p);
                }
                m
            })
            .collect(),
    ))
}

/// PVE's import content: disk images by extension.
fn import_format(filename: &str) -> Option<&'static str> {
    let ext = filename.rsplit_once('.')?.1;
    match ext {
        "qcow2" => Some("qcow2"),
        "raw" => Some("raw"),
        "vmdk" => Some("vmdk"),
        "ova" | "ovf" => Some("ova"),
        _ => None,
    }
}

pub fn download_url(
    shared: &Shared,
    cl: &mut Cluster,
    storage: &str,
    params: &Params,
) -> Result<Value, ApiError> {
    let st = cl.storage(storage)?;
    let content = first(params, "content").unwrap_or("");
    let filename = first(params, "filename").unwrap_or("").to_owned();
    let url = first(params, "url").unwrap_or("").to_owned();
    if !st.content.split(',').any(|c| c == content) {
        return Err(ApiError::new(
            500,
            format!("storage '{storage}' does not support '{content}' content"),
        ));
    }
    if filename.is_empty() || filename.contains('/') {
        return Err(ApiError::param("filename", "invalid filename"));
    }
    let subdir = match content {
        "import" => {
            if import_format(&filename).is_none() {
                return Err(ApiError::param(
                    "filename",
                    "invalid filename or wrong extension",
                ));
            }
            "import"
        }
        "iso" => "iso",
        "vztmpl" => "vztmpl",
        other => {
            return Err(ApiError::param(
                "content",
                format!("unsupported content type '{other}'"),
            ))
        }
    };
    let volid = format!("{storage}:{subdir}/{filename}");
    if cl.volumes.contains_key(&volid) {
        return Err(ApiError::new(
            500,
            format!("refusing to override existing file '{filename}'"),
        ));
    }
    let checksum = first(params, "checksum").map(str::to_ascii_lowercase);
    let algo = first(params, "checksum-algorithm").map(str::to_owned);
    let verify = first(params, "verify-certificates")
        .and_then(parse_bool)
        .unwrap_or(true);
    let path = cl.opts.state_dir.join(subdir).join(&filename);
    let s2 = shared.clone();
    let storage = storage.to_owned();
    let content = content.to_owned();
    let work = async move {
        let (file_size, digest) = fetch(&url, &path, algo.as_deref(), verify).await?;
        if let (Some(want), Some(got)) = (&checksum, &digest) {
            if want != got {
                let _ = std::fs::remove_file(&path);
                return Err(format!("checksum mismatch: got {got}, expected {want}"));
            }
        }
        // A disk image's size is its virtual size, when qemu-img can tell.
        let size = match golden::qemu::img::info(&path).await {
            Ok(info) if info.virtual_size > 0 => info.virtual_size,
            _ => file_size,
        };
        let mut cl = s2.lock();
        let stem = filename.split('.').next().unwrap_or("debian").to_owned();
        let format = import_format(&filename).unwrap_or("raw");
        let mut vol = cl.new_volume(
            &storage,
            &format!("{subdir}/{filename}"),
            None,
            size,
            format,
        );
        vol.content = content;
        vol.files = debian_fs(&stem);
        vol.path = Some(path);
        cl.add_volume(vol);
        Ok(())
    };
    let line = format!(
        "downloading {} to {volid}",
        first(params, "url").unwrap_or("")
    );
    let upid = tasks::spawn(
        shared,
        cl,
        TaskSpec {
            kind: "download",
            id: "",
            duration: Duration::ZERO,
            first_line: line,
        },
        work,
        |_| {},
    );
    Ok(json!(upid))
}

enum Hasher {
    S224(Sha224),
    S256(Sha256),
    S384(Sha384),
    S512(Sha512),
}

impl Hasher {
    fn new(algo: &str) -> Result<Hasher, String> {
        Ok(match algo {
            "sha224" => Hasher::S224(Sha224::new()),
            "sha256" => Hasher::S256(Sha256::new()),
            "sha384" => Hasher::S384(Sha384::new()),
            "sha512" => Hasher::S512(Sha512::new()),
            other => {
                return Err(format!(
                    "checksum algorithm '{other}' is not supported by the simulator"
                ))
            }
        })
    }

    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::S224(h) => h.update(b),
            Hasher::S256(h) => h.update(b),
            Hasher::S384(h) => h.update(b),
            Hasher::S512(h) => h.update(b),
        }
    }

    fn hex(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::S224(h) => h.finalize().to_vec(),
            Hasher::S256(h) => h.finalize().to_vec(),
            Hasher::S384(h) => h.finalize().to_vec(),
            Hasher::S512(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Streams `url` into `path`; returns its size and its digest when asked.
async fn fetch(
    url: &str,
    path: &std::path::Path,
    algo: Option<&str>,
    verify: bool,
) -> Result<(u64, Option<String>), String> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut hasher = algo.map(Hasher::new).transpose()?;
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(!verify)
        .build()
        .map_err(|e| format!("{e}"))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("download failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("download failed: {} {url}", resp.status()));
    }
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| format!("{e}"))?;
    }
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    let mut size = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("download failed: {e}"))?;
        size += chunk.len() as u64;
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    file.flush().await.map_err(|e| format!("{e}"))?;
    Ok((size, hasher.map(Hasher::hex)))
}
