//! Reading the family back from the platform into state: after every write and
//! on refresh, state describes what the platform holds, not what we meant to do.

use tf_provider::value::Value;

use super::state::{CheckEntry, ImageState, PackagesChanged, Validation};
use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::packages::PackageChanges;
use crate::lifecycle::report::Report;
use crate::lifecycle::selection::{latest, newest_first};
use crate::platforms::{Platform, Result};
use crate::resources::values::{to_value_list, ImageEntry};

pub fn validation(r: &Report) -> Validation {
    Validation {
        passed: Value::Value(r.passed()),
        checks: Value::Value(
            r.checks
                .iter()
                .map(|c| CheckEntry {
                    name: Value::Value(c.name.clone()),
                    ok: Value::Value(c.ok),
                    duration_ms: Value::Value(c.duration_ms as i64),
                    detail: Value::Value(c.detail.clone()),
                })
                .collect(),
        ),
        console_tail: Value::Value(r.console_tail.clone()),
        duration_ms: Value::Value(r.duration_ms as i64),
        finished_at: Value::Value(r.finished_at.clone()),
    }
}

fn packages_changed(c: &PackageChanges) -> PackagesChanged {
    PackagesChanged {
        since: Value::Value(c.since.clone()),
        added: to_value_list(&c.added),
        removed: to_value_list(&c.removed),
        upgraded: to_value_list(&c.upgraded),
    }
}

/// Fills the computed attributes from the family's images. The current image is
/// the newest validated one; with none, `validated` is false and the next plan
/// rebuilds.
///
/// `known` is a report the caller holds (a build's own); it fills
/// `validation` for the image it names when the platform keeps none.
pub async fn fill(
    state: &mut ImageState,
    platform: &dyn Platform,
    images: &[Image],
    known: Option<&Report>,
    cx: &Cx,
) -> Result<()> {
    let prior_name = state.name.as_ref_option().cloned();
    let prior_validation = state.validation.clone();
    let prior_packages = state.packages_changed.clone();
    state.images = Value::Value(
        newest_first(images)
            .into_iter()
            .map(ImageEntry::from_image)
            .collect(),
    );
    match latest(images, true) {
        Some(current) => {
            state.name = Value::Value(current.name().to_string());
            state.image_id = Value::Value(current.id.clone());
            state.build_date = Value::Value(current.name().date.to_string());
            state.build_number = Value::Value(i64::from(current.name().build));
            state.recipe_hash = Value::Value(current.meta.recipe_hash.clone());
            state.validated = Value::Value(true);
            match platform.report(current, cx).await? {
                Some(report) => {
                    state.validation = Value::Value(validation(&report));
                    state.packages_changed = report
                        .packages_changed
                        .map(|c| Value::Value(packages_changed(&c)))
                        .unwrap_or(Value::Null);
                }
                // A platform that keeps no report (DigitalOcean: snapshots
                // take no description): state is where it lives. It stays
                // while the current image is the one it was made for, and
                // a build's own report is the one it just made.
                None => match known.filter(|r| r.image == current.name().to_string()) {
                    Some(report) => {
                        state.validation = Value::Value(validation(report));
                        state.packages_changed = report
                            .packages_changed
                            .as_ref()
                            .map(|c| Value::Value(packages_changed(c)))
                            .unwrap_or(Value::Null);
                    }
                    None if prior_name.as_deref() == Some(&current.name().to_string()) => {
                        state.validation = prior_validation;
                        state.packages_changed = prior_packages;
                    }
                    None => {
                        state.validation = Value::Null;
                        state.packages_changed = Value::Null;
                    }
                },
            }
        }
        None => {
            state.name = Value::Null;
            state.image_id = Value::Null;
            state.build_date = Value::Null;
            state.build_number = Value::Null;
            state.validated = Value::Value(false);
            state.validation = Value::Null;
            state.packages_changed = Value::Null;
        }
    }
    Ok(())
}
