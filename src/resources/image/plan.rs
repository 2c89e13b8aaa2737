//! Refresh and plan. The plan decides whether apply builds (recipe, triggers,
//! `rebuild_after`, or no validated image) and computes `prune`, so every
//! deletion is visible in `terraform plan` before it happens.

use std::sync::Arc;

use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

use super::config::{desired, Desired};
use super::listing;
use super::state::ImageState;
use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::naming::Family;
use crate::lifecycle::retention::{plan_prune, KeepReason, PruneDecision};
use crate::lifecycle::selection::latest;
use crate::platforms::registry::{self, SourceFields};
use crate::platforms::Platform;
use crate::provider::{Shared, LOOKUP_TIMEOUT};
use crate::resources::values::{to_value_list, to_value_map, ImageEntry};

async fn list(
    platform: &dyn Platform,
    family: &Family,
    diags: &mut Diagnostics,
    cx: &Cx,
) -> Option<Vec<Image>> {
    match platform.list_images(family, cx).await {
        Ok(v) => Some(v),
        Err(e) => {
            diags.root_error(
                format!("Unable to List Images of Family {family}"),
                e.to_string(),
            );
            None
        }
    }
}

pub async fn read(
    shared: &Arc<Shared>,
    diags: &mut Diagnostics,
    mut state: ImageState,
) -> Option<ImageState> {
    let (Value::Value(kind), Value::Value(family)) = (&state.platform, &state.family) else {
        return Some(state);
    };
    let Ok(family) = Family::try_from(family.clone()) else {
        return Some(state);
    };
    let platform = shared.platform(kind, diags, AttributePath::new("platform"))?;
    let cx = shared.call_cx(LOOKUP_TIMEOUT);
    let images = list(platform.as_ref(), &family, diags, &cx).await?;
    if let Err(e) = listing::fill(&mut state, platform.as_ref(), &images, None, &cx).await {
        diags.root_error(
            format!("Unable to Read Image Family {family}"),
            e.to_string(),
        );
        return None;
    }
    // `prune` is what an apply deletes; nothing is pending after a refresh.
    // A family grown past `keep` out of band shows up in the next plan instead.
    state.prune = Value::Value(Vec::new());
    state.prune_reasons = Value::Value(Default::default());
    Some(state)
}

pub async fn plan_create(
    shared: &Arc<Shared>,
    diags: &mut Diagnostics,
    proposed: ImageState,
    config: ImageState,
) -> Option<ImageState> {
    let d = desired(&config, diags).ok()?;
    let mut planned = proposed;
    planned.unknown_build_outputs();
    planned.prune = Value::Unknown;
    planned.prune_reasons = Value::Unknown;
    planned.recipe_hash = Value::Unknown;
    planned.id = Value::Unknown;
    let Some(d) = d else { return Some(planned) };
    check_source(&d, diags).await?;
    planned.id = Value::Value(format!("{}/{}", d.platform, d.family));
    if let Some(hash) = &d.recipe_hash {
        planned.recipe_hash = Value::Value(hash.clone());
    }
    if let (Some(images), Some(policy)) =
        (listing_if_configured(shared, &d, diags).await?, d.retention)
    {
        let decision = plan_prune(&images, policy, true, time::OffsetDateTime::now_utc());
        warn_protected(&decision, diags);
        planned.prune = to_value_list(&decision.delete_names());
        planned.prune_reasons = to_value_map(&decision.reasons());
    }
    Some(planned)
}

/// A plan that builds checks its source on this machine first (the
/// platform's `check_source`): a missing `source.path` fails here, naming the
/// attribute, not minutes into the apply. `None` after reporting a problem.
async fn check_source(d: &Desired, diags: &mut Diagnostics) -> Option<()> {
    let (Some(spec), Some(recipe)) = (registry::find(&d.platform), &d.recipe) else {
        return Some(());
    };
    let source = recipe.source.clone();
    let check = spec.check_source;
    // It may run qemu-img: off the async workers.
    let outcome = tokio::task::spawn_blocking(move || check(&source))
        .await
        .unwrap_or(Ok(()));
    match outcome {
        Ok(()) => Some(()),
        Err(p) => {
            diags.error(p.summary, p.detail, SourceFields::path(p.attribute));
            None
        }
    }
}

/// Images retention would delete but the platform protects show up in the
/// plan as a warning that names each one and why it stays.
fn warn_protected(decision: &PruneDecision, diags: &mut Diagnostics) {
    for (name, why) in &decision.kept {
        tracing::debug!(image = %name, reason = ?why, "plan: kept");
        if let KeepReason::Protected(reason) = why {
            diags.warning(
                format!("Image {name} Kept"),
                format!("retention would delete {name}, but it stays: {reason}. It is pruned by a later apply once that no longer holds."),
                AttributePath::new("prune"),
            );
        }
    }
}

/// `Some(None)` when the provider is not configured yet (its config depends on
/// values known only at apply); `None` on error.
async fn listing_if_configured(
    shared: &Arc<Shared>,
    d: &Desired,
    diags: &mut Diagnostics,
) -> Option<Option<Vec<Image>>> {
    if !shared.is_configured() {
        return Some(None);
    }
    let platform = shared.platform(&d.platform, diags, AttributePath::new("platform"))?;
    let cx = shared.call_cx(LOOKUP_TIMEOUT);
    list(platform.as_ref(), &d.family, diags, &cx)
        .await
        .map(Some)
}

/// Why a plan rebuilds, for the log; empty when it does not.
fn rebuild_reasons(
    prior: &ImageState,
    config: &ImageState,
    d: &Desired,
    images: Option<&[Image]>,
) -> Vec<String> {
    let mut why = Vec::new();
    match &d.recipe_hash {
        None => why.push("part of the recipe is known only after apply".to_owned()),
        Some(hash) => {
            if prior.recipe_hash.as_ref_option() != Some(hash) {
                why.push(format!(
                    "recipe changed ({} -> {hash})",
                    prior
                        .recipe_hash
                        .as_ref_option()
                        .map(String::as_str)
                        .unwrap_or("none"),
                ));
            }
        }
    }
    if config.triggers.is_unknown()
        || (config.triggers != prior.triggers
            && !(config.triggers.is_null() && is_empty_map(&prior.triggers)))
    {
        why.push("triggers changed".to_owned());
    }
    if prior.validated.as_ref_option() != Some(&true) || prior.name.is_null() {
        why.push("the family has no validated image".to_owned());
    }
    if let (Some(max_age), Some(images)) = (d.rebuild_after, images) {
        if let Some(current) = latest(images, true) {
            let age = time::OffsetDateTime::now_utc() - current.built_at();
            if age.whole_seconds() >= max_age.as_secs() as i64 {
                why.push(format!("{} is older than rebuild_after", current.name()));
            }
        }
    }
    why
}

fn is_empty_map<T>(v: &Value<std::collections::BTreeMap<String, T>>) -> bool {
    match v {
        Value::Null => true,
        Value::Value(m) => m.is_empty(),
        Value::Unknown => false,
    }
}

pub async fn plan_update(
    shared: &Arc<Shared>,
    diags: &mut Diagnostics,
    prior: ImageState,
    proposed: ImageState,
    config: ImageState,
) -> Option<ImageState> {
    let d = desired(&config, diags).ok()?;
    let mut planned = proposed;
    let Some(d) = d else {
        planned.unknown_build_outputs();
        planned.prune = Value::Unknown;
        planned.prune_reasons = Value::Unknown;
        return Some(planned);
    };
    planned.id = Value::Value(format!("{}/{}", d.platform, d.family));
    let images = listing_if_configured(shared, &d, diags).await?;
    let reasons = rebuild_reasons(&prior, &config, &d, images.as_deref());
    let rebuild = !reasons.is_empty();
    if rebuild {
        tracing::info!(family = %d.family, reasons = ?reasons, "plan: rebuild");
        check_source(&d, diags).await?;
        planned.unknown_build_outputs();
        planned.recipe_hash = d
            .recipe_hash
            .clone()
            .map(Value::Value)
            .unwrap_or(Value::Unknown);
    } else {
        planned.copy_current_from(&prior);
        planned.recipe_hash = prior.recipe_hash.clone();
    }
    planned.prune_reasons = Value::Unknown;
    planned.prune = match (&images, d.retention) {
        (None, _) | (_, None) => Value::Unknown,
        (Some(images), Some(policy)) => {
            let decision = plan_prune(images, policy, rebuild, time::OffsetDateTime::now_utc());
            warn_protected(&decision, diags);
            planned.prune_reasons = to_value_map(&decision.reasons());
            let names = decision.delete_names();
            if !rebuild && !names.is_empty() {
                if let Value::Value(entries) = &prior.images {
                    let left: Vec<ImageEntry> = entries
                        .iter()
                        .filter(|e| {
                            !e.name
                                .as_ref_option()
                                .map(|n| names.contains(n))
                                .unwrap_or(false)
                        })
                        .cloned()
                        .collect();
                    planned.images = Value::Value(left);
                }
            }
            to_value_list(&names)
        }
    };
    Some(planned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::metadata::{Metadata, Status};
    use crate::lifecycle::naming::{BuildDate, ImageName, NamingRules};
    use crate::lifecycle::recipe::{Provision, Recipe, SmokeSpec, Source};
    use crate::lifecycle::retention::RetentionPolicy;
    use crate::resources::image::config::{OnDestroy, Timeouts};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn recipe() -> Recipe {
        Recipe {
            source: Source::Path("/base.qcow2".into()),
            provision: Provision::default(),
            smoke_test: SmokeSpec::default(),
        }
    }

    fn desired(rebuild_after: Option<Duration>) -> Desired {
        Desired {
            platform: "test-platform".into(),
            family: Family::parse("fam", NamingRules { allow_dot: true }).unwrap(),
            recipe: Some(recipe()),
            recipe_hash: Some(recipe().hash().unwrap()),
            tags: Some(BTreeMap::new()),
            retention: Some(RetentionPolicy::keep(3)),
            rebuild_after,
            triggers: Some(BTreeMap::new()),
            on_destroy: OnDestroy::Keep,
            timeouts: Timeouts {
                create: Duration::from_secs(1),
                update: Duration::from_secs(1),
                delete: Duration::from_secs(1),
            },
        }
    }

    fn prior() -> ImageState {
        ImageState {
            recipe_hash: Value::Value(recipe().hash().unwrap()),
            validated: Value::Value(true),
            name: Value::Value("fam-20260101-001".into()),
            ..Default::default()
        }
    }

    fn image(validated_at: &str) -> Image {
        let family = Family::parse("fam", NamingRules { allow_dot: true }).unwrap();
        Image {
            meta: Metadata {
                name: ImageName::new(family, BuildDate::parse("20260101").unwrap(), 1),
                builder_version: "0".into(),
                recipe_hash: recipe().hash().unwrap(),
                status: Status::Validated,
                validated_at: Some(validated_at.into()),
                tags: BTreeMap::new(),
            },
            id: "x".into(),
            size_bytes: None,
            in_progress: false,
            protected: None,
        }
    }

    fn now_minus(secs: i64) -> String {
        (time::OffsetDateTime::now_utc() - time::Duration::seconds(secs))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    }

    #[test]
    fn unchanged_recipe_does_not_rebuild() {
        let config = ImageState::default();
        assert!(rebuild_reasons(
            &prior(),
            &config,
            &desired(None),
            Some(&[image(&now_minus(10))])
        )
        .is_empty());
    }

    #[test]
    fn recipe_change_rebuilds() {
        let mut p = prior();
        p.recipe_hash = Value::Value("0000000000000000".into());
        let why = rebuild_reasons(&p, &ImageState::default(), &desired(None), None);
        assert!(why[0].starts_with("recipe changed"), "{why:?}");
    }

    #[test]
    fn trigger_change_rebuilds_and_null_equals_empty() {
        let config = ImageState {
            triggers: Value::Value(BTreeMap::from([(
                "v".to_owned(),
                Value::Value("2".to_owned()),
            )])),
            ..Default::default()
        };
        assert_eq!(
            rebuild_reasons(&prior(), &config, &desired(None), None),
            ["triggers changed"]
        );
        let mut p = prior();
        p.triggers = Value::Value(BTreeMap::new());
        assert!(rebuild_reasons(&p, &ImageState::default(), &desired(None), None).is_empty());
    }

    #[test]
    fn no_validated_image_rebuilds() {
        let mut p = prior();
        p.validated = Value::Value(false);
        p.name = Value::Null;
        assert_eq!(
            rebuild_reasons(&p, &ImageState::default(), &desired(None), None),
            ["the family has no validated image"]
        );
    }

    #[test]
    fn rebuild_after_expires_on_the_newest_validated_image() {
        let d = desired(Some(Duration::from_secs(3600)));
        let fresh = [image(&now_minus(60))];
        let stale = [image(&now_minus(7200))];
        assert!(rebuild_reasons(&prior(), &ImageState::default(), &d, Some(&fresh)).is_empty());
        let why = rebuild_reasons(&prior(), &ImageState::default(), &d, Some(&stale));
        assert!(why[0].contains("older than rebuild_after"), "{why:?}");
    }

    #[test]
    fn unknown_recipe_rebuilds() {
        let mut d = desired(None);
        d.recipe = None;
        d.recipe_hash = None;
        assert!(!rebuild_reasons(&prior(), &ImageState::default(), &d, None).is_empty());
    }
}
