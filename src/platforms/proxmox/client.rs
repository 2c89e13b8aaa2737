//! The PVE client on the kit's transport: the endpoint, token auth, the
//! `{"data": ...}` envelope and PVE's error kinds (the retry policy is the
//! kit's). Callers pass paths relative to `/api2/json` (built in `api.rs`,
//! nowhere else).

use std::fmt;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::lifecycle::context::Cx;
use crate::platforms::kit::http::{
    Body, Call, Dialect, Reply, Secret, Transport, TransportBuilder,
};
pub use crate::platforms::kit::http::{Params, RetryPolicy};
use crate::platforms::{Error, ErrorKind, Result};

/// A PVE API token, `USER@REALM!TOKENID=SECRET`. Its `Debug` and `Display`
/// never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    id: String,
    secret: String,
}

impl ApiToken {
    /// Parses `user@realm!tokenid=secret` (PVE also prints it with `:`
    /// between id and secret in some places; both are accepted).
    pub fn parse(raw: &str) -> std::result::Result<Self, String> {
        let raw = raw.trim();
        let (id, secret) = raw
            .split_once('=')
            .or_else(|| raw.split_once(':'))
            .ok_or("must look like USER@REALM!TOKENID=SECRET")?;
        let Some((user, token_name)) = id.split_once('!') else {
            return Err("the token id must look like USER@REALM!TOKENID".into());
        };
        if !user.contains('@') || user.starts_with('@') || user.ends_with('@') {
            return Err("the user part must look like USER@REALM (e.g. root@pam)".into());
        }
        if token_name.is_empty() || secret.is_empty() {
            return Err("the token name and the secret must not be empty".into());
        }
        Ok(ApiToken {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// `user@realm!tokenid`: safe to log.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn header(&self) -> Secret {
        Secret::new(format!("PVEAPIToken={}={}", self.id, self.secret))
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiToken({}=***)", self.id)
    }
}

#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoint: String,
    token: ApiToken,
    insecure: bool,
}

impl ClientBuilder {
    pub fn new(endpoint: impl Into<String>, token: ApiToken) -> Self {
        ClientBuilder {
            endpoint: endpoint.into(),
            token,
            insecure: false,
        }
    }

    /// Accept any TLS certificate (PVE's default self-signed one).
    pub fn with_insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    pub fn build(self) -> std::result::Result<Client, String> {
        let base = normalise_endpoint(&self.endpoint)?;
        let transport = TransportBuilder::new("PVE", base)
            .with_auth("Authorization", self.token.header())
            .redacting(Secret::new(self.token.secret.clone()))
            .with_insecure(self.insecure)
            .build(Box::new(PveDialect))?;
        Ok(Client { transport })
    }
}

/// `https://host:8006` or `https://host:8006/` or `.../api2/json` all become
/// `https://host:8006/api2/json`.
pub fn normalise_endpoint(raw: &str) -> std::result::Result<String, String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(trimmed).map_err(|e| {
        format!("{trimmed:?} is not a URL ({e}); e.g. https://pve.example.com:8006")
    })?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!("{trimmed:?} must start with https://"));
    }
    if url.host_str().is_none() {
        return Err(format!("{trimmed:?} has no host"));
    }
    let base = trimmed.trim_end_matches("/api2/json");
    Ok(format!("{base}/api2/json"))
}

/// The PVE API over the kit's transport: token auth, the `{"data": ...}`
/// envelope, and PVE's error wording.
pub struct Client {
    transport: Transport,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.transport.base())
            .finish()
    }
}

impl Client {
    pub fn endpoint(&self) -> &str {
        self.transport.base()
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str, query: &Params, cx: &Cx) -> Result<T> {
        let call = Call::get(path).with_query(query.clone());
        let v = self.call(call, cx).await?;
        decode(path, v)
    }

    /// Writes are repeated only when PVE said it did not process them (429,
    /// 503, no connection): a repeated clone or create would fail or
    /// duplicate.
    pub async fn post(&self, path: &str, form: &Params, cx: &Cx) -> Result<Value> {
        let call = Call::new(Method::POST, path).with_body(Body::Form(form.clone()));
        self.call(call, cx).await
    }

    /// A POST that is safe to repeat (an agent ping, a file write of the
    /// same bytes): retried on transient failures like a GET.
    pub async fn post_idempotent(&self, path: &str, form: &Params, cx: &Cx) -> Result<Value> {
        let call = Call::new(Method::POST, path)
            .with_body(Body::Form(form.clone()))
            .idempotent();
        self.call(call, cx).await
    }

    pub async fn put(&self, path: &str, form: &Params, cx: &Cx) -> Result<Value> {
        let call = Call::new(Method::PUT, path).with_body(Body::Form(form.clone()));
        self.call(call, cx).await
    }

    pub async fn delete(&self, path: &str, query: &Params, cx: &Cx) -> Result<Value> {
        let call = Call::new(Method::DELETE, path).with_query(query.clone());
        self.call(call, cx).await
    }

    async fn call(&self, call: Call, cx: &Cx) -> Result<Value> {
        let reply = self.transport.send(&call, cx).await?;
        Ok(reply.json().get("data").cloned().unwrap_or(Value::Null))
    }
}

/// PVE's way of saying what went wrong: its message is in the HTTP reason
/// phrase, with `message` and per-parameter `errors` in the body.
struct PveDialect;

impl Dialect for PveDialect {
    fn failure(&self, call: &Call, reply: &Reply) -> (ErrorKind, String) {
        let mut message = error_message(&reply.phrase, &reply.json());
        // PVE names the missing privilege only for a single check; for
        // "Permission check failed" alone, say what this call needs.
        if reply.status == StatusCode::FORBIDDEN {
            if let Some(needs) = super::privileges::needed_for(call.method.as_str(), &call.path) {
                message += &format!(". The API token needs {needs}");
            }
        }
        (classify(reply.status, &message), message)
    }
}

/// The reason phrase, then `message` and per-parameter `errors` from the body.
fn error_message(phrase: &str, body: &Value) -> String {
    let mut msg = phrase.trim().to_owned();
    if let Some(m) = body.get("message").and_then(Value::as_str) {
        let m = m.trim();
        if !m.is_empty() && !msg.contains(m) {
            msg = if msg.is_empty() {
                m.to_owned()
            } else {
                format!("{msg}: {m}")
            };
        }
    }
    if let Some(errors) = body.get("errors").and_then(Value::as_object) {
        let mut parts: Vec<String> = errors
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default().trim()))
            .collect();
        parts.sort();
        if !parts.is_empty() {
            msg += &format!(" ({})", parts.join("; "));
        }
    }
    msg
}

/// PVE has no error codes: the status and, for 500s, the message decide the
/// kind. This is the one place that reads PVE's wording.
pub fn classify(status: StatusCode, message: &str) -> ErrorKind {
    let m = message.to_ascii_lowercase();
    match status.as_u16() {
        401 | 403 => ErrorKind::Auth,
        404 => ErrorKind::NotFound,
        // 595-599: pveproxy could not reach the node it proxies to.
        429 | 502 | 503 | 504 | 595..=599 => ErrorKind::Transient,
        // "unable to create VM 105: config file already exists" (clone),
        // "... VM 105 already exists on node 'pve'" (create).
        500 if m.contains("already exists") => ErrorKind::AlreadyExists,
        // Only a missing *guest* is not-found: "storage 'x' does not exist" or
        // a guest file error is a real failure.
        500 if (m.starts_with("configuration file 'nodes/") && m.contains("does not exist"))
            || m.contains("unable to find configuration file for vm") =>
        {
            ErrorKind::NotFound
        }
        500 if m.contains("guest agent is not running") => ErrorKind::Transient,
        // The agent did not answer within qemu-server's few seconds (a busy
        // guest): "VM N qga command 'guest-exec-status' failed - got timeout"
        // (PVE/QemuServer/Agent.pm via QMPClient). Worth asking again.
        500 if m.contains("qga command") && m.contains("got timeout") => ErrorKind::Transient,
        // A 500 without a message is usually a proxy or daemon hiccup.
        500 if m.is_empty() || m == "internal server error" => ErrorKind::Transient,
        _ => ErrorKind::Other,
    }
}

fn decode<T: DeserializeOwned>(path: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        Error::new(
            ErrorKind::Other,
            format!("GET {path}: unexpected response shape: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_parses_and_never_prints_its_secret() {
        let t = ApiToken::parse("root@pam!golden=0b3c-secret").unwrap();
        assert_eq!(t.id(), "root@pam!golden");
        assert!(!format!("{t:?}").contains("0b3c-secret"));
        assert_eq!(
            t.header().expose(),
            "PVEAPIToken=root@pam!golden=0b3c-secret"
        );
        assert!(ApiToken::parse("root@pam!golden:abc").is_ok());
    }

    #[test]
    fn malformed_tokens_are_rejected_without_echoing_them() {
        for bad in [
            "",
            "secret",
            "root@pam=abc",
            "root!tok=abc",
            "root@pam!=abc",
            "root@pam!t=",
        ] {
            let e = ApiToken::parse(bad).unwrap_err();
            assert!(bad.is_empty() || !e.contains(bad), "{e}");
        }
    }

    #[test]
    fn endpoints_are_normalised_to_the_api_root() {
        for raw in [
            "https://pve:8006",
            "https://pve:8006/",
            "https://pve:8006/api2/json",
            " https://pve:8006/api2/json/ ",
        ] {
            assert_eq!(
                normalise_endpoint(raw).unwrap(),
                "https://pve:8006/api2/json"
            );
        }
        assert!(normalise_endpoint("pve:8006").is_err());
        assert!(normalise_endpoint("ftp://pve").is_err());
    }

    #[test]
    fn error_kinds_follow_status_and_pve_wording() {
        let c = |s: u16, m: &str| classify(StatusCode::from_u16(s).unwrap(), m);
        assert_eq!(c(401, "authentication failure"), ErrorKind::Auth);
        assert_eq!(c(500, "VM 105 already exists"), ErrorKind::AlreadyExists);
        assert_eq!(
            c(
                500,
                "Configuration file 'nodes/pve/qemu-server/7.conf' does not exist"
            ),
            ErrorKind::NotFound
        );
        assert_eq!(
            c(
                500,
                "unable to find configuration file for VM 7 on node 'pve'"
            ),
            ErrorKind::NotFound
        );
        assert_eq!(c(500, "storage 'fast' does not exist"), ErrorKind::Other);
        assert_eq!(
            c(
                500,
                "Agent error: failed to open file '/x': No such file or directory"
            ),
            ErrorKind::Other
        );
        assert_eq!(
            c(500, "unable to create VM 105: config file already exists"),
            ErrorKind::AlreadyExists
        );
        assert_eq!(c(596, "Connection timed out"), ErrorKind::Transient);
        assert_eq!(
            c(500, "QEMU guest agent is not running"),
            ErrorKind::Transient
        );
        assert_eq!(c(503, "busy"), ErrorKind::Transient);
        assert_eq!(
            c(
                500,
                "VM 900000 qga command 'guest-exec-status' failed - got timeout"
            ),
            ErrorKind::Transient
        );
        assert_eq!(c(500, "VM 105 is locked (clone)"), ErrorKind::Other);
        assert_eq!(c(400, "Parameter verification failed."), ErrorKind::Other);
    }

    #[test]
    fn error_message_joins_phrase_message_and_parameter_errors() {
        let body =
            serde_json::json!({"data": null, "errors": {"tags": "invalid format", "name": "bad"}});
        assert_eq!(
            error_message("Parameter verification failed.", &body),
            "Parameter verification failed. (name: bad; tags: invalid format)"
        );
        let body =
            serde_json::json!({"data": null, "message": "VM 7 is running - destroy failed\n"});
        assert_eq!(
            error_message("VM 7 is running - destroy failed", &body),
            "VM 7 is running - destroy failed"
        );
    }
}
