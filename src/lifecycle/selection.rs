//! Which image a lookup returns.

use super::image::Image;

/// Newest first, by version (build date, then build number).
pub fn newest_first(images: &[Image]) -> Vec<&Image> {
    let mut v: Vec<&Image> = images.iter().collect();
    v.sort_by(|a, b| b.name().cmp(a.name()));
    v
}

/// The newest image, or the newest validated one when `validated_only` (the
/// default everywhere): a candidate or a failed image is never "latest".
pub fn latest(images: &[Image], validated_only: bool) -> Option<&Image> {
    newest_first(images)
        .into_iter()
        .find(|i| !validated_only || i.is_validated())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lifecycle::metadata::{Metadata, Status};
    use crate::lifecycle::naming::{Family, ImageName, NamingRules};
    use std::collections::BTreeMap;

    pub fn img(name: &str, status: Status) -> Image {
        let family = Family::parse("base", NamingRules { allow_dot: true }).unwrap();
        let name = ImageName::parse(name, &family).unwrap();
        Image {
            id: format!("id-{name}"),
            meta: Metadata {
                name,
                builder_version: "0".into(),
                recipe_hash: "h".into(),
                status,
                validated_at: None,
                tags: BTreeMap::new(),
            },
            size_bytes: None,
            in_progress: false,
            protected: None,
        }
    }

    #[test]
    fn latest_validated_skips_newer_failed_and_candidates() {
        let images = vec![
            img("base-20260101-001", Status::Validated),
            img("base-20260102-001", Status::Validated),
            img("base-20260102-002", Status::Failed),
            img("base-20260103-001", Status::Candidate),
        ];
        assert_eq!(
            latest(&images, true).unwrap().name().to_string(),
            "base-20260102-001"
        );
        assert_eq!(
            latest(&images, false).unwrap().name().to_string(),
            "base-20260103-001"
        );
    }

    #[test]
    fn latest_of_nothing_validated_is_none() {
        let images = vec![img("base-20260101-001", Status::Failed)];
        assert!(latest(&images, true).is_none());
        assert!(latest(&[], false).is_none());
    }

    #[test]
    fn newest_first_orders_by_version() {
        let images = vec![
            img("base-20260101-010", Status::Validated),
            img("base-20260102-001", Status::Validated),
            img("base-20260101-002", Status::Validated),
        ];
        let names: Vec<String> = newest_first(&images)
            .iter()
            .map(|i| i.name().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "base-20260102-001",
                "base-20260101-010",
                "base-20260101-002"
            ]
        );
    }
}
