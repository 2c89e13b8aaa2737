//! `golden-sim digitalocean ...`: the options, the ready line on stdout
//! (endpoint, token, ssh port, admin URL; written by hand to keep the
//! contract's key order) and the run until SIGINT, SIGTERM or the end of
//! stdin.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::state::{Backend, Options};
use crate::core::openapi::OpenApi;
use crate::core::util;

pub const USAGE: &str = "usage: golden-sim digitalocean [--listen 127.0.0.1:0] [--spec PATH] \
[--backend instant|qemu] [--image SLUG=PATH]... [--ssh-port 2222] [--token dop_v1_...] [--action-ms 300] [--state DIR] \
[--public-url https://api.digitalocean.com] [--tls] [--exit-on-stdin-eof]\n       golden-sim digitalocean-relay ADMIN_URL DROPLET_ID (sshd's ForceCommand)";

/// The description beside the repository (`../shared/specs/digitalocean`),
/// as the proxmox sim finds its schema: from the working directory or the
/// binary's checkout.
const DEFAULT_SPEC: &str = "../shared/specs/digitalocean/specification/DigitalOcean-public.v2.yaml";

pub struct Cli {
    listen: SocketAddr,
    spec: Option<PathBuf>,
    exit_on_stdin_eof: bool,
    tls: bool,
    temp_state: bool,
    opts: Options,
}

pub fn main(args: &[String]) -> Result<()> {
    parse(args).and_then(run)
}

/// A token shaped like DO's personal access tokens: `dop_v1_` + 64 hex.
fn new_token() -> String {
    let hex: String = (0..2)
        .map(|_| util::random_secret().replace('-', ""))
        .collect();
    format!("dop_v1_{hex}")
}

pub fn parse(args: &[String]) -> Result<Cli> {
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut spec = None;
    let mut exit_on_stdin_eof = false;
    let mut tls = false;
    let mut backend = Backend::Instant;
    let mut ssh_port = 2222u16;
    let mut token = None;
    let mut action_ms = 300;
    let mut state_dir: Option<PathBuf> = None;
    let mut images: Vec<(String, PathBuf)> = Vec::new();
    let mut public_url: Option<String> = None;
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
        if flag == "--tls" {
            tls = true;
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
            "--backend" => {
                backend = match value()?.as_str() {
                    "instant" => Backend::Instant,
                    "qemu" => Backend::Qemu,
                    other => bail!("--backend {other}: use instant or qemu"),
                }
            }
            "--ssh-port" => ssh_port = value()?.parse().context("--ssh-port wants a port")?,
            "--token" => token = Some(value()?),
            "--action-ms" => {
                action_ms = value()?.parse().context("--action-ms wants milliseconds")?
            }
            "--state" | "--state-dir" => state_dir = Some(PathBuf::from(value()?)),
            "--image" => images.push(image_arg(&value()?)?),
            "--public-url" => public_url = Some(public_url_arg(&value()?)?),
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    let token = token.unwrap_or_else(new_token);
    if token.trim().is_empty() || token.contains(char::is_whitespace) {
        bail!("--token must be one word");
    }
    if backend == Backend::Qemu && images.is_empty() {
        bail!("--backend qemu needs a disk file for an image: --image SLUG=PATH (e.g. debian-12-x64=~/.cache/golden/base/debian-12.qcow2)");
    }
    let temp_state = state_dir.is_none();
    let state_dir = state_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "golden-sim-do-{}-{}",
            std::process::id(),
            &util::random_secret()[..8]
        ))
    });
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating the state dir {}", state_dir.display()))?;
    let state_dir = state_dir.canonicalize().unwrap_or(state_dir);
    let spec = spec.or_else(default_spec);
    Ok(Cli {
        listen,
        spec,
        exit_on_stdin_eof,
        tls,
        temp_state,
        opts: Options {
            token,
            backend,
            ssh_port,
            action_ms,
            state_dir,
            images,
            public_url,
        },
    })
}

/// `--public-url`: an origin (scheme, host, port), without a path.
fn public_url_arg(v: &str) -> Result<String> {
    let t = v.trim().trim_end_matches('/');
    let ok = (t.starts_with("https://") || t.starts_with("http://"))
        && !t
            .split_once("://")
            .is_some_and(|(_, rest)| rest.is_empty() || rest.contains(['/', '?', '#']));
    if !ok {
        bail!("--public-url {v}: want an origin such as https://api.digitalocean.com");
    }
    Ok(t.to_owned())
}

/// `--image SLUG=PATH`: a public image backed by a qcow2 or raw file, which
/// the simulator only reads (droplets overlay it).
fn image_arg(v: &str) -> Result<(String, PathBuf)> {
    let (slug, path) = v
        .split_once('=')
        .with_context(|| format!("--image {v}: want SLUG=PATH"))?;
    let valid = !slug.is_empty()
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !valid {
        bail!("--image {v}: a slug is lower case letters, digits, '-' and '.'");
    }
    let path = match path.strip_prefix("~/") {
        Some(rest) => PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(rest),
        None => PathBuf::from(path),
    };
    if !path.is_file() {
        bail!("--image {v}: {} is not a file", path.display());
    }
    let path = path.canonicalize().unwrap_or(path);
    Ok((slug.to_owned(), path))
}

/// The default description: relative to the working directory, else to the
/// checkout the binary was built in (`target/.../golden-sim` -> repo).
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
            let api = OpenApi::load(p)
                .with_context(|| format!("loading the DigitalOcean description {}", p.display()))?;
            eprintln!(
                "golden-sim: checking against {} ({} files, {} paths)",
                p.display(),
                api.file_count(),
                api.path_count()
            );
            Some(api)
        }
        None => {
            eprintln!("golden-sim: WARNING: no DigitalOcean description found (--spec): requests and answers are NOT checked");
            None
        }
    };
    let opts = cli.opts.clone();
    let started = super::start(cli.opts, spec, cli.listen, cli.tls).await?;
    let endpoint = started.endpoint.clone();
    // The contract's keys in its order; `ca_cert` after them, with --tls.
    let mut line = format!(
        "{{\"endpoint\":{},\"token\":{},\"ssh_port\":{},\"admin\":{}",
        json!(endpoint),
        json!(opts.token),
        opts.ssh_port,
        json!(format!("{endpoint}/_sim")),
    );
    if let Some(ca) = &started.ca_cert {
        line += &format!(",\"ca_cert\":{}", json!(ca.display().to_string()));
    }
    line.push('}');
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    eprintln!(
        "golden-sim: DigitalOcean simulator on {endpoint} (backend {:?}, ssh port {}, state {})\n\
         \x20 export DIGITALOCEAN_API_URL={endpoint}\n\
         \x20 export DIGITALOCEAN_TOKEN={}\n\
         \x20 droplets get public IPv4 127.0.0.N; ssh root@127.0.0.N -p {} with a key given at create\n\
         \x20 admin API (no auth): {endpoint}/_sim/{{violations,requests,faults,droplets,keys,images,tags,ratelimit,behaviour}}\n\
         \x20 Ctrl-C stops.",
        opts.backend,
        opts.ssh_port,
        opts.state_dir.display(),
        opts.token,
        opts.ssh_port,
    );
    util::wait_for_exit(term, int, cli.exit_on_stdin_eof).await;
    eprintln!("golden-sim: stopping");
    super::stop_all(&started.shared).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn qemu_backend_wants_image_files() {
        let dir = std::env::temp_dir().join(format!(
            "golden-sim-cli-test-{}-{}",
            std::process::id(),
            &util::random_secret()[..8]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.join("state");
        let state = state.to_str().unwrap();
        let err = parse(&args(&["--backend", "qemu", "--state", state]))
            .err()
            .unwrap();
        assert!(format!("{err}").contains("--image SLUG=PATH"), "{err}");
        let img = dir.join("disk.qcow2");
        std::fs::write(&img, b"").unwrap();
        let spec = format!("debian-12-x64={}", img.display());
        let cli = parse(&args(&[
            "--backend",
            "qemu",
            "--image",
            &spec,
            "--state",
            state,
        ]))
        .unwrap();
        assert_eq!(cli.opts.backend, Backend::Qemu);
        assert_eq!(cli.opts.images[0].0, "debian-12-x64");
        assert_eq!(cli.opts.images[0].1, img.canonicalize().unwrap());
        for bad in ["Debian=x", "debian", &format!("ok={}/nope", dir.display())] {
            assert!(
                parse(&args(&["--image", bad, "--state", state])).is_err(),
                "{bad}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn public_url_is_an_origin() {
        assert_eq!(
            public_url_arg("https://api.digitalocean.com/").unwrap(),
            "https://api.digitalocean.com"
        );
        assert!(public_url_arg("http://127.0.0.1:9").is_ok());
        for bad in [
            "api.digitalocean.com",
            "https://",
            "https://x/v2",
            "ftp://x",
        ] {
            assert!(public_url_arg(bad).is_err(), "{bad}");
        }
    }
}
