//! `terraform import golden_image.x <platform>/<family>`: adopts an existing
//! family. The ID splits on the first `/`; both parts are checked.

use std::sync::Arc;

use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

use super::listing;
use super::state::ImageState;
use crate::lifecycle::naming::Family;
use crate::platforms::registry;
use crate::provider::Shared;

pub async fn import(
    shared: &Arc<Shared>,
    diags: &mut Diagnostics,
    id: String,
) -> Option<ImageState> {
    let Some((kind, family)) = id.split_once('/') else {
        diags.root_error(
            "Invalid Import ID",
            format!(
                "{id:?} is not <platform>/<family>, e.g. {}/debian-12-minimal",
                registry::PLATFORMS[0].name
            ),
        );
        return None;
    };
    let Some(spec) = registry::find(kind) else {
        diags.root_error(
            "Invalid Import ID",
            format!("platform {kind:?} is not one of {}", registry::names()),
        );
        return None;
    };
    let family = match Family::parse(family, spec.naming) {
        Ok(f) => f,
        Err(e) => {
            diags.root_error("Invalid Import ID", format!("family {family:?} {e}"));
            return None;
        }
    };
    let platform = shared.platform(kind, diags, AttributePath::root())?;
    let cx = shared.call_cx(crate::provider::LOOKUP_TIMEOUT);
    let images = match platform.list_images(&family, &cx).await {
        Ok(v) => v,
        Err(e) => {
            diags.root_error(
                format!("Unable to Import Image Family {family}"),
                e.to_string(),
            );
            return None;
        }
    };
    if images.is_empty() {
        diags.root_error(
            "Image Family Not Found",
            format!("no image golden built for family \"{family}\" exists on platform {kind:?}"),
        );
        return None;
    }
    let mut state = ImageState {
        id: Value::Value(format!("{kind}/{family}")),
        platform: Value::Value(kind.to_owned()),
        family: Value::Value(family.to_string()),
        prune: Value::Value(Vec::new()),
        prune_reasons: Value::Value(Default::default()),
        ..Default::default()
    };
    // Tags come from the current image, so a config with the same tags plans no re-tag.
    if let Some(current) = crate::lifecycle::selection::latest(&images, true) {
        if !current.meta.tags.is_empty() {
            state.tags = crate::resources::values::to_value_map(&current.meta.tags);
        }
    }
    if let Err(e) = listing::fill(&mut state, platform.as_ref(), &images, None, &cx).await {
        diags.root_error(
            format!("Unable to Import Image Family {family}"),
            e.to_string(),
        );
        return None;
    }
    Some(state)
}
