//! `golden-sim proxmox ...`: the options, the ready line on stdout (endpoint,
//! token, admin URL; written by hand to keep the documented key order) and
//! the run until SIGINT, SIGTERM or the end of stdin.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::schema::Schema;
use super::state::{Backend, Options, StorageSpec};
use crate::core::spec::SpecChecker;
use crate::core::util;

/// `golden-sim proxmox ARGS...`.
pub fn main(args: &[String]) -> Result<()> {
    parse(args).and_then(run)
}

pub const USAGE: &str = "usage: golden-sim proxmox [--listen 127.0.0.1:0] [--schema PATH] \
[--backend instant|qemu] [--base-image PATH] [--state-dir DIR] [--node pve] \
[--storage local-lvm] [--add-storage ID=TYPE[:CONTENT]]... [--token 'root@pam!golden=SECRET'] [--task-ms 200] \
[--agent-ready-ms 300] [--extra-vms N] [--stats-lag-ms 3000] [--exit-on-stdin-eof]";

pub struct Cli {
    listen: SocketAddr,
    schema: Option<PathBuf>,
    exit_on_stdin_eof: bool,
    /// The state dir is ours to delete when we made it.
    temp_state: bool,
    opts: Options,
}

pub fn parse(args: &[String]) -> Result<Cli> {
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut schema = None;
    let mut exit_on_stdin_eof = false;
    let mut backend = Backend::Instant;
    let mut base_image = None;
    let mut state_dir: Option<PathBuf> = None;
    let mut node = "pve".to_owned();
    let mut storage = "local-lvm".to_owned();
    let mut token = None;
    let mut task_ms = 200;
    let mut agent_ready_ms = 300;
    let mut extra_vms = 0;
    let mut stats_lag_ms = 3000;
    let mut extra_storages: Vec<StorageSpec> = Vec::new();
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
            "--schema" => schema = Some(PathBuf::from(value()?)),
            "--backend" => {
                backend = match value()?.as_str() {
                    "instant" => Backend::Instant,
                    "qemu" => Backend::Qemu,
                    other => bail!("--backend {other}: use instant or qemu"),
                }
            }
            "--base-image" => base_image = Some(PathBuf::from(value()?)),
            "--state-dir" => state_dir = Some(PathBuf::from(value()?)),
            "--node" => node = value()?,
            "--storage" => storage = value()?,
            "--add-storage" => extra_storages.push(value()?.parse().map_err(anyhow::Error::msg)?),
            "--token" => token = Some(value()?),
            "--task-ms" => task_ms = value()?.parse().context("--task-ms wants milliseconds")?,
            "--agent-ready-ms" => {
                agent_ready_ms = value()?
                    .parse()
                    .context("--agent-ready-ms wants milliseconds")?
            }
            "--extra-vms" => extra_vms = value()?.parse().context("--extra-vms wants a number")?,
            "--stats-lag-ms" => {
                stats_lag_ms = value()?
                    .parse()
                    .context("--stats-lag-ms wants milliseconds")?
            }
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    check_images_storage(&storage, &extra_storages)?;
    let token = token.unwrap_or_else(|| format!("root@pam!golden={}", util::random_secret()));
    let valid = token
        .split_once('=')
        .is_some_and(|(id, secret)| !secret.is_empty() && id.contains('@') && id.contains('!'));
    if !valid {
        bail!("--token must look like user@realm!tokenid=secret");
    }
    if let Some(img) = &base_image {
        if !img.is_file() {
            bail!("--base-image {} does not exist", img.display());
        }
    }
    let temp_state = state_dir.is_none();
    let state_dir = match state_dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "golden-sim-{}-{}",
            std::process::id(),
            &util::random_secret()[..8]
        )),
    };
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating the state dir {}", state_dir.display()))?;
    let state_dir = state_dir.canonicalize().unwrap_or(state_dir);
    let base_image = base_image.map(|p| p.canonicalize().unwrap_or(p));
    Ok(Cli {
        listen,
        schema,
        exit_on_stdin_eof,
        temp_state,
        opts: Options {
            node,
            storage,
            token,
            task_ms,
            agent_ready_ms,
            backend,
            base_image,
            state_dir,
            extra_vms,
            stats_lag_ms,
            extra_storages,
        },
    })
}

/// Template 9000's disk lives on `--storage`, which must hold `images`:
/// `local` (dir, `iso,vztmpl,import,backup`) only when `--add-storage`
/// redefines it with images.
fn check_images_storage(storage: &str, extra: &[StorageSpec]) -> Result<()> {
    let holds_images = match extra.iter().rev().find(|s| s.id == storage) {
        Some(spec) => spec
            .content
            .as_deref()
            .is_none_or(|c| c.split(',').any(|x| x == "images")),
        None => storage != "local",
    };
    if !holds_images {
        bail!(
            "--storage {storage}: that storage holds no VM images (content 'images'); \
             add it with --add-storage {storage}=TYPE:images,..."
        );
    }
    Ok(())
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
    // Before the ready line: a test may stop us as soon as it has read it.
    let term = signal(SignalKind::terminate())?;
    let int = signal(SignalKind::interrupt())?;
    let schema: Option<Box<dyn SpecChecker>> = match &cli.schema {
        Some(p) => Some(Box::new(Schema::load(p)?)),
        None => {
            eprintln!(
                "golden-sim: WARNING: no --schema given: requests and responses are NOT checked against the PVE API schema"
            );
            None
        }
    };
    if cli.opts.backend == Backend::Qemu && cli.opts.base_image.is_none() {
        eprintln!("golden-sim: WARNING: --backend qemu without --base-image: template 9000 has no disk to boot");
    }
    let opts = cli.opts.clone();
    let started = super::start(cli.opts, schema, cli.listen).await?;
    let endpoint = started.endpoint.clone();
    // Written by hand to keep the documented key order.
    let line = format!(
        "{{\"endpoint\":{},\"api_token\":{},\"node\":{},\"storage\":{},\"admin\":{}}}",
        json!(endpoint),
        json!(opts.token),
        json!(opts.node),
        json!(opts.storage),
        json!(format!("{endpoint}/_sim")),
    );
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    eprintln!(
        "golden-sim: Proxmox VE simulator on {endpoint} (node {}, storage {}, backend {:?}, state {})\n\
         \x20 export PROXMOX_VE_ENDPOINT={endpoint}\n\
         \x20 export PROXMOX_VE_API_TOKEN='{}'\n\
         \x20 export PROXMOX_VE_INSECURE=true\n\
         \x20 admin API (no auth): {endpoint}/_sim/{{violations,requests,vms,faults,clone}}\n\
         \x20 source template: vmid 9000 'debian-12-base'. Ctrl-C stops.",
        opts.node,
        opts.storage,
        opts.backend,
        opts.state_dir.display(),
        opts.token,
    );
    util::wait_for_exit(term, int, cli.exit_on_stdin_eof).await;
    eprintln!("golden-sim: stopping");
    super::stop_guests(&started.shared).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn add_storage_defines_storages_by_type() {
        let cli = parse(&args(&[
            "--storage",
            "vmstore",
            "--add-storage",
            "vmstore=dir",
            "--add-storage=ceph=rbd:images",
            "--state-dir",
            std::env::temp_dir()
                .join("golden-sim-cli-unit")
                .to_str()
                .unwrap(),
        ]))
        .unwrap();
        let ids: Vec<(&str, &str)> = cli
            .opts
            .extra_storages
            .iter()
            .map(|s| (s.id.as_str(), s.kind.type_name()))
            .collect();
        assert_eq!(ids, [("vmstore", "dir"), ("ceph", "rbd")]);
        let err = parse(&args(&["--add-storage", "x=nfs"])).err().unwrap();
        assert!(err.to_string().contains("'nfs' is not simulated"), "{err}");
        let err = parse(&args(&["--storage", "local"])).err().unwrap();
        assert!(err.to_string().contains("holds no VM images"), "{err}");
        let err = parse(&args(&[
            "--storage",
            "local",
            "--add-storage",
            "local=dir:iso",
        ]))
        .err()
        .unwrap();
        assert!(err.to_string().contains("holds no VM images"), "{err}");
    }
}
