//! Platforms: one module each, all behind [`Platform`]. A platform answers
//! questions and performs primitive steps; the order of steps and every rule
//! live in `lifecycle`.

pub mod digitalocean;
pub mod gcp;
pub mod kit;
pub mod local;
pub mod proxmox;
pub mod registry;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;

use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::ledger::UndoAction;
use crate::lifecycle::metadata::Metadata;
use crate::lifecycle::naming::Family;
use crate::lifecycle::recipe::{BuildInput, SmokeSpec};
use crate::lifecycle::report::Report;

pub type Result<T> = std::result::Result<T, Error>;

/// Every method takes `&Cx`: a remote call can always be cancelled (Ctrl-C,
/// StopProvider) and is bounded by the caller's deadline.
#[async_trait]
pub trait Platform: Send + Sync {
    /// `local`, `proxmox`, ...: the value of the `platform` attribute.
    fn kind(&self) -> &'static str;

    /// Names this platform instance (one store, one cluster) among the
    /// provider's ledgers: runs against it keep their ledgers together, so
    /// the next run against it finishes what an interrupted one left.
    fn ledger_scope(&self) -> String;

    /// Every image golden built for `family`, whatever its status. Anything
    /// without golden's metadata for this family is not returned.
    async fn list_images(&self, family: &Family, cx: &Cx) -> Result<Vec<Image>>;

    /// Claims the name in `meta` for a new candidate; fails with
    /// [`ErrorKind::AlreadyExists`] when another build holds it. Platforms
    /// whose claim is the candidate VM itself (Proxmox clones the source into
    /// it) use `input`; others ignore it.
    async fn reserve(&self, meta: &Metadata, input: &BuildInput, cx: &Cx) -> Result<Image>;

    /// Builds the candidate's content from the recipe (and, for a
    /// `source.family`, from `input.parent`).
    async fn build(&self, candidate: &Image, input: &BuildInput, cx: &Cx) -> Result<Image>;

    /// Boots a throwaway VM from `image` and runs the checks. A failed check is
    /// a report that did not pass, not an error; errors are for the platform
    /// failing to run the test at all.
    async fn smoke_test(&self, image: &Image, spec: &SmokeSpec, cx: &Cx) -> Result<Report>;

    /// Makes a validated candidate visible to family lookups.
    async fn publish(&self, image: &Image, report: &Report, cx: &Cx) -> Result<Image>;

    /// Records a failed smoke test on the candidate; it stays out of lookups.
    async fn mark_failed(&self, image: &Image, report: &Report, cx: &Cx) -> Result<()>;

    /// Replaces the user tags on an existing image.
    async fn retag(&self, image: &Image, tags: &BTreeMap<String, String>, cx: &Cx) -> Result<()>;

    /// Deletes an image. Deleting what is already gone succeeds.
    async fn delete(&self, image: &Image, cx: &Cx) -> Result<()>;

    /// Carries out one ledger entry. Entries of other platforms never reach
    /// a platform: ledgers are kept per platform.
    async fn undo(&self, action: &UndoAction, cx: &Cx) -> Result<()>;

    /// Removes what killed runs left behind without a ledger (stale
    /// candidates past their deadline). The pipeline replays interrupted
    /// runs' ledgers itself before calling this.
    async fn sweep(&self, cx: &Cx) -> Result<()>;

    /// The last validation report stored with an image, if the platform keeps one.
    async fn report(&self, image: &Image, cx: &Cx) -> Result<Option<Report>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    Auth,
    Transient,
    /// The thing is busy with another operation (a DigitalOcean droplet's
    /// pending event): the call was refused unprocessed; try again later.
    Busy,
    /// A precondition no longer holds (GCE's stale `labelFingerprint`, 412
    /// `conditionNotMet`): re-read and try again.
    Conflict,
    Cancelled,
    Timeout,
    Other,
}

/// A platform error: a kind callers branch on, and a message with the full cause
/// chain for people.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    context: String,
    source: Option<anyhow::Error>,
    detail: Option<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Error {
            kind,
            context: context.into(),
            source: None,
            detail: None,
        }
    }

    pub fn other(context: impl Into<String>, source: anyhow::Error) -> Self {
        // Keep the kind of a platform error raised further down.
        let kind = source
            .downcast_ref::<Error>()
            .map(|e| e.kind)
            .unwrap_or(ErrorKind::Other);
        Error {
            kind,
            context: context.into(),
            source: Some(source),
            detail: None,
        }
    }

    pub fn cancelled(step: &str) -> Self {
        Error::new(
            ErrorKind::Cancelled,
            format!("{step}: cancelled (interrupt or StopProvider)"),
        )
    }

    pub fn timeout(step: &str) -> Self {
        Error::new(ErrorKind::Timeout, format!("{step}: timed out"))
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, what)
    }

    pub fn already_exists(what: impl Into<String>) -> Self {
        Error::new(ErrorKind::AlreadyExists, what)
    }

    /// Appends lines for people (a console tail, a hint), keeping the kind.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
    pub fn is_already_exists(&self) -> bool {
        self.kind == ErrorKind::AlreadyExists
    }
    pub fn is_cancelled(&self) -> bool {
        self.kind == ErrorKind::Cancelled
    }
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }
    pub fn is_auth(&self) -> bool {
        self.kind == ErrorKind::Auth
    }
    pub fn is_busy(&self) -> bool {
        self.kind == ErrorKind::Busy
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)?;
        if let Some(src) = &self.source {
            write!(f, ": {src:#}")?;
        }
        if let Some(d) = &self.detail {
            write!(f, "\n{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Lets `?` turn an `anyhow` chain into an `Other` error inside platform code.
pub trait Context<T> {
    fn ctx(self, what: impl Into<String>) -> Result<T>;
}

impl<T, E: Into<anyhow::Error>> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::other(what, e.into()))
    }
}
