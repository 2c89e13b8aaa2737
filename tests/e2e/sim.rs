//! The Proxmox VE simulator as the tests use it: started as its own process
//! (exactly what `make sim-proxmox` runs), checked against the official PVE
//! schema, steered and inspected through its `/_sim` admin API.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// The PVE API schema beside the repository (`../shared/specs`). Missing is a
/// failure: the point of these tests is that client and simulator agree with it.
pub fn pve_schema() -> PathBuf {
    let p = std::env::var_os("GOLDEN_PVE_SCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/specs/proxmox/PVE-schema.json")
        });
    assert!(
        p.is_file(),
        "the PVE API schema {} is missing: the simulator tests check every request against it (set GOLDEN_PVE_SCHEMA)",
        p.display()
    );
    p
}

/// The `golden-sim` binary. It is another package of the workspace, so cargo
/// gives this test no `CARGO_BIN_EXE_golden-sim`: it is looked for beside the
/// test binary's own target dir (`target/<profile>/deps/e2e-*` ->
/// `target/<profile>/golden-sim`), where `cargo build -p golden-sim` puts it.
/// `GOLDEN_SIM_BIN` overrides. Missing is a failure, never a skip.
pub fn sim_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GOLDEN_SIM_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("locating the test binary");
    let profile_dir = exe
        .parent()
        .filter(|d| d.file_name().is_some_and(|n| n == "deps"))
        .and_then(Path::parent)
        .or_else(|| exe.parent())
        .expect("the test binary has a parent directory");
    let sim = profile_dir.join(format!("golden-sim{}", std::env::consts::EXE_SUFFIX));
    assert!(
        sim.is_file(),
        "the simulator binary {} is missing: build it first with `cargo build -p golden-sim` \
         (same profile and CARGO_TARGET_DIR as the tests; `make test` does), or set GOLDEN_SIM_BIN",
        sim.display()
    );
    sim
}

/// One request as the simulator served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    /// The path after `/api2/json`, without the query.
    pub path: String,
    pub status: u16,
    /// The request carried the right token.
    pub auth_ok: bool,
}

pub struct Sim {
    child: Child,
    stdin: Option<ChildStdin>,
    pub endpoint: String,
    pub token: String,
    pub node: String,
    /// The images storage template 9000 lives on (the ready line's `storage`).
    pub storage: String,
    admin: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Sim {
    /// An instant-backend simulator with default timings.
    pub fn start() -> Sim {
        Sim::start_with(&[])
    }

    /// A simulator whose images storage (template 9000's, golden's) is of
    /// PVE storage type `kind`: `lvmthin` (`local-lvm`, the default), `dir`
    /// (`vmstore`), `zfspool` (`local-zfs`) or `rbd` (`ceph`).
    pub fn start_on(kind: &str) -> Sim {
        let id = match kind {
            "lvmthin" => "local-lvm",
            "dir" => "vmstore",
            "zfspool" => "local-zfs",
            "rbd" => "ceph",
            other => panic!("no storage id for type {other}"),
        };
        let spec = format!("{id}={kind}");
        Sim::start_with(&["--storage", id, "--add-storage", &spec])
    }

    pub fn start_with(args: &[&str]) -> Sim {
        let mut child = Command::new(sim_binary())
            .arg("proxmox")
            .arg("--schema")
            .arg(pve_schema())
            .arg("--exit-on-stdin-eof")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting golden-sim");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("reading the simulator's endpoint line");
        let v: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("simulator printed {line:?}: {e}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = golden::platforms::kit::tls::http_client()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Sim {
            child,
            stdin: Some(stdin),
            endpoint: v["endpoint"].as_str().unwrap().to_owned(),
            token: v["api_token"].as_str().unwrap().to_owned(),
            node: v["node"].as_str().unwrap_or("pve").to_owned(),
            storage: v["storage"].as_str().unwrap_or("local-lvm").to_owned(),
            admin: v["admin"].as_str().unwrap().to_owned(),
            rt,
            http,
        }
    }

    /// The token's secret: what must never appear in logs or state.
    pub fn secret(&self) -> String {
        self.token.split_once('=').unwrap().1.to_owned()
    }

    fn send(&self, req: reqwest::RequestBuilder) -> Value {
        self.rt.block_on(async {
            let resp = req.send().await.expect("simulator admin API");
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            assert!(status.is_success(), "admin API answered {status}: {body}");
            serde_json::from_str(&body).unwrap_or(Value::Null)
        })
    }

    pub fn admin_get(&self, path: &str) -> Value {
        self.send(self.http.get(format!("{}{path}", self.admin)))
    }

    pub fn admin_post(&self, path: &str, body: Value) -> Value {
        self.send(
            self.http
                .post(format!("{}{path}", self.admin))
                .header("Content-Type", "application/json")
                .body(body.to_string()),
        )
    }

    pub fn admin_put(&self, path: &str, body: Value) -> Value {
        self.send(
            self.http
                .put(format!("{}{path}", self.admin))
                .header("Content-Type", "application/json")
                .body(body.to_string()),
        )
    }

    pub fn admin_delete(&self, path: &str) {
        self.send(self.http.delete(format!("{}{path}", self.admin)));
    }

    /// A PVE API call with the token, as any API client would make it.
    pub fn api(&self, method: reqwest::Method, path: &str) -> Value {
        let req = self
            .http
            .request(method, format!("{}/api2/json{path}", self.endpoint))
            .header("Authorization", format!("PVEAPIToken={}", self.token));
        self.send(req)["data"].clone()
    }

    /// A PVE API call with a form that may fail: the whole body on success,
    /// `{"data": null, "status": N}` otherwise (an agent not up yet).
    pub fn api_raw(&self, method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> Value {
        let req = self
            .http
            .request(method, format!("{}/api2/json{path}", self.endpoint))
            .header("Authorization", format!("PVEAPIToken={}", self.token))
            .form(form);
        self.rt.block_on(async {
            let resp = req.send().await.expect("simulator PVE API");
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            if status.is_success() {
                serde_json::from_str(&body).unwrap_or(Value::Null)
            } else {
                json!({"data": null, "status": status.as_u16()})
            }
        })
    }

    /// A PVE API call that may fail, as a client sees it: the HTTP status
    /// and the whole body (`data`, and `message` on errors).
    pub fn api_answer(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let req = self
            .http
            .request(method, format!("{}/api2/json{path}", self.endpoint))
            .header("Authorization", format!("PVEAPIToken={}", self.token))
            .form(form);
        self.rt.block_on(async {
            let resp = req.send().await.expect("simulator PVE API");
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            (status, serde_json::from_str(&body).unwrap_or(Value::Null))
        })
    }

    /// Starts a task through the PVE API (asserting a UPID comes back) and
    /// waits for its exit status.
    pub fn api_task_exit(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, &str)],
    ) -> String {
        let (status, body) = self.api_answer(method, path, form);
        let upid = body["data"].as_str().unwrap_or_default().to_owned();
        assert!(
            status == 200 && upid.starts_with("UPID:"),
            "{path}: {status} {body}"
        );
        self.task_exit(&upid)
    }

    /// Waits for a task and returns its exit status (`OK` or the error).
    pub fn task_exit(&self, upid: &str) -> String {
        for _ in 0..400 {
            let st = self.api(
                reqwest::Method::GET,
                &format!("/nodes/{}/tasks/{upid}/status", self.node),
            );
            if st["status"] == "stopped" {
                return st["exitstatus"].as_str().unwrap_or_default().to_owned();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("task {upid} did not finish");
    }

    /// Destroys a VM through the PVE API and waits for the task.
    pub fn api_destroy(&self, vmid: u64) {
        let st = self.api_task(reqwest::Method::DELETE, &format!("/qemu/{vmid}"), &[]);
        assert_eq!(st["exitstatus"], "OK", "destroying VM {vmid}");
    }

    /// A node call that starts a task (`path` after `/nodes/{node}`), run to
    /// its end: the task's final status (`exitstatus` "OK" or the error).
    pub fn api_task(&self, method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> Value {
        let body = self.api_raw(method, &format!("/nodes/{}{path}", self.node), form);
        let upid = body["data"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: no UPID in {body}"))
            .to_owned();
        for _ in 0..200 {
            let st = self.api(
                reqwest::Method::GET,
                &format!("/nodes/{}/tasks/{upid}/status", self.node),
            );
            if st["status"] == "stopped" {
                return st;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("task {upid} ({path}) did not finish");
    }

    /// A VM's description (PVE's notes), as the admin view shows it.
    pub fn description(&self, vmid: u64) -> String {
        self.vms()
            .into_iter()
            .find(|v| v["vmid"] == vmid)
            .and_then(|v| v["description"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Sets a VM's notes through the PVE API, as a person in the web UI would.
    pub fn api_set_description(&self, vmid: u64, text: &str) {
        let req = self
            .http
            .put(format!(
                "{}/api2/json/nodes/{}/qemu/{vmid}/config",
                self.endpoint, self.node
            ))
            .header("Authorization", format!("PVEAPIToken={}", self.token))
            .form(&[("description", text)]);
        self.send(req);
    }

    /// Changes VM options through the PVE API, as a person in the web UI would.
    pub fn api_set_config(&self, vmid: u64, form: &[(&str, &str)]) {
        let req = self
            .http
            .put(format!(
                "{}/api2/json/nodes/{}/qemu/{vmid}/config",
                self.endpoint, self.node
            ))
            .header("Authorization", format!("PVEAPIToken={}", self.token))
            .form(form);
        self.send(req);
    }

    /// A VM's config through the PVE API.
    pub fn api_config(&self, vmid: u64) -> Value {
        self.api(
            reqwest::Method::GET,
            &format!("/nodes/{}/qemu/{vmid}/config", self.node),
        )
    }

    pub fn fault(&self, rule: Value) {
        self.admin_post("/faults", json!([rule]));
    }

    pub fn clear_faults(&self) {
        self.admin_delete("/faults");
    }

    pub fn vms(&self) -> Vec<Value> {
        self.admin_get("/vms")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// VMs golden made (tagged `golden`), as (name, tags) sorted by name.
    pub fn golden_vms(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .vms()
            .into_iter()
            .filter(|vm| {
                vm["tags"]
                    .as_str()
                    .unwrap_or("")
                    .split(';')
                    .any(|t| t == "golden")
            })
            .map(|vm| {
                (
                    vm["name"].as_str().unwrap_or("").to_owned(),
                    vm["tags"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    }

    pub fn vm_named(&self, name: &str) -> Option<Value> {
        self.vms().into_iter().find(|v| v["name"] == name)
    }

    /// Requests and responses the PVE schema does not allow: must be none.
    pub fn assert_schema_clean(&self) {
        let v = self.admin_get("/violations");
        assert_eq!(
            v.as_array().map(Vec::len),
            Some(0),
            "requests or responses outside the PVE schema: {v:#}"
        );
    }

    pub fn requests(&self) -> Vec<Value> {
        self.admin_get("/requests")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The request log as typed records, in the order served.
    pub fn calls(&self) -> Vec<Call> {
        self.requests()
            .iter()
            .map(|r| Call {
                method: r["method"].as_str().unwrap_or("").to_owned(),
                path: r["path"].as_str().unwrap_or("").to_owned(),
                status: r["status"].as_u64().unwrap_or(0) as u16,
                auth_ok: r["auth_ok"] == true,
            })
            .collect()
    }

    /// Calls with `method` whose path ends with `suffix`, in order.
    pub fn calls_to(&self, method: &str, suffix: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.path.ends_with(suffix))
            .collect()
    }

    /// Empties the request log (the next assertions see one step's calls).
    pub fn clear_requests(&self) {
        self.admin_delete("/requests");
    }

    /// Fault rules still armed: a rule with `times` leaves once used up, so
    /// zero proves that every such rule fired as often as it was told to.
    pub fn faults_left(&self) -> u64 {
        self.admin_post("/faults", json!([]))["faults"]
            .as_u64()
            .expect("the fault count")
    }

    /// The provider block for this simulator plus a local store for ledgers.
    pub fn provider_block(&self, store: &Path, extra: &str) -> String {
        self.provider_block_with_token(store, &self.token, extra)
    }

    /// The provider block, authenticating with `token` (`user@realm!id=secret`).
    pub fn provider_block_with_token(&self, store: &Path, token: &str, extra: &str) -> String {
        format!(
            "provider \"golden\" {{\n  local {{\n    store_dir = \"{}\"\n  }}\n  proxmox {{\n    endpoint  = \"{}\"\n    api_token = \"{}\"\n    insecure  = true\n    node      = \"{}\"\n    storage   = \"{}\"\n{extra}  }}\n}}\n",
            store.display(),
            self.endpoint,
            token,
            self.node,
            self.storage
        )
    }
}

impl Drop for Sim {
    /// Closing stdin asks it to stop (`--exit-on-stdin-eof`): it stops its
    /// guests and removes its temporary state directory; a kill if it
    /// lingers (a kill leaves the directory behind in the temp dir).
    fn drop(&mut self) {
        drop(self.stdin.take());
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-file HTTP server on loopback (the "internet" PVE downloads from);
/// counts the downloads.
pub struct ImageServer {
    pub url: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ImageServer {
    pub fn start(body: &'static [u8]) -> ImageServer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/images/tiny-cloud.qcow2",
            listener.local_addr().unwrap()
        );
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(body);
            }
        });
        ImageServer { url, hits }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
