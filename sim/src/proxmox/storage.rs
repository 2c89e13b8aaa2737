//! `/nodes/{node}/storage/...`: the storages, their volumes, and
//! `download-url`, which really fetches the URL and checks its checksum.

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use super::plugins::StorageType;
use super::schema::{parse_bool, Params};
use super::state::{debian_fs, Cluster, Shared, Volume};
use super::tasks::{self, TaskSpec};
use super::vms::used_bytes;
use super::ApiError;

fn first<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.get(k).and_then(|v| v.first()).map(String::as_str)
}

/// `GET /nodes/{node}/storage` (pve-storage `PVE/API2/Storage/Status.pm`
/// index over `PVE::Storage::storage_info`): each storage's `type`, `content`,
/// `shared` (set for the types in Plugin.pm's `@SHARED_STORAGE`), usage; with
/// `content=` those holding any of the listed types; with `format=1` the
/// `formats` the plugin offers (get_formats). storage_info also adds the
/// deprecated `format` pair, which the schema does not declare: left out.
pub fn list(cl: &Cluster, params: &Params) -> Value {
    let want = first(params, "content");
    let with_formats = first(params, "format")
        .and_then(parse_bool)
        .unwrap_or(false);
    Value::Array(
        cl.storages
            .iter()
            .filter(|s| want.is_none_or(|w| w.split(',').any(|c| s.holds(c))))
            .filter(|s| first(params, "storage").is_none_or(|id| id == s.id))
            .map(|s| {
                let used = used_bytes(cl, &s.id);
                let mut m = json!({
                    "storage": s.id, "type": s.kind.type_name(), "content": s.content,
                    "active": 1, "enabled": 1, "shared": i32::from(s.kind.shared()),
                    "total": s.total, "used": used, "avail": s.total.saturating_sub(used),
                    "used_fraction": used as f64 / s.total as f64,
                });
                if with_formats {
                    let (supported, default) = s.kind.formats();
                    m["formats"] = json!({"supported": supported, "default": default});
                }
                m
            })
            .collect(),
    )
}

/// The volumes of one storage, as the storage's `list_images` reports them
/// (see `plugins.rs`): `parent` for a linked clone on dir, ZFS and RBD, none
/// on LVM-thin. PVE also reports `content` (and ZFS/RBD `name`), which the
/// schema does not declare, so neither do we (filter with `?content=`).
pub fn content(cl: &Cluster, storage: &str, params: &Params) -> Result<Value, ApiError> {
    let kind = cl.storage(storage)?.kind;
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
                if v.content == "images" {
                    if let Some(p) = kind.listed_parent(&v.name) {
                        m["parent"] = json!(p);
                    }
                    // Plugin.pm list_images reports qemu-img's disk usage.
                    if kind == StorageType::Dir {
                        m["used"] = json!(volume_used(cl, v));
                    }
                }
                m
            })
            .collect(),
    ))
}

/// `GET /nodes/{node}/storage/{storage}/content/{volume}` (pve-storage
/// `PVE/API2/Storage/Content.pm` info): `path`, `size`, `used`, `format`, and
/// `notes`/`protected` when the plugin has them (not for VM images). The
/// volume may be a full volume id (its storage must match, else a parameter
/// error "storage ID mismatch") or a name on `{storage}` (real_volume_id).
pub fn volume_info(cl: &Cluster, storage: &str, volume: &str) -> Result<Value, ApiError> {
    let volid = match volume.split_once(':') {
        Some((sid, _)) if sid != storage => {
            return Err(ApiError::param(
                "volume",
                format!("storage ID mismatch ({sid} != {storage})"),
            ))
        }
        Some(_) => volume.to_owned(),
        None => format!("{storage}:{volume}"),
    };
    let kind = cl.storage(storage)?.kind;
    let vol = cl
        .volumes
        .get(&volid)
        .ok_or_else(|| no_such_volume(&volid))?;
    let path = match vol.content.as_str() {
        "images" => kind.path(storage, &vol.name),
        _ => match &vol.path {
            Some(p) => p.display().to_string(),
            None => format!("/var/lib/vz/template/{}", vol.name),
        },
    };
    Ok(json!({
        "path": path,
        "size": vol.size,
        "used": volume_used(cl, vol),
        "format": vol.format,
    }))
}

/// A volume that does not exist: Plugin.pm file_size_info only warns
/// "failed to stat" and returns nothing, so Content.pm info dies with
/// "volume_size_info on '<volid>' failed - no format" (the simulator answers
/// that for every type).
fn no_such_volume(volid: &str) -> ApiError {
    ApiError::new(
        500,
        format!("volume_size_info on '{volid}' failed - no format"),
    )
}

/// A volume's `used` bytes, by type: LVMPlugin.pm volume_size_info answers 0
/// for raw LVs (LVM-thin included); file and ZFS/RBD plugins measure it, here
/// the real file when the QEMU backend has one, else the accounted size, and
/// nothing for a linked clone that has not written yet.
fn volume_used(cl: &Cluster, vol: &Volume) -> u64 {
    let kind = cl.storage_type(&vol.storage);
    if kind == StorageType::LvmThin && vol.content == "images" {
        return 0;
    }
    if let Some(len) = vol.path.as_ref().and_then(|p| std::fs::metadata(p).ok()) {
        return len.len();
    }
    if vol.origin.is_some() {
        0
    } else {
        vol.size
    }
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
    if !st.holds(content) {
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
