//! The `digitalocean` platform: golden images are droplet snapshots.
//!
//! Reserve: a throwaway account key and the build droplet, created from the
//! source with the recipe as user-data (it provisions, then powers itself
//! off); the droplet, tagged `golden-claim:<name>`, is the claim on the build
//! number (earliest-claim rule). Build: wait for `off`, the `snapshot` action
//! with the candidate name, the image id read from the droplet's snapshots,
//! golden's tags on it, transfers to the extra regions, then droplet and key
//! deleted. Smoke test: a droplet from the snapshot with a host key made here,
//! checked over SSH with the host key pinned. Publish: `golden-status:validated`,
//! the final name, `candidate` untagged. Metadata: image tags (`encoding.rs`).
//! The validation report lives in Terraform state: snapshots take no
//! description, so `report` has nothing to read back.

pub mod api;
mod build;
pub mod client;
pub mod encoding;
mod smoke;
pub mod spec;
mod tags;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::ledger::UndoAction;
use crate::lifecycle::metadata::{self, Metadata, Status};
use crate::lifecycle::naming::Family;
use crate::lifecycle::recipe::{BuildInput, SmokeSpec};
use crate::lifecycle::report::Report;
use crate::platforms::kit::poll::{self, Interval, Progress};
use crate::platforms::{Error, ErrorKind, Platform, Result};
use api::{Action, Api, DoImage};
use client::Client;

/// Everything the provider block says about where and how to build.
#[derive(Debug, Clone)]
pub struct DoConfig {
    /// Where builds and smoke tests run and images are made.
    pub region: String,
    /// The droplet size of build and smoke-test droplets.
    pub size: String,
    /// More regions every new image reaches before publish.
    pub regions: Vec<String>,
    /// The port the smoke test reaches sshd on.
    pub ssh_port: u16,
    /// How long a build droplet may take to power itself off.
    pub power_off_timeout: Duration,
    /// How long the transfers to `regions` may take together.
    pub transfer_timeout: Duration,
    /// Names this endpoint among the provider's ledgers.
    pub ledger_scope: String,
}

pub struct DoPlatform {
    client: Client,
    config: DoConfig,
    /// Builds reserved and not yet built, by image name: what `reserve`
    /// created for `build` to carry on with.
    pending: Mutex<HashMap<String, build::Reserved>>,
    /// Builds whose droplet did not power off by itself, by image name: the
    /// smoke test reports it as a failed `build` check.
    unclean: Mutex<HashMap<String, String>>,
}

/// The ledger entries of this platform, in `UndoAction::Platform`'s payload
/// under `"digitalocean"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Undo {
    /// Every droplet carrying `run_tag` (recorded before the create is
    /// sent, so a create whose answer never came is found too), with the
    /// candidate snapshots named `snapshot` it made.
    DropDroplets {
        run_tag: String,
        #[serde(default)]
        snapshot: Option<String>,
    },
    /// A throwaway account key.
    DeleteKey { id: u64 },
}

const LEDGER_KEY: &str = "digitalocean";

impl Undo {
    pub fn action(&self) -> UndoAction {
        UndoAction::Platform {
            payload: serde_json::json!({ LEDGER_KEY: self }),
        }
    }

    fn from_payload(payload: &serde_json::Value) -> Option<Undo> {
        serde_json::from_value(payload.get(LEDGER_KEY)?.clone()).ok()
    }
}

/// How often to look at an action or a droplet.
const POLL: Interval = Interval::new(Duration::from_millis(250), Duration::from_secs(10));

/// A run id unique to one create by this process: lower-case hex, fit for
/// tags and names.
pub(crate) fn new_run_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}-{:x}-{}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// golden's tags for an image with `meta`, as a platform error.
fn golden_tags(
    meta: &Metadata,
    deadline: Option<time::OffsetDateTime>,
) -> Result<BTreeSet<String>> {
    encoding::tags_for(meta, deadline).map_err(|e| Error::new(ErrorKind::Other, e))
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// `golden-<run>-until-<deadline>`: a throwaway key's name, which says when
/// the sweep may remove it.
pub(crate) fn key_name(run: &str, deadline: time::OffsetDateTime) -> String {
    format!("golden-{run}-until-{}", encoding::tag_time(deadline))
}

/// The deadline in a throwaway key's name, if it is one of golden's.
pub(crate) fn key_deadline(name: &str) -> Option<time::OffsetDateTime> {
    let rest = name.strip_prefix("golden-")?;
    let (_, t) = rest.rsplit_once("-until-")?;
    encoding::parse_tag_time(t)
}

impl DoPlatform {
    pub fn new(client: Client, config: DoConfig) -> Self {
        DoPlatform {
            client,
            config,
            pending: Mutex::new(HashMap::new()),
            unclean: Mutex::new(HashMap::new()),
        }
    }

    fn api<'a>(&'a self, cx: &'a Cx) -> Api<'a> {
        Api::new(&self.client, cx)
    }

    /// When things this run creates may be swept: the run's deadline plus
    /// the time its own cleanup may take.
    fn deadline(&self, cx: &Cx) -> time::OffsetDateTime {
        now() + cx.remaining() + crate::lifecycle::pipeline::CLEANUP_TIMEOUT
    }

    fn image_id(image: &Image) -> Result<u64> {
        image.id.parse().map_err(|_| {
            Error::new(
                ErrorKind::Other,
                format!(
                    "{} has no DigitalOcean image id (id {:?})",
                    image.name(),
                    image.id
                ),
            )
        })
    }

    /// golden's images of `family`: the account's available images tagged
    /// with the family, whose tags and name say golden built them.
    async fn family_images(&self, family: &Family, cx: &Cx) -> Result<Vec<(Image, DoImage)>> {
        let tag = encoding::family_tag(family);
        let listed = self.api(cx).private_images_tagged(&tag).await?;
        let now = now();
        let mut out = Vec::new();
        for img in listed {
            if !img.is_available() || img.public == Some(true) {
                continue;
            }
            let Some(d) = encoding::decode(&img.tags, &img.name, family) else {
                continue;
            };
            let in_progress =
                d.meta.status == Status::Candidate && d.deadline.is_some_and(|t| t > now);
            out.push((
                Image {
                    meta: d.meta,
                    id: img.id.to_string(),
                    size_bytes: img
                        .size_gigabytes
                        .map(|g| (g * 1024.0 * 1024.0 * 1024.0) as u64),
                    in_progress,
                    protected: None,
                },
                img,
            ));
        }
        Ok(out)
    }

    /// Creates each tag (DO refuses to tag with an unknown one), then tags
    /// the image with it.
    /// Most of golden's tags exist already (family, status, version, your
    /// tags), so each is put on first and created only when DO answers 404
    /// (an unknown tag): one call per tag instead of two, which counts
    /// against the 250-a-minute burst shared by every terraform process.
    async fn add_tags(&self, image: u64, tags: &BTreeSet<String>, cx: &Cx) -> Result<()> {
        let api = self.api(cx);
        for t in tags {
            match api.tag_image(t, image).await {
                Err(e) if e.is_not_found() => {
                    tracing::debug!(tag = %t, "creating the tag");
                    api.create_tag(t).await?;
                    api.tag_image(t, image).await?;
                }
                r => r?,
            }
        }
        Ok(())
    }

    async fn remove_tags(&self, image: u64, tags: &BTreeSet<String>, cx: &Cx) -> Result<()> {
        let api = self.api(cx);
        for t in tags {
            api.untag_image(t, image).await?;
        }
        Ok(())
    }

    /// Moves an image's golden tags to `want`: adds what is missing first,
    /// then removes the rest of golden's tags (never anyone else's), so a
    /// lookup in between sees the new status already.
    async fn set_golden_tags(
        &self,
        image: u64,
        current: &[String],
        want: &BTreeSet<String>,
        cx: &Cx,
    ) -> Result<()> {
        let have: BTreeSet<String> = current.iter().cloned().collect();
        let add: BTreeSet<String> = want.difference(&have).cloned().collect();
        let drop: BTreeSet<String> = have
            .iter()
            .filter(|t| t.starts_with("golden-") && !want.contains(*t))
            .cloned()
            .collect();
        self.add_tags(image, &add, cx).await?;
        self.remove_tags(image, &drop, cx).await
    }

    /// Waits for an action to end: `true` when it completed, `false` when
    /// DO says it errored.
    async fn action_completed(
        &self,
        what: &str,
        action: u64,
        image: Option<u64>,
        cx: &Cx,
    ) -> Result<bool> {
        let api = self.api(cx);
        poll::until_done(what, cx, POLL, || async {
            let a: Action = match image {
                Some(img) => api.image_action(img, action).await?,
                None => api.action(action).await?,
            };
            Ok(match a.status.as_str() {
                "completed" => Progress::Done(true),
                "errored" => Progress::Done(false),
                _ => Progress::Pending,
            })
        })
        .await
    }

    /// Waits for an action to complete; `errored` is an error.
    async fn wait_action(&self, what: &str, action: u64, cx: &Cx) -> Result<()> {
        if self.action_completed(what, action, None, cx).await? {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Other,
            format!("{what}: DigitalOcean action {action} errored"),
        ))
    }

    /// Deletes a droplet golden made, after its running action ends (DO
    /// refuses a locked droplet) and with the candidate snapshots named
    /// `snapshot` it made (DO keeps snapshots when their droplet goes).
    async fn drop_droplet(&self, id: u64, snapshot: Option<&str>, cx: &Cx) -> Result<()> {
        let api = self.api(cx);
        let locked = poll::until_done(
            "waiting for the droplet to be unlocked",
            cx,
            POLL,
            || async {
                match api.droplet(id).await {
                    Ok(d) if d.locked => Ok(Progress::Pending),
                    Ok(_) => Ok(Progress::Done(true)),
                    Err(e) if e.is_not_found() => Ok(Progress::Done(false)),
                    Err(e) => Err(e),
                }
            },
        )
        .await?;
        if !locked {
            return Ok(());
        }
        if let Some(name) = snapshot {
            for s in api.droplet_snapshots(id).await? {
                if s.name != name {
                    continue;
                }
                // Only a candidate: a published or failed image stays.
                let img = match api.image(s.id).await {
                    Ok(i) => i,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e),
                };
                let kept = [Status::Validated, Status::Failed]
                    .iter()
                    .any(|st| img.tags.contains(&encoding::status_tag(*st)));
                if !kept {
                    tracing::info!(image = s.id, name, "deleting the candidate snapshot");
                    api.delete_image(s.id).await?;
                }
            }
        }
        api.delete_droplet(id).await?;
        tracing::info!(droplet = id, "droplet deleted");
        Ok(())
    }

    /// Deletes every droplet of a run: `known` first, then whatever else
    /// carries `run_tag` (a create that was sent twice, its first answer
    /// lost, leaves a twin with the same tag), then the run's tag and,
    /// when nothing carries it any more, its `claim` tag: both were made
    /// for this run alone. A tag left by a failed delete is harmless.
    pub(crate) async fn drop_run(
        &self,
        known: Option<u64>,
        run_tag: &str,
        snapshot: Option<&str>,
        claim: Option<&str>,
        cx: &Cx,
    ) -> Result<()> {
        if let Some(id) = known {
            self.drop_droplet(id, snapshot, cx).await?;
        }
        for d in self.api(cx).droplets_tagged(run_tag).await? {
            if Some(d.id) != known {
                tracing::warn!(
                    droplet = d.id,
                    run_tag,
                    "a second droplet of this run (a create sent twice); deleting it"
                );
            }
            self.drop_droplet(d.id, snapshot, cx).await?;
        }
        for t in std::iter::once(run_tag).chain(claim) {
            if let Err(e) = tags::delete_if_unused(&self.client, t, cx).await {
                tracing::warn!(tag = t, error = %e, "could not delete the run's tag");
            }
        }
        Ok(())
    }

    /// Creates a throwaway account key named with `run` and the deadline,
    /// recorded for deletion. A create whose answer is lost is looked up by
    /// its name before it is sent again.
    async fn create_key(&self, run: &str, public_key: &str, cx: &Cx) -> Result<u64> {
        let name = key_name(run, self.deadline(cx));
        let api = self.api(cx);
        let mut attempt = 0;
        let key = loop {
            attempt += 1;
            match api.create_key(&name, public_key).await {
                Ok(k) => break k,
                Err(e) if retry_after_lookup(&e) && attempt < 3 => {
                    tracing::warn!(error = %e, "creating the SSH key failed; looking it up before trying again");
                    if let Some(k) = api.keys().await?.into_iter().find(|k| k.name == name) {
                        break k;
                    }
                }
                Err(e) => return Err(e),
            }
        };
        cx.record(Undo::DeleteKey { id: key.id }.action());
        tracing::info!(key = key.id, fingerprint = %key.fingerprint, "throwaway account key created");
        Ok(key.id)
    }

    async fn delete_key(&self, id: u64, cx: &Cx) -> Result<()> {
        self.api(cx).delete_key(id).await?;
        cx.forget(&Undo::DeleteKey { id }.action());
        Ok(())
    }
}

/// How long the sweep waits for one abandoned droplet to be unlocked.
const SWEEP_UNLOCK_WAIT: Duration = Duration::from_secs(120);

/// `cx` with a deadline no further than `limit` from now.
fn capped(cx: &Cx, limit: Duration) -> Cx {
    let mut sub = cx.clone();
    sub.deadline = sub.deadline.min(tokio::time::Instant::now() + limit);
    sub
}

/// The names golden gives its droplets (`build.rs`, `smoke.rs`).
fn is_golden_droplet(name: &str) -> bool {
    name.starts_with("golden-build-") || name.starts_with("golden-smoke-")
}

/// A candidate the sweep may delete: golden's by its tags and name (they
/// decode for the family it is tagged with), still a candidate, past its
/// deadline.
fn is_stale_candidate(img: &DoImage, now: time::OffsetDateTime) -> bool {
    let Some(family) = img.tags.iter().find_map(|t| {
        let f = t.strip_prefix(&format!("{}:", metadata::KEY_FAMILY))?;
        Family::try_from(f.to_owned()).ok()
    }) else {
        return false;
    };
    encoding::decode(&img.tags, &img.name, &family)
        .is_some_and(|d| d.meta.status == Status::Candidate && d.deadline.is_some_and(|t| t <= now))
}

/// The claim tag of the build that snapshots under `snapshot`
/// (`candidate-<name>`).
fn claim_of_snapshot(snapshot: &str) -> Option<String> {
    let name = snapshot.strip_prefix("candidate-")?;
    Some(encoding::tag(encoding::KEY_CLAIM, name))
}

/// A create that failed in a way that may or may not have happened (a 5xx,
/// a dropped connection): look it up before sending it again. 429/503 are
/// the kit's (DO did not process them); a refusal is final.
pub(crate) fn retry_after_lookup(e: &Error) -> bool {
    e.is_transient()
}

#[async_trait]
impl Platform for DoPlatform {
    fn kind(&self) -> &'static str {
        "digitalocean"
    }

    fn ledger_scope(&self) -> String {
        self.config.ledger_scope.clone()
    }

    async fn list_images(&self, family: &Family, cx: &Cx) -> Result<Vec<Image>> {
        let images = self.family_images(family, cx).await?;
        Ok(images.into_iter().map(|(i, _)| i).collect())
    }

    async fn reserve(&self, meta: &Metadata, input: &BuildInput, cx: &Cx) -> Result<Image> {
        build::reserve(self, meta, input, cx).await
    }

    async fn build(&self, candidate: &Image, _input: &BuildInput, cx: &Cx) -> Result<Image> {
        build::run(self, candidate, cx).await
    }

    async fn smoke_test(&self, image: &Image, spec: &SmokeSpec, cx: &Cx) -> Result<Report> {
        smoke::run(self, image, spec, cx).await
    }

    async fn publish(&self, image: &Image, _report: &Report, cx: &Cx) -> Result<Image> {
        let id = Self::image_id(image)?;
        let mut meta = image.meta.clone();
        meta.status = Status::Validated;
        meta.validated_at = Some(encoding::rfc3339(now()));
        let current = self.api(cx).image(id).await?;
        // Validated first (our lookups switch over), then the name a
        // name-based lookup matches, then the candidate tags go.
        let want = golden_tags(&meta, None)?;
        let have: BTreeSet<String> = current.tags.iter().cloned().collect();
        let add: BTreeSet<String> = want.difference(&have).cloned().collect();
        self.add_tags(id, &add, cx).await?;
        self.api(cx)
            .rename_image(id, &encoding::image_name(&meta.name, Status::Validated))
            .await?;
        let drop: BTreeSet<String> = have
            .iter()
            .filter(|t| t.starts_with("golden-") && !want.contains(*t))
            .cloned()
            .collect();
        self.remove_tags(id, &drop, cx).await?;
        tracing::info!(image = id, name = %meta.name, "published");
        Ok(Image {
            meta,
            in_progress: false,
            ..image.clone()
        })
    }

    async fn mark_failed(&self, image: &Image, _report: &Report, cx: &Cx) -> Result<()> {
        let id = Self::image_id(image)?;
        let mut meta = image.meta.clone();
        meta.status = Status::Failed;
        let current = self.api(cx).image(id).await?;
        // No deadline: a failed image is kept for inspection until retention.
        self.set_golden_tags(id, &current.tags, &golden_tags(&meta, None)?, cx)
            .await
    }

    async fn retag(&self, image: &Image, tags: &BTreeMap<String, String>, cx: &Cx) -> Result<()> {
        let id = Self::image_id(image)?;
        let current = self.api(cx).image(id).await?;
        let family = image.meta.family();
        let decoded = encoding::decode(&current.tags, &current.name, family)
            .ok_or_else(|| Error::not_found(format!("image {id} is no longer {}", image.name())))?;
        let mut meta = decoded.meta;
        meta.tags = tags.clone();
        self.set_golden_tags(
            id,
            &current.tags,
            &golden_tags(&meta, decoded.deadline)?,
            cx,
        )
        .await
    }

    async fn delete(&self, image: &Image, cx: &Cx) -> Result<()> {
        let id = Self::image_id(image)?;
        let api = self.api(cx);
        // Re-check ownership right before deleting (only our own, ever).
        let current = api.image(id).await?;
        let ours = encoding::decode(&current.tags, &current.name, image.meta.family())
            .is_some_and(|d| d.meta.name == image.meta.name);
        if !ours {
            return Err(Error::not_found(format!(
                "image {id} is not {} any more",
                image.name()
            )));
        }
        api.delete_image(id).await?;
        tracing::info!(image = id, name = %image.name(), "image deleted");
        Ok(())
    }

    async fn undo(&self, action: &UndoAction, cx: &Cx) -> Result<()> {
        match action {
            UndoAction::Platform { payload } => match Undo::from_payload(payload) {
                Some(Undo::DropDroplets { run_tag, snapshot }) => {
                    // A build's entry names its candidate: its claim tag goes too.
                    let claim = snapshot.as_deref().and_then(claim_of_snapshot);
                    self.drop_run(None, &run_tag, snapshot.as_deref(), claim.as_deref(), cx)
                        .await
                }
                Some(Undo::DeleteKey { id }) => self.api(cx).delete_key(id).await,
                None => Err(Error::new(
                    ErrorKind::Other,
                    format!("unknown DigitalOcean ledger entry {payload}"),
                )),
            },
            UndoAction::DiscardCandidate { family, name } => {
                let Ok(family) = Family::try_from(family.clone()) else {
                    return Ok(());
                };
                for (image, _) in self.family_images(&family, cx).await? {
                    if image.name().to_string() == *name && image.status() == Status::Candidate {
                        tracing::info!(image = %name, id = %image.id, "discarding candidate");
                        self.api(cx).delete_image(Self::image_id(&image)?).await?;
                    }
                }
                Ok(())
            }
            // The pipeline carries out machine-local actions itself.
            UndoAction::KillProcess { .. } | UndoAction::RemovePath { .. } => Ok(()),
        }
    }

    /// Removes what runs that died without their ledger left behind. It
    /// never fails the build and never holds it up: a list that fails is
    /// logged and its step skipped, an abandoned droplet still locked
    /// after [`SWEEP_UNLOCK_WAIT`] is left to the next run.
    async fn sweep(&self, cx: &Cx) -> Result<()> {
        let api = self.api(cx);
        let now = now();
        let expired = |tags: &[String]| {
            tags.iter()
                .filter_map(|t| encoding::deadline_of(t))
                .any(|t| t <= now)
        };
        // Droplets of runs that died without a ledger (another machine):
        // golden's names and tags, past their deadline.
        match api.droplets_tagged(encoding::TAG_MANAGED).await {
            Err(e) => {
                tracing::warn!(error = %e, "sweep: could not list golden's droplets; skipping them")
            }
            Ok(droplets) => {
                for d in droplets {
                    if !is_golden_droplet(&d.name) || !expired(&d.tags) {
                        continue;
                    }
                    tracing::info!(droplet = d.id, name = %d.name, "removing an abandoned golden droplet");
                    let snapshot = d
                        .tags
                        .iter()
                        .find_map(|t| t.strip_prefix(&format!("{}:", encoding::KEY_CLAIM)))
                        .map(|n| format!("candidate-{n}"));
                    let capped = capped(cx, SWEEP_UNLOCK_WAIT);
                    if let Err(e) = self.drop_droplet(d.id, snapshot.as_deref(), &capped).await {
                        tracing::warn!(droplet = d.id, error = %e, "could not remove an abandoned droplet (still locked?); the next run tries again");
                    }
                }
            }
        }
        // Throwaway keys past their deadline.
        match api.keys().await {
            Err(e) => {
                tracing::warn!(error = %e, "sweep: could not list the account's keys; skipping them")
            }
            Ok(keys) => {
                for k in keys {
                    if key_deadline(&k.name).is_some_and(|t| t <= now) {
                        tracing::info!(key = k.id, name = %k.name, "removing an abandoned throwaway key");
                        if let Err(e) = api.delete_key(k.id).await {
                            tracing::warn!(key = k.id, error = %e, "could not remove an abandoned key");
                        }
                    }
                }
            }
        }
        // Candidates whose run gave up: only golden's own (tags and name
        // decode), never a validated or failed image.
        let candidate = encoding::status_tag(Status::Candidate);
        match api.private_images_tagged(&candidate).await {
            Err(e) => tracing::warn!(error = %e, "sweep: could not list candidates; skipping them"),
            Ok(images) => {
                for img in images {
                    if !is_stale_candidate(&img, now) {
                        continue;
                    }
                    tracing::info!(image = img.id, name = %img.name, "removing a stale candidate");
                    if let Err(e) = api.delete_image(img.id).await {
                        tracing::warn!(image = img.id, error = %e, "could not remove a stale candidate");
                    }
                }
            }
        }
        // Deadline tags past their time that nothing carries any more
        // (checked again by `GET /v2/tags/{tag}` right before the delete).
        match tags::list(&self.client, cx).await {
            Err(e) => {
                tracing::warn!(error = %e, "sweep: could not list the account's tags; skipping them")
            }
            Ok(all) => {
                for t in all {
                    let past = encoding::deadline_of(&t.name).is_some_and(|d| d <= now);
                    if !past || t.count != 0 {
                        continue;
                    }
                    match tags::delete_if_unused(&self.client, &t.name, cx).await {
                        Ok(true) => tracing::info!(tag = %t.name, "removed a past deadline tag"),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(tag = %t.name, error = %e, "could not remove a past deadline tag")
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Snapshots take no description: the report lives in Terraform state.
    async fn report(&self, _image: &Image, _cx: &Cx) -> Result<Option<Report>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_entries_round_trip() {
        for u in [
            Undo::DropDroplets {
                run_tag: encoding::run_tag(&new_run_id()),
                snapshot: Some("candidate-f-20260101-001".into()),
            },
            Undo::DeleteKey { id: 42 },
        ] {
            let UndoAction::Platform { payload } = u.action() else {
                panic!("not a platform entry")
            };
            assert_eq!(Undo::from_payload(&payload), Some(u));
        }
        assert_eq!(
            Undo::from_payload(&serde_json::json!({"destroy_vm": "x"})),
            None
        );
        assert_ne!(new_run_id(), new_run_id());
        assert!(encoding::is_valid_tag(&encoding::run_tag(&new_run_id())));
    }

    #[test]
    fn the_sweep_takes_only_golden_droplets_and_golden_candidates() {
        assert!(is_golden_droplet("golden-build-f-20260101-001"));
        assert!(is_golden_droplet("golden-smoke-f-20260101-001"));
        assert!(!is_golden_droplet("golden-web-1"));
        assert!(!is_golden_droplet("my-droplet"));

        use crate::lifecycle::naming::{BuildDate, ImageName, NamingRules};
        let family = Family::parse("f", NamingRules { allow_dot: false }).unwrap();
        let meta = Metadata {
            name: ImageName::new(family, BuildDate::parse("20260101").unwrap(), 1),
            builder_version: "0.1.0".into(),
            recipe_hash: "0123456789abcdef".into(),
            status: Status::Candidate,
            validated_at: None,
            tags: BTreeMap::new(),
        };
        let past = encoding::parse_tag_time("20260101t120000z").unwrap();
        let now = encoding::parse_tag_time("20260102t120000z").unwrap();
        let image = |name: &str, tags: Vec<String>| -> DoImage {
            serde_json::from_value(serde_json::json!({"id": 7, "name": name, "tags": tags}))
                .unwrap()
        };
        let tags: Vec<String> = golden_tags(&meta, Some(past))
            .unwrap()
            .into_iter()
            .collect();
        let name = encoding::image_name(&meta.name, Status::Candidate);
        assert!(is_stale_candidate(&image(&name, tags.clone()), now));
        // Not yet past its deadline.
        assert!(!is_stale_candidate(
            &image(&name, tags.clone()),
            past - time::Duration::HOUR
        ));
        // Someone's image that carries golden's tags but not a golden name.
        assert!(!is_stale_candidate(
            &image("my-snapshot", tags.clone()),
            now
        ));
        // Settled: a validated tag beside the candidate one.
        let mut settled = tags.clone();
        settled.push(encoding::status_tag(Status::Validated));
        assert!(!is_stale_candidate(&image(&name, settled), now));
        // No family tag: not golden's.
        let bare: Vec<String> = tags
            .into_iter()
            .filter(|t| !t.starts_with("golden-family:"))
            .collect();
        assert!(!is_stale_candidate(&image(&name, bare), now));
    }

    #[test]
    fn key_names_carry_their_deadline() {
        let t = encoding::parse_tag_time("20260101t120000z").unwrap();
        let name = key_name("1f-2a-0", t);
        assert_eq!(name, "golden-1f-2a-0-until-20260101t120000z");
        assert_eq!(key_deadline(&name), Some(t));
        assert_eq!(key_deadline("my laptop"), None);
        assert_eq!(key_deadline("golden-laptop"), None);
    }
}
