//! HTTPS with a self-signed certificate made at start, for 127.0.0.1 and
//! localhost: clients must be told to accept it (each simulator's docs say
//! how; for PVE that is what a fresh node has too).

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The acceptor and the certificate's SHA-256 fingerprint as PVE prints
/// node fingerprints: upper-case hex pairs joined by `:`.
pub fn acceptor() -> Result<(TlsAcceptor, String)> {
    acceptor_with_pem().map(|(a, fingerprint, _)| (a, fingerprint))
}

/// The same, with the certificate as PEM, for clients told to trust it
/// (`REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE`, curl's `--cacert`).
pub fn acceptor_with_pem() -> Result<(TlsAcceptor, String, String)> {
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let cert = rcgen::generate_simple_self_signed(names).context("generating a certificate")?;
    let fingerprint = {
        use sha2::Digest;
        sha2::Sha256::digest(cert.cert.der().as_ref())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .context("TLS certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let pem = cert.cert.pem();
    Ok((TlsAcceptor::from(Arc::new(config)), fingerprint, pem))
}
