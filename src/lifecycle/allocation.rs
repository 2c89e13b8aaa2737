//! Build-number allocation. The next number is one past the highest used today;
//! it is made safe against concurrent applies by a claim on the platform, and
//! a run that loses a claim tries the next number (`pipeline::reserve_candidate`
//! does that for every platform). The two claim rules:
//!
//! - **create-if-absent**: the platform can create a name only if it does not
//!   exist (the local store's `link(2)`); the second run gets `AlreadyExists`.
//! - **earliest claim**: the platform cannot (PVE, clouds: names are not
//!   unique), so every run creates its candidate, then compares claims with
//!   [`earliest_claim_wins`]; the loser removes its candidate and gives way.

use super::naming::{BuildDate, ImageName, MAX_BUILD_NUMBER};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("family already has {MAX_BUILD_NUMBER} builds dated {0}; try again tomorrow (UTC)")]
pub struct Exhausted(pub BuildDate);

pub fn next_build_number<'a>(
    existing: impl IntoIterator<Item = &'a ImageName>,
    date: BuildDate,
) -> Result<u16, Exhausted> {
    let highest = existing
        .into_iter()
        .filter(|n| n.date == date)
        .map(|n| n.build)
        .max()
        .unwrap_or(0);
    if highest >= MAX_BUILD_NUMBER {
        return Err(Exhausted(date));
    }
    Ok(highest + 1)
}

/// Another claim on the same build number, as the platform lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rival<T> {
    /// An image already published under the name.
    Published,
    /// Another run's candidate: when it was created (if readable) and its
    /// platform id (the tie-break).
    Candidate { created: Option<T>, id: u64 },
}

/// The earliest-claim rule: the earlier creation time keeps the number, the
/// lower platform id breaks a tie. Every run computes the same order from
/// the same listing, so exactly one keeps it. A published image always wins,
/// and so does a rival whose creation time cannot be read, or any rival when
/// ours cannot be: when in doubt, give way (the next number is free).
pub fn earliest_claim_wins<T: Ord + Copy>(
    ours: Option<T>,
    our_id: u64,
    rivals: impl IntoIterator<Item = Rival<T>>,
) -> bool {
    rivals.into_iter().all(|rival| match rival {
        Rival::Published => false,
        Rival::Candidate { created, id } => match (created, ours) {
            (Some(theirs), Some(ours)) => (ours, our_id) < (theirs, id),
            _ => false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_claim_keeps_the_number() {
        let c = |created, id| Rival::Candidate {
            created: Some(created),
            id,
        };
        assert!(earliest_claim_wins(Some(10), 900, []));
        assert!(earliest_claim_wins(Some(10), 900, [c(11, 800)]));
        assert!(!earliest_claim_wins(Some(10), 900, [c(9, 950)]));
        // Same time: the lower id wins, and both sides agree.
        assert!(earliest_claim_wins(Some(10), 800, [c(10, 900)]));
        assert!(!earliest_claim_wins(Some(10), 900, [c(10, 800)]));
    }

    #[test]
    fn when_in_doubt_give_way() {
        assert!(!earliest_claim_wins(Some(10), 900, [Rival::Published]));
        assert!(!earliest_claim_wins(
            Some(10),
            900,
            [Rival::Candidate {
                created: None,
                id: 950
            }]
        ));
        assert!(!earliest_claim_wins(
            None,
            900,
            [Rival::Candidate {
                created: Some(11),
                id: 950
            }]
        ));
    }
    use crate::lifecycle::naming::{Family, NamingRules};

    fn names(v: &[&str]) -> Vec<ImageName> {
        let f = Family::parse("base", NamingRules { allow_dot: true }).unwrap();
        v.iter().map(|s| ImageName::parse(s, &f).unwrap()).collect()
    }

    fn day(s: &str) -> BuildDate {
        BuildDate::parse(s).unwrap()
    }

    #[test]
    fn first_build_of_the_day_is_001() {
        let existing = names(&["base-20260101-004"]);
        assert_eq!(next_build_number(&existing, day("20260102")), Ok(1));
    }

    #[test]
    fn next_is_one_past_the_highest_even_with_gaps() {
        let existing = names(&[
            "base-20260102-001",
            "base-20260102-005",
            "base-20260102-003",
        ]);
        assert_eq!(next_build_number(&existing, day("20260102")), Ok(6));
    }

    #[test]
    fn exhausted_after_999() {
        let existing = names(&["base-20260102-999"]);
        assert_eq!(
            next_build_number(&existing, day("20260102")),
            Err(Exhausted(day("20260102")))
        );
    }
}
