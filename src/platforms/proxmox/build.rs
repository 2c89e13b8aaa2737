//! Reserve and build on Proxmox, without SSH.
//!
//! Reserve clones the source into the candidate VM (its existence is the
//! claim on the build number). Build gives it a cloud-init drive, starts it,
//! waits for the guest agent, provisions through `agent/exec` and
//! `agent/file-write` (packages, files, the provisioning script that runs the
//! commands, enables services and cleans cloud-init and the machine id), shuts
//! it down and converts it to a template.

use std::time::Duration;

use tracing::info;

use super::agent::{self, sh_quote};
use super::api::{boot_disk_size, config_str, is_protected, params, Upid, VmConfig, VmResource};
use super::encoding::{self, Note};
use super::tasks;
use super::{ProxmoxPlatform, SourceVm, VmRef};
use crate::lifecycle::allocation::{earliest_claim_wins, Rival};
use crate::lifecycle::cloudinit::{parse_provision_marker, provision_script};
use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::ledger::UndoAction;
use crate::lifecycle::metadata::Metadata;
use crate::lifecycle::packages;
use crate::lifecycle::recipe::{BuildInput, Recipe, Source};
use crate::lifecycle::report::tail_lines;
use crate::platforms::proxmox::spec::{ProxmoxSource, TemplateRef};
use crate::platforms::{Error, ErrorKind, Result};

const SCRIPT_DIR: &str = "/var/lib/golden";
const PACKAGES_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const COMMANDS_TIMEOUT: Duration = Duration::from_secs(60 * 60);
const CLOUD_INIT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const SHUTDOWN_TIMEOUT_SECS: u64 = 180;
/// vmids tried before giving up when concurrent runs take them first.
const VMID_ATTEMPTS: usize = 10;

pub async fn reserve(
    p: &ProxmoxPlatform,
    meta: &Metadata,
    input: &BuildInput<'_>,
    cx: &Cx,
) -> Result<Image> {
    let resources = p.api(cx).vm_resources().await?;
    let source = resolve_source(p, &input.recipe.source, input.parent, &resources, cx).await?;
    info!(source = %source_what(&source), "source resolved");
    let mut tried = Vec::new();
    for _ in 0..VMID_ATTEMPTS {
        let vmid = p.free_vmid(&resources, &tried)?;
        tried.push(vmid);
        match create_candidate(p, meta, &source, vmid, cx).await {
            Ok((image, undo)) => {
                check_claim(p, &image, cx).await?;
                // From here the pipeline's DiscardCandidate owns the VM.
                cx.forget(&undo);
                return Ok(image);
            }
            Err(e) if e.is_already_exists() => {
                info!(vmid, "VM id taken meanwhile; trying the next one");
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::new(
        ErrorKind::Other,
        format!("could not create a candidate VM: {VMID_ATTEMPTS} VM ids were taken concurrently"),
    ))
}

fn source_what(s: &SourceVm) -> &str {
    match s {
        SourceVm::Clone { what, .. } | SourceVm::Import { what, .. } => what,
    }
}

async fn resolve_source(
    p: &ProxmoxPlatform,
    source: &Source,
    parent: Option<&Image>,
    resources: &[VmResource],
    cx: &Cx,
) -> Result<SourceVm> {
    match source {
        Source::Native(native) => match ProxmoxSource::from_native(native) {
            Some(ProxmoxSource::Template(t)) => resolve_template(p, &t, resources, cx).await,
            None => Err(Error::new(
                ErrorKind::Other,
                format!("the recipe's source {native} is not a proxmox source"),
            )),
        },
        Source::Family(family) => {
            let parent = parent.ok_or_else(|| {
                Error::new(
                    ErrorKind::Other,
                    format!("source.family {family:?} arrived without its resolved parent image"),
                )
            })?;
            // Its node, learned when the pipeline listed the family.
            let vmid = p.vm_by_id(parent).await?;
            Ok(SourceVm::Clone {
                node: p.node_of(vmid),
                vmid,
                what: format!("family {family} ({}, VM {vmid})", parent.name()),
            })
        }
        Source::Url { url, checksum } => import_cloud_image(p, url, &checksum.hex, cx).await,
        Source::Path(path) => Err(Error::new(
            ErrorKind::Other,
            format!(
                "source.path {} is a local file; proxmox builds from a template, a family or a url",
                path.display()
            ),
        )),
    }
}

/// `resources` with the entries whose statistics have not arrived yet (a VM
/// made seconds ago) completed from their configs; `wanted` picks the
/// entries worth a config read. A VM gone meanwhile is left out.
async fn settled(
    p: &ProxmoxPlatform,
    resources: &[VmResource],
    wanted: impl Fn(&VmResource) -> bool,
    cx: &Cx,
) -> Result<Vec<VmResource>> {
    let mut out = Vec::new();
    for r in resources.iter().filter(|r| r.is_qemu() && wanted(r)) {
        let mut r = r.clone();
        if r.stats_pending() {
            let node = r.node.clone().unwrap_or_else(|| p.config.node.clone());
            match p.api(cx).node(&node).vm(r.vmid).config().await {
                Ok(cfg) => r.settle_from(&cfg),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        }
        out.push(r);
    }
    Ok(out)
}

async fn resolve_template(
    p: &ProxmoxPlatform,
    template: &TemplateRef,
    resources: &[VmResource],
    cx: &Cx,
) -> Result<SourceVm> {
    let node_of = |r: &VmResource| r.node.clone().unwrap_or_else(|| p.config.node.clone());
    match template {
        TemplateRef::VmId(id) => {
            let found = settled(p, resources, |r| r.vmid == *id, cx).await?;
            let r = found.first().ok_or_else(|| {
                Error::not_found(format!("source.vm_id: there is no VM {id} in the cluster"))
            })?;
            if !r.is_template() {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!("source.vm_id: VM {id} is not a template; convert it (qm template {id}) or point at a template"),
                ));
            }
            Ok(SourceVm::Clone {
                node: node_of(r),
                vmid: *id,
                what: format!("template VM {id}"),
            })
        }
        TemplateRef::Name(name) => {
            let candidates = settled(
                p,
                resources,
                |r| r.stats_pending() || r.name.as_deref() == Some(name),
                cx,
            )
            .await?;
            let matching: Vec<&VmResource> = candidates
                .iter()
                .filter(|r| r.is_template() && r.name.as_deref() == Some(name))
                .collect();
            match matching.as_slice() {
                [r] => Ok(SourceVm::Clone {
                    node: node_of(r),
                    vmid: r.vmid,
                    what: format!("template {name} (VM {})", r.vmid),
                }),
                [] => Err(Error::not_found(format!(
                    "source.template: no template named {name:?} in the cluster \
                     (PVE lists only the VMs the API token has VM.Audit on)"
                ))),
                many => {
                    let ids: Vec<String> = many.iter().map(|r| r.vmid.to_string()).collect();
                    Err(Error::new(
                        ErrorKind::Other,
                        format!("source.template: {} templates are named {name:?} (VM {}); use source.vm_id", many.len(), ids.join(", ")),
                    ))
                }
            }
        }
    }
}

/// PVE downloads the image itself (`download-url`, content `import`), once per
/// checksum; later builds reuse the volume.
async fn import_cloud_image(
    p: &ProxmoxPlatform,
    url: &str,
    sha256: &str,
    cx: &Cx,
) -> Result<SourceVm> {
    let ext = match url.rsplit('.').next() {
        Some("raw") => "raw",
        Some("vmdk") => "vmdk",
        _ => "qcow2",
    };
    let filename = format!("golden-{}.{ext}", &sha256[..16]);
    let storage = &p.config.import_storage;
    let volid = format!("{storage}:import/{filename}");
    let api = p.api(cx);
    let node = api.node(&p.config.node);
    let existing = node.storage_volumes(storage, "import").await?;
    if !existing.iter().any(|v| v.volid == volid) {
        info!(url, %volid, "PVE downloads the cloud image");
        let upid = node.download_url(storage, url, &filename, sha256).await?;
        tasks::wait(
            &node,
            &upid,
            &format!("downloading {url} into {storage}"),
            cx,
        )
        .await?;
    }
    Ok(SourceVm::Import {
        what: format!("url {url} ({volid})"),
        volid,
    })
}

/// Clones or creates the candidate VM `vmid`. The clone is recorded for
/// destruction before its task is awaited, so an interrupt mid-clone leaves
/// nothing behind; the caller forgets that record once the claim holds.
async fn create_candidate(
    p: &ProxmoxPlatform,
    meta: &Metadata,
    source: &SourceVm,
    vmid: u32,
    cx: &Cx,
) -> Result<(Image, UndoAction)> {
    let deadline = encoding::rfc3339(super::now() + cx.remaining());
    let mut note = Note::image(meta, vmid, Some(deadline), None);
    note.created = Some(encoding::rfc3339(super::now()));
    let claim = super::new_claim();
    note.claim = Some(claim.clone());
    let name = encoding::candidate_vm_name(&meta.name);
    let api = p.api(cx);
    let (node, upid): (String, Upid) = match source {
        SourceVm::Clone {
            node, vmid: src, ..
        } => {
            let form = params([
                ("newid", vmid.to_string()),
                ("name", name.clone()),
                ("full", "1".into()),
                ("storage", p.config.storage.clone()),
                ("description", note.to_description()),
            ]);
            (node.clone(), api.node(node).vm(*src).clone_to(form).await?)
        }
        SourceVm::Import { volid, .. } => {
            let st = &p.config.storage;
            let form = params([
                ("vmid", vmid.to_string()),
                ("name", name.clone()),
                ("description", note.to_description()),
                ("memory", "1024".into()),
                ("cores", "2".into()),
                ("net0", "virtio,bridge=vmbr0".into()),
                ("scsihw", "virtio-scsi-single".into()),
                ("scsi0", format!("{st}:0,import-from={volid}")),
                ("ide2", format!("{st}:cloudinit")),
                ("agent", "1".into()),
                ("serial0", "socket".into()),
                ("vga", "serial0".into()),
                ("boot", "order=scsi0".into()),
                ("ostype", "l26".into()),
            ]);
            let node = p.config.node.clone();
            let upid = api.node(&node).create_vm(form).await?;
            (node, upid)
        }
    };
    p.remember_node(vmid, &node);
    let undo = VmRef {
        node: node.clone(),
        vmid,
        claim,
    }
    .undo();
    cx.record(undo.clone());
    info!(vmid, %name, "creating the candidate VM");
    tasks::wait(
        &api.node(&node),
        &upid,
        &format!("creating candidate VM {vmid}"),
        cx,
    )
    .await?;
    let vm = api.node(&node).vm(vmid);
    let mut form = params([("tags", encoding::tags_for(meta))]);
    // A clone copies every option it is not told otherwise, `protection`
    // included (qemu-server clone_vm), and a protected VM can never be
    // destroyed: the candidate (and every smoke clone of it) must not be.
    if is_protected(&vm.config().await?) {
        form.push(("delete".to_owned(), "protection".to_owned()));
    }
    vm.set_config(form).await?;
    let image = Image {
        meta: meta.clone(),
        id: vmid.to_string(),
        size_bytes: None,
        in_progress: true,
        protected: None,
    };
    Ok((image, undo))
}

/// Two applies that picked the same build number both created a candidate:
/// PVE names are not unique, so the claim follows lifecycle's earliest-claim
/// rule (creation time from our note, then the lower VM id). The loser
/// destroys its VM and gives way (AlreadyExists sends the pipeline to the
/// next number).
async fn check_claim(p: &ProxmoxPlatform, image: &Image, cx: &Cx) -> Result<()> {
    let vmid = p.vm_by_id(image).await?;
    let candidate_name = encoding::candidate_vm_name(image.name());
    let final_name = image.name().to_string();
    let resources = p.api(cx).vm_resources().await?;
    let ours = p
        .note_of(&p.node_of(vmid), vmid, cx)
        .await?
        .and_then(|n| n.created_at());
    let mut rivals = Vec::new();
    for r in resources.iter().filter(|r| r.vmid != vmid && r.is_qemu()) {
        let name = current_name(p, r, cx).await?;
        let named = name.as_deref();
        if named == Some(final_name.as_str()) {
            rivals.push(Rival::Published);
        } else if named == Some(candidate_name.as_str()) {
            let node = r.node.clone().unwrap_or_else(|| p.config.node.clone());
            let created = p
                .note_of(&node, r.vmid, cx)
                .await?
                .and_then(|n| n.created_at());
            rivals.push(Rival::Candidate {
                created,
                id: u64::from(r.vmid),
            });
        }
    }
    if earliest_claim_wins(ours, u64::from(vmid), rivals) {
        return Ok(());
    }
    info!(vmid, image = %final_name, "another run claimed this build number first; giving way");
    p.destroy_vm(
        &p.node_of(vmid),
        vmid,
        &cx.for_cleanup(crate::lifecycle::pipeline::CLEANUP_TIMEOUT),
    )
    .await?;
    Err(Error::already_exists(final_name))
}

/// A VM's name. `/cluster/resources` takes names from statistics that lag
/// by about ten seconds, so a VM that is new (no name yet) or locked (being
/// cloned or created) is asked directly.
async fn current_name(p: &ProxmoxPlatform, r: &VmResource, cx: &Cx) -> Result<Option<String>> {
    if r.name.is_some() && r.lock.is_none() {
        return Ok(r.name.clone());
    }
    let node = r.node.clone().unwrap_or_else(|| p.config.node.clone());
    match p.api(cx).node(&node).vm(r.vmid).config().await {
        Ok(cfg) => Ok(config_str(&cfg, "name")),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn run(
    p: &ProxmoxPlatform,
    candidate: &Image,
    recipe: &Recipe,
    cx: &Cx,
) -> Result<Image> {
    let vmid = p.vm_by_id(candidate).await?;
    let node = p.node_of(vmid);
    let api = p.api(cx);
    let node_api = api.node(&node);
    let vm = node_api.vm(vmid);
    let started = std::time::Instant::now();

    let cfg = vm.config().await?;
    let form = build_config(&cfg, &p.config.storage);
    // PVE refuses a config write with nothing in it ("no options specified").
    if !form.is_empty() {
        vm.set_config(form).await?;
    }
    let upid = vm.start().await?;
    tasks::wait(&node_api, &upid, &format!("starting build VM {vmid}"), cx).await?;
    info!(vmid, "build VM started; waiting for the guest agent");

    let waited = agent::wait_ready(&vm, p.config.agent_timeout, cx).await?;
    info!(vmid, seconds = waited.as_secs_f64(), "guest agent answered");

    let ci = agent::sh(
        &vm,
        "cloud-init status --wait >/dev/null 2>&1; cloud-init status 2>&1 || true",
        CLOUD_INIT_TIMEOUT,
        cx,
    )
    .await?;
    info!(vmid, status = %ci.stdout.trim(), "first-boot cloud-init finished");

    record_source_packages(&vm, cx).await;
    install_packages(&vm, &recipe.provision.packages, cx).await?;
    write_files(&vm, &recipe.provision.files, cx).await?;
    run_provision_script(&vm, recipe, cx).await?;

    let upid = vm.shutdown(SHUTDOWN_TIMEOUT_SECS).await?;
    tasks::wait(
        &node_api,
        &upid,
        &format!("shutting down build VM {vmid}"),
        cx,
    )
    .await?;
    let upid = vm.to_template().await?;
    tasks::wait(
        &node_api,
        &upid,
        &format!("converting VM {vmid} to a template"),
        cx,
    )
    .await?;
    info!(
        vmid,
        seconds = started.elapsed().as_secs_f64(),
        "candidate template built"
    );

    // From the config: `/cluster/resources` may not list the size of a VM
    // this new yet.
    let size = vm.config().await.ok().and_then(|cfg| boot_disk_size(&cfg));
    Ok(Image {
        size_bytes: size,
        ..candidate.clone()
    })
}

/// The agent on, DHCP, and a cloud-init drive if the source has none.
fn build_config(cfg: &VmConfig, storage: &str) -> Vec<(String, String)> {
    let mut form = Vec::new();
    // Keep the source's own agent options (fstrim, type) when it is on.
    let agent = config_str(cfg, "agent").unwrap_or_default();
    if !(agent.starts_with('1') || agent.contains("enabled=1")) {
        form.push(("agent".to_owned(), "1".to_owned()));
    }
    // A source with its own network settings keeps them; DHCP otherwise.
    if !cfg.contains_key("ipconfig0") {
        form.push(("ipconfig0".to_owned(), "ip=dhcp".to_owned()));
    }
    // PVE's first-boot package upgrade could restart the guest agent under a
    // running provisioning step; golden installs what the recipe says.
    if config_str(cfg, "ciupgrade").as_deref() != Some("0") {
        form.push(("ciupgrade".to_owned(), "0".to_owned()));
    }
    let has_cloudinit = cfg.keys().filter(|k| is_drive_key(k)).any(|k| {
        config_str(cfg, k).is_some_and(|v| v.contains(":cloudinit") || v.contains("-cloudinit"))
    });
    if !has_cloudinit {
        if let Some(slot) = ["ide2", "ide0", "ide1", "ide3"]
            .into_iter()
            .find(|k| !cfg.contains_key(*k))
        {
            form.push((slot.to_owned(), format!("{storage}:cloudinit")));
        }
    }
    form
}

/// `ide2`, `scsi0`, `sata1`, `virtio3`: the keys that hold drives.
fn is_drive_key(k: &str) -> bool {
    ["ide", "scsi", "sata", "virtio"].iter().any(|bus| {
        k.strip_prefix(bus)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

fn step_failed(step: &str, out: &agent::Output) -> Error {
    Error::new(
        ErrorKind::Other,
        format!("provisioning step {step:?} exited with {}", out.exit_code),
    )
    .with_detail(format!(
        "Output (last lines):\n{}",
        tail_lines(&out.combined(), 30)
    ))
}

/// The source image's packages, before golden installs any: what the
/// `minimal` check holds the image against. A guest without dpkg has none;
/// only `minimal` minds.
async fn record_source_packages(vm: &super::api::VmApi<'_>, cx: &Cx) {
    match agent::sh(vm, &packages::record_source_script(), PACKAGES_TIMEOUT, cx).await {
        Ok(out) if out.success() => {}
        Ok(out) => info!(
            exit = out.exit_code,
            "the source image's packages were not recorded"
        ),
        Err(e) => info!(error = %e, "the source image's packages were not recorded"),
    }
}

async fn install_packages(vm: &super::api::VmApi<'_>, packages: &[String], cx: &Cx) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    info!(?packages, "installing packages through the guest agent");
    let quoted: Vec<String> = packages.iter().map(|p| sh_quote(p)).collect();
    let script = format!(
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --no-install-recommends {}",
        quoted.join(" ")
    );
    let out = agent::sh(vm, &script, PACKAGES_TIMEOUT, cx).await?;
    if !out.success() {
        return Err(step_failed("packages", &out));
    }
    Ok(())
}

async fn write_files(
    vm: &super::api::VmApi<'_>,
    files: &std::collections::BTreeMap<String, String>,
    cx: &Cx,
) -> Result<()> {
    for (path, content) in files {
        if let Some((dir, _)) = path.rsplit_once('/').filter(|(d, _)| !d.is_empty()) {
            let out = agent::sh(
                vm,
                &format!("mkdir -p {}", sh_quote(dir)),
                Duration::from_secs(60),
                cx,
            )
            .await?;
            if !out.success() {
                return Err(step_failed(&format!("files[{path}]"), &out));
            }
        }
        agent::write_file(vm, path, content, cx).await?;
        info!(path, bytes = content.len(), "file written");
    }
    Ok(())
}

async fn run_provision_script(vm: &super::api::VmApi<'_>, recipe: &Recipe, cx: &Cx) -> Result<()> {
    let script_path = format!("{SCRIPT_DIR}/provision.sh");
    let out = agent::sh(
        vm,
        &format!("mkdir -p {SCRIPT_DIR}"),
        Duration::from_secs(60),
        cx,
    )
    .await?;
    if !out.success() {
        return Err(step_failed("prepare", &out));
    }
    agent::write_file(vm, &script_path, &provision_script(&recipe.provision), cx).await?;
    info!(
        commands = recipe.provision.commands.len(),
        "running the provisioning script"
    );
    let out = agent::exec(vm, &["/bin/sh", &script_path], COMMANDS_TIMEOUT, cx).await?;
    if out.success() {
        return Ok(());
    }
    let step = parse_provision_marker(&out.stdout)
        .map(|m| m.step)
        .unwrap_or_else(|| "provisioning script".into());
    Err(step_failed(&step, &out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn build_config_adds_a_cloud_init_drive_only_when_missing() {
        let mut cfg = VmConfig::new();
        cfg.insert("scsi0".into(), json!("local-lvm:vm-100-disk-0,size=2G"));
        let form = build_config(&cfg, "local-lvm");
        assert!(form.contains(&("ide2".into(), "local-lvm:cloudinit".into())));
        assert!(form.contains(&("agent".into(), "1".into())));

        cfg.insert(
            "ide2".into(),
            json!("local-lvm:vm-100-cloudinit,media=cdrom"),
        );
        let form = build_config(&cfg, "local-lvm");
        assert!(!form.iter().any(|(k, _)| k.starts_with("ide")));
    }

    #[test]
    fn the_sources_agent_options_and_network_settings_are_kept() {
        let mut cfg = VmConfig::new();
        cfg.insert("agent".into(), json!("enabled=1,fstrim_cloned_disks=1"));
        cfg.insert("ipconfig0".into(), json!("ip=10.1.2.3/24,gw=10.1.2.1"));
        cfg.insert(
            "ide2".into(),
            json!("local-lvm:vm-100-cloudinit,media=cdrom"),
        );
        cfg.insert("ciupgrade".into(), json!(0));
        // A description that mentions cloudinit is not a drive.
        cfg.insert("description".into(), json!("built with cloudinit"));
        assert!(build_config(&cfg, "local-lvm").is_empty());
        cfg.insert("agent".into(), json!("0"));
        assert_eq!(
            build_config(&cfg, "local-lvm"),
            [("agent".to_owned(), "1".to_owned())]
        );
    }

    #[test]
    fn a_busy_ide2_moves_the_drive_to_a_free_slot() {
        let mut cfg = VmConfig::new();
        cfg.insert("ide2".into(), json!("none,media=cdrom"));
        let form = build_config(&cfg, "fast");
        assert!(form.contains(&("ide0".into(), "fast:cloudinit".into())));
    }
}
