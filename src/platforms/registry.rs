//! The platform registry. Each platform describes itself once, in its own
//! module: its name and naming rules, its provider block (schema, plan-time
//! checks, env fallbacks, `configure`), and its `source` attributes with their
//! plan-time checks. The provider, the resource's config, the data sources and
//! import iterate [`PLATFORMS`]; nothing outside `src/platforms/` names a
//! platform. Adding one is a module and one line in [`PLATFORMS`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use tf_provider::schema::{Attribute, Block};
use tf_provider::value::ValueAny;
use tf_provider::{AttributePath, Diagnostics};

use super::Platform;
use crate::lifecycle::naming::{Family, NamingRules};
use crate::lifecycle::recipe::{Checksum, Provision, Source};

/// `configure`'s answer: `None` on error (in the diagnostics), `Some(None)`
/// when the platform is not configured, else the platform.
pub type Configured = Option<Option<Arc<dyn Platform>>>;

/// What a platform says about itself.
pub struct PlatformSpec {
    /// The value of the `platform` attribute, and the name of its provider block.
    pub name: &'static str,
    /// Which family names its image names allow.
    pub naming: NamingRules,
    /// The schema of its block in `provider "golden" { <name> { ... } }`.
    pub provider_block: fn() -> Block,
    /// Plan-time checks of that block (unknown values skipped); errors name
    /// the attribute under `<name>[0]`.
    pub validate_block: fn(&ValueAny, &mut Diagnostics) -> Option<()>,
    /// Builds the platform from its block (absent: `None`) and environment.
    /// `Some(None)`: not configured (and not needed unless a resource names it).
    pub configure: fn(Option<&ValueAny>, &mut Diagnostics) -> Configured,
    /// Its attributes of the `source` block, beyond the shared `family`.
    pub source_attributes: fn() -> Vec<(&'static str, Attribute)>,
    /// Turns a `source` block into a [`Source`]. `Some(None)`: invalid (the
    /// diagnostics say why); `None`: part of it is unknown until apply.
    pub parse_source: fn(&SourceFields, &mut Diagnostics) -> Option<Option<Source>>,
    /// What a plan that builds checks of the source on this machine before
    /// any apply (a `source.path` file exists and is a disk image): the
    /// `source` attribute at fault and why. Plans that build nothing, and
    /// `terraform validate`, do not ask.
    pub check_source: fn(&Source) -> Result<(), SourceProblem>,
    /// What the platform cannot store or send exactly as configured (DO's
    /// tag charset, its 64 KiB user-data): checked at `terraform validate`
    /// and plan, on whatever is known, so apply never rewrites or refuses it.
    /// Each problem names its attribute.
    pub check_recipe: fn(&RecipeParts) -> Vec<RecipeProblem>,
}

/// The parts of a `golden_image` config a platform's `check_recipe` sees;
/// `None` while unknown (known only at apply).
#[derive(Debug, Clone, Copy)]
pub struct RecipeParts<'a> {
    pub family: Option<&'a Family>,
    pub tags: Option<&'a BTreeMap<String, String>>,
    pub provision: Option<&'a Provision>,
}

/// Config the platform cannot honour as written, found before any apply.
#[derive(Debug, Clone)]
pub struct RecipeProblem {
    /// Where terraform points: `tags["team"]`, `provision[0].files["/x"]`.
    pub at: AttributePath,
    pub summary: &'static str,
    pub detail: String,
}

/// For platforms that store and send every valid config as it is.
pub fn recipe_needs_no_check(_: &RecipeParts) -> Vec<RecipeProblem> {
    Vec::new()
}

/// A `source` a build cannot use, found at plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceProblem {
    /// The attribute of the `source` block (`path`).
    pub attribute: &'static str,
    pub summary: &'static str,
    pub detail: String,
}

/// For platforms whose sources need no check on this machine.
pub fn source_needs_no_check(_: &Source) -> Result<(), SourceProblem> {
    Ok(())
}

/// Every platform of this build, in the order docs and messages list them.
pub const PLATFORMS: &[&PlatformSpec] = &[
    &super::local::spec::SPEC,
    &super::proxmox::spec::SPEC,
    &super::digitalocean::spec::SPEC,
    &super::gcp::spec::SPEC,
];

pub fn find(name: &str) -> Option<&'static PlatformSpec> {
    PLATFORMS.iter().copied().find(|p| p.name == name)
}

/// `local, proxmox, digitalocean`: for messages that list what is supported.
pub fn names() -> String {
    PLATFORMS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The naming rules of `platform`; while it is unknown (or not a platform),
/// the rules every platform accepts, so no name passes that one would refuse.
pub fn naming_rules(platform: Option<&str>) -> NamingRules {
    match platform.and_then(find) {
        Some(p) => p.naming,
        None => NamingRules {
            allow_dot: PLATFORMS.iter().all(|p| p.naming.allow_dot),
        },
    }
}

/// The `source` block's attributes: the shared `family`, then every
/// platform's own (the first description of a name shared by several wins).
pub fn source_attributes() -> Vec<(&'static str, Attribute)> {
    let mut attrs: Vec<(&'static str, Attribute)> = vec![("family", family_attribute())];
    for platform in PLATFORMS {
        for (name, attr) in (platform.source_attributes)() {
            if !attrs.iter().any(|(n, _)| *n == name) {
                attrs.push((name, attr));
            }
        }
    }
    attrs
}

fn family_attribute() -> Attribute {
    crate::tfschema::attr(
        tf_provider::schema::AttributeType::String,
        tf_provider::schema::AttributeConstraint::Optional,
        "Build on the newest validated image of another golden family on the same platform (layered images). Every platform.",
    )
}

/// Decodes a provider block into the platform's own typed block, the way
/// tf-provider decodes configs (MessagePack, unknowns as extension values).
pub fn decode_block<T: DeserializeOwned>(raw: &ValueAny) -> Result<T, String> {
    let bytes = rmp_serde::to_vec_named(raw).map_err(|e| e.to_string())?;
    rmp_serde::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Decodes `<platform> { ... }` into the platform's typed block; a block
/// that does not decode is an error on the block itself.
pub fn decode_provider_block<T: DeserializeOwned>(
    platform: &'static str,
    raw: &ValueAny,
    diags: &mut Diagnostics,
) -> Option<T> {
    match decode_block(raw) {
        Ok(b) => Some(b),
        Err(e) => {
            diags.error(
                format!("Invalid {platform} Block"),
                e,
                AttributePath::new(platform).index(0),
            );
            None
        }
    }
}

/// A [`PlatformSpec::validate_block`] from the platform's typed check.
pub fn validate_provider_block<T: DeserializeOwned>(
    platform: &'static str,
    raw: &ValueAny,
    diags: &mut Diagnostics,
    validate: fn(&T, &mut Diagnostics) -> Option<()>,
) -> Option<()> {
    validate(&decode_provider_block(platform, raw, diags)?, diags)
}

/// A [`PlatformSpec::configure`] from the platform's typed `configure`
/// (block absent: `None`).
pub fn configure_provider_block<T: DeserializeOwned, P: Platform + 'static>(
    platform: &'static str,
    raw: Option<&ValueAny>,
    diags: &mut Diagnostics,
    configure: fn(Option<&T>, &mut Diagnostics) -> Option<Option<P>>,
) -> Configured {
    let block = match raw {
        Some(raw) => Some(decode_provider_block::<T>(platform, raw, diags)?),
        None => None,
    };
    let platform = configure(block.as_ref(), diags)?;
    Some(platform.map(|p| Arc::new(p) as Arc<dyn Platform>))
}

/// An environment setting, unless unset or blank.
pub fn env_setting(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A provider-block string that is known and not blank.
pub fn known_setting(v: &tf_provider::value::Value<String>) -> Option<String> {
    v.as_ref_option().cloned().filter(|s| !s.trim().is_empty())
}

/// A directory name for one endpoint's ledgers: its host and port, every
/// other character `_` (`https://pve.example.com:8006/api2/json` ->
/// `pve.example.com_8006`).
pub fn ledger_scope_of(endpoint: &str) -> String {
    let host = endpoint
        .split("://")
        .nth(1)
        .unwrap_or(endpoint)
        .split('/')
        .next()
        .unwrap_or_default();
    host.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The attributes of a `source` block as Terraform sent them.
pub type SourceBlock = BTreeMap<String, ValueAny>;

/// A view of one `source` block for a platform's `parse_source`.
pub struct SourceFields<'a> {
    platform: &'static str,
    fields: &'a SourceBlock,
}

impl<'a> SourceFields<'a> {
    pub fn new(platform: &'static str, fields: &'a SourceBlock) -> Self {
        SourceFields { platform, fields }
    }

    pub fn platform(&self) -> &'static str {
        self.platform
    }

    pub fn any_unknown(&self) -> bool {
        self.fields.values().any(|v| matches!(v, ValueAny::Unknown))
    }

    /// The attributes that have a value, in schema order of `among`.
    pub fn set_among(&self, among: &[&'static str]) -> Vec<&'static str> {
        among
            .iter()
            .copied()
            .filter(|name| self.is_set(name))
            .collect()
    }

    /// Attributes with a value that this platform does not take.
    pub fn set_outside(&self, allowed: &[&'static str]) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(k, v)| !matches!(v, ValueAny::Null) && !allowed.contains(&k.as_str()))
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn is_set(&self, name: &str) -> bool {
        !matches!(self.fields.get(name), None | Some(ValueAny::Null))
    }

    pub fn string(&self, name: &str) -> Option<String> {
        match self.fields.get(name) {
            Some(ValueAny::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn number(&self, name: &str) -> Option<i64> {
        match self.fields.get(name) {
            Some(ValueAny::Number(n)) => Some(*n),
            _ => None,
        }
    }

    /// `source[0].<name>`: where a diagnostic about `name` points.
    pub fn path(name: &str) -> AttributePath {
        AttributePath::new("source")
            .index(0)
            .attribute(name.to_owned())
    }

    /// Which of `kinds` the block sets: `None` while part of it is unknown,
    /// `Some(None)` when it is invalid (exactly one kind, nothing outside
    /// `allowed`, `checksum` only with `url`; the diagnostics say why).
    pub fn chosen_kind(
        &self,
        kinds: &[&'static str],
        allowed: &[&'static str],
        diags: &mut Diagnostics,
    ) -> Option<Option<&'static str>> {
        if self.any_unknown() {
            return None;
        }
        let Some(kind) = self.exactly_one(kinds, allowed, diags) else {
            return Some(None);
        };
        Some(checksum_only_with_url(self, kind, diags).map(|()| kind))
    }

    /// Checks that exactly one of `kinds` is set and nothing this platform
    /// does not take; returns the one.
    fn exactly_one(
        &self,
        kinds: &[&'static str],
        allowed: &[&'static str],
        diags: &mut Diagnostics,
    ) -> Option<&'static str> {
        if let Some(other) = self.set_outside(allowed).first() {
            diags.error(
                "Unsupported Source",
                format!(
                    "source.{other} does not apply to platform {:?}; use one of {}",
                    self.platform,
                    kinds.join(", ")
                ),
                SourceFields::path(other),
            );
            return None;
        }
        let set = self.set_among(kinds);
        if set.len() != 1 {
            // terraform shows a pointer only for an attribute: the second
            // kind set, or the first possible one (its block's line) when none.
            let at = set.get(1).or(kinds.first()).copied().unwrap_or("family");
            diags.error(
                "Invalid source Block",
                format!(
                    "set exactly one of {} in source (found: {})",
                    kinds.join(", "),
                    if set.is_empty() {
                        "none".into()
                    } else {
                        set.join(", ")
                    }
                ),
                SourceFields::path(at),
            );
            return None;
        }
        Some(set[0])
    }
}

/// `source.family`: the newest validated image of another family on the
/// same platform; the pipeline resolves it at build time.
pub fn family_source(fields: &SourceFields, diags: &mut Diagnostics) -> Option<Source> {
    let raw = fields.string("family").unwrap_or_default();
    match Family::parse(&raw, naming_rules(Some(fields.platform()))) {
        Ok(f) => Some(Source::Family(f)),
        Err(e) => {
            diags.error(
                "Invalid Source Family",
                format!("source.family {raw:?} {e}"),
                SourceFields::path("family"),
            );
            None
        }
    }
}

/// `source.url` with its required `checksum` (`sha256:<hex>`).
pub fn url_source(fields: &SourceFields, diags: &mut Diagnostics) -> Option<Source> {
    let Some(raw) = fields.string("checksum") else {
        diags.error(
            "Missing Checksum",
            "source.url needs checksum = \"sha256:<hex>\" so the download can be verified",
            SourceFields::path("checksum"),
        );
        return None;
    };
    let url = fields.string("url").unwrap_or_default();
    match Checksum::parse(&raw) {
        Ok(checksum) => Some(Source::Url { url, checksum }),
        Err(e) => {
            diags.error("Invalid Checksum", e, SourceFields::path("checksum"));
            None
        }
    }
}

/// `checksum` belongs to `url` only.
fn checksum_only_with_url(
    fields: &SourceFields,
    kind: &str,
    diags: &mut Diagnostics,
) -> Option<()> {
    if fields.is_set("checksum") && kind != "url" {
        diags.error(
            "Invalid source Block",
            "checksum only applies to url",
            SourceFields::path("checksum"),
        );
        return None;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_listed() {
        let mut seen = std::collections::BTreeSet::new();
        for p in PLATFORMS {
            assert!(seen.insert(p.name), "{} registered twice", p.name);
            assert!(find(p.name).is_some());
        }
        // Every platform, once, in registry order (local first: the default).
        let listed: Vec<String> = names().split(", ").map(str::to_owned).collect();
        assert_eq!(listed.len(), seen.len());
        for (p, n) in PLATFORMS.iter().zip(&listed) {
            assert_eq!(p.name, n);
        }
    }

    #[test]
    fn unknown_platform_gets_the_strictest_naming() {
        let strictest = PLATFORMS.iter().all(|p| p.naming.allow_dot);
        assert_eq!(naming_rules(None).allow_dot, strictest);
        assert_eq!(naming_rules(Some("vmware")).allow_dot, strictest);
    }

    #[test]
    fn provider_blocks_decode_with_unknowns() {
        #[derive(serde::Deserialize)]
        struct B {
            a: tf_provider::value::Value<String>,
            b: tf_provider::value::Value<String>,
        }
        let raw = ValueAny::Map(BTreeMap::from([
            ("a".to_owned(), ValueAny::String("x".into())),
            ("b".to_owned(), ValueAny::Unknown),
        ]));
        let b: B = decode_block(&raw).unwrap();
        assert_eq!(b.a, tf_provider::value::Value::Value("x".into()));
        assert!(b.b.is_unknown());
    }

    #[test]
    fn ledger_scopes_are_safe_directory_names() {
        assert_eq!(
            ledger_scope_of("https://pve.example.com:8006/api2/json"),
            "pve.example.com_8006"
        );
        assert_eq!(
            ledger_scope_of("https://[::1]:8006/api2/json"),
            "___1__8006"
        );
        assert_eq!(
            ledger_scope_of("https://api.digitalocean.com"),
            "api.digitalocean.com"
        );
        assert_eq!(ledger_scope_of("http://127.0.0.1:4010"), "127.0.0.1_4010");
    }

    #[test]
    fn every_source_attribute_is_described_once() {
        let attrs = source_attributes();
        let mut names: Vec<_> = attrs.iter().map(|(n, _)| *n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), attrs.len());
        assert!(names.contains(&"family"));
    }
}
