//! The pipeline, written once for every platform:
//!
//!   sweep -> reserve candidate -> build -> smoke test -> publish -> prune
//!
//! Publish happens only after a passed smoke test; prune only after publish, and
//! only names the plan showed. Whatever a step creates is recorded in the
//! ledger and undone, newest first, on every exit path: success, error, timeout
//! and cancellation. A candidate that failed its smoke test is kept, marked
//! failed, so the user can inspect it; retention removes it later.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{info, warn, Instrument};

use super::allocation::next_build_number;
use super::context::Cx;
use super::image::Image;
use super::ledger::{orphaned, runs_dir, Ledger, UndoAction};
use super::metadata::{Metadata, Status};
use super::naming::{BuildDate, Family, ImageName};
use super::packages::PackageManifest;
use super::recipe::{BuildInput, Check, Recipe, Source, BUILDER_VERSION};
use super::report::Report;
use super::retention::still_deletable;
use super::selection::latest;
use crate::platforms::{Error, Platform};

/// How long cleanup may take after the run itself ended.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(120);

pub struct BuildRequest<'a> {
    pub family: &'a Family,
    pub recipe: &'a Recipe,
    pub recipe_hash: &'a str,
    pub tags: &'a BTreeMap<String, String>,
    /// The names the plan showed in `prune`.
    pub planned_prune: &'a [String],
    pub date: BuildDate,
}

#[derive(Debug)]
pub struct BuildOutcome {
    pub image: Image,
    pub report: Report,
    pub prune: PruneOutcome,
}

#[derive(Debug, Default)]
pub struct PruneOutcome {
    pub deleted: Vec<String>,
    /// Planned deletions that did not happen, with the reason (warnings).
    pub skipped: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{step} failed: {error}")]
    Step { step: &'static str, error: Error },
    #[error("smoke test of {image} failed")]
    SmokeTest { image: String, report: Box<Report> },
}

impl PipelineError {
    fn step(step: &'static str) -> impl FnOnce(Error) -> PipelineError {
        move |error| PipelineError::Step { step, error }
    }
}

/// The context of one build: its ledger persisted with the other ledgers of
/// the same platform instance under `state_dir`, where the next run finds it
/// if this one is killed.
pub fn build_context(
    platform: &dyn Platform,
    state_dir: &std::path::Path,
    cancel: tokio_util::sync::CancellationToken,
    timeout: Duration,
) -> Cx {
    let dir = runs_dir(state_dir, platform.kind(), &platform.ledger_scope());
    if let Err(e) = std::fs::create_dir_all(&dir) {
        warn!(error = %e, dir = %dir.display(), "cannot create the ledger directory; cleanup stays in memory");
        return Cx::new(cancel, timeout, Ledger::in_memory());
    }
    Cx::new(cancel, timeout, Ledger::persisted(&dir))
}

/// Builds, smoke-tests and publishes one new image of `req.family`, then prunes.
pub async fn build_and_publish(
    platform: &dyn Platform,
    req: BuildRequest<'_>,
    cx: &Cx,
) -> Result<BuildOutcome, PipelineError> {
    let span = tracing::info_span!("pipeline", platform = platform.kind(), family = %req.family);
    let result = run_steps(platform, &req, cx).instrument(span.clone()).await;
    cleanup(platform, cx).instrument(span).await;
    result
}

async fn run_steps(
    platform: &dyn Platform,
    req: &BuildRequest<'_>,
    cx: &Cx,
) -> Result<BuildOutcome, PipelineError> {
    if let Some(dir) = cx.ledger_dir() {
        finish_interrupted_runs(platform, &dir, cx).await;
    }
    platform
        .sweep(cx)
        .await
        .map_err(PipelineError::step("sweep"))?;

    let parent = resolve_parent(platform, req.recipe, cx)
        .await
        .map_err(PipelineError::step("source"))?;
    let input = BuildInput {
        recipe: req.recipe,
        parent: parent.as_ref(),
    };
    let candidate = reserve_candidate(platform, req, &input, cx)
        .await
        .map_err(PipelineError::step("reserve"))?;
    let name = candidate.name().to_string();
    let discard = UndoAction::DiscardCandidate {
        family: req.family.to_string(),
        name: name.clone(),
    };

    let built = platform
        .build(&candidate, &input, cx)
        .instrument(tracing::info_span!("build", image = %name))
        .await
        .map_err(PipelineError::step("build"))?;
    info!(image = %name, "build finished");

    let mut report = platform
        .smoke_test(&built, &req.recipe.smoke_test, cx)
        .instrument(tracing::info_span!("smoke_test", image = %name))
        .await
        .map_err(PipelineError::step("smoke test"))?;
    judge_packages(platform, req, &mut report, cx).await;

    if !report.passed() {
        warn!(image = %name, "smoke test failed; marking the candidate failed");
        platform
            .mark_failed(&built, &report, cx)
            .await
            .map_err(PipelineError::step("mark failed"))?;
        cx.forget(&discard);
        return Err(PipelineError::SmokeTest {
            image: name,
            report: Box::new(report),
        });
    }

    // Past this point the image is a good one: nothing may remove it.
    cx.check("publish")
        .map_err(PipelineError::step("publish"))?;
    let published = platform
        .publish(&built, &report, cx)
        .instrument(tracing::info_span!("publish", image = %name))
        .await
        .map_err(PipelineError::step("publish"))?;
    cx.forget(&discard);
    info!(image = %name, "published");

    let prune = prune(platform, req.family, req.planned_prune, cx).await;
    Ok(BuildOutcome {
        image: published,
        report,
        prune,
    })
}

/// The package side of the smoke test, which needs the recipe and the
/// family: the opt-in `minimal` check, and what changed since the previous
/// validated image (when both manifests are known).
async fn judge_packages(
    platform: &dyn Platform,
    req: &BuildRequest<'_>,
    report: &mut Report,
    cx: &Cx,
) {
    if req.recipe.smoke_test.checks.contains(&Check::Minimal) && report.passed() {
        let t = std::time::Instant::now();
        let (ok, detail) =
            minimal_verdict(report.packages.as_ref(), &req.recipe.provision.packages);
        report.push(Check::Minimal.as_str(), ok, t.elapsed(), detail);
    }
    let Some(manifest) = &report.packages else {
        return;
    };
    let previous = match platform.list_images(req.family, cx).await {
        Ok(images) => latest(&images, true).cloned(),
        Err(e) => {
            warn!(error = %e, "cannot list the family to compare packages");
            None
        }
    };
    let Some(previous) = previous else { return };
    match platform.report(&previous, cx).await {
        Ok(Some(Report {
            packages: Some(old),
            ..
        })) => {
            report.packages_changed =
                Some(manifest.changes_since(&old, &previous.name().to_string()));
        }
        Ok(_) => info!(previous = %previous.name(), "the previous image has no package manifest"),
        Err(e) => warn!(error = %e, "cannot read the previous image's report"),
    }
}

/// `minimal`: every package installed on purpose is the source image's or
/// the recipe's.
fn minimal_verdict(manifest: Option<&PackageManifest>, wanted: &[String]) -> (bool, String) {
    let Some(m) = manifest else {
        return (
            false,
            "the image's package manifest could not be read (dpkg-query in the booted image)"
                .into(),
        );
    };
    match m.unaccounted(wanted) {
        Ok(extra) if extra.is_empty() => (
            true,
            format!(
                "{} packages: each installed on purpose is the source image's or in packages",
                m.packages.len()
            ),
        ),
        Ok(extra) => (
            false,
            format!(
                "installed but neither in the source image nor in packages: {}",
                extra.join(", ")
            ),
        ),
        Err(why) => (false, why),
    }
}

/// Allocates the next build number and claims it. Two applies racing for the
/// same number both compute it, one wins the create-if-absent, the other moves
/// on to the next number.
/// A `source.family` is the newest validated image of that family on the
/// same platform, looked up once, before anything is created.
async fn resolve_parent(
    platform: &dyn Platform,
    recipe: &Recipe,
    cx: &Cx,
) -> Result<Option<Image>, Error> {
    let Source::Family(family) = &recipe.source else {
        return Ok(None);
    };
    let images = platform.list_images(family, cx).await?;
    let parent = latest(&images, true).cloned().ok_or_else(|| {
        Error::not_found(format!(
            "source.family \"{family}\" has no validated image on platform {:?} yet",
            platform.kind()
        ))
    })?;
    info!(family = %family, parent = %parent.name(), "source family resolved");
    Ok(Some(parent))
}

async fn reserve_candidate(
    platform: &dyn Platform,
    req: &BuildRequest<'_>,
    input: &BuildInput<'_>,
    cx: &Cx,
) -> Result<Image, Error> {
    let mut floor = 1u16;
    for _ in 0..50 {
        cx.check("reserve")?;
        let existing = platform.list_images(req.family, cx).await?;
        let names: Vec<&ImageName> = existing.iter().map(|i| i.name()).collect();
        let next = next_build_number(names, req.date)
            .map_err(|e| Error::other("allocating a build number", e.into()))?
            .max(floor);
        let meta = Metadata {
            name: ImageName::new(req.family.clone(), req.date, next),
            builder_version: BUILDER_VERSION.to_owned(),
            recipe_hash: req.recipe_hash.to_owned(),
            status: Status::Candidate,
            validated_at: None,
            tags: req.tags.clone(),
        };
        match platform.reserve(&meta, input, cx).await {
            Ok(image) => {
                cx.record(UndoAction::DiscardCandidate {
                    family: req.family.to_string(),
                    name: meta.name.to_string(),
                });
                info!(image = %meta.name, "reserved candidate");
                return Ok(image);
            }
            Err(e) if e.is_already_exists() => {
                info!(image = %meta.name, "name taken by a concurrent build; trying the next number");
                floor = next + 1;
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::other(
        "reserve",
        anyhow::anyhow!("could not claim a build number after 50 attempts"),
    ))
}

/// Deletes the planned names that are still safe to delete (see
/// `retention::still_deletable`). Runs only after publish, or on its own when
/// an apply changes nothing but retention.
pub async fn prune(
    platform: &dyn Platform,
    family: &Family,
    planned: &[String],
    cx: &Cx,
) -> PruneOutcome {
    let mut outcome = PruneOutcome::default();
    if planned.is_empty() {
        return outcome;
    }
    let images = match platform.list_images(family, cx).await {
        Ok(v) => v,
        Err(e) => {
            outcome.skipped = planned
                .iter()
                .map(|n| (n.clone(), format!("listing failed: {e}")))
                .collect();
            return outcome;
        }
    };
    let deletable = still_deletable(planned, &images);
    for name in planned {
        let Some(image) = deletable.iter().find(|i| i.name().to_string() == *name) else {
            let why = if images.iter().any(|i| i.name().to_string() == *name) {
                "no longer safe to delete (newest validated, in progress or protected)"
            } else {
                "already gone"
            };
            if why != "already gone" {
                outcome.skipped.push((name.clone(), why.into()));
            }
            continue;
        };
        let span = tracing::info_span!("prune", image = %name);
        match platform.delete(image, cx).instrument(span).await {
            Ok(()) => {
                info!(image = %name, "pruned");
                outcome.deleted.push(name.clone());
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => outcome.skipped.push((name.clone(), e.to_string())),
        }
    }
    outcome
}

/// Carries out the ledgers that runs killed outright (their process is gone)
/// left in `dir`, this platform instance's ledger directory. A ledger whose
/// every action succeeded is removed; the others stay for the next run.
async fn finish_interrupted_runs(platform: &dyn Platform, dir: &std::path::Path, cx: &Cx) {
    let clean = cx.for_cleanup(CLEANUP_TIMEOUT);
    for (file, actions) in orphaned(dir) {
        tracing::info!(ledger = %file.display(), "finishing the cleanup of an interrupted run");
        let mut all_done = true;
        for action in &actions {
            if let Err(e) = carry_out(platform, action, &clean).await {
                tracing::warn!(error = %e, "sweep could not undo {action:?}");
                all_done = false;
            }
        }
        if all_done {
            let _ = std::fs::remove_file(&file);
        }
    }
}

/// Carries out one ledger entry: machine-local ones (a helper process, a
/// temporary file) here, the rest by the platform that recorded them.
async fn carry_out(platform: &dyn Platform, action: &UndoAction, cx: &Cx) -> Result<(), Error> {
    match action {
        UndoAction::KillProcess { process } => {
            process.kill();
            Ok(())
        }
        UndoAction::RemovePath { path } => {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
            match removed {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::other(
                    format!("removing {}", path.display()),
                    e.into(),
                )),
                _ => Ok(()),
            }
        }
        UndoAction::DiscardCandidate { .. } | UndoAction::Platform { .. } => {
            platform.undo(action, cx).await
        }
    }
}

/// Drains the ledger newest first with a fresh cancellation token and its own
/// deadline. Actions that fail stay in the persisted ledger for the next sweep.
pub async fn cleanup(platform: &dyn Platform, cx: &Cx) {
    let clean = cx.for_cleanup(CLEANUP_TIMEOUT);
    let actions = clean.with_ledger(|l| l.drain_reverse());
    let mut failed = Vec::new();
    for action in actions {
        let r = clean
            .run("cleanup", async {
                carry_out(platform, &action, &clean)
                    .await
                    .map_err(anyhow::Error::from)
            })
            .await;
        if let Err(e) = r {
            warn!(?action, error = %e, "cleanup step failed; the next run's sweep will retry it");
            failed.push(action);
        }
    }
    clean.with_ledger(|l| {
        l.restore(failed);
        l.close();
    });
}

#[cfg(test)]
mod tests {
    //! The pipeline against an in-memory platform: a table of "fails at step N"
    //! where every row must end with an empty ledger and nothing temporary
    //! left on the platform (packer's step-cleanup tests, in Rust).

    use super::*;
    use crate::lifecycle::ledger::Ledger;
    use crate::lifecycle::naming::NamingRules;
    use crate::lifecycle::recipe::{Provision, SmokeSpec, Source};
    use crate::platforms::Result;
    use async_trait::async_trait;
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    use tokio_util::sync::CancellationToken;

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum FailAt {
        Nothing,
        Build,
        SmokeError,
        SmokeReport,
        Publish,
        CancelDuringBuild,
    }

    struct Fake {
        fail: FailAt,
        images: Mutex<Vec<Image>>,
        /// Temporary things (VMs, overlays) currently alive.
        live: Mutex<BTreeSet<String>>,
        seq: Mutex<u32>,
        cancel: CancellationToken,
    }

    impl Fake {
        fn new(fail: FailAt) -> Self {
            Fake {
                fail,
                images: Mutex::new(Vec::new()),
                live: Mutex::new(BTreeSet::new()),
                seq: Mutex::new(0),
                cancel: CancellationToken::new(),
            }
        }

        fn temp(&self, cx: &Cx, what: &str) {
            let mut seq = self.seq.lock().unwrap();
            *seq += 1;
            let id = format!("{what}-{seq}");
            self.live.lock().unwrap().insert(id.clone());
            cx.record(UndoAction::Platform {
                payload: serde_json::Value::String(id),
            });
        }

        fn add(&self, name: &str, status: Status) {
            let family = Family::parse("fam", NamingRules { allow_dot: true }).unwrap();
            let meta = Metadata {
                name: ImageName::parse(name, &family).unwrap(),
                builder_version: "0".into(),
                recipe_hash: "old".into(),
                status,
                validated_at: None,
                tags: BTreeMap::new(),
            };
            self.images.lock().unwrap().push(Image {
                meta,
                id: name.into(),
                size_bytes: None,
                in_progress: false,
                protected: None,
            });
        }

        fn statuses(&self) -> Vec<(String, Status)> {
            let mut v: Vec<_> = self
                .images
                .lock()
                .unwrap()
                .iter()
                .map(|i| (i.name().to_string(), i.status()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }

        fn set_status(&self, name: &ImageName, status: Status) {
            for i in self.images.lock().unwrap().iter_mut() {
                if i.name() == name {
                    i.meta.status = status;
                }
            }
        }
    }

    fn fail(what: &str) -> Error {
        Error::other(what, anyhow::anyhow!("injected failure"))
    }

    #[async_trait]
    impl Platform for Fake {
        fn kind(&self) -> &'static str {
            "fake"
        }

        fn ledger_scope(&self) -> String {
            "fake".into()
        }
        async fn list_images(&self, _family: &Family, _cx: &Cx) -> Result<Vec<Image>> {
            let snapshot = self.images.lock().unwrap().clone();
            // Let a concurrent pipeline list the same snapshot: the race that
            // reservation must survive.
            tokio::task::yield_now().await;
            Ok(snapshot)
        }
        async fn reserve(&self, meta: &Metadata, _input: &BuildInput, _cx: &Cx) -> Result<Image> {
            let mut images = self.images.lock().unwrap();
            if images.iter().any(|i| i.meta.name == meta.name) {
                return Err(Error::already_exists(meta.name.to_string()));
            }
            let image = Image {
                meta: meta.clone(),
                id: meta.name.to_string(),
                size_bytes: None,
                in_progress: true,
                protected: None,
            };
            images.push(image.clone());
            Ok(image)
        }
        async fn build(&self, candidate: &Image, _input: &BuildInput, cx: &Cx) -> Result<Image> {
            self.temp(cx, "overlay");
            self.temp(cx, "build-vm");
            tokio::task::yield_now().await;
            match self.fail {
                FailAt::Build => Err(fail("build")),
                FailAt::CancelDuringBuild => {
                    self.cancel.cancel();
                    cx.sleep("build", std::time::Duration::from_secs(30))
                        .await?;
                    unreachable!()
                }
                _ => Ok(candidate.clone()),
            }
        }
        async fn smoke_test(&self, image: &Image, _spec: &SmokeSpec, cx: &Cx) -> Result<Report> {
            self.temp(cx, "smoke-vm");
            let mut r = Report {
                image: image.name().to_string(),
                ..Default::default()
            };
            match self.fail {
                FailAt::SmokeError => return Err(fail("smoke test")),
                FailAt::SmokeReport => {
                    r.push("commands[0]", false, std::time::Duration::ZERO, "exit 1")
                }
                _ => r.push("boot", true, std::time::Duration::ZERO, "ok"),
            }
            Ok(r)
        }
        async fn publish(&self, image: &Image, _report: &Report, _cx: &Cx) -> Result<Image> {
            if self.fail == FailAt::Publish {
                return Err(fail("publish"));
            }
            self.set_status(image.name(), Status::Validated);
            let mut i = image.clone();
            i.meta.status = Status::Validated;
            Ok(i)
        }
        async fn mark_failed(&self, image: &Image, _report: &Report, _cx: &Cx) -> Result<()> {
            self.set_status(image.name(), Status::Failed);
            Ok(())
        }
        async fn retag(
            &self,
            _image: &Image,
            _tags: &BTreeMap<String, String>,
            _cx: &Cx,
        ) -> Result<()> {
            Ok(())
        }
        async fn delete(&self, image: &Image, _cx: &Cx) -> Result<()> {
            self.images
                .lock()
                .unwrap()
                .retain(|i| i.name() != image.name());
            Ok(())
        }
        async fn undo(&self, action: &UndoAction, _cx: &Cx) -> Result<()> {
            match action {
                UndoAction::Platform { payload } => {
                    self.live.lock().unwrap().remove(payload.as_str().unwrap());
                }
                UndoAction::DiscardCandidate { name, .. } => {
                    let mut images = self.images.lock().unwrap();
                    images.retain(|i| {
                        !(i.name().to_string() == *name && i.status() == Status::Candidate)
                    });
                }
                UndoAction::KillProcess { .. } | UndoAction::RemovePath { .. } => {}
            }
            Ok(())
        }
        async fn sweep(&self, _cx: &Cx) -> Result<()> {
            Ok(())
        }
        async fn report(&self, _image: &Image, _cx: &Cx) -> Result<Option<Report>> {
            Ok(None)
        }
    }

    fn recipe() -> Recipe {
        Recipe {
            source: Source::Path("/base.qcow2".into()),
            provision: Provision::default(),
            smoke_test: SmokeSpec::default(),
        }
    }

    async fn run(
        fake: &Fake,
        planned_prune: &[String],
    ) -> (std::result::Result<BuildOutcome, PipelineError>, Cx) {
        run_recipe(fake, planned_prune, recipe()).await
    }

    async fn run_recipe(
        fake: &Fake,
        planned_prune: &[String],
        recipe: Recipe,
    ) -> (std::result::Result<BuildOutcome, PipelineError>, Cx) {
        let family = Family::parse("fam", NamingRules { allow_dot: true }).unwrap();
        let tags = BTreeMap::new();
        let cx = Cx::new(
            fake.cancel.clone(),
            std::time::Duration::from_secs(60),
            Ledger::in_memory(),
        );
        let hash = recipe.hash().unwrap();
        let req = BuildRequest {
            family: &family,
            recipe: &recipe,
            recipe_hash: &hash,
            tags: &tags,
            planned_prune,
            date: BuildDate::parse("20260102").unwrap(),
        };
        let r = build_and_publish(fake, req, &cx).await;
        (r, cx)
    }

    #[tokio::test]
    async fn a_family_source_without_a_validated_image_creates_nothing() {
        let fake = Fake::new(FailAt::Nothing);
        fake.add("fam-20260101-001", Status::Failed);
        let layered = Recipe {
            source: Source::Family(Family::parse("fam", NamingRules { allow_dot: true }).unwrap()),
            ..recipe()
        };
        let (r, cx) = run_recipe(&fake, &[], layered).await;
        match r {
            Err(PipelineError::Step { step, error }) => {
                assert_eq!(step, "source");
                assert!(error.is_not_found(), "{error}");
                assert!(error.to_string().contains("no validated image"), "{error}");
            }
            other => panic!("expected a source error, got {other:?}"),
        }
        assert_eq!(
            fake.statuses(),
            [("fam-20260101-001".to_owned(), Status::Failed)]
        );
        assert!(cx.with_ledger(|l| l.is_empty()));
    }

    #[tokio::test]
    async fn every_failure_point_cleans_up_and_loses_nothing() {
        let rows = [
            (FailAt::Build, "build"),
            (FailAt::SmokeError, "smoke test"),
            (FailAt::Publish, "publish"),
            (FailAt::CancelDuringBuild, "build"),
        ];
        for (fail_at, step) in rows {
            let fake = Fake::new(fail_at);
            fake.add("fam-20260101-001", Status::Validated);
            let (r, cx) = run(&fake, &["fam-20260101-001".to_string()]).await;
            match r {
                Err(PipelineError::Step { step: s, error }) => {
                    assert_eq!(s, step, "{fail_at:?}");
                    assert_eq!(
                        error.is_cancelled(),
                        fail_at == FailAt::CancelDuringBuild,
                        "{fail_at:?}: {error}"
                    );
                }
                other => panic!("{fail_at:?}: expected a step error, got {other:?}"),
            }
            assert!(
                cx.with_ledger(|l| l.is_empty()),
                "{fail_at:?}: ledger not drained"
            );
            assert!(
                fake.live.lock().unwrap().is_empty(),
                "{fail_at:?}: leaked {:?}",
                fake.live.lock().unwrap()
            );
            assert_eq!(
                fake.statuses(),
                [("fam-20260101-001".to_string(), Status::Validated)],
                "{fail_at:?}: a failed run must not delete or leave anything"
            );
        }
    }

    #[tokio::test]
    async fn failed_smoke_test_keeps_the_candidate_as_failed_and_prunes_nothing() {
        let fake = Fake::new(FailAt::SmokeReport);
        fake.add("fam-20260101-001", Status::Validated);
        let (r, cx) = run(&fake, &["fam-20260101-001".to_string()]).await;
        assert!(matches!(r, Err(PipelineError::SmokeTest { .. })));
        assert!(cx.with_ledger(|l| l.is_empty()));
        assert!(fake.live.lock().unwrap().is_empty());
        assert_eq!(
            fake.statuses(),
            [
                ("fam-20260101-001".to_string(), Status::Validated),
                ("fam-20260102-001".to_string(), Status::Failed)
            ]
        );
    }

    #[tokio::test]
    async fn success_publishes_then_prunes_exactly_the_plan() {
        let fake = Fake::new(FailAt::Nothing);
        fake.add("fam-20260101-001", Status::Validated);
        fake.add("fam-20260101-002", Status::Validated);
        let (r, cx) = run(&fake, &["fam-20260101-001".to_string()]).await;
        let outcome = r.unwrap();
        assert_eq!(outcome.image.name().to_string(), "fam-20260102-001");
        assert_eq!(outcome.prune.deleted, ["fam-20260101-001"]);
        assert!(cx.with_ledger(|l| l.is_empty()));
        assert!(fake.live.lock().unwrap().is_empty());
        assert_eq!(
            fake.statuses(),
            [
                ("fam-20260101-002".to_string(), Status::Validated),
                ("fam-20260102-001".to_string(), Status::Validated)
            ]
        );
    }

    #[tokio::test]
    async fn concurrent_pipelines_get_distinct_build_numbers() {
        let fake = Fake::new(FailAt::Nothing);
        let (a, b) = tokio::join!(run(&fake, &[]), run(&fake, &[]));
        let mut got = vec![
            a.0.unwrap().image.name().build,
            b.0.unwrap().image.name().build,
        ];
        got.sort();
        assert_eq!(got, [1, 2]);
    }
}
