//! `golden_image`: one family on one platform. `impl Resource` only forwards;
//! the work is in the files beside it.

mod apply;
pub mod config;
mod import;
mod listing;
mod plan;
pub mod schema;
pub mod state;

use std::sync::Arc;

use async_trait::async_trait;
use tf_provider::schema::Schema;
use tf_provider::value::ValueEmpty;
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::provider::Shared;
use state::ImageState;

pub struct ImageResource {
    shared: Arc<Shared>,
}

impl ImageResource {
    pub fn new(shared: Arc<Shared>) -> Self {
        ImageResource { shared }
    }
}

#[async_trait]
impl Resource for ImageResource {
    type State<'a> = ImageState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(schema::schema())
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: ImageState) -> Option<()> {
        config::desired(&config, diags).ok().map(|_| ())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: ImageState,
        private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(ImageState, ValueEmpty)> {
        plan::read(&self.shared, diags, state)
            .await
            .map(|s| (s, private))
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed: ImageState,
        config: ImageState,
        _meta: ValueEmpty,
    ) -> Option<(ImageState, ValueEmpty)> {
        plan::plan_create(&self.shared, diags, proposed, config)
            .await
            .map(|s| (s, ValueEmpty::default()))
    }

    async fn plan_update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: ImageState,
        proposed: ImageState,
        config: ImageState,
        private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(ImageState, ValueEmpty, Vec<AttributePath>)> {
        // A rebuild is an in-place update (DESIGN section 2); only moving the
        // resource to another family or platform replaces it, because one
        // resource owns one family on one platform.
        let mut replace = Vec::new();
        if prior.family != config.family {
            replace.push(AttributePath::new("family"));
        }
        if prior.platform != config.platform {
            replace.push(AttributePath::new("platform"));
        }
        plan::plan_update(&self.shared, diags, prior, proposed, config)
            .await
            .map(|s| (s, private, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: ImageState,
        private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<ValueEmpty> {
        Some(private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: ImageState,
        config: ImageState,
        private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(ImageState, ValueEmpty)> {
        apply::create(&self.shared, diags, planned, config)
            .await
            .map(|s| (s, private))
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: ImageState,
        planned: ImageState,
        config: ImageState,
        private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(ImageState, ValueEmpty)> {
        apply::update(&self.shared, diags, prior, planned, config)
            .await
            .map(|s| (s, private))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: ImageState,
        _private: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<()> {
        apply::destroy(&self.shared, diags, prior).await
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(ImageState, ValueEmpty)> {
        import::import(&self.shared, diags, id)
            .await
            .map(|s| (s, ValueEmpty::default()))
    }
}
