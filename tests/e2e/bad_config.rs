//! Bad configs fail at `terraform plan` with a diagnostic that names the
//! attribute. No guest boots here, and nothing is written to the store.

use super::util::TfDir;

/// Where terraform's diagnostic must point.
enum At {
    /// `on main.tf line N, in resource "golden_image" "x":` then `N: <line>`,
    /// where line N of the written main.tf is the one containing this text:
    /// the diagnostic carries the attribute's path.
    Line(&'static str),
    /// A diagnostic without an attribute path (root-level for the resource):
    /// terraform points at the resource's header line. The reason is given
    /// per case.
    Resource(&'static str),
}

struct Case {
    what: &'static str,
    /// The resource's lines after `resource "golden_image" "x" {`, one
    /// attribute per line so that the pointer's line names one attribute.
    body: &'static str,
    /// Text the diagnostic must contain: its summary.
    summary: &'static str,
    at: At,
}

/// A `source` block naming `disk`, a real (tiny) disk image: `source.path`
/// is checked at plan too.
fn source_block(disk: &std::path::Path) -> String {
    format!("  source {{\n    path = \"{}\"\n  }}\n", disk.display())
}

/// The line number (1-based) of the only line of `file` containing `needle`.
fn line_of(file: &str, needle: &str) -> (usize, String) {
    let hits: Vec<(usize, &str)> = file
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, l)| (i + 1, l))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{needle:?} must be on exactly one line of:\n{file}"
    );
    (hits[0].0, hits[0].1.to_owned())
}

#[test]
fn bad_configs_fail_at_plan_naming_the_attribute() {
    let std_head = "  platform = \"local\"\n  family   = \"bad-config\"\n";
    let cases: Vec<Case> = vec![
        Case {
            what: "uppercase family",
            body: "  platform = \"local\"\n  family   = \"Debian\"\n",
            summary: "Invalid Family Name",
            at: At::Line("family   = \"Debian\""),
        },
        Case {
            what: "keep < 1",
            body: "  retention {\n    keep = 0\n  }\n",
            summary: "Invalid retention.keep",
            at: At::Line("keep = 0"),
        },
        Case {
            what: "unknown platform",
            body: "  platform = \"vmware\"\n  family   = \"bad-config\"\n",
            summary: "Unsupported Platform",
            at: At::Line("platform = \"vmware\""),
        },
        Case {
            what: "unparseable rebuild_after",
            body: "  rebuild_after = \"monthly\"\n",
            summary: "Invalid Duration",
            at: At::Line("rebuild_after = \"monthly\""),
        },
        Case {
            what: "unknown check",
            body: "  smoke_test {\n    checks = [\"ping\"]\n  }\n",
            summary: "Unknown Smoke-Test Check",
            at: At::Line("checks = [\"ping\"]"),
        },
        Case {
            what: "bad smoke timeout",
            body: "  smoke_test {\n    timeout = \"ten\"\n  }\n",
            summary: "Invalid Duration",
            at: At::Line("timeout = \"ten\""),
        },
        Case {
            what: "smoke test that checks nothing",
            body: "  smoke_test {\n    checks = []\n  }\n",
            summary: "Empty Smoke Test",
            at: At::Line("checks = []"),
        },
        Case {
            what: "bad on_destroy",
            body: "  on_destroy = \"purge\"\n",
            summary: "Invalid on_destroy",
            at: At::Line("on_destroy = \"purge\""),
        },
        Case {
            what: "reserved tag",
            body: "  tags = {\n    golden-status = \"validated\"\n  }\n",
            summary: "Reserved Tag",
            at: At::Line("golden-status = \"validated\""),
        },
        Case {
            what: "bad timeouts",
            body: "  timeouts {\n    create = \"1 hour\"\n  }\n",
            summary: "Invalid Duration",
            at: At::Line("create = \"1 hour\""),
        },
        Case {
            what: "url without checksum",
            body: "  source {\n    url = \"http://127.0.0.1:9/x.img\"\n  }\n",
            summary: "Missing Checksum",
            // The missing attribute has no line: the pointer names its block.
            at: At::Line("source {"),
        },
        Case {
            what: "two sources",
            body: "  source {\n    path   = \"/a\"\n    family = \"b\"\n  }\n",
            summary: "Invalid source Block",
            // The pointer names the second kind set.
            at: At::Line("family = \"b\""),
        },
        Case {
            what: "bad checksum",
            body: "  source {\n    url      = \"http://127.0.0.1:9/x\"\n    checksum = \"md5:abc\"\n  }\n",
            summary: "Invalid Checksum",
            at: At::Line("checksum = \"md5:abc\""),
        },
        Case {
            what: "source.path that does not exist",
            body: "  source {\n    path = \"/nonexistent/base.qcow2\"\n  }\n",
            summary: "Invalid source.path",
            at: At::Line("path = \"/nonexistent/base.qcow2\""),
        },
        Case {
            what: "digitalocean tag value with a space",
            body: "  platform = \"digitalocean\"\n  family   = \"bad-config\"\n  source {\n    slug = \"debian-12-x64\"\n  }\n  tags = {\n    team = \"platform infra\"\n  }\n",
            summary: "Tag Not Storable on DigitalOcean",
            at: At::Line("team = \"platform infra\""),
        },
        Case {
            what: "digitalocean tag value with a dot",
            body: "  platform = \"digitalocean\"\n  family   = \"bad-config\"\n  source {\n    slug = \"debian-12-x64\"\n  }\n  tags = {\n    os = \"debian-12.5\"\n  }\n",
            summary: "Tag Not Storable on DigitalOcean",
            at: At::Line("os = \"debian-12.5\""),
        },
        Case {
            what: "digitalocean provision.files over 64 KiB of user_data",
            body: "  platform = \"digitalocean\"\n  family   = \"bad-config\"\n  source {\n    slug = \"debian-12-x64\"\n  }\n  provision {\n    files = {\n      \"/etc/motd\" = \"hello\"\n      \"/opt/blob\" = format(\"%070000d\", 0)\n    }\n  }\n",
            summary: "Provisioning Too Big for DigitalOcean user_data",
            // The biggest part, the one to ship another way.
            at: At::Line("\"/opt/blob\" = format("),
        },
        Case {
            what: "no source",
            body: "",
            summary: "Missing source Block",
            at: At::Resource("the block is absent: there is no line of it to point at"),
        },
    ];
    let tf = TfDir::new();
    let store = tf.path().join("store");
    let disk = tf.path().join("base.raw");
    std::fs::write(&disk, vec![0u8; 64 * 1024]).unwrap();
    // Every case runs; the mismatches are reported together.
    let mut wrong = Vec::new();
    for case in cases {
        // Cases that set platform/family or source themselves get no defaults.
        let head = if case.body.contains("platform =") {
            ""
        } else {
            std_head
        };
        let source = if case.body.contains("source {") || case.what == "no source" {
            String::new()
        } else {
            source_block(&disk)
        };
        tf.write(
            &store,
            &format!(
                "resource \"golden_image\" \"x\" {{\n{head}{source}{}}}\n",
                case.body
            ),
        );
        let main = std::fs::read_to_string(tf.path().join("main.tf")).unwrap();
        let out = tf.fails(&["plan", "-no-color", "-input=false"]);
        let what = case.what;
        // The diagnostic with this summary, up to the next one.
        let Some(diag) = out
            .split("Error: ")
            .skip(1)
            .find(|d| d.starts_with(case.summary))
        else {
            wrong.push(format!(
                "case {what:?}: no diagnostic {:?}:\n{out}",
                case.summary
            ));
            continue;
        };
        let (needle, why) = match case.at {
            At::Line(needle) => (needle, None),
            At::Resource(why) => ("resource \"golden_image\" \"x\" {", Some(why)),
        };
        let (n, line) = line_of(&main, needle);
        let pointer = format!("on main.tf line {n}, in resource \"golden_image\" \"x\":");
        let quoted = format!("{n}: {line}");
        if !(diag.contains(&pointer) && diag.contains(&quoted)) {
            let at = match why {
                None => format!("line {n} ({line:?})"),
                Some(why) => format!("the resource header, line {n} ({why})"),
            };
            wrong.push(format!(
                "case {what:?}: the diagnostic must point at {at}:\n{out}"
            ));
        }
        if diag.matches("on main.tf line").count() != 1 {
            wrong.push(format!("case {what:?}: one pointer expected:\n{diag}"));
        }
        if out.contains("tf_provider::") {
            wrong.push(format!("case {what:?}: diagnostic carries a backtrace"));
        }
        // One mistake, one diagnostic: no second error caused by the first.
        let errors = out.matches("Error: ").count();
        if errors != 1 {
            wrong.push(format!(
                "case {what:?}: {errors} errors for one mistake:\n{out}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    assert!(
        !store.join("bad-config").exists(),
        "a failed plan must not touch the store"
    );
}

#[test]
fn bad_accelerator_fails_at_plan() {
    let tf = TfDir::new();
    let hcl = "terraform {\n  required_providers {\n    golden = { source = \"golden/golden\" }\n  }\n}\n\
               provider \"golden\" {\n  local { accelerator = \"hvf\" }\n}\n\
               data \"golden_images\" \"all\" {\n  platform = \"local\"\n  family = \"x\"\n}\n";
    std::fs::write(tf.path().join("main.tf"), hcl).unwrap();
    let out = tf.fails(&["plan", "-no-color", "-input=false"]);
    assert!(
        out.contains("Invalid accelerator") && out.contains("accelerator"),
        "{out}"
    );
}

#[test]
fn data_sources_on_an_empty_family() {
    let tf = TfDir::new();
    let store = tf.path().join("store");
    tf.write(&store, "data \"golden_images\" \"all\" {\n  platform = \"local\"\n  family = \"empty\"\n}\noutput \"names\" { value = data.golden_images.all.names }\n");
    let out = tf.ok(&["apply", "-auto-approve", "-no-color", "-input=false"]);
    assert!(
        out.contains("names = []") || out.contains("names = tolist([])"),
        "{out}"
    );
    tf.write(
        &store,
        "data \"golden_latest_image\" \"x\" {\n  platform = \"local\"\n  family = \"empty\"\n}\n",
    );
    let out = tf.fails(&["plan", "-no-color", "-input=false"]);
    assert!(
        out.contains("Image Not Found") && out.contains("no validated image"),
        "{out}"
    );
}

/// The DigitalOcean tag rule is a config rule, not a plan one: `terraform
/// validate` (no provider configuration, no API) already names the tag.
#[test]
fn digitalocean_tag_rule_fails_terraform_validate() {
    let tf = TfDir::new();
    let store = tf.path().join("store");
    tf.write(
        &store,
        "resource \"golden_image\" \"x\" {\n  platform = \"digitalocean\"\n  family   = \"bad-config\"\n  source {\n    slug = \"debian-12-x64\"\n  }\n  tags = {\n    Team = \"infra\"\n  }\n}\n",
    );
    let out = tf.fails(&["validate", "-no-color"]);
    // terraform wraps the detail: compare with the line breaks undone.
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        out.contains("Tag Not Storable on DigitalOcean")
            && out.contains("tags[\"Team\"]")
            && out.contains("the key has 'T'")
            && out.contains(": Team = \"infra\""),
        "{out}"
    );
}

/// GCE labels and image references are checked at `terraform validate`,
/// naming the attribute: nothing reaches the API that it would refuse.
#[test]
fn gcp_labels_and_image_references_fail_terraform_validate() {
    let tf = TfDir::new();
    let store = tf.path().join("store");
    tf.write(
        &store,
        "resource \"golden_image\" \"x\" {\n  platform = \"gcp\"\n  family   = \"bad-config\"\n  source {\n    image = \"debian-12\"\n  }\n  tags = {\n    team = \"Platform.Infra\"\n  }\n}\n",
    );
    let out = tf.fails(&["validate", "-no-color"]);
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        out.contains("Invalid source.image") && out.contains("projects/PROJECT/global/images"),
        "{out}"
    );
    assert!(
        out.contains("tags[\"team\"]")
            && out.contains("Google Compute Engine cannot store this tag exactly")
            && out.contains("'.'"),
        "{out}"
    );
}
