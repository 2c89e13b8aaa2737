//! A DigitalOcean API simulator: plain HTTP on loopback, DO's `/v2` for the
//! calls golden makes (account, SSH keys, droplets and their actions,
//! images and image actions, tags, regions, sizes), every request and answer
//! checked against DO's OpenAPI description (`core::openapi`), a per-token
//! rate budget, actions that take time, and an SSH endpoint per droplet.
//! See docs/guides/digitalocean-simulator.md.
//!
//! This module is the HTTP side: bearer auth, rate-limit headers, faults,
//! the spec checks, errors in DO's shape, and the router to `api`.

pub mod admin;
mod api;
pub mod cli;
mod md5;
mod page;
mod qemu;
pub mod ratelimit;
pub mod ssh;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::Response;
use serde_json::{json, Value};

use crate::core::admin::AdminError;
use crate::core::auth::AuthHook;
use crate::core::openapi::OpenApi;
use crate::core::server::{self, HttpRequest, HttpResponse, Simulator};
use crate::core::spec::{Params, RequestError, SpecChecker};
use crate::core::util::{pct_decode, random_secret};
use ratelimit::Verdict;
use state::{Account, Options, Shared};

/// An error answer, DO style (shared/models/error.yml): `{"id", "message",
/// "request_id"}`, `id` naming the status (`not_found`, ...).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub id: &'static str,
    pub message: String,
    /// Answered in the `error`/`root_causes` shape instead
    /// (shared/models/error_with_root_causes.yml), as the tag service does.
    pub root_causes: Option<Vec<String>>,
}

impl ApiError {
    pub fn new(status: u16, id: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            id,
            message: message.into(),
            root_causes: None,
        }
    }

    /// DO's 404 (shared/responses/not_found.yml).
    pub fn not_found() -> ApiError {
        ApiError::new(
            404,
            "not_found",
            "The resource you were accessing could not be found.",
        )
    }

    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(422, "unprocessable_entity", message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "bad_request", message)
    }

    /// The `id` DO gives a status (shared/models/error.yml: "A short
    /// identifier corresponding to the HTTP status code returned").
    fn id_for(status: u16) -> &'static str {
        match status {
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            409 => "conflict",
            422 => "unprocessable_entity",
            429 => "too_many_requests",
            503 => "service_unavailable",
            _ if status >= 500 => "server_error",
            _ => "error",
        }
    }
}

/// What a handler answers: a status and a JSON body (`Null`: none, 204).
pub type ApiResult = Result<(u16, Value), ApiError>;

/// `Authorization: Bearer <token>`; anything else is DO's 401
/// (shared/responses/unauthorized.yml; the message as DO words it:
/// "Unable to authenticate you").
struct BearerAuth {
    shared: Shared,
}

fn bearer(req: &HttpRequest) -> String {
    let h = req.header(hyper::header::AUTHORIZATION);
    h.strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
        .unwrap_or("")
        .trim()
        .to_owned()
}

impl AuthHook for BearerAuth {
    fn check(&self, req: &HttpRequest) -> Result<(), Box<HttpResponse>> {
        let token = bearer(req);
        let mut a = self.shared.lock();
        if token == a.opts.token {
            return Ok(());
        }
        // A bad token has a budget of its own: the headers still show one.
        let v = a.rate.check(&token, false);
        let e = ApiError::new(401, "unauthorized", "Unable to authenticate you");
        Err(Box::new(error_reply(&e, &v)))
    }
}

struct Ctx {
    shared: Shared,
    spec: Option<OpenApi>,
    auth: BearerAuth,
}

impl Simulator for Ctx {
    type State = Account;

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn auth(&self) -> &dyn AuthHook {
        &self.auth
    }

    fn api_path(&self, path: &str) -> Option<String> {
        path.starts_with("/v2/").then(|| path.to_owned())
    }

    fn not_found(&self) -> HttpResponse {
        json_reply(404, &error_body(&ApiError::not_found()))
    }

    async fn serve(&self, req: &HttpRequest, api_path: &str) -> (u16, HttpResponse) {
        let token = bearer(req);
        let keys_list = req.method == "GET" && api_path.trim_end_matches('/') == "/v2/account/keys";
        let verdict = self.shared.lock().rate.check(&token, keys_list);
        if verdict.refused.is_some() {
            // description.yml "Rate Limit": 429 and DO's body.
            let e = ApiError::new(429, "too_many_requests", "API Rate limit exceeded.");
            self.check_answer(&req.method, api_path, 429, &error_body(&e));
            return (429, error_reply(&e, &verdict));
        }
        let (status, body) = match self.api(req, api_path).await {
            Ok(ok) => ok,
            Err(e) => (e.status, error_body(&e)),
        };
        self.check_answer(&req.method, api_path, status, &body);
        let mut resp = if body.is_null() {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
            r
        } else {
            json_reply(status, &body)
        };
        rate_headers(&mut resp, &verdict);
        (status, resp)
    }

    async fn admin(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Option<Result<Value, AdminError>> {
        admin::handle(&self.shared, method, path, body)
    }
}

impl Ctx {
    /// Faults, the request's spec check, then the handler.
    async fn api(&self, req: &HttpRequest, path: &str) -> ApiResult {
        let method = req.method.as_str();
        if let Some(f) = self.shared.lock().sim.faults.take_http(method, path) {
            eprintln!(
                "golden-sim: injected fault: {method} {path} -> {}",
                f.status
            );
            let message = f.message.unwrap_or_else(|| match f.status {
                // shared/responses/server_error.yml's example.
                s if s >= 500 => "Unexpected server-side error".into(),
                _ => "simulated failure".into(),
            });
            return Err(ApiError::new(f.status, ApiError::id_for(f.status), message));
        }
        let params = query_params(&req.query);
        let body: Option<Value> = if req.body.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&req.body).map_err(|e| {
                ApiError::bad_request(format!("unable to parse the request body as JSON: {e}"))
            })?)
        };
        let decoded = pct_decode(path);
        if let Some(spec) = &self.spec {
            if let Err(e) = spec.check_request_body(method, &decoded, &params, body.as_ref()) {
                return Err(self.refuse(method, &decoded, e));
            }
        }
        let served = api::dispatch(
            &self.shared,
            method,
            &decoded,
            &params,
            body.unwrap_or(Value::Null),
        )
        .await;
        // `"after": true`: the work is done (whatever it answered), then a
        // 5xx comes back instead, as from a gateway in front of the API
        // whose upstream answer was lost: the client cannot tell it from a
        // call that did nothing, and must look before sending it again.
        if let Some(f) = self.shared.lock().sim.faults.take_http_after(method, path) {
            eprintln!(
                "golden-sim: injected fault after serving: {method} {path} -> {} (served: {})",
                f.status,
                match &served {
                    Ok((s, _)) => s.to_string(),
                    Err(e) => e.status.to_string(),
                }
            );
            let message = f
                .message
                .unwrap_or_else(|| "Unexpected server-side error".into());
            return Err(ApiError::new(f.status, ApiError::id_for(f.status), message));
        }
        served
    }

    /// A request the description does not allow: recorded, and refused as
    /// DO would (404 for an unknown path, 400 for bad parameters).
    fn refuse(&self, method: &str, path: &str, e: RequestError) -> ApiError {
        let (err, detail) = match e {
            RequestError::UnknownPath | RequestError::UnknownMethod => (
                ApiError::not_found(),
                format!("{method} {path} is not in the API description"),
            ),
            RequestError::Params(errors) => {
                let detail = errors
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut err = ApiError::bad_request(detail.clone());
                if method == "POST" && path.trim_end_matches('/') == "/v2/tags" {
                    err = tag_refusal(&detail);
                }
                (err, detail)
            }
        };
        self.shared
            .lock()
            .sim
            .violations
            .record("request", method, path, detail);
        err
    }

    fn check_answer(&self, method: &str, path: &str, status: u16, body: &Value) {
        let Some(spec) = &self.spec else { return };
        let problems = spec.check_response(method, &pct_decode(path), status, body);
        if !problems.is_empty() {
            let mut a = self.shared.lock();
            for p in problems {
                a.sim.violations.record("response", method, path, p);
            }
        }
    }
}

fn query_params(query: &str) -> Params {
    let mut params = Params::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        params
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    params
}

/// DO's error body; every one carries a fresh `request_id`.
fn error_body(e: &ApiError) -> Value {
    match &e.root_causes {
        Some(causes) => json!({"error": e.message, "messages": null, "root_causes": causes}),
        None => json!({"id": e.id, "message": e.message, "request_id": random_secret()}),
    }
}

/// `POST /v2/tags` with a bad name: the tag service's 400
/// (resources/tags/responses/tags_bad_request.yml, its example's wording).
fn tag_refusal(detail: &str) -> ApiError {
    let error = format!("Error validating resource tag: \"{detail}\"");
    let mut e = ApiError::bad_request(error.clone());
    e.root_causes = Some(vec![format!(
        "rpc error: code = InvalidArgument desc = {error}"
    )]);
    e
}

/// DO answers `application/json; charset=utf-8` (shared/headers.yml `content-type`).
fn json_reply(status: u16, body: &Value) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

fn error_reply(e: &ApiError, v: &Verdict) -> HttpResponse {
    let mut resp = json_reply(e.status, &error_body(e));
    rate_headers(&mut resp, v);
    resp
}

/// `ratelimit-*` on every answer; `retry-after` on a burst 429.
fn rate_headers(resp: &mut HttpResponse, v: &Verdict) {
    let h = resp.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(val) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), val);
        }
    };
    set("ratelimit-limit", ratelimit::HOUR_LIMIT.to_string());
    set("ratelimit-remaining", v.remaining.to_string());
    set("ratelimit-reset", v.reset.to_string());
    if let Some(Some(secs)) = v.refused {
        set("retry-after", secs.to_string());
    }
}

/// A running simulator.
pub struct Started {
    pub endpoint: String,
    pub shared: Shared,
    /// The certificate to trust, with `--tls`.
    pub ca_cert: Option<std::path::PathBuf>,
}

/// `tls`: serve HTTPS with a certificate made now, written to `ca.pem` in
/// the state dir (returned), for clients that refuse a bearer token over
/// plain HTTP (azure-core's BearerTokenCredentialPolicy, under pydo).
pub async fn start(
    opts: Options,
    spec: Option<OpenApi>,
    listen: SocketAddr,
    tls: bool,
) -> Result<Started> {
    let (acceptor, ca_cert) = if tls {
        let (acceptor, _, pem) = crate::core::tls::acceptor_with_pem()?;
        let path = opts.state_dir.join("ca.pem");
        std::fs::write(&path, pem)?;
        (Some(acceptor), Some(path))
    } else {
        (None, None)
    };
    let shared = Shared::new(Account::new(Arc::new(opts)));
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        spec,
        auth: BearerAuth {
            shared: shared.clone(),
        },
    });
    // Plain HTTP by default: the contract's loopback endpoint (DO's own is https).
    let endpoint = server::serve(ctx, listen, acceptor).await?;
    shared.lock().endpoint = endpoint.clone();
    Ok(Started {
        endpoint,
        shared,
        ca_cert,
    })
}

/// Stops every droplet's sshd and QEMU guest and removes their files (the
/// simulator is exiting).
pub async fn stop_all(shared: &Shared) {
    let sshds: Vec<_> = shared
        .lock()
        .droplets
        .values_mut()
        .filter_map(|d| d.sshd.take())
        .collect();
    drop(sshds);
    qemu::stop_all(shared).await;
}
