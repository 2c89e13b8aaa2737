//! `golden_images`: every image golden built for a family, newest first.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeConstraint as C, AttributeType as T, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, DataSource, Diagnostics};

use super::lookup_target;
use crate::lifecycle::selection::newest_first;
use crate::provider::Shared;
use crate::resources::image::schema::{attr, block};
use crate::resources::values::{to_value_list, ImageEntry};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImagesState {
    pub platform: Value<String>,
    pub family: Value<String>,
    pub validated_only: Value<bool>,
    pub id: Value<String>,
    pub names: Value<Vec<Value<String>>>,
    pub images: Value<Vec<ImageEntry>>,
}

pub struct ImagesDataSource {
    shared: Arc<Shared>,
}

impl ImagesDataSource {
    pub fn new(shared: Arc<Shared>) -> Self {
        ImagesDataSource { shared }
    }
}

#[async_trait]
impl DataSource for ImagesDataSource {
    type State<'a> = ImagesState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let b = block(
            vec![
                ("platform", attr(T::String, C::Required, "`local` or `proxmox`.")),
                ("family", attr(T::String, C::Required, "The image family.")),
                ("validated_only", attr(T::Bool, C::Optional, "Only validated images (default `false`: every status).")),
                ("id", attr(T::String, C::Computed, "`<platform>/<family>`.")),
                ("names", attr(T::List(Box::new(T::String)), C::Computed, "Image names, newest first.")),
                ("images", attr(T::List(Box::new(ImageEntry::schema_type())), C::Computed, "Images, newest first, with status, build date and number, recipe hash, validation time and size.")),
            ],
            "Every image golden built for a family, newest first. An empty family is an empty list, not an error.",
        );
        Some(Schema {
            version: 1,
            block: b,
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: ImagesState) -> Option<()> {
        lookup_target(&config.platform, &config.family, diags).map(|_| ())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        config: ImagesState,
        _meta: ValueEmpty,
    ) -> Option<ImagesState> {
        let (kind, family) = lookup_target(&config.platform, &config.family, diags)??;
        let platform = self
            .shared
            .platform(&kind, diags, AttributePath::new("platform"))?;
        let validated_only = config
            .validated_only
            .as_ref_option()
            .copied()
            .unwrap_or(false);
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
        let chosen: Vec<_> = newest_first(&images)
            .into_iter()
            .filter(|i| !validated_only || i.is_validated())
            .collect();
        let names: Vec<String> = chosen.iter().map(|i| i.name().to_string()).collect();
        Some(ImagesState {
            id: Value::Value(format!("{kind}/{family}")),
            names: to_value_list(&names),
            images: Value::Value(chosen.into_iter().map(ImageEntry::from_image).collect()),
            ..config
        })
    }
}
