//! Local build: overlay on the source, boot with the provisioning seed, wait
//! for the guest to power itself off, read the provisioning marker from the
//! serial console, flatten into the store.

use std::time::{Duration, Instant};

use tracing::info;

use super::source;
use super::LocalPlatform;
use crate::lifecycle::cloudinit::{build_user_data, meta_data, parse_provision_marker};
use crate::lifecycle::context::Cx;
use crate::lifecycle::image::Image;
use crate::lifecycle::ledger::UndoAction;
use crate::lifecycle::recipe::BuildInput;
use crate::lifecycle::report::tail_lines;
use crate::platforms::{Context as _, Error, Result};
use crate::qemu::{img, seed, Vm, VmSpec};

pub async fn run(
    p: &LocalPlatform,
    candidate: &Image,
    input: &BuildInput<'_>,
    cx: &Cx,
) -> Result<Image> {
    let recipe = input.recipe;
    let name = candidate.name().to_string();
    let family = candidate.meta.name.family.to_string();
    let started = Instant::now();

    let src = cx
        .run(
            "resolving the source",
            source::resolve(p.store(), &recipe.source, input.parent, cx),
        )
        .await?;
    info!(source = %src.description, format = %src.format, "source resolved");

    let work = p.workdir(&format!("build-{name}"), cx)?;
    let overlay = work.join("disk.qcow2");
    cx.run(
        "creating the build overlay",
        img::create_overlay(&src.path, &src.format, &overlay),
    )
    .await?;
    let seed = cx
        .run(
            "writing the cloud-init seed",
            seed::make_seed(
                &work,
                &build_user_data(&recipe.provision),
                &meta_data(&format!("build-{name}"), &family),
            ),
        )
        .await?;

    let spec = VmSpec {
        name: format!("golden-build-{name}"),
        disk: overlay.clone(),
        seed: Some(seed),
        workdir: work.clone(),
        memory_mib: super::MEMORY_MIB,
        cpus: super::CPUS,
        accel: p.accel(),
        forward_ssh: false,
        scratch_disk: false,
    };
    let mut vm = Vm::launch(&spec).await.ctx("starting the build VM")?;
    cx.record(UndoAction::KillProcess {
        process: vm.process,
    });
    cx.record(UndoAction::RemovePath {
        path: vm.runtime_dir.clone(),
    });
    info!(pid = vm.process.pid, accel = %p.accel(), "build VM booting; provisioning through cloud-init");
    let boot_started = Instant::now();

    let result = wait_for_provisioning(&mut vm, cx).await;
    let provision_secs = boot_started.elapsed().as_secs_f64();
    if let Err(e) = result {
        vm.kill().await;
        return Err(e);
    }
    info!(
        seconds = provision_secs,
        "guest provisioned and powered off"
    );

    let partial = p
        .store()
        .family_dir(&family)
        .join(format!(".{name}.qcow2.partial"));
    cx.record(UndoAction::RemovePath {
        path: partial.clone(),
    });
    let flatten_started = Instant::now();
    cx.run("flattening the image", img::flatten(&overlay, &partial))
        .await?;
    let target = p.store().image_path(&family, &name);
    std::fs::rename(&partial, &target)
        .ctx(format!("moving the image into {}", target.display()))?;
    info!(
        seconds = flatten_started.elapsed().as_secs_f64(),
        total_seconds = started.elapsed().as_secs_f64(),
        path = %target.display(),
        "image flattened"
    );
    let mut built = candidate.clone();
    built.size_bytes = std::fs::metadata(&target).ok().map(|m| m.len());
    built.id = target.display().to_string();
    Ok(built)
}

/// Waits until the guest powers off, failing early when the serial console
/// already shows a failed provisioning step.
async fn wait_for_provisioning(vm: &mut Vm, cx: &Cx) -> Result<()> {
    loop {
        if vm.wait_exit(Duration::from_millis(500)).await {
            break;
        }
        if let Some(r) = parse_provision_marker(&vm.serial()) {
            if !r.ok() {
                // Give cloud-init a moment to flush the failing step's output.
                let _ = cx.sleep("provisioning", Duration::from_secs(2)).await;
                return Err(provision_failed(vm, &r.step, r.rc));
            }
        }
        if let Err(e) = cx.check("provisioning the build VM (waiting for it to power off)") {
            return Err(with_console(e, vm));
        }
    }
    match parse_provision_marker(&vm.serial()) {
        Some(r) if r.ok() => Ok(()),
        Some(r) => Err(provision_failed(vm, &r.step, r.rc)),
        None => Err(Error::other(
            "provisioning",
            anyhow::anyhow!(
                "the build VM powered off without reporting a provisioning result; \
                 does the source image run cloud-init with a NoCloud seed?\n{}",
                console(vm)
            ),
        )),
    }
}

fn console(vm: &Vm) -> String {
    format!(
        "Serial console (last lines):\n{}",
        tail_lines(&vm.serial(), 30)
    )
}

fn provision_failed(vm: &Vm, step: &str, rc: i32) -> Error {
    Error::other(
        "provisioning",
        anyhow::anyhow!("step {step:?} exited with {rc}\n{}", console(vm)),
    )
}

fn with_console(e: Error, vm: &Vm) -> Error {
    if e.is_cancelled() {
        return e;
    }
    e.with_detail(console(vm))
}
