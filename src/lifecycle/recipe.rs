//! The recipe: everything that decides what an image contains and how it is
//! proven. Its hash is stored on every image; a different hash means a rebuild.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::naming::Family;

/// Bumped when a change in golden itself changes what a build produces; part of
/// the hash, so upgrading across it rebuilds every family.
pub const BUILDER_MAJOR: u32 = 1;

/// The version written into every image's metadata.
pub const BUILDER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What to build from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A disk image file on this machine.
    Path(PathBuf),
    /// A disk image downloaded once, verified against `checksum` (`sha256:<hex>`).
    Url { url: String, checksum: Checksum },
    /// The newest validated image of another family on the same platform.
    Family(Family),
    /// An image the platform already has (a Proxmox template, a
    /// DigitalOcean slug, a GCP image), in the platform's own encoding; the
    /// encoding is also what the recipe hash sees, so it must stay stable.
    #[serde(untagged)]
    Native(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checksum {
    pub algorithm: String,
    pub hex: String,
}

impl Checksum {
    /// Accepts `sha256:<64 hex>` (the only algorithm golden verifies).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (algo, hex) = raw
            .split_once(':')
            .ok_or_else(|| format!("{raw:?} must look like \"sha256:<64 hex digits>\""))?;
        if algo != "sha256" {
            return Err(format!(
                "unsupported checksum algorithm {algo:?}: use sha256"
            ));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a sha256 checksum has exactly 64 hex digits".into());
        }
        Ok(Checksum {
            algorithm: algo.into(),
            hex: hex.to_ascii_lowercase(),
        })
    }
}

/// What the provisioning step does inside the build VM, in this order:
/// packages, files, commands, services.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Provision {
    pub packages: Vec<String>,
    /// Guest path -> content.
    pub files: BTreeMap<String, String>,
    pub commands: Vec<String>,
    /// systemd units to enable.
    pub services: Vec<String>,
}

/// The smoke-test checks a user can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Boot,
    CloudInit,
    GuestAgent,
    Ssh,
    /// Opt-in: no package was installed behind the recipe's back.
    Minimal,
}

impl Check {
    pub const ALL: [Check; 5] = [
        Check::Boot,
        Check::CloudInit,
        Check::GuestAgent,
        Check::Ssh,
        Check::Minimal,
    ];

    /// Without `checks`: every check but the opt-in `minimal`.
    pub const DEFAULT: [Check; 4] = [Check::Boot, Check::CloudInit, Check::GuestAgent, Check::Ssh];

    pub fn as_str(self) -> &'static str {
        match self {
            Check::Boot => "boot",
            Check::CloudInit => "cloud_init",
            Check::GuestAgent => "guest_agent",
            Check::Ssh => "ssh",
            Check::Minimal => "minimal",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Check::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmokeSpec {
    pub checks: BTreeSet<Check>,
    pub commands: Vec<String>,
    #[serde(serialize_with = "secs")]
    pub timeout: Duration,
    /// cloud-init's "degraded" result passes only when this is set.
    pub allow_degraded: bool,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl Default for SmokeSpec {
    fn default() -> Self {
        SmokeSpec {
            checks: Check::DEFAULT.into_iter().collect(),
            commands: Vec::new(),
            timeout: Duration::from_secs(600),
            allow_degraded: false,
        }
    }
}

/// What a platform builds from: the recipe, and for a `source.family` the
/// parent image the pipeline resolved (the newest validated image of that
/// family, looked up once, before anything is created).
#[derive(Debug, Clone, Copy)]
pub struct BuildInput<'a> {
    pub recipe: &'a Recipe,
    pub parent: Option<&'a super::image::Image>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipe {
    pub source: Source,
    pub provision: Provision,
    pub smoke_test: SmokeSpec,
}

impl Recipe {
    /// A stable hash of the recipe plus the builder's major version: 16 hex digits,
    /// short enough for every platform's label values.
    pub fn hash(&self) -> Result<String, serde_json::Error> {
        #[derive(Serialize)]
        struct Hashed<'a> {
            builder_major: u32,
            recipe: &'a Recipe,
        }
        // serde_json writes struct fields in declaration order and BTree maps
        // sorted, so the encoding is canonical.
        let bytes = serde_json::to_vec(&Hashed {
            builder_major: BUILDER_MAJOR,
            recipe: self,
        })?;
        let digest = Sha256::digest(&bytes);
        Ok(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe() -> Recipe {
        Recipe {
            source: Source::Path("/var/lib/base.qcow2".into()),
            provision: Provision {
                packages: vec!["curl".into()],
                files: BTreeMap::from([("/etc/motd".into(), "hi".into())]),
                commands: vec!["true".into()],
                services: vec![],
            },
            smoke_test: SmokeSpec::default(),
        }
    }

    #[test]
    fn hash_is_stable_and_short() {
        let h = recipe().hash().unwrap();
        assert_eq!(h.len(), 16);
        assert_eq!(h, recipe().hash().unwrap());
    }

    #[test]
    fn every_part_of_the_recipe_changes_the_hash() {
        let base = recipe().hash().unwrap();
        let mut variants = Vec::new();
        let mut r = recipe();
        r.source = Source::Path("/other.qcow2".into());
        variants.push(r);
        let mut r = recipe();
        r.provision.packages.push("jq".into());
        variants.push(r);
        let mut r = recipe();
        r.provision.files.insert("/etc/issue".into(), "x".into());
        variants.push(r);
        let mut r = recipe();
        r.provision.commands.push("echo".into());
        variants.push(r);
        let mut r = recipe();
        r.provision.services.push("ssh".into());
        variants.push(r);
        let mut r = recipe();
        r.smoke_test.commands.push("true".into());
        variants.push(r);
        let mut r = recipe();
        r.smoke_test.timeout = Duration::from_secs(1);
        variants.push(r);
        for v in variants {
            assert_ne!(v.hash().unwrap(), base, "{v:?}");
        }
    }

    #[test]
    fn checksum_format() {
        let hex = "a".repeat(64);
        assert!(Checksum::parse(&format!("sha256:{hex}")).is_ok());
        assert!(Checksum::parse(&hex).is_err());
        assert!(Checksum::parse(&format!("md5:{hex}")).is_err());
        assert!(Checksum::parse("sha256:abc").is_err());
    }

    #[test]
    fn check_names_round_trip() {
        for c in Check::ALL {
            assert_eq!(Check::parse(c.as_str()), Some(c));
        }
        assert_eq!(Check::parse("ping"), None);
    }
}
