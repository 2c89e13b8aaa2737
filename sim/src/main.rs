//! golden-sim: simulators of the platform APIs golden talks to, for tests and
//! for trying golden without an account. `golden-sim proxmox` serves the
//! Proxmox VE API (see docs/guides/proxmox-simulator.md), `golden-sim
//! digitalocean` DigitalOcean's (docs/guides/digitalocean-simulator.md), `golden-sim
//! gcp` Compute Engine's (docs/guides/gcp-simulator.md).
//!
//! When ready it prints one JSON line to stdout (endpoint, token, admin URL)
//! so a test can start it and read where it listens; everything else goes to
//! stderr.
//!
//! `core` is what every simulator shares; each platform is a module beside it
//! (state, spec checker, routes), registered here by its CLI word (see
//! docs/adr/007-simulator-core.md).

mod core;
mod digitalocean;
mod gcp;
mod proxmox;

use std::process::ExitCode;

/// Every simulator's usage, one per line.
fn usage() -> String {
    format!(
        "{}\n{}\n{}",
        proxmox::cli::USAGE,
        digitalocean::cli::USAGE,
        gcp::cli::USAGE
    )
}

/// rustls' ring provider as the process default, for reqwest 0.13 (built
/// with `rustls-no-provider`) and the `--tls` servers; later calls do nothing.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn main() -> ExitCode {
    core::util::die_with_parent();
    install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("proxmox") => proxmox::cli::main(&args[1..]),
        Some("digitalocean") => digitalocean::cli::main(&args[1..]),
        Some("gcp") => gcp::cli::main(&args[1..]),
        Some("digitalocean-relay") => {
            return match digitalocean::ssh::relay(&args[1..]) {
                Ok(code) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(255)),
                Err(e) => {
                    eprintln!("golden-sim: {e:#}");
                    ExitCode::from(255)
                }
            };
        }
        Some("-h" | "--help") => {
            println!("{}", usage());
            return ExitCode::SUCCESS;
        }
        _ => Err(anyhow::anyhow!("{}", usage())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("golden-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}
