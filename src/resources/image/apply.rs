//! Apply: create and update run the pipeline (or only re-tag and prune),
//! destroy honours `on_destroy`. State is always read back from the platform.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

use super::config::{desired, Desired, OnDestroy};
use super::listing;
use super::state::ImageState;
use crate::lifecycle::context::Cx;
use crate::lifecycle::naming::BuildDate;
use crate::lifecycle::pipeline::{self, BuildRequest, PipelineError, PruneOutcome};
use crate::lifecycle::retention::plan_prune;
use crate::platforms::Platform;
use crate::provider::Shared;
use crate::resources::values::{string_list, string_map, to_value_list, to_value_map, Known};

/// The images an apply prunes, and why each goes.
struct PruneList {
    names: Vec<String>,
    reasons: BTreeMap<String, String>,
}

impl PruneList {
    /// The state's `prune` and `prune_reasons`.
    fn into_state(self, state: ImageState) -> ImageState {
        ImageState {
            prune: to_value_list(&self.names),
            prune_reasons: to_value_map(&self.reasons),
            ..state
        }
    }
}

/// What this apply prunes: the plan's list, or, when the plan could not know
/// it (retention or the provider config known only at apply), the list the
/// same rules give now, before the build (`incoming` counts the new image).
async fn prune_list(
    platform: &dyn Platform,
    d: &Desired,
    planned: &ImageState,
    incoming: bool,
    diags: &mut Diagnostics,
    cx: &Cx,
) -> Option<PruneList> {
    if let Known::Yes(names) = string_list(&planned.prune) {
        let reasons = match string_map(&planned.prune_reasons) {
            Known::Yes(r) => r,
            _ => BTreeMap::new(),
        };
        return Some(PruneList { names, reasons });
    }
    let policy = d.retention?;
    match platform.list_images(&d.family, cx).await {
        Ok(images) => {
            let decision = plan_prune(&images, policy, incoming, time::OffsetDateTime::now_utc());
            Some(PruneList {
                names: decision.delete_names(),
                reasons: decision.reasons(),
            })
        }
        Err(e) => {
            diags.root_error(
                format!("Unable to List Images of Family {}", d.family),
                e.to_string(),
            );
            None
        }
    }
}

/// The config is fully known at apply time; anything else is a bug upstream.
fn require_desired(config: &ImageState, diags: &mut Diagnostics) -> Option<Desired> {
    match desired(config, diags) {
        Ok(Some(d)) if d.recipe.is_some() => Some(d),
        Ok(_) => {
            diags.root_error_short(
                "Unable to Build Image: the configuration still has unknown values at apply time",
            );
            None
        }
        Err(_) => None,
    }
}

fn warn_skipped(diags: &mut Diagnostics, prune: &PruneOutcome) {
    for (name, why) in &prune.skipped {
        diags.root_warning(format!("Unable to Prune Image {name}"), why.clone());
    }
}

async fn read_back(
    platform: &dyn Platform,
    d: &Desired,
    mut state: ImageState,
    known: Option<&crate::lifecycle::report::Report>,
    diags: &mut Diagnostics,
    cx: &Cx,
) -> Option<ImageState> {
    let images = match platform.list_images(&d.family, cx).await {
        Ok(v) => v,
        Err(e) => {
            diags.root_error(
                format!("Unable to Read Image Family {}", d.family),
                e.to_string(),
            );
            return None;
        }
    };
    if let Err(e) = listing::fill(&mut state, platform, &images, known, cx).await {
        diags.root_error(
            format!("Unable to Read Image Family {}", d.family),
            e.to_string(),
        );
        return None;
    }
    Some(state)
}

fn report_pipeline_error(diags: &mut Diagnostics, family: &str, err: PipelineError) {
    match err {
        PipelineError::SmokeTest { image, report } => diags.root_error(
            format!("Unable to Smoke-Test Image {image}"),
            format!(
                "The new image failed its smoke test. It is marked failed, stays out of every validated lookup, \
                 and nothing else was deleted.\n\n{}",
                report.summary()
            ),
        ),
        PipelineError::Step { step, error } if error.is_cancelled() => diags.root_error(
            format!("Unable to Build Image of Family {family}: cancelled"),
            format!("The {step} step was interrupted; everything it created has been removed. {error}"),
        ),
        PipelineError::Step { step, error } if error.is_timeout() => diags.root_error(
            format!("Unable to Build Image of Family {family}: timed out"),
            format!("{error}\nRaise the timeouts block's create/update value if the build needs longer. Everything the {step} step created has been removed."),
        ),
        PipelineError::Step { step, error } => diags.root_error(
            format!("Unable to Build Image of Family {family} ({step})"),
            format!("{error}\nEverything this run created has been removed."),
        ),
    }
}

/// Runs the pipeline; on success returns the read-back state.
async fn build(
    shared: &Shared,
    diags: &mut Diagnostics,
    d: &Desired,
    planned: ImageState,
    timeout: Duration,
) -> Option<ImageState> {
    let platform = shared.platform(&d.platform, diags, AttributePath::new("platform"))?;
    let recipe = d.recipe.as_ref()?;
    let tags = d.tags.clone().unwrap_or_default();
    let recipe_hash = d.recipe_hash.as_deref()?;
    let cx = pipeline::build_context(
        platform.as_ref(),
        &shared.state_dir,
        shared.cancel.child_token(),
        timeout,
    );
    let prune = prune_list(platform.as_ref(), d, &planned, true, diags, &cx).await?;
    let _running = shared.begin_run();
    let req = BuildRequest {
        family: &d.family,
        recipe,
        recipe_hash,
        tags: &tags,
        planned_prune: &prune.names,
        date: BuildDate::today(),
    };
    match pipeline::build_and_publish(platform.as_ref(), req, &cx).await {
        Ok(outcome) => {
            warn_skipped(diags, &outcome.prune);
            let state = read_back(
                platform.as_ref(),
                d,
                planned,
                Some(&outcome.report),
                diags,
                &cx,
            )
            .await?;
            Some(prune.into_state(state))
        }
        Err(e) => {
            report_pipeline_error(diags, d.family.as_str(), e);
            None
        }
    }
}

pub async fn create(
    shared: &Arc<Shared>,
    diags: &mut Diagnostics,
    planned: ImageState,
    config: ImageState,
) -> Option<ImageState> {
    let d = require_desired(&config, diags)?;
    build(shared, diags, &d, planned, d.timeouts.create).await
}

pub async fn update(
    shared: &Arc<Shared>,
    diags: &mut Diagnostics,
    prior: ImageState,
    planned: ImageState,
    config: ImageState,
) -> Option<ImageState> {
    let d = require_desired(&config, diags)?;
    if planned.name.is_unknown() {
        // A failed rebuild keeps the prior state: the old image is still current.
        return match build(shared, diags, &d, planned, d.timeouts.update).await {
            Some(s) => Some(s),
            None => Some(prior),
        };
    }
    let platform = shared.platform(&d.platform, diags, AttributePath::new("platform"))?;
    let cx = shared.call_cx(d.timeouts.update);
    if let (Known::Yes(new), Known::Yes(old)) = (string_map(&planned.tags), string_map(&prior.tags))
    {
        if new != old {
            retag(platform.as_ref(), &d, &new, diags, &cx).await;
        }
    }
    let Some(prune) = prune_list(platform.as_ref(), &d, &planned, false, diags, &cx).await else {
        return Some(prior);
    };
    let outcome = pipeline::prune(platform.as_ref(), &d.family, &prune.names, &cx).await;
    warn_skipped(diags, &outcome);
    let state = read_back(platform.as_ref(), &d, planned, None, diags, &cx).await?;
    Some(prune.into_state(state))
}

async fn retag(
    platform: &dyn Platform,
    d: &Desired,
    tags: &std::collections::BTreeMap<String, String>,
    diags: &mut Diagnostics,
    cx: &Cx,
) {
    let images = match platform.list_images(&d.family, cx).await {
        Ok(v) => v,
        Err(e) => {
            diags.root_error(
                format!("Unable to Re-Tag Images of Family {}", d.family),
                e.to_string(),
            );
            return;
        }
    };
    for image in images.iter().filter(|i| !i.in_progress) {
        if let Err(e) = platform.retag(image, tags, cx).await {
            diags.root_error(
                format!("Unable to Re-Tag Image {}", image.name()),
                e.to_string(),
            );
        }
    }
}

pub async fn destroy(
    shared: &Arc<Shared>,
    diags: &mut Diagnostics,
    prior: ImageState,
) -> Option<()> {
    let on_destroy = match prior.on_destroy.as_ref_option().map(String::as_str) {
        Some("delete") => OnDestroy::Delete,
        _ => OnDestroy::Keep,
    };
    if on_destroy == OnDestroy::Keep {
        tracing::info!("destroy: on_destroy = keep, images stay in place");
        return Some(());
    }
    let (Value::Value(kind), Value::Value(family)) = (&prior.platform, &prior.family) else {
        return Some(());
    };
    let Ok(family) = crate::lifecycle::naming::Family::try_from(family.clone()) else {
        return Some(());
    };
    let platform = shared.platform(kind, diags, AttributePath::new("platform"))?;
    let mut scratch = Diagnostics::default();
    let timeout = match desired(&prior, &mut scratch) {
        Ok(Some(d)) => d.timeouts.delete,
        _ => super::config::DEFAULT_DELETE_TIMEOUT,
    };
    let cx = shared.call_cx(timeout);
    let images = match platform.list_images(&family, &cx).await {
        Ok(v) => v,
        Err(e) => {
            diags.root_error(
                format!("Unable to Delete Images of Family {family}"),
                e.to_string(),
            );
            return None;
        }
    };
    let mut failed = false;
    for image in images.iter().filter(|i| !i.in_progress) {
        if cx.check("delete").is_err() {
            diags.root_error_short(format!(
                "Unable to Delete Images of Family {family}: cancelled or timed out (timeouts.delete)"
            ));
            return None;
        }
        if let Some(why) = &image.protected {
            // The platform protects it (VMs still use it, or a person set a
            // protection flag): golden never forces it. The others still go;
            // destroy fails so the state keeps owning the family until this
            // one can go too.
            failed = true;
            diags.root_error(
                format!("Unable to Delete Image {}", image.name()),
                format!("golden leaves it in place: {why}. Resolve that, then run destroy again."),
            );
            continue;
        }
        let deleted = cx
            .run("delete", async {
                platform
                    .delete(image, &cx)
                    .await
                    .map_err(anyhow::Error::from)
            })
            .await;
        match deleted {
            Err(e) if e.is_timeout() || e.is_cancelled() => {
                diags.root_error_short(format!(
                    "Unable to Delete Image {}: cancelled or timed out (timeouts.delete)",
                    image.name()
                ));
                return None;
            }
            Ok(()) => tracing::info!(image = %image.name(), "deleted (on_destroy = delete)"),
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                failed = true;
                diags.root_error(
                    format!("Unable to Delete Image {}", image.name()),
                    e.to_string(),
                );
            }
        }
    }
    if failed {
        None
    } else {
        Some(())
    }
}
