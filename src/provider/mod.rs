//! The provider: its schema, `configure` (one platform client per configured
//! block), and the one registry of resources and data sources.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tf_provider::schema::{Block, Description, NestedBlock, Schema};
use tf_provider::value::{Value, ValueAny, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, DynamicDataSource, DynamicResource, Provider};
use tokio_util::sync::CancellationToken;

use crate::data_sources::{images::ImagesDataSource, latest_image::LatestImageDataSource};
use crate::lifecycle::context::Cx;
use crate::platforms::registry::PLATFORMS;
use crate::platforms::Platform;
use crate::resources::image::ImageResource;

/// What resources and data sources share: the configured platforms and the
/// cancellation token the signal handler trips.
pub struct Shared {
    platforms: RwLock<BTreeMap<&'static str, Arc<dyn Platform>>>,
    pub cancel: CancellationToken,
    /// The provider's own state: cleanup ledgers of every platform.
    pub state_dir: PathBuf,
    /// Pipelines running now; an orphaned provider waits for them to clean up.
    pub active: Arc<AtomicUsize>,
}

/// Counts a running pipeline for as long as it lives.
pub struct RunGuard(Arc<AtomicUsize>);

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    pub fn new(cancel: CancellationToken) -> Arc<Self> {
        Arc::new(Shared {
            platforms: RwLock::new(BTreeMap::new()),
            cancel,
            state_dir: default_state_dir(),
            active: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The context of a call that creates nothing (a lookup, a re-tag, a
    /// delete): cancelled with the provider, bounded by `timeout`.
    pub fn call_cx(&self, timeout: std::time::Duration) -> Cx {
        Cx::transient(self.cancel.child_token(), timeout)
    }

    pub fn begin_run(&self) -> RunGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        RunGuard(self.active.clone())
    }

    /// The configured platform, or an error diagnostic at `at`.
    pub fn platform(
        &self,
        kind: &str,
        diags: &mut Diagnostics,
        at: AttributePath,
    ) -> Option<Arc<dyn Platform>> {
        let map = self.platforms.read().unwrap_or_else(|p| p.into_inner());
        match map.get(kind) {
            Some(p) => Some(p.clone()),
            None => {
                diags.error(
                    "Platform Not Configured",
                    format!("platform {kind:?} has no configuration in the golden provider block"),
                    at,
                );
                None
            }
        }
    }

    pub fn is_configured(&self) -> bool {
        !self
            .platforms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    fn set(&self, p: Arc<dyn Platform>) {
        self.platforms
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(p.kind(), p);
    }
}

/// The provider block: one optional nested block per registered platform,
/// decoded by that platform (see `platforms::registry`).
pub type ProviderConfig = BTreeMap<String, Value<Vec<ValueAny>>>;

/// The first `<platform> { ... }` block, if the config has one.
fn platform_block<'a>(cfg: &'a ProviderConfig, name: &str) -> Option<&'a ValueAny> {
    match cfg.get(name) {
        Some(Value::Value(blocks)) => blocks.first(),
        _ => None,
    }
}

pub struct GoldenProvider {
    shared: Arc<Shared>,
}

impl GoldenProvider {
    pub fn new(cancel: CancellationToken) -> Self {
        GoldenProvider {
            shared: Shared::new(cancel),
        }
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

/// How long a lookup (data source read, refresh, plan listing) may take.
pub const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// `$XDG_STATE_HOME/golden`, else `~/.local/state/golden`: the provider's
/// cleanup ledgers, per platform and scope (`runs/<platform>/<scope>/`).
pub fn default_state_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let xdg_state_home = env("XDG_STATE_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    state_dir_under(&xdg_state_home)
}

/// The provider's state dir for a given `$XDG_STATE_HOME`.
pub fn state_dir_under(xdg_state_home: &std::path::Path) -> PathBuf {
    xdg_state_home.join("golden")
}

#[async_trait]
impl Provider for GoldenProvider {
    type Config<'a> = ProviderConfig;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let blocks = PLATFORMS
            .iter()
            .map(|p| {
                (
                    p.name.to_owned(),
                    NestedBlock::Optional((p.provider_block)()),
                )
            })
            .collect();
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                attributes: HashMap::new(),
                blocks,
                description: Description::markdown(
                    "golden builds, smoke-tests, publishes and prunes golden VM images.",
                ),
                deprecated: false,
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::Config<'a>) -> Option<()> {
        let mut ok = true;
        for p in PLATFORMS {
            if let Some(block) = platform_block(&config, p.name) {
                ok &= (p.validate_block)(block, diags).is_some();
            }
        }
        ok.then_some(())
    }

    async fn configure<'a>(
        &self,
        diags: &mut Diagnostics,
        _tf_version: String,
        config: Self::Config<'a>,
    ) -> Option<()> {
        let mut ok = true;
        for p in PLATFORMS {
            match (p.configure)(platform_block(&config, p.name), diags) {
                Some(Some(platform)) => self.shared.set(platform),
                Some(None) => {}
                None => ok = false,
            }
        }
        ok.then_some(())
    }

    fn get_resources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicResource>>> {
        Some(HashMap::from([(
            "image".to_owned(),
            Box::new(ImageResource::new(self.shared.clone())) as Box<dyn DynamicResource>,
        )]))
    }

    fn get_data_sources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicDataSource>>> {
        Some(HashMap::from([
            (
                "latest_image".to_owned(),
                Box::new(LatestImageDataSource::new(self.shared.clone()))
                    as Box<dyn DynamicDataSource>,
            ),
            (
                "images".to_owned(),
                Box::new(ImagesDataSource::new(self.shared.clone())) as Box<dyn DynamicDataSource>,
            ),
        ]))
    }
}
