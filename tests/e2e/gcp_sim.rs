//! The GCE simulator as the tests use it: started as its own process (what
//! `make sim-gcp` runs), checked against Compute's discovery document, called
//! with JWTs signed by the service-account key it issued, steered and
//! inspected through its `/_sim` admin API. See docs/guides/gcp-simulator.md.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::{json, Value};

use super::sim::sim_binary;

/// Compute's discovery document beside the repository. Missing is a
/// failure: the simulator checks every request against it.
pub fn gcp_spec() -> PathBuf {
    let p = std::env::var_os("GOLDEN_GCP_SPEC")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/specs/gcp/compute.v1.json")
        });
    assert!(
        p.is_file(),
        "Compute's discovery document {} is missing (set GOLDEN_GCP_SPEC)",
        p.display()
    );
    p
}

/// An API answer: status and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// A service-account key file, as Google's (and the simulator's) look.
pub struct Key {
    pub json: Value,
    pair: RsaKeyPair,
}

impl Key {
    pub fn load(path: &str) -> Key {
        let text = std::fs::read_to_string(path).expect("reading the key file");
        let json: Value = serde_json::from_str(&text).unwrap();
        let pair = pair_from_pem(json["private_key"].as_str().unwrap());
        Key { json, pair }
    }

    /// Another RSA key (the `openssl` CLI) with this key's ids: a forgery.
    pub fn forged(&self) -> Key {
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("openssl genpkey");
        let pem = String::from_utf8(out.stdout).unwrap();
        let mut json = self.json.clone();
        json["private_key"] = json!(pem);
        Key {
            pair: pair_from_pem(&pem),
            json,
        }
    }

    pub fn email(&self) -> String {
        self.json["client_email"].as_str().unwrap().to_owned()
    }

    /// A JWT with this header `kid` and these claims, RS256.
    pub fn sign_with_kid(&self, kid: &str, claims: &Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
        let msg = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let mut sig = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                msg.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{msg}.{}", b64.encode(sig))
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_kid(self.json["private_key_id"].as_str().unwrap(), claims)
    }

    /// A self-signed JWT for Compute (AIP-4111), valid for an hour.
    pub fn self_signed_jwt(&self) -> String {
        let now = now();
        self.sign(&json!({"iss": self.email(), "sub": self.email(),
            "aud": "https://compute.googleapis.com/", "iat": now, "exp": now + 3600}))
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn pair_from_pem(pem: &str) -> RsaKeyPair {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .unwrap();
    RsaKeyPair::from_pkcs8(&der).expect("a PKCS#8 RSA key")
}

pub struct GcpSim {
    child: Child,
    stdin: Option<ChildStdin>,
    pub endpoint: String,
    pub project: String,
    pub zone: String,
    pub credentials: String,
    pub admin: String,
    pub key: Key,
    token: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl GcpSim {
    /// Fast operations (200 ms).
    pub fn start() -> GcpSim {
        GcpSim::start_with(&["--op-ms", "200"])
    }

    pub fn start_with(args: &[&str]) -> GcpSim {
        let mut child = Command::new(sim_binary())
            .arg("gcp")
            .arg("--spec")
            .arg(gcp_spec())
            .arg("--exit-on-stdin-eof")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting golden-sim gcp");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("reading the simulator's ready line");
        let v: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("simulator printed {line:?}: {e}"));
        let credentials = v["credentials"].as_str().unwrap().to_owned();
        let key = Key::load(&credentials);
        let token = key.self_signed_jwt();
        GcpSim {
            child,
            stdin: Some(stdin),
            endpoint: v["endpoint"].as_str().unwrap().to_owned(),
            project: v["project"].as_str().unwrap().to_owned(),
            zone: v["zone"].as_str().unwrap().to_owned(),
            credentials,
            admin: v["admin"].as_str().unwrap().to_owned(),
            key,
            token,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: golden::platforms::kit::tls::http_client()
                .timeout(Duration::from_secs(150))
                .build()
                .unwrap(),
        }
    }

    /// The environment that points golden's `gcp` platform at this
    /// simulator's project, zone and key (the endpoint goes in the block).
    pub fn provider_env(&self) -> Vec<(String, String)> {
        vec![
            ("GOOGLE_PROJECT".into(), self.project.clone()),
            ("GOOGLE_ZONE".into(), self.zone.clone()),
            ("GOOGLE_CREDENTIALS".into(), self.credentials.clone()),
        ]
    }

    /// `projects/P/zones/Z/`.
    pub fn zonal(&self, rest: &str) -> String {
        format!(
            "/compute/v1/projects/{}/zones/{}/{rest}",
            self.project, self.zone
        )
    }

    /// `projects/P/global/`.
    pub fn global(&self, rest: &str) -> String {
        format!("/compute/v1/projects/{}/global/{rest}", self.project)
    }

    fn admin_send(&self, req: reqwest::RequestBuilder) -> Value {
        self.rt.block_on(async {
            let resp = req.send().await.expect("simulator admin API");
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            assert!(status.is_success(), "admin API answered {status}: {body}");
            serde_json::from_str(&body).unwrap_or(Value::Null)
        })
    }

    pub fn admin_get(&self, path: &str) -> Value {
        self.admin_send(self.http.get(format!("{}{path}", self.admin)))
    }

    pub fn admin_post(&self, path: &str, body: Value) -> Value {
        self.admin_send(
            self.http
                .post(format!("{}{path}", self.admin))
                .body(body.to_string()),
        )
    }

    pub fn admin_put(&self, path: &str, body: Value) -> Value {
        self.admin_send(
            self.http
                .put(format!("{}{path}", self.admin))
                .body(body.to_string()),
        )
    }

    /// A `PUT` to the admin API that may be refused: its status.
    pub fn admin_put_status(&self, path: &str, body: Value) -> u16 {
        self.rt.block_on(async {
            let req = self.http.put(format!("{}{path}", self.admin));
            let resp = req
                .body(body.to_string())
                .send()
                .await
                .expect("simulator admin API");
            resp.status().as_u16()
        })
    }

    /// Arms fault rules (one or an array).
    pub fn fault(&self, rule: Value) {
        self.admin_post("/faults", rule);
    }

    /// A Compute call with the self-signed JWT.
    pub fn call(&self, method: &str, path_and_query: &str, body: Option<Value>) -> Answer {
        self.call_as(&self.token, method, path_and_query, body)
    }

    /// The same with another bearer token (`""`: none).
    pub fn call_as(
        &self,
        token: &str,
        method: &str,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Answer {
        let url = format!("{}{path_and_query}", self.endpoint);
        let mut req = self
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        if !token.is_empty() {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        self.rt.block_on(async {
            let resp = req.send().await.expect("simulator Compute API");
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            Answer {
                status,
                body: serde_json::from_str(&text).unwrap_or(Value::Null),
            }
        })
    }

    /// `POST /token` with a form body.
    pub fn token_call(&self, form: &[(&str, &str)]) -> Answer {
        let enc = |s: &str| -> String {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        char::from(b).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.rt.block_on(async {
            let resp = self
                .http
                .post(format!("{}/token", self.endpoint))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            Answer {
                status,
                body: serde_json::from_str(&text).unwrap_or(Value::Null),
            }
        })
    }

    /// A call that must answer `status`; its body.
    pub fn expect(&self, status: u16, method: &str, path: &str, body: Option<Value>) -> Value {
        let a = self.call(method, path, body);
        assert_eq!(a.status, status, "{method} {path}: {:#}", a.body);
        a.body
    }

    /// An operation's own path (from its selfLink).
    pub fn op_path(op: &Value) -> String {
        let link = op["selfLink"].as_str().expect("an operation");
        format!("/compute/v1/{}", &link[link.find("projects/").unwrap()..])
    }

    /// `operations.wait` until `DONE` (each call returns at GCE's cap or earlier).
    pub fn wait(&self, op: &Value) -> Value {
        for _ in 0..20 {
            let o = self.expect(200, "POST", &format!("{}/wait", Self::op_path(op)), None);
            if o["status"] == "DONE" {
                return o;
            }
        }
        panic!("operation never DONE: {op:#}");
    }

    /// Waits up to `timeout` until the instance has this status.
    pub fn wait_status_for(&self, name: &str, status: &str, timeout: Duration) -> Value {
        let end = std::time::Instant::now() + timeout;
        loop {
            let i = self.expect(200, "GET", &self.zonal(&format!("instances/{name}")), None);
            if i["status"] == status {
                return i;
            }
            assert!(
                std::time::Instant::now() < end,
                "instance {name} not {status} within {timeout:?}: {}",
                i["status"]
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits (10 s) until the instance has this status.
    pub fn wait_status(&self, name: &str, status: &str) -> Value {
        for _ in 0..200 {
            let i = self.expect(200, "GET", &self.zonal(&format!("instances/{name}")), None);
            if i["status"] == status {
                return i;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("instance {name} never became {status}");
    }

    /// No request or answer broke the discovery document.
    pub fn assert_schema_clean(&self) {
        let v = self.admin_get("/violations");
        assert_eq!(v, json!([]), "schema violations: {v:#}");
    }

    /// No instance, disk or image of the project is left.
    pub fn assert_nothing_left(&self) {
        for what in ["instances", "disks", "images"] {
            let v = self.admin_get(&format!("/{what}"));
            assert_eq!(v, json!([]), "{what} left: {v:#}");
        }
    }
}

impl Drop for GcpSim {
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
