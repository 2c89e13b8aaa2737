//! The PVE API calls golden makes, with their paths built here and nowhere
//! else (`Api::node(n).vm(id)` handles). Every call is a thin typed wrapper;
//! waiting for tasks lives in `tasks.rs`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use super::client::{Client, Params};
use crate::lifecycle::context::Cx;
use crate::platforms::{Error, ErrorKind, Result};

/// A task id, `UPID:node:...`, returned by every asynchronous call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upid(pub String);

impl Upid {
    /// The node a task runs on: the second field of the UPID.
    pub fn node(&self) -> Option<&str> {
        self.0.split(':').nth(1).filter(|n| !n.is_empty())
    }

    fn from_data(what: &str, v: Value) -> Result<Upid> {
        match v {
            Value::String(s) if s.starts_with("UPID:") => Ok(Upid(s)),
            other => Err(Error::new(
                ErrorKind::Other,
                format!("{what}: PVE answered {other} where a task id (UPID) was expected"),
            )),
        }
    }
}

/// One VM as `/cluster/resources?type=vm` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct VmResource {
    pub vmid: u32,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub template: Option<u8>,
    #[serde(default)]
    pub tags: Option<String>,
    #[serde(default)]
    pub lock: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub maxdisk: Option<u64>,
}

impl VmResource {
    pub fn is_template(&self) -> bool {
        self.is_qemu() && self.template == Some(1)
    }

    pub fn is_qemu(&self) -> bool {
        self.kind.as_deref().unwrap_or("qemu") == "qemu"
    }

    pub fn tag_list(&self) -> Vec<&str> {
        split_tags(self.tags.as_deref().unwrap_or(""))
    }

    /// pvestatd has not broadcast this guest's statistics yet (it does every
    /// ten seconds): `/cluster/resources` lists a VM that new without `name`
    /// and `template` (pve-manager `PVE/API2Tools.pm` extract_vm_stats), so
    /// neither may be read as "unnamed" or "not a template".
    pub fn stats_pending(&self) -> bool {
        self.name.is_none() || self.template.is_none()
    }

    /// Fills `name` and `template` from the VM's config, which never lags.
    pub fn settle_from(&mut self, cfg: &VmConfig) {
        self.name = config_str(cfg, "name").or_else(|| Some(format!("VM {}", self.vmid)));
        self.template = Some(u8::from(
            config_str(cfg, "template").as_deref() == Some("1"),
        ));
    }
}

/// The size in bytes of a VM's boot disk as its config says (`size=2G`): the
/// first disk of `boot: order=`, else the first of scsi0, virtio0, sata0,
/// ide0 that is not a CD-ROM.
pub fn boot_disk_size(cfg: &VmConfig) -> Option<u64> {
    let order: Vec<String> = config_str(cfg, "boot")
        .and_then(|b| {
            b.split(',')
                .find_map(|p| p.strip_prefix("order=").map(str::to_owned))
        })
        .map(|o| o.split(';').map(str::to_owned).collect())
        .unwrap_or_default();
    let fallback = ["scsi0", "virtio0", "sata0", "ide0"].map(str::to_owned);
    order
        .iter()
        .chain(fallback.iter())
        .filter_map(|k| config_str(cfg, k))
        .filter(|v| !v.contains("media=cdrom"))
        .find_map(|v| {
            v.split(',')
                .find_map(|p| p.strip_prefix("size=").and_then(parse_size))
        })
}

/// PVE's disk sizes: bytes, or a number with `K`, `M`, `G` or `T`
/// (pve-common `PVE/JSONSchema.pm` format_size / parse_size).
fn parse_size(s: &str) -> Option<u64> {
    let (num, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_uppercase()),
        _ => (s, 'B'),
    };
    let factor: u64 = match unit {
        'B' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        'T' => 1 << 40,
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    Some((n * factor as f64) as u64)
}

/// PVE accepts `;`, `,` and spaces between tags and returns them `;`-joined.
pub fn split_tags(raw: &str) -> Vec<&str> {
    raw.split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .collect()
}

#[derive(Debug, Clone, Deserialize)]
pub struct TaskStatus {
    pub status: String,
    #[serde(default)]
    pub exitstatus: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StorageVolume {
    pub volid: String,
    #[serde(default)]
    pub vmid: Option<u32>,
    #[serde(default)]
    pub parent: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExecStarted {
    pub pid: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExecStatus {
    pub exited: serde_json::Value,
    #[serde(default)]
    pub exitcode: Option<i64>,
    #[serde(default, rename = "out-data")]
    pub out_data: Option<String>,
    #[serde(default, rename = "err-data")]
    pub err_data: Option<String>,
    #[serde(default)]
    pub signal: Option<i64>,
}

/// PVE decodes the agent's base64 output to bytes and hands them on as if
/// each byte were a character: UTF-8 output arrives as Latin-1 mojibake.
/// Undo that when every character fits in a byte.
pub fn guest_text(s: &str) -> String {
    if s.chars().all(|c| (c as u32) <= 0xFF) {
        let bytes: Vec<u8> = s.chars().map(|c| c as u32 as u8).collect();
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    s.to_owned()
}

impl ExecStatus {
    /// PVE returns `exited` as a JSON boolean or as 0/1 depending on version.
    pub fn has_exited(&self) -> bool {
        match &self.exited {
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_i64() == Some(1),
            _ => false,
        }
    }
}

pub type VmConfig = BTreeMap<String, Value>;

/// A config value as text (PVE returns numbers for some keys).
/// PVE's `protection` flag: the VM cannot be destroyed while it is set.
pub fn is_protected(cfg: &VmConfig) -> bool {
    matches!(config_str(cfg, "protection").as_deref(), Some("1" | "true"))
}

pub fn config_str(cfg: &VmConfig, key: &str) -> Option<String> {
    match cfg.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(u8::from(*b).to_string()),
        _ => None,
    }
}

/// The API handles carry the step's `Cx`: every call they make is
/// cancellable and bounded by the step's deadline.
pub struct Api<'a> {
    client: &'a Client,
    cx: &'a Cx,
}

impl<'a> Api<'a> {
    pub fn new(client: &'a Client, cx: &'a Cx) -> Self {
        Api { client, cx }
    }

    pub fn node(&self, node: &'a str) -> NodeApi<'a> {
        NodeApi {
            client: self.client,
            cx: self.cx,
            node,
        }
    }

    /// Every guest in the cluster, VMs and containers: they share one id
    /// space, so a free id must be free of both. Callers that want VMs only
    /// use [`VmResource::is_qemu`].
    pub async fn vm_resources(&self) -> Result<Vec<VmResource>> {
        self.client
            .get("/cluster/resources", &params([("type", "vm")]), self.cx)
            .await
    }

    /// The token's own privileges on one ACL path (`GET /access/permissions`,
    /// which any token may ask about itself).
    pub async fn own_privileges(&self, path: &str) -> Result<BTreeSet<String>> {
        let by_path: BTreeMap<String, BTreeMap<String, Value>> = self
            .client
            .get("/access/permissions", &params([("path", path)]), self.cx)
            .await?;
        Ok(by_path.into_values().flat_map(|p| p.into_keys()).collect())
    }
}

pub struct NodeApi<'a> {
    client: &'a Client,
    cx: &'a Cx,
    node: &'a str,
}

impl<'a> NodeApi<'a> {
    pub fn vm(&self, vmid: u32) -> VmApi<'a> {
        VmApi {
            client: self.client,
            cx: self.cx,
            base: format!("/nodes/{}/qemu/{vmid}", self.node),
            vmid,
        }
    }

    pub async fn task_status(&self, upid: &Upid) -> Result<TaskStatus> {
        let path = format!(
            "/nodes/{}/tasks/{}/status",
            self.node,
            encode_segment(&upid.0)
        );
        self.client.get(&path, &Vec::new(), self.cx).await
    }

    /// The last lines of a task's log, for error messages.
    pub async fn task_log_tail(&self, upid: &Upid, lines: usize) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Line {
            t: String,
        }
        let path = format!("/nodes/{}/tasks/{}/log", self.node, encode_segment(&upid.0));
        // `limit` counts from `start` (0): ask for everything, keep the end.
        let all: Vec<Line> = self
            .client
            .get(
                &path,
                &params([("start", "0"), ("limit", "100000")]),
                self.cx,
            )
            .await?;
        let skip = all.len().saturating_sub(lines);
        Ok(all.into_iter().skip(skip).map(|l| l.t).collect())
    }

    /// Volumes of one content type (`images`, `import`) on a storage.
    pub async fn storage_volumes(
        &self,
        storage: &str,
        content: &str,
    ) -> Result<Vec<StorageVolume>> {
        let path = format!("/nodes/{}/storage/{storage}/content", self.node);
        self.client
            .get(&path, &params([("content", content)]), self.cx)
            .await
    }

    /// PVE fetches `url` itself into `storage` as an `import` volume.
    pub async fn download_url(
        &self,
        storage: &str,
        url: &str,
        filename: &str,
        sha256: &str,
    ) -> Result<Upid> {
        let path = format!("/nodes/{}/storage/{storage}/download-url", self.node);
        let form = params([
            ("content", "import"),
            ("filename", filename),
            ("url", url),
            ("checksum", sha256),
            ("checksum-algorithm", "sha256"),
        ]);
        Upid::from_data(
            "download-url",
            self.client.post(&path, &form, self.cx).await?,
        )
    }

    /// Creates a VM from parameters (used for cloud-image sources).
    pub async fn create_vm(&self, form: Params) -> Result<Upid> {
        let path = format!("/nodes/{}/qemu", self.node);
        Upid::from_data("create VM", self.client.post(&path, &form, self.cx).await?)
    }
}

pub struct VmApi<'a> {
    client: &'a Client,
    cx: &'a Cx,
    base: String,
    pub vmid: u32,
}

impl VmApi<'_> {
    pub async fn config(&self) -> Result<VmConfig> {
        self.client
            .get(&format!("{}/config", self.base), &Vec::new(), self.cx)
            .await
    }

    /// Synchronous config change (name, tags, description, cloud-init keys).
    pub async fn set_config(&self, form: Params) -> Result<()> {
        self.client
            .put(&format!("{}/config", self.base), &form, self.cx)
            .await
            .map(|_| ())
    }

    /// POSTs to `<vm>/<sub>` and returns the task it started.
    async fn start_task(&self, sub: &str, form: &Params) -> Result<Upid> {
        let data = self
            .client
            .post(&format!("{}/{sub}", self.base), form, self.cx)
            .await?;
        Upid::from_data(sub, data)
    }

    pub async fn clone_to(&self, form: Params) -> Result<Upid> {
        self.start_task("clone", &form).await
    }

    pub async fn to_template(&self) -> Result<Upid> {
        self.start_task("template", &Vec::new()).await
    }

    pub async fn start(&self) -> Result<Upid> {
        self.start_task("status/start", &Vec::new()).await
    }

    pub async fn shutdown(&self, timeout_secs: u64) -> Result<Upid> {
        let form = params([
            ("timeout", timeout_secs.to_string()),
            ("forceStop", "1".to_owned()),
        ]);
        self.start_task("status/shutdown", &form).await
    }

    pub async fn stop(&self) -> Result<Upid> {
        self.start_task("status/stop", &Vec::new()).await
    }

    /// `running`, `stopped`, ...
    pub async fn status(&self) -> Result<String> {
        #[derive(Deserialize)]
        struct Current {
            status: String,
        }
        let c: Current = self
            .client
            .get(
                &format!("{}/status/current", self.base),
                &Vec::new(),
                self.cx,
            )
            .await?;
        Ok(c.status)
    }

    pub async fn destroy(&self) -> Result<Upid> {
        // Not `destroy-unreferenced-disks`: it activates every storage on the
        // node, and one offline share would fail the destroy half-way.
        let q = params([("purge", "1")]);
        Upid::from_data(
            "destroy",
            self.client.delete(&self.base, &q, self.cx).await?,
        )
    }

    pub async fn agent_ping(&self) -> Result<()> {
        self.client
            .post(&format!("{}/agent/ping", self.base), &Vec::new(), self.cx)
            .await
            .map(|_| ())
    }

    pub async fn agent_exec(&self, argv: &[&str]) -> Result<i64> {
        let form: Params = argv
            .iter()
            .map(|a| ("command".to_owned(), (*a).to_owned()))
            .collect();
        let v = self
            .client
            .post(&format!("{}/agent/exec", self.base), &form, self.cx)
            .await?;
        let started: ExecStarted = serde_json::from_value(v).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("agent/exec: unexpected answer: {e}"),
            )
        })?;
        Ok(started.pid)
    }

    pub async fn agent_exec_status(&self, pid: i64) -> Result<ExecStatus> {
        self.client
            .get(
                &format!("{}/agent/exec-status", self.base),
                &params([("pid", pid.to_string())]),
                self.cx,
            )
            .await
    }

    /// Writes a file in the guest. The content goes base64-encoded with
    /// `encode=0`: PVE's own encoding takes characters, not UTF-8 bytes, and
    /// breaks on anything outside Latin-1.
    pub async fn agent_file_write(&self, file: &str, content: &[u8]) -> Result<()> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(content);
        let form = params([("file", file), ("content", b64.as_str()), ("encode", "0")]);
        // The same bytes to the same path: safe to send again after an agent
        // timeout.
        self.client
            .post_idempotent(&format!("{}/agent/file-write", self.base), &form, self.cx)
            .await
            .map(|_| ())
    }

    pub async fn agent_network(&self) -> Result<Value> {
        let v: Value = self
            .client
            .get(
                &format!("{}/agent/network-get-interfaces", self.base),
                &Vec::new(),
                self.cx,
            )
            .await?;
        Ok(v.get("result").cloned().unwrap_or(v))
    }
}

pub fn params<K: Into<String>, V: Into<String>, const N: usize>(kv: [(K, V); N]) -> Params {
    kv.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
}

/// UPIDs contain ':' and '@' and '!', which are fine in a path segment, but
/// percent-encode anything unusual so the path stays one segment.
fn encode_segment(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | ':' | '@' | '!' | '-' | '_' | '.' | '~' => {
                c.to_string()
            }
            other => {
                let mut buf = [0u8; 4];
                other
                    .encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upid_names_its_node() {
        let u = Upid("UPID:pve2:0001A2B3:00C0FFEE:6745A1B2:qmclone:9000:root@pam!golden:".into());
        assert_eq!(u.node(), Some("pve2"));
    }

    #[test]
    fn boot_disk_sizes_come_from_the_config() {
        let cfg: VmConfig = serde_json::from_value(serde_json::json!({
            "boot": "order=virtio0;ide2",
            "ide2": "local-lvm:vm-1-cloudinit,media=cdrom",
            "scsi0": "local-lvm:vm-1-disk-1,size=1G",
            "virtio0": "local-lvm:vm-1-disk-0,discard=on,size=2560M",
        }))
        .unwrap();
        assert_eq!(boot_disk_size(&cfg), Some(2560 << 20));
        let cfg: VmConfig =
            serde_json::from_value(serde_json::json!({"scsi0": "x:y,size=4096"})).unwrap();
        assert_eq!(boot_disk_size(&cfg), Some(4096));
        assert_eq!(boot_disk_size(&VmConfig::new()), None);
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
    }

    #[test]
    fn a_resource_without_statistics_is_settled_from_its_config() {
        let mut r: VmResource = serde_json::from_value(serde_json::json!({
            "id": "qemu/120", "vmid": 120, "node": "pve", "type": "qemu", "status": "unknown"
        }))
        .unwrap();
        assert!(r.stats_pending() && !r.is_template());
        let cfg: VmConfig =
            serde_json::from_value(serde_json::json!({"name": "fresh", "template": 1})).unwrap();
        r.settle_from(&cfg);
        assert!(!r.stats_pending() && r.is_template());
        assert_eq!(r.name.as_deref(), Some("fresh"));
    }

    #[test]
    fn tags_split_like_pve() {
        assert_eq!(split_tags("a;b,c d;;"), vec!["a", "b", "c", "d"]);
        assert!(split_tags("").is_empty());
    }

    #[test]
    fn guest_output_is_repaired_from_latin1() {
        // "grün" as UTF-8 bytes, each passed on as a character.
        let mojibake: String = "grün".bytes().map(char::from).collect();
        assert_eq!(guest_text(&mojibake), "grün");
        assert_eq!(guest_text("plain ascii\n"), "plain ascii\n");
        assert_eq!(guest_text("already ✓"), "already ✓");
    }

    #[test]
    fn exited_accepts_bool_and_number() {
        let s: ExecStatus = serde_json::from_value(serde_json::json!({"exited": 1})).unwrap();
        assert!(s.has_exited());
        let s: ExecStatus = serde_json::from_value(serde_json::json!({"exited": false})).unwrap();
        assert!(!s.has_exited());
    }

    #[test]
    fn upid_segments_keep_their_separators() {
        assert_eq!(encode_segment("UPID:pve:1:a@b!c:"), "UPID:pve:1:a@b!c:");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }
}
