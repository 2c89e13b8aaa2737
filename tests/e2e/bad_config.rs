//! Bad configs fail at `terraform plan` with a diagnostic that names the
//! attribute. No guest boots here, and nothing is written to the store.

use super::util::TfDir;

struct Case {
    what: &'static str,
    body: &'static str,
    /// Text the diagnostic must contain: the summary and the attribute line.
    expect: &'static [&'static str],
}

const SOURCE: &str = "source { path = \"/nonexistent/base.qcow2\" }";

fn resource(extra: &str, source: &str) -> String {
    format!("resource \"golden_image\" \"x\" {{\n  platform = \"local\"\n  family = \"bad-config\"\n  {source}\n  {extra}\n}}\n")
}

#[test]
fn bad_configs_fail_at_plan_naming_the_attribute() {
    let cases = [
        Case { what: "uppercase family", body: "family_override = \"Debian\"", expect: &["Invalid Family Name", "family"] },
        Case { what: "keep < 1", body: "retention { keep = 0 }", expect: &["Invalid retention.keep", "keep = 0"] },
        Case { what: "unknown platform", body: "platform_override = \"vmware\"", expect: &["Unsupported Platform", "platform"] },
        Case { what: "unparseable rebuild_after", body: "rebuild_after = \"monthly\"", expect: &["Invalid Duration", "rebuild_after"] },
        Case { what: "unknown check", body: "smoke_test { checks = [\"ping\"] }", expect: &["Unknown Smoke-Test Check", "checks"] },
        Case { what: "bad smoke timeout", body: "smoke_test { timeout = \"ten\" }", expect: &["Invalid Duration", "timeout"] },
        Case { what: "smoke test that checks nothing", body: "smoke_test { checks = [] }", expect: &["Empty Smoke Test", "smoke_test"] },
        Case { what: "bad on_destroy", body: "on_destroy = \"purge\"", expect: &["Invalid on_destroy", "on_destroy"] },
        Case { what: "reserved tag", body: "tags = { golden-status = \"validated\" }", expect: &["Reserved Tag", "tags"] },
        Case { what: "bad timeouts", body: "timeouts { create = \"1 hour\" }", expect: &["Invalid Duration", "create"] },
        Case { what: "url without checksum", body: "source_override = \"source { url = \\\"http://127.0.0.1:9/x.img\\\" }\"", expect: &["Missing Checksum", "source"] },
        Case { what: "two sources", body: "source_override = \"source {\\n path = \\\"/a\\\"\\n family = \\\"b\\\"\\n }\"", expect: &["Invalid source Block", "source"] },
        Case { what: "bad checksum", body: "source_override = \"source {\\n url = \\\"http://127.0.0.1:9/x\\\"\\n checksum = \\\"md5:abc\\\"\\n }\"", expect: &["Invalid Checksum", "checksum"] },
        Case { what: "no source", body: "source_override = \"\"", expect: &["Missing source Block"] },
    ];
    let tf = TfDir::new();
    let store = tf.path().join("store");
    for case in cases {
        let (mut extra, mut source, mut family, mut platform) = (
            case.body.to_owned(),
            SOURCE.to_owned(),
            "bad-config",
            "local",
        );
        if let Some(v) = case.body.strip_prefix("family_override = ") {
            family = v.trim_matches('"');
            extra.clear();
        }
        if let Some(v) = case.body.strip_prefix("platform_override = ") {
            platform = v.trim_matches('"');
            extra.clear();
        }
        if let Some(v) = case.body.strip_prefix("source_override = ") {
            source = v
                .trim_matches('"')
                .replace("\\n", "\n")
                .replace("\\\"", "\"");
            extra.clear();
        }
        let body = resource(&extra, &source)
            .replace("\"bad-config\"", &format!("\"{family}\""))
            .replace(
                "platform = \"local\"",
                &format!("platform = \"{platform}\""),
            );
        tf.write(&store, &body);
        let out = tf.fails(&["plan", "-no-color", "-input=false"]);
        for want in case.expect {
            assert!(
                out.contains(want),
                "case {:?}: diagnostic lacks {want:?}:\n{out}",
                case.what
            );
        }
        assert!(
            !out.contains("tf_provider::"),
            "case {:?}: diagnostic carries a backtrace",
            case.what
        );
    }
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
