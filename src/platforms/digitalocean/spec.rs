//! How the DigitalOcean platform describes itself to the registry: the
//! provider's `digitalocean` block (schema, plan-time checks with attribute
//! paths, and `configure`: block first, then `DIGITALOCEAN_*`, then
//! defaults), its naming rule (no `.` in a family: the family tag must be
//! exact and DO's tag charset has no `.`), and its `source` attributes
//! (`slug`, `image_id`, `tag`, the shared `family`).
//!
//! Where builds run (`region`, `size`), the extra `regions` an image must
//! reach before publish, and the waits (`power_off_timeout`,
//! `transfer_timeout`) are provider-block settings, like Proxmox's `node` and
//! `storage`: they apply the same way to every kind of source, the shared
//! `source.family` included (whose `Source::Family` carries only the family),
//! and they are not part of the recipe hash, so moving builds to another
//! region does not rebuild every family.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeConstraint as C, AttributeType as T, Block};
use tf_provider::value::{Value, ValueAny};
use tf_provider::{AttributePath, Diagnostics};

use super::client::{normalise_endpoint, ClientBuilder, DEFAULT_ENDPOINT};
use super::encoding;
use super::{DoConfig, DoPlatform};
use crate::lifecycle::duration;
use crate::lifecycle::naming::NamingRules;
use crate::lifecycle::recipe::Source;
use crate::platforms::kit::http::Secret;
use crate::platforms::registry::{
    self, Configured, PlatformSpec, RecipeParts, RecipeProblem, SourceFields,
};
use crate::tfschema::{attr, block, secret};

pub const SPEC: PlatformSpec = PlatformSpec {
    name: "digitalocean",
    naming: NamingRules { allow_dot: false },
    provider_block: schema,
    validate_block,
    configure: configure_platform,
    source_attributes,
    parse_source,
    check_source: registry::source_needs_no_check,
    check_recipe,
};

/// What DO cannot store or send as written: a user tag outside what an
/// image tag can hold exactly, and provisioning bigger than DO's 64 KiB
/// user-data.
fn check_recipe(parts: &RecipeParts) -> Vec<RecipeProblem> {
    let mut problems = Vec::new();
    for (k, v) in parts.tags.into_iter().flatten() {
        if k.starts_with("golden-") {
            // The shared reserved-key error covers it.
            continue;
        }
        if let Err(detail) = encoding::user_tag(k, v) {
            problems.push(RecipeProblem {
                at: AttributePath::new("tags").key(k.clone()),
                summary: "Tag Not Storable on DigitalOcean",
                detail: format!("tags[{k:?}] = {v:?}: {detail}"),
            });
        }
    }
    problems.extend(parts.provision.and_then(super::build::check_provision));
    problems
}

pub const ENV_TOKEN: &str = "DIGITALOCEAN_TOKEN";
pub const ENV_ACCESS_TOKEN: &str = "DIGITALOCEAN_ACCESS_TOKEN";
pub const ENV_API_URL: &str = "DIGITALOCEAN_API_URL";

pub const DEFAULT_REGION: &str = "nyc3";
pub const DEFAULT_SIZE: &str = "s-1vcpu-1gb";
pub const DEFAULT_SSH_PORT: u16 = 22;
pub const DEFAULT_POWER_OFF_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_TRANSFER_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);

#[derive(Clone, Default, Deserialize)]
pub struct DoBlock {
    #[serde(default)]
    pub token: Value<String>,
    #[serde(default)]
    pub api_endpoint: Value<String>,
    #[serde(default)]
    pub ssh_port: Value<i64>,
    #[serde(default)]
    pub region: Value<String>,
    #[serde(default)]
    pub size: Value<String>,
    #[serde(default)]
    pub regions: Value<Vec<Value<String>>>,
    #[serde(default)]
    pub power_off_timeout: Value<String>,
    #[serde(default)]
    pub transfer_timeout: Value<String>,
}

// Hand-written so the token can never reach a log line.
impl std::fmt::Debug for DoBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoBlock")
            .field("token", &"***")
            .field("api_endpoint", &self.api_endpoint)
            .field("region", &self.region)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// What to build from, as the recipe (and its hash) records it:
/// `{"digitalocean": {"slug": ...}}`, `{"digitalocean": {"image_id": ...}}`
/// or `{"digitalocean": {"tag": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoSource {
    Digitalocean(SourceRef),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceRef {
    /// A public image's slug (`ubuntu-24-04-x64`).
    Slug(String),
    /// A private image (snapshot, custom image) by id.
    ImageId(u64),
    /// The newest available image carrying this tag.
    Tag(String),
}

impl std::fmt::Display for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceRef::Slug(s) => write!(f, "slug {s:?}"),
            SourceRef::ImageId(id) => write!(f, "image {id}"),
            SourceRef::Tag(t) => write!(f, "the newest image tagged {t:?}"),
        }
    }
}

impl SourceRef {
    pub fn to_source(&self) -> Source {
        // Written out (not `to_value`) so it cannot fail; the round trip
        // through `from_native` is unit-tested.
        Source::Native(match self {
            SourceRef::Slug(s) => serde_json::json!({"digitalocean": {"slug": s}}),
            SourceRef::ImageId(id) => serde_json::json!({"digitalocean": {"image_id": id}}),
            SourceRef::Tag(t) => serde_json::json!({"digitalocean": {"tag": t}}),
        })
    }

    pub fn from_native(v: &serde_json::Value) -> Option<Self> {
        match serde_json::from_value::<DoSource>(v.clone()).ok()? {
            DoSource::Digitalocean(r) => Some(r),
        }
    }
}

pub fn schema() -> Block {
    let token = secret(
        T::String,
        C::Optional,
        "A DigitalOcean API token (sent as `Authorization: Bearer ...`). Env `DIGITALOCEAN_TOKEN`, else `DIGITALOCEAN_ACCESS_TOKEN`. Sensitive: never logged, never in state. Scopes it needs: see the provider docs.",
    );
    block(
        vec![
            ("token", token),
            ("api_endpoint", attr(T::String, C::Optional, "The API root, default `https://api.digitalocean.com` (a simulator or a proxy otherwise). Env `DIGITALOCEAN_API_URL`.")),
            ("ssh_port", attr(T::Number, C::Optional, "The port smoke tests reach droplets' sshd on. Default `22`.")),
            ("region", attr(T::String, C::Optional, "The region builds and smoke tests run in, and where images are made. Default `nyc3`.")),
            ("size", attr(T::String, C::Optional, "The droplet size of build and smoke-test droplets. Default `s-1vcpu-1gb`. The image's minimum disk size is this size's disk.")),
            ("regions", attr(T::List(Box::new(T::String)), C::Optional, "More regions every new image is transferred to (image `transfer` action) before it is published.")),
            ("power_off_timeout", attr(T::String, C::Optional, "How long the build droplet may take to power itself off after provisioning, e.g. `30m` (default); then golden shuts it down, and reports it.")),
            ("transfer_timeout", attr(T::String, C::Optional, "How long the transfers to `regions` may take together, e.g. `2h` (default).")),
        ],
        "The DigitalOcean platform: golden images are droplet snapshots, built from user-data, smoke-tested over SSH, with their metadata in image tags.",
    )
}

fn at(name: &'static str) -> AttributePath {
    AttributePath::new(SPEC.name).index(0).attribute(name)
}

fn validate_block(raw: &ValueAny, diags: &mut Diagnostics) -> Option<()> {
    registry::validate_provider_block(SPEC.name, raw, diags, validate)
}

fn configure_platform(raw: Option<&ValueAny>, diags: &mut Diagnostics) -> Configured {
    registry::configure_provider_block(SPEC.name, raw, diags, configure)
}

const KINDS: &[&str] = &["slug", "image_id", "tag", "family"];

fn source_attributes() -> Vec<(&'static str, tf_provider::schema::Attribute)> {
    vec![
        ("slug", attr(T::String, C::Optional, "`digitalocean` only: a public image's slug, e.g. `ubuntu-24-04-x64`.")),
        ("image_id", attr(T::Number, C::Optional, "`digitalocean` only: the id of a private image (a snapshot or custom image) to build from.")),
        ("tag", attr(T::String, C::Optional, "`digitalocean` only: build from the newest available image carrying this tag.")),
    ]
}

/// A region or size slug: lowercase letters, digits and `-`.
fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

fn parse_source(fields: &SourceFields, diags: &mut Diagnostics) -> Option<Option<Source>> {
    let Some(kind) = fields.chosen_kind(KINDS, KINDS, diags)? else {
        return Some(None);
    };
    Some(match kind {
        "slug" => {
            let slug = fields.string("slug").unwrap_or_default();
            if !is_slug(&slug) {
                diags.error(
                    "Invalid source.slug",
                    format!("{slug:?} is not an image slug (lowercase letters, digits, '-' and '.', e.g. ubuntu-24-04-x64)"),
                    SourceFields::path("slug"),
                );
                return Some(None);
            }
            Some(SourceRef::Slug(slug).to_source())
        }
        "image_id" => {
            let id = fields.number("image_id").unwrap_or_default();
            match u64::try_from(id) {
                Ok(id) if id > 0 => Some(SourceRef::ImageId(id).to_source()),
                _ => {
                    diags.error(
                        "Invalid source.image_id",
                        format!("a DigitalOcean image id is a positive number, got {id}"),
                        SourceFields::path("image_id"),
                    );
                    return Some(None);
                }
            }
        }
        "tag" => {
            let tag = fields.string("tag").unwrap_or_default();
            if !encoding::is_valid_tag(&tag) {
                diags.error(
                    "Invalid source.tag",
                    format!("{tag:?} is not a DigitalOcean tag: letters, digits, '_', '-' and ':', at most 255"),
                    SourceFields::path("tag"),
                );
                return Some(None);
            }
            Some(SourceRef::Tag(tag).to_source())
        }
        _ => registry::family_source(fields, diags),
    })
}

fn list(v: &Value<Vec<Value<String>>>) -> Option<Vec<Option<String>>> {
    v.as_ref_option()
        .map(|l| l.iter().map(|s| s.as_ref_option().cloned()).collect())
}

/// Checks what the config alone can show; unknown values are skipped.
pub fn validate(b: &DoBlock, diags: &mut Diagnostics) -> Option<()> {
    let before = diags.errors.len();
    if let Value::Value(e) = &b.api_endpoint {
        if let Err(why) = normalise_endpoint(e) {
            diags.error("Invalid DigitalOcean API Endpoint", why, at("api_endpoint"));
        }
    }
    if let Value::Value(t) = &b.token {
        if t.trim().is_empty() || t.chars().any(char::is_whitespace) {
            // Never echo the value: it is a secret, even when malformed.
            diags.error(
                "Invalid DigitalOcean Token",
                "token must be a DigitalOcean API token without spaces",
                at("token"),
            );
        }
    }
    if let Value::Value(p) = &b.ssh_port {
        if !(1..=65535).contains(p) {
            diags.error(
                "Invalid ssh_port",
                format!("ssh_port must be a TCP port (1-65535), got {p}"),
                at("ssh_port"),
            );
        }
    }
    for (name, v) in [("region", &b.region), ("size", &b.size)] {
        if let Value::Value(s) = v {
            if !is_slug(s) {
                diags.error(
                    format!("Invalid {name}"),
                    format!(
                        "{s:?} is not a DigitalOcean {name} slug (e.g. {})",
                        if name == "region" {
                            DEFAULT_REGION
                        } else {
                            DEFAULT_SIZE
                        }
                    ),
                    at(name),
                );
            }
        }
    }
    if let Some(regions) = list(&b.regions) {
        for r in regions.iter().flatten() {
            if !is_slug(r) {
                diags.error(
                    "Invalid regions",
                    format!("{r:?} is not a DigitalOcean region slug (e.g. ams3)"),
                    at("regions"),
                );
            }
        }
    }
    for (name, v) in [
        ("power_off_timeout", &b.power_off_timeout),
        ("transfer_timeout", &b.transfer_timeout),
    ] {
        if let Value::Value(d) = v {
            if let Err(e) = duration::parse(d) {
                diags.error(format!("Invalid {name}"), e.to_string(), at(name));
            }
        }
    }
    (diags.errors.len() == before).then_some(())
}

/// `Ok(None)` when neither the block nor the environment mention
/// DigitalOcean. `None` (outer) when the settings are wrong; the
/// diagnostics say why.
pub fn configure(block: Option<&DoBlock>, diags: &mut Diagnostics) -> Option<Option<DoPlatform>> {
    let empty = DoBlock::default();
    let b = block.unwrap_or(&empty);
    let token = registry::known_setting(&b.token)
        .or_else(|| registry::env_setting(ENV_TOKEN))
        .or_else(|| registry::env_setting(ENV_ACCESS_TOKEN));
    let Some(token) = token else {
        if block.is_none() {
            return Some(None);
        }
        diags.error(
            "Missing DigitalOcean Token",
            format!("set digitalocean.token or {ENV_TOKEN} (or {ENV_ACCESS_TOKEN})"),
            at("token"),
        );
        return None;
    };
    let endpoint = registry::known_setting(&b.api_endpoint)
        .or_else(|| registry::env_setting(ENV_API_URL))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let timeout = |v: &Value<String>, default| match registry::known_setting(v) {
        Some(d) => duration::parse(&d).ok(),
        None => Some(default),
    };
    let config = DoConfig {
        region: registry::known_setting(&b.region).unwrap_or_else(|| DEFAULT_REGION.into()),
        size: registry::known_setting(&b.size).unwrap_or_else(|| DEFAULT_SIZE.into()),
        regions: list(&b.regions)
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect(),
        ssh_port: match &b.ssh_port {
            Value::Value(p) => u16::try_from(*p).ok()?,
            _ => DEFAULT_SSH_PORT,
        },
        power_off_timeout: timeout(&b.power_off_timeout, DEFAULT_POWER_OFF_TIMEOUT)?,
        transfer_timeout: timeout(&b.transfer_timeout, DEFAULT_TRANSFER_TIMEOUT)?,
        ledger_scope: String::new(),
    };
    let client = match ClientBuilder::new(&endpoint, Secret::new(token)).build() {
        Ok(c) => c,
        Err(why) => {
            diags.error("Invalid DigitalOcean API Endpoint", why, at("api_endpoint"));
            return None;
        }
    };
    let config = DoConfig {
        ledger_scope: registry::ledger_scope_of(client.endpoint()),
        ..config
    };
    tracing::info!(endpoint = client.endpoint(), region = %config.region, size = %config.size, "digitalocean platform configured");
    Some(Some(DoPlatform::new(client, config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::naming::Family;

    #[test]
    fn sources_round_trip_through_the_recipe() {
        for r in [
            SourceRef::Slug("ubuntu-24-04-x64".into()),
            SourceRef::ImageId(123_456),
            SourceRef::Tag("base-image".into()),
        ] {
            let Source::Native(v) = r.to_source() else {
                panic!("not native")
            };
            assert_eq!(SourceRef::from_native(&v), Some(r));
        }
        // A Proxmox source is not ours.
        assert_eq!(
            SourceRef::from_native(&serde_json::json!({"template": {"name": "x"}})),
            None
        );
    }

    #[test]
    fn families_with_a_dot_are_refused() {
        let rules = SPEC.naming;
        assert!(Family::parse("ubuntu-2404-minimal", rules).is_ok());
        let e = Family::parse("ubuntu-24.04-minimal", rules).unwrap_err();
        assert!(
            e.to_string().contains("'.'") || e.to_string().contains("found '.'"),
            "{e}"
        );
    }

    #[test]
    fn block_checks_name_the_attribute() {
        let b = DoBlock {
            api_endpoint: Value::Value("api.digitalocean.com".into()),
            ssh_port: Value::Value(70_000),
            region: Value::Value("NYC 3".into()),
            regions: Value::Value(vec![
                Value::Value("ams3".into()),
                Value::Value("x y".into()),
            ]),
            power_off_timeout: Value::Value("soon".into()),
            token: Value::Value("dop v1".into()),
            ..DoBlock::default()
        };
        let mut d = Diagnostics::default();
        assert!(validate(&b, &mut d).is_none());
        let text = format!("{:?}", d.errors);
        for attr in [
            "api_endpoint",
            "ssh_port",
            "region",
            "regions",
            "power_off_timeout",
            "token",
        ] {
            assert!(text.contains(attr), "{attr} not named in {text}");
        }
        assert!(!text.contains("dop v1"), "the token was echoed");
    }
}
