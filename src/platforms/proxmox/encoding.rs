//! How golden's metadata lives on a PVE VM (ADR 002): PVE tags for filtering
//! and people, the full metadata as JSON in `description` (PVE's "Notes").
//!
//! Tags follow PVE's charset `[a-z0-9_][a-z0-9_+.-]*` and are written sorted
//! and de-duplicated, `;`-joined, exactly as PVE returns them, so reading them
//! back never looks like drift. The description is authoritative: a VM is
//! golden's only if its JSON names this family *and its own vmid*, so a user's
//! copy of a golden template (which inherits both tags and notes) is not ours.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::lifecycle::metadata::{Metadata, Status};
use crate::lifecycle::naming::{BuildDate, Family, ImageName};
use crate::lifecycle::packages::PackageManifest;
use crate::lifecycle::report::Report;

/// On every VM golden manages.
pub const TAG_MANAGED: &str = "golden";
/// On throwaway smoke-test clones.
pub const TAG_SMOKE: &str = "golden-smoke";
/// PVE's limit on `description`.
pub const MAX_DESCRIPTION: usize = 8192;

/// How many ways `Note::shrink` has to make a note smaller.
const SHRINK_LEVELS: usize = 6;

fn compress_manifest(m: &PackageManifest) -> Option<String> {
    use std::io::Write;
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(m.to_lines().as_bytes()).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(z.finish().ok()?))
}

fn expand_manifest(z: &str) -> Option<PackageManifest> {
    use std::io::Read;
    let bytes = base64::engine::general_purpose::STANDARD.decode(z).ok()?;
    let mut text = String::new();
    flate2::read::DeflateDecoder::new(bytes.as_slice())
        .take(16 << 20)
        .read_to_string(&mut text)
        .ok()?;
    PackageManifest::from_lines(&text)
}

/// Keeps the first `keep` entries and says how many more there were.
fn shorten_list(list: &mut Vec<String>, keep: usize) {
    if list.len() > keep {
        let more = list.len() - keep;
        list.truncate(keep);
        list.push(format!("... and {more} more"));
    }
}

const FENCE_OPEN: &str = "```json golden-metadata\n";
const FENCE_CLOSE: &str = "\n```";

pub fn family_tag(family: &str) -> String {
    format!("golden-family.{}", sanitize_tag(family))
}

pub fn status_tag(status: Status) -> String {
    format!("golden-{}", status.as_str())
}

/// A VM name that no name-based lookup of the family matches until the image
/// is validated: a regex such as `^debian-12-minimal-` never sees a candidate.
pub fn candidate_vm_name(name: &ImageName) -> String {
    format!("candidate-{name}")
}

/// The VM name an image carries in its current status.
pub fn vm_name(meta: &Metadata) -> String {
    match meta.status {
        Status::Validated => meta.name.to_string(),
        _ => candidate_vm_name(&meta.name),
    }
}

/// Maps any text into PVE's tag charset: lowercase, anything else becomes `_`.
pub fn sanitize_tag(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '+' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(['+', '.', '-']) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

/// Is `tag` within PVE's charset?
pub fn is_valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let ok_first = first.is_ascii_lowercase() || first.is_ascii_digit() || first == '_';
    ok_first
        && chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '+' | '.' | '-')
        })
}

/// The tags of an image VM: managed, family, status and the user's tags as
/// `key.value`, sorted and joined as PVE returns them.
pub fn tags_for(meta: &Metadata) -> String {
    let mut tags: BTreeSet<String> = BTreeSet::new();
    tags.insert(TAG_MANAGED.to_owned());
    tags.insert(family_tag(meta.name.family.as_str()));
    tags.insert(status_tag(meta.status));
    for (k, v) in &meta.tags {
        if k.starts_with("golden-") {
            continue;
        }
        tags.insert(sanitize_tag(&format!("{k}.{v}")));
    }
    tags.into_iter().collect::<Vec<_>>().join(";")
}

/// What golden writes into a VM's description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Format version.
    pub golden: u32,
    /// The VM this note belongs to; a copy on another VM is not ours.
    pub vmid: u32,
    /// `image` or `smoke`.
    pub role: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// RFC 3339: a candidate or smoke VM past this time is abandoned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// RFC 3339 with nanoseconds: when the candidate VM was created. Two runs
    /// that claimed one build number keep the earlier claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The creating run's nonce on candidates and smoke clones: its ledger
    /// destroys the VM only while this matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    /// The report's package manifest when its JSON does not fit: the
    /// compact lines, deflated, base64 (`compress_manifest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages_z: Option<String>,
}

pub const ROLE_IMAGE: &str = "image";
pub const ROLE_SMOKE: &str = "smoke";

impl Note {
    pub fn image(
        meta: &Metadata,
        vmid: u32,
        deadline: Option<String>,
        report: Option<Report>,
    ) -> Note {
        Note {
            golden: 1,
            vmid,
            role: ROLE_IMAGE.into(),
            metadata: meta.encode(),
            deadline,
            created: None,
            claim: None,
            report,
            packages_z: None,
        }
    }

    pub fn smoke(of: &str, vmid: u32, deadline: String) -> Note {
        Note {
            golden: 1,
            vmid,
            role: ROLE_SMOKE.into(),
            metadata: BTreeMap::from([("golden-smoke-of".to_owned(), of.to_owned())]),
            deadline: Some(deadline),
            created: None,
            claim: None,
            report: None,
            packages_z: None,
        }
    }

    /// The description text: a line for people, then the JSON in a fenced
    /// block (PVE renders notes as Markdown). Shortens the report's texts
    /// until it fits PVE's 8 KiB limit.
    pub fn to_description(&self) -> String {
        let title = match self.role.as_str() {
            ROLE_SMOKE => format!(
                "Smoke-test VM of {} (terraform-provider-golden); deleted when the test ends.",
                self.metadata
                    .get("golden-smoke-of")
                    .map(String::as_str)
                    .unwrap_or("?")
            ),
            _ => format!(
                "Golden image {}-{}-{} ({}), managed by terraform-provider-golden.",
                self.metadata
                    .get("golden-family")
                    .map(String::as_str)
                    .unwrap_or("?"),
                self.metadata
                    .get("golden-build-date")
                    .map(String::as_str)
                    .unwrap_or("?"),
                self.metadata
                    .get("golden-build-number")
                    .map(String::as_str)
                    .unwrap_or("?"),
                self.metadata
                    .get("golden-status")
                    .map(String::as_str)
                    .unwrap_or("?"),
            ),
        };
        let mut note = self.clone();
        for level in 0..SHRINK_LEVELS {
            let json = serde_json::to_string(&note).unwrap_or_default();
            let text = format!("{title}\n\n{FENCE_OPEN}{json}{FENCE_CLOSE}\n");
            if text.len() <= MAX_DESCRIPTION {
                return text;
            }
            note.shrink(level);
        }
        note.report = None;
        note.packages_z = None;
        let json = serde_json::to_string(&note).unwrap_or_default();
        format!("{title}\n\n{FENCE_OPEN}{json}{FENCE_CLOSE}\n")
    }

    /// The description with golden's part replaced and whatever a person
    /// wrote around it (PVE's notes) kept in front. When both do not fit in
    /// PVE's limit, golden's part wins: lookups depend on it.
    pub fn merge_into(&self, existing: &str) -> String {
        let ours = self.to_description();
        let theirs = without_golden_block(existing);
        if theirs.is_empty() {
            return ours;
        }
        let merged = format!("{theirs}\n\n{ours}");
        if merged.len() <= MAX_DESCRIPTION {
            merged
        } else {
            tracing::warn!("the notes on this VM and golden's metadata exceed PVE's 8 KiB; the notes are dropped");
            ours
        }
    }

    /// One step towards PVE's 8 KiB, least valuable first: the package
    /// manifest deflated (a Debian image lists a few hundred packages); the
    /// lists of what changed cut to 40 entries each; the manifest dropped
    /// (the next build then has nothing to compare with); then the report's
    /// texts and those lists shortened further.
    fn shrink(&mut self, level: usize) {
        let Some(r) = &mut self.report else { return };
        match level {
            0 => {
                if let Some(m) = r.packages.take() {
                    self.packages_z = compress_manifest(&m);
                }
            }
            1 => {
                if let Some(c) = &mut r.packages_changed {
                    for list in [&mut c.added, &mut c.removed, &mut c.upgraded] {
                        shorten_list(list, 40);
                    }
                }
            }
            2 => self.packages_z = None,
            _ => {
                let keep = [300usize, 80, 0][(level - 3).min(2)];
                r.console_tail = tail_chars(&r.console_tail, keep * 2);
                for c in &mut r.checks {
                    c.detail = tail_chars(&c.detail, keep);
                }
                if let Some(c) = &mut r.packages_changed {
                    for list in [&mut c.added, &mut c.removed, &mut c.upgraded] {
                        shorten_list(list, keep / 10);
                    }
                }
            }
        }
    }

    /// Reads golden's note out of a description; `None` when there is none.
    pub fn parse(description: &str) -> Option<Note> {
        let start = description.find(FENCE_OPEN)? + FENCE_OPEN.len();
        let rest = &description[start..];
        let end = rest.find(FENCE_CLOSE)?;
        let mut note: Note = serde_json::from_str(&rest[..end]).ok()?;
        if let (Some(z), Some(r)) = (&note.packages_z, &mut note.report) {
            r.packages = expand_manifest(z);
        }
        (note.golden == 1).then_some(note)
    }

    /// Is this note about `vmid` (and not copied from another VM)?
    pub fn belongs_to(&self, vmid: u32) -> bool {
        self.vmid == vmid
    }

    /// When the VM was created, if the note says.
    pub fn created_at(&self) -> Option<time::OffsetDateTime> {
        let c = self.created.as_deref()?;
        time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).ok()
    }

    pub fn deadline_passed(&self, now: time::OffsetDateTime) -> bool {
        let Some(d) = &self.deadline else {
            return true;
        };
        match time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339) {
            Ok(t) => now > t,
            Err(_) => true,
        }
    }
}

/// `text` without golden's title line and fenced block.
fn without_golden_block(text: &str) -> String {
    let Some(open) = text.find(FENCE_OPEN) else {
        return text.trim().to_owned();
    };
    let Some(close) = text[open + FENCE_OPEN.len()..].find(FENCE_CLOSE) else {
        return text.trim().to_owned();
    };
    let end = open + FENCE_OPEN.len() + close + FENCE_CLOSE.len();
    let before = &text[..open];
    let start = ["Golden image ", "Smoke-test VM "]
        .iter()
        .filter_map(|t| before.rfind(t))
        .max()
        .filter(|i| *i == 0 || before[..*i].ends_with('\n'))
        .unwrap_or(open);
    format!("{}\n{}", text[..start].trim(), text[end..].trim())
        .trim()
        .to_owned()
}

fn tail_chars(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        return s.to_owned();
    }
    let skip = count - n;
    format!("…{}", s.chars().skip(skip).collect::<String>())
}

/// The description a candidate of `family` with the user's `tags` would
/// get, at its largest (highest build number, every optional field, no
/// report): the metadata in it is never shortened, so when this is over
/// PVE's 8 KiB the VM cannot carry the tags and the plan must say so.
/// `Err` holds the size.
pub fn check_tags_fit(family: &Family, tags: &BTreeMap<String, String>) -> Result<(), usize> {
    let widest = "2000-01-01T00:00:00.000000000+00:00";
    let meta = Metadata {
        name: ImageName::new(family.clone(), BuildDate::today(), 999),
        builder_version: crate::lifecycle::recipe::BUILDER_VERSION.to_owned(),
        recipe_hash: "0".repeat(64),
        status: Status::Candidate,
        validated_at: Some(widest.into()),
        tags: tags.clone(),
    };
    let mut note = Note::image(&meta, 999_999_999, Some(widest.into()), None);
    note.created = Some(widest.into());
    note.claim = Some("f".repeat(48));
    let len = note.to_description().len();
    if len <= MAX_DESCRIPTION {
        Ok(())
    } else {
        Err(len)
    }
}

pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::naming::{Family, NamingRules};

    fn meta(status: Status) -> Metadata {
        let family =
            Family::parse("ubuntu-24.04-minimal", NamingRules { allow_dot: true }).unwrap();
        Metadata {
            name: ImageName::parse("ubuntu-24.04-minimal-20261125-002", &family).unwrap(),
            builder_version: "0.1.0".into(),
            recipe_hash: "0123456789abcdef".into(),
            status,
            validated_at: None,
            tags: BTreeMap::from([
                ("os".to_owned(), "Ubuntu 24.04".to_owned()),
                ("type".to_owned(), "minimal".to_owned()),
                ("Team".to_owned(), "platform/infra".to_owned()),
            ]),
        }
    }

    #[test]
    fn tags_that_overflow_the_description_are_caught_before_apply() {
        let family = Family::parse("debian-12", NamingRules { allow_dot: true }).unwrap();
        let mut tags = BTreeMap::from([("team".to_owned(), "infra".to_owned())]);
        assert_eq!(check_tags_fit(&family, &tags), Ok(()));
        tags.insert("notes".into(), "x".repeat(MAX_DESCRIPTION));
        let len = check_tags_fit(&family, &tags).unwrap_err();
        assert!(len > MAX_DESCRIPTION);
        // The check measures what a real candidate note holds.
        let m = Metadata {
            tags: tags.clone(),
            ..meta(Status::Candidate)
        };
        assert!(Note::image(&m, 100, None, None).to_description().len() > MAX_DESCRIPTION);
    }

    #[test]
    fn tags_are_valid_sorted_and_unique_as_pve_returns_them() {
        let tags = tags_for(&meta(Status::Candidate));
        let list: Vec<&str> = tags.split(';').collect();
        let mut sorted = list.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(list, sorted, "{tags}");
        assert!(list.iter().all(|t| is_valid_tag(t)), "{tags}");
        assert_eq!(
            tags,
            "golden;golden-candidate;golden-family.ubuntu-24.04-minimal;os.ubuntu_24.04;team.platform_infra;type.minimal"
        );
    }

    #[test]
    fn status_changes_the_status_tag_and_the_vm_name() {
        let c = meta(Status::Candidate);
        let mut v = c.clone();
        v.status = Status::Validated;
        assert!(tags_for(&v).contains("golden-validated"));
        assert!(!tags_for(&v).contains("golden-candidate"));
        assert_eq!(vm_name(&c), "candidate-ubuntu-24.04-minimal-20261125-002");
        assert_eq!(vm_name(&v), "ubuntu-24.04-minimal-20261125-002");
    }

    #[test]
    fn sanitize_maps_into_the_charset() {
        for raw in ["Prod", "-x", ".x", "a b/c", "", "ok_1+2.3-4"] {
            assert!(
                is_valid_tag(&sanitize_tag(raw)),
                "{raw:?} -> {:?}",
                sanitize_tag(raw)
            );
        }
        assert_eq!(sanitize_tag("ok_1+2.3-4"), "ok_1+2.3-4");
    }

    #[test]
    fn note_round_trips_through_a_description() {
        let n = Note::image(
            &meta(Status::Validated),
            900123,
            None,
            Some(Report::default()),
        );
        let d = n.to_description();
        assert!(d.starts_with("Golden image ubuntu-24.04-minimal-20261125-002 (validated)"));
        assert_eq!(Note::parse(&d), Some(n.clone()));
        assert!(n.belongs_to(900123));
        assert!(!n.belongs_to(900124));
        // Text a user adds around the block does not break it.
        assert_eq!(Note::parse(&format!("my notes\n{d}\nmore")), Some(n));
        assert_eq!(Note::parse("just a description"), None);
    }

    #[test]
    fn a_persons_notes_survive_a_metadata_rewrite() {
        let first = Note::image(&meta(Status::Candidate), 900001, None, None);
        let existing = format!(
            "Owner: team-platform\n\n{}\nSee runbook 12.",
            first.to_description()
        );
        let mut v = meta(Status::Validated);
        v.validated_at = Some("2026-11-25T10:00:00Z".into());
        let second = Note::image(&v, 900001, None, None);
        let merged = second.merge_into(&existing);
        assert!(
            merged.starts_with("Owner: team-platform\nSee runbook 12.\n\nGolden image"),
            "{merged}"
        );
        assert_eq!(Note::parse(&merged), Some(second.clone()));
        assert_eq!(merged.matches(FENCE_OPEN).count(), 1);
        // Nothing of a person's: only golden's part.
        assert_eq!(
            second.merge_into(&first.to_description()),
            second.to_description()
        );
    }

    #[test]
    fn a_huge_report_is_shortened_to_fit_pve() {
        let mut r = Report {
            console_tail: "x".repeat(20_000),
            ..Default::default()
        };
        r.push(
            "commands[0]",
            false,
            std::time::Duration::from_secs(1),
            "y".repeat(9000),
        );
        let d = Note::image(&meta(Status::Failed), 900001, None, Some(r)).to_description();
        assert!(d.len() <= MAX_DESCRIPTION, "{}", d.len());
        let back = Note::parse(&d).unwrap();
        assert_eq!(back.report.unwrap().checks[0].name, "commands[0]");
    }

    /// A Debian image's few hundred packages do not fit PVE's 8 KiB as JSON:
    /// they are kept deflated, and read back whole, so the next build can
    /// say what changed; a long list of changes is shortened, not the report
    /// dropped.
    #[test]
    fn a_full_package_manifest_fits_deflated_and_reads_back() {
        use crate::lifecycle::packages::{Package, PackageChanges};
        let packages: Vec<Package> = (0..400)
            .map(|i| Package {
                name: format!("libexample{i}-common"),
                version: format!("2.{i}.1-3+deb12u{}", i % 7),
                arch: "amd64".into(),
                source: format!("example{i}"),
            })
            .collect();
        let manifest = PackageManifest {
            kernel: "6.1.0-28-cloud-amd64".into(),
            packages,
            ..Default::default()
        };
        let mut r = Report::default();
        r.push("boot", true, std::time::Duration::from_secs(1), "ok");
        r.packages = Some(manifest.clone());
        r.packages_changed = Some(PackageChanges {
            since: "fam-20261101-001".into(),
            upgraded: (0..300)
                .map(|i| format!("libexample{i}-common 1 -> 2"))
                .collect(),
            ..Default::default()
        });
        let d = Note::image(&meta(Status::Validated), 900001, None, Some(r)).to_description();
        assert!(d.len() <= MAX_DESCRIPTION, "{}", d.len());
        let back = Note::parse(&d).unwrap().report.unwrap();
        assert_eq!(back.packages.unwrap().packages, manifest.packages);
        let changed = back.packages_changed.unwrap();
        assert!(!changed.upgraded.is_empty());
        assert_eq!(back.checks[0].name, "boot");
    }

    #[test]
    fn deadlines_decide_abandonment() {
        let now = time::OffsetDateTime::now_utc();
        let mut n = Note::smoke("x", 900001, rfc3339(now + time::Duration::minutes(5)));
        assert!(!n.deadline_passed(now));
        n.deadline = Some(rfc3339(now - time::Duration::minutes(5)));
        assert!(n.deadline_passed(now));
    }
}
