//! The Compute Engine client: Google's `google-cloud-compute-v1` crate
//! (ADR 012) with golden's own rules around it.
//!
//! - Every call goes through [`Client::call`]: bounded by `Cx` (cancellation
//!   and deadline), retried on 429, 403 `rateLimitExceeded`, 5xx and
//!   transport errors with backoff. The crate's retry is off: its default
//!   covers 503 on idempotent calls only. Inserts and deletes are safe to
//!   retry because each carries one `requestId` for all its attempts (GCE
//!   answers a repeated id with the first request's operation).
//! - Operations are waited for with `zoneOperations.wait` /
//!   `globalOperations.wait` (GCE returns at `DONE` or after about two
//!   minutes), in a loop bounded by `Cx`; the crate's poller has no limit.
//! - Errors keep GCE's `reason` (`alreadyExists`, `conditionNotMet`,
//!   `resourceInUseByAnotherResource`, ...) and message; credentials never
//!   appear in them.
//!
//! The crate's clients are built on first use (their builders are async);
//! the key file is checked when the provider is configured.

use std::future::Future;
use std::time::Duration;

use google_cloud_compute_v1::client::{Disks, GlobalOperations, Images, Instances, ZoneOperations};
use google_cloud_compute_v1::model::Operation;
use google_cloud_gax::error::Error as GaxError;
use tokio::sync::OnceCell;

use crate::lifecycle::context::Cx;
use crate::platforms::kit::http::Secret;
use crate::platforms::{Error, ErrorKind, Result};

pub const DEFAULT_ENDPOINT: &str = "https://compute.googleapis.com";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Where credentials come from.
#[derive(Clone)]
pub enum Credentials {
    /// A service-account key file's JSON (it signs its own JWTs).
    ServiceAccountKey(Secret),
    /// Application-default credentials (`GOOGLE_APPLICATION_CREDENTIALS`,
    /// gcloud's ADC file, the metadata server).
    ApplicationDefault,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::ServiceAccountKey(_) => f.write_str("ServiceAccountKey(***)"),
            Credentials::ApplicationDefault => f.write_str("ApplicationDefault"),
        }
    }
}

/// What a service-account key file must hold; checked at configure so a
/// wrong file is a plan-time diagnostic, not an apply-time surprise. Never
/// echoes the key.
pub fn check_key_file(json: &str) -> std::result::Result<KeyInfo, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        format!(
            "credentials are not a JSON key file ({})",
            e.classify_name()
        )
    })?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).filter(|s| !s.is_empty());
    match field("type") {
        Some("service_account") => {}
        Some(other) => {
            return Err(format!(
                "credentials are a {other:?} file; golden takes a service-account key (type \"service_account\") or, without credentials, application-default credentials"
            ))
        }
        None => return Err("credentials have no \"type\": not a service-account key file".into()),
    }
    for k in ["client_email", "private_key", "private_key_id"] {
        if field(k).is_none() {
            return Err(format!("the service-account key has no {k:?}"));
        }
    }
    Ok(KeyInfo {
        client_email: field("client_email").unwrap_or_default().to_owned(),
        project_id: field("project_id").map(str::to_owned),
    })
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    // Never the error's Display: it may quote part of the key.
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// The non-secret parts of a key file.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub client_email: String,
    pub project_id: Option<String>,
}

/// Accepts `https://compute.googleapis.com`, `http://127.0.0.1:PORT`, and
/// the same with the Go clients' `/compute/v1/` suffix (dropped: the crate
/// adds the path itself).
pub fn normalise_endpoint(raw: &str) -> std::result::Result<String, String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/compute/v1").unwrap_or(trimmed);
    let url = reqwest::Url::parse(trimmed)
        .map_err(|e| format!("api_endpoint {raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "api_endpoint {raw:?} must be http(s)://HOST[:PORT], e.g. {DEFAULT_ENDPOINT}"
        ));
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(format!(
            "api_endpoint {raw:?} must have no path other than /compute/v1/ (the client adds it)"
        ));
    }
    Ok(trimmed.to_owned())
}

pub struct ClientConfig {
    pub endpoint: String,
    pub project: String,
    pub zone: String,
    pub credentials: Credentials,
}

struct Services {
    images: Images,
    instances: Instances,
    disks: Disks,
    zone_operations: ZoneOperations,
    global_operations: GlobalOperations,
}

pub struct Client {
    config: ClientConfig,
    services: OnceCell<Services>,
}

/// How often and how long to retry a call GCE did not process.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
const MAX_ATTEMPTS: u32 = 8;

/// A GCE error as golden branches on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: Option<u16>,
    /// `errors[0].reason` of Google's error body (`alreadyExists`, ...).
    pub reason: Option<String>,
    pub message: String,
}

impl ApiError {
    fn from_gax(e: &GaxError) -> Self {
        let status = e.http_status_code();
        let body = e
            .http_payload()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
        // The crate turns Google's `errors[].reason` into an ErrorInfo
        // detail; the raw body is kept only for answers it could not parse.
        let reason = e
            .status()
            .and_then(|s| {
                s.details.iter().find_map(|d| match d {
                    google_cloud_gax::error::rpc::StatusDetails::ErrorInfo(i)
                        if !i.reason.is_empty() =>
                    {
                        Some(i.reason.clone())
                    }
                    _ => None,
                })
            })
            .or_else(|| {
                body.as_ref().and_then(|v| {
                    v["error"]["errors"][0]["reason"]
                        .as_str()
                        .map(str::to_owned)
                })
            });
        let message = body
            .as_ref()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .or_else(|| e.status().map(|s| s.message.clone()))
            .unwrap_or_else(|| e.to_string());
        ApiError {
            status,
            reason,
            message,
        }
    }

    /// Not processed, or safe to send again: worth another attempt.
    fn retryable(&self, e: &GaxError) -> bool {
        match self.status {
            Some(429) | Some(500) | Some(502) | Some(503) | Some(504) => true,
            Some(403) => matches!(
                self.reason.as_deref(),
                Some("rateLimitExceeded" | "userRateLimitExceeded")
            ),
            Some(_) => false,
            None => e.is_io() || e.is_connect() || e.is_timeout() || e.is_transport(),
        }
    }

    fn kind(&self) -> ErrorKind {
        match (self.status, self.reason.as_deref()) {
            (Some(404), _) => ErrorKind::NotFound,
            (Some(409), _) | (_, Some("alreadyExists")) => ErrorKind::AlreadyExists,
            (Some(412), _) | (_, Some("conditionNotMet")) => ErrorKind::Conflict,
            (_, Some("resourceInUseByAnotherResource" | "resourceNotReady")) => ErrorKind::Busy,
            (Some(401), _) | (Some(403), _) => ErrorKind::Auth,
            (Some(429), _) | (Some(500..=599), _) => ErrorKind::Transient,
            _ => ErrorKind::Other,
        }
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(st) = self.status {
            s += &format!("HTTP {st}");
        }
        if let Some(r) = &self.reason {
            s += &format!(" {r}");
        }
        if !s.is_empty() {
            s += ": ";
        }
        s + &self.message
    }
}

/// A UUID v4 for `requestId`: the same for every attempt of one call.
pub fn request_id() -> String {
    let mut b = [0u8; 16];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        // No system randomness: time and a counter are unique enough for an
        // idempotency key of this process.
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(1);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b[..8].copy_from_slice(&t.to_le_bytes());
        b[8..].copy_from_slice(&SEQ.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Client {
    pub fn new(config: ClientConfig) -> Self {
        Client {
            config,
            services: OnceCell::new(),
        }
    }

    pub fn project(&self) -> &str {
        &self.config.project
    }

    pub fn zone(&self) -> &str {
        &self.config.zone
    }

    pub fn endpoint(&self) -> &str {
        &self.config.endpoint
    }

    async fn credentials(&self) -> anyhow::Result<google_cloud_auth::credentials::Credentials> {
        use google_cloud_auth::credentials::{service_account, AccessTokenCredentials};
        let _ = std::any::type_name::<AccessTokenCredentials>;
        match &self.config.credentials {
            Credentials::ServiceAccountKey(json) => {
                let key: serde_json::Value = serde_json::from_str(json.expose())
                    .map_err(|_| anyhow::anyhow!("the service-account key is not JSON"))?;
                service_account::Builder::new(key)
                    .with_access_specifier(service_account::AccessSpecifier::from_scopes([SCOPE]))
                    .build()
                    .map_err(|e| anyhow::anyhow!("the service-account key was refused: {e}"))
            }
            Credentials::ApplicationDefault => google_cloud_auth::credentials::Builder::default()
                .with_scopes([SCOPE])
                .build()
                .map_err(|e| anyhow::anyhow!("no application-default credentials: {e}")),
        }
    }

    async fn services(&self, cx: &Cx) -> Result<&Services> {
        crate::platforms::kit::tls::install_crypto_provider();
        self.services
            .get_or_try_init(|| async {
                cx.run("connecting to Compute Engine", async {
                    let creds = self.credentials().await?;
                    let endpoint = self.config.endpoint.clone();
                    macro_rules! build {
                        ($t:ty) => {
                            <$t>::builder()
                                .with_endpoint(endpoint.clone())
                                .with_credentials(creds.clone())
                                .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry)
                                .build()
                                .await
                                .map_err(|e| anyhow::anyhow!("cannot build the client: {e}"))?
                        };
                    }
                    Ok(Services {
                        images: build!(Images),
                        instances: build!(Instances),
                        disks: build!(Disks),
                        zone_operations: build!(ZoneOperations),
                        global_operations: build!(GlobalOperations),
                    })
                })
                .await
            })
            .await
    }

    pub async fn images(&self, cx: &Cx) -> Result<&Images> {
        Ok(&self.services(cx).await?.images)
    }
    pub async fn instances(&self, cx: &Cx) -> Result<&Instances> {
        Ok(&self.services(cx).await?.instances)
    }
    pub async fn disks(&self, cx: &Cx) -> Result<&Disks> {
        Ok(&self.services(cx).await?.disks)
    }

    /// One API call, retried while GCE did not process it, bounded by `cx`.
    /// `what` names it for logs and errors (`images.insert golden-x`).
    pub async fn call<T, F, Fut>(&self, what: &str, cx: &Cx, mut send: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, GaxError>>,
    {
        let mut delay = RETRY_FIRST;
        let mut attempt = 1;
        loop {
            cx.check(what)?;
            let result = tokio::select! {
                biased;
                _ = cx.cancel.cancelled() => return Err(Error::cancelled(what)),
                _ = tokio::time::sleep_until(cx.deadline) => return Err(Error::timeout(what)),
                r = send() => r,
            };
            let e = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let api = ApiError::from_gax(&e);
            if !api.retryable(&e) || attempt >= MAX_ATTEMPTS {
                tracing::debug!(call = what, error = %api.describe(), "GCE call failed");
                return Err(Error::new(
                    api.kind(),
                    format!("GCE {what}: {}", api.describe()),
                ));
            }
            // A 429 or rate limit names no wait; back off exponentially.
            tracing::info!(call = what, attempt, error = %api.describe(), retry_in_ms = delay.as_millis() as u64, "GCE did not process the call; retrying");
            cx.sleep(what, delay.min(cx.remaining())).await?;
            delay = (delay * 2).min(RETRY_MAX);
            attempt += 1;
        }
    }

    /// Waits until `op` is `DONE`, with `wait` calls (each returns at `DONE`
    /// or after about two minutes, maybe earlier), bounded by `cx`. A `DONE`
    /// operation with errors is an error naming GCE's code and message.
    pub async fn wait(&self, op: Operation, what: &str, cx: &Cx) -> Result<Operation> {
        let mut op = op;
        let name = op.name.clone().unwrap_or_default();
        let zonal = op.zone.is_some();
        let services = self.services(cx).await?;
        let mut rounds = 0u32;
        while !is_done(&op) {
            rounds += 1;
            tracing::debug!(call = what, operation = %name, status = ?op.status.as_ref().and_then(|s| s.name()), rounds, "waiting for the operation");
            op = if zonal {
                self.call(&format!("zoneOperations.wait {name}"), cx, || {
                    services
                        .zone_operations
                        .wait()
                        .set_project(self.project())
                        .set_zone(self.zone())
                        .set_operation(name.clone())
                        .send()
                })
                .await?
            } else {
                self.call(&format!("globalOperations.wait {name}"), cx, || {
                    services
                        .global_operations
                        .wait()
                        .set_project(self.project())
                        .set_operation(name.clone())
                        .send()
                })
                .await?
            };
        }
        operation_result(op, what)
    }
}

pub fn is_done(op: &Operation) -> bool {
    op.status.as_ref().and_then(|s| s.name()) == Some("DONE")
}

/// A `DONE` operation: itself, or its errors as an error.
fn operation_result(op: Operation, what: &str) -> Result<Operation> {
    let Some(err) = op.error.as_ref().filter(|e| !e.errors.is_empty()) else {
        return Ok(op);
    };
    let parts: Vec<String> = err
        .errors
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e.code.as_deref().unwrap_or("ERROR"),
                e.message.as_deref().unwrap_or("")
            )
        })
        .collect();
    let kind = match err.errors[0].code.as_deref() {
        Some("RESOURCE_ALREADY_EXISTS") => ErrorKind::AlreadyExists,
        Some("RESOURCE_NOT_FOUND") => ErrorKind::NotFound,
        Some("RESOURCE_IN_USE_BY_ANOTHER_RESOURCE") => ErrorKind::Busy,
        _ => ErrorKind::Other,
    };
    let status = op
        .http_error_status_code
        .map(|s| format!(" (HTTP {s})"))
        .unwrap_or_default();
    Err(Error::new(
        kind,
        format!(
            "GCE {what}: the operation {} failed{status}: {}",
            op.name.as_deref().unwrap_or("?"),
            parts.join("; ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4() {
        let a = request_id();
        let b = request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn endpoints_normalise() {
        assert_eq!(
            normalise_endpoint("http://127.0.0.1:4000/compute/v1/").unwrap(),
            "http://127.0.0.1:4000"
        );
        assert_eq!(
            normalise_endpoint(DEFAULT_ENDPOINT).unwrap(),
            DEFAULT_ENDPOINT
        );
        assert!(normalise_endpoint("compute.googleapis.com").is_err());
        assert!(normalise_endpoint("https://x/other").is_err());
    }

    #[test]
    fn key_file_checks_never_echo_the_key() {
        let secret = "-----BEGIN PRIVATE KEY-----\nSECRETSECRET";
        let bad = format!("{{\"type\": \"service_account\", \"private_key\": \"{secret}");
        let e = check_key_file(&bad).unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
        let e = check_key_file(r#"{"type": "authorized_user"}"#).unwrap_err();
        assert!(e.contains("authorized_user"), "{e}");
        let ok = r#"{"type":"service_account","client_email":"a@p.iam.gserviceaccount.com","private_key":"k","private_key_id":"1","project_id":"p"}"#;
        let info = check_key_file(ok).unwrap();
        assert_eq!(info.project_id.as_deref(), Some("p"));
    }

    #[test]
    fn failed_operations_name_code_and_message() {
        let op: Operation = serde_json::from_value(serde_json::json!({
            "name": "operation-1", "status": "DONE", "httpErrorStatusCode": 403,
            "error": {"errors": [{"code": "QUOTA_EXCEEDED", "message": "Quota 'CPUS' exceeded."}]}
        }))
        .unwrap();
        let e = operation_result(op, "instances.insert x").unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("QUOTA_EXCEEDED") && s.contains("CPUS") && s.contains("403"),
            "{s}"
        );
    }
}
