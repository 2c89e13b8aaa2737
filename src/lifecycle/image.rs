//! An image as the lifecycle sees it, whatever platform holds it.

use super::metadata::{Metadata, Status};
use super::naming::ImageName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub meta: Metadata,
    /// The platform's own identifier (a file path, a VM id, a snapshot id).
    pub id: String,
    pub size_bytes: Option<u64>,
    /// A candidate whose build is still running somewhere (not stale).
    pub in_progress: bool,
    /// Why the platform refuses to delete it right now (e.g. linked clones).
    pub protected: Option<String>,
}

impl Image {
    pub fn name(&self) -> &ImageName {
        &self.meta.name
    }

    pub fn status(&self) -> Status {
        self.meta.status
    }

    pub fn is_validated(&self) -> bool {
        self.meta.status == Status::Validated
    }

    /// When the image was made: its validation time, or for an image never
    /// validated (or written without one) the start of its build date (UTC).
    pub fn built_at(&self) -> time::OffsetDateTime {
        self.meta
            .validated_at
            .as_deref()
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .unwrap_or_else(|| self.name().date.start())
    }
}
