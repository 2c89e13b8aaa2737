//! Build-number allocation. The next number is one past the highest used today;
//! it is made safe against concurrent applies by reserving the name with a
//! create-if-absent on the platform and trying the next number when another
//! apply won the race (see `pipeline::reserve_candidate`).

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

#[cfg(test)]
mod tests {
    use super::*;
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
