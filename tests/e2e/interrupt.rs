//! Ctrl-C during a build, sent the way a terminal sends it: SIGINT to
//! terraform's whole process group. Nothing may be left behind.

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use super::util::{assert_nothing_leaked, base_image, qemu_processes, store_images, TfDir};

#[test]
#[ignore = "boots a QEMU guest; run by make test"]
fn ctrl_c_during_build_leaves_nothing_behind() {
    let base = base_image();
    let tf = TfDir::new();
    let store = tf.path().join("store");
    tf.write(
        &store,
        &format!(
            "resource \"golden_image\" \"x\" {{\n  platform = \"local\"\n  family = \"interrupted\"\n  source {{ path = \"{}\" }}\n}}\n",
            base.display()
        ),
    );
    let mut cmd = tf.command(&["apply", "-auto-approve", "-no-color", "-input=false"]);
    cmd.process_group(0);
    let mut child = cmd.spawn().unwrap();
    let pgid = child.id() as i32;

    // Wait until the build VM is really running, then let it boot a little.
    let started = Instant::now();
    let needle = store.display().to_string();
    while qemu_processes(&needle).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the build VM never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "terraform exited before the build VM started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The run's ledger is where the leak check below looks: the check can fail.
    assert!(
        !tf.ledgers().is_empty(),
        "no cleanup ledger under {} while the build runs",
        tf.state_dir().display()
    );
    std::thread::sleep(Duration::from_secs(8));
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
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!status.success(), "an interrupted apply must fail");
    // The provider may finish its cleanup a moment after terraform exits.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        store_images(&store, "interrupted").is_empty(),
        "a candidate was left: {:?}",
        store_images(&store, "interrupted")
    );
    assert_nothing_leaked(&store, &tf);
}
