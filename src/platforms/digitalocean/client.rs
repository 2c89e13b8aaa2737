//! The DigitalOcean client on the kit's transport (ADR 010): the endpoint,
//! bearer auth, DO's error bodies (`id`/`message`, and the tag service's
//! `error`/`messages`), pacing by the rate-limit headers (of every answer,
//! errors too) with `GET /v2/account/keys` in its own bucket, pagination by
//! the page number of `links.pages.next`, and the wait on a droplet's
//! "pending event". The retry policy for 429/5xx is the kit's, told by
//! [`DoDialect`] what DO means: only a 429 is unprocessed (a 503 may come
//! from a gateway after the work was done), and an hourly 429 waits for
//! `ratelimit-reset`. Paths are built in `api.rs`, nowhere else.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
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

/// `GET /v2/account/keys` has a limit of its own: 10 a minute
/// (description.yml "Rate Limit": "Only 10 `GET` requests to the
/// `/v2/account/keys` endpoint to list SSH keys can be made per 60 seconds").
const KEYS_LIST_PATH: &str = "/v2/account/keys";
const KEYS_LIST_BUDGET: usize = 10;
/// The keys-list window, with a second's margin: DO counts a call from when
/// it arrives, a moment after the client sent it.
const KEYS_LIST_WINDOW: Duration = Duration::from_secs(61);

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
        let pacer = Arc::new(Mutex::new(Pacer::default()));
        let transport = TransportBuilder::new("DigitalOcean", base.clone())
            .with_auth(
                "Authorization",
                Secret::new(format!("Bearer {}", self.token.expose())),
            )
            .redacting(self.token.clone())
            .with_retry_policy(self.retry)
            .build(Box::new(DoDialect {
                pacer: pacer.clone(),
            }))?;
        Ok(Client {
            transport,
            base,
            pacer,
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
    /// When each `GET /v2/account/keys` of the last minute was sent.
    keys_recent: VecDeque<Instant>,
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

/// How long until a call fits a window of `budget` calls per `window`,
/// given the send times of the calls in it.
fn window_delay(
    recent: &VecDeque<Instant>,
    budget: usize,
    window: Duration,
    now: Instant,
) -> Duration {
    if recent.len() < budget {
        return Duration::ZERO;
    }
    let oldest = recent[recent.len() - budget];
    (oldest + window).saturating_duration_since(now)
}

fn expire(recent: &mut VecDeque<Instant>, window: Duration, now: Instant) {
    while recent
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        recent.pop_front();
    }
}

impl Pacer {
    /// Reserves a slot for one call (`keys_list`: a `GET /v2/account/keys`,
    /// which also has its own bucket): the delay before it may be sent.
    fn slot(&mut self, now: Instant, keys_list: bool) -> Duration {
        expire(&mut self.recent, Duration::from_secs(60), now);
        expire(&mut self.keys_recent, KEYS_LIST_WINDOW, now);
        // Calls already scheduled go first; pacing counts from the last of them.
        let queued = self
            .not_before
            .map(|nb| nb.saturating_duration_since(now))
            .unwrap_or_default();
        let mut wait =
            window_delay(&self.recent, MINUTE_BUDGET, Duration::from_secs(60), now).max(queued);
        if keys_list {
            wait = wait.max(window_delay(
                &self.keys_recent,
                KEYS_LIST_BUDGET,
                KEYS_LIST_WINDOW,
                now,
            ));
        }
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
        if keys_list {
            self.keys_recent.push_back(at);
        }
        wait
    }

    /// Takes in an answer's rate-limit headers, a failed one's too. A burst
    /// 429 (the one with `retry-after`) shows `ratelimit-remaining: 0`
    /// while the hour may have thousands left (description.yml "Rate
    /// Limit"): its remaining count is not the hour's and is not taken.
    fn observe(&mut self, headers: &HeaderMap, status: StatusCode) {
        let burst_429 =
            status == StatusCode::TOO_MANY_REQUESTS && headers.contains_key("retry-after");
        if let (Some(remaining), Some(reset), false) = (
            header_num(headers, "ratelimit-remaining"),
            header_num(headers, "ratelimit-reset"),
            burst_429,
        ) {
            self.hourly = Some((remaining, reset));
        }
        if let Some(limit) = header_num(headers, "ratelimit-limit").filter(|l| *l > 0) {
            self.limit = Some(limit);
        }
    }
}

fn header_num(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
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
    /// The API root the calls go to (maybe a proxy: DO's page links name
    /// its own origin, never followed as such).
    base: String,
    /// Shared with the dialect, which reads the headers of failed answers.
    pacer: Arc<Mutex<Pacer>>,
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

    /// Every item under `key` across the pages. Of `links.pages.next` only
    /// its page number is used: the next page is this path and query again
    /// with `page=N`, sent to this client's endpoint. DO's links are
    /// absolute and name DO's own origin (`https://api.digitalocean.com`),
    /// which is not where a proxied endpoint's calls go, and the token goes
    /// nowhere else.
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
        let mut items = Vec::new();
        let mut page: u64 = 1;
        let mut pages = 0;
        loop {
            pages += 1;
            let mut q = query.clone();
            if page > 1 {
                q.retain(|(k, _)| k != "page");
                q.push(("page".into(), page.to_string()));
            }
            let v = self.send(Call::get(path).with_query(q), cx).await?;
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
            if pages >= 1000 {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!("GET {path}: more than 1000 pages; giving up"),
                ));
            }
            let next = page_number(next).ok_or_else(|| {
                Error::new(
                    ErrorKind::Other,
                    format!("GET {path}: the next-page link {next:?} names no page number"),
                )
            })?;
            if next <= page {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!("GET {path}: page {page} links to page {next} as the next one"),
                ));
            }
            page = next;
        }
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
        let keys_list =
            call.method == Method::GET && call.path.trim_end_matches('/') == KEYS_LIST_PATH;
        let wait = self
            .pacer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .slot(Instant::now(), keys_list);
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
            .observe(&reply.headers, reply.status);
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

/// The `page` of a page link (`...?page=3&per_page=200`), whatever its
/// origin: all of the link that is used.
pub fn page_number(link: &str) -> Option<u64> {
    let query = link.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "page")
        .and_then(|(_, v)| v.parse().ok())
        .filter(|n| *n >= 1)
}

/// How DO's API answers, for the kit's transport: its error bodies, what
/// it did not process, and when to try again. It also hands every failed
/// answer's rate-limit headers to the client's pacer.
struct DoDialect {
    pacer: Arc<Mutex<Pacer>>,
}

/// Whether a 429 is the hourly one: DO sends `retry-after` only with the
/// burst (per-minute) 429 (description.yml "Rate Limit": "More rate
/// limiting information is returned only within burst limit error response
/// headers: retry-after").
fn hourly_429(reply: &Reply) -> bool {
    reply.status == StatusCode::TOO_MANY_REQUESTS && !reply.headers.contains_key("retry-after")
}

/// The words of DO's error body: `{"id", "message", "request_id"}`
/// (shared/models/error.yml), or the tag service's `{"error", "messages",
/// "root_causes"}` (shared/models/error_with_root_causes.yml, e.g.
/// resources/tags/responses/tags_bad_request.yml). Returns (text, the
/// message alone).
pub fn error_text(body: &Value, phrase: &str) -> (String, String) {
    let s = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let id = s("id");
    let mut message = s("message");
    if message.is_empty() {
        let mut parts: Vec<String> = Vec::new();
        let error = s("error");
        if !error.is_empty() {
            parts.push(error);
        }
        for m in body
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            if !parts.iter().any(|p| p == m) {
                parts.push(m.to_owned());
            }
        }
        message = parts.join("; ");
    }
    let text = match (id.is_empty(), message.is_empty()) {
        (false, false) => format!("{id}: {message}"),
        (true, false) => message.clone(),
        (false, true) => id,
        (true, true) => phrase.to_owned(),
    };
    let text = match body.get("request_id").and_then(Value::as_str) {
        Some(r) if !r.is_empty() => format!("{text} (request id {r})"),
        _ => text,
    };
    (text, message)
}

impl Dialect for DoDialect {
    fn failure(&self, _call: &Call, reply: &Reply) -> (ErrorKind, String) {
        self.pacer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(&reply.headers, reply.status);
        let (mut text, message) = error_text(&reply.json(), &reply.phrase);
        if hourly_429(reply) {
            text += &match header_num(&reply.headers, "ratelimit-reset") {
                Some(reset) => format!(
                    " (the token's hourly budget of {} calls is spent; the oldest call expires at ratelimit-reset {reset}, in {} s)",
                    header_num(&reply.headers, "ratelimit-limit").unwrap_or(HOURLY_LIMIT),
                    reset.saturating_sub(unix_now())
                ),
                None => " (the token's hourly budget is spent)".into(),
            };
        }
        (classify(reply.status, &message), text)
    }

    /// Only a 429 is a call DO did not act on. A 503 (like any 5xx) may
    /// come from a gateway after the work was done: a create or action is
    /// not sent again blindly but looked up first (build.rs), while GETs,
    /// deletes and idempotent calls are retried anyway.
    fn not_processed(&self, _call: &Call, reply: &Reply) -> bool {
        reply.status == StatusCode::TOO_MANY_REQUESTS
    }

    /// A burst 429's `retry-after`; an hourly 429 (no `retry-after`) waits
    /// until `ratelimit-reset`, when its oldest call expires and frees one
    /// (a second past it: the header has whole seconds). The transport
    /// fails at once, saying so, when that is past the caller's deadline.
    fn retry_after(&self, reply: &Reply) -> Option<Duration> {
        if let Some(d) = header_num(&reply.headers, "retry-after") {
            return Some(Duration::from_secs(d));
        }
        if hourly_429(reply) {
            let reset = header_num(&reply.headers, "ratelimit-reset")?;
            return Some(Duration::from_secs(
                reset.saturating_sub(unix_now()).saturating_add(1),
            ));
        }
        None
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
            assert_eq!(p.slot(now, false), Duration::ZERO);
        }
        // The next call waits for the oldest of the window to leave it.
        let wait = p.slot(now, false);
        assert!(wait > Duration::from_secs(59), "{wait:?}");

        // With 3 calls left for 30 s, calls go about 10 s apart.
        let mut p = Pacer {
            hourly: Some((3, unix_now() + 30)),
            ..Pacer::default()
        };
        let first = p.slot(now, false);
        assert!(
            (Duration::from_secs(9)..=Duration::from_secs(10)).contains(&first),
            "{first:?}"
        );
        let second = p.slot(now, false);
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
        p.observe(&h, StatusCode::OK);
        assert_eq!(p.hourly, Some((4999, 1_900_000_000)));
        p.observe(&HeaderMap::new(), StatusCode::OK);
        assert_eq!(
            p.hourly,
            Some((4999, 1_900_000_000)),
            "kept without headers"
        );
        // A burst 429's `ratelimit-remaining: 0` is not the hour's count.
        let mut burst = HeaderMap::new();
        burst.insert("ratelimit-remaining", "0".parse().unwrap());
        burst.insert("ratelimit-reset", "1900000001".parse().unwrap());
        burst.insert("retry-after", "29".parse().unwrap());
        p.observe(&burst, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(p.hourly, Some((4999, 1_900_000_000)));
        // The hourly 429 (no retry-after) is.
        burst.remove("retry-after");
        p.observe(&burst, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(p.hourly, Some((0, 1_900_000_001)));
    }

    #[test]
    fn account_key_listings_have_their_own_bucket() {
        let mut p = Pacer::default();
        let now = Instant::now();
        for _ in 0..KEYS_LIST_BUDGET {
            assert_eq!(p.slot(now, true), Duration::ZERO);
        }
        // Other calls go on; the eleventh listing waits out the window.
        assert_eq!(p.slot(now, false), Duration::ZERO);
        let wait = p.slot(now, true);
        assert!(wait >= Duration::from_secs(60), "{wait:?}");
    }

    fn reply(status: u16, headers: &[(&'static str, String)], body: Value) -> Reply {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            phrase: String::new(),
            headers: h,
            body: body.to_string().into_bytes(),
        }
    }

    #[test]
    fn an_hourly_429_waits_for_its_reset_and_a_503_is_not_resent_blindly() {
        let d = DoDialect {
            pacer: Arc::default(),
        };
        let call = Call::new(Method::POST, "/v2/droplets");
        let body = json!({"id": "too_many_requests", "message": "API Rate limit exceeded."});
        let burst = reply(
            429,
            &[
                ("retry-after", "29".into()),
                ("ratelimit-remaining", "0".into()),
            ],
            body.clone(),
        );
        assert_eq!(d.retry_after(&burst), Some(Duration::from_secs(29)));
        assert!(d.not_processed(&call, &burst));
        let reset = unix_now() + 30;
        let hourly = reply(
            429,
            &[
                ("ratelimit-remaining", "0".into()),
                ("ratelimit-reset", reset.to_string()),
            ],
            body,
        );
        let wait = d.retry_after(&hourly).unwrap();
        assert!(
            (Duration::from_secs(29)..=Duration::from_secs(32)).contains(&wait),
            "{wait:?}"
        );
        let (_, text) = d.failure(&call, &hourly);
        assert!(
            text.contains("hourly budget of 5000 calls is spent"),
            "{text}"
        );
        assert_eq!(d.pacer.lock().unwrap().hourly, Some((0, reset)));
        let e503 = reply(
            503,
            &[],
            json!({"id": "service_unavailable", "message": "x"}),
        );
        assert!(!d.not_processed(&call, &e503));
        assert_eq!(d.retry_after(&e503), None);
    }

    #[test]
    fn the_tag_services_error_body_is_read_too() {
        let body = json!({
            "error": "Error validating resource tag: \"tag-name \\\"x y\\\" contains invalid characters\"",
            "messages": null,
            "root_causes": ["rpc error: code = InvalidArgument desc = ..."]
        });
        let (text, message) = error_text(&body, "Bad Request");
        assert!(text.starts_with("Error validating resource tag"), "{text}");
        assert_eq!(text, message);
        let (text, _) = error_text(
            &json!({"error": "bad", "messages": ["name is invalid", "bad"]}),
            "Bad Request",
        );
        assert_eq!(text, "bad; name is invalid");
        let (text, message) = error_text(
            &json!({"id": "not_found", "message": "gone", "request_id": "r1"}),
            "",
        );
        assert_eq!(
            (text.as_str(), message.as_str()),
            ("not_found: gone (request id r1)", "gone")
        );
        assert_eq!(error_text(&Value::Null, "Bad Gateway").0, "Bad Gateway");
    }

    #[test]
    fn of_a_page_link_only_the_page_number_is_used() {
        assert_eq!(
            page_number("https://api.digitalocean.com/v2/images?page=2&per_page=200&private=true&tag_name=golden-family%3Ab"),
            Some(2)
        );
        assert_eq!(
            page_number("http://127.0.0.1:4000/v2/droplets?per_page=20&page=13"),
            Some(13)
        );
        assert_eq!(
            page_number("https://api.digitalocean.com/v2/images?per_page=2"),
            None
        );
        assert_eq!(
            page_number("https://api.digitalocean.com/v2/images?page=0"),
            None
        );
        assert_eq!(
            page_number("https://api.digitalocean.com/v2/images?mypage=4"),
            None
        );
        assert_eq!(page_number("page=3"), None);
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
