//! TLS for every HTTP client of the provider: rustls with the ring crypto
//! provider, installed once as the process default. reqwest 0.13 and the
//! Google client are built with `rustls-no-provider`, so no C crypto library
//! (aws-lc) is compiled; they find the provider installed here.

use std::sync::Once;

/// Installs ring as rustls' process-wide provider; later calls do nothing.
/// Call before building any HTTP client.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err: another provider was installed first (a test harness); it is
        // used instead, which is what rustls would do anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A plain reqwest client with the provider installed.
pub fn http_client() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

#[cfg(test)]
mod tests {
    #[test]
    fn clients_build_after_installing() {
        super::http_client().build().expect("a client builds");
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
