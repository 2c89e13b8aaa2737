//! `golden_latest_image`: the newest image of a family; validated only unless
//! `validated_only = false`. A consumer never gets an untested image by default.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeConstraint as C, AttributeType as T, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, DataSource, Diagnostics};

use super::lookup_target;
use crate::lifecycle::selection::latest;
use crate::provider::Shared;
use crate::resources::image::schema::{attr, block};
use crate::resources::values::to_value_map;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatestImageState {
    pub platform: Value<String>,
    pub family: Value<String>,
    pub validated_only: Value<bool>,
    pub id: Value<String>,
    pub name: Value<String>,
    pub image_id: Value<String>,
    pub status: Value<String>,
    pub build_date: Value<String>,
    pub build_number: Value<i64>,
    pub recipe_hash: Value<String>,
    pub validated_at: Value<String>,
    pub tags: Value<BTreeMap<String, Value<String>>>,
}

pub struct LatestImageDataSource {
    shared: Arc<Shared>,
}

impl LatestImageDataSource {
    pub fn new(shared: Arc<Shared>) -> Self {
        LatestImageDataSource { shared }
    }
}

#[async_trait]
impl DataSource for LatestImageDataSource {
    type State<'a> = LatestImageState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let b = block(
            vec![
                ("platform", attr(T::String, C::Required, "`local` or `proxmox`.")),
                ("family", attr(T::String, C::Required, "The image family.")),
                (
                    "validated_only",
                    attr(
                        T::Bool,
                        C::Optional,
                        "Only images that passed their smoke test (default `true`).",
                    ),
                ),
                ("id", attr(T::String, C::Computed, "`<platform>/<name>`.")),
                (
                    "name",
                    attr(
                        T::String,
                        C::Computed,
                        "Image name, `{family}-{YYYYMMDD}-{NNN}`.",
                    ),
                ),
                (
                    "image_id",
                    attr(
                        T::String,
                        C::Computed,
                        "Platform identifier: a file path on `local`, the template's VM id on `proxmox`.",
                    ),
                ),
                (
                    "status",
                    attr(
                        T::String,
                        C::Computed,
                        "`validated`, `candidate` or `failed`.",
                    ),
                ),
                (
                    "build_date",
                    attr(T::String, C::Computed, "UTC build date, `YYYYMMDD`."),
                ),
                (
                    "build_number",
                    attr(T::Number, C::Computed, "Build number within the day."),
                ),
                (
                    "recipe_hash",
                    attr(T::String, C::Computed, "Hash of the recipe that built it."),
                ),
                (
                    "validated_at",
                    attr(
                        T::String,
                        C::Computed,
                        "When it passed its smoke test (RFC 3339).",
                    ),
                ),
                (
                    "tags",
                    attr(
                        T::Map(Box::new(T::String)),
                        C::Computed,
                        "The user tags on the image.",
                    ),
                ),
            ],
            "The newest image of a golden family. By default only validated images are considered.",
        );
        Some(Schema {
            version: 1,
            block: b,
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: LatestImageState) -> Option<()> {
        lookup_target(&config.platform, &config.family, diags).map(|_| ())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        config: LatestImageState,
        _meta: ValueEmpty,
    ) -> Option<LatestImageState> {
        let (kind, family) = lookup_target(&config.platform, &config.family, diags)??;
        let platform = self
            .shared
            .platform(&kind, diags, AttributePath::new("platform"))?;
        let validated_only = config
            .validated_only
            .as_ref_option()
            .copied()
            .unwrap_or(true);
        let images = match platform
            .list_images(
                &family,
                &self.shared.call_cx(crate::provider::LOOKUP_TIMEOUT),
            )
            .await
        {
            Ok(v) => v,
            Err(e) => {
                diags.root_error(
                    format!("Unable to Read Image Family {family}"),
                    e.to_string(),
                );
                return None;
            }
        };
        let Some(image) = latest(&images, validated_only) else {
            let what = if validated_only {
                "no validated image"
            } else {
                "no image"
            };
            diags.root_error(
                "Image Not Found",
                format!(
                    "family \"{family}\" on platform {kind:?} has {what} ({} image(s) of any status)",
                    images.len()
                ),
            );
            return None;
        };
        Some(LatestImageState {
            id: Value::Value(format!("{kind}/{}", image.name())),
            name: Value::Value(image.name().to_string()),
            image_id: Value::Value(image.id.clone()),
            status: Value::Value(image.status().as_str().to_owned()),
            build_date: Value::Value(image.name().date.to_string()),
            build_number: Value::Value(i64::from(image.name().build)),
            recipe_hash: Value::Value(image.meta.recipe_hash.clone()),
            validated_at: image.meta.validated_at.clone().into(),
            tags: to_value_map(&image.meta.tags),
            ..config
        })
    }
}
