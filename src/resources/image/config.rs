//! From Terraform config to domain values, once. Every error names its
//! attribute; unknown values (known only after another resource applies) are
//! skipped at validate time and make the dependent plan values unknown.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

use super::state::ImageState;
use crate::lifecycle::duration;
use crate::lifecycle::naming::{Family, NamingRules};
use crate::lifecycle::recipe::{
    Check, Checksum, Provision, Recipe, SmokeSpec, Source, TemplateRef,
};
use crate::lifecycle::retention::RetentionPolicy;
use crate::resources::values::{string_list, string_map, Known};

/// Platforms this build of the provider implements.
pub const SUPPORTED_PLATFORMS: &[&str] = &["local", "proxmox"];

pub const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(3600);
pub const DEFAULT_DELETE_TIMEOUT: Duration = Duration::from_secs(600);

/// The config has errors; they are in the diagnostics, each with its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDestroy {
    Keep,
    Delete,
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub create: Duration,
    pub update: Duration,
    pub delete: Duration,
}

/// Everything the config says, as domain values. `recipe` is `None` when part
/// of it is unknown until apply.
#[derive(Debug, Clone)]
pub struct Desired {
    pub platform: String,
    pub family: Family,
    pub recipe: Option<Recipe>,
    /// `recipe`'s hash, present exactly when `recipe` is.
    pub recipe_hash: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    /// `None` when `keep` is known only at apply time.
    pub retention: Option<RetentionPolicy>,
    pub rebuild_after: Option<Duration>,
    pub triggers: Option<BTreeMap<String, String>>,
    pub on_destroy: OnDestroy,
    pub timeouts: Timeouts,
}

fn path(name: &'static str) -> AttributePath {
    AttributePath::new(name)
}

fn block_path(block: &'static str, attr: &'static str) -> AttributePath {
    AttributePath::new(block).index(0).attribute(attr)
}

fn known<T>(k: Known<T>) -> Option<T> {
    match k {
        Known::Yes(v) => Some(v),
        Known::Unknown => None,
    }
}

/// Converts the config. Returns `None` (with errors in `diags`) when the config
/// is invalid, and `Some` with unknown parts left as `None` otherwise. When
/// `platform` or `family` themselves are unknown there is nothing to plan yet,
/// which is reported as `Ok(None)`.
pub fn desired(
    cfg: &ImageState,
    diags: &mut Diagnostics,
) -> Result<Option<Desired>, InvalidConfig> {
    let errors_before = diags.errors.len();
    let platform = match &cfg.platform {
        Value::Value(p) => {
            if !SUPPORTED_PLATFORMS.contains(&p.as_str()) {
                diags.error(
                    "Unsupported Platform",
                    format!(
                        "platform {p:?} is not supported by this build of the golden provider; supported: {}",
                        SUPPORTED_PLATFORMS.join(", ")
                    ),
                    path("platform"),
                );
            }
            Some(p.clone())
        }
        Value::Null => {
            diags.error_short("platform is required", path("platform"));
            None
        }
        Value::Unknown => None,
    };
    let rules = NamingRules {
        allow_dot: platform.as_deref() != Some("gcp"),
    };
    let family = match &cfg.family {
        Value::Value(f) => match Family::parse(f, rules) {
            Ok(f) => Some(f),
            Err(e) => {
                diags.error(
                    "Invalid Family Name",
                    format!("family {f:?} {e}"),
                    path("family"),
                );
                None
            }
        },
        _ => None,
    };

    let source = source(cfg, platform.as_deref(), diags);
    let provision = provision(cfg);
    let smoke = smoke(cfg, diags);
    let retention = retention(cfg, diags);
    let rebuild_after = opt_duration(&cfg.rebuild_after, path("rebuild_after"), diags);
    let on_destroy = match &cfg.on_destroy {
        Value::Value(s) if s == "delete" => OnDestroy::Delete,
        Value::Value(s) if s == "keep" => OnDestroy::Keep,
        Value::Value(s) => {
            diags.error(
                "Invalid on_destroy",
                format!("on_destroy must be \"keep\" or \"delete\", got {s:?}"),
                path("on_destroy"),
            );
            OnDestroy::Keep
        }
        _ => OnDestroy::Keep,
    };
    let timeouts = timeouts(cfg, diags);
    let tags = known(string_map(&cfg.tags));
    if let Some(tags) = &tags {
        for k in tags.keys() {
            if k.starts_with("golden-") {
                diags.error(
                    "Reserved Tag",
                    format!("tag {k:?}: keys starting with golden- are golden's own metadata"),
                    path("tags").key(k.clone()),
                );
            }
        }
    }
    let triggers = known(string_map(&cfg.triggers));

    if diags.errors.len() > errors_before {
        return Err(InvalidConfig);
    }
    let (Some(platform), Some(family)) = (platform, family) else {
        return Ok(None);
    };
    let recipe = match (source, provision, smoke) {
        (Some(Some(source)), Some(provision), Some(smoke_test)) => Some(Recipe {
            source,
            provision,
            smoke_test,
        }),
        _ => None,
    };
    let recipe_hash = match recipe.as_ref().map(Recipe::hash).transpose() {
        Ok(hash) => hash,
        Err(e) => {
            diags.root_error("Unable to Hash the Recipe", e.to_string());
            return Err(InvalidConfig);
        }
    };
    Ok(Some(Desired {
        platform,
        family,
        recipe,
        recipe_hash,
        tags,
        retention,
        rebuild_after,
        triggers,
        on_destroy,
        timeouts,
    }))
}

/// Which `source` attributes each platform understands.
fn source_kinds(platform: Option<&str>) -> &'static [&'static str] {
    match platform {
        Some("local") => &["path", "url", "family"],
        Some("proxmox") => &["template", "vm_id", "url", "family"],
        _ => &["path", "url", "family", "template", "vm_id"],
    }
}

/// `Some(Some(_))` known, `Some(None)` invalid/missing (error reported),
/// `None` unknown.
fn source(
    cfg: &ImageState,
    platform: Option<&str>,
    diags: &mut Diagnostics,
) -> Option<Option<Source>> {
    let blocks = match &cfg.source {
        Value::Unknown => return None,
        Value::Null => Vec::new(),
        Value::Value(v) => v.clone(),
    };
    let allowed = source_kinds(platform);
    let Some(b) = blocks.first() else {
        diags.error(
            "Missing source Block",
            format!(
                "golden_image needs a source block with one of {}",
                allowed.join(", ")
            ),
            path("source"),
        );
        return Some(None);
    };
    if b.vm_id.is_unknown()
        || [&b.path, &b.url, &b.checksum, &b.family, &b.template]
            .iter()
            .any(|v| v.is_unknown())
    {
        return None;
    }
    let set: Vec<&str> = [
        ("path", b.path.is_value()),
        ("url", b.url.is_value()),
        ("family", b.family.is_value()),
        ("template", b.template.is_value()),
        ("vm_id", b.vm_id.is_value()),
    ]
    .iter()
    .filter(|(_, is_set)| *is_set)
    .map(|(k, _)| *k)
    .collect();
    if set.len() != 1 {
        diags.error(
            "Invalid source Block",
            format!(
                "set exactly one of {} in source (found: {})",
                allowed.join(", "),
                if set.is_empty() {
                    "none".into()
                } else {
                    set.join(", ")
                }
            ),
            path("source").index(0),
        );
        return Some(None);
    }
    if !allowed.contains(&set[0]) {
        diags.error(
            "Unsupported Source",
            format!(
                "source.{} does not apply to platform {:?}; use one of {}",
                set[0],
                platform.unwrap_or_default(),
                allowed.join(", ")
            ),
            block_path("source", source_attr(set[0])),
        );
        return Some(None);
    }
    let source = match set[0] {
        "path" => Source::Path(b.path.as_ref_option().cloned().unwrap_or_default().into()),
        "url" => {
            let Value::Value(raw) = &b.checksum else {
                diags.error(
                    "Missing Checksum",
                    "source.url needs checksum = \"sha256:<hex>\" so the download can be verified",
                    block_path("source", "checksum"),
                );
                return Some(None);
            };
            let url = b.url.as_ref_option().cloned().unwrap_or_default();
            let compressed = [".xz", ".gz", ".bz2", ".zst", ".zip"]
                .iter()
                .any(|ext| url.to_ascii_lowercase().ends_with(ext));
            if platform == Some("proxmox") && compressed {
                diags.error(
                    "Unsupported Source",
                    "source.url on proxmox must be an uncompressed disk image (qcow2, raw or vmdk): \
                     PVE's import does not decompress",
                    block_path("source", "url"),
                );
                return Some(None);
            }
            match Checksum::parse(raw) {
                Ok(checksum) => Source::Url { url, checksum },
                Err(e) => {
                    diags.error("Invalid Checksum", e, block_path("source", "checksum"));
                    return Some(None);
                }
            }
        }
        "template" => {
            let name = b.template.as_ref_option().cloned().unwrap_or_default();
            if name.trim().is_empty() {
                diags.error_short(
                    "source.template must not be empty",
                    block_path("source", "template"),
                );
                return Some(None);
            }
            Source::Template(TemplateRef::Name(name))
        }
        "vm_id" => {
            let id = b.vm_id.as_ref_option().copied().unwrap_or_default();
            match u32::try_from(id) {
                Ok(id) if (100..=999_999_999).contains(&id) => {
                    Source::Template(TemplateRef::VmId(id))
                }
                _ => {
                    diags.error(
                        "Invalid source.vm_id",
                        format!("a Proxmox VM id is between 100 and 999999999, got {id}"),
                        block_path("source", "vm_id"),
                    );
                    return Some(None);
                }
            }
        }
        _ => {
            let raw = b.family.as_ref_option().cloned().unwrap_or_default();
            match Family::parse(&raw, NamingRules { allow_dot: true }) {
                Ok(f) => Source::Family(f),
                Err(e) => {
                    diags.error(
                        "Invalid Source Family",
                        format!("source.family {raw:?} {e}"),
                        block_path("source", "family"),
                    );
                    return Some(None);
                }
            }
        }
    };
    if b.checksum.is_value() && set[0] != "url" {
        diags.error(
            "Invalid source Block",
            "checksum only applies to url",
            block_path("source", "checksum"),
        );
        return Some(None);
    }
    Some(Some(source))
}

fn source_attr(kind: &str) -> &'static str {
    match kind {
        "path" => "path",
        "url" => "url",
        "family" => "family",
        "template" => "template",
        _ => "vm_id",
    }
}

fn provision(cfg: &ImageState) -> Option<Provision> {
    let packages = known(string_list(&cfg.packages))?;
    let block = match &cfg.provision {
        Value::Unknown => return None,
        Value::Null => None,
        Value::Value(v) => v.first().cloned(),
    };
    let Some(b) = block else {
        return Some(Provision {
            packages,
            ..Default::default()
        });
    };
    Some(Provision {
        packages,
        files: known(string_map(&b.files))?,
        commands: known(string_list(&b.commands))?,
        services: known(string_list(&b.services))?,
    })
}

fn smoke(cfg: &ImageState, diags: &mut Diagnostics) -> Option<SmokeSpec> {
    let block = match &cfg.smoke_test {
        Value::Unknown => return None,
        Value::Null => None,
        Value::Value(v) => v.first().cloned(),
    };
    let Some(b) = block else {
        return Some(SmokeSpec::default());
    };
    let mut spec = SmokeSpec::default();
    if let Value::Value(_) = &b.checks {
        let names = known(string_list(&b.checks))?;
        let mut checks = BTreeSet::new();
        for (i, n) in names.iter().enumerate() {
            match Check::parse(n) {
                Some(c) => {
                    checks.insert(c);
                }
                None => diags.error(
                    "Unknown Smoke-Test Check",
                    format!("{n:?} is not a check; use boot, cloud_init, guest_agent or ssh"),
                    block_path("smoke_test", "checks").index(i as i64),
                ),
            }
        }
        spec.checks = checks;
    } else if b.checks.is_unknown() {
        return None;
    }
    spec.commands = known(string_list(&b.commands))?;
    if let Some(t) = opt_duration(&b.timeout, block_path("smoke_test", "timeout"), diags) {
        if t.is_zero() {
            diags.error_short(
                "smoke_test.timeout must be longer than 0s",
                block_path("smoke_test", "timeout"),
            );
        }
        spec.timeout = t;
    }
    if b.timeout.is_unknown() || b.allow_degraded.is_unknown() {
        return None;
    }
    spec.allow_degraded = b.allow_degraded.as_ref_option().copied().unwrap_or(false);
    if spec.checks.is_empty() && spec.commands.is_empty() {
        diags.error(
            "Empty Smoke Test",
            "smoke_test runs no check and no command, so it could never prove an image boots; \
             list at least one of boot, cloud_init, guest_agent, ssh, or a command",
            AttributePath::new("smoke_test").index(0),
        );
    }
    Some(spec)
}

/// The default when there is no retention block.
pub const DEFAULT_KEEP: u32 = 3;

/// `None` while `keep` is unknown (or invalid, with an error reported).
fn retention(cfg: &ImageState, diags: &mut Diagnostics) -> Option<RetentionPolicy> {
    let default = RetentionPolicy { keep: DEFAULT_KEEP };
    let blocks = match &cfg.retention {
        Value::Unknown => return None,
        Value::Null => return Some(default),
        Value::Value(v) => v,
    };
    let Some(b) = blocks.first() else {
        return Some(default);
    };
    match b.keep {
        Value::Value(k) if (1..=1000).contains(&k) => Some(RetentionPolicy { keep: k as u32 }),
        Value::Value(k) => {
            diags.error(
                "Invalid retention.keep",
                format!("keep must be between 1 and 1000, got {k}: golden never deletes the newest validated image"),
                block_path("retention", "keep"),
            );
            None
        }
        _ => None,
    }
}

fn opt_duration(v: &Value<String>, at: AttributePath, diags: &mut Diagnostics) -> Option<Duration> {
    let Value::Value(raw) = v else { return None };
    match duration::parse(raw) {
        Ok(d) => Some(d),
        Err(e) => {
            diags.error("Invalid Duration", e.to_string(), at);
            None
        }
    }
}

fn timeouts(cfg: &ImageState, diags: &mut Diagnostics) -> Timeouts {
    let mut t = Timeouts {
        create: DEFAULT_CREATE_TIMEOUT,
        update: DEFAULT_CREATE_TIMEOUT,
        delete: DEFAULT_DELETE_TIMEOUT,
    };
    let Value::Value(blocks) = &cfg.timeouts else {
        return t;
    };
    let Some(b) = blocks.first() else { return t };
    if let Some(d) = opt_duration(&b.create, block_path("timeouts", "create"), diags) {
        t.create = d;
    }
    if let Some(d) = opt_duration(&b.update, block_path("timeouts", "update"), diags) {
        t.update = d;
    }
    if let Some(d) = opt_duration(&b.delete, block_path("timeouts", "delete"), diags) {
        t.delete = d;
    }
    t
}
