//! Every configuration under `examples/` is valid for this provider's schema
//! (`terraform validate` with the provider under test) and formatted. Applying
//! them is what `make demo` and the lifecycle test do for the local quick start.

use std::path::{Path, PathBuf};

use super::util::TfDir;

fn example_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut has_tf = false;
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.') {
                stack.push(p);
            } else if p.extension().and_then(|x| x.to_str()) == Some("tf") {
                has_tf = true;
            }
        }
        if has_tf {
            dirs.push(d);
        }
    }
    dirs.sort();
    dirs
}

#[test]
fn every_example_validates_and_is_formatted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let dirs = example_dirs(&root);
    assert!(
        dirs.len() >= 5,
        "expected the registry-layout examples, found {dirs:?}"
    );
    for dir in dirs {
        let tf = TfDir::new();
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.path().extension().and_then(|x| x.to_str()) == Some("tf") {
                std::fs::copy(e.path(), tf.path().join(e.file_name())).unwrap();
            }
        }
        // Registry-layout snippets (resources/, data-sources/) are fragments:
        // they validate together with the provider example.
        let complete = std::fs::read_dir(tf.path()).unwrap().flatten().any(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .contains("required_providers")
        });
        if !complete {
            std::fs::copy(
                root.join("provider/provider.tf"),
                tf.path().join("provider.tf"),
            )
            .unwrap();
        }
        let out = tf.run(&["validate", "-no-color"]);
        assert!(out.status.success(), "{} does not validate", dir.display());
        let fmt = tf.run(&["fmt", "-check", "-diff", "-no-color"]);
        assert!(
            fmt.status.success(),
            "{} is not terraform fmt formatted",
            dir.display()
        );
    }
}
