//! The whole lifecycle of one family on the local platform, through the real
//! terraform CLI and real QEMU guests. Builds are expensive under TCG (a couple
//! of minutes each), so one scenario walks through the states in order and
//! asserts on terraform state and on the store after every step.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::util::{
    actions, assert_nothing_leaked, base_image, change, names, resource, store_images, strings,
    today, TfDir,
};

const FAMILY: &str = "e2e-life";

struct Recipe<'a> {
    revision: &'a str,
    smoke_commands: &'a [&'a str],
    on_destroy: &'a str,
}

fn config(base: &Path, r: &Recipe) -> String {
    let smoke: Vec<String> = r.smoke_commands.iter().map(|c| format!("{c:?}")).collect();
    format!(
        r#"
resource "golden_image" "x" {{
  platform = "local"
  family   = "{FAMILY}"
  source {{ path = "{base}" }}
  provision {{
    files    = {{ "/etc/golden-e2e" = "{rev}\n" }}
    commands = ["grep -qx {rev} /etc/golden-e2e"]
  }}
  tags = {{ os = "debian-12", type = "minimal" }}
  smoke_test {{
    commands = [{smoke}]
    timeout  = "15m"
  }}
  retention {{ keep = 2 }}
  on_destroy = "{on_destroy}"
}}

data "golden_latest_image" "x" {{
  platform   = "local"
  family     = "{FAMILY}"
  depends_on = [golden_image.x]
}}

data "golden_images" "all" {{
  platform   = "local"
  family     = "{FAMILY}"
  depends_on = [golden_image.x]
}}

output "latest" {{ value = data.golden_latest_image.x.name }}
output "all"    {{ value = data.golden_images.all.names }}
"#,
        base = base.display(),
        rev = r.revision,
        smoke = smoke.join(", "),
        on_destroy = r.on_destroy,
    )
}

fn name(n: u32) -> String {
    format!("{FAMILY}-{}-{n:03}", today())
}

fn outputs(tf: &TfDir) -> Value {
    serde_json::from_str(&tf.ok(&["output", "-json"])).unwrap()
}

fn plan_prune(plan: &Value) -> Vec<String> {
    strings(&change(plan, "golden_image.x")["change"]["after"]["prune"])
}

/// A lookup from a separate configuration: what any consumer would see.
fn latest_validated(store: &Path) -> String {
    let tf = TfDir::new();
    tf.write(
        store,
        &format!("data \"golden_latest_image\" \"x\" {{\n  platform = \"local\"\n  family = \"{FAMILY}\"\n}}\noutput \"n\" {{ value = data.golden_latest_image.x.name }}\n"),
    );
    tf.ok(&["apply", "-auto-approve", "-no-color", "-input=false"]);
    let v: Value = serde_json::from_str(&tf.ok(&["output", "-json"])).unwrap();
    v["n"]["value"].as_str().unwrap().to_owned()
}

fn is_standalone_qcow2(path: &Path) -> bool {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["format"] == "qcow2" && v.get("backing-filename").is_none()
}

/// Files in the family directory that golden did not write must survive
/// everything, including prune and `on_destroy = "delete"`.
fn plant_foreign_files(store: &Path) {
    let dir = store.join(FAMILY);
    std::fs::create_dir_all(&dir).unwrap();
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(dir.join("handmade.qcow2"))
        .arg("16M")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        dir.join("handmade.json"),
        r#"{"metadata":{"owner":"someone else"}}"#,
    )
    .unwrap();
}

fn assert_foreign_files_untouched(store: &Path) {
    assert!(
        store.join(FAMILY).join("handmade.qcow2").is_file(),
        "a file golden did not write was deleted"
    );
    assert!(
        store.join(FAMILY).join("handmade.json").is_file(),
        "a file golden did not write was deleted"
    );
}

#[test]
#[ignore = "boots QEMU guests; run by make test"]
fn lifecycle_on_local() {
    let base = base_image();
    let a = TfDir::new();
    let store = a.path().join("store");
    plant_foreign_files(&store);
    let v1 = Recipe {
        revision: "one",
        smoke_commands: &["test -f /etc/golden-e2e"],
        on_destroy: "keep",
    };
    a.write(&store, &config(&base, &v1));

    // 1. First apply builds -001, validates it and publishes it.
    a.apply();
    let st = a.state_json();
    let x = resource(&st, "golden_image.x");
    assert_eq!(x["name"], name(1));
    assert_eq!(x["build_number"], 1);
    assert_eq!(x["validated"], true);
    assert_eq!(x["id"], format!("local/{FAMILY}"));
    assert_eq!(x["validation"]["passed"], true);
    let checks: Vec<String> = x["validation"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        checks,
        ["boot", "guest_agent", "cloud_init", "ssh", "commands[0]"]
    );
    assert!(x["validation"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == true));
    assert_eq!(
        store_images(&store, FAMILY),
        [(name(1), "validated".to_owned())]
    );
    assert!(is_standalone_qcow2(
        &store.join(FAMILY).join(format!("{}.qcow2", name(1)))
    ));
    let out = outputs(&a);
    assert_eq!(
        out["latest"]["value"],
        name(1),
        "golden_latest_image returns the new image"
    );
    assert_eq!(strings(&out["all"]["value"]), [name(1)]);
    assert_nothing_leaked(&store, &a);

    // A second plan is a no-op.
    let st = a.run(&["plan", "-detailed-exitcode", "-no-color", "-input=false"]);
    assert_eq!(
        st.status.code(),
        Some(0),
        "second plan must show no changes"
    );

    // 2. A recipe change plans an in-place update that builds -002.
    let v2 = Recipe {
        revision: "two",
        ..v1
    };
    a.write(&store, &config(&base, &v2));
    let plan = a.plan_json();
    assert_eq!(
        actions(&plan, "golden_image.x"),
        ["update"],
        "a rebuild is never a replacement"
    );
    assert_eq!(
        change(&plan, "golden_image.x")["change"]["after_unknown"]["name"],
        true
    );
    assert!(plan_prune(&plan).is_empty());
    a.ok(&[
        "apply",
        "-auto-approve",
        "-no-color",
        "-input=false",
        "tfplan",
    ]);
    assert_eq!(resource(&a.state_json(), "golden_image.x")["name"], name(2));
    assert_eq!(names(&store_images(&store, FAMILY)), [name(1), name(2)]);

    // 3. With keep = 2 the plan before the third build lists the oldest in
    //    `prune`, and the apply removes exactly that.
    let v3 = Recipe {
        revision: "three",
        ..v1
    };
    a.write(&store, &config(&base, &v3));
    let plan = a.plan_json();
    assert_eq!(plan_prune(&plan), [name(1)]);
    a.ok(&[
        "apply",
        "-auto-approve",
        "-no-color",
        "-input=false",
        "tfplan",
    ]);
    let x = resource(&a.state_json(), "golden_image.x").clone();
    assert_eq!(x["name"], name(3));
    assert_eq!(strings(&x["prune"]), [name(1)]);
    assert_eq!(names(&store_images(&store, FAMILY)), [name(2), name(3)]);
    assert_nothing_leaked(&store, &a);

    // 4. A smoke-test command that exits 1 fails the apply with the report,
    //    marks the image failed, keeps the previous image as the validated
    //    latest and deletes nothing (the planned prune is not carried out).
    let v4 = Recipe {
        smoke_commands: &["test -f /etc/golden-e2e", "echo boom >&2; exit 1"],
        revision: "four",
        ..v1
    };
    a.write(&store, &config(&base, &v4));
    let plan = a.plan_json();
    assert_eq!(
        plan_prune(&plan),
        [name(2)],
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
        err.contains(&format!("Unable to Smoke-Test Image {}", name(4))),
        "{err}"
    );
    assert!(
        err.contains("FAILED commands[1]") && err.contains("boom"),
        "{err}"
    );
    assert!(
        err.contains("Serial console"),
        "the report shows the console tail: {err}"
    );
    assert_eq!(
        store_images(&store, FAMILY),
        [
            (name(2), "validated".into()),
            (name(3), "validated".into()),
            (name(4), "failed".into())
        ]
    );
    assert_eq!(resource(&a.state_json(), "golden_image.x")["name"], name(3));
    assert_eq!(
        latest_validated(&store),
        name(3),
        "a failed image is never the validated latest"
    );
    assert_nothing_leaked(&store, &a);

    // 5. Two concurrent applies on one family (two states) get distinct build
    //    numbers. The image built from the other state then counts in this
    //    state's retention: it shows up in the next plan's prune arithmetic.
    let v5 = Recipe {
        revision: "five",
        ..v1
    };
    a.write(&store, &config(&base, &v5));
    let b = TfDir::new();
    b.write(&store, &config(&base, &v5));
    let args = ["apply", "-auto-approve", "-no-color", "-input=false"];
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| a.run(&args));
        let tb = s.spawn(|| b.run(&args));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert!(
        ra.status.success() && rb.status.success(),
        "both concurrent applies must succeed"
    );
    // Each state reads back the family's newest validated image, so the
    // proof of distinct numbers is in the store: two validated images, -005
    // and -006 (a collision would have left one).
    let built_b = resource(&b.state_json(), "golden_image.x")["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(built_b == name(5) || built_b == name(6), "{built_b}");
    let statuses: Vec<String> = store_images(&store, FAMILY)
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert!(statuses.iter().all(|s| s == "validated"), "{statuses:?}");
    // Both plans pruned the failed image and -002; -003 is left for retention.
    assert_eq!(
        names(&store_images(&store, FAMILY)),
        [name(3), name(5), name(6)]
    );
    let plan = a.plan_json();
    assert_eq!(
        plan_prune(&plan),
        [name(3)],
        "the image built by the other state counts against keep"
    );
    assert_eq!(actions(&plan, "golden_image.x"), ["update"]);
    a.ok(&[
        "apply",
        "-auto-approve",
        "-no-color",
        "-input=false",
        "tfplan",
    ]);
    assert_eq!(names(&store_images(&store, FAMILY)), [name(5), name(6)]);
    assert!(store_images(&store, FAMILY)
        .iter()
        .any(|(n, _)| *n == built_b));
    assert_nothing_leaked(&store, &a);
    assert_nothing_leaked(&store, &b);

    // 6. Import adopts the family: state points at the newest validated image
    //    and the next plan does not rebuild.
    b.ok(&["state", "rm", "golden_image.x"]);
    for (id, why) in [
        ("local", "Invalid Import ID"),
        ("vmware/e2e-life", "Invalid Import ID"),
        ("local/no-such-family", "Image Family Not Found"),
    ] {
        let bad = b.fails(&["import", "-no-color", "-input=false", "golden_image.x", id]);
        assert!(bad.contains(why), "import {id}: {bad}");
    }
    b.ok(&[
        "import",
        "-no-color",
        "-input=false",
        "golden_image.x",
        &format!("local/{FAMILY}"),
    ]);
    let x = resource(&b.state_json(), "golden_image.x").clone();
    assert_eq!(x["name"], name(6));
    assert_eq!(x["validated"], true);
    let plan = b.plan_json();
    assert_ne!(
        change(&plan, "golden_image.x")["change"]["after_unknown"]["name"],
        true,
        "import must not plan a rebuild"
    );
    assert!(plan_prune(&plan).is_empty());

    // 7. Destroy keeps the images by default...
    std::fs::remove_file(b.path().join("tfplan")).ok();
    b.ok(&["destroy", "-auto-approve", "-no-color", "-input=false"]);
    assert_eq!(names(&store_images(&store, FAMILY)), [name(5), name(6)]);

    // ...and deletes every image golden built for the family with
    // on_destroy = "delete", never anything else.
    let v6 = Recipe {
        on_destroy: "delete",
        ..v5
    };
    a.write(&store, &config(&base, &v6));
    let plan = a.plan_json();
    assert_ne!(
        change(&plan, "golden_image.x")["change"]["after_unknown"]["name"],
        true,
        "on_destroy alone must not rebuild"
    );
    a.ok(&[
        "apply",
        "-auto-approve",
        "-no-color",
        "-input=false",
        "tfplan",
    ]);
    a.ok(&["destroy", "-auto-approve", "-no-color", "-input=false"]);
    assert!(
        store_images(&store, FAMILY).is_empty(),
        "{:?}",
        store_images(&store, FAMILY)
    );
    assert_foreign_files_untouched(&store);
    assert_nothing_leaked(&store, &a);
}
