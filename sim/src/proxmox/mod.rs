//! A Proxmox VE API simulator: HTTPS on loopback, PVE's `/api2/json` for the
//! calls golden makes (VMs, templates, clones, tasks, guest agent, storage),
//! every request and response checked against the official API schema, and
//! an admin API under `/_sim` for tests (faults, recorded requests, VMs).
//!
//! This module is the HTTP side: envelope, auth, parameter parsing, faults,
//! schema checks, and the router to the handlers in `vms`, `agent` and
//! `storage`.

pub mod admin;
mod agent;
mod guest;
pub mod schema;
mod shell;
pub mod state;
mod storage;
mod tasks;
mod tls;
mod vms;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use schema::{Params, RequestError, Schema};
use state::{Cluster, Options, Power, RequestRecord, Shared};

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

struct Ctx {
    shared: Shared,
    schema: Option<Schema>,
    token_header: String,
}

/// A running simulator, as `main` reports it.
pub struct Started {
    pub endpoint: String,
    pub shared: Shared,
}

pub async fn start(opts: Options, schema: Option<Schema>, listen: SocketAddr) -> Result<Started> {
    let token_header = format!("PVEAPIToken={}", opts.token);
    let shared = Shared::new(Cluster::new(Arc::new(opts)));
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        schema,
        token_header,
    });
    let acceptor = tls::acceptor()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok(Started {
        endpoint: format!("https://{addr}"),
        shared,
    })
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

fn reply(status: u16, reason: Option<&str>, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    if let Some(r) = reason {
        // A reason phrase is one line of visible characters.
        let clean: String = r
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        // An empty message keeps the canonical phrase ("Internal Server Error").
        let phrase = (!clean.trim().is_empty())
            .then(|| hyper::ext::ReasonPhrase::try_from(clean).ok())
            .flatten();
        if let Some(p) = phrase {
            resp.extensions_mut().insert(p);
        }
    }
    resp
}

fn error_reply(e: &ApiError) -> Response<Full<Bytes>> {
    let mut body = json!({"data": null, "message": format!("{}\n", e.message)});
    if let Some(errors) = &e.errors {
        body["errors"] = json!(errors);
    }
    reply(e.status, Some(&e.message), body)
}

async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let header = |name: hyper::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let auth = header(hyper::header::AUTHORIZATION);
    let content_type = header(hyper::header::CONTENT_TYPE);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if let Some(rest) = path.strip_prefix("/_sim") {
        return match admin::handle(&ctx.shared, &method, rest, &body).await {
            Ok(v) => reply(200, None, v),
            Err(e) => reply(e.status, Some(&e.message), json!({"error": e.message})),
        };
    }
    let Some(api_path) = path.strip_prefix("/api2/json") else {
        return reply(404, Some("Not Found"), json!({"data": null}));
    };
    let api_path = if api_path.is_empty() { "/" } else { api_path };
    let latency = ctx.shared.lock().latency_ms();
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let auth_ok = auth.trim() == ctx.token_header;
    let (status, resp) = if auth_ok {
        api(ctx, &method, api_path, &query, &content_type, &body).await
    } else {
        // What pveproxy answers: "No ticket" without credentials, and
        // "Authentication failed!" for a wrong token.
        let why = if auth.trim().is_empty() {
            "No ticket"
        } else {
            "Authentication failed!"
        };
        let r = reply(401, Some(why), json!({"data": null}));
        (401, r)
    };
    ctx.shared.lock().requests.push(RequestRecord {
        method,
        path: api_path.to_owned(),
        status,
        auth_ok,
    });
    resp
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
    let fault = ctx.shared.lock().take_http_fault(method, path);
    if let Some((status, message)) = fault {
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
                .record_violation("request", method, &decoded, detail);
            return fail(err);
        }
    }
    match dispatch(ctx, method, &decoded, &params).await {
        Ok(data) => {
            if let Some(schema) = &ctx.schema {
                let problems = schema.check_response(method, &decoded, &data);
                if !problems.is_empty() {
                    let mut cl = ctx.shared.lock();
                    for p in problems {
                        cl.record_violation("response", method, &decoded, p);
                    }
                }
            }
            (200, reply(200, None, json!({"data": data})))
        }
        Err(e) => fail(e),
    }
}

/// `%XX` decoding (query strings, form bodies, PVE's URL-encoded `sshkeys`).
pub(crate) fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn first<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.get(k).and_then(|v| v.first()).map(String::as_str)
}

fn not_implemented(method: &str, path: &str) -> ApiError {
    ApiError::new(501, format!("Method '{method} {path}' not implemented"))
}

async fn dispatch(ctx: &Ctx, method: &str, path: &str, params: &Params) -> Result<Value, ApiError> {
    let shared = &ctx.shared;
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segs.as_slice()) {
        ("GET", ["version"]) => {
            Ok(json!({"version": "8.3.0", "release": "8.3", "repoid": "c1689ccb1065a83b"}))
        }
        ("GET", ["cluster", "nextid"]) => vms::nextid(&shared.lock(), params),
        ("GET", ["cluster", "resources"]) => {
            Ok(vms::resources(&shared.lock(), first(params, "type")))
        }
        ("GET", ["nodes"]) => {
            let cl = shared.lock();
            Ok(json!([{
                "node": cl.opts.node, "status": "online", "cpu": 0.01, "maxcpu": 2,
                "mem": 2u64 << 30, "maxmem": 16u64 << 30, "uptime": cl.booted.elapsed().as_secs(),
                "level": "",
            }]))
        }
        (_, ["nodes", node, rest @ ..]) => {
            let ours = shared.lock().opts.node.clone();
            if *node != ours {
                return Err(ApiError::new(595, format!("no such cluster node '{node}'")));
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
                _ => Err(ApiError::new(501, "")),
            }
        }
        (_, ["qemu", id, "agent", cmd]) => agent::handle(shared, vmid(id)?, cmd, params).await,
        ("GET", ["tasks", upid, what @ ("status" | "log")]) => {
            if tasks::Upid::parse(upid).is_none() {
                return Err(ApiError::param(
                    "upid",
                    format!("unable to parse worker upid '{upid}'"),
                ));
            }
            let cl = shared.lock();
            let task = cl
                .tasks
                .get(*upid)
                .ok_or_else(|| ApiError::new(500, format!("no such task '{upid}'")))?;
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

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(
            pct_decode("/nodes/pve/tasks/UPID%3Apve%3A00000001%3Aroot%40pam%21golden%3A/status"),
            "/nodes/pve/tasks/UPID:pve:00000001:root@pam!golden:/status"
        );
    }
}
