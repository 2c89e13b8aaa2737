//! How the local platform describes itself to the registry: its provider
//! block (`local { store_dir, accelerator }`, optional: it works without one)
//! and its `source` attributes (`path`, `url` + `checksum`, `family`).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use tf_provider::schema::{AttributeConstraint as C, AttributeType as T, Block};
use tf_provider::value::{Value, ValueAny};
use tf_provider::{AttributePath, Diagnostics};

use super::LocalPlatform;
use crate::lifecycle::naming::NamingRules;
use crate::lifecycle::recipe::Source;
use crate::platforms::registry::{self, Configured, PlatformSpec, SourceFields, SourceProblem};
use crate::qemu::accel::{self, AccelChoice};
use crate::tfschema::{attr, block};

pub const SPEC: PlatformSpec = PlatformSpec {
    name: "local",
    naming: NamingRules { allow_dot: true },
    provider_block,
    validate_block,
    configure,
    source_attributes,
    parse_source,
    check_source,
    // Metadata lives in a JSON sidecar and user-data on a seed ISO: no limit
    // of the platform's own to check.
    check_recipe: registry::recipe_needs_no_check,
};

#[derive(Debug, Clone, Default, Deserialize)]
struct LocalBlock {
    #[serde(default)]
    store_dir: Value<String>,
    #[serde(default)]
    accelerator: Value<String>,
}

fn provider_block() -> Block {
    block(
        vec![
            ("store_dir", attr(T::String, C::Optional, "Where images live: `<store_dir>/<family>/<name>.qcow2` plus a JSON sidecar. Default `$XDG_DATA_HOME/golden` (`~/.local/share/golden`).")),
            ("accelerator", attr(T::String, C::Optional, "`auto` (default), `kvm` or `tcg`. `auto` uses KVM only when it really works (CPU virtualization flags and a VM can be created), else TCG.")),
        ],
        "The local platform: QEMU on this machine. Works without this block, with defaults.",
    )
}

fn at(name: &'static str) -> AttributePath {
    AttributePath::new(SPEC.name).index(0).attribute(name)
}

fn decode(raw: Option<&ValueAny>, diags: &mut Diagnostics) -> Option<LocalBlock> {
    let Some(raw) = raw else {
        return Some(LocalBlock::default());
    };
    match registry::decode_block(raw) {
        Ok(b) => Some(b),
        Err(e) => {
            diags.error(
                "Invalid local Block",
                e,
                AttributePath::new(SPEC.name).index(0),
            );
            None
        }
    }
}

fn validate_block(raw: &ValueAny, diags: &mut Diagnostics) -> Option<()> {
    let b = decode(Some(raw), diags)?;
    if let Value::Value(a) = &b.accelerator {
        if AccelChoice::parse(a).is_none() {
            diags.error(
                "Invalid accelerator",
                format!("accelerator must be auto, kvm or tcg, got {a:?}"),
                at("accelerator"),
            );
            return None;
        }
    }
    Some(())
}

/// `$XDG_DATA_HOME/golden`, else `~/.local/share/golden`.
pub fn default_store_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("XDG_DATA_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"))
        .join("golden")
}

/// Always configured: the local platform needs no account.
fn configure(raw: Option<&ValueAny>, diags: &mut Diagnostics) -> Configured {
    let b = decode(raw, diags)?;
    let choice = b
        .accelerator
        .as_ref_option()
        .and_then(|a| AccelChoice::parse(a))
        .unwrap_or_default();
    let accel = match accel::resolve(choice) {
        Ok(a) => a,
        Err(why) => {
            diags.error(
                "Unable to Use KVM",
                format!("accelerator = \"kvm\" but {why}; use \"auto\" or \"tcg\""),
                at("accelerator"),
            );
            return None;
        }
    };
    let store = b
        .store_dir
        .as_ref_option()
        .map(PathBuf::from)
        .unwrap_or_else(default_store_dir);
    tracing::info!(store = %store.display(), %accel, "local platform configured");
    Some(Some(Arc::new(LocalPlatform::new(store, accel))))
}

const KINDS: &[&str] = &["path", "url", "family"];
const ALLOWED: &[&str] = &["path", "url", "checksum", "family"];

fn source_attributes() -> Vec<(&'static str, tf_provider::schema::Attribute)> {
    vec![
        ("path", attr(T::String, C::Optional, "A disk image file on this machine (qcow2 or raw). `local` only.")),
        ("url", attr(T::String, C::Optional, "A disk image to download once and cache; requires `checksum`. `local` and `proxmox`.")),
        ("checksum", attr(T::String, C::Optional, "`sha256:<64 hex digits>` of the file at `url`.")),
    ]
}

fn parse_source(fields: &SourceFields, diags: &mut Diagnostics) -> Option<Option<Source>> {
    let Some(kind) = fields.chosen_kind(KINDS, ALLOWED, diags)? else {
        return Some(None);
    };
    Some(match kind {
        "path" => Some(Source::Path(
            fields.string("path").unwrap_or_default().into(),
        )),
        "url" => registry::url_source(fields, diags),
        _ => registry::family_source(fields, diags),
    })
}

/// A build from `source.path` needs the file now, not minutes into the apply.
fn check_source(source: &Source) -> Result<(), SourceProblem> {
    let Source::Path(path) = source else {
        return Ok(());
    };
    super::source::check_disk_image(path).map_err(|detail| SourceProblem {
        attribute: "path",
        summary: "Invalid source.path",
        detail,
    })
}
