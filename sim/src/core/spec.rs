//! Checking a simulator against its platform's official API description:
//! every request it serves and every answer it gives is held against the
//! spec, so a client that passes against the simulator sends what the real
//! API accepts, and the simulator cannot drift from what the real API
//! answers. What does not fit is refused (requests) and recorded as a
//! violation (both), for tests to fail on.
//!
//! Loaders implement `SpecChecker`: the PVE apidoc schema
//! (`proxmox::schema::Schema`), OpenAPI 3 descriptions
//! (`core::openapi::OpenApi`, for DigitalOcean) and Google API discovery
//! documents (`core::discovery::Discovery`, for GCE; paths are relative to
//! the document's `servicePath`, with or without it).

use std::collections::BTreeMap;

use serde_json::Value;

/// Request parameters as they arrive: name -> values (arrays repeat the key).
pub type Params = BTreeMap<String, Vec<String>>;

/// Why a request does not fit the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// No spec node has this path.
    UnknownPath,
    /// The path exists but not with this method.
    UnknownMethod,
    /// Parameter name -> why, as the platform answers it.
    Params(BTreeMap<String, String>),
}

pub trait SpecChecker: Send + Sync {
    /// Checks a request: `path` is the API's part, percent-decoded; `params`
    /// the query and body parameters (path parameters come from `path`).
    fn check_request(&self, method: &str, path: &str, params: &Params) -> Result<(), RequestError>;

    /// Checks a request that may carry a JSON body (`None`: no body). APIs
    /// whose requests are form parameters only (PVE) keep this default,
    /// which refuses any JSON body; OpenAPI checkers hold it against the
    /// operation's `requestBody`.
    fn check_request_body(
        &self,
        method: &str,
        path: &str,
        params: &Params,
        body: Option<&Value>,
    ) -> Result<(), RequestError> {
        match body {
            None => self.check_request(method, path, params),
            Some(_) => Err(RequestError::Params(BTreeMap::from([(
                "body".to_owned(),
                "this API takes no JSON request body".to_owned(),
            )]))),
        }
    }

    /// Checks an answer with this status; `body` is what the spec describes
    /// (for PVE the `data` inside the envelope). Returns the violations.
    fn check_response(&self, method: &str, path: &str, status: u16, body: &Value) -> Vec<String>;
}
