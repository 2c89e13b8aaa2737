//! `/nodes/{node}/qemu/{vmid}/agent/...`: the QEMU guest agent as PVE relays
//! it, for both backends: the instant backend answers from the guest's file
//! map and the fake shell; the QEMU backend forwards to the real agent inside
//! a real guest (whose QEMU process and agent channel are the core's,
//! `crate::core::guest`).

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::schema::{parse_bool, Params};
use super::state::{Backend, ExecRecord, Power, Shared};
use super::ApiError;
use crate::core::guest::{GuestError, QemuGuest};
use crate::core::shell;

/// How long the instant backend's exec takes before `exec-status` reports it.
const INSTANT_EXEC: Duration = Duration::from_millis(50);

fn not_running() -> ApiError {
    ApiError::new(500, "QEMU guest agent is not running")
}

/// How PVE relays the agent's silence and its errors.
impl From<GuestError> for ApiError {
    fn from(e: GuestError) -> ApiError {
        match e {
            GuestError::NotRunning => not_running(),
            GuestError::Agent(desc) => ApiError::new(500, format!("Agent error: {desc}")),
            GuestError::Timeout => ApiError::new(500, "got timeout"),
        }
    }
}

fn first<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.get(k).and_then(|v| v.first()).map(String::as_str)
}

pub async fn handle(
    shared: &Shared,
    vmid: u32,
    cmd: &str,
    params: &Params,
) -> Result<Value, ApiError> {
    let guest = {
        let mut cl = shared.lock();
        let ready_ms = cl.opts.agent_ready_ms;
        let never = cl.agent_never(vmid);
        let backend = cl.opts.backend;
        let reachable = {
            let vm = cl.vm(vmid)?;
            vm.agent_enabled() && matches!(vm.power, Power::Running { .. })
        };
        // qemu-server PVE/QemuServer/Agent.pm agent_cmd -> mon_cmd on the
        // qga socket; QMPClient's timeout dies with this text (PVE 8.x).
        if reachable && !never && cl.take_agent_timeout(vmid, cmd) {
            return Err(ApiError::new(
                500,
                format!("VM {vmid} qga command 'guest-{cmd}' failed - got timeout"),
            ));
        }
        let vm = cl.vm(vmid)?;
        if !vm.agent_enabled() {
            return Err(ApiError::new(500, "No QEMU guest agent configured"));
        }
        let Power::Running { since, guest, .. } = &vm.power else {
            return Err(ApiError::new(500, format!("VM {vmid} is not running")));
        };
        if never {
            return Err(not_running());
        }

        match backend {
            Backend::Instant => {
                if since.elapsed() < Duration::from_millis(ready_ms) {
                    return Err(not_running());
                }
                return instant(&mut cl, vmid, cmd, params);
            }
            Backend::Qemu => guest.clone().ok_or_else(not_running)?,
        }
    };
    qemu(&guest, vmid, cmd, params).await
}

/// What PVE makes of a guest's output: qemu-server's exec-status
/// (`PVE/API2/Qemu/Agent.pm`) `decode_base64`s `out-data` into a byte string
/// and the JSON encoder writes each byte as one character, so UTF-8 output
/// arrives as Latin-1 mojibake ("grÃ¼Ã\u009fe" for "grüße"); `exited` goes
/// out through PVE's formatter as 0/1, not a JSON boolean.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn interfaces(mac: &str) -> Value {
    json!({"result": [
        {"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [
            {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
            {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128}]},
        {"name": "eth0", "hardware-address": mac.to_ascii_lowercase(), "ip-addresses": [
            {"ip-address": "10.0.2.15", "ip-address-type": "ipv4", "prefix": 24}]}
    ]})
}

fn command_args(params: &Params) -> Result<Vec<String>, ApiError> {
    match params.get("command") {
        Some(c) if !c.is_empty() => Ok(c.clone()),
        _ => Err(ApiError::param(
            "command",
            "property is missing and it is not optional",
        )),
    }
}

/// `file-write`'s content as bytes: with `encode=1` (the default) PVE
/// base64-encodes the plain text for the agent; with 0 it is base64 already.
fn file_write_bytes(params: &Params) -> Result<Vec<u8>, ApiError> {
    let content = first(params, "content").unwrap_or("");
    let encode = first(params, "encode").and_then(parse_bool).unwrap_or(true);
    if encode {
        Ok(content.as_bytes().to_vec())
    } else {
        B64.decode(content.trim()).map_err(|e| {
            ApiError::new(
                500,
                format!("Agent error: Invalid parameter type for 'buf-b64': {e}"),
            )
        })
    }
}

fn instant(
    cl: &mut super::state::Cluster,
    vmid: u32,
    cmd: &str,
    params: &Params,
) -> Result<Value, ApiError> {
    let vm = cl.vm(vmid)?;
    let boot = vm.boot_volid();
    let name = vm.name();
    let mac = vm
        .config
        .get("net0")
        .and_then(|n| {
            n.split(',')
                .find_map(|p| p.split_once('=').map(|(_, v)| v.to_owned()))
        })
        .unwrap_or_else(|| "BC:24:11:00:00:00".into());
    match cmd {
        "ping" => Ok(json!({"result": {}})),
        "info" => Ok(json!({"result": {"version": "7.2.0", "supported_commands": []}})),
        "get-host-name" => Ok(json!({"result": {"host-name": name}})),
        "network-get-interfaces" => Ok(interfaces(&mac)),
        "exec" => {
            let argv = command_args(params)?;
            let input = first(params, "input-data").map(|s| s.as_bytes().to_vec());
            let joined = argv.join(" ");
            let out = match cl.take_exec_fault(&joined) {
                Some(f) => shell::Output {
                    exitcode: f.exitcode,
                    stdout: f.stdout.into_bytes(),
                    stderr: f.stderr.into_bytes(),
                },
                None => {
                    let fs = boot
                        .and_then(|b| cl.volumes.get_mut(&b))
                        .map(|v| &mut v.files)
                        .ok_or_else(|| {
                            ApiError::new(500, "Agent error: the guest has no boot disk")
                        })?;
                    let out = shell::run_argv(fs, &argv, input.as_deref());
                    // Units it started with `systemd-run` run after it.
                    shell::run_started_units(fs);
                    out
                }
            };
            let vm = cl.vm_mut(vmid)?;
            let pid = vm.next_exec_pid;
            vm.next_exec_pid += 1;
            vm.execs.insert(
                pid,
                ExecRecord {
                    started: Instant::now(),
                    exitcode: out.exitcode,
                    stdout: out.stdout,
                    stderr: out.stderr,
                },
            );
            Ok(json!({"pid": pid}))
        }
        "exec-status" => {
            let pid: i64 = first(params, "pid")
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    ApiError::param("pid", "property is missing and it is not optional")
                })?;
            let vm = cl.vm_mut(vmid)?;
            let Some(rec) = vm.execs.get(&pid) else {
                return Err(ApiError::new(500, "Agent error: Invalid parameter 'pid'"));
            };
            if rec.started.elapsed() < INSTANT_EXEC {
                return Ok(json!({"exited": 0}));
            }
            // Like qemu-ga, a finished process is reported once, then forgotten.
            let rec = vm.execs.remove(&pid).unwrap_or_else(|| unreachable!());
            let mut v = json!({"exited": 1, "exitcode": rec.exitcode});
            if !rec.stdout.is_empty() {
                v["out-data"] = json!(latin1(&rec.stdout));
            }
            if !rec.stderr.is_empty() {
                v["err-data"] = json!(latin1(&rec.stderr));
            }
            Ok(v)
        }
        "file-write" => {
            let file = first(params, "file")
                .ok_or_else(|| {
                    ApiError::param("file", "property is missing and it is not optional")
                })?
                .to_owned();
            let bytes = file_write_bytes(params)?;
            let vol = boot
                .and_then(|b| cl.volumes.get_mut(&b))
                .ok_or_else(|| ApiError::new(500, "Agent error: the guest has no boot disk"))?;
            vol.files.insert(file, bytes);
            Ok(Value::Null)
        }
        "file-read" => {
            let file = first(params, "file").unwrap_or("");
            let body = boot
                .and_then(|b| cl.volumes.get(&b))
                .and_then(|v| v.files.get(file))
                .ok_or_else(|| {
                    ApiError::new(
                        500,
                        format!(
                            "Agent error: Failed to open file '{file}': No such file or directory"
                        ),
                    )
                })?;
            Ok(json!({"content": String::from_utf8_lossy(body)}))
        }
        other => Err(ApiError::new(
            501,
            format!("Method 'agent/{other}' not implemented by the simulator"),
        )),
    }
}

/// How long qemu-server waits for the guest agent's answer: QMPClient.pm
/// `cmd` gives every `guest-*` command but fsfreeze, fstrim and shutdown
/// the default 5 seconds; a busy guest (TCG under load) misses it, and PVE
/// answers 500 "VM N qga command 'guest-x' failed - got timeout".
const PVE_QGA_TIMEOUT: Duration = Duration::from_secs(5);

/// qemu-server PVE/QemuServer/Monitor.pm qmp_cmd's wording for an agent
/// call that failed.
fn agent_error(vmid: u32, execute: &str, e: GuestError) -> ApiError {
    match e {
        GuestError::Timeout => ApiError::new(
            500,
            format!("VM {vmid} qga command '{execute}' failed - got timeout"),
        ),
        other => other.into(),
    }
}

async fn qemu(guest: &QemuGuest, vmid: u32, cmd: &str, params: &Params) -> Result<Value, ApiError> {
    let t = PVE_QGA_TIMEOUT;
    match cmd {
        "ping" => guest
            .call("guest-ping", Value::Null, t)
            .await
            .map_err(|e| agent_error(vmid, "guest-ping", e))
            .map(|_| json!({"result": {}})),
        "info" => guest
            .call("guest-info", Value::Null, t)
            .await
            .map_err(|e| agent_error(vmid, "guest-info", e))
            .map(|r| json!({"result": r})),
        "get-host-name" => guest
            .call("guest-get-host-name", Value::Null, t)
            .await
            .map_err(|e| agent_error(vmid, "guest-get-host-name", e))
            .map(|r| json!({"result": r})),
        "network-get-interfaces" => guest
            .call("guest-network-get-interfaces", Value::Null, t)
            .await
            .map_err(|e| agent_error(vmid, "guest-network-get-interfaces", e))
            .map(|r| json!({"result": r})),
        "exec" => {
            let argv = command_args(params)?;
            let mut args = json!({"path": argv[0], "arg": argv[1..], "capture-output": true});
            if let Some(input) = first(params, "input-data") {
                args["input-data"] = json!(B64.encode(input));
            }
            let r = guest
                .call("guest-exec", args, t)
                .await
                .map_err(|e| agent_error(vmid, "guest-exec", e))?;
            Ok(json!({"pid": r.get("pid").cloned().unwrap_or(Value::Null)}))
        }
        "exec-status" => {
            let pid: i64 = first(params, "pid")
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    ApiError::param("pid", "property is missing and it is not optional")
                })?;
            let mut r = guest
                .call("guest-exec-status", json!({"pid": pid}), t)
                .await
                .map_err(|e| agent_error(vmid, "guest-exec-status", e))?;
            // PVE hands out the captured output decoded, byte for character.
            for k in ["out-data", "err-data"] {
                if let Some(s) = r.get(k).and_then(Value::as_str) {
                    let text = B64.decode(s).map(|b| latin1(&b)).unwrap_or_default();
                    r[k] = json!(text);
                }
            }
            // Booleans leave PVE as 0/1.
            if let Some(b) = r.get("exited").and_then(Value::as_bool) {
                r["exited"] = json!(u8::from(b));
            }
            Ok(r)
        }
        "file-write" => {
            let file = first(params, "file").ok_or_else(|| {
                ApiError::param("file", "property is missing and it is not optional")
            })?;
            let bytes = file_write_bytes(params)?;
            let h = guest
                .call("guest-file-open", json!({"path": file, "mode": "wb"}), t)
                .await
                .map_err(|e| agent_error(vmid, "guest-file-open", e))?;
            let written = guest
                .call(
                    "guest-file-write",
                    json!({"handle": h, "buf-b64": B64.encode(&bytes)}),
                    t,
                )
                .await
                .map_err(|e| agent_error(vmid, "guest-file-write", e));
            let closed = guest
                .call("guest-file-close", json!({"handle": h}), t)
                .await
                .map_err(|e| agent_error(vmid, "guest-file-close", e));
            written?;
            closed?;
            Ok(Value::Null)
        }
        "file-read" => {
            let file = first(params, "file").unwrap_or("");
            let h = guest
                .call("guest-file-open", json!({"path": file, "mode": "r"}), t)
                .await
                .map_err(|e| agent_error(vmid, "guest-file-open", e))?;
            let read = guest
                .call(
                    "guest-file-read",
                    json!({"handle": h, "count": 16 * 1024 * 1024}),
                    t,
                )
                .await
                .map_err(|e| agent_error(vmid, "guest-file-read", e));
            let _ = guest
                .call("guest-file-close", json!({"handle": h}), t)
                .await
                .map_err(|e| agent_error(vmid, "guest-file-close", e));
            let r = read?;
            let body = r
                .get("buf-b64")
                .and_then(Value::as_str)
                .and_then(|s| B64.decode(s).ok())
                .unwrap_or_default();
            Ok(json!({"content": String::from_utf8_lossy(&body)}))
        }
        other => Err(ApiError::new(
            501,
            format!("Method 'agent/{other}' not implemented by the simulator"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real guest that misses PVE's five seconds answers as PVE does, so
    /// the client's retry of agent timeouts is exercised by the QEMU backend
    /// under load, not only by the `agent_timeout` fault.
    #[test]
    fn a_slow_guest_agent_times_out_in_pves_words() {
        let e = agent_error(901, "guest-exec-status", GuestError::Timeout);
        assert_eq!(
            (e.status, e.message.as_str()),
            (
                500,
                "VM 901 qga command 'guest-exec-status' failed - got timeout"
            )
        );
        assert_eq!(PVE_QGA_TIMEOUT, Duration::from_secs(5));
        let e = agent_error(901, "guest-ping", GuestError::Agent("boom".into()));
        assert_eq!(e.message, "Agent error: boom");
    }
}
