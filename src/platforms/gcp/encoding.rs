//! How golden's metadata lives on a Google Compute Engine image: labels for
//! filtering (and as a fallback), plus the full metadata and the smoke-test
//! report as JSON in the image's `description`.
//!
//! Labels follow GCE's rules: at most [`MAX_LABELS`] on a resource, keys
//! `[a-z][a-z0-9_-]{0,62}`, values `[a-z0-9_-]{0,63}` (no `.`, `:` or capitals).
//! GCE also accepts international lower-case letters in both; golden refuses
//! anything outside ASCII to keep the rule simple and checkable at plan.
//! golden's own keys (`golden-family`, `golden-status`, ...) keep the names
//! of [`metadata`]; the user's `tags` are stored as labels of their own
//! (`team = "core"` becomes the label `team=core`) exactly when they fit, and
//! are refused at plan by [`check_recipe`] otherwise, never rewritten.
//!
//! golden's values are shaped to fit: the builder version's dots become `-`
//! (`0.1.0` -> `0-1-0`), the recipe hash is cut to its first
//! [`RECIPE_HASH_LABEL_LEN`] hex digits, times are written `20250101t120000z`.
//! The description holds them unshortened and is authoritative when it parses
//! and agrees with the labels and the image name; the labels are the list
//! filter ([`family_filter`]) and the fallback when the description is missing
//! or damaged. The status is the exception: it is always read from the
//! `golden-status` label, because publish and mark-failed change the labels
//! (`setLabels`, fingerprinted) and the description may lag.
//!
//! On GCE an image carries its final name `{family}-{YYYYMMDD}-{NNN}` from
//! the start (images cannot be renamed); a candidate never joins the GCE
//! image family, so family lookups never see it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tf_provider::AttributePath;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::lifecycle::metadata::{self, Metadata, Status};
use crate::lifecycle::naming::{BuildDate, Family, ImageName, MAX_FAMILY_LEN};
use crate::lifecycle::report::Report;
use crate::platforms::registry::{RecipeParts, RecipeProblem};

/// GCE's limit on the labels of one resource.
pub const MAX_LABELS: usize = 64;
/// GCE's limit on a label key, and on a label value.
pub const MAX_LABEL_LEN: usize = 63;
/// GCE's limit on a resource name (RFC 1035).
pub const MAX_NAME_LEN: usize = 63;
/// The longest `description` golden writes on an image. compute.v1.json and
/// Google's image reference state no maximum for `Image.description`, and no
/// authoritative figure was found (searched: the API reference, Google's
/// docs, issue threads); 2048 is the conservative value assumed here until one
/// is. [`description_for`] keeps within it by shortening
/// the report, never the metadata, and [`check_recipe`] refuses tags whose
/// metadata alone would not fit.
pub const MAX_DESCRIPTION: usize = 2048;
/// How many leading characters of the recipe hash the label keeps. The
/// description keeps the whole hash; compare with [`hash_matches`].
pub const RECIPE_HASH_LABEL_LEN: usize = 32;

pub const KEY_FAMILY: &str = metadata::KEY_FAMILY;
pub const KEY_STATUS: &str = metadata::KEY_STATUS;
pub const KEY_BUILD_DATE: &str = metadata::KEY_BUILD_DATE;
pub const KEY_BUILD_NUMBER: &str = metadata::KEY_BUILD_NUMBER;
pub const KEY_BUILDER_VERSION: &str = metadata::KEY_BUILDER_VERSION;
pub const KEY_RECIPE_HASH: &str = metadata::KEY_RECIPE_HASH;
pub const KEY_VALIDATED_AT: &str = metadata::KEY_VALIDATED_AT;
pub const KEY_OS: &str = metadata::KEY_OS;
pub const KEY_TYPE: &str = metadata::KEY_TYPE;
/// On candidate images, build/smoke instances and their disks: when the
/// sweep may remove the resource (its run has given up by then).
pub const KEY_EXPIRES: &str = "golden-expires";
/// On instances and disks a run creates: the run's id.
pub const KEY_RUN: &str = "golden-run";
/// On build instances (and their disks): the image name they build, the
/// claim on a build number (earliest-claim rule).
pub const KEY_CLAIM: &str = "golden-claim";
/// On every instance and disk golden creates, value [`MANAGED`]. Not on
/// images: those are found by `golden-family`.
pub const KEY_MANAGED: &str = "golden-managed";
/// The value of [`KEY_MANAGED`].
pub const MANAGED: &str = "true";
/// On instances and disks: what they are for, see [`Role`].
pub const KEY_ROLE: &str = "golden-role";

/// Why golden made an instance (and its boot disk): the value of [`KEY_ROLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `golden-build-<run>`: provisions the image's disk.
    Build,
    /// `golden-smoke-<run>`: boots the candidate image for the smoke test.
    Smoke,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Build => "build",
            Role::Smoke => "smoke",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "build" => Some(Role::Build),
            "smoke" => Some(Role::Smoke),
            _ => None,
        }
    }
}

fn value_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-')
}

/// Is `key` a label key GCE accepts (ASCII only, see the module note)?
pub fn is_label_key(key: &str) -> bool {
    key.len() <= MAX_LABEL_LEN
        && key.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && key.bytes().all(value_char)
}

/// Is `value` a label value GCE accepts (ASCII only, see the module note)?
pub fn is_label_value(value: &str) -> bool {
    value.len() <= MAX_LABEL_LEN && value.bytes().all(value_char)
}

/// Is `name` a resource name GCE accepts: RFC 1035,
/// `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`?
pub fn is_resource_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// The characters of `s` that `ok` refuses, each once, quoted for a message.
fn refused_chars(s: &str, ok: fn(u8) -> bool) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for c in s.chars() {
        let q = format!("{c:?}");
        if (!c.is_ascii() || !ok(c as u8)) && !seen.contains(&q) {
            seen.push(q);
        }
    }
    seen
}

/// Why the user's tag `key = value` cannot be stored exactly as the GCE
/// label `key=value` (the offending characters, the length, the first
/// character), or `None` when it can. Keys starting with `golden-` are
/// reserved; the shared reserved-key error reports those, not this.
pub fn user_label_problem(key: &str, value: &str) -> Option<String> {
    let mut why = Vec::new();
    match key.chars().next() {
        None => why.push("the key is empty".to_owned()),
        Some(c) if !c.is_ascii_lowercase() => why.push(format!(
            "the key starts with {c:?}, not a lower-case letter"
        )),
        Some(_) => {}
    }
    let bad_key = refused_chars(key, value_char);
    if !bad_key.is_empty() {
        why.push(format!("the key has {}", bad_key.join(", ")));
    }
    if key.len() > MAX_LABEL_LEN {
        why.push(format!("the key is {} characters long", key.len()));
    }
    let bad_value = refused_chars(value, value_char);
    if !bad_value.is_empty() {
        why.push(format!("the value has {}", bad_value.join(", ")));
    }
    if value.len() > MAX_LABEL_LEN {
        why.push(format!("the value is {} characters long", value.len()));
    }
    if why.is_empty() {
        return None;
    }
    Some(format!(
        "Google Compute Engine cannot store this tag exactly: {}. golden keeps each tag as an \
         image label key=value; a label key is a lower-case letter followed by lower-case \
         letters, digits, _ and -, a value holds lower-case letters, digits, _ and - (it may be \
         empty), each at most {MAX_LABEL_LEN} characters; no '.', ':', spaces or capitals \
         (GCE also allows international lower-case letters, golden accepts ASCII only)",
        why.join("; ")
    ))
}

/// `2025-01-01T12:00:00Z` -> `20250101t120000z` (UTC, whole seconds).
pub fn label_time(t: OffsetDateTime) -> String {
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

/// `20250101t120000z` -> the time.
pub fn parse_label_time(s: &str) -> Option<OffsetDateTime> {
    let fmt = format_description!("[year][month][day]t[hour][minute][second]z");
    PrimitiveDateTime::parse(s, &fmt)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `0.1.0` -> `0-1-0`; anything else outside the value charset also becomes
/// `-` (a pre-release `0.2.0-rc.1` reads back from a label as `0.2.0.rc.1`:
/// only the labels fallback loses that, the description keeps it).
fn version_label(v: &str) -> String {
    let mut s: String = v
        .to_ascii_lowercase()
        .bytes()
        .map(|b| if value_char(b) { b as char } else { '-' })
        .collect();
    s.truncate(MAX_LABEL_LEN);
    s
}

/// Does a stored recipe hash (`stored`, from an image) say the recipe is
/// the one hashed to `full`? An image decoded from its labels only carries
/// the first [`RECIPE_HASH_LABEL_LEN`] characters of the hash, so a prefix of
/// exactly that length matches too: "recipe changed" is then decided on
/// 128 bits (32 hex digits) instead of the whole hash, which is as good in
/// practice. Today's hash is shorter than the cut (16 hex digits, see
/// `Recipe::hash`), so the label holds it whole and this is plain equality.
pub fn hash_matches(stored: &str, full: &str) -> bool {
    stored == full || (stored.len() == RECIPE_HASH_LABEL_LEN && full.starts_with(stored))
}

/// golden's own labels on an image with `meta` (no user tags).
fn golden_labels(
    meta: &Metadata,
    expires: Option<OffsetDateTime>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        out.insert(k.to_owned(), v);
    };
    put(KEY_FAMILY, meta.name.family.to_string());
    put(KEY_STATUS, meta.status.as_str().to_owned());
    put(KEY_BUILD_DATE, meta.name.date.to_string());
    put(KEY_BUILD_NUMBER, format!("{:03}", meta.name.build));
    put(KEY_BUILDER_VERSION, version_label(&meta.builder_version));
    put(
        KEY_RECIPE_HASH,
        meta.recipe_hash
            .chars()
            .take(RECIPE_HASH_LABEL_LEN)
            .collect(),
    );
    if let Some(os) = meta.tags.get("os") {
        put(KEY_OS, os.clone());
    }
    if let Some(ty) = meta.tags.get("type") {
        put(KEY_TYPE, ty.clone());
    }
    if let Some(at) = &meta.validated_at {
        let t = OffsetDateTime::parse(at, &Rfc3339)
            .map_err(|_| format!("{KEY_VALIDATED_AT} {at:?} is not an RFC 3339 time"))?;
        put(KEY_VALIDATED_AT, label_time(t));
    }
    if let Some(t) = expires {
        put(KEY_EXPIRES, label_time(t));
    }
    for (k, v) in &out {
        if !is_label_value(v) {
            return Err(format!(
                "golden's label {k}={v:?} is not a valid GCE label value"
            ));
        }
    }
    Ok(out)
}

/// The labels of an image with `meta`: golden's (plus `golden-expires` on a
/// candidate) and the user's tags as they are. The error names what cannot be
/// stored: a user tag (`tags["team"]: ...`), golden's own value, or more than
/// [`MAX_LABELS`] labels. Plan refuses those ([`check_recipe`]), so this is
/// the net under it, not a second rule. User tags starting with `golden-` are
/// not written (they are refused at plan; they never override golden's keys).
pub fn labels_for(
    meta: &Metadata,
    expires: Option<OffsetDateTime>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = golden_labels(meta, expires)?;
    for (k, v) in meta.tags.iter().filter(|(k, _)| !k.starts_with("golden-")) {
        if let Some(why) = user_label_problem(k, v) {
            return Err(format!("tags[{k:?}]: {why}"));
        }
        out.insert(k.clone(), v.clone());
    }
    if out.len() > MAX_LABELS {
        return Err(format!(
            "the image would carry {} labels, GCE allows {MAX_LABELS}",
            out.len()
        ));
    }
    Ok(out)
}

/// The labels of an instance (or disk) golden creates for a run: managed,
/// its role, the run, when the sweep may remove it, and for a build the image
/// name it claims. `None` when `run` is not a label value (golden's run ids,
/// lower-case hex and `-`, always are).
pub fn resource_labels(
    role: Role,
    run: &str,
    expires: OffsetDateTime,
    claim: Option<&ImageName>,
) -> Option<BTreeMap<String, String>> {
    if !is_label_value(run) {
        return None;
    }
    let mut out = BTreeMap::from([
        (KEY_MANAGED.to_owned(), MANAGED.to_owned()),
        (KEY_ROLE.to_owned(), role.as_str().to_owned()),
        (KEY_RUN.to_owned(), run.to_owned()),
        (KEY_EXPIRES.to_owned(), label_time(expires)),
    ]);
    if let Some(name) = claim {
        out.insert(KEY_CLAIM.to_owned(), name.to_string());
    }
    Some(out)
}

/// The most labels of golden's an image of `family` with user `tags` can
/// carry (a candidate's `golden-expires` and a validated image's
/// `golden-validated-at` both counted).
fn golden_label_count(tags: &BTreeMap<String, String>) -> usize {
    // Fixed keys: family, status, build date, build number, builder
    // version, recipe hash, validated-at, expires; plus os and type copied
    // from the user's tags.
    8 + usize::from(tags.contains_key("os")) + usize::from(tags.contains_key("type"))
}

/// What golden writes into an image's description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Described {
    /// The flat metadata ([`Metadata::encode`]): the whole recipe hash, the
    /// builder version with its dots, `validated_at` in RFC 3339, the tags.
    golden: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    report: Option<Report>,
}

/// How many ways [`shrink`] has to make a report smaller.
const SHRINK_LEVELS: usize = 5;

/// Keeps the first `keep` entries and says how many more there were.
fn shorten_list(list: &mut Vec<String>, keep: usize) {
    if list.len() > keep {
        let more = list.len() - keep;
        list.truncate(keep);
        list.push(format!("... and {more} more"));
    }
}

/// The last `n` characters of `s`, marked when cut.
fn tail_chars(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        return s.to_owned();
    }
    if n == 0 {
        return String::new();
    }
    format!("…{}", s.chars().skip(count - n + 1).collect::<String>())
}

/// One step towards [`MAX_DESCRIPTION`], least valuable first: the package
/// manifest (a few hundred packages never fit in 2 KiB), the lists of what
/// changed cut to 10 entries each, then the console tail and the checks'
/// details shortened twice and finally emptied, with the lists of changes.
/// Check names, results and durations stay until the report is dropped.
fn shrink(r: &mut Report, level: usize) {
    match level {
        0 => r.packages = None,
        1 => {
            if let Some(c) = &mut r.packages_changed {
                for list in [&mut c.added, &mut c.removed, &mut c.upgraded] {
                    shorten_list(list, 10);
                }
            }
        }
        _ => {
            let keep = [200usize, 60, 0][(level - 2).min(2)];
            r.console_tail = tail_chars(&r.console_tail, keep * 2);
            for c in &mut r.checks {
                c.detail = tail_chars(&c.detail, keep);
            }
            if keep == 0 {
                r.packages_changed = None;
            } else if let Some(c) = &mut r.packages_changed {
                for list in [&mut c.added, &mut c.removed, &mut c.upgraded] {
                    shorten_list(list, keep / 20);
                }
            }
        }
    }
}

/// The description of an image: JSON `{"golden": {<flat metadata>},
/// "report": {...}}`, within [`MAX_DESCRIPTION`]: the report is shortened,
/// then dropped, to fit; the metadata never is. (It only exceeds the limit
/// when the tags alone do, which [`check_recipe`] refuses at plan.)
pub fn description_for(meta: &Metadata, report: Option<&Report>) -> String {
    let mut d = Described {
        golden: meta.encode(),
        report: report.cloned(),
    };
    let json = |d: &Described| serde_json::to_string(d).unwrap_or_default();
    for level in 0..SHRINK_LEVELS {
        let text = json(&d);
        if text.len() <= MAX_DESCRIPTION {
            return text;
        }
        match &mut d.report {
            Some(r) => shrink(r, level),
            None => return text,
        }
    }
    let text = json(&d);
    if text.len() <= MAX_DESCRIPTION {
        return text;
    }
    d.report = None;
    json(&d)
}

/// The flat metadata and the report in a description golden wrote.
fn parse_description(description: &str) -> Option<Described> {
    serde_json::from_str(description.trim()).ok()
}

/// The largest description an image of `family` with user `tags` gets
/// without a report (highest build number, the widest times, a 64-digit
/// hash): over [`MAX_DESCRIPTION`], the tags cannot be kept.
fn widest_description(family: Option<&Family>, tags: &BTreeMap<String, String>) -> usize {
    let family = family.cloned().unwrap_or_else(|| {
        let widest = "a".repeat(MAX_FAMILY_LEN);
        Family::parse(
            &widest,
            crate::lifecycle::naming::NamingRules { allow_dot: false },
        )
        .expect("a run of letters is a family")
    });
    let meta = Metadata {
        name: ImageName::new(family, BuildDate::today(), 999),
        builder_version: crate::lifecycle::recipe::BUILDER_VERSION.to_owned(),
        recipe_hash: "0".repeat(64),
        status: Status::Candidate,
        validated_at: Some("2000-01-01T00:00:00.000000000Z".into()),
        tags: tags
            .iter()
            .filter(|(k, _)| !k.starts_with("golden-"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    description_for(&meta, None).len()
}

/// What GCE cannot store as written, found at plan: a user tag that is not
/// a label as it is (at `tags["key"]`), more labels than GCE allows, or tags
/// too long for the description (both at `tags`). Keys starting with
/// `golden-` are skipped: the shared reserved-key error covers them.
pub fn check_recipe(parts: &RecipeParts) -> Vec<RecipeProblem> {
    let mut problems = Vec::new();
    let Some(tags) = parts.tags else {
        return problems;
    };
    let mut users = 0;
    for (k, v) in tags {
        if k.starts_with("golden-") {
            continue;
        }
        users += 1;
        if let Some(detail) = user_label_problem(k, v) {
            problems.push(RecipeProblem {
                at: AttributePath::new("tags").key(k.clone()),
                summary: "Tag Not Storable on Google Compute Engine",
                detail: format!("tags[{k:?}] = {v:?}: {detail}"),
            });
        }
    }
    let golden = golden_label_count(tags);
    if golden + users > MAX_LABELS {
        problems.push(RecipeProblem {
            at: AttributePath::new("tags"),
            summary: "Too Many Tags for Google Compute Engine",
            detail: format!(
                "{users} tags are given; golden stores each tag as an image label next to \
                 {golden} labels of its own, and GCE allows at most {MAX_LABELS} labels on an \
                 image, so use at most {} tags",
                MAX_LABELS - golden
            ),
        });
    }
    let len = widest_description(parts.family, tags);
    if len > MAX_DESCRIPTION {
        problems.push(RecipeProblem {
            at: AttributePath::new("tags"),
            summary: "Tags Too Long for Google Compute Engine",
            detail: format!(
                "golden keeps an image's metadata, tags included, as JSON in its description, \
                 which would be {len} characters with these tags; golden keeps descriptions \
                 within {MAX_DESCRIPTION}, so use fewer or shorter tags"
            ),
        });
    }
    problems
}

/// What golden's labels and description on an image say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub meta: Metadata,
    /// The `golden-expires` label: a candidate past it is the sweep's.
    pub expires: Option<OffsetDateTime>,
    /// The report in the description (possibly shortened); `None` when the
    /// description holds none or could not be used.
    pub report: Option<Report>,
}

/// The metadata the labels alone say: the recipe hash is the label's
/// [`RECIPE_HASH_LABEL_LEN`]-character prefix (see [`hash_matches`]), the
/// builder version gets its dots back, `validated_at` is to the second, and
/// every label not starting with `golden-` is a user tag (a label someone
/// added in the console included).
fn from_labels(labels: &BTreeMap<String, String>, family: &Family) -> Option<Metadata> {
    let mut flat = BTreeMap::new();
    for (k, v) in labels {
        let v = if k == KEY_BUILDER_VERSION {
            v.replace('-', ".")
        } else if k == KEY_VALIDATED_AT {
            // A damaged time is dropped, not the image.
            let Some(t) = parse_label_time(v) else {
                continue;
            };
            rfc3339(t)
        } else {
            v.clone()
        };
        flat.insert(k.clone(), v);
    }
    Metadata::decode(&flat, family).ok()
}

/// Reads golden's metadata back from an image; `None` when it is not
/// golden's image of `family`: its name must parse as an image name of
/// `family` and its `golden-family` label must name `family` (the "only our
/// own" gate), with a valid `golden-status` label.
///
/// The description is used when it parses, names `family` and the same
/// image (a description copied from another image is not trusted); the labels
/// are the fallback, and must then agree with the name. Either way the status
/// comes from the `golden-status` label, and `validated_at` from the label
/// when the description (written before publish) has none.
pub fn decode(
    name: &str,
    labels: &BTreeMap<String, String>,
    description: Option<&str>,
    family: &Family,
) -> Option<Decoded> {
    let image = ImageName::parse(name, family).ok()?;
    if labels.get(KEY_FAMILY).map(String::as_str) != Some(family.as_str()) {
        return None;
    }
    let status = Status::parse(labels.get(KEY_STATUS)?)?;
    let described = description
        .and_then(parse_description)
        .and_then(|d| Some((Metadata::decode(&d.golden, family).ok()?, d.report)))
        .filter(|(meta, _)| meta.name == image);
    let (mut meta, report) = match described {
        Some(found) => found,
        None => (
            from_labels(labels, family).filter(|m| m.name == image)?,
            None,
        ),
    };
    meta.status = status;
    if meta.validated_at.is_none() {
        meta.validated_at = labels
            .get(KEY_VALIDATED_AT)
            .and_then(|v| parse_label_time(v))
            .map(rfc3339);
    }
    let expires = labels.get(KEY_EXPIRES).and_then(|v| parse_label_time(v));
    Some(Decoded {
        meta,
        expires,
        report,
    })
}

/// The `images.list` filter for every image golden built for `family`.
pub fn family_filter(family: &Family) -> String {
    format!("labels.{KEY_FAMILY} = \"{family}\"")
}

/// The `instances.list` / `disks.list` filter for everything golden created.
pub fn managed_filter() -> String {
    format!("labels.{KEY_MANAGED} = \"{MANAGED}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::naming::NamingRules;
    use std::time::Duration;

    fn family() -> Family {
        Family::parse("debian-12-minimal", NamingRules { allow_dot: false }).unwrap()
    }

    const NAME: &str = "debian-12-minimal-20260102-007";
    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn meta(status: Status) -> Metadata {
        Metadata {
            name: ImageName::new(family(), BuildDate::parse("20260102").unwrap(), 7),
            builder_version: "0.1.0".into(),
            recipe_hash: HASH.into(),
            status,
            validated_at: (status == Status::Validated).then(|| "2026-01-02T03:04:05Z".into()),
            tags: BTreeMap::from([
                ("os".into(), "debian-12".into()),
                ("team".into(), "platform_infra".into()),
                ("empty".into(), "".into()),
            ]),
        }
    }

    fn at(s: &str) -> OffsetDateTime {
        parse_label_time(s).unwrap()
    }

    fn parts(tags: &BTreeMap<String, String>) -> Vec<RecipeProblem> {
        let f = family();
        check_recipe(&RecipeParts {
            family: Some(&f),
            tags: Some(tags),
            provision: None,
        })
    }

    #[test]
    fn the_exact_labels_golden_writes() {
        let labels = labels_for(&meta(Status::Validated), Some(at("20260103t000000z"))).unwrap();
        let want: BTreeMap<String, String> = [
            ("golden-family", "debian-12-minimal"),
            ("golden-status", "validated"),
            ("golden-build-date", "20260102"),
            ("golden-build-number", "007"),
            ("golden-builder-version", "0-1-0"),
            ("golden-recipe-hash", "0123456789abcdef0123456789abcdef"),
            ("golden-validated-at", "20260102t030405z"),
            ("golden-expires", "20260103t000000z"),
            ("golden-os", "debian-12"),
            ("os", "debian-12"),
            ("team", "platform_infra"),
            ("empty", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(labels, want);
        for (k, v) in &labels {
            assert!(is_label_key(k) && is_label_value(v), "{k}={v}");
        }
    }

    #[test]
    fn description_round_trips_the_full_metadata_and_report() {
        let mut r = Report::default();
        r.push("boot", true, Duration::from_secs(40), "login prompt");
        for status in [Status::Candidate, Status::Validated, Status::Failed] {
            let m = meta(status);
            let labels = labels_for(&m, None).unwrap();
            let d = description_for(&m, Some(&r));
            assert!(d.len() <= MAX_DESCRIPTION);
            let back = decode(NAME, &labels, Some(&d), &family()).unwrap();
            // Whole hash, dotted version, RFC 3339 time, user tags.
            assert_eq!(back.meta, m);
            assert_eq!(back.report.as_ref(), Some(&r));
            assert_eq!(back.expires, None);
        }
        let d = description_for(&meta(Status::Candidate), None);
        assert!(d.contains(r#""golden-builder-version":"0.1.0""#), "{d}");
        assert!(d.contains(HASH), "{d}");
        assert!(!d.contains("report"), "{d}");
    }

    #[test]
    fn labels_are_the_fallback_with_a_hash_prefix() {
        for status in [Status::Candidate, Status::Validated, Status::Failed] {
            let m = meta(status);
            let labels = labels_for(&m, Some(at("20260103t000000z"))).unwrap();
            for d in [None, Some("edited by hand"), Some("{\"golden\": 1}")] {
                let back = decode(NAME, &labels, d, &family()).unwrap();
                assert_eq!(back.meta.recipe_hash, &HASH[..RECIPE_HASH_LABEL_LEN]);
                assert!(hash_matches(&back.meta.recipe_hash, HASH));
                let want = Metadata {
                    recipe_hash: back.meta.recipe_hash.clone(),
                    ..m.clone()
                };
                assert_eq!(back.meta, want);
                assert_eq!(back.report, None);
                assert_eq!(back.expires, Some(at("20260103t000000z")));
            }
        }
        let mut labels = labels_for(&meta(Status::Validated), None).unwrap();
        labels.insert(KEY_VALIDATED_AT.into(), "garbled".into());
        let back = decode(NAME, &labels, None, &family()).unwrap();
        assert_eq!(back.meta.validated_at, None);
    }

    #[test]
    fn hash_matches_whole_hashes_and_only_the_label_prefix() {
        assert!(hash_matches(HASH, HASH));
        assert!(hash_matches(&HASH[..32], HASH));
        assert!(hash_matches("0123456789abcdef", "0123456789abcdef"));
        assert!(!hash_matches(&HASH[..31], HASH));
        assert!(!hash_matches("", HASH));
        assert!(!hash_matches(&HASH[..32], &HASH[1..]));
        assert!(!hash_matches("0123456789abcdee", "0123456789abcdef"));
    }

    #[test]
    fn status_comes_from_the_label_even_when_the_description_lags() {
        // Inserted as a candidate; publish changed the labels only.
        let candidate = meta(Status::Candidate);
        let d = description_for(&candidate, None);
        let published = meta(Status::Validated);
        let labels = labels_for(&published, None).unwrap();
        let back = decode(NAME, &labels, Some(&d), &family()).unwrap();
        assert_eq!(back.meta.status, Status::Validated);
        assert_eq!(
            back.meta.validated_at.as_deref(),
            Some("2026-01-02T03:04:05Z")
        );
        // And the other way: a description saying validated does not make
        // a failed image validated.
        let d = description_for(&published, None);
        let labels = labels_for(&meta(Status::Failed), None).unwrap();
        let back = decode(NAME, &labels, Some(&d), &family()).unwrap();
        assert_eq!(back.meta.status, Status::Failed);
        // Without a status label it is not golden's image.
        let mut labels = labels_for(&published, None).unwrap();
        labels.remove(KEY_STATUS);
        assert!(decode(NAME, &labels, Some(&d), &family()).is_none());
    }

    #[test]
    fn only_our_own_images_of_this_family_decode() {
        let m = meta(Status::Validated);
        let labels = labels_for(&m, None).unwrap();
        let d = description_for(&m, None);
        assert!(decode(NAME, &labels, Some(&d), &family()).is_some());
        // Another family sharing the prefix, by name or by label.
        let other = Family::parse("debian-12", NamingRules { allow_dot: false }).unwrap();
        assert!(decode(NAME, &labels, Some(&d), &other).is_none());
        assert!(decode("debian-12-20260102-007", &labels, Some(&d), &other).is_none());
        // A copy under another name, or a name that is not an image name.
        assert!(decode("my-copy", &labels, Some(&d), &family()).is_none());
        assert!(decode(
            "debian-12-minimal-20260102-008",
            &labels,
            Some(&d),
            &family()
        )
        .is_none());
        // No golden labels at all (a user's image), whatever it is called.
        assert!(decode(NAME, &BTreeMap::new(), Some(&d), &family()).is_none());
        let users = BTreeMap::from([("team".to_owned(), "core".to_owned())]);
        assert!(decode(NAME, &users, None, &family()).is_none());
        // A family label naming another family.
        let mut wrong = labels.clone();
        wrong.insert(KEY_FAMILY.into(), "debian-12".into());
        assert!(decode(NAME, &wrong, Some(&d), &family()).is_none());
        // Only some of golden's labels and no description.
        let partial: BTreeMap<String, String> = labels
            .iter()
            .filter(|(k, _)| *k == KEY_FAMILY || *k == KEY_STATUS)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert!(decode(NAME, &partial, None, &family()).is_none());
    }

    #[test]
    fn a_description_copied_from_another_image_is_not_trusted() {
        let mut other = meta(Status::Validated);
        other.name.build = 3;
        other.recipe_hash = "f".repeat(64);
        let d = description_for(&other, None);
        let labels = labels_for(&meta(Status::Validated), None).unwrap();
        let back = decode(NAME, &labels, Some(&d), &family()).unwrap();
        assert_eq!(back.meta.name.build, 7);
        assert_eq!(back.meta.recipe_hash, &HASH[..32]);
    }

    #[test]
    fn a_huge_report_is_shortened_then_dropped_never_the_metadata() {
        let m = meta(Status::Failed);
        let mut r = Report {
            console_tail: "x".repeat(20_000),
            ..Default::default()
        };
        r.push("boot", true, Duration::from_secs(1), "ok");
        r.push(
            "commands[0]",
            false,
            Duration::from_secs(1),
            "y".repeat(9000),
        );
        let d = description_for(&m, Some(&r));
        assert!(d.len() <= MAX_DESCRIPTION, "{}", d.len());
        let labels = labels_for(&m, None).unwrap();
        let back = decode(NAME, &labels, Some(&d), &family()).unwrap();
        assert_eq!(back.meta, m);
        let kept = back.report.unwrap();
        assert_eq!(kept.checks[1].name, "commands[0]");
        assert!(!kept.checks[1].ok);
        // So many checks that even their names do not fit: the report goes.
        let mut r = Report::default();
        for i in 0..200 {
            r.push(format!("commands[{i}]"), true, Duration::from_secs(1), "");
        }
        let d = description_for(&m, Some(&r));
        assert!(d.len() <= MAX_DESCRIPTION, "{}", d.len());
        let back = decode(NAME, &labels, Some(&d), &family()).unwrap();
        assert_eq!(back.meta, m);
        assert_eq!(back.report, None);
    }

    #[test]
    fn user_tags_that_are_not_labels_are_refused_naming_why() {
        assert_eq!(user_label_problem("team", "core"), None);
        assert_eq!(user_label_problem("a", ""), None);
        let k63 = format!("k{}", "x".repeat(62));
        assert_eq!(user_label_problem(&k63, &"v".repeat(63)), None);
        for (k, v, says) in [
            ("team", "Platform", "the value has 'P'"),
            ("Team", "x", "the key starts with 'T'"),
            ("team", "debian-12.5", "the value has '.'"),
            ("a:b", "x", "the key has ':'"),
            ("team", "platform infra", "the value has ' '"),
            ("9lives", "x", "the key starts with '9'"),
            ("_x", "x", "the key starts with '_'"),
            ("", "x", "the key is empty"),
            ("k", "é", "the value has 'é'"),
            ("équipe", "x", "the key has 'é'"),
        ] {
            let e = user_label_problem(k, v).unwrap_or_else(|| panic!("{k}={v} accepted"));
            assert!(e.contains(says), "{k}={v}: {e}");
            assert!(e.contains("ASCII only"), "{e}");
        }
        let e = user_label_problem(&format!("{k63}x"), "v").unwrap();
        assert!(e.contains("the key is 64 characters long"), "{e}");
        let e = user_label_problem("k", &"v".repeat(64)).unwrap();
        assert!(e.contains("the value is 64 characters long"), "{e}");
        // The net under the plan check.
        let mut m = meta(Status::Candidate);
        m.tags.insert("team".into(), "Platform/Infra".into());
        let e = labels_for(&m, None).unwrap_err();
        assert!(e.starts_with("tags[\"team\"]"), "{e}");
        assert!(e.contains("'P', '/', 'I'"), "{e}");
    }

    #[test]
    fn plan_points_at_the_tag_and_skips_reserved_keys() {
        let tags = BTreeMap::from([
            ("team".to_owned(), "Core".to_owned()),
            ("ok".to_owned(), "fine".to_owned()),
            ("golden-status".to_owned(), "Nope!".to_owned()),
        ]);
        let problems = parts(&tags);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].at.to_string(), "tags[\"team\"]");
        assert!(problems[0].detail.contains("the value has 'C'"));
        assert!(problems[0].detail.starts_with("tags[\"team\"] = \"Core\""));
        // Unknown tags (known only at apply) are not checked.
        let f = family();
        assert!(check_recipe(&RecipeParts {
            family: Some(&f),
            tags: None,
            provision: None
        })
        .is_empty());
    }

    #[test]
    fn golden_labels_and_user_tags_share_gces_64() {
        let tags = |n: usize| -> BTreeMap<String, String> {
            (0..n).map(|i| (format!("t{i}"), "v".into())).collect()
        };
        // golden keeps 8 of its own (6 always, validated-at, expires).
        assert!(parts(&tags(56)).is_empty(), "{:?}", parts(&tags(56)));
        let p = parts(&tags(57));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].at.to_string(), "tags");
        assert!(p[0].detail.contains("57 tags"), "{}", p[0].detail);
        assert!(p[0].detail.contains("at most 56 tags"), "{}", p[0].detail);
        // `os` and `type` are also copied into golden-os / golden-type:
        // 54 tags with them.
        let mut t = tags(52);
        t.insert("os".into(), "debian".into());
        t.insert("type".into(), "minimal".into());
        assert!(parts(&t).is_empty());
        t.insert("t99".into(), "v".into());
        assert_eq!(parts(&t).len(), 1);
        // Reserved keys do not count (they are refused elsewhere).
        let mut t = tags(56);
        t.insert("golden-x".into(), "v".into());
        assert!(parts(&t).is_empty());
        // The worst case really carries that many labels, and one more fails.
        let mut m = meta(Status::Validated);
        m.tags = tags(56);
        let labels = labels_for(&m, Some(at("20260103t000000z"))).unwrap();
        assert_eq!(labels.len(), MAX_LABELS);
        m.tags = tags(57);
        let e = labels_for(&m, Some(at("20260103t000000z"))).unwrap_err();
        assert!(e.contains("65 labels"), "{e}");
    }

    #[test]
    fn tags_too_long_for_the_description_are_refused_at_plan() {
        let tags: BTreeMap<String, String> = (0..30)
            .map(|i| (format!("k{i:02}{}", "k".repeat(59)), "v".repeat(63)))
            .collect();
        let p = parts(&tags);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].at.to_string(), "tags");
        assert!(p[0].detail.contains("description"), "{}", p[0].detail);
        // Modest tags fit.
        assert!(parts(&meta(Status::Candidate).tags).is_empty());
    }

    #[test]
    fn times_use_the_label_form() {
        let t = OffsetDateTime::parse("2025-01-01T12:00:00Z", &Rfc3339).unwrap();
        assert_eq!(label_time(t), "20250101t120000z");
        assert_eq!(parse_label_time("20250101t120000z"), Some(t));
        let local = time::macros::datetime!(2025-01-01 13:00:00.5 +01:00);
        assert_eq!(label_time(local), "20250101t120000z");
        assert_eq!(parse_label_time("2025-01-01"), None);
        assert_eq!(parse_label_time("20250101T120000Z"), None);
        let mut m = meta(Status::Validated);
        m.validated_at = Some("yesterday".into());
        assert!(labels_for(&m, None)
            .unwrap_err()
            .contains("golden-validated-at"));
    }

    #[test]
    fn instance_labels_and_filters() {
        let name = meta(Status::Candidate).name;
        let l = resource_labels(
            Role::Build,
            "1f2e-18c0a1b2c3d4-0",
            at("20260103t000000z"),
            Some(&name),
        )
        .unwrap();
        assert_eq!(l[KEY_MANAGED], "true");
        assert_eq!(l[KEY_ROLE], "build");
        assert_eq!(l[KEY_RUN], "1f2e-18c0a1b2c3d4-0");
        assert_eq!(l[KEY_EXPIRES], "20260103t000000z");
        assert_eq!(l[KEY_CLAIM], NAME);
        assert!(l.iter().all(|(k, v)| is_label_key(k) && is_label_value(v)));
        let s = resource_labels(Role::Smoke, "r", at("20260103t000000z"), None).unwrap();
        assert_eq!(s[KEY_ROLE], "smoke");
        assert!(!s.contains_key(KEY_CLAIM));
        assert!(resource_labels(Role::Smoke, "R.1", at("20260103t000000z"), None).is_none());
        assert_eq!(Role::parse("smoke"), Some(Role::Smoke));
        assert_eq!(Role::parse("other"), None);
        assert_eq!(
            family_filter(&family()),
            r#"labels.golden-family = "debian-12-minimal""#
        );
        assert_eq!(managed_filter(), r#"labels.golden-managed = "true""#);
    }

    #[test]
    fn resource_names_follow_rfc_1035() {
        assert!(is_resource_name(NAME));
        assert!(is_resource_name("a"));
        assert!(is_resource_name(&format!("a{}", "b".repeat(62))));
        for bad in ["", "1abc", "abc-", "a_b", "A", "a.b", &"a".repeat(64)] {
            assert!(!is_resource_name(bad), "{bad}");
        }
        assert!(is_label_key("a"));
        assert!(!is_label_key(""));
        assert!(!is_label_key("1"));
        assert!(is_label_value(""));
        assert!(!is_label_value("a.b"));
    }
}
