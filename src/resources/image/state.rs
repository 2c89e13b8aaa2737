//! The Terraform state of `golden_image`, field for field as in the schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tf_provider::value::Value;

use crate::resources::values::ImageEntry;

pub type StringList = Value<Vec<Value<String>>>;
pub type StringMap = Value<BTreeMap<String, Value<String>>>;

/// A `source` block: its attributes come from the platform registry.
pub use crate::platforms::registry::SourceBlock;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProvisionBlock {
    pub files: StringMap,
    pub commands: StringList,
    pub services: StringList,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SmokeTestBlock {
    pub checks: StringList,
    pub commands: StringList,
    pub timeout: Value<String>,
    pub allow_degraded: Value<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetentionBlock {
    pub keep: Value<i64>,
    pub max_age: Value<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeoutsBlock {
    pub create: Value<String>,
    pub update: Value<String>,
    pub delete: Value<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckEntry {
    pub name: Value<String>,
    pub ok: Value<bool>,
    pub duration_ms: Value<i64>,
    pub detail: Value<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub passed: Value<bool>,
    pub checks: Value<Vec<CheckEntry>>,
    pub console_tail: Value<String>,
    pub duration_ms: Value<i64>,
    pub finished_at: Value<String>,
}

/// What changed in the packages since the previous validated image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PackagesChanged {
    pub since: Value<String>,
    pub added: StringList,
    pub removed: StringList,
    pub upgraded: StringList,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageState {
    // Arguments.
    pub platform: Value<String>,
    pub family: Value<String>,
    pub packages: StringList,
    pub tags: StringMap,
    pub rebuild_after: Value<String>,
    pub triggers: StringMap,
    pub on_destroy: Value<String>,
    pub source: Value<Vec<SourceBlock>>,
    pub provision: Value<Vec<ProvisionBlock>>,
    pub smoke_test: Value<Vec<SmokeTestBlock>>,
    pub retention: Value<Vec<RetentionBlock>>,
    pub timeouts: Value<Vec<TimeoutsBlock>>,
    // Computed.
    pub id: Value<String>,
    pub name: Value<String>,
    pub image_id: Value<String>,
    pub build_date: Value<String>,
    pub build_number: Value<i64>,
    pub recipe_hash: Value<String>,
    pub validated: Value<bool>,
    pub validation: Value<Validation>,
    pub packages_changed: Value<PackagesChanged>,
    pub images: Value<Vec<ImageEntry>>,
    pub prune: StringList,
    pub prune_reasons: StringMap,
}

impl ImageState {
    /// Marks everything a build will change as unknown ("known after apply").
    pub fn unknown_build_outputs(&mut self) {
        self.name = Value::Unknown;
        self.image_id = Value::Unknown;
        self.build_date = Value::Unknown;
        self.build_number = Value::Unknown;
        self.validated = Value::Unknown;
        self.validation = Value::Unknown;
        self.packages_changed = Value::Unknown;
        self.images = Value::Unknown;
    }

    /// Copies the computed attributes that describe the current image.
    pub fn copy_current_from(&mut self, other: &ImageState) {
        self.name = other.name.clone();
        self.image_id = other.image_id.clone();
        self.build_date = other.build_date.clone();
        self.build_number = other.build_number;
        self.validated = other.validated;
        self.validation = other.validation.clone();
        self.packages_changed = other.packages_changed.clone();
        self.images = other.images.clone();
    }
}
