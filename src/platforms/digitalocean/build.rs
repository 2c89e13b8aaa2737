//! Reserve and build on DigitalOcean.
//!
//! Reserve creates a throwaway account key (without one DO e-mails a root
//! password) and the build droplet from the source, with the recipe as
//! user-data; the droplet, tagged `golden-claim:<name>`, is the claim on the
//! build number. Build waits for the guest to power itself off (the user-data
//! does so once provisioning succeeded), snapshots it under the candidate
//! name, reads the image id back from the droplet's snapshots, tags it,
//! deletes droplet and key, and transfers the image to the extra regions.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use tracing::{info, warn};

use super::api::{Droplet, NewDroplet};
use super::spec::SourceRef;
use super::{encoding, retry_after_lookup, DoPlatform, Undo, POLL};
use crate::lifecycle::allocation::{earliest_claim_wins, Rival};
use crate::lifecycle::cloudinit::{build_user_data, parse_provision_marker};
use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::metadata::{Metadata, Status};
use crate::lifecycle::recipe::{BuildInput, Provision, Source};
use crate::lifecycle::report::tail_lines;
use crate::platforms::kit::poll::{self, Progress};
use crate::platforms::registry::RecipeProblem;
use crate::platforms::{Context as _, Error, ErrorKind, Result};
use tf_provider::AttributePath;

/// DO's limit on `user_data`.
pub const MAX_USER_DATA: usize = 64 * 1024;
/// How often a snapshot is taken again after DO reports it `errored`.
const SNAPSHOT_ATTEMPTS: u32 = 3;
/// How long a graceful `shutdown` gets before it is asked again, then
/// `power_off` follows.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);
const SHUTDOWN_ATTEMPTS: u32 = 2;
/// Creates sent again after a lookup showed they did not happen.
const CREATE_ATTEMPTS: u32 = 3;

/// What `reserve` made for `build`.
#[derive(Debug, Clone)]
pub(crate) struct Reserved {
    pub droplet: u64,
    pub create_action: Option<u64>,
    pub key: u64,
    pub run_tag: String,
    /// The throwaway account key's files and the pinned host key: the
    /// provisioning watch logs in with them.
    pub keydir: PathBuf,
    pub host_public: String,
}

/// The build's user-data: the shared provisioning document, except that the
/// guest powers off only once provisioning succeeded (the provisioning
/// script removes itself as its last step; a failing step leaves it, and the
/// droplet keeps running), plus a host key made here (cc_ssh `ssh_keys`) so
/// golden can log in with it pinned and read the provisioning marker: DO
/// shows no serial console. The key does not outlive the build in the
/// image: the script's `cloud-init clean` makes the next boot a new
/// instance, whose cloud-init replaces the host keys (`ssh_deletekeys`).
///
/// The throwaway account key DO put in root's `authorized_keys` would stay
/// in the image (`cloud-init clean` leaves it): once the provisioning script
/// succeeded, and only then (the probe of a failed provisioning logs in
/// with it), a script removes exactly that key's line, before the power-off.
pub fn user_data(
    provision: &Provision,
    host_private: &str,
    host_public: &str,
    build_key: &str,
) -> Result<String> {
    let mut doc = build_doc(provision)?;
    doc["ssh_keys"] = super::smoke::host_key_config(host_private, host_public);
    let blob = build_key.split_whitespace().nth(1).ok_or_else(|| {
        Error::new(
            ErrorKind::Other,
            "the build's throwaway public key has no key data",
        )
    })?;
    doc["write_files"]
        .as_array_mut()
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Other,
                "the build's cloud-config has no write_files",
            )
        })?
        .push(json!({
            "path": FORGET_KEY_SCRIPT, "permissions": "0700", "owner": "root:root",
            "content": forget_key_script(ROOT_AUTHORIZED_KEYS, blob),
        }));
    doc["runcmd"] = json!([[
        "sh",
        "-c",
        format!("{PROVISION_SCRIPT} && sh {FORGET_KEY_SCRIPT}")
    ]]);
    let ud = render(&doc);
    check_user_data_size(&ud)?;
    Ok(ud)
}

const PROVISION_SCRIPT: &str = "/var/lib/golden/provision.sh";
const ROOT_AUTHORIZED_KEYS: &str = "/root/.ssh/authorized_keys";
/// Outside `/var/lib/golden`, which the provisioning script removes; it
/// removes itself.
const FORGET_KEY_SCRIPT: &str = "/run/golden-forget-build-key";

/// Removes the lines of `keys` holding the key data `blob` (base64: no
/// quote, no `|`), keeping the file's owner and mode; no file, nothing to do.
fn forget_key_script(keys: &str, blob: &str) -> String {
    format!(
        "#!/bin/sh
         # golden: the build's throwaway key leaves the image
         rm -f {FORGET_KEY_SCRIPT}
         test -f {keys} || exit 0
         grep -vF -e '{blob}' {keys} > {keys}.golden
         test $? -le 1 || exit 1
         cat {keys}.golden > {keys}
         rm -f {keys}.golden
"
    )
}

/// The build's cloud-config before any key made at apply is added: what the
/// plan-time size check measures.
fn user_data_without_host_key(provision: &Provision) -> Result<String> {
    let doc = build_doc(provision)?;
    Ok(render(&doc))
}

fn build_doc(provision: &Provision) -> Result<Value> {
    let rendered = build_user_data(provision);
    let mut doc: Value = rendered
        .strip_prefix("#cloud-config\n")
        .and_then(|body| serde_json::from_str(body).ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Other,
                "the build's cloud-config is not the JSON document golden writes",
            )
        })?;
    doc["power_state"]["condition"] = json!(["sh", "-c", "test ! -e /var/lib/golden/provision.sh"]);
    Ok(doc)
}

fn render(doc: &Value) -> String {
    format!(
        "#cloud-config\n{}\n",
        serde_json::to_string_pretty(doc).unwrap_or_default()
    )
}

/// DO refuses user-data over 64 KiB; say so before anything is created.
pub fn check_user_data_size(ud: &str) -> Result<()> {
    if ud.len() <= MAX_USER_DATA {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Other,
        format!(
            "the build's user_data is {} bytes; DigitalOcean takes at most {MAX_USER_DATA} (64 KiB). \
             provision.files are sent inside it (base64): ship large files another way \
             (a package, or a download in provision.commands)",
            ud.len()
        ),
    ))
}

/// Room the build's user-data keeps for what is made at apply: the host key
/// (an ed25519 pair in cloud-config `ssh_keys` takes about 600 bytes) and
/// the removal of the throwaway key (about 600 more).
const HOST_KEY_ROOM: usize = 2048;

/// The plan-time form of [`check_user_data_size`]: the user-data the recipe
/// makes (with room for the host key) must fit DO's 64 KiB, else the problem
/// points at the biggest part of `provision`, so the fix is obvious.
pub fn check_provision(provision: &Provision) -> Option<RecipeProblem> {
    let size = user_data_without_host_key(provision).ok()?.len() + HOST_KEY_ROOM;
    if size <= MAX_USER_DATA {
        return None;
    }
    let mut parts = provision_parts(provision);
    parts.sort_by_key(|p| std::cmp::Reverse(p.1));
    let listed: Vec<String> = parts
        .iter()
        .take(3)
        .map(|(what, bytes, _)| format!("{what}: about {bytes} bytes"))
        .collect();
    let at = parts
        .first()
        .map(|(_, _, at)| at.clone())
        .unwrap_or_else(|| AttributePath::new("provision"));
    Some(RecipeProblem {
        at,
        summary: "Provisioning Too Big for DigitalOcean user_data",
        detail: format!(
            "the build's user_data would be about {size} bytes; DigitalOcean takes at most \
             {MAX_USER_DATA} (64 KiB). provision.files and provision.commands travel inside it, \
             base64-encoded (4 bytes for every 3). Biggest parts: {}. Ship large files another \
             way (a package, or a download in provision.commands)",
            listed.join(", ")
        ),
    })
}

/// Each part of `provision` with roughly the bytes it adds to the user-data
/// and where terraform points for it.
fn provision_parts(p: &Provision) -> Vec<(String, usize, AttributePath)> {
    let b64 = |n: usize| n.div_ceil(3) * 4;
    let block = || AttributePath::new("provision").index(0);
    let mut parts = Vec::new();
    for (path, content) in &p.files {
        parts.push((
            format!("provision.files[{path:?}]"),
            b64(content.len()) + path.len(),
            block().attribute("files").key(path.clone()),
        ));
    }
    for (i, cmd) in p.commands.iter().enumerate() {
        // In the provisioning script (quoted, with its step line), base64.
        parts.push((
            format!("provision.commands[{i}]"),
            b64(cmd.len() + 40),
            block().attribute("commands").index(i as i64),
        ));
    }
    let packages: usize = p
        .packages
        .iter()
        .map(|k| b64(k.len() + 110) + k.len())
        .sum();
    if packages > 0 {
        parts.push((
            format!("packages ({})", p.packages.len()),
            packages,
            AttributePath::new("packages"),
        ));
    }
    parts
}

pub async fn reserve(
    p: &DoPlatform,
    meta: &Metadata,
    input: &BuildInput<'_>,
    cx: &Cx,
) -> Result<Image> {
    let keydir = super::smoke::temp_dir("build", cx)?;
    let (host_private, host_public) = cx
        .run(
            "creating the build droplet's host key",
            super::smoke::host_key(&keydir),
        )
        .await?;
    let public_key = cx
        .run(
            "creating a throwaway SSH key",
            crate::sshkey::throwaway_key(&keydir),
        )
        .await?;
    let ud = user_data(
        &input.recipe.provision,
        &host_private,
        &host_public,
        &public_key,
    )?;
    let (image, what) = resolve_source(p, &input.recipe.source, input.parent, cx).await?;
    info!(source = %what, region = %p.config.region, "source resolved");

    let run = super::new_run_id();
    let key = p.create_key(&run, &public_key, cx).await?;

    let run_tag = encoding::run_tag(&run);
    let deadline = encoding::deadline_tag(p.deadline(cx));
    let tags = vec![
        encoding::TAG_MANAGED.to_owned(),
        run_tag.clone(),
        encoding::claim_tag(&meta.name),
        deadline,
    ];
    let name = format!("golden-build-{}", meta.name);
    let snapshot = encoding::image_name(&meta.name, Status::Candidate);
    let (droplet, create_action) = create_droplet(
        p,
        &NewDroplet {
            name: &name,
            region: &p.config.region,
            size: &p.config.size,
            image,
            ssh_keys: &[key],
            user_data: &ud,
            tags: &tags,
        },
        &run_tag,
        Some(&snapshot),
        cx,
    )
    .await?;
    info!(droplet = droplet.id, %name, "build droplet created");

    if !claim_holds(p, meta, &droplet, &run_tag, cx).await? {
        info!(droplet = droplet.id, image = %meta.name, "another run claimed this build number first; giving way");
        let clean = cx.for_cleanup(crate::lifecycle::pipeline::CLEANUP_TIMEOUT);
        let claim = encoding::claim_tag(&meta.name);
        p.drop_run(
            Some(droplet.id),
            &run_tag,
            Some(&snapshot),
            Some(&claim),
            &clean,
        )
        .await?;
        cx.forget(&drop_undo(&run_tag, Some(&snapshot)));
        p.delete_key(key, &clean).await?;
        let _ = std::fs::remove_dir_all(&keydir);
        return Err(Error::already_exists(meta.name.to_string()));
    }
    p.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(
        meta.name.to_string(),
        Reserved {
            droplet: droplet.id,
            create_action,
            key,
            run_tag,
            keydir,
            host_public,
        },
    );
    Ok(Image {
        meta: meta.clone(),
        id: String::new(),
        size_bytes: None,
        in_progress: true,
        protected: None,
    })
}

pub(crate) fn drop_undo(
    run_tag: &str,
    snapshot: Option<&str>,
) -> crate::lifecycle::ledger::UndoAction {
    Undo::DropDroplets {
        run_tag: run_tag.to_owned(),
        snapshot: snapshot.map(str::to_owned),
    }
    .action()
}

/// `POST /v2/droplets`, recorded for deletion before it is sent (by its run
/// tag, so a create whose answer is lost is found too). After a failure that
/// may hide a create (a 5xx), the run tag is looked up first and the create
/// is sent again only when no droplet carries it.
pub(crate) async fn create_droplet(
    p: &DoPlatform,
    new: &NewDroplet<'_>,
    run_tag: &str,
    snapshot: Option<&str>,
    cx: &Cx,
) -> Result<(Droplet, Option<u64>)> {
    cx.record(drop_undo(run_tag, snapshot));
    let api = p.api(cx);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match api.create_droplet(new).await {
            Ok(r) => return Ok(r),
            Err(e) if retry_after_lookup(&e) && attempt < CREATE_ATTEMPTS => {
                warn!(error = %e, run_tag, "creating the droplet failed; looking it up by its run tag before trying again");
                if let Some(d) = api.droplets_tagged(run_tag).await?.into_iter().next() {
                    info!(droplet = d.id, "the droplet was created after all");
                    return Ok((d, None));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits until a new droplet left `new` (its create action completed).
pub(crate) async fn wait_created(
    p: &DoPlatform,
    droplet: u64,
    action: Option<u64>,
    cx: &Cx,
) -> Result<Droplet> {
    if let Some(a) = action {
        if !p
            .action_completed(&format!("creating droplet {droplet}"), a, None, cx)
            .await?
        {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "DigitalOcean could not create droplet {droplet} (its create action errored)"
                ),
            ));
        }
    }
    let api = p.api(cx);
    poll::until_done(&format!("droplet {droplet} to start"), cx, POLL, || async {
        let d = api.droplet(droplet).await?;
        Ok(if d.status == "new" {
            Progress::Pending
        } else {
            Progress::Done(d)
        })
    })
    .await
}

/// The earliest-claim rule among the build droplets claiming the same name
/// and the family's images already carrying it (those always win).
async fn claim_holds(
    p: &DoPlatform,
    meta: &Metadata,
    ours: &Droplet,
    run_tag: &str,
    cx: &Cx,
) -> Result<bool> {
    let claimants = p
        .api(cx)
        .droplets_tagged(&encoding::claim_tag(&meta.name))
        .await?;
    let mut rivals = droplet_rivals(claimants, ours.id, run_tag);
    for (image, _) in p.family_images(meta.family(), cx).await? {
        if image.meta.name == meta.name {
            rivals.push(Rival::Published);
        }
    }
    let created = ours.created_at.as_deref().and_then(super::api::parse_time);
    Ok(earliest_claim_wins(created, ours.id, rivals))
}

/// The build droplets claiming the name that are another run's: a droplet
/// carrying our own run tag is ours (a create sent twice leaves a twin,
/// which must not count as an earlier rival; it is deleted with the run).
fn droplet_rivals(
    claimants: Vec<Droplet>,
    ours: u64,
    run_tag: &str,
) -> Vec<Rival<time::OffsetDateTime>> {
    claimants
        .into_iter()
        .filter(|d| d.id != ours && !d.tags.iter().any(|t| t == run_tag))
        .map(|d| Rival::Candidate {
            created: d.created_at.as_deref().and_then(super::api::parse_time),
            id: d.id,
        })
        .collect()
}

/// The `image` of the droplet create: a slug, or an image id.
async fn resolve_source(
    p: &DoPlatform,
    source: &Source,
    parent: Option<&Image>,
    cx: &Cx,
) -> Result<(Value, String)> {
    let api = p.api(cx);
    let (img, what) = match source {
        Source::Native(native) => match SourceRef::from_native(native) {
            Some(SourceRef::Slug(slug)) => {
                let img = api.image_by_slug(&slug).await.map_err(|e| {
                    if e.is_not_found() {
                        Error::not_found(format!("source.slug: DigitalOcean has no image {slug:?}"))
                    } else {
                        e
                    }
                })?;
                (img, format!("slug {slug}"))
            }
            Some(SourceRef::ImageId(id)) => {
                let img = api.image(id).await.map_err(|e| {
                    if e.is_not_found() {
                        Error::not_found(format!(
                            "source.image_id: there is no image {id} (or the token cannot see it)"
                        ))
                    } else {
                        e
                    }
                })?;
                (img, format!("image {id}"))
            }
            Some(SourceRef::Tag(tag)) => {
                let newest = api
                    .images_tagged(&tag)
                    .await?
                    .into_iter()
                    .filter(|i| i.is_available())
                    .max_by_key(|i| (i.created(), i.id))
                    .ok_or_else(|| {
                        Error::not_found(format!(
                            "source.tag: no available image carries the tag {tag:?}"
                        ))
                    })?;
                let what = format!(
                    "image {} ({:?}, newest tagged {tag})",
                    newest.id, newest.name
                );
                (newest, what)
            }
            None => {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!("the recipe's source {native} is not a digitalocean source"),
                ))
            }
        },
        Source::Family(family) => {
            let parent = parent.ok_or_else(|| {
                Error::new(
                    ErrorKind::Other,
                    format!("source.family {family:?} arrived without its resolved parent image"),
                )
            })?;
            let id = DoPlatform::image_id(parent)?;
            (
                api.image(id).await?,
                format!("family {family} ({}, image {id})", parent.name()),
            )
        }
        Source::Url { .. } | Source::Path(_) => return Err(Error::new(
            ErrorKind::Other,
            "digitalocean builds from source.slug, source.image_id, source.tag or source.family",
        )),
    };
    if !img.is_available() {
        return Err(Error::new(
            ErrorKind::Other,
            format!(
                "the source ({what}) is not available (status {:?})",
                img.status
            ),
        ));
    }
    let region = &p.config.region;
    if !img.regions.is_empty() && !img.regions.contains(region) {
        return Err(Error::new(
            ErrorKind::Other,
            format!(
                "the source ({what}) is not available in region {region} (only in {}): set digitalocean.region to one of them, or transfer the image",
                img.regions.join(", ")
            ),
        ));
    }
    let field = match (&img.slug, img.public) {
        (Some(slug), Some(true)) if !slug.is_empty() => json!(slug),
        _ => json!(img.id),
    };
    Ok((field, what))
}

pub async fn run(p: &DoPlatform, candidate: &Image, cx: &Cx) -> Result<Image> {
    let name = candidate.name().to_string();
    let r = p
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&name)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Other,
                format!("{name} was not reserved by this provider process"),
            )
        })?;
    let started = std::time::Instant::now();
    let snapshot = encoding::image_name(&candidate.meta.name, Status::Candidate);

    wait_created(p, r.droplet, r.create_action, cx).await?;
    info!(
        droplet = r.droplet,
        "build droplet running; provisioning through user-data"
    );

    let watched = watch_provisioning(p, &r, cx).await;
    let watched = match watched {
        Ok(Provisioning::Failed(e)) | Err(e) => {
            discard_build(p, &r, &snapshot, cx).await;
            return Err(e);
        }
        Ok(w) => w,
    };
    if watched == Provisioning::StillUp {
        let why = format!(
            "the build droplet did not power itself off within {} (power_off_timeout): provisioning did not finish, or a step failed \
             (its output is in /var/log/cloud-init-output.log inside this image); golden shut it down and kept the snapshot for inspection",
            crate::lifecycle::duration::format(p.config.power_off_timeout)
        );
        warn!(droplet = r.droplet, "{why}");
        force_off(p, r.droplet, cx).await?;
        p.unclean
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), why);
    }
    info!(
        droplet = r.droplet,
        "build droplet off; taking the snapshot"
    );

    take_snapshot(p, r.droplet, &snapshot, cx).await?;
    let image_id = snapshot_id(p, r.droplet, &snapshot, cx).await?;
    p.add_tags(
        image_id,
        &super::golden_tags(&candidate.meta, Some(p.deadline(cx)))?,
        cx,
    )
    .await?;
    info!(image = image_id, name = %snapshot, "candidate snapshot tagged");

    // The candidate is visible to the pipeline's DiscardCandidate now.
    let claim = encoding::claim_tag(&candidate.meta.name);
    p.drop_run(Some(r.droplet), &r.run_tag, None, Some(&claim), cx)
        .await?;
    cx.forget(&drop_undo(&r.run_tag, Some(&snapshot)));
    p.delete_key(r.key, cx).await?;
    let _ = std::fs::remove_dir_all(&r.keydir);

    transfer(p, image_id, cx).await?;
    let img = p.api(cx).image(image_id).await?;
    info!(
        image = image_id,
        seconds = started.elapsed().as_secs_f64(),
        "candidate snapshot built"
    );
    Ok(Image {
        id: image_id.to_string(),
        size_bytes: img
            .size_gigabytes
            .map(|g| (g * 1024.0 * 1024.0 * 1024.0) as u64),
        ..candidate.clone()
    })
}

/// How the wait for the build droplet to power itself off ended.
#[derive(Debug)]
enum Provisioning {
    /// Off: provisioning succeeded.
    Off,
    /// Still up at `power_off_timeout` with no failure seen: a hung guest.
    StillUp,
    /// A provisioning step failed (the error names it, with the log tail).
    Failed(Error),
}

impl PartialEq for Provisioning {
    fn eq(&self, other: &Self) -> bool {
        matches!(
            (self, other),
            (Provisioning::Off, Provisioning::Off) | (Provisioning::StillUp, Provisioning::StillUp)
        )
    }
}

/// How often the running build droplet is asked over SSH whether a
/// provisioning step failed.
const PROBE_EVERY: Duration = Duration::from_secs(20);
/// One probe's SSH login and command.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
const OUTPUT_LOG: &str = "/var/log/cloud-init-output.log";

/// Waits up to `power_off_timeout` for the droplet to be `off`; meanwhile,
/// once it is active with an address, looks every [`PROBE_EVERY`] for the
/// provisioning marker over SSH, so a failed step ends the wait at once
/// instead of at the timeout (the local and Proxmox builds read the same
/// marker from the console and the agent).
async fn watch_provisioning(p: &DoPlatform, r: &Reserved, cx: &Cx) -> Result<Provisioning> {
    let sub = within(cx, p.config.power_off_timeout);
    let api = p.api(&sub);
    let probe = Probe {
        droplet: r.droplet,
        dir: &r.keydir,
        host_public: &r.host_public,
        port: p.config.ssh_port,
        next: Mutex::new(tokio::time::Instant::now()),
    };
    let outcome = poll::until_done(
        "waiting for the build droplet to power off",
        &sub,
        POLL,
        || async {
            let d = api.droplet(r.droplet).await?;
            if d.status == "off" {
                return Ok(Progress::Done(Provisioning::Off));
            }
            let failed = match (d.status.as_str(), d.public_ipv4()) {
                ("active", Some(ip)) => probe.failed_step(ip).await?,
                _ => None,
            };
            Ok(failed.map_or(Progress::Pending, |e| {
                Progress::Done(Provisioning::Failed(e))
            }))
        },
    )
    .await;
    match outcome {
        Err(e) if e.is_timeout() && cx.check("waiting for power-off").is_ok() => {
            Ok(Provisioning::StillUp)
        }
        r => r,
    }
}

/// A look at the build droplet's provisioning over SSH: root with the
/// throwaway key, the host key made for this build pinned.
struct Probe<'a> {
    droplet: u64,
    dir: &'a Path,
    host_public: &'a str,
    port: u16,
    /// When the next look is due (the poll runs more often).
    next: Mutex<tokio::time::Instant>,
}

impl Probe<'_> {
    /// The failed step, when the log shows one. SSH failures are not
    /// errors: sshd may not be up yet, and the log not written.
    async fn failed_step(&self, ip: &str) -> Result<Option<Error>> {
        let now = tokio::time::Instant::now();
        {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            if now < *next {
                return Ok(None);
            }
            *next = now + PROBE_EVERY;
        }
        std::fs::write(
            self.dir.join("known_hosts"),
            super::smoke::known_hosts_line(ip, self.port, self.host_public),
        )
        .ctx("writing known_hosts for the build droplet")?;
        let grep = format!("grep GOLDEN-PROVISION {OUTPUT_LOG}");
        let out = super::smoke::ssh(self.dir, ip, self.port, &grep, PROBE_TIMEOUT).await?;
        let marker = parse_provision_marker(&out.stdout).filter(|_| out.success());
        let Some(m) = marker.filter(|m| !m.ok()) else {
            tracing::debug!(
                droplet = self.droplet,
                exit = out.exit_code,
                "no failed provisioning step yet"
            );
            return Ok(None);
        };
        warn!(droplet = self.droplet, step = %m.step, rc = m.rc, "a provisioning step failed; not waiting for the power-off timeout");
        let log = super::smoke::ssh(
            self.dir,
            ip,
            self.port,
            &format!("cat {OUTPUT_LOG}"),
            PROBE_TIMEOUT,
        )
        .await?;
        let tail = if log.success() {
            tail_lines(&log.stdout, 30)
        } else {
            out.stdout
        };
        Ok(Some(
            Error::new(
                ErrorKind::Other,
                format!("provisioning step {:?} exited with {}", m.step, m.rc),
            )
            .with_detail(format!(
                "{OUTPUT_LOG} of build droplet {} (last lines):\n{tail}",
                self.droplet
            )),
        ))
    }
}

/// After a failed build: the droplet and the key go now, with nothing
/// snapshotted (as on the other platforms, a build that failed leaves no
/// image; the pipeline's discard finds no candidate). Failures here are
/// left to the ledger, which still holds both.
async fn discard_build(p: &DoPlatform, r: &Reserved, snapshot: &str, cx: &Cx) {
    let clean = cx.for_cleanup(crate::lifecycle::pipeline::CLEANUP_TIMEOUT);
    let claim = snapshot
        .strip_prefix("candidate-")
        .map(|n| encoding::tag(encoding::KEY_CLAIM, n));
    match p
        .drop_run(Some(r.droplet), &r.run_tag, None, claim.as_deref(), &clean)
        .await
    {
        Ok(()) => clean.forget(&drop_undo(&r.run_tag, Some(snapshot))),
        Err(e) => {
            warn!(droplet = r.droplet, error = %e, "could not delete the build droplet; the ledger will retry")
        }
    }
    if let Err(e) = p.delete_key(r.key, &clean).await {
        warn!(key = r.key, error = %e, "could not delete the throwaway key; the ledger will retry");
    }
    let _ = std::fs::remove_dir_all(&r.keydir);
}

/// `cx` with a nearer deadline.
fn within(cx: &Cx, limit: Duration) -> Cx {
    let mut sub = cx.clone();
    sub.deadline = sub.deadline.min(tokio::time::Instant::now() + limit);
    sub
}

/// Waits up to `limit` for the droplet to be `off`: `false` when it is not
/// by then (the run's own deadline and cancellation are errors).
async fn wait_off(p: &DoPlatform, droplet: u64, limit: Duration, cx: &Cx) -> Result<bool> {
    let sub = within(cx, limit);
    let api = p.api(&sub);
    let r = poll::until_done(
        "waiting for the build droplet to power off",
        &sub,
        POLL,
        || async {
            let d = api.droplet(droplet).await?;
            Ok(if d.status == "off" {
                Progress::Done(())
            } else {
                Progress::Pending
            })
        },
    )
    .await;
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.is_timeout() && cx.check("waiting for power-off").is_ok() => Ok(false),
        Err(e) => Err(e),
    }
}

/// `shutdown` (asked again if the guest ignores it), then `power_off`.
async fn force_off(p: &DoPlatform, droplet: u64, cx: &Cx) -> Result<()> {
    let api = p.api(cx);
    for attempt in 1..=SHUTDOWN_ATTEMPTS {
        api.droplet_action(droplet, json!({"type": "shutdown"}))
            .await?;
        // A guest that ignored its own power-off gets no longer than it had.
        let wait = SHUTDOWN_WAIT.min(p.config.power_off_timeout);
        if wait_off(p, droplet, wait, cx).await? {
            info!(droplet, attempt, "the droplet shut down");
            return Ok(());
        }
        warn!(droplet, attempt, "the guest ignored shutdown");
    }
    let action = api
        .droplet_action(droplet, json!({"type": "power_off"}))
        .await?;
    p.wait_action(&format!("powering off droplet {droplet}"), action.id, cx)
        .await?;
    if !wait_off(p, droplet, SHUTDOWN_WAIT, cx).await? {
        return Err(Error::new(
            ErrorKind::Other,
            format!("droplet {droplet} is still not off after power_off"),
        ));
    }
    Ok(())
}

/// The `snapshot` action, taken again when DO reports it `errored`. After a
/// failure that may hide an accepted action (a 5xx) the droplet's actions
/// are looked up first.
async fn take_snapshot(p: &DoPlatform, droplet: u64, name: &str, cx: &Cx) -> Result<()> {
    let api = p.api(cx);
    let mut seen: Vec<u64> = Vec::new();
    let mut attempt = 0;
    let mut errored = 0;
    loop {
        attempt += 1;
        let action = match api
            .droplet_action(droplet, json!({"type": "snapshot", "name": name}))
            .await
        {
            Ok(a) => a,
            Err(e) if retry_after_lookup(&e) && attempt < CREATE_ATTEMPTS + SNAPSHOT_ATTEMPTS => {
                warn!(error = %e, droplet, "the snapshot request failed; looking at the droplet's actions before asking again");
                let found = api.droplet_actions(droplet).await?.into_iter().find(|a| {
                    a.kind == "snapshot" && !seen.contains(&a.id) && a.status != "errored"
                });
                match found {
                    Some(a) => {
                        info!(action = a.id, "the snapshot action was accepted after all");
                        a
                    }
                    None => continue,
                }
            }
            Err(e) => return Err(e),
        };
        seen.push(action.id);
        let what = format!("snapshot of droplet {droplet}");
        if p.action_completed(&what, action.id, None, cx).await? {
            break;
        }
        errored += 1;
        if errored >= SNAPSHOT_ATTEMPTS {
            return Err(Error::new(
                ErrorKind::Other,
                format!("the snapshot of droplet {droplet} errored {errored} times (DigitalOcean action {} last); giving up", action.id),
            ));
        }
        warn!(
            droplet,
            action = action.id,
            "the snapshot action errored; taking it again"
        );
    }
    // The droplet stays locked a moment after the action.
    poll::until_done(
        "waiting for the droplet to be unlocked",
        cx,
        POLL,
        || async {
            Ok(if api.droplet(droplet).await?.locked {
                Progress::Pending
            } else {
                Progress::Done(())
            })
        },
    )
    .await
}

/// The snapshot's image id: the snapshot action returns an action, not an
/// image, so it is read from the droplet's snapshots by name.
async fn snapshot_id(p: &DoPlatform, droplet: u64, name: &str, cx: &Cx) -> Result<u64> {
    p.api(cx)
        .droplet_snapshots(droplet)
        .await?
        .into_iter()
        .filter(|s| s.name == name)
        .map(|s| s.id)
        .max()
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Other,
                format!("the snapshot action of droplet {droplet} completed, but it has no snapshot named {name}"),
            )
        })
}

/// Transfers the image to each extra region in turn, within
/// `transfer_timeout` for all of them.
async fn transfer(p: &DoPlatform, image: u64, cx: &Cx) -> Result<()> {
    let limit = p.config.transfer_timeout;
    let sub = within(cx, limit);
    let api = p.api(&sub);
    let have = api.image(image).await?.regions;
    let mut seen: Vec<u64> = Vec::new();
    for region in p
        .config
        .regions
        .iter()
        .filter(|r| **r != p.config.region && !have.contains(r))
    {
        let what = format!("transfer of image {image} to {region}");
        let r = async {
            let sent = super::now();
            let action = match api.transfer_image(image, region).await {
                Ok(a) => a,
                Err(e) if retry_after_lookup(&e) => {
                    warn!(error = %e, "the transfer request failed; looking at the image and its actions");
                    if api.image(image).await?.regions.iter().any(|r| r == region) {
                        info!(image, region, "the image is in the region already");
                        return Ok(());
                    }
                    match newest_transfer_since(api.image_actions(image).await?, sent, &seen) {
                        Some(a) => {
                            info!(action = a.id, "the transfer was accepted after all");
                            a
                        }
                        None => api.transfer_image(image, region).await?,
                    }
                }
                Err(e) => return Err(e),
            };
            seen.push(action.id);
            info!(image, region, action = action.id, "transferring the image");
            if p.action_completed(&what, action.id, Some(image), &sub).await? {
                Ok(())
            } else {
                Err(Error::new(ErrorKind::Other, format!("{what}: the transfer action errored")))
            }
        }
        .await;
        match r {
            Err(e) if e.is_timeout() && cx.check(&what).is_ok() => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{what} did not finish within {} (digitalocean.transfer_timeout); the candidate is removed",
                        crate::lifecycle::duration::format(limit)
                    ),
                ))
            }
            r => r?,
        }
    }
    Ok(())
}

/// How far DO's clock may run behind ours when a transfer action is matched
/// to the request by its `started_at`.
const CLOCK_SLACK: Duration = Duration::from_secs(60);

/// The transfer a request whose answer was lost started: the newest
/// `transfer` action on the image begun after the request was sent (within
/// [`CLOCK_SLACK`]) that is not an earlier region's (`seen`). Its
/// `region_slug` is no guide: DO's example transfer to `nyc2` answers
/// `region_slug: nyc3`, the region it left.
fn newest_transfer_since(
    actions: Vec<super::api::Action>,
    sent: time::OffsetDateTime,
    seen: &[u64],
) -> Option<super::api::Action> {
    let after = sent - CLOCK_SLACK;
    actions
        .into_iter()
        .filter(|a| a.kind == "transfer" && !seen.contains(&a.id))
        .filter_map(|a| {
            let t = a.started_at.as_deref().and_then(super::api::parse_time)?;
            (t >= after).then_some((t, a))
        })
        .max_by_key(|(t, a)| (*t, a.id))
        .map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_guest_powers_off_only_after_provisioning_succeeded() {
        let ud = user_data(&Provision::default(), HOST_PRIVATE, HOST_PUBLIC, BUILD_KEY).unwrap();
        assert!(ud.starts_with("#cloud-config\n"));
        let doc: Value = serde_json::from_str(ud.strip_prefix("#cloud-config\n").unwrap()).unwrap();
        assert_eq!(doc["power_state"]["mode"], "poweroff");
        assert_eq!(
            doc["power_state"]["condition"],
            json!(["sh", "-c", "test ! -e /var/lib/golden/provision.sh"])
        );
        // The script the condition watches is the one the shared user-data writes.
        assert!(doc["write_files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "/var/lib/golden/provision.sh"));
        // The host key golden pins when it looks in on provisioning.
        assert_eq!(doc["ssh_keys"]["ed25519_public"], HOST_PUBLIC);
        assert_eq!(doc["ssh_keys"]["ed25519_private"], HOST_PRIVATE);
    }

    #[test]
    fn a_lost_transfer_answer_is_found_by_time_not_region() {
        let action =
            |id: u64, kind: &str, started: &str, region: &str| -> super::super::api::Action {
                serde_json::from_value(json!({
                    "id": id, "status": "in-progress", "type": kind,
                    "started_at": started, "region_slug": region,
                }))
                .unwrap()
            };
        let sent = super::super::api::parse_time("2026-01-01T12:00:00Z").unwrap();
        let actions = vec![
            // An older transfer (before the request), a snapshot, an earlier
            // region's transfer of this run, and ours naming the source region.
            action(1, "transfer", "2026-01-01T10:00:00Z", "nyc2"),
            action(2, "snapshot", "2026-01-01T12:00:02Z", "nyc3"),
            action(3, "transfer", "2026-01-01T11:59:50Z", "nyc3"),
            action(4, "transfer", "2026-01-01T12:00:01Z", "nyc3"),
        ];
        let found = newest_transfer_since(actions.clone(), sent, &[3]).unwrap();
        assert_eq!(found.id, 4);
        // Nothing new since the request: send it again.
        assert!(newest_transfer_since(actions[..3].to_vec(), sent, &[3]).is_none());
    }

    fn droplet(id: u64, created: &str, tags: &[&str]) -> Droplet {
        serde_json::from_value(json!({
            "id": id, "name": "golden-build-x", "status": "active",
            "created_at": created, "tags": tags,
        }))
        .unwrap()
    }

    #[test]
    fn a_twin_of_our_own_create_is_no_rival() {
        let run = "golden-run:ours";
        let claim = "golden-claim:f-20260101-001";
        let ours = droplet(20, "2026-01-01T00:00:10Z", &["golden-managed", run, claim]);
        // The same create sent twice: an earlier droplet with our run tag.
        let twin = droplet(10, "2026-01-01T00:00:05Z", &["golden-managed", run, claim]);
        let rivals = droplet_rivals(vec![twin.clone(), ours.clone()], ours.id, run);
        assert!(rivals.is_empty(), "{rivals:?}");
        let created = ours
            .created_at
            .as_deref()
            .and_then(super::super::api::parse_time);
        assert!(earliest_claim_wins(created, ours.id, rivals));
        // Another run's earlier droplet still wins.
        let other = droplet(
            5,
            "2026-01-01T00:00:01Z",
            &["golden-managed", "golden-run:theirs", claim],
        );
        let rivals = droplet_rivals(vec![twin, other, ours.clone()], ours.id, run);
        assert_eq!(rivals.len(), 1);
        assert!(!earliest_claim_wins(created, ours.id, rivals));
    }

    const BUILD_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1aWxkLWtleS1vZi10aGlzLXJ1bi0xMjM0NTY3 golden-build";

    #[test]
    fn the_build_key_leaves_root_authorized_keys_only_after_provisioning_succeeded() {
        let ud = user_data(&Provision::default(), HOST_PRIVATE, HOST_PUBLIC, BUILD_KEY).unwrap();
        let doc: Value = serde_json::from_str(ud.strip_prefix("#cloud-config\n").unwrap()).unwrap();
        // After the provisioning script, and only when it succeeded.
        assert_eq!(
            doc["runcmd"],
            json!([[
                "sh",
                "-c",
                format!("{PROVISION_SCRIPT} && sh {FORGET_KEY_SCRIPT}")
            ]])
        );
        let script = doc["write_files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == FORGET_KEY_SCRIPT)
            .expect("the key's removal is written")["content"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(script.contains(ROOT_AUTHORIZED_KEYS));

        // Run it (with sh) on a copy: exactly the build key's line goes.
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("authorized_keys");
        let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVzZXJzLW93bi1rZXktc3RheXMtaW4tdGhlLWltYWdl user@laptop";
        std::fs::write(&keys, format!("{other}\n{BUILD_KEY}\n")).unwrap();
        let blob = BUILD_KEY.split_whitespace().nth(1).unwrap();
        let body = forget_key_script(keys.to_str().unwrap(), blob);
        let run = |body: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(body)
                .status()
                .unwrap()
        };
        assert!(run(&body).success());
        assert_eq!(
            std::fs::read_to_string(&keys).unwrap(),
            format!("{other}\n")
        );
        // The build key alone: an empty file, still there.
        std::fs::write(&keys, format!("{BUILD_KEY}\n")).unwrap();
        assert!(run(&body).success());
        assert_eq!(std::fs::read_to_string(&keys).unwrap(), "");
        // No file: nothing to do.
        std::fs::remove_file(&keys).unwrap();
        assert!(run(&body).success());
        assert!(!keys.exists());
    }

    const HOST_PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQAAACBzZWNyZXQtbm90LXJlYWxseS1hLWtleQAAAJhob3N0a2V5aG9zdGtleQAAAAtzc2gtZWQyNTUxOQAAACBzZWNyZXQtbm90LXJlYWxseS1hLWtleQAAAEBzZWNyZXQtbm90LXJlYWxseS1hLWtleXNlY3JldC1ub3QtcmVhbGx5LWEta2V5AAAAEWdvbGRlbi1zbW9rZS1ob3N0AQIDBAUG\n-----END OPENSSH PRIVATE KEY-----\n";
    const HOST_PUBLIC: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNlY3JldC1ub3QtcmVhbGx5LWEta2V5 golden-smoke-host";

    #[test]
    fn user_data_over_64_kib_is_refused_before_anything_is_created() {
        let small = Provision {
            files: BTreeMap::from([("/etc/motd".into(), "x".repeat(1000))]),
            ..Provision::default()
        };
        assert!(user_data(&small, HOST_PRIVATE, HOST_PUBLIC, BUILD_KEY).is_ok());
        // base64 grows 3 bytes to 4: 48 KiB of file content is over the limit.
        let big = Provision {
            files: BTreeMap::from([("/opt/blob".into(), "x".repeat(48 * 1024))]),
            ..Provision::default()
        };
        let e = user_data(&big, HOST_PRIVATE, HOST_PUBLIC, BUILD_KEY).unwrap_err();
        assert!(e.to_string().contains("64 KiB"), "{e}");
        assert!(check_user_data_size(&"x".repeat(MAX_USER_DATA)).is_ok());
        // The same limit at plan, pointing at the part to move out.
        assert!(check_provision(&small).is_none());
        let p = check_provision(&big).expect("over the limit at plan");
        assert_eq!(
            p.at,
            AttributePath::new("provision")
                .index(0)
                .attribute("files")
                .key("/opt/blob".to_owned())
        );
        assert!(
            p.detail
                .contains("provision.files[\"/opt/blob\"]: about 65545 bytes"),
            "{}",
            p.detail
        );
        // Just under the limit without the host key's room is over with it.
        let edge = Provision {
            files: BTreeMap::from([("/opt/blob".into(), "x".repeat(47 * 1024))]),
            ..Provision::default()
        };
        let without = user_data_without_host_key(&edge).unwrap().len();
        // The room kept covers a real host key's share.
        let with = user_data(&Provision::default(), HOST_PRIVATE, HOST_PUBLIC, BUILD_KEY)
            .unwrap()
            .len();
        let bare = user_data_without_host_key(&Provision::default())
            .unwrap()
            .len();
        assert!(with - bare < HOST_KEY_ROOM, "{}", with - bare);
        assert_eq!(
            check_provision(&edge).is_some(),
            without + HOST_KEY_ROOM > MAX_USER_DATA
        );
        assert!(check_user_data_size(&"x".repeat(MAX_USER_DATA + 1)).is_err());
    }
}
