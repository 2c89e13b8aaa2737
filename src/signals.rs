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
