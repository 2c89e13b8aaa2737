//! SIGINT/SIGTERM handling. A Ctrl-C in the terminal reaches the provider too
//! (plugins share terraform's process group), and Rust's default action would
//! kill it mid-step, leaking VMs and overlays. Instead the signal cancels the
//! running pipeline, which cleans up and returns an error diagnostic.
//!
//! When the process must go (SIGTERM, terraform gone) it does not call
//! `process::exit`: it fires the `exit` token, the plugin server returns, and
//! `main` exits after the plugin socket is removed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

pub fn install(
    cancel: CancellationToken,
    active: Arc<AtomicUsize>,
    exit: CancellationToken,
) -> std::io::Result<()> {
    // SIGINT: terraform is still there and will collect our error diagnostics.
    let mut int = signal(SignalKind::interrupt())?;
    let c = cancel.clone();
    tokio::spawn(async move {
        while int.recv().await.is_some() {
            tracing::warn!("interrupted: cancelling running builds and cleaning up");
            c.cancel();
        }
    });
    // SIGTERM: someone wants the process gone; clean up first, then exit.
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        if term.recv().await.is_some() {
            tracing::warn!("terminated: cancelling running builds, cleaning up and exiting");
            exit_after_cleanup(cancel, active, exit).await;
        }
    });
    Ok(())
}

async fn exit_after_cleanup(
    cancel: CancellationToken,
    active: Arc<AtomicUsize>,
    exit: CancellationToken,
) {
    cancel.cancel();
    let deadline = tokio::time::Instant::now() + crate::lifecycle::pipeline::CLEANUP_TIMEOUT;
    while active.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    exit.cancel();
}

/// Exits when terraform itself is gone (killed, or a second Ctrl-C): the
/// provider is then an orphan nobody will call again. Running builds are
/// cancelled first and given time to clean up (`active` counts them).
pub fn exit_when_orphaned(
    cancel: CancellationToken,
    active: Arc<AtomicUsize>,
    exit: CancellationToken,
) {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            // SAFETY: as above.
            if unsafe { libc::getppid() } != parent {
                break;
            }
        }
        tracing::warn!("terraform exited; cancelling running builds and exiting");
        exit_after_cleanup(cancel, active, exit).await;
    });
}
