//! `terraform-provider-golden`: installs logging and the signal handler, then
//! serves the provider over terraform's plugin protocol 6.

use std::process::ExitCode;

use golden::{logging, provider::GoldenProvider, signals};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    // tf-provider appends a backtrace to every diagnostic when backtraces are
    // on (RUST_BACKTRACE=1 is common); users should see only the message.
    // Still single-threaded here, so setting the variable is sound.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    logging::install();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("terraform-provider-golden: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let cancel = CancellationToken::new();
        let provider = GoldenProvider::new(cancel.clone());
        signals::install(cancel.clone(), provider.shared().active.clone())?;
        signals::exit_when_orphaned(cancel, provider.shared().active.clone());
        tf_provider::serve("golden", provider).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "provider stopped");
            ExitCode::FAILURE
        }
    }
}
