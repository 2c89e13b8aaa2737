//! The plugin protocol's transport (ADR 006): terraform reaches the provider
//! over a unix socket, many parallel reads work through it, and the socket is
//! gone after every exit, including a SIGTERM. A binary started by hand says
//! what it is instead of serving.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::util::TfDir;

const MAGIC_COOKIE: (&str, &str) = (
    "TF_PLUGIN_MAGIC_COOKIE",
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2",
);

fn provider_bin() -> &'static str {
    env!("CARGO_BIN_EXE_terraform-provider-golden")
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn started_by_hand_the_binary_says_it_is_a_plugin_and_exits_1() {
    let out = Command::new(provider_bin())
        .env_remove(MAGIC_COOKIE.0)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no handshake line expected");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("This binary is a plugin. These are not meant to be executed directly."),
        "stderr: {err}"
    );
}

#[test]
fn handshake_names_a_private_unix_socket_that_sigterm_removes() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(provider_bin())
        .env(MAGIC_COOKIE.0, MAGIC_COOKIE.1)
        .env("TMPDIR", tmp.path())
        .env_remove("PLUGIN_UNIX_SOCKET_DIR")
        .env_remove("PLUGIN_CLIENT_CERT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let fields: Vec<&str> = line.trim_end().split('|').collect();
    assert_eq!(&fields[..3], &["1", "6", "unix"], "handshake: {line}");
    assert_eq!(fields[4], "grpc", "handshake: {line}");
    let socket = Path::new(fields[3]);
    assert!(
        socket.starts_with(tmp.path()),
        "socket outside TMPDIR: {line}"
    );
    let meta = std::fs::metadata(socket).unwrap();
    assert!(meta.file_type().is_socket());
    let dir_mode = std::fs::metadata(socket.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        dir_mode & 0o077,
        0,
        "socket dir is open to others: {dir_mode:o}"
    );

    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "provider did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "a SIGTERM exit is a failure exit");
    assert!(
        entries(tmp.path()).is_empty(),
        "left in TMPDIR: {:?}",
        entries(tmp.path())
    );
}

/// 40 data sources read with parallelism 20, over a family of 50 images: all
/// through the unix socket (terraform's own log says so), all answered, and
/// no socket left in the provider's TMPDIR after the three plugin starts.
#[test]
fn many_parallel_reads_through_the_socket_leave_nothing() {
    let tf = TfDir::new();
    let store = tf.path().join("store");
    seed_family(&store, "many", 50);
    let mut body = String::new();
    for i in 0..20 {
        body.push_str(&format!(
            "data \"golden_latest_image\" \"l{i}\" {{\n  platform = \"local\"\n  family = \"many\"\n}}\n\
             data \"golden_images\" \"a{i}\" {{\n  platform = \"local\"\n  family = \"many\"\n}}\n"
        ));
    }
    body.push_str("output \"latest\" { value = distinct([");
    body.push_str(
        &(0..20)
            .map(|i| format!("data.golden_latest_image.l{i}.name"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    body.push_str("]) }\noutput \"counts\" { value = distinct([");
    body.push_str(
        &(0..20)
            .map(|i| format!("length(data.golden_images.a{i}.images)"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    body.push_str("]) }\n");
    tf.write(&store, &body);

    let out = tf
        .command(&[
            "apply",
            "-auto-approve",
            "-no-color",
            "-input=false",
            "-parallelism=20",
        ])
        .env("TF_LOG", "debug")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // One line per plugin start (terraform starts it three times per apply).
    let listening: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("plugin server listening"))
        .collect();
    assert!(
        listening.len() >= 2,
        "no listening lines in the provider's log"
    );
    // go-plugin passes the JSON line through or re-renders it as
    // `address=unix|...`, depending on how it parsed it.
    for l in &listening {
        assert!(
            l.contains("unix|") && !l.contains("tcp|"),
            "not a unix socket: {l}"
        );
    }

    let outputs: serde_json::Value = serde_json::from_str(&tf.ok(&["output", "-json"])).unwrap();
    assert_eq!(
        outputs["latest"]["value"],
        serde_json::json!(["many-20260128-010"])
    );
    assert_eq!(outputs["counts"]["value"], serde_json::json!([50]));
    let left: Vec<_> = entries(&tf.tmp())
        .into_iter()
        .filter(|n| n.starts_with("plugin"))
        .collect();
    assert!(left.is_empty(), "plugin sockets left: {left:?}");
}

/// `count` validated images in `<store>/<family>/`, as sidecars over empty
/// image files: lookups read metadata only.
fn seed_family(store: &Path, family: &str, count: usize) {
    let dir = store.join(family);
    std::fs::create_dir_all(&dir).unwrap();
    for n in 0..count {
        let (day, build) = (n / 10 + 1, n % 10 + 1);
        let date = format!("202601{:02}", day + 23);
        let name = format!("{family}-{date}-{build:03}");
        let sidecar = serde_json::json!({"metadata": {
            "golden-family": family,
            "golden-build-date": date,
            "golden-build-number": format!("{build:03}"),
            "golden-builder-version": "0.1.0",
            "golden-recipe-hash": "0123456789abcdef",
            "golden-status": "validated",
            "golden-validated-at": "2026-01-28T00:00:00Z",
        }});
        std::fs::write(dir.join(format!("{name}.json")), sidecar.to_string()).unwrap();
        std::fs::write(dir.join(format!("{name}.qcow2")), b"").unwrap();
    }
}
