//! Retention: which images of a family an apply deletes.
//!
//! Rules, in order: only images golden built for this family reach this code;
//! a build in progress elsewhere is never touched; the newest validated image
//! (counting the one this apply is about to publish) is never deleted; an image
//! the platform protects (linked clones) is kept and says why; beyond that the
//! family keeps `keep` images, giving up failed and abandoned candidates before
//! any validated image, oldest first.

use super::image::Image;
use super::metadata::Status;
use super::naming::ImageName;
use super::selection::newest_first;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub keep: u32,
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
    /// Oldest first.
    pub delete: Vec<ImageName>,
    pub kept: Vec<(ImageName, KeepReason)>,
}

impl PruneDecision {
    pub fn delete_names(&self) -> Vec<String> {
        self.delete.iter().map(|n| n.to_string()).collect()
    }
}

/// Decides the prune list. `incoming` is the image this apply will publish if
/// its smoke test passes: it takes a slot and becomes the newest validated.
pub fn plan_prune(images: &[Image], policy: RetentionPolicy, incoming: bool) -> PruneDecision {
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
    let mut chosen: Vec<ImageName> = Vec::new();
    for image in victims {
        if excess == 0 {
            break;
        }
        if let Some(why) = &image.protected {
            decision
                .kept
                .push((image.name().clone(), KeepReason::Protected(why.clone())));
            continue;
        }
        chosen.push(image.name().clone());
        excess -= 1;
    }
    for image in candidates_for_deletion {
        let name = image.name();
        let already = chosen.contains(name) || decision.kept.iter().any(|(n, _)| n == name);
        if !already {
            decision.kept.push((name.clone(), KeepReason::WithinKeep));
        }
    }
    chosen.sort();
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

    const KEEP2: RetentionPolicy = RetentionPolicy { keep: 2 };

    #[test]
    fn keeps_last_n_and_deletes_oldest() {
        let images = vec![
            img("base-20260101-001", Status::Validated),
            img("base-20260102-001", Status::Validated),
            img("base-20260103-001", Status::Validated),
        ];
        assert_eq!(
            names(&plan_prune(&images, KEEP2, false)),
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
            names(&plan_prune(&images, KEEP2, true)),
            ["base-20260101-001"]
        );
        assert!(names(&plan_prune(&images, KEEP2, false)).is_empty());
    }

    #[test]
    fn failed_candidates_go_before_validated() {
        let images = vec![
            img("base-20260101-001", Status::Validated),
            img("base-20260102-001", Status::Validated),
            img("base-20260102-002", Status::Failed),
        ];
        assert_eq!(
            names(&plan_prune(&images, KEEP2, false)),
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
        let d = plan_prune(&images, RetentionPolicy { keep: 1 }, false);
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
        let d = plan_prune(&images, KEEP2, false);
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
            names(&plan_prune(&images, KEEP2, false)),
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
        let d = plan_prune(&images, KEEP2, false);
        assert_eq!(names(&d), ["base-20260102-001", "base-20260103-001"]);
        assert!(d
            .kept
            .iter()
            .any(|(n, r)| n.to_string() == "base-20260101-001"
                && *r == KeepReason::Protected("2 linked clones".into())));
    }

    #[test]
    fn keep_zero_is_treated_as_one() {
        let images = vec![
            img("base-20260101-001", Status::Validated),
            img("base-20260102-001", Status::Validated),
        ];
        assert_eq!(
            names(&plan_prune(&images, RetentionPolicy { keep: 0 }, false)),
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
