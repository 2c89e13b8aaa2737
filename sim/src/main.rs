//! golden-sim: simulators of the platform APIs golden talks to, for tests and
//! for trying golden without an account. `golden-sim proxmox` serves the
//! Proxmox VE API (see docs/guides/proxmox-simulator.md).
//!
//! When ready it prints one JSON line to stdout (endpoint, token, admin URL)
//! so a test can start it and read where it listens; everything else goes to
//! stderr.

mod proxmox;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::json;

use proxmox::schema::Schema;
use proxmox::state::{Backend, Options};

const USAGE: &str = "usage: golden-sim proxmox [--listen 127.0.0.1:0] [--schema PATH] \
[--backend instant|qemu] [--base-image PATH] [--state-dir DIR] [--node pve] \
[--storage local-lvm] [--token 'root@pam!golden=SECRET'] [--task-ms 200] \
[--agent-ready-ms 300] [--extra-vms N] [--exit-on-stdin-eof]";

struct Cli {
    listen: SocketAddr,
    schema: Option<PathBuf>,
    exit_on_stdin_eof: bool,
    /// The state dir is ours to delete when we made it.
    temp_state: bool,
    opts: Options,
}

fn main() -> ExitCode {
    // Never outlive the test (or shell) that started us.
    // SAFETY: prctl with PR_SET_PDEATHSIG only changes this process's own state.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("proxmox") => parse(&args[1..]).and_then(run),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(anyhow::anyhow!("{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("golden-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn random_secret() -> String {
    let mut b = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if read.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = (t ^ u128::from(std::process::id()) << 64).to_le_bytes();
    }
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn parse(args: &[String]) -> Result<Cli> {
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
            "--token" => token = Some(value()?),
            "--task-ms" => task_ms = value()?.parse().context("--task-ms wants milliseconds")?,
            "--agent-ready-ms" => {
                agent_ready_ms = value()?
                    .parse()
                    .context("--agent-ready-ms wants milliseconds")?
            }
            "--extra-vms" => extra_vms = value()?.parse().context("--extra-vms wants a number")?,
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    let token = token.unwrap_or_else(|| format!("root@pam!golden={}", random_secret()));
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
            &random_secret()[..8]
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
        },
    })
}

fn run(cli: Cli) -> Result<()> {
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
    let schema = match &cli.schema {
        Some(p) => Some(Schema::load(p)?),
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
    let started = proxmox::start(cli.opts, schema, cli.listen).await?;
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
    wait_for_exit(term, int, cli.exit_on_stdin_eof).await;
    eprintln!("golden-sim: stopping");
    proxmox::stop_guests(&started.shared).await;
    Ok(())
}

/// SIGINT, SIGTERM, or (when asked) the end of stdin: the test that started
/// us is gone.
async fn wait_for_exit(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
    on_stdin_eof: bool,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let eof = Arc::new(std::sync::Mutex::new(Some(tx)));
    if on_stdin_eof {
        let eof = eof.clone();
        std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            if let Some(tx) = eof.lock().ok().and_then(|mut t| t.take()) {
                let _ = tx.send(());
            }
        });
    }
    let stdin_gone = async {
        if on_stdin_eof {
            let _ = rx.await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = stdin_gone => {}
    }
}
