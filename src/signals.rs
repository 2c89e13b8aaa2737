//! SIGINT/SIGTERM handling. A Ctrl-C in the terminal reaches the provider too
//! (plugins share terraform's process group), and Rust's default action would
//! kill it mid-step, leaking VMs and overlays. Instead the signal cancels the
//! running pipeline, which cleans up and returns an error diagnostic.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

pub fn install(cancel: CancellationToken) -> std::io::Result<()> {
    for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
        let mut s = signal(kind)?;
        let cancel = cancel.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                tracing::warn!(signal = ?kind, "interrupted: cancelling running builds and cleaning up");
                cancel.cancel();
            }
        });
    }
    Ok(())
}

/// Exits when terraform itself is gone (killed, or a second Ctrl-C): the
/// provider is then an orphan nobody will call again. Running builds are
/// cancelled first and given time to clean up (`active` counts them).
pub fn exit_when_orphaned(
    cancel: CancellationToken,
    active: std::sync::Arc<std::sync::atomic::AtomicUsize>,
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
        cancel.cancel();
        let deadline = tokio::time::Instant::now() + crate::lifecycle::pipeline::CLEANUP_TIMEOUT;
        while active.load(std::sync::atomic::Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        std::process::exit(1);
    });
}
