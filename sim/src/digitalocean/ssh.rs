//! The instant backend's SSH endpoint: a real OpenSSH `sshd` per active
//! droplet on its public IPv4 (127.0.0.N) and `--ssh-port`, so clients use
//! their real `ssh` with host key pinning and key auth as root, as on a DO
//! droplet. Every session is forced into the relay
//! (`golden-sim digitalocean-relay ADMIN_URL DROPLET_ID`), which sends
//! `$SSH_ORIGINAL_COMMAND` and stdin to `POST /_sim/droplets/{id}/exec`;
//! the simulator runs it with `/bin/sh -c` in the droplet's tiny shell and
//! the relay prints its stdout, stderr and exit code.
//!
//! An sshd dies with its droplet (power-off, delete: `Drop` kills it) and
//! with the simulator (`PR_SET_PDEATHSIG`, set in the child before exec; it
//! fires when the spawning thread ends, so sshds are spawned from the
//! runtime's worker threads, which live as long as the simulator).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};

pub const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd; killed when dropped.
pub struct Sshd {
    child: Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::fmt::Debug for Sshd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sshd pid {}", self.child.id())
    }
}

/// What an sshd serves.
pub struct SshdSpec<'a> {
    pub dir: PathBuf,
    pub ip: &'a str,
    pub port: u16,
    /// OpenSSH private key text of the host key.
    pub host_key: &'a str,
    pub authorized_keys: Vec<String>,
    pub admin_url: &'a str,
    pub droplet_id: u64,
}

/// A fresh ed25519 host key pair (private key text, public line), as
/// cloud-init's cc_ssh makes one when the user data brings none.
pub fn generate_host_key(dir: &Path) -> Result<(String, String)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("generated_host_key");
    let _ = std::fs::remove_file(&path);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "root@droplet", "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .context("running ssh-keygen")?;
    if !out.status.success() {
        bail!("ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    }
    let private = std::fs::read_to_string(&path)?;
    let public = std::fs::read_to_string(path.with_extension("pub"))?;
    Ok((private, public.trim().to_owned()))
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    let mut text = text.trim_end().to_owned();
    text.push('\n');
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Starts sshd and waits (up to 5 s) until it accepts connections.
pub fn start(spec: &SshdSpec<'_>) -> Result<Sshd> {
    if !Path::new(SSHD).is_file() {
        bail!("{SSHD} is missing: install Debian's openssh-server (scripts/install-deps.sh)");
    }
    std::fs::create_dir_all(&spec.dir)?;
    // sshd's privilege separation directory (Debian makes it at boot).
    std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
    let host_key = spec.dir.join("ssh_host_ed25519_key");
    write_private(&host_key, spec.host_key)?;
    let keys = spec.dir.join("authorized_keys");
    std::fs::write(&keys, spec.authorized_keys.join("\n") + "\n")?;
    let exe = std::env::current_exe().context("locating golden-sim")?;
    let config = format!(
        "ListenAddress {ip}:{port}\n\
         HostKey {host_key}\n\
         AuthorizedKeysFile {keys}\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         StrictModes no\n\
         UsePAM no\n\
         PidFile none\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         AllowTcpForwarding no\n\
         X11Forwarding no\n\
         Subsystem sftp internal-sftp\n\
         ForceCommand {exe} digitalocean-relay {admin} {id}\n",
        ip = spec.ip,
        port = spec.port,
        host_key = host_key.display(),
        keys = keys.display(),
        exe = exe.display(),
        admin = spec.admin_url,
        id = spec.droplet_id,
    );
    let cfg = spec.dir.join("sshd_config");
    std::fs::write(&cfg, config)?;
    let log = std::fs::File::create(spec.dir.join("sshd.log"))?;
    let mut cmd = Command::new(SSHD);
    cmd.args(["-D", "-e", "-f"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: prctl only changes this (child) process's own state.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().context("starting sshd")?;
    let mut sshd = Sshd { child };
    let addr: SocketAddr = format!("{}:{}", spec.ip, spec.port).parse()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(sshd);
        }
        if let Ok(Some(status)) = sshd.child.try_wait() {
            let log = std::fs::read_to_string(spec.dir.join("sshd.log")).unwrap_or_default();
            bail!("sshd on {addr} exited ({status}): {}", log.trim());
        }
        if Instant::now() > deadline {
            bail!("sshd on {addr} did not accept connections within 5 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `ip:port` can be bound (no other simulator's sshd holds it).
pub fn bindable(ip: &str, port: u16) -> bool {
    std::net::TcpListener::bind((ip, port)).is_ok()
}

/// `golden-sim digitalocean-relay ADMIN_URL DROPLET_ID`: sshd's
/// ForceCommand. Exits with the command's exit code.
pub fn relay(args: &[String]) -> Result<i32> {
    let [admin, id] = args else {
        bail!("usage: golden-sim digitalocean-relay ADMIN_URL DROPLET_ID");
    };
    let command = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
    let stdin = read_stdin();
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = json!({"command": command, "stdin": b64.encode(&stdin)});
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("{admin}/droplets/{id}/exec");
    let answer: Value = rt.block_on(async {
        crate::install_crypto_provider();
        let resp = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("reaching the simulator at {url}"))?;
        let status = resp.status();
        let text: String = resp.text().await?;
        if !status.is_success() {
            bail!("the simulator answered {status}: {text}");
        }
        serde_json::from_str(&text).context("the simulator's exec answer")
    })?;
    let decode = |k: &str| {
        b64.decode(answer[k].as_str().unwrap_or(""))
            .unwrap_or_default()
    };
    std::io::stdout().write_all(&decode("stdout"))?;
    std::io::stderr().write_all(&decode("stderr"))?;
    std::io::stdout().flush()?;
    Ok(answer["exit_code"].as_i64().unwrap_or(255) as i32)
}

/// The session's stdin: all of it when the client sends some (`ssh host sh
/// < script`) or closes it (`ssh -n`, stdin from /dev/null); nothing when
/// the client keeps it open without writing (a terminal), after 300 ms, so
/// a command that reads no input does not wait forever.
fn read_stdin() -> Vec<u8> {
    let (tx, rx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 65536];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(n) => {
                    if tx.send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut data = Vec::new();
    match rx.recv_timeout(Duration::from_millis(300)) {
        Ok(Some(chunk)) => data.extend(chunk),
        Ok(None) | Err(_) => return data,
    }
    while let Ok(Some(chunk)) = rx.recv() {
        data.extend(chunk);
    }
    data
}
