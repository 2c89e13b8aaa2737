//! The operation engine: an API call that answers at once with an operation
//! id, then takes time and ends done or failed, as PVE's worker tasks (UPID),
//! DigitalOcean's actions and GCE's operations do. The platform names and
//! renders its operations (`M`, the metadata); the engine registers them,
//! runs their work after the delay, applies a failure (an armed fault or the
//! work's error) with the platform's rollback, and records the outcome.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use super::state::Shared;

/// What a platform keeps about an operation, and how it ends its log.
pub trait OperationMeta: Send + 'static {
    /// What the platform calls an operation, for the simulator's own log.
    const NOUN: &'static str = "operation";

    /// The log line an operation ends with, if the platform writes one;
    /// `warnings` is set when it succeeded with warnings.
    fn closing_line(
        &self,
        _outcome: &Result<(), String>,
        _warnings: Option<&str>,
    ) -> Option<String> {
        None
    }
}

pub struct Operation<M> {
    pub meta: M,
    /// `None` while running; then done, or failed with a message.
    pub outcome: Option<Result<(), String>>,
    /// Done, but with warnings (PVE's `WARNINGS: n`, GCE's `warnings[]`).
    pub warnings: Option<String>,
    pub log: Vec<String>,
}

/// A fault armed for one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Armed {
    /// It fails with this message, its work not done.
    Fail(String),
    /// Its work is done and it succeeds, with these warnings.
    Warnings(String),
}

pub struct Operations<M> {
    ops: BTreeMap<String, Operation<M>>,
}

impl<M> Default for Operations<M> {
    fn default() -> Self {
        Operations {
            ops: BTreeMap::new(),
        }
    }
}

impl<M> Operations<M> {
    pub fn get(&self, id: &str) -> Option<&Operation<M>> {
        self.ops.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Operation<M>> {
        self.ops.get_mut(id)
    }

    /// Every operation's id.
    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.ops.keys()
    }
}

/// A state that keeps operations of kind `M`.
pub trait OperationState<M>: Send + 'static {
    fn operations(&mut self) -> &mut Operations<M>;
}

/// An operation to start.
pub struct Start<M> {
    /// Its id, as the API hands it out (PVE: the UPID string).
    pub id: String,
    pub meta: M,
    pub first_line: String,
    /// How long it runs before its work is done.
    pub duration: Duration,
    /// An armed fault.
    pub fault: Option<Armed>,
}

/// Registers an operation (under the caller's lock on `state`) and runs it:
/// after `duration`, `work` (unless a fault was armed, whose message becomes
/// the result); on an error `rollback` restores the state. Returns the id.
pub fn spawn<S, M, W, R>(
    shared: &Shared<S>,
    state: &mut S,
    start: Start<M>,
    work: W,
    rollback: R,
) -> String
where
    S: OperationState<M>,
    M: OperationMeta,
    W: Future<Output = Result<(), String>> + Send + 'static,
    R: FnOnce(&mut S) + Send + 'static,
{
    let Start {
        id,
        meta,
        first_line,
        duration,
        fault,
    } = start;
    state.operations().ops.insert(
        id.clone(),
        Operation {
            meta,
            outcome: None,
            warnings: None,
            log: vec![first_line],
        },
    );
    let shared = shared.clone();
    let key = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(duration).await;
        let (result, warnings) = match fault {
            Some(Armed::Fail(msg)) => (Err(msg), None),
            Some(Armed::Warnings(w)) => (work.await, Some(w)),
            None => (work.await, None),
        };
        let warnings = warnings.filter(|_| result.is_ok());
        let mut st = shared.lock();
        if result.is_err() {
            rollback(&mut st);
        }
        if let Some(op) = st.operations().ops.get_mut(&key) {
            if let Err(msg) = &result {
                eprintln!("golden-sim: {} {key} failed: {msg}", M::NOUN);
            }
            if let Some(line) = op.meta.closing_line(&result, warnings.as_deref()) {
                op.log.push(line);
            }
            op.outcome = Some(result);
            op.warnings = warnings;
        }
    });
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Meta;
    impl OperationMeta for Meta {
        fn closing_line(&self, outcome: &Result<(), String>, _w: Option<&str>) -> Option<String> {
            Some(format!("END {}", outcome.is_ok()))
        }
    }

    #[derive(Default)]
    struct St {
        ops: Operations<Meta>,
        rolled_back: bool,
    }
    impl OperationState<Meta> for St {
        fn operations(&mut self) -> &mut Operations<Meta> {
            &mut self.ops
        }
    }

    fn start(id: &str, fault: Option<&str>) -> Start<Meta> {
        Start {
            id: id.into(),
            meta: Meta,
            first_line: "begin".into(),
            duration: Duration::from_millis(5),
            fault: fault.map(|m| Armed::Fail(m.to_owned())),
        }
    }

    #[tokio::test]
    async fn operations_run_fail_and_roll_back() {
        let shared = Shared::new(St::default());
        {
            let mut st = shared.lock();
            spawn(
                &shared,
                &mut st,
                start("ok", None),
                async { Ok(()) },
                |_| {},
            );
            spawn(
                &shared,
                &mut st,
                start("faulted", Some("no space")),
                async { Err("a faulted operation does no work".to_owned()) },
                |s: &mut St| s.rolled_back = true,
            );
            assert!(st.ops.get("ok").unwrap().outcome.is_none(), "running");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let st = shared.lock();
        let ok = st.ops.get("ok").unwrap();
        assert_eq!(ok.outcome, Some(Ok(())));
        assert_eq!(ok.log, vec!["begin", "END true"]);
        let bad = st.ops.get("faulted").unwrap();
        assert_eq!(bad.outcome, Some(Err("no space".into())));
        assert!(st.rolled_back);
    }

    #[tokio::test]
    async fn an_operation_with_warnings_does_its_work_and_succeeds() {
        let shared = Shared::new(St::default());
        {
            let mut st = shared.lock();
            let mut armed = start("warned", None);
            armed.fault = Some(Armed::Warnings("WARNINGS: 1".into()));
            spawn(&shared, &mut st, armed, async { Ok(()) }, |s: &mut St| {
                s.rolled_back = true
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let st = shared.lock();
        let op = st.ops.get("warned").unwrap();
        assert_eq!(op.outcome, Some(Ok(())));
        assert_eq!(op.warnings.as_deref(), Some("WARNINGS: 1"));
        assert!(!st.rolled_back);
    }
}
