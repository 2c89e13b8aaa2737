//! From Terraform config to domain values, once. Every error names its
//! attribute; unknown values (known only after another resource applies) are
//! skipped at validate time and make the dependent plan values unknown.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

use super::state::ImageState;
use crate::lifecycle::duration;
use crate::lifecycle::naming::Family;
use crate::lifecycle::recipe::{Check, Provision, Recipe, SmokeSpec, Source};
use crate::lifecycle::retention::RetentionPolicy;
use crate::platforms::registry::{self, PlatformSpec, RecipeParts, SourceFields};
use crate::resources::values::{string_list, string_map, Known};

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
    let spec = match &cfg.platform {
        Value::Value(p) => {
            let spec = registry::find(p);
            if spec.is_none() {
                diags.error(
                    "Unsupported Platform",
                    format!(
                        "platform {p:?} is not supported by this build of the golden provider; supported: {}",
                        registry::names()
                    ),
                    path("platform"),
                );
            }
            spec
        }
        Value::Null => {
            diags.error_short("platform is required", path("platform"));
            None
        }
        Value::Unknown => None,
    };
    let platform = spec.map(|s| s.name.to_owned());
    let rules = registry::naming_rules(spec.map(|s| s.name));
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

    let source = source(cfg, spec, diags);
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
    if let Some(spec) = spec {
        check_recipe(
            spec,
            family.as_ref(),
            tags.as_ref(),
            provision.as_ref(),
            diags,
        );
    }

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

/// The platform's own plan-time rules (`check_recipe`) on what is known.
fn check_recipe(
    spec: &PlatformSpec,
    family: Option<&Family>,
    tags: Option<&BTreeMap<String, String>>,
    provision: Option<&Provision>,
    diags: &mut Diagnostics,
) {
    let parts = RecipeParts {
        family,
        tags,
        provision,
    };
    for p in (spec.check_recipe)(&parts) {
        diags.error(p.summary, p.detail, p.at);
    }
}

/// `Some(Some(_))` known, `Some(None)` invalid/missing (error reported),
/// `None` unknown (or the platform is, so its attributes cannot be checked).
fn source(
    cfg: &ImageState,
    spec: Option<&'static PlatformSpec>,
    diags: &mut Diagnostics,
) -> Option<Option<Source>> {
    let blocks = match &cfg.source {
        Value::Unknown => return None,
        Value::Null => Vec::new(),
        Value::Value(v) => v.clone(),
    };
    let Some(b) = blocks.first() else {
        diags.error(
            "Missing source Block",
            "golden_image needs a source block saying what to build from (for example path, url, template or family, depending on the platform)",
            path("source"),
        );
        return Some(None);
    };
    let spec = spec?;
    (spec.parse_source)(&SourceFields::new(spec.name, b), diags)
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
    let mut unknown_checks = false;
    if let Value::Value(_) = &b.checks {
        let names = known(string_list(&b.checks))?;
        let mut checks = BTreeSet::new();
        for (i, n) in names.iter().enumerate() {
            match Check::parse(n) {
                Some(c) => {
                    checks.insert(c);
                }
                None => {
                    unknown_checks = true;
                    diags.error(
                        "Unknown Smoke-Test Check",
                        format!("{n:?} is not a check; use boot, cloud_init, guest_agent, ssh or minimal"),
                        block_path("smoke_test", "checks").index(i as i64),
                    )
                }
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
    // An unknown check is its own error: no second one saying "empty".
    if spec.checks.is_empty() && spec.commands.is_empty() && !unknown_checks {
        diags.error(
            "Empty Smoke Test",
            "smoke_test runs no check and no command, so it could never prove an image boots; \
             list at least one of boot, cloud_init, guest_agent, ssh, minimal, or a command",
            // terraform shows a pointer only for an attribute: `checks`
            // (its block's line when `checks` is not written).
            block_path("smoke_test", "checks"),
        );
    }
    Some(spec)
}

/// The default when there is no retention block.
pub const DEFAULT_KEEP: u32 = 3;

/// `None` while `keep` is unknown (or invalid, with an error reported).
fn retention(cfg: &ImageState, diags: &mut Diagnostics) -> Option<RetentionPolicy> {
    let default = RetentionPolicy::keep(DEFAULT_KEEP);
    let blocks = match &cfg.retention {
        Value::Unknown => return None,
        Value::Null => return Some(default),
        Value::Value(v) => v,
    };
    let Some(b) = blocks.first() else {
        return Some(default);
    };
    let max_age = match &b.max_age {
        Value::Unknown => return None,
        v => opt_duration(v, block_path("retention", "max_age"), diags),
    };
    if b.max_age.as_ref_option().is_some() && max_age.is_none() {
        return None;
    }
    if max_age.is_some_and(|d| d.is_zero()) {
        diags.error(
            "Invalid retention.max_age",
            "max_age must be longer than zero: the newest validated image is kept whatever its age, the others would all go at once",
            block_path("retention", "max_age"),
        );
        return None;
    }
    match b.keep {
        Value::Value(k) if (1..=1000).contains(&k) => Some(RetentionPolicy {
            keep: k as u32,
            max_age,
        }),
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
