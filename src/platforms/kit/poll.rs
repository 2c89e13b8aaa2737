//! Waiting for a long-running operation (a PVE task, a DigitalOcean action,
//! a GCE operation) to end: poll with a growing interval, tolerate a status
//! that cannot be read for a moment, stop at the `Cx` deadline or on
//! cancellation.

use std::future::Future;
use std::time::Duration;

use crate::lifecycle::context::Cx;
use crate::platforms::{Error, Result};

/// What one look at the operation found.
pub enum Progress<T> {
    Pending,
    Done(T),
}

/// How often to look.
#[derive(Debug, Clone, Copy)]
pub struct Interval {
    pub first: Duration,
    pub max: Duration,
}

impl Interval {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Interval { first, max }
    }
}

/// A status read that fails transiently this many times in a row ends the wait.
const TRANSIENT_READS: u32 = 10;

/// Calls `look` until it reports `Done`, sleeping between looks (x1.5 each
/// time, up to `interval.max`). `what` names the step in errors.
pub async fn until_done<T, F, Fut>(
    what: &str,
    cx: &Cx,
    interval: Interval,
    mut look: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Progress<T>>>,
{
    let mut every = interval.first;
    let mut transient_failures = 0u32;
    loop {
        cx.check(what)?;
        match look().await {
            Ok(Progress::Done(v)) => return Ok(v),
            Ok(Progress::Pending) => transient_failures = 0,
            // A status that cannot be read for a moment (a proxy reload, a
            // 5xx) does not mean the operation failed: keep looking a while.
            Err(e) if e.is_transient() && transient_failures < TRANSIENT_READS => {
                transient_failures += 1;
                tracing::warn!(error = %e, step = what, "could not read the operation's status; polling again");
            }
            Err(e) if e.is_cancelled() || e.is_timeout() => return Err(e),
            Err(e) => {
                return Err(Error::other(
                    format!("{what}: reading the operation's status"),
                    e.into(),
                ))
            }
        }
        cx.sleep(what, every).await?;
        every = (every * 3 / 2).min(interval.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::ErrorKind;
    use tokio_util::sync::CancellationToken;

    const FAST: Interval = Interval::new(Duration::from_millis(1), Duration::from_millis(5));

    #[tokio::test]
    async fn polls_until_done_through_transient_reads() {
        let cx = Cx::transient(CancellationToken::new(), Duration::from_secs(5));
        let mut n = 0;
        let v = until_done("op", &cx, FAST, || {
            n += 1;
            let i = n;
            async move {
                match i {
                    1 => Ok(Progress::Pending),
                    2 => Err(Error::new(ErrorKind::Transient, "503")),
                    3 => Ok(Progress::Pending),
                    _ => Ok(Progress::Done(i)),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 4);
    }

    #[tokio::test]
    async fn a_permanent_read_error_ends_the_wait() {
        let cx = Cx::transient(CancellationToken::new(), Duration::from_secs(5));
        let err = until_done("op", &cx, FAST, || async {
            Err::<Progress<()>, _>(Error::new(ErrorKind::Auth, "401"))
        })
        .await
        .unwrap_err();
        assert!(err.is_auth(), "{err}");
    }

    #[tokio::test]
    async fn the_deadline_ends_an_endless_operation() {
        let cx = Cx::transient(CancellationToken::new(), Duration::from_millis(50));
        let err = until_done("op", &cx, FAST, || async { Ok(Progress::<()>::Pending) })
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
    }
}
