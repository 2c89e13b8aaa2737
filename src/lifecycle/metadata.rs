//! The metadata every golden image carries, and its flat key/value encoding.
//!
//! Platforms store the flat form in whatever they have (a JSON sidecar, tags,
//! labels, a description); this module is the single place that knows the keys.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::naming::{BuildDate, Family, ImageName};

pub const KEY_FAMILY: &str = "golden-family";
pub const KEY_OS: &str = "golden-os";
pub const KEY_TYPE: &str = "golden-type";
pub const KEY_BUILD_DATE: &str = "golden-build-date";
pub const KEY_BUILD_NUMBER: &str = "golden-build-number";
pub const KEY_BUILDER_VERSION: &str = "golden-builder-version";
pub const KEY_RECIPE_HASH: &str = "golden-recipe-hash";
pub const KEY_STATUS: &str = "golden-status";
pub const KEY_VALIDATED_AT: &str = "golden-validated-at";

/// Where an image stands in the pipeline. Only `Validated` images are ever
/// returned by a validated lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Candidate,
    Validated,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Candidate => "candidate",
            Status::Validated => "validated",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "candidate" => Some(Status::Candidate),
            "validated" => Some(Status::Validated),
            "failed" => Some(Status::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub name: ImageName,
    pub builder_version: String,
    pub recipe_hash: String,
    pub status: Status,
    /// RFC 3339, set when the smoke test passed.
    pub validated_at: Option<String>,
    /// The user's `tags`; `os` and `type` also become `golden-os` / `golden-type`.
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Not written by golden, or written for another family: invisible to us.
    #[error("not a golden image of this family")]
    NotOurs,
    #[error("golden metadata key {0} is missing or malformed")]
    Malformed(&'static str),
}

impl Metadata {
    pub fn family(&self) -> &Family {
        &self.name.family
    }

    /// The flat encoding: golden's keys plus the user's tags (user tags never
    /// override golden's keys).
    pub fn encode(&self) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = self
            .tags
            .iter()
            .filter(|(k, _)| !k.starts_with("golden-"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_owned(), v);
        };
        put(KEY_FAMILY, self.name.family.to_string());
        put(KEY_BUILD_DATE, self.name.date.to_string());
        put(KEY_BUILD_NUMBER, format!("{:03}", self.name.build));
        put(KEY_BUILDER_VERSION, self.builder_version.clone());
        put(KEY_RECIPE_HASH, self.recipe_hash.clone());
        put(KEY_STATUS, self.status.as_str().to_owned());
        if let Some(os) = self.tags.get("os") {
            put(KEY_OS, os.clone());
        }
        if let Some(ty) = self.tags.get("type") {
            put(KEY_TYPE, ty.clone());
        }
        if let Some(at) = &self.validated_at {
            put(KEY_VALIDATED_AT, at.clone());
        }
        m
    }

    /// Decodes the flat form, accepting it only if it says golden built it for
    /// `family`. This is the "only our own" gate for retention and destroy.
    pub fn decode(m: &BTreeMap<String, String>, family: &Family) -> Result<Self, DecodeError> {
        let fam = m.get(KEY_FAMILY).ok_or(DecodeError::NotOurs)?;
        if fam != family.as_str() {
            return Err(DecodeError::NotOurs);
        }
        let get = |k: &'static str| m.get(k).ok_or(DecodeError::Malformed(k));
        let date =
            BuildDate::parse(get(KEY_BUILD_DATE)?).ok_or(DecodeError::Malformed(KEY_BUILD_DATE))?;
        let build: u16 = get(KEY_BUILD_NUMBER)?
            .parse()
            .map_err(|_| DecodeError::Malformed(KEY_BUILD_NUMBER))?;
        let status = Status::parse(get(KEY_STATUS)?).ok_or(DecodeError::Malformed(KEY_STATUS))?;
        let tags = m
            .iter()
            .filter(|(k, _)| !k.starts_with("golden-"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Metadata {
            name: ImageName::new(family.clone(), date, build),
            builder_version: get(KEY_BUILDER_VERSION)?.clone(),
            recipe_hash: get(KEY_RECIPE_HASH)?.clone(),
            status,
            validated_at: m.get(KEY_VALIDATED_AT).cloned(),
            tags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::naming::NamingRules;

    fn sample() -> Metadata {
        let family = Family::parse("debian-12-minimal", NamingRules { allow_dot: true }).unwrap();
        Metadata {
            name: ImageName::new(family, BuildDate::parse("20261124").unwrap(), 3),
            builder_version: "0.1.0".into(),
            recipe_hash: "abc123".into(),
            status: Status::Validated,
            validated_at: Some("2026-11-24T10:00:00Z".into()),
            tags: BTreeMap::from([
                ("os".into(), "debian-12".into()),
                ("team".into(), "platform".into()),
            ]),
        }
    }

    #[test]
    fn codec_round_trips() {
        let m = sample();
        let flat = m.encode();
        assert_eq!(flat[KEY_FAMILY], "debian-12-minimal");
        assert_eq!(flat[KEY_BUILD_NUMBER], "003");
        assert_eq!(flat[KEY_OS], "debian-12");
        assert_eq!(flat["team"], "platform");
        assert_eq!(Metadata::decode(&flat, m.family()).unwrap(), m);
    }

    #[test]
    fn foreign_or_other_family_is_not_ours() {
        let m = sample();
        let other = Family::parse("debian-12", NamingRules { allow_dot: true }).unwrap();
        assert_eq!(
            Metadata::decode(&m.encode(), &other),
            Err(DecodeError::NotOurs)
        );
        assert_eq!(
            Metadata::decode(&BTreeMap::new(), m.family()),
            Err(DecodeError::NotOurs)
        );
    }

    #[test]
    fn malformed_metadata_is_reported_by_key() {
        let m = sample();
        let mut flat = m.encode();
        flat.insert(KEY_STATUS.into(), "shiny".into());
        assert_eq!(
            Metadata::decode(&flat, m.family()),
            Err(DecodeError::Malformed(KEY_STATUS))
        );
    }

    #[test]
    fn user_tags_cannot_forge_golden_keys() {
        let mut m = sample();
        m.tags.insert(KEY_STATUS.into(), "candidate".into());
        assert_eq!(m.encode()[KEY_STATUS], "validated");
    }
}
