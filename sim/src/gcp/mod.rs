//! A Google Compute Engine simulator: plain HTTP on loopback, GCE's
//! `/compute/v1/projects/...` for the calls golden makes (images, instances,
//! disks, zone and global operations), every request and answer checked
//! against GCE's discovery document (`core::discovery`), operations that
//! take time and can end in errors, the serial port ring, and Google auth
//! with a service-account key it issues (`auth`). See
//! docs/guides/gcp-simulator.md.
//!
//! This module is the HTTP side: auth, the token endpoint, faults, the spec
//! checks, errors in Google's shape, and the router to `api`.

pub mod admin;
mod api;
pub mod auth;
pub mod cli;
mod filter;
mod guest;
mod qemu;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::Response;
use serde_json::{json, Value};

use crate::core::admin::AdminError;
use crate::core::auth::AuthHook;
use crate::core::discovery::Discovery;
use crate::core::server::{self, HttpRequest, HttpResponse, Simulator};
use crate::core::spec::{Params, RequestError};
use crate::core::util::pct_decode;
use auth::ServiceAccount;
use state::{Options, Project, Shared};

/// An error answer in Google's JSON error shape (`{"error": {"code",
/// "message", "errors": [{"message", "domain", "reason"}], "status"}}`;
/// see `core::discovery::errors` for the sources).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub reason: &'static str,
    pub domain: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            reason,
            domain: "global",
            message: message.into(),
        }
    }

    /// "The resource 'projects/p/global/images/x' was not found" (404 notFound).
    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            404,
            "notFound",
            format!("The resource '{path}' was not found"),
        )
    }

    /// "The resource '...' already exists" (409 alreadyExists).
    pub fn already_exists(path: &str) -> ApiError {
        ApiError::new(
            409,
            "alreadyExists",
            format!("The resource '{path}' already exists"),
        )
    }

    /// 400 `invalid` for a field: "Invalid value for field 'f': 'v'. why".
    pub fn invalid(field: &str, value: &str, why: &str) -> ApiError {
        ApiError::new(
            400,
            "invalid",
            format!("Invalid value for field '{field}': '{value}'. {why}"),
        )
    }

    /// The `google.rpc.Code` name GCE puts in `status`.
    fn rpc_status(&self) -> &'static str {
        match self.status {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            409 => "ALREADY_EXISTS",
            412 => "FAILED_PRECONDITION",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            _ => "INTERNAL",
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "code": self.status,
            "message": self.message,
            "errors": [{"message": self.message, "domain": self.domain, "reason": self.reason}],
            "status": self.rpc_status(),
        }})
    }
}

pub type ApiResult = Result<Value, ApiError>;

/// `Authorization: Bearer <token>`: a self-signed JWT from the issued key or
/// an access token from `/token`. Anything else is GCE's 401.
struct GoogleAuth {
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

/// GCE's 401: "Request had invalid authentication credentials. ..." with
/// reason `authError`, location `Authorization` (header).
fn unauthenticated() -> HttpResponse {
    let message = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
    let body = json!({"error": {
        "code": 401,
        "message": message,
        "errors": [{"message": "Invalid Credentials", "domain": "global", "reason": "authError",
                     "location": "Authorization", "locationType": "header"}],
        "status": "UNAUTHENTICATED",
    }});
    let mut resp = json_reply(401, &body);
    resp.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
    );
    resp
}

impl AuthHook for GoogleAuth {
    fn check(&self, req: &HttpRequest) -> Result<(), Box<HttpResponse>> {
        // The token endpoint is how a client gets a credential.
        if req.path == "/token" {
            return Ok(());
        }
        let token = bearer(req);
        let p = self.shared.lock();
        if let Some(exp) = p.access_tokens.get(&token) {
            if *exp > std::time::Instant::now() {
                return Ok(());
            }
        }
        match p.account.check_self_signed(&token, &p.endpoint) {
            Ok(()) => Ok(()),
            Err(why) => {
                if !token.is_empty() {
                    eprintln!("golden-sim: refused credential: {why}");
                }
                Err(Box::new(unauthenticated()))
            }
        }
    }
}

struct Ctx {
    shared: Shared,
    spec: Option<Discovery>,
    auth: GoogleAuth,
}

impl Simulator for Ctx {
    type State = Project;

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn auth(&self) -> &dyn AuthHook {
        &self.auth
    }

    fn api_path(&self, path: &str) -> Option<String> {
        (path.starts_with("/compute/v1/") || path == "/token").then(|| path.to_owned())
    }

    fn not_found(&self) -> HttpResponse {
        json_reply(404, &ApiError::new(404, "notFound", "Not Found").body())
    }

    async fn serve(&self, req: &HttpRequest, api_path: &str) -> (u16, HttpResponse) {
        if api_path == "/token" {
            let (status, body) = self.token(req);
            return (status, json_reply(status, &body));
        }
        let (status, body) = match self.api(req, api_path).await {
            Ok(v) => (200, v),
            Err(e) => (e.status, e.body()),
        };
        self.check_answer(&req.method, api_path, status, &body);
        (status, json_reply(status, &body))
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
    /// `POST /token`: the JWT-bearer grant.
    fn token(&self, req: &HttpRequest) -> (u16, Value) {
        let oauth_error = |error: &str, description: String| {
            (
                400,
                json!({"error": error, "error_description": description}),
            )
        };
        if req.method != "POST" {
            return oauth_error("invalid_request", "Use POST".into());
        }
        let form: Params = query_params(&String::from_utf8_lossy(&req.body));
        let one = |k: &str| {
            form.get(k)
                .and_then(|v| v.first())
                .cloned()
                .unwrap_or_default()
        };
        let grant = one("grant_type");
        if grant != auth::JWT_BEARER {
            return oauth_error(
                "unsupported_grant_type",
                format!("Invalid grant_type: {grant}"),
            );
        }
        let mut p = self.shared.lock();
        let token_uri = format!("{}/token", p.endpoint);
        if let Err((error, why)) = p.account.check_assertion(&one("assertion"), &token_uri) {
            return oauth_error(error, why);
        }
        let (token, exp) = auth::new_access_token();
        p.access_tokens.insert(token.clone(), exp);
        (
            200,
            json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
        )
    }

    /// Faults, the request's spec check, then the handler.
    async fn api(&self, req: &HttpRequest, path: &str) -> ApiResult {
        let method = req.method.as_str();
        if let Some(f) = self.shared.lock().sim.faults.take_http(method, path) {
            eprintln!(
                "golden-sim: injected fault: {method} {path} -> {}",
                f.status
            );
            return Err(fault_error(f.status, f.message));
        }
        let params = query_params(&req.query);
        let body: Option<Value> = if req.body.is_empty() {
            None
        } else {
            Some(
                serde_json::from_slice(&req.body)
                    .map_err(|_| ApiError::new(400, "parseError", "Parse Error"))?,
            )
        };
        let decoded = pct_decode(path);
        if let Some(spec) = &self.spec {
            if let Err(e) = spec.check(method, &decoded, &params, body.as_ref()) {
                return Err(self.refuse(method, &decoded, e));
            }
        }
        let answer = api::dispatch(
            &self.shared,
            method,
            &decoded,
            &params,
            body.unwrap_or(Value::Null),
        )
        .await;
        match (answer, &self.spec) {
            // Name the method a client reached that is not simulated.
            (Err(mut e), Some(spec)) if e.status == 501 => {
                if let Ok(id) = spec.method_id(method, &decoded) {
                    e.message = format!("{id} is in Compute Engine's API but not simulated");
                }
                Err(e)
            }
            // `"after": true`: the work was done, the client hears a 5xx
            // (a gateway losing the answer); a retry with the same
            // `requestId` gets the operation that ran.
            (Ok(v), _) => match self.shared.lock().sim.faults.take_http_after(method, path) {
                Some(f) => {
                    eprintln!(
                        "golden-sim: injected fault after the work: {method} {path} -> {}",
                        f.status
                    );
                    Err(fault_error(f.status, f.message))
                }
                None => Ok(v),
            },
            (answer, _) => answer,
        }
    }

    /// A request the discovery document does not allow: recorded, and
    /// refused (404 for an unknown path or method, 400 for bad parameters
    /// or body, GCE's `invalid`/`required` reasons).
    fn refuse(&self, method: &str, path: &str, e: RequestError) -> ApiError {
        let (err, detail) = match e {
            RequestError::UnknownPath | RequestError::UnknownMethod => (
                ApiError::new(
                    404,
                    "notFound",
                    format!("{method} {path} is not a Compute Engine API method"),
                ),
                format!("{method} {path} is not in the discovery document"),
            ),
            RequestError::Params(errors) => {
                let detail = errors
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let reason = if detail.contains("Required") || detail.contains("required") {
                    "required"
                } else {
                    "invalid"
                };
                (ApiError::new(400, reason, detail.clone()), detail)
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
        let problems = spec.check_answer(method, &pct_decode(path), status, body);
        if !problems.is_empty() {
            let mut p = self.shared.lock();
            for v in problems {
                p.sim.violations.record("response", method, path, v);
            }
        }
    }
}

/// An `http` fault in GCE's words: 429 and 403 are `rateLimitExceeded` in
/// the `usageLimits` domain (Google's "Standard error responses"; GCE's
/// "API rate limits" page: exceeding a rate limit answers 403
/// `rateLimitExceeded` or 429), 5xx `backendError`/`internalError`.
fn fault_error(status: u16, message: Option<String>) -> ApiError {
    let (reason, domain, default) = match status {
        429 => ("rateLimitExceeded", "usageLimits", "Rate Limit Exceeded"),
        403 => ("rateLimitExceeded", "usageLimits", "Rate Limit Exceeded"),
        503 => ("backendError", "global", "Backend Error"),
        // What a stale `labelFingerprint` gets (see the guide's fact table).
        412 => (
            "conditionNotMet",
            "global",
            "Labels fingerprint either invalid or resource labels have changed",
        ),
        s if s >= 500 => ("internalError", "global", "Internal Error"),
        _ => ("invalid", "global", "simulated failure"),
    };
    ApiError {
        status,
        reason,
        domain,
        message: message.unwrap_or_else(|| default.into()),
    }
}

pub fn query_params(query: &str) -> Params {
    let mut params = Params::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        params
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    params
}

/// GCE answers `application/json; charset=UTF-8`.
fn json_reply(status: u16, body: &Value) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

/// A running simulator.
pub struct Started {
    pub endpoint: String,
    /// The service-account key file it issued.
    pub credentials: std::path::PathBuf,
    pub shared: Shared,
}

pub async fn start(opts: Options, spec: Option<Discovery>, listen: SocketAddr) -> Result<Started> {
    let account = Arc::new(ServiceAccount::generate(&opts.project, &opts.state_dir)?);
    let project = opts.project.clone();
    let state_dir = opts.state_dir.clone();
    let image_files = opts.image_files.clone();
    let mut project_state = Project::new(Arc::new(opts), account.clone());
    for (name, path) in &image_files {
        project_state
            .back_image(name, path)
            .map_err(anyhow::Error::msg)?;
    }
    let shared = Shared::new(project_state);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        spec,
        auth: GoogleAuth {
            shared: shared.clone(),
        },
    });
    let endpoint = server::serve(ctx, listen, None).await?;
    shared.lock().endpoint = endpoint.clone();
    let credentials = state_dir.join("credentials.json");
    let key = account.key_file(&project, &format!("{endpoint}/token"));
    write_private(&credentials, &serde_json::to_string_pretty(&key)?)?;
    Ok(Started {
        endpoint,
        credentials,
        shared,
    })
}

/// A file only its owner can read (it holds a private key).
fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
