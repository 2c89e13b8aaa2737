//! The auth hook: how a simulator decides whether a request is
//! authenticated, and what it answers when it is not (each platform words its
//! refusal its own way). The server records the outcome in the request log.

use super::server::{HttpRequest, HttpResponse};

pub trait AuthHook: Send + Sync {
    /// `Ok` to serve the request; otherwise the refusal to send.
    fn check(&self, req: &HttpRequest) -> Result<(), Box<HttpResponse>>;
}
