//! Data sources: `golden_latest_image` (one image) and `golden_images` (a list).

pub mod images;
pub mod latest_image;

use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

use crate::lifecycle::naming::Family;
use crate::platforms::registry;

/// Checks `platform` and `family`; `None` (with a diagnostic) when invalid,
/// `Some(None)` when not yet known.
pub(crate) fn lookup_target(
    platform: &Value<String>,
    family: &Value<String>,
    diags: &mut Diagnostics,
) -> Option<Option<(String, Family)>> {
    let mut ok = true;
    if let Value::Value(p) = platform {
        if registry::find(p).is_none() {
            diags.error(
                "Unsupported Platform",
                format!(
                    "platform {p:?} is not supported; supported: {}",
                    registry::names()
                ),
                AttributePath::new("platform"),
            );
            ok = false;
        }
    }
    let mut fam = None;
    if let Value::Value(f) = family {
        let rules = registry::naming_rules(platform.as_ref_option().map(String::as_str));
        match Family::parse(f, rules) {
            Ok(f) => fam = Some(f),
            Err(e) => {
                diags.error(
                    "Invalid Family Name",
                    format!("family {f:?} {e}"),
                    AttributePath::new("family"),
                );
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    match (platform, fam) {
        (Value::Value(p), Some(f)) => Some(Some((p.clone(), f))),
        _ => Some(None),
    }
}
