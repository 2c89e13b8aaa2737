//! `Cx`: what every platform step receives: cancellation, a deadline and the
//! cleanup ledger.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ledger::{Ledger, UndoAction};
use crate::platforms::Error;

#[derive(Clone)]
pub struct Cx {
    pub cancel: CancellationToken,
    pub deadline: Instant,
    ledger: Arc<Mutex<Ledger>>,
}

impl Cx {
    /// A context for a step that creates nothing to undo (a lookup, a
    /// re-tag, a delete): cancellable and bounded, with an in-memory ledger.
    pub fn transient(cancel: CancellationToken, timeout: Duration) -> Self {
        Cx::new(cancel, timeout, Ledger::in_memory())
    }

    pub fn new(cancel: CancellationToken, timeout: Duration, ledger: Ledger) -> Self {
        Cx {
            cancel,
            deadline: Instant::now() + timeout,
            ledger: Arc::new(Mutex::new(ledger)),
        }
    }

    /// A context for cleanup: a fresh token and its own deadline, so a cancelled
    /// or timed-out run still cleans up.
    pub fn for_cleanup(&self, timeout: Duration) -> Cx {
        Cx {
            cancel: CancellationToken::new(),
            deadline: Instant::now() + timeout,
            ledger: self.ledger.clone(),
        }
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    pub fn record(&self, action: UndoAction) {
        self.with_ledger(|l| l.push(action));
    }

    pub fn forget(&self, action: &UndoAction) {
        self.with_ledger(|l| l.forget(action));
    }

    /// Where this run's ledger is persisted (and interrupted runs' ledgers
    /// for the same platform wait); `None` for an in-memory ledger.
    pub fn ledger_dir(&self) -> Option<std::path::PathBuf> {
        self.with_ledger(|l| l.dir().map(std::path::Path::to_path_buf))
    }

    pub fn with_ledger<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> T {
        let mut guard = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Runs `fut` unless cancellation or the deadline comes first. `what` names
    /// the step for the error message.
    pub async fn run<T, F>(&self, what: &str, fut: F) -> Result<T, Error>
    where
        F: Future<Output = anyhow::Result<T>>,
    {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(Error::cancelled(what)),
            _ = tokio::time::sleep_until(self.deadline) => Err(Error::timeout(what)),
            r = fut => r.map_err(|e| Error::other(what, e)),
        }
    }

    /// Sleeps, waking early (with an error) on cancellation or the deadline.
    pub async fn sleep(&self, what: &str, d: Duration) -> Result<(), Error> {
        self.run(what, async {
            tokio::time::sleep(d).await;
            Ok(())
        })
        .await
    }

    pub fn check(&self, what: &str) -> Result<(), Error> {
        if self.cancel.is_cancelled() {
            return Err(Error::cancelled(what));
        }
        if Instant::now() >= self.deadline {
            return Err(Error::timeout(what));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn run_stops_at_cancellation() {
        let cx = Cx::new(
            CancellationToken::new(),
            Duration::from_secs(60),
            Ledger::in_memory(),
        );
        let c = cx.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c.cancel();
        });
        let r = cx.run("wait", async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        });
        assert!(r.await.unwrap_err().is_cancelled());
    }

    #[tokio::test]
    async fn run_stops_at_deadline_and_names_the_step() {
        let cx = Cx::new(
            CancellationToken::new(),
            Duration::from_millis(20),
            Ledger::in_memory(),
        );
        let err = cx
            .sleep("waiting for the guest agent", Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(err.is_timeout());
        assert!(err.to_string().contains("waiting for the guest agent"));
    }

    #[tokio::test]
    async fn cleanup_context_is_not_cancelled() {
        let cx = Cx::new(
            CancellationToken::new(),
            Duration::from_secs(1),
            Ledger::in_memory(),
        );
        cx.cancel.cancel();
        let clean = cx.for_cleanup(Duration::from_secs(5));
        assert!(clean.check("cleanup").is_ok());
    }
}
