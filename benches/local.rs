//! Figures for the local platform under this machine's accelerator: one full
//! build (boot + provisioning, flatten) and one smoke test with their phases,
//! against the floor of a bare boot of the same image to "cloud-init done".
//! Prints figures; asserts nothing about speed. Run by `make bench`.
//!
//! Needs GOLDEN_BASE_IMAGE (or the default cached base image).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use golden::lifecycle::cloudinit::meta_data;
use golden::lifecycle::context::Cx;
use golden::lifecycle::ledger::Ledger;
use golden::lifecycle::naming::{BuildDate, Family, NamingRules};
use golden::lifecycle::pipeline::{build_and_publish, cleanup, BuildRequest};
use golden::lifecycle::recipe::{Provision, Recipe, SmokeSpec, Source};
use golden::platforms::local::LocalPlatform;
use golden::qemu::{accel, img, seed, AccelChoice, Vm, VmSpec};
use tokio_util::sync::CancellationToken;

fn base_image() -> PathBuf {
    std::env::var_os("GOLDEN_BASE_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/golden/base/debian-12.qcow2")
        })
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Boots `image` on an overlay with a minimal seed and measures the time to
/// the guest agent answering and to `cloud-init status --wait` returning.
async fn bare_boot(image: &Path, dir: &Path, accel: golden::qemu::Accel) -> (Duration, Duration) {
    let overlay = dir.join("bare.qcow2");
    img::create_overlay(image, "qcow2", &overlay).await.unwrap();
    let seed = seed::make_seed(dir, "#cloud-config\n{}\n", &meta_data("bare-boot", "bare"))
        .await
        .unwrap();
    let started = Instant::now();
    let mut vm = Vm::launch(&VmSpec {
        name: "golden-bench-bare".into(),
        disk: overlay,
        seed: Some(seed),
        workdir: dir.join("vm"),
        memory_mib: 1024,
        cpus: 2,
        accel,
        forward_ssh: false,
        scratch_disk: true,
    })
    .await
    .unwrap();
    let mut agent = vm
        .agent(tokio::time::Instant::now() + Duration::from_secs(600))
        .await
        .unwrap();
    let to_agent = started.elapsed();
    let out = agent
        .exec(
            "cloud-init",
            &["status", "--wait"],
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    let to_done = started.elapsed();
    assert!(
        out.success(),
        "bare boot: cloud-init did not finish: {}",
        out.combined()
    );
    vm.kill().await;
    (to_agent, to_done)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Phase timings come from the provider's own log events (hclog JSON on stderr).
    if std::env::var_os("TF_LOG").is_none() {
        std::env::set_var("TF_LOG", "info");
    }
    golden::logging::install();
    rt.block_on(async {
        let base = base_image();
        assert!(
            base.is_file(),
            "no base image at {}: run scripts/make-base-image.sh",
            base.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let accel = accel::resolve(AccelChoice::Auto).unwrap();
        println!("accelerator: {accel}");

        let (agent, done) = bare_boot(&base, dir.path(), accel).await;
        println!(
            "bare boot of the base image: guest agent answers after {}, cloud-init done after {}",
            secs(agent),
            secs(done)
        );

        let store = dir.path().join("store");
        let platform = LocalPlatform::new(store.clone(), accel);
        let family = Family::parse("bench", NamingRules { allow_dot: true }).unwrap();
        let recipe = Recipe {
            source: Source::Path(base.clone()),
            provision: Provision {
                packages: Vec::new(),
                files: BTreeMap::from([("/etc/motd".to_owned(), "bench\n".to_owned())]),
                commands: vec!["echo bench > /etc/golden-bench".to_owned()],
                services: Vec::new(),
            },
            smoke_test: SmokeSpec {
                commands: vec!["test -f /etc/golden-bench".into()],
                ..SmokeSpec::default()
            },
        };
        let tags = BTreeMap::new();
        let cx = Cx::new(
            CancellationToken::new(),
            Duration::from_secs(3600),
            Ledger::in_memory(),
        );
        let recipe_hash = recipe.hash().expect("recipe hash");
        let req = BuildRequest {
            family: &family,
            recipe: &recipe,
            recipe_hash: &recipe_hash,
            tags: &tags,
            planned_prune: &[],
            date: BuildDate::today(),
        };
        let started = Instant::now();
        let outcome = build_and_publish(&platform, req, &cx).await.expect("build");
        let total = started.elapsed();
        let smoke = Duration::from_millis(outcome.report.duration_ms);
        println!("build + smoke test + publish: {}", secs(total));
        println!(
            "  build (boot, provisioning by cloud-init, power-off, flatten): {}",
            secs(total - smoke)
        );
        println!(
            "  smoke test: {} ({:.2}x the bare boot to cloud-init done)",
            secs(smoke),
            smoke.as_secs_f64() / done.as_secs_f64()
        );
        for c in &outcome.report.checks {
            println!(
                "    {:<12} {:>6.1} s  {}",
                c.name,
                c.duration_ms as f64 / 1000.0,
                c.detail
            );
        }
        let size = outcome.image.size_bytes.unwrap_or(0);
        println!(
            "template size: {:.1} MiB (base image: {:.1} MiB)",
            size as f64 / 1048576.0,
            std::fs::metadata(&base).unwrap().len() as f64 / 1048576.0
        );
        cleanup(&platform, &cx).await;
    });
}
