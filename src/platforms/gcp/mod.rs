//! The `gcp` platform: golden images are Compute Engine images.
//!
//! Reserve: the build instance (`golden-build-<run>`), created from the
//! source with the provisioning as `user-data` (cloud-init) and as a
//! `startup-script` (for images without cloud-init, Google's Debian ones);
//! its `golden-claim` label is the claim on the build number (earliest
//! claim wins). Build: wait for `TERMINATED`, `images.insert` from its disk
//! under the image's final name, outside the family, labelled candidate;
//! the instance is deleted only once that operation is `DONE`. Smoke test:
//! an instance from the image whose checks print markers on the serial port.
//! Publish: labels first (`validated`, no expiry), then `images.patch` puts
//! the image into its family: `getFromFamily` never sees an untested image.
//! Metadata: labels plus JSON in the description (`encoding.rs`).

mod build;
pub mod client;
pub mod encoding;
mod smoke;
pub mod spec;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use google_cloud_compute_v1::model::{Disk, GlobalSetLabelsRequest, Image as GceImage, Instance};
use serde::{Deserialize, Serialize};

use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::ledger::UndoAction;
use crate::lifecycle::metadata::{Metadata, Status};
use crate::lifecycle::naming::Family;
use crate::lifecycle::recipe::{BuildInput, SmokeSpec};
use crate::lifecycle::report::Report;
use crate::platforms::{Error, ErrorKind, Platform, Result};
use client::{request_id, Client};

/// Everything the provider block says about where and how to build.
#[derive(Debug, Clone)]
pub struct GcpConfig {
    pub machine_type: String,
    pub network: String,
    pub external_ip: bool,
    /// How long provisioning may take before the build is stopped.
    pub power_off_timeout: Duration,
    /// Names this endpoint, project and zone among the provider's ledgers.
    pub ledger_scope: String,
}

pub struct GcpPlatform {
    client: Client,
    config: GcpConfig,
    /// Build instances reserved and not yet built, by image name.
    pending: std::sync::Mutex<HashMap<String, build::Reserved>>,
}

/// The ledger entries of this platform, under `"gcp"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Undo {
    /// Every instance and disk labelled `golden-run=<run>` (recorded before
    /// the insert is sent, so an insert whose answer was lost is found too),
    /// and the candidate image named `image` it made.
    DropRun {
        run: String,
        #[serde(default)]
        image: Option<String>,
    },
}

const LEDGER_KEY: &str = "gcp";

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

/// A run id unique to one create by this process: lower-case hex, fit for
/// labels and instance names (`golden-build-<run>`).
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

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn to_hash(m: &HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn from_btree(m: BTreeMap<String, String>) -> HashMap<String, String> {
    m.into_iter().collect()
}

/// The last path segment of a resource URL (`.../zones/us-central1-a` ->
/// `us-central1-a`).
pub(crate) fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Every item of a GCE list, page by page: `page` gets the page token
/// (none for the first page) and answers the page's items and the next
/// token (none or empty on the last page).
async fn all_pages<T, F, Fut>(mut page: F) -> Result<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>)>>,
{
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let (items, next) = page(token.take()).await?;
        out.extend(items);
        match next.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// How long the sweep and cleanups wait for one busy disk.
const BUSY_WAIT: Duration = Duration::from_secs(120);

/// `cx` with a deadline no further than `limit` from now.
fn capped(cx: &Cx, limit: Duration) -> Cx {
    let mut sub = cx.clone();
    sub.deadline = sub.deadline.min(tokio::time::Instant::now() + limit);
    sub
}

impl GcpPlatform {
    pub fn new(client: Client, config: GcpConfig) -> Self {
        GcpPlatform {
            client,
            config,
            pending: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// When things this run creates may be swept: the run's deadline plus
    /// the time its own cleanup may take.
    fn expires(&self, cx: &Cx) -> time::OffsetDateTime {
        now() + cx.remaining() + crate::lifecycle::pipeline::CLEANUP_TIMEOUT
    }

    /// `projects/P/global/images/NAME`: an image's id in state, what
    /// `initializeParams.sourceImage` and Terraform's google provider take.
    fn image_path(&self, name: &str) -> String {
        format!("projects/{}/global/images/{name}", self.client.project())
    }

    fn image_name(image: &Image) -> &str {
        last_segment(&image.id)
    }

    async fn get_image(&self, name: &str, cx: &Cx) -> Result<GceImage> {
        let images = self.client.images(cx).await?;
        self.client
            .call(&format!("images.get {name}"), cx, || {
                images
                    .get()
                    .set_project(self.client.project())
                    .set_image(name)
                    .send()
            })
            .await
    }

    /// Every image of the project matching `filter`, page by page (500 a
    /// page, GCE's maximum).
    async fn list_images_filtered(&self, filter: &str, cx: &Cx) -> Result<Vec<GceImage>> {
        let images = self.client.images(cx).await?;
        all_pages(|token| async move {
            let page = self
                .client
                .call("images.list", cx, || {
                    images
                        .list()
                        .set_project(self.client.project())
                        .set_filter(filter)
                        .set_max_results(500u32)
                        .set_or_clear_page_token(token.clone())
                        .send()
                })
                .await?;
            Ok((page.items, page.next_page_token))
        })
        .await
    }

    /// golden's images of `family`, decoded, with what GCE says of them.
    async fn family_images(&self, family: &Family, cx: &Cx) -> Result<Vec<(Image, GceImage)>> {
        let listed = self
            .list_images_filtered(&encoding::family_filter(family), cx)
            .await?;
        let now = now();
        let mut out = Vec::new();
        for img in listed {
            let name = img.name.clone().unwrap_or_default();
            let status = img.status.as_ref().and_then(|s| s.name()).unwrap_or("");
            if status == "DELETING" || status == "FAILED" {
                continue;
            }
            let Some(d) = encoding::decode(
                &name,
                &to_hash(&img.labels),
                img.description.as_deref(),
                family,
            ) else {
                continue;
            };
            let in_progress = d.meta.status == Status::Candidate
                && (status == "PENDING" || d.expires.is_some_and(|t| t > now));
            out.push((
                Image {
                    meta: d.meta,
                    id: self.image_path(&name),
                    size_bytes: img.archive_size_bytes.and_then(|b| u64::try_from(b).ok()),
                    in_progress,
                    protected: None,
                },
                img,
            ));
        }
        Ok(out)
    }

    /// Sets an image's labels to `want` (golden's labels and the user's
    /// tags: `setLabels` replaces the whole set, so a label added by hand
    /// goes too). A stale fingerprint (the labels changed since they were
    /// read) is read again and the call tried again.
    async fn set_labels(&self, name: &str, want: &BTreeMap<String, String>, cx: &Cx) -> Result<()> {
        let images = self.client.images(cx).await?;
        for attempt in 1..=5 {
            let current = self.get_image(name, cx).await?;
            if to_hash(&current.labels) == *want {
                return Ok(());
            }
            let body = GlobalSetLabelsRequest::new()
                .set_labels(from_btree(want.clone()))
                .set_or_clear_label_fingerprint(current.label_fingerprint.clone());
            let sent = self
                .client
                .call(&format!("images.setLabels {name}"), cx, || {
                    images
                        .set_labels()
                        .set_project(self.client.project())
                        .set_resource(name)
                        .set_body(body.clone())
                        .send()
                })
                .await;
            match sent {
                Ok(op) => {
                    self.client
                        .wait(op, &format!("images.setLabels {name}"), cx)
                        .await?;
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Conflict && attempt < 5 => {
                    tracing::info!(
                        image = name,
                        "labels changed meanwhile (stale fingerprint); reading them again"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    /// `images.patch`: family and description (what GCE lets patch change).
    async fn patch_image(
        &self,
        name: &str,
        family: Option<&str>,
        description: String,
        cx: &Cx,
    ) -> Result<()> {
        let images = self.client.images(cx).await?;
        let mut body = GceImage::new().set_description(description);
        if let Some(f) = family {
            body = body.set_family(f);
        }
        let rid = request_id();
        let what = format!("images.patch {name}");
        let op = self
            .client
            .call(&what, cx, || {
                images
                    .patch()
                    .set_project(self.client.project())
                    .set_image(name)
                    .set_body(body.clone())
                    .set_request_id(rid.clone())
                    .send()
            })
            .await?;
        self.client.wait(op, &what, cx).await?;
        Ok(())
    }

    pub(crate) async fn delete_image_named(&self, name: &str, cx: &Cx) -> Result<()> {
        let images = self.client.images(cx).await?;
        let rid = request_id();
        let what = format!("images.delete {name}");
        let op = match self
            .client
            .call(&what, cx, || {
                images
                    .delete()
                    .set_project(self.client.project())
                    .set_image(name)
                    .set_request_id(rid.clone())
                    .send()
            })
            .await
        {
            Err(e) if e.is_not_found() => return Ok(()),
            r => r?,
        };
        self.client.wait(op, &what, cx).await?;
        tracing::info!(image = name, "image deleted");
        Ok(())
    }

    pub(crate) async fn get_instance(&self, name: &str, cx: &Cx) -> Result<Instance> {
        let instances = self.client.instances(cx).await?;
        self.client
            .call(&format!("instances.get {name}"), cx, || {
                instances
                    .get()
                    .set_project(self.client.project())
                    .set_zone(self.client.zone())
                    .set_instance(name)
                    .send()
            })
            .await
    }

    /// Deletes an instance (its boot disk goes with it: `autoDelete`). A
    /// disk still being imaged makes GCE refuse (`resourceInUseByAnotherResource`):
    /// waited out within `cx`, because the image insert must finish first.
    pub(crate) async fn delete_instance(&self, name: &str, cx: &Cx) -> Result<()> {
        let instances = self.client.instances(cx).await?;
        let what = format!("instances.delete {name}");
        loop {
            // A refused delete (disk in use) made no operation: the next
            // attempt is a new request with its own id.
            let rid = request_id();
            let sent = self
                .client
                .call(&what, cx, || {
                    instances
                        .delete()
                        .set_project(self.client.project())
                        .set_zone(self.client.zone())
                        .set_instance(name)
                        .set_request_id(rid.clone())
                        .send()
                })
                .await;
            let result = match sent {
                Err(e) if e.is_not_found() => return Ok(()),
                Ok(op) => self.client.wait(op, &what, cx).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    tracing::info!(instance = name, "instance deleted");
                    return Ok(());
                }
                Err(e) if e.is_busy() => {
                    tracing::info!(instance = name, error = %e, "the instance's disk is still in use (an image is being made from it); waiting");
                    cx.sleep(&what, Duration::from_secs(5)).await?;
                }
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    async fn delete_disk(&self, name: &str, cx: &Cx) -> Result<()> {
        let disks = self.client.disks(cx).await?;
        let rid = request_id();
        let what = format!("disks.delete {name}");
        let op = match self
            .client
            .call(&what, cx, || {
                disks
                    .delete()
                    .set_project(self.client.project())
                    .set_zone(self.client.zone())
                    .set_disk(name)
                    .set_request_id(rid.clone())
                    .send()
            })
            .await
        {
            Err(e) if e.is_not_found() => return Ok(()),
            r => r?,
        };
        self.client.wait(op, &what, cx).await?;
        tracing::info!(disk = name, "disk deleted");
        Ok(())
    }

    async fn list_instances(&self, filter: &str, cx: &Cx) -> Result<Vec<Instance>> {
        let instances = self.client.instances(cx).await?;
        all_pages(|token| async move {
            let page = self
                .client
                .call("instances.list", cx, || {
                    instances
                        .list()
                        .set_project(self.client.project())
                        .set_zone(self.client.zone())
                        .set_filter(filter)
                        .set_max_results(500u32)
                        .set_or_clear_page_token(token.clone())
                        .send()
                })
                .await?;
            Ok((page.items, page.next_page_token))
        })
        .await
    }

    async fn list_disks(&self, filter: &str, cx: &Cx) -> Result<Vec<Disk>> {
        let disks = self.client.disks(cx).await?;
        all_pages(|token| async move {
            let page = self
                .client
                .call("disks.list", cx, || {
                    disks
                        .list()
                        .set_project(self.client.project())
                        .set_zone(self.client.zone())
                        .set_filter(filter)
                        .set_max_results(500u32)
                        .set_or_clear_page_token(token.clone())
                        .send()
                })
                .await?;
            Ok((page.items, page.next_page_token))
        })
        .await
    }

    /// Deletes every instance and disk of a run, then its candidate image
    /// named `image` (only while it is still a candidate: a published or
    /// failed image stays).
    pub(crate) async fn drop_run(&self, run: &str, image: Option<&str>, cx: &Cx) -> Result<()> {
        let filter = format!("labels.{} = \"{run}\"", encoding::KEY_RUN);
        for i in self.list_instances(&filter, cx).await? {
            let name = i.name.unwrap_or_default();
            self.delete_instance(&name, cx).await?;
        }
        for d in self.list_disks(&filter, cx).await? {
            if !d.users.is_empty() {
                continue;
            }
            self.delete_disk(&d.name.unwrap_or_default(), cx).await?;
        }
        if let Some(name) = image {
            self.discard_candidate(name, cx).await?;
        }
        Ok(())
    }

    /// Deletes the image `name` if it is one of golden's candidates.
    async fn discard_candidate(&self, name: &str, cx: &Cx) -> Result<()> {
        let img = match self.get_image(name, cx).await {
            Err(e) if e.is_not_found() => return Ok(()),
            r => r?,
        };
        let status = img.labels.get(encoding::KEY_STATUS).map(String::as_str);
        if status == Some(Status::Candidate.as_str()) {
            tracing::info!(image = name, "discarding the candidate image");
            self.delete_image_named(name, cx).await?;
        }
        Ok(())
    }

    fn expired(labels: &HashMap<String, String>, now: time::OffsetDateTime) -> bool {
        labels
            .get(encoding::KEY_EXPIRES)
            .and_then(|t| encoding::parse_label_time(t))
            .is_some_and(|t| t <= now)
    }
}

#[async_trait]
impl Platform for GcpPlatform {
    fn kind(&self) -> &'static str {
        "gcp"
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

    async fn publish(&self, image: &Image, report: &Report, cx: &Cx) -> Result<Image> {
        let name = Self::image_name(image).to_owned();
        let mut meta = image.meta.clone();
        meta.status = Status::Validated;
        meta.validated_at = Some(
            now()
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?,
        );
        let labels =
            encoding::labels_for(&meta, None).map_err(|e| Error::new(ErrorKind::Other, e))?;
        // Validated (and no expiry: the sweep must never take it) first,
        // then into the family: an image in the family is always validated.
        self.set_labels(&name, &labels, cx).await?;
        self.patch_image(
            &name,
            Some(meta.family().as_str()),
            encoding::description_for(&meta, Some(report)),
            cx,
        )
        .await?;
        tracing::info!(image = %name, family = %meta.family(), "published: the image joined its family");
        Ok(Image {
            meta,
            in_progress: false,
            ..image.clone()
        })
    }

    async fn mark_failed(&self, image: &Image, report: &Report, cx: &Cx) -> Result<()> {
        let name = Self::image_name(image).to_owned();
        let mut meta = image.meta.clone();
        meta.status = Status::Failed;
        // No expiry: a failed image is kept for inspection until retention.
        let labels =
            encoding::labels_for(&meta, None).map_err(|e| Error::new(ErrorKind::Other, e))?;
        self.set_labels(&name, &labels, cx).await?;
        self.patch_image(
            &name,
            None,
            encoding::description_for(&meta, Some(report)),
            cx,
        )
        .await
    }

    async fn retag(&self, image: &Image, tags: &BTreeMap<String, String>, cx: &Cx) -> Result<()> {
        let name = Self::image_name(image).to_owned();
        let current = self.get_image(&name, cx).await?;
        let decoded = encoding::decode(
            &name,
            &to_hash(&current.labels),
            current.description.as_deref(),
            image.meta.family(),
        )
        .ok_or_else(|| Error::not_found(format!("image {name} is no longer {}", image.name())))?;
        let mut meta = decoded.meta;
        meta.tags = tags.clone();
        let labels = encoding::labels_for(&meta, decoded.expires)
            .map_err(|e| Error::new(ErrorKind::Other, e))?;
        self.set_labels(&name, &labels, cx).await?;
        self.patch_image(
            &name,
            None,
            encoding::description_for(&meta, decoded.report.as_ref()),
            cx,
        )
        .await
    }

    async fn delete(&self, image: &Image, cx: &Cx) -> Result<()> {
        let name = Self::image_name(image).to_owned();
        // Re-check ownership right before deleting (only our own, ever).
        let current = self.get_image(&name, cx).await?;
        let ours = encoding::decode(
            &name,
            &to_hash(&current.labels),
            current.description.as_deref(),
            image.meta.family(),
        )
        .is_some_and(|d| d.meta.name == image.meta.name);
        if !ours {
            return Err(Error::not_found(format!(
                "image {name} is not {} any more",
                image.name()
            )));
        }
        self.delete_image_named(&name, cx).await
    }

    async fn undo(&self, action: &UndoAction, cx: &Cx) -> Result<()> {
        match action {
            UndoAction::Platform { payload } => match Undo::from_payload(payload) {
                Some(Undo::DropRun { run, image }) => {
                    self.drop_run(&run, image.as_deref(), cx).await
                }
                None => Err(Error::new(
                    ErrorKind::Other,
                    format!("unknown GCP ledger entry {payload}"),
                )),
            },
            UndoAction::DiscardCandidate { name, .. } => self.discard_candidate(name, cx).await,
            // The pipeline carries out machine-local actions itself.
            UndoAction::KillProcess { .. } | UndoAction::RemovePath { .. } => Ok(()),
        }
    }

    /// Removes what runs that died without their ledger left behind:
    /// instances, disks and candidates whose `golden-expires` label is past.
    /// It never fails the build: a list that fails is logged and skipped.
    async fn sweep(&self, cx: &Cx) -> Result<()> {
        let now = now();
        let managed = encoding::managed_filter();
        match self.list_instances(&managed, cx).await {
            Err(e) => {
                tracing::warn!(error = %e, "sweep: could not list golden's instances; skipping them")
            }
            Ok(list) => {
                for i in list.into_iter().filter(|i| Self::expired(&i.labels, now)) {
                    let name = i.name.unwrap_or_default();
                    tracing::info!(instance = %name, "removing an abandoned golden instance");
                    if let Err(e) = self.delete_instance(&name, &capped(cx, BUSY_WAIT)).await {
                        tracing::warn!(instance = %name, error = %e, "could not remove an abandoned instance; the next run tries again");
                    }
                }
            }
        }
        match self.list_disks(&managed, cx).await {
            Err(e) => {
                tracing::warn!(error = %e, "sweep: could not list golden's disks; skipping them")
            }
            Ok(list) => {
                for d in list
                    .into_iter()
                    .filter(|d| d.users.is_empty() && Self::expired(&d.labels, now))
                {
                    let name = d.name.unwrap_or_default();
                    tracing::info!(disk = %name, "removing an abandoned golden disk");
                    if let Err(e) = self.delete_disk(&name, &capped(cx, BUSY_WAIT)).await {
                        tracing::warn!(disk = %name, error = %e, "could not remove an abandoned disk");
                    }
                }
            }
        }
        let candidates = format!(
            "labels.{} = \"{}\"",
            encoding::KEY_STATUS,
            Status::Candidate.as_str()
        );
        match self.list_images_filtered(&candidates, cx).await {
            Err(e) => tracing::warn!(error = %e, "sweep: could not list candidates; skipping them"),
            Ok(list) => {
                for img in list {
                    let name = img.name.clone().unwrap_or_default();
                    let Some(family) = img
                        .labels
                        .get(encoding::KEY_FAMILY)
                        .and_then(|f| Family::try_from(f.clone()).ok())
                    else {
                        continue;
                    };
                    let stale = encoding::decode(
                        &name,
                        &to_hash(&img.labels),
                        img.description.as_deref(),
                        &family,
                    )
                    .is_some_and(|d| {
                        d.meta.status == Status::Candidate && d.expires.is_some_and(|t| t <= now)
                    });
                    if !stale {
                        continue;
                    }
                    tracing::info!(image = %name, "removing a stale candidate");
                    if let Err(e) = self.delete_image_named(&name, cx).await {
                        tracing::warn!(image = %name, error = %e, "could not remove a stale candidate");
                    }
                }
            }
        }
        Ok(())
    }

    async fn report(&self, image: &Image, cx: &Cx) -> Result<Option<Report>> {
        let name = Self::image_name(image).to_owned();
        let current = self.get_image(&name, cx).await?;
        Ok(encoding::decode(
            &name,
            &to_hash(&current.labels),
            current.description.as_deref(),
            image.meta.family(),
        )
        .and_then(|d| d.report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_entries_round_trip() {
        let u = Undo::DropRun {
            run: "1f-2a-0".into(),
            image: Some("f-20260101-001".into()),
        };
        let UndoAction::Platform { payload } = u.action() else {
            panic!("not a platform entry")
        };
        assert_eq!(Undo::from_payload(&payload), Some(u));
        assert_eq!(
            Undo::from_payload(&serde_json::json!({"digitalocean": {}})),
            None
        );
    }

    #[test]
    fn expiry_is_read_from_the_label() {
        let past = encoding::label_time(now() - time::Duration::HOUR);
        let future = encoding::label_time(now() + time::Duration::HOUR);
        let l = |t: &str| HashMap::from([(encoding::KEY_EXPIRES.to_owned(), t.to_owned())]);
        assert!(GcpPlatform::expired(&l(&past), now()));
        assert!(!GcpPlatform::expired(&l(&future), now()));
        assert!(!GcpPlatform::expired(&HashMap::new(), now()));
    }
}
