//! Retention: which images of a family an apply deletes.
//!
//! Rules, in order: only images golden built for this family reach this code;
//! a build in progress elsewhere is never touched; the newest validated image
//! (counting the one this apply is about to publish) is never deleted; an image
//! the platform protects (linked clones) is kept and says why; beyond that the
//! family keeps `keep` images, giving up failed and abandoned candidates before
//! any validated image, oldest first; and with `max_age`, an image older than
//! that goes even within `keep`.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::duration;
use super::image::Image;
use super::metadata::Status;
use super::naming::ImageName;
use super::selection::newest_first;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub keep: u32,
    /// Images older than this are pruned even within `keep`.
    pub max_age: Option<Duration>,
}

impl RetentionPolicy {
    pub fn keep(keep: u32) -> RetentionPolicy {
        RetentionPolicy {
            keep,
            max_age: None,
        }
    }
}

/// Why retention deletes an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneReason {
    /// More images than `keep`.
    BeyondKeep(u32),
    /// Older than `max_age`.
    OlderThan(Duration),
}

impl std::fmt::Display for PruneReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PruneReason::BeyondKeep(keep) => write!(f, "beyond keep = {keep}"),
            PruneReason::OlderThan(age) => {
                write!(f, "older than max_age = \"{}\"", duration::format(*age))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepReason {
    NewestValidated,
    WithinKeep,
    BuildInProgress,
    Protected(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneDecision {
    /// Oldest first, each with why it goes.
    pub delete: Vec<(ImageName, PruneReason)>,
    pub kept: Vec<(ImageName, KeepReason)>,
}

impl PruneDecision {
    pub fn delete_names(&self) -> Vec<String> {
        self.delete.iter().map(|(n, _)| n.to_string()).collect()
    }

    /// Image name -> why it goes, as the plan shows it.
    pub fn reasons(&self) -> BTreeMap<String, String> {
        self.delete
            .iter()
            .map(|(n, why)| (n.to_string(), why.to_string()))
            .collect()
    }
}

/// Decides the prune list at `now`. `incoming` is the image this apply will
/// publish if its smoke test passes: it takes a slot and becomes the newest
/// validated.
pub fn plan_prune(
    images: &[Image],
    policy: RetentionPolicy,
    incoming: bool,
    now: OffsetDateTime,
) -> PruneDecision {
    let mut decision = PruneDecision::default();
    let ordered = newest_first(images);
    let newest_validated = if incoming {
        None
    } else {
        ordered
            .iter()
            .find(|i| i.is_validated())
            .map(|i| i.name().clone())
    };

    let mut candidates_for_deletion: Vec<&Image> = Vec::new();
    let mut counted = usize::from(incoming);
    for image in &ordered {
        let name = image.name().clone();
        if image.in_progress {
            decision.kept.push((name, KeepReason::BuildInProgress));
            continue;
        }
        counted += 1;
        if Some(&name) == newest_validated.as_ref() {
            decision.kept.push((name, KeepReason::NewestValidated));
            continue;
        }
        candidates_for_deletion.push(image);
    }

    let keep = policy.keep.max(1) as usize;
    let mut excess = counted.saturating_sub(keep);
    // Failed and abandoned candidates go first, then validated; oldest first in each.
    let mut victims: Vec<&Image> = candidates_for_deletion.clone();
    victims.sort_by(|a, b| {
        let rank = |i: &Image| u8::from(i.status() == Status::Validated);
        rank(a).cmp(&rank(b)).then_with(|| a.name().cmp(b.name()))
    });
    let too_old = |image: &Image| {
        policy
            .max_age
            .filter(|max| (now - image.built_at()).whole_seconds() >= max.as_secs() as i64)
    };
    let mut chosen: Vec<(ImageName, PruneReason)> = Vec::new();
    for image in victims {
        let reason = if excess > 0 {
            PruneReason::BeyondKeep(policy.keep)
        } else if let Some(max) = too_old(image) {
            PruneReason::OlderThan(max)
        } else {
            continue;
        };
        if let Some(why) = &image.protected {
            decision
                .kept
                .push((image.name().clone(), KeepReason::Protected(why.clone())));
            continue;
        }
        chosen.push((image.name().clone(), reason));
        excess = excess.saturating_sub(1);
    }
    for image in candidates_for_deletion {
        let name = image.name();
        let already =
            chosen.iter().any(|(n, _)| n == name) || decision.kept.iter().any(|(n, _)| n == name);
        if !already {
            decision.kept.push((name.clone(), KeepReason::WithinKeep));
        }
    }
    chosen.sort_by(|a, b| a.0.cmp(&b.0));
    decision.delete = chosen;
    decision
}

/// The apply-time safety net: of the names the plan promised to delete, those
/// that may still be deleted now. A plan can be stale (another apply ran in
/// between); this never deletes more than planned and never the newest
/// validated image, an image in progress, or a protected one.
pub fn still_deletable<'a>(planned: &[String], images: &'a [Image]) -> Vec<&'a Image> {
    let newest_validated = newest_first(images)
        .into_iter()
        .find(|i| i.is_validated())
        .map(|i| i.name().clone());
    images
        .iter()
        .filter(|i| planned.contains(&i.name().to_string()))
        .filter(|i| Some(i.name()) != newest_validated.as_ref())
        .filter(|i| !i.in_progress && i.protected.is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::selection::tests::img;

    fn names(d: &PruneDecision) -> Vec<String> {
        d.delete_names()
    }

    const KEEP2: RetentionPolicy = RetentionPolicy {
        keep: 2,
        max_age: None,
    };

    /// 2026-02-01T00:00:00Z: every test image is from January 2026.
    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-02-01 00:00 UTC)
    }

    #[test]
    fn keeps_last_n_and_deletes_oldest() {
        let images = vec![
            img("base-20260101-001", Status::Validated),
            img("base-20260102-001", Status::Validated),
            img("base-20260103-001", Status::Validated),
        ];
        assert_eq!(
            names(&plan_prune(&images, KEEP2, false, now())),
            ["base-20260101-001"]
        );
    }

    #[test]
    fn incoming_build_takes_a_slot() {
        let images = vec![
            img("base-20260101-001", Status::Validated),
            img("base-20260102-001", Status::Validated),
        ];
        assert_eq!(
            names(&plan_prune(&images, KEEP2, true, now())),
            ["base-20260101-001"]
        );
        assert!(names(&plan_prune(&images, KEEP2, false, now())).is_empty());
    }

    #[test]
    fn failed_candidates_go_before_validated() {
        let images = vec![
            img("base-20260101-001", Status::Validated),
            img("base-20260102-001", Status::Validated),
            img("base-20260102-002", Status::Failed),
        ];
        assert_eq!(
            names(&plan_prune(&images, KEEP2, false, now())),
            ["base-20260102-002"]
        );
    }

    #[test]
    fn newest_validated_survives_keep_one_even_behind_newer_failures() {
        let images = vec![
            img("base-20260101-001", Status::Validated),
            img("base-20260102-001", Status::Failed),
            img("base-20260103-001", Status::Failed),
        ];
        let d = plan_prune(&images, RetentionPolicy::keep(1), false, now());
        assert_eq!(names(&d), ["base-20260102-001", "base-20260103-001"]);
        assert!(d
            .kept
            .contains(&(images[0].name().clone(), KeepReason::NewestValidated)));
    }

    #[test]
    fn build_in_progress_is_neither_counted_nor_deleted() {
        let mut running = img("base-20260104-001", Status::Candidate);
        running.in_progress = true;
        let images = vec![
            img("base-20260101-001", Status::Validated),
            img("base-20260102-001", Status::Validated),
            running,
        ];
        let d = plan_prune(&images, KEEP2, false, now());
        assert!(names(&d).is_empty());
        assert!(d
            .kept
            .iter()
            .any(|(_, r)| *r == KeepReason::BuildInProgress));
    }

    #[test]
    fn abandoned_candidate_is_pruned_like_a_failure() {
        let images = vec![
            img("base-20260101-001", Status::Validated),
            img("base-20260102-001", Status::Validated),
            img("base-20260103-001", Status::Candidate),
        ];
        assert_eq!(
            names(&plan_prune(&images, KEEP2, false, now())),
            ["base-20260103-001"]
        );
    }

    #[test]
    fn protected_image_is_kept_with_reason_and_next_oldest_goes() {
        let mut old = img("base-20260101-001", Status::Validated);
        old.protected = Some("2 linked clones".into());
        let images = vec![
            old,
            img("base-20260102-001", Status::Validated),
            img("base-20260103-001", Status::Validated),
            img("base-20260104-001", Status::Validated),
        ];
        let d = plan_prune(&images, KEEP2, false, now());
        assert_eq!(names(&d), ["base-20260102-001", "base-20260103-001"]);
        assert!(d
            .kept
            .iter()
            .any(|(n, r)| n.to_string() == "base-20260101-001"
                && *r == KeepReason::Protected("2 linked clones".into())));
    }

    /// `max_age`: older images go even within `keep`, each with its reason;
    /// the newest validated image stays however old; protected ones stay.
    #[test]
    fn max_age_prunes_old_images_within_keep_but_never_the_newest_validated() {
        let mut protected = img("base-20260103-001", Status::Validated);
        protected.protected = Some("linked clones still use it".into());
        let images = vec![
            img("base-20260101-001", Status::Validated),
            img("base-20260102-001", Status::Failed),
            protected,
            img("base-20260120-001", Status::Validated),
            img("base-20260125-001", Status::Validated),
        ];
        let policy = RetentionPolicy {
            keep: 10,
            max_age: Some(Duration::from_secs(14 * 24 * 3600)),
        };
        let d = plan_prune(&images, policy, false, now());
        assert_eq!(
            d.reasons(),
            BTreeMap::from([
                (
                    "base-20260101-001".to_owned(),
                    "older than max_age = \"336h\"".to_owned()
                ),
                (
                    "base-20260102-001".to_owned(),
                    "older than max_age = \"336h\"".to_owned()
                ),
            ])
        );
        assert!(d
            .kept
            .iter()
            .any(|(n, r)| n.to_string() == "base-20260103-001"
                && matches!(r, KeepReason::Protected(_))));
        // Everything is older than a day, the newest validated still stays.
        let policy = RetentionPolicy {
            keep: 10,
            max_age: Some(Duration::from_secs(24 * 3600)),
        };
        let d = plan_prune(&images, policy, false, now());
        assert!(!names(&d).contains(&"base-20260125-001".to_owned()));
        assert!(d
            .kept
            .contains(&(images[4].name().clone(), KeepReason::NewestValidated)));
        // Beyond keep and too old: counted once, named for keep.
        let policy = RetentionPolicy {
            keep: 4,
            max_age: Some(Duration::from_secs(14 * 24 * 3600)),
        };
        let d = plan_prune(&images, policy, false, now());
        assert_eq!(d.reasons()["base-20260102-001"], "beyond keep = 4");
        assert_eq!(
            d.reasons()["base-20260101-001"],
            "older than max_age = \"336h\""
        );
    }

    #[test]
    fn keep_zero_is_treated_as_one() {
        let images = vec![
            img("base-20260101-001", Status::Validated),
            img("base-20260102-001", Status::Validated),
        ];
        assert_eq!(
            names(&plan_prune(&images, RetentionPolicy::keep(0), false, now())),
            ["base-20260101-001"]
        );
    }

    #[test]
    fn apply_never_deletes_beyond_plan_or_the_newest_validated() {
        let images = vec![
            img("base-20260101-001", Status::Validated),
            img("base-20260102-001", Status::Validated),
        ];
        let planned = vec![
            "base-20260101-001".to_string(),
            "base-20260102-001".to_string(),
            "base-x".to_string(),
        ];
        let ok: Vec<String> = still_deletable(&planned, &images)
            .iter()
            .map(|i| i.name().to_string())
            .collect();
        assert_eq!(ok, ["base-20260101-001"]);
    }
}
