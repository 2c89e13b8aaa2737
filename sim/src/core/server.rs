//! The HTTP(S) server every simulator runs on, and the one flow each request
//! takes:
//!
//! 1. `/_sim/...`: the admin API (the core's endpoints, then the
//!    simulator's); no auth, not logged.
//! 2. A path outside the API (`Simulator::api_path`): the simulator's
//!    `not_found`, not logged.
//! 3. The `latency` faults' delay; the auth hook; the simulator's routes (or
//!    the hook's refusal); then the request log records method, API path,
//!    status and whether auth passed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use super::admin::{self, AdminError};
use super::auth::AuthHook;
use super::log::{body_value, RequestRecord};
use super::state::{Shared, SimState};

pub type HttpResponse = Response<Full<Bytes>>;

/// A request, read whole.
pub struct HttpRequest {
    pub method: String,
    /// The request path as sent (not percent-decoded).
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpRequest {
    /// A header's value as text (empty when absent or not text).
    pub fn header(&self, name: hyper::header::HeaderName) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }
}

/// What a simulator module gives the core.
pub trait Simulator: Send + Sync + 'static {
    type State: SimState;

    fn shared(&self) -> &Shared<Self::State>;

    fn auth(&self) -> &dyn AuthHook;

    /// The API's part of a request path (PVE: after `/api2/json`); `None`
    /// for a path the API does not serve.
    fn api_path(&self, path: &str) -> Option<String>;

    /// The answer to a path outside the API.
    fn not_found(&self) -> HttpResponse;

    /// Serves an authenticated API request; returns the status to log and
    /// the response.
    fn serve(
        &self,
        req: &HttpRequest,
        api_path: &str,
    ) -> impl Future<Output = (u16, HttpResponse)> + Send;

    /// The simulator's own admin endpoints (`path` follows `/_sim`); `None`
    /// when there is no such endpoint.
    fn admin(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> impl Future<Output = Option<Result<Value, AdminError>>> + Send;
}

/// The content type of JSON answers (PVE's exact header; fine for others).
pub const JSON_UTF8: &str = "application/json;charset=UTF-8";

/// A JSON answer; `reason` becomes the HTTP reason phrase when given.
pub fn reply(status: u16, reason: Option<&str>, body: Value) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(JSON_UTF8),
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

/// Listens on `listen` and serves `sim` over HTTPS (`tls`) or plain HTTP;
/// returns the endpoint (`https://127.0.0.1:PORT`).
pub async fn serve<Sim: Simulator>(
    sim: Arc<Sim>,
    listen: SocketAddr,
    tls: Option<TlsAcceptor>,
) -> Result<String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let tls = tls.clone();
            let sim = sim.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(tcp).await else {
                            return;
                        };
                        connection(sim, stream).await;
                    }
                    None => connection(sim, tcp).await,
                }
            });
        }
    });
    Ok(format!("{scheme}://{addr}"))
}

async fn connection<Sim, IO>(sim: Arc<Sim>, io: IO)
where
    Sim: Simulator,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let sim = sim.clone();
        async move { Ok::<_, Infallible>(handle(&*sim, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

async fn handle<Sim: Simulator>(sim: &Sim, req: Request<Incoming>) -> HttpResponse {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if let Some(rest) = path.strip_prefix("/_sim") {
        let core = admin::handle(sim.shared(), &method, rest, &body);
        let result = match core {
            Some(r) => r,
            None => match sim.admin(&method, rest, &body).await {
                Some(r) => r,
                None => Err(admin::not_found(&method, rest)),
            },
        };
        return match result {
            Ok(v) => reply(200, None, v),
            Err(e) => reply(e.status, Some(&e.message), json!({"error": e.message})),
        };
    }
    let Some(api_path) = sim.api_path(&path) else {
        return sim.not_found();
    };
    let latency = sim.shared().lock().records().faults.latency_ms();
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let req = HttpRequest {
        method,
        path: path.clone(),
        query,
        headers: parts.headers,
        body,
    };
    let auth = sim.auth().check(&req);
    let auth_ok = auth.is_ok();
    let (status, resp) = match auth {
        Ok(()) => sim.serve(&req, &api_path).await,
        Err(refusal) => (refusal.status().as_u16(), *refusal),
    };
    // The answer's body, for the log (a `Full` body is there at once).
    let (parts, body) = resp.into_parts();
    let answer = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    // The credential is the last word of `Authorization` (`Bearer X`,
    // `PVEAPIToken=...`): it never reaches the log.
    let auth_header = req.header(hyper::header::AUTHORIZATION);
    let secret = auth_header.split_whitespace().last().unwrap_or("");
    let record = RequestRecord {
        request_body: body_value(&req.body, secret),
        response_body: body_value(&answer, secret),
        method: req.method,
        path: api_path,
        query: req.query,
        status,
        auth_ok,
    };
    sim.shared().lock().records().requests.push(record);
    Response::from_parts(parts, Full::new(answer))
}
