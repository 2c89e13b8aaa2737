//! `golden-sim gcp ...`: the options, the ready line on stdout (endpoint,
//! project, zone, credentials, admin; written by hand to keep this key
//! order) and the run until SIGINT, SIGTERM or the end of stdin.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::state::{Backend, Options};
use crate::core::discovery::Discovery;
use crate::core::util;

pub const USAGE: &str = "usage: golden-sim gcp [--listen 127.0.0.1:0] [--spec PATH] \
[--project golden-sim] [--zone us-central1-a] [--op-ms 1000] [--state DIR] \
[--backend instant|qemu] [--image NAME=PATH]... [--exit-on-stdin-eof]";

/// Compute Engine's discovery document beside the repository.
const DEFAULT_SPEC: &str = "../shared/specs/gcp/compute.v1.json";

pub struct Cli {
    listen: SocketAddr,
    spec: Option<PathBuf>,
    exit_on_stdin_eof: bool,
    temp_state: bool,
    opts: Options,
}

pub fn main(args: &[String]) -> Result<()> {
    parse(args).and_then(run)
}

pub fn parse(args: &[String]) -> Result<Cli> {
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut spec = None;
    let mut exit_on_stdin_eof = false;
    let mut project = "golden-sim".to_owned();
    let mut zone = "us-central1-a".to_owned();
    let mut op_ms = 1000;
    let mut state_dir: Option<PathBuf> = None;
    let mut backend = Backend::Instant;
    let mut image_files = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        if flag == "--exit-on-stdin-eof" {
            exit_on_stdin_eof = true;
            continue;
        }
        let mut value = || -> Result<String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag {
            "--listen" => listen = value()?.parse().context("--listen wants HOST:PORT")?,
            "--spec" => spec = Some(PathBuf::from(value()?)),
            "--project" => project = value()?,
            "--zone" => zone = value()?,
            "--op-ms" => op_ms = value()?.parse().context("--op-ms wants milliseconds")?,
            "--state" | "--state-dir" => state_dir = Some(PathBuf::from(value()?)),
            "--backend" => {
                backend = match value()?.as_str() {
                    "instant" => Backend::Instant,
                    "qemu" => Backend::Qemu,
                    other => bail!("--backend {other}: use instant or qemu"),
                }
            }
            "--image" => image_files.push(image_arg(&value()?)?),
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    // Project ids: 6-30 characters, lower case letters, digits, hyphens,
    // starting with a letter (Resource Manager's rule).
    let project_ok = (6..=30).contains(&project.len())
        && project.starts_with(|c: char| c.is_ascii_lowercase())
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !project_ok {
        bail!("--project {project}: 6 to 30 lower case letters, digits or hyphens, starting with a letter");
    }
    if backend == Backend::Qemu && image_files.is_empty() {
        bail!("--backend qemu needs a disk file for a public image: --image NAME=PATH (e.g. debian-cloud/family/debian-12=~/.cache/golden/base/debian-12.qcow2)");
    }
    if zone.matches('-').count() != 2 {
        bail!("--zone {zone}: a zone is REGION-LETTER, e.g. us-central1-a");
    }
    let temp_state = state_dir.is_none();
    let state_dir = state_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "golden-sim-gcp-{}-{}",
            std::process::id(),
            &util::random_secret()[..8]
        ))
    });
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating the state dir {}", state_dir.display()))?;
    let state_dir = state_dir.canonicalize().unwrap_or(state_dir);
    Ok(Cli {
        listen,
        spec: spec.or_else(default_spec),
        exit_on_stdin_eof,
        temp_state,
        opts: Options {
            project,
            zone,
            op_ms,
            state_dir,
            backend,
            image_files,
        },
    })
}

/// `--image NAME=PATH`: a public image backed by a qcow2 or raw file (the
/// name is checked against the seeded images at start).
fn image_arg(v: &str) -> Result<(String, PathBuf)> {
    let (name, path) = v
        .split_once('=')
        .with_context(|| format!("--image {v}: want NAME=PATH"))?;
    let path = PathBuf::from(path);
    if name.is_empty() || !path.is_file() {
        bail!("--image {v}: want NAME=PATH with PATH a disk file");
    }
    let path = path.canonicalize().unwrap_or(path);
    Ok((name.to_owned(), path))
}

fn default_spec() -> Option<PathBuf> {
    let here = Path::new(DEFAULT_SPEC).to_path_buf();
    if here.is_file() {
        return Some(here);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(DEFAULT_SPEC);
    repo.is_file().then_some(repo)
}

pub fn run(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let temp_state = cli.temp_state.then(|| cli.opts.state_dir.clone());
    let result = rt.block_on(serve(cli));
    if let Some(dir) = temp_state {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

async fn serve(cli: Cli) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate())?;
    let int = signal(SignalKind::interrupt())?;
    let spec = match &cli.spec {
        Some(p) => {
            let d = Discovery::load(p).with_context(|| {
                format!("loading the Compute discovery document {}", p.display())
            })?;
            eprintln!(
                "golden-sim: checking against {} ({} methods, {} paths, {} schemas)",
                p.display(),
                d.method_count(),
                d.path_count(),
                d.schema_count()
            );
            Some(d)
        }
        None => {
            eprintln!("golden-sim: WARNING: no Compute discovery document found (--spec): requests and answers are NOT checked");
            None
        }
    };
    let opts = cli.opts.clone();
    let started = super::start(cli.opts, spec, cli.listen).await?;
    let endpoint = started.endpoint.clone();
    let line = format!(
        "{{\"endpoint\":{},\"project\":{},\"zone\":{},\"credentials\":{},\"admin\":{}}}",
        json!(endpoint),
        json!(opts.project),
        json!(opts.zone),
        json!(started.credentials.display().to_string()),
        json!(format!("{endpoint}/_sim")),
    );
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    eprintln!(
        "golden-sim: Compute Engine simulator on {endpoint} (project {}, zone {}, operations {} ms, backend {:?})\n\
         \x20 export GOOGLE_APPLICATION_CREDENTIALS={}\n\
         \x20 export CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE={endpoint}/compute/v1/\n\
         \x20 admin API (no auth): {endpoint}/_sim/{{violations,requests,faults,instances,images,disks,operations,behaviour}}\n\
         \x20 Ctrl-C stops.",
        opts.project,
        opts.zone,
        opts.op_ms,
        opts.backend,
        started.credentials.display(),
    );
    util::wait_for_exit(term, int, cli.exit_on_stdin_eof).await;
    eprintln!("golden-sim: stopping");
    super::qemu::stop_all(&started.shared).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcp::state::Project;
    use std::sync::Arc;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn qemu_backend_wants_image_files_that_name_public_images() {
        let dir = std::env::temp_dir().join(format!(
            "golden-sim-gcp-cli-{}-{}",
            std::process::id(),
            &util::random_secret()[..8]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.to_str().unwrap();
        let err = parse(&args(&["--backend", "qemu", "--state", state]))
            .err()
            .unwrap();
        assert!(format!("{err}").contains("--image NAME=PATH"), "{err}");
        let file = dir.join("base.qcow2");
        std::fs::write(&file, b"x").unwrap();
        let image = |name: &str| format!("{name}={}", file.display());
        assert!(parse(&args(&[
            "--image",
            "debian-12=/nonexistent",
            "--state",
            state
        ]))
        .is_err());
        let names = [
            "projects/debian-cloud/global/images/family/debian-12",
            "https://www.googleapis.com/compute/v1/projects/debian-cloud/global/images/debian-12-bookworm-v20250113",
            "debian-cloud/family/debian-12",
            "debian-cloud/debian-12-bookworm-v20250113",
            "debian-12",
        ];
        for name in names {
            let cli = parse(&args(&[
                "--backend",
                "qemu",
                "--image",
                &image(name),
                "--state",
                state,
            ]))
            .unwrap();
            assert_eq!(cli.opts.backend, Backend::Qemu);
            let account =
                Arc::new(crate::gcp::auth::ServiceAccount::generate("golden-sim", &dir).unwrap());
            let mut p = Project::new(Arc::new(cli.opts.clone()), account);
            let (n, f) = &cli.opts.image_files[0];
            p.back_image(n, f).unwrap();
            let backed: Vec<_> = p
                .images
                .values()
                .filter(|i| i.file.is_some())
                .map(|i| i.name.clone())
                .collect();
            assert_eq!(backed, ["debian-12-bookworm-v20250113"], "{name}");
            let err = p
                .back_image("debian-cloud/family/debian-11", f)
                .unwrap_err();
            assert!(err.contains("debian-cloud/family/debian-12"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
