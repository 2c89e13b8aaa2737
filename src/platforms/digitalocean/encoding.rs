//! How golden's metadata lives on a DigitalOcean snapshot: image tags only
//! (a snapshot takes no description) plus its name.
//!
//! Every tag is `golden-<key>:<value>`, lower case, within DO's charset
//! `^[a-zA-Z0-9_\-\:]+$` and at most 255 characters. golden's own keys
//! (`golden-family`, `golden-status`, ...) keep their names; the user's
//! `tags` become `golden-tag-<key>:<value>` exactly as written, so they read
//! back unchanged: a user tag that cannot be stored so (a character outside
//! the charset, upper case, too long) is refused at plan by [`user_tag`],
//! never rewritten. Upper case is refused because DO matches tag names
//! case-insensitively and keeps the spelling of whoever created a tag first
//! ("case stable"), so `Prod` could read back as `prod`. golden's own values
//! are lower-cased; times are written `20250101t120000z`; the builder
//! version's dots become `_` and are restored on reading. A candidate (and a failed
//! image) carries `candidate-<name>` so that no name-based lookup of the
//! family (a regex on `^<family>-`) ever matches it, plus a
//! `golden-deadline` after which the sweep removes it.

use std::collections::{BTreeMap, BTreeSet};

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::lifecycle::metadata::{self, Metadata, Status};
use crate::lifecycle::naming::{Family, ImageName};

/// DO's limit on a tag.
pub const MAX_TAG: usize = 255;
/// Prefix of the user's tags.
const USER_PREFIX: &str = "golden-tag-";
/// On droplets a run creates: `golden-run:<run id>`.
pub const KEY_RUN: &str = "golden-run";
/// On candidates: when the run that made it gives up (the sweep's cue).
pub const KEY_DEADLINE: &str = "golden-deadline";
/// On build droplets: the image name they build, `golden-claim:<name>`: the
/// claim on a build number (earliest-claim rule).
pub const KEY_CLAIM: &str = "golden-claim";
/// On smoke-test droplets.
pub const TAG_SMOKE: &str = "golden-smoke";
/// On every droplet golden creates. Not the bare `golden`: a user may well
/// tag their own droplets so, and DO tag names are shared account-wide.
pub const TAG_MANAGED: &str = "golden-managed";

/// Is `tag` a tag DO accepts?
pub fn is_valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_TAG
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':'))
}

/// What a user's tag key may hold: no `:` (the first one separates key and
/// value) and no upper case (see the module note).
fn user_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-')
}

fn user_value_char(b: u8) -> bool {
    user_key_char(b) || b == b':'
}

/// The characters of `s` that `ok` refuses, each once, quoted for a message.
fn refused_chars(s: &str, ok: fn(u8) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    for c in s.chars() {
        let bad = !c.is_ascii() || !ok(c as u8);
        if bad && !seen.contains(&format!("{c:?}")) {
            seen.push(format!("{c:?}"));
        }
    }
    seen
}

/// The tag that stores the user's tag `key = value` exactly
/// (`golden-tag-<key>:<value>`), or why DigitalOcean cannot hold it.
pub fn user_tag(key: &str, value: &str) -> Result<String, String> {
    let mut why = Vec::new();
    let bad_key = refused_chars(key, user_key_char);
    if !bad_key.is_empty() {
        why.push(format!("the key has {}", bad_key.join(", ")));
    }
    let bad_value = refused_chars(value, user_value_char);
    if !bad_value.is_empty() {
        why.push(format!("the value has {}", bad_value.join(", ")));
    }
    let tag = format!("{USER_PREFIX}{key}:{value}");
    if tag.len() > MAX_TAG {
        why.push(format!(
            "it is stored as a {}-character tag (golden-tag-<key>:<value>)",
            tag.len()
        ));
    }
    if why.is_empty() {
        return Ok(tag);
    }
    Err(format!(
        "DigitalOcean cannot store this tag exactly: {}. golden keeps it as the image tag \
         golden-tag-<key>:<value>; DO tags allow only letters, digits, _, - and : (at most \
         {MAX_TAG} characters) and match names case-insensitively, so use lower-case letters, \
         digits, _ and - (and : in values), with key and value together at most {} characters",
        why.join("; "),
        MAX_TAG - USER_PREFIX.len() - 1
    ))
}

/// Maps text into the tag charset, lower case.
pub fn sanitize(raw: &str) -> String {
    let s: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

/// A key must not hold `:` (the first one separates key and value).
fn sanitize_key(raw: &str) -> String {
    sanitize(raw).replace(':', "_")
}

pub fn tag(key: &str, value: &str) -> String {
    let mut t = format!("{}:{}", sanitize_key(key), sanitize(value));
    // Cut at a character boundary (all ASCII after sanitizing).
    t.truncate(MAX_TAG);
    t
}

pub fn family_tag(family: &Family) -> String {
    tag(metadata::KEY_FAMILY, family.as_str())
}

pub fn status_tag(status: Status) -> String {
    tag(metadata::KEY_STATUS, status.as_str())
}

pub fn run_tag(run: &str) -> String {
    tag(KEY_RUN, run)
}

pub fn claim_tag(name: &ImageName) -> String {
    tag(KEY_CLAIM, &name.to_string())
}

/// `2025-01-01T12:00:00Z` -> `20250101t120000z`.
pub fn tag_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}t{:02}{:02}{:02}z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `golden-deadline:<t>` with `t` rounded up to the hour: runs ending in the
/// same hour share one account-wide tag instead of making one each (the
/// sweep waits at most an hour longer).
pub fn deadline_tag(t: OffsetDateTime) -> String {
    tag(KEY_DEADLINE, &tag_time(round_up_to_hour(t)))
}

fn round_up_to_hour(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    let hour = t
        .replace_minute(0)
        .and_then(|h| h.replace_second(0))
        .and_then(|h| h.replace_nanosecond(0))
        .unwrap_or(t);
    if hour == t {
        t
    } else {
        hour + time::Duration::HOUR
    }
}

/// The time of a `golden-deadline:<t>` tag.
pub fn deadline_of(tag: &str) -> Option<OffsetDateTime> {
    parse_tag_time(tag.strip_prefix(KEY_DEADLINE)?.strip_prefix(':')?)
}

/// `20250101t120000z` -> the time.
pub fn parse_tag_time(s: &str) -> Option<OffsetDateTime> {
    let fmt = format_description!("[year][month][day]t[hour][minute][second]z");
    PrimitiveDateTime::parse(s, &fmt)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// The name a snapshot carries in `status`: the image name once validated,
/// `candidate-<name>` before (and when it failed).
pub fn image_name(name: &ImageName, status: Status) -> String {
    match status {
        Status::Validated => name.to_string(),
        _ => format!("candidate-{name}"),
    }
}

/// The tags of an image with `meta` (plus a deadline for a candidate); the
/// error names a user tag that cannot be stored exactly (plan refuses those,
/// so this is the net under it, not a second rule).
pub fn tags_for(
    meta: &Metadata,
    deadline: Option<OffsetDateTime>,
) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    for (k, v) in meta.encode() {
        let t = if k == metadata::KEY_VALIDATED_AT {
            let at = OffsetDateTime::parse(&v, &Rfc3339)
                .map(tag_time)
                .unwrap_or_else(|_| v.clone());
            tag(&k, &at)
        } else if k == metadata::KEY_BUILDER_VERSION {
            tag(&k, &v.replace('.', "_"))
        } else if k.starts_with("golden-") {
            tag(&k, &v)
        } else {
            user_tag(&k, &v).map_err(|e| format!("tags[{k:?}]: {e}"))?
        };
        out.insert(t);
    }
    if let Some(d) = deadline {
        out.insert(deadline_tag(d));
    }
    Ok(out)
}

/// What golden's tags on an image say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub meta: Metadata,
    pub deadline: Option<OffsetDateTime>,
}

/// Reads golden's metadata back from an image's tags and name; `None` when
/// it is not golden's image of `family` (missing or malformed keys, a name
/// that is neither the image's nor its candidate name).
pub fn decode(tags: &[String], name: &str, family: &Family) -> Option<Decoded> {
    let mut flat = BTreeMap::new();
    let mut statuses = Vec::new();
    let mut deadline = None;
    for t in tags {
        let Some((k, v)) = t.split_once(':') else {
            continue;
        };
        if let Some(user) = k.strip_prefix(USER_PREFIX) {
            flat.insert(user.to_owned(), v.to_owned());
        } else if k == metadata::KEY_STATUS {
            // Publish adds `validated` before it removes `candidate`: both
            // may be there for a moment, and validated wins.
            statuses.extend(Status::parse(v));
        } else if k == KEY_DEADLINE {
            deadline = parse_tag_time(v);
        } else if k == metadata::KEY_VALIDATED_AT {
            let at = parse_tag_time(v)
                .map(rfc3339)
                .unwrap_or_else(|| v.to_owned());
            flat.insert(k.to_owned(), at);
        } else if k == metadata::KEY_BUILDER_VERSION {
            flat.insert(k.to_owned(), v.replace('_', "."));
        } else if k.starts_with("golden-") {
            flat.insert(k.to_owned(), v.to_owned());
        }
    }
    let status = [Status::Validated, Status::Failed, Status::Candidate]
        .into_iter()
        .find(|s| statuses.contains(s))?;
    flat.insert(metadata::KEY_STATUS.to_owned(), status.as_str().to_owned());
    let meta = Metadata::decode(&flat, family).ok()?;
    let named = [Status::Validated, Status::Candidate]
        .iter()
        .any(|s| image_name(&meta.name, *s) == name);
    named.then_some(Decoded { meta, deadline })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::naming::{BuildDate, NamingRules};

    fn family() -> Family {
        Family::parse("ubuntu-2404-minimal", NamingRules { allow_dot: false }).unwrap()
    }

    fn meta(status: Status) -> Metadata {
        Metadata {
            name: ImageName::new(family(), BuildDate::parse("20260102").unwrap(), 7),
            builder_version: "0.1.0".into(),
            recipe_hash: "0123456789abcdef".into(),
            status,
            validated_at: (status == Status::Validated).then(|| "2026-01-02T03:04:05Z".into()),
            tags: BTreeMap::from([
                ("os".into(), "ubuntu-24-04".into()),
                ("url".into(), "https:_x".into()),
                ("team".into(), "platform-infra".into()),
            ]),
        }
    }

    fn list(set: &BTreeSet<String>) -> Vec<String> {
        set.iter().cloned().collect()
    }

    #[test]
    fn deadline_tags_round_up_to_the_hour_so_runs_share_them() {
        let at = |s: &str| parse_tag_time(s).unwrap();
        assert_eq!(
            deadline_tag(at("20260101t120001z")),
            "golden-deadline:20260101t130000z"
        );
        assert_eq!(
            deadline_tag(at("20260101t125959z")),
            "golden-deadline:20260101t130000z"
        );
        assert_eq!(
            deadline_tag(at("20260101t120000z")),
            "golden-deadline:20260101t120000z"
        );
        assert_eq!(
            deadline_tag(at("20261231t233000z")),
            "golden-deadline:20270101t000000z"
        );
        assert_eq!(
            deadline_of("golden-deadline:20260101t130000z"),
            Some(at("20260101t130000z"))
        );
        assert_eq!(deadline_of("golden-deadline-x:20260101t130000z"), None);
        assert_eq!(deadline_of("golden-family:x"), None);
        assert_eq!(TAG_MANAGED, "golden-managed");
    }

    #[test]
    fn tags_round_trip_and_stay_within_dos_charset() {
        for status in [Status::Candidate, Status::Validated, Status::Failed] {
            let m = meta(status);
            let tags = tags_for(&m, None).unwrap();
            for t in &tags {
                assert!(is_valid_tag(t), "{t}");
                assert_eq!(t, &t.to_ascii_lowercase());
            }
            let name = image_name(&m.name, status);
            let back = decode(&list(&tags), &name, &family()).unwrap();
            // Exactly: the user's tags included, `:` in a value too.
            assert_eq!(back.meta, m);
        }
    }

    #[test]
    fn the_exact_tags_golden_writes() {
        let tags = tags_for(&meta(Status::Validated), None).unwrap();
        for t in [
            "golden-family:ubuntu-2404-minimal",
            "golden-status:validated",
            "golden-build-date:20260102",
            "golden-build-number:007",
            "golden-builder-version:0_1_0",
            "golden-recipe-hash:0123456789abcdef",
            "golden-validated-at:20260102t030405z",
            "golden-os:ubuntu-24-04",
            "golden-tag-os:ubuntu-24-04",
            "golden-tag-url:https:_x",
            "golden-tag-team:platform-infra",
        ] {
            assert!(tags.contains(t), "{t} missing from {tags:?}");
        }
    }

    #[test]
    fn user_tags_that_cannot_be_stored_exactly_are_refused_not_rewritten() {
        assert_eq!(
            user_tag("team", "infra:eu").unwrap(),
            "golden-tag-team:infra:eu"
        );
        let longest = "x".repeat(MAX_TAG - "golden-tag-k:".len());
        assert_eq!(user_tag("k", &longest).unwrap().len(), MAX_TAG);
        for (k, v, says) in [
            ("team", "platform infra", "the value has ' '"),
            ("os", "debian-12.5", "the value has '.'"),
            ("Team", "x", "the key has 'T'"),
            ("a:b", "x", "the key has ':'"),
            ("team", "Platform", "the value has 'P'"),
            ("k", "é", "the value has 'é'"),
        ] {
            let e = user_tag(k, v).unwrap_err();
            assert!(e.contains(says), "{k}={v}: {e}");
            assert!(e.contains("letters, digits, _, - and :"), "{e}");
        }
        let e = user_tag("k", &format!("{longest}x")).unwrap_err();
        assert!(e.contains("256-character tag"), "{e}");
        // The net under the plan check: tags_for refuses, naming the tag.
        let mut m = meta(Status::Candidate);
        m.tags.insert("team".into(), "Platform/Infra".into());
        let e = tags_for(&m, None).unwrap_err();
        assert!(e.starts_with("tags[\"team\"]"), "{e}");
    }

    #[test]
    fn times_use_dos_tag_form() {
        let t = OffsetDateTime::parse("2025-01-01T12:00:00Z", &Rfc3339).unwrap();
        assert_eq!(tag_time(t), "20250101t120000z");
        assert_eq!(parse_tag_time("20250101t120000z"), Some(t));
        assert_eq!(parse_tag_time("2025-01-01"), None);
        let deadline = tags_for(&meta(Status::Candidate), Some(t)).unwrap();
        let back = decode(
            &list(&deadline),
            "candidate-ubuntu-2404-minimal-20260102-007",
            &family(),
        )
        .unwrap();
        assert_eq!(back.deadline, Some(t));
    }

    #[test]
    fn validated_wins_while_publish_swaps_the_status() {
        let m = meta(Status::Validated);
        let mut tags = list(&tags_for(&m, None).unwrap());
        tags.push(status_tag(Status::Candidate));
        let back = decode(
            &tags,
            "candidate-ubuntu-2404-minimal-20260102-007",
            &family(),
        )
        .unwrap();
        assert_eq!(back.meta.status, Status::Validated);
    }

    #[test]
    fn foreign_images_are_not_ours() {
        let m = meta(Status::Validated);
        let tags = list(&tags_for(&m, None).unwrap());
        // Renamed by someone, another family, or missing keys.
        assert!(decode(&tags, "my-copy", &family()).is_none());
        let other = Family::parse("ubuntu-2404", NamingRules { allow_dot: false }).unwrap();
        assert!(decode(&tags, "ubuntu-2404-minimal-20260102-007", &other).is_none());
        let partial = vec![
            "golden-family:ubuntu-2404-minimal".to_owned(),
            "golden-status:validated".to_owned(),
        ];
        assert!(decode(&partial, "ubuntu-2404-minimal-20260102-007", &family()).is_none());
        assert!(decode(&tags, "ubuntu-2404-minimal-20260102-007", &family()).is_some());
    }

    #[test]
    fn candidates_never_carry_the_published_name() {
        let n = meta(Status::Candidate).name;
        assert_eq!(
            image_name(&n, Status::Candidate),
            "candidate-ubuntu-2404-minimal-20260102-007"
        );
        assert_eq!(
            image_name(&n, Status::Failed),
            image_name(&n, Status::Candidate)
        );
        assert_eq!(
            image_name(&n, Status::Validated),
            "ubuntu-2404-minimal-20260102-007"
        );
    }
}
