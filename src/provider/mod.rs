//! The provider: its schema, `configure` (one platform client per configured
//! block), and the one registry of resources and data sources.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{
    AttributeConstraint as C, AttributeType as T, Block, Description, NestedBlock, Schema,
};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, DynamicDataSource, DynamicResource, Provider};
use tokio_util::sync::CancellationToken;

use crate::data_sources::{images::ImagesDataSource, latest_image::LatestImageDataSource};
use crate::lifecycle::context::Cx;
use crate::platforms::local::LocalPlatform;
use crate::platforms::Platform;
mod proxmox;
use crate::qemu::accel::{self, AccelChoice};
use crate::resources::image::schema::{attr, block};
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LocalBlock {
    pub store_dir: Value<String>,
    pub accelerator: Value<String>,
}

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct ProxmoxBlock {
    pub endpoint: Value<String>,
    pub api_token: Value<String>,
    pub insecure: Value<bool>,
    pub node: Value<String>,
    pub storage: Value<String>,
    pub import_storage: Value<String>,
    pub vmid_range: Value<String>,
    pub agent_timeout: Value<String>,
}

// Hand-written so the token can never reach a log line.
impl std::fmt::Debug for ProxmoxBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxmoxBlock")
            .field("endpoint", &self.endpoint)
            .field("api_token", &"***")
            .field("node", &self.node)
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProviderConfig {
    pub local: Value<Vec<LocalBlock>>,
    pub proxmox: Value<Vec<ProxmoxBlock>>,
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

/// `$XDG_DATA_HOME/golden`, else `~/.local/share/golden`.
pub fn default_store_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("XDG_DATA_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"))
        .join("golden")
}

fn local_block(cfg: &ProviderConfig) -> LocalBlock {
    match &cfg.local {
        Value::Value(v) => v.first().cloned().unwrap_or_default(),
        _ => LocalBlock::default(),
    }
}

fn proxmox_block(cfg: &ProviderConfig) -> Option<ProxmoxBlock> {
    match &cfg.proxmox {
        Value::Value(v) => v.first().cloned(),
        _ => None,
    }
}

fn accel_path() -> AttributePath {
    AttributePath::new("local")
        .index(0)
        .attribute("accelerator")
}

#[async_trait]
impl Provider for GoldenProvider {
    type Config<'a> = ProviderConfig;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let local = block(
            vec![
                ("store_dir", attr(T::String, C::Optional, "Where images live: `<store_dir>/<family>/<name>.qcow2` plus a JSON sidecar. Default `$XDG_DATA_HOME/golden` (`~/.local/share/golden`).")),
                ("accelerator", attr(T::String, C::Optional, "`auto` (default), `kvm` or `tcg`. `auto` uses KVM only when it really works (CPU virtualization flags and a VM can be created), else TCG.")),
            ],
            "The local platform: QEMU on this machine. Works without this block, with defaults.",
        );
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                attributes: HashMap::new(),
                blocks: HashMap::from([
                    ("local".to_owned(), NestedBlock::Optional(local)),
                    (
                        "proxmox".to_owned(),
                        NestedBlock::Optional(proxmox::schema()),
                    ),
                ]),
                description: Description::markdown(
                    "golden builds, smoke-tests, publishes and prunes golden VM images.",
                ),
                deprecated: false,
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::Config<'a>) -> Option<()> {
        if let Some(block) = proxmox_block(&config) {
            proxmox::validate(&block, diags)?;
        }
        let local = local_block(&config);
        if let Value::Value(a) = &local.accelerator {
            if AccelChoice::parse(a).is_none() {
                diags.error(
                    "Invalid accelerator",
                    format!("accelerator must be auto, kvm or tcg, got {a:?}"),
                    accel_path(),
                );
                return None;
            }
        }
        Some(())
    }

    async fn configure<'a>(
        &self,
        diags: &mut Diagnostics,
        _tf_version: String,
        config: Self::Config<'a>,
    ) -> Option<()> {
        let local = local_block(&config);
        let choice = local
            .accelerator
            .as_ref_option()
            .and_then(|a| AccelChoice::parse(a))
            .unwrap_or_default();
        let accel = match accel::resolve(choice) {
            Ok(a) => a,
            Err(why) => {
                diags.error(
                    "Unable to Use KVM",
                    format!("accelerator = \"kvm\" but {why}; use \"auto\" or \"tcg\""),
                    accel_path(),
                );
                return None;
            }
        };
        let store = local
            .store_dir
            .as_ref_option()
            .map(PathBuf::from)
            .unwrap_or_else(default_store_dir);
        tracing::info!(store = %store.display(), %accel, "local platform configured");
        self.shared
            .set(Arc::new(LocalPlatform::new(store.clone(), accel)));
        let block = proxmox_block(&config);
        if let Some(p) = proxmox::configure(block.as_ref(), diags)? {
            self.shared.set(Arc::new(p));
        }
        Some(())
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
