//! A Proxmox VE API simulator: HTTPS on loopback, PVE's `/api2/json` for the
//! calls golden makes (VMs, templates, clones, tasks, guest agent, storage),
//! every request and response checked against the official API schema, and
//! an admin API under `/_sim` for tests (faults, recorded requests, VMs).
//!
//! This module is the HTTP side of PVE: token auth, the `/api2/json`
//! envelope, parameter parsing, faults, schema checks, and the router to the
//! handlers in `vms`, `agent` and `storage`; the server itself, the request
//! log, the fault book and the admin API's common part are the core's
//! (`crate::core`).

pub mod access;
pub mod admin;
mod agent;
pub mod cli;
mod guest;
pub mod plugins;
pub mod schema;
pub mod state;
mod storage;
mod tasks;
mod vms;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Response;
use serde_json::{json, Value};

use crate::core::admin::AdminError;
use crate::core::auth::AuthHook;
use crate::core::server::{self, HttpRequest, HttpResponse, Simulator};
use crate::core::spec::{Params, RequestError, SpecChecker};
use crate::core::util::pct_decode;
use state::{Cluster, Options, Power, Shared};
use tasks::TaskView;

/// An error answer, PVE style: the message is the HTTP reason phrase and the
/// body's `message`; parameter errors carry `errors` per parameter.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub errors: Option<BTreeMap<String, String>>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            errors: None,
        }
    }

    pub fn param(name: &str, why: impl Into<String>) -> ApiError {
        let mut errors = BTreeMap::new();
        errors.insert(name.to_owned(), why.into());
        ApiError::params(errors)
    }

    pub fn params(errors: BTreeMap<String, String>) -> ApiError {
        ApiError {
            status: 400,
            message: "Parameter verification failed.".into(),
            errors: Some(errors),
        }
    }
}

impl From<ApiError> for AdminError {
    fn from(e: ApiError) -> AdminError {
        AdminError::new(e.status, e.message)
    }
}

/// PVE's API token auth: `Authorization: PVEAPIToken=user@realm!tokenid=secret`
/// naming a token of an existing user (`access::Access::authenticate`).
struct TokenAuth {
    shared: Shared,
}

impl AuthHook for TokenAuth {
    fn check(&self, req: &HttpRequest) -> Result<(), Box<HttpResponse>> {
        let auth = req.header(hyper::header::AUTHORIZATION);
        if self.shared.lock().access.authenticate(&auth).is_some() {
            return Ok(());
        }
        // What pveproxy answers: "No ticket" without credentials, and
        // "Authentication failed!" for a wrong token.
        let why = if auth.trim().is_empty() {
            "No ticket"
        } else {
            "Authentication failed!"
        };
        Err(Box::new(reply(401, Some(why), json!({"data": null}))))
    }
}

tokio::task_local! {
    /// The token a request came with, while it is served: the owner a new
    /// task's UPID names.
    static CALLER: String;
}

/// The token of the request being served (the start-up token outside one).
pub fn caller(cl: &Cluster) -> String {
    CALLER
        .try_with(Clone::clone)
        .unwrap_or_else(|_| cl.opts.token_user())
}

struct Ctx {
    shared: Shared,
    schema: Option<Box<dyn SpecChecker>>,
    auth: TokenAuth,
}

impl Simulator for Ctx {
    type State = Cluster;

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn auth(&self) -> &dyn AuthHook {
        &self.auth
    }

    fn api_path(&self, path: &str) -> Option<String> {
        let api_path = path.strip_prefix("/api2/json")?;
        Some(if api_path.is_empty() { "/" } else { api_path }.to_owned())
    }

    fn not_found(&self) -> HttpResponse {
        reply(404, Some("Not Found"), json!({"data": null}))
    }

    async fn serve(&self, req: &HttpRequest, api_path: &str) -> (u16, HttpResponse) {
        let content_type = req.header(hyper::header::CONTENT_TYPE);
        let who = self
            .shared
            .lock()
            .access
            .authenticate(&req.header(hyper::header::AUTHORIZATION))
            .unwrap_or_default();
        let call = api(
            self,
            &who,
            &req.method,
            api_path,
            &req.query,
            &content_type,
            &req.body,
        );
        CALLER.scope(who.clone(), call).await
    }

    async fn admin(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Option<Result<Value, AdminError>> {
        admin::handle(&self.shared, method, path, body).await
    }
}

/// A running simulator, as `main` reports it.
pub struct Started {
    pub endpoint: String,
    pub shared: Shared,
}

pub async fn start(
    opts: Options,
    schema: Option<Box<dyn SpecChecker>>,
    listen: SocketAddr,
) -> Result<Started> {
    // HTTPS with a self-signed certificate made at start, as a fresh PVE node
    // has: clients must be told to accept it (`PROXMOX_VE_INSECURE=true`).
    let (tls, fingerprint) = crate::core::tls::acceptor()?;
    let mut cluster = Cluster::new(Arc::new(opts));
    cluster.ssl_fingerprint = fingerprint;
    let shared = Shared::new(cluster);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        schema,
        auth: TokenAuth {
            shared: shared.clone(),
        },
    });
    let endpoint = server::serve(ctx, listen, Some(tls)).await?;
    Ok(Started { endpoint, shared })
}

/// Kills every QEMU guest (the sim is exiting).
pub async fn stop_guests(shared: &Shared) {
    let guests: Vec<_> = {
        let mut cl = shared.lock();
        cl.vms
            .values_mut()
            .filter_map(
                |vm| match std::mem::replace(&mut vm.power, Power::Stopped) {
                    Power::Running { guest, .. } => guest,
                    Power::Stopped => None,
                },
            )
            .collect()
    };
    for g in guests {
        g.kill().await;
    }
}

/// PVE's answers carry `Content-Type: application/json;charset=UTF-8`.
fn reply(status: u16, reason: Option<&str>, body: Value) -> Response<Full<Bytes>> {
    server::reply(status, reason, body)
}

fn error_reply(e: &ApiError) -> Response<Full<Bytes>> {
    let mut body = json!({"data": null, "message": format!("{}\n", e.message)});
    if let Some(errors) = &e.errors {
        body["errors"] = json!(errors);
    }
    reply(e.status, Some(&e.message), body)
}

/// Query and body parameters; JSON bodies are accepted as PVE does.
fn parse_params(query: &str, content_type: &str, body: &[u8]) -> Result<Params, ApiError> {
    let mut params = Params::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        params
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    if body.is_empty() {
        return Ok(params);
    }
    if content_type.starts_with("application/json") {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::new(400, format!("unable to parse JSON body: {e}")))?;
        let Value::Object(map) = v else {
            return Err(ApiError::new(400, "JSON body must be an object"));
        };
        for (k, v) in map {
            let items = match v {
                Value::Array(a) => a,
                other => vec![other],
            };
            for item in items {
                let s = match item {
                    Value::Null => continue,
                    Value::String(s) => s,
                    Value::Bool(b) => if b { "1" } else { "0" }.to_owned(),
                    other => other.to_string(),
                };
                params.entry(k.clone()).or_default().push(s);
            }
        }
    } else {
        for (k, v) in form_urlencoded::parse(body) {
            params
                .entry(k.into_owned())
                .or_default()
                .push(v.into_owned());
        }
    }
    Ok(params)
}

async fn api(
    ctx: &Ctx,
    who: &str,
    method: &str,
    path: &str,
    query: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Response<Full<Bytes>>) {
    let fail = |e: ApiError| (e.status, error_reply(&e));
    let params = match parse_params(query, content_type, body) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let fault = ctx.shared.lock().sim.faults.take_http(method, path);
    if let Some(fault) = fault {
        let status = fault.status;
        let default = if status == 401 {
            "Authentication failed!"
        } else {
            "simulated failure"
        };
        let message = fault.message.unwrap_or_else(|| default.into());
        eprintln!("golden-sim: injected fault: {method} {path} -> {status} {message}");
        if status == 401 {
            return (401, reply(401, Some(&message), json!({"data": null})));
        }
        return fail(ApiError::new(status, message));
    }
    // Path parameters arrive percent-encoded (a UPID's `:`, `@`, `!`).
    let decoded = pct_decode(path);
    if let Some(schema) = &ctx.schema {
        if let Err(e) = schema.check_request(method, &decoded, &params) {
            let err = match e {
                RequestError::UnknownPath | RequestError::UnknownMethod => {
                    ApiError::new(501, format!("Method '{method} {decoded}' not implemented"))
                }
                RequestError::Params(errors) => ApiError::params(errors),
            };
            let detail = match &err.errors {
                Some(errors) => errors
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join("; "),
                None => err.message.clone(),
            };
            ctx.shared
                .lock()
                .sim
                .violations
                .record("request", method, &decoded, detail);
            return fail(err);
        }
    }
    // PVE checks permissions after the parameters, before the handler.
    let authorized = access::authorize(&ctx.shared.lock(), who, method, &decoded, &params);
    if let Err(e) = authorized {
        return fail(e);
    }
    match dispatch(ctx, who, method, &decoded, &params).await {
        Ok(data) => {
            let data = access::filter(&ctx.shared.lock(), who, method, &decoded, data);
            if let Some(schema) = &ctx.schema {
                let problems = schema.check_response(method, &decoded, 200, &data);
                if !problems.is_empty() {
                    let mut cl = ctx.shared.lock();
                    for p in problems {
                        cl.sim.violations.record("response", method, &decoded, p);
                    }
                }
            }
            (200, reply(200, None, json!({"data": data})))
        }
        Err(e) => fail(e),
    }
}

/// The PVE release the simulator is: the one the schema it checks against
/// describes (`../shared/specs/proxmox`: `VM.GuestAgent.*` privileges and
/// the `network` resource type, which pve-manager has since 9.0/9.1, no
/// `host-arch` yet, which came in 9.1.10). pve-manager 9.1.1 (commit
/// f4d3f125), kernel 6.17, QEMU 10.1. It also decides what download-url
/// takes: `.qcow2`/`.raw`/`.vmdk` imports need PVE 8.4 (pve-storage 8.3.6).
const PVE_VERSION: &str = "9.1.1";
const PVE_RELEASE: &str = "9.1";
const PVE_REPOID: &str = "f4d3f125ffae50e9";
const KERNEL: &str = "6.17.2-1-pve";
const KERNEL_BUILD: &str = "#1 SMP PREEMPT_DYNAMIC PMX 6.17.2-1";

fn first<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.get(k).and_then(|v| v.first()).map(String::as_str)
}

/// `GET /nodes/{node}/status` (pve-manager PVE/API2/Nodes.pm status): the
/// node's load, memory and versions, with the keys the schema requires.
fn node_status(cl: &Cluster) -> Value {
    json!({
        "cpu": 0.01,
        "uptime": cl.booted.elapsed().as_secs(),
        "loadavg": ["0.05", "0.10", "0.08"],
        "kversion": format!("Linux {KERNEL} {KERNEL_BUILD}"),
        "pveversion": format!("pve-manager/{PVE_VERSION}/{PVE_REPOID}"),
        "cpuinfo": {"cores": 2, "cpus": 2, "model": "QEMU Virtual CPU", "sockets": 1},
        "memory": {"available": 14u64 << 30, "free": 14u64 << 30, "total": 16u64 << 30, "used": 2u64 << 30},
        "rootfs": {"avail": 90u64 << 30, "free": 90u64 << 30, "total": 100u64 << 30, "used": 10u64 << 30},
        "boot-info": {"mode": "legacy-bios"},
        "current-kernel": {"machine": "x86_64", "release": KERNEL, "sysname": "Linux", "version": KERNEL_BUILD},
        "ksm": {"shared": 0},
        "swap": {"free": 0, "total": 0, "used": 0},
    })
}

/// `GET /cluster/ha/resources/{sid}` where nothing is HA-managed: a vmid
/// becomes `vm:<id>` (pve-ha-manager `PVE/HA/Config.pm` parse_sid) and the
/// read dies "no such resource" (`PVE/API2/HA/Resources.pm` read,
/// `$api_copy_config`), a plain 500.
fn no_ha_resource(cl: &Cluster, sid: &str) -> ApiError {
    let why = if let Ok(id) = sid.parse::<u32>() {
        if cl.vms.contains_key(&id) {
            format!("no such resource 'vm:{id}'")
        } else {
            format!("unable to detect SID from VMID - VM/CT {id} does not exist")
        }
    } else if sid
        .split_once(':')
        .is_some_and(|(t, n)| !t.is_empty() && !n.is_empty())
    {
        format!("no such resource '{sid}'")
    } else {
        format!("unable to parse service id '{sid}'")
    };
    ApiError::new(500, why)
}

fn not_implemented(method: &str, path: &str) -> ApiError {
    ApiError::new(501, format!("Method '{method} {path}' not implemented"))
}

async fn dispatch(
    ctx: &Ctx,
    who: &str,
    method: &str,
    path: &str,
    params: &Params,
) -> Result<Value, ApiError> {
    let shared = &ctx.shared;
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segs.as_slice()) {
        ("GET", ["version"]) => {
            // pve-manager PVE/API2.pm version (PVE::pvecfg).
            Ok(json!({"version": PVE_VERSION, "release": PVE_RELEASE, "repoid": PVE_REPOID}))
        }
        ("GET", ["cluster", "nextid"]) => vms::nextid(&shared.lock(), params),
        ("GET", ["cluster", "resources"]) => {
            Ok(vms::resources(&mut shared.lock(), first(params, "type")))
        }
        ("GET", ["nodes"]) => {
            let cl = shared.lock();
            // pve-manager PVE/API2/Nodes.pm index: every online node carries
            // `ssl_fingerprint` (PVE::Cluster::get_node_fingerprint).
            Ok(json!([{
                "node": cl.opts.node, "status": "online", "cpu": 0.01, "maxcpu": 2,
                "mem": 2u64 << 30, "maxmem": 16u64 << 30, "uptime": cl.booted.elapsed().as_secs(),
                "level": "", "ssl_fingerprint": cl.ssl_fingerprint,
            }]))
        }
        // pve-ha-manager PVE/API2/HA/Resources.pm: no guest is HA-managed.
        ("GET", ["cluster", "ha", "resources"]) => Ok(json!([])),
        ("GET", ["cluster", "ha", "resources", sid]) => Err(no_ha_resource(&shared.lock(), sid)),
        // pve-access-control PVE/API2/Pool.pm index: the pools the caller may
        // see; a cluster without pools answers an empty list.
        ("GET", ["pools"]) => Ok(json!([])),
        ("GET", ["access", "permissions"]) => access::permissions_json(&shared.lock(), who, params),
        ("GET", ["nodes", node, "status"]) if *node == shared.lock().opts.node => {
            Ok(node_status(&shared.lock()))
        }
        (_, ["nodes", node, rest @ ..]) => {
            let ours = shared.lock().opts.node.clone();
            if *node != ours {
                // pveproxy resolves the node before proxying; PVE::Cluster
                // dies "no such cluster node 'x'", a plain 500 (not 595,
                // which is pveproxy failing to reach a node that exists).
                return Err(ApiError::new(500, format!("no such cluster node '{node}'")));
            }
            node_dispatch(shared, method, rest, params)
                .await
                .map_err(|e| {
                    if e.status == 501 {
                        not_implemented(method, path)
                    } else {
                        e
                    }
                })
        }
        _ => Err(not_implemented(method, path)),
    }
}

async fn node_dispatch(
    shared: &Shared,
    method: &str,
    rest: &[&str],
    params: &Params,
) -> Result<Value, ApiError> {
    let vmid = |s: &str| vms::parse_vmid("vmid", s);
    match (method, rest) {
        ("GET", ["qemu"]) => Ok(vms::list(&shared.lock())),
        ("POST", ["qemu"]) => vms::create(shared, &mut shared.lock(), params),
        ("DELETE", ["qemu", id]) => vms::delete(shared, &mut shared.lock(), vmid(id)?, params),
        ("GET", ["qemu", id, "config"]) => vms::config_get(&shared.lock(), vmid(id)?),
        ("POST" | "PUT", ["qemu", id, "config"]) => vms::config_set(
            shared,
            &mut shared.lock(),
            vmid(id)?,
            params,
            method == "POST",
        ),
        ("POST", ["qemu", id, "clone"]) => {
            vms::clone(shared, &mut shared.lock(), vmid(id)?, params)
        }
        ("POST", ["qemu", id, "template"]) => vms::template(shared, &mut shared.lock(), vmid(id)?),
        ("PUT", ["qemu", id, "resize"]) => {
            vms::resize(shared, &mut shared.lock(), vmid(id)?, params)
        }
        ("PUT", ["qemu", id, "cloudinit"]) => vms::cloudinit_update(&shared.lock(), vmid(id)?),
        ("GET", ["qemu", id, "status", "current"]) => {
            vms::status_current(&shared.lock(), vmid(id)?)
        }
        ("POST", ["qemu", id, "status", action]) => {
            let id = vmid(id)?;
            let mut cl = shared.lock();
            match *action {
                "start" => vms::start(shared, &mut cl, id, params),
                "stop" => vms::stop(shared, &mut cl, id, params),
                "shutdown" => vms::shutdown(shared, &mut cl, id, params),
                "reboot" => vms::reboot(shared, &mut cl, id, params),
                _ => Err(ApiError::new(501, "")),
            }
        }
        (_, ["qemu", id, "agent", cmd]) => agent::handle(shared, vmid(id)?, cmd, params).await,
        ("GET", ["tasks", upid, what @ ("status" | "log")]) => {
            // pve-manager API2/Tasks.pm read_task_log / read_task_status:
            // both refusals are parameter errors (400).
            if tasks::Upid::parse(upid).is_none() {
                return Err(ApiError::param("upid", "unable to parse worker upid"));
            }
            let cl = shared.lock();
            let task = cl
                .tasks
                .get(upid)
                .ok_or_else(|| ApiError::param("upid", "no such task"))?;
            if *what == "status" {
                Ok(task.status_json())
            } else {
                let start = first(params, "start")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let limit = first(params, "limit")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(50);
                Ok(task.log_json(start, limit))
            }
        }
        ("GET", ["storage"]) => Ok(storage::list(&shared.lock(), params)),
        ("GET", ["storage", st, "content"]) => storage::content(&shared.lock(), st, params),
        ("GET", ["storage", st, "status"]) => storage::status(&shared.lock(), st),
        // pve-storage PVE/API2/Storage/Status.pm mounts Content.pm with
        // `fragmentDelimiter => ''` (pve-common PVE/RESTHandler.pm
        // map_path_to_methods joins the rest of the path): a volume id may
        // hold `/` (`local:9000/base-9000-disk-0.qcow2/201/vm-201-disk-0.qcow2`).
        ("GET", ["storage", st, "content", volume @ ..]) if !volume.is_empty() => {
            storage::volume_info(&shared.lock(), st, &volume.join("/"))
        }
        ("POST", ["storage", st, "download-url"]) => {
            storage::download_url(shared, &mut shared.lock(), st, params)
        }
        _ => Err(ApiError::new(501, "")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_come_from_query_form_and_json() {
        let p = parse_params(
            "type=vm",
            "application/x-www-form-urlencoded",
            b"command=%2Fbin%2Fsh&command=-c&command=echo+hi&sshkeys=ssh-ed25519%2520AAAA",
        )
        .unwrap();
        assert_eq!(p["type"], vec!["vm"]);
        assert_eq!(p["command"], vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!(
            p["sshkeys"],
            vec!["ssh-ed25519%20AAAA"],
            "one level of decoding only"
        );
        let p = parse_params(
            "",
            "application/json",
            br#"{"command":["a","b"],"full":true,"newid":101}"#,
        )
        .unwrap();
        assert_eq!(p["command"], vec!["a", "b"]);
        assert_eq!(p["full"], vec!["1"]);
        assert_eq!(p["newid"], vec!["101"]);
    }
}
