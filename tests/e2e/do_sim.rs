//! The DigitalOcean simulator as the tests use it: started as its own
//! process (what `make sim-digitalocean` runs), checked against DO's OpenAPI
//! description, steered and inspected through its `/_sim` admin API. See
//! docs/guides/digitalocean-simulator.md.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::sim::sim_binary;

/// DO's OpenAPI description beside the repository (`../shared/specs`).
/// Missing is a failure: the simulator checks every request against it.
pub fn do_spec() -> PathBuf {
    let p = std::env::var_os("GOLDEN_DO_SPEC")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/specs/digitalocean/specification/DigitalOcean-public.v2.yaml")
        });
    assert!(
        p.is_file(),
        "DigitalOcean's OpenAPI description {} is missing (set GOLDEN_DO_SPEC)",
        p.display()
    );
    p
}

/// One request as the simulator served it (`GET /_sim/requests`).
#[derive(Debug, Clone)]
pub struct DoCall {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub request_body: Value,
    pub response_body: Value,
}

/// An API answer: status, headers (lower-case names), JSON body (`Null`
/// when empty).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct DoSim {
    child: Child,
    stdin: Option<ChildStdin>,
    pub endpoint: String,
    pub token: String,
    pub ssh_port: u16,
    pub admin: String,
    /// The certificate to trust when started with `--tls`.
    pub ca_cert: Option<String>,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

/// A port free on loopback now: each simulator gets its own ssh port, so
/// simulators started by parallel tests do not fight over 127.0.0.2:PORT.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl DoSim {
    /// An instant-backend simulator with fast actions (100 ms).
    pub fn start() -> DoSim {
        DoSim::start_with(&["--action-ms", "100"])
    }

    pub fn start_with(args: &[&str]) -> DoSim {
        let ssh_port = free_port().to_string();
        let has_port = args.contains(&"--ssh-port");
        let mut cmd = Command::new(sim_binary());
        cmd.arg("digitalocean")
            .arg("--spec")
            .arg(do_spec())
            .arg("--exit-on-stdin-eof");
        if !has_port {
            cmd.args(["--ssh-port", &ssh_port]);
        }
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting golden-sim digitalocean");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("reading the simulator's ready line");
        let v: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("simulator printed {line:?}: {e}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ca_cert = v["ca_cert"].as_str().map(str::to_owned);
        let mut http = golden::platforms::kit::tls::http_client().timeout(Duration::from_secs(30));
        if let Some(pem) = &ca_cert {
            let pem = std::fs::read(pem).expect("reading the simulator's certificate");
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        let http = http.build().unwrap();
        DoSim {
            child,
            stdin: Some(stdin),
            endpoint: v["endpoint"].as_str().unwrap().to_owned(),
            token: v["token"].as_str().unwrap().to_owned(),
            ssh_port: v["ssh_port"].as_u64().unwrap() as u16,
            admin: v["admin"].as_str().unwrap().to_owned(),
            ca_cert,
            rt,
            http,
        }
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

    /// Arms fault rules (one or an array): `{"kind": "http", "method":
    /// "POST", "path": "/v2/droplets$", "status": 500, "times": 1}`,
    /// `{"kind": "action", "action_type": "snapshot", "times": 1}`, ...
    pub fn fault(&self, rule: Value) {
        self.admin_post("/faults", rule);
    }

    pub fn requests(&self) -> Vec<DoCall> {
        self.admin_get("/requests")
            .as_array()
            .unwrap()
            .iter()
            .map(|r| DoCall {
                method: r["method"].as_str().unwrap().to_owned(),
                path: r["path"].as_str().unwrap().to_owned(),
                query: r["query"].as_str().unwrap_or("").to_owned(),
                status: r["status"].as_u64().unwrap() as u16,
                request_body: r["request_body"].clone(),
                response_body: r["response_body"].clone(),
            })
            .collect()
    }

    /// The served requests of this method whose path ends with `suffix`.
    pub fn calls_to(&self, method: &str, suffix: &str) -> Vec<DoCall> {
        self.requests()
            .into_iter()
            .filter(|c| c.method == method && c.path.ends_with(suffix))
            .collect()
    }

    pub fn droplets(&self) -> Vec<Value> {
        self.admin_get("/droplets").as_array().unwrap().clone()
    }

    pub fn keys(&self) -> Vec<Value> {
        self.admin_get("/keys").as_array().unwrap().clone()
    }

    /// Every image, public ones included.
    pub fn images(&self) -> Vec<Value> {
        self.admin_get("/images").as_array().unwrap().clone()
    }

    pub fn tags(&self) -> Vec<Value> {
        self.admin_get("/tags").as_array().unwrap().clone()
    }

    /// No request or answer broke DO's OpenAPI description.
    pub fn assert_schema_clean(&self) {
        let v = self.admin_get("/violations");
        assert_eq!(v, json!([]), "schema violations: {v:#}");
    }

    /// No droplet and no SSH key is left (what every test must leave).
    pub fn assert_nothing_left(&self) {
        let d = self.droplets();
        assert!(d.is_empty(), "droplets left: {d:#?}");
        let k = self.keys();
        assert!(k.is_empty(), "keys left: {k:#?}");
    }

    /// A DO API call with the token, as any client makes it.
    pub fn call(&self, method: &str, path_and_query: &str, body: Option<Value>) -> Answer {
        self.call_as(&self.token, method, path_and_query, body)
    }

    /// The same with another token (a wrong one, or none: `""`).
    pub fn call_as(
        &self,
        token: &str,
        method: &str,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Answer {
        let url = if path_and_query.starts_with("http") {
            path_and_query.to_owned()
        } else {
            format!("{}{path_and_query}", self.endpoint)
        };
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, url);
        if !token.is_empty() {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        self.rt.block_on(async {
            let resp = req.send().await.expect("simulator DO API");
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let text = resp.text().await.unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::Null);
            Answer {
                status,
                headers,
                body,
            }
        })
    }

    /// A call that must answer `status`; its body.
    pub fn expect(&self, status: u16, method: &str, path: &str, body: Option<Value>) -> Value {
        let a = self.call(method, path, body);
        assert_eq!(a.status, status, "{method} {path}: {:#}", a.body);
        a.body
    }

    /// Waits (up to 10 s) until the action is no longer in progress; its status.
    pub fn wait_action(&self, id: u64) -> String {
        self.wait_action_for(id, Duration::from_secs(10))
    }

    /// Waits up to `limit` until the action is no longer in progress; its status.
    pub fn wait_action_for(&self, id: u64, limit: Duration) -> String {
        let end = std::time::Instant::now() + limit;
        loop {
            let a = self.expect(200, "GET", &format!("/v2/actions/{id}"), None);
            let s = a["action"]["status"].as_str().unwrap().to_owned();
            if s != "in-progress" {
                return s;
            }
            assert!(
                std::time::Instant::now() < end,
                "action {id} still in progress after {limit:?}"
            );
            std::thread::sleep(poll_interval(limit));
        }
    }

    /// Waits (up to 10 s) until the droplet has this status.
    pub fn wait_status(&self, id: u64, status: &str) -> Value {
        self.wait_status_for(id, status, Duration::from_secs(10))
    }

    /// Waits up to `limit` until the droplet has this status.
    pub fn wait_status_for(&self, id: u64, status: &str, limit: Duration) -> Value {
        let end = std::time::Instant::now() + limit;
        loop {
            let d = self.expect(200, "GET", &format!("/v2/droplets/{id}"), None)["droplet"].clone();
            if d["status"] == status {
                return d;
            }
            assert!(
                std::time::Instant::now() < end,
                "droplet {id} never became {status} within {limit:?}: {}",
                d["status"]
            );
            std::thread::sleep(poll_interval(limit));
        }
    }

    /// The simulator's process id (its QEMU guests are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Short waits poll fast; long ones (real guests) once a second, well
/// inside DO's 250 requests a minute, which the simulator enforces.
fn poll_interval(limit: Duration) -> Duration {
    if limit > Duration::from_secs(30) {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(50)
    }
}

impl Drop for DoSim {
    /// Closing stdin asks it to stop (`--exit-on-stdin-eof`): it kills its
    /// sshds and QEMU guests and removes their files; a kill if it lingers.
    fn drop(&mut self) {
        drop(self.stdin.take());
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
