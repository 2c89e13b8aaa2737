//! `terraform-provider-golden`: installs logging and the signal handler, then
//! serves the provider over terraform's plugin protocol 6.

use std::process::ExitCode;
use std::time::Duration;

use golden::{logging, provider::GoldenProvider, signals};
use tokio_util::sync::CancellationToken;

/// go-plugin's handshake cookie for Terraform providers: terraform sets it,
/// a person starting the binary by hand does not.
const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
const MAGIC_COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// How long the plugin server may take to finish its connections once the
/// process has decided to exit (SIGTERM, terraform gone).
const EXIT_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    if std::env::var(MAGIC_COOKIE_KEY).as_deref() != Ok(MAGIC_COOKIE_VALUE) {
        // go-plugin's words, so people recognise them.
        eprint!(
            "This binary is a plugin. These are not meant to be executed directly.\n\
             Please execute the program that consumes these plugins, which will\n\
             load any plugins automatically\n"
        );
        return ExitCode::FAILURE;
    }
    // tf-provider appends a backtrace to every diagnostic when backtraces are
    // on (RUST_BACKTRACE=1 is common); users should see only the message.
    // Still single-threaded here, so setting the variable is sound.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    logging::install();
    golden::platforms::kit::tls::install_crypto_provider();
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
    let exit = CancellationToken::new();
    let result = runtime.block_on(serve(exit.clone()));
    // Blocking tasks (a child process being waited on) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) if !exit.is_cancelled() => ExitCode::SUCCESS,
        Ok(()) => ExitCode::FAILURE,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "provider stopped");
            ExitCode::FAILURE
        }
    }
}

/// Serves until terraform stops the provider or `exit` fires; either way the
/// plugin socket is removed before this returns.
async fn serve(exit: CancellationToken) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let provider = GoldenProvider::new(cancel.clone());
    let active = provider.shared().active.clone();
    signals::install(cancel.clone(), active.clone(), exit.clone())?;
    signals::exit_when_orphaned(cancel, active, exit.clone());
    let server = tf_provider::serve_until("golden", provider, exit.clone().cancelled_owned());
    tokio::select! {
        result = server => result,
        // A connection that never closes must not keep the process alive;
        // dropping the server future still removes the socket.
        () = async {
            exit.cancelled().await;
            tokio::time::sleep(EXIT_GRACE).await;
        } => Ok(()),
    }
}
