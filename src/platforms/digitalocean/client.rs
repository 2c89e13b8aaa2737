//! The DigitalOcean client on the kit's transport (ADR 010): the endpoint,
//! bearer auth, DO's error body (`id`, `message`), pacing by the rate-limit
//! headers, pagination by `links.pages.next`, and the wait on a droplet's
//! "pending event". The retry policy for 429/5xx is the kit's; paths are built
//! in `api.rs`, nowhere else.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;

use crate::lifecycle::context::Cx;
use crate::platforms::kit::http::{
    Body, Call, Dialect, Reply, Secret, Transport, TransportBuilder,
};
pub use crate::platforms::kit::http::{Params, RetryPolicy};
use crate::platforms::{Error, ErrorKind, Result};

/// DigitalOcean's public API.
pub const DEFAULT_ENDPOINT: &str = "https://api.digitalocean.com";

/// The most a page may hold (DO's maximum).
pub const PER_PAGE: u32 = 200;

/// DO's per-token burst limit: 250 requests a minute. The client keeps a
/// margin below it so its own retries never trip it.
const MINUTE_BUDGET: usize = 240;

/// Below this share of the hourly limit left (1/5: 1,000 of DO's 5,000),
/// calls are spread over the time to its reset instead of spending the rest
/// at once and meeting 429 for the rest of the hour.
const LOW_BUDGET_DIVISOR: u64 = 5;
/// DO's hourly limit, until `ratelimit-limit` says otherwise.
const HOURLY_LIMIT: u64 = 5000;

/// How long a droplet's pending event may keep refusing a new action.
const PENDING_EVENT_WAIT: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct ClientBuilder {
    endpoint: String,
    token: Secret,
    retry: RetryPolicy,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("endpoint", &self.endpoint)
            .field("token", &"***")
            .finish()
    }
}

impl ClientBuilder {
    pub fn new(endpoint: impl Into<String>, token: Secret) -> Self {
        ClientBuilder {
            endpoint: endpoint.into(),
            token,
            retry: RetryPolicy {
                attempts: 6,
                first_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(30),
            },
        }
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn build(self) -> std::result::Result<Client, String> {
        let base = normalise_endpoint(&self.endpoint)?;
        let transport = TransportBuilder::new("DigitalOcean", base.clone())
            .with_auth(
                "Authorization",
                Secret::new(format!("Bearer {}", self.token.expose())),
            )
            .redacting(self.token.clone())
            .with_retry_policy(self.retry)
            .build(Box::new(DoDialect))?;
        Ok(Client {
            transport,
            base,
            pacer: Mutex::new(Pacer::default()),
        })
    }
}

/// `https://api.digitalocean.com`, `.../` and `.../v2` all become the API
/// root without `/v2` (paths carry it, as DO's own links do).
pub fn normalise_endpoint(raw: &str) -> std::result::Result<String, String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(trimmed)
        .map_err(|e| format!("{trimmed:?} is not a URL ({e}); e.g. {DEFAULT_ENDPOINT}"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!("{trimmed:?} must start with https://"));
    }
    if url.host_str().is_none() {
        return Err(format!("{trimmed:?} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{trimmed:?} must not carry a query or fragment"));
    }
    Ok(trimmed.trim_end_matches("/v2").to_owned())
}

/// What the rate-limit headers said last, and the client's own calls of the
/// last minute.
#[derive(Debug, Default)]
struct Pacer {
    /// `ratelimit-remaining` and `ratelimit-reset` (unix seconds) of the last answer.
    hourly: Option<(u64, u64)>,
    /// `ratelimit-limit` of the last answer that had one.
    limit: Option<u64>,
    /// When each call of the last minute was sent.
    recent: VecDeque<Instant>,
    /// The earliest moment the next call may go.
    not_before: Option<Instant>,
}

/// How long to wait before the next call, given `remaining` calls in the
/// hourly budget until `reset_in`: nothing while the budget is comfortable,
/// else the time to the reset spread evenly over what is left (all of it
/// when nothing is left).
pub fn pacing_delay(remaining: u64, limit: u64, reset_in: Duration) -> Duration {
    if remaining >= limit / LOW_BUDGET_DIVISOR {
        return Duration::ZERO;
    }
    if remaining == 0 {
        return reset_in;
    }
    reset_in / u32::try_from(remaining).unwrap_or(u32::MAX)
}

/// How long until a call fits the per-minute burst, given the send times
/// of the calls in the window.
fn burst_delay(recent: &VecDeque<Instant>, now: Instant) -> Duration {
    if recent.len() < MINUTE_BUDGET {
        return Duration::ZERO;
    }
    let oldest = recent[recent.len() - MINUTE_BUDGET];
    (oldest + Duration::from_secs(60)).saturating_duration_since(now)
}

impl Pacer {
    /// Reserves a slot for one call: the delay before it may be sent.
    fn slot(&mut self, now: Instant) -> Duration {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        // Calls already scheduled go first; pacing counts from the last of them.
        let queued = self
            .not_before
            .map(|nb| nb.saturating_duration_since(now))
            .unwrap_or_default();
        let mut wait = burst_delay(&self.recent, now).max(queued);
        if let Some((remaining, reset)) = self.hourly {
            let reset_in = Duration::from_secs(reset.saturating_sub(unix_now()));
            let limit = self.limit.unwrap_or(HOURLY_LIMIT);
            let pace = pacing_delay(remaining, limit, reset_in.saturating_sub(queued));
            wait = wait.max(queued + pace);
            // Count this call against the budget until the next answer says more.
            self.hourly = Some((remaining.saturating_sub(1), reset));
        }
        let at = now + wait;
        self.not_before = Some(at);
        self.recent.push_back(at);
        wait
    }

    fn observe(&mut self, headers: &HeaderMap) {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(remaining), Some(reset)) = (num("ratelimit-remaining"), num("ratelimit-reset"))
        {
            self.hourly = Some((remaining, reset));
        }
        if let Some(limit) = num("ratelimit-limit").filter(|l| *l > 0) {
            self.limit = Some(limit);
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The DigitalOcean API over the kit's transport.
pub struct Client {
    transport: Transport,
    /// The API root, for turning DO's absolute page links back into paths.
    base: String,
    pacer: Mutex<Pacer>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

impl Client {
    pub fn endpoint(&self) -> &str {
        &self.base
    }

    pub async fn get(&self, path: &str, query: Params, cx: &Cx) -> Result<Value> {
        self.send(Call::get(path).with_query(query), cx).await
    }

    /// Every item under `key` across the pages, following `links.pages.next`.
    pub async fn get_all(
        &self,
        path: &str,
        query: Params,
        key: &str,
        cx: &Cx,
    ) -> Result<Vec<Value>> {
        let mut query = query;
        if !query.iter().any(|(k, _)| k == "per_page") {
            query.push(("per_page".into(), PER_PAGE.to_string()));
        }
        let mut call = Call::get(path).with_query(query);
        let mut items = Vec::new();
        for page in 1.. {
            let v = self.send(call, cx).await?;
            match v.get(key) {
                Some(Value::Array(a)) => items.extend(a.iter().cloned()),
                _ => {
                    return Err(Error::new(
                        ErrorKind::Other,
                        format!("GET {path}: the answer has no {key:?} list"),
                    ))
                }
            }
            let Some(next) = next_link(&v) else {
                return Ok(items);
            };
            if page >= 1000 {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!("GET {path}: more than 1000 pages; giving up"),
                ));
            }
            let (next_path, next_query) = relative_link(&self.base, next)?;
            call = Call::get(next_path).with_query(next_query);
        }
        Ok(items)
    }

    /// A create or an action: sent once; repeated only when DO says it did
    /// not process it (429, 503, no connection: the kit) or when the droplet
    /// is busy with a pending event (waited out here). Any other failure is
    /// the caller's to look up before trying again.
    pub async fn post(&self, path: &str, body: Value, cx: &Cx) -> Result<Value> {
        let call = Call::new(Method::POST, path).with_body(Body::Json(body));
        self.send_waiting_out_pending_events(call, cx).await
    }

    /// A POST that is safe to repeat (tagging: tagging twice is tagging once).
    pub async fn post_idempotent(&self, path: &str, body: Value, cx: &Cx) -> Result<Value> {
        let call = Call::new(Method::POST, path)
            .with_body(Body::Json(body))
            .idempotent();
        self.send(call, cx).await
    }

    pub async fn put(&self, path: &str, body: Value, cx: &Cx) -> Result<Value> {
        let call = Call::new(Method::PUT, path)
            .with_body(Body::Json(body))
            .idempotent();
        self.send(call, cx).await
    }

    /// Deletes are idempotent: a repeated delete finds the thing gone (404,
    /// which callers treat as done).
    pub async fn delete(&self, path: &str, body: Option<Value>, cx: &Cx) -> Result<()> {
        let mut call = Call::new(Method::DELETE, path).idempotent();
        if let Some(b) = body {
            call = call.with_body(Body::Json(b));
        }
        self.send_waiting_out_pending_events(call, cx)
            .await
            .map(|_| ())
    }

    async fn send_waiting_out_pending_events(&self, call: Call, cx: &Cx) -> Result<Value> {
        let started = Instant::now();
        let mut wait = Duration::from_secs(1);
        loop {
            match self.send(call.clone(), cx).await {
                Err(e) if e.is_busy() && started.elapsed() < PENDING_EVENT_WAIT => {
                    tracing::info!(call = %format!("{} {}", call.method, call.path), wait_ms = wait.as_millis() as u64, "droplet has a pending event; waiting");
                    cx.sleep("waiting for the droplet's pending event", wait)
                        .await?;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
                r => return r,
            }
        }
    }

    async fn send(&self, call: Call, cx: &Cx) -> Result<Value> {
        let wait = self
            .pacer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .slot(Instant::now());
        if !wait.is_zero() {
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                call = %format!("{} {}", call.method, call.path),
                "pacing DigitalOcean calls by the rate-limit budget"
            );
            cx.sleep("pacing API calls", wait).await?;
        }
        let reply = self.transport.send(&call, cx).await?;
        self.pacer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(&reply.headers);
        if reply.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&reply.body).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("{} {}: the answer is not JSON: {e}", call.method, call.path),
            )
        })
    }
}

/// `links.pages.next`, absent on the last (or only) page.
pub fn next_link(v: &Value) -> Option<&str> {
    v.pointer("/links/pages/next")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Turns DO's absolute page link into a path and query for the transport.
/// A link to another origin is refused: the token goes only to the endpoint.
pub fn relative_link(base: &str, link: &str) -> Result<(String, Params)> {
    let refuse = |why: &str| {
        Error::new(
            ErrorKind::Other,
            format!("page link {link:?} {why}; not following it"),
        )
    };
    let base_url = reqwest::Url::parse(base).map_err(|_| refuse("cannot be checked"))?;
    let url = reqwest::Url::parse(link).map_err(|_| refuse("is not a URL"))?;
    if url.origin() != base_url.origin() {
        return Err(refuse("points outside the API endpoint"));
    }
    // The endpoint may sit under a path prefix (a proxy): keep the link's
    // path relative to it.
    let prefix = base_url.path().trim_end_matches('/');
    let path = url
        .path()
        .strip_prefix(prefix)
        .filter(|p| p.starts_with('/'))
        .ok_or_else(|| refuse("is outside the API path"))?;
    let query = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok((path.to_owned(), query))
}

/// DO's error body: `{"id": "...", "message": "...", "request_id": "..."}`.
struct DoDialect;

impl Dialect for DoDialect {
    fn failure(&self, _call: &Call, reply: &Reply) -> (ErrorKind, String) {
        let body = reply.json();
        let id = body.get("id").and_then(Value::as_str).unwrap_or_default();
        let message = body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim();
        let text = match (id.is_empty(), message.is_empty()) {
            (false, false) => format!("{id}: {message}"),
            (true, false) => message.to_owned(),
            (false, true) => id.to_owned(),
            (true, true) => reply.phrase.clone(),
        };
        let text = match body.get("request_id").and_then(Value::as_str) {
            Some(r) if !r.is_empty() => format!("{text} (request id {r})"),
            _ => text,
        };
        (classify(reply.status, message), text)
    }
}

/// The kind of a DO error: by status, and for 422 by DO's wording (DO has
/// no finer error ids there). The one place that reads DO's wording.
pub fn classify(status: StatusCode, message: &str) -> ErrorKind {
    let m = message.to_ascii_lowercase();
    match status.as_u16() {
        401 | 403 => ErrorKind::Auth,
        404 => ErrorKind::NotFound,
        // "Droplet already has a pending event."
        422 if m.contains("pending event") => ErrorKind::Busy,
        // "SSH Key is already in use on your account"
        422 if m.contains("already in use") || m.contains("already exists") => {
            ErrorKind::AlreadyExists
        }
        429 | 500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_are_normalised_to_the_api_root() {
        for raw in [
            "https://api.digitalocean.com",
            "https://api.digitalocean.com/",
            "https://api.digitalocean.com/v2",
            " https://api.digitalocean.com/v2/ ",
        ] {
            assert_eq!(
                normalise_endpoint(raw).unwrap(),
                "https://api.digitalocean.com"
            );
        }
        assert_eq!(
            normalise_endpoint("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(normalise_endpoint("api.digitalocean.com").is_err());
        assert!(normalise_endpoint("ftp://x").is_err());
        assert!(normalise_endpoint("https://x/?a=b").is_err());
    }

    #[test]
    fn pacing_spreads_a_low_budget_over_the_time_to_reset() {
        let hour = Duration::from_secs(3600);
        assert_eq!(pacing_delay(4000, 5000, hour), Duration::ZERO);
        assert_eq!(pacing_delay(1000, 5000, hour), Duration::ZERO);
        assert_eq!(pacing_delay(900, 5000, hour), Duration::from_secs(4));
        assert_eq!(pacing_delay(60, 5000, hour), Duration::from_secs(60));
        assert_eq!(pacing_delay(10, 100, hour), Duration::from_secs(360));
        assert_eq!(pacing_delay(60, 250, hour), Duration::ZERO);
        assert_eq!(
            pacing_delay(1, 5000, Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        assert_eq!(
            pacing_delay(0, 5000, Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        assert_eq!(pacing_delay(10, 5000, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_pacer_counts_its_own_calls_and_the_minute_burst() {
        let mut p = Pacer::default();
        let now = Instant::now();
        for _ in 0..MINUTE_BUDGET {
            assert_eq!(p.slot(now), Duration::ZERO);
        }
        // The next call waits for the oldest of the window to leave it.
        let wait = p.slot(now);
        assert!(wait > Duration::from_secs(59), "{wait:?}");

        // With 3 calls left for 30 s, calls go about 10 s apart.
        let mut p = Pacer {
            hourly: Some((3, unix_now() + 30)),
            ..Pacer::default()
        };
        let first = p.slot(now);
        assert!(
            (Duration::from_secs(9)..=Duration::from_secs(10)).contains(&first),
            "{first:?}"
        );
        let second = p.slot(now);
        assert!(
            (first + Duration::from_secs(8)..=first + Duration::from_secs(11)).contains(&second),
            "{second:?}"
        );
    }

    #[test]
    fn the_pacer_reads_the_headers() {
        let mut p = Pacer::default();
        let mut h = HeaderMap::new();
        h.insert("ratelimit-remaining", "4999".parse().unwrap());
        h.insert("ratelimit-reset", "1900000000".parse().unwrap());
        p.observe(&h);
        assert_eq!(p.hourly, Some((4999, 1_900_000_000)));
        p.observe(&HeaderMap::new());
        assert_eq!(
            p.hourly,
            Some((4999, 1_900_000_000)),
            "kept without headers"
        );
    }

    #[test]
    fn page_links_become_relative_calls_on_the_same_origin_only() {
        let base = "http://127.0.0.1:4000";
        let (path, q) = relative_link(
            base,
            "http://127.0.0.1:4000/v2/images?page=2&per_page=200&private=true&tag_name=golden-family%3Ab",
        )
        .unwrap();
        assert_eq!(path, "/v2/images");
        assert!(q.contains(&("page".into(), "2".into())));
        assert!(q.contains(&("tag_name".into(), "golden-family:b".into())));
        assert!(relative_link(base, "http://evil.example/v2/images?page=2").is_err());
        assert!(relative_link(base, "https://127.0.0.1:4000/v2/images").is_err());
        let (path, _) =
            relative_link("https://proxy/do", "https://proxy/do/v2/droplets?page=3").unwrap();
        assert_eq!(path, "/v2/droplets");
        assert!(relative_link("https://proxy/do", "https://proxy/v2/droplets").is_err());
    }

    #[test]
    fn next_links_are_read_only_when_present() {
        assert_eq!(
            next_link(&json!({"links": {"pages": {"next": "http://x/v2/images?page=2"}}})),
            Some("http://x/v2/images?page=2")
        );
        assert_eq!(next_link(&json!({"links": {}})), None);
        assert_eq!(next_link(&json!({"links": {"pages": {"prev": "p"}}})), None);
        assert_eq!(next_link(&json!({"images": []})), None);
    }

    #[test]
    fn error_kinds_follow_status_and_do_wording() {
        let c = |s: u16, m: &str| classify(StatusCode::from_u16(s).unwrap(), m);
        assert_eq!(c(401, "Unable to authenticate you"), ErrorKind::Auth);
        assert_eq!(
            c(404, "The resource you requested could not be found."),
            ErrorKind::NotFound
        );
        assert_eq!(
            c(422, "Droplet already has a pending event."),
            ErrorKind::Busy
        );
        assert_eq!(
            c(422, "SSH Key is already in use on your account"),
            ErrorKind::AlreadyExists
        );
        assert_eq!(c(422, "Name is invalid"), ErrorKind::Other);
        assert_eq!(c(429, "API Rate limit exceeded."), ErrorKind::Transient);
        assert_eq!(c(500, "Server Error"), ErrorKind::Transient);
    }

    #[test]
    fn the_token_never_prints() {
        let b = ClientBuilder::new(DEFAULT_ENDPOINT, Secret::new("dop_v1_secret"));
        assert!(!format!("{b:?}").contains("dop_v1_secret"));
        let c = b.build().unwrap();
        assert!(!format!("{c:?}").contains("dop_v1_secret"));
    }
}
