//! What every remote platform builds on, written once: the HTTP transport
//! with its retry policy and TLS set-up, the operation poller, and the
//! smoke-test runner.

pub mod http;
pub mod poll;
pub mod smoke;
pub mod tls;
