//! Image names: `{family}-{YYYYMMDD}-{NNN}` and the rules a family name must follow.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest family a user may choose: leaves room for `-YYYYMMDD-NNN` inside the
/// 63-character limits of GCP names and labels.
pub const MAX_FAMILY_LEN: usize = 50;

/// What a platform's image names allow beyond `[a-z0-9-]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamingRules {
    /// GCP names follow RFC 1035 and forbid dots; the other platforms accept them.
    pub allow_dot: bool,
}

/// A validated family name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Family(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_FAMILY_LEN} characters, got {0}")]
    TooLong(usize),
    #[error("must start with a lowercase letter")]
    BadStart,
    #[error("must end with a lowercase letter or a digit")]
    BadEnd,
    #[error("must have a letter or digit on both sides of every '.'")]
    BadLabel,
    #[error("may contain only lowercase letters, digits and '-'{dot}, found {found:?}")]
    BadChar { found: char, dot: &'static str },
    #[error("{0:?} is not an image name of family {1:?} (expected {1}-YYYYMMDD-NNN)")]
    NotOfFamily(String, String),
}

impl Family {
    pub fn parse(raw: &str, rules: NamingRules) -> Result<Self, NameError> {
        let first = raw.chars().next().ok_or(NameError::Empty)?;
        if raw.len() > MAX_FAMILY_LEN {
            return Err(NameError::TooLong(raw.len()));
        }
        if !first.is_ascii_lowercase() {
            return Err(NameError::BadStart);
        }
        let dot = if rules.allow_dot { " or '.'" } else { "" };
        for c in raw.chars() {
            let ok = c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '-'
                || (c == '.' && rules.allow_dot);
            if !ok {
                return Err(NameError::BadChar { found: c, dot });
            }
        }
        if raw.ends_with(['-', '.']) {
            return Err(NameError::BadEnd);
        }
        // Names become DNS names (PVE VM names): every dot-separated label
        // starts and ends with a letter or digit.
        if raw.contains("..") || raw.contains(".-") || raw.contains("-.") {
            return Err(NameError::BadLabel);
        }
        Ok(Family(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Family {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        // Stored names were validated when written; accept dots so that reading
        // never rejects what a dot-friendly platform wrote.
        Family::parse(&s, NamingRules { allow_dot: true })
    }
}

impl From<Family> for String {
    fn from(f: Family) -> String {
        f.0
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A UTC calendar day, the date part of an image name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuildDate {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl BuildDate {
    pub fn from_offset(t: time::OffsetDateTime) -> Self {
        let t = t.to_offset(time::UtcOffset::UTC);
        BuildDate {
            year: t.year() as u16,
            month: t.month() as u8,
            day: t.day(),
        }
    }

    pub fn today() -> Self {
        Self::from_offset(time::OffsetDateTime::now_utc())
    }

    /// Parses `YYYYMMDD`, rejecting impossible dates.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year: u16 = s[0..4].parse().ok()?;
        let month: u8 = s[4..6].parse().ok()?;
        let day: u8 = s[6..8].parse().ok()?;
        let m = time::Month::try_from(month).ok()?;
        time::Date::from_calendar_date(year as i32, m, day).ok()?;
        Some(BuildDate { year, month, day })
    }

    /// Midnight UTC at the start of this day.
    pub fn start(&self) -> time::OffsetDateTime {
        let m = time::Month::try_from(self.month).unwrap_or(time::Month::January);
        let d = time::Date::from_calendar_date(self.year as i32, m, self.day)
            .unwrap_or(time::Date::MIN);
        d.midnight().assume_utc()
    }
}

impl fmt::Display for BuildDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}{:02}{:02}", self.year, self.month, self.day)
    }
}

/// The highest per-day build number a name can carry (three digits).
pub const MAX_BUILD_NUMBER: u16 = 999;

/// `{family}-{YYYYMMDD}-{NNN}`. Ordered by version: build date, then build number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageName {
    pub family: Family,
    pub date: BuildDate,
    pub build: u16,
}

impl ImageName {
    pub fn new(family: Family, date: BuildDate, build: u16) -> Self {
        ImageName {
            family,
            date,
            build,
        }
    }

    /// Parses a name that must belong to `family`. A name of another family that
    /// shares the prefix (`web` vs `web-api`) is rejected because the rest must be
    /// exactly `YYYYMMDD-NNN`.
    pub fn parse(name: &str, family: &Family) -> Result<Self, NameError> {
        let err = || NameError::NotOfFamily(name.to_owned(), family.to_string());
        let rest = name
            .strip_prefix(family.as_str())
            .and_then(|r| r.strip_prefix('-'))
            .ok_or_else(err)?;
        let (date, build) = rest.split_once('-').ok_or_else(err)?;
        let date = BuildDate::parse(date).ok_or_else(err)?;
        if build.len() != 3 || !build.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let build: u16 = build.parse().map_err(|_| err())?;
        if build == 0 {
            return Err(err());
        }
        Ok(ImageName {
            family: family.clone(),
            date,
            build,
        })
    }

    pub fn version(&self) -> (BuildDate, u16) {
        (self.date, self.build)
    }
}

impl PartialOrd for ImageName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ImageName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.version()
            .cmp(&other.version())
            .then_with(|| self.family.cmp(&other.family))
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{:03}", self.family, self.date, self.build)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOTS: NamingRules = NamingRules { allow_dot: true };
    const RFC1035: NamingRules = NamingRules { allow_dot: false };

    fn fam(s: &str) -> Family {
        Family::parse(s, DOTS).unwrap()
    }

    #[test]
    fn family_rules_table() {
        let cases: &[(&str, NamingRules, Option<NameError>)] = &[
            ("debian-12-minimal", RFC1035, None),
            ("ubuntu-24.04-minimal", DOTS, None),
            (
                "ubuntu-24.04-minimal",
                RFC1035,
                Some(NameError::BadChar {
                    found: '.',
                    dot: "",
                }),
            ),
            ("", DOTS, Some(NameError::Empty)),
            ("12-debian", DOTS, Some(NameError::BadStart)),
            ("Debian", DOTS, Some(NameError::BadStart)),
            (
                "debian_12",
                DOTS,
                Some(NameError::BadChar {
                    found: '_',
                    dot: " or '.'",
                }),
            ),
            ("debian-", DOTS, Some(NameError::BadEnd)),
            ("debian.", DOTS, Some(NameError::BadEnd)),
            ("ubuntu-24..04", DOTS, Some(NameError::BadLabel)),
            ("ubuntu-.04", DOTS, Some(NameError::BadLabel)),
            ("ubuntu.-04", DOTS, Some(NameError::BadLabel)),
        ];
        for (raw, rules, want) in cases {
            assert_eq!(Family::parse(raw, *rules).err(), *want, "family {raw:?}");
        }
        let long = "a".repeat(51);
        assert_eq!(Family::parse(&long, DOTS), Err(NameError::TooLong(51)));
        assert!(Family::parse(&"a".repeat(50), DOTS).is_ok());
    }

    #[test]
    fn name_formats_with_zero_padding() {
        let n = ImageName::new(fam("debian-12"), BuildDate::parse("20261124").unwrap(), 7);
        assert_eq!(n.to_string(), "debian-12-20261124-007");
    }

    #[test]
    fn name_round_trips() {
        let f = fam("debian-12-minimal");
        let n = ImageName::parse("debian-12-minimal-20260101-012", &f).unwrap();
        assert_eq!(n.build, 12);
        assert_eq!(n.to_string(), "debian-12-minimal-20260101-012");
    }

    #[test]
    fn name_of_a_longer_family_is_not_ours() {
        let web = fam("web");
        assert!(ImageName::parse("web-api-20260101-001", &web).is_err());
        assert!(ImageName::parse("web-20260101-001", &web).is_ok());
    }

    #[test]
    fn malformed_names_are_rejected() {
        let f = fam("base");
        for bad in [
            "base-2026011-001",
            "base-20261301-001",
            "base-20260230-001",
            "base-20260101-01",
            "base-20260101-000",
            "base-20260101-0001",
            "base-20260101-001.qcow2",
            "other-20260101-001",
        ] {
            assert!(ImageName::parse(bad, &f).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn version_order_is_date_then_build_number() {
        let f = fam("base");
        let mut names: Vec<ImageName> = [
            "base-20260102-001",
            "base-20260101-010",
            "base-20260101-002",
        ]
        .iter()
        .map(|s| ImageName::parse(s, &f).unwrap())
        .collect();
        names.sort();
        let got: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            got,
            [
                "base-20260101-002",
                "base-20260101-010",
                "base-20260102-001"
            ]
        );
    }

    #[test]
    fn build_date_from_utc_time() {
        let t = time::macros::datetime!(2026-11-24 23:30 -02:00);
        assert_eq!(BuildDate::from_offset(t).to_string(), "20261125");
    }
}
