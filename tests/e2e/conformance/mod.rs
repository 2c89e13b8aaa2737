//! The conformance scenario: the platform-neutral lifecycle of one family,
//! written once and run for every platform through a [`Harness`] (DESIGN.md
//! section 6, invariants of section 3). Every step goes through the real
//! terraform CLI and asserts on terraform's state and plan and on what the
//! platform itself holds afterwards.
//!
//! Steps, sharing builds where the assertions stay as strong:
//!  1. first build, lookups through both data sources, no-op second plan
//!     (and, where the platform has a secret, a `TF_LOG=trace` apply);
//!  2. a recipe change is an in-place update building the next number;
//!  3. an out-of-band golden image counts against `keep`; `prune` in the plan
//!     is exactly what the apply deletes;
//!  4. a failed smoke test publishes nothing and deletes nothing;
//!  5. two concurrent applies from two states get distinct numbers, and the
//!     other state's image counts in this one's retention;
//!  6. import (bad ids, then the family);
//!  7. Ctrl-C during a build leaves nothing and touches no image;
//!  8. destroy keeps the images, `on_destroy = "delete"` removes golden's and
//!     nothing else; the secret is in no state file.

pub mod digitalocean;
pub mod gcp;
pub mod local;
pub mod proxmox;

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::util::{actions, change, resource, strings, today, TfDir};

/// The platform's credential, which must never reach logs or state.
pub struct Secret {
    pub value: String,
    /// Text the provider's own trace logging prints for this platform: proof
    /// that the trace output searched for the secret holds golden's logs.
    pub trace_marker: &'static str,
}

/// What the scenario needs to know about one platform.
pub trait Harness {
    /// The `platform` attribute value.
    fn platform(&self) -> &'static str;
    /// The family the scenario builds (one per platform).
    fn family(&self) -> &'static str;
    /// The whole `provider "golden"` block.
    fn provider_block(&self) -> String;
    /// Environment for every terraform command (settings passed as env).
    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// The `source { ... }` block to build from.
    fn source_block(&self) -> String;
    /// More recipe lines the platform supports (e.g. `packages`).
    fn recipe_extras(&self) -> &'static str {
        ""
    }
    /// The `tags` map of the recipe. Mixed case, spaces, a slash by default:
    /// platforms that keep tags verbatim elsewhere must read them back
    /// without churn. A platform that refuses some at plan (DigitalOcean's
    /// charset) gives the hardest tags it stores exactly.
    fn tags_hcl(&self) -> &'static str {
        r#"{ os = "Debian 12", type = "minimal", Team = "Platform/Infra" }"#
    }
    /// A smoke-test command that fails, printing `boom`.
    fn failing_command(&self) -> &'static str {
        "echo boom >&2; exit 1"
    }
    /// Text the platform's failure report carries beyond the check list.
    fn failure_report_markers(&self) -> &'static [&'static str] {
        &[]
    }
    /// golden's images of `family` as the platform holds them: (image name,
    /// status), sorted by name. Foreign things are not listed.
    fn images(&self) -> Vec<(String, String)>;
    /// Platform-specific checks of a freshly published image (`x` is the
    /// resource's state).
    fn check_published(&self, name: &str, x: &Value);
    /// Platform-specific proof that a failed image is not published.
    fn check_unpublished(&self, name: &str);
    /// Makes an image of the family the way golden would have made it,
    /// outside this scenario's states (an earlier state, lost): a validated
    /// copy of `like` named `name`.
    fn seed_out_of_band(&self, like: &str, name: &str);
    /// Plants things that look like the family's images but are not
    /// golden's (`like` is a published image to copy from).
    fn seed_foreign(&self, like: &str);
    /// Panics unless everything `seed_foreign` planted (and the source) is intact.
    fn assert_foreign_intact(&self);
    /// Temporary things of builds and smoke tests still present.
    fn temporaries(&self) -> Vec<String>;
    /// More checks after every step (schema conformance and the like).
    fn platform_checks(&self) {}
    /// Is a build under way (its build VM running)?
    fn build_running(&self) -> bool;
    /// How long to let a running build go on before Ctrl-C.
    fn settle_before_interrupt(&self) -> Duration {
        Duration::ZERO
    }
    /// Makes the next build stay in flight long enough to interrupt it.
    fn stall_builds(&self) {}
    fn unstall_builds(&self) {}
    /// The platform's secret, or `None` where the platform has none.
    fn secret(&self) -> Option<Secret>;
    /// Whether an image carries its package manifest for the next build to
    /// compare with (`packages_changed`). DigitalOcean's snapshots take no
    /// description, so there it stays null.
    fn keeps_package_manifests(&self) -> bool {
        true
    }
}

struct Recipe<'a> {
    revision: &'a str,
    fail_smoke: bool,
    on_destroy: &'a str,
}

const V1: Recipe = Recipe {
    revision: "one",
    fail_smoke: false,
    on_destroy: "keep",
};

fn config<H: Harness>(h: &H, r: &Recipe) -> String {
    let mut smoke = vec![format!("{:?}", "test -f /etc/golden-e2e")];
    if r.fail_smoke {
        smoke.push(format!("{:?}", h.failing_command()));
    }
    format!(
        r#"
resource "golden_image" "x" {{
  platform = "{platform}"
  family   = "{family}"
  {source}
  {extras}
  provision {{
    files    = {{ "/etc/golden-e2e" = "{rev}\n" }}
    commands = ["grep -qx {rev} /etc/golden-e2e"]
  }}
  # The hardest tags the platform stores (see Harness::tags_hcl): the
  # state must not churn.
  tags = {tags}
  smoke_test {{
    checks   = ["boot", "guest_agent", "cloud_init", "ssh", "minimal"]
    commands = [{smoke}]
    timeout  = "15m"
  }}
  retention {{ keep = 2 }}
  on_destroy = "{on_destroy}"
}}

data "golden_latest_image" "x" {{
  platform   = "{platform}"
  family     = "{family}"
  depends_on = [golden_image.x]
}}

data "golden_images" "all" {{
  platform   = "{platform}"
  family     = "{family}"
  depends_on = [golden_image.x]
}}

output "latest"    {{ value = data.golden_latest_image.x.name }}
output "latest_id" {{ value = data.golden_latest_image.x.image_id }}
output "all"       {{ value = data.golden_images.all.names }}
"#,
        platform = h.platform(),
        family = h.family(),
        source = h.source_block(),
        extras = h.recipe_extras(),
        tags = h.tags_hcl(),
        rev = r.revision,
        smoke = smoke.join(", "),
        on_destroy = r.on_destroy,
    )
}

fn write<H: Harness>(h: &H, tf: &TfDir, r: &Recipe) {
    tf.write_with_provider(&h.provider_block(), &config(h, r));
}

fn new_dir<H: Harness>(h: &H) -> TfDir {
    TfDir::with_env(&h.env())
}

const APPLY: [&str; 4] = ["apply", "-auto-approve", "-no-color", "-input=false"];

fn apply_plan(tf: &TfDir) {
    tf.ok(&[
        "apply",
        "-auto-approve",
        "-no-color",
        "-input=false",
        "tfplan",
    ]);
}

fn plan_prune(plan: &Value) -> Vec<String> {
    sorted(strings(
        &change(plan, "golden_image.x")["change"]["after"]["prune"],
    ))
}

fn rebuilds(plan: &Value) -> bool {
    change(plan, "golden_image.x")["change"]["after_unknown"]["name"] == true
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn outputs(tf: &TfDir) -> Value {
    serde_json::from_str(&tf.ok(&["output", "-json"])).unwrap()
}

fn with_status(names: &[&String], status: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = names
        .iter()
        .map(|n| ((*n).clone(), status.to_owned()))
        .collect();
    v.sort();
    v
}

/// The family's validated latest as any consumer sees it: a lookup from a
/// configuration of its own.
fn latest_validated<H: Harness>(h: &H) -> String {
    let tf = new_dir(h);
    tf.write_with_provider(
        &h.provider_block(),
        &format!(
            "data \"golden_latest_image\" \"x\" {{\n  platform = \"{}\"\n  family = \"{}\"\n}}\noutput \"n\" {{ value = data.golden_latest_image.x.name }}\n",
            h.platform(),
            h.family()
        ),
    );
    tf.ok(&APPLY);
    outputs(&tf)["n"]["value"].as_str().unwrap().to_owned()
}

/// Nothing temporary is left: no build or smoke-test VM, work dir or lock
/// (asked of the harness), no cleanup ledger (asked of the provider's own
/// code), nothing of the provider's in its TMPDIR.
fn assert_nothing_leaked<H: Harness>(h: &H, dirs: &[&TfDir]) {
    let temps = h.temporaries();
    assert!(
        temps.is_empty(),
        "{}: temporaries left: {temps:?}",
        h.platform()
    );
    for tf in dirs {
        assert!(
            tf.ledgers().is_empty(),
            "cleanup ledgers left: {:?}",
            tf.ledgers()
        );
        let ours: Vec<_> = std::fs::read_dir(tf.tmp())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| !p.to_string_lossy().contains("terraform"))
            .collect();
        assert!(ours.is_empty(), "provider temp files left: {ours:?}");
    }
    h.platform_checks();
}

/// The whole scenario on one platform.
pub fn run<H: Harness>(h: &H) {
    let p = h.platform();
    let fam = h.family();
    let name = |n: u32| format!("{fam}-{}-{n:03}", today());
    let (n1, n2, n3, n4, n5, n6) = (name(1), name(2), name(3), name(4), name(5), name(6));
    // An image of the family from an earlier day, made outside these states.
    let oob = format!("{fam}-20200101-001");

    let a = new_dir(h);
    write(h, &a, &V1);

    // 1. The first apply builds -001, validates and publishes it; both data
    //    sources find it. Where the platform has a secret, this apply runs
    //    with TF_LOG=trace and the secret must not appear in the output.
    match h.secret() {
        Some(secret) => {
            let out = a.command(&APPLY).env("TF_LOG", "trace").output().unwrap();
            let log = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success(),
                "{}",
                &log[log.len().saturating_sub(4000)..]
            );
            assert!(
                log.contains(secret.trace_marker),
                "TF_LOG=trace must show golden's own logs ({:?})",
                secret.trace_marker
            );
            assert!(
                !log.contains(&secret.value),
                "{p}: the secret appears in TF_LOG=trace output"
            );
        }
        // No secret on this platform (the harness says why): the trace step
        // has nothing to look for, so the first apply runs plainly.
        None => {
            eprintln!("{p}: no secret; the TF_LOG=trace step is skipped");
            a.ok(&APPLY);
        }
    }
    let st = a.state_json();
    let x = resource(&st, "golden_image.x");
    assert_eq!(x["name"], n1);
    assert_eq!(x["build_number"], 1);
    assert_eq!(x["validated"], true);
    assert_eq!(x["id"], format!("{p}/{fam}"));
    assert_eq!(x["validation"]["passed"], true);
    let checks: Vec<&str> = x["validation"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "boot",
            "guest_agent",
            "cloud_init",
            "ssh",
            "commands[0]",
            "minimal"
        ]
    );
    // The family's first image has nothing to compare its packages with.
    assert!(x["packages_changed"].is_null(), "{x}");
    assert!(
        x["validation"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{x}"
    );
    assert_eq!(h.images(), with_status(&[&n1], "validated"));
    h.check_published(&n1, x);
    let out = outputs(&a);
    assert_eq!(
        out["latest"]["value"], n1,
        "golden_latest_image returns the new image"
    );
    assert_eq!(out["latest_id"]["value"], x["image_id"]);
    assert_eq!(strings(&out["all"]["value"]), vec![n1.clone()]);
    assert_nothing_leaked(h, &[&a]);
    h.seed_foreign(&n1);

    // A second plan is a no-op (tags the platform rewrote read back as the
    // user's).
    let st = a.run(&["plan", "-detailed-exitcode", "-no-color", "-input=false"]);
    assert_eq!(
        st.status.code(),
        Some(0),
        "second plan must show no changes"
    );

    // 2. A recipe change plans an in-place update that builds -002.
    let v2 = Recipe {
        revision: "two",
        ..V1
    };
    write(h, &a, &v2);
    let plan = a.plan_json();
    assert_eq!(
        actions(&plan, "golden_image.x"),
        ["update"],
        "a rebuild is never a replacement"
    );
    assert!(rebuilds(&plan), "a recipe change must rebuild");
    assert!(plan_prune(&plan).is_empty());
    apply_plan(&a);
    let x = resource(&a.state_json(), "golden_image.x").clone();
    assert_eq!(x["name"], n2);
    assert_eq!(x["build_number"], 2);
    assert_eq!(h.images(), with_status(&[&n1, &n2], "validated"));
    // The same packages (or the mirror's upgrades) since the first image.
    if h.keeps_package_manifests() {
        assert_eq!(x["packages_changed"]["since"], n1, "{x}");
        assert!(x["packages_changed"]["added"].is_array(), "{x}");
    } else {
        assert!(x["packages_changed"].is_null(), "{x}");
        assert_eq!(
            x["validation"]["passed"], true,
            "the report lives in state: {x}"
        );
    }

    // 3. An image of the family built outside these states counts against
    //    keep = 2: the plan before the third build prunes it and the oldest,
    //    and the apply deletes exactly those.
    h.seed_out_of_band(&n1, &oob);
    assert_eq!(h.images(), with_status(&[&oob, &n1, &n2], "validated"));
    let v3 = Recipe {
        revision: "three",
        ..V1
    };
    write(h, &a, &v3);
    let plan = a.plan_json();
    assert_eq!(plan_prune(&plan), sorted(vec![oob.clone(), n1.clone()]));
    apply_plan(&a);
    let x = resource(&a.state_json(), "golden_image.x").clone();
    assert_eq!(x["name"], n3);
    assert_eq!(
        sorted(strings(&x["prune"])),
        sorted(vec![oob.clone(), n1.clone()])
    );
    assert_eq!(h.images(), with_status(&[&n2, &n3], "validated"));
    assert_nothing_leaked(h, &[&a]);

    // 4. A failing smoke-test command fails the apply with the report, leaves
    //    the image marked failed and unpublished, keeps the previous image as
    //    the validated latest and deletes nothing (the planned prune is not
    //    carried out).
    let v4 = Recipe {
        revision: "four",
        fail_smoke: true,
        ..V1
    };
    write(h, &a, &v4);
    let plan = a.plan_json();
    assert_eq!(
        plan_prune(&plan),
        vec![n2.clone()],
        "the plan shows what a successful apply would prune"
    );
    let err = a.fails(&[
        "apply",
        "-auto-approve",
        "-no-color",
        "-input=false",
        "tfplan",
    ]);
    assert!(
        err.contains(&format!("Unable to Smoke-Test Image {n4}")),
        "{err}"
    );
    assert!(
        err.contains("FAILED commands[1]") && err.contains("boom"),
        "{err}"
    );
    for marker in h.failure_report_markers() {
        assert!(err.contains(marker), "the report lacks {marker:?}: {err}");
    }
    let mut want = with_status(&[&n2, &n3], "validated");
    want.push((n4.clone(), "failed".into()));
    want.sort();
    assert_eq!(h.images(), want);
    h.check_unpublished(&n4);
    assert_eq!(resource(&a.state_json(), "golden_image.x")["name"], n3);
    assert_eq!(
        latest_validated(h),
        n3,
        "a failed image is never the validated latest"
    );
    assert_nothing_leaked(h, &[&a]);

    // 5. Two concurrent applies on one family (two states) get distinct
    //    build numbers. The image built from the other state then counts in
    //    this state's retention.
    let v5 = Recipe {
        revision: "five",
        ..V1
    };
    write(h, &a, &v5);
    let b = new_dir(h);
    write(h, &b, &v5);
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| a.run(&APPLY));
        let tb = s.spawn(|| b.run(&APPLY));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert!(
        ra.status.success() && rb.status.success(),
        "both concurrent applies must succeed"
    );
    // Each state reads back the family's newest validated image, so the
    // proof of distinct numbers is on the platform: -005 and -006 both
    // validated (a collision would have left one). Both plans pruned the
    // failed image and -002; -003 is left for retention.
    for tf in [&a, &b] {
        let built = resource(&tf.state_json(), "golden_image.x")["name"].clone();
        assert!(built == n5 || built == n6, "{built}");
    }
    assert_eq!(h.images(), with_status(&[&n3, &n5, &n6], "validated"));
    assert_nothing_leaked(h, &[&a, &b]);
    let plan = a.plan_json();
    assert_eq!(
        plan_prune(&plan),
        vec![n3.clone()],
        "the image built by the other state counts against keep"
    );
    assert_eq!(actions(&plan, "golden_image.x"), ["update"]);
    assert!(!rebuilds(&plan), "pruning alone must not rebuild");
    apply_plan(&a);
    assert_eq!(h.images(), with_status(&[&n5, &n6], "validated"));

    // 6. Import adopts the family: state points at the newest validated
    //    image and the next plan neither rebuilds nor prunes.
    b.ok(&["state", "rm", "golden_image.x"]);
    for (id, why) in [
        (p.to_owned(), "Invalid Import ID"),
        (format!("vmware/{fam}"), "Invalid Import ID"),
        (format!("{p}/no-such-family"), "Image Family Not Found"),
    ] {
        let bad = b.fails(&["import", "-no-color", "-input=false", "golden_image.x", &id]);
        assert!(bad.contains(why), "import {id}: {bad}");
    }
    b.ok(&[
        "import",
        "-no-color",
        "-input=false",
        "golden_image.x",
        &format!("{p}/{fam}"),
    ]);
    let x = resource(&b.state_json(), "golden_image.x").clone();
    assert_eq!(x["name"], n6);
    assert_eq!(x["validated"], true);
    let plan = b.plan_json();
    assert!(!rebuilds(&plan), "import must not plan a rebuild");
    assert!(plan_prune(&plan).is_empty());
    std::fs::remove_file(b.path().join("tfplan")).ok();

    // 7. Ctrl-C during a build, sent the way a terminal sends it (SIGINT to
    //    terraform's process group), from a third state: nothing is left and
    //    the family's images are untouched.
    let c = new_dir(h);
    write(
        h,
        &c,
        &Recipe {
            revision: "seven",
            ..V1
        },
    );
    h.stall_builds();
    let mut cmd = c.command(&APPLY);
    cmd.process_group(0);
    let mut child = cmd.spawn().unwrap();
    let pgid = child.id() as i32;
    let started = Instant::now();
    while !h.build_running() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the build VM never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "terraform exited before the build VM started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The leak probes see the running build: the checks below can fail.
    assert!(
        !c.ledgers().is_empty(),
        "no cleanup ledger under {} while the build runs",
        c.state_dir().display()
    );
    assert!(
        !h.temporaries().is_empty(),
        "the harness sees no temporaries while a build runs"
    );
    std::thread::sleep(h.settle_before_interrupt());
    // SAFETY: signalling the process group we created.
    unsafe { libc::kill(-pgid, libc::SIGINT) };
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "terraform did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "an interrupted apply must fail");
    h.unstall_builds();
    // The provider may finish its cleanup a moment after terraform exits.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        h.images(),
        with_status(&[&n5, &n6], "validated"),
        "Ctrl-C left a candidate or touched an image"
    );
    assert_nothing_leaked(h, &[&a, &b, &c]);

    // 8. Destroy keeps the images by default...
    b.ok(&["destroy", "-auto-approve", "-no-color", "-input=false"]);
    assert_eq!(h.images(), with_status(&[&n5, &n6], "validated"));

    // ...and on_destroy = "delete" (a change that alone does not rebuild)
    // deletes every image golden built for the family and nothing else.
    let v6 = Recipe {
        on_destroy: "delete",
        ..v5
    };
    write(h, &a, &v6);
    let plan = a.plan_json();
    assert!(!rebuilds(&plan), "on_destroy alone must not rebuild");
    apply_plan(&a);
    a.ok(&["destroy", "-auto-approve", "-no-color", "-input=false"]);
    assert!(h.images().is_empty(), "{:?}", h.images());
    h.assert_foreign_intact();
    assert_nothing_leaked(h, &[&a, &b, &c]);

    // The secret is in no state this scenario wrote.
    if let Some(secret) = h.secret() {
        for tf in [&a, &b, &c] {
            for f in ["terraform.tfstate", "terraform.tfstate.backup"] {
                let state = std::fs::read_to_string(tf.path().join(f)).unwrap_or_default();
                assert!(!state.contains(&secret.value), "{p}: the secret is in {f}");
            }
        }
    }
}
