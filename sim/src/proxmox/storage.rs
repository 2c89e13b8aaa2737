//! `/nodes/{node}/storage/...`: the storages, their volumes, and
//! `download-url`, which really fetches the URL and checks its checksum.

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use super::plugins::StorageType;
use super::schema::{parse_bool, Params};
use super::state::{debian_fs, Cluster, Shared, StorageDef, Volume};
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
                let mut m = usage(cl, s);
                m["storage"] = json!(s.id);
                m["used_fraction"] = json!(used_bytes(cl, &s.id) as f64 / s.total as f64);
                if with_formats {
                    let (supported, default) = s.kind.formats();
                    m["formats"] = json!({"supported": supported, "default": default});
                }
                m
            })
            .collect(),
    )
}

/// What PVE::Storage::storage_info reports of one storage.
fn usage(cl: &Cluster, s: &StorageDef) -> Value {
    let used = used_bytes(cl, &s.id);
    json!({
        "type": s.kind.type_name(), "content": s.content,
        "active": 1, "enabled": 1, "shared": i32::from(s.kind.shared()),
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

/// PVE's import content that can be uploaded or downloaded: disk images and
/// OVAs by extension (pve-storage `PVE/Storage.pm` `$UPLOAD_IMPORT_EXT_RE_1`,
/// `.qcow2`, `.raw` and `.vmdk` since libpve-storage-perl 8.3.6, PVE 8.4;
/// before, OVAs only).
fn import_format(filename: &str) -> Option<&'static str> {
    let ext = filename.rsplit_once('.')?.1;
    match ext {
        "qcow2" => Some("qcow2"),
        "raw" => Some("raw"),
        "vmdk" => Some("vmdk"),
        "ova" => Some("ova"),
        _ => None,
    }
}

/// Where a file-based storage keeps its files (the simulator's directory
/// storages, as `plugins.rs` places them: `local` at `/var/lib/vz`, others
/// at `/mnt/<id>`). Block storages (LVM-thin, ZFS, RBD) have no path.
fn storage_path(s: &StorageDef) -> Option<String> {
    match s.kind {
        StorageType::Dir if s.id == "local" => Some("/var/lib/vz".to_owned()),
        StorageType::Dir => Some(format!("/mnt/{}", s.id)),
        StorageType::LvmThin | StorageType::ZfsPool | StorageType::Rbd => None,
    }
}

/// pve-storage `PVE/Storage.pm` normalize_content_filename: the last path
/// component, anything but `[a-zA-Z0-9_.-]` replaced by `_`.
fn normalize_content_filename(name: &str) -> String {
    let name = name.trim_end_matches('\n');
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    base.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The directory under the storage path a download of `content` lands in
/// (pve-storage `PVE/Storage/Plugin.pm` `$vtype_subdirs`), once the file name
/// fits the content (`PVE/API2/Storage/Status.pm` download_url).
fn download_subdir(content: &str, filename: &str) -> Result<&'static str, ApiError> {
    let lower = filename.to_ascii_lowercase();
    let has_stem = |ext_len: usize| filename.len() > ext_len;
    match content {
        "iso" => [".iso", ".img"]
            .iter()
            .find(|e| lower.ends_with(*e) && has_stem(e.len()))
            .map(|_| "template/iso")
            .ok_or_else(|| ApiError::param("filename", "wrong file extension")),
        "vztmpl" => [".tar", ".tar.gz", ".tar.xz", ".tar.zst", ".tar.bz2"]
            .iter()
            .find(|e| lower.ends_with(*e) && has_stem(e.len()))
            .map(|_| "template/cache")
            .ok_or_else(|| ApiError::param("filename", "wrong file extension")),
        "import" => import_format(filename)
            .filter(|f| has_stem(f.len() + 1))
            .map(|_| "import")
            .ok_or_else(|| ApiError::param("filename", "invalid filename or wrong extension")),
        other => Err(ApiError::param(
            "content",
            format!("upload content-type '{other}' is not allowed"),
        )),
    }
}

/// pve-common `PVE/ParseUtils.pm` encode_text: `%`, `:`, control and
/// non-ASCII bytes percent-encoded; a UPID's worker id must not hold `:`.
fn encode_text(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            0x20..=0x24 | 0x26..=0x39 | 0x3b..=0x7e => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `POST /nodes/{node}/storage/{storage}/download-url` (pve-storage
/// `PVE/API2/Storage/Status.pm` download_url). Before the task: a storage
/// without a path is refused ("not a file based storage!"), then a content
/// type it is not configured for, then a file name that does not fit the
/// content (after normalize_content_filename). The `download` task, its
/// worker id the encoded file name, then does what pve-common
/// `PVE/Tools.pm` download_file_from_url does: an existing file is kept when
/// the checksum matches, else refused; a mismatch fails with
/// `checksum mismatch: got 'X' != expect 'Y'`.
pub fn download_url(
    shared: &Shared,
    cl: &mut Cluster,
    storage: &str,
    params: &Params,
) -> Result<Value, ApiError> {
    let st = cl.storage(storage)?;
    let Some(dir) = storage_path(st) else {
        return Err(ApiError::new(
            500,
            format!(
                "can't upload to storage type '{}', not a file based storage!",
                st.kind.type_name()
            ),
        ));
    };
    let content = first(params, "content").unwrap_or("").to_owned();
    if !st.holds(&content) {
        return Err(ApiError::new(
            500,
            format!("storage '{storage}' is not configured for content-type '{content}'"),
        ));
    }
    let filename = normalize_content_filename(first(params, "filename").unwrap_or(""));
    let subdir = download_subdir(&content, &filename)?;
    let url = first(params, "url").unwrap_or("").to_owned();
    let dest = format!("{dir}/{subdir}/{filename}");
    let volume_name = format!("{}/{filename}", subdir.rsplit('/').next().unwrap_or(subdir));
    let volid = format!("{storage}:{volume_name}");
    let existing = cl.volumes.get(&volid).map(|v| v.path.clone());
    let checksum = first(params, "checksum").map(str::to_owned);
    let algo = first(params, "checksum-algorithm").map(str::to_owned);
    let decompress = first(params, "compression").is_some();
    let verify = first(params, "verify-certificates")
        .and_then(parse_bool)
        .unwrap_or(true);
    let path = cl.opts.state_dir.join(subdir).join(&filename);
    let worker_id = encode_text(&filename);
    let first_line = format!("downloading {url} to {dest}");
    let s2 = shared.clone();
    let storage = storage.to_owned();
    let work = async move {
        if decompress && content != "iso" {
            return Err(format!("decompression not supported for {content}"));
        }
        if checksum.is_some() && algo.is_none() {
            return Err("checksum required but not specified".to_owned());
        }
        let want = algo.as_deref().zip(checksum.as_deref());
        if let Some(existing) = existing {
            return keep_existing(existing.as_deref(), &dest, want);
        }
        let (file_size, digest) = fetch(&url, &path, algo.as_deref(), verify).await?;
        if let (Some((_, want)), Some(got)) = (want, &digest) {
            if !want.eq_ignore_ascii_case(got) {
                let _ = std::fs::remove_file(&path);
                return Err(format!("checksum mismatch: got '{got}' != expect '{want}'"));
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
        let mut vol = cl.new_volume(&storage, &volume_name, None, size, format);
        vol.content = content;
        vol.files = debian_fs(&stem);
        vol.path = Some(path);
        cl.add_volume(vol);
        Ok(())
    };
    let upid = tasks::spawn(
        shared,
        cl,
        TaskSpec {
            kind: "download",
            id: &worker_id,
            duration: Duration::ZERO,
            first_line,
        },
        work,
        |_| {},
    );
    Ok(json!(upid))
}

/// download_file_from_url with the file already there: kept when its
/// checksum is the one asked for, else the task fails.
fn keep_existing(
    file: Option<&std::path::Path>,
    dest: &str,
    want: Option<(&str, &str)>,
) -> Result<(), String> {
    let Some((algo, want)) = want else {
        return Err(format!("refusing to override existing file '{dest}'"));
    };
    let got = match file {
        Some(path) => file_hash(algo, path)?,
        None => String::new(),
    };
    if got.eq_ignore_ascii_case(want) {
        Ok(())
    } else {
        Err(format!(
            "checksum mismatch: got '{got}' != expect '{want}', aborting"
        ))
    }
}

fn file_hash(algo: &str, path: &std::path::Path) -> Result<String, String> {
    let mut h = Hasher::new(algo)?;
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    h.update(&bytes);
    Ok(h.hex())
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
    crate::install_crypto_provider();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_normalised_and_must_fit_the_content() {
        assert_eq!(
            normalize_content_filename("../x/My Image.qcow2"),
            "My_Image.qcow2"
        );
        assert_eq!(normalize_content_filename("c:\\iso\\a+b.iso\n"), "a_b.iso");
        assert_eq!(download_subdir("import", "a.qcow2").unwrap(), "import");
        assert_eq!(download_subdir("import", "a.ova").unwrap(), "import");
        assert_eq!(download_subdir("iso", "a.ISO").unwrap(), "template/iso");
        assert_eq!(
            download_subdir("vztmpl", "a.tar.zst").unwrap(),
            "template/cache"
        );
        let err = download_subdir("import", "a.img").unwrap_err();
        assert_eq!(
            err.errors.unwrap()["filename"],
            "invalid filename or wrong extension"
        );
        let err = download_subdir("import", ".qcow2").unwrap_err();
        assert_eq!(err.status, 400);
        let err = download_subdir("iso", "a.qcow2").unwrap_err();
        assert_eq!(err.errors.unwrap()["filename"], "wrong file extension");
        let err = download_subdir("images", "a.raw").unwrap_err();
        assert_eq!(
            err.errors.unwrap()["content"],
            "upload content-type 'images' is not allowed"
        );
    }

    #[test]
    fn worker_ids_encode_what_a_upid_cannot_hold() {
        assert_eq!(encode_text("golden-1.qcow2"), "golden-1.qcow2");
        assert_eq!(encode_text("a:b%c"), "a%3Ab%25c");
        assert_eq!(encode_text("ü"), "%C3%BC");
    }

    #[test]
    fn only_file_based_storages_take_downloads() {
        let def = |id: &str, kind: StorageType| StorageDef {
            id: id.into(),
            kind,
            content: "import".into(),
            total: 1,
        };
        assert_eq!(
            storage_path(&def("local", StorageType::Dir)).as_deref(),
            Some("/var/lib/vz")
        );
        assert_eq!(
            storage_path(&def("vmstore", StorageType::Dir)).as_deref(),
            Some("/mnt/vmstore")
        );
        assert_eq!(storage_path(&def("local-lvm", StorageType::LvmThin)), None);
        assert_eq!(storage_path(&def("tank", StorageType::ZfsPool)), None);
    }

    #[test]
    fn an_existing_file_stays_only_for_its_own_checksum() {
        let dest = "/var/lib/vz/import/a.qcow2";
        assert_eq!(
            keep_existing(None, dest, None),
            Err("refusing to override existing file '/var/lib/vz/import/a.qcow2'".into())
        );
        let dir = std::env::temp_dir().join(format!("golden-sim-keep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.qcow2");
        std::fs::write(&file, b"abc").unwrap();
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            keep_existing(Some(&file), dest, Some(("sha256", &sha.to_uppercase()))),
            Ok(())
        );
        assert_eq!(
            keep_existing(Some(&file), dest, Some(("sha256", "00"))),
            Err(format!(
                "checksum mismatch: got '{sha}' != expect '00', aborting"
            ))
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
