//! How the Proxmox platform describes itself to the registry: the provider's
//! `proxmox` block (schema, validation with attribute paths, and `configure`:
//! block first, then `PROXMOX_VE_*`, then defaults) and its `source`
//! attributes (`template`, `vm_id`, `url` + `checksum`, `family`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeConstraint as C, AttributeType as T, Block};
use tf_provider::value::{Value, ValueAny};
use tf_provider::{AttributePath, Diagnostics};

use crate::lifecycle::duration;
use crate::lifecycle::naming::NamingRules;
use crate::lifecycle::recipe::Source;
use crate::platforms::proxmox::client::{normalise_endpoint, ApiToken, ClientBuilder};
use crate::platforms::proxmox::{ProxmoxConfig, ProxmoxPlatform};
use crate::platforms::registry::{
    self, Configured, PlatformSpec, RecipeParts, RecipeProblem, SourceFields,
};
use crate::tfschema::{attr, block, secret};

pub const SPEC: PlatformSpec = PlatformSpec {
    name: "proxmox",
    naming: NamingRules { allow_dot: true },
    provider_block: schema,
    validate_block,
    configure: configure_platform,
    source_attributes,
    parse_source,
    check_source: registry::source_needs_no_check,
    check_recipe,
};

/// User tags read back exactly from the VM's description (the JSON note;
/// the PVE tag `key.value` is only a label for people and filters, mapped
/// into PVE's charset `[a-z0-9_][a-z0-9_+.-]*`), so no charset rule applies.
/// What can fail is size: the note's metadata is never shortened and PVE
/// takes at most 8 KiB of description.
fn check_recipe(parts: &RecipeParts) -> Vec<RecipeProblem> {
    let (Some(family), Some(tags)) = (parts.family, parts.tags) else {
        return Vec::new();
    };
    match super::encoding::check_tags_fit(family, tags) {
        Ok(()) => Vec::new(),
        Err(len) => vec![RecipeProblem {
            at: AttributePath::new("tags"),
            summary: "Tags Too Big for Proxmox",
            detail: format!(
                "golden keeps an image's metadata, these tags included, in the VM's description, \
                 which Proxmox VE limits to {} bytes; with these tags it would be {len}. \
                 Shorten or drop some tags",
                super::encoding::MAX_DESCRIPTION
            ),
        }],
    }
}

#[derive(Clone, Default, Deserialize)]
pub struct ProxmoxBlock {
    #[serde(default)]
    pub endpoint: Value<String>,
    #[serde(default)]
    pub api_token: Value<String>,
    #[serde(default)]
    pub insecure: Value<bool>,
    #[serde(default)]
    pub node: Value<String>,
    #[serde(default)]
    pub storage: Value<String>,
    #[serde(default)]
    pub import_storage: Value<String>,
    #[serde(default)]
    pub vmid_range: Value<String>,
    #[serde(default)]
    pub agent_timeout: Value<String>,
}

// Hand-written so the token can never reach a log line.
impl std::fmt::Debug for ProxmoxBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxmoxBlock")
            .field("endpoint", &self.endpoint)
            .field("api_token", &"***")
            .field("node", &self.node)
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

/// An existing template to clone, as the recipe (and its hash) records it:
/// `{"template": {"name": ...}}` or `{"template": {"vm_id": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxmoxSource {
    Template(TemplateRef),
}

/// How a user names an existing template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateRef {
    Name(String),
    VmId(u32),
}

impl std::fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateRef::Name(n) => write!(f, "template {n:?}"),
            TemplateRef::VmId(id) => write!(f, "template VM {id}"),
        }
    }
}

impl ProxmoxSource {
    pub fn to_source(&self) -> Source {
        // Written out (not `to_value`) so it cannot fail; the round trip
        // through `from_native` is unit-tested.
        Source::Native(match self {
            ProxmoxSource::Template(TemplateRef::Name(n)) => {
                serde_json::json!({"template": {"name": n}})
            }
            ProxmoxSource::Template(TemplateRef::VmId(id)) => {
                serde_json::json!({"template": {"vm_id": id}})
            }
        })
    }

    pub fn from_native(v: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(v.clone()).ok()
    }
}

pub const ENV_ENDPOINT: &str = "PROXMOX_VE_ENDPOINT";
pub const ENV_API_TOKEN: &str = "PROXMOX_VE_API_TOKEN";
pub const ENV_INSECURE: &str = "PROXMOX_VE_INSECURE";

pub const DEFAULT_NODE: &str = "pve";
pub const DEFAULT_STORAGE: &str = "local-lvm";
pub const DEFAULT_IMPORT_STORAGE: &str = "local";
pub const DEFAULT_VMID_RANGE: (u32, u32) = (900_000, 999_999);
pub const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(300);

pub fn schema() -> Block {
    let token = secret(
        T::String,
        C::Optional,
        "API token `USER@REALM!TOKENID=SECRET` (sent as `Authorization: PVEAPIToken=...`). Env `PROXMOX_VE_API_TOKEN`. Sensitive: never logged, never in state.",
    );
    block(
        vec![
            ("endpoint", attr(T::String, C::Optional, "PVE API URL, e.g. `https://pve.example.com:8006`. Env `PROXMOX_VE_ENDPOINT`.")),
            ("api_token", token),
            ("insecure", attr(T::Bool, C::Optional, "Skip TLS certificate verification (PVE's default self-signed certificate). Env `PROXMOX_VE_INSECURE`. Default `false`.")),
            ("node", attr(T::String, C::Optional, "The node that builds and holds golden's templates. Default `pve`.")),
            ("storage", attr(T::String, C::Optional, "Storage for candidate and template disks (content `images`). Default `local-lvm`.")),
            ("import_storage", attr(T::String, C::Optional, "Storage with content type `import` where PVE downloads cloud images for `source.url`. Default `local`.")),
            ("vmid_range", attr(T::String, C::Optional, "`FIRST-LAST`: the VM ids golden may use for candidates and smoke-test clones. Default `900000-999999`.")),
            ("agent_timeout", attr(T::String, C::Optional, "How long a started VM's QEMU guest agent may take to answer before the step fails, e.g. `5m` (default).")),
        ],
        "The Proxmox VE platform: golden images are templates on a PVE cluster, built and tested through the API and the QEMU guest agent (no SSH).",
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

const KINDS: &[&str] = &["template", "vm_id", "url", "family"];
const ALLOWED: &[&str] = &["template", "vm_id", "url", "checksum", "family"];

fn source_attributes() -> Vec<(&'static str, tf_provider::schema::Attribute)> {
    vec![
        ("template", attr(T::String, C::Optional, "`proxmox` only: the name of an existing template to clone (must be unique in the cluster).")),
        ("vm_id", attr(T::Number, C::Optional, "`proxmox` only: the VM id of an existing template to clone.")),
        ("url", attr(T::String, C::Optional, "A disk image to download once and cache; requires `checksum`. `local` and `proxmox` (PVE downloads it itself; uncompressed images only).")),
        ("checksum", attr(T::String, C::Optional, "`sha256:<64 hex digits>` of the file at `url`.")),
    ]
}

fn parse_source(fields: &SourceFields, diags: &mut Diagnostics) -> Option<Option<Source>> {
    let Some(kind) = fields.chosen_kind(KINDS, ALLOWED, diags)? else {
        return Some(None);
    };
    Some(match kind {
        "template" => {
            let name = fields.string("template").unwrap_or_default();
            if name.trim().is_empty() {
                diags.error_short(
                    "source.template must not be empty",
                    SourceFields::path("template"),
                );
                return Some(None);
            }
            Some(ProxmoxSource::Template(TemplateRef::Name(name)).to_source())
        }
        "vm_id" => {
            let id = fields.number("vm_id").unwrap_or_default();
            match u32::try_from(id) {
                Ok(id) if (100..=999_999_999).contains(&id) => {
                    Some(ProxmoxSource::Template(TemplateRef::VmId(id)).to_source())
                }
                _ => {
                    diags.error(
                        "Invalid source.vm_id",
                        format!("a Proxmox VM id is between 100 and 999999999, got {id}"),
                        SourceFields::path("vm_id"),
                    );
                    return Some(None);
                }
            }
        }
        "url" => {
            let url = fields.string("url").unwrap_or_default();
            let compressed = [".xz", ".gz", ".bz2", ".zst", ".zip"]
                .iter()
                .any(|ext| url.to_ascii_lowercase().ends_with(ext));
            if compressed {
                diags.error(
                    "Unsupported Source",
                    "source.url on proxmox must be an uncompressed disk image (qcow2, raw or vmdk): \
                     PVE's import does not decompress",
                    SourceFields::path("url"),
                );
                return Some(None);
            }
            registry::url_source(fields, diags)
        }
        _ => registry::family_source(fields, diags),
    })
}

fn parse_range(raw: &str) -> Result<(u32, u32), String> {
    let (lo, hi) = raw
        .split_once('-')
        .ok_or_else(|| format!("{raw:?} must look like FIRST-LAST, e.g. 900000-999999"))?;
    let lo: u32 = lo
        .trim()
        .parse()
        .map_err(|_| format!("{lo:?} is not a VM id"))?;
    let hi: u32 = hi
        .trim()
        .parse()
        .map_err(|_| format!("{hi:?} is not a VM id"))?;
    if lo < 100 || hi > 999_999_999 || lo > hi {
        return Err(format!(
            "{lo}-{hi}: PVE VM ids run from 100 to 999999999 and FIRST must not exceed LAST"
        ));
    }
    if hi - lo < 1 {
        return Err("the range needs room for a candidate and a smoke-test clone at once".into());
    }
    Ok((lo, hi))
}

/// Checks what the config alone can show; unknown values are skipped.
pub fn validate(b: &ProxmoxBlock, diags: &mut Diagnostics) -> Option<()> {
    let before = diags.errors.len();
    if let Value::Value(e) = &b.endpoint {
        if let Err(why) = normalise_endpoint(e) {
            diags.error("Invalid Proxmox Endpoint", why, at("endpoint"));
        }
    }
    if let Value::Value(t) = &b.api_token {
        if let Err(why) = ApiToken::parse(t) {
            // Never echo the value: it is a secret, even when malformed.
            diags.error(
                "Invalid Proxmox API Token",
                format!("api_token {why}"),
                at("api_token"),
            );
        }
    }
    if let Value::Value(r) = &b.vmid_range {
        if let Err(why) = parse_range(r) {
            diags.error("Invalid vmid_range", why, at("vmid_range"));
        }
    }
    if let Value::Value(d) = &b.agent_timeout {
        if let Err(e) = duration::parse(d) {
            diags.error("Invalid agent_timeout", e.to_string(), at("agent_timeout"));
        }
    }
    for (name, v) in [
        ("node", &b.node),
        ("storage", &b.storage),
        ("import_storage", &b.import_storage),
    ] {
        if let Value::Value(s) = v {
            if s.trim().is_empty() || s.contains('/') {
                diags.error_short(format!("{name} must be a PVE {name} name"), at(name));
            }
        }
    }
    (diags.errors.len() == before).then_some(())
}

/// `Ok(None)` when neither the block nor the environment mention Proxmox.
/// `None` (outer) when the settings are wrong; the diagnostics say why.
pub fn configure(
    block: Option<&ProxmoxBlock>,
    diags: &mut Diagnostics,
) -> Option<Option<ProxmoxPlatform>> {
    let empty = ProxmoxBlock::default();
    let b = block.unwrap_or(&empty);
    let endpoint =
        registry::known_setting(&b.endpoint).or_else(|| registry::env_setting(ENV_ENDPOINT));
    if block.is_none() && endpoint.is_none() {
        return Some(None);
    }
    let Some(endpoint) = endpoint else {
        diags.error(
            "Missing Proxmox Endpoint",
            format!("set proxmox.endpoint or {ENV_ENDPOINT}, e.g. https://pve.example.com:8006"),
            at("endpoint"),
        );
        return None;
    };
    let Some(raw_token) =
        registry::known_setting(&b.api_token).or_else(|| registry::env_setting(ENV_API_TOKEN))
    else {
        if block.is_none() {
            // PROXMOX_VE_ENDPOINT alone is often left set for other tools
            // (bpg/proxmox with a password): not ours to fail on. A resource
            // on proxmox then reports the platform as not configured.
            tracing::warn!("{ENV_ENDPOINT} is set but {ENV_API_TOKEN} is not: the proxmox platform stays unconfigured");
            return Some(None);
        }
        diags.error(
            "Missing Proxmox API Token",
            format!("set proxmox.api_token or {ENV_API_TOKEN} (USER@REALM!TOKENID=SECRET)"),
            at("api_token"),
        );
        return None;
    };
    let token = match ApiToken::parse(&raw_token) {
        Ok(t) => t,
        Err(why) => {
            diags.error(
                "Invalid Proxmox API Token",
                format!("api_token {why}"),
                at("api_token"),
            );
            return None;
        }
    };
    let insecure = match &b.insecure {
        Value::Value(v) => *v,
        _ => registry::env_setting(ENV_INSECURE)
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
            .unwrap_or(false),
    };
    let vmid_range = match registry::known_setting(&b.vmid_range) {
        Some(r) => parse_range(&r).ok()?,
        None => DEFAULT_VMID_RANGE,
    };
    let agent_timeout = match registry::known_setting(&b.agent_timeout) {
        Some(d) => duration::parse(&d).ok()?,
        None => DEFAULT_AGENT_TIMEOUT,
    };
    let client = match ClientBuilder::new(&endpoint, token)
        .with_insecure(insecure)
        .build()
    {
        Ok(c) => c,
        Err(why) => {
            diags.error("Invalid Proxmox Endpoint", why, at("endpoint"));
            return None;
        }
    };
    let ledger_scope = registry::ledger_scope_of(client.endpoint());
    let config = ProxmoxConfig {
        node: registry::known_setting(&b.node).unwrap_or_else(|| DEFAULT_NODE.into()),
        storage: registry::known_setting(&b.storage).unwrap_or_else(|| DEFAULT_STORAGE.into()),
        import_storage: registry::known_setting(&b.import_storage)
            .unwrap_or_else(|| DEFAULT_IMPORT_STORAGE.into()),
        vmid_range,
        agent_timeout,
        ledger_scope,
    };
    tracing::info!(endpoint = client.endpoint(), node = %config.node, storage = %config.storage, insecure, "proxmox platform configured");
    Some(Some(ProxmoxPlatform::new(client, config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_sources_hash_as_before_the_registry() {
        // Recipe hashes of existing families must not change, or every
        // Proxmox family would rebuild on upgrade.
        use crate::lifecycle::recipe::{Provision, Recipe, SmokeSpec};
        for (source, hash) in [
            (
                TemplateRef::Name("debian-12-base".into()),
                "7221d943b9374388",
            ),
            (TemplateRef::VmId(9000), "9e17502eead1a0de"),
        ] {
            let r = Recipe {
                source: ProxmoxSource::Template(source).to_source(),
                provision: Provision::default(),
                smoke_test: SmokeSpec::default(),
            };
            assert_eq!(r.hash().unwrap(), hash);
            let Source::Native(v) = &r.source else {
                panic!("not native")
            };
            assert!(ProxmoxSource::from_native(v).is_some());
        }
    }

    #[test]
    fn vmid_ranges() {
        assert_eq!(parse_range("900000-999999"), Ok((900_000, 999_999)));
        assert_eq!(parse_range(" 200 - 299 "), Ok((200, 299)));
        for bad in ["", "100", "99-200", "300-200", "a-b", "100-100"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
