//! Reserve and build on GCE: the build instance, its provisioning, and the
//! image made from its disk.

use std::time::Duration;

use base64::Engine;
use google_cloud_compute_v1::model::{
    metadata::Items, AccessConfig, AttachedDisk, AttachedDiskInitializeParams, Image as GceImage,
    Instance, Metadata as GceMetadata, NetworkInterface,
};
use tokio::time::Instant;
use tracing::info;

use super::encoding::{self, Role};
use super::{from_btree, last_segment, new_run_id, GcpPlatform, Undo};
use crate::lifecycle::cloudinit::{self, parse_provision_marker};
use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::metadata::Metadata;
use crate::lifecycle::naming::ImageName;
use crate::lifecycle::packages;
use crate::lifecycle::recipe::{BuildInput, Provision, Source};
use crate::lifecycle::report::tail_lines;
use crate::platforms::{Error, ErrorKind, Result};

/// What `reserve` made for `build` to carry on with.
#[derive(Debug, Clone)]
pub struct Reserved {
    pub run: String,
    pub instance: String,
}

/// How often the build instance and its serial port are looked at.
const POLL: Duration = Duration::from_secs(3);

/// How much serial output is kept for error messages and reports.
const SERIAL_KEEP: usize = 64 * 1024;

/// GCE's limit on one metadata value (256 KB).
const MAX_METADATA_VALUE: usize = 256 * 1024;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The provisioning as a startup script, for images without cloud-init
/// (Google's Debian images): the same steps as the user-data. Where
/// cloud-init exists it does the work and this script exits. The guest
/// stays up: golden stops it once it read the result (see [`wait_provisioned`]).
pub fn startup_script(p: &Provision) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         # Written by terraform-provider-golden: provisioning where the image has no cloud-init.\n\
         command -v cloud-init >/dev/null 2>&1 && exit 0\n\
         mkdir -p /var/lib/golden /usr/share/golden\n",
    );
    s += &format!("sh -c {}\n", sh_quote(&packages::record_source_script()));
    for (path, content) in &p.files {
        s += &format!("echo '{}' | base64 -d > {}\n", b64(content), sh_quote(path));
    }
    s += &format!(
        "echo '{}' | base64 -d > /var/lib/golden/provision.sh\nchmod 0755 /var/lib/golden/provision.sh\n",
        b64(&cloudinit::provision_script(p))
    );
    if !p.packages.is_empty() {
        let pkgs: Vec<String> = p.packages.iter().map(|x| sh_quote(x)).collect();
        s += &format!(
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {}\n",
            pkgs.join(" ")
        );
    }
    s += "/var/lib/golden/provision.sh\n";
    s
}

/// The image to boot the build instance from.
fn source_image(p: &GcpPlatform, input: &BuildInput) -> Result<String> {
    match (&input.recipe.source, input.parent) {
        (Source::Family(_), Some(parent)) => Ok(parent.id.clone()),
        (Source::Native(v), _) => super::spec::source_image(v).ok_or_else(|| {
            Error::new(
                ErrorKind::Other,
                format!("the recipe's source {v} is not a GCP image"),
            )
        }),
        (other, _) => Err(Error::new(
            ErrorKind::Other,
            format!(
                "platform gcp cannot build from {other:?} in project {}",
                p.client.project()
            ),
        )),
    }
}

fn metadata_items(provision: &Provision) -> Result<Vec<Items>> {
    let user_data = cloudinit::build_user_data_with(provision, cloudinit::PowerOff::ByHost);
    let script = startup_script(provision);
    for (key, value) in [("user-data", &user_data), ("startup-script", &script)] {
        if value.len() > MAX_METADATA_VALUE {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "the provisioning is {} KiB as {key}; GCE takes at most 256 KiB per metadata value (shrink provision.files)",
                    value.len() / 1024
                ),
            ));
        }
    }
    Ok(vec![
        Items::new().set_key("user-data").set_value(user_data),
        Items::new().set_key("startup-script").set_value(script),
    ])
}

/// An instance's body: one boot disk from `image` (deleted with it), the
/// provider's machine type and network, golden's labels on both.
pub(crate) fn instance_body(
    p: &GcpPlatform,
    name: &str,
    image: &str,
    labels: &std::collections::BTreeMap<String, String>,
    items: Vec<Items>,
) -> Instance {
    let disk = AttachedDisk::new()
        .set_boot(true)
        .set_auto_delete(true)
        .set_initialize_params(
            AttachedDiskInitializeParams::new()
                .set_source_image(image)
                .set_labels(from_btree(labels.clone())),
        );
    let mut nic = NetworkInterface::new().set_network(p.config.network.clone());
    if p.config.external_ip {
        nic = nic.set_access_configs([AccessConfig::new()
            .set_name("External NAT")
            .set_type("ONE_TO_ONE_NAT")]);
    }
    Instance::new()
        .set_name(name)
        .set_machine_type(format!(
            "zones/{}/machineTypes/{}",
            p.client.zone(),
            p.config.machine_type
        ))
        .set_disks([disk])
        .set_network_interfaces([nic])
        .set_metadata(GceMetadata::new().set_items(with_blocked_project_keys(items)))
        .set_labels(from_btree(labels.clone()))
}

/// Project-wide SSH keys would become accounts in the guest (Google's guest
/// agent adds them at boot) and so in the image: golden's instances refuse
/// them.
fn with_blocked_project_keys(mut items: Vec<Items>) -> Vec<Items> {
    items.push(
        Items::new()
            .set_key("block-project-ssh-keys")
            .set_value("TRUE"),
    );
    items
}

/// Inserts an instance and waits until it runs (its insert is `DONE`).
pub(crate) async fn insert_instance(p: &GcpPlatform, body: Instance, cx: &Cx) -> Result<()> {
    let name = body.name.clone().unwrap_or_default();
    let instances = p.client.instances(cx).await?;
    let rid = super::client::request_id();
    let what = format!("instances.insert {name}");
    let op = p
        .client
        .call(&what, cx, || {
            instances
                .insert()
                .set_project(p.client.project())
                .set_zone(p.client.zone())
                .set_body(body.clone())
                .set_request_id(rid.clone())
                .send()
        })
        .await?;
    p.client.wait(op, &what, cx).await?;
    Ok(())
}

pub async fn reserve(
    p: &GcpPlatform,
    meta: &Metadata,
    input: &BuildInput<'_>,
    cx: &Cx,
) -> Result<Image> {
    let image_name = meta.name.to_string();
    match p.get_image(&image_name, cx).await {
        Ok(_) => return Err(Error::already_exists(image_name)),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    let source = source_image(p, input)?;
    let items = metadata_items(&input.recipe.provision)?;
    let run = new_run_id();
    let instance = format!("golden-build-{run}");
    let labels = encoding::resource_labels(Role::Build, &run, p.expires(cx), Some(&meta.name))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Other,
                format!("run id {run} is not a label value"),
            )
        })?;
    // Recorded before the insert: an insert whose answer is lost is found
    // by its run label.
    let undo = Undo::DropRun {
        run: run.clone(),
        image: Some(image_name.clone()),
    }
    .action();
    cx.record(undo.clone());
    info!(%source, %instance, zone = p.client.zone(), "creating the build instance");
    insert_instance(p, instance_body(p, &instance, &source, &labels, items), cx).await?;

    if !claim_holds(p, &meta.name, &instance, cx).await? {
        info!(image = %meta.name, "another run claimed this build number first; giving way");
        let clean = cx.for_cleanup(crate::lifecycle::pipeline::CLEANUP_TIMEOUT);
        p.drop_run(&run, None, &clean).await?;
        cx.forget(&undo);
        return Err(Error::already_exists(image_name));
    }
    p.pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(image_name.clone(), Reserved { run, instance });
    Ok(Image {
        meta: meta.clone(),
        id: p.image_path(&image_name),
        size_bytes: None,
        in_progress: true,
        protected: None,
    })
}

/// Earliest claim wins: of the build instances claiming `name`, the one
/// created first (then the lower name) builds it.
async fn claim_holds(p: &GcpPlatform, name: &ImageName, ours: &str, cx: &Cx) -> Result<bool> {
    let filter = format!("labels.{} = \"{name}\"", encoding::KEY_CLAIM);
    let mut rivals: Vec<(String, String)> = p
        .list_instances(&filter, cx)
        .await?
        .into_iter()
        .map(|i| {
            (
                i.creation_timestamp.unwrap_or_default(),
                i.name.unwrap_or_default(),
            )
        })
        .collect();
    rivals.sort();
    Ok(rivals.first().is_none_or(|(_, n)| n == ours))
}

/// Serial port 1, read from where the last read ended. A `start` GCE moves
/// forward means output was lost from its 1 MB ring.
pub(crate) struct Serial {
    next: i64,
    pub text: String,
    pub lost: bool,
}

impl Serial {
    pub fn new() -> Self {
        Serial {
            next: 0,
            text: String::new(),
            lost: false,
        }
    }

    pub async fn read(&mut self, p: &GcpPlatform, instance: &str, cx: &Cx) -> Result<String> {
        let instances = p.client.instances(cx).await?;
        let start = self.next;
        let out = p
            .client
            .call(
                &format!("instances.getSerialPortOutput {instance}"),
                cx,
                || {
                    instances
                        .get_serial_port_output()
                        .set_project(p.client.project())
                        .set_zone(p.client.zone())
                        .set_instance(instance)
                        .set_port(1)
                        .set_start(start)
                        .send()
                },
            )
            .await?;
        if out.start.unwrap_or(start) > start {
            self.lost = true;
            tracing::warn!(
                instance,
                asked = start,
                got = out.start,
                "serial output was lost (GCE keeps 1 MB)"
            );
        }
        self.next = out.next.unwrap_or(start);
        let new = out.contents.unwrap_or_default();
        self.text.push_str(&new);
        if self.text.len() > SERIAL_KEEP {
            let cut = self.text.len() - SERIAL_KEEP;
            let cut = (cut..self.text.len())
                .find(|i| self.text.is_char_boundary(*i))
                .unwrap_or(cut);
            self.text.drain(..cut);
        }
        Ok(new)
    }
}

fn instance_status(i: &Instance) -> &str {
    i.status.as_ref().and_then(|s| s.name()).unwrap_or("")
}

/// Waits for provisioning's result on the serial port, then stops the
/// build instance (`instances.stop`: an ACPI shutdown). The guest does not
/// power itself off: GCE serves the serial port only while an instance
/// runs, so a guest that stopped itself could take its last lines, the
/// result among them, out of reach. A failed step ends the wait at once;
/// so does `power_off_timeout` (the instance is stopped, the build fails).
async fn wait_provisioned(p: &GcpPlatform, instance: &str, cx: &Cx) -> Result<()> {
    let until = Instant::now() + p.config.power_off_timeout;
    let mut serial = Serial::new();
    loop {
        let readable = match serial.read(p, instance, cx).await {
            Ok(_) => true,
            Err(e) if e.is_busy() => false,
            Err(e) => return Err(e),
        };
        if let Some(r) = parse_provision_marker(&serial.text) {
            if !r.ok() {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!(
                        "provisioning failed at step {:?} (exit {}) on the build instance {instance}",
                        r.step, r.rc
                    ),
                )
                .with_detail(console(&serial)));
            }
            info!(instance, "provisioning done; stopping the build instance");
            return stop_instance(p, instance, cx).await;
        }
        if !readable {
            let i = p.get_instance(instance, cx).await?;
            let status = instance_status(&i);
            if matches!(status, "STOPPING" | "TERMINATED" | "STOPPED" | "SUSPENDED") {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!("the build instance {instance} stopped ({status}) before provisioning reported its result: the guest powered off or crashed"),
                )
                .with_detail(console(&serial)));
            }
        }
        if Instant::now() >= until {
            tracing::warn!(
                instance,
                "no provisioning result within power_off_timeout; stopping the build instance"
            );
            let _ = stop_instance(p, instance, cx).await;
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "provisioning on the build instance {instance} did not report a result within power_off_timeout ({}s)",
                    p.config.power_off_timeout.as_secs()
                ),
            )
            .with_detail(console(&serial)));
        }
        cx.sleep("waiting for provisioning to finish", POLL).await?;
    }
}

fn console(serial: &Serial) -> String {
    format!(
        "serial console (last lines):\n{}",
        tail_lines(&serial.text, 30)
    )
}

async fn stop_instance(p: &GcpPlatform, instance: &str, cx: &Cx) -> Result<()> {
    let instances = p.client.instances(cx).await?;
    let rid = super::client::request_id();
    let what = format!("instances.stop {instance}");
    let op = p
        .client
        .call(&what, cx, || {
            instances
                .stop()
                .set_project(p.client.project())
                .set_zone(p.client.zone())
                .set_instance(instance)
                .set_request_id(rid.clone())
                .send()
        })
        .await?;
    p.client.wait(op, &what, cx).await.map(|_| ())
}

pub async fn run(p: &GcpPlatform, candidate: &Image, cx: &Cx) -> Result<Image> {
    let image_name = candidate.meta.name.to_string();
    let r = p
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&image_name)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Other,
                format!("{image_name} was not reserved by this provider process"),
            )
        })?;
    wait_provisioned(p, &r.instance, cx).await?;
    let instance = p.get_instance(&r.instance, cx).await?;
    let disk = instance
        .disks
        .iter()
        .find(|d| d.boot == Some(true))
        .and_then(|d| d.source.clone())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Other,
                format!("the build instance {} has no boot disk", r.instance),
            )
        })?;
    info!(instance = %r.instance, disk = last_segment(&disk), image = %image_name, "build instance off; creating the image from its disk");

    let mut labels = encoding::labels_for(&candidate.meta, Some(p.expires(cx)))
        .map_err(|e| Error::new(ErrorKind::Other, e))?;
    labels.insert(encoding::KEY_RUN.to_owned(), r.run.clone());
    let body = GceImage::new()
        .set_name(image_name.clone())
        .set_source_disk(disk)
        .set_labels(from_btree(labels))
        .set_description(encoding::description_for(&candidate.meta, None));
    let images = p.client.images(cx).await?;
    let rid = super::client::request_id();
    let what = format!("images.insert {image_name}");
    let op = p
        .client
        .call(&what, cx, || {
            images
                .insert()
                .set_project(p.client.project())
                .set_body(body.clone())
                .set_request_id(rid.clone())
                .send()
        })
        .await?;
    // However long it takes: the disk is in use until the image is made.
    p.client.wait(op, &what, cx).await?;
    info!(image = %image_name, "candidate image created");

    // The candidate is the pipeline's (DiscardCandidate) from here.
    p.delete_instance(&r.instance, cx).await?;
    cx.forget(
        &Undo::DropRun {
            run: r.run.clone(),
            image: Some(image_name.clone()),
        }
        .action(),
    );
    let img = p.get_image(&image_name, cx).await?;
    Ok(Image {
        meta: candidate.meta.clone(),
        id: p.image_path(&image_name),
        size_bytes: img.archive_size_bytes.and_then(|b| u64::try_from(b).ok()),
        in_progress: true,
        protected: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_startup_script_steps_aside_for_cloud_init_and_leaves_the_guest_up() {
        let p = Provision {
            packages: vec!["curl".into()],
            files: [("/etc/motd".to_owned(), "it's golden\n".to_owned())].into(),
            commands: vec!["true".into()],
            services: vec![],
        };
        let s = startup_script(&p);
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[2].starts_with("command -v cloud-init"), "{s}");
        assert!(s.contains(&b64("it's golden\n")));
        assert!(s.contains("apt-get install -y 'curl'"));
        // The host stops the instance once it read the result.
        assert_eq!(lines.last(), Some(&"/var/lib/golden/provision.sh"));
        assert!(!s.contains("poweroff"));
    }
}
