//! The HTTP transport every remote platform uses: one retry policy, every
//! call bounded by the caller's `Cx`, secrets kept out of logs and errors.
//!
//! Retry policy, the same for every API:
//! - a reply the server says it did not process (429, 503) or a connection
//!   that never reached it is retried whatever the method, after
//!   `Retry-After` when the server sends one, else after a backoff;
//! - any other transient failure (the platform's [`Dialect`] decides which
//!   replies are transient: 5xx, a proxy hiccup) is retried only for calls
//!   that are safe to repeat: GET/HEAD, or calls marked idempotent (a PUT of
//!   a whole config, a create carrying a request id);
//! - waits never outlast the `Cx` deadline (a wait that would is not
//!   started: the call fails at once, saying when it could have been sent
//!   again), and a cancelled `Cx` stops the call at once;
//! - the platform's [`Dialect`] may say otherwise about what was not
//!   processed (DO: a 503 may come after the work) and when to try again
//!   (DO: an hourly 429 names its reset, not a `Retry-After`).

use std::fmt;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use crate::lifecycle::context::Cx;
use crate::platforms::{Error, ErrorKind, Result};

/// A credential. `Debug` and `Display` never show it, and [`Transport`]
/// removes it from every error text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How often and how long calls are retried (see the module docs for when).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// A reply as the server sent it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    /// The reason phrase, which some APIs (PVE) use for their message.
    pub phrase: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What a platform's API says with its error replies: the error kind and a
/// message for people. The one place that reads an API's wording.
pub trait Dialect: Send + Sync {
    /// `call` is what was asked, for messages that depend on it (what a
    /// refused call needs).
    fn failure(&self, call: &Call, reply: &Reply) -> (ErrorKind, String);

    /// Whether the server says it did not act on the call, so that it may
    /// be sent again whatever its method. Default: 429 and 503. An API
    /// whose 503 can come from a gateway after the work was done says no.
    fn not_processed(&self, _call: &Call, reply: &Reply) -> bool {
        reply.status == StatusCode::TOO_MANY_REQUESTS
            || reply.status == StatusCode::SERVICE_UNAVAILABLE
    }

    /// How long to wait before the call is sent again, when the server
    /// says. Default: `Retry-After` in seconds. An API that says it in
    /// other headers (a rate limit's reset time) reads them here.
    fn retry_after(&self, reply: &Reply) -> Option<Duration> {
        retry_after(&reply.headers)
    }
}

/// Form parameters in order; repeated keys encode arrays.
pub type Params = Vec<(String, String)>;

#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Form(Params),
    Json(serde_json::Value),
}

/// One API call.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// Relative to the transport's base URL.
    pub path: String,
    pub query: Params,
    pub body: Body,
    idempotent: bool,
}

impl Call {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        let idempotent = method == Method::GET || method == Method::HEAD;
        Call {
            method,
            path: path.into(),
            query: Vec::new(),
            body: Body::Empty,
            idempotent,
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Call::new(Method::GET, path)
    }

    pub fn with_query(mut self, query: Params) -> Self {
        self.query = query;
        self
    }

    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    /// Safe to repeat after a transient failure: a whole-config PUT, a
    /// delete that tolerates "already gone", a create with a request id.
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    fn what(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Debug, Clone)]
pub struct TransportBuilder {
    service: &'static str,
    base: String,
    auth: Option<(&'static str, Secret)>,
    also_redact: Vec<Secret>,
    insecure: bool,
    timeout: Duration,
    retry: RetryPolicy,
}

impl TransportBuilder {
    /// `service` names the API in logs ("PVE", "DigitalOcean").
    pub fn new(service: &'static str, base: impl Into<String>) -> Self {
        TransportBuilder {
            service,
            base: base.into(),
            auth: None,
            also_redact: Vec::new(),
            insecure: false,
            timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }

    /// Sends `header: value` with every call.
    pub fn with_auth(mut self, header: &'static str, value: Secret) -> Self {
        self.auth = Some((header, value));
        self
    }

    /// Also removes `part` (a token's bare secret) from error texts.
    pub fn redacting(mut self, part: Secret) -> Self {
        self.also_redact.push(part);
        self
    }

    /// Accept any TLS certificate (a self-signed PVE, a simulator).
    pub fn with_insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// The most one attempt may take, on top of the `Cx` deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn build(self, dialect: Box<dyn Dialect>) -> std::result::Result<Transport, String> {
        let http = super::tls::http_client()
            .danger_accept_invalid_certs(self.insecure)
            .timeout(self.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!(
                "terraform-provider-golden/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut redact: Vec<Secret> = self.auth.iter().map(|(_, v)| v.clone()).collect();
        redact.extend(self.also_redact);
        // Longest first, so a whole header goes before the secret inside it.
        redact.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        redact.retain(|s| !s.expose().is_empty());
        Ok(Transport {
            http,
            service: self.service,
            base: self.base.trim_end_matches('/').to_owned(),
            auth: self.auth,
            redact,
            retry: self.retry,
            dialect,
        })
    }
}

pub struct Transport {
    http: reqwest::Client,
    service: &'static str,
    base: String,
    auth: Option<(&'static str, Secret)>,
    /// Every credential string, longest first.
    redact: Vec<Secret>,
    retry: RetryPolicy,
    dialect: Box<dyn Dialect>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("service", &self.service)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// One failed attempt and what the retry policy needs to know about it.
struct Failure {
    error: Error,
    /// The server says it did not act on the call (429, 503, no connection).
    not_processed: bool,
    retry_after: Option<Duration>,
}

impl Transport {
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `call`, retrying per the policy; returns a 2xx reply.
    pub async fn send(&self, call: &Call, cx: &Cx) -> Result<Reply> {
        let what = call.what();
        let mut backoff = self.retry.first_backoff;
        let mut attempt = 1;
        loop {
            cx.check(&what)?;
            let failure = tokio::select! {
                biased;
                _ = cx.cancel.cancelled() => return Err(Error::cancelled(&what)),
                _ = tokio::time::sleep_until(cx.deadline) => return Err(Error::timeout(&what)),
                outcome = self.once(call) => match outcome {
                    Ok(reply) => return Ok(reply),
                    Err(failure) => failure,
                },
            };
            let transient = failure.error.is_transient();
            let retry = attempt < self.retry.attempts
                && (failure.not_processed || (call.idempotent && transient));
            if !retry {
                return Err(failure.error);
            }
            let wait = failure.retry_after.unwrap_or(backoff);
            if wait > cx.remaining() {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{}; sending it again would take a wait of {} s, past this operation's deadline (in {} s)",
                        failure.error,
                        wait.as_secs_f64().ceil(),
                        cx.remaining().as_secs()
                    ),
                ));
            }
            tracing::warn!(
                service = self.service,
                call = %what,
                attempt,
                wait_ms = wait.as_millis() as u64,
                error = %failure.error,
                "API call failed; retrying"
            );
            cx.sleep(&what, wait).await?;
            backoff = (backoff * 2).min(self.retry.max_backoff);
            attempt += 1;
        }
    }

    async fn once(&self, call: &Call) -> std::result::Result<Reply, Failure> {
        let url = format!("{}{}", self.base, call.path);
        let mut req = self.http.request(call.method.clone(), &url);
        if let Some((header, value)) = &self.auth {
            req = req.header(*header, value.expose());
        }
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
        req = match &call.body {
            Body::Empty => req,
            Body::Form(form) => req.form(form),
            Body::Json(json) => req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json.to_string()),
        };
        let started = std::time::Instant::now();
        let resp = req.send().await.map_err(|e| Failure {
            not_processed: e.is_connect(),
            retry_after: None,
            error: Error::new(
                if e.is_timeout() {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Transient
                },
                self.redact(&format!("{}: {}", call.what(), without_url(&e))),
            ),
        })?;
        let status = resp.status();
        let phrase = reason_phrase(&resp)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        tracing::debug!(
            service = self.service,
            call = %call.what(),
            status = status.as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "API call"
        );
        let reply = Reply {
            status,
            phrase,
            headers,
            body,
        };
        if status.is_success() {
            return Ok(reply);
        }
        let (kind, message) = self.dialect.failure(call, &reply);
        Err(Failure {
            not_processed: self.dialect.not_processed(call, &reply),
            retry_after: self.dialect.retry_after(&reply),
            error: Error::new(
                kind,
                self.redact(&format!(
                    "{}: HTTP {} {message}",
                    call.what(),
                    status.as_u16()
                )),
            ),
        })
    }

    /// Error texts may quote what the server echoed back; the credential
    /// never leaves this process that way.
    fn redact(&self, text: &str) -> String {
        self.redact.iter().fold(text.to_owned(), |t, secret| {
            t.replace(secret.expose(), "***")
        })
    }
}

/// `Retry-After` in seconds (the form every API we call uses).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn reason_phrase(resp: &reqwest::Response) -> Option<String> {
    // reqwest does not expose the reason phrase; hyper keeps it as an
    // extension only for non-canonical phrases, which is exactly PVE's case.
    resp.extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
}

/// reqwest's errors print the URL, which is harmless but long; keep the cause.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s
            .replace(&format!(" ({url})"), "")
            .replace(url.as_str(), "");
    }
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s += &format!(": {cause}");
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::sync::CancellationToken;

    struct Plain;
    impl Dialect for Plain {
        fn failure(&self, _call: &Call, reply: &Reply) -> (ErrorKind, String) {
            let kind = match reply.status.as_u16() {
                429 | 500..=599 => ErrorKind::Transient,
                404 => ErrorKind::NotFound,
                _ => ErrorKind::Other,
            };
            (kind, String::from_utf8_lossy(&reply.body).into_owned())
        }
    }

    /// A server answering each connection with the next canned reply
    /// (the last one repeats); counts the requests it saw.
    async fn server(replies: Vec<&'static str>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let reply = replies[n.min(replies.len() - 1)];
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(reply.as_bytes()).await;
            }
        });
        (format!("http://{addr}"), hits)
    }

    fn transport(base: &str) -> Transport {
        TransportBuilder::new("test", base)
            .with_auth("Authorization", Secret::new("s3cret-token"))
            .with_retry_policy(RetryPolicy {
                attempts: 3,
                first_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(20),
            })
            .build(Box::new(Plain))
            .unwrap()
    }

    fn cx(timeout: Duration) -> Cx {
        Cx::transient(CancellationToken::new(), timeout)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    const E500: &str =
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nboom";
    const E429: &str = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow";
    const ECHO: &str = "HTTP/1.1 400 Bad Request\r\nContent-Length: 24\r\nConnection: close\r\n\r\nbad token s3cret-token!!";

    #[tokio::test]
    async fn idempotent_calls_retry_transient_failures() {
        let (base, hits) = server(vec![E500, OK]).await;
        let reply = transport(&base)
            .send(&Call::get("/x"), &cx(Duration::from_secs(10)))
            .await
            .unwrap();
        assert_eq!(reply.body, b"ok");
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn writes_are_not_repeated_after_a_5xx() {
        let (base, hits) = server(vec![E500, OK]).await;
        let err = transport(&base)
            .send(&Call::new(Method::POST, "/x"), &cx(Duration::from_secs(10)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("HTTP 500 boom"), "{err}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_429_is_retried_for_any_method_after_retry_after() {
        let (base, hits) = server(vec![E429, OK]).await;
        let started = std::time::Instant::now();
        transport(&base)
            .send(&Call::new(Method::POST, "/x"), &cx(Duration::from_secs(10)))
            .await
            .unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "Retry-After ignored"
        );
    }

    #[tokio::test]
    async fn waits_never_outlast_the_deadline() {
        let (base, _) = server(vec![E429]).await;
        let err = transport(&base)
            .send(&Call::get("/x"), &cx(Duration::from_millis(300)))
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
    }

    #[tokio::test]
    async fn a_wait_past_the_deadline_fails_at_once_saying_so() {
        const E429_LONG: &str = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 60\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow";
        let (base, hits) = server(vec![E429_LONG]).await;
        let started = std::time::Instant::now();
        let err = transport(&base)
            .send(&Call::get("/x"), &cx(Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert!(err.to_string().contains("wait of 60 s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    /// A dialect whose 503 may hide done work, and whose 429 names its
    /// wait in a header of its own.
    struct Careful;
    impl Dialect for Careful {
        fn failure(&self, call: &Call, reply: &Reply) -> (ErrorKind, String) {
            Plain.failure(call, reply)
        }
        fn not_processed(&self, _call: &Call, reply: &Reply) -> bool {
            reply.status == StatusCode::TOO_MANY_REQUESTS
        }
        fn retry_after(&self, reply: &Reply) -> Option<Duration> {
            reply
                .headers
                .get("x-wait-ms")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .map(Duration::from_millis)
        }
    }

    #[tokio::test]
    async fn the_dialect_decides_what_was_not_processed_and_the_wait() {
        const E503: &str = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy";
        const E429_MS: &str = "HTTP/1.1 429 Too Many Requests\r\nx-wait-ms: 300\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow";
        let careful = |base: &str| {
            TransportBuilder::new("test", base)
                .with_retry_policy(RetryPolicy {
                    attempts: 3,
                    first_backoff: Duration::from_millis(10),
                    max_backoff: Duration::from_millis(20),
                })
                .build(Box::new(Careful))
                .unwrap()
        };
        // The default resends a POST after a 503; this dialect does not.
        let (base, hits) = server(vec![E503, OK]).await;
        transport(&base)
            .send(&Call::new(Method::POST, "/x"), &cx(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        let (base, hits) = server(vec![E503, OK]).await;
        let err = careful(&base)
            .send(&Call::new(Method::POST, "/x"), &cx(Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("HTTP 503"), "{err}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // Its wait comes from its own header.
        let (base, hits) = server(vec![E429_MS, OK]).await;
        let started = std::time::Instant::now();
        careful(&base)
            .send(&Call::new(Method::POST, "/x"), &cx(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn the_secret_never_appears_in_errors() {
        let (base, _) = server(vec![ECHO]).await;
        let t = transport(&base);
        let err = t
            .send(&Call::get("/x"), &cx(Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("s3cret-token"), "{err}");
        assert!(err.to_string().contains("bad token ***"), "{err}");
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
