//! How the GCP platform describes itself to the registry: the provider's
//! `gcp` block (schema, plan-time checks with attribute paths, and
//! `configure`: block first, then `GOOGLE_*`, then the key file and
//! application-default credentials), its naming rule (RFC 1035: no `.`),
//! and its `source` attribute `image` (beside the shared `family`).
//!
//! As on DigitalOcean, where builds run (`zone`, `machine_type`, `network`,
//! `external_ip`) is the provider's, not the recipe's: it applies to every
//! kind of source and is not in the recipe hash, so moving builds to another
//! zone does not rebuild every family.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeConstraint as C, AttributeType as T, Block};
use tf_provider::value::{Value, ValueAny};
use tf_provider::{AttributePath, Diagnostics};

use super::client::{self, ClientConfig, Credentials, DEFAULT_ENDPOINT};
use super::{encoding, GcpConfig, GcpPlatform};
use crate::lifecycle::duration;
use crate::lifecycle::naming::NamingRules;
use crate::lifecycle::recipe::Source;
use crate::platforms::kit::http::Secret;
use crate::platforms::registry::{self, Configured, PlatformSpec, SourceFields};
use crate::tfschema::{attr, block, secret};

pub const SPEC: PlatformSpec = PlatformSpec {
    name: "gcp",
    naming: NamingRules { allow_dot: false },
    provider_block: schema,
    validate_block,
    configure: configure_platform,
    source_attributes,
    parse_source,
    check_source: registry::source_needs_no_check,
    check_recipe: encoding::check_recipe,
};

pub const ENV_PROJECT: &str = "GOOGLE_PROJECT";
pub const ENV_CLOUD_PROJECT: &str = "GOOGLE_CLOUD_PROJECT";
pub const ENV_ZONE: &str = "GOOGLE_ZONE";
pub const ENV_CREDENTIALS: &str = "GOOGLE_CREDENTIALS";

pub const DEFAULT_MACHINE_TYPE: &str = "e2-small";
pub const DEFAULT_NETWORK: &str = "global/networks/default";
pub const DEFAULT_POWER_OFF_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Clone, Default, Deserialize)]
pub struct GcpBlock {
    #[serde(default)]
    pub project: Value<String>,
    #[serde(default)]
    pub zone: Value<String>,
    #[serde(default)]
    pub credentials: Value<String>,
    #[serde(default)]
    pub api_endpoint: Value<String>,
    #[serde(default)]
    pub machine_type: Value<String>,
    #[serde(default)]
    pub network: Value<String>,
    #[serde(default)]
    pub external_ip: Value<bool>,
    #[serde(default)]
    pub power_off_timeout: Value<String>,
}

// Hand-written so the credentials can never reach a log line.
impl std::fmt::Debug for GcpBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpBlock")
            .field("project", &self.project)
            .field("zone", &self.zone)
            .field("credentials", &"***")
            .field("api_endpoint", &self.api_endpoint)
            .finish_non_exhaustive()
    }
}

/// What to build from, as the recipe (and its hash) records it:
/// `{"gcp": {"image": "projects/P/global/images/NAME"}}` or `.../family/F`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GcpSource {
    Gcp { image: String },
}

/// `source.image` as GCE takes it in `initializeParams.sourceImage`:
/// `projects/P/global/images/NAME` or `projects/P/global/images/family/F`.
pub fn source_image(v: &serde_json::Value) -> Option<String> {
    match serde_json::from_value::<GcpSource>(v.clone()).ok()? {
        GcpSource::Gcp { image } => Some(image),
    }
}

fn to_source(image: &str) -> Source {
    Source::Native(serde_json::json!({"gcp": {"image": image}}))
}

/// Normalises the forms a user may write to `projects/P/global/images/...`.
pub fn parse_image_ref(raw: &str) -> std::result::Result<String, String> {
    let s = raw.trim();
    let s = [
        "https://www.googleapis.com/compute/v1/",
        "https://compute.googleapis.com/compute/v1/",
    ]
    .iter()
    .find_map(|p| s.strip_prefix(p))
    .unwrap_or(s);
    let parts: Vec<&str> = s.split('/').collect();
    let ok_name = |n: &str| encoding::is_resource_name(n);
    let valid = match parts.as_slice() {
        ["projects", p, "global", "images", "family", f] => is_project(p) && ok_name(f),
        ["projects", p, "global", "images", n] => is_project(p) && ok_name(n),
        _ => false,
    };
    if valid {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{raw:?} is not a GCE image: write projects/PROJECT/global/images/NAME or projects/PROJECT/global/images/family/FAMILY (e.g. projects/debian-cloud/global/images/family/debian-12)"
        ))
    }
}

/// A project id: 6-30 characters, lower case, digits, `-` (and the domain
/// form `example.com:proj`).
fn is_project(p: &str) -> bool {
    let id = p.rsplit(':').next().unwrap_or(p);
    (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A zone name such as `europe-west1-b`.
fn is_zone(z: &str) -> bool {
    let parts: Vec<&str> = z.split('-').collect();
    parts.len() >= 3
        && z.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && parts.last().is_some_and(|l| l.len() == 1)
}

pub fn schema() -> Block {
    let credentials = secret(
        T::String,
        C::Optional,
        "A service-account key: the JSON itself or the path of its file. Env `GOOGLE_CREDENTIALS`. Without it, application-default credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC file, the metadata server). Sensitive: never logged, never in state.",
    );
    block(
        vec![
            ("project", attr(T::String, C::Optional, "The project images are built in. Env `GOOGLE_PROJECT`, else `GOOGLE_CLOUD_PROJECT`, else the key file's `project_id`.")),
            ("zone", attr(T::String, C::Optional, "The zone build and smoke-test instances run in, e.g. `europe-west1-b`. Env `GOOGLE_ZONE`. Required.")),
            ("credentials", credentials),
            ("api_endpoint", attr(T::String, C::Optional, "The Compute API root, default `https://compute.googleapis.com` (a simulator or a proxy otherwise; a trailing `/compute/v1/` is accepted).")),
            ("machine_type", attr(T::String, C::Optional, "The machine type of build and smoke-test instances. Default `e2-small`.")),
            ("network", attr(T::String, C::Optional, "The network of build and smoke-test instances. Default `global/networks/default`.")),
            ("external_ip", attr(T::Bool, C::Optional, "Give build and smoke-test instances an ephemeral external IP (so package installs work without Cloud NAT). Default `true`.")),
            ("power_off_timeout", attr(T::String, C::Optional, "How long provisioning may take before golden stops the build instance and fails the build, e.g. `30m` (default).")),
        ],
        "The GCP platform: golden images are Compute Engine images, built on an instance from user-data or a startup script, smoke-tested over the serial port, with their metadata in labels and the description.",
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

const KINDS: &[&str] = &["image", "family"];

fn source_attributes() -> Vec<(&'static str, tf_provider::schema::Attribute)> {
    vec![(
        "image",
        attr(
            T::String,
            C::Optional,
            "`gcp` only: the image to build from, `projects/PROJECT/global/images/NAME` or `projects/PROJECT/global/images/family/FAMILY` (the family's newest image at build time).",
        ),
    )]
}

fn parse_source(fields: &SourceFields, diags: &mut Diagnostics) -> Option<Option<Source>> {
    let Some(kind) = fields.chosen_kind(KINDS, KINDS, diags)? else {
        return Some(None);
    };
    Some(match kind {
        "image" => match parse_image_ref(&fields.string("image").unwrap_or_default()) {
            Ok(image) => Some(to_source(&image)),
            Err(e) => {
                diags.error("Invalid source.image", e, SourceFields::path("image"));
                return Some(None);
            }
        },
        _ => registry::family_source(fields, diags),
    })
}

/// Checks what the config alone can show; unknown values are skipped.
pub fn validate(b: &GcpBlock, diags: &mut Diagnostics) -> Option<()> {
    let before = diags.errors.len();
    if let Value::Value(e) = &b.api_endpoint {
        if let Err(why) = client::normalise_endpoint(e) {
            diags.error("Invalid GCP API Endpoint", why, at("api_endpoint"));
        }
    }
    if let Value::Value(p) = &b.project {
        if !is_project(p) {
            diags.error(
                "Invalid GCP Project",
                format!("project {p:?} is not a project id (6-30 lower-case letters, digits and '-', starting with a letter)"),
                at("project"),
            );
        }
    }
    if let Value::Value(z) = &b.zone {
        if !is_zone(z) {
            diags.error(
                "Invalid GCP Zone",
                format!("zone {z:?} is not a zone name (e.g. europe-west1-b)"),
                at("zone"),
            );
        }
    }
    if let Value::Value(c) = &b.credentials {
        if let Err(why) = read_credentials(c) {
            // Never echo the value: it is a secret, even when malformed.
            diags.error("Invalid GCP Credentials", why, at("credentials"));
        }
    }
    if let Value::Value(m) = &b.machine_type {
        if !encoding::is_resource_name(m) {
            diags.error(
                "Invalid machine_type",
                format!("{m:?} is not a machine type name (e.g. {DEFAULT_MACHINE_TYPE})"),
                at("machine_type"),
            );
        }
    }
    if let Value::Value(d) = &b.power_off_timeout {
        if let Err(e) = duration::parse(d) {
            diags.error(
                "Invalid power_off_timeout",
                e.to_string(),
                at("power_off_timeout"),
            );
        }
    }
    (diags.errors.len() == before).then_some(())
}

/// The key JSON from `credentials`: the JSON itself, or a file's path.
/// Errors never quote the value.
fn read_credentials(raw: &str) -> std::result::Result<Secret, String> {
    let trimmed = raw.trim();
    let json = if trimmed.starts_with('{') {
        trimmed.to_owned()
    } else {
        std::fs::read_to_string(trimmed).map_err(|e| {
            format!("credentials are neither key JSON nor a readable key file ({e})")
        })?
    };
    client::check_key_file(&json)?;
    Ok(Secret::new(json))
}

/// `Some(None)` when neither the block nor the environment mention GCP
/// (`GOOGLE_CREDENTIALS` or `GOOGLE_ZONE`: a project alone does not ask
/// for the platform). `None` (outer)
/// when the settings are wrong; the diagnostics say why.
pub fn configure(block: Option<&GcpBlock>, diags: &mut Diagnostics) -> Option<Option<GcpPlatform>> {
    let empty = GcpBlock::default();
    let b = block.unwrap_or(&empty);
    let raw_credentials =
        registry::known_setting(&b.credentials).or_else(|| registry::env_setting(ENV_CREDENTIALS));
    let zone = registry::known_setting(&b.zone).or_else(|| registry::env_setting(ENV_ZONE));
    if block.is_none() && raw_credentials.is_none() && zone.is_none() {
        return Some(None);
    }
    let (credentials, key_project) = match raw_credentials {
        Some(raw) => match read_credentials(&raw) {
            Ok(secret) => {
                let project = client::check_key_file(secret.expose())
                    .ok()
                    .and_then(|k| k.project_id);
                (Credentials::ServiceAccountKey(secret), project)
            }
            Err(why) => {
                diags.error("Invalid GCP Credentials", why, at("credentials"));
                return None;
            }
        },
        None => (Credentials::ApplicationDefault, None),
    };
    let project = registry::known_setting(&b.project)
        .or_else(|| registry::env_setting(ENV_PROJECT))
        .or_else(|| registry::env_setting(ENV_CLOUD_PROJECT))
        .or(key_project);
    let Some(project) = project else {
        diags.error(
            "Missing GCP Project",
            format!("set gcp.project or {ENV_PROJECT} (or {ENV_CLOUD_PROJECT}; a key file's project_id is used when present)"),
            at("project"),
        );
        return None;
    };
    let Some(zone) = zone else {
        diags.error(
            "Missing GCP Zone",
            format!("set gcp.zone or {ENV_ZONE} (e.g. europe-west1-b): build and smoke-test instances run there"),
            at("zone"),
        );
        return None;
    };
    let endpoint = match client::normalise_endpoint(
        &registry::known_setting(&b.api_endpoint).unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
    ) {
        Ok(e) => e,
        Err(why) => {
            diags.error("Invalid GCP API Endpoint", why, at("api_endpoint"));
            return None;
        }
    };
    let power_off_timeout = match registry::known_setting(&b.power_off_timeout) {
        Some(d) => duration::parse(&d).ok()?,
        None => DEFAULT_POWER_OFF_TIMEOUT,
    };
    let config = GcpConfig {
        machine_type: registry::known_setting(&b.machine_type)
            .unwrap_or_else(|| DEFAULT_MACHINE_TYPE.into()),
        network: registry::known_setting(&b.network).unwrap_or_else(|| DEFAULT_NETWORK.into()),
        external_ip: b.external_ip.as_ref_option().copied().unwrap_or(true),
        power_off_timeout,
        ledger_scope: format!("{}_{project}_{zone}", registry::ledger_scope_of(&endpoint)),
    };
    tracing::info!(%endpoint, %project, %zone, machine_type = %config.machine_type, "gcp platform configured");
    let client = client::Client::new(ClientConfig {
        endpoint,
        project,
        zone,
        credentials,
    });
    Some(Some(GcpPlatform::new(client, config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_normalise() {
        assert_eq!(
            parse_image_ref("https://www.googleapis.com/compute/v1/projects/debian-cloud/global/images/family/debian-12").unwrap(),
            "projects/debian-cloud/global/images/family/debian-12"
        );
        assert_eq!(
            parse_image_ref("projects/my-proj-1/global/images/web-20260101-001").unwrap(),
            "projects/my-proj-1/global/images/web-20260101-001"
        );
        for bad in [
            "debian-12",
            "projects/x/global/images/y",
            "projects/debian-cloud/global/images/Debian",
            "projects/debian-cloud/zones/a/disks/d",
        ] {
            assert!(parse_image_ref(bad).is_err(), "{bad}");
        }
        let src = to_source("projects/debian-cloud/global/images/family/debian-12");
        let Source::Native(v) = src else { panic!() };
        assert_eq!(
            source_image(&v).as_deref(),
            Some("projects/debian-cloud/global/images/family/debian-12")
        );
    }

    #[test]
    fn block_checks_name_the_attribute_and_never_echo_credentials() {
        let b = GcpBlock {
            project: Value::Value("X".into()),
            zone: Value::Value("europe".into()),
            credentials: Value::Value(
                "{\"type\": \"service_account\", \"private_key\": \"TOPSECRET".into(),
            ),
            api_endpoint: Value::Value("compute.googleapis.com".into()),
            machine_type: Value::Value("E2 Small".into()),
            power_off_timeout: Value::Value("soon".into()),
            ..GcpBlock::default()
        };
        let mut d = Diagnostics::default();
        assert!(validate(&b, &mut d).is_none());
        let text = format!("{:?}", d.errors);
        for attr in [
            "project",
            "zone",
            "credentials",
            "api_endpoint",
            "machine_type",
            "power_off_timeout",
        ] {
            assert!(text.contains(attr), "{attr} not named in {text}");
        }
        assert!(!text.contains("TOPSECRET"), "the key was echoed");
    }

    #[test]
    fn zones_and_projects() {
        assert!(is_zone("europe-west1-b"));
        assert!(is_zone("us-central1-a"));
        assert!(!is_zone("europe-west1"));
        assert!(is_project("golden-sim"));
        assert!(!is_project("ab"));
    }
}
