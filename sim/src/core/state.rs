//! A simulator's state sits behind one mutex, held briefly and never across
//! an await; beside the platform's own model it keeps the records every
//! simulator has (request log, schema violations, fault book).

use std::sync::{Arc, Mutex, MutexGuard};

use super::faults::{FaultBook, FaultKind};
use super::log::RequestLog;
use super::violations::Violations;

pub struct Shared<S>(Arc<Mutex<S>>);

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<S> Shared<S> {
    pub fn new(state: S) -> Shared<S> {
        Shared(Arc::new(Mutex::new(state)))
    }

    /// A panic elsewhere must not wedge the whole simulator.
    pub fn lock(&self) -> MutexGuard<'_, S> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the core keeps for every simulator.
pub struct Records<K> {
    pub faults: FaultBook<K>,
    pub violations: Violations,
    pub requests: RequestLog,
}

impl<K> Default for Records<K> {
    fn default() -> Self {
        Records {
            faults: FaultBook::default(),
            violations: Violations::default(),
            requests: RequestLog::default(),
        }
    }
}

/// A simulator's state, as the core sees it.
pub trait SimState: Send + 'static {
    /// The platform's own fault kinds.
    type Fault: FaultKind;

    fn records(&mut self) -> &mut Records<Self::Fault>;
}
