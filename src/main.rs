//! `terraform-provider-golden`: installs logging and the signal handler, then
//! serves the provider over terraform's plugin protocol 6.

use std::process::ExitCode;

use golden::{logging, provider::GoldenProvider, signals};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    logging::install();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("terraform-provider-golden: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let cancel = CancellationToken::new();
        signals::install(cancel.clone())?;
        tf_provider::serve("golden", GoldenProvider::new(cancel)).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "provider stopped");
            ExitCode::FAILURE
        }
    }
}
