//! The pipeline, written once for every platform:
//!
//!   sweep -> reserve candidate -> build -> smoke test -> publish -> prune
//!
//! Publish happens only after a passed smoke test; prune only after publish, and
//! only names the plan showed. Whatever a step creates is recorded in the
//! ledger and undone, newest first, on every exit path: success, error, timeout
//! and cancellation. A candidate that failed its smoke test is kept, marked
//! failed, so the user can inspect it; retention removes it later.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{info, warn, Instrument};

use super::allocation::next_build_number;
use super::context::Cx;
use super::image::Image;
use super::ledger::UndoAction;
use super::metadata::{Metadata, Status};
use super::naming::{BuildDate, Family, ImageName};
use super::recipe::{Recipe, BUILDER_VERSION};
use super::report::Report;
use super::retention::still_deletable;
use crate::platforms::{Error, Platform};

/// How long cleanup may take after the run itself ended.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(120);

pub struct BuildRequest<'a> {
    pub family: &'a Family,
    pub recipe: &'a Recipe,
    pub tags: &'a BTreeMap<String, String>,
    /// The names the plan showed in `prune`.
    pub planned_prune: &'a [String],
    pub date: BuildDate,
}

#[derive(Debug)]
pub struct BuildOutcome {
    pub image: Image,
    pub report: Report,
    pub prune: PruneOutcome,
}

#[derive(Debug, Default)]
pub struct PruneOutcome {
    pub deleted: Vec<String>,
    /// Planned deletions that did not happen, with the reason (warnings).
    pub skipped: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{step} failed: {error}")]
    Step { step: &'static str, error: Error },
    #[error("smoke test of {image} failed")]
    SmokeTest { image: String, report: Report },
}

impl PipelineError {
    fn step(step: &'static str) -> impl FnOnce(Error) -> PipelineError {
        move |error| PipelineError::Step { step, error }
    }
}

/// Builds, smoke-tests and publishes one new image of `req.family`, then prunes.
pub async fn build_and_publish(
    platform: &dyn Platform,
    req: BuildRequest<'_>,
    cx: &Cx,
) -> Result<BuildOutcome, PipelineError> {
    let span = tracing::info_span!("pipeline", platform = platform.kind(), family = %req.family);
    let result = run_steps(platform, &req, cx).instrument(span.clone()).await;
    cleanup(platform, cx).instrument(span).await;
    result
}

async fn run_steps(platform: &dyn Platform, req: &BuildRequest<'_>, cx: &Cx) -> Result<BuildOutcome, PipelineError> {
    platform.sweep().await.map_err(PipelineError::step("sweep"))?;

    let candidate = reserve_candidate(platform, req, cx).await.map_err(PipelineError::step("reserve"))?;
    let name = candidate.name().to_string();
    let discard = UndoAction::DiscardCandidate { family: req.family.to_string(), name: name.clone() };

    let built = platform
        .build(&candidate, req.recipe, cx)
        .instrument(tracing::info_span!("build", image = %name))
        .await
        .map_err(PipelineError::step("build"))?;
    info!(image = %name, "build finished");

    let report = platform
        .smoke_test(&built, &req.recipe.smoke_test, cx)
        .instrument(tracing::info_span!("smoke_test", image = %name))
        .await
        .map_err(PipelineError::step("smoke test"))?;

    if !report.passed() {
        warn!(image = %name, "smoke test failed; marking the candidate failed");
        platform.mark_failed(&built, &report).await.map_err(PipelineError::step("mark failed"))?;
        cx.forget(&discard);
        return Err(PipelineError::SmokeTest { image: name, report });
    }

    // Past this point the image is a good one: nothing may remove it.
    cx.check("publish").map_err(PipelineError::step("publish"))?;
    let published = platform
        .publish(&built, &report)
        .instrument(tracing::info_span!("publish", image = %name))
        .await
        .map_err(PipelineError::step("publish"))?;
    cx.forget(&discard);
    info!(image = %name, "published");

    let prune = prune(platform, req.family, req.planned_prune).await;
    Ok(BuildOutcome { image: published, report, prune })
}

/// Allocates the next build number and claims it. Two applies racing for the
/// same number both compute it, one wins the create-if-absent, the other moves
/// on to the next number.
async fn reserve_candidate(platform: &dyn Platform, req: &BuildRequest<'_>, cx: &Cx) -> Result<Image, Error> {
    let mut floor = 1u16;
    for _ in 0..50 {
        cx.check("reserve")?;
        let existing = platform.list_images(req.family).await?;
        let names: Vec<&ImageName> = existing.iter().map(|i| i.name()).collect();
        let next = next_build_number(names, req.date)
            .map_err(|e| Error::other("allocating a build number", e.into()))?
            .max(floor);
        let meta = Metadata {
            name: ImageName::new(req.family.clone(), req.date, next),
            builder_version: BUILDER_VERSION.to_owned(),
            recipe_hash: req.recipe.hash(),
            status: Status::Candidate,
            validated_at: None,
            tags: req.tags.clone(),
        };
        match platform.reserve(&meta, cx).await {
            Ok(image) => {
                cx.record(UndoAction::DiscardCandidate { family: req.family.to_string(), name: meta.name.to_string() });
                info!(image = %meta.name, "reserved candidate");
                return Ok(image);
            }
            Err(e) if e.is_already_exists() => {
                info!(image = %meta.name, "name taken by a concurrent build; trying the next number");
                floor = next + 1;
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::other("reserve", anyhow::anyhow!("could not claim a build number after 50 attempts")))
}

/// Deletes the planned names that are still safe to delete (see
/// `retention::still_deletable`). Runs only after publish, or on its own when
/// an apply changes nothing but retention.
pub async fn prune(platform: &dyn Platform, family: &Family, planned: &[String]) -> PruneOutcome {
    let mut outcome = PruneOutcome::default();
    if planned.is_empty() {
        return outcome;
    }
    let images = match platform.list_images(family).await {
        Ok(v) => v,
        Err(e) => {
            outcome.skipped = planned.iter().map(|n| (n.clone(), format!("listing failed: {e}"))).collect();
            return outcome;
        }
    };
    let deletable = still_deletable(planned, &images);
    for name in planned {
        let Some(image) = deletable.iter().find(|i| i.name().to_string() == *name) else {
            let why = if images.iter().any(|i| i.name().to_string() == *name) {
                "no longer safe to delete (newest validated, in progress or protected)"
            } else {
                "already gone"
            };
            if why != "already gone" {
                outcome.skipped.push((name.clone(), why.into()));
            }
            continue;
        };
        let span = tracing::info_span!("prune", image = %name);
        match platform.delete(image).instrument(span).await {
            Ok(()) => {
                info!(image = %name, "pruned");
                outcome.deleted.push(name.clone());
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => outcome.skipped.push((name.clone(), e.to_string())),
        }
    }
    outcome
}

/// Drains the ledger newest first with a fresh cancellation token and its own
/// deadline. Actions that fail stay in the persisted ledger for the next sweep.
pub async fn cleanup(platform: &dyn Platform, cx: &Cx) {
    let clean = cx.for_cleanup(CLEANUP_TIMEOUT);
    let actions = clean.with_ledger(|l| l.drain_reverse());
    let mut failed = Vec::new();
    for action in actions {
        let r = clean.run("cleanup", async { platform.undo(&action).await.map_err(anyhow::Error::from) }).await;
        if let Err(e) = r {
            warn!(?action, error = %e, "cleanup step failed; the next run's sweep will retry it");
            failed.push(action);
        }
    }
    clean.with_ledger(|l| {
        l.restore(failed);
        l.close();
    });
}
